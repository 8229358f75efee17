/* CSV import of profiles (DESIGN.md §2 POST /v1/profiles/import: `kind,name,emails`, `;`
 * between addresses, and optionally a fourth column `external_id`: a row whose external_id an
 * org's profile has replaces that profile's kind, name and addresses — the upsert of
 * PUT /v1/profiles/by-external-id, so a file can be imported again — and any other row creates
 * one; rows apply in file order).
 *
 * The file is streamed: its bytes are handed over as they arrive (profile_import_feed), parsed
 * on a worker thread and stored a chunk at a time (MT_IMPORT_ROWS_PER_JOB rows, one store
 * transaction each), so that a million-row file is never held whole and neither holds the loop
 * nor the store thread for long: other tenants' requests are answered between chunks. At most
 * MT_IMPORT_STREAM_BUFFER bytes wait to be parsed; past that the feeder is told to pause
 * (`flow`). Each chunk's stored profiles get their backfill in the background. Rejected rows are
 * reported by line: the first MT_IMPORT_REJECTS_MAX of them, and how many in all; stored rows by
 * line with their profile's id: the first MT_IMPORT_IDS_MAX.
 *
 * A file found not to be CSV with the right header (or over MT_CSV_ROWS_MAX rows, or cut short
 * by its sender) before any chunk was stored is refused whole: nothing is stored. Found later,
 * what was read before the fault is stored and the import stops there (result.stopped_line):
 * the rows committed stay, the answer says how many. A sender gone before the end: committed
 * chunks stay, the chunk being read is dropped.
 *
 * Imports running at once are capped: MT_IMPORT_STREAMS_MAX per node, MT_IMPORT_STREAMS_PER_ORG
 * per org (loop thread only).
 *
 * Ownership: the stream is the engine's from profile_import_start() until `done` is called; the
 * caller must not use it after `done`, nor feed or end it after profile_import_end(). The result
 * handed to `done` is valid during the call only. */
#ifndef MT_ENGINE_IMPORT_H
#define MT_ENGINE_IMPORT_H

#include "lib/limits.h"

#include <stdbool.h>
#include <stddef.h>

struct store;
struct work_pool;

enum import_verdict {
	IMPORT_DONE,        /* imported / rejects below; stopped_line when it stopped early */
	IMPORT_BAD_FILE,    /* not CSV, or the wrong header: nothing stored (reason) */
	IMPORT_TOO_LARGE,   /* more than MT_CSV_ROWS_MAX rows: nothing stored (reason) */
	IMPORT_BUSY,        /* the node's imports or a queue are full: nothing stored (reason) */
	IMPORT_ORG_BUSY,    /* the org has an import running: nothing stored (reason) */
	IMPORT_BODY_FAILED, /* the body broke off (`status`: 400, 408, 413) before anything was
	                     * stored (reason) */
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
	/* IMPORT_DONE cut short: the rows from this line on were not read (0: read to the end),
	 * and why (`reason`). */
	unsigned stopped_line;
	int status; /* IMPORT_BODY_FAILED: the HTTP status the body's failure calls for */
};

typedef void import_done_fn(void *ctx, const struct import_result *result);
/* Flow control for the feeder: `pause` true when MT_IMPORT_STREAM_BUFFER bytes wait to be
 * parsed (called from profile_import_feed), false when it may feed again. */
typedef void import_flow_fn(void *ctx, bool pause);

struct import_stream;

enum import_end {
	IMPORT_END_COMPLETE, /* the file is all there */
	IMPORT_END_FAILED,   /* the body broke off: the HTTP status and why */
	IMPORT_END_GONE,     /* the sender left: nobody reads the answer */
};

/* Starts an import for `org_id`. NULL when the node or the org is at its cap (or out of
 * memory): `done` has then been called (IMPORT_BUSY or IMPORT_ORG_BUSY). Otherwise `done` is
 * called exactly once, on the loop thread, after profile_import_end() or earlier when the file
 * is refused. */
struct import_stream *profile_import_start(struct store *store, struct work_pool *work,
                                           const char *org_id, import_done_fn *done,
                                           import_flow_fn *flow, void *ctx);
/* Copies the next bytes of the file (may call `flow`, and `done` when the node is too busy). */
void profile_import_feed(struct import_stream *stream, const char *data, size_t len);
/* No more bytes come. `status` and `why` with IMPORT_END_FAILED. May call `done` before it
 * returns. */
void profile_import_end(struct import_stream *stream, enum import_end end, int status,
                        const char *why);

#endif
