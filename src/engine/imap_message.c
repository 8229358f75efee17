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
 * text as the message's own structure (the first text part of a multipart). */
const char imap_message_fetch_items[] =
    "(UID BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (FROM TO CC BCC DATE MESSAGE-ID SUBJECT"
    " IN-REPLY-TO REFERENCES X-MAILTRAIL-ID MIME-VERSION CONTENT-TYPE"
    " CONTENT-TRANSFER-ENCODING)] BODY.PEEK[TEXT]<0." STR(MT_IMAP_TEXT_FETCH_BYTES) ">)";

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

static int64_t decoded_size(const struct imap_body_part *p)
{
	if (p->encoding != NULL && strcasecmp(p->encoding, "BASE64") == 0)
		return (int64_t)p->size / 4 * 3;
	return (int64_t)p->size;
}

/* The attachments as BODYSTRUCTURE lists them; keeps the parsed ones when it is absent. */
static int attachments_from_structure(const struct imap_fetch *f, struct store_message *msg)
{
	if (!(f->has & IMAP_FETCH_BODYSTRUCTURE) || f->bodystructure == NULL)
		return 0;
	struct imap_body_part *parts = calloc(MT_IMAP_SYNC_PARTS_MAX, sizeof(*parts));
	if (parts == NULL)
		return -1;
	size_t count = 0;
	const char *error;
	if (imap_bodystructure_parse(f->bodystructure, parts, MT_IMAP_SYNC_PARTS_MAX, &count,
	                             &error) < 0) {
		free(parts);
		return 0; /* too many parts or odd: what the text parse found stays */
	}
	size_t n = imap_bodystructure_attachments(parts, count);
	if (n > MT_ATTACHMENTS_MAX)
		n = MT_ATTACHMENTS_MAX;
	struct store_attachment *atts = n > 0 ? calloc(n, sizeof(*atts)) : NULL;
	if (n > 0 && atts == NULL) {
		free(parts);
		return -1;
	}
	size_t k = 0;
	for (size_t i = 0; i < count && k < n; i++) {
		const struct imap_body_part *p = &parts[i];
		if (!p->attachment)
			continue;
		struct store_attachment *a = &atts[k++];
		mime_decode_value(p->filename != NULL ? p->filename : p->name, a->name,
		                  sizeof(a->name));
		char type[MT_CONTENT_TYPE_MAX + 1];
		snprintf(type, sizeof(type), "%s/%s", p->type != NULL ? p->type : "application",
		         p->subtype != NULL ? p->subtype : "octet-stream");
		for (char *c = type; *c != '\0'; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		mt_strlcpy(a->type, type, sizeof(a->type));
		a->size = decoded_size(p);
	}
	free(parts);
	free((void *)msg->attachments);
	msg->attachments = atts;
	msg->attachment_count = k;
	return 0;
}

int imap_message_convert(const struct imap_fetch *f, struct store_message *msg_r,
                         const char **error_r)
{
	memset(msg_r, 0, sizeof(*msg_r));
	const struct imap_value *header = section(f, "HEADER");
	const struct imap_value *text = section(f, "TEXT");
	if (header == NULL || header->str == NULL || header->len == 0) {
		*error_r = "no header fields in the answer";
		return -1;
	}
	size_t text_len = text != NULL && text->str != NULL ? text->len : 0;
	/* The header block as fetched ends with its blank line; the text follows it. */
	size_t len = header->len + 2 + text_len;
	char *raw = malloc(len + 1);
	if (raw == NULL) {
		*error_r = "out of memory";
		return -1;
	}
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
	struct mime_summary summary;
	int rc = mime_parse_message(raw, n, &summary, error_r);
	free(raw);
	if (rc < 0)
		return -1;
	rc = matcher_message_from_summary(&summary, msg_r);
	mime_summary_free(&summary);
	if (rc < 0) {
		*error_r = "out of memory";
		return -1;
	}
	if (attachments_from_structure(f, msg_r) < 0) {
		matcher_message_free(msg_r);
		*error_r = "out of memory";
		return -1;
	}
	return 0;
}
