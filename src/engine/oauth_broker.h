/* The one place that hands out OAuth access tokens for a user's grant (docs/oauth.md): both
 * engines (the sender, the IMAP sync) and the account saves ask it before a login with XOAUTH2.
 *
 * An ask loads the grant (a store job) and answers with its access token while that has more
 * than MT_OAUTH_REFRESH_MARGIN_S to live; else it refreshes (src/oauth/refresh.h, HTTPS verified
 * against the system CAs plus `ca_file`), seals and stores the new tokens behind the grant's
 * fence (a rotated refresh token too), then answers. Asks for the same user while one is under
 * way share it (single flight: one refresh at the token endpoint). A forced ask — the server
 * refused the token it was given — refreshes unless the grant changed since that token was
 * handed out. `invalid_grant` is definitive: the grant is revoked and, when this node's revoke
 * changed it, every account on the grant (SMTP and IMAP) goes `disconnected` with ONE
 * `oauth_revoked` notice, all in one transaction. Anything else that fails is temporary: the
 * asker retries with back-off. A timer refreshes grants that expire soon, so that logins rarely
 * wait for the token endpoint.
 *
 * An account uses the grant when its auth is xoauth2 and it holds no secret of its own (the
 * older form keeps a static access token as its secret).
 *
 * Secrets: tokens are opened only to be handed out or sent to the token endpoint and wiped after
 * use (struct mt_secret); they are never logged.
 *
 * Ownership: the broker borrows everything in its params. An answer's token belongs to the
 * asker only when it takes it (sets answer->token to NULL); the ask handle is the broker's and
 * is gone once its callback returned or it was cancelled. */
#ifndef MT_ENGINE_OAUTH_BROKER_H
#define MT_ENGINE_OAUTH_BROKER_H

#include "engine/outbox.h"
#include "lib/limits.h"
#include "lib/secret.h"
#include "store/store_oauth.h"

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct store;
struct mt_keyring;
struct oauth_broker;
struct oauth_broker_ask;

/* After a revoke committed (its accounts disconnected): the IMAP sync stops the user's session. */
typedef void oauth_broker_revoked_fn(void *ctx, const char *org_id, const char *user_id);

struct oauth_broker_params {
	struct event_base *base;
	struct store *store;
	struct mt_keyring *keyring;
	const char *ca_file;       /* NULL: the system CAs only */
	struct outbox_relay relay; /* for the notice's mail */
	int background_ms;         /* 0: MT_OAUTH_BACKGROUND_MS; < 0: no background refresh */
};

/* NULL with *error_r (libcurl cannot start, out of memory). */
struct oauth_broker *oauth_broker_new(const struct oauth_broker_params *params,
                                      const char **error_r);
void oauth_broker_set_revoked_hook(struct oauth_broker *broker, oauth_broker_revoked_fn *fn,
                                   void *ctx);
/* Starts the background refresh timer. */
int oauth_broker_start(struct oauth_broker *broker);
/* Before the store closes: no refresh starts or finishes any more, no ask is answered (askers
 * cancel theirs when they go). */
void oauth_broker_close(struct oauth_broker *broker);
/* After the store closed. */
void oauth_broker_free(struct oauth_broker **broker);

enum oauth_broker_outcome {
	OAUTH_BROKER_OK,
	OAUTH_BROKER_NO_GRANT, /* the user has none: an account that needs one cannot log in */
	OAUTH_BROKER_REVOKED,  /* definitive: only a new consent helps (the accounts are down) */
	OAUTH_BROKER_TEMPORARY /* the token endpoint or the store failed: retry later */
};
const char *oauth_broker_outcome_name(enum oauth_broker_outcome outcome);

struct oauth_broker_answer {
	enum oauth_broker_outcome outcome;
	struct mt_secret
	    *token;         /* OK: take it (set to NULL) to keep it, else wiped after the call */
	int64_t fence;      /* the grant's version the token came with: for a forced ask */
	int64_t expires_at; /* the token's, unix seconds */
	const char *reason; /* not OK: one line, never a secret */
};
typedef void oauth_broker_fn(void *ctx, struct oauth_broker_answer *answer);

/* The user's access token. `refused_fence` < 0: any valid token; else the fence of a token the
 * server refused — a refresh unless the grant changed since. `done` exactly once, on the loop,
 * never from inside this call, unless cancelled; NULL (and no call) when it cannot start (out of
 * memory, too many users in flight, closing): the caller treats that as temporary. */
struct oauth_broker_ask *oauth_broker_token(struct oauth_broker *broker, const char *org_id,
                                            const char *user_id, int64_t refused_fence,
                                            oauth_broker_fn *done, void *ctx);
/* The asker goes: its callback is not called. NULL is fine; *ask becomes NULL. */
void oauth_broker_cancel(struct oauth_broker_ask **ask);

/* What an ask does with the grant it loaded. Pure. */
enum oauth_broker_action {
	OAUTH_ACTION_USE,     /* its access token */
	OAUTH_ACTION_REFRESH, /* none, expiring within the margin, or the one refused */
	OAUTH_ACTION_REVOKED,
};
enum oauth_broker_action oauth_broker_decide(const struct store_oauth_grant *grant, int64_t now,
                                             int64_t refused_fence);

/* ---- a new grant (a save with refresh_token, later the authorisation callback) ---- */

/* What a user (or the callback) hands in; strings borrowed, the secrets' copies wiped by
 * oauth_grant_take. */
struct oauth_grant_request {
	const char *provider; /* "google", "microsoft", "custom" */
	const char *token_url;
	const char *client_id;
	const char *client_secret; /* NULL: a public client */
	const char *refresh_token;
	const char *access_token; /* NULL: refreshed before first use */
	int64_t expires_at;       /* the access token's; 0: unknown (refreshed before first use) */
};

/* A grant on its way in, its secrets held as such. */
struct oauth_new_grant {
	char provider[MT_OAUTH_PROVIDER_MAX];
	char token_url[MT_OAUTH_URL_MAX + 1];
	char client_id[MT_OAUTH_CLIENT_ID_MAX + 1];
	struct mt_secret *client_secret;
	struct mt_secret *refresh_token;
	struct mt_secret *access_token;
	int64_t expires_at;
};

/* Checks and copies the request, wiping the request's secrets. NULL when it holds, else the
 * reason (the grant cleared). */
const char *oauth_grant_take(struct oauth_new_grant *grant, const struct oauth_grant_request *req);
void oauth_grant_clear(struct oauth_new_grant *grant);

/* Makes sure the new grant has an access token good beyond the margin: the one given, or a
 * refresh with its refresh token (a rotated refresh token replaces it). `done` exactly once, on
 * the loop, with OK, REVOKED (the refresh token is no good) or TEMPORARY and a reason; the
 * token in the answer is a copy of grant->access_token. -1 when it cannot start. */
int oauth_broker_prepare(struct oauth_broker *broker, struct oauth_new_grant *grant,
                         oauth_broker_fn *done, void *ctx);

/* The new grant sealed for `user_id`, ready for store_oauth_grant_put (in the caller's
 * transaction, e.g. with the account it was checked with). 0, or -1 (cannot seal). */
int oauth_grant_seal(const struct mt_keyring *keyring, const char *org_id, const char *user_id,
                     const struct oauth_new_grant *grant, struct store_oauth_grant *sealed_r);

/* The grant-saving path on its own (for the authorisation callback): prepare, seal, store —
 * a new consent replaces the user's grant. `done` once with OK, or the failure. The grant is
 * cleared by the broker. -1 when it cannot start (nothing called). */
int oauth_broker_grant_save(struct oauth_broker *broker, const char *org_id, const char *user_id,
                            struct oauth_new_grant *grant, oauth_broker_fn *done, void *ctx);

/* Whether a stored account uses the user's grant (xoauth2 without a secret of its own). */
bool oauth_account_uses_grant(int auth_is_xoauth2, size_t sealed_secret_len);

#endif
