/* Never-log lists: the org's (user_id '') and each user's. */
#include "store/store_never_log.h"
#include "store/sql.h"
#include "store/store.h"
#include "store/store_internal.h"

#include <stdlib.h>
#include <string.h>

static const char *const scope_names[] = {
    [STORE_NEVER_LOG_ORG] = "org", [STORE_NEVER_LOG_USER] = "user"};

/* Called once the scope is known to be one of the two. */
static const char *scope_name(enum store_never_log_scope scope)
{
	return scope_names[scope];
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

SQL_TEXT_TABLE(entry_table, "entry", MT_ADDRESS_MAX + 1);

int store_never_log_get(struct store_tx *tx, const char *org_id, enum store_never_log_scope scope,
                        const char *user_id, struct store_never_log *list_r)
{
	static const char op[] = "store_never_log_get";
	memset(list_r, 0, sizeof(*list_r));
	const char *uid = "";
	if (scope_user(op, scope, user_id, &uid) < 0)
		return -1;
	void *entries = NULL;
	int rc =
	    sql_list_alloc(tx, op,
	                   "SELECT entry FROM never_log"
	                   " WHERE org_id = ? AND scope = ? AND user_id = ? ORDER BY pos",
	                   SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(scope_name(scope)), SQL_TEXT(uid)),
	                   &entry_table, 16, MT_NEVER_LOG_MAX, &entries, &list_r->count);
	list_r->entries = entries;
	if (rc < 0)
		store_never_log_free(list_r);
	return rc;
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
		int rc = store_user_in_org(tx, op, org_id, uid);
		if (rc != 0)
			return rc;
	}
	if (sql_exec(tx, op, "DELETE FROM never_log WHERE org_id = ? AND scope = ? AND user_id = ?",
	             SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(scope_name(scope)), SQL_TEXT(uid))) < 0)
		return -1;
	for (size_t i = 0; i < list->count; i++) {
		/* A repeated entry is a slip, not a conflict: the first one keeps its place. */
		if (list->entries[i][0] != '\0' &&
		    sql_exec(tx, op,
		             "INSERT INTO never_log (org_id, scope, user_id, entry, pos)"
		             " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
		             SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(scope_name(scope)), SQL_TEXT(uid),
		                      SQL_TEXT(list->entries[i]), SQL_INT(i))) < 0)
			return -1;
	}
	return 0;
}

void store_never_log_free(struct store_never_log *list)
{
	free(list->entries);
	list->entries = NULL;
	list->count = 0;
}
