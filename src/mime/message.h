/* Parsing a message into what the activity log needs (DESIGN.md §1 Activity, Message records):
 * identity, participants, subject, date, snippet, attachments. The only GMime user for reading
 * mail. Input is raw RFC 5322 bytes, or — as IMAP gives them — a header block plus the text of
 * one body part.
 *
 * Addresses are normalised as mime_address_normalize() does (lower case, IDN domain in ASCII);
 * entries that are not addresses are skipped, never guessed. GMime's quirks (DESIGN.md §4) are
 * handled: a `;`-separated list keeps every address, an invalid entry does not hide the valid
 * ones after it, a bare "john" is not an address. Every count and size is capped (limits.h).
 *
 * Ownership: mime_summary_free() releases what mime_parse_* allocated into the summary. */
#ifndef MT_MIME_MESSAGE_H
#define MT_MIME_MESSAGE_H

#include "lib/limits.h"

#include <stddef.h>
#include <stdint.h>

struct mime_mailbox {
	char address[MT_ADDRESS_MAX + 1]; /* normalised */
	char name[MT_NAME_MAX + 1];       /* display name, decoded to UTF-8; "" if none */
};

struct mime_attachment {
	char name[MT_ATTACHMENT_NAME_MAX + 1]; /* decoded (RFC 2047 / RFC 2231), "" if none */
	char type[MT_CONTENT_TYPE_MAX + 1];    /* "application/pdf", lower case */
	int64_t size;                          /* decoded bytes (estimated from the encoded size
	                                          when only headers were fetched) */
};

struct mime_summary {
	char message_id[MT_MESSAGE_ID_MAX + 1];   /* trimmed, without <>; "" if none */
	char mailtrail_id[MT_MESSAGE_ID_MAX + 1]; /* X-Mailtrail-Id, trimmed; "" if none */
	int64_t date;                             /* Date as UTC seconds; 0 if missing/invalid */
	struct mime_mailbox from;                 /* the first From mailbox; address "" if none */
	struct mime_mailbox *to, *cc, *bcc;
	size_t to_count, cc_count, bcc_count;
	char subject[MT_SUBJECT_MAX + 1]; /* decoded to UTF-8, unfolded */
	char in_reply_to[MT_MESSAGE_ID_MAX + 1];
	char references[MT_REFERENCES_MAX][MT_MESSAGE_ID_MAX + 1];
	size_t reference_count;
	/* The first MT_SNIPPET_CHARS characters of the text (text/plain preferred, else the
	 * text/html with tags, scripts and styles stripped and entities decoded), whitespace runs
	 * collapsed to one space, valid UTF-8. */
	char snippet[MT_SNIPPET_BYTES + 1];
	struct mime_attachment *attachments;
	size_t attachment_count;
};

/* Parses a whole message. 0, or -1 with *error_r when the bytes are not a message at all (no
 * header block, or none of From/To/Cc/Date/Message-ID/Subject present). A message with some
 * broken parts still parses: what can be read is kept. */
int mime_parse_message(const char *data, size_t len, struct mime_summary *summary_r,
                       const char **error_r);
/* The same from a header block that holds only the fields a reader asked a server for (IMAP's
 * BODY.PEEK[HEADER.FIELDS (...)]), its empty line and the start of the text: the summary
 * mime_parse_message gives for these bytes, without GMime's object per header field (the
 * block is split here; only the body's Content-* fields go to GMime with the text). */
int mime_parse_fetched(const char *data, size_t len, struct mime_summary *summary_r,
                       const char **error_r);
/* The same from a header block and the raw text of one part with its content type and
 * transfer encoding (as an IMAP client fetches BODY.PEEK[HEADER] and a BODY.PEEK[n]). */
int mime_parse_headers(const char *headers, size_t headers_len, const char *text, size_t text_len,
                       const char *text_content_type, const char *text_transfer_encoding,
                       struct mime_summary *summary_r, const char **error_r);
void mime_summary_free(struct mime_summary *summary);

/* A header or parameter value as a server reported it (an IMAP BODYSTRUCTURE filename):
 * RFC 2047 encoded-words and an RFC 2231 extended value (charset'lang'%XX) decoded to UTF-8,
 * control characters dropped, at most size-1 bytes into `out`. */
void mime_decode_value(const char *value, char *out, size_t size);

/* The ids of an In-Reply-To or References value (raw, possibly folded), in order, normalised as
 * Message-IDs are (trimmed, without <>): at most `max` of them, from the first
 * MT_REFERENCES_BYTES_MAX bytes. Without any '<', whitespace- or comma-separated words with an
 * '@' are the ids. Returns the count. Pure. */
size_t mime_parse_msg_ids(const char *value, size_t len, char (*out)[MT_MESSAGE_ID_MAX + 1],
                          size_t max);

/* The root of the message's thread (docs/api.md "Threads"): the first id of References (the
 * conversation's first message, which clients keep when they shorten the list), else
 * In-Reply-To, else the message's own Message-ID; "" when it has none of them. Depends on the
 * message alone, so every copy of every message of a conversation gives the same root whatever
 * order they arrive in. Pure. */
const char *mime_thread_root(const struct mime_summary *summary);

/* The identity aliases of a message (DESIGN.md §1): "mid:<Message-ID>" when present,
 * "mt:<X-Mailtrail-Id>" when present; with neither, one "sha:<hex>" — SHA-256 over the Date in
 * UTC seconds, the From address, the sorted To addresses and the decoded Subject, each followed
 * by a NUL. Returns the count (1 or 2). Pure. */
size_t mime_message_aliases(const struct mime_summary *summary,
                            char aliases[MT_MESSAGE_ALIASES_MAX][MT_MESSAGE_KEY_MAX]);

#endif
