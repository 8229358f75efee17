/* OAuth 2.0 refresh (RFC 6749 §6) on the event loop: POSTs grant_type=refresh_token to a token
 * endpoint over HTTPS with libcurl's multi interface, whose sockets and timers are libevent
 * events — the loop never blocks on DNS, connect, TLS or a slow endpoint.
 *
 * HTTPS only (no redirects), the certificate verified against the system CAs plus `ca_file`,
 * the whole request capped at MT_OAUTH_TIMEOUT_MS and the reply at MT_OAUTH_RESPONSE_MAX.
 * A network, TLS or timeout failure is OAUTH_TEMPORARY; what the endpoint says is read by
 * proto/oauth_token.h.
 *
 * Ownership: the client copies every string of a request, the secrets too (wiped when the request
 * ends); the reply handed to `done` belongs to the callee for that call only — take the secrets
 * out of it (set the pointers to NULL) to keep them. oauth_refresher_free() ends every request
 * in flight without calling `done`. */
#ifndef MT_OAUTH_REFRESH_H
#define MT_OAUTH_REFRESH_H

#include "lib/secret.h"
#include "proto/oauth_token.h"

struct event_base;
struct oauth_refresher;

struct oauth_refresh_params {
	const char *token_url; /* https:// */
	const char *client_id;
	const struct mt_secret *client_secret; /* NULL for a public client (PKCE) */
	const struct mt_secret *refresh_token;
	const char *scope;   /* NULL: the grant's own */
	const char *ca_file; /* NULL: the system CAs only */
	long timeout_ms;     /* 0: MT_OAUTH_TIMEOUT_MS */
};

/* RFC 6749 §4.1.3 with RFC 7636 (PKCE): the authorisation code the provider sent to the
 * redirect URI, exchanged for the first access and refresh tokens. */
struct oauth_exchange_params {
	const char *token_url; /* https:// */
	const char *client_id;
	const struct mt_secret *client_secret; /* NULL for a public client */
	const struct mt_secret *code;
	const char *redirect_uri; /* exactly as in the authorisation request */
	const struct mt_secret
	    *code_verifier; /* the PKCE verifier behind the request's challenge */
	const char *ca_file;
	long timeout_ms;
};

/* `reply` is never NULL; for a failure before any answer its outcome is OAUTH_TEMPORARY and
 * its reason says what failed (connection, TLS, timeout, a reply that could not be read). */
typedef void oauth_refresh_done_fn(void *ctx, struct oauth_token_reply *reply);

/* NULL with *error_r when libcurl cannot start. */
struct oauth_refresher *oauth_refresher_new(struct event_base *base, const char **error_r);
void oauth_refresher_free(struct oauth_refresher **refresher);

/* Starts one refresh; `done` is called exactly once, from the loop, never from inside this
 * call. 0, or -1 with *error_r (bad parameters, too many in flight, out of memory). */
int oauth_refresh(struct oauth_refresher *refresher, const struct oauth_refresh_params *params,
                  oauth_refresh_done_fn *done, void *ctx, const char **error_r);

/* The same for an authorisation code: `done` gets the first tokens (an OAUTH_OK reply without a
 * refresh token means the provider gave none: the grant cannot be kept). */
int oauth_exchange(struct oauth_refresher *refresher, const struct oauth_exchange_params *params,
                   oauth_refresh_done_fn *done, void *ctx, const char **error_r);

#endif
