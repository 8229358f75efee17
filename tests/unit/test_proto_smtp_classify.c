#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "proto/smtp_classify.h"

#include <string.h>

static struct smtp_verdict classify(const char *input, enum smtp_phase phase)
{
	struct smtp_reply_parser parser;
	smtp_reply_parser_init(&parser);
	size_t consumed = 0;
	const struct smtp_reply *reply = NULL;
	const char *error = NULL;
	assert_int_equal(
	    smtp_reply_parser_feed(&parser, input, strlen(input), &consumed, &reply, &error), 1);
	assert_int_equal(consumed, strlen(input));
	struct smtp_verdict verdict = smtp_classify_reply(reply, phase);
	smtp_reply_parser_deinit(&parser);
	return verdict;
}

#define EXPECT(input, phase, cls_, permanent_)                                                     \
	do {                                                                                       \
		struct smtp_verdict v_ = classify((input), (phase));                               \
		if (v_.cls != (cls_) || v_.permanent != (permanent_))                              \
			fail_msg("%s: got %s/%s, want %s/%s", (input), mt_class_name(v_.cls),      \
			         v_.permanent ? "permanent" : "temporary", mt_class_name(cls_),    \
			         (permanent_) ? "permanent" : "temporary");                        \
	} while (0)

#define PERM true
#define TEMP false

static void test_positive(void **state)
{
	(void)state;
	EXPECT("250 2.1.5 Ok\r\n", SMTP_PHASE_RCPT, MT_CLASS_NONE, TEMP);
	EXPECT("354 Go ahead\r\n", SMTP_PHASE_DATA, MT_CLASS_NONE, TEMP);
	EXPECT("334 VXNlcm5hbWU6\r\n", SMTP_PHASE_AUTH, MT_CLASS_NONE, TEMP);
	EXPECT("235 2.7.0 Accepted\r\n", SMTP_PHASE_AUTH, MT_CLASS_NONE, TEMP);
}

static void test_quota(void **state)
{
	(void)state;
	EXPECT("550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\r\n"
	       "550-5.4.5 sending limits go to\r\n"
	       "550 5.4.5  https://support.google.com/a/answer/166852 a1sm123 - gsmtp\r\n",
	       SMTP_PHASE_MAIL, MT_CLASS_QUOTA, TEMP);
	EXPECT("550 5.4.5 Daily sending quota exceeded. a1 - gsmtp\r\n", SMTP_PHASE_RCPT,
	       MT_CLASS_QUOTA, TEMP);
	EXPECT(
	    "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
	    "process message due to a permanent exception with message [BeginDiagnosticData]\r\n",
	    SMTP_PHASE_DATA_END, MT_CLASS_QUOTA, TEMP);
	EXPECT(
	    "554 5.2.0 STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionQuotaExceeded"
	    "\r\n",
	    SMTP_PHASE_DATA_END, MT_CLASS_QUOTA, TEMP);
	EXPECT("451 4.3.0 Sending quota exceeded for this hour\r\n", SMTP_PHASE_MAIL,
	       MT_CLASS_QUOTA, TEMP);
	/* the recipient's mailbox, not our quota */
	EXPECT("552 5.2.2 <bob@example.com>: Quota exceeded (mailbox for user is full)\r\n",
	       SMTP_PHASE_RCPT, MT_CLASS_RESP, PERM);
	EXPECT("452-4.2.2 The email account that you tried to reach is over quota.\r\n"
	       "452 4.2.2 Please direct the recipient to https://support.google.com/\r\n",
	       SMTP_PHASE_RCPT, MT_CLASS_RESP, TEMP);
	EXPECT("550 Mailbox full\r\n", SMTP_PHASE_RCPT, MT_CLASS_RESP, PERM);
}

static void test_throttle(void **state)
{
	(void)state;
	EXPECT("421 4.7.0 Try again later, closing connection. (EHLO) a1 - gsmtp\r\n",
	       SMTP_PHASE_EHLO, MT_CLASS_THROTTLE, TEMP);
	EXPECT("421 Service not available\r\n", SMTP_PHASE_BANNER, MT_CLASS_THROTTLE, TEMP);
	EXPECT("451 4.7.1 Greylisting in action, please come back later\r\n", SMTP_PHASE_RCPT,
	       MT_CLASS_THROTTLE, TEMP);
	EXPECT("451 4.7.500 Server busy. Please try again later from [203.0.113.5]. (S77719)\r\n",
	       SMTP_PHASE_MAIL, MT_CLASS_THROTTLE, TEMP);
	EXPECT("450-4.2.1 The user you are trying to contact is receiving mail at a rate that\r\n"
	       "450 4.2.1 prevents additional messages from being delivered.\r\n",
	       SMTP_PHASE_RCPT, MT_CLASS_THROTTLE, TEMP);
	EXPECT("453 4.3.2 System not accepting network messages\r\n", SMTP_PHASE_MAIL,
	       MT_CLASS_THROTTLE, TEMP);
	EXPECT("454 4.7.0 Too many login attempts, please try again later. a1 - gsmtp\r\n",
	       SMTP_PHASE_AUTH, MT_CLASS_THROTTLE, TEMP);
	EXPECT("550 Rate limit exceeded, try again in an hour\r\n", SMTP_PHASE_MAIL,
	       MT_CLASS_THROTTLE, TEMP);
	EXPECT("554 Too many connections from your IP\r\n", SMTP_PHASE_BANNER, MT_CLASS_THROTTLE,
	       TEMP);
	/* not throttling: split the recipients */
	EXPECT("452 4.5.3 Too many recipients\r\n", SMTP_PHASE_RCPT, MT_CLASS_RESP, TEMP);
	/* STARTTLS's own 4.7.0 is left to the caller */
	EXPECT("454 4.7.0 TLS not available due to local problem\r\n", SMTP_PHASE_STARTTLS,
	       MT_CLASS_RESP, TEMP);
}

static void test_auth(void **state)
{
	(void)state;
	EXPECT("535-5.7.8 Username and Password not accepted. For more information, go to\r\n"
	       "535 5.7.8  https://support.google.com/mail/?p=BadCredentials a1 - gsmtp\r\n",
	       SMTP_PHASE_AUTH, MT_CLASS_AUTH, PERM);
	EXPECT("535 5.7.3 Authentication unsuccessful [LO2P265CA0001.GBRP265.PROD.OUTLOOK.COM]\r\n",
	       SMTP_PHASE_AUTH, MT_CLASS_AUTH, PERM);
	EXPECT("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for "
	       "the Tenant.\r\n",
	       SMTP_PHASE_AUTH, MT_CLASS_AUTH, PERM);
	EXPECT("534-5.7.9 Application-specific password required.\r\n534 5.7.9 Learn more\r\n",
	       SMTP_PHASE_AUTH, MT_CLASS_AUTH, PERM);
	EXPECT("554 5.7.0 Authentication failed\r\n", SMTP_PHASE_AUTH, MT_CLASS_AUTH, PERM);
	EXPECT("530 5.7.0 Authentication required\r\n", SMTP_PHASE_MAIL, MT_CLASS_AUTH, PERM);
	EXPECT("530 5.7.57 Client not authenticated to send mail. [AM0PR01CA0001]\r\n",
	       SMTP_PHASE_MAIL, MT_CLASS_AUTH, PERM);
	EXPECT("550 5.7.1 Client was not authenticated\r\n", SMTP_PHASE_MAIL, MT_CLASS_AUTH, PERM);
	/* outside AUTH/MAIL a 535 is just a reply */
	EXPECT("535 5.7.8 whatever\r\n", SMTP_PHASE_RCPT, MT_CLASS_RESP, PERM);
	EXPECT("504 5.5.4 Unrecognized authentication type\r\n", SMTP_PHASE_AUTH, MT_CLASS_RESP,
	       PERM);
}

static void test_resp(void **state)
{
	(void)state;
	EXPECT("550 5.1.1 user unknown\r\n", SMTP_PHASE_RCPT, MT_CLASS_RESP, PERM);
	EXPECT("550-5.7.1 [203.0.113.5] Our system has detected an unusual rate of\r\n"
	       "550 5.7.1 unsolicited mail originating from your IP address.\r\n",
	       SMTP_PHASE_DATA_END, MT_CLASS_RESP, PERM);
	EXPECT("554 5.7.1 Message rejected as spam\r\n", SMTP_PHASE_DATA_END, MT_CLASS_RESP, PERM);
	EXPECT("450 4.1.8 Sender address rejected: Domain not found\r\n", SMTP_PHASE_MAIL,
	       MT_CLASS_RESP, TEMP);
	EXPECT("552 5.3.4 Message size exceeds fixed maximum message size\r\n", SMTP_PHASE_DATA_END,
	       MT_CLASS_RESP, PERM);
	EXPECT("500 unrecognized command\r\n", SMTP_PHASE_EHLO, MT_CLASS_RESP, PERM);
	EXPECT("451 Requested action aborted: local error in processing\r\n", SMTP_PHASE_DATA_END,
	       MT_CLASS_RESP, TEMP);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_positive), cmocka_unit_test(test_quota),
	    cmocka_unit_test(test_throttle), cmocka_unit_test(test_auth),
	    cmocka_unit_test(test_resp),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
