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

/* Parses a pin; 0 on success, -1 with *error_r. */
int mt_tls_pin_parse(const char *text, struct mt_tls_pin *pin_r, const char **error_r);
/* "sha256:AB12..." (lower-case hex, no colons) of a certificate's DER. */
void mt_tls_cert_fingerprint(X509 *cert, char *out, size_t out_size);
bool mt_tls_pin_matches(const struct mt_tls_pin *pin, X509 *cert);
/* "spki-sha256:<64 lower hex>" of a certificate's SubjectPublicKeyInfo (what a public-key pin
 * names; survives certificate renewal with the same key). */
void mt_tls_spki_fingerprint(X509 *cert, char *out, size_t out_size);

/* Per-connection helpers for net/conn.c. */

/* Filled during the handshake: the first chain or name error, recorded instead of aborting. */
struct mt_tls_verify_state {
	long first_error; /* X509_V_OK when none */
	int first_error_depth;
};

/* True for an IPv4 or IPv6 address literal (no brackets). */
bool mt_tls_host_is_ip(const char *host);
/* A client session on the connected socket `fd`: SNI for host names, and unless `pinned`, the
 * host name (or IP literal) to verify. `state` must outlive the SSL. NULL with *error_r. */
SSL *mt_tls_client_new(struct mt_tls_config *config, int fd, const char *host, bool pinned,
                       struct mt_tls_verify_state *state, const char **error_r);
/* After a completed handshake, decides whether to trust the peer: the pin when given, else the
 * CA chain and host name. 0 trusted; -1 with a reason and the leaf's "sha256:" fingerprint (""
 * when the server sent no certificate). */
int mt_tls_check_peer(SSL *ssl, const struct mt_tls_pin *pin,
                      const struct mt_tls_verify_state *state, char *reason, size_t reason_size,
                      char *fingerprint, size_t fingerprint_size);
/* OpenSSL's reason for the last queued error (e.g. "wrong version number"), or `fallback`;
 * clears the thread's error queue. */
void mt_tls_last_error(const char *fallback, char *out, size_t out_size);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384". */
void mt_tls_session_info(SSL *ssl, char *out, size_t out_size);

#endif
