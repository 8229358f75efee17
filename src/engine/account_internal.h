/* What the account files (engine/account*.c, engine/imap_account.c) share of `struct
 * accounts`; nothing else includes this. */
#ifndef MT_ENGINE_ACCOUNT_INTERNAL_H
#define MT_ENGINE_ACCOUNT_INTERNAL_H

#include "engine/account.h"

/* Live checks running per org, to keep a few at a time (MT_LIVE_CHECKS_PER_ORG): each holds a
 * connection to a provider for up to 30 s. */
struct org_checks {
	char org_id[MT_ID_MAX];
	unsigned running;
};

struct accounts {
	struct accounts_params p;
	struct org_checks *checks;
	size_t check_slots;
	/* engine/imap_account.h: the syncer's hook */
	void (*imap_changed)(void *ctx, const char *org_id, const char *user_id);
	void *imap_changed_ctx;
};

/* A live-check slot of the org (MT_LIVE_CHECKS_PER_ORG at a time): false when all are taken. */
bool account_take_slot(struct accounts *accounts, const char *org_id);
void account_release_slot(struct accounts *accounts, const char *org_id);
/* Two pins are the same when both are absent or both name the same digest, whatever the
 * spelling (case, colons). */
bool account_same_pin(const char *a, const char *b);
enum mt_security account_net_security(enum store_security security);

#endif
