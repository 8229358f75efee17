/* What saving an SMTP account (engine/account.c) and an IMAP account (engine/imap_account.c)
 * have in common: when a stored secret may be reused and how it is opened, sealing what was
 * checked, the host policy's verdict, the fence's owner half and its replies. */
#include "engine/account_internal.h"

#include "config/config.h"
#include "crypto/seal.h"
#include "engine/host_policy.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/str.h"
#include "store/store.h"
#include "store/store_org.h"
#include "store/store_user.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool account_secret_reusable(const struct account_endpoint *stored,
                             const struct account_endpoint *wanted)
{
	return stored->sealed_secret_len > 0 && strcmp(stored->host, wanted->host) == 0 &&
	       stored->port == wanted->port && strcmp(stored->username, wanted->username) == 0 &&
	       stored->auth == wanted->auth && stored->security == wanted->security &&
	       account_same_pin(stored->tls_fingerprint, wanted->tls_fingerprint);
}

int account_client_credentials(const struct account_endpoint *e, const char *protocol,
                               const char *user_id, const struct mt_keyring *keyring,
                               struct mt_tls_pin *pin_storage, const struct mt_tls_pin **pin_r,
                               struct mt_secret **secret_r, const char **error_r)
{
	*pin_r = NULL;
	*secret_r = NULL;
	if (e->tls_fingerprint[0] != '\0') {
		if (mt_tls_pin_parse(e->tls_fingerprint, pin_storage, error_r) < 0)
			return -1;
		*pin_r = pin_storage;
	}
	if (keyring != NULL && e->sealed_secret_len > 0) {
		char context[MT_SEAL_CONTEXT_MAX];
		account_seal_context(protocol, user_id, context);
		*secret_r =
		    mt_unseal(keyring, context, e->sealed_secret, e->sealed_secret_len, error_r);
		if (*secret_r == NULL)
			return -1;
	}
	return 0;
}

/* The secret a save's live check logs in with once a grant is ruled out: the request's
 * (*given, taken) or the stored one where account_secret_reusable. ACCOUNT_OK with *secret_r,
 * or ACCOUNT_INVALID with the reason and code in `result`. `secret_name` is the request's
 * field ("password", "access_token"). */
static enum account_verdict pick_secret(struct accounts *accounts, const char *protocol,
                                        const char *user_id, const char *secret_name,
                                        const struct account_endpoint *stored, bool stored_exists,
                                        const struct account_endpoint *wanted,
                                        struct mt_secret **given, struct mt_secret **secret_r,
                                        struct account_result *result)
{
	if (*given != NULL) {
		*secret_r = *given;
		*given = NULL;
		return ACCOUNT_OK;
	}
	if (stored_exists && account_secret_reusable(stored, wanted)) {
		char context[MT_SEAL_CONTEXT_MAX];
		const char *error;
		account_seal_context(protocol, user_id, context);
		*secret_r = mt_unseal(accounts->p.keyring, context, stored->sealed_secret,
		                      stored->sealed_secret_len, &error);
		if (*secret_r != NULL)
			return ACCOUNT_OK;
		mt_log(MT_LOG_ERROR, "account.unseal_failed", MT_KV("protocol", protocol),
		       MT_KV("user", user_id), MT_KV("error", error));
		mt_strlcpy(result->reason, "the stored password cannot be used; send it again",
		           sizeof(result->reason));
		return ACCOUNT_INVALID;
	}
	bool had = stored_exists && stored->sealed_secret_len > 0;
	bool token = strcmp(secret_name, "access_token") == 0;
	result->code = token ? "access_token_required" : "password_required";
	result->field = token ? "access_token" : "password";
	snprintf(result->reason, sizeof(result->reason), "%s is required%s", secret_name,
	         had ? ": the stored one is only reused for the same host, port, username, auth, "
	               "security and tls_fingerprint"
	             : "");
	return ACCOUNT_INVALID;
}

/* After a passed check: the secret sealed into `sealed` for the account (or, on a grant, the
 * new grant sealed for the store job and no secret of the account's own). 0 or -1. */
static int seal_checked(struct accounts *accounts, struct account_oauth *oauth,
                        const char *protocol, const char *org_id, const char *user_id,
                        const struct mt_secret *secret, unsigned char *sealed, size_t size,
                        size_t *len_r)
{
	*len_r = 0;
	/* On a grant the account keeps no token: the broker hands out the grant's. */
	if (oauth->uses_grant)
		return account_oauth_seal(accounts, oauth, org_id, user_id);
	if (secret == NULL)
		return 0; /* auth none */
	char context[MT_SEAL_CONTEXT_MAX];
	account_seal_context(protocol, user_id, context);
	return mt_seal(accounts->p.keyring, context, mt_secret_bytes(secret), mt_secret_len(secret),
	               sealed, size, len_r);
}

void account_count_check(const char *protocol, const char *cls)
{
	mt_metric_inc("mailtrail_live_checks_total", "Live checks of mail accounts by outcome",
	              "kind", protocol, "class", cls);
}

enum account_verdict account_host_verdict(const char *protocol, enum host_verdict verdict,
                                          const char *reason, struct account_result *result)
{
	switch (verdict) {
	case HOST_PRIVATE:
	case HOST_INVALID:
		result->code = verdict == HOST_PRIVATE ? "host_private" : "invalid_value";
		result->field = "host";
		mt_strlcpy(result->reason, reason, sizeof(result->reason));
		return ACCOUNT_INVALID;
	case HOST_UNRESOLVABLE:
		account_count_check(protocol, "conn");
		result->cls = MT_CLASS_CONN;
		result->code = "host_unresolvable";
		result->field = "host";
		mt_strlcpy(result->reason, reason, sizeof(result->reason));
		return ACCOUNT_CHECK_FAILED;
	default:
		return ACCOUNT_OK;
	}
}

static int fence_owner(struct store_tx *tx, const char *org_id, const char *user_id,
                       enum account_feature feature, enum account_verdict *verdict_r)
{
	struct store_org org;
	struct store_user user;
	*verdict_r = ACCOUNT_OK;
	int rc = store_org_get(tx, org_id, &org);
	if (rc == 0)
		rc = store_user_get(tx, org_id, user_id, &user);
	if (rc != 0)
		return rc;
	bool on = feature == ACCOUNT_FEATURE_IMAP_SYNC ? org.imap_sync : org.custom_smtp;
	if (!user.active)
		*verdict_r = ACCOUNT_NOT_FOUND;
	else if (!on)
		*verdict_r = ACCOUNT_FEATURE_OFF;
	return 0;
}

static bool fence_refusal(enum account_verdict verdict, const char *what, const char *settings,
                          struct account_result *result)
{
	switch (verdict) {
	case ACCOUNT_FEATURE_OFF:
		snprintf(result->reason, sizeof(result->reason),
		         "%s was switched off for this org during the check", what);
		break;
	case ACCOUNT_CHANGED:
		result->code = "changed_during_check";
		snprintf(result->reason, sizeof(result->reason),
		         "the %s settings changed during the check; nothing was stored, try again",
		         settings);
		break;
	case ACCOUNT_NOT_FOUND:
		mt_strlcpy(result->reason, "user not found", sizeof(result->reason));
		break;
	default:
		return false;
	}
	result->verdict = verdict;
	return true;
}

const struct account_result account_out_of_memory = {.verdict = ACCOUNT_FAILED,
                                                     .reason = "out of memory"};

void account_save_init(struct account_save *s, const struct account_save_ops *ops,
                       struct accounts *accounts, const char *protocol, const char *org_id,
                       const char *user_id, struct account_result *result)
{
	s->ops = ops;
	s->accounts = accounts;
	s->protocol = protocol;
	mt_strlcpy(s->org_id, org_id, sizeof(s->org_id));
	mt_strlcpy(s->user_id, user_id, sizeof(s->user_id));
	s->result = result;
}

const char *account_save_refuse(struct account_save *s, const char *code, const char *field,
                                const char *reason)
{
	s->result->code = code;
	s->result->field = field;
	return reason;
}

void account_save_release(struct account_save *s)
{
	if (s->holds_slot)
		account_release_slot(s->accounts, s->org_id);
	s->holds_slot = false;
	mt_secret_free(&s->given);
	mt_secret_free(&s->secret);
	account_oauth_clear(&s->oauth);
}

enum account_verdict account_save_store_failed(struct account_save *s, int rc)
{
	mt_strlcpy(s->result->reason,
	           rc == STORE_NOT_FOUND ? "user not found" : "the store failed; nothing changed",
	           sizeof(s->result->reason));
	return rc == STORE_NOT_FOUND ? ACCOUNT_NOT_FOUND : ACCOUNT_FAILED;
}

const struct mt_cidr_list *account_allow_private(const struct accounts *accounts)
{
	return mt_config_cidrs(accounts->p.config, "allow_private_hosts");
}

/* Whether the account stored now is still the one the save loaded (and decided on). */
static int unchanged(struct store_tx *tx, const struct account_save *s, bool *same_r)
{
	void *now = malloc(s->ops->account_size);
	if (now == NULL)
		return -1;
	int got = s->ops->read(tx, s, now);
	if (got == 0 || got == STORE_NOT_FOUND)
		*same_r = s->stored_exists == (got == 0) && (got != 0 || s->ops->same(s, now));
	sodium_memzero(now, s->ops->account_size);
	free(now);
	return got == STORE_NOT_FOUND ? 0 : got;
}

/* Both store jobs of a save: the load, then (stage STORE) the fence and the write. The answer
 * goes in the save (a business answer); the job's result is only for the store ("roll
 * back"). */
static int save_run(struct store_tx *tx, void *arg)
{
	struct account_save *s = arg;
	if (s->stage == ACCOUNT_SAVE_STORE) {
		/* The check took seconds: whatever it was decided on must still hold when its
		 * result is stored, or a deactivation, a feature switch or a DELETE made meanwhile
		 * would be undone. */
		bool same = true;
		int rc =
		    fence_owner(tx, s->org_id, s->user_id, s->ops->feature, &s->result->verdict);
		if (rc == 0 && s->result->verdict == ACCOUNT_OK)
			rc = unchanged(tx, s, &same);
		if (rc == 0 && !same)
			s->result->verdict = ACCOUNT_CHANGED;
		if (rc != 0 || s->result->verdict != ACCOUNT_OK)
			return rc;
		rc = account_oauth_store(tx, &s->oauth);
		return rc == 0 ? s->ops->store(tx, s) : rc;
	}
	int rc = store_org_get(tx, s->org_id, &s->org);
	if (rc == 0)
		rc = store_user_get(tx, s->org_id, s->user_id, &s->user);
	if (rc == 0 && !s->user.active)
		rc = STORE_NOT_FOUND;
	if (rc != 0)
		return rc;
	rc = s->ops->read(tx, s, (char *)s + s->ops->stored_offset);
	s->stored_exists = rc == 0;
	return rc == STORE_NOT_FOUND ? 0 : rc;
}

static void store_failed(struct account_save *s, int rc)
{
	s->ops->finish(s, account_save_store_failed(s, rc), NULL);
}

static void save_loaded(void *arg, int result)
{
	struct account_save *s = arg;
	if (result != 0) {
		store_failed(s, result);
		return;
	}
	bool on =
	    s->ops->feature == ACCOUNT_FEATURE_IMAP_SYNC ? s->org.imap_sync : s->org.custom_smtp;
	if (!on) {
		char reason[MT_ERROR_TEXT_MAX];
		snprintf(reason, sizeof(reason),
		         "%s is not enabled for this org; an admin can turn on the %s feature",
		         s->ops->what, s->ops->switch_name);
		s->ops->finish(s, ACCOUNT_FEATURE_OFF,
		               account_save_refuse(s, "feature_off", NULL, reason));
		return;
	}
	s->ops->loaded(s);
}

static void save_stored(void *arg, int result)
{
	struct account_save *s = arg;
	if (result != 0)
		store_failed(s, result);
	else if (fence_refusal(s->result->verdict, s->ops->what, s->ops->settings, s->result))
		s->ops->finish(s, s->result->verdict, NULL);
	else
		s->ops->stored(s);
}

/* The save's next store job: the load (a read) or the fenced write (durable). */
static enum account_verdict submit_stage(struct account_save *s, enum account_save_stage stage)
{
	s->stage = stage;
	bool load = stage == ACCOUNT_SAVE_LOAD;
	if (store_submit(s->accounts->p.store, load ? STORE_READ : STORE_WRITE_DURABLE, save_run,
	                 load ? save_loaded : save_stored, s) == 0)
		return ACCOUNT_OK;
	mt_strlcpy(s->result->reason, "the store is busy; try again", sizeof(s->result->reason));
	return ACCOUNT_BUSY;
}

enum account_verdict account_save_start(struct account_save *s, const char *why)
{
	if (why == NULL)
		return submit_stage(s, ACCOUNT_SAVE_LOAD);
	if (why != s->result->reason)
		mt_strlcpy(s->result->reason, why, sizeof(s->result->reason));
	return ACCOUNT_INVALID;
}

static void host_checked(void *ctx, enum host_verdict verdict, const char *reason)
{
	struct account_save *s = ctx;
	enum account_verdict refused =
	    account_host_verdict(s->protocol, verdict, reason, s->result);
	if (refused != ACCOUNT_OK) {
		s->ops->finish(s, refused, NULL);
		return;
	}
	if (!account_take_slot(s->accounts, s->org_id)) {
		s->ops->finish(s, ACCOUNT_THROTTLED,
		               "too many live checks are running for this org; try again shortly");
		return;
	}
	s->holds_slot = true;
	s->ops->check(s);
}

void account_save_check_host(struct account_save *s)
{
	host_policy_check(s->accounts->p.base, s->accounts->p.dns, s->ops->host(s),
	                  account_allow_private(s->accounts), host_checked, s);
}

/* The token of an account on a grant (engine/account_oauth.c), then the same check. */
static void token_ready(void *ctx, struct mt_secret *token, enum account_verdict verdict,
                        enum mt_failure_class cls, const char *reason)
{
	struct account_save *s = ctx;
	if (verdict != ACCOUNT_OK) {
		if (verdict == ACCOUNT_CHECK_FAILED)
			account_count_check(s->protocol, mt_class_name(cls));
		s->result->cls = cls;
		s->ops->finish(s, verdict, reason);
		return;
	}
	s->secret = token;
	account_save_check_host(s);
}

void account_save_authenticate(struct account_save *s, bool xoauth2,
                               const struct account_endpoint *stored,
                               const struct account_endpoint *wanted, const char *secret_name)
{
	/* No token of its own: the user's grant. */
	if (xoauth2 && !s->oauth.new_grant && s->given == NULL &&
	    !(s->stored_exists && account_secret_reusable(stored, wanted)))
		s->oauth.uses_grant = true;
	if (s->oauth.uses_grant) {
		s->oauth.ready = token_ready;
		s->oauth.ctx = s;
		account_oauth_token(s->accounts, &s->oauth, s->org_id, s->user_id);
		return;
	}
	enum account_verdict v =
	    pick_secret(s->accounts, s->protocol, s->user_id, secret_name, stored, s->stored_exists,
	                wanted, &s->given, &s->secret, s->result);
	if (v != ACCOUNT_OK) {
		s->ops->finish(s, v, NULL);
		return;
	}
	account_save_check_host(s);
}

enum account_verdict account_save_passed(struct account_save *s, unsigned char *sealed, size_t size,
                                         size_t *len_r)
{
	account_release_slot(s->accounts, s->org_id);
	s->holds_slot = false;
	/* Seal what was checked, bound to this account. */
	if (seal_checked(s->accounts, &s->oauth, s->protocol, s->org_id, s->user_id, s->secret,
	                 sealed, size, len_r) < 0) {
		mt_strlcpy(s->result->reason, "cannot seal the secret", sizeof(s->result->reason));
		return ACCOUNT_FAILED;
	}
	return submit_stage(s, ACCOUNT_SAVE_STORE);
}

const char *account_merge_host(struct account_save *s, const char *host, char *out, size_t size,
                               char *buf, size_t buf_size)
{
	if (!host_name_valid(host)) {
		snprintf(buf, buf_size, "host: '%.300s' is not a valid host name", host);
		return account_save_refuse(s, "invalid_value", "host", buf);
	}
	mt_strlcpy(out, host, size);
	for (char *p = out; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return NULL;
}

const char *account_merge_pin(struct account_save *s, const char *fingerprint,
                              enum store_security security, char *out, size_t size, char *buf,
                              size_t buf_size)
{
	if (fingerprint == NULL || fingerprint[0] == '\0')
		return NULL;
	struct mt_tls_pin pin;
	const char *error;
	if (security == STORE_SECURITY_NONE)
		return account_save_refuse(s, "invalid_combination", "tls_fingerprint",
		                           "tls_fingerprint needs security tls or starttls");
	if (mt_tls_pin_parse(fingerprint, &pin, &error) < 0) {
		snprintf(buf, buf_size, "tls_fingerprint: %s", error);
		return account_save_refuse(s, "invalid_value", "tls_fingerprint", buf);
	}
	mt_strlcpy(out, fingerprint, size);
	return NULL;
}

const char *account_merge_grant_fields(struct account_save *s, enum store_auth auth,
                                       const struct account_oauth_request *oauth)
{
	if (auth == STORE_AUTH_XOAUTH2 ||
	    (oauth->refresh_token == NULL && oauth->client_secret == NULL &&
	     oauth->token_url == NULL && oauth->client_id == NULL))
		return NULL;
	const char *wipe[] = {oauth->refresh_token, oauth->client_secret};
	for (size_t i = 0; i < sizeof(wipe) / sizeof(wipe[0]); i++)
		if (wipe[i] != NULL)
			sodium_memzero((char *)wipe[i], strlen(wipe[i]));
	return account_save_refuse(
	    s, "invalid_combination", "auth",
	    "refresh_token, token_url, client_id and client_secret need auth xoauth2");
}

const char *account_merge_plaintext(struct account_save *s, enum store_security security)
{
	if (security != STORE_SECURITY_NONE ||
	    mt_config_bool(s->accounts->p.config, "allow_plaintext_auth"))
		return NULL;
	return account_save_refuse(s, "plaintext_auth", "security",
	                           "a password over security none would cross the network in "
	                           "plaintext; use starttls or tls");
}

const char *account_merge_secret(struct account_save *s, const char *given)
{
	if (given == NULL)
		return NULL;
	size_t len = strlen(given);
	s->given = mt_secret_new(given, len);
	/* The request's own copy goes as soon as the secret is ours. */
	sodium_memzero((char *)given, len);
	return s->given != NULL ? NULL : "out of memory";
}
