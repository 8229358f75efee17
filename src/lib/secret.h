/* A secret (password, OAuth token) held in guarded memory. Ownership: whoever created it frees
 * it with mt_secret_free(), which wipes the bytes. It has no string form: only the SASL encoder
 * reads the bytes (mt_secret_bytes), so a secret cannot reach a log line or a transcript by
 * accident. */
#ifndef MT_LIB_SECRET_H
#define MT_LIB_SECRET_H

#include <stddef.h>

struct mt_secret;

struct mt_secret *mt_secret_new(const void *bytes, size_t len);
/* Reads a secret from a file; a single trailing newline is dropped. NULL with error_r set. */
struct mt_secret *mt_secret_from_file(const char *path, const char **error_r);
void mt_secret_free(struct mt_secret **secret);
size_t mt_secret_len(const struct mt_secret *secret);
const unsigned char *mt_secret_bytes(const struct mt_secret *secret);

#endif
