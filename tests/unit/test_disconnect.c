/* The pure parts of the disconnect story (docs/sending.md): when a custom SMTP failure is
 * confirmed and disconnects the account, where each kind of mail goes in each account state,
 * and what the notice says. Table-style, one row per case. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/notify.h"
#include "engine/outbox.h"
#include "engine/outbox_policy.h"
#include "lib/str.h"

#include <stdio.h>
#include <string.h>

/* ---- confirm, then disconnect ---- */

static const struct {
	const char *what;
	bool relay;
	enum mt_failure_class cls;
	bool certificate, confirming, awaiting;
	enum outbox_session_verdict verdict;
} session_rows[] = {
    {"auth refused, first time: confirm after the pause", false, MT_CLASS_AUTH, false, false, false,
     OUTBOX_SESSION_CONFIRM},
    {"auth refused on the confirming attempt: disconnect", false, MT_CLASS_AUTH, false, true, false,
     OUTBOX_SESSION_DISCONNECT},
    {"pin mismatch, first time: confirm", false, MT_CLASS_TLS, true, false, false,
     OUTBOX_SESSION_CONFIRM},
    {"certificate again on the confirming attempt: disconnect", false, MT_CLASS_TLS, true, true,
     false, OUTBOX_SESSION_DISCONNECT},
    {"another session's auth failure during the pause: wait for the confirmation", false,
     MT_CLASS_AUTH, false, false, true, OUTBOX_SESSION_AWAIT},
    {"tls failure not about the certificate (no STARTTLS): an ordinary retry", false, MT_CLASS_TLS,
     false, false, false, OUTBOX_SESSION_RETRY},
    {"connection refused: retry", false, MT_CLASS_CONN, false, false, false, OUTBOX_SESSION_RETRY},
    {"the confirming attempt cannot connect: not confirmed, retry", false, MT_CLASS_CONN, false,
     true, false, OUTBOX_SESSION_RETRY},
    {"throttled: retry", false, MT_CLASS_THROTTLE, false, false, false, OUTBOX_SESSION_RETRY},
    {"the relay refuses auth: the operator's, retry", true, MT_CLASS_AUTH, false, true, false,
     OUTBOX_SESSION_RETRY},
    {"the relay's certificate: retry", true, MT_CLASS_TLS, true, false, false,
     OUTBOX_SESSION_RETRY},
};

static void test_session_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(session_rows) / sizeof(session_rows[0]); i++) {
		const struct outbox_session_failure f = {
		    .relay = session_rows[i].relay,
		    .cls = session_rows[i].cls,
		    .certificate = session_rows[i].certificate,
		    .confirming = session_rows[i].confirming,
		    .awaiting_confirm = session_rows[i].awaiting,
		};
		enum outbox_session_verdict got = outbox_session_failed(&f);
		if (got != session_rows[i].verdict)
			fail_msg("%s: got %s, want %s", session_rows[i].what,
			         outbox_session_verdict_name(got),
			         outbox_session_verdict_name(session_rows[i].verdict));
	}
}

/* ---- the route of single, campaign and notice mail by account state ---- */

enum want { CUSTOM, RELAY, HELD, NONE };
static const char *const want_names[] = {"custom", "relay", "held", "none"};

static const struct {
	const char *what;
	enum outbox_mail_kind kind;
	int state; /* -1: no account */
	bool custom_smtp, relay;
	enum want want;
} route_rows[] = {
    {"single, connected", OUTBOX_MAIL_SINGLE, STORE_ACCOUNT_CONNECTED, true, true, CUSTOM},
    {"single, disconnected: the relay", OUTBOX_MAIL_SINGLE, STORE_ACCOUNT_DISCONNECTED, true, true,
     RELAY},
    {"single, disconnected, no relay: no route", OUTBOX_MAIL_SINGLE, STORE_ACCOUNT_DISCONNECTED,
     true, false, NONE},
    {"single, off: the relay", OUTBOX_MAIL_SINGLE, STORE_ACCOUNT_OFF, true, true, RELAY},
    {"single, no account: the relay", OUTBOX_MAIL_SINGLE, -1, true, true, RELAY},
    {"campaign, connected", OUTBOX_MAIL_CAMPAIGN, STORE_ACCOUNT_CONNECTED, true, true, CUSTOM},
    {"campaign, disconnected: held for the reconnect", OUTBOX_MAIL_CAMPAIGN,
     STORE_ACCOUNT_DISCONNECTED, true, true, HELD},
    {"campaign, disconnected, no relay: held all the same", OUTBOX_MAIL_CAMPAIGN,
     STORE_ACCOUNT_DISCONNECTED, true, false, HELD},
    {"campaign, disconnected but custom_smtp switched off: the relay", OUTBOX_MAIL_CAMPAIGN,
     STORE_ACCOUNT_DISCONNECTED, false, true, RELAY},
    {"campaign, off: the relay", OUTBOX_MAIL_CAMPAIGN, STORE_ACCOUNT_OFF, true, true, RELAY},
    {"notice, connected: the relay all the same", OUTBOX_MAIL_NOTICE, STORE_ACCOUNT_CONNECTED, true,
     true, RELAY},
    {"notice, disconnected: the relay", OUTBOX_MAIL_NOTICE, STORE_ACCOUNT_DISCONNECTED, true, true,
     RELAY},
    {"notice without a relay: none", OUTBOX_MAIL_NOTICE, STORE_ACCOUNT_DISCONNECTED, true, false,
     NONE},
};

static void test_route_table(void **state)
{
	(void)state;
	static struct store_org org;
	static struct store_user user;
	static struct store_smtp_account account;
	mt_strlcpy(user.email, "rec@staffing.example", sizeof(user.email));
	mt_strlcpy(user.name, "Rita Rec", sizeof(user.name));
	mt_strlcpy(account.from_address, "rec@staffing.example", sizeof(account.from_address));
	for (size_t i = 0; i < sizeof(route_rows) / sizeof(route_rows[0]); i++) {
		org.custom_smtp = route_rows[i].custom_smtp;
		account.state = route_rows[i].state < 0
		                    ? STORE_ACCOUNT_OFF
		                    : (enum store_account_state)route_rows[i].state;
		const struct outbox_relay relay = {.configured = route_rows[i].relay,
		                                   .from = "bounces@platform.example"};
		struct outbox_route r;
		const char *reason = NULL;
		int rc = outbox_route(&org, &user, route_rows[i].state < 0 ? NULL : &account,
		                      &relay, route_rows[i].kind, NULL, &r, &reason);
		enum want got = rc < 0 ? NONE : r.held ? HELD : r.relay ? RELAY : CUSTOM;
		if (got != route_rows[i].want)
			fail_msg("%s: got %s, want %s", route_rows[i].what, want_names[got],
			         want_names[route_rows[i].want]);
		if (rc < 0 && (reason == NULL || reason[0] == '\0'))
			fail_msg("%s: no reason for no route", route_rows[i].what);
	}
}

static void test_mail_kind(void **state)
{
	(void)state;
	static struct store_outbox_message m;
	assert_int_equal(outbox_mail_kind_of(&m), OUTBOX_MAIL_SINGLE);
	mt_strlcpy(m.campaign_id, "cmp_1", sizeof(m.campaign_id));
	assert_int_equal(outbox_mail_kind_of(&m), OUTBOX_MAIL_CAMPAIGN);
	m.relay_only = true;
	assert_int_equal(outbox_mail_kind_of(&m), OUTBOX_MAIL_NOTICE);
}

/* ---- the notice ---- */

static void test_notice_text(void **state)
{
	(void)state;
	static struct store_smtp_account a;
	mt_strlcpy(a.from_address, "rec@staffing.example", sizeof(a.from_address));
	mt_strlcpy(a.host, "smtp.staffing.example", sizeof(a.host));
	a.port = 587;
	char text[MT_NOTIFICATION_TEXT_MAX + 1];
	notify_smtp_disconnected_text(&a, MT_CLASS_AUTH, "535 5.7.8 credentials rejected", text,
	                              sizeof(text));
	assert_non_null(strstr(text, "rec@staffing.example"));
	assert_non_null(strstr(text, "smtp.staffing.example:587"));
	assert_non_null(strstr(text, "auth: 535 5.7.8 credentials rejected"));
	notify_smtp_disconnected_text(&a, MT_CLASS_TLS, "certificate does not match the pin", text,
	                              sizeof(text));
	assert_non_null(strstr(text, "tls: certificate does not match the pin"));
	/* The longest parts still leave the notice whole enough to name the account. */
	memset(a.host, 'h', sizeof(a.host) - 1);
	char reason[MT_ERROR_TEXT_MAX];
	memset(reason, 'r', sizeof(reason) - 1);
	reason[sizeof(reason) - 1] = '\0';
	notify_smtp_disconnected_text(&a, MT_CLASS_AUTH, reason, text, sizeof(text));
	assert_true(strlen(text) <= MT_NOTIFICATION_TEXT_MAX);
	assert_non_null(strstr(text, "rec@staffing.example"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_session_table),
	    cmocka_unit_test(test_route_table),
	    cmocka_unit_test(test_mail_kind),
	    cmocka_unit_test(test_notice_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
