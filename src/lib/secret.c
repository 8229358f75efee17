#include "lib/secret.h"
#include "lib/limits.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>

struct mt_secret {
	size_t len;
	unsigned char bytes[];
};

struct mt_secret *mt_secret_new(const void *bytes, size_t len)
{
	if (len > MT_SASL_SECRET_MAX || sodium_init() < 0)
		return NULL;
	/* sodium_malloc: guard pages and mlock, so the secret is not swapped out. */
	/* sodium_malloc puts the block against the guard page's end: round the size up so the
	 * struct stays aligned. */
	size_t size = (sizeof(struct mt_secret) + len + 1 + 15) & ~(size_t)15;
	struct mt_secret *secret = sodium_malloc(size);
	if (secret == NULL)
		return NULL;
	secret->len = len;
	memcpy(secret->bytes, bytes, len);
	secret->bytes[len] = 0;
	return secret;
}

struct mt_secret *mt_secret_from_file(const char *path, const char **error_r)
{
	unsigned char data[MT_SASL_SECRET_MAX + 2];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		*error_r = strerror(errno);
		return NULL;
	}
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, data + len, sizeof(data) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = strerror(errno);
			close(fd);
			sodium_memzero(data, sizeof(data));
			return NULL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == sizeof(data))
			break;
	}
	close(fd);
	if (len > 0 && data[len - 1] == '\n')
		len--;
	if (len > 0 && data[len - 1] == '\r')
		len--;
	struct mt_secret *secret = NULL;
	if (len > MT_SASL_SECRET_MAX)
		*error_r = "secret too long";
	else if ((secret = mt_secret_new(data, len)) == NULL)
		*error_r = "out of memory";
	sodium_memzero(data, sizeof(data));
	return secret;
}

void mt_secret_free(struct mt_secret **secret)
{
	if (*secret == NULL)
		return;
	sodium_free(*secret); /* zeroes the memory before releasing it */
	*secret = NULL;
}

size_t mt_secret_len(const struct mt_secret *secret)
{
	return secret->len;
}

const unsigned char *mt_secret_bytes(const struct mt_secret *secret)
{
	return secret->bytes;
}
