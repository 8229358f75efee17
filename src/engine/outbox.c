#include "engine/outbox.h"

#include "engine/sender.h"
#include "lib/log.h"
#include "lib/str.h"
#include "store/store_org.h"
#include "store/store_smtp.h"
#include "store/store_user.h"
#include "work/work.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct outbox {
	struct outbox_params p;
};

enum stage { STAGE_LOAD, STAGE_ENQUEUE };

/* One outbox_submit() on its way: load -> (loop) route -> (worker) build -> store -> done. */
struct submission {
	struct outbox *outbox;
	struct outbox_draft *draft;
	outbox_done_fn *done;
	void *ctx;
	enum stage stage;
	struct store_user user;
	struct store_org org;
	struct store_smtp_account account;
	bool have_account;
	/* The headers the route decided on, for the worker. */
	struct mime_mailbox from, sender_box, user_box;
	bool sender_header;
	const struct mime_mailbox *reply_to;
	int64_t date;
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
	randombytes_buf(id, sizeof(id));
	uint64_t ms = (uint64_t)mt_wall_ms();
	for (int i = 5; i >= 0; i--, ms >>= 8)
		id[i] = (unsigned char)(ms & 0xff);
	sodium_bin2hex(mailtrail_id, MT_MESSAGE_ID_MAX + 1, id, sizeof(id));
	snprintf(message_id, MT_MESSAGE_ID_MAX + 1, "mt.%.32s@%.255s", mailtrail_id,
	         domain != NULL && domain[0] != '\0' ? domain : "mailtrail.invalid");
}

static void finish(struct submission *sub, enum outbox_verdict verdict, const char *reason)
{
	sub->result.verdict = verdict;
	if (reason != NULL)
		mt_strlcpy(sub->result.reason, reason, sizeof(sub->result.reason));
	if (verdict == OUTBOX_QUEUED && sub->outbox->p.sender != NULL)
		sender_wake(sub->outbox->p.sender);
	sub->done(sub->ctx, &sub->result);
	outbox_draft_free(&sub->draft);
	store_outbox_message_free(&sub->message);
	sodium_memzero(&sub->account, sizeof(sub->account));
	free(sub);
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

/* ---- store jobs ---------------------------------------------------------------------------- */

static int submission_run(struct store_tx *tx, void *arg)
{
	struct submission *sub = arg;
	if (sub->stage == STAGE_ENQUEUE) {
		/* What a rolled-back run left (STORE_REPLAYABLE). */
		sub->result.verdict = OUTBOX_QUEUED;
		int rc = store_outbox_enqueue(tx, &sub->message, sub->existing_id);
		if (rc != STORE_CONFLICT || sub->existing_id[0] == '\0')
			return rc;
		/* The same Idempotency-Key within 24 h: the first message is the answer. */
		struct store_outbox_message *first = malloc(sizeof(*first));
		if (first == NULL)
			return -1;
		rc = store_outbox_get(tx, sub->draft->org_id, sub->draft->user_id, sub->existing_id,
		                      first);
		if (rc == 0) {
			sub->result.verdict = OUTBOX_EXISTING;
			mt_strlcpy(sub->result.id, first->id, sizeof(sub->result.id));
			sub->result.state = first->state;
		}
		store_outbox_message_free(first);
		free(first);
		return rc;
	}
	int rc = store_user_get(tx, sub->draft->org_id, sub->draft->user_id, &sub->user);
	if (rc == 0)
		rc = store_org_get(tx, sub->draft->org_id, &sub->org);
	if (rc != 0)
		return rc;
	rc = store_smtp_account_get(tx, sub->draft->org_id, sub->draft->user_id, &sub->account);
	sub->have_account = rc == 0;
	return rc == STORE_NOT_FOUND ? 0 : rc;
}

static void store_failed(struct submission *sub, int result)
{
	if (result == STORE_NOT_FOUND)
		finish(sub, OUTBOX_GONE, "the user is no longer active");
	else
		finish(sub, OUTBOX_FAILED, "the store failed; nothing was stored");
}

static void enqueued(void *arg, int result)
{
	struct submission *sub = arg;
	if (result != 0) {
		store_failed(sub, result);
		return;
	}
	if (sub->result.verdict == OUTBOX_QUEUED) {
		mt_strlcpy(sub->result.id, sub->message.id, sizeof(sub->result.id));
		sub->result.state = sub->message.state;
	}
	finish(sub, sub->result.verdict, NULL);
}

/* ---- the worker: MIME and summary ---------------------------------------------------------- */

static json_t *attachments_json(const struct mime_attachment *list, size_t count)
{
	json_t *array = json_array();
	for (size_t i = 0; i < count; i++)
		json_array_append_new(array,
		                      json_pack("{s:s,s:s,s:I}", "name", list[i].name, "type",
		                                list[i].type, "size", (json_int_t)list[i].size));
	return array;
}

/* Runs on a worker thread: touches only the submission. */
static void build_run(void *arg)
{
	struct submission *sub = arg;
	const struct outbox_draft *d = sub->draft;
	struct store_outbox_message *m = &sub->message;
	struct mime_build_input in = {
	    .from = &sub->from,
	    .sender = sub->sender_header ? &sub->sender_box : NULL,
	    .reply_to = sub->reply_to,
	    .to = d->rcpts,
	    .to_count = d->to_count,
	    .cc = d->rcpts + d->to_count,
	    .cc_count = d->cc_count,
	    .subject = d->subject,
	    .text = d->text,
	    .html = d->html,
	    .attachments = d->attachments,
	    .attachment_count = d->attachment_count,
	    .message_id = m->message_id,
	    .mailtrail_id = m->mailtrail_id,
	    .date = sub->date,
	};
	const char *error;
	if (mime_build_message(&in, &m->body, &m->body_len, &error) < 0) {
		sub->result.verdict = OUTBOX_INVALID;
		snprintf(sub->result.reason, sizeof(sub->result.reason),
		         "cannot build the message: %s", error);
		return;
	}
	int64_t max = sub->outbox->p.max_message_bytes;
	if (max > 0 && (int64_t)m->body_len > max) {
		sub->result.verdict = OUTBOX_TOO_LARGE;
		snprintf(sub->result.reason, sizeof(sub->result.reason),
		         "the message is %zu bytes; at most %lld", m->body_len, (long long)max);
		return;
	}
	struct mime_attachment *list = NULL;
	size_t count = 0;
	if (mime_build_summary(&in, m->snippet, &list, &count) < 0) {
		free(list);
		sub->result.verdict = OUTBOX_FAILED;
		mt_strlcpy(sub->result.reason, "out of memory", sizeof(sub->result.reason));
		return;
	}
	if (count > 0) {
		json_t *array = attachments_json(list, count);
		m->attachments_json = json_dumps(array, JSON_COMPACT);
		json_decref(array);
	}
	free(list);
	size_t total = d->to_count + d->cc_count + d->bcc_count;
	m->rcpts = calloc(total, sizeof(*m->rcpts));
	if (m->rcpts == NULL) {
		sub->result.verdict = OUTBOX_FAILED;
		mt_strlcpy(sub->result.reason, "out of memory", sizeof(sub->result.reason));
		return;
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
	sub->result.verdict = OUTBOX_QUEUED;
}

static void build_done(void *arg)
{
	struct submission *sub = arg;
	if (sub->result.verdict != OUTBOX_QUEUED) {
		finish(sub, sub->result.verdict, NULL);
		return;
	}
	sub->stage = STAGE_ENQUEUE;
	if (store_submit(sub->outbox->p.store, STORE_WRITE_DURABLE | STORE_REPLAYABLE,
	                 submission_run, enqueued, sub) < 0)
		finish(sub, OUTBOX_BUSY, "the store is busy; try again");
}

/* ---- route and identity (loop) ------------------------------------------------------------- */

/* With the user, the org and the account loaded: the route, the headers it implies, identity. */
static void loaded(void *arg, int result)
{
	struct submission *sub = arg;
	struct outbox *outbox = sub->outbox;
	if (result != 0) {
		store_failed(sub, result);
		return;
	}
	struct store_outbox_message *m = &sub->message;
	const struct outbox_draft *d = sub->draft;
	mt_strlcpy(sub->from.name, sub->user.name, sizeof(sub->from.name));
	sub->reply_to = d->have_reply_to ? &d->reply_to : NULL;
	mt_strlcpy(sub->user_box.address, sub->user.email, sizeof(sub->user_box.address));
	mt_strlcpy(sub->user_box.name, sub->user.name, sizeof(sub->user_box.name));
	bool custom_ready = sub->have_account && sub->account.state == STORE_ACCOUNT_CONNECTED;
	if (custom_ready && sub->org.custom_smtp) {
		mt_strlcpy(m->route, "custom", sizeof(m->route));
		mt_strlcpy(sub->from.address, sub->account.from_address, sizeof(sub->from.address));
		mt_strlcpy(m->mail_from, sub->account.from_address, sizeof(m->mail_from));
	} else if (outbox->p.relay_configured) {
		/* The relay may only claim domains that authorise it (DMARC): the org's own domains
		 * stay in From with the relay as Sender; any other domain (a recruiter on a
		 * free-mail address) is sent From the relay's address, with the user's name and
		 * Reply-To, so receivers enforcing DMARC do not reject it. Replies still reach the
		 * user. */
		const char *relay_from = outbox->p.relay_from;
		mt_strlcpy(m->route, "relay", sizeof(m->route));
		mt_strlcpy(m->mail_from, relay_from[0] ? relay_from : sub->user.email,
		           sizeof(m->mail_from));
		if (domain_is_orgs(&sub->org, sub->user.email) || relay_from[0] == '\0') {
			mt_strlcpy(sub->from.address, sub->user.email, sizeof(sub->from.address));
			if (relay_from[0] != '\0') {
				mt_strlcpy(sub->sender_box.address, relay_from,
				           sizeof(sub->sender_box.address));
				sub->sender_header = true;
			}
		} else {
			mt_strlcpy(sub->from.address, relay_from, sizeof(sub->from.address));
			if (sub->reply_to == NULL)
				sub->reply_to = &sub->user_box;
		}
	} else {
		finish(sub, OUTBOX_NO_ROUTE,
		       custom_ready
		           ? "no route for this message: Custom SMTP is switched off for "
		             "this org (custom_smtp) and the platform relay is not "
		             "configured"
		           : "no route for this message: connect your own SMTP account (PUT "
		             "/v1/smtp); the platform relay is not configured");
		return;
	}
	const char *at = strrchr(sub->from.address, '@');
	outbox_identity_new(at != NULL ? at + 1 : "", m->mailtrail_id, m->message_id);
	sub->date = (int64_t)time(NULL);
	mt_strlcpy(m->org_id, d->org_id, sizeof(m->org_id));
	mt_strlcpy(m->user_id, d->user_id, sizeof(m->user_id));
	mt_strlcpy(m->idempotency_key, d->idempotency_key, sizeof(m->idempotency_key));
	/* The record's From is the user even where the relay's header says otherwise: it is the
	 * user's mail (email_sent on the recipients' profiles). */
	mt_strlcpy(m->from.address,
	           strcmp(m->route, "relay") == 0 ? sub->user.email : sub->from.address,
	           sizeof(m->from.address));
	mt_strlcpy(m->from.name, sub->from.name, sizeof(m->from.name));
	mt_strlcpy(m->subject, d->subject, sizeof(m->subject));
	m->state = STORE_OUTBOX_QUEUED;
	if (work_submit(outbox->p.work, build_run, build_done, sub) < 0)
		finish(sub, OUTBOX_BUSY, "too many messages are being prepared; try again");
}

void outbox_submit(struct outbox *outbox, struct outbox_draft *draft, outbox_done_fn *done,
                   void *ctx)
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
	sub->done = done;
	sub->ctx = ctx;
	sub->stage = STAGE_LOAD;
	if (store_submit(outbox->p.store, STORE_READ, submission_run, loaded, sub) < 0)
		finish(sub, OUTBOX_BUSY, "the store is busy; try again");
}
