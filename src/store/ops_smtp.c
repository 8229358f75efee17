/* SMTP accounts, one per user. The sealed secret is bytes from src/crypto; it is stored and read
 * back, never logged and never looked at here. */
#include "store/store_smtp.h"
#include "store/sql.h"
#include "store/store_webhook.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "lib/str.h"

#include <string.h>

/* The names store_smtp.h's enums are stored as, for SMTP and IMAP accounts alike
 * (store_internal.h). */
const char *const store_account_state_names[STORE_ACCOUNT_NAMES] = {
    [STORE_ACCOUNT_OFF] = "off",
    [STORE_ACCOUNT_CONNECTED] = "connected",
    [STORE_ACCOUNT_DISCONNECTED] = "disconnected",
};
const char *const store_security_names[STORE_SECURITY_NAMES] = {
    [STORE_SECURITY_STARTTLS] = "starttls",
    [STORE_SECURITY_TLS] = "tls",
    [STORE_SECURITY_NONE] = "none",
};
const char *const store_auth_names[STORE_AUTH_NAMES] = {
    [STORE_AUTH_PASSWORD] = "password",
    [STORE_AUTH_XOAUTH2] = "xoauth2",
    [STORE_AUTH_NONE] = "none",
};
#define NAMES(table) (table), sizeof(table) / sizeof((table)[0])

const char *store_account_state_name(enum store_account_state state)
{
	return sql_name(NAMES(store_account_state_names), state, STORE_ACCOUNT_OFF);
}

const char *store_security_name(enum store_security security)
{
	return sql_name(NAMES(store_security_names), security, STORE_SECURITY_STARTTLS);
}

const char *store_auth_name(enum store_auth auth)
{
	return sql_name(NAMES(store_auth_names), auth, STORE_AUTH_PASSWORD);
}

static int parse_name(const char *const *names, size_t count, const char *name, unsigned *out)
{
	for (size_t i = 0; name != NULL && i < count; i++) {
		if (strcmp(names[i], name) == 0) {
			*out = (unsigned)i;
			return 0;
		}
	}
	return -1;
}

int store_security_parse(const char *name, enum store_security *security_r)
{
	unsigned v;
	if (parse_name(NAMES(store_security_names), name, &v) < 0)
		return -1;
	*security_r = (enum store_security)v;
	return 0;
}

int store_auth_parse(const char *name, enum store_auth *auth_r)
{
	unsigned v;
	if (parse_name(NAMES(store_auth_names), name, &v) < 0)
		return -1;
	*auth_r = (enum store_auth)v;
	return 0;
}

#define ACCOUNT_ROW(F, G, T)                                                                       \
	F(T, TEXT, "user_id", user_id)                                                             \
	STORE_ACCOUNT_COLUMNS(G, T)                                                                \
	G(T, TEXT, "preset", preset)                                                               \
	G(T, TEXT, "from_address", from_address)                                                   \
	G(T, TEXT, "confirmation_message_id", confirmation_message_id)
SQL_TABLE(account_table, ACCOUNT_ROW, struct store_smtp_account);

#define LIMIT_ROW(F, G, T)                                                                         \
	F(T, INT64, "max_count", limit)                                                            \
	G(T, INT, "window_s", window_s)
SQL_TABLE(limit_table, LIMIT_ROW, struct store_send_limit);

static int put_limits(struct store_tx *tx, const char *op, const char *user_id,
                      const struct store_send_limit *limits, size_t count)
{
	if (count > MT_SEND_LIMITS_MAX)
		return store_invalid(op, "too many send limits");
	if (sql_exec(tx, op, "DELETE FROM smtp_account_limits WHERE user_id = ?",
	             SQL_ARGS(SQL_TEXT(user_id))) < 0)
		return -1;
	for (size_t i = 0; i < count; i++) {
		if (sql_exec(tx, op,
		             "INSERT INTO smtp_account_limits (user_id, pos, max_count, window_s)"
		             " VALUES (?, ?, ?, ?)",
		             SQL_ARGS(SQL_TEXT(user_id), SQL_INT(i), SQL_INT(limits[i].limit),
		                      SQL_INT(limits[i].window_s))) < 0)
			return -1;
	}
	return 0;
}

int store_smtp_account_get(struct store_tx *tx, const char *org_id, const char *user_id,
                           struct store_smtp_account *account_r)
{
	static const char op[] = "store_smtp_account_get";
	memset(account_r, 0, sizeof(*account_r));
	int rc = sql_get(tx, op,
	                 "SELECT " SQL_COLUMNS(ACCOUNT_ROW) " FROM smtp_accounts"
	                                                    " WHERE user_id = ? AND org_id = ?",
	                 SQL_ARGS(SQL_TEXT(user_id), SQL_TEXT(org_id)), &account_table, account_r);
	if (rc != 0)
		return rc;
	return sql_list(tx, op,
	                "SELECT " SQL_COLUMNS(LIMIT_ROW) " FROM smtp_account_limits"
	                                                 " WHERE user_id = ? ORDER BY pos",
	                SQL_ARGS(SQL_TEXT(user_id)), &limit_table, account_r->limits,
	                MT_SEND_LIMITS_MAX, &account_r->limit_count);
}

int store_account_put_check(struct store_tx *tx, const char *op, enum store_account_state state,
                            size_t sealed_secret_len, size_t sealed_secret_max, const char *org_id,
                            const char *user_id)
{
	if ((unsigned)state > STORE_ACCOUNT_DISCONNECTED)
		return store_invalid(op, "unknown account state");
	if (sealed_secret_len > sealed_secret_max)
		return store_invalid(op, "sealed secret too long");
	if (store_need_write(tx, op) < 0)
		return -1;
	/* Accounts are reached through their user: a foreign user id is not found here. */
	return store_user_in_org(tx, op, org_id, user_id);
}

int store_smtp_account_put(struct store_tx *tx, const struct store_smtp_account *account)
{
	static const char op[] = "store_smtp_account_put";
	const struct store_smtp_account *a = account;
	if (a->limit_count > MT_SEND_LIMITS_MAX)
		return store_invalid(op, "too many send limits");
	int rc = store_account_put_check(tx, op, a->state, a->sealed_secret_len,
	                                 sizeof(a->sealed_secret), a->org_id, a->user_id);
	if (rc != 0)
		return rc;
	/* org_id is part of the conflict update's condition so that a row can never move between
	 * orgs, even if a user id were reused. */
	rc = sql_change(
	    tx, op,
	    "INSERT INTO smtp_accounts (user_id, org_id, state, preset, host, port, security, auth,"
	    " username, from_address, tls_fingerprint, sealed_secret, verified_at,"
	    " confirmation_message_id, last_error, updated_at)"
	    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	    " ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, preset = excluded.preset,"
	    " host = excluded.host, port = excluded.port, security = excluded.security,"
	    " auth = excluded.auth, username = excluded.username,"
	    " from_address = excluded.from_address, tls_fingerprint = excluded.tls_fingerprint,"
	    " sealed_secret = excluded.sealed_secret, verified_at = excluded.verified_at,"
	    " confirmation_message_id = excluded.confirmation_message_id,"
	    " last_error = excluded.last_error, updated_at = excluded.updated_at"
	    " WHERE smtp_accounts.org_id = excluded.org_id",
	    SQL_ARGS(SQL_TEXT(a->user_id), SQL_TEXT(a->org_id),
	             SQL_TEXT(store_account_state_names[a->state]), SQL_TEXT(a->preset),
	             SQL_TEXT(a->host), SQL_INT(a->port),
	             SQL_TEXT(store_security_name(a->security)), SQL_TEXT(store_auth_name(a->auth)),
	             SQL_TEXT(a->username), SQL_TEXT(a->from_address), SQL_TEXT(a->tls_fingerprint),
	             a->sealed_secret_len > 0 ? SQL_BLOB(a->sealed_secret, a->sealed_secret_len)
	                                      : SQL_NULL,
	             SQL_INT(a->verified_at), SQL_TEXT(a->confirmation_message_id),
	             SQL_TEXT(a->last_error), SQL_INT(mt_wall_s())));
	if (rc == 0)
		rc = put_limits(tx, op, a->user_id, a->limits, a->limit_count);
	if (rc == 0 && a->state != STORE_ACCOUNT_OFF)
		rc =
		    store_webhook_account_event(tx, a->org_id, a->user_id, "smtp",
		                                a->state == STORE_ACCOUNT_CONNECTED, a->last_error);
	return rc;
}

int store_smtp_account_set_limits(struct store_tx *tx, const char *org_id, const char *user_id,
                                  const struct store_send_limit *limits, size_t count)
{
	static const char op[] = "store_smtp_account_set_limits";
	if (count > MT_SEND_LIMITS_MAX)
		return store_invalid(op, "too many send limits");
	int rc = sql_change(
	    tx, op, "UPDATE smtp_accounts SET updated_at = ? WHERE user_id = ? AND org_id = ?",
	    SQL_ARGS(SQL_INT(mt_wall_s()), SQL_TEXT(user_id), SQL_TEXT(org_id)));
	return rc == 0 ? put_limits(tx, op, user_id, limits, count) : rc;
}

int store_smtp_account_disconnect(struct store_tx *tx, const struct store_smtp_account *seen,
                                  const char *reason)
{
	static const char op[] = "store_smtp_account_disconnect";
	if (seen->sealed_secret_len > sizeof(seen->sealed_secret))
		return store_invalid(op, "sealed secret too long");
	/* Every save seals afresh (a new nonce): the same sealed bytes are the same save. */
	int64_t n =
	    seen->sealed_secret_len > 0
	        ? sql_exec(tx, op,
	                   "UPDATE smtp_accounts SET state = ?, last_error = ?, updated_at = ?"
	                   " WHERE user_id = ? AND org_id = ? AND state = ? AND updated_at = ?"
	                   " AND sealed_secret = ?",
	                   SQL_ARGS(SQL_TEXT(store_account_state_names[STORE_ACCOUNT_DISCONNECTED]),
	                            SQL_TEXT(reason), SQL_INT(mt_wall_s()), SQL_TEXT(seen->user_id),
	                            SQL_TEXT(seen->org_id),
	                            SQL_TEXT(store_account_state_names[STORE_ACCOUNT_CONNECTED]),
	                            SQL_INT(seen->updated_at),
	                            SQL_BLOB(seen->sealed_secret, seen->sealed_secret_len)))
	        : sql_exec(tx, op,
	                   "UPDATE smtp_accounts SET state = ?, last_error = ?, updated_at = ?"
	                   " WHERE user_id = ? AND org_id = ? AND state = ? AND updated_at = ?"
	                   " AND sealed_secret IS NULL",
	                   SQL_ARGS(SQL_TEXT(store_account_state_names[STORE_ACCOUNT_DISCONNECTED]),
	                            SQL_TEXT(reason), SQL_INT(mt_wall_s()), SQL_TEXT(seen->user_id),
	                            SQL_TEXT(seen->org_id),
	                            SQL_TEXT(store_account_state_names[STORE_ACCOUNT_CONNECTED]),
	                            SQL_INT(seen->updated_at)));
	if (n == 1)
		return store_webhook_account_event(tx, seen->org_id, seen->user_id, "smtp", false,
		                                   reason);
	return n < 0 ? -1 : STORE_CONFLICT;
}

int store_smtp_account_off(struct store_tx *tx, const char *org_id, const char *user_id)
{
	static const char op[] = "store_smtp_account_off";
	/* NULL rather than a zeroblob: nothing of the secret's length survives, and secure_delete
	 * (db_sqlite.c) zeroes the freed bytes. */
	return sql_change(tx, op,
	                  "UPDATE smtp_accounts SET state = ?, sealed_secret = NULL, updated_at = ?"
	                  " WHERE user_id = ? AND org_id = ?",
	                  SQL_ARGS(SQL_TEXT(store_account_state_names[STORE_ACCOUNT_OFF]),
	                           SQL_INT(mt_wall_s()), SQL_TEXT(user_id), SQL_TEXT(org_id)));
}
