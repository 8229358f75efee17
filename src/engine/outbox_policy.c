#include "engine/outbox_policy.h"

#include "lib/str.h"

#include <stdio.h>
#include <string.h>

enum tri { NO, YES, ANY };

/* The table of outbox_policy.h, row for row. */
static const struct transition {
	const char *name;
	enum tri pending, paused, expired, sent, failed;
	enum store_outbox_state state;
} transitions[] = {
    {"paused", YES, YES, ANY, ANY, ANY, STORE_OUTBOX_HELD},
    {"retry", YES, NO, NO, ANY, ANY, STORE_OUTBOX_QUEUED},
    {"all sent", NO, ANY, ANY, YES, NO, STORE_OUTBOX_SENT},
    {"some sent, some failed", NO, ANY, ANY, YES, YES, STORE_OUTBOX_PARTIAL},
    {"none sent", NO, ANY, ANY, NO, YES, STORE_OUTBOX_FAILED},
};

static bool pausing(enum mt_failure_class cls)
{
	return cls == MT_CLASS_THROTTLE || cls == MT_CLASS_QUOTA;
}

const char *outbox_transition_name(size_t index)
{
	return index < sizeof(transitions) / sizeof(transitions[0]) ? transitions[index].name
	                                                            : NULL;
}

static bool fits(enum tri want, bool have)
{
	return want == ANY || (want == YES) == have;
}

void outbox_verdict(const struct outbox_attempt *a, const struct mt_backoff *backoff,
                    struct outbox_verdict *v)
{
	bool pending = false, sent = a->sent_before > 0, failed = a->failed_before > 0;
	v->any_sent = false;
	v->expired = false;
	v->paused = false;
	v->cls = MT_CLASS_NONE;
	v->last_error[0] = '\0';
	v->next_attempt_at = 0;
	v->first_attempt_at = a->first_attempt_at != 0 ? a->first_attempt_at : a->now;
	const char *why = a->reason != NULL ? a->reason : "";
	for (size_t i = 0; i < a->rcpt_count; i++) {
		const struct outbox_rcpt_outcome *o = &a->outcomes[i];
		if (o->accepted) {
			v->rcpt_states[i] = STORE_RCPT_SENT;
			v->any_sent = sent = true;
			continue;
		}
		enum mt_failure_class cls = o->cls != MT_CLASS_NONE ? o->cls : a->cls;
		bool permanent = o->permanent && !pausing(cls);
		v->paused = v->paused || pausing(cls);
		v->rcpt_states[i] = permanent ? STORE_RCPT_FAILED : STORE_RCPT_PENDING;
		if (permanent)
			failed = true;
		else
			pending = true;
		/* The first refusal is the news (a partial delivery's last reply is the 250). */
		if (v->cls == MT_CLASS_NONE) {
			v->cls = o->cls != MT_CLASS_NONE   ? o->cls
			         : a->cls != MT_CLASS_NONE ? a->cls
			                                   : MT_CLASS_RESP;
			why = o->reply != NULL && o->reply[0] != '\0' ? o->reply : why;
		}
	}
	mt_strlcpy(v->last_error, v->cls != MT_CLASS_NONE ? why : "", sizeof(v->last_error));
	v->paused = v->paused && pending;
	if (pending && !v->paused) {
		struct mt_backoff policy = *backoff;
		policy.expiry_s += a->held_seconds;
		int64_t next;
		if (mt_backoff_next(&policy, v->first_attempt_at, a->now, a->attempts_before + 1,
		                    &next) == 0) {
			/* `now` is whole seconds rounded down and a claim asks "due <= now":
			 * without the second, a retry could come up to a second before its delay is
			 * over. */
			next += 1;
			v->next_attempt_at = next > a->not_before ? next : a->not_before;
		} else {
			v->expired = true;
			for (size_t i = 0; i < a->rcpt_count; i++)
				if (v->rcpt_states[i] == STORE_RCPT_PENDING)
					v->rcpt_states[i] = STORE_RCPT_FAILED;
			pending = false;
			failed = true;
			char reason[MT_ERROR_TEXT_MAX];
			snprintf(reason, sizeof(reason), "retry time ran out: %.400s",
			         v->last_error);
			mt_strlcpy(v->last_error, reason, sizeof(v->last_error));
		}
	}
	for (size_t i = 0; i < sizeof(transitions) / sizeof(transitions[0]); i++) {
		const struct transition *t = &transitions[i];
		if (fits(t->pending, pending) && fits(t->paused, v->paused) &&
		    fits(t->expired, v->expired) && fits(t->sent, sent) &&
		    fits(t->failed, failed)) {
			v->state = t->state;
			return;
		}
	}
	/* No recipient at all: nothing was sent, nothing is left to try. */
	v->state = STORE_OUTBOX_FAILED;
}

/* The table of outbox_session_failed() in outbox_policy.h. */
enum outbox_session_verdict outbox_session_failed(const struct outbox_session_failure *f)
{
	bool broken =
	    !f->relay && (f->cls == MT_CLASS_AUTH || (f->cls == MT_CLASS_TLS && f->certificate));
	if (!broken)
		return OUTBOX_SESSION_RETRY;
	if (f->confirming)
		return OUTBOX_SESSION_DISCONNECT;
	return f->awaiting_confirm ? OUTBOX_SESSION_AWAIT : OUTBOX_SESSION_CONFIRM;
}

const char *outbox_session_verdict_name(enum outbox_session_verdict verdict)
{
	static const char *const names[] = {
	    [OUTBOX_SESSION_RETRY] = "retry",
	    [OUTBOX_SESSION_CONFIRM] = "confirm",
	    [OUTBOX_SESSION_AWAIT] = "await",
	    [OUTBOX_SESSION_DISCONNECT] = "disconnect",
	};
	return (unsigned)verdict < sizeof(names) / sizeof(names[0]) ? names[verdict] : "?";
}

size_t outbox_body_claim_room(size_t node_bytes, size_t account_bytes_max)
{
	size_t room =
	    MT_SENDER_BODY_BYTES_MAX > node_bytes ? MT_SENDER_BODY_BYTES_MAX - node_bytes : 0;
	size_t account_room = MT_SENDER_ACCOUNT_BODY_BYTES_MAX > account_bytes_max
	                          ? MT_SENDER_ACCOUNT_BODY_BYTES_MAX - account_bytes_max
	                          : 0;
	return room < account_room ? room : account_room;
}

bool outbox_body_admits(size_t node_bytes, size_t account_bytes, size_t len)
{
	if (node_bytes > 0 &&
	    (len > MT_SENDER_BODY_BYTES_MAX - node_bytes || node_bytes > MT_SENDER_BODY_BYTES_MAX))
		return false;
	if (account_bytes > 0 && (len > MT_SENDER_ACCOUNT_BODY_BYTES_MAX - account_bytes ||
	                          account_bytes > MT_SENDER_ACCOUNT_BODY_BYTES_MAX))
		return false;
	return true;
}
