/* Users, their addresses and their API tokens. */
#include "store/store_user.h"
#include "store/sql.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "store/store_imap.h"
#include "store/store_smtp.h"
#include "lib/str.h"

#include <stdlib.h>
#include <string.h>

static const char *const role_names[] = {[STORE_ROLE_USER] = "user", [STORE_ROLE_ADMIN] = "admin"};

/* Any other value is a plain user, as the role of a row whose name is not in the table. */
static const char *role_name(enum store_role role)
{
	return sql_name(role_names, sizeof(role_names) / sizeof(role_names[0]), role,
	                STORE_ROLE_USER);
}

#define USER_ROW(F, G, T)                                                                          \
	F(T, TEXT, "u.id", id)                                                                     \
	G(T, TEXT, "u.org_id", org_id)                                                             \
	G(T, TEXT, "u.email", email)                                                               \
	G(T, TEXT, "u.name", name)                                                                 \
	G(T, NAME, "u.role", role, role_names, STORE_ROLE_USER)                                    \
	G(T, BOOL, "u.active", active)                                                             \
	G(T, INT64, "u.created_at", created_at)
SQL_TABLE(user_table, USER_ROW, struct store_user);
SQL_TEXT_TABLE(alias_table, "address", MT_ADDRESS_MAX + 1);

#define TOKEN_ROW(F, G, T)                                                                         \
	F(T, TEXT, "t.id", id)                                                                     \
	G(T, INT64, "t.created_at", created_at)
SQL_TABLE(token_table, TOKEN_ROW, struct store_token);

static int load_aliases(struct store_tx *tx, const char *op, struct store_user *user_r)
{
	return sql_list(tx, op,
	                "SELECT address FROM user_addresses"
	                " WHERE user_id = ? AND is_primary = 0 ORDER BY pos",
	                SQL_ARGS(SQL_TEXT(user_r->id)), &alias_table, user_r->aliases,
	                MT_ALIASES_MAX, &user_r->alias_count);
}

/* The user of a query on USER_ROW's columns with its aliases; STORE_NOT_FOUND without one. */
static int get_user(struct store_tx *tx, const char *op, const char *sql, const struct db_arg *args,
                    struct store_user *user_r)
{
	memset(user_r, 0, sizeof(*user_r));
	int rc = sql_get(tx, op, sql, args, &user_table, user_r);
	return rc == 0 ? load_aliases(tx, op, user_r) : rc;
}

static int put_address(struct store_tx *tx, const char *op, const struct store_user *user,
                       const char *address, bool primary, size_t pos)
{
	return sql_insert(tx, op,
	                  "INSERT INTO user_addresses (org_id, address, user_id, is_primary, pos)"
	                  " VALUES (?, ?, ?, ?, ?)",
	                  SQL_ARGS(SQL_TEXT(user->org_id), SQL_TEXT(address), SQL_TEXT(user->id),
	                           SQL_INT(primary), SQL_INT(pos)));
}

static int put_aliases(struct store_tx *tx, const char *op, const struct store_user *user)
{
	if (user->alias_count > MT_ALIASES_MAX)
		return store_invalid(op, "too many aliases");
	for (size_t i = 0; i < user->alias_count; i++) {
		/* The user's own address is a slip too. */
		if (strcmp(user->aliases[i], user->email) == 0 ||
		    store_repeated(user->aliases, sizeof(user->aliases[0]), i))
			continue;
		int rc = put_address(tx, op, user, user->aliases[i], false, i + 1);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int store_user_create(struct store_tx *tx, struct store_user *user)
{
	static const char op[] = "store_user_create";
	if (store_op_begin(tx, op) < 0)
		return -1;
	store_new_id("usr", user->id);
	user->created_at = mt_wall_s();
	user->active = true;
	/* A missing org is a foreign key violation: not found. */
	int rc =
	    sql_insert(tx, op,
	               "INSERT INTO users (id, org_id, email, name, role, active, created_at,"
	               " updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
	               SQL_ARGS(SQL_TEXT(user->id), SQL_TEXT(user->org_id), SQL_TEXT(user->email),
	                        SQL_TEXT(user->name), SQL_TEXT(role_name(user->role)),
	                        SQL_INT(user->created_at), SQL_INT(user->created_at)));
	if (rc == 0)
		rc = put_address(tx, op, user, user->email, true, 0);
	if (rc == 0)
		rc = put_aliases(tx, op, user);
	return store_op_end(tx, op, rc);
}

int store_user_get(struct store_tx *tx, const char *org_id, const char *user_id,
                   struct store_user *user_r)
{
	return get_user(
	    tx, "store_user_get",
	    "SELECT " SQL_COLUMNS(USER_ROW) " FROM users u WHERE u.id = ? AND u.org_id = ?",
	    SQL_ARGS(SQL_TEXT(user_id), SQL_TEXT(org_id)), user_r);
}

int store_user_update(struct store_tx *tx, const struct store_user *user)
{
	static const char op[] = "store_user_update";
	if (store_op_begin(tx, op) < 0)
		return -1;
	int rc =
	    sql_change(tx, op,
	               "UPDATE users SET name = ?, role = ?, updated_at = ?"
	               " WHERE id = ? AND org_id = ?",
	               SQL_ARGS(SQL_TEXT(user->name), SQL_TEXT(role_name(user->role)),
	                        SQL_INT(mt_wall_s()), SQL_TEXT(user->id), SQL_TEXT(user->org_id)));
	if (rc == 0 &&
	    sql_exec(tx, op, "DELETE FROM user_addresses WHERE user_id = ? AND is_primary = 0",
	             SQL_ARGS(SQL_TEXT(user->id))) < 0)
		rc = -1;
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

int store_user_deactivate(struct store_tx *tx, const char *org_id, const char *user_id)
{
	static const char op[] = "store_user_deactivate";
	int64_t now = mt_wall_s();
	int rc = sql_change(
	    tx, op, "UPDATE users SET active = 0, updated_at = ? WHERE id = ? AND org_id = ?",
	    SQL_ARGS(SQL_INT(now), SQL_TEXT(user_id), SQL_TEXT(org_id)));
	if (rc == 0 && sql_exec(tx, op,
	                        "UPDATE tokens SET revoked_at = ?"
	                        " WHERE user_id = ? AND org_id = ? AND revoked_at IS NULL",
	                        SQL_ARGS(SQL_INT(now), SQL_TEXT(user_id), SQL_TEXT(org_id))) < 0)
		rc = -1;
	if (rc == 0) {
		int off = store_smtp_account_off(tx, org_id, user_id);
		if (off != 0 && off != STORE_NOT_FOUND)
			rc = -1;
	}
	if (rc == 0) {
		/* Its IMAP sync too: a running session's next write is fenced off. */
		int off = store_imap_account_off(tx, org_id, user_id);
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
	int64_t n = sql_exec(tx, op,
	                     "UPDATE users SET active = 1, updated_at = ?"
	                     " WHERE id = ? AND org_id = ? AND active = 0",
	                     SQL_ARGS(SQL_INT(mt_wall_s()), SQL_TEXT(user_id), SQL_TEXT(org_id)));
	if (n < 0)
		return -1;
	*was_inactive_r = n > 0;
	return 0;
}

int store_user_by_address(struct store_tx *tx, const char *org_id, const char *address,
                          struct store_user *user_r)
{
	return get_user(tx, "store_user_by_address",
	                "SELECT " SQL_COLUMNS(
	                    USER_ROW) " FROM user_addresses a"
	                              " JOIN users u ON u.id = a.user_id"
	                              " WHERE a.org_id = ? AND a.address = ? AND u.active = 1",
	                SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(address)), user_r);
}

int store_address_is_user(struct store_tx *tx, const char *org_id, const char *address)
{
	int rc = sql_get(tx, "store_address_is_user",
	                 "SELECT 1 FROM user_addresses WHERE org_id = ? AND address = ?",
	                 SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(address)), NULL, NULL);
	return rc == 0 ? 1 : rc == STORE_NOT_FOUND ? 0 : -1;
}

int store_user_in_org(struct store_tx *tx, const char *op, const char *org_id, const char *user_id)
{
	return sql_get(tx, op, "SELECT 1 FROM users WHERE id = ? AND org_id = ?",
	               SQL_ARGS(SQL_TEXT(user_id), SQL_TEXT(org_id)), NULL, NULL);
}

int store_write_for_user(struct store_tx *tx, const char *op, const char *org_id,
                         const char *user_id)
{
	if (store_need_write(tx, op) < 0)
		return -1;
	return store_user_in_org(tx, op, org_id, user_id);
}

/* ---- tokens ---- */

int store_token_create(struct store_tx *tx, struct store_token *token)
{
	/* Through the users table, so a token is only ever made for an active user of its org:
	 * none is not found. */
	return sql_insert_new(tx, "store_token_create", "tok", token->id, &token->created_at,
	                      "INSERT INTO tokens (id, created_at, org_id, user_id, hash)"
	                      " SELECT ?, ?, org_id, id, ? FROM users"
	                      " WHERE id = ? AND org_id = ? AND active = 1",
	                      SQL_ARGS(SQL_BLOB(token->hash, sizeof(token->hash)),
	                               SQL_TEXT(token->user_id), SQL_TEXT(token->org_id)));
}

int store_token_authenticate(struct store_tx *tx, const unsigned char hash[32],
                             struct store_token *token_r, struct store_user *user_r)
{
	static const char op[] = "store_token_authenticate";
	memset(token_r, 0, sizeof(*token_r));
	memset(user_r, 0, sizeof(*user_r));
	int rc;
	struct db_stmt *s =
	    sql_first(tx, op,
	              "SELECT " SQL_COLUMNS(TOKEN_ROW) ", " SQL_COLUMNS(
	                  USER_ROW) " FROM tokens t"
	                            " JOIN users u ON u.id = t.user_id AND u.org_id = t.org_id"
	                            " WHERE t.hash = ? AND t.revoked_at IS NULL AND u.active = 1",
	              SQL_ARGS(SQL_BLOB(hash, 32)), &rc);
	if (s == NULL)
		return rc;
	int col = sql_read(op, s, 0, &token_table, token_r);
	if (col >= 0)
		col = sql_read(op, s, col, &user_table, user_r);
	db_finish(s);
	if (col < 0)
		return -1;
	memcpy(token_r->hash, hash, sizeof(token_r->hash));
	mt_strlcpy(token_r->user_id, user_r->id, sizeof(token_r->user_id));
	mt_strlcpy(token_r->org_id, user_r->org_id, sizeof(token_r->org_id));
	return load_aliases(tx, op, user_r);
}

int store_token_revoke(struct store_tx *tx, const char *user_id, const char *token_id)
{
	static const char op[] = "store_token_revoke";
	/* An already revoked token keeps its first revocation time; revoking it again is fine. */
	return sql_change(tx, op,
	                  "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?)"
	                  " WHERE id = ? AND user_id = ?",
	                  SQL_ARGS(SQL_INT(mt_wall_s()), SQL_TEXT(token_id), SQL_TEXT(user_id)));
}

int store_token_list(struct store_tx *tx, const char *org_id, const char *user_id,
                     struct store_token *tokens, size_t max, size_t *count_r)
{
	int rc = sql_list(tx, "store_token_list",
	                  "SELECT " SQL_COLUMNS(TOKEN_ROW) " FROM tokens t"
	                                                   " WHERE t.user_id = ? AND t.org_id = ?"
	                                                   " AND t.revoked_at IS NULL"
	                                                   " ORDER BY t.created_at, t.id",
	                  SQL_ARGS(SQL_TEXT(user_id), SQL_TEXT(org_id)), &token_table, tokens, max,
	                  count_r);
	for (size_t i = 0; i < *count_r; i++) {
		mt_strlcpy(tokens[i].user_id, user_id, sizeof(tokens[i].user_id));
		mt_strlcpy(tokens[i].org_id, org_id, sizeof(tokens[i].org_id));
	}
	return rc;
}

int store_token_revoke_in_org(struct store_tx *tx, const char *org_id, const char *user_id,
                              const char *token_id)
{
	return sql_change(tx, "store_token_revoke_in_org",
	                  "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?)"
	                  " WHERE id = ? AND user_id = ? AND org_id = ?",
	                  SQL_ARGS(SQL_INT(mt_wall_s()), SQL_TEXT(token_id), SQL_TEXT(user_id),
	                           SQL_TEXT(org_id)));
}

static const struct store_page_query user_page = {
    "SELECT " SQL_COLUMNS(USER_ROW) " FROM users u"
                                    " WHERE u.org_id = ? AND u.id > ? ORDER BY u.id LIMIT ?",
    &user_table, offsetof(struct store_user, id), "usr_", false};

int store_user_list(struct store_tx *tx, const char *org_id, const char *cursor, size_t limit,
                    struct store_user_list *list_r)
{
	static const char op[] = "store_user_list";
	int rc =
	    STORE_PAGE_READ(tx, op, &user_page, SQL_ARGS(SQL_TEXT(org_id)), cursor, limit, list_r);
	for (size_t i = 0; rc == 0 && i < list_r->count; i++)
		rc = load_aliases(tx, op, &list_r->items[i]);
	if (rc != 0)
		store_user_list_free(list_r);
	return rc;
}

void store_user_list_free(struct store_user_list *list)
{
	STORE_PAGE_FREE(list);
}
