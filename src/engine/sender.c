#include "engine/sender.h"

#include "engine/account.h"
#include "engine/outbox_lease.h"
#include "engine/outbox_policy.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/str.h"
#include "net/security.h"
#include "net/tls.h"
#include "smtp/client.h"
#include "store/store.h"
#include "store/store_outbox.h"
#include "store/store_smtp.h"

#include <event2/event.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_INTERVAL_MS   1000
#define DEFAULT_LEASE_S    900
#define DEFAULT_RETRY_S    60
#define SESSION_COOLDOWN_S 30 /* after a session failed before sending anything */
#define STATS_INTERVAL_S   10

struct session;
struct account;

/* One claimed message on its way. Its body is loaded only when a ready session has room for
 * it and the byte budgets allow (MT_SENDER_BODY_BYTES_MAX, MT_SENDER_ACCOUNT_BODY_BYTES_MAX). */
struct item {
	struct sender *sender;
	struct outbox_item *o;
	const char **rcpt_ptrs;
	struct smtp_rcpt_result *results;
	struct smtp_message smtp;
	struct account *account;
	struct item *next;                /* on the account's queue */
	struct item *all_prev, *all_next; /* every held item, for shutdown */
	size_t reserved;                  /* body bytes counted against the budgets */
	bool loading;                     /* its body load job is in the store's queue */
	bool loaded;
	bool fed;       /* handed to a session, not yet recorded */
	bool finishing; /* its result job is in the store's queue */
};

struct session {
	struct account *account;
	struct smtp_client *client;
	unsigned inflight;
	bool ready;
	bool quitting;
	size_t messages;
	struct session *next;
};

/* A route's account: a user's custom SMTP ("custom:<user>") or the relay ("relay"). */
struct account {
	struct sender *sender;
	char key[MT_ID_MAX + 8];
	bool relay;
	struct store_smtp_account settings; /* custom: as loaded at the last claim */
	bool settings_loaded;
	struct item *head, *tail;
	size_t queued;
	size_t body_bytes; /* loaded or loading bodies of its items */
	/* Handed to a session and not yet durably recorded: what a crash may send twice. Kept at
	 * most sessions_per_account x max_inflight. */
	size_t unrecorded;
	struct session *sessions;
	unsigned session_count;
	int64_t cooldown_until;
	/* Why its last session failed, for the items whose body was loading meanwhile. */
	enum mt_failure_class failed_cls;
	char failed_reason[MT_ERROR_TEXT_MAX];
	struct account *next;
};

struct sender {
	struct sender_params p;
	char node_id[MT_ID_MAX];
	struct event *poll;
	struct event *renew;
	struct event *stats;
	bool started; /* own leases released */
	bool claiming;
	bool stopping;
	size_t held;       /* claimed, not yet finished */
	size_t body_bytes; /* loaded or loading, node-wide */
	unsigned jobs;     /* store jobs in flight: the sender outlives them */
	struct item *all;
	struct account *accounts;
	struct mt_backoff backoff;
};

static void pump(struct account *account);
static void schedule_poll(struct sender *sender, int ms);

/* What the bodies budget holds now, for /metrics (and the hostile-client tests). */
static void publish_body_bytes(const struct sender *sender)
{
	mt_metric_set_gauge("mailtrail_sender_body_bytes",
	                    "Message bodies the sender holds in memory, node-wide", NULL, NULL,
	                    NULL, NULL, (double)sender->body_bytes);
}

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

/* Every store job of the sender ends here; a stopped sender goes when its last job is done. */
static bool job_end(struct sender *sender)
{
	sender->jobs--;
	if (sender->stopping && sender->jobs == 0) {
		free(sender);
		return true;
	}
	return sender->stopping;
}

static void item_free(struct sender *sender, struct item *item)
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
		publish_body_bytes(sender);
	}
	free(item->rcpt_ptrs);
	free(item->results);
	outbox_item_free(&item->o);
	free(item);
}

/* An item leaves: the budgets it held free up for every account waiting on them. */
static void item_done(struct sender *sender, struct item *item)
{
	struct account *account = item->account;
	bool had_body = item->reserved > 0;
	sender->held--;
	if (item->fed)
		account->unrecorded--;
	item_free(sender, item);
	if (sender->stopping)
		return;
	if (had_body) {
		for (struct account *a = sender->accounts; a != NULL; a = a->next)
			if (a != account && a->head != NULL)
				pump(a);
	}
	pump(account);
	if (sender->held < MT_SENDER_CLAIM_MAX)
		schedule_poll(sender, 0);
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

/* ---- results ---- */

static void finish_done(void *arg, int result)
{
	struct item *item = arg;
	struct sender *sender = item->sender;
	if (result == STORE_CONFLICT)
		mt_log(MT_LOG_WARN, "sender.lease_lost", MT_KV("message", item->o->msg.id));
	else if (result != 0)
		mt_log(MT_LOG_ERROR, "sender.finish_failed", MT_KV("message", item->o->msg.id));
	if (sender->stopping) {
		item_free(sender, item);
		job_end(sender);
		return;
	}
	item_done(sender, item);
	job_end(sender);
}

/* The attempt's outcome into the outbox policy's verdict, recorded fenced by the lease.
 * `item->results` hold each recipient's outcome; `cls` and `reason` the attempt's own when it
 * failed as a whole. */
static void finish(struct sender *sender, struct item *item, enum mt_failure_class cls,
                   const char *reason)
{
	struct store_outbox_message *m = &item->o->msg;
	/* Each recipient keeps the reply that decided it (GET /v1/messages shows it). */
	for (size_t i = 0; i < m->rcpt_count; i++) {
		const char *reply = item->results[i].reply[0] ? item->results[i].reply
		                    : item->smtp.reply[0]     ? item->smtp.reply
		                                              : (reason != NULL ? reason : "");
		mt_strlcpy(m->rcpts[i].reply, reply, sizeof(m->rcpts[i].reply));
	}
	size_t n = m->rcpt_count;
	struct outbox_rcpt_outcome *outcomes = calloc(n ? n : 1, sizeof(*outcomes));
	enum store_rcpt_state *states = calloc(n ? n : 1, sizeof(*states));
	struct outbox_verdict verdict = {.rcpt_states = states};
	if (outcomes != NULL && states != NULL) {
		for (size_t i = 0; i < n; i++) {
			const struct smtp_rcpt_result *r = &item->results[i];
			outcomes[i] = (struct outbox_rcpt_outcome){
			    .accepted = r->accepted,
			    .permanent = r->permanent,
			    .cls = r->cls,
			    .reply = r->reply[0] ? r->reply : item->smtp.reply};
		}
		struct outbox_attempt attempt = {
		    .rcpt_count = n,
		    .outcomes = outcomes,
		    .sent_before = m->sent_before,
		    .failed_before = m->failed_before,
		    .attempts_before = (unsigned)m->attempts,
		    .first_attempt_at = m->first_attempt_at,
		    .held_seconds = m->held_seconds,
		    .now = now_s(),
		    .not_before = item->account->cooldown_until,
		    .cls = cls,
		    .reason = item->smtp.reply[0] ? item->smtp.reply : reason,
		};
		outbox_verdict(&attempt, &sender->backoff, &verdict);
		mt_metric_inc("mailtrail_sends_total", "Send attempts by route and outcome class",
		              "route", item->account->relay ? "relay" : "custom", "class",
		              verdict.state == STORE_OUTBOX_SENT ? "ok"
		                                                 : mt_class_name(verdict.cls));
	}
	item->finishing = true;
	sender->jobs++;
	if (outcomes == NULL || states == NULL ||
	    outbox_lease_finish(sender->p.store, item->o, &verdict, finish_done, item) < 0) {
		/* The lease expires and the message is claimed again. */
		mt_log(MT_LOG_ERROR, "sender.finish_not_submitted", MT_KV("message", m->id));
		sender->jobs--;
		item_done(sender, item);
	}
	free(outcomes);
	free(states);
}

/* Finishes an item with one class and reason for every recipient (a session that failed
 * before sending it, a message without a route now, a body that is gone). */
static void finish_all(struct sender *sender, struct item *item, enum mt_failure_class cls,
                       bool permanent, const char *reason)
{
	for (size_t i = 0; i < item->o->msg.rcpt_count; i++) {
		item->results[i].accepted = false;
		item->results[i].permanent = permanent;
		item->results[i].cls = cls;
		mt_strlcpy(item->results[i].reply, reason, sizeof(item->results[i].reply));
	}
	mt_strlcpy(item->smtp.reply, reason, sizeof(item->smtp.reply));
	finish(sender, item, cls, reason);
}

/* ---- sessions ---- */

static void session_remove(struct session *session)
{
	struct account *account = session->account;
	for (struct session **p = &account->sessions; *p != NULL; p = &(*p)->next) {
		if (*p == session) {
			*p = session->next;
			account->session_count--;
			break;
		}
	}
	smtp_client_free(&session->client);
	free(session);
}

static void on_ready(void *ctx)
{
	struct session *session = ctx;
	session->ready = true;
	pump(session->account);
}

static void on_message_done(void *ctx, struct smtp_message *message)
{
	struct session *session = ctx;
	struct item *item = message->user;
	session->inflight--;
	if (message->outcome != SMTP_OUTCOME_FAILED) {
		session->messages++;
		if (session->messages > 1)
			mt_metric_inc("mailtrail_smtp_session_reuse_total",
			              "Messages sent over an already used session", "route",
			              session->account->relay ? "relay" : "custom", NULL, NULL);
	}
	finish(session->account->sender, item, message->cls, message->reply);
}

/* Every message still queued for this account fails this attempt with the session's reason:
 * they are retried with back-off instead of hammering a server that just refused us. One whose
 * body is loading goes when the load is done. */
static void fail_queue(struct account *account, enum mt_failure_class cls, const char *reason)
{
	account->failed_cls = cls;
	mt_strlcpy(account->failed_reason, reason, sizeof(account->failed_reason));
	struct item **p = &account->head;
	struct item *last = NULL;
	while (*p != NULL) {
		struct item *item = *p;
		if (item->loading) {
			last = item;
			p = &item->next;
			continue;
		}
		*p = item->next;
		account->queued--;
		finish_all(account->sender, item, cls, false, reason);
	}
	account->tail = last;
}

static void on_session_failed(void *ctx, const struct smtp_failure *failure)
{
	struct session *session = ctx;
	struct account *account = session->account;
	bool sent_nothing = session->messages == 0;
	mt_log(MT_LOG_INFO, "sender.session_failed", MT_KV("account", account->key),
	       MT_KV("class", mt_class_name(failure->cls)), MT_KV("reason", failure->reason));
	session_remove(session);
	if (sent_nothing) {
		char reason[sizeof(failure->reason) + sizeof(failure->reply) + 2];
		snprintf(reason, sizeof(reason), "%s%s%s", failure->reason,
		         failure->reply[0] ? ": " : "", failure->reply);
		account->cooldown_until = now_s() + SESSION_COOLDOWN_S;
		fail_queue(account, failure->cls, reason);
	}
	pump(account);
}

static void on_closed(void *ctx)
{
	struct session *session = ctx;
	struct account *account = session->account;
	session_remove(session);
	pump(account);
}

static bool open_session(struct account *account)
{
	struct sender *sender = account->sender;
	struct smtp_client_params params;
	memset(&params, 0, sizeof(params));
	struct mt_secret *secret = NULL;
	struct mt_tls_pin pin;
	params.tls = sender->p.tls;
	params.connect_timeout_ms = 30000;
	params.reply_timeout_ms = sender->p.reply_timeout_ms;
	if (account->relay) {
		params.host = sender->p.relay_host;
		params.port = sender->p.relay_port;
		params.security =
		    sender->p.relay_implicit_tls ? MT_SECURITY_TLS : MT_SECURITY_STARTTLS;
		params.auth = sender->p.relay_user[0] ? SMTP_AUTH_PASSWORD : SMTP_AUTH_NONE;
		params.username = sender->p.relay_user;
		params.secret = sender->p.relay_password;
	} else {
		const struct store_smtp_account *s = &account->settings;
		if (!account->settings_loaded || s->state != STORE_ACCOUNT_CONNECTED) {
			fail_queue(account, MT_CLASS_AUTH,
			           "the custom SMTP account is not connected");
			return false;
		}
		const char *error;
		if (account_smtp_client(s, sender->p.keyring, sender->p.tls,
		                        sender->p.allow_private, &params, &pin, &secret,
		                        &error) < 0) {
			mt_log(MT_LOG_ERROR, "sender.account_unusable",
			       MT_KV("account", account->key), MT_KV("error", error));
			fail_queue(account, MT_CLASS_INTERNAL,
			           "the stored settings cannot be used");
			return false;
		}
		params.connect_timeout_ms = 30000;
		params.reply_timeout_ms = sender->p.reply_timeout_ms;
	}
	struct session *session = calloc(1, sizeof(*session));
	if (session == NULL) {
		mt_secret_free(&secret);
		return false;
	}
	session->account = account;
	struct smtp_client_callbacks callbacks = {
	    .ready = on_ready,
	    .message_done = on_message_done,
	    .session_failed = on_session_failed,
	    .closed = on_closed,
	};
	const char *error;
	session->client =
	    smtp_client_new(sender->p.base, sender->p.dns, &params, &callbacks, session, &error);
	mt_secret_free(&secret); /* the client keeps its own copy */
	if (session->client == NULL) {
		free(session);
		fail_queue(account, MT_CLASS_INTERNAL, error);
		return false;
	}
	session->next = account->sessions;
	account->sessions = session;
	account->session_count++;
	mt_metric_inc("mailtrail_smtp_sessions_total", "SMTP sessions opened by the sender",
	              "route", account->relay ? "relay" : "custom", NULL, NULL);
	return true;
}

/* ---- bodies, when a session is ready for them ---- */

struct load {
	struct sender *sender;
	struct account *account; /* gone once the sender stops */
	struct item *items[MT_SENDER_LOAD_BATCH];
	size_t count;
};

static void bodies_loaded(void *arg, int result)
{
	struct load *load = arg;
	struct sender *sender = load->sender;
	struct account *account = load->account;
	for (size_t i = 0; i < load->count; i++) {
		struct item *item = load->items[i];
		item->loading = false;
		if (sender->stopping) {
			item_free(sender, item);
			continue;
		}
		if (result != 0) {
			/* Loaded again the next time a session has room. */
			free(item->o->msg.body);
			item->o->msg.body = NULL;
			sender->body_bytes -= item->reserved;
			account->body_bytes -= item->reserved;
			item->reserved = 0;
			continue;
		}
		item->loaded = true;
		item->smtp.data = item->o->msg.body;
		item->smtp.data_len = item->o->msg.body_len;
	}
	free(load);
	if (job_end(sender))
		return;
	if (result != 0)
		mt_log(MT_LOG_ERROR, "sender.bodies_failed", MT_KV("account", account->key));
	/* What can no longer go: a body that is gone, or an account that failed meanwhile. */
	bool failed = account->sessions == NULL && now_s() < account->cooldown_until;
	struct item **p = &account->head;
	struct item *last = NULL;
	while (*p != NULL) {
		struct item *item = *p;
		bool gone = item->loaded && item->o->msg.body == NULL;
		if (!gone && !(failed && item->loaded)) {
			last = item;
			p = &item->next;
			continue;
		}
		*p = item->next;
		account->queued--;
		if (gone)
			finish_all(sender, item, MT_CLASS_INTERNAL, true,
			           "the message's body is gone");
		else
			finish_all(sender, item, account->failed_cls, false,
			           account->failed_reason);
	}
	account->tail = last;
	pump(account);
}

/* Starts loading the bodies of the next queued items for which ready sessions have room,
 * within the node's and the account's byte budgets (one item alone may exceed them: a large
 * message must still go). */
static void load_bodies(struct account *account)
{
	struct sender *sender = account->sender;
	size_t room = 0;
	for (struct session *s = account->sessions; s != NULL; s = s->next)
		if (s->ready && !s->quitting)
			room += (size_t)sender->p.max_inflight - s->inflight;
	struct load *load = NULL;
	for (struct item *item = account->head; item != NULL && room > 0; item = item->next) {
		if (item->loaded || item->loading) {
			room--;
			continue;
		}
		size_t len = item->o->msg.body_len;
		if ((sender->body_bytes > 0 &&
		     sender->body_bytes + len > MT_SENDER_BODY_BYTES_MAX) ||
		    (account->body_bytes > 0 &&
		     account->body_bytes + len > MT_SENDER_ACCOUNT_BODY_BYTES_MAX))
			break; /* in order: what follows waits for bodies to be sent */
		if (load == NULL && (load = calloc(1, sizeof(*load))) == NULL)
			break;
		load->sender = sender;
		load->account = account;
		load->items[load->count++] = item;
		item->loading = true;
		item->reserved = len;
		sender->body_bytes += len;
		account->body_bytes += len;
		room--;
		if (load->count == MT_SENDER_LOAD_BATCH)
			break;
	}
	if (load == NULL)
		return;
	publish_body_bytes(sender);
	sender->jobs++;
	struct outbox_item *items[MT_SENDER_LOAD_BATCH];
	for (size_t i = 0; i < load->count; i++)
		items[i] = load->items[i]->o;
	if (outbox_lease_bodies(sender->p.store, items, load->count, bodies_loaded, load) < 0) {
		sender->jobs--;
		for (size_t i = 0; i < load->count; i++) {
			struct item *item = load->items[i];
			item->loading = false;
			sender->body_bytes -= item->reserved;
			account->body_bytes -= item->reserved;
			item->reserved = 0;
		}
		free(load);
	}
}

static void pump(struct account *account)
{
	struct sender *sender = account->sender;
	if (sender->stopping)
		return;
	/* Feed the sessions that are up, in queue order: an item whose body is not here yet
	 * holds the ones behind it. */
	size_t bound = (size_t)sender->p.sessions_per_account * (size_t)sender->p.max_inflight;
	for (struct session *s = account->sessions; s != NULL; s = s->next) {
		if (!s->ready || s->quitting)
			continue;
		while (account->head != NULL && account->head->loaded &&
		       s->inflight < (unsigned)sender->p.max_inflight &&
		       account->unrecorded < bound) {
			struct item *item = account->head;
			const char *error;
			if (smtp_client_send(s->client, &item->smtp, &error) < 0)
				break;
			account->head = item->next;
			if (account->head == NULL)
				account->tail = NULL;
			account->queued--;
			item->next = NULL;
			item->fed = true;
			account->unrecorded++;
			s->inflight++;
		}
	}
	load_bodies(account);
	/* Open another session when every open one is full (or there is none). */
	bool all_full = true;
	for (struct session *s = account->sessions; s != NULL; s = s->next)
		if (!s->ready || s->inflight < (unsigned)sender->p.max_inflight)
			all_full = false;
	if (account->head != NULL && all_full &&
	    account->session_count < (unsigned)sender->p.sessions_per_account &&
	    now_s() >= account->cooldown_until)
		open_session(account);
	/* Idle sessions leave. */
	for (struct session *s = account->sessions; s != NULL; s = s->next) {
		if (s->ready && !s->quitting && s->inflight == 0 && account->head == NULL) {
			s->quitting = true;
			smtp_client_quit(s->client);
		}
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
	a->next = sender->accounts;
	sender->accounts = a;
	return a;
}

static void claimed(void *ctx, int result, struct outbox_claim *claim)
{
	struct sender *sender = ctx;
	sender->claiming = false;
	if (sender->stopping) {
		job_end(sender);
		return; /* the claim frees its items; the release job puts them back */
	}
	if (result != 0)
		mt_log(MT_LOG_ERROR, "sender.claim_failed");
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
		item->all_next = sender->all;
		if (sender->all != NULL)
			sender->all->all_prev = item;
		sender->all = item;
		sender->held++;
		if (!o->routable) {
			finish_all(sender, item, MT_CLASS_INTERNAL, false, o->reason);
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
		if (account->tail != NULL)
			account->tail->next = item;
		else
			account->head = item;
		account->tail = item;
		account->queued++;
	}
	for (struct account *a = sender->accounts; a != NULL; a = a->next)
		if (a->head != NULL)
			pump(a);
	bool full = result == 0 && claim->full;
	if (job_end(sender))
		return;
	/* A full page means more is due now. */
	schedule_poll(sender, full ? 0 : POLL_INTERVAL_MS);
}

static void claim(struct sender *sender)
{
	if (sender->claiming || sender->stopping || !sender->started ||
	    sender->held >= MT_SENDER_HELD_MAX)
		return;
	size_t max = MT_SENDER_HELD_MAX - sender->held < MT_SENDER_CLAIM_MAX
	                 ? MT_SENDER_HELD_MAX - sender->held
	                 : MT_SENDER_CLAIM_MAX;
	sender->claiming = true;
	sender->jobs++;
	const struct outbox_relay relay = {.configured = sender->p.relay_host != NULL,
	                                   .from = sender->p.relay_from};
	if (outbox_lease_claim(sender->p.store, sender->node_id, now_s(), sender->p.lease_s, max,
	                       &relay, claimed, sender) < 0) {
		sender->claiming = false;
		sender->jobs--;
	}
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sender *sender = arg;
	claim(sender);
	if (!sender->claiming)
		schedule_poll(sender, POLL_INTERVAL_MS);
}

static void schedule_poll(struct sender *sender, int ms)
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
	job_end(sender);
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
	if (outbox_lease_renew(sender->p.store, sender->node_id, now_s() + sender->p.lease_s,
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
	mt_metric_set_gauge("mailtrail_sender_body_bytes",
	                    "Message bodies the sender holds in memory, node-wide", NULL, NULL,
	                    NULL, NULL, (double)sender->body_bytes);
	job_end(sender);
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
		schedule_poll(sender, 0);
	}
	job_end(sender);
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
	if (sender->p.relay_user == NULL)
		sender->p.relay_user = "";
	if (sender->p.relay_from == NULL)
		sender->p.relay_from = "";
	sender->backoff.base_delay_s =
	    params->retry_base_s > 0 ? params->retry_base_s : DEFAULT_RETRY_S;
	sender->backoff.max_delay_s = 3600;
	sender->backoff.expiry_s = params->retry_expiry_s > 0 ? params->retry_expiry_s : 24 * 3600;
	mt_strlcpy(sender->node_id, params->node_id, sizeof(sender->node_id));
	sender->poll = evtimer_new(params->base, on_poll, sender);
	sender->renew = evtimer_new(params->base, on_renew, sender);
	sender->stats = evtimer_new(params->base, on_stats, sender);
	if (sender->poll == NULL || sender->renew == NULL || sender->stats == NULL) {
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
		schedule_poll(sender, 0);
}

void sender_free(struct sender **senderp)
{
	struct sender *sender = *senderp;
	if (sender == NULL)
		return;
	*senderp = NULL;
	sender->stopping = true;
	/* Items whose result or body job is queued are freed by that job's completion. */
	for (struct item *item = sender->all, *next; item != NULL; item = next) {
		next = item->all_next;
		if (!item->finishing && !item->loading)
			item_free(sender, item);
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
	if (sender->jobs == 0)
		free(sender);
}
