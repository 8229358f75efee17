/* Email addresses and domains as users type them or CSV files carry them, normalised for
 * matching (DESIGN §1, Profile): trimmed, lower-cased, IDN domain in ASCII (punycode); no
 * other rewriting. This module is the only GMime/GLib user; the API is plain C.
 *
 * Ownership: results are written to caller buffers; error strings are static. */
#ifndef MT_MIME_ADDRESS_H
#define MT_MIME_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

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

/* The fast path of mime_address_normalize() and of the address lists in mime_parse_message():
 * `len` bytes of trimmed input in the common plain-ASCII shapes ("a.b@x.example",
 * "<a@x.example>", "Jack Smith <Jack@X.example>": a dot-atom of letters, digits and "_+-",
 * LDH labels without "--", a name of letters, digits and single spaces) are read without GMime
 * and libidn2; true with the address as the full path normalises it and the name as GMime reads
 * it (`name_r` may be NULL). False for anything else: the caller takes the full path. Both paths
 * give the same bytes (tests/unit/test_mime_address.c compares them). */
bool mime_address_simple(const char *s, size_t len, char addr_r[MT_ADDRESS_MAX + 1], char *name_r,
                         size_t name_size);
/* Tests only: false sends every address, and every text read for a snippet, the full way
 * (GMime, libidn2, GLib's Unicode tables), to compare the two. Not thread-safe. */
void mime_set_fast_paths(bool on);
bool mime_fast_paths(void);

struct mime_mailbox;
/* An address with its display name as typed ("Jürgen Müller <J@Example.de>"): the address
 * normalised as by mime_address_normalize, the name decoded and trimmed ("" if none). */
int mime_mailbox_parse(const char *input, struct mime_mailbox *mailbox_r, const char **error_r);

#endif
