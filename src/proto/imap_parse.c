#include "proto/imap_parse.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NONE UINT32_MAX

/* Lexer states: where the next byte goes. */
enum {
	L_BETWEEN,      /* between values */
	L_ATOM,         /* in an atom */
	L_ATOM_BRACKET, /* inside the "[...]" of an atom: SP and parentheses allowed */
	L_QUOTED,
	L_QUOTED_ESC,
	L_LIT_DIGITS, /* after "{" */
	L_LIT_PLUS,   /* after "{N+" */
	L_LIT_CR,     /* after "}" */
	L_LIT_LF,     /* after "}" CR */
	L_LIT_DATA,
	L_CR,         /* a CR between values: LF must follow */
	L_TEXT_START, /* resp-text begins: one SP is skipped */
	L_TEXT,       /* resp-text, raw up to LF */
};

/* Head states: which of the tokens before the data comes next. */
enum {
	H_TAG,      /* tag, "*" or "+" */
	H_STATUS,   /* after a tag: OK / NO / BAD */
	H_UNTAGGED, /* after "*": a number or a keyword */
	H_KEYWORD,  /* after "* n": a keyword */
	H_DATA,     /* values */
	H_TEXT,     /* resp-text */
};

/* Above these the parser's arrays are released after a response instead of kept for the next
 * one: a single large FETCH must not pin its memory for the life of the connection. */
#define STORAGE_KEEP (2 * MT_IMAP_LINE_MAX)
#define VALUES_KEEP  4096

static const char *const status_names[] = {
    [IMAP_STATUS_OK] = "OK",           [IMAP_STATUS_NO] = "NO",   [IMAP_STATUS_BAD] = "BAD",
    [IMAP_STATUS_PREAUTH] = "PREAUTH", [IMAP_STATUS_BYE] = "BYE",
};

static void frame_reset(struct imap_lexer_frame *frame, uint32_t list)
{
	frame->list = list;
	frame->first = NONE;
	frame->last = NONE;
	frame->count = 0;
}

static void response_reset(struct imap_parser *parser)
{
	if (parser->storage.cap > STORAGE_KEEP)
		mt_buf_free(&parser->storage);
	mt_buf_reset(&parser->storage);
	if (parser->value_cap > VALUES_KEEP) {
		free(parser->values);
		parser->values = NULL;
		parser->value_cap = 0;
	}
	parser->value_count = 0;
	parser->depth = 0;
	frame_reset(&parser->stack[0], NONE);
	parser->state = L_BETWEEN;
	parser->head = H_TAG;
	parser->in_code = 0;
	parser->line_len = 0;
	parser->tag_idx = parser->name_idx = parser->data_first = parser->code_first = NONE;
	memset(&parser->resp, 0, sizeof(parser->resp));
	parser->done = 0;
}

void imap_parser_init(struct imap_parser *parser)
{
	memset(parser, 0, sizeof(*parser));
	mt_buf_init(&parser->storage, MT_IMAP_RESPONSE_MAX);
	response_reset(parser);
}

void imap_parser_deinit(struct imap_parser *parser)
{
	mt_buf_free(&parser->storage);
	free(parser->values);
	memset(parser, 0, sizeof(*parser));
}

void imap_parser_release(struct imap_parser *parser)
{
	if (imap_parser_busy(parser))
		return;
	mt_buf_free(&parser->storage);
	free(parser->values);
	parser->values = NULL;
	parser->value_cap = 0;
	parser->value_count = 0;
	memset(&parser->resp, 0, sizeof(parser->resp));
}

void imap_parser_set_literal_cb(struct imap_parser *parser, imap_literal_cb *cb, void *ctx)
{
	parser->on_literal = cb;
	parser->ctx = ctx;
}

int imap_parser_busy(const struct imap_parser *parser)
{
	return !parser->done && (parser->line_len > 0 || parser->value_count > 0 ||
	                         parser->state != L_BETWEEN || parser->storage.len > 0);
}

static int storage_put(struct imap_parser *parser, const char *bytes, size_t len,
                       const char **error_r)
{
	if (mt_buf_append(&parser->storage, bytes, len) < 0) {
		*error_r = "IMAP response larger than " MT_STRINGIFY(MT_IMAP_RESPONSE_MAX) " bytes";
		return -1;
	}
	return 0;
}

static struct imap_value *node(struct imap_parser *parser, uint32_t idx)
{
	return &parser->values[idx];
}

static void upper_ascii(char *s)
{
	for (; *s != '\0'; s++) {
		if (*s >= 'a' && *s <= 'z')
			*s = (char)(*s - 'a' + 'A');
	}
}

static const char *node_text(const struct imap_parser *parser, uint32_t idx)
{
	return parser->storage.data + parser->values[idx].str_off_;
}

/* Enters resp-text: the rest of the line is free text (possibly with a [code]). */
static void enter_text(struct imap_parser *parser)
{
	parser->head = H_TEXT;
	parser->state = L_TEXT_START;
	parser->text_off = parser->storage.len;
}

/* A value completed at the top level before the data: tag, "*", number, keyword. */
static int head_token(struct imap_parser *parser, uint32_t idx, const char **error_r)
{
	struct imap_value *v = node(parser, idx);
	struct imap_response *resp = &parser->resp;
	int word = v->type == IMAP_ATOM || v->type == IMAP_NUMBER || v->type == IMAP_NIL;
	const char *text = word ? node_text(parser, idx) : "";
	switch (parser->head) {
	case H_TAG:
		if (!word) {
			*error_r = "IMAP response does not start with a tag, \"*\" or \"+\"";
			return -1;
		}
		if (strcmp(text, "*") == 0) {
			resp->kind = IMAP_RESP_UNTAGGED;
			parser->head = H_UNTAGGED;
		} else if (strcmp(text, "+") == 0) {
			resp->kind = IMAP_RESP_CONTINUE;
			enter_text(parser);
		} else {
			if (v->len > MT_IMAP_TAG_MAX) {
				*error_r =
				    "IMAP tag longer than " MT_STRINGIFY(MT_IMAP_TAG_MAX) " bytes";
				return -1;
			}
			resp->kind = IMAP_RESP_TAGGED;
			parser->tag_idx = idx;
			parser->head = H_STATUS;
		}
		return 0;
	case H_STATUS:
		for (int s = IMAP_STATUS_OK; s <= IMAP_STATUS_BAD; s++) {
			if (v->type == IMAP_ATOM && strcasecmp(text, status_names[s]) == 0) {
				resp->status = (enum imap_status)s;
				parser->name_idx = idx;
				enter_text(parser);
				return 0;
			}
		}
		*error_r = "IMAP tagged response without OK, NO or BAD";
		return -1;
	case H_UNTAGGED:
		if (v->type == IMAP_NUMBER) {
			if (v->num > UINT32_MAX) {
				*error_r = "IMAP message number out of range";
				return -1;
			}
			resp->has_number = 1;
			resp->number = (uint32_t)v->num;
			parser->head = H_KEYWORD;
			return 0;
		}
		if (v->type != IMAP_ATOM) {
			*error_r = "IMAP untagged response without a keyword";
			return -1;
		}
		parser->name_idx = idx;
		for (int s = IMAP_STATUS_OK; s <= IMAP_STATUS_BYE; s++) {
			if (strcasecmp(text, status_names[s]) == 0) {
				resp->status = (enum imap_status)s;
				enter_text(parser);
				return 0;
			}
		}
		parser->head = H_DATA;
		return 0;
	case H_KEYWORD:
		if (v->type != IMAP_ATOM) {
			*error_r = "IMAP message number not followed by a keyword";
			return -1;
		}
		parser->name_idx = idx;
		parser->head = H_DATA;
		return 0;
	default:
		return 0;
	}
}

/* Appends a node to the open list (or the top level) and returns its index. */
static int add_node(struct imap_parser *parser, enum imap_type type, uint32_t *idx_r,
                    const char **error_r)
{
	if (parser->value_count >= MT_IMAP_TOKENS_MAX) {
		*error_r =
		    "IMAP response has more than " MT_STRINGIFY(MT_IMAP_TOKENS_MAX) " values";
		return -1;
	}
	if (parser->value_count == parser->value_cap) {
		size_t cap = parser->value_cap ? parser->value_cap * 2 : 64;
		if (cap > MT_IMAP_TOKENS_MAX)
			cap = MT_IMAP_TOKENS_MAX;
		struct imap_value *values = realloc(parser->values, cap * sizeof(*values));
		if (values == NULL) {
			*error_r = "out of memory for an IMAP response";
			return -1;
		}
		parser->values = values;
		parser->value_cap = cap;
	}
	uint32_t idx = (uint32_t)parser->value_count++;
	struct imap_value *v = node(parser, idx);
	memset(v, 0, sizeof(*v));
	v->type = type;
	v->child_ = NONE;
	v->next_ = NONE;
	struct imap_lexer_frame *frame = &parser->stack[parser->depth];
	if (frame->last != NONE)
		node(parser, frame->last)->next_ = idx;
	else
		frame->first = idx;
	frame->last = idx;
	frame->count++;
	if (parser->depth == 0 && !parser->in_code && parser->head == H_DATA &&
	    parser->data_first == NONE)
		parser->data_first = idx;
	*idx_r = idx;
	return 0;
}

/* A value other than a list is complete. */
static int value_done(struct imap_parser *parser, uint32_t idx, const char **error_r)
{
	if (parser->depth == 0 && !parser->in_code && parser->head != H_DATA)
		return head_token(parser, idx, error_r);
	return 0;
}

static int end_atom(struct imap_parser *parser, const char **error_r)
{
	size_t len = parser->storage.len - parser->tok_off;
	if (storage_put(parser, "", 1, error_r) < 0)
		return -1;
	const char *s = parser->storage.data + parser->tok_off;
	enum imap_type type = IMAP_ATOM;
	uint64_t num = 0;
	if (strspn(s, "0123456789") == len) {
		type = IMAP_NUMBER;
		for (size_t i = 0; i < len && type == IMAP_NUMBER; i++) {
			uint64_t d = (uint64_t)(s[i] - '0');
			if (num > (UINT64_MAX - d) / 10)
				type = IMAP_ATOM; /* too large: kept as text, typed helpers refuse
				                     it */
			else
				num = num * 10 + d;
		}
	} else if (len == 3 && strcasecmp(s, "NIL") == 0) {
		type = IMAP_NIL;
	}
	uint32_t idx;
	if (add_node(parser, type, &idx, error_r) < 0)
		return -1;
	struct imap_value *v = node(parser, idx);
	v->str_off_ = (uint32_t)parser->tok_off;
	v->len = len;
	v->num = type == IMAP_NUMBER ? num : 0;
	return value_done(parser, idx, error_r);
}

static int end_string(struct imap_parser *parser, enum imap_type type, const char **error_r)
{
	size_t len = parser->storage.len - parser->tok_off;
	if (storage_put(parser, "", 1, error_r) < 0)
		return -1;
	uint32_t idx;
	if (add_node(parser, type, &idx, error_r) < 0)
		return -1;
	struct imap_value *v = node(parser, idx);
	v->str_off_ = (uint32_t)parser->tok_off;
	v->len = len;
	return value_done(parser, idx, error_r);
}

static int open_list(struct imap_parser *parser, const char **error_r)
{
	if (parser->depth == 0 && !parser->in_code && parser->head != H_DATA) {
		*error_r = "IMAP list before the response keyword";
		return -1;
	}
	if (parser->depth >= MT_IMAP_DEPTH_MAX) {
		*error_r = "IMAP lists nested deeper than " MT_STRINGIFY(MT_IMAP_DEPTH_MAX);
		return -1;
	}
	uint32_t idx;
	if (add_node(parser, IMAP_LIST, &idx, error_r) < 0)
		return -1;
	parser->depth++;
	frame_reset(&parser->stack[parser->depth], idx);
	return 0;
}

static int close_list(struct imap_parser *parser, const char **error_r)
{
	if (parser->depth == 0) {
		*error_r = "IMAP unbalanced parentheses: \")\" without \"(\"";
		return -1;
	}
	struct imap_lexer_frame *frame = &parser->stack[parser->depth];
	struct imap_value *list = node(parser, frame->list);
	list->len = frame->count;
	list->child_ = frame->first;
	parser->depth--;
	return 0;
}

static int is_body_item(const char *item)
{
	static const char *const prefixes[] = {"BODY[", "BODY.PEEK[", "BINARY[", "BINARY.PEEK["};
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		if (strncasecmp(item, prefixes[i], strlen(prefixes[i])) == 0)
			return 1;
	}
	return strcasecmp(item, "RFC822") == 0 || strcasecmp(item, "RFC822.HEADER") == 0 ||
	       strcasecmp(item, "RFC822.TEXT") == 0;
}

/* "{N}" read: decides where the literal goes and checks its cap. */
static int literal_header(struct imap_parser *parser, const char **error_r)
{
	parser->lit_stream = 0;
	int body = 0;
	if (parser->resp.kind == IMAP_RESP_UNTAGGED && parser->resp.has_number &&
	    parser->name_idx != NONE &&
	    strcasecmp(node_text(parser, parser->name_idx), "FETCH") == 0 && parser->depth == 1 &&
	    parser->stack[1].count % 2 == 1) {
		uint32_t item = parser->stack[1].last;
		if (node(parser, item)->type == IMAP_ATOM &&
		    is_body_item(node_text(parser, item))) {
			body = 1;
			parser->lit_item = item;
		}
	}
	if (body && parser->on_literal != NULL) {
		parser->lit_stream = 1;
		if (parser->lit_size > MT_IMAP_STREAM_LITERAL_MAX) {
			*error_r = "IMAP FETCH body literal larger than " MT_STRINGIFY(
			    MT_IMAP_STREAM_LITERAL_MAX) " bytes";
			return -1;
		}
	} else if (body) {
		if (parser->lit_size > MT_IMAP_BODY_LITERAL_MAX) {
			*error_r = "IMAP FETCH body literal larger than " MT_STRINGIFY(
			    MT_IMAP_BODY_LITERAL_MAX) " bytes";
			return -1;
		}
	} else if (parser->lit_size > MT_IMAP_LITERAL_MAX) {
		*error_r = "IMAP literal larger than " MT_STRINGIFY(MT_IMAP_LITERAL_MAX) " bytes";
		return -1;
	}
	return 0;
}

static int literal_end(struct imap_parser *parser, const char **error_r)
{
	parser->state = L_BETWEEN;
	if (parser->lit_stream) {
		uint32_t idx;
		if (add_node(parser, IMAP_LITERAL, &idx, error_r) < 0)
			return -1;
		struct imap_value *v = node(parser, idx);
		v->streamed = 1;
		v->len = (size_t)parser->lit_size;
		return value_done(parser, idx, error_r);
	}
	return end_string(parser, IMAP_LITERAL, error_r);
}

static int literal_chunk(struct imap_parser *parser, const char *data, size_t len,
                         const char **error_r)
{
	if (parser->lit_stream) {
		struct imap_literal_chunk chunk = {
		    .seq = parser->resp.number,
		    .item = node_text(parser, parser->lit_item),
		    .size = parser->lit_size,
		    .offset = parser->lit_done,
		    .data = data,
		    .len = len,
		};
		if (parser->on_literal(parser->ctx, &chunk) < 0) {
			*error_r = "IMAP literal refused by its consumer";
			return -1;
		}
	} else {
		/* the NUL is looked for only where the cap allows, so that the error does not
		 * depend on how the bytes were split */
		size_t room = parser->storage.max - parser->storage.len;
		if (memchr(data, '\0', len < room ? len : room) != NULL) {
			*error_r = "NUL byte in an IMAP literal";
			return -1;
		}
		if (storage_put(parser, data, len, error_r) < 0)
			return -1;
	}
	parser->lit_done += len;
	return 0;
}

/* The literal's CRLF is read: its bytes follow, then the line goes on. */
static int literal_begin(struct imap_parser *parser, const char **error_r)
{
	parser->line_len = 0;
	parser->tok_off = parser->storage.len;
	parser->lit_done = 0;
	parser->state = L_LIT_DATA;
	if (parser->lit_size > 0)
		return 0;
	if (parser->lit_stream && literal_chunk(parser, "", 0, error_r) < 0)
		return -1;
	return literal_end(parser, error_r);
}

/* LF between values: the response is complete (1) or malformed (-1). */
static int line_end(struct imap_parser *parser, const char **error_r)
{
	if (parser->in_code) {
		*error_r = "line break in an IMAP response code";
		return -1;
	}
	if (parser->depth > 0) {
		*error_r = "IMAP unbalanced parentheses: line ended inside a list";
		return -1;
	}
	if (parser->head != H_DATA) {
		*error_r = parser->head == H_TAG ? "empty IMAP response line"
		                                 : "IMAP response line ends before its keyword";
		return -1;
	}
	return 1;
}

static int is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/* One byte outside literal data. Returns 1 when it completed the response, 0, or -1. */
static int lex_byte(struct imap_parser *parser, char ch, const char **error_r)
{
	unsigned char c = (unsigned char)ch;
again:
	switch (parser->state) {
	case L_BETWEEN:
		if (c == ' ')
			return 0;
		if (c == '\r') {
			parser->state = L_CR;
			return 0;
		}
		if (c == '\n')
			return line_end(parser, error_r);
		if (c == '(')
			return open_list(parser, error_r);
		if (c == ')')
			return close_list(parser, error_r);
		if (c == '"') {
			parser->tok_off = parser->storage.len;
			parser->state = L_QUOTED;
			return 0;
		}
		if (c == '{') {
			if (parser->in_code) {
				*error_r = "literal in an IMAP response code";
				return -1;
			}
			parser->lit_size = 0;
			parser->lit_digits = 0;
			parser->state = L_LIT_DIGITS;
			return 0;
		}
		if (c == '\0') {
			*error_r = "NUL byte in an IMAP response";
			return -1;
		}
		if (is_ctl(c)) {
			*error_r = "control character in an IMAP response";
			return -1;
		}
		parser->tok_off = parser->storage.len;
		parser->state = c == '[' ? L_ATOM_BRACKET : L_ATOM;
		return storage_put(parser, &ch, 1, error_r);
	case L_ATOM:
		if (c == ' ' || c == '(' || c == ')' || c == '"' || c == '\r' || c == '\n') {
			parser->state = L_BETWEEN;
			if (end_atom(parser, error_r) < 0)
				return -1;
			goto again;
		}
		if (c == '{' && parser->storage.len == parser->tok_off + 1 &&
		    parser->storage.data[parser->tok_off] == '~' && !parser->in_code) {
			/* literal8 (RFC 3516): "~{N}" */
			parser->storage.len = parser->tok_off;
			parser->storage.data[parser->storage.len] = '\0';
			parser->lit_size = 0;
			parser->lit_digits = 0;
			parser->state = L_LIT_DIGITS;
			return 0;
		}
		if (is_ctl(c)) {
			*error_r = c == 0 ? "NUL byte in an IMAP response"
			                  : "control character in an IMAP atom";
			return -1;
		}
		if (c == '[')
			parser->state = L_ATOM_BRACKET;
		return storage_put(parser, &ch, 1, error_r);
	case L_ATOM_BRACKET:
		if (c == '\r' || c == '\n') {
			*error_r = "IMAP atom with \"[\" but no \"]\"";
			return -1;
		}
		if (is_ctl(c)) {
			*error_r = c == 0 ? "NUL byte in an IMAP response"
			                  : "control character in an IMAP atom";
			return -1;
		}
		if (c == ']')
			parser->state = L_ATOM;
		return storage_put(parser, &ch, 1, error_r);
	case L_QUOTED:
		if (c == '"') {
			parser->state = L_BETWEEN;
			return end_string(parser, IMAP_STRING, error_r);
		}
		if (c == '\\') {
			parser->state = L_QUOTED_ESC;
			return 0;
		}
		/* fall through */
	case L_QUOTED_ESC:
		if (c == '\r' || c == '\n') {
			*error_r = "line break inside an IMAP quoted string";
			return -1;
		}
		if (c == '\0') {
			*error_r = "NUL byte in an IMAP response";
			return -1;
		}
		parser->state = L_QUOTED;
		return storage_put(parser, &ch, 1, error_r);
	case L_LIT_DIGITS:
		if (c >= '0' && c <= '9') {
			/* ten digits hold any 32-bit size; no cap comes near the rest */
			if (parser->lit_digits >= 10) {
				*error_r = "IMAP literal size too large";
				return -1;
			}
			parser->lit_size = parser->lit_size * 10 + (c - '0');
			parser->lit_digits++;
			return 0;
		}
		if (parser->lit_digits > 0 && c == '+') {
			parser->state = L_LIT_PLUS;
			return 0;
		}
		if (parser->lit_digits > 0 && c == '}') {
			parser->state = L_LIT_CR;
			return literal_header(parser, error_r);
		}
		*error_r = "malformed IMAP literal size";
		return -1;
	case L_LIT_PLUS:
		if (c == '}') {
			parser->state = L_LIT_CR;
			return literal_header(parser, error_r);
		}
		*error_r = "malformed IMAP literal size";
		return -1;
	case L_LIT_CR:
		if (c == '\r') {
			parser->state = L_LIT_LF;
			return 0;
		}
		/* fall through */
	case L_LIT_LF:
		if (c == '\n')
			return literal_begin(parser, error_r);
		*error_r = "IMAP literal size not followed by CRLF";
		return -1;
	case L_CR:
		if (c == '\n') {
			parser->state = L_BETWEEN;
			return line_end(parser, error_r);
		}
		*error_r = "CR without LF in an IMAP response";
		return -1;
	case L_TEXT_START:
		parser->state = L_TEXT;
		if (c == ' ')
			return 0;
		/* fall through */
	case L_TEXT:
		/* only the byte that ended a head token comes here; the rest goes in bulk */
		if (c == '\n') {
			size_t end = parser->storage.len;
			if (end > parser->text_off && parser->storage.data[end - 1] == '\r') {
				parser->storage.len--;
				parser->storage.data[parser->storage.len] = '\0';
			}
			return 1;
		}
		if (c == '\0') {
			*error_r = "NUL byte in an IMAP response";
			return -1;
		}
		return storage_put(parser, &ch, 1, error_r);
	default:
		*error_r = "IMAP parser in a bad state";
		return -1;
	}
}

/* Lexes the arguments of a resp-text code, already in storage at `off`, into values. Failing
 * leaves no trace: they stay raw text only (a URL with a quote is a valid argument). */
static void lex_code_args(struct imap_parser *parser, size_t off, size_t len)
{
	size_t saved_count = parser->value_count, saved_len = parser->storage.len;
	const char *error = NULL;
	parser->in_code = 1;
	parser->state = L_BETWEEN;
	parser->depth = 0;
	frame_reset(&parser->stack[0], NONE);
	int ok = 1;
	for (size_t i = 0; i < len && ok; i++) /* by index: storage may move as it grows */
		ok = lex_byte(parser, parser->storage.data[off + i], &error) == 0;
	if (ok && parser->state == L_ATOM) {
		parser->state = L_BETWEEN;
		ok = end_atom(parser, &error) == 0;
	}
	if (ok && (parser->state != L_BETWEEN || parser->depth != 0))
		ok = 0;
	if (ok) {
		parser->code_first = parser->stack[0].first;
	} else {
		parser->value_count = saved_count;
		parser->storage.len = saved_len;
		parser->storage.data[saved_len] = '\0';
	}
	parser->in_code = 0;
}

static const char *text_at(const struct imap_parser *parser, size_t off)
{
	return parser->storage.data + off;
}

/* The response is read: resp-text is split, then indices become pointers. */
static int response_complete(struct imap_parser *parser, const char **error_r)
{
	struct imap_response *resp = &parser->resp;
	size_t code_off = NONE, args_off = NONE, text_off = NONE;
	if (parser->head == H_TEXT) {
		/* the text's own NUL: lexing the code's arguments appends after it */
		size_t len = parser->storage.len - parser->text_off;
		if (storage_put(parser, "", 1, error_r) < 0)
			return -1;
		char *text = parser->storage.data + parser->text_off;
		if (memchr(text, '\r', len) != NULL) {
			*error_r = "CR without LF in an IMAP response";
			return -1;
		}
		text_off = parser->text_off;
		char *close = text[0] == '[' ? memchr(text, ']', len) : NULL;
		if (close != NULL) {
			*close = '\0';
			code_off = parser->text_off + 1;
			char *sp = strchr(text + 1, ' ');
			if (sp != NULL) {
				*sp = '\0';
				args_off = code_off + (size_t)(sp - (text + 1)) + 1;
			} else {
				args_off = (size_t)(close - parser->storage.data);
			}
			upper_ascii(text + 1);
			text_off = (size_t)(close - parser->storage.data) + 1;
			if (close[1] == ' ')
				text_off++;
			size_t args_len = strlen(text_at(parser, args_off));
			if (args_len > 0)
				lex_code_args(parser, args_off, args_len);
		}
	}
	char *base = parser->storage.data;
	for (size_t i = 0; i < parser->value_count; i++) {
		struct imap_value *v = &parser->values[i];
		int has_str = v->type != IMAP_NIL && v->type != IMAP_LIST && !v->streamed;
		v->str = has_str ? base + v->str_off_ : NULL;
		v->child = v->child_ == NONE ? NULL : &parser->values[v->child_];
		v->next = v->next_ == NONE ? NULL : &parser->values[v->next_];
	}
	resp->tag = parser->tag_idx != NONE ? base + parser->values[parser->tag_idx].str_off_ : "";
	if (parser->name_idx != NONE) {
		char *name = base + parser->values[parser->name_idx].str_off_;
		upper_ascii(name);
		resp->name = name;
	} else {
		resp->name = "";
	}
	if (parser->data_first != NONE) {
		resp->data = &parser->values[parser->data_first];
		for (const struct imap_value *v = resp->data; v != NULL; v = v->next)
			resp->data_count++;
	}
	resp->code = code_off != NONE ? base + code_off : "";
	resp->code_args = args_off != NONE ? base + args_off : "";
	resp->code_values = parser->code_first != NONE ? &parser->values[parser->code_first] : NULL;
	resp->text = text_off != NONE ? base + text_off : "";
	parser->done = 1;
	return 1;
}

/* resp-text up to LF, in bulk. Returns the bytes used, or -1; *complete_r when LF was seen. */
static int text_bytes(struct imap_parser *parser, const char *data, size_t len, size_t *used_r,
                      int *complete_r, const char **error_r)
{
	const char *lf = memchr(data, '\n', len);
	size_t chunk = lf != NULL ? (size_t)(lf - data) + 1 : len;
	size_t room = MT_IMAP_LINE_MAX - parser->line_len;
	size_t stored = parser->storage.max - parser->storage.len;
	size_t scan = chunk < room ? chunk : room;
	/* the same error whatever the split: a NUL within the caps, else the cap */
	if (memchr(data, '\0', scan < stored ? scan : stored) != NULL) {
		*error_r = "NUL byte in an IMAP response";
		return -1;
	}
	if (chunk > room) {
		*error_r =
		    "IMAP response line longer than " MT_STRINGIFY(MT_IMAP_LINE_MAX) " bytes";
		return -1;
	}
	parser->line_len += chunk;
	size_t keep = lf != NULL ? chunk - 1 : chunk;
	if (lf != NULL && keep == 0 && parser->storage.len > parser->text_off &&
	    parser->storage.data[parser->storage.len - 1] == '\r') {
		/* CR arrived in the previous piece */
		parser->storage.len--;
		parser->storage.data[parser->storage.len] = '\0';
	} else if (lf != NULL && keep > 0 && data[keep - 1] == '\r') {
		keep--;
	}
	if (storage_put(parser, data, keep, error_r) < 0)
		return -1;
	*used_r = chunk;
	*complete_r = lf != NULL;
	return 0;
}

/* How many bytes from `p` the lexer, in its current state, would only append to the token
 * being read (staying in that state, with no error possible but the caps): those go in bulk.
 * Conservative: any byte with a meaning (and "{", "[" in atoms) ends the run and takes the
 * byte-by-byte path, so the result and every error are the same whatever the split. */
static size_t plain_run(const struct imap_parser *parser, const char *data, size_t len)
{
	const unsigned char *p = (const unsigned char *)data;
	size_t i = 0;
	switch (parser->state) {
	case L_ATOM: /* not SP, CTL, "(", ")", DQUOTE, "{" (literal8), "[" */
		while (i < len && p[i] > ' ' && p[i] != 0x7f && p[i] != '(' && p[i] != ')' &&
		       p[i] != '"' && p[i] != '{' && p[i] != '[')
			i++;
		break;
	case L_ATOM_BRACKET: /* not CTL (CR, LF), "]" */
		while (i < len && p[i] >= ' ' && p[i] != 0x7f && p[i] != ']')
			i++;
		break;
	case L_QUOTED: /* not DQUOTE, "\\", CR, LF, NUL */
		while (i < len && p[i] != '"' && p[i] != '\\' && p[i] != '\r' && p[i] != '\n' &&
		       p[i] != '\0')
			i++;
		break;
	default:
		break;
	}
	return i;
}

int imap_parser_feed(struct imap_parser *parser, const char *data, size_t len, size_t *consumed_r,
                     const struct imap_response **resp_r, const char **error_r)
{
	if (parser->done)
		response_reset(parser);
	size_t pos = 0;
	while (pos < len) {
		int ret;
		if (parser->state == L_LIT_DATA) {
			uint64_t left = parser->lit_size - parser->lit_done;
			size_t n = len - pos < left ? len - pos : (size_t)left;
			if (literal_chunk(parser, data + pos, n, error_r) < 0)
				return -1;
			pos += n;
			if (parser->lit_done < parser->lit_size)
				continue;
			ret = literal_end(parser, error_r);
		} else if (parser->state == L_TEXT) {
			size_t used = 0;
			int complete = 0;
			if (text_bytes(parser, data + pos, len - pos, &used, &complete, error_r) <
			    0)
				return -1;
			pos += used;
			ret = complete ? response_complete(parser, error_r) : 0;
		} else {
			/* the inside of atoms and quoted strings in bulk, up to the line's cap (the
			 * byte over it goes the slow way and fails there, as it would alone) */
			size_t run = plain_run(parser, data + pos, len - pos);
			size_t room = MT_IMAP_LINE_MAX - parser->line_len;
			if (run > room)
				run = room;
			if (run > 0) {
				if (storage_put(parser, data + pos, run, error_r) < 0)
					return -1;
				parser->line_len += run;
				pos += run;
				continue;
			}
			if (++parser->line_len > MT_IMAP_LINE_MAX) {
				*error_r = "IMAP response line longer than " MT_STRINGIFY(
				    MT_IMAP_LINE_MAX) " bytes";
				return -1;
			}
			ret = lex_byte(parser, data[pos++], error_r);
			if (ret > 0)
				ret = response_complete(parser, error_r);
		}
		if (ret < 0)
			return -1;
		if (ret > 0) {
			*consumed_r = pos;
			*resp_r = &parser->resp;
			return 1;
		}
	}
	*consumed_r = len;
	return 0;
}

const char *imap_value_str(const struct imap_value *value)
{
	if (value == NULL || value->type == IMAP_NIL || value->type == IMAP_LIST)
		return NULL;
	return value->str;
}

int imap_value_is(const struct imap_value *value, const char *word)
{
	const char *s = imap_value_str(value);
	return s != NULL && strcasecmp(s, word) == 0;
}

int imap_value_number(const struct imap_value *value, uint64_t min, uint64_t max, uint64_t *num_r)
{
	if (value == NULL || value->type != IMAP_NUMBER || value->num < min || value->num > max)
		return -1;
	*num_r = value->num;
	return 0;
}

const struct imap_value *imap_list_item(const struct imap_value *list, size_t index)
{
	if (list == NULL || list->type != IMAP_LIST)
		return NULL;
	const struct imap_value *v = list->child;
	for (size_t i = 0; v != NULL && i < index; i++)
		v = v->next;
	return v;
}
