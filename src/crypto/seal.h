/* Sealed secrets (SMTP/IMAP passwords, OAuth tokens at rest) and API tokens, over libsodium.
 *
 * Ownership: mt_keyring_load() returns a keyring the caller frees with mt_keyring_free(); its
 * keys live in sodium_malloc'ed memory (guard pages, mlock, wiped on free). mt_unseal() returns
 * a struct mt_secret the caller frees with mt_secret_free(). Error strings are static.
 * A loaded keyring is read-only and may be shared between threads. */
#ifndef MT_CRYPTO_SEAL_H
#define MT_CRYPTO_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "lib/limits.h"
#include "lib/secret.h"

struct mt_keyring;

/* Creates the key file (O_CREAT|O_EXCL, mode 0600) holding one new random key with id 1;
 * -1 with *error_r if it exists or cannot be written. */
int mt_keyring_create(const char *path, const char **error_r);
/* Appends a new random key (id = highest + 1) to an existing key file, which makes it the key
 * new seals use; older keys stay to open what they sealed. */
int mt_keyring_rotate(const char *path, const char **error_r);
/* Loads the keys: lines "KEYID HEX64" (KEYID a positive integer), '#' comments; the last line
 * is the key new seals use; refuses a file readable or writable by group/others (*error_r says
 * "chmod 600 FILE"). */
struct mt_keyring *mt_keyring_load(const char *path, const char **error_r);
void mt_keyring_free(struct mt_keyring **keyring);
/* The id of the key new seals use. */
uint32_t mt_keyring_current_id(const struct mt_keyring *keyring);

/* Sealed layout: version byte 1 | key id (4 bytes BE) | nonce (24) | ciphertext + tag (16). */
#define MT_SEAL_VERSION  1
#define MT_SEAL_OVERHEAD (1 + 4 + 24 + 16)

/* XChaCha20-Poly1305 (IETF); associated data = version, key id and `context` (e.g.
 * "smtp:usr_abc", binding a sealed secret to its account). -1 if out_size is too small (use
 * MT_SEALED_MAX), the context is too long or the plaintext exceeds MT_SASL_SECRET_MAX. */
int mt_seal(const struct mt_keyring *keyring, const char *context, const unsigned char *plain,
            size_t len, unsigned char *out, size_t out_size, size_t *out_len_r);
/* Opens into guarded memory; NULL with *error_r ("unknown key id 3", "authentication failed",
 * "unknown sealed format") — errors never include secret bytes. */
struct mt_secret *mt_unseal(const struct mt_keyring *keyring, const char *context,
                            const unsigned char *sealed, size_t len, const char **error_r);
/* The key id a sealed blob names (to find rows to re-seal after a rotation); 0 if malformed. */
uint32_t mt_sealed_key_id(const unsigned char *sealed, size_t len);

#define MT_TOKEN_TEXT_MAX 64
/* API tokens: "mt_" + base64url (no padding) of 32 random bytes (46 characters). */
void mt_token_new(char out[MT_TOKEN_TEXT_MAX]);
/* Org-level API keys: "mtk_" + base64url of 32 random bytes (47 characters). The prefix only
 * tells the server where to look the key up (a user token's third character is '_'); what
 * admits it is its SHA-256, as for a token. */
#define MT_API_KEY_PREFIX "mtk_"
void mt_api_key_new(char out[MT_TOKEN_TEXT_MAX]);
/* SHA-256 of the token or key text (what the store keeps). */
void mt_token_hash(const char *token, unsigned char out[32]);

#endif
