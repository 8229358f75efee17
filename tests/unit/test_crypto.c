#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "crypto/seal.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];
static char path[128];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/mt-crypto-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/secret.key", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	rmdir(dir);
	return 0;
}

static void test_create_and_modes(void **state)
{
	(void)state;
	const char *error = NULL;
	assert_int_equal(mt_keyring_create(path, &error), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* O_EXCL: a second init must not replace the key that sealed everything */
	assert_int_equal(mt_keyring_create(path, &error), -1);
	assert_non_null(strstr(error, "already exists"));

	struct mt_keyring *keyring = mt_keyring_load(path, &error);
	assert_non_null(keyring);
	assert_int_equal(mt_keyring_current_id(keyring), 1);
	mt_keyring_free(&keyring);
	assert_null(keyring);

	assert_int_equal(chmod(path, 0644), 0);
	keyring = mt_keyring_load(path, &error);
	assert_null(keyring);
	char expected[256];
	snprintf(expected, sizeof(expected), "chmod 600 %s", path);
	assert_non_null(strstr(error, expected));
	assert_int_equal(chmod(path, 0620), 0);
	assert_null(mt_keyring_load(path, &error));
	assert_int_equal(chmod(path, 0600), 0);
	unlink(path);
}

static void test_seal_round_trip(void **state)
{
	(void)state;
	const char *error = NULL;
	assert_int_equal(mt_keyring_create(path, &error), 0);
	struct mt_keyring *keyring = mt_keyring_load(path, &error);
	assert_non_null(keyring);

	unsigned char sealed[MT_SEALED_MAX];
	size_t sealed_len = 0;
	const char *password = "hunter2 with spaces";
	size_t plen = strlen(password);
	assert_int_equal(mt_seal(keyring, "smtp:usr_abc", (const unsigned char *)password, plen,
	                         sealed, sizeof(sealed), &sealed_len),
	                 0);
	assert_int_equal(sealed_len, plen + MT_SEAL_OVERHEAD);
	assert_int_equal(sealed[0], 1);
	assert_int_equal(mt_sealed_key_id(sealed, sealed_len), 1);
	assert_null(memmem(sealed, sealed_len, "hunter2", 7));

	struct mt_secret *secret = mt_unseal(keyring, "smtp:usr_abc", sealed, sealed_len, &error);
	assert_non_null(secret);
	assert_int_equal(mt_secret_len(secret), plen);
	assert_memory_equal(mt_secret_bytes(secret), password, plen);
	mt_secret_free(&secret);

	/* two seals of the same secret differ (random nonce) */
	unsigned char again[MT_SEALED_MAX];
	size_t again_len;
	assert_int_equal(mt_seal(keyring, "smtp:usr_abc", (const unsigned char *)password, plen,
	                         again, sizeof(again), &again_len),
	                 0);
	assert_memory_not_equal(again, sealed, sealed_len);

	/* bound to its account */
	assert_null(mt_unseal(keyring, "smtp:usr_abd", sealed, sealed_len, &error));
	assert_string_equal(error, "authentication failed");
	assert_null(mt_unseal(keyring, "imap:usr_abc", sealed, sealed_len, &error));

	/* any flipped byte fails, none shows the secret in the error */
	for (size_t i = 0; i < sealed_len; i++) {
		sealed[i] ^= 0x01;
		secret = mt_unseal(keyring, "smtp:usr_abc", sealed, sealed_len, &error);
		assert_null(secret);
		assert_null(strstr(error, "hunter"));
		sealed[i] ^= 0x01;
	}
	assert_null(mt_unseal(keyring, "smtp:usr_abc", sealed, sealed_len - 1, &error));
	assert_null(mt_unseal(keyring, "smtp:usr_abc", sealed, 10, &error));
	assert_string_equal(error, "unknown sealed format");

	/* output too small */
	assert_int_equal(mt_seal(keyring, "c", (const unsigned char *)password, plen, sealed,
	                         plen + MT_SEAL_OVERHEAD - 1, &sealed_len),
	                 -1);
	/* empty secrets round-trip too */
	assert_int_equal(mt_seal(keyring, "c", (const unsigned char *)"", 0, sealed, sizeof(sealed),
	                         &sealed_len),
	                 0);
	secret = mt_unseal(keyring, "c", sealed, sealed_len, &error);
	assert_non_null(secret);
	assert_int_equal(mt_secret_len(secret), 0);
	mt_secret_free(&secret);
	/* the largest secret fits MT_SEALED_MAX */
	static unsigned char big[MT_SASL_SECRET_MAX + 1];
	memset(big, 'b', sizeof(big));
	assert_int_equal(
	    mt_seal(keyring, "c", big, MT_SASL_SECRET_MAX, sealed, sizeof(sealed), &sealed_len), 0);
	secret = mt_unseal(keyring, "c", sealed, sealed_len, &error);
	assert_non_null(secret);
	assert_int_equal(mt_secret_len(secret), MT_SASL_SECRET_MAX);
	mt_secret_free(&secret);
	/* more could be sealed but never opened into a struct mt_secret */
	assert_int_equal(
	    mt_seal(keyring, "c", big, sizeof(big), sealed, sizeof(sealed), &sealed_len), -1);
	mt_keyring_free(&keyring);
	unlink(path);
}

static void test_rotation(void **state)
{
	(void)state;
	const char *error = NULL;
	assert_int_equal(mt_keyring_create(path, &error), 0);
	struct mt_keyring *old = mt_keyring_load(path, &error);
	unsigned char sealed[MT_SEALED_MAX];
	size_t sealed_len;
	assert_int_equal(mt_seal(old, "ctx", (const unsigned char *)"old", 3, sealed,
	                         sizeof(sealed), &sealed_len),
	                 0);

	assert_int_equal(mt_keyring_rotate(path, &error), 0);
	struct mt_keyring *keyring = mt_keyring_load(path, &error);
	assert_non_null(keyring);
	assert_int_equal(mt_keyring_current_id(keyring), 2);
	/* old seals still open */
	struct mt_secret *secret = mt_unseal(keyring, "ctx", sealed, sealed_len, &error);
	assert_non_null(secret);
	assert_memory_equal(mt_secret_bytes(secret), "old", 3);
	mt_secret_free(&secret);
	/* new seals use the last key, which the old keyring does not know */
	unsigned char fresh[MT_SEALED_MAX];
	size_t fresh_len;
	assert_int_equal(mt_seal(keyring, "ctx", (const unsigned char *)"new", 3, fresh,
	                         sizeof(fresh), &fresh_len),
	                 0);
	assert_int_equal(mt_sealed_key_id(fresh, fresh_len), 2);
	assert_null(mt_unseal(old, "ctx", fresh, fresh_len, &error));
	assert_string_equal(error, "unknown key id 2");
	/* relabelling a blob to another key id fails */
	fresh[4] = 1;
	assert_null(mt_unseal(keyring, "ctx", fresh, fresh_len, &error));
	assert_string_equal(error, "authentication failed");
	mt_keyring_free(&old);
	mt_keyring_free(&keyring);
	unlink(path);
}

static void write_key_file(const char *text)
{
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void test_key_file_format(void **state)
{
	(void)state;
	const char *error = NULL;
	const char *k1 = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
	const char *k7 = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
	char text[512];
	snprintf(text, sizeof(text), "# comment\n\n7 %s\r\n  3\t%s  \n", k7, k1);
	write_key_file(text);
	struct mt_keyring *keyring = mt_keyring_load(path, &error);
	assert_non_null(keyring);
	assert_int_equal(mt_keyring_current_id(keyring), 3); /* the last line, not the highest */
	mt_keyring_free(&keyring);

	const char *bad[] = {"0 %s\n",   "-1 %s\n", "x %s\n",      "1 %.62s\n",
	                     "1 %sff\n", "1\n",     "# nothing\n", "1 %s\n1 %s\n"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		snprintf(text, sizeof(text), bad[i], k1, k1);
#pragma GCC diagnostic pop
		write_key_file(text);
		error = NULL;
		keyring = mt_keyring_load(path, &error);
		if (keyring != NULL)
			fail_msg("accepted %s", bad[i]);
		assert_non_null(error);
		/* key material is never quoted back */
		assert_null(strstr(error, "0001020304"));
	}
	unlink(path);
	assert_null(mt_keyring_load(path, &error));
}

static void test_tokens(void **state)
{
	(void)state;
	char a[MT_TOKEN_TEXT_MAX], b[MT_TOKEN_TEXT_MAX];
	mt_token_new(a);
	mt_token_new(b);
	assert_int_equal(strlen(a), 3 + 43);
	assert_memory_equal(a, "mt_", 3);
	assert_string_not_equal(a, b);
	for (const char *p = a + 3; *p != '\0'; p++) {
		bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		          (*p >= '0' && *p <= '9') || *p == '-' || *p == '_';
		assert_true(ok);
	}
	unsigned char h1[32], h2[32];
	mt_token_hash(a, h1);
	mt_token_hash(a, h2);
	assert_memory_equal(h1, h2, 32);
	mt_token_hash(b, h2);
	assert_memory_not_equal(h1, h2, 32);
	/* SHA-256("abc") */
	static const unsigned char abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
	                                      0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
	                                      0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
	                                      0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
	mt_token_hash("abc", h1);
	assert_memory_equal(h1, abc, 32);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_create_and_modes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_seal_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_key_file_format, setup, teardown),
	    cmocka_unit_test(test_tokens),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
