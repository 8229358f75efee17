/* IMAP auto sync: the second connection, which keeps the second folder (Sent) under IDLE instead
 * of polling it, when imap_max_connections allows two. It counts as a login for the caps, has
 * its own token on an OAuth grant, and falls back to polling after a failure until a later
 * pass tries again. */
#include "engine/imap_sync_internal.h"

#include "config/config.h"
#include "engine/imap_cursor.h"
#include "engine/imap_sync_sched.h"
#include "engine/oauth_broker.h"
#include "imap/client.h"
#include "lib/log.h"

#include <event2/event.h>
#include <stdlib.h>

static void on_watch_closed(void *ctx)
{
	(void)ctx;
}

void sync_watch_close(struct session *s)
{
	imap_client_free(&s->watch);
	sync_slot_release(s->syncer, &s->watch_login);
	s->watch_idle = false;
	oauth_broker_cancel(&s->watch_ask);
	mt_secret_free(&s->watch_token);
}

void sync_poll_later(struct session *s)
{
	struct timeval tv = {MT_IMAP_SYNC_POLL_MS / 1000, 0};
	evtimer_add(s->poll, &tv);
}

/* New mail in the watched second folder: a pass now, or one more after the running one. */
static void watch_new_mail(struct session *s)
{
	if (s->exists_ms == 0)
		s->exists_ms = sync_mono_ms();
	if (s->state == S_WATCHING)
		sync_pass_begin(s);
	else if (s->state == S_SYNCING)
		s->again = true;
}

static void on_watch_failed(void *ctx, const struct imap_failure *f)
{
	struct session *s = ctx;
	sync_watch_close(s);
	s->watch_failures++;
	s->watch_retry_ms = sync_mono_ms() + sync_backoff_ms(s->watch_failures);
	mt_log(MT_LOG_INFO, "imap.sync_watch_failed", MT_KV("user", s->user_id),
	       MT_KV("class", mt_class_name(f->cls)), MT_KV("reason", f->reason));
	/* Polled again, as with a cap of one connection, until the next pass retries it. */
	if (s->state == S_WATCHING && !evtimer_pending(s->poll, NULL))
		sync_poll_later(s);
}

static void on_watch_examined(void *ctx, const struct imap_result *r)
{
	struct session *s = ctx;
	if (r->cls == MT_CLASS_RESP) {
		/* The folder is gone: the pass says so; the connection is of no use. */
		sync_watch_close(s);
		if (s->state == S_WATCHING && !evtimer_pending(s->poll, NULL))
			sync_poll_later(s);
		return;
	}
	if (r->cls != MT_CLASS_NONE)
		return; /* on_watch_failed follows */
	s->watch_failures = 0;
	const char *error;
	if (imap_client_idle(s->watch, true, &error) < 0) {
		sync_watch_close(s);
		return;
	}
	s->watch_idle = true;
	mt_log(MT_LOG_INFO, "imap.sync_watch_idle", MT_KV("user", s->user_id),
	       MT_KV("folder", s->account->folders[1].name));
	evtimer_del(s->poll);
	/* Mail that came between the pass over this folder and now. */
	const struct imap_sync_folder *f = &s->account->folders[1];
	const struct imap_cursor_state stored = {f->uidvalidity, f->last_uid, f->highestmodseq};
	const struct imap_cursor_select sel = {r->uidvalidity, r->uidnext, r->highestmodseq};
	if (imap_cursor_maybe_new(&stored, &sel))
		watch_new_mail(s);
}

static void on_watch_ready(void *ctx)
{
	struct session *s = ctx;
	sync_slot_release(s->syncer, &s->watch_login);
	const char *error;
	if (imap_client_select(s->watch, s->account->folders[1].name, true, on_watch_examined, s,
	                       &error) < 0)
		sync_watch_close(s);
}

static void on_watch_event(void *ctx, const struct imap_event *ev)
{
	struct session *s = ctx;
	/* Not before the EXAMINE's answer: its own EXISTS is not new mail. */
	if (ev->kind == IMAP_EVENT_EXISTS && s->watch_idle)
		watch_new_mail(s);
}

static void on_watch_token(void *ctx, struct oauth_broker_answer *answer)
{
	struct session *s = ctx;
	s->watch_ask = NULL;
	if (answer->outcome != OAUTH_BROKER_OK) {
		/* A revoked grant stops the session through the main connection's login; until then
		 * (or while the endpoint fails) Sent is polled. */
		s->watch_failures++;
		s->watch_retry_ms = sync_mono_ms() + sync_backoff_ms(s->watch_failures);
		return;
	}
	mt_secret_free(&s->watch_token);
	s->watch_token = answer->token;
	answer->token = NULL;
	sync_watch_start(s);
}

/* Opens the second connection when the cap allows it and none is open (nor failing lately).
 * It goes through the host's bucket like any login; without a token this pass polls. */
void sync_watch_start(struct session *s)
{
	const struct imap_syncer_params *p = &s->syncer->p;
	if (s->watch != NULL ||
	    !imap_sync_watch_second(p->max_connections, (unsigned)s->account->folder_count))
		return;
	int64_t now = sync_mono_ms();
	if (now < s->watch_retry_ms || s->syncer->logins >= MT_IMAP_LOGINS_MAX)
		return;
	if (sync_session_on_grant(s) && s->watch_token == NULL) {
		/* Its own token from the broker, as the main connection's login has. */
		if (s->watch_ask == NULL)
			s->watch_ask = oauth_broker_token(s->syncer->p.broker, s->org_id,
			                                  s->user_id, -1, on_watch_token, s);
		return;
	}
	struct sync_host *host = sync_host_get(s->syncer, s->account->host, now);
	if (host != NULL && (host->logins >= MT_IMAP_HOST_LOGINS_MAX ||
	                     imap_bucket_take(&host->bucket, now, MT_IMAP_HOST_LOGINS_PER_S,
	                                      MT_IMAP_HOST_LOGINS_BURST) > 0))
		return;
	static const struct imap_client_callbacks callbacks = {
	    .ready = on_watch_ready,
	    .failed = on_watch_failed,
	    .closed = on_watch_closed,
	    .event = on_watch_event,
	};
	const char *error;
	s->watch = sync_client_open(s, &s->watch_token, &callbacks, &error);
	s->watch_idle = false;
	if (s->watch != NULL)
		sync_slot_take(s->syncer, &s->watch_login, host);
}
