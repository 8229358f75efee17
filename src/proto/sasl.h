/* SASL client encoders for SMTP AUTH (RFC 4954): PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-
 * login), XOAUTH2 (Google/Microsoft). Pure: they append to a capped buffer. The secret is read
 * only here; callers must treat the output as secret (wipe it, never log it). */
#ifndef MT_PROTO_SASL_H
#define MT_PROTO_SASL_H

#include "lib/buf.h"
#include "lib/secret.h"

#include <stddef.h>

enum sasl_mech {
	SASL_MECH_PLAIN = 1u << 0,
	SASL_MECH_LOGIN = 1u << 1,
	SASL_MECH_XOAUTH2 = 1u << 2,
	SASL_MECH_OAUTHBEARER = 1u << 3,
	SASL_MECH_CRAM_MD5 = 1u << 4,
};

/* Mechanism bit for a name ("PLAIN", case-insensitive); 0 when unknown. */
unsigned sasl_mech_from_name(const char *name, size_t len);
const char *sasl_mech_name(enum sasl_mech mech);

/* "AUTH PLAIN " base64("\0" user "\0" secret) "\r\n". -1 on cap or a NUL in user. */
int sasl_plain_command(struct mt_buf *out, const char *user, const struct mt_secret *secret);
/* base64("\0" user "\0" secret) "\r\n" alone: IMAP's AUTHENTICATE PLAIN initial response
 * (RFC 4959 SASL-IR) or its answer to "+". */
int sasl_plain_response(struct mt_buf *out, const char *user, const struct mt_secret *secret);
/* "AUTH LOGIN\r\n" */
int sasl_login_command(struct mt_buf *out);
/* base64(user) "\r\n" — the answer to the first 334. */
int sasl_login_user(struct mt_buf *out, const char *user);
/* base64(secret) "\r\n" — the answer to the second 334. */
int sasl_login_secret(struct mt_buf *out, const struct mt_secret *secret);
/* "AUTH XOAUTH2 " base64("user=" user "\x01auth=Bearer " token "\x01\x01") "\r\n" */
int sasl_xoauth2_command(struct mt_buf *out, const char *user, const struct mt_secret *token);

/* The XOAUTH2 message alone, base64 "\r\n" (IMAP's AUTHENTICATE XOAUTH2). */
int sasl_xoauth2_response(struct mt_buf *out, const char *user, const struct mt_secret *token);

/* The error a server sends as a base64 JSON 334 challenge after a failed XOAUTH2
 * ({"status":"401","schemes":"bearer","scope":"..."}). The client answers with an empty line
 * and then receives the final 535. */
struct sasl_xoauth2_error {
	char status[16];
	char scope[256];
};
/* Decodes the challenge text (after "334 "). 0 on success, -1 with *error_r if not base64
 * JSON of that shape. */
int sasl_xoauth2_parse_error(const char *challenge, size_t len, struct sasl_xoauth2_error *err_r,
                             const char **error_r);

#endif
