#include "engine/activities.h"
#include "engine/matcher.h"

#include "lib/limits.h"
#include "lib/str.h"
#include "store/store.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct page_job {
	char org_id[MT_ID_MAX];
	char profile_id[MT_ID_MAX];
	char cursor[MT_CURSOR_MAX];
	char thread_id[MT_ID_MAX]; /* "" for the whole timeline */
	int64_t since;
	size_t limit;
	activities_done_fn *done;
	void *ctx;
	struct store_activity_list list;
};

static void finish(struct page_job *job, const struct crud_outcome *outcome)
{
	struct activities_result r = {.outcome = *outcome};
	if (outcome->verdict == CRUD_OK)
		r.list = &job->list;
	job->done(job->ctx, &r);
	store_activity_list_free(&job->list);
	free(job);
}

static void page_done(void *arg, int result)
{
	struct crud_outcome outcome = {0};
	crud_from_store(&outcome, result);
	finish(arg, &outcome);
}

static struct page_job *job_new(const char *org_id, size_t limit, activities_done_fn *done,
                                void *ctx)
{
	struct page_job *job = calloc(1, sizeof(*job));
	if (job == NULL) {
		struct activities_result r = {0};
		crud_set(&r.outcome, CRUD_FAILED, "out of memory");
		done(ctx, &r);
		return NULL;
	}
	mt_strlcpy(job->org_id, org_id, sizeof(job->org_id));
	job->limit = limit;
	job->done = done;
	job->ctx = ctx;
	return job;
}

static void submit(struct store *store, struct page_job *job, store_job_fn *run)
{
	if (store_submit(store, STORE_READ, run, page_done, job) < 0) {
		struct crud_outcome outcome = {.verdict = CRUD_BUSY};
		finish(job, &outcome);
	}
}

static int timeline_run(struct store_tx *tx, void *arg)
{
	struct page_job *job = arg;
	return store_profile_activities(tx, job->org_id, job->profile_id, job->thread_id,
	                                job->cursor, job->limit, &job->list);
}

void activities_timeline(struct store *store, const char *org_id, const char *profile_id,
                         const char *thread_id, const char *cursor, size_t limit,
                         activities_done_fn *done, void *ctx)
{
	struct page_job *job = job_new(org_id, limit, done, ctx);
	if (job == NULL)
		return;
	if (thread_id != NULL && thread_id[0] != '\0' && !matcher_thread_id_valid(thread_id)) {
		struct crud_outcome outcome = {0};
		crud_set(&outcome, CRUD_INVALID, "thread_id: not a thread id");
		return finish(job, &outcome);
	}
	mt_strlcpy(job->thread_id, thread_id != NULL ? thread_id : "", sizeof(job->thread_id));
	mt_strlcpy(job->profile_id, profile_id, sizeof(job->profile_id));
	mt_strlcpy(job->cursor, cursor != NULL ? cursor : "", sizeof(job->cursor));
	submit(store, job, timeline_run);
}

static int feed_run(struct store_tx *tx, void *arg)
{
	struct page_job *job = arg;
	return store_activity_feed(tx, job->org_id, job->since, job->limit, &job->list);
}

/* The feed's cursor is the last position seen: decimal digits only, no sign or spaces (strtoll
 * would take those), within int64. */
static int parse_since(const char *text, int64_t *since_r)
{
	char *end;
	errno = 0;
	long long v = strtoll(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || v < 0 ||
	    strspn(text, "0123456789") != strlen(text))
		return -1;
	*since_r = v;
	return 0;
}

void activities_feed(struct store *store, const char *org_id, const char *since, size_t limit,
                     activities_done_fn *done, void *ctx)
{
	struct page_job *job = job_new(org_id, limit, done, ctx);
	if (job == NULL)
		return;
	if (since != NULL && since[0] != '\0' && parse_since(since, &job->since) < 0) {
		struct crud_outcome outcome = {0};
		crud_set_at(&outcome, CRUD_INVALID, "invalid_cursor", "since",
		            "since: must be a next_cursor from an earlier page");
		return finish(job, &outcome);
	}
	submit(store, job, feed_run);
}
