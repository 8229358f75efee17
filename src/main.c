/* mailtrail's command line: DESIGN.md §2. */
#include "cli/cli.h"
#include "lib/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

static void usage(FILE *out)
{
	fputs("usage: mailtrail COMMAND [OPTIONS]\n"
	      "\n"
	      "commands:\n"
	      "  smtp-check   live check of an SMTP account (connect, TLS, AUTH, test mail)\n"
	      "  init         create the store, the master key and an org with its admin\n"
	      "  serve        run the service (HTTP API)\n"
	      "  imap-check   live check of an IMAP account (connect, TLS, login, folders)\n"
	      "\n"
	      "  mailtrail COMMAND --help   options of one command\n"
	      "  mailtrail --version\n",
	      out);
}

int main(int argc, char **argv)
{
	/* Secrets live in this process's memory: keep them out of core dumps and ptrace. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	const char *level = getenv("MAILTRAIL_LOG_LEVEL");
	enum mt_log_level log_level = MT_LOG_WARN;
	if (level != NULL && mt_log_level_parse(level, &log_level) < 0)
		fprintf(stderr, "mailtrail: ignoring unknown MAILTRAIL_LOG_LEVEL=%s\n", level);
	mt_log_set_level(log_level);

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *command = argv[1];
	if (strcmp(command, "--version") == 0) {
		printf("mailtrail %s\n", MT_VERSION);
		return 0;
	}
	if (strcmp(command, "--help") == 0 || strcmp(command, "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(command, "smtp-check") == 0)
		return mt_cli_smtp_check(argc - 1, argv + 1);
	if (strcmp(command, "init") == 0)
		return mt_cli_init(argc - 1, argv + 1);
	if (strcmp(command, "serve") == 0)
		return mt_cli_serve(argc - 1, argv + 1);
	if (strcmp(command, "imap-check") == 0)
		return mt_cli_imap_check(argc - 1, argv + 1);
	fprintf(stderr, "mailtrail: unknown command '%s'\n", command);
	usage(stderr);
	return 2;
}
