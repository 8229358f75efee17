/* The send governor's slots and per-account rows (store_governor.h). */
#include "store/store_governor.h"
#include "store/sql.h"
#include "store/store.h"
#include "store/store_internal.h"

#include <string.h>

#define GOVERNOR_ROW(F, G, T)                                                                      \
	F(T, TEXT, "account", account)                                                             \
	G(T, TEXT, "org_id", org_id)                                                               \
	G(T, TEXT, "user_id", user_id)                                                             \
	G(T, BOOL, "relay", relay)                                                                 \
	G(T, INT64, "wake_at_ms", wake_at_ms)                                                      \
	G(T, INT64, "paused_until_ms", paused_until_ms)                                            \
	G(T, INT, "pauses", pauses)
SQL_TABLE(governor_table, GOVERNOR_ROW, struct store_governor);

int store_governor_lock(struct store_tx *tx, const char *account, const char *org_id,
                        const char *user_id, bool relay, struct store_governor *row_r)
{
	static const char op[] = "store_governor_lock";
	if (store_need_write(tx, op) < 0)
		return -1;
	/* The update of an existing row is what takes its lock (PostgreSQL: until the commit). */
	if (sql_exec(
	        tx, op,
	        "INSERT INTO send_governors (account, org_id, user_id, relay) VALUES (?, ?, ?, ?)"
	        " ON CONFLICT (account) DO UPDATE SET org_id = excluded.org_id",
	        SQL_ARGS(SQL_TEXT(account), SQL_TEXT(org_id), SQL_TEXT(user_id), SQL_INT(relay))) <
	    0)
		return -1;
	return store_governor_get(tx, account, row_r);
}

int store_governor_get(struct store_tx *tx, const char *account, struct store_governor *row_r)
{
	memset(row_r, 0, sizeof(*row_r));
	return sql_get(tx, "store_governor_get",
	               "SELECT " SQL_COLUMNS(GOVERNOR_ROW) " FROM send_governors WHERE account = ?",
	               SQL_ARGS(SQL_TEXT(account)), &governor_table, row_r);
}

int store_governor_set(struct store_tx *tx, const struct store_governor *row)
{
	return sql_change(
	    tx, "store_governor_set",
	    "UPDATE send_governors SET wake_at_ms = ?, paused_until_ms = ?, pauses = ?"
	    " WHERE account = ?",
	    SQL_ARGS(SQL_INT(row->wake_at_ms), SQL_INT(row->paused_until_ms), SQL_INT(row->pauses),
	             SQL_TEXT(row->account)));
}

int store_governor_sent(struct store_tx *tx, const char *account)
{
	return sql_exec(tx, "store_governor_sent",
	                "UPDATE send_governors SET pauses = 0 WHERE account = ? AND pauses > 0",
	                SQL_ARGS(SQL_TEXT(account))) < 0
	           ? -1
	           : 0;
}

int store_governor_wake_by(struct store_tx *tx, const char *account, int64_t when_ms)
{
	return sql_exec(tx, "store_governor_wake_by",
	                "UPDATE send_governors SET wake_at_ms = ? WHERE account = ?"
	                " AND wake_at_ms > ?",
	                SQL_ARGS(SQL_INT(when_ms), SQL_TEXT(account), SQL_INT(when_ms))) < 0
	           ? -1
	           : 0;
}

/* The wake index is partial (`wake_at_ms > 0`, migration 8): the queries spell the condition
 * so that SQLite uses it. */
int store_governor_due(struct store_tx *tx, int64_t now_ms, struct store_governor *rows_r,
                       size_t max, size_t *count_r)
{
	return sql_list(
	    tx, "store_governor_due",
	    "SELECT " SQL_COLUMNS(GOVERNOR_ROW) " FROM send_governors"
	                                        " WHERE wake_at_ms > 0 AND wake_at_ms <= ?"
	                                        " ORDER BY wake_at_ms LIMIT ?",
	    SQL_ARGS(SQL_INT(now_ms), SQL_INT(max)), &governor_table, rows_r, max, count_r);
}

int store_governor_next_wake(struct store_tx *tx, int64_t *when_ms_r)
{
	*when_ms_r = 0;
	/* MIN() of no row is NULL, read as 0. */
	int rc = sql_get(tx, "store_governor_next_wake",
	                 "SELECT MIN(wake_at_ms) FROM send_governors WHERE wake_at_ms > 0", NULL,
	                 &sql_int64_table, when_ms_r);
	return rc < 0 ? -1 : 0;
}

int store_governor_count(struct store_tx *tx, const char *account, int64_t since_ms,
                         int64_t *count_r)
{
	*count_r = 0;
	int rc = sql_get(tx, "store_governor_count",
	                 "SELECT COUNT(*) FROM send_slots WHERE account = ? AND at_ms > ?",
	                 SQL_ARGS(SQL_TEXT(account), SQL_INT(since_ms)), &sql_int64_table, count_r);
	return rc < 0 ? -1 : 0;
}

int store_governor_nth(struct store_tx *tx, const char *account, int64_t since_ms, int64_t n,
                       int64_t *at_ms_r)
{
	*at_ms_r = 0;
	if (n < 1)
		return store_invalid("store_governor_nth", "n counts from 1");
	return sql_get(tx, "store_governor_nth",
	               "SELECT at_ms FROM send_slots WHERE account = ? AND at_ms > ?"
	               " ORDER BY at_ms LIMIT 1 OFFSET ?",
	               SQL_ARGS(SQL_TEXT(account), SQL_INT(since_ms), SQL_INT(n - 1)),
	               &sql_int64_table, at_ms_r);
}

int store_governor_add(struct store_tx *tx, const struct store_governor_slot *s)
{
	return sql_exec(tx, "store_governor_add",
	                "INSERT INTO send_slots (account, at_ms, message_id, lease_token, address,"
	                " pending) VALUES (?, ?, ?, ?, ?, ?)",
	                SQL_ARGS(SQL_TEXT(s->account), SQL_INT(s->at_ms), SQL_TEXT(s->message_id),
	                         SQL_INT(s->lease_token), SQL_TEXT(s->address),
	                         SQL_INT(s->pending))) < 0
	           ? -1
	           : 0;
}

int store_governor_settle(struct store_tx *tx, const struct store_governor_slot *s,
                          int64_t sent_at_ms)
{
	static const char op[] = "store_governor_settle";
	/* Found through the account's index: (account, at_ms) leads. */
	int64_t n;
	if (sent_at_ms > 0)
		n = sql_exec(tx, op,
		             "UPDATE send_slots SET at_ms = ?, pending = 0 WHERE account = ?"
		             " AND at_ms = ? AND message_id = ? AND lease_token = ? AND address = ?"
		             " AND pending = 1",
		             SQL_ARGS(SQL_INT(sent_at_ms), SQL_TEXT(s->account), SQL_INT(s->at_ms),
		                      SQL_TEXT(s->message_id), SQL_INT(s->lease_token),
		                      SQL_TEXT(s->address)));
	else
		n = sql_exec(
		    tx, op,
		    "DELETE FROM send_slots WHERE account = ? AND at_ms = ?"
		    " AND message_id = ? AND lease_token = ? AND address = ? AND pending = 1",
		    SQL_ARGS(SQL_TEXT(s->account), SQL_INT(s->at_ms), SQL_TEXT(s->message_id),
		             SQL_INT(s->lease_token), SQL_TEXT(s->address)));
	return n < 0 ? -1 : 0;
}

int store_governor_purge(struct store_tx *tx, const char *account, int64_t before_ms)
{
	return sql_exec(tx, "store_governor_purge",
	                "DELETE FROM send_slots WHERE account = ? AND at_ms < ?",
	                SQL_ARGS(SQL_TEXT(account), SQL_INT(before_ms))) < 0
	           ? -1
	           : 0;
}
