/* IMAP accounts and their folder cursors. The sealed secret is bytes from src/crypto; it is
 * stored and read back, never logged and never looked at here. */
#include "store/store_imap.h"
#include "store/sql.h"
#include "store/store_webhook.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "lib/str.h"

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

int store_imap_account_get(struct store_tx *tx, const char *org_id, const char *user_id,
                           struct store_imap_account *account_r)
{
	static const char op[] = "store_imap_account_get";
	memset(account_r, 0, sizeof(*account_r));
	int rc = sql_get(tx, op,
	                 "SELECT " SQL_COLUMNS(ACCOUNT_ROW) " FROM imap_accounts"
	                                                    " WHERE user_id = ? AND org_id = ?",
	                 SQL_ARGS(SQL_TEXT(user_id), SQL_TEXT(org_id)), &account_table, account_r);
	if (rc != 0)
		return rc;
	return sql_list(tx, op,
	                "SELECT " SQL_COLUMNS(FOLDER_ROW) " FROM imap_folders"
	                                                  " WHERE user_id = ? ORDER BY pos",
	                SQL_ARGS(SQL_TEXT(user_id)), &folder_table, account_r->folders,
	                MT_IMAP_FOLDERS_MAX, &account_r->folder_count);
}

static int put_folders(struct store_tx *tx, const char *op, const struct store_imap_account *a)
{
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

int store_imap_account_put(struct store_tx *tx, const struct store_imap_account *account)
{
	static const char op[] = "store_imap_account_put";
	const struct store_imap_account *a = account;
	if (a->folder_count > MT_IMAP_FOLDERS_MAX)
		return store_invalid(op, "too many folders");
	int rc = store_account_put_check(tx, op, a->state, a->sealed_secret_len,
	                                 sizeof(a->sealed_secret), a->org_id, a->user_id);
	if (rc != 0)
		return rc;
	rc = sql_change(
	    tx, op,
	    "INSERT INTO imap_accounts (user_id, org_id, state, host, port, security, auth,"
	    " username, tls_fingerprint, sealed_secret, since, verified_at, last_sync_at,"
	    " last_error, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	    " ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, host = excluded.host,"
	    " port = excluded.port, security = excluded.security, auth = excluded.auth,"
	    " username = excluded.username, tls_fingerprint = excluded.tls_fingerprint,"
	    " sealed_secret = excluded.sealed_secret, since = excluded.since,"
	    " verified_at = excluded.verified_at, last_error = excluded.last_error,"
	    " updated_at = excluded.updated_at"
	    " WHERE imap_accounts.org_id = excluded.org_id",
	    SQL_ARGS(SQL_TEXT(a->user_id), SQL_TEXT(a->org_id),
	             SQL_TEXT(store_account_state_names[a->state]), SQL_TEXT(a->host),
	             SQL_INT(a->port), SQL_TEXT(store_security_name(a->security)),
	             SQL_TEXT(store_auth_name(a->auth)), SQL_TEXT(a->username),
	             SQL_TEXT(a->tls_fingerprint),
	             a->sealed_secret_len > 0 ? SQL_BLOB(a->sealed_secret, a->sealed_secret_len)
	                                      : SQL_NULL,
	             SQL_INT(a->since), SQL_INT(a->verified_at), SQL_INT(a->last_sync_at),
	             SQL_TEXT(a->last_error), SQL_INT(a->updated_at)));
	if (rc == 0)
		rc = put_folders(tx, op, a);
	if (rc == 0 && a->state != STORE_ACCOUNT_OFF)
		rc =
		    store_webhook_account_event(tx, a->org_id, a->user_id, "imap",
		                                a->state == STORE_ACCOUNT_CONNECTED, a->last_error);
	return rc;
}

int store_imap_account_off(struct store_tx *tx, const char *org_id, const char *user_id)
{
	static const char op[] = "store_imap_account_off";
	return sql_change(tx, op,
	                  "UPDATE imap_accounts SET state = ?, sealed_secret = NULL, updated_at = ?"
	                  " WHERE user_id = ? AND org_id = ?",
	                  SQL_ARGS(SQL_TEXT(store_account_state_names[STORE_ACCOUNT_OFF]),
	                           SQL_INT(mt_wall_ms()), SQL_TEXT(user_id), SQL_TEXT(org_id)));
}

int store_imap_account_disconnect(struct store_tx *tx, const struct store_imap_account *seen,
                                  const char *reason)
{
	static const char op[] = "store_imap_account_disconnect";
	int64_t n =
	    sql_exec(tx, op,
	             "UPDATE imap_accounts SET state = ?, last_error = ?"
	             " WHERE user_id = ? AND org_id = ? AND state = ? AND updated_at = ?",
	             SQL_ARGS(SQL_TEXT(store_account_state_names[STORE_ACCOUNT_DISCONNECTED]),
	                      SQL_TEXT(reason), SQL_TEXT(seen->user_id), SQL_TEXT(seen->org_id),
	                      SQL_TEXT(store_account_state_names[STORE_ACCOUNT_CONNECTED]),
	                      SQL_INT(seen->updated_at)));
	if (n == 1)
		return store_webhook_account_event(tx, seen->org_id, seen->user_id, "imap", false,
		                                   reason);
	return n < 0 ? -1 : STORE_CONFLICT;
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
