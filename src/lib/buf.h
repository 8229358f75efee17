/* A capped byte buffer. Ownership: the struct owns `data`; mt_buf_free() releases it. Every
 * append fails (returns -1) instead of growing past `max`, so no peer can make it unbounded. */
#ifndef MT_LIB_BUF_H
#define MT_LIB_BUF_H

#include <stddef.h>

struct mt_buf {
	char *data;
	size_t len; /* bytes held, data[len] is always '\0' when data != NULL */
	size_t cap;
	size_t max; /* hard cap on len */
};

void mt_buf_init(struct mt_buf *buf, size_t max);
void mt_buf_free(struct mt_buf *buf);
/* Frees and zeroes the memory first: for buffers that held a secret. */
void mt_buf_free_wipe(struct mt_buf *buf);
int mt_buf_append(struct mt_buf *buf, const void *bytes, size_t len);
int mt_buf_append_str(struct mt_buf *buf, const char *str);
int mt_buf_printf(struct mt_buf *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first `len` bytes. */
void mt_buf_consume(struct mt_buf *buf, size_t len);
void mt_buf_reset(struct mt_buf *buf);
/* Reserves room for `len` more bytes and returns where to write them; commit with
 * mt_buf_commit(). NULL when the cap would be exceeded. */
char *mt_buf_reserve(struct mt_buf *buf, size_t len);
void mt_buf_commit(struct mt_buf *buf, size_t len);
/* Room for `total` bytes in all, allocated once and exactly: for a length known in advance, so
 * that filling the buffer never reallocates (and copies) what it already holds. -1 past `max`. */
int mt_buf_presize(struct mt_buf *buf, size_t total);

#endif
