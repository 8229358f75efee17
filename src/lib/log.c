#include "lib/log.h"
#include "lib/limits.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum mt_log_level current_level = MT_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void mt_log_set_level(enum mt_log_level level)
{
	current_level = level;
}

enum mt_log_level mt_log_get_level(void)
{
	return current_level;
}

int mt_log_level_parse(const char *name, enum mt_log_level *level_r)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*level_r = (enum mt_log_level)i;
			return 0;
		}
	}
	return -1;
}

struct out {
	char *p;
	size_t size;
	size_t len;
};

static void put(struct out *o, char c)
{
	if (o->len + 1 < o->size)
		o->p[o->len++] = c;
}

static void puts_raw(struct out *o, const char *s)
{
	while (*s != '\0')
		put(o, *s++);
}

static void put_value(struct out *o, const char *value)
{
	if (value == NULL) {
		puts_raw(o, "null");
		return;
	}
	int quote = value[0] == '\0';
	for (const char *s = value; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f)
			quote = 1;
	}
	if (quote)
		put(o, '"');
	size_t n = 0;
	for (const char *s = value; *s != '\0'; s++, n++) {
		if (n >= MT_LOG_VALUE_MAX) {
			puts_raw(o, "...");
			break;
		}
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			put(o, '\\');
			put(o, (char)c);
		} else if (c == '\n') {
			puts_raw(o, "\\n");
		} else if (c == '\r') {
			puts_raw(o, "\\r");
		} else if (c < 0x20 || c == 0x7f) {
			char hex[8];
			snprintf(hex, sizeof(hex), "\\x%02x", c);
			puts_raw(o, hex);
		} else {
			put(o, (char)c);
		}
	}
	if (quote)
		put(o, '"');
}

size_t mt_log_format(char *out, size_t out_size, enum mt_log_level level, const char *event,
                     const struct mt_log_field *fields, size_t count)
{
	struct out o = {out, out_size, 0};
	char ts[96];
	struct timespec now;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         (long)(now.tv_nsec / 1000000) % 1000);
	puts_raw(&o, "ts=");
	puts_raw(&o, ts);
	puts_raw(&o, " level=");
	puts_raw(&o, level_names[level]);
	puts_raw(&o, " event=");
	put_value(&o, event);
	for (size_t i = 0; i < count; i++) {
		if (fields[i].key == NULL)
			continue;
		put(&o, ' ');
		puts_raw(&o, fields[i].key);
		put(&o, '=');
		put_value(&o, fields[i].value);
	}
	if (out_size > 0)
		out[o.len] = '\0';
	return o.len;
}

void mt_log_fields(enum mt_log_level level, const char *event, const struct mt_log_field *fields,
                   size_t count)
{
	if (level < current_level)
		return;
	char line[MT_LOG_LINE_MAX];
	size_t len = mt_log_format(line, sizeof(line) - 1, level, event, fields, count);
	line[len++] = '\n';
	/* One write per line so concurrent processes do not interleave. */
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}
