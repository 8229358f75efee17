/* Message records: their aliases, participants (the backfill index) and users. */
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

static bool part_listed(const struct part_list *l, const char *address)
{
	for (size_t i = 0; i < l->count; i++) {
		if (strcmp(l->addr[i], address) == 0)
			return true;
	}
	return false;
}

static void part_add(struct part_list *l, const char *address)
{
	if (indexable(address) && !part_listed(l, address))
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

/* A record's participants column and the content columns that tell the rest. */
struct parts_row {
	char *participants, *from, *lists[3];
};
#define PARTS_ROW(F, G, T)                                                                         \
	F(T, TEXT_DUP, "participants", participants)                                               \
	G(T, TEXT_DUP, "from_address", from)                                                       \
	G(T, TEXT_DUP, "to_json", lists[0])                                                        \
	G(T, TEXT_DUP, "cc_json", lists[1])                                                        \
	G(T, TEXT_DUP, "bcc_json", lists[2])
SQL_TABLE(parts_table, PARTS_ROW, struct parts_row);

static void parts_row_free(struct parts_row *row)
{
	free(row->participants);
	free(row->from);
	for (size_t k = 0; k < 3; k++)
		free(row->lists[k]);
}

/* The content's participants from a row's from_address and to, cc, bcc JSON; takes `from`. */
static void content_parts_read(struct parts_row *row, struct content_parts *c)
{
	memset(c, 0, sizeof(*c));
	c->from = row->from;
	row->from = NULL;
	for (int k = 0; k < 3; k++)
		c->lists[k] = json_loads(row->lists[k], 0, NULL);
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

/* A record's participants column alone, malloc'd. */
struct column_row {
	char *text;
};
#define COLUMN_ROW(F, G, T) F(T, TEXT_DUP, "participants", text)
SQL_TABLE(column_table, COLUMN_ROW, struct column_row);

/* The record's participants column alone (malloc'd): the addresses beyond its content's. */
static int record_column(struct store_tx *tx, const char *op, int64_t rid, char **text_r)
{
	struct column_row row = {NULL};
	int rc =
	    sql_get(tx, op, "SELECT " SQL_COLUMNS(COLUMN_ROW) " FROM message_records WHERE rid = ?",
	            SQL_ARGS(SQL_INT(rid)), &column_table, &row);
	if (rc != 0)
		free(row.text);
	*text_r = rc == 0 ? row.text : NULL;
	return rc;
}

/* The record's participants column (malloc'd) and its content's participants (free them with
 * content_parts_free). STORE_NOT_FOUND without the record. */
static int record_parts(struct store_tx *tx, const char *op, int64_t rid, char **column_r,
                        struct content_parts *content_r)
{
	*column_r = NULL;
	struct parts_row row;
	memset(&row, 0, sizeof(row));
	int rc =
	    sql_get(tx, op, "SELECT " SQL_COLUMNS(PARTS_ROW) " FROM message_records WHERE rid = ?",
	            SQL_ARGS(SQL_INT(rid)), &parts_table, &row);
	if (rc == 0) {
		content_parts_read(&row, content_r);
		*column_r = row.participants;
		row.participants = NULL;
	}
	parts_row_free(&row);
	return rc;
}

/* Every address message_participants holds for a record — its content's and its column's —
 * as lines of one malloc'd text. */
struct part_lines {
	char *text;
	char **lines; /* into text */
	size_t count;
};

static void part_lines_free(struct part_lines *l)
{
	free(l->lines);
	free(l->text);
}

/* STORE_NOT_FOUND without the record. */
static int record_lines(struct store_tx *tx, const char *op, int64_t rid, struct part_lines *l_r)
{
	memset(l_r, 0, sizeof(*l_r));
	struct content_parts c;
	int rc = record_parts(tx, op, rid, &l_r->text, &c);
	if (rc != 0)
		return rc;
	size_t len = strlen(l_r->text);
	for (size_t i = 0; i < c.parts.count && rc == 0; i++) {
		if (!has_line(l_r->text, c.parts.addr[i]))
			rc = lines_append(&l_r->text, &len, c.parts.addr[i]);
	}
	content_parts_free(&c);
	if (rc == 0)
		rc = lines_split(l_r->text, &l_r->lines, &l_r->count);
	if (rc != 0) {
		part_lines_free(l_r);
		return store_invalid(op, "out of memory");
	}
	return 0;
}

static int set_record_participants(struct store_tx *tx, const char *op, int64_t rid,
                                   const char *text)
{
	return sql_exec(tx, op, "UPDATE message_records SET participants = ? WHERE rid = ?",
	                SQL_ARGS(SQL_TEXT(text), SQL_INT(rid))) < 0
	           ? -1
	           : 0;
}

/* Adds (address, record) to the index; *added_r false when it was there. */
static int put_participant(struct store_tx *tx, const char *op, const char *org_id,
                           const char *address, int64_t rid, bool *added_r)
{
	int64_t n = sql_exec(tx, op,
	                     "INSERT INTO message_participants (org_id, address, rid)"
	                     " VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
	                     SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(address), SQL_INT(rid)));
	*added_r = n == 1;
	return n < 0 ? -1 : 0;
}

static int delete_participant(struct store_tx *tx, const char *op, const char *org_id,
                              const char *address, int64_t rid)
{
	return sql_exec(
	           tx, op,
	           "DELETE FROM message_participants WHERE address = ? AND org_id = ? AND rid = ?",
	           SQL_ARGS(SQL_TEXT(address), SQL_TEXT(org_id), SQL_INT(rid))) < 0
	           ? -1
	           : 0;
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

/* Adds `count` addresses to the index rows of record `rid` (existing) and its column. */
static int add_participants(struct store_tx *tx, const char *op, const char *org_id, int64_t rid,
                            const char *const *addresses, size_t count)
{
	char *text = NULL;
	size_t len = 0;
	bool grew = false;
	int rc = 0;
	for (size_t i = 0; i < count && rc == 0; i++) {
		bool added = false;
		rc = put_participant(tx, op, org_id, addresses[i], rid, &added);
		if (rc != 0 || !added)
			continue;
		/* A row added now is not one of the content's (those came with the record):
		 * the column keeps it. */
		if (!grew) {
			rc = record_column(tx, op, rid, &text);
			if (rc != 0)
				break;
			len = strlen(text);
			grew = true;
		}
		if (lines_append(&text, &len, addresses[i]) < 0)
			rc = store_invalid(op, "out of memory");
	}
	if (rc == 0 && grew)
		rc = set_record_participants(tx, op, rid, text);
	free(text);
	return rc == STORE_NOT_FOUND ? store_invalid(op, "record vanished") : rc;
}

/* The index rows of a record just created with `parts` as its content. */
static int put_new_participants(struct store_tx *tx, const char *op, const char *org_id,
                                int64_t rid, const struct part_list *parts)
{
	for (size_t i = 0; i < parts->count; i++) {
		bool added;
		if (put_participant(tx, op, org_id, parts->addr[i], rid, &added) < 0)
			return -1;
	}
	return 0;
}

int store_record_erase(struct store_tx *tx, const char *op, const char *org_id, int64_t record)
{
	struct part_lines l;
	int rc = record_lines(tx, op, record, &l);
	if (rc != 0)
		return rc == STORE_NOT_FOUND ? 0 : rc;
	for (size_t i = 0; i < l.count && rc == 0; i++)
		rc = delete_participant(tx, op, org_id, l.lines[i], record);
	part_lines_free(&l);
	static const char *const sql[] = {
	    "DELETE FROM message_aliases WHERE rid = ?",
	    "DELETE FROM message_users WHERE rid = ?",
	    "DELETE FROM message_records WHERE rid = ?",
	};
	for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]) && rc == 0; i++)
		rc = sql_exec(tx, op, sql[i], SQL_ARGS(SQL_INT(record))) < 0 ? -1 : 0;
	return rc;
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
	static const char *const sql[] = {
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
	struct part_lines l;
	rc = record_lines(tx, op, drop_rid, &l);
	if (rc != 0)
		return rc == STORE_NOT_FOUND ? store_invalid(op, "record vanished") : rc;
	rc = add_participants(tx, op, org_id, keep_rid, (const char *const *)l.lines, l.count);
	part_lines_free(&l);
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
	j_r->to = array_json(msg->to, msg->to_count, mailbox_json, &j_r->lossy);
	j_r->cc = array_json(msg->cc, msg->cc_count, mailbox_json, &j_r->lossy);
	j_r->bcc = array_json(msg->bcc, msg->bcc_count, mailbox_json, &j_r->lossy);
	j_r->attachments =
	    array_json(msg->attachments, msg->attachment_count, attachment_json, &j_r->lossy);
	if (j_r->to == NULL || j_r->cc == NULL || j_r->bcc == NULL || j_r->attachments == NULL) {
		record_json_free(j_r);
		return -1;
	}
	return 0;
}

/* The content columns the INSERT and the UPDATE share, as their parameters ?3 to ?14: source,
 * type, message_id, date, from_address, from_name, to, cc, bcc, subject, snippet,
 * attachments. */
#define CONTENT_ARGS(source, type, msg, j)                                                         \
	SQL_TEXT(store_source_name(source)), SQL_TEXT(type_name(type)),                            \
	    SQL_TEXT((msg)->message_id), SQL_INT((msg)->date), SQL_TEXT((msg)->from.address),      \
	    SQL_TEXT((msg)->from.name), SQL_TEXT((j)->to), SQL_TEXT((j)->cc), SQL_TEXT((j)->bcc),  \
	    SQL_TEXT((msg)->subject), SQL_TEXT((msg)->snippet), SQL_TEXT((j)->attachments)

/* Inserts the record unless the key exists; *created_r tells which. */
static int insert_record(struct store_tx *tx, const char *op, const char *org_id, const char *key,
                         enum store_source source, enum store_activity_type type,
                         const struct store_message *msg, const struct record_json *j,
                         const char *participants, int64_t now, bool *created_r)
{
	int64_t n =
	    sql_exec(tx, op,
	             "INSERT INTO message_records (org_id, key, source, type, message_id,"
	             " date, from_address, from_name, to_json, cc_json, bcc_json, subject,"
	             " snippet, attachments_json, last_seen, participants, first_seen)"
	             " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
	             " ?15, ?16, ?17) ON CONFLICT DO NOTHING",
	             SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(key), CONTENT_ARGS(source, type, msg, j),
	                      SQL_INT(now), SQL_TEXT(participants), SQL_INT(now)));
	*created_r = n == 1;
	return n < 0 ? -1 : 0;
}

/* Before new content replaces the old: the old content's participants that the new content
 * (`now`, the message's) does not list go into the column — and the new content's own when it
 * cannot hold them (`lossy`) — so that content and column still list every index row. */
static int keep_old_participants(struct store_tx *tx, const char *op, int64_t rid,
                                 const struct part_list *now, bool lossy)
{
	char *text;
	struct content_parts old;
	int rc = record_parts(tx, op, rid, &text, &old);
	if (rc != 0)
		return rc;
	size_t len = strlen(text);
	bool grew = false;
	const struct part_list *lists[] = {&old.parts, now};
	for (size_t k = 0; k < 2 && rc == 0; k++) {
		for (size_t i = 0; i < lists[k]->count && rc == 0; i++) {
			const char *address = lists[k]->addr[i];
			bool keep = k == 0 ? !part_listed(now, address) : lossy;
			if (!keep || has_line(text, address))
				continue;
			rc = lines_append(&text, &len, address) < 0
			         ? store_invalid(op, "out of memory")
			         : 0;
			grew = true;
		}
	}
	if (rc == 0 && grew)
		rc = set_record_participants(tx, op, rid, text);
	free(text);
	content_parts_free(&old);
	return rc;
}

static int replace_content(struct store_tx *tx, const char *op, const char *org_id, const char *key,
                           int64_t rid, enum store_source source, enum store_activity_type type,
                           const struct store_message *msg, const struct part_list *parts,
                           const struct record_json *j, int64_t now)
{
	int rc = keep_old_participants(tx, op, rid, parts, j->lossy);
	if (rc != 0)
		return rc < 0 ? -1 : store_invalid(op, "record vanished");
	if (sql_exec(tx, op,
	             "UPDATE message_records SET source = ?3, type = ?4, message_id = ?5,"
	             " date = ?6, from_address = ?7, from_name = ?8, to_json = ?9, cc_json = ?10,"
	             " bcc_json = ?11, subject = ?12, snippet = ?13, attachments_json = ?14,"
	             " last_seen = ?15 WHERE key = ?2 AND org_id = ?1",
	             SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(key), CONTENT_ARGS(source, type, msg, j),
	                      SQL_INT(now))) < 0)
		return -1;
	/* The timelines are ordered by the copied date. */
	return sql_exec(tx, op, "UPDATE activities SET date = ?, updated_at = ? WHERE rid = ?",
	                SQL_ARGS(SQL_INT(msg->date), SQL_INT(now), SQL_INT(rid))) < 0
	           ? -1
	           : 0;
}

static int touch_last_seen(struct store_tx *tx, const char *op, int64_t rid, int64_t now)
{
	return sql_exec(tx, op, "UPDATE message_records SET last_seen = ? WHERE rid = ?",
	                SQL_ARGS(SQL_INT(now), SQL_INT(rid))) < 0
	           ? -1
	           : 0;
}

int store_message_put(struct store_tx *tx, const char *org_id, const char *key,
                      enum store_source source, enum store_activity_type type,
                      const struct store_message *msg, bool *content_replaced_r, int64_t *date_r,
                      int64_t *record_r)
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
	int64_t rid = 0;
	if (rc == 0 && created) {
		rid = db_last_insert_id(tx->db);
		rc = put_new_participants(tx, op, org_id, rid, parts);
	} else if (rc == 0) {
		struct store_record_ref stored = {0, STORE_SOURCE_ADDIN, 0};
		rc = store_record_find(tx, op, org_id, key, &stored);
		if (rc == STORE_NOT_FOUND)
			rc = store_invalid(op, "record vanished");
		rid = stored.rid;
		if (rc == 0)
			rc = add_participants(tx, op, org_id, rid, parts->addr, parts->count);
		if (rc == 0 && source > stored.source) {
			rc = replace_content(tx, op, org_id, key, rid, source, type, msg, parts, &j,
			                     now);
			*content_replaced_r = rc == 0;
		} else if (rc == 0) {
			rc = touch_last_seen(tx, op, rid, now);
			*date_r = stored.date;
		}
	}
	free(parts);
	record_json_free(&j);
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

SQL_TEXT_TABLE(key_table, "r.key", MT_MESSAGE_KEY_MAX);

int store_message_keys_by_address(struct store_tx *tx, const char *org_id, const char *address,
                                  char (*keys_r)[MT_MESSAGE_KEY_MAX], size_t max, size_t *count_r)
{
	return sql_list(tx, "store_message_keys_by_address",
	                "SELECT r.key FROM message_participants p JOIN message_records r"
	                " ON r.rid = p.rid WHERE p.org_id = ? AND p.address = ?"
	                " ORDER BY r.date DESC, r.key LIMIT ?",
	                SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(address),
	                         SQL_INT(max < INT64_MAX ? max : INT64_MAX)),
	                &key_table, keys_r, max, count_r) < 0
	           ? -1
	           : 0;
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
	struct store_record_ref ref;
	struct part_lines l;
	int rc = store_record_find(tx, op, org_id, key, &ref);
	if (rc == 0)
		rc = record_lines(tx, op, ref.rid, &l);
	if (rc != 0)
		return rc == STORE_NOT_FOUND ? 0 : rc;
	/* Byte order, as the index's BINARY collation gave it. */
	qsort(l.lines, l.count, sizeof(*l.lines), cmp_lines);
	size_t filled = l.count < max ? l.count : max;
	for (size_t i = 0; i < filled; i++)
		mt_strlcpy(addresses_r[i], l.lines[i], MT_ADDRESS_MAX + 1);
	part_lines_free(&l);
	*count_r = filled;
	return 0;
}

/* Records kept only for backfill — no activity uses them — go after record_retention_days.
 * A record with activities is their content: it stays as long as they do (the CRM's history).
 * Listed in one pass, then each erased with its own rows (found through its content and
 * participants column). */
struct record_at {
	char org_id[MT_ID_MAX];
	int64_t rid;
};
#define RECORD_AT_ROW(F, G, T)                                                                     \
	F(T, TEXT, "org_id", org_id)                                                               \
	G(T, INT64, "rid", rid)
SQL_TABLE(record_at_table, RECORD_AT_ROW, struct record_at);

/* Erases the records `sql` lists (columns org_id, rid) — and, with an `address`, that
 * address's own index row for each, even if its record were gone already. *count_r counts
 * them. */
static int erase_listed(struct store_tx *tx, const char *op, const char *sql,
                        const struct sql_arg *args, const char *address, size_t *count_r)
{
	void *rows = NULL;
	size_t n = 0;
	int rc = sql_list_alloc(tx, op, sql, args, &record_at_table, 64, SIZE_MAX, &rows, &n);
	const struct record_at *l = rows;
	for (size_t i = 0; i < n && rc == 0; i++) {
		rc = store_record_erase(tx, op, l[i].org_id, l[i].rid);
		if (rc == 0 && address != NULL)
			rc = delete_participant(tx, op, l[i].org_id, address, l[i].rid);
	}
	free(rows);
	if (rc == 0)
		*count_r = n;
	return rc;
}

int store_messages_purge(struct store_tx *tx, int64_t before, size_t *deleted_r)
{
	static const char op[] = "store_messages_purge";
	*deleted_r = 0;
	if (store_need_write(tx, op) < 0)
		return -1;
	return erase_listed(tx, op,
	                    "SELECT r.org_id, r.rid FROM message_records r WHERE r.last_seen < ?"
	                    " AND NOT EXISTS (SELECT 1 FROM activities a WHERE a.rid = r.rid)",
	                    SQL_ARGS(SQL_INT(before)), NULL, deleted_r);
}

int store_records_erase_orphans(struct store_tx *tx, const char *op, const char *org_id,
                                const char *address)
{
	size_t n = 0;
	return erase_listed(tx, op,
	                    "SELECT p.org_id, p.rid FROM message_participants p"
	                    " WHERE p.address = ? AND p.org_id = ?"
	                    " AND NOT EXISTS (SELECT 1 FROM activities a WHERE a.rid = p.rid)",
	                    SQL_ARGS(SQL_TEXT(address), SQL_TEXT(org_id)), address, &n);
}
