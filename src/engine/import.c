#include "engine/import.h"

#include "engine/matcher.h"
#include "engine/profiles.h"
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

struct import_job {
	struct store *store;
	struct work_pool *work;
	char org_id[MT_ID_MAX];
	const char *data;
	size_t len;
	import_done_fn *done;
	void *ctx;
	/* Reading: the parser and where it is, handed from one step to the next. */
	struct csv_parser parser;
	size_t offset;
	bool header_skipped;
	bool at_end;
	size_t columns;     /* the header's: 3, or 4 with external_id */
	unsigned next_line; /* where the rows not read yet start */
	/* The chunk being read or stored. */
	struct store_profile *chunk;
	unsigned *lines;
	char (*ids)[MT_ID_MAX];
	bool *created;
	size_t chunk_count;
	/* Totals */
	struct import_result result;
	struct import_reject *rejects;
	struct import_id *stored; /* the first MT_IMPORT_IDS_MAX, allocated with the first */
};

static void finish(struct import_job *job, enum import_verdict verdict)
{
	job->result.verdict = verdict;
	job->result.rejects = job->rejects;
	job->result.ids = job->stored;
	job->done(job->ctx, &job->result);
	csv_parser_deinit(&job->parser);
	free(job->chunk);
	free(job->lines);
	free(job->ids);
	free(job->created);
	free(job->rejects);
	free(job->stored);
	free(job);
}

static void reject(struct import_job *job, unsigned line, const char *error)
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

/* ---- the whole file first: is it CSV with our header? (worker) ----------------------------- */

static bool check_run(void *arg)
{
	struct import_job *job = arg;
	struct csv_parser parser;
	csv_parser_init(&parser);
	size_t offset = 0, rows = 0;
	bool header_seen = false;
	struct import_result *r = &job->result;
	r->verdict = IMPORT_DONE;
	for (;;) {
		struct csv_record record;
		size_t consumed = 0;
		const char *error;
		bool eof = offset == job->len;
		int n = csv_parse(&parser, job->data + offset, job->len - offset, eof, &consumed,
		                  &record, &error);
		offset += consumed;
		if (n < 0) {
			r->verdict = IMPORT_BAD_FILE;
			snprintf(r->reason, sizeof(r->reason), "malformed CSV: %s", error);
			break;
		}
		if (n == 0) {
			if (eof)
				break;
			continue;
		}
		if (!header_seen) {
			job->columns = header_columns(&record);
			if (job->columns == 0) {
				r->verdict = IMPORT_BAD_FILE;
				mt_strlcpy(r->reason,
				           "line 1: the header must be kind,name,emails or "
				           "kind,name,emails,external_id",
				           sizeof(r->reason));
				break;
			}
			header_seen = true;
		} else if (++rows > MT_CSV_ROWS_MAX) {
			r->verdict = IMPORT_TOO_LARGE;
			snprintf(r->reason, sizeof(r->reason), "more than %d rows",
			         MT_CSV_ROWS_MAX);
			break;
		}
	}
	csv_parser_deinit(&parser);
	if (r->verdict == IMPORT_DONE && !header_seen) {
		r->verdict = IMPORT_BAD_FILE;
		mt_strlcpy(r->reason,
		           "empty file: the header kind,name,emails[,external_id] is missing",
		           sizeof(r->reason));
	}
	return true;
}

/* ---- then a chunk at a time: read (worker), store (store thread) --------------------------- */

static bool read_run(void *arg);
static void read_done(void *arg);

static void read_next(struct import_job *job)
{
	if (job->at_end) {
		finish(job, IMPORT_DONE);
		return;
	}
	if (work_submit(job->work, read_run, read_done, job) < 0) {
		/* The rows left are the client's to send again. */
		reject(job, job->next_line,
		       "not imported: the server was busy; import the rows from this line again");
		finish(job, IMPORT_DONE);
	}
}

static bool read_run(void *arg)
{
	struct import_job *job = arg;
	job->chunk_count = 0;
	while (job->chunk_count < MT_IMPORT_ROWS_PER_JOB) {
		struct csv_record record;
		size_t consumed = 0;
		const char *error;
		bool eof = job->offset == job->len;
		int n = csv_parse(&job->parser, job->data + job->offset, job->len - job->offset,
		                  eof, &consumed, &record, &error);
		job->offset += consumed;
		if (n < 0) { /* the check pass saw the same bytes; stop rather than guess */
			job->at_end = true;
			break;
		}
		if (n == 0) {
			if (eof) {
				job->at_end = true;
				break;
			}
			continue;
		}
		job->next_line = record.line + 1;
		if (!job->header_skipped) { /* the check pass made sure it is the header */
			job->header_skipped = true;
			continue;
		}
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
	struct import_job *job = arg;
	for (size_t i = 0; i < job->chunk_count; i++) {
		int rc = store_row(tx, &job->chunk[i], &job->created[i]);
		if (rc != 0)
			return rc; /* the chunk is all or nothing */
		memcpy(job->ids[i], job->chunk[i].id, MT_ID_MAX);
	}
	return 0;
}

/* The chunk's stored rows into the answer, up to MT_IMPORT_IDS_MAX. */
static void list_stored(struct import_job *job)
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

static void schedule_backfill(struct import_job *job)
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
	struct import_job *job = arg;
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
	read_next(job);
}

static void read_done(void *arg)
{
	struct import_job *job = arg;
	if (job->chunk_count == 0) {
		read_next(job);
		return;
	}
	if (store_submit(job->store, STORE_WRITE_DURABLE, insert_run, insert_done, job) < 0) {
		/* This chunk and the rest are the client's to send again. */
		reject(job, job->lines[0],
		       "not imported: the server was busy; import the rows from this line again");
		finish(job, IMPORT_DONE);
	}
}

static void check_done(void *arg)
{
	struct import_job *job = arg;
	if (job->result.verdict != IMPORT_DONE) {
		finish(job, job->result.verdict);
		return;
	}
	read_next(job);
}

void profile_import(struct store *store, struct work_pool *work, const char *org_id,
                    const char *data, size_t len, import_done_fn *done, void *ctx)
{
	struct import_job *job = calloc(1, sizeof(*job));
	if (job != NULL) {
		job->chunk = calloc(MT_IMPORT_ROWS_PER_JOB, sizeof(*job->chunk));
		job->lines = calloc(MT_IMPORT_ROWS_PER_JOB, sizeof(*job->lines));
		job->ids = calloc(MT_IMPORT_ROWS_PER_JOB, sizeof(*job->ids));
		job->created = calloc(MT_IMPORT_ROWS_PER_JOB, sizeof(*job->created));
	}
	if (job == NULL || job->chunk == NULL || job->lines == NULL || job->ids == NULL ||
	    job->created == NULL) {
		struct import_result result = {.verdict = IMPORT_BUSY};
		mt_strlcpy(result.reason, "out of memory", sizeof(result.reason));
		done(ctx, &result);
		if (job != NULL) {
			free(job->chunk);
			free(job->lines);
			free(job->ids);
			free(job->created);
			free(job);
		}
		return;
	}
	job->store = store;
	job->work = work;
	mt_strlcpy(job->org_id, org_id, sizeof(job->org_id));
	job->data = data;
	job->len = len;
	job->done = done;
	job->ctx = ctx;
	csv_parser_init(&job->parser);
	if (work_submit(work, check_run, check_done, job) < 0) {
		mt_strlcpy(job->result.reason, "too many requests are being read; try again",
		           sizeof(job->result.reason));
		finish(job, IMPORT_BUSY);
	}
}
