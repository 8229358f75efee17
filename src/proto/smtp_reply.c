#include "proto/smtp_reply.h"

#include <string.h>

/* The raw line may hold its CR LF too, so a line of exactly MT_SMTP_REPLY_LINE_MAX octets
 * including CRLF (RFC 5321 counts them) is accepted. */
#define LINE_RAW_MAX MT_SMTP_REPLY_LINE_MAX
/* Every line's text plus its NUL: the worst case a peer can make us hold for one reply. */
#define STORAGE_MAX ((size_t)MT_SMTP_REPLY_LINE_MAX * MT_SMTP_REPLY_LINES_MAX)
#define STR_(x)     #x
#define STR(x)      STR_(x)

void smtp_reply_parser_init(struct smtp_reply_parser *parser)
{
	memset(parser, 0, sizeof(*parser));
	mt_buf_init(&parser->line, LINE_RAW_MAX);
	mt_buf_init(&parser->storage, STORAGE_MAX);
}

void smtp_reply_parser_deinit(struct smtp_reply_parser *parser)
{
	mt_buf_free(&parser->line);
	mt_buf_free(&parser->storage);
	memset(parser, 0, sizeof(*parser));
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* 1*3DIGIT; returns the digits read, 0 when there are none or more than three. */
static size_t scan_1_3_digits(const char *s, size_t len)
{
	size_t n = 0;
	while (n < len && is_digit(s[n]))
		n++;
	return n >= 1 && n <= 3 ? n : 0;
}

/* RFC 3463: status-code = class "." subject "." detail
 *   class = "2" / "4" / "5";  subject = 1*3digit;  detail = 1*3digit
 * It must be followed by SP or end the text (RFC 2034 puts it first, then SP). The class is not
 * checked against the reply code: some servers disagree with themselves and the reply code is
 * what decides. */
static size_t parse_enhanced(const char *text, size_t len)
{
	if (len < 5 || (text[0] != '2' && text[0] != '4' && text[0] != '5') || text[1] != '.')
		return 0;
	size_t pos = 2;
	size_t n = scan_1_3_digits(text + pos, len - pos);
	if (n == 0)
		return 0;
	pos += n;
	if (pos >= len || text[pos] != '.')
		return 0;
	pos++;
	n = scan_1_3_digits(text + pos, len - pos);
	if (n == 0)
		return 0;
	pos += n;
	if (pos < len && text[pos] != ' ')
		return 0;
	return pos;
}

static void reply_complete(struct smtp_reply_parser *parser)
{
	struct smtp_reply *reply = &parser->reply;
	/* storage may have moved while it grew: the pointers are taken only now. */
	for (unsigned i = 0; i < reply->line_count; i++)
		reply->lines[i] = parser->storage.data + parser->line_offsets[i];
	reply->code = parser->pending_code;
	reply->enhanced[0] = '\0';
	const char *first = reply->lines[0];
	size_t n = parse_enhanced(first, strlen(first));
	if (n > 0) {
		memcpy(reply->enhanced, first, n);
		reply->enhanced[n] = '\0';
	}
	parser->pending_code = 0;
	parser->done = 1;
}

/* One complete line (LF and an optional CR before it already removed).
 *   Reply-line = *( Reply-code "-" [ textstring ] CRLF ) Reply-code [ SP textstring ] CRLF
 * Returns 1 when it ended the reply, 0 when more lines follow, -1 on error. */
static int parse_line(struct smtp_reply_parser *parser, const char *line, size_t len,
                      const char **error_r)
{
	/* RFC 5321 has the second digit 0-5; any digit is taken so that an odd but well-formed
	 * code still reaches the classifier instead of killing the session. */
	if (len < 3 || line[0] < '2' || line[0] > '5' || !is_digit(line[1]) || !is_digit(line[2])) {
		*error_r = "SMTP reply line does not start with a 2xx-5xx code";
		return -1;
	}
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	int last;
	if (len == 3)
		last = 1; /* "250" alone: seen in the wild, RFC 5321 allows the text to be absent */
	else if (line[3] == ' ')
		last = 1;
	else if (line[3] == '-')
		last = 0;
	else {
		*error_r = "SMTP reply code not followed by SP or \"-\"";
		return -1;
	}
	if (memchr(line, '\0', len) != NULL) {
		*error_r = "NUL byte in SMTP reply";
		return -1;
	}
	if (parser->pending_code != 0 && code != parser->pending_code) {
		*error_r = "SMTP multi-line reply changes its code between lines";
		return -1;
	}
	struct smtp_reply *reply = &parser->reply;
	if (reply->line_count >= MT_SMTP_REPLY_LINES_MAX) {
		*error_r = "SMTP reply has too many lines";
		return -1;
	}
	const char *text = len > 4 ? line + 4 : line + len;
	size_t text_len = (size_t)(line + len - text);
	size_t offset = parser->storage.len;
	if (mt_buf_append(&parser->storage, text, text_len) < 0 ||
	    mt_buf_append(&parser->storage, "", 1) < 0) {
		*error_r = "SMTP reply too long";
		return -1;
	}
	parser->line_offsets[reply->line_count++] = offset;
	parser->pending_code = code;
	if (!last)
		return 0;
	reply_complete(parser);
	return 1;
}

int smtp_reply_parser_feed(struct smtp_reply_parser *parser, const char *data, size_t len,
                           size_t *consumed_r, const struct smtp_reply **reply_r,
                           const char **error_r)
{
	if (parser->done) {
		/* the previous reply's storage is released only now, keeping it valid until
		 * this call as promised */
		mt_buf_reset(&parser->storage);
		parser->reply.line_count = 0;
		parser->done = 0;
	}
	size_t pos = 0;
	while (pos < len) {
		const char *lf = memchr(data + pos, '\n', len - pos);
		size_t chunk = lf != NULL ? (size_t)(lf - (data + pos)) + 1 : len - pos;
		if (mt_buf_append(&parser->line, data + pos, chunk) < 0) {
			*error_r =
			    "SMTP reply line longer than " STR(MT_SMTP_REPLY_LINE_MAX) " bytes";
			return -1;
		}
		pos += chunk;
		if (lf == NULL)
			break;
		size_t line_len = parser->line.len - 1;
		if (line_len > 0 && parser->line.data[line_len - 1] == '\r')
			line_len--;
		int ret = parse_line(parser, parser->line.data, line_len, error_r);
		mt_buf_reset(&parser->line);
		if (ret < 0)
			return -1;
		if (ret > 0) {
			*consumed_r = pos;
			*reply_r = &parser->reply;
			return 1;
		}
	}
	*consumed_r = len;
	return 0;
}

int smtp_reply_parser_busy(const struct smtp_reply_parser *parser)
{
	return parser->line.len > 0 || parser->pending_code != 0;
}

/* Where to cut `s` to at most `max` bytes without splitting a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
	if (len <= max)
		return len;
	size_t cut = max;
	while (cut > 0 && ((unsigned char)s[cut] & 0xc0) == 0x80)
		cut--;
	return cut;
}

/* Appends `len` bytes of text; control characters become '?' so that the line can go into an
 * API error or a log field as is. Returns 0 when the output is full. */
static int format_append(char *out, size_t cap, size_t *pos, const char *text, size_t len)
{
	size_t room = cap - *pos;
	size_t n = utf8_cut(text, len, room);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)text[i];
		out[*pos + i] = c == '\t' ? ' ' : (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	*pos += n;
	return n == len;
}

void smtp_reply_format(const struct smtp_reply *reply, char *out, size_t out_size)
{
	if (out_size == 0)
		return;
	size_t cap = out_size - 1;
	if (cap > MT_SMTP_REPLY_TEXT_MAX)
		cap = MT_SMTP_REPLY_TEXT_MAX;
	char code[4] = {(char)('0' + reply->code / 100 % 10), (char)('0' + reply->code / 10 % 10),
	                (char)('0' + reply->code % 10), '\0'};
	size_t pos = 0;
	int room = format_append(out, cap, &pos, code, 3);
	size_t enh_len = strlen(reply->enhanced);
	for (unsigned i = 0; room && i < reply->line_count; i++) {
		const char *text = reply->lines[i];
		size_t len = strlen(text);
		/* Gmail repeats "5.4.5" on every line; once is enough in one-line form. */
		if (i > 0 && enh_len > 0 && len >= enh_len &&
		    memcmp(text, reply->enhanced, enh_len) == 0 &&
		    (len == enh_len || text[enh_len] == ' ')) {
			text += enh_len;
			len -= enh_len;
			while (len > 0 && *text == ' ') {
				text++;
				len--;
			}
		}
		if (len == 0)
			continue;
		room = format_append(out, cap, &pos, " ", 1) &&
		       format_append(out, cap, &pos, text, len);
	}
	out[pos] = '\0';
}
