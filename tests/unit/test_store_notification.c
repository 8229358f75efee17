/* The store side of the disconnect story: the fenced connected -> disconnected change (once per
 * incident, never over settings saved since; SMTP's and IMAP's), notifications listed newest first
 * per user, and messages held for the reconnect and released by it. Through store_run() on a
 * temp-file store without a loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "lib/str.h"
#include "store/store.h"
#include "store/store_imap.h"
#include "store/store_notification.h"
#include "store/store_org.h"
#include "store/store_outbox.h"
#include "store/store_smtp.h"
#include "store/store_user.h"
#include "temp_store.h"

#include <string.h>
#include <unistd.h>

struct call {
	struct store_org org;
	struct store_user user, other;
	struct store_smtp_account account, seen;
	struct store_imap_account imap, imap_seen;
	struct store_notification n;
	struct store_notification_list list;
	const char *list_user;
	char cursor[MT_CURSOR_MAX];
	size_t limit;
	struct store_outbox_message m;
	struct store_outbox_message claimed[4];
	char existing[MT_ID_MAX];
	char id[MT_ID_MAX];
	struct store_outbox_rcpt rcpt;
	size_t count;
};

static int j_setup(struct store_tx *tx, void *arg)
{
	struct call *c = arg;
	mt_strlcpy(c->org.name, "Org", sizeof(c->org.name));
	int rc = store_org_create(tx, &c->org);
	mt_strlcpy(c->user.org_id, c->org.id, sizeof(c->user.org_id));
	mt_strlcpy(c->user.email, "ann@a.example", sizeof(c->user.email));
	mt_strlcpy(c->user.name, "Ann", sizeof(c->user.name));
	if (rc == 0)
		rc = store_user_create(tx, &c->user);
	mt_strlcpy(c->other.org_id, c->org.id, sizeof(c->other.org_id));
	mt_strlcpy(c->other.email, "bob@a.example", sizeof(c->other.email));
	mt_strlcpy(c->other.name, "Bob", sizeof(c->other.name));
	return rc == 0 ? store_user_create(tx, &c->other) : rc;
}

JOB(j_put, store_smtp_account_put(tx, &c->account))
JOB(j_get, store_smtp_account_get(tx, c->org.id, c->user.id, &c->account))
JOB(j_disconnect, store_smtp_account_disconnect(tx, &c->seen, "auth: 535 no"))
JOB(j_add, store_notification_add(tx, &c->n))
JOB(j_imap_put, store_imap_account_put(tx, &c->imap))
JOB(j_imap_get, store_imap_account_get(tx, c->org.id, c->user.id, &c->imap))
JOB(j_imap_disconnect, store_imap_account_disconnect(tx, &c->imap_seen, "auth: NO"))
JOB(j_imap_off, store_imap_account_off(tx, c->org.id, c->user.id))
JOB(j_enqueue, store_outbox_enqueue(tx, &c->m, c->existing))
JOB(j_claim, temp_store_claim(tx, "node_t", mt_wall_s() + 5, 900, 4, c->claimed, &c->count))
JOB(j_hold, store_outbox_hold(tx, c->claimed[0].id, c->claimed[0].lease_token, STORE_HOLD_RECONNECT,
                              0, mt_wall_s()))
JOB(j_release, store_outbox_release_held(tx, c->org.id, c->user.id, STORE_HOLD_RECONNECT,
                                         mt_wall_s(), &c->count))
JOB(j_msg, store_outbox_get(tx, c->org.id, c->user.id, c->id, &c->m))

static int j_list(struct store_tx *tx, void *arg)
{
	struct call *c = arg;
	store_notification_list_free(&c->list);
	return store_notification_list(tx, c->org.id, c->list_user, c->cursor, c->limit, &c->list);
}

struct fixture {
	char dir[TEMP_STORE_DIR_MAX];
	char path[TEMP_STORE_PATH_MAX];
	struct store *store;
	struct call *c;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (f == NULL || temp_store_open("mt-notify", f->dir, f->path, &f->store) < 0)
		return -1;
	f->c = calloc(1, sizeof(*f->c));
	if (f->c == NULL || store_run(f->store, STORE_WRITE, j_setup, f->c) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	store_notification_list_free(&f->c->list);
	temp_store_close(f->dir, f->path, &f->store);
	free(f->c);
	free(f);
	return 0;
}

static void put_account(struct fixture *f, unsigned char secret_byte)
{
	struct store_smtp_account *a = &f->c->account;
	memset(a, 0, sizeof(*a));
	mt_strlcpy(a->org_id, f->c->org.id, sizeof(a->org_id));
	mt_strlcpy(a->user_id, f->c->user.id, sizeof(a->user_id));
	a->state = STORE_ACCOUNT_CONNECTED;
	mt_strlcpy(a->host, "smtp.a.example", sizeof(a->host));
	a->port = 587;
	mt_strlcpy(a->username, "ann", sizeof(a->username));
	mt_strlcpy(a->from_address, "ann@a.example", sizeof(a->from_address));
	memset(a->sealed_secret, secret_byte, 48);
	a->sealed_secret_len = 48;
	assert_int_equal(store_run(f->store, STORE_WRITE, j_put, f->c), 0);
	assert_int_equal(store_run(f->store, STORE_READ, j_get, f->c), 0);
}

static void test_disconnect_fence(void **state)
{
	struct fixture *f = *state;
	struct call *c = f->c;
	put_account(f, 0x11);
	c->seen = c->account;
	/* The first node's change commits; every later one (the same incident) is held back. */
	assert_int_equal(store_run(f->store, STORE_WRITE, j_disconnect, c), 0);
	assert_int_equal(store_run(f->store, STORE_WRITE, j_disconnect, c), STORE_CONFLICT);
	assert_int_equal(store_run(f->store, STORE_READ, j_get, c), 0);
	assert_int_equal(c->account.state, STORE_ACCOUNT_DISCONNECTED);
	assert_string_equal(c->account.last_error, "auth: 535 no");
	assert_int_equal(c->account.sealed_secret_len, 48); /* settings kept */
	/* Saved again (a reconnect): a failure seen with the old settings changes nothing. */
	put_account(f, 0x22);
	assert_int_equal(store_run(f->store, STORE_WRITE, j_disconnect, c), STORE_CONFLICT);
	assert_int_equal(store_run(f->store, STORE_READ, j_get, c), 0);
	assert_int_equal(c->account.state, STORE_ACCOUNT_CONNECTED);
	/* ... and the same secret with an older updated_at neither. */
	c->seen = c->account;
	c->seen.updated_at -= 1;
	assert_int_equal(store_run(f->store, STORE_WRITE, j_disconnect, c), STORE_CONFLICT);
}

/* IMAP's twin of the fence (store/ops_account.c runs both): its updated_at is the save's token
 * (milliseconds, new on every save) and stays as it is on a disconnect, since the sync's cursor
 * writes are fenced by it; the sync's copy of the account carries no secret to compare. */
static void put_imap(struct fixture *f, int64_t updated_at)
{
	struct store_imap_account *a = &f->c->imap;
	memset(a, 0, sizeof(*a));
	mt_strlcpy(a->org_id, f->c->org.id, sizeof(a->org_id));
	mt_strlcpy(a->user_id, f->c->user.id, sizeof(a->user_id));
	a->state = STORE_ACCOUNT_CONNECTED;
	mt_strlcpy(a->host, "imap.a.example", sizeof(a->host));
	a->port = 993;
	a->security = STORE_SECURITY_TLS;
	mt_strlcpy(a->username, "ann", sizeof(a->username));
	memset(a->sealed_secret, 0x33, 48);
	a->sealed_secret_len = 48;
	a->updated_at = updated_at;
	a->folder_count = 1;
	mt_strlcpy(a->folders[0].name, "INBOX", sizeof(a->folders[0].name));
	mt_strlcpy(a->folders[0].role, "inbox", sizeof(a->folders[0].role));
	assert_int_equal(store_run(f->store, STORE_WRITE, j_imap_put, f->c), 0);
	assert_int_equal(store_run(f->store, STORE_READ, j_imap_get, f->c), 0);
}

static void test_imap_disconnect_fence(void **state)
{
	struct fixture *f = *state;
	struct call *c = f->c;
	put_imap(f, 1000);
	/* what the sync holds: the ids and the token, no secret */
	memset(&c->imap_seen, 0, sizeof(c->imap_seen));
	mt_strlcpy(c->imap_seen.org_id, c->org.id, sizeof(c->imap_seen.org_id));
	mt_strlcpy(c->imap_seen.user_id, c->user.id, sizeof(c->imap_seen.user_id));
	c->imap_seen.updated_at = 1000;
	assert_int_equal(store_run(f->store, STORE_WRITE, j_imap_disconnect, c), 0);
	assert_int_equal(store_run(f->store, STORE_WRITE, j_imap_disconnect, c), STORE_CONFLICT);
	assert_int_equal(store_run(f->store, STORE_READ, j_imap_get, c), 0);
	assert_int_equal(c->imap.state, STORE_ACCOUNT_DISCONNECTED);
	assert_string_equal(c->imap.last_error, "auth: NO");
	assert_int_equal(c->imap.updated_at, 1000); /* the token stays */
	assert_int_equal(c->imap.sealed_secret_len, 48);
	assert_int_equal(c->imap.folder_count, 1);
	/* Saved again: the failure seen with the old token changes nothing. */
	put_imap(f, 2000);
	assert_int_equal(store_run(f->store, STORE_WRITE, j_imap_disconnect, c), STORE_CONFLICT);
	assert_int_equal(store_run(f->store, STORE_READ, j_imap_get, c), 0);
	assert_int_equal(c->imap.state, STORE_ACCOUNT_CONNECTED);
	/* Off: the secret wiped, the settings kept, a new token. */
	assert_int_equal(store_run(f->store, STORE_WRITE, j_imap_off, c), 0);
	assert_int_equal(store_run(f->store, STORE_READ, j_imap_get, c), 0);
	assert_int_equal(c->imap.state, STORE_ACCOUNT_OFF);
	assert_int_equal(c->imap.sealed_secret_len, 0);
	assert_string_equal(c->imap.host, "imap.a.example");
	assert_true(c->imap.updated_at > 2000);
}

static void test_notifications_newest_first(void **state)
{
	struct fixture *f = *state;
	struct call *c = f->c;
	char ids[3][MT_ID_MAX];
	for (int i = 0; i < 3; i++) {
		memset(&c->n, 0, sizeof(c->n));
		mt_strlcpy(c->n.org_id, c->org.id, sizeof(c->n.org_id));
		mt_strlcpy(c->n.user_id, c->user.id, sizeof(c->n.user_id));
		c->n.kind = STORE_NOTIFY_SMTP_DISCONNECTED;
		snprintf(c->n.text, sizeof(c->n.text), "notice %d", i);
		assert_int_equal(store_run(f->store, STORE_WRITE, j_add, c), 0);
		memcpy(ids[i], c->n.id, MT_ID_MAX);
		usleep(2000); /* ids order by the millisecond; within one, at random */
	}
	c->list_user = c->user.id;
	c->limit = 2;
	c->cursor[0] = '\0';
	assert_int_equal(store_run(f->store, STORE_READ, j_list, c), 0);
	assert_int_equal(c->list.count, 2);
	assert_string_equal(c->list.items[0].id, ids[2]);
	assert_string_equal(c->list.items[0].text, "notice 2");
	assert_int_equal(c->list.items[0].kind, STORE_NOTIFY_SMTP_DISCONNECTED);
	assert_string_equal(c->list.items[1].id, ids[1]);
	assert_string_equal(c->list.next_cursor, ids[1]);
	mt_strlcpy(c->cursor, c->list.next_cursor, sizeof(c->cursor));
	assert_int_equal(store_run(f->store, STORE_READ, j_list, c), 0);
	assert_int_equal(c->list.count, 1);
	assert_string_equal(c->list.items[0].id, ids[0]);
	assert_string_equal(c->list.next_cursor, "");
	/* Only one's own. */
	c->list_user = c->other.id;
	c->cursor[0] = '\0';
	assert_int_equal(store_run(f->store, STORE_READ, j_list, c), 0);
	assert_int_equal(c->list.count, 0);
	mt_strlcpy(c->cursor, "nonsense", sizeof(c->cursor));
	assert_int_equal(store_run(f->store, STORE_READ, j_list, c), STORE_INVALID);
}

static void test_held_for_reconnect(void **state)
{
	struct fixture *f = *state;
	struct call *c = f->c;
	struct store_outbox_message *m = &c->m;
	mt_strlcpy(m->org_id, c->org.id, sizeof(m->org_id));
	mt_strlcpy(m->user_id, c->user.id, sizeof(m->user_id));
	mt_strlcpy(m->campaign_id, "cmp_1", sizeof(m->campaign_id));
	mt_strlcpy(m->route, "custom", sizeof(m->route));
	mt_strlcpy(m->subject, "s", sizeof(m->subject));
	m->state = STORE_OUTBOX_QUEUED;
	m->body = (char *)"x";
	m->body_len = 1;
	mt_strlcpy(c->rcpt.address, "cand@c.example", sizeof(c->rcpt.address));
	m->rcpts = &c->rcpt;
	m->rcpt_count = 1;
	assert_int_equal(store_run(f->store, STORE_WRITE, j_enqueue, c), 0);
	mt_strlcpy(c->id, m->id, sizeof(c->id));
	m->body = NULL;
	m->rcpts = NULL;
	assert_int_equal(store_run(f->store, STORE_WRITE, j_claim, c), 0);
	assert_int_equal(c->count, 1);
	assert_int_equal(store_run(f->store, STORE_WRITE, j_hold, c), 0);
	/* The lease is gone with the hold: a second hold by the same token is a conflict. */
	assert_int_equal(store_run(f->store, STORE_WRITE, j_hold, c), STORE_CONFLICT);
	for (size_t i = 0; i < 1; i++)
		store_outbox_message_free(&c->claimed[i]);
	assert_int_equal(store_run(f->store, STORE_READ, j_msg, c), 0);
	assert_int_equal(m->state, STORE_OUTBOX_HELD);
	store_outbox_message_free(m);
	assert_int_equal(store_run(f->store, STORE_WRITE, j_release, c), 0);
	assert_int_equal(c->count, 1);
	assert_int_equal(store_run(f->store, STORE_READ, j_msg, c), 0);
	assert_int_equal(m->state, STORE_OUTBOX_QUEUED);
	store_outbox_message_free(m);
	assert_int_equal(store_run(f->store, STORE_WRITE, j_release, c), 0);
	assert_int_equal(c->count, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_disconnect_fence, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_imap_disconnect_fence, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_notifications_newest_first, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_held_for_reconnect, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
