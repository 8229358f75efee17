/* Modified UTF-7: whatever decodes is valid UTF-8 and encodes back to the same bytes (there is
 * one canonical form); whatever UTF-8 encodes decodes back to itself. */
#include "fuzz_checks.h"
#include "lib/limits.h"
#include "lib/str.h"
#include "proto/imap_utf7.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size >= MT_IMAP_MAILBOX_MAX)
		return 0;
	char input[MT_IMAP_MAILBOX_MAX];
	memcpy(input, data, size);
	input[size] = '\0';
	size_t len = strlen(input);
	char utf8[MT_IMAP_MAILBOX_MAX], mutf7[4 * MT_IMAP_MAILBOX_MAX];
	const char *error = NULL;
	if (imap_utf7_decode(input, utf8, sizeof(utf8), &error) == 0) {
		fuzz_check_utf8(utf8, sizeof(utf8) - 1);
		if (imap_utf7_encode(utf8, mutf7, sizeof(mutf7), &error) != 0 ||
		    strcmp(mutf7, input) != 0)
			abort();
	} else if (error == NULL) {
		abort();
	}
	error = NULL;
	if (imap_utf7_encode(input, mutf7, sizeof(mutf7), &error) == 0) {
		if (!mt_utf8_valid(input, len))
			abort();
		for (const char *p = mutf7; *p != '\0'; p++) {
			if (*p < 0x20 || *p > 0x7e)
				abort();
		}
		if (imap_utf7_decode(mutf7, utf8, sizeof(utf8), &error) != 0 ||
		    strcmp(utf8, input) != 0)
			abort();
	} else if (error == NULL || mt_utf8_valid(input, len)) {
		abort(); /* valid UTF-8 of this size always fits */
	}
	return 0;
}
