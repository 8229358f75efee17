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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LIVE_CHECK_TOTAL_MS 30000
#define SINCE_DEFAULT_DAYS  30

void accounts_set_imap_hook(struct accounts *accounts, account_imap_changed_fn *fn, void *ctx)
{
	accounts->imap_changed = fn;
	accounts->imap_changed_ctx = ctx;
}

static const struct mt_cidr_list *allow_private(const struct accounts *accounts)
{
	return mt_config_cidrs(accounts->p.config, "allow_private_hosts");
}

int account_imap_client(const struct store_imap_account *a, const struct mt_keyring *keyring,
                        struct mt_tls_config *tls, const struct mt_cidr_list *private_ok,
                        struct imap_client_params *p, struct mt_tls_pin *pin_storage,
                        struct mt_secret **secret_r, const char **error_r)
{
	memset(p, 0, sizeof(*p));
	*secret_r = NULL;
	p->host = a->host;
	p->port = (uint16_t)a->port;
	p->security = account_net_security(a->security);
	p->auth = a->auth == STORE_AUTH_XOAUTH2 ? IMAP_AUTH_XOAUTH2 : IMAP_AUTH_PASSWORD;
	p->username = a->username;
	p->tls = tls;
	p->public_only = true;
	p->allow_private = private_ok;
	if (a->tls_fingerprint[0] != '\0') {
		if (mt_tls_pin_parse(a->tls_fingerprint, pin_storage, error_r) < 0)
			return -1;
		p->pin = pin_storage;
	}
	if (keyring != NULL && a->sealed_secret_len > 0) {
		char context[MT_SEAL_CONTEXT_MAX];
		account_seal_context("imap", a->user_id, context);
		*secret_r =
		    mt_unseal(keyring, context, a->sealed_secret, a->sealed_secret_len, error_r);
		if (*secret_r == NULL)
			return -1;
		p->secret = *secret_r;
	}
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

static void count_check(const char *cls)
{
	mt_metric_inc("mailtrail_live_checks_total", "Live checks of mail accounts by outcome",
	              "kind", "imap", "class", cls);
}

/* ---- saving --------------------------------------------------------------------------------- */

enum save_stage { SAVE_LOAD, SAVE_STORE };

struct imap_save {
	struct accounts *accounts;
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	account_imap_done_fn *done;
	void *ctx;
	enum save_stage stage;
	struct store_imap_account account; /* what is asked for, then what is stored */
	char wanted[MT_IMAP_FOLDERS_MAX][MT_IMAP_MAILBOX_MAX];
	size_t wanted_count;
	struct mt_secret *given;
	struct store_org org;
	struct store_user user;
	struct store_imap_account stored;
	bool stored_exists;
	struct mt_secret *secret;
	bool holds_slot;
	struct imap_client *client;
	struct event *deadline;
	bool checking;
	struct account_oauth oauth; /* xoauth2 on a grant */
	struct account_imap_result result;
};

static void save_finish(struct imap_save *save, enum account_verdict verdict, const char *reason)
{
	struct accounts *accounts = save->accounts;
	save->result.r.verdict = verdict;
	if (reason != NULL)
		mt_strlcpy(save->result.r.reason, reason, sizeof(save->result.r.reason));
	if (save->holds_slot)
		account_release_slot(accounts, save->org_id);
	if (save->deadline != NULL)
		event_free(save->deadline);
	imap_client_free(&save->client);
	if (verdict == ACCOUNT_OK) {
		sodium_memzero(save->account.sealed_secret, sizeof(save->account.sealed_secret));
		save->account.sealed_secret_len = 0;
		save->result.account = &save->account;
	}
	save->done(save->ctx, &save->result);
	if (verdict == ACCOUNT_OK && accounts->imap_changed != NULL)
		accounts->imap_changed(accounts->imap_changed_ctx, save->org_id, save->user_id);
	mt_secret_free(&save->given);
	mt_secret_free(&save->secret);
	account_oauth_clear(&save->oauth);
	sodium_memzero(&save->stored, sizeof(save->stored));
	sodium_memzero(&save->account, sizeof(save->account));
	free(save);
}

/* The reason of a refused request, its code and field noted for the reply. */
static const char *refuse(struct imap_save *save, const char *code, const char *field,
                          const char *reason)
{
	save->result.r.code = code;
	save->result.r.field = field;
	return reason;
}

static void store_failed(struct imap_save *save, int rc)
{
	save_finish(save, rc == STORE_NOT_FOUND ? ACCOUNT_NOT_FOUND : ACCOUNT_FAILED,
	            rc == STORE_NOT_FOUND ? "user not found" : "the store failed; nothing changed");
}

/* The stored password goes only where it went before: the same server, login and transport. */
static bool same_destination(const struct store_imap_account *stored,
                             const struct store_imap_account *wanted)
{
	return strcmp(stored->host, wanted->host) == 0 && stored->port == wanted->port &&
	       strcmp(stored->username, wanted->username) == 0 && stored->auth == wanted->auth &&
	       stored->security == wanted->security &&
	       account_same_pin(stored->tls_fingerprint, wanted->tls_fingerprint);
}

static bool same_account(const struct store_imap_account *a, bool a_exists,
                         const struct store_imap_account *b, bool b_exists)
{
	if (a_exists != b_exists)
		return false;
	return !a_exists || (a->state == b->state && a->updated_at == b->updated_at);
}

static int save_store(struct store_tx *tx, struct imap_save *save)
{
	struct store_org org;
	struct store_user user;
	struct store_imap_account *now = malloc(sizeof(*now));
	if (now == NULL)
		return -1;
	save->result.r.verdict = ACCOUNT_OK;
	int rc = store_org_get(tx, save->org_id, &org);
	if (rc == 0)
		rc = store_user_get(tx, save->org_id, save->user_id, &user);
	if (rc == 0 && !user.active)
		save->result.r.verdict = ACCOUNT_NOT_FOUND;
	else if (rc == 0 && !org.imap_sync)
		save->result.r.verdict = ACCOUNT_FEATURE_OFF;
	if (rc == 0 && save->result.r.verdict == ACCOUNT_OK) {
		int got = store_imap_account_get(tx, save->org_id, save->user_id, now);
		if (got != 0 && got != STORE_NOT_FOUND)
			rc = got;
		else if (!same_account(&save->stored, save->stored_exists, now, got == 0))
			save->result.r.verdict = ACCOUNT_CHANGED;
	}
	sodium_memzero(now, sizeof(*now));
	free(now);
	if (rc != 0 || save->result.r.verdict != ACCOUNT_OK)
		return rc;
	rc = account_oauth_store(tx, &save->oauth);
	if (rc == 0)
		rc = store_imap_account_put(tx, &save->account);
	if (rc == 0)
		rc = store_imap_account_get(tx, save->org_id, save->user_id, &save->account);
	return rc;
}

static int save_run(struct store_tx *tx, void *arg)
{
	struct imap_save *save = arg;
	if (save->stage == SAVE_STORE)
		return save_store(tx, save);
	int rc = store_org_get(tx, save->org_id, &save->org);
	if (rc == 0)
		rc = store_user_get(tx, save->org_id, save->user_id, &save->user);
	if (rc != 0)
		return rc;
	if (!save->user.active)
		return STORE_NOT_FOUND;
	rc = store_imap_account_get(tx, save->org_id, save->user_id, &save->stored);
	save->stored_exists = rc == 0;
	return rc == STORE_NOT_FOUND ? 0 : rc;
}

static void save_stored(void *arg, int result)
{
	struct imap_save *save = arg;
	if (result != 0) {
		store_failed(save, result);
		return;
	}
	switch (save->result.r.verdict) {
	case ACCOUNT_FEATURE_OFF:
		save_finish(save, ACCOUNT_FEATURE_OFF,
		            "IMAP sync was switched off for this org during the check");
		return;
	case ACCOUNT_CHANGED:
		save_finish(save, ACCOUNT_CHANGED,
		            "the IMAP settings changed during the check; nothing was stored, try "
		            "again");
		return;
	case ACCOUNT_NOT_FOUND:
		save_finish(save, ACCOUNT_NOT_FOUND, "user not found");
		return;
	default:
		break;
	}
	mt_log(MT_LOG_INFO, "imap.account_saved", MT_KV("user", save->user_id),
	       MT_KV("host", save->account.host));
	save_finish(save, ACCOUNT_OK, NULL);
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
	count_check(mt_class_name(cls));
	mt_log(MT_LOG_INFO, "imap.live_check_failed", MT_KV("user", save->user_id),
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
	count_check("ok");
	const char *error;
	if (imap_client_logout(save->client, &error) < 0) {
		/* the check is done either way */
	}
	event_del(save->deadline);
	account_release_slot(save->accounts, save->org_id);
	save->holds_slot = false;
	char context[MT_SEAL_CONTEXT_MAX];
	account_seal_context("imap", save->user_id, context);
	struct store_imap_account *a = &save->account;
	a->sealed_secret_len = 0;
	/* On a grant the account keeps no token: the broker hands out the grant's. */
	if (save->oauth.uses_grant
	        ? account_oauth_seal(save->accounts, &save->oauth, save->org_id, save->user_id) < 0
	        : mt_seal(save->accounts->p.keyring, context, mt_secret_bytes(save->secret),
	                  mt_secret_len(save->secret), a->sealed_secret, sizeof(a->sealed_secret),
	                  &a->sealed_secret_len) < 0) {
		save_finish(save, ACCOUNT_FAILED, "cannot seal the secret");
		return;
	}
	a->state = STORE_ACCOUNT_CONNECTED;
	a->verified_at = mt_wall_s();
	a->last_sync_at = save->stored_exists ? save->stored.last_sync_at : 0;
	a->last_error[0] = '\0';
	a->updated_at = mt_wall_ms();
	if (save->stored_exists && a->updated_at <= save->stored.updated_at)
		a->updated_at = save->stored.updated_at + 1;
	save->stage = SAVE_STORE;
	if (store_submit(save->accounts->p.store, STORE_WRITE_DURABLE, save_run, save_stored,
	                 save) < 0)
		save_finish(save, ACCOUNT_BUSY, "the store is busy; try again");
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

static void save_host_checked(void *ctx, enum host_verdict verdict, const char *reason)
{
	struct imap_save *save = ctx;
	struct accounts *accounts = save->accounts;
	if (verdict == HOST_PRIVATE || verdict == HOST_INVALID) {
		save_finish(save, ACCOUNT_INVALID,
		            refuse(save, verdict == HOST_PRIVATE ? "host_private" : "invalid_value",
		                   "host", reason));
		return;
	}
	if (verdict == HOST_UNRESOLVABLE) {
		count_check("conn");
		save->result.r.cls = MT_CLASS_CONN;
		save_finish(save, ACCOUNT_CHECK_FAILED,
		            refuse(save, "host_unresolvable", "host", reason));
		return;
	}
	if (!account_take_slot(accounts, save->org_id)) {
		save_finish(save, ACCOUNT_THROTTLED,
		            "too many live checks are running for this org; try again shortly");
		return;
	}
	save->holds_slot = true;
	struct imap_client_params params;
	struct mt_tls_pin pin;
	struct mt_secret *unused = NULL;
	const char *error;
	if (account_imap_client(&save->account, NULL, accounts->p.tls, allow_private(accounts),
	                        &params, &pin, &unused, &error) < 0) {
		save_finish(save, ACCOUNT_INVALID, error);
		return;
	}
	params.secret = save->secret;
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
	struct timeval tv = {LIVE_CHECK_TOTAL_MS / 1000, 0};
	evtimer_add(save->deadline, &tv);
	save->checking = true;
	save->client =
	    imap_client_new(accounts->p.base, accounts->p.dns, &params, &callbacks, save, &error);
	if (save->client == NULL || imap_client_list(save->client, on_listed, save, &error) < 0) {
		save->checking = false;
		save_finish(save, ACCOUNT_FAILED, error);
	}
}

/* The token of an account on a grant (engine/account_oauth.c), then the same check. */
static void token_ready(void *ctx, struct mt_secret *token, enum account_verdict verdict,
                        enum mt_failure_class cls, const char *reason)
{
	struct imap_save *save = ctx;
	if (verdict != ACCOUNT_OK) {
		if (verdict == ACCOUNT_CHECK_FAILED)
			count_check(mt_class_name(cls));
		save->result.r.cls = cls;
		save_finish(save, verdict, reason);
		return;
	}
	save->secret = token;
	host_policy_check(save->accounts->p.base, save->accounts->p.dns, save->account.host,
	                  allow_private(save->accounts), save_host_checked, save);
}

static void save_loaded(void *arg, int result)
{
	struct imap_save *save = arg;
	struct accounts *accounts = save->accounts;
	struct store_imap_account *a = &save->account;
	if (result != 0) {
		store_failed(save, result);
		return;
	}
	if (!save->org.imap_sync) {
		refuse(save, "feature_off", NULL, NULL);
		save_finish(save, ACCOUNT_FEATURE_OFF,
		            "IMAP sync is not enabled for this org; an admin can turn on the "
		            "imap_sync feature");
		return;
	}
	if (a->auth == STORE_AUTH_XOAUTH2 && !save->oauth.new_grant && save->given == NULL &&
	    !(save->stored_exists && save->stored.sealed_secret_len > 0 &&
	      same_destination(&save->stored, a)))
		save->oauth.uses_grant = true; /* no token of its own: the user's grant */
	if (save->oauth.uses_grant) {
		save->oauth.ready = token_ready;
		save->oauth.ctx = save;
		account_oauth_token(accounts, &save->oauth, save->org_id, save->user_id);
		return;
	}
	if (save->given != NULL) {
		save->secret = save->given;
		save->given = NULL;
	} else if (save->stored_exists && save->stored.sealed_secret_len > 0 &&
	           same_destination(&save->stored, a)) {
		char context[MT_SEAL_CONTEXT_MAX];
		const char *error;
		account_seal_context("imap", save->user_id, context);
		save->secret = mt_unseal(accounts->p.keyring, context, save->stored.sealed_secret,
		                         save->stored.sealed_secret_len, &error);
		if (save->secret == NULL) {
			mt_log(MT_LOG_ERROR, "imap.unseal_failed", MT_KV("user", save->user_id),
			       MT_KV("error", error));
			save_finish(save, ACCOUNT_INVALID,
			            "the stored password cannot be used; send it again");
			return;
		}
	} else {
		bool had = save->stored_exists && save->stored.sealed_secret_len > 0;
		refuse(save, "password_required", "password", NULL);
		save_finish(
		    save, ACCOUNT_INVALID,
		    had ? "password is required: the stored one is only reused for the same "
		          "host, port, username, auth, security and tls_fingerprint"
		        : "password is required");
		return;
	}
	host_policy_check(accounts->p.base, accounts->p.dns, a->host, allow_private(accounts),
	                  save_host_checked, save);
}

static const char *merge_request(struct imap_save *save, struct account_imap_request *req,
                                 char *buf, size_t size)
{
	struct store_imap_account *a = &save->account;
	const char *error;
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
	if (!host_name_valid(req->host)) {
		snprintf(buf, size, "host: '%.300s' is not a valid host name", req->host);
		return refuse(save, "invalid_value", "host", buf);
	}
	mt_strlcpy(a->host, req->host, sizeof(a->host));
	for (char *p = a->host; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	a->port = (int)req->port;
	if (req->username == NULL || req->username[0] == '\0')
		return refuse(save, "missing_field", "username", "username is required");
	mt_strlcpy(a->username, req->username, sizeof(a->username));
	if (a->security == STORE_SECURITY_NONE &&
	    !mt_config_bool(save->accounts->p.config, "allow_plaintext_auth"))
		return "a password over security none would cross the network in plaintext; use "
		       "starttls or tls";
	if (req->preset != NULL && smtp_preset_find(req->preset) == NULL) {
		snprintf(buf, size, "preset: unknown preset '%.40s'", req->preset);
		return buf;
	}
	if (a->auth != STORE_AUTH_XOAUTH2 &&
	    (req->oauth.refresh_token != NULL || req->oauth.client_secret != NULL ||
	     req->oauth.token_url != NULL || req->oauth.client_id != NULL)) {
		const char *wipe[] = {req->oauth.refresh_token, req->oauth.client_secret};
		for (size_t i = 0; i < 2; i++)
			if (wipe[i] != NULL)
				sodium_memzero((char *)wipe[i], strlen(wipe[i]));
		return "refresh_token, token_url, client_id and client_secret need auth xoauth2";
	}
	if (a->auth == STORE_AUTH_XOAUTH2) {
		/* A token given beside a refresh_token is the grant's. */
		const char *why = account_oauth_take(&save->oauth, req->preset, &req->oauth,
		                                     &req->password, buf, size);
		if (why != NULL)
			return why;
	}
	if (req->password != NULL) {
		size_t len = strlen(req->password);
		if (len == 0)
			return "password: must not be empty";
		save->given = mt_secret_new(req->password, len);
		sodium_memzero((char *)req->password, len);
		if (save->given == NULL)
			return "out of memory";
	}
	if (req->tls_fingerprint != NULL && req->tls_fingerprint[0] != '\0') {
		struct mt_tls_pin pin;
		if (a->security == STORE_SECURITY_NONE)
			return "tls_fingerprint needs security tls or starttls";
		if (mt_tls_pin_parse(req->tls_fingerprint, &pin, &error) < 0) {
			snprintf(buf, size, "tls_fingerprint: %s", error);
			return buf;
		}
		mt_strlcpy(a->tls_fingerprint, req->tls_fingerprint, sizeof(a->tls_fingerprint));
	}
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
		struct account_imap_result result = {.r.verdict = ACCOUNT_FAILED};
		mt_strlcpy(result.r.reason, "out of memory", sizeof(result.r.reason));
		done(ctx, &result);
		return;
	}
	save->accounts = accounts;
	mt_strlcpy(save->org_id, org_id, sizeof(save->org_id));
	mt_strlcpy(save->user_id, user_id, sizeof(save->user_id));
	save->done = done;
	save->ctx = ctx;
	mt_strlcpy(save->account.org_id, org_id, sizeof(save->account.org_id));
	mt_strlcpy(save->account.user_id, user_id, sizeof(save->account.user_id));
	char buf[MT_ERROR_TEXT_MAX];
	const char *why = merge_request(save, req, buf, sizeof(buf));
	if (why != NULL) {
		save_finish(save, ACCOUNT_INVALID, why);
		return;
	}
	save->stage = SAVE_LOAD;
	if (store_submit(accounts->p.store, STORE_READ, save_run, save_loaded, save) < 0)
		save_finish(save, ACCOUNT_BUSY, "the store is busy; try again");
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
