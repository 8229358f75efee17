#include "engine/sender.h"

#include "crypto/seal.h"
#include "engine/matcher.h"
#include "lib/backoff.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/str.h"
#include "net/security.h"
#include "net/tls.h"
#include "smtp/client.h"
#include "store/store.h"
#include "store/store_message.h"
#include "store/store_outbox.h"
#include "store/store_smtp.h"

#include <event2/event.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_INTERVAL_MS   1000
#define DEFAULT_LEASE_S    900
#define DEFAULT_RETRY_S    60
#define SESSION_COOLDOWN_S 30 /* after a session failed before sending anything */

struct session;
struct account;

/* One claimed message on its way. */
struct item {
	struct store_outbox_message msg; /* pending recipients only */
	const char **rcpt_ptrs;
	struct smtp_rcpt_result *results;
	struct smtp_message smtp;
	struct account *account;
	struct item *next;                /* on the account's queue */
	struct item *all_prev, *all_next; /* every held item, for renewal and shutdown */
	bool fed;                         /* handed to a session, not yet recorded */
	bool finishing;                   /* its result job is in the store's queue */
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
	/* Handed to a session and not yet durably recorded: what a crash may send twice. Kept at
	 * most sessions_per_account x max_inflight. */
	size_t unrecorded;
	struct session *sessions;
	unsigned session_count;
	int64_t cooldown_until;
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
	size_t held;   /* claimed, not yet finished */
	unsigned jobs; /* store jobs in flight: the sender outlives them */
	struct item *all;
	struct account *accounts;
	struct mt_backoff backoff;
};

static void pump(struct account *account);

/* Every store job of the sender ends here; a stopped sender goes when its last job is done. */
static bool job_end(struct sender *sender)
{
	sender->jobs--;
	if (sender->stopping && sender->jobs == 0) {
		free(sender);
		return true;
	}
	return false;
}

static int submit(struct sender *sender, enum store_job_kind kind, store_job_fn *fn,
                  store_done_fn *done, void *job)
{
	if (store_submit(sender->p.store, kind, fn, done, job) < 0)
		return -1;
	sender->jobs++;
	return 0;
}
static void schedule_poll(struct sender *sender, int ms);

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

/* ---- items ---- */

static void item_free(struct sender *sender, struct item *item)
{
	if (item->all_prev != NULL)
		item->all_prev->all_next = item->all_next;
	else if (sender->all == item)
		sender->all = item->all_next;
	if (item->all_next != NULL)
		item->all_next->all_prev = item->all_prev;
	free(item->rcpt_ptrs);
	free(item->results);
	store_outbox_message_free(&item->msg);
	free(item);
}

static struct item *item_new(struct store_outbox_message *msg)
{
	struct item *item = calloc(1, sizeof(*item));
	if (item == NULL)
		return NULL;
	item->msg = *msg; /* takes its allocations */
	memset(msg, 0, sizeof(*msg));
	size_t n = item->msg.rcpt_count;
	item->rcpt_ptrs = calloc(n ? n : 1, sizeof(*item->rcpt_ptrs));
	item->results = calloc(n ? n : 1, sizeof(*item->results));
	if (item->rcpt_ptrs == NULL || item->results == NULL) {
		free(item->rcpt_ptrs);
		free(item->results);
		store_outbox_message_free(&item->msg);
		free(item);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		item->rcpt_ptrs[i] = item->msg.rcpts[i].address;
	item->smtp.mail_from = item->msg.mail_from;
	item->smtp.rcpts = item->rcpt_ptrs;
	item->smtp.rcpt_count = n;
	item->smtp.data = item->msg.body;
	item->smtp.data_len = item->msg.body_len;
	item->smtp.results = item->results;
	item->smtp.user = item;
	return item;
}

/* ---- results ---- */

struct finish_job {
	struct sender *sender;
	struct item *item;
	struct store_outbox_rcpt *rcpts; /* the attempt's verdicts */
	struct store_outbox_result result;
	char last_error[MT_ERROR_TEXT_MAX];
	char last_class[16];
	bool log_activity;
	struct store_message activity;
	struct store_mailbox *participants;
	struct store_attachment *attachments;
};

static void finish_job_free(struct finish_job *job)
{
	free(job->rcpts);
	free(job->participants);
	free(job->attachments);
	free(job);
}

/* The outbox's own copy of the message, restricted to the recipients that have it now. */
static int prepare_activity(struct finish_job *job)
{
	const struct store_outbox_message *m = &job->item->msg;
	struct store_message *a = &job->activity;
	size_t n = job->result.rcpt_count;
	job->participants = calloc(n ? n : 1, sizeof(*job->participants));
	if (job->participants == NULL)
		return -1;
	size_t to = 0, cc = 0, bcc = 0;
	/* Grouped by kind: to first, then cc, then bcc, as the store wants three arrays. */
	for (int kind = STORE_RCPT_TO; kind <= STORE_RCPT_BCC; kind++) {
		for (size_t i = 0; i < n; i++) {
			const struct store_outbox_rcpt *r = &job->rcpts[i];
			if ((int)r->kind != kind || r->state != STORE_RCPT_SENT)
				continue;
			struct store_mailbox *mb = &job->participants[to + cc + bcc];
			mt_strlcpy(mb->address, r->address, sizeof(mb->address));
			mt_strlcpy(mb->name, r->name, sizeof(mb->name));
			if (kind == STORE_RCPT_TO)
				to++;
			else if (kind == STORE_RCPT_CC)
				cc++;
			else
				bcc++;
		}
	}
	a->alias_count = 0;
	if (m->message_id[0] != '\0')
		snprintf(a->aliases[a->alias_count++], MT_MESSAGE_KEY_MAX, "mid:%s", m->message_id);
	if (m->mailtrail_id[0] != '\0')
		snprintf(a->aliases[a->alias_count++], MT_MESSAGE_KEY_MAX, "mt:%s",
		         m->mailtrail_id);
	mt_strlcpy(a->message_id, m->message_id, sizeof(a->message_id));
	a->date = m->created_at;
	a->from = m->from;
	a->to = job->participants;
	a->to_count = to;
	a->cc = job->participants + to;
	a->cc_count = cc;
	a->bcc = job->participants + to + cc;
	a->bcc_count = bcc;
	mt_strlcpy(a->subject, m->subject, sizeof(a->subject));
	mt_strlcpy(a->snippet, m->snippet, sizeof(a->snippet));
	json_t *list = m->attachments_json ? json_loads(m->attachments_json, 0, NULL) : NULL;
	size_t count = json_is_array(list) ? json_array_size(list) : 0;
	job->attachments = calloc(count ? count : 1, sizeof(*job->attachments));
	if (job->attachments == NULL) {
		json_decref(list);
		return -1;
	}
	for (size_t i = 0; i < count; i++) {
		json_t *att = json_array_get(list, i);
		const char *name = json_string_value(json_object_get(att, "name"));
		const char *type = json_string_value(json_object_get(att, "type"));
		mt_strlcpy(job->attachments[i].name, name ? name : "", MT_ATTACHMENT_NAME_MAX + 1);
		mt_strlcpy(job->attachments[i].type, type ? type : "", MT_CONTENT_TYPE_MAX + 1);
		job->attachments[i].size = json_integer_value(json_object_get(att, "size"));
	}
	a->attachments = job->attachments;
	a->attachment_count = count;
	json_decref(list);
	return 0;
}

static int finish_run(struct store_tx *tx, void *arg)
{
	struct finish_job *job = arg;
	int rc = store_outbox_finish(tx, &job->result);
	if (rc != 0 || !job->log_activity)
		return rc;
	struct matcher_result match;
	return matcher_log_message(tx, job->item->msg.org_id, job->item->msg.user_id,
	                           STORE_SOURCE_OUTBOX, &job->activity, &match);
}

static void finish_done(void *arg, int result)
{
	struct finish_job *job = arg;
	struct sender *sender = job->sender;
	if (sender->stopping) {
		item_free(sender, job->item);
		finish_job_free(job);
		job_end(sender);
		return;
	}
	if (result == STORE_CONFLICT)
		mt_log(MT_LOG_WARN, "sender.lease_lost", MT_KV("message", job->item->msg.id));
	else if (result != 0)
		mt_log(MT_LOG_ERROR, "sender.finish_failed", MT_KV("message", job->item->msg.id));
	sender->held--;
	struct account *account = job->item->account;
	if (job->item->fed)
		account->unrecorded--;
	item_free(sender, job->item);
	finish_job_free(job);
	pump(account);
	if (sender->held < MT_SENDER_CLAIM_MAX)
		schedule_poll(sender, 0);
	job_end(sender);
}

/* Turns one attempt into the store's result: accepted recipients are sent, permanently refused
 * ones failed, temporarily refused ones stay pending for a retry — until retry_expiry. */
static void finish(struct sender *sender, struct item *item, enum mt_failure_class cls,
                   const char *reason)
{
	struct store_outbox_message *m = &item->msg;
	struct finish_job *job = calloc(1, sizeof(*job));
	if (job != NULL)
		job->rcpts = calloc(m->rcpt_count ? m->rcpt_count : 1, sizeof(*job->rcpts));
	if (job == NULL || job->rcpts == NULL) {
		mt_log(MT_LOG_ERROR, "sender.out_of_memory", MT_KV("message", m->id));
		if (job != NULL)
			finish_job_free(job);
		sender->held--;
		if (item->fed)
			item->account->unrecorded--;
		item_free(sender, item); /* the lease expires and the message is claimed again */
		return;
	}
	job->sender = sender;
	job->item = item;
	int64_t now = now_s();
	bool pending = false, any_sent = false;
	for (size_t i = 0; i < m->rcpt_count; i++) {
		const struct smtp_rcpt_result *r = &item->results[i];
		struct store_outbox_rcpt *out = &job->rcpts[i];
		*out = m->rcpts[i];
		mt_strlcpy(out->reply, r->reply[0] ? r->reply : (reason ? reason : ""),
		           sizeof(out->reply));
		if (r->accepted) {
			out->state = STORE_RCPT_SENT;
			any_sent = true;
		} else if (r->permanent) {
			out->state = STORE_RCPT_FAILED;
		} else {
			out->state = STORE_RCPT_PENDING;
			pending = true;
		}
	}
	bool any_refused = false;
	for (size_t i = 0; i < m->rcpt_count; i++)
		any_refused = any_refused || job->rcpts[i].state != STORE_RCPT_SENT;
	const char *error = item->smtp.reply[0] ? item->smtp.reply : (reason ? reason : "");
	if (any_refused) {
		/* A partial delivery's message reply is the dot's 250: the refusal is the news. */
		for (size_t i = 0; i < m->rcpt_count && cls == MT_CLASS_NONE; i++) {
			if (job->rcpts[i].state != STORE_RCPT_SENT) {
				error = job->rcpts[i].reply;
				cls = item->results[i].cls;
			}
		}
		mt_strlcpy(job->last_error, error, sizeof(job->last_error));
		mt_strlcpy(job->last_class,
		           mt_class_name(cls == MT_CLASS_NONE ? MT_CLASS_RESP : cls),
		           sizeof(job->last_class));
	}
	struct store_outbox_result *res = &job->result;
	res->id = m->id;
	res->lease_token = m->lease_token;
	res->first_attempt_at = m->first_attempt_at ? m->first_attempt_at : now;
	res->last_error = job->last_error;
	res->last_class = job->last_class;
	res->rcpts = job->rcpts;
	res->rcpt_count = m->rcpt_count;
	res->sent_at = any_sent ? now : 0;
	res->state = STORE_OUTBOX_SENT; /* final: the store derives sent/partial/failed */
	if (pending) {
		struct mt_backoff policy = sender->backoff;
		policy.expiry_s += m->held_seconds;
		int64_t next;
		if (mt_backoff_next(&policy, res->first_attempt_at, now, (unsigned)m->attempts + 1,
		                    &next) == 0) {
			res->state = STORE_OUTBOX_QUEUED;
			/* `now` is whole seconds rounded down and the claim asks "due <= now":
			 * without the second, a retry could come up to a second before its delay is
			 * over (at once, with a 1 s test delay). */
			next += 1;
			/* Not before the account may open a session again. */
			if (item->account->cooldown_until > next)
				next = item->account->cooldown_until;
			res->next_attempt_at = next;
		} else {
			/* Out of time: what is still pending fails with its last reason. */
			for (size_t i = 0; i < m->rcpt_count; i++)
				if (job->rcpts[i].state == STORE_RCPT_PENDING)
					job->rcpts[i].state = STORE_RCPT_FAILED;
			snprintf(job->last_error, sizeof(job->last_error),
			         "retry time ran out: %.400s", error);
		}
	}
	job->log_activity = any_sent && prepare_activity(job) == 0;
	mt_metric_inc("mailtrail_sends_total", "Send attempts by route and outcome class", "route",
	              m->route, "class",
	              any_sent && !pending
	                  ? "ok"
	                  : mt_class_name(cls == MT_CLASS_NONE ? MT_CLASS_RESP : cls));
	item->finishing = true;
	if (submit(sender, STORE_WRITE_DURABLE | STORE_REPLAYABLE, finish_run, finish_done, job) <
	    0) {
		mt_log(MT_LOG_ERROR, "sender.store_full", MT_KV("message", m->id));
		sender->held--;
		if (item->fed)
			item->account->unrecorded--;
		item_free(sender, item);
		finish_job_free(job);
	}
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
 * they are retried with back-off instead of hammering a server that just refused us. */
static void fail_queue(struct account *account, enum mt_failure_class cls, const char *reason)
{
	while (account->head != NULL) {
		struct item *item = account->head;
		account->head = item->next;
		account->queued--;
		for (size_t i = 0; i < item->msg.rcpt_count; i++) {
			item->results[i].accepted = false;
			item->results[i].permanent = false;
			item->results[i].cls = cls;
			mt_strlcpy(item->results[i].reply, reason, sizeof(item->results[i].reply));
		}
		mt_strlcpy(item->smtp.reply, reason, sizeof(item->smtp.reply));
		finish(account->sender, item, cls, reason);
	}
	account->tail = NULL;
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
		params.host = s->host;
		params.port = (uint16_t)s->port;
		params.public_only = true;
		params.allow_private = sender->p.allow_private;
		mt_security_parse(s->security, &params.security);
		smtp_auth_parse(s->auth, &params.auth);
		params.username = s->username;
		if (s->tls_fingerprint[0] != '\0') {
			const char *error;
			if (mt_tls_pin_parse(s->tls_fingerprint, &pin, &error) == 0)
				params.pin = &pin;
		}
		if (s->sealed_secret_len > 0) {
			char context[MT_ID_MAX + 8];
			const char *error;
			snprintf(context, sizeof(context), "smtp:%s", s->user_id);
			secret = mt_unseal(sender->p.keyring, context, s->sealed_secret,
			                   s->sealed_secret_len, &error);
			if (secret == NULL) {
				mt_log(MT_LOG_ERROR, "sender.unseal_failed",
				       MT_KV("account", account->key), MT_KV("error", error));
				fail_queue(account, MT_CLASS_INTERNAL,
				           "the stored secret cannot be opened");
				return false;
			}
			params.secret = secret;
		}
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

static void pump(struct account *account)
{
	struct sender *sender = account->sender;
	if (sender->stopping)
		return;
	/* Feed the sessions that are up. */
	for (struct session *s = account->sessions; s != NULL; s = s->next) {
		if (!s->ready || s->quitting)
			continue;
		size_t bound =
		    (size_t)sender->p.sessions_per_account * (size_t)sender->p.max_inflight;
		while (account->head != NULL && s->inflight < (unsigned)sender->p.max_inflight &&
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

static struct account *account_for(struct sender *sender, const struct store_outbox_message *m)
{
	char key[MT_ID_MAX + 8];
	bool relay = strcmp(m->route, "relay") == 0;
	if (relay)
		snprintf(key, sizeof(key), "relay");
	else
		snprintf(key, sizeof(key), "custom:%s", m->user_id);
	for (struct account *a = sender->accounts; a != NULL; a = a->next)
		if (strcmp(a->key, key) == 0)
			return a;
	struct account *a = calloc(1, sizeof(*a));
	if (a == NULL)
		return NULL;
	a->sender = sender;
	mt_strlcpy(a->key, key, sizeof(a->key));
	a->relay = relay;
	a->next = sender->accounts;
	sender->accounts = a;
	return a;
}

/* ---- claiming ---- */

struct claim_job {
	struct sender *sender;
	struct store_outbox_message *messages;
	size_t count;
	size_t max;
	/* The custom accounts of the claimed messages' users. */
	struct store_smtp_account *accounts;
	size_t account_count;
};

static int claim_run(struct store_tx *tx, void *arg)
{
	struct claim_job *job = arg;
	/* What a run before this one (rolled back, see STORE_REPLAYABLE) left. */
	for (size_t i = 0; i < job->count; i++)
		store_outbox_message_free(&job->messages[i]);
	job->count = 0;
	free(job->accounts);
	job->accounts = NULL;
	job->account_count = 0;
	int rc = store_outbox_claim(tx, job->sender->node_id, now_s(), job->sender->p.lease_s,
	                            job->max, job->messages, &job->count);
	if (rc != 0)
		return rc;
	job->accounts = calloc(job->count ? job->count : 1, sizeof(*job->accounts));
	if (job->accounts == NULL)
		return -1;
	for (size_t i = 0; i < job->count; i++) {
		const struct store_outbox_message *m = &job->messages[i];
		if (strcmp(m->route, "custom") != 0)
			continue;
		bool have = false;
		for (size_t j = 0; j < job->account_count && !have; j++)
			have = strcmp(job->accounts[j].user_id, m->user_id) == 0;
		if (have)
			continue;
		struct store_smtp_account *a = &job->accounts[job->account_count];
		int got = store_smtp_account_get(tx, m->org_id, m->user_id, a);
		if (got == 0)
			job->account_count++;
		else if (got != STORE_NOT_FOUND)
			return got;
	}
	return 0;
}

static void claim_done(void *arg, int result)
{
	struct claim_job *job = arg;
	struct sender *sender = job->sender;
	sender->claiming = false;
	if (sender->stopping) {
		for (size_t i = 0; i < job->count; i++)
			store_outbox_message_free(&job->messages[i]);
		result = -1;
		job->count = 0;
	} else if (result != 0)
		mt_log(MT_LOG_ERROR, "sender.claim_failed");
	for (size_t i = 0; result == 0 && i < job->count; i++) {
		struct store_outbox_message *m = &job->messages[i];
		struct account *account = account_for(sender, m);
		if (account != NULL && !account->relay) {
			for (size_t j = 0; j < job->account_count; j++) {
				if (strcmp(job->accounts[j].user_id, m->user_id) == 0) {
					account->settings = job->accounts[j];
					account->settings_loaded = true;
				}
			}
		}
		struct item *item = account != NULL ? item_new(m) : NULL;
		if (item == NULL) {
			store_outbox_message_free(m); /* the lease expires; claimed again later */
			continue;
		}
		item->account = account;
		item->all_next = sender->all;
		if (sender->all != NULL)
			sender->all->all_prev = item;
		sender->all = item;
		sender->held++;
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
	bool full = job->count == job->max;
	if (job->accounts != NULL) {
		sodium_memzero(job->accounts, job->account_count * sizeof(*job->accounts));
		free(job->accounts);
	}
	free(job->messages);
	free(job);
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
	struct claim_job *job = calloc(1, sizeof(*job));
	size_t max = MT_SENDER_HELD_MAX - sender->held < MT_SENDER_CLAIM_MAX
	                 ? MT_SENDER_HELD_MAX - sender->held
	                 : MT_SENDER_CLAIM_MAX;
	if (job == NULL || (job->messages = calloc(max, sizeof(*job->messages))) == NULL) {
		free(job);
		return;
	}
	job->sender = sender;
	job->max = max;
	sender->claiming = true;
	if (submit(sender, STORE_WRITE | STORE_REPLAYABLE, claim_run, claim_done, job) < 0) {
		sender->claiming = false;
		free(job->messages);
		free(job);
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

/* ---- leases ---- */

struct renew_job {
	char node_id[MT_ID_MAX];
	int64_t until;
};

static int renew_run(struct store_tx *tx, void *arg)
{
	struct renew_job *job = arg;
	return store_outbox_renew(tx, job->node_id, job->until);
}

struct renew_job_ref {
	struct renew_job job;
	struct sender *sender;
};

static void renew_done(void *arg, int result)
{
	struct renew_job_ref *ref = arg;
	struct sender *sender = ref->sender;
	if (result != 0)
		mt_log(MT_LOG_ERROR, "sender.renew_failed");
	free(ref);
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
	struct renew_job_ref *ref = calloc(1, sizeof(*ref));
	if (ref == NULL)
		return;
	ref->sender = sender;
	mt_strlcpy(ref->job.node_id, sender->node_id, sizeof(ref->job.node_id));
	ref->job.until = now_s() + sender->p.lease_s;
	if (submit(sender, STORE_WRITE | STORE_REPLAYABLE, renew_run, renew_done, ref) < 0)
		free(ref);
}

/* ---- queue depth for /metrics ---- */

#define STATS_INTERVAL_S 10

struct stats_job {
	struct sender *sender;
	int64_t counts[STORE_OUTBOX_CANCELLED + 1];
};

static int stats_run(struct store_tx *tx, void *arg)
{
	struct stats_job *job = arg;
	return store_outbox_counts(tx, job->counts);
}

static void stats_done(void *arg, int result)
{
	struct stats_job *job = arg;
	struct sender *sender = job->sender;
	for (int state = 0; result == 0 && state <= STORE_OUTBOX_CANCELLED; state++)
		mt_metric_set_gauge("mailtrail_outbox_messages", "Outbox messages by state",
		                    "state",
		                    store_outbox_state_name((enum store_outbox_state)state), NULL,
		                    NULL, (double)job->counts[state]);
	free(job);
	job_end(sender);
}

static void on_stats(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sender *sender = arg;
	struct timeval tv = {STATS_INTERVAL_S, 0};
	evtimer_add(sender->stats, &tv);
	struct stats_job *job = calloc(1, sizeof(*job));
	if (job == NULL)
		return;
	job->sender = sender;
	if (submit(sender, STORE_READ, stats_run, stats_done, job) < 0)
		free(job);
}

/* ---- life cycle ---- */

struct release_job {
	struct sender *sender;
	char node_id[MT_ID_MAX];
	size_t count;
};

static int release_run(struct store_tx *tx, void *arg)
{
	struct release_job *job = arg;
	return store_outbox_release_owner(tx, job->node_id, &job->count);
}

static void release_done(void *arg, int result)
{
	struct release_job *job = arg;
	struct sender *sender = job->sender;
	if (!sender->stopping) {
		char count[32];
		snprintf(count, sizeof(count), "%zu", job->count);
		mt_log(result == 0 ? MT_LOG_INFO : MT_LOG_ERROR, "sender.leases_released",
		       MT_KV("node", job->node_id), MT_KV("messages", count));
		sender->started = true;
		schedule_poll(sender, 0);
	}
	free(job);
	job_end(sender);
}

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
	sender->backoff.base_delay_s =
	    params->retry_base_s > 0 ? params->retry_base_s : DEFAULT_RETRY_S;
	sender->backoff.max_delay_s = 3600;
	sender->backoff.expiry_s = params->retry_expiry_s > 0 ? params->retry_expiry_s : 24 * 3600;
	mt_strlcpy(sender->node_id, params->node_id, sizeof(sender->node_id));
	sender->poll = evtimer_new(params->base, on_poll, sender);
	sender->renew = evtimer_new(params->base, on_renew, sender);
	sender->stats = evtimer_new(params->base, on_stats, sender);
	struct release_job *job = calloc(1, sizeof(*job));
	if (sender->poll == NULL || sender->renew == NULL || sender->stats == NULL || job == NULL) {
		free(job);
		*error_r = "out of memory";
		sender_free(&sender);
		return NULL;
	}
	struct timeval tv = {sender->p.lease_s / 3, 0};
	evtimer_add(sender->renew, &tv);
	struct timeval soon = {1, 0};
	evtimer_add(sender->stats, &soon);
	/* Leases this node held before a restart are ours: take them back at once. */
	job->sender = sender;
	mt_strlcpy(job->node_id, sender->node_id, sizeof(job->node_id));
	if (submit(sender, STORE_WRITE | STORE_REPLAYABLE, release_run, release_done, job) < 0) {
		free(job);
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
	/* Items whose result job is queued are freed by that job's completion. */
	for (struct item *item = sender->all, *next; item != NULL; item = next) {
		next = item->all_next;
		if (!item->finishing)
			item_free(sender, item);
	}
	if (sender->poll != NULL)
		event_free(sender->poll);
	if (sender->renew != NULL)
		event_free(sender->renew);
	if (sender->stats != NULL)
		event_free(sender->stats);
	sender->poll = sender->renew = sender->stats = NULL;
	/* What was claimed and not finished goes back to the queue now, not at lease expiry. */
	struct release_job *job = calloc(1, sizeof(*job));
	if (job != NULL) {
		job->sender = sender;
		mt_strlcpy(job->node_id, sender->node_id, sizeof(job->node_id));
		if (submit(sender, STORE_WRITE | STORE_REPLAYABLE, release_run, release_done, job) <
		    0)
			free(job);
	}
	if (sender->jobs == 0)
		free(sender);
}
