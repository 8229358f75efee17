/* A live check of an SMTP account: connect, secure, authenticate and, when given, send one
 * message (the confirmation mail from the user to the user), all within a deadline. Used by
 * `mailtrail smtp-check` and by PUT /v1/smtp before settings are stored.
 *
 * Ownership: the probe copies what it needs from the params (the secret too, wiped after use)
 * and frees itself after calling `done` exactly once; the caller must keep `tls` alive until
 * then. smtp_probe_cancel() stops it without calling `done`. */
#ifndef MT_ENGINE_SMTP_PROBE_H
#define MT_ENGINE_SMTP_PROBE_H

#include "lib/failure.h"
#include "lib/limits.h"
#include "smtp/client.h"

#include <stddef.h>

struct smtp_probe;

struct smtp_probe_result {
	enum mt_failure_class cls; /* MT_CLASS_NONE on success */
	char reason[256];
	char reply[512];
	char fingerprint[MT_TLS_FINGERPRINT_MAX];
};

typedef void smtp_probe_done_fn(void *ctx, const struct smtp_probe_result *result);
typedef void smtp_probe_transcript_fn(void *ctx, char direction, const char *line, size_t len);

struct smtp_probe_params {
	struct smtp_client_params client; /* secret copied */
	const char *mail_from;            /* NULL: no message, just the session */
	const char *rcpt_to;
	const char *data; /* the message, copied */
	size_t data_len;
	int deadline_ms; /* whole check; 0 = 30 s */
};

struct smtp_probe *smtp_probe_start(struct event_base *base, struct evdns_base *dns,
                                    const struct smtp_probe_params *params,
                                    smtp_probe_done_fn *done, smtp_probe_transcript_fn *transcript,
                                    void *ctx, const char **error_r);
void smtp_probe_cancel(struct smtp_probe **probe);

#endif
