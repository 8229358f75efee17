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
#define STORE_INVALID   3 /* an argument the store cannot use (a malformed cursor) */

/* ---- life cycle ---- */

/* Opens (creating if needed) the store at `url`: a file path for SQLite or "postgresql://...".
 * Applies pending migrations. `base` may be NULL for synchronous use only (CLI init, tools,
 * tests); with a base, job completions are delivered on that loop. NULL with *error_r. */
struct store *store_open(const char *url, struct event_base *base, const char **error_r);
/* Finishes queued jobs, stops the thread, closes the database. */
void store_close(struct store **store);

/* ---- jobs ---- */

enum store_job_kind {
	STORE_READ = 0,          /* no writes; may run without a write transaction */
	STORE_WRITE = 1,         /* group-committed; completion after commit */
	STORE_WRITE_DURABLE = 2, /* as WRITE, and the commit is fsynced before completion */
	/* Or'd into a write kind: the job may be run again. A group of write jobs runs with a
	 * savepoint around each (SQLite copies every page a job changes into its sub-journal); a
	 * group whose jobs are all replayable runs without, and when one of them fails the whole
	 * transaction is rolled back and the jobs that had succeeded are run again (with the
	 * savepoints). A replayable job reads its inputs from `arg` and the database only, and
	 * sets its outputs in `arg` afresh on every run (never adds to them, frees what a run
	 * before left there); the failed job itself is not run again. */
	STORE_REPLAYABLE = 4,
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
	uint64_t checkpoints;     /* write-ahead log checkpoints run by the checkpoint thread */
	uint64_t replays;         /* groups run again after a replayable job failed */
};
void store_stats(struct store *store, struct store_stats *stats_r);

/* The schema version in force (the highest migration applied). */
int store_schema_version(struct store_tx *tx, int *version_r);

/* ---- time and identifiers (helpers usable from jobs) ---- */

/* A new random identifier "<prefix>_<20 base32 chars>", e.g. "usr_k3j...". */
void store_new_id(const char *prefix, char out[MT_ID_MAX]);
/* The same shape, but ids made later sort after (10 characters of wall-clock milliseconds,
 * then 50 random bits): rows keyed by them are appended to their b-trees instead of landing
 * on a random page each, which is what a busy table's commits write. For ids minted at a
 * high rate (outbox messages); they tell their creation time, which the API shows anyway. */
void store_new_ordered_id(const char *prefix, char out[MT_ID_MAX]);

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
/* Marks the user active again; *was_inactive_r tells whether it was inactive. Its old tokens
 * stay revoked and its SMTP account off: the caller gives it a new token. */
int store_user_reactivate(struct store_tx *tx, const char *org_id, const char *user_id,
                          bool *was_inactive_r);
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
/* Deletes the profile, its addresses and its activities, then the message records left without
 * any activity that have one of its addresses as a participant (right to erasure). */
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

/* ---- messages, activities, never-log (DESIGN.md §1) ----
 *
 * A message record is the compact form of one message seen by any source, kept for
 * record_retention_days so that a profile created later gets its mail (backfill). It is found
 * by its aliases ("mid:<Message-ID>", "mt:<X-Mailtrail-Id>", "sha:<digest>"): every alias of a
 * message points to one canonical key, so our own message is one record whether a copy shows
 * its Message-ID, its X-Mailtrail-Id or both. Activities are (profile, key) pairs — exactly one
 * per profile and message — and take their content from the record. Every change to an
 * activity (created, content replaced by a stronger source, a user added) gives it a new feed
 * sequence number, assigned in commit order. */

enum store_source {
	STORE_SOURCE_ADDIN = 1, /* trust grows with the value: outbox > imap > bcc > addin */
	STORE_SOURCE_BCC = 2,
	STORE_SOURCE_IMAP = 3,
	STORE_SOURCE_OUTBOX = 4,
};
const char *store_source_name(enum store_source source); /* "addin", "bcc", "imap", "outbox" */
/* The source of a name store_source_name() gives; 0 (no source) for anything else. */
enum store_source store_source_parse(const char *name);

enum store_activity_type { STORE_EMAIL_SENT, STORE_EMAIL_RECEIVED };

struct store_mailbox {
	char address[MT_ADDRESS_MAX + 1]; /* normalised */
	char name[MT_NAME_MAX + 1];
};

struct store_attachment {
	char name[MT_ATTACHMENT_NAME_MAX + 1];
	char type[MT_CONTENT_TYPE_MAX + 1];
	int64_t size;
};

/* A message as the matcher hands it to the store. Arrays are borrowed from the caller. */
struct store_message {
	char aliases[MT_MESSAGE_ALIASES_MAX][MT_MESSAGE_KEY_MAX];
	size_t alias_count;
	char message_id[MT_MESSAGE_ID_MAX + 1];
	int64_t date;
	struct store_mailbox from;
	const struct store_mailbox *to, *cc, *bcc;
	size_t to_count, cc_count, bcc_count;
	char subject[MT_SUBJECT_MAX + 1];
	char snippet[MT_SNIPPET_BYTES + 1];
	const struct store_attachment *attachments;
	size_t attachment_count;
};

/* Finds the canonical key of a message by any of its aliases; STORE_NOT_FOUND when none is
 * known. *source_r is the source of the record's current content. When the aliases lead to two
 * records (copies seen out of order: one by Message-ID, one by X-Mailtrail-Id), a write job
 * merges them into the one with the more trusted content: one message, one activity per
 * profile (numbered parameters ?N in its SQL). */
int store_message_lookup(struct store_tx *tx, const char *org_id, const struct store_message *msg,
                         char key_r[MT_MESSAGE_KEY_MAX], enum store_source *source_r);
/* Creates the record (key = its first alias) or, for an existing key, adds missing aliases and
 * participants and — when `source` is more trusted than the stored one — replaces the content.
 * `type` is stored with the record (the org-wide direction rule). *content_replaced_r tells
 * whether an existing record's content changed; *date_r is the record's date afterwards (its
 * activities copy it); *record_r its number, which the calls below take (valid within the
 * transaction; a number never leaves the store). */
int store_message_put(struct store_tx *tx, const char *org_id, const char *key,
                      enum store_source source, enum store_activity_type type,
                      const struct store_message *msg, bool *content_replaced_r, int64_t *date_r,
                      int64_t *record_r);
/* Records that `user_id` (one of the record's org) saw record `record`; *added_r false when it
 * already had. */
int store_message_add_user(struct store_tx *tx, int64_t record, const char *user_id, bool *added_r);
/* Creates the activity (profile, key) if missing; *created_r tells which. */
int store_activity_ensure(struct store_tx *tx, const char *org_id, const char *profile_id,
                          const char *key, bool *created_r);
/* store_activity_ensure for the profiles of one message at once (one feed reservation):
 * *created_r counts the new activities; a profile that is not the org's gets none. */
int store_activities_ensure(struct store_tx *tx, const char *org_id,
                            const char (*profile_ids)[MT_ID_MAX], size_t count, const char *key,
                            size_t *created_r);
/* The matcher's step, right after store_message_put wrote record number `record` dated `date`:
 * every profile of the org having one of `addresses` gets its activity
 * (store_profiles_by_address and store_activities_ensure in one pass). *profiles_r counts the
 * distinct profiles found, *created_r the new activities; found_r (NULL, or `count` entries)
 * tells which addresses belong to a profile. */
int store_activities_for_addresses(struct store_tx *tx, const char *org_id, int64_t record,
                                   int64_t date, const char *const *addresses, size_t count,
                                   size_t *profiles_r, size_t *created_r, bool *found_r);
/* Gives every activity of record number `record` (the org's) a new feed position (its content
 * or users changed). */
int store_activities_touch(struct store_tx *tx, const char *org_id, int64_t record);
/* True (1) when the address or alias belongs to a user of the org (active or not), else 0;
 * -1 on error. */
int store_address_is_user(struct store_tx *tx, const char *org_id, const char *address);
/* The canonical keys of records having this participant address (for backfill), newest first,
 * up to `max`; *count_r is how many were filled. */
int store_message_keys_by_address(struct store_tx *tx, const char *org_id, const char *address,
                                  char (*keys_r)[MT_MESSAGE_KEY_MAX], size_t max, size_t *count_r);
/* The participant addresses (From, To, Cc, Bcc) of a record in address order, up to `max`;
 * *count_r is how many were filled. An unknown key has none. */
int store_message_participants(struct store_tx *tx, const char *org_id, const char *key,
                               char (*addresses_r)[MT_ADDRESS_MAX + 1], size_t max,
                               size_t *count_r);
/* Deletes records last seen before `before` (unix seconds) that no activity uses — those kept
 * only for backfill — in every org (a maintenance job). A record with activities is their
 * content and stays with them. *deleted_r counts the records. */
int store_messages_purge(struct store_tx *tx, int64_t before, size_t *deleted_r);

struct store_activity {
	char id[MT_ID_MAX];
	char profile_id[MT_ID_MAX];
	enum store_activity_type type;
	enum store_source source;
	char key[MT_MESSAGE_KEY_MAX];
	char message_id[MT_MESSAGE_ID_MAX + 1];
	char subject[MT_SUBJECT_MAX + 1];
	int64_t date;
	char from_address[MT_ADDRESS_MAX + 1];
	char from_name[MT_NAME_MAX + 1];
	char *to_json;          /* [{"address","name"}], malloc'd */
	char *cc_json;          /* same */
	char *attachments_json; /* [{"name","type","size"}] */
	char *users_json;       /* [{"id","email"}] */
	char snippet[MT_SNIPPET_BYTES + 1];
	int64_t seq; /* feed position */
	int64_t created_at, updated_at;
};

struct store_activity_list {
	struct store_activity *items;
	size_t count;
	char next_cursor[64]; /* "" when there is no next page (profile timelines) */
};
void store_activity_list_free(struct store_activity_list *list);

/* A profile's timeline, newest first (by message date, then id); cursor from the previous
 * page. STORE_NOT_FOUND when the profile is not the org's, STORE_INVALID when the cursor is
 * not one this function made. */
int store_profile_activities(struct store_tx *tx, const char *org_id, const char *profile_id,
                             const char *cursor, size_t limit, struct store_activity_list *list_r);
/* The org's feed: activities whose seq > since, in seq order; next_cursor is always set (the
 * last seq returned, or `since` when the page is empty). */
int store_activity_feed(struct store_tx *tx, const char *org_id, int64_t since, size_t limit,
                        struct store_activity_list *list_r);
/* The activities of one message (the add-in's answer). */
int store_message_activities(struct store_tx *tx, const char *org_id, const char *key,
                             struct store_activity_list *list_r);

/* Never-log lists: an entry is a normalised address or a domain (covering its subdomains). */
enum store_never_log_scope { STORE_NEVER_LOG_ORG, STORE_NEVER_LOG_USER };
struct store_never_log {
	char (*entries)[MT_ADDRESS_MAX + 1];
	size_t count;
};
int store_never_log_get(struct store_tx *tx, const char *org_id, enum store_never_log_scope scope,
                        const char *user_id, struct store_never_log *list_r);
int store_never_log_put(struct store_tx *tx, const char *org_id, enum store_never_log_scope scope,
                        const char *user_id, const struct store_never_log *list);
void store_never_log_free(struct store_never_log *list);

/* ---- the outbox (DESIGN.md §1 Message) ----
 *
 * A message is stored durably with its built MIME bytes and one row per recipient before the API
 * answers 202. The sender claims due messages under a lease: lease_owner is the node's id,
 * lease_token a number every later state change must present (fencing: a node whose lease was
 * taken over cannot overwrite the new owner's result). A node that restarts takes back its own
 * leases at once (store_outbox_release_owner). */

enum store_outbox_state {
	STORE_OUTBOX_QUEUED,
	STORE_OUTBOX_HELD,
	STORE_OUTBOX_SENDING,
	STORE_OUTBOX_SENT,
	STORE_OUTBOX_PARTIAL,
	STORE_OUTBOX_FAILED,
	STORE_OUTBOX_CANCELLED,
};
const char *store_outbox_state_name(enum store_outbox_state state);

enum store_rcpt_kind { STORE_RCPT_TO, STORE_RCPT_CC, STORE_RCPT_BCC };
enum store_rcpt_state { STORE_RCPT_PENDING, STORE_RCPT_SENT, STORE_RCPT_FAILED };

struct store_outbox_rcpt {
	char address[MT_ADDRESS_MAX + 1];
	char name[MT_NAME_MAX + 1];
	enum store_rcpt_kind kind;
	enum store_rcpt_state state;
	char reply[512];
};

struct store_outbox_message {
	char id[MT_ID_MAX];
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	char campaign_id[MT_ID_MAX]; /* "" when not part of a campaign */
	enum store_outbox_state state;
	char route[8]; /* "custom" | "relay" */
	char idempotency_key[128];
	char mail_from[MT_ADDRESS_MAX + 1]; /* envelope sender */
	struct store_mailbox from;          /* the From header's mailbox (for the activity) */
	char subject[MT_SUBJECT_MAX + 1];
	char message_id[MT_MESSAGE_ID_MAX + 1];
	char mailtrail_id[MT_MESSAGE_ID_MAX + 1];
	char snippet[MT_SNIPPET_BYTES + 1];
	char *attachments_json; /* [{"name","type","size"}], malloc'd; NULL = [] */
	char *body;             /* the MIME bytes, malloc'd; NULL once purged */
	size_t body_len;
	int attempts;
	int64_t first_attempt_at; /* 0 before the first attempt */
	int64_t next_attempt_at;
	int64_t held_seconds; /* time spent held, excluded from retry_expiry */
	char last_error[MT_ERROR_TEXT_MAX];
	char last_class[16];
	char lease_owner[MT_ID_MAX];
	int64_t lease_token;
	int64_t lease_expires;
	int64_t created_at, updated_at, sent_at;
	struct store_outbox_rcpt *rcpts; /* malloc'd */
	size_t rcpt_count;
};
void store_outbox_message_free(struct store_outbox_message *message);

/* Stores a new message (state queued, or held) with its recipients; fills id and created_at.
 * With an idempotency key already used by this user within 24 h: STORE_CONFLICT and *id_r is the
 * first message's id (its result is the answer). */
int store_outbox_enqueue(struct store_tx *tx, struct store_outbox_message *message,
                         char existing_id_r[MT_ID_MAX]);
/* The message with its recipients (body not loaded). STORE_NOT_FOUND unless it is this user's. */
int store_outbox_get(struct store_tx *tx, const char *org_id, const char *user_id, const char *id,
                     struct store_outbox_message *message_r);
/* queued/held -> cancelled; STORE_CONFLICT when it is already sending or final. */
int store_outbox_cancel(struct store_tx *tx, const char *org_id, const char *user_id,
                        const char *id);
/* Claims up to `max` messages due at `now` (queued, next_attempt_at <= now; or sending with an
 * expired lease) for `owner`, with a new lease token each, lease until now + lease_s; loads them
 * with bodies and only their pending recipients. *count_r messages are in messages_r (array of
 * `max`, caller-provided; free each with store_outbox_message_free). */
int store_outbox_claim(struct store_tx *tx, const char *owner, int64_t now, int64_t lease_s,
                       size_t max, struct store_outbox_message *messages_r, size_t *count_r);
/* Extends every lease `owner` holds on messages still sending, until `until`. */
int store_outbox_renew(struct store_tx *tx, const char *owner, int64_t until);
/* A restarted node: its own leases go back to queued at once. *count_r how many. */
int store_outbox_release_owner(struct store_tx *tx, const char *owner, size_t *count_r);

/* The outcome of one attempt. Recipients are matched by address among the pending ones. */
struct store_outbox_result {
	const char *id;
	int64_t lease_token;
	enum store_outbox_state state; /* sent, partial, failed, or queued for a retry */
	int64_t next_attempt_at;       /* for queued */
	int64_t first_attempt_at;      /* set on the first attempt */
	const char *last_error;
	const char *last_class;
	const struct store_outbox_rcpt *rcpts; /* address, state, reply */
	size_t rcpt_count;
	int64_t sent_at;
};
/* Applies a result, fenced by the lease token: STORE_CONFLICT when the lease was lost (another
 * node owns the message now; nothing is changed). */
int store_outbox_finish(struct store_tx *tx, const struct store_outbox_result *result);

/* Recipients accepted for this user's mail on `route` since `since` (the rolling send
 * windows: DESIGN.md counts limits in accepted recipients), and the earliest such send
 * (*oldest_r, 0 when none). */
int store_outbox_sent_since(struct store_tx *tx, const char *org_id, const char *user_id,
                            const char *route, int64_t since, int64_t *count_r, int64_t *oldest_r);

/* Messages per state (for /metrics). */
int store_outbox_counts(struct store_tx *tx, int64_t counts_r[STORE_OUTBOX_CANCELLED + 1]);
/* The earliest next_attempt_at of a queued message (0 when none): the sender's next wake-up. */
int store_outbox_next_due(struct store_tx *tx, int64_t *when_r);
/* Drops the bodies of final messages older than `before`; metadata and activities stay. */
int store_outbox_purge_bodies(struct store_tx *tx, int64_t before, size_t *purged_r);

#endif
