/* The cursor's reading of a server's INTERNALDATE (imap_cursor_since_covers): the first 8 bytes
 * are `since` (unix seconds, any value), the rest the date text as a server could send it: no
 * read past the text, and without a `since` every message is covered. */
#include "engine/imap_cursor.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int64_t since = 0;
	if (size >= sizeof(since)) {
		memcpy(&since, data, sizeof(since));
		data += sizeof(since);
		size -= sizeof(since);
	}
	/* an INTERNALDATE is a quoted string the IMAP parser caps; this reader sees NUL-ended text
	 */
	char text[128];
	size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
	memcpy(text, data, n);
	text[n] = '\0';
	bool covers = imap_cursor_since_covers(since, text);
	if (since <= 0 && !covers)
		abort();
	return 0;
}
