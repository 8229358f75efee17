#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "proto/imap_fetch.h"
#include "proto/imap_parse.h"
#include "proto/imap_response.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Real-looking server output: several responses each, literals included. */
static const char *const corpus[] = {
    /* dovecot_greeting */
    "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "
    "AUTH=PLAIN] Dovecot (Debian) ready.\r\n"
    "",
    /* capability */
    "* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY "
    "THREAD=REFERENCES MULTIAPPEND UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 "
    "CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE "
    "SNIPPET=FUZZY PREVIEW=FUZZY STATUS=SIZE LITERAL+ NOTIFY SPECIAL-USE\r\n"
    "a1 OK Pre-login capabilities listed, post-login capabilities have more.\r\n"
    "",
    /* select */
    "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded $Junk)\r\n"
    "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded $Junk \\*)] "
    "Flags permitted.\r\n"
    "* 172 EXISTS\r\n"
    "* 0 RECENT\r\n"
    "* OK [UNSEEN 12] First unseen.\r\n"
    "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
    "* OK [UIDNEXT 4392] Predicted next UID\r\n"
    "* OK [HIGHESTMODSEQ 715194045007] Highest\r\n"
    "a2 OK [READ-WRITE] Select completed (0.002 + 0.000 + 0.001 secs).\r\n"
    "",
    /* fetch_envelope */
    "* 12 FETCH (UID 4827 FLAGS (\\Seen $Forwarded) INTERNALDATE \"17-Jul-2026 02:44:25 -0700\" "
    "RFC822.SIZE 4286 MODSEQ (12121231000) ENVELOPE (\"Wed, 17 Jul 2026 02:23:25 -0700\" {53}\r\n"
    "=?UTF-8?B?UmU6IFRoZSBwb3NpdGlvbiDwn5iA?= (and \"more\") ((\"Jack \\\"JJ\\\" Doe\" NIL "
    "\"jack\" \"example.com\")) ((\"Jack Doe\" NIL \"jack\" \"example.com\")) NIL (({16}\r\n"
    "Ann (Recruiting) NIL \"ann\" \"corp.example\")(NIL NIL \"undisclosed-recipients\" NIL)(NIL "
    "NIL NIL NIL)) NIL NIL \"<prev@example.com>\" \"<B27397-0100000@example.com>\"))\r\n"
    "",
    /* fetch_bodystructure */
    "* 13 FETCH (UID 4828 BODYSTRUCTURE (((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"UTF-8\") NIL NIL "
    "\"QUOTED-PRINTABLE\" 1234 40 NIL NIL NIL NIL)(\"TEXT\" \"HTML\" (\"CHARSET\" \"UTF-8\") NIL "
    "NIL \"QUOTED-PRINTABLE\" 5678 120 NIL NIL NIL NIL) \"ALTERNATIVE\" (\"BOUNDARY\" \"alt-b\") "
    "NIL NIL NIL)(\"APPLICATION\" \"PDF\" (\"NAME\" \"CV Jack.pdf\") NIL NIL \"BASE64\" 102400 NIL "
    "(\"ATTACHMENT\" (\"FILENAME\" \"CV Jack.pdf\")) NIL NIL)(\"MESSAGE\" \"RFC822\" NIL NIL NIL "
    "\"7BIT\" 3000 (NIL \"Fwd\" NIL NIL NIL NIL NIL NIL NIL NIL) (\"TEXT\" \"PLAIN\" NIL NIL NIL "
    "\"7BIT\" 20 1 NIL NIL NIL NIL) 60 NIL (\"attachment\" NIL) NIL NIL) \"MIXED\" (\"BOUNDARY\" "
    "\"mix-b\") NIL NIL NIL))\r\n"
    "",
    /* fetch_body_literal */
    "* 14 FETCH (UID 4829 BODY[HEADER.FIELDS (FROM TO SUBJECT)] {68}\r\n"
    "From: Jack <jack@example.com>\r\n"
    "To: ann@corp.example\r\n"
    "Subject: CV\r\n"
    "\r\n"
    " BODY[TEXT]<0> {67}\r\n"
    "Hello Ann,\r\n"
    "\r\n"
    "thanks (for) your \"note\" {5}\r\n"
    ") * OK not a response\r\n"
    ")\r\n"
    "a4 OK Fetch completed.\r\n"
    "",
    /* list_special_use */
    "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
    "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n"
    "* LIST (\\HasChildren \\Noselect) \"/\" \"[Gmail]\"\r\n"
    "* LIST (\\All \\HasNoChildren) \"/\" \"[Gmail]/All Mail\"\r\n"
    "* LIST (\\HasNoChildren \\Drafts) \"/\" \"&AMk-l&AOk-ments envoy&AOk-s\"\r\n"
    "* LIST (\\HasNoChildren \\Junk) \".\" Junk\r\n"
    "* LIST (\\HasNoChildren \\Trash \\Flagged \\Archive) \"\\\\\" {12}\r\n"
    "Trash &- Bin\r\n"
    "* LIST (\\Noselect) NIL \"\"\r\n"
    "* LSUB () \"/\" Archive/2026\r\n"
    "a3 OK List completed (0.001 + 0.000 secs).\r\n"
    "",
    /* status */
    "* STATUS \"Sent Items\" (MESSAGES 231 UIDNEXT 44292 UIDVALIDITY 1 UNSEEN 0 HIGHESTMODSEQ "
    "7011231777)\r\n"
    "* STATUS INBOX (MESSAGES 2)\r\n"
    "",
    /* search */
    "* ESEARCH (TAG \"a5\") UID MIN 2 MAX 4392 COUNT 120 ALL 2,10:11,4000:4392\r\n"
    "* SEARCH 2 5 6 7 (MODSEQ 917162500)\r\n"
    "* SEARCH\r\n"
    "* ESEARCH (TAG \"a6\") UID COUNT 0\r\n"
    "",
    /* appenduid */
    "a6 OK [APPENDUID 38505 3955] APPEND completed\r\n"
    "a7 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n"
    "a8 NO [TRYCREATE] Mailbox doesn't exist: Archive\r\n"
    "",
    /* bye_middle */
    "* 15 FETCH (UID 4830 FLAGS ())\r\n"
    "* BYE Server shutting down\r\n"
    "",
    /* expunge_interleaved */
    "* 3 EXPUNGE\r\n"
    "* 16 FETCH (FLAGS (\\Seen) UID 4831)\r\n"
    "* 2 EXPUNGE\r\n"
    "* VANISHED (EARLIER) 300:310,405,411\r\n"
    "* VANISHED 405\r\n"
    "* 170 EXISTS\r\n"
    "",
    /* continuation */
    "+ idling\r\n"
    "+ \r\n"
    "+ dXNlcj1mb28=\r\n"
    "+\r\n"
    "+ [ALERT] go on\r\n"
    "",
    /* enabled_ns_id */
    "* ENABLED CONDSTORE QRESYNC\r\n"
    "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"
    "* ID (\"name\" \"Dovecot\" \"version\" NIL)\r\n"
    "",
    /* gmail_fetch */
    "* 1 FETCH (X-GM-THRID 1278455344230334865 X-GM-MSGID 1278455344230334865 X-GM-LABELS (\\Inbox "
    "\\Sent Important \"Muy Importante\") UID 1 FLAGS (\\Seen))\r\n"
    "* OK [WEBALERT https://accounts.google.com/signin/continue?sarp=1&scc=1&plt=AKgn)sbt] Web "
    "login required.\r\n"
    "",
    /* bare_lf */
    "* 4 EXISTS\n"
    "* OK [ALERT] Bare LF server\n"
    "* 5 FETCH (UID 7 BODY[] {3}\n"
    "abc)\n"
    "",
    /* exchange */
    "* OK The Microsoft Exchange IMAP4 service is ready. [TQBXADIAUABSADAA]\r\n"
    "a8 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    "a9 NO [UNAVAILABLE] Temporary failure\r\n"
    "* OK [CLOSED] Previous mailbox closed\r\n"
    "* OK [NOMODSEQ] Sorry, no modseqs\r\n"
    "* PREAUTH [READ-ONLY]\r\n"
    "* OK\r\n"
    "",
    /* binary_utf8 */
    "* 17 FETCH (UID 9 BINARY[1] ~{4}\r\n"
    "ab\x01"
    "c RFC822.SIZE 44)\r\n"
    "* LIST () \"/\" \"Entw\xc3"
    "\xbc"
    "rfe\"\r\n"
    "* 18 FETCH (UID 10 BODY[] {0}\r\n"
    ")\r\n"
    "",
};

#define CORPUS_COUNT (sizeof(corpus) / sizeof(corpus[0]))

/* Flattened responses and streamed chunks, compared between feeding patterns. */
struct out {
	char *buf;
	size_t len, cap;
};

static void out_put(struct out *out, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	assert_true(n >= 0);
	if (out->len + (size_t)n + 1 > out->cap) {
		out->cap = (out->len + (size_t)n + 1) * 2;
		out->buf = realloc(out->buf, out->cap);
		assert_non_null(out->buf);
	}
	va_start(ap, fmt);
	vsnprintf(out->buf + out->len, out->cap - out->len, fmt, ap);
	va_end(ap);
	out->len += (size_t)n;
}

static void flatten_value(struct out *out, const struct imap_value *v)
{
	switch (v->type) {
	case IMAP_ATOM:
		out_put(out, "A:%s", v->str);
		break;
	case IMAP_NUMBER:
		out_put(out, "N:%" PRIu64, v->num);
		break;
	case IMAP_STRING:
		out_put(out, "S:\"%s\"", v->str);
		break;
	case IMAP_LITERAL:
		if (v->streamed)
			out_put(out, "L{%zu}:streamed", v->len);
		else
			out_put(out, "L{%zu}:%s", v->len, v->str);
		break;
	case IMAP_NIL:
		out_put(out, "NIL");
		break;
	case IMAP_LIST:
		out_put(out, "(");
		size_t n = 0;
		for (const struct imap_value *c = v->child; c != NULL; c = c->next, n++) {
			out_put(out, n ? " " : "");
			flatten_value(out, c);
		}
		assert_int_equal(n, v->len);
		out_put(out, ")");
		break;
	}
}

static void flatten(struct out *out, const struct imap_response *r)
{
	out_put(out, "kind=%d tag=%s status=%d name=%s", r->kind, r->tag, r->status, r->name);
	if (r->has_number)
		out_put(out, " n=%" PRIu32, r->number);
	if (r->code[0] != '\0') {
		out_put(out, " code=%s args=%s", r->code, r->code_args);
		for (const struct imap_value *v = r->code_values; v != NULL; v = v->next) {
			out_put(out, " ");
			flatten_value(out, v);
		}
	}
	out_put(out, " text=%s data=%zu", r->text, r->data_count);
	for (const struct imap_value *v = r->data; v != NULL; v = v->next) {
		out_put(out, " ");
		flatten_value(out, v);
	}
	out_put(out, "\n");
}

static int on_chunk(void *ctx, const struct imap_literal_chunk *chunk)
{
	struct out *out = ctx;
	/* chunk boundaries depend on the feeding; only the bytes and their order are compared */
	if (chunk->offset == 0)
		out_put(out, "[chunk seq=%" PRIu32 " item=%s size=%" PRIu64 "]", chunk->seq,
		        chunk->item, chunk->size);
	assert_true(chunk->offset + chunk->len <= chunk->size);
	out_put(out, "%.*s", (int)chunk->len, chunk->data);
	return 0;
}

/* Feeds `input` cut at `cuts` (ascending); every response and chunk goes to `out`. */
static void feed_cuts(const char *input, size_t len, const size_t *cuts, size_t ncuts, int stream,
                      struct out *out)
{
	struct imap_parser parser;
	imap_parser_init(&parser);
	if (stream)
		imap_parser_set_literal_cb(&parser, on_chunk, out);
	size_t start = 0;
	for (size_t c = 0; c <= ncuts; c++) {
		size_t end = c < ncuts ? cuts[c] : len;
		size_t pos = start;
		while (pos < end) {
			size_t consumed = 0;
			const struct imap_response *resp = NULL;
			const char *error = NULL;
			int ret = imap_parser_feed(&parser, input + pos, end - pos, &consumed,
			                           &resp, &error);
			if (ret < 0)
				fail_msg("error at %zu: %s", pos, error);
			assert_true(consumed <= end - pos);
			pos += consumed;
			if (ret == 1) {
				assert_false(imap_parser_busy(&parser));
				flatten(out, resp);
			} else {
				assert_int_equal(pos, end);
				assert_true(imap_parser_busy(&parser));
			}
		}
		start = end;
	}
	assert_false(imap_parser_busy(&parser));
	imap_parser_deinit(&parser);
}

static void test_split_everywhere(void **state)
{
	(void)state;
	for (int stream = 0; stream <= 1; stream++) {
		for (size_t r = 0; r < CORPUS_COUNT; r++) {
			const char *input = corpus[r];
			size_t len = strlen(input);
			if (r == CORPUS_COUNT - 1)
				len += 0; /* binary_utf8: \x01 is not NUL, strlen is right */
			struct out whole = {0};
			feed_cuts(input, len, NULL, 0, stream, &whole);
			for (size_t i = 0; i <= len; i++) {
				struct out split = {0};
				feed_cuts(input, len, &i, 1, stream, &split);
				assert_string_equal(whole.buf, split.buf);
				free(split.buf);
			}
			size_t *cuts = malloc(len * sizeof(*cuts));
			for (size_t i = 0; i + 1 < len; i++)
				cuts[i] = i + 1;
			struct out bytes = {0};
			feed_cuts(input, len, cuts, len > 0 ? len - 1 : 0, stream, &bytes);
			assert_string_equal(whole.buf, bytes.buf);
			free(cuts);
			free(bytes.buf);
			free(whole.buf);
		}
	}
}

/* Parses one response from `input`, which must hold exactly one. */
static struct imap_parser one_parser;
static const struct imap_response *parse_one(const char *input)
{
	imap_parser_deinit(&one_parser);
	imap_parser_init(&one_parser);
	size_t consumed = 0;
	const struct imap_response *resp = NULL;
	const char *error = NULL;
	int ret = imap_parser_feed(&one_parser, input, strlen(input), &consumed, &resp, &error);
	if (ret != 1)
		fail_msg("parse_one: %d %s", ret, error ? error : "");
	assert_int_equal(consumed, strlen(input));
	return resp;
}

static const char *flat_one(const char *input)
{
	static struct out out;
	out.len = 0;
	flatten(&out, parse_one(input));
	return out.buf;
}

static void test_values(void **state)
{
	(void)state;
	assert_string_equal(flat_one("* 12 FETCH (UID 5 BODY[HEADER.FIELDS (FROM TO)]<0> {2}\r\n"
	                             "ab FLAGS (\\Seen \\*))\r\n"),
	                    "kind=1 tag= status=0 name=FETCH n=12 text= data=1 (A:UID N:5 "
	                    "A:BODY[HEADER.FIELDS (FROM TO)]<0> L{2}:ab A:FLAGS (A:\\Seen "
	                    "A:\\*))\n");
	assert_string_equal(flat_one("a1 ok [read-write]Done\r\n"),
	                    "kind=0 tag=a1 status=1 name=OK code=READ-WRITE args= text=Done "
	                    "data=0\n");
	assert_string_equal(flat_one("* list (\\Noselect)  NIL   \"a\\\\b\\\"c\"\n"),
	                    "kind=1 tag= status=0 name=LIST text= data=3 (A:\\Noselect) NIL "
	                    "S:\"a\\b\"c\"\n");
	assert_string_equal(flat_one("+ \r\n"), "kind=2 tag= status=0 name= text= data=0\n");
	assert_string_equal(flat_one("* OK [PARSE] x ] y\r\n"),
	                    "kind=1 tag= status=1 name=OK code=PARSE args= text=x ] y data=0\n");
	assert_string_equal(flat_one("* OK [no close\r\n"),
	                    "kind=1 tag= status=1 name=OK text=[no close data=0\n");
	assert_string_equal(flat_one("* 5 FETCH (BODY[] {3+}\r\nxyz)\r\n"),
	                    "kind=1 tag= status=0 name=FETCH n=5 text= data=1 (A:BODY[] "
	                    "L{3}:xyz)\n");
	/* 8-bit in quoted strings (UTF8=ACCEPT) and a number too large for 64 bits */
	assert_string_equal(flat_one("* X \"Entw\xc3\xbcrfe\" 18446744073709551616\r\n"),
	                    "kind=1 tag= status=0 name=X text= data=2 S:\"Entw\xc3\xbcrfe\" "
	                    "A:18446744073709551616\n");
	const struct imap_response *r = parse_one("* 3 EXISTS\r\n");
	assert_int_equal(r->number, 3);
	assert_string_equal(r->name, "EXISTS");
	assert_null(r->data);
}

static void test_two_in_one_chunk(void **state)
{
	(void)state;
	const char *input = "* 1 EXPUNGE\r\na1 OK done\r\n* 2 EX";
	struct imap_parser parser;
	imap_parser_init(&parser);
	size_t len = strlen(input), consumed = 0;
	const struct imap_response *resp = NULL;
	const char *error = NULL;
	assert_int_equal(imap_parser_feed(&parser, input, len, &consumed, &resp, &error), 1);
	assert_int_equal(consumed, 13);
	assert_string_equal(resp->name, "EXPUNGE");
	size_t pos = consumed;
	assert_int_equal(
	    imap_parser_feed(&parser, input + pos, len - pos, &consumed, &resp, &error), 1);
	assert_string_equal(resp->tag, "a1");
	assert_string_equal(resp->text, "done");
	pos += consumed;
	assert_int_equal(
	    imap_parser_feed(&parser, input + pos, len - pos, &consumed, &resp, &error), 0);
	assert_true(imap_parser_busy(&parser));
	imap_parser_deinit(&parser);
}

/* Between responses the buffers can go (an IDLE session holds none) and parsing goes on; in
 * the middle of one nothing is released. */
static void test_release(void **state)
{
	(void)state;
	const char *input = "+ idling\r\n* 3 EXISTS\r\n* 4 EXI";
	struct imap_parser parser;
	imap_parser_init(&parser);
	size_t len = strlen(input), consumed = 0, pos = 0;
	const struct imap_response *resp = NULL;
	const char *error = NULL;
	assert_int_equal(imap_parser_feed(&parser, input, len, &consumed, &resp, &error), 1);
	assert_int_equal(resp->kind, IMAP_RESP_CONTINUE);
	assert_non_null(parser.values);
	assert_non_null(parser.storage.data);
	imap_parser_release(&parser);
	assert_null(parser.values);
	assert_null(parser.storage.data);
	assert_int_equal(parser.value_cap, 0);
	pos += consumed;
	assert_int_equal(
	    imap_parser_feed(&parser, input + pos, len - pos, &consumed, &resp, &error), 1);
	assert_string_equal(resp->name, "EXISTS");
	assert_int_equal(resp->number, 3);
	imap_parser_release(&parser);
	assert_null(parser.values);
	pos += consumed;
	assert_int_equal(
	    imap_parser_feed(&parser, input + pos, len - pos, &consumed, &resp, &error), 0);
	assert_true(imap_parser_busy(&parser));
	imap_parser_release(&parser); /* mid-response: kept */
	assert_non_null(parser.values);
	assert_non_null(parser.storage.data);
	assert_int_equal(imap_parser_feed(&parser, "STS\r\n", 5, &consumed, &resp, &error), 1);
	assert_string_equal(resp->name, "EXISTS");
	assert_int_equal(resp->number, 4);
	imap_parser_deinit(&parser);
	/* released right after init, and twice */
	imap_parser_init(&parser);
	imap_parser_release(&parser);
	imap_parser_release(&parser);
	assert_int_equal(imap_parser_feed(&parser, "a1 OK done\r\n", 12, &consumed, &resp, &error),
	                 1);
	assert_string_equal(resp->text, "done");
	imap_parser_deinit(&parser);
}

static int feed_all(const char *input, size_t len, int stream, const char **error_r)
{
	struct imap_parser parser;
	imap_parser_init(&parser);
	struct out out = {0};
	if (stream)
		imap_parser_set_literal_cb(&parser, on_chunk, &out);
	size_t pos = 0;
	int ret = 0;
	while (pos < len) {
		size_t consumed = 0;
		const struct imap_response *resp = NULL;
		ret = imap_parser_feed(&parser, input + pos, len - pos, &consumed, &resp, error_r);
		if (ret < 0)
			break;
		pos += consumed;
	}
	free(out.buf);
	imap_parser_deinit(&parser);
	return ret;
}

static int feed_str(const char *input, const char **error_r)
{
	return feed_all(input, strlen(input), 0, error_r);
}

static void test_malformed(void **state)
{
	(void)state;
	const char *error = NULL;
	static const struct {
		const char *input;
		size_t len; /* 0: strlen */
		const char *error;
	} bad[] = {
	    {"* X a\0b\r\n", 9, "NUL"},
	    {"* X \"a\0b\"\r\n", 11, "NUL"},
	    {"* X {3}\r\na\0b\r\n", 14, "NUL"},
	    {"* OK a\0b\r\n", 10, "NUL"},
	    {"* X (a\r\n", 0, "unbalanced"},
	    {"* X a)\r\n", 0, "unbalanced"},
	    {"* X (a))\r\n", 0, "unbalanced"},
	    {"* X a\rb\r\n", 0, "CR without LF"},
	    {"* OK a\rb\r\n", 0, "CR without LF"},
	    {"* X \"a\nb\"\r\n", 0, "quoted"},
	    {"\r\n", 0, "empty"},
	    {"* \r\n", 0, "before its keyword"},
	    {"* 5\r\n", 0, "before its keyword"},
	    {"* (x)\r\n", 0, "list before"},
	    {"* \"x\"\r\n", 0, "keyword"},
	    {"\"a1\" OK\r\n", 0, "tag"},
	    {"a1 FOO bar\r\n", 0, "OK, NO or BAD"},
	    {"* 5 (x)\r\n", 0, "list before"},
	    {"* 99999999999 EXISTS\r\n", 0, "out of range"},
	    {"* X {abc}\r\n", 0, "literal size"},
	    {"* X {}\r\n", 0, "literal size"},
	    {"* X {5\r\n", 0, "literal size"},
	    {"* X {5}x\r\n", 0, "CRLF"},
	    {"* X {99999999999}\r\n", 0, "too large"},
	    {"* X a\x01z\r\n", 0, "control"},
	    {"* X \x7f\r\n", 0, "control"},
	    {"* 1 FETCH (BODY[TEXT\r\n", 0, "no \"]\""},
	    {"* OK [UIDVALIDITY x\ry] z\r\n", 0, "CR without LF"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t len = bad[i].len ? bad[i].len : strlen(bad[i].input);
		error = NULL;
		if (feed_all(bad[i].input, len, 0, &error) != -1)
			fail_msg("accepted: %s", bad[i].input);
		if (strstr(error, bad[i].error) == NULL)
			fail_msg("%s: error \"%s\" lacks \"%s\"", bad[i].input, error,
			         bad[i].error);
	}
}

/* A buffer of `len` bytes: `head`, `fill` repeated, `tail` at the very end. */
static char *make(size_t len, const char *head, char fill, const char *tail)
{
	char *s = malloc(len + 1);
	memset(s, fill, len);
	memcpy(s, head, strlen(head));
	memcpy(s + len - strlen(tail), tail, strlen(tail));
	s[len] = '\0';
	return s;
}

static void test_caps(void **state)
{
	(void)state;
	const char *error = NULL;
	/* line: text and values, exactly at the cap (CRLF included), then one more */
	for (size_t extra = 0; extra <= 1; extra++) {
		char *text = make(MT_IMAP_LINE_MAX + extra, "* OK ", 'x', "\r\n");
		char *atom = make(MT_IMAP_LINE_MAX + extra, "* X ", 'x', "\r\n");
		int want = extra ? -1 : 1;
		assert_int_equal(feed_all(text, strlen(text), 0, &error), want);
		assert_int_equal(feed_all(atom, strlen(atom), 0, &error), want);
		if (extra)
			assert_non_null(strstr(error, "line longer than"));
		free(text);
		free(atom);
	}
	/* a line may be as long again after each literal */
	char *two = make(2 * MT_IMAP_LINE_MAX - 10, "* X ", 'x', "\r\n");
	memcpy(two + MT_IMAP_LINE_MAX - 10, " {1}\r\nz ", 8);
	assert_int_equal(feed_all(two, strlen(two), 0, &error), 1);
	free(two);

	/* depth */
	for (int extra = 0; extra <= 1; extra++) {
		char nest[2 * (MT_IMAP_DEPTH_MAX + 1) + 16] = "* X ";
		size_t n = strlen(nest);
		for (int i = 0; i < MT_IMAP_DEPTH_MAX + extra; i++)
			nest[n++] = '(';
		for (int i = 0; i < MT_IMAP_DEPTH_MAX + extra; i++)
			nest[n++] = ')';
		memcpy(nest + n, "\r\n", 3);
		assert_int_equal(feed_str(nest, &error), extra ? -1 : 1);
		if (extra)
			assert_non_null(strstr(error, "nested deeper"));
	}

	/* tag */
	for (int extra = 0; extra <= 1; extra++) {
		char *tagged = make(MT_IMAP_TAG_MAX + extra + 10, "", 't', " OK done\r\n");
		assert_int_equal(feed_str(tagged, &error), extra ? -1 : 1);
		if (extra)
			assert_non_null(strstr(error, "tag longer"));
		free(tagged);
	}

	/* literals: the header is refused before any byte of data */
	static const struct {
		const char *prefix;
		unsigned long cap;
		int stream;
	} lits[] = {
	    {"* X ", MT_IMAP_LITERAL_MAX, 0},
	    {"* 1 FETCH (RFC822.SIZE 4 BODY[] ", MT_IMAP_BODY_LITERAL_MAX, 0},
	    {"* 1 FETCH (BODY.PEEK[TEXT]<0> ", MT_IMAP_BODY_LITERAL_MAX, 0},
	    {"* 1 FETCH (BODY[TEXT] ", MT_IMAP_STREAM_LITERAL_MAX, 1},
	    /* not a body item, or not at the top of the FETCH list: the small cap */
	    {"* 1 FETCH (UID ", MT_IMAP_LITERAL_MAX, 1},
	    {"* 1 FETCH (X (BODY[] ", MT_IMAP_LITERAL_MAX, 1},
	};
	for (size_t i = 0; i < sizeof(lits) / sizeof(lits[0]); i++) {
		char head[128];
		snprintf(head, sizeof(head), "%s{%lu}\r\n", lits[i].prefix, lits[i].cap);
		assert_int_equal(feed_all(head, strlen(head), lits[i].stream, &error), 0);
		snprintf(head, sizeof(head), "%s{%lu}\r\n", lits[i].prefix, lits[i].cap + 1);
		assert_int_equal(feed_all(head, strlen(head), lits[i].stream, &error), -1);
		assert_non_null(strstr(error, "literal larger than"));
	}
	/* a kept literal of exactly MT_IMAP_LITERAL_MAX bytes */
	char head[64];
	int hl = snprintf(head, sizeof(head), "* X {%d}\r\n", MT_IMAP_LITERAL_MAX);
	char *lit = make((size_t)hl + MT_IMAP_LITERAL_MAX + 2, head, 'y', "\r\n");
	assert_int_equal(feed_str(lit, &error), 1);
	free(lit);

	/* tokens: only reachable across literals, each line being short */
	for (int extra = 0; extra <= 1; extra++) {
		size_t values = MT_IMAP_TOKENS_MAX - 2 + (size_t)extra; /* "*" and "X" count */
		size_t len = 4 + values * 7 + 2;
		char *many = malloc(len + 1);
		memcpy(many, "* X ", 4);
		for (size_t i = 0; i < values; i++)
			memcpy(many + 4 + i * 7, "{1}\r\nz ", 7);
		memcpy(many + len - 2, "\r\n", 3);
		assert_int_equal(feed_all(many, len, 0, &error), extra ? -1 : 1);
		if (extra)
			assert_non_null(strstr(error, "more than"));
		free(many);
	}

	/* the whole response: kept body literals add up */
	size_t body = MT_IMAP_BODY_LITERAL_MAX;
	size_t count = MT_IMAP_RESPONSE_MAX / body + 1;
	char bh[64];
	int bhl = snprintf(bh, sizeof(bh), " BODY[%d] {%zu}\r\n", 1, body);
	size_t len = 17 + count * ((size_t)bhl + body) + 3;
	char *big = malloc(len + 1);
	memset(big, 'b', len);
	memcpy(big, "* 1 FETCH (UID 1", 16);
	size_t pos = 16;
	for (size_t i = 0; i < count; i++) {
		memcpy(big + pos, bh, (size_t)bhl);
		pos += (size_t)bhl + body;
	}
	memcpy(big + pos, ")\r\n", 3);
	big[pos + 3] = '\0';
	assert_int_equal(feed_all(big, pos + 3, 0, &error), -1);
	assert_non_null(strstr(error, "response larger than"));
	/* streamed, the same bytes are never held */
	assert_int_equal(feed_all(big, pos + 3, 1, &error), 1);
	free(big);
}

static int refuse(void *ctx, const struct imap_literal_chunk *chunk)
{
	(void)ctx;
	return chunk->offset + chunk->len >= 4 ? -1 : 0;
}

static void test_stream(void **state)
{
	(void)state;
	const char *input = "* 7 FETCH (UID 42 BODY[TEXT]<0> {10}\r\n0123456789 "
	                    "ENVELOPE (NIL {3}\r\nsub NIL NIL NIL NIL NIL NIL NIL NIL))\r\n";
	struct out chunks = {0};
	struct imap_parser parser;
	imap_parser_init(&parser);
	imap_parser_set_literal_cb(&parser, on_chunk, &chunks);
	size_t consumed;
	const struct imap_response *resp;
	const char *error;
	assert_int_equal(imap_parser_feed(&parser, input, strlen(input), &consumed, &resp, &error),
	                 1);
	assert_string_equal(chunks.buf, "[chunk seq=7 item=BODY[TEXT]<0> size=10]0123456789");
	struct imap_fetch fetch;
	assert_int_equal(imap_fetch_parse(resp, &fetch, &error), 0);
	assert_int_equal(fetch.uid, 42);
	assert_int_equal(fetch.section_count, 1);
	assert_true(fetch.sections[0].value->streamed);
	assert_null(fetch.sections[0].value->str);
	assert_int_equal(fetch.sections[0].value->len, 10);
	struct imap_envelope env;
	assert_int_equal(imap_envelope_parse(fetch.envelope, &env, &error), 0);
	assert_string_equal(env.subject, "sub"); /* not a body item: kept */
	imap_parser_deinit(&parser);
	free(chunks.buf);

	imap_parser_init(&parser);
	imap_parser_set_literal_cb(&parser, refuse, NULL);
	assert_int_equal(imap_parser_feed(&parser, input, strlen(input), &consumed, &resp, &error),
	                 -1);
	assert_non_null(strstr(error, "refused"));
	imap_parser_deinit(&parser);
}

/* Feeds a corpus entry and returns its `index`th response (parser kept in one_parser). */
static const struct imap_response *corpus_response(size_t entry, size_t index)
{
	imap_parser_deinit(&one_parser);
	imap_parser_init(&one_parser);
	const char *input = corpus[entry];
	size_t len = strlen(input), pos = 0;
	for (size_t i = 0;; i++) {
		size_t consumed = 0;
		const struct imap_response *resp = NULL;
		const char *error = NULL;
		assert_int_equal(
		    imap_parser_feed(&one_parser, input + pos, len - pos, &consumed, &resp, &error),
		    1);
		pos += consumed;
		if (i == index)
			return resp;
	}
}

enum {
	C_GREETING,
	C_CAPABILITY,
	C_SELECT,
	C_ENVELOPE,
	C_BODYSTRUCTURE,
	C_BODY_LITERAL,
	C_LIST,
	C_STATUS,
	C_SEARCH,
	C_APPENDUID,
	C_BYE,
	C_EXPUNGE,
	C_CONTINUE,
	C_ENABLED,
	C_GMAIL,
	C_BARE_LF,
	C_EXCHANGE,
	C_BINARY,
};

static void test_codes(void **state)
{
	(void)state;
	struct imap_code_data code;
	const char *error;
	const struct imap_response *r = corpus_response(C_GREETING, 0);
	assert_int_equal(imap_response_code(r, &code, &error), 0);
	assert_int_equal(code.code, IMAP_CODE_CAPABILITY);
	assert_true(imap_caps_has(code.list, "literal+"));
	assert_true(imap_caps_has(code.list, "AUTH=PLAIN"));
	assert_false(imap_caps_has(code.list, "AUTH"));
	assert_string_equal(r->text, "Dovecot (Debian) ready.");

	r = corpus_response(C_CAPABILITY, 0);
	assert_true(imap_caps_has(r->data, "CONDSTORE"));
	assert_true(imap_caps_has(r->data, "SPECIAL-USE"));

	static const struct {
		size_t index;
		enum imap_code code;
		uint64_t number;
	} select[] = {
	    {1, IMAP_CODE_PERMANENTFLAGS, 0},
	    {4, IMAP_CODE_UNSEEN, 12},
	    {5, IMAP_CODE_UIDVALIDITY, 3857529045u},
	    {6, IMAP_CODE_UIDNEXT, 4392},
	    {7, IMAP_CODE_HIGHESTMODSEQ, 715194045007ull},
	    {8, IMAP_CODE_READ_WRITE, 0},
	};
	for (size_t i = 0; i < sizeof(select) / sizeof(select[0]); i++) {
		r = corpus_response(C_SELECT, select[i].index);
		assert_int_equal(imap_response_code(r, &code, &error), 0);
		assert_int_equal(code.code, select[i].code);
		assert_true(code.number == select[i].number);
	}
	r = corpus_response(C_SELECT, 1);
	assert_int_equal(imap_response_code(r, &code, &error), 0);
	const struct imap_value *last = code.list;
	while (last->next != NULL)
		last = last->next;
	assert_string_equal(last->str, "\\*");
	r = corpus_response(C_SELECT, 2);
	assert_string_equal(r->name, "EXISTS");
	assert_int_equal(r->number, 172);

	r = corpus_response(C_APPENDUID, 0);
	assert_int_equal(imap_response_code(r, &code, &error), 0);
	assert_int_equal(code.code, IMAP_CODE_APPENDUID);
	assert_int_equal(code.uidvalidity, 38505);
	assert_string_equal(code.uids, "3955");
	r = corpus_response(C_APPENDUID, 1);
	assert_int_equal(imap_response_code(r, &code, &error), 0);
	assert_int_equal(code.code, IMAP_CODE_COPYUID);
	assert_string_equal(code.source, "304,319:320");
	assert_string_equal(code.uids, "3956:3958");
	r = corpus_response(C_APPENDUID, 2);
	assert_int_equal(imap_response_code(r, &code, &error), 0);
	assert_int_equal(code.code, IMAP_CODE_TRYCREATE);
	assert_int_equal(r->status, IMAP_STATUS_NO);

	static const enum imap_code exchange[] = {
	    IMAP_CODE_NONE,        IMAP_CODE_AUTHENTICATIONFAILED,
	    IMAP_CODE_UNAVAILABLE, IMAP_CODE_CLOSED,
	    IMAP_CODE_NOMODSEQ,    IMAP_CODE_READ_ONLY,
	    IMAP_CODE_NONE,
	};
	for (size_t i = 0; i < sizeof(exchange) / sizeof(exchange[0]); i++) {
		r = corpus_response(C_EXCHANGE, i);
		assert_int_equal(imap_response_code(r, &code, &error), 0);
		assert_int_equal(code.code, exchange[i]);
	}
	assert_int_equal(r->status, IMAP_STATUS_OK);
	r = corpus_response(C_EXCHANGE, 5);
	assert_int_equal(r->status, IMAP_STATUS_PREAUTH);

	/* an unknown code whose argument is not made of values stays raw */
	r = corpus_response(C_GMAIL, 1);
	assert_int_equal(imap_response_code(r, &code, &error), 0);
	assert_int_equal(code.code, IMAP_CODE_OTHER);
	assert_string_equal(code.name, "WEBALERT");
	assert_null(r->code_values);
	assert_string_equal(
	    r->code_args, "https://accounts.google.com/signin/continue?sarp=1&scc=1&plt=AKgn)sbt");

	r = corpus_response(C_BYE, 1);
	assert_int_equal(r->status, IMAP_STATUS_BYE);
	assert_string_equal(r->text, "Server shutting down");
	r = corpus_response(C_CONTINUE, 2);
	assert_int_equal(r->kind, IMAP_RESP_CONTINUE);
	assert_string_equal(r->text, "dXNlcj1mb28=");
	r = corpus_response(C_CONTINUE, 4);
	assert_int_equal(imap_response_code(r, &code, &error), 0);
	assert_int_equal(code.code, IMAP_CODE_ALERT);

	/* known codes need their arguments */
	static const char *const bad[] = {
	    "* OK [UIDVALIDITY 0] x\r\n",
	    "* OK [UIDVALIDITY x] x\r\n",
	    "* OK [UIDNEXT] x\r\n",
	    "* OK [APPENDUID 1] x\r\n",
	    "* OK [COPYUID 1 2] x\r\n",
	    "* OK [PERMANENTFLAGS \\Seen] x\r\n",
	    "* OK [HIGHESTMODSEQ -1] x\r\n",
	    "* OK [UIDNEXT \"a] x\r\n",
	    "* OK [CAPABILITY (IMAP4)] x\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = parse_one(bad[i]);
		if (imap_response_code(r, &code, &error) != -1)
			fail_msg("accepted %s", bad[i]);
	}
}

static void test_fetch(void **state)
{
	(void)state;
	const char *error;
	struct imap_fetch fetch;
	const struct imap_response *r = corpus_response(C_ENVELOPE, 0);
	assert_int_equal(imap_fetch_parse(r, &fetch, &error), 0);
	assert_int_equal(fetch.seq, 12);
	assert_int_equal(fetch.uid, 4827);
	assert_int_equal(fetch.flag_count, 2);
	assert_string_equal(fetch.flags->next->str, "$Forwarded");
	assert_string_equal(fetch.internaldate, "17-Jul-2026 02:44:25 -0700");
	assert_int_equal(fetch.size, 4286);
	assert_true(fetch.modseq == 12121231000ull);
	assert_int_equal(fetch.has, IMAP_FETCH_UID | IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE |
	                                IMAP_FETCH_SIZE | IMAP_FETCH_MODSEQ | IMAP_FETCH_ENVELOPE);
	struct imap_envelope env;
	assert_int_equal(imap_envelope_parse(fetch.envelope, &env, &error), 0);
	assert_string_equal(env.date, "Wed, 17 Jul 2026 02:23:25 -0700");
	assert_string_equal(env.subject, "=?UTF-8?B?UmU6IFRoZSBwb3NpdGlvbiDwn5iA?= (and \"more\")");
	assert_string_equal(env.in_reply_to, "<prev@example.com>");
	assert_string_equal(env.message_id, "<B27397-0100000@example.com>");
	assert_null(env.reply_to);
	assert_null(env.cc);
	struct imap_address a;
	assert_int_equal(imap_address_get(env.from, &a, &error), 0);
	assert_string_equal(a.name, "Jack \"JJ\" Doe");
	assert_null(a.adl);
	assert_string_equal(a.mailbox, "jack");
	assert_string_equal(a.host, "example.com");
	assert_null(env.from->next);
	assert_int_equal(imap_address_get(env.to, &a, &error), 0);
	assert_string_equal(a.name, "Ann (Recruiting)"); /* a literal */
	assert_int_equal(imap_address_get(env.to->next, &a, &error), 0);
	assert_string_equal(a.mailbox, "undisclosed-recipients"); /* group start */
	assert_null(a.host);
	assert_int_equal(imap_address_get(env.to->next->next, &a, &error), 0);
	assert_null(a.mailbox); /* group end */

	r = corpus_response(C_BODY_LITERAL, 0);
	assert_int_equal(imap_fetch_parse(r, &fetch, &error), 0);
	assert_int_equal(fetch.section_count, 2);
	assert_string_equal(fetch.sections[0].item, "BODY[HEADER.FIELDS (FROM TO SUBJECT)]");
	assert_int_equal(fetch.sections[0].section_len, strlen("HEADER.FIELDS (FROM TO SUBJECT)"));
	assert_memory_equal(fetch.sections[0].section, "HEADER.FIELDS (FROM TO SUBJECT)",
	                    fetch.sections[0].section_len);
	assert_false(fetch.sections[0].has_origin);
	assert_non_null(strstr(fetch.sections[0].value->str, "Subject: CV\r\n\r\n"));
	assert_memory_equal(fetch.sections[1].section, "TEXT", 4);
	assert_true(fetch.sections[1].has_origin);
	assert_int_equal(fetch.sections[1].origin, 0);
	assert_string_equal(fetch.sections[1].value->str,
	                    "Hello Ann,\r\n\r\nthanks (for) your \"note\" {5}\r\n) * OK not a "
	                    "response\r\n");

	r = corpus_response(C_GMAIL, 0);
	assert_int_equal(imap_fetch_parse(r, &fetch, &error), 0);
	assert_int_equal(fetch.uid, 1);
	assert_int_equal(fetch.has, IMAP_FETCH_UID | IMAP_FETCH_FLAGS);

	r = corpus_response(C_BINARY, 0);
	assert_int_equal(imap_fetch_parse(r, &fetch, &error), 0);
	assert_string_equal(fetch.sections[0].item, "BINARY[1]");
	assert_string_equal(fetch.sections[0].value->str, "ab\x01"
	                                                  "c");
	r = corpus_response(C_BINARY, 2);
	assert_int_equal(imap_fetch_parse(r, &fetch, &error), 0);
	assert_string_equal(fetch.sections[0].value->str, "");

	static const char *const bad[] = {
	    "* 1 FETCH (UID)\r\n",          "* 1 FETCH (UID 0)\r\n",
	    "* 1 FETCH (UID x)\r\n",        "* 1 FETCH (FLAGS \\Seen)\r\n",
	    "* 1 FETCH (MODSEQ 5)\r\n",     "* 1 FETCH (BODY[]<x> NIL)\r\n",
	    "* 1 FETCH (BODY[]<1 NIL)\r\n", "* 1 FETCH UID 5\r\n",
	    "* FETCH (UID 5)\r\n",          "* 1 FETCH (\"UID\" 5)\r\n",
	    "* 1 FETCH (BODY[] (a))\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = parse_one(bad[i]);
		if (imap_fetch_parse(r, &fetch, &error) != -1)
			fail_msg("accepted %s", bad[i]);
	}
	struct imap_envelope env2;
	r = parse_one("* 1 FETCH (ENVELOPE (NIL NIL ((NIL NIL \"a\")) NIL NIL NIL NIL NIL NIL "
	              "NIL))\r\n");
	assert_int_equal(imap_fetch_parse(r, &fetch, &error), 0);
	assert_int_equal(imap_envelope_parse(fetch.envelope, &env2, &error), -1);
}

static void test_bodystructure(void **state)
{
	(void)state;
	const char *error;
	struct imap_fetch fetch;
	const struct imap_response *r = corpus_response(C_BODYSTRUCTURE, 0);
	assert_int_equal(imap_fetch_parse(r, &fetch, &error), 0);
	struct imap_body_part parts[16];
	size_t count = 0;
	assert_int_equal(imap_bodystructure_parse(fetch.bodystructure, parts, 16, &count, &error),
	                 0);
	assert_int_equal(count, 6);
	static const char *const paths[] = {"", "1", "1.1", "1.2", "2", "3"};
	for (size_t i = 0; i < count; i++)
		assert_string_equal(parts[i].path, paths[i]);
	assert_true(parts[0].multipart);
	assert_string_equal(parts[0].subtype, "MIXED");
	assert_string_equal(parts[1].subtype, "ALTERNATIVE");
	assert_int_equal(parts[2].depth, 2);
	assert_string_equal(parts[2].charset, "UTF-8");
	assert_int_equal(parts[2].size, 1234);
	assert_false(parts[2].attachment);
	assert_string_equal(parts[4].type, "APPLICATION");
	assert_string_equal(parts[4].name, "CV Jack.pdf");
	assert_string_equal(parts[4].filename, "CV Jack.pdf");
	assert_string_equal(parts[4].disposition, "ATTACHMENT");
	assert_string_equal(parts[4].encoding, "BASE64");
	assert_int_equal(parts[4].size, 102400);
	assert_true(parts[5].attachment); /* the forwarded message */
	assert_string_equal(parts[5].disposition, "attachment");
	assert_int_equal(imap_bodystructure_attachments(parts, count), 2);
	/* too many parts for the caller's array */
	assert_int_equal(imap_bodystructure_parse(fetch.bodystructure, parts, 5, &count, &error),
	                 -1);

	r = parse_one("* 2 FETCH (BODYSTRUCTURE (\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 12 "
	              "1))\r\n");
	assert_int_equal(imap_fetch_parse(r, &fetch, &error), 0);
	assert_int_equal(imap_bodystructure_parse(fetch.bodystructure, parts, 16, &count, &error),
	                 0);
	assert_int_equal(count, 1);
	assert_string_equal(parts[0].path, "1");
	assert_null(parts[0].charset);
	r = parse_one("* 2 FETCH (BODYSTRUCTURE (\"TEXT\" \"PLAIN\" NIL))\r\n");
	assert_int_equal(imap_fetch_parse(r, &fetch, &error), 0);
	assert_int_equal(imap_bodystructure_parse(fetch.bodystructure, parts, 16, &count, &error),
	                 -1);
	r = parse_one(
	    "* 2 FETCH (BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 1 1)))\r\n");
	assert_int_equal(imap_fetch_parse(r, &fetch, &error), 0);
	assert_int_equal(imap_bodystructure_parse(fetch.bodystructure, parts, 16, &count, &error),
	                 -1); /* multipart without a subtype */
}

static void test_list_status(void **state)
{
	(void)state;
	const char *error;
	struct imap_list list;
	static const struct {
		unsigned flags;
		char delimiter;
		const char *utf8;
	} want[] = {
	    {IMAP_MBOX_HASNOCHILDREN, '/', "INBOX"},
	    {IMAP_MBOX_HASNOCHILDREN | IMAP_MBOX_SENT, '/', "Sent Items"},
	    {IMAP_MBOX_HASCHILDREN | IMAP_MBOX_NOSELECT, '/', "[Gmail]"},
	    {IMAP_MBOX_ALL | IMAP_MBOX_HASNOCHILDREN, '/', "[Gmail]/All Mail"},
	    {IMAP_MBOX_HASNOCHILDREN | IMAP_MBOX_DRAFTS, '/',
	     "\xc3\x89l\xc3\xa9ments envoy\xc3\xa9s"},
	    {IMAP_MBOX_HASNOCHILDREN | IMAP_MBOX_JUNK, '.', "Junk"},
	    {IMAP_MBOX_HASNOCHILDREN | IMAP_MBOX_TRASH | IMAP_MBOX_FLAGGED | IMAP_MBOX_ARCHIVE,
	     '\\', "Trash & Bin"},
	    {IMAP_MBOX_NOSELECT, '\0', ""},
	    {0, '/', "Archive/2026"},
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct imap_response *r = corpus_response(C_LIST, i);
		assert_int_equal(imap_list_parse(r, 0, &list, &error), 0);
		assert_int_equal(list.flags, want[i].flags);
		assert_int_equal(list.delimiter, want[i].delimiter);
		assert_string_equal(list.name_utf8, want[i].utf8);
	}
	/* UTF8=ACCEPT: 8-bit names as they are; without it they are invalid mUTF-7 */
	const struct imap_response *r = corpus_response(C_BINARY, 1);
	assert_int_equal(imap_list_parse(r, 1, &list, &error), 0);
	assert_string_equal(list.name_utf8, "Entw\xc3\xbcrfe");
	assert_int_equal(imap_list_parse(r, 0, &list, &error), -1);
	r = parse_one("* LIST () \"/\" \"&AGE-\"\r\n");
	assert_int_equal(imap_list_parse(r, 0, &list, &error), -1);
	r = parse_one("* LIST () \"//\" a\r\n");
	assert_int_equal(imap_list_parse(r, 0, &list, &error), -1);
	r = parse_one("* LIST \\Sent \"/\" a\r\n");
	assert_int_equal(imap_list_parse(r, 0, &list, &error), -1);

	struct imap_status_data st;
	r = corpus_response(C_STATUS, 0);
	assert_int_equal(imap_status_parse(r, &st, &error), 0);
	assert_string_equal(st.mailbox, "Sent Items");
	assert_int_equal(st.has, IMAP_STATUS_MESSAGES | IMAP_STATUS_UIDNEXT |
	                             IMAP_STATUS_UIDVALIDITY | IMAP_STATUS_UNSEEN |
	                             IMAP_STATUS_HIGHESTMODSEQ);
	assert_int_equal(st.messages, 231);
	assert_int_equal(st.uidnext, 44292);
	assert_int_equal(st.uidvalidity, 1);
	assert_int_equal(st.unseen, 0);
	assert_true(st.highestmodseq == 7011231777ull);
	r = parse_one("* STATUS INBOX (MESSAGES)\r\n");
	assert_int_equal(imap_status_parse(r, &st, &error), -1);
	r = parse_one("* STATUS INBOX (MESSAGES 4294967296)\r\n");
	assert_int_equal(imap_status_parse(r, &st, &error), -1);
}

static void test_search(void **state)
{
	(void)state;
	const char *error;
	struct imap_esearch es;
	const struct imap_response *r = corpus_response(C_SEARCH, 0);
	assert_int_equal(imap_esearch_parse(r, &es, &error), 0);
	assert_string_equal(es.tag, "a5");
	assert_true(es.uid);
	assert_int_equal(es.has, IMAP_ESEARCH_MIN | IMAP_ESEARCH_MAX | IMAP_ESEARCH_COUNT |
	                             IMAP_ESEARCH_ALL);
	assert_int_equal(es.min, 2);
	assert_int_equal(es.max, 4392);
	assert_int_equal(es.count, 120);
	assert_int_equal(es.all.count, 3);
	assert_int_equal(es.all.ranges[2].first, 4000);
	assert_int_equal(es.all.ranges[2].last, 4392);
	assert_int_equal(imap_seqset_size(&es.all), 1 + 2 + 393);
	imap_seqset_deinit(&es.all);
	r = corpus_response(C_SEARCH, 3);
	assert_int_equal(imap_esearch_parse(r, &es, &error), 0);
	assert_int_equal(es.has, IMAP_ESEARCH_COUNT);
	assert_int_equal(es.count, 0);

	struct imap_search s;
	r = corpus_response(C_SEARCH, 1);
	assert_int_equal(imap_search_parse(r, &s, &error), 0);
	assert_int_equal(s.numbers.count, 2); /* 2, 5:7 */
	assert_int_equal(s.numbers.ranges[1].first, 5);
	assert_int_equal(s.numbers.ranges[1].last, 7);
	assert_true(s.has_modseq);
	assert_true(s.modseq == 917162500);
	imap_seqset_deinit(&s.numbers);
	r = corpus_response(C_SEARCH, 2);
	assert_int_equal(imap_search_parse(r, &s, &error), 0);
	assert_int_equal(s.numbers.count, 0);
	r = parse_one("* SEARCH 1 x\r\n");
	assert_int_equal(imap_search_parse(r, &s, &error), -1);
	r = parse_one("* ESEARCH (TAG \"a\") MIN 0\r\n");
	assert_int_equal(imap_esearch_parse(r, &es, &error), -1);
	r = parse_one("* ESEARCH ALL 1:*x\r\n");
	assert_int_equal(imap_esearch_parse(r, &es, &error), -1);

	struct imap_vanished van;
	r = corpus_response(C_EXPUNGE, 3);
	assert_int_equal(imap_vanished_parse(r, &van, &error), 0);
	assert_true(van.earlier);
	assert_int_equal(van.uids.count, 3);
	assert_int_equal(imap_seqset_size(&van.uids), 13);
	imap_seqset_deinit(&van.uids);
	r = corpus_response(C_EXPUNGE, 4);
	assert_int_equal(imap_vanished_parse(r, &van, &error), 0);
	assert_false(van.earlier);
	assert_int_equal(van.uids.ranges[0].first, 405);
	imap_seqset_deinit(&van.uids);
	r = corpus_response(C_EXPUNGE, 0);
	assert_string_equal(r->name, "EXPUNGE");
	assert_int_equal(r->number, 3);
}

static void test_seqset(void **state)
{
	(void)state;
	const char *error;
	struct imap_seqset set;
	assert_int_equal(imap_seqset_parse("1:3,7,9:*,4294967295,12:10", &set, &error), 0);
	assert_int_equal(set.count, 5);
	assert_int_equal(set.ranges[2].last, UINT32_MAX);
	assert_int_equal(set.ranges[4].first, 10);
	assert_int_equal(set.ranges[4].last, 12);
	imap_seqset_deinit(&set);
	static const char *const bad[] = {"",   "0",    "01",         "1:",  ":1", "1,",
	                                  ",1", "1::2", "4294967296", "1 2", "a",  "1:2:3"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (imap_seqset_parse(bad[i], &set, &error) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
		assert_int_equal(set.count, 0);
	}
	/* the range cap, exactly and one more */
	for (int extra = 0; extra <= 1; extra++) {
		size_t n = MT_IMAP_SEQSET_RANGES_MAX + (size_t)extra;
		char *text = malloc(n * 2 + 1);
		for (size_t i = 0; i < n; i++)
			memcpy(text + 2 * i, "1,", 2);
		text[2 * n - 1] = '\0';
		assert_int_equal(imap_seqset_parse(text, &set, &error), extra ? -1 : 0);
		if (extra)
			assert_non_null(strstr(error, "ranges"));
		imap_seqset_deinit(&set);
		free(text);
	}
}

static int teardown(void **state)
{
	(void)state;
	imap_parser_deinit(&one_parser);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_split_everywhere),
	    cmocka_unit_test(test_values),
	    cmocka_unit_test(test_two_in_one_chunk),
	    cmocka_unit_test(test_release),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_caps),
	    cmocka_unit_test(test_stream),
	    cmocka_unit_test(test_codes),
	    cmocka_unit_test(test_fetch),
	    cmocka_unit_test(test_bodystructure),
	    cmocka_unit_test(test_list_status),
	    cmocka_unit_test(test_search),
	    cmocka_unit_test(test_seqset),
	};
	imap_parser_init(&one_parser);
	return cmocka_run_group_tests(tests, NULL, teardown);
}
