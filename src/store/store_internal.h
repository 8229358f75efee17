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
/* What storing an SMTP or IMAP account checks first: a known state, a sealed secret within its
 * buffer, a write transaction, and the user in the org (a foreign user id is not found). */
int store_account_put_check(struct store_tx *tx, const char *op, enum store_account_state state,
                            size_t sealed_secret_len, size_t sealed_secret_max, const char *org_id,
                            const char *user_id);
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
/* The extra row dropped; the page's last id is then the next page's cursor. */
#define STORE_PAGE_TRIM(list, limit)                                                               \
	do {                                                                                       \
		if ((list)->count > (limit)) {                                                     \
			(list)->count = (limit);                                                   \
			mt_strlcpy((list)->next_cursor, (list)->items[(limit)-1].id,               \
			           sizeof((list)->next_cursor));                                   \
		}                                                                                  \
	} while (0)
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
