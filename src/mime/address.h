/* Email addresses and domains as users type them or CSV files carry them, normalised for
 * matching (DESIGN §1, Profile): trimmed, lower-cased, IDN domain in ASCII (punycode); no
 * other rewriting. This module is the only GMime/GLib user; the API is plain C.
 *
 * Ownership: results are written to caller buffers; error strings are static. */
#ifndef MT_MIME_ADDRESS_H
#define MT_MIME_ADDRESS_H

#include <stdbool.h>

#include "lib/limits.h"

/* g_mime_init once; idempotent; call before threads start. The other functions call it too,
 * so tests need not, but a threaded program must call it first. */
void mime_init(void);

/* One address ("Jack Smith <Jack@Example.COM>", " jack@exämple.de "): exactly one mailbox with
 * a non-empty local part and a domain containing a dot. 0 and `out` ("jack@example.com"), or -1
 * with *error_r: "not an email address", "more than one address", "contains a line break",
 * "too long". The display name is accepted and dropped. */
int mime_address_normalize(const char *input, char out[MT_ADDRESS_MAX + 1], const char **error_r);

/* A bare domain (org domains, never-log entries): lower-case, IDNA to ASCII, at least one dot,
 * LDH labels, no '@'; one trailing dot is dropped. 0 or -1 with *error_r. */
int mime_domain_normalize(const char *input, char out[MT_HOST_FIELD_MAX + 1], const char **error_r);

/* True for free-mail providers (and their subdomains) that must not become an org's domain.
 * Expects a normalised domain. */
bool mime_domain_is_freemail(const char *domain);

struct mime_mailbox;
/* An address with its display name as typed ("Jürgen Müller <J@Example.de>"): the address
 * normalised as by mime_address_normalize, the name decoded and trimmed ("" if none). */
int mime_mailbox_parse(const char *input, struct mime_mailbox *mailbox_r, const char **error_r);

#endif
