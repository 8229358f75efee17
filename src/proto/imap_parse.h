/* IMAP response parser (RFC 3501 §7 and §9, RFC 9051 §9), pure and resumable at any byte.
 *
 *   response        = continue-req / response-tagged / response-data
 *   continue-req    = "+" SP (resp-text / base64) CRLF
 *   response-tagged = tag SP resp-cond-state CRLF
 *   response-data   = "*" SP (resp-cond-state / resp-cond-bye / resp-cond-auth /
 *                     mailbox-data / message-data / capability-data / enable-data /
 *                     esearch-response / expunged-resp) CRLF
 *   resp-cond-state = ("OK" / "NO" / "BAD") SP resp-text
 *   resp-cond-auth  = ("OK" / "PREAUTH") SP resp-text
 *   resp-cond-bye   = "BYE" SP resp-text
 *   resp-text       = ["[" resp-text-code "]" SP] [text]       ; RFC 9051: text may be empty
 *   resp-text-code  = ... / atom [SP 1*<any TEXT-CHAR except "]">]
 *   message-data    = nz-number SP ("EXPUNGE" / ("FETCH" SP msg-att))
 *   mailbox-data    = "FLAGS" SP flag-list / "LIST" SP mailbox-list / "LSUB" SP mailbox-list /
 *                     "SEARCH" *(SP nz-number) [SP "(" "MODSEQ" SP mod-sequence-value ")"] /
 *                     "STATUS" SP mailbox SP "(" [status-att-list] ")" /
 *                     number SP "EXISTS" / number SP "RECENT"
 *   esearch-response = "ESEARCH" [search-correlator] [SP "UID"] *(SP search-return-data)
 *                                                              ; RFC 4731
 *   expunged-resp   = "VANISHED" [SP "(EARLIER)"] SP known-uids      ; RFC 7162
 *   enable-data     = "ENABLED" *(SP capability)                    ; RFC 5161
 *
 * Everything after the keyword of a data response is read generically as a tree of values:
 *
 *   value    = atom / number / quoted / literal / "NIL" / "(" [value *(SP value)] ")"
 *   quoted   = DQUOTE *QUOTED-CHAR DQUOTE        ; 8-bit accepted (UTF8=ACCEPT, RFC 6855)
 *   literal  = "{" number ["+"] "}" CRLF *CHAR8  ; "+": RFC 7888; "~{": literal8, RFC 3516
 *   atom     = 1*ATOM-CHAR, widened to what servers send: "]" (ASTRING-CHAR), "\*", "%",
 *              8-bit, and one "[...]" that may hold SP and parentheses, so that
 *              BODY[HEADER.FIELDS (FROM TO)]<0> is one atom
 *
 * Leniency: bare LF ends a line (as smtp_reply does), several SP between values are one, no SP
 * is needed next to a parenthesis ("((...)(...) "MIXED")"), "* OK" may lack its text and a
 * resp-text code its trailing SP. Refused: NUL anywhere in the tree, a CR not before LF outside
 * a literal, control characters in atoms, unbalanced parentheses, a literal size with too many
 * digits or over its cap, and every cap of lib/limits.h (MT_IMAP_*).
 *
 * Large literals: a FETCH body literal (the value of a BODY[...]<origin>, BINARY[...] or
 * RFC822 / RFC822.HEADER / RFC822.TEXT item, at the top of a "* n FETCH" list) is handed to the
 * chunk callback when one is set, piece by piece as its bytes arrive: it is never held, and may
 * be as large as MT_IMAP_STREAM_LITERAL_MAX. Its node in the tree is an IMAP_LITERAL with
 * `streamed` set and `str` NULL. Without a callback it is kept in the tree under
 * MT_IMAP_BODY_LITERAL_MAX (enough for headers and snippets). Every other literal is kept under
 * MT_IMAP_LITERAL_MAX. The sync client fetches headers and a snippet prefix only, so it sets no
 * callback; a consumer of whole messages sets one.
 *
 * Ownership: the parser owns every response it hands out, with all its strings and values; a
 * response stays valid until the next imap_parser_feed() or imap_parser_deinit(). Chunk data
 * passed to the callback is the caller's input and valid only during the call. */
#ifndef MT_PROTO_IMAP_PARSE_H
#define MT_PROTO_IMAP_PARSE_H

#include "lib/buf.h"
#include "lib/limits.h"

#include <stddef.h>
#include <stdint.h>

enum imap_type {
	IMAP_ATOM,    /* str: the atom as sent */
	IMAP_NUMBER,  /* num; str: its digits */
	IMAP_STRING,  /* quoted string, unescaped */
	IMAP_LITERAL, /* str: the literal's bytes (NUL-free), or NULL when streamed */
	IMAP_NIL,
	IMAP_LIST, /* child: first item; len: number of items */
};

struct imap_value {
	enum imap_type type;
	int streamed;    /* IMAP_LITERAL handed to the chunk callback: len = its size, str NULL */
	size_t len;      /* bytes of str, or items of a list */
	uint64_t num;    /* IMAP_NUMBER: 0 .. 2^64-1 (number64 of RFC 9051 for MODSEQ) */
	const char *str; /* NUL-terminated; NULL for NIL, lists, streamed */
	const struct imap_value *child; /* IMAP_LIST: first item, NULL when empty */
	const struct imap_value *next;  /* next sibling, NULL after the last */
	/* the parser's bookkeeping while the response is built (indices, not pointers, because
	 * its arrays grow) */
	uint32_t str_off_, child_, next_;
};

enum imap_kind {
	IMAP_RESP_TAGGED,
	IMAP_RESP_UNTAGGED,
	IMAP_RESP_CONTINUE,
};

enum imap_status {
	IMAP_STATUS_NONE, /* a data response ("* FETCH", "* LIST"...) or a continuation */
	IMAP_STATUS_OK,
	IMAP_STATUS_NO,
	IMAP_STATUS_BAD,
	IMAP_STATUS_PREAUTH,
	IMAP_STATUS_BYE,
};

struct imap_response {
	enum imap_kind kind;
	enum imap_status status;
	const char *tag;  /* tagged: the tag; otherwise "" */
	const char *name; /* upper case: "OK", "BYE", "CAPABILITY", "FETCH", "EXISTS"...; "" for
	                     a continuation */
	int has_number;   /* "* 12 FETCH", "* 3 EXISTS": number holds 12, 3 */
	uint32_t number;
	/* Data responses: the values after the keyword, linked by ->next (NULL when none). */
	const struct imap_value *data;
	size_t data_count;
	/* Status responses and continuations (resp-text): the code's atom in upper case ("" when
	 * there is no code), the raw text after it inside the brackets (""), the same read as
	 * values (NULL when empty or not readable, e.g. a URL with a quote), and the human text. */
	const char *code;
	const char *code_args;
	const struct imap_value *code_values;
	const char *text;
};

struct imap_literal_chunk {
	uint32_t seq;     /* the FETCH's message sequence number */
	const char *item; /* the item name as sent: "BODY[TEXT]<0>", "RFC822" */
	uint64_t size;    /* the whole literal */
	uint64_t offset;  /* of `data` within the literal; the last chunk ends at `size` */
	const char *data; /* an empty literal gets one call with len 0 */
	size_t len;
};

/* Returns 0, or -1 to stop the parser (it then fails with "literal refused by its consumer"). */
typedef int imap_literal_cb(void *ctx, const struct imap_literal_chunk *chunk);

struct imap_lexer_frame {
	uint32_t list;  /* node index of the open list, UINT32_MAX for the top level */
	uint32_t first; /* its first item, UINT32_MAX when none */
	uint32_t last;  /* its last item so far, UINT32_MAX when none */
	uint32_t count; /* its items so far */
};

struct imap_parser {
	imap_literal_cb *on_literal;
	void *ctx;
	struct mt_buf storage;     /* NUL-terminated texts of the response being built */
	struct imap_value *values; /* its nodes, MT_IMAP_TOKENS_MAX at most */
	size_t value_count, value_cap;
	struct imap_lexer_frame stack[MT_IMAP_DEPTH_MAX + 1];
	unsigned depth;
	int state;         /* lexer state (imap_parse.c) */
	int head;          /* which head token comes next (tag, number, keyword) */
	int in_code;       /* lexing resp-text code arguments */
	size_t line_len;   /* bytes of the current line outside literals */
	size_t tok_off;    /* storage offset where the token being read began */
	uint64_t lit_size; /* literal being read: its size, bytes read, and handling */
	uint64_t lit_done;
	int lit_stream, lit_binary, lit_digits;
	uint32_t lit_item; /* node index of the item name a streamed literal belongs to */
	size_t text_off;   /* storage offset of the raw resp-text */
	uint32_t tag_idx, name_idx, data_first, code_first; /* node indices, UINT32_MAX: none */
	struct imap_response resp;
	int done; /* the last response handed out is complete; reset on the next feed */
};

void imap_parser_init(struct imap_parser *parser);
void imap_parser_deinit(struct imap_parser *parser);
/* Frees the buffers between responses (nothing when a response is in progress): the last
 * response handed out is gone. An idle session holds none; the next feed allocates again. */
void imap_parser_release(struct imap_parser *parser);
/* Registers the chunk callback for FETCH body literals (NULL: keep them in the tree). */
void imap_parser_set_literal_cb(struct imap_parser *parser, imap_literal_cb *cb, void *ctx);

/* Consumes bytes from `data`. Returns 1 when a complete response is in *resp_r (*consumed_r
 * bytes were used, the rest belongs to the next response); 0 when all `len` bytes were consumed
 * and more are needed; -1 on a protocol error or an exceeded cap, with *error_r set (static
 * text; the parser must then be reset with deinit + init). */
int imap_parser_feed(struct imap_parser *parser, const char *data, size_t len, size_t *consumed_r,
                     const struct imap_response **resp_r, const char **error_r);

/* True when a response is in progress (some of it read) — e.g. data after STARTTLS's OK. */
int imap_parser_busy(const struct imap_parser *parser);

/* Value helpers. Each tolerates NULL. */
/* The string of an atom, number, quoted string or kept literal; NULL for NIL or another type
 * (RFC 3501 nstring / astring). */
const char *imap_value_str(const struct imap_value *value);
/* ASCII case-insensitive comparison of an atom or string with `word`: 1 when equal. */
int imap_value_is(const struct imap_value *value, const char *word);
/* The number of an IMAP_NUMBER within [min, max]: 0, or -1 for another type or out of range. */
int imap_value_number(const struct imap_value *value, uint64_t min, uint64_t max, uint64_t *num_r);
/* The `index`th item of a list (0-based), NULL when absent or not a list. */
const struct imap_value *imap_list_item(const struct imap_value *list, size_t index);

#endif
