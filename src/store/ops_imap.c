/* IMAP accounts and their folder cursors. The sealed secret is bytes from src/crypto; it is
 * stored and read back, never logged and never looked at here. */
#include "store/store_imap.h"
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
	G(T, INT64, "since", since)                                                                \
	G(T, INT64, "last_sync_at", last_sync_at)
SQL_TABLE(account_table, ACCOUNT_ROW, struct store_imap_account);

#define FOLDER_ROW(F, G, T)                                                                        \
	F(T, TEXT, "name", name)                                                                   \
	G(T, TEXT, "role", role)                                                                   \
	G(T, INT64, "uidvalidity", uidvalidity)                                                    \
	G(T, INT64, "last_uid", last_uid)                                                          \
	G(T, INT64, "highestmodseq", highestmodseq)                                                \
	G(T, INT64, "messages_synced", messages_synced)
SQL_TABLE(folder_table, FOLDER_ROW, struct store_imap_folder);

#define REF_ROW(F, G, T)                                                                           \
	F(T, TEXT, "a.org_id", org_id)                                                             \
	G(T, TEXT, "a.user_id", user_id)
SQL_TABLE(ref_table, REF_ROW, struct store_imap_ref);

static int put_folders(struct store_tx *tx, const char *op, const void *account)
{
	const struct store_imap_account *a = account;
	/* Folders no longer watched go; a kept one keeps its cursor. */
	if (sql_exec(tx, op, "UPDATE imap_folders SET pos = -1 WHERE user_id = ?",
	             SQL_ARGS(SQL_TEXT(a->user_id))) < 0)
		return -1;
	for (size_t i = 0; i < a->folder_count; i++) {
		const struct store_imap_folder *f = &a->folders[i];
		int64_t n = sql_exec(tx, op,
		                     "UPDATE imap_folders SET pos = ?, role = ?"
		                     " WHERE user_id = ? AND name = ?",
		                     SQL_ARGS(SQL_INT(i), SQL_TEXT(f->role), SQL_TEXT(a->user_id),
		                              SQL_TEXT(f->name)));
		if (n < 0)
			return -1;
		if (n == 0 &&
		    sql_exec(tx, op,
		             "INSERT INTO imap_folders (user_id, name, pos, role, uidvalidity,"
		             " last_uid, highestmodseq, messages_synced) VALUES (?, ?, ?, ?, 0, 0, "
		             "0, 0)",
		             SQL_ARGS(SQL_TEXT(a->user_id), SQL_TEXT(f->name), SQL_INT(i),
		                      SQL_TEXT(f->role))) < 0)
			return -1;
	}
	return sql_exec(tx, op, "DELETE FROM imap_folders WHERE user_id = ? AND pos < 0",
	                SQL_ARGS(SQL_TEXT(a->user_id))) < 0
	           ? -1
	           : 0;
}

static const struct store_account_kind imap_kind = {
    STORE_ACCOUNT_KIND("imap", SQL_COLUMNS(ACCOUNT_ROW), mt_wall_ms),
    .items = STORE_ACCOUNT_ITEMS(struct store_imap_account, folders, folder_count, "imap_folders",
                                 SQL_COLUMNS(FOLDER_ROW), folder_table, put_folders),
    /* updated_at stays: it is the fence of the sync's cursor writes (imap_folder_set), and the
     * sync's copy of the account does not carry the secret. */
    .disconnect = "UPDATE imap_accounts SET state = ?1, last_error = ?2"
                  " WHERE user_id = ?4 AND org_id = ?5 AND state = ?6 AND updated_at = ?7",
    .disconnect_secret = NULL,
};

int store_imap_account_get(struct store_tx *tx, const char *org_id, const char *user_id,
                           struct store_imap_account *account_r)
{
	return store_account_read(tx, "store_imap_account_get", &imap_kind, org_id, user_id,
	                          account_r, sizeof(*account_r));
}

int store_imap_account_put(struct store_tx *tx, const struct store_imap_account *account)
{
	const struct store_imap_account *a = account;
	/* last_sync_at is the sync's to change (store_imap_account_report), not a save's. */
	return store_account_put(tx, "store_imap_account_put", &imap_kind,
	                         STORE_ACCOUNT_SAVE(a, a->folder_count),
	                         STORE_ACCOUNT_UPSERT("imap_accounts", "since, last_sync_at",
	                                              "?, ?", "since = excluded.since"),
	                         SQL_ARGS(STORE_ACCOUNT_ARGS(a, a->updated_at), SQL_INT(a->since),
	                                  SQL_INT(a->last_sync_at)));
}

int store_imap_account_off(struct store_tx *tx, const char *org_id, const char *user_id)
{
	return store_account_off(tx, "store_imap_account_off", &imap_kind, org_id, user_id);
}

int store_imap_account_disconnect(struct store_tx *tx, const struct store_imap_account *seen,
                                  const char *reason)
{
	return store_account_disconnect(tx, "store_imap_account_disconnect", &imap_kind,
	                                seen->org_id, seen->user_id, seen->updated_at, NULL, 0, 0,
	                                reason);
}

int store_imap_account_report(struct store_tx *tx, const char *user_id, int64_t last_sync_at,
                              const char *last_error)
{
	static const char op[] = "store_imap_account_report";
	int64_t n =
	    last_sync_at > 0
	        ? sql_exec(tx, op,
	                   "UPDATE imap_accounts SET last_sync_at = ?, last_error = ?"
	                   " WHERE user_id = ?",
	                   SQL_ARGS(SQL_INT(last_sync_at), SQL_TEXT(last_error), SQL_TEXT(user_id)))
	        : sql_exec(tx, op, "UPDATE imap_accounts SET last_error = ? WHERE user_id = ?",
	                   SQL_ARGS(SQL_TEXT(last_error), SQL_TEXT(user_id)));
	return n < 0 ? -1 : 0;
}

int store_imap_folder_set(struct store_tx *tx, const char *user_id, int64_t updated_at,
                          const char *name, int64_t uidvalidity, int64_t last_uid,
                          int64_t highestmodseq, int64_t synced, bool reset)
{
	static const char op[] = "store_imap_folder_set";
	int64_t n = sql_exec(tx, op,
	                     "UPDATE imap_folders SET uidvalidity = ?, last_uid = ?,"
	                     " highestmodseq = ?,"
	                     " messages_synced = CASE WHEN ? THEN ? ELSE messages_synced + ? END"
	                     " WHERE user_id = ? AND name = ? AND EXISTS (SELECT 1 FROM"
	                     " imap_accounts a WHERE a.user_id = ? AND a.updated_at = ?)",
	                     SQL_ARGS(SQL_INT(uidvalidity), SQL_INT(last_uid),
	                              SQL_INT(highestmodseq), SQL_INT(reset ? 1 : 0),
	                              SQL_INT(synced), SQL_INT(synced), SQL_TEXT(user_id),
	                              SQL_TEXT(name), SQL_TEXT(user_id), SQL_INT(updated_at)));
	return n < 0 ? -1 : n == 1 ? 0 : STORE_CONFLICT;
}

int store_imap_accounts_to_sync(struct store_tx *tx, struct store_imap_ref *refs, size_t max,
                                size_t *count_r)
{
	static const char op[] = "store_imap_accounts_to_sync";
	return sql_list(tx, op,
	                "SELECT " SQL_COLUMNS(REF_ROW) " FROM imap_accounts a JOIN orgs o"
	                                               " ON o.id = a.org_id"
	                                               " WHERE a.state = ? AND o.imap_sync = 1",
	                SQL_ARGS(SQL_TEXT(store_account_state_names[STORE_ACCOUNT_CONNECTED])),
	                &ref_table, refs, max, count_r);
}
