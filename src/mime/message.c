#include "mime/message.h"

#include "mime/build.h"

#include "mime/address.h"
#include "mime/html_text.h"

#include "lib/str.h"

#include <sodium.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <gmime/gmime.h>
#pragma GCC diagnostic pop

enum field { FIELD_FROM, FIELD_TO, FIELD_CC, FIELD_BCC };

struct parse_ctx {
	struct mime_summary *s;
	size_t participants; /* From + To + Cc + Bcc kept so far */
	size_t entries;      /* address entries examined */
	size_t to_cap, cc_cap, bcc_cap, attachments_cap;
	size_t parts; /* MIME parts visited */
	/* the text candidates, in order of preference; owned by the message */
	GMimePart *plain, *html, *fwd_plain, *fwd_html;
};

/* ---- strings ---------------------------------------------------------------------------- */

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* RFC 5322 §2.2.3: unfolding removes the CRLF of a fold; the whitespace after it stays. */
static char *unfold_trim(const char *raw)
{
	size_t len = strlen(raw);
	char *out = g_malloc(len + 1);
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (raw[i] != '\r' && raw[i] != '\n')
			out[n++] = raw[i];
	}
	while (n > 0 && is_wsp(out[n - 1]))
		n--;
	out[n] = '\0';
	size_t lead = 0;
	while (is_wsp(out[lead]))
		lead++;
	memmove(out, out + lead, n - lead + 1);
	return out;
}

/* Copies whole UTF-8 characters of valid UTF-8 `src` while they fit in `cap` bytes. */
static void copy_utf8_capped(char *dst, size_t cap, const char *src)
{
	size_t n = 0;
	const char *p = src;
	while (*p != '\0') {
		const char *next = g_utf8_next_char(p);
		size_t clen = (size_t)(next - p);
		if (n + clen > cap)
			break;
		memcpy(dst + n, p, clen);
		n += clen;
		p = next;
	}
	dst[n] = '\0';
}

/* Header text for display: valid UTF-8, control characters (tabs left by unfolding) as spaces,
 * trimmed, capped on a character boundary. */
static void clean_text(char *dst, size_t cap, const char *src)
{
	gchar *valid = g_utf8_make_valid(src, -1);
	for (char *p = valid; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	}
	gchar *trimmed = g_strstrip(valid);
	copy_utf8_capped(dst, cap, trimmed);
	g_free(valid);
}

static void copy_id(char out[MT_MESSAGE_ID_MAX + 1], const char *id, size_t len)
{
	while (len > 0 && is_wsp(*id)) {
		id++;
		len--;
	}
	while (len > 0 && is_wsp(id[len - 1]))
		len--;
	gchar *valid = g_utf8_make_valid(id, (gssize)len);
	/* A fold's CRLF goes as unfolding would take it (an id folded inside its brackets reads
	 * the same in Message-ID and in References); other controls become spaces. */
	char *w = valid;
	for (const char *p = valid; *p != '\0'; p++) {
		if (*p == '\r' || *p == '\n')
			continue;
		*w++ = ((unsigned char)*p < 0x20 || *p == 0x7f) ? ' ' : *p;
	}
	*w = '\0';
	copy_utf8_capped(out, MT_MESSAGE_ID_MAX, valid);
	g_free(valid);
}

/* Message-ID and X-Mailtrail-Id (DESIGN §1): trimmed, without <>. Of "<a@x> (comment)" the
 * bracketed id; without brackets the first word. */
static void extract_id(const char *raw, char out[MT_MESSAGE_ID_MAX + 1], bool strip_brackets)
{
	char *v = unfold_trim(raw);
	const char *start = v, *end = v + strlen(v);
	if (strip_brackets && *v == '<') {
		const char *close = strchr(v, '>');
		start = v + 1;
		end = close != NULL ? close : end;
	} else if (strip_brackets) {
		const char *sp = v;
		while (sp < end && !is_wsp(*sp))
			sp++;
		end = sp;
	}
	copy_id(out, start, (size_t)(end - start));
	g_free(v);
}

/* In-Reply-To and References: the <...> ids in order; a value without any bracket is read as
 * whitespace- or comma-separated words (some clients drop the brackets; older ones write
 * "Your message of ..." prose). RFC 5322 ids have an '@': what has none is not taken, so that
 * junk ("<<<>>>") never becomes the root that joins unrelated mail into one thread. */
size_t mime_parse_msg_ids(const char *value, size_t len, char (*out)[MT_MESSAGE_ID_MAX + 1],
                          size_t max)
{
	if (len > MT_REFERENCES_BYTES_MAX)
		len = MT_REFERENCES_BYTES_MAX;
	const char *end = value + len;
	size_t n = 0;
	bool bracketed = memchr(value, '<', len) != NULL;
	const char *p = value;
	while (n < max && p < end) {
		const char *start, *stop;
		if (bracketed) {
			start = memchr(p, '<', (size_t)(end - p));
			if (start == NULL)
				break;
			stop = memchr(start, '>', (size_t)(end - start));
			if (stop == NULL)
				break; /* an id cut by the byte cap or never closed */
			p = stop + 1;
			/* the innermost opener: "<<a@x>>" is a@x */
			for (const char *q = start; q < stop; q++) {
				if (*q == '<')
					start = q;
			}
			start++;
		} else {
			while (p < end && (is_wsp(*p) || *p == ','))
				p++;
			start = p;
			while (p < end && !is_wsp(*p) && *p != ',')
				p++;
			stop = p;
			if (memchr(start, '>', (size_t)(stop - start)) != NULL)
				continue;
		}
		if (memchr(start, '@', (size_t)(stop - start)) == NULL)
			continue;
		copy_id(out[n], start, (size_t)(stop - start));
		if (out[n][0] != '\0')
			n++;
	}
	return n;
}

/* ---- addresses ----------------------------------------------------------------------------- */

static bool field_full(const struct parse_ctx *ctx)
{
	return ctx->participants >= MT_MESSAGE_PARTICIPANTS_MAX ||
	       ctx->entries >= MT_MESSAGE_ADDRESS_ENTRIES_MAX;
}

static void add_mailbox(struct parse_ctx *ctx, enum field field, const char *addr, const char *name)
{
	struct mime_summary *s = ctx->s;
	if (field == FIELD_FROM) {
		if (s->from.address[0] != '\0')
			return;
		strcpy(s->from.address, addr);
		clean_text(s->from.name, MT_NAME_MAX, name);
		ctx->participants++;
		return;
	}
	struct mime_mailbox **list = field == FIELD_TO   ? &s->to
	                             : field == FIELD_CC ? &s->cc
	                                                 : &s->bcc;
	size_t *count = field == FIELD_TO   ? &s->to_count
	                : field == FIELD_CC ? &s->cc_count
	                                    : &s->bcc_count;
	size_t *cap = field == FIELD_TO   ? &ctx->to_cap
	              : field == FIELD_CC ? &ctx->cc_cap
	                                  : &ctx->bcc_cap;
	for (size_t i = 0; i < *count; i++) {
		if (strcmp((*list)[i].address, addr) == 0)
			return;
	}
	if (*count == *cap) {
		size_t grown = *cap == 0 ? 4 : *cap * 2;
		*list = g_realloc_n(*list, grown, sizeof(**list));
		*cap = grown;
	}
	struct mime_mailbox *mb = &(*list)[(*count)++];
	strcpy(mb->address, addr);
	clean_text(mb->name, MT_NAME_MAX, name);
	ctx->participants++;
}

/* One entry of a list, as the splitter cut it: the normaliser decides whether it is an address
 * (it refuses a bare "john" and "a@b@x.com", which GMime would accept); GMime gives the decoded
 * display name. */
static void add_entry(struct parse_ctx *ctx, enum field field, const char *text, size_t len)
{
	while (len > 0 && is_wsp(*text)) {
		text++;
		len--;
	}
	while (len > 0 && is_wsp(text[len - 1]))
		len--;
	if (len == 0 || field_full(ctx))
		return;
	ctx->entries++;
	char fast_addr[MT_ADDRESS_MAX + 1], fast_name[MT_ADDRESS_INPUT_MAX + 1];
	if (mime_address_simple(text, len, fast_addr, fast_name, sizeof(fast_name))) {
		add_mailbox(ctx, field, fast_addr, fast_name);
		return;
	}
	char *entry = g_strndup(text, len);
	char addr[MT_ADDRESS_MAX + 1];
	const char *error = NULL;
	InternetAddressList *list = internet_address_list_parse(NULL, entry);
	InternetAddress *ia = list != NULL && internet_address_list_length(list) == 1
	                          ? internet_address_list_get_address(list, 0)
	                          : NULL;
	if (ia != NULL && !INTERNET_ADDRESS_IS_MAILBOX(ia))
		ia = NULL;
	int ret = mime_address_normalize(entry, addr, &error);
	if (ret < 0 && ia != NULL && strcmp(error, "too long") == 0) {
		/* a long encoded display name: the address alone is still worth keeping */
		const char *idn =
		    internet_address_mailbox_get_idn_addr(INTERNET_ADDRESS_MAILBOX(ia));
		if (idn != NULL)
			ret = mime_address_normalize(idn, addr, &error);
	}
	if (ret == 0) {
		/* the normaliser keeps a no-break space just inside the brackets ("< a@x.com>")
		 * as part of the local part but strips it from a bare address: a second pass
		 * gives the key that the same address typed elsewhere gets */
		char again[MT_ADDRESS_MAX + 1];
		ret = mime_address_normalize(addr, again, &error);
		if (ret == 0)
			memcpy(addr, again, sizeof(addr));
	}
	if (ret == 0) {
		const char *name = ia != NULL ? internet_address_get_name(ia) : NULL;
		add_mailbox(ctx, field, addr, name != NULL ? name : "");
	}
	if (list != NULL)
		g_object_unref(list);
	g_free(entry);
}

/* RFC 2047 §2 encoded-word, skipped whole so that a ',' or ';' some mailers leave inside one
 * does not split it. Returns its length, or 0. */
static size_t encoded_word_len(const char *s)
{
	if (s[0] != '=' || s[1] != '?')
		return 0;
	size_t i = 2, q = 0;
	for (; s[i] != '\0' && i < 512; i++) {
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
			return 0;
		if (s[i] == '?') {
			q++;
			if (q == 3)
				return s[i + 1] == '=' && i > 5 ? i + 2 : 0;
		}
	}
	return 0;
}

/* An address-list header value (RFC 5322 §3.4):
 *   address-list = (address *("," address))
 *   address      = mailbox / group
 *   group        = display-name ":" [group-list] ";" [CFWS]
 * cut into mailboxes ourselves, because GMime keeps only `a` of "a@x.com;b@x.com" and drops
 * an invalid entry silently: outside a group ';' separates like ','. Quoted strings, comments,
 * angle brackets and domain literals are skipped; a group name is dropped, its members kept.
 * If a quote, comment or bracket never closes, the rest is re-cut ignoring them, so that one
 * broken entry does not swallow the valid ones after it. */
static void add_address_list(struct parse_ctx *ctx, enum field field, const char *raw)
{
	char *v = unfold_trim(raw);
	size_t len = strlen(v), start = 0, open_at = 0;
	bool quoted = false, literal = false, angle = false, in_group = false, plain = false;
	unsigned comment = 0;
	for (size_t i = 0; i < len && !field_full(ctx); i++) {
		char c = v[i];
		if (field == FIELD_FROM && ctx->s->from.address[0] != '\0')
			break;
		if (!plain && (quoted || comment > 0 || literal)) {
			if (c == '\\' && i + 1 < len)
				i++;
			else if (quoted && c == '"')
				quoted = false;
			else if (comment > 0 && c == '(')
				comment++;
			else if (comment > 0 && c == ')')
				comment--;
			else if (literal && c == ']')
				literal = false;
		} else if (!plain && angle) {
			size_t next = i + 1;
			while ((c == ',' || c == ';') && next < len && is_wsp(v[next]))
				next++;
			if (c == '>') {
				angle = false;
			} else if (c == '"') {
				quoted = true;
			} else if ((c == ',' || c == ';') && (next >= len || v[next] != '@')) {
				/* only an obsolete route ("<@a,@b:x@y>") has a separator inside
				 * brackets: this '<' was never closed */
				angle = false;
				add_entry(ctx, field, v + start, i - start);
				start = i + 1;
				if (c == ';')
					in_group = false;
			}
		} else if (c == ',' || c == ';') {
			add_entry(ctx, field, v + start, i - start);
			start = i + 1;
			if (c == ';')
				in_group = false;
		} else if (!plain) {
			size_t ew = encoded_word_len(v + i);
			if (ew > 0) {
				i += ew - 1;
				continue;
			}
			if (c == '"' || c == '(' || c == '[' || c == '<')
				open_at = i;
			if (c == '"')
				quoted = true;
			else if (c == '(')
				comment = 1;
			else if (c == '[')
				literal = true;
			else if (c == '<')
				angle = true;
			else if (c == ':' && !in_group) {
				in_group = true;
				start = i + 1;
			}
		}
		if (i + 1 == len && !plain && (quoted || comment > 0 || literal || angle)) {
			/* the broken entry ends at the next separator after the opener */
			plain = true;
			quoted = literal = angle = false;
			comment = 0;
			i = open_at;
			start = open_at;
		}
	}
	if (!field_full(ctx) && start < len)
		add_entry(ctx, field, v + start, len - start);
	g_free(v);
}

/* ---- headers ------------------------------------------------------------------------------- */

static bool name_is(const char *name, size_t len, const char *want)
{
	return name != NULL && strlen(want) == len && g_ascii_strncasecmp(name, want, len) == 0;
}

/* The header fields a summary is read from, and the body's own (which only GMime's part
 * parser reads). One table for both parsers. */
enum head_field {
	HF_FROM,
	HF_TO,
	HF_CC,
	HF_BCC,
	HF_MESSAGE_ID,
	HF_MAILTRAIL_ID,
	HF_SUBJECT,
	HF_DATE,
	HF_IN_REPLY_TO,
	HF_REFERENCES,
	HF_CONTENT_TYPE,
	HF_CONTENT_TRANSFER_ENCODING,
	HF_CONTENT_DISPOSITION,
	HF_OTHER
};
static const char *const head_field_names[HF_OTHER] = {
    [HF_FROM] = "From",
    [HF_TO] = "To",
    [HF_CC] = "Cc",
    [HF_BCC] = "Bcc",
    [HF_MESSAGE_ID] = "Message-ID",
    [HF_MAILTRAIL_ID] = "X-Mailtrail-Id",
    [HF_SUBJECT] = "Subject",
    [HF_DATE] = "Date",
    [HF_IN_REPLY_TO] = "In-Reply-To",
    [HF_REFERENCES] = "References",
    [HF_CONTENT_TYPE] = "Content-Type",
    [HF_CONTENT_TRANSFER_ENCODING] = "Content-Transfer-Encoding",
    [HF_CONTENT_DISPOSITION] = "Content-Disposition",
};

static enum head_field head_field_of(const char *name, size_t len)
{
	for (int f = 0; f < HF_OTHER; f++)
		if (name_is(name, len, head_field_names[f]))
			return (enum head_field)f;
	return HF_OTHER;
}

/* Which of the message's own fields were read: the first of each counts. */
struct header_seen {
	bool is_message, id, mt, subject, date, irt, refs;
};

/* One field of the message's own header block: `raw` its folded value (NUL-terminated). The
 * Subject is decoded as g_mime_header_get_value does (unfolded, then RFC 2047). */
static void read_field(struct parse_ctx *ctx, struct header_seen *seen, enum head_field field,
                       const char *raw)
{
	struct mime_summary *s = ctx->s;
	switch (field) {
	case HF_FROM:
	case HF_TO:
	case HF_CC:
		seen->is_message = true;
		add_address_list(ctx,
		                 field == HF_FROM ? FIELD_FROM
		                 : field == HF_TO ? FIELD_TO
		                                  : FIELD_CC,
		                 raw);
		break;
	case HF_BCC:
		add_address_list(ctx, FIELD_BCC, raw);
		break;
	case HF_MESSAGE_ID:
		seen->is_message = true;
		/* the first one: a second Message-ID is a broken or hostile message */
		if (!seen->id)
			extract_id(raw, s->message_id, true);
		seen->id = true;
		break;
	case HF_MAILTRAIL_ID:
		if (!seen->mt)
			extract_id(raw, s->mailtrail_id, false);
		seen->mt = true;
		break;
	case HF_SUBJECT:
		seen->is_message = true;
		if (!seen->subject) {
			char *unfolded = g_mime_utils_header_unfold(raw);
			char *decoded = g_mime_utils_header_decode_text(NULL, unfolded);
			char *text = unfold_trim(decoded != NULL ? decoded : "");
			clean_text(s->subject, MT_SUBJECT_MAX, text);
			g_free(text);
			g_free(decoded);
			g_free(unfolded);
		}
		seen->subject = true;
		break;
	case HF_DATE:
		seen->is_message = true;
		if (!seen->date) {
			char *text = unfold_trim(raw);
			GDateTime *dt = g_mime_utils_header_decode_date(text);
			if (dt != NULL) {
				s->date = g_date_time_to_unix(dt);
				g_date_time_unref(dt);
			}
			g_free(text);
		}
		seen->date = true;
		break;
	case HF_IN_REPLY_TO:
		if (!seen->irt) {
			char tmp[1][MT_MESSAGE_ID_MAX + 1];
			if (mime_parse_msg_ids(raw, strlen(raw), tmp, 1) == 1)
				memcpy(s->in_reply_to, tmp[0], sizeof(tmp[0]));
		}
		seen->irt = true;
		break;
	case HF_REFERENCES:
		if (!seen->refs)
			s->reference_count =
			    mime_parse_msg_ids(raw, strlen(raw), s->references, MT_REFERENCES_MAX);
		seen->refs = true;
		break;
	default: /* the body's fields and others: GMime's part parser, or nobody */
		break;
	}
}

/* Returns whether any header that makes this a message is present. */
static bool read_headers(struct parse_ctx *ctx, GMimeObject *message)
{
	GMimeHeaderList *headers = g_mime_object_get_header_list(message);
	int count = g_mime_header_list_get_count(headers);
	struct header_seen seen = {0};
	for (int i = 0; i < count; i++) {
		GMimeHeader *h = g_mime_header_list_get_header_at(headers, i);
		const char *name = g_mime_header_get_name(h);
		const char *raw = g_mime_header_get_raw_value(h);
		if (raw != NULL && name != NULL)
			read_field(ctx, &seen, head_field_of(name, strlen(name)), raw);
	}
	return seen.is_message;
}

/* ---- a header block read without GMime's objects --------------------------------------------
 * IMAP sync converts thousands of messages a second whose header block the server already cut
 * to the fields asked for: GMime's message parser would make an object per field (most of the
 * cost of a conversion). The block is split here into fields (RFC 5322 §2.2) and only the
 * body's own fields (Content-Type, -Transfer-Encoding, -Disposition) go to GMime's part
 * parser with the text. */

/* A field of a header block as spans of the block: all its lines (folds and line end included),
 * its name without the blanks before the colon, and its raw value after the colon. */
struct field_span {
	const char *lines, *name, *value;
	size_t lines_len, name_len, value_len;
};

/* Index just past the line starting at `pos` (past its LF), or `len`. */
static size_t line_after(const char *data, size_t len, size_t pos)
{
	const char *nl = memchr(data + pos, '\n', len - pos);
	return nl != NULL ? (size_t)(nl - data) + 1 : len;
}

static bool empty_line(const char *data, size_t len, size_t pos)
{
	return data[pos] == '\n' || (data[pos] == '\r' && pos + 1 < len && data[pos + 1] == '\n');
}

/* The next field from *pos in the header block data[0..len); false at its empty line or end.
 * What GMime's parser skips is skipped: a line without a colon, a name that is empty or holds
 * blanks or controls (each with its continuation lines). */
static bool next_field(const char *data, size_t len, size_t *pos, struct field_span *f)
{
	while (*pos < len && !empty_line(data, len, *pos)) {
		size_t start = *pos, first_end = line_after(data, len, start), end = first_end;
		while (end < len && (data[end] == ' ' || data[end] == '\t'))
			end = line_after(data, len, end);
		*pos = end;
		const char *colon = memchr(data + start, ':', first_end - start);
		if (colon == NULL)
			continue;
		size_t name_len = (size_t)(colon - (data + start));
		while (name_len > 0 &&
		       (data[start + name_len - 1] == ' ' || data[start + name_len - 1] == '\t'))
			name_len--;
		bool valid = name_len > 0;
		for (size_t i = 0; i < name_len && valid; i++)
			valid = (unsigned char)data[start + i] > 0x20 &&
			        (unsigned char)data[start + i] < 0x7f;
		if (!valid)
			continue;
		f->lines = data + start;
		f->lines_len = end - start;
		f->name = data + start;
		f->name_len = name_len;
		f->value = colon + 1;
		f->value_len = (size_t)(data + end - (colon + 1));
		return true;
	}
	return false;
}

/* ---- text ---------------------------------------------------------------------------------- */

static bool charset_is_utf8(const char *charset)
{
	return charset == NULL || g_ascii_strcasecmp(charset, "utf-8") == 0 ||
	       g_ascii_strcasecmp(charset, "utf8") == 0 ||
	       g_ascii_strcasecmp(charset, "us-ascii") == 0 ||
	       g_ascii_strcasecmp(charset, "ascii") == 0;
}

/* Reads up to MT_SNIPPET_SOURCE_MAX decoded bytes of `raw` (transfer encoding undone, charset
 * converted) as valid UTF-8. Undeclared (or "us-ascii") 8-bit text that is not UTF-8 is read as
 * Windows-1252, the usual culprit; other bad bytes become U+FFFD. */
static char *decode_text(GMimeStream *raw, GMimeContentEncoding encoding, const char *charset)
{
	GMimeStream *filtered = g_mime_stream_filter_new(raw);
	if (encoding == GMIME_CONTENT_ENCODING_BASE64 ||
	    encoding == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE ||
	    encoding == GMIME_CONTENT_ENCODING_UUENCODE) {
		GMimeFilter *f = g_mime_filter_basic_new(encoding, FALSE);
		g_mime_stream_filter_add(GMIME_STREAM_FILTER(filtered), f);
		g_object_unref(f);
	}
	bool converted = false;
	/* a declared UTF-8 with a stray bad byte is still UTF-8: only undeclared text is guessed */
	bool guess = charset == NULL || g_ascii_strncasecmp(charset, "us-ascii", 8) == 0 ||
	             g_ascii_strcasecmp(charset, "ascii") == 0;
	if (!charset_is_utf8(charset)) {
		GMimeFilter *f = g_mime_filter_charset_new(charset, "UTF-8");
		if (f != NULL) {
			g_mime_stream_filter_add(GMIME_STREAM_FILTER(filtered), f);
			g_object_unref(f);
			converted = true;
		}
	}
	/* grown as the text comes: most are a few KB, and a buffer of the cap for each would cost
	 * its page faults (and malloc's consolidation when it is freed) every time */
	size_t size = MT_SNIPPET_SOURCE_MAX < 16384 ? MT_SNIPPET_SOURCE_MAX : 16384;
	char *buf = g_malloc(size + 1);
	size_t len = 0;
	while (len < MT_SNIPPET_SOURCE_MAX) {
		if (len == size) {
			size = size * 2 < MT_SNIPPET_SOURCE_MAX ? size * 2 : MT_SNIPPET_SOURCE_MAX;
			buf = g_realloc(buf, size + 1);
		}
		ssize_t n = g_mime_stream_read(filtered, buf + len, size - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	g_object_unref(filtered);
	buf[len] = '\0';
	/* Plain ASCII without NUL (most mail text) is what the checks below find valid as it is;
	 * both scans go many bytes a step, where g_utf8_validate goes a character at a time. */
	if (mime_fast_paths() && !mt_mem_has_8bit(buf, len) && memchr(buf, '\0', len) == NULL)
		return buf;
	/* the cap may have cut a character: drop its start rather than report it as invalid */
	const char *end = NULL;
	bool valid = g_utf8_validate(buf, (gssize)len, &end);
	if (!valid && len == MT_SNIPPET_SOURCE_MAX && len - (size_t)(end - buf) < 4)
		len = (size_t)(end - buf);
	if (memchr(buf, '\0', len) != NULL) {
		len = strlen(buf);
		valid = false; /* checked again below */
	}
	/* the usual case, valid as read: no second pass (g_utf8_make_valid would copy it) */
	if (valid && mime_fast_paths())
		return buf;
	char *out = NULL;
	if (!converted && guess && !g_utf8_validate(buf, (gssize)len, NULL))
		out = g_convert(buf, (gssize)len, "UTF-8", "WINDOWS-1252", NULL, NULL, NULL);
	if (out == NULL)
		out = g_utf8_make_valid(buf, (gssize)len);
	g_free(buf);
	return out;
}

/* The snippet: whitespace runs (NBSP included) as one space, control characters as
 * whitespace, trimmed, the first MT_SNIPPET_CHARS characters. */
static void make_snippet(char out[MT_SNIPPET_BYTES + 1], const char *text)
{
	size_t n = 0, chars = 0;
	bool space = false, fast = mime_fast_paths();
	for (const char *p = text; *p != '\0' && chars < MT_SNIPPET_CHARS;
	     p = g_utf8_next_char(p)) {
		unsigned char b = (unsigned char)*p;
		if (fast && b > 0x20 && b < 0x7f && !space) {
			/* a run of visible ASCII: copied as it is, byte by byte, without the
			 * character stepping below (the loop's own step moves past the last) */
			for (;;) {
				out[n++] = (char)b;
				if (++chars == MT_SNIPPET_CHARS)
					break;
				b = (unsigned char)p[1];
				if (b <= 0x20 || b >= 0x7f)
					break;
				p++;
			}
			continue;
		}
		if (b < 0x80 && fast) {
			/* ASCII, most text: the same tests as below without the Unicode tables
			 * (blanks and controls are at or below 0x20, and 0x7f) */
			if (b <= 0x20 || b == 0x7f) {
				space = n > 0;
				continue;
			}
			if (space) {
				out[n++] = ' ';
				space = false;
				if (++chars == MT_SNIPPET_CHARS)
					break;
			}
			out[n++] = (char)b;
			chars++;
			continue;
		}
		gunichar c = g_utf8_get_char(p);
		if (c == 0xfeff || c == 0x200b)
			continue;
		if (g_unichar_isspace(c) || c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0)) {
			space = n > 0;
			continue;
		}
		if (space) {
			out[n++] = ' ';
			space = false;
			if (++chars == MT_SNIPPET_CHARS)
				break;
		}
		size_t clen = (size_t)(g_utf8_next_char(p) - p);
		memcpy(out + n, p, clen);
		n += clen;
		chars++;
	}
	while (n > 0 && out[n - 1] == ' ')
		n--;
	out[n] = '\0';
}

/* The snippet of a text's raw bytes: decoded, HTML made text, cut. */
static void snippet_from(struct mime_summary *s, GMimeStream *raw, GMimeContentEncoding encoding,
                         const char *charset, bool html)
{
	char *text = decode_text(raw, encoding, charset);
	if (html)
		mime_html_to_text(text, strlen(text), text);
	make_snippet(s->snippet, text);
	g_free(text);
}

static void part_snippet(struct mime_summary *s, GMimePart *part, bool html)
{
	GMimeDataWrapper *content = g_mime_part_get_content(part);
	if (content == NULL)
		return;
	GMimeStream *stream = g_mime_data_wrapper_get_stream(content);
	if (stream == NULL)
		return;
	g_mime_stream_reset(stream);
	const char *charset =
	    g_mime_object_get_content_type_parameter(GMIME_OBJECT(part), "charset");
	snippet_from(s, stream, g_mime_data_wrapper_get_encoding(content), charset, html);
}

/* ---- parts --------------------------------------------------------------------------------- */

static void lower_ascii(char *p)
{
	for (; *p != '\0'; p++)
		*p = g_ascii_tolower(*p);
}

static struct mime_attachment *new_attachment(struct parse_ctx *ctx, GMimeObject *obj)
{
	struct mime_summary *s = ctx->s;
	if (s->attachment_count >= MT_ATTACHMENTS_MAX)
		return NULL;
	if (s->attachment_count == ctx->attachments_cap) {
		size_t grown = ctx->attachments_cap == 0 ? 4 : ctx->attachments_cap * 2;
		s->attachments = g_realloc_n(s->attachments, grown, sizeof(*s->attachments));
		ctx->attachments_cap = grown;
	}
	struct mime_attachment *a = &s->attachments[s->attachment_count++];
	memset(a, 0, sizeof(*a));
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	char *type = ct != NULL ? g_mime_content_type_get_mime_type(ct) : NULL;
	if (type != NULL) {
		lower_ascii(type);
		clean_text(a->type, MT_CONTENT_TYPE_MAX, type);
	}
	g_free(type);
	return a;
}

/* GMime decodes RFC 2231 (name*=, name*0*=) and RFC 2047 parameter values; a raw encoded-word
 * left in a name (some clients quote it) is decoded here. */
static void set_name(struct mime_attachment *a, const char *name)
{
	if (name == NULL)
		return;
	char *decoded = strstr(name, "=?") != NULL ? g_mime_utils_header_decode_text(NULL, name)
	                                           : g_strdup(name);
	clean_text(a->name, MT_ATTACHMENT_NAME_MAX, decoded);
	g_free(decoded);
}

static const char *object_filename(GMimeObject *obj)
{
	const char *name = g_mime_object_get_content_disposition_parameter(obj, "filename");
	if (name == NULL || *name == '\0')
		name = g_mime_object_get_content_type_parameter(obj, "name");
	return name != NULL && *name != '\0' ? name : NULL;
}

static void walk(struct parse_ctx *ctx, GMimeObject *obj, unsigned depth, bool forwarded);

static void walk_message_part(struct parse_ctx *ctx, GMimeMessagePart *mp, unsigned depth,
                              bool forwarded)
{
	GMimeObject *obj = GMIME_OBJECT(mp);
	GMimeMessage *inner = g_mime_message_part_get_message(mp);
	if (!forwarded) {
		struct mime_attachment *a = new_attachment(ctx, obj);
		if (a != NULL) {
			const char *filename = object_filename(obj);
			if (filename != NULL) {
				set_name(a, filename);
			} else {
				const char *subject =
				    inner != NULL ? g_mime_message_get_subject(inner) : NULL;
				/* keep ".eml" whatever the subject's length */
				char base[MT_ATTACHMENT_NAME_MAX - 4 + 1];
				clean_text(base, sizeof(base) - 1,
				           subject != NULL && *subject != '\0' ? subject
				                                               : "message");
				char *name =
				    g_strdup_printf("%s.eml", base[0] != '\0' ? base : "message");
				set_name(a, name);
				g_free(name);
			}
			if (inner != NULL) {
				GMimeStream *null = g_mime_stream_null_new();
				ssize_t n =
				    g_mime_object_write_to_stream(GMIME_OBJECT(inner), NULL, null);
				a->size = n > 0 ? (int64_t)n : 0;
				g_object_unref(null);
			}
		}
	}
	GMimeObject *body = inner != NULL ? g_mime_message_get_mime_part(inner) : NULL;
	if (body != NULL)
		walk(ctx, body, depth + 1, true);
}

static void walk_part(struct parse_ctx *ctx, GMimePart *part, bool forwarded)
{
	GMimeObject *obj = GMIME_OBJECT(part);
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	bool text = ct != NULL && g_mime_content_type_is_type(ct, "text", "*");
	const char *filename = object_filename(obj);
	bool attachment = g_mime_part_is_attachment(part) || (!text && filename != NULL);
	if (attachment) {
		if (forwarded)
			return;
		struct mime_attachment *a = new_attachment(ctx, obj);
		if (a == NULL)
			return;
		set_name(a, filename);
		GMimeDataWrapper *content = g_mime_part_get_content(part);
		if (content != NULL) {
			GMimeStream *null = g_mime_stream_null_new();
			ssize_t n = g_mime_data_wrapper_write_to_stream(content, null);
			a->size = n > 0 ? (int64_t)n : 0;
			g_object_unref(null);
		}
		return;
	}
	if (!text)
		return;
	bool plain = g_mime_content_type_is_type(ct, "text", "plain");
	bool html = g_mime_content_type_is_type(ct, "text", "html");
	GMimePart **slot = NULL;
	if (plain)
		slot = forwarded ? &ctx->fwd_plain : &ctx->plain;
	else if (html)
		slot = forwarded ? &ctx->fwd_html : &ctx->html;
	if (slot != NULL && *slot == NULL)
		*slot = part;
}

static void walk(struct parse_ctx *ctx, GMimeObject *obj, unsigned depth, bool forwarded)
{
	if (obj == NULL || depth > MT_MIME_DEPTH_MAX || ctx->parts >= MT_MIME_PARTS_MAX)
		return;
	ctx->parts++;
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		int count = g_mime_multipart_get_count(mp);
		for (int i = 0; i < count && ctx->parts < MT_MIME_PARTS_MAX; i++)
			walk(ctx, g_mime_multipart_get_part(mp, i), depth + 1, forwarded);
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		walk_message_part(ctx, GMIME_MESSAGE_PART(obj), depth, forwarded);
	} else if (GMIME_IS_PART(obj)) {
		walk_part(ctx, GMIME_PART(obj), forwarded);
	}
}

static void choose_snippet(struct parse_ctx *ctx)
{
	/* the outer message's own text first; a forwarded message's only when it has none */
	GMimePart *order[] = {ctx->plain, ctx->html, ctx->fwd_plain, ctx->fwd_html};
	for (size_t i = 0; i < 4 && ctx->s->snippet[0] == '\0'; i++) {
		if (order[i] != NULL)
			part_snippet(ctx->s, order[i],
			             order[i] == ctx->html || order[i] == ctx->fwd_html);
	}
}

/* ---- parsing ------------------------------------------------------------------------------- */

/* Length of the header block: up to and including the empty line that ends it, or all. */
static size_t header_block_len(const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (data[i] != '\n')
			continue;
		if (i + 1 < len && data[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && data[i + 1] == '\r' && data[i + 2] == '\n')
			return i + 3;
	}
	return len;
}

static size_t count_content_types(const char *data, size_t len)
{
	static const char needle[] = "content-type";
	size_t n = 0;
	/* line by line (memchr), not byte by byte: this runs over every message */
	for (size_t i = 0; i + sizeof(needle) - 1 <= len;) {
		if (g_ascii_strncasecmp(data + i, needle, sizeof(needle) - 1) == 0)
			n++;
		const char *nl = memchr(data + i, '\n', len - i);
		if (nl == NULL)
			break;
		i = (size_t)(nl - data) + 1;
	}
	return n;
}

static GMimeMessage *construct(const char *data, size_t len)
{
	GMimeStream *stream = g_mime_stream_mem_new_with_buffer(data, len);
	GMimeParser *parser = g_mime_parser_new_with_stream(stream);
	g_object_unref(stream);
	g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
	GMimeMessage *message = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	return message;
}

/* Parses `data` as a message, its header block capped at MT_HEADER_BLOCK_MAX (cut at a line
 * end) and, with `headers_only` or too many parts to parse safely, without its body. */
static GMimeMessage *parse_bytes(const char *data, size_t len, bool headers_only)
{
	size_t hlen = header_block_len(data, len);
	if (!headers_only && count_content_types(data, len) > MT_MIME_CONTENT_TYPES_MAX)
		headers_only = true;
	bool cut = hlen > MT_HEADER_BLOCK_MAX;
	if (cut) {
		hlen = MT_HEADER_BLOCK_MAX;
		while (hlen > 0 && data[hlen - 1] != '\n')
			hlen--;
	}
	if (!cut && !headers_only)
		return construct(data, len);
	/* the kept headers, an empty line, and the body unless headers only */
	size_t body = headers_only ? 0 : len - header_block_len(data, len);
	char *copy = g_malloc(hlen + 2 + body);
	memcpy(copy, data, hlen);
	size_t n = hlen;
	if (n > 0 && copy[n - 1] != '\n')
		copy[n++] = '\n';
	copy[n++] = '\n';
	if (body > 0) {
		memcpy(copy + n, data + len - body, body);
		n += body;
	}
	GMimeMessage *message = construct(copy, n);
	/* GMime copied what it keeps (headers, and parts into its own memory streams) */
	g_free(copy);
	return message;
}

static const char not_a_message[] =
    "not an email message: no From, To, Cc, Date, Message-ID or Subject";

/* What every parse starts with: the summary zeroed, GMime ready; false with *error_r when there
 * are no bytes at all. */
static bool parse_start(const char *data, size_t len, struct mime_summary *summary_r,
                        const char **error_r)
{
	memset(summary_r, 0, sizeof(*summary_r));
	mime_init();
	if (data == NULL || len == 0) {
		*error_r = "not an email message: it is empty";
		return false;
	}
	return true;
}

static int parse_common(GMimeMessage *message, struct parse_ctx *ctx, const char **error_r)
{
	if (message == NULL) {
		*error_r = "not an email message (RFC 5322): no header fields could be read";
		return -1;
	}
	if (!read_headers(ctx, GMIME_OBJECT(message))) {
		*error_r = not_a_message;
		return -1;
	}
	return 0;
}

int mime_parse_message(const char *data, size_t len, struct mime_summary *summary_r,
                       const char **error_r)
{
	struct parse_ctx ctx = {.s = summary_r};
	if (!parse_start(data, len, summary_r, error_r))
		return -1;
	GMimeMessage *message = parse_bytes(data, len, false);
	if (parse_common(message, &ctx, error_r) < 0) {
		if (message != NULL)
			g_object_unref(message);
		mime_summary_free(summary_r);
		return -1;
	}
	walk(&ctx, g_mime_message_get_mime_part(message), 0, false);
	choose_snippet(&ctx);
	g_object_unref(message);
	return 0;
}

/* A body that is one text part, as most mail is: its snippet straight from the text, as walk()
 * and part_snippet() make it for that part, without GMime's part parser. false (nothing done)
 * when the Content-Type is not text/plain or text/html. */
static bool text_body_snippet(struct mime_summary *s, const struct field_span *type,
                              const struct field_span *encoding, const char *body, size_t len)
{
	GMimeContentType *ct = NULL;
	if (type != NULL) {
		char *raw = g_strndup(type->value, type->value_len);
		ct = g_mime_content_type_parse(NULL, raw);
		g_free(raw);
		if (ct == NULL)
			return false;
	}
	bool plain = ct == NULL || g_mime_content_type_is_type(ct, "text", "plain");
	bool html = ct != NULL && g_mime_content_type_is_type(ct, "text", "html");
	if (!plain && !html) {
		if (ct != NULL)
			g_object_unref(ct);
		return false;
	}
	GMimeContentEncoding enc = GMIME_CONTENT_ENCODING_DEFAULT;
	if (encoding != NULL) {
		char *raw = g_strndup(encoding->value, encoding->value_len);
		char *value = unfold_trim(raw);
		enc = g_mime_content_encoding_from_string(value);
		g_free(value);
		g_free(raw);
	}
	const char *charset = ct != NULL ? g_mime_content_type_get_parameter(ct, "charset") : NULL;
	GMimeStream *stream = g_mime_stream_mem_new_with_buffer(body, len);
	snippet_from(s, stream, enc, charset, html);
	g_object_unref(stream);
	if (ct != NULL)
		g_object_unref(ct);
	return true;
}

int mime_parse_fetched(const char *data, size_t len, struct mime_summary *summary_r,
                       const char **error_r)
{
	struct parse_ctx ctx = {.s = summary_r};
	if (!parse_start(data, len, summary_r, error_r))
		return -1;
	if (data[0] == ' ' || data[0] == '\t') {
		/* a continuation before any field: GMime's parser reads no message at all */
		*error_r = "not an email message (RFC 5322): no header fields could be read";
		return -1;
	}
	size_t hlen = header_block_len(data, len);
	/* fields past the cap are not read, as parse_bytes cuts them */
	size_t read_len = hlen;
	if (read_len > MT_HEADER_BLOCK_MAX) {
		read_len = MT_HEADER_BLOCK_MAX;
		while (read_len > 0 && data[read_len - 1] != '\n')
			read_len--;
	}
	size_t body = len - hlen;
	bool with_body = count_content_types(data, len) <= MT_MIME_CONTENT_TYPES_MAX;
	struct header_seen seen = {0};
	struct field_span f, type = {0}, encoding = {0};
	unsigned types = 0, encodings = 0, dispositions = 0;
	for (size_t pos = 0; next_field(data, read_len, &pos, &f);) {
		enum head_field field = head_field_of(f.name, f.name_len);
		if (field == HF_CONTENT_TYPE) {
			if (types++ == 0)
				type = f;
		} else if (field == HF_CONTENT_TRANSFER_ENCODING) {
			if (encodings++ == 0)
				encoding = f;
		} else if (field == HF_CONTENT_DISPOSITION) {
			dispositions++;
		} else if (field != HF_OTHER) {
			char *raw = g_strndup(f.value, f.value_len);
			read_field(&ctx, &seen, field, raw);
			g_free(raw);
		}
	}
	if (!seen.is_message) {
		mime_summary_free(summary_r);
		*error_r = not_a_message;
		return -1;
	}
	if (!with_body)
		return 0;
	if (types <= 1 && encodings <= 1 && dispositions == 0 &&
	    text_body_snippet(summary_r, types > 0 ? &type : NULL, encodings > 0 ? &encoding : NULL,
	                      data + hlen, body))
		return 0;
	/* The body's own fields verbatim (a second pass over the block, as rare as such bodies
	 * are), an empty line, the body: what GMime parses as the part. */
	GString *part_bytes = g_string_sized_new(body + 256);
	for (size_t pos = 0; next_field(data, read_len, &pos, &f);) {
		enum head_field field = head_field_of(f.name, f.name_len);
		if (field != HF_CONTENT_TYPE && field != HF_CONTENT_TRANSFER_ENCODING &&
		    field != HF_CONTENT_DISPOSITION)
			continue;
		g_string_append_len(part_bytes, f.lines, (gssize)f.lines_len);
		if (f.lines[f.lines_len - 1] != '\n')
			g_string_append_c(part_bytes, '\n');
	}
	g_string_append_c(part_bytes, '\n');
	g_string_append_len(part_bytes, data + hlen, (gssize)body);
	GMimeStream *stream = g_mime_stream_mem_new_with_buffer(part_bytes->str, part_bytes->len);
	GMimeParser *parser = g_mime_parser_new_with_stream(stream);
	g_object_unref(stream);
	GMimeObject *part = g_mime_parser_construct_part(parser, NULL);
	g_object_unref(parser);
	if (part != NULL) {
		walk(&ctx, part, 0, false);
		choose_snippet(&ctx);
		g_object_unref(part);
	}
	g_string_free(part_bytes, TRUE);
	return 0;
}

int mime_parse_headers(const char *headers, size_t headers_len, const char *text, size_t text_len,
                       const char *text_content_type, const char *text_transfer_encoding,
                       struct mime_summary *summary_r, const char **error_r)
{
	struct parse_ctx ctx = {.s = summary_r};
	if (!parse_start(headers, headers_len, summary_r, error_r))
		return -1;
	GMimeMessage *message = parse_bytes(headers, headers_len, true);
	if (parse_common(message, &ctx, error_r) < 0) {
		if (message != NULL)
			g_object_unref(message);
		mime_summary_free(summary_r);
		return -1;
	}
	g_object_unref(message);
	if (text == NULL || text_len == 0)
		return 0;
	GMimeContentType *ct = g_mime_content_type_parse(
	    NULL, text_content_type != NULL ? text_content_type : "text/plain");
	bool html = ct != NULL && g_mime_content_type_is_type(ct, "text", "html");
	const char *charset = ct != NULL ? g_mime_content_type_get_parameter(ct, "charset") : NULL;
	GMimeContentEncoding encoding =
	    text_transfer_encoding != NULL
	        ? g_mime_content_encoding_from_string(text_transfer_encoding)
	        : GMIME_CONTENT_ENCODING_DEFAULT;
	GMimeStream *stream = g_mime_stream_mem_new_with_buffer(text, text_len);
	snippet_from(summary_r, stream, encoding, charset, html);
	g_object_unref(stream);
	if (ct != NULL)
		g_object_unref(ct);
	return 0;
}

void mime_decode_value(const char *value, char *out, size_t size)
{
	if (size == 0)
		return;
	out[0] = '\0';
	if (value == NULL)
		return;
	mime_init();
	char *decoded = NULL;
	const char *first = strchr(value, '\'');
	const char *quote = first != NULL ? strchr(first + 1, '\'') : NULL;
	if (quote != NULL && strchr(value, ' ') == NULL && strstr(value, "=?") == NULL) {
		quote--; /* the value starts after the second quote */
		/* RFC 2231: charset'language'percent-encoded */
		char charset[64];
		size_t clen = strcspn(value, "'");
		g_strlcpy(charset, value, clen + 1 < sizeof(charset) ? clen + 1 : sizeof(charset));
		GString *raw = g_string_new(NULL);
		for (const char *p = quote + 2; *p != '\0'; p++) {
			if (p[0] == '%' && g_ascii_isxdigit(p[1]) && g_ascii_isxdigit(p[2])) {
				g_string_append_c(raw, (char)(g_ascii_xdigit_value(p[1]) * 16 +
				                              g_ascii_xdigit_value(p[2])));
				p += 2;
			} else {
				g_string_append_c(raw, *p);
			}
		}
		decoded =
		    charset[0] != '\0' && g_ascii_strcasecmp(charset, "utf-8") != 0
		        ? g_convert(raw->str, (gssize)raw->len, "UTF-8", charset, NULL, NULL, NULL)
		        : NULL;
		if (decoded == NULL)
			decoded = g_strdup(raw->str);
		g_string_free(raw, TRUE);
	} else if (strstr(value, "=?") != NULL) {
		decoded = g_mime_utils_header_decode_text(NULL, value);
	} else {
		decoded = g_strdup(value);
	}
	clean_text(out, size - 1, decoded);
	g_free(decoded);
}

void mime_summary_free(struct mime_summary *summary)
{
	if (summary == NULL)
		return;
	g_free(summary->to);
	g_free(summary->cc);
	g_free(summary->bcc);
	g_free(summary->attachments);
	summary->to = summary->cc = summary->bcc = NULL;
	summary->attachments = NULL;
	summary->to_count = summary->cc_count = summary->bcc_count = 0;
	summary->attachment_count = 0;
}

/* ---- identity ------------------------------------------------------------------------------ */

static int compare_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

size_t mime_message_aliases(const struct mime_summary *summary,
                            char aliases[MT_MESSAGE_ALIASES_MAX][MT_MESSAGE_KEY_MAX])
{
	size_t n = 0;
	if (summary->message_id[0] != '\0')
		snprintf(aliases[n++], MT_MESSAGE_KEY_MAX, "mid:%s", summary->message_id);
	if (summary->mailtrail_id[0] != '\0')
		snprintf(aliases[n++], MT_MESSAGE_KEY_MAX, "mt:%s", summary->mailtrail_id);
	if (n > 0)
		return n;

	crypto_hash_sha256_state st;
	crypto_hash_sha256_init(&st);
	char date[32];
	int dlen = snprintf(date, sizeof(date), "%lld", (long long)summary->date);
	crypto_hash_sha256_update(&st, (const unsigned char *)date, (size_t)dlen + 1);
	crypto_hash_sha256_update(&st, (const unsigned char *)summary->from.address,
	                          strlen(summary->from.address) + 1);
	const char **to = summary->to_count > 0 ? malloc(summary->to_count * sizeof(*to)) : NULL;
	if (to != NULL) {
		for (size_t i = 0; i < summary->to_count; i++)
			to[i] = summary->to[i].address;
		/* strcmp compares as unsigned char: a bytewise order */
		qsort(to, summary->to_count, sizeof(*to), compare_str);
		for (size_t i = 0; i < summary->to_count; i++)
			crypto_hash_sha256_update(&st, (const unsigned char *)to[i],
			                          strlen(to[i]) + 1);
		free(to);
	} else if (summary->to_count > 0) {
		abort();
	}
	crypto_hash_sha256_update(&st, (const unsigned char *)summary->subject,
	                          strlen(summary->subject) + 1);
	unsigned char digest[crypto_hash_sha256_BYTES];
	crypto_hash_sha256_final(&st, digest);
	char hex[crypto_hash_sha256_BYTES * 2 + 1];
	sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
	snprintf(aliases[0], MT_MESSAGE_KEY_MAX, "sha:%s", hex);
	return 1;
}

const char *mime_thread_root(const struct mime_summary *summary)
{
	if (summary->reference_count > 0)
		return summary->references[0];
	if (summary->in_reply_to[0] != '\0')
		return summary->in_reply_to;
	return summary->message_id;
}

/* ---- the summary of a message we build ----------------------------------------------------- */

/* The snippet of UTF-8 text as part_snippet() finds it in a part: capped like decode_text(). */
static void snippet_of(char out[MT_SNIPPET_BYTES + 1], const char *text, bool html)
{
	size_t len = strlen(text);
	if (len > MT_SNIPPET_SOURCE_MAX) {
		len = MT_SNIPPET_SOURCE_MAX;
		while (len > 0 && ((unsigned char)text[len] & 0xc0) == 0x80)
			len--; /* not inside a character */
	}
	gchar *copy = g_utf8_make_valid(text, (gssize)len);
	if (html)
		mime_html_to_text(copy, strlen(copy), copy);
	make_snippet(out, copy);
	g_free(copy);
}

int mime_build_summary(const struct mime_build_input *input, char snippet[MT_SNIPPET_BYTES + 1],
                       struct mime_attachment **attachments_r, size_t *count_r)
{
	snippet[0] = '\0';
	/* text/plain first, then text/html, as choose_snippet() does */
	if (input->text != NULL)
		snippet_of(snippet, input->text, false);
	if (snippet[0] == '\0' && input->html != NULL)
		snippet_of(snippet, input->html, true);
	size_t n = input->attachment_count < MT_ATTACHMENTS_MAX ? input->attachment_count
	                                                        : MT_ATTACHMENTS_MAX;
	*attachments_r = calloc(n ? n : 1, sizeof(**attachments_r));
	*count_r = 0;
	if (*attachments_r == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const struct mime_build_attachment *in = &input->attachments[i];
		struct mime_attachment *a = &(*attachments_r)[i];
		set_name(a, in->filename);
		gchar *type = g_ascii_strdown(
		    in->content_type != NULL ? in->content_type : "application/octet-stream", -1);
		clean_text(a->type, MT_CONTENT_TYPE_MAX, type);
		g_free(type);
		a->size = (int64_t)in->len;
	}
	*count_r = n;
	return 0;
}
