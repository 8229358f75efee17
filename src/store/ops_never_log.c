/* Never-log lists: the org's (user_id '') and each user's. */
#include "store/store_never_log.h"
#include "store/sql.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "lib/str.h"

#include <stdlib.h>
#include <string.h>

static const char *scope_name(enum store_never_log_scope scope)
{
	return scope == STORE_NEVER_LOG_ORG ? "org" : "user";
}

/* The org list is stored under user '' so that one primary key serves both scopes. */
static int scope_user(const char *op, enum store_never_log_scope scope, const char *user_id,
                      const char **user_r)
{
	if (scope == STORE_NEVER_LOG_ORG) {
		*user_r = "";
		return 0;
	}
	if (scope != STORE_NEVER_LOG_USER)
		return store_invalid(op, "unknown never-log scope");
	if (user_id == NULL || user_id[0] == '\0')
		return store_invalid(op, "a user list needs a user");
	*user_r = user_id;
	return 0;
}

int store_never_log_get(struct store_tx *tx, const char *org_id, enum store_never_log_scope scope,
                        const char *user_id, struct store_never_log *list_r)
{
	static const char op[] = "store_never_log_get";
	memset(list_r, 0, sizeof(*list_r));
	const char *uid = "";
	if (scope_user(op, scope, user_id, &uid) < 0)
		return -1;
	struct db_stmt *s = db_prepare(tx->db, "SELECT entry FROM never_log"
	                                       " WHERE org_id = ? AND scope = ? AND user_id = ?"
	                                       " ORDER BY pos");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, org_id);
	db_bind_text(s, 2, scope_name(scope));
	db_bind_text(s, 3, uid);
	size_t cap = 0;
	int rc;
	while ((rc = db_step(s)) == DB_ROW && list_r->count < MT_NEVER_LOG_MAX) {
		if (list_r->count == cap) {
			size_t ncap = cap == 0 ? 16 : cap * 2;
			void *p = realloc(list_r->entries, ncap * sizeof(*list_r->entries));
			if (p == NULL) {
				db_finish(s);
				store_never_log_free(list_r);
				return store_invalid(op, "out of memory");
			}
			list_r->entries = p;
			cap = ncap;
		}
		store_col_copy(s, 0, list_r->entries[list_r->count++], sizeof(list_r->entries[0]));
	}
	if (rc < 0) {
		store_never_log_free(list_r);
		return store_fail_stmt(tx, op, s);
	}
	db_finish(s);
	return 0;
}

int store_never_log_put(struct store_tx *tx, const char *org_id, enum store_never_log_scope scope,
                        const char *user_id, const struct store_never_log *list)
{
	static const char op[] = "store_never_log_put";
	if (store_need_write(tx, op) < 0)
		return -1;
	const char *uid = "";
	if (scope_user(op, scope, user_id, &uid) < 0)
		return -1;
	if (list->count > MT_NEVER_LOG_MAX)
		return store_invalid(op, "too many entries");
	/* A user list names a user of this org; decided before the first write. */
	if (scope == STORE_NEVER_LOG_USER) {
		int rc = store_row_exists(tx, op, "SELECT 1 FROM users WHERE id = ? AND org_id = ?",
		                          2, uid, org_id);
		if (rc != 0)
			return rc;
	}
	struct db_stmt *s = db_prepare(
	    tx->db, "DELETE FROM never_log WHERE org_id = ? AND scope = ? AND user_id = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, org_id);
	db_bind_text(s, 2, scope_name(scope));
	db_bind_text(s, 3, uid);
	if (db_step(s) != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	for (size_t i = 0; i < list->count; i++) {
		if (list->entries[i][0] == '\0')
			continue;
		/* A repeated entry is a slip, not a conflict: the first one keeps its place. */
		s = db_prepare(tx->db, "INSERT INTO never_log (org_id, scope, user_id, entry, pos)"
		                       " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING");
		if (s == NULL)
			return store_fail(tx, op);
		db_bind_text(s, 1, org_id);
		db_bind_text(s, 2, scope_name(scope));
		db_bind_text(s, 3, uid);
		db_bind_text(s, 4, list->entries[i]);
		db_bind_int64(s, 5, (int64_t)i);
		if (db_step(s) != DB_DONE)
			return store_fail_stmt(tx, op, s);
		db_finish(s);
	}
	return 0;
}

void store_never_log_free(struct store_never_log *list)
{
	free(list->entries);
	list->entries = NULL;
	list->count = 0;
}
