#include "mime/build.h"

#include "lib/buf.h"
#include "lib/str.h"

#include "lib/limits.h"
#include "mime/address.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <gmime/gmime.h>
#pragma GCC diagnostic pop

/* RFC 5322 §2.1.1: a line is at most 998 octets without its CRLF. */
#define LINE_MAX_OCTETS 998
/* RFC 5322 §2.1.1 SHOULD: the length we fold our own header lines to when spaces allow. */
#define FOLD_OCTETS 78

/* Headers the builder writes from the input fields or that define the MIME structure: letting
 * an extra header set one would give a message two From fields or a Content-Type that does not
 * match its body. */
static const char *const structural_headers[] = {
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Bcc",
    "Subject",
    "Date",
    "Message-ID",
    "X-Mailtrail-Id",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
};

static bool is_structural(const char *name)
{
	for (size_t i = 0; i < sizeof(structural_headers) / sizeof(structural_headers[0]); i++) {
		if (strcasecmp(name, structural_headers[i]) == 0)
			return true;
	}
	/* Content-ID, Content-Description, Content-Language...: MIME part headers that GMime
	 * would merge with those of the top-level body part. */
	return strncasecmp(name, "Content-", 8) == 0;
}

/* RFC 5322 §3.6.8: field-name = 1*ftext; ftext = %d33-57 / %d59-126. */
static bool valid_field_name(const char *name)
{
	if (name == NULL || name[0] == '\0')
		return false;
	for (const char *p = name; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c < 33 || c > 126 || c == ':')
			return false;
	}
	return true;
}

/* An ASCII header value: printable characters, space and tab. */
static int check_ascii_value(const char *value, const char **error_r)
{
	for (const char *p = value; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '\r' || c == '\n') {
			*error_r = "header value contains a line break";
			return -1;
		}
		if ((c < 0x20 && c != '\t') || c >= 0x7f) {
			*error_r = "header value is not printable ASCII";
			return -1;
		}
	}
	return 0;
}

/* UTF-8 text for a header (display name, subject, file name): encoded words can carry any
 * character except the line break that would end the field. */
static int check_utf8_line(const char *s, size_t max, const char *what_too_long,
                           const char **error_r)
{
	size_t len = strlen(s);
	if (len > max) {
		*error_r = what_too_long;
		return -1;
	}
	if (strpbrk(s, "\r\n") != NULL) {
		*error_r = "header text contains a line break";
		return -1;
	}
	if (!g_utf8_validate(s, (gssize)len, NULL)) {
		*error_r = "header text is not UTF-8";
		return -1;
	}
	return 0;
}

/* The raw value of "Name: value", folded at spaces towards 78 octets. Raw because GMime's
 * default header formatter turns any word longer than a line into RFC 2047 encoded words, which
 * would break the URLs of List-Unsubscribe and any structured value; a word that cannot fit in
 * 998 octets is refused instead. */
static int fold_raw_value(const char *name, const char *value, GString *out, const char **error_r)
{
	size_t col = strlen(name) + 1; /* "Name:" */
	bool line_has_text = false;
	g_string_assign(out, "");
	if (value[0] != ' ' && value[0] != '\t') {
		g_string_append_c(out, ' ');
		col++;
	}
	for (size_t i = 0; value[i] != '\0';) {
		size_t j = i;
		while (value[j] == ' ' || value[j] == '\t')
			j++;
		while (value[j] != '\0' && value[j] != ' ' && value[j] != '\t')
			j++;
		size_t seg = j - i;
		bool starts_blank = value[i] == ' ' || value[i] == '\t';
		if (starts_blank && line_has_text && col + seg > FOLD_OCTETS) {
			g_string_append_c(out, '\n');
			col = 0;
			line_has_text = false;
		}
		g_string_append_len(out, value + i, (gssize)seg);
		col += seg;
		if (col > LINE_MAX_OCTETS) {
			*error_r = "header line too long";
			return -1;
		}
		for (size_t k = i; k < j; k++) {
			if (value[k] != ' ' && value[k] != '\t')
				line_has_text = true;
		}
		i = j;
	}
	g_string_append_c(out, '\n');
	return 0;
}

static int set_raw_header(GMimeObject *object, const char *name, const char *value,
                          const char **error_r)
{
	GString *raw = g_string_new(NULL);
	if (fold_raw_value(name, value, raw, error_r) < 0) {
		g_string_free(raw, TRUE);
		return -1;
	}
	/* appended, not set: extra headers may repeat (two Comments fields, say) */
	GMimeHeaderList *list = g_mime_object_get_header_list(object);
	g_mime_header_list_append(list, name, value, NULL);
	GMimeHeader *header =
	    g_mime_header_list_get_header_at(list, g_mime_header_list_get_count(list) - 1);
	g_mime_header_set_raw_value(header, raw->str);
	g_string_free(raw, TRUE);
	return 0;
}

/* Message-ID (RFC 5322 §3.6.4 msg-id, without the brackets): one token of printable ASCII with
 * an '@', short enough to stay on the "Message-Id: <...>" line. */
static int check_message_id(const char *id, const char **error_r)
{
	size_t len = id != NULL ? strlen(id) : 0;
	if (len == 0) {
		*error_r = "no Message-ID";
		return -1;
	}
	if (len > LINE_MAX_OCTETS - strlen("Message-Id: <>")) {
		*error_r = "Message-ID too long";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)id[i];
		if (c <= 0x20 || c >= 0x7f || strchr("<>()\"\\,;:[]", c) != NULL) {
			*error_r = "invalid Message-ID";
			return -1;
		}
	}
	if (strchr(id, '@') == NULL) {
		*error_r = "invalid Message-ID";
		return -1;
	}
	return 0;
}

static int add_mailbox(GMimeMessage *message, GMimeAddressType type,
                       const struct mime_mailbox *mailbox, const char **error_r)
{
	char address[MT_ADDRESS_MAX + 1];
	if (memchr(mailbox->address, '\0', sizeof(mailbox->address)) == NULL ||
	    memchr(mailbox->name, '\0', sizeof(mailbox->name)) == NULL) {
		*error_r = "mailbox not terminated";
		return -1;
	}
	if (mime_address_normalize(mailbox->address, address, error_r) < 0)
		return -1;
	for (const char *p = address; *p != '\0'; p++) {
		/* an SMTPUTF8 local part cannot be written in a 7-bit message */
		if ((unsigned char)*p >= 0x80) {
			*error_r = "address is not ASCII";
			return -1;
		}
	}
	if (check_utf8_line(mailbox->name, MT_NAME_MAX, "display name too long", error_r) < 0)
		return -1;
	InternetAddress *ia =
	    internet_address_mailbox_new(mailbox->name[0] != '\0' ? mailbox->name : NULL, address);
	/* GMime picks the smallest charset that fits (ISO-8859-1 for "Jürgen"); UTF-8 is what
	 * every reader decodes and what the rest of the message uses. */
	internet_address_set_charset(ia, "UTF-8");
	internet_address_list_add(g_mime_message_get_addresses(message, type), ia);
	g_object_unref(ia);
	return 0;
}

/* CRLF and lone CR become LF: GMime's DOS newline filter turns every LF into CRLF, and a CR it
 * passes through would end up as "=0D" in quoted-printable or as a bare CR in 7bit. */
static GBytes *normalize_newlines(const char *text, size_t len)
{
	char *out = g_malloc(len + 1);
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (text[i] == '\r') {
			out[n++] = '\n';
			if (i + 1 < len && text[i + 1] == '\n')
				i++;
		} else {
			out[n++] = text[i];
		}
	}
	return g_bytes_new_take(out, n);
}

/* 7bit when the text would pass as it is (ASCII, lines within 998 octets), quoted-printable
 * otherwise: QP keeps mostly-ASCII text readable and its lines short. */
static GMimeContentEncoding text_encoding(const unsigned char *s, size_t len)
{
	size_t line = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] >= 0x80 || s[i] == '\0')
			return GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE;
		if (s[i] == '\n') {
			line = 0;
		} else if (++line > LINE_MAX_OCTETS) {
			return GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE;
		}
	}
	return GMIME_CONTENT_ENCODING_7BIT;
}

static void set_content(GMimePart *part, const void *data, size_t len)
{
	GMimeStream *stream = g_mime_stream_mem_new_with_buffer(data, len);
	GMimeDataWrapper *wrapper =
	    g_mime_data_wrapper_new_with_stream(stream, GMIME_CONTENT_ENCODING_DEFAULT);
	g_mime_part_set_content(part, wrapper);
	g_object_unref(wrapper);
	g_object_unref(stream);
}

static GMimeObject *text_part(const char *subtype, const char *text, const char **error_r)
{
	size_t len = strlen(text);
	if (!g_utf8_validate(text, (gssize)len, NULL)) {
		*error_r = "body is not UTF-8";
		return NULL;
	}
	GBytes *bytes = normalize_newlines(text, len);
	gsize n = 0;
	const unsigned char *data = g_bytes_get_data(bytes, &n);
	GMimeTextPart *part = g_mime_text_part_new_with_subtype(subtype);
	g_mime_text_part_set_charset(part, "utf-8");
	set_content(GMIME_PART(part), data, n);
	g_mime_part_set_content_encoding(GMIME_PART(part), text_encoding(data, n));
	g_bytes_unref(bytes);
	return GMIME_OBJECT(part);
}

/* RFC 2045 §5.1 restricted-name, which is what a registered type/subtype looks like. */
static bool valid_type_token(const char *s, size_t len)
{
	if (len == 0 || len > 127)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		bool alnum =
		    (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum && (i == 0 || strchr("!#$&-^_.+", c) == NULL))
			return false;
	}
	return true;
}

static GMimeObject *attachment_part(const struct mime_build_attachment *a, const char **error_r)
{
	const char *type = a->content_type != NULL ? a->content_type : "application/octet-stream";
	const char *slash = strchr(type, '/');
	if (strlen(type) > MT_CONTENT_TYPE_MAX || slash == NULL ||
	    !valid_type_token(type, (size_t)(slash - type)) ||
	    !valid_type_token(slash + 1, strlen(slash + 1))) {
		*error_r = "invalid attachment content type";
		return NULL;
	}
	/* RFC 2046 §5: composite types may not be base64-encoded; a message to attach would
	 * have to be parsed and nested, which no caller needs. */
	if (g_ascii_strncasecmp(type, "multipart/", 10) == 0 ||
	    g_ascii_strncasecmp(type, "message/", 8) == 0) {
		*error_r = "attachment content type cannot be multipart or message";
		return NULL;
	}
	if (a->data == NULL && a->len > 0) {
		*error_r = "attachment has no data";
		return NULL;
	}
	if (a->filename != NULL && (check_utf8_line(a->filename, MT_ATTACHMENT_NAME_MAX,
	                                            "attachment name too long", error_r) < 0))
		return NULL;
	char *media = g_ascii_strdown(type, (gssize)(slash - type));
	char *sub = g_ascii_strdown(slash + 1, -1);
	GMimePart *part = g_mime_part_new_with_type(media, sub);
	g_free(media);
	g_free(sub);
	set_content(part, a->data != NULL ? a->data : (const unsigned char *)"", a->len);
	g_mime_part_set_content_encoding(part, GMIME_CONTENT_ENCODING_BASE64);
	g_mime_object_set_disposition(GMIME_OBJECT(part), GMIME_DISPOSITION_ATTACHMENT);
	if (a->filename != NULL && a->filename[0] != '\0') {
		g_mime_part_set_filename(part, a->filename);
		/* same reason as for display names: UTF-8 rather than ISO-8859-15 */
		GMimeParamList *lists[] = {
		    g_mime_content_disposition_get_parameters(
		        g_mime_object_get_content_disposition(GMIME_OBJECT(part))),
		    g_mime_content_type_get_parameters(
		        g_mime_object_get_content_type(GMIME_OBJECT(part))),
		};
		for (size_t i = 0; i < 2; i++) {
			for (int k = 0; k < g_mime_param_list_length(lists[i]); k++) {
				GMimeParam *param = g_mime_param_list_get_parameter_at(lists[i], k);
				g_mime_param_set_charset(param, "UTF-8");
				g_mime_param_set_encoding_method(
				    param, GMIME_PARAM_ENCODING_METHOD_RFC2231);
			}
		}
	}
	return GMIME_OBJECT(part);
}

static GMimeObject *body_part(const struct mime_build_input *in, const char **error_r)
{
	GMimeObject *text = NULL, *html = NULL;
	if (in->text != NULL && (text = text_part("plain", in->text, error_r)) == NULL)
		return NULL;
	if (in->html != NULL && (html = text_part("html", in->html, error_r)) == NULL) {
		if (text != NULL)
			g_object_unref(text);
		return NULL;
	}
	if (text == NULL || html == NULL)
		return text != NULL ? text : html;
	/* RFC 2046 §5.1.4: the preferred, richest alternative last */
	GMimeMultipart *alt = g_mime_multipart_new_with_subtype("alternative");
	g_mime_multipart_add(alt, text);
	g_mime_multipart_add(alt, html);
	g_object_unref(text);
	g_object_unref(html);
	return GMIME_OBJECT(alt);
}

static int check_ids(const char *message_id, const char *mailtrail_id, const char **error_r)
{
	if (check_message_id(message_id, error_r) < 0)
		return -1;
	if (mailtrail_id == NULL || mailtrail_id[0] == '\0') {
		*error_r = "no X-Mailtrail-Id";
		return -1;
	}
	return check_ascii_value(mailtrail_id, error_r);
}

/* From, Sender, Reply-To, Message-ID and X-Mailtrail-Id of `message`, from either input. */
static int set_head(GMimeMessage *message, const struct mime_mailbox *from,
                    const struct mime_mailbox *sender, const struct mime_mailbox *reply_to,
                    const char *message_id, const char *mailtrail_id, const char **error_r)
{
	if (add_mailbox(message, GMIME_ADDRESS_TYPE_FROM, from, error_r) < 0)
		return -1;
	if (sender != NULL && add_mailbox(message, GMIME_ADDRESS_TYPE_SENDER, sender, error_r) < 0)
		return -1;
	if (reply_to != NULL &&
	    add_mailbox(message, GMIME_ADDRESS_TYPE_REPLY_TO, reply_to, error_r) < 0)
		return -1;
	g_mime_message_set_message_id(message, message_id);
	return set_raw_header(GMIME_OBJECT(message), "X-Mailtrail-Id", mailtrail_id, error_r);
}

static int check_input(const struct mime_build_input *in, const char **error_r)
{
	if (in->without_head) {
		if (in->from != NULL || in->sender != NULL || in->reply_to != NULL ||
		    in->message_id != NULL || in->mailtrail_id != NULL) {
			*error_r = "the head's fields are given apart";
			return -1;
		}
	} else if (in->from == NULL) {
		*error_r = "no From";
		return -1;
	}
	if (in->text == NULL && in->html == NULL) {
		*error_r = "no text and no HTML";
		return -1;
	}
	if ((in->to_count > 0 && in->to == NULL) || (in->cc_count > 0 && in->cc == NULL) ||
	    (in->attachment_count > 0 && in->attachments == NULL) ||
	    (in->header_count > 0 && in->headers == NULL)) {
		*error_r = "invalid input";
		return -1;
	}
	if (in->to_count > MT_MESSAGE_PARTICIPANTS_MAX ||
	    in->cc_count > MT_MESSAGE_PARTICIPANTS_MAX - in->to_count) {
		*error_r = "too many recipients";
		return -1;
	}
	if (in->attachment_count > MT_ATTACHMENTS_MAX) {
		*error_r = "too many attachments";
		return -1;
	}
	/* refuse before encoding: base64 only makes it bigger */
	size_t total = 0;
	size_t parts[2] = {in->text != NULL ? strlen(in->text) : 0,
	                   in->html != NULL ? strlen(in->html) : 0};
	for (size_t i = 0; i < 2; i++)
		total += parts[i];
	for (size_t i = 0; i < in->attachment_count && total <= MT_SMTP_MESSAGE_MAX; i++) {
		if (in->attachments[i].len > MT_SMTP_MESSAGE_MAX)
			total = (size_t)MT_SMTP_MESSAGE_MAX + 1;
		else
			total += in->attachments[i].len;
	}
	if (total > MT_SMTP_MESSAGE_MAX) {
		*error_r = "message too large";
		return -1;
	}
	if (in->subject != NULL &&
	    check_utf8_line(in->subject, MT_SUBJECT_MAX, "subject too long", error_r) < 0)
		return -1;
	if (!in->without_head && check_ids(in->message_id, in->mailtrail_id, error_r) < 0)
		return -1;
	size_t header_bytes = 0;
	for (size_t i = 0; i < in->header_count; i++) {
		const struct mime_build_header *h = &in->headers[i];
		if (!valid_field_name(h->name)) {
			*error_r = "invalid header name";
			return -1;
		}
		if (is_structural(h->name)) {
			*error_r = "header is set by the builder";
			return -1;
		}
		if (h->value == NULL) {
			*error_r = "header has no value";
			return -1;
		}
		if (check_ascii_value(h->value, error_r) < 0)
			return -1;
		header_bytes += strlen(h->name) + strlen(h->value) + 4;
		if (header_bytes > MT_HEADER_BLOCK_MAX) {
			*error_r = "headers too large";
			return -1;
		}
	}
	return 0;
}

/* The promise of build.h, checked on what GMime wrote rather than assumed from its options:
 * CRLF only, 7-bit, no NUL, lines within 998 octets. */
static int check_output(const unsigned char *s, size_t len, const char **error_r)
{
	size_t line = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = s[i];
		if (c == '\r') {
			if (i + 1 >= len || s[i + 1] != '\n')
				goto bad;
			i++;
			line = 0;
			continue;
		}
		if (c == '\n' || c == '\0' || c >= 0x80)
			goto bad;
		if (++line > LINE_MAX_OCTETS)
			goto bad;
	}
	if (len < 2 || s[len - 2] != '\r' || s[len - 1] != '\n')
		goto bad;
	return 0;
bad:
	*error_r = "built message is not 7-bit CRLF text with short lines";
	return -1;
}

/* RFC 5322 atext */
static bool is_atext(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Printable ASCII words with single spaces between them (none leading or trailing): text GMime
 * writes as it is, neither encoded nor folded differently. */
static bool plain_words(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c > 0x7e)
			return false;
		if (c == ' ' && (i == 0 || i + 1 == len || s[i + 1] == ' '))
			return false;
	}
	return true;
}

/* "display <address>" or "address" as GMime writes a mailbox, appended at line[*n_io]: for the
 * common case only, an ASCII address and a name of printable ASCII with single spaces between
 * words (bare when every word is atext, else a quoted-string with \" and \\ escaped). False for
 * anything else (GMime then writes it: encoded words, folding) and when it would not fit. */
static bool fast_mailbox_text(char *line, size_t cap, size_t *n_io, const char *name,
                              const char *address)
{
	size_t n = *n_io;
	size_t name_len = strlen(name);
	if (!plain_words(name, name_len))
		return false;
	bool bare = true;
	for (size_t i = 0; i < name_len; i++) {
		if (name[i] != ' ' && !is_atext(name[i]))
			bare = false;
	}
	for (const char *p = address; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>')
			return false;
	}
	/* the worst case: every name character escaped, two quotes, " <", the address, ">" */
	if (n + 2 * name_len + strlen(address) + 6 > cap)
		return false;
	if (name_len > 0) {
		if (!bare)
			line[n++] = '"';
		for (size_t i = 0; i < name_len; i++) {
			if (!bare && (name[i] == '"' || name[i] == '\\'))
				line[n++] = '\\';
			line[n++] = name[i];
		}
		if (!bare)
			line[n++] = '"';
		n += (size_t)snprintf(line + n, cap - n, " <%s>", address);
	} else {
		n += (size_t)snprintf(line + n, cap - n, "%s", address);
	}
	*n_io = n;
	return true;
}

/* "Name: display <address>\r\n" as GMime writes it, when fast_mailbox_text can and the line
 * needs no folding. */
static bool fast_mailbox_line(struct mt_buf *out, const char *field, const struct mime_mailbox *mb)
{
	char line[LINE_MAX_OCTETS];
	size_t n = (size_t)snprintf(line, sizeof(line), "%s: ", field);
	if (!fast_mailbox_text(line, sizeof(line), &n, mb->name, mb->address))
		return false;
	/* GMime folds past 78 columns */
	if (n > FOLD_OCTETS)
		return false;
	return mt_buf_append(out, line, n) == 0 && mt_buf_append(out, "\r\n", 2) == 0;
}

/* The text of one part as GMime writes it with the DOS newline filter and 7bit: CR, CRLF and
 * LF each become CRLF, and a CRLF ends the text if it did not. False when the text is not plain
 * ASCII of short lines (GMime then encodes it quoted-printable) or is empty. */
static bool fast_text_body(struct mt_buf *out, const char *text)
{
	if (*text == '\0')
		return false;
	for (const char *p = text; *p != '\0';) {
		size_t line = strcspn(p, "\r\n");
		if (line > LINE_MAX_OCTETS)
			return false;
		for (size_t i = 0; i < line; i++) {
			if ((unsigned char)p[i] >= 0x80)
				return false;
		}
		if (mt_buf_append(out, p, line) < 0 || mt_buf_append(out, "\r\n", 2) < 0)
			return false;
		p += line;
		if (*p != '\0')
			p += p[0] == '\r' && p[1] == '\n' ? 2 : 1;
	}
	return true;
}

/* "To: a, b <c>\r\n" as GMime writes the list, when every mailbox is plain (fast_mailbox_text)
 * and the line needs no folding. */
static bool fast_mailbox_list(struct mt_buf *out, const char *field,
                              const struct mime_mailbox *list, size_t count)
{
	char line[FOLD_OCTETS + 1];
	size_t n = (size_t)snprintf(line, sizeof(line), "%s: ", field);
	for (size_t i = 0; i < count; i++) {
		char address[MT_ADDRESS_MAX + 1];
		const char *error;
		if (memchr(list[i].address, '\0', sizeof(list[i].address)) == NULL ||
		    memchr(list[i].name, '\0', sizeof(list[i].name)) == NULL ||
		    mime_address_normalize(list[i].address, address, &error) < 0)
			return false;
		if (i > 0) {
			if (n + 2 > sizeof(line))
				return false;
			line[n++] = ',';
			line[n++] = ' ';
		}
		if (!fast_mailbox_text(line, sizeof(line), &n, list[i].name, address))
			return false;
	}
	if (n > FOLD_OCTETS)
		return false;
	return mt_buf_append(out, line, n) == 0 && mt_buf_append(out, "\r\n", 2) == 0;
}

/* A subject GMime writes as it is: printable ASCII words with single spaces, nothing that looks
 * like an encoded word, on one line. */
static bool fast_subject(struct mt_buf *out, const char *subject)
{
	size_t len = strlen(subject);
	if (len == 0 || len + strlen("Subject: ") > FOLD_OCTETS || strstr(subject, "=?") != NULL ||
	    !plain_words(subject, len))
		return false;
	return mt_buf_append(out, "Subject: ", 9) == 0 && mt_buf_append(out, subject, len) == 0 &&
	       mt_buf_append(out, "\r\n", 2) == 0;
}

/* The outbox's message (built without its head) as GMime writes it, for the common case only:
 * one text or one HTML part of plain ASCII short lines, no attachments and no extra fields, a
 * plain subject and recipient lines that need neither encoding nor folding. GMime takes ~30 us
 * to build one; this is the shape of most API messages. False for anything else: GMime writes
 * it (the unit tests hold one against the other, byte for byte). */
static bool fast_message(const struct mime_build_input *in, char **out_r, size_t *len_r)
{
	char date[MT_DATE_TEXT_MAX];
	if (!in->without_head || in->attachment_count > 0 || in->header_count > 0 ||
	    (in->text != NULL) == (in->html != NULL) || in->to_count == 0 || in->date < 0 ||
	    !mt_date_format(in->date, "+0000", date))
		return false;
	struct mt_buf out;
	mt_buf_init(&out, MT_SMTP_MESSAGE_MAX);
	bool ok = mt_buf_append_str(&out, "Date: ") == 0 && mt_buf_append_str(&out, date) == 0 &&
	          mt_buf_append(&out, "\r\n", 2) == 0 &&
	          (in->subject == NULL || fast_subject(&out, in->subject)) &&
	          fast_mailbox_list(&out, "To", in->to, in->to_count) &&
	          (in->cc_count == 0 || fast_mailbox_list(&out, "Cc", in->cc, in->cc_count));
	static const char mime_head[] = "MIME-Version: 1.0\r\nContent-Type: text/";
	static const char mime_tail[] =
	    "; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n";
	const char *subtype = in->text != NULL ? "plain" : "html";
	ok = ok && mt_buf_append(&out, mime_head, sizeof(mime_head) - 1) == 0 &&
	     mt_buf_append(&out, subtype, strlen(subtype)) == 0 &&
	     mt_buf_append(&out, mime_tail, sizeof(mime_tail) - 1) == 0 &&
	     fast_text_body(&out, in->text != NULL ? in->text : in->html) &&
	     out.len <= MT_SMTP_MESSAGE_MAX;
	if (!ok) {
		mt_buf_free(&out);
		return false;
	}
	*out_r = out.data;
	*len_r = out.len;
	return true;
}

static int build_with_gmime(const struct mime_build_input *input, char **out_r, size_t *len_r,
                            const char **error_r);

/* The arguments of a build call, and its input. */
static int check_call(const struct mime_build_input *input, char **out_r, size_t *len_r,
                      const char **error_r)
{
	if (input == NULL || out_r == NULL || len_r == NULL) {
		*error_r = "invalid input";
		return -1;
	}
	return check_input(input, error_r);
}

int mime_build_message(const struct mime_build_input *input, char **out_r, size_t *len_r,
                       const char **error_r)
{
	if (check_call(input, out_r, len_r, error_r) < 0)
		return -1;
	if (fast_message(input, out_r, len_r))
		return 0;
	return build_with_gmime(input, out_r, len_r, error_r);
}

int mime_build_message_gmime(const struct mime_build_input *input, char **out_r, size_t *len_r,
                             const char **error_r)
{
	if (check_call(input, out_r, len_r, error_r) < 0)
		return -1;
	return build_with_gmime(input, out_r, len_r, error_r);
}

bool mime_build_message_plain(const struct mime_build_input *input, char **out_r, size_t *len_r)
{
	const char *error;
	return check_call(input, out_r, len_r, &error) == 0 && fast_message(input, out_r, len_r);
}

static int build_with_gmime(const struct mime_build_input *input, char **out_r, size_t *len_r,
                            const char **error_r)
{
	mime_init();

	int ret = -1;
	GMimeMessage *message = g_mime_message_new(TRUE);
	GMimeObject *body = NULL, *top = NULL;
	GMimeFormatOptions *options = NULL;
	GMimeStream *stream = NULL;

	if (!input->without_head && set_head(message, input->from, input->sender, input->reply_to,
	                                     input->message_id, input->mailtrail_id, error_r) < 0)
		goto done;
	for (size_t i = 0; i < input->to_count; i++) {
		if (add_mailbox(message, GMIME_ADDRESS_TYPE_TO, &input->to[i], error_r) < 0)
			goto done;
	}
	for (size_t i = 0; i < input->cc_count; i++) {
		if (add_mailbox(message, GMIME_ADDRESS_TYPE_CC, &input->cc[i], error_r) < 0)
			goto done;
	}
	if (input->subject != NULL)
		g_mime_message_set_subject(message, input->subject, "UTF-8");
	GDateTime *date = g_date_time_new_from_unix_utc(input->date);
	if (date == NULL) {
		*error_r = "date out of range";
		goto done;
	}
	g_mime_message_set_date(message, date);
	g_date_time_unref(date);
	for (size_t i = 0; i < input->header_count; i++) {
		if (set_raw_header(GMIME_OBJECT(message), input->headers[i].name,
		                   input->headers[i].value, error_r) < 0)
			goto done;
	}

	if ((body = body_part(input, error_r)) == NULL)
		goto done;
	if (input->attachment_count == 0) {
		top = body;
		body = NULL;
	} else {
		GMimeMultipart *mixed = g_mime_multipart_new_with_subtype("mixed");
		top = GMIME_OBJECT(mixed);
		g_mime_multipart_add(mixed, body);
		for (size_t i = 0; i < input->attachment_count; i++) {
			GMimeObject *part = attachment_part(&input->attachments[i], error_r);
			if (part == NULL)
				goto done;
			g_mime_multipart_add(mixed, part);
			g_object_unref(part);
		}
	}
	g_mime_message_set_mime_part(message, top);

	options = g_mime_format_options_new();
	g_mime_format_options_set_newline_format(options, GMIME_NEWLINE_FORMAT_DOS);
	g_mime_format_options_set_param_encoding_method(options,
	                                                GMIME_PARAM_ENCODING_METHOD_RFC2231);
	stream = g_mime_stream_mem_new();
	if (g_mime_object_write_to_stream(GMIME_OBJECT(message), options, stream) < 0) {
		*error_r = "cannot write the message";
		goto done;
	}
	GByteArray *bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(stream));
	if (bytes->len > MT_SMTP_MESSAGE_MAX) {
		*error_r = "message too large";
		goto done;
	}
	if (check_output(bytes->data, bytes->len, error_r) < 0)
		goto done;
	char *out = malloc(bytes->len + 1);
	if (out == NULL) {
		*error_r = "out of memory";
		goto done;
	}
	memcpy(out, bytes->data, bytes->len);
	out[bytes->len] = '\0';
	*out_r = out;
	*len_r = bytes->len;
	ret = 0;
done:
	if (stream != NULL)
		g_object_unref(stream);
	if (options != NULL)
		g_mime_format_options_free(options);
	if (top != NULL)
		g_object_unref(top);
	if (body != NULL)
		g_object_unref(body);
	g_object_unref(message);
	return ret;
}

static bool fast_head(const struct mime_build_head *head, char **out_r, size_t *len_r)
{
	struct mt_buf out;
	mt_buf_init(&out, LINE_MAX_OCTETS * 8);
	char ids[LINE_MAX_OCTETS * 2];
	int n = snprintf(ids, sizeof(ids), "Message-Id: <%s>\r\nX-Mailtrail-Id: %s\r\n",
	                 head->message_id, head->mailtrail_id);
	bool ok = fast_mailbox_line(&out, "From", head->from) &&
	          (head->sender == NULL || fast_mailbox_line(&out, "Sender", head->sender)) &&
	          (head->reply_to == NULL || fast_mailbox_line(&out, "Reply-To", head->reply_to)) &&
	          n > 0 && (size_t)n < sizeof(ids) && strlen(head->message_id) + 15 <= 78 &&
	          strlen(head->mailtrail_id) + 16 <= 78 && mt_buf_append(&out, ids, (size_t)n) == 0;
	if (!ok) {
		mt_buf_free(&out);
		return false;
	}
	*out_r = out.data;
	*len_r = out.len;
	return true;
}

int mime_build_head_fields(const struct mime_build_head *head, char **out_r, size_t *len_r,
                           const char **error_r)
{
	if (head->from == NULL) {
		*error_r = "no From";
		return -1;
	}
	if (check_ids(head->message_id, head->mailtrail_id, error_r) < 0)
		return -1;
	/* GMime takes ~15 us a head; most heads are plain ASCII on one line each */
	if (fast_head(head, out_r, len_r))
		return 0;
	return mime_build_head_fields_gmime(head, out_r, len_r, error_r);
}

int mime_build_head_fields_gmime(const struct mime_build_head *head, char **out_r, size_t *len_r,
                                 const char **error_r)
{
	if (head->from == NULL) {
		*error_r = "no From";
		return -1;
	}
	if (check_ids(head->message_id, head->mailtrail_id, error_r) < 0)
		return -1;
	mime_init();
	int ret = -1;
	/* Not "pretty": only the fields set here, in the order set. */
	GMimeMessage *message = g_mime_message_new(FALSE);
	GMimeFormatOptions *options = g_mime_format_options_new();
	char *text = NULL;
	if (set_head(message, head->from, head->sender, head->reply_to, head->message_id,
	             head->mailtrail_id, error_r) < 0)
		goto done;
	g_mime_format_options_set_newline_format(options, GMIME_NEWLINE_FORMAT_DOS);
	text = g_mime_header_list_to_string(g_mime_object_get_header_list(GMIME_OBJECT(message)),
	                                    options);
	size_t len = text != NULL ? strlen(text) : 0;
	if (len == 0 || check_output((const unsigned char *)text, len, error_r) < 0) {
		*error_r = "the head's fields cannot be written";
		goto done;
	}
	char *out = malloc(len + 1);
	if (out == NULL) {
		*error_r = "out of memory";
		goto done;
	}
	memcpy(out, text, len + 1);
	*out_r = out;
	*len_r = len;
	ret = 0;
done:
	g_free(text);
	g_mime_format_options_free(options);
	g_object_unref(message);
	return ret;
}
