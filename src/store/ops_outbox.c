/* The outbox: messages stored before the API's 202, claimed by senders under fenced leases. The
 * body is the built MIME; it and the metadata are never logged. */
#include "store/store_outbox.h"
#include "store/sql.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "lib/str.h"

#include <stdlib.h>
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

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

void store_outbox_message_free(struct store_outbox_message *message)
{
	free(message->attachments_json);
	free(message->body);
	free(message->rcpts);
	message->attachments_json = NULL;
	message->body = NULL;
	message->rcpts = NULL;
	message->rcpt_count = 0;
}

/* ---- enqueue ---- */

static int find_idempotent(struct store_tx *tx, const char *op,
                           const struct store_outbox_message *m, char id_r[MT_ID_MAX])
{
	struct db_stmt *s = db_prepare(tx->db, "SELECT id FROM outbox_messages WHERE org_id = ? AND"
	                                       " user_id = ? AND idempotency_key = ? AND"
	                                       " created_at > ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, m->org_id);
	db_bind_text(s, 2, m->user_id);
	db_bind_text(s, 3, m->idempotency_key);
	db_bind_int64(s, 4, now_s() - IDEMPOTENCY_WINDOW_S);
	int rc = db_step(s);
	if (rc == DB_ROW)
		store_col_copy(s, 0, id_r, MT_ID_MAX);
	db_finish(s);
	if (rc == DB_ROW)
		return STORE_CONFLICT;
	return rc == DB_DONE ? 0 : store_fail(tx, op);
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
	struct db_stmt *s = db_prepare(
	    tx->db, "INSERT INTO outbox_messages (id, org_id, user_id, campaign_id, state, route,"
	            " idempotency_key, mail_from, from_address, from_name, subject, message_id,"
	            " mailtrail_id, snippet, attachments_json, body_len, next_attempt_at,"
	            " created_at, updated_at)"
	            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, m->id);
	db_bind_text(s, 2, m->org_id);
	db_bind_text(s, 3, m->user_id);
	db_bind_text(s, 4, m->campaign_id);
	db_bind_int64(s, 5, m->state);
	db_bind_text(s, 6, m->route);
	db_bind_text(s, 7, m->idempotency_key);
	db_bind_text(s, 8, m->mail_from);
	db_bind_text(s, 9, m->from.address);
	db_bind_text(s, 10, m->from.name);
	db_bind_text(s, 11, m->subject);
	db_bind_text(s, 12, m->message_id);
	db_bind_text(s, 13, m->mailtrail_id);
	db_bind_text(s, 14, m->snippet);
	db_bind_text(s, 15, m->attachments_json != NULL ? m->attachments_json : "[]");
	db_bind_int64(s, 16, (int64_t)m->body_len);
	db_bind_int64(s, 17, m->next_attempt_at);
	db_bind_int64(s, 18, now);
	db_bind_int64(s, 19, now);
	int rc = db_step(s);
	if (rc != DB_DONE)
		return rc == DB_UNIQUE ? (db_finish(s), STORE_CONFLICT)
		                       : store_fail_stmt(tx, op, s);
	db_finish(s);
	s = db_prepare(tx->db, "INSERT INTO outbox_bodies (message_id, body) VALUES (?, ?)");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, m->id);
	db_bind_blob(s, 2, m->body, m->body_len);
	if (db_step(s) != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	for (size_t i = 0; i < m->rcpt_count; i++) {
		const struct store_outbox_rcpt *r = &m->rcpts[i];
		s = db_prepare(tx->db,
		               "INSERT INTO outbox_recipients (message_id, pos, address, name,"
		               " kind, state, reply) VALUES (?, ?, ?, ?, ?, ?, '')");
		if (s == NULL)
			return store_fail(tx, op);
		db_bind_text(s, 1, m->id);
		db_bind_int64(s, 2, (int64_t)i);
		db_bind_text(s, 3, r->address);
		db_bind_text(s, 4, r->name);
		db_bind_int64(s, 5, r->kind);
		db_bind_int64(s, 6, STORE_RCPT_PENDING);
		if (db_step(s) != DB_DONE)
			return store_fail_stmt(tx, op, s);
		db_finish(s);
	}
	return 0;
}

/* ---- reading ---- */

#define MESSAGE_COLUMNS                                                                            \
	"id, org_id, user_id, campaign_id, state, route, idempotency_key, mail_from,"              \
	" from_address, from_name, subject, message_id, mailtrail_id, snippet, attachments_json,"  \
	" body_len, attempts, first_attempt_at, next_attempt_at, held_seconds, last_error,"        \
	" last_class, lease_owner, lease_token, lease_expires, created_at, updated_at, sent_at"
#define BODY_COLUMN 28

static int read_message(struct db_stmt *s, struct store_outbox_message *m, bool with_body)
{
	memset(m, 0, sizeof(*m));
	store_col_copy(s, 0, m->id, sizeof(m->id));
	store_col_copy(s, 1, m->org_id, sizeof(m->org_id));
	store_col_copy(s, 2, m->user_id, sizeof(m->user_id));
	store_col_copy(s, 3, m->campaign_id, sizeof(m->campaign_id));
	m->state = (enum store_outbox_state)db_column_int64(s, 4);
	store_col_copy(s, 5, m->route, sizeof(m->route));
	store_col_copy(s, 6, m->idempotency_key, sizeof(m->idempotency_key));
	store_col_copy(s, 7, m->mail_from, sizeof(m->mail_from));
	store_col_copy(s, 8, m->from.address, sizeof(m->from.address));
	store_col_copy(s, 9, m->from.name, sizeof(m->from.name));
	store_col_copy(s, 10, m->subject, sizeof(m->subject));
	store_col_copy(s, 11, m->message_id, sizeof(m->message_id));
	store_col_copy(s, 12, m->mailtrail_id, sizeof(m->mailtrail_id));
	store_col_copy(s, 13, m->snippet, sizeof(m->snippet));
	m->attachments_json = strdup(db_column_text(s, 14));
	m->body_len = (size_t)db_column_int64(s, 15);
	m->attempts = (int)db_column_int64(s, 16);
	m->first_attempt_at = db_column_int64(s, 17);
	m->next_attempt_at = db_column_int64(s, 18);
	m->held_seconds = db_column_int64(s, 19);
	store_col_copy(s, 20, m->last_error, sizeof(m->last_error));
	store_col_copy(s, 21, m->last_class, sizeof(m->last_class));
	store_col_copy(s, 22, m->lease_owner, sizeof(m->lease_owner));
	m->lease_token = db_column_int64(s, 23);
	m->lease_expires = db_column_int64(s, 24);
	m->created_at = db_column_int64(s, 25);
	m->updated_at = db_column_int64(s, 26);
	m->sent_at = db_column_int64(s, 27);
	if (m->attachments_json == NULL)
		return -1;
	if (with_body && !db_column_is_null(s, BODY_COLUMN)) {
		size_t len;
		const void *body = db_column_blob(s, BODY_COLUMN, &len);
		m->body = malloc(len + 1);
		if (m->body == NULL)
			return -1;
		if (len > 0)
			memcpy(m->body, body, len);
		m->body[len] = '\0';
		m->body_len = len;
	}
	return 0;
}

/* The recipients of a message, all of them or only those still pending. */
static int read_rcpts(struct store_tx *tx, const char *op, struct store_outbox_message *m,
                      bool pending_only)
{
	struct db_stmt *s = db_prepare(
	    tx->db, pending_only ? "SELECT address, name, kind, state, reply FROM outbox_recipients"
	                           " WHERE message_id = ? AND state = 0 ORDER BY pos"
	                         : "SELECT address, name, kind, state, reply FROM outbox_recipients"
	                           " WHERE message_id = ? ORDER BY pos");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, m->id);
	size_t cap = 8;
	m->rcpts = calloc(cap, sizeof(*m->rcpts));
	m->rcpt_count = 0;
	int rc;
	while (m->rcpts != NULL && (rc = db_step(s)) == DB_ROW) {
		if (m->rcpt_count == cap) {
			cap *= 2;
			struct store_outbox_rcpt *grown = realloc(m->rcpts, cap * sizeof(*grown));
			if (grown == NULL) {
				db_finish(s);
				return -1;
			}
			m->rcpts = grown;
		}
		struct store_outbox_rcpt *r = &m->rcpts[m->rcpt_count++];
		memset(r, 0, sizeof(*r));
		store_col_copy(s, 0, r->address, sizeof(r->address));
		store_col_copy(s, 1, r->name, sizeof(r->name));
		r->kind = (enum store_rcpt_kind)db_column_int64(s, 2);
		r->state = (enum store_rcpt_state)db_column_int64(s, 3);
		store_col_copy(s, 4, r->reply, sizeof(r->reply));
	}
	if (m->rcpts == NULL) {
		db_finish(s);
		return -1;
	}
	if (rc != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return 0;
}

int store_outbox_get(struct store_tx *tx, const char *org_id, const char *user_id, const char *id,
                     struct store_outbox_message *m)
{
	static const char op[] = "store_outbox_get";
	struct db_stmt *s = db_prepare(tx->db, "SELECT " MESSAGE_COLUMNS " FROM outbox_messages"
	                                       " WHERE id = ? AND org_id = ? AND user_id = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, id);
	db_bind_text(s, 2, org_id);
	db_bind_text(s, 3, user_id);
	int rc = db_step(s);
	if (rc != DB_ROW) {
		db_finish(s);
		memset(m, 0, sizeof(*m));
		return rc == DB_DONE ? STORE_NOT_FOUND : store_fail(tx, op);
	}
	rc = read_message(s, m, false);
	db_finish(s);
	if (rc < 0 || read_rcpts(tx, op, m, false) < 0) {
		store_outbox_message_free(m);
		return -1;
	}
	return 0;
}

int store_outbox_cancel(struct store_tx *tx, const char *org_id, const char *user_id,
                        const char *id)
{
	static const char op[] = "store_outbox_cancel";
	if (store_need_write(tx, op) < 0)
		return -1;
	struct db_stmt *s =
	    db_prepare(tx->db, "UPDATE outbox_messages SET state = ?, updated_at = ?"
	                       " WHERE id = ? AND org_id = ? AND user_id = ? AND"
	                       " state IN (?, ?)");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_int64(s, 1, STORE_OUTBOX_CANCELLED);
	db_bind_int64(s, 2, now_s());
	db_bind_text(s, 3, id);
	db_bind_text(s, 4, org_id);
	db_bind_text(s, 5, user_id);
	db_bind_int64(s, 6, STORE_OUTBOX_QUEUED);
	db_bind_int64(s, 7, STORE_OUTBOX_HELD);
	if (db_step(s) != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	if (db_changes(tx->db) == 1)
		return 0;
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
	    "SELECT id FROM outbox_messages WHERE state = 0 AND next_attempt_at <= ?"
	    " ORDER BY next_attempt_at LIMIT ?",
	    "SELECT id FROM outbox_messages WHERE state = 2 AND lease_expires < ? LIMIT ?",
	};
	*count = 0;
	for (size_t q = 0; q < 2 && *count < max; q++) {
		struct db_stmt *s = db_prepare(tx->db, queries[q]);
		if (s == NULL)
			return store_fail(tx, op);
		db_bind_int64(s, 1, now);
		db_bind_int64(s, 2, (int64_t)(max - *count));
		int rc;
		while ((rc = db_step(s)) == DB_ROW && *count < max)
			store_col_copy(s, 0, ids[(*count)++], MT_ID_MAX);
		if (rc != DB_ROW && rc != DB_DONE)
			return store_fail_stmt(tx, op, s);
		db_finish(s);
	}
	return 0;
}

int store_outbox_claim(struct store_tx *tx, const char *owner, int64_t now, int64_t lease_s,
                       size_t max, struct store_outbox_message *messages_r, size_t *count_r)
{
	static const char op[] = "store_outbox_claim";
	*count_r = 0;
	if (store_need_write(tx, op) < 0)
		return -1;
	char(*ids)[MT_ID_MAX] = calloc(max ? max : 1, sizeof(*ids));
	if (ids == NULL)
		return -1;
	size_t due = 0;
	int rc = due_ids(tx, op, now, max, ids, &due);
	for (size_t i = 0; rc == 0 && i < due; i++) {
		struct db_stmt *s = db_prepare(
		    tx->db, "UPDATE outbox_messages SET state = 2, lease_owner = ?,"
		            " lease_token = lease_token + 1, lease_expires = ?, updated_at = ?"
		            " WHERE id = ? AND (state = 0 OR (state = 2 AND lease_expires < ?))");
		if (s == NULL) {
			rc = store_fail(tx, op);
			break;
		}
		db_bind_text(s, 1, owner);
		db_bind_int64(s, 2, now + lease_s);
		db_bind_int64(s, 3, now);
		db_bind_text(s, 4, ids[i]);
		db_bind_int64(s, 5, now);
		if (db_step(s) != DB_DONE) {
			rc = store_fail_stmt(tx, op, s);
			break;
		}
		db_finish(s);
		if (db_changes(tx->db) != 1)
			continue;
		s = db_prepare(tx->db, "SELECT " MESSAGE_COLUMNS ", (SELECT body FROM outbox_bodies"
		                       " WHERE message_id = outbox_messages.id)"
		                       " FROM outbox_messages WHERE id = ?");
		if (s == NULL) {
			rc = store_fail(tx, op);
			break;
		}
		db_bind_text(s, 1, ids[i]);
		if (db_step(s) != DB_ROW) {
			rc = store_fail_stmt(tx, op, s);
			break;
		}
		struct store_outbox_message *m = &messages_r[*count_r];
		int read = read_message(s, m, true);
		db_finish(s);
		if (read < 0 || read_rcpts(tx, op, m, true) < 0) {
			store_outbox_message_free(m);
			rc = -1;
			break;
		}
		(*count_r)++;
	}
	free(ids);
	if (rc != 0) {
		for (size_t i = 0; i < *count_r; i++)
			store_outbox_message_free(&messages_r[i]);
		*count_r = 0;
	}
	return rc;
}

int store_outbox_renew(struct store_tx *tx, const char *owner, int64_t until)
{
	static const char op[] = "store_outbox_renew";
	if (store_need_write(tx, op) < 0)
		return -1;
	struct db_stmt *s = db_prepare(tx->db, "UPDATE outbox_messages SET lease_expires = ?"
	                                       " WHERE lease_owner = ? AND state = 2");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_int64(s, 1, until);
	db_bind_text(s, 2, owner);
	if (db_step(s) != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return 0;
}

int store_outbox_release_owner(struct store_tx *tx, const char *owner, size_t *count_r)
{
	static const char op[] = "store_outbox_release_owner";
	*count_r = 0;
	if (store_need_write(tx, op) < 0)
		return -1;
	struct db_stmt *s =
	    db_prepare(tx->db, "UPDATE outbox_messages SET state = 0,"
	                       " lease_owner = '', lease_expires = 0, updated_at = ?"
	                       " WHERE lease_owner = ? AND state = 2");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_int64(s, 1, now_s());
	db_bind_text(s, 2, owner);
	if (db_step(s) != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	*count_r = (size_t)db_changes(tx->db);
	return 0;
}

/* ---- results ---- */

static int update_rcpt(struct store_tx *tx, const char *op, const char *id,
                       const struct store_outbox_rcpt *r)
{
	struct db_stmt *s =
	    db_prepare(tx->db, "UPDATE outbox_recipients SET state = ?, reply = ?"
	                       " WHERE message_id = ? AND address = ? AND state = 0");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_int64(s, 1, r->state);
	db_bind_text(s, 2, r->reply);
	db_bind_text(s, 3, id);
	db_bind_text(s, 4, r->address);
	if (db_step(s) != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return 0;
}

/* The final state from every recipient's: all sent, some sent, none. */
static int derive_state(struct store_tx *tx, const char *op, const char *id,
                        enum store_outbox_state *state_r)
{
	struct db_stmt *s = db_prepare(tx->db, "SELECT state, COUNT(*) FROM outbox_recipients"
	                                       " WHERE message_id = ? GROUP BY state");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, id);
	int64_t counts[3] = {0, 0, 0};
	int rc;
	while ((rc = db_step(s)) == DB_ROW) {
		int64_t state = db_column_int64(s, 0);
		if (state >= 0 && state < 3)
			counts[state] = db_column_int64(s, 1);
	}
	if (rc != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	if (counts[STORE_RCPT_PENDING] > 0)
		*state_r = STORE_OUTBOX_QUEUED;
	else if (counts[STORE_RCPT_FAILED] == 0)
		*state_r = STORE_OUTBOX_SENT;
	else
		*state_r = counts[STORE_RCPT_SENT] > 0 ? STORE_OUTBOX_PARTIAL : STORE_OUTBOX_FAILED;
	return 0;
}

int store_outbox_finish(struct store_tx *tx, const struct store_outbox_result *r)
{
	static const char op[] = "store_outbox_finish";
	if (store_need_write(tx, op) < 0)
		return -1;
	/* Fencing: only the lease holder of this attempt may record it. */
	struct db_stmt *s = db_prepare(tx->db, "SELECT lease_token, state FROM outbox_messages"
	                                       " WHERE id = ?");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, r->id);
	int rc = db_step(s);
	if (rc != DB_ROW) {
		db_finish(s);
		return rc == DB_DONE ? STORE_NOT_FOUND : store_fail(tx, op);
	}
	bool ours = db_column_int64(s, 0) == r->lease_token &&
	            db_column_int64(s, 1) == STORE_OUTBOX_SENDING;
	db_finish(s);
	if (!ours)
		return STORE_CONFLICT;
	for (size_t i = 0; i < r->rcpt_count; i++)
		if (r->rcpts[i].state != STORE_RCPT_PENDING &&
		    update_rcpt(tx, op, r->id, &r->rcpts[i]) < 0)
			return -1;
	/* Pending recipients keep their last reply too, for GET /v1/messages. */
	for (size_t i = 0; i < r->rcpt_count; i++) {
		if (r->rcpts[i].state != STORE_RCPT_PENDING)
			continue;
		s = db_prepare(tx->db, "UPDATE outbox_recipients SET reply = ? WHERE message_id = ?"
		                       " AND address = ? AND state = 0");
		if (s == NULL)
			return store_fail(tx, op);
		db_bind_text(s, 1, r->rcpts[i].reply);
		db_bind_text(s, 2, r->id);
		db_bind_text(s, 3, r->rcpts[i].address);
		if (db_step(s) != DB_DONE)
			return store_fail_stmt(tx, op, s);
		db_finish(s);
	}
	enum store_outbox_state state = r->state;
	if (state != STORE_OUTBOX_QUEUED && derive_state(tx, op, r->id, &state) < 0)
		return -1;
	s = db_prepare(tx->db, "UPDATE outbox_messages SET state = ?, attempts = attempts + 1,"
	                       " first_attempt_at = CASE WHEN first_attempt_at = 0 THEN ? ELSE"
	                       " first_attempt_at END, next_attempt_at = ?, last_error = ?,"
	                       " last_class = ?, lease_owner = '', lease_expires = 0,"
	                       " sent_at = CASE WHEN ? > sent_at THEN ? ELSE sent_at END,"
	                       " updated_at = ? WHERE id = ?");
	if (s == NULL)
		return store_fail(tx, op);
	int64_t now = now_s();
	db_bind_int64(s, 1, state);
	db_bind_int64(s, 2, r->first_attempt_at ? r->first_attempt_at : now);
	db_bind_int64(s, 3, state == STORE_OUTBOX_QUEUED ? r->next_attempt_at : 0);
	db_bind_text(s, 4, r->last_error != NULL ? r->last_error : "");
	db_bind_text(s, 5, r->last_class != NULL ? r->last_class : "");
	db_bind_int64(s, 6, r->sent_at);
	db_bind_int64(s, 7, r->sent_at);
	db_bind_int64(s, 8, now);
	db_bind_text(s, 9, r->id);
	if (db_step(s) != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return 0;
}

/* ---- usage ---- */

int store_outbox_sent_since(struct store_tx *tx, const char *org_id, const char *user_id,
                            const char *route, int64_t since, int64_t *count_r, int64_t *oldest_r)
{
	static const char op[] = "store_outbox_sent_since";
	*count_r = 0;
	*oldest_r = 0;
	struct db_stmt *s = db_prepare(
	    tx->db, "SELECT COUNT(*), MIN(m.sent_at) FROM outbox_messages m"
	            " JOIN outbox_recipients r ON r.message_id = m.id"
	            " WHERE m.org_id = ? AND m.user_id = ? AND m.route = ? AND m.sent_at >= ?"
	            " AND r.state = 1");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_text(s, 1, org_id);
	db_bind_text(s, 2, user_id);
	db_bind_text(s, 3, route);
	db_bind_int64(s, 4, since);
	int rc = db_step(s);
	if (rc == DB_ROW) {
		*count_r = db_column_int64(s, 0);
		*oldest_r = db_column_is_null(s, 1) ? 0 : db_column_int64(s, 1);
	}
	if (rc != DB_ROW && rc != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return 0;
}

/* ---- upkeep ---- */

int store_outbox_counts(struct store_tx *tx, int64_t counts_r[STORE_OUTBOX_CANCELLED + 1])
{
	static const char op[] = "store_outbox_counts";
	memset(counts_r, 0, sizeof(int64_t) * (STORE_OUTBOX_CANCELLED + 1));
	/* One query per partial index (literal states, see migration 5), none scanning the table.
	 */
	static const char *const queries[] = {
	    "SELECT 0, COUNT(*) FROM outbox_messages WHERE state = 0",
	    "SELECT 1, COUNT(*) FROM outbox_messages WHERE state = 1",
	    "SELECT 2, COUNT(*) FROM outbox_messages WHERE state = 2",
	    "SELECT state, COUNT(*) FROM outbox_messages WHERE state >= 3 GROUP BY state",
	};
	for (size_t q = 0; q < sizeof(queries) / sizeof(queries[0]); q++) {
		struct db_stmt *s = db_prepare(tx->db, queries[q]);
		if (s == NULL)
			return store_fail(tx, op);
		int rc;
		while ((rc = db_step(s)) == DB_ROW) {
			int64_t state = db_column_int64(s, 0);
			if (state >= 0 && state <= STORE_OUTBOX_CANCELLED)
				counts_r[state] = db_column_int64(s, 1);
		}
		if (rc != DB_DONE)
			return store_fail_stmt(tx, op, s);
		db_finish(s);
	}
	return 0;
}

int store_outbox_next_due(struct store_tx *tx, int64_t *when_r)
{
	static const char op[] = "store_outbox_next_due";
	*when_r = 0;
	struct db_stmt *s = db_prepare(tx->db, "SELECT MIN(next_attempt_at) FROM outbox_messages"
	                                       " WHERE state = 0");
	if (s == NULL)
		return store_fail(tx, op);
	int rc = db_step(s);
	if (rc == DB_ROW && !db_column_is_null(s, 0))
		*when_r = db_column_int64(s, 0);
	if (rc != DB_ROW && rc != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	return 0;
}

int store_outbox_purge_bodies(struct store_tx *tx, int64_t before, size_t *purged_r)
{
	static const char op[] = "store_outbox_purge_bodies";
	*purged_r = 0;
	if (store_need_write(tx, op) < 0)
		return -1;
	struct db_stmt *s = db_prepare(
	    tx->db, "DELETE FROM outbox_bodies WHERE message_id IN (SELECT id FROM outbox_messages"
	            " WHERE state >= 3 AND updated_at < ?)");
	if (s == NULL)
		return store_fail(tx, op);
	db_bind_int64(s, 1, before);
	if (db_step(s) != DB_DONE)
		return store_fail_stmt(tx, op, s);
	db_finish(s);
	*purged_r = (size_t)db_changes(tx->db);
	return 0;
}
