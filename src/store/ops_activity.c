/* Activities: one per (profile, message record), their feed sequence, timelines and the feed. */
#include "store/store_activity.h"
#include "store/message_internal.h"
#include "store/sql.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "store/store_message.h"
#include "lib/str.h"

#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reserves `n` consecutive feed positions for the org and returns the last one. The UPDATE
 * locks the counter row until this transaction commits (SQLite: the write lock; PostgreSQL: the
 * row lock), so numbers are handed out in commit order: no reader can see a number while a
 * smaller one is still uncommitted. Positions are taken from the counter MT_FEED_RESERVE at a
 * time and handed out from the transaction's memo: what the transaction does not use is a gap,
 * which a reader paging by `since` never notices.
 *
 * UPDATE then SELECT rather than UPDATE ... RETURNING: in SQLite 3.40 a RETURNING statement
 * inside a savepoint costs time in proportion to the pages the transaction has dirtied so far
 * (~30 us after a few thousand activities, ~80 us after 20,000 dirty pages, against ~1 us). */
static int reserve_from_counter(struct store_tx *tx, const char *op, const char *org_id, int64_t n,
                                int64_t *last_r)
{
	int64_t changed =
	    sql_exec(tx, op, "UPDATE feed_counter SET value = value + ? WHERE org_id = ?",
	             SQL_ARGS(SQL_INT(n), SQL_TEXT(org_id)));
	if (changed < 0)
		return -1;
	if (changed == 0) {
		/* The org's first activity. Two PostgreSQL transactions racing here meet on
		 * the primary key: the loser's job fails, as on any conflict. */
		if (sql_exec(tx, op, "INSERT INTO feed_counter (org_id, value) VALUES (?, ?)",
		             SQL_ARGS(SQL_TEXT(org_id), SQL_INT(n))) < 0)
			return -1;
		*last_r = n;
		return 0;
	}
	int rc = sql_get(tx, op, "SELECT value FROM feed_counter WHERE org_id = ?",
	                 SQL_ARGS(SQL_TEXT(org_id)), &sql_int64_table, last_r);
	return rc == 0 ? 0 : rc < 0 ? -1 : store_invalid(op, "feed counter vanished");
}

int store_feed_reserve(struct store_tx *tx, const char *op, const char *org_id, int64_t n,
                       int64_t *last_r)
{
	struct store_tx_memo *m = &tx->memo;
	if (strcmp(m->feed_org, org_id) != 0 || m->feed_last - m->feed_next + 1 < n) {
		int64_t take = n > MT_FEED_RESERVE ? n : MT_FEED_RESERVE, last = 0;
		if (reserve_from_counter(tx, op, org_id, take, &last) < 0)
			return -1;
		mt_strlcpy(m->feed_org, org_id, sizeof(m->feed_org));
		m->feed_next = last - take + 1;
		m->feed_last = last;
	}
	m->feed_next += n;
	*last_r = m->feed_next - 1;
	return 0;
}

/* Activity ids come from a ChaCha20 stream keyed once per thread from the system's generator:
 * store_new_id() asks the kernel for every id, which cost ~5 us per activity here, a tenth of
 * the budget for logging a message. Same shape: "act_" and 20 base32 characters (100 bits). */
static void new_activity_id(char out[MT_ID_MAX])
{
	static _Thread_local unsigned char seed[randombytes_SEEDBYTES];
	static _Thread_local uint64_t counter;
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
	if (counter == 0)
		randombytes_buf(seed, sizeof(seed));
	counter++;
	unsigned char key[randombytes_SEEDBYTES];
	memcpy(key, seed, sizeof(key));
	for (size_t i = 0; i < sizeof(counter); i++)
		key[i] ^= (unsigned char)(counter >> (8 * i));
	unsigned char raw[MT_STORE_ID_RANDOM];
	randombytes_buf_deterministic(raw, sizeof(raw), key);
	memcpy(out, "act_", 4);
	for (size_t i = 0; i < sizeof(raw); i++)
		out[4 + i] = alphabet[raw[i] & 31];
	out[4 + sizeof(raw)] = '\0';
}

SQL_TEXT_TABLE(id_table, "profile_id", MT_ID_MAX);

/* 0 when the profile is the org's, STORE_NOT_FOUND otherwise. */
static int profile_in_org(struct store_tx *tx, const char *op, const char *org_id,
                          const char *profile_id)
{
	return sql_get(tx, op, "SELECT 1 FROM profiles WHERE org_id = ? AND id = ?",
	               SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(profile_id)), NULL, NULL);
}

/* Inserts the activities of record `rid` (dated `date`) for `ids` (the org's profiles), taking one
 * feed reservation for all: a position left unused by an activity that already existed is a gap,
 * which a reader paging by `since` never notices.
 *
 * Every statement here writes one row with VALUES: in SQLite 3.40, a statement that may write
 * several rows (INSERT ... SELECT, multi-row VALUES, UPDATE ... RETURNING) opens a statement
 * journal, and closing it inside the job's savepoint costs time in proportion to the pages the
 * transaction has dirtied — quadratic over a job of a thousand messages. */
static int insert_activities(struct store_tx *tx, const char *op, const char *org_id,
                             const char (*ids)[MT_ID_MAX], size_t count, int64_t rid, int64_t date,
                             size_t *created_r)
{
	if (count == 0)
		return 0;
	int64_t last;
	if (store_feed_reserve(tx, op, org_id, (int64_t)count, &last) < 0)
		return -1;
	int64_t seq = last - (int64_t)count + 1, now = mt_wall_s();
	for (size_t i = 0; i < count; i++, seq++) {
		char id[MT_ID_MAX];
		new_activity_id(id);
		int64_t n = sql_exec(
		    tx, op,
		    "INSERT INTO activities (rid, profile_id, org_id, id, date, seq,"
		    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
		    " ON CONFLICT (rid, profile_id) DO NOTHING",
		    SQL_ARGS(SQL_INT(rid), SQL_TEXT(ids[i]), SQL_TEXT(org_id), SQL_TEXT(id),
		             SQL_INT(date), SQL_INT(seq), SQL_INT(now), SQL_INT(now)));
		if (n < 0)
			return -1;
		*created_r += (size_t)n;
	}
	return 0;
}

int store_activities_ensure(struct store_tx *tx, const char *org_id,
                            const char (*profile_ids)[MT_ID_MAX], size_t count, const char *key,
                            size_t *created_r)
{
	static const char op[] = "store_activities_ensure";
	*created_r = 0;
	if (store_need_write(tx, op) < 0)
		return -1;
	char(*ids)[MT_ID_MAX] = calloc(count > 0 ? count : 1, sizeof(*ids));
	if (ids == NULL)
		return store_invalid(op, "out of memory");
	size_t n = 0;
	int rc = 0;
	for (size_t i = 0; i < count && rc == 0; i++) {
		rc = profile_in_org(tx, op, org_id, profile_ids[i]);
		if (rc == 0)
			mt_strlcpy(ids[n++], profile_ids[i], MT_ID_MAX);
		else if (rc == STORE_NOT_FOUND)
			rc = 0;
	}
	struct store_record_ref record = {0, 0, 0};
	if (rc == 0 && n > 0)
		rc = store_record_find(tx, op, org_id, key, &record);
	if (rc == 0)
		rc = insert_activities(tx, op, org_id, (const char(*)[MT_ID_MAX])ids, n, record.rid,
		                       record.date, created_r);
	free(ids);
	return rc;
}

int store_activities_for_addresses(struct store_tx *tx, const char *org_id, int64_t record,
                                   int64_t date, const char *const *addresses, size_t count,
                                   size_t *profiles_r, size_t *created_r, bool *found_r)
{
	static const char op[] = "store_activities_for_addresses";
	*profiles_r = *created_r = 0;
	if (store_need_write(tx, op) < 0)
		return -1;
	char(*ids)[MT_ID_MAX] = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	for (size_t i = 0; i < count && rc == 0; i++) {
		/* The org's address index: what it returns is the org's, no further check. */
		struct db_stmt *s = sql_prepare(tx, op,
		                                "SELECT profile_id FROM profile_addresses"
		                                " WHERE org_id = ? AND address = ?",
		                                SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(addresses[i])));
		if (s == NULL) {
			rc = -1;
			break;
		}
		if (found_r != NULL)
			found_r[i] = false;
		int step;
		while ((step = sql_step(tx, op, s)) > 0) {
			if (found_r != NULL)
				found_r[i] = true;
			if (n == cap) {
				size_t ncap = cap == 0 ? 8 : cap * 2;
				void *p = realloc(ids, ncap * sizeof(*ids));
				if (p == NULL) {
					rc = store_invalid(op, "out of memory");
					break;
				}
				ids = p;
				cap = ncap;
			}
			/* Read into the next slot, kept unless the profile is there already. */
			if (sql_read(op, s, 0, &id_table, ids[n]) < 0) {
				rc = -1;
				break;
			}
			bool seen = false;
			for (size_t k = 0; k < n && !seen; k++)
				seen = strcmp(ids[k], ids[n]) == 0;
			n += !seen;
		}
		if (step > 0)
			db_finish(s);
		else if (step < 0)
			rc = -1;
	}
	if (rc == 0)
		rc = insert_activities(tx, op, org_id, (const char(*)[MT_ID_MAX])ids, n, record,
		                       date, created_r);
	*profiles_r = n;
	free(ids);
	return rc;
}

int store_activity_ensure(struct store_tx *tx, const char *org_id, const char *profile_id,
                          const char *key, bool *created_r)
{
	static const char op[] = "store_activity_ensure";
	*created_r = false;
	if (store_need_write(tx, op) < 0)
		return -1;
	/* Decided before the first write: the profile and the record are the org's, and whether
	 * the activity exists (then no feed position is taken). */
	int64_t exists = 0; /* NULL, read as 0, when there is none */
	int rc = sql_get(tx, op,
	                 "SELECT (SELECT 1 FROM activities a WHERE a.rid = r.rid AND"
	                 " a.profile_id = p.id) FROM profiles p, message_records r"
	                 " WHERE p.id = ? AND p.org_id = ? AND r.org_id = p.org_id AND r.key = ?",
	                 SQL_ARGS(SQL_TEXT(profile_id), SQL_TEXT(org_id), SQL_TEXT(key)),
	                 &sql_int64_table, &exists);
	if (rc != 0 || exists)
		return rc;
	char id[MT_ID_MAX];
	mt_strlcpy(id, profile_id, sizeof(id));
	size_t created;
	if (store_activities_ensure(tx, org_id, (const char(*)[MT_ID_MAX])id, 1, key, &created) < 0)
		return -1;
	*created_r = created == 1;
	return 0;
}

int store_activities_touch(struct store_tx *tx, const char *org_id, int64_t record)
{
	static const char op[] = "store_activities_touch";
	if (store_need_write(tx, op) < 0)
		return -1;
	/* The profiles first: the counter is then taken once for all of them. Positions follow
	 * the activity ids. */
	void *rows = NULL;
	size_t n = 0;
	int rc =
	    sql_list_alloc(tx, op, "SELECT profile_id FROM activities WHERE rid = ? ORDER BY id",
	                   SQL_ARGS(SQL_INT(record)), &id_table, 8, SIZE_MAX, &rows, &n);
	const char(*ids)[MT_ID_MAX] = rows;
	int64_t last = 0;
	if (rc == 0 && n > 0)
		rc = store_feed_reserve(tx, op, org_id, (int64_t)n, &last);
	int64_t seq = last - (int64_t)n + 1, now = mt_wall_s();
	for (size_t i = 0; i < n && rc == 0; i++, seq++) {
		if (sql_exec(tx, op,
		             "UPDATE activities SET seq = ?, updated_at = ?"
		             " WHERE rid = ? AND profile_id = ?",
		             SQL_ARGS(SQL_INT(seq), SQL_INT(now), SQL_INT(record),
		                      SQL_TEXT(ids[i]))) < 0)
			rc = -1;
	}
	free(rows);
	return rc;
}

/* ---- removals ---- */

struct buried {
	char id[MT_ID_MAX];
	char profile_id[MT_ID_MAX];
};
#define BURIED_ROW(F, G, T)                                                                        \
	F(T, TEXT, "id", id)                                                                       \
	G(T, TEXT, "profile_id", profile_id)
SQL_TABLE(buried_table, BURIED_ROW, struct buried);

int store_activities_bury(struct store_tx *tx, const char *op, const char *org_id,
                          const char *select_sql, const struct db_arg *args, const char *reason,
                          size_t *count_r)
{
	if (store_need_write(tx, op) < 0)
		return -1;
	/* Listed first, so the counter is taken once for all; one row per INSERT, for the
	 * statement journal's sake (insert_activities). */
	void *rows = NULL;
	size_t n = 0;
	int rc = sql_list_alloc(tx, op, select_sql, args, &buried_table, 16, SIZE_MAX, &rows, &n);
	const struct buried *b = rows;
	int64_t last = 0;
	if (rc == 0 && n > 0)
		rc = store_feed_reserve(tx, op, org_id, (int64_t)n, &last);
	int64_t seq = last - (int64_t)n + 1, now = mt_wall_s();
	for (size_t i = 0; i < n && rc == 0; i++, seq++) {
		if (sql_exec(tx, op,
		             "INSERT INTO activity_tombstones (org_id, seq, id, profile_id, reason,"
		             " created_at) VALUES (?, ?, ?, ?, ?, ?)",
		             SQL_ARGS(SQL_TEXT(org_id), SQL_INT(seq), SQL_TEXT(b[i].id),
		                      SQL_TEXT(b[i].profile_id), SQL_TEXT(reason), SQL_INT(now))) <
		    0)
			rc = -1;
	}
	free(rows);
	if (rc == 0 && count_r != NULL)
		*count_r = n;
	return rc;
}

int store_tombstones_purge(struct store_tx *tx, int64_t before, size_t *deleted_r)
{
	*deleted_r = 0;
	int64_t n = sql_exec(tx, "store_tombstones_purge",
	                     "DELETE FROM activity_tombstones WHERE created_at < ?",
	                     SQL_ARGS(SQL_INT(before)));
	if (n < 0)
		return -1;
	*deleted_r = (size_t)n;
	return 0;
}

/* ---- reading ---- */

#define ACTIVITY_ROW(F, G, T)                                                                      \
	F(T, TEXT, "a.id", id)                                                                     \
	G(T, TEXT, "a.profile_id", profile_id)                                                     \
	G(T, NAME, "r.type", type, store_type_names, STORE_EMAIL_RECEIVED)                         \
	G(T, NAME, "r.source", source, store_source_names, 0)                                      \
	G(T, TEXT, "r.key", key)                                                                   \
	G(T, TEXT, "r.message_id", message_id)                                                     \
	G(T, TEXT, "r.subject", subject)                                                           \
	G(T, INT64, "r.date", date)                                                                \
	G(T, TEXT, "r.from_address", from_address)                                                 \
	G(T, TEXT, "r.from_name", from_name)                                                       \
	G(T, TEXT_DUP, "r.to_json", to_json)                                                       \
	G(T, TEXT_DUP, "r.cc_json", cc_json)                                                       \
	G(T, TEXT_DUP, "r.attachments_json", attachments_json)                                     \
	G(T, TEXT, "r.snippet", snippet)                                                           \
	G(T, TEXT, "r.outbox_id", outbox_id)                                                       \
	G(T, TEXT, "r.in_reply_to", in_reply_to)                                                   \
	G(T, TEXT, "r.thread_id", thread_id)                                                       \
	G(T, INT64, "a.seq", seq)                                                                  \
	G(T, INT64, "a.created_at", created_at)                                                    \
	G(T, INT64, "a.updated_at", updated_at)
SQL_TABLE(activity_table, ACTIVITY_ROW, struct store_activity);
#define ACTIVITY_SELECT                                                                            \
	"SELECT " SQL_COLUMNS(                                                                     \
	    ACTIVITY_ROW) " FROM activities a JOIN message_records r ON r.rid = a.rid"

/* A user of a message, as users_json lists them. */
struct message_user {
	char id[MT_ID_MAX];
	char email[MT_ADDRESS_MAX + 1];
};
#define MESSAGE_USER_ROW(F, G, T)                                                                  \
	F(T, TEXT, "mu.user_id", id)                                                               \
	G(T, TEXT, "u.email", email)
SQL_TABLE(message_user_table, MESSAGE_USER_ROW, struct message_user);

void store_activity_list_free(struct store_activity_list *list)
{
	for (size_t i = 0; i < list->count; i++) {
		free(list->items[i].to_json);
		free(list->items[i].cc_json);
		free(list->items[i].attachments_json);
		free(list->items[i].users_json);
	}
	free(list->items);
	list->items = NULL;
	list->count = 0;
}

/* [{"id","email"}] of the users whose mail the message was, in the order they saw it. */
static int users_json(struct store_tx *tx, const char *op, const char *org_id, const char *key,
                      char **json_r)
{
	/* Users joined by their id alone (unique, and the row is the org's): with the org in the
	 * join SQLite walked every user of the org first. */
	struct db_stmt *s = sql_prepare(
	    tx, op,
	    "SELECT " SQL_COLUMNS(MESSAGE_USER_ROW) " FROM message_records r"
	                                            " JOIN message_users mu ON mu.rid = r.rid JOIN "
	                                            "users u ON u.id = mu.user_id"
	                                            " WHERE r.org_id = ? AND r.key = ? ORDER BY "
	                                            "mu.added_at, mu.user_id",
	    SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(key)));
	if (s == NULL)
		return -1;
	json_t *arr = json_array();
	struct message_user u;
	int rc;
	while ((rc = sql_step(tx, op, s)) > 0) {
		if (sql_read(op, s, 0, &message_user_table, &u) < 0)
			break;
		json_t *o = json_pack("{s:s, s:s}", "id", u.id, "email", u.email);
		if (o == NULL || json_array_append_new(arr, o) < 0) {
			store_invalid(op, "out of memory");
			break;
		}
	}
	if (rc > 0) { /* stopped at a row */
		db_finish(s);
		rc = -1;
	}
	*json_r = rc == 0 ? json_dumps(arr, JSON_COMPACT) : NULL;
	json_decref(arr);
	if (rc == 0 && *json_r == NULL)
		return store_invalid(op, "out of memory");
	return rc;
}

/* The activities of `sql` into list_r, at most `max`, each with its users_json. */
static int read_list(struct store_tx *tx, const char *op, const char *org_id, const char *sql,
                     const struct db_arg *args, size_t max, struct store_activity_list *list_r)
{
	void *items = NULL;
	int rc =
	    sql_list_alloc(tx, op, sql, args, &activity_table, 16, max, &items, &list_r->count);
	list_r->items = items;
	for (size_t i = 0; i < list_r->count && rc == 0; i++) {
		struct store_activity *a = &list_r->items[i];
		/* Consecutive activities of one message (the add-in's answer, a touched message in
		 * the feed) share the users. */
		if (i > 0 && strcmp(list_r->items[i - 1].key, a->key) == 0) {
			a->users_json = strdup(list_r->items[i - 1].users_json);
			if (a->users_json == NULL)
				rc = store_invalid(op, "out of memory");
			continue;
		}
		rc = users_json(tx, op, org_id, a->key, &a->users_json);
	}
	if (rc != 0)
		store_activity_list_free(list_r);
	return rc;
}

static size_t clamp_limit(size_t limit)
{
	if (limit == 0)
		return MT_LIST_LIMIT_DEFAULT;
	return limit > MT_LIST_LIMIT_MAX ? MT_LIST_LIMIT_MAX : limit;
}

/* The timeline cursor is "<date>:<id>" of the last item of the page: (date, id) is the sort key
 * and unique, so a page boundary never drops or repeats an item, even between activities
 * sharing a date. */
static bool parse_timeline_cursor(const char *cursor, int64_t *date_r, char id_r[MT_ID_MAX])
{
	char *end;
	long long date = strtoll(cursor, &end, 10);
	if (end == cursor || *end != ':' || strlen(end + 1) >= MT_ID_MAX || end[1] == '\0')
		return false;
	*date_r = date;
	mt_strlcpy(id_r, end + 1, MT_ID_MAX);
	return true;
}

int store_profile_activities(struct store_tx *tx, const char *org_id, const char *profile_id,
                             const char *thread_id, const char *cursor, size_t limit,
                             struct store_activity_list *list_r)
{
	static const char op[] = "store_profile_activities";
	memset(list_r, 0, sizeof(*list_r));
	limit = clamp_limit(limit);
	/* Past every real key: '~' sorts after the base32 characters of any id. */
	int64_t after_date = INT64_MAX;
	char after_id[MT_ID_MAX] = "~";
	if (cursor != NULL && cursor[0] != '\0' &&
	    !parse_timeline_cursor(cursor, &after_date, after_id))
		return STORE_INVALID;
	int rc = profile_in_org(tx, op, org_id, profile_id);
	if (rc != 0)
		return rc;
	/* One more than asked tells whether another page follows. A thread is a filter on the
	 * profile's timeline: the timeline index bounds the rows read. */
	bool all = thread_id == NULL || thread_id[0] == '\0';
	rc = read_list(tx, op, org_id,
	               ACTIVITY_SELECT
	               " WHERE a.org_id = ?1 AND a.profile_id = ?2 AND (a.date < ?3 OR"
	               " (a.date = ?3 AND a.id < ?4)) AND (?6 = 1 OR r.thread_id = ?7)"
	               " ORDER BY a.date DESC, a.id DESC LIMIT ?5",
	               SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(profile_id), SQL_INT(after_date),
	                        SQL_TEXT(after_id), SQL_INT(limit + 1), SQL_INT(all),
	                        SQL_TEXT(all ? "" : thread_id)),
	               limit + 1, list_r);
	if (rc != 0)
		return rc;
	if (list_r->count > limit) {
		struct store_activity *extra = &list_r->items[limit];
		free(extra->to_json);
		free(extra->cc_json);
		free(extra->attachments_json);
		free(extra->users_json);
		list_r->count = limit;
		const struct store_activity *last = &list_r->items[limit - 1];
		snprintf(list_r->next_cursor, sizeof(list_r->next_cursor), "%" PRId64 ":%s",
		         last->date, last->id);
	}
	return 0;
}

/* The highest feed position the org's counter has handed out (0 before the first). */
int store_feed_last(struct store_tx *tx, const char *op, const char *org_id, int64_t *last_r)
{
	*last_r = 0;
	int rc = sql_get(tx, op, "SELECT value FROM feed_counter WHERE org_id = ?",
	                 SQL_ARGS(SQL_TEXT(org_id)), &sql_int64_table, last_r);
	return rc < 0 ? -1 : 0;
}

/* A tombstone read into an activity (deleted set by the reader). */
#define TOMBSTONE_ROW(F, G, T)                                                                     \
	F(T, TEXT, "id", id)                                                                       \
	G(T, TEXT, "profile_id", profile_id)                                                       \
	G(T, TEXT, "reason", reason)                                                               \
	G(T, INT64, "seq", seq)                                                                    \
	G(T, INT64, "created_at", updated_at)
SQL_TABLE(tombstone_table, TOMBSTONE_ROW, struct store_activity);

/* The page's activities and tombstones in seq order, at most `limit`: both lists are read up
 * to `limit` and merged; the activities past the page are dropped (tombstones are few, so
 * that waste is rare). `list` takes the merged items. */
static int merge_tombstones(const char *op, struct store_activity_list *list,
                            struct store_activity *tombs, size_t tomb_count, size_t limit)
{
	size_t total = list->count + tomb_count;
	struct store_activity *merged = calloc(total, sizeof(*merged));
	if (merged == NULL)
		return store_invalid(op, "out of memory");
	size_t a = 0, t = 0, n = 0;
	while (a < list->count || t < tomb_count) {
		bool take_tomb =
		    a == list->count || (t < tomb_count && tombs[t].seq < list->items[a].seq);
		if (take_tomb) {
			merged[n] = tombs[t++];
			merged[n++].deleted = true;
		} else {
			merged[n++] = list->items[a++];
		}
	}
	/* Past the page: their JSON texts go with them (a tombstone has none). */
	for (size_t i = limit; i < total; i++) {
		free(merged[i].to_json);
		free(merged[i].cc_json);
		free(merged[i].attachments_json);
		free(merged[i].users_json);
	}
	free(list->items);
	list->items = merged;
	list->count = total < limit ? total : limit;
	return 0;
}

int store_activity_feed(struct store_tx *tx, const char *org_id, int64_t since, size_t limit,
                        struct store_activity_list *list_r)
{
	static const char op[] = "store_activity_feed";
	memset(list_r, 0, sizeof(*list_r));
	limit = clamp_limit(limit);
	int rc =
	    read_list(tx, op, org_id,
	              ACTIVITY_SELECT " WHERE a.org_id = ? AND a.seq > ? ORDER BY a.seq LIMIT ?",
	              SQL_ARGS(SQL_TEXT(org_id), SQL_INT(since), SQL_INT(limit)), limit, list_r);
	if (rc != 0)
		return rc;
	void *tombs = NULL;
	size_t tomb_count = 0;
	rc = store_feed_rows(
	    tx, op,
	    STORE_FEED_SQL("SELECT " SQL_COLUMNS(TOMBSTONE_ROW) " FROM activity_tombstones"),
	    org_id, since, limit, &tombstone_table, &tombs, &tomb_count);
	if (rc == 0 && tomb_count > 0)
		rc = merge_tombstones(op, list_r, tombs, tomb_count, limit);
	free(tombs);
	if (rc != 0) {
		store_activity_list_free(list_r);
		return rc;
	}
	if (list_r->count == 0 && since > 0) {
		/* A cursor past every position handed out was never ours: a client holding it would
		 * wait forever, missing what comes before it. */
		int64_t last = 0;
		rc = store_feed_last(tx, op, org_id, &last);
		if (rc != 0)
			return rc;
		if (since > last)
			return STORE_INVALID;
	}
	int64_t next = list_r->count > 0 ? list_r->items[list_r->count - 1].seq : since;
	snprintf(list_r->next_cursor, sizeof(list_r->next_cursor), "%" PRId64, next);
	return 0;
}

int store_message_activities(struct store_tx *tx, const char *org_id, const char *key,
                             struct store_activity_list *list_r)
{
	memset(list_r, 0, sizeof(*list_r));
	/* A message has at most one activity per participant profile; the participants are
	 * capped, and each address's profiles are few. */
	return read_list(tx, "store_message_activities", org_id,
	                 ACTIVITY_SELECT " WHERE r.org_id = ? AND r.key = ? ORDER BY a.profile_id",
	                 SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(key)), SIZE_MAX, list_r);
}
