/* The message parser on arbitrary bytes: it must return 0 or -1 without crashing or leaking,
 * and a summary must hold its promises (DESIGN §1): valid UTF-8 everywhere, counts within the
 * caps, normalised addresses, aliases that are a pure function of the summary. The same bytes
 * go through mime_parse_fetched (the header block split without GMime) and mime_parse_headers,
 * split where a header block would end. */
#include "mime/address.h"
#include "mime/message.h"

#include "fuzz_checks.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	mime_init();
	return 0;
}

static void check_address(const char *a)
{
	if (a[0] == '\0')
		return;
	char again[MT_ADDRESS_MAX + 1];
	const char *error = NULL;
	if (mime_address_normalize(a, again, &error) != 0 || strcmp(a, again) != 0)
		abort();
}

static void check_mailboxes(const struct mime_mailbox *list, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		check_address(list[i].address);
		fuzz_check_utf8(list[i].name, MT_NAME_MAX);
		for (size_t j = 0; j < i; j++) {
			if (strcmp(list[i].address, list[j].address) == 0)
				abort();
		}
	}
}

static void check(const struct mime_summary *s)
{
	fuzz_check_utf8(s->message_id, MT_MESSAGE_ID_MAX);
	fuzz_check_utf8(s->mailtrail_id, MT_MESSAGE_ID_MAX);
	fuzz_check_utf8(s->subject, MT_SUBJECT_MAX);
	fuzz_check_utf8(s->in_reply_to, MT_MESSAGE_ID_MAX);
	fuzz_check_utf8(s->snippet, MT_SNIPPET_BYTES);
	if (s->reference_count > MT_REFERENCES_MAX)
		abort();
	for (size_t i = 0; i < s->reference_count; i++)
		fuzz_check_utf8(s->references[i], MT_MESSAGE_ID_MAX);
	check_address(s->from.address);
	fuzz_check_utf8(s->from.name, MT_NAME_MAX);
	check_mailboxes(s->to, s->to_count);
	check_mailboxes(s->cc, s->cc_count);
	check_mailboxes(s->bcc, s->bcc_count);
	if ((s->from.address[0] != '\0') + s->to_count + s->cc_count + s->bcc_count >
	    MT_MESSAGE_PARTICIPANTS_MAX)
		abort();
	if (s->attachment_count > MT_ATTACHMENTS_MAX)
		abort();
	for (size_t i = 0; i < s->attachment_count; i++) {
		fuzz_check_utf8(s->attachments[i].name, MT_ATTACHMENT_NAME_MAX);
		fuzz_check_utf8(s->attachments[i].type, MT_CONTENT_TYPE_MAX);
		if (s->attachments[i].size < 0)
			abort();
	}
	/* the snippet has no leading, trailing or doubled spaces */
	size_t len = strlen(s->snippet);
	if (len > 0 && (s->snippet[0] == ' ' || s->snippet[len - 1] == ' ' ||
	                strstr(s->snippet, "  ") != NULL))
		abort();

	char a1[MT_MESSAGE_ALIASES_MAX][MT_MESSAGE_KEY_MAX],
	    a2[MT_MESSAGE_ALIASES_MAX][MT_MESSAGE_KEY_MAX];
	size_t n1 = mime_message_aliases(s, a1), n2 = mime_message_aliases(s, a2);
	if (n1 < 1 || n1 > MT_MESSAGE_ALIASES_MAX || n1 != n2)
		abort();
	for (size_t i = 0; i < n1; i++) {
		if (strcmp(a1[i], a2[i]) != 0)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mime_summary s;
	const char *error = NULL;
	int ret = mime_parse_message((const char *)data, size, &s, &error);
	if (ret == 0) {
		check(&s);
		mime_summary_free(&s);
	} else if (ret != -1 || error == NULL || s.to != NULL || s.attachments != NULL) {
		abort();
	}

	/* the sync's shape: the header block split without GMime's objects */
	ret = mime_parse_fetched((const char *)data, size, &s, &error);
	if (ret == 0) {
		check(&s);
		mime_summary_free(&s);
	} else if (ret != -1 || error == NULL || s.to != NULL || s.attachments != NULL) {
		abort();
	}

	/* the IMAP shape: the first blank line splits headers from one HTML text part */
	const char *text = NULL;
	size_t hlen = size;
	for (size_t i = 0; i + 1 < size; i++) {
		if (data[i] == '\n' && data[i + 1] == '\n') {
			hlen = i + 1;
			text = (const char *)data + i + 2;
			break;
		}
	}
	size_t tlen = text != NULL ? size - hlen - 1 : 0;
	ret = mime_parse_headers((const char *)data, hlen, text, tlen,
	                         size % 2 ? "text/html; charset=windows-1252" : "text/plain",
	                         size % 3 ? "quoted-printable" : "base64", &s, &error);
	if (ret == 0) {
		check(&s);
		if (s.attachment_count != 0)
			abort();
		mime_summary_free(&s);
	} else if (ret != -1) {
		abort();
	}
	return 0;
}
