/* Org-level API keys (issue 16): one secret a service (the CRM backend) holds to act for any
 * user of its org. Like user tokens, only the SHA-256 of a key's text is stored. Operations run
 * inside a store job (store.h).
 *
 * Ownership: the caller owns the structs it passes in and out; a list is malloc'd and freed
 * with store_api_key_list_free(). */
#ifndef MT_STORE_STORE_API_KEY_H
#define MT_STORE_STORE_API_KEY_H

#include "lib/limits.h"
#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

struct store_api_key {
	char id[MT_ID_MAX]; /* key_… */
	char org_id[MT_ID_MAX];
	char name[MT_NAME_MAX + 1];
	unsigned scopes;        /* a bit set; its meaning is the engine's (engine/api_keys.h) */
	unsigned char hash[32]; /* SHA-256 of the key text */
	char created_by[MT_ID_MAX];
	int64_t created_at;
};

/* Fills id and created_at. STORE_NOT_FOUND when the org does not exist. */
int store_api_key_create(struct store_tx *tx, struct store_api_key *key);
/* The unrevoked key with this hash; STORE_NOT_FOUND otherwise. */
int store_api_key_authenticate(struct store_tx *tx, const unsigned char hash[32],
                               struct store_api_key *key_r);
/* Revokes a key of the org (again is fine); STORE_NOT_FOUND for another org's or none. */
int store_api_key_revoke(struct store_tx *tx, const char *org_id, const char *key_id);
/* How many unrevoked keys the org has. */
int store_api_key_count(struct store_tx *tx, const char *org_id, int64_t *count_r);

struct store_api_key_list {
	struct store_api_key *items; /* malloc'd; hash left zero */
	size_t count;
};
void store_api_key_list_free(struct store_api_key_list *list);
/* The org's unrevoked keys, oldest first (at most MT_API_KEYS_MAX). */
int store_api_key_list(struct store_tx *tx, const char *org_id, struct store_api_key_list *list_r);

#endif
