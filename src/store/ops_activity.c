/* Activities: one per (profile, message record), their feed sequence, timelines and the feed. */
#include "store/store_activity.h"
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
	struct db_stmt *s =
	    db_prepare(tx->db, "UPDATE feed_counter SET value = value + ? WHERE org_id = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_int64(s, 1, n);
	db_bind_text(s, 2, org_id);
	if (db_step(s) != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	if (db_changes(tx->db) == 0) {
		/* The org's first activity. Two PostgreSQL transactions racing here meet on
		 * the primary key: the loser's job fails, as on any conflict. */
		s = db_prepare(tx->db, "INSERT INTO feed_counter (org_id, value) VALUES (?, ?)");
		if (s == NULL)
			return store_fail(tx, op);
		db_bind_text(s, 1, org_id);
		db_bind_int64(s, 2, n);
		if (db_step(s) != DB_DONE)
			return store_fail_stmt(tx, op, s);
		db_finish(s);
		*last_r = n;
		return 0;
	}
	s = db_prepare(tx->db, "SELECT value FROM feed_counter WHERE org_id = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, org_id);
	if (db_step(s) != DB_ROW)
		return store_fail_stmt(tx, op, s);
	*last_r = db_column_int64(s, 0);
	db_finish(s);
	return 0;
}

static int reserve_seqs(struct store_tx *tx, const char *op, const char *org_id, int64_t n,
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

/* The record's number and date (copied into its activities for the timeline). */
static int record_of(struct store_tx *tx, const char *op, const char *org_id, const char *key,
                     int64_t *rid_r, int64_t *date_r)
{
	struct db_stmt *s = db_prepare(
	    tx->db, "SELECT rid, date FROM message_records WHERE key = ? AND org_id = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text_ref(s, 1, key);
	db_bind_text_ref(s, 2, org_id);
	int rc = db_step(s);
	if (rc == DB_ROW) {
		*rid_r = db_column_int64(s, 0);
		*date_r = db_column_int64(s, 1);
	}
	db_finish(s);
	if (rc == DB_ROW)
		return 0;
	return rc == DB_DONE ? STORE_NOT_FOUND : store_fail(tx, op);
}

/* 0 when the profile is the org's, STORE_NOT_FOUND otherwise. */
static int profile_in_org(struct store_tx *tx, const char *op, const char *org_id,
                          const char *profile_id)
{
	return store_row_exists(tx, op, "SELECT 1 FROM profiles WHERE org_id = ? AND id = ?", 2,
	                        org_id, profile_id);
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
	if (reserve_seqs(tx, op, org_id, (int64_t)count, &last) < 0)
		return -1;
	int64_t seq = last - (int64_t)count + 1, now = mt_wall_s();
	for (size_t i = 0; i < count; i++, seq++) {
		char id[MT_ID_MAX];
		new_activity_id(id);
		struct db_stmt *s = db_prepare(
		    tx->db, "INSERT INTO activities (rid, profile_id, org_id, id, date, seq,"
		            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
		            " ON CONFLICT (rid, profile_id) DO NOTHING");
		if (s == NULL)
			return store_fail(tx, op);
		db_bind_int64(s, 1, rid);
		db_bind_text_ref(s, 2, ids[i]);
		db_bind_text_ref(s, 3, org_id);
		db_bind_text_ref(s, 4, id);
		db_bind_int64(s, 5, date);
		db_bind_int64(s, 6, seq);
		db_bind_int64(s, 7, now);
		db_bind_int64(s, 8, now);
		if (db_step(s) != DB_DONE)
			return store_fail_stmt(tx, op, s);
		db_finish(s);
		*created_r += (size_t)db_changes(tx->db);
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
	int64_t rid = 0, date = 0;
	if (rc == 0 && n > 0)
		rc = record_of(tx, op, org_id, key, &rid, &date);
	if (rc == 0)
		rc = insert_activities(tx, op, org_id, (const char(*)[MT_ID_MAX])ids, n, rid, date,
		                       created_r);
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
		struct db_stmt *s = db_prepare(tx->db, "SELECT profile_id FROM profile_addresses"
		                                       " WHERE org_id = ? AND address = ?");
		if (s == NULL) {
			rc = store_fail(tx, op);
			break;
		}
		db_bind_text_ref(s, 1, org_id);
		db_bind_text_ref(s, 2, addresses[i]);
		int step;
		if (found_r != NULL)
			found_r[i] = false;
		while (rc == 0 && (step = db_step(s)) == DB_ROW) {
			const char *id = db_column_text(s, 0);
			if (found_r != NULL)
				found_r[i] = true;
			bool seen = false;
			for (size_t k = 0; k < n && !seen; k++)
				seen = strcmp(ids[k], id) == 0;
			if (seen)
				continue;
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
			mt_strlcpy(ids[n++], id, MT_ID_MAX);
		}
		if (rc == 0 && step < 0)
			rc = store_fail(tx, op);
		db_finish(s);
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
	struct db_stmt *s = db_prepare(
	    tx->db,
	    "SELECT (SELECT 1 FROM activities a WHERE a.rid = r.rid AND a.profile_id = p.id)"
	    " FROM profiles p, message_records r"
	    " WHERE p.id = ? AND p.org_id = ? AND r.org_id = p.org_id AND r.key = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, profile_id);
	db_bind_text(s, 2, org_id);
	db_bind_text(s, 3, key);
	int rc = db_step(s);
	if (rc != DB_ROW) {
		db_finish(s);
		return rc == DB_DONE ? STORE_NOT_FOUND : store_fail(tx, op);
	}
	bool exists = !db_column_is_null(s, 0);
	db_finish(s);
	if (exists)
		return 0;
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
	struct db_stmt *s =
	    db_prepare(tx->db, "SELECT profile_id FROM activities WHERE rid = ? ORDER BY id");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_int64(s, 1, record);
	char(*ids)[MT_ID_MAX] = NULL;
	size_t n = 0, cap = 0;
	int rc;
	while ((rc = db_step(s)) == DB_ROW) {
		if (n == cap) {
			size_t ncap = cap == 0 ? 8 : cap * 2;
			void *p = realloc(ids, ncap * sizeof(*ids));
			if (p == NULL) {
				free(ids);
				db_finish(s);
				return store_invalid(op, "out of memory");
			}
			ids = p;
			cap = ncap;
		}
		store_col_copy(s, 0, ids[n++], MT_ID_MAX);
	}
	if (rc < 0) {
		free(ids);
		return store_fail_stmt(tx, op, s);
	}
	db_finish(s);
	if (n == 0)
		return 0;

	int64_t last;
	if (reserve_seqs(tx, op, org_id, (int64_t)n, &last) < 0) {
		free(ids);
		return -1;
	}
	int64_t seq = last - (int64_t)n + 1, now = mt_wall_s();
	for (size_t i = 0; i < n; i++, seq++) {
		s = db_prepare(tx->db, "UPDATE activities SET seq = ?, updated_at = ?"
		                       " WHERE rid = ? AND profile_id = ?");
		if (s == NULL) {
			free(ids);
			return store_fail(tx, op);
		}
		db_bind_int64(s, 1, seq);
		db_bind_int64(s, 2, now);
		db_bind_int64(s, 3, record);
		db_bind_text(s, 4, ids[i]);
		if (db_step(s) != DB_DONE) {
			free(ids);
			return store_fail_stmt(tx, op, s);
		}
		db_finish(s);
	}
	free(ids);
	return 0;
}

/* ---- reading ---- */

#define ACTIVITY_COLUMNS                                                                           \
	"a.id, a.profile_id, r.type, r.source, r.key, r.message_id, r.subject, r.date,"            \
	" r.from_address, r.from_name, r.to_json, r.cc_json, r.attachments_json, r.snippet,"       \
	" a.seq, a.created_at, a.updated_at"
#define ACTIVITY_FROM " FROM activities a JOIN message_records r ON r.rid = a.rid"

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

static int read_activity(struct db_stmt *s, struct store_activity *a)
{
	memset(a, 0, sizeof(*a));
	store_col_copy(s, 0, a->id, sizeof(a->id));
	store_col_copy(s, 1, a->profile_id, sizeof(a->profile_id));
	a->type = strcmp(db_column_text(s, 2), "email_sent") == 0 ? STORE_EMAIL_SENT
	                                                          : STORE_EMAIL_RECEIVED;
	a->source = store_source_parse(db_column_text(s, 3));
	store_col_copy(s, 4, a->key, sizeof(a->key));
	store_col_copy(s, 5, a->message_id, sizeof(a->message_id));
	store_col_copy(s, 6, a->subject, sizeof(a->subject));
	a->date = db_column_int64(s, 7);
	store_col_copy(s, 8, a->from_address, sizeof(a->from_address));
	store_col_copy(s, 9, a->from_name, sizeof(a->from_name));
	a->to_json = strdup(db_column_text(s, 10));
	a->cc_json = strdup(db_column_text(s, 11));
	a->attachments_json = strdup(db_column_text(s, 12));
	store_col_copy(s, 13, a->snippet, sizeof(a->snippet));
	a->seq = db_column_int64(s, 14);
	a->created_at = db_column_int64(s, 15);
	a->updated_at = db_column_int64(s, 16);
	return a->to_json != NULL && a->cc_json != NULL && a->attachments_json != NULL ? 0 : -1;
}

/* [{"id","email"}] of the users whose mail the message was, in the order they saw it. */
static int users_json(struct store_tx *tx, const char *op, const char *org_id, const char *key,
                      char **json_r)
{
	/* Users joined by their id alone (unique, and the row is the org's): with the org in the
	 * join SQLite walked every user of the org first. */
	struct db_stmt *s = db_prepare(
	    tx->db, "SELECT mu.user_id, u.email FROM message_records r"
	            " JOIN message_users mu ON mu.rid = r.rid JOIN users u ON u.id = mu.user_id"
	            " WHERE r.org_id = ? AND r.key = ? ORDER BY mu.added_at, mu.user_id");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, org_id);
	db_bind_text(s, 2, key);
	json_t *arr = json_array();
	int rc = arr == NULL ? DB_ERROR : DB_DONE;
	while (arr != NULL && (rc = db_step(s)) == DB_ROW) {
		json_t *o = json_pack("{s:s, s:s}", "id", db_column_text(s, 0), "email",
		                      db_column_text(s, 1));
		if (o == NULL || json_array_append_new(arr, o) < 0) {
			json_decref(arr);
			db_finish(s);
			return store_invalid(op, "out of memory");
		}
	}
	if (rc < 0) {
		json_decref(arr);
		return store_fail_stmt(tx, op, s);
	}
	db_finish(s);
	*json_r = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	return *json_r != NULL ? 0 : store_invalid(op, "out of memory");
}

/* Steps `s` (bound by the caller) into list_r, at most `max` rows, then fills users_json.
 * Consumes `s`. */
static int read_list(struct store_tx *tx, const char *op, const char *org_id, struct db_stmt *s,
                     size_t max, struct store_activity_list *list_r)
{
	size_t cap = 0;
	int rc = DB_DONE;
	while (list_r->count < max && (rc = db_step(s)) == DB_ROW) {
		if (list_r->count == cap) {
			size_t ncap = cap == 0 ? 16 : cap * 2;
			if (ncap > max)
				ncap = max;
			void *p = realloc(list_r->items, ncap * sizeof(*list_r->items));
			if (p == NULL) {
				db_finish(s);
				store_activity_list_free(list_r);
				return store_invalid(op, "out of memory");
			}
			list_r->items = p;
			cap = ncap;
		}
		struct store_activity *a = &list_r->items[list_r->count++];
		if (read_activity(s, a) < 0) {
			db_finish(s);
			store_activity_list_free(list_r);
			return store_invalid(op, "out of memory");
		}
	}
	if (rc < 0) {
		store_fail_stmt(tx, op, s);
		store_activity_list_free(list_r);
		return -1;
	}
	db_finish(s);
	for (size_t i = 0; i < list_r->count; i++) {
		struct store_activity *a = &list_r->items[i];
		/* Consecutive activities of one message (the add-in's answer, a touched message in
		 * the feed) share the users. */
		if (i > 0 && strcmp(list_r->items[i - 1].key, a->key) == 0) {
			a->users_json = strdup(list_r->items[i - 1].users_json);
			if (a->users_json == NULL) {
				store_activity_list_free(list_r);
				return store_invalid(op, "out of memory");
			}
			continue;
		}
		if (users_json(tx, op, org_id, a->key, &a->users_json) < 0) {
			store_activity_list_free(list_r);
			return -1;
		}
	}
	return 0;
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
                             const char *cursor, size_t limit, struct store_activity_list *list_r)
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
	struct db_stmt *s = db_prepare(
	    tx->db, "SELECT " ACTIVITY_COLUMNS ACTIVITY_FROM
	            " WHERE a.org_id = ? AND a.profile_id = ? AND (a.date < ? OR (a.date = ? AND"
	            " a.id < ?)) ORDER BY a.date DESC, a.id DESC LIMIT ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, org_id);
	db_bind_text(s, 2, profile_id);
	db_bind_int64(s, 3, after_date);
	db_bind_int64(s, 4, after_date);
	db_bind_text(s, 5, after_id);
	/* One more than asked tells whether another page follows. */
	db_bind_int64(s, 6, (int64_t)limit + 1);
	rc = read_list(tx, op, org_id, s, limit + 1, list_r);
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
static int feed_last(struct store_tx *tx, const char *op, const char *org_id, int64_t *last_r)
{
	*last_r = 0;
	struct db_stmt *s = db_prepare(tx->db, "SELECT value FROM feed_counter WHERE org_id = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, org_id);
	int rc = db_step(s);
	if (rc == DB_ROW)
		*last_r = db_column_int64(s, 0);
	else if (rc != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return 0;
}

int store_activity_feed(struct store_tx *tx, const char *org_id, int64_t since, size_t limit,
                        struct store_activity_list *list_r)
{
	static const char op[] = "store_activity_feed";
	memset(list_r, 0, sizeof(*list_r));
	limit = clamp_limit(limit);
	struct db_stmt *s = db_prepare(tx->db, "SELECT " ACTIVITY_COLUMNS ACTIVITY_FROM
	                                       " WHERE a.org_id = ? AND a.seq > ?"
	                                       " ORDER BY a.seq LIMIT ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, org_id);
	db_bind_int64(s, 2, since);
	db_bind_int64(s, 3, (int64_t)limit);
	int rc = read_list(tx, op, org_id, s, limit, list_r);
	if (rc != 0)
		return rc;
	if (list_r->count == 0 && since > 0) {
		/* A cursor past every position handed out was never ours: a client holding it would
		 * wait forever, missing what comes before it. */
		int64_t last = 0;
		rc = feed_last(tx, op, org_id, &last);
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
	static const char op[] = "store_message_activities";
	memset(list_r, 0, sizeof(*list_r));
	struct db_stmt *s = db_prepare(tx->db, "SELECT " ACTIVITY_COLUMNS ACTIVITY_FROM
	                                       " WHERE r.org_id = ? AND r.key = ?"
	                                       " ORDER BY a.profile_id");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, org_id);
	db_bind_text(s, 2, key);
	/* A message has at most one activity per participant profile; the participants are
	 * capped, and each address's profiles are few. */
	return read_list(tx, op, org_id, s, SIZE_MAX, list_r);
}
