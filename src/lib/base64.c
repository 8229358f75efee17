#include "lib/base64.h"

#include <sodium.h>

int mt_base64_encode(struct mt_buf *out, const void *bytes, size_t len)
{
	size_t enc_len = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
	char *dst = mt_buf_reserve(out, enc_len);
	if (dst == NULL)
		return -1;
	sodium_bin2base64(dst, enc_len, bytes, len, sodium_base64_VARIANT_ORIGINAL);
	mt_buf_commit(out, enc_len - 1); /* enc_len counts the NUL */
	return 0;
}

int mt_base64_decode(struct mt_buf *out, const char *text, size_t len)
{
	size_t max = len / 4 * 3 + 3;
	unsigned char *dst = (unsigned char *)mt_buf_reserve(out, max);
	if (dst == NULL)
		return -1;
	size_t bin_len = 0;
	const char *end = NULL;
	if (sodium_base642bin(dst, max, text, len, NULL, &bin_len, &end,
	                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    end != text + len)
		return -1;
	mt_buf_commit(out, bin_len);
	return 0;
}
