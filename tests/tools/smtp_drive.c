/* smtp-drive: runs one SMTP client session for the peer and integration tests and for bench/.
 * It queues N messages (each to every --to), prints one JSON line per message and a last line
 * for the session, and exits with the class exit code of what went wrong (0 when all sent).
 * The interface is documented in tests/peer/peer.py's neighbour run_case.py. */
#include "lib/failure.h"
#include "lib/secret.h"
#include "lib/str.h"
#include "net/conn.h"
#include "net/security.h"
#include "net/tls.h"
#include "smtp/client.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TO 100

struct drive {
	struct event_base *base;
	struct smtp_client *client;
	FILE *transcript;
	struct smtp_message *messages;
	struct smtp_rcpt_result *results;
	size_t count;
	size_t queued;
	bool quit_sent;
	size_t done;
	size_t sent;
	int exit_code;
	bool session_over;
	int64_t started_ms, ready_ms;
	enum mt_failure_class session_cls;
	char reason[256];
	char reply[512];
	char fingerprint[MT_TLS_FINGERPRINT_MAX];
	bool quiet;
};

static void on_transcript(void *ctx, char direction, const char *line, size_t len)
{
	struct drive *d = ctx;
	if (d->transcript != NULL)
		fprintf(d->transcript, "%c: %.*s\n", direction, (int)len, line);
}

/* Keeps the session's queue topped up: it holds at most MT_SMTP_SESSION_QUEUE_MAX. */
static void feed(struct drive *d)
{
	while (d->queued < d->count && smtp_client_pending(d->client) < MT_SMTP_SESSION_QUEUE_MAX) {
		const char *error;
		if (smtp_client_send(d->client, &d->messages[d->queued], &error) < 0) {
			fprintf(stderr, "smtp-drive: message %zu: %s\n", d->queued, error);
			d->exit_code = 17;
			d->queued = d->count;
			break;
		}
		d->queued++;
	}
	if (d->queued == d->count && !d->quit_sent) {
		d->quit_sent = true;
		smtp_client_quit(d->client);
	}
}

static void on_ready(void *ctx)
{
	struct drive *d = ctx;
	d->ready_ms = mt_now_ms();
	feed(d);
}

static void on_message_done(void *ctx, struct smtp_message *m)
{
	struct drive *d = ctx;
	size_t index = (size_t)(m - d->messages);
	d->done++;
	if (!d->quit_sent)
		feed(d);
	if (m->outcome == SMTP_OUTCOME_SENT)
		d->sent++;
	else if (d->exit_code == 0)
		d->exit_code = mt_class_exit_code(m->cls == MT_CLASS_NONE ? MT_CLASS_RESP : m->cls);
	if (d->quiet)
		return;
	json_t *rcpts = json_array();
	for (size_t i = 0; i < m->rcpt_count; i++)
		json_array_append_new(rcpts, json_pack("{s:s,s:b,s:s,s:s}", "address", m->rcpts[i],
		                                       "accepted", m->results[i].accepted, "class",
		                                       mt_class_name(m->results[i].cls), "reply",
		                                       m->results[i].reply));
	json_t *line = json_pack("{s:I,s:s,s:b,s:s,s:s,s:o}", "message", (json_int_t)index,
	                         "result", smtp_outcome_name(m->outcome), "temporary",
	                         m->outcome == SMTP_OUTCOME_FAILED && !m->permanent, "class",
	                         mt_class_name(m->cls), "reply", m->reply, "recipients", rcpts);
	char *text = json_dumps(line, JSON_COMPACT);
	puts(text);
	free(text);
	json_decref(line);
}

static void on_session_failed(void *ctx, const struct smtp_failure *failure)
{
	struct drive *d = ctx;
	d->session_over = true;
	d->session_cls = failure->cls;
	mt_strlcpy(d->reason, failure->reason, sizeof(d->reason));
	if (failure->reply[0] != '\0') {
		mt_strlcpy(d->reply, failure->reply, sizeof(d->reply));
	}
	mt_strlcpy(d->fingerprint, failure->fingerprint, sizeof(d->fingerprint));
	event_base_loopbreak(d->base);
}

static void on_closed(void *ctx)
{
	struct drive *d = ctx;
	d->session_over = true;
	event_base_loopbreak(d->base);
}

static void usage(void)
{
	fputs("usage: smtp-drive --host H --port P --security none|starttls|tls\n"
	      "  [--auth none|password|plain|login|xoauth2] [--user U] [--password-file F]\n"
	      "  [--ca-file F] [--fingerprint PIN] [--bind ADDR] [--from A] [--to A]...\n"
	      "  [--messages N] [--size BYTES] [--no-pipelining] [--timeout-ms N]\n"
	      "  [--transcript FILE] [--quiet] [--data-8bit yes|no]\n",
	      stderr);
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
	    {"host", required_argument, NULL, 'h'},
	    {"port", required_argument, NULL, 'p'},
	    {"security", required_argument, NULL, 's'},
	    {"auth", required_argument, NULL, 'a'},
	    {"user", required_argument, NULL, 'u'},
	    {"password-file", required_argument, NULL, 'P'},
	    {"ca-file", required_argument, NULL, 'c'},
	    {"fingerprint", required_argument, NULL, 'F'},
	    {"bind", required_argument, NULL, 'b'},
	    {"from", required_argument, NULL, 'f'},
	    {"to", required_argument, NULL, 't'},
	    {"messages", required_argument, NULL, 'n'},
	    {"size", required_argument, NULL, 'S'},
	    {"no-pipelining", no_argument, NULL, 'N'},
	    {"timeout-ms", required_argument, NULL, 'T'},
	    {"transcript", required_argument, NULL, 'R'},
	    {"quiet", no_argument, NULL, 'q'},
	    /* the caller's word on the data (smtp_message.data_8bit); without it the client scans
	     */
	    {"data-8bit", required_argument, NULL, '8'},
	    {NULL, 0, NULL, 0},
	};
	struct smtp_client_params params = {0};
	const char *to[MAX_TO];
	size_t to_count = 0;
	const char *from = "drive@localhost", *password_file = NULL, *ca_file = NULL;
	const char *transcript_path = NULL, *fingerprint = NULL;
	long messages = -1, size = 300;
	bool quiet = false;
	enum smtp_data_8bit data_8bit = SMTP_DATA_8BIT_UNKNOWN;
	int opt;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			params.host = optarg;
			break;
		case 'p':
			if (mt_parse_port(optarg, &params.port) < 0)
				return usage(), 2;
			break;
		case 's':
			if (mt_security_parse(optarg, &params.security) < 0)
				return usage(), 2;
			break;
		case 'a':
			if (smtp_auth_parse(optarg, &params.auth) < 0)
				return usage(), 2;
			break;
		case 'u':
			params.username = optarg;
			break;
		case 'P':
			password_file = optarg;
			break;
		case 'c':
			ca_file = optarg;
			break;
		case 'F':
			fingerprint = optarg;
			break;
		case 'b':
			params.bind_address = optarg;
			break;
		case 'f':
			from = optarg;
			break;
		case 't':
			if (to_count == MAX_TO)
				return usage(), 2;
			to[to_count++] = optarg;
			break;
		case 'n':
			messages = atol(optarg);
			break;
		case 'S':
			size = atol(optarg);
			break;
		case 'N':
			params.no_pipelining = true;
			break;
		case 'T':
			params.reply_timeout_ms = atoi(optarg);
			break;
		case 'R':
			transcript_path = optarg;
			break;
		case 'q':
			quiet = true;
			break;
		case '8':
			if (strcmp(optarg, "yes") != 0 && strcmp(optarg, "no") != 0)
				return usage(), 2;
			data_8bit = strcmp(optarg, "yes") == 0 ? SMTP_DATA_8BIT : SMTP_DATA_7BIT;
			break;
		default:
			return usage(), 2;
		}
	}
	if (params.host == NULL || params.port == 0 || size < 0) {
		usage();
		return 2;
	}
	if (messages < 0)
		messages = to_count > 0 ? 1 : 0;
	if (messages > 0 && to_count == 0) {
		fputs("smtp-drive: --messages needs --to\n", stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	const char *error;
	struct mt_secret *secret = NULL;
	if (password_file != NULL &&
	    (secret = mt_secret_from_file(password_file, &error)) == NULL) {
		fprintf(stderr, "smtp-drive: %s: %s\n", password_file, error);
		return 2;
	}
	struct mt_tls_pin pin;
	if (fingerprint != NULL && mt_tls_pin_parse(fingerprint, &pin, &error) < 0) {
		fprintf(stderr, "smtp-drive: %s\n", error);
		return 2;
	}
	struct mt_tls_config *tls = mt_tls_config_new(ca_file, &error);
	if (tls == NULL) {
		fprintf(stderr, "smtp-drive: %s\n", error);
		return 2;
	}

	/* One body shared by all messages: headers, then lines of text up to `size`. */
	size_t body_cap = (size_t)size + 512;
	char *body = malloc(body_cap);
	int n = snprintf(body, body_cap,
	                 "From: <%s>\r\nTo: <%s>\r\nSubject: smtp-drive test\r\n"
	                 "Message-ID: <drive.%lld@localhost>\r\n\r\n",
	                 from, to_count ? to[0] : "nobody@localhost", (long long)mt_now_ms());
	size_t body_len = (size_t)n;
	static const char line[] = "The quick brown fox jumps over the lazy dog. 0123456789.\r\n";
	while (body_len + sizeof(line) - 1 <= (size_t)size) {
		memcpy(body + body_len, line, sizeof(line) - 1);
		body_len += sizeof(line) - 1;
	}

	struct drive d = {0};
	d.quiet = quiet;
	d.base = event_base_new();
	struct evdns_base *dns = mt_conn_dns_new(d.base);
	d.count = (size_t)messages;
	d.messages = calloc(d.count ? d.count : 1, sizeof(*d.messages));
	d.results = calloc((d.count ? d.count : 1) * (to_count ? to_count : 1), sizeof(*d.results));
	for (size_t i = 0; i < d.count; i++) {
		d.messages[i].mail_from = from;
		d.messages[i].rcpts = to;
		d.messages[i].rcpt_count = to_count;
		d.messages[i].data = body;
		d.messages[i].data_len = body_len;
		d.messages[i].data_8bit = data_8bit;
		d.messages[i].results = &d.results[i * to_count];
	}
	if (transcript_path != NULL)
		d.transcript = fopen(transcript_path, "w");
	params.secret = secret;
	params.tls = tls;
	params.pin = fingerprint != NULL ? &pin : NULL;
	struct smtp_client_callbacks callbacks = {
	    .ready = on_ready,
	    .message_done = on_message_done,
	    .session_failed = on_session_failed,
	    .closed = on_closed,
	    .transcript = on_transcript,
	};
	d.started_ms = mt_now_ms();
	d.client = smtp_client_new(d.base, dns, &params, &callbacks, &d, &error);
	mt_secret_free(&secret);
	if (d.client == NULL) {
		fprintf(stderr, "smtp-drive: %s\n", error);
		return 17;
	}
	event_base_dispatch(d.base);
	int64_t ended_ms = mt_now_ms();
	smtp_client_free(&d.client);

	json_t *last = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I}", "session",
	                         d.session_cls == MT_CLASS_NONE ? "ok" : "failed", "class",
	                         mt_class_name(d.session_cls), "reason", d.reason, "reply", d.reply,
	                         "messages_sent", (json_int_t)d.sent, "elapsed_ms",
	                         (json_int_t)(ended_ms - d.started_ms), "sending_ms",
	                         (json_int_t)(d.ready_ms ? ended_ms - d.ready_ms : 0));
	if (d.fingerprint[0] != '\0')
		json_object_set_new(last, "fingerprint", json_string(d.fingerprint));
	char *text = json_dumps(last, JSON_COMPACT);
	puts(text);
	free(text);
	json_decref(last);
	if (d.transcript != NULL)
		fclose(d.transcript);
	int code = d.session_cls != MT_CLASS_NONE ? mt_class_exit_code(d.session_cls) : d.exit_code;
	free(d.messages);
	free(d.results);
	free(body);
	evdns_base_free(dns, 0);
	event_base_free(d.base);
	mt_tls_config_free(&tls);
	return code;
}
