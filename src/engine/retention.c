#include "engine/retention.h"

#include "lib/log.h"
#include "store/store.h"
#include "store/store_activity.h"
#include "store/store_message.h"
#include "store/store_outbox.h"
#include "store/store_webhook.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define RETENTION_INTERVAL_S 3600

struct retention {
	struct store *store;
	struct event *timer;
	int64_t record_days, outbox_days;
	int64_t records_before, bodies_before;
	size_t deleted, purged, tombstones, webhook_rows;
	bool running;
	bool stopped; /* freed while a job runs: the job's completion frees it */
};

static int purge_run(struct store_tx *tx, void *arg)
{
	struct retention *r = arg;
	int rc = store_messages_purge(tx, r->records_before, &r->deleted);
	if (rc == 0)
		rc = store_tombstones_purge(tx, r->records_before, &r->tombstones);
	if (rc == 0)
		rc = store_outbox_purge_bodies(tx, r->bodies_before, &r->purged);
	/* Webhook events and the delivery log: a week, for replays and the log's readers. */
	return rc != 0 ? rc
	               : store_webhook_purge(tx, (int64_t)time(NULL) - MT_WEBHOOK_RETENTION_S,
	                                     &r->webhook_rows);
}

static void purge_done(void *arg, int result)
{
	struct retention *r = arg;
	r->running = false;
	if (r->stopped) {
		free(r);
		return;
	}
	char deleted[32], purged[32], tombstones[32], webhook_rows[32];
	snprintf(deleted, sizeof(deleted), "%zu", r->deleted);
	snprintf(purged, sizeof(purged), "%zu", r->purged);
	snprintf(tombstones, sizeof(tombstones), "%zu", r->tombstones);
	snprintf(webhook_rows, sizeof(webhook_rows), "%zu", r->webhook_rows);
	mt_log(result == 0 ? MT_LOG_INFO : MT_LOG_ERROR, "maintenance.purged",
	       MT_KV("records", deleted), MT_KV("tombstones", tombstones), MT_KV("bodies", purged),
	       MT_KV("webhook_rows", webhook_rows), MT_KV("result", result == 0 ? "ok" : "failed"));
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct retention *r = arg;
	if (!r->running) {
		int64_t now = (int64_t)time(NULL);
		r->records_before = now - r->record_days * 86400;
		r->bodies_before = now - r->outbox_days * 86400;
		r->deleted = r->purged = r->tombstones = 0;
		r->running = store_submit(r->store, STORE_WRITE, purge_run, purge_done, r) == 0;
	}
	struct timeval tv = {RETENTION_INTERVAL_S, 0};
	evtimer_add(r->timer, &tv);
}

struct retention *retention_start(struct event_base *base, struct store *store, int64_t record_days,
                                  int64_t outbox_days, int first_s)
{
	struct retention *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->store = store;
	r->record_days = record_days;
	r->outbox_days = outbox_days;
	r->timer = evtimer_new(base, on_timer, r);
	if (r->timer == NULL) {
		free(r);
		return NULL;
	}
	struct timeval first = {first_s, 0};
	evtimer_add(r->timer, &first);
	return r;
}

void retention_free(struct retention **retention)
{
	struct retention *r = *retention;
	if (r == NULL)
		return;
	*retention = NULL;
	event_free(r->timer);
	if (r->running)
		r->stopped = true;
	else
		free(r);
}
