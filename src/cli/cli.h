/* The command-line subcommands of `mailtrail`. Each takes argc/argv after the subcommand name
 * (argv[0] is the subcommand) and returns the process exit code. */
#ifndef MT_CLI_CLI_H
#define MT_CLI_CLI_H

int mt_cli_smtp_check(int argc, char **argv);
int mt_cli_imap_check(int argc, char **argv);
int mt_cli_init(int argc, char **argv);
int mt_cli_serve(int argc, char **argv);

#include <stddef.h>
/* The master key file: `configured`, else MAILTRAIL_SECRET_KEY_FILE, else DIR/secret.key. */
int mt_cli_key_path(const char *data_dir, const char *configured, char *out, size_t size);

#endif
