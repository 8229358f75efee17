/* SMTP accounts, one per user, with their send limits. The sealed secret is src/crypto's bytes,
 * stored and read back, never plaintext. Operations run inside a store job (store.h).
 *
 * Ownership: the caller owns the structs it passes in and out; nothing is allocated here. */
#ifndef MT_STORE_STORE_SMTP_H
#define MT_STORE_STORE_SMTP_H

#include "lib/limits.h"
#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum store_account_state { STORE_ACCOUNT_OFF, STORE_ACCOUNT_CONNECTED, STORE_ACCOUNT_DISCONNECTED };
/* How the connection is secured and how the account logs in (DESIGN.md §1 SMTP account); stored
 * as their names. */
enum store_security { STORE_SECURITY_STARTTLS, STORE_SECURITY_TLS, STORE_SECURITY_NONE };
enum store_auth { STORE_AUTH_PASSWORD, STORE_AUTH_XOAUTH2, STORE_AUTH_NONE };
const char *store_account_state_name(enum store_account_state state);
const char *store_security_name(enum store_security security);
const char *store_auth_name(enum store_auth auth);
/* 0, or -1 for a name that is not one of them. */
int store_security_parse(const char *name, enum store_security *security_r);
int store_auth_parse(const char *name, enum store_auth *auth_r);

struct store_send_limit {
	int64_t limit;
	int window_s; /* 60, 3600, 86400 */
};

struct store_smtp_account {
	char user_id[MT_ID_MAX];
	char org_id[MT_ID_MAX];
	enum store_account_state state;
	char preset[32];
	char host[MT_HOST_FIELD_MAX + 1];
	int port;
	enum store_security security;
	enum store_auth auth;
	char username[MT_ADDRESS_MAX + 1];
	char from_address[MT_ADDRESS_MAX + 1];
	struct store_send_limit limits[MT_SEND_LIMITS_MAX];
	size_t limit_count;
	char tls_fingerprint[MT_TLS_FINGERPRINT_MAX];
	unsigned char sealed_secret[MT_SEALED_MAX]; /* src/crypto's sealed form; never plaintext */
	size_t sealed_secret_len;
	int64_t verified_at;
	char confirmation_message_id[MT_ADDRESS_MAX + 1];
	char last_error[MT_ERROR_TEXT_MAX];
	int64_t updated_at;
};

/* STORE_NOT_FOUND when the user never set one up (the API shows state "off"). */
int store_smtp_account_get(struct store_tx *tx, const char *org_id, const char *user_id,
                           struct store_smtp_account *account_r);
/* Inserts or replaces the user's account. */
int store_smtp_account_put(struct store_tx *tx, const struct store_smtp_account *account);
/* Changes the limits only. */
int store_smtp_account_set_limits(struct store_tx *tx, const char *org_id, const char *user_id,
                                  const struct store_send_limit *limits, size_t count);
/* connected -> disconnected with `reason` as last_error, the settings kept — only if the account
 * is still the one `seen` (connected, the same updated_at and sealed secret): a node that saw a
 * failure with settings since replaced, or an account another node already disconnected, changes
 * nothing. 0 when this call changed it, STORE_CONFLICT when the fence held it back. */
int store_smtp_account_disconnect(struct store_tx *tx, const struct store_smtp_account *seen,
                                  const char *reason);
/* State off, secret wiped (the other settings are kept for the form). */
int store_smtp_account_off(struct store_tx *tx, const char *org_id, const char *user_id);

#endif
