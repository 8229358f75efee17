/* The config file parser on arbitrary text: it must either apply every setting or none, name
 * the file and line in its errors, and leave values the getters can read. */
#include "config/config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A printable digest of every key's value and origin, to compare before and after. */
static char *snapshot(const struct mt_config *config)
{
	size_t cap = 1 << 16, len = 0;
	char *out = malloc(cap);
	if (out == NULL)
		abort();
	for (size_t i = 0; i < mt_config_key_count(); i++) {
		const char *key = mt_config_key_name(i);
		const char *value = mt_config_str(config, key);
		const char *origin = mt_config_origin(config, key);
		size_t need = strlen(key) + (value != NULL ? strlen(value) : 0) +
		              (origin != NULL ? strlen(origin) : 0) + 64;
		if (len + need > cap) {
			cap = (len + need) * 2;
			out = realloc(out, cap);
			if (out == NULL)
				abort();
		}
		len += (size_t)snprintf(out + len, cap - len, "%s=%s@%s;%lld;%zu\n", key,
		                        value != NULL ? value : "-", origin != NULL ? origin : "-",
		                        (long long)mt_config_int(config, key),
		                        mt_config_cidrs(config, key)->count);
	}
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mt_config *config = mt_config_new();
	if (config == NULL)
		abort();
	/* a base layer, so that "none applied" is visible */
	char error[MT_ERROR_TEXT_MAX];
	static const char base[] = "db = base.db\nallow_private_hosts = 10.0.0.0/8\n";
	if (mt_config_load_text(config, "base", base, sizeof(base) - 1, error, sizeof(error)) < 0)
		abort();
	char *before = snapshot(config);
	error[0] = '\0';
	int ret = mt_config_load_text(config, "fuzz.conf", (const char *)data, size, error,
	                              sizeof(error));
	char *after = snapshot(config);
	if (ret < 0) {
		if (strncmp(error, "fuzz.conf:", 10) != 0 || strcmp(before, after) != 0)
			abort();
		for (const char *p = error; *p != '\0'; p++) {
			if ((unsigned char)*p < 0x20)
				abort();
		}
	} else if (ret != 0) {
		abort();
	}
	for (size_t i = 0; i < mt_config_key_count(); i++) {
		const char *value = mt_config_str(config, mt_config_key_name(i));
		if (value != NULL && (strchr(value, '\n') || strchr(value, '\r')))
			abort();
	}
	struct mt_config_limit limits[MT_SEND_LIMITS_MAX];
	if (mt_config_limits(config, "relay_user_limits", limits) > MT_SEND_LIMITS_MAX)
		abort();
	(void)mt_config_host_listed(config, "no_auth_hosts", "Mail.Example.COM.", NULL);
	free(before);
	free(after);
	mt_config_free(&config);
	if (config != NULL)
		abort();
	return 0;
}
