/* IMAP accounts: save (live login + folder discovery), view, off. See engine/imap_account.h. */
#include "engine/imap_account.h"
#include "engine/smtp_presets.h"
#include "engine/account_internal.h"

#include "config/config.h"
#include "crypto/seal.h"
#include "engine/host_policy.h"
#include "engine/oauth_broker.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/str.h"
#include "store/store.h"
#include "store/store_org.h"
#include "store/store_user.h"

#include <event2/event.h>
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SINCE_DEFAULT_DAYS 30

void accounts_set_imap_hook(struct accounts *accounts, account_imap_changed_fn *fn, void *ctx)
{
	accounts->imap_changed = fn;
	accounts->imap_changed_ctx = ctx;
}

int account_imap_client(const struct store_imap_account *a, const struct mt_keyring *keyring,
                        struct mt_tls_config *tls, const struct mt_cidr_list *private_ok,
                        struct imap_client_params *p, struct mt_tls_pin *pin_storage,
                        struct mt_secret **secret_r, const char **error_r)
{
	memset(p, 0, sizeof(*p));
	p->host = a->host;
	p->port = (uint16_t)a->port;
	p->security = account_net_security(a->security);
	p->auth = a->auth == STORE_AUTH_XOAUTH2 ? IMAP_AUTH_XOAUTH2 : IMAP_AUTH_PASSWORD;
	p->username = a->username;
	p->tls = tls;
	p->public_only = true;
	p->allow_private = private_ok;
	if (account_client_credentials(&ACCOUNT_ENDPOINT(a), "imap", a->user_id, keyring,
	                               pin_storage, &p->pin, secret_r, error_r) < 0)
		return -1;
	p->secret = *secret_r;
	return 0;
}

int account_imap_parse_date(const char *text, int64_t *time_r)
{
	int y, m, d;
	char tail;
	if (text == NULL || strlen(text) != 10 ||
	    sscanf(text, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3)
		return -1;
	if (text[4] != '-' || text[7] != '-' || y < 1970 || y > 9999 || m < 1 || m > 12 || d < 1)
		return -1;
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (d > days[m - 1] + (m == 2 && leap ? 1 : 0))
		return -1;
	struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d};
	*time_r = (int64_t)timegm(&tm);
	return 0;
}

/* ---- saving --------------------------------------------------------------------------------- */

struct imap_save {
	struct account_save s; /* first: what every protocol's save holds */
	account_imap_done_fn *done;
	void *ctx;
	struct store_imap_account account; /* what is asked for, then what is stored */
	char wanted[MT_IMAP_FOLDERS_MAX][MT_IMAP_MAILBOX_MAX];
	size_t wanted_count;
	struct store_imap_account stored; /* loaded */
	struct imap_client *client;
	struct event *deadline;
	bool checking;
	struct account_imap_result result;
};

static void save_finish(struct imap_save *save, enum account_verdict verdict, const char *reason)
{
	struct accounts *accounts = save->s.accounts;
	save->result.r.verdict = verdict;
	if (reason != NULL)
		mt_strlcpy(save->result.r.reason, reason, sizeof(save->result.r.reason));
	if (save->deadline != NULL)
		event_free(save->deadline);
	imap_client_free(&save->client);
	if (verdict == ACCOUNT_OK) {
		sodium_memzero(save->account.sealed_secret, sizeof(save->account.sealed_secret));
		save->account.sealed_secret_len = 0;
		save->result.account = &save->account;
	}
	account_save_release(&save->s);
	save->done(save->ctx, &save->result);
	if (verdict == ACCOUNT_OK && accounts->imap_changed != NULL)
		accounts->imap_changed(accounts->imap_changed_ctx, save->s.org_id, save->s.user_id);
	sodium_memzero(&save->stored, sizeof(save->stored));
	sodium_memzero(&save->account, sizeof(save->account));
	free(save);
}

static const char *refuse(struct imap_save *save, const char *code, const char *field,
                          const char *reason)
{
	return account_save_refuse(&save->s, code, field, reason);
}

static void op_finish(struct account_save *s, enum account_verdict verdict, const char *reason)
{
	save_finish((struct imap_save *)s, verdict, reason);
}

static int op_read(struct store_tx *tx, const struct account_save *s, void *account_r)
{
	return store_imap_account_get(tx, s->org_id, s->user_id, account_r);
}

/* Every save stamps a new updated_at (the sync's fence token): the same one is the same save. */
static bool op_same(const struct account_save *s, const void *now_p)
{
	const struct store_imap_account *a = &((const struct imap_save *)s)->stored, *now = now_p;
	return a->state == now->state && a->updated_at == now->updated_at;
}

/* The account as stored (its folders' cursors kept) is what the reply shows. */
static int op_store(struct store_tx *tx, struct account_save *s)
{
	struct imap_save *save = (struct imap_save *)s;
	int rc = store_imap_account_put(tx, &save->account);
	return rc == 0 ? store_imap_account_get(tx, s->org_id, s->user_id, &save->account) : rc;
}

static void op_stored(struct account_save *s)
{
	struct imap_save *save = (struct imap_save *)s;
	mt_log(MT_LOG_INFO, "imap.account_saved", MT_KV("user", s->user_id),
	       MT_KV("host", save->account.host));
	save_finish(save, ACCOUNT_OK, NULL);
}

static const char *op_host(const struct account_save *s)
{
	return ((const struct imap_save *)s)->account.host;
}

/* After the live check: the folders to watch, from what LIST showed. NULL, or the reason. */
static const char *choose_folders(struct imap_save *save, const struct imap_result *r, char *buf,
                                  size_t size)
{
	struct store_imap_account *a = &save->account;
	a->folder_count = 0;
	if (save->wanted_count == 0) {
		struct store_imap_folder *f = &a->folders[a->folder_count++];
		mt_strlcpy(f->name, "INBOX", sizeof(f->name));
		mt_strlcpy(f->role, "inbox", sizeof(f->role));
		const struct imap_mailbox *sent =
		    imap_mailboxes_find_sent(r->mailboxes, r->mailbox_count);
		if (sent != NULL) {
			f = &a->folders[a->folder_count++];
			mt_strlcpy(f->name, sent->name, sizeof(f->name));
			mt_strlcpy(f->role, "sent", sizeof(f->role));
		}
		return NULL;
	}
	for (size_t i = 0; i < save->wanted_count; i++) {
		const char *want = save->wanted[i];
		const struct imap_mailbox *found = NULL;
		for (size_t j = 0; j < r->mailbox_count && found == NULL; j++) {
			const struct imap_mailbox *m = &r->mailboxes[j];
			if (strcmp(m->name, want) == 0 || strcmp(m->name_utf8, want) == 0 ||
			    (strcasecmp(want, "INBOX") == 0 && strcasecmp(m->name, "INBOX") == 0))
				found = m;
		}
		if (found == NULL) {
			snprintf(buf, size, "folders[%zu]: the server has no folder '%.200s'", i,
			         want);
			return buf;
		}
		for (size_t k = 0; k < a->folder_count; k++)
			if (strcmp(a->folders[k].name, found->name) == 0) {
				snprintf(buf, size, "folders[%zu]: '%.200s' is listed twice", i,
				         want);
				return buf;
			}
		struct store_imap_folder *f = &a->folders[a->folder_count++];
		mt_strlcpy(f->name, found->name, sizeof(f->name));
		const char *role = strcasecmp(found->name, "INBOX") == 0
		                       ? "inbox"
		                       : imap_mailbox_role(found->flags);
		mt_strlcpy(f->role, role != NULL ? role : "", sizeof(f->role));
	}
	return NULL;
}

static void check_failed(struct imap_save *save, enum mt_failure_class cls, const char *reason,
                         const char *response, const char *fingerprint)
{
	account_count_check("imap", mt_class_name(cls));
	mt_log(MT_LOG_INFO, "imap.live_check_failed", MT_KV("user", save->s.user_id),
	       MT_KV("host", save->account.host), MT_KV("class", mt_class_name(cls)),
	       MT_KV("reason", reason));
	save->result.r.cls = cls;
	if (response != NULL)
		mt_strlcpy(save->result.r.smtp_reply, response, sizeof(save->result.r.smtp_reply));
	if (fingerprint != NULL)
		mt_strlcpy(save->result.r.fingerprint, fingerprint,
		           sizeof(save->result.r.fingerprint));
	char text[MT_ERROR_TEXT_MAX];
	snprintf(text, sizeof(text), "the live check failed: %.400s", reason);
	save_finish(save, ACCOUNT_CHECK_FAILED, text);
}

static void on_listed(void *ctx, const struct imap_result *r)
{
	struct imap_save *save = ctx;
	if (!save->checking)
		return;
	save->checking = false;
	if (r->cls != MT_CLASS_NONE) {
		check_failed(save, r->cls, r->reason, r->response, NULL);
		return;
	}
	char buf[MT_ERROR_TEXT_MAX];
	const char *why = choose_folders(save, r, buf, sizeof(buf));
	if (why != NULL) {
		save_finish(save, ACCOUNT_INVALID, why);
		return;
	}
	account_count_check("imap", "ok");
	const char *error;
	if (imap_client_logout(save->client, &error) < 0) {
		/* the check is done either way */
	}
	event_del(save->deadline);
	struct store_imap_account *a = &save->account;
	a->state = STORE_ACCOUNT_CONNECTED;
	a->verified_at = mt_wall_s();
	a->last_sync_at = save->s.stored_exists ? save->stored.last_sync_at : 0;
	a->last_error[0] = '\0';
	a->updated_at = mt_wall_ms();
	if (save->s.stored_exists && a->updated_at <= save->stored.updated_at)
		a->updated_at = save->stored.updated_at + 1;
	enum account_verdict v = account_save_passed(
	    &save->s, a->sealed_secret, sizeof(a->sealed_secret), &a->sealed_secret_len);
	if (v != ACCOUNT_OK)
		save_finish(save, v, NULL);
}

static void on_ready(void *ctx)
{
	(void)ctx;
}

static void on_failed(void *ctx, const struct imap_failure *f)
{
	struct imap_save *save = ctx;
	if (!save->checking)
		return; /* after the check: a LOGOUT that broke changes nothing */
	save->checking = false;
	check_failed(save, f->cls, f->reason, f->response, f->fingerprint);
}

static void on_closed(void *ctx)
{
	(void)ctx;
}

static void on_deadline(evutil_socket_t fd, short what, void *ctx)
{
	(void)fd;
	(void)what;
	struct imap_save *save = ctx;
	if (!save->checking)
		return;
	save->checking = false;
	check_failed(save, MT_CLASS_CONN, "no answer within 30 seconds", NULL, NULL);
}

/* The live check: connect, secure, log in and LIST, within MT_LIVE_CHECK_TOTAL_MS. */
static void op_check(struct account_save *s)
{
	struct imap_save *save = (struct imap_save *)s;
	struct accounts *accounts = s->accounts;
	struct imap_client_params params;
	struct mt_tls_pin pin;
	struct mt_secret *unused = NULL;
	const char *error;
	if (account_imap_client(&save->account, NULL, accounts->p.tls,
	                        account_allow_private(accounts), &params, &pin, &unused,
	                        &error) < 0) {
		save_finish(save, ACCOUNT_INVALID, error);
		return;
	}
	params.secret = save->s.secret;
	params.allow_plaintext_auth = mt_config_bool(accounts->p.config, "allow_plaintext_auth");
	params.connect_timeout_ms = MT_LIVE_CHECK_STEP_MS;
	params.greeting_timeout_ms = MT_LIVE_CHECK_STEP_MS;
	params.command_timeout_ms = MT_LIVE_CHECK_STEP_MS;
	static const struct imap_client_callbacks callbacks = {
	    .ready = on_ready,
	    .failed = on_failed,
	    .closed = on_closed,
	};
	save->deadline = evtimer_new(accounts->p.base, on_deadline, save);
	if (save->deadline == NULL) {
		save_finish(save, ACCOUNT_FAILED, "out of memory");
		return;
	}
	struct timeval tv = {MT_LIVE_CHECK_TOTAL_MS / 1000, 0};
	evtimer_add(save->deadline, &tv);
	save->checking = true;
	save->client =
	    imap_client_new(accounts->p.base, accounts->p.dns, &params, &callbacks, save, &error);
	if (save->client == NULL || imap_client_list(save->client, on_listed, save, &error) < 0) {
		save->checking = false;
		save_finish(save, ACCOUNT_FAILED, error);
	}
}

static void op_loaded(struct account_save *s)
{
	struct imap_save *save = (struct imap_save *)s;
	const struct account_endpoint stored = ACCOUNT_ENDPOINT(&save->stored),
	                              wanted = ACCOUNT_ENDPOINT(&save->account);
	/* A token given without a refresh_token comes as the password (merge_request). */
	account_save_authenticate(s, save->account.auth == STORE_AUTH_XOAUTH2, &stored, &wanted,
	                          "password");
}

static const struct account_save_ops imap_save_ops = {
    "IMAP sync",
    "IMAP",
    "imap_sync",
    ACCOUNT_FEATURE_IMAP_SYNC,
    sizeof(struct store_imap_account),
    offsetof(struct imap_save, stored),
    ACCOUNT_SAVE_OPS(op),
};

static const char *merge_request(struct imap_save *save, struct account_imap_request *req,
                                 char *buf, size_t size)
{
	struct store_imap_account *a = &save->account;
	if (req->host == NULL || req->host[0] == '\0' || !req->have_port || req->security == NULL)
		return refuse(save, "missing_field",
		              req->host == NULL || req->host[0] == '\0' ? "host"
		              : !req->have_port                         ? "port"
		                                                        : "security",
		              "host, port and security are required");
	if (store_security_parse(req->security, &a->security) < 0)
		return refuse(save, "invalid_value", "security",
		              "security: must be starttls, tls or none");
	if (store_auth_parse(req->auth != NULL ? req->auth : "password", &a->auth) < 0 ||
	    a->auth == STORE_AUTH_NONE)
		return refuse(save, "invalid_value", "auth", "auth: must be password or xoauth2");
	const char *why =
	    account_merge_host(&save->s, req->host, a->host, sizeof(a->host), buf, size);
	if (why != NULL)
		return why;
	a->port = (int)req->port;
	if (req->username == NULL || req->username[0] == '\0')
		return refuse(save, "missing_field", "username", "username is required");
	mt_strlcpy(a->username, req->username, sizeof(a->username));
	if ((why = account_merge_plaintext(&save->s, a->security)) != NULL)
		return why;
	if (req->preset != NULL && smtp_preset_find(req->preset) == NULL) {
		snprintf(buf, size, "preset: unknown preset '%.40s'", req->preset);
		return buf;
	}
	if ((why = account_merge_grant_fields(&save->s, a->auth, &req->oauth)) != NULL)
		return why;
	/* A token given beside a refresh_token is the grant's. */
	if (a->auth == STORE_AUTH_XOAUTH2 &&
	    (why = account_oauth_take(&save->s.oauth, req->preset, &req->oauth, &req->password, buf,
	                              size)) != NULL)
		return why;
	if (req->password != NULL && req->password[0] == '\0')
		return "password: must not be empty";
	if ((why = account_merge_secret(&save->s, req->password)) != NULL ||
	    (why = account_merge_pin(&save->s, req->tls_fingerprint, a->security,
	                             a->tls_fingerprint, sizeof(a->tls_fingerprint), buf, size)) !=
	        NULL)
		return why;
	if (req->since != NULL) {
		if (account_imap_parse_date(req->since, &a->since) < 0)
			return refuse(save, "invalid_value", "since",
			              "since: must be a date YYYY-MM-DD");
	} else {
		int64_t today = mt_wall_s() / 86400 * 86400;
		a->since = today - (int64_t)SINCE_DEFAULT_DAYS * 86400;
	}
	if (req->folder_count > MT_IMAP_FOLDERS_MAX)
		return "folders: too many";
	for (size_t i = 0; i < req->folder_count; i++) {
		const char *f = req->folders[i];
		if (f == NULL || f[0] == '\0' || strlen(f) >= MT_IMAP_MAILBOX_MAX) {
			snprintf(buf, size, "folders[%zu]: not a folder name", i);
			return buf;
		}
		mt_strlcpy(save->wanted[i], f, sizeof(save->wanted[i]));
	}
	save->wanted_count = req->folder_count;
	return NULL;
}

void account_imap_save(struct accounts *accounts, const char *org_id, const char *user_id,
                       struct account_imap_request *req, account_imap_done_fn *done, void *ctx)
{
	struct imap_save *save = calloc(1, sizeof(*save));
	if (save == NULL) {
		done(ctx, &(struct account_imap_result){.r = account_out_of_memory});
		return;
	}
	account_save_init(&save->s, &imap_save_ops, accounts, "imap", org_id, user_id,
	                  &save->result.r);
	save->done = done;
	save->ctx = ctx;
	mt_strlcpy(save->account.org_id, org_id, sizeof(save->account.org_id));
	mt_strlcpy(save->account.user_id, user_id, sizeof(save->account.user_id));
	char buf[MT_ERROR_TEXT_MAX];
	enum account_verdict v =
	    account_save_start(&save->s, merge_request(save, req, buf, sizeof(buf)));
	if (v != ACCOUNT_OK)
		save_finish(save, v, NULL);
}

/* ---- view, off ------------------------------------------------------------------------------ */

struct imap_view_job {
	struct accounts *accounts;
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	bool off;
	bool changed;
	account_imap_view_fn *view_done;
	account_done_fn *done;
	void *ctx;
	struct store_org org;
	struct account_imap_view view;
};

static int imap_view_run(struct store_tx *tx, void *arg)
{
	struct imap_view_job *job = arg;
	struct account_imap_view *v = &job->view;
	if (job->off) {
		int got = store_imap_account_get(tx, job->org_id, job->user_id, &v->account);
		job->changed = got == 0 && v->account.state != STORE_ACCOUNT_OFF;
		int rc = got == 0 ? store_imap_account_off(tx, job->org_id, job->user_id) : got;
		return rc == STORE_NOT_FOUND ? 0 : rc;
	}
	int rc = store_org_get(tx, job->org_id, &job->org);
	if (rc != 0)
		return rc;
	rc = store_imap_account_get(tx, job->org_id, job->user_id, &v->account);
	v->exists = rc == 0;
	if (rc == 0)
		rc = account_oauth_view_load(
		    tx, job->org_id, job->user_id,
		    oauth_account_uses_grant(v->account.auth == STORE_AUTH_XOAUTH2,
		                             v->account.sealed_secret_len),
		    &v->oauth);
	return rc == STORE_NOT_FOUND ? 0 : rc;
}

static void imap_view_done(void *arg, int result)
{
	struct imap_view_job *job = arg;
	struct accounts *accounts = job->accounts;
	struct account_result r = {.verdict = ACCOUNT_OK};
	if (result != 0) {
		r.verdict = ACCOUNT_FAILED;
		mt_strlcpy(r.reason, "the store failed; nothing was changed", sizeof(r.reason));
	}
	struct account_imap_view *v = &job->view;
	sodium_memzero(v->account.sealed_secret, sizeof(v->account.sealed_secret));
	v->account.sealed_secret_len = 0;
	if (job->off) {
		job->done(job->ctx, &r);
		if (r.verdict == ACCOUNT_OK && accounts->imap_changed != NULL)
			accounts->imap_changed(accounts->imap_changed_ctx, job->org_id,
			                       job->user_id);
	} else {
		v->feature_enabled = job->org.imap_sync;
		v->lag_seconds = v->exists && v->account.state == STORE_ACCOUNT_CONNECTED &&
		                         v->account.last_sync_at > 0
		                     ? mt_wall_s() - v->account.last_sync_at
		                     : -1;
		if (v->lag_seconds < -1)
			v->lag_seconds = 0;
		job->view_done(job->ctx, &r, r.verdict == ACCOUNT_OK ? v : NULL);
	}
	free(job);
}

static struct imap_view_job *imap_view_job_new(struct accounts *accounts, const char *org_id,
                                               const char *user_id, bool off)
{
	struct imap_view_job *job = calloc(1, sizeof(*job));
	if (job == NULL)
		return NULL;
	job->accounts = accounts;
	job->off = off;
	mt_strlcpy(job->org_id, org_id, sizeof(job->org_id));
	mt_strlcpy(job->user_id, user_id, sizeof(job->user_id));
	return job;
}

void account_imap_view(struct accounts *accounts, const char *org_id, const char *user_id,
                       account_imap_view_fn *done, void *ctx)
{
	struct account_result r = {.verdict = ACCOUNT_FAILED};
	struct imap_view_job *job = imap_view_job_new(accounts, org_id, user_id, false);
	if (job == NULL) {
		mt_strlcpy(r.reason, "out of memory", sizeof(r.reason));
		done(ctx, &r, NULL);
		return;
	}
	job->view_done = done;
	job->ctx = ctx;
	if (store_submit(accounts->p.store, STORE_READ, imap_view_run, imap_view_done, job) < 0) {
		free(job);
		r.verdict = ACCOUNT_BUSY;
		mt_strlcpy(r.reason, "the store is busy; try again", sizeof(r.reason));
		done(ctx, &r, NULL);
	}
}

void account_imap_off(struct accounts *accounts, const char *org_id, const char *user_id,
                      account_done_fn *done, void *ctx)
{
	struct account_result r = {.verdict = ACCOUNT_FAILED};
	struct imap_view_job *job = imap_view_job_new(accounts, org_id, user_id, true);
	if (job == NULL) {
		mt_strlcpy(r.reason, "out of memory", sizeof(r.reason));
		done(ctx, &r);
		return;
	}
	job->done = done;
	job->ctx = ctx;
	if (store_submit(accounts->p.store, STORE_WRITE_DURABLE, imap_view_run, imap_view_done,
	                 job) < 0) {
		free(job);
		r.verdict = ACCOUNT_BUSY;
		mt_strlcpy(r.reason, "the store is busy; try again", sizeof(r.reason));
		done(ctx, &r);
	}
}
