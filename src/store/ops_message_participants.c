/* The participant index of message records — which records an address took part in, for
 * backfill (store_message_keys_by_address) — kept beside each record as its content's addresses
 * plus its `participants` column (store_message_participants), and the erasure that finds a
 * record's rows through them (profile deletion, purge, merge). */
#include "store/store_message.h"
#include "store/message_internal.h"
#include "store/sql.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "lib/str.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ---- a record's participants ----
 *
 * message_participants is keyed by address (backfill). Erasure, purge and merge find a record's
 * rows through the record itself: the addresses of its content (From, To, Cc, Bcc, walked as
 * store_parts_collect walks a message) and its `participants` column, one address a line, which
 * holds only the rest — addresses added by later copies, those of content since replaced, or all of
 * them when an address could not be written into the content as it is. A new record's column
 * is empty: ~100 bytes less on every record. (Records written before this kept the full list
 * there; the union is the same.) */

/* A normalised address has no control character; anything else cannot be one line. */
static bool indexable(const char *address)
{
	return address[0] != '\0' && strchr(address, '\n') == NULL;
}

static bool part_listed(const struct store_part_list *l, const char *address)
{
	for (size_t i = 0; i < l->count; i++) {
		if (strcmp(l->addr[i], address) == 0)
			return true;
	}
	return false;
}

static void part_add(struct store_part_list *l, const char *address)
{
	if (indexable(address) && !part_listed(l, address))
		l->addr[l->count++] = address;
}

/* From, then To, Cc and Bcc entries while the budget lasts (every entry counts, indexable or
 * not): the same walk over a message and over a record's stored content gives the same list. */
struct part_walk {
	struct store_part_list *list;
	size_t budget;
};

static void walk_start(struct part_walk *w, struct store_part_list *l, const char *from)
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

void store_parts_collect(const struct store_message *msg, struct store_part_list *l)
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
	struct store_part_list parts;
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

int store_parts_text(const struct store_part_list *l, char **text_r)
{
	*text_r = NULL;
	size_t len = 0;
	for (size_t i = 0; i < l->count; i++) {
		if (lines_append(text_r, &len, l->addr[i]) < 0) {
			free(*text_r);
			*text_r = NULL;
			return -1;
		}
	}
	return 0;
}

/* Adds `count` addresses to the index rows of record `rid` (existing) and its column. */
int store_parts_add(struct store_tx *tx, const char *op, const char *org_id, int64_t rid,
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
int store_parts_put_new(struct store_tx *tx, const char *op, const char *org_id, int64_t rid,
                        const struct store_part_list *parts)
{
	for (size_t i = 0; i < parts->count; i++) {
		bool added;
		if (put_participant(tx, op, org_id, parts->addr[i], rid, &added) < 0)
			return -1;
	}
	return 0;
}

int store_parts_move(struct store_tx *tx, const char *op, const char *org_id, int64_t from,
                     int64_t to)
{
	struct part_lines l;
	int rc = record_lines(tx, op, from, &l);
	if (rc != 0)
		return rc;
	rc = store_parts_add(tx, op, org_id, to, (const char *const *)l.lines, l.count);
	part_lines_free(&l);
	return rc;
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

/* Before new content replaces the old: the old content's participants that the new content
 * (`now`, the message's) does not list go into the column — and the new content's own when it
 * cannot hold them (`lossy`) — so that content and column still list every index row. */
int store_parts_keep_old(struct store_tx *tx, const char *op, int64_t rid,
                         const struct store_part_list *now, bool lossy)
{
	char *text;
	struct content_parts old;
	int rc = record_parts(tx, op, rid, &text, &old);
	if (rc != 0)
		return rc;
	size_t len = strlen(text);
	bool grew = false;
	const struct store_part_list *lists[] = {&old.parts, now};
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
                        const struct db_arg *args, const char *address, size_t *count_r)
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
