#include "oauth/authorize.h"
#include "lib/buf.h"
#include "lib/str.h"

#include <sodium.h>
#include <stdbool.h>
#include <string.h>

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

static int random_text(char out[OAUTH_RANDOM_TEXT_SIZE])
{
	if (sodium_init() < 0)
		return -1;
	unsigned char bytes[32];
	randombytes_buf(bytes, sizeof(bytes));
	sodium_bin2base64(out, OAUTH_RANDOM_TEXT_SIZE, bytes, sizeof(bytes),
	                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(bytes, sizeof(bytes));
	return 0;
}

int oauth_pkce_challenge(const char *verifier, char challenge[OAUTH_RANDOM_TEXT_SIZE])
{
	size_t len = strlen(verifier);
	if (len < 43 || len > 128 || sodium_init() < 0)
		return -1;
	for (size_t i = 0; i < len; i++)
		if (!unreserved((unsigned char)verifier[i]))
			return -1;
	unsigned char hash[crypto_hash_sha256_BYTES];
	crypto_hash_sha256(hash, (const unsigned char *)verifier, len);
	sodium_bin2base64(challenge, OAUTH_RANDOM_TEXT_SIZE, hash, sizeof(hash),
	                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return 0;
}

int oauth_pkce_new(char verifier[OAUTH_RANDOM_TEXT_SIZE], char challenge[OAUTH_RANDOM_TEXT_SIZE])
{
	if (random_text(verifier) < 0)
		return -1;
	return oauth_pkce_challenge(verifier, challenge);
}

int oauth_state_new(char state[OAUTH_RANDOM_TEXT_SIZE])
{
	return random_text(state);
}

/* RFC 3986 query component: unreserved bytes as they are, the rest %XX (a space too). */
static int query_add(struct mt_buf *out, const char *name, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	if (mt_buf_append_str(out, out->len > 0 && strchr(out->data, '?') != NULL ? "&" : "?") <
	        0 ||
	    mt_buf_append_str(out, name) < 0 || mt_buf_append(out, "=", 1) < 0)
		return -1;
	for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
		char enc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
		if (mt_buf_append(out, unreserved(*p) ? (const char *)p : enc,
		                  unreserved(*p) ? 1 : 3) < 0)
			return -1;
	}
	return 0;
}

int oauth_authorize_url(const struct oauth_authorize *a, char *out, size_t size,
                        const char **error_r)
{
	if (a->auth_url == NULL || strncmp(a->auth_url, "https://", 8) != 0 ||
	    strchr(a->auth_url, '?') != NULL) {
		*error_r = "the authorisation endpoint must be an https:// URL without a query";
		return -1;
	}
	if (a->client_id == NULL || a->redirect_uri == NULL || a->scope == NULL ||
	    a->state == NULL || a->code_challenge == NULL) {
		*error_r = "client id, redirect URI, scope, state and challenge are required";
		return -1;
	}
	struct mt_buf url;
	mt_buf_init(&url, size > 0 ? size - 1 : 0);
	int rc =
	    mt_buf_append_str(&url, a->auth_url) < 0 ||
	            query_add(&url, "response_type", "code") < 0 ||
	            query_add(&url, "client_id", a->client_id) < 0 ||
	            query_add(&url, "redirect_uri", a->redirect_uri) < 0 ||
	            query_add(&url, "scope", a->scope) < 0 ||
	            query_add(&url, "state", a->state) < 0 ||
	            query_add(&url, "code_challenge", a->code_challenge) < 0 ||
	            query_add(&url, "code_challenge_method", "S256") < 0 ||
	            (a->login_hint != NULL && query_add(&url, "login_hint", a->login_hint) < 0) ||
	            (a->extra != NULL &&
	             (mt_buf_append(&url, "&", 1) < 0 || mt_buf_append_str(&url, a->extra) < 0))
	        ? -1
	        : 0;
	if (rc == 0)
		mt_strlcpy(out, url.data, size);
	else
		*error_r = "the authorisation URL is too long";
	mt_buf_free(&url);
	return rc;
}
