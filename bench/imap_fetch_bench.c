/* imap-fetch-bench: mailtrail's IMAP client (src/imap/client.h) fetching a whole mailbox, for
 * bench/imap-fetch. It connects (plaintext, or implicit TLS with --tls), logs in, SELECTs the
 * mailbox and runs one imap_client_fetch(1, *, ITEMS): with --chunk 0 (the default here) as one
 * `UID FETCH 1:<UIDNEXT-1> ITEMS` command, otherwise in the client's chunks of N UIDs with
 * --window commands in flight (the product's defaults: 500 and 4). Every answer's ENVELOPE is
 * parsed (imap_envelope_parse, then the first From address) so that the work is what a
 * consumer does. Prints one line:
 *
 *   fetched=N parsed=N ms=T
 *
 * T: from queuing the FETCH (in SELECT's completion) to its completion (the last tagged OK).
 *
 *   imap-fetch-bench --host H --port P --user U --password-file F [--tls --ca-file F]
 *                    [--mailbox INBOX] [--items "(UID FLAGS ENVELOPE)"] [--chunk N]
 *                    [--window N]
 * Exit status: 0, or 1 when the session or an operation failed. */
#include "imap/client.h"
#include "lib/secret.h"
#include "net/conn.h"
#include "net/security.h"
#include "net/tls.h"
#include "proto/imap_fetch.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct bench {
	struct event_base *base;
	struct imap_client *client;
	const char *mailbox;
	const char *items;
	uint32_t chunk;
	size_t fetched, parsed, subjects;
	double start_ms, elapsed_ms;
	int status;
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void fail(struct bench *b, const char *what, const char *reason, const char *response)
{
	fprintf(stderr, "imap-fetch-bench: %s: %s %s\n", what, reason, response ? response : "");
	b->status = 1;
	event_base_loopbreak(b->base);
}

static void on_fetch(void *ctx, const struct imap_fetch *f)
{
	struct bench *b = ctx;
	b->fetched++;
	if (f->envelope == NULL)
		return;
	struct imap_envelope env;
	struct imap_address from;
	const char *error;
	if (imap_envelope_parse(f->envelope, &env, &error) < 0)
		return;
	if (env.from != NULL && imap_address_get(env.from, &from, &error) < 0)
		return;
	if (env.subject != NULL)
		b->subjects++;
	b->parsed++;
}

static void on_fetched(void *ctx, const struct imap_result *r)
{
	struct bench *b = ctx;
	b->elapsed_ms = now_ms() - b->start_ms;
	if (r->cls != MT_CLASS_NONE) {
		fail(b, "fetch", r->reason, r->response);
		return;
	}
	const char *error;
	if (imap_client_logout(b->client, &error) < 0)
		fail(b, "logout", error, NULL);
}

static void on_selected(void *ctx, const struct imap_result *r)
{
	struct bench *b = ctx;
	if (r->cls != MT_CLASS_NONE) {
		fail(b, "select", r->reason, r->response);
		return;
	}
	const char *error;
	b->start_ms = now_ms();
	if (imap_client_fetch(b->client, 1, UINT32_MAX, b->items, b->chunk, on_fetch, on_fetched, b,
	                      &error) < 0)
		fail(b, "fetch", error, NULL);
}

static void on_ready(void *ctx)
{
	struct bench *b = ctx;
	const char *error;
	if (imap_client_select(b->client, b->mailbox, false, on_selected, b, &error) < 0)
		fail(b, "select", error, NULL);
}

static void on_failed(void *ctx, const struct imap_failure *f)
{
	fail(ctx, "session", f->reason, f->response);
}

static void on_closed(void *ctx)
{
	struct bench *b = ctx;
	event_base_loopbreak(b->base);
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
	    {"host", required_argument, NULL, 'h'},
	    {"port", required_argument, NULL, 'p'},
	    {"user", required_argument, NULL, 'u'},
	    {"password-file", required_argument, NULL, 'P'},
	    {"tls", no_argument, NULL, 't'},
	    {"ca-file", required_argument, NULL, 'c'},
	    {"mailbox", required_argument, NULL, 'm'},
	    {"items", required_argument, NULL, 'i'},
	    {"chunk", required_argument, NULL, 'C'},
	    {"window", required_argument, NULL, 'W'},
	    {NULL, 0, NULL, 0},
	};
	struct bench b;
	memset(&b, 0, sizeof(b));
	b.mailbox = "INBOX";
	b.items = "(UID FLAGS ENVELOPE)";
	struct imap_client_params params;
	memset(&params, 0, sizeof(params));
	params.security = MT_SECURITY_NONE;
	params.allow_plaintext_auth = true;
	params.auth = IMAP_AUTH_PASSWORD;
	const char *password_file = NULL, *ca_file = NULL, *port_text = NULL;
	unsigned long chunk = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			params.host = optarg;
			break;
		case 'p':
			port_text = optarg;
			break;
		case 'u':
			params.username = optarg;
			break;
		case 'P':
			password_file = optarg;
			break;
		case 't':
			params.security = MT_SECURITY_TLS;
			break;
		case 'c':
			ca_file = optarg;
			break;
		case 'm':
			b.mailbox = optarg;
			break;
		case 'i':
			b.items = optarg;
			break;
		case 'C':
			chunk = strtoul(optarg, NULL, 10);
			break;
		case 'W':
			params.fetch_window = (unsigned)strtoul(optarg, NULL, 10);
			break;
		default:
			return 2;
		}
	}
	if (params.host == NULL || port_text == NULL || params.username == NULL ||
	    password_file == NULL) {
		fprintf(stderr, "usage: imap-fetch-bench --host H --port P --user U "
		                "--password-file F [--tls --ca-file F] [--chunk N] [--window N]\n");
		return 2;
	}
	params.port = (uint16_t)atoi(port_text);
	/* chunk 0: one command for the whole range (the client's chunk is a count of UIDs) */
	b.chunk = chunk == 0 || chunk > UINT32_MAX ? UINT32_MAX : (uint32_t)chunk;
	const char *error;
	struct mt_secret *secret = mt_secret_from_file(password_file, &error);
	if (secret == NULL) {
		fprintf(stderr, "imap-fetch-bench: %s: %s\n", password_file, error);
		return 2;
	}
	params.secret = secret;
	signal(SIGPIPE, SIG_IGN);
	struct mt_tls_config *tls = mt_tls_config_new(ca_file, &error);
	if (tls == NULL) {
		fprintf(stderr, "imap-fetch-bench: %s\n", error);
		return 2;
	}
	params.tls = tls;
	b.base = event_base_new();
	struct evdns_base *dns = mt_conn_dns_new(b.base);
	struct imap_client_callbacks callbacks = {
	    .ready = on_ready,
	    .failed = on_failed,
	    .closed = on_closed,
	};
	b.client = imap_client_new(b.base, dns, &params, &callbacks, &b, &error);
	mt_secret_free(&secret);
	if (b.client == NULL) {
		fprintf(stderr, "imap-fetch-bench: %s\n", error);
		b.status = 1;
	} else {
		event_base_dispatch(b.base);
	}
	imap_client_free(&b.client);
	evdns_base_free(dns, 0);
	event_base_free(b.base);
	mt_tls_config_free(&tls);
	if (b.status == 0)
		printf("fetched=%zu parsed=%zu ms=%.3f\n", b.fetched, b.parsed, b.elapsed_ms);
	return b.status;
}
