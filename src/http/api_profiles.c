/* Profiles: the CRM's people (applicants, contacts, employees) and their addresses, which the
 * activity matcher looks up. Addresses are validated and normalised here (src/mime) before the
 * store sees them. CSV import: a bad file is refused whole (400, nothing stored); bad rows are
 * reported by line and the good ones stored together in one transaction. */
#include "http/api.h"

#include "engine/matcher.h"
#include "lib/log.h"

#include "lib/buf.h"
#include "lib/str.h"
#include "mime/address.h"
#include "proto/csv.h"
#include "store/store.h"
#include "store/store_profile.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const kind_names[] = {
    [STORE_PROFILE_APPLICANT] = "applicant",
    [STORE_PROFILE_CONTACT] = "contact",
    [STORE_PROFILE_EMPLOYEE] = "employee",
};

static int parse_kind(const char *text, enum store_profile_kind *kind_r)
{
	for (size_t i = 0; i < sizeof(kind_names) / sizeof(kind_names[0]); i++) {
		if (strcmp(text, kind_names[i]) == 0) {
			*kind_r = (enum store_profile_kind)i;
			return 0;
		}
	}
	return -1;
}

static json_t *profile_json(const struct store_profile *profile)
{
	return json_pack("{s:s,s:s,s:o,s:o,s:o,s:o}", "id", profile->id, "kind",
	                 kind_names[profile->kind], "name", api_text(profile->name), "emails",
	                 api_string_array(profile->emails, profile->email_count), "created_at",
	                 api_time(profile->created_at), "updated_at",
	                 api_time(profile->updated_at));
}

/* Adds one normalised address to the profile unless it is already there. */
static int add_email(struct store_profile *profile, const char *input, const char **error_r)
{
	char address[MT_ADDRESS_MAX + 1];
	if (mime_address_normalize(input, address, error_r) < 0)
		return -1;
	for (size_t i = 0; i < profile->email_count; i++)
		if (strcmp(profile->emails[i], address) == 0)
			return 0;
	if (profile->email_count == MT_PROFILE_EMAILS_MAX) {
		*error_r = "too many addresses";
		return -1;
	}
	memcpy(profile->emails[profile->email_count++], address, sizeof(address));
	return 0;
}

static void fail_oom(struct http_request *req)
{
	http_reply_error(req, 500, "internal", "out of memory", NULL, NULL);
}

struct profile_job {
	struct api_job base;
	struct store_profile profile;
	char target_id[MT_ID_MAX];
	bool set_kind, set_name, set_emails;
};

/* ---- create / get / update / delete ---- */

/* A new address gets the mail already on record for it (backfill), in the same transaction:
 * the profile never shows up without its history. */
static int profiles_create_run(struct store_tx *tx, void *arg)
{
	struct profile_job *job = arg;
	size_t created;
	int rc = store_profile_create(tx, &job->profile);
	return rc != 0 ? rc
	               : matcher_backfill_profile(tx, job->base.org_id, job->profile.id, &created);
}

static void profile_reply(struct profile_job *job, int result, int status)
{
	if (!api_reply_store_error(job->base.req, result, "profile"))
		http_reply_json(job->base.req, status, profile_json(&job->profile));
	free(job);
}

static void profiles_create_done(void *arg, int result)
{
	profile_reply(arg, result, 201);
}

static void profile_ok_done(void *arg, int result)
{
	profile_reply(arg, result, 200);
}

/* Decodes {kind,name,emails} into job->profile; `partial` allows omissions (PATCH). */
static bool decode_profile(struct http_request *req, struct profile_job *job, bool partial)
{
	const char *kind = NULL, *name = NULL;
	json_t *emails = NULL;
	const struct json_field fields[] = {
	    {.name = "kind",
	     .type = JSON_FIELD_STRING,
	     .required = !partial,
	     .max_len = 16,
	     .out = &kind,
	     .present = &job->set_kind},
	    {.name = "name",
	     .type = JSON_FIELD_STRING,
	     .required = !partial,
	     .max_len = MT_NAME_MAX,
	     .single_line = true,
	     .out = &name,
	     .present = &job->set_name},
	    {.name = "emails",
	     .type = JSON_FIELD_STRING_ARRAY,
	     .required = !partial,
	     .max_len = MT_ADDRESS_MAX * 2,
	     .max_items = MT_PROFILE_EMAILS_MAX,
	     .single_line = true,
	     .out = &emails,
	     .present = &job->set_emails},
	};
	json_t *root = api_decode(req, fields, sizeof(fields) / sizeof(fields[0]));
	if (root == NULL)
		return false;
	struct store_profile *p = &job->profile;
	bool ok = false;
	if (job->set_kind && (kind == NULL || parse_kind(kind, &p->kind) < 0)) {
		http_reply_error(req, 400, "input", "kind: must be applicant, contact or employee",
		                 NULL, NULL);
		goto out;
	}
	if (job->set_name) {
		if (name == NULL || name[0] == '\0') {
			http_reply_error(req, 400, "input", "name: must not be empty", NULL, NULL);
			goto out;
		}
		mt_strlcpy(p->name, name, sizeof(p->name));
	}
	if (job->set_emails) {
		if (emails == NULL || json_array_size(emails) == 0) {
			http_reply_error(req, 400, "input",
			                 "emails: at least one address is needed", NULL, NULL);
			goto out;
		}
		for (size_t i = 0; i < json_array_size(emails); i++) {
			const char *error;
			if (add_email(p, json_string_value(json_array_get(emails, i)), &error) <
			    0) {
				http_reply_errorf(req, 400, "input", "emails[%zu]: %s", i, error);
				goto out;
			}
		}
	}
	ok = true;
out:
	json_decref(root);
	return ok;
}

void api_profiles_create(struct http_request *req, void *app)
{
	struct profile_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	mt_strlcpy(job->profile.org_id, job->base.org_id, sizeof(job->profile.org_id));
	if (!decode_profile(req, job, false)) {
		free(job);
		return;
	}
	api_job_submit(&job->base, STORE_WRITE_DURABLE, profiles_create_run, profiles_create_done);
}

static int profiles_get_run(struct store_tx *tx, void *arg)
{
	struct profile_job *job = arg;
	return store_profile_get(tx, job->base.org_id, job->target_id, &job->profile);
}

void api_profiles_get(struct http_request *req, void *app)
{
	struct profile_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	mt_strlcpy(job->target_id, http_request_param(req, "id"), sizeof(job->target_id));
	api_job_submit(&job->base, STORE_READ, profiles_get_run, profile_ok_done);
}

static int profiles_update_run(struct store_tx *tx, void *arg)
{
	struct profile_job *job = arg;
	struct store_profile current;
	int rc = store_profile_get(tx, job->base.org_id, job->target_id, &current);
	if (rc != 0)
		return rc;
	if (job->set_kind)
		current.kind = job->profile.kind;
	if (job->set_name)
		memcpy(current.name, job->profile.name, sizeof(current.name));
	if (job->set_emails) {
		memcpy(current.emails, job->profile.emails, sizeof(current.emails));
		current.email_count = job->profile.email_count;
	}
	rc = store_profile_update(tx, &current);
	size_t created;
	if (rc == 0 && job->set_emails)
		rc = matcher_backfill_profile(tx, job->base.org_id, job->target_id, &created);
	if (rc == 0)
		rc = store_profile_get(tx, job->base.org_id, job->target_id, &job->profile);
	return rc;
}

void api_profiles_update(struct http_request *req, void *app)
{
	struct profile_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	mt_strlcpy(job->target_id, http_request_param(req, "id"), sizeof(job->target_id));
	if (!decode_profile(req, job, true)) {
		free(job);
		return;
	}
	api_job_submit(&job->base, STORE_WRITE_DURABLE, profiles_update_run, profile_ok_done);
}

static int profiles_delete_run(struct store_tx *tx, void *arg)
{
	struct profile_job *job = arg;
	return store_profile_delete(tx, job->base.org_id, job->target_id);
}

static void profiles_delete_done(void *arg, int result)
{
	struct profile_job *job = arg;
	if (!api_reply_store_error(job->base.req, result, "profile"))
		http_reply_empty(job->base.req, 204);
	free(job);
}

void api_profiles_delete(struct http_request *req, void *app)
{
	struct profile_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	mt_strlcpy(job->target_id, http_request_param(req, "id"), sizeof(job->target_id));
	api_job_submit(&job->base, STORE_WRITE_DURABLE, profiles_delete_run, profiles_delete_done);
}

/* ---- list and search ---- */

struct list_job {
	struct api_job base;
	char query[MT_NAME_MAX + 1];
	char cursor[MT_CURSOR_MAX];
	size_t limit;
	struct store_profile_list list;
};

static int profiles_list_run(struct store_tx *tx, void *arg)
{
	struct list_job *job = arg;
	return store_profile_list(tx, job->base.org_id, job->query, job->cursor, job->limit,
	                          &job->list);
}

static void profiles_list_done(void *arg, int result)
{
	struct list_job *job = arg;
	if (!api_reply_store_error(job->base.req, result, "profiles")) {
		json_t *items = json_array();
		for (size_t i = 0; i < job->list.count; i++)
			json_array_append_new(items, profile_json(&job->list.items[i]));
		http_reply_json(job->base.req, 200,
		                json_pack("{s:o,s:o}", "profiles", items, "next_cursor",
		                          job->list.next_cursor[0]
		                              ? json_string(job->list.next_cursor)
		                              : json_null()));
	}
	store_profile_list_free(&job->list);
	free(job);
}

void api_profiles_list(struct http_request *req, void *app)
{
	struct list_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	const char *cursor, *query = http_request_query(req, "q");
	if (!api_list_params(req, &job->limit, &cursor)) {
		free(job);
		return;
	}
	if (query != NULL && (strlen(query) > MT_NAME_MAX || mt_str_has_crlf(query))) {
		http_reply_error(req, 400, "input", "q: too long or contains a line break", NULL,
		                 NULL);
		free(job);
		return;
	}
	mt_strlcpy(job->query, query != NULL ? query : "", sizeof(job->query));
	mt_strlcpy(job->cursor, cursor != NULL ? cursor : "", sizeof(job->cursor));
	api_job_submit(&job->base, STORE_READ, profiles_list_run, profiles_list_done);
}

/* ---- CSV import ---- */

/* A valid row, kept compact until the store job turns it into a profile. */
struct import_row {
	enum store_profile_kind kind;
	size_t name; /* offsets into the job's text buffer */
	size_t emails[MT_PROFILE_EMAILS_MAX];
	size_t email_count;
};

struct import_job {
	struct api_job base;
	char (*ids)[MT_ID_MAX]; /* the created profiles, for the background backfill */
	struct import_row *rows;
	size_t row_count, row_cap;
	struct mt_buf text; /* NUL-separated names and addresses */
	json_t *rejected;
	size_t imported;
	struct store_profile scratch;
};

static void import_free(struct import_job *job);

static void import_destroy(void *job)
{
	import_free(job);
}

static void import_free(struct import_job *job)
{
	free(job->rows);
	free(job->ids);
	mt_buf_free(&job->text);
	json_decref(job->rejected);
	free(job);
}

static int import_run(struct store_tx *tx, void *arg)
{
	struct import_job *job = arg;
	for (size_t i = 0; i < job->row_count; i++) {
		const struct import_row *row = &job->rows[i];
		struct store_profile *p = &job->scratch;
		memset(p, 0, sizeof(*p));
		mt_strlcpy(p->org_id, job->base.org_id, sizeof(p->org_id));
		p->kind = row->kind;
		mt_strlcpy(p->name, job->text.data + row->name, sizeof(p->name));
		for (size_t j = 0; j < row->email_count; j++)
			mt_strlcpy(p->emails[j], job->text.data + row->emails[j],
			           sizeof(p->emails[j]));
		p->email_count = row->email_count;
		int rc = store_profile_create(tx, p);
		if (rc != 0)
			return rc; /* all or nothing */
		memcpy(job->ids[i], p->id, MT_ID_MAX);
	}
	job->imported = job->row_count;
	return 0;
}

/* Backfill after a large import runs in the background, MT_BACKFILL_PROFILES_JOB profiles per
 * job, so the import's reply does not wait for it and other requests interleave. */

struct backfill_job {
	char org_id[MT_ID_MAX];
	char (*ids)[MT_ID_MAX];
	size_t count;
	size_t created;
};

static int backfill_run(struct store_tx *tx, void *arg)
{
	struct backfill_job *job = arg;
	for (size_t i = 0; i < job->count; i++) {
		size_t created = 0;
		int rc = matcher_backfill_profile(tx, job->org_id, job->ids[i], &created);
		if (rc != 0)
			return rc;
		job->created += created;
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

static void schedule_backfill(struct api *api, const char *org_id, char (*ids)[MT_ID_MAX],
                              size_t count)
{
	for (size_t start = 0; start < count; start += MT_BACKFILL_PROFILES_JOB) {
		size_t n = count - start < MT_BACKFILL_PROFILES_JOB ? count - start
		                                                    : MT_BACKFILL_PROFILES_JOB;
		struct backfill_job *job = calloc(1, sizeof(*job));
		if (job == NULL || (job->ids = malloc(n * sizeof(*job->ids))) == NULL) {
			free(job);
			mt_log(MT_LOG_ERROR, "profiles.backfill_skipped", MT_KV("org", org_id));
			return;
		}
		mt_strlcpy(job->org_id, org_id, sizeof(job->org_id));
		memcpy(job->ids, ids + start, n * sizeof(*job->ids));
		job->count = n;
		if (store_submit(api->store, STORE_WRITE, backfill_run, backfill_done, job) < 0) {
			free(job->ids);
			free(job);
			mt_log(MT_LOG_ERROR, "profiles.backfill_skipped", MT_KV("org", org_id));
			return;
		}
	}
}

static void import_done(void *arg, int result)
{
	struct import_job *job = arg;
	if (result == 0)
		schedule_backfill(job->base.api, job->base.org_id, job->ids, job->row_count);
	if (!api_reply_store_error(job->base.req, result, "profile")) {
		http_reply_json(job->base.req, 200,
		                json_pack("{s:I,s:O}", "imported", (json_int_t)job->imported,
		                          "rejected", job->rejected));
	}
	import_free(job);
}

static void reject(struct import_job *job, unsigned line, const char *error)
{
	json_array_append_new(job->rejected,
	                      json_pack("{s:i,s:s}", "line", (int)line, "error", error));
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

static bool header_ok(const struct csv_record *record)
{
	static const char *const expected[] = {"kind", "name", "emails"};
	if (record->field_count != 3)
		return false;
	for (size_t i = 0; i < 3; i++) {
		const char *s = record->fields[i];
		size_t len = record->lengths[i];
		trim(&s, &len);
		if (len != strlen(expected[i]) || strncasecmp(s, expected[i], len) != 0)
			return false;
	}
	return true;
}

/* Validates one data row; on success appends it to the job. Returns false with *error_r. */
static bool import_row(struct import_job *job, const struct csv_record *record,
                       const char **error_r, char *detail, size_t detail_size)
{
	if (record->field_count != 3) {
		*error_r = "expected 3 fields: kind,name,emails";
		return false;
	}
	struct import_row row;
	memset(&row, 0, sizeof(row));
	char kind[16];
	const char *s = record->fields[0];
	size_t len = record->lengths[0];
	trim(&s, &len);
	snprintf(kind, sizeof(kind), "%.*s", (int)(len < 15 ? len : 15), s);
	if (len >= sizeof(kind) || parse_kind(kind, &row.kind) < 0) {
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
	size_t mark = job->text.len;
	row.name = job->text.len;
	if (mt_buf_append(&job->text, s, len) < 0 || mt_buf_append(&job->text, "", 1) < 0)
		goto full;

	struct store_profile *p = &job->scratch;
	p->email_count = 0;
	const char *list = record->fields[2];
	size_t list_len = record->lengths[2];
	if (memchr(list, '\0', list_len) != NULL) {
		*error_r = "emails contain a NUL byte";
		goto rollback;
	}
	if (!mt_utf8_valid(list, list_len)) {
		*error_r = "emails are not valid UTF-8";
		goto rollback;
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
			goto rollback;
		}
		memcpy(input, piece, piece_len);
		input[piece_len] = '\0';
		const char *error;
		if (add_email(p, input, &error) < 0) {
			snprintf(detail, detail_size, "invalid address '%.100s': %s", input, error);
			*error_r = detail;
			goto rollback;
		}
	}
	if (p->email_count == 0) {
		*error_r = "no email address";
		goto rollback;
	}
	for (size_t i = 0; i < p->email_count; i++) {
		row.emails[i] = job->text.len;
		if (mt_buf_append(&job->text, p->emails[i], strlen(p->emails[i]) + 1) < 0)
			goto full;
	}
	row.email_count = p->email_count;
	if (job->row_count == job->row_cap) {
		size_t cap = job->row_cap ? job->row_cap * 2 : 256;
		struct import_row *rows = realloc(job->rows, cap * sizeof(*rows));
		if (rows == NULL)
			goto full;
		job->rows = rows;
		job->row_cap = cap;
	}
	job->rows[job->row_count++] = row;
	return true;
full:
	*error_r = "the import is too large";
rollback:
	job->text.len = mark;
	return false;
}

void api_profiles_import(struct http_request *req, void *app)
{
	struct import_job *job = api_job_new(app, req, sizeof(*job));
	if (job == NULL)
		return fail_oom(req);
	mt_buf_init(&job->text, MT_HTTP_IMPORT_MAX * 2);
	job->base.destroy = import_destroy;
	job->rejected = json_array();
	size_t len;
	const char *body = http_request_body(req, &len);
	if (body == NULL)
		len = 0;

	struct csv_parser parser;
	csv_parser_init(&parser);
	size_t offset = 0;
	bool header_seen = false;
	size_t rows = 0;
	for (;;) {
		struct csv_record record;
		size_t consumed = 0;
		const char *error;
		bool eof = offset == len;
		int r = csv_parse(&parser, body + offset, len - offset, eof, &consumed, &record,
		                  &error);
		offset += consumed;
		if (r < 0) {
			http_reply_errorf(req, 400, "input", "malformed CSV: %s", error);
			goto fail;
		}
		if (r == 0) {
			if (eof)
				break;
			continue;
		}
		if (!header_seen) {
			if (!header_ok(&record)) {
				http_reply_error(req, 400, "input",
				                 "line 1: the header must be kind,name,emails",
				                 NULL, NULL);
				goto fail;
			}
			header_seen = true;
			continue;
		}
		if (++rows > MT_CSV_ROWS_MAX) {
			http_reply_errorf(req, 413, "input", "more than %d rows", MT_CSV_ROWS_MAX);
			goto fail;
		}
		char detail[256];
		if (!import_row(job, &record, &error, detail, sizeof(detail)))
			reject(job, record.line, error);
	}
	csv_parser_deinit(&parser);
	if (!header_seen) {
		http_reply_error(req, 400, "input",
		                 "empty file: the header kind,name,emails is missing", NULL, NULL);
		import_free(job);
		return;
	}
	job->ids = calloc(job->row_count ? job->row_count : 1, sizeof(*job->ids));
	if (job->ids == NULL) {
		fail_oom(req);
		import_free(job);
		return;
	}
	api_job_submit(&job->base, STORE_WRITE_DURABLE, import_run, import_done);
	return;
fail:
	csv_parser_deinit(&parser);
	import_free(job);
}
