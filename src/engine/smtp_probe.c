#include "engine/smtp_probe.h"

#include "lib/str.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct smtp_probe {
	struct smtp_client *client;
	struct event *deadline;
	struct smtp_message message;
	struct smtp_rcpt_result rcpt_result;
	char *mail_from, *rcpt_to, *data;
	const char *rcpts[1];
	bool sending;
	struct smtp_probe_result result;
	bool failed;
	smtp_probe_done_fn *done;
	smtp_probe_transcript_fn *transcript;
	void *ctx;
};

static void probe_destroy(struct smtp_probe *probe)
{
	smtp_client_free(&probe->client);
	if (probe->deadline != NULL)
		event_free(probe->deadline);
	free(probe->mail_from);
	free(probe->rcpt_to);
	free(probe->data);
	free(probe);
}

/* Reports once and goes away. Called from client callbacks (freeing the client from inside its
 * callback is allowed) or from the deadline timer. */
static void probe_finish(struct smtp_probe *probe, enum mt_failure_class cls, const char *reason,
                         const char *reply, const char *fingerprint)
{
	probe->result.cls = cls;
	mt_strlcpy(probe->result.reason, reason != NULL ? reason : "",
	           sizeof(probe->result.reason));
	mt_strlcpy(probe->result.reply, reply != NULL ? reply : "", sizeof(probe->result.reply));
	mt_strlcpy(probe->result.fingerprint, fingerprint != NULL ? fingerprint : "",
	           sizeof(probe->result.fingerprint));
	struct smtp_probe_result result = probe->result;
	smtp_probe_done_fn *done = probe->done;
	void *ctx = probe->ctx;
	probe_destroy(probe);
	done(ctx, &result);
}

static void on_transcript(void *ctx, char direction, const char *line, size_t len)
{
	struct smtp_probe *probe = ctx;
	if (probe->transcript != NULL)
		probe->transcript(probe->ctx, direction, line, len);
}

static void on_ready(void *ctx)
{
	struct smtp_probe *probe = ctx;
	const char *error;
	if (probe->sending && smtp_client_send(probe->client, &probe->message, &error) < 0) {
		probe_finish(probe, MT_CLASS_INTERNAL, error, NULL, NULL);
		return;
	}
	smtp_client_quit(probe->client);
}

static void on_message_done(void *ctx, struct smtp_message *message)
{
	struct smtp_probe *probe = ctx;
	if (message->outcome != SMTP_OUTCOME_SENT) {
		probe->failed = true;
		probe->result.cls = message->cls == MT_CLASS_NONE ? MT_CLASS_RESP : message->cls;
		mt_strlcpy(probe->result.reason, "the confirmation mail was not accepted",
		           sizeof(probe->result.reason));
		mt_strlcpy(probe->result.reply, message->reply, sizeof(probe->result.reply));
	}
}

static void on_session_failed(void *ctx, const struct smtp_failure *failure)
{
	struct smtp_probe *probe = ctx;
	if (probe->failed) /* the message's verdict explains more than the session's */
		probe_finish(probe, probe->result.cls, probe->result.reason, probe->result.reply,
		             NULL);
	else
		probe_finish(probe, failure->cls, failure->reason, failure->reply,
		             failure->fingerprint);
}

static void on_closed(void *ctx)
{
	struct smtp_probe *probe = ctx;
	if (probe->failed)
		probe_finish(probe, probe->result.cls, probe->result.reason, probe->result.reply,
		             NULL);
	else
		probe_finish(probe, MT_CLASS_NONE, NULL, NULL, NULL);
}

static void on_deadline(evutil_socket_t fd, short what, void *ctx)
{
	(void)fd;
	(void)what;
	struct smtp_probe *probe = ctx;
	probe_finish(probe, MT_CLASS_CONN, "no answer within the time allowed for the check", NULL,
	             NULL);
}

struct smtp_probe *smtp_probe_start(struct event_base *base, struct evdns_base *dns,
                                    const struct smtp_probe_params *params,
                                    smtp_probe_done_fn *done, smtp_probe_transcript_fn *transcript,
                                    void *ctx, const char **error_r)
{
	struct smtp_probe *probe = calloc(1, sizeof(*probe));
	if (probe == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	probe->done = done;
	probe->transcript = transcript;
	probe->ctx = ctx;
	if (params->mail_from != NULL) {
		probe->sending = true;
		probe->mail_from = strdup(params->mail_from);
		probe->rcpt_to = strdup(params->rcpt_to);
		probe->data = malloc(params->data_len + 1);
		if (probe->mail_from == NULL || probe->rcpt_to == NULL || probe->data == NULL) {
			*error_r = "out of memory";
			probe_destroy(probe);
			return NULL;
		}
		memcpy(probe->data, params->data, params->data_len);
		probe->rcpts[0] = probe->rcpt_to;
		probe->message.mail_from = probe->mail_from;
		probe->message.rcpts = probe->rcpts;
		probe->message.rcpt_count = 1;
		probe->message.data = probe->data;
		probe->message.data_len = params->data_len;
		probe->message.results = &probe->rcpt_result;
	}
	probe->deadline = evtimer_new(base, on_deadline, probe);
	int deadline_ms = params->deadline_ms > 0 ? params->deadline_ms : MT_LIVE_CHECK_TOTAL_MS;
	struct timeval tv = {deadline_ms / 1000, (deadline_ms % 1000) * 1000};
	if (probe->deadline == NULL || evtimer_add(probe->deadline, &tv) < 0) {
		*error_r = "cannot arm the deadline";
		probe_destroy(probe);
		return NULL;
	}
	struct smtp_client_callbacks callbacks = {
	    .ready = on_ready,
	    .message_done = on_message_done,
	    .session_failed = on_session_failed,
	    .closed = on_closed,
	    .transcript = on_transcript,
	};
	probe->client = smtp_client_new(base, dns, &params->client, &callbacks, probe, error_r);
	if (probe->client == NULL) {
		probe_destroy(probe);
		return NULL;
	}
	return probe;
}

void smtp_probe_cancel(struct smtp_probe **probe)
{
	if (*probe == NULL)
		return;
	probe_destroy(*probe);
	*probe = NULL;
}
