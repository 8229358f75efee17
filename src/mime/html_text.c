#include "mime/html_text.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool starts_with_ci(const char *s, size_t len, const char *word)
{
	size_t wlen = strlen(word);
	if (len < wlen)
		return false;
	for (size_t i = 0; i < wlen; i++) {
		if (lower(s[i]) != word[i])
			return false;
	}
	return true;
}

/* Position of `word` (lower case) in s[from, len), case-insensitively, or len. */
static size_t find_ci(const char *s, size_t len, size_t from, const char *word)
{
	for (size_t i = from; i < len; i++) {
		if (starts_with_ci(s + i, len - i, word))
			return i;
	}
	return len;
}

static bool tag_name_ends(const char *s, size_t len, size_t at)
{
	return at >= len || s[at] == ' ' || s[at] == '\t' || s[at] == '\r' || s[at] == '\n' ||
	       s[at] == '>' || s[at] == '/';
}

/* Elements whose end is a line or a cell break on screen. */
static bool is_block(const char *name, size_t len)
{
	static const char *const block[] = {
	    "br",     "p",     "div",        "tr",     "td",      "th",      "li",      "ul",
	    "ol",     "table", "blockquote", "hr",     "pre",     "h1",      "h2",      "h3",
	    "h4",     "h5",    "h6",         "dd",     "dt",      "section", "article", "header",
	    "footer", "tbody", "thead",      "center", "address", "body"};
	for (size_t i = 0; i < sizeof(block) / sizeof(block[0]); i++) {
		if (strlen(block[i]) == len && starts_with_ci(name, len, block[i]))
			return true;
	}
	return false;
}

static size_t put_utf8(char *out, uint32_t c)
{
	if (c == 0 || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		c = 0xfffd;
	if (c < 0x80) {
		out[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		out[0] = (char)(0xc0 | (c >> 6));
		out[1] = (char)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c < 0x10000) {
		out[0] = (char)(0xe0 | (c >> 12));
		out[1] = (char)(0x80 | ((c >> 6) & 0x3f));
		out[2] = (char)(0x80 | (c & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (c >> 18));
	out[1] = (char)(0x80 | ((c >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((c >> 6) & 0x3f));
	out[3] = (char)(0x80 | (c & 0x3f));
	return 4;
}

/* HTML character references at s[0] == '&': numeric ones (with or without the ';', as
 * browsers read them) and the named ones mail actually uses. Writes the character and returns
 * the bytes consumed, or 0 when this is a plain '&'. The output is never longer than the
 * reference (the shortest, "&#N", stands for one byte; U+FFFD needs "&#0" at least). */
static size_t entity(const char *s, size_t len, char *out, size_t *out_len)
{
	static const struct {
		const char *name;
		uint32_t c;
	} named[] = {
	    {"amp;", '&'},      {"lt;", '<'},        {"gt;", '>'},       {"quot;", '"'},
	    {"apos;", '\''},    {"nbsp;", 0xa0},     {"copy;", 0xa9},    {"reg;", 0xae},
	    {"euro;", 0x20ac},  {"hellip;", 0x2026}, {"mdash;", 0x2014}, {"ndash;", 0x2013},
	    {"lsquo;", 0x2018}, {"rsquo;", 0x2019},  {"ldquo;", 0x201c}, {"rdquo;", 0x201d},
	    {"bull;", 0x2022},  {"middot;", 0xb7},   {"trade;", 0x2122}, {"laquo;", 0xab},
	    {"raquo;", 0xbb},   {"zwnj;", 0x200c},   {"shy;", 0xad}};
	if (len >= 3 && s[1] == '#') {
		bool hex = s[2] == 'x' || s[2] == 'X';
		size_t i = hex ? 3 : 2, digits = 0;
		uint32_t v = 0;
		for (; i < len; i++, digits++) {
			char c = s[i];
			int d = c >= '0' && c <= '9'          ? c - '0'
			        : hex && c >= 'a' && c <= 'f' ? c - 'a' + 10
			        : hex && c >= 'A' && c <= 'F' ? c - 'A' + 10
			                                      : -1;
			if (d < 0)
				break;
			if (v <= 0x10ffff)
				v = v * (hex ? 16 : 10) + (uint32_t)d;
		}
		if (digits == 0)
			return 0;
		if (i < len && s[i] == ';')
			i++;
		*out_len = put_utf8(out, v);
		return i;
	}
	for (size_t k = 0; k < sizeof(named) / sizeof(named[0]); k++) {
		size_t nlen = strlen(named[k].name);
		if (len > nlen && memcmp(s + 1, named[k].name, nlen) == 0) {
			*out_len = put_utf8(out, named[k].c);
			return nlen + 1;
		}
	}
	return 0;
}

size_t mime_html_to_text(const char *s, size_t len, char *out)
{
	static const char *const raw_text[] = {"script", "style", "title"};
	size_t i = 0, n = 0;
	while (i < len) {
		char c = s[i];
		if (c == '&') {
			size_t elen = 0, used = entity(s + i, len - i, out + n, &elen);
			if (used > 0) {
				i += used;
				n += elen;
				continue;
			}
		}
		if (c != '<' || i + 1 >= len ||
		    !(is_alpha(s[i + 1]) || s[i + 1] == '/' || s[i + 1] == '!' ||
		      s[i + 1] == '?')) {
			out[n++] = c;
			i++;
			continue;
		}
		if (starts_with_ci(s + i, len - i, "<!--")) {
			size_t end = find_ci(s, len, i + 4, "-->");
			i = end < len ? end + 3 : len;
			continue;
		}
		bool skipped = false;
		for (size_t k = 0; k < sizeof(raw_text) / sizeof(raw_text[0]) && !skipped; k++) {
			size_t nlen = strlen(raw_text[k]);
			if (!starts_with_ci(s + i + 1, len - i - 1, raw_text[k]) ||
			    !tag_name_ends(s, len, i + 1 + nlen))
				continue;
			/* everything up to the end tag is not text, as in a browser */
			char close[16] = "</";
			strcat(close, raw_text[k]);
			size_t end = find_ci(s, len, i + 1 + nlen, close);
			const char *gt = end < len ? memchr(s + end, '>', len - end) : NULL;
			i = gt != NULL ? (size_t)(gt - s) + 1 : len;
			out[n++] = ' ';
			skipped = true;
		}
		if (skipped)
			continue;
		size_t name = i + 1 + (s[i + 1] == '/' ? 1 : 0), name_end = name;
		while (name_end < len &&
		       (is_alpha(s[name_end]) || (s[name_end] >= '0' && s[name_end] <= '9')))
			name_end++;
		bool block = is_block(s + name, name_end - name);
		/* to the '>' that ends the tag; one inside a quoted attribute value does not */
		char quote = 0;
		size_t j = name_end;
		for (; j < len; j++) {
			if (quote != 0) {
				if (s[j] == quote)
					quote = 0;
			} else if ((s[j] == '"' || s[j] == '\'') && j > 0 && s[j - 1] == '=') {
				quote = s[j];
			} else if (s[j] == '>') {
				break;
			}
		}
		i = j < len ? j + 1 : len;
		if (block)
			out[n++] = ' ';
	}
	out[n] = '\0';
	return n;
}
