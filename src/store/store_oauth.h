/* OAuth grants (issue 15): what a user's consent at Google or Microsoft gave us — a refresh
 * token and the access token it last bought, for the token endpoint and client it came from.
 * One grant per user; the user's accounts (SMTP and IMAP) with auth `xoauth2` use it, so a grant
 * the provider revokes takes them all down at once. Tokens and the client secret are sealed
 * bytes from src/crypto, stored and read back, never plaintext. Operations run inside a store
 * job.
 *
 * Ownership: the caller owns the structs it passes in and out; nothing is allocated here. */
#ifndef MT_STORE_STORE_OAUTH_H
#define MT_STORE_STORE_OAUTH_H

#include "lib/limits.h"
#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

enum store_grant_state {
	STORE_GRANT_ACTIVE,
	STORE_GRANT_REVOKED, /* the provider said invalid_grant: only a new consent helps */
};

/* A sealed token: header + tag + a token of up to MT_OAUTH_TOKEN_MAX bytes. */
struct store_sealed_token {
	unsigned char bytes[MT_SEALED_MAX];
	size_t len;
};

struct store_oauth_grant {
	char id[MT_ID_MAX]; /* "grt..." (set by put) */
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	char provider[MT_OAUTH_PROVIDER_MAX]; /* "google", "microsoft", or another preset's id */
	char token_url[MT_OAUTH_URL_MAX + 1];
	char client_id[MT_OAUTH_CLIENT_ID_MAX + 1];
	struct store_sealed_token client_secret; /* len 0: a public client */
	struct store_sealed_token refresh_token;
	struct store_sealed_token access_token; /* len 0: none yet */
	int64_t expires_at;                     /* the access token's, unix seconds; 0: unknown */
	enum store_grant_state state;
	char revoked_reason[MT_ERROR_TEXT_MAX];
	int64_t created_at;
	int64_t updated_at; /* milliseconds: fences token writes against a new consent */
};

/* Inserts the user's grant, or replaces it (a new consent: active again, new id). */
int store_oauth_grant_put(struct store_tx *tx, struct store_oauth_grant *grant);
/* STORE_NOT_FOUND when the user has none. */
int store_oauth_grant_get(struct store_tx *tx, const char *org_id, const char *user_id,
                          struct store_oauth_grant *grant_r);
/* A refresh's result: the new access token and its expiry, and a rotated refresh token when
 * `refresh_token` is not NULL; only while the grant is still the active one `seen` (same id and
 * updated_at), else STORE_CONFLICT (a new consent came in meanwhile: its tokens win).
 * *updated_at_r is the grant's new fence. */
int store_oauth_grant_tokens(struct store_tx *tx, const struct store_oauth_grant *seen,
                             const struct store_sealed_token *access_token,
                             const struct store_sealed_token *refresh_token, int64_t expires_at,
                             int64_t *updated_at_r);
/* active -> revoked with `reason`, for the grant `grant_id` only: 0 when this call changed it
 * (the caller makes the one notification), STORE_CONFLICT when it was already revoked or
 * replaced. */
int store_oauth_grant_revoke(struct store_tx *tx, const char *grant_id, const char *reason);
/* A grant's user. */
struct store_oauth_ref {
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
};
/* Active grants whose access token expires before `before` (unix seconds): their users, at
 * most `max`, soonest first — what a background refresh looks at. */
int store_oauth_grants_expiring(struct store_tx *tx, int64_t before, struct store_oauth_ref *refs,
                                size_t max, size_t *count_r);

/* An authorisation-code flow between GET /v1/oauth/start and the provider's redirect to
 * /oauth/callback: who started it, for what, and the PKCE verifier the code is exchanged with. */
struct store_oauth_flow {
	unsigned char state_hash[32]; /* SHA-256 of the `state` sent to the provider */
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	char provider[MT_OAUTH_PROVIDER_MAX];
	int purposes; /* engine/oauth_flow.h's OAUTH_FOR_* bits */
	struct store_sealed_token verifier;
	int64_t created_at; /* unix milliseconds; put makes it later than the user's other flows */
};

/* Records a flow; flows that started before `expired_before` go (anyone's), and the user keeps
 * at most `per_user` (the oldest go first: created_at is raised past the user's latest flow, so
 * flows started in the same millisecond still have an order). */
int store_oauth_flow_put(struct store_tx *tx, struct store_oauth_flow *flow, int64_t expired_before,
                         size_t per_user);
/* Takes the flow whose state hashes to `state_hash` out of the store (a state is good once):
 * STORE_NOT_FOUND when there is none or it started before `expired_before`. */
int store_oauth_flow_take(struct store_tx *tx, const unsigned char state_hash[32],
                          int64_t expired_before, struct store_oauth_flow *flow_r);

#endif
