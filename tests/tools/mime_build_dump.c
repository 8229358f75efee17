/* mime-build-dump DIR [CASE]: builds the fixed messages below with mime_build_message() and
 * writes each to DIR/CASE.eml, so that tests/integration/test_mime_build_python.py can read
 * them with an independent parser (Python's email package). The expected values live in that
 * script; keep the two in step. */
#include "mime/address.h"
#include "mime/build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DATE 1700000000 /* Tue, 14 Nov 2023 22:13:20 +0000 */

static const struct mime_mailbox from_ascii = {"anna@example.com", "Anna Smith"};
static const struct mime_mailbox from_utf8 = {"juergen@example.de", "Jürgen Müller"};
static const struct mime_mailbox to_special[] = {
    {"john@example.com", "Smith, John (Boss)"},
    {"li@example.cn", "李小龙"},
};
static const struct mime_mailbox cc_plain[] = {{"cc@example.org", ""}};
static const struct mime_mailbox sender = {"relay@example.net", "Relay"};
static const struct mime_mailbox reply_to = {"replies@example.com", "Ånswers"};

static unsigned char pdf[3000];
static unsigned char png[70];

static const struct mime_build_attachment attachments[] = {
    {"Lebenslauf Jürgen €.pdf", "application/pdf", pdf, sizeof(pdf)},
    {"photo \"me\".png", "image/png", png, sizeof(png)},
};

static const struct mime_build_header unsubscribe[] = {
    {"List-Unsubscribe",
     "<https://mailtrail.example.com/u/"
     "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef>, "
     "<mailto:unsubscribe@mailtrail.example.com?subject=0123456789abcdef>"},
    {"List-Unsubscribe-Post", "List-Unsubscribe=One-Click"},
};

struct dump_case {
	const char *name;
	struct mime_build_input input;
};

static const struct dump_case cases[] = {
    {"ascii_text",
     {.from = &from_ascii,
      .to = to_special,
      .to_count = 1,
      .subject = "Hello there",
      .text = "Hi John,\n\nshort ASCII lines only.\n",
      .message_id = "ascii.1@mailtrail.example.com",
      .mailtrail_id = "msg_ascii1",
      .date = DATE}},
    {"unicode_text",
     {.from = &from_utf8,
      .to = to_special,
      .to_count = 2,
      .cc = cc_plain,
      .cc_count = 1,
      .subject = "Zusammenfassung – Übersicht 🎉",
      .text = "Grüße aus Köln – 🎉\r\nZweite Zeile.\r\n",
      .message_id = "unicode.1@mailtrail.example.com",
      .mailtrail_id = "msg_unicode1",
      .date = DATE}},
    {"html_only",
     {.from = &from_ascii,
      .to = to_special,
      .to_count = 1,
      .subject = "HTML only",
      .html = "<p>Hello <b>world</b> &amp; Grüße</p>\n",
      .message_id = "html.1@mailtrail.example.com",
      .mailtrail_id = "msg_html1",
      .date = DATE}},
    {"alternative",
     {.from = &from_utf8,
      .to = to_special,
      .to_count = 1,
      .subject = "Both parts",
      .text = "Plain version\n",
      .html = "<p>HTML version</p>\n",
      .message_id = "alt.1@mailtrail.example.com",
      .mailtrail_id = "msg_alt1",
      .date = DATE}},
    {"attachments",
     {.from = &from_utf8,
      .to = to_special,
      .to_count = 1,
      .subject = "Bewerbung",
      .text = "Anbei mein Lebenslauf.\n",
      .html = "<p>Anbei mein Lebenslauf.</p>\n",
      .attachments = attachments,
      .attachment_count = 2,
      .message_id = "att.1@mailtrail.example.com",
      .mailtrail_id = "msg_att1",
      .date = DATE}},
    {"headers",
     {.from = &from_ascii,
      .sender = &sender,
      .reply_to = &reply_to,
      .to = to_special,
      .to_count = 1,
      .subject = "Newsletter with a rather long subject line that GMime has to fold somewhere "
                 "along the way, ümlaut included",
      .text = "A line that is longer than seventy-eight characters but still well under the "
              "limit of 998 octets, so it stays 7bit.\n",
      .message_id = "hdr.1@mailtrail.example.com",
      .mailtrail_id = "msg_hdr1",
      .date = DATE,
      .headers = unsubscribe,
      .header_count = 2}},
};

static int dump(const char *dir, const struct dump_case *c)
{
	char *out = NULL;
	size_t len = 0;
	const char *error = NULL;
	if (mime_build_message(&c->input, &out, &len, &error) < 0) {
		fprintf(stderr, "%s: %s\n", c->name, error);
		return -1;
	}
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s.eml", dir, c->name);
	FILE *f = fopen(path, "wb");
	if (f == NULL || fwrite(out, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		free(out);
		return -1;
	}
	free(out);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: mime-build-dump DIR [CASE]\n");
		return 2;
	}
	/* byte patterns the Python side recomputes */
	for (size_t i = 0; i < sizeof(pdf); i++)
		pdf[i] = (unsigned char)(i * 7 + 3);
	for (size_t i = 0; i < sizeof(png); i++)
		png[i] = (unsigned char)(255 - i);
	mime_init();
	int found = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (argc == 3 && strcmp(argv[2], cases[i].name) != 0)
			continue;
		found++;
		if (dump(argv[1], &cases[i]) < 0)
			return 1;
	}
	if (found == 0) {
		fprintf(stderr, "no case %s\n", argv[2]);
		return 2;
	}
	return 0;
}
