/* The OAuth 2.0 authorisation-code flow (RFC 6749 §4.1 with PKCE, RFC 7636) that connects a
 * user's mailbox at Google or Microsoft without a password (issue 15):
 *
 *   GET /v1/oauth/start   oauth_flow_start: a state and a PKCE verifier are made; the flow is
 *                         stored (the state's SHA-256, the verifier sealed, who and what for);
 *                         the answer is the provider's authorisation URL for the user's browser
 *   GET /oauth/callback   oauth_flow_finish: the state is taken out of the store (once, within
 *                         MT_OAUTH_FLOW_TTL_S), the code exchanged at the token endpoint with the
 *                         verifier, and the tokens handed to the `granted` hook, which stores the
 *                         grant and saves the accounts after their live checks
 *
 * The providers and their operator settings (client id, client secret file, endpoints) are
 * `oauth_providers`; the redirect URI is `public_url` + "/oauth/callback".
 *
 * Ownership: `struct oauth_flows` borrows everything in its params, which must outlive it, and
 * owns the client secrets it read at start. Results handed to `done` are valid during the call;
 * the tokens in an oauth_flow_grant belong to the flow: the hook copies what it keeps. */
#ifndef MT_ENGINE_OAUTH_FLOW_H
#define MT_ENGINE_OAUTH_FLOW_H

#include "engine/crud.h"
#include "lib/limits.h"
#include "lib/secret.h"

#include <stdbool.h>
#include <stdint.h>

struct store;
struct mt_keyring;
struct mt_config;
struct oauth_refresher;
struct oauth_broker;
struct oauth_flows;

enum oauth_purpose {
	OAUTH_FOR_SMTP = 1 << 0,
	OAUTH_FOR_IMAP = 1 << 1,
};

/* A provider the flow knows: its endpoints (overridable by the operator) and the scopes each
 * purpose needs. */
struct oauth_provider {
	const char *id; /* "google", "microsoft" */
	const char *name;
	const char *auth_url;
	const char *token_url;
	const char *smtp_scope;
	const char *imap_scope;
	const char *always_scope; /* asked whatever the purposes (Microsoft's offline_access) */
	const char *extra;        /* more authorisation parameters, encoded */
};

/* NULL for an unknown id. */
const struct oauth_provider *oauth_provider_find(const char *id);
/* The space-separated scopes for `purposes` into out[size]; -1 when it does not fit. */
int oauth_provider_scope(const struct oauth_provider *provider, int purposes, char *out,
                         size_t size);
/* "smtp", "imap", "smtp,imap" (any order, no repeats) into OAUTH_FOR_* bits; -1 with *error_r. */
int oauth_purposes_parse(const char *text, int *purposes_r, const char **error_r);

/* What a finished flow yields once the broker has stored the grant: whose it is and what for.
 * The tokens stay behind the broker (oauth_broker_token). */
struct oauth_flow_grant {
	const char *org_id;
	const char *user_id;
	const char *provider;
	int purposes;
};

struct oauth_finish_result {
	struct crud_outcome outcome; /* INVALID: a bad or used state, a refused consent, a failed
	                                exchange (reason); FAILED: the store */
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	char provider[MT_OAUTH_PROVIDER_MAX];
	int purposes;
	char detail[MT_ERROR_TEXT_MAX]; /* what the hook reported (accounts saved or not) */
};

/* Called with the grant of a finished flow; must call `finish(finish_ctx, outcome, detail)`
 * exactly once (possibly later, after live checks). */
typedef void oauth_granted_finish_fn(void *finish_ctx, const struct crud_outcome *outcome,
                                     const char *detail);
typedef void oauth_granted_fn(void *ctx, const struct oauth_flow_grant *grant,
                              oauth_granted_finish_fn *finish, void *finish_ctx);

struct oauth_flows_params {
	struct store *store;
	struct mt_keyring *keyring;
	const struct mt_config *config;    /* oauth_*, public_url, ca_file */
	struct oauth_refresher *refresher; /* the code exchange */
	struct oauth_broker *broker;       /* stores the grant */
	oauth_granted_fn *granted;         /* NULL: the flow stores nothing beyond the exchange */
	void *granted_ctx;
};

/* Reads the configured client secrets; NULL with *error_r naming the file that failed. */
struct oauth_flows *oauth_flows_new(const struct oauth_flows_params *params, const char **error_r);
void oauth_flows_free(struct oauth_flows **flows);

struct oauth_start_result {
	struct crud_outcome outcome; /* INVALID (provider, for), REFUSED (not configured),
	                                NOT_FOUND (the user), BUSY, FAILED */
	char url[MT_OAUTH_AUTHORIZE_URL_MAX];
};
typedef void oauth_start_fn(void *ctx, const struct oauth_start_result *result);
void oauth_flow_start(struct oauth_flows *flows, const char *org_id, const char *user_id,
                      const char *provider, const char *purposes, oauth_start_fn *done, void *ctx);

typedef void oauth_finish_fn(void *ctx, const struct oauth_finish_result *result);
/* The redirect's parameters: `state` and `code`, or the provider's `error` (access_denied...)
 * with its `error_description`; NULL when absent. */
void oauth_flow_finish(struct oauth_flows *flows, const char *state, const char *code,
                       const char *error, const char *error_description, oauth_finish_fn *done,
                       void *ctx);

#endif
