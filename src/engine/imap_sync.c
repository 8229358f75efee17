/* IMAP auto sync: the sessions, one per account on the loop (engine/imap_sync.h). Their states,
 * logins under the scheduler's caps, the client's callbacks and the confirmed disconnect; the
 * pass over the folders is engine/imap_sync_pass.c, the second connection
 * engine/imap_sync_watch.c, the store jobs engine/imap_sync_jobs.c and the syncer that starts and
 * stops sessions engine/imap_syncer.c (shared state: engine/imap_sync_internal.h).
 *
 * A session's states: LOADING (the account read from the store), SYNCING (a pass over the
 * folders), WATCHING (INBOX under IDLE), WAITING (a timer: back-off, or the pause before the
 * confirming login), STOPPED. Every store job carries the session's generation: a job that
 * completes after the session was restarted or stopped changes nothing. */
#include "engine/imap_sync.h"
#include "engine/imap_sync_internal.h"

#include "config/config.h"
#include "engine/imap_account.h"
#include "engine/imap_sync_account.h"
#include "engine/imap_sync_sched.h"
#include "engine/oauth_broker.h"
#include "engine/notify.h"
#include "imap/client.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/str.h"
#include "store/store.h"
#include "store/store_imap.h"

#include <event2/event.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const state_names[] = {"loading", "syncing", "watching", "waiting", "stopped"};
_Static_assert(sizeof(state_names) / sizeof(state_names[0]) == S_COUNT, "a name per state");

static void on_timer(evutil_socket_t fd, short what, void *arg);
static void on_poll(evutil_socket_t fd, short what, void *arg);
static void session_login(struct session *s);

int64_t sync_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The host's entry; forgets idle hosts when the table is full. NULL when it stays full (the
 * login then goes unlimited by host: the global cap still holds). */
struct sync_host *sync_host_get(struct imap_syncer *syncer, const char *name, int64_t now)
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

static void count_state(struct imap_syncer *syncer, enum session_state state, int delta)
{
	syncer->per_state[state] = (unsigned)((int)syncer->per_state[state] + delta);
	mt_metric_set_gauge("mailtrail_imap_sync_sessions", "IMAP sync sessions by state", "state",
	                    state_names[state], NULL, NULL, (double)syncer->per_state[state]);
}

void sync_set_state(struct session *s, enum session_state state)
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

void sync_observe_lag(struct session *s)
{
	if (s->exists_ms == 0)
		return;
	mt_metric_observe("mailtrail_imap_sync_lag_seconds",
	                  "Seconds from an IMAP EXISTS (new mail under IDLE) to the commit of its "
	                  "activities",
	                  lag_bounds, sizeof(lag_bounds) / sizeof(lag_bounds[0]), NULL, 0,
	                  (double)(sync_mono_ms() - s->exists_ms) / 1000.0);
}

void sync_slot_take(struct imap_syncer *syncer, struct login_slot *slot, struct sync_host *host)
{
	slot->held = true;
	slot->host = host;
	syncer->logins++;
	if (host != NULL)
		host->logins++;
}

void sync_slot_release(struct imap_syncer *syncer, struct login_slot *slot)
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
	sync_slot_release(s->syncer, &s->login);
}

/* Ends whatever the session was doing: its connection, timers and jobs' claim on it. */
void sync_session_halt(struct session *s)
{
	s->gen++;
	login_done(s);
	s->login_pending = false;
	s->exists_ms = 0;
	imap_client_free(&s->client);
	sync_watch_close(s);
	evtimer_del(s->timer);
	evtimer_del(s->poll);
	evtimer_del(s->group_timer);
	free(s->uids);
	s->uids = NULL;
	s->uid_count = s->uid_pos = 0;
	sync_chunks_drop(s);
	sync_release_chunks(s);
	if (s->account != NULL)
		imap_sync_account_wipe_secret(s->account);
	s->again = false;
	oauth_broker_cancel(&s->token_ask);
	mt_secret_free(&s->token);
}

void sync_session_stop(struct session *s, const char *why)
{
	sync_session_halt(s);
	if (s->state != S_STOPPED)
		mt_log(MT_LOG_INFO, "imap.sync_stopped", MT_KV("user", s->user_id),
		       MT_KV("why", why));
	sync_set_state(s, S_STOPPED);
}

static struct session *session_find(struct imap_syncer *syncer, const char *user_id)
{
	for (struct session *s = syncer->sessions; s != NULL; s = s->next)
		if (strcmp(s->user_id, user_id) == 0)
			return s;
	return NULL;
}

/* A new session (the caller knows there is none for the user). */
struct session *sync_session_create(struct imap_syncer *syncer, const char *org_id,
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
	s->group_timer = evtimer_new(syncer->p.base, sync_on_group_timer, s);
	if (s->timer == NULL || s->poll == NULL || s->group_timer == NULL) {
		if (s->timer != NULL)
			event_free(s->timer);
		if (s->poll != NULL)
			event_free(s->poll);
		if (s->group_timer != NULL)
			event_free(s->group_timer);
		free(s);
		return NULL;
	}
	s->next = syncer->sessions;
	syncer->sessions = s;
	count_state(syncer, S_STOPPED, 1);
	return s;
}

struct session *sync_session_get(struct imap_syncer *syncer, const char *org_id,
                                 const char *user_id)
{
	struct session *s = session_find(syncer, user_id);
	return s != NULL ? s : sync_session_create(syncer, org_id, user_id);
}

static void wait_ms(struct session *s, int64_t ms)
{
	sync_set_state(s, S_WAITING);
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(s->timer, &tv);
}

/* Jittered exponential back-off: 1 s, 2 s, 4 s ... capped, each times 0.5 .. 1.5. */
int64_t sync_backoff_ms(unsigned failures)
{
	return imap_sync_backoff(failures, MT_IMAP_RECONNECT_MIN_MS, MT_IMAP_RECONNECT_MAX_MS,
	                         randombytes_random());
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct session *s = arg;
	if (s->state != S_WAITING)
		return;
	if (s->login_pending) {
		s->login_pending = false;
		sync_set_state(s, S_LOADING);
		session_login(s);
		return;
	}
	sync_session_start(s);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct session *s = arg;
	if (s->state == S_WATCHING)
		sync_pass_begin(s);
}

/* A broken session or a step that cannot go on: reconnect later, from the cursor. */
void sync_session_retry(struct session *s, const char *why)
{
	sync_session_halt(s);
	s->failures++;
	int64_t ms = sync_backoff_ms(s->failures);
	mt_metric_inc("mailtrail_imap_reconnects_total", "IMAP sync sessions restarted", NULL, NULL,
	              NULL, NULL);
	mt_log(MT_LOG_INFO, "imap.sync_retry", MT_KV("user", s->user_id), MT_KV("why", why));
	wait_ms(s, ms);
}

static void disconnect_begin(struct session *s, const char *reason)
{
	/* what the fence compares (user, org, updated_at) and the notice names; not the secret */
	struct store_imap_account seen;
	imap_sync_account_get(s->account, &seen);
	sodium_memzero(seen.sealed_secret, sizeof(seen.sealed_secret));
	seen.sealed_secret_len = 0;
	sync_session_halt(s);
	sync_set_state(s, S_STOPPED);
	s->disconnecting = true;
	struct sync_job *job = sync_job_new(s, JOB_DISCONNECT_LOAD);
	if (job == NULL)
		return;
	job->account = seen;
	snprintf(job->last_error, sizeof(job->last_error), "auth: %.480s", reason);
	if (sync_job_submit(job, STORE_READ) < 0)
		mt_log(MT_LOG_ERROR, "imap.disconnect_failed", MT_KV("user", s->user_id));
}

void sync_disconnect_loaded(struct sync_job *job)
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
	if (store_submit(s->syncer->p.store, STORE_WRITE_DURABLE, sync_job_run, sync_job_done,
	                 job) < 0)
		sync_job_free(job);
}

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
		sync_session_halt(s);
		s->refused_fence = s->token_fence;
		mt_log(MT_LOG_INFO, "imap.sync_token_refused", MT_KV("user", s->user_id));
		sync_set_state(s, S_LOADING);
		session_login(s);
		return;
	}
	if (f->cls == MT_CLASS_AUTH) {
		if (!s->auth_failed_once) {
			/* Confirmed by a second login on a fresh connection after a pause. */
			s->auth_failed_once = true;
			sync_session_halt(s);
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
	sync_session_retry(s, why);
}

static void on_closed(void *ctx)
{
	(void)ctx;
}

static void on_transcript(void *ctx, char direction, const char *line, size_t len)
{
	struct session *s = ctx;
	/* Debug only (a session started at another level has no transcript): the lines hold
	 * addresses and subjects (never a secret: masked by state). */
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
		s->exists_ms = sync_mono_ms();
		sync_pass_begin(s);
	}
}

/* A login's connection, for the session's main or second one. The store's form of the account
 * (sealed secret included) lives only for this call; the strings the params name are the
 * session's own copies. A broker's token in *token (one token per login) is used in place of
 * the stored secret and taken. */
struct imap_client *sync_client_open(struct session *s, struct mt_secret **token,
                                     const struct imap_client_callbacks *callbacks,
                                     const char **error_r)
{
	const struct imap_syncer_params *p = &s->syncer->p;
	struct store_imap_account account;
	imap_sync_account_get(s->account, &account);
	struct imap_client_params params;
	struct mt_tls_pin pin;
	struct mt_secret *secret = NULL;
	int rc = account_imap_client(&account, p->keyring, p->tls,
	                             mt_config_cidrs(p->config, "allow_private_hosts"), &params,
	                             &pin, &secret, error_r);
	sodium_memzero(account.sealed_secret, sizeof(account.sealed_secret));
	if (rc < 0)
		return NULL;
	params.host = s->account->host;
	params.username = s->account->username;
	if (*token != NULL) {
		mt_secret_free(&secret);
		secret = *token;
		*token = NULL;
		params.secret = secret;
	}
	params.allow_plaintext_auth = mt_config_bool(p->config, "allow_plaintext_auth");
	params.greeting_timeout_ms = MT_IMAP_SYNC_GREETING_MS;
	struct imap_client *client =
	    imap_client_new(p->base, p->dns, &params, callbacks, s, error_r);
	mt_secret_free(&secret);
	return client;
}

bool sync_session_on_grant(const struct session *s)
{
	return s->syncer->p.broker != NULL && s->account->auth == STORE_AUTH_XOAUTH2 &&
	       s->account->sealed_secret_len == 0;
}

void sync_session_loaded(struct sync_job *job)
{
	struct session *s = job->s;
	if (job->found != 0 || !job->org.imap_sync ||
	    job->account.state != STORE_ACCOUNT_CONNECTED) {
		sync_session_stop(s, "not connected");
		return;
	}
	struct imap_sync_account *account = imap_sync_account_new(&job->account);
	if (account == NULL) {
		sync_session_retry(s, "out of memory");
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
		sync_session_stop(s, "the OAuth grant was revoked");
		return;
	}
	if (answer->outcome != OAUTH_BROKER_OK) {
		sync_session_retry(s, answer->reason != NULL ? answer->reason : "no OAuth token");
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
	if (sync_session_on_grant(s) && s->token == NULL) {
		/* On the user's grant: the broker's token first (engine/oauth_broker.h). */
		if (s->token_ask == NULL &&
		    (s->token_ask = oauth_broker_token(syncer->p.broker, s->org_id, s->user_id,
		                                       s->refused_fence, on_token, s)) == NULL)
			sync_session_retry(s, "the OAuth token cannot be asked for now");
		return;
	}
	if (syncer->logins >= MT_IMAP_LOGINS_MAX) {
		login_wait(s, 100 + (int64_t)randombytes_uniform(900));
		return;
	}
	int64_t now = sync_mono_ms();
	struct sync_host *host = sync_host_get(syncer, s->account->host, now);
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
	static const struct imap_client_callbacks callbacks = {
	    .ready = on_ready,
	    .failed = on_failed,
	    .closed = on_closed,
	    .event = on_event,
	    .transcript = on_transcript,
	};
	/* Without a transcript the client keeps no copy of each answer (a first pass's FETCH
	 * answers are most of what it reads): only a session started at debug level has one. The
	 * client copies its callbacks. */
	struct imap_client_callbacks cb = callbacks;
	if (mt_log_get_level() > MT_LOG_DEBUG)
		cb.transcript = NULL;
	const char *error;
	s->client = sync_client_open(s, &s->token, &cb, &error);
	if (s->client == NULL) {
		sync_session_retry(s, error);
		return;
	}
	sync_slot_take(syncer, &s->login, host);
	sync_pass_begin(s);
}

void sync_session_start(struct session *s)
{
	sync_session_halt(s);
	s->epoch = s->syncer->epoch;
	sync_set_state(s, S_LOADING);
	struct sync_job *job = sync_job_new(s, JOB_LOAD);
	if (job == NULL || sync_job_submit(job, STORE_READ) < 0) {
		s->failures++;
		wait_ms(s, sync_backoff_ms(s->failures));
	}
}

void sync_session_changed(struct session *s)
{
	s->failures = 0;
	s->auth_failed_once = false;
	s->disconnecting = false;
	sync_session_start(s);
}
