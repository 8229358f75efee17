/* The XOAUTH2 error challenge decoder (base64, then JSON). */
#include "proto/sasl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sasl_xoauth2_error err;
	const char *error = NULL;
	int ret = sasl_xoauth2_parse_error((const char *)data, size, &err, &error);
	if (ret == 0) {
		if (memchr(err.status, '\0', sizeof(err.status)) == NULL ||
		    memchr(err.scope, '\0', sizeof(err.scope)) == NULL || err.status[0] == '\0')
			abort();
	} else if (ret != -1 || error == NULL) {
		abort();
	}
	return 0;
}
