/* Provider presets for the Custom SMTP form (GET /v1/smtp/presets; `preset` in PUT /v1/smtp
 * fills what the request omits). Send limits are the vendor FAQ's recommendations: a margin
 * below each provider's own cap, so the recruiter's other mail still goes out. */
#ifndef MT_ENGINE_SMTP_PRESETS_H
#define MT_ENGINE_SMTP_PRESETS_H

#include <stddef.h>
#include <stdint.h>

struct smtp_preset_limit {
	int64_t limit;
	const char *window; /* "minute" | "hour" | "day" */
};

struct smtp_preset {
	const char *id;
	const char *name;
	const char *host; /* NULL: the user must give it (e.g. Intermedia's per-customer host) */
	int port;
	const char *security;
	const char *auth;
	struct smtp_preset_limit limits[2];
	size_t limit_count;
	const char *notes;
	/* OAuth endpoints for providers that offer XOAUTH2; NULL otherwise. */
	const char *oauth_auth_url;
	const char *oauth_token_url;
	const char *oauth_scopes;
	const char *oauth_provider; /* the grant's provider ("google", "microsoft") */
};

const struct smtp_preset *smtp_presets(size_t *count_r);
const struct smtp_preset *smtp_preset_find(const char *id);

#endif
