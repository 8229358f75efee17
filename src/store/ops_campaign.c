/* Campaigns, suppressions and unsubscribe tokens (store_campaign.h). */
#include "store/sql.h"
#include "store/store.h"
#include "store/store_campaign.h"
#include "store/store_internal.h"

#include <string.h>
#include <time.h>

#define IDEMPOTENCY_WINDOW_S (24 * 3600) /* as for single messages (ops_outbox.c) */

static const char *const state_names[] = {
    [STORE_CAMPAIGN_RUNNING] = "running",
    [STORE_CAMPAIGN_PAUSED] = "paused",
    [STORE_CAMPAIGN_CANCELLED] = "cancelled",
};

const char *store_campaign_state_name(enum store_campaign_state state)
{
	return sql_name(state_names, sizeof(state_names) / sizeof(state_names[0]), state,
	                STORE_CAMPAIGN_CANCELLED);
}

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

#define CAMPAIGN_ROW(F, G, T)                                                                      \
	F(T, TEXT, "id", id)                                                                       \
	G(T, TEXT, "org_id", org_id)                                                               \
	G(T, TEXT, "user_id", user_id)                                                             \
	G(T, TEXT, "idempotency_key", idempotency_key)                                             \
	G(T, INT, "state", state)                                                                  \
	G(T, TEXT, "subject", subject)                                                             \
	G(T, INT64, "total", total)                                                                \
	G(T, INT64, "suppressed", suppressed)                                                      \
	G(T, INT64, "created_at", created_at)                                                      \
	G(T, INT64, "updated_at", updated_at)
SQL_TABLE(campaign_table, CAMPAIGN_ROW, struct store_campaign);

SQL_TEXT_TABLE(id_table, "id", MT_ID_MAX);

int store_campaign_create(struct store_tx *tx, struct store_campaign *c,
                          char existing_id_r[MT_ID_MAX])
{
	static const char op[] = "store_campaign_create";
	if (store_need_write(tx, op) < 0)
		return -1;
	existing_id_r[0] = '\0';
	if (c->idempotency_key[0] != '\0') {
		int rc = sql_get(tx, op,
		                 "SELECT id FROM campaigns WHERE org_id = ? AND user_id = ?"
		                 " AND idempotency_key = ? AND created_at > ?",
		                 SQL_ARGS(SQL_TEXT(c->org_id), SQL_TEXT(c->user_id),
		                          SQL_TEXT(c->idempotency_key),
		                          SQL_INT(now_s() - IDEMPOTENCY_WINDOW_S)),
		                 &id_table, existing_id_r);
		if (rc == 0)
			return STORE_CONFLICT;
		if (rc != STORE_NOT_FOUND)
			return -1;
	}
	store_new_ordered_id("cmp", c->id);
	c->created_at = c->updated_at = now_s();
	c->state = STORE_CAMPAIGN_RUNNING;
	int rc =
	    sql_insert(tx, op,
	               "INSERT INTO campaigns (id, org_id, user_id, idempotency_key, state,"
	               " subject, total, suppressed, created_at, updated_at)"
	               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
	               SQL_ARGS(SQL_TEXT(c->id), SQL_TEXT(c->org_id), SQL_TEXT(c->user_id),
	                        SQL_TEXT(c->idempotency_key), SQL_INT(c->state),
	                        SQL_TEXT(c->subject), SQL_INT(c->total), SQL_INT(c->suppressed),
	                        SQL_INT(c->created_at), SQL_INT(c->updated_at)));
	return rc == 0 ? 0 : rc == STORE_CONFLICT ? rc : -1;
}

struct state_count {
	int64_t state;
	int64_t count;
};
#define STATE_COUNT_ROW(F, G, T)                                                                   \
	F(T, INT64, "state", state)                                                                \
	G(T, INT64, "COUNT(*)", count)
SQL_TABLE(state_count_table, STATE_COUNT_ROW, struct state_count);

int store_campaign_get(struct store_tx *tx, const char *org_id, const char *user_id, const char *id,
                       struct store_campaign *c)
{
	static const char op[] = "store_campaign_get";
	memset(c, 0, sizeof(*c));
	int rc = sql_get(
	    tx, op,
	    "SELECT " SQL_COLUMNS(
	        CAMPAIGN_ROW) " FROM campaigns WHERE id = ? AND org_id = ? AND user_id = ?",
	    SQL_ARGS(SQL_TEXT(id), SQL_TEXT(org_id), SQL_TEXT(user_id)), &campaign_table, c);
	if (rc != 0)
		return rc;
	struct state_count rows[STORE_OUTBOX_CANCELLED + 1];
	size_t n = 0;
	if (sql_list(tx, op,
	             "SELECT state, COUNT(*) FROM outbox_messages"
	             " WHERE campaign_id = ? GROUP BY state",
	             SQL_ARGS(SQL_TEXT(id)), &state_count_table, rows,
	             sizeof(rows) / sizeof(rows[0]), &n) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (rows[i].state >= 0 && rows[i].state <= STORE_OUTBOX_CANCELLED)
			c->counts[rows[i].state] = rows[i].count;
	return 0;
}

int store_campaign_act(struct store_tx *tx, const char *org_id, const char *user_id, const char *id,
                       enum store_campaign_action action)
{
	static const char op[] = "store_campaign_act";
	if (store_need_write(tx, op) < 0)
		return -1;
	struct store_campaign c;
	int rc = sql_get(
	    tx, op,
	    "SELECT " SQL_COLUMNS(
	        CAMPAIGN_ROW) " FROM campaigns WHERE id = ? AND org_id = ? AND user_id = ?",
	    SQL_ARGS(SQL_TEXT(id), SQL_TEXT(org_id), SQL_TEXT(user_id)), &campaign_table, &c);
	if (rc != 0)
		return rc;
	enum store_campaign_state to;
	switch (action) {
	case STORE_CAMPAIGN_PAUSE:
		to = STORE_CAMPAIGN_PAUSED;
		break;
	case STORE_CAMPAIGN_RESUME:
		to = STORE_CAMPAIGN_RUNNING;
		break;
	case STORE_CAMPAIGN_CANCEL:
		to = STORE_CAMPAIGN_CANCELLED;
		break;
	default:
		return store_invalid(op, "unknown campaign action");
	}
	if (c.state == STORE_CAMPAIGN_CANCELLED)
		return to == STORE_CAMPAIGN_CANCELLED ? 0 : STORE_CONFLICT;
	if (c.state == to)
		return 0;
	int64_t now = now_s();
	if (sql_change(tx, op, "UPDATE campaigns SET state = ?, updated_at = ? WHERE id = ?",
	               SQL_ARGS(SQL_INT(to), SQL_INT(now), SQL_TEXT(id))) < 0)
		return -1;
	/* updated_at of a held message is when it began to wait: the resume adds the wait to
	 * held_seconds, which its retry time does not count. */
	int64_t n = 0;
	if (to == STORE_CAMPAIGN_PAUSED)
		n = sql_exec(tx, op,
		             "UPDATE outbox_messages SET state = ?, updated_at = ?"
		             " WHERE campaign_id = ? AND campaign_id <> '' AND state = ?",
		             SQL_ARGS(SQL_INT(STORE_OUTBOX_HELD), SQL_INT(now), SQL_TEXT(id),
		                      SQL_INT(STORE_OUTBOX_QUEUED)));
	else if (to == STORE_CAMPAIGN_RUNNING)
		n = sql_exec(tx, op,
		             "UPDATE outbox_messages SET state = ?, next_attempt_at = ?,"
		             " held_seconds = held_seconds + (? - updated_at), updated_at = ?"
		             " WHERE campaign_id = ? AND campaign_id <> '' AND state = ?",
		             SQL_ARGS(SQL_INT(STORE_OUTBOX_QUEUED), SQL_INT(now), SQL_INT(now),
		                      SQL_INT(now), SQL_TEXT(id), SQL_INT(STORE_OUTBOX_HELD)));
	else
		n = sql_exec(tx, op,
		             "UPDATE outbox_messages SET state = ?, updated_at = ?"
		             " WHERE campaign_id = ? AND campaign_id <> '' AND state IN (?, ?)",
		             SQL_ARGS(SQL_INT(STORE_OUTBOX_CANCELLED), SQL_INT(now), SQL_TEXT(id),
		                      SQL_INT(STORE_OUTBOX_QUEUED), SQL_INT(STORE_OUTBOX_HELD)));
	return n < 0 ? -1 : 0;
}

int store_suppression_has(struct store_tx *tx, const char *org_id, const char *address,
                          bool *suppressed_r)
{
	static const char op[] = "store_suppression_has";
	int rc = sql_get(tx, op, "SELECT 1 FROM suppressions WHERE org_id = ? AND address = ?",
	                 SQL_ARGS(SQL_TEXT(org_id), SQL_TEXT(address)), NULL, NULL);
	*suppressed_r = rc == 0;
	return rc == 0 || rc == STORE_NOT_FOUND ? 0 : -1;
}

int store_unsubscribe_token_add(struct store_tx *tx, const struct store_unsubscribe *u)
{
	static const char op[] = "store_unsubscribe_token_add";
	int rc =
	    sql_insert(tx, op,
	               "INSERT INTO unsubscribe_tokens (token, org_id, campaign_id, address,"
	               " created_at) VALUES (?, ?, ?, ?, ?)",
	               SQL_ARGS(SQL_TEXT(u->token), SQL_TEXT(u->org_id), SQL_TEXT(u->campaign_id),
	                        SQL_TEXT(u->address), SQL_INT(now_s())));
	/* 128 random bits do not collide: a conflict is a failure like any other. */
	return rc == 0 ? 0 : -1;
}

#define UNSUBSCRIBE_ROW(F, G, T)                                                                   \
	F(T, TEXT, "token", token)                                                                 \
	G(T, TEXT, "org_id", org_id)                                                               \
	G(T, TEXT, "campaign_id", campaign_id)                                                     \
	G(T, TEXT, "address", address)
SQL_TABLE(unsubscribe_table, UNSUBSCRIBE_ROW, struct store_unsubscribe);

int store_unsubscribe_get(struct store_tx *tx, const char *token, struct store_unsubscribe *u)
{
	static const char op[] = "store_unsubscribe_get";
	memset(u, 0, sizeof(*u));
	int rc = sql_get(tx, op,
	                 "SELECT " SQL_COLUMNS(UNSUBSCRIBE_ROW) " FROM unsubscribe_tokens"
	                                                        " WHERE token = ?",
	                 SQL_ARGS(SQL_TEXT(token)), &unsubscribe_table, u);
	if (rc != 0)
		return rc;
	return store_suppression_has(tx, u->org_id, u->address, &u->suppressed);
}

int store_unsubscribe_apply(struct store_tx *tx, const char *token, struct store_unsubscribe *u)
{
	static const char op[] = "store_unsubscribe_apply";
	if (store_need_write(tx, op) < 0)
		return -1;
	int rc = store_unsubscribe_get(tx, token, u);
	if (rc != 0 || u->suppressed)
		return rc;
	rc = sql_insert(tx, op,
	                "INSERT INTO suppressions (org_id, address, campaign_id, created_at)"
	                " VALUES (?, ?, ?, ?)",
	                SQL_ARGS(SQL_TEXT(u->org_id), SQL_TEXT(u->address),
	                         SQL_TEXT(u->campaign_id), SQL_INT(now_s())));
	if (rc != 0 && rc != STORE_CONFLICT) /* a conflict: another request got there first */
		return -1;
	u->suppressed = true;
	return 0;
}
