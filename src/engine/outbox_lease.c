#include "engine/outbox_lease.h"

#include "engine/governor.h"
#include "engine/matcher.h"
#include "lib/log.h"
#include "lib/str.h"
#include "mime/build.h"
#include "proto/smtp_data.h"
#include "store/store.h"
#include "store/store_governor.h"
#include "store/store_message.h"
#include "store/store_org.h"
#include "store/store_user.h"

#include <sodium.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void outbox_item_free(struct outbox_item **item_p)
{
	struct outbox_item *item = *item_p;
	if (item == NULL)
		return;
	*item_p = NULL;
	store_outbox_message_free(&item->msg);
	free(item->head);
	free(item);
}

void outbox_claim_free(struct outbox_claim *claim)
{
	for (size_t i = 0; i < claim->count; i++)
		outbox_item_free(&claim->items[i]);
	free(claim->items);
	if (claim->accounts != NULL) {
		sodium_memzero(claim->accounts, claim->account_count * sizeof(*claim->accounts));
		free(claim->accounts);
	}
	memset(claim, 0, sizeof(*claim));
}

/* ---- claim ---------------------------------------------------------------------------------- */

const char *outbox_hold_name(size_t index)
{
	static const char *const names[] = {"minute", "hour", "day", "pause"};
	return index < sizeof(names) / sizeof(names[0]) ? names[index] : "?";
}

struct claim_job {
	char owner[MT_ID_MAX];
	int64_t now, now_ms, lease_s;
	size_t max;
	bool preload_relay;
	char (*preload_users)[MT_ID_MAX]; /* sorted */
	size_t preload_user_count;
	size_t preload_bytes;
	struct outbox_relay relay;
	outbox_claim_done_fn *done;
	void *ctx;
	char (*ids)[MT_ID_MAX]; /* `max`: the ids the store claimed */
	struct outbox_claim claim;
};

/* The user's world while its messages are routed (too large for the stack of a job). */
struct world {
	struct store_user user;
	struct store_org org;
	struct store_smtp_account account;
	bool have_account;
};

static int by_user(const void *a, const void *b)
{
	const struct outbox_item *x = *(const struct outbox_item *const *)a;
	const struct outbox_item *y = *(const struct outbox_item *const *)b;
	int c = strcmp(x->msg.org_id, y->msg.org_id);
	return c != 0 ? c : strcmp(x->msg.user_id, y->msg.user_id);
}

static size_t hold_index(const struct governor_grant *g)
{
	if (g->paused)
		return GOVERNOR_HOLD_PAUSE;
	return strcmp(g->window, "minute") == 0 ? GOVERNOR_HOLD_MINUTE
	       : strcmp(g->window, "hour") == 0 ? GOVERNOR_HOLD_HOUR
	                                        : GOVERNOR_HOLD_DAY;
}

/* A routed item under its account's limits: its recipients' slots reserved, or the message
 * held (*held_r: it leaves the claim). */
static int govern_item(struct store_tx *tx, struct claim_job *job, struct outbox_item *item,
                       const struct world *w, bool *held_r)
{
	*held_r = false;
	struct store_outbox_message *m = &item->msg;
	struct governor_account ga;
	if (item->route.relay)
		governor_account_init(&ga, m->org_id, m->user_id, true, job->relay.limits,
		                      job->relay.limit_count);
	else
		governor_account_init(&ga, m->org_id, m->user_id, false, w->account.limits,
		                      w->account.limit_count);
	mt_strlcpy(item->governor, ga.key, sizeof(item->governor));
	struct governor_grant g;
	int rc = governor_reserve(tx, &ga, m->id, m->lease_token, m->rcpts, m->rcpt_count,
	                          job->now_ms, job->lease_s * 1000, &g);
	if (rc != 0)
		return rc;
	switch (g.verdict) {
	case GOVERNOR_GO:
		item->reserved_at_ms = g.reserved_at_ms;
		return 0;
	case GOVERNOR_NEVER:
		item->never = true;
		snprintf(item->reason, sizeof(item->reason),
		         "the message has %zu recipients to go; the send limit allows %lld per %s",
		         m->rcpt_count, (long long)g.limit, g.window);
		return 0;
	case GOVERNOR_WAIT:
		break;
	}
	/* Whole seconds, rounded up: it is shown as a time, and never earlier than the slot. */
	rc = store_outbox_hold(tx, m->id, m->lease_token, ga.key, (g.until_ms + 999) / 1000,
	                       job->now);
	if (rc != 0)
		return rc;
	size_t index = hold_index(&g);
	job->claim.holds[index]++;
	job->claim.hold_wait_ms[index] += g.until_ms > job->now_ms ? g.until_ms - job->now_ms : 0;
	*held_r = true;
	return 0;
}

static void route_item(struct outbox_item *item, const struct world *w,
                       const struct outbox_relay *relay)
{
	const char *reason;
	struct store_mailbox none = {{0}, {0}};
	const struct store_mailbox *reply_to =
	    item->msg.reply_to.address[0] != '\0' ? &item->msg.reply_to : &none;
	if (outbox_route(&w->org, &w->user, w->have_account ? &w->account : NULL, relay,
	                 outbox_mail_kind_of(&item->msg), reply_to, &item->route, &reason) < 0) {
		mt_strlcpy(item->reason, reason, sizeof(item->reason));
		return;
	}
	item->routable = true;
}

int outbox_item_head(struct outbox_item *item)
{
	if (!item->routable || !item->msg.head_apart || item->head != NULL)
		return 0; /* stored whole before migration 7: it goes as it is */
	struct mime_mailbox from, sender, reply;
	mt_strlcpy(from.address, item->route.from.address, sizeof(from.address));
	mt_strlcpy(from.name, item->route.from.name, sizeof(from.name));
	mt_strlcpy(sender.address, item->route.sender.address, sizeof(sender.address));
	mt_strlcpy(sender.name, item->route.sender.name, sizeof(sender.name));
	mt_strlcpy(reply.address, item->route.reply_to.address, sizeof(reply.address));
	mt_strlcpy(reply.name, item->route.reply_to.name, sizeof(reply.name));
	const struct mime_build_head head = {
	    .from = &from,
	    .sender = sender.address[0] != '\0' ? &sender : NULL,
	    .reply_to = reply.address[0] != '\0' ? &reply : NULL,
	    .message_id = item->msg.message_id,
	    .mailtrail_id = item->msg.mailtrail_id,
	};
	const char *error;
	if (mime_build_head_fields(&head, &item->head, &item->head_len, &error) < 0) {
		item->routable = false;
		snprintf(item->reason, sizeof(item->reason), "cannot write the From field: %s",
		         error);
		return -1;
	}
	return 0;
}

/* One slot per user with a custom route, grown as users come (a claim of 250 messages has few
 * users, and 250 zeroed slots of 6 KB were a tenth of the store thread's time in bench/send).
 * Grown by hand: the slots hold secrets, which realloc would leave behind. */
static int claim_add_account(struct outbox_claim *c, const struct store_smtp_account *account)
{
	if (c->account_count == c->account_cap) {
		size_t cap = c->account_cap ? c->account_cap * 2 : 4;
		struct store_smtp_account *grown = malloc(cap * sizeof(*grown));
		if (grown == NULL)
			return -1;
		if (c->account_count > 0) {
			memcpy(grown, c->accounts, c->account_count * sizeof(*grown));
			sodium_memzero(c->accounts, c->account_count * sizeof(*grown));
		}
		free(c->accounts);
		c->accounts = grown;
		c->account_cap = cap;
	}
	c->accounts[c->account_count++] = *account;
	return 0;
}

static int by_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

static bool preload_wanted(const struct claim_job *job, const struct outbox_item *item)
{
	if (!item->routable)
		return false;
	if (item->route.relay)
		return job->preload_relay;
	return job->preload_user_count > 0 &&
	       bsearch(item->msg.user_id, job->preload_users, job->preload_user_count,
	               sizeof(*job->preload_users), by_id) != NULL;
}

/* An item's body (NULL when it is gone), and whether it has 8-bit bytes: looked for here, on
 * the store thread, so the SMTP client does not scan a large body on the loop before its
 * MAIL FROM. Both loads go through it: the claim's preload and a session's later load. */
static int load_body(struct store_tx *tx, struct outbox_item *item)
{
	struct store_outbox_message *m = &item->msg;
	free(m->body); /* a run before this one */
	m->body = NULL;
	int rc = store_outbox_body(tx, m->id, &m->body, &m->body_len);
	item->body_8bit = rc == 0 && m->body != NULL && smtp_data_has_8bit(m->body, m->body_len);
	return rc;
}

/* The bodies of the routed messages whose account has a session ready, in claim order, within
 * the bytes held for them: one store job where a body load of its own would queue behind the
 * finishes (bench/send: sessions ran dry waiting for it). In order, so that no body waits behind
 * one not loaded; a body larger than the bytes loads when a session has room for it. */
static int preload_bodies(struct store_tx *tx, struct claim_job *job)
{
	struct outbox_claim *c = &job->claim;
	size_t bytes = 0;
	for (size_t i = 0; job->preload_bytes > 0 && i < c->count; i++) {
		struct outbox_item *item = c->items[i];
		if (!preload_wanted(job, item))
			continue;
		if (bytes + item->msg.body_len > job->preload_bytes)
			break;
		int rc = load_body(tx, item);
		if (rc == STORE_NOT_FOUND)
			continue; /* gone: the sender finishes it */
		if (rc != 0)
			return rc;
		bytes += item->msg.body_len;
	}
	return 0;
}

/* An item's fields after its message: what a claim zeroes. */
_Static_assert(offsetof(struct outbox_item, msg) == 0, "msg leads struct outbox_item");
#define ITEM_TAIL sizeof(((struct outbox_item *)0)->msg)

static int claim_run(struct store_tx *tx, void *arg)
{
	struct claim_job *job = arg;
	/* What a run before this one (rolled back, see STORE_REPLAYABLE) left. */
	outbox_claim_free(&job->claim);
	/* Held mail whose account has room again is due now, and claimed below. */
	int rc = governor_wake(tx, job->now_ms, job->relay.limits, job->relay.limit_count,
	                       &job->claim.woken);
	if (rc != 0)
		return rc;
	/* Each message is read straight into its item: items are ~10 KB, and zeroing them and
	 * copying the message in was a tenth of the store thread's time in bench/send. */
	size_t count = 0;
	rc = store_outbox_claim_ids(tx, job->owner, job->now, job->lease_s, job->max, job->ids,
	                            &count);
	if (rc != 0)
		return rc;
	struct outbox_claim *c = &job->claim;
	c->full = count == job->max;
	c->items = calloc(count ? count : 1, sizeof(*c->items));
	struct world *w = malloc(sizeof(*w));
	rc = c->items == NULL || w == NULL ? -1 : 0;
	for (size_t i = 0; rc == 0 && i < count; i++) {
		struct outbox_item *item = malloc(sizeof(*item));
		if (item == NULL) {
			rc = -1;
			break;
		}
		rc = store_outbox_get_claimed(tx, job->ids[i], &item->msg);
		if (rc != 0) {
			free(item); /* the store left nothing in it to free */
			break;
		}
		memset((char *)item + ITEM_TAIL, 0, sizeof(*item) - ITEM_TAIL);
		c->items[c->count++] = item;
	}
	/* One user's world at a time: the messages grouped by user. */
	if (rc == 0)
		qsort(c->items, c->count, sizeof(*c->items), by_user);
	for (size_t i = 0; rc == 0 && i < c->count;) {
		const struct store_outbox_message *first = &c->items[i]->msg;
		int got = store_user_get(tx, first->org_id, first->user_id, &w->user);
		if (got == 0)
			got = store_org_get(tx, first->org_id, &w->org);
		if (got == 0) {
			int a =
			    store_smtp_account_get(tx, first->org_id, first->user_id, &w->account);
			w->have_account = a == 0;
			if (a != 0 && a != STORE_NOT_FOUND)
				got = a;
		}
		if (got != 0 && got != STORE_NOT_FOUND) {
			rc = got;
			break;
		}
		bool custom_used = false;
		size_t j = i;
		for (; j < c->count && by_user(&c->items[i], &c->items[j]) == 0; j++) {
			struct outbox_item *item = c->items[j];
			if (got == STORE_NOT_FOUND) {
				mt_strlcpy(item->reason, "the user or its org no longer exists",
				           sizeof(item->reason));
				continue;
			}
			route_item(item, w, &job->relay);
			if (item->routable && item->route.held) {
				/* Waits for the reconnect in this same transaction: not the
				 * sender's. */
				if (store_outbox_hold(tx, item->msg.id, item->msg.lease_token,
				                      STORE_HOLD_RECONNECT, 0, job->now) != 0) {
					rc = -1; /* claimed in this transaction: never lost */
					break;
				}
				item->routable = false;
				item->held = true;
				continue;
			}
			bool held = false;
			if (item->routable && (rc = govern_item(tx, job, item, w, &held)) != 0)
				break;
			if (held) {
				item->held =
				    true; /* the governor holds it: leaves the claim below */
				continue;
			}
			custom_used = custom_used || (item->routable && !item->route.relay);
		}
		if (rc != 0)
			break;
		if (custom_used && (rc = claim_add_account(c, &w->account)) != 0)
			break;
		i = j;
	}
	if (w != NULL)
		sodium_memzero(&w->account, sizeof(w->account));
	free(w);
	/* Held messages (by the governor, or for a reconnect) are no longer this node's. */
	size_t kept = 0;
	for (size_t i = 0; rc == 0 && i < c->count; i++) {
		if (c->items[i] != NULL && c->items[i]->held)
			outbox_item_free(&c->items[i]);
		else
			c->items[kept++] = c->items[i];
	}
	if (rc == 0)
		c->count = kept;
	if (rc == 0)
		rc = preload_bodies(tx, job);
	if (rc == 0)
		rc = store_governor_next_wake(tx, &c->next_wake_ms);
	return rc;
}

static void claim_done(void *arg, int result)
{
	struct claim_job *job = arg;
	job->done(job->ctx, result, &job->claim);
	outbox_claim_free(&job->claim);
	free(job->ids);
	free(job->preload_users);
	free(job);
}

int outbox_lease_claim(struct store *store, const char *owner, int64_t now_ms, int64_t lease_s,
                       size_t max, const struct outbox_preload *preload,
                       const struct outbox_relay *relay, outbox_claim_done_fn *done, void *ctx)
{
	int64_t now = now_ms / 1000;
	struct claim_job *job = calloc(1, sizeof(*job));
	if (job == NULL || (job->ids = calloc(max ? max : 1, sizeof(*job->ids))) == NULL) {
		free(job);
		return -1;
	}
	mt_strlcpy(job->owner, owner, sizeof(job->owner));
	job->now = now;
	job->now_ms = now_ms;
	job->lease_s = lease_s;
	job->max = max;
	job->preload_relay = preload->relay;
	job->preload_bytes = preload->bytes;
	if (preload->user_count > 0) {
		job->preload_users = calloc(preload->user_count, sizeof(*job->preload_users));
		if (job->preload_users == NULL) {
			free(job->ids);
			free(job);
			return -1;
		}
		for (size_t i = 0; i < preload->user_count; i++)
			mt_strlcpy(job->preload_users[i], preload->users[i],
			           sizeof(job->preload_users[i]));
		qsort(job->preload_users, preload->user_count, sizeof(*job->preload_users), by_id);
		job->preload_user_count = preload->user_count;
	}
	job->relay = *relay;
	job->done = done;
	job->ctx = ctx;
	if (store_submit(store, STORE_WRITE | STORE_REPLAYABLE, claim_run, claim_done, job) < 0) {
		free(job->ids);
		free(job->preload_users);
		free(job);
		return -1;
	}
	return 0;
}

/* ---- bodies --------------------------------------------------------------------------------- */

struct bodies_job {
	struct outbox_item **items;
	size_t count;
	outbox_bodies_done_fn *done;
	void *ctx;
};

static int bodies_run(struct store_tx *tx, void *arg)
{
	struct bodies_job *job = arg;
	for (size_t i = 0; i < job->count; i++) {
		int rc = load_body(tx, job->items[i]);
		if (rc != 0 && rc != STORE_NOT_FOUND)
			return rc;
	}
	return 0;
}

static void bodies_done(void *arg, int result)
{
	struct bodies_job *job = arg;
	job->done(job->ctx, result);
	free(job->items);
	free(job);
}

int outbox_lease_bodies(struct store *store, struct outbox_item *const *items, size_t count,
                        outbox_bodies_done_fn *done, void *ctx)
{
	struct bodies_job *job = calloc(1, sizeof(*job));
	if (job == NULL || (job->items = calloc(count, sizeof(*job->items))) == NULL) {
		free(job);
		return -1;
	}
	memcpy(job->items, items, count * sizeof(*items));
	job->count = count;
	job->done = done;
	job->ctx = ctx;
	if (store_submit(store, STORE_READ, bodies_run, bodies_done, job) < 0) {
		free(job->items);
		free(job);
		return -1;
	}
	return 0;
}

/* ---- finish --------------------------------------------------------------------------------- */

struct finish_job;

struct finish_list {
	struct finish_job *head, *tail;
	size_t count;
};

/* Results wait here while a batch of them is in the store, and go as the next batch when it is
 * back: one store job (one read of the org's rules per user, one completion) for the results
 * of many attempts under load, and still one job at once for a lone result. */
struct outbox_finishes {
	struct store *store;
	struct finish_list waiting;
	size_t in_flight; /* batches in the store */
};

struct finish_batch {
	struct outbox_finishes *owner;
	struct finish_job *head;           /* in the order the results came */
	const struct store_message **msgs; /* the matcher's input and output, per run */
	struct matcher_result *matches;
};

struct finish_job {
	struct finish_job *next; /* in its batch, or waiting for one */
	int outcome;             /* this attempt's, set afresh on every run of the batch */
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	char route[8];
	char mail_from[MT_ADDRESS_MAX + 1];
	struct store_outbox_result result;
	struct store_outbox_rcpt *rcpts;
	char last_error[MT_ERROR_TEXT_MAX];
	bool log_activity;
	/* The governor: the attempt's account, its reservations, a pause to start */
	bool governed;
	struct governor_account governor;
	int64_t reserved_at_ms;
	int64_t lease_token;
	bool pause;
	int64_t pause_s;
	int64_t now_ms;
	struct store_message activity;
	struct store_mailbox *participants;
	struct store_attachment *attachments;
	outbox_finish_done_fn *done;
	void *ctx;
};

static void finish_job_free(struct finish_job *job)
{
	free(job->rcpts);
	free(job->participants);
	free(job->attachments);
	free(job);
}

/* The outbox's own copy of the message, restricted to the recipients that have it now. */
static int prepare_activity(struct finish_job *job, const struct outbox_item *item)
{
	const struct store_outbox_message *m = &item->msg;
	struct store_message *a = &job->activity;
	size_t n = job->result.rcpt_count;
	job->participants = calloc(n ? n : 1, sizeof(*job->participants));
	if (job->participants == NULL)
		return -1;
	size_t counts[3] = {0, 0, 0};
	/* Grouped by kind: to first, then cc, then bcc, as the store wants three arrays. */
	for (int kind = STORE_RCPT_TO; kind <= STORE_RCPT_BCC; kind++) {
		for (size_t i = 0; i < n; i++) {
			const struct store_outbox_rcpt *r = &job->rcpts[i];
			if ((int)r->kind != kind || r->state != STORE_RCPT_SENT)
				continue;
			struct store_mailbox *mb =
			    &job->participants[counts[0] + counts[1] + counts[2]];
			mt_strlcpy(mb->address, r->address, sizeof(mb->address));
			mt_strlcpy(mb->name, r->name, sizeof(mb->name));
			counts[kind]++;
		}
	}
	a->alias_count = 0;
	if (m->message_id[0] != '\0')
		snprintf(a->aliases[a->alias_count++], MT_MESSAGE_KEY_MAX, "mid:%s", m->message_id);
	if (m->mailtrail_id[0] != '\0')
		snprintf(a->aliases[a->alias_count++], MT_MESSAGE_KEY_MAX, "mt:%s",
		         m->mailtrail_id);
	mt_strlcpy(a->message_id, m->message_id, sizeof(a->message_id));
	mt_strlcpy(a->outbox_id, m->id, sizeof(a->outbox_id));
	/* mime_thread_root() of what we send: POST /v1/messages sets no In-Reply-To or References
	 * (yet), so our message starts its thread. */
	matcher_set_thread_root(a, m->message_id);
	a->date = m->created_at;
	a->from = item->routable ? item->route.record_from : m->from;
	a->to = job->participants;
	a->to_count = counts[0];
	a->cc = job->participants + counts[0];
	a->cc_count = counts[1];
	a->bcc = job->participants + counts[0] + counts[1];
	a->bcc_count = counts[2];
	mt_strlcpy(a->subject, m->subject, sizeof(a->subject));
	mt_strlcpy(a->snippet, m->snippet, sizeof(a->snippet));
	/* The attachments come from the store in the job itself (finish_one). */
	return 0;
}

/* One attempt's result, its lease known to be held: the governor's reservations settled, the
 * row and its recipients, and the attachments its activity lists. */
static int finish_one(struct store_tx *tx, struct finish_job *job)
{
	if (job->governed) {
		int64_t paused_until_ms = 0;
		int rc = governor_settle(tx, &job->governor, job->result.id, job->lease_token,
		                         job->reserved_at_ms, job->rcpts, job->result.rcpt_count,
		                         job->now_ms, job->pause, job->pause_s, &paused_until_ms);
		if (rc != 0)
			return rc;
		/* Set afresh on every run (STORE_REPLAYABLE). */
		if (job->pause)
			job->result.next_attempt_at = (paused_until_ms + 999) / 1000;
	}
	int rc = store_outbox_finish(tx, &job->result);
	if (rc != 0 || !job->log_activity)
		return rc;
	size_t count = 0;
	rc = store_outbox_attachments(tx, job->result.id, &job->attachments, &count);
	if (rc != 0)
		return rc;
	job->activity.attachments = job->attachments;
	job->activity.attachment_count = count;
	return 0;
}

/* The results that reach someone pass to the matcher, a run of one user's in one call (the
 * org's rules read once for them). */
static int finish_log(struct store_tx *tx, struct finish_batch *batch)
{
	size_t n = 0;
	const struct finish_job *first = NULL;
	for (struct finish_job *j = batch->head;; j = j->next) {
		bool logs = j != NULL && j->outcome == 0 && j->log_activity;
		if (n > 0 && (j == NULL || (logs && (strcmp(j->org_id, first->org_id) != 0 ||
		                                     strcmp(j->user_id, first->user_id) != 0)))) {
			int rc = matcher_log_messages(tx, first->org_id, first->user_id,
			                              STORE_SOURCE_OUTBOX, batch->msgs, n,
			                              batch->matches);
			if (rc != 0)
				return rc;
			n = 0;
		}
		if (j == NULL)
			return 0;
		if (!logs)
			continue;
		if (n == 0)
			first = j;
		batch->msgs[n++] = &j->activity;
	}
}

static int finish_batch_run(struct store_tx *tx, void *arg)
{
	struct finish_batch *batch = arg;
	/* Outputs afresh (STORE_REPLAYABLE): a run may follow a rolled-back one. */
	for (struct finish_job *j = batch->head; j != NULL; j = j->next) {
		j->outcome = 0;
		free(j->attachments);
		j->attachments = NULL;
		j->activity.attachments = NULL;
		j->activity.attachment_count = 0;
	}
	for (struct finish_job *j = batch->head; j != NULL; j = j->next) {
		/* A lost lease leaves that attempt untouched and the others recorded: asked before
		 * anything of it is written, so nothing of it needs undoing. */
		int rc = store_outbox_lease_held(tx, j->result.id, j->lease_token);
		if (rc == STORE_CONFLICT || rc == STORE_NOT_FOUND) {
			j->outcome = STORE_CONFLICT;
			continue;
		}
		if (rc == 0)
			rc = finish_one(tx, j);
		if (rc != 0)
			return rc;
	}
	return finish_log(tx, batch);
}

static void finish_batch_free(struct finish_batch *batch)
{
	free(batch->msgs);
	free(batch->matches);
	free(batch);
}

static int finish_batch_submit(struct outbox_finishes *finishes);

static void finish_batch_done(void *arg, int result)
{
	struct finish_batch *batch = arg;
	struct outbox_finishes *finishes = batch->owner;
	finishes->in_flight--;
	/* The next batch goes before these callbacks: its attempts are still the caller's, so
	 * the caller (and `finishes`) outlive it, while these callbacks may end the caller. */
	if (finishes->in_flight == 0 && finishes->waiting.head != NULL)
		finish_batch_submit(finishes);
	for (struct finish_job *j = batch->head, *next; j != NULL; j = next) {
		next = j->next;
		j->done(j->ctx, result != 0 ? result : j->outcome);
		finish_job_free(j);
	}
	finish_batch_free(batch);
}

/* Everything waiting, in one store job. -1 when it could not be submitted: the waiting results
 * have then been answered with -1. */
static int finish_batch_submit(struct outbox_finishes *finishes)
{
	struct finish_batch *batch = calloc(1, sizeof(*batch));
	size_t n = finishes->waiting.count;
	if (batch != NULL) {
		batch->msgs = calloc(n, sizeof(*batch->msgs));
		batch->matches = calloc(n, sizeof(*batch->matches));
	}
	struct finish_job *head = finishes->waiting.head;
	finishes->waiting = (struct finish_list){0};
	if (batch != NULL && batch->msgs != NULL && batch->matches != NULL) {
		batch->owner = finishes;
		batch->head = head;
		if (store_submit(finishes->store, STORE_WRITE_DURABLE | STORE_REPLAYABLE,
		                 finish_batch_run, finish_batch_done, batch) == 0) {
			finishes->in_flight++;
			return 0;
		}
	}
	if (batch != NULL)
		finish_batch_free(batch);
	for (struct finish_job *j = head, *next; j != NULL; j = next) {
		next = j->next;
		j->done(j->ctx, -1);
		finish_job_free(j);
	}
	return -1;
}

struct outbox_finishes *outbox_finishes_new(struct store *store)
{
	struct outbox_finishes *finishes = calloc(1, sizeof(*finishes));
	if (finishes != NULL)
		finishes->store = store;
	return finishes;
}

void outbox_finishes_free(struct outbox_finishes **finishes_p)
{
	free(*finishes_p);
	*finishes_p = NULL;
}

void outbox_finishes_flush(struct outbox_finishes *finishes)
{
	if (finishes != NULL && finishes->waiting.head != NULL)
		finish_batch_submit(finishes);
}

int outbox_lease_finish(struct outbox_finishes *finishes, const struct outbox_item *item,
                        const struct outbox_verdict *v, int64_t pause_s,
                        outbox_finish_done_fn *done, void *ctx)
{
	const struct store_outbox_message *m = &item->msg;
	struct finish_job *job = calloc(1, sizeof(*job));
	if (job == NULL ||
	    (job->rcpts = calloc(m->rcpt_count ? m->rcpt_count : 1, sizeof(*job->rcpts))) == NULL) {
		free(job);
		return -1;
	}
	mt_strlcpy(job->org_id, m->org_id, sizeof(job->org_id));
	mt_strlcpy(job->user_id, m->user_id, sizeof(job->user_id));
	mt_strlcpy(job->route, item->routable ? (item->route.relay ? "relay" : "custom") : m->route,
	           sizeof(job->route));
	mt_strlcpy(job->mail_from, item->routable ? item->route.mail_from : m->mail_from,
	           sizeof(job->mail_from));
	mt_strlcpy(job->last_error, v->last_error, sizeof(job->last_error));
	for (size_t i = 0; i < m->rcpt_count; i++) {
		job->rcpts[i] = m->rcpts[i];
		job->rcpts[i].state = v->rcpt_states[i];
	}
	struct store_outbox_result *r = &job->result;
	r->id = m->id;
	r->lease_token = m->lease_token;
	r->state = v->state;
	r->route = job->route;
	r->mail_from = job->mail_from;
	r->next_attempt_at = v->next_attempt_at;
	r->first_attempt_at = v->first_attempt_at;
	r->last_error = job->last_error;
	r->last_class = v->cls == MT_CLASS_NONE ? "" : mt_class_name(v->cls);
	r->rcpts = job->rcpts;
	r->rcpt_count = m->rcpt_count;
	r->sent_at = v->any_sent ? (int64_t)time(NULL) : 0;
	job->log_activity = v->any_sent && prepare_activity(job, item) == 0;
	job->governed = item->routable && item->governor[0] != '\0';
	if (job->governed)
		governor_account_init(&job->governor, m->org_id, m->user_id, item->route.relay,
		                      NULL, 0);
	job->reserved_at_ms = item->reserved_at_ms;
	job->lease_token = m->lease_token;
	job->pause = v->state == STORE_OUTBOX_HELD;
	job->pause_s = pause_s;
	job->now_ms = mt_wall_ms();
	r->hold_key = job->governed ? job->governor.key : "";
	if (job->pause && !job->governed) {
		/* No account to wait for: an ordinary retry after the pause. */
		r->state = STORE_OUTBOX_QUEUED;
		r->next_attempt_at = job->now_ms / 1000 + pause_s;
		job->pause = false;
	}
	job->done = done;
	job->ctx = ctx;
	if (finishes->waiting.tail != NULL)
		finishes->waiting.tail->next = job;
	else
		finishes->waiting.head = job;
	finishes->waiting.tail = job;
	finishes->waiting.count++;
	/* While a batch is in the store the results gather for the next one; a pause goes at
	 * once, ahead of the holds its caller submits next. */
	if (finishes->in_flight == 0 || v->state == STORE_OUTBOX_HELD)
		finish_batch_submit(finishes);
	return 0;
}

/* ---- requeue -------------------------------------------------------------------------------- */

struct requeue_job {
	char id[MT_ID_MAX];
	int64_t lease_token;
	outbox_finish_done_fn *done;
	void *ctx;
};

static int requeue_run(struct store_tx *tx, void *arg)
{
	struct requeue_job *job = arg;
	return store_outbox_requeue(tx, job->id, job->lease_token, (int64_t)time(NULL));
}

static void requeue_done(void *arg, int result)
{
	struct requeue_job *job = arg;
	job->done(job->ctx, result);
	free(job);
}

int outbox_lease_requeue(struct store *store, const struct outbox_item *item,
                         outbox_finish_done_fn *done, void *ctx)
{
	struct requeue_job *job = calloc(1, sizeof(*job));
	if (job == NULL)
		return -1;
	mt_strlcpy(job->id, item->msg.id, sizeof(job->id));
	job->lease_token = item->msg.lease_token;
	job->done = done;
	job->ctx = ctx;
	if (store_submit(store, STORE_WRITE | STORE_REPLAYABLE, requeue_run, requeue_done, job) <
	    0) {
		free(job);
		return -1;
	}
	return 0;
}

/* ---- renew, release, counts ----------------------------------------------------------------- */

struct lease_job {
	char owner[MT_ID_MAX];
	int64_t until;
	bool release;
	size_t count;
	int64_t counts[STORE_OUTBOX_CANCELLED + 1];
	outbox_lease_done_fn *done;
	outbox_counts_done_fn *counts_done;
	void *ctx;
};

static int lease_run(struct store_tx *tx, void *arg)
{
	struct lease_job *job = arg;
	if (job->counts_done != NULL)
		return store_outbox_counts(tx, job->counts);
	if (job->release)
		return store_outbox_release_owner(tx, job->owner, &job->count);
	return store_outbox_renew(tx, job->owner, job->until);
}

static void lease_done(void *arg, int result)
{
	struct lease_job *job = arg;
	if (job->counts_done != NULL)
		job->counts_done(job->ctx, result, job->counts);
	else
		job->done(job->ctx, result, job->count);
	free(job);
}

static int lease_submit(struct store *store, struct lease_job *job, enum store_job_kind kind)
{
	if (store_submit(store, kind, lease_run, lease_done, job) < 0) {
		free(job);
		return -1;
	}
	return 0;
}

int outbox_lease_renew(struct store *store, const char *owner, int64_t until,
                       outbox_lease_done_fn *done, void *ctx)
{
	struct lease_job *job = calloc(1, sizeof(*job));
	if (job == NULL)
		return -1;
	mt_strlcpy(job->owner, owner, sizeof(job->owner));
	job->until = until;
	job->done = done;
	job->ctx = ctx;
	return lease_submit(store, job, STORE_WRITE | STORE_REPLAYABLE);
}

int outbox_lease_release(struct store *store, const char *owner, outbox_lease_done_fn *done,
                         void *ctx)
{
	struct lease_job *job = calloc(1, sizeof(*job));
	if (job == NULL)
		return -1;
	mt_strlcpy(job->owner, owner, sizeof(job->owner));
	job->release = true;
	job->done = done;
	job->ctx = ctx;
	return lease_submit(store, job, STORE_WRITE | STORE_REPLAYABLE);
}

int outbox_lease_counts(struct store *store, outbox_counts_done_fn *done, void *ctx)
{
	struct lease_job *job = calloc(1, sizeof(*job));
	if (job == NULL)
		return -1;
	job->counts_done = done;
	job->ctx = ctx;
	return lease_submit(store, job, STORE_READ);
}

struct give_back_job {
	char id[MT_ID_MAX];
	int64_t lease_token;
	int answer; /* 0 or STORE_CONFLICT */
	outbox_finish_done_fn *done;
	void *ctx;
};

static int give_back_run(struct store_tx *tx, void *arg)
{
	struct give_back_job *job = arg;
	job->answer = store_outbox_give_back(tx, job->id, job->lease_token);
	/* A lost lease is an answer, not a reason to roll back. */
	return job->answer == STORE_CONFLICT ? 0 : job->answer;
}

static void give_back_done(void *arg, int result)
{
	struct give_back_job *job = arg;
	job->done(job->ctx, result != 0 ? result : job->answer);
	free(job);
}

int outbox_lease_give_back(struct store *store, const struct outbox_item *item,
                           outbox_finish_done_fn *done, void *ctx)
{
	struct give_back_job *job = calloc(1, sizeof(*job));
	if (job == NULL)
		return -1;
	mt_strlcpy(job->id, item->msg.id, sizeof(job->id));
	job->lease_token = item->msg.lease_token;
	job->done = done;
	job->ctx = ctx;
	if (store_submit(store, STORE_WRITE_DURABLE | STORE_REPLAYABLE, give_back_run,
	                 give_back_done, job) < 0) {
		free(job);
		return -1;
	}
	return 0;
}
