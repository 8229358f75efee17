/* Webhooks: subscriptions, their event rows (numbered by the feed counter), leases, cursors and
 * the delivery log. */
#include "store/store_webhook.h"
#include "store/sql.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "lib/str.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WEBHOOK_ROW(F, G, T)                                                                       \
	F(T, TEXT, "id", id)                                                                       \
	G(T, TEXT, "org_id", org_id)                                                               \
	G(T, TEXT, "url", url)                                                                     \
	G(T, TEXT, "events", events)                                                               \
	G(T, BLOB, "sealed_secret", sealed_secret, sealed_secret_len)                              \
	G(T, BOOL, "active", active)                                                               \
	G(T, INT64, "cursor", cursor)                                                              \
	G(T, INT, "attempts", attempts)                                                            \
	G(T, INT64, "next_attempt_at", next_attempt_at)                                            \
	G(T, INT, "last_status", last_status)                                                      \
	G(T, TEXT, "last_error", last_error)                                                       \
	G(T, TEXT, "lease_owner", lease_owner)                                                     \
	G(T, INT64, "lease_expires", lease_expires)                                                \
	G(T, INT64, "created_at", created_at)
SQL_TABLE(webhook_table, WEBHOOK_ROW, struct store_webhook);

int store_webhook_create(struct store_tx *tx, struct store_webhook *w)
{
	static const char op[] = "store_webhook_create";
	if (w->sealed_secret_len == 0 || w->sealed_secret_len > sizeof(w->sealed_secret))
		return store_invalid(op, "sealed secret length");
	if (store_need_write(tx, op) < 0)
		return -1;
	if (w->id[0] == '\0')
		store_new_id("whk", w->id);
	w->created_at = mt_wall_s();
	int64_t count = 0;
	if (sql_get(tx, op, "SELECT COUNT(*) FROM webhooks WHERE org_id = ?",
	            SQL_ARGS(SQL_TEXT(w->org_id)), &sql_int64_table, &count) < 0)
		return -1;
	if (count >= MT_WEBHOOKS_PER_ORG)
		return STORE_CONFLICT;
	if (store_feed_last(tx, op, w->org_id, &w->cursor) < 0)
		return -1;
	w->active = true;
	w->attempts = 0;
	w->next_attempt_at = 0;
	w->last_status = 0;
	w->last_error[0] = '\0';
	w->lease_owner[0] = '\0';
	w->lease_expires = 0;
	return sql_insert(
	    tx, op,
	    "INSERT INTO webhooks (id, org_id, url, events, sealed_secret, active, cursor, "
	    "attempts,"
	    " next_attempt_at, last_status, last_error, lease_owner, lease_expires, created_at)"
	    " VALUES (?, ?, ?, ?, ?, 1, ?, 0, 0, 0, '', '', 0, ?)",
	    SQL_ARGS(SQL_TEXT(w->id), SQL_TEXT(w->org_id), SQL_TEXT(w->url), SQL_TEXT(w->events),
	             SQL_BLOB(w->sealed_secret, w->sealed_secret_len), SQL_INT(w->cursor),
	             SQL_INT(w->created_at)));
}

int store_webhook_get(struct store_tx *tx, const char *org_id, const char *id,
                      struct store_webhook *w)
{
	return sql_get(
	    tx, "store_webhook_get",
	    "SELECT " SQL_COLUMNS(WEBHOOK_ROW) " FROM webhooks WHERE id = ? AND org_id = ?",
	    SQL_ARGS(SQL_TEXT(id), SQL_TEXT(org_id)), &webhook_table, w);
}

int store_webhook_list(struct store_tx *tx, const char *org_id, struct store_webhook *rows,
                       size_t *count_r)
{
	return sql_list(tx, "store_webhook_list",
	                "SELECT " SQL_COLUMNS(WEBHOOK_ROW) " FROM webhooks WHERE org_id = ?"
	                                                   " ORDER BY created_at, id",
	                SQL_ARGS(SQL_TEXT(org_id)), &webhook_table, rows, MT_WEBHOOKS_PER_ORG,
	                count_r);
}

int store_webhook_delete(struct store_tx *tx, const char *org_id, const char *id)
{
	static const char op[] = "store_webhook_delete";
	if (store_need_write(tx, op) < 0)
		return -1;
	int64_t n = sql_exec(tx, op, "DELETE FROM webhooks WHERE id = ? AND org_id = ?",
	                     SQL_ARGS(SQL_TEXT(id), SQL_TEXT(org_id)));
	if (n < 0)
		return -1;
	if (n == 0)
		return STORE_NOT_FOUND;
	return sql_exec(tx, op, "DELETE FROM webhook_deliveries WHERE webhook_id = ?",
	                SQL_ARGS(SQL_TEXT(id))) < 0
	           ? -1
	           : 0;
}

int store_webhook_replay(struct store_tx *tx, const char *org_id, const char *id, int64_t from_seq)
{
	static const char op[] = "store_webhook_replay";
	if (store_need_write(tx, op) < 0)
		return -1;
	int64_t n;
	if (from_seq > 0) {
		int64_t last = 0;
		if (store_feed_last(tx, op, org_id, &last) < 0)
			return -1;
		if (from_seq > last)
			return STORE_INVALID;
		/* The lease goes too: a run in progress (any node's) must not write its cursor
		 * over this one; its next record finds the lease gone and it stops. */
		n = sql_exec(tx, op,
		             "UPDATE webhooks SET cursor = ?, attempts = 0, next_attempt_at = 0,"
		             " lease_owner = '', lease_expires = 0 WHERE id = ? AND org_id = ?",
		             SQL_ARGS(SQL_INT(from_seq - 1), SQL_TEXT(id), SQL_TEXT(org_id)));
	} else {
		n = sql_exec(tx, op,
		             "UPDATE webhooks SET attempts = 0, next_attempt_at = 0"
		             " WHERE id = ? AND org_id = ?",
		             SQL_ARGS(SQL_TEXT(id), SQL_TEXT(org_id)));
	}
	return n < 0 ? -1 : n == 0 ? STORE_NOT_FOUND : 0;
}

/* ---- events ---- */

int store_webhook_event_add(struct store_tx *tx, const char *org_id, const char *type,
                            const char *object_id, const char *payload)
{
	static const char op[] = "store_webhook_event_add";
	if (store_need_write(tx, op) < 0)
		return -1;
	/* Only while someone listens: an org without webhooks pays one index probe. */
	int64_t listening = 0;
	int rc = sql_get(tx, op, "SELECT 1 FROM webhooks WHERE org_id = ? AND active = 1 LIMIT 1",
	                 SQL_ARGS(SQL_TEXT(org_id)), &sql_int64_table, &listening);
	if (rc < 0)
		return -1;
	if (rc == STORE_NOT_FOUND)
		return 0;
	int64_t seq = 0;
	if (store_feed_reserve(tx, op, org_id, 1, &seq) < 0)
		return -1;
	return sql_insert(tx, op,
	                  "INSERT INTO webhook_events (org_id, seq, type, object_id, payload,"
	                  " created_at) VALUES (?, ?, ?, ?, ?, ?)",
	                  SQL_ARGS(SQL_TEXT(org_id), SQL_INT(seq), SQL_TEXT(type),
	                           SQL_TEXT(object_id), SQL_TEXT(payload), SQL_INT(mt_wall_s())));
}

struct message_row {
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	int state;
	char route[16];
	char *subject;
	char *last_error;
	char *campaign_id;
};
#define MESSAGE_ROW(F, G, T)                                                                       \
	F(T, TEXT, "org_id", org_id)                                                               \
	G(T, TEXT, "user_id", user_id)                                                             \
	G(T, INT, "state", state)                                                                  \
	G(T, TEXT, "route", route)                                                                 \
	G(T, TEXT_DUP, "subject", subject)                                                         \
	G(T, TEXT_DUP, "last_error", last_error)                                                   \
	G(T, TEXT_DUP, "campaign_id", campaign_id)
SQL_TABLE(message_table, MESSAGE_ROW, struct message_row);

int store_webhook_message_event(struct store_tx *tx, const char *message_id)
{
	static const char op[] = "store_webhook_message_event";
	/* enum store_outbox_state's final states, by number (store_outbox.h). */
	static const char *const names[] = {"queued",  "held",   "sending",  "sent",
	                                    "partial", "failed", "cancelled"};
	struct message_row m = {0};
	/* One statement, the listener check in it: when nobody listens the outbox's hot path pays
	 * a lookup of a row it just wrote and one probe of the webhooks index. */
	int rc =
	    sql_get(tx, op,
	            "SELECT " SQL_COLUMNS(
	                MESSAGE_ROW) " FROM outbox_messages WHERE id = ?"
	                             " AND EXISTS (SELECT 1 FROM webhooks w"
	                             " WHERE w.org_id = outbox_messages.org_id AND w.active = 1)",
	            SQL_ARGS(SQL_TEXT(message_id)), &message_table, &m);
	if (rc == 0 && m.state >= 3 && m.state <= 6) {
		char type[MT_WEBHOOK_EVENT_NAME_MAX + 1];
		snprintf(type, sizeof(type), "message.%s", names[m.state]);
		json_t *data = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s*,s:s*}", "id", message_id,
		                         "user_id", m.user_id, "state", names[m.state], "subject",
		                         m.subject, "route", m.route, "campaign_id",
		                         m.campaign_id[0] != '\0' ? m.campaign_id : NULL, "error",
		                         m.last_error[0] != '\0' ? m.last_error : NULL);
		char *text = data != NULL ? json_dumps(data, JSON_COMPACT) : NULL;
		json_decref(data);
		rc = text != NULL ? store_webhook_event_add(tx, m.org_id, type, message_id, text)
		                  : store_invalid(op, "payload");
		free(text);
	} else if (rc == STORE_NOT_FOUND) {
		rc = 0;
	}
	free(m.subject);
	free(m.last_error);
	free(m.campaign_id);
	return rc;
}

int store_webhook_account_event(struct store_tx *tx, const char *org_id, const char *user_id,
                                const char *protocol, bool connected, const char *error)
{
	json_t *data = json_pack("{s:s,s:s,s:s,s:s*}", "user_id", user_id, "protocol", protocol,
	                         "state", connected ? "connected" : "disconnected", "error",
	                         error != NULL && error[0] != '\0' ? error : NULL);
	char *text = data != NULL ? json_dumps(data, JSON_COMPACT) : NULL;
	json_decref(data);
	if (text == NULL)
		return store_invalid("store_webhook_account_event", "payload");
	int rc = store_webhook_event_add(
	    tx, org_id, connected ? "account.connected" : "account.disconnected", user_id, text);
	free(text);
	return rc;
}

/* ---- delivery ---- */

int store_webhook_due(struct store_tx *tx, const char *owner, int64_t now_ms, bool *due_r)
{
	int64_t one = 0;
	int rc = sql_get(tx, "store_webhook_due",
	                 "SELECT 1 FROM webhooks WHERE active = 1 AND next_attempt_at <= ?1"
	                 " AND (lease_owner = '' OR lease_owner = ?2 OR lease_expires < ?1)"
	                 " AND cursor < (SELECT f.value FROM feed_counter f"
	                 " WHERE f.org_id = webhooks.org_id) LIMIT 1",
	                 SQL_ARGS(SQL_INT(now_ms), SQL_TEXT(owner)), &sql_int64_table, &one);
	*due_r = rc == 0;
	return rc == STORE_NOT_FOUND ? 0 : rc;
}

int store_webhook_claim(struct store_tx *tx, const char *owner, int64_t now_ms, int64_t lease_ms,
                        struct store_webhook *rows, size_t max, size_t *count_r)
{
	static const char op[] = "store_webhook_claim";
	*count_r = 0;
	if (store_need_write(tx, op) < 0)
		return -1;
	/* Something to deliver: the cursor is behind the org's feed counter. On PostgreSQL the
	 * UPDATE's row locks make two nodes' claims disjoint; the lease fences what each does
	 * after. */
	if (sql_exec(tx, op,
	             "UPDATE webhooks SET lease_owner = ?1, lease_expires = ?2"
	             " WHERE active = 1 AND next_attempt_at <= ?3"
	             " AND (lease_owner = '' OR lease_owner = ?1 OR lease_expires < ?3)"
	             " AND cursor < (SELECT f.value FROM feed_counter f"
	             " WHERE f.org_id = webhooks.org_id)",
	             SQL_ARGS(SQL_TEXT(owner), SQL_INT(now_ms + lease_ms), SQL_INT(now_ms))) < 0)
		return -1;
	return sql_list(tx, op,
	                "SELECT " SQL_COLUMNS(WEBHOOK_ROW) " FROM webhooks"
	                                                   " WHERE lease_owner = ? AND active = 1"
	                                                   " AND lease_expires = ? LIMIT ?",
	                SQL_ARGS(SQL_TEXT(owner), SQL_INT(now_ms + lease_ms), SQL_INT(max)),
	                &webhook_table, rows, max, count_r);
}

#define EVENT_ROW(F, G, T)                                                                         \
	F(T, INT64, "seq", seq)                                                                    \
	G(T, TEXT, "type", type)                                                                   \
	G(T, TEXT, "object_id", object_id)                                                         \
	G(T, TEXT_DUP, "payload", payload)                                                         \
	G(T, INT64, "created_at", created_at)
SQL_TABLE(event_table, EVENT_ROW, struct store_webhook_event);

void store_webhook_pending_free(struct store_webhook_pending *p)
{
	store_activity_list_free(&p->activities);
	for (size_t i = 0; i < p->event_count; i++)
		free(p->events[i].payload);
	free(p->events);
	p->events = NULL;
	p->event_count = 0;
}

int store_webhook_pending(struct store_tx *tx, const char *org_id, int64_t cursor, size_t limit,
                          struct store_webhook_pending *p)
{
	static const char op[] = "store_webhook_pending";
	memset(p, 0, sizeof(*p));
	/* The counter first: a position it has handed out is, in this snapshot, either visible
	 * below or a gap for good. */
	int rc = store_feed_last(tx, op, org_id, &p->head);
	if (rc != 0)
		return rc;
	rc = store_activity_feed(tx, org_id, cursor, limit, &p->activities);
	if (rc != 0)
		return rc;
	void *items = NULL;
	size_t count = 0;
	rc = store_feed_rows(
	    tx, op, STORE_FEED_SQL("SELECT " SQL_COLUMNS(EVENT_ROW) " FROM webhook_events"), org_id,
	    cursor, limit, &event_table, &items, &count);
	p->events = items;
	p->event_count = count;
	if (rc != 0) {
		store_webhook_pending_free(p);
		return rc;
	}
	p->complete = p->activities.count < limit && count < limit;
	return 0;
}

int store_webhook_record(struct store_tx *tx, const struct store_webhook_result *r)
{
	static const char op[] = "store_webhook_record";
	if (store_need_write(tx, op) < 0)
		return -1;
	int64_t n = sql_exec(
	    tx, op,
	    "UPDATE webhooks SET cursor = ?, attempts = ?, next_attempt_at = ?, last_status = ?,"
	    " last_error = ?, lease_owner = ?, lease_expires = ? WHERE id = ? AND lease_owner = ?",
	    SQL_ARGS(SQL_INT(r->cursor), SQL_INT(r->attempts), SQL_INT(r->next_attempt_at),
	             SQL_INT(r->last_status), SQL_TEXT(r->last_error != NULL ? r->last_error : ""),
	             SQL_TEXT(r->lease_expires > 0 ? r->owner : ""), SQL_INT(r->lease_expires),
	             SQL_TEXT(r->webhook_id), SQL_TEXT(r->owner)));
	if (n < 0)
		return -1;
	if (n == 0)
		return STORE_CONFLICT;
	if (r->event_id == NULL)
		return 0;
	char id[MT_ID_MAX];
	store_new_ordered_id("whd", id);
	return sql_insert(
	    tx, op,
	    "INSERT INTO webhook_deliveries (id, webhook_id, event_id, type, attempt, status,"
	    " outcome, error, duration_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
	    SQL_ARGS(SQL_TEXT(id), SQL_TEXT(r->webhook_id), SQL_TEXT(r->event_id),
	             SQL_TEXT(r->type != NULL ? r->type : ""),
	             SQL_INT(r->attempt > 0 ? r->attempt : 1), SQL_INT(r->last_status),
	             SQL_TEXT(r->outcome != NULL ? r->outcome : ""),
	             SQL_TEXT(r->last_error != NULL ? r->last_error : ""), SQL_INT(r->duration_ms),
	             SQL_INT(mt_wall_s())));
}

#define DELIVERY_ROW(F, G, T)                                                                      \
	F(T, TEXT, "id", id)                                                                       \
	G(T, TEXT, "event_id", event_id)                                                           \
	G(T, TEXT, "type", type)                                                                   \
	G(T, INT, "attempt", attempt)                                                              \
	G(T, INT, "status", status)                                                                \
	G(T, TEXT, "outcome", outcome)                                                             \
	G(T, TEXT, "error", error)                                                                 \
	G(T, INT64, "duration_ms", duration_ms)                                                    \
	G(T, INT64, "created_at", created_at)
SQL_TABLE(delivery_table, DELIVERY_ROW, struct store_webhook_delivery);

static const struct store_page_query delivery_page = {
    "SELECT " SQL_COLUMNS(DELIVERY_ROW) " FROM webhook_deliveries"
                                        " WHERE webhook_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
    &delivery_table, offsetof(struct store_webhook_delivery, id), "whd_", true};

int store_webhook_deliveries(struct store_tx *tx, const char *org_id, const char *webhook_id,
                             const char *cursor, size_t limit,
                             struct store_webhook_delivery_list *list_r)
{
	static const char op[] = "store_webhook_deliveries";
	memset(list_r, 0, sizeof(*list_r));
	/* A bad cursor is refused before another org's webhook is looked for. */
	int rc = store_page_check(op, &cursor, delivery_page.prefix, limit);
	if (rc == 0)
		rc = sql_get(tx, op, "SELECT 1 FROM webhooks WHERE id = ? AND org_id = ?",
		             SQL_ARGS(SQL_TEXT(webhook_id), SQL_TEXT(org_id)), NULL, NULL);
	if (rc != 0)
		return rc;
	return STORE_PAGE_READ(tx, op, &delivery_page, SQL_ARGS(SQL_TEXT(webhook_id)), cursor,
	                       limit, list_r);
}

void store_webhook_delivery_list_free(struct store_webhook_delivery_list *list)
{
	STORE_PAGE_FREE(list);
}

int store_webhook_purge(struct store_tx *tx, int64_t before, size_t *purged_r)
{
	static const char op[] = "store_webhook_purge";
	*purged_r = 0;
	if (store_need_write(tx, op) < 0)
		return -1;
	int64_t a = sql_exec(tx, op, "DELETE FROM webhook_events WHERE created_at < ?",
	                     SQL_ARGS(SQL_INT(before)));
	int64_t b = a < 0 ? -1
	                  : sql_exec(tx, op, "DELETE FROM webhook_deliveries WHERE created_at < ?",
	                             SQL_ARGS(SQL_INT(before)));
	if (b < 0)
		return -1;
	*purged_r = (size_t)(a + b);
	return 0;
}
