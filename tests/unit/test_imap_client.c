#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "imap/client.h"

#include <string.h>

static struct imap_mailbox box(const char *name, unsigned flags)
{
	struct imap_mailbox b;
	memset(&b, 0, sizeof(b));
	strcpy(b.name, name);
	strcpy(b.name_utf8, name);
	b.flags = flags;
	b.delimiter = '/';
	return b;
}

static void test_find_sent_special_use_wins(void **state)
{
	(void)state;
	struct imap_mailbox boxes[] = {box("INBOX", 0), box("Sent", 0),
	                               box("Gesendete Elemente", IMAP_MBOX_SENT)};
	const struct imap_mailbox *sent = imap_mailboxes_find_sent(boxes, 3);
	assert_non_null(sent);
	assert_string_equal(sent->name, "Gesendete Elemente");
	assert_string_equal(imap_mailbox_role(sent->flags), "sent");
	assert_null(imap_mailbox_role(0));
}

static void test_find_sent_by_name(void **state)
{
	(void)state;
	struct imap_mailbox boxes[] = {box("INBOX", 0), box("[Gmail]", IMAP_MBOX_NOSELECT),
	                               box("[Gmail]/Sent Mail", 0),
	                               box("Sent", IMAP_MBOX_NOSELECT)};
	const struct imap_mailbox *sent = imap_mailboxes_find_sent(boxes, 4);
	assert_non_null(sent);
	assert_string_equal(sent->name, "[Gmail]/Sent Mail");

	struct imap_mailbox dotted[] = {box("INBOX", 0), box("INBOX/Sent Items", 0)};
	sent = imap_mailboxes_find_sent(dotted, 2);
	assert_non_null(sent);
	assert_string_equal(sent->name, "INBOX/Sent Items");

	struct imap_mailbox none[] = {box("INBOX", 0), box("Archive", IMAP_MBOX_ARCHIVE)};
	assert_null(imap_mailboxes_find_sent(none, 2));
	assert_null(imap_mailboxes_find_sent(NULL, 0));
}

static void test_auth_names(void **state)
{
	(void)state;
	enum imap_auth auth;
	assert_int_equal(imap_auth_parse("xoauth2", &auth), 0);
	assert_int_equal(auth, IMAP_AUTH_XOAUTH2);
	assert_string_equal(imap_auth_name(auth), "xoauth2");
	assert_int_equal(imap_auth_parse("none", &auth), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_find_sent_special_use_wins),
	    cmocka_unit_test(test_find_sent_by_name),
	    cmocka_unit_test(test_auth_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
