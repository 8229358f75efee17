/* The DATA writer (RFC 5321 §4.5.2 transparency): a line starting with "." gets another ".",
 * bare LF and bare CR become CRLF, and the end adds CRLF (when the body does not end with one)
 * and ".\r\n". Pure and resumable across chunks: the state remembers the line start and a CR
 * at the end of the previous chunk. */
#ifndef MT_PROTO_SMTP_DATA_H
#define MT_PROTO_SMTP_DATA_H

#include "lib/buf.h"

#include <stdbool.h>
#include <stddef.h>

struct smtp_dot_writer {
	int at_line_start;
	int pending_cr;
};

void smtp_dot_writer_init(struct smtp_dot_writer *writer);
/* Appends the stuffed form of `data`; -1 when the buffer cap is hit. */
int smtp_dot_writer_write(struct smtp_dot_writer *writer, struct mt_buf *out, const char *data,
                          size_t len);
/* Appends the terminator; -1 on the cap. */
int smtp_dot_writer_finish(struct smtp_dot_writer *writer, struct mt_buf *out);

/* True if the bytes contain an octet above 0x7f (needs BODY=8BITMIME). */
bool smtp_data_has_8bit(const char *data, size_t len);

#endif
