/* `mailtrail serve`: the service. One event loop thread runs the HTTP API and the engines; the
 * store runs on its own thread. Settings: config file < MAILTRAIL_* environment < flags. */
#include "cli/cli.h"

#include "config/config.h"
#include "crypto/seal.h"
#include "http/api.h"
#include "lib/log.h"
#include "lib/str.h"
#include "mime/address.h"
#include "net/conn.h"
#include "net/tls.h"
#include "store/store.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_USAGE 2

extern char **environ;

static void usage(FILE *out)
{
	fputs("usage: mailtrail serve --data DIR [--config FILE] [--db URL] [--http ADDR:PORT]\n"
	      "                       [--dropbox ADDR:PORT]\n"
	      "Runs the HTTP API (default 127.0.0.1:8025) on the store in DIR (or --db).\n"
	      "Every config key can be set as MAILTRAIL_<KEY>; flags override both.\n",
	      out);
}

static void warn_unbuilt(const char *key, const char *origin, void *ctx)
{
	(void)ctx;
	fprintf(stderr, "mailtrail serve: %s (from %s) is not built yet; ignored\n", key, origin);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct event_base *base = arg;
	mt_log(MT_LOG_INFO, "serve.stopping", MT_KV("signal", sig == SIGTERM ? "TERM" : "INT"));
	event_base_loopbreak(base);
}

int mt_cli_serve(int argc, char **argv)
{
	static const struct option options[] = {
	    {"data", required_argument, NULL, 'd'},
	    {"config", required_argument, NULL, 'c'},
	    {"db", required_argument, NULL, 'b'},
	    {"http", required_argument, NULL, 'H'},
	    {"dropbox", required_argument, NULL, 'x'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct {
		const char *key, *value;
	} flags[8];
	size_t flag_count = 0;
	const char *config_file = NULL;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'd':
			flags[flag_count].key = "data";
			break;
		case 'b':
			flags[flag_count].key = "db";
			break;
		case 'H':
			flags[flag_count].key = "http";
			break;
		case 'x':
			flags[flag_count].key = "dropbox";
			break;
		case 'c':
			config_file = optarg;
			continue;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
		flags[flag_count++].value = optarg;
	}
	if (optind != argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	char error[512];
	struct mt_config *config = mt_config_new();
	if ((config_file != NULL &&
	     mt_config_load_file(config, config_file, error, sizeof(error)) < 0) ||
	    mt_config_load_env(config, environ, error, sizeof(error)) < 0) {
		fprintf(stderr, "mailtrail serve: %s\n", error);
		mt_config_free(&config);
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < flag_count; i++) {
		char origin[32];
		snprintf(origin, sizeof(origin), "--%s", flags[i].key);
		if (mt_config_set(config, flags[i].key, flags[i].value, origin, error,
		                  sizeof(error)) < 0) {
			fprintf(stderr, "mailtrail serve: %s\n", error);
			mt_config_free(&config);
			return EXIT_USAGE;
		}
	}
	const char *data = mt_config_str(config, "data");
	if (data == NULL) {
		fputs("mailtrail serve: --data (or the data key) is required\n", stderr);
		mt_config_free(&config);
		return EXIT_USAGE;
	}
	enum mt_log_level level;
	if (mt_log_level_parse(mt_config_str(config, "log_level"), &level) == 0)
		mt_log_set_level(level);
	mt_config_each_unbuilt(config, warn_unbuilt, NULL);

	const char *msg;
	int status = 1;
	struct event_base *base = NULL;
	struct evdns_base *dns = NULL;
	struct store *store = NULL;
	struct mt_keyring *keyring = NULL;
	struct mt_tls_config *tls = NULL;
	struct http_server *server = NULL;
	struct event *sigterm = NULL, *sigint = NULL;
	struct api api;
	memset(&api, 0, sizeof(api));

	char key_path[4096], db_path[4096];
	if (mt_cli_key_path(data, mt_config_str(config, "secret_key_file"), key_path,
	                    sizeof(key_path)) < 0 ||
	    (keyring = mt_keyring_load(key_path, &msg)) == NULL) {
		fprintf(stderr, "mailtrail serve: %s: %s\n", key_path,
		        keyring == NULL ? msg : "path too long");
		goto out;
	}
	const char *db = mt_config_str(config, "db");
	if (db == NULL) {
		snprintf(db_path, sizeof(db_path), "%s/mailtrail.db", data);
		db = db_path;
	}
	signal(SIGPIPE, SIG_IGN);
	mime_init();
	base = event_base_new();
	if (base == NULL) {
		fputs("mailtrail serve: cannot create the event loop\n", stderr);
		goto out;
	}
	if ((store = store_open(db, base, &msg)) == NULL) {
		fprintf(stderr, "mailtrail serve: %s: %s\n", db, msg);
		goto out;
	}
	const char *ca_file = mt_config_str(config, "ca_file");
	if ((tls = mt_tls_config_new(ca_file, &msg)) == NULL) {
		fprintf(stderr, "mailtrail serve: %s: %s\n", ca_file ? ca_file : "TLS", msg);
		goto out;
	}
	dns = mt_conn_dns_new(base);
	api.base = base;
	api.dns = dns;
	api.store = store;
	api.keyring = keyring;
	api.config = config;
	api.tls = tls;
	size_t route_count;
	const struct http_route *routes = api_routes(&route_count);
	const char *listen = mt_config_str(config, "http");
	server = http_server_new(base, listen, routes, route_count, api_authenticate, &api, &msg);
	if (server == NULL) {
		fprintf(stderr, "mailtrail serve: --http %s: %s\n", listen, msg);
		goto out;
	}
	sigterm = evsignal_new(base, SIGTERM, on_signal, base);
	sigint = evsignal_new(base, SIGINT, on_signal, base);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	char port[8];
	snprintf(port, sizeof(port), "%u", http_server_port(server));
	mt_log(MT_LOG_INFO, "serve.started", MT_KV("http", listen), MT_KV("port", port),
	       MT_KV("db", db), MT_KV("version", MT_VERSION));
	event_base_dispatch(base);
	status = 0;
	mt_log(MT_LOG_INFO, "serve.stopped");
out:
	http_server_free(&server);
	if (sigterm != NULL)
		event_free(sigterm);
	if (sigint != NULL)
		event_free(sigint);
	store_close(&store);
	if (dns != NULL)
		evdns_base_free(dns, 0);
	mt_tls_config_free(&tls);
	mt_keyring_free(&keyring);
	free(api.checks);
	if (base != NULL)
		event_base_free(base);
	mt_config_free(&config);
	return status;
}
