#include "engine/intake.h"

#include "lib/str.h"
#include "mime/message.h"
#include "work/work.h"

#include <stdlib.h>
#include <string.h>

struct intake_job {
	struct store *store;
	struct intake_request request;
	intake_done_fn *done;
	void *ctx;
	bool parsed;
	struct store_message message;
	struct intake_result result;
};

static void finish(struct intake_job *job, enum intake_verdict verdict)
{
	job->result.verdict = verdict;
	job->done(job->ctx, &job->result);
	store_activity_list_free(&job->result.activities);
	if (job->parsed)
		matcher_message_free(&job->message);
	free(job);
}

static int log_run(struct store_tx *tx, void *arg)
{
	struct intake_job *job = arg;
	struct intake_result *r = &job->result;
	store_activity_list_free(&r->activities); /* a run before this one left it */
	r->activities = (struct store_activity_list){0};
	const char *user = job->request.user_id[0] != '\0' ? job->request.user_id : NULL;
	int rc = matcher_log_message(tx, job->request.org_id, user, job->request.source,
	                             &job->message, &r->match);
	if (rc == 0 && r->match.outcome == MATCHER_LOGGED)
		rc =
		    store_message_activities(tx, job->request.org_id, r->match.key, &r->activities);
	return rc;
}

static void log_done(void *arg, int result)
{
	struct intake_job *job = arg;
	if (result == 0)
		finish(job, INTAKE_DONE);
	else if (result == STORE_NOT_FOUND)
		finish(job, INTAKE_GONE);
	else
		finish(job, INTAKE_FAILED);
}

/* On a worker thread: GMime over up to max_message_bytes. */
static bool parse_run(void *arg)
{
	struct intake_job *job = arg;
	struct mime_summary summary;
	const char *error;
	if (mime_parse_message(job->request.data, job->request.len, &summary, &error) < 0) {
		job->result.verdict = INTAKE_NOT_MAIL;
		mt_strlcpy(job->result.reason, error, sizeof(job->result.reason));
		return true;
	}
	if (matcher_message_from_summary(&summary, &job->message) < 0) {
		job->result.verdict = INTAKE_FAILED;
		mt_strlcpy(job->result.reason, "out of memory", sizeof(job->result.reason));
	} else {
		job->parsed = true;
		job->result.verdict = INTAKE_DONE;
	}
	mime_summary_free(&summary);
	return true;
}

static void parse_done(void *arg)
{
	struct intake_job *job = arg;
	if (job->result.verdict != INTAKE_DONE) {
		finish(job, job->result.verdict);
		return;
	}
	if (store_submit(job->store, STORE_WRITE_DURABLE | STORE_REPLAYABLE, log_run, log_done,
	                 job) < 0) {
		mt_strlcpy(job->result.reason, "the store is busy; try again",
		           sizeof(job->result.reason));
		finish(job, INTAKE_BUSY);
	}
}

void intake_log(struct store *store, struct work_pool *work, const struct intake_request *request,
                intake_done_fn *done, void *ctx)
{
	struct intake_job *job = calloc(1, sizeof(*job));
	if (job == NULL) {
		struct intake_result result = {.verdict = INTAKE_FAILED};
		mt_strlcpy(result.reason, "out of memory", sizeof(result.reason));
		done(ctx, &result);
		return;
	}
	job->store = store;
	job->request = *request;
	job->done = done;
	job->ctx = ctx;
	if (work_submit(work, parse_run, parse_done, job) < 0) {
		mt_strlcpy(job->result.reason, "too many messages are being read; try again",
		           sizeof(job->result.reason));
		finish(job, INTAKE_BUSY);
	}
}
