/* Random bytes for identifiers (message, row and request ids): from the system's generator, as
 * randombytes_buf() gives them, but fetched MT_RANDOM_POOL_BYTES at a time per thread, since a
 * getrandom() call per id cost a system call on every request, outbox message and row (~1.5 a
 * message end to end). Not for keys, nonces or tokens: those keep asking libsodium directly, so
 * that no secret material waits in a pool.
 *
 * Ownership: each thread's pool is its own (thread-local); a forked child starts a new one. */
#ifndef MT_LIB_RANDOM_H
#define MT_LIB_RANDOM_H

#include <stddef.h>

/* Fills out[0..len) (len at most MT_RANDOM_POOL_BYTES). sodium_init() must have run. */
void mt_random_id_bytes(void *out, size_t len);

#endif
