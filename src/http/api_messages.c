/* The outbox API: POST /v1/messages stores a message durably (group-committed) before its 202;
 * GET shows its state per recipient; DELETE cancels it while it has not gone out. The route is
 * chosen at enqueue: the user's connected custom SMTP while the org's custom_smtp switch is on,
 * else the platform relay, else 409. */
#include "http/api.h"

#include "config/config.h"
#include "engine/sender.h"
#include "lib/base64.h"
#include "lib/str.h"
#include "mime/address.h"
#include "mime/build.h"
#include "mime/message.h"
#include "store/store.h"
#include "store/store_org.h"
#include "store/store_outbox.h"
#include "store/store_smtp.h"
#include "store/store_user.h"

#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void fail_oom(struct http_request *req)
{
	http_reply_error(req, 500, "internal", "out of memory", NULL, NULL);
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
	return json_pack(
	    "{s:s,s:s,s:s,s:i,s:o,s:o,s:s,s:o,s:o,s:o,s:o}", "id", m->id, "state",
	    store_outbox_state_name(m->state), "route", m->route, "attempts", m->attempts,
	    "last_error", m->last_error[0] ? json_string(m->last_error) : json_null(), "last_class",
	    m->last_class[0] ? json_string(m->last_class) : json_null(), "message_id",
	    m->message_id, "sent_at", api_time(m->sent_at), "created_at", api_time(m->created_at),
	    "next_attempt_at",
	    m->state == STORE_OUTBOX_QUEUED ? api_time(m->next_attempt_at) : json_null(),
	    "recipients", rcpts);
}

/* ---- POST /v1/messages ---- */

struct send_job {
	struct api_job base;
	int stage; /* 0: load the user and the route, 1: enqueue */
	struct store_user user;
	struct store_org org;
	struct store_smtp_account account;
	bool have_account;
	/* The request, decoded */
	struct mime_mailbox *rcpts; /* to, then cc, then bcc */
	size_t to_count, cc_count, bcc_count;
	struct mime_mailbox reply_to;
	bool have_reply_to;
	char *subject, *text, *html;
	struct mime_build_attachment *attachments;
	size_t attachment_count;
	struct mt_buf attachment_bytes;
	char idempotency_key[128];
	/* The stored message */
	struct store_outbox_message message;
	char existing_id[MT_ID_MAX];
};

static void send_job_free(struct send_job *job);

static void send_job_destroy(void *job)
{
	send_job_free(job);
}

static void send_job_free(struct send_job *job)
{
	free(job->rcpts);
	free(job->subject);
	free(job->text);
	free(job->html);
	free(job->attachments);
	mt_buf_free(&job->attachment_bytes);
	store_outbox_message_free(&job->message);
	sodium_memzero(&job->account, sizeof(job->account));
	free(job);
}

static int send_run(struct store_tx *tx, void *arg)
{
	struct send_job *job = arg;
	if (job->stage == 1)
		return store_outbox_enqueue(tx, &job->message, job->existing_id);
	int rc = store_user_get(tx, job->base.org_id, job->base.user_id, &job->user);
	if (rc == 0)
		rc = store_org_get(tx, job->base.org_id, &job->org);
	if (rc != 0)
		return rc;
	rc = store_smtp_account_get(tx, job->base.org_id, job->base.user_id, &job->account);
	job->have_account = rc == 0;
	return rc == STORE_NOT_FOUND ? 0 : rc;
}

struct existing_job {
	struct api_job base;
	char id[MT_ID_MAX];
	struct store_outbox_message message;
};

static int existing_run(struct store_tx *tx, void *arg)
{
	struct existing_job *job = arg;
	return store_outbox_get(tx, job->base.org_id, job->base.user_id, job->id, &job->message);
}

static void existing_done(void *arg, int result)
{
	struct existing_job *job = arg;
	if (!api_reply_store_error(job->base.req, result, "message"))
		http_reply_json(job->base.req, 202,
		                json_pack("{s:s,s:s}", "id", job->message.id, "state",
		                          store_outbox_state_name(job->message.state)));
	store_outbox_message_free(&job->message);
	free(job);
}

static void enqueued(void *arg, int result)
{
	struct send_job *job = arg;
	struct api *api = job->base.api;
	if (result == STORE_CONFLICT && job->existing_id[0] != '\0') {
		/* The same Idempotency-Key within 24 h: the first message is the answer. */
		struct existing_job *existing = api_job_new(api, job->base.req, sizeof(*existing));
		if (existing == NULL) {
			fail_oom(job->base.req);
		} else {
			mt_strlcpy(existing->id, job->existing_id, sizeof(existing->id));
			api_job_submit(&existing->base, STORE_READ, existing_run, existing_done);
		}
	} else if (!api_reply_store_error(job->base.req, result, "message")) {
		http_reply_json(job->base.req, 202,
		                json_pack("{s:s,s:s}", "id", job->message.id, "state",
		                          store_outbox_state_name(job->message.state)));
		sender_wake(api->sender);
	}
	send_job_free(job);
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

static json_t *attachments_json(const struct mime_summary *summary)
{
	json_t *list = json_array();
	for (size_t i = 0; i < summary->attachment_count; i++) {
		const struct mime_attachment *a = &summary->attachments[i];
		json_array_append_new(list, json_pack("{s:s,s:s,s:I}", "name", a->name, "type",
		                                      a->type, "size", (json_int_t)a->size));
	}
	return list;
}

/* With the user, the org and the account loaded: pick the route, build the MIME, enqueue. */
static void send_loaded(void *arg, int result)
{
	struct send_job *job = arg;
	struct api *api = job->base.api;
	struct http_request *req = job->base.req;
	if (api_reply_store_error(req, result, "user")) {
		send_job_free(job);
		return;
	}
	struct store_outbox_message *m = &job->message;
	struct mime_mailbox from, sender_box;
	memset(&from, 0, sizeof(from));
	memset(&sender_box, 0, sizeof(sender_box));
	mt_strlcpy(from.name, job->user.name, sizeof(from.name));
	const struct mime_mailbox *reply_to = job->have_reply_to ? &job->reply_to : NULL;
	struct mime_mailbox user_box;
	memset(&user_box, 0, sizeof(user_box));
	mt_strlcpy(user_box.address, job->user.email, sizeof(user_box.address));
	mt_strlcpy(user_box.name, job->user.name, sizeof(user_box.name));
	bool sender_header = false;
	bool custom_ready = job->have_account && job->account.state == STORE_ACCOUNT_CONNECTED;
	if (custom_ready && job->org.custom_smtp) {
		mt_strlcpy(m->route, "custom", sizeof(m->route));
		mt_strlcpy(from.address, job->account.from_address, sizeof(from.address));
		mt_strlcpy(m->mail_from, job->account.from_address, sizeof(m->mail_from));
	} else if (api->relay_configured) {
		/* The relay may only claim domains that authorise it (DMARC): the org's own domains
		 * stay in From with the relay as Sender; any other domain (a recruiter on a
		 * free-mail address) is sent From the relay's address, with the user's name and
		 * Reply-To, so receivers enforcing DMARC do not reject it. Replies still reach the
		 * user. */
		mt_strlcpy(m->route, "relay", sizeof(m->route));
		const char *relay_from = api->relay_from[0] ? api->relay_from : job->user.email;
		mt_strlcpy(m->mail_from, relay_from, sizeof(m->mail_from));
		if (domain_is_orgs(&job->org, job->user.email) || api->relay_from[0] == '\0') {
			mt_strlcpy(from.address, job->user.email, sizeof(from.address));
			if (api->relay_from[0] != '\0') {
				mt_strlcpy(sender_box.address, api->relay_from,
				           sizeof(sender_box.address));
				sender_header = true;
			}
		} else {
			mt_strlcpy(from.address, api->relay_from, sizeof(from.address));
			if (reply_to == NULL)
				reply_to = &user_box;
		}
	} else {
		http_reply_error(req, 409, "input",
		                 custom_ready
		                     ? "no route for this message: Custom SMTP is switched off for "
		                       "this org (custom_smtp) and the platform relay is not "
		                       "configured"
		                     : "no route for this message: connect your own SMTP account "
		                       "(PUT /v1/smtp); the platform relay is not configured",
		                 NULL, NULL);
		send_job_free(job);
		return;
	}
	/* Identity: our Message-ID and X-Mailtrail-Id, so every copy is recognised. 48 bits of
	 * wall-clock milliseconds, then 48 random bits, in hex: they sort by time, so the index of
	 * record keys and the aliases keyed by them grow at their ends (see store_new_ordered_id).
	 */
	unsigned char random[12];
	randombytes_buf(random, sizeof(random));
	uint64_t ms = (uint64_t)mt_wall_ms();
	for (int i = 5; i >= 0; i--, ms >>= 8)
		random[i] = (unsigned char)(ms & 0xff);
	sodium_bin2hex(m->mailtrail_id, sizeof(m->mailtrail_id), random, sizeof(random));
	const char *domain = strrchr(from.address, '@');
	snprintf(m->message_id, sizeof(m->message_id), "mt.%.32s@%.255s", m->mailtrail_id,
	         domain != NULL ? domain + 1 : "mailtrail.invalid");
	struct mime_build_input in = {
	    .from = &from,
	    .sender = sender_header ? &sender_box : NULL,
	    .reply_to = reply_to,
	    .to = job->rcpts,
	    .to_count = job->to_count,
	    .cc = job->rcpts + job->to_count,
	    .cc_count = job->cc_count,
	    .subject = job->subject,
	    .text = job->text,
	    .html = job->html,
	    .attachments = job->attachments,
	    .attachment_count = job->attachment_count,
	    .message_id = m->message_id,
	    .mailtrail_id = m->mailtrail_id,
	    .date = (int64_t)time(NULL),
	};
	const char *error;
	if (mime_build_message(&in, &m->body, &m->body_len, &error) < 0) {
		http_reply_errorf(req, 400, "input", "cannot build the message: %s", error);
		send_job_free(job);
		return;
	}
	int64_t max = mt_config_int(api->config, "max_message_bytes");
	if (max > 0 && (int64_t)m->body_len > max) {
		http_reply_errorf(req, 413, "input", "the message is %zu bytes; at most %lld",
		                  m->body_len, (long long)max);
		send_job_free(job);
		return;
	}
	/* The snippet and attachment list come from the built message, as any reader sees it. */
	struct mime_summary summary;
	if (mime_parse_message(m->body, m->body_len, &summary, &error) == 0) {
		mt_strlcpy(m->snippet, summary.snippet, sizeof(m->snippet));
		json_t *list = attachments_json(&summary);
		m->attachments_json = json_dumps(list, JSON_COMPACT);
		json_decref(list);
		mime_summary_free(&summary);
	}
	mt_strlcpy(m->org_id, job->base.org_id, sizeof(m->org_id));
	mt_strlcpy(m->user_id, job->base.user_id, sizeof(m->user_id));
	mt_strlcpy(m->idempotency_key, job->idempotency_key, sizeof(m->idempotency_key));
	/* The record's From is the user even where the relay's header says otherwise: it is the
	 * user's mail (email_sent on the recipients' profiles). */
	mt_strlcpy(m->from.address, strcmp(m->route, "relay") == 0 ? job->user.email : from.address,
	           sizeof(m->from.address));
	mt_strlcpy(m->from.name, from.name, sizeof(m->from.name));
	mt_strlcpy(m->subject, job->subject, sizeof(m->subject));
	m->state = STORE_OUTBOX_QUEUED;
	size_t total = job->to_count + job->cc_count + job->bcc_count;
	m->rcpts = calloc(total, sizeof(*m->rcpts));
	if (m->rcpts == NULL) {
		fail_oom(req);
		send_job_free(job);
		return;
	}
	for (size_t i = 0; i < total; i++) {
		struct store_outbox_rcpt *r = &m->rcpts[i];
		mt_strlcpy(r->address, job->rcpts[i].address, sizeof(r->address));
		mt_strlcpy(r->name, job->rcpts[i].name, sizeof(r->name));
		r->kind = i < job->to_count                   ? STORE_RCPT_TO
		          : i < job->to_count + job->cc_count ? STORE_RCPT_CC
		                                              : STORE_RCPT_BCC;
	}
	m->rcpt_count = total;
	job->stage = 1;
	api_job_submit(&job->base, STORE_WRITE_DURABLE | STORE_REPLAYABLE, send_run, enqueued);
}

/* Parses a list of recipients into the job (after those already there), counting them in
 * *count_r; false after replying 400. */
static bool add_rcpts(struct http_request *req, const char *field, json_t *list,
                      struct send_job *job, size_t *count_r)
{
	for (size_t i = 0; list != NULL && i < json_array_size(list); i++) {
		size_t n = job->to_count + job->cc_count + job->bcc_count;
		if (n >= MT_SMTP_RCPTS_MAX) {
			http_reply_errorf(
			    req, 400, "input",
			    "too many recipients: at most %d per message (use a campaign "
			    "for mass mail)",
			    MT_SMTP_RCPTS_MAX);
			return false;
		}
		const char *error;
		struct mime_mailbox *mb = &job->rcpts[n];
		if (mime_mailbox_parse(json_string_value(json_array_get(list, i)), mb, &error) <
		    0) {
			http_reply_errorf(req, 400, "input", "%s[%zu]: %s", field, i, error);
			return false;
		}
		bool duplicate = false;
		for (size_t j = 0; j < n; j++)
			duplicate = duplicate || strcmp(job->rcpts[j].address, mb->address) == 0;
		if (!duplicate) /* one copy per address, whichever field named it first */
			(*count_r)++;
	}
	return true;
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

void api_messages_send(struct http_request *req, void *app)
{
	struct send_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	mt_buf_init(&job->attachment_bytes, MT_HTTP_MESSAGE_MAX);
	job->base.destroy = send_job_destroy;
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
	json_t *root = api_decode(req, fields, sizeof(fields) / sizeof(fields[0]));
	if (root == NULL) {
		send_job_free(job);
		return;
	}
	const char *error;
	const char *key = http_request_header(req, "Idempotency-Key");
	if (key != NULL) {
		size_t len = strlen(key);
		bool printable = len > 0 && len < sizeof(job->idempotency_key);
		for (size_t i = 0; printable && i < len; i++)
			printable = key[i] > 0x20 && key[i] < 0x7f;
		if (!printable) {
			http_reply_error(req, 400, "input",
			                 "Idempotency-Key: 1 to 127 printable ASCII characters",
			                 NULL, NULL);
			goto fail;
		}
		mt_strlcpy(job->idempotency_key, key, sizeof(job->idempotency_key));
	}
	if (text == NULL && html == NULL) {
		http_reply_error(req, 400, "input", "text or html is required", NULL, NULL);
		goto fail;
	}
	job->rcpts = calloc(MT_SMTP_RCPTS_MAX, sizeof(*job->rcpts));
	if (job->rcpts == NULL) {
		fail_oom(req);
		goto fail;
	}
	if (!add_rcpts(req, "to", to, job, &job->to_count) ||
	    !add_rcpts(req, "cc", cc, job, &job->cc_count) ||
	    !add_rcpts(req, "bcc", bcc, job, &job->bcc_count))
		goto fail;
	if (job->to_count == 0) {
		http_reply_error(req, 400, "input", "to: at least one recipient is needed", NULL,
		                 NULL);
		goto fail;
	}
	if (reply_to != NULL) {
		if (mime_mailbox_parse(reply_to, &job->reply_to, &error) < 0) {
			http_reply_errorf(req, 400, "input", "reply_to: %s", error);
			goto fail;
		}
		job->have_reply_to = true;
	}
	size_t n = json_array_size(attachments);
	job->attachments = calloc(n ? n : 1, sizeof(*job->attachments));
	size_t *offsets = calloc(n ? n : 1, sizeof(*offsets));
	if (job->attachments == NULL || offsets == NULL) {
		free(offsets);
		fail_oom(req);
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		const char *filename = NULL, *type = NULL, *content = NULL;
		const struct json_field att_fields[] = {
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
		    json_decode_fields(item, att_fields, 3, message, sizeof(message)) < 0) {
			http_reply_errorf(req, 400, "input", "attachments[%zu]: %s", i,
			                  json_is_object(item) ? message : "expected an object");
			free(offsets);
			goto fail;
		}
		if (filename[0] == '\0' || (type != NULL && !content_type_ok(type))) {
			http_reply_errorf(
			    req, 400, "input",
			    "attachments[%zu]: a file name and a type/subtype are needed", i);
			free(offsets);
			goto fail;
		}
		offsets[i] = job->attachment_bytes.len;
		if (mt_base64_decode(&job->attachment_bytes, content, strlen(content)) < 0) {
			http_reply_errorf(req, 400, "input",
			                  "attachments[%zu]: content_base64 is not valid base64",
			                  i);
			free(offsets);
			goto fail;
		}
		job->attachments[i].filename = filename;
		job->attachments[i].content_type = type;
		job->attachments[i].len = job->attachment_bytes.len - offsets[i];
	}
	job->attachment_count = n;
	/* The attachment data moved into one buffer; the names still point into `root`: copy
	 * them out before it goes. */
	for (size_t i = 0; i < n; i++) {
		job->attachments[i].data =
		    (const unsigned char *)job->attachment_bytes.data + offsets[i];
		size_t name_len = strlen(job->attachments[i].filename) + 1;
		size_t type_len = job->attachments[i].content_type
		                      ? strlen(job->attachments[i].content_type) + 1
		                      : 0;
		char *copy = malloc(name_len + type_len);
		if (copy == NULL) {
			free(offsets);
			fail_oom(req);
			goto fail;
		}
		memcpy(copy, job->attachments[i].filename, name_len);
		job->attachments[i].filename = copy;
		if (type_len > 0) {
			memcpy(copy + name_len, job->attachments[i].content_type, type_len);
			job->attachments[i].content_type = copy + name_len;
		}
	}
	free(offsets);
	job->subject = strdup(subject);
	job->text = text != NULL ? strdup(text) : NULL;
	job->html = html != NULL ? strdup(html) : NULL;
	json_decref(root);
	if (job->subject == NULL || (text != NULL && job->text == NULL) ||
	    (html != NULL && job->html == NULL)) {
		fail_oom(req);
		send_job_free(job);
		return;
	}
	api_job_submit(&job->base, STORE_READ, send_run, send_loaded);
	return;
fail:
	json_decref(root);
	send_job_free(job);
}

/* ---- GET / DELETE /v1/messages/{id} ---- */

struct message_job {
	struct api_job base;
	char id[MT_ID_MAX];
	bool cancel;
	struct store_outbox_message message;
};

static int message_run(struct store_tx *tx, void *arg)
{
	struct message_job *job = arg;
	if (job->cancel) {
		int rc = store_outbox_cancel(tx, job->base.org_id, job->base.user_id, job->id);
		if (rc != 0 && rc != STORE_CONFLICT)
			return rc;
		int got = store_outbox_get(tx, job->base.org_id, job->base.user_id, job->id,
		                           &job->message);
		return got != 0 ? got : rc;
	}
	return store_outbox_get(tx, job->base.org_id, job->base.user_id, job->id, &job->message);
}

static void message_done(void *arg, int result)
{
	struct message_job *job = arg;
	if (result == STORE_CONFLICT)
		http_reply_errorf(job->base.req, 409, "input",
		                  "the message is %s and can no longer be cancelled",
		                  store_outbox_state_name(job->message.state));
	else if (!api_reply_store_error(job->base.req, result, "message"))
		http_reply_json(job->base.req, 200, message_json(&job->message));
	store_outbox_message_free(&job->message);
	free(job);
}

static void message_request(struct http_request *req, void *app, bool cancel)
{
	struct message_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	mt_strlcpy(job->id, http_request_param(req, "id"), sizeof(job->id));
	job->cancel = cancel;
	api_job_submit(&job->base, cancel ? STORE_WRITE_DURABLE : STORE_READ, message_run,
	               message_done);
}

void api_messages_get(struct http_request *req, void *app)
{
	message_request(req, app, false);
}

void api_messages_cancel(struct http_request *req, void *app)
{
	message_request(req, app, true);
}
