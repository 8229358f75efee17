#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/api_keys.h"
#include "http/api.h"

#include <stdio.h>
#include <string.h>

enum { R = API_KEY_READ, S = API_KEY_SEND, A = API_KEY_ADMIN };

struct row {
	unsigned scopes;
	const char *operation;
	bool names_user;
	enum api_key_verdict want;
	const char *reason_has; /* NULL: no reason expected */
};

/* clang-format off: one row per line of the table */
static const struct row rows[] = {
    /* read: reading, for a user */
    {R, "profiles.list", true, API_KEY_ALLOWED, NULL},
    {R, "profiles.activities", true, API_KEY_ALLOWED, NULL},
    {R, "messages.get", true, API_KEY_ALLOWED, NULL},
    {R, "messages.list", true, API_KEY_ALLOWED, NULL},
    {R, "activities.feed", true, API_KEY_ALLOWED, NULL},
    {R, "users.list", false, API_KEY_ALLOWED, NULL},
    {R, "users.get", false, API_KEY_ALLOWED, NULL},
    {R, "org.get", false, API_KEY_ALLOWED, NULL},
    {R, "messages.send", true, API_KEY_DENIED, "send scope"},
    {R, "messages.cancel", true, API_KEY_DENIED, "send scope"},
    {R, "campaigns.create", true, API_KEY_DENIED, "send scope"},
    {R, "profiles.create", true, API_KEY_DENIED, "admin scope"},
    {R, "users.tokens", false, API_KEY_DENIED, "admin scope"},
    {R, "api_keys.list", false, API_KEY_DENIED, "admin scope"},
    {R, "oauth.start", true, API_KEY_DENIED, "admin scope"},
    /* a user route with nobody named: refused for that, once the scope allows it */
    {R, "profiles.list", false, API_KEY_NEEDS_USER, "X-Mailtrail-User"},
    {S, "messages.send", false, API_KEY_NEEDS_USER, "X-Mailtrail-User"},
    {R, "messages.send", false, API_KEY_DENIED, "send scope"},
    /* send: read and sending */
    {S, "messages.send", true, API_KEY_ALLOWED, NULL},
    {S, "messages.cancel", true, API_KEY_ALLOWED, NULL},
    {S, "campaigns.create", true, API_KEY_ALLOWED, NULL},
    {S, "campaigns.pause", true, API_KEY_ALLOWED, NULL},
    {S, "campaigns.get", true, API_KEY_ALLOWED, NULL},
    {S, "profiles.get", true, API_KEY_ALLOWED, NULL},
    {S, "profiles.update", true, API_KEY_DENIED, "admin scope"},
    {S, "smtp.put", true, API_KEY_DENIED, "admin scope"},
    {S, "tokens.create", true, API_KEY_DENIED, "admin scope"},
    {S, "api_keys.create", false, API_KEY_DENIED, "admin scope"},
    {S, "users.create", false, API_KEY_DENIED, "admin scope"},
    /* admin: everything; the org-level routes need nobody named */
    {A, "users.create", false, API_KEY_ALLOWED, NULL},
    {A, "users.tokens_revoke", false, API_KEY_ALLOWED, NULL},
    {A, "api_keys.revoke", false, API_KEY_ALLOWED, NULL},
    {A, "org.put", false, API_KEY_ALLOWED, NULL},
    {A, "users.create", true, API_KEY_ALLOWED, NULL},
    {A, "messages.send", true, API_KEY_ALLOWED, NULL},
    {A, "profiles.delete", true, API_KEY_ALLOWED, NULL},
    {A, "imap.sync", true, API_KEY_ALLOWED, NULL},
    {A, "profiles.delete", false, API_KEY_NEEDS_USER, "X-Mailtrail-User"},
    /* combinations are the union */
    {R | S, "messages.send", true, API_KEY_ALLOWED, NULL},
    {R | A, "campaigns.cancel", true, API_KEY_ALLOWED, NULL},
    /* no scope, unknown bits, unknown or public operations: refused */
    {0, "profiles.list", true, API_KEY_DENIED, "read scope"},
    {1u << 7, "profiles.list", true, API_KEY_DENIED, "read scope"},
    {A, "no.such", true, API_KEY_DENIED, "may not"},
    {A, "healthz", false, API_KEY_DENIED, "may not"},
    {A, "unsubscribe.post", false, API_KEY_DENIED, "may not"},
    {A, NULL, true, API_KEY_DENIED, "may not"},
};
/* clang-format on */

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *r = &rows[i];
		const char *reason = "unset";
		enum api_key_verdict got =
		    api_key_permits(r->scopes, r->operation, r->names_user, &reason);
		if (got != r->want) {
			fprintf(stderr, "row %zu (%s, scopes %u, user %d): verdict %d, want %d\n",
			        i, r->operation ? r->operation : "NULL", r->scopes, r->names_user,
			        got, r->want);
			fail();
		}
		if (r->reason_has == NULL) {
			assert_null(reason);
		} else {
			assert_non_null(reason);
			if (strstr(reason, r->reason_has) == NULL) {
				fprintf(stderr, "row %zu: reason \"%s\" lacks \"%s\"\n", i, reason,
				        r->reason_has);
				fail();
			}
		}
		/* the reason is optional */
		assert_int_equal(api_key_permits(r->scopes, r->operation, r->names_user, NULL),
		                 r->want);
	}
}

/* Every authenticated route is in the engine's table: a route added without a decision would
 * be refused to every key, and this says so before a user finds out. */
static void test_every_route_known(void **state)
{
	(void)state;
	size_t count;
	const struct http_route *routes = api_routes(&count);
	size_t authenticated = 0;
	for (size_t i = 0; i < count; i++) {
		if (routes[i].auth == HTTP_PUBLIC) {
			assert_false(api_key_operation_known(routes[i].name));
			continue;
		}
		authenticated++;
		if (!api_key_operation_known(routes[i].name)) {
			fprintf(stderr, "route %s %s (%s) has no API key rule\n", routes[i].method,
			        routes[i].pattern, routes[i].name);
			fail();
		}
		/* reading an admin route needs no user; every user route does */
		const char *reason;
		enum api_key_verdict v = api_key_permits(A, routes[i].name, false, &reason);
		assert_int_equal(v, routes[i].auth == HTTP_ADMIN ? API_KEY_ALLOWED
		                                                 : API_KEY_NEEDS_USER);
		/* a read-only key may call no route that is not a GET */
		if (strcmp(routes[i].method, "GET") != 0)
			assert_int_equal(api_key_permits(R, routes[i].name, true, NULL),
			                 API_KEY_DENIED);
	}
	assert_true(authenticated > 40);
}

static void test_scope_names(void **state)
{
	(void)state;
	assert_int_equal(api_key_scope_parse("read"), API_KEY_READ);
	assert_int_equal(api_key_scope_parse("send"), API_KEY_SEND);
	assert_int_equal(api_key_scope_parse("admin"), API_KEY_ADMIN);
	assert_int_equal(api_key_scope_parse("Admin"), 0);
	assert_int_equal(api_key_scope_parse(""), 0);
	const char *names[3];
	assert_int_equal(api_key_scope_names(API_KEY_ADMIN | API_KEY_READ, names), 2);
	assert_string_equal(names[0], "read");
	assert_string_equal(names[1], "admin");
	assert_int_equal(api_key_scope_names(0, names), 0);
	assert_int_equal(api_key_scope_names(API_KEY_SCOPES_ALL, names), 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_every_route_known),
	    cmocka_unit_test(test_scope_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
