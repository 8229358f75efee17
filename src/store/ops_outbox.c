/* The outbox: messages stored before the API's 202, claimed by senders under fenced leases. The
 * body is the built MIME; it and the metadata are never logged. */
#include "store/store_outbox.h"
#include "lib/str.h"
#include "store/sql.h"
#include "store/store_webhook.h"
#include "store/store.h"
#include "store/store_internal.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define IDEMPOTENCY_WINDOW_S (24 * 3600)

static const char *const state_names[] = {
    [STORE_OUTBOX_QUEUED] = "queued",       [STORE_OUTBOX_HELD] = "held",
    [STORE_OUTBOX_SENDING] = "sending",     [STORE_OUTBOX_SENT] = "sent",
    [STORE_OUTBOX_PARTIAL] = "partial",     [STORE_OUTBOX_FAILED] = "failed",
    [STORE_OUTBOX_CANCELLED] = "cancelled",
};

const char *store_outbox_state_name(enum store_outbox_state state)
{
	if ((unsigned)state > STORE_OUTBOX_CANCELLED)
		return "?";
	return state_names[state];
}

/* The due, lease and final indexes are partial (migration 5: `WHERE state = 0`, `= 2`,
 * `>= 3`; held's `= 1`), and SQLite uses one only where the query's own text proves its condition:
 * with `state = ?` it scans the table (EXPLAIN QUERY PLAN). So the queries that go through them
 * spell the state as a literal, these, tied to the enum here; every other state is bound. */
#define QUEUED_SQL  "0"
#define HELD_SQL    "1"
#define SENDING_SQL "2"
#define FINAL_SQL   "3" /* sent, partial, failed, cancelled: state >= 3 */
_Static_assert(STORE_OUTBOX_QUEUED == 0 && STORE_OUTBOX_HELD == 1 && STORE_OUTBOX_SENDING == 2 &&
                   STORE_OUTBOX_SENT == 3 && STORE_OUTBOX_CANCELLED == 6,
               "the partial indexes' literal states");

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

void store_outbox_message_free(struct store_outbox_message *message)
{
	free(message->attachments);
	free(message->body);
	free(message->rcpts);
	message->attachments = NULL;
	message->attachment_count = 0;
	message->body = NULL;
	message->rcpts = NULL;
	message->rcpt_count = 0;
}

/* ---- enqueue ---- */

SQL_TEXT_TABLE(id_table, "id", MT_ID_MAX);

static int find_idempotent(struct store_tx *tx, const char *op,
                           const struct store_outbox_message *m, char id_r[MT_ID_MAX])
{
	int rc =
	    sql_get(tx, op,
	            "SELECT id FROM outbox_messages WHERE org_id = ? AND user_id = ?"
	            " AND idempotency_key = ? AND idempotency_key <> '' AND created_at > ?",
	            SQL_ARGS(SQL_TEXT(m->org_id), SQL_TEXT(m->user_id),
	                     SQL_TEXT(m->idempotency_key), SQL_INT(now_s() - IDEMPOTENCY_WINDOW_S)),
	            &id_table, id_r);
	return rc == 0 ? STORE_CONFLICT : rc == STORE_NOT_FOUND ? 0 : -1;
}

int store_outbox_enqueue(struct store_tx *tx, struct store_outbox_message *m,
                         char existing_id_r[MT_ID_MAX])
{
	static const char op[] = "store_outbox_enqueue";
	if (store_need_write(tx, op) < 0)
		return -1;
	if (m->rcpt_count == 0 || m->rcpt_count > MT_SMTP_RCPTS_MAX)
		return store_invalid(op, "a message needs 1 to 100 recipients");
	existing_id_r[0] = '\0';
	if (m->idempotency_key[0] != '\0') {
		int rc = find_idempotent(tx, op, m, existing_id_r);
		if (rc != 0)
			return rc;
	}
	int64_t now = now_s();
	store_new_ordered_id("msg", m->id);
	m->created_at = m->updated_at = now;
	if (m->next_attempt_at == 0)
		m->next_attempt_at = now;
	int rc = sql_insert(
	    tx, op,
	    "INSERT INTO outbox_messages (id, org_id, user_id, campaign_id, state, route,"
	    " idempotency_key, mail_from, from_address, from_name, reply_to_address,"
	    " reply_to_name, head_apart, relay_only, subject, message_id, mailtrail_id, snippet,"
	    " body_len, next_attempt_at, created_at, updated_at)"
	    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
	    SQL_ARGS(
	        SQL_TEXT(m->id), SQL_TEXT(m->org_id), SQL_TEXT(m->user_id),
	        SQL_TEXT(m->campaign_id), SQL_INT(m->state), SQL_TEXT(m->route),
	        SQL_TEXT(m->idempotency_key), SQL_TEXT(m->mail_from), SQL_TEXT(m->from.address),
	        SQL_TEXT(m->from.name), SQL_TEXT(m->reply_to.address), SQL_TEXT(m->reply_to.name),
	        SQL_INT(m->head_apart), SQL_INT(m->relay_only), SQL_TEXT(m->subject),
	        SQL_TEXT(m->message_id), SQL_TEXT(m->mailtrail_id), SQL_TEXT(m->snippet),
	        SQL_INT(m->body_len), SQL_INT(m->next_attempt_at), SQL_INT(now), SQL_INT(now)));
	/* A unique id is a conflict; the table has no foreign key, so nothing else is expected. */
	if (rc != 0)
		return rc == STORE_CONFLICT ? rc : -1;
	if (sql_exec(tx, op, "INSERT INTO outbox_bodies (message_id, body) VALUES (?, ?)",
	             SQL_ARGS(SQL_TEXT(m->id), SQL_BLOB(m->body, m->body_len))) < 0)
		return -1;
	for (size_t i = 0; i < m->attachment_count; i++) {
		const struct store_attachment *a = &m->attachments[i];
		if (sql_exec(tx, op,
		             "INSERT INTO outbox_attachments (message_id, pos, name, type, size)"
		             " VALUES (?, ?, ?, ?, ?)",
		             SQL_ARGS(SQL_TEXT(m->id), SQL_INT(i), SQL_TEXT(a->name),
		                      SQL_TEXT(a->type), SQL_INT(a->size))) < 0)
			return -1;
	}
	for (size_t i = 0; i < m->rcpt_count; i++) {
		const struct store_outbox_rcpt *r = &m->rcpts[i];
		if (sql_exec(tx, op,
		             "INSERT INTO outbox_recipients (message_id, pos, address, name, kind,"
		             " state, reply) VALUES (?, ?, ?, ?, ?, ?, '')",
		             SQL_ARGS(SQL_TEXT(m->id), SQL_INT(i), SQL_TEXT(r->address),
		                      SQL_TEXT(r->name), SQL_INT(r->kind),
		                      SQL_INT(STORE_RCPT_PENDING))) < 0)
			return -1;
	}
	return 0;
}

/* ---- reading ---- */

#define MESSAGE_ROW(F, G, T)                                                                       \
	F(T, TEXT, "id", id)                                                                       \
	G(T, TEXT, "org_id", org_id)                                                               \
	G(T, TEXT, "user_id", user_id)                                                             \
	G(T, TEXT, "campaign_id", campaign_id)                                                     \
	G(T, INT, "state", state)                                                                  \
	G(T, TEXT, "route", route)                                                                 \
	G(T, TEXT, "idempotency_key", idempotency_key)                                             \
	G(T, TEXT, "mail_from", mail_from)                                                         \
	G(T, TEXT, "from_address", from.address)                                                   \
	G(T, TEXT, "from_name", from.name)                                                         \
	G(T, TEXT, "reply_to_address", reply_to.address)                                           \
	G(T, TEXT, "reply_to_name", reply_to.name)                                                 \
	G(T, BOOL, "head_apart", head_apart)                                                       \
	G(T, BOOL, "relay_only", relay_only)                                                       \
	G(T, TEXT, "subject", subject)                                                             \
	G(T, TEXT, "message_id", message_id)                                                       \
	G(T, TEXT, "mailtrail_id", mailtrail_id)                                                   \
	G(T, TEXT, "snippet", snippet)                                                             \
	G(T, INT, "body_len", body_len)                                                            \
	G(T, INT, "attempts", attempts)                                                            \
	G(T, INT64, "first_attempt_at", first_attempt_at)                                          \
	G(T, INT64, "next_attempt_at", next_attempt_at)                                            \
	G(T, INT64, "held_seconds", held_seconds)                                                  \
	G(T, TEXT, "last_error", last_error)                                                       \
	G(T, TEXT, "last_class", last_class)                                                       \
	G(T, TEXT, "lease_owner", lease_owner)                                                     \
	G(T, INT64, "lease_token", lease_token)                                                    \
	G(T, INT64, "lease_expires", lease_expires)                                                \
	G(T, INT64, "created_at", created_at)                                                      \
	G(T, INT64, "updated_at", updated_at)                                                      \
	G(T, INT64, "sent_at", sent_at)
SQL_TABLE(message_table, MESSAGE_ROW, struct store_outbox_message);

#define ATTACHMENT_ROW(F, G, T)                                                                    \
	F(T, TEXT, "name", name)                                                                   \
	G(T, TEXT, "type", type)                                                                   \
	G(T, INT64, "size", size)
SQL_TABLE(attachment_table, ATTACHMENT_ROW, struct store_attachment);

int store_outbox_attachments(struct store_tx *tx, const char *id, struct store_attachment **list_r,
                             size_t *count_r)
{
	void *list = NULL;
	int rc = sql_list_alloc(tx, "store_outbox_attachments",
	                        "SELECT " SQL_COLUMNS(ATTACHMENT_ROW) " FROM outbox_attachments"
	                                                              " WHERE message_id = ?"
	                                                              " ORDER BY pos",
	                        SQL_ARGS(SQL_TEXT(id)), &attachment_table, 4, MT_ATTACHMENTS_MAX,
	                        &list, count_r);
	*list_r = list;
	return rc;
}

struct body_row {
	char *body;
	size_t len;
};
#define BODY_ROW(F, G, T) F(T, BLOB_DUP, "body", body, len)
SQL_TABLE(body_table, BODY_ROW, struct body_row);

int store_outbox_body(struct store_tx *tx, const char *id, char **body_r, size_t *len_r)
{
	struct body_row row = {0};
	int rc = sql_get(tx, "store_outbox_body",
	                 "SELECT " SQL_COLUMNS(BODY_ROW) " FROM outbox_bodies WHERE message_id = ?",
	                 SQL_ARGS(SQL_TEXT(id)), &body_table, &row);
	if (rc == 0 && row.body == NULL)
		rc = STORE_NOT_FOUND; /* purged */
	*body_r = rc == 0 ? row.body : NULL;
	*len_r = rc == 0 ? row.len : 0;
	if (rc != 0)
		free(row.body);
	return rc;
}

#define RCPT_ROW(F, G, T)                                                                          \
	F(T, TEXT, "address", address)                                                             \
	G(T, TEXT, "name", name)                                                                   \
	G(T, INT, "kind", kind)                                                                    \
	G(T, INT, "state", state)                                                                  \
	G(T, TEXT, "reply", reply)
SQL_TABLE(rcpt_table, RCPT_ROW, struct store_outbox_rcpt);

/* The recipients of a message, all of them or only those still pending. */
/* The recipients of a message, all of them or only those still pending (then the others are
 * counted in sent_before / failed_before: one query either way). */
static int read_rcpts(struct store_tx *tx, const char *op, struct store_outbox_message *m,
                      bool pending_only)
{
	void *rcpts = NULL;
	int rc = sql_list_alloc(
	    tx, op,
	    "SELECT " SQL_COLUMNS(RCPT_ROW) " FROM outbox_recipients"
	                                    " WHERE message_id = ? ORDER BY pos",
	    SQL_ARGS(SQL_TEXT(m->id)), &rcpt_table, 8, SIZE_MAX, &rcpts, &m->rcpt_count);
	m->rcpts = rcpts;
	if (rc != 0 || !pending_only)
		return rc;
	size_t kept = 0;
	for (size_t i = 0; i < m->rcpt_count; i++) {
		if (m->rcpts[i].state == STORE_RCPT_PENDING)
			m->rcpts[kept++] = m->rcpts[i];
		else if (m->rcpts[i].state == STORE_RCPT_SENT)
			m->sent_before++;
		else
			m->failed_before++;
	}
	m->rcpt_count = kept;
	return 0;
}

/* A message by `sql` (its columns from `table`) with its recipients; on a failure nothing is
 * left to free. */
static int get_message(struct store_tx *tx, const char *op, const char *sql,
                       const struct db_arg *args, const struct sql_table *table, bool pending_only,
                       struct store_outbox_message *m)
{
	memset(m, 0, sizeof(*m));
	int rc = sql_get(tx, op, sql, args, table, m);
	if (rc == 0)
		rc = read_rcpts(tx, op, m, pending_only);
	if (rc != 0)
		store_outbox_message_free(m);
	return rc;
}

int store_outbox_get(struct store_tx *tx, const char *org_id, const char *user_id, const char *id,
                     struct store_outbox_message *m)
{
	return get_message(
	    tx, "store_outbox_get",
	    "SELECT " SQL_COLUMNS(MESSAGE_ROW) " FROM outbox_messages"
	                                       " WHERE id = ? AND org_id = ? AND user_id = ?",
	    SQL_ARGS(SQL_TEXT(id), SQL_TEXT(org_id), SQL_TEXT(user_id)), &message_table, false, m);
}

void store_outbox_list_free(struct store_outbox_list *list)
{
	STORE_PAGE_FREE(list);
}

int store_outbox_list(struct store_tx *tx, const char *org_id,
                      const struct store_outbox_filter *filter, const char *cursor, size_t limit,
                      struct store_outbox_list *list_r)
{
	static const char op[] = "store_outbox_list";
	memset(list_r, 0, sizeof(*list_r));
	char sql[1024];
	struct db_arg args[8];
	size_t n = 0;
	int len =
	    snprintf(sql, sizeof(sql),
	             "SELECT " SQL_COLUMNS(MESSAGE_ROW) " FROM outbox_messages WHERE org_id = ?");
	args[n++] = SQL_TEXT(org_id);
	if (filter->user_id != NULL) {
		len += snprintf(sql + len, sizeof(sql) - (size_t)len, " AND user_id = ?");
		args[n++] = SQL_TEXT(filter->user_id);
	}
	if (filter->campaign_id != NULL) {
		len += snprintf(sql + len, sizeof(sql) - (size_t)len, " AND campaign_id = ?");
		args[n++] = SQL_TEXT(filter->campaign_id);
	}
	if (filter->state >= 0) {
		len += snprintf(sql + len, sizeof(sql) - (size_t)len, " AND state = ?");
		args[n++] = SQL_INT(filter->state);
	}
	/* The cursor and the row count are store_page_read's. */
	len +=
	    snprintf(sql + len, sizeof(sql) - (size_t)len, " AND id < ? ORDER BY id DESC LIMIT ?");
	args[n] = (struct db_arg){.type = DB_ARG_END};
	if (len < 0 || (size_t)len >= sizeof(sql))
		return store_invalid(op, "query too long");
	const struct store_page_query page = {
	    sql, &message_table, offsetof(struct store_outbox_message, id), "msg_", true};
	return STORE_PAGE_READ(tx, op, &page, args, cursor, limit, list_r);
}

int store_outbox_cancel(struct store_tx *tx, const char *org_id, const char *user_id,
                        const char *id)
{
	static const char op[] = "store_outbox_cancel";
	int64_t n = sql_exec(tx, op,
	                     "UPDATE outbox_messages SET state = ?, updated_at = ?"
	                     " WHERE id = ? AND org_id = ? AND user_id = ? AND state IN (?, ?)",
	                     SQL_ARGS(SQL_INT(STORE_OUTBOX_CANCELLED), SQL_INT(now_s()),
	                              SQL_TEXT(id), SQL_TEXT(org_id), SQL_TEXT(user_id),
	                              SQL_INT(STORE_OUTBOX_QUEUED), SQL_INT(STORE_OUTBOX_HELD)));
	if (n < 0)
		return -1;
	if (n == 1)
		return store_webhook_message_event(tx, id);
	struct store_outbox_message m;
	int rc = store_outbox_get(tx, org_id, user_id, id, &m);
	store_outbox_message_free(&m);
	return rc == 0 ? STORE_CONFLICT : rc;
}

/* ---- claiming and leases ---- */

/* Ids due: queued and due, or sending under an expired lease (its node died). On PostgreSQL
 * this select takes the rows FOR UPDATE SKIP LOCKED so that nodes claim disjoint sets. */
static int due_ids(struct store_tx *tx, const char *op, int64_t now, size_t max,
                   char (*ids)[MT_ID_MAX], size_t *count)
{
	static const char *const queries[] = {
	    "SELECT id FROM outbox_messages WHERE state = " QUEUED_SQL " AND next_attempt_at <= ?"
	    " ORDER BY next_attempt_at LIMIT ?",
	    "SELECT id FROM outbox_messages WHERE state = " SENDING_SQL " AND lease_expires < ?"
	    " LIMIT ?",
	};
	*count = 0;
	for (size_t q = 0; q < 2 && *count < max; q++) {
		size_t n = 0;
		if (sql_list(tx, op, queries[q], SQL_ARGS(SQL_INT(now), SQL_INT(max - *count)),
		             &id_table, ids + *count, max - *count, &n) < 0)
			return -1;
		*count += n;
	}
	return 0;
}

int store_outbox_claim_ids(struct store_tx *tx, const char *owner, int64_t now, int64_t lease_s,
                           size_t max, char (*ids_r)[MT_ID_MAX], size_t *count_r)
{
	static const char op[] = "store_outbox_claim_ids";
	*count_r = 0;
	if (store_need_write(tx, op) < 0)
		return -1;
	size_t due = 0;
	if (due_ids(tx, op, now, max, ids_r, &due) < 0)
		return -1;
	for (size_t i = 0; i < due; i++) {
		/* By id: no partial index is wanted here, the states are bound. */
		int64_t n = sql_exec(tx, op,
		                     "UPDATE outbox_messages SET state = ?1, lease_owner = ?2,"
		                     " lease_token = lease_token + 1, lease_expires = ?3,"
		                     " updated_at = ?4 WHERE id = ?5"
		                     " AND (state = ?6 OR (state = ?1 AND lease_expires < ?4))",
		                     SQL_ARGS(SQL_INT(STORE_OUTBOX_SENDING), SQL_TEXT(owner),
		                              SQL_INT(now + lease_s), SQL_INT(now),
		                              SQL_TEXT(ids_r[i]), SQL_INT(STORE_OUTBOX_QUEUED)));
		if (n < 0)
			return -1;
		if (n == 1 && *count_r != i)
			memcpy(ids_r[*count_r], ids_r[i], sizeof(ids_r[i]));
		*count_r += n == 1 ? 1 : 0;
	}
	return 0;
}

int store_outbox_get_claimed(struct store_tx *tx, const char *id, struct store_outbox_message *m)
{
	static const char op[] = "store_outbox_get_claimed";
	int rc = get_message(
	    tx, op, "SELECT " SQL_COLUMNS(MESSAGE_ROW) " FROM outbox_messages WHERE id = ?",
	    SQL_ARGS(SQL_TEXT(id)), &message_table, true, m);
	/* The row was just claimed: not finding it is a failure. */
	return rc == STORE_NOT_FOUND ? store_invalid(op, "claimed message vanished") : rc;
}

int store_outbox_renew(struct store_tx *tx, const char *owner, int64_t until)
{
	static const char op[] = "store_outbox_renew";
	return sql_exec(tx, op,
	                "UPDATE outbox_messages SET lease_expires = ?"
	                " WHERE lease_owner = ? AND state = " SENDING_SQL,
	                SQL_ARGS(SQL_INT(until), SQL_TEXT(owner))) < 0
	           ? -1
	           : 0;
}

int store_outbox_release_owner(struct store_tx *tx, const char *owner, size_t *count_r)
{
	static const char op[] = "store_outbox_release_owner";
	*count_r = 0;
	int64_t n =
	    sql_exec(tx, op,
	             "UPDATE outbox_messages SET state = ?, lease_owner = '',"
	             " lease_expires = 0, updated_at = ?"
	             " WHERE lease_owner = ? AND state = " SENDING_SQL,
	             SQL_ARGS(SQL_INT(STORE_OUTBOX_QUEUED), SQL_INT(now_s()), SQL_TEXT(owner)));
	if (n < 0)
		return -1;
	*count_r = (size_t)n;
	return 0;
}

/* ---- held for a reconnect, requeued ---- */

/* Held for a reconnect is a governor-style hold whose key is STORE_HOLD_RECONNECT: one set of
 * columns (hold_key, held_since) for every reason a message waits. */
int store_outbox_release_held(struct store_tx *tx, const char *org_id, const char *user_id,
                              const char *hold_key, int64_t now, size_t *count_r)
{
	static const char op[] = "store_outbox_release_held";
	*count_r = 0;
	/* Through the held index (user_id, WHERE state = 1): the literal state, see HELD_SQL. */
	int64_t n = sql_exec(
	    tx, op,
	    "UPDATE outbox_messages SET state = ?,"
	    " held_seconds = held_seconds + CASE WHEN held_since > 0 AND ? > held_since"
	    " THEN ? - held_since ELSE 0 END, held_since = 0, hold_key = '', next_attempt_at = ?,"
	    " updated_at = ? WHERE user_id = ? AND state = " HELD_SQL " AND org_id = ?"
	    " AND hold_key = ?",
	    SQL_ARGS(SQL_INT(STORE_OUTBOX_QUEUED), SQL_INT(now), SQL_INT(now), SQL_INT(now),
	             SQL_INT(now), SQL_TEXT(user_id), SQL_TEXT(org_id), SQL_TEXT(hold_key)));
	if (n < 0)
		return -1;
	*count_r = (size_t)n;
	return 0;
}

int store_outbox_requeue(struct store_tx *tx, const char *id, int64_t lease_token, int64_t now)
{
	static const char op[] = "store_outbox_requeue";
	int64_t n =
	    sql_exec(tx, op,
	             "UPDATE outbox_messages SET state = ?, next_attempt_at = ?,"
	             " lease_owner = '', lease_expires = 0, updated_at = ?"
	             " WHERE id = ? AND lease_token = ? AND state = ?",
	             SQL_ARGS(SQL_INT(STORE_OUTBOX_QUEUED), SQL_INT(now), SQL_INT(now),
	                      SQL_TEXT(id), SQL_INT(lease_token), SQL_INT(STORE_OUTBOX_SENDING)));
	return n < 0 ? -1 : n == 1 ? 0 : STORE_CONFLICT;
}

int store_outbox_give_back(struct store_tx *tx, const char *id, int64_t lease_token)
{
	static const char op[] = "store_outbox_give_back";
	int64_t now = now_s();
	/* The campaign's state now decides, in the same statement: a resume that committed after
	 * the pause that recalled the message must not leave it held. */
	int64_t n = sql_exec(
	    tx, op,
	    "UPDATE outbox_messages SET state = CASE (SELECT c.state FROM campaigns c"
	    " WHERE c.id = outbox_messages.campaign_id) WHEN ? THEN ? WHEN ? THEN ? ELSE ? END,"
	    " next_attempt_at = ?, lease_owner = '', lease_expires = 0, updated_at = ?"
	    " WHERE id = ? AND lease_token = ? AND state = " SENDING_SQL,
	    SQL_ARGS(SQL_INT(STORE_CAMPAIGN_PAUSED_VALUE), SQL_INT(STORE_OUTBOX_HELD),
	             SQL_INT(STORE_CAMPAIGN_CANCELLED_VALUE), SQL_INT(STORE_OUTBOX_CANCELLED),
	             SQL_INT(STORE_OUTBOX_QUEUED), SQL_INT(now), SQL_INT(now), SQL_TEXT(id),
	             SQL_INT(lease_token)));
	return n < 0 ? -1 : n == 0 ? STORE_CONFLICT : 0;
}

/* ---- results ---- */

/* A state and a count of rows in it (GROUP BY state). */
struct state_count {
	int64_t state, count;
};
#define STATE_COUNT_ROW(F, G, T)                                                                   \
	F(T, INT64, "state", state)                                                                \
	G(T, INT64, "COUNT(*)", count)
SQL_TABLE(state_count_table, STATE_COUNT_ROW, struct state_count);

/* Adds the rows of a per-state count query to counts[0..n). */
static int count_states(struct store_tx *tx, const char *op, const char *sql,
                        const struct db_arg *args, int64_t *counts, size_t n)
{
	struct state_count rows[STORE_OUTBOX_CANCELLED + 1];
	size_t got = 0;
	if (sql_list(tx, op, sql, args, &state_count_table, rows, sizeof(rows) / sizeof(rows[0]),
	             &got) < 0)
		return -1;
	for (size_t i = 0; i < got; i++) {
		if (rows[i].state >= 0 && (uint64_t)rows[i].state < n)
			counts[rows[i].state] = rows[i].count;
	}
	return 0;
}

struct lease {
	int64_t token;
	enum store_outbox_state state;
};
#define LEASE_ROW(F, G, T)                                                                         \
	F(T, INT64, "lease_token", token)                                                          \
	G(T, INT, "state", state)
SQL_TABLE(lease_table, LEASE_ROW, struct lease);

int store_outbox_lease_held(struct store_tx *tx, const char *id, int64_t lease_token)
{
	struct lease lease;
	int rc = sql_get(tx, "store_outbox_lease_held",
	                 "SELECT " SQL_COLUMNS(LEASE_ROW) " FROM outbox_messages WHERE id = ?",
	                 SQL_ARGS(SQL_TEXT(id)), &lease_table, &lease);
	if (rc != 0)
		return rc;
	return lease.token == lease_token && lease.state == STORE_OUTBOX_SENDING ? 0
	                                                                         : STORE_CONFLICT;
}

int store_outbox_finish(struct store_tx *tx, const struct store_outbox_result *r)
{
	static const char op[] = "store_outbox_finish";
	if (store_need_write(tx, op) < 0)
		return -1;
	/* The state is the outbox policy's (engine/outbox_policy.h): the store only records it.
	 * The row first, fenced in its own WHERE (only the lease holder of this attempt may record
	 * it): a lost lease changes nothing, and the row is looked up once. */
	enum store_outbox_state state = r->state;
	bool held = state == STORE_OUTBOX_HELD;
	int64_t now = now_s();
	int rc = sql_change(
	    tx, op,
	    "UPDATE outbox_messages SET state = ?, route = ?, mail_from = ?,"
	    " attempts = attempts + 1,"
	    " first_attempt_at = CASE WHEN first_attempt_at = 0 THEN ? ELSE"
	    " first_attempt_at END, next_attempt_at = ?, last_error = ?,"
	    " last_class = ?, lease_owner = '', lease_expires = 0,"
	    " sent_at = CASE WHEN ? > sent_at THEN ? ELSE sent_at END,"
	    " hold_key = ?, held_since = ?, updated_at = ?"
	    " WHERE id = ? AND lease_token = ? AND state = " SENDING_SQL,
	    SQL_ARGS(SQL_INT(state), SQL_TEXT(r->route != NULL ? r->route : ""),
	             SQL_TEXT(r->mail_from != NULL ? r->mail_from : ""),
	             SQL_INT(r->first_attempt_at ? r->first_attempt_at : now),
	             SQL_INT(state == STORE_OUTBOX_QUEUED || held ? r->next_attempt_at : 0),
	             SQL_TEXT(r->last_error != NULL ? r->last_error : ""),
	             SQL_TEXT(r->last_class != NULL ? r->last_class : ""), SQL_INT(r->sent_at),
	             SQL_INT(r->sent_at), SQL_TEXT(held && r->hold_key != NULL ? r->hold_key : ""),
	             SQL_INT(held ? now : 0), SQL_INT(now), SQL_TEXT(r->id),
	             SQL_INT(r->lease_token)));
	if (rc != 0)
		return rc == STORE_NOT_FOUND ? STORE_CONFLICT : rc;
	/* A recipient with an outcome gets it; a pending one keeps its last reply too, for GET
	 * /v1/messages. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < r->rcpt_count; i++) {
			const struct store_outbox_rcpt *rcpt = &r->rcpts[i];
			bool pending = rcpt->state == STORE_RCPT_PENDING;
			if (pending != (pass == 1))
				continue;
			if (sql_exec(tx, op,
			             "UPDATE outbox_recipients SET state = ?, reply = ?"
			             " WHERE message_id = ? AND address = ? AND state = ?",
			             SQL_ARGS(SQL_INT(rcpt->state), SQL_TEXT(rcpt->reply),
			                      SQL_TEXT(r->id), SQL_TEXT(rcpt->address),
			                      SQL_INT(STORE_RCPT_PENDING))) < 0)
				return -1;
		}
	}
	/* Final: the event for webhooks, in this transaction (the durable queue). */
	if (state == STORE_OUTBOX_SENT || state == STORE_OUTBOX_PARTIAL ||
	    state == STORE_OUTBOX_FAILED)
		return store_webhook_message_event(tx, r->id);
	return 0;
}

/* ---- the governor's holds ---- */

int store_outbox_hold(struct store_tx *tx, const char *id, int64_t lease_token,
                      const char *hold_key, int64_t until, int64_t now)
{
	static const char op[] = "store_outbox_hold";
	int rc = sql_change(tx, op,
	                    "UPDATE outbox_messages SET state = ?, hold_key = ?, held_since = ?,"
	                    " next_attempt_at = ?, lease_owner = '', lease_expires = 0,"
	                    " updated_at = ? WHERE id = ? AND lease_token = ? AND state = ?",
	                    SQL_ARGS(SQL_INT(STORE_OUTBOX_HELD), SQL_TEXT(hold_key), SQL_INT(now),
	                             SQL_INT(until), SQL_INT(now), SQL_TEXT(id),
	                             SQL_INT(lease_token), SQL_INT(STORE_OUTBOX_SENDING)));
	return rc == STORE_NOT_FOUND ? STORE_CONFLICT : rc;
}

#define HELD_ROW(F, G, T)                                                                          \
	F(T, TEXT, "m.id", id)                                                                     \
	G(T, INT64,                                                                                \
	  "(SELECT COUNT(*) FROM outbox_recipients r WHERE r.message_id = m.id AND r.state = 0)",  \
	  pending)
SQL_TABLE(held_table, HELD_ROW, struct store_outbox_held);
_Static_assert(STORE_RCPT_PENDING == 0, "HELD_ROW's literal recipient state");

int store_outbox_held_list(struct store_tx *tx, const char *user_id, const char *hold_key,
                           size_t max, struct store_outbox_held *rows_r, size_t *count_r)
{
	/* Through the held index (user_id, next_attempt_at) WHERE state = 1: spelled. */
	return sql_list(tx, "store_outbox_held_list",
	                "SELECT " SQL_COLUMNS(HELD_ROW) " FROM outbox_messages m"
	                                                " WHERE m.state = " HELD_SQL
	                                                " AND m.user_id = ? AND m.hold_key = ?"
	                                                " ORDER BY m.next_attempt_at, m.id LIMIT ?",
	                SQL_ARGS(SQL_TEXT(user_id), SQL_TEXT(hold_key), SQL_INT(max)), &held_table,
	                rows_r, max, count_r);
}

int store_outbox_unhold(struct store_tx *tx, const char *id, int64_t now)
{
	return sql_change(
	    tx, "store_outbox_unhold",
	    "UPDATE outbox_messages SET state = ?, next_attempt_at = ?,"
	    " held_seconds = held_seconds + CASE WHEN held_since > 0 AND ? > held_since"
	    " THEN ? - held_since ELSE 0 END, hold_key = '', held_since = 0,"
	    " updated_at = ? WHERE id = ? AND state = ?",
	    SQL_ARGS(SQL_INT(STORE_OUTBOX_QUEUED), SQL_INT(now), SQL_INT(now), SQL_INT(now),
	             SQL_INT(now), SQL_TEXT(id), SQL_INT(STORE_OUTBOX_HELD)));
}

/* ---- upkeep ---- */

int store_outbox_counts(struct store_tx *tx, int64_t counts_r[STORE_OUTBOX_CANCELLED + 1])
{
	static const char op[] = "store_outbox_counts";
	memset(counts_r, 0, sizeof(int64_t) * (STORE_OUTBOX_CANCELLED + 1));
	/* One query per partial index (literal states, see QUEUED_SQL), none scanning the table. */
	static const char *const queries[] = {
	    "SELECT " QUEUED_SQL ", COUNT(*) FROM outbox_messages WHERE state = " QUEUED_SQL,
	    "SELECT " HELD_SQL ", COUNT(*) FROM outbox_messages WHERE state = " HELD_SQL,
	    "SELECT " SENDING_SQL ", COUNT(*) FROM outbox_messages WHERE state = " SENDING_SQL,
	    "SELECT state, COUNT(*) FROM outbox_messages WHERE state >= " FINAL_SQL
	    " GROUP BY state",
	};
	for (size_t q = 0; q < sizeof(queries) / sizeof(queries[0]); q++) {
		if (count_states(tx, op, queries[q], NULL, counts_r, STORE_OUTBOX_CANCELLED + 1) <
		    0)
			return -1;
	}
	return 0;
}

int store_outbox_next_due(struct store_tx *tx, int64_t *when_r)
{
	*when_r = 0;
	/* MIN() of no row is NULL, read as 0. */
	int rc =
	    sql_get(tx, "store_outbox_next_due",
	            "SELECT MIN(next_attempt_at) FROM outbox_messages WHERE state = " QUEUED_SQL,
	            NULL, &sql_int64_table, when_r);
	return rc < 0 ? -1 : 0;
}

int store_outbox_purge_bodies(struct store_tx *tx, int64_t before, size_t *purged_r)
{
	static const char op[] = "store_outbox_purge_bodies";
	*purged_r = 0;
	int64_t n = sql_exec(tx, op,
	                     "DELETE FROM outbox_bodies WHERE message_id IN (SELECT id FROM"
	                     " outbox_messages WHERE state >= " FINAL_SQL " AND updated_at < ?)",
	                     SQL_ARGS(SQL_INT(before)));
	if (n < 0)
		return -1;
	*purged_r = (size_t)n;
	return 0;
}
