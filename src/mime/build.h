/* Building an outgoing message (POST /v1/messages, campaigns, confirmation and notification
 * mail) with GMime: RFC 5322 headers with RFC 2047 encoded words for non-ASCII display names and
 * subjects, RFC 2231 attachment file names, text and HTML as multipart/alternative, attachments
 * as multipart/mixed, our Message-ID and X-Mailtrail-Id, Date, Reply-To, and extra headers
 * (List-Unsubscribe, Sender...).
 *
 * The result is always 7-bit clean (quoted-printable text, base64 attachments), with CRLF line
 * ends and lines under 998 octets: it is built once at enqueue, before we know whether the
 * server that will carry it offers 8BITMIME, and must pass through any of them.
 *
 * Ownership: inputs are borrowed; the output buffer is malloc'd and the caller frees it. */
#ifndef MT_MIME_BUILD_H
#define MT_MIME_BUILD_H

#include "mime/message.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mime_build_attachment {
	const char *filename;     /* UTF-8; encoded per RFC 2231 when not ASCII */
	const char *content_type; /* "application/pdf"; NULL = application/octet-stream */
	const unsigned char *data;
	size_t len;
};

struct mime_build_header {
	const char *name;  /* must be a valid field name; never From/To/Cc/Bcc/Subject/Date/IDs */
	const char *value; /* ASCII, no CR/LF (checked) */
};

struct mime_build_input {
	/* Builds the message without From, Sender, Reply-To, Message-ID and X-Mailtrail-Id (all
	 * NULL then): the outbox stores this rest and puts mime_build_head()'s fields before it at
	 * delivery, when the route that decides them is known. */
	bool without_head;
	const struct mime_mailbox *from;
	const struct mime_mailbox *sender;   /* optional Sender: (relay route) */
	const struct mime_mailbox *reply_to; /* optional */
	const struct mime_mailbox *to, *cc;  /* Bcc never appears in the headers */
	size_t to_count, cc_count;
	const char *subject; /* UTF-8 */
	const char *text;    /* UTF-8 plain text; NULL if none */
	const char *html;    /* UTF-8 HTML; NULL if none (at least one of text/html) */
	const struct mime_build_attachment *attachments;
	size_t attachment_count;
	const char *message_id;   /* without <> */
	const char *mailtrail_id; /* X-Mailtrail-Id value */
	int64_t date;             /* unix seconds */
	const struct mime_build_header *headers;
	size_t header_count;
};

/* 0 with *out_r / *len_r, or -1 with *error_r (invalid input: CR/LF in a name or header value, a
 * bad header name, no text and no HTML). */
int mime_build_message(const struct mime_build_input *input, char **out_r, size_t *len_r,
                       const char **error_r);
/* The same, always through GMime (mime_build_message writes the commonest outbox message itself —
 * one plain ASCII text or HTML part, plain recipients and subject — byte for byte what GMime
 * would: the unit tests hold one against the other). */
int mime_build_message_gmime(const struct mime_build_input *input, char **out_r, size_t *len_r,
                             const char **error_r);
/* That common case alone: true with the message, false when the input is not of its shape. */
bool mime_build_message_plain(const struct mime_build_input *input, char **out_r, size_t *len_r);

/* The header fields a message built `without_head` lacks, as they would be in the whole
 * message: From, Sender (optional), Reply-To (optional), Message-ID, X-Mailtrail-Id. */
struct mime_build_head {
	const struct mime_mailbox *from;
	const struct mime_mailbox *sender;
	const struct mime_mailbox *reply_to;
	const char *message_id; /* without <> */
	const char *mailtrail_id;
};
/* CRLF-terminated field lines, 7-bit (RFC 2047 for non-ASCII names), malloc'd into *out_r. 0, or
 * -1 with *error_r (an invalid mailbox or id). */
int mime_build_head_fields(const struct mime_build_head *head, char **out_r, size_t *len_r,
                           const char **error_r);
/* The same, always through GMime (mime_build_head_fields writes plain ASCII heads itself, byte
 * for byte what GMime would: the unit tests hold one against the other). */
int mime_build_head_fields_gmime(const struct mime_build_head *head, char **out_r, size_t *len_r,
                                 const char **error_r);

/* What mime_parse_message() would find in the message built from `input` — its snippet and its
 * attachments (name, type, size) — computed from the input, without building and parsing it.
 * *attachments_r is malloc'd (free() it, also on error); -1 when out of memory. */
int mime_build_summary(const struct mime_build_input *input, char snippet[MT_SNIPPET_BYTES + 1],
                       struct mime_attachment **attachments_r, size_t *count_r);

#endif
