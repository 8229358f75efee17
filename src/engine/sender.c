#include "engine/sender_internal.h"
#include "engine/oauth_broker.h"

#include "engine/outbox_lease.h"
#include "engine/outbox_policy.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/str.h"
#include "store/store.h"
#include "store/store_outbox.h"
#include "store/store_smtp.h"
#include "work/work.h"

#include <event2/event.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_INTERVAL_MS         1000
#define DEFAULT_LEASE_S          900
#define DEFAULT_RETRY_S          60
#define DEFAULT_THROTTLE_PAUSE_S 60
#define STATS_INTERVAL_S         10

/* What the bodies budget holds now, for /metrics (and the hostile-client tests): loaded or
 * loading, not the room held for a claim in flight (what it brings is counted when it is back). */
void sender_publish_body_bytes(const struct sender *sender)
{
	mt_metric_set_gauge("mailtrail_sender_body_bytes",
	                    "Message bodies the sender holds in memory, node-wide", NULL, NULL,
	                    NULL, NULL, (double)(sender->body_bytes - sender->claim_reserved));
}

int64_t sender_now(void)
{
	return (int64_t)time(NULL);
}

/* Every store job of the sender ends here; a stopped sender goes when its last job is done. */
bool sender_job_end(struct sender *sender)
{
	sender->jobs--;
	if (sender->stopping && sender->jobs == 0) {
		outbox_finishes_free(&sender->finishes);
		free(sender);
		return true;
	}
	return sender->stopping;
}

void sender_item_free(struct sender *sender, struct item *item)
{
	if (item->all_prev != NULL)
		item->all_prev->all_next = item->all_next;
	else if (sender->all == item)
		sender->all = item->all_next;
	if (item->all_next != NULL)
		item->all_next->all_prev = item->all_prev;
	if (item->reserved > 0) {
		sender->body_bytes -= item->reserved;
		if (item->account != NULL)
			item->account->body_bytes -= item->reserved;
		sender_publish_body_bytes(sender);
	}
	free(item->rcpt_ptrs);
	free(item->results);
	outbox_item_free(&item->o);
	free(item);
}

/* An item leaves: the budgets it held free up for every account waiting on them. */
void sender_item_done(struct sender *sender, struct item *item)
{
	struct account *account = item->account;
	bool had_body = item->reserved > 0;
	sender->held--;
	if (item->fed) {
		account->unrecorded--;
		sender->fed--;
	}
	sender_item_free(sender, item);
	if (sender->stopping)
		return;
	if (had_body) {
		for (struct account *a = sender->accounts; a != NULL; a = a->next)
			if (a != account && a->head != NULL)
				sender_pump(a);
	}
	sender_pump(account);
	if (sender->held - sender->fed < MT_SENDER_CLAIM_AHEAD)
		sender_schedule_poll(sender, 0);
}

static struct item *item_new(struct outbox_item *o)
{
	struct item *item = calloc(1, sizeof(*item));
	if (item == NULL)
		return NULL;
	size_t n = o->msg.rcpt_count;
	item->rcpt_ptrs = calloc(n ? n : 1, sizeof(*item->rcpt_ptrs));
	item->results = calloc(n ? n : 1, sizeof(*item->results));
	if (item->rcpt_ptrs == NULL || item->results == NULL) {
		free(item->rcpt_ptrs);
		free(item->results);
		free(item);
		return NULL;
	}
	item->o = o;
	for (size_t i = 0; i < n; i++)
		item->rcpt_ptrs[i] = o->msg.rcpts[i].address;
	item->smtp.mail_from = o->route.mail_from;
	item->smtp.rcpts = item->rcpt_ptrs;
	item->smtp.rcpt_count = n;
	item->smtp.head = o->head;
	item->smtp.head_len = o->head_len;
	item->smtp.results = item->results;
	item->smtp.user = item;
	return item;
}

/* ---- recalls: a campaign paused or cancelled ---- */

static void given_back(void *arg, int result)
{
	struct item *item = arg;
	struct sender *sender = item->sender;
	if (result == STORE_CONFLICT)
		mt_log(MT_LOG_WARN, "sender.lease_lost", MT_KV("message", item->o->msg.id));
	else if (result != 0) /* the lease runs out and the next claim decides again */
		mt_log(MT_LOG_ERROR, "sender.give_back_failed", MT_KV("message", item->o->msg.id));
	if (sender->stopping) {
		sender_item_free(sender, item);
		sender_job_end(sender);
		return;
	}
	sender_item_done(sender, item);
	sender_job_end(sender);
}

void sender_recall_queued(struct account *account)
{
	struct sender *sender = account->sender;
	struct item *prev = NULL, *next;
	for (struct item *item = account->head; item != NULL; item = next) {
		next = item->next;
		if (!item->recall || item->loading) {
			prev = item;
			continue;
		}
		/* A full store queue: the item stays marked, the next pump tries again. */
		if (outbox_lease_give_back(sender->p.store, item->o, given_back, item) < 0)
			return;
		sender->jobs++;
		item->finishing = true;
		if (prev != NULL)
			prev->next = next;
		else
			account->head = next;
		if (account->tail == item)
			account->tail = prev;
		item->next = NULL;
		account->queued--;
		account->recalls--;
	}
}

void sender_campaign_changed(struct sender *sender, const char *campaign_id)
{
	if (sender == NULL || sender->stopping || campaign_id == NULL || campaign_id[0] == '\0')
		return;
	for (struct account *a = sender->accounts; a != NULL; a = a->next) {
		size_t marked = 0;
		for (struct item *item = a->head; item != NULL; item = item->next) {
			if (!item->recall && strcmp(item->o->msg.campaign_id, campaign_id) == 0) {
				item->recall = true;
				a->recalls++;
				marked++;
			}
		}
		if (marked > 0)
			sender_recall_queued(a);
	}
}

/* ---- claiming ---- */

static struct account *account_for(struct sender *sender, const struct outbox_item *o)
{
	char key[MT_ID_MAX + 8];
	if (o->route.relay)
		snprintf(key, sizeof(key), "relay");
	else
		snprintf(key, sizeof(key), "custom:%s", o->msg.user_id);
	for (struct account *a = sender->accounts; a != NULL; a = a->next)
		if (strcmp(a->key, key) == 0)
			return a;
	struct account *a = calloc(1, sizeof(*a));
	if (a == NULL)
		return NULL;
	a->sender = sender;
	mt_strlcpy(a->key, key, sizeof(a->key));
	a->relay = o->route.relay;
	a->refused_fence = -1;
	a->next = sender->accounts;
	sender->accounts = a;
	return a;
}

static void enqueue_item(struct account *account, struct item *item)
{
	if (account->tail != NULL)
		account->tail->next = item;
	else
		account->head = item;
	account->tail = item;
	account->queued++;
}

/* The route's head fields of a claim's items, written on a worker (GMime) and queued after. */
struct heads {
	struct sender *sender;
	struct item **items;
	size_t count;
};

static bool heads_run(void *arg)
{
	struct heads *h = arg;
	for (size_t i = 0; i < h->count; i++)
		outbox_item_head(h->items[i]->o);
	return true;
}

static void heads_done(void *arg)
{
	struct heads *h = arg;
	struct sender *sender = h->sender;
	for (size_t i = 0; i < h->count; i++) {
		struct item *item = h->items[i];
		item->loading = false;
		if (sender->stopping) {
			sender_item_free(sender, item);
			continue;
		}
		item->smtp.head = item->o->head;
		item->smtp.head_len = item->o->head_len;
		if (!item->o->routable)
			sender_finish_all(sender, item, MT_CLASS_INTERNAL, true, item->o->reason);
		else
			enqueue_item(item->account, item);
	}
	free(h->items);
	free(h);
	if (sender_job_end(sender))
		return;
	for (struct account *a = sender->accounts; a != NULL; a = a->next)
		if (a->head != NULL)
			sender_pump(a);
}

/* Governor holds and waits per window (no per-account labels: the series stay few). */
static void count_holds(const struct outbox_claim *claim)
{
	for (size_t i = 0; i < sizeof(claim->holds) / sizeof(claim->holds[0]); i++) {
		if (claim->holds[i] == 0)
			continue;
		mt_metric_add("mailtrail_governor_holds_total",
		              "Messages held by the send governor, by the window that was full",
		              "window", outbox_hold_name(i), NULL, NULL, (double)claim->holds[i]);
		mt_metric_add("mailtrail_governor_wait_seconds_total",
		              "Time held messages were told to wait for a slot, by window",
		              "window", outbox_hold_name(i), NULL, NULL,
		              (double)claim->hold_wait_ms[i] / 1000.0);
	}
	if (claim->woken > 0)
		mt_metric_add("mailtrail_governor_released_total",
		              "Held messages put back in the queue when a slot freed", NULL, NULL,
		              NULL, NULL, (double)claim->woken);
}

static void claimed(void *ctx, int result, struct outbox_claim *claim)
{
	struct sender *sender = ctx;
	sender->claiming = false;
	sender->body_bytes -= sender->claim_reserved;
	sender->claim_reserved = 0;
	if (sender->stopping) {
		sender_job_end(sender);
		return; /* the claim frees its items; the release job puts them back */
	}
	if (result != 0)
		mt_log(MT_LOG_ERROR, "sender.claim_failed");
	struct heads *heads = NULL;
	for (size_t i = 0; result == 0 && i < claim->count; i++) {
		struct outbox_item *o = claim->items[i];
		/* A message without a route now waits for one under the mail back-off. */
		struct account *account = account_for(sender, o);
		struct item *item = account != NULL ? item_new(o) : NULL;
		if (item == NULL)
			continue; /* the lease expires; claimed again later */
		claim->items[i] = NULL;
		item->sender = sender;
		item->account = account;
		if (o->msg.body != NULL) { /* came with the claim */
			item->loaded = true;
			item->reserved = o->msg.body_len;
			sender->body_bytes += item->reserved;
			account->body_bytes += item->reserved;
			item->smtp.data = o->msg.body;
			item->smtp.data_len = o->msg.body_len;
			item->smtp.data_8bit = o->body_8bit ? SMTP_DATA_8BIT : SMTP_DATA_7BIT;
		}
		item->all_next = sender->all;
		if (sender->all != NULL)
			sender->all->all_prev = item;
		sender->all = item;
		sender->held++;
		if (!o->routable) {
			sender_finish_all(sender, item, MT_CLASS_INTERNAL, false, o->reason);
			continue;
		}
		if (o->never) { /* more recipients than a window allows: it would wait forever */
			sender_finish_all(sender, item, MT_CLASS_INTERNAL, true, o->reason);
			continue;
		}
		if (!account->relay) {
			for (size_t j = 0; j < claim->account_count; j++) {
				if (strcmp(claim->accounts[j].user_id, o->msg.user_id) == 0) {
					account->settings = claim->accounts[j];
					account->settings_loaded = true;
				}
			}
		}
		if (o->msg.head_apart && heads == NULL &&
		    (heads = calloc(1, sizeof(*heads))) != NULL &&
		    (heads->items = calloc(claim->count, sizeof(*heads->items))) == NULL) {
			free(heads);
			heads = NULL;
		}
		if (o->msg.head_apart && heads != NULL) {
			item->loading = true; /* held by the heads job, like a body load */
			heads->items[heads->count++] = item;
			continue;
		}
		if (o->msg.head_apart && outbox_item_head(o) < 0) { /* out of memory: here */
			sender_finish_all(sender, item, MT_CLASS_INTERNAL, true, o->reason);
			continue;
		}
		item->smtp.head = o->head;
		item->smtp.head_len = o->head_len;
		enqueue_item(account, item);
	}
	sender_publish_body_bytes(sender);
	if (heads != NULL) {
		heads->sender = sender;
		sender->jobs++;
		if (work_submit(sender->p.work, heads_run, heads_done, heads) < 0) {
			heads_run(heads); /* the workers are full: write them here */
			heads_done(heads);
		}
	}
	for (struct account *a = sender->accounts; a != NULL; a = a->next)
		if (a->head != NULL)
			sender_pump(a);
	bool full = result == 0 && claim->full;
	int delay = POLL_INTERVAL_MS;
	if (result == 0) {
		count_holds(claim);
		/* Held mail goes as soon as its account's next slot frees. */
		int64_t wait = claim->next_wake_ms - mt_wall_ms();
		if (claim->next_wake_ms > 0 && wait < delay)
			delay = wait > 0 ? (int)wait : 0;
	}
	if (sender_job_end(sender))
		return;
	/* A full page means more is due now. */
	sender_schedule_poll(sender, full ? 0 : delay);
}

static bool has_ready_session(const struct account *account)
{
	for (const struct session *s = account->sessions; s != NULL; s = s->next)
		if (s->ready && !s->quitting)
			return true;
	return false;
}

/* Claims run ahead of the sessions by MT_SENDER_CLAIM_AHEAD messages not yet handed to one, not
 * by all MT_SENDER_HELD_MAX: per message a claim is the store's dearest job, and claims far
 * ahead delay the finishes and body loads queued behind them (bench/send: claiming 5,000 at
 * start-up halved the first second's rate). Messages of accounts without a ready session
 * (connecting, cooling down) do not count: they must not hold back the others'. */
static bool claim_wanted(const struct sender *sender)
{
	if (sender->held - sender->fed < MT_SENDER_CLAIM_AHEAD)
		return true;
	size_t waiting = 0;
	for (const struct account *a = sender->accounts; a != NULL; a = a->next)
		if (has_ready_session(a))
			waiting += a->queued;
	return waiting < MT_SENDER_CLAIM_AHEAD;
}

static void claim(struct sender *sender)
{
	if (sender->claiming || sender->stopping || !sender->started ||
	    sender->held >= MT_SENDER_HELD_MAX || !claim_wanted(sender))
		return;
	size_t max = MT_SENDER_HELD_MAX - sender->held < MT_SENDER_CLAIM_MAX
	                 ? MT_SENDER_HELD_MAX - sender->held
	                 : MT_SENDER_CLAIM_MAX;
	/* The bodies of what goes to an account with a ready session come with the claim (one
	 * store job, not two); the budget they may take is held until the claim is back. */
	struct outbox_preload preload = {0};
	size_t account_max = 0, ready = 0;
	for (struct account *a = sender->accounts; a != NULL; a = a->next) {
		ready += has_ready_session(a) && !a->relay ? 1 : 0;
		if (a->body_bytes > account_max)
			account_max = a->body_bytes;
	}
	const char **users = ready > 0 ? malloc(ready * sizeof(*users)) : NULL;
	for (struct account *a = sender->accounts; a != NULL; a = a->next) {
		if (!has_ready_session(a))
			continue;
		if (a->relay)
			preload.relay = true;
		else if (users != NULL && a->settings_loaded)
			users[preload.user_count++] = a->settings.user_id;
	}
	preload.users = users;
	if (preload.relay || preload.user_count > 0)
		preload.bytes = outbox_body_claim_room(sender->body_bytes, account_max);
	if (preload.bytes > MT_SENDER_CLAIM_BODY_BYTES)
		preload.bytes = MT_SENDER_CLAIM_BODY_BYTES;
	sender->claim_reserved = preload.bytes;
	sender->body_bytes += sender->claim_reserved;
	sender->claiming = true;
	sender->jobs++;
	struct outbox_relay relay = {.configured = sender->p.relay_host != NULL,
	                             .from = sender->p.relay_from,
	                             .limit_count = sender->p.relay_limit_count};
	memcpy(relay.limits, sender->p.relay_limits, sizeof(relay.limits));
	if (outbox_lease_claim(sender->p.store, sender->node_id, mt_wall_ms(), sender->p.lease_s,
	                       max, &preload, &relay, claimed, sender) < 0) {
		sender->claiming = false;
		sender->jobs--;
		sender->body_bytes -= sender->claim_reserved;
		sender->claim_reserved = 0;
	}
	free(users);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sender *sender = arg;
	claim(sender);
	if (!sender->claiming)
		sender_schedule_poll(sender, POLL_INTERVAL_MS);
}

void sender_schedule_poll(struct sender *sender, int ms)
{
	if (sender->stopping)
		return;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	/* An earlier wake-up wins over a pending later one. */
	struct timeval pending;
	if (event_pending(sender->poll, EV_TIMEOUT, &pending) && ms > 0)
		return;
	evtimer_add(sender->poll, &tv);
}

/* ---- leases and metrics ---- */

static void renewed(void *ctx, int result, size_t count)
{
	(void)count;
	struct sender *sender = ctx;
	if (result != 0)
		mt_log(MT_LOG_ERROR, "sender.renew_failed");
	sender_job_end(sender);
}

/* Leases are renewed well before they run out, for every message this node still holds. */
static void on_renew(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sender *sender = arg;
	struct timeval tv = {sender->p.lease_s / 3, 0};
	evtimer_add(sender->renew, &tv);
	if (sender->held == 0)
		return;
	sender->jobs++;
	if (outbox_lease_renew(sender->p.store, sender->node_id, sender_now() + sender->p.lease_s,
	                       renewed, sender) < 0)
		sender->jobs--;
}

static void counted(void *ctx, int result, const int64_t *counts)
{
	struct sender *sender = ctx;
	for (int state = 0; result == 0 && state <= STORE_OUTBOX_CANCELLED; state++)
		mt_metric_set_gauge("mailtrail_outbox_messages", "Outbox messages by state",
		                    "state",
		                    store_outbox_state_name((enum store_outbox_state)state), NULL,
		                    NULL, (double)counts[state]);
	sender_publish_body_bytes(sender);
	sender_job_end(sender);
}

static void on_stats(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sender *sender = arg;
	struct timeval tv = {STATS_INTERVAL_S, 0};
	evtimer_add(sender->stats, &tv);
	sender->jobs++;
	if (outbox_lease_counts(sender->p.store, counted, sender) < 0)
		sender->jobs--;
}

static void released(void *ctx, int result, size_t count)
{
	struct sender *sender = ctx;
	if (!sender->stopping) {
		char text[32];
		snprintf(text, sizeof(text), "%zu", count);
		mt_log(result == 0 ? MT_LOG_INFO : MT_LOG_ERROR, "sender.leases_released",
		       MT_KV("node", sender->node_id), MT_KV("messages", text));
		sender->started = true;
		sender_schedule_poll(sender, 0);
	}
	sender_job_end(sender);
}

/* ---- life cycle ---- */

struct sender *sender_new(const struct sender_params *params, const char **error_r)
{
	struct sender *sender = calloc(1, sizeof(*sender));
	if (sender == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	sender->p = *params;
	if (sender->p.lease_s <= 0)
		sender->p.lease_s = DEFAULT_LEASE_S;
	if (sender->p.sessions_per_account <= 0)
		sender->p.sessions_per_account = 2;
	if (sender->p.max_inflight <= 0)
		sender->p.max_inflight = 100;
	if (sender->p.max_inflight > MT_SMTP_SESSION_QUEUE_MAX)
		sender->p.max_inflight = MT_SMTP_SESSION_QUEUE_MAX;
	if (sender->p.confirm_delay_s <= 0)
		sender->p.confirm_delay_s = 10;
	if (sender->p.relay_user == NULL)
		sender->p.relay_user = "";
	if (sender->p.relay_from == NULL)
		sender->p.relay_from = "";
	if (sender->p.throttle_pause_s <= 0)
		sender->p.throttle_pause_s = DEFAULT_THROTTLE_PAUSE_S;
	if (sender->p.relay_limit_count > MT_SEND_LIMITS_MAX)
		sender->p.relay_limit_count = MT_SEND_LIMITS_MAX;
	sender->backoff.base_delay_s =
	    params->retry_base_s > 0 ? params->retry_base_s : DEFAULT_RETRY_S;
	sender->backoff.max_delay_s = 3600;
	sender->backoff.expiry_s = params->retry_expiry_s > 0 ? params->retry_expiry_s : 24 * 3600;
	mt_strlcpy(sender->node_id, params->node_id, sizeof(sender->node_id));
	sender->poll = evtimer_new(params->base, on_poll, sender);
	sender->renew = evtimer_new(params->base, on_renew, sender);
	sender->stats = evtimer_new(params->base, on_stats, sender);
	sender->finishes = outbox_finishes_new(params->store);
	if (sender->poll == NULL || sender->renew == NULL || sender->stats == NULL ||
	    sender->finishes == NULL) {
		*error_r = "out of memory";
		sender_free(&sender);
		return NULL;
	}
	struct timeval tv = {sender->p.lease_s / 3, 0};
	evtimer_add(sender->renew, &tv);
	struct timeval soon = {1, 0};
	evtimer_add(sender->stats, &soon);
	/* Leases this node held before a restart are ours: take them back at once. */
	sender->jobs++;
	if (outbox_lease_release(sender->p.store, sender->node_id, released, sender) < 0) {
		sender->jobs--;
		*error_r = "the store queue is full";
		sender_free(&sender);
		return NULL;
	}
	return sender;
}

void sender_wake(struct sender *sender)
{
	if (sender != NULL)
		sender_schedule_poll(sender, 0);
}

void sender_free(struct sender **senderp)
{
	struct sender *sender = *senderp;
	if (sender == NULL)
		return;
	*senderp = NULL;
	sender->stopping = true;
	/* The results still gathering go ahead of the release below (which would otherwise take
	 * their leases and make them look lost). One the store refuses is answered at once: the
	 * extra job keeps the sender until the end of this function. */
	sender->jobs++;
	outbox_finishes_flush(sender->finishes);
	sender->jobs--;
	/* Items whose result or body job is queued are freed by that job's completion. */
	for (struct item *item = sender->all, *next; item != NULL; item = next) {
		next = item->all_next;
		if (!item->finishing && !item->loading)
			sender_item_free(sender, item);
	}
	while (sender->accounts != NULL) {
		struct account *a = sender->accounts;
		sender->accounts = a->next;
		while (a->sessions != NULL) {
			struct session *s = a->sessions;
			a->sessions = s->next;
			smtp_client_free(&s->client);
			free(s);
		}
		if (a->confirm_timer != NULL)
			event_free(a->confirm_timer);
		oauth_broker_cancel(&a->token_ask);
		mt_secret_free(&a->token);
		sodium_memzero(&a->settings, sizeof(a->settings));
		free(a);
	}
	for (struct item *item = sender->all; item != NULL; item = item->all_next)
		item->account = NULL;
	if (sender->poll != NULL)
		event_free(sender->poll);
	if (sender->renew != NULL)
		event_free(sender->renew);
	if (sender->stats != NULL)
		event_free(sender->stats);
	sender->poll = sender->renew = sender->stats = NULL;
	/* What was claimed and not finished goes back to the queue now, not at lease expiry. */
	sender->jobs++;
	if (outbox_lease_release(sender->p.store, sender->node_id, released, sender) < 0)
		sender->jobs--;
	if (sender->jobs == 0) {
		outbox_finishes_free(&sender->finishes);
		free(sender);
	}
}
