/* `mailtrail smtp-check`: a live check of an SMTP account, as a recruiter's settings page would
 * run it — connect, secure, authenticate and optionally send one test mail — printing the masked
 * transcript and the outcome with its class. Exit codes: DESIGN.md §2. */
#include "cli/cli.h"

#include "lib/failure.h"
#include "lib/log.h"
#include "lib/secret.h"
#include "lib/str.h"
#include "net/conn.h"
#include "net/security.h"
#include "net/tls.h"
#include "engine/account.h"
#include "engine/smtp_probe.h"
#include "smtp/client.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXIT_USAGE 2
/* The whole check, as in the settings API: a user waits for it. */
#define CHECK_DEADLINE_S 30

struct check {
	struct event_base *base;
	bool finished;
	struct smtp_probe_result result;
};

static void usage(FILE *out)
{
	fputs("usage: mailtrail smtp-check --host H --port P --security starttls|tls|none\n"
	      "         [--auth password|none|xoauth2] [--user U --password-file F]\n"
	      "         [--from A] [--to A] [--fingerprint PIN] [--ca-file F] [--bind ADDR]\n"
	      "Connects, secures and authenticates (and with --from/--to sends one test mail),\n"
	      "printing the transcript with secrets masked, then the outcome and its class.\n"
	      "Exit: 0 ok, 2 usage, 10 conn, 11 tls, 12 auth, 13 proto, 14 resp, 15 throttle,\n"
	      "16 quota, 17 internal. --fingerprint takes sha256:HEX or spki-sha256:HEX.\n",
	      out);
}

static void on_transcript(void *ctx, char direction, const char *line, size_t len)
{
	(void)ctx;
	printf("%c: %.*s\n", direction, (int)len, line);
}

static void on_done(void *ctx, const struct smtp_probe_result *result)
{
	struct check *check = ctx;
	check->finished = true;
	check->result = *result;
	event_base_loopbreak(check->base);
}

static char *test_mail(const char *from, const char *to, size_t *len_r)
{
	char date[MT_DATE_TEXT_MAX], id[64];
	time_t now = time(NULL);
	mt_date_format((int64_t)now, "+0000", date);
	const char *at = strrchr(from, '@');
	snprintf(id, sizeof(id), "%lld.%d", (long long)now, (int)(mt_now_ms() % 100000));
	size_t size = 1024 + strlen(from) + strlen(to);
	char *mail = malloc(size);
	if (mail == NULL)
		return NULL;
	int n = snprintf(mail, size,
	                 "From: <%s>\r\nTo: <%s>\r\nSubject: mailtrail SMTP check\r\n"
	                 "Date: %s\r\nMessage-ID: <check.%s@%s>\r\nMIME-Version: 1.0\r\n"
	                 "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
	                 "This message confirms that mailtrail can send through this account.\r\n",
	                 from, to, date, id, at != NULL ? at + 1 : "mailtrail.invalid");
	*len_r = (size_t)n;
	return mail;
}

int mt_cli_smtp_check(int argc, char **argv)
{
	static const struct option options[] = {
	    {"host", required_argument, NULL, 'h'},
	    {"port", required_argument, NULL, 'p'},
	    {"security", required_argument, NULL, 's'},
	    {"auth", required_argument, NULL, 'a'},
	    {"user", required_argument, NULL, 'u'},
	    {"password-file", required_argument, NULL, 'P'},
	    {"from", required_argument, NULL, 'f'},
	    {"to", required_argument, NULL, 't'},
	    {"fingerprint", required_argument, NULL, 'F'},
	    {"ca-file", required_argument, NULL, 'c'},
	    {"bind", required_argument, NULL, 'b'},
	    {"help", no_argument, NULL, 'H'},
	    {NULL, 0, NULL, 0},
	};
	const char *host = NULL, *port_text = NULL, *security_text = NULL, *auth_text = NULL;
	const char *user = NULL, *password_file = NULL, *from = NULL, *to = NULL;
	const char *fingerprint = NULL, *ca_file = NULL, *bind_address = NULL;
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
		case 'f':
			from = optarg;
			break;
		case 't':
			to = optarg;
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
		case 'H':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	/* The account as the flags describe it; its client parameters come from the engine, as
	 * every connection to a stored account's server does. */
	struct store_smtp_account account;
	memset(&account, 0, sizeof(account));
	uint16_t port = 0;
	const char *error = NULL;
	if (optind != argc)
		error = "unexpected argument";
	else if (host == NULL || port_text == NULL || security_text == NULL)
		error = "--host, --port and --security are required";
	else if (strlen(host) >= sizeof(account.host))
		error = "--host is too long";
	else if (mt_parse_port(port_text, &port) < 0)
		error = "--port must be 1..65535";
	else if (store_security_parse(security_text, &account.security) < 0)
		error = "--security must be starttls, tls or none";
	else if (auth_text != NULL && store_auth_parse(auth_text, &account.auth) < 0)
		error = "--auth must be password, none or xoauth2";
	else if (auth_text == NULL)
		account.auth = user != NULL ? STORE_AUTH_PASSWORD : STORE_AUTH_NONE;
	if (error == NULL && account.auth != STORE_AUTH_NONE &&
	    (user == NULL || password_file == NULL))
		error = "--user and --password-file are required with authentication";
	if (error == NULL && user != NULL && strlen(user) >= sizeof(account.username))
		error = "--user is too long";
	if (error == NULL && (from == NULL) != (to == NULL))
		error = "--from and --to go together";
	if (error == NULL && fingerprint != NULL &&
	    strlen(fingerprint) >= sizeof(account.tls_fingerprint))
		error = "--fingerprint is too long";
	struct smtp_client_params params;
	struct mt_tls_pin pin;
	struct mt_secret *unused = NULL;
	if (error == NULL) {
		mt_strlcpy(account.host, host, sizeof(account.host));
		account.port = port;
		mt_strlcpy(account.username, user != NULL ? user : "", sizeof(account.username));
		mt_strlcpy(account.tls_fingerprint, fingerprint != NULL ? fingerprint : "",
		           sizeof(account.tls_fingerprint));
		/* the pin's syntax is checked here, before any connection (sets error) */
		account_smtp_client(&account, NULL, NULL, NULL, &params, &pin, &unused, &error);
	}
	if (error != NULL) {
		fprintf(stderr, "mailtrail smtp-check: %s\n", error);
		usage(stderr);
		return EXIT_USAGE;
	}

	struct mt_secret *secret = NULL;
	if (params.auth != SMTP_AUTH_NONE) {
		secret = mt_secret_from_file(password_file, &error);
		if (secret == NULL) {
			fprintf(stderr, "mailtrail smtp-check: %s: %s\n", password_file, error);
			return EXIT_USAGE;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	struct mt_tls_config *tls = mt_tls_config_new(ca_file, &error);
	if (tls == NULL) {
		fprintf(stderr, "mailtrail smtp-check: %s: %s\n", ca_file ? ca_file : "TLS", error);
		mt_secret_free(&secret);
		return EXIT_USAGE;
	}
	struct check check = {0};
	check.base = event_base_new();
	struct evdns_base *dns = mt_conn_dns_new(check.base);

	params.tls = tls;
	params.secret = secret;
	/* the operator's own check: any address, loopback and private ones too */
	params.public_only = false;
	params.bind_address = bind_address;
	params.connect_timeout_ms = MT_LIVE_CHECK_STEP_MS;
	params.greeting_timeout_ms = MT_LIVE_CHECK_STEP_MS;

	struct smtp_probe_params probe_params = {.client = params,
	                                         .deadline_ms = CHECK_DEADLINE_S * 1000};
	size_t mail_len = 0;
	char *mail = NULL;
	if (from != NULL) {
		mail = test_mail(from, to, &mail_len);
		probe_params.mail_from = from;
		probe_params.rcpt_to = to;
		probe_params.data = mail;
		probe_params.data_len = mail_len;
	}
	printf("* checking %s:%s (%s, auth %s)\n", host, port_text, security_text,
	       store_auth_name(account.auth));
	struct smtp_probe *probe = smtp_probe_start(check.base, dns, &probe_params, on_done,
	                                            on_transcript, &check, &error);
	mt_secret_free(&secret);
	if (probe == NULL) {
		check.result.cls = MT_CLASS_INTERNAL;
		mt_strlcpy(check.result.reason, error, sizeof(check.result.reason));
	} else {
		event_base_dispatch(check.base);
	}

	const struct smtp_probe_result *r = &check.result;
	if (r->cls == MT_CLASS_NONE) {
		printf("outcome: ok\n");
		if (from != NULL)
			printf("test mail: accepted for %s\n", to);
	} else {
		printf("outcome: failed\nclass: %s\nreason: %s\n", mt_class_name(r->cls),
		       r->reason);
		if (r->fingerprint[0] != '\0')
			printf("fingerprint: %s\n(pin it with --fingerprint %s if you trust this "
			       "certificate)\n",
			       r->fingerprint, r->fingerprint);
		if (r->reply[0] != '\0')
			printf("server reply: %s\n", r->reply);
	}
	free(mail);
	evdns_base_free(dns, 0);
	event_base_free(check.base);
	mt_tls_config_free(&tls);
	return mt_class_exit_code(r->cls);
}
