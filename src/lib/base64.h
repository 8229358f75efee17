/* Base64 (RFC 4648, standard alphabet, padded) over libsodium's codec. */
#ifndef MT_LIB_BASE64_H
#define MT_LIB_BASE64_H

#include "lib/buf.h"

#include <stddef.h>

/* Appends the encoding of `len` bytes; -1 if the buffer's cap is hit. */
int mt_base64_encode(struct mt_buf *out, const void *bytes, size_t len);
/* Appends the decoded bytes; -1 on invalid input (whitespace is not allowed) or the cap. */
int mt_base64_decode(struct mt_buf *out, const char *text, size_t len);

#endif
