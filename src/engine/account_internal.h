/* What the account files (engine/account*.c, engine/imap_account.c) share: `struct accounts`,
 * the OAuth part of a save, and the save steps both protocols run (account_save.c). Nothing
 * else includes this but tests/unit/test_account_save.c.
 *
 * Ownership: a `struct account_save` owns its `given` and `secret` (wiped and freed by
 * account_save_release) and its grant state; `ops`, `accounts` and `result` are borrowed from
 * the protocol's save, which embeds it as its first member and frees it in ops->finish. */
#ifndef MT_ENGINE_ACCOUNT_INTERNAL_H
#define MT_ENGINE_ACCOUNT_INTERNAL_H

#include "engine/account.h"
#include "store/store_org.h"
#include "store/store_user.h"

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

/* ---- what the SMTP and IMAP saves share (engine/account_save.c) ---- */

enum host_verdict;

/* Where an account's secret goes, read from either account struct (the same member names). */
struct account_endpoint {
	const char *host;
	int port;
	const char *username;
	enum store_auth auth;
	enum store_security security;
	const char *tls_fingerprint;
	const unsigned char *sealed_secret;
	size_t sealed_secret_len;
};
#define ACCOUNT_ENDPOINT(a)                                                                        \
	((struct account_endpoint){(a)->host, (a)->port, (a)->username, (a)->auth, (a)->security,  \
	                           (a)->tls_fingerprint, (a)->sealed_secret,                       \
	                           (a)->sealed_secret_len})

/* Whether the stored secret may be sent where the new settings point: it has one, and the
 * same server, login and transport — or a stolen token could send the password to a host of
 * its choice, in the clear, or to a certificate of its choice. */
bool account_secret_reusable(const struct account_endpoint *stored,
                             const struct account_endpoint *wanted);

/* What every client of a stored account takes from it: its pin (parsed into *pin_storage,
 * *pin_r NULL without one) and, with a keyring and a sealed secret, the opened secret in
 * *secret_r (NULL otherwise). 0, or -1 with *error_r. */
int account_client_credentials(const struct account_endpoint *e, const char *protocol,
                               const char *user_id, const struct mt_keyring *keyring,
                               struct mt_tls_pin *pin_storage, const struct mt_tls_pin **pin_r,
                               struct mt_secret **secret_r, const char **error_r);

/* The host policy's verdict on a save's host: ACCOUNT_OK to go on, else the verdict with its
 * reason, code and class in `result` (an unresolvable host counts as a failed check). */
enum account_verdict account_host_verdict(const char *protocol, enum host_verdict verdict,
                                          const char *reason, struct account_result *result);

/* The org's switch for a protocol's accounts. */
enum account_feature { ACCOUNT_FEATURE_CUSTOM_SMTP, ACCOUNT_FEATURE_IMAP_SYNC };

/* What a save of either protocol holds whatever the protocol: the first member of each's save
 * (engine/account.c's, engine/imap_account.c's), which the shared steps below run. */
enum account_save_stage { ACCOUNT_SAVE_LOAD, ACCOUNT_SAVE_STORE };
struct account_save;
/* What a protocol's save does itself, called by the shared steps: read (a store read of the
 * user's account into `account_r`, a struct of account_size bytes: 0 or STORE_NOT_FOUND; the
 * load reads it into the save at stored_offset), loaded (on the loop, after the org's switch:
 * its own rules, then account_save_authenticate or account_save_check_host), check (the live
 * check, a slot held; it ends in account_save_passed or finish), same (in the store job:
 * whether the account stored now is the one loaded), store (the account and what goes with
 * it), stored (on the loop: finish with ACCOUNT_OK), finish (the reply, then free), host (the
 * host the save connects to). ACCOUNT_SAVE_OPS(p) names them p_read, p_loaded, .... */
struct account_save_ops {
	const char *what;        /* "Custom SMTP": replies */
	const char *settings;    /* "SMTP" */
	const char *switch_name; /* "custom_smtp": the org's feature */
	enum account_feature feature;
	size_t account_size, stored_offset;
	int (*read)(struct store_tx *tx, const struct account_save *s, void *account_r);
	void (*loaded)(struct account_save *s);
	void (*check)(struct account_save *s);
	bool (*same)(const struct account_save *s, const void *now);
	int (*store)(struct store_tx *tx, struct account_save *s);
	void (*stored)(struct account_save *s);
	void (*finish)(struct account_save *s, enum account_verdict verdict, const char *reason);
	const char *(*host)(const struct account_save *s);
};
#define ACCOUNT_SAVE_OPS(p)                                                                        \
	.read = p##_read, .loaded = p##_loaded, .check = p##_check, .same = p##_same,              \
	.store = p##_store, .stored = p##_stored, .finish = p##_finish, .host = p##_host
struct account_save {
	const struct account_save_ops *ops;
	struct accounts *accounts;
	const char *protocol; /* "smtp", "imap": seal context, metrics, logs */
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	enum account_save_stage stage;
	struct mt_secret *given;  /* the request's secret, if any */
	struct mt_secret *secret; /* what the check logs in with */
	/* Loaded */
	struct store_org org;
	struct store_user user;
	bool stored_exists;
	bool holds_slot;
	struct account_oauth oauth;    /* xoauth2 on a grant */
	struct account_result *result; /* the protocol's result's */
};
/* The reply to a save that could not begin. */
extern const struct account_result account_out_of_memory;
void account_save_init(struct account_save *s, const struct account_save_ops *ops,
                       struct accounts *accounts, const char *protocol, const char *org_id,
                       const char *user_id, struct account_result *result);
/* A refused request's code and field noted for the reply; returns `reason`. */
const char *account_save_refuse(struct account_save *s, const char *code, const char *field,
                                const char *reason);
/* The end of a save, whatever its verdict (after `done`): its slot, secrets and grant go. */
void account_save_release(struct account_save *s);
/* The store answered `rc` (not 0): the verdict, its reason in the result. */
enum account_verdict account_save_store_failed(struct account_save *s, int rc);
/* The request's rules passed (`why` NULL: then the load job is submitted) or not: ACCOUNT_OK,
 * else the verdict with its reason in the result, for the caller to finish with. */
enum account_verdict account_save_start(struct account_save *s, const char *why);
/* After the protocol's rules on what was loaded, for an account that logs in: the secret from
 * the user's grant (xoauth2 without a token of its own), else the request's, else the stored
 * one where account_secret_reusable (refused otherwise: `secret_name` is required), then the
 * host policy, a slot and ops->check. Ends in ops->finish on any refusal. */
void account_save_authenticate(struct account_save *s, bool xoauth2,
                               const struct account_endpoint *stored,
                               const struct account_endpoint *wanted, const char *secret_name);
/* The host policy on ops->host, a live-check slot, then ops->check. */
void account_save_check_host(struct account_save *s);
/* The check passed: its slot freed, the secret sealed into `sealed` for this account (on a
 * grant: none, the new grant sealed for the store job), and the store job submitted behind the
 * fence (the org's switch, the user, ops->same; then ops->store, and ops->stored).
 * ACCOUNT_OK, else the verdict to finish with (reason in the result). */
enum account_verdict account_save_passed(struct account_save *s, unsigned char *sealed, size_t size,
                                         size_t *len_r);
/* The request's rules both protocols apply, in their merge: NULL when it holds, else the reason
 * (in `buf` or static) with its code and field noted. A host name, stored lower-cased: */
const char *account_merge_host(struct account_save *s, const char *host, char *out, size_t size,
                               char *buf, size_t buf_size);
/* A pin given (NULL or "": none) needs TLS and must parse; copied into `out`. */
const char *account_merge_pin(struct account_save *s, const char *fingerprint,
                              enum store_security security, char *out, size_t size, char *buf,
                              size_t buf_size);
/* Grant fields need auth xoauth2 (the request's secrets among them are wiped). */
const char *account_merge_grant_fields(struct account_save *s, enum store_auth auth,
                                       const struct account_oauth_request *oauth);
/* A password over security none only where the operator allows plaintext authentication. */
const char *account_merge_plaintext(struct account_save *s, enum store_security security);
/* The request's secret (NULL: none) taken into s->given; the request's copy wiped. */
const char *account_merge_secret(struct account_save *s, const char *given);
/* The request's allow_private_hosts. */
const struct mt_cidr_list *account_allow_private(const struct accounts *accounts);

/* A live check's outcome in mailtrail_live_checks_total. */
void account_count_check(const char *protocol, const char *cls);

#endif
