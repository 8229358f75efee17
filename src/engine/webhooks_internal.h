/* What engine/webhooks.c (the pure rules, delivery, the life cycle) and engine/webhooks_api.c
 * (the API's requests) share: the engine's struct and the seal context of a webhook's secret,
 * which both must spell the same for a secret sealed at create to open at delivery. Nothing
 * else includes this; the API is engine/webhooks.h.
 *
 * Ownership: the engine is made and freed by webhooks.c (webhooks_new, webhooks_free); the
 * API's requests only borrow it and its params. */
#ifndef MT_ENGINE_WEBHOOKS_INTERNAL_H
#define MT_ENGINE_WEBHOOKS_INTERNAL_H

#include "engine/webhooks.h"
#include "lib/limits.h"

#include <stdbool.h>

struct event;
struct run;
struct webhook_client;

struct webhooks {
	struct webhooks_params p;
	char node_id[MT_ID_MAX];
	struct webhook_client *client;
	struct event *poll;
	bool claiming;
	bool stopped;
	struct run *runs;
};

/* The context a webhook's secret is sealed under: the webhook's id binds the sealed bytes to
 * their row. */
void webhooks_seal_context(const char *id, char out[MT_SEAL_CONTEXT_MAX]);

#endif
