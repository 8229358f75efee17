/* What a negative SMTP reply means for the sender: a failure class and whether retrying the same
 * message later can succeed. Throttling and quota replies are recognised by their enhanced codes
 * and by the major providers' texts, and keep their class (and stay temporary) even when the
 * code is 5xx: Gmail's "550 5.4.5 Daily user sending limit exceeded" will pass tomorrow.
 *
 * The rules (a table in smtp_classify.c; the first that matches wins; texts are matched
 * case-insensitively against each line; "temporary" means temporary whatever the code):
 *   2xx, 3xx                                        -> none
 *   text "SubmissionQuotaExceeded" (M365), "sending limit", "sending quota" (Gmail),
 *     X.4.5 with "limit"                            -> quota, temporary
 *   X.2.2, 552, "mailbox full", "mailbox is full", "over quota"
 *     (the recipient's mailbox, not our account)    -> resp, by code
 *   text "quota exceeded", "QuotaExceeded"          -> quota, temporary
 *   421 in any phase                                -> throttle, temporary
 *   AUTH: 454                                       -> throttle, temporary
 *   AUTH: 432 (4.7.12 password transition), 530, 534, 535, 5.7.8, 5.7.9, 5.7.0 with "auth"
 *                                                   -> auth, permanent
 *   MAIL: 530, 5.7.57, "not authenticated", "authentication required"
 *                                                   -> auth, permanent
 *   4xx 4.7.x (not in STARTTLS), 4xx 4.2.1, 4xx 4.3.2, X.4.5
 *                                                   -> throttle, temporary
 *   X.5.3 ("Too many recipients")                   -> resp, by code
 *   text "rate limit", "too many", "try again later", "server busy", "throttl"
 *                                                   -> throttle, temporary
 *   RCPT/DATA/DATA_END: 5.7.x (policy, spam)        -> resp, permanent
 *   anything else                                   -> resp, 4xx temporary, 5xx permanent */
#ifndef MT_PROTO_SMTP_CLASSIFY_H
#define MT_PROTO_SMTP_CLASSIFY_H

#include "lib/failure.h"
#include "proto/smtp_reply.h"

#include <stdbool.h>

enum smtp_phase {
	SMTP_PHASE_BANNER,
	SMTP_PHASE_EHLO,
	SMTP_PHASE_STARTTLS,
	SMTP_PHASE_AUTH,
	SMTP_PHASE_MAIL,
	SMTP_PHASE_RCPT,
	SMTP_PHASE_DATA,     /* the reply to DATA */
	SMTP_PHASE_DATA_END, /* the reply after the final dot */
	SMTP_PHASE_RSET,
	SMTP_PHASE_QUIT,
};

struct smtp_verdict {
	enum mt_failure_class cls; /* MT_CLASS_NONE for a positive reply */
	bool permanent;
};

struct smtp_verdict smtp_classify_reply(const struct smtp_reply *reply, enum smtp_phase phase);

#endif
