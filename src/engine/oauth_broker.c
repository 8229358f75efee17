/* Access tokens for users' grants: single flight per user, refresh, revoke. See
 * engine/oauth_broker.h.
 *
 * A flight is one user's look-up under way (or a new grant being prepared): LOAD (a store read:
 * the grant, the org and user for a notice), REFRESH (the token endpoint), STORE (the new tokens
 * behind the grant's fence) or REVOKE (revoke, disconnect, notice: one transaction). Its asks
 * are answered together when it ends. Once the broker closes a flight is parked where it is and
 * freed with the broker: the store's completions during its close find it and do nothing. */
#include "engine/oauth_broker.h"

#include "crypto/seal.h"
#include "engine/account.h"
#include "engine/notify.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/str.h"
#include "oauth/refresh.h"
#include "store/store.h"
#include "store/store_imap.h"
#include "store/store_notification.h"
#include "store/store_org.h"
#include "store/store_smtp.h"
#include "store/store_user.h"

#include <event2/event.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOTICE_SUBJECT "Reconnect your mail account: access was revoked"

enum flight_kind { FLIGHT_USER, FLIGHT_PREPARE, FLIGHT_SAVE };
enum flight_stage { ST_LOAD, ST_REFRESH, ST_STORE, ST_REVOKE, ST_PUT, ST_IDLE };

struct oauth_broker_ask {
	struct flight *flight;
	struct oauth_broker_ask *next;
	oauth_broker_fn *done;
	void *ctx;
};

struct flight {
	struct oauth_broker *broker;
	struct flight *next;
	enum flight_kind kind;
	enum flight_stage stage;
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	struct oauth_broker_ask *asks;
	int64_t refused_fence; /* the highest fence a forced ask brought; -1: none */
	unsigned loads;
	bool listed; /* in broker->flights (until it ends) */
	/* LOAD */
	bool found;
	struct store_oauth_grant grant;
	struct store_org org;
	struct store_user user;
	/* REFRESH / STORE */
	struct mt_secret *access;
	struct mt_secret *rotated;
	int64_t expires_at;
	struct store_sealed_token sealed_access, sealed_refresh;
	int64_t fence;
	int store_rc;
	/* REVOKE */
	char reason[MT_ERROR_TEXT_MAX];
	char text[MT_NOTIFICATION_TEXT_MAX + 1];
	char *body;
	size_t body_len;
	bool changed, mailed;
	/* PREPARE / SAVE: the new grant (SAVE: its own copy in `owned`) and the one callback */
	struct oauth_new_grant *newg;
	struct oauth_new_grant owned;
	oauth_broker_fn *done;
	void *ctx;
};

struct oauth_broker {
	struct oauth_broker_params p;
	struct oauth_refresher *refresher;
	struct flight *flights; /* every flight under way; FLIGHT_USER ones by user */
	struct flight *parked;  /* closing: freed with the broker */
	size_t flight_count;
	struct event *timer;
	bool scanning;
	bool closing;
	oauth_broker_revoked_fn *on_revoked;
	void *on_revoked_ctx;
};

const char *oauth_broker_outcome_name(enum oauth_broker_outcome outcome)
{
	switch (outcome) {
	case OAUTH_BROKER_OK:
		return "ok";
	case OAUTH_BROKER_NO_GRANT:
		return "no_grant";
	case OAUTH_BROKER_REVOKED:
		return "revoked";
	case OAUTH_BROKER_TEMPORARY:
		return "temporary";
	}
	return "?";
}

bool oauth_account_uses_grant(int auth_is_xoauth2, size_t sealed_secret_len)
{
	return auth_is_xoauth2 && sealed_secret_len == 0;
}

enum oauth_broker_action oauth_broker_decide(const struct store_oauth_grant *grant, int64_t now,
                                             int64_t refused_fence)
{
	if (grant->state == STORE_GRANT_REVOKED)
		return OAUTH_ACTION_REVOKED;
	if (grant->access_token.len == 0)
		return OAUTH_ACTION_REFRESH;
	/* The refused token is still the grant's: a fresh one is needed. A grant written since
	 * (another refresh, a new consent) already holds a newer token. */
	if (refused_fence >= 0 && grant->updated_at <= refused_fence)
		return OAUTH_ACTION_REFRESH;
	if (grant->expires_at != 0 && grant->expires_at - now <= MT_OAUTH_REFRESH_MARGIN_S)
		return OAUTH_ACTION_REFRESH;
	return OAUTH_ACTION_USE;
}

/* Each sealed piece has its own associated data, bound to the user. */
static void seal_context(const char *what, const char *user_id, char context[MT_SEAL_CONTEXT_MAX])
{
	char protocol[32];
	snprintf(protocol, sizeof(protocol), "oauth-%s", what);
	account_seal_context(protocol, user_id, context);
}

static int seal_token(const struct mt_keyring *keyring, const char *what, const char *user_id,
                      const struct mt_secret *secret, struct store_sealed_token *out)
{
	char context[MT_SEAL_CONTEXT_MAX];
	seal_context(what, user_id, context);
	out->len = 0;
	if (secret == NULL)
		return 0;
	return mt_seal(keyring, context, mt_secret_bytes(secret), mt_secret_len(secret), out->bytes,
	               sizeof(out->bytes), &out->len);
}

static struct mt_secret *unseal_token(const struct mt_keyring *keyring, const char *what,
                                      const char *user_id, const struct store_sealed_token *in,
                                      const char **error_r)
{
	char context[MT_SEAL_CONTEXT_MAX];
	seal_context(what, user_id, context);
	return mt_unseal(keyring, context, in->bytes, in->len, error_r);
}

/* ---- flights -------------------------------------------------------------------------------- */

static void flight_free(struct flight *f)
{
	mt_secret_free(&f->access);
	mt_secret_free(&f->rotated);
	oauth_grant_clear(&f->owned);
	free(f->body);
	sodium_memzero(f, sizeof(*f));
	free(f);
}

static void flight_unlist(struct flight *f)
{
	if (!f->listed)
		return;
	for (struct flight **p = &f->broker->flights; *p != NULL; p = &(*p)->next) {
		if (*p == f) {
			*p = f->next;
			break;
		}
	}
	f->listed = false;
	f->broker->flight_count--;
}

static void flight_list(struct flight *f)
{
	f->next = f->broker->flights;
	f->broker->flights = f;
	f->listed = true;
	f->broker->flight_count++;
}

/* Closing: the flight stays until the broker goes (its asks may still be cancelled). */
static void flight_park(struct flight *f)
{
	flight_unlist(f);
	f->stage = ST_IDLE;
	f->next = f->broker->parked;
	f->broker->parked = f;
}

/* Answers every ask (and the one callback of a prepare) and frees the flight. */
static void flight_end(struct flight *f, enum oauth_broker_outcome outcome, const char *reason)
{
	flight_unlist(f); /* an ask made from a callback starts a flight of its own */
	if (outcome != OAUTH_BROKER_OK)
		mt_log(MT_LOG_INFO, "oauth.token_failed", MT_KV("user", f->user_id),
		       MT_KV("outcome", oauth_broker_outcome_name(outcome)),
		       MT_KV("reason", reason != NULL ? reason : ""));
	struct oauth_broker_answer answer;
	if (f->kind == FLIGHT_PREPARE) {
		memset(&answer, 0, sizeof(answer));
		answer.outcome = outcome;
		answer.reason = reason;
		answer.expires_at = f->newg->expires_at;
		if (outcome == OAUTH_BROKER_OK && f->newg->access_token != NULL)
			answer.token = mt_secret_new(mt_secret_bytes(f->newg->access_token),
			                             mt_secret_len(f->newg->access_token));
		if (outcome == OAUTH_BROKER_OK && answer.token == NULL) {
			answer.outcome = OAUTH_BROKER_TEMPORARY;
			answer.reason = "out of memory";
		}
		f->done(f->ctx, &answer);
		mt_secret_free(&answer.token);
		flight_free(f);
		return;
	}
	while (f->asks != NULL) {
		struct oauth_broker_ask *ask = f->asks;
		f->asks = ask->next;
		memset(&answer, 0, sizeof(answer));
		answer.outcome = outcome;
		answer.reason = reason;
		answer.fence = f->fence;
		answer.expires_at = f->expires_at;
		if (outcome == OAUTH_BROKER_OK) {
			answer.token =
			    mt_secret_new(mt_secret_bytes(f->access), mt_secret_len(f->access));
			if (answer.token == NULL) {
				answer.outcome = OAUTH_BROKER_TEMPORARY;
				answer.reason = "out of memory";
			}
		}
		ask->done(ask->ctx, &answer);
		mt_secret_free(&answer.token);
		free(ask);
	}
	flight_free(f);
}

static void flight_load(struct flight *f);
static void refresh_start(struct flight *f, const struct mt_secret *refresh_token,
                          const char *token_url, const char *client_id,
                          const struct mt_secret *client_secret);

static int load_run(struct store_tx *tx, void *arg)
{
	struct flight *f = arg;
	int rc = store_oauth_grant_get(tx, f->org_id, f->user_id, &f->grant);
	f->found = rc == 0;
	if (rc == STORE_NOT_FOUND)
		return 0;
	if (rc == 0)
		rc = store_org_get(tx, f->org_id, &f->org);
	if (rc == 0)
		rc = store_user_get(tx, f->org_id, f->user_id, &f->user);
	return rc;
}

static void load_done(void *arg, int result)
{
	struct flight *f = arg;
	struct oauth_broker *broker = f->broker;
	if (broker->closing) {
		flight_park(f);
		return;
	}
	if (result != 0) {
		flight_end(f, OAUTH_BROKER_TEMPORARY, "the store failed");
		return;
	}
	if (!f->found) {
		flight_end(f, OAUTH_BROKER_NO_GRANT,
		           "no OAuth grant: connect the account with its provider first");
		return;
	}
	const char *error;
	switch (oauth_broker_decide(&f->grant, mt_wall_s(), f->refused_fence)) {
	case OAUTH_ACTION_REVOKED:
		mt_strlcpy(f->reason, f->grant.revoked_reason, sizeof(f->reason));
		flight_end(f, OAUTH_BROKER_REVOKED,
		           "the OAuth grant was revoked: connect the account again");
		return;
	case OAUTH_ACTION_USE:
		f->access = unseal_token(broker->p.keyring, "access", f->user_id,
		                         &f->grant.access_token, &error);
		if (f->access == NULL) {
			mt_log(MT_LOG_ERROR, "oauth.unseal_failed", MT_KV("user", f->user_id),
			       MT_KV("error", error));
			break; /* a refresh writes a new one */
		}
		f->fence = f->grant.updated_at;
		f->expires_at = f->grant.expires_at;
		flight_end(f, OAUTH_BROKER_OK, NULL);
		return;
	case OAUTH_ACTION_REFRESH:
		break;
	}
	struct mt_secret *refresh =
	    unseal_token(broker->p.keyring, "refresh", f->user_id, &f->grant.refresh_token, &error);
	struct mt_secret *client_secret = NULL;
	if (refresh != NULL && f->grant.client_secret.len > 0)
		client_secret = unseal_token(broker->p.keyring, "client", f->user_id,
		                             &f->grant.client_secret, &error);
	if (refresh == NULL || (f->grant.client_secret.len > 0 && client_secret == NULL)) {
		mt_log(MT_LOG_ERROR, "oauth.unseal_failed", MT_KV("user", f->user_id),
		       MT_KV("error", error));
		mt_secret_free(&refresh);
		flight_end(f, OAUTH_BROKER_TEMPORARY, "the stored grant cannot be opened");
		return;
	}
	refresh_start(f, refresh, f->grant.token_url, f->grant.client_id, client_secret);
	mt_secret_free(&refresh);
	mt_secret_free(&client_secret);
}

static void flight_load(struct flight *f)
{
	f->stage = ST_LOAD;
	f->loads++;
	if (store_submit(f->broker->p.store, STORE_READ, load_run, load_done, f) < 0)
		flight_end(f, OAUTH_BROKER_TEMPORARY, "the store is busy");
}

/* ---- the refresh and its result ------------------------------------------------------------- */

static int tokens_run(struct store_tx *tx, void *arg)
{
	struct flight *f = arg;
	f->store_rc = store_oauth_grant_tokens(tx, &f->grant, &f->sealed_access,
	                                       f->rotated != NULL ? &f->sealed_refresh : NULL,
	                                       f->expires_at, &f->fence);
	return f->store_rc == STORE_CONFLICT ? 0 : f->store_rc;
}

static void tokens_done(void *arg, int result)
{
	struct flight *f = arg;
	if (f->broker->closing) {
		flight_park(f);
		return;
	}
	if (result != 0) {
		flight_end(f, OAUTH_BROKER_TEMPORARY, "the store failed");
		return;
	}
	if (f->store_rc == STORE_CONFLICT) {
		/* A new consent (or a revoke) came in meanwhile: what it holds wins. */
		mt_secret_free(&f->access);
		mt_secret_free(&f->rotated);
		f->refused_fence = -1;
		if (f->loads >= 3) {
			flight_end(f, OAUTH_BROKER_TEMPORARY, "the grant keeps changing");
			return;
		}
		flight_load(f);
		return;
	}
	mt_metric_inc("mailtrail_oauth_refreshes_total", "OAuth token refreshes by outcome",
	              "outcome", "ok", NULL, NULL);
	mt_log(MT_LOG_INFO, "oauth.refreshed", MT_KV("user", f->user_id),
	       MT_KV("rotated", f->rotated != NULL ? "yes" : "no"));
	flight_end(f, OAUTH_BROKER_OK, NULL);
}

static int revoke_run(struct store_tx *tx, void *arg)
{
	struct flight *f = arg;
	f->changed = f->mailed = false;
	int rc = store_oauth_grant_revoke(tx, f->grant.id, f->reason);
	if (rc == STORE_CONFLICT)
		return 0; /* revoked already (noticed then), or replaced by a new consent */
	if (rc != 0)
		return rc;
	f->changed = true;
	char last_error[MT_ERROR_TEXT_MAX];
	snprintf(last_error, sizeof(last_error), "auth: the OAuth grant was revoked (%.400s)",
	         f->reason);
	struct store_smtp_account *smtp = malloc(sizeof(*smtp));
	struct store_imap_account *imap = malloc(sizeof(*imap));
	if (smtp == NULL || imap == NULL) {
		free(smtp);
		free(imap);
		return -1;
	}
	rc = store_smtp_account_get(tx, f->org_id, f->user_id, smtp);
	if (rc == 0 && smtp->state == STORE_ACCOUNT_CONNECTED &&
	    oauth_account_uses_grant(smtp->auth == STORE_AUTH_XOAUTH2, smtp->sealed_secret_len))
		rc = store_smtp_account_disconnect(tx, smtp, last_error);
	if (rc == STORE_NOT_FOUND || rc == STORE_CONFLICT)
		rc = 0;
	if (rc == 0)
		rc = store_imap_account_get(tx, f->org_id, f->user_id, imap);
	if (rc == 0 && imap->state == STORE_ACCOUNT_CONNECTED &&
	    oauth_account_uses_grant(imap->auth == STORE_AUTH_XOAUTH2, imap->sealed_secret_len))
		rc = store_imap_account_disconnect(tx, imap, last_error);
	if (rc == STORE_NOT_FOUND || rc == STORE_CONFLICT)
		rc = 0;
	sodium_memzero(smtp, sizeof(*smtp));
	sodium_memzero(imap, sizeof(*imap));
	free(smtp);
	free(imap);
	if (rc != 0)
		return rc;
	return notify_record(tx, &f->org, &f->user, &f->broker->p.relay, STORE_NOTIFY_OAUTH_REVOKED,
	                     NOTICE_SUBJECT, f->text, f->body, f->body_len, &f->mailed);
}

static void revoke_done(void *arg, int result)
{
	struct flight *f = arg;
	struct oauth_broker *broker = f->broker;
	if (broker->closing) {
		flight_park(f);
		return;
	}
	if (result != 0) {
		mt_log(MT_LOG_ERROR, "oauth.revoke_failed", MT_KV("user", f->user_id));
		flight_end(f, OAUTH_BROKER_TEMPORARY, "the store failed");
		return;
	}
	if (f->changed) {
		notify_count(STORE_NOTIFY_OAUTH_REVOKED);
		mt_metric_inc("mailtrail_oauth_revoked_total",
		              "OAuth grants the provider revoked (invalid_grant)", NULL, NULL, NULL,
		              NULL);
		mt_log(MT_LOG_WARN, "oauth.revoked", MT_KV("user", f->user_id),
		       MT_KV("provider", f->grant.provider), MT_KV("reason", f->reason),
		       MT_KV("mailed", f->mailed ? "yes" : "no"));
		if (broker->on_revoked != NULL)
			broker->on_revoked(broker->on_revoked_ctx, f->org_id, f->user_id);
	}
	flight_end(f, OAUTH_BROKER_REVOKED,
	           "the OAuth grant was revoked: connect the account again");
}

static void revoke_begin(struct flight *f, const char *reason)
{
	mt_strlcpy(f->reason, reason, sizeof(f->reason));
	snprintf(f->text, sizeof(f->text),
	         "Your %.40s account's permission for the CRM (OAuth) was revoked or has expired "
	         "(%.300s). Sending through your own account and IMAP sync are disconnected: "
	         "connect the account again to resume. Mail sent from the CRM meanwhile goes out "
	         "through the platform when it can.",
	         f->grant.provider, reason);
	if (f->broker->p.relay.configured &&
	    notify_mail_build(&f->user, NOTICE_SUBJECT, f->text, &f->body, &f->body_len) < 0) {
		mt_log(MT_LOG_ERROR, "oauth.notice_mail_failed", MT_KV("user", f->user_id));
		f->body = NULL;
	}
	f->stage = ST_REVOKE;
	if (store_submit(f->broker->p.store, STORE_WRITE_DURABLE, revoke_run, revoke_done, f) < 0)
		flight_end(f, OAUTH_BROKER_TEMPORARY, "the store is busy");
}

static void save_put(struct flight *f);

static void refreshed(void *arg, struct oauth_token_reply *reply)
{
	struct flight *f = arg;
	struct oauth_broker *broker = f->broker;
	if (broker->closing) {
		flight_park(f);
		return;
	}
	if (reply->outcome != OAUTH_OK)
		mt_metric_inc("mailtrail_oauth_refreshes_total", "OAuth token refreshes by outcome",
		              "outcome", oauth_outcome_name(reply->outcome), NULL, NULL);
	switch (reply->outcome) {
	case OAUTH_OK:
		break;
	case OAUTH_REVOKED:
		if (f->kind != FLIGHT_USER) {
			flight_end(f, OAUTH_BROKER_REVOKED, reply->reason);
			return;
		}
		revoke_begin(f, reply->reason);
		return;
	case OAUTH_REFUSED:
		/* The operator's client settings, not the user's grant: nothing is disconnected. */
		mt_log(MT_LOG_ERROR, "oauth.refresh_refused", MT_KV("user", f->user_id),
		       MT_KV("reason", reply->reason));
		flight_end(f, OAUTH_BROKER_TEMPORARY, reply->reason);
		return;
	case OAUTH_TEMPORARY:
		flight_end(f, OAUTH_BROKER_TEMPORARY, reply->reason);
		return;
	}
	int64_t lifetime = reply->expires_in > 0 ? reply->expires_in : MT_OAUTH_DEFAULT_LIFETIME_S;
	int64_t expires_at = mt_wall_s() + lifetime;
	if (f->kind != FLIGHT_USER) {
		struct oauth_new_grant *g = f->newg;
		mt_secret_free(&g->access_token);
		g->access_token = reply->access_token;
		reply->access_token = NULL;
		if (reply->refresh_token != NULL) {
			mt_secret_free(&g->refresh_token);
			g->refresh_token = reply->refresh_token;
			reply->refresh_token = NULL;
		}
		g->expires_at = expires_at;
		if (f->kind == FLIGHT_SAVE)
			save_put(f);
		else
			flight_end(f, OAUTH_BROKER_OK, NULL);
		return;
	}
	f->access = reply->access_token;
	reply->access_token = NULL;
	f->rotated = reply->refresh_token;
	reply->refresh_token = NULL;
	f->expires_at = expires_at;
	if (seal_token(broker->p.keyring, "access", f->user_id, f->access, &f->sealed_access) < 0 ||
	    seal_token(broker->p.keyring, "refresh", f->user_id, f->rotated, &f->sealed_refresh) <
	        0) {
		flight_end(f, OAUTH_BROKER_TEMPORARY, "cannot seal the new tokens");
		return;
	}
	f->stage = ST_STORE;
	if (store_submit(broker->p.store, STORE_WRITE_DURABLE, tokens_run, tokens_done, f) < 0)
		flight_end(f, OAUTH_BROKER_TEMPORARY, "the store is busy");
}

static void refresh_start(struct flight *f, const struct mt_secret *refresh_token,
                          const char *token_url, const char *client_id,
                          const struct mt_secret *client_secret)
{
	struct oauth_refresh_params params = {
	    .token_url = token_url,
	    .client_id = client_id,
	    .client_secret = client_secret,
	    .refresh_token = refresh_token,
	    .ca_file = f->broker->p.ca_file,
	};
	const char *error;
	f->stage = ST_REFRESH;
	if (oauth_refresh(f->broker->refresher, &params, refreshed, f, &error) < 0)
		flight_end(f, OAUTH_BROKER_TEMPORARY, error);
}

/* ---- asks ----------------------------------------------------------------------------------- */

struct oauth_broker_ask *oauth_broker_token(struct oauth_broker *broker, const char *org_id,
                                            const char *user_id, int64_t refused_fence,
                                            oauth_broker_fn *done, void *ctx)
{
	if (broker->closing)
		return NULL;
	struct flight *f = broker->flights;
	while (f != NULL && (f->kind != FLIGHT_USER || strcmp(f->user_id, user_id) != 0))
		f = f->next;
	bool fresh = f == NULL;
	if (fresh) {
		if (broker->flight_count >= MT_OAUTH_FLIGHTS_MAX ||
		    (f = calloc(1, sizeof(*f))) == NULL)
			return NULL;
		f->broker = broker;
		f->kind = FLIGHT_USER;
		f->refused_fence = -1;
		mt_strlcpy(f->org_id, org_id, sizeof(f->org_id));
		mt_strlcpy(f->user_id, user_id, sizeof(f->user_id));
	}
	struct oauth_broker_ask *ask = NULL;
	if (done != NULL) {
		ask = calloc(1, sizeof(*ask));
		if (ask == NULL) {
			if (fresh)
				free(f);
			return NULL;
		}
		ask->flight = f;
		ask->done = done;
		ask->ctx = ctx;
		ask->next = f->asks;
		f->asks = ask;
	}
	/* A forced ask joining a flight that has not decided yet makes it refresh; one that
	 * joins a refresh gets its newer token anyway. */
	if (refused_fence > f->refused_fence)
		f->refused_fence = refused_fence;
	if (fresh) {
		flight_list(f);
		flight_load(f);
	}
	return ask;
}

void oauth_broker_cancel(struct oauth_broker_ask **ask_p)
{
	struct oauth_broker_ask *ask = *ask_p;
	if (ask == NULL)
		return;
	*ask_p = NULL;
	struct flight *f = ask->flight;
	for (struct oauth_broker_ask **p = &f->asks; *p != NULL; p = &(*p)->next) {
		if (*p == ask) {
			*p = ask->next;
			break;
		}
	}
	free(ask);
}

/* ---- new grants ----------------------------------------------------------------------------- */

void oauth_grant_clear(struct oauth_new_grant *g)
{
	mt_secret_free(&g->client_secret);
	mt_secret_free(&g->refresh_token);
	mt_secret_free(&g->access_token);
	memset(g, 0, sizeof(*g));
}

static struct mt_secret *take_secret(const char *text)
{
	size_t len = strlen(text);
	struct mt_secret *secret = mt_secret_new(text, len);
	sodium_memzero((char *)text, len);
	return secret;
}

static bool printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s == 0x7f)
			return false;
	return true;
}

const char *oauth_grant_take(struct oauth_new_grant *g, const struct oauth_grant_request *req)
{
	memset(g, 0, sizeof(*g));
	const char *why = NULL;
	if (req->refresh_token == NULL || req->refresh_token[0] == '\0')
		why = "refresh_token is required";
	else if (strlen(req->refresh_token) > MT_OAUTH_TOKEN_MAX || !printable(req->refresh_token))
		why = "refresh_token: not a token";
	else if (req->access_token != NULL &&
	         (req->access_token[0] == '\0' || strlen(req->access_token) > MT_OAUTH_TOKEN_MAX ||
	          !printable(req->access_token)))
		why = "access_token: not a token";
	else if (req->client_secret != NULL &&
	         (strlen(req->client_secret) > MT_OAUTH_TOKEN_MAX || req->client_secret[0] == '\0'))
		why = "client_secret: must not be empty";
	else if (req->token_url == NULL || strncmp(req->token_url, "https://", 8) != 0 ||
	         strlen(req->token_url) > MT_OAUTH_URL_MAX || !printable(req->token_url))
		why = "token_url: an https:// URL is required (or a preset that has one)";
	else if (req->client_id == NULL || req->client_id[0] == '\0' ||
	         strlen(req->client_id) > MT_OAUTH_CLIENT_ID_MAX || !printable(req->client_id))
		why = "client_id is required";
	else if (req->expires_at < 0)
		why = "expires_at: must be unix seconds";
	if (why == NULL) {
		mt_strlcpy(g->provider, req->provider != NULL ? req->provider : "custom",
		           sizeof(g->provider));
		mt_strlcpy(g->token_url, req->token_url, sizeof(g->token_url));
		mt_strlcpy(g->client_id, req->client_id, sizeof(g->client_id));
		g->expires_at = req->access_token != NULL ? req->expires_at : 0;
	}
	/* The request's copies go whatever happens. */
	const char *secrets[] = {req->refresh_token, req->access_token, req->client_secret};
	struct mt_secret **dest[] = {&g->refresh_token, &g->access_token, &g->client_secret};
	for (size_t i = 0; i < 3; i++) {
		if (secrets[i] == NULL)
			continue;
		if (why != NULL) {
			sodium_memzero((char *)secrets[i], strlen(secrets[i]));
			continue;
		}
		*dest[i] = take_secret(secrets[i]);
		if (*dest[i] == NULL)
			why = "out of memory";
	}
	if (why != NULL)
		oauth_grant_clear(g);
	return why;
}

int oauth_grant_seal(const struct mt_keyring *keyring, const char *org_id, const char *user_id,
                     const struct oauth_new_grant *g, struct store_oauth_grant *out)
{
	memset(out, 0, sizeof(*out));
	mt_strlcpy(out->org_id, org_id, sizeof(out->org_id));
	mt_strlcpy(out->user_id, user_id, sizeof(out->user_id));
	mt_strlcpy(out->provider, g->provider, sizeof(out->provider));
	mt_strlcpy(out->token_url, g->token_url, sizeof(out->token_url));
	mt_strlcpy(out->client_id, g->client_id, sizeof(out->client_id));
	out->expires_at = g->access_token != NULL ? g->expires_at : 0;
	out->state = STORE_GRANT_ACTIVE;
	if (seal_token(keyring, "client", user_id, g->client_secret, &out->client_secret) < 0 ||
	    seal_token(keyring, "refresh", user_id, g->refresh_token, &out->refresh_token) < 0 ||
	    seal_token(keyring, "access", user_id, g->access_token, &out->access_token) < 0) {
		sodium_memzero(out, sizeof(*out));
		return -1;
	}
	return 0;
}

static void prepare_now(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct flight *f = arg;
	if (f->broker->closing) {
		flight_park(f);
		return;
	}
	if (f->kind == FLIGHT_SAVE)
		save_put(f);
	else
		flight_end(f, OAUTH_BROKER_OK, NULL);
}

static int prepare_start(struct flight *f)
{
	struct oauth_new_grant *g = f->newg;
	/* A token given without its expiry is used; the background refresh renews it soon. */
	bool usable =
	    g->access_token != NULL &&
	    (g->expires_at == 0 || g->expires_at - mt_wall_s() > MT_OAUTH_REFRESH_MARGIN_S);
	if (usable)
		return event_base_once(f->broker->p.base, -1, EV_TIMEOUT, prepare_now, f, NULL);
	struct oauth_refresh_params params = {
	    .token_url = g->token_url,
	    .client_id = g->client_id,
	    .client_secret = g->client_secret,
	    .refresh_token = g->refresh_token,
	    .ca_file = f->broker->p.ca_file,
	};
	const char *error;
	f->stage = ST_REFRESH;
	return oauth_refresh(f->broker->refresher, &params, refreshed, f, &error);
}

int oauth_broker_prepare(struct oauth_broker *broker, struct oauth_new_grant *grant,
                         oauth_broker_fn *done, void *ctx)
{
	if (broker->closing)
		return -1;
	struct flight *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	f->broker = broker;
	f->kind = FLIGHT_PREPARE;
	f->refused_fence = -1;
	f->newg = grant;
	f->done = done;
	f->ctx = ctx;
	if (prepare_start(f) < 0) {
		free(f);
		return -1;
	}
	flight_list(f);
	return 0;
}

static int put_run(struct store_tx *tx, void *arg)
{
	struct flight *f = arg;
	return store_oauth_grant_put(tx, &f->grant);
}

static void put_done(void *arg, int result)
{
	struct flight *f = arg;
	if (f->broker->closing) {
		flight_park(f);
		return;
	}
	struct oauth_broker_answer answer = {
	    .outcome = result == 0 ? OAUTH_BROKER_OK : OAUTH_BROKER_TEMPORARY,
	    .reason = result == STORE_NOT_FOUND ? "user not found"
	              : result != 0             ? "the store failed"
	                                        : NULL,
	    .fence = f->grant.updated_at,
	    .expires_at = f->grant.expires_at,
	};
	flight_unlist(f);
	f->done(f->ctx, &answer);
	flight_free(f);
}

static void save_put(struct flight *f)
{
	if (oauth_grant_seal(f->broker->p.keyring, f->org_id, f->user_id, &f->owned, &f->grant) <
	    0) {
		struct oauth_broker_answer answer = {.outcome = OAUTH_BROKER_TEMPORARY,
		                                     .reason = "cannot seal the grant"};
		flight_unlist(f);
		f->done(f->ctx, &answer);
		flight_free(f);
		return;
	}
	oauth_grant_clear(&f->owned);
	f->stage = ST_PUT;
	if (store_submit(f->broker->p.store, STORE_WRITE_DURABLE, put_run, put_done, f) < 0) {
		struct oauth_broker_answer answer = {.outcome = OAUTH_BROKER_TEMPORARY,
		                                     .reason = "the store is busy"};
		flight_unlist(f);
		f->done(f->ctx, &answer);
		flight_free(f);
	}
}

int oauth_broker_grant_save(struct oauth_broker *broker, const char *org_id, const char *user_id,
                            struct oauth_new_grant *grant, oauth_broker_fn *done, void *ctx)
{
	if (broker->closing)
		return -1;
	struct flight *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	f->broker = broker;
	f->kind = FLIGHT_SAVE;
	f->refused_fence = -1;
	mt_strlcpy(f->org_id, org_id, sizeof(f->org_id));
	mt_strlcpy(f->user_id, user_id, sizeof(f->user_id));
	f->owned = *grant; /* the secrets move */
	memset(grant, 0, sizeof(*grant));
	f->newg = &f->owned;
	f->done = done;
	f->ctx = ctx;
	if (prepare_start(f) < 0) {
		*grant = f->owned;
		memset(&f->owned, 0, sizeof(f->owned));
		free(f);
		return -1;
	}
	flight_list(f);
	return 0;
}

/* ---- the background refresh ----------------------------------------------------------------- */

struct scan {
	struct oauth_broker *broker;
	int64_t before;
	struct store_oauth_ref refs[MT_OAUTH_BACKGROUND_BATCH];
	size_t count;
};

static int scan_run(struct store_tx *tx, void *arg)
{
	struct scan *scan = arg;
	return store_oauth_grants_expiring(tx, scan->before, scan->refs, MT_OAUTH_BACKGROUND_BATCH,
	                                   &scan->count);
}

static void scan_done(void *arg, int result)
{
	struct scan *scan = arg;
	struct oauth_broker *broker = scan->broker;
	broker->scanning = false;
	if (!broker->closing && result == 0) {
		/* An ask without a callback: the flight loads, refreshes and stores. */
		for (size_t i = 0; i < scan->count; i++)
			oauth_broker_token(broker, scan->refs[i].org_id, scan->refs[i].user_id, -1,
			                   NULL, NULL);
		if (scan->count > 0) {
			char n[24];
			snprintf(n, sizeof(n), "%zu", scan->count);
			mt_log(MT_LOG_DEBUG, "oauth.background_refresh", MT_KV("grants", n));
		}
	}
	free(scan);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct oauth_broker *broker = arg;
	if (broker->closing || broker->scanning)
		return;
	struct scan *scan = calloc(1, sizeof(*scan));
	if (scan == NULL)
		return;
	scan->broker = broker;
	/* Renewed before they reach the margin at the next tick. */
	int64_t interval = broker->p.background_ms > 0 ? broker->p.background_ms / 1000 : 0;
	scan->before = mt_wall_s() + MT_OAUTH_REFRESH_MARGIN_S + interval + 1;
	broker->scanning = true;
	if (store_submit(broker->p.store, STORE_READ, scan_run, scan_done, scan) < 0) {
		broker->scanning = false;
		free(scan);
	}
}

/* ---- life cycle ----------------------------------------------------------------------------- */

struct oauth_broker *oauth_broker_new(const struct oauth_broker_params *params,
                                      const char **error_r)
{
	struct oauth_broker *broker = calloc(1, sizeof(*broker));
	if (broker == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	broker->p = *params;
	if (broker->p.background_ms == 0)
		broker->p.background_ms = MT_OAUTH_BACKGROUND_MS;
	broker->refresher = oauth_refresher_new(params->base, error_r);
	if (broker->refresher == NULL) {
		free(broker);
		return NULL;
	}
	return broker;
}

void oauth_broker_set_revoked_hook(struct oauth_broker *broker, oauth_broker_revoked_fn *fn,
                                   void *ctx)
{
	broker->on_revoked = fn;
	broker->on_revoked_ctx = ctx;
}

int oauth_broker_start(struct oauth_broker *broker)
{
	if (broker->p.background_ms < 0)
		return 0;
	broker->timer = event_new(broker->p.base, -1, EV_PERSIST, on_timer, broker);
	if (broker->timer == NULL)
		return -1;
	struct timeval tv = {broker->p.background_ms / 1000,
	                     (broker->p.background_ms % 1000) * 1000};
	if (event_add(broker->timer, &tv) < 0)
		return -1;
	/* Grants that expired while the service was down: renewed now, not a minute later. */
	event_active(broker->timer, EV_TIMEOUT, 0);
	return 0;
}

void oauth_broker_close(struct oauth_broker *broker)
{
	if (broker == NULL || broker->closing)
		return;
	broker->closing = true;
	if (broker->timer != NULL) {
		event_free(broker->timer);
		broker->timer = NULL;
	}
	/* Refreshes in flight end without a call: their flights are parked with the broker. */
	oauth_refresher_free(&broker->refresher);
}

void oauth_broker_free(struct oauth_broker **broker_p)
{
	struct oauth_broker *broker = *broker_p;
	if (broker == NULL)
		return;
	*broker_p = NULL;
	oauth_broker_close(broker);
	struct flight *lists[] = {broker->flights, broker->parked};
	for (size_t i = 0; i < 2; i++) {
		for (struct flight *f = lists[i], *next; f != NULL; f = next) {
			next = f->next;
			while (f->asks != NULL) {
				struct oauth_broker_ask *ask = f->asks;
				f->asks = ask->next;
				free(ask);
			}
			flight_free(f);
		}
	}
	free(broker);
}
