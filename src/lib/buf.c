#include "lib/buf.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mt_buf_init(struct mt_buf *buf, size_t max)
{
	buf->data = NULL;
	buf->len = 0;
	buf->cap = 0;
	buf->max = max;
}

void mt_buf_free(struct mt_buf *buf)
{
	free(buf->data);
	buf->data = NULL;
	buf->len = buf->cap = 0;
}

void mt_buf_free_wipe(struct mt_buf *buf)
{
	if (buf->data != NULL)
		sodium_memzero(buf->data, buf->cap);
	mt_buf_free(buf);
}

char *mt_buf_reserve(struct mt_buf *buf, size_t len)
{
	if (len > buf->max || buf->len > buf->max - len)
		return NULL;
	size_t need = buf->len + len + 1;
	if (need > buf->cap) {
		size_t cap = buf->cap ? buf->cap : 256;
		while (cap < need)
			cap *= 2;
		if (cap > buf->max + 1)
			cap = buf->max + 1;
		char *data = realloc(buf->data, cap);
		if (data == NULL)
			return NULL;
		buf->data = data;
		buf->cap = cap;
	}
	return buf->data + buf->len;
}

int mt_buf_presize(struct mt_buf *buf, size_t total)
{
	if (total > buf->max || total < buf->len)
		return -1;
	if (total + 1 <= buf->cap)
		return 0;
	char *data = realloc(buf->data, total + 1);
	if (data == NULL)
		return -1;
	buf->data = data;
	buf->cap = total + 1;
	return 0;
}

void mt_buf_commit(struct mt_buf *buf, size_t len)
{
	buf->len += len;
	buf->data[buf->len] = '\0';
}

int mt_buf_append(struct mt_buf *buf, const void *bytes, size_t len)
{
	char *dst = mt_buf_reserve(buf, len);
	if (dst == NULL)
		return -1;
	if (len > 0)
		memcpy(dst, bytes, len);
	mt_buf_commit(buf, len);
	return 0;
}

int mt_buf_append_str(struct mt_buf *buf, const char *str)
{
	return mt_buf_append(buf, str, strlen(str));
}

int mt_buf_printf(struct mt_buf *buf, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	char *dst = mt_buf_reserve(buf, (size_t)n);
	if (dst == NULL)
		return -1;
	va_start(ap, fmt);
	vsnprintf(dst, (size_t)n + 1, fmt, ap);
	va_end(ap);
	mt_buf_commit(buf, (size_t)n);
	return 0;
}

void mt_buf_consume(struct mt_buf *buf, size_t len)
{
	if (len >= buf->len) {
		buf->len = 0;
		if (buf->data != NULL)
			buf->data[0] = '\0';
		return;
	}
	memmove(buf->data, buf->data + len, buf->len - len);
	buf->len -= len;
	buf->data[buf->len] = '\0';
}

void mt_buf_reset(struct mt_buf *buf)
{
	mt_buf_consume(buf, buf->len);
}
