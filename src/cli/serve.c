/* `mailtrail serve`: the service. One event loop thread runs the HTTP API and the engines; the
 * store runs on its own thread. Settings: config file < MAILTRAIL_* environment < flags. */
#include "cli/cli.h"

#include "config/config.h"
#include "crypto/seal.h"
#include "engine/account.h"
#include "engine/campaign.h"
#include "engine/outbox.h"
#include "engine/retention.h"
#include "engine/sender.h"
#include "engine/imap_account.h"
#include "engine/imap_sync.h"
#include "engine/oauth_connect.h"
#include "engine/oauth_flow.h"
#include "engine/oauth_broker.h"
#include "engine/api_keys.h"
#include "engine/users.h"
#include "engine/webhooks.h"
#include "http/api.h"
#include "lib/log.h"
#include "lib/str.h"
#include "mime/address.h"
#include "net/conn.h"
#include "net/tls.h"
#include "oauth/refresh.h"
#include "store/store.h"
#include "work/work.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <sodium.h>
#include <unistd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* This node's name as a lease owner: kept in DATA/node.id so that after a restart the node
 * recognises its own leases and takes them back at once. */
static int node_id(const char *data, char out[MT_ID_MAX])
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/node.id", data);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, out, MT_ID_MAX - 1);
		close(fd);
		if (n > 0) {
			out[n] = '\0';
			out[strcspn(out, "\r\n")] = '\0';
			if (out[0] != '\0')
				return 0;
		}
	}
	unsigned char random[8];
	randombytes_buf(random, sizeof(random));
	char hex[17];
	sodium_bin2hex(hex, sizeof(hex), random, sizeof(random));
	snprintf(out, MT_ID_MAX, "node_%s", hex);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	ssize_t w = write(fd, out, strlen(out));
	close(fd);
	return w == (ssize_t)strlen(out) ? 0 : -1;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct event_base *base = arg;
	mt_log(MT_LOG_INFO, "serve.stopping", MT_KV("signal", sig == SIGTERM ? "TERM" : "INT"));
	event_base_loopbreak(base);
}

/* The API caches authentications; a change to someone's access must reach that cache. */
static void access_changed(void *api)
{
	api_auth_changed(api);
}

int mt_cli_serve(int argc, char **argv)
{
	/* Large buffers (request bodies, built and parsed messages, up to tens of MB) go straight
	 * to mmap and back to the system when freed: glibc's default threshold climbs to 32 MB
	 * after such frees, and the worker threads' arenas would then keep hundreds of MB resident
	 * after a burst of large messages. */
	mallopt(M_MMAP_THRESHOLD, MT_MALLOC_MMAP_THRESHOLD);
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
	struct sender *sender = NULL;
	struct work_pool *work = NULL;
	struct outbox *outbox = NULL;
	struct campaigns *campaigns = NULL;
	struct accounts *accounts = NULL;
	struct users *users = NULL;
	struct api_keys *api_keys = NULL;
	struct retention *retention = NULL;
	struct imap_syncer *syncer = NULL;
	struct oauth_refresher *refresher = NULL;
	struct oauth_flows *oauth_flows = NULL;
	struct oauth_connect *oauth_connect = NULL;
	struct oauth_broker *broker = NULL;
	struct webhooks *webhooks = NULL;
	struct mt_secret *relay_password = NULL;
	struct mt_relay_url relay;
	memset(&relay, 0, sizeof(relay));
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
	const char *relay_url = mt_config_str(config, "relay");
	if (relay_url != NULL) {
		if (mt_relay_url_parse(relay_url, &relay, &msg) < 0) {
			fprintf(stderr, "mailtrail serve: relay: %s\n", msg);
			goto out;
		}
		const char *password_file = mt_config_str(config, "relay_password_file");
		if (relay.user[0] != '\0' && password_file == NULL) {
			fputs("mailtrail serve: relay has a user but relay_password_file is not "
			      "set\n",
			      stderr);
			goto out;
		}
		if (password_file != NULL &&
		    (relay_password = mt_secret_from_file(password_file, &msg)) == NULL) {
			fprintf(stderr, "mailtrail serve: %s: %s\n", password_file, msg);
			goto out;
		}
		api.relay_configured = true;
		const char *relay_from = mt_config_str(config, "relay_from");
		if (relay_from != NULL)
			mt_strlcpy(api.relay_from, relay_from, sizeof(api.relay_from));
	}
	char node[MT_ID_MAX];
	if (node_id(data, node) < 0) {
		fprintf(stderr, "mailtrail serve: %s/node.id: %s\n", data, strerror(errno));
		goto out;
	}
	if ((work = work_pool_new(base, MT_WORK_THREADS, MT_WORK_QUEUE_MAX, &msg)) == NULL) {
		fprintf(stderr, "mailtrail serve: workers: %s\n", msg);
		goto out;
	}
	struct oauth_broker_params broker_params = {
	    .base = base,
	    .store = store,
	    .keyring = keyring,
	    .ca_file = ca_file,
	    .relay = {.configured = api.relay_configured, .from = api.relay_from},
	};
	const char *background = getenv("MAILTRAIL_TEST_OAUTH_BACKGROUND_MS");
	if (background != NULL) /* tests: the background refresh in seconds, or off (-1) */
		broker_params.background_ms = atoi(background);
	if ((broker = oauth_broker_new(&broker_params, &msg)) == NULL) {
		fprintf(stderr, "mailtrail serve: oauth: %s\n", msg);
		goto out;
	}
	struct accounts_params accounts_params = {
	    .base = base,
	    .dns = dns,
	    .store = store,
	    .keyring = keyring,
	    .tls = tls,
	    .config = config,
	    .relay = {.configured = api.relay_configured, .from = api.relay_from},
	    .broker = broker,
	};
	if ((accounts = accounts_new(&accounts_params)) == NULL) {
		fprintf(stderr, "mailtrail serve: out of memory\n");
		goto out;
	}
	api.accounts = accounts;
	struct sender_params sender_params = {
	    .base = base,
	    .dns = dns,
	    .store = store,
	    .work = work,
	    .keyring = keyring,
	    .tls = tls,
	    .broker = broker,
	    .node_id = node,
	    .sessions_per_account = (int)mt_config_int(config, "smtp_sessions_per_account"),
	    .max_inflight = (int)mt_config_int(config, "smtp_max_inflight"),
	    .retry_expiry_s = mt_config_int(config, "retry_expiry"),
	    .allow_private = mt_config_cidrs(config, "allow_private_hosts"),
	    .relay_host = relay_url != NULL ? relay.host : NULL,
	    .relay_port = relay.port,
	    .relay_implicit_tls = relay.implicit_tls,
	    .relay_user = relay.user,
	    .relay_from = api.relay_from,
	    .relay_password = relay_password,
	    .accounts = accounts,
	    .confirm_delay_s = mt_config_int(config, "smtp_confirm_delay"),
	};
	/* The relay's per-user limits, enforced by the governor at enqueue and delivery. */
	struct mt_config_limit relay_limits[MT_SEND_LIMITS_MAX];
	size_t relay_limit_count = mt_config_limits(config, "relay_user_limits", relay_limits);
	for (size_t i = 0; i < relay_limit_count; i++) {
		sender_params.relay_limits[i].limit = relay_limits[i].limit;
		sender_params.relay_limits[i].window_s = (int)relay_limits[i].window_s;
	}
	sender_params.relay_limit_count = relay_limit_count;
	sender_params.throttle_pause_s = mt_config_int(config, "throttle_pause");
	const char *retry_base = getenv("MAILTRAIL_TEST_RETRY_BASE_S");
	if (retry_base != NULL) /* tests: seconds instead of minutes between retries */
		sender_params.retry_base_s = atoi(retry_base);
	const char *reply_timeout = getenv("MAILTRAIL_TEST_REPLY_TIMEOUT_MS");
	if (reply_timeout != NULL) /* tests: a stalled server in seconds, not minutes */
		sender_params.reply_timeout_ms = atoi(reply_timeout);
	if ((sender = sender_new(&sender_params, &msg)) == NULL) {
		fprintf(stderr, "mailtrail serve: sender: %s\n", msg);
		goto out;
	}
	api.sender = sender;
	api.work = work;
	struct outbox_params outbox_params = {
	    .store = store,
	    .work = work,
	    .sender = sender,
	    .max_message_bytes = mt_config_int(config, "max_message_bytes"),
	    .relay = {.configured = api.relay_configured, .from = api.relay_from},
	};
	memcpy(outbox_params.relay.limits, sender_params.relay_limits,
	       sizeof(outbox_params.relay.limits));
	outbox_params.relay.limit_count = sender_params.relay_limit_count;
	if ((outbox = outbox_new(&outbox_params)) == NULL) {
		fprintf(stderr, "mailtrail serve: out of memory\n");
		goto out;
	}
	api.outbox = outbox;
	struct campaigns_params campaigns_params = {
	    .store = store,
	    .work = work,
	    .sender = sender,
	    .relay = {.configured = api.relay_configured, .from = api.relay_from},
	    .relay_campaign_max = mt_config_int(config, "relay_campaign_max"),
	    .max_message_bytes = mt_config_int(config, "max_message_bytes"),
	    .public_url = mt_config_str(config, "public_url"),
	};
	if ((campaigns = campaigns_new(&campaigns_params)) == NULL) {
		fprintf(stderr, "mailtrail serve: out of memory\n");
		goto out;
	}
	api.campaigns = campaigns;
	struct users_params users_params = {
	    .store = store,
	    .on_access_change = access_changed,
	    .on_access_change_ctx = &api,
	};
	if ((users = users_new(&users_params)) == NULL) {
		fprintf(stderr, "mailtrail serve: out of memory\n");
		goto out;
	}
	api.users = users;
	struct api_keys_params keys_params = {
	    .store = store,
	    .on_access_change = access_changed,
	    .on_access_change_ctx = &api,
	};
	if ((api_keys = api_keys_new(&keys_params)) == NULL) {
		fprintf(stderr, "mailtrail serve: out of memory\n");
		goto out;
	}
	api.api_keys = api_keys;
	struct imap_syncer_params syncer_params = {
	    .base = base,
	    .dns = dns,
	    .store = store,
	    .work = work,
	    .keyring = keyring,
	    .tls = tls,
	    .config = config,
	    .relay = {.configured = api.relay_configured, .from = api.relay_from},
	    .max_connections = (int)mt_config_int(config, "imap_max_connections"),
	    .confirm_delay_s = (int)mt_config_int(config, "smtp_confirm_delay"),
	    .broker = broker,
	};
	if ((syncer = imap_syncer_new(&syncer_params)) == NULL) {
		fprintf(stderr, "mailtrail serve: out of memory\n");
		goto out;
	}
	api.imap_syncer = syncer;
	accounts_set_imap_hook(accounts, imap_syncer_changed, syncer);
	if ((refresher = oauth_refresher_new(base, &msg)) == NULL) {
		fprintf(stderr, "mailtrail serve: OAuth client: %s\n", msg);
		goto out;
	}
	/* A finished sign-in saves the accounts it was for on the new grant. */
	if ((oauth_connect = oauth_connect_new(accounts, store)) == NULL) {
		fprintf(stderr, "mailtrail serve: out of memory\n");
		goto out;
	}
	struct oauth_flows_params flows_params = {
	    .store = store,
	    .keyring = keyring,
	    .config = config,
	    .refresher = refresher,
	    .broker = broker,
	    .granted = oauth_connect_granted,
	    .granted_ctx = oauth_connect,
	};
	if ((oauth_flows = oauth_flows_new(&flows_params, &msg)) == NULL) {
		fprintf(stderr, "mailtrail serve: OAuth client secret: %s\n", msg);
		goto out;
	}
	api.oauth_flows = oauth_flows;
	struct webhooks_params webhooks_params = {
	    .base = base,
	    .dns = dns,
	    .store = store,
	    .keyring = keyring,
	    .config = config,
	    .node_id = node,
	    .activity_json = api_activity_json,
	};
	if ((webhooks = webhooks_new(&webhooks_params, &msg)) == NULL) {
		fprintf(stderr, "mailtrail serve: webhooks: %s\n", msg);
		goto out;
	}
	api.webhooks = webhooks;
	/* A revoked grant's IMAP account is disconnected: its session stops now. */
	oauth_broker_set_revoked_hook(broker, imap_syncer_changed, syncer);
	api.base = base;
	api.dns = dns;
	api.store = store;
	api.keyring = keyring;
	api.config = config;
	api.tls = tls;
	size_t route_count;
	const struct http_route *routes = api_routes(&route_count);
	const char *listen = mt_config_str(config, "http");
	struct http_server_params http_params = {
	    .max_connections = (unsigned)mt_config_int(config, "http_max_connections"),
	    .max_connections_per_ip =
	        (unsigned)mt_config_int(config, "http_max_connections_per_ip"),
	    .header_timeout_ms = (unsigned)mt_config_int(config, "http_header_timeout") * 1000,
	    .request_timeout_ms = (unsigned)mt_config_int(config, "http_request_timeout") * 1000,
	    .idle_timeout_ms = (unsigned)mt_config_int(config, "http_idle_timeout") * 1000,
	};
	server = http_server_new(base, listen, routes, route_count, api_authenticate, &api,
	                         &http_params, &msg);
	if (server == NULL) {
		fprintf(stderr, "mailtrail serve: --http %s: %s\n", listen, msg);
		goto out;
	}
	sigterm = evsignal_new(base, SIGTERM, on_signal, base);
	sigint = evsignal_new(base, SIGINT, on_signal, base);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	const char *retention_first = getenv("MAILTRAIL_TEST_RETENTION_FIRST_S");
	if ((retention = retention_start(
	         base, store, mt_config_int(config, "record_retention_days"),
	         mt_config_int(config, "outbox_retention_days"),
	         /* tests: the first purge in a second, not a minute */
	         retention_first != NULL ? atoi(retention_first) : RETENTION_FIRST_S)) == NULL) {
		fprintf(stderr, "mailtrail serve: out of memory\n");
		goto out;
	}
	char port[8];
	snprintf(port, sizeof(port), "%u", http_server_port(server));
	mt_log(MT_LOG_INFO, "serve.started", MT_KV("http", listen), MT_KV("port", port),
	       MT_KV("db", db), MT_KV("version", MT_VERSION));
	/* In the background: the accounts log in while the API already answers. */
	if (oauth_broker_start(broker) < 0)
		mt_log(MT_LOG_ERROR, "oauth.start_failed");
	if (imap_syncer_start(syncer) < 0)
		mt_log(MT_LOG_ERROR, "imap.sync_start_failed");
	if (webhooks_start(webhooks) < 0)
		mt_log(MT_LOG_ERROR, "webhooks.start_failed");
	event_base_dispatch(base);
	status = 0;
	mt_log(MT_LOG_INFO, "serve.stopped");
out:
	http_server_free(&server);
	free(api.auth_cache); /* the authentication cache (http/api.c), filled on demand */
	/* The sync's sessions end first, so that what the workers and the store hold for them
	 * completes without carrying a pass on. */
	imap_syncer_close(syncer);
	/* What the workers hold is answered (to requests now gone) before the store closes. */
	work_pool_free(&work);
	outbox_free(&outbox);
	campaigns_free(&campaigns);
	sender_free(&sender);
	if (sigterm != NULL)
		event_free(sigterm);
	if (sigint != NULL)
		event_free(sigint);
	retention_free(&retention);
	oauth_broker_close(broker); /* its flights are parked, the store's completions find them */
	webhooks_stop(webhooks);    /* deliveries in flight dropped: sent again after a restart */
	store_close(&store);
	webhooks_free(&webhooks);   /* after the store: its jobs' completions read it */
	imap_syncer_free(&syncer);  /* after the store: its jobs' completions read it */
	users_free(&users);         /* after the store: its jobs' completions announce through it */
	api_keys_free(&api_keys);   /* the same */
	accounts_free(&accounts);   /* the same: a disconnect's completion reads it */
	oauth_broker_free(&broker); /* after its askers: they cancel their asks */
	/* exchanges in flight end unanswered: their pages are gone */
	oauth_refresher_free(&refresher);
	oauth_flows_free(&oauth_flows);
	oauth_connect_free(&oauth_connect);
	if (dns != NULL)
		evdns_base_free(dns, 0);
	mt_tls_config_free(&tls);
	mt_keyring_free(&keyring);
	mt_secret_free(&relay_password);
	if (base != NULL)
		event_base_free(base);
	mt_config_free(&config);
	return status;
}
