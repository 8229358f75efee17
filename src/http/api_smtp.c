/* Custom SMTP settings (the seed's "Custom SMTP Settings" page): presets, the admin switch, the
 * disclaimer, the host policy, and a live check — connect, secure, authenticate and send a
 * confirmation mail from `from` to `from` — before anything is stored. A failed check changes
 * nothing: the working settings stay in place. The secret is sealed (src/crypto) with the
 * account as associated data and never returned. */
#include "http/api.h"

#include "config/config.h"
#include "crypto/seal.h"
#include "engine/host_policy.h"
#include "engine/smtp_presets.h"
#include "engine/smtp_probe.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/str.h"
#include "mime/address.h"
#include "net/security.h"
#include "net/tls.h"
#include "store/store.h"
#include "store/store_org.h"
#include "store/store_outbox.h"
#include "store/store_smtp.h"
#include "store/store_user.h"

#include <arpa/inet.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct {
	const char *name;
	int seconds;
} windows[] = {{"minute", 60}, {"hour", 3600}, {"day", 86400}};

static const char *window_name(int seconds)
{
	for (size_t i = 0; i < sizeof(windows) / sizeof(windows[0]); i++)
		if (windows[i].seconds == seconds)
			return windows[i].name;
	return "?";
}

static int window_seconds(const char *name)
{
	for (size_t i = 0; i < sizeof(windows) / sizeof(windows[0]); i++)
		if (strcmp(windows[i].name, name) == 0)
			return windows[i].seconds;
	return 0;
}

static json_t *limits_json(const struct store_send_limit *limits, size_t count)
{
	json_t *array = json_array();
	for (size_t i = 0; i < count; i++)
		json_array_append_new(array,
		                      json_pack("{s:I,s:s}", "limit", (json_int_t)limits[i].limit,
		                                "window", window_name(limits[i].window_s)));
	return array;
}

static const char *const state_names[] = {
    [STORE_ACCOUNT_OFF] = "off",
    [STORE_ACCOUNT_CONNECTED] = "connected",
    [STORE_ACCOUNT_DISCONNECTED] = "disconnected",
};

static json_t *nullable(const char *s)
{
	return s[0] != '\0' ? json_string(s) : json_null();
}

/* What the account's custom route sent in each of its rolling windows. */
struct usage {
	int64_t used[MT_SEND_LIMITS_MAX];
	int64_t oldest[MT_SEND_LIMITS_MAX];
};

static int load_usage(struct store_tx *tx, const struct store_smtp_account *a, struct usage *u)
{
	int64_t now = (int64_t)time(NULL);
	for (size_t i = 0; i < a->limit_count; i++) {
		int rc = store_outbox_sent_since(tx, a->org_id, a->user_id, "custom",
		                                 now - a->limits[i].window_s, &u->used[i],
		                                 &u->oldest[i]);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* The settings without the secret, with each window's usage: accepted recipients in the
 * rolling window, and when a slot frees up once it is full (the oldest send leaving it). */
static json_t *account_json(const struct store_smtp_account *a, bool exists, const struct usage *u)
{
	if (!exists)
		return json_pack("{s:s,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:[],s:n,s:n,s:n,s:n,s:[]}",
		                 "state", "off", "preset", "host", "port", "security", "auth",
		                 "username", "from", "limits", "tls_fingerprint", "verified_at",
		                 "confirmation_message_id", "last_error", "usage");
	json_t *usage = json_array();
	for (size_t i = 0; i < a->limit_count; i++)
		json_array_append_new(usage,
		                      json_pack("{s:s,s:I,s:I,s:o}", "window",
		                                window_name(a->limits[i].window_s), "limit",
		                                (json_int_t)a->limits[i].limit, "used",
		                                (json_int_t)u->used[i], "next_slot_at",
		                                u->used[i] >= a->limits[i].limit
		                                    ? api_time(u->oldest[i] + a->limits[i].window_s)
		                                    : json_null()));
	return json_pack("{s:s,s:o,s:s,s:i,s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o}", "state",
	                 state_names[a->state], "preset", nullable(a->preset), "host", a->host,
	                 "port", a->port, "security", a->security, "auth", a->auth, "username",
	                 a->username, "from", a->from_address, "limits",
	                 limits_json(a->limits, a->limit_count), "tls_fingerprint",
	                 nullable(a->tls_fingerprint), "verified_at", api_time(a->verified_at),
	                 "confirmation_message_id", nullable(a->confirmation_message_id),
	                 "last_error", nullable(a->last_error), "usage", usage);
}

static void fail_oom(struct http_request *req)
{
	http_reply_error(req, 500, "internal", "out of memory", NULL, NULL);
}

/* The send-limit fields PUT and PATCH share: `limits` (an array of {limit,window}) or the
 * `limit` + `window` shorthand. */
struct limits_input {
	json_t *limits;
	int64_t limit;
	bool have_limit;
	const char *window;
};

#define LIMIT_FIELDS(in)                                                                           \
	{.name = "limits",                                                                         \
	 .type = JSON_FIELD_ARRAY,                                                                 \
	 .max_items = MT_SEND_LIMITS_MAX,                                                          \
	 .out = &(in).limits},                                                                     \
	    {.name = "limit",                                                                      \
	     .type = JSON_FIELD_INT,                                                               \
	     .min = 1,                                                                             \
	     .max = 10000000,                                                                      \
	     .out = &(in).limit,                                                                   \
	     .present = &(in).have_limit},                                                         \
	{                                                                                          \
		.name = "window", .type = JSON_FIELD_STRING, .max_len = 16, .out = &(in).window    \
	}

/* Returns the count of limits decoded into `out`, or -1 after replying 400. */
static int decode_limits(struct http_request *req, const struct limits_input *in,
                         struct store_send_limit *out)
{
	json_t *limits = in->limits;
	bool have_limit = in->have_limit;
	int64_t limit = in->limit;
	const char *window = in->window;
	size_t count = 0;
	if (limits != NULL && have_limit) {
		http_reply_error(req, 400, "input", "give either limits or limit + window", NULL,
		                 NULL);
		return -1;
	}
	if (have_limit != (window != NULL)) {
		http_reply_error(req, 400, "input", "limit and window go together", NULL, NULL);
		return -1;
	}
	json_t *single = NULL;
	if (have_limit) {
		single = json_pack("[{s:I,s:s}]", "limit", (json_int_t)limit, "window", window);
		limits = single;
	}
	for (size_t i = 0; limits != NULL && i < json_array_size(limits); i++) {
		int64_t value = 0;
		const char *name = NULL;
		const struct json_field fields[] = {
		    {.name = "limit",
		     .type = JSON_FIELD_INT,
		     .required = true,
		     .min = 1,
		     .max = 10000000,
		     .out = &value},
		    {.name = "window",
		     .type = JSON_FIELD_STRING,
		     .required = true,
		     .max_len = 16,
		     .out = &name},
		};
		char error[256];
		json_t *item = json_array_get(limits, i);
		if (!json_is_object(item)) {
			http_reply_errorf(req, 400, "input", "limits[%zu]: expected an object", i);
			goto fail;
		}
		if (json_decode_fields(item, fields, 2, error, sizeof(error)) < 0) {
			http_reply_errorf(req, 400, "input", "limits[%zu]: %s", i, error);
			goto fail;
		}
		int seconds = window_seconds(name);
		if (seconds == 0) {
			http_reply_errorf(req, 400, "input",
			                  "limits[%zu]: window must be minute, hour or day", i);
			goto fail;
		}
		for (size_t j = 0; j < count; j++) {
			if (out[j].window_s == seconds) {
				http_reply_errorf(req, 400, "input",
				                  "limits[%zu]: a second limit per %s", i, name);
				goto fail;
			}
		}
		out[count].limit = value;
		out[count].window_s = seconds;
		count++;
	}
	json_decref(single);
	return (int)count;
fail:
	json_decref(single);
	return -1;
}

/* ---- GET / PATCH / DELETE ---- */

struct account_job {
	struct api_job base;
	struct store_smtp_account account;
	struct store_org org;
	bool exists;
	struct usage usage;
	struct store_send_limit limits[MT_SEND_LIMITS_MAX];
	size_t limit_count;
};

static int account_get_run(struct store_tx *tx, void *arg)
{
	struct account_job *job = arg;
	int rc = store_org_get(tx, job->base.org_id, &job->org);
	if (rc != 0)
		return rc;
	rc = store_smtp_account_get(tx, job->base.org_id, job->base.user_id, &job->account);
	job->exists = rc == 0;
	if (rc == 0)
		return load_usage(tx, &job->account, &job->usage);
	return rc == STORE_NOT_FOUND ? 0 : rc;
}

/* The admin's switch and where a single message would go now (DESIGN.md §1 Relay). */
static void add_route(struct account_job *job, json_t *doc)
{
	bool custom =
	    job->org.custom_smtp && job->exists && job->account.state == STORE_ACCOUNT_CONNECTED;
	const char *route = custom ? "custom" : job->base.api->relay_configured ? "relay" : "none";
	json_object_set_new(doc, "feature_enabled", json_boolean(job->org.custom_smtp));
	json_object_set_new(doc, "route", json_string(route));
}

static void account_reply_done(void *arg, int result)
{
	struct account_job *job = arg;
	if (!api_reply_store_error(job->base.req, result, "SMTP account")) {
		json_t *doc = account_json(&job->account, job->exists, &job->usage);
		if (doc != NULL)
			add_route(job, doc);
		http_reply_json(job->base.req, 200, doc);
	}
	sodium_memzero(&job->account, sizeof(job->account));
	free(job);
}

void api_smtp_get(struct http_request *req, void *app)
{
	struct account_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	api_job_submit(&job->base, STORE_READ, account_get_run, account_reply_done);
}

static int account_patch_run(struct store_tx *tx, void *arg)
{
	struct account_job *job = arg;
	int rc = store_smtp_account_set_limits(tx, job->base.org_id, job->base.user_id, job->limits,
	                                       job->limit_count);
	if (rc == 0)
		rc = store_org_get(tx, job->base.org_id, &job->org);
	if (rc == 0)
		rc = store_smtp_account_get(tx, job->base.org_id, job->base.user_id, &job->account);
	job->exists = rc == 0;
	return rc == 0 ? load_usage(tx, &job->account, &job->usage) : rc;
}

void api_smtp_patch(struct http_request *req, void *app)
{
	struct account_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	struct limits_input lim = {0};
	const struct json_field fields[] = {
	    LIMIT_FIELDS(lim),
	};
	json_t *root = api_decode(req, fields, sizeof(fields) / sizeof(fields[0]));
	if (root == NULL) {
		free(job);
		return;
	}
	if (lim.limits == NULL && !lim.have_limit) {
		http_reply_error(req, 400, "input", "limits (or limit + window) is required", NULL,
		                 NULL);
		json_decref(root);
		free(job);
		return;
	}
	int count = decode_limits(req, &lim, job->limits);
	json_decref(root);
	if (count < 0) {
		free(job);
		return;
	}
	job->limit_count = (size_t)count;
	api_job_submit(&job->base, STORE_WRITE_DURABLE, account_patch_run, account_reply_done);
}

static int account_delete_run(struct store_tx *tx, void *arg)
{
	struct account_job *job = arg;
	int rc = store_smtp_account_off(tx, job->base.org_id, job->base.user_id);
	return rc == STORE_NOT_FOUND ? 0 : rc;
}

static void account_delete_done(void *arg, int result)
{
	struct account_job *job = arg;
	if (!api_reply_store_error(job->base.req, result, "SMTP account"))
		http_reply_empty(job->base.req, 204);
	free(job);
}

void api_smtp_delete(struct http_request *req, void *app)
{
	struct account_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	api_job_submit(&job->base, STORE_WRITE_DURABLE, account_delete_run, account_delete_done);
}

/* ---- presets ---- */

void api_smtp_presets(struct http_request *req, void *app)
{
	(void)app;
	size_t count;
	const struct smtp_preset *presets = smtp_presets(&count);
	json_t *list = json_array();
	for (size_t i = 0; i < count; i++) {
		const struct smtp_preset *p = &presets[i];
		json_t *limits = json_array();
		for (size_t j = 0; j < p->limit_count; j++)
			json_array_append_new(limits, json_pack("{s:I,s:s}", "limit",
			                                        (json_int_t)p->limits[j].limit,
			                                        "window", p->limits[j].window));
		json_t *item = json_pack(
		    "{s:s,s:s,s:o,s:i,s:s,s:s,s:o,s:s}", "id", p->id, "name", p->name, "host",
		    p->host ? json_string(p->host) : json_null(), "port", p->port, "security",
		    p->security, "auth", p->auth, "limits", limits, "notes", p->notes);
		if (p->oauth_token_url != NULL)
			json_object_set_new(
			    item, "oauth",
			    json_pack("{s:s,s:s,s:s}", "auth_url", p->oauth_auth_url, "token_url",
			              p->oauth_token_url, "scopes", p->oauth_scopes));
		json_array_append_new(list, item);
	}
	http_reply_json(req, 200, json_pack("{s:o}", "presets", list));
}

/* ---- PUT: validate, check live, then store ---- */

enum put_stage { PUT_LOAD, PUT_STORE };

struct put_job {
	struct api_job base;
	enum put_stage stage;
	/* From the request, merged with the preset. */
	struct store_smtp_account account;
	char *secret_text; /* the new password or access token; wiped and freed */
	size_t secret_len;
	/* Loaded */
	struct store_org org;
	struct store_user user;
	struct store_smtp_account stored;
	bool stored_exists;
	struct mt_secret *secret; /* what the check uses */
	struct mt_tls_pin pin;
	bool have_pin;
	bool holds_slot;
	bool limits_given; /* else the stored limits stay (PATCH may have set them) */
	char message_id[128];
};

static void put_free(struct put_job *job);

static void put_destroy(void *job)
{
	put_free(job);
}

static void put_free(struct put_job *job)
{
	if (job->secret_text != NULL) {
		sodium_memzero(job->secret_text, job->secret_len);
		free(job->secret_text);
	}
	mt_secret_free(&job->secret);
	sodium_memzero(&job->stored, sizeof(job->stored));
	sodium_memzero(&job->account, sizeof(job->account));
	free(job);
}

/* A few live checks at a time per org: each holds a connection to a provider for up to 30 s. */
static bool take_slot(struct api *api, const char *org_id)
{
	struct api_org_checks *free_slot = NULL;
	for (size_t i = 0; i < api->check_slots; i++) {
		struct api_org_checks *c = &api->checks[i];
		if (strcmp(c->org_id, org_id) == 0) {
			if (c->running >= MT_LIVE_CHECKS_PER_ORG)
				return false;
			c->running++;
			return true;
		}
		if (c->running == 0 && free_slot == NULL)
			free_slot = c;
	}
	if (free_slot == NULL) {
		size_t n = api->check_slots ? api->check_slots * 2 : 16;
		struct api_org_checks *grown = realloc(api->checks, n * sizeof(*grown));
		if (grown == NULL)
			return false;
		memset(grown + api->check_slots, 0, (n - api->check_slots) * sizeof(*grown));
		free_slot = grown + api->check_slots;
		api->checks = grown;
		api->check_slots = n;
	}
	mt_strlcpy(free_slot->org_id, org_id, sizeof(free_slot->org_id));
	free_slot->running = 1;
	return true;
}

static void release_slot(struct api *api, const char *org_id)
{
	for (size_t i = 0; i < api->check_slots; i++)
		if (strcmp(api->checks[i].org_id, org_id) == 0 && api->checks[i].running > 0)
			api->checks[i].running--;
}

static void count_check(const char *cls)
{
	mt_metric_inc("mailtrail_live_checks_total", "Live checks of mail accounts by outcome",
	              "kind", "smtp", "class", cls);
}

#define PUT_CHANGED_MEANWHILE 100 /* a job result beside the STORE_* codes */
#define PUT_FEATURE_OFF       101

/* The check took seconds: whatever it was decided on must still hold when its result is
 * stored, or a deactivation, a feature switch or a DELETE made meanwhile would be undone. */
static bool same_account(const struct store_smtp_account *a, bool a_exists,
                         const struct store_smtp_account *b, bool b_exists)
{
	if (a_exists != b_exists)
		return false;
	return !a_exists || (a->state == b->state && a->updated_at == b->updated_at &&
	                     a->sealed_secret_len == b->sealed_secret_len &&
	                     strcmp(a->host, b->host) == 0 && a->port == b->port);
}

static int put_store(struct store_tx *tx, struct put_job *job)
{
	struct store_org org;
	struct store_user user;
	struct store_smtp_account *now = malloc(sizeof(*now));
	if (now == NULL)
		return -1;
	int rc = store_org_get(tx, job->base.org_id, &org);
	if (rc == 0)
		rc = store_user_get(tx, job->base.org_id, job->base.user_id, &user);
	if (rc == 0 && !user.active)
		rc = STORE_NOT_FOUND;
	if (rc == 0 && !org.custom_smtp)
		rc = PUT_FEATURE_OFF;
	if (rc == 0) {
		int got = store_smtp_account_get(tx, job->base.org_id, job->base.user_id, now);
		if (got != 0 && got != STORE_NOT_FOUND)
			rc = got;
		else if (!same_account(&job->stored, job->stored_exists, now, got == 0))
			rc = PUT_CHANGED_MEANWHILE;
	}
	sodium_memzero(now, sizeof(*now));
	free(now);
	return rc != 0 ? rc : store_smtp_account_put(tx, &job->account);
}

static int put_run(struct store_tx *tx, void *arg)
{
	struct put_job *job = arg;
	if (job->stage == PUT_STORE)
		return put_store(tx, job);
	int rc = store_org_get(tx, job->base.org_id, &job->org);
	if (rc == 0)
		rc = store_user_get(tx, job->base.org_id, job->base.user_id, &job->user);
	if (rc != 0)
		return rc;
	rc = store_smtp_account_get(tx, job->base.org_id, job->base.user_id, &job->stored);
	job->stored_exists = rc == 0;
	return rc == STORE_NOT_FOUND ? 0 : rc;
}

static void put_stored(void *arg, int result)
{
	struct put_job *job = arg;
	if (result == PUT_FEATURE_OFF)
		http_reply_error(job->base.req, 403, "input",
		                 "Custom SMTP was switched off for this org during the check", NULL,
		                 NULL);
	else if (result == PUT_CHANGED_MEANWHILE)
		http_reply_error(job->base.req, 409, "input",
		                 "the SMTP settings changed during the check; nothing was stored, "
		                 "try again",
		                 NULL, NULL);
	else if (!api_reply_store_error(job->base.req, result, "user"))
		http_reply_json(job->base.req, 200,
		                json_pack("{s:s,s:o,s:s}", "state", "connected", "verified_at",
		                          api_time(job->account.verified_at),
		                          "confirmation_message_id", job->message_id));
	put_free(job);
}

static void put_checked(void *ctx, const struct smtp_probe_result *result)
{
	struct put_job *job = ctx;
	struct api *api = job->base.api;
	release_slot(api, job->base.org_id);
	count_check(mt_class_name(result->cls));
	if (result->cls != MT_CLASS_NONE) {
		mt_log(MT_LOG_INFO, "smtp.live_check_failed", MT_KV("user", job->base.user_id),
		       MT_KV("host", job->account.host), MT_KV("class", mt_class_name(result->cls)),
		       MT_KV("reason", result->reason));
		char message[400];
		snprintf(message, sizeof(message), "the live check failed: %s", result->reason);
		http_reply_error(job->base.req, 422, mt_class_name(result->cls), message,
		                 result->reply[0] ? result->reply : NULL,
		                 result->fingerprint[0] ? result->fingerprint : NULL);
		put_free(job);
		return;
	}
	/* Seal what was checked, bound to this account. */
	char context[MT_ID_MAX + 8];
	snprintf(context, sizeof(context), "smtp:%s", job->base.user_id);
	struct store_smtp_account *a = &job->account;
	a->sealed_secret_len = 0;
	if (job->secret != NULL &&
	    mt_seal(api->keyring, context, mt_secret_bytes(job->secret), mt_secret_len(job->secret),
	            a->sealed_secret, sizeof(a->sealed_secret), &a->sealed_secret_len) < 0) {
		http_reply_error(job->base.req, 500, "internal", "cannot seal the secret", NULL,
		                 NULL);
		put_free(job);
		return;
	}
	a->state = STORE_ACCOUNT_CONNECTED;
	a->verified_at = (int64_t)time(NULL);
	mt_strlcpy(a->confirmation_message_id, job->message_id, sizeof(a->confirmation_message_id));
	a->last_error[0] = '\0';
	job->stage = PUT_STORE;
	api_job_submit(&job->base, STORE_WRITE_DURABLE, put_run, put_stored);
}

static char *confirmation_mail(struct put_job *job, size_t *len_r)
{
	const char *from = job->account.from_address;
	const char *domain = strrchr(from, '@');
	unsigned char random[12];
	randombytes_buf(random, sizeof(random));
	char token[32];
	sodium_bin2hex(token, sizeof(token), random, sizeof(random));
	snprintf(job->message_id, sizeof(job->message_id), "mailtrail.%s@%s", token,
	         domain != NULL ? domain + 1 : "mailtrail.invalid");
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	size_t size = 2048;
	char *mail = malloc(size);
	if (mail == NULL)
		return NULL;
	int n = snprintf(mail, size,
	                 "From: <%s>\r\nTo: <%s>\r\nSubject: Custom SMTP is connected\r\n"
	                 "Date: %s\r\nMessage-ID: <%s>\r\nX-Mailtrail-Id: %s\r\n"
	                 "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
	                 "Auto-Submitted: auto-generated\r\n\r\n"
	                 "This message confirms that Custom SMTP is working: mail you send from "
	                 "the CRM\r\nnow goes out through %s as %s.\r\n",
	                 from, from, date, job->message_id, token, job->account.host, from);
	*len_r = (size_t)n;
	return mail;
}

static void put_host_checked(void *ctx, enum host_verdict verdict, const char *reason)
{
	struct put_job *job = ctx;
	struct api *api = job->base.api;
	if (verdict == HOST_PRIVATE || verdict == HOST_INVALID) {
		http_reply_error(job->base.req, 400, "input", reason, NULL, NULL);
		put_free(job);
		return;
	}
	if (verdict == HOST_UNRESOLVABLE) {
		count_check("conn");
		http_reply_error(job->base.req, 422, "conn", reason, NULL, NULL);
		put_free(job);
		return;
	}
	if (!take_slot(api, job->base.org_id)) {
		http_reply_error_retry(job->base.req, 429, "throttle",
		                       "too many live checks are running for this org; try again "
		                       "shortly",
		                       MT_LIVE_CHECK_STEP_MS / 1000);
		put_free(job);
		return;
	}
	job->holds_slot = true;
	struct store_smtp_account *a = &job->account;
	struct smtp_probe_params params;
	memset(&params, 0, sizeof(params));
	params.client.host = a->host;
	params.client.port = (uint16_t)a->port;
	mt_security_parse(a->security, &params.client.security);
	smtp_auth_parse(a->auth, &params.client.auth);
	params.client.username = a->username;
	params.client.secret = job->secret;
	params.client.tls = api->tls;
	params.client.pin = job->have_pin ? &job->pin : NULL;
	params.client.public_only = true;
	params.client.allow_private = mt_config_cidrs(api->config, "allow_private_hosts");
	/* A port that accepts and never greets must not hold the user for the whole deadline. */
	params.client.connect_timeout_ms = MT_LIVE_CHECK_STEP_MS;
	params.client.greeting_timeout_ms = MT_LIVE_CHECK_STEP_MS;
	size_t mail_len = 0;
	char *mail = confirmation_mail(job, &mail_len);
	if (mail == NULL) {
		release_slot(api, job->base.org_id);
		fail_oom(job->base.req);
		put_free(job);
		return;
	}
	params.mail_from = a->from_address;
	params.rcpt_to = a->from_address;
	params.data = mail;
	params.data_len = mail_len;
	const char *error;
	struct smtp_probe *probe =
	    smtp_probe_start(api->base, api->dns, &params, put_checked, NULL, job, &error);
	free(mail);
	if (probe == NULL) {
		release_slot(api, job->base.org_id);
		http_reply_error(job->base.req, 500, "internal", error, NULL, NULL);
		put_free(job);
	}
}

static bool address_is_users(const struct store_user *user, const char *address)
{
	if (strcmp(user->email, address) == 0)
		return true;
	for (size_t i = 0; i < user->alias_count; i++)
		if (strcmp(user->aliases[i], address) == 0)
			return true;
	return false;
}

/* Two pins are the same when both are absent or both name the same digest, whatever the
 * spelling (case, colons). */
static bool same_pin(const char *a, const char *b)
{
	if (a[0] == '\0' || b[0] == '\0')
		return a[0] == b[0];
	struct mt_tls_pin pa, pb;
	const char *error;
	return mt_tls_pin_parse(a, &pa, &error) == 0 && mt_tls_pin_parse(b, &pb, &error) == 0 &&
	       pa.kind == pb.kind && memcmp(pa.digest, pb.digest, sizeof(pa.digest)) == 0;
}

/* Whether the stored secret may be sent where the new settings point. */
static bool same_destination(const struct store_smtp_account *stored,
                             const struct store_smtp_account *wanted)
{
	return strcmp(stored->host, wanted->host) == 0 && stored->port == wanted->port &&
	       strcmp(stored->username, wanted->username) == 0 &&
	       strcmp(stored->auth, wanted->auth) == 0 &&
	       strcmp(stored->security, wanted->security) == 0 &&
	       same_pin(stored->tls_fingerprint, wanted->tls_fingerprint);
}

/* After loading the org, the user and the stored account: the policy checks that need them. */
static void put_loaded(void *arg, int result)
{
	struct put_job *job = arg;
	struct api *api = job->base.api;
	struct http_request *req = job->base.req;
	struct store_smtp_account *a = &job->account;
	if (api_reply_store_error(req, result, "user")) {
		put_free(job);
		return;
	}
	if (!job->org.custom_smtp) {
		http_reply_error(
		    req, 403, "input",
		    "Custom SMTP is not enabled for this org; an admin can turn on the "
		    "custom_smtp feature",
		    NULL, NULL);
		goto fail;
	}
	if (!address_is_users(&job->user, a->from_address)) {
		http_reply_error(req, 400, "input",
		                 "from: must be your own address or one of your aliases", NULL,
		                 NULL);
		goto fail;
	}
	if (!job->limits_given && job->stored_exists &&
	    strcmp(job->stored.preset, a->preset) == 0) {
		memcpy(a->limits, job->stored.limits, sizeof(a->limits));
		a->limit_count = job->stored.limit_count;
	}
	char context[MT_ID_MAX + 8];
	snprintf(context, sizeof(context), "smtp:%s", job->base.user_id);
	if (strcmp(a->auth, "none") != 0) {
		if (job->secret_text != NULL) {
			job->secret = mt_secret_new(job->secret_text, job->secret_len);
		} else if (job->stored_exists && job->stored.sealed_secret_len > 0 &&
		           same_destination(&job->stored, a)) {
			/* An omitted password keeps the stored one — for the same server, login and
			 * transport only, or a stolen token could send the password to a host of
			 * its choice, in the clear, or to a certificate of its choice. */
			const char *error;
			job->secret = mt_unseal(api->keyring, context, job->stored.sealed_secret,
			                        job->stored.sealed_secret_len, &error);
			if (job->secret == NULL) {
				mt_log(MT_LOG_ERROR, "smtp.unseal_failed",
				       MT_KV("user", job->base.user_id), MT_KV("error", error));
				http_reply_error(
				    req, 400, "input",
				    "the stored password cannot be used; send it again", NULL,
				    NULL);
				goto fail;
			}
		} else {
			bool xoauth2 = strcmp(a->auth, "xoauth2") == 0;
			bool had_secret = job->stored_exists && job->stored.sealed_secret_len > 0;
			http_reply_error(
			    req, 400, "input",
			    !had_secret
			        ? (xoauth2 ? "access_token is required" : "password is required")
			    : xoauth2 ? "access_token is required: the stored one is only reused "
			                "for the same host, port, username, security and "
			                "tls_fingerprint"
			              : "password is required: the stored one is only reused for "
			                "the same host, port, username, security and "
			                "tls_fingerprint",
			    NULL, NULL);
			goto fail;
		}
		if (job->secret == NULL) {
			fail_oom(req);
			goto fail;
		}
	}
	host_policy_check(api->base, api->dns, a->host,
	                  mt_config_cidrs(api->config, "allow_private_hosts"), put_host_checked,
	                  job);
	return;
fail:
	put_free(job);
}

static bool no_auth_allowed(const struct api *api, const char *host)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr *addr = NULL;
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		addr = (struct sockaddr *)in4;
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		addr = (struct sockaddr *)in6;
	}
	return mt_config_host_listed(api->config, "no_auth_hosts", host, addr);
}

void api_smtp_put(struct http_request *req, void *app)
{
	struct api *api = app;
	struct put_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	job->base.destroy = put_destroy;
	const char *preset_id = NULL, *host = NULL, *security = NULL, *auth = NULL;
	const char *username = NULL, *password = NULL, *access_token = NULL, *from = NULL;
	const char *fingerprint = NULL;
	struct limits_input lim = {0};
	int64_t port = 0;
	bool have_port = false, disclaimer = false;
	const struct json_field fields[] = {
	    {.name = "preset", .type = JSON_FIELD_STRING, .max_len = 31, .out = &preset_id},
	    {.name = "host",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_HOST_FIELD_MAX,
	     .single_line = true,
	     .out = &host},
	    {.name = "port",
	     .type = JSON_FIELD_INT,
	     .min = 1,
	     .max = 65535,
	     .out = &port,
	     .present = &have_port},
	    {.name = "security", .type = JSON_FIELD_STRING, .max_len = 15, .out = &security},
	    {.name = "auth", .type = JSON_FIELD_STRING, .max_len = 15, .out = &auth},
	    {.name = "username",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_ADDRESS_MAX,
	     .single_line = true,
	     .out = &username},
	    {.name = "password",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_SASL_SECRET_MAX,
	     .single_line = true,
	     .out = &password},
	    {.name = "access_token",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_SASL_SECRET_MAX,
	     .single_line = true,
	     .out = &access_token},
	    {.name = "from",
	     .type = JSON_FIELD_STRING,
	     .required = true,
	     .max_len = MT_ADDRESS_MAX * 2,
	     .single_line = true,
	     .out = &from},
	    LIMIT_FIELDS(lim),
	    {.name = "accept_disclaimer", .type = JSON_FIELD_BOOL, .out = &disclaimer},
	    {.name = "tls_fingerprint",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_TLS_FINGERPRINT_MAX - 1,
	     .single_line = true,
	     .nullable = true,
	     .out = &fingerprint},
	};
	json_t *root = api_decode(req, fields, sizeof(fields) / sizeof(fields[0]));
	if (root == NULL) {
		free(job);
		return;
	}
	struct store_smtp_account *a = &job->account;
	mt_strlcpy(a->org_id, job->base.org_id, sizeof(a->org_id));
	mt_strlcpy(a->user_id, job->base.user_id, sizeof(a->user_id));
	const struct smtp_preset *preset = NULL;
	const char *error;
	if (!disclaimer) {
		http_reply_error(req, 400, "input",
		                 "accept_disclaimer must be true: read and accept the Custom SMTP "
		                 "disclaimer first",
		                 NULL, NULL);
		goto fail;
	}
	if (preset_id != NULL && (preset = smtp_preset_find(preset_id)) == NULL) {
		http_reply_errorf(req, 400, "input", "preset: unknown preset '%s'", preset_id);
		goto fail;
	}
	/* The preset fills what the request omits; explicit fields win. */
	if (host == NULL && preset != NULL)
		host = preset->host;
	if (!have_port && preset != NULL)
		port = preset->port, have_port = true;
	if (security == NULL)
		security = preset != NULL ? preset->security : NULL;
	if (auth == NULL)
		auth = preset != NULL ? preset->auth : "password";
	if (host == NULL || host[0] == '\0' || !have_port || security == NULL) {
		http_reply_error(req, 400, "input",
		                 "host, port and security are required (or a preset that has them)",
		                 NULL, NULL);
		goto fail;
	}
	enum mt_security sec;
	enum smtp_auth auth_kind;
	if (mt_security_parse(security, &sec) < 0) {
		http_reply_error(req, 400, "input", "security: must be starttls, tls or none", NULL,
		                 NULL);
		goto fail;
	}
	if (smtp_auth_parse(auth, &auth_kind) < 0 ||
	    (auth_kind != SMTP_AUTH_PASSWORD && auth_kind != SMTP_AUTH_XOAUTH2 &&
	     auth_kind != SMTP_AUTH_NONE)) {
		http_reply_error(req, 400, "input", "auth: must be password, xoauth2 or none", NULL,
		                 NULL);
		goto fail;
	}
	if (!host_name_valid(host)) {
		http_reply_errorf(req, 400, "input", "host: '%s' is not a valid host name", host);
		goto fail;
	}
	mt_strlcpy(a->host, host, sizeof(a->host));
	for (char *p = a->host; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	a->port = (int)port;
	mt_strlcpy(a->security, security, sizeof(a->security));
	mt_strlcpy(a->auth, auth, sizeof(a->auth));
	if (preset != NULL)
		mt_strlcpy(a->preset, preset->id, sizeof(a->preset));
	if (mime_address_normalize(from, a->from_address, &error) < 0) {
		http_reply_errorf(req, 400, "input", "from: %s", error);
		goto fail;
	}
	if (auth_kind == SMTP_AUTH_NONE) {
		if (password != NULL || access_token != NULL || username != NULL) {
			http_reply_error(req, 400, "input",
			                 "auth none takes no username, password or access_token",
			                 NULL, NULL);
			goto fail;
		}
		if (!no_auth_allowed(api, a->host)) {
			http_reply_error(
			    req, 400, "input",
			    "auth none is only allowed for hosts the operator lists in "
			    "no_auth_hosts",
			    NULL, NULL);
			goto fail;
		}
	} else {
		if (username == NULL || username[0] == '\0') {
			http_reply_error(req, 400, "input", "username is required", NULL, NULL);
			goto fail;
		}
		mt_strlcpy(a->username, username, sizeof(a->username));
		const char *given = auth_kind == SMTP_AUTH_XOAUTH2 ? access_token : password;
		const char *wrong = auth_kind == SMTP_AUTH_XOAUTH2 ? password : access_token;
		if (wrong != NULL) {
			http_reply_error(req, 400, "input",
			                 auth_kind == SMTP_AUTH_XOAUTH2
			                     ? "auth xoauth2 takes access_token, not password"
			                     : "auth password takes password, not access_token",
			                 NULL, NULL);
			goto fail;
		}
		if (sec == MT_SECURITY_NONE &&
		    !mt_config_bool(api->config, "allow_plaintext_auth")) {
			http_reply_error(req, 400, "input",
			                 "a password over security none would cross the network in "
			                 "plaintext; use starttls or tls",
			                 NULL, NULL);
			goto fail;
		}
		if (given != NULL) {
			job->secret_len = strlen(given);
			job->secret_text = malloc(job->secret_len + 1);
			if (job->secret_text == NULL) {
				fail_oom(req);
				goto fail;
			}
			memcpy(job->secret_text, given, job->secret_len + 1);
			/* The request's own copies go as soon as the secret is ours. */
			sodium_memzero((char *)given, job->secret_len);
		}
	}
	if (fingerprint != NULL && fingerprint[0] != '\0') {
		if (sec == MT_SECURITY_NONE) {
			http_reply_error(req, 400, "input",
			                 "tls_fingerprint needs security tls or starttls", NULL,
			                 NULL);
			goto fail;
		}
		if (mt_tls_pin_parse(fingerprint, &job->pin, &error) < 0) {
			http_reply_errorf(req, 400, "input", "tls_fingerprint: %s", error);
			goto fail;
		}
		job->have_pin = true;
		mt_strlcpy(a->tls_fingerprint, fingerprint, sizeof(a->tls_fingerprint));
	}
	int count = decode_limits(req, &lim, a->limits);
	if (count < 0)
		goto fail;
	a->limit_count = (size_t)count;
	job->limits_given = count > 0 || lim.limits != NULL;
	if (count == 0 && lim.limits == NULL && preset != NULL) {
		for (size_t i = 0; i < preset->limit_count; i++) {
			a->limits[i].limit = preset->limits[i].limit;
			a->limits[i].window_s = window_seconds(preset->limits[i].window);
		}
		a->limit_count = preset->limit_count;
	}
	size_t body_len;
	const char *body = http_request_body(req, &body_len);
	if (body != NULL)
		sodium_memzero((char *)body, body_len);
	json_decref(root);
	job->stage = PUT_LOAD;
	api_job_submit(&job->base, STORE_READ, put_run, put_loaded);
	return;
fail:
	json_decref(root);
	put_free(job);
}
