/* Shared by the store's own files: the transaction handle the operations receive, the user
 * check other aggregates use, and the migrations (the records' are in message_internal.h). Not
 * for callers outside src/store (the SQL helpers are in sql.h). */
#ifndef MT_STORE_STORE_INTERNAL_H
#define MT_STORE_STORE_INTERNAL_H

#include "store/db.h"
#include "store/store.h"
#include "store/store_smtp.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* The names the account enums of store_smtp.h are stored as, shared by SMTP and IMAP accounts
 * (defined in ops_smtp.c); sized so that the field tables' NAME entries can count them. */
#define STORE_ACCOUNT_NAMES  (STORE_ACCOUNT_DISCONNECTED + 1)
#define STORE_SECURITY_NAMES (STORE_SECURITY_NONE + 1)
#define STORE_AUTH_NAMES     (STORE_AUTH_NONE + 1)
extern const char *const store_account_state_names[STORE_ACCOUNT_NAMES];
extern const char *const store_security_names[STORE_SECURITY_NAMES];
extern const char *const store_auth_names[STORE_AUTH_NAMES];
/* What differs between the SMTP and IMAP account tables for the operations they share
 * (ops_account.c): their statements, the protocol their webhook events name, and the clock
 * their updated_at counts in (IMAP's is a fence token in milliseconds, SMTP's seconds). */
struct sql_table;
struct store_account_kind {
	const char *protocol;          /* "smtp" | "imap" */
	const struct sql_table *table; /* the account's row */
	const char *select;            /* its row: ?1 user_id, ?2 org_id */
	const char *off;               /* ?1 the state off, ?2 now, ?3 user_id, ?4 org_id */
	/* The rows it owns (SMTP's send limits, IMAP's folders), read with it into an array of
	 * the row struct: the statement (?1 user_id), their table, the array's offset and length
	 * and the offset of its size_t count. */
	struct {
		const char *select;
		const struct sql_table *table;
		size_t offset, max, count_offset;
		const char *too_many; /* the refusal of more than max */
		/* Writes them for a saved account (the account struct). */
		int (*put)(struct store_tx *tx, const char *op, const void *account);
	} items;
	/* connected -> disconnected: ?1 the state disconnected, ?2 the reason, ?3 now, ?4 user_id,
	 * ?5 org_id, ?6 the state connected, ?7 the updated_at seen, and in disconnect_secret ?8
	 * the sealed secret seen (NULL: the kind does not compare it; disconnect then also stands
	 * for "seen without a secret", so it says "sealed_secret IS NULL" where the kind does). A
	 * statement may leave ?3 out. */
	const char *disconnect, *disconnect_secret;
	int64_t (*clock)(void);
};
/* The account's row and its items into `row` (zeroed first, row_size bytes): 0,
 * STORE_NOT_FOUND, or -1. */
int store_account_read(struct store_tx *tx, const char *op, const struct store_account_kind *kind,
                       const char *org_id, const char *user_id, void *row, size_t row_size);
/* What the shared save reads of an account struct (the same member names in both). */
struct store_account_save {
	const void *account; /* for items.put */
	enum store_account_state state;
	const char *org_id, *user_id, *last_error;
	size_t sealed_secret_len, sealed_secret_max, item_count;
};
#define STORE_ACCOUNT_SAVE(a, count)                                                               \
	((struct store_account_save){(a), (a)->state, (a)->org_id, (a)->user_id, (a)->last_error,  \
	                             (a)->sealed_secret_len, sizeof((a)->sealed_secret), (count)})
/* Inserts or replaces the account with `upsert` (STORE_ACCOUNT_UPSERT) and `args`, then its
 * items and the account.connected / account.disconnected event unless it was saved off. 0,
 * STORE_NOT_FOUND (a user not in the org), STORE_INVALID, or -1. */
int store_account_put(struct store_tx *tx, const char *op, const struct store_account_kind *kind,
                      struct store_account_save save, const char *upsert,
                      const struct db_arg *args);
/* The upsert of an account into `table`: the shared columns, bound by STORE_ACCOUNT_ARGS in
 * this order, then the kind's own `columns` with their `values` and the `updates` a save
 * makes to them. org_id is part of the conflict update's condition so that a row can never
 * move between orgs, even if a user id were reused. */
#define STORE_ACCOUNT_UPSERT(table, columns, values, updates)                                      \
	"INSERT INTO " table " (user_id, org_id, state, host, port, security, auth, username,"     \
	" tls_fingerprint, sealed_secret, verified_at, last_error, updated_at, " columns ")"       \
	" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, " values ")"                              \
	" ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, host = excluded.host,"       \
	" port = excluded.port, security = excluded.security, auth = excluded.auth,"               \
	" username = excluded.username, tls_fingerprint = excluded.tls_fingerprint,"               \
	" sealed_secret = excluded.sealed_secret, verified_at = excluded.verified_at,"             \
	" last_error = excluded.last_error, updated_at = excluded.updated_at, " updates            \
	" WHERE " table ".org_id = excluded.org_id"
#define STORE_ACCOUNT_ARGS(a, updated_at)                                                          \
	SQL_TEXT((a)->user_id), SQL_TEXT((a)->org_id),                                             \
	    SQL_TEXT(store_account_state_names[(a)->state]), SQL_TEXT((a)->host),                  \
	    SQL_INT((a)->port), SQL_TEXT(store_security_name((a)->security)),                      \
	    SQL_TEXT(store_auth_name((a)->auth)), SQL_TEXT((a)->username),                         \
	    SQL_TEXT((a)->tls_fingerprint),                                                        \
	    (a)->sealed_secret_len > 0 ? SQL_BLOB((a)->sealed_secret, (a)->sealed_secret_len)      \
	                               : SQL_NULL,                                                 \
	    SQL_INT((a)->verified_at), SQL_TEXT((a)->last_error), SQL_INT(updated_at)
/* State off and the secret wiped: 0, STORE_NOT_FOUND, or -1. */
int store_account_off(struct store_tx *tx, const char *op, const struct store_account_kind *kind,
                      const char *org_id, const char *user_id);
/* connected -> disconnected only while the account is still the save that was seen (its
 * updated_at, and its sealed secret where the kind compares it), then the event: 0,
 * STORE_CONFLICT when it changed meanwhile, or -1. */
int store_account_disconnect(struct store_tx *tx, const char *op,
                             const struct store_account_kind *kind, const char *org_id,
                             const char *user_id, int64_t seen_updated_at,
                             const unsigned char *sealed_secret, size_t sealed_secret_len,
                             size_t sealed_secret_max, const char *reason);
/* A kind's protocol, row and clock, with the statements of its table PROTO_accounts whose field
 * table is `account_table` with the columns `columns`. */
#define STORE_ACCOUNT_KIND(proto, columns, clock_fn)                                               \
	.protocol = proto, .table = &account_table, .clock = (clock_fn),                           \
	.select = "SELECT " columns " FROM " proto "_accounts WHERE user_id = ?1 AND org_id = ?2", \
	.off = "UPDATE " proto "_accounts SET state = ?1, sealed_secret = NULL, updated_at = ?2"   \
	       " WHERE user_id = ?3 AND org_id = ?4"
/* A kind's items: the array `member` of the account struct T and its count `count`, read from
 * `from` (columns `columns`, field table `fields`) and written by `put_fn`. */
#define STORE_ACCOUNT_ITEMS(T, member, count, from, columns, fields, put_fn)                       \
	{                                                                                          \
		.select = "SELECT " columns " FROM " from " WHERE user_id = ?1 ORDER BY pos",      \
		.table = &(fields), .offset = offsetof(T, member),                                 \
		.max = sizeof(((T *)0)->member) / sizeof(((T *)0)->member[0]),                     \
		.count_offset = offsetof(T, count), .too_many = "too many " #member,               \
		.put = (put_fn)                                                                    \
	}
/* The columns SMTP and IMAP accounts share, for their field tables (sql.h), after their key
 * (user_id): the same member names in store_smtp_account and store_imap_account. */
#define STORE_ACCOUNT_COLUMNS(G, T)                                                                \
	G(T, TEXT, "org_id", org_id)                                                               \
	G(T, NAME, "state", state, store_account_state_names, STORE_ACCOUNT_OFF)                   \
	G(T, TEXT, "host", host)                                                                   \
	G(T, INT, "port", port)                                                                    \
	G(T, NAME, "security", security, store_security_names, STORE_SECURITY_STARTTLS)            \
	G(T, NAME, "auth", auth, store_auth_names, STORE_AUTH_PASSWORD)                            \
	G(T, TEXT, "username", username)                                                           \
	G(T, TEXT, "tls_fingerprint", tls_fingerprint)                                             \
	G(T, BLOB, "sealed_secret", sealed_secret, sealed_secret_len)                              \
	G(T, INT64, "verified_at", verified_at)                                                    \
	G(T, TEXT, "last_error", last_error)                                                       \
	G(T, INT64, "updated_at", updated_at)

/* What a write transaction remembers between statements (and between the jobs of a group
 * commit); store_tx_forget() drops it when a job's savepoint is rolled back, since the rows it
 * stands for are gone with it. */
struct store_tx_memo {
	/* Feed positions reserved in feed_counter and not handed out yet: [next, last]. */
	char feed_org[MT_ID_MAX];
	int64_t feed_next, feed_last;
};

struct store_tx {
	struct db *db;
	bool writable;
	struct store_tx_memo memo;
};

void store_tx_forget(struct store_tx *tx);

/* Pages of a list keyed by id (a store_*_list with items, count and next_cursor), read as one
 * row more than the page to know whether another follows. store_page_check: the cursor (NULL
 * or "": the first page, then "" on return) is an id with `prefix` and the limit is within
 * 1..MT_LIST_LIMIT_MAX; 0, or STORE_INVALID. */
int store_page_check(const char *op, const char **cursor, const char *prefix, size_t limit);
/* A page query: `sql` ends with the id bound (" AND id < ?" or " AND id > ?") and the row
 * count (" LIMIT ?"), which store_page_read binds after the caller's arguments. */
struct store_page_query {
	const char *sql;
	const struct sql_table *table; /* the items' */
	size_t id_offset;              /* of each item's id, a char array of MT_ID_MAX */
	const char *prefix;            /* the ids' ("ntf_") */
	bool newest_first;             /* "id < ?", ORDER BY id DESC: "~" sorts after every id */
};
/* Reads the page after `cursor` (store_page_check's rules) into a list struct (items, count,
 * next_cursor; all set on every return, and items NULL on a failure, so the items' table has
 * no malloc'd fields): 0, STORE_INVALID, or -1. The query reads one row more than the page, to
 * know whether another follows; the page's last id is then next_cursor. */
int store_page_read(struct store_tx *tx, const char *op, const struct store_page_query *query,
                    const struct db_arg *args, const char *cursor, size_t limit, void *items_slot,
                    size_t item_size, size_t *count_r, char *next_cursor, size_t next_cursor_size);
#define STORE_PAGE_READ(tx, op, query, args, cursor, limit, list)                                  \
	store_page_read((tx), (op), (query), (args), (cursor), (limit), &(list)->items,            \
	                sizeof(*(list)->items), &(list)->count, (list)->next_cursor,               \
	                sizeof((list)->next_cursor))
/* What a list's free function does: its items released, the list empty. */
#define STORE_PAGE_FREE(list)                                                                      \
	do {                                                                                       \
		free((list)->items);                                                               \
		(list)->items = NULL;                                                              \
		(list)->count = 0;                                                                 \
		(list)->next_cursor[0] = '\0';                                                     \
	} while (0)

/* Whether the string items[i] (of `stride` bytes each) repeats an earlier one: a caller's slip
 * that the operations storing lists (domains, aliases, addresses) skip, not a conflict. */
static inline bool store_repeated(const void *items, size_t stride, size_t i)
{
	const char *item = (const char *)items + i * stride;
	for (size_t k = 0; k < i; k++) {
		if (strcmp((const char *)items + k * stride, item) == 0)
			return true;
	}
	return false;
}

/* 0 when the user is the org's, STORE_NOT_FOUND otherwise, -1 (logged): where a foreign user
 * id becomes "not found" for what is reached through a user (accounts, never-log lists). */
int store_user_in_org(struct store_tx *tx, const char *op, const char *org_id, const char *user_id);
/* The start of a write made for a user: store_need_write, then store_user_in_org. */
int store_write_for_user(struct store_tx *tx, const char *op, const char *org_id,
                         const char *user_id);
/* Rows of a feed (org, position) after `after`, in position order, at most `limit`, read as
 * sql_list_alloc reads: `sql` is STORE_FEED_SQL(a SELECT without its WHERE). */
#define STORE_FEED_SQL(select) select " WHERE org_id = ? AND seq > ? ORDER BY seq LIMIT ?"
int store_feed_rows(struct store_tx *tx, const char *op, const char *sql, const char *org_id,
                    int64_t after, size_t limit, const struct sql_table *table, void **rows_r,
                    size_t *count_r);

/* Before activities are deleted (ops_activity.c): a tombstone for each activity `select_sql`
 * lists (columns id, profile_id, in the order the feed should show them), at new feed
 * positions of the org, with `reason` (migration 17's list). *count_r (NULL: not wanted)
 * counts them. The caller deletes the activities in the same transaction. */
int store_activities_bury(struct store_tx *tx, const char *op, const char *org_id,
                          const char *select_sql, const struct db_arg *args, const char *reason,
                          size_t *count_r);
/* The org's feed counter (ops_activity.c), shared by activities and webhook events: reserves
 * `n` positions in commit order and returns the last; or reads the highest handed out (0 before
 * the first). */
int store_feed_reserve(struct store_tx *tx, const char *op, const char *org_id, int64_t n,
                       int64_t *last_r);
int store_feed_last(struct store_tx *tx, const char *op, const char *org_id, int64_t *last_r);

/* Applies pending migrations inside one write transaction. 0 or -1 with *error_r. */
int store_migrate(struct db *db, const char **error_r);
/* The same, stopping after migration `last` (tests build an older schema with it). */
int store_migrate_until(struct db *db, int last, const char **error_r);
/* The highest migration this binary knows. */
int store_schema_latest(void);

#endif
