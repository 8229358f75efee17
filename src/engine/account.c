#include "engine/account.h"
#include "engine/account_internal.h"

#include "config/config.h"
#include "crypto/seal.h"
#include "engine/governor.h"
#include "engine/host_policy.h"
#include "engine/smtp_presets.h"
#include "engine/smtp_probe.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/str.h"
#include "mime/address.h"
#include "mime/build.h"
#include "net/security.h"
#include "store/store.h"
#include "store/store_org.h"
#include "store/store_outbox.h"
#include "store/store_user.h"

#include <arpa/inet.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct accounts *accounts_new(const struct accounts_params *params)
{
	struct accounts *accounts = calloc(1, sizeof(*accounts));
	if (accounts != NULL)
		accounts->p = *params;
	return accounts;
}

void accounts_free(struct accounts **accounts_p)
{
	struct accounts *accounts = *accounts_p;
	if (accounts == NULL)
		return;
	*accounts_p = NULL;
	free(accounts->checks);
	free(accounts);
}

static const struct mt_cidr_list *allow_private(const struct accounts *accounts)
{
	return mt_config_cidrs(accounts->p.config, "allow_private_hosts");
}

void account_seal_context(const char *protocol, const char *user_id,
                          char context[MT_SEAL_CONTEXT_MAX])
{
	snprintf(context, MT_SEAL_CONTEXT_MAX, "%s:%s", protocol, user_id);
}

static const struct {
	const char *name;
	int seconds;
} windows[] = {{"minute", 60}, {"hour", 3600}, {"day", 86400}};

int account_window_seconds(const char *name)
{
	for (size_t i = 0; name != NULL && i < sizeof(windows) / sizeof(windows[0]); i++)
		if (strcmp(windows[i].name, name) == 0)
			return windows[i].seconds;
	return 0;
}

const char *account_window_name(int seconds)
{
	for (size_t i = 0; i < sizeof(windows) / sizeof(windows[0]); i++)
		if (windows[i].seconds == seconds)
			return windows[i].name;
	return "?";
}

/* ---- client parameters ---------------------------------------------------------------------- */

enum mt_security account_net_security(enum store_security security)
{
	return security == STORE_SECURITY_TLS    ? MT_SECURITY_TLS
	       : security == STORE_SECURITY_NONE ? MT_SECURITY_NONE
	                                         : MT_SECURITY_STARTTLS;
}

static enum smtp_auth smtp_auth_of(enum store_auth auth)
{
	return auth == STORE_AUTH_XOAUTH2 ? SMTP_AUTH_XOAUTH2
	       : auth == STORE_AUTH_NONE  ? SMTP_AUTH_NONE
	                                  : SMTP_AUTH_PASSWORD;
}

int account_smtp_client(const struct store_smtp_account *a, const struct mt_keyring *keyring,
                        struct mt_tls_config *tls, const struct mt_cidr_list *private_ok,
                        struct smtp_client_params *p, struct mt_tls_pin *pin_storage,
                        struct mt_secret **secret_r, const char **error_r)
{
	memset(p, 0, sizeof(*p));
	*secret_r = NULL;
	p->host = a->host;
	p->port = (uint16_t)a->port;
	p->security = account_net_security(a->security);
	p->auth = smtp_auth_of(a->auth);
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
		account_seal_context("smtp", a->user_id, context);
		*secret_r =
		    mt_unseal(keyring, context, a->sealed_secret, a->sealed_secret_len, error_r);
		if (*secret_r == NULL)
			return -1;
		p->secret = *secret_r;
	}
	return 0;
}

/* ---- live-check slots ----------------------------------------------------------------------- */

bool account_take_slot(struct accounts *accounts, const char *org_id)
{
	struct org_checks *free_slot = NULL;
	for (size_t i = 0; i < accounts->check_slots; i++) {
		struct org_checks *c = &accounts->checks[i];
		if (strcmp(c->org_id, org_id) == 0) {
			if (c->running >= MT_LIVE_CHECKS_PER_ORG)
				return false;
			c->running++;
			return true;
		}
		if (c->running == 0 && free_slot == NULL)
			free_slot = c;
	}
	if (free_slot == NULL) {
		size_t n = accounts->check_slots ? accounts->check_slots * 2 : 16;
		struct org_checks *grown = realloc(accounts->checks, n * sizeof(*grown));
		if (grown == NULL)
			return false;
		memset(grown + accounts->check_slots, 0,
		       (n - accounts->check_slots) * sizeof(*grown));
		free_slot = grown + accounts->check_slots;
		accounts->checks = grown;
		accounts->check_slots = n;
	}
	mt_strlcpy(free_slot->org_id, org_id, sizeof(free_slot->org_id));
	free_slot->running = 1;
	return true;
}

void account_release_slot(struct accounts *accounts, const char *org_id)
{
	for (size_t i = 0; i < accounts->check_slots; i++)
		if (strcmp(accounts->checks[i].org_id, org_id) == 0 &&
		    accounts->checks[i].running > 0)
			accounts->checks[i].running--;
}

static void count_check(const char *cls)
{
	mt_metric_inc("mailtrail_live_checks_total", "Live checks of mail accounts by outcome",
	              "kind", "smtp", "class", cls);
}

/* ---- saving --------------------------------------------------------------------------------- */

enum save_stage { SAVE_LOAD, SAVE_STORE };

struct save {
	struct accounts *accounts;
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	account_done_fn *done;
	void *ctx;
	enum save_stage stage;
	struct store_smtp_account account; /* the request merged with the preset */
	struct mt_secret *given;           /* the request's secret, if any */
	bool limits_given;
	/* Loaded */
	struct store_org org;
	struct store_user user;
	struct store_smtp_account stored;
	bool stored_exists;
	struct mt_secret *secret; /* what the check uses */
	bool holds_slot;
	enum store_account_state state_before;
	/* The confirmation mail */
	char message_id[MT_MESSAGE_ID_MAX + 1];
	char mailtrail_id[MT_MESSAGE_ID_MAX + 1];
	int64_t confirmed_at_ms;    /* when the check knew the server had accepted it */
	struct account_oauth oauth; /* xoauth2 on a grant */
	struct account_result result;
};

static void save_finish(struct save *save, enum account_verdict verdict, const char *reason)
{
	save->result.verdict = verdict;
	if (reason != NULL)
		mt_strlcpy(save->result.reason, reason, sizeof(save->result.reason));
	if (save->holds_slot)
		account_release_slot(save->accounts, save->org_id);
	save->done(save->ctx, &save->result);
	if (verdict == ACCOUNT_OK && save->accounts->p.on_state != NULL)
		save->accounts->p.on_state(save->accounts->p.on_state_ctx, save->org_id,
		                           save->user_id, save->state_before,
		                           STORE_ACCOUNT_CONNECTED, "verified");
	mt_secret_free(&save->given);
	mt_secret_free(&save->secret);
	account_oauth_clear(&save->oauth);
	sodium_memzero(&save->stored, sizeof(save->stored));
	sodium_memzero(&save->account, sizeof(save->account));
	free(save);
}

/* The reason of a refused request, its code and field noted for the reply. */
static const char *refuse(struct save *save, const char *code, const char *field,
                          const char *reason)
{
	save->result.code = code;
	save->result.field = field;
	return reason;
}

static void save_refuse(struct save *save, enum account_verdict verdict, const char *code,
                        const char *field, const char *reason)
{
	save_finish(save, verdict, refuse(save, code, field, reason));
}

static void save_failf(struct save *save, enum account_verdict verdict, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void save_failf(struct save *save, enum account_verdict verdict, const char *fmt, ...)
{
	char reason[MT_ERROR_TEXT_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	save_finish(save, verdict, reason);
}

static void store_failed(struct save *save, int rc)
{
	save_finish(save, rc == STORE_NOT_FOUND ? ACCOUNT_NOT_FOUND : ACCOUNT_FAILED,
	            rc == STORE_NOT_FOUND ? "user not found" : "the store failed; nothing changed");
}

/* Two pins are the same when both are absent or both name the same digest, whatever the
 * spelling (case, colons). */
bool account_same_pin(const char *a, const char *b)
{
	if (a[0] == '\0' || b[0] == '\0')
		return a[0] == b[0];
	struct mt_tls_pin pa, pb;
	const char *error;
	return mt_tls_pin_parse(a, &pa, &error) == 0 && mt_tls_pin_parse(b, &pb, &error) == 0 &&
	       pa.kind == pb.kind && memcmp(pa.digest, pb.digest, sizeof(pa.digest)) == 0;
}

/* Whether the stored secret may be sent where the new settings point: the same server, login
 * and transport, or a stolen token could send the password to a host of its choice, in the
 * clear, or to a certificate of its choice. */
static bool same_destination(const struct store_smtp_account *stored,
                             const struct store_smtp_account *wanted)
{
	return strcmp(stored->host, wanted->host) == 0 && stored->port == wanted->port &&
	       strcmp(stored->username, wanted->username) == 0 && stored->auth == wanted->auth &&
	       stored->security == wanted->security &&
	       account_same_pin(stored->tls_fingerprint, wanted->tls_fingerprint);
}

/* The check took seconds: whatever it was decided on must still hold when its result is
 * stored, or a deactivation, a feature switch or a DELETE made meanwhile would be undone. */
static bool same_account(const struct store_smtp_account *a, bool a_exists,
                         const struct store_smtp_account *b, bool b_exists)
{
	if (a_exists != b_exists)
		return false;
	return !a_exists || (a->state == b->state && a->updated_at == b->updated_at &&
	                     a->sealed_secret_len == b->sealed_secret_len &&
	                     strcmp(a->host, b->host) == 0 && a->port == b->port);
}

/* The fence: the answer goes in the save (a business answer), the job's result is only for
 * the store ("roll back"). */
static int save_store(struct store_tx *tx, struct save *save)
{
	struct store_org org;
	struct store_user user;
	struct store_smtp_account *now = malloc(sizeof(*now));
	if (now == NULL)
		return -1;
	save->result.verdict = ACCOUNT_OK;
	int rc = store_org_get(tx, save->org_id, &org);
	if (rc == 0)
		rc = store_user_get(tx, save->org_id, save->user_id, &user);
	if (rc == 0 && !user.active)
		save->result.verdict = ACCOUNT_NOT_FOUND;
	else if (rc == 0 && !org.custom_smtp)
		save->result.verdict = ACCOUNT_FEATURE_OFF;
	if (rc == 0 && save->result.verdict == ACCOUNT_OK) {
		int got = store_smtp_account_get(tx, save->org_id, save->user_id, now);
		if (got != 0 && got != STORE_NOT_FOUND)
			rc = got;
		else if (!same_account(&save->stored, save->stored_exists, now, got == 0))
			save->result.verdict = ACCOUNT_CHANGED;
	}
	sodium_memzero(now, sizeof(*now));
	free(now);
	if (rc != 0 || save->result.verdict != ACCOUNT_OK)
		return rc;
	rc = account_oauth_store(tx, &save->oauth);
	if (rc == 0)
		rc = store_smtp_account_put(tx, &save->account);
	if (rc != 0)
		return rc;
	/* The confirmation mail the server accepted counts in the account's windows too. */
	char key[MT_GOVERNOR_KEY_MAX];
	governor_key(false, save->user_id, key);
	rc = governor_record(tx, key, save->message_id, save->account.from_address,
	                     save->confirmed_at_ms);
	if (rc != 0)
		return rc;
	/* Connected again: what waited for the reconnect (a campaign's mail) goes on now. */
	size_t released;
	return store_outbox_release_held(tx, save->org_id, save->user_id, STORE_HOLD_RECONNECT,
	                                 (int64_t)time(NULL), &released);
}

static int save_run(struct store_tx *tx, void *arg)
{
	struct save *save = arg;
	if (save->stage == SAVE_STORE)
		return save_store(tx, save);
	int rc = store_org_get(tx, save->org_id, &save->org);
	if (rc == 0)
		rc = store_user_get(tx, save->org_id, save->user_id, &save->user);
	if (rc != 0)
		return rc;
	rc = store_smtp_account_get(tx, save->org_id, save->user_id, &save->stored);
	save->stored_exists = rc == 0;
	return rc == STORE_NOT_FOUND ? 0 : rc;
}

static void save_stored(void *arg, int result)
{
	struct save *save = arg;
	if (result != 0) {
		store_failed(save, result);
		return;
	}
	switch (save->result.verdict) {
	case ACCOUNT_FEATURE_OFF:
		save_finish(save, ACCOUNT_FEATURE_OFF,
		            "Custom SMTP was switched off for this org during the check");
		return;
	case ACCOUNT_CHANGED:
		save_refuse(save, ACCOUNT_CHANGED, "changed_during_check", NULL,
		            "the SMTP settings changed during the check; nothing was stored, try "
		            "again");
		return;
	case ACCOUNT_NOT_FOUND:
		save_finish(save, ACCOUNT_NOT_FOUND, "user not found");
		return;
	default:
		break;
	}
	save->result.verified_at = save->account.verified_at;
	mt_strlcpy(save->result.confirmation_message_id, save->message_id,
	           sizeof(save->result.confirmation_message_id));
	save_finish(save, ACCOUNT_OK, NULL);
}

static void save_checked(void *ctx, const struct smtp_probe_result *r)
{
	struct save *save = ctx;
	struct accounts *accounts = save->accounts;
	account_release_slot(accounts, save->org_id);
	save->holds_slot = false;
	count_check(mt_class_name(r->cls));
	if (r->cls != MT_CLASS_NONE) {
		mt_log(MT_LOG_INFO, "smtp.live_check_failed", MT_KV("user", save->user_id),
		       MT_KV("host", save->account.host), MT_KV("class", mt_class_name(r->cls)),
		       MT_KV("reason", r->reason));
		save->result.cls = r->cls;
		mt_strlcpy(save->result.smtp_reply, r->reply, sizeof(save->result.smtp_reply));
		mt_strlcpy(save->result.fingerprint, r->fingerprint,
		           sizeof(save->result.fingerprint));
		save_failf(save, ACCOUNT_CHECK_FAILED, "the live check failed: %s", r->reason);
		return;
	}
	/* Seal what was checked, bound to this account. */
	char context[MT_SEAL_CONTEXT_MAX];
	account_seal_context("smtp", save->user_id, context);
	struct store_smtp_account *a = &save->account;
	a->sealed_secret_len = 0;
	/* On a grant the account keeps no token: the broker hands out the grant's. */
	if (save->oauth.uses_grant &&
	    account_oauth_seal(accounts, &save->oauth, save->org_id, save->user_id) < 0) {
		save_finish(save, ACCOUNT_FAILED, "cannot seal the grant");
		return;
	}
	if (save->secret != NULL && !save->oauth.uses_grant &&
	    mt_seal(accounts->p.keyring, context, mt_secret_bytes(save->secret),
	            mt_secret_len(save->secret), a->sealed_secret, sizeof(a->sealed_secret),
	            &a->sealed_secret_len) < 0) {
		save_finish(save, ACCOUNT_FAILED, "cannot seal the secret");
		return;
	}
	save->state_before = save->stored_exists ? save->stored.state : STORE_ACCOUNT_OFF;
	a->state = STORE_ACCOUNT_CONNECTED;
	a->verified_at = (int64_t)time(NULL);
	save->confirmed_at_ms = mt_wall_ms();
	mt_strlcpy(a->confirmation_message_id, save->message_id,
	           sizeof(a->confirmation_message_id));
	a->last_error[0] = '\0';
	save->stage = SAVE_STORE;
	if (store_submit(accounts->p.store, STORE_WRITE_DURABLE, save_run, save_stored, save) < 0)
		save_finish(save, ACCOUNT_BUSY, "the store is busy; try again");
}

/* The confirmation mail from `from` to `from`, with our identity. */
static int confirmation_mail(struct save *save, char **mail_r, size_t *len_r)
{
	const struct store_smtp_account *a = &save->account;
	const char *at = strrchr(a->from_address, '@');
	outbox_identity_new(at != NULL ? at + 1 : "", save->mailtrail_id, save->message_id);
	struct mime_mailbox from;
	memset(&from, 0, sizeof(from));
	mt_strlcpy(from.address, a->from_address, sizeof(from.address));
	char text[768];
	snprintf(text, sizeof(text),
	         "This message confirms that Custom SMTP is working: mail you send from the CRM\n"
	         "now goes out through %.200s as %.254s.\n",
	         a->host, a->from_address);
	const struct mime_build_header auto_submitted = {"Auto-Submitted", "auto-generated"};
	struct mime_build_input in = {
	    .from = &from,
	    .to = &from,
	    .to_count = 1,
	    .subject = "Custom SMTP is connected",
	    .text = text,
	    .message_id = save->message_id,
	    .mailtrail_id = save->mailtrail_id,
	    .date = (int64_t)time(NULL),
	    .headers = &auto_submitted,
	    .header_count = 1,
	};
	const char *error;
	return mime_build_message(&in, mail_r, len_r, &error);
}

static void save_host_checked(void *ctx, enum host_verdict verdict, const char *reason)
{
	struct save *save = ctx;
	struct accounts *accounts = save->accounts;
	if (verdict == HOST_PRIVATE || verdict == HOST_INVALID) {
		save_refuse(save, ACCOUNT_INVALID,
		            verdict == HOST_PRIVATE ? "host_private" : "invalid_value", "host",
		            reason);
		return;
	}
	if (verdict == HOST_UNRESOLVABLE) {
		count_check("conn");
		save->result.cls = MT_CLASS_CONN;
		save_refuse(save, ACCOUNT_CHECK_FAILED, "host_unresolvable", "host", reason);
		return;
	}
	if (!account_take_slot(accounts, save->org_id)) {
		save_finish(save, ACCOUNT_THROTTLED,
		            "too many live checks are running for this org; try again shortly");
		return;
	}
	save->holds_slot = true;
	struct smtp_probe_params params;
	memset(&params, 0, sizeof(params));
	struct mt_tls_pin pin;
	struct mt_secret *unused = NULL;
	const char *error;
	if (account_smtp_client(&save->account, NULL, accounts->p.tls, allow_private(accounts),
	                        &params.client, &pin, &unused, &error) < 0) {
		save_finish(save, ACCOUNT_INVALID, error);
		return;
	}
	params.client.secret = save->secret;
	/* A port that accepts and never greets must not hold the user for the whole deadline. */
	params.client.connect_timeout_ms = MT_LIVE_CHECK_STEP_MS;
	params.client.greeting_timeout_ms = MT_LIVE_CHECK_STEP_MS;
	char *mail = NULL;
	size_t mail_len = 0;
	if (confirmation_mail(save, &mail, &mail_len) < 0) {
		save_finish(save, ACCOUNT_FAILED, "cannot build the confirmation mail");
		return;
	}
	params.mail_from = save->account.from_address;
	params.rcpt_to = save->account.from_address;
	params.data = mail;
	params.data_len = mail_len;
	struct smtp_probe *probe = smtp_probe_start(accounts->p.base, accounts->p.dns, &params,
	                                            save_checked, NULL, save, &error);
	free(mail);
	if (probe == NULL)
		save_finish(save, ACCOUNT_FAILED, error);
}

/* The token of an account on a grant (engine/account_oauth.c), then the same check. */
static void token_ready(void *ctx, struct mt_secret *token, enum account_verdict verdict,
                        enum mt_failure_class cls, const char *reason)
{
	struct save *save = ctx;
	if (verdict != ACCOUNT_OK) {
		if (verdict == ACCOUNT_CHECK_FAILED)
			count_check(mt_class_name(cls));
		save->result.cls = cls;
		save_finish(save, verdict, reason);
		return;
	}
	save->secret = token;
	host_policy_check(save->accounts->p.base, save->accounts->p.dns, save->account.host,
	                  allow_private(save->accounts), save_host_checked, save);
}

static bool address_is_users(const struct store_user *user, const char *address)
{
	if (strcmp(user->email, address) == 0)
		return true;
	for (size_t i = 0; i < user->alias_count; i++)
		if (strcmp(user->aliases[i], address) == 0)
			return true;
	return false;
}

/* After loading the org, the user and the stored account: the rules that need them. */
static void save_loaded(void *arg, int result)
{
	struct save *save = arg;
	struct accounts *accounts = save->accounts;
	struct store_smtp_account *a = &save->account;
	if (result != 0) {
		store_failed(save, result);
		return;
	}
	if (!save->org.custom_smtp) {
		save_refuse(save, ACCOUNT_FEATURE_OFF, "feature_off", NULL,
		            "Custom SMTP is not enabled for this org; an admin can turn on the "
		            "custom_smtp feature");
		return;
	}
	if (!address_is_users(&save->user, a->from_address)) {
		save_refuse(save, ACCOUNT_INVALID, "from_not_own", "from",
		            "from: must be your own address or one of your aliases");
		return;
	}
	if (!save->limits_given && save->stored_exists &&
	    strcmp(save->stored.preset, a->preset) == 0) {
		memcpy(a->limits, save->stored.limits, sizeof(a->limits));
		a->limit_count = save->stored.limit_count;
	}
	if (a->auth != STORE_AUTH_NONE) {
		bool xoauth2 = a->auth == STORE_AUTH_XOAUTH2;
		if (xoauth2 && !save->oauth.new_grant && save->given == NULL &&
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
			account_seal_context("smtp", save->user_id, context);
			save->secret =
			    mt_unseal(accounts->p.keyring, context, save->stored.sealed_secret,
			              save->stored.sealed_secret_len, &error);
			if (save->secret == NULL) {
				mt_log(MT_LOG_ERROR, "smtp.unseal_failed",
				       MT_KV("user", save->user_id), MT_KV("error", error));
				save_finish(save, ACCOUNT_INVALID,
				            "the stored password cannot be used; send it again");
				return;
			}
		} else {
			bool had_secret = save->stored_exists && save->stored.sealed_secret_len > 0;
			refuse(save, xoauth2 ? "access_token_required" : "password_required",
			       xoauth2 ? "access_token" : "password", NULL);
			save_finish(
			    save, ACCOUNT_INVALID,
			    !had_secret
			        ? (xoauth2 ? "access_token is required" : "password is required")
			    : xoauth2 ? "access_token is required: the stored one is only "
			                "reused for the same host, port, username, security "
			                "and tls_fingerprint"
			              : "password is required: the stored one is only reused "
			                "for the same host, port, username, security and "
			                "tls_fingerprint");
			return;
		}
	}
	host_policy_check(accounts->p.base, accounts->p.dns, a->host, allow_private(accounts),
	                  save_host_checked, save);
}

static bool no_auth_allowed(const struct accounts *accounts, const char *host)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr *addr = NULL;
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		addr = (struct sockaddr *)in4;
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		addr = (struct sockaddr *)in6;
	}
	return mt_config_host_listed(accounts->p.config, "no_auth_hosts", host, addr);
}

static void wipe_text(const char *text)
{
	if (text != NULL)
		sodium_memzero((char *)text, strlen(text));
}

/* The request's rules that need nothing loaded: the preset fills what is omitted, explicit
 * fields win. NULL when they hold, else the reason (in `buf` or static). */
static const char *merge_request(struct save *save, struct account_smtp_request *req, char *buf,
                                 size_t buf_size)
{
	struct store_smtp_account *a = &save->account;
	const struct smtp_preset *preset = NULL;
	const char *error;
	if (!req->accept_disclaimer)
		return refuse(save, "disclaimer_required", "accept_disclaimer",
		              "accept_disclaimer must be true: read and accept the Custom SMTP "
		              "disclaimer first");
	if (req->preset != NULL && (preset = smtp_preset_find(req->preset)) == NULL) {
		snprintf(buf, buf_size, "preset: unknown preset '%s'", req->preset);
		return refuse(save, "unknown_preset", "preset", buf);
	}
	const char *host = req->host, *security = req->security, *auth = req->auth;
	int64_t port = req->port;
	bool have_port = req->have_port;
	if (host == NULL && preset != NULL)
		host = preset->host;
	if (!have_port && preset != NULL)
		port = preset->port, have_port = true;
	if (security == NULL && preset != NULL)
		security = preset->security;
	if (auth == NULL)
		auth = preset != NULL ? preset->auth : "password";
	if (host == NULL || host[0] == '\0' || !have_port || security == NULL)
		return refuse(save, "missing_field",
		              host == NULL || host[0] == '\0' ? "host"
		              : !have_port                    ? "port"
		                                              : "security",
		              "host, port and security are required (or a preset that has them)");
	if (store_security_parse(security, &a->security) < 0)
		return refuse(save, "invalid_value", "security",
		              "security: must be starttls, tls or none");
	if (store_auth_parse(auth, &a->auth) < 0)
		return refuse(save, "invalid_value", "auth",
		              "auth: must be password, xoauth2 or none");
	if (!host_name_valid(host)) {
		snprintf(buf, buf_size, "host: '%.300s' is not a valid host name", host);
		return refuse(save, "invalid_value", "host", buf);
	}
	mt_strlcpy(a->host, host, sizeof(a->host));
	for (char *p = a->host; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	a->port = (int)port;
	if (preset != NULL)
		mt_strlcpy(a->preset, preset->id, sizeof(a->preset));
	if (mime_address_normalize(req->from, a->from_address, &error) < 0) {
		snprintf(buf, buf_size, "from: %s", error);
		return refuse(save, "invalid_address", "from", buf);
	}
	if (a->auth != STORE_AUTH_XOAUTH2 &&
	    (req->oauth.refresh_token != NULL || req->oauth.client_secret != NULL ||
	     req->oauth.token_url != NULL || req->oauth.client_id != NULL)) {
		wipe_text(req->oauth.refresh_token);
		wipe_text(req->oauth.client_secret);
		return refuse(save, "invalid_combination", "auth",
		              "refresh_token, token_url, client_id and client_secret need auth "
		              "xoauth2");
	}
	if (a->auth == STORE_AUTH_NONE) {
		if (req->password != NULL || req->access_token != NULL || req->username != NULL)
			return refuse(save, "invalid_combination", "auth",
			              "auth none takes no username, password or access_token");
		if (!no_auth_allowed(save->accounts, a->host))
			return refuse(save, "auth_required", "auth",
			              "auth none is only allowed for hosts the operator lists in "
			              "no_auth_hosts");
	} else {
		if (req->username == NULL || req->username[0] == '\0')
			return refuse(save, "missing_field", "username", "username is required");
		mt_strlcpy(a->username, req->username, sizeof(a->username));
		bool xoauth2 = a->auth == STORE_AUTH_XOAUTH2;
		if (xoauth2) {
			const char *why = account_oauth_take(&save->oauth, req->preset, &req->oauth,
			                                     &req->access_token, buf, buf_size);
			if (why != NULL)
				return refuse(save, "invalid_oauth", "refresh_token", why);
		}
		const char *given = xoauth2 ? req->access_token : req->password;
		const char *wrong = xoauth2 ? req->password : req->access_token;
		if (wrong != NULL)
			return refuse(save, "invalid_combination",
			              xoauth2 ? "password" : "access_token",
			              xoauth2 ? "auth xoauth2 takes access_token, not password"
			                      : "auth password takes password, not access_token");
		if (a->security == STORE_SECURITY_NONE &&
		    !mt_config_bool(save->accounts->p.config, "allow_plaintext_auth"))
			return refuse(save, "plaintext_auth", "security",
			              "a password over security none would cross the network in "
			              "plaintext; use starttls or tls");
		if (given != NULL) {
			size_t len = strlen(given);
			save->given = mt_secret_new(given, len);
			/* The request's own copy goes as soon as the secret is ours. */
			sodium_memzero((char *)given, len);
			if (save->given == NULL)
				return "out of memory";
		}
	}
	if (req->tls_fingerprint != NULL && req->tls_fingerprint[0] != '\0') {
		struct mt_tls_pin pin;
		if (a->security == STORE_SECURITY_NONE)
			return refuse(save, "invalid_combination", "tls_fingerprint",
			              "tls_fingerprint needs security tls or starttls");
		if (mt_tls_pin_parse(req->tls_fingerprint, &pin, &error) < 0) {
			snprintf(buf, buf_size, "tls_fingerprint: %s", error);
			return refuse(save, "invalid_value", "tls_fingerprint", buf);
		}
		mt_strlcpy(a->tls_fingerprint, req->tls_fingerprint, sizeof(a->tls_fingerprint));
	}
	memcpy(a->limits, req->limits, sizeof(a->limits));
	a->limit_count = req->limit_count;
	save->limits_given = req->limits_given;
	if (!req->limits_given && preset != NULL) {
		for (size_t i = 0; i < preset->limit_count; i++) {
			a->limits[i].limit = preset->limits[i].limit;
			a->limits[i].window_s = account_window_seconds(preset->limits[i].window);
		}
		a->limit_count = preset->limit_count;
	}
	return NULL;
}

void account_smtp_save(struct accounts *accounts, const char *org_id, const char *user_id,
                       struct account_smtp_request *req, account_done_fn *done, void *ctx)
{
	struct save *save = calloc(1, sizeof(*save));
	if (save == NULL) {
		struct account_result result = {.verdict = ACCOUNT_FAILED};
		mt_strlcpy(result.reason, "out of memory", sizeof(result.reason));
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
