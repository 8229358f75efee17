/* Webhook deliveries over HTTP(S) on the event loop: one JSON POST per call through libcurl's
 * multi interface, whose sockets and timers are libevent events (the approach of
 * oauth/refresh.c), so the loop never blocks on DNS, connect, TLS or a slow receiver.
 *
 * HTTPS with the certificate verified (system CAs plus `ca_file`); plain http only when the
 * caller says the host is allowed. No redirects. Every address libcurl is about to connect to
 * passes the same rule as user-supplied mail hosts (lib/cidr.h mt_addr_is_private, unless in
 * `allow_private`): the check is on the socket's own address, so a name that resolves
 * differently at delivery time than when it was checked cannot reach the server's network.
 * The request is capped at `timeout_ms` (<= MT_WEBHOOK_TIMEOUT_MS); the receiver's reply body
 * is read and dropped.
 *
 * Also the signature (pure): X-Mailtrail-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
 * "<t>.<body>")>.
 *
 * Ownership: a request copies what it needs; webhook_client_free() ends every request in
 * flight without calling `done`. */
#ifndef MT_WEBHOOK_CLIENT_H
#define MT_WEBHOOK_CLIENT_H

#include "lib/cidr.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct webhook_client;

/* "t=" + 20 digits + ",v1=" + 64 hex + NUL, with room. */
#define WEBHOOK_SIGNATURE_MAX 128

/* The signature header's value for `body` sent at unix time `t`. */
void webhook_sign(const unsigned char *secret, size_t secret_len, int64_t t, const char *body,
                  size_t body_len, char out[WEBHOOK_SIGNATURE_MAX]);

struct webhook_post {
	const char *url;
	const char *body; /* JSON */
	size_t body_len;
	const char *signature; /* the X-Mailtrail-Signature value */
	const char *event_id;  /* X-Mailtrail-Event-Id */
	bool allow_http;       /* the URL's host is one the operator allows plain http to */
	const struct mt_cidr_list *allow_private;
	const char *ca_file; /* NULL: the system CAs only */
	long timeout_ms;     /* 0: MT_WEBHOOK_TIMEOUT_MS */
};

/* status: the HTTP status, 0 when there was none; error: why it failed ("" for an answer). */
typedef void webhook_post_done_fn(void *ctx, int status, const char *error);

struct webhook_client *webhook_client_new(struct event_base *base, const char **error_r);
void webhook_client_free(struct webhook_client **client);

/* Starts one POST; `done` is called exactly once from the loop, never from inside this call.
 * 0, or -1 with *error_r (bad URL, too many in flight, out of memory). */
int webhook_client_post(struct webhook_client *client, const struct webhook_post *post,
                        webhook_post_done_fn *done, void *ctx, const char **error_r);

/* Splits an http(s) URL's host out (brackets of an IPv6 literal removed, lower-cased); sets
 * *https_r. -1 when it is not an absolute http(s) URL with a host, or has userinfo. */
int webhook_url_host(const char *url, char *host, size_t host_size, bool *https_r);

#endif
