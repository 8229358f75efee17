/* The address parsers the API and CSV import apply to what users type (mime_address_normalize,
 * mime_domain_normalize, mime_mailbox_parse), on arbitrary text: 0 or -1, never a crash; a
 * result within its cap, normalised (normalising it again gives the same text), an address with
 * a local part and a dotted domain, a display name of valid UTF-8 within MT_NAME_MAX. */
#include "mime/address.h"
#include "mime/message.h"

#include "fuzz_checks.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	mime_init();
	return 0;
}

static void check_address(const char *a)
{
	size_t len = strnlen(a, MT_ADDRESS_MAX + 1);
	const char *at = strrchr(a, '@');
	if (len == 0 || len > MT_ADDRESS_MAX || at == NULL || at == a || strchr(at, '.') == NULL)
		abort();
	char again[MT_ADDRESS_MAX + 1];
	const char *error = NULL;
	if (mime_address_normalize(a, again, &error) != 0 || strcmp(a, again) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > MT_ADDRESS_INPUT_MAX * 2)
		return 0;
	char *input = malloc(size + 1);
	if (input == NULL)
		return 0;
	memcpy(input, data, size);
	input[size] = '\0';

	const char *error = NULL;
	char address[MT_ADDRESS_MAX + 1];
	int ret = mime_address_normalize(input, address, &error);
	if (ret == 0)
		check_address(address);
	else if (ret != -1 || error == NULL)
		abort();

	char domain[MT_HOST_FIELD_MAX + 1];
	error = NULL;
	ret = mime_domain_normalize(input, domain, &error);
	if (ret == 0) {
		char again[MT_HOST_FIELD_MAX + 1];
		if (strnlen(domain, MT_HOST_FIELD_MAX + 1) > MT_HOST_FIELD_MAX ||
		    strchr(domain, '@') != NULL || strchr(domain, '.') == NULL ||
		    mime_domain_normalize(domain, again, &error) != 0 || strcmp(domain, again) != 0)
			abort();
		(void)mime_domain_is_freemail(domain);
	} else if (ret != -1 || error == NULL) {
		abort();
	}

	struct mime_mailbox mailbox;
	error = NULL;
	ret = mime_mailbox_parse(input, &mailbox, &error);
	if (ret == 0) {
		check_address(mailbox.address);
		fuzz_check_utf8(mailbox.name, MT_NAME_MAX);
	} else if (ret != -1 || error == NULL) {
		abort();
	}
	free(input);
	return 0;
}
