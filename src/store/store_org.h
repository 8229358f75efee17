/* Orgs: the tenant, its domains (internal mail) and its features. Operations run inside a store
 * job (store.h).
 *
 * Ownership: the caller owns the structs it passes in and out; nothing is allocated here. */
#ifndef MT_STORE_STORE_ORG_H
#define MT_STORE_STORE_ORG_H

#include "lib/limits.h"
#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store_org {
	char id[MT_ID_MAX];
	char name[MT_NAME_MAX + 1];
	char domains[MT_ORG_DOMAINS_MAX][MT_HOST_FIELD_MAX + 1]; /* lower case, ASCII (IDNA) */
	size_t domain_count;
	bool custom_smtp, imap_sync, bcc_sync; /* features, all off in a new org */
	int64_t created_at;
};

int store_org_create(struct store_tx *tx, struct store_org *org); /* fills id, created_at */
int store_org_get(struct store_tx *tx, const char *org_id, struct store_org *org_r);
/* Replaces domains and features (the name is the operator's). */
int store_org_update(struct store_tx *tx, const struct store_org *org);

#endif
