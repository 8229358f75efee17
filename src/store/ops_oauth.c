/* OAuth grants. Tokens and the client secret are sealed bytes from src/crypto; they are stored
 * and read back, never logged and never looked at here. */
#include "store/store_oauth.h"
#include "store/sql.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "lib/str.h"

#include <string.h>
#include <time.h>

static const char *const state_names[] = {
    [STORE_GRANT_ACTIVE] = "active",
    [STORE_GRANT_REVOKED] = "revoked",
};

#define GRANT_ROW(F, G, T)                                                                         \
	F(T, TEXT, "id", id)                                                                       \
	G(T, TEXT, "org_id", org_id)                                                               \
	G(T, TEXT, "user_id", user_id)                                                             \
	G(T, TEXT, "provider", provider)                                                           \
	G(T, TEXT, "token_url", token_url)                                                         \
	G(T, TEXT, "client_id", client_id)                                                         \
	G(T, BLOB, "sealed_client_secret", client_secret.bytes, client_secret.len)                 \
	G(T, BLOB, "sealed_refresh_token", refresh_token.bytes, refresh_token.len)                 \
	G(T, BLOB, "sealed_access_token", access_token.bytes, access_token.len)                    \
	G(T, INT64, "expires_at", expires_at)                                                      \
	G(T, NAME, "state", state, state_names, STORE_GRANT_REVOKED)                               \
	G(T, TEXT, "revoked_reason", revoked_reason)                                               \
	G(T, INT64, "created_at", created_at)                                                      \
	G(T, INT64, "updated_at", updated_at)
SQL_TABLE(grant_table, GRANT_ROW, struct store_oauth_grant);

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct db_arg sealed(const struct store_sealed_token *t)
{
	return t->len > 0 ? SQL_BLOB(t->bytes, t->len) : SQL_NULL;
}

static bool fits(const struct store_sealed_token *t)
{
	return t->len <= sizeof(t->bytes);
}

int store_oauth_grant_put(struct store_tx *tx, struct store_oauth_grant *g)
{
	static const char op[] = "store_oauth_grant_put";
	if (!fits(&g->client_secret) || !fits(&g->refresh_token) || !fits(&g->access_token))
		return store_invalid(op, "sealed token too long");
	if (g->refresh_token.len == 0)
		return store_invalid(op, "a grant needs its refresh token");
	int rc = store_write_for_user(tx, op, g->org_id, g->user_id);
	if (rc != 0)
		return rc;
	store_new_id("grt", g->id);
	g->state = STORE_GRANT_ACTIVE;
	g->revoked_reason[0] = '\0';
	g->updated_at = now_ms();
	if (g->created_at == 0)
		g->created_at = g->updated_at / 1000;
	return sql_change(
	    tx, op,
	    "INSERT INTO oauth_grants (id, org_id, user_id, provider, token_url, client_id,"
	    " sealed_client_secret, sealed_refresh_token, sealed_access_token, expires_at, state,"
	    " revoked_reason, created_at, updated_at)"
	    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?)"
	    " ON CONFLICT (user_id) DO UPDATE SET id = excluded.id, provider = excluded.provider,"
	    " token_url = excluded.token_url, client_id = excluded.client_id,"
	    " sealed_client_secret = excluded.sealed_client_secret,"
	    " sealed_refresh_token = excluded.sealed_refresh_token,"
	    " sealed_access_token = excluded.sealed_access_token,"
	    " expires_at = excluded.expires_at, state = excluded.state, revoked_reason = '',"
	    " created_at = excluded.created_at, updated_at = excluded.updated_at"
	    " WHERE oauth_grants.org_id = excluded.org_id",
	    SQL_ARGS(SQL_TEXT(g->id), SQL_TEXT(g->org_id), SQL_TEXT(g->user_id),
	             SQL_TEXT(g->provider), SQL_TEXT(g->token_url), SQL_TEXT(g->client_id),
	             sealed(&g->client_secret), sealed(&g->refresh_token), sealed(&g->access_token),
	             SQL_INT(g->expires_at), SQL_TEXT(state_names[STORE_GRANT_ACTIVE]),
	             SQL_INT(g->created_at), SQL_INT(g->updated_at)));
}

int store_oauth_grant_get(struct store_tx *tx, const char *org_id, const char *user_id,
                          struct store_oauth_grant *grant_r)
{
	memset(grant_r, 0, sizeof(*grant_r));
	return sql_get(tx, "store_oauth_grant_get",
	               "SELECT " SQL_COLUMNS(GRANT_ROW) " FROM oauth_grants"
	                                                " WHERE user_id = ? AND org_id = ?",
	               SQL_ARGS(SQL_TEXT(user_id), SQL_TEXT(org_id)), &grant_table, grant_r);
}

int store_oauth_grant_tokens(struct store_tx *tx, const struct store_oauth_grant *seen,
                             const struct store_sealed_token *access_token,
                             const struct store_sealed_token *refresh_token, int64_t expires_at,
                             int64_t *updated_at_r)
{
	static const char op[] = "store_oauth_grant_tokens";
	if (!fits(access_token) || access_token->len == 0 ||
	    (refresh_token != NULL && (!fits(refresh_token) || refresh_token->len == 0)))
		return store_invalid(op, "a sealed token is empty or too long");
	if (store_need_write(tx, op) < 0)
		return -1;
	/* Never the same fence twice, even within one millisecond. */
	int64_t updated_at = now_ms();
	if (updated_at <= seen->updated_at)
		updated_at = seen->updated_at + 1;
	int64_t n =
	    refresh_token != NULL
	        ? sql_exec(tx, op,
	                   "UPDATE oauth_grants SET sealed_access_token = ?, expires_at = ?,"
	                   " sealed_refresh_token = ?, updated_at = ?"
	                   " WHERE id = ? AND state = ? AND updated_at = ?",
	                   SQL_ARGS(sealed(access_token), SQL_INT(expires_at),
	                            sealed(refresh_token), SQL_INT(updated_at), SQL_TEXT(seen->id),
	                            SQL_TEXT(state_names[STORE_GRANT_ACTIVE]),
	                            SQL_INT(seen->updated_at)))
	        : sql_exec(tx, op,
	                   "UPDATE oauth_grants SET sealed_access_token = ?, expires_at = ?,"
	                   " updated_at = ? WHERE id = ? AND state = ? AND updated_at = ?",
	                   SQL_ARGS(sealed(access_token), SQL_INT(expires_at), SQL_INT(updated_at),
	                            SQL_TEXT(seen->id), SQL_TEXT(state_names[STORE_GRANT_ACTIVE]),
	                            SQL_INT(seen->updated_at)));
	if (n < 0)
		return -1;
	if (n == 0)
		return STORE_CONFLICT;
	*updated_at_r = updated_at;
	return 0;
}

int store_oauth_grant_revoke(struct store_tx *tx, const char *grant_id, const char *reason)
{
	static const char op[] = "store_oauth_grant_revoke";
	if (store_need_write(tx, op) < 0)
		return -1;
	/* The access token goes too: nothing may use the grant any more. */
	int64_t n = sql_exec(tx, op,
	                     "UPDATE oauth_grants SET state = ?, revoked_reason = ?,"
	                     " sealed_access_token = NULL, expires_at = 0, updated_at = ?"
	                     " WHERE id = ? AND state = ?",
	                     SQL_ARGS(SQL_TEXT(state_names[STORE_GRANT_REVOKED]), SQL_TEXT(reason),
	                              SQL_INT(now_ms()), SQL_TEXT(grant_id),
	                              SQL_TEXT(state_names[STORE_GRANT_ACTIVE])));
	return n < 0 ? -1 : n == 1 ? 0 : STORE_CONFLICT;
}

#define REF_ROW(F, G, T)                                                                           \
	F(T, TEXT, "org_id", org_id)                                                               \
	G(T, TEXT, "user_id", user_id)
SQL_TABLE(ref_table, REF_ROW, struct store_oauth_ref);

int store_oauth_grants_expiring(struct store_tx *tx, int64_t before, struct store_oauth_ref *refs,
                                size_t max, size_t *count_r)
{
	return sql_list(
	    tx, "store_oauth_grants_expiring",
	    "SELECT " SQL_COLUMNS(REF_ROW) " FROM oauth_grants WHERE state = ?"
	                                   " AND expires_at < ? ORDER BY expires_at LIMIT ?",
	    SQL_ARGS(SQL_TEXT(state_names[STORE_GRANT_ACTIVE]), SQL_INT(before),
	             SQL_INT((int64_t)max)),
	    &ref_table, refs, max, count_r);
}

#define FLOW_ROW(F, G, T)                                                                          \
	F(T, TEXT, "org_id", org_id)                                                               \
	G(T, TEXT, "user_id", user_id)                                                             \
	G(T, TEXT, "provider", provider)                                                           \
	G(T, INT, "purposes", purposes)                                                            \
	G(T, BLOB, "sealed_verifier", verifier.bytes, verifier.len)                                \
	G(T, INT64, "created_at", created_at)
SQL_TABLE(flow_table, FLOW_ROW, struct store_oauth_flow);

int store_oauth_flow_put(struct store_tx *tx, struct store_oauth_flow *flow, int64_t expired_before,
                         size_t per_user)
{
	static const char op[] = "store_oauth_flow_put";
	if (!fits(&flow->verifier) || flow->verifier.len == 0)
		return store_invalid(op, "sealed verifier empty or too long");
	if (per_user == 0)
		return store_invalid(op, "no flow allowed");
	int rc = store_write_for_user(tx, op, flow->org_id, flow->user_id);
	if (rc != 0)
		return rc;
	if (sql_exec(tx, op, "DELETE FROM oauth_flows WHERE created_at < ?",
	             SQL_ARGS(SQL_INT(expired_before))) < 0)
		return -1;
	int64_t latest = 0;
	if (sql_get(tx, op,
	            "SELECT COALESCE(MAX(created_at), 0) FROM oauth_flows WHERE user_id = ?",
	            SQL_ARGS(SQL_TEXT(flow->user_id)), &sql_int64_table, &latest) < 0)
		return -1;
	if (flow->created_at <= latest)
		flow->created_at = latest + 1;
	/* Room for this one: the user's newest per_user - 1 stay. */
	if (sql_exec(tx, op,
	             "DELETE FROM oauth_flows WHERE user_id = ? AND state_hash NOT IN"
	             " (SELECT state_hash FROM oauth_flows WHERE user_id = ?"
	             " ORDER BY created_at DESC, state_hash LIMIT ?)",
	             SQL_ARGS(SQL_TEXT(flow->user_id), SQL_TEXT(flow->user_id),
	                      SQL_INT((int64_t)per_user - 1))) < 0)
		return -1;
	return sql_change(
	    tx, op,
	    "INSERT INTO oauth_flows (state_hash, org_id, user_id, provider, purposes,"
	    " sealed_verifier, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
	    SQL_ARGS(SQL_BLOB(flow->state_hash, sizeof(flow->state_hash)), SQL_TEXT(flow->org_id),
	             SQL_TEXT(flow->user_id), SQL_TEXT(flow->provider), SQL_INT(flow->purposes),
	             sealed(&flow->verifier), SQL_INT(flow->created_at)));
}

int store_oauth_flow_take(struct store_tx *tx, const unsigned char state_hash[32],
                          int64_t expired_before, struct store_oauth_flow *flow_r)
{
	static const char op[] = "store_oauth_flow_take";
	memset(flow_r, 0, sizeof(*flow_r));
	if (store_need_write(tx, op) < 0)
		return -1;
	int rc = sql_get(tx, op,
	                 "SELECT " SQL_COLUMNS(FLOW_ROW) " FROM oauth_flows WHERE state_hash = ?",
	                 SQL_ARGS(SQL_BLOB(state_hash, 32)), &flow_table, flow_r);
	if (rc != 0)
		return rc;
	memcpy(flow_r->state_hash, state_hash, sizeof(flow_r->state_hash));
	if (sql_exec(tx, op, "DELETE FROM oauth_flows WHERE state_hash = ?",
	             SQL_ARGS(SQL_BLOB(state_hash, 32))) < 0)
		return -1;
	if (flow_r->created_at < expired_before) {
		memset(flow_r, 0, sizeof(*flow_r));
		return STORE_NOT_FOUND;
	}
	return 0;
}
