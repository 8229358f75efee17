#include "net/tls.h"

#include "lib/str.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct mt_tls_config {
	SSL_CTX *ctx;
};

/* Records the first verification problem and lets the handshake go on: we want to finish it so
 * that the failure can name the certificate the server presented, and so that a pin can replace
 * CA verification. Nothing is sent before mt_tls_check_peer() has accepted the peer. */
static int tls_verify_record(int preverify_ok, X509_STORE_CTX *store)
{
	if (preverify_ok)
		return 1;
	SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct mt_tls_verify_state *state = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
	if (state != NULL && state->first_error == X509_V_OK) {
		state->first_error = X509_STORE_CTX_get_error(store);
		state->first_error_depth = X509_STORE_CTX_get_error_depth(store);
	}
	return 1;
}

struct mt_tls_config *mt_tls_config_new(const char *ca_file, const char **error_r)
{
	struct mt_tls_config *config = calloc(1, sizeof(*config));
	if (config == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	config->ctx = SSL_CTX_new(TLS_client_method());
	if (config->ctx == NULL) {
		*error_r = "cannot create a TLS context";
		free(config);
		return NULL;
	}
	SSL_CTX *ctx = config->ctx;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* Our output buffer may be reallocated between an SSL_write that wanted I/O and its retry,
	 * and idle connections should not pin 2 x 16 KiB of record buffers each. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE |
	                          SSL_MODE_RELEASE_BUFFERS);
	/* Many servers close without close_notify; that is an ordinary end of stream for SMTP and
	 * IMAP, whose own protocol says when a message is complete. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, tls_verify_record);
	if (SSL_CTX_set_default_verify_paths(ctx) != 1)
		ERR_clear_error(); /* no system store is not fatal: a CA file or a pin may follow */
	if (ca_file != NULL && SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
		ERR_clear_error();
		*error_r = "cannot load the CA file (missing, unreadable or not a PEM bundle)";
		mt_tls_config_free(&config);
		return NULL;
	}
	return config;
}

void mt_tls_config_free(struct mt_tls_config **config)
{
	if (config == NULL || *config == NULL)
		return;
	SSL_CTX_free((*config)->ctx);
	free(*config);
	*config = NULL;
}

SSL_CTX *mt_tls_config_ctx(struct mt_tls_config *config)
{
	return config->ctx;
}

/* 64 hex digits, or 32 pairs separated by single colons ("AB:CD:..."). */
static int parse_digest_hex(const char *hex, unsigned char digest[32], const char **error_r)
{
	size_t len = strlen(hex);
	bool colons = len >= 3 && hex[2] == ':';
	size_t expected = colons ? 32 * 3 - 1 : 64;
	if (len != expected) {
		*error_r =
		    "pin digest must be 64 hex digits (32 bytes), optionally as AB:CD:... pairs";
		return -1;
	}
	size_t pos = 0;
	for (size_t i = 0; i < 32; i++) {
		if (colons && i > 0) {
			if (hex[pos] != ':') {
				*error_r = "pin digest pairs must be separated by single colons";
				return -1;
			}
			pos++;
		}
		int hi = mt_hex_value(hex[pos]);
		int lo = mt_hex_value(hex[pos + 1]);
		if (hi < 0 || lo < 0) {
			*error_r = "pin digest contains a character that is not a hex digit";
			return -1;
		}
		digest[i] = (unsigned char)(hi << 4 | lo);
		pos += 2;
	}
	return 0;
}

int mt_tls_pin_parse(const char *text, struct mt_tls_pin *pin_r, const char **error_r)
{
	static const char cert_prefix[] = "sha256:";
	static const char spki_prefix[] = "spki-sha256:";
	struct mt_tls_pin pin = {.kind = MT_PIN_NONE};
	const char *hex;

	if (text == NULL) {
		*error_r = "pin is missing";
		return -1;
	}
	if (strncasecmp(text, spki_prefix, sizeof(spki_prefix) - 1) == 0) {
		pin.kind = MT_PIN_SPKI_SHA256;
		hex = text + sizeof(spki_prefix) - 1;
	} else if (strncasecmp(text, cert_prefix, sizeof(cert_prefix) - 1) == 0) {
		pin.kind = MT_PIN_CERT_SHA256;
		hex = text + sizeof(cert_prefix) - 1;
	} else {
		*error_r =
		    "pin must start with \"sha256:\" (certificate) or \"spki-sha256:\" (public "
		    "key)";
		return -1;
	}
	if (parse_digest_hex(hex, pin.digest, error_r) < 0)
		return -1;
	*pin_r = pin;
	return 0;
}

static void format_digest(const char *prefix, const unsigned char digest[32], char *out,
                          size_t out_size)
{
	static const char hex[] = "0123456789abcdef";
	char text[sizeof("spki-sha256:") + 64];
	size_t pos = mt_strlcpy(text, prefix, sizeof(text));
	for (size_t i = 0; i < 32; i++) {
		text[pos++] = hex[digest[i] >> 4];
		text[pos++] = hex[digest[i] & 0x0f];
	}
	text[pos] = '\0';
	mt_strlcpy(out, text, out_size);
}

/* Fingerprints are taken over DER so that they match `openssl x509 -fingerprint -sha256`. */
static int digest_cert_der(X509 *cert, unsigned char digest[32])
{
	unsigned char *der = NULL;
	int len = i2d_X509(cert, &der);
	if (len <= 0)
		return -1;
	int ok = EVP_Digest(der, (size_t)len, digest, NULL, EVP_sha256(), NULL);
	OPENSSL_free(der);
	return ok == 1 ? 0 : -1;
}

static int digest_spki_der(X509 *cert, unsigned char digest[32])
{
	unsigned char *der = NULL;
	int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
	if (len <= 0)
		return -1;
	int ok = EVP_Digest(der, (size_t)len, digest, NULL, EVP_sha256(), NULL);
	OPENSSL_free(der);
	return ok == 1 ? 0 : -1;
}

void mt_tls_cert_fingerprint(X509 *cert, char *out, size_t out_size)
{
	unsigned char digest[32];
	if (cert == NULL || digest_cert_der(cert, digest) < 0) {
		mt_strlcpy(out, "", out_size);
		return;
	}
	format_digest("sha256:", digest, out, out_size);
}

void mt_tls_spki_fingerprint(X509 *cert, char *out, size_t out_size)
{
	unsigned char digest[32];
	if (cert == NULL || digest_spki_der(cert, digest) < 0) {
		mt_strlcpy(out, "", out_size);
		return;
	}
	format_digest("spki-sha256:", digest, out, out_size);
}

bool mt_tls_pin_matches(const struct mt_tls_pin *pin, X509 *cert)
{
	unsigned char digest[32];
	if (pin == NULL || cert == NULL)
		return false;
	switch (pin->kind) {
	case MT_PIN_CERT_SHA256:
		if (digest_cert_der(cert, digest) < 0)
			return false;
		break;
	case MT_PIN_SPKI_SHA256:
		if (digest_spki_der(cert, digest) < 0)
			return false;
		break;
	default:
		return false;
	}
	return CRYPTO_memcmp(digest, pin->digest, sizeof(digest)) == 0;
}

bool mt_tls_host_is_ip(const char *host)
{
	unsigned char addr[16];
	return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

void mt_tls_last_error(const char *fallback, char *out, size_t out_size)
{
	unsigned long code = ERR_peek_last_error();
	const char *reason = code != 0 ? ERR_reason_error_string(code) : NULL;
	ERR_clear_error();
	mt_strlcpy(out, reason != NULL ? reason : fallback, out_size);
}

SSL *mt_tls_client_new(struct mt_tls_config *config, int fd, const char *host, bool pinned,
                       struct mt_tls_verify_state *state, const char **error_r)
{
	state->first_error = X509_V_OK;
	state->first_error_depth = 0;
	ERR_clear_error();
	SSL *ssl = SSL_new(config->ctx);
	if (ssl == NULL) {
		*error_r = "cannot create a TLS session";
		return NULL;
	}
	SSL_set_app_data(ssl, state);
	SSL_set_connect_state(ssl);
	if (SSL_set_fd(ssl, fd) != 1) {
		*error_r = "cannot attach the TLS session to the socket";
		goto fail;
	}
	/* Without read-ahead OpenSSL reads a record's 5-byte header, then its body: two recv()
	 * per record, ~1 per message of an IMAP FETCH. With it, one recv() takes what the socket
	 * has (up to its buffer). conn.c reads until the socket says EAGAIN, so nothing waits in
	 * OpenSSL's buffer without a read to come; a paused read resumes by a kick, not a socket
	 * event. */
	SSL_set_read_ahead(ssl, 1);
	bool is_ip = mt_tls_host_is_ip(host);
	/* RFC 6066 §3: SNI carries host names only, never address literals. */
	if (!is_ip && SSL_set_tlsext_host_name(ssl, host) != 1) {
		*error_r = "cannot set the TLS server name";
		goto fail;
	}
	/* With a pin the pin alone decides; the CA chain and names are not consulted. */
	if (!pinned) {
		X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
		X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host)
		               : X509_VERIFY_PARAM_set1_host(param, host, 0);
		if (ok != 1) {
			*error_r = "cannot set the name to verify in the certificate";
			goto fail;
		}
	}
	SSL_set_verify(ssl, SSL_VERIFY_PEER, tls_verify_record);
	return ssl;
fail:
	ERR_clear_error();
	SSL_free(ssl);
	return NULL;
}

int mt_tls_check_peer(SSL *ssl, const struct mt_tls_pin *pin,
                      const struct mt_tls_verify_state *state, char *reason, size_t reason_size,
                      char *fingerprint, size_t fingerprint_size)
{
	X509 *leaf = SSL_get0_peer_certificate(ssl);
	mt_strlcpy(fingerprint, "", fingerprint_size);
	if (leaf == NULL) {
		mt_strlcpy(reason, "the server presented no certificate", reason_size);
		return -1;
	}
	mt_tls_cert_fingerprint(leaf, fingerprint, fingerprint_size);
	if (pin != NULL && pin->kind != MT_PIN_NONE) {
		if (mt_tls_pin_matches(pin, leaf))
			return 0;
		if (pin->kind == MT_PIN_SPKI_SHA256) {
			char spki[MT_TLS_FINGERPRINT_MAX];
			mt_tls_spki_fingerprint(leaf, spki, sizeof(spki));
			snprintf(reason, reason_size,
			         "certificate does not match the pinned public key (presented %s)",
			         spki);
		} else {
			mt_strlcpy(reason, "certificate does not match the pin", reason_size);
		}
		return -1;
	}
	long result =
	    state->first_error != X509_V_OK ? state->first_error : SSL_get_verify_result(ssl);
	if (result == X509_V_OK)
		return 0;
	snprintf(reason, reason_size, "certificate verify failed: %s",
	         X509_verify_cert_error_string(result));
	return -1;
}

void mt_tls_session_info(SSL *ssl, char *out, size_t out_size)
{
	snprintf(out, out_size, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
}
