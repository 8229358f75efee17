/* `mailtrail imap-check`: a live check of an IMAP account, as a recruiter's settings page would
 * run it — connect, secure, log in, list the folders with their special-use roles and read
 * UIDVALIDITY / UIDNEXT / HIGHESTMODSEQ of INBOX and Sent (EXAMINE: nothing changes) — printing
 * the masked transcript and the outcome with its class, as smtp-check does. Exit codes:
 * DESIGN.md §2. */
#include "cli/cli.h"
#include "engine/imap_account.h"
#include "store/store_imap.h"

#include "imap/client.h"
#include "lib/failure.h"
#include "lib/secret.h"
#include "lib/str.h"
#include "net/conn.h"
#include "net/security.h"
#include "net/tls.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_USAGE 2
/* The whole check, as in the settings API: a user waits for it. */
#define CHECK_DEADLINE_S 30

struct folder_status {
	char name[MT_IMAP_MAILBOX_MAX];
	bool done;
	struct imap_result res;
};

struct check {
	struct event_base *base;
	struct imap_client *client;
	bool finished;
	enum mt_failure_class cls;
	char reason[256];
	char response[512];
	char fingerprint[MT_TLS_FINGERPRINT_MAX];
	struct imap_mailbox *boxes;
	size_t box_count;
	struct folder_status inbox, sent;
	bool has_sent;
};

static void usage(FILE *out)
{
	fputs("usage: mailtrail imap-check --host H --port P --security starttls|tls|none\n"
	      "         --user U --password-file F [--auth password|plain|login|xoauth2]\n"
	      "         [--fingerprint PIN] [--ca-file F] [--bind ADDR] [--allow-plaintext]\n"
	      "Connects, secures and logs in, lists the folders with their special-use roles\n"
	      "and reads UIDVALIDITY / UIDNEXT / HIGHESTMODSEQ of INBOX and Sent, printing the\n"
	      "transcript with secrets masked, then the outcome and its class.\n"
	      "Exit: 0 ok, 2 usage, 10 conn, 11 tls, 12 auth, 13 proto, 14 resp, 15 throttle,\n"
	      "17 internal. --fingerprint takes sha256:HEX or spki-sha256:HEX.\n",
	      out);
}

static void finish(struct check *check, enum mt_failure_class cls, const char *reason,
                   const char *response)
{
	if (check->finished)
		return;
	check->finished = true;
	check->cls = cls;
	mt_strlcpy(check->reason, reason != NULL ? reason : "", sizeof(check->reason));
	mt_strlcpy(check->response, response != NULL ? response : "", sizeof(check->response));
	event_base_loopbreak(check->base);
}

static void on_transcript(void *ctx, char direction, const char *line, size_t len)
{
	(void)ctx;
	printf("%c: %.*s\n", direction, (int)len, line);
}

static void on_failed(void *ctx, const struct imap_failure *failure)
{
	struct check *check = ctx;
	mt_strlcpy(check->fingerprint, failure->fingerprint, sizeof(check->fingerprint));
	finish(check, failure->cls, failure->reason, failure->response);
}

static void on_closed(void *ctx)
{
	struct check *check = ctx;
	finish(check, MT_CLASS_NONE, NULL, NULL);
}

static void logout(struct check *check)
{
	const char *error;
	if (imap_client_logout(check->client, &error) < 0)
		finish(check, MT_CLASS_INTERNAL, error, NULL);
}

static void on_examined(void *ctx, const struct imap_result *result)
{
	struct folder_status *folder = ctx;
	folder->done = true;
	folder->res = *result;
	folder->res.mailboxes = NULL;
	folder->res.uids = NULL;
}

static void on_last_examined(void *ctx, const struct imap_result *result);

static void examine(struct check *check, struct folder_status *folder, imap_done_cb *done)
{
	const char *error;
	if (imap_client_select(check->client, folder->name, true, done,
	                       done == on_examined ? (void *)folder : (void *)check, &error) < 0)
		finish(check, MT_CLASS_INTERNAL, error, NULL);
}

static void on_last_examined(void *ctx, const struct imap_result *result)
{
	struct check *check = ctx;
	struct folder_status *folder = check->has_sent ? &check->sent : &check->inbox;
	on_examined(folder, result);
	if (result->cls != MT_CLASS_NONE && result->cls != MT_CLASS_RESP)
		return; /* the session failed: on_failed says why */
	logout(check);
}

static void on_list(void *ctx, const struct imap_result *result)
{
	struct check *check = ctx;
	if (result->cls != MT_CLASS_NONE) {
		if (result->cls == MT_CLASS_RESP)
			finish(check, MT_CLASS_RESP, result->reason, result->response);
		return;
	}
	if (result->mailbox_count > 0) {
		check->boxes = malloc(result->mailbox_count * sizeof(*check->boxes));
		if (check->boxes == NULL) {
			finish(check, MT_CLASS_INTERNAL, "out of memory", NULL);
			return;
		}
		memcpy(check->boxes, result->mailboxes,
		       result->mailbox_count * sizeof(*check->boxes));
		check->box_count = result->mailbox_count;
	}
	const struct imap_mailbox *sent = imap_mailboxes_find_sent(check->boxes, check->box_count);
	mt_strlcpy(check->inbox.name, "INBOX", sizeof(check->inbox.name));
	if (sent != NULL) {
		check->has_sent = true;
		mt_strlcpy(check->sent.name, sent->name, sizeof(check->sent.name));
		examine(check, &check->inbox, on_examined);
		examine(check, &check->sent, on_last_examined);
	} else {
		examine(check, &check->inbox, on_last_examined);
	}
}

static void on_ready(void *ctx)
{
	struct check *check = ctx;
	const char *error;
	if (imap_client_list(check->client, on_list, check, &error) < 0)
		finish(check, MT_CLASS_INTERNAL, error, NULL);
}

static void on_deadline(evutil_socket_t fd, short what, void *ctx)
{
	(void)fd;
	(void)what;
	struct check *check = ctx;
	finish(check, MT_CLASS_CONN, "the check did not finish within 30 s", NULL);
}

static void print_folder(const struct folder_status *folder, const char *label)
{
	if (!folder->done)
		return;
	if (folder->res.cls != MT_CLASS_NONE) {
		printf("%s: %s: not readable (%s%s%s)\n", label, folder->name, folder->res.reason,
		       folder->res.response[0] ? ": " : "", folder->res.response);
		return;
	}
	printf("%s: %s uidvalidity=%u uidnext=%u exists=%u highestmodseq=%llu\n", label,
	       folder->name, folder->res.uidvalidity, folder->res.uidnext, folder->res.exists,
	       (unsigned long long)folder->res.highestmodseq);
}

int mt_cli_imap_check(int argc, char **argv)
{
	static const struct option options[] = {
	    {"host", required_argument, NULL, 'h'},
	    {"port", required_argument, NULL, 'p'},
	    {"security", required_argument, NULL, 's'},
	    {"auth", required_argument, NULL, 'a'},
	    {"user", required_argument, NULL, 'u'},
	    {"password-file", required_argument, NULL, 'P'},
	    {"fingerprint", required_argument, NULL, 'F'},
	    {"ca-file", required_argument, NULL, 'c'},
	    {"bind", required_argument, NULL, 'b'},
	    {"allow-plaintext", no_argument, NULL, 'A'},
	    {"help", no_argument, NULL, 'H'},
	    {NULL, 0, NULL, 0},
	};
	const char *host = NULL, *port_text = NULL, *security_text = NULL, *auth_text = NULL;
	const char *user = NULL, *password_file = NULL, *fingerprint = NULL, *ca_file = NULL;
	const char *bind_address = NULL;
	bool allow_plaintext = false;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			host = optarg;
			break;
		case 'p':
			port_text = optarg;
			break;
		case 's':
			security_text = optarg;
			break;
		case 'a':
			auth_text = optarg;
			break;
		case 'u':
			user = optarg;
			break;
		case 'P':
			password_file = optarg;
			break;
		case 'F':
			fingerprint = optarg;
			break;
		case 'c':
			ca_file = optarg;
			break;
		case 'b':
			bind_address = optarg;
			break;
		case 'A':
			allow_plaintext = true;
			break;
		case 'H':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	/* The account as the flags describe it; its client parameters come from the engine, as
	 * every connection to a stored account's server does (the sync and the live check). */
	struct store_imap_account *account = calloc(1, sizeof(*account));
	struct imap_client_params params;
	memset(&params, 0, sizeof(params));
	enum imap_auth mech = IMAP_AUTH_PASSWORD;
	struct mt_tls_pin pin;
	uint16_t port = 0;
	const char *error = NULL;
	if (account == NULL)
		error = "out of memory";
	else if (optind != argc)
		error = "unexpected argument";
	else if (host == NULL || port_text == NULL || security_text == NULL)
		error = "--host, --port and --security are required";
	else if (user == NULL || password_file == NULL)
		error = "--user and --password-file are required";
	else if (strlen(host) >= sizeof(account->host))
		error = "--host is too long";
	else if (mt_parse_port(port_text, &port) < 0)
		error = "--port must be 1..65535";
	else if (store_security_parse(security_text, &account->security) < 0)
		error = "--security must be starttls, tls or none";
	else if (auth_text != NULL && imap_auth_parse(auth_text, &mech) < 0)
		error = "--auth must be password, plain, login or xoauth2";
	else if (mt_str_has_crlf(user) || strlen(user) > MT_SASL_USER_MAX ||
	         strlen(user) >= sizeof(account->username))
		error = "invalid --user";
	else if (fingerprint != NULL && strlen(fingerprint) >= sizeof(account->tls_fingerprint))
		error = "--fingerprint is too long";
	if (error == NULL) {
		mt_strlcpy(account->host, host, sizeof(account->host));
		account->port = port;
		account->auth =
		    mech == IMAP_AUTH_XOAUTH2 ? STORE_AUTH_XOAUTH2 : STORE_AUTH_PASSWORD;
		mt_strlcpy(account->username, user, sizeof(account->username));
		mt_strlcpy(account->tls_fingerprint, fingerprint != NULL ? fingerprint : "",
		           sizeof(account->tls_fingerprint));
		/* the pin's syntax is checked here, before any connection (sets error) */
		struct mt_secret *unused = NULL;
		if (account_imap_client(account, NULL, NULL, NULL, &params, &pin, &unused, &error) <
		    0)
			error = error != NULL ? error : "invalid --fingerprint";
	}
	if (error != NULL) {
		fprintf(stderr, "mailtrail imap-check: %s\n", error);
		usage(stderr);
		free(account);
		return EXIT_USAGE;
	}
	/* The mechanism as asked: the store only knows password or xoauth2. */
	params.auth = mech;
	struct mt_secret *secret = mt_secret_from_file(password_file, &error);
	if (secret == NULL) {
		fprintf(stderr, "mailtrail imap-check: %s: %s\n", password_file, error);
		free(account);
		return EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	struct mt_tls_config *tls = mt_tls_config_new(ca_file, &error);
	if (tls == NULL) {
		fprintf(stderr, "mailtrail imap-check: %s: %s\n", ca_file ? ca_file : "TLS", error);
		mt_secret_free(&secret);
		free(account);
		return EXIT_USAGE;
	}
	struct check check;
	memset(&check, 0, sizeof(check));
	check.base = event_base_new();
	struct evdns_base *dns = mt_conn_dns_new(check.base);
	params.secret = secret;
	params.tls = tls;
	params.bind_address = bind_address;
	params.allow_plaintext_auth = allow_plaintext;
	/* the operator's own check: any address, loopback and private ones too */
	params.public_only = false;
	params.connect_timeout_ms = MT_LIVE_CHECK_STEP_MS;
	params.greeting_timeout_ms = MT_LIVE_CHECK_STEP_MS;
	params.command_timeout_ms = MT_LIVE_CHECK_STEP_MS;
	struct imap_client_callbacks callbacks = {
	    .ready = on_ready,
	    .failed = on_failed,
	    .closed = on_closed,
	    .transcript = on_transcript,
	};
	printf("* checking %s:%s (%s, auth %s)\n", host, port_text, security_text,
	       imap_auth_name(params.auth));
	check.client = imap_client_new(check.base, dns, &params, &callbacks, &check, &error);
	mt_secret_free(&secret);
	struct event *deadline = evtimer_new(check.base, on_deadline, &check);
	if (check.client == NULL) {
		finish(&check, MT_CLASS_INTERNAL, error, NULL);
	} else {
		struct timeval tv = {CHECK_DEADLINE_S, 0};
		evtimer_add(deadline, &tv);
		event_base_dispatch(check.base);
	}
	imap_client_free(&check.client);

	if (check.box_count > 0) {
		printf("folders:\n");
		for (size_t i = 0; i < check.box_count; i++) {
			const struct imap_mailbox *b = &check.boxes[i];
			const char *role = imap_mailbox_role(b->flags);
			printf("  %s%s%s%s\n", b->name_utf8, role ? " (" : "", role ? role : "",
			       role ? ")" : "");
		}
	}
	print_folder(&check.inbox, "inbox");
	if (check.has_sent)
		print_folder(&check.sent, "sent");
	else if (check.box_count > 0)
		printf("sent: none found\n");
	if (check.cls == MT_CLASS_NONE) {
		printf("outcome: ok\n");
	} else {
		printf("outcome: failed\nclass: %s\nreason: %s\n", mt_class_name(check.cls),
		       check.reason);
		if (check.fingerprint[0] != '\0')
			printf("fingerprint: %s\n(pin it with --fingerprint %s if you trust this "
			       "certificate)\n",
			       check.fingerprint, check.fingerprint);
		if (check.response[0] != '\0')
			printf("server response: %s\n", check.response);
	}
	free(check.boxes);
	event_free(deadline);
	evdns_base_free(dns, 0);
	event_base_free(check.base);
	mt_tls_config_free(&tls);
	free(account);
	return mt_class_exit_code(check.cls);
}
