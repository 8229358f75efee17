/* What the account files (engine/account*.c, engine/imap_account.c) share of `struct
 * accounts`; nothing else includes this. */
#ifndef MT_ENGINE_ACCOUNT_INTERNAL_H
#define MT_ENGINE_ACCOUNT_INTERNAL_H

#include "engine/account.h"

/* Live checks running per org, to keep a few at a time (MT_LIVE_CHECKS_PER_ORG): each holds a
 * connection to a provider for up to 30 s. */
struct org_checks {
	char org_id[MT_ID_MAX];
	unsigned running;
};

struct accounts {
	struct accounts_params p;
	struct org_checks *checks;
	size_t check_slots;
	/* engine/imap_account.h: the syncer's hook */
	void (*imap_changed)(void *ctx, const char *org_id, const char *user_id);
	void *imap_changed_ctx;
};

/* A live-check slot of the org (MT_LIVE_CHECKS_PER_ORG at a time): false when all are taken. */
bool account_take_slot(struct accounts *accounts, const char *org_id);
void account_release_slot(struct accounts *accounts, const char *org_id);
/* Two pins are the same when both are absent or both name the same digest, whatever the
 * spelling (case, colons). */
bool account_same_pin(const char *a, const char *b);
enum mt_security account_net_security(enum store_security security);

/* ---- the OAuth part of a save (engine/account_oauth.c) ---- */

struct oauth_new_grant;
struct store_oauth_grant;
struct store_tx;
struct oauth_broker_ask;

/* How a save of an xoauth2 account gets its token. */
struct account_oauth {
	bool new_grant;                   /* a refresh_token came: the grant is replaced */
	bool uses_grant;                  /* the account stores no token of its own */
	struct oauth_new_grant *grant;    /* new_grant: taken from the request */
	struct store_oauth_grant *sealed; /* new_grant, after the check: for the store job */
	struct oauth_broker_ask *ask;
	void (*ready)(void *ctx, struct mt_secret *token, enum account_verdict verdict,
	              enum mt_failure_class cls, const char *reason);
	void *ctx;
};

/* The request's grant fields (with the access token given beside them, taken into the grant):
 * NULL when there are none or they hold, else the reason. Wipes the request's secrets. */
const char *account_oauth_take(struct account_oauth *o, const char *preset_id,
                               const struct account_oauth_request *req, const char **access_token,
                               char *buf, size_t size);
/* The token the live check logs in with: the new grant's (refreshed when needed) or the user's
 * grant's (o->uses_grant set first). `ready` once, on the loop: ACCOUNT_OK with the token
 * (taken by the callee), or the verdict why not. */
void account_oauth_token(struct accounts *accounts, struct account_oauth *o, const char *org_id,
                         const char *user_id);
/* After the check: the new grant sealed for the store job. 0 or -1. */
int account_oauth_seal(struct accounts *accounts, struct account_oauth *o, const char *org_id,
                       const char *user_id);
/* Inside the save's store job: the new grant replaces the user's. 0 or a store result. */
int account_oauth_store(struct store_tx *tx, const struct account_oauth *o);
void account_oauth_clear(struct account_oauth *o);
/* Inside a view's store job: the user's grant, when the account uses it. */
int account_oauth_view_load(struct store_tx *tx, const char *org_id, const char *user_id,
                            bool uses_grant, struct account_oauth_view *view);

#endif
