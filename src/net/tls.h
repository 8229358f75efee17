/* TLS configuration and certificate pins over OpenSSL 3.
 *
 * A client context trusts the system CA store plus an optional PEM bundle, speaks TLS 1.2 or
 * newer, and verifies the host name. The only alternative to CA verification is a pin
 * (DESIGN.md §2): "sha256:" + hex of the leaf certificate's DER (upper case and AB:CD:… colon
 * form accepted) or "spki-sha256:" + hex of its SubjectPublicKeyInfo. Ownership: the caller owns
 * an mt_tls_config and frees it after every connection using it is gone. */
#ifndef MT_NET_TLS_H
#define MT_NET_TLS_H

#include "lib/limits.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

enum mt_tls_pin_kind { MT_PIN_NONE, MT_PIN_CERT_SHA256, MT_PIN_SPKI_SHA256 };

struct mt_tls_pin {
	enum mt_tls_pin_kind kind;
	unsigned char digest[32];
};

struct mt_tls_config;

/* ca_file may be NULL. NULL with *error_r on failure (unreadable CA file...). */
struct mt_tls_config *mt_tls_config_new(const char *ca_file, const char **error_r);
void mt_tls_config_free(struct mt_tls_config **config);
SSL_CTX *mt_tls_config_ctx(struct mt_tls_config *config);

/* Parses a pin; 1 on success, -1 with *error_r. */
int mt_tls_pin_parse(const char *text, struct mt_tls_pin *pin_r, const char **error_r);
/* "sha256:AB12..." (lower-case hex, no colons) of a certificate's DER. */
void mt_tls_cert_fingerprint(X509 *cert, char *out, size_t out_size);
bool mt_tls_pin_matches(const struct mt_tls_pin *pin, X509 *cert);

#endif
