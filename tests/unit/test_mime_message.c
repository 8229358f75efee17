#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "mime/address.h"
#include "mime/message.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#ifndef MT_TEST_DATA_DIR
#error "MT_TEST_DATA_DIR must name tests/data"
#endif

static char *read_file(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	size_t cap = 4096, len = 0;
	char *data = malloc(cap);
	size_t n;
	while (data != NULL && (n = fread(data + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap)
			data = realloc(data, cap *= 2);
	}
	fclose(f);
	*len_r = len;
	return data;
}

static json_t *mailbox_json(const struct mime_mailbox *mb)
{
	return json_pack("{s:s,s:s}", "address", mb->address, "name", mb->name);
}

static json_t *mailboxes_json(const struct mime_mailbox *list, size_t count)
{
	json_t *a = json_array();
	for (size_t i = 0; i < count; i++)
		json_array_append_new(a, mailbox_json(&list[i]));
	return a;
}

/* The summary in the shape of tests/data/NAME.expected.json. */
static json_t *summary_json(const struct mime_summary *s)
{
	json_t *date = json_null();
	if (s->date != 0) {
		char text[32];
		time_t t = (time_t)s->date;
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
		date = json_string(text);
	}
	json_t *refs = json_array();
	for (size_t i = 0; i < s->reference_count; i++)
		json_array_append_new(refs, json_string(s->references[i]));
	json_t *atts = json_array();
	for (size_t i = 0; i < s->attachment_count; i++)
		json_array_append_new(atts,
		                      json_pack("{s:s,s:s,s:I}", "name", s->attachments[i].name,
		                                "type", s->attachments[i].type, "size",
		                                (json_int_t)s->attachments[i].size));
	char aliases[MT_MESSAGE_ALIASES_MAX][MT_MESSAGE_KEY_MAX];
	size_t n = mime_message_aliases(s, aliases);
	json_t *al = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(al, json_string(aliases[i]));
	return json_pack("{s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:s,s:s,s:o,s:s,s:o,s:o}", "message_id",
	                 s->message_id, "mailtrail_id", s->mailtrail_id, "date", date, "from",
	                 mailbox_json(&s->from), "to", mailboxes_json(s->to, s->to_count), "cc",
	                 mailboxes_json(s->cc, s->cc_count), "bcc",
	                 mailboxes_json(s->bcc, s->bcc_count), "subject", s->subject, "in_reply_to",
	                 s->in_reply_to, "references", refs, "snippet", s->snippet, "attachments",
	                 atts, "aliases", al);
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_corpus(void **state)
{
	(void)state;
	DIR *dir = opendir(MT_TEST_DATA_DIR);
	assert_non_null(dir);
	char *names[256];
	size_t count = 0;
	struct dirent *de;
	while ((de = readdir(dir)) != NULL && count < 256) {
		size_t len = strlen(de->d_name);
		if (len > 4 && strcmp(de->d_name + len - 4, ".eml") == 0)
			names[count++] = strdup(de->d_name);
	}
	closedir(dir);
	assert_true(count >= 20);
	qsort(names, count, sizeof(names[0]), compare_names);
	size_t failures = 0;
	for (size_t i = 0; i < count; i++) {
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", MT_TEST_DATA_DIR, names[i]);
		size_t len = 0;
		char *data = read_file(path, &len);
		assert_non_null(data);
		struct mime_summary s;
		const char *error = NULL;
		if (mime_parse_message(data, len, &s, &error) != 0) {
			print_error("%s: %s\n", names[i], error);
			failures++;
			free(data);
			continue;
		}
		free(data);
		json_t *got = summary_json(&s);
		mime_summary_free(&s);
		snprintf(path, sizeof(path), "%s/%.*s.expected.json", MT_TEST_DATA_DIR,
		         (int)(strlen(names[i]) - 4), names[i]);
		json_error_t jerr;
		json_t *want = json_load_file(path, 0, &jerr);
		if (want == NULL) {
			print_error("%s: %s\n", path, jerr.text);
			failures++;
		} else if (!json_equal(got, want)) {
			char *g = json_dumps(got, JSON_INDENT(2) | JSON_ENSURE_ASCII);
			char *w = json_dumps(want, JSON_INDENT(2) | JSON_ENSURE_ASCII);
			print_error("%s differs\n--- got\n%s\n--- expected\n%s\n", names[i], g, w);
			free(g);
			free(w);
			failures++;
		}
		json_decref(got);
		json_decref(want);
		free(names[i]);
	}
	assert_int_equal(failures, 0);
}

static void parse_ok(const char *text, struct mime_summary *s)
{
	const char *error = NULL;
	if (mime_parse_message(text, strlen(text), s, &error) != 0)
		fail_msg("not parsed: %s", error);
}

static void test_aliases(void **state)
{
	(void)state;
	char aliases[MT_MESSAGE_ALIASES_MAX][MT_MESSAGE_KEY_MAX];
	struct mime_summary s;

	parse_ok("Message-ID: <a1@x.example>\nX-Mailtrail-Id: msg_1\n\n", &s);
	assert_int_equal(mime_message_aliases(&s, aliases), 2);
	assert_string_equal(aliases[0], "mid:a1@x.example");
	assert_string_equal(aliases[1], "mt:msg_1");
	mime_summary_free(&s);

	parse_ok("Message-ID:   <a2@x.example>  \nSubject: hi\n\n", &s);
	assert_int_equal(mime_message_aliases(&s, aliases), 1);
	assert_string_equal(aliases[0], "mid:a2@x.example");
	mime_summary_free(&s);

	/* SHA-256 of "1767225600\0jack@candidates.example\0a@x.example\0b@x.example\0Hello\0":
	 * To sorted, whatever the order in the header */
	parse_ok("Date: Thu, 01 Jan 2026 00:00:00 +0000\nFrom: Jack <Jack@Candidates.example>\n"
	         "To: b@x.example, A@X.example\nSubject: =?utf-8?Q?Hello?=\n\n",
	         &s);
	assert_int_equal(mime_message_aliases(&s, aliases), 1);
	assert_string_equal(aliases[0],
	                    "sha:1328b6b8dd23a172bbf0f3822b459e0bc22d6b86faee1ae3d7dd2c58385e4088");
	mime_summary_free(&s);

	/* nothing but an unreadable date: the digest of the empty fields */
	parse_ok("Date: never\n\n", &s);
	assert_int_equal(mime_message_aliases(&s, aliases), 1);
	assert_string_equal(aliases[0],
	                    "sha:4f8320d91e97d546dc799848e8d218e18050af7a7964e0414de9e5479006d7e3");
	mime_summary_free(&s);
}

static void test_parse_headers(void **state)
{
	(void)state;
	static const char headers[] = "From: Jack Smith <jack@candidates.example>\r\n"
	                              "To: anna.berg@staffing.example\r\n"
	                              "Subject: =?ISO-8859-1?Q?R=E9sum=E9?=\r\n"
	                              "Date: Mon, 02 Mar 2026 10:00:00 +0100\r\n"
	                              "Message-ID: <imap.1@candidates.example>\r\n"
	                              "Content-Type: multipart/alternative; boundary=x\r\n\r\n";
	static const char text[] = "<html><head><style>p{}</style></head><body><p>Bonjour =\r\n"
	                           "&amp; merci,</p><p>Fran=E7ois =3D</p></body></html>\r\n";
	struct mime_summary s;
	const char *error = NULL;
	assert_int_equal(mime_parse_headers(headers, strlen(headers), text, strlen(text),
	                                    "text/html; charset=\"iso-8859-1\"", "Quoted-Printable",
	                                    &s, &error),
	                 0);
	assert_string_equal(s.message_id, "imap.1@candidates.example");
	assert_string_equal(s.subject, "Résumé");
	assert_string_equal(s.from.address, "jack@candidates.example");
	assert_int_equal(s.to_count, 1);
	assert_int_equal(s.date, 1772442000);
	assert_string_equal(s.snippet, "Bonjour & merci, François =");
	assert_int_equal(s.attachment_count, 0);
	mime_summary_free(&s);

	/* without a text, and with a header block lacking its empty line */
	static const char bare[] = "Subject: only\nFrom: a@b.example";
	assert_int_equal(mime_parse_headers(bare, strlen(bare), NULL, 0, NULL, NULL, &s, &error),
	                 0);
	assert_string_equal(s.subject, "only");
	assert_string_equal(s.from.address, "a@b.example");
	assert_string_equal(s.snippet, "");
	mime_summary_free(&s);

	/* base64 plain text in a charset GMime converts */
	static const char b64[] = "8sXawM3FIA==\r\n"; /* KOI8-R "Резюме " */
	assert_int_equal(mime_parse_headers(headers, strlen(headers), b64, strlen(b64),
	                                    "text/plain; charset=koi8-r", "base64", &s, &error),
	                 0);
	assert_string_equal(s.snippet, "Резюме");
	mime_summary_free(&s);

	assert_int_equal(mime_parse_headers("hello", 5, NULL, 0, NULL, NULL, &s, &error), -1);
}

static void expect_not_message(const char *data, size_t len)
{
	struct mime_summary s;
	const char *error = NULL;
	if (mime_parse_message(data, len, &s, &error) != -1)
		fail_msg("parsed as a message: \"%.*s\"", (int)len, data);
	assert_non_null(error);
	assert_null(s.to);
	assert_int_equal(s.to_count, 0);
}

static void test_not_a_message(void **state)
{
	(void)state;
	expect_not_message("", 0);
	expect_not_message("hello world\n", 12);
	expect_not_message("\n\nFrom: a@b.example\n", 20);
	static const char no_fields[] =
	    "X-Spam: yes\nContent-Type: text/plain\n\nFrom: a@b.example\n";
	expect_not_message(no_fields, strlen(no_fields));
	expect_not_message("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);
	static const char json[] = "{\"from\": \"a@b.example\", \"subject\": \"x\"}";
	expect_not_message(json, strlen(json));
}

/* Runs `check` on every .eml of tests/data (at least 20 of them): the failures it counted. */
static size_t corpus_each(size_t (*check)(const char *name, const char *data, size_t len))
{
	DIR *dir = opendir(MT_TEST_DATA_DIR);
	assert_non_null(dir);
	size_t failures = 0, count = 0;
	struct dirent *de;
	while ((de = readdir(dir)) != NULL) {
		size_t name_len = strlen(de->d_name);
		if (name_len <= 4 || strcmp(de->d_name + name_len - 4, ".eml") != 0)
			continue;
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", MT_TEST_DATA_DIR, de->d_name);
		size_t len = 0;
		char *data = read_file(path, &len);
		assert_non_null(data);
		failures += check(de->d_name, data, len);
		free(data);
		count++;
	}
	closedir(dir);
	assert_true(count >= 20);
	return failures;
}

/* ---- mime_parse_fetched: the same summary as mime_parse_message -------------------------- */

/* The fields IMAP sync asks for (engine/imap_message.c), as a server returns them: in the
 * message's order, verbatim with their folds, then the empty line. */
static const char *const fetched_fields[] = {"from",
                                             "to",
                                             "cc",
                                             "bcc",
                                             "date",
                                             "message-id",
                                             "subject",
                                             "in-reply-to",
                                             "references",
                                             "x-mailtrail-id",
                                             "mime-version",
                                             "content-type",
                                             "content-transfer-encoding"};

static bool fetched_field(const char *line, size_t len)
{
	const char *colon = memchr(line, ':', len);
	if (colon == NULL)
		return false;
	size_t n = (size_t)(colon - line);
	for (size_t i = 0; i < sizeof(fetched_fields) / sizeof(fetched_fields[0]); i++)
		if (strlen(fetched_fields[i]) == n && strncasecmp(line, fetched_fields[i], n) == 0)
			return true;
	return false;
}

/* `data` as the sync reassembles it: the fetched fields, the empty line, the text. */
static char *as_fetched(const char *data, size_t len, size_t *len_r)
{
	char *out = malloc(len + 3);
	size_t n = 0, pos = 0;
	bool keep = false;
	while (pos < len) {
		const char *nl = memchr(data + pos, '\n', len - pos);
		size_t end = nl != NULL ? (size_t)(nl - data) + 1 : len;
		if (data[pos] == '\n' ||
		    (data[pos] == '\r' && pos + 1 < len && data[pos + 1] == '\n'))
			break;
		if (data[pos] != ' ' && data[pos] != '\t')
			keep = fetched_field(data + pos, end - pos);
		if (keep) {
			memcpy(out + n, data + pos, end - pos);
			n += end - pos;
		}
		pos = end;
	}
	memcpy(out + n, "\r\n", 2);
	n += 2;
	if (pos < len) {
		const char *nl = memchr(data + pos, '\n', len - pos);
		pos = nl != NULL ? (size_t)(nl - data) + 1 : len;
		memcpy(out + n, data + pos, len - pos);
		n += len - pos;
	}
	out[n] = '\0';
	*len_r = n;
	return out;
}

/* Both parsers on the same bytes: the same result, the same summary. */
static bool same_parse(const char *what, const char *data, size_t len)
{
	struct mime_summary full, fetched;
	const char *e1 = NULL, *e2 = NULL;
	int r1 = mime_parse_message(data, len, &full, &e1);
	int r2 = mime_parse_fetched(data, len, &fetched, &e2);
	if (r1 != r2) {
		print_error("%s: mime_parse_message %d (%s), mime_parse_fetched %d (%s)\n", what,
		            r1, e1 != NULL ? e1 : "", r2, e2 != NULL ? e2 : "");
		if (r1 == 0)
			mime_summary_free(&full);
		if (r2 == 0)
			mime_summary_free(&fetched);
		return false;
	}
	if (r1 < 0)
		return true;
	json_t *a = summary_json(&full), *b = summary_json(&fetched);
	bool same = json_equal(a, b);
	if (!same) {
		char *x = json_dumps(a, JSON_INDENT(2) | JSON_ENSURE_ASCII);
		char *y = json_dumps(b, JSON_INDENT(2) | JSON_ENSURE_ASCII);
		print_error("%s differs\n--- mime_parse_message\n%s\n--- mime_parse_fetched\n%s\n",
		            what, x, y);
		free(x);
		free(y);
	}
	json_decref(a);
	json_decref(b);
	mime_summary_free(&full);
	mime_summary_free(&fetched);
	return same;
}

static size_t fetched_check(const char *name, const char *data, size_t len)
{
	size_t flen = 0, failures = 0;
	char *fetched = as_fetched(data, len, &flen);
	char what[600];
	snprintf(what, sizeof(what), "%s (fetched fields)", name);
	failures += !same_parse(what, fetched, flen);
	/* every field, as an add-in or a dropbox would have it: the same too */
	failures += !same_parse(name, data, len);
	free(fetched);
	return failures;
}

static void test_fetched_corpus(void **state)
{
	(void)state;
	assert_int_equal(corpus_each(fetched_check), 0);
}

/* Header blocks GMime's parser reads in its own way: the split reads them alike. */
static void test_fetched_edges(void **state)
{
	(void)state;
	static const char *const cases[] = {
	    /* a line without a colon, a name with a blank, blanks before a colon */
	    "From: a@b.example\r\njunk line\r\nSubject : hi\r\n there\r\nBad Name: x@y.example\r\n"
	    "To: c@d.example\r\n\r\nbody text\r\n",
	    /* LF only, no Content-Type (text/plain by default), no body */
	    "From: \"Doe, Jane\" <jane@b.example>\nSubject: =?UTF-8?B?w4RuZGVydW5n?=\n\n",
	    "Subject: only a subject\r\n",
	    /* a multipart whose boundary parameter is folded */
	    "From: a@b.example\r\nContent-Type: multipart/alternative;\r\n\tboundary=\"b1\"\r\n\r\n"
	    "preamble\r\n--b1\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe\r\n--b1\r\n"
	    "Content-Type: text/html\r\n\r\n<p>x</p>\r\n--b1--\r\n",
	    /* a single part that is an attachment, named in Content-Type only */
	    "From: a@b.example\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n",
	    /* a forwarded message as the whole body */
	    "From: a@b.example\r\nContent-Type: message/rfc822\r\n\r\nFrom: c@d.example\r\n"
	    "Subject: inner\r\n\r\ninner text\r\n",
	    /* two Content-Types and two Subjects: the same one wins */
	    "Subject: first\r\nSubject: second\r\nContent-Type: text/html\r\n"
	    "Content-Type: text/plain\r\nFrom: a@b.example\r\n\r\n<b>bold</b> text\r\n",
	    /* a continuation with no field before it, then fields */
	    " stray continuation\r\nFrom: a@b.example\r\nSubject: s\r\n\r\nx\r\n",
	    /* single text parts: a folded type, an encoding with blanks and in another case */
	    "From: a@b.example\r\nContent-Type: text/plain;\r\n charset=\"iso-8859-1\"\r\n"
	    "Content-Transfer-Encoding:  Quoted-Printable \r\n\r\nGr=FC=DF  Gott=\r\n zusammen\r\n",
	    "From: a@b.example\r\nContent-Type: TEXT/HTML; charset=windows-1252\r\n"
	    "Content-Transfer-Encoding: "
	    "base64\r\n\r\nPHA+SGFsbG8gPGI+V2VsdDwvYj4gk3F1b3RlZJQ8L3A+\r\n",
	    "From: a@b.example\r\nContent-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\n",
	    "From: a@b.example\r\nContent-Type: text/plain; name=notes.txt\r\n\r\nnotes\r\n",
	    "From: a@b.example\r\nContent-Type: text/plain\r\nContent-Disposition: attachment;"
	    " filename=a.txt\r\n\r\nattached text\r\n",
	    "From: a@b.example\r\nContent-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: "
	    "7bit\r\n\r\naGVsbG8=\r\n",
	    "From: a@b.example\r\nContent-Type: garbage\r\n\r\nwhat is this\r\n",
	    "From: a@b.example\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\xff\xfe bad "
	    "bytes \xc3\xa9 and \xe2\x80\x8b zero width\r\n",
	    "From: a@b.example\r\nContent-Type: text/plain; charset=x-unknown-charset\r\n\r\n"
	    "unknown\r\n",
	    /* not messages */
	    "hello world\n",
	    "X-Spam: yes\nContent-Type: text/plain\n\nFrom: a@b.example\n",
	    "\n\nFrom: a@b.example\n",
	};
	size_t failures = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char what[32];
		snprintf(what, sizeof(what), "case %zu", i);
		failures += !same_parse(what, cases[i], strlen(cases[i]));
	}
	/* a header block past MT_HEADER_BLOCK_MAX: fields after the cap are not read by either */
	size_t big = MT_HEADER_BLOCK_MAX + 4096;
	char *block = malloc(big + 256);
	size_t n = (size_t)sprintf(block, "Subject: big\r\nX-Filler: ");
	while (n < big) {
		memcpy(block + n,
		       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n ",
		       70);
		n += 70;
	}
	n += (size_t)sprintf(block + n, "x\r\nFrom: late@b.example\r\n\r\ntext\r\n");
	failures += !same_parse("over the header cap", block, n);
	struct mime_summary s;
	const char *error;
	assert_int_equal(mime_parse_fetched(block, n, &s, &error), 0);
	assert_string_equal(s.from.address, "");
	mime_summary_free(&s);
	free(block);
	/* more Content-Types than MT_MIME_CONTENT_TYPES_MAX: no body is parsed by either */
	size_t parts = MT_MIME_CONTENT_TYPES_MAX + 2;
	char *many = malloc(parts * 64 + 256);
	n = (size_t)sprintf(many, "From: a@b.example\r\nContent-Type: multipart/mixed; "
	                          "boundary=z\r\n\r\n");
	for (size_t i = 0; i < parts; i++)
		n += (size_t)sprintf(many + n,
		                     "--z\r\nContent-Type: text/plain\r\n\r\npart %zu\r\n", i);
	n += (size_t)sprintf(many + n, "--z--\r\n");
	failures += !same_parse("too many parts", many, n);
	assert_int_equal(mime_parse_fetched(many, n, &s, &error), 0);
	assert_string_equal(s.snippet, "");
	mime_summary_free(&s);
	free(many);
	assert_int_equal(failures, 0);
}

static void test_participant_cap(void **state)
{
	(void)state;
	size_t cap = 64 * 1024, len = 0;
	char *msg = malloc(cap);
	assert_non_null(msg);
	len +=
	    (size_t)snprintf(msg + len, cap - len, "From: a@staffing.example\nSubject: many\nTo: ");
	for (int i = 0; i < 600; i++)
		len += (size_t)snprintf(msg + len, cap - len, "%sr%d@candidates.example",
		                        i > 0 ? ",\n " : "", i);
	len += (size_t)snprintf(msg + len, cap - len, "\nCc: c@candidates.example\n\nbody\n");
	struct mime_summary s;
	const char *error = NULL;
	assert_int_equal(mime_parse_message(msg, len, &s, &error), 0);
	assert_string_equal(s.from.address, "a@staffing.example");
	assert_int_equal(1 + s.to_count + s.cc_count + s.bcc_count, MT_MESSAGE_PARTICIPANTS_MAX);
	assert_int_equal(s.to_count, MT_MESSAGE_PARTICIPANTS_MAX - 1);
	assert_string_equal(s.to[498].address, "r498@candidates.example");
	mime_summary_free(&s);
	free(msg);
}

static size_t utf8_chars(const char *s)
{
	size_t n = 0;
	for (; *s != '\0'; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

static void test_snippet_utf8_boundary(void **state)
{
	(void)state;
	static const char *const chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x8e\x89"};
	for (size_t k = 0; k < 3; k++) {
		char msg[8192];
		size_t len = (size_t)snprintf(msg, sizeof(msg),
		                              "Subject: x\nContent-Type: text/plain; "
		                              "charset=utf-8\n\n  x");
		for (int i = 0; i < 700; i++)
			len += (size_t)snprintf(msg + len, sizeof(msg) - len, "%s", chars[k]);
		struct mime_summary s;
		const char *error = NULL;
		assert_int_equal(mime_parse_message(msg, len, &s, &error), 0);
		assert_int_equal(utf8_chars(s.snippet), MT_SNIPPET_CHARS);
		assert_int_equal(strlen(s.snippet), 1 + (MT_SNIPPET_CHARS - 1) * strlen(chars[k]));
		assert_memory_equal(s.snippet + strlen(s.snippet) - strlen(chars[k]), chars[k],
		                    strlen(chars[k]));
		mime_summary_free(&s);
	}

	/* a space that would be the 501st character is not kept, nor one at the end */
	char msg[2048];
	size_t len = (size_t)snprintf(msg, sizeof(msg), "Subject: x\n\n");
	for (int i = 0; i < 250; i++)
		len += (size_t)snprintf(msg + len, sizeof(msg) - len, "a ");
	len += (size_t)snprintf(msg + len, sizeof(msg) - len, "\n\n\tb");
	struct mime_summary s;
	const char *error = NULL;
	assert_int_equal(mime_parse_message(msg, len, &s, &error), 0);
	assert_int_equal(strlen(s.snippet), 499);
	assert_int_equal(s.snippet[498], 'a');
	mime_summary_free(&s);

	/* invalid UTF-8 declared as UTF-8 comes out valid */
	static const char bad[] = "Subject: x\nContent-Type: text/plain; charset=utf-8\n\n"
	                          "ok \xff\xfe \xc3 end\n";
	assert_int_equal(mime_parse_message(bad, strlen(bad), &s, &error), 0);
	assert_string_equal(s.snippet, "ok \xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd end");
	mime_summary_free(&s);
}

static void test_name_cap(void **state)
{
	(void)state;
	char msg[4096];
	size_t len = (size_t)snprintf(msg, sizeof(msg), "Subject: x\nFrom: \"");
	for (int i = 0; i < 150; i++)
		len += (size_t)snprintf(msg + len, sizeof(msg) - len, "\xe2\x82\xac");
	len += (size_t)snprintf(msg + len, sizeof(msg) - len, "\" <euro@a.example>\n\n");
	struct mime_summary s;
	const char *error = NULL;
	assert_int_equal(mime_parse_message(msg, len, &s, &error), 0);
	assert_string_equal(s.from.address, "euro@a.example");
	assert_int_equal(strlen(s.from.name), 198); /* 66 whole characters of 3 bytes */
	mime_summary_free(&s);
}

static void test_address_quirks(void **state)
{
	(void)state;
	struct mime_summary s;
	parse_ok("From: john\nTo: john, a@x.example;b@x.example, \"x\" <bad, c@x.example\n"
	         "Cc: A@X.example, a@x.example\nBcc: undisclosed-recipients:;\n\n",
	         &s);
	assert_string_equal(s.from.address, "");
	assert_int_equal(s.to_count, 3);
	assert_string_equal(s.to[0].address, "a@x.example");
	assert_string_equal(s.to[1].address, "b@x.example");
	assert_string_equal(s.to[2].address, "c@x.example");
	assert_int_equal(s.cc_count, 1);
	assert_int_equal(s.bcc_count, 0);
	mime_summary_free(&s);
}

/* ---- the fast paths (mime/address.h): the same bytes as the full way ------------------------ */

/* The summary of `data` as JSON, with the fast paths on or off; NULL when it does not parse. */
static json_t *parse_json(const char *data, size_t len, bool fast, const char **error_r)
{
	mime_set_fast_paths(fast);
	struct mime_summary s;
	int rc = mime_parse_message(data, len, &s, error_r);
	mime_set_fast_paths(true);
	if (rc != 0)
		return NULL;
	json_t *j = summary_json(&s);
	mime_summary_free(&s);
	return j;
}

/* 0 when both ways agree; prints the difference otherwise. */
static int same_both_ways(const char *what, const char *data, size_t len)
{
	const char *e1 = NULL, *e2 = NULL;
	json_t *fast = parse_json(data, len, true, &e1);
	json_t *slow = parse_json(data, len, false, &e2);
	int rc = 0;
	if (fast == NULL || slow == NULL) {
		if (!(fast == NULL && slow == NULL && strcmp(e1, e2) == 0)) {
			print_error("%s: parses one way only (%s / %s)\n", what, e1 ? e1 : "ok",
			            e2 ? e2 : "ok");
			rc = -1;
		}
	} else if (!json_equal(fast, slow)) {
		char *f = json_dumps(fast, JSON_INDENT(2) | JSON_ENSURE_ASCII);
		char *w = json_dumps(slow, JSON_INDENT(2) | JSON_ENSURE_ASCII);
		print_error("%s differs\n--- fast\n%s\n--- full\n%s\n", what, f, w);
		free(f);
		free(w);
		rc = -1;
	}
	json_decref(fast);
	json_decref(slow);
	return rc;
}

static size_t fast_paths_check(const char *name, const char *data, size_t len)
{
	return same_both_ways(name, data, len) != 0;
}

static void test_fast_paths_corpus(void **state)
{
	(void)state;
	assert_int_equal(corpus_each(fast_paths_check), 0);
}

/* Texts at the edges of the fast paths added for the sync (plain_ascii's eight-byte steps,
 * make_snippet's runs of visible ASCII): lengths around eight, a NUL, a run across the
 * character cap, the cap reached after a space, a run ending on the cap's last character. */
static void test_fast_paths_snippet_runs(void **state)
{
	(void)state;
	char body[2048];
	size_t failures = 0;
	for (size_t k = 0; k < 9; k++) {
		const char *cte = "7bit";
		size_t n = 0;
		if (k < 3) { /* 7, 8 and 9 bytes */
			memcpy(body, "abcdefghi", 7 + k);
			n = 7 + k;
		} else if (k == 3) {
			cte = "quoted-printable";
			n = (size_t)snprintf(body, sizeof(body), "nul=00here and after");
		} else if (k == 4) {
			memset(body, 'a', 700);
			n = 700;
		} else if (k == 5 || k == 6) {
			for (; n + 5 < 1200 - k; n += 5)
				memcpy(body + n, "word ", 5);
		} else if (k == 7) {
			memset(body, 'b', 499);
			memcpy(body + 499, " cd", 3);
			n = 502;
		} else {
			memset(body, 'c', 500);
			memcpy(body + 500, "\xc3\xa9 more", 8);
			n = 508;
		}
		body[n] = '\0';
		char msg[4096];
		int len =
		    snprintf(msg, sizeof(msg),
		             "From: a@b.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
		             "Content-Type: text/plain\r\nContent-Transfer-Encoding: %s\r\n\r\n%s",
		             cte, body);
		char what[32];
		snprintf(what, sizeof(what), "snippet run case %zu", k);
		failures += same_both_ways(what, msg, (size_t)len) != 0;
	}
	assert_int_equal(failures, 0);
}

/* Address entries of every shape near the fast path's edges: those it takes and those it must
 * leave to GMime and libidn2. */
static const char *const address_cases[] = {
    "a@b.example",
    "A.B@Example.COM",
    "<a@b.example>",
    "Cand 5 <cand5.a@cand5.example>",
    "Rita <rita@staffing.example>",
    "John Smith <JOHN@EXAMPLE.COM>",
    "x_y+z-w@sub.domain.example",
    "a@b.c",
    "a@1.example",
    "a@b.123",
    "123 <a@b.example>",
    "a..b@x.example",
    ".a@x.example",
    "a.@x.example",
    "a-@x.example",
    "-a@x.example",
    "a@-x.example",
    "a@x-.example",
    "a@x--y.example",
    "a@xn--bcher-kva.example",
    "a@XN--BCHER-KVA.example",
    "a@b",
    "a@b..example",
    "a@.example",
    "a@b.example.",
    "a@b_c.example",
    "Name  Two <a@b.example>",
    "Name<a@b.example>",
    "Name <a@b.example> x",
    "Jack O'Neil <j@x.example>",
    "\"Quoted\" <q@x.example>",
    "\"Smith, J\" <j@x.example>",
    "=?utf-8?q?J=C3=BCrgen?= <j@x.example>",
    "a@b.example (comment)",
    "(c) a@b.example",
    "<a@x.example",
    "a@x.example>",
    "<>",
    "<@x.example>",
    "a@",
    "@x.example",
    "a@b@c.example",
    "J\xc3\xbcrgen <j@x.example>",
    "j@b\xc3\xbc"
    "cher.example",
    "\xc3\xa4@x.example",
    "a=b@x.example",
    "a/b@x.example",
    "a!b@x.example",
    "a@[192.0.2.1]",
    "A <a@b.example>",
    "aa bb cc dd <a.b.c@d.e.f.example>",
    "N. Ame <a@b.example>",
    "Name - Dash <a@b.example>",
    "Under_score <a@b.example>",
    "a@b-c.d-e.example",
    "a@0.0.0.example",
    "a@b.c0",
    "bounce-123+tag@mx.example",
    "MiXeD <MiXeD.CaSe@MiXeD.ExAmPlE>",
    "Tab\tName <a@b.example>",
};

static void long_cases(char (*out)[600], size_t *count)
{
	char l64[65], l65[66], lab63[64], lab64[65];
	memset(l64, 'l', 64);
	l64[64] = '\0';
	memset(l65, 'l', 65);
	l65[65] = '\0';
	memset(lab63, 'd', 63);
	lab63[63] = '\0';
	memset(lab64, 'd', 64);
	lab64[64] = '\0';
	size_t n = 0;
	snprintf(out[n++], 600, "%s@x.example", l64);
	snprintf(out[n++], 600, "%s@x.example", l65);
	snprintf(out[n++], 600, "a@%s.example", lab63);
	snprintf(out[n++], 600, "a@%s.example", lab64);
	/* a domain of 4 x 63 + 1 (253), of 254, and an address over 254 */
	snprintf(out[n++], 600, "a@%s.%s.%s.%.61s.x", lab63, lab63, lab63, lab63);
	snprintf(out[n++], 600, "a@%s.%s.%s.%.62s.x", lab63, lab63, lab63, lab63);
	snprintf(out[n++], 600, "%s@%s.%s.%s.%.50s.x", l64, lab63, lab63, lab63, lab63);
	char name[400];
	memset(name, 'N', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	snprintf(out[n++], 600, "%s <a@b.example>", name);
	*count = n;
}

static int address_both_ways(const char *entry)
{
	int failures = 0;
	char fast[MT_ADDRESS_MAX + 1] = "", slow[MT_ADDRESS_MAX + 1] = "";
	const char *ef = "", *es = "";
	mime_set_fast_paths(false);
	int rs = mime_address_normalize(entry, slow, &es);
	mime_set_fast_paths(true);
	int rf = mime_address_normalize(entry, fast, &ef);
	if (rf != rs || (rf == 0 && strcmp(fast, slow) != 0) || (rf != 0 && strcmp(ef, es) != 0)) {
		print_error("normalise %s: fast %d %s %s, full %d %s %s\n", entry, rf, fast, ef, rs,
		            slow, es);
		failures++;
	}
	char msg[2048];
	snprintf(msg, sizeof(msg),
	         "From: %s\r\nTo: %s, other@x.example\r\nCc: x@y.example; %s\r\n"
	         "Subject: s\r\nMessage-ID: <m@x.example>\r\n\r\nText.\r\n",
	         entry, entry, entry);
	if (same_both_ways(entry, msg, strlen(msg)) != 0)
		failures++;
	return failures;
}

static void test_fast_paths_addresses(void **state)
{
	(void)state;
	size_t failures = 0;
	for (size_t i = 0; i < sizeof(address_cases) / sizeof(address_cases[0]); i++)
		failures += (size_t)address_both_ways(address_cases[i]);
	char longs[16][600];
	size_t n = 0;
	long_cases(longs, &n);
	for (size_t i = 0; i < n; i++)
		failures += (size_t)address_both_ways(longs[i]);
	assert_int_equal(failures, 0);
}

/* The fast path is taken for the common shapes (else the comparison above proves nothing) and
 * left for what needs GMime or IDNA. */
static void test_fast_paths_taken(void **state)
{
	(void)state;
	static const char *const taken[] = {"a@b.example", "<A.B@Example.COM>",
	                                    "Cand 5 <cand5.a@cand5.example>",
	                                    "x_y+z-w@sub.domain.example"};
	static const char *const left[] = {"a@xn--bcher-kva.example",
	                                   "j@b\xc3\xbc"
	                                   "cher.example",
	                                   "\"Quoted\" <q@x.example>",
	                                   "=?utf-8?q?J=C3=BCrgen?= <j@x.example>",
	                                   "a..b@x.example",
	                                   "a@b.123",
	                                   "Name<a@b.example>",
	                                   "a@b.example (comment)"};
	char addr[MT_ADDRESS_MAX + 1], name[64];
	for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++)
		assert_true(
		    mime_address_simple(taken[i], strlen(taken[i]), addr, name, sizeof(name)));
	assert_true(
	    mime_address_simple("Cand 5 <Cand5.A@X.Example>", 26, addr, name, sizeof(name)));
	assert_string_equal(addr, "cand5.a@x.example");
	assert_string_equal(name, "Cand 5");
	for (size_t i = 0; i < sizeof(left) / sizeof(left[0]); i++)
		assert_false(mime_address_simple(left[i], strlen(left[i]), addr, NULL, 0));
}

/* Texts for the snippet: every ASCII control and blank, Unicode blanks, bytes that are not
 * UTF-8, long text, HTML, other charsets. */
static void test_fast_paths_snippets(void **state)
{
	(void)state;
	char ascii[200];
	size_t n = 0;
	for (int c = 1; c < 0x80; c++) {
		ascii[n++] = (char)c;
		if (c % 7 == 0)
			ascii[n++] = 'x';
	}
	ascii[n] = '\0';
	char longtext[4000];
	n = 0;
	while (n + 12 < sizeof(longtext)) {
		memcpy(longtext + n, "word\t \r\n\xc2\xa0 ab ", 12);
		n += 12;
	}
	longtext[n] = '\0';
	const struct {
		const char *type, *cte, *body;
	} cases[] = {
	    {"text/plain; charset=utf-8", "8bit", ascii},
	    {"text/plain; charset=utf-8", "8bit", longtext},
	    {"text/plain", "8bit", "caf\xe9 na\xefve \x93quoted\x94 text"},
	    {"text/plain; charset=us-ascii", "7bit", "plain \x01\x02 text\x7f end"},
	    {"text/plain; charset=utf-8", "8bit",
	     "bad \xff\xfe utf-8 \xe2\x80\x8b zw \xef\xbb\xbf"},
	    {"text/plain; charset=utf-8", "quoted-printable", "a=3Db =C3=A9t=C3=A9=\r\n soft"},
	    {"text/plain; charset=utf-8", "base64", "SGVsbG8sCXdvcmxkIQ0KwqBuZXh0"},
	    {"text/plain; charset=iso-8859-1", "8bit", "\xe9t\xe9 \xa0 \x85 end"},
	    {"text/html; charset=utf-8", "8bit",
	     "<p>Hello&nbsp;there</p>\r\n<style>x{}</style><b>bold</b>\t\x0b\x0c end"},
	    {"text/plain; charset=utf-8", "8bit", "\xe3\x80\x80ideographic\xe2\x80\xa8line sep"},
	};
	size_t failures = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char msg[8192];
		snprintf(msg, sizeof(msg),
		         "From: a@b.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
		         "Content-Type: %s\r\nContent-Transfer-Encoding: %s\r\n\r\n%s",
		         cases[i].type, cases[i].cte, cases[i].body);
		char what[32];
		snprintf(what, sizeof(what), "snippet case %zu", i);
		if (same_both_ways(what, msg, strlen(msg)) != 0)
			failures++;
	}
	assert_int_equal(failures, 0);
}

/* ---- In-Reply-To, References and the thread root ---- */

struct ids_case {
	const char *name;
	const char *value;
	size_t want_count;
	const char *want[4]; /* the first ids expected */
};

static const struct ids_case ids_cases[] = {
    {"one", "<a@x.example>", 1, {"a@x.example"}},
    {"several", "<a@x> <b@y>\t<c@z>", 3, {"a@x", "b@y", "c@z"}},
    {"folded", "<a@x>\r\n <b@y>\r\n\t<c@z>", 3, {"a@x", "b@y", "c@z"}},
    {"folded inside an id", "<a@\r\n x>", 1, {"a@ x"}},
    {"no spaces", "<a@x><b@y>", 2, {"a@x", "b@y"}},
    {"padding inside", "< a@x >", 1, {"a@x"}},
    {"comments and prose", "Your message of Mon (foo) <a@x> (bar)", 1, {"a@x"}},
    {"without brackets", "a@x, b@y c@z", 3, {"a@x", "b@y", "c@z"}},
    {"prose without brackets", "Your message of 5 Dec 2026", 0, {NULL}},
    {"empty", "", 0, {NULL}},
    {"blank", " \r\n \t", 0, {NULL}},
    {"empty brackets", "<> <  > <a@x>", 1, {"a@x"}},
    {"unclosed", "<a@x> <b@y", 1, {"a@x"}},
    {"only an opener", "<", 0, {NULL}},
    {"only a closer", ">a@x>", 0, {NULL}},
    {"nested opener", "<<a@x>>", 1, {"a@x"}},
    {"junk brackets", "<<<>>> <x> <y> (((", 0, {NULL}},
    {"without an @", "<local-part-only> <a@x>", 1, {"a@x"}},
    {"control characters", "<a\001b@x>", 1, {"a b@x"}},
    {"not UTF-8", "<caf\xe9@x>", 1, {"caf\xef\xbf\xbd@x"}},
};

static void test_msg_ids_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(ids_cases) / sizeof(ids_cases[0]); i++) {
		const struct ids_case *c = &ids_cases[i];
		char out[MT_REFERENCES_MAX][MT_MESSAGE_ID_MAX + 1];
		size_t n = mime_parse_msg_ids(c->value, strlen(c->value), out, MT_REFERENCES_MAX);
		if (n != c->want_count)
			fail_msg("%s: %zu ids, expected %zu", c->name, n, c->want_count);
		for (size_t k = 0; k < n && k < 4 && c->want[k] != NULL; k++) {
			if (strcmp(out[k], c->want[k]) != 0)
				fail_msg("%s: id %zu is \"%s\", expected \"%s\"", c->name, k,
				         out[k], c->want[k]);
		}
	}
}

/* `count` bracketed ids "<rN@chain.example>" separated by folds, malloc'd. */
static char *many_ids(size_t count, size_t *len_r)
{
	char *v = malloc(count * 32 + 1);
	assert_non_null(v);
	size_t n = 0;
	for (size_t i = 0; i < count; i++)
		n += (size_t)sprintf(v + n, "%s<r%zu@chain.example>", i ? "\r\n " : "", i);
	*len_r = n;
	return v;
}

static void test_msg_ids_hostile(void **state)
{
	(void)state;
	char out[MT_REFERENCES_MAX][MT_MESSAGE_ID_MAX + 1];
	/* 10,000 ids: the first MT_REFERENCES_MAX, the root first */
	size_t len;
	char *v = many_ids(10000, &len);
	assert_true(len > MT_REFERENCES_BYTES_MAX);
	size_t n = mime_parse_msg_ids(v, len, out, MT_REFERENCES_MAX);
	assert_int_equal(n, MT_REFERENCES_MAX);
	assert_string_equal(out[0], "r0@chain.example");
	assert_string_equal(out[MT_REFERENCES_MAX - 1], "r19@chain.example");
	free(v);
	/* the byte cap: an id past it is not read, nor is one cut by it */
	char *big = malloc(MT_REFERENCES_BYTES_MAX + 64);
	assert_non_null(big);
	memset(big, ' ', MT_REFERENCES_BYTES_MAX + 64);
	memcpy(big + MT_REFERENCES_BYTES_MAX - 4, "<a@x>", 5);
	memcpy(big + MT_REFERENCES_BYTES_MAX + 8, "<b@y>", 5);
	assert_int_equal(mime_parse_msg_ids(big, MT_REFERENCES_BYTES_MAX + 64, out, 4), 0);
	free(big);
	/* an id longer than a Message-ID may be is cut on a character boundary */
	char *long_id = malloc(MT_MESSAGE_ID_MAX * 2 + 3);
	assert_non_null(long_id);
	long_id[0] = '<';
	memset(long_id + 1, 'x', MT_MESSAGE_ID_MAX * 2);
	long_id[MT_MESSAGE_ID_MAX] = '@';
	long_id[MT_MESSAGE_ID_MAX * 2 + 1] = '>';
	assert_int_equal(mime_parse_msg_ids(long_id, MT_MESSAGE_ID_MAX * 2 + 2, out, 4), 1);
	assert_int_equal(strlen(out[0]), MT_MESSAGE_ID_MAX);
	free(long_id);
	/* a NUL inside the value is a byte like another, not its end */
	static const char nul[] = "<a@x>\0<b@y>";
	assert_int_equal(mime_parse_msg_ids(nul, sizeof(nul) - 1, out, 4), 2);
	assert_string_equal(out[1], "b@y");
	/* `max` is honoured */
	assert_int_equal(mime_parse_msg_ids("<a@x> <b@y>", 11, out, 1), 1);
	/* 10,000 commas and spaces, no id: nothing, quickly */
	char *commas = malloc(20000);
	assert_non_null(commas);
	for (size_t i = 0; i < 20000; i++)
		commas[i] = i % 2 ? ',' : ' ';
	assert_int_equal(mime_parse_msg_ids(commas, 20000, out, MT_REFERENCES_MAX), 0);
	free(commas);
}

struct root_case {
	const char *name;
	const char *headers; /* before the body; From/To/Subject added */
	const char *message_id, *in_reply_to, *root;
};

static const struct root_case root_cases[] = {
    {"a first message", "Message-ID: <a@x>\r\n", "a@x", "", "a@x"},
    {"a reply", "Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\nReferences: <a@x>\r\n", "b@x", "a@x",
     "a@x"},
    {"a reply to the reply",
     "Message-ID: <c@x>\r\nIn-Reply-To: <b@x>\r\nReferences: <a@x> <b@x>\r\n", "c@x", "b@x", "a@x"},
    {"References folded",
     "Message-ID: <c@x>\r\nIn-Reply-To: <b@x>\r\nReferences: <a@x>\r\n\t<b@x>\r\n", "c@x", "b@x",
     "a@x"},
    {"In-Reply-To alone", "Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\n", "b@x", "a@x", "a@x"},
    {"References alone", "Message-ID: <c@x>\r\nReferences: <a@x> <b@x>\r\n", "c@x", "", "a@x"},
    {"In-Reply-To in prose",
     "Message-ID: <b@x>\r\nIn-Reply-To: Your message of \"Mon, 1 Jan\" <a@x>\r\n", "b@x", "a@x",
     "a@x"},
    {"In-Reply-To prose only", "Message-ID: <b@x>\r\nIn-Reply-To: your mail of Monday\r\n", "b@x",
     "", "b@x"},
    {"garbage References", "Message-ID: <b@x>\r\nReferences: <<<>>> ((( \r\n", "b@x", "", "b@x"},
    {"the first of each header",
     "Message-ID: <c@x>\r\nIn-Reply-To: <b@x>\r\nIn-Reply-To: <z@x>\r\nReferences: <a@x>\r\n"
     "References: <y@x>\r\n",
     "c@x", "b@x", "a@x"},
    {"no ids at all", "", "", "", ""},
};

static void test_thread_root_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(root_cases) / sizeof(root_cases[0]); i++) {
		const struct root_case *c = &root_cases[i];
		char raw[2048];
		int len = snprintf(raw, sizeof(raw),
		                   "From: jack@candidates.example\r\nTo: a@staffing.example\r\n"
		                   "Subject: Re: the job\r\n%s\r\nThanks!\r\n",
		                   c->headers);
		assert_true(len > 0 && (size_t)len < sizeof(raw));
		struct mime_summary s;
		const char *error = NULL;
		if (mime_parse_message(raw, (size_t)len, &s, &error) != 0)
			fail_msg("%s: not parsed: %s", c->name, error);
		if (strcmp(s.message_id, c->message_id) != 0 ||
		    strcmp(s.in_reply_to, c->in_reply_to) != 0 ||
		    strcmp(mime_thread_root(&s), c->root) != 0)
			fail_msg("%s: message_id \"%s\", in_reply_to \"%s\", root \"%s\"; expected "
			         "\"%s\", \"%s\", \"%s\"",
			         c->name, s.message_id, s.in_reply_to, mime_thread_root(&s),
			         c->message_id, c->in_reply_to, c->root);
		mime_summary_free(&s);
	}
}

/* A message whose References holds 10,000 ids (folded, ~250 KB of header): parsed, its root is
 * the first, and it keeps MT_REFERENCES_MAX of them. */
static void test_thread_root_huge_references(void **state)
{
	(void)state;
	size_t ids_len;
	char *ids = many_ids(10000, &ids_len);
	size_t cap = ids_len + 512;
	char *raw = malloc(cap);
	assert_non_null(raw);
	int len =
	    snprintf(raw, cap,
	             "From: jack@candidates.example\r\nTo: a@staffing.example\r\n"
	             "Message-ID: <last@chain.example>\r\nIn-Reply-To: <r9999@chain.example>\r\n"
	             "References: %s\r\nSubject: Re: Re: Re:\r\n\r\nStill there?\r\n",
	             ids);
	assert_true(len > 0 && (size_t)len < cap);
	struct mime_summary s;
	const char *error = NULL;
	assert_int_equal(mime_parse_message(raw, (size_t)len, &s, &error), 0);
	assert_int_equal(s.reference_count, MT_REFERENCES_MAX);
	assert_string_equal(mime_thread_root(&s), "r0@chain.example");
	assert_string_equal(s.in_reply_to, "r9999@chain.example");
	mime_summary_free(&s);
	free(raw);
	free(ids);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_corpus),
	    cmocka_unit_test(test_aliases),
	    cmocka_unit_test(test_parse_headers),
	    cmocka_unit_test(test_not_a_message),
	    cmocka_unit_test(test_fetched_corpus),
	    cmocka_unit_test(test_fetched_edges),
	    cmocka_unit_test(test_participant_cap),
	    cmocka_unit_test(test_snippet_utf8_boundary),
	    cmocka_unit_test(test_name_cap),
	    cmocka_unit_test(test_address_quirks),
	    cmocka_unit_test(test_fast_paths_corpus),
	    cmocka_unit_test(test_fast_paths_snippet_runs),
	    cmocka_unit_test(test_fast_paths_addresses),
	    cmocka_unit_test(test_fast_paths_taken),
	    cmocka_unit_test(test_fast_paths_snippets),
	    cmocka_unit_test(test_msg_ids_table),
	    cmocka_unit_test(test_msg_ids_hostile),
	    cmocka_unit_test(test_thread_root_table),
	    cmocka_unit_test(test_thread_root_huge_references),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
