#include "crypto/seal.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_BYTES    crypto_aead_xchacha20poly1305_ietf_KEYBYTES
#define NONCE_BYTES  crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_BYTES    crypto_aead_xchacha20poly1305_ietf_ABYTES
#define HEADER_BYTES (1 + 4 + NONCE_BYTES)

_Static_assert(MT_SEAL_OVERHEAD == HEADER_BYTES + TAG_BYTES, "sealed layout");
_Static_assert(MT_SEALED_MAX >= MT_SASL_SECRET_MAX + MT_SEAL_OVERHEAD, "MT_SEALED_MAX");

struct mt_keyring {
	size_t count;
	uint32_t ids[MT_KEYRING_KEYS_MAX];
	unsigned char (*keys)[KEY_BYTES]; /* sodium_malloc'ed, count entries */
};

/* Errors that name a file or a key id; static strings elsewhere. */
static _Thread_local char seal_error[MT_ERROR_TEXT_MAX];

static const char *errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *errorf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(seal_error, sizeof(seal_error), fmt, ap);
	va_end(ap);
	return seal_error;
}

static int write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One "ID HEX64\n" line, built in guarded memory and wiped after writing. */
static int write_new_key(int fd, uint32_t id)
{
	unsigned char *key = sodium_malloc(KEY_BYTES);
	char *line = sodium_malloc(32 + KEY_BYTES * 2 + 2);
	int ret = -1;
	if (key != NULL && line != NULL) {
		crypto_aead_xchacha20poly1305_ietf_keygen(key);
		int n = snprintf(line, 32, "%u ", (unsigned)id);
		sodium_bin2hex(line + n, KEY_BYTES * 2 + 1, key, KEY_BYTES);
		size_t len = (size_t)n + KEY_BYTES * 2;
		line[len++] = '\n';
		ret = write_all(fd, line, len) == 0 && fsync(fd) == 0 ? 0 : -1;
	}
	sodium_free(key);
	sodium_free(line);
	return ret;
}

int mt_keyring_create(const char *path, const char **error_r)
{
	static const char header[] =
	    "# mailtrail master key for sealed secrets: keep it out of database backups.\n"
	    "# Lines are \"KEYID HEX\"; the last one seals new secrets, older ones still open.\n";
	if (sodium_init() < 0) {
		*error_r = "libsodium failed to initialise";
		return -1;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		*error_r = errno == EEXIST ? errorf("%s: already exists", path)
		                           : errorf("%s: %s", path, strerror(errno));
		return -1;
	}
	/* the umask can only narrow 0600, but a file made by someone else's tool must not stay
	 * wider: make it explicit */
	if (fchmod(fd, 0600) < 0 || write_all(fd, header, sizeof(header) - 1) < 0 ||
	    write_new_key(fd, 1) < 0) {
		*error_r = errorf("%s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	if (close(fd) < 0) {
		*error_r = errorf("%s: %s", path, strerror(errno));
		unlink(path);
		return -1;
	}
	return 0;
}

/* Reads the whole file into guarded memory; checks the mode first. */
static char *read_key_file(const char *path, size_t *len_r, const char **error_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		*error_r = errorf("%s: %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		*error_r = errorf("%s: not a regular file", path);
		close(fd);
		return NULL;
	}
	if ((st.st_mode & 077) != 0) {
		*error_r = errorf("%s: readable or writable by others; chmod 600 %s", path, path);
		close(fd);
		return NULL;
	}
	char *text = sodium_malloc(MT_KEYRING_FILE_MAX + 1);
	if (text == NULL) {
		*error_r = "out of memory";
		close(fd);
		return NULL;
	}
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, text + len, MT_KEYRING_FILE_MAX + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = errorf("%s: %s", path, strerror(errno));
			close(fd);
			sodium_free(text);
			return NULL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > MT_KEYRING_FILE_MAX) {
			*error_r = errorf("%s: larger than %d bytes", path, MT_KEYRING_FILE_MAX);
			close(fd);
			sodium_free(text);
			return NULL;
		}
	}
	close(fd);
	text[len] = '\0';
	*len_r = len;
	return text;
}

static bool parse_id(const char *s, size_t len, uint32_t *id_r)
{
	if (len == 0 || len > 10 || s[0] == '0')
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > UINT32_MAX)
		return false;
	*id_r = (uint32_t)v;
	return true;
}

struct mt_keyring *mt_keyring_load(const char *path, const char **error_r)
{
	if (sodium_init() < 0) {
		*error_r = "libsodium failed to initialise";
		return NULL;
	}
	size_t len;
	char *text = read_key_file(path, &len, error_r);
	if (text == NULL)
		return NULL;
	struct mt_keyring *keyring = calloc(1, sizeof(*keyring));
	if (keyring != NULL)
		keyring->keys = sodium_allocarray(MT_KEYRING_KEYS_MAX, KEY_BYTES);
	if (keyring == NULL || keyring->keys == NULL) {
		*error_r = "out of memory";
		goto fail;
	}
	unsigned lineno = 0;
	for (size_t pos = 0; pos < len;) {
		lineno++;
		const char *line = text + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t line_len = nl != NULL ? (size_t)(nl - line) : len - pos;
		pos += line_len + 1;
		while (line_len > 0 && (line[line_len - 1] == '\r' || line[line_len - 1] == ' ' ||
		                        line[line_len - 1] == '\t'))
			line_len--;
		size_t start = 0;
		while (start < line_len && (line[start] == ' ' || line[start] == '\t'))
			start++;
		if (start == line_len || line[start] == '#')
			continue;
		size_t id_len = 0;
		while (start + id_len < line_len && line[start + id_len] != ' ' &&
		       line[start + id_len] != '\t')
			id_len++;
		size_t hex = start + id_len;
		while (hex < line_len && (line[hex] == ' ' || line[hex] == '\t'))
			hex++;
		uint32_t id;
		/* the line's text is never quoted back: it holds key material */
		if (!parse_id(line + start, id_len, &id)) {
			*error_r = errorf("%s:%u: expected \"KEYID HEX\" with a positive KEYID",
			                  path, lineno);
			goto fail;
		}
		if (keyring->count == MT_KEYRING_KEYS_MAX) {
			*error_r = errorf("%s: more than %d keys", path, MT_KEYRING_KEYS_MAX);
			goto fail;
		}
		for (size_t i = 0; i < keyring->count; i++) {
			if (keyring->ids[i] == id) {
				*error_r = errorf("%s:%u: key id %u appears twice", path, lineno,
				                  (unsigned)id);
				goto fail;
			}
		}
		size_t bin_len = 0;
		if (line_len - hex != KEY_BYTES * 2 ||
		    sodium_hex2bin(keyring->keys[keyring->count], KEY_BYTES, line + hex,
		                   line_len - hex, NULL, &bin_len, NULL) != 0 ||
		    bin_len != KEY_BYTES) {
			*error_r = errorf("%s:%u: key %u is not %d hex digits", path, lineno,
			                  (unsigned)id, KEY_BYTES * 2);
			goto fail;
		}
		keyring->ids[keyring->count++] = id;
	}
	if (keyring->count == 0) {
		*error_r = errorf("%s: no key in the file", path);
		goto fail;
	}
	/* nothing writes the keys after loading: a stray write faults instead of corrupting */
	sodium_mprotect_readonly(keyring->keys);
	sodium_free(text);
	return keyring;
fail:
	sodium_free(text);
	mt_keyring_free(&keyring);
	return NULL;
}

void mt_keyring_free(struct mt_keyring **keyring)
{
	if (*keyring == NULL)
		return;
	sodium_free((*keyring)->keys); /* wipes */
	free(*keyring);
	*keyring = NULL;
}

uint32_t mt_keyring_current_id(const struct mt_keyring *keyring)
{
	return keyring->ids[keyring->count - 1];
}

int mt_keyring_rotate(const char *path, const char **error_r)
{
	struct mt_keyring *keyring = mt_keyring_load(path, error_r);
	if (keyring == NULL)
		return -1;
	uint32_t max = 0;
	for (size_t i = 0; i < keyring->count; i++)
		max = keyring->ids[i] > max ? keyring->ids[i] : max;
	size_t count = keyring->count;
	mt_keyring_free(&keyring);
	if (count == MT_KEYRING_KEYS_MAX || max == UINT32_MAX) {
		*error_r = errorf("%s: no room for another key", path);
		return -1;
	}
	int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		*error_r = errorf("%s: %s", path, strerror(errno));
		return -1;
	}
	/* a file edited by hand may lack its final newline */
	struct stat st;
	if (fstat(fd, &st) == 0 && st.st_size > 0) {
		char last = 0;
		int rfd = open(path, O_RDONLY | O_CLOEXEC);
		if (rfd >= 0) {
			if (pread(rfd, &last, 1, st.st_size - 1) == 1 && last != '\n')
				(void)write_all(fd, "\n", 1);
			close(rfd);
		}
	}
	int ret = write_new_key(fd, max + 1);
	if (close(fd) < 0 || ret < 0) {
		*error_r = errorf("%s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static const unsigned char *find_key(const struct mt_keyring *keyring, uint32_t id)
{
	for (size_t i = 0; i < keyring->count; i++) {
		if (keyring->ids[i] == id)
			return keyring->keys[i];
	}
	return NULL;
}

/* Associated data: the header's version and key id, then the context. Binding the key id means
 * a blob cannot be relabelled to another key; binding the context means a secret sealed for one
 * account cannot be pasted into another's row. */
static size_t build_ad(unsigned char *ad, const unsigned char header[5], const char *context)
{
	size_t clen = strlen(context);
	memcpy(ad, header, 5);
	memcpy(ad + 5, context, clen);
	return 5 + clen;
}

int mt_seal(const struct mt_keyring *keyring, const char *context, const unsigned char *plain,
            size_t len, unsigned char *out, size_t out_size, size_t *out_len_r)
{
	if (sodium_init() < 0 || keyring == NULL || keyring->count == 0 || context == NULL ||
	    strlen(context) > MT_SEAL_CONTEXT_MAX || len > MT_SASL_SECRET_MAX ||
	    out_size < len + MT_SEAL_OVERHEAD)
		return -1;
	uint32_t id = mt_keyring_current_id(keyring);
	out[0] = MT_SEAL_VERSION;
	out[1] = (unsigned char)(id >> 24);
	out[2] = (unsigned char)(id >> 16);
	out[3] = (unsigned char)(id >> 8);
	out[4] = (unsigned char)id;
	randombytes_buf(out + 5, NONCE_BYTES);
	unsigned char ad[5 + MT_SEAL_CONTEXT_MAX];
	size_t ad_len = build_ad(ad, out, context);
	unsigned long long clen = 0;
	if (crypto_aead_xchacha20poly1305_ietf_encrypt(out + HEADER_BYTES, &clen, plain, len, ad,
	                                               ad_len, NULL, out + 5,
	                                               keyring->keys[keyring->count - 1]) != 0)
		return -1;
	*out_len_r = HEADER_BYTES + (size_t)clen;
	return 0;
}

uint32_t mt_sealed_key_id(const unsigned char *sealed, size_t len)
{
	if (len < MT_SEAL_OVERHEAD || sealed[0] != MT_SEAL_VERSION)
		return 0;
	return (uint32_t)sealed[1] << 24 | (uint32_t)sealed[2] << 16 | (uint32_t)sealed[3] << 8 |
	       sealed[4];
}

struct mt_secret *mt_unseal(const struct mt_keyring *keyring, const char *context,
                            const unsigned char *sealed, size_t len, const char **error_r)
{
	if (sodium_init() < 0) {
		*error_r = "libsodium failed to initialise";
		return NULL;
	}
	if (context == NULL || strlen(context) > MT_SEAL_CONTEXT_MAX) {
		*error_r = "context too long";
		return NULL;
	}
	uint32_t id = mt_sealed_key_id(sealed, len);
	if (id == 0 || len > MT_SEALED_MAX) {
		*error_r = "unknown sealed format";
		return NULL;
	}
	const unsigned char *key = find_key(keyring, id);
	if (key == NULL) {
		*error_r = errorf("unknown key id %u", (unsigned)id);
		return NULL;
	}
	size_t plain_max = len - MT_SEAL_OVERHEAD;
	unsigned char *plain = sodium_malloc(plain_max + 1);
	if (plain == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	unsigned char ad[5 + MT_SEAL_CONTEXT_MAX];
	size_t ad_len = build_ad(ad, sealed, context);
	unsigned long long plain_len = 0;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plain_len, NULL,
	                                               sealed + HEADER_BYTES, len - HEADER_BYTES,
	                                               ad, ad_len, sealed + 5, key) != 0) {
		sodium_free(plain);
		*error_r = "authentication failed";
		return NULL;
	}
	struct mt_secret *secret = mt_secret_new(plain, (size_t)plain_len);
	sodium_free(plain); /* wipes */
	if (secret == NULL)
		*error_r = "out of memory";
	return secret;
}

void mt_token_new(char out[MT_TOKEN_TEXT_MAX])
{
	unsigned char bytes[32];
	if (sodium_init() < 0)
		abort(); /* no randomness: issuing a guessable token would be worse than stopping */
	randombytes_buf(bytes, sizeof(bytes));
	memcpy(out, "mt_", 3);
	sodium_bin2base64(out + 3, MT_TOKEN_TEXT_MAX - 3, bytes, sizeof(bytes),
	                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(bytes, sizeof(bytes));
}

void mt_api_key_new(char out[MT_TOKEN_TEXT_MAX])
{
	unsigned char bytes[32];
	if (sodium_init() < 0)
		abort();
	randombytes_buf(bytes, sizeof(bytes));
	size_t plen = strlen(MT_API_KEY_PREFIX);
	memcpy(out, MT_API_KEY_PREFIX, plen);
	sodium_bin2base64(out + plen, MT_TOKEN_TEXT_MAX - plen, bytes, sizeof(bytes),
	                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(bytes, sizeof(bytes));
}

void mt_token_hash(const char *token, unsigned char out[32])
{
	if (sodium_init() < 0)
		abort();
	crypto_hash_sha256(out, (const unsigned char *)token, strlen(token));
}
