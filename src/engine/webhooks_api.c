/* The API's requests on an org's webhooks (see engine/webhooks.h): create (the URL checked
 * against the SSRF rule, the secret made and sealed), list, get, delete, the delivery log and
 * replay, each one store job answered through its `done` callback. Delivery itself is
 * engine/webhooks.c's; what the two share is in engine/webhooks_internal.h. */
#include "engine/webhooks.h"
#include "engine/webhooks_internal.h"
#include "engine/host_policy.h"

#include "config/config.h"
#include "crypto/seal.h"
#include "lib/str.h"
#include "store/store.h"
#include "webhook/client.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct request {
	struct webhooks *w;
	webhooks_done_fn *done;
	void *ctx;
	int op;
	char org_id[MT_ID_MAX];
	char id[MT_ID_MAX];
	char cursor[MT_CURSOR_MAX];
	size_t limit;
	int64_t seq;
	struct store_webhook hook;
	struct store_webhook *list;
	size_t count;
	struct store_webhook_delivery_list deliveries;
	char secret[8 + 2 * MT_WEBHOOK_SECRET_BYTES + 1];
	int rc;
};

enum { OP_CREATE, OP_LIST, OP_GET, OP_DELETE, OP_DELIVERIES, OP_REPLAY };

static void request_reply(struct request *q, const struct crud_outcome *outcome)
{
	struct webhooks_result result = {.outcome = *outcome};
	if (outcome->verdict == CRUD_OK) {
		result.webhook = &q->hook;
		result.secret = q->op == OP_CREATE ? q->secret : NULL;
		result.list = q->list;
		result.count = q->count;
		result.deliveries = &q->deliveries;
	}
	q->done(q->ctx, &result);
	sodium_memzero(q->secret, sizeof(q->secret));
	store_webhook_delivery_list_free(&q->deliveries);
	free(q->list);
	free(q);
}

static void request_fail(struct request *q, enum crud_verdict verdict, const char *reason)
{
	struct crud_outcome outcome = {0};
	crud_set(&outcome, verdict, "%s", reason);
	request_reply(q, &outcome);
}

static int request_job(struct store_tx *tx, void *arg)
{
	struct request *q = arg;
	switch (q->op) {
	case OP_CREATE:
		return store_webhook_create(tx, &q->hook);
	case OP_LIST:
		q->count = 0;
		return store_webhook_list(tx, q->org_id, q->list, &q->count);
	case OP_GET:
		return store_webhook_get(tx, q->org_id, q->id, &q->hook);
	case OP_DELETE:
		return store_webhook_delete(tx, q->org_id, q->id);
	case OP_DELIVERIES:
		store_webhook_delivery_list_free(&q->deliveries);
		return store_webhook_deliveries(tx, q->org_id, q->id, q->cursor, q->limit,
		                                &q->deliveries);
	case OP_REPLAY: {
		int rc = store_webhook_replay(tx, q->org_id, q->id, q->seq);
		return rc != 0 ? rc : store_webhook_get(tx, q->org_id, q->id, &q->hook);
	}
	}
	return -1;
}

static void request_done(void *arg, int rc)
{
	struct request *q = arg;
	struct crud_outcome outcome = {0};
	if (q->op == OP_CREATE && rc == STORE_CONFLICT)
		crud_set(&outcome, CRUD_REFUSED, "the org has %d webhooks, the most it may have",
		         MT_WEBHOOKS_PER_ORG);
	else if (q->op == OP_REPLAY && rc == STORE_INVALID)
		crud_set(&outcome, CRUD_INVALID, "since_event is past the feed's last event");
	else
		crud_from_store(&outcome, rc);
	request_reply(q, &outcome);
}

static void request_submit(struct request *q, enum store_job_kind kind)
{
	if (store_submit(q->w->p.store, kind, request_job, request_done, q) < 0)
		request_fail(q, CRUD_BUSY, "the store is busy");
}

static struct request *request_new(struct webhooks *w, int op, const char *org_id, const char *id,
                                   webhooks_done_fn *done, void *ctx)
{
	struct request *q = calloc(1, sizeof(*q));
	if (q == NULL) {
		struct webhooks_result result = {0};
		crud_set(&result.outcome, CRUD_FAILED, "out of memory");
		done(ctx, &result);
		return NULL;
	}
	q->w = w;
	q->op = op;
	q->done = done;
	q->ctx = ctx;
	mt_strlcpy(q->org_id, org_id, sizeof(q->org_id));
	if (id != NULL && strlen(id) >= sizeof(q->id)) {
		request_fail(q, CRUD_NOT_FOUND, "webhook");
		return NULL;
	}
	if (id != NULL)
		mt_strlcpy(q->id, id, sizeof(q->id));
	return q;
}

static void create_checked(void *ctx, enum host_verdict verdict, const char *reason)
{
	struct request *q = ctx;
	if (verdict != HOST_ALLOWED) {
		request_fail(q, CRUD_INVALID, reason);
		return;
	}
	/* The secret: what the receiver keys its HMAC with, exactly as shown. */
	unsigned char raw[MT_WEBHOOK_SECRET_BYTES];
	randombytes_buf(raw, sizeof(raw));
	memcpy(q->secret, "whsec_", 6);
	sodium_bin2hex(q->secret + 6, sizeof(q->secret) - 6, raw, sizeof(raw));
	sodium_memzero(raw, sizeof(raw));
	store_new_id("whk", q->hook.id);
	char context[MT_SEAL_CONTEXT_MAX];
	webhooks_seal_context(q->hook.id, context);
	if (mt_seal(q->w->p.keyring, context, (const unsigned char *)q->secret, strlen(q->secret),
	            q->hook.sealed_secret, sizeof(q->hook.sealed_secret),
	            &q->hook.sealed_secret_len) < 0) {
		request_fail(q, CRUD_FAILED, "cannot seal the secret");
		return;
	}
	request_submit(q, STORE_WRITE_DURABLE);
}

void webhooks_create(struct webhooks *w, const char *org_id, const char *url,
                     const char *const *events, size_t event_count, webhooks_done_fn *done,
                     void *ctx)
{
	struct request *q = request_new(w, OP_CREATE, org_id, NULL, done, ctx);
	if (q == NULL)
		return;
	struct store_webhook *h = &q->hook;
	mt_strlcpy(h->org_id, org_id, sizeof(h->org_id));
	if (event_count == 0 || event_count > MT_WEBHOOK_EVENTS_MAX) {
		request_fail(q, CRUD_INVALID, "events: one to 8 event patterns are required");
		return;
	}
	size_t len = 0;
	for (size_t i = 0; i < event_count; i++) {
		if (!webhooks_event_valid(events[i])) {
			char reason[MT_ERROR_TEXT_MAX];
			snprintf(reason, sizeof(reason),
			         "events: '%.40s' is not one of activity.*, message.*, account.*, "
			         "notification, * or one of their types",
			         events[i]);
			request_fail(q, CRUD_INVALID, reason);
			return;
		}
		len += (size_t)snprintf(h->events + len, sizeof(h->events) - len, "%s%s",
		                        i > 0 ? "," : "", events[i]);
	}
	char host[MT_HOSTNAME_MAX + 1];
	bool https = false;
	if (url == NULL || strlen(url) > MT_WEBHOOK_URL_MAX ||
	    webhook_url_host(url, host, sizeof(host), &https) < 0 || !host_name_valid(host)) {
		request_fail(
		    q, CRUD_INVALID,
		    "url: an absolute https:// URL with a host name or address is required");
		return;
	}
	if (!https && !mt_config_host_listed(w->p.config, "webhook_http_hosts", host, NULL)) {
		request_fail(q, CRUD_INVALID,
		             "url: webhooks are sent over https:// (plain http only to hosts the "
		             "operator lists in webhook_http_hosts)");
		return;
	}
	mt_strlcpy(h->url, url, sizeof(h->url));
	host_policy_check(w->p.base, w->p.dns, host,
	                  mt_config_cidrs(w->p.config, "allow_private_hosts"), create_checked, q);
}

void webhooks_list(struct webhooks *w, const char *org_id, webhooks_done_fn *done, void *ctx)
{
	struct request *q = request_new(w, OP_LIST, org_id, NULL, done, ctx);
	if (q == NULL)
		return;
	q->list = calloc(MT_WEBHOOKS_PER_ORG, sizeof(*q->list));
	if (q->list == NULL) {
		request_fail(q, CRUD_FAILED, "out of memory");
		return;
	}
	request_submit(q, STORE_READ);
}

void webhooks_get(struct webhooks *w, const char *org_id, const char *id, webhooks_done_fn *done,
                  void *ctx)
{
	struct request *q = request_new(w, OP_GET, org_id, id, done, ctx);
	if (q != NULL)
		request_submit(q, STORE_READ);
}

void webhooks_delete(struct webhooks *w, const char *org_id, const char *id, webhooks_done_fn *done,
                     void *ctx)
{
	struct request *q = request_new(w, OP_DELETE, org_id, id, done, ctx);
	if (q != NULL)
		request_submit(q, STORE_WRITE_DURABLE);
}

void webhooks_deliveries(struct webhooks *w, const char *org_id, const char *id, const char *cursor,
                         size_t limit, webhooks_done_fn *done, void *ctx)
{
	struct request *q = request_new(w, OP_DELIVERIES, org_id, id, done, ctx);
	if (q == NULL)
		return;
	if (cursor != NULL && strlen(cursor) >= sizeof(q->cursor)) {
		request_fail(q, CRUD_BAD_CURSOR, "cursor");
		return;
	}
	mt_strlcpy(q->cursor, cursor != NULL ? cursor : "", sizeof(q->cursor));
	q->limit = limit > 0 ? limit : MT_LIST_LIMIT_DEFAULT;
	request_submit(q, STORE_READ);
}

void webhooks_replay(struct webhooks *w, const char *org_id, const char *id,
                     const char *since_event, webhooks_done_fn *done, void *ctx)
{
	struct request *q = request_new(w, OP_REPLAY, org_id, id, done, ctx);
	if (q == NULL)
		return;
	if (since_event != NULL && webhooks_event_seq(org_id, since_event, &q->seq) < 0) {
		request_fail(q, CRUD_INVALID, "since_event: not an event id of this org");
		return;
	}
	request_submit(q, STORE_WRITE_DURABLE);
}
