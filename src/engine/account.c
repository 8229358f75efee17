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
#include <stddef.h>
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
	p->host = a->host;
	p->port = (uint16_t)a->port;
	p->security = account_net_security(a->security);
	p->auth = smtp_auth_of(a->auth);
	p->username = a->username;
	p->tls = tls;
	p->public_only = true;
	p->allow_private = private_ok;
	if (account_client_credentials(&ACCOUNT_ENDPOINT(a), "smtp", a->user_id, keyring,
	                               pin_storage, &p->pin, secret_r, error_r) < 0)
		return -1;
	p->secret = *secret_r;
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

/* ---- saving --------------------------------------------------------------------------------- */

struct save {
	struct account_save s; /* first: what every protocol's save holds */
	account_done_fn *done;
	void *ctx;
	struct store_smtp_account account; /* the request merged with the preset */
	bool limits_given;
	struct store_smtp_account stored; /* loaded */
	enum store_account_state state_before;
	/* The confirmation mail */
	char message_id[MT_MESSAGE_ID_MAX + 1];
	char mailtrail_id[MT_MESSAGE_ID_MAX + 1];
	int64_t confirmed_at_ms; /* when the check knew the server had accepted it */
	struct account_result result;
};

static void save_finish(struct save *save, enum account_verdict verdict, const char *reason)
{
	save->result.verdict = verdict;
	if (reason != NULL)
		mt_strlcpy(save->result.reason, reason, sizeof(save->result.reason));
	account_save_release(&save->s);
	save->done(save->ctx, &save->result);
	if (verdict == ACCOUNT_OK && save->s.accounts->p.on_state != NULL)
		save->s.accounts->p.on_state(save->s.accounts->p.on_state_ctx, save->s.org_id,
		                             save->s.user_id, save->state_before,
		                             STORE_ACCOUNT_CONNECTED, "verified");
	sodium_memzero(&save->stored, sizeof(save->stored));
	sodium_memzero(&save->account, sizeof(save->account));
	free(save);
}

static void op_finish(struct account_save *s, enum account_verdict verdict, const char *reason)
{
	save_finish((struct save *)s, verdict, reason);
}

static const char *refuse(struct save *save, const char *code, const char *field,
                          const char *reason)
{
	return account_save_refuse(&save->s, code, field, reason);
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

/* The account as stored: loaded to reuse its secret and limits, then read again to fence. */
static int op_read(struct store_tx *tx, const struct account_save *s, void *account_r)
{
	return store_smtp_account_get(tx, s->org_id, s->user_id, account_r);
}

/* updated_at counts seconds: two saves within one are told apart by what they changed. */
static bool op_same(const struct account_save *s, const void *now_p)
{
	const struct store_smtp_account *a = &((const struct save *)s)->stored, *now = now_p;
	return a->state == now->state && a->updated_at == now->updated_at &&
	       a->sealed_secret_len == now->sealed_secret_len && strcmp(a->host, now->host) == 0 &&
	       a->port == now->port;
}

static int op_store(struct store_tx *tx, struct account_save *s)
{
	struct save *save = (struct save *)s;
	int rc = store_smtp_account_put(tx, &save->account);
	if (rc != 0)
		return rc;
	/* The confirmation mail the server accepted counts in the account's windows too. */
	char key[MT_GOVERNOR_KEY_MAX];
	governor_key(false, s->user_id, key);
	rc = governor_record(tx, key, save->message_id, save->account.from_address,
	                     save->confirmed_at_ms);
	if (rc != 0)
		return rc;
	/* Connected again: what waited for the reconnect (a campaign's mail) goes on now. */
	size_t released;
	return store_outbox_release_held(tx, s->org_id, s->user_id, STORE_HOLD_RECONNECT,
	                                 (int64_t)time(NULL), &released);
}

static void op_stored(struct account_save *s)
{
	struct save *save = (struct save *)s;
	save->result.verified_at = save->account.verified_at;
	mt_strlcpy(save->result.confirmation_message_id, save->message_id,
	           sizeof(save->result.confirmation_message_id));
	save_finish(save, ACCOUNT_OK, NULL);
}

static const char *op_host(const struct account_save *s)
{
	return ((const struct save *)s)->account.host;
}

static void save_checked(void *ctx, const struct smtp_probe_result *r)
{
	struct save *save = ctx;
	account_count_check("smtp", mt_class_name(r->cls));
	if (r->cls != MT_CLASS_NONE) {
		mt_log(MT_LOG_INFO, "smtp.live_check_failed", MT_KV("user", save->s.user_id),
		       MT_KV("host", save->account.host), MT_KV("class", mt_class_name(r->cls)),
		       MT_KV("reason", r->reason));
		save->result.cls = r->cls;
		mt_strlcpy(save->result.smtp_reply, r->reply, sizeof(save->result.smtp_reply));
		mt_strlcpy(save->result.fingerprint, r->fingerprint,
		           sizeof(save->result.fingerprint));
		char reason[MT_ERROR_TEXT_MAX];
		snprintf(reason, sizeof(reason), "the live check failed: %s", r->reason);
		save_finish(save, ACCOUNT_CHECK_FAILED, reason);
		return;
	}
	struct store_smtp_account *a = &save->account;
	save->state_before = save->s.stored_exists ? save->stored.state : STORE_ACCOUNT_OFF;
	a->state = STORE_ACCOUNT_CONNECTED;
	a->verified_at = (int64_t)time(NULL);
	save->confirmed_at_ms = mt_wall_ms();
	mt_strlcpy(a->confirmation_message_id, save->message_id,
	           sizeof(a->confirmation_message_id));
	a->last_error[0] = '\0';
	enum account_verdict v = account_save_passed(
	    &save->s, a->sealed_secret, sizeof(a->sealed_secret), &a->sealed_secret_len);
	if (v != ACCOUNT_OK)
		save_finish(save, v, NULL);
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

/* The live check: connect, secure, log in, and send the confirmation mail to the user. */
static void op_check(struct account_save *s)
{
	struct save *save = (struct save *)s;
	struct accounts *accounts = s->accounts;
	struct smtp_probe_params params;
	memset(&params, 0, sizeof(params));
	struct mt_tls_pin pin;
	struct mt_secret *unused = NULL;
	const char *error;
	if (account_smtp_client(&save->account, NULL, accounts->p.tls,
	                        account_allow_private(accounts), &params.client, &pin, &unused,
	                        &error) < 0) {
		save_finish(save, ACCOUNT_INVALID, error);
		return;
	}
	params.client.secret = save->s.secret;
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
static void op_loaded(struct account_save *s)
{
	struct save *save = (struct save *)s;
	struct store_smtp_account *a = &save->account;
	if (!address_is_users(&s->user, a->from_address)) {
		save_finish(save, ACCOUNT_INVALID,
		            refuse(save, "from_not_own", "from",
		                   "from: must be your own address or one of your aliases"));
		return;
	}
	if (!save->limits_given && s->stored_exists &&
	    strcmp(save->stored.preset, a->preset) == 0) {
		memcpy(a->limits, save->stored.limits, sizeof(a->limits));
		a->limit_count = save->stored.limit_count;
	}
	if (a->auth == STORE_AUTH_NONE) {
		account_save_check_host(s);
		return;
	}
	const struct account_endpoint stored = ACCOUNT_ENDPOINT(&save->stored),
	                              wanted = ACCOUNT_ENDPOINT(a);
	bool xoauth2 = a->auth == STORE_AUTH_XOAUTH2;
	account_save_authenticate(s, xoauth2, &stored, &wanted,
	                          xoauth2 ? "access_token" : "password");
}

static const struct account_save_ops smtp_save_ops = {
    "Custom SMTP",
    "SMTP",
    "custom_smtp",
    ACCOUNT_FEATURE_CUSTOM_SMTP,
    sizeof(struct store_smtp_account),
    offsetof(struct save, stored),
    ACCOUNT_SAVE_OPS(op),
};

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
	const char *why =
	    account_merge_host(&save->s, host, a->host, sizeof(a->host), buf, buf_size);
	if (why != NULL)
		return why;
	a->port = (int)port;
	if (preset != NULL)
		mt_strlcpy(a->preset, preset->id, sizeof(a->preset));
	if (mime_address_normalize(req->from, a->from_address, &error) < 0) {
		snprintf(buf, buf_size, "from: %s", error);
		return refuse(save, "invalid_address", "from", buf);
	}
	if ((why = account_merge_grant_fields(&save->s, a->auth, &req->oauth)) != NULL)
		return why;
	if (a->auth == STORE_AUTH_NONE) {
		if (req->password != NULL || req->access_token != NULL || req->username != NULL)
			return refuse(save, "invalid_combination", "auth",
			              "auth none takes no username, password or access_token");
		if (!no_auth_allowed(save->s.accounts, a->host))
			return refuse(save, "auth_required", "auth",
			              "auth none is only allowed for hosts the operator lists in "
			              "no_auth_hosts");
	} else {
		if (req->username == NULL || req->username[0] == '\0')
			return refuse(save, "missing_field", "username", "username is required");
		mt_strlcpy(a->username, req->username, sizeof(a->username));
		bool xoauth2 = a->auth == STORE_AUTH_XOAUTH2;
		if (xoauth2 &&
		    (why = account_oauth_take(&save->s.oauth, req->preset, &req->oauth,
		                              &req->access_token, buf, buf_size)) != NULL)
			return refuse(save, "invalid_oauth", "refresh_token", why);
		const char *given = xoauth2 ? req->access_token : req->password;
		const char *wrong = xoauth2 ? req->password : req->access_token;
		if (wrong != NULL)
			return refuse(save, "invalid_combination",
			              xoauth2 ? "password" : "access_token",
			              xoauth2 ? "auth xoauth2 takes access_token, not password"
			                      : "auth password takes password, not access_token");
		if ((why = account_merge_plaintext(&save->s, a->security)) != NULL ||
		    (why = account_merge_secret(&save->s, given)) != NULL)
			return why;
	}
	if ((why =
	         account_merge_pin(&save->s, req->tls_fingerprint, a->security, a->tls_fingerprint,
	                           sizeof(a->tls_fingerprint), buf, buf_size)) != NULL)
		return why;
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
		done(ctx, &account_out_of_memory);
		return;
	}
	account_save_init(&save->s, &smtp_save_ops, accounts, "smtp", org_id, user_id,
	                  &save->result);
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
