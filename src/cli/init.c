/* `mailtrail init`: creates the store, the master key and an org with its first admin, and
 * prints {"org_id","user_id","token"}. On an existing store it adds another org; it may run
 * while `serve` runs on the same store (the store serialises writers). */
#include "cli/cli.h"

#include "crypto/seal.h"
#include "engine/provision.h"
#include "lib/str.h"
#include "mime/address.h"
#include "store/store.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXIT_USAGE 2

static void usage(FILE *out)
{
	fputs("usage: mailtrail init --data DIR --org NAME --admin-email ADDR [--db URL]\n"
	      "Creates the store (DIR/mailtrail.db unless --db), the master key (DIR/secret.key,\n"
	      "or MAILTRAIL_SECRET_KEY_FILE) and an org with its admin; prints the admin's token\n"
	      "once. On an existing store it adds another org.\n",
	      out);
}

int mt_cli_key_path(const char *data_dir, const char *configured, char *out, size_t size)
{
	const char *env = getenv("MAILTRAIL_SECRET_KEY_FILE");
	const char *path = configured != NULL ? configured : env;
	int n = path != NULL ? snprintf(out, size, "%s", path)
	                     : snprintf(out, size, "%s/secret.key", data_dir);
	return n > 0 && (size_t)n < size ? 0 : -1;
}

static int provision_org_job(struct store_tx *tx, void *arg)
{
	return provision_org(tx, arg);
}

int mt_cli_init(int argc, char **argv)
{
	static const struct option options[] = {
	    {"data", required_argument, NULL, 'd'},
	    {"org", required_argument, NULL, 'o'},
	    {"admin-email", required_argument, NULL, 'a'},
	    {"db", required_argument, NULL, 'b'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *data = NULL, *org = NULL, *admin = NULL, *db = NULL;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'd':
			data = optarg;
			break;
		case 'o':
			org = optarg;
			break;
		case 'a':
			admin = optarg;
			break;
		case 'b':
			db = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc || data == NULL || org == NULL || admin == NULL) {
		fputs("mailtrail init: --data, --org and --admin-email are required\n", stderr);
		usage(stderr);
		return EXIT_USAGE;
	}
	struct provision_org job;
	memset(&job, 0, sizeof(job));
	const char *error;
	mime_init();
	if (mime_address_normalize(admin, job.admin_email, &error) < 0) {
		fprintf(stderr, "mailtrail init: --admin-email: %s\n", error);
		return EXIT_USAGE;
	}
	if (org[0] == '\0' || strlen(org) > MT_NAME_MAX || mt_str_has_crlf(org)) {
		fprintf(stderr, "mailtrail init: --org: 1 to %d characters on one line\n",
		        MT_NAME_MAX);
		return EXIT_USAGE;
	}
	mt_strlcpy(job.org_name, org, sizeof(job.org_name));
	if (mkdir(data, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "mailtrail init: %s: %s\n", data, strerror(errno));
		return 1;
	}
	char key_path[4096];
	if (mt_cli_key_path(data, NULL, key_path, sizeof(key_path)) < 0) {
		fputs("mailtrail init: key path too long\n", stderr);
		return EXIT_USAGE;
	}
	if (access(key_path, F_OK) < 0 && mt_keyring_create(key_path, &error) < 0) {
		fprintf(stderr, "mailtrail init: %s: %s\n", key_path, error);
		return 1;
	}
	struct mt_keyring *keyring = mt_keyring_load(key_path, &error);
	if (keyring == NULL) {
		fprintf(stderr, "mailtrail init: %s: %s\n", key_path, error);
		return 1;
	}
	mt_keyring_free(&keyring);
	char db_path[4096];
	if (db == NULL) {
		snprintf(db_path, sizeof(db_path), "%s/mailtrail.db", data);
		db = db_path;
	}
	struct store *store = store_open(db, NULL, &error);
	if (store == NULL) {
		fprintf(stderr, "mailtrail init: %s: %s\n", db, error);
		return 1;
	}
	int rc = store_run(store, STORE_WRITE_DURABLE, provision_org_job, &job);
	store_close(&store);
	if (rc != 0) {
		fprintf(stderr, "mailtrail init: cannot create the org (store error %d)\n", rc);
		return 1;
	}
	json_t *out = json_pack("{s:s,s:s,s:s}", "org_id", job.org_id, "user_id", job.user_id,
	                        "token", job.token);
	char *text = json_dumps(out, JSON_COMPACT);
	puts(text);
	memset(text, 0, strlen(text));
	free(text);
	json_decref(out);
	memset(job.token, 0, sizeof(job.token));
	return 0;
}
