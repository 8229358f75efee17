/* SMTP reply parser (RFC 5321 §4.2, enhanced status codes RFC 2034 / RFC 3463).
 *
 *   Reply-line     = *( Reply-code "-" [ textstring ] CRLF )
 *                    Reply-code [ SP textstring ] CRLF
 *   Reply-code     = %x32-35 %x30-35 %x30-39
 *   status-code    = class "." subject "." detail   ; RFC 3463, class 2/4/5
 *
 * Pure and resumable: bytes may arrive split anywhere; the parser keeps the partial line. Bare LF
 * line ends are accepted (robustness), a line longer than MT_SMTP_REPLY_LINE_MAX or a reply with
 * more than MT_SMTP_REPLY_LINES_MAX lines is an error, as is a continuation line whose code
 * differs from the first. Ownership: the parser owns the reply it hands out; it stays valid until
 * the next feed or deinit. */
#ifndef MT_PROTO_SMTP_REPLY_H
#define MT_PROTO_SMTP_REPLY_H

#include "lib/buf.h"
#include "lib/limits.h"

#include <stddef.h>

struct smtp_reply {
	int code;          /* 200..599 */
	char enhanced[16]; /* "5.4.5", or "" when the first line has none */
	unsigned line_count;
	/* Text of each line after "NNN-" / "NNN " (CR LF stripped), NUL-terminated, pointing into
	 * the parser's storage. */
	const char *lines[MT_SMTP_REPLY_LINES_MAX];
};

struct smtp_reply_parser {
	struct mt_buf line;    /* the current, incomplete line */
	struct mt_buf storage; /* the lines of the reply being assembled, NUL-separated */
	size_t line_offsets[MT_SMTP_REPLY_LINES_MAX];
	struct smtp_reply reply;
	int pending_code; /* code of the reply in progress, 0 when none */
	int done;         /* the last returned reply is complete; reset on the next feed */
};

void smtp_reply_parser_init(struct smtp_reply_parser *parser);
void smtp_reply_parser_deinit(struct smtp_reply_parser *parser);

/* Consumes bytes from `data`. Returns 1 when a complete reply is in *reply_r (*consumed_r bytes
 * were used, the rest belongs to the next reply); 0 when all `len` bytes were consumed and more
 * are needed; -1 on a protocol error with *error_r set (the parser must then be reset with
 * deinit + init). */
int smtp_reply_parser_feed(struct smtp_reply_parser *parser, const char *data, size_t len,
                           size_t *consumed_r, const struct smtp_reply **reply_r,
                           const char **error_r);

/* True when a reply is in progress (some of it parsed) — e.g. to detect trailing data. */
int smtp_reply_parser_busy(const struct smtp_reply_parser *parser);

/* Writes the reply on one line, "550 5.4.5 Daily user sending limit exceeded. ...", lines
 * joined with a space, capped at MT_SMTP_REPLY_TEXT_MAX. */
void smtp_reply_format(const struct smtp_reply *reply, char *out, size_t out_size);

#endif
