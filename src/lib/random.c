/* Identifier randomness from a per-thread pool (see random.h). */
#include "lib/random.h"
#include "lib/limits.h"

#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <string.h>

/* Bumped in a forked child, so that it does not hand out the bytes its parent will. */
static volatile uint64_t fork_generation = 1;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void after_fork_in_child(void)
{
	fork_generation++;
}

static void register_atfork(void)
{
	pthread_atfork(NULL, NULL, after_fork_in_child);
}

void mt_random_id_bytes(void *out, size_t len)
{
	static _Thread_local unsigned char pool[MT_RANDOM_POOL_BYTES];
	static _Thread_local size_t left;
	static _Thread_local uint64_t generation;
	if (len > sizeof(pool)) {
		randombytes_buf(out, len);
		return;
	}
	pthread_once(&atfork_once, register_atfork);
	if (generation != fork_generation || left < len) {
		randombytes_buf(pool, sizeof(pool));
		left = sizeof(pool);
		generation = fork_generation;
	}
	/* Taken from the end and wiped, so that no byte is handed out twice. */
	unsigned char *from = pool + left - len;
	memcpy(out, from, len);
	sodium_memzero(from, len);
	left -= len;
}
