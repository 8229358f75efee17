#include "proto/smtp_classify.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define P(phase)     (1u << (phase))
#define ANY_PHASE    0u
#define NOT_STARTTLS (~P(SMTP_PHASE_STARTTLS))
#define AFTER_RCPT   (P(SMTP_PHASE_RCPT) | P(SMTP_PHASE_DATA) | P(SMTP_PHASE_DATA_END))

enum rule_perm {
	BY_CODE,   /* 4xx temporary, 5xx permanent */
	TEMPORARY, /* will pass later whatever the code says */
	PERMANENT,
};

struct rule {
	unsigned phases;      /* bit set of P(phase); 0 = any */
	int code_lo, code_hi; /* reply code range */
	const char *enhanced; /* "c.s.d" with "*" for any component; NULL = not looked at */
	const char *text;     /* case-insensitive substring of one line; NULL = not looked at */
	enum mt_failure_class cls;
	enum rule_perm perm;
};

/* First match wins, so the order is the policy: provider quota texts, then the recipient's own
 * full mailbox (which shares words with them), then generic quota, then throttling, auth, and
 * policy. The header comment states the same rules in prose; keep both in step. */
static const struct rule rules[] = {
    /* Sender quotas that lift with time. M365: "554 5.2.0 STOREDRV.Submission.Exception:
     * SubmissionQuotaExceededException"; Gmail: "550 5.4.5 Daily user sending limit
     * exceeded", Workspace: "550 5.4.5 Daily sending quota exceeded". */
    {ANY_PHASE, 400, 599, NULL, "SubmissionQuotaExceeded", MT_CLASS_QUOTA, TEMPORARY},
    {ANY_PHASE, 400, 599, NULL, "sending limit", MT_CLASS_QUOTA, TEMPORARY},
    {ANY_PHASE, 400, 599, NULL, "sending quota", MT_CLASS_QUOTA, TEMPORARY},
    {ANY_PHASE, 400, 599, "*.4.5", "limit", MT_CLASS_QUOTA, TEMPORARY},
    /* The recipient's mailbox is full (RFC 3463 X.2.2, RFC 5321 552): about that recipient,
     * not our account, even when the text says "quota exceeded". */
    {ANY_PHASE, 400, 599, "*.2.2", NULL, MT_CLASS_RESP, BY_CODE},
    {ANY_PHASE, 552, 552, NULL, NULL, MT_CLASS_RESP, BY_CODE},
    {ANY_PHASE, 400, 599, NULL, "mailbox full", MT_CLASS_RESP, BY_CODE},
    {ANY_PHASE, 400, 599, NULL, "mailbox is full", MT_CLASS_RESP, BY_CODE},
    {ANY_PHASE, 400, 599, NULL, "over quota", MT_CLASS_RESP, BY_CODE},
    {ANY_PHASE, 400, 599, NULL, "quota exceeded", MT_CLASS_QUOTA, TEMPORARY},
    {ANY_PHASE, 400, 599, NULL, "QuotaExceeded", MT_CLASS_QUOTA, TEMPORARY},
    /* 421: the server is closing the connection on us, whatever the phase. */
    {ANY_PHASE, 421, 421, NULL, NULL, MT_CLASS_THROTTLE, TEMPORARY},
    /* AUTH. Gmail "454 4.7.0 Too many login attempts, please try again later" and
     * "454 4.7.0 Temporary authentication failure" must not disconnect the account. */
    {P(SMTP_PHASE_AUTH), 454, 454, NULL, NULL, MT_CLASS_THROTTLE, TEMPORARY},
    /* RFC 4954: 432 4.7.12 password transition needed: only the user can fix it. */
    {P(SMTP_PHASE_AUTH), 432, 432, NULL, NULL, MT_CLASS_AUTH, PERMANENT},
    /* 535 5.7.8 bad credentials (Gmail, M365 5.7.3 / 5.7.139), 534 5.7.9 / 5.7.14
     * mechanism too weak or web login required, 530 5.7.0 authentication required. */
    {P(SMTP_PHASE_AUTH), 530, 530, NULL, NULL, MT_CLASS_AUTH, PERMANENT},
    {P(SMTP_PHASE_AUTH), 534, 535, NULL, NULL, MT_CLASS_AUTH, PERMANENT},
    {P(SMTP_PHASE_AUTH), 500, 599, "5.7.8", NULL, MT_CLASS_AUTH, PERMANENT},
    {P(SMTP_PHASE_AUTH), 500, 599, "5.7.9", NULL, MT_CLASS_AUTH, PERMANENT},
    {P(SMTP_PHASE_AUTH), 500, 599, "5.7.0", "auth", MT_CLASS_AUTH, PERMANENT},
    /* MAIL refused because the session is not authenticated: "530 5.7.0 Authentication
     * required", Exchange "530 5.7.1 Client was not authenticated", M365 "530 5.7.57 Client
     * not authenticated to send mail". */
    {P(SMTP_PHASE_MAIL), 530, 530, NULL, NULL, MT_CLASS_AUTH, PERMANENT},
    {P(SMTP_PHASE_MAIL), 500, 599, "5.7.57", NULL, MT_CLASS_AUTH, PERMANENT},
    {P(SMTP_PHASE_MAIL), 500, 599, NULL, "not authenticated", MT_CLASS_AUTH, PERMANENT},
    {P(SMTP_PHASE_MAIL), 500, 599, NULL, "authentication required", MT_CLASS_AUTH, PERMANENT},
    /* Throttling by enhanced code: 4.7.x (Gmail 4.7.0 "Try again later", 451 4.7.1
     * greylisting, M365 4.7.500-699 "Server busy"), 4.2.1 (recipient receiving too fast),
     * 4.3.2 (not accepting messages), X.4.5 (congestion). Not during STARTTLS, where
     * "454 4.7.0 TLS not available" is a TLS matter for the caller. */
    {NOT_STARTTLS, 400, 499, "4.7.*", NULL, MT_CLASS_THROTTLE, TEMPORARY},
    {ANY_PHASE, 400, 499, "4.2.1", NULL, MT_CLASS_THROTTLE, TEMPORARY},
    {ANY_PHASE, 400, 499, "4.3.2", NULL, MT_CLASS_THROTTLE, TEMPORARY},
    {ANY_PHASE, 400, 599, "*.4.5", NULL, MT_CLASS_THROTTLE, TEMPORARY},
    /* "452 4.5.3 Too many recipients": split the batch, not a throttle. */
    {ANY_PHASE, 400, 599, "*.5.3", NULL, MT_CLASS_RESP, BY_CODE},
    /* Throttling by text, temporary even under a 5xx. */
    {ANY_PHASE, 400, 599, NULL, "rate limit", MT_CLASS_THROTTLE, TEMPORARY},
    {ANY_PHASE, 400, 599, NULL, "too many", MT_CLASS_THROTTLE, TEMPORARY},
    {ANY_PHASE, 400, 599, NULL, "try again later", MT_CLASS_THROTTLE, TEMPORARY},
    {ANY_PHASE, 400, 599, NULL, "server busy", MT_CLASS_THROTTLE, TEMPORARY},
    {ANY_PHASE, 400, 599, NULL, "throttl", MT_CLASS_THROTTLE, TEMPORARY},
    /* Policy and spam rejections of a recipient or a message: final. */
    {AFTER_RCPT, 500, 599, "5.7.*", NULL, MT_CLASS_RESP, PERMANENT},
};

/* ASCII case-insensitive substring search. */
static bool contains_ci(const char *hay, const char *needle)
{
	size_t n = strlen(needle);
	for (; *hay != '\0'; hay++) {
		size_t i = 0;
		while (i < n && hay[i] != '\0') {
			char a = hay[i], b = needle[i];
			if (a >= 'A' && a <= 'Z')
				a = (char)(a - 'A' + 'a');
			if (b >= 'A' && b <= 'Z')
				b = (char)(b - 'A' + 'a');
			if (a != b)
				break;
			i++;
		}
		if (i == n)
			return true;
	}
	return false;
}

static bool reply_contains(const struct smtp_reply *reply, const char *needle)
{
	for (unsigned i = 0; i < reply->line_count; i++) {
		if (contains_ci(reply->lines[i], needle))
			return true;
	}
	return false;
}

/* Compares "4.7.500" with "4.7.*" component by component. */
static int enhanced_matches(const char *code, const char *pattern)
{
	if (code[0] == '\0')
		return 0;
	for (;;) {
		size_t clen = strcspn(code, ".");
		size_t plen = strcspn(pattern, ".");
		if (!(plen == 1 && pattern[0] == '*') &&
		    (clen != plen || memcmp(code, pattern, clen) != 0))
			return 0;
		code += clen;
		pattern += plen;
		if (*code == '\0' || *pattern == '\0')
			return *code == *pattern;
		code++;
		pattern++;
	}
}

static int rule_matches(const struct rule *rule, const struct smtp_reply *reply,
                        enum smtp_phase phase)
{
	return (rule->phases == 0 || (rule->phases & P(phase)) != 0) &&
	       reply->code >= rule->code_lo && reply->code <= rule->code_hi &&
	       (rule->enhanced == NULL || enhanced_matches(reply->enhanced, rule->enhanced)) &&
	       (rule->text == NULL || reply_contains(reply, rule->text));
}

struct smtp_verdict smtp_classify_reply(const struct smtp_reply *reply, enum smtp_phase phase)
{
	if (reply->code >= 200 && reply->code < 400)
		return (struct smtp_verdict){MT_CLASS_NONE, false};
	if (reply->code < 200 || reply->code > 599)
		return (struct smtp_verdict){MT_CLASS_PROTO, true};
	bool by_code = reply->code >= 500;
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		const struct rule *rule = &rules[i];
		if (!rule_matches(rule, reply, phase))
			continue;
		bool permanent = rule->perm == BY_CODE ? by_code : rule->perm == PERMANENT;
		return (struct smtp_verdict){rule->cls, permanent};
	}
	return (struct smtp_verdict){MT_CLASS_RESP, by_code};
}
