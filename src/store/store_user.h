/* Users, their addresses (email and aliases) and their API tokens. Operations run inside a store
 * job (store.h).
 *
 * Ownership: the caller owns the structs it passes in and out; nothing is allocated here. */
#ifndef MT_STORE_STORE_USER_H
#define MT_STORE_STORE_USER_H

#include "lib/limits.h"
#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum store_role { STORE_ROLE_USER, STORE_ROLE_ADMIN };

struct store_user {
	char id[MT_ID_MAX];
	char org_id[MT_ID_MAX];
	char email[MT_ADDRESS_MAX + 1]; /* normalised */
	char name[MT_NAME_MAX + 1];
	enum store_role role;
	bool active;
	char aliases[MT_ALIASES_MAX][MT_ADDRESS_MAX + 1]; /* normalised */
	size_t alias_count;
	int64_t created_at;
};

/* Fills id and created_at. STORE_CONFLICT when the email or an alias already belongs to another
 * user of the org. */
int store_user_create(struct store_tx *tx, struct store_user *user);
int store_user_get(struct store_tx *tx, const char *org_id, const char *user_id,
                   struct store_user *user_r);
/* Replaces name, role, aliases. STORE_CONFLICT as for create. */
int store_user_update(struct store_tx *tx, const struct store_user *user);
/* Marks the user inactive, revokes its tokens, turns its SMTP account off (secret wiped). */
int store_user_deactivate(struct store_tx *tx, const char *org_id, const char *user_id);
/* Marks the user active again; *was_inactive_r tells whether it was inactive. Its old tokens
 * stay revoked and its SMTP account off: the caller gives it a new token. */
int store_user_reactivate(struct store_tx *tx, const char *org_id, const char *user_id,
                          bool *was_inactive_r);
/* The active user (of any org) whose address or alias this is within `org_id`;
 * STORE_NOT_FOUND otherwise. */
int store_user_by_address(struct store_tx *tx, const char *org_id, const char *address,
                          struct store_user *user_r);

struct store_token {
	char id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	char org_id[MT_ID_MAX];
	unsigned char hash[32]; /* SHA-256 of the token text; the token itself is never stored */
	int64_t created_at;
};

int store_token_create(struct store_tx *tx, struct store_token *token); /* fills id */
/* The token with this hash, if neither it nor its user is revoked/deactivated; fills the user
 * too. STORE_NOT_FOUND otherwise. */
int store_token_authenticate(struct store_tx *tx, const unsigned char hash[32],
                             struct store_token *token_r, struct store_user *user_r);
/* Revokes a token of this user. */
int store_token_revoke(struct store_tx *tx, const char *user_id, const char *token_id);

/* The user's unrevoked tokens, oldest first, at most `max` (hash left zero). */
int store_token_list(struct store_tx *tx, const char *org_id, const char *user_id,
                     struct store_token *tokens, size_t max, size_t *count_r);
/* Revokes a token of this user of this org; STORE_NOT_FOUND for any other. */
int store_token_revoke_in_org(struct store_tx *tx, const char *org_id, const char *user_id,
                              const char *token_id);

struct store_user_list {
	struct store_user *items; /* malloc'd */
	size_t count;
	char next_cursor[MT_ID_MAX]; /* "" on the last page */
};
void store_user_list_free(struct store_user_list *list);
/* At most `limit` users of the org (active or not) in id order, after `cursor` (a
 * next_cursor; "" for the first page). STORE_INVALID for a cursor no page gave. */
int store_user_list(struct store_tx *tx, const char *org_id, const char *cursor, size_t limit,
                    struct store_user_list *list_r);

/* True (1) when the address or alias belongs to a user of the org (active or not), else 0;
 * -1 on error. */
int store_address_is_user(struct store_tx *tx, const char *org_id, const char *address);

#endif
