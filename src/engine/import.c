#include "engine/import.h"

#include "engine/matcher.h"
#include "engine/profiles.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/str.h"
#include "proto/csv.h"
#include "store/store.h"
#include "store/store_profile.h"
#include "work/work.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Why reading stopped before the end of the file (worker, then loop). */
enum read_stop { READ_ON, READ_MALFORMED, READ_BAD_HEADER, READ_TOO_MANY };

struct import_stream {
	struct store *store;
	struct work_pool *work;
	char org_id[MT_ID_MAX];
	import_done_fn *done;
	import_flow_fn *flow;
	void *ctx;
	/* The body: `pending` is filled on the loop while a worker reads `input`; they swap when
	 * `input` is used up. */
	struct mt_buf pending;
	struct mt_buf input;
	size_t offset;       /* of `input`, read */
	bool paused;         /* the feeder was told to pause */
	bool body_over;      /* profile_import_end() was called */
	enum import_end end; /* ...and how */
	int end_status;
	char end_why[160];
	bool busy;    /* a read (worker) or a chunk's store job is out */
	bool eof;     /* the read step has the file's last bytes */
	bool stopped; /* nothing more is read or stored: finishing */
	/* Reading (worker, one step at a time) */
	struct csv_parser parser;
	bool header_seen;
	bool at_end;
	size_t columns;     /* the header's: 3, or 4 with external_id */
	unsigned next_line; /* where the rows not read yet start */
	size_t rows;        /* data rows read */
	enum read_stop read_stop;
	char read_reason[MT_ERROR_TEXT_MAX];
	/* The chunk being read or stored. */
	struct store_profile *chunk;
	unsigned *lines;
	char (*ids)[MT_ID_MAX];
	bool *created;
	size_t chunk_count;
	bool committed; /* a chunk was stored (or its store job was): no refusing whole now */
	/* Totals */
	struct import_result result;
	struct import_reject *rejects;
	struct import_id *stored; /* the first MT_IMPORT_IDS_MAX, allocated with the first */
};

/* Imports running (loop thread only): the node's cap, and one per org. */
static struct import_stream *running[MT_IMPORT_STREAMS_MAX];

static void running_remove(struct import_stream *job)
{
	for (size_t i = 0; i < MT_IMPORT_STREAMS_MAX; i++)
		if (running[i] == job)
			running[i] = NULL;
}

static void job_free(struct import_stream *job)
{
	running_remove(job);
	csv_parser_deinit(&job->parser);
	mt_buf_free(&job->pending);
	mt_buf_free(&job->input);
	free(job->chunk);
	free(job->lines);
	free(job->ids);
	free(job->created);
	free(job->rejects);
	free(job->stored);
	free(job);
}

static void finish(struct import_stream *job, enum import_verdict verdict)
{
	job->result.verdict = verdict;
	job->result.rejects = job->rejects;
	job->result.ids = job->stored;
	if (job->body_over && job->end == IMPORT_END_GONE) {
		char imported[24];
		snprintf(imported, sizeof(imported), "%zu", job->result.imported);
		mt_log(MT_LOG_INFO, "profiles.import_abandoned", MT_KV("org", job->org_id),
		       MT_KV("imported", imported));
	}
	job->done(job->ctx, &job->result);
	job_free(job);
}

/* The import ends early: refused whole while nothing is stored, else done up to `line`. */
static void stop_at(struct import_stream *job, enum import_verdict whole, unsigned line,
                    const char *reason)
{
	mt_strlcpy(job->result.reason, reason, sizeof(job->result.reason));
	if (!job->committed) {
		finish(job, whole);
		return;
	}
	job->result.stopped_line = line > 0 ? line : 1;
	finish(job, IMPORT_DONE);
}

static void reject(struct import_stream *job, unsigned line, const char *error)
{
	struct import_result *r = &job->result;
	r->rejected_total++;
	if (r->reject_count == MT_IMPORT_REJECTS_MAX)
		return;
	if (job->rejects == NULL) {
		job->rejects = calloc(MT_IMPORT_REJECTS_MAX, sizeof(*job->rejects));
		if (job->rejects == NULL)
			return; /* counted, not listed */
	}
	struct import_reject *x = &job->rejects[r->reject_count++];
	x->line = line;
	mt_strlcpy(x->error, error, sizeof(x->error));
}

static void trim(const char **s, size_t *len)
{
	while (*len > 0 && isspace((unsigned char)**s)) {
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && isspace((unsigned char)(*s)[*len - 1]))
		(*len)--;
}

/* The header's column count (3, or 4 with external_id), 0 when it is not ours. */
static size_t header_columns(const struct csv_record *record)
{
	static const char *const expected[] = {"kind", "name", "emails", "external_id"};
	if (record->field_count != 3 && record->field_count != 4)
		return 0;
	for (size_t i = 0; i < record->field_count; i++) {
		const char *s = record->fields[i];
		size_t len = record->lengths[i];
		trim(&s, &len);
		if (len != strlen(expected[i]) || strncasecmp(s, expected[i], len) != 0)
			return 0;
	}
	return record->field_count;
}

/* The external_id column: what PUT /v1/profiles/by-external-id takes (at most
 * MT_EXTERNAL_ID_MAX bytes, no control characters), and UTF-8; blanks around it are not part
 * of it, and empty is none. */
static bool read_external_id(const char *s, size_t len, struct store_profile *p,
                             const char **error_r, char *detail, size_t detail_size)
{
	trim(&s, &len);
	bool control = false;
	for (size_t i = 0; i < len; i++)
		control |= (unsigned char)s[i] < 0x20 || s[i] == 0x7f;
	if (len > MT_EXTERNAL_ID_MAX || control) {
		snprintf(detail, detail_size,
		         "external_id: at most %d bytes, no control characters",
		         MT_EXTERNAL_ID_MAX);
		*error_r = detail;
		return false;
	}
	if (!mt_utf8_valid(s, len)) {
		*error_r = "external_id is not valid UTF-8";
		return false;
	}
	memcpy(p->external_id, s, len);
	p->external_id[len] = '\0';
	return true;
}

/* One data row into `p`; false with *error_r (or `detail`) for a row to reject. */
static bool read_row(const struct csv_record *record, size_t columns, struct store_profile *p,
                     const char **error_r, char *detail, size_t detail_size)
{
	memset(p, 0, sizeof(*p));
	if (record->field_count != columns) {
		*error_r = columns == 3 ? "expected 3 fields: kind,name,emails"
		                        : "expected 4 fields: kind,name,emails,external_id";
		return false;
	}
	if (columns == 4 && !read_external_id(record->fields[3], record->lengths[3], p, error_r,
	                                      detail, detail_size))
		return false;
	char kind[16];
	const char *s = record->fields[0];
	size_t len = record->lengths[0];
	trim(&s, &len);
	snprintf(kind, sizeof(kind), "%.*s", (int)(len < 15 ? len : 15), s);
	if (len >= sizeof(kind) || memchr(s, '\0', len) != NULL ||
	    profile_kind_parse(kind, &p->kind) < 0) {
		*error_r = "kind must be applicant, contact or employee";
		return false;
	}
	s = record->fields[1];
	len = record->lengths[1];
	trim(&s, &len);
	/* Stored text must come back out as JSON: a NUL would cut the name short, bytes that are
	 * not UTF-8 could not be shown at all. */
	if (memchr(s, '\0', len) != NULL) {
		*error_r = "name contains a NUL byte";
		return false;
	}
	if (!mt_utf8_valid(s, len)) {
		*error_r = "name is not valid UTF-8";
		return false;
	}
	if (len == 0 || len > MT_NAME_MAX || memchr(s, '\n', len) || memchr(s, '\r', len)) {
		*error_r = len == 0 ? "name is empty" : "name is too long or has a line break";
		return false;
	}
	memcpy(p->name, s, len);
	p->name[len] = '\0';
	const char *list = record->fields[2];
	size_t list_len = record->lengths[2];
	if (memchr(list, '\0', list_len) != NULL) {
		*error_r = "emails contain a NUL byte";
		return false;
	}
	if (!mt_utf8_valid(list, list_len)) {
		*error_r = "emails are not valid UTF-8";
		return false;
	}
	while (list_len > 0) {
		const char *semi = memchr(list, ';', list_len);
		size_t piece_len = semi != NULL ? (size_t)(semi - list) : list_len;
		const char *piece = list;
		list = semi != NULL ? semi + 1 : list + list_len;
		list_len -= semi != NULL ? piece_len + 1 : piece_len;
		trim(&piece, &piece_len);
		if (piece_len == 0)
			continue;
		char input[MT_ADDRESS_MAX * 2 + 1];
		if (piece_len >= sizeof(input)) {
			*error_r = "an address is too long";
			return false;
		}
		memcpy(input, piece, piece_len);
		input[piece_len] = '\0';
		const char *error;
		if (profile_add_email(p, input, &error) < 0) {
			snprintf(detail, detail_size, "invalid address '%.100s': %s", input, error);
			*error_r = detail;
			return false;
		}
	}
	if (p->email_count == 0) {
		*error_r = "no email address";
		return false;
	}
	return true;
}

/* ---- reading (worker) and storing (store thread), a chunk at a time ------------------------ */

static void kick(struct import_stream *job);

/* Reads rows from `input` until the chunk is full, the bytes run out or reading must stop. */
static bool read_run(void *arg)
{
	struct import_stream *job = arg;
	while (job->chunk_count < MT_IMPORT_ROWS_PER_JOB) {
		struct csv_record record;
		size_t consumed = 0;
		const char *error;
		bool eof = job->eof && job->offset == job->input.len;
		int n = csv_parse(&job->parser, job->input.data + job->offset,
		                  job->input.len - job->offset, eof, &consumed, &record, &error);
		job->offset += consumed;
		if (n < 0) {
			job->read_stop = READ_MALFORMED;
			snprintf(job->read_reason, sizeof(job->read_reason), "malformed CSV: %s",
			         error);
			break;
		}
		if (n == 0) {
			job->at_end = eof;
			break;
		}
		if (!job->header_seen) {
			job->columns = header_columns(&record);
			if (job->columns == 0) {
				job->read_stop = READ_BAD_HEADER;
				mt_strlcpy(job->read_reason,
				           "line 1: the header must be kind,name,emails or "
				           "kind,name,emails,external_id",
				           sizeof(job->read_reason));
				break;
			}
			job->header_seen = true;
			job->next_line = record.line + 1;
			continue;
		}
		if (++job->rows > MT_CSV_ROWS_MAX) {
			job->read_stop = READ_TOO_MANY;
			snprintf(job->read_reason, sizeof(job->read_reason), "more than %d rows",
			         MT_CSV_ROWS_MAX);
			break;
		}
		job->next_line = record.line + 1;
		char detail[256];
		struct store_profile *p = &job->chunk[job->chunk_count];
		if (!read_row(&record, job->columns, p, &error, detail, sizeof(detail))) {
			reject(job, record.line, error);
			continue;
		}
		mt_strlcpy(p->org_id, job->org_id, sizeof(p->org_id));
		job->lines[job->chunk_count++] = record.line;
	}
	return true;
}

/* One row: the profile with its external_id replaced (the upsert's rule), or a new one. */
static int store_row(struct store_tx *tx, struct store_profile *p, bool *created_r)
{
	*created_r = true;
	if (p->external_id[0] != '\0') {
		char id[MT_ID_MAX];
		struct store_profile *current = malloc(sizeof(*current));
		if (current == NULL)
			return -1;
		int rc = store_profile_get_by_external(tx, p->org_id, p->external_id, current);
		memcpy(id, current->id, sizeof(id));
		free(current);
		if (rc == 0) {
			*created_r = false;
			memcpy(p->id, id, sizeof(p->id));
			return store_profile_update(tx, p);
		}
		if (rc != STORE_NOT_FOUND)
			return rc;
	}
	return store_profile_create(tx, p);
}

static int insert_run(struct store_tx *tx, void *arg)
{
	struct import_stream *job = arg;
	for (size_t i = 0; i < job->chunk_count; i++) {
		int rc = store_row(tx, &job->chunk[i], &job->created[i]);
		if (rc != 0)
			return rc; /* the chunk is all or nothing */
		memcpy(job->ids[i], job->chunk[i].id, MT_ID_MAX);
	}
	return 0;
}

/* The chunk's stored rows into the answer, up to MT_IMPORT_IDS_MAX. */
static void list_stored(struct import_stream *job)
{
	struct import_result *r = &job->result;
	for (size_t i = 0; i < job->chunk_count; i++) {
		r->updated += !job->created[i];
		if (r->id_count == MT_IMPORT_IDS_MAX)
			continue;
		if (job->stored == NULL) {
			job->stored = calloc(MT_IMPORT_IDS_MAX, sizeof(*job->stored));
			if (job->stored == NULL)
				continue; /* counted, not listed */
		}
		struct import_id *x = &job->stored[r->id_count++];
		x->line = job->lines[i];
		x->created = job->created[i];
		memcpy(x->id, job->ids[i], sizeof(x->id));
		memcpy(x->external_id, job->chunk[i].external_id, sizeof(x->external_id));
	}
}

/* Backfill runs in the background, MT_BACKFILL_PROFILES_JOB profiles per job, so the import
 * does not wait for it and other requests interleave. */
struct backfill_job {
	char org_id[MT_ID_MAX];
	char (*ids)[MT_ID_MAX];
	size_t count;
};

static int backfill_run(struct store_tx *tx, void *arg)
{
	struct backfill_job *job = arg;
	for (size_t i = 0; i < job->count; i++) {
		size_t created = 0;
		int rc = matcher_backfill_profile(tx, job->org_id, job->ids[i], &created);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static void backfill_done(void *arg, int result)
{
	struct backfill_job *job = arg;
	if (result != 0)
		mt_log(MT_LOG_ERROR, "profiles.backfill_failed", MT_KV("org", job->org_id));
	free(job->ids);
	free(job);
}

static void schedule_backfill(struct import_stream *job)
{
	for (size_t start = 0; start < job->chunk_count; start += MT_BACKFILL_PROFILES_JOB) {
		size_t n = job->chunk_count - start < MT_BACKFILL_PROFILES_JOB
		               ? job->chunk_count - start
		               : MT_BACKFILL_PROFILES_JOB;
		struct backfill_job *b = calloc(1, sizeof(*b));
		if (b == NULL || (b->ids = malloc(n * sizeof(*b->ids))) == NULL) {
			free(b);
			mt_log(MT_LOG_ERROR, "profiles.backfill_skipped",
			       MT_KV("org", job->org_id));
			return;
		}
		mt_strlcpy(b->org_id, job->org_id, sizeof(b->org_id));
		memcpy(b->ids, job->ids + start, n * sizeof(*b->ids));
		b->count = n;
		if (store_submit(job->store, STORE_WRITE, backfill_run, backfill_done, b) < 0) {
			free(b->ids);
			free(b);
			mt_log(MT_LOG_ERROR, "profiles.backfill_skipped",
			       MT_KV("org", job->org_id));
			return;
		}
	}
}

static void insert_done(void *arg, int result)
{
	struct import_stream *job = arg;
	job->busy = false;
	if (result == 0) {
		job->result.imported += job->chunk_count;
		list_stored(job);
		schedule_backfill(job);
	} else {
		for (size_t i = 0; i < job->chunk_count; i++)
			reject(job, job->lines[i],
			       "not stored: the store failed; import this row again");
	}
	job->chunk_count = 0;
	kick(job);
}

/* Stores the chunk read so far; false when the store is too busy (the import then stops). */
static bool store_chunk(struct import_stream *job)
{
	if (store_submit(job->store, STORE_WRITE_DURABLE, insert_run, insert_done, job) < 0) {
		reject(job, job->lines[0],
		       "not imported: the server was busy; import the rows from this line again");
		stop_at(job, IMPORT_BUSY, job->lines[0],
		        "the server was busy; import the rows from this line again");
		return false;
	}
	job->busy = true;
	job->committed = true;
	return true;
}

static void read_done(void *arg)
{
	struct import_stream *job = arg;
	job->busy = false;
	if (job->read_stop != READ_ON) {
		/* Refused whole while nothing is stored; else what was read before the fault is
		 * stored and the import stops at it. */
		enum import_verdict whole =
		    job->read_stop == READ_TOO_MANY ? IMPORT_TOO_LARGE : IMPORT_BAD_FILE;
		job->stopped = true;
		if (!job->committed) {
			stop_at(job, whole, 0, job->read_reason);
			return;
		}
		reject(job, job->next_line, job->read_reason);
		mt_strlcpy(job->result.reason, job->read_reason, sizeof(job->result.reason));
		job->result.stopped_line = job->next_line;
		if (job->chunk_count > 0)
			store_chunk(job);
		else
			kick(job);
		return;
	}
	if (job->at_end && !job->header_seen) {
		job->stopped = true;
		stop_at(job, IMPORT_BAD_FILE, 0,
		        "empty file: the header kind,name,emails[,external_id] is missing");
		return;
	}
	if (job->chunk_count == MT_IMPORT_ROWS_PER_JOB || (job->at_end && job->chunk_count > 0)) {
		store_chunk(job);
		return;
	}
	kick(job);
}

/* Moves the import on from the loop: the next read or the end. Nothing runs while a step is
 * out; each step's completion calls this again. */
static void kick(struct import_stream *job)
{
	if (job->busy)
		return;
	if (job->stopped) { /* reading stopped: what was read is stored */
		finish(job, IMPORT_DONE);
		return;
	}
	if (job->at_end) {
		finish(job, IMPORT_DONE);
		return;
	}
	if (job->body_over && job->end != IMPORT_END_COMPLETE) {
		/* No more bytes will come and the last ones may be cut: the rows read so far are
		 * stored (unless the sender left), then the import ends. */
		if (job->end == IMPORT_END_GONE) {
			finish(job, IMPORT_DONE);
			return;
		}
		job->stopped = true;
		if (!job->committed) {
			job->result.status = job->end_status;
			stop_at(job, IMPORT_BODY_FAILED, 0, job->end_why);
			return;
		}
		mt_strlcpy(job->result.reason, job->end_why, sizeof(job->result.reason));
		job->result.stopped_line = job->next_line; /* the first line not read */
		if (job->chunk_count > 0)
			store_chunk(job);
		else
			finish(job, IMPORT_DONE);
		return;
	}
	if (job->offset == job->input.len && job->pending.len > 0) {
		struct mt_buf t = job->input;
		job->input = job->pending;
		job->pending = t;
		mt_buf_reset(&job->pending);
		job->offset = 0;
		if (job->paused) {
			job->paused = false;
			job->flow(job->ctx, false);
		}
	}
	job->eof = job->body_over && job->pending.len == 0;
	if (job->offset == job->input.len && !job->eof)
		return; /* waiting for bytes */
	if (work_submit(job->work, read_run, read_done, job) < 0) {
		unsigned line = job->chunk_count > 0 ? job->lines[0] : job->next_line;
		job->stopped = true;
		job->chunk_count = 0;
		if (job->committed)
			reject(job, line,
			       "not imported: the server was busy; import the rows from this line "
			       "again");
		stop_at(job, IMPORT_BUSY, line,
		        "the server was busy; import the rows from this line again");
		return;
	}
	job->busy = true;
}

/* ---- the stream's API ---------------------------------------------------------------------- */

static struct import_stream *refuse(enum import_verdict verdict, const char *reason,
                                    import_done_fn *done, void *ctx)
{
	struct import_result result = {.verdict = verdict};
	mt_strlcpy(result.reason, reason, sizeof(result.reason));
	done(ctx, &result);
	return NULL;
}

struct import_stream *profile_import_start(struct store *store, struct work_pool *work,
                                           const char *org_id, import_done_fn *done,
                                           import_flow_fn *flow, void *ctx)
{
	size_t slot = MT_IMPORT_STREAMS_MAX, in_org = 0;
	for (size_t i = 0; i < MT_IMPORT_STREAMS_MAX; i++) {
		if (running[i] == NULL)
			slot = slot < i ? slot : i;
		else if (strcmp(running[i]->org_id, org_id) == 0)
			in_org++;
	}
	if (in_org >= MT_IMPORT_STREAMS_PER_ORG)
		return refuse(IMPORT_ORG_BUSY,
		              "an import of this org is running; try again when it is done", done,
		              ctx);
	if (slot == MT_IMPORT_STREAMS_MAX)
		return refuse(IMPORT_BUSY, "too many imports are running; try again", done, ctx);
	struct import_stream *job = calloc(1, sizeof(*job));
	if (job == NULL)
		return refuse(IMPORT_BUSY, "out of memory", done, ctx);
	job->chunk = calloc(MT_IMPORT_ROWS_PER_JOB, sizeof(*job->chunk));
	job->lines = calloc(MT_IMPORT_ROWS_PER_JOB, sizeof(*job->lines));
	job->ids = calloc(MT_IMPORT_ROWS_PER_JOB, sizeof(*job->ids));
	job->created = calloc(MT_IMPORT_ROWS_PER_JOB, sizeof(*job->created));
	if (job->chunk == NULL || job->lines == NULL || job->ids == NULL || job->created == NULL) {
		job_free(job); /* not running yet: nothing else to undo */
		return refuse(IMPORT_BUSY, "out of memory", done, ctx);
	}
	job->store = store;
	job->work = work;
	mt_strlcpy(job->org_id, org_id, sizeof(job->org_id));
	job->done = done;
	job->flow = flow;
	job->ctx = ctx;
	/* A feed never adds more than the HTTP layer's read-ahead past the pause mark. */
	mt_buf_init(&job->pending, 2 * MT_IMPORT_STREAM_BUFFER);
	mt_buf_init(&job->input, 2 * MT_IMPORT_STREAM_BUFFER);
	csv_parser_init(&job->parser);
	job->next_line = 1;
	running[slot] = job;
	return job;
}

void profile_import_feed(struct import_stream *job, const char *data, size_t len)
{
	if (job->stopped || job->body_over)
		return; /* the answer is on its way: the rest is not read */
	if (mt_buf_append(&job->pending, data, len) < 0) {
		/* The feeder ignored the pause: its bytes cannot be kept. */
		profile_import_end(job, IMPORT_END_FAILED, 503,
		                   "the import fell behind its sender");
		return;
	}
	if (!job->paused && job->pending.len >= MT_IMPORT_STREAM_BUFFER) {
		job->paused = true;
		job->flow(job->ctx, true);
	}
	kick(job);
}

void profile_import_end(struct import_stream *job, enum import_end end, int status, const char *why)
{
	if (job->body_over)
		return;
	job->body_over = true;
	job->end = end;
	job->end_status = status;
	mt_strlcpy(job->end_why, why != NULL ? why : "", sizeof(job->end_why));
	kick(job);
}
