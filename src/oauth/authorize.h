/* The start of the authorisation-code flow (RFC 6749 §4.1.1) with PKCE (RFC 7636, S256): the
 * URL a user's browser is sent to, and the values bound to it. Pure but for the random bytes
 * (libsodium). Ownership: everything is written into the caller's buffers. */
#ifndef MT_OAUTH_AUTHORIZE_H
#define MT_OAUTH_AUTHORIZE_H

#include <stddef.h>

/* 32 random bytes in base64url without padding: 43 characters, NUL included below. */
#define OAUTH_RANDOM_TEXT_SIZE 44

/* A PKCE verifier (RFC 7636 §4.1: 43 unreserved characters) and its S256 challenge. 0 or -1. */
int oauth_pkce_new(char verifier[OAUTH_RANDOM_TEXT_SIZE], char challenge[OAUTH_RANDOM_TEXT_SIZE]);
/* BASE64URL(SHA256(verifier)) (RFC 7636 §4.2); -1 when the verifier is not 43-128 unreserved
 * characters. */
int oauth_pkce_challenge(const char *verifier, char challenge[OAUTH_RANDOM_TEXT_SIZE]);
/* An unguessable `state` (RFC 6749 §10.12). 0 or -1. */
int oauth_state_new(char state[OAUTH_RANDOM_TEXT_SIZE]);

struct oauth_authorize {
	const char *auth_url; /* the provider's authorisation endpoint, https:// */
	const char *client_id;
	const char *redirect_uri;
	const char *scope; /* space-separated */
	const char *state;
	const char *code_challenge;
	const char *login_hint; /* NULL or the user's address */
	const char *extra; /* NULL or "name=value&..." already encoded (Google's access_type) */
};

/* The authorisation URL into out[size]. 0, or -1 with *error_r (a missing part, a non-https
 * endpoint, or a URL longer than size). */
int oauth_authorize_url(const struct oauth_authorize *a, char *out, size_t size,
                        const char **error_r);

#endif
