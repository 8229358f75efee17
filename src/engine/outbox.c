#include "engine/outbox.h"
#include "lib/random.h"

#include "engine/governor.h"
#include "engine/sender.h"
#include "lib/log.h"
#include "lib/str.h"
#include "store/store_org.h"
#include "store/store_smtp.h"
#include "store/store_user.h"
#include "work/work.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct outbox {
	struct outbox_params p;
};

/* One outbox_submit() on its way: (loop or worker) build -> (store) route check, identity,
 * enqueue. */
struct submission {
	struct outbox *outbox;
	struct outbox_draft *draft;
	outbox_decode_fn *decode;
	void *decode_ctx;
	outbox_done_fn *done;
	void *ctx;
	struct store_outbox_message message;
	char existing_id[MT_ID_MAX];
	struct outbox_result result;
};

struct outbox *outbox_new(const struct outbox_params *params)
{
	struct outbox *outbox = calloc(1, sizeof(*outbox));
	if (outbox != NULL)
		outbox->p = *params;
	return outbox;
}

void outbox_free(struct outbox **outbox)
{
	free(*outbox);
	*outbox = NULL;
}

void outbox_draft_free(struct outbox_draft **draft_p)
{
	struct outbox_draft *draft = *draft_p;
	if (draft == NULL)
		return;
	*draft_p = NULL;
	free(draft->rcpts);
	free(draft->subject);
	free(draft->text);
	free(draft->html);
	for (size_t i = 0; i < draft->attachment_count; i++)
		free((char *)draft->attachments[i].filename);
	free(draft->attachments);
	mt_buf_free(&draft->bytes);
	free(draft);
}

void outbox_identity_new(const char *domain, char mailtrail_id[MT_MESSAGE_ID_MAX + 1],
                         char message_id[MT_MESSAGE_ID_MAX + 1])
{
	unsigned char id[12];
	mt_random_id_bytes(id, sizeof(id));
	uint64_t ms = (uint64_t)mt_wall_ms();
	for (int i = 5; i >= 0; i--, ms >>= 8)
		id[i] = (unsigned char)(ms & 0xff);
	sodium_bin2hex(mailtrail_id, MT_MESSAGE_ID_MAX + 1, id, sizeof(id));
	snprintf(message_id, MT_MESSAGE_ID_MAX + 1, "mt.%.32s@%.255s", mailtrail_id,
	         domain != NULL && domain[0] != '\0' ? domain : "mailtrail.invalid");
}

static bool domain_is_orgs(const struct store_org *org, const char *address)
{
	const char *at = strrchr(address, '@');
	if (at == NULL)
		return false;
	const char *domain = at + 1;
	size_t len = strlen(domain);
	for (size_t i = 0; i < org->domain_count; i++) {
		size_t n = strlen(org->domains[i]);
		/* The domain itself or a subdomain of it, as the matcher counts them. */
		if (strcmp(domain, org->domains[i]) == 0 ||
		    (len > n && domain[len - n - 1] == '.' &&
		     strcmp(domain + len - n, org->domains[i]) == 0))
			return true;
	}
	return false;
}

static void set_box(struct store_mailbox *box, const char *address, const char *name)
{
	mt_strlcpy(box->address, address, sizeof(box->address));
	mt_strlcpy(box->name, name, sizeof(box->name));
}

enum outbox_mail_kind outbox_mail_kind_of(const struct store_outbox_message *message)
{
	return message->relay_only               ? OUTBOX_MAIL_NOTICE
	       : message->campaign_id[0] != '\0' ? OUTBOX_MAIL_CAMPAIGN
	                                         : OUTBOX_MAIL_SINGLE;
}

int outbox_route(const struct store_org *org, const struct store_user *user,
                 const struct store_smtp_account *account, const struct outbox_relay *relay,
                 enum outbox_mail_kind kind, const struct store_mailbox *reply_to,
                 struct outbox_route *r, const char **reason_r)
{
	memset(r, 0, sizeof(*r));
	if (reply_to != NULL)
		r->reply_to = *reply_to;
	bool custom_ready = account != NULL && account->state == STORE_ACCOUNT_CONNECTED &&
	                    kind != OUTBOX_MAIL_NOTICE;
	/* Bulk mail does not fall back to the relay's small cap while the user's own server is
	 * broken: it waits for the user to fix it. */
	if (kind == OUTBOX_MAIL_CAMPAIGN && org->custom_smtp && account != NULL &&
	    account->state == STORE_ACCOUNT_DISCONNECTED) {
		r->held = true;
		set_box(&r->record_from, user->email, user->name);
		return 0;
	}
	if (custom_ready && org->custom_smtp) {
		mt_strlcpy(r->mail_from, account->from_address, sizeof(r->mail_from));
		set_box(&r->from, account->from_address, user->name);
		r->record_from = r->from;
		return 0;
	}
	if (!relay->configured) {
		*reason_r = custom_ready
		                ? "no route for this message: Custom SMTP is switched off "
		                  "for this org (custom_smtp) and the platform relay is not "
		                  "configured"
		                : "no route for this message: connect your own SMTP account "
		                  "(PUT /v1/smtp); the platform relay is not configured";
		return -1;
	}
	r->relay = true;
	const char *relay_from = relay->from != NULL ? relay->from : "";
	mt_strlcpy(r->mail_from, relay_from[0] ? relay_from : user->email, sizeof(r->mail_from));
	set_box(&r->record_from, user->email, user->name);
	if (domain_is_orgs(org, user->email) || relay_from[0] == '\0') {
		r->from = r->record_from;
		if (relay_from[0] != '\0')
			set_box(&r->sender, relay_from, "");
	} else {
		set_box(&r->from, relay_from, user->name);
		if (r->reply_to.address[0] == '\0')
			r->reply_to = r->record_from;
	}
	return 0;
}

static void finish(struct submission *sub, enum outbox_submit_verdict verdict, const char *reason)
{
	sub->result.verdict = verdict;
	if (reason != NULL)
		mt_strlcpy(sub->result.reason, reason, sizeof(sub->result.reason));
	if (verdict == OUTBOX_QUEUED && sub->outbox->p.sender != NULL)
		sender_wake(sub->outbox->p.sender);
	sub->done(sub->ctx, &sub->result);
	outbox_draft_free(&sub->draft);
	store_outbox_message_free(&sub->message);
	free(sub);
}

/* ---- the store job: a route exists, identity, enqueue --------------------------------------- */

/* What the check needs of the user's world, read in the job (too large for the submission). */
struct world {
	struct store_user user;
	struct store_org org;
	struct store_smtp_account account;
};

/* More recipients than a window of the route allows could never go (engine/governor.h): the
 * request is refused now rather than held forever. */
static bool over_limit(struct submission *sub, const struct outbox_route *route,
                       const struct store_smtp_account *account)
{
	const struct store_send_limit *limits =
	    route->relay ? sub->outbox->p.relay.limits : account->limits;
	size_t count = route->relay ? sub->outbox->p.relay.limit_count : account->limit_count;
	size_t which;
	size_t want = sub->message.rcpt_count;
	if (governor_fits_ever(limits, count, (int64_t)want, &which) == 0)
		return false;
	snprintf(sub->result.reason, sizeof(sub->result.reason),
	         "the message has %zu recipients; the send limit of %s allows %lld per %s: send "
	         "it to fewer at a time",
	         want, route->relay ? "the platform relay" : "your SMTP account",
	         (long long)limits[which].limit,
	         governor_window_name((int64_t)limits[which].window_s * 1000));
	return true;
}

static int enqueue_run(struct store_tx *tx, void *arg)
{
	struct submission *sub = arg;
	struct store_outbox_message *m = &sub->message;
	/* Everything is set afresh: a run may follow a rolled-back one (STORE_REPLAYABLE). */
	sub->result.verdict = OUTBOX_QUEUED;
	sub->result.reason[0] = '\0';
	struct world *w = malloc(sizeof(*w));
	if (w == NULL)
		return -1;
	int rc = store_user_get(tx, sub->draft->org_id, sub->draft->user_id, &w->user);
	if (rc == 0 && !w->user.active)
		rc = STORE_NOT_FOUND;
	if (rc == 0)
		rc = store_org_get(tx, sub->draft->org_id, &w->org);
	int got = rc == 0 ? store_smtp_account_get(tx, sub->draft->org_id, sub->draft->user_id,
	                                           &w->account)
	                  : 0;
	if (got != 0 && got != STORE_NOT_FOUND)
		rc = got;
	struct outbox_route route;
	const char *reason = NULL;
	if (rc == 0 &&
	    outbox_route(&w->org, &w->user, got == 0 ? &w->account : NULL, &sub->outbox->p.relay,
	                 outbox_mail_kind_of(m), &m->reply_to, &route, &reason) < 0) {
		sub->result.verdict = OUTBOX_NO_ROUTE;
		mt_strlcpy(sub->result.reason, reason, sizeof(sub->result.reason));
	} else if (rc == 0 && over_limit(sub, &route, got == 0 ? &w->account : NULL)) {
		sub->result.verdict = OUTBOX_OVER_LIMIT;
	} else if (rc == 0) {
		/* The route planned now; each attempt chooses again (GET shows the last one). A
		 * message that would be held is stored queued: its first claim holds it. */
		mt_strlcpy(m->route, route.relay ? "relay" : "custom", sizeof(m->route));
		mt_strlcpy(m->mail_from, route.mail_from, sizeof(m->mail_from));
		m->from = route.record_from;
		const char *at = strrchr(w->user.email, '@');
		outbox_identity_new(at != NULL ? at + 1 : "", m->mailtrail_id, m->message_id);
	}
	sodium_memzero(&w->account, sizeof(w->account));
	free(w);
	if (rc != 0 || sub->result.verdict != OUTBOX_QUEUED)
		return rc;
	rc = store_outbox_enqueue(tx, m, sub->existing_id);
	if (rc != STORE_CONFLICT || sub->existing_id[0] == '\0')
		return rc;
	/* The same Idempotency-Key within 24 h: the first message is the answer. */
	struct store_outbox_message *first = malloc(sizeof(*first));
	if (first == NULL)
		return -1;
	rc = store_outbox_get(tx, sub->draft->org_id, sub->draft->user_id, sub->existing_id, first);
	if (rc == 0) {
		sub->result.verdict = OUTBOX_EXISTING;
		mt_strlcpy(sub->result.id, first->id, sizeof(sub->result.id));
		sub->result.state = first->state;
	}
	store_outbox_message_free(first);
	free(first);
	return rc;
}

static void enqueued(void *arg, int result)
{
	struct submission *sub = arg;
	if (result == STORE_NOT_FOUND) {
		finish(sub, OUTBOX_GONE, "the user is no longer active");
		return;
	}
	if (result != 0) {
		finish(sub, OUTBOX_FAILED, "the store failed; nothing was stored");
		return;
	}
	if (sub->result.verdict == OUTBOX_QUEUED) {
		mt_strlcpy(sub->result.id, sub->message.id, sizeof(sub->result.id));
		sub->result.state = sub->message.state;
	}
	finish(sub, sub->result.verdict, NULL);
}

/* ---- the worker: MIME and summary ---------------------------------------------------------- */

static void build_failed(struct submission *sub, enum outbox_submit_verdict verdict,
                         const char *reason)
{
	sub->result.verdict = verdict;
	mt_strlcpy(sub->result.reason, reason, sizeof(sub->result.reason));
}

/* Runs on a worker thread or on the loop (a small request): touches only the submission, until it
 * hands it to the store. True when it did not reach the store (build_done answers). */
static bool build_run(void *arg)
{
	struct submission *sub = arg;
	const struct outbox_draft *d = sub->draft;
	struct store_outbox_message *m = &sub->message;
	if (sub->decode != NULL && sub->decode(sub->decode_ctx, sub->draft, sub->result.reason,
	                                       sizeof(sub->result.reason)) < 0) {
		sub->result.verdict = OUTBOX_INVALID;
		return true;
	}
	struct mime_build_input in = {
	    .without_head = true,
	    .to = d->rcpts,
	    .to_count = d->to_count,
	    .cc = d->rcpts + d->to_count,
	    .cc_count = d->cc_count,
	    .subject = d->subject,
	    .text = d->text,
	    .html = d->html,
	    .attachments = d->attachments,
	    .attachment_count = d->attachment_count,
	    .date = (int64_t)time(NULL),
	};
	const char *error;
	char reason[MT_ERROR_TEXT_MAX];
	if (mime_build_message(&in, &m->body, &m->body_len, &error) < 0) {
		snprintf(reason, sizeof(reason), "cannot build the message: %s", error);
		build_failed(sub, OUTBOX_INVALID, reason);
		return true;
	}
	/* The fields put before it at delivery are a few hundred bytes at most. */
	int64_t max = sub->outbox->p.max_message_bytes;
	if (max > 0 && (int64_t)m->body_len + MT_MESSAGE_HEAD_ROOM > max) {
		snprintf(reason, sizeof(reason), "the message is %zu bytes; at most %lld",
		         m->body_len + MT_MESSAGE_HEAD_ROOM, (long long)max);
		build_failed(sub, OUTBOX_TOO_LARGE, reason);
		return true;
	}
	struct mime_attachment *list = NULL;
	size_t count = 0;
	if (mime_build_summary(&in, m->snippet, &list, &count) < 0) {
		free(list);
		build_failed(sub, OUTBOX_FAILED, "out of memory");
		return true;
	}
	if (count > 0 && (m->attachments = calloc(count, sizeof(*m->attachments))) != NULL) {
		for (size_t i = 0; i < count; i++) {
			mt_strlcpy(m->attachments[i].name, list[i].name,
			           sizeof(m->attachments[i].name));
			mt_strlcpy(m->attachments[i].type, list[i].type,
			           sizeof(m->attachments[i].type));
			m->attachments[i].size = list[i].size;
		}
		m->attachment_count = count;
	}
	free(list);
	if (count > 0 && m->attachments == NULL) {
		build_failed(sub, OUTBOX_FAILED, "out of memory");
		return true;
	}
	size_t total = d->to_count + d->cc_count + d->bcc_count;
	m->rcpts = calloc(total, sizeof(*m->rcpts));
	if (m->rcpts == NULL) {
		build_failed(sub, OUTBOX_FAILED, "out of memory");
		return true;
	}
	for (size_t i = 0; i < total; i++) {
		struct store_outbox_rcpt *r = &m->rcpts[i];
		mt_strlcpy(r->address, d->rcpts[i].address, sizeof(r->address));
		mt_strlcpy(r->name, d->rcpts[i].name, sizeof(r->name));
		r->kind = i < d->to_count                 ? STORE_RCPT_TO
		          : i < d->to_count + d->cc_count ? STORE_RCPT_CC
		                                          : STORE_RCPT_BCC;
	}
	m->rcpt_count = total;
	mt_strlcpy(m->org_id, d->org_id, sizeof(m->org_id));
	mt_strlcpy(m->user_id, d->user_id, sizeof(m->user_id));
	mt_strlcpy(m->idempotency_key, d->idempotency_key, sizeof(m->idempotency_key));
	mt_strlcpy(m->subject, d->subject, sizeof(m->subject));
	if (d->have_reply_to)
		set_box(&m->reply_to, d->reply_to.address, d->reply_to.name);
	m->head_apart = true;
	m->state = STORE_OUTBOX_QUEUED;
	sub->result.verdict = OUTBOX_QUEUED;
	/* Straight to the store from here: the loop hears of it once, when it is stored. The
	 * submission is the store job's from now on. */
	if (store_submit(sub->outbox->p.store, STORE_WRITE_DURABLE | STORE_REPLAYABLE, enqueue_run,
	                 enqueued, sub) == 0)
		return false;
	build_failed(sub, OUTBOX_BUSY, "the store is busy; try again");
	return true;
}

/* On the loop, for a submission that did not reach the store. */
static void build_done(void *arg)
{
	struct submission *sub = arg;
	finish(sub, sub->result.verdict, NULL);
}

void outbox_submit(struct outbox *outbox, struct outbox_draft *draft, outbox_decode_fn *decode,
                   void *decode_ctx, size_t input_bytes, outbox_done_fn *done, void *ctx)
{
	struct submission *sub = calloc(1, sizeof(*sub));
	if (sub == NULL) {
		struct outbox_result result = {.verdict = OUTBOX_FAILED};
		mt_strlcpy(result.reason, "out of memory", sizeof(result.reason));
		done(ctx, &result);
		outbox_draft_free(&draft);
		return;
	}
	sub->outbox = outbox;
	sub->draft = draft;
	sub->decode = decode;
	sub->decode_ctx = decode_ctx;
	sub->done = done;
	sub->ctx = ctx;
	if (input_bytes <= MT_OUTBOX_INLINE_BYTES) {
		if (build_run(sub))
			build_done(sub);
		return;
	}
	if (work_submit(outbox->p.work, build_run, build_done, sub) < 0)
		finish(sub, OUTBOX_BUSY, "too many messages are being prepared; try again");
}

/* ---- one message: its state, or a cancel ---------------------------------------------------- */

struct status_job {
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	char id[MT_ID_MAX];
	bool cancel;
	outbox_status_fn *done;
	void *ctx;
	struct outbox_status status;
};

static int status_run(struct store_tx *tx, void *arg)
{
	struct status_job *job = arg;
	struct outbox_status *st = &job->status;
	store_outbox_message_free(&st->message); /* a run before this one */
	st->verdict = OUTBOX_STATUS_OK;
	int rc = 0;
	if (job->cancel) {
		rc = store_outbox_cancel(tx, job->org_id, job->user_id, job->id);
		if (rc == STORE_CONFLICT) {
			st->verdict = OUTBOX_STATUS_TOO_LATE; /* an answer, not a failure */
			rc = 0;
		}
	}
	if (rc == 0)
		rc = store_outbox_get(tx, job->org_id, job->user_id, job->id, &st->message);
	if (rc == STORE_NOT_FOUND) {
		st->verdict = OUTBOX_STATUS_NOT_FOUND;
		rc = 0;
	}
	return rc;
}

static void status_done(void *arg, int result)
{
	struct status_job *job = arg;
	if (result != 0)
		job->status.verdict = OUTBOX_STATUS_FAILED;
	job->done(job->ctx, &job->status);
	store_outbox_message_free(&job->status.message);
	free(job);
}

void outbox_message(struct outbox *outbox, const char *org_id, const char *user_id, const char *id,
                    bool cancel, outbox_status_fn *done, void *ctx)
{
	struct status_job *job = calloc(1, sizeof(*job));
	if (job == NULL) {
		struct outbox_status st = {.verdict = OUTBOX_STATUS_FAILED};
		done(ctx, &st);
		return;
	}
	mt_strlcpy(job->org_id, org_id, sizeof(job->org_id));
	mt_strlcpy(job->user_id, user_id, sizeof(job->user_id));
	mt_strlcpy(job->id, id, sizeof(job->id));
	job->cancel = cancel;
	job->done = done;
	job->ctx = ctx;
	if (store_submit(outbox->p.store, cancel ? STORE_WRITE_DURABLE : STORE_READ, status_run,
	                 status_done, job) < 0) {
		job->status.verdict = OUTBOX_STATUS_BUSY;
		status_done(job, 0);
	}
}

/* ---- the list --------------------------------------------------------------------------- */

struct list_job {
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX]; /* "" : every user */
	char campaign_id[MT_ID_MAX];
	bool by_campaign;
	int state;
	char cursor[MT_CURSOR_MAX];
	size_t limit;
	int rc;
	struct store_outbox_list list;
	outbox_page_fn *done;
	void *ctx;
};

static int list_run(struct store_tx *tx, void *arg)
{
	struct list_job *job = arg;
	store_outbox_list_free(&job->list);
	struct store_outbox_filter filter = {
	    .user_id = job->user_id[0] != '\0' ? job->user_id : NULL,
	    .campaign_id = job->by_campaign ? job->campaign_id : NULL,
	    .state = job->state,
	};
	job->rc = store_outbox_list(tx, job->org_id, &filter, job->cursor, job->limit, &job->list);
	return job->rc < 0 ? -1 : 0;
}

static void list_done(void *arg, int result)
{
	struct list_job *job = arg;
	struct outbox_page page = {.list = &job->list};
	if (result != 0)
		crud_set(&page.outcome, CRUD_FAILED, "the store failed");
	else if (job->rc == STORE_INVALID)
		page.outcome.verdict = CRUD_BAD_CURSOR;
	else if (job->rc != 0)
		crud_from_store(&page.outcome, job->rc);
	job->done(job->ctx, &page);
	store_outbox_list_free(&job->list);
	free(job);
}

void outbox_list(struct outbox *outbox, const char *org_id, const char *caller_id, bool admin,
                 const struct outbox_list_query *query, outbox_page_fn *done, void *ctx)
{
	struct store_outbox_list empty = {0};
	struct outbox_page page = {.list = &empty};
	int state = -1;
	if (query->state != NULL) {
		for (int s = STORE_OUTBOX_QUEUED; s <= STORE_OUTBOX_CANCELLED; s++)
			if (strcmp(query->state,
			           store_outbox_state_name((enum store_outbox_state)s)) == 0)
				state = s;
		if (state < 0)
			crud_set_at(
			    &page.outcome, CRUD_INVALID, "invalid_value", "state",
			    "state: must be queued, held, sending, sent, partial, failed or "
			    "cancelled");
	}
	if (query->limit == 0 || query->limit > MT_MESSAGES_LIST_MAX)
		crud_set_at(&page.outcome, CRUD_INVALID, "out_of_range", "limit",
		            "limit must be 1..%d", MT_MESSAGES_LIST_MAX);
	if ((query->user_id != NULL && strlen(query->user_id) >= MT_ID_MAX) ||
	    (query->campaign_id != NULL && strlen(query->campaign_id) >= MT_ID_MAX))
		crud_set_at(&page.outcome, CRUD_INVALID, "invalid_value",
		            query->user_id != NULL && strlen(query->user_id) >= MT_ID_MAX
		                ? "user"
		                : "campaign",
		            "user and campaign: ids of at most %d characters", MT_ID_MAX - 1);
	if (!admin && query->user_id != NULL && strcmp(query->user_id, caller_id) != 0)
		crud_set_at(&page.outcome, CRUD_FORBIDDEN, "admin_only", "user",
		            "only an admin lists another user's messages");
	if (query->cursor != NULL && strlen(query->cursor) >= MT_CURSOR_MAX)
		page.outcome.verdict = CRUD_BAD_CURSOR;
	struct list_job *job = page.outcome.verdict == CRUD_OK ? calloc(1, sizeof(*job)) : NULL;
	if (page.outcome.verdict == CRUD_OK && job == NULL)
		crud_set(&page.outcome, CRUD_FAILED, "out of memory");
	if (page.outcome.verdict != CRUD_OK) {
		done(ctx, &page);
		return;
	}
	mt_strlcpy(job->org_id, org_id, sizeof(job->org_id));
	mt_strlcpy(job->user_id,
	           query->user_id != NULL ? query->user_id
	           : admin                ? ""
	                                  : caller_id,
	           sizeof(job->user_id));
	job->by_campaign = query->campaign_id != NULL;
	mt_strlcpy(job->campaign_id, job->by_campaign ? query->campaign_id : "",
	           sizeof(job->campaign_id));
	job->state = state;
	mt_strlcpy(job->cursor, query->cursor != NULL ? query->cursor : "", sizeof(job->cursor));
	job->limit = query->limit;
	job->done = done;
	job->ctx = ctx;
	if (store_submit(outbox->p.store, STORE_READ, list_run, list_done, job) < 0) {
		page.outcome.verdict = CRUD_BUSY;
		done(ctx, &page);
		free(job);
	}
}
