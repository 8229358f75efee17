/* Webhooks (docs/webhooks.md): an org's subscriptions and their delivery.
 *
 * What is sent: the org's feed after the webhook's cursor — activities (activity.created /
 * activity.updated, read from the feed itself) and the events the store writes beside them in
 * the same transactions (message.sent|partial|failed|cancelled, account.connected|disconnected,
 * notification; store/store_webhook.h). The feed stays the source of truth.
 *
 * How: one delivery at a time per webhook, in feed order (head-of-line), so a later event of
 * an object never overtakes an earlier one. A POST answered 2xx moves the cursor; anything
 * else is retried with exponential back-off (webhooks_backoff_ms) until MT_WEBHOOK_RETRY_S
 * after the event, then logged as failed and passed over. A node works on a webhook under a
 * lease (MT_WEBHOOK_LEASE_MS, renewed by every delivery recorded; the owner is DATA/node.id, so
 * a restarted node takes its own leases back at once), and the cursor only moves under it.
 * Deliveries are at least once: a crash between the receiver's 2xx and the commit sends the
 * event again with the same id.
 *
 * Ownership: the engine borrows everything in its params for its lifetime; results handed to
 * `done` callbacks are valid during the call only. */
#ifndef MT_ENGINE_WEBHOOKS_H
#define MT_ENGINE_WEBHOOKS_H

#include "engine/crud.h"
#include "lib/limits.h"
#include "store/store_webhook.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evdns_base;
struct mt_config;
struct mt_keyring;
struct store;
struct store_activity;
struct webhooks;

struct webhooks_params {
	struct event_base *base;
	struct evdns_base *dns;
	struct store *store;
	const struct mt_keyring *keyring;
	const struct mt_config *config; /* allow_private_hosts, webhook_http_hosts, ca_file */
	const char *node_id;
	/* An activity as the API shows it (http/api.h api_activity_json): the `data` of its
	 * events, the same JSON as GET /v1/activities. */
	json_t *(*activity_json)(const struct store_activity *activity);
};

struct webhooks *webhooks_new(const struct webhooks_params *params, const char **error_r);
/* Starts polling for due webhooks. */
int webhooks_start(struct webhooks *webhooks);
/* Stops starting deliveries and drops those in flight (before store_close). */
void webhooks_stop(struct webhooks *webhooks);
/* After store_close: the store's completions may still reach the engine until then. */
void webhooks_free(struct webhooks **webhooks);

/* ---- the API's requests; `done` is called once, on the loop ---- */

struct webhooks_result {
	struct crud_outcome outcome;
	const struct store_webhook *webhook; /* create, get */
	const char *secret;                  /* create only: shown once */
	const struct store_webhook *list;    /* list */
	size_t count;
	const struct store_webhook_delivery_list *deliveries;
};
typedef void webhooks_done_fn(void *ctx, const struct webhooks_result *result);

/* `events`: patterns (webhooks_event_valid). The URL's host must pass the SSRF rule
 * (engine/host_policy.h) and be https unless listed in webhook_http_hosts: CRUD_INVALID with
 * the reason otherwise. */
void webhooks_create(struct webhooks *webhooks, const char *org_id, const char *url,
                     const char *const *events, size_t event_count, webhooks_done_fn *done,
                     void *ctx);
void webhooks_list(struct webhooks *webhooks, const char *org_id, webhooks_done_fn *done,
                   void *ctx);
void webhooks_get(struct webhooks *webhooks, const char *org_id, const char *id,
                  webhooks_done_fn *done, void *ctx);
void webhooks_delete(struct webhooks *webhooks, const char *org_id, const char *id,
                     webhooks_done_fn *done, void *ctx);
void webhooks_deliveries(struct webhooks *webhooks, const char *org_id, const char *id,
                         const char *cursor, size_t limit, webhooks_done_fn *done, void *ctx);
/* Delivers again from event `since_event` (an id a delivery carried) onwards, or, without
 * one, retries now whatever is waiting for its back-off. */
void webhooks_replay(struct webhooks *webhooks, const char *org_id, const char *id,
                     const char *since_event, webhooks_done_fn *done, void *ctx);

/* ---- pure, for tests ---- */

/* The wait before retry number `attempt` (1-based): MT_WEBHOOK_BACKOFF_MIN_MS doubled per
 * attempt, capped at MT_WEBHOOK_BACKOFF_MAX_MS, times a jitter factor in [0.8, 1.2] taken from
 * `random`. */
int64_t webhooks_backoff_ms(unsigned attempt, uint32_t random);
/* A pattern a webhook may subscribe with: "activity.*", "message.*", "account.*", one of their
 * types, "notification" or "*". */
bool webhooks_event_valid(const char *pattern);
/* Whether event `type` matches one of `patterns` (comma-separated). */
bool webhooks_event_matches(const char *patterns, const char *type);
/* The event id of feed position `seq` of org `org_id` ("evt_<org>_<seq>"), and back: -1 when
 * `id` is not one of the org's. */
void webhooks_event_id(const char *org_id, int64_t seq, char *out, size_t size);
int webhooks_event_seq(const char *org_id, const char *id, int64_t *seq_r);

#endif
