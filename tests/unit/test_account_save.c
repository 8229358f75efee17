/* The rules saving an SMTP and an IMAP account share (engine/account_save.c), one row per case:
 * when a stored secret may go where new settings point, the request rules both protocols apply
 * (host, pin, grant fields, plaintext), and the host policy's verdicts as replies. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/account_internal.h"
#include "engine/host_policy.h"
#include "lib/str.h"

#include <string.h>

static const unsigned char sealed[4] = {1, 2, 3, 4};
static const char pin_a[] = "sha256:" /* the same digest in two spellings */
                            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
static const char pin_a_upper_colons[] = "SHA256:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:"
                                         "01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF";
static const char pin_b[] =
    "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

static struct account_endpoint stored_endpoint(void)
{
	return (struct account_endpoint){
	    "smtp.a.example",        587,   "ann",  STORE_AUTH_PASSWORD,
	    STORE_SECURITY_STARTTLS, pin_a, sealed, sizeof(sealed)};
}

static void test_secret_reusable(void **state)
{
	(void)state;
	const struct account_endpoint stored = stored_endpoint();
	struct account_endpoint wanted = stored;
	wanted.sealed_secret = NULL;
	wanted.sealed_secret_len = 0;
	assert_true(account_secret_reusable(&stored, &wanted));
	wanted.tls_fingerprint = pin_a_upper_colons;
	assert_true(
	    account_secret_reusable(&stored, &wanted)); /* the same pin, spelled otherwise */

	static const char *const what[] = {"host",     "port", "username",    "auth",
	                                   "security", "pin",  "pin removed", "no stored secret"};
	for (size_t i = 0; i < sizeof(what) / sizeof(what[0]); i++) {
		struct account_endpoint s = stored_endpoint(), w = stored_endpoint();
		switch (i) {
		case 0:
			w.host = "smtp.evil.example";
			break;
		case 1:
			w.port = 25;
			break;
		case 2:
			w.username = "bob";
			break;
		case 3:
			w.auth = STORE_AUTH_XOAUTH2;
			break;
		case 4:
			w.security = STORE_SECURITY_NONE;
			break;
		case 5:
			w.tls_fingerprint = pin_b;
			break;
		case 6:
			w.tls_fingerprint = "";
			break;
		default:
			s.sealed_secret_len = 0;
			break;
		}
		if (account_secret_reusable(&s, &w))
			fail_msg("reused although the %s changed", what[i]);
	}
}

struct fixture {
	struct account_result result;
	struct account_save save;
	char buf[MT_ERROR_TEXT_MAX];
};

static void fresh(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	account_save_init(&f->save, NULL, NULL, "smtp", "org_1", "usr_1", &f->result);
}

static void test_merge_host(void **state)
{
	(void)state;
	struct fixture f;
	char host[64];
	fresh(&f);
	assert_null(account_merge_host(&f.save, "SMTP.Example.COM", host, sizeof(host), f.buf,
	                               sizeof(f.buf)));
	assert_string_equal(host, "smtp.example.com");
	fresh(&f);
	const char *why =
	    account_merge_host(&f.save, "smtp example", host, sizeof(host), f.buf, sizeof(f.buf));
	assert_non_null(why);
	assert_string_equal(f.result.code, "invalid_value");
	assert_string_equal(f.result.field, "host");
}

static void test_merge_pin(void **state)
{
	(void)state;
	static const struct {
		const char *fingerprint;
		enum store_security security;
		const char *code; /* NULL: accepted */
		const char *stored;
	} rows[] = {
	    {NULL, STORE_SECURITY_NONE, NULL, ""},
	    {"", STORE_SECURITY_TLS, NULL, ""},
	    {pin_a, STORE_SECURITY_STARTTLS, NULL, pin_a},
	    {pin_a, STORE_SECURITY_NONE, "invalid_combination", ""},
	    {"sha256:12", STORE_SECURITY_TLS, "invalid_value", ""},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct fixture f;
		char out[MT_TLS_FINGERPRINT_MAX] = "";
		fresh(&f);
		const char *why = account_merge_pin(&f.save, rows[i].fingerprint, rows[i].security,
		                                    out, sizeof(out), f.buf, sizeof(f.buf));
		if (rows[i].code == NULL) {
			assert_null(why);
		} else {
			assert_non_null(why);
			assert_string_equal(f.result.code, rows[i].code);
			assert_string_equal(f.result.field, "tls_fingerprint");
		}
		assert_string_equal(out, rows[i].stored);
	}
}

static void test_merge_grant_fields(void **state)
{
	(void)state;
	struct fixture f;
	char refresh[] = "1//refresh-token", client_secret[] = "client-secret";
	struct account_oauth_request oauth = {.refresh_token = refresh,
	                                      .client_secret = client_secret};
	fresh(&f);
	/* With xoauth2 they are the grant's. */
	assert_null(account_merge_grant_fields(&f.save, STORE_AUTH_XOAUTH2, &oauth));
	assert_string_equal(refresh, "1//refresh-token");
	/* Without, refused, and the request's secrets wiped. */
	assert_non_null(account_merge_grant_fields(&f.save, STORE_AUTH_PASSWORD, &oauth));
	assert_string_equal(f.result.code, "invalid_combination");
	assert_int_equal(refresh[0], '\0');
	assert_int_equal(client_secret[0], '\0');
	/* No grant field at all: nothing to refuse. */
	struct account_oauth_request none = {0};
	fresh(&f);
	assert_null(account_merge_grant_fields(&f.save, STORE_AUTH_PASSWORD, &none));
}

static void test_host_verdicts(void **state)
{
	(void)state;
	static const struct {
		enum host_verdict verdict;
		enum account_verdict expected;
		const char *code;
		enum mt_failure_class cls;
	} rows[] = {
	    {HOST_ALLOWED, ACCOUNT_OK, NULL, MT_CLASS_NONE},
	    {HOST_PRIVATE, ACCOUNT_INVALID, "host_private", MT_CLASS_NONE},
	    {HOST_INVALID, ACCOUNT_INVALID, "invalid_value", MT_CLASS_NONE},
	    {HOST_UNRESOLVABLE, ACCOUNT_CHECK_FAILED, "host_unresolvable", MT_CLASS_CONN},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct account_result r;
		memset(&r, 0, sizeof(r));
		assert_int_equal(account_host_verdict("smtp", rows[i].verdict, "why", &r),
		                 rows[i].expected);
		if (rows[i].code != NULL) {
			assert_string_equal(r.code, rows[i].code);
			assert_string_equal(r.field, "host");
			assert_string_equal(r.reason, "why");
		} else {
			assert_null(r.code);
		}
		assert_int_equal(r.cls, rows[i].cls);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_secret_reusable), cmocka_unit_test(test_merge_host),
	    cmocka_unit_test(test_merge_pin),       cmocka_unit_test(test_merge_grant_fields),
	    cmocka_unit_test(test_host_verdicts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
