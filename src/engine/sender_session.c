/* The sender's sessions (engine/sender.h): feeding them in queue order, loading bodies for
 * their room within the byte budgets, and turning each attempt into the outbox policy's verdict,
 * recorded fenced by the lease. */
#include "engine/sender_internal.h"

#include "engine/account.h"
#include "engine/oauth_broker.h"
#include "engine/outbox_policy.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/str.h"
#include "net/security.h"
#include "net/tls.h"
#include "store/store.h"
#include "store/store_outbox.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
		sender_item_free(sender, item);
		sender_job_end(sender);
		return;
	}
	sender_item_done(sender, item);
	sender_job_end(sender);
}

/* The attempt's outcome into the outbox policy's verdict, recorded fenced by the lease.
 * `item->results` hold each recipient's outcome; `cls` and `reason` the attempt's own when it
 * failed as a whole. */
static void sender_finish(struct sender *sender, struct item *item, enum mt_failure_class cls,
                          const char *reason)
{
	struct store_outbox_message *m = &item->o->msg;
	struct account *account = item->account; /* the item may be gone below */
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
		    .now = sender_now(),
		    .not_before = item->account->cooldown_until,
		    .cls = cls,
		    .reason = item->smtp.reply[0] ? item->smtp.reply : reason,
		};
		outbox_verdict(&attempt, &sender->backoff, &verdict);
		mt_metric_inc("mailtrail_sends_total", "Send attempts by route and outcome class",
		              "route", item->account->relay ? "relay" : "custom", "class",
		              verdict.state == STORE_OUTBOX_SENT ? "ok"
		                                                 : mt_class_name(verdict.cls));
		if (verdict.paused)
			mt_metric_inc(
			    "mailtrail_governor_holds_total",
			    "Messages held by the send governor, by the window that was full",
			    "window", "pause", NULL, NULL);
	}
	item->finishing = true;
	sender->jobs++;
	bool pause = outcomes != NULL && states != NULL && verdict.paused;
	if (outcomes == NULL || states == NULL ||
	    outbox_lease_finish(sender->finishes, item->o, &verdict, sender->p.throttle_pause_s,
	                        finish_done, item) < 0) {
		/* The lease expires and the message is claimed again. */
		mt_log(MT_LOG_ERROR, "sender.finish_not_submitted", MT_KV("message", m->id));
		sender->jobs--;
		sender_item_done(sender, item);
	}
	free(outcomes);
	free(states);
	/* After this item's finish is submitted, so that the holds it brings follow it. */
	if (pause && !sender->stopping && account->paused_until <= sender_now())
		sender_pause(account, verdict.last_error);
}

/* Finishes an item with one class and reason for every recipient (a session that failed
 * before sending it, a message without a route now, a body that is gone). */
void sender_finish_all(struct sender *sender, struct item *item, enum mt_failure_class cls,
                       bool permanent, const char *reason)
{
	for (size_t i = 0; i < item->o->msg.rcpt_count; i++) {
		item->results[i].accepted = false;
		item->results[i].permanent = permanent;
		item->results[i].cls = cls;
		mt_strlcpy(item->results[i].reply, reason, sizeof(item->results[i].reply));
	}
	mt_strlcpy(item->smtp.reply, reason, sizeof(item->smtp.reply));
	sender_finish(sender, item, cls, reason);
}

/* ---- the disconnect story: confirm, disconnect, reroute ---- */

static void fail_queue(struct account *account, enum mt_failure_class cls, const char *reason);

static void requeued(void *arg, int result)
{
	struct item *item = arg;
	struct sender *sender = item->sender;
	if (result != 0 && result != STORE_CONFLICT)
		mt_log(MT_LOG_ERROR, "sender.requeue_failed", MT_KV("message", item->o->msg.id));
	if (sender->stopping) {
		sender_item_free(sender, item);
		sender_job_end(sender);
		return;
	}
	sender_item_done(sender, item);
	sender_job_end(sender);
}

/* Its next claim routes it again (the relay, or held): no attempt is counted, nothing was
 * handed to a server. A lost submission leaves it to its lease's expiry. */
static void requeue_item(struct sender *sender, struct item *item)
{
	item->finishing = true;
	sender->jobs++;
	if (outbox_lease_requeue(sender->p.store, item->o, requeued, item) < 0) {
		sender->jobs--;
		sender_item_done(sender, item);
	}
}

/* Every queued item of a disconnected account goes back to the queue; one whose body is loading
 * goes when the load is done. */
static void reroute_queue(struct account *account)
{
	struct item **p = &account->head;
	struct item *last = NULL;
	bool loading = false;
	while (*p != NULL) {
		struct item *item = *p;
		if (item->loading) {
			loading = true;
			last = item;
			p = &item->next;
			continue;
		}
		*p = item->next;
		account->queued--;
		item->next = NULL;
		requeue_item(account->sender, item);
	}
	account->tail = last;
	account->rerouting = loading;
}

struct disconnect_ctx {
	struct sender *sender;
	char key[MT_ID_MAX + 8];
};

static void disconnected(void *arg, bool changed)
{
	struct disconnect_ctx *d = arg;
	struct sender *sender = d->sender;
	char key[sizeof(d->key)];
	mt_strlcpy(key, d->key, sizeof(key));
	free(d);
	if (sender_job_end(sender))
		return;
	struct account *account = sender->accounts;
	while (account != NULL && strcmp(account->key, key) != 0)
		account = account->next;
	if (account == NULL)
		return;
	mt_log(MT_LOG_INFO, "sender.account_rerouted", MT_KV("account", key),
	       MT_KV("disconnected", changed ? "by this node" : "already, or settings changed"));
	account->disconnecting = false;
	account->awaiting_confirm = false;
	/* Not with these settings again: a later claim brings the stored ones. */
	account->settings.state = STORE_ACCOUNT_DISCONNECTED;
	account->cooldown_until = 0;
	account->rerouting = true;
	sender_pump(account);
}

static void disconnect_account(struct account *account, enum mt_failure_class cls,
                               const char *reason)
{
	struct sender *sender = account->sender;
	struct disconnect_ctx *d = calloc(1, sizeof(*d));
	if (d == NULL) {
		fail_queue(account, cls, reason);
		return;
	}
	d->sender = sender;
	mt_strlcpy(d->key, account->key, sizeof(d->key));
	account->disconnecting = true;
	sender->jobs++;
	account_smtp_disconnect(sender->p.accounts, &account->settings, cls, reason, disconnected,
	                        d);
}

void sender_confirm_due(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct account *account = arg;
	if (account->sender->stopping)
		return;
	/* A session that got through meanwhile settled it: the failure was passing. With nothing
	 * left to send there is nothing to confirm it with either. */
	for (struct session *s = account->sessions; s != NULL; s = s->next)
		if (s->ready)
			account->awaiting_confirm = false;
	if (account->head == NULL)
		account->awaiting_confirm = false;
	sender_pump(account);
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
	struct account *account = session->account;
	session->ready = true;
	account->token_retried = false;
	if (session->confirming || account->awaiting_confirm)
		mt_log(MT_LOG_INFO, "sender.confirm_cleared", MT_KV("account", account->key));
	/* Logged in and secured: whatever failed before was passing. */
	if (session->confirming)
		account->confirm_open = false;
	session->confirming = false;
	account->awaiting_confirm = false;
	sender_pump(account);
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
	sender_finish(session->account->sender, item, message->cls, message->reply);
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
		sender_finish_all(account->sender, item, cls, false, reason);
	}
	account->tail = last;
}

/* Every message still queued for the paused account is held (the verdict of a throttle
 * class: outbox_policy.h) instead of being tried now. One whose body is loading is held when it
 * is back (sender_pump). */
static void hold_queue(struct account *account, const char *reason)
{
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
		sender_finish_all(account->sender, item, MT_CLASS_THROTTLE, false, reason);
	}
	account->tail = last;
}

void sender_pause(struct account *account, const char *reason)
{
	struct sender *sender = account->sender;
	account->paused_until = sender_now() + sender->p.throttle_pause_s;
	mt_log(MT_LOG_INFO, "sender.account_paused", MT_KV("account", account->key),
	       MT_KV("reason", reason));
	char why[MT_ERROR_TEXT_MAX];
	snprintf(why, sizeof(why), "held: the account is paused after: %.400s", reason);
	hold_queue(account, why);
}

static bool session_on_grant(const struct account *account)
{
	return !account->relay && account->sender->p.broker != NULL &&
	       oauth_account_uses_grant(account->settings.auth == STORE_AUTH_XOAUTH2,
	                                account->settings.sealed_secret_len);
}

static void on_session_failed(void *ctx, const struct smtp_failure *failure)
{
	struct session *session = ctx;
	struct account *account = session->account;
	struct sender *sender = account->sender;
	bool sent_nothing = session->messages == 0;
	bool confirming = session->confirming;
	int64_t token_fence = session->token_fence;
	mt_log(MT_LOG_INFO, "sender.session_failed", MT_KV("account", account->key),
	       MT_KV("class", mt_class_name(failure->cls)), MT_KV("reason", failure->reason));
	session_remove(session);
	if (confirming)
		account->confirm_open = false;
	if (sent_nothing && failure->cls == MT_CLASS_AUTH && session_on_grant(account) &&
	    !account->token_retried) {
		/* The server refused the grant's token (revoked at the provider, or expired
		 * early): one forced refresh and one more login before the disconnect story. */
		account->token_retried = true;
		account->refused_fence = token_fence;
		if (confirming)
			account->awaiting_confirm = true; /* the retry still confirms */
		sender_pump(account);
		return;
	}
	if (failure->cls == MT_CLASS_THROTTLE || failure->cls == MT_CLASS_QUOTA) {
		/* Not a broken account: a pause, and nothing fails. */
		char reason[sizeof(failure->reason) + sizeof(failure->reply) + 2];
		snprintf(reason, sizeof(reason), "%s%s%s", failure->reason,
		         failure->reply[0] ? ": " : "", failure->reply);
		if (account->paused_until <= sender_now())
			sender_pause(account, reason);
		sender_pump(account);
		return;
	}
	if (sent_nothing) {
		char reason[sizeof(failure->reason) + sizeof(failure->reply) + 2];
		snprintf(reason, sizeof(reason), "%s%s%s", failure->reason,
		         failure->reply[0] ? ": " : "", failure->reply);
		const struct outbox_session_failure f = {
		    .relay = account->relay || sender->p.accounts == NULL,
		    .cls = failure->cls,
		    .certificate = failure->cls == MT_CLASS_TLS && failure->fingerprint[0] != '\0',
		    .confirming = confirming,
		    .awaiting_confirm = account->awaiting_confirm || account->confirm_open ||
		                        account->disconnecting || account->rerouting,
		};
		enum outbox_session_verdict verdict = outbox_session_failed(&f);
		if (verdict != OUTBOX_SESSION_RETRY)
			mt_log(MT_LOG_INFO, "sender.account_broken", MT_KV("account", account->key),
			       MT_KV("verdict", outbox_session_verdict_name(verdict)));
		switch (verdict) {
		case OUTBOX_SESSION_RETRY:
			account->cooldown_until = sender_now() + SESSION_COOLDOWN_S;
			fail_queue(account, failure->cls, reason);
			break;
		case OUTBOX_SESSION_AWAIT:
			break; /* the confirming attempt decides */
		case OUTBOX_SESSION_CONFIRM: {
			/* The items wait in the queue: one fresh session after the pause. */
			account->awaiting_confirm = true;
			account->failed_cls = failure->cls;
			mt_strlcpy(account->failed_reason, reason, sizeof(account->failed_reason));
			account->cooldown_until = sender_now() + sender->p.confirm_delay_s;
			if (account->confirm_timer == NULL)
				account->confirm_timer =
				    evtimer_new(sender->p.base, sender_confirm_due, account);
			struct timeval tv = {(time_t)sender->p.confirm_delay_s, 0};
			if (account->confirm_timer == NULL ||
			    evtimer_add(account->confirm_timer, &tv) < 0) {
				account->awaiting_confirm = false;
				account->cooldown_until = sender_now() + SESSION_COOLDOWN_S;
				fail_queue(account, failure->cls, reason);
			}
			break;
		}
		case OUTBOX_SESSION_DISCONNECT:
			disconnect_account(account, failure->cls, reason);
			return; /* its items wait for the store's answer */
		}
	}
	sender_pump(account);
}

static void on_closed(void *ctx)
{
	struct session *session = ctx;
	struct account *account = session->account;
	session_remove(session);
	sender_pump(account);
}

static void token_ready(void *ctx, struct oauth_broker_answer *answer)
{
	struct account *account = ctx;
	struct sender *sender = account->sender;
	account->token_ask = NULL;
	switch (answer->outcome) {
	case OAUTH_BROKER_OK:
		mt_secret_free(&account->token);
		account->token = answer->token;
		answer->token = NULL;
		account->token_fence = answer->fence;
		account->refused_fence = -1;
		break;
	case OAUTH_BROKER_REVOKED:
		/* The broker disconnected the account (with the one notice): its mail goes the
		 * way of a disconnected account's. */
		account->settings.state = STORE_ACCOUNT_DISCONNECTED;
		account->token_retried = false;
		account->awaiting_confirm = false;
		account->confirm_open = false;
		account->rerouting = true;
		break;
	case OAUTH_BROKER_NO_GRANT:
	case OAUTH_BROKER_TEMPORARY:
		/* Not the account's fault: retried with back-off like a connection failure. */
		account->cooldown_until = sender_now() + SESSION_COOLDOWN_S;
		fail_queue(account,
		           answer->outcome == OAUTH_BROKER_NO_GRANT ? MT_CLASS_AUTH : MT_CLASS_CONN,
		           answer->reason != NULL ? answer->reason : "no OAuth token");
		break;
	}
	if (!sender->stopping)
		sender_pump(account);
}

/* A login on a grant needs the broker's token first: false while it is being asked for. */
static bool token_for_login(struct account *account)
{
	if (account->token != NULL)
		return true;
	if (account->token_ask == NULL) {
		account->token_ask = oauth_broker_token(
		    account->sender->p.broker, account->settings.org_id, account->settings.user_id,
		    account->refused_fence, token_ready, account);
		if (account->token_ask == NULL) {
			account->cooldown_until = sender_now() + SESSION_COOLDOWN_S;
			fail_queue(account, MT_CLASS_CONN,
			           "the OAuth token cannot be asked for now");
		}
	}
	return false;
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
			if (account->settings_loaded && s->state == STORE_ACCOUNT_DISCONNECTED) {
				/* Disconnected since the claim: the next one routes them. */
				account->rerouting = true;
				reroute_queue(account);
				return false;
			}
			fail_queue(account, MT_CLASS_AUTH,
			           "the custom SMTP account is not connected");
			return false;
		}
		bool on_grant = session_on_grant(account);
		if (on_grant && !token_for_login(account))
			return false;
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
		if (on_grant) {
			/* One token per login: the next one asks again (the broker answers from
			 * the store while the token is valid). */
			mt_secret_free(&secret);
			secret = account->token;
			account->token = NULL;
			params.secret = secret;
		}
	}
	struct session *session = calloc(1, sizeof(*session));
	if (session == NULL) {
		mt_secret_free(&secret);
		return false;
	}
	session->account = account;
	session->token_fence = account->token_fence;
	/* The first session after the pause is the one that confirms the failure, or clears it. */
	if (account->awaiting_confirm) {
		session->confirming = true;
		account->awaiting_confirm = false;
		account->confirm_open = true;
	}
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
			sender_item_free(sender, item);
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
		item->smtp.data_8bit = item->o->body_8bit ? SMTP_DATA_8BIT : SMTP_DATA_7BIT;
	}
	free(load);
	if (sender_job_end(sender))
		return;
	if (result != 0)
		mt_log(MT_LOG_ERROR, "sender.bodies_failed", MT_KV("account", account->key));
	/* What can no longer go: a body that is gone, or an account that failed meanwhile (not
	 * one whose failure is being confirmed: its items wait for the answer). */
	bool failed = account->sessions == NULL && sender_now() < account->cooldown_until &&
	              !account->awaiting_confirm && !account->confirm_open &&
	              !account->disconnecting;
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
			sender_finish_all(sender, item, MT_CLASS_INTERNAL, true,
			                  "the message's body is gone");
		else
			sender_finish_all(sender, item, account->failed_cls, false,
			                  account->failed_reason);
	}
	account->tail = last;
	sender_pump(account);
}

/* Starts loading the bodies of the next queued items for which ready sessions have room,
 * within the node's and the account's byte budgets (one item alone may exceed them: a large
 * message must still go). */
static void load_bodies(struct account *account)
{
	struct sender *sender = account->sender;
	size_t room = 0, capacity = 0;
	for (struct session *s = account->sessions; s != NULL; s = s->next) {
		if (s->ready && !s->quitting) {
			capacity += (size_t)sender->p.max_inflight;
			room += (size_t)sender->p.max_inflight - s->inflight;
		}
	}
	/* Bodies load in queue order and sessions take from the head: the loaded (or loading) items
	 * are the queue's first ones, so counting them costs no more than the sessions hold. */
	size_t waiting = 0;
	struct item *item = account->head;
	for (; item != NULL && (item->loaded || item->loading); item = item->next)
		waiting++;
	/* Refill once the sessions have used half of what they can hold: a body per finished
	 * message would cost a store round trip each. */
	if (room <= waiting || (capacity - room) + waiting > capacity / 2)
		return;
	size_t want = room - waiting;
	struct load *load = NULL;
	for (; item != NULL && want > 0; item = item->next) {
		if (item->loaded || item->loading)
			continue;
		size_t len = item->o->msg.body_len;
		if (!outbox_body_admits(sender->body_bytes, account->body_bytes, len))
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
		want--;
		if (load->count == MT_SENDER_LOAD_BATCH)
			break;
	}
	if (load == NULL)
		return;
	sender_publish_body_bytes(sender);
	sender->jobs++;
	struct outbox_item *items[MT_SENDER_LOAD_BATCH];
	for (size_t i = 0; i < load->count; i++)
		items[i] = load->items[i]->o;
	if (outbox_lease_bodies(sender->p.store, items, load->count, bodies_loaded, load) < 0) {
		sender->jobs--;
		for (size_t i = 0; i < load->count; i++) {
			struct item *undo = load->items[i];
			undo->loading = false;
			sender->body_bytes -= undo->reserved;
			account->body_bytes -= undo->reserved;
			undo->reserved = 0;
		}
		free(load);
	}
}

void sender_pump(struct account *account)
{
	struct sender *sender = account->sender;
	if (sender->stopping || account->disconnecting)
		return;
	if (account->rerouting) {
		reroute_queue(account);
		return;
	}
	bool paused = sender_now() < account->paused_until;
	if (paused && account->head != NULL)
		hold_queue(account, "held: the account is paused after a throttle or quota reply");
	/* Feed the sessions that are up, in queue order: an item whose body is not here yet
	 * holds the ones behind it. */
	if (account->recalls > 0)
		sender_recall_queued(account);
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
			sender->fed++;
			s->inflight++;
		}
	}
	load_bodies(account);
	/* Open another session when every open one is full (or there is none). */
	bool all_full = true;
	for (struct session *s = account->sessions; s != NULL; s = s->next)
		if (!s->ready || s->inflight < (unsigned)sender->p.max_inflight)
			all_full = false;
	if (account->head != NULL && all_full && !paused &&
	    account->session_count < (unsigned)sender->p.sessions_per_account &&
	    sender_now() >= account->cooldown_until)
		open_session(account);
	/* Idle sessions leave. */
	for (struct session *s = account->sessions; s != NULL; s = s->next) {
		if (s->ready && !s->quitting && s->inflight == 0 && account->head == NULL) {
			s->quitting = true;
			smtp_client_quit(s->client);
		}
	}
}
