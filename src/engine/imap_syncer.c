/* IMAP auto sync: the syncer. It owns the sessions and the hosts' login buckets, starts a session
 * for every account to sync (read at start, every MT_IMAP_SYNC_RESCAN_MS and when an org's
 * switch changes), stops the ones no longer listed, and answers POST /v1/imap/sync. */
#include "engine/imap_sync.h"
#include "engine/imap_sync_internal.h"

#include "engine/imap_sync_account.h"
#include "lib/log.h"
#include "lib/str.h"
#include "store/store.h"
#include "store/store_imap.h"
#include "store/store_org.h"

#include <event2/event.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rescan_submit(struct imap_syncer *syncer, bool first);
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
		sync_session_halt(s);
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
		sync_session_halt(s);
		event_free(s->timer);
		event_free(s->poll);
		event_free(s->group_timer);
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

void imap_syncer_changed(void *arg, const char *org_id, const char *user_id)
{
	struct imap_syncer *syncer = arg;
	struct session *s = sync_session_get(syncer, org_id, user_id);
	if (s == NULL) {
		mt_log(MT_LOG_ERROR, "imap.sync_oom", MT_KV("user", user_id));
		return;
	}
	sync_session_changed(s);
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
						sync_session_changed(s);
						started++;
					}
				} else if (s->state != S_STOPPED && s->epoch < job->epoch) {
					/* Started before this read: its account or org is off now.
					 */
					sync_session_stop(
					    s, "the account or the org's imap_sync is off");
					stopped++;
				}
			}
			for (size_t i = 0; i < job->count; i++) {
				if (has[i])
					continue;
				struct session *s = sync_session_create(syncer, job->refs[i].org_id,
				                                        job->refs[i].user_id);
				if (s == NULL) {
					mt_log(MT_LOG_ERROR, "imap.sync_oom",
					       MT_KV("user", job->refs[i].user_id));
					continue;
				}
				sync_session_changed(s);
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
		struct session *s = sync_session_get(job->syncer, job->org_id, job->user_id);
		if (s == NULL) {
			job->done(job->ctx, IMAP_SYNC_FAILED, "out of memory");
		} else {
			if (s->state == S_WATCHING)
				sync_pass_begin(s);
			else if (s->state == S_SYNCING || s->state == S_LOADING)
				s->again = true;
			else {
				s->failures = 0;
				sync_session_start(s);
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
