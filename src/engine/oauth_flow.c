#include "engine/oauth_flow.h"

#include "config/config.h"
#include "crypto/seal.h"
#include "engine/account.h"
#include "engine/oauth_broker.h"
#include "lib/log.h"
#include "lib/str.h"
#include "oauth/authorize.h"
#include "oauth/refresh.h"
#include "store/store.h"
#include "store/store_oauth.h"
#include "store/store_user.h"

#include <sodium.h>

#include <stdarg.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct oauth_provider providers[] = {
    {
        .id = "google",
        .name = "Google",
        .auth_url = "https://accounts.google.com/o/oauth2/v2/auth",
        .token_url = "https://oauth2.googleapis.com/token",
        .smtp_scope = "https://mail.google.com/",
        .imap_scope = "https://mail.google.com/",
        /* a refresh token, and one on every consent (not only the first) */
        .extra = "access_type=offline&prompt=consent",
    },
    {
        .id = "microsoft",
        .name = "Microsoft",
        .auth_url = "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        .token_url = "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        .smtp_scope = "https://outlook.office.com/SMTP.Send",
        .imap_scope = "https://outlook.office.com/IMAP.AccessAsUser.All",
        .always_scope = "offline_access",
    },
};
#define PROVIDER_COUNT (sizeof(providers) / sizeof(providers[0]))

const struct oauth_provider *oauth_provider_find(const char *id)
{
	for (size_t i = 0; id != NULL && i < PROVIDER_COUNT; i++)
		if (strcmp(providers[i].id, id) == 0)
			return &providers[i];
	return NULL;
}

static int scope_add(char *out, size_t size, const char *scope)
{
	if (scope == NULL)
		return 0;
	/* once each: Google's one scope serves both purposes */
	size_t n = strlen(scope);
	for (const char *p = out; (p = strstr(p, scope)) != NULL; p += n)
		if ((p == out || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
			return 0;
	size_t used = strlen(out);
	int w = snprintf(out + used, size - used, "%s%s", used > 0 ? " " : "", scope);
	return w < 0 || (size_t)w >= size - used ? -1 : 0;
}

int oauth_provider_scope(const struct oauth_provider *provider, int purposes, char *out,
                         size_t size)
{
	if (size == 0)
		return -1;
	out[0] = '\0';
	if (((purposes & OAUTH_FOR_SMTP) && scope_add(out, size, provider->smtp_scope) < 0) ||
	    ((purposes & OAUTH_FOR_IMAP) && scope_add(out, size, provider->imap_scope) < 0) ||
	    scope_add(out, size, provider->always_scope) < 0)
		return -1;
	return 0;
}

int oauth_purposes_parse(const char *text, int *purposes_r, const char **error_r)
{
	*purposes_r = 0;
	if (text == NULL || *text == '\0') {
		*error_r = "for: required (smtp, imap or smtp,imap)";
		return -1;
	}
	for (const char *p = text;;) {
		size_t n = strcspn(p, ",");
		int bit = n == 4 && strncmp(p, "smtp", 4) == 0   ? OAUTH_FOR_SMTP
		          : n == 4 && strncmp(p, "imap", 4) == 0 ? OAUTH_FOR_IMAP
		                                                 : 0;
		if (bit == 0 || (*purposes_r & bit) != 0) {
			*error_r = bit == 0 ? "for: each entry must be smtp or imap"
			                    : "for: an entry is repeated";
			*purposes_r = 0;
			return -1;
		}
		*purposes_r |= bit;
		if (p[n] == '\0')
			return 0;
		p += n + 1;
	}
}

/* A provider as this operator set it up. */
struct provider_client {
	const struct oauth_provider *provider;
	bool configured; /* a client id is set */
	char client_id[MT_OAUTH_CLIENT_ID_MAX + 1];
	struct mt_secret *client_secret; /* NULL: a public client */
	char auth_url[MT_OAUTH_URL_MAX + 1];
	char token_url[MT_OAUTH_URL_MAX + 1];
};

struct oauth_flows {
	struct oauth_flows_params p;
	struct provider_client clients[PROVIDER_COUNT];
	char redirect_uri[MT_PUBLIC_URL_MAX + 32]; /* "" without public_url */
	const char *ca_file;
};

static const char *config_str(const struct mt_config *config, const char *provider,
                              const char *what)
{
	char key[64];
	snprintf(key, sizeof(key), "oauth_%s_%s", provider, what);
	return mt_config_str(config, key);
}

struct oauth_flows *oauth_flows_new(const struct oauth_flows_params *params, const char **error_r)
{
	struct oauth_flows *flows = calloc(1, sizeof(*flows));
	if (flows == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	flows->p = *params;
	flows->ca_file = mt_config_str(params->config, "ca_file");
	const char *public_url = mt_config_str(params->config, "public_url");
	if (public_url != NULL) {
		size_t n = strlen(public_url);
		while (n > 0 && public_url[n - 1] == '/')
			n--;
		snprintf(flows->redirect_uri, sizeof(flows->redirect_uri), "%.*s/oauth/callback",
		         (int)n, public_url);
	}
	for (size_t i = 0; i < PROVIDER_COUNT; i++) {
		struct provider_client *c = &flows->clients[i];
		const struct oauth_provider *pr = &providers[i];
		c->provider = pr;
		const char *id = config_str(params->config, pr->id, "client_id");
		const char *auth = config_str(params->config, pr->id, "auth_url");
		const char *token = config_str(params->config, pr->id, "token_url");
		mt_strlcpy(c->auth_url, auth != NULL ? auth : pr->auth_url, sizeof(c->auth_url));
		mt_strlcpy(c->token_url, token != NULL ? token : pr->token_url,
		           sizeof(c->token_url));
		if (id == NULL)
			continue;
		mt_strlcpy(c->client_id, id, sizeof(c->client_id));
		const char *secret_file = config_str(params->config, pr->id, "client_secret_file");
		if (secret_file != NULL &&
		    (c->client_secret = mt_secret_from_file(secret_file, error_r)) == NULL) {
			oauth_flows_free(&flows);
			return NULL;
		}
		c->configured = true;
	}
	return flows;
}

void oauth_flows_free(struct oauth_flows **flows)
{
	if (*flows == NULL)
		return;
	for (size_t i = 0; i < PROVIDER_COUNT; i++)
		mt_secret_free(&(*flows)->clients[i].client_secret);
	free(*flows);
	*flows = NULL;
}

static struct provider_client *client_find(struct oauth_flows *flows, const char *id)
{
	for (size_t i = 0; i < PROVIDER_COUNT; i++)
		if (strcmp(flows->clients[i].provider->id, id) == 0)
			return &flows->clients[i];
	return NULL;
}

static void flow_seal_context(const char *user_id, char context[MT_SEAL_CONTEXT_MAX])
{
	account_seal_context("oauth-flow", user_id, context);
}

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

/* ---- start -------------------------------------------------------------------------------- */

struct start_job {
	struct oauth_flows *flows;
	struct provider_client *client;
	struct store_oauth_flow flow;
	char state[OAUTH_RANDOM_TEXT_SIZE];
	char challenge[OAUTH_RANDOM_TEXT_SIZE];
	char email[MT_ADDRESS_MAX + 1];
	int rc;
	oauth_start_fn *done;
	void *ctx;
};

static int start_run(struct store_tx *tx, void *arg)
{
	struct start_job *job = arg;
	struct store_user user;
	job->rc = store_user_get(tx, job->flow.org_id, job->flow.user_id, &user);
	if (job->rc < 0)
		return -1;
	if (job->rc != 0)
		return 0;
	mt_strlcpy(job->email, user.email, sizeof(job->email));
	job->rc = store_oauth_flow_put(tx, &job->flow, mt_wall_ms() - MT_OAUTH_FLOW_TTL_S * 1000,
	                               MT_OAUTH_FLOWS_PER_USER);
	return job->rc < 0 ? -1 : job->rc;
}

static void start_done(void *arg, int result)
{
	struct start_job *job = arg;
	struct oauth_start_result r = {0};
	if (result != 0 || job->rc != 0) {
		crud_from_store(&r.outcome, job->rc != 0 ? job->rc : result);
	} else {
		char scope[512];
		const char *error = "scope too long";
		const struct provider_client *c = job->client;
		struct oauth_authorize a = {
		    .auth_url = c->auth_url,
		    .client_id = c->client_id,
		    .redirect_uri = job->flows->redirect_uri,
		    .scope = scope,
		    .state = job->state,
		    .code_challenge = job->challenge,
		    .login_hint = job->email[0] != '\0' ? job->email : NULL,
		    .extra = c->provider->extra,
		};
		if (oauth_provider_scope(c->provider, job->flow.purposes, scope, sizeof(scope)) <
		        0 ||
		    oauth_authorize_url(&a, r.url, sizeof(r.url), &error) < 0)
			crud_set(&r.outcome, CRUD_REFUSED, "%s: %s", c->provider->id, error);
	}
	sodium_memzero(job->state, sizeof(job->state));
	job->done(job->ctx, &r);
	free(job);
}

void oauth_flow_start(struct oauth_flows *flows, const char *org_id, const char *user_id,
                      const char *provider, const char *purposes, oauth_start_fn *done, void *ctx)
{
	struct oauth_start_result r = {0};
	const char *error;
	int bits;
	struct provider_client *client = provider != NULL ? client_find(flows, provider) : NULL;
	if (provider == NULL || *provider == '\0') {
		crud_set_at(&r.outcome, CRUD_INVALID, "missing_parameter", "provider",
		            "provider: required (google or microsoft)");
	} else if (client == NULL) {
		crud_set_at(&r.outcome, CRUD_INVALID, "invalid_value", "provider",
		            "provider: must be google or microsoft");
	} else if (oauth_purposes_parse(purposes, &bits, &error) < 0) {
		crud_set_at(&r.outcome, CRUD_INVALID, "invalid_value", "for", "%s", error);
	} else if (!client->configured) {
		crud_set_at(&r.outcome, CRUD_REFUSED, "not_configured", "provider",
		            "%s sign-in is not set up on this server (oauth_%s_client_id)",
		            client->provider->name, client->provider->id);
	} else if (flows->redirect_uri[0] == '\0') {
		crud_set_at(&r.outcome, CRUD_REFUSED, "not_configured", NULL,
		            "OAuth sign-in needs the server's public_url (the redirect URI)");
	}
	if (r.outcome.verdict != CRUD_OK) {
		done(ctx, &r);
		return;
	}
	struct start_job *job = calloc(1, sizeof(*job));
	if (job == NULL) {
		crud_set(&r.outcome, CRUD_FAILED, "out of memory");
		done(ctx, &r);
		return;
	}
	job->flows = flows;
	job->client = client;
	job->done = done;
	job->ctx = ctx;
	struct store_oauth_flow *f = &job->flow;
	mt_strlcpy(f->org_id, org_id, sizeof(f->org_id));
	mt_strlcpy(f->user_id, user_id, sizeof(f->user_id));
	mt_strlcpy(f->provider, client->provider->id, sizeof(f->provider));
	f->purposes = bits;
	f->created_at = mt_wall_ms();
	char verifier[OAUTH_RANDOM_TEXT_SIZE];
	char context[MT_SEAL_CONTEXT_MAX];
	flow_seal_context(user_id, context);
	int rc = oauth_state_new(job->state) < 0 || oauth_pkce_new(verifier, job->challenge) < 0
	             ? -1
	             : mt_seal(flows->p.keyring, context, (const unsigned char *)verifier,
	                       strlen(verifier), f->verifier.bytes, sizeof(f->verifier.bytes),
	                       &f->verifier.len);
	sodium_memzero(verifier, sizeof(verifier));
	if (rc < 0) {
		crud_set(&r.outcome, CRUD_FAILED, "could not make the flow's secrets");
		done(ctx, &r);
		free(job);
		return;
	}
	mt_token_hash(job->state, f->state_hash);
	if (store_submit(flows->p.store, STORE_WRITE, start_run, start_done, job) < 0) {
		r.outcome.verdict = CRUD_BUSY;
		done(ctx, &r);
		sodium_memzero(job->state, sizeof(job->state));
		free(job);
	}
}

/* ---- finish ------------------------------------------------------------------------------- */

struct finish_job {
	struct oauth_flows *flows;
	struct store_oauth_flow flow;
	struct mt_secret *code;
	struct mt_secret *verifier;
	struct oauth_token_reply reply;
	char provider_error[MT_ERROR_TEXT_MAX]; /* the redirect's error, "" when none */
	int rc;
	struct oauth_finish_result result;
	oauth_finish_fn *done;
	void *ctx;
};

static void finish_free(struct finish_job *job)
{
	mt_secret_free(&job->code);
	mt_secret_free(&job->verifier);
	oauth_token_reply_clear(&job->reply);
	sodium_memzero(&job->flow, sizeof(job->flow));
	free(job);
}

static void finish_reply(struct finish_job *job)
{
	struct oauth_finish_result *r = &job->result;
	if (r->outcome.verdict == CRUD_OK || r->org_id[0] != '\0')
		mt_log(r->outcome.verdict == CRUD_OK ? MT_LOG_INFO : MT_LOG_WARN,
		       "oauth.flow_finished", MT_KV("user", r->user_id),
		       MT_KV("provider", r->provider),
		       MT_KV("outcome", r->outcome.verdict == CRUD_OK ? "ok" : r->outcome.reason));
	job->done(job->ctx, r);
	finish_free(job);
}

static void fail(struct finish_job *job, enum crud_verdict verdict, const char *reason)
{
	crud_set(&job->result.outcome, verdict, "%s", reason);
	finish_reply(job);
}

static void failf(struct finish_job *job, enum crud_verdict verdict, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void failf(struct finish_job *job, enum crud_verdict verdict, const char *fmt, ...)
{
	char reason[MT_ERROR_TEXT_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	fail(job, verdict, reason);
}

static void granted_finish(void *finish_ctx, const struct crud_outcome *outcome, const char *detail)
{
	struct finish_job *job = finish_ctx;
	job->result.outcome = *outcome;
	mt_strlcpy(job->result.detail, detail != NULL ? detail : "", sizeof(job->result.detail));
	finish_reply(job);
}

/* The grant is stored (by the broker: prepared, sealed, replacing the user's earlier one); the
 * hook saves the accounts that use it. */
static void grant_saved(void *ctx, struct oauth_broker_answer *answer)
{
	struct finish_job *job = ctx;
	if (answer->outcome != OAUTH_BROKER_OK) {
		failf(job, answer->outcome == OAUTH_BROKER_REVOKED ? CRUD_INVALID : CRUD_FAILED,
		      "the grant could not be kept: %s",
		      answer->reason != NULL ? answer->reason : "unknown");
		return;
	}
	struct oauth_flow_grant g = {
	    .org_id = job->flow.org_id,
	    .user_id = job->flow.user_id,
	    .provider = job->flow.provider,
	    .purposes = job->flow.purposes,
	};
	if (job->flows->p.granted == NULL) {
		granted_finish(job, &(struct crud_outcome){.verdict = CRUD_OK}, "");
		return;
	}
	job->flows->p.granted(job->flows->p.granted_ctx, &g, granted_finish, job);
}

static void exchanged(void *ctx, struct oauth_token_reply *reply)
{
	struct finish_job *job = ctx;
	job->reply = *reply;
	memset(reply, 0, sizeof(*reply)); /* the tokens are the job's now */
	if (job->reply.outcome != OAUTH_OK) {
		failf(job, CRUD_INVALID, "the provider did not give the tokens: %s",
		      job->reply.reason);
		return;
	}
	if (job->reply.refresh_token == NULL) {
		fail(job, CRUD_INVALID,
		     "the provider gave no refresh token: the sign-in cannot be kept");
		return;
	}
	struct provider_client *c = client_find(job->flows, job->flow.provider);
	struct oauth_new_grant g = {0};
	mt_strlcpy(g.provider, job->flow.provider, sizeof(g.provider));
	mt_strlcpy(g.token_url, c->token_url, sizeof(g.token_url));
	mt_strlcpy(g.client_id, c->client_id, sizeof(g.client_id));
	if (c->client_secret != NULL &&
	    (g.client_secret = mt_secret_new(mt_secret_bytes(c->client_secret),
	                                     mt_secret_len(c->client_secret))) == NULL) {
		fail(job, CRUD_BUSY, "out of memory; start again");
		return;
	}
	g.refresh_token = job->reply.refresh_token; /* the tokens move to the grant */
	g.access_token = job->reply.access_token;
	job->reply.refresh_token = NULL;
	job->reply.access_token = NULL;
	g.expires_at = job->reply.expires_in > 0 ? now_s() + job->reply.expires_in : 0;
	if (oauth_broker_grant_save(job->flows->p.broker, job->flow.org_id, job->flow.user_id, &g,
	                            grant_saved, job) < 0) {
		oauth_grant_clear(&g);
		fail(job, CRUD_BUSY, "the server is busy; start again");
	}
}

static void flow_taken(void *arg, int result)
{
	struct finish_job *job = arg;
	struct oauth_finish_result *r = &job->result;
	if (result != 0 || job->rc < 0) {
		fail(job, CRUD_FAILED, "the store failed");
		return;
	}
	if (job->rc != 0) {
		fail(job, CRUD_INVALID,
		     "this sign-in link is unknown, expired or used already: start again");
		return;
	}
	mt_strlcpy(r->org_id, job->flow.org_id, sizeof(r->org_id));
	mt_strlcpy(r->user_id, job->flow.user_id, sizeof(r->user_id));
	mt_strlcpy(r->provider, job->flow.provider, sizeof(r->provider));
	r->purposes = job->flow.purposes;
	if (job->provider_error[0] != '\0') {
		failf(job, CRUD_INVALID, "the provider refused the sign-in: %s",
		      job->provider_error);
		return;
	}
	struct provider_client *c = client_find(job->flows, job->flow.provider);
	if (c == NULL || !c->configured) {
		failf(job, CRUD_REFUSED, "%s sign-in is no longer set up on this server",
		      job->flow.provider);
		return;
	}
	char context[MT_SEAL_CONTEXT_MAX];
	flow_seal_context(job->flow.user_id, context);
	const char *error;
	job->verifier = mt_unseal(job->flows->p.keyring, context, job->flow.verifier.bytes,
	                          job->flow.verifier.len, &error);
	if (job->verifier == NULL) {
		failf(job, CRUD_FAILED, "the flow's verifier: %s", error);
		return;
	}
	struct oauth_exchange_params params = {
	    .token_url = c->token_url,
	    .client_id = c->client_id,
	    .client_secret = c->client_secret,
	    .code = job->code,
	    .redirect_uri = job->flows->redirect_uri,
	    .code_verifier = job->verifier,
	    .ca_file = job->flows->ca_file,
	};
	if (oauth_exchange(job->flows->p.refresher, &params, exchanged, job, &error) < 0)
		failf(job, CRUD_BUSY, "the code exchange could not start: %s", error);
}

static int take_run(struct store_tx *tx, void *arg)
{
	struct finish_job *job = arg;
	unsigned char hash[32];
	memcpy(hash, job->flow.state_hash, sizeof(hash));
	job->rc =
	    store_oauth_flow_take(tx, hash, mt_wall_ms() - MT_OAUTH_FLOW_TTL_S * 1000, &job->flow);
	return job->rc < 0 ? -1 : 0;
}

static bool state_well_formed(const char *state)
{
	size_t n = state != NULL ? strlen(state) : 0;
	if (n != OAUTH_RANDOM_TEXT_SIZE - 1)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = state[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
	}
	return true;
}

void oauth_flow_finish(struct oauth_flows *flows, const char *state, const char *code,
                       const char *error, const char *error_description, oauth_finish_fn *done,
                       void *ctx)
{
	struct oauth_finish_result r = {0};
	if (!state_well_formed(state)) {
		crud_set(&r.outcome, CRUD_INVALID,
		         "this sign-in link is unknown, expired or used already: start again");
		done(ctx, &r);
		return;
	}
	if (error == NULL && (code == NULL || *code == '\0' || strlen(code) > MT_OAUTH_CODE_MAX)) {
		crud_set(&r.outcome, CRUD_INVALID, "the provider's answer has no usable code");
		done(ctx, &r);
		return;
	}
	struct finish_job *job = calloc(1, sizeof(*job));
	if (job == NULL ||
	    (error == NULL && (job->code = mt_secret_new(code, strlen(code))) == NULL)) {
		free(job);
		crud_set(&r.outcome, CRUD_FAILED, "out of memory");
		done(ctx, &r);
		return;
	}
	job->flows = flows;
	job->done = done;
	job->ctx = ctx;
	if (error != NULL) {
		/* the provider's words, shown to the user: printable ASCII only */
		snprintf(job->provider_error, sizeof(job->provider_error), "%.60s%s%.200s%s", error,
		         error_description != NULL ? " (" : "",
		         error_description != NULL ? error_description : "",
		         error_description != NULL ? ")" : "");
		for (char *p = job->provider_error; *p != '\0'; p++)
			if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
				*p = '?';
	}
	mt_token_hash(state, job->flow.state_hash);
	if (store_submit(flows->p.store, STORE_WRITE, take_run, flow_taken, job) < 0) {
		crud_set(&r.outcome, CRUD_BUSY, "the store is busy");
		done(ctx, &r);
		finish_free(job);
	}
}
