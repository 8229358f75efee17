/* The command-line subcommands of `mailtrail`. Each takes argc/argv after the subcommand name
 * (argv[0] is the subcommand) and returns the process exit code. */
#ifndef MT_CLI_CLI_H
#define MT_CLI_CLI_H

int mt_cli_smtp_check(int argc, char **argv);

#endif
