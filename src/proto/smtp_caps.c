#include "proto/smtp_caps.h"

#include <string.h>
#include <strings.h>

static int is_sp(char c)
{
	/* ehlo-line separates with SP; a TAB is taken too, some appliances send one */
	return c == ' ' || c == '\t';
}

/* The next space-separated word of s[*pos..len); 0 at the end. */
static size_t next_word(const char *s, size_t len, size_t *pos, const char **word_r)
{
	while (*pos < len && is_sp(s[*pos]))
		(*pos)++;
	size_t start = *pos;
	while (*pos < len && !is_sp(s[*pos]))
		(*pos)++;
	*word_r = s + start;
	return *pos - start;
}

static int keyword_is(const char *word, size_t len, const char *keyword)
{
	return strlen(keyword) == len && strncasecmp(word, keyword, len) == 0;
}

static void parse_auth(struct smtp_caps *caps, const char *s, size_t len, size_t pos)
{
	const char *word;
	size_t n;
	while ((n = next_word(s, len, &pos, &word)) > 0)
		caps->auth_mechs |= sasl_mech_from_name(word, n);
}

/* size-param = [1*DIGIT] (RFC 1870). A value that is not a number is taken as "no limit
 * stated" (sending will still meet the server's 552 if it really has one); one that overflows
 * is as good as no limit. */
static uint64_t parse_size(const char *word, size_t len)
{
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (word[i] < '0' || word[i] > '9')
			return 0;
		unsigned d = (unsigned)(word[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return UINT64_MAX;
		v = v * 10 + d;
	}
	return v;
}

int smtp_caps_parse(const struct smtp_reply *ehlo_reply, struct smtp_caps *caps_r,
                    const char **error_r)
{
	memset(caps_r, 0, sizeof(*caps_r));
	if (ehlo_reply->code != 250) {
		*error_r = "EHLO was not answered with 250";
		return -1;
	}
	for (unsigned i = 1; i < ehlo_reply->line_count; i++) {
		const char *s = ehlo_reply->lines[i];
		size_t len = strlen(s);
		size_t pos = 0;
		const char *word;
		size_t n = next_word(s, len, &pos, &word);
		if (n == 0)
			continue;
		if (keyword_is(word, n, "PIPELINING"))
			caps_r->pipelining = true;
		else if (keyword_is(word, n, "STARTTLS"))
			caps_r->starttls = true;
		else if (keyword_is(word, n, "8BITMIME"))
			caps_r->eightbitmime = true;
		else if (keyword_is(word, n, "SMTPUTF8"))
			caps_r->smtputf8 = true;
		else if (keyword_is(word, n, "ENHANCEDSTATUSCODES"))
			caps_r->enhancedstatuscodes = true;
		else if (keyword_is(word, n, "CHUNKING"))
			caps_r->chunking = true;
		else if (keyword_is(word, n, "AUTH"))
			parse_auth(caps_r, s, len, pos);
		else if (n > 5 && strncasecmp(word, "AUTH=", 5) == 0) {
			/* pre-RFC 4954 form (old Outlook clients needed it): "AUTH=LOGIN PLAIN" */
			size_t first = (size_t)(word - s) + 5;
			parse_auth(caps_r, s, len, first);
		} else if (keyword_is(word, n, "SIZE")) {
			caps_r->size = true;
			n = next_word(s, len, &pos, &word);
			caps_r->size_max = n > 0 ? parse_size(word, n) : 0;
		}
	}
	return 0;
}
