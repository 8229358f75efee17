/* See engine/oauth_connect.h. One job per finished sign-in: load the user (its address), then
 * SMTP, then IMAP, one after the other so that the two live checks never race for the grant's
 * first refresh (the broker would join them anyway) and the page reads in a fixed order. */
#include "engine/oauth_connect.h"

#include "engine/account.h"
#include "engine/imap_account.h"
#include "lib/limits.h"
#include "lib/str.h"
#include "store/store.h"
#include "store/store_imap.h"
#include "store/store_smtp.h"
#include "store/store_user.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct oauth_connect {
	struct accounts *accounts;
	struct store *store;
};

struct connect_job {
	struct oauth_connect *c;
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	char provider[MT_OAUTH_PROVIDER_MAX];
	int purposes;
	struct store_user user;
	int user_rc;
	char detail[MT_ERROR_TEXT_MAX];
	oauth_granted_finish_fn *finish;
	void *finish_ctx;
};

static const struct {
	const char *provider;
	const char *smtp_preset;
	struct oauth_imap_server imap;
} providers[] = {
    {"google", "gmail", {"imap.gmail.com", 993, "tls"}},
    {"microsoft", "microsoft365", {"outlook.office365.com", 993, "tls"}},
};

const struct oauth_imap_server *oauth_connect_imap_server(const char *provider)
{
	for (size_t i = 0; i < sizeof(providers) / sizeof(providers[0]); i++)
		if (strcmp(providers[i].provider, provider) == 0)
			return &providers[i].imap;
	return NULL;
}

const char *oauth_connect_smtp_preset(const char *provider)
{
	for (size_t i = 0; i < sizeof(providers) / sizeof(providers[0]); i++)
		if (strcmp(providers[i].provider, provider) == 0)
			return providers[i].smtp_preset;
	return NULL;
}

struct oauth_connect *oauth_connect_new(struct accounts *accounts, struct store *store)
{
	struct oauth_connect *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->accounts = accounts;
	c->store = store;
	return c;
}

void oauth_connect_free(struct oauth_connect **connect)
{
	free(*connect);
	*connect = NULL;
}

static void job_note(struct connect_job *job, const char *what, const char *outcome)
{
	size_t len = strlen(job->detail);
	snprintf(job->detail + len, sizeof(job->detail) - len, "%s%s: %s.", len > 0 ? " " : "",
	         what, outcome);
}

static void job_end(struct connect_job *job)
{
	struct crud_outcome ok = {.verdict = CRUD_OK};
	job->finish(job->finish_ctx, &ok, job->detail);
	free(job);
}

static void note_result(struct connect_job *job, const char *what, const struct account_result *r)
{
	char outcome[MT_ERROR_TEXT_MAX + 32];
	if (r->verdict == ACCOUNT_OK)
		snprintf(outcome, sizeof(outcome), "connected");
	else
		snprintf(outcome, sizeof(outcome), "not saved (%s)", r->reason);
	job_note(job, what, outcome);
}

/* ---- IMAP ---- */

static void imap_saved(void *ctx, const struct account_imap_result *result)
{
	struct connect_job *job = ctx;
	note_result(job, "Syncing", &result->r);
	job_end(job);
}

static void imap_viewed(void *ctx, const struct account_result *result,
                        const struct account_imap_view *view)
{
	struct connect_job *job = ctx;
	if (result->verdict != ACCOUNT_OK) {
		note_result(job, "Syncing", result);
		job_end(job);
		return;
	}
	if (!view->feature_enabled) {
		job_note(job, "Syncing", "not set up (IMAP sync is off for your organisation)");
		job_end(job);
		return;
	}
	struct account_imap_request req = {.auth = "xoauth2", .oauth = {.use_grant = true}};
	const struct store_imap_account *a = &view->account;
	char since[16];
	if (view->exists && a->host[0] != '\0') {
		/* The account the user set up, moved onto the grant: server, login, folders kept.
		 */
		req.host = a->host;
		req.port = a->port;
		req.have_port = true;
		req.security = store_security_name(a->security);
		req.username = a->username;
		req.tls_fingerprint = a->tls_fingerprint[0] != '\0' ? a->tls_fingerprint : NULL;
		time_t t = (time_t)a->since;
		struct tm tm;
		if (a->since > 0 && gmtime_r(&t, &tm) != NULL &&
		    strftime(since, sizeof(since), "%Y-%m-%d", &tm) > 0)
			req.since = since;
		for (size_t i = 0; i < a->folder_count && i < MT_IMAP_FOLDERS_MAX; i++)
			req.folders[i] = a->folders[i].name;
		req.folder_count = a->folder_count;
	} else {
		const struct oauth_imap_server *server = oauth_connect_imap_server(job->provider);
		if (server == NULL) {
			job_note(job, "Syncing",
			         "not set up (no IMAP server known for this provider)");
			job_end(job);
			return;
		}
		req.host = server->host;
		req.port = server->port;
		req.have_port = true;
		req.security = server->security;
		req.username = job->user.email;
	}
	req.preset = oauth_connect_smtp_preset(job->provider);
	account_imap_save(job->c->accounts, job->org_id, job->user_id, &req, imap_saved, job);
}

static void imap_next(struct connect_job *job)
{
	if (!(job->purposes & OAUTH_FOR_IMAP)) {
		job_end(job);
		return;
	}
	account_imap_view(job->c->accounts, job->org_id, job->user_id, imap_viewed, job);
}

/* ---- SMTP ---- */

static void smtp_saved(void *ctx, const struct account_result *result)
{
	struct connect_job *job = ctx;
	note_result(job, "Sending", result);
	imap_next(job);
}

static void smtp_viewed(void *ctx, const struct account_result *result,
                        const struct account_smtp_view *view)
{
	struct connect_job *job = ctx;
	if (result->verdict != ACCOUNT_OK) {
		note_result(job, "Sending", result);
		imap_next(job);
		return;
	}
	if (!view->feature_enabled) {
		job_note(job, "Sending", "not set up (custom SMTP is off for your organisation)");
		imap_next(job);
		return;
	}
	/* Signing in for sending is the consent the form's disclaimer asks for: the start page
	 * shows the disclaimer before it sends the user to the provider (docs/oauth.md). */
	struct account_smtp_request req = {
	    .auth = "xoauth2", .oauth = {.use_grant = true}, .accept_disclaimer = true};
	const struct store_smtp_account *a = &view->account;
	if (view->exists && a->host[0] != '\0') {
		req.preset = a->preset[0] != '\0' ? a->preset : NULL;
		req.host = a->host;
		req.port = a->port;
		req.have_port = true;
		req.security = store_security_name(a->security);
		req.username = a->username;
		req.from = a->from_address;
		req.tls_fingerprint = a->tls_fingerprint[0] != '\0' ? a->tls_fingerprint : NULL;
	} else {
		req.preset = oauth_connect_smtp_preset(job->provider);
		if (req.preset == NULL) {
			job_note(job, "Sending",
			         "not set up (no SMTP server known for this provider)");
			imap_next(job);
			return;
		}
		req.username = job->user.email;
		req.from = job->user.email;
	}
	account_smtp_save(job->c->accounts, job->org_id, job->user_id, &req, smtp_saved, job);
}

static void smtp_next(struct connect_job *job)
{
	if (!(job->purposes & OAUTH_FOR_SMTP)) {
		imap_next(job);
		return;
	}
	account_smtp_view(job->c->accounts, job->org_id, job->user_id, smtp_viewed, job);
}

static int user_run(struct store_tx *tx, void *arg)
{
	struct connect_job *job = arg;
	job->user_rc = store_user_get(tx, job->org_id, job->user_id, &job->user);
	return job->user_rc == STORE_NOT_FOUND ? 0 : job->user_rc;
}

static void user_loaded(void *arg, int result)
{
	struct connect_job *job = arg;
	if (result != 0 || job->user_rc != 0) {
		struct crud_outcome failed = {.verdict = CRUD_FAILED};
		mt_strlcpy(failed.reason, "the user could not be read", sizeof(failed.reason));
		job->finish(job->finish_ctx, &failed, "");
		free(job);
		return;
	}
	smtp_next(job);
}

void oauth_connect_granted(void *ctx, const struct oauth_flow_grant *grant,
                           oauth_granted_finish_fn *finish, void *finish_ctx)
{
	struct oauth_connect *c = ctx;
	struct connect_job *job = calloc(1, sizeof(*job));
	if (job == NULL) {
		struct crud_outcome busy = {.verdict = CRUD_BUSY};
		finish(finish_ctx, &busy, "");
		return;
	}
	job->c = c;
	mt_strlcpy(job->org_id, grant->org_id, sizeof(job->org_id));
	mt_strlcpy(job->user_id, grant->user_id, sizeof(job->user_id));
	mt_strlcpy(job->provider, grant->provider, sizeof(job->provider));
	job->purposes = grant->purposes;
	job->finish = finish;
	job->finish_ctx = finish_ctx;
	if (store_submit(c->store, STORE_READ, user_run, user_loaded, job) < 0) {
		struct crud_outcome busy = {.verdict = CRUD_BUSY};
		free(job);
		finish(finish_ctx, &busy, "");
	}
}
