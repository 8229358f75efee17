/* The outbox API: POST /v1/messages decodes the request (on a worker thread when the body is
 * large) and hands it to the engine (engine/outbox.h), which stores it durably before the 202;
 * GET shows its state per recipient; DELETE cancels it while it has not gone out. */
#include "http/api.h"

#include "engine/outbox.h"
#include "lib/base64.h"
#include "lib/str.h"
#include "mime/address.h"
#include "store/store_outbox.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void fail_oom(struct http_request *req)
{
	http_reply_error(req, 500, "internal", "out of memory", NULL, NULL);
}

/* The fields a message shows in a list and alone; alone adds its recipients. */
static json_t *message_fields(const struct store_outbox_message *m)
{
	return json_pack("{s:s,s:s,s:s,s:i,s:o,s:o,s:s,s:o,s:o,s:o}", "id", m->id, "state",
	                 store_outbox_state_name(m->state), "route", m->route, "attempts",
	                 m->attempts, "last_error",
	                 m->last_error[0] ? json_string(m->last_error) : json_null(), "last_class",
	                 m->last_class[0] ? json_string(m->last_class) : json_null(), "message_id",
	                 m->message_id, "sent_at", api_time(m->sent_at), "created_at",
	                 api_time(m->created_at), "next_attempt_at",
	                 m->state == STORE_OUTBOX_QUEUED ||
	                         (m->state == STORE_OUTBOX_HELD && m->next_attempt_at > 0)
	                     ? api_time(m->next_attempt_at)
	                     : json_null());
}

static json_t *message_json(const struct store_outbox_message *m)
{
	json_t *rcpts = json_array();
	static const char *const rcpt_states[] = {"pending", "sent", "failed"};
	static const char *const kinds[] = {"to", "cc", "bcc"};
	for (size_t i = 0; i < m->rcpt_count; i++) {
		const struct store_outbox_rcpt *r = &m->rcpts[i];
		json_array_append_new(
		    rcpts, json_pack("{s:s,s:s,s:s,s:o}", "address", r->address, "kind",
		                     kinds[r->kind], "state", rcpt_states[r->state], "reply",
		                     r->reply[0] ? json_string(r->reply) : json_null()));
	}
	json_t *j = message_fields(m);
	json_object_set_new(j, "recipients", rcpts);
	return j;
}

/* ---- POST /v1/messages ---- */

struct send_job {
	struct api_job base;
	const char *body; /* the request's, valid until the reply */
	size_t body_len;
	struct outbox_draft *draft;
	int status; /* decoding: 0, or the HTTP status of the error in `error` */
	char error[MT_ERROR_TEXT_MAX];
};

static void send_job_free(struct send_job *job)
{
	outbox_draft_free(&job->draft);
	free(job);
}

static int decode_fail(struct send_job *job, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int decode_fail(struct send_job *job, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(job->error, sizeof(job->error), fmt, ap);
	va_end(ap);
	job->status = 400;
	return -1;
}

/* Parses a list of recipients into the draft (after those already there), counting them in
 * *count_r. */
static int add_rcpts(struct send_job *job, const char *field, json_t *list, size_t *count_r)
{
	struct outbox_draft *d = job->draft;
	for (size_t i = 0; list != NULL && i < json_array_size(list); i++) {
		size_t n = d->to_count + d->cc_count + d->bcc_count;
		if (n >= MT_SMTP_RCPTS_MAX)
			return decode_fail(job,
			                   "too many recipients: at most %d per message (use a "
			                   "campaign for mass mail)",
			                   MT_SMTP_RCPTS_MAX);
		const char *error;
		struct mime_mailbox *mb = &d->rcpts[n];
		if (mime_mailbox_parse(json_string_value(json_array_get(list, i)), mb, &error) < 0)
			return decode_fail(job, "%s[%zu]: %s", field, i, error);
		bool duplicate = false;
		for (size_t j = 0; j < n; j++)
			duplicate = duplicate || strcmp(d->rcpts[j].address, mb->address) == 0;
		if (!duplicate) /* one copy per address, whichever field named it first */
			(*count_r)++;
	}
	return 0;
}

static bool content_type_ok(const char *type)
{
	const char *slash = strchr(type, '/');
	if (slash == NULL || slash == type || slash[1] == '\0' ||
	    strlen(type) > MT_CONTENT_TYPE_MAX)
		return false;
	for (const char *p = type; *p != '\0'; p++)
		if (!(isalnum((unsigned char)*p) || strchr("/!#$&^_.+-", *p) != NULL))
			return false;
	return true;
}

static int decode_attachments(struct send_job *job, json_t *attachments)
{
	struct outbox_draft *d = job->draft;
	size_t n = json_array_size(attachments);
	d->attachments = calloc(n ? n : 1, sizeof(*d->attachments));
	size_t *offsets = calloc(n ? n : 1, sizeof(*offsets));
	if (d->attachments == NULL || offsets == NULL) {
		free(offsets);
		return decode_fail(job, "out of memory");
	}
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const char *filename = NULL, *type = NULL, *content = NULL;
		const struct json_field fields[] = {
		    {.name = "filename",
		     .type = JSON_FIELD_STRING,
		     .required = true,
		     .max_len = MT_ATTACHMENT_NAME_MAX,
		     .single_line = true,
		     .out = &filename},
		    {.name = "content_type",
		     .type = JSON_FIELD_STRING,
		     .max_len = MT_CONTENT_TYPE_MAX,
		     .single_line = true,
		     .out = &type},
		    {.name = "content_base64",
		     .type = JSON_FIELD_STRING,
		     .required = true,
		     .max_len = MT_HTTP_MESSAGE_MAX,
		     .out = &content},
		};
		char message[256];
		json_t *item = json_array_get(attachments, i);
		if (!json_is_object(item) ||
		    json_decode_fields(item, fields, 3, message, sizeof(message)) < 0) {
			rc = decode_fail(job, "attachments[%zu]: %s", i,
			                 json_is_object(item) ? message : "expected an object");
			break;
		}
		if (filename[0] == '\0' || (type != NULL && !content_type_ok(type))) {
			rc = decode_fail(
			    job, "attachments[%zu]: a file name and a type/subtype are needed", i);
			break;
		}
		offsets[i] = d->bytes.len;
		if (mt_base64_decode(&d->bytes, content, strlen(content)) < 0) {
			rc = decode_fail(job,
			                 "attachments[%zu]: content_base64 is not valid base64", i);
			break;
		}
		/* The names point into the JSON tree, which goes before the draft does. */
		size_t name_len = strlen(filename) + 1;
		size_t type_len = type != NULL ? strlen(type) + 1 : 0;
		char *copy = malloc(name_len + type_len);
		if (copy == NULL) {
			rc = decode_fail(job, "out of memory");
			break;
		}
		memcpy(copy, filename, name_len);
		d->attachments[i].filename = copy;
		if (type_len > 0) {
			memcpy(copy + name_len, type, type_len);
			d->attachments[i].content_type = copy + name_len;
		}
		d->attachments[i].len = d->bytes.len - offsets[i];
		d->attachment_count = i + 1;
	}
	/* The data moved into one buffer that may have moved while growing: point into it now. */
	for (size_t i = 0; rc == 0 && i < d->attachment_count; i++)
		d->attachments[i].data = (const unsigned char *)d->bytes.data + offsets[i];
	free(offsets);
	return rc;
}

/* The request body into job->draft: pure, so that a large body can be decoded on a worker. */
static int decode_draft(struct send_job *job)
{
	json_t *to = NULL, *cc = NULL, *bcc = NULL, *attachments = NULL;
	const char *subject = NULL, *text = NULL, *html = NULL, *reply_to = NULL;
	const struct json_field fields[] = {
	    {.name = "to",
	     .type = JSON_FIELD_STRING_ARRAY,
	     .required = true,
	     .max_len = MT_ADDRESS_INPUT_MAX,
	     .max_items = MT_SMTP_RCPTS_MAX,
	     .single_line = true,
	     .out = &to},
	    {.name = "cc",
	     .type = JSON_FIELD_STRING_ARRAY,
	     .max_len = MT_ADDRESS_INPUT_MAX,
	     .max_items = MT_SMTP_RCPTS_MAX,
	     .single_line = true,
	     .out = &cc},
	    {.name = "bcc",
	     .type = JSON_FIELD_STRING_ARRAY,
	     .max_len = MT_ADDRESS_INPUT_MAX,
	     .max_items = MT_SMTP_RCPTS_MAX,
	     .single_line = true,
	     .out = &bcc},
	    {.name = "subject",
	     .type = JSON_FIELD_STRING,
	     .required = true,
	     .max_len = MT_SUBJECT_MAX,
	     .single_line = true,
	     .out = &subject},
	    {.name = "text",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_HTTP_MESSAGE_MAX,
	     .out = &text},
	    {.name = "html",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_HTTP_MESSAGE_MAX,
	     .out = &html},
	    {.name = "reply_to",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_ADDRESS_INPUT_MAX,
	     .single_line = true,
	     .out = &reply_to},
	    {.name = "attachments",
	     .type = JSON_FIELD_ARRAY,
	     .max_items = MT_ATTACHMENTS_MAX,
	     .out = &attachments},
	};
	json_t *root = json_decode_body(job->body, job->body_len, job->error, sizeof(job->error));
	if (root == NULL) {
		job->status = 400;
		return -1;
	}
	int rc = -1;
	struct outbox_draft *d = job->draft;
	const char *error;
	if (json_decode_fields(root, fields, sizeof(fields) / sizeof(fields[0]), job->error,
	                       sizeof(job->error)) < 0) {
		job->status = 400;
		goto out;
	}
	if (text == NULL && html == NULL) {
		decode_fail(job, "text or html is required");
		goto out;
	}
	/* As many slots as the lists name (the 101st is refused before it is written). */
	size_t named = json_array_size(to) + json_array_size(cc) + json_array_size(bcc);
	d->rcpts =
	    calloc(named < MT_SMTP_RCPTS_MAX ? named + 1 : MT_SMTP_RCPTS_MAX, sizeof(*d->rcpts));
	if (d->rcpts == NULL) {
		decode_fail(job, "out of memory");
		goto out;
	}
	if (add_rcpts(job, "to", to, &d->to_count) < 0 ||
	    add_rcpts(job, "cc", cc, &d->cc_count) < 0 ||
	    add_rcpts(job, "bcc", bcc, &d->bcc_count) < 0)
		goto out;
	if (d->to_count == 0) {
		decode_fail(job, "to: at least one recipient is needed");
		goto out;
	}
	if (reply_to != NULL) {
		if (mime_mailbox_parse(reply_to, &d->reply_to, &error) < 0) {
			decode_fail(job, "reply_to: %s", error);
			goto out;
		}
		d->have_reply_to = true;
	}
	if (decode_attachments(job, attachments) < 0)
		goto out;
	d->subject = strdup(subject);
	d->text = text != NULL ? strdup(text) : NULL;
	d->html = html != NULL ? strdup(html) : NULL;
	if (d->subject == NULL || (text != NULL && d->text == NULL) ||
	    (html != NULL && d->html == NULL)) {
		decode_fail(job, "out of memory");
		goto out;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

static void submitted(void *ctx, const struct outbox_result *result)
{
	struct send_job *job = ctx;
	struct http_request *req = job->base.req;
	switch (result->verdict) {
	case OUTBOX_QUEUED:
	case OUTBOX_EXISTING:
		http_reply_json(req, 202,
		                json_pack("{s:s,s:s}", "id", result->id, "state",
		                          store_outbox_state_name(result->state)));
		break;
	case OUTBOX_INVALID:
		http_reply_error_at(req, 400, "input", "invalid_message", NULL, result->reason);
		break;
	case OUTBOX_TOO_LARGE:
		http_reply_error(req, 413, "input", result->reason, NULL, NULL);
		break;
	case OUTBOX_NO_ROUTE:
		http_reply_error_at(req, 409, "input", "no_route", NULL, result->reason);
		break;
	case OUTBOX_OVER_LIMIT:
		http_reply_error_at(req, 422, "input", "over_send_limit", "to", result->reason);
		break;
	case OUTBOX_GONE:
		http_reply_error(req, 404, "input", "user not found", NULL, NULL);
		break;
	case OUTBOX_BUSY:
		http_reply_error_retry(req, 503, "internal", result->reason, 1);
		break;
	case OUTBOX_FAILED:
		http_reply_error(req, 500, "internal", result->reason, NULL, NULL);
		break;
	}
	free(job);
}

/* Runs where the engine builds the message (a worker, or the loop for a small request), before
 * the build: the request's bytes into the draft. */
static int decode_request(void *ctx, struct outbox_draft *draft, char *error, size_t error_size)
{
	struct send_job *job = ctx;
	job->draft = draft;
	int rc = decode_draft(job);
	job->draft = NULL; /* the engine's */
	if (rc < 0)
		mt_strlcpy(error, job->error, error_size);
	return rc;
}

void api_messages_send(struct http_request *req, void *app)
{
	struct api *api = app;
	struct send_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL || (job->draft = calloc(1, sizeof(*job->draft))) == NULL) {
		free(job);
		return fail_oom(req);
	}
	struct outbox_draft *d = job->draft;
	mt_buf_init(&d->bytes, MT_HTTP_MESSAGE_MAX);
	mt_strlcpy(d->org_id, job->base.org_id, sizeof(d->org_id));
	mt_strlcpy(d->user_id, job->base.user_id, sizeof(d->user_id));
	if (!api_idempotency_key(req, d->idempotency_key, sizeof(d->idempotency_key))) {
		send_job_free(job);
		return;
	}
	job->body = http_request_body(req, &job->body_len);
	if (job->body == NULL)
		job->body = "", job->body_len = 0;
	/* Decoding (jansson, address parsing) happens where the engine builds the message: on a
	 * worker unless the body is small (the loop serves every tenant). */
	struct outbox_draft *draft = job->draft;
	job->draft = NULL;
	outbox_submit(api->outbox, draft, decode_request, job, job->body_len, submitted, job);
}

/* ---- GET / DELETE /v1/messages/{id} ---- */

static void status_done(void *ctx, const struct outbox_status *st)
{
	struct http_request *req = ctx;
	switch (st->verdict) {
	case OUTBOX_STATUS_OK:
		http_reply_json(req, 200, message_json(&st->message));
		break;
	case OUTBOX_STATUS_TOO_LATE:
		http_reply_errorf(req, 409, "input",
		                  "the message is %s and can no longer be cancelled",
		                  store_outbox_state_name(st->message.state));
		break;
	case OUTBOX_STATUS_NOT_FOUND:
		http_reply_error(req, 404, "input", "message not found", NULL, NULL);
		break;
	case OUTBOX_STATUS_BUSY:
		http_reply_error_retry(req, 503, "internal", "the store is busy; try again", 1);
		break;
	case OUTBOX_STATUS_FAILED:
		http_reply_error(req, 500, "internal", "the store failed; nothing was changed",
		                 NULL, NULL);
		break;
	}
}

static void message_request(struct http_request *req, void *app, bool cancel)
{
	struct api *api = app;
	const struct http_auth *auth = http_request_auth(req);
	outbox_message(api->outbox, auth->org_id, auth->user_id, http_request_param(req, "id"),
	               cancel, status_done, req);
}

void api_messages_get(struct http_request *req, void *app)
{
	message_request(req, app, false);
}

void api_messages_cancel(struct http_request *req, void *app)
{
	message_request(req, app, true);
}

/* ---- GET /v1/messages ---- */

static void list_done(void *ctx, const struct outbox_page *page)
{
	struct http_request *req = ctx;
	if (api_reply_outcome(req, &page->outcome, "messages"))
		return;
	const struct store_outbox_list *list = page->list;
	json_t *items = json_array();
	for (size_t i = 0; i < list->count; i++) {
		const struct store_outbox_message *m = &list->items[i];
		json_t *j = message_fields(m);
		json_object_set_new(j, "user_id", json_string(m->user_id));
		json_object_set_new(j, "campaign_id",
		                    m->campaign_id[0] ? json_string(m->campaign_id) : json_null());
		json_object_set_new(j, "subject", api_text(m->subject));
		json_array_append_new(items, j);
	}
	http_reply_json(
	    req, 200,
	    json_pack("{s:o,s:o}", "messages", items, "next_cursor",
	              list->next_cursor[0] ? json_string(list->next_cursor) : json_null()));
}

void api_messages_list(struct http_request *req, void *app)
{
	struct api *api = app;
	struct outbox_list_query q = {
	    .user_id = http_request_query(req, "user"),
	    .campaign_id = http_request_query(req, "campaign"),
	    .state = http_request_query(req, "state"),
	};
	if (!api_list_params(req, &q.limit, &q.cursor))
		return;
	const struct http_auth *auth = http_request_auth(req);
	outbox_list(api->outbox, auth->org_id, auth->user_id, auth->admin, &q, list_done, req);
}
