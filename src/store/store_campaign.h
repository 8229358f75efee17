/* Campaigns, the org's suppression list and the unsubscribe tokens (DESIGN.md §1 Campaign). A
 * campaign's messages are ordinary outbox rows carrying its id (store_outbox.h); a campaign's
 * state is what its pause / resume / cancel made it, its progress the states of those rows.
 * Operations run inside a store job (store.h).
 *
 * Ownership: the caller owns every struct it passes in and out; nothing here allocates. */
#ifndef MT_STORE_STORE_CAMPAIGN_H
#define MT_STORE_STORE_CAMPAIGN_H

#include "lib/limits.h"
#include "store/store.h"
#include "store/store_outbox.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum store_campaign_state {
	STORE_CAMPAIGN_RUNNING,
	STORE_CAMPAIGN_PAUSED,
	STORE_CAMPAIGN_CANCELLED,
};
_Static_assert(STORE_CAMPAIGN_PAUSED == STORE_CAMPAIGN_PAUSED_VALUE &&
                   STORE_CAMPAIGN_CANCELLED == STORE_CAMPAIGN_CANCELLED_VALUE,
               "store_outbox_give_back's campaign states");
const char *store_campaign_state_name(enum store_campaign_state state);

struct store_campaign {
	char id[MT_ID_MAX];
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	char idempotency_key[128];
	enum store_campaign_state state;
	char subject[MT_SUBJECT_MAX + 1];
	int64_t total;      /* recipients asked for, suppressed ones included */
	int64_t suppressed; /* of which on the suppression list: never mailed */
	int64_t created_at, updated_at;
	/* Read by store_campaign_get: its messages per state (enum store_outbox_state). */
	int64_t counts[STORE_OUTBOX_CANCELLED + 1];
};

/* Stores a new campaign (its messages are enqueued by the caller in the same job); fills id and
 * created_at. With an idempotency key this user used within 24 h: STORE_CONFLICT and
 * existing_id_r is the first campaign's id. */
int store_campaign_create(struct store_tx *tx, struct store_campaign *campaign,
                          char existing_id_r[MT_ID_MAX]);
/* The campaign with its counts; STORE_NOT_FOUND unless it is this user's. */
int store_campaign_get(struct store_tx *tx, const char *org_id, const char *user_id, const char *id,
                       struct store_campaign *campaign_r);

enum store_campaign_action {
	STORE_CAMPAIGN_PAUSE,  /* running -> paused: its queued messages wait held */
	STORE_CAMPAIGN_RESUME, /* paused -> running: its held messages are queued, due now */
	STORE_CAMPAIGN_CANCEL, /* -> cancelled: its queued and held messages are cancelled */
};
/* Applies the action to the campaign and its messages not yet sending (one already handed to a
 * server finishes its attempt). Pausing a paused or resuming a running campaign changes
 * nothing; STORE_CONFLICT for anything but cancel on a cancelled one; STORE_NOT_FOUND unless it
 * is this user's. */
int store_campaign_act(struct store_tx *tx, const char *org_id, const char *user_id, const char *id,
                       enum store_campaign_action action);

/* Whether `address` (normalised) is on the org's suppression list. */
int store_suppression_has(struct store_tx *tx, const char *org_id, const char *address,
                          bool *suppressed_r);

/* The token of one campaign message's unsubscribe link (MT_UNSUBSCRIBE_TOKEN_LEN hex
 * characters) and whom it unsubscribes. */
struct store_unsubscribe {
	char token[MT_UNSUBSCRIBE_TOKEN_LEN + 1];
	char org_id[MT_ID_MAX];
	char campaign_id[MT_ID_MAX];
	char address[MT_ADDRESS_MAX + 1];
	bool suppressed; /* read by store_unsubscribe_get / _apply: on the list now */
};
int store_unsubscribe_token_add(struct store_tx *tx, const struct store_unsubscribe *token);
/* The token's recipient, and whether it is suppressed already; STORE_NOT_FOUND for a token we
 * never made. */
int store_unsubscribe_get(struct store_tx *tx, const char *token, struct store_unsubscribe *u_r);
/* Puts the token's recipient on its org's suppression list (already there: nothing changes).
 * Later campaigns skip the address; the message that carried the link has been delivered. */
int store_unsubscribe_apply(struct store_tx *tx, const char *token, struct store_unsubscribe *u_r);

#endif
