/* The webhooks engine's own work (see engine/webhooks.h): the pure rules (back-off, event
 * patterns, event ids) and delivery, where claims take webhooks under this node's lease and each
 * run sends its feed's events one at a time, recording every outcome fenced by that lease. The
 * API's requests on subscriptions are engine/webhooks_api.c's; what the two share is in
 * engine/webhooks_internal.h. */
#include "engine/webhooks.h"
#include "engine/webhooks_internal.h"

#include "config/config.h"
#include "crypto/seal.h"
#include "lib/log.h"
#include "lib/secret.h"
#include "lib/str.h"
#include "store/store.h"
#include "store/store_activity.h"
#include "webhook/client.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdint.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLAIM_MAX 16

/* One webhook being worked on by this node, under its lease. */
struct run {
	struct webhooks *w;
	struct run *prev, *next;
	struct store_webhook hook;
	struct mt_secret *secret;
	bool allow_http;
	bool in_job;    /* a store job of this run is queued: its completion frees a stopped run */
	int64_t cursor; /* committed */
	int64_t scan;   /* the last position looked at (delivered or passed over) */
	struct store_webhook_pending pending;
	bool loaded;
	size_t ai, ei;
	/* The two lists are read up to MT_WEBHOOK_BATCH each: past the last position of a full
	 * one, the other's items cannot go yet (what lies between is not loaded). */
	int64_t bound;
	/* The event in flight. */
	int64_t seq;
	char event_id[MT_ID_MAX + 24];
	char type[MT_WEBHOOK_EVENT_NAME_MAX + 1];
	int64_t event_at;
	char *body;
	int64_t started_ms;
	/* The record job. */
	struct store_webhook_result result;
	char error[MT_ERROR_TEXT_MAX];
	bool end_after; /* the run ends once the record is committed */
	bool reload_after;
};

/* ---- pure ---- */

int64_t webhooks_backoff_ms(unsigned attempt, uint32_t random)
{
	int64_t delay = MT_WEBHOOK_BACKOFF_MIN_MS;
	for (unsigned i = 1; i < attempt && delay < MT_WEBHOOK_BACKOFF_MAX_MS; i++)
		delay *= 2;
	if (delay > MT_WEBHOOK_BACKOFF_MAX_MS)
		delay = MT_WEBHOOK_BACKOFF_MAX_MS;
	/* +-20%: receivers that failed together do not all come back at the same instant. */
	return delay * (80 + (int64_t)(random % 41)) / 100;
}

static const char *const event_patterns[] = {
    "*",
    "activity.*",
    "activity.created",
    "activity.updated",
    "message.*",
    "message.sent",
    "message.partial",
    "message.failed",
    "message.cancelled",
    "account.*",
    "account.connected",
    "account.disconnected",
    "notification",
};

bool webhooks_event_valid(const char *pattern)
{
	for (size_t i = 0; i < sizeof(event_patterns) / sizeof(event_patterns[0]); i++) {
		if (strcmp(pattern, event_patterns[i]) == 0)
			return true;
	}
	return false;
}

static bool pattern_matches(const char *pattern, size_t len, const char *type)
{
	if (len == 1 && pattern[0] == '*')
		return true;
	if (len >= 2 && pattern[len - 1] == '*' && pattern[len - 2] == '.')
		return strncmp(pattern, type, len - 1) == 0;
	return strlen(type) == len && strncmp(pattern, type, len) == 0;
}

bool webhooks_event_matches(const char *patterns, const char *type)
{
	const char *p = patterns;
	while (*p != '\0') {
		size_t len = strcspn(p, ",");
		if (len > 0 && pattern_matches(p, len, type))
			return true;
		p += len;
		if (*p == ',')
			p++;
	}
	return false;
}

static const char *org_suffix(const char *org_id)
{
	const char *u = strchr(org_id, '_');
	return u != NULL ? u + 1 : org_id;
}

void webhooks_event_id(const char *org_id, int64_t seq, char *out, size_t size)
{
	snprintf(out, size, "evt_%s_%" PRId64, org_suffix(org_id), seq);
}

int webhooks_event_seq(const char *org_id, const char *id, int64_t *seq_r)
{
	const char *suffix = org_suffix(org_id);
	size_t n = strlen(suffix);
	if (strncmp(id, "evt_", 4) != 0 || strncmp(id + 4, suffix, n) != 0 || id[4 + n] != '_')
		return -1;
	const char *digits = id + 5 + n;
	if (*digits < '1' || *digits > '9' || strlen(digits) > 18)
		return -1;
	int64_t seq = 0;
	for (const char *c = digits; *c != '\0'; c++) {
		if (*c < '0' || *c > '9')
			return -1;
		seq = seq * 10 + (*c - '0');
	}
	*seq_r = seq;
	return 0;
}

static void rfc3339(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void webhooks_seal_context(const char *id, char out[MT_SEAL_CONTEXT_MAX])
{
	snprintf(out, MT_SEAL_CONTEXT_MAX, "webhook:%s", id);
}

/* ---- delivery ---- */

static void run_next(struct run *r);
static void run_load(struct run *r);

static void run_free(struct run *r)
{
	struct webhooks *w = r->w;
	if (r->prev != NULL)
		r->prev->next = r->next;
	else if (w->runs == r)
		w->runs = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	mt_secret_free(&r->secret);
	if (r->loaded)
		store_webhook_pending_free(&r->pending);
	free(r->body);
	free(r);
}

static int record_job(struct store_tx *tx, void *arg)
{
	struct run *r = arg;
	return store_webhook_record(tx, &r->result);
}

static void record_done(void *arg, int rc)
{
	struct run *r = arg;
	r->in_job = false;
	if (r->w->stopped) {
		run_free(r);
		return;
	}
	if (rc != 0) {
		/* The lease went to another node, or the store failed: that node (or the next
		 * claim) goes on from the committed cursor. */
		mt_log(rc == STORE_CONFLICT ? MT_LOG_INFO : MT_LOG_ERROR, "webhook.record_failed",
		       MT_KV("webhook", r->hook.id));
		run_free(r);
		return;
	}
	r->cursor = r->result.cursor;
	r->hook.attempts = r->result.attempts;
	if (r->end_after) {
		run_free(r);
		return;
	}
	if (r->reload_after) {
		run_load(r);
		return;
	}
	run_next(r);
}

static void run_record(struct run *r)
{
	struct webhooks *w = r->w;
	r->result.webhook_id = r->hook.id;
	r->result.owner = w->node_id;
	r->in_job = true;
	if (store_submit(w->p.store, STORE_WRITE, record_job, record_done, r) < 0) {
		r->in_job = false;
		mt_log(MT_LOG_WARN, "webhook.store_busy", MT_KV("webhook", r->hook.id));
		run_free(r);
	}
}

static void post_done(void *ctx, int status, const char *error)
{
	struct run *r = ctx;
	struct webhooks *w = r->w;
	int64_t now_ms = mt_wall_ms();
	bool ok = status >= 200 && status <= 299;
	memset(&r->result, 0, sizeof(r->result));
	r->result.event_id = r->event_id;
	r->result.type = r->type;
	r->result.last_status = status;
	r->result.duration_ms = now_ms - r->started_ms;
	r->result.attempt = r->hook.attempts + 1;
	r->end_after = false;
	r->reload_after = false;
	if (ok)
		r->error[0] = '\0';
	else if (error[0] != '\0')
		mt_strlcpy(r->error, error, sizeof(r->error));
	else
		snprintf(r->error, sizeof(r->error), "the receiver answered HTTP %d", status);
	r->result.last_error = r->error;
	free(r->body);
	r->body = NULL;
	if (ok || now_ms / 1000 >= r->event_at + MT_WEBHOOK_RETRY_S) {
		/* Delivered, or out of time: either way the cursor passes it. */
		r->result.cursor = r->seq;
		r->result.attempts = 0;
		r->result.next_attempt_at = 0;
		r->result.lease_expires = now_ms + MT_WEBHOOK_LEASE_MS;
		r->result.outcome = ok ? "delivered" : "failed";
		r->scan = r->seq;
		if (!ok)
			mt_log(MT_LOG_WARN, "webhook.event_failed", MT_KV("webhook", r->hook.id),
			       MT_KV("event", r->event_id));
	} else {
		/* Head-of-line: nothing after it goes before it does. The lease is let go; the
		 * next claim after the back-off (any node's) starts from here. */
		unsigned attempts = (unsigned)r->hook.attempts + 1;
		r->result.cursor = r->seq - 1;
		r->result.attempts = (int)attempts;
		r->result.next_attempt_at =
		    now_ms + webhooks_backoff_ms(attempts, randombytes_random());
		r->result.lease_expires = 0;
		r->result.outcome = "retrying";
		r->end_after = true;
		char st[16];
		snprintf(st, sizeof(st), "%d", status);
		mt_log(MT_LOG_INFO, "webhook.retry", MT_KV("webhook", r->hook.id),
		       MT_KV("event", r->event_id), MT_KV("status", st));
	}
	(void)w;
	run_record(r);
}

/* The JSON body of the event at `seq`: {id, type, created_at, data}. */
static char *event_body(struct run *r, json_t *data)
{
	char at[32];
	rfc3339(r->event_at, at);
	json_t *body = json_pack("{s:s,s:s,s:s,s:o}", "id", r->event_id, "type", r->type,
	                         "created_at", at, "data", data != NULL ? data : json_object());
	char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	return text;
}

/* Finishes the run's pass over what was loaded: the cursor moves over what was passed over;
 * when the load held everything up to the feed's head, the cursor goes there and the run ends
 * (the lease let go), else the next page is loaded. */
static void run_pass_done(struct run *r)
{
	memset(&r->result, 0, sizeof(r->result));
	bool complete = r->pending.complete;
	int64_t cursor = complete && r->pending.head > r->scan ? r->pending.head : r->scan;
	if (cursor < r->cursor)
		cursor = r->cursor;
	r->result.cursor = cursor;
	r->result.attempts = 0;
	r->result.next_attempt_at = 0;
	r->result.lease_expires = complete ? 0 : mt_wall_ms() + MT_WEBHOOK_LEASE_MS;
	r->result.last_status = r->hook.last_status;
	r->result.last_error = r->error;
	r->end_after = complete;
	r->reload_after = !complete;
	run_record(r);
}

static void run_next(struct run *r)
{
	struct webhooks *w = r->w;
	struct store_webhook_pending *p = &r->pending;
	for (;;) {
		const struct store_activity *a =
		    r->ai < p->activities.count ? &p->activities.items[r->ai] : NULL;
		const struct store_webhook_event *e =
		    r->ei < p->event_count ? &p->events[r->ei] : NULL;
		if (a != NULL && a->seq > r->bound)
			a = NULL;
		if (e != NULL && e->seq > r->bound)
			e = NULL;
		if (a == NULL && e == NULL) {
			run_pass_done(r);
			return;
		}
		json_t *data = NULL;
		if (a != NULL && (e == NULL || a->seq < e->seq)) {
			r->ai++;
			r->seq = a->seq;
			mt_strlcpy(r->type,
			           a->created_at == a->updated_at ? "activity.created"
			                                          : "activity.updated",
			           sizeof(r->type));
			r->event_at = a->updated_at;
			if (webhooks_event_matches(r->hook.events, r->type))
				data = w->p.activity_json(a);
		} else {
			r->ei++;
			r->seq = e->seq;
			mt_strlcpy(r->type, e->type, sizeof(r->type));
			r->event_at = e->created_at;
			if (webhooks_event_matches(r->hook.events, r->type))
				data = json_loads(e->payload, 0, NULL);
		}
		if (data == NULL) {
			r->scan = r->seq; /* not subscribed: passed over */
			continue;
		}
		webhooks_event_id(r->hook.org_id, r->seq, r->event_id, sizeof(r->event_id));
		r->body = event_body(r, data);
		if (r->body == NULL) {
			mt_log(MT_LOG_ERROR, "webhook.body_failed", MT_KV("webhook", r->hook.id));
			r->scan = r->seq;
			continue;
		}
		break;
	}
	char signature[WEBHOOK_SIGNATURE_MAX];
	size_t len = strlen(r->body);
	webhook_sign(mt_secret_bytes(r->secret), mt_secret_len(r->secret), mt_wall_s(), r->body,
	             len, signature);
	const struct webhook_post post = {
	    .url = r->hook.url,
	    .body = r->body,
	    .body_len = len,
	    .signature = signature,
	    .event_id = r->event_id,
	    .allow_http = r->allow_http,
	    .allow_private = mt_config_cidrs(w->p.config, "allow_private_hosts"),
	    .ca_file = mt_config_str(w->p.config, "ca_file"),
	};
	r->started_ms = mt_wall_ms();
	const char *error = NULL;
	if (webhook_client_post(w->client, &post, post_done, r, &error) < 0) {
		/* A URL the client refuses now (a webhook_http_hosts entry removed since): the same
		 * as a failed attempt, retried with back-off until the operator or the org fixes
		 * it or the event runs out of time. */
		char text[MT_ERROR_TEXT_MAX];
		snprintf(text, sizeof(text), "the delivery cannot start: %s", error);
		post_done(r, 0, text);
	}
}

static int load_job(struct store_tx *tx, void *arg)
{
	struct run *r = arg;
	if (r->loaded)
		store_webhook_pending_free(&r->pending);
	r->loaded = true;
	return store_webhook_pending(tx, r->hook.org_id, r->cursor, MT_WEBHOOK_BATCH, &r->pending);
}

static void load_done(void *arg, int rc)
{
	struct run *r = arg;
	r->in_job = false;
	if (r->w->stopped || rc != 0) {
		if (rc != 0 && !r->w->stopped)
			mt_log(MT_LOG_ERROR, "webhook.load_failed", MT_KV("webhook", r->hook.id));
		run_free(r);
		return;
	}
	r->ai = r->ei = 0;
	r->scan = r->cursor;
	const struct store_webhook_pending *p = &r->pending;
	r->bound = INT64_MAX;
	if (p->activities.count >= MT_WEBHOOK_BATCH)
		r->bound = p->activities.items[p->activities.count - 1].seq;
	if (p->event_count >= MT_WEBHOOK_BATCH && p->events[p->event_count - 1].seq < r->bound)
		r->bound = p->events[p->event_count - 1].seq;
	run_next(r);
}

static void run_load(struct run *r)
{
	r->in_job = true;
	if (store_submit(r->w->p.store, STORE_READ, load_job, load_done, r) < 0) {
		r->in_job = false;
		run_free(r);
	}
}

static void run_start(struct webhooks *w, const struct store_webhook *hook)
{
	for (struct run *x = w->runs; x != NULL; x = x->next) {
		if (strcmp(x->hook.id, hook->id) == 0)
			return; /* already ours and running: the claim only renewed its lease */
	}
	struct run *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return;
	r->w = w;
	r->hook = *hook;
	r->cursor = hook->cursor;
	r->next = w->runs;
	if (w->runs != NULL)
		w->runs->prev = r;
	w->runs = r;
	char context[MT_SEAL_CONTEXT_MAX];
	webhooks_seal_context(hook->id, context);
	const char *error = NULL;
	r->secret =
	    mt_unseal(w->p.keyring, context, hook->sealed_secret, hook->sealed_secret_len, &error);
	if (r->secret == NULL) {
		mt_log(MT_LOG_ERROR, "webhook.unseal_failed", MT_KV("webhook", hook->id),
		       MT_KV("error", error));
		run_free(r);
		return;
	}
	char host[MT_HOSTNAME_MAX + 1];
	bool https = true;
	if (webhook_url_host(hook->url, host, sizeof(host), &https) == 0 && !https)
		r->allow_http =
		    mt_config_host_listed(w->p.config, "webhook_http_hosts", host, NULL);
	run_load(r);
}

struct claim_job {
	struct webhooks *w;
	int64_t now;
	bool due;
	struct store_webhook rows[CLAIM_MAX];
	size_t count;
};

static int claim_job(struct store_tx *tx, void *arg)
{
	struct claim_job *c = arg;
	c->count = 0;
	return store_webhook_claim(tx, c->w->node_id, c->now, MT_WEBHOOK_LEASE_MS, c->rows,
	                           CLAIM_MAX, &c->count);
}

static int due_job(struct store_tx *tx, void *arg)
{
	struct claim_job *c = arg;
	return store_webhook_due(tx, c->w->node_id, c->now, &c->due);
}

static void claim_done(void *arg, int rc);

/* Something is due: claim it (a write), else the poll is over. */
static void due_done(void *arg, int rc)
{
	struct claim_job *c = arg;
	struct webhooks *w = c->w;
	if (w->stopped || rc != 0 || !c->due ||
	    store_submit(w->p.store, STORE_WRITE | STORE_REPLAYABLE, claim_job, claim_done, c) <
	        0) {
		w->claiming = false;
		free(c);
	}
}

static void claim_done(void *arg, int rc)
{
	struct claim_job *c = arg;
	struct webhooks *w = c->w;
	w->claiming = false;
	if (!w->stopped && rc == 0) {
		for (size_t i = 0; i < c->count; i++)
			run_start(w, &c->rows[i]);
	}
	free(c);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct webhooks *w = arg;
	if (w->claiming || w->stopped)
		return;
	struct claim_job *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return;
	c->w = w;
	c->now = mt_wall_ms();
	w->claiming = true;
	if (store_submit(w->p.store, STORE_READ, due_job, due_done, c) < 0) {
		w->claiming = false;
		free(c);
	}
}

struct webhooks *webhooks_new(const struct webhooks_params *params, const char **error_r)
{
	struct webhooks *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	w->p = *params;
	mt_strlcpy(w->node_id, params->node_id, sizeof(w->node_id));
	if ((w->client = webhook_client_new(params->base, error_r)) == NULL) {
		free(w);
		return NULL;
	}
	w->poll = event_new(params->base, -1, EV_PERSIST, on_poll, w);
	if (w->poll == NULL) {
		webhook_client_free(&w->client);
		free(w);
		*error_r = "out of memory";
		return NULL;
	}
	return w;
}

int webhooks_start(struct webhooks *w)
{
	struct timeval tv = {MT_WEBHOOK_POLL_MS / 1000, (MT_WEBHOOK_POLL_MS % 1000) * 1000};
	return event_add(w->poll, &tv);
}

void webhooks_stop(struct webhooks *w)
{
	if (w == NULL || w->stopped)
		return;
	w->stopped = true;
	event_del(w->poll);
	/* Ends the POSTs in flight without their callbacks: their runs are freed here, the
	 * others when their store job completes. */
	webhook_client_free(&w->client);
	struct run *r = w->runs;
	while (r != NULL) {
		struct run *next = r->next;
		if (!r->in_job)
			run_free(r);
		r = next;
	}
}

void webhooks_free(struct webhooks **webhooks)
{
	struct webhooks *w = *webhooks;
	if (w == NULL)
		return;
	webhooks_stop(w);
	while (w->runs != NULL)
		run_free(w->runs);
	event_free(w->poll);
	free(w);
	*webhooks = NULL;
}
