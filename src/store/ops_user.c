/* Users, their addresses and their API tokens. */
#include "store/store_user.h"
#include "store/sql.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "store/store_smtp.h"
#include "lib/str.h"

#include <string.h>

#define USER_COLUMNS "u.id, u.org_id, u.email, u.name, u.role, u.active, u.created_at"

static void read_user(struct db_stmt *s, int col, struct store_user *user_r)
{
	store_col_copy(s, col + 0, user_r->id, sizeof(user_r->id));
	store_col_copy(s, col + 1, user_r->org_id, sizeof(user_r->org_id));
	store_col_copy(s, col + 2, user_r->email, sizeof(user_r->email));
	store_col_copy(s, col + 3, user_r->name, sizeof(user_r->name));
	user_r->role =
	    strcmp(db_column_text(s, col + 4), "admin") == 0 ? STORE_ROLE_ADMIN : STORE_ROLE_USER;
	user_r->active = db_column_int64(s, col + 5) != 0;
	user_r->created_at = db_column_int64(s, col + 6);
}

static int load_aliases(struct store_tx *tx, const char *op, struct store_user *user_r)
{
	struct db_stmt *s =
	    db_prepare(tx->db, "SELECT address FROM user_addresses"
	                       " WHERE user_id = ? AND is_primary = 0 ORDER BY pos");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, user_r->id);
	int rc;
	user_r->alias_count = 0;
	while ((rc = db_step(s)) == DB_ROW && user_r->alias_count < MT_ALIASES_MAX) {
		store_col_copy(s, 0, user_r->aliases[user_r->alias_count],
		               sizeof(user_r->aliases[0]));
		user_r->alias_count++;
	}
	if (rc < 0)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return 0;
}

static int put_address(struct store_tx *tx, const char *op, const struct store_user *user,
                       const char *address, bool primary, size_t pos)
{
	struct db_stmt *s =
	    db_prepare(tx->db, "INSERT INTO user_addresses (org_id, address, user_id,"
	                       " is_primary, pos) VALUES (?, ?, ?, ?, ?)");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, user->org_id);
	db_bind_text(s, 2, address);
	db_bind_text(s, 3, user->id);
	db_bind_int64(s, 4, primary);
	db_bind_int64(s, 5, (int64_t)pos);
	int rc = db_step(s);
	db_finish(s);
	if (rc == DB_UNIQUE)
		return STORE_CONFLICT;
	if (rc != DB_DONE)
		return store_fail(tx, op);
	return 0;
}

static int put_aliases(struct store_tx *tx, const char *op, const struct store_user *user)
{
	if (user->alias_count > MT_ALIASES_MAX)
		return store_invalid(op, "too many aliases");
	for (size_t i = 0; i < user->alias_count; i++) {
		/* The user's own address or a repeated alias is a slip, not a conflict. */
		bool seen = strcmp(user->aliases[i], user->email) == 0;
		for (size_t k = 0; k < i && !seen; k++)
			seen = strcmp(user->aliases[k], user->aliases[i]) == 0;
		if (seen)
			continue;
		int rc = put_address(tx, op, user, user->aliases[i], false, i + 1);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static const char *role_name(enum store_role role)
{
	return role == STORE_ROLE_ADMIN ? "admin" : "user";
}

int store_user_create(struct store_tx *tx, struct store_user *user)
{
	static const char op[] = "store_user_create";
	if (store_op_begin(tx, op) < 0)
		return -1;
	store_new_id("usr", user->id);
	user->created_at = mt_wall_s();
	user->active = true;
	int rc = 0;
	struct db_stmt *s = db_prepare(tx->db, "INSERT INTO users (id, org_id, email, name, role,"
	                                       " active, created_at, updated_at)"
	                                       " VALUES (?, ?, ?, ?, ?, 1, ?, ?)");
	if (s == NULL)
		return store_op_end(tx, op, store_fail(tx, op));
	db_bind_text(s, 1, user->id);
	db_bind_text(s, 2, user->org_id);
	db_bind_text(s, 3, user->email);
	db_bind_text(s, 4, user->name);
	db_bind_text(s, 5, role_name(user->role));
	db_bind_int64(s, 6, user->created_at);
	db_bind_int64(s, 7, user->created_at);
	int step = db_step(s);
	if (step == DB_FOREIGN)
		rc = STORE_NOT_FOUND; /* no such org */
	else if (step != DB_DONE)
		rc = store_fail(tx, op);
	db_finish(s);
	if (rc == 0)
		rc = put_address(tx, op, user, user->email, true, 0);
	if (rc == 0)
		rc = put_aliases(tx, op, user);
	return store_op_end(tx, op, rc);
}

int store_user_get(struct store_tx *tx, const char *org_id, const char *user_id,
                   struct store_user *user_r)
{
	static const char op[] = "store_user_get";
	memset(user_r, 0, sizeof(*user_r));
	struct db_stmt *s = db_prepare(tx->db, "SELECT " USER_COLUMNS " FROM users u"
	                                       " WHERE u.id = ? AND u.org_id = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, user_id);
	db_bind_text(s, 2, org_id);
	int rc = db_step(s);
	if (rc != DB_ROW) {
		db_finish(s);
		return rc == DB_DONE ? STORE_NOT_FOUND : store_fail(tx, op);
	}
	read_user(s, 0, user_r);
	db_finish(s);
	return load_aliases(tx, op, user_r);
}

int store_user_update(struct store_tx *tx, const struct store_user *user)
{
	static const char op[] = "store_user_update";
	if (store_op_begin(tx, op) < 0)
		return -1;
	int rc = 0;
	struct db_stmt *s = db_prepare(tx->db, "UPDATE users SET name = ?, role = ?, updated_at = ?"
	                                       " WHERE id = ? AND org_id = ?");
	if (s == NULL)
		return store_op_end(tx, op, store_fail(tx, op));
	db_bind_text(s, 1, user->name);
	db_bind_text(s, 2, role_name(user->role));
	db_bind_int64(s, 3, mt_wall_s());
	db_bind_text(s, 4, user->id);
	db_bind_text(s, 5, user->org_id);
	if (db_step(s) != DB_DONE)
		rc = store_fail(tx, op);
	else if (db_changes(tx->db) == 0)
		rc = STORE_NOT_FOUND;
	db_finish(s);
	if (rc == 0) {
		s = db_prepare(tx->db,
		               "DELETE FROM user_addresses WHERE user_id = ? AND is_primary = 0");
		if (s == NULL)
			return store_op_end(tx, op, store_fail(tx, op));
		db_bind_text(s, 1, user->id);
		if (db_step(s) != DB_DONE)
			rc = store_fail(tx, op);
		db_finish(s);
	}
	if (rc == 0) {
		/* The aliases are checked against the stored email, not the caller's copy. */
		struct store_user stored;
		rc = store_user_get(tx, user->org_id, user->id, &stored);
		if (rc == 0) {
			memcpy(stored.aliases, user->aliases, sizeof(stored.aliases));
			stored.alias_count = user->alias_count;
			rc = put_aliases(tx, op, &stored);
		}
	}
	return store_op_end(tx, op, rc);
}

/* Runs one UPDATE keyed by (org?, user) parameters; returns the changed row count or -1. */
static int64_t run_update(struct store_tx *tx, const char *op, const char *sql, int64_t now,
                          const char *user_id, const char *org_id)
{
	struct db_stmt *s = db_prepare(tx->db, sql);
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_int64(s, 1, now);
	db_bind_text(s, 2, user_id);
	if (org_id != NULL)
		db_bind_text(s, 3, org_id);
	if (db_step(s) != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return db_changes(tx->db);
}

int store_user_deactivate(struct store_tx *tx, const char *org_id, const char *user_id)
{
	static const char op[] = "store_user_deactivate";
	if (store_need_write(tx, op) < 0)
		return -1;
	int64_t now = mt_wall_s();
	int rc = 0;
	int64_t n = run_update(tx, op,
	                       "UPDATE users SET active = 0, updated_at = ?"
	                       " WHERE id = ? AND org_id = ?",
	                       now, user_id, org_id);
	if (n < 0)
		rc = -1;
	else if (n == 0)
		rc = STORE_NOT_FOUND;
	if (rc == 0 && run_update(tx, op,
	                          "UPDATE tokens SET revoked_at = ?"
	                          " WHERE user_id = ? AND org_id = ? AND revoked_at IS NULL",
	                          now, user_id, org_id) < 0)
		rc = -1;
	if (rc == 0) {
		int off = store_smtp_account_off(tx, org_id, user_id);
		if (off != 0 && off != STORE_NOT_FOUND)
			rc = -1;
	}
	return rc;
}

int store_user_reactivate(struct store_tx *tx, const char *org_id, const char *user_id,
                          bool *was_inactive_r)
{
	static const char op[] = "store_user_reactivate";
	*was_inactive_r = false;
	if (store_need_write(tx, op) < 0)
		return -1;
	int64_t n = run_update(tx, op,
	                       "UPDATE users SET active = 1, updated_at = ?"
	                       " WHERE id = ? AND org_id = ? AND active = 0",
	                       mt_wall_s(), user_id, org_id);
	if (n < 0)
		return -1;
	*was_inactive_r = n > 0;
	return 0;
}

int store_user_by_address(struct store_tx *tx, const char *org_id, const char *address,
                          struct store_user *user_r)
{
	static const char op[] = "store_user_by_address";
	memset(user_r, 0, sizeof(*user_r));
	struct db_stmt *s =
	    db_prepare(tx->db, "SELECT " USER_COLUMNS " FROM user_addresses a"
	                       " JOIN users u ON u.id = a.user_id"
	                       " WHERE a.org_id = ? AND a.address = ? AND u.active = 1");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, org_id);
	db_bind_text(s, 2, address);
	int rc = db_step(s);
	if (rc != DB_ROW) {
		db_finish(s);
		return rc == DB_DONE ? STORE_NOT_FOUND : store_fail(tx, op);
	}
	read_user(s, 0, user_r);
	db_finish(s);
	return load_aliases(tx, op, user_r);
}

int store_address_is_user(struct store_tx *tx, const char *org_id, const char *address)
{
	static const char op[] = "store_address_is_user";
	struct db_stmt *s =
	    db_prepare(tx->db, "SELECT 1 FROM user_addresses WHERE org_id = ? AND address = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text_ref(s, 1, org_id);
	db_bind_text_ref(s, 2, address);
	int rc = db_step(s);
	if (rc != DB_ROW && rc != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return rc == DB_ROW ? 1 : 0;
}

/* ---- tokens ---- */

int store_token_create(struct store_tx *tx, struct store_token *token)
{
	static const char op[] = "store_token_create";
	if (store_need_write(tx, op) < 0)
		return -1;
	store_new_id("tok", token->id);
	token->created_at = mt_wall_s();
	/* Through the users table, so a token is only ever made for an active user of its org. */
	struct db_stmt *s = db_prepare(tx->db, "INSERT INTO tokens (id, org_id, user_id, hash,"
	                                       " created_at) SELECT ?, org_id, id, ?, ? FROM users"
	                                       " WHERE id = ? AND org_id = ? AND active = 1");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, token->id);
	db_bind_blob(s, 2, token->hash, sizeof(token->hash));
	db_bind_int64(s, 3, token->created_at);
	db_bind_text(s, 4, token->user_id);
	db_bind_text(s, 5, token->org_id);
	int rc = db_step(s);
	db_finish(s);
	if (rc == DB_UNIQUE)
		return STORE_CONFLICT;
	if (rc != DB_DONE)
		return store_fail(tx, op);
	return db_changes(tx->db) == 0 ? STORE_NOT_FOUND : 0;
}

int store_token_authenticate(struct store_tx *tx, const unsigned char hash[32],
                             struct store_token *token_r, struct store_user *user_r)
{
	static const char op[] = "store_token_authenticate";
	memset(token_r, 0, sizeof(*token_r));
	memset(user_r, 0, sizeof(*user_r));
	struct db_stmt *s =
	    db_prepare(tx->db, "SELECT t.id, t.created_at, " USER_COLUMNS " FROM tokens t"
	                       " JOIN users u ON u.id = t.user_id AND u.org_id = t.org_id"
	                       " WHERE t.hash = ? AND t.revoked_at IS NULL AND u.active = 1");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_blob(s, 1, hash, 32);
	int rc = db_step(s);
	if (rc != DB_ROW) {
		db_finish(s);
		return rc == DB_DONE ? STORE_NOT_FOUND : store_fail(tx, op);
	}
	store_col_copy(s, 0, token_r->id, sizeof(token_r->id));
	token_r->created_at = db_column_int64(s, 1);
	read_user(s, 2, user_r);
	db_finish(s);
	memcpy(token_r->hash, hash, sizeof(token_r->hash));
	mt_strlcpy(token_r->user_id, user_r->id, sizeof(token_r->user_id));
	mt_strlcpy(token_r->org_id, user_r->org_id, sizeof(token_r->org_id));
	return load_aliases(tx, op, user_r);
}

int store_token_revoke(struct store_tx *tx, const char *user_id, const char *token_id)
{
	static const char op[] = "store_token_revoke";
	if (store_need_write(tx, op) < 0)
		return -1;
	/* An already revoked token keeps its first revocation time; revoking it again is fine. */
	struct db_stmt *s =
	    db_prepare(tx->db, "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?)"
	                       " WHERE id = ? AND user_id = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_int64(s, 1, mt_wall_s());
	db_bind_text(s, 2, token_id);
	db_bind_text(s, 3, user_id);
	if (db_step(s) != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return db_changes(tx->db) == 0 ? STORE_NOT_FOUND : 0;
}
