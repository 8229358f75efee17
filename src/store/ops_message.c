/* Message records: their aliases, participants (the backfill index) and users. */
#include "store/store_internal.h"
#include "lib/str.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *const source_names[] = {NULL, "addin", "bcc", "imap", "outbox"};

const char *store_source_name(enum store_source source)
{
	if ((unsigned)source < 1 || (unsigned)source > STORE_SOURCE_OUTBOX)
		return "unknown";
	return source_names[source];
}

/* 0 when the column holds no known name: the CHECK constraint makes that unreachable, and the
 * weakest trust keeps a broken row replaceable. */
enum store_source store_source_parse(const char *name)
{
	for (unsigned i = 1; i <= STORE_SOURCE_OUTBOX; i++) {
		if (strcmp(name, source_names[i]) == 0)
			return (enum store_source)i;
	}
	return (enum store_source)0;
}

static const char *type_name(enum store_activity_type type)
{
	return type == STORE_EMAIL_SENT ? "email_sent" : "email_received";
}

/* jansson refuses invalid UTF-8; a name the parser could not decode is dropped, not the
 * message. */
static json_t *json_text(const char *s)
{
	json_t *v = json_string(s);
	return v != NULL ? v : json_string("");
}

/* *lossy_r is set when an address could not be kept as it is (not UTF-8): the content then
 * does not tell the record's participants. */
static char *mailboxes_json(const struct store_mailbox *boxes, size_t count, bool *lossy_r)
{
	/* Most lists are empty (Cc, Bcc): jansson's allocations cost more than the rest of it. */
	if (count == 0)
		return strdup("[]");
	json_t *a = json_array();
	if (a == NULL)
		return NULL;
	for (size_t i = 0; i < count; i++) {
		json_t *o = json_object();
		json_t *address = json_string(boxes[i].address);
		if (address == NULL) {
			*lossy_r = true;
			address = json_string("");
		}
		if (o == NULL || json_object_set_new(o, "address", address) < 0 ||
		    json_object_set_new(o, "name", json_text(boxes[i].name)) < 0 ||
		    json_array_append_new(a, o) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	char *text = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	return text;
}

static char *attachments_json(const struct store_attachment *atts, size_t count)
{
	if (count == 0)
		return strdup("[]");
	json_t *a = json_array();
	if (a == NULL)
		return NULL;
	for (size_t i = 0; i < count; i++) {
		json_t *o = json_object();
		if (o == NULL || json_object_set_new(o, "name", json_text(atts[i].name)) < 0 ||
		    json_object_set_new(o, "type", json_text(atts[i].type)) < 0 ||
		    json_object_set_new(o, "size", json_integer(atts[i].size)) < 0 ||
		    json_array_append_new(a, o) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	char *text = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	return text;
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

/* ---- a record's participants ----
 *
 * message_participants is keyed by address (backfill). Erasure, purge and merge find a record's
 * rows through the record itself: the addresses of its content (From, To, Cc, Bcc, walked as
 * part_collect walks a message) and its `participants` column, one address a line, which holds
 * only the rest — addresses added by later copies, those of content since replaced, or all of
 * them when an address could not be written into the content as it is. A new record's column
 * is empty: ~100 bytes less on every record. (Records written before this kept the full list
 * there; the union is the same.) */

/* A normalised address has no control character; anything else cannot be one line. */
static bool indexable(const char *address)
{
	return address[0] != '\0' && strchr(address, '\n') == NULL;
}

/* The addresses a message adds to the index: From, To, Cc, Bcc, each once. The index is
 * capped; a message beyond it (a huge Cc list) is still logged for the profiles matched now,
 * only a later backfill may miss its tail. */
struct part_list {
	const char *addr[MT_MESSAGE_PARTICIPANTS_MAX];
	size_t count;
};

static void part_add(struct part_list *l, const char *address)
{
	if (!indexable(address))
		return;
	for (size_t i = 0; i < l->count; i++) {
		if (strcmp(l->addr[i], address) == 0)
			return;
	}
	l->addr[l->count++] = address;
}

/* From, then To, Cc and Bcc entries while the budget lasts (every entry counts, indexable or
 * not): the same walk over a message and over a record's stored content gives the same list. */
struct part_walk {
	struct part_list *list;
	size_t budget;
};

static void walk_start(struct part_walk *w, struct part_list *l, const char *from)
{
	l->count = 0;
	w->list = l;
	w->budget = MT_MESSAGE_PARTICIPANTS_MAX - 1;
	part_add(l, from);
}

static bool walk_add(struct part_walk *w, const char *address)
{
	if (w->budget == 0)
		return false;
	w->budget--;
	part_add(w->list, address);
	return true;
}

static void part_collect(const struct store_message *msg, struct part_list *l)
{
	struct part_walk w;
	walk_start(&w, l, msg->from.address);
	const struct store_mailbox *lists[] = {msg->to, msg->cc, msg->bcc};
	const size_t counts[] = {msg->to_count, msg->cc_count, msg->bcc_count};
	for (size_t k = 0; k < 3; k++) {
		for (size_t i = 0; i < counts[k] && walk_add(&w, lists[k][i].address); i++)
			;
	}
}

/* The same list from a record's columns (from_address and the to, cc, bcc JSON); the strings
 * stay valid until content_parts_free. */
struct content_parts {
	char *from;
	json_t *lists[3];
	struct part_list parts;
};

static void content_parts_free(struct content_parts *c)
{
	free(c->from);
	for (size_t k = 0; k < 3; k++)
		json_decref(c->lists[k]);
}

/* From the current row of `s`, columns `first` (from_address) to first + 3 (bcc_json). */
static int content_parts_read(struct db_stmt *s, int first, struct content_parts *c)
{
	memset(c, 0, sizeof(*c));
	c->from = strdup(db_column_text(s, first));
	for (int k = 0; k < 3; k++)
		c->lists[k] = json_loads(db_column_text(s, first + 1 + k), 0, NULL);
	if (c->from == NULL)
		return -1;
	struct part_walk w;
	walk_start(&w, &c->parts, c->from);
	for (size_t k = 0; k < 3; k++) {
		for (size_t i = 0; i < json_array_size(c->lists[k]); i++) {
			const char *address = json_string_value(
			    json_object_get(json_array_get(c->lists[k], i), "address"));
			if (!walk_add(&w, address != NULL ? address : ""))
				break;
		}
	}
	return 0;
}

/* Appends `address` as a line of the malloc'd text *text (NULL = empty). */
static int lines_append(char **text, size_t *len, const char *address)
{
	size_t n = strlen(address), sep = *len > 0 ? 1 : 0;
	char *p = realloc(*text, *len + sep + n + 1);
	if (p == NULL)
		return -1;
	if (sep)
		p[(*len)++] = '\n';
	memcpy(p + *len, address, n + 1);
	*len += n;
	*text = p;
	return 0;
}

/* Splits malloc'd line text in place: the lines in *lines_r (malloc'd, free it and `text`). */
static int lines_split(char *text, char ***lines_r, size_t *count_r)
{
	size_t n = text[0] != '\0' ? 1 : 0;
	for (const char *p = text; *p != '\0'; p++)
		n += *p == '\n';
	char **lines = malloc((n > 0 ? n : 1) * sizeof(*lines));
	if (lines == NULL)
		return -1;
	size_t i = 0;
	for (char *p = text; n > 0;) {
		lines[i++] = p;
		char *nl = strchr(p, '\n');
		if (nl == NULL)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	*lines_r = lines;
	*count_r = i;
	return 0;
}

/* Whether `address` is a line of `text`. */
static bool has_line(const char *text, const char *address)
{
	size_t n = strlen(address);
	for (const char *p = text; *p != '\0';) {
		const char *nl = strchr(p, '\n');
		size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
		if (len == n && memcmp(p, address, n) == 0)
			return true;
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	return false;
}

/* The record's participants column alone (malloc'd): the addresses beyond its content's. */
static int record_column(struct store_tx *tx, const char *op, const char *org_id, const char *key,
                         char **text_r)
{
	*text_r = NULL;
	struct db_stmt *s = db_prepare(
	    tx->db, "SELECT participants FROM message_records WHERE org_id = ? AND key = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text_ref(s, 1, org_id);
	db_bind_text_ref(s, 2, key);
	int rc = db_step(s);
	if (rc == DB_ROW)
		*text_r = strdup(db_column_text(s, 0));
	else if (rc != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	if (rc == DB_DONE)
		return STORE_NOT_FOUND;
	return *text_r != NULL ? 0 : store_invalid(op, "out of memory");
}

/* Every address message_participants holds for the record, one a line (malloc'd): its
 * content's and its column's. STORE_NOT_FOUND without the record. */
static int record_participants(struct store_tx *tx, const char *op, const char *org_id,
                               const char *key, char **text_r)
{
	*text_r = NULL;
	struct db_stmt *s =
	    db_prepare(tx->db, "SELECT participants, from_address, to_json, cc_json, bcc_json"
	                       " FROM message_records WHERE org_id = ? AND key = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text_ref(s, 1, org_id);
	db_bind_text_ref(s, 2, key);
	int rc = db_step(s);
	if (rc == DB_DONE) {
		db_finish(s);
		return STORE_NOT_FOUND;
	}
	if (rc != DB_ROW)
		return store_fail_stmt(tx, op, s);
	char *text = strdup(db_column_text(s, 0));
	struct content_parts c;
	int read = content_parts_read(s, 1, &c);
	db_finish(s);
	size_t len = text != NULL ? strlen(text) : 0;
	rc = text != NULL && read == 0 ? 0 : -1;
	for (size_t i = 0; i < c.parts.count && rc == 0; i++) {
		if (!has_line(text, c.parts.addr[i]))
			rc = lines_append(&text, &len, c.parts.addr[i]);
	}
	content_parts_free(&c);
	if (rc != 0) {
		free(text);
		return store_invalid(op, "out of memory");
	}
	*text_r = text;
	return 0;
}

static int set_record_participants(struct store_tx *tx, const char *op, const char *org_id,
                                   const char *key, const char *text)
{
	struct db_stmt *s = db_prepare(
	    tx->db, "UPDATE message_records SET participants = ? WHERE org_id = ? AND key = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, text);
	db_bind_text(s, 2, org_id);
	db_bind_text(s, 3, key);
	if (db_step(s) != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return 0;
}

/* Adds (address, key) to the index; *added_r false when it was there. */
static int put_participant(struct store_tx *tx, const char *op, const char *org_id,
                           const char *address, const char *key, bool *added_r)
{
	int64_t changes = 0;
	int rc = store_exec_texts(tx, op,
	                          "INSERT INTO message_participants (org_id, address, key)"
	                          " VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
	                          &changes, 3, org_id, address, key);
	*added_r = changes == 1;
	return rc;
}

static int delete_participant(struct store_tx *tx, const char *op, const char *org_id,
                              const char *address, const char *key)
{
	return store_exec_texts(
	    tx, op, "DELETE FROM message_participants WHERE org_id = ? AND address = ? AND key = ?",
	    NULL, 3, org_id, address, key);
}

/* Adds `count` addresses to the index rows of record `key` (existing) and its column. */
static int add_participants(struct store_tx *tx, const char *op, const char *org_id,
                            const char *key, const char *const *addresses, size_t count)
{
	char *text = NULL;
	size_t len = 0;
	bool grew = false;
	int rc = 0;
	for (size_t i = 0; i < count && rc == 0; i++) {
		bool added;
		rc = put_participant(tx, op, org_id, addresses[i], key, &added);
		if (rc != 0 || !added)
			continue;
		/* A row added now is not one of the content's (those came with the record):
		 * the column keeps it. */
		if (!grew) {
			rc = record_column(tx, op, org_id, key, &text);
			if (rc != 0)
				break;
			len = strlen(text);
			grew = true;
		}
		if (lines_append(&text, &len, addresses[i]) < 0)
			rc = store_invalid(op, "out of memory");
	}
	if (rc == 0 && grew)
		rc = set_record_participants(tx, op, org_id, key, text);
	free(text);
	return rc == STORE_NOT_FOUND ? store_invalid(op, "record vanished") : rc;
}

/* The index rows of a record just created with `parts` as its column. */
static int put_new_participants(struct store_tx *tx, const char *op, const char *org_id,
                                const char *key, const struct part_list *parts)
{
	for (size_t i = 0; i < parts->count; i++) {
		bool added;
		if (put_participant(tx, op, org_id, parts->addr[i], key, &added) < 0)
			return -1;
	}
	return 0;
}

int store_record_erase(struct store_tx *tx, const char *op, const char *org_id, const char *key)
{
	char *text;
	int rc = record_participants(tx, op, org_id, key, &text);
	if (rc == STORE_NOT_FOUND)
		return 0;
	if (rc != 0)
		return rc;
	char **lines;
	size_t n;
	if (lines_split(text, &lines, &n) < 0) {
		free(text);
		return store_invalid(op, "out of memory");
	}
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = delete_participant(tx, op, org_id, lines[i], key);
	free(lines);
	free(text);
	static const char *const sql[] = {
	    "DELETE FROM message_aliases WHERE org_id = ? AND key = ?",
	    "DELETE FROM message_users WHERE org_id = ? AND key = ?",
	    "DELETE FROM message_records WHERE org_id = ? AND key = ?",
	};
	for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]) && rc == 0; i++)
		rc = store_exec_texts(tx, op, sql[i], NULL, 2, org_id, key);
	return rc;
}

/* The record one alias points to (its key, or an alias row); STORE_NOT_FOUND when none. */
static int lookup_alias(struct store_tx *tx, const char *op, const char *org_id, const char *alias,
                        char key_r[MT_MESSAGE_KEY_MAX], enum store_source *source_r)
{
	/* A record's key is its first alias and is not repeated in message_aliases. */
	struct db_stmt *s = db_prepare(
	    tx->db, "SELECT key, source FROM message_records WHERE org_id = ? AND key = ?"
	            " UNION ALL"
	            " SELECT r.key, r.source FROM message_aliases a"
	            " JOIN message_records r ON r.org_id = a.org_id AND r.key = a.key"
	            " WHERE a.org_id = ? AND a.alias = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text_ref(s, 1, org_id);
	db_bind_text_ref(s, 2, alias);
	db_bind_text_ref(s, 3, org_id);
	db_bind_text_ref(s, 4, alias);
	int rc = db_step(s);
	if (rc == DB_ROW) {
		store_col_copy(s, 0, key_r, MT_MESSAGE_KEY_MAX);
		*source_r = store_source_parse(db_column_text(s, 1));
		db_finish(s);
		return 0;
	}
	if (rc != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return STORE_NOT_FOUND;
}

/* Two records that a copy shows to be one message (its Message-ID was seen on one, its
 * X-Mailtrail-Id on another) become one: `drop`'s activities move to `keep` unless the profile
 * already has one there (then the duplicate goes), and its users, participants and aliases
 * follow. Rare (copies seen out of order), so plain statements do. */
static int merge_records(struct store_tx *tx, const char *op, const char *org_id, const char *keep,
                         const char *drop)
{
	static const char *const sql[] = {
	    "DELETE FROM activities WHERE org_id = ?1 AND key = ?3 AND profile_id IN"
	    " (SELECT profile_id FROM activities WHERE org_id = ?1 AND key = ?2)",
	    "UPDATE activities SET key = ?2 WHERE org_id = ?1 AND key = ?3",
	    "INSERT INTO message_users (org_id, key, user_id, added_at)"
	    " SELECT org_id, ?2, user_id, added_at FROM message_users WHERE org_id = ?1 AND key = "
	    "?3"
	    " ON CONFLICT DO NOTHING",
	    "DELETE FROM message_users WHERE org_id = ?1 AND key = ?3",
	    "UPDATE message_aliases SET key = ?2 WHERE org_id = ?1 AND key = ?3",
	    "INSERT INTO message_aliases (org_id, alias, key) VALUES (?1, ?3, ?2)"
	    " ON CONFLICT DO NOTHING",
	};
	for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++)
		if (store_exec_texts(tx, op, sql[i], NULL, 3, org_id, keep, drop) != 0)
			return -1;
	/* The participants, then the record (its aliases and users are keep's now). */
	char *text;
	int rc = record_participants(tx, op, org_id, drop, &text);
	if (rc != 0)
		return rc == STORE_NOT_FOUND ? store_invalid(op, "record vanished") : rc;
	char **lines;
	size_t n;
	if (lines_split(text, &lines, &n) < 0) {
		free(text);
		return store_invalid(op, "out of memory");
	}
	rc = add_participants(tx, op, org_id, keep, (const char *const *)lines, n);
	free(lines);
	free(text);
	if (rc == 0)
		rc = store_record_erase(tx, op, org_id, drop);
	return rc == 0 ? store_activities_touch(tx, org_id, keep) : rc;
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

static int put_alias(struct store_tx *tx, const char *op, const char *org_id, const char *alias,
                     const char *key)
{
	/* An alias already pointing elsewhere keeps its record (see store_message_lookup). */
	return store_exec_texts(tx, op,
	                        "INSERT INTO message_aliases (org_id, alias, key)"
	                        " VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
	                        NULL, 3, org_id, alias, key);
}

struct record_json {
	char *to, *cc, *bcc, *attachments;
	bool lossy; /* an address is not in to/cc/bcc as it is: the column must list them all */
};

static void record_json_free(struct record_json *j)
{
	free(j->to);
	free(j->cc);
	free(j->bcc);
	free(j->attachments);
}

static int record_json_build(const struct store_message *msg, struct record_json *j_r)
{
	j_r->lossy = false;
	j_r->to = mailboxes_json(msg->to, msg->to_count, &j_r->lossy);
	j_r->cc = mailboxes_json(msg->cc, msg->cc_count, &j_r->lossy);
	j_r->bcc = mailboxes_json(msg->bcc, msg->bcc_count, &j_r->lossy);
	j_r->attachments = attachments_json(msg->attachments, msg->attachment_count);
	if (j_r->to == NULL || j_r->cc == NULL || j_r->bcc == NULL || j_r->attachments == NULL) {
		record_json_free(j_r);
		return -1;
	}
	return 0;
}

/* Binds the content columns shared by the INSERT and the UPDATE, from `first` on:
 * source, type, message_id, date, from_address, from_name, to, cc, bcc, subject, snippet,
 * attachments. Returns the next index. */
static int bind_content(struct db_stmt *s, int first, enum store_source source,
                        enum store_activity_type type, const struct store_message *msg,
                        const struct record_json *j)
{
	int i = first;
	db_bind_text_ref(s, i++, store_source_name(source));
	db_bind_text_ref(s, i++, type_name(type));
	db_bind_text_ref(s, i++, msg->message_id);
	db_bind_int64(s, i++, msg->date);
	db_bind_text_ref(s, i++, msg->from.address);
	db_bind_text_ref(s, i++, msg->from.name);
	db_bind_text_ref(s, i++, j->to);
	db_bind_text_ref(s, i++, j->cc);
	db_bind_text_ref(s, i++, j->bcc);
	db_bind_text_ref(s, i++, msg->subject);
	db_bind_text_ref(s, i++, msg->snippet);
	db_bind_text_ref(s, i++, j->attachments);
	return i;
}

/* Runs `sql`, the record INSERT or the content UPDATE, numbered alike: ?1 org, ?2 key, ?3-?14
 * the content (bind_content), ?15 last_seen; the INSERT also ?16 participants, ?17 first_seen
 * (`participants` non-NULL). */
static int write_record(struct store_tx *tx, const char *op, const char *sql, const char *org_id,
                        const char *key, enum store_source source, enum store_activity_type type,
                        const struct store_message *msg, const struct record_json *j,
                        const char *participants, int64_t now)
{
	struct db_stmt *s = db_prepare(tx->db, sql);
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text_ref(s, 1, org_id);
	db_bind_text_ref(s, 2, key);
	int i = bind_content(s, 3, source, type, msg, j);
	db_bind_int64(s, i++, now);
	if (participants != NULL) {
		db_bind_text_ref(s, i++, participants);
		db_bind_int64(s, i, now);
	}
	if (db_step(s) != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return 0;
}

/* Inserts the record unless the key exists; *created_r tells which. */
static int insert_record(struct store_tx *tx, const char *op, const char *org_id, const char *key,
                         enum store_source source, enum store_activity_type type,
                         const struct store_message *msg, const struct record_json *j,
                         const char *participants, int64_t now, bool *created_r)
{
	if (write_record(
	        tx, op,
	        "INSERT INTO message_records (org_id, key, source, type, message_id, date,"
	        " from_address, from_name, to_json, cc_json, bcc_json, subject, snippet,"
	        " attachments_json, last_seen, participants, first_seen)"
	        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,"
	        " ?16, ?17) ON CONFLICT DO NOTHING",
	        org_id, key, source, type, msg, j, participants, now) < 0)
		return -1;
	*created_r = db_changes(tx->db) == 1;
	return 0;
}

/* Before new content replaces the old: the old content's participants that the new one does
 * not have (and, when the new one cannot tell its own, all of them) go into the column, so that
 * content and column still list every index row of the record. */
static int keep_old_participants(struct store_tx *tx, const char *op, const char *org_id,
                                 const char *key, const struct store_message *msg,
                                 const struct record_json *j)
{
	struct db_stmt *s = db_prepare(
	    tx->db, "SELECT from_address, to_json, cc_json, bcc_json FROM message_records"
	            " WHERE org_id = ? AND key = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text_ref(s, 1, org_id);
	db_bind_text_ref(s, 2, key);
	int step = db_step(s);
	if (step != DB_ROW) {
		if (step == DB_DONE) {
			db_finish(s);
			return store_invalid(op, "record vanished");
		}
		return store_fail_stmt(tx, op, s);
	}
	struct content_parts old;
	int rc = content_parts_read(s, 0, &old);
	db_finish(s);
	struct part_list *now = malloc(sizeof(*now));
	char *text = NULL;
	if (rc == 0 && now != NULL)
		rc = record_column(tx, op, org_id, key, &text);
	else
		rc = store_invalid(op, "out of memory");
	bool grew = false;
	if (rc == 0) {
		part_collect(msg, now);
		size_t len = strlen(text);
		const struct part_list *lists[] = {&old.parts, now};
		for (size_t k = 0; k < 2 && rc == 0; k++) {
			for (size_t i = 0; i < lists[k]->count && rc == 0; i++) {
				const char *address = lists[k]->addr[i];
				bool in_new = false;
				for (size_t n = 0; n < now->count && !in_new && k == 0; n++)
					in_new = strcmp(now->addr[n], address) == 0;
				if ((k == 0 && in_new) || (k == 1 && !j->lossy) ||
				    has_line(text, address))
					continue;
				if (lines_append(&text, &len, address) < 0)
					rc = store_invalid(op, "out of memory");
				grew = true;
			}
		}
	}
	if (rc == 0 && grew)
		rc = set_record_participants(tx, op, org_id, key, text);
	free(text);
	free(now);
	content_parts_free(&old);
	return rc;
}

static int replace_content(struct store_tx *tx, const char *op, const char *org_id, const char *key,
                           enum store_source source, enum store_activity_type type,
                           const struct store_message *msg, const struct record_json *j,
                           int64_t now)
{
	int rc = keep_old_participants(tx, op, org_id, key, msg, j);
	if (rc != 0)
		return rc < 0 ? -1 : store_invalid(op, "record vanished");
	if (write_record(
	        tx, op,
	        "UPDATE message_records SET source = ?3, type = ?4, message_id = ?5,"
	        " date = ?6, from_address = ?7, from_name = ?8, to_json = ?9, cc_json = ?10,"
	        " bcc_json = ?11, subject = ?12, snippet = ?13, attachments_json = ?14,"
	        " last_seen = ?15 WHERE org_id = ?1 AND key = ?2",
	        org_id, key, source, type, msg, j, NULL, now) < 0)
		return -1;

	/* The timelines are ordered by the copied date. */
	struct db_stmt *s = db_prepare(tx->db, "UPDATE activities SET date = ?, updated_at = ?"
	                                       " WHERE org_id = ? AND key = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_int64(s, 1, msg->date);
	db_bind_int64(s, 2, now);
	db_bind_text(s, 3, org_id);
	db_bind_text(s, 4, key);
	if (db_step(s) != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return 0;
}

static int record_source(struct store_tx *tx, const char *op, const char *org_id, const char *key,
                         enum store_source *source_r, int64_t *date_r)
{
	struct db_stmt *s = db_prepare(
	    tx->db, "SELECT source, date FROM message_records WHERE org_id = ? AND key = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, org_id);
	db_bind_text(s, 2, key);
	int rc = db_step(s);
	if (rc == DB_ROW) {
		*source_r = store_source_parse(db_column_text(s, 0));
		*date_r = db_column_int64(s, 1);
	} else if (rc != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return rc == DB_ROW ? 0 : STORE_NOT_FOUND;
}

static int touch_last_seen(struct store_tx *tx, const char *op, const char *org_id, const char *key,
                           int64_t now)
{
	struct db_stmt *s = db_prepare(
	    tx->db, "UPDATE message_records SET last_seen = ? WHERE org_id = ? AND key = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_int64(s, 1, now);
	db_bind_text(s, 2, org_id);
	db_bind_text(s, 3, key);
	if (db_step(s) != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return 0;
}

int store_message_put(struct store_tx *tx, const char *org_id, const char *key,
                      enum store_source source, enum store_activity_type type,
                      const struct store_message *msg, bool *content_replaced_r, int64_t *date_r)
{
	static const char op[] = "store_message_put";
	*content_replaced_r = false;
	*date_r = msg->date;
	if (store_need_write(tx, op) < 0 || check_message(op, msg) < 0)
		return -1;
	if ((unsigned)source < STORE_SOURCE_ADDIN || (unsigned)source > STORE_SOURCE_OUTBOX)
		return store_invalid(op, "unknown source");
	int64_t now = mt_wall_s();
	struct part_list *parts = malloc(sizeof(*parts));
	struct record_json j = {0};
	if (parts == NULL || record_json_build(msg, &j) < 0) {
		free(parts);
		return store_invalid(op, "out of memory");
	}
	part_collect(msg, parts);
	/* The column lists what the content does not tell: nothing, for a new record — unless an
	 * address could not be written into the content as it is. */
	char *text = NULL;
	size_t len = 0;
	int rc = 0;
	for (size_t i = 0; i < parts->count && j.lossy && rc == 0; i++)
		rc = lines_append(&text, &len, parts->addr[i]);
	/* Insert first: a new message (the common case) costs no extra read. */
	bool created = false;
	if (rc == 0)
		rc = insert_record(tx, op, org_id, key, source, type, msg, &j,
		                   text != NULL ? text : "", now, &created);
	else
		rc = store_invalid(op, "out of memory");
	free(text);
	if (rc == 0 && created)
		rc = put_new_participants(tx, op, org_id, key, parts);
	else if (rc == 0)
		rc = add_participants(tx, op, org_id, key, parts->addr, parts->count);
	free(parts);
	if (rc != 0) {
		record_json_free(&j);
		return rc;
	}
	if (created)
		record_json_free(&j);
	if (!created) {
		enum store_source stored = STORE_SOURCE_ADDIN;
		int64_t stored_date = 0;
		rc = record_source(tx, op, org_id, key, &stored, &stored_date);
		if (rc == 0 && source > stored)
			rc = replace_content(tx, op, org_id, key, source, type, msg, &j, now);
		record_json_free(&j);
		if (rc != 0)
			return rc < 0 ? -1 : store_invalid(op, "record vanished");
		if (source > stored) {
			*content_replaced_r = true;
		} else if (touch_last_seen(tx, op, org_id, key, now) < 0) {
			return -1;
		} else {
			*date_r = stored_date;
		}
	}
	for (size_t i = 0; i < msg->alias_count; i++) {
		if (strcmp(msg->aliases[i], key) != 0 &&
		    put_alias(tx, op, org_id, msg->aliases[i], key) < 0)
			return -1;
	}
	return 0;
}

int store_message_add_user(struct store_tx *tx, const char *org_id, const char *key,
                           const char *user_id, bool *added_r)
{
	static const char op[] = "store_message_add_user";
	*added_r = false;
	if (store_need_write(tx, op) < 0)
		return -1;
	struct db_stmt *s =
	    db_prepare(tx->db, "INSERT INTO message_users (org_id, key, user_id, added_at)"
	                       " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text_ref(s, 1, org_id);
	db_bind_text_ref(s, 2, key);
	db_bind_text_ref(s, 3, user_id);
	db_bind_int64(s, 4, mt_wall_s());
	if (db_step(s) != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	*added_r = db_changes(tx->db) == 1;
	return 0;
}

int store_address_is_user(struct store_tx *tx, const char *org_id, const char *address)
{
	static const char op[] = "store_address_is_user";
	struct db_stmt *s =
	    db_prepare(tx->db, "SELECT 1 FROM user_addresses WHERE org_id = ? AND address = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text_ref(s, 1, org_id);
	db_bind_text_ref(s, 2, address);
	int rc = db_step(s);
	if (rc != DB_ROW && rc != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return rc == DB_ROW ? 1 : 0;
}

int store_message_keys_by_address(struct store_tx *tx, const char *org_id, const char *address,
                                  char (*keys_r)[MT_MESSAGE_KEY_MAX], size_t max, size_t *count_r)
{
	static const char op[] = "store_message_keys_by_address";
	*count_r = 0;
	struct db_stmt *s = db_prepare(
	    tx->db, "SELECT p.key FROM message_participants p"
	            " JOIN message_records r ON r.org_id = p.org_id AND r.key = p.key"
	            " WHERE p.org_id = ? AND p.address = ? ORDER BY r.date DESC, p.key LIMIT ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, org_id);
	db_bind_text(s, 2, address);
	db_bind_int64(s, 3, (int64_t)(max < INT64_MAX ? max : INT64_MAX));
	int rc = DB_DONE;
	size_t n = 0;
	while (n < max && (rc = db_step(s)) == DB_ROW)
		store_col_copy(s, 0, keys_r[n++], MT_MESSAGE_KEY_MAX);
	if (n < max && rc < 0)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	*count_r = n;
	return 0;
}

static int cmp_lines(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int store_message_participants(struct store_tx *tx, const char *org_id, const char *key,
                               char (*addresses_r)[MT_ADDRESS_MAX + 1], size_t max, size_t *count_r)
{
	static const char op[] = "store_message_participants";
	*count_r = 0;
	char *text;
	int rc = record_participants(tx, op, org_id, key, &text);
	if (rc == STORE_NOT_FOUND)
		return 0;
	if (rc != 0)
		return rc;
	char **lines;
	size_t n;
	if (lines_split(text, &lines, &n) < 0) {
		free(text);
		return store_invalid(op, "out of memory");
	}
	/* Byte order, as the index's BINARY collation gave it. */
	qsort(lines, n, sizeof(*lines), cmp_lines);
	size_t filled = n < max ? n : max;
	for (size_t i = 0; i < filled; i++)
		mt_strlcpy(addresses_r[i], lines[i], MT_ADDRESS_MAX + 1);
	free(lines);
	free(text);
	*count_r = filled;
	return 0;
}

/* Records kept only for backfill — no activity uses them — go after record_retention_days.
 * A record with activities is their content: it stays as long as they do (the CRM's history).
 * Listed in one pass, then each erased with its own rows (found through its participants
 * column). */
struct key_list {
	char **org_ids, **keys;
	size_t count, cap;
};

static void key_list_free(struct key_list *l)
{
	for (size_t i = 0; i < l->count; i++) {
		free(l->org_ids[i]);
		free(l->keys[i]);
	}
	free(l->org_ids);
	free(l->keys);
}

static int key_list_add(struct key_list *l, const char *org_id, const char *key)
{
	if (l->count == l->cap) {
		size_t ncap = l->cap == 0 ? 64 : l->cap * 2;
		char **o = realloc(l->org_ids, ncap * sizeof(*o));
		if (o == NULL)
			return -1;
		l->org_ids = o;
		char **k = realloc(l->keys, ncap * sizeof(*k));
		if (k == NULL)
			return -1;
		l->keys = k;
		l->cap = ncap;
	}
	char *o = strdup(org_id), *k = strdup(key);
	if (o == NULL || k == NULL) {
		free(o);
		free(k);
		return -1;
	}
	l->org_ids[l->count] = o;
	l->keys[l->count++] = k;
	return 0;
}

int store_messages_purge(struct store_tx *tx, int64_t before, size_t *deleted_r)
{
	static const char op[] = "store_messages_purge";
	*deleted_r = 0;
	if (store_need_write(tx, op) < 0)
		return -1;
	struct db_stmt *s =
	    db_prepare(tx->db, "SELECT r.org_id, r.key FROM message_records r WHERE r.last_seen < ?"
	                       " AND NOT EXISTS (SELECT 1 FROM activities a"
	                       " WHERE a.org_id = r.org_id AND a.key = r.key)");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_int64(s, 1, before);
	struct key_list l = {0};
	int rc = 0, step;
	while ((step = db_step(s)) == DB_ROW) {
		if (key_list_add(&l, db_column_text(s, 0), db_column_text(s, 1)) < 0) {
			rc = store_invalid(op, "out of memory");
			break;
		}
	}
	if (rc == 0 && step < 0)
		rc = store_fail(tx, op);
	db_finish(s);
	for (size_t i = 0; i < l.count && rc == 0; i++)
		rc = store_record_erase(tx, op, l.org_ids[i], l.keys[i]);
	if (rc == 0)
		*deleted_r = l.count;
	key_list_free(&l);
	return rc;
}

int store_records_erase_orphans(struct store_tx *tx, const char *op, const char *org_id,
                                const char *address)
{
	struct db_stmt *s = db_prepare(
	    tx->db, "SELECT p.key FROM message_participants p WHERE p.org_id = ? AND p.address = ?"
	            " AND NOT EXISTS (SELECT 1 FROM activities a"
	            " WHERE a.org_id = p.org_id AND a.key = p.key)");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, org_id);
	db_bind_text(s, 2, address);
	struct key_list l = {0};
	int rc = 0, step;
	while ((step = db_step(s)) == DB_ROW) {
		if (key_list_add(&l, org_id, db_column_text(s, 0)) < 0) {
			rc = store_invalid(op, "out of memory");
			break;
		}
	}
	if (rc == 0 && step < 0)
		rc = store_fail(tx, op);
	db_finish(s);
	for (size_t i = 0; i < l.count && rc == 0; i++) {
		rc = store_record_erase(tx, op, org_id, l.keys[i]);
		/* The erased address's own row, even if its record were gone already. */
		if (rc == 0)
			rc = delete_participant(tx, op, org_id, address, l.keys[i]);
	}
	key_list_free(&l);
	return rc;
}
