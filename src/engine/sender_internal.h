/* What engine/sender.c (claims, leases, life cycle) and engine/sender_session.c (sessions,
 * bodies, results) share: the sender's structs and the functions between the two. Nothing else
 * includes this. See engine/sender.h. */
#ifndef MT_ENGINE_SENDER_INTERNAL_H
#define MT_ENGINE_SENDER_INTERNAL_H

#include "engine/outbox_lease.h"
#include "engine/sender.h"
#include "lib/backoff.h"
#include "lib/failure.h"
#include "smtp/client.h"
#include "store/store_smtp.h"

#include <event2/util.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event;
struct oauth_broker_ask;
struct mt_secret;

#define SESSION_COOLDOWN_S 30 /* after a session failed before sending anything */

/* One claimed message on its way. Its body is loaded only when its account has a ready session
 * (with the claim, or when a session has room for it) and the byte budgets allow
 * (MT_SENDER_BODY_BYTES_MAX, MT_SENDER_ACCOUNT_BODY_BYTES_MAX). */
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
	bool recall;    /* its campaign was paused or cancelled: give it back, do not send it */
};

struct session {
	struct account *account;
	struct smtp_client *client;
	unsigned inflight;
	bool ready;
	bool quitting;
	bool confirming;     /* the fresh attempt that confirms a broken account, or clears it */
	int64_t token_fence; /* on a grant: the version of the token it logged in with */
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
	size_t recalls;    /* queued items marked `recall` */
	/* Handed to a session and not yet durably recorded: what a crash may send twice. Kept at
	 * most sessions_per_account x max_inflight. */
	size_t unrecorded;
	struct session *sessions;
	unsigned session_count;
	int64_t cooldown_until;
	/* A throttle or quota reply: nothing is fed until then, what is queued is held (the
	 * store's pause, which may be longer, keeps later claims from bringing more). */
	int64_t paused_until;
	/* Why its last session failed, for the items whose body was loading meanwhile. */
	enum mt_failure_class failed_cls;
	char failed_reason[MT_ERROR_TEXT_MAX];
	/* The disconnect story (engine/outbox_policy.h outbox_session_failed): the pause before
	 * the confirming attempt runs (its timer), the confirming session is open, or the account
	 * is being disconnected (its store jobs run) — then its items go back to the queue
	 * (`rerouting`), routed again by their next claim. */
	bool awaiting_confirm;
	bool confirm_open;
	bool disconnecting;
	bool rerouting;
	struct event *confirm_timer;
	/* On an OAuth grant (engine/oauth_broker.h): the token for the next login, asked for
	 * before each one; after the server refused one, a single forced refresh and retry comes
	 * before the disconnect story. */
	struct oauth_broker_ask *token_ask;
	struct mt_secret *token;
	int64_t token_fence;
	int64_t refused_fence; /* -1: none */
	bool token_retried;
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
	size_t held;           /* claimed, not yet finished */
	size_t fed;            /* of which handed to a session: the accounts' `unrecorded` */
	size_t body_bytes;     /* loaded or loading, node-wide */
	size_t claim_reserved; /* of which held for the bodies a claim in flight may bring */
	unsigned jobs;         /* store jobs in flight: the sender outlives them */
	struct outbox_finishes *finishes; /* the attempts' results on their way to the store */
	struct item *all;
	struct account *accounts;
	struct mt_backoff backoff;
};

int64_t sender_now(void);
/* Every store or work job of the sender ends here; a stopped sender goes when its last job is
 * done (true then: the sender is gone). */
bool sender_job_end(struct sender *sender);
void sender_schedule_poll(struct sender *sender, int ms);
void sender_publish_body_bytes(const struct sender *sender);
void sender_item_free(struct sender *sender, struct item *item);
/* An item leaves (its result recorded or given up): its budgets free up, the account goes on. */
void sender_item_done(struct sender *sender, struct item *item);
/* Gives back the account's queued items marked `recall` whose body is not loading. */
void sender_recall_queued(struct account *account);
/* Feeds ready sessions, loads bodies for their room, opens or closes sessions. */
void sender_pump(struct account *account);
/* A throttle or quota reply from the account's server: it pauses, and its queue is held. */
void sender_pause(struct account *account, const char *reason);
/* An account's pause before its confirming attempt is over. */
void sender_confirm_due(evutil_socket_t fd, short what, void *arg);
/* Finishes an item with one class and reason for every recipient. */
void sender_finish_all(struct sender *sender, struct item *item, enum mt_failure_class cls,
                       bool permanent, const char *reason);

#endif
