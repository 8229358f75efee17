#include "engine/campaign.h"

#include "engine/sender.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/str.h"
#include "mime/build.h"
#include "store/store.h"
#include "store/store_org.h"
#include "store/store_smtp.h"
#include "store/store_user.h"
#include "work/work.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MESSAGES_METRIC "mailtrail_campaign_messages_total"
#define MESSAGES_HELP   "Campaign recipients at creation: queued (one message each) or suppressed."
#define ACTIONS_METRIC  "mailtrail_campaign_actions_total"
#define ACTIONS_HELP    "Campaigns created, paused, resumed and cancelled."
#define UNSUB_METRIC    "mailtrail_unsubscribes_total"
#define UNSUB_HELP      "One-click and page unsubscribes that put an address on a suppression list."

struct campaigns {
	struct campaigns_params p;
	char public_url[MT_PUBLIC_URL_MAX + 1]; /* without a trailing slash */
};

struct campaigns *campaigns_new(const struct campaigns_params *params)
{
	struct campaigns *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->p = *params;
	if (params->public_url != NULL) {
		mt_strlcpy(c->public_url, params->public_url, sizeof(c->public_url));
		size_t len = strlen(c->public_url);
		while (len > 0 && c->public_url[len - 1] == '/')
			c->public_url[--len] = '\0';
	}
	c->p.public_url = NULL; /* ours is the copy */
	return c;
}

void campaigns_free(struct campaigns **campaigns)
{
	free(*campaigns);
	*campaigns = NULL;
}

void campaign_draft_free(struct campaign_draft **draft_p)
{
	struct campaign_draft *d = *draft_p;
	if (d == NULL)
		return;
	*draft_p = NULL;
	free(d->rcpts);
	free(d->subject);
	free(d->text);
	free(d->html);
	free(d);
}

static void set_reason(struct campaign_result *r, enum campaign_verdict verdict, const char *fmt,
                       ...) __attribute__((format(printf, 3, 4)));
static void set_reason(struct campaign_result *r, enum campaign_verdict verdict, const char *fmt,
                       ...)
{
	r->verdict = verdict;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
	va_end(ap);
}

/* ---- submit: (worker) decode, build each message -> (store) route, cap, suppressions, store -- */

/* One recipient's message, built. */
struct built {
	char *body;
	size_t body_len;
	char token[MT_UNSUBSCRIBE_TOKEN_LEN + 1];
	bool duplicate;  /* the address came earlier in the list: no message */
	bool suppressed; /* set by the store job */
};

struct submission {
	struct campaigns *campaigns;
	struct campaign_draft *draft;
	campaign_decode_fn *decode;
	void *decode_ctx;
	campaign_done_fn *done;
	void *ctx;
	struct built *built;
	char snippet[MT_SNIPPET_BYTES + 1];
	struct store_outbox_message message; /* reused for each insert */
	struct campaign_result result;
};

static void submission_finish(struct submission *sub)
{
	struct campaign_result *r = &sub->result;
	if (r->verdict == CAMPAIGN_OK) {
		if (sub->campaigns->p.sender != NULL)
			sender_wake(sub->campaigns->p.sender);
		mt_metric_inc(ACTIONS_METRIC, ACTIONS_HELP, "action", "create", NULL, NULL);
		mt_metric_add(MESSAGES_METRIC, MESSAGES_HELP, "as", "queued", NULL, NULL,
		              (double)r->messages);
		mt_metric_add(MESSAGES_METRIC, MESSAGES_HELP, "as", "suppressed", NULL, NULL,
		              (double)r->campaign.suppressed);
	}
	sub->done(sub->ctx, r);
	if (sub->built != NULL && sub->draft != NULL)
		for (size_t i = 0; i < sub->draft->rcpt_count; i++)
			free(sub->built[i].body);
	free(sub->built);
	/* The message borrowed bodies and the rcpt: nothing of it is its own. */
	sub->message.body = NULL;
	sub->message.rcpts = NULL;
	store_outbox_message_free(&sub->message);
	campaign_draft_free(&sub->draft);
	sodium_memzero(sub, sizeof(*sub));
	free(sub);
}

/* What the route check needs of the user's world (too large for the stack of a store job). */
struct world {
	struct store_user user;
	struct store_org org;
	struct store_smtp_account account;
};

static int load_world(struct store_tx *tx, const struct campaign_draft *d, struct world *w,
                      bool *have_account_r)
{
	int rc = store_user_get(tx, d->org_id, d->user_id, &w->user);
	if (rc == 0 && !w->user.active)
		rc = STORE_NOT_FOUND;
	if (rc == 0)
		rc = store_org_get(tx, d->org_id, &w->org);
	if (rc != 0)
		return rc;
	rc = store_smtp_account_get(tx, d->org_id, d->user_id, &w->account);
	*have_account_r = rc == 0;
	return rc == STORE_NOT_FOUND ? 0 : rc;
}

/* The route now, and the relay's cap: a disconnected account's campaign waits for it (held),
 * it does not spill onto the relay, so only an account that is off or switched off for the org
 * makes a campaign a relay one. 0, or CAMPAIGN_* set in the result. */
static int check_route(struct submission *sub, const struct world *w, bool have_account,
                       size_t recipients, struct outbox_route *route)
{
	const struct campaigns_params *p = &sub->campaigns->p;
	const char *reason = NULL;
	const struct store_mailbox none = {{0}, {0}};
	if (outbox_route(&w->org, &w->user, have_account ? &w->account : NULL, &p->relay,
	                 OUTBOX_MAIL_CAMPAIGN, &none, route, &reason) < 0) {
		set_reason(&sub->result, CAMPAIGN_NO_ROUTE, "%s", reason);
		return -1;
	}
	/* route->held: the account is disconnected, the campaign waits for it (not the relay). */
	if (route->relay && !route->held && (int64_t)recipients > p->relay_campaign_max) {
		set_reason(
		    &sub->result, CAMPAIGN_RELAY_CAP,
		    "recipients: %zu; a campaign through the platform relay may have at most "
		    "%lld; connect your own SMTP account (PUT /v1/smtp) to send it to more",
		    recipients, (long long)p->relay_campaign_max);
		return -1;
	}
	return 0;
}

static int store_messages(struct store_tx *tx, struct submission *sub,
                          const struct outbox_route *route, const char *user_email)
{
	struct campaign_draft *d = sub->draft;
	struct store_outbox_message *m = &sub->message;
	struct store_outbox_rcpt rcpt;
	memset(m, 0, sizeof(*m));
	mt_strlcpy(m->org_id, d->org_id, sizeof(m->org_id));
	mt_strlcpy(m->user_id, d->user_id, sizeof(m->user_id));
	mt_strlcpy(m->campaign_id, sub->result.campaign.id, sizeof(m->campaign_id));
	mt_strlcpy(m->route, route->relay ? "relay" : "custom", sizeof(m->route));
	mt_strlcpy(m->mail_from, route->mail_from, sizeof(m->mail_from));
	m->from = route->record_from;
	mt_strlcpy(m->subject, d->subject, sizeof(m->subject));
	mt_strlcpy(m->snippet, sub->snippet, sizeof(m->snippet));
	m->head_apart = true;
	m->state = STORE_OUTBOX_QUEUED;
	m->rcpts = &rcpt;
	m->rcpt_count = 1;
	const char *at = strrchr(user_email, '@');
	struct store_unsubscribe token = {0};
	mt_strlcpy(token.org_id, d->org_id, sizeof(token.org_id));
	mt_strlcpy(token.campaign_id, m->campaign_id, sizeof(token.campaign_id));
	for (size_t i = 0; i < d->rcpt_count; i++) {
		const struct built *b = &sub->built[i];
		if (b->duplicate || b->suppressed)
			continue;
		memset(&rcpt, 0, sizeof(rcpt));
		mt_strlcpy(rcpt.address, d->rcpts[i].address, sizeof(rcpt.address));
		mt_strlcpy(rcpt.name, d->rcpts[i].name, sizeof(rcpt.name));
		rcpt.kind = STORE_RCPT_TO;
		m->body = b->body;
		m->body_len = b->body_len;
		m->next_attempt_at = 0;
		outbox_identity_new(at != NULL ? at + 1 : "", m->mailtrail_id, m->message_id);
		char unused[MT_ID_MAX];
		int rc = store_outbox_enqueue(tx, m, unused);
		if (rc != 0)
			return rc == STORE_CONFLICT ? -1
			                            : rc; /* no key: a conflict is an id clash */
		mt_strlcpy(token.token, b->token, sizeof(token.token));
		mt_strlcpy(token.address, rcpt.address, sizeof(token.address));
		if (store_unsubscribe_token_add(tx, &token) < 0)
			return -1;
		sub->result.messages++;
	}
	m->body = NULL;
	m->rcpts = NULL;
	return 0;
}

static int create_run(struct store_tx *tx, void *arg)
{
	struct submission *sub = arg;
	struct campaign_draft *d = sub->draft;
	struct campaign_result *r = &sub->result;
	/* Everything is set afresh: a run may follow a rolled-back one (STORE_REPLAYABLE). */
	r->verdict = CAMPAIGN_OK;
	r->reason[0] = '\0';
	r->messages = 0;
	memset(&r->campaign, 0, sizeof(r->campaign));
	struct world *w = malloc(sizeof(*w));
	if (w == NULL)
		return -1;
	bool have_account = false;
	struct outbox_route route;
	int rc = load_world(tx, d, w, &have_account);
	size_t distinct = 0, suppressed = 0;
	for (size_t i = 0; rc == 0 && i < d->rcpt_count; i++) {
		sub->built[i].suppressed = false;
		if (sub->built[i].duplicate)
			continue;
		distinct++;
		rc = store_suppression_has(tx, d->org_id, d->rcpts[i].address,
		                           &sub->built[i].suppressed);
		suppressed += sub->built[i].suppressed;
	}
	if (rc == 0 && check_route(sub, w, have_account, distinct - suppressed, &route) < 0) {
		sodium_memzero(&w->account, sizeof(w->account));
		free(w);
		return 0;
	}
	char email[MT_ADDRESS_MAX + 1] = "";
	if (rc == 0)
		mt_strlcpy(email, w->user.email, sizeof(email));
	sodium_memzero(&w->account, sizeof(w->account));
	free(w);
	if (rc != 0)
		return rc;
	struct store_campaign *c = &r->campaign;
	mt_strlcpy(c->org_id, d->org_id, sizeof(c->org_id));
	mt_strlcpy(c->user_id, d->user_id, sizeof(c->user_id));
	mt_strlcpy(c->idempotency_key, d->idempotency_key, sizeof(c->idempotency_key));
	mt_strlcpy(c->subject, d->subject, sizeof(c->subject));
	c->total = (int64_t)distinct;
	c->suppressed = (int64_t)suppressed;
	char existing[MT_ID_MAX];
	rc = store_campaign_create(tx, c, existing);
	if (rc == STORE_CONFLICT && existing[0] != '\0') {
		/* The same Idempotency-Key within 24 h: the first campaign is the answer. */
		r->verdict = CAMPAIGN_EXISTING;
		rc = store_campaign_get(tx, d->org_id, d->user_id, existing, c);
		if (rc == 0) {
			for (int s = 0; s <= STORE_OUTBOX_CANCELLED; s++)
				r->messages += (size_t)c->counts[s];
		}
		return rc;
	}
	if (rc != 0)
		return rc;
	rc = store_messages(tx, sub, &route, email);
	if (rc == 0)
		c->counts[STORE_OUTBOX_QUEUED] = (int64_t)r->messages;
	return rc;
}

static void created(void *arg, int result)
{
	struct submission *sub = arg;
	if (result == STORE_NOT_FOUND)
		set_reason(&sub->result, CAMPAIGN_GONE, "the user is no longer active");
	else if (result != 0)
		set_reason(&sub->result, CAMPAIGN_FAILED, "the store failed; nothing was stored");
	submission_finish(sub);
}

static int compare_addresses(const void *a, const void *b)
{
	const struct mime_mailbox *const *x = a, *const *y = b;
	int c = strcmp((*x)->address, (*y)->address);
	/* Equal addresses keep their order, so the first of them is the one that stays. */
	return c != 0 ? c : (*x < *y ? -1 : *x > *y);
}

/* Marks every repeat of an address (after the first) as a duplicate: n log n, not n². */
static int mark_duplicates(struct submission *sub)
{
	struct campaign_draft *d = sub->draft;
	const struct mime_mailbox **order = malloc(d->rcpt_count * sizeof(*order));
	if (order == NULL)
		return -1;
	for (size_t i = 0; i < d->rcpt_count; i++)
		order[i] = &d->rcpts[i];
	qsort(order, d->rcpt_count, sizeof(*order), compare_addresses);
	for (size_t i = 1; i < d->rcpt_count; i++)
		if (strcmp(order[i]->address, order[i - 1]->address) == 0)
			sub->built[order[i] - d->rcpts].duplicate = true;
	free(order);
	return 0;
}

/* Runs on a worker thread: touches only the submission until it hands it to the store. */
static bool build_run(void *arg)
{
	struct submission *sub = arg;
	struct campaign_result *r = &sub->result;
	const struct campaigns_params *p = &sub->campaigns->p;
	if (sub->decode != NULL &&
	    sub->decode(sub->decode_ctx, sub->draft, r->reason, sizeof(r->reason)) < 0) {
		r->verdict = CAMPAIGN_INVALID;
		return true;
	}
	struct campaign_draft *d = sub->draft;
	if (d->rcpt_count == 0 || d->rcpt_count > MT_CAMPAIGN_RECIPIENTS_MAX) {
		set_reason(r, CAMPAIGN_INVALID, "recipients: 1 to %d addresses",
		           MT_CAMPAIGN_RECIPIENTS_MAX);
		return true;
	}
	sub->built = calloc(d->rcpt_count, sizeof(*sub->built));
	if (sub->built == NULL || mark_duplicates(sub) < 0) {
		set_reason(r, CAMPAIGN_FAILED, "out of memory");
		return true;
	}
	char url[MT_PUBLIC_URL_MAX + 4 + MT_UNSUBSCRIBE_TOKEN_LEN + 3];
	const struct mime_build_header headers[] = {
	    {"List-Unsubscribe", url},
	    /* RFC 8058: a mail provider's one-click unsubscribe POSTs this to the link. */
	    {"List-Unsubscribe-Post", "List-Unsubscribe=One-Click"},
	};
	struct mime_build_input in = {
	    .without_head = true,
	    .to_count = 1,
	    .subject = d->subject,
	    .text = d->text,
	    .html = d->html,
	    .date = (int64_t)time(NULL),
	    .headers = headers,
	    .header_count = sizeof(headers) / sizeof(headers[0]),
	};
	size_t total = 0;
	for (size_t i = 0; i < d->rcpt_count; i++) {
		struct built *b = &sub->built[i];
		if (b->duplicate)
			continue;
		unsigned char raw[MT_UNSUBSCRIBE_TOKEN_LEN / 2];
		randombytes_buf(raw, sizeof(raw));
		sodium_bin2hex(b->token, sizeof(b->token), raw, sizeof(raw));
		snprintf(url, sizeof(url), "<%s/u/%s>", sub->campaigns->public_url, b->token);
		in.to = &d->rcpts[i];
		const char *error;
		if (mime_build_message(&in, &b->body, &b->body_len, &error) < 0) {
			set_reason(r, CAMPAIGN_INVALID, "cannot build the message to %s: %s",
			           d->rcpts[i].address, error);
			return true;
		}
		if (p->max_message_bytes > 0 &&
		    (int64_t)(b->body_len + MT_MESSAGE_HEAD_ROOM) > p->max_message_bytes) {
			set_reason(r, CAMPAIGN_TOO_LARGE, "the message is %zu bytes; at most %lld",
			           b->body_len + MT_MESSAGE_HEAD_ROOM,
			           (long long)p->max_message_bytes);
			return true;
		}
		total += b->body_len;
		if (total > MT_CAMPAIGN_BYTES_MAX) {
			set_reason(
			    r, CAMPAIGN_TOO_LARGE,
			    "the campaign's messages come to more than %d MiB together (%zu "
			    "recipients of about %zu bytes each); send fewer or smaller ones",
			    MT_CAMPAIGN_BYTES_MAX / (1024 * 1024), d->rcpt_count, b->body_len);
			return true;
		}
	}
	struct mime_attachment *list = NULL;
	size_t count = 0;
	in.to = &d->rcpts[0];
	int rc = mime_build_summary(&in, sub->snippet, &list, &count);
	free(list);
	if (rc < 0) {
		set_reason(r, CAMPAIGN_FAILED, "out of memory");
		return true;
	}
	r->verdict = CAMPAIGN_OK;
	if (store_submit(p->store, STORE_WRITE_DURABLE | STORE_REPLAYABLE, create_run, created,
	                 sub) == 0)
		return false; /* the store job's from now on */
	set_reason(r, CAMPAIGN_BUSY, "the store is busy; try again");
	return true;
}

static void build_done(void *arg)
{
	submission_finish(arg);
}

void campaign_submit(struct campaigns *campaigns, struct campaign_draft *draft,
                     campaign_decode_fn *decode, void *decode_ctx, campaign_done_fn *done,
                     void *ctx)
{
	struct submission *sub = calloc(1, sizeof(*sub));
	if (sub == NULL) {
		struct campaign_result result = {.verdict = CAMPAIGN_FAILED};
		mt_strlcpy(result.reason, "out of memory", sizeof(result.reason));
		done(ctx, &result);
		campaign_draft_free(&draft);
		return;
	}
	sub->campaigns = campaigns;
	sub->draft = draft;
	sub->decode = decode;
	sub->decode_ctx = decode_ctx;
	sub->done = done;
	sub->ctx = ctx;
	if (campaigns->public_url[0] == '\0') {
		set_reason(&sub->result, CAMPAIGN_NOT_CONFIGURED,
		           "campaigns need public_url (the base of their unsubscribe links); the "
		           "operator has not set it");
		submission_finish(sub);
		return;
	}
	if (work_submit(campaigns->p.work, build_run, build_done, sub) < 0) {
		set_reason(&sub->result, CAMPAIGN_BUSY,
		           "too many messages are being prepared; try again");
		submission_finish(sub);
	}
}

/* ---- a campaign: its state, or after an action ---------------------------------------------- */

struct get_job {
	struct campaigns *campaigns;
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	char id[MT_ID_MAX];
	bool act;
	enum store_campaign_action action;
	campaign_done_fn *done;
	void *ctx;
	struct campaign_result result;
};

static int get_run(struct store_tx *tx, void *arg)
{
	struct get_job *job = arg;
	struct campaign_result *r = &job->result;
	r->verdict = CAMPAIGN_OK;
	int rc = 0;
	if (job->act) {
		rc = store_campaign_act(tx, job->org_id, job->user_id, job->id, job->action);
		if (rc == STORE_CONFLICT) {
			set_reason(r, CAMPAIGN_CONFLICT, "the campaign is cancelled");
			rc = 0;
		}
	}
	if (rc == 0)
		rc = store_campaign_get(tx, job->org_id, job->user_id, job->id, &r->campaign);
	if (rc == STORE_NOT_FOUND) {
		r->verdict = CAMPAIGN_NOT_FOUND;
		rc = 0;
	}
	return rc;
}

static const char *action_name(enum store_campaign_action action)
{
	return action == STORE_CAMPAIGN_PAUSE    ? "pause"
	       : action == STORE_CAMPAIGN_RESUME ? "resume"
	                                         : "cancel";
}

static void get_done(void *arg, int result)
{
	struct get_job *job = arg;
	if (result != 0)
		set_reason(&job->result, CAMPAIGN_FAILED, "the store failed; nothing was changed");
	if (job->act && job->result.verdict == CAMPAIGN_OK) {
		mt_metric_inc(ACTIONS_METRIC, ACTIONS_HELP, "action", action_name(job->action),
		              NULL, NULL);
		struct sender *sender = job->campaigns->p.sender;
		if (sender != NULL && job->action == STORE_CAMPAIGN_RESUME)
			sender_wake(sender);
		else if (sender != NULL)
			sender_campaign_changed(sender, job->id);
	}
	job->done(job->ctx, &job->result);
	free(job);
}

void campaign_get(struct campaigns *campaigns, const char *org_id, const char *user_id,
                  const char *id, const enum store_campaign_action *act, campaign_done_fn *done,
                  void *ctx)
{
	struct get_job *job = calloc(1, sizeof(*job));
	if (job == NULL) {
		struct campaign_result result = {.verdict = CAMPAIGN_FAILED};
		mt_strlcpy(result.reason, "out of memory", sizeof(result.reason));
		done(ctx, &result);
		return;
	}
	job->campaigns = campaigns;
	mt_strlcpy(job->org_id, org_id, sizeof(job->org_id));
	mt_strlcpy(job->user_id, user_id, sizeof(job->user_id));
	mt_strlcpy(job->id, id, sizeof(job->id));
	job->act = act != NULL;
	if (act != NULL)
		job->action = *act;
	job->done = done;
	job->ctx = ctx;
	if (store_submit(campaigns->p.store, act != NULL ? STORE_WRITE_DURABLE : STORE_READ,
	                 get_run, get_done, job) < 0) {
		set_reason(&job->result, CAMPAIGN_BUSY, "the store is busy; try again");
		job->done(job->ctx, &job->result);
		free(job);
	}
}

/* ---- unsubscribe ------------------------------------------------------------------------------
 */

struct unsubscribe_job {
	char token[MT_UNSUBSCRIBE_TOKEN_LEN + 1];
	bool apply;
	bool was_suppressed;
	campaign_unsubscribe_fn *done;
	void *ctx;
	struct campaign_unsubscribe_result result;
};

static int unsubscribe_run(struct store_tx *tx, void *arg)
{
	struct unsubscribe_job *job = arg;
	job->result.verdict = UNSUBSCRIBE_OK;
	int rc = store_unsubscribe_get(tx, job->token, &job->result.who);
	job->was_suppressed = rc == 0 && job->result.who.suppressed;
	if (rc == 0 && job->apply && !job->was_suppressed)
		rc = store_unsubscribe_apply(tx, job->token, &job->result.who);
	if (rc == STORE_NOT_FOUND) {
		job->result.verdict = UNSUBSCRIBE_NOT_FOUND;
		rc = 0;
	}
	return rc;
}

static void unsubscribe_done(void *arg, int result)
{
	struct unsubscribe_job *job = arg;
	if (result != 0)
		job->result.verdict = UNSUBSCRIBE_FAILED;
	else if (job->apply && job->result.verdict == UNSUBSCRIBE_OK && !job->was_suppressed)
		mt_metric_inc(UNSUB_METRIC, UNSUB_HELP, NULL, NULL, NULL, NULL);
	job->done(job->ctx, &job->result);
	free(job);
}

void campaign_unsubscribe(struct campaigns *campaigns, const char *token, bool apply,
                          campaign_unsubscribe_fn *done, void *ctx)
{
	struct campaign_unsubscribe_result result = {.verdict = UNSUBSCRIBE_NOT_FOUND};
	/* A token is ours only if it is 32 lowercase hex characters: nothing else reaches SQL. */
	size_t len = strlen(token);
	bool ok = len == MT_UNSUBSCRIBE_TOKEN_LEN;
	for (size_t i = 0; ok && i < len; i++)
		ok = (token[i] >= '0' && token[i] <= '9') || (token[i] >= 'a' && token[i] <= 'f');
	if (!ok) {
		done(ctx, &result);
		return;
	}
	struct unsubscribe_job *job = calloc(1, sizeof(*job));
	if (job == NULL) {
		result.verdict = UNSUBSCRIBE_FAILED;
		done(ctx, &result);
		return;
	}
	mt_strlcpy(job->token, token, sizeof(job->token));
	job->apply = apply;
	job->done = done;
	job->ctx = ctx;
	if (store_submit(campaigns->p.store, apply ? STORE_WRITE_DURABLE : STORE_READ,
	                 unsubscribe_run, unsubscribe_done, job) < 0) {
		job->result.verdict = UNSUBSCRIBE_BUSY;
		unsubscribe_done(job, 0);
	}
}
