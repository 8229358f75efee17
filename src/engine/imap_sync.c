/* IMAP auto sync: one session per account on the loop. See engine/imap_sync.h.
 *
 * A session's states: LOADING (the account read from the store), SYNCING (a pass over the
 * folders), WATCHING (INBOX under IDLE), WAITING (a timer: back-off, or the pause before the
 * confirming login), STOPPED. Every store job carries the session's generation: a job that
 * completes after the session was restarted or stopped changes nothing. */
#include "engine/imap_sync.h"

#include "config/config.h"
#include "engine/imap_account.h"
#include "engine/imap_cursor.h"
#include "engine/imap_message.h"
#include "engine/imap_sync_account.h"
#include "engine/imap_sync_sched.h"
#include "engine/matcher.h"
#include "engine/oauth_broker.h"
#include "engine/notify.h"
#include "imap/client.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/str.h"
#include "store/store.h"
#include "store/store_imap.h"
#include "store/store_notification.h"
#include "store/store_org.h"
#include "store/store_user.h"
#include "work/work.h"

#include <event2/event.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NOTICE_SUBJECT "Your IMAP mailbox was disconnected"

enum session_state { S_LOADING, S_SYNCING, S_WATCHING, S_WAITING, S_STOPPED };
static const char *const state_names[] = {"loading", "syncing", "watching", "waiting", "stopped"};

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
	uint32_t cursor_floor; /* where the pass's chunks so far leave the folder's cursor */
	int64_t modseq_kept;   /* the HIGHESTMODSEQ chunks store until the folder is complete */
	/* The pass's chunks in UID order (at most MT_IMAP_SYNC_PIPELINE): the newest may be
	 * fetching, the oldest storing. Each is a store job the session detaches from when it is
	 * halted (the generation): one on a worker or in the store is freed by its completion. */
	struct sync_job *chunks[MT_IMAP_SYNC_PIPELINE];
	size_t chunk_count;
	bool fetching;  /* the newest chunk's UID FETCH is running */
	bool fetch_oom; /* an answer could not be kept: the pass starts over */
	size_t chunk_end;
	/* chunks done with, kept for the pass's next ones (their arrays are large) */
	struct sync_job *spare[MT_IMAP_SYNC_PIPELINE];
	size_t spare_count;
};

struct imap_syncer {
	struct imap_syncer_params p;
	struct session *sessions;
	unsigned logins; /* sessions between connect and ready */
	unsigned per_state[sizeof(state_names) / sizeof(state_names[0])]; /* the gauge */
	bool closing;
	struct sync_host *hosts;
	size_t host_count;
	struct event *rescan;
	uint64_t epoch;      /* re-scans submitted */
	bool rescan_running; /* one at a time */
	bool rescan_again;   /* asked for while one ran */
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The host's entry; forgets idle hosts when the table is full. NULL when it stays full (the
 * login then goes unlimited by host: the global cap still holds). */
static struct sync_host *host_get(struct imap_syncer *syncer, const char *name, int64_t now)
{
	for (struct sync_host *h = syncer->hosts; h != NULL; h = h->next)
		if (strcmp(h->name, name) == 0)
			return h;
	if (syncer->host_count >= MT_IMAP_SYNC_HOSTS_MAX) {
		for (struct sync_host **pp = &syncer->hosts; *pp != NULL;) {
			struct sync_host *h = *pp;
			if (h->logins == 0 &&
			    imap_bucket_idle(&h->bucket, now, MT_IMAP_HOST_LOGINS_PER_S,
			                     MT_IMAP_HOST_LOGINS_BURST)) {
				*pp = h->next;
				free(h);
				syncer->host_count--;
			} else {
				pp = &h->next;
			}
		}
		if (syncer->host_count >= MT_IMAP_SYNC_HOSTS_MAX)
			return NULL;
	}
	struct sync_host *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return NULL;
	mt_strlcpy(h->name, name, sizeof(h->name));
	h->next = syncer->hosts;
	syncer->hosts = h;
	syncer->host_count++;
	return h;
}

static void session_start(struct session *s);
static void pass_begin(struct session *s);
static void poll_later(struct session *s);
static void folder_next(struct session *s);

static void count_state(struct imap_syncer *syncer, enum session_state state, int delta)
{
	syncer->per_state[state] = (unsigned)((int)syncer->per_state[state] + delta);
	mt_metric_set_gauge("mailtrail_imap_sync_sessions", "IMAP sync sessions by state", "state",
	                    state_names[state], NULL, NULL, (double)syncer->per_state[state]);
}

static void set_state(struct session *s, enum session_state state)
{
	if (s->state == state)
		return;
	mt_log(MT_LOG_DEBUG, "imap.sync_state", MT_KV("user", s->user_id),
	       MT_KV("from", state_names[s->state]), MT_KV("to", state_names[state]));
	count_state(s->syncer, s->state, -1);
	count_state(s->syncer, state, 1);
	s->state = state;
}

/* The sync lag: seconds from the EXISTS that started a pass (IDLE on INBOX or Sent) to the
 * commit of each of its chunks holding messages: how long new mail waits to be logged. */
static const double lag_bounds[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};

static void observe_lag(struct session *s)
{
	if (s->exists_ms == 0)
		return;
	mt_metric_observe("mailtrail_imap_sync_lag_seconds",
	                  "Seconds from an IMAP EXISTS (new mail under IDLE) to the commit of its "
	                  "activities",
	                  lag_bounds, sizeof(lag_bounds) / sizeof(lag_bounds[0]), NULL, 0,
	                  (double)(mono_ms() - s->exists_ms) / 1000.0);
}

static void slot_take(struct imap_syncer *syncer, struct login_slot *slot, struct sync_host *host)
{
	slot->held = true;
	slot->host = host;
	syncer->logins++;
	if (host != NULL)
		host->logins++;
}

static void slot_release(struct imap_syncer *syncer, struct login_slot *slot)
{
	if (!slot->held)
		return;
	slot->held = false;
	syncer->logins--;
	if (slot->host != NULL)
		slot->host->logins--;
	slot->host = NULL;
}

static void login_done(struct session *s)
{
	slot_release(s->syncer, &s->login);
}

static void watch_close(struct session *s)
{
	imap_client_free(&s->watch);
	slot_release(s->syncer, &s->watch_login);
	s->watch_idle = false;
	oauth_broker_cancel(&s->watch_ask);
	mt_secret_free(&s->watch_token);
}

static void job_free(struct sync_job *job);
static void chunks_drop(struct session *s);

/* The chunks' arrays (MT_IMAP_SYNC_CHUNK x ~6.6 KB, and the answers' bytes) are held only while
 * a pass runs: an idle account keeps none (bench/sync-idle). */
static void release_chunks(struct session *s)
{
	for (size_t i = 0; i < s->spare_count; i++)
		job_free(s->spare[i]);
	s->spare_count = 0;
}

/* Ends whatever the session was doing: its connection, timers and jobs' claim on it. */
static void session_halt(struct session *s)
{
	s->gen++;
	login_done(s);
	s->login_pending = false;
	s->exists_ms = 0;
	imap_client_free(&s->client);
	watch_close(s);
	evtimer_del(s->timer);
	evtimer_del(s->poll);
	free(s->uids);
	s->uids = NULL;
	s->uid_count = s->uid_pos = 0;
	chunks_drop(s);
	release_chunks(s);
	if (s->account != NULL)
		imap_sync_account_wipe_secret(s->account);
	s->again = false;
	oauth_broker_cancel(&s->token_ask);
	mt_secret_free(&s->token);
}

static void session_stop(struct session *s, const char *why)
{
	session_halt(s);
	if (s->state != S_STOPPED)
		mt_log(MT_LOG_INFO, "imap.sync_stopped", MT_KV("user", s->user_id),
		       MT_KV("why", why));
	set_state(s, S_STOPPED);
}

static struct session *session_find(struct imap_syncer *syncer, const char *user_id)
{
	for (struct session *s = syncer->sessions; s != NULL; s = s->next)
		if (strcmp(s->user_id, user_id) == 0)
			return s;
	return NULL;
}

static void on_timer(evutil_socket_t fd, short what, void *arg);
static void on_poll(evutil_socket_t fd, short what, void *arg);

/* A new session (the caller knows there is none for the user). */
static struct session *session_create(struct imap_syncer *syncer, const char *org_id,
                                      const char *user_id)
{
	struct session *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->syncer = syncer;
	s->state = S_STOPPED;
	s->refused_fence = -1;
	mt_strlcpy(s->org_id, org_id, sizeof(s->org_id));
	mt_strlcpy(s->user_id, user_id, sizeof(s->user_id));
	s->timer = evtimer_new(syncer->p.base, on_timer, s);
	s->poll = evtimer_new(syncer->p.base, on_poll, s);
	if (s->timer == NULL || s->poll == NULL) {
		if (s->timer != NULL)
			event_free(s->timer);
		if (s->poll != NULL)
			event_free(s->poll);
		free(s);
		return NULL;
	}
	s->next = syncer->sessions;
	syncer->sessions = s;
	count_state(syncer, S_STOPPED, 1);
	return s;
}

static struct session *session_get(struct imap_syncer *syncer, const char *org_id,
                                   const char *user_id)
{
	struct session *s = session_find(syncer, user_id);
	return s != NULL ? s : session_create(syncer, org_id, user_id);
}

static void wait_ms(struct session *s, int64_t ms)
{
	set_state(s, S_WAITING);
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(s->timer, &tv);
}

/* Jittered exponential back-off: 1 s, 2 s, 4 s ... capped, each times 0.5 .. 1.5. */
static int64_t backoff_ms(unsigned failures)
{
	return imap_sync_backoff(failures, MT_IMAP_RECONNECT_MIN_MS, MT_IMAP_RECONNECT_MAX_MS,
	                         randombytes_random());
}

static void session_login(struct session *s);

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct session *s = arg;
	if (s->state != S_WAITING)
		return;
	if (s->login_pending) {
		s->login_pending = false;
		set_state(s, S_LOADING);
		session_login(s);
		return;
	}
	session_start(s);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct session *s = arg;
	if (s->state == S_WATCHING)
		pass_begin(s);
}

/* ---- the store jobs ------------------------------------------------------------------------- */

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

static void chunk_empty(struct sync_job *job)
{
	for (size_t i = 0; i < job->own_count; i++)
		matcher_message_free(&job->own[i]);
	job->own_count = job->count = job->skipped_count = 0;
	if (job->batch != NULL)
		imap_batch_clear(job->batch);
}

static void job_free(struct sync_job *job)
{
	chunk_empty(job);
	imap_batch_free(&job->batch);
	sodium_memzero(&job->account, sizeof(job->account));
	free(job->own);
	free(job->msgs);
	free(job->results);
	free(job->skipped);
	free(job->body);
	free(job);
}

static int job_run(struct store_tx *tx, void *arg)
{
	struct sync_job *job = arg;
	struct session *s = job->s;
	int rc;
	switch (job->kind) {
	case JOB_LOAD:
	case JOB_REPORT:
		if (job->kind == JOB_REPORT) {
			rc = store_imap_account_report(tx, s->user_id, job->last_sync_at,
			                               job->last_error);
			if (rc != 0)
				return rc;
		}
		rc = store_org_get(tx, s->org_id, &job->org);
		if (rc == 0)
			rc = store_imap_account_get(tx, s->org_id, s->user_id, &job->account);
		job->found = rc;
		return rc == STORE_NOT_FOUND ? 0 : rc;
	case JOB_CHUNK:
		/* The chunk and those grouped after it, in UID order: each one's cursor and
		 * messages, so the last cursor written is the last chunk's. */
		for (struct sync_job *c = job; c != NULL; c = c->group_next)
			c->fenced = false;
		for (struct sync_job *c = job; c != NULL; c = c->group_next) {
			rc = store_imap_folder_set(tx, s->user_id, c->account.updated_at, c->folder,
			                           c->uidvalidity, c->last_uid, c->modseq,
			                           (int64_t)c->count, c->reset);
			if (rc == STORE_CONFLICT) {
				/* the same account row for all: the first one is fenced, nothing
				 * written */
				for (struct sync_job *f = job; f != NULL; f = f->group_next)
					f->fenced = true;
				return 0;
			}
			if (rc == 0 && c->count > 0)
				rc = matcher_log_messages(tx, s->org_id, s->user_id,
				                          STORE_SOURCE_IMAP, c->msgs, c->count,
				                          c->results);
			if (rc != 0)
				return rc;
		}
		return 0;
	case JOB_DISCONNECT_LOAD:
		rc = store_org_get(tx, s->org_id, &job->org);
		return rc == 0 ? store_user_get(tx, s->org_id, s->user_id, &job->user) : rc;
	case JOB_DISCONNECT:
		job->changed = job->mailed = false;
		rc = store_imap_account_disconnect(tx, &job->account, job->last_error);
		if (rc == STORE_CONFLICT)
			return 0;
		if (rc != 0)
			return rc;
		job->changed = true;
		return notify_record(tx, &job->org, &job->user, &s->syncer->p.relay,
		                     STORE_NOTIFY_IMAP_DISCONNECTED, NOTICE_SUBJECT, job->text,
		                     job->body, job->body_len, &job->mailed);
	}
	return -1;
}

static void job_done(void *arg, int result);

static struct sync_job *job_new(struct session *s, enum job_kind kind)
{
	struct sync_job *job = calloc(1, sizeof(*job));
	if (job != NULL) {
		job->s = s;
		job->gen = s->gen;
		job->kind = kind;
	}
	return job;
}

static int job_submit(struct sync_job *job, enum store_job_kind kind)
{
	if (store_submit(job->s->syncer->p.store, kind, job_run, job_done, job) == 0)
		return 0;
	job_free(job);
	return -1;
}

/* A broken session or a step that cannot go on: reconnect later, from the cursor. */
static void session_retry(struct session *s, const char *why)
{
	session_halt(s);
	s->failures++;
	int64_t ms = backoff_ms(s->failures);
	mt_metric_inc("mailtrail_imap_reconnects_total", "IMAP sync sessions restarted", NULL, NULL,
	              NULL, NULL);
	mt_log(MT_LOG_INFO, "imap.sync_retry", MT_KV("user", s->user_id), MT_KV("why", why));
	wait_ms(s, ms);
}

/* ---- the disconnect ------------------------------------------------------------------------- */

static void disconnect_begin(struct session *s, const char *reason)
{
	/* what the fence compares (user, org, updated_at) and the notice names; not the secret */
	struct store_imap_account seen;
	imap_sync_account_get(s->account, &seen);
	sodium_memzero(seen.sealed_secret, sizeof(seen.sealed_secret));
	seen.sealed_secret_len = 0;
	session_halt(s);
	set_state(s, S_STOPPED);
	s->disconnecting = true;
	struct sync_job *job = job_new(s, JOB_DISCONNECT_LOAD);
	if (job == NULL)
		return;
	job->account = seen;
	snprintf(job->last_error, sizeof(job->last_error), "auth: %.480s", reason);
	if (job_submit(job, STORE_READ) < 0)
		mt_log(MT_LOG_ERROR, "imap.disconnect_failed", MT_KV("user", s->user_id));
}

static void disconnect_loaded(struct sync_job *job)
{
	struct session *s = job->s;
	snprintf(job->text, sizeof(job->text),
	         "IMAP sync of %.200s on %.200s:%d stopped: the server refused the login (%.300s). "
	         "Activities from this mailbox are not logged until you save working settings "
	         "again; mail that arrives meanwhile is logged then.",
	         job->account.username, job->account.host, job->account.port, job->last_error);
	if (s->syncer->p.relay.configured &&
	    notify_mail_build(&job->user, NOTICE_SUBJECT, job->text, &job->body, &job->body_len) <
	        0)
		job->body = NULL;
	job->kind = JOB_DISCONNECT;
	if (store_submit(s->syncer->p.store, STORE_WRITE_DURABLE, job_run, job_done, job) < 0)
		job_free(job);
}

/* ---- client callbacks ----------------------------------------------------------------------- */

static void on_ready(void *ctx)
{
	struct session *s = ctx;
	login_done(s);
	s->failures = 0;
	s->auth_failed_once = false;
	s->token_retried = false;
	mt_log(MT_LOG_DEBUG, "imap.sync_connected", MT_KV("user", s->user_id));
}

static void on_failed(void *ctx, const struct imap_failure *f)
{
	struct session *s = ctx;
	imap_client_free(&s->client);
	if (f->cls == MT_CLASS_AUTH && s->syncer->p.broker != NULL &&
	    s->account->auth == STORE_AUTH_XOAUTH2 && s->account->sealed_secret_len == 0 &&
	    !s->token_retried) {
		/* The grant's token was refused: one forced refresh, one more login. */
		s->token_retried = true;
		session_halt(s);
		s->refused_fence = s->token_fence;
		mt_log(MT_LOG_INFO, "imap.sync_token_refused", MT_KV("user", s->user_id));
		set_state(s, S_LOADING);
		session_login(s);
		return;
	}
	if (f->cls == MT_CLASS_AUTH) {
		if (!s->auth_failed_once) {
			/* Confirmed by a second login on a fresh connection after a pause. */
			s->auth_failed_once = true;
			session_halt(s);
			mt_log(MT_LOG_INFO, "imap.sync_auth_failed", MT_KV("user", s->user_id),
			       MT_KV("reason", f->reason));
			wait_ms(s, (int64_t)s->syncer->p.confirm_delay_s * 1000);
			return;
		}
		disconnect_begin(s, f->reason);
		return;
	}
	char why[300];
	snprintf(why, sizeof(why), "%s: %.250s", mt_class_name(f->cls), f->reason);
	session_retry(s, why);
}

static void on_closed(void *ctx)
{
	(void)ctx;
}

static void on_transcript(void *ctx, char direction, const char *line, size_t len)
{
	struct session *s = ctx;
	/* Debug only: the lines hold addresses and subjects (never a secret: masked by state). */
	if (mt_log_get_level() > MT_LOG_DEBUG)
		return;
	char text[256];
	snprintf(text, sizeof(text), "%c %.*s", direction, (int)(len < 240 ? len : 240), line);
	mt_log(MT_LOG_DEBUG, "imap.sync_transcript", MT_KV("user", s->user_id),
	       MT_KV("line", text));
}

static void on_event(void *ctx, const struct imap_event *ev)
{
	struct session *s = ctx;
	if (ev->kind != IMAP_EVENT_EXISTS)
		return;
	/* Only while watching: an EXISTS during a pass is the answer to its own EXAMINE, and mail
	 * that reaches INBOX after its turn is caught by the check before IDLE
	 * (on_watch_selected). */
	if (s->state == S_WATCHING) {
		s->exists_ms = mono_ms();
		pass_begin(s);
	}
}

/* ---- the pass ------------------------------------------------------------------------------- */

/* A step's answer: false (and the session handled) when the session broke or the step failed. */
static bool step_ok(struct session *s, const struct imap_result *r, const char *what)
{
	if (r->cls == MT_CLASS_NONE)
		return true;
	if (r->cls != MT_CLASS_RESP)
		return false; /* the session broke: `failed` follows */
	char why[300];
	snprintf(why, sizeof(why), "%s refused: %.250s", what, r->response);
	session_retry(s, why);
	return false;
}

static void chunk_fetch(struct session *s);
static void pipeline_next(struct session *s);

/* A chunk for the pass: a spare one, or new. NULL when memory runs out. */
static struct sync_job *chunk_new(struct session *s)
{
	struct sync_job *job;
	if (s->spare_count > 0) {
		job = s->spare[--s->spare_count];
		job->gen = s->gen;
	} else {
		job = job_new(s, JOB_CHUNK);
		if (job == NULL)
			return NULL;
		job->batch = imap_batch_new();
		job->own = calloc(MT_IMAP_SYNC_CHUNK, sizeof(*job->own));
		job->msgs = calloc(MT_IMAP_SYNC_CHUNK, sizeof(*job->msgs));
		job->results = calloc(MT_IMAP_SYNC_CHUNK, sizeof(*job->results));
		job->skipped = calloc(MT_IMAP_SYNC_CHUNK, sizeof(*job->skipped));
		if (job->batch == NULL || job->own == NULL || job->msgs == NULL ||
		    job->results == NULL || job->skipped == NULL) {
			job_free(job);
			return NULL;
		}
	}
	job->stage = C_FETCHING;
	job->fenced = false;
	return job;
}

/* A chunk stored (or never sent anywhere) goes back to the spares. */
static void chunk_recycle(struct session *s, struct sync_job *job)
{
	chunk_empty(job);
	if (s->spare_count < MT_IMAP_SYNC_PIPELINE && !s->syncer->closing)
		s->spare[s->spare_count++] = job;
	else
		job_free(job);
}

/* The session lets go of its chunks: those it holds are freed, those on a worker or in the store
 * are left to their completion, which finds the generation changed and frees them. */
static void chunks_drop(struct session *s)
{
	for (size_t i = 0; i < s->chunk_count; i++) {
		struct sync_job *job = s->chunks[i];
		if (job->stage == C_FETCHING || job->stage == C_CONVERTED)
			job_free(job);
		s->chunks[i] = NULL;
	}
	s->chunk_count = 0;
	s->fetching = false;
	s->fetch_oom = false;
}

static void chunk_pop(struct session *s)
{
	memmove(s->chunks, s->chunks + 1, (s->chunk_count - 1) * sizeof(s->chunks[0]));
	s->chunks[--s->chunk_count] = NULL;
}

/* The chunk's cursor, fixed when its last answer is in: every wanted UID up to the chunk's last
 * is then in this chunk or one before it. */
static void chunk_close(struct session *s, struct sync_job *job, bool complete)
{
	const struct imap_sync_folder *f = &s->account->folders[s->folder];
	job->account.updated_at = s->account->updated_at;
	mt_strlcpy(job->folder, f->name, sizeof(job->folder));
	uint32_t done_uid = s->uid_pos > 0 ? s->uids[s->uid_pos - 1] : 0;
	if (done_uid < s->cursor_floor)
		done_uid = s->cursor_floor;
	job->uidvalidity = s->uidvalidity;
	job->last_uid = imap_cursor_after(done_uid, complete, s->uidnext);
	job->modseq = imap_cursor_modseq_after(complete, s->modseq, s->modseq_kept);
	/* the first chunk of a reset pass carries the reset */
	job->reset = s->reset_pending;
	s->reset_pending = false;
	s->cursor_floor = (uint32_t)job->last_uid;
}

/* On a worker: the chunk's answers into messages (GMime). Touches the job only: the session may
 * be halted meanwhile. */
static bool convert_run(void *arg)
{
	struct sync_job *job = arg;
	size_t n = imap_batch_count(job->batch);
	job->own_count = job->count = job->skipped_count = 0;
	for (size_t i = 0; i < n; i++) {
		const char *error;
		struct store_message *msg = &job->own[job->own_count];
		if (imap_batch_convert(job->batch, i, msg, &error) < 0) {
			job->skipped[job->skipped_count].uid = imap_batch_uid(job->batch, i);
			job->skipped[job->skipped_count++].reason = error;
			continue;
		}
		job->msgs[job->count++] = msg;
		job->own_count++;
	}
	return true;
}

static void log_skipped(struct session *s, uint32_t uid, const char *reason)
{
	char text[16];
	snprintf(text, sizeof(text), "%u", (unsigned)uid);
	mt_log(MT_LOG_INFO, "imap.message_skipped", MT_KV("user", s->user_id), MT_KV("uid", text),
	       MT_KV("reason", reason));
}

static void convert_done(void *arg)
{
	struct sync_job *job = arg;
	struct session *s = job->s;
	if (job->gen != s->gen || s->syncer->closing) {
		job_free(job); /* dropped by the session: no longer in its list */
		return;
	}
	for (size_t i = 0; i < job->skipped_count; i++)
		log_skipped(s, job->skipped[i].uid, job->skipped[i].reason);
	job->stage = C_CONVERTED;
	pipeline_next(s);
}

/* The chunk's answers are in: its conversion to a worker (on the loop when there is no pool or
 * its queue is full: slower, never lost). */
static void chunk_convert(struct session *s, struct sync_job *job)
{
	if (imap_batch_count(job->batch) == 0) {
		job->stage = C_CONVERTED;
		pipeline_next(s);
		return;
	}
	job->stage = C_CONVERTING;
	struct work_pool *work = s->syncer->p.work;
	if (work != NULL && work_submit(work, convert_run, convert_done, job) == 0) {
		/* the next chunk's FETCH now, while this one is converted (not after) */
		pipeline_next(s);
		return;
	}
	convert_run(job);
	convert_done(job);
}

/* Moves the pass on: the oldest chunk to the store once it is converted and the one before it
 * stored; the next chunk fetched while there is room; the next folder once all is stored. */
static void pipeline_next(struct session *s)
{
	if (s->chunk_count > 0 && s->chunks[0]->stage == C_CONVERTED) {
		/* The converted chunks in a row from the oldest: one transaction (fewer commits,
		 * each index page written once for all of them), at most MT_IMAP_SYNC_STORE_GROUP.
		 */
		struct sync_job *job = s->chunks[0];
		size_t n = 0;
		while (n < s->chunk_count && n < MT_IMAP_SYNC_STORE_GROUP &&
		       s->chunks[n]->stage == C_CONVERTED) {
			struct sync_job *c = s->chunks[n];
			memset(c->results, 0, MT_IMAP_SYNC_CHUNK * sizeof(*c->results));
			c->stage = C_STORING;
			c->group_next = NULL;
			if (n > 0)
				s->chunks[n - 1]->group_next = c;
			n++;
		}
		if (store_submit(s->syncer->p.store, STORE_WRITE | STORE_REPLAYABLE, job_run,
		                 job_done, job) < 0) {
			/* still the session's: the halt frees them */
			for (size_t i = 0; i < n; i++) {
				s->chunks[i]->stage = C_CONVERTED;
				s->chunks[i]->group_next = NULL;
			}
			session_retry(s, "the store is busy");
			return;
		}
	}
	if (s->fetching)
		return;
	if (s->uid_pos < s->uid_count) {
		if (s->chunk_count < MT_IMAP_SYNC_PIPELINE)
			chunk_fetch(s);
		return;
	}
	if (s->chunk_count == 0) {
		s->folder++;
		folder_next(s);
	}
}

/* A chunk with no messages: the cursor still moves (a reset, or past mail before `since`). */
static void chunk_store_empty(struct session *s)
{
	struct sync_job *job = chunk_new(s);
	if (job == NULL) {
		session_retry(s, "out of memory");
		return;
	}
	s->chunks[s->chunk_count++] = job;
	chunk_close(s, job, true);
	chunk_convert(s, job);
}

/* One chunk of a stored group, popped by the caller: the session's copy of the cursor follows. */
static void chunk_stored(struct sync_job *job)
{
	struct session *s = job->s;
	struct imap_sync_folder *f = &s->account->folders[s->folder];
	if (job->reset)
		f->messages_synced = 0;
	f->uidvalidity = job->uidvalidity;
	f->last_uid = job->last_uid;
	f->highestmodseq = job->modseq;
	f->messages_synced += (int64_t)job->count;
	size_t created = 0;
	for (size_t i = 0; i < job->count; i++)
		created += job->results[i].activities_created;
	if (job->count > 0) {
		observe_lag(s);
		mt_metric_add("mailtrail_imap_messages_total", "Messages read by IMAP sync", NULL,
		              NULL, NULL, NULL, (double)job->count);
		mt_metric_add("mailtrail_imap_activities_total", "Activities logged by IMAP sync",
		              NULL, NULL, NULL, NULL, (double)created);
	}
	chunk_recycle(s, job);
}

/* A group's transaction done (job_done, the session current): its chunks leave the pipeline
 * in order. */
static void group_stored(struct session *s, struct sync_job *job)
{
	if (job->fenced) {
		for (struct sync_job *c = job; c != NULL;) {
			struct sync_job *next = c->group_next;
			if (s->chunk_count > 0 && s->chunks[0] == c)
				chunk_pop(s);
			job_free(c);
			c = next;
		}
		/* Settings saved or turned off meanwhile: the hook restarts the session. */
		session_stop(s, "the account changed");
		return;
	}
	for (struct sync_job *c = job; c != NULL;) {
		struct sync_job *next = c->group_next;
		c->group_next = NULL;
		if (s->chunk_count > 0 && s->chunks[0] == c)
			chunk_pop(s); /* the oldest: chunks are stored in order */
		chunk_stored(c);
		c = next;
	}
	pipeline_next(s);
}

static int uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* On the loop: only copies (imap_message.h); the parse is the worker's. */
static void on_fetch(void *ctx, const struct imap_fetch *fetch)
{
	struct session *s = ctx;
	if (!s->fetching || !(fetch->has & IMAP_FETCH_UID))
		return;
	struct sync_job *job = s->chunks[s->chunk_count - 1];
	if (imap_batch_count(job->batch) >= MT_IMAP_SYNC_CHUNK)
		return;
	/* Only UIDs asked for: a range may cover mail older than `since`. */
	const uint32_t *first = s->uids + (s->uid_pos);
	size_t n = s->chunk_end - s->uid_pos;
	if (bsearch(&fetch->uid, first, n, sizeof(*first), uid_cmp) == NULL)
		return;
	const char *error;
	int rc = imap_batch_add(job->batch, fetch, &error);
	if (rc > 0)
		log_skipped(s, fetch->uid, error);
	else if (rc < 0)
		s->fetch_oom = true; /* not here: the client is inside its parser */
}

static void on_fetched(void *ctx, const struct imap_result *r)
{
	struct session *s = ctx;
	if (!step_ok(s, r, "UID FETCH"))
		return;
	if (s->fetch_oom) {
		s->fetch_oom = false;
		session_retry(s, "out of memory");
		return;
	}
	struct sync_job *job = s->chunks[s->chunk_count - 1];
	s->fetching = false;
	s->uid_pos = s->chunk_end;
	chunk_close(s, job, s->uid_pos >= s->uid_count);
	chunk_convert(s, job);
}

static void chunk_fetch(struct session *s)
{
	size_t end = s->uid_pos + MT_IMAP_SYNC_CHUNK;
	if (end > s->uid_count)
		end = s->uid_count;
	struct sync_job *job = chunk_new(s);
	if (job == NULL) {
		session_retry(s, "out of memory");
		return;
	}
	s->chunks[s->chunk_count++] = job;
	s->chunk_end = end;
	s->fetching = true;
	const char *error;
	if (imap_client_fetch(s->client, s->uids[s->uid_pos], s->uids[end - 1],
	                      imap_message_fetch_items, 0, on_fetch, on_fetched, s, &error) < 0)
		session_retry(s, error);
}

static void on_searched(void *ctx, const struct imap_result *r)
{
	struct session *s = ctx;
	if (!step_ok(s, r, "UID SEARCH"))
		return;
	free(s->uids);
	s->uids = NULL;
	s->uid_count = s->uid_pos = 0;
	if (r->uid_count > 0) {
		s->uids = malloc(r->uid_count * sizeof(*s->uids));
		if (s->uids == NULL) {
			session_retry(s, "out of memory");
			return;
		}
		memcpy(s->uids, r->uids, r->uid_count * sizeof(*s->uids));
		s->uid_count = imap_cursor_filter(s->uids, r->uid_count, s->decision.from_uid);
	}
	if (s->uid_count == 0) {
		chunk_store_empty(s);
		return;
	}
	chunk_fetch(s);
}

static void on_selected(void *ctx, const struct imap_result *r)
{
	struct session *s = ctx;
	struct imap_sync_folder *f = &s->account->folders[s->folder];
	if (r->cls == MT_CLASS_RESP) {
		/* A folder gone or renamed: the others go on; the error is shown. */
		mt_log(MT_LOG_INFO, "imap.folder_unavailable", MT_KV("user", s->user_id),
		       MT_KV("reason", r->response));
		s->folder++;
		folder_next(s);
		return;
	}
	if (!step_ok(s, r, "SELECT"))
		return;
	s->uidvalidity = r->uidvalidity;
	s->uidnext = r->uidnext;
	s->modseq = r->highestmodseq;
	const struct imap_cursor_state stored = {f->uidvalidity, f->last_uid, f->highestmodseq};
	const struct imap_cursor_select sel = {r->uidvalidity, r->uidnext, r->highestmodseq};
	s->decision = imap_cursor_decide(&stored, &sel);
	s->reset_pending = s->decision.reset;
	s->cursor_floor = s->decision.reset ? 0 : (uint32_t)f->last_uid;
	s->modseq_kept = s->decision.reset ? 0 : f->highestmodseq;
	if (s->decision.reset && f->uidvalidity != 0) {
		char was[24], now[24];
		snprintf(was, sizeof(was), "%lld", (long long)f->uidvalidity);
		snprintf(now, sizeof(now), "%u", (unsigned)r->uidvalidity);
		mt_log(MT_LOG_INFO, "imap.uidvalidity_changed", MT_KV("user", s->user_id),
		       MT_KV("was", was), MT_KV("now", now));
	}
	if (s->decision.action == IMAP_CURSOR_NOTHING) {
		s->folder++;
		folder_next(s);
		return;
	}
	char criteria[64];
	imap_cursor_criteria(&s->decision, s->account->since, criteria, sizeof(criteria));
	const char *error;
	if (imap_client_search(s->client, criteria, on_searched, s, &error) < 0)
		session_retry(s, error);
}

static void on_watch_selected(void *ctx, const struct imap_result *r)
{
	struct session *s = ctx;
	if (!step_ok(s, r, "SELECT"))
		return;
	/* Mail that came after the INBOX pass: one more pass before watching. */
	const struct imap_sync_folder *inbox = &s->account->folders[0];
	const struct imap_cursor_state stored = {inbox->uidvalidity, inbox->last_uid,
	                                         inbox->highestmodseq};
	const struct imap_cursor_select sel = {r->uidvalidity, r->uidnext, r->highestmodseq};
	if (s->again || (r->uidvalidity == (uint32_t)inbox->uidvalidity &&
	                 imap_cursor_maybe_new(&stored, &sel))) {
		pass_begin(s);
		return;
	}
	set_state(s, S_WATCHING);
	const char *error;
	if (imap_client_idle(s->client, true, &error) < 0) {
		session_retry(s, error);
		return;
	}
	if (s->account->folder_count > 1 && s->watch == NULL)
		poll_later(s);
}

/* ---- the second connection: Sent under IDLE ------------------------------------------------ */

static void poll_later(struct session *s)
{
	struct timeval tv = {MT_IMAP_SYNC_POLL_MS / 1000, 0};
	evtimer_add(s->poll, &tv);
}

/* New mail in the watched second folder: a pass now, or one more after the running one. */
static void watch_new_mail(struct session *s)
{
	if (s->exists_ms == 0)
		s->exists_ms = mono_ms();
	if (s->state == S_WATCHING)
		pass_begin(s);
	else if (s->state == S_SYNCING)
		s->again = true;
}

static void on_watch_failed(void *ctx, const struct imap_failure *f)
{
	struct session *s = ctx;
	watch_close(s);
	s->watch_failures++;
	s->watch_retry_ms = mono_ms() + backoff_ms(s->watch_failures);
	mt_log(MT_LOG_INFO, "imap.sync_watch_failed", MT_KV("user", s->user_id),
	       MT_KV("class", mt_class_name(f->cls)), MT_KV("reason", f->reason));
	/* Polled again, as with a cap of one connection, until the next pass retries it. */
	if (s->state == S_WATCHING && !evtimer_pending(s->poll, NULL))
		poll_later(s);
}

static void on_watch_examined(void *ctx, const struct imap_result *r)
{
	struct session *s = ctx;
	if (r->cls == MT_CLASS_RESP) {
		/* The folder is gone: the pass says so; the connection is of no use. */
		watch_close(s);
		if (s->state == S_WATCHING && !evtimer_pending(s->poll, NULL))
			poll_later(s);
		return;
	}
	if (r->cls != MT_CLASS_NONE)
		return; /* on_watch_failed follows */
	s->watch_failures = 0;
	const char *error;
	if (imap_client_idle(s->watch, true, &error) < 0) {
		watch_close(s);
		return;
	}
	s->watch_idle = true;
	mt_log(MT_LOG_INFO, "imap.sync_watch_idle", MT_KV("user", s->user_id),
	       MT_KV("folder", s->account->folders[1].name));
	evtimer_del(s->poll);
	/* Mail that came between the pass over this folder and now. */
	const struct imap_sync_folder *f = &s->account->folders[1];
	const struct imap_cursor_state stored = {f->uidvalidity, f->last_uid, f->highestmodseq};
	const struct imap_cursor_select sel = {r->uidvalidity, r->uidnext, r->highestmodseq};
	if (imap_cursor_maybe_new(&stored, &sel))
		watch_new_mail(s);
}

static void on_watch_ready(void *ctx)
{
	struct session *s = ctx;
	slot_release(s->syncer, &s->watch_login);
	const char *error;
	if (imap_client_select(s->watch, s->account->folders[1].name, true, on_watch_examined, s,
	                       &error) < 0)
		watch_close(s);
}

static void on_watch_event(void *ctx, const struct imap_event *ev)
{
	struct session *s = ctx;
	/* Not before the EXAMINE's answer: its own EXISTS is not new mail. */
	if (ev->kind == IMAP_EVENT_EXISTS && s->watch_idle)
		watch_new_mail(s);
}

/* A login's client params. The store's form of the account (sealed secret included) lives only
 * for this call; the strings the params name are the session's own copies. */
static int session_client_params(struct session *s, struct imap_client_params *params,
                                 struct mt_tls_pin *pin, struct mt_secret **secret_r,
                                 const char **error_r)
{
	const struct imap_syncer_params *p = &s->syncer->p;
	struct store_imap_account account;
	imap_sync_account_get(s->account, &account);
	int rc = account_imap_client(&account, p->keyring, p->tls,
	                             mt_config_cidrs(p->config, "allow_private_hosts"), params, pin,
	                             secret_r, error_r);
	sodium_memzero(account.sealed_secret, sizeof(account.sealed_secret));
	params->host = s->account->host;
	params->username = s->account->username;
	return rc;
}

static bool session_on_grant(const struct session *s)
{
	return s->syncer->p.broker != NULL && s->account->auth == STORE_AUTH_XOAUTH2 &&
	       s->account->sealed_secret_len == 0;
}

static void watch_start(struct session *s);

static void on_watch_token(void *ctx, struct oauth_broker_answer *answer)
{
	struct session *s = ctx;
	s->watch_ask = NULL;
	if (answer->outcome != OAUTH_BROKER_OK) {
		/* A revoked grant stops the session through the main connection's login; until then
		 * (or while the endpoint fails) Sent is polled. */
		s->watch_failures++;
		s->watch_retry_ms = mono_ms() + backoff_ms(s->watch_failures);
		return;
	}
	mt_secret_free(&s->watch_token);
	s->watch_token = answer->token;
	answer->token = NULL;
	watch_start(s);
}

/* Opens the second connection when the cap allows it and none is open (nor failing lately).
 * It goes through the host's bucket like any login; without a token this pass polls. */
static void watch_start(struct session *s)
{
	const struct imap_syncer_params *p = &s->syncer->p;
	if (s->watch != NULL ||
	    !imap_sync_watch_second(p->max_connections, (unsigned)s->account->folder_count))
		return;
	int64_t now = mono_ms();
	if (now < s->watch_retry_ms || s->syncer->logins >= MT_IMAP_LOGINS_MAX)
		return;
	if (session_on_grant(s) && s->watch_token == NULL) {
		/* Its own token from the broker, as the main connection's login has. */
		if (s->watch_ask == NULL)
			s->watch_ask = oauth_broker_token(s->syncer->p.broker, s->org_id,
			                                  s->user_id, -1, on_watch_token, s);
		return;
	}
	struct sync_host *host = host_get(s->syncer, s->account->host, now);
	if (host != NULL && (host->logins >= MT_IMAP_HOST_LOGINS_MAX ||
	                     imap_bucket_take(&host->bucket, now, MT_IMAP_HOST_LOGINS_PER_S,
	                                      MT_IMAP_HOST_LOGINS_BURST) > 0))
		return;
	struct imap_client_params params;
	struct mt_tls_pin pin;
	struct mt_secret *secret = NULL;
	const char *error;
	if (session_client_params(s, &params, &pin, &secret, &error) < 0)
		return;
	if (s->watch_token != NULL) {
		mt_secret_free(&secret);
		secret = s->watch_token; /* one token per login */
		s->watch_token = NULL;
		params.secret = secret;
	}
	params.allow_plaintext_auth = mt_config_bool(p->config, "allow_plaintext_auth");
	params.greeting_timeout_ms = MT_IMAP_SYNC_GREETING_MS;
	static const struct imap_client_callbacks callbacks = {
	    .ready = on_watch_ready,
	    .failed = on_watch_failed,
	    .closed = on_closed,
	    .event = on_watch_event,
	};
	s->watch = imap_client_new(p->base, p->dns, &params, &callbacks, s, &error);
	mt_secret_free(&secret);
	s->watch_idle = false;
	if (s->watch != NULL)
		slot_take(s->syncer, &s->watch_login, host);
}

static void report_done(struct sync_job *job)
{
	struct session *s = job->s;
	const struct store_imap_account *now = &job->account;
	if (job->found != 0 || !job->org.imap_sync || now->state != STORE_ACCOUNT_CONNECTED) {
		session_stop(s, "the account or the org's imap_sync is off");
		return;
	}
	if (now->updated_at != s->account->updated_at) {
		session_halt(s);
		session_start(s);
		return;
	}
	s->account->last_sync_at = job->last_sync_at;
	if (!s->again)
		s->exists_ms = 0;
	watch_start(s);
	/* Watch INBOX (the first folder when it is watched at all). */
	if (s->account->folder_count == 0 || strcmp(s->account->folders[0].role, "inbox") != 0) {
		set_state(s, S_WATCHING);
		struct timeval tv = {MT_IMAP_SYNC_POLL_MS / 1000, 0};
		evtimer_add(s->poll, &tv);
		return;
	}
	const char *error;
	if (imap_client_select(s->client, s->account->folders[0].name, true, on_watch_selected, s,
	                       &error) < 0)
		session_retry(s, error);
}

static void folder_next(struct session *s)
{
	if (s->folder >= s->account->folder_count) {
		release_chunks(s);
		/* the last folder's UIDs: 4 bytes a message, not to be kept while watching */
		free(s->uids);
		s->uids = NULL;
		s->uid_count = s->uid_pos = 0;
		struct sync_job *job = job_new(s, JOB_REPORT);
		if (job == NULL) {
			session_retry(s, "out of memory");
			return;
		}
		job->last_sync_at = mt_wall_s();
		if (job_submit(job, STORE_WRITE) < 0)
			session_retry(s, "the store is busy");
		return;
	}
	const char *error;
	if (imap_client_select(s->client, s->account->folders[s->folder].name, true, on_selected, s,
	                       &error) < 0)
		session_retry(s, error);
}

static void pass_begin(struct session *s)
{
	const char *error;
	evtimer_del(s->poll);
	set_state(s, S_SYNCING);
	s->again = false;
	s->folder = 0;
	if (imap_client_idle(s->client, false, &error) < 0) {
		session_retry(s, error);
		return;
	}
	folder_next(s);
}

/* ---- loading and connecting ----------------------------------------------------------------- */

static void session_loaded(struct sync_job *job)
{
	struct session *s = job->s;
	if (job->found != 0 || !job->org.imap_sync ||
	    job->account.state != STORE_ACCOUNT_CONNECTED) {
		session_stop(s, "not connected");
		return;
	}
	struct imap_sync_account *account = imap_sync_account_new(&job->account);
	if (account == NULL) {
		session_retry(s, "out of memory");
		return;
	}
	imap_sync_account_free(&s->account);
	s->account = account;
	session_login(s);
}

static void login_wait(struct session *s, int64_t ms)
{
	s->login_pending = true;
	wait_ms(s, imap_sync_jitter(ms, randombytes_random()));
}

/* Logs in when the scheduler lets it: a global cap on logins in progress, a cap per host (a
 * host that never answers holds only its own share), and a token bucket of new logins per
 * host; otherwise the session waits its turn, jittered, with the account already loaded. */
static void on_token(void *ctx, struct oauth_broker_answer *answer)
{
	struct session *s = ctx;
	s->token_ask = NULL;
	if (answer->outcome == OAUTH_BROKER_REVOKED) {
		/* The broker disconnected the account, with the one notice. */
		session_stop(s, "the OAuth grant was revoked");
		return;
	}
	if (answer->outcome != OAUTH_BROKER_OK) {
		session_retry(s, answer->reason != NULL ? answer->reason : "no OAuth token");
		return;
	}
	s->token = answer->token;
	answer->token = NULL;
	s->token_fence = answer->fence;
	s->refused_fence = -1;
	session_login(s);
}

static void session_login(struct session *s)
{
	struct imap_syncer *syncer = s->syncer;
	if (session_on_grant(s) && s->token == NULL) {
		/* On the user's grant: the broker's token first (engine/oauth_broker.h). */
		if (s->token_ask == NULL &&
		    (s->token_ask = oauth_broker_token(syncer->p.broker, s->org_id, s->user_id,
		                                       s->refused_fence, on_token, s)) == NULL)
			session_retry(s, "the OAuth token cannot be asked for now");
		return;
	}
	if (syncer->logins >= MT_IMAP_LOGINS_MAX) {
		login_wait(s, 100 + (int64_t)randombytes_uniform(900));
		return;
	}
	int64_t now = mono_ms();
	struct sync_host *host = host_get(syncer, s->account->host, now);
	if (host != NULL && host->logins >= MT_IMAP_HOST_LOGINS_MAX) {
		login_wait(s, 200 + (int64_t)randombytes_uniform(800));
		return;
	}
	int64_t wait = host == NULL
	                   ? 0
	                   : imap_bucket_take(&host->bucket, now, MT_IMAP_HOST_LOGINS_PER_S,
	                                      MT_IMAP_HOST_LOGINS_BURST);
	if (wait > 0) {
		login_wait(s, wait);
		return;
	}
	struct imap_client_params params;
	struct mt_tls_pin pin;
	struct mt_secret *secret = NULL;
	const char *error;
	const struct imap_syncer_params *p = &syncer->p;
	if (session_client_params(s, &params, &pin, &secret, &error) < 0) {
		session_retry(s, error);
		return;
	}
	if (s->token != NULL) {
		secret = s->token; /* one token per login */
		s->token = NULL;
		params.secret = secret;
	}
	params.allow_plaintext_auth = mt_config_bool(p->config, "allow_plaintext_auth");
	params.greeting_timeout_ms = MT_IMAP_SYNC_GREETING_MS;
	static const struct imap_client_callbacks callbacks = {
	    .ready = on_ready,
	    .failed = on_failed,
	    .closed = on_closed,
	    .event = on_event,
	    .transcript = on_transcript,
	};
	s->client = imap_client_new(p->base, p->dns, &params, &callbacks, s, &error);
	mt_secret_free(&secret);
	if (s->client == NULL) {
		session_retry(s, error);
		return;
	}
	slot_take(syncer, &s->login, host);
	pass_begin(s);
}

static void job_done(void *arg, int result)
{
	struct sync_job *job = arg;
	struct session *s = job->s;
	bool current = job->gen == s->gen && !s->syncer->closing;
	if (job->kind == JOB_DISCONNECT_LOAD) {
		if (result == 0 && !s->syncer->closing) {
			disconnect_loaded(job);
			return;
		}
		job_free(job);
		return;
	}
	if (job->kind == JOB_DISCONNECT) {
		if (result == 0 && job->changed) {
			notify_count(STORE_NOTIFY_IMAP_DISCONNECTED);
			mt_metric_inc("mailtrail_imap_disconnects_total",
			              "IMAP accounts disconnected after a confirmed failure", NULL,
			              NULL, NULL, NULL);
			mt_log(MT_LOG_WARN, "imap.disconnected", MT_KV("user", s->user_id),
			       MT_KV("host", job->account.host),
			       MT_KV("mailed", job->mailed ? "yes" : "no"));
		}
		job_free(job);
		return;
	}
	if (job->kind == JOB_CHUNK && (!current || result != 0)) {
		/* the group's chunks: the session's no longer (halted), or to drop with it */
		for (struct sync_job *c = job; c != NULL;) {
			struct sync_job *next = c->group_next;
			if (current && s->chunk_count > 0 && s->chunks[0] == c)
				chunk_pop(s);
			job_free(c);
			c = next;
		}
		if (current)
			session_retry(s, "the store failed");
		return;
	}
	if (!current) {
		job_free(job);
		return;
	}
	if (result != 0) {
		job_free(job);
		session_retry(s, "the store failed");
		return;
	}
	switch (job->kind) {
	case JOB_LOAD:
		session_loaded(job);
		break;
	case JOB_CHUNK:
		group_stored(s, job);
		return;
	case JOB_REPORT:
		report_done(job);
		break;
	default:
		break;
	}
	job_free(job);
}

static void session_start(struct session *s)
{
	session_halt(s);
	s->epoch = s->syncer->epoch;
	set_state(s, S_LOADING);
	struct sync_job *job = job_new(s, JOB_LOAD);
	if (job == NULL || job_submit(job, STORE_READ) < 0) {
		s->failures++;
		wait_ms(s, backoff_ms(s->failures));
	}
}

/* ---- the syncer ----------------------------------------------------------------------------- */

static void on_rescan(evutil_socket_t fd, short what, void *arg);

struct imap_syncer *imap_syncer_new(const struct imap_syncer_params *params)
{
	struct imap_syncer *syncer = calloc(1, sizeof(*syncer));
	if (syncer == NULL)
		return NULL;
	syncer->p = *params;
	syncer->rescan = event_new(params->base, -1, EV_PERSIST, on_rescan, syncer);
	if (syncer->rescan == NULL) {
		free(syncer);
		return NULL;
	}
	return syncer;
}

void imap_syncer_close(struct imap_syncer *syncer)
{
	if (syncer == NULL)
		return;
	syncer->closing = true;
	evtimer_del(syncer->rescan);
	for (struct session *s = syncer->sessions; s != NULL; s = s->next)
		session_halt(s);
}

void imap_syncer_free(struct imap_syncer **syncer_p)
{
	struct imap_syncer *syncer = *syncer_p;
	if (syncer == NULL)
		return;
	*syncer_p = NULL;
	syncer->closing = true;
	for (struct session *s = syncer->sessions, *next; s != NULL; s = next) {
		next = s->next;
		session_halt(s);
		event_free(s->timer);
		event_free(s->poll);
		imap_sync_account_free(&s->account);
		free(s);
	}
	for (struct sync_host *h = syncer->hosts, *next; h != NULL; h = next) {
		next = h->next;
		free(h);
	}
	event_free(syncer->rescan);
	free(syncer);
}

static void session_changed(struct session *s)
{
	s->failures = 0;
	s->auth_failed_once = false;
	s->disconnecting = false;
	session_start(s);
}

void imap_syncer_changed(void *arg, const char *org_id, const char *user_id)
{
	struct imap_syncer *syncer = arg;
	struct session *s = session_get(syncer, org_id, user_id);
	if (s == NULL) {
		mt_log(MT_LOG_ERROR, "imap.sync_oom", MT_KV("user", user_id));
		return;
	}
	session_changed(s);
}

/* The accounts to sync (connected, their org's imap_sync on), read at serve start and again
 * every MT_IMAP_SYNC_RESCAN_MS and when an org's switch changes: accounts without a running
 * session start; running sessions whose account is no longer listed stop. */
struct start_job {
	struct imap_syncer *syncer;
	struct store_imap_ref *refs;
	size_t count;
	uint64_t epoch;
	bool first;
};

static int start_run(struct store_tx *tx, void *arg)
{
	struct start_job *job = arg;
	return store_imap_accounts_to_sync(tx, job->refs, MT_IMAP_SYNC_ACCOUNTS_MAX, &job->count);
}

static int ref_cmp(const void *a, const void *b)
{
	return strcmp(((const struct store_imap_ref *)a)->user_id,
	              ((const struct store_imap_ref *)b)->user_id);
}

static int rescan_submit(struct imap_syncer *syncer, bool first);

static void start_done(void *arg, int result)
{
	struct start_job *job = arg;
	struct imap_syncer *syncer = job->syncer;
	if (result == 0 && !syncer->closing) {
		size_t started = 0, stopped = 0;
		qsort(job->refs, job->count, sizeof(*job->refs), ref_cmp);
		bool *has = calloc(job->count + 1, sizeof(*has));
		if (has != NULL) {
			for (struct session *s = syncer->sessions; s != NULL; s = s->next) {
				struct store_imap_ref key;
				mt_strlcpy(key.user_id, s->user_id, sizeof(key.user_id));
				const struct store_imap_ref *ref = bsearch(
				    &key, job->refs, job->count, sizeof(*job->refs), ref_cmp);
				if (ref != NULL) {
					has[ref - job->refs] = true;
					/* Stopped by the account changing or by an earlier re-scan;
					 * not one whose confirmed disconnect is being written. */
					if (s->state == S_STOPPED && !s->disconnecting) {
						session_changed(s);
						started++;
					}
				} else if (s->state != S_STOPPED && s->epoch < job->epoch) {
					/* Started before this read: its account or org is off now.
					 */
					session_stop(s,
					             "the account or the org's imap_sync is off");
					stopped++;
				}
			}
			for (size_t i = 0; i < job->count; i++) {
				if (has[i])
					continue;
				struct session *s = session_create(syncer, job->refs[i].org_id,
				                                   job->refs[i].user_id);
				if (s == NULL) {
					mt_log(MT_LOG_ERROR, "imap.sync_oom",
					       MT_KV("user", job->refs[i].user_id));
					continue;
				}
				session_changed(s);
				started++;
			}
			free(has);
		}
		char n[24], st[24], sp[24];
		snprintf(n, sizeof(n), "%zu", job->count);
		snprintf(st, sizeof(st), "%zu", started);
		snprintf(sp, sizeof(sp), "%zu", stopped);
		if (job->first)
			mt_log(MT_LOG_INFO, "imap.sync_started", MT_KV("accounts", n));
		else if (started > 0 || stopped > 0)
			mt_log(MT_LOG_INFO, "imap.sync_rescanned", MT_KV("accounts", n),
			       MT_KV("started", st), MT_KV("stopped", sp));
	}
	syncer->rescan_running = false;
	free(job->refs);
	free(job);
	if (syncer->rescan_again && !syncer->closing) {
		syncer->rescan_again = false;
		rescan_submit(syncer, false);
	}
}

static int rescan_submit(struct imap_syncer *syncer, bool first)
{
	if (syncer->rescan_running) {
		syncer->rescan_again = true;
		return 0;
	}
	struct start_job *job = calloc(1, sizeof(*job));
	if (job == NULL)
		return -1;
	job->syncer = syncer;
	job->first = first;
	job->epoch = ++syncer->epoch;
	job->refs = calloc(MT_IMAP_SYNC_ACCOUNTS_MAX, sizeof(*job->refs));
	if (job->refs == NULL ||
	    store_submit(syncer->p.store, STORE_READ, start_run, start_done, job) < 0) {
		free(job->refs);
		free(job);
		return -1;
	}
	syncer->rescan_running = true;
	return 0;
}

static void on_rescan(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct imap_syncer *syncer = arg;
	if (rescan_submit(syncer, false) < 0)
		mt_log(MT_LOG_WARN, "imap.sync_rescan_failed");
}

int imap_syncer_start(struct imap_syncer *syncer)
{
	struct timeval tv = {MT_IMAP_SYNC_RESCAN_MS / 1000, (MT_IMAP_SYNC_RESCAN_MS % 1000) * 1000};
	event_add(syncer->rescan, &tv);
	return rescan_submit(syncer, true);
}

void imap_syncer_rescan(struct imap_syncer *syncer)
{
	if (syncer != NULL && rescan_submit(syncer, false) < 0)
		mt_log(MT_LOG_WARN, "imap.sync_rescan_failed");
}

struct now_job {
	struct imap_syncer *syncer;
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	imap_sync_now_fn *done;
	void *ctx;
	struct store_org org;
	struct store_imap_account account;
	int found;
};

static int now_run(struct store_tx *tx, void *arg)
{
	struct now_job *job = arg;
	int rc = store_org_get(tx, job->org_id, &job->org);
	if (rc == 0)
		rc = store_imap_account_get(tx, job->org_id, job->user_id, &job->account);
	job->found = rc;
	return rc == STORE_NOT_FOUND ? 0 : rc;
}

static void now_done(void *arg, int result)
{
	struct now_job *job = arg;
	sodium_memzero(&job->account.sealed_secret, sizeof(job->account.sealed_secret));
	if (result != 0) {
		job->done(job->ctx, IMAP_SYNC_FAILED, "the store failed");
	} else if (job->found != 0 || job->account.state != STORE_ACCOUNT_CONNECTED) {
		job->done(job->ctx, IMAP_SYNC_NOT_CONNECTED,
		          "no connected IMAP account: save working settings with PUT /v1/imap");
	} else if (!job->org.imap_sync) {
		job->done(job->ctx, IMAP_SYNC_NOT_CONNECTED,
		          "IMAP sync is not enabled for this org; an admin can turn on the "
		          "imap_sync feature");
	} else {
		struct session *s = session_get(job->syncer, job->org_id, job->user_id);
		if (s == NULL) {
			job->done(job->ctx, IMAP_SYNC_FAILED, "out of memory");
		} else {
			if (s->state == S_WATCHING)
				pass_begin(s);
			else if (s->state == S_SYNCING || s->state == S_LOADING)
				s->again = true;
			else {
				s->failures = 0;
				session_start(s);
			}
			job->done(job->ctx, IMAP_SYNC_QUEUED, NULL);
		}
	}
	free(job);
}

void imap_sync_now(struct imap_syncer *syncer, const char *org_id, const char *user_id,
                   imap_sync_now_fn *done, void *ctx)
{
	struct now_job *job = calloc(1, sizeof(*job));
	if (job == NULL) {
		done(ctx, IMAP_SYNC_FAILED, "out of memory");
		return;
	}
	job->syncer = syncer;
	mt_strlcpy(job->org_id, org_id, sizeof(job->org_id));
	mt_strlcpy(job->user_id, user_id, sizeof(job->user_id));
	job->done = done;
	job->ctx = ctx;
	if (store_submit(syncer->p.store, STORE_READ, now_run, now_done, job) < 0) {
		free(job);
		done(ctx, IMAP_SYNC_BUSY, "the store is busy; try again");
	}
}
