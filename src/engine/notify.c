#include "engine/notify.h"

#include "lib/metrics.h"
#include "lib/str.h"
#include "mime/build.h"
#include "store/store.h"
#include "store/store_outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void notify_smtp_disconnected_text(const struct store_smtp_account *a, enum mt_failure_class cls,
                                   const char *reason, char *text, size_t size)
{
	const char *what = cls == MT_CLASS_AUTH  ? "the server refused its login"
	                   : cls == MT_CLASS_TLS ? "the server's certificate no longer verifies "
	                                           "or no longer matches its pin"
	                                         : "it failed";
	snprintf(text, size,
	         "Your Custom SMTP account %.254s (%.200s:%d) was disconnected: %s (%s: %.300s). "
	         "Its settings are kept. Until you save working settings again (PUT /v1/smtp), "
	         "single messages go out through the platform relay where one is configured, and "
	         "campaign messages wait.",
	         a->from_address, a->host, a->port, what, mt_class_name(cls),
	         reason != NULL && reason[0] != '\0' ? reason : "no reason given");
}

int notify_mail_build(const struct store_user *user, const char *subject, const char *text,
                      char **body_r, size_t *len_r)
{
	struct mime_mailbox to;
	memset(&to, 0, sizeof(to));
	mt_strlcpy(to.address, user->email, sizeof(to.address));
	mt_strlcpy(to.name, user->name, sizeof(to.name));
	/* RFC 3834: no vacation responder answers it. */
	const struct mime_build_header auto_submitted = {"Auto-Submitted", "auto-generated"};
	const struct mime_build_input in = {
	    .without_head = true,
	    .to = &to,
	    .to_count = 1,
	    .subject = subject,
	    .text = text,
	    .date = (int64_t)time(NULL),
	    .headers = &auto_submitted,
	    .header_count = 1,
	};
	const char *error;
	return mime_build_message(&in, body_r, len_r, &error);
}

int notify_record(struct store_tx *tx, const struct store_org *org, const struct store_user *user,
                  const struct outbox_relay *relay, enum store_notification_kind kind,
                  const char *subject, const char *text, const char *body, size_t body_len,
                  bool *mailed_r)
{
	*mailed_r = false;
	struct store_notification *n = calloc(1, sizeof(*n));
	if (n == NULL)
		return -1;
	mt_strlcpy(n->org_id, org->id, sizeof(n->org_id));
	mt_strlcpy(n->user_id, user->id, sizeof(n->user_id));
	n->kind = kind;
	mt_strlcpy(n->text, text, sizeof(n->text));
	int rc = store_notification_add(tx, n);
	free(n);
	if (rc != 0 || body == NULL)
		return rc;
	struct outbox_route route;
	const char *reason;
	if (outbox_route(org, user, NULL, relay, OUTBOX_MAIL_NOTICE, NULL, &route, &reason) < 0)
		return 0; /* no relay: the notice alone (docs/sending.md) */
	struct store_outbox_message *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return -1;
	struct store_outbox_rcpt rcpt;
	memset(&rcpt, 0, sizeof(rcpt));
	mt_strlcpy(rcpt.address, user->email, sizeof(rcpt.address));
	mt_strlcpy(rcpt.name, user->name, sizeof(rcpt.name));
	rcpt.kind = STORE_RCPT_TO;
	rcpt.state = STORE_RCPT_PENDING;
	mt_strlcpy(m->org_id, org->id, sizeof(m->org_id));
	mt_strlcpy(m->user_id, user->id, sizeof(m->user_id));
	m->state = STORE_OUTBOX_QUEUED;
	mt_strlcpy(m->route, "relay", sizeof(m->route));
	mt_strlcpy(m->mail_from, route.mail_from, sizeof(m->mail_from));
	m->from = route.record_from;
	m->head_apart = true;
	m->relay_only = true;
	mt_strlcpy(m->subject, subject, sizeof(m->subject));
	const char *at = strrchr(user->email, '@');
	outbox_identity_new(at != NULL ? at + 1 : "", m->mailtrail_id, m->message_id);
	mt_strlcpy(m->snippet, text, sizeof(m->snippet));
	m->body = (char *)body; /* borrowed: the message is not freed with the store's helper */
	m->body_len = body_len;
	m->rcpts = &rcpt;
	m->rcpt_count = 1;
	char existing[MT_ID_MAX];
	rc = store_outbox_enqueue(tx, m, existing);
	free(m);
	if (rc == 0)
		*mailed_r = true;
	return rc;
}

void notify_count(enum store_notification_kind kind)
{
	mt_metric_inc("mailtrail_notifications_total", "Notifications recorded for users, by kind",
	              "kind", store_notification_kind_name(kind), NULL, NULL);
}

/* ---- GET /v1/notifications ---- */

struct list_job {
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	char cursor[MT_CURSOR_MAX];
	size_t limit;
	notify_list_fn *done;
	void *ctx;
	struct store_notification_list list;
};

static int list_run(struct store_tx *tx, void *arg)
{
	struct list_job *job = arg;
	store_notification_list_free(&job->list);
	return store_notification_list(tx, job->org_id, job->user_id, job->cursor, job->limit,
	                               &job->list);
}

static void list_done(void *arg, int result)
{
	struct list_job *job = arg;
	struct notify_page page = {.list = &job->list};
	crud_from_store(&page.outcome, result);
	job->done(job->ctx, &page);
	store_notification_list_free(&job->list);
	free(job);
}

void notify_list(struct store *store, const char *org_id, const char *user_id, const char *cursor,
                 size_t limit, notify_list_fn *done, void *ctx)
{
	struct list_job *job = calloc(1, sizeof(*job));
	if (job == NULL) {
		struct notify_page page = {0};
		crud_set(&page.outcome, CRUD_FAILED, "out of memory");
		done(ctx, &page);
		return;
	}
	mt_strlcpy(job->org_id, org_id, sizeof(job->org_id));
	mt_strlcpy(job->user_id, user_id, sizeof(job->user_id));
	mt_strlcpy(job->cursor, cursor != NULL ? cursor : "", sizeof(job->cursor));
	job->limit = limit;
	job->done = done;
	job->ctx = ctx;
	if (store_submit(store, STORE_READ, list_run, list_done, job) < 0) {
		struct notify_page page = {.outcome = {.verdict = CRUD_BUSY}};
		job->done(job->ctx, &page);
		free(job);
	}
}
