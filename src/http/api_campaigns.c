/* Campaigns: POST /v1/campaigns decodes the request on a worker (up to 10,000 recipients) and
 * hands it to the engine (engine/campaign.h), which stores every message before the 202; GET
 * shows its progress; pause / resume / cancel. And the unsubscribe links their messages carry:
 * GET /u/{token} a plain page with a button, POST /u/{token} (the button, or a mail provider's
 * RFC 8058 one-click POST) unsubscribes at once. */
#include "http/api.h"

#include "engine/campaign.h"
#include "lib/str.h"
#include "mime/address.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *campaign_json(const struct store_campaign *c)
{
	const int64_t *n = c->counts;
	json_t *counts = json_pack(
	    "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "queued", (json_int_t)n[STORE_OUTBOX_QUEUED],
	    "held", (json_int_t)n[STORE_OUTBOX_HELD], "sending",
	    (json_int_t)n[STORE_OUTBOX_SENDING], "sent", (json_int_t)n[STORE_OUTBOX_SENT],
	    "partial", (json_int_t)n[STORE_OUTBOX_PARTIAL], "failed",
	    (json_int_t)n[STORE_OUTBOX_FAILED], "cancelled", (json_int_t)n[STORE_OUTBOX_CANCELLED],
	    "suppressed", (json_int_t)c->suppressed);
	return json_pack("{s:s,s:s,s:o,s:I,s:o,s:o}", "id", c->id, "state",
	                 store_campaign_state_name(c->state), "subject", api_text(c->subject),
	                 "total", (json_int_t)c->total, "counts", counts, "created_at",
	                 api_time(c->created_at));
}

static bool reply_verdict(struct http_request *req, const struct campaign_result *r)
{
	switch (r->verdict) {
	case CAMPAIGN_OK:
	case CAMPAIGN_EXISTING:
		return false;
	case CAMPAIGN_INVALID:
		http_reply_error(req, 400, "input", r->reason, NULL, NULL);
		break;
	case CAMPAIGN_TOO_LARGE:
		http_reply_error(req, 413, "input", r->reason, NULL, NULL);
		break;
	case CAMPAIGN_RELAY_CAP:
		http_reply_error_at(req, 422, "input", "over_relay_cap", "recipients", r->reason);
		break;
	case CAMPAIGN_NO_ROUTE:
		http_reply_error_at(req, 409, "input", "no_route", NULL, r->reason);
		break;
	case CAMPAIGN_NOT_CONFIGURED:
		http_reply_error_at(req, 409, "input", "not_configured", NULL, r->reason);
		break;
	case CAMPAIGN_CONFLICT:
		http_reply_error(req, 409, "input", r->reason, NULL, NULL);
		break;
	case CAMPAIGN_NOT_FOUND:
		http_reply_error(req, 404, "input", "campaign not found", NULL, NULL);
		break;
	case CAMPAIGN_GONE:
		http_reply_error(req, 404, "input", "user not found", NULL, NULL);
		break;
	case CAMPAIGN_BUSY:
		http_reply_error_retry(req, 503, "internal", r->reason, 1);
		break;
	case CAMPAIGN_FAILED:
		http_reply_error(req, 500, "internal", r->reason, NULL, NULL);
		break;
	}
	return true;
}

/* ---- POST /v1/campaigns ---- */

struct create_job {
	struct api_job base;
	const char *body; /* the request's, valid until the reply */
	size_t body_len;
};

static int decode_fail(char *error, size_t error_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int decode_fail(char *error, size_t error_size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(error, error_size, fmt, ap);
	va_end(ap);
	return -1;
}

static int decode_recipients(json_t *list, struct campaign_draft *d, char *error, size_t error_size)
{
	size_t n = json_array_size(list);
	if (n == 0)
		return decode_fail(error, error_size, "recipients: at least one is needed");
	d->rcpts = calloc(n, sizeof(*d->rcpts));
	if (d->rcpts == NULL)
		return decode_fail(error, error_size, "out of memory");
	for (size_t i = 0; i < n; i++) {
		json_t *item = json_array_get(list, i);
		if (!json_is_object(item))
			return decode_fail(error, error_size,
			                   "recipients[%zu]: expected an object {email, name?}", i);
		const char *email = NULL, *name = NULL;
		const struct json_field fields[] = {
		    {.name = "email",
		     .type = JSON_FIELD_STRING,
		     .required = true,
		     .max_len = MT_ADDRESS_INPUT_MAX,
		     .single_line = true,
		     .out = &email},
		    {.name = "name",
		     .type = JSON_FIELD_STRING,
		     .max_len = MT_NAME_MAX,
		     .single_line = true,
		     .nullable = true,
		     .out = &name},
		};
		char why[MT_JSON_ERROR_MAX];
		if (json_decode_fields(item, fields, sizeof(fields) / sizeof(fields[0]), why,
		                       sizeof(why)) < 0)
			return decode_fail(error, error_size, "recipients[%zu]: %s", i, why);
		const char *bad;
		if (mime_address_normalize(email, d->rcpts[i].address, &bad) < 0)
			return decode_fail(error, error_size, "recipients[%zu].email: %s", i, bad);
		if (name != NULL)
			mt_strlcpy(d->rcpts[i].name, name, sizeof(d->rcpts[i].name));
	}
	d->rcpt_count = n;
	return 0;
}

/* Runs on the engine's worker, before the build: the request's bytes into the draft. */
static int decode_on_worker(void *ctx, struct campaign_draft *d, char *error, size_t error_size)
{
	struct create_job *job = ctx;
	const char *subject = NULL, *text = NULL, *html = NULL;
	json_t *recipients = NULL;
	const struct json_field fields[] = {
	    {.name = "recipients",
	     .type = JSON_FIELD_ARRAY,
	     .required = true,
	     .max_items = MT_CAMPAIGN_RECIPIENTS_MAX,
	     .out = &recipients},
	    {.name = "subject",
	     .type = JSON_FIELD_STRING,
	     .required = true,
	     .max_len = MT_SUBJECT_MAX,
	     .single_line = true,
	     .out = &subject},
	    {.name = "text",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_HTTP_CAMPAIGN_MAX,
	     .out = &text},
	    {.name = "html",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_HTTP_CAMPAIGN_MAX,
	     .out = &html},
	};
	json_t *root = json_decode_body_max(job->body, job->body_len, MT_CAMPAIGN_JSON_VALUES_MAX,
	                                    error, error_size);
	if (root == NULL)
		return -1;
	int rc = -1;
	if (json_decode_fields(root, fields, sizeof(fields) / sizeof(fields[0]), error,
	                       error_size) < 0)
		goto out;
	if (text == NULL && html == NULL) {
		decode_fail(error, error_size, "text or html is required");
		goto out;
	}
	if (decode_recipients(recipients, d, error, error_size) < 0)
		goto out;
	d->subject = strdup(subject);
	d->text = text != NULL ? strdup(text) : NULL;
	d->html = html != NULL ? strdup(html) : NULL;
	if (d->subject == NULL || (text != NULL && d->text == NULL) ||
	    (html != NULL && d->html == NULL)) {
		decode_fail(error, error_size, "out of memory");
		goto out;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

static void created(void *ctx, const struct campaign_result *r)
{
	struct create_job *job = ctx;
	if (!reply_verdict(job->base.req, r))
		http_reply_json(job->base.req, 202,
		                json_pack("{s:s,s:I,s:I}", "id", r->campaign.id, "messages",
		                          (json_int_t)r->messages, "suppressed",
		                          (json_int_t)r->campaign.suppressed));
	free(job);
}

void api_campaigns_create(struct http_request *req, void *app)
{
	struct api *api = app;
	struct create_job *job = api_job_new(app, req, sizeof(*job));
	struct campaign_draft *d = calloc(1, sizeof(*d));
	if (job == NULL || d == NULL) {
		free(job);
		free(d);
		http_reply_error(req, 500, "internal", "out of memory", NULL, NULL);
		return;
	}
	mt_strlcpy(d->org_id, job->base.org_id, sizeof(d->org_id));
	mt_strlcpy(d->user_id, job->base.user_id, sizeof(d->user_id));
	if (!api_idempotency_key(req, d->idempotency_key, sizeof(d->idempotency_key))) {
		campaign_draft_free(&d);
		free(job);
		return;
	}
	job->body = http_request_body(req, &job->body_len);
	if (job->body == NULL)
		job->body = "", job->body_len = 0;
	campaign_submit(api->campaigns, d, decode_on_worker, job, created, job);
}

/* ---- GET /v1/campaigns/{id}, POST .../pause, .../resume, .../cancel ---- */

static void shown(void *ctx, const struct campaign_result *r)
{
	struct http_request *req = ctx;
	if (!reply_verdict(req, r))
		http_reply_json(req, 200, campaign_json(&r->campaign));
}

static void campaign_request(struct http_request *req, void *app,
                             const enum store_campaign_action *act)
{
	struct api *api = app;
	const struct http_auth *auth = http_request_auth(req);
	campaign_get(api->campaigns, auth->org_id, auth->user_id, http_request_param(req, "id"),
	             act, shown, req);
}

void api_campaigns_get(struct http_request *req, void *app)
{
	campaign_request(req, app, NULL);
}

void api_campaigns_pause(struct http_request *req, void *app)
{
	static const enum store_campaign_action act = STORE_CAMPAIGN_PAUSE;
	campaign_request(req, app, &act);
}

void api_campaigns_resume(struct http_request *req, void *app)
{
	static const enum store_campaign_action act = STORE_CAMPAIGN_RESUME;
	campaign_request(req, app, &act);
}

void api_campaigns_cancel(struct http_request *req, void *app)
{
	static const enum store_campaign_action act = STORE_CAMPAIGN_CANCEL;
	campaign_request(req, app, &act);
}

/* ---- GET / POST /u/{token} ---- */

static void unsubscribed(void *ctx, const struct campaign_unsubscribe_result *r, bool apply)
{
	struct http_request *req = ctx;
	char address[MT_ADDRESS_MAX * 6 + 1];
	char body[2048];
	switch (r->verdict) {
	case UNSUBSCRIBE_OK:
		api_html_escape(r->who.address, address, sizeof(address));
		if (r->who.suppressed) {
			snprintf(body, sizeof(body),
			         "<p><b>%s</b> will receive no more mailings of this kind.</p>",
			         address);
			api_reply_page(req, 200, "Unsubscribed", body);
		} else if (!apply) {
			/* A GET never unsubscribes: link scanners follow links. */
			snprintf(body, sizeof(body),
			         "<p>Stop mailings of this kind to <b>%s</b>?</p>"
			         "<form method=\"post\"><button type=\"submit\">Unsubscribe"
			         "</button></form>",
			         address);
			api_reply_page(req, 200, "Unsubscribe", body);
		}
		break;
	case UNSUBSCRIBE_NOT_FOUND:
		api_reply_page(
		    req, 404, "Link not found",
		    "<p>This unsubscribe link is not one of ours, or it was mistyped.</p>");
		break;
	case UNSUBSCRIBE_BUSY:
		api_reply_page(req, 503, "Try again",
		               "<p>We are busy; please try again in a moment.</p>");
		break;
	case UNSUBSCRIBE_FAILED:
		api_reply_page(req, 500, "Something went wrong",
		               "<p>Nothing was changed; please try again later.</p>");
		break;
	}
}

static void unsubscribe_shown(void *ctx, const struct campaign_unsubscribe_result *r)
{
	unsubscribed(ctx, r, false);
}

static void unsubscribe_applied(void *ctx, const struct campaign_unsubscribe_result *r)
{
	unsubscribed(ctx, r, true);
}

void api_unsubscribe_get(struct http_request *req, void *app)
{
	struct api *api = app;
	campaign_unsubscribe(api->campaigns, http_request_param(req, "token"), false,
	                     unsubscribe_shown, req);
}

void api_unsubscribe_post(struct http_request *req, void *app)
{
	struct api *api = app;
	campaign_unsubscribe(api->campaigns, http_request_param(req, "token"), true,
	                     unsubscribe_applied, req);
}
