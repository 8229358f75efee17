#include "engine/imap_message.h"

#include "engine/matcher.h"
#include "lib/limits.h"
#include "lib/str.h"
#include "mime/message.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define STR_(x) #x
#define STR(x)  STR_(x)

/* Content-Type and Content-Transfer-Encoding come along so that src/mime reads the partial
 * text as the message's own structure (the first text part of a multipart). INTERNALDATE: a
 * full pass that fetches every UID passes over what is older than `since` by it
 * (imap_cursor_since_covers). */
const char imap_message_fetch_items[] =
    "(UID INTERNALDATE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (FROM TO CC BCC DATE MESSAGE-ID "
    "SUBJECT"
    " IN-REPLY-TO REFERENCES X-MAILTRAIL-ID MIME-VERSION CONTENT-TYPE"
    " CONTENT-TRANSFER-ENCODING)] BODY.PEEK[TEXT]<0." STR(MT_IMAP_TEXT_FETCH_BYTES) ">)";

#define NO_NAME ((size_t)-1)

/* An attachment as BODYSTRUCTURE lists it: its type already in lower case, its name raw (the
 * decoding is src/mime's, on the converting thread). Offsets into the batch's bytes. */
struct raw_attachment {
	size_t type, name;
	int64_t size;
};

struct entry {
	uint32_t uid;
	size_t raw, raw_len; /* the header block, its blank line, the text: one message */
	size_t att, att_count;
	bool structure; /* BODYSTRUCTURE was read: its list replaces what the text parse found */
};

struct imap_batch {
	struct entry entries[MT_IMAP_SYNC_CHUNK];
	size_t count;
	char *bytes;
	size_t len, cap;
	struct raw_attachment *atts;
	size_t att_count, att_cap;
	struct imap_body_part parts[MT_IMAP_SYNC_PARTS_MAX]; /* imap_batch_add's scratch */
};

struct imap_batch *imap_batch_new(void)
{
	return calloc(1, sizeof(struct imap_batch));
}

void imap_batch_free(struct imap_batch **batch)
{
	if (*batch == NULL)
		return;
	free((*batch)->bytes);
	free((*batch)->atts);
	free(*batch);
	*batch = NULL;
}

void imap_batch_clear(struct imap_batch *batch)
{
	batch->count = 0;
	batch->len = 0;
	batch->att_count = 0;
}

size_t imap_batch_count(const struct imap_batch *batch)
{
	return batch->count;
}

uint32_t imap_batch_uid(const struct imap_batch *batch, size_t i)
{
	return batch->entries[i].uid;
}

static const struct imap_value *section(const struct imap_fetch *f, const char *prefix)
{
	size_t n = strlen(prefix);
	for (size_t i = 0; i < f->section_count; i++) {
		const struct imap_fetch_section *s = &f->sections[i];
		if (s->section_len >= n && strncasecmp(s->section, prefix, n) == 0)
			return s->value;
	}
	return NULL;
}

/* Room for `more` bytes; the offsets handed out stay valid, pointers do not. */
static int reserve(struct imap_batch *b, size_t more)
{
	if (b->cap - b->len >= more)
		return 0;
	size_t cap = b->cap == 0 ? 64 * 1024 : b->cap;
	while (cap - b->len < more)
		cap *= 2;
	char *p = realloc(b->bytes, cap);
	if (p == NULL)
		return -1;
	b->bytes = p;
	b->cap = cap;
	return 0;
}

/* Copies a NUL-terminated string; its offset. */
static size_t put_str(struct imap_batch *b, const char *s)
{
	size_t n = strlen(s), at = b->len;
	memcpy(b->bytes + at, s, n + 1);
	b->len += n + 1;
	return at;
}

static int64_t decoded_size(const struct imap_body_part *p)
{
	if (p->encoding != NULL && strcasecmp(p->encoding, "BASE64") == 0)
		return (int64_t)p->size / 4 * 3;
	return (int64_t)p->size;
}

/* The attachments as BODYSTRUCTURE lists them. An odd or too large structure is not read: what
 * the text parse finds stays. */
static int add_structure(struct imap_batch *b, struct entry *e, const struct imap_fetch *f)
{
	e->att = b->att_count;
	e->att_count = 0;
	e->structure = false;
	if (!(f->has & IMAP_FETCH_BODYSTRUCTURE) || f->bodystructure == NULL)
		return 0;
	size_t count = 0;
	const char *error;
	if (imap_bodystructure_parse(f->bodystructure, b->parts, MT_IMAP_SYNC_PARTS_MAX, &count,
	                             &error) < 0)
		return 0;
	e->structure = true;
	size_t n = imap_bodystructure_attachments(b->parts, count);
	if (n > MT_ATTACHMENTS_MAX)
		n = MT_ATTACHMENTS_MAX;
	if (n == 0)
		return 0;
	if (b->att_cap - b->att_count < n) {
		size_t cap = b->att_cap == 0 ? 64 : b->att_cap;
		while (cap - b->att_count < n)
			cap *= 2;
		struct raw_attachment *atts = realloc(b->atts, cap * sizeof(*atts));
		if (atts == NULL)
			return -1;
		b->atts = atts;
		b->att_cap = cap;
	}
	for (size_t i = 0; i < count && e->att_count < n; i++) {
		const struct imap_body_part *p = &b->parts[i];
		if (!p->attachment)
			continue;
		char type[MT_CONTENT_TYPE_MAX + 1];
		snprintf(type, sizeof(type), "%s/%s", p->type != NULL ? p->type : "application",
		         p->subtype != NULL ? p->subtype : "octet-stream");
		for (char *c = type; *c != '\0'; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		const char *name = p->filename != NULL ? p->filename : p->name;
		if (reserve(b, strlen(type) + 1 + (name != NULL ? strlen(name) + 1 : 0)) < 0)
			return -1;
		struct raw_attachment *a = &b->atts[b->att_count++];
		a->type = put_str(b, type);
		a->name = name != NULL ? put_str(b, name) : NO_NAME;
		a->size = decoded_size(p);
		e->att_count++;
	}
	return 0;
}

int imap_batch_add(struct imap_batch *b, const struct imap_fetch *f, const char **error_r)
{
	const struct imap_value *header = section(f, "HEADER");
	const struct imap_value *text = section(f, "TEXT");
	if (header == NULL || header->str == NULL || header->len == 0) {
		*error_r = "no header fields in the answer";
		return 1;
	}
	if (b->count >= MT_IMAP_SYNC_CHUNK) {
		*error_r = "more answers than UIDs asked for";
		return 1;
	}
	size_t text_len = text != NULL && text->str != NULL ? text->len : 0;
	/* The header block as fetched ends with its blank line; the text follows it. */
	if (reserve(b, header->len + 2 + text_len + 1) < 0) {
		*error_r = "out of memory";
		return -1;
	}
	struct entry *e = &b->entries[b->count];
	size_t start = b->len;
	char *raw = b->bytes + start;
	memcpy(raw, header->str, header->len);
	size_t n = header->len;
	if (n < 4 || memcmp(raw + n - 4, "\r\n\r\n", 4) != 0) {
		memcpy(raw + n, "\r\n", 2);
		n += 2;
	}
	if (text_len > 0)
		memcpy(raw + n, text->str, text_len);
	n += text_len;
	raw[n] = '\0';
	b->len += n + 1;
	e->uid = f->uid;
	e->raw = start;
	e->raw_len = n;
	if (add_structure(b, e, f) < 0) {
		b->len = start;
		*error_r = "out of memory";
		return -1;
	}
	b->count++;
	return 0;
}

static int attachments_from_structure(const struct imap_batch *b, const struct entry *e,
                                      struct store_message *msg)
{
	if (!e->structure)
		return 0;
	struct store_attachment *atts =
	    e->att_count > 0 ? calloc(e->att_count, sizeof(*atts)) : NULL;
	if (e->att_count > 0 && atts == NULL)
		return -1;
	for (size_t i = 0; i < e->att_count; i++) {
		const struct raw_attachment *r = &b->atts[e->att + i];
		struct store_attachment *a = &atts[i];
		mime_decode_value(r->name != NO_NAME ? b->bytes + r->name : NULL, a->name,
		                  sizeof(a->name));
		mt_strlcpy(a->type, b->bytes + r->type, sizeof(a->type));
		a->size = r->size;
	}
	free((void *)msg->attachments);
	msg->attachments = atts;
	msg->attachment_count = e->att_count;
	return 0;
}

int imap_batch_convert(const struct imap_batch *b, size_t i, struct store_message *msg_r,
                       const char **error_r)
{
	memset(msg_r, 0, sizeof(*msg_r));
	const struct entry *e = &b->entries[i];
	struct mime_summary summary;
	if (mime_parse_fetched(b->bytes + e->raw, e->raw_len, &summary, error_r) < 0)
		return -1;
	int rc = matcher_message_from_summary(&summary, msg_r);
	mime_summary_free(&summary);
	if (rc < 0) {
		*error_r = "out of memory";
		return -1;
	}
	/* On the worker: what the store's writer thread would otherwise spend per message. */
	if (attachments_from_structure(b, e, msg_r) < 0 || matcher_message_prepare(msg_r) < 0) {
		matcher_message_free(msg_r);
		*error_r = "out of memory";
		return -1;
	}
	return 0;
}
