/* What a negative SMTP reply means for the sender: a failure class and whether retrying the same
 * message later can succeed. Throttling and quota replies are recognised by their enhanced codes
 * and by the major providers' texts, and keep their class (and stay temporary) even when the
 * code is 5xx: Gmail's "550 5.4.5 Daily user sending limit exceeded" will pass tomorrow. */
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
