#include "mime/address.h"
#include "mime/message.h"

#include <stddef.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <gmime/gmime.h>
#pragma GCC diagnostic pop

void mime_init(void)
{
	static gsize once = 0;
	if (g_once_init_enter(&once)) {
		g_mime_init();
		g_once_init_leave(&once, 1);
	}
}

static bool is_space(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* Leading and trailing blanks, including the no-break and zero-width spaces that come with
 * addresses pasted from web pages and spreadsheets. */
static size_t blank_len(const char *s, size_t len, bool at_end)
{
	static const char *const wide[] = {"\xc2\xa0", "\xe2\x80\x8b", "\xef\xbb\xbf"};
	size_t n = 0;
	for (;;) {
		if (n < len && is_space((unsigned char)(at_end ? s[len - 1 - n] : s[n]))) {
			n++;
			continue;
		}
		bool found = false;
		for (size_t i = 0; i < sizeof(wide) / sizeof(wide[0]) && !found; i++) {
			size_t w = strlen(wide[i]);
			if (len - n >= w &&
			    memcmp(at_end ? s + len - n - w : s + n, wide[i], w) == 0) {
				n += w;
				found = true;
			}
		}
		if (!found)
			return n;
	}
}

/* What GMime does not tell us: it keeps only `a` of "a@x.com;b@x.com", drops invalid entries,
 * and reads "a@b@x.com" as "a@b". So the typed text is checked for its shape first: separators,
 * angle brackets and '@' signs outside quoted strings and comments. */
static int check_shape(const char *s, size_t len, bool *at_signs_ok, const char **error_r)
{
	bool quoted = false, piece_has_text = false, after_close = false;
	unsigned comment = 0, pieces = 0, opens = 0, closes = 0, at_outside = 0, at_inside = 0;
	bool in_angle = false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r' || c == '\n') {
			*error_r = "contains a line break";
			return -1;
		}
		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			*error_r = "not an email address";
			return -1;
		}
		if (quoted || comment > 0) {
			if (c == '\\' && i + 1 < len) {
				i++;
				continue;
			}
			if (quoted && c == '"')
				quoted = false;
			else if (!quoted && c == '(')
				comment++;
			else if (!quoted && c == ')')
				comment--;
			continue;
		}
		if (c == ',' || c == ';') {
			if (piece_has_text)
				pieces++;
			piece_has_text = false;
			after_close = false;
			continue;
		}
		if (!is_space(c) && c != '(')
			piece_has_text = true;
		if (after_close && !is_space(c) && c != '(') {
			/* "<a@x.com> b@x.com": text after the address */
			*error_r = "more than one address";
			return -1;
		}
		switch (c) {
		case '"':
			quoted = true;
			break;
		case '(':
			comment = 1;
			break;
		case '<':
			if (in_angle) {
				*error_r = "not an email address";
				return -1;
			}
			in_angle = true;
			opens++;
			break;
		case '>':
			if (!in_angle) {
				*error_r = "not an email address";
				return -1;
			}
			in_angle = false;
			closes++;
			after_close = true;
			break;
		case '@':
			if (in_angle)
				at_inside++;
			else
				at_outside++;
			break;
		default:
			break;
		}
	}
	if (piece_has_text)
		pieces++;
	if (pieces > 1 || opens > 1) {
		*error_r = "more than one address";
		return -1;
	}
	if (quoted || comment > 0 || in_angle || opens != closes) {
		*error_r = "not an email address";
		return -1;
	}
	/* with angle brackets the address is inside them and a display name may look like an
	 * address ("jack@x.com <jack@x.com>"); without them there is exactly one '@'. Checked
	 * after GMime's count, so that "a@x.com b@x.com" reads as two addresses. */
	*at_signs_ok = opens == 1 ? at_inside == 1 : at_outside == 1;
	return 0;
}

/* RFC 1035 §2.3.1 LDH labels, at least two of them, a non-numeric top label. */
static bool valid_ascii_domain(const char *d, size_t len)
{
	if (len == 0 || len > MT_HOST_FIELD_MAX || memchr(d, '.', len) == NULL)
		return false;
	size_t label = 0;
	bool label_digits_only = true;
	for (size_t i = 0; i <= len; i++) {
		char c = i < len ? d[i] : '.';
		if (c == '.') {
			if (label == 0 || label > 63 || d[i - 1] == '-')
				return false;
			if (i == len && label_digits_only)
				return false;
			label = 0;
			label_digits_only = true;
			continue;
		}
		bool digit = c >= '0' && c <= '9';
		bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
		if (!digit && !alpha && !(c == '-' && label > 0))
			return false;
		if (!digit)
			label_digits_only = false;
		label++;
	}
	return true;
}

static void ascii_lower(char *s)
{
	for (; *s != '\0'; s++) {
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
	}
}

/* The local part as GMime returns it: a dot-atom, possibly UTF-8 (RFC 6531). Quoted local
 * parts are refused: they are legal but never typed on purpose, and they carry spaces and
 * quotes into places (headers, CSV, logs) that do not expect them. */
/* Unicode blanks that GMime keeps inside an address but that are no part of one: a local part
 * holding one would normalise differently the second time. */
static bool has_unicode_blank(const unsigned char *s, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (s[i] == 0xC2 && s[i + 1] == 0xA0) /* U+00A0 */
			return true;
		if (i + 2 < len && s[i] == 0xE2 && s[i + 1] == 0x80 &&
		    (s[i + 2] <= 0x8B || s[i + 2] == 0xAF)) /* U+2000..U+200B, U+202F */
			return true;
		if (i + 2 < len && ((s[i] == 0xE2 && s[i + 1] == 0x81 && s[i + 2] == 0x9F) ||
		                    (s[i] == 0xE3 && s[i + 1] == 0x80 && s[i + 2] == 0x80) ||
		                    (s[i] == 0xEF && s[i + 1] == 0xBB && s[i + 2] == 0xBF)))
			return true; /* U+205F, U+3000, U+FEFF */
	}
	return false;
}

static bool valid_local_part(const char *s, size_t len)
{
	if (has_unicode_blank((const unsigned char *)s, len))
		return false;
	if (len == 0 || len > MT_LOCAL_PART_MAX || !g_utf8_validate(s, (gssize)len, NULL))
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c == 0x7f || strchr("\"(),:;<>@[\\]", c) != NULL)
			return false;
	}
	return true;
}

static bool fast_paths = true;

void mime_set_fast_paths(bool on)
{
	fast_paths = on;
}

bool mime_fast_paths(void)
{
	return fast_paths;
}

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* local@domain: a dot-atom of letters, digits and "_+-"; LDH labels, none with "--" (so no
 * A-label: nothing for IDNA to map or refuse), at least two, a top label not all digits. Its
 * length, or 0 when the address is not of that shape or too long. */
static size_t simple_addr_spec(const char *s, size_t len)
{
	size_t at = 0;
	while (at < len && s[at] != '@')
		at++;
	if (at == 0 || at >= len || at > MT_LOCAL_PART_MAX || len > MT_ADDRESS_MAX)
		return 0;
	for (size_t i = 0; i < at; i++) {
		char c = s[i];
		if (c == '.') {
			if (i == 0 || i + 1 == at || s[i - 1] == '.')
				return 0;
		} else if (!is_alnum(c) && c != '_' && c != '+' && c != '-') {
			return 0;
		}
	}
	const char *d = s + at + 1;
	size_t dlen = len - at - 1, label = 0, labels = 0;
	bool digits_only = true;
	if (dlen == 0 || dlen > MT_HOST_FIELD_MAX)
		return 0;
	for (size_t i = 0; i <= dlen; i++) {
		char c = i < dlen ? d[i] : '.';
		if (c == '.') {
			if (label == 0 || label > 63 || d[i - 1] == '-')
				return 0;
			labels++;
			label = 0;
			if (i < dlen)
				digits_only = true;
			continue;
		}
		if (c == '-') {
			if (label == 0 || d[i - 1] == '-')
				return 0;
		} else if (!is_alnum(c)) {
			return 0;
		}
		if (c < '0' || c > '9')
			digits_only = false;
		label++;
	}
	return labels >= 2 && !digits_only ? len : 0;
}

bool mime_address_simple(const char *s, size_t len, char addr_r[MT_ADDRESS_MAX + 1], char *name_r,
                         size_t name_size)
{
	if (!fast_paths || len == 0 || len > MT_ADDRESS_INPUT_MAX)
		return false;
	const char *spec = s;
	size_t spec_len = len, name_len = 0;
	if (s[len - 1] == '>') {
		const char *open = memchr(s, '<', len);
		if (open == NULL)
			return false;
		name_len = (size_t)(open - s);
		spec = open + 1;
		spec_len = len - name_len - 2;
		if (name_len > 0) {
			/* words of letters and digits, one space between them and before '<' */
			if (name_len < 2 || s[name_len - 1] != ' ' || s[0] == ' ')
				return false;
			name_len--;
			for (size_t i = 0; i < name_len; i++) {
				if (s[i] == ' ' ? s[i - 1] == ' ' : !is_alnum(s[i]))
					return false;
			}
		}
	}
	if (simple_addr_spec(spec, spec_len) == 0)
		return false;
	for (size_t i = 0; i < spec_len; i++) {
		char c = spec[i];
		addr_r[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	addr_r[spec_len] = '\0';
	if (name_r != NULL && name_size > 0) {
		size_t n = name_len < name_size - 1 ? name_len : name_size - 1;
		memcpy(name_r, s, n);
		name_r[n] = '\0';
	}
	return true;
}

int mime_address_normalize(const char *input, char out[MT_ADDRESS_MAX + 1], const char **error_r)
{
	if (input == NULL) {
		*error_r = "not an email address";
		return -1;
	}
	size_t len = strlen(input);
	if (len > MT_ADDRESS_INPUT_MAX) {
		*error_r = "too long";
		return -1;
	}
	if (strpbrk(input, "\r\n") != NULL) {
		*error_r = "contains a line break";
		return -1;
	}
	size_t lead = blank_len(input, len, false);
	const char *s = input + lead;
	len -= lead;
	len -= blank_len(s, len, true);
	if (len == 0) {
		*error_r = "not an email address";
		return -1;
	}
	if (mime_address_simple(s, len, out, NULL, 0))
		return 0;
	bool at_signs_ok = false;
	if (check_shape(s, len, &at_signs_ok, error_r) < 0)
		return -1;

	mime_init();
	char text[MT_ADDRESS_INPUT_MAX + 1];
	memcpy(text, s, len);
	text[len] = '\0';
	InternetAddressList *list = internet_address_list_parse(NULL, text);
	if (list == NULL || internet_address_list_length(list) < 1) {
		if (list != NULL)
			g_object_unref(list);
		*error_r = "not an email address";
		return -1;
	}
	int ret = -1;
	gchar *lower = NULL;
	InternetAddress *ia = internet_address_list_get_address(list, 0);
	if (internet_address_list_length(list) > 1) {
		*error_r = "more than one address";
		goto done;
	}
	if (!INTERNET_ADDRESS_IS_MAILBOX(ia) || !at_signs_ok) {
		*error_r = "not an email address";
		goto done;
	}
	const char *idn = internet_address_mailbox_get_idn_addr(INTERNET_ADDRESS_MAILBOX(ia));
	const char *at = idn != NULL ? strrchr(idn, '@') : NULL;
	if (at == NULL || !valid_local_part(idn, (size_t)(at - idn)) ||
	    !valid_ascii_domain(at + 1, strlen(at + 1))) {
		*error_r = "not an email address";
		goto done;
	}
	lower = g_utf8_strdown(idn, -1);
	if (lower == NULL) {
		*error_r = "not an email address";
		goto done;
	}
	if (strlen(lower) > MT_ADDRESS_MAX) {
		*error_r = "too long";
		goto done;
	}
	ascii_lower(lower);
	strcpy(out, lower);
	ret = 0;
done:
	g_free(lower);
	g_object_unref(list);
	return ret;
}

int mime_domain_normalize(const char *input, char out[MT_HOST_FIELD_MAX + 1], const char **error_r)
{
	if (input == NULL) {
		*error_r = "not a domain";
		return -1;
	}
	size_t len = strlen(input);
	if (len > MT_ADDRESS_INPUT_MAX) {
		*error_r = "too long";
		return -1;
	}
	if (strpbrk(input, "\r\n") != NULL) {
		*error_r = "contains a line break";
		return -1;
	}
	size_t lead = blank_len(input, len, false);
	const char *s = input + lead;
	len -= lead;
	len -= blank_len(s, len, true);
	if (len > 1 && s[len - 1] == '.')
		len--;
	if (len == 0 || memchr(s, '@', len) != NULL) {
		*error_r = "not a domain";
		return -1;
	}
	char text[MT_ADDRESS_INPUT_MAX + 1];
	memcpy(text, s, len);
	text[len] = '\0';
	if (!g_utf8_validate(text, (gssize)len, NULL)) {
		*error_r = "not a domain";
		return -1;
	}
	gchar *ascii = g_hostname_to_ascii(text);
	if (ascii == NULL) {
		*error_r = "not a domain";
		return -1;
	}
	int ret = -1;
	size_t alen = strlen(ascii);
	if (alen > MT_HOST_FIELD_MAX) {
		*error_r = "too long";
	} else if (!valid_ascii_domain(ascii, alen)) {
		*error_r = "not a domain";
	} else {
		ascii_lower(ascii);
		memcpy(out, ascii, alen + 1);
		ret = 0;
	}
	g_free(ascii);
	return ret;
}

/* Providers where anyone can get an address: an org claiming one of these as its own domain
 * would make every candidate with such an address "internal". */
static const char *const freemail[] = {
    "gmail.com",     "googlemail.com", "outlook.com",    "hotmail.com",
    "live.com",      "msn.com",        "passport.com",   "windowslive.com",
    "yahoo.com",     "ymail.com",      "rocketmail.com", "aol.com",
    "aim.com",       "icloud.com",     "me.com",         "mac.com",
    "mail.com",      "email.com",      "usa.com",        "post.com",
    "gmx.com",       "gmx.de",         "gmx.net",        "gmx.at",
    "gmx.ch",        "web.de",         "t-online.de",    "freenet.de",
    "arcor.de",      "posteo.de",      "mailbox.org",    "yandex.com",
    "yandex.ru",     "ya.ru",          "proton.me",      "protonmail.com",
    "protonmail.ch", "pm.me",          "tutanota.com",   "tutanota.de",
    "tuta.io",       "tutamail.com",   "zoho.com",       "zohomail.com",
    "fastmail.com",  "fastmail.fm",    "hey.com",        "hushmail.com",
    "qq.com",        "foxmail.com",    "163.com",        "126.com",
    "yeah.net",      "sina.com",       "sina.cn",        "sohu.com",
    "aliyun.com",    "mail.ru",        "bk.ru",          "inbox.ru",
    "list.ru",       "internet.ru",    "rambler.ru",     "naver.com",
    "daum.net",      "hanmail.net",    "rediffmail.com", "libero.it",
    "virgilio.it",   "tiscali.it",     "orange.fr",      "wanadoo.fr",
    "free.fr",       "laposte.net",    "sfr.fr",         "seznam.cz",
    "centrum.cz",    "wp.pl",          "o2.pl",          "interia.pl",
    "onet.pl",       "btinternet.com", "sky.com",        "virginmedia.com",
    "ntlworld.com",  "comcast.net",    "verizon.net",    "att.net",
    "sbcglobal.net", "bellsouth.net",  "cox.net",        "charter.net",
    "earthlink.net", "optonline.net",  "juno.com",       "netzero.net",
    "inbox.com",     "lycos.com",      "excite.com",     "shaw.ca",
    "rogers.com",    "sympatico.ca",   "bigpond.com",    "optusnet.com.au",
    "xtra.co.nz",    "uol.com.br",     "bol.com.br",     "terra.com.br",
    "ig.com.br",     "telenet.be",     "skynet.be",      "ziggo.nl",
    "kpnmail.nl",    "planet.nl",      "bluewin.ch",     "abv.bg",
    "ukr.net",       "i.ua",           "walla.com",      "gmx.fr",
    "gmx.co.uk",     "gmx.us",         "mail.de",        "emailn.de"};

/* Brands with a domain in many countries (yahoo.co.uk, hotmail.fr, outlook.com.br, ...). */
static const char *const freemail_brands[] = {"yahoo", "hotmail", "outlook", "live",
                                              "gmx",   "yandex",  "aol",     "ymail"};

static bool is_country_suffix(const char *s)
{
	/* "xx", "com", "net", "co.xx", "com.xx", "ne.xx", "or.xx" */
	size_t len = strlen(s);
	const char *dot = strchr(s, '.');
	if (dot == NULL)
		return len == 2 || strcmp(s, "com") == 0 || strcmp(s, "net") == 0;
	if (strlen(dot + 1) != 2 || strchr(dot + 1, '.') != NULL)
		return false;
	size_t first = (size_t)(dot - s);
	return (first == 2 && (strncmp(s, "co", 2) == 0 || strncmp(s, "ne", 2) == 0 ||
	                       strncmp(s, "or", 2) == 0)) ||
	       (first == 3 && strncmp(s, "com", 3) == 0);
}

static bool is_freemail_exact(const char *d)
{
	for (size_t i = 0; i < sizeof(freemail) / sizeof(freemail[0]); i++) {
		if (strcmp(d, freemail[i]) == 0)
			return true;
	}
	for (size_t i = 0; i < sizeof(freemail_brands) / sizeof(freemail_brands[0]); i++) {
		size_t blen = strlen(freemail_brands[i]);
		if (strncmp(d, freemail_brands[i], blen) == 0 && d[blen] == '.' &&
		    is_country_suffix(d + blen + 1))
			return true;
	}
	return false;
}

bool mime_domain_is_freemail(const char *domain)
{
	char lower[MT_HOST_FIELD_MAX + 2];
	size_t len = domain != NULL ? strlen(domain) : 0;
	if (len == 0 || len > MT_HOST_FIELD_MAX + 1)
		return false;
	memcpy(lower, domain, len + 1);
	if (lower[len - 1] == '.')
		lower[len - 1] = '\0';
	ascii_lower(lower);
	/* the domain itself, then each parent: a subdomain of a provider is still the provider */
	for (const char *d = lower; d != NULL; d = strchr(d, '.')) {
		if (*d == '.')
			d++;
		if (is_freemail_exact(d))
			return true;
	}
	return false;
}

int mime_mailbox_parse(const char *input, struct mime_mailbox *mailbox_r, const char **error_r)
{
	memset(mailbox_r, 0, sizeof(*mailbox_r));
	if (mime_address_normalize(input, mailbox_r->address, error_r) < 0)
		return -1;
	/* Valid as one mailbox: parse again for its name. */
	InternetAddressList *list = internet_address_list_parse(NULL, input);
	if (list != NULL && internet_address_list_length(list) == 1) {
		const char *name =
		    internet_address_get_name(internet_address_list_get_address(list, 0));
		if (name != NULL) {
			gchar *trimmed = g_strstrip(g_strdup(name));
			if (g_utf8_validate(trimmed, -1, NULL) &&
			    strpbrk(trimmed, "\r\n") == NULL) {
				/* Cap on a character boundary. */
				const char *end = trimmed;
				while (*end != '\0') {
					const char *next = g_utf8_next_char(end);
					if ((size_t)(next - trimmed) > MT_NAME_MAX)
						break;
					end = next;
				}
				memcpy(mailbox_r->name, trimmed, (size_t)(end - trimmed));
				mailbox_r->name[end - trimmed] = '\0';
			}
			g_free(trimmed);
		}
	}
	if (list != NULL)
		g_object_unref(list);
	return 0;
}
