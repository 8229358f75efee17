#include "engine/profiles.h"

#include "mime/address.h"

#include <string.h>

static const char *const kind_names[] = {
    [STORE_PROFILE_APPLICANT] = "applicant",
    [STORE_PROFILE_CONTACT] = "contact",
    [STORE_PROFILE_EMPLOYEE] = "employee",
};

const char *profile_kind_name(enum store_profile_kind kind)
{
	return (size_t)kind < sizeof(kind_names) / sizeof(kind_names[0]) ? kind_names[kind] : "?";
}

int profile_kind_parse(const char *text, enum store_profile_kind *kind_r)
{
	for (size_t i = 0; i < sizeof(kind_names) / sizeof(kind_names[0]); i++) {
		if (strcmp(text, kind_names[i]) == 0) {
			*kind_r = (enum store_profile_kind)i;
			return 0;
		}
	}
	return -1;
}

int profile_add_email(struct store_profile *profile, const char *input, const char **error_r)
{
	char address[MT_ADDRESS_MAX + 1];
	if (mime_address_normalize(input, address, error_r) < 0)
		return -1;
	for (size_t i = 0; i < profile->email_count; i++)
		if (strcmp(profile->emails[i], address) == 0)
			return 0;
	if (profile->email_count == MT_PROFILE_EMAILS_MAX) {
		*error_r = "too many addresses";
		return -1;
	}
	memcpy(profile->emails[profile->email_count++], address, sizeof(address));
	return 0;
}
