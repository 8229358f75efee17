/* Server configuration (DESIGN §2): a fixed table of keys, set from a file, the environment
 * (MAILTRAIL_<KEY>) and command-line flags. The caller applies them in that order; a later
 * set overrides an earlier one, which gives flags > environment > file.
 *
 * Ownership: mt_config_new() returns an object the caller frees with mt_config_free(). Strings
 * and lists returned by the getters belong to the config and stay valid until the key is set
 * again or the config is freed. Every load/set call either applies all its settings or, on
 * error, none of them. The `built` flags are process-wide; flip them before threads start. */
#ifndef MT_CONFIG_CONFIG_H
#define MT_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/cidr.h"
#include "lib/limits.h"

struct sockaddr;
struct mt_config;

struct mt_config *mt_config_new(void);
void mt_config_free(struct mt_config **config);

/* `key = value` lines, `#` comments (whole-line; also a trailing ` # ...` after whitespace),
 * blank lines; keys from the table only; a value may be "quoted" to keep spaces (or a ` #`).
 * On error: -1 and "FILE:LINE: reason" in error (unknown key, missing '=', bad value for the
 * key's type, line too long (MT_CONFIG_LINE_MAX), duplicate key in the same file). */
int mt_config_load_file(struct mt_config *config, const char *path, char *error, size_t error_size);
/* Same, from memory (`name` used in messages). */
int mt_config_load_text(struct mt_config *config, const char *name, const char *text, size_t len,
                        char *error, size_t error_size);
/* MAILTRAIL_<KEY> variables (upper-case key). Unknown MAILTRAIL_* variables are errors
 * ("MAILTRAIL_FOO: unknown setting"). An empty value is checked like any other (an empty
 * CIDR list is fine, an empty path is not). */
int mt_config_load_env(struct mt_config *config, char *const *envp, char *error, size_t error_size);
/* One setting from a flag or a program; origin names it in errors ("--http: ..."). */
int mt_config_set(struct mt_config *config, const char *key, const char *value, const char *origin,
                  char *error, size_t error_size);

/* For each key that was set but whose feature is not built yet: calls warn(key, origin, ctx),
 * origin being "FILE:LINE", "MAILTRAIL_KEY" or the flag's origin. */
void mt_config_each_unbuilt(const struct mt_config *config,
                            void (*warn)(const char *key, const char *origin, void *ctx),
                            void *ctx);
/* Lets later issues flip keys on without editing the table; unknown keys are ignored. */
void mt_config_mark_built(const char *key, bool built);

/* True if `key` is in the table and its feature is built (docs/configuration.md says which). */
bool mt_config_key_built(const char *key);
/* True if `key` is in the table. */
bool mt_config_key_known(const char *key);
/* The table, in order: for --help, flag parsing and tests. NULL past the end. */
size_t mt_config_key_count(void);
const char *mt_config_key_name(size_t index);
/* True if the key was set by any source (as opposed to holding its default). */
bool mt_config_is_set(const struct mt_config *config, const char *key);
/* Where the key's value came from ("FILE:LINE", "MAILTRAIL_HTTP", "--http"), else NULL. */
const char *mt_config_origin(const struct mt_config *config, const char *key);

/* Value, else default, else NULL. Enumerated values (BOOL, LEVEL) come back lower-cased. */
const char *mt_config_str(const struct mt_config *config, const char *key);
/* INT, BOOL (0/1), DURATION (seconds), SIZE (bytes); 0 for other types or an unset key
 * without a default. */
int64_t mt_config_int(const struct mt_config *config, const char *key);
bool mt_config_bool(const struct mt_config *config, const char *key);
/* CIDR-typed keys (and the CIDR entries of no_auth_hosts), parsed; never NULL. */
const struct mt_cidr_list *mt_config_cidrs(const struct mt_config *config, const char *key);
/* For a HOSTS_OR_CIDRS key (no_auth_hosts): true if `host` equals a listed name
 * (ASCII case-insensitive, a trailing dot ignored) or `addr_or_null` is in a listed CIDR. */
bool mt_config_host_listed(const struct mt_config *config, const char *key, const char *host,
                           const struct sockaddr *addr_or_null);

/* relay_user_limits and other LIMITS keys: "500/hour, 2000/day". */
struct mt_config_limit {
	int64_t limit;
	int64_t window_s; /* 60, 3600 or 86400 */
};
/* Fills `out` and returns the number of entries (0 when unset). */
size_t mt_config_limits(const struct mt_config *config, const char *key,
                        struct mt_config_limit out[MT_SEND_LIMITS_MAX]);

/* The relay URL, split: smtp://[USER@]HOST:PORT (STARTTLS required) or smtps://... (implicit
 * TLS). USER may itself contain '@' (the last '@' ends it); a password is refused. */
struct mt_relay_url {
	bool implicit_tls;
	char user[MT_SASL_USER_MAX + 1];
	char host[MT_HOSTNAME_MAX + 1];
	uint16_t port;
};
int mt_relay_url_parse(const char *url, struct mt_relay_url *out, const char **error_r);

#endif
