/* Typed view of an IMAP FETCH response (RFC 3501 §7.4.2, RFC 9051 §7.5.2), its ENVELOPE and
 * BODYSTRUCTURE.
 *
 *   msg-att         = "(" (msg-att-dynamic / msg-att-static) *(SP (...)) ")"
 *   msg-att-dynamic = "FLAGS" SP "(" [flag-fetch *(SP flag-fetch)] ")" /
 *                     "MODSEQ" SP "(" permsg-modsequence ")"           ; RFC 7162
 *   msg-att-static  = "ENVELOPE" SP envelope / "INTERNALDATE" SP date-time /
 *                     "RFC822.SIZE" SP number / "BODYSTRUCTURE" SP body / "UID" SP uniqueid /
 *                     "BODY" section ["<" number ">"] SP nstring / "RFC822" [".HEADER" /
 *                     ".TEXT"] SP nstring / "BINARY" section-binary SP (nstring / literal8)
 *   envelope        = "(" env-date SP env-subject SP env-from SP env-sender SP env-reply-to SP
 *                     env-to SP env-cc SP env-bcc SP env-in-reply-to SP env-message-id ")"
 *   env-from        = "(" 1*address ")" / nil          ; same for sender ... bcc
 *   address         = "(" addr-name SP addr-adl SP addr-mailbox SP addr-host ")"
 *   body            = "(" (body-type-1part / body-type-mpart) ")"
 *   body-type-1part = (body-type-basic / body-type-msg / body-type-text) [SP body-ext-1part]
 *   body-type-basic = media-basic SP body-fields
 *   body-type-msg   = media-message SP body-fields SP envelope SP body SP body-fld-lines
 *   body-type-text  = media-text SP body-fields SP body-fld-lines
 *   body-fields     = body-fld-param SP body-fld-id SP body-fld-desc SP body-fld-enc SP
 *                     body-fld-octets
 *   body-ext-1part  = body-fld-md5 [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc ...]]]
 *   body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
 *   body-ext-mpart  = body-fld-param [SP body-fld-dsp [SP body-fld-lang ...]]
 *   body-fld-dsp    = "(" string SP body-fld-param ")" / nil
 *   body-fld-param  = "(" string SP string *(SP string SP string) ")" / nil
 *
 * Functions return 0, or -1 with *error_r set (static text). Strings and values in the results
 * point into the response and share its lifetime (imap_parse.h). Header strings (subject,
 * names, filenames) are as the server sent them: RFC 2047 / 2231 decoding is src/mime's. */
#ifndef MT_PROTO_IMAP_FETCH_H
#define MT_PROTO_IMAP_FETCH_H

#include "proto/imap_parse.h"

#include <stddef.h>
#include <stdint.h>

enum imap_fetch_item {
	IMAP_FETCH_UID = 1 << 0,
	IMAP_FETCH_FLAGS = 1 << 1,
	IMAP_FETCH_INTERNALDATE = 1 << 2,
	IMAP_FETCH_SIZE = 1 << 3,
	IMAP_FETCH_MODSEQ = 1 << 4,
	IMAP_FETCH_ENVELOPE = 1 << 5,
	IMAP_FETCH_BODYSTRUCTURE = 1 << 6,
};

/* BODY[section]<origin>, BINARY[section], RFC822, RFC822.HEADER, RFC822.TEXT. */
struct imap_fetch_section {
	const char *item;    /* as sent: "BODY[HEADER.FIELDS (FROM TO)]" */
	const char *section; /* within item: "HEADER.FIELDS (FROM TO)", "" for BODY[] and RFC822 */
	size_t section_len;
	int has_origin;
	uint32_t origin;                /* <origin>: where a partial fetch began */
	const struct imap_value *value; /* string, kept or streamed literal, or NIL */
};

struct imap_fetch {
	uint32_t seq;
	unsigned has; /* enum imap_fetch_item bits */
	uint32_t uid;
	const struct imap_value *flags; /* first flag (atoms), NULL when none */
	size_t flag_count;
	const char *internaldate; /* "17-Jul-1996 02:44:25 -0700" */
	uint32_t size;            /* RFC822.SIZE */
	uint64_t modseq;
	const struct imap_value *envelope;      /* for imap_envelope_parse() */
	const struct imap_value *bodystructure; /* for imap_bodystructure_parse() (or BODY) */
	size_t section_count;
	struct imap_fetch_section sections[MT_IMAP_FETCH_SECTIONS_MAX];
};

/* Items the struct does not name (X-GM-LABELS...) are skipped. */
int imap_fetch_parse(const struct imap_response *resp, struct imap_fetch *fetch_r,
                     const char **error_r);

struct imap_address {
	const char *name, *adl, *mailbox, *host; /* NULL for NIL */
};

/* Address lists: the first address (a 4-item list) or NULL for NIL; linked by ->next. All are
 * checked by imap_envelope_parse(), so imap_address_get() cannot fail on them after it. A NIL
 * host marks RFC 5322 group syntax: a group's name in `mailbox` starts it, NIL mailbox ends it. */
struct imap_envelope {
	const char *date, *subject, *in_reply_to, *message_id; /* NULL for NIL */
	const struct imap_value *from, *sender, *reply_to, *to, *cc, *bcc;
};

int imap_envelope_parse(const struct imap_value *envelope, struct imap_envelope *env_r,
                        const char **error_r);
int imap_address_get(const struct imap_value *address, struct imap_address *addr_r,
                     const char **error_r);

/* One part of a BODYSTRUCTURE, multiparts included, in depth-first order. */
struct imap_body_part {
	char path[64];       /* section number: "1", "2.1"; "" for the top multipart */
	unsigned depth;      /* 0 for the top */
	const char *type;    /* "TEXT", "multipart" (as sent; compare case-insensitively) */
	const char *subtype; /* "PLAIN", "MIXED" */
	const char *charset; /* parameter values, NULL when absent */
	const char *name;
	const char *encoding;    /* "BASE64"; NULL for multiparts */
	const char *disposition; /* "attachment", "inline"; NULL when absent */
	const char *filename;    /* disposition parameter filename (or filename*) */
	uint32_t size;           /* body-fld-octets, 0 for multiparts */
	int multipart;
	int attachment; /* not a multipart, and an "attachment" disposition, a filename or a name */
};

/* Fills at most `max` parts (more is -1); message/rfc822 parts are listed, not entered: a
 * forwarded message counts as one attachment. */
int imap_bodystructure_parse(const struct imap_value *body, struct imap_body_part *parts,
                             size_t max, size_t *count_r, const char **error_r);

/* Attachments among `count` parts. */
size_t imap_bodystructure_attachments(const struct imap_body_part *parts, size_t count);

#endif
