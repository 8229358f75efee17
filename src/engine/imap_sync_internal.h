/* IMAP auto sync, shared by its files (engine/imap_sync.c and the imap_sync_*.c beside it, and
 * engine/imap_syncer.c): the session, the syncer and the store job, and the functions one file
 * calls in another. Not for anything outside the sync.
 *
 * Ownership: the syncer owns its sessions and hosts; a session owns its account, connections,
 * timers, UIDs and the chunks in its pipeline, except those on a worker or in the store, which
 * their completion frees once the session's generation moved on. */
#ifndef MT_ENGINE_IMAP_SYNC_INTERNAL_H
#define MT_ENGINE_IMAP_SYNC_INTERNAL_H

#include "engine/imap_cursor.h"
#include "engine/imap_sync.h"
#include "engine/imap_sync_account.h"
#include "engine/imap_sync_sched.h"
#include "engine/matcher.h"
#include "imap/client.h"
#include "store/store.h"
#include "store/store_imap.h"
#include "store/store_org.h"
#include "store/store_user.h"

#include <event2/util.h>
#include <stdbool.h>
#include <stdint.h>

#define NOTICE_SUBJECT "Your IMAP mailbox was disconnected"

enum session_state { S_LOADING, S_SYNCING, S_WATCHING, S_WAITING, S_STOPPED, S_COUNT };

/* A server host: its bucket of new logins and its logins in progress. */
struct sync_host {
	struct sync_host *next;
	char name[MT_HOST_FIELD_MAX + 1];
	struct imap_bucket bucket;
	unsigned logins;
};

/* One of the syncer's logins in progress (and one of its host's): held by a connection from
 * connect until it is ready or gone, so that servers that accept and then stall hold only
 * their share of the caps. */
struct login_slot {
	bool held;
	struct sync_host *host;
};

struct session {
	struct imap_syncer *syncer;
	struct session *next;
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	enum session_state state;
	uint64_t gen;
	struct imap_sync_account *account; /* as loaded, sealed secret included; NULL before */
	struct imap_client *client;
	struct event *timer;
	struct event *poll;
	/* ends a group's wait (MT_IMAP_SYNC_GROUP_WAIT_MS) when nothing else moves the pass on */
	struct event *group_timer;
	unsigned failures;
	bool auth_failed_once;
	struct login_slot login; /* the main connection's, from connect until ready */
	bool login_pending;      /* WAITING for a login slot or a token, the account loaded */
	bool disconnecting; /* stopped by a confirmed auth failure: a re-scan leaves it alone */
	/* On an OAuth grant: the broker's token for the next login, asked for before each; a
	 * refused one gets one forced refresh and one more login before the confirm story. */
	struct oauth_broker_ask *token_ask;
	struct mt_secret *token;
	int64_t token_fence;   /* of the token of the last login */
	int64_t refused_fence; /* -1: none */
	bool token_retried;
	bool again;        /* a pass was asked for during this one */
	int64_t exists_ms; /* the EXISTS that started this pass (monotonic), 0: none */
	bool seen;         /* a re-scan found the account */
	uint64_t epoch;    /* the syncer's re-scan epoch when the session last started */
	/* the second connection: IDLE on the second folder (Sent) instead of polling it */
	struct imap_client *watch;
	struct login_slot watch_login; /* the second connection counts like any login */
	bool watch_idle;               /* its EXAMINE answered: EXISTS from now on is new mail */
	unsigned watch_failures;
	int64_t watch_retry_ms;
	struct oauth_broker_ask *watch_ask; /* on a grant: the watch's own token, one per login */
	struct mt_secret *watch_token;
	/* the pass */
	size_t folder;
	uint32_t uidvalidity, uidnext;
	uint64_t modseq;
	struct imap_cursor_decision decision;
	uint32_t *uids;
	size_t uid_count, uid_pos;
	bool reset_pending;
	/* A full pass with a `since`: UID SEARCH ALL, then the oldest message's INTERNALDATE
	 * decides (imap_cursor_since_covers) between every UID with the older few dropped as they
	 * come (since_filter) and UID SEARCH SINCE. */
	bool since_probe, probe_covers, since_filter;
	uint32_t cursor_floor; /* where the pass's chunks so far leave the folder's cursor */
	int64_t modseq_kept;   /* the HIGHESTMODSEQ chunks store until the folder is complete */
	/* The pass's chunks in UID order (at most MT_IMAP_SYNC_PIPELINE): the newest may be
	 * fetching (up to MT_IMAP_SYNC_FETCHES of them, their UID FETCH commands overlapping), the
	 * oldest storing. Each is a store job the session detaches from when it is
	 * halted (the generation): one on a worker or in the store is freed by its completion. */
	struct sync_job *chunks[MT_IMAP_SYNC_PIPELINE];
	size_t chunk_count;
	unsigned fetching; /* chunks whose UID FETCH is running (the newest ones) */
	bool fetch_oom;    /* an answer could not be kept: the pass starts over */
	/* chunks done with, kept for the pass's next ones (their arrays are large) */
	struct sync_job *spare[MT_IMAP_SYNC_PIPELINE];
	size_t spare_count;
};

struct imap_syncer {
	struct imap_syncer_params p;
	struct session *sessions;
	unsigned logins;             /* sessions between connect and ready */
	unsigned per_state[S_COUNT]; /* the gauge */
	bool closing;
	struct sync_host *hosts;
	size_t host_count;
	struct event *rescan;
	uint64_t epoch;      /* re-scans submitted */
	bool rescan_running; /* one at a time */
	bool rescan_again;   /* asked for while one ran */
};

enum job_kind { JOB_LOAD, JOB_CHUNK, JOB_REPORT, JOB_DISCONNECT_LOAD, JOB_DISCONNECT };

/* A chunk's way: its answers copied on the loop, its messages converted on a worker, then its
 * store job; chunks are stored one at a time, in order, so that a chunk's cursor never commits
 * before the chunk below it (one that fails stops the pass before the next is submitted). */
enum chunk_stage { C_FETCHING, C_CONVERTING, C_CONVERTED, C_STORING };

struct chunk_skip {
	uint32_t uid;
	const char *reason; /* static */
};

struct sync_job {
	struct session *s;
	uint64_t gen;
	enum job_kind kind;
	struct store_org org;
	struct store_user user;
	struct store_imap_account account;
	/* CHUNK: the answers, the messages converted from them (`own_count` of `own` to free; the
	 * store reads `count` of them through `msgs`), the ones skipped */
	enum chunk_stage stage;
	size_t uid_begin, uid_end; /* its UIDs: the session's uids[uid_begin..uid_end) */
	int64_t converted_ms;      /* when it became C_CONVERTED (sync_mono_ms) */
	struct imap_batch *batch;
	struct store_message *own;
	size_t own_count;
	const struct store_message **msgs;
	size_t count;
	struct matcher_result *results;
	struct chunk_skip *skipped;
	size_t skipped_count;
	char folder[MT_IMAP_MAILBOX_MAX];
	int64_t uidvalidity, last_uid, modseq;
	bool reset;
	bool fenced; /* the account changed meanwhile: nothing written */
	/* CHUNK: the next chunk stored in the same transaction (pipeline_next), NULL: none */
	struct sync_job *group_next;
	/* REPORT */
	int64_t last_sync_at;
	char last_error[MT_ERROR_TEXT_MAX];
	/* DISCONNECT */
	char text[MT_NOTIFICATION_TEXT_MAX + 1];
	char *body;
	size_t body_len;
	bool changed, mailed;
	int found; /* LOAD: 0, or STORE_NOT_FOUND */
};

/* engine/imap_sync.c: the sessions */
int64_t sync_mono_ms(void);
struct sync_host *sync_host_get(struct imap_syncer *syncer, const char *name, int64_t now);
void sync_set_state(struct session *s, enum session_state state);
void sync_observe_lag(struct session *s);
void sync_slot_take(struct imap_syncer *syncer, struct login_slot *slot, struct sync_host *host);
void sync_slot_release(struct imap_syncer *syncer, struct login_slot *slot);
void sync_session_halt(struct session *s);
void sync_session_stop(struct session *s, const char *why);
struct session *sync_session_create(struct imap_syncer *syncer, const char *org_id,
                                    const char *user_id);
struct session *sync_session_get(struct imap_syncer *syncer, const char *org_id,
                                 const char *user_id);
int64_t sync_backoff_ms(unsigned failures);
void sync_session_retry(struct session *s, const char *why);
void sync_disconnect_loaded(struct sync_job *job);
struct imap_client *sync_client_open(struct session *s, struct mt_secret **token,
                                     const struct imap_client_callbacks *callbacks,
                                     const char **error_r);
bool sync_session_on_grant(const struct session *s);
void sync_session_loaded(struct sync_job *job);
void sync_session_start(struct session *s);
void sync_session_changed(struct session *s);

/* engine/imap_sync_jobs.c: the store jobs */
void sync_chunk_empty(struct sync_job *job);
void sync_job_free(struct sync_job *job);
int sync_job_run(struct store_tx *tx, void *arg);
struct sync_job *sync_job_new(struct session *s, enum job_kind kind);
int sync_job_submit(struct sync_job *job, enum store_job_kind kind);
void sync_job_done(void *arg, int result);

/* engine/imap_sync_pass.c: the pass */
void sync_release_chunks(struct session *s);
void sync_chunks_drop(struct session *s);
void sync_on_group_timer(evutil_socket_t fd, short what, void *arg);
void sync_chunk_pop(struct session *s);
void sync_group_stored(struct session *s, struct sync_job *job);
void sync_report_done(struct sync_job *job);
void sync_pass_begin(struct session *s);

/* engine/imap_sync_watch.c: the second connection */
void sync_watch_close(struct session *s);
void sync_poll_later(struct session *s);
void sync_watch_start(struct session *s);

#endif
