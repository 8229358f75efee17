/* IMAP auto sync (DESIGN.md §1 IMAP account, §3 syncer): one session per connected account on
 * the loop. A session logs in with the stored settings, and for each watched folder SELECTs
 * it, compares the cursor (engine/imap_cursor.h), finds the UIDs to do (UID SEARCH SINCE on a
 * first sync or after a UIDVALIDITY change, UID n:* after), fetches them in chunks of
 * MT_IMAP_SYNC_CHUNK with BODY.PEEK only (header fields, the first bytes of the text,
 * BODYSTRUCTURE), converts each chunk on a worker (engine/imap_message.h) and hands it to the
 * matcher with the cursor's advance in one store transaction; the next chunk is fetched while
 * one is converted and the one before stored (MT_IMAP_SYNC_PIPELINE). Then it watches INBOX with
 * IDLE (an EXISTS starts an incremental pass); other folders are polled every MT_IMAP_SYNC_POLL_MS.
 * A broken session reconnects with jittered back-off and catches up from the cursor; an
 * authentication failure confirmed by a second login after `confirm_delay_s` disconnects the
 * account with one imap_disconnected notice.
 *
 * Ownership: the syncer borrows everything in its params, which must outlive it. */
#ifndef MT_ENGINE_IMAP_SYNC_H
#define MT_ENGINE_IMAP_SYNC_H

#include "engine/outbox.h"
#include "lib/limits.h"

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct evdns_base;
struct store;
struct mt_keyring;
struct mt_tls_config;
struct mt_config;
struct accounts;
struct imap_syncer;
struct work_pool;

struct oauth_broker;

struct imap_syncer_params {
	struct event_base *base;
	struct evdns_base *dns;
	struct store *store;
	struct work_pool *work; /* converts the fetched chunks (GMime) off the loop; NULL: on it */
	struct mt_keyring *keyring;
	struct mt_tls_config *tls;
	const struct mt_config *config; /* allow_private_hosts, allow_plaintext_auth */
	struct outbox_relay relay;      /* the notice's mail */
	int max_connections;            /* imap_max_connections per account */
	int confirm_delay_s;            /* pause before the second login of an auth failure */
	struct oauth_broker *broker;    /* tokens of accounts on an OAuth grant; NULL: none */
};

struct imap_syncer *imap_syncer_new(const struct imap_syncer_params *params);
/* Halts every session (connections closed; chunks on a worker or in the store are freed by
 * their completions, which change nothing). Before the work pool and the store are closed:
 * their completions then carry nothing on. NULL is allowed. */
void imap_syncer_close(struct imap_syncer *syncer);
/* After the work pool and the store are closed (their completions read the syncer). */
void imap_syncer_free(struct imap_syncer **syncer);
/* Starts every connected account of an org with imap_sync on, in the background. 0 or -1. */
int imap_syncer_start(struct imap_syncer *syncer);
/* Reads the accounts to sync again now (it also happens every MT_IMAP_SYNC_RESCAN_MS): those
 * without a session start, sessions of accounts no longer listed (the org's imap_sync turned
 * off) stop. For a change of an org's imap_sync switch. NULL is allowed (no syncer). */
void imap_syncer_rescan(struct imap_syncer *syncer);
/* engine/imap_account.h's hook: the account was saved or turned off. */
void imap_syncer_changed(void *syncer, const char *org_id, const char *user_id);

enum imap_sync_verdict {
	IMAP_SYNC_QUEUED,        /* a pass starts now (or right after the running one) */
	IMAP_SYNC_NOT_CONNECTED, /* no connected account, or the org's imap_sync is off */
	IMAP_SYNC_BUSY,
	IMAP_SYNC_FAILED,
};
typedef void imap_sync_now_fn(void *ctx, enum imap_sync_verdict verdict, const char *reason);
/* POST /v1/imap/sync. `done` exactly once on the loop thread. */
void imap_sync_now(struct imap_syncer *syncer, const char *org_id, const char *user_id,
                   imap_sync_now_fn *done, void *ctx);

#endif
