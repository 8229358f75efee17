/* Org-level API keys. */
#include "store/store_api_key.h"
#include "store/sql.h"
#include "store/store_internal.h"
#include "lib/str.h"

#include <stdlib.h>
#include <string.h>

#define KEY_ROW(F, G, T)                                                                           \
	F(T, TEXT, "id", id)                                                                       \
	G(T, TEXT, "org_id", org_id)                                                               \
	G(T, TEXT, "name", name)                                                                   \
	G(T, INT, "scopes", scopes)                                                                \
	G(T, TEXT, "created_by", created_by)                                                       \
	G(T, INT64, "created_at", created_at)
SQL_TABLE(key_table, KEY_ROW, struct store_api_key);

int store_api_key_create(struct store_tx *tx, struct store_api_key *key)
{
	return sql_insert_new(
	    tx, "store_api_key_create", "key", key->id, &key->created_at,
	    "INSERT INTO api_keys (id, created_at, org_id, name, scopes, hash, created_by)"
	    " SELECT ?, ?, id, ?, ?, ?, ? FROM orgs WHERE id = ?",
	    SQL_ARGS(SQL_TEXT(key->name), SQL_INT(key->scopes),
	             SQL_BLOB(key->hash, sizeof(key->hash)), SQL_TEXT(key->created_by),
	             SQL_TEXT(key->org_id)));
}

int store_api_key_authenticate(struct store_tx *tx, const unsigned char hash[32],
                               struct store_api_key *key_r)
{
	memset(key_r, 0, sizeof(*key_r));
	int rc = sql_get(tx, "store_api_key_authenticate",
	                 "SELECT " SQL_COLUMNS(KEY_ROW) " FROM api_keys"
	                                                " WHERE hash = ? AND revoked_at IS NULL",
	                 SQL_ARGS(SQL_BLOB(hash, 32)), &key_table, key_r);
	if (rc == 0)
		memcpy(key_r->hash, hash, sizeof(key_r->hash));
	return rc;
}

int store_api_key_revoke(struct store_tx *tx, const char *org_id, const char *key_id)
{
	/* An already revoked key keeps its first revocation time. */
	return sql_change(tx, "store_api_key_revoke",
	                  "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?)"
	                  " WHERE id = ? AND org_id = ?",
	                  SQL_ARGS(SQL_INT(mt_wall_s()), SQL_TEXT(key_id), SQL_TEXT(org_id)));
}

int store_api_key_count(struct store_tx *tx, const char *org_id, int64_t *count_r)
{
	*count_r = 0;
	return sql_get(tx, "store_api_key_count",
	               "SELECT COUNT(*) FROM api_keys WHERE org_id = ? AND revoked_at IS NULL",
	               SQL_ARGS(SQL_TEXT(org_id)), &sql_int64_table, count_r);
}

void store_api_key_list_free(struct store_api_key_list *list)
{
	free(list->items);
	list->items = NULL;
	list->count = 0;
}

int store_api_key_list(struct store_tx *tx, const char *org_id, struct store_api_key_list *list_r)
{
	memset(list_r, 0, sizeof(*list_r));
	void *items = NULL;
	int rc = sql_list_alloc(
	    tx, "store_api_key_list",
	    "SELECT " SQL_COLUMNS(KEY_ROW) " FROM api_keys"
	                                   " WHERE org_id = ? AND revoked_at IS NULL"
	                                   " ORDER BY created_at, id",
	    SQL_ARGS(SQL_TEXT(org_id)), &key_table, 8, MT_API_KEYS_MAX, &items, &list_r->count);
	list_r->items = items;
	if (rc != 0)
		store_api_key_list_free(list_r);
	return rc;
}
