/* Message records: their content, their aliases and users, found by any alias, merged when two
 * turn out to be one message. Their participant index is ops_message_participants.c. */
#include "store/store_message.h"
#include "store/message_internal.h"
#include "store/sql.h"
#include "store/store.h"
#include "store/store_activity.h"
#include "store/store_internal.h"
#include "lib/str.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

const char *const store_source_names[STORE_SOURCE_OUTBOX + 1] = {
    [STORE_SOURCE_ADDIN] = "addin",
    [STORE_SOURCE_BCC] = "bcc",
    [STORE_SOURCE_IMAP] = "imap",
    [STORE_SOURCE_OUTBOX] = "outbox",
};
const char *const store_type_names[STORE_EMAIL_RECEIVED + 1] = {
    [STORE_EMAIL_SENT] = "email_sent",
    [STORE_EMAIL_RECEIVED] = "email_received",
};

const char *store_source_name(enum store_source source)
{
	if ((unsigned)source < 1 || (unsigned)source > STORE_SOURCE_OUTBOX)
		return "unknown";
	return store_source_names[source];
}

/* 0 when the column holds no known name: the CHECK constraint makes that unreachable, and the
 * weakest trust keeps a broken row replaceable. */
enum store_source store_source_parse(const char *name)
{
	for (unsigned i = 1; i <= STORE_SOURCE_OUTBOX; i++) {
		if (strcmp(name, store_source_names[i]) == 0)
			return (enum store_source)i;
	}
	return (enum store_source)0;
}

/* Anything but sent is received, as a row whose name is not in the table reads. */
static const char *type_name(enum store_activity_type type)
{
	return sql_name(store_type_names, STORE_EMAIL_RECEIVED + 1, type, STORE_EMAIL_RECEIVED);
}

/* jansson refuses invalid UTF-8; a name the parser could not decode is dropped, not the
 * message. */
static json_t *json_text(const char *s)
{
	json_t *v = json_string(s);
	return v != NULL ? v : json_string("");
}

/* The JSON object of items[i]; NULL when out of memory. */
typedef json_t *item_json_fn(const void *items, size_t i, bool *lossy_r);

/* The compact JSON array of `count` items (malloc'd), NULL when out of memory. */
static char *array_json(const void *items, size_t count, item_json_fn *item_json, bool *lossy_r)
{
	/* Most lists are empty (Cc, Bcc): jansson's allocations cost more than the rest of it. */
	if (count == 0)
		return strdup("[]");
	json_t *a = json_array();
	for (size_t i = 0; a != NULL && i < count; i++) {
		json_t *o = item_json(items, i, lossy_r);
		if (o == NULL || json_array_append_new(a, o) < 0) {
			json_decref(a);
			a = NULL;
		}
	}
	char *text = a != NULL ? json_dumps(a, JSON_COMPACT) : NULL;
	json_decref(a);
	return text;
}

/* {"address","name"}. *lossy_r is set when the address could not be kept as it is (not
 * UTF-8): the content then does not tell the record's participants. */
static json_t *mailbox_json(const void *items, size_t i, bool *lossy_r)
{
	const struct store_mailbox *box = (const struct store_mailbox *)items + i;
	json_t *o = json_object();
	json_t *address = json_string(box->address);
	if (address == NULL) {
		*lossy_r = true;
		address = json_string("");
	}
	if (o == NULL || json_object_set_new(o, "address", address) < 0 ||
	    json_object_set_new(o, "name", json_text(box->name)) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* {"name","type","size"}. */
static json_t *attachment_json(const void *items, size_t i, bool *lossy_r)
{
	(void)lossy_r;
	const struct store_attachment *att = (const struct store_attachment *)items + i;
	json_t *o = json_object();
	if (o == NULL || json_object_set_new(o, "name", json_text(att->name)) < 0 ||
	    json_object_set_new(o, "type", json_text(att->type)) < 0 ||
	    json_object_set_new(o, "size", json_integer(att->size)) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static int check_message(const char *op, const struct store_message *msg)
{
	if (msg->alias_count < 1 || msg->alias_count > MT_MESSAGE_ALIASES_MAX)
		return store_invalid(op, "alias count out of range");
	if (msg->attachment_count > MT_ATTACHMENTS_MAX)
		return store_invalid(op, "too many attachments");
	if ((msg->to_count > 0 && msg->to == NULL) || (msg->cc_count > 0 && msg->cc == NULL) ||
	    (msg->bcc_count > 0 && msg->bcc == NULL) ||
	    (msg->attachment_count > 0 && msg->attachments == NULL))
		return store_invalid(op, "count without an array");
	return 0;
}

#define RECORD_REF_ROW(F, G, T)                                                                    \
	F(T, INT64, "rid", rid)                                                                    \
	G(T, NAME, "source", source, store_source_names, 0)                                        \
	G(T, INT64, "date", date)
SQL_TABLE(record_ref_table, RECORD_REF_ROW, struct store_record_ref);

int store_record_find(struct store_tx *tx, const char *op, const char *org_id, const char *key,
                      struct store_record_ref *ref_r)
{
	return sql_get(tx, op,
	               "SELECT " SQL_COLUMNS(RECORD_REF_ROW) " FROM message_records"
	                                                     " WHERE key = ? AND org_id = ?",
	               SQL_ARGS(SQL_TEXT(key), SQL_TEXT(org_id)), &record_ref_table, ref_r);
}

static int put_alias(struct store_tx *tx, const char *op, const char *org_id, const char *alias,
                     int64_t rid)
{
	/* An alias already pointing elsewhere keeps its record (see store_message_lookup). */
	return sql_exec(tx, op,
	                "INSERT INTO message_aliases (org_id, alias, rid) VALUES (?, ?, ?)"
	                " ON CONFLICT DO NOTHING",
	                SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(alias), SQL_INT(rid))) < 0
	           ? -1
	           : 0;
}

/* A record found by an alias: its key and its content's source. */
struct alias_hit {
	char key[MT_MESSAGE_KEY_MAX];
	enum store_source source;
};
#define ALIAS_HIT_ROW(F, G, T)                                                                     \
	F(T, TEXT, "key", key)                                                                     \
	G(T, NAME, "source", source, store_source_names, 0)
SQL_TABLE(alias_hit_table, ALIAS_HIT_ROW, struct alias_hit);

/* The record one alias points to (its key, or an alias row); STORE_NOT_FOUND when none. */
static int lookup_alias(struct store_tx *tx, const char *op, const char *org_id, const char *alias,
                        char key_r[MT_MESSAGE_KEY_MAX], enum store_source *source_r)
{
	/* A record's key is its first alias and is not repeated in message_aliases. */
	struct alias_hit hit;
	int rc = sql_get(
	    tx, op,
	    "SELECT " SQL_COLUMNS(ALIAS_HIT_ROW) " FROM message_records"
	                                         " WHERE key = ?1 AND org_id = ?2"
	                                         " UNION ALL"
	                                         " SELECT r.key, r.source FROM message_aliases a"
	                                         " JOIN message_records r ON r.rid = a.rid"
	                                         " WHERE a.alias = ?1 AND a.org_id = ?2",
	    SQL_ARGS(SQL_TEXT(alias), SQL_TEXT(org_id)), &alias_hit_table, &hit);
	if (rc == 0) {
		memcpy(key_r, hit.key, strlen(hit.key) + 1);
		*source_r = hit.source;
	}
	return rc;
}

/* Two records that a copy shows to be one message (its Message-ID was seen on one, its
 * X-Mailtrail-Id on another) become one: `drop`'s activities move to `keep` unless the profile
 * already has one there (then the duplicate goes), and its users, participants and aliases
 * follow. Rare (copies seen out of order), so plain statements do. */
static int merge_records(struct store_tx *tx, const char *op, const char *org_id, const char *keep,
                         const char *drop)
{
	struct store_record_ref k, d;
	int rc = store_record_find(tx, op, org_id, keep, &k);
	if (rc == 0)
		rc = store_record_find(tx, op, org_id, drop, &d);
	if (rc != 0)
		return rc == STORE_NOT_FOUND ? store_invalid(op, "record vanished") : rc;
	int64_t keep_rid = k.rid, drop_rid = d.rid;
	/* The duplicates that go leave tombstones: the CRM saw both activities. */
	if (store_activities_bury(
	        tx, op, org_id,
	        "SELECT id, profile_id FROM activities WHERE rid = ?2 AND"
	        " profile_id IN (SELECT profile_id FROM activities WHERE rid = ?1)"
	        " ORDER BY seq",
	        SQL_ARGS(SQL_INT(keep_rid), SQL_INT(drop_rid)), "merged", NULL) < 0)
		return -1;
	static const char *const sql[] = {
	    /* keep's content stays; what it lacks of the thread columns comes from drop (the
	     * outbox id survives whichever copy was seen first) */
	    "UPDATE message_records SET"
	    " outbox_id = COALESCE(outbox_id, (SELECT outbox_id FROM message_records WHERE rid = "
	    "?2)),"
	    " in_reply_to = COALESCE(in_reply_to,"
	    " (SELECT in_reply_to FROM message_records WHERE rid = ?2)),"
	    " thread_id = COALESCE(thread_id, (SELECT thread_id FROM message_records WHERE rid = "
	    "?2))"
	    " WHERE rid = ?1",
	    "DELETE FROM activities WHERE rid = ?2 AND profile_id IN"
	    " (SELECT profile_id FROM activities WHERE rid = ?1)",
	    "UPDATE activities SET rid = ?1 WHERE rid = ?2",
	    "INSERT INTO message_users (rid, user_id, added_at)"
	    " SELECT ?1, user_id, added_at FROM message_users WHERE rid = ?2 ON CONFLICT DO "
	    "NOTHING",
	    "DELETE FROM message_users WHERE rid = ?2",
	    "UPDATE message_aliases SET rid = ?1 WHERE rid = ?2",
	};
	for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
		if (sql_exec(tx, op, sql[i], SQL_ARGS(SQL_INT(keep_rid), SQL_INT(drop_rid))) < 0)
			return -1;
	}
	/* drop's key becomes an alias of keep. */
	if (put_alias(tx, op, org_id, drop, keep_rid) < 0)
		return -1;
	/* The participants, then the record (its aliases and users are keep's now). */
	rc = store_parts_move(tx, op, org_id, drop_rid, keep_rid);
	if (rc == STORE_NOT_FOUND)
		return store_invalid(op, "record vanished");
	if (rc == 0)
		rc = store_record_erase(tx, op, org_id, drop_rid);
	return rc == 0 ? store_activities_touch(tx, org_id, keep_rid) : rc;
}

int store_message_lookup(struct store_tx *tx, const char *org_id, const struct store_message *msg,
                         char key_r[MT_MESSAGE_KEY_MAX], enum store_source *source_r)
{
	static const char op[] = "store_message_lookup";
	if (msg->alias_count > MT_MESSAGE_ALIASES_MAX)
		return store_invalid(op, "too many aliases");
	bool found = false;
	for (size_t i = 0; i < msg->alias_count; i++) {
		char key[MT_MESSAGE_KEY_MAX];
		enum store_source source = STORE_SOURCE_ADDIN;
		int rc = lookup_alias(tx, op, org_id, msg->aliases[i], key, &source);
		if (rc == STORE_NOT_FOUND)
			continue;
		if (rc != 0)
			return rc;
		if (!found) {
			mt_strlcpy(key_r, key, MT_MESSAGE_KEY_MAX);
			*source_r = source;
			found = true;
			continue;
		}
		if (strcmp(key, key_r) == 0)
			continue;
		/* One message seen as two: only a write job may join them. */
		if (!tx->writable)
			continue;
		bool keep_other = source > *source_r; /* the more trusted content stays */
		rc = keep_other ? merge_records(tx, op, org_id, key, key_r)
		                : merge_records(tx, op, org_id, key_r, key);
		if (rc != 0)
			return rc;
		if (keep_other) {
			mt_strlcpy(key_r, key, MT_MESSAGE_KEY_MAX);
			*source_r = source;
		}
	}
	return found ? 0 : STORE_NOT_FOUND;
}

void store_message_columns_free(struct store_message_columns *c)
{
	free(c->to);
	free(c->cc);
	free(c->bcc);
	free(c->attachments);
	c->to = c->cc = c->bcc = c->attachments = NULL;
}

int store_message_columns_build(const struct store_message *msg, struct store_message_columns *c_r)
{
	c_r->lossy = false;
	c_r->to = array_json(msg->to, msg->to_count, mailbox_json, &c_r->lossy);
	c_r->cc = array_json(msg->cc, msg->cc_count, mailbox_json, &c_r->lossy);
	c_r->bcc = array_json(msg->bcc, msg->bcc_count, mailbox_json, &c_r->lossy);
	c_r->attachments =
	    array_json(msg->attachments, msg->attachment_count, attachment_json, &c_r->lossy);
	if (c_r->to == NULL || c_r->cc == NULL || c_r->bcc == NULL || c_r->attachments == NULL) {
		store_message_columns_free(c_r);
		return -1;
	}
	return 0;
}

/* The content columns the INSERT and the UPDATE share, as their parameters ?3 to ?14: source,
 * type, message_id, date, from_address, from_name, to, cc, bcc, subject, snippet,
 * attachments. */
#define CONTENT_ARGS(source, type, msg, c)                                                         \
	SQL_TEXT(store_source_name(source)), SQL_TEXT(type_name(type)),                            \
	    SQL_TEXT((msg)->message_id), SQL_INT((msg)->date), SQL_TEXT((msg)->from.address),      \
	    SQL_TEXT((msg)->from.name), SQL_TEXT((c)->to), SQL_TEXT((c)->cc), SQL_TEXT((c)->bcc),  \
	    SQL_TEXT((msg)->subject), SQL_TEXT((msg)->snippet), SQL_TEXT((c)->attachments)

/* The thread columns (outbox_id, in_reply_to, thread_id), NULL when there is none. */
#define OPT_TEXT(v) ((v)[0] != '\0' ? SQL_TEXT(v) : SQL_NULL)
#define THREAD_ARGS(msg, thread_id)                                                                \
	OPT_TEXT((msg)->outbox_id), OPT_TEXT((msg)->in_reply_to), OPT_TEXT(thread_id)

/* Inserts the record unless the key exists; *created_r tells which. */
static int insert_record(struct store_tx *tx, const char *op, const char *org_id, const char *key,
                         enum store_source source, enum store_activity_type type,
                         const char *thread_id, const struct store_message *msg,
                         const struct store_message_columns *cols, const char *participants,
                         int64_t now, bool *created_r)
{
	int64_t n =
	    sql_exec(tx, op,
	             "INSERT INTO message_records (org_id, key, source, type, message_id,"
	             " date, from_address, from_name, to_json, cc_json, bcc_json, subject,"
	             " snippet, attachments_json, last_seen, participants, first_seen,"
	             " outbox_id, in_reply_to, thread_id)"
	             " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
	             " ?15, ?16, ?17, ?18, ?19, ?20) ON CONFLICT DO NOTHING",
	             SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(key),
	                      CONTENT_ARGS(source, type, msg, cols), SQL_INT(now),
	                      SQL_TEXT(participants), SQL_INT(now), THREAD_ARGS(msg, thread_id)));
	*created_r = n == 1;
	return n < 0 ? -1 : 0;
}

static int replace_content(struct store_tx *tx, const char *op, const char *org_id, const char *key,
                           int64_t rid, enum store_source source, enum store_activity_type type,
                           const char *thread_id, const struct store_message *msg,
                           const struct store_part_list *parts,
                           const struct store_message_columns *cols, int64_t now)
{
	int rc = store_parts_keep_old(tx, op, rid, parts, cols->lossy);
	if (rc != 0)
		return rc < 0 ? -1 : store_invalid(op, "record vanished");
	if (sql_exec(tx, op,
	             "UPDATE message_records SET source = ?3, type = ?4, message_id = ?5,"
	             " date = ?6, from_address = ?7, from_name = ?8, to_json = ?9, cc_json = ?10,"
	             " bcc_json = ?11, subject = ?12, snippet = ?13, attachments_json = ?14,"
	             " last_seen = ?15, outbox_id = COALESCE(?16, outbox_id),"
	             " in_reply_to = COALESCE(?17, in_reply_to),"
	             " thread_id = COALESCE(?18, thread_id) WHERE key = ?2 AND org_id = ?1",
	             SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(key),
	                      CONTENT_ARGS(source, type, msg, cols), SQL_INT(now),
	                      THREAD_ARGS(msg, thread_id))) < 0)
		return -1;
	/* The timelines are ordered by the copied date. */
	return sql_exec(tx, op, "UPDATE activities SET date = ?, updated_at = ? WHERE rid = ?",
	                SQL_ARGS(SQL_INT(msg->date), SQL_INT(now), SQL_INT(rid))) < 0
	           ? -1
	           : 0;
}

/* A weaker copy: the record keeps its content; what it lacks of the thread columns is filled
 * (our outbox id when the outbox's copy came first is kept; a record from before the columns
 * gets them). */
static int touch_last_seen(struct store_tx *tx, const char *op, int64_t rid, int64_t now,
                           const char *thread_id, const struct store_message *msg)
{
	return sql_exec(
	           tx, op,
	           "UPDATE message_records SET last_seen = ?1,"
	           " outbox_id = COALESCE(outbox_id, ?3), in_reply_to = COALESCE(in_reply_to, ?4),"
	           " thread_id = COALESCE(thread_id, ?5) WHERE rid = ?2",
	           SQL_ARGS(SQL_INT(now), SQL_INT(rid), THREAD_ARGS(msg, thread_id))) < 0
	           ? -1
	           : 0;
}

int store_message_put(struct store_tx *tx, const char *org_id, const char *key,
                      enum store_source source, enum store_activity_type type,
                      const char *thread_id, const struct store_message *msg,
                      bool *content_replaced_r, int64_t *date_r, int64_t *record_r)
{
	static const char op[] = "store_message_put";
	*content_replaced_r = false;
	*date_r = msg->date;
	*record_r = 0;
	if (store_need_write(tx, op) < 0 || check_message(op, msg) < 0)
		return -1;
	if ((unsigned)source < STORE_SOURCE_ADDIN || (unsigned)source > STORE_SOURCE_OUTBOX)
		return store_invalid(op, "unknown source");
	int64_t now = mt_wall_s();
	struct store_part_list *parts = malloc(sizeof(*parts));
	/* The columns: the caller's when built ahead, else built here. */
	struct store_message_columns own = {0};
	const struct store_message_columns *cols = msg->columns;
	if (parts == NULL || (cols == NULL && store_message_columns_build(msg, &own) < 0)) {
		free(parts);
		return store_invalid(op, "out of memory");
	}
	if (cols == NULL)
		cols = &own;
	store_parts_collect(msg, parts);
	/* The column lists what the content does not tell: nothing, for a new record — unless an
	 * address could not be written into the content as it is. */
	char *text = NULL;
	int rc = cols->lossy ? store_parts_text(parts, &text) : 0;
	/* Insert first: a new message (the common case) costs no extra read. */
	bool created = false;
	if (rc == 0)
		rc = insert_record(tx, op, org_id, key, source, type, thread_id, msg, cols,
		                   text != NULL ? text : "", now, &created);
	else
		rc = store_invalid(op, "out of memory");
	free(text);
	int64_t rid = 0;
	if (rc == 0 && created) {
		rid = db_last_insert_id(tx->db);
		rc = store_parts_put_new(tx, op, org_id, rid, parts);
	} else if (rc == 0) {
		struct store_record_ref stored = {0, STORE_SOURCE_ADDIN, 0};
		rc = store_record_find(tx, op, org_id, key, &stored);
		if (rc == STORE_NOT_FOUND)
			rc = store_invalid(op, "record vanished");
		rid = stored.rid;
		if (rc == 0)
			rc = store_parts_add(tx, op, org_id, rid, parts->addr, parts->count);
		if (rc == 0 && source > stored.source) {
			rc = replace_content(tx, op, org_id, key, rid, source, type, thread_id, msg,
			                     parts, cols, now);
			*content_replaced_r = rc == 0;
		} else if (rc == 0) {
			rc = touch_last_seen(tx, op, rid, now, thread_id, msg);
			*date_r = stored.date;
		}
	}
	free(parts);
	store_message_columns_free(&own);
	if (rc != 0)
		return rc < 0 ? -1 : rc;
	for (size_t i = 0; i < msg->alias_count; i++) {
		if (strcmp(msg->aliases[i], key) != 0 &&
		    put_alias(tx, op, org_id, msg->aliases[i], rid) < 0)
			return -1;
	}
	*record_r = rid;
	return 0;
}

int store_message_add_user(struct store_tx *tx, int64_t record, const char *user_id, bool *added_r)
{
	static const char op[] = "store_message_add_user";
	*added_r = false;
	int64_t n = sql_exec(tx, op,
	                     "INSERT INTO message_users (rid, user_id, added_at) VALUES (?, ?, ?)"
	                     " ON CONFLICT DO NOTHING",
	                     SQL_ARGS(SQL_INT(record), SQL_TEXT(user_id), SQL_INT(mt_wall_s())));
	*added_r = n == 1;
	return n < 0 ? -1 : 0;
}
