/* Profiles (the people mail is logged for) and the address index that finds them. Operations
 * run inside a store job (store.h).
 *
 * Ownership: the caller owns the structs it passes in and out; a store_profile_list's items are
 * allocated by the store and freed with store_profile_list_free(). */
#ifndef MT_STORE_STORE_PROFILE_H
#define MT_STORE_STORE_PROFILE_H

#include "lib/limits.h"
#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum store_profile_kind { STORE_PROFILE_APPLICANT, STORE_PROFILE_CONTACT, STORE_PROFILE_EMPLOYEE };

struct store_profile {
	char id[MT_ID_MAX];
	char org_id[MT_ID_MAX];
	enum store_profile_kind kind;
	char name[MT_NAME_MAX + 1];
	char external_id[MT_EXTERNAL_ID_MAX + 1]; /* the CRM's id, unique per org; "" when none */
	char emails[MT_PROFILE_EMAILS_MAX][MT_ADDRESS_MAX + 1]; /* normalised, distinct */
	size_t email_count;
	int64_t created_at;
	int64_t updated_at;
};

/* Fills id. STORE_CONFLICT when another profile of the org has its external_id. */
int store_profile_create(struct store_tx *tx, struct store_profile *profile);
int store_profile_get(struct store_tx *tx, const char *org_id, const char *profile_id,
                      struct store_profile *profile_r);
/* The org's profile with this external_id; STORE_NOT_FOUND when none. */
int store_profile_get_by_external(struct store_tx *tx, const char *org_id, const char *external_id,
                                  struct store_profile *profile_r);
/* Replaces kind, name, external_id and emails; STORE_CONFLICT as create. */
int store_profile_update(struct store_tx *tx, const struct store_profile *profile);
/* Deletes the profile, its addresses and its activities, then the message records left without
 * any activity that have one of its addresses as a participant (right to erasure). */
int store_profile_delete(struct store_tx *tx, const char *org_id, const char *profile_id);

struct store_profile_list {
	struct store_profile *items;
	size_t count;
	char next_cursor[MT_ID_MAX + 8]; /* "" on the last page */
};

/* Profiles of the org in id order, after `cursor` (NULL/"" = from the start), at most `limit`.
 * With a non-empty `query`: those whose lower-cased name or one of whose addresses starts with
 * the lower-cased query. */
int store_profile_list(struct store_tx *tx, const char *org_id, const char *query,
                       const char *cursor, size_t limit, struct store_profile_list *list_r);
void store_profile_list_free(struct store_profile_list *list);

/* The ids of the org's profiles having this normalised address (the address index). Fills up
 * to `max` ids and returns how many there are in *count_r. */
int store_profiles_by_address(struct store_tx *tx, const char *org_id, const char *address,
                              char (*ids_r)[MT_ID_MAX], size_t max, size_t *count_r);

/* Other profiles of the org having one of this profile's addresses: their ids, at most `max`,
 * and in *count_r how many there are (up to MT_LIST_LIMIT_MAX). */
int store_profiles_sharing(struct store_tx *tx, const char *org_id, const char *profile_id,
                           char (*ids_r)[MT_ID_MAX], size_t max, size_t *count_r);

#endif
