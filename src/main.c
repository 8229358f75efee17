#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
	fputs("usage: mailtrail COMMAND [OPTIONS]\n", out);
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
		printf("mailtrail %s\n", MT_VERSION);
		return 0;
	}
	usage(stdout);
	return argc >= 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
}
