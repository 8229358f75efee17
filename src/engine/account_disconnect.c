/* A custom SMTP account's confirmed failure: disconnected behind the fence, with its one notice,
 * in one transaction. See engine/account.h. */
#include "engine/account.h"
#include "engine/account_internal.h"

#include "engine/notify.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/str.h"
#include "store/store.h"
#include "store/store_notification.h"
#include "store/store_org.h"
#include "store/store_user.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOTICE_SUBJECT "Your Custom SMTP account was disconnected"

enum disconnect_stage { DISCONNECT_LOAD, DISCONNECT_STORE };

struct disconnect {
	struct accounts *accounts;
	struct store_smtp_account seen;
	enum mt_failure_class cls;
	char reason[MT_ERROR_TEXT_MAX];
	account_disconnect_fn *done;
	void *ctx;
	enum disconnect_stage stage;
	struct store_org org;
	struct store_user user;
	char last_error[MT_ERROR_TEXT_MAX];
	char text[MT_NOTIFICATION_TEXT_MAX + 1];
	char *body; /* the notice's mail; NULL without a relay */
	size_t body_len;
	bool changed, mailed;
};

static void disconnect_finish(struct disconnect *d)
{
	d->done(d->ctx, d->changed);
	sodium_memzero(&d->seen, sizeof(d->seen));
	free(d->body);
	free(d);
}

static int disconnect_run(struct store_tx *tx, void *arg)
{
	struct disconnect *d = arg;
	if (d->stage == DISCONNECT_LOAD) {
		int rc = store_org_get(tx, d->seen.org_id, &d->org);
		return rc == 0 ? store_user_get(tx, d->seen.org_id, d->seen.user_id, &d->user) : rc;
	}
	d->changed = d->mailed = false;
	int rc = store_smtp_account_disconnect(tx, &d->seen, d->last_error);
	if (rc == STORE_CONFLICT)
		return 0; /* already noticed, or no longer the account that failed */
	if (rc != 0)
		return rc;
	d->changed = true;
	return notify_record(tx, &d->org, &d->user, &d->accounts->p.relay,
	                     STORE_NOTIFY_SMTP_DISCONNECTED, NOTICE_SUBJECT, d->text, d->body,
	                     d->body_len, &d->mailed);
}

static void disconnect_stored(void *arg, int result)
{
	struct disconnect *d = arg;
	struct accounts *accounts = d->accounts;
	if (result != 0) {
		d->changed = false;
		mt_log(MT_LOG_ERROR, "smtp.disconnect_failed", MT_KV("user", d->seen.user_id));
		disconnect_finish(d);
		return;
	}
	if (d->changed) {
		mt_metric_inc(
		    "mailtrail_smtp_disconnects_total",
		    "Custom SMTP accounts disconnected after a confirmed failure, by class",
		    "class", mt_class_name(d->cls), NULL, NULL);
		notify_count(STORE_NOTIFY_SMTP_DISCONNECTED);
		mt_log(MT_LOG_WARN, "smtp.disconnected", MT_KV("user", d->seen.user_id),
		       MT_KV("host", d->seen.host), MT_KV("class", mt_class_name(d->cls)),
		       MT_KV("reason", d->reason), MT_KV("mailed", d->mailed ? "yes" : "no"));
		if (accounts->p.on_state != NULL)
			accounts->p.on_state(accounts->p.on_state_ctx, d->seen.org_id,
			                     d->seen.user_id, STORE_ACCOUNT_CONNECTED,
			                     STORE_ACCOUNT_DISCONNECTED, d->last_error);
	}
	disconnect_finish(d);
}

static void disconnect_loaded(void *arg, int result)
{
	struct disconnect *d = arg;
	if (result != 0) {
		mt_log(MT_LOG_ERROR, "smtp.disconnect_failed", MT_KV("user", d->seen.user_id));
		disconnect_finish(d);
		return;
	}
	notify_smtp_disconnected_text(&d->seen, d->cls, d->reason, d->text, sizeof(d->text));
	/* A few hundred bytes of text: built here rather than queued to a worker and back. */
	if (d->accounts->p.relay.configured &&
	    notify_mail_build(&d->user, NOTICE_SUBJECT, d->text, &d->body, &d->body_len) < 0) {
		mt_log(MT_LOG_ERROR, "smtp.notice_mail_failed", MT_KV("user", d->seen.user_id));
		d->body = NULL; /* the notice is still recorded */
	}
	d->stage = DISCONNECT_STORE;
	if (store_submit(d->accounts->p.store, STORE_WRITE_DURABLE, disconnect_run,
	                 disconnect_stored, d) < 0)
		disconnect_finish(d);
}

void account_smtp_disconnect(struct accounts *accounts, const struct store_smtp_account *seen,
                             enum mt_failure_class cls, const char *reason,
                             account_disconnect_fn *done, void *ctx)
{
	struct disconnect *d = calloc(1, sizeof(*d));
	if (d == NULL) {
		done(ctx, false);
		return;
	}
	d->accounts = accounts;
	d->seen = *seen;
	d->cls = cls;
	mt_strlcpy(d->reason, reason != NULL ? reason : "", sizeof(d->reason));
	snprintf(d->last_error, sizeof(d->last_error), "%s: %.480s", mt_class_name(cls), d->reason);
	d->done = done;
	d->ctx = ctx;
	d->stage = DISCONNECT_LOAD;
	if (store_submit(accounts->p.store, STORE_READ, disconnect_run, disconnect_loaded, d) < 0)
		disconnect_finish(d);
}
