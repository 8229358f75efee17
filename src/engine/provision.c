#include "engine/provision.h"

#include "lib/str.h"
#include "store/store_org.h"

#include <sodium.h>
#include <string.h>

int provision_token(struct store_tx *tx, const struct store_user *user,
                    char token_text[MT_TOKEN_TEXT_MAX], struct store_token *token_r)
{
	mt_token_new(token_text);
	memset(token_r, 0, sizeof(*token_r));
	mt_strlcpy(token_r->user_id, user->id, sizeof(token_r->user_id));
	mt_strlcpy(token_r->org_id, user->org_id, sizeof(token_r->org_id));
	mt_token_hash(token_text, token_r->hash);
	return store_token_create(tx, token_r);
}

int provision_org(struct store_tx *tx, struct provision_org *p)
{
	struct store_org org;
	memset(&org, 0, sizeof(org));
	mt_strlcpy(org.name, p->org_name, sizeof(org.name));
	int rc = store_org_create(tx, &org);
	if (rc != 0)
		return rc;
	struct store_user user;
	memset(&user, 0, sizeof(user));
	mt_strlcpy(user.org_id, org.id, sizeof(user.org_id));
	mt_strlcpy(user.email, p->admin_email, sizeof(user.email));
	mt_strlcpy(user.name, p->admin_email, sizeof(user.name));
	user.role = STORE_ROLE_ADMIN;
	user.active = true;
	rc = store_user_create(tx, &user);
	struct store_token token;
	char text[MT_TOKEN_TEXT_MAX];
	if (rc == 0)
		rc = provision_token(tx, &user, text, &token);
	if (rc == 0) {
		mt_strlcpy(p->org_id, org.id, sizeof(p->org_id));
		mt_strlcpy(p->user_id, user.id, sizeof(p->user_id));
		mt_strlcpy(p->token, text, sizeof(p->token));
	}
	sodium_memzero(text, sizeof(text));
	return rc;
}
