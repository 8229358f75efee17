#include "proto/sasl.h"
#include "lib/base64.h"
#include "lib/limits.h"

#include <stdbool.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct {
	enum sasl_mech mech;
	const char *name;
} mech_names[] = {
    {SASL_MECH_PLAIN, "PLAIN"},       {SASL_MECH_LOGIN, "LOGIN"},
    {SASL_MECH_XOAUTH2, "XOAUTH2"},   {SASL_MECH_OAUTHBEARER, "OAUTHBEARER"},
    {SASL_MECH_CRAM_MD5, "CRAM-MD5"},
};

unsigned sasl_mech_from_name(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(mech_names) / sizeof(mech_names[0]); i++) {
		if (strlen(mech_names[i].name) == len &&
		    strncasecmp(name, mech_names[i].name, len) == 0)
			return mech_names[i].mech;
	}
	return 0;
}

const char *sasl_mech_name(enum sasl_mech mech)
{
	for (size_t i = 0; i < sizeof(mech_names) / sizeof(mech_names[0]); i++) {
		if (mech_names[i].mech == mech)
			return mech_names[i].name;
	}
	return "UNKNOWN";
}

/* A user name ends up inside a framed message (NUL in PLAIN, ^A in XOAUTH2) or, if a caller got
 * it wrong, on a command line: control characters are refused everywhere, which covers the CR,
 * LF and NUL that would let it inject. */
static bool user_valid(const char *user)
{
	size_t len = strlen(user);
	if (len == 0 || len > MT_SASL_USER_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)user[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

/* Undoes a partial append so that a failed encoder leaves `out` as it was, secret bytes
 * wiped. */
static int rollback(struct mt_buf *out, size_t saved_len)
{
	if (out->data != NULL && out->len > saved_len) {
		sodium_memzero(out->data + saved_len, out->len - saved_len);
		out->len = saved_len;
	}
	return -1;
}

/* prefix base64(bytes) CRLF, all or nothing. */
static int append_b64_line(struct mt_buf *out, const char *prefix, const void *bytes, size_t len)
{
	size_t saved = out->len;
	if (mt_buf_append_str(out, prefix) < 0 || mt_base64_encode(out, bytes, len) < 0 ||
	    mt_buf_append(out, "\r\n", 2) < 0)
		return rollback(out, saved);
	return 0;
}

/* RFC 4616: message = [authzid] UTF8NUL authcid UTF8NUL passwd; passwd = 1*SAFE (no NUL). */
static int plain_encode(struct mt_buf *out, const char *prefix, const char *user,
                        const struct mt_secret *secret)
{
	size_t user_len = strlen(user);
	size_t secret_len = mt_secret_len(secret);
	const unsigned char *secret_bytes = mt_secret_bytes(secret);
	if (!user_valid(user) || secret_len == 0 || memchr(secret_bytes, '\0', secret_len) != NULL)
		return -1;
	unsigned char msg[1 + MT_SASL_USER_MAX + 1 + MT_SASL_SECRET_MAX];
	if (secret_len > MT_SASL_SECRET_MAX)
		return -1;
	size_t len = 0;
	msg[len++] = '\0';
	memcpy(msg + len, user, user_len);
	len += user_len;
	msg[len++] = '\0';
	memcpy(msg + len, secret_bytes, secret_len);
	len += secret_len;
	int ret = append_b64_line(out, prefix, msg, len);
	sodium_memzero(msg, sizeof(msg));
	return ret;
}

int sasl_plain_command(struct mt_buf *out, const char *user, const struct mt_secret *secret)
{
	return plain_encode(out, "AUTH PLAIN ", user, secret);
}

int sasl_plain_response(struct mt_buf *out, const char *user, const struct mt_secret *secret)
{
	return plain_encode(out, "", user, secret);
}

int sasl_login_command(struct mt_buf *out)
{
	return mt_buf_append_str(out, "AUTH LOGIN\r\n");
}

int sasl_login_user(struct mt_buf *out, const char *user)
{
	if (!user_valid(user))
		return -1;
	return append_b64_line(out, "", user, strlen(user));
}

int sasl_login_secret(struct mt_buf *out, const struct mt_secret *secret)
{
	return append_b64_line(out, "", mt_secret_bytes(secret), mt_secret_len(secret));
}

/* Google's XOAUTH2: "user=" {User} "^Aauth=Bearer " {Access Token} "^A^A". The token is an
 * RFC 6750 b64token, so anything but visible ASCII would be a broken token or an attempt to
 * break the framing. */
static int xoauth2_encode(struct mt_buf *out, const char *prefix, const char *user,
                          const struct mt_secret *token)
{
	static const char user_prefix[] = "user=";
	static const char auth_prefix[] = "\001auth=Bearer ";
	size_t user_len = strlen(user);
	size_t token_len = mt_secret_len(token);
	const unsigned char *token_bytes = mt_secret_bytes(token);
	if (!user_valid(user) || token_len == 0 || token_len > MT_SASL_SECRET_MAX)
		return -1;
	for (size_t i = 0; i < token_len; i++) {
		if (token_bytes[i] <= 0x20 || token_bytes[i] >= 0x7f)
			return -1;
	}
	unsigned char msg[sizeof(user_prefix) - 1 + MT_SASL_USER_MAX + sizeof(auth_prefix) - 1 +
	                  MT_SASL_SECRET_MAX + 2];
	size_t len = 0;
	memcpy(msg + len, user_prefix, sizeof(user_prefix) - 1);
	len += sizeof(user_prefix) - 1;
	memcpy(msg + len, user, user_len);
	len += user_len;
	memcpy(msg + len, auth_prefix, sizeof(auth_prefix) - 1);
	len += sizeof(auth_prefix) - 1;
	memcpy(msg + len, token_bytes, token_len);
	len += token_len;
	msg[len++] = '\001';
	msg[len++] = '\001';
	int ret = append_b64_line(out, prefix, msg, len);
	sodium_memzero(msg, sizeof(msg));
	return ret;
}

int sasl_xoauth2_command(struct mt_buf *out, const char *user, const struct mt_secret *token)
{
	return xoauth2_encode(out, "AUTH XOAUTH2 ", user, token);
}

int sasl_xoauth2_response(struct mt_buf *out, const char *user, const struct mt_secret *token)
{
	return xoauth2_encode(out, "", user, token);
}

/* Copies a JSON string, control characters and non-ASCII replaced by '?': the values go to logs
 * and API errors. Returns 0 if it did not fit. */
static int copy_printable(char *dst, size_t size, const char *src)
{
	size_t i = 0;
	for (; src[i] != '\0' && i + 1 < size; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[i] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
	}
	dst[i] = '\0';
	return src[i] == '\0';
}

/* The challenge is base64 (RFC 4954 §4) of a JSON object:
 *   {"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}   (Gmail)
 * "status" may also be a JSON number; other members are ignored so that a provider adding one
 * does not turn a clear auth failure into a protocol error. */
int sasl_xoauth2_parse_error(const char *challenge, size_t len, struct sasl_xoauth2_error *err_r,
                             const char **error_r)
{
	memset(err_r, 0, sizeof(*err_r));
	while (len > 0 && (challenge[0] == ' ' || challenge[0] == '\t')) {
		challenge++;
		len--;
	}
	while (len > 0 && (challenge[len - 1] == ' ' || challenge[len - 1] == '\t' ||
	                   challenge[len - 1] == '\r' || challenge[len - 1] == '\n'))
		len--;
	if (len == 0) {
		*error_r = "empty XOAUTH2 challenge";
		return -1;
	}
	if (len > MT_SMTP_REPLY_LINE_MAX) {
		*error_r = "XOAUTH2 challenge too long";
		return -1;
	}
	/* Padding is required by the codec; a server that leaves it out is still understood. */
	char text[MT_SMTP_REPLY_LINE_MAX + 3];
	memcpy(text, challenge, len);
	while (len % 4 != 0 && len < sizeof(text))
		text[len++] = '=';
	struct mt_buf json;
	mt_buf_init(&json, MT_SMTP_REPLY_LINE_MAX);
	if (mt_base64_decode(&json, text, len) < 0 || json.data == NULL) {
		mt_buf_free(&json);
		*error_r = "XOAUTH2 challenge is not base64";
		return -1;
	}
	json_error_t jerr;
	json_t *root = json_loadb(json.data, json.len, JSON_REJECT_DUPLICATES, &jerr);
	mt_buf_free(&json);
	if (root == NULL || !json_is_object(root)) {
		json_decref(root);
		*error_r = "XOAUTH2 challenge is not a JSON object";
		return -1;
	}
	int ret = -1;
	json_t *status = json_object_get(root, "status");
	json_t *scope = json_object_get(root, "scope");
	if (json_is_string(status)) {
		if (json_string_length(status) == 0 ||
		    !copy_printable(err_r->status, sizeof(err_r->status),
		                    json_string_value(status)))
			*error_r = "XOAUTH2 error status is empty or too long";
		else
			ret = 0;
	} else if (json_is_integer(status)) {
		char num[32];
		int n =
		    snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(status));
		if (n < 0 || (size_t)n >= sizeof(err_r->status))
			*error_r = "XOAUTH2 error status too long";
		else {
			memcpy(err_r->status, num, (size_t)n + 1);
			ret = 0;
		}
	} else {
		*error_r = "XOAUTH2 error has no status";
	}
	if (ret == 0 && scope != NULL) {
		if (!json_is_string(scope)) {
			*error_r = "XOAUTH2 error scope is not a string";
			ret = -1;
		} else {
			/* a scope list cut short still says what it was about */
			copy_printable(err_r->scope, sizeof(err_r->scope),
			               json_string_value(scope));
		}
	}
	json_decref(root);
	if (ret < 0)
		memset(err_r, 0, sizeof(*err_r));
	return ret;
}
