/* A user's IMAP account for auto sync (DESIGN.md §1 IMAP account): saving it (PUT /v1/imap:
 * the rules, the reuse of a stored password, the host policy, the live login and folder
 * discovery, sealing, storing behind a fence), its view (GET), off (DELETE), and the client
 * parameters every connection to a stored account uses. It lives beside engine/account.c and
 * shares its live-check slots, pins, host policy and seal contexts (engine/account_internal.h).
 *
 * Ownership: requests are copied before the call returns (the password is taken and the
 * request's copy wiped); results and views handed to `done` are valid during the call only. */
#ifndef MT_ENGINE_IMAP_ACCOUNT_H
#define MT_ENGINE_IMAP_ACCOUNT_H

#include "engine/account.h"
#include "imap/client.h"
#include "store/store_imap.h"

#include <stdbool.h>
#include <stdint.h>

/* Called after an IMAP account was saved or turned off (committed): the syncer (re)starts or
 * stops its session. */
typedef void account_imap_changed_fn(void *ctx, const char *org_id, const char *user_id);
void accounts_set_imap_hook(struct accounts *accounts, account_imap_changed_fn *fn, void *ctx);

/* The client parameters of a stored IMAP account (as account_smtp_client()). */
int account_imap_client(const struct store_imap_account *account, const struct mt_keyring *keyring,
                        struct mt_tls_config *tls, const struct mt_cidr_list *allow_private,
                        struct imap_client_params *params_r, struct mt_tls_pin *pin_storage,
                        struct mt_secret **secret_r, const char **error_r);

struct account_imap_request {
	const char *host;
	int64_t port;
	bool have_port;
	const char *security;
	const char *auth; /* "password" (default) or "xoauth2" */
	const char *username;
	const char *password; /* the request's copy is wiped once taken; xoauth2: a token */
	const char *preset;   /* xoauth2: a provider preset for the token endpoint */
	struct account_oauth_request oauth;
	const char *since; /* YYYY-MM-DD; default 30 days back */
	const char *folders[MT_IMAP_FOLDERS_MAX];
	size_t folder_count; /* 0: INBOX and the \Sent folder */
	const char *tls_fingerprint;
};

struct account_imap_result {
	struct account_result r;
	const struct store_imap_account *account; /* ACCOUNT_OK: as stored, without the secret */
};

typedef void account_imap_done_fn(void *ctx, const struct account_imap_result *result);

/* Rules, then live (connect, secure, log in, LIST; MT_LIVE_CHECK_STEP_MS per step, 30 s in
 * all), then sealed and stored behind the fence, state connected; a folder kept keeps its
 * cursor. On any failure nothing changes. `done` exactly once on the loop thread. */
void account_imap_save(struct accounts *accounts, const char *org_id, const char *user_id,
                       struct account_imap_request *request, account_imap_done_fn *done, void *ctx);

struct account_imap_view {
	bool exists;
	bool feature_enabled;
	int64_t lag_seconds; /* since the last completed sync of a connected account; -1: none */
	struct account_oauth_view oauth;
	struct store_imap_account account; /* the secret is not in it */
};
typedef void account_imap_view_fn(void *ctx, const struct account_result *result,
                                  const struct account_imap_view *view);
void account_imap_view(struct accounts *accounts, const char *org_id, const char *user_id,
                       account_imap_view_fn *done, void *ctx);
/* State off, the secret wiped, sync stopped. */
void account_imap_off(struct accounts *accounts, const char *org_id, const char *user_id,
                      account_done_fn *done, void *ctx);

/* Parses YYYY-MM-DD into unix seconds at 00:00 UTC; -1 when it is not a valid date. Pure. */
int account_imap_parse_date(const char *text, int64_t *time_r);

#endif
