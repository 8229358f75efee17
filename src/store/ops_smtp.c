/* SMTP accounts, one per user. The sealed secret is bytes from src/crypto; it is stored and read
 * back, never logged and never looked at here. */
#include "store/store_smtp.h"
#include "store/sql.h"
#include "store/store_webhook.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "lib/str.h"

#include <stddef.h>
#include <string.h>

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

static int put_account_limits(struct store_tx *tx, const char *op, const void *account)
{
	const struct store_smtp_account *a = account;
	return put_limits(tx, op, a->user_id, a->limits, a->limit_count);
}

static const struct store_account_kind smtp_kind = {
    STORE_ACCOUNT_KIND("smtp", SQL_COLUMNS(ACCOUNT_ROW), mt_wall_s),
    .items =
        STORE_ACCOUNT_ITEMS(struct store_smtp_account, limits, limit_count, "smtp_account_limits",
                            SQL_COLUMNS(LIMIT_ROW), limit_table, put_account_limits),
    .disconnect = "UPDATE smtp_accounts SET state = ?1, last_error = ?2, updated_at = ?3"
                  " WHERE user_id = ?4 AND org_id = ?5 AND state = ?6 AND updated_at = ?7"
                  " AND sealed_secret IS NULL",
    .disconnect_secret = "UPDATE smtp_accounts SET state = ?1, last_error = ?2, updated_at = ?3"
                         " WHERE user_id = ?4 AND org_id = ?5 AND state = ?6"
                         " AND updated_at = ?7 AND sealed_secret = ?8",
};

int store_smtp_account_put(struct store_tx *tx, const struct store_smtp_account *account)
{
	const struct store_smtp_account *a = account;
	return store_account_put(
	    tx, "store_smtp_account_put", &smtp_kind, STORE_ACCOUNT_SAVE(a, a->limit_count),
	    STORE_ACCOUNT_UPSERT("smtp_accounts", "preset, from_address, confirmation_message_id",
	                         "?, ?, ?",
	                         "preset = excluded.preset, from_address = excluded.from_address,"
	                         " confirmation_message_id = excluded.confirmation_message_id"),
	    SQL_ARGS(STORE_ACCOUNT_ARGS(a, mt_wall_s()), SQL_TEXT(a->preset),
	             SQL_TEXT(a->from_address), SQL_TEXT(a->confirmation_message_id)));
}

int store_smtp_account_get(struct store_tx *tx, const char *org_id, const char *user_id,
                           struct store_smtp_account *account_r)
{
	return store_account_read(tx, "store_smtp_account_get", &smtp_kind, org_id, user_id,
	                          account_r, sizeof(*account_r));
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
	return store_account_disconnect(tx, "store_smtp_account_disconnect", &smtp_kind,
	                                seen->org_id, seen->user_id, seen->updated_at,
	                                seen->sealed_secret, seen->sealed_secret_len,
	                                sizeof(seen->sealed_secret), reason);
}

int store_smtp_account_off(struct store_tx *tx, const char *org_id, const char *user_id)
{
	return store_account_off(tx, "store_smtp_account_off", &smtp_kind, org_id, user_id);
}
