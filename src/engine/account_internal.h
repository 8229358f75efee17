/* What engine/account.c and engine/account_view.c share of `struct accounts`; nothing outside
 * the two includes this. */
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
};

#endif
