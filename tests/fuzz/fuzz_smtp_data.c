/* The DATA dot-stuffer, fed in chunks whose sizes come from the first byte. The output must be
 * CRLF-only and hold the end-of-data sequence exactly once, at its end. */
#include "lib/limits.h"
#include "proto/smtp_data.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *find(const char *hay, size_t len, const char *needle, size_t nlen)
{
	return memmem(hay, len, needle, nlen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t step = (size_t)(data[0] % 32) + 1;
	const char *input = (const char *)data + 1;
	size_t len = size - 1;

	struct smtp_dot_writer writer;
	smtp_dot_writer_init(&writer);
	struct mt_buf out;
	mt_buf_init(&out, MT_SMTP_MESSAGE_MAX);
	for (size_t pos = 0; pos < len; pos += step) {
		size_t chunk = len - pos < step ? len - pos : step;
		if (smtp_dot_writer_write(&writer, &out, input + pos, chunk) < 0)
			abort();
	}
	if (smtp_dot_writer_finish(&writer, &out) < 0)
		abort();

	const char *o = out.data;
	size_t n = out.len;
	/* the terminator: ".\r\n" alone for an empty body, else "\r\n.\r\n" */
	if (n == 3) {
		if (memcmp(o, ".\r\n", 3) != 0 || len != 0)
			abort();
	} else {
		if (n < 5 || memcmp(o + n - 5, "\r\n.\r\n", 5) != 0)
			abort();
		if (find(o, n, "\r\n.\r\n", 5) != o + n - 5)
			abort();
		/* a body may not look like the terminator from its first byte either */
		if (memcmp(o, ".\r\n", 3) == 0)
			abort();
	}
	for (size_t i = 0; i < n; i++) {
		if (o[i] == '\n' && (i == 0 || o[i - 1] != '\r'))
			abort(); /* bare LF */
		if (o[i] == '\r' && (i + 1 >= n || o[i + 1] != '\n'))
			abort(); /* bare CR */
		if (o[i] == '.' && (i == 0 || o[i - 1] == '\n') && i != n - 3 &&
		    (i + 1 >= n || o[i + 1] != '.'))
			abort(); /* an unstuffed dot at a line start */
	}
	mt_buf_free(&out);
	return 0;
}
