/* Orgs, their first admin and API tokens: what `mailtrail init` (the operator) and the users API
 * both do, in one place. The functions run inside a store job (on the store thread).
 *
 * Ownership: the caller's structs; a token's text is written into the caller's buffer and is the
 * caller's to wipe once shown. */
#ifndef MT_ENGINE_PROVISION_H
#define MT_ENGINE_PROVISION_H

#include "crypto/seal.h"
#include "lib/limits.h"
#include "store/store.h"
#include "store/store_user.h"

/* A new org with its first admin (`admin_email`, named after it) and a token for it. */
struct provision_org {
	char org_name[MT_NAME_MAX + 1];
	char admin_email[MT_ADDRESS_MAX + 1];
	char org_id[MT_ID_MAX];        /* out */
	char user_id[MT_ID_MAX];       /* out */
	char token[MT_TOKEN_TEXT_MAX]; /* out: shown once */
};
int provision_org(struct store_tx *tx, struct provision_org *org);

/* A new API token for `user`: random, stored as its hash only; its text in `token_text`. */
int provision_token(struct store_tx *tx, const struct store_user *user,
                    char token_text[MT_TOKEN_TEXT_MAX], struct store_token *token_r);

#endif
