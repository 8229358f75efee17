/* Checks shared by the fuzz targets: their own oracles, independent of the code under test. */
#ifndef MT_FUZZ_CHECKS_H
#define MT_FUZZ_CHECKS_H

#include <stdlib.h>
#include <string.h>

/* Aborts unless `s` is at most `cap` bytes of valid UTF-8. */
static inline void fuzz_check_utf8(const char *s, size_t cap)
{
	size_t len = strnlen(s, cap + 1);
	if (len > cap)
		abort();
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < len;) {
		unsigned char c = p[i];
		size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
		if (c >= 0x80 && ((c & 0xc0) == 0x80 || c >= 0xf8 || i + n > len))
			abort();
		for (size_t k = 1; k < n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				abort();
		}
		i += n;
	}
}

#endif
