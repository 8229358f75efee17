/* Webhooks: the pure parts (the signature against a vector computed with Python's hmac, the
 * back-off schedule, event patterns, event ids, URL hosts) and the store's queue (events only
 * while a webhook listens, one cursor over activities and events in feed order, the lease that
 * keeps two nodes off one webhook, the fenced record). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/webhooks.h"
#include "lib/str.h"
#include "store/store.h"
#include "store/store_notification.h"
#include "store/store_org.h"
#include "store/store_user.h"
#include "store/store_webhook.h"
#include "temp_store.h"
#include "webhook/client.h"

#include <string.h>

static void test_sign_vector(void **state)
{
	(void)state;
	/* python3: hmac.new(b'whsec_test', b'1700000000.{"id":"evt_x_1"}', sha256).hexdigest() */
	const char *body = "{\"id\":\"evt_x_1\"}";
	char sig[WEBHOOK_SIGNATURE_MAX];
	webhook_sign((const unsigned char *)"whsec_test", 10, 1700000000, body, strlen(body), sig);
	assert_string_equal(
	    sig,
	    "t=1700000000,v1=dabeb6f8f08b3a5b3249659adc563453564622904b96998145ebfab848b7c951");
	/* Another time or body: another signature. */
	char other[WEBHOOK_SIGNATURE_MAX];
	webhook_sign((const unsigned char *)"whsec_test", 10, 1700000001, body, strlen(body),
	             other);
	assert_string_not_equal(strchr(sig, ','), strchr(other, ','));
}

static void test_backoff(void **state)
{
	(void)state;
	/* Without jitter (random % 41 == 20: factor 1.0): 1 s, 2 s, 4 s, ... capped at 10 min. */
	assert_int_equal(webhooks_backoff_ms(1, 20), 1000);
	assert_int_equal(webhooks_backoff_ms(2, 20), 2000);
	assert_int_equal(webhooks_backoff_ms(3, 20), 4000);
	assert_int_equal(webhooks_backoff_ms(10, 20), 512000);
	assert_int_equal(webhooks_backoff_ms(11, 20), MT_WEBHOOK_BACKOFF_MAX_MS);
	assert_int_equal(webhooks_backoff_ms(1000, 20), MT_WEBHOOK_BACKOFF_MAX_MS);
	/* The jitter stays within +-20%. */
	for (uint32_t r = 0; r < 200; r++) {
		int64_t d = webhooks_backoff_ms(3, r * 2654435761u);
		assert_true(d >= 3200 && d <= 4800);
	}
	assert_int_equal(webhooks_backoff_ms(1, 0), 800);
	assert_int_equal(webhooks_backoff_ms(1, 40), 1200);
	/* Over 24 h of retries: about 150 attempts, not thousands. */
	int64_t total = 0;
	unsigned n = 0;
	while (total < MT_WEBHOOK_RETRY_S * 1000LL)
		total += webhooks_backoff_ms(++n, 20);
	assert_true(n > 100 && n < 200);
}

static void test_patterns(void **state)
{
	(void)state;
	assert_true(webhooks_event_valid("activity.*"));
	assert_true(webhooks_event_valid("message.failed"));
	assert_true(webhooks_event_valid("notification"));
	assert_false(webhooks_event_valid("activity.deleted"));
	assert_false(webhooks_event_valid("message"));
	assert_false(webhooks_event_valid(""));
	const char *p = "activity.*,message.failed,notification";
	assert_true(webhooks_event_matches(p, "activity.created"));
	assert_true(webhooks_event_matches(p, "activity.updated"));
	assert_true(webhooks_event_matches(p, "message.failed"));
	assert_false(webhooks_event_matches(p, "message.sent"));
	assert_true(webhooks_event_matches(p, "notification"));
	assert_false(webhooks_event_matches(p, "account.connected"));
	assert_false(webhooks_event_matches("activity.*", "activityx"));
	assert_true(webhooks_event_matches("*", "account.disconnected"));
}

static void test_event_ids(void **state)
{
	(void)state;
	char id[64];
	webhooks_event_id("org_abc", 42, id, sizeof(id));
	assert_string_equal(id, "evt_abc_42");
	int64_t seq = 0;
	assert_int_equal(webhooks_event_seq("org_abc", "evt_abc_42", &seq), 0);
	assert_int_equal(seq, 42);
	assert_int_equal(webhooks_event_seq("org_abd", "evt_abc_42", &seq), -1);
	assert_int_equal(webhooks_event_seq("org_abc", "evt_abc_", &seq), -1);
	assert_int_equal(webhooks_event_seq("org_abc", "evt_abc_0", &seq), -1);
	assert_int_equal(webhooks_event_seq("org_abc", "evt_abc_4x", &seq), -1);
	assert_int_equal(webhooks_event_seq("org_abc", "evt_abcd_4", &seq), -1);
}

static void test_url_host(void **state)
{
	(void)state;
	char host[64];
	bool https = false;
	assert_int_equal(
	    webhook_url_host("https://Hooks.Example.com/in?x=1", host, sizeof(host), &https), 0);
	assert_string_equal(host, "hooks.example.com");
	assert_true(https);
	assert_int_equal(webhook_url_host("http://127.0.0.1:8080/x", host, sizeof(host), &https),
	                 0);
	assert_string_equal(host, "127.0.0.1");
	assert_false(https);
	assert_int_equal(webhook_url_host("https://[::1]:443/", host, sizeof(host), &https), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(webhook_url_host("https://user:pw@h.example/", host, sizeof(host), &https),
	                 -1);
	assert_int_equal(webhook_url_host("ftp://h.example/", host, sizeof(host), &https), -1);
	assert_int_equal(webhook_url_host("https:///x", host, sizeof(host), &https), -1);
	assert_int_equal(webhook_url_host("https://h.example/a b", host, sizeof(host), &https), -1);
}

/* ---- the store's queue ---- */

struct call {
	struct store_org org;
	struct store_user user;
	struct store_webhook hook;
	struct store_webhook rows[4];
	size_t count;
	struct store_notification n;
	struct store_webhook_pending pending;
	int64_t cursor;
	const char *owner;
	int64_t now;
	bool due;
	struct store_webhook_result result;
};

static int j_setup(struct store_tx *tx, void *arg)
{
	struct call *c = arg;
	mt_strlcpy(c->org.name, "Org", sizeof(c->org.name));
	int rc = store_org_create(tx, &c->org);
	mt_strlcpy(c->user.org_id, c->org.id, sizeof(c->user.org_id));
	mt_strlcpy(c->user.email, "ann@a.example", sizeof(c->user.email));
	mt_strlcpy(c->user.name, "Ann", sizeof(c->user.name));
	return rc == 0 ? store_user_create(tx, &c->user) : rc;
}

JOB(j_create, store_webhook_create(tx, &c->hook))
JOB(j_notify, store_notification_add(tx, &c->n))
JOB(j_claim, store_webhook_claim(tx, c->owner, c->now, 30000, c->rows, 4, &c->count))
JOB(j_record, store_webhook_record(tx, &c->result))
JOB(j_due, store_webhook_due(tx, c->owner, c->now, &c->due))
JOB(j_replay, store_webhook_replay(tx, c->org.id, c->hook.id, c->cursor))

static int j_pending(struct store_tx *tx, void *arg)
{
	struct call *c = arg;
	store_webhook_pending_free(&c->pending);
	return store_webhook_pending(tx, c->org.id, c->cursor, 2, &c->pending);
}

static void notify(struct store *store, struct call *c, const char *text)
{
	memset(&c->n, 0, sizeof(c->n));
	mt_strlcpy(c->n.org_id, c->org.id, sizeof(c->n.org_id));
	mt_strlcpy(c->n.user_id, c->user.id, sizeof(c->n.user_id));
	c->n.kind = STORE_NOTIFY_SMTP_DISCONNECTED;
	mt_strlcpy(c->n.text, text, sizeof(c->n.text));
	assert_int_equal(store_run(store, STORE_WRITE, j_notify, c), 0);
}

static void test_store_queue(void **state)
{
	(void)state;
	char dir[TEMP_STORE_DIR_MAX], path[TEMP_STORE_PATH_MAX];
	struct store *store = NULL;
	assert_int_equal(temp_store_open("mt-webhooks", dir, path, &store), 0);
	struct call *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	assert_int_equal(store_run(store, STORE_WRITE, j_setup, c), 0);

	/* No webhook: the notification leaves no event behind. */
	notify(store, c, "before any webhook");
	mt_strlcpy(c->hook.org_id, c->org.id, sizeof(c->hook.org_id));
	mt_strlcpy(c->hook.url, "https://hooks.example/in", sizeof(c->hook.url));
	mt_strlcpy(c->hook.events, "notification", sizeof(c->hook.events));
	c->hook.sealed_secret_len = 8;
	memset(c->hook.sealed_secret, 7, 8);
	assert_int_equal(store_run(store, STORE_WRITE, j_create, c), 0);
	int64_t start = c->hook.cursor;
	c->cursor = start;
	assert_int_equal(store_run(store, STORE_READ, j_pending, c), 0);
	assert_int_equal(c->pending.event_count, 0);
	assert_true(c->pending.complete);

	/* Three notifications now: events in order, two per page. */
	notify(store, c, "one");
	notify(store, c, "two");
	notify(store, c, "three");
	assert_int_equal(store_run(store, STORE_READ, j_pending, c), 0);
	assert_int_equal(c->pending.event_count, 2);
	assert_false(c->pending.complete);
	assert_string_equal(c->pending.events[0].type, "notification");
	assert_non_null(strstr(c->pending.events[0].payload, "\"one\""));
	assert_non_null(strstr(c->pending.events[1].payload, "\"two\""));
	assert_true(c->pending.events[0].seq > start &&
	            c->pending.events[1].seq > c->pending.events[0].seq);
	c->cursor = c->pending.events[1].seq;
	assert_int_equal(store_run(store, STORE_READ, j_pending, c), 0);
	assert_int_equal(c->pending.event_count, 1);
	assert_true(c->pending.complete);
	assert_true(c->pending.head >= c->pending.events[0].seq);
	int64_t third = c->pending.events[0].seq;
	/* A complete read: the cursor may go to the head (positions up to it are done). */
	int64_t head = c->pending.head;

	/* The lease: node a claims it, node b gets nothing until a lets go or it expires. */
	c->owner = "node_a";
	c->now = mt_wall_ms();
	assert_int_equal(store_run(store, STORE_WRITE, j_claim, c), 0);
	assert_int_equal(c->count, 1);
	assert_int_equal(c->rows[0].cursor, start);
	c->owner = "node_b";
	assert_int_equal(store_run(store, STORE_WRITE, j_claim, c), 0);
	assert_int_equal(c->count, 0);
	/* b may not record under a's lease. */
	memset(&c->result, 0, sizeof(c->result));
	c->result.webhook_id = c->hook.id;
	c->result.owner = "node_b";
	c->result.cursor = third;
	assert_int_equal(store_run(store, STORE_WRITE, j_record, c), STORE_CONFLICT);
	/* a delivers the whole run and lets go; nothing is left to claim. */
	c->result.owner = "node_a";
	c->result.cursor = head;
	c->result.event_id = "evt_x_1";
	c->result.type = "notification";
	c->result.outcome = "delivered";
	c->result.last_status = 204;
	assert_int_equal(store_run(store, STORE_WRITE, j_record, c), 0);
	c->owner = "node_b";
	c->now = mt_wall_ms() + 60000; /* even with a's lease long expired */
	assert_int_equal(store_run(store, STORE_READ, j_due, c), 0);
	assert_false(c->due);
	assert_int_equal(store_run(store, STORE_WRITE, j_claim, c), 0);
	assert_int_equal(c->count, 0);
	/* A new event: b may take it (a's lease was let go). */
	notify(store, c, "four");
	c->now = mt_wall_ms();
	assert_int_equal(store_run(store, STORE_WRITE, j_claim, c), 0);
	assert_int_equal(c->count, 1);
	assert_int_equal(c->rows[0].cursor, head);
	/* A replay from the third event: the cursor goes back before it and b's lease is gone,
	 * so that b's run cannot write its cursor over the replay's. */
	c->cursor = third;
	assert_int_equal(store_run(store, STORE_WRITE, j_replay, c), 0);
	c->owner = "node_a";
	assert_int_equal(store_run(store, STORE_READ, j_due, c), 0);
	assert_true(c->due);
	assert_int_equal(store_run(store, STORE_WRITE, j_claim, c), 0);
	assert_int_equal(c->count, 1);
	assert_int_equal(c->rows[0].cursor, third - 1);
	/* A position the feed never handed out is refused. */
	c->cursor = head + 100000;
	assert_int_equal(store_run(store, STORE_WRITE, j_replay, c), STORE_INVALID);

	store_webhook_pending_free(&c->pending);
	temp_store_close(dir, path, &store);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sign_vector), cmocka_unit_test(test_backoff),
	    cmocka_unit_test(test_patterns),    cmocka_unit_test(test_event_ids),
	    cmocka_unit_test(test_url_host),    cmocka_unit_test(test_store_queue),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
