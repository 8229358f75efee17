/* The sender: carries the outbox's messages out. It claims due messages from the store under a
 * lease (engine/outbox_lease.h), each with the route this attempt takes (chosen now, not at
 * enqueue: engine/outbox.h), groups them per account (a user's custom SMTP, or the platform
 * relay), and sends them many per session, pipelined, over at most `sessions_per_account`
 * sessions per account with at most `max_inflight` messages queued on each. A message's body is
 * loaded only when its account has a ready session (with the claim, or when a session has room
 * for it), within a byte budget per node and per
 * account (MT_SENDER_BODY_BYTES_MAX, MT_SENDER_ACCOUNT_BODY_BYTES_MAX), so a stalled server
 * holds little memory. Every attempt's outcome goes through the outbox policy
 * (engine/outbox_policy.h) and back to the store fenced by the lease token; accepted recipients
 * get their `email_sent` activities (source outbox) in the same transaction. Each account's send
 * limits are the governor's (engine/governor.h): a claimed message has its recipients' slots
 * reserved or is held, and a throttle or quota reply pauses the account (what it has queued is
 * held, not failed).
 *
 * Crash safety: a message is marked sent only after the server acknowledged its data. After a
 * crash, the node's own leases go back to the queue at start, so at most sessions × max_inflight
 * messages per account may be sent twice.
 *
 * Ownership: the sender borrows everything in its params (they must outlive it). */
#ifndef MT_ENGINE_SENDER_H
#define MT_ENGINE_SENDER_H

#include "config/config.h"
#include "lib/limits.h"
#include "lib/secret.h"
#include "store/store_smtp.h"

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evdns_base;
struct store;
struct work_pool;
struct mt_keyring;
struct mt_tls_config;
struct accounts;
struct sender;

struct oauth_broker;

struct sender_params {
	struct event_base *base;
	struct evdns_base *dns;
	struct store *store;
	struct work_pool *work; /* writes the route's head fields (GMime) off the loop */
	struct mt_keyring *keyring;
	struct mt_tls_config *tls;
	struct oauth_broker *broker; /* tokens of accounts on an OAuth grant; NULL: none */
	const char *node_id;         /* this node's lease owner name */
	int sessions_per_account;
	int max_inflight;
	int64_t retry_expiry_s;
	int64_t lease_s;      /* 0 = 900 s: longer than any single SMTP step it covers */
	int64_t retry_base_s; /* 0 = 60 s: the first retry's delay (quadratic after) */
	int reply_timeout_ms; /* 0 = RFC 5321's per-command timeouts (minutes) */
	/* The users' accounts: a confirmed auth or certificate failure disconnects one
	 * (account_smtp_disconnect); NULL: never (tools). */
	struct accounts *accounts;
	int64_t confirm_delay_s; /* 0 = 10 s: the pause before the confirming attempt */
	/* Users' custom SMTP hosts may not reach private addresses unless listed here (the
	 * operator's allow_private_hosts); the relay is the operator's and is not checked. */
	const struct mt_cidr_list *allow_private;
	/* The platform relay; relay_host NULL when none is configured. */
	const char *relay_host;
	uint16_t relay_port;
	bool relay_implicit_tls;
	const char *relay_user; /* "" for no AUTH */
	const char *relay_from; /* its envelope sender (DMARC rules: engine/outbox.h); "" or NULL */
	const struct mt_secret *relay_password;
	/* The send governor (engine/governor.h): the relay's per-user limits, and the first pause
	 * of an account after a throttle or quota reply (0 = 60 s). */
	struct store_send_limit relay_limits[MT_SEND_LIMITS_MAX];
	size_t relay_limit_count;
	int64_t throttle_pause_s;
};

struct sender *sender_new(const struct sender_params *params, const char **error_r);
/* New mail was queued: look now rather than at the next poll. */
void sender_wake(struct sender *sender);
/* A campaign was paused or cancelled (committed): the messages of it this node has claimed but
 * not handed to a server go back (held or cancelled, as the campaign now is). Another node
 * delivers what it had claimed before the change. */
void sender_campaign_changed(struct sender *sender, const char *campaign_id);
/* Stops sending; messages not finished go back to the queue (a job is submitted). */
void sender_free(struct sender **sender);

#endif
