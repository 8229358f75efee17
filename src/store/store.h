/* The store: the one interface the engines and the API use to keep state. Operations, not SQL.
 *
 * Threading. A store runs its own thread. The event loop never waits on disk: it submits a job
 * (a function run on the store thread inside a transaction) and gets the result back on the loop
 * through a wake-up (eventfd/pipe read by libevent). Write jobs that arrive together are
 * group-committed: one transaction, one fsync, each job inside its own SAVEPOINT so a failing
 * job rolls back alone. A `durable` job's completion is reported only after its commit reached
 * the disk (SQLite: synchronous=FULL for that commit).
 *
 * The operations below (store_org_*, store_user_*, ...) take a `struct store_tx *` and may only
 * be called from inside a job, on the store thread. They return 0 on success, STORE_NOT_FOUND,
 * STORE_CONFLICT (a uniqueness rule), or -1 on a database error (logged; the job should fail).
 * Every operation on tenant data is scoped by org id: another org's object is "not found".
 *
 * Backends: SQLite (a file path) now, PostgreSQL (postgresql://) later, behind the same
 * operations; identifiers are opaque strings generated here, never rowids.
 *
 * Ownership: the caller owns the structs it passes in and out; lists returned by the store
 * (store_*_list) are allocated by the store and freed with the matching *_free function. */
#ifndef MT_STORE_STORE_H
#define MT_STORE_STORE_H

#include "lib/limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct store;
struct store_tx;

#define STORE_NOT_FOUND 1
#define STORE_CONFLICT  2

/* ---- life cycle ---- */

/* Opens (creating if needed) the store at `url`: a file path for SQLite or "postgresql://...".
 * Applies pending migrations. `base` may be NULL for synchronous use only (CLI init, tools,
 * tests); with a base, job completions are delivered on that loop. NULL with *error_r. */
struct store *store_open(const char *url, struct event_base *base, const char **error_r);
/* Finishes queued jobs, stops the thread, closes the database. */
void store_close(struct store **store);

/* ---- jobs ---- */

enum store_job_kind {
	STORE_READ,          /* no writes; may run without a write transaction */
	STORE_WRITE,         /* group-committed; completion after commit */
	STORE_WRITE_DURABLE, /* as WRITE, and the commit is fsynced before completion */
};

/* Runs on the store thread inside a transaction. Return 0 to keep the job's changes, anything
 * else to roll them back (only this job's); that value is passed to `done`. */
typedef int store_job_fn(struct store_tx *tx, void *arg);
/* Runs on the event loop thread with the job's result (or -1 when the commit failed). */
typedef void store_done_fn(void *arg, int result);

/* Queues a job. -1 when the queue is full (MT_STORE_QUEUE_MAX) or the store is closing. */
int store_submit(struct store *store, enum store_job_kind kind, store_job_fn *fn,
                 store_done_fn *done, void *arg);
/* Runs a job on the store thread and waits for its commit, blocking the calling thread; for the
 * CLI, tools and tests (never on the event loop thread, never from inside a job). Works with a
 * NULL base. Returns the job's result, or -1 on a commit failure or a full queue. */
int store_run(struct store *store, enum store_job_kind kind, store_job_fn *fn, void *arg);

/* Counters since store_open(), for tests, benchmarks and /metrics. */
struct store_stats {
	uint64_t jobs;            /* jobs finished */
	uint64_t write_jobs;      /* of which STORE_WRITE or STORE_WRITE_DURABLE */
	uint64_t read_jobs;       /* of which STORE_READ */
	uint64_t commits;         /* write transactions committed: one per group of write jobs */
	uint64_t durable_commits; /* of which fsynced (a durable job was in the group) */
	uint64_t failed_commits;  /* groups whose every job got -1 */
	uint64_t read_batches;    /* read transactions */
	uint64_t max_batch;       /* most write jobs in one commit */
};
void store_stats(struct store *store, struct store_stats *stats_r);

/* The schema version in force (the highest migration applied). */
int store_schema_version(struct store_tx *tx, int *version_r);

/* ---- time and identifiers (helpers usable from jobs) ---- */

/* A new random identifier "<prefix>_<20 base32 chars>", e.g. "usr_k3j...". */
void store_new_id(const char *prefix, char out[MT_ID_MAX]);

/* ---- orgs ---- */

struct store_org {
	char id[MT_ID_MAX];
	char name[MT_NAME_MAX + 1];
	char domains[MT_ORG_DOMAINS_MAX][MT_HOST_FIELD_MAX + 1]; /* lower case, ASCII (IDNA) */
	size_t domain_count;
	bool custom_smtp, imap_sync, bcc_sync; /* features, all off in a new org */
	int64_t created_at;
};

int store_org_create(struct store_tx *tx, struct store_org *org); /* fills id, created_at */
int store_org_get(struct store_tx *tx, const char *org_id, struct store_org *org_r);
/* Replaces domains and features (the name is the operator's). */
int store_org_update(struct store_tx *tx, const struct store_org *org);

/* ---- users and tokens ---- */

enum store_role { STORE_ROLE_USER, STORE_ROLE_ADMIN };

struct store_user {
	char id[MT_ID_MAX];
	char org_id[MT_ID_MAX];
	char email[MT_ADDRESS_MAX + 1]; /* normalised */
	char name[MT_NAME_MAX + 1];
	enum store_role role;
	bool active;
	char aliases[MT_ALIASES_MAX][MT_ADDRESS_MAX + 1]; /* normalised */
	size_t alias_count;
	int64_t created_at;
};

/* Fills id and created_at. STORE_CONFLICT when the email or an alias already belongs to another
 * user of the org. */
int store_user_create(struct store_tx *tx, struct store_user *user);
int store_user_get(struct store_tx *tx, const char *org_id, const char *user_id,
                   struct store_user *user_r);
/* Replaces name, role, aliases. STORE_CONFLICT as for create. */
int store_user_update(struct store_tx *tx, const struct store_user *user);
/* Marks the user inactive, revokes its tokens, turns its SMTP account off (secret wiped). */
int store_user_deactivate(struct store_tx *tx, const char *org_id, const char *user_id);
/* The active user (of any org) whose address or alias this is within `org_id`;
 * STORE_NOT_FOUND otherwise. */
int store_user_by_address(struct store_tx *tx, const char *org_id, const char *address,
                          struct store_user *user_r);

struct store_token {
	char id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	char org_id[MT_ID_MAX];
	unsigned char hash[32]; /* SHA-256 of the token text; the token itself is never stored */
	int64_t created_at;
};

int store_token_create(struct store_tx *tx, struct store_token *token); /* fills id */
/* The token with this hash, if neither it nor its user is revoked/deactivated; fills the user
 * too. STORE_NOT_FOUND otherwise. */
int store_token_authenticate(struct store_tx *tx, const unsigned char hash[32],
                             struct store_token *token_r, struct store_user *user_r);
/* Revokes a token of this user. */
int store_token_revoke(struct store_tx *tx, const char *user_id, const char *token_id);

/* ---- profiles ---- */

enum store_profile_kind { STORE_PROFILE_APPLICANT, STORE_PROFILE_CONTACT, STORE_PROFILE_EMPLOYEE };

struct store_profile {
	char id[MT_ID_MAX];
	char org_id[MT_ID_MAX];
	enum store_profile_kind kind;
	char name[MT_NAME_MAX + 1];
	char emails[MT_PROFILE_EMAILS_MAX][MT_ADDRESS_MAX + 1]; /* normalised, distinct */
	size_t email_count;
	int64_t created_at;
	int64_t updated_at;
};

int store_profile_create(struct store_tx *tx, struct store_profile *profile); /* fills id */
int store_profile_get(struct store_tx *tx, const char *org_id, const char *profile_id,
                      struct store_profile *profile_r);
/* Replaces kind, name and emails. */
int store_profile_update(struct store_tx *tx, const struct store_profile *profile);
/* Deletes the profile, its addresses (and, once they exist, its activities). */
int store_profile_delete(struct store_tx *tx, const char *org_id, const char *profile_id);

struct store_profile_list {
	struct store_profile *items;
	size_t count;
	char next_cursor[MT_ID_MAX + 8]; /* "" on the last page */
};

/* Profiles of the org in id order, after `cursor` (NULL/"" = from the start), at most `limit`.
 * With a non-empty `query`: those whose lower-cased name or one of whose addresses starts with
 * the lower-cased query. */
int store_profile_list(struct store_tx *tx, const char *org_id, const char *query,
                       const char *cursor, size_t limit, struct store_profile_list *list_r);
void store_profile_list_free(struct store_profile_list *list);

/* The ids of the org's profiles having this normalised address (the address index). Fills up
 * to `max` ids and returns how many there are in *count_r. */
int store_profiles_by_address(struct store_tx *tx, const char *org_id, const char *address,
                              char (*ids_r)[MT_ID_MAX], size_t max, size_t *count_r);

/* ---- SMTP accounts (one per user) ---- */

enum store_account_state { STORE_ACCOUNT_OFF, STORE_ACCOUNT_CONNECTED, STORE_ACCOUNT_DISCONNECTED };

struct store_send_limit {
	int64_t limit;
	int window_s; /* 60, 3600, 86400 */
};

struct store_smtp_account {
	char user_id[MT_ID_MAX];
	char org_id[MT_ID_MAX];
	enum store_account_state state;
	char preset[32];
	char host[MT_HOST_FIELD_MAX + 1];
	int port;
	char security[16]; /* "starttls" | "tls" | "none" */
	char auth[16];     /* "password" | "xoauth2" | "none" */
	char username[MT_ADDRESS_MAX + 1];
	char from_address[MT_ADDRESS_MAX + 1];
	struct store_send_limit limits[MT_SEND_LIMITS_MAX];
	size_t limit_count;
	char tls_fingerprint[MT_TLS_FINGERPRINT_MAX];
	unsigned char sealed_secret[MT_SEALED_MAX]; /* src/crypto's sealed form; never plaintext */
	size_t sealed_secret_len;
	int64_t verified_at;
	char confirmation_message_id[MT_ADDRESS_MAX + 1];
	char last_error[MT_ERROR_TEXT_MAX];
	int64_t updated_at;
};

/* STORE_NOT_FOUND when the user never set one up (the API shows state "off"). */
int store_smtp_account_get(struct store_tx *tx, const char *org_id, const char *user_id,
                           struct store_smtp_account *account_r);
/* Inserts or replaces the user's account. */
int store_smtp_account_put(struct store_tx *tx, const struct store_smtp_account *account);
/* Changes the limits only. */
int store_smtp_account_set_limits(struct store_tx *tx, const char *org_id, const char *user_id,
                                  const struct store_send_limit *limits, size_t count);
/* State off, secret wiped (the other settings are kept for the form). */
int store_smtp_account_off(struct store_tx *tx, const char *org_id, const char *user_id);

#endif
