/* IMAP auto sync: a pass over the account's folders. Per folder SELECT, the cursor's decision
 * (engine/imap_cursor.h), UID SEARCH, then UID FETCH in chunks of MT_IMAP_SYNC_CHUNK pipelined
 * with their conversion on a worker and their store jobs (at most MT_IMAP_SYNC_PIPELINE chunks
 * in flight, stored in UID order); after the last folder, the report and the watch of INBOX. */
#include "engine/imap_sync_internal.h"

#include "engine/imap_cursor.h"
#include "engine/imap_message.h"
#include "imap/client.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/str.h"
#include "store/store.h"
#include "store/store_imap.h"
#include "work/work.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pipeline_next(struct session *s);
static int chunk_fetch(struct session *s);
static void folder_next(struct session *s);

/* The chunks' arrays (MT_IMAP_SYNC_CHUNK x ~6.6 KB, and the answers' bytes) are held only while
 * a pass runs: an idle account keeps none (bench/sync-idle). */
void sync_release_chunks(struct session *s)
{
	for (size_t i = 0; i < s->spare_count; i++)
		sync_job_free(s->spare[i]);
	s->spare_count = 0;
}

/* A step's answer: false (and the session handled) when the session broke or the step failed. */
static bool step_ok(struct session *s, const struct imap_result *r, const char *what)
{
	if (r->cls == MT_CLASS_NONE)
		return true;
	if (r->cls != MT_CLASS_RESP)
		return false; /* the session broke: `failed` follows */
	char why[300];
	snprintf(why, sizeof(why), "%s refused: %.250s", what, r->response);
	sync_session_retry(s, why);
	return false;
}

/* A chunk for the pass: a spare one, or new. NULL when memory runs out. */
static struct sync_job *chunk_new(struct session *s)
{
	struct sync_job *job;
	if (s->spare_count > 0) {
		job = s->spare[--s->spare_count];
		job->gen = s->gen;
	} else {
		job = sync_job_new(s, JOB_CHUNK);
		if (job == NULL)
			return NULL;
		job->batch = imap_batch_new();
		job->own = calloc(MT_IMAP_SYNC_CHUNK, sizeof(*job->own));
		job->msgs = calloc(MT_IMAP_SYNC_CHUNK, sizeof(*job->msgs));
		job->results = calloc(MT_IMAP_SYNC_CHUNK, sizeof(*job->results));
		job->skipped = calloc(MT_IMAP_SYNC_CHUNK, sizeof(*job->skipped));
		if (job->batch == NULL || job->own == NULL || job->msgs == NULL ||
		    job->results == NULL || job->skipped == NULL) {
			sync_job_free(job);
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
	sync_chunk_empty(job);
	if (s->spare_count < MT_IMAP_SYNC_PIPELINE && !s->syncer->closing)
		s->spare[s->spare_count++] = job;
	else
		sync_job_free(job);
}

/* The session lets go of its chunks: those it holds are freed, those on a worker or in the store
 * are left to their completion, which finds the generation changed and frees them. */
void sync_chunks_drop(struct session *s)
{
	for (size_t i = 0; i < s->chunk_count; i++) {
		struct sync_job *job = s->chunks[i];
		if (job->stage == C_FETCHING || job->stage == C_CONVERTED)
			sync_job_free(job);
		s->chunks[i] = NULL;
	}
	s->chunk_count = 0;
	s->fetching = 0;
	s->fetch_oom = false;
}

void sync_chunk_pop(struct session *s)
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
	uint32_t done_uid = job->uid_end > 0 ? s->uids[job->uid_end - 1] : 0;
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
		sync_job_free(job); /* dropped by the session: no longer in its list */
		return;
	}
	for (size_t i = 0; i < job->skipped_count; i++)
		log_skipped(s, job->skipped[i].uid, job->skipped[i].reason);
	job->stage = C_CONVERTED;
	job->converted_ms = sync_mono_ms();
	pipeline_next(s);
}

/* The chunk's answers are in: its conversion to a worker (on the loop when there is no pool or
 * its queue is full: slower, never lost). */
static void chunk_convert(struct session *s, struct sync_job *job)
{
	if (imap_batch_count(job->batch) == 0) {
		job->stage = C_CONVERTED;
		job->converted_ms = sync_mono_ms();
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

/* How long the converted chunks at the front still wait for more before they go to the store
 * (0: now): while a pass has more chunks coming, a group is stored once it is full
 * (MT_IMAP_SYNC_STORE_GROUP) or its oldest chunk has waited MT_IMAP_SYNC_GROUP_WAIT_MS (the
 * session's group_timer, so that a server slow to answer the next chunks does not hold the
 * converted ones back).
 * A commit of two thousand messages instead of two hundred writes each randomly placed index
 * page (message keys, participants, timelines) once instead of up to ten times: for a first
 * sync of 100,000 messages 1.29 GB written one chunk a commit, 0.90 GB five, 0.69 GB ten; the
 * store thread's CPU -20 % at five, -5 % more at ten (bench/sync-initial). A pass of a few
 * messages (new mail) has none coming and is stored at once. */
static int64_t group_wait_ms(const struct session *s)
{
	size_t ready = 0;
	while (ready < s->chunk_count && s->chunks[ready]->stage == C_CONVERTED)
		ready++;
	if (ready >= MT_IMAP_SYNC_STORE_GROUP)
		return 0;
	bool more_coming = s->fetching > 0 ||
	                   (s->uid_pos < s->uid_count && s->chunk_count < MT_IMAP_SYNC_PIPELINE);
	int64_t left = s->chunks[0]->converted_ms + MT_IMAP_SYNC_GROUP_WAIT_MS - sync_mono_ms();
	return more_coming && left > 0 ? left : 0;
}

void sync_on_group_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct session *s = arg;
	if (s->chunk_count > 0 && s->chunks[0]->stage == C_CONVERTED)
		pipeline_next(s);
}

/* Moves the pass on: the oldest chunk to the store once it is converted and the one before it
 * stored; the next chunk fetched while there is room; the next folder once all is stored. */
static void pipeline_next(struct session *s)
{
	int64_t wait =
	    s->chunk_count > 0 && s->chunks[0]->stage == C_CONVERTED ? group_wait_ms(s) : -1;
	if (wait > 0 && !evtimer_pending(s->group_timer, NULL)) {
		struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000};
		evtimer_add(s->group_timer, &tv);
	}
	if (wait == 0) {
		evtimer_del(s->group_timer);
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
		if (store_submit(s->syncer->p.store, STORE_WRITE | STORE_REPLAYABLE, sync_job_run,
		                 sync_job_done, job) < 0) {
			/* still the session's: the halt frees them */
			for (size_t i = 0; i < n; i++) {
				s->chunks[i]->stage = C_CONVERTED;
				s->chunks[i]->group_next = NULL;
			}
			sync_session_retry(s, "the store is busy");
			return;
		}
	}
	if (s->uid_pos < s->uid_count) {
		while (s->uid_pos < s->uid_count && s->fetching < MT_IMAP_SYNC_FETCHES &&
		       s->chunk_count < MT_IMAP_SYNC_PIPELINE) {
			if (chunk_fetch(s) < 0)
				return;
		}
		return;
	}
	if (s->chunk_count == 0 && s->fetching == 0) {
		s->folder++;
		folder_next(s);
	}
}

/* A chunk with no messages: the cursor still moves (a reset, or past mail before `since`). */
static void chunk_store_empty(struct session *s)
{
	struct sync_job *job = chunk_new(s);
	if (job == NULL) {
		sync_session_retry(s, "out of memory");
		return;
	}
	s->chunks[s->chunk_count++] = job;
	job->uid_begin = job->uid_end = 0;
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
		sync_observe_lag(s);
		mt_metric_add("mailtrail_imap_messages_total", "Messages read by IMAP sync", NULL,
		              NULL, NULL, NULL, (double)job->count);
		mt_metric_add("mailtrail_imap_activities_total", "Activities logged by IMAP sync",
		              NULL, NULL, NULL, NULL, (double)created);
	}
	chunk_recycle(s, job);
}

/* A group's transaction done (sync_job_done, the session current): its chunks leave the pipeline
 * in order. */
void sync_group_stored(struct session *s, struct sync_job *job)
{
	if (job->fenced) {
		for (struct sync_job *c = job; c != NULL;) {
			struct sync_job *next = c->group_next;
			if (s->chunk_count > 0 && s->chunks[0] == c)
				sync_chunk_pop(s);
			sync_job_free(c);
			c = next;
		}
		/* Settings saved or turned off meanwhile: the hook restarts the session. */
		sync_session_stop(s, "the account changed");
		return;
	}
	for (struct sync_job *c = job; c != NULL;) {
		struct sync_job *next = c->group_next;
		c->group_next = NULL;
		if (s->chunk_count > 0 && s->chunks[0] == c)
			sync_chunk_pop(s); /* the oldest: chunks are stored in order */
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

/* The fetching chunk whose UIDs `uid` is among; NULL when none asked for it (a range may cover
 * mail older than `since`, or UIDs the search did not list). */
static struct sync_job *chunk_of_uid(struct session *s, uint32_t uid)
{
	for (size_t i = s->chunk_count - s->fetching; i < s->chunk_count; i++) {
		struct sync_job *job = s->chunks[i];
		const uint32_t *first = s->uids + job->uid_begin;
		size_t n = job->uid_end - job->uid_begin;
		if (n > 0 && uid >= first[0] && uid <= first[n - 1])
			return bsearch(&uid, first, n, sizeof(*first), uid_cmp) != NULL ? job
			                                                                : NULL;
	}
	return NULL;
}

/* On the loop: only copies (imap_message.h); the parse is the worker's. */
static void on_fetch(void *ctx, const struct imap_fetch *fetch)
{
	struct session *s = ctx;
	if (s->fetching == 0 || !(fetch->has & IMAP_FETCH_UID))
		return;
	struct sync_job *job = chunk_of_uid(s, fetch->uid);
	if (job == NULL || imap_batch_count(job->batch) >= MT_IMAP_SYNC_CHUNK)
		return;
	if (s->since_filter && !imap_cursor_since_covers(s->account->since, fetch->internaldate))
		return; /* older than `since`: passed over like mail a UID range covers */
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
		sync_session_retry(s, "out of memory");
		return;
	}
	/* the oldest fetching chunk: the client completes its operations in order */
	struct sync_job *job = s->chunks[s->chunk_count - s->fetching];
	s->fetching--;
	chunk_close(s, job, job->uid_end >= s->uid_count);
	chunk_convert(s, job);
}

/* The next chunk's UID FETCH. -1 when the session was halted. */
static int chunk_fetch(struct session *s)
{
	size_t end = s->uid_pos + MT_IMAP_SYNC_CHUNK;
	if (end > s->uid_count)
		end = s->uid_count;
	struct sync_job *job = chunk_new(s);
	if (job == NULL) {
		sync_session_retry(s, "out of memory");
		return -1;
	}
	s->chunks[s->chunk_count++] = job;
	job->uid_begin = s->uid_pos;
	job->uid_end = end;
	s->uid_pos = end;
	s->fetching++;
	const char *error;
	if (imap_client_fetch(s->client, s->uids[job->uid_begin], s->uids[end - 1],
	                      imap_message_fetch_items, 0, on_fetch, on_fetched, s, &error) < 0) {
		sync_session_retry(s, error);
		return -1;
	}
	return 0;
}

static void on_searched(void *ctx, const struct imap_result *r);

/* UID SEARCH: ALL, or what the cursor's decision asks for. */
static void search(struct session *s, bool all)
{
	char criteria[64] = "ALL";
	if (!all)
		imap_cursor_criteria(&s->decision, s->account->since, criteria, sizeof(criteria));
	const char *error;
	if (imap_client_search(s->client, criteria, on_searched, s, &error) < 0)
		sync_session_retry(s, error);
}

static void on_probe_fetch(void *ctx, const struct imap_fetch *fetch)
{
	struct session *s = ctx;
	if ((fetch->has & IMAP_FETCH_UID) && s->uid_count > 0 && fetch->uid == s->uids[0] &&
	    fetch->internaldate != NULL)
		s->probe_covers = imap_cursor_since_covers(s->account->since, fetch->internaldate);
}

/* The oldest message's date is in: every UID, or the server's SEARCH SINCE. */
static void on_probed(void *ctx, const struct imap_result *r)
{
	struct session *s = ctx;
	if (!step_ok(s, r, "UID FETCH"))
		return;
	if (s->probe_covers) {
		s->since_filter = true;
		pipeline_next(s);
		return;
	}
	search(s, false);
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
			sync_session_retry(s, "out of memory");
			return;
		}
		memcpy(s->uids, r->uids, r->uid_count * sizeof(*s->uids));
		s->uid_count = imap_cursor_filter(s->uids, r->uid_count, s->decision.from_uid);
	}
	if (s->uid_count == 0) {
		chunk_store_empty(s);
		return;
	}
	if (s->since_probe) {
		s->since_probe = false;
		s->probe_covers = false;
		const char *error;
		if (imap_client_fetch(s->client, s->uids[0], s->uids[0], "(UID INTERNALDATE)", 0,
		                      on_probe_fetch, on_probed, s, &error) < 0)
			sync_session_retry(s, error);
		return;
	}
	pipeline_next(s);
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
	s->since_filter = false;
	s->since_probe = s->decision.action == IMAP_CURSOR_FULL && s->account->since > 0;
	search(s, s->since_probe);
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
		sync_pass_begin(s);
		return;
	}
	sync_set_state(s, S_WATCHING);
	const char *error;
	if (imap_client_idle(s->client, true, &error) < 0) {
		sync_session_retry(s, error);
		return;
	}
	if (s->account->folder_count > 1 && s->watch == NULL)
		sync_poll_later(s);
}

void sync_report_done(struct sync_job *job)
{
	struct session *s = job->s;
	const struct store_imap_account *now = &job->account;
	if (job->found != 0 || !job->org.imap_sync || now->state != STORE_ACCOUNT_CONNECTED) {
		sync_session_stop(s, "the account or the org's imap_sync is off");
		return;
	}
	if (now->updated_at != s->account->updated_at) {
		sync_session_halt(s);
		sync_session_start(s);
		return;
	}
	s->account->last_sync_at = job->last_sync_at;
	if (!s->again)
		s->exists_ms = 0;
	sync_watch_start(s);
	/* Watch INBOX (the first folder when it is watched at all). */
	if (s->account->folder_count == 0 || strcmp(s->account->folders[0].role, "inbox") != 0) {
		sync_set_state(s, S_WATCHING);
		struct timeval tv = {MT_IMAP_SYNC_POLL_MS / 1000, 0};
		evtimer_add(s->poll, &tv);
		return;
	}
	const char *error;
	if (imap_client_select(s->client, s->account->folders[0].name, true, on_watch_selected, s,
	                       &error) < 0)
		sync_session_retry(s, error);
}

static void folder_next(struct session *s)
{
	if (s->folder >= s->account->folder_count) {
		sync_release_chunks(s);
		/* the last folder's UIDs: 4 bytes a message, not to be kept while watching */
		free(s->uids);
		s->uids = NULL;
		s->uid_count = s->uid_pos = 0;
		struct sync_job *job = sync_job_new(s, JOB_REPORT);
		if (job == NULL) {
			sync_session_retry(s, "out of memory");
			return;
		}
		job->last_sync_at = mt_wall_s();
		if (sync_job_submit(job, STORE_WRITE) < 0)
			sync_session_retry(s, "the store is busy");
		return;
	}
	const char *error;
	if (imap_client_select(s->client, s->account->folders[s->folder].name, true, on_selected, s,
	                       &error) < 0)
		sync_session_retry(s, error);
}

void sync_pass_begin(struct session *s)
{
	const char *error;
	evtimer_del(s->poll);
	sync_set_state(s, S_SYNCING);
	s->again = false;
	s->folder = 0;
	if (imap_client_idle(s->client, false, &error) < 0) {
		sync_session_retry(s, error);
		return;
	}
	folder_next(s);
}
