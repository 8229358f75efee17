#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "mime/address.h"
#include "mime/build.h"
#include "mime/message.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DATE 1700000000 /* Tue, 14 Nov 2023 22:13:20 +0000 */

static const struct mime_mailbox from_ascii = {"anna@example.com", "Anna Smith"};
static const struct mime_mailbox from_utf8 = {"juergen@example.de", "Jürgen Müller"};
static const struct mime_mailbox to_two[] = {
    {"john@example.com", "Smith, John (Boss)"},
    {"li@example.cn", "李小龙"},
};
static const struct mime_mailbox cc_one[] = {{"cc@example.org", ""}};

static struct mime_build_input base_input(void)
{
	struct mime_build_input in = {
	    .from = &from_ascii,
	    .to = to_two,
	    .to_count = 1,
	    .subject = "Hello there",
	    .text = "Hi John,\n\nshort ASCII lines only.\n",
	    .message_id = "abc.1@mailtrail.example.com",
	    .mailtrail_id = "msg_0123456789",
	    .date = DATE,
	};
	return in;
}

/* The wire promise of build.h: CRLF only, 7-bit, no line over 998 octets. */
static void assert_wire_clean(const char *out, size_t len)
{
	assert_true(len >= 2);
	assert_int_equal(strlen(out), len);
	size_t line = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)out[i];
		assert_true(c < 0x80);
		assert_true(c != '\0');
		if (c == '\r') {
			assert_true(i + 1 < len);
			assert_int_equal(out[i + 1], '\n');
			i++;
			line = 0;
			continue;
		}
		assert_true(c != '\n');
		line++;
		assert_true(line <= 998);
	}
	assert_memory_equal(out + len - 2, "\r\n", 2);
}

static char *build_ok(const struct mime_build_input *in, size_t *len_r)
{
	char *out = NULL;
	size_t len = 0;
	const char *error = NULL;
	int r = mime_build_message(in, &out, &len, &error);
	if (r != 0)
		fail_msg("mime_build_message: %s", error);
	assert_non_null(out);
	assert_wire_clean(out, len);
	assert_non_null(strstr(out, "\r\nMIME-Version: 1.0\r\n"));
	*len_r = len;
	return out;
}

static void build_fails(const struct mime_build_input *in, const char *error_part)
{
	char *out = NULL;
	size_t len = 0;
	const char *error = NULL;
	assert_int_equal(mime_build_message(in, &out, &len, &error), -1);
	assert_null(out);
	assert_non_null(error);
	if (strstr(error, error_part) == NULL)
		fail_msg("error \"%s\" does not mention \"%s\"", error, error_part);
}

/* The headers of a built message, up to the blank line. */
static char *header_block(const char *out)
{
	const char *end = strstr(out, "\r\n\r\n");
	assert_non_null(end);
	size_t n = (size_t)(end - out) + 2;
	char *h = malloc(n + 1);
	assert_non_null(h);
	memcpy(h, out, n);
	h[n] = '\0';
	return h;
}

static void parse_ok(const char *out, size_t len, struct mime_summary *s)
{
	const char *error = NULL;
	int r = mime_parse_message(out, len, s, &error);
	if (r != 0)
		fail_msg("mime_parse_message: %s", error);
}

static void test_ascii_round_trip(void **state)
{
	(void)state;
	struct mime_build_input in = base_input();
	in.to_count = 2;
	in.cc = cc_one;
	in.cc_count = 1;
	size_t len = 0;
	char *out = build_ok(&in, &len);
	char *h = header_block(out);
	assert_non_null(strstr(h, "From: Anna Smith <anna@example.com>\r\n"));
	/* specials in an ASCII display name are quoted, not encoded */
	assert_non_null(strstr(h, "\"Smith, John (Boss)\" <john@example.com>"));
	assert_non_null(strstr(h, "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"));
	assert_non_null(strstr(h, "Message-Id: <abc.1@mailtrail.example.com>\r\n"));
	assert_non_null(strstr(h, "X-Mailtrail-Id: msg_0123456789\r\n"));
	assert_non_null(strstr(h, "Content-Type: text/plain; charset=utf-8\r\n"));
	assert_non_null(strstr(h, "Content-Transfer-Encoding: 7bit\r\n"));
	assert_null(strstr(h, "Bcc"));
	free(h);

	struct mime_summary s;
	parse_ok(out, len, &s);
	assert_string_equal(s.subject, "Hello there");
	assert_string_equal(s.from.address, "anna@example.com");
	assert_string_equal(s.from.name, "Anna Smith");
	assert_int_equal(s.to_count, 2);
	assert_string_equal(s.to[0].address, "john@example.com");
	assert_string_equal(s.to[0].name, "Smith, John (Boss)");
	assert_string_equal(s.to[1].address, "li@example.cn");
	assert_string_equal(s.to[1].name, "李小龙");
	assert_int_equal(s.cc_count, 1);
	assert_string_equal(s.cc[0].address, "cc@example.org");
	assert_string_equal(s.cc[0].name, "");
	assert_int_equal(s.bcc_count, 0);
	assert_string_equal(s.message_id, "abc.1@mailtrail.example.com");
	assert_string_equal(s.mailtrail_id, "msg_0123456789");
	assert_int_equal(s.date, DATE);
	assert_string_equal(s.snippet, "Hi John, short ASCII lines only.");
	assert_int_equal(s.attachment_count, 0);
	mime_summary_free(&s);
	free(out);
}

static void test_unicode_round_trip(void **state)
{
	(void)state;
	struct mime_build_input in = base_input();
	in.from = &from_utf8;
	in.subject = "Zusammenfassung – Übersicht 🎉";
	in.text = "Grüße aus Köln – 🎉\r\nZweite Zeile.\r\n";
	size_t len = 0;
	char *out = build_ok(&in, &len);
	char *h = header_block(out);
	assert_non_null(strstr(h, "From: =?UTF-8?b?SsO8cmdlbiBNw7xsbGVy?= <juergen@example.de>"));
	assert_non_null(strstr(h, "Subject: Zusammenfassung =?UTF-8?"));
	assert_non_null(strstr(h, "Content-Transfer-Encoding: quoted-printable\r\n"));
	free(h);
	/* CRLF in the input stays one line break, not "=0D" */
	assert_non_null(strstr(out, "Gr=C3=BC=C3=9Fe aus K=C3=B6ln =E2=80=93 =F0=9F=8E=89\r\n"
	                            "Zweite Zeile.\r\n"));
	assert_null(strstr(out, "=0D"));

	struct mime_summary s;
	parse_ok(out, len, &s);
	assert_string_equal(s.subject, "Zusammenfassung – Übersicht 🎉");
	assert_string_equal(s.from.name, "Jürgen Müller");
	assert_string_equal(s.from.address, "juergen@example.de");
	assert_string_equal(s.snippet, "Grüße aus Köln – 🎉 Zweite Zeile.");
	mime_summary_free(&s);
	free(out);
}

static void test_html_only(void **state)
{
	(void)state;
	struct mime_build_input in = base_input();
	in.text = NULL;
	in.html = "<html><head><style>p{color:red}</style></head>"
	          "<body><p>Hello <b>world</b> &amp; Grüße</p></body></html>";
	size_t len = 0;
	char *out = build_ok(&in, &len);
	char *h = header_block(out);
	assert_non_null(strstr(h, "Content-Type: text/html; charset=utf-8\r\n"));
	assert_null(strstr(h, "multipart"));
	free(h);
	struct mime_summary s;
	parse_ok(out, len, &s);
	assert_string_equal(s.snippet, "Hello world & Grüße");
	mime_summary_free(&s);
	free(out);
}

static void test_alternative(void **state)
{
	(void)state;
	struct mime_build_input in = base_input();
	in.text = "Plain version\n";
	in.html = "<p>HTML version</p>\n";
	size_t len = 0;
	char *out = build_ok(&in, &len);
	assert_non_null(strstr(out, "Content-Type: multipart/alternative; boundary="));
	const char *plain = strstr(out, "Content-Type: text/plain; charset=utf-8");
	const char *html = strstr(out, "Content-Type: text/html; charset=utf-8");
	assert_non_null(plain);
	assert_non_null(html);
	assert_true(plain < html);
	assert_null(strstr(out, "multipart/mixed"));
	struct mime_summary s;
	parse_ok(out, len, &s);
	assert_string_equal(s.snippet, "Plain version");
	assert_int_equal(s.attachment_count, 0);
	mime_summary_free(&s);
	free(out);
}

static void test_attachments(void **state)
{
	(void)state;
	static unsigned char pdf[3000], png[70];
	for (size_t i = 0; i < sizeof(pdf); i++)
		pdf[i] = (unsigned char)(i * 7 + 3);
	for (size_t i = 0; i < sizeof(png); i++)
		png[i] = (unsigned char)(255 - i);
	const struct mime_build_attachment att[] = {
	    {"Lebenslauf Jürgen €.pdf", "application/pdf", pdf, sizeof(pdf)},
	    {"photo \"me\".PNG", "Image/PNG", png, sizeof(png)},
	};
	struct mime_build_input in = base_input();
	in.from = &from_utf8;
	in.html = "<p>Anbei</p>";
	in.attachments = att;
	in.attachment_count = 2;
	size_t len = 0;
	char *out = build_ok(&in, &len);
	const char *mixed = strstr(out, "Content-Type: multipart/mixed; boundary=");
	const char *alt = strstr(out, "Content-Type: multipart/alternative; boundary=");
	const char *pdf_part = strstr(out, "Content-Type: application/pdf");
	assert_non_null(mixed);
	assert_non_null(alt);
	assert_non_null(pdf_part);
	assert_true(mixed < alt && alt < pdf_part);
	/* RFC 2231 in UTF-8, not RFC 2047 words inside a quoted string and not ISO-8859-15 */
	assert_non_null(
	    strstr(out, "filename*=UTF-8''Lebenslauf%20J%C3%BCrgen%20%E2%82%AC.pdf\r\n"));
	assert_null(strstr(out, "filename=\"=?"));
	assert_non_null(strstr(out, "Content-Disposition: attachment;"));
	assert_non_null(strstr(out, "Content-Type: image/png"));
	assert_non_null(strstr(out, "Content-Transfer-Encoding: base64"));

	struct mime_summary s;
	parse_ok(out, len, &s);
	assert_int_equal(s.attachment_count, 2);
	assert_string_equal(s.attachments[0].name, "Lebenslauf Jürgen €.pdf");
	assert_string_equal(s.attachments[0].type, "application/pdf");
	assert_int_equal(s.attachments[0].size, sizeof(pdf));
	assert_string_equal(s.attachments[1].name, "photo \"me\".PNG");
	assert_string_equal(s.attachments[1].type, "image/png");
	assert_int_equal(s.attachments[1].size, sizeof(png));
	assert_string_equal(s.snippet, "Hi John, short ASCII lines only.");
	mime_summary_free(&s);
	free(out);
}

static void test_reply_to_sender_extra_headers(void **state)
{
	(void)state;
	static const char unsubscribe[] =
	    "<https://mailtrail.example.com/u/"
	    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef>, "
	    "<mailto:unsubscribe@mailtrail.example.com?subject=0123456789abcdef>";
	const struct mime_build_header headers[] = {
	    {"List-Unsubscribe", unsubscribe},
	    {"List-Unsubscribe-Post", "List-Unsubscribe=One-Click"},
	    {"In-Reply-To", "<earlier@example.com>"},
	};
	const struct mime_mailbox sender = {"relay@example.net", "Relay"};
	const struct mime_mailbox reply_to = {"replies@example.com", "Ånswers"};
	struct mime_build_input in = base_input();
	in.sender = &sender;
	in.reply_to = &reply_to;
	in.headers = headers;
	in.header_count = 3;
	size_t len = 0;
	char *out = build_ok(&in, &len);
	char *h = header_block(out);
	assert_non_null(strstr(h, "\r\nSender: Relay <relay@example.net>\r\n"));
	assert_non_null(
	    strstr(h, "\r\nReply-To: =?UTF-8?b?w4Vuc3dlcnM=?= <replies@example.com>\r\n"));
	/* the long URL stays as it is (GMime on its own would turn it into encoded words);
	 * the fold goes at the space */
	assert_non_null(strstr(h,
	                       "\r\nList-Unsubscribe: <https://mailtrail.example.com/u/"
	                       "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	                       "0123456789abcdef>,\r\n <mailto:unsubscribe@mailtrail.example.com?"
	                       "subject=0123456789abcdef>\r\n"));
	assert_non_null(strstr(h, "\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
	assert_non_null(strstr(h, "\r\nIn-Reply-To: <earlier@example.com>\r\n"));
	assert_null(strstr(h, "=?us-ascii"));
	free(h);
	struct mime_summary s;
	parse_ok(out, len, &s);
	assert_string_equal(s.in_reply_to, "earlier@example.com");
	assert_string_equal(s.from.address, "anna@example.com");
	mime_summary_free(&s);
	free(out);
}

static void test_long_lines(void **state)
{
	(void)state;
	/* 3000 octets without a line break: must be QP-wrapped, never sent as one line */
	char *text = malloc(3001);
	assert_non_null(text);
	memset(text, 'a', 3000);
	text[3000] = '\0';
	char subject[901];
	memset(subject, 's', 900);
	subject[900] = '\0';
	char value[901];
	memset(value, 'v', 900);
	value[900] = '\0';
	const struct mime_build_header headers[] = {{"X-Long", value}};
	struct mime_build_input in = base_input();
	in.text = text;
	in.subject = subject;
	in.headers = headers;
	in.header_count = 1;
	size_t len = 0;
	char *out = build_ok(&in, &len);
	assert_non_null(strstr(out, "Content-Transfer-Encoding: quoted-printable\r\n"));
	assert_non_null(strstr(out, "\r\nX-Long: vvvvvvvv"));
	struct mime_summary s;
	parse_ok(out, len, &s);
	assert_string_equal(s.subject, subject);
	mime_summary_free(&s);
	free(out);

	/* an ASCII line of 998 octets is legal as it is */
	memset(text, 'b', 998);
	strcpy(text + 998, "\nend\n");
	in.text = text;
	in.subject = "x";
	in.header_count = 0;
	out = build_ok(&in, &len);
	assert_non_null(strstr(out, "Content-Transfer-Encoding: 7bit\r\n"));
	free(out);
	free(text);
}

static void test_many_recipients_fold(void **state)
{
	(void)state;
	struct mime_mailbox *to = calloc(200, sizeof(*to));
	assert_non_null(to);
	for (size_t i = 0; i < 200; i++) {
		snprintf(to[i].address, sizeof(to[i].address), "person%zu@example.com", i);
		snprintf(to[i].name, sizeof(to[i].name), "Pérson Nümber %zu", i);
	}
	struct mime_build_input in = base_input();
	in.to = to;
	in.to_count = 200;
	size_t len = 0;
	char *out = build_ok(&in, &len);
	struct mime_summary s;
	parse_ok(out, len, &s);
	assert_int_equal(s.to_count, 200);
	assert_string_equal(s.to[199].name, "Pérson Nümber 199");
	mime_summary_free(&s);
	free(out);
	free(to);
}

static void test_refusals(void **state)
{
	(void)state;
	struct mime_build_input in;

	in = base_input();
	in.text = NULL;
	build_fails(&in, "no text and no HTML");

	static const char *const bad_values[] = {"a\r\nBcc: x@example.com", "a\nb", "a\rb",
	                                         "caf\xc3\xa9", "bell\a"};
	for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
		const struct mime_build_header h[] = {{"X-Campaign", bad_values[i]}};
		in = base_input();
		in.headers = h;
		in.header_count = 1;
		build_fails(&in, "header value");
	}
	static const char *const structural[] = {"From",
	                                         "to",
	                                         "CC",
	                                         "bcc",
	                                         "Subject",
	                                         "date",
	                                         "Message-ID",
	                                         "x-mailtrail-id",
	                                         "Sender",
	                                         "Reply-To",
	                                         "MIME-Version",
	                                         "Content-Type",
	                                         "content-transfer-encoding",
	                                         "Content-ID"};
	for (size_t i = 0; i < sizeof(structural) / sizeof(structural[0]); i++) {
		const struct mime_build_header h[] = {{structural[i], "x"}};
		in = base_input();
		in.headers = h;
		in.header_count = 1;
		build_fails(&in, "set by the builder");
	}
	static const char *const bad_names[] = {"", "X Campaign", "X:Campaign", "X-Cämpaign",
	                                        "X-Tab\t"};
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		const struct mime_build_header h[] = {{bad_names[i], "x"}};
		in = base_input();
		in.headers = h;
		in.header_count = 1;
		build_fails(&in, "invalid header name");
	}
	/* a word that no fold can bring under 998 octets */
	char *huge = malloc(1001);
	assert_non_null(huge);
	memset(huge, 'x', 1000);
	huge[1000] = '\0';
	const struct mime_build_header long_header[] = {{"X-Long", huge}};
	in = base_input();
	in.headers = long_header;
	in.header_count = 1;
	build_fails(&in, "too long");
	free(huge);

	in = base_input();
	in.subject = "Hello\r\nBcc: victim@example.com";
	build_fails(&in, "line break");

	const struct mime_mailbox crlf_name = {"anna@example.com", "Anna\r\nBcc: x@example.com"};
	in = base_input();
	in.from = &crlf_name;
	build_fails(&in, "line break");

	const struct mime_mailbox not_address = {"anna", "Anna"};
	in = base_input();
	in.from = &not_address;
	build_fails(&in, "not an email address");

	const struct mime_mailbox utf8_local = {"jürgen@example.de", ""};
	in = base_input();
	in.to = &utf8_local;
	build_fails(&in, "not ASCII");

	in = base_input();
	in.text = "caf\xe9";
	build_fails(&in, "UTF-8");

	in = base_input();
	in.message_id = "<abc@example.com>";
	build_fails(&in, "Message-ID");
	in.message_id = "no-at-sign";
	build_fails(&in, "Message-ID");
	in.message_id = NULL;
	build_fails(&in, "Message-ID");

	in = base_input();
	in.mailtrail_id = "a\r\nb";
	build_fails(&in, "line break");

	static const unsigned char data[] = "x";
	const struct mime_build_attachment bad_type[] = {{"a.eml", "message/rfc822", data, 1}};
	in = base_input();
	in.attachments = bad_type;
	in.attachment_count = 1;
	build_fails(&in, "content type");
	const struct mime_build_attachment junk_type[] = {{"a.bin", "application", data, 1}};
	in.attachments = junk_type;
	build_fails(&in, "content type");
	const struct mime_build_attachment crlf_name_att[] = {{"a\r\n.pdf", NULL, data, 1}};
	in.attachments = crlf_name_att;
	build_fails(&in, "line break");
	in.attachment_count = MT_ATTACHMENTS_MAX + 1;
	build_fails(&in, "too many attachments");
}

static void test_attachment_defaults(void **state)
{
	(void)state;
	static const unsigned char data[] = {0, 1, 2, 0xff};
	const struct mime_build_attachment att[] = {
	    {NULL, NULL, data, sizeof(data)},
	    {"plain name.txt", "text/plain", data, 0},
	};
	struct mime_build_input in = base_input();
	in.attachments = att;
	in.attachment_count = 2;
	size_t len = 0;
	char *out = build_ok(&in, &len);
	assert_non_null(strstr(out, "Content-Type: application/octet-stream\r\n"));
	assert_non_null(strstr(out, "filename=\"plain name.txt\""));
	struct mime_summary s;
	parse_ok(out, len, &s);
	assert_int_equal(s.attachment_count, 2);
	assert_int_equal(s.attachments[0].size, sizeof(data));
	assert_string_equal(s.attachments[1].name, "plain name.txt");
	assert_int_equal(s.attachments[1].size, 0);
	mime_summary_free(&s);
	free(out);
}

/* The summary kept at enqueue comes from the input, not from parsing what was built: it must be
 * what any reader of the built message finds (snippet, attachment names, types and sizes). */
static void test_summary_matches_parse(void **state)
{
	(void)state;
	static const unsigned char pdf[] = "%PDF-1.4 small";
	const struct mime_build_attachment atts[] = {
	    {"Lebenslauf Jürgen.pdf", "Application/PDF", pdf, sizeof(pdf) - 1},
	    {"notes.txt", NULL, (const unsigned char *)"a\nb\n", 4},
	    {"=?utf-8?q?odd?= name.bin", "application/octet-stream", pdf, 3},
	};
	char *long_text = malloc(300 * 1024);
	assert_non_null(long_text);
	for (size_t i = 0; i < 300 * 1024 - 1; i++)
		long_text[i] = "word  \t\nmore é "[i % 17];
	long_text[300 * 1024 - 1] = '\0';
	struct {
		const char *text, *html;
		size_t attachments;
	} cases[] = {
	    {"Hi John,\n\nshort ASCII lines only.\n", NULL, 0},
	    {"  Grüße aus München —  \r\n\tmit  Leerzeichen\u00a0und NBSP ", NULL, 3},
	    {NULL,
	     "<html><head><style>p{x:y}</style></head><body><p>Hello&nbsp;<b>there</b>"
	     "</p><td>a</td><td>b</td></body></html>",
	     1},
	    {"plain wins", "<p>html loses</p>", 2},
	    {"", "<p>html when the text is empty</p>", 0},
	    {long_text, NULL, 0},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct mime_build_input in = base_input();
		in.text = cases[c].text;
		in.html = cases[c].html;
		in.attachments = atts;
		in.attachment_count = cases[c].attachments;
		size_t len;
		char *out = build_ok(&in, &len);
		struct mime_summary parsed;
		parse_ok(out, len, &parsed);
		char snippet[MT_SNIPPET_BYTES + 1];
		struct mime_attachment *list;
		size_t count;
		assert_int_equal(mime_build_summary(&in, snippet, &list, &count), 0);
		assert_string_equal(snippet, parsed.snippet);
		assert_int_equal(count, parsed.attachment_count);
		for (size_t i = 0; i < count; i++) {
			assert_string_equal(list[i].name, parsed.attachments[i].name);
			assert_string_equal(list[i].type, parsed.attachments[i].type);
			assert_int_equal(list[i].size, parsed.attachments[i].size);
		}
		free(list);
		mime_summary_free(&parsed);
		free(out);
	}
	free(long_text);
}

/* Unfolded "Name: value" of the first field `name` in a header block, or NULL. */
static char *field_of(const char *text, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = text; p != NULL && *p != '\0'; p = strstr(p, "\r\n")) {
		if (p != text)
			p += 2;
		if (*p == '\r')
			return NULL; /* end of the header block */
		if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
			char *out = malloc(strlen(p) + 1);
			size_t k = 0;
			for (const char *q = p; *q != '\0'; q++) {
				if (q[0] == '\r' && q[1] == '\n') {
					if (q[2] != ' ' && q[2] != '\t')
						break;
					q++;
					continue;
				}
				out[k++] = *q;
			}
			out[k] = '\0';
			return out;
		}
	}
	return NULL;
}

/* The outbox stores a message without its route's fields and puts them before it at delivery:
 * head + rest must be the same message as the whole built at once. */
static void test_head_apart(void **state)
{
	(void)state;
	const struct mime_mailbox sender = {"relay@relay.example", ""};
	const struct mime_mailbox reply = {"juergen@example.de", "Jürgen Müller, Recruiter"};
	static const unsigned char pdf[] = "%PDF-1.4 small";
	const struct mime_build_attachment att = {"Lebenslauf.pdf", "application/pdf", pdf, 14};
	struct mime_build_input whole = base_input();
	whole.from = &from_utf8;
	whole.sender = &sender;
	whole.reply_to = &reply;
	whole.cc = cc_one;
	whole.cc_count = 1;
	whole.html = "<p>Hallo</p>";
	whole.attachments = &att;
	whole.attachment_count = 1;
	size_t whole_len;
	char *full = build_ok(&whole, &whole_len);

	struct mime_build_input rest_in = whole;
	rest_in.without_head = true;
	rest_in.from = rest_in.sender = rest_in.reply_to = NULL;
	rest_in.message_id = rest_in.mailtrail_id = NULL;
	char *rest;
	size_t rest_len;
	const char *error;
	assert_int_equal(mime_build_message(&rest_in, &rest, &rest_len, &error), 0);
	const struct mime_build_head head = {&from_utf8, &sender, &reply, whole.message_id,
	                                     whole.mailtrail_id};
	char *fields;
	size_t fields_len;
	assert_int_equal(mime_build_head_fields(&head, &fields, &fields_len, &error), 0);
	char *joined = malloc(fields_len + rest_len + 1);
	memcpy(joined, fields, fields_len);
	memcpy(joined + fields_len, rest, rest_len + 1);
	assert_wire_clean(joined, fields_len + rest_len);
	/* the rest has none of the head's fields, the head only those */
	static const char *const names[] = {"From", "Sender", "Reply-To", "Message-Id",
	                                    "X-Mailtrail-Id"};
	for (size_t i = 0; i < 5; i++) {
		char *a = field_of(full, names[i]);
		char *b = field_of(joined, names[i]);
		char *c = field_of(rest, names[i]);
		assert_non_null(a);
		assert_non_null(b);
		assert_string_equal(a, b);
		assert_null(c);
		free(a);
		free(b);
	}
	struct mime_summary x, y;
	parse_ok(full, whole_len, &x);
	parse_ok(joined, fields_len + rest_len, &y);
	assert_string_equal(x.message_id, y.message_id);
	assert_string_equal(x.mailtrail_id, y.mailtrail_id);
	assert_string_equal(x.from.address, y.from.address);
	assert_string_equal(x.from.name, y.from.name);
	assert_string_equal(x.subject, y.subject);
	assert_int_equal(x.to_count, y.to_count);
	assert_int_equal(x.cc_count, y.cc_count);
	assert_int_equal(x.date, y.date);
	assert_string_equal(x.snippet, y.snippet);
	assert_int_equal(x.attachment_count, y.attachment_count);
	mime_summary_free(&x);
	mime_summary_free(&y);
	/* mixing the two ways is refused */
	rest_in.from = &from_ascii;
	assert_int_equal(mime_build_message(&rest_in, &rest, &rest_len, &error), -1);
	free(joined);
	free(fields);
	free(rest);
	free(full);
}

/* The head's fast path writes what GMime would, byte for byte, and leaves to GMime what it
 * cannot write the same way. */
static void test_head_fast_path_is_gmime(void **state)
{
	(void)state;
	static const char *const names[] = {
	    "",
	    "Rita Rec",
	    "Smith, John",
	    "Rita \"Rec\" O'Neil",
	    "Zoë",
	    "a.b",
	    "x@y",
	    "Jane Frée, Recruiting",
	    "Ann O'Neil",
	    "Dr. Who",
	    "tab\there",
	    " lead",
	    "trail ",
	    "two  spaces",
	    "back\\slash",
	    "a!#$%&'*+-/=?^_`{|}~z",
	    "(comment)",
	    "semi;colon",
	    "A very long display name that will not fit on one line with the address at all",
	};
	static const char *const addresses[] = {
	    "rec@staffing.example", "r@x.io", "very.long.local.part.for.folding@staffing.example"};
	const struct mime_mailbox sender = {"bounces@platform.example", ""};
	for (size_t a = 0; a < sizeof(addresses) / sizeof(addresses[0]); a++) {
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			struct mime_mailbox from;
			memset(&from, 0, sizeof(from));
			snprintf(from.address, sizeof(from.address), "%s", addresses[a]);
			snprintf(from.name, sizeof(from.name), "%s", names[i]);
			for (int with = 0; with < 2; with++) {
				const struct mime_build_head head = {
				    &from, with ? &sender : NULL, with ? &from : NULL,
				    "mt.0123456789abcdef01234567@staffing.example",
				    "0123456789abcdef01234567"};
				char *fast, *slow;
				size_t fast_len, slow_len;
				const char *error;
				assert_int_equal(
				    mime_build_head_fields(&head, &fast, &fast_len, &error), 0);
				assert_int_equal(
				    mime_build_head_fields_gmime(&head, &slow, &slow_len, &error),
				    0);
				print_message("name '%s' address '%s'\n", names[i], addresses[a]);
				assert_int_equal(fast_len, slow_len);
				assert_memory_equal(fast, slow, slow_len);
				free(fast);
				free(slow);
			}
		}
	}
}

/* The message's fast path writes what GMime would, byte for byte, takes every input of the
 * common shape, and leaves to GMime what it cannot write the same way. */
static void test_message_fast_path_is_gmime(void **state)
{
	(void)state;
	struct case_text {
		const char *text;
		bool plain; /* the fast path writes it */
	};
	static const struct case_text subjects[] = {
	    {NULL, true},
	    {"bench api 1", true},
	    {"Re: the role (senior) - \"urgent\"; call me @ 5!", true},
	    {"a!#$%&'*+-/=^_`{|}~z [x] <y> \\ , . : ?", true},
	    {"", false},
	    {"Zoë's offer", false},
	    {"=?utf-8?q?looks_encoded?=", false},
	    {"two  spaces", false},
	    {" lead", false},
	    {"trail ", false},
	    {"tab\there", false},
	    {"A subject long enough that GMime has to fold it onto a second line of the header",
	     false},
	};
	static const struct case_text bodies[] = {
	    {"line one\nline two\n", true},
	    {"no newline at the end", true},
	    {"crlf\r\nlines\r\n\r\n", true},
	    {"lone\rcr\r", true},
	    {"\n\nblank lines first\n\n\n", true},
	    {".leading dot\n.\n", true},
	    {"From the start\n>quoted\n", true},
	    {"trailing spaces   \nand\ttabs\t\n", true},
	    {"", false},
	    {"caf\xc3\xa9 au lait\n", false},
	    {"=3D already\n", true},
	};
	struct mailbox_case {
		const char *address;
		const char *name;
		bool plain;
	};
	static const struct mailbox_case boxes[] = {
	    {"rcpt@bench.example", "", true},
	    {"b@x.example", "Bob Smith", true},
	    {"c@x.example", "Smith, John", true},
	    {"d@x.example", "Rita \"Rec\" O'Neil", true},
	    {"e@x.example", "Zoë", false},
	    {"f@x.example", "two  spaces", false},
	    {"G@X.Example", "", true},
	    {"very.long.local.part.for.folding.tests@a-rather-long-domain.example", "Long Name",
	     false},
	};
	/* the long line: 999 octets */
	char long_line[1001];
	memset(long_line, 'a', 999);
	long_line[999] = '\0';
	const size_t nboxes = sizeof(boxes) / sizeof(boxes[0]);
	size_t fast_count = 0;
	for (size_t si = 0; si < sizeof(subjects) / sizeof(subjects[0]); si++) {
		for (size_t bi = 0; bi <= sizeof(bodies) / sizeof(bodies[0]); bi++) {
			bool long_body = bi == sizeof(bodies) / sizeof(bodies[0]);
			const char *body = long_body ? long_line : bodies[bi].text;
			bool body_plain = !long_body && bodies[bi].plain;
			for (size_t ti = 0; ti < nboxes; ti++) {
				for (int shape = 0; shape < 5; shape++) {
					/* text, html, both; one To + one Cc; two To */
					struct mime_mailbox to[2], cc[1];
					memset(to, 0, sizeof(to));
					memset(cc, 0, sizeof(cc));
					size_t second = (ti + 1) % nboxes;
					snprintf(to[0].address, sizeof(to[0].address), "%s",
					         boxes[ti].address);
					snprintf(to[0].name, sizeof(to[0].name), "%s",
					         boxes[ti].name);
					snprintf(to[1].address, sizeof(to[1].address), "%s",
					         boxes[second].address);
					snprintf(to[1].name, sizeof(to[1].name), "%s",
					         boxes[second].name);
					cc[0] = to[1];
					struct mime_build_input in = {
					    .without_head = true,
					    .to = to,
					    .to_count = shape == 4 ? 2 : 1,
					    .cc = cc,
					    .cc_count = shape == 3 ? 1 : 0,
					    .subject = subjects[si].text,
					    .text = shape == 1 ? NULL : body,
					    .html = shape == 1 || shape == 2 ? body : NULL,
					    .date =
					        1765000000 + (int64_t)(si * 86400 * 37 + ti * 3601),
					};
					char *fast = NULL, *slow = NULL, *plain = NULL;
					size_t fast_len = 0, slow_len = 0, plain_len = 0;
					const char *e1 = NULL, *e2 = NULL;
					int rc_fast =
					    mime_build_message(&in, &fast, &fast_len, &e1);
					int rc_slow =
					    mime_build_message_gmime(&in, &slow, &slow_len, &e2);
					bool taken =
					    mime_build_message_plain(&in, &plain, &plain_len);
					bool boxes_plain =
					    boxes[ti].plain &&
					    (in.to_count + in.cc_count < 2 || boxes[second].plain);
					bool want = subjects[si].plain && body_plain &&
					            boxes_plain && shape != 2;
					print_message("subject %zu body %zu to %zu shape %d\n", si,
					              bi, ti, shape);
					assert_int_equal(rc_fast, rc_slow);
					/* both through GMime, each with a boundary of its own */
					if (rc_slow == 0 && shape != 2) {
						assert_int_equal(fast_len, slow_len);
						assert_memory_equal(fast, slow, slow_len);
					}
					/* a pair of plain recipients can still be too long for one
					 * line */
					if (want && !taken) {
						size_t line =
						    strlen("To: ") + strlen(to[0].address) +
						    strlen(to[0].name) + strlen(to[1].address) +
						    strlen(to[1].name) + 12;
						assert_true(in.to_count + in.cc_count == 2 &&
						            line > 60);
					} else {
						assert_int_equal(taken, want);
					}
					if (taken) {
						fast_count++;
						assert_int_equal(plain_len, slow_len);
						assert_memory_equal(plain, slow, slow_len);
					}
					free(fast);
					free(slow);
					free(plain);
				}
			}
		}
	}
	assert_true(fast_count > 500);
}

int main(void)
{
	mime_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ascii_round_trip),
	    cmocka_unit_test(test_unicode_round_trip),
	    cmocka_unit_test(test_html_only),
	    cmocka_unit_test(test_alternative),
	    cmocka_unit_test(test_attachments),
	    cmocka_unit_test(test_reply_to_sender_extra_headers),
	    cmocka_unit_test(test_long_lines),
	    cmocka_unit_test(test_many_recipients_fold),
	    cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_attachment_defaults),
	    cmocka_unit_test(test_summary_matches_parse),
	    cmocka_unit_test(test_head_apart),
	    cmocka_unit_test(test_head_fast_path_is_gmime),
	    cmocka_unit_test(test_message_fast_path_is_gmime),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
