/* Shared by the store, activity and matcher unit tests: a store in a fresh temporary directory
 * (opened without a loop, used through store_run), removed with its WAL files afterwards, and
 * the JOB() macro that turns one store call on a test's `struct call` into a job function. */
#ifndef MT_TESTS_TEMP_STORE_H
#define MT_TESTS_TEMP_STORE_H

#include "store/store.h"
#include "store/store_outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define TEMP_STORE_DIR_MAX  64
#define TEMP_STORE_PATH_MAX 96

/* Creates /tmp/NAME.XXXXXX and opens DIR/mailtrail.db in it; 0 or -1 (reason on stderr). */
static inline int temp_store_open(const char *name, char dir[TEMP_STORE_DIR_MAX],
                                  char path[TEMP_STORE_PATH_MAX], struct store **store_r)
{
	snprintf(dir, TEMP_STORE_DIR_MAX, "/tmp/%s.XXXXXX", name);
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, TEMP_STORE_PATH_MAX, "%s/mailtrail.db", dir);
	const char *error = NULL;
	*store_r = store_open(path, NULL, &error);
	if (*store_r == NULL) {
		fprintf(stderr, "store_open: %s\n", error);
		return -1;
	}
	return 0;
}

static inline void temp_store_close(const char *dir, const char *path, struct store **store)
{
	store_close(store);
	static const char *const suffixes[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		char p[TEMP_STORE_PATH_MAX + 8];
		snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
		unlink(p);
	}
	rmdir(dir);
}

/* A job calling one store operation with the arguments in the test's `struct call`. */
#define JOB(name, expr)                                                                            \
	static int name(struct store_tx *tx, void *arg)                                            \
	{                                                                                          \
		struct call *c = arg;                                                              \
		(void)c;                                                                           \
		return (expr);                                                                     \
	}

/* The sender's claim as engine/outbox_lease.c runs it: the ids claimed, then each message read.
 * *count_r messages in messages_r (`max` slots); on a failure none is left to free. */
static inline int temp_store_claim(struct store_tx *tx, const char *owner, int64_t now,
                                   int64_t lease_s, size_t max,
                                   struct store_outbox_message *messages_r, size_t *count_r)
{
	*count_r = 0;
	char(*ids)[MT_ID_MAX] = calloc(max ? max : 1, sizeof(*ids));
	if (ids == NULL)
		return -1;
	size_t claimed = 0;
	int rc = store_outbox_claim_ids(tx, owner, now, lease_s, max, ids, &claimed);
	for (size_t i = 0; rc == 0 && i < claimed; i++) {
		rc = store_outbox_get_claimed(tx, ids[i], &messages_r[i]);
		if (rc == 0)
			(*count_r)++;
	}
	free(ids);
	if (rc != 0) {
		for (size_t i = 0; i < *count_r; i++)
			store_outbox_message_free(&messages_r[i]);
		*count_r = 0;
	}
	return rc;
}

#endif
