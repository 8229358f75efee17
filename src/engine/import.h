/* CSV import of profiles (DESIGN.md §2 POST /v1/profiles/import: `kind,name,emails`, `;`
 * between addresses, and optionally a fourth column `external_id`: a row whose external_id an
 * org's profile has replaces that profile's kind, name and addresses — the upsert of
 * PUT /v1/profiles/by-external-id, so a file can be imported again — and any other row creates
 * one; rows apply in file order). A file that is not well-formed CSV with the right header is
 * refused whole before anything is stored. Then the rows are read, validated and stored a chunk at
 * a time (MT_IMPORT_ROWS_PER_JOB rows, one store transaction each, parsing on a worker thread), so
 * that a million-row file neither holds the loop nor the store thread for long: other tenants'
 * requests are answered between chunks. Each chunk's stored profiles get their backfill in
 * the background. Rejected rows are reported by line: the first MT_IMPORT_REJECTS_MAX of them, and
 * how many in all; stored rows by line with their profile's id: the first MT_IMPORT_IDS_MAX.
 *
 * Ownership: profile_import() borrows `data` until `done` is called; the result handed to `done`
 * is valid during the call only. */
#ifndef MT_ENGINE_IMPORT_H
#define MT_ENGINE_IMPORT_H

#include "lib/limits.h"

#include <stdbool.h>
#include <stddef.h>

struct store;
struct work_pool;

enum import_verdict {
	IMPORT_DONE,     /* imported / rejects below; a failed chunk's rows are among the rejects */
	IMPORT_BAD_FILE, /* not CSV, or the wrong header: nothing stored (reason) */
	IMPORT_TOO_LARGE, /* more than MT_CSV_ROWS_MAX rows: nothing stored (reason) */
	IMPORT_BUSY,      /* a queue is full before anything was stored (reason) */
};

struct import_reject {
	unsigned line; /* the file's line number, header = 1 */
	char error[MT_ERROR_TEXT_MAX];
};

/* A stored row. */
struct import_id {
	unsigned line;
	bool created; /* false: the row replaced the profile having its external_id */
	char id[MT_ID_MAX];
	char external_id[MT_EXTERNAL_ID_MAX + 1]; /* "" when the row had none */
};

struct import_result {
	enum import_verdict verdict;
	char reason[MT_ERROR_TEXT_MAX];
	size_t imported;             /* rows stored, created or updated */
	size_t updated;              /* of which updated an existing profile (by external_id) */
	const struct import_id *ids; /* the first MT_IMPORT_IDS_MAX stored rows, in file order */
	size_t id_count;
	const struct import_reject *rejects; /* the first MT_IMPORT_REJECTS_MAX */
	size_t reject_count;
	size_t rejected_total;
};

typedef void import_done_fn(void *ctx, const struct import_result *result);

/* Calls `done` exactly once on the loop thread: later, or before returning when a queue is
 * full (IMPORT_BUSY). */
void profile_import(struct store *store, struct work_pool *work, const char *org_id,
                    const char *data, size_t len, import_done_fn *done, void *ctx);

#endif
