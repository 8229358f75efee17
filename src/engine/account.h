/* A user's mail accounts (DESIGN.md §1 SMTP account; IMAP joins with its issue): everything
 * about them that is not HTTP — the preset and policy rules of a save, when a stored secret may
 * be reused, the host policy (on the name, and on every address connected to), the live check
 * with its per-org slots, sealing (one context per protocol and user), storing behind a fence
 * (what the check was decided on must still hold when its result is stored), the state
 * transitions with their hook, the view with its usage and route, and the client parameters
 * every connection to a stored account uses (the sender, the live check, smtp-check).
 *
 * Ownership: `struct accounts` borrows everything in its params, which must outlive it. The
 * request structs are copied before the call returns (account_smtp_save takes the secret);
 * results and views handed to `done` are valid during the call only. */
#ifndef MT_ENGINE_ACCOUNT_H
#define MT_ENGINE_ACCOUNT_H

#include "engine/outbox.h"
#include "lib/failure.h"
#include "lib/limits.h"
#include "lib/secret.h"
#include "net/tls.h"
#include "smtp/client.h"
#include "store/store_smtp.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evdns_base;
struct store;
struct mt_keyring;
struct mt_config;
struct mt_cidr_list;
struct accounts;
struct oauth_broker;

/* Called after an account changed state and the change was committed. A disconnect's notice is
 * not hung here but recorded in the transaction that changed the state (engine/notify.h): only
 * there is "once per incident" decided for every node at once. */
typedef void account_state_fn(void *ctx, const char *org_id, const char *user_id,
                              enum store_account_state from, enum store_account_state to,
                              const char *reason);

struct accounts_params {
	struct event_base *base;
	struct evdns_base *dns;
	struct store *store;
	struct mt_keyring *keyring;
	struct mt_tls_config *tls;
	/* allow_private_hosts, no_auth_hosts, allow_plaintext_auth */
	const struct mt_config *config;
	struct outbox_relay relay; /* for the route a view shows */
	account_state_fn *on_state;
	void *on_state_ctx;
	struct oauth_broker *broker; /* OAuth grants (engine/oauth_broker.h); NULL: none */
};

struct accounts *accounts_new(const struct accounts_params *params);
void accounts_free(struct accounts **accounts);

/* The associated data a secret of `protocol` ("smtp", "imap") of `user_id` is sealed with:
 * a sealed secret opens only for the account it was sealed for. */
void account_seal_context(const char *protocol, const char *user_id,
                          char context[MT_SEAL_CONTEXT_MAX]);

/* The client parameters of a stored SMTP account: host, port, security, auth, username, the
 * pin (parsed into *pin_storage), the host policy on every address connected to (public only
 * but for allow_private), TLS. With a keyring and a sealed secret, *secret_r is the opened
 * secret (the caller frees it once the client has copied it); else NULL. 0, or -1 with
 * *error_r (a stored pin that does not parse, a secret that does not open). */
int account_smtp_client(const struct store_smtp_account *account, const struct mt_keyring *keyring,
                        struct mt_tls_config *tls, const struct mt_cidr_list *allow_private,
                        struct smtp_client_params *params_r, struct mt_tls_pin *pin_storage,
                        struct mt_secret **secret_r, const char **error_r);

/* ---- OAuth (auth xoauth2): a grant given with the account, or the user's grant ---- */

/* The grant fields of PUT /v1/smtp and PUT /v1/imap; NULL where omitted. A refresh_token makes
 * a new grant (replacing the user's one); token_url may come from the preset. */
struct account_oauth_request {
	const char *refresh_token; /* the request's copies are wiped once taken */
	const char *client_secret;
	const char *token_url;
	const char *client_id;
	int64_t expires_at; /* of access_token, when both are given */
	/* The user's grant even where a static token is stored for the same server (the sign-in
	 * callback moves an account onto the grant it just made); not with a refresh_token. */
	bool use_grant;
};

/* What GET shows instead of tokens for an account on the user's grant. */
struct account_oauth_view {
	bool present;
	char provider[MT_OAUTH_PROVIDER_MAX];
	int64_t expires_at;
	const char *state; /* "active" | "revoked" */
};

/* ---- saving (PUT /v1/smtp) ---- */

/* What the user asked for; NULL / false where omitted (the preset fills those). */
struct account_smtp_request {
	const char *preset;
	const char *host;
	int64_t port;
	bool have_port;
	const char *security;
	const char *auth;
	const char *username;
	const char *password;     /* the request's copy is wiped once taken */
	const char *access_token; /* ... (with refresh_token: the grant's current token) */
	struct account_oauth_request oauth;
	const char *from;
	const char *tls_fingerprint;
	struct store_send_limit limits[MT_SEND_LIMITS_MAX];
	size_t limit_count;
	bool limits_given; /* else the stored limits stay (or the preset's) */
	bool accept_disclaimer;
};

enum account_verdict {
	ACCOUNT_OK,
	ACCOUNT_INVALID,      /* a rule refused the input (reason): 400 */
	ACCOUNT_FEATURE_OFF,  /* the org's custom_smtp is off: 403 */
	ACCOUNT_NOT_FOUND,    /* no such user (or account, for limits): 404 */
	ACCOUNT_CHANGED,      /* the settings changed during the check: 409 */
	ACCOUNT_CHECK_FAILED, /* the live check failed (cls, reason, reply, fingerprint): 422 */
	ACCOUNT_THROTTLED,    /* too many live checks in the org: 429 */
	ACCOUNT_BUSY,         /* a queue is full: 503 */
	ACCOUNT_FAILED,       /* the store failed, nothing changed: 500 */
};

struct account_result {
	enum account_verdict verdict;
	enum mt_failure_class cls;
	char reason[MT_ERROR_TEXT_MAX];
	/* A stable machine code and the request field at fault (static strings; NULL: the
	 * verdict's generic code, no field). docs/api.md "Error codes". */
	const char *code;
	const char *field;
	char smtp_reply[512];
	char fingerprint[MT_TLS_FINGERPRINT_MAX];
	/* ACCOUNT_OK of a save */
	int64_t verified_at;
	char confirmation_message_id[MT_MESSAGE_ID_MAX + 1];
};

typedef void account_done_fn(void *ctx, const struct account_result *result);

/* Checks the request against the rules, then live (connect, secure, authenticate, send a
 * confirmation from `from` to `from`, MT_LIVE_CHECK_STEP_MS per step, 30 s in all), then
 * seals and stores it behind the fence: on any failure nothing changes. `done` exactly once,
 * on the loop thread (possibly before this returns). */
void account_smtp_save(struct accounts *accounts, const char *org_id, const char *user_id,
                       struct account_smtp_request *request, account_done_fn *done, void *ctx);

/* ---- the view (GET), limits (PATCH), off (DELETE) ---- */

struct account_usage {
	int64_t used;         /* recipients accepted (or reserved) in the rolling window */
	int64_t next_slot_at; /* once the window is full, when its next slot frees; else 0 */
};

struct account_smtp_view {
	bool exists;
	struct store_smtp_account account; /* the secret is not in it */
	struct account_usage usage[MT_SEND_LIMITS_MAX];
	bool feature_enabled;
	const char *route; /* "custom" | "relay" | "none": where a single message goes now */
	struct account_oauth_view oauth;
};

typedef void account_view_fn(void *ctx, const struct account_result *result,
                             const struct account_smtp_view *view);

void account_smtp_view(struct accounts *accounts, const char *org_id, const char *user_id,
                       account_view_fn *done, void *ctx);
/* Changes the limits only, no live check; the view afterwards. */
void account_smtp_set_limits(struct accounts *accounts, const char *org_id, const char *user_id,
                             const struct store_send_limit *limits, size_t count,
                             account_view_fn *done, void *ctx);
/* State off, the secret wiped, the other settings kept for the form. */
void account_smtp_off(struct accounts *accounts, const char *org_id, const char *user_id,
                      account_done_fn *done, void *ctx);

/* ---- the disconnect story (docs/sending.md) ---- */

typedef void account_disconnect_fn(void *ctx, bool disconnected);
/* An auth or certificate failure of a custom SMTP account was confirmed by a second attempt on a
 * fresh connection (engine/outbox_policy.h): the account `seen` (as the caller loaded it) goes
 * disconnected, its settings kept, with one smtp_disconnected notice — recorded, and mailed to
 * the user through the relay — in the same transaction, fenced: only while it is still that
 * account and connected, so that an incident seen by several nodes, or by one several times, is
 * noticed once, and a failure seen with settings since replaced changes nothing. `done` exactly
 * once on the loop thread, with whether this call disconnected it. */
void account_smtp_disconnect(struct accounts *accounts, const struct store_smtp_account *seen,
                             enum mt_failure_class cls, const char *reason,
                             account_disconnect_fn *done, void *ctx);

/* "minute" -> 60 ...; 0 for another word. And back ("?" for another number). */
int account_window_seconds(const char *name);
const char *account_window_name(int seconds);

#endif
