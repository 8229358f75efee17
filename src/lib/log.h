/* logfmt lines on stderr: `ts=... level=info event=smtp.connect host=mx.example port=587`.
 * Fields are typed `const char *` through a compound literal, so a `struct mt_secret *` cannot be
 * passed by mistake: secrets have no string form outside src/lib/secret.c and the SASL encoder.
 * Values are escaped (control characters, quotes) and capped at MT_LOG_VALUE_MAX. */
#ifndef MT_LIB_LOG_H
#define MT_LIB_LOG_H

#include <stddef.h>

enum mt_log_level { MT_LOG_DEBUG, MT_LOG_INFO, MT_LOG_WARN, MT_LOG_ERROR };

struct mt_log_field {
	const char *key;
	const char *value;
};

#define MT_KV(k, v) ((struct mt_log_field){(k), (v)})

/* mt_log(MT_LOG_INFO, "event.name", MT_KV("k", v), ...); the leading empty field lets the list be
 * empty. */
#define mt_log(level, event, ...)                                                                  \
	mt_log_fields((level), (event), (const struct mt_log_field[]){{NULL, NULL}, __VA_ARGS__},  \
	              sizeof((const struct mt_log_field[]){{NULL, NULL}, __VA_ARGS__}) /           \
	                  sizeof(struct mt_log_field))

void mt_log_fields(enum mt_log_level level, const char *event, const struct mt_log_field *fields,
                   size_t count);
void mt_log_set_level(enum mt_log_level level);
enum mt_log_level mt_log_get_level(void);
/* Parses "debug" / "info" / "warn" / "error"; -1 if unknown. */
int mt_log_level_parse(const char *name, enum mt_log_level *level_r);
/* Formats one logfmt line into `out` (for tests); returns its length. */
size_t mt_log_format(char *out, size_t out_size, enum mt_log_level level, const char *event,
                     const struct mt_log_field *fields, size_t count);

#endif
