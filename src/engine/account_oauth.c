/* The OAuth part of saving an xoauth2 account (SMTP and IMAP alike): a grant given with the
 * request is prepared by the broker (refreshed when its access token is missing or about to
 * expire), the live check logs in with its token, and the grant is stored in the same
 * transaction as the account; an account saved without tokens uses the user's grant through
 * the broker. See engine/account_internal.h. */
#include "engine/account.h"
#include "engine/account_internal.h"

#include "engine/oauth_broker.h"
#include "engine/smtp_presets.h"
#include "lib/str.h"
#include "store/store.h"
#include "store/store_oauth.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *account_oauth_take(struct account_oauth *o, const char *preset_id,
                               const struct account_oauth_request *req, const char **access_token,
                               char *buf, size_t size)
{
	const char *secrets[] = {req->refresh_token, req->client_secret};
	if (req->refresh_token == NULL) {
		for (size_t i = 0; i < 2; i++)
			if (secrets[i] != NULL)
				sodium_memzero((char *)secrets[i], strlen(secrets[i]));
		if (req->client_secret != NULL || req->token_url != NULL || req->client_id != NULL)
			return "token_url, client_id and client_secret come with a refresh_token";
		o->uses_grant = req->use_grant;
		return NULL;
	}
	const struct smtp_preset *preset = preset_id != NULL ? smtp_preset_find(preset_id) : NULL;
	struct oauth_grant_request g = {
	    .provider = preset != NULL && preset->oauth_provider != NULL ? preset->oauth_provider
	                                                                 : "custom",
	    .token_url = req->token_url != NULL ? req->token_url
	                 : preset != NULL       ? preset->oauth_token_url
	                                        : NULL,
	    .client_id = req->client_id,
	    .client_secret = req->client_secret,
	    .refresh_token = req->refresh_token,
	    .access_token = *access_token,
	    .expires_at = req->expires_at,
	};
	/* The access token given beside a refresh token is the grant's, not the account's. */
	*access_token = NULL;
	o->grant = calloc(1, sizeof(*o->grant));
	if (o->grant == NULL) {
		for (size_t i = 0; i < 2; i++)
			sodium_memzero((char *)secrets[i], secrets[i] ? strlen(secrets[i]) : 0);
		if (g.access_token != NULL)
			sodium_memzero((char *)g.access_token, strlen(g.access_token));
		return "out of memory";
	}
	const char *why = oauth_grant_take(o->grant, &g);
	if (why != NULL) {
		free(o->grant);
		o->grant = NULL;
		snprintf(buf, size, "%s", why);
		return buf;
	}
	o->new_grant = true;
	o->uses_grant = true;
	return NULL;
}

static void token_ready(void *ctx, struct oauth_broker_answer *answer)
{
	struct account_oauth *o = ctx;
	o->ask = NULL;
	switch (answer->outcome) {
	case OAUTH_BROKER_OK: {
		struct mt_secret *token = answer->token;
		answer->token = NULL;
		o->ready(o->ctx, token, ACCOUNT_OK, MT_CLASS_NONE, NULL);
		return;
	}
	case OAUTH_BROKER_NO_GRANT:
		o->ready(o->ctx, NULL, ACCOUNT_INVALID, MT_CLASS_AUTH,
		         "access_token or refresh_token is required (you have no OAuth grant yet)");
		return;
	case OAUTH_BROKER_REVOKED:
		o->ready(o->ctx, NULL, ACCOUNT_CHECK_FAILED, MT_CLASS_AUTH,
		         o->new_grant
		             ? "the token endpoint refused the refresh_token (invalid_grant)"
		             : "your OAuth grant was revoked: connect again with a new "
		               "refresh_token");
		return;
	case OAUTH_BROKER_TEMPORARY:
		break;
	}
	char reason[MT_ERROR_TEXT_MAX];
	snprintf(reason, sizeof(reason), "the token endpoint could not be used: %.400s",
	         answer->reason != NULL ? answer->reason : "unknown");
	o->ready(o->ctx, NULL, ACCOUNT_CHECK_FAILED, MT_CLASS_CONN, reason);
}

void account_oauth_token(struct accounts *accounts, struct account_oauth *o, const char *org_id,
                         const char *user_id)
{
	struct oauth_broker *broker = accounts->p.broker;
	if (broker == NULL) {
		o->ready(o->ctx, NULL, ACCOUNT_INVALID, MT_CLASS_AUTH,
		         "OAuth grants are not available on this server: give an access_token");
		return;
	}
	if (o->new_grant) {
		if (oauth_broker_prepare(broker, o->grant, token_ready, o) < 0)
			o->ready(o->ctx, NULL, ACCOUNT_BUSY, MT_CLASS_INTERNAL,
			         "too busy to refresh the token; try again");
		return;
	}
	o->ask = oauth_broker_token(broker, org_id, user_id, -1, token_ready, o);
	if (o->ask == NULL)
		o->ready(o->ctx, NULL, ACCOUNT_BUSY, MT_CLASS_INTERNAL,
		         "too busy to look up the token; try again");
}

int account_oauth_seal(struct accounts *accounts, struct account_oauth *o, const char *org_id,
                       const char *user_id)
{
	if (!o->new_grant)
		return 0;
	o->sealed = malloc(sizeof(*o->sealed));
	if (o->sealed == NULL)
		return -1;
	if (oauth_grant_seal(accounts->p.keyring, org_id, user_id, o->grant, o->sealed) < 0) {
		free(o->sealed);
		o->sealed = NULL;
		return -1;
	}
	return 0;
}

int account_oauth_store(struct store_tx *tx, const struct account_oauth *o)
{
	if (o->sealed == NULL)
		return 0;
	struct store_oauth_grant put = *o->sealed;
	int rc = store_oauth_grant_put(tx, &put);
	sodium_memzero(&put, sizeof(put));
	return rc;
}

void account_oauth_clear(struct account_oauth *o)
{
	oauth_broker_cancel(&o->ask);
	if (o->grant != NULL) {
		oauth_grant_clear(o->grant);
		free(o->grant);
		o->grant = NULL;
	}
	if (o->sealed != NULL) {
		sodium_memzero(o->sealed, sizeof(*o->sealed));
		free(o->sealed);
		o->sealed = NULL;
	}
}

int account_oauth_view_load(struct store_tx *tx, const char *org_id, const char *user_id,
                            bool uses_grant, struct account_oauth_view *view)
{
	memset(view, 0, sizeof(*view));
	if (!uses_grant)
		return 0;
	struct store_oauth_grant *g = malloc(sizeof(*g));
	if (g == NULL)
		return -1;
	int rc = store_oauth_grant_get(tx, org_id, user_id, g);
	if (rc == 0) {
		view->present = true;
		mt_strlcpy(view->provider, g->provider, sizeof(view->provider));
		view->expires_at = g->expires_at;
		view->state = g->state == STORE_GRANT_REVOKED ? "revoked" : "active";
	}
	sodium_memzero(g, sizeof(*g));
	free(g);
	return rc == STORE_NOT_FOUND ? 0 : rc;
}
