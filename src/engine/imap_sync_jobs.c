/* IMAP auto sync: a session's store jobs (load, chunks, report, disconnect) and their
 * completions on the loop, which hand the answer to the session when its generation is still
 * the job's (engine/imap_sync_internal.h). */
#include "engine/imap_sync_internal.h"

#include "engine/imap_message.h"
#include "engine/matcher.h"
#include "engine/notify.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "store/store.h"
#include "store/store_imap.h"
#include "store/store_notification.h"
#include "store/store_org.h"
#include "store/store_user.h"

#include <sodium.h>
#include <stdlib.h>

void sync_chunk_empty(struct sync_job *job)
{
	for (size_t i = 0; i < job->own_count; i++)
		matcher_message_free(&job->own[i]);
	job->own_count = job->count = job->skipped_count = 0;
	if (job->batch != NULL)
		imap_batch_clear(job->batch);
}

void sync_job_free(struct sync_job *job)
{
	sync_chunk_empty(job);
	imap_batch_free(&job->batch);
	sodium_memzero(&job->account, sizeof(job->account));
	free(job->own);
	free(job->msgs);
	free(job->results);
	free(job->skipped);
	free(job->body);
	free(job);
}

int sync_job_run(struct store_tx *tx, void *arg)
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

struct sync_job *sync_job_new(struct session *s, enum job_kind kind)
{
	struct sync_job *job = calloc(1, sizeof(*job));
	if (job != NULL) {
		job->s = s;
		job->gen = s->gen;
		job->kind = kind;
	}
	return job;
}

int sync_job_submit(struct sync_job *job, enum store_job_kind kind)
{
	if (store_submit(job->s->syncer->p.store, kind, sync_job_run, sync_job_done, job) == 0)
		return 0;
	sync_job_free(job);
	return -1;
}

void sync_job_done(void *arg, int result)
{
	struct sync_job *job = arg;
	struct session *s = job->s;
	bool current = job->gen == s->gen && !s->syncer->closing;
	if (job->kind == JOB_DISCONNECT_LOAD) {
		if (result == 0 && !s->syncer->closing) {
			sync_disconnect_loaded(job);
			return;
		}
		sync_job_free(job);
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
		sync_job_free(job);
		return;
	}
	if (job->kind == JOB_CHUNK && (!current || result != 0)) {
		/* the group's chunks: the session's no longer (halted), or to drop with it */
		for (struct sync_job *c = job; c != NULL;) {
			struct sync_job *next = c->group_next;
			if (current && s->chunk_count > 0 && s->chunks[0] == c)
				sync_chunk_pop(s);
			sync_job_free(c);
			c = next;
		}
		if (current)
			sync_session_retry(s, "the store failed");
		return;
	}
	if (!current) {
		sync_job_free(job);
		return;
	}
	if (result != 0) {
		sync_job_free(job);
		sync_session_retry(s, "the store failed");
		return;
	}
	switch (job->kind) {
	case JOB_LOAD:
		sync_session_loaded(job);
		break;
	case JOB_CHUNK:
		sync_group_stored(s, job);
		return;
	case JOB_REPORT:
		sync_report_done(job);
		break;
	default:
		break;
	}
	sync_job_free(job);
}
