#include "proto/oauth_token.h"
#include "lib/limits.h"
#include "lib/str.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *oauth_outcome_name(enum oauth_outcome outcome)
{
	static const char *const names[] = {
	    [OAUTH_OK] = "ok",
	    [OAUTH_REVOKED] = "revoked",
	    [OAUTH_REFUSED] = "refused",
	    [OAUTH_TEMPORARY] = "temporary",
	};
	return (size_t)outcome < sizeof(names) / sizeof(names[0]) ? names[outcome] : "?";
}

void oauth_token_reply_clear(struct oauth_token_reply *reply)
{
	mt_secret_free(&reply->access_token);
	mt_secret_free(&reply->refresh_token);
	memset(reply, 0, sizeof(*reply));
}

/* Printable ASCII only: a reason is logged and shown to people. */
static void copy_printable(char *out, size_t size, const char *in)
{
	size_t n = 0;
	for (; in != NULL && *in != '\0' && n + 1 < size; in++)
		out[n++] = (*in >= 0x20 && *in < 0x7f) ? *in : '?';
	out[n] = '\0';
}

/* RFC 6749 §5.2 codes (and RFC 8628's slow_down) that say "later", not "no". */
static bool error_is_temporary(const char *code)
{
	return strcmp(code, "temporarily_unavailable") == 0 || strcmp(code, "server_error") == 0 ||
	       strcmp(code, "slow_down") == 0;
}

static int read_error(long status, json_t *root, struct oauth_token_reply *reply,
                      const char **error_r)
{
	json_t *code = root != NULL ? json_object_get(root, "error") : NULL;
	if (!json_is_string(code) || json_string_length(code) == 0) {
		if (status >= 500 || status == 429) {
			reply->outcome = OAUTH_TEMPORARY;
			snprintf(reply->reason, sizeof(reply->reason),
			         "the token endpoint answered HTTP %ld", status);
			return 0;
		}
		*error_r = "an error reply without an \"error\" code";
		return -1;
	}
	copy_printable(reply->error, sizeof(reply->error), json_string_value(code));
	json_t *description = json_object_get(root, "error_description");
	char text[160] = "";
	if (json_is_string(description))
		copy_printable(text, sizeof(text), json_string_value(description));
	snprintf(reply->reason, sizeof(reply->reason), "%.63s%s%.159s (HTTP %ld)", reply->error,
	         text[0] != '\0' ? ": " : "", text, status);
	if (strcmp(reply->error, "invalid_grant") == 0)
		reply->outcome = OAUTH_REVOKED;
	else if (error_is_temporary(reply->error) || status >= 500 || status == 429)
		reply->outcome = OAUTH_TEMPORARY;
	else
		reply->outcome = OAUTH_REFUSED;
	return 0;
}

static struct mt_secret *token_of(json_t *root, const char *name, bool required,
                                  const char **error_r)
{
	json_t *value = json_object_get(root, name);
	if (value == NULL && !required)
		return NULL;
	size_t len = json_is_string(value) ? json_string_length(value) : 0;
	if (len == 0 || len > MT_OAUTH_TOKEN_MAX) {
		*error_r = len > MT_OAUTH_TOKEN_MAX ? "a token over its cap"
		                                    : "a token that is not a string";
		return NULL;
	}
	const char *text = json_string_value(value);
	/* A token goes into a SASL message and a header: no control bytes, no NUL. */
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)text[i] < 0x21 || (unsigned char)text[i] == 0x7f) {
			*error_r = "a token with a control byte or space";
			return NULL;
		}
	}
	struct mt_secret *secret = mt_secret_new(text, len);
	if (secret == NULL)
		*error_r = "out of memory";
	return secret;
}

static int read_token(json_t *root, struct oauth_token_reply *reply, const char **error_r)
{
	json_t *type = json_object_get(root, "token_type");
	/* RFC 6749 §5.1 requires it; some endpoints leave it out. Anything but Bearer is not for
	 * XOAUTH2. */
	if (type != NULL &&
	    (!json_is_string(type) || strcasecmp(json_string_value(type), "bearer") != 0)) {
		*error_r = "a token_type other than Bearer";
		return -1;
	}
	json_t *expires = json_object_get(root, "expires_in");
	if (expires != NULL) {
		json_int_t seconds = 0;
		if (json_is_integer(expires))
			seconds = json_integer_value(expires);
		else if (json_is_string(expires)) /* seen from some endpoints: "3599" */
			seconds = strtoll(json_string_value(expires), NULL, 10);
		if (seconds < 0 || seconds > 10LL * 365 * 24 * 3600) {
			*error_r = "an expires_in out of range";
			return -1;
		}
		reply->expires_in = (int64_t)seconds;
	}
	const char *error = NULL;
	reply->access_token = token_of(root, "access_token", true, &error);
	if (reply->access_token == NULL) {
		*error_r = error;
		return -1;
	}
	reply->refresh_token = token_of(root, "refresh_token", false, &error);
	if (reply->refresh_token == NULL && error != NULL) {
		mt_secret_free(&reply->access_token);
		*error_r = error;
		return -1;
	}
	reply->outcome = OAUTH_OK;
	mt_strlcpy(reply->reason, "a new access token", sizeof(reply->reason));
	return 0;
}

int oauth_token_reply_parse(long status, const char *body, size_t len,
                            struct oauth_token_reply *reply_r, const char **error_r)
{
	memset(reply_r, 0, sizeof(*reply_r));
	if (len > MT_OAUTH_RESPONSE_MAX) {
		*error_r = "the reply is over its cap";
		return -1;
	}
	json_error_t jerr;
	json_t *root = len > 0 ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
	if (root != NULL && !json_is_object(root)) {
		json_decref(root);
		root = NULL;
	}
	int rc;
	if (status == 200) {
		if (root == NULL) {
			*error_r = "a 200 reply that is not a JSON object";
			return -1;
		}
		rc = read_token(root, reply_r, error_r);
	} else {
		rc = read_error(status, root, reply_r, error_r);
	}
	json_decref(root);
	return rc;
}
