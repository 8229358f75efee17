/* oauth-refresh: one OAuth refresh through src/oauth on a libevent loop, for
 * tests/integration/test_oauth_refresh.py.
 *
 *   oauth-refresh --token-url URL --client-id ID --refresh-token-file F
 *                 [--client-secret-file F] [--scope S] [--ca-file F] [--timeout-ms N]
 *   oauth-refresh --token-url URL --client-id ID --code-file F --verifier-file F
 *                 --redirect-uri URI [--client-secret-file F] [--ca-file F]   (code exchange)
 *
 * While the refresh runs, a 10 ms timer ticks on the same loop: the widest gap between two ticks
 * shows whether anything blocked the loop. Prints one JSON object: outcome, reason, error,
 * expires_in, the SHA-256 of the access token and of a rotated refresh token (never the tokens),
 * ticks and max_tick_gap_ms. Exit 0 when a reply came (whatever its outcome), 2 on bad usage or
 * a request that could not start. */
#include "lib/secret.h"
#include "oauth/refresh.h"

#include <event2/event.h>
#include <getopt.h>
#include <jansson.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct run {
	struct event_base *base;
	struct event *tick;
	long ticks;
	double last_ms, max_gap_ms;
	json_t *out;
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct run *run = arg;
	double now = now_ms();
	if (now - run->last_ms > run->max_gap_ms)
		run->max_gap_ms = now - run->last_ms;
	run->last_ms = now;
	run->ticks++;
}

static json_t *digest(const struct mt_secret *secret)
{
	if (secret == NULL)
		return json_null();
	unsigned char hash[crypto_hash_sha256_BYTES];
	crypto_hash_sha256(hash, mt_secret_bytes(secret), mt_secret_len(secret));
	char hex[2 * sizeof(hash) + 1];
	sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
	return json_string(hex);
}

static void on_done(void *ctx, struct oauth_token_reply *reply)
{
	struct run *run = ctx;
	run->out = json_pack("{s:s, s:s, s:s, s:I, s:o, s:o}", "outcome",
	                     oauth_outcome_name(reply->outcome), "reason", reply->reason, "error",
	                     reply->error, "expires_in", (json_int_t)reply->expires_in,
	                     "access_token_sha256", digest(reply->access_token),
	                     "refresh_token_sha256", digest(reply->refresh_token));
	event_base_loopexit(run->base, NULL);
}

static struct mt_secret *read_secret(const char *path)
{
	const char *error = NULL;
	struct mt_secret *s = mt_secret_from_file(path, &error);
	if (s == NULL)
		fprintf(stderr, "oauth-refresh: %s: %s\n", path, error);
	return s;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
	    {"token-url", required_argument, NULL, 'u'},
	    {"client-id", required_argument, NULL, 'i'},
	    {"client-secret-file", required_argument, NULL, 's'},
	    {"refresh-token-file", required_argument, NULL, 'r'},
	    {"scope", required_argument, NULL, 'o'},
	    {"ca-file", required_argument, NULL, 'c'},
	    {"timeout-ms", required_argument, NULL, 't'},
	    {"code-file", required_argument, NULL, 'k'},
	    {"verifier-file", required_argument, NULL, 'v'},
	    {"redirect-uri", required_argument, NULL, 'd'},
	    {NULL, 0, NULL, 0},
	};
	struct oauth_refresh_params p = {0};
	const char *secret_file = NULL, *refresh_file = NULL, *code_file = NULL;
	const char *verifier_file = NULL, *redirect_uri = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (c) {
		case 'u':
			p.token_url = optarg;
			break;
		case 'i':
			p.client_id = optarg;
			break;
		case 's':
			secret_file = optarg;
			break;
		case 'r':
			refresh_file = optarg;
			break;
		case 'o':
			p.scope = optarg;
			break;
		case 'c':
			p.ca_file = optarg;
			break;
		case 't':
			p.timeout_ms = strtol(optarg, NULL, 10);
			break;
		case 'k':
			code_file = optarg;
			break;
		case 'v':
			verifier_file = optarg;
			break;
		case 'd':
			redirect_uri = optarg;
			break;
		default:
			return 2;
		}
	}
	bool exchange = code_file != NULL;
	if (sodium_init() < 0 || (exchange ? verifier_file == NULL : refresh_file == NULL)) {
		fprintf(stderr, "oauth-refresh: --refresh-token-file, or --code-file with "
		                "--verifier-file, is required\n");
		return 2;
	}
	struct mt_secret *refresh = read_secret(exchange ? code_file : refresh_file);
	struct mt_secret *verifier = exchange ? read_secret(verifier_file) : NULL;
	struct mt_secret *client_secret = secret_file != NULL ? read_secret(secret_file) : NULL;
	if (refresh == NULL || (exchange && verifier == NULL) ||
	    (secret_file != NULL && client_secret == NULL))
		return 2;
	p.refresh_token = refresh;
	p.client_secret = client_secret;
	const struct oauth_exchange_params x = {
	    .token_url = p.token_url,
	    .client_id = p.client_id,
	    .client_secret = client_secret,
	    .code = refresh,
	    .redirect_uri = redirect_uri,
	    .code_verifier = verifier,
	    .ca_file = p.ca_file,
	    .timeout_ms = p.timeout_ms,
	};
	struct run run = {.base = event_base_new()};
	const char *error = NULL;
	struct oauth_refresher *r = oauth_refresher_new(run.base, &error);
	if (r == NULL || (exchange ? oauth_exchange(r, &x, on_done, &run, &error)
	                           : oauth_refresh(r, &p, on_done, &run, &error)) < 0) {
		fprintf(stderr, "oauth-refresh: %s\n", error);
		oauth_refresher_free(&r);
		mt_secret_free(&refresh);
		mt_secret_free(&verifier);
		mt_secret_free(&client_secret);
		event_base_free(run.base);
		return 2;
	}
	/* The request copied what it needs: the caller's secrets may go now. */
	mt_secret_free(&refresh);
	mt_secret_free(&verifier);
	mt_secret_free(&client_secret);
	run.tick = event_new(run.base, -1, EV_PERSIST, on_tick, &run);
	struct timeval ten_ms = {0, 10000};
	event_add(run.tick, &ten_ms);
	run.last_ms = now_ms();
	event_base_dispatch(run.base);
	int rc = 2;
	if (run.out != NULL) {
		json_object_set_new(run.out, "ticks", json_integer(run.ticks));
		json_object_set_new(run.out, "max_tick_gap_ms",
		                    json_integer((json_int_t)run.max_gap_ms));
		char *text = json_dumps(run.out, JSON_COMPACT);
		puts(text);
		free(text);
		json_decref(run.out);
		rc = 0;
	}
	oauth_refresher_free(&r);
	event_free(run.tick);
	event_base_free(run.base);
	return rc;
}
