/* imap-raw-fetch: the bound for bench/imap-fetch. A minimal blocking IMAP client that issues
 * the same commands as imap-fetch-bench (LOGIN, SELECT, then `UID FETCH 1:<UIDNEXT-1> ITEMS`
 * as one command, or in chunks of N UIDs with W commands in flight) and parses nothing beyond
 * what it needs to find the tagged answers: it splits lines, skips literals ({n}), counts
 * untagged lines ("* ...": the FETCH answers) and reads the tagged status. It reads 1 MiB at a
 * time straight from the socket (or SSL_read with --tls). Prints one line:
 *
 *   fetched=N setup_ms=S first_ms=F ms=T
 *
 * T: from sending the first FETCH to the last tagged OK; F: from sending the first FETCH to the
 * first untagged answer (in T); S: from connect() to the EXAMINE/SELECT's OK (not in T).
 *
 *   imap-raw-fetch --host H --port P --user U --password-file F [--tls | --starttls]
 *                  [--ca-file F] [--mailbox INBOX] [--items "(UID FLAGS ENVELOPE)" | --sync-items]
 *                  [--examine] [--chunk N] [--window N]
 *
 * --starttls: plaintext port, STARTTLS after the greeting (what IMAP sync's `security:
 * starttls` does). --sync-items: the item list IMAP sync fetches (src/engine/imap_message.c,
 * imap_message_fetch_items). --examine: EXAMINE instead of SELECT, as the sync does.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE (1024 * 1024)

/* Keep in step with imap_message_fetch_items (src/engine/imap_message.c) and
 * MT_IMAP_TEXT_FETCH_BYTES (src/lib/limits.h). */
#define SYNC_ITEMS                                                                                 \
	"(UID INTERNALDATE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (FROM TO CC BCC DATE MESSAGE-ID " \
	"SUBJECT"                                                                                  \
	" IN-REPLY-TO REFERENCES X-MAILTRAIL-ID MIME-VERSION CONTENT-TYPE"                         \
	" CONTENT-TRANSFER-ENCODING)] BODY.PEEK[TEXT]<0.16384>)"

struct raw {
	int fd;
	SSL *ssl;
	char *buf;
	size_t start, end; /* unprocessed bytes: buf[start, end) */
	uint64_t skip;     /* literal bytes still to skip */
	size_t untagged;
	double first_ms; /* when the first untagged line since `untagged` was zeroed came */
	bool cont;       /* the next line continues a response after a literal */
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void die(const char *what)
{
	fprintf(stderr, "imap-raw-fetch: %s\n", what);
	exit(1);
}

static void send_all(struct raw *r, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = r->ssl != NULL ? SSL_write(r->ssl, data, (int)len)
		                           : send(r->fd, data, len, MSG_NOSIGNAL);
		if (n <= 0) {
			if (r->ssl == NULL && n < 0 && errno == EINTR)
				continue;
			die("write failed");
		}
		data += n;
		len -= (size_t)n;
	}
}

static void fill(struct raw *r)
{
	if (r->start > 0) { /* keep the partial line at the front */
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
	if (r->end == BUF_SIZE)
		die("line over 1 MiB");
	ssize_t n;
	do {
		n = r->ssl != NULL ? SSL_read(r->ssl, r->buf + r->end, (int)(BUF_SIZE - r->end))
		                   : recv(r->fd, r->buf + r->end, BUF_SIZE - r->end, 0);
	} while (n < 0 && r->ssl == NULL && errno == EINTR);
	if (n <= 0)
		die("connection closed");
	r->end += (size_t)n;
}

/* The next line outside literals (without CRLF) into *line_r / *len_r; NUL-terminated in
 * place. Untagged lines are counted. */
static void next_line(struct raw *r, char **line_r, size_t *len_r)
{
	for (;;) {
		if (r->skip > 0) {
			size_t have = r->end - r->start;
			size_t n = have < r->skip ? have : (size_t)r->skip;
			r->start += n;
			r->skip -= n;
			if (r->skip > 0) {
				fill(r);
				continue;
			}
		}
		char *p = r->buf + r->start;
		char *nl = memchr(p, '\n', r->end - r->start);
		if (nl == NULL) {
			fill(r);
			continue;
		}
		size_t len = (size_t)(nl - p);
		r->start += len + 1;
		if (len > 0 && p[len - 1] == '\r')
			len--;
		/* untagged responses are counted at their first line (a FETCH answer with
		 * literals spans several) */
		bool first = !r->cont;
		if (first && len > 0 && p[0] == '*' && r->untagged++ == 0)
			r->first_ms = now_ms();
		r->cont = false;
		/* a literal ends the line: "{123}" or "{123+}"; its bytes follow */
		if (len > 2 && p[len - 1] == '}') {
			char *open = memrchr(p, '{', len);
			if (open != NULL) {
				r->skip = strtoull(open + 1, NULL, 10);
				r->cont = true;
				continue; /* the rest of the response follows the literal */
			}
		}
		p[len] = '\0';
		*line_r = p;
		*len_r = len;
		return;
	}
}

/* Reads until the line tagged `tag`; fails unless it is OK. Untagged lines are counted, and
 * `keep` (when not NULL) gets "[UIDNEXT n]" from them. */
static void wait_tagged(struct raw *r, const char *tag, uint32_t *uidnext)
{
	size_t tag_len = strlen(tag);
	for (;;) {
		char *line;
		size_t len;
		next_line(r, &line, &len);
		if (line[0] == '*') {
			if (uidnext != NULL) {
				char *u = strstr(line, "[UIDNEXT ");
				if (u != NULL)
					*uidnext = (uint32_t)strtoul(u + 9, NULL, 10);
			}
			continue;
		}
		if (len > tag_len && memcmp(line, tag, tag_len) == 0 && line[tag_len] == ' ') {
			if (strncmp(line + tag_len + 1, "OK", 2) != 0) {
				fprintf(stderr, "imap-raw-fetch: %s\n", line);
				exit(1);
			}
			return;
		}
	}
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
	    {"host", required_argument, NULL, 'h'},
	    {"port", required_argument, NULL, 'p'},
	    {"user", required_argument, NULL, 'u'},
	    {"password-file", required_argument, NULL, 'P'},
	    {"tls", no_argument, NULL, 't'},
	    {"starttls", no_argument, NULL, 's'},
	    {"sync-items", no_argument, NULL, 'I'},
	    {"examine", no_argument, NULL, 'E'},
	    {"ca-file", required_argument, NULL, 'c'},
	    {"mailbox", required_argument, NULL, 'm'},
	    {"items", required_argument, NULL, 'i'},
	    {"chunk", required_argument, NULL, 'C'},
	    {"window", required_argument, NULL, 'W'},
	    {NULL, 0, NULL, 0},
	};
	const char *host = NULL, *user = NULL, *password_file = NULL, *ca_file = NULL;
	const char *mailbox = "INBOX", *items = "(UID FLAGS ENVELOPE)";
	int port = 0;
	bool tls = false, starttls = false, examine = false;
	unsigned long chunk = 0, window = 4;
	int opt;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			host = optarg;
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 'u':
			user = optarg;
			break;
		case 'P':
			password_file = optarg;
			break;
		case 't':
			tls = true;
			break;
		case 's':
			starttls = true;
			break;
		case 'I':
			items = SYNC_ITEMS;
			break;
		case 'E':
			examine = true;
			break;
		case 'c':
			ca_file = optarg;
			break;
		case 'm':
			mailbox = optarg;
			break;
		case 'i':
			items = optarg;
			break;
		case 'C':
			chunk = strtoul(optarg, NULL, 10);
			break;
		case 'W':
			window = strtoul(optarg, NULL, 10);
			break;
		default:
			return 2;
		}
	}
	if (host == NULL || port <= 0 || user == NULL || password_file == NULL || window == 0)
		die("usage: --host H --port P --user U --password-file F [--tls | --starttls] "
		    "[--ca-file F] [--items I | --sync-items] [--examine] [--chunk N] [--window "
		    "N]");
	char password[256];
	FILE *pf = fopen(password_file, "r");
	if (pf == NULL || fgets(password, sizeof(password), pf) == NULL)
		die("cannot read the password file");
	fclose(pf);
	password[strcspn(password, "\r\n")] = '\0';

	struct raw r;
	memset(&r, 0, sizeof(r));
	r.buf = malloc(BUF_SIZE + 1);
	if (r.buf == NULL)
		die("out of memory");
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		die("--host: an IPv4 address");
	double setup_start = now_ms();
	r.fd = socket(AF_INET, SOCK_STREAM, 0);
	if (r.fd < 0 || connect(r.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect failed");
	int one = 1;
	setsockopt(r.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	SSL_CTX *ctx = NULL;
	char *line;
	size_t len;
	if (starttls) {
		next_line(&r, &line, &len); /* greeting */
		if (strncmp(line, "* OK", 4) != 0)
			die("no OK greeting");
		send_all(&r, "T STARTTLS\r\n", 12);
		wait_tagged(&r, "T", NULL);
		if (r.start != r.end)
			die("bytes after the STARTTLS answer");
	}
	if (tls || starttls) {
		ctx = SSL_CTX_new(TLS_client_method());
		if (ctx == NULL || SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)
			die("TLS: cannot load the CA file");
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		r.ssl = SSL_new(ctx);
		SSL_set_fd(r.ssl, r.fd);
		SSL_set_tlsext_host_name(r.ssl, "localhost");
		if (SSL_connect(r.ssl) != 1)
			die("TLS handshake failed");
	}
	if (!starttls) {
		next_line(&r, &line, &len); /* greeting */
		if (strncmp(line, "* OK", 4) != 0)
			die("no OK greeting");
	}

	char cmd[1024];
	int n = snprintf(cmd, sizeof(cmd), "L LOGIN \"%s\" \"%s\"\r\n", user, password);
	send_all(&r, cmd, (size_t)n);
	wait_tagged(&r, "L", NULL);
	uint32_t uidnext = 0;
	n = snprintf(cmd, sizeof(cmd), "S %s \"%s\"\r\n", examine ? "EXAMINE" : "SELECT", mailbox);
	send_all(&r, cmd, (size_t)n);
	wait_tagged(&r, "S", &uidnext);
	if (uidnext <= 1)
		die("empty mailbox (no UIDNEXT)");
	uint32_t last = uidnext - 1;
	if (chunk == 0 || chunk > last)
		chunk = last;

	/* The same commands as imap_client_fetch: ranges of `chunk` UIDs, `window` in flight. */
	r.untagged = 0;
	double start = now_ms();
	uint32_t next = 1;
	unsigned issued = 0, answered = 0;
	for (;;) {
		while (next <= last && issued - answered < window) {
			uint32_t to = last - next < chunk - 1 ? last : next + (uint32_t)chunk - 1;
			n = snprintf(cmd, sizeof(cmd), "F%u UID FETCH %u:%u %s\r\n", issued, next,
			             to, items);
			send_all(&r, cmd, (size_t)n);
			issued++;
			next = to == last ? last + 1 : to + 1;
		}
		if (answered == issued)
			break;
		char tag[16];
		snprintf(tag, sizeof(tag), "F%u", answered);
		wait_tagged(&r, tag, NULL);
		answered++;
	}
	double elapsed = now_ms() - start;
	size_t fetched = r.untagged;
	send_all(&r, "Z LOGOUT\r\n", 10);
	wait_tagged(&r, "Z", NULL);
	if (r.ssl != NULL) {
		SSL_free(r.ssl);
		SSL_CTX_free(ctx);
	}
	close(r.fd);
	free(r.buf);
	/* ms last: bench/imap-fetch reads the last "ms=" of the line */
	printf("fetched=%zu setup_ms=%.3f first_ms=%.3f ms=%.3f\n", fetched, start - setup_start,
	       r.first_ms - start, elapsed);
	return 0;
}
