/* The pure pieces of IMAP sync: cursor decisions (engine/imap_cursor.h), the since date
 * (engine/imap_account.h), the message key without a Message-ID (mime_message_aliases) and
 * the decoding of BODYSTRUCTURE names (mime_decode_value), and the scheduler's pure parts
 * (engine/imap_sync_sched.h: token bucket, jitter, back-off, the second connection), and the
 * session's compact copy of the account (engine/imap_sync_account.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/imap_account.h"
#include "engine/imap_cursor.h"
#include "engine/imap_sync_account.h"
#include "engine/imap_sync_sched.h"
#include "mime/message.h"

#include <string.h>

static struct store_imap_account sample_account(size_t folders)
{
	struct store_imap_account a;
	memset(&a, 0, sizeof(a));
	strcpy(a.user_id, "usr_abc");
	strcpy(a.org_id, "org_xyz");
	a.state = STORE_ACCOUNT_CONNECTED;
	strcpy(a.host, "imap.example.com");
	a.port = 143;
	a.security = STORE_SECURITY_STARTTLS;
	a.auth = STORE_AUTH_XOAUTH2;
	strcpy(a.username, "ann@example.com");
	strcpy(a.tls_fingerprint, "sha256:00ff");
	for (size_t i = 0; i < 40; i++)
		a.sealed_secret[i] = (unsigned char)(i * 7 + 1);
	a.sealed_secret_len = 40;
	a.since = 1700000000;
	a.verified_at = 1700000100;
	a.last_sync_at = 1700000200;
	a.updated_at = 1700000300;
	strcpy(a.last_error, "not kept");
	static const char *const names[] = {"INBOX", "Sent", "Archive", "Junk"};
	for (size_t i = 0; i < folders; i++) {
		strcpy(a.folders[i].name, names[i]);
		strcpy(a.folders[i].role, i == 0 ? "inbox" : i == 1 ? "sent" : "");
		a.folders[i].uidvalidity = 100 + (int64_t)i;
		a.folders[i].last_uid = 200 + (int64_t)i;
		a.folders[i].highestmodseq = 300 + (int64_t)i;
		a.folders[i].messages_synced = 400 + (int64_t)i;
	}
	a.folder_count = folders;
	return a;
}

/* Every field a login, a pass or the disconnect reads survives the compact copy; the store's
 * form comes back equal (but for last_error). */
static void test_sync_account_round_trip(void **state)
{
	(void)state;
	for (size_t folders = 0; folders <= MT_IMAP_FOLDERS_MAX; folders++) {
		struct store_imap_account a = sample_account(folders);
		struct imap_sync_account *s = imap_sync_account_new(&a);
		assert_non_null(s);
		assert_string_equal(s->host, "imap.example.com");
		assert_string_equal(s->username, "ann@example.com");
		assert_string_equal(s->user_id, "usr_abc");
		assert_int_equal(s->folder_count, folders);
		if (folders > 0) {
			assert_string_equal(s->folders[0].name, "INBOX");
			assert_string_equal(s->folders[0].role, "inbox");
			/* cursors are the session's to move */
			s->folders[folders - 1].last_uid = 999;
		}
		struct store_imap_account b;
		imap_sync_account_get(s, &b);
		if (folders > 0) {
			assert_int_equal(b.folders[folders - 1].last_uid, 999);
			b.folders[folders - 1].last_uid = a.folders[folders - 1].last_uid;
		}
		assert_string_equal(b.last_error, "");
		strcpy(b.last_error, a.last_error);
		assert_memory_equal(&a, &b, sizeof(a));
		imap_sync_account_free(&s);
		assert_null(s);
		imap_sync_account_free(&s);
	}
}

/* The longest values fit, each string its own. */
static void test_sync_account_long_fields(void **state)
{
	(void)state;
	struct store_imap_account a = sample_account(MT_IMAP_FOLDERS_MAX);
	memset(a.host, 'h', sizeof(a.host) - 1);
	memset(a.username, 'u', sizeof(a.username) - 1);
	memset(a.sealed_secret, 0xab, sizeof(a.sealed_secret));
	a.sealed_secret_len = sizeof(a.sealed_secret);
	for (size_t i = 0; i < MT_IMAP_FOLDERS_MAX; i++) {
		memset(a.folders[i].name, 'a' + (int)i, sizeof(a.folders[i].name) - 1);
		memset(a.folders[i].role, 'r', sizeof(a.folders[i].role) - 1);
	}
	struct imap_sync_account *s = imap_sync_account_new(&a);
	assert_non_null(s);
	assert_int_equal(strlen(s->host), sizeof(a.host) - 1);
	assert_int_equal(strlen(s->folders[3].name), MT_IMAP_MAILBOX_MAX - 1);
	assert_int_equal(s->folders[3].name[0], 'd');
	struct store_imap_account b;
	imap_sync_account_get(s, &b);
	strcpy(b.last_error, a.last_error);
	assert_memory_equal(&a, &b, sizeof(a));
	imap_sync_account_free(&s);
}

/* A halted session keeps the account but not the sealed secret. */
static void test_sync_account_wipe(void **state)
{
	(void)state;
	struct store_imap_account a = sample_account(1);
	struct imap_sync_account *s = imap_sync_account_new(&a);
	assert_non_null(s);
	assert_int_equal(s->sealed_secret_len, 40);
	assert_memory_equal(s->sealed_secret, a.sealed_secret, 40);
	unsigned char *sealed = s->sealed_secret;
	imap_sync_account_wipe_secret(s);
	assert_int_equal(s->sealed_secret_len, 0);
	unsigned char zero[40] = {0};
	assert_memory_equal(sealed, zero, sizeof(zero));
	struct store_imap_account b;
	imap_sync_account_get(s, &b);
	assert_int_equal(b.sealed_secret_len, 0);
	assert_string_equal(b.host, "imap.example.com");
	assert_string_equal(b.folders[0].name, "INBOX");
	imap_sync_account_free(&s);
}

/* The decision without HIGHESTMODSEQ (no CONDSTORE: today's behaviour). */
static struct imap_cursor_decision decide(int64_t stored_uidvalidity, int64_t stored_last_uid,
                                          uint32_t uidvalidity, uint32_t uidnext)
{
	const struct imap_cursor_state stored = {stored_uidvalidity, stored_last_uid, 0};
	const struct imap_cursor_select sel = {uidvalidity, uidnext, 0};
	return imap_cursor_decide(&stored, &sel);
}

static struct imap_cursor_decision decide_modseq(int64_t stored_last_uid, int64_t stored_modseq,
                                                 uint32_t uidnext, uint64_t highestmodseq)
{
	const struct imap_cursor_state stored = {1234, stored_last_uid, stored_modseq};
	const struct imap_cursor_select sel = {1234, uidnext, highestmodseq};
	return imap_cursor_decide(&stored, &sel);
}

/* RFC 7162: HIGHESTMODSEQ unchanged since the pass that stored the cursor: nothing to ask for
 * (UIDNEXT, when sent, still says so first); moved: the pass as without it; a server without
 * CONDSTORE (0) or NOMODSEQ, or no stored value: as without it. */
static void test_modseq(void **state)
{
	(void)state;
	assert_int_equal(decide_modseq(50, 900, 0, 900).action, IMAP_CURSOR_NOTHING);
	assert_int_equal(decide_modseq(50, 900, 51, 900).action, IMAP_CURSOR_NOTHING);
	/* a UIDNEXT past the cursor is trusted over an unchanged mod-sequence */
	assert_int_equal(decide_modseq(50, 900, 53, 900).action, IMAP_CURSOR_INCREMENTAL);
	struct imap_cursor_decision d = decide_modseq(50, 900, 0, 901);
	assert_int_equal(d.action, IMAP_CURSOR_INCREMENTAL);
	assert_int_equal(d.from_uid, 51);
	assert_int_equal(decide_modseq(50, 900, 60, 901).action, IMAP_CURSOR_INCREMENTAL);
	/* flags changed only: UIDNEXT still says nothing new */
	assert_int_equal(decide_modseq(50, 900, 51, 905).action, IMAP_CURSOR_NOTHING);
	assert_int_equal(decide_modseq(50, 900, 0, 0).action, IMAP_CURSOR_INCREMENTAL);
	assert_int_equal(decide_modseq(50, 0, 0, 900).action, IMAP_CURSOR_INCREMENTAL);
	/* UIDVALIDITY changed: a re-scan whatever the mod-sequence */
	const struct imap_cursor_state stored = {1234, 50, 900};
	const struct imap_cursor_select sel = {999, 0, 900};
	d = imap_cursor_decide(&stored, &sel);
	assert_int_equal(d.action, IMAP_CURSOR_FULL);
	assert_true(d.reset);
}

static void test_modseq_maybe_new(void **state)
{
	(void)state;
	const struct imap_cursor_state stored = {1234, 50, 900};
	struct imap_cursor_select sel = {1234, 51, 999};
	assert_false(imap_cursor_maybe_new(&stored, &sel)); /* UIDNEXT decides when sent */
	sel.uidnext = 52;
	assert_true(imap_cursor_maybe_new(&stored, &sel));
	sel.uidnext = 0;
	assert_true(imap_cursor_maybe_new(&stored, &sel)); /* 999 != 900 */
	sel.highestmodseq = 900;
	assert_false(imap_cursor_maybe_new(&stored, &sel));
	sel.highestmodseq = 0;
	assert_false(imap_cursor_maybe_new(&stored, &sel)); /* neither: as before */
	sel.uidvalidity = 7;
	assert_true(imap_cursor_maybe_new(&stored, &sel));
}

/* A chunk claims the pass's HIGHESTMODSEQ only when it completes the folder. */
static void test_modseq_after(void **state)
{
	(void)state;
	assert_int_equal(imap_cursor_modseq_after(false, 950, 900), 900);
	assert_int_equal(imap_cursor_modseq_after(false, 950, 0), 0);
	assert_int_equal(imap_cursor_modseq_after(true, 950, 900), 950);
	assert_int_equal(imap_cursor_modseq_after(true, 0, 900), 0); /* NOMODSEQ now */
}

static void test_first_sync(void **state)
{
	(void)state;
	struct imap_cursor_decision d = decide(0, 0, 1234, 10);
	assert_int_equal(d.action, IMAP_CURSOR_FULL);
	assert_true(d.reset);
	assert_int_equal(d.from_uid, 1);
}

static void test_uidvalidity_changed(void **state)
{
	(void)state;
	struct imap_cursor_decision d = decide(1234, 50, 5678, 3);
	assert_int_equal(d.action, IMAP_CURSOR_FULL);
	assert_true(d.reset);
	assert_int_equal(d.from_uid, 1);
}

static void test_incremental(void **state)
{
	(void)state;
	struct imap_cursor_decision d = decide(1234, 50, 1234, 60);
	assert_int_equal(d.action, IMAP_CURSOR_INCREMENTAL);
	assert_false(d.reset);
	assert_int_equal(d.from_uid, 51);
	/* No UIDNEXT from the server: ask anyway. */
	d = decide(1234, 50, 1234, 0);
	assert_int_equal(d.action, IMAP_CURSOR_INCREMENTAL);
}

static void test_nothing_new(void **state)
{
	(void)state;
	struct imap_cursor_decision d = decide(1234, 50, 1234, 51);
	assert_int_equal(d.action, IMAP_CURSOR_NOTHING);
	d = decide(1234, 50, 1234, 40); /* expunged mail: still nothing */
	assert_int_equal(d.action, IMAP_CURSOR_NOTHING);
}

static void test_criteria(void **state)
{
	(void)state;
	char out[64];
	struct imap_cursor_decision d = decide(1, 41, 1, 100);
	imap_cursor_criteria(&d, 0, out, sizeof(out));
	assert_string_equal(out, "UID 42:*");
	d = decide(0, 0, 1, 100);
	imap_cursor_criteria(&d, 0, out, sizeof(out));
	assert_string_equal(out, "ALL");
	int64_t since;
	assert_int_equal(account_imap_parse_date("2026-01-05", &since), 0);
	imap_cursor_criteria(&d, since, out, sizeof(out));
	assert_string_equal(out, "SINCE 5-Jan-2026");
}

static void test_since_covers(void **state)
{
	(void)state;
	int64_t since;
	assert_int_equal(account_imap_parse_date("2026-01-05", &since), 0);
	static const struct {
		const char *internaldate;
		bool covered;
	} table[] = {
	    {"05-Jan-2026 00:00:00 +0000", true},  /* the day itself */
	    {" 5-Jan-2026 23:59:59 -1200", true},  /* space-padded; the zone disregarded */
	    {"04-Jan-2026 23:59:59 -1200", false}, /* the day before, whatever its zone */
	    {"31-Dec-2025 10:00:00 +0000", false},
	    {"01-Feb-2026 10:00:00 +0000", true},
	    {"06-jan-2026 10:00:00 +0000", true}, /* a month in another case */
	    {"17-Jul-1996 02:44:25 -0700", false},
	    {"17-Xyz-2030 02:44:25 -0700", true}, /* unreadable: kept */
	    {"garbage", true},
	    {"", true},
	    {"40-Jan-2020 00:00:00 +0000", true}, /* no such day: kept */
	};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		if (imap_cursor_since_covers(since, table[i].internaldate) != table[i].covered)
			fail_msg("\"%s\": expected %s", table[i].internaldate,
			         table[i].covered ? "covered" : "older");
	}
	assert_true(imap_cursor_since_covers(since, NULL));
	assert_true(imap_cursor_since_covers(0, "17-Jul-1996 02:44:25 -0700")); /* no since */
}

static void test_filter(void **state)
{
	(void)state;
	/* "UID 51:*" with nothing new answers the highest UID (50): dropped. */
	uint32_t uids[] = {50};
	assert_int_equal(imap_cursor_filter(uids, 1, 51), 0);
	uint32_t more[] = {3, 7, 7, 9, 12};
	assert_int_equal(imap_cursor_filter(more, 5, 7), 3);
	assert_int_equal(more[0], 7);
	assert_int_equal(more[1], 9);
	assert_int_equal(more[2], 12);
}

static void test_after(void **state)
{
	(void)state;
	/* A finished folder's cursor passes everything below UIDNEXT (mail before `since`). */
	assert_int_equal(imap_cursor_after(7, true, 20), 19);
	assert_int_equal(imap_cursor_after(7, false, 20), 7);
	assert_int_equal(imap_cursor_after(25, true, 20), 25);
	assert_int_equal(imap_cursor_after(0, true, 0), 0);
}

static void test_parse_date(void **state)
{
	(void)state;
	int64_t t;
	assert_int_equal(account_imap_parse_date("1970-01-02", &t), 0);
	assert_int_equal(t, 86400);
	assert_int_equal(account_imap_parse_date("2024-02-29", &t), 0);
	assert_int_equal(account_imap_parse_date("2023-02-29", &t), -1);
	assert_int_equal(account_imap_parse_date("2026-13-01", &t), -1);
	assert_int_equal(account_imap_parse_date("2026-1-01", &t), -1);
	assert_int_equal(account_imap_parse_date("2026-01-01x", &t), -1);
	assert_int_equal(account_imap_parse_date("", &t), -1);
	assert_int_equal(account_imap_parse_date(NULL, &t), -1);
}

/* Without a Message-ID a message's key is derived from Date, From, sorted To and Subject: the
 * same mail seen twice (a UIDVALIDITY re-scan) gets the same key; another subject does not. */
static void test_derived_key(void **state)
{
	(void)state;
	static const char a[] =
	    "From: Nomid <nomid@cand.example>\r\nTo: b@x.example, a@x.example\r\n"
	    "Subject: No id\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\nhi\r\n";
	static const char b[] =
	    "From: nomid@cand.example\r\nTo: a@x.example, b@x.example\r\n"
	    "Subject: No id\r\nDate: Mon, 2 Nov 2026 11:00:00 +0100\r\n\r\nho\r\n";
	static const char c[] =
	    "From: nomid@cand.example\r\nTo: a@x.example, b@x.example\r\n"
	    "Subject: Other\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\nhi\r\n";
	char ka[MT_MESSAGE_ALIASES_MAX][MT_MESSAGE_KEY_MAX],
	    kb[MT_MESSAGE_ALIASES_MAX][MT_MESSAGE_KEY_MAX],
	    kc[MT_MESSAGE_ALIASES_MAX][MT_MESSAGE_KEY_MAX];
	struct mime_summary s;
	const char *error;
	assert_int_equal(mime_parse_message(a, strlen(a), &s, &error), 0);
	assert_int_equal(mime_message_aliases(&s, ka), 1);
	mime_summary_free(&s);
	assert_int_equal(mime_parse_message(b, strlen(b), &s, &error), 0);
	assert_int_equal(mime_message_aliases(&s, kb), 1);
	mime_summary_free(&s);
	assert_int_equal(mime_parse_message(c, strlen(c), &s, &error), 0);
	assert_int_equal(mime_message_aliases(&s, kc), 1);
	mime_summary_free(&s);
	assert_true(strncmp(ka[0], "sha:", 4) == 0);
	assert_string_equal(ka[0], kb[0]);
	assert_string_not_equal(ka[0], kc[0]);
}

static void test_decode_value(void **state)
{
	(void)state;
	char out[64];
	mime_decode_value("cv.pdf", out, sizeof(out));
	assert_string_equal(out, "cv.pdf");
	mime_decode_value("=?UTF-8?Q?R=C3=A9sum=C3=A9.pdf?=", out, sizeof(out));
	assert_string_equal(out, "Résumé.pdf");
	mime_decode_value("utf-8''R%C3%A9sum%C3%A9.pdf", out, sizeof(out));
	assert_string_equal(out, "Résumé.pdf");
	mime_decode_value("iso-8859-1'en'caf%E9.txt", out, sizeof(out));
	assert_string_equal(out, "café.txt");
	mime_decode_value("a\r\nb", out, 4);
	assert_true(strlen(out) <= 3);
}

static void test_bucket(void **state)
{
	(void)state;
	struct imap_bucket b = {0};
	int64_t t = 1000000;
	/* starts full: `burst` logins at once, then one every 1000/rate ms */
	for (int i = 0; i < 3; i++)
		assert_int_equal(imap_bucket_take(&b, t, 10, 3), 0);
	int64_t wait = imap_bucket_take(&b, t, 10, 3);
	assert_true(wait > 0 && wait <= 100);
	assert_true(imap_bucket_take(&b, t + 50, 10, 3) > 0); /* nothing taken meanwhile */
	assert_int_equal(imap_bucket_take(&b, t + 100, 10, 3), 0);
	assert_true(imap_bucket_take(&b, t + 100, 10, 3) > 0);
	assert_false(imap_bucket_idle(&b, t + 100, 10, 3));
	/* refills to `burst`, never beyond */
	assert_true(imap_bucket_idle(&b, t + 10000, 10, 3));
	for (int i = 0; i < 3; i++)
		assert_int_equal(imap_bucket_take(&b, t + 10000, 10, 3), 0);
	assert_true(imap_bucket_take(&b, t + 10000, 10, 3) > 0);
	/* a clock that goes back takes nothing and gives nothing */
	assert_true(imap_bucket_take(&b, t, 10, 3) > 0);
	/* rate over a long run: 1 s at 10/s after the burst is 10 logins */
	struct imap_bucket c = {0};
	int taken = 0;
	for (int64_t ms = 0; ms <= 1000; ms++)
		while (imap_bucket_take(&c, t + ms, 10, 1) == 0)
			taken++;
	assert_int_equal(taken, 11);
	/* rate 0: no limit */
	struct imap_bucket d = {0};
	for (int i = 0; i < 100; i++)
		assert_int_equal(imap_bucket_take(&d, t, 0, 0), 0);
}

static void test_jitter(void **state)
{
	(void)state;
	static const uint32_t randoms[] = {0, 1, 7, 499, 500, 501, 0x7fffffff, 0xffffffff};
	for (size_t i = 0; i < sizeof(randoms) / sizeof(randoms[0]); i++) {
		int64_t j = imap_sync_jitter(1000, randoms[i]);
		assert_true(j >= 1000 && j <= 1500);
		j = imap_sync_jitter(1, randoms[i]);
		assert_true(j == 1);
	}
	assert_int_equal(imap_sync_jitter(1000, 500), 1500);
	assert_int_equal(imap_sync_jitter(0, 12345), 0);
	assert_int_equal(imap_sync_jitter(-5, 12345), 0);
}

static void test_backoff(void **state)
{
	(void)state;
	static const uint32_t randoms[] = {0, 1, 999, 1000, 1001, 0xffffffff};
	for (unsigned failures = 1; failures < 40; failures++) {
		int64_t base = 1000;
		for (unsigned i = 1; i < failures && base < 300000; i++)
			base *= 2;
		if (base > 300000)
			base = 300000;
		for (size_t i = 0; i < sizeof(randoms) / sizeof(randoms[0]); i++) {
			int64_t ms = imap_sync_backoff(failures, 1000, 300000, randoms[i]);
			assert_true(ms >= base / 2 && ms <= base + base / 2);
		}
	}
	assert_int_equal(imap_sync_backoff(1, 1000, 300000, 0), 500);
	assert_int_equal(imap_sync_backoff(1, 1000, 300000, 1000), 1500);
	assert_int_equal(imap_sync_backoff(3, 1000, 300000, 0), 2000);
}

static void test_watch_second(void **state)
{
	(void)state;
	assert_false(imap_sync_watch_second(1, 2));
	assert_true(imap_sync_watch_second(2, 2));
	assert_true(imap_sync_watch_second(16, 4));
	assert_false(imap_sync_watch_second(2, 1));
	assert_false(imap_sync_watch_second(0, 2));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_first_sync),
	    cmocka_unit_test(test_modseq),
	    cmocka_unit_test(test_modseq_maybe_new),
	    cmocka_unit_test(test_modseq_after),
	    cmocka_unit_test(test_uidvalidity_changed),
	    cmocka_unit_test(test_incremental),
	    cmocka_unit_test(test_nothing_new),
	    cmocka_unit_test(test_criteria),
	    cmocka_unit_test(test_since_covers),
	    cmocka_unit_test(test_filter),
	    cmocka_unit_test(test_after),
	    cmocka_unit_test(test_parse_date),
	    cmocka_unit_test(test_derived_key),
	    cmocka_unit_test(test_decode_value),
	    cmocka_unit_test(test_bucket),
	    cmocka_unit_test(test_jitter),
	    cmocka_unit_test(test_backoff),
	    cmocka_unit_test(test_watch_second),
	    cmocka_unit_test(test_sync_account_round_trip),
	    cmocka_unit_test(test_sync_account_long_fields),
	    cmocka_unit_test(test_sync_account_wipe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
