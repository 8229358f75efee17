#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "config/config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char error[MT_ERROR_TEXT_MAX];

static int load(struct mt_config *config, const char *text)
{
	error[0] = '\0';
	return mt_config_load_text(config, "t.conf", text, strlen(text), error, sizeof(error));
}

static void expect_error(const char *text, const char *expected)
{
	struct mt_config *config = mt_config_new();
	assert_int_equal(load(config, text), -1);
	assert_string_equal(error, expected);
	mt_config_free(&config);
	assert_null(config);
}

static void test_defaults(void **state)
{
	(void)state;
	struct mt_config *config = mt_config_new();
	assert_string_equal(mt_config_str(config, "http"), "127.0.0.1:8025");
	assert_null(mt_config_str(config, "data"));
	assert_null(mt_config_str(config, "no_such_key"));
	assert_int_equal(mt_config_int(config, "relay_campaign_max"), 50);
	assert_int_equal(mt_config_int(config, "retry_expiry"), 24 * 3600);
	assert_int_equal(mt_config_int(config, "max_message_bytes"), 26214400);
	assert_int_equal(mt_config_int(config, "imap_max_connections"), 2);
	assert_int_equal(mt_config_int(config, "record_retention_days"), 365);
	assert_int_equal(mt_config_int(config, "outbox_retention_days"), 30);
	assert_int_equal(mt_config_int(config, "smtp_sessions_per_account"), 2);
	assert_int_equal(mt_config_int(config, "smtp_max_inflight"), 100);
	assert_int_equal(mt_config_int(config, "http_max_connections"),
	                 MT_HTTP_CONNECTIONS_DEFAULT);
	assert_int_equal(mt_config_int(config, "http_max_connections_per_ip"),
	                 MT_HTTP_PER_IP_DEFAULT);
	assert_int_equal(mt_config_int(config, "http_header_timeout"), MT_HTTP_HEADER_TIMEOUT_S);
	assert_int_equal(mt_config_int(config, "http_request_timeout"), MT_HTTP_REQUEST_TIMEOUT_S);
	assert_int_equal(mt_config_int(config, "http_idle_timeout"), MT_HTTP_IDLE_TIMEOUT_S);
	assert_false(mt_config_bool(config, "allow_plaintext_auth"));
	assert_string_equal(mt_config_str(config, "log_level"), "info");
	assert_non_null(mt_config_cidrs(config, "allow_private_hosts"));
	assert_int_equal(mt_config_cidrs(config, "allow_private_hosts")->count, 0);
	assert_false(mt_config_is_set(config, "http"));
	/* every table default passes its own type check */
	for (size_t i = 0; i < mt_config_key_count(); i++) {
		const char *key = mt_config_key_name(i);
		const char *def = mt_config_str(config, key);
		if (def == NULL)
			continue;
		struct mt_config *probe = mt_config_new();
		assert_int_equal(mt_config_set(probe, key, def, "default", error, sizeof(error)),
		                 0);
		assert_int_equal(mt_config_int(probe, key), mt_config_int(config, key));
		mt_config_free(&probe);
	}
	assert_null(mt_config_key_name(mt_config_key_count()));
	mt_config_free(&config);
}

static void test_file_syntax(void **state)
{
	(void)state;
	struct mt_config *config = mt_config_new();
	assert_int_equal(load(config, "# comment\n"
	                              "\n"
	                              "   data   =   /var/lib/mt   \n"
	                              "db = \"my db.sqlite\"  # trailing\n"
	                              "public_url = https://crm.example.com/x#frag\n"
	                              "\t# indented comment\r\n"
	                              "dropbox_domain = bcc.example.com # why\r\n"
	                              "log_level = WARN"),
	                 0);
	assert_string_equal(mt_config_str(config, "data"), "/var/lib/mt");
	assert_string_equal(mt_config_str(config, "db"), "my db.sqlite");
	assert_string_equal(mt_config_str(config, "public_url"), "https://crm.example.com/x#frag");
	assert_string_equal(mt_config_str(config, "dropbox_domain"), "bcc.example.com");
	assert_string_equal(mt_config_str(config, "log_level"), "warn");
	assert_string_equal(mt_config_origin(config, "db"), "t.conf:4");
	assert_true(mt_config_is_set(config, "db"));
	mt_config_free(&config);
}

static void test_file_errors(void **state)
{
	(void)state;
	expect_error("data = /x\nnosuch = 1\n", "t.conf:2: unknown key \"nosuch\"");
	expect_error("\n\nrelay_campaign_max = lots\n",
	             "t.conf:3: relay_campaign_max: expected a whole number: \"lots\"");
	expect_error("relay_campaign_max = -1\n",
	             "t.conf:1: relay_campaign_max: expected a whole number: \"-1\"");
	expect_error("allow_plaintext_auth = maybe\n",
	             "t.conf:1: allow_plaintext_auth: expected yes or no: \"maybe\"");
	expect_error("# c\ndata /x\n", "t.conf:2: missing '=' (expected key = value)");
	expect_error("data = /x\n\ndata = /y\n",
	             "t.conf:3: duplicate key \"data\" (first set on line 1)");
	expect_error("data =\n", "t.conf:1: data: empty value");
	expect_error("= x\n", "t.conf:1: missing key before '='");
	expect_error("db = \"open\n", "t.conf:1: unterminated quoted value");
	expect_error("db = \"a\" b\n", "t.conf:1: text after the closing quote");
	expect_error("db = a\rb\n", "t.conf:1: stray carriage return in the line");
	expect_error("Data = /x\n", "t.conf:1: unknown key \"Data\"");
	expect_error("imap_max_connections = 0\n",
	             "t.conf:1: imap_max_connections: 0 is out of range (1 to 16)");
	char *long_line = malloc(MT_CONFIG_LINE_MAX + 32);
	memset(long_line, 'x', MT_CONFIG_LINE_MAX + 1);
	memcpy(long_line, "db = ", 5);
	strcpy(long_line + MT_CONFIG_LINE_MAX + 1, "\n");
	char text[MT_CONFIG_LINE_MAX + 64];
	snprintf(text, sizeof(text), "data = /x\n%s", long_line);
	expect_error(text, "t.conf:2: line too long (at most 4096 bytes)");
	free(long_line);
	struct mt_config *config = mt_config_new();
	assert_int_equal(
	    mt_config_load_text(config, "t.conf", "db = a\0b\n", 9, error, sizeof(error)), -1);
	assert_string_equal(error, "t.conf:1: NUL byte in the line");
	mt_config_free(&config);
}

static void test_all_or_nothing(void **state)
{
	(void)state;
	struct mt_config *config = mt_config_new();
	assert_int_equal(load(config, "db = one\n"), 0);
	assert_int_equal(load(config, "db = two\ndata = /d\nbogus = 1\n"), -1);
	assert_string_equal(mt_config_str(config, "db"), "one");
	assert_null(mt_config_str(config, "data"));
	mt_config_free(&config);
}

static void test_types(void **state)
{
	(void)state;
	struct mt_config *config = mt_config_new();
	assert_int_equal(load(config, "retry_expiry = 90m\n"
	                              "max_message_bytes = 512K\n"
	                              "allow_plaintext_auth = On\n"
	                              "relay_user_limits = 500/hour, 2000/day\n"
	                              "relay = smtps://apikey@smtp.sendgrid.net:465\n"
	                              "relay_from = Bounces@Example.com\n"
	                              "dropbox = [::1]:2525\n"
	                              "http = 0.0.0.0:0\n"),
	                 0);
	assert_int_equal(mt_config_int(config, "retry_expiry"), 5400);
	assert_int_equal(mt_config_int(config, "max_message_bytes"), 512 * 1024);
	assert_true(mt_config_bool(config, "allow_plaintext_auth"));
	assert_string_equal(mt_config_str(config, "allow_plaintext_auth"), "yes");
	assert_string_equal(mt_config_str(config, "relay_from"), "bounces@example.com");
	struct mt_config_limit limits[MT_SEND_LIMITS_MAX];
	assert_int_equal(mt_config_limits(config, "relay_user_limits", limits), 2);
	assert_int_equal(limits[0].limit, 500);
	assert_int_equal(limits[0].window_s, 3600);
	assert_int_equal(limits[1].limit, 2000);
	assert_int_equal(limits[1].window_s, 86400);

	struct mt_relay_url url;
	const char *reason;
	assert_int_equal(mt_relay_url_parse(mt_config_str(config, "relay"), &url, &reason), 0);
	assert_true(url.implicit_tls);
	assert_string_equal(url.user, "apikey");
	assert_string_equal(url.host, "smtp.sendgrid.net");
	assert_int_equal(url.port, 465);
	assert_int_equal(mt_relay_url_parse("smtp://me@example.com@relay.x.com:587", &url, &reason),
	                 0);
	assert_string_equal(url.user, "me@example.com");
	assert_false(url.implicit_tls);
	assert_int_equal(mt_relay_url_parse("smtp://me:secret@relay.x.com:587", &url, &reason), -1);
	assert_null(strstr(reason, "secret"));

	struct {
		const char *key, *value;
		int ok;
		int64_t num;
	} cases[] = {
	    {"retry_expiry", "30", 0, 0}, /* below the minute minimum */
	    {"retry_expiry", "3600", 1, 3600},
	    {"retry_expiry", "2d", 1, 2 * 86400},
	    {"retry_expiry", "1w", 0, 0},
	    {"retry_expiry", "h", 0, 0},
	    {"max_message_bytes", "25MiB", 1, 26214400},
	    {"max_message_bytes", "10M", 1, 10485760},
	    {"max_message_bytes", "2048KiB", 1, 2097152},
	    {"max_message_bytes", "1G", 0, 0}, /* over the cap */
	    {"max_message_bytes", "12 MB", 0, 0},
	    {"allow_plaintext_auth", "1", 1, 1},
	    {"allow_plaintext_auth", "false", 1, 0},
	    {"allow_plaintext_auth", "OFF", 1, 0},
	    {"relay_user_limits", "500/hour", 1, 0},
	    {"relay_user_limits", "10/minute,500/hour,2000/day", 1, 0},
	    {"relay_user_limits", "10/minute,20/minute", 0, 0},
	    {"relay_user_limits", "10/week", 0, 0},
	    {"relay_user_limits", "0/hour", 0, 0},
	    {"relay_user_limits", "", 0, 0},
	    {"throttle_pause", "2s", 1, 2},
	    {"throttle_pause", "1h", 1, 3600},
	    {"throttle_pause", "2h", 0, 0}, /* over the longest pause (MT_GOVERNOR_PAUSE_MAX_S) */
	    {"throttle_pause", "0", 0, 0},
	    {"relay", "smtp://relay.example.com:25", 1, 0},
	    {"relay", "smtp://u@relay.example.com", 0, 0},
	    {"relay", "http://u@relay.example.com:25", 0, 0},
	    {"relay", "smtp://u:p@relay.example.com:25", 0, 0},
	    {"public_url", "http://localhost:8025", 1, 0},
	    {"public_url", "https://[::1]/", 1, 0},
	    {"public_url", "ftp://x.com", 0, 0},
	    {"public_url", "https://", 0, 0},
	    {"public_url", "https://u@x.com/", 0, 0},
	    {"http", "localhost:8025", 1, 8025},
	    {"http", "127.0.0.1", 0, 0},
	    {"http", "127.0.0.1:65536", 0, 0},
	    {"http", "[::1:8025", 0, 0},
	    {"http", "[zz]:80", 0, 0},
	    {"relay_from", "nobody", 0, 0},
	    {"relay_from", "a@b", 0, 0},
	    {"log_level", "trace", 0, 0},
	    {"log_level", "Debug", 1, 0},
	    {"smtp_max_inflight", "1000", 1, 1000},
	    {"smtp_max_inflight", "1001", 0, 0},
	    {"relay_campaign_max", "99999999999999999999", 0, 0},
	    {"relay_campaign_max", "+5", 0, 0},
	    {"allow_private_hosts", "127.0.0.0/8 ::1", 1, 0},
	    {"allow_private_hosts", "127.0.0.0/33", 0, 0},
	    {"no_auth_hosts", "smtp.example.com, 10.0.0.0/8", 1, 0},
	    {"no_auth_hosts", "bad host!", 0, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mt_config *probe = mt_config_new();
		int ret =
		    mt_config_set(probe, cases[i].key, cases[i].value, "--x", error, sizeof(error));
		if (ret != (cases[i].ok ? 0 : -1))
			fail_msg("%s = %s: got %d (%s)", cases[i].key, cases[i].value, ret, error);
		if (ret == 0 && cases[i].num != 0)
			assert_int_equal(mt_config_int(probe, cases[i].key), cases[i].num);
		if (ret < 0)
			assert_true(strncmp(error, "--x: ", 5) == 0);
		mt_config_free(&probe);
	}
	assert_int_equal(mt_config_set(config, "http", "a\nb", "--http", error, sizeof(error)), -1);
	assert_string_equal(error, "--http: http: line break in the value");
	mt_config_free(&config);
}

static void test_precedence(void **state)
{
	(void)state;
	struct mt_config *config = mt_config_new();
	assert_int_equal(load(config, "db = file.db\ndata = /file\nhttp = 127.0.0.1:1\n"), 0);
	char *env[] = {"PATH=/bin",
	               "MAILTRAIL_DATA=/env",
	               "MAILTRAIL_HTTP=127.0.0.1:2",
	               "MAILTRAIL_SECRET_KEY_FILE=/env/secret.key",
	               "MAILTRAIL_LOG_LEVEL=debug",
	               NULL};
	assert_int_equal(mt_config_load_env(config, env, error, sizeof(error)), 0);
	assert_int_equal(
	    mt_config_set(config, "http", "127.0.0.1:3", "--http", error, sizeof(error)), 0);
	assert_string_equal(mt_config_str(config, "db"), "file.db");
	assert_string_equal(mt_config_str(config, "data"), "/env");
	assert_string_equal(mt_config_str(config, "http"), "127.0.0.1:3");
	assert_string_equal(mt_config_str(config, "secret_key_file"), "/env/secret.key");
	assert_string_equal(mt_config_str(config, "log_level"), "debug");
	assert_string_equal(mt_config_origin(config, "db"), "t.conf:1");
	assert_string_equal(mt_config_origin(config, "data"), "MAILTRAIL_DATA");
	assert_string_equal(mt_config_origin(config, "http"), "--http");

	char *bad[] = {"MAILTRAIL_DB=x", "MAILTRAIL_FOO=1", NULL};
	assert_int_equal(mt_config_load_env(config, bad, error, sizeof(error)), -1);
	assert_string_equal(error, "MAILTRAIL_FOO: unknown setting");
	assert_string_equal(mt_config_str(config, "db"), "file.db"); /* nothing applied */
	char *lower[] = {"MAILTRAIL_db=x", NULL};
	assert_int_equal(mt_config_load_env(config, lower, error, sizeof(error)), -1);
	assert_string_equal(error, "MAILTRAIL_db: unknown setting");
	char *badval[] = {"MAILTRAIL_RETRY_EXPIRY=soon", NULL};
	assert_int_equal(mt_config_load_env(config, badval, error, sizeof(error)), -1);
	assert_string_equal(error,
	                    "MAILTRAIL_RETRY_EXPIRY: retry_expiry: expected a duration like 30s, "
	                    "15m, 24h, 7d: \"soon\"");
	assert_int_equal(mt_config_set(config, "nope", "1", "--nope", error, sizeof(error)), -1);
	assert_string_equal(error, "--nope: unknown setting \"nope\"");
	mt_config_free(&config);
}

struct warned {
	char text[512];
};

static void collect(const char *key, const char *origin, void *ctx)
{
	struct warned *w = ctx;
	size_t len = strlen(w->text);
	snprintf(w->text + len, sizeof(w->text) - len, "%s@%s;", key, origin);
}

static void test_unbuilt(void **state)
{
	(void)state;
	struct mt_config *config = mt_config_new();
	assert_int_equal(load(config, "data = /d\ndropbox = 127.0.0.1:2525\n"
	                              "dropbox_cert = /c.pem\n"),
	                 0);
	assert_int_equal(mt_config_set(config, "dropbox_domain", "in.example.com",
	                               "--dropbox_domain", error, sizeof(error)),
	                 0);
	struct warned w = {""};
	mt_config_each_unbuilt(config, collect, &w);
	assert_string_equal(
	    w.text, "dropbox@t.conf:2;dropbox_domain@--dropbox_domain;dropbox_cert@t.conf:3;");
	mt_config_mark_built("dropbox", true);
	mt_config_mark_built("no_such_key", true);
	w.text[0] = '\0';
	mt_config_each_unbuilt(config, collect, &w);
	assert_string_equal(w.text, "dropbox_domain@--dropbox_domain;dropbox_cert@t.conf:3;");
	mt_config_mark_built("dropbox", false);
	mt_config_free(&config);
}

static void test_hosts(void **state)
{
	(void)state;
	struct mt_config *config = mt_config_new();
	assert_int_equal(load(config, "no_auth_hosts = Relay.Example.com, 10.1.0.0/16 ::1\n"
	                              "allow_private_hosts = 127.0.0.0/8\n"),
	                 0);
	struct sockaddr_in sin = {.sin_family = AF_INET};
	inet_pton(AF_INET, "10.1.2.3", &sin.sin_addr);
	assert_true(mt_config_host_listed(config, "no_auth_hosts", "relay.example.COM.", NULL));
	assert_true(mt_config_host_listed(config, "no_auth_hosts", "other.example.com",
	                                  (struct sockaddr *)&sin));
	assert_true(mt_config_host_listed(config, "no_auth_hosts", "10.1.9.9", NULL));
	assert_true(mt_config_host_listed(config, "no_auth_hosts", "::1", NULL));
	assert_false(mt_config_host_listed(config, "no_auth_hosts", "example.com", NULL));
	assert_false(
	    mt_config_host_listed(config, "no_auth_hosts", "relay.example.com.evil", NULL));
	inet_pton(AF_INET, "10.2.0.1", &sin.sin_addr);
	assert_false(mt_config_host_listed(config, "no_auth_hosts", "x.example.com",
	                                   (struct sockaddr *)&sin));
	assert_int_equal(mt_config_cidrs(config, "no_auth_hosts")->count, 2);
	const struct mt_cidr_list *allow = mt_config_cidrs(config, "allow_private_hosts");
	assert_int_equal(allow->count, 1);
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	assert_true(mt_cidr_list_contains(allow, (struct sockaddr *)&sin));
	mt_config_free(&config);
}

static void test_load_file(void **state)
{
	(void)state;
	char path[] = "/tmp/mt-config-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char text[] = "data = /d\nlog_level = loud\n";
	assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
	close(fd);
	struct mt_config *config = mt_config_new();
	assert_int_equal(mt_config_load_file(config, path, error, sizeof(error)), -1);
	char expected[256];
	snprintf(expected, sizeof(expected),
	         "%s:2: log_level: expected debug, info, warn or error: \"loud\"", path);
	assert_string_equal(error, expected);
	unlink(path);
	assert_int_equal(mt_config_load_file(config, path, error, sizeof(error)), -1);
	assert_non_null(strstr(error, "No such file"));
	mt_config_free(&config);
}

/* docs/configuration.md lists every key with a "built" column: it must say what the table says,
 * so that an operator is never told a key works when it is ignored (or the other way round). */
static void test_docs_match_table(void **state)
{
	(void)state;
	FILE *f = fopen(MT_TEST_DATA_DIR "/../../docs/configuration.md", "r");
	assert_non_null(f);
	bool documented[256] = {false};
	assert_true(mt_config_key_count() <= 256);
	char line[2048];
	while (fgets(line, sizeof(line), f) != NULL) {
		if (line[0] != '|' || line[1] != ' ' || line[2] != '`')
			continue;
		/* the built column is the last one */
		char *end = strrchr(line, '|');
		assert_non_null(end);
		*end = '\0';
		char *last = strrchr(line, '|');
		assert_non_null(last);
		bool says_built = strstr(last, "yes") != NULL;
		bool says_unbuilt = strstr(last, "no") != NULL;
		assert_true(says_built != says_unbuilt);
		char *first_end = strchr(line + 1, '|');
		assert_non_null(first_end);
		*first_end = '\0';
		/* every `name` in the first column, `prefix_*` for a family */
		for (char *p = strchr(line, '`'); p != NULL; p = strchr(p, '`')) {
			char *q = strchr(p + 1, '`');
			assert_non_null(q);
			*q = '\0';
			const char *name = p + 1;
			size_t len = strlen(name);
			bool family = len > 0 && name[len - 1] == '*';
			size_t matched = 0;
			for (size_t i = 0; i < mt_config_key_count(); i++) {
				const char *key = mt_config_key_name(i);
				if (family ? strncmp(key, name, len - 1) == 0
				           : strcmp(key, name) == 0) {
					matched++;
					documented[i] = true;
					if (mt_config_key_built(key) != says_built)
						fail_msg("docs/configuration.md says %s is %sbuilt",
						         key, says_built ? "" : "not ");
				}
			}
			if (matched == 0 && strncmp(name, "MAILTRAIL_", 10) != 0)
				fail_msg("docs/configuration.md names an unknown key %s", name);
			p = q + 1;
		}
	}
	fclose(f);
	for (size_t i = 0; i < mt_config_key_count(); i++)
		if (!documented[i])
			fail_msg("%s is missing from docs/configuration.md", mt_config_key_name(i));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),    cmocka_unit_test(test_file_syntax),
	    cmocka_unit_test(test_file_errors), cmocka_unit_test(test_all_or_nothing),
	    cmocka_unit_test(test_types),       cmocka_unit_test(test_precedence),
	    cmocka_unit_test(test_unbuilt),     cmocka_unit_test(test_hosts),
	    cmocka_unit_test(test_load_file),   cmocka_unit_test(test_docs_match_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
