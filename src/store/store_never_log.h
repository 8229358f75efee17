/* Never-log lists: the org's and each user's addresses and domains whose mail is never logged.
 * Operations run inside a store job (store.h).
 *
 * Ownership: a list read by store_never_log_get() is allocated by the store and freed with
 * store_never_log_free(); one passed to store_never_log_put() stays the caller's. */
#ifndef MT_STORE_STORE_NEVER_LOG_H
#define MT_STORE_STORE_NEVER_LOG_H

#include "lib/limits.h"
#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Never-log lists: an entry is a normalised address or a domain (covering its subdomains). */
enum store_never_log_scope { STORE_NEVER_LOG_ORG, STORE_NEVER_LOG_USER };
struct store_never_log {
	char (*entries)[MT_ADDRESS_MAX + 1];
	size_t count;
};
int store_never_log_get(struct store_tx *tx, const char *org_id, enum store_never_log_scope scope,
                        const char *user_id, struct store_never_log *list_r);
int store_never_log_put(struct store_tx *tx, const char *org_id, enum store_never_log_scope scope,
                        const char *user_id, const struct store_never_log *list);
void store_never_log_free(struct store_never_log *list);

#endif
