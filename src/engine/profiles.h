/* What a profile may hold (DESIGN.md §1 Profile): its kinds and its addresses, normalised
 * (trimmed, lower-cased, IDN domain in ASCII) and distinct. Shared by the API's create and
 * patch and by the CSV import. Pure. */
#ifndef MT_ENGINE_PROFILES_H
#define MT_ENGINE_PROFILES_H

#include "store/store_profile.h"

const char *profile_kind_name(enum store_profile_kind kind);
/* 0, or -1 for a word that is not applicant, contact or employee. */
int profile_kind_parse(const char *text, enum store_profile_kind *kind_r);
/* Adds one address, normalised, unless the profile has it already. 0, or -1 with *error_r (an
 * invalid address, more than MT_PROFILE_EMAILS_MAX). */
int profile_add_email(struct store_profile *profile, const char *input, const char **error_r);

#endif
