/* Strict request-body decoding with a field table shaped like PUT /v1/smtp. */
#include "lib/limits.h"
#include "proto/json_decode.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_string(const char *s, size_t max, bool single_line)
{
	if (s == NULL)
		return;
	size_t len = strlen(s);
	if (len > max || (single_line && strpbrk(s, "\r\n") != NULL))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char error[MT_JSON_ERROR_MAX];
	error[0] = '\0';
	json_t *root = json_decode_body((const char *)data, size, error, sizeof(error));
	if (root == NULL) {
		if (error[0] == '\0')
			abort();
		return 0;
	}
	if (!json_is_object(root))
		abort();

	const char *preset = NULL, *host = NULL, *security = NULL, *auth = NULL, *username = NULL,
	           *password = NULL, *from = NULL, *window = NULL, *fingerprint = NULL;
	int64_t port = 0, limit = 0;
	bool accept = false, has_port = false;
	json_t *limits = NULL;
	const struct json_field fields[] = {
	    {.name = "preset",
	     .type = JSON_FIELD_STRING,
	     .max_len = 64,
	     .single_line = true,
	     .out = &preset},
	    {.name = "host",
	     .type = JSON_FIELD_STRING,
	     .required = true,
	     .max_len = MT_HOST_FIELD_MAX,
	     .single_line = true,
	     .out = &host},
	    {.name = "port",
	     .type = JSON_FIELD_INT,
	     .min = 1,
	     .max = 65535,
	     .out = &port,
	     .present = &has_port},
	    {.name = "security",
	     .type = JSON_FIELD_STRING,
	     .max_len = 16,
	     .single_line = true,
	     .out = &security},
	    {.name = "auth",
	     .type = JSON_FIELD_STRING,
	     .max_len = 16,
	     .single_line = true,
	     .nullable = true,
	     .out = &auth},
	    {.name = "username",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_SASL_USER_MAX,
	     .single_line = true,
	     .out = &username},
	    {.name = "password",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_SASL_SECRET_MAX,
	     .nullable = true,
	     .out = &password},
	    {.name = "from",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_ADDRESS_MAX,
	     .single_line = true,
	     .out = &from},
	    {.name = "limits",
	     .type = JSON_FIELD_ARRAY,
	     .max_items = MT_SEND_LIMITS_MAX,
	     .out = &limits},
	    {.name = "limit", .type = JSON_FIELD_INT, .min = 1, .max = 1000000, .out = &limit},
	    {.name = "window", .type = JSON_FIELD_STRING, .max_len = 8, .out = &window},
	    {.name = "accept_disclaimer", .type = JSON_FIELD_BOOL, .out = &accept},
	    {.name = "tls_fingerprint",
	     .type = JSON_FIELD_STRING,
	     .max_len = MT_TLS_FINGERPRINT_MAX,
	     .single_line = true,
	     .nullable = true,
	     .out = &fingerprint},
	};
	error[0] = '\0';
	int ret = json_decode_fields(root, fields, sizeof(fields) / sizeof(fields[0]), error,
	                             sizeof(error));
	if (ret == 0) {
		if (host == NULL || (has_port && (port < 1 || port > 65535)))
			abort();
		check_string(host, MT_HOST_FIELD_MAX, true);
		check_string(username, MT_SASL_USER_MAX, true);
		check_string(from, MT_ADDRESS_MAX, true);
		check_string(fingerprint, MT_TLS_FINGERPRINT_MAX, true);
		if (limits != NULL && json_array_size(limits) > MT_SEND_LIMITS_MAX)
			abort();
		/* Each limits entry goes through the same decoder, as the handler would do. */
		size_t i;
		json_t *entry;
		json_array_foreach(limits, i, entry)
		{
			int64_t n = 0;
			const char *w = NULL;
			const struct json_field sub[] = {
			    {.name = "limit",
			     .type = JSON_FIELD_INT,
			     .required = true,
			     .min = 1,
			     .max = 1000000,
			     .out = &n},
			    {.name = "window",
			     .type = JSON_FIELD_STRING,
			     .required = true,
			     .max_len = 8,
			     .out = &w},
			};
			if (json_decode_fields(entry, sub, 2, error, sizeof(error)) == 0 &&
			    (w == NULL || n < 1))
				abort();
		}
		(void)preset, (void)security, (void)auth, (void)password, (void)window,
		    (void)accept, (void)limit;
	} else if (ret != -1 || strncmp(error, "field '", 7) != 0) {
		abort();
	}
	json_decref(root);
	return 0;
}
