/* SMTP accounts, one per user. The sealed secret is bytes from src/crypto; it is stored and read
 * back, never logged and never looked at here. */
#include "store/store_smtp.h"
#include "store/sql.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "lib/str.h"

#include <string.h>

static const char *const state_names[] = {"off", "connected", "disconnected"};

/* The user must exist in the org: accounts are reached through the user, and this is where a
 * foreign user id becomes "not found". */
static int user_in_org(struct store_tx *tx, const char *op, const char *org_id, const char *user_id)
{
	return store_row_exists(tx, op, "SELECT 1 FROM users WHERE id = ? AND org_id = ?", 2,
	                        user_id, org_id);
}

static int put_limits(struct store_tx *tx, const char *op, const char *user_id,
                      const struct store_send_limit *limits, size_t count)
{
	if (count > MT_SEND_LIMITS_MAX)
		return store_invalid(op, "too many send limits");
	struct db_stmt *s = db_prepare(tx->db, "DELETE FROM smtp_account_limits WHERE user_id = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, user_id);
	if (db_step(s) != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	for (size_t i = 0; i < count; i++) {
		s = db_prepare(tx->db, "INSERT INTO smtp_account_limits (user_id, pos, max_count,"
		                       " window_s) VALUES (?, ?, ?, ?)");
		if (s == NULL)
			return store_fail(tx, op);
		db_bind_text(s, 1, user_id);
		db_bind_int64(s, 2, (int64_t)i);
		db_bind_int64(s, 3, limits[i].limit);
		db_bind_int64(s, 4, limits[i].window_s);
		if (db_step(s) != DB_DONE)
			return store_fail_stmt(tx, op, s);
		db_finish(s);
	}
	return 0;
}

int store_smtp_account_get(struct store_tx *tx, const char *org_id, const char *user_id,
                           struct store_smtp_account *account_r)
{
	static const char op[] = "store_smtp_account_get";
	memset(account_r, 0, sizeof(*account_r));
	struct db_stmt *s = db_prepare(
	    tx->db, "SELECT user_id, org_id, state, preset, host, port, security, auth, username,"
	            " from_address, tls_fingerprint, sealed_secret, verified_at,"
	            " confirmation_message_id, last_error, updated_at"
	            " FROM smtp_accounts WHERE user_id = ? AND org_id = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, user_id);
	db_bind_text(s, 2, org_id);
	int rc = db_step(s);
	if (rc != DB_ROW) {
		db_finish(s);
		return rc == DB_DONE ? STORE_NOT_FOUND : store_fail(tx, op);
	}
	struct store_smtp_account *a = account_r;
	store_col_copy(s, 0, a->user_id, sizeof(a->user_id));
	store_col_copy(s, 1, a->org_id, sizeof(a->org_id));
	const char *state = db_column_text(s, 2);
	for (size_t i = 0; i < sizeof(state_names) / sizeof(state_names[0]); i++) {
		if (strcmp(state, state_names[i]) == 0)
			a->state = (enum store_account_state)i;
	}
	store_col_copy(s, 3, a->preset, sizeof(a->preset));
	store_col_copy(s, 4, a->host, sizeof(a->host));
	a->port = (int)db_column_int64(s, 5);
	store_col_copy(s, 6, a->security, sizeof(a->security));
	store_col_copy(s, 7, a->auth, sizeof(a->auth));
	store_col_copy(s, 8, a->username, sizeof(a->username));
	store_col_copy(s, 9, a->from_address, sizeof(a->from_address));
	store_col_copy(s, 10, a->tls_fingerprint, sizeof(a->tls_fingerprint));
	size_t len = 0;
	const void *sealed = db_column_blob(s, 11, &len);
	if (sealed != NULL && len <= sizeof(a->sealed_secret)) {
		memcpy(a->sealed_secret, sealed, len);
		a->sealed_secret_len = len;
	}
	a->verified_at = db_column_int64(s, 12);
	store_col_copy(s, 13, a->confirmation_message_id, sizeof(a->confirmation_message_id));
	store_col_copy(s, 14, a->last_error, sizeof(a->last_error));
	a->updated_at = db_column_int64(s, 15);
	db_finish(s);

	s = db_prepare(tx->db, "SELECT max_count, window_s FROM smtp_account_limits"
	                       " WHERE user_id = ? ORDER BY pos");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, user_id);
	while ((rc = db_step(s)) == DB_ROW && a->limit_count < MT_SEND_LIMITS_MAX) {
		a->limits[a->limit_count].limit = db_column_int64(s, 0);
		a->limits[a->limit_count].window_s = (int)db_column_int64(s, 1);
		a->limit_count++;
	}
	if (rc < 0)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return 0;
}

int store_smtp_account_put(struct store_tx *tx, const struct store_smtp_account *account)
{
	static const char op[] = "store_smtp_account_put";
	const struct store_smtp_account *a = account;
	if ((unsigned)a->state > STORE_ACCOUNT_DISCONNECTED)
		return store_invalid(op, "unknown account state");
	if (a->sealed_secret_len > sizeof(a->sealed_secret))
		return store_invalid(op, "sealed secret too long");
	if (a->limit_count > MT_SEND_LIMITS_MAX)
		return store_invalid(op, "too many send limits");
	if (store_need_write(tx, op) < 0)
		return -1;
	int rc = user_in_org(tx, op, a->org_id, a->user_id);
	if (rc != 0)
		return rc;
	/* org_id is part of the conflict update's condition so that a row can never move between
	 * orgs, even if a user id were reused. */
	struct db_stmt *s = db_prepare(
	    tx->db,
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
	    " WHERE smtp_accounts.org_id = excluded.org_id");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, a->user_id);
	db_bind_text(s, 2, a->org_id);
	db_bind_text(s, 3, state_names[a->state]);
	db_bind_text(s, 4, a->preset);
	db_bind_text(s, 5, a->host);
	db_bind_int64(s, 6, a->port);
	db_bind_text(s, 7, a->security);
	db_bind_text(s, 8, a->auth);
	db_bind_text(s, 9, a->username);
	db_bind_text(s, 10, a->from_address);
	db_bind_text(s, 11, a->tls_fingerprint);
	if (a->sealed_secret_len > 0)
		db_bind_blob(s, 12, a->sealed_secret, a->sealed_secret_len);
	else
		db_bind_null(s, 12);
	db_bind_int64(s, 13, a->verified_at);
	db_bind_text(s, 14, a->confirmation_message_id);
	db_bind_text(s, 15, a->last_error);
	db_bind_int64(s, 16, mt_wall_s());
	if (db_step(s) != DB_DONE)
		rc = store_fail(tx, op);
	else if (db_changes(tx->db) == 0)
		rc = STORE_NOT_FOUND;
	db_finish(s);
	if (rc == 0)
		rc = put_limits(tx, op, a->user_id, a->limits, a->limit_count);
	return rc;
}

int store_smtp_account_set_limits(struct store_tx *tx, const char *org_id, const char *user_id,
                                  const struct store_send_limit *limits, size_t count)
{
	static const char op[] = "store_smtp_account_set_limits";
	if (count > MT_SEND_LIMITS_MAX)
		return store_invalid(op, "too many send limits");
	if (store_need_write(tx, op) < 0)
		return -1;
	int rc = 0;
	struct db_stmt *s = db_prepare(tx->db, "UPDATE smtp_accounts SET updated_at = ?"
	                                       " WHERE user_id = ? AND org_id = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_int64(s, 1, mt_wall_s());
	db_bind_text(s, 2, user_id);
	db_bind_text(s, 3, org_id);
	if (db_step(s) != DB_DONE)
		rc = store_fail(tx, op);
	else if (db_changes(tx->db) == 0)
		rc = STORE_NOT_FOUND;
	db_finish(s);
	if (rc == 0)
		rc = put_limits(tx, op, user_id, limits, count);
	return rc;
}

int store_smtp_account_off(struct store_tx *tx, const char *org_id, const char *user_id)
{
	static const char op[] = "store_smtp_account_off";
	if (store_need_write(tx, op) < 0)
		return -1;
	/* NULL rather than a zeroblob: nothing of the secret's length survives, and secure_delete
	 * (db_sqlite.c) zeroes the freed bytes. */
	struct db_stmt *s =
	    db_prepare(tx->db, "UPDATE smtp_accounts SET state = 'off', sealed_secret = NULL,"
	                       " updated_at = ? WHERE user_id = ? AND org_id = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_int64(s, 1, mt_wall_s());
	db_bind_text(s, 2, user_id);
	db_bind_text(s, 3, org_id);
	if (db_step(s) != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return db_changes(tx->db) == 0 ? STORE_NOT_FOUND : 0;
}
