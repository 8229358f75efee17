/* The token endpoint's reply reader: any status, any body. */
#include "lib/limits.h"
#include "proto/oauth_token.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = {200, 400, 401, 429, 503};
	long status = size > 0 ? statuses[data[0] % 5] : 200;
	const char *body = size > 0 ? (const char *)data + 1 : "";
	size_t len = size > 0 ? size - 1 : 0;
	struct oauth_token_reply r;
	const char *error = NULL;
	int ret = oauth_token_reply_parse(status, body, len, &r, &error);
	if (ret == 0) {
		if (memchr(r.reason, '\0', sizeof(r.reason)) == NULL ||
		    memchr(r.error, '\0', sizeof(r.error)) == NULL)
			abort();
		/* a token only with OK, and then always one, within its cap */
		if ((r.outcome == OAUTH_OK) != (r.access_token != NULL))
			abort();
		if (r.access_token != NULL && (mt_secret_len(r.access_token) == 0 ||
		                               mt_secret_len(r.access_token) > MT_OAUTH_TOKEN_MAX))
			abort();
		if (r.outcome != OAUTH_OK && r.refresh_token != NULL)
			abort();
		oauth_token_reply_clear(&r);
	} else if (ret != -1 || error == NULL || r.access_token != NULL ||
	           r.refresh_token != NULL) {
		abort();
	}
	return 0;
}
