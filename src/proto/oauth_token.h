/* The reply of an OAuth 2.0 token endpoint to a refresh (RFC 6749 §5.1 / §5.2, §6), read into
 * what the engine needs to decide: a new access token (and perhaps a rotated refresh token) and
 * its lifetime, or an error — with `invalid_grant` (a revoked or expired grant, consent
 * withdrawn) set apart from everything that may pass by itself.
 *
 *   §5.1: HTTP 200, application/json {"access_token", "token_type", "expires_in"?,
 *         "refresh_token"?, "scope"?}
 *   §5.2: HTTP 400 (401 for invalid_client) {"error", "error_description"?, "error_uri"?}
 *
 * Pure (no I/O): the body is complete when this is called. Ownership: the tokens it finds are
 * written into secrets the caller frees (mt_secret_free wipes them); nothing else is kept. */
#ifndef MT_PROTO_OAUTH_TOKEN_H
#define MT_PROTO_OAUTH_TOKEN_H

#include "lib/secret.h"

#include <stddef.h>
#include <stdint.h>

enum oauth_outcome {
	OAUTH_OK,
	OAUTH_REVOKED,   /* invalid_grant: the grant is gone; only the user can give a new one */
	OAUTH_REFUSED,   /* another definite refusal (invalid_client, unauthorized_client, ...):
	                    the operator's client settings are wrong */
	OAUTH_TEMPORARY, /* a 5xx, 429, temporarily_unavailable, a network or TLS failure: retry */
};

const char *oauth_outcome_name(enum oauth_outcome outcome);

struct oauth_token_reply {
	enum oauth_outcome outcome;
	struct mt_secret *access_token;  /* OAUTH_OK: malloc'd, the caller frees */
	struct mt_secret *refresh_token; /* OAUTH_OK and rotated by the server: else NULL */
	int64_t expires_in;              /* seconds; 0 when the server did not say */
	char error[64];                  /* the §5.2 error code, "" when none */
	char reason[256];                /* one line for people: code and description */
};

/* Reads the reply of HTTP status `status` with body `body`. 0 with *reply_r filled (also for
 * the refusals and temporary failures, which are answers); -1 with *error_r when the body is
 * not such a reply (not JSON, a 200 without an access token, a token over MT_OAUTH_TOKEN_MAX,
 * a token_type other than Bearer) — the caller treats that as temporary. */
int oauth_token_reply_parse(long status, const char *body, size_t len,
                            struct oauth_token_reply *reply_r, const char **error_r);

/* Frees the secrets of a reply (wiped) and clears it. */
void oauth_token_reply_clear(struct oauth_token_reply *reply);

#endif
