/* bench/api-client PORT TOKEN COUNT CONNECTIONS BYTES SINK_PID: POSTs COUNT messages of about
 * BYTES bytes of text to mailtrail's /v1/messages over CONNECTIONS keep-alive HTTP/1.1
 * connections (one thread each, blocking sockets), then waits for the process SINK_PID (an
 * `smtp-sink -M COUNT`, which exits once it has received COUNT messages) to end. Meanwhile one
 * more thread asks GET /healthz every 10 ms on a connection of its own and records how long each
 * answer took. Prints one line:
 *
 *   accepted=N posted_ms=N delivered_ms=N healthz_samples=N healthz_p50_ms=F healthz_p99_ms=F
 *   healthz_max_ms=F
 *
 * and exits 1 if any answer was not 202 (the first one goes to stderr). A C client, so that the
 * client is not what limits the rate (a Python one tops out near 3,000 requests/s here). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port;
static const char *token;
static size_t text_bytes;
static atomic_long next_index;
static long total;
static atomic_long accepted;
static atomic_bool failed;
static atomic_bool stop_probing;

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int dial(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("connect");
		exit(1);
	}
	return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0) {
			perror("send");
			exit(1);
		}
		p += w;
		n -= (size_t)w;
	}
}

/* Reads one response; returns its status. `buf` keeps what follows it (pipelining unused). */
static int read_response(int fd, char *buf, size_t cap)
{
	size_t have = 0;
	for (;;) {
		buf[have] = '\0';
		char *end = strstr(buf, "\r\n\r\n");
		if (end != NULL) {
			int status = atoi(buf + 9);
			size_t head = (size_t)(end + 4 - buf);
			const char *cl = strcasestr(buf, "\r\nContent-Length:");
			size_t body = cl != NULL && cl < end ? (size_t)atol(cl + 17) : 0;
			while (have < head + body) {
				ssize_t r = recv(fd, buf + have, cap - 1 - have, 0);
				if (r <= 0) {
					perror("recv");
					exit(1);
				}
				have += (size_t)r;
			}
			if (status != 202 && status != 200) {
				buf[head + body < cap ? head + body : cap - 1] = '\0';
				fprintf(stderr, "answer: %.400s\n", buf);
			}
			return status;
		}
		if (have == cap - 1) {
			fprintf(stderr, "response head too long\n");
			exit(1);
		}
		ssize_t r = recv(fd, buf + have, cap - 1 - have, 0);
		if (r <= 0) {
			perror("recv");
			exit(1);
		}
		have += (size_t)r;
	}
}

static void *poster(void *arg)
{
	(void)arg;
	static const char line[] =
	    "The quick brown fox jumps over the lazy dog, message body for the outbox bench.\\n";
	char *text = malloc(text_bytes + 1);
	for (size_t i = 0; i < text_bytes; i++)
		text[i] = line[i % (sizeof(line) - 1)];
	/* never end on half of a "\n" escape */
	if (text_bytes > 0 && text[text_bytes - 1] == '\\')
		text[text_bytes - 1] = '.';
	text[text_bytes] = '\0';
	size_t cap = text_bytes + 1024;
	char *req = malloc(cap);
	char buf[65536];
	int fd = dial();
	for (;;) {
		long i = atomic_fetch_add(&next_index, 1);
		if (i >= total || atomic_load(&failed))
			break;
		char body_head[160];
		int bh = snprintf(body_head, sizeof(body_head),
		                  "{\"to\":[\"rcpt@bench.example\"],\"subject\":\"bench api %ld\","
		                  "\"text\":\"",
		                  i);
		size_t body_len = (size_t)bh + text_bytes + 2;
		int n = snprintf(req, cap,
		                 "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
		                 "Bearer %s\r\nContent-Type: application/json\r\nContent-Length: "
		                 "%zu\r\n\r\n%s%s\"}",
		                 token, body_len, body_head, text);
		send_all(fd, req, (size_t)n);
		if (read_response(fd, buf, sizeof(buf)) != 202) {
			atomic_store(&failed, true);
			break;
		}
		atomic_fetch_add(&accepted, 1);
	}
	close(fd);
	free(req);
	free(text);
	return NULL;
}

/* The sink is our parent's child: a zombie until reaped, which counts as ended. */
static bool running(int pid)
{
	char path[64], stat[256];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	size_t n = fread(stat, 1, sizeof(stat) - 1, f);
	fclose(f);
	stat[n] = '\0';
	const char *paren = strrchr(stat, ')');
	return paren != NULL && paren[1] == ' ' && paren[2] != 'Z';
}

static int compare_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static int64_t *samples;
static size_t sample_count, sample_cap;

static void *prober(void *arg)
{
	(void)arg;
	static const char req[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
	char buf[8192];
	int fd = dial();
	while (!atomic_load(&stop_probing)) {
		int64_t t0 = now_us();
		send_all(fd, req, sizeof(req) - 1);
		read_response(fd, buf, sizeof(buf));
		int64_t took = now_us() - t0;
		if (sample_count == sample_cap) {
			sample_cap = sample_cap ? sample_cap * 2 : 1024;
			samples = realloc(samples, sample_cap * sizeof(*samples));
		}
		samples[sample_count++] = took;
		usleep(10000);
	}
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: api-client PORT TOKEN COUNT CONNECTIONS BYTES SINK_PID\n");
		return 2;
	}
	int sink_pid = atoi(argv[6]);
	port = atoi(argv[1]);
	token = argv[2];
	total = atol(argv[3]);
	int connections = atoi(argv[4]);
	text_bytes = (size_t)atol(argv[5]);
	pthread_t probe;
	pthread_create(&probe, NULL, prober, NULL);
	pthread_t *threads = calloc((size_t)connections, sizeof(*threads));
	int64_t start = now_us();
	for (int i = 0; i < connections; i++)
		pthread_create(&threads[i], NULL, poster, NULL);
	for (int i = 0; i < connections; i++)
		pthread_join(threads[i], NULL);
	int64_t posted = now_us() - start;
	while (running(sink_pid) && !atomic_load(&failed))
		usleep(2000);
	int64_t delivered = now_us() - start;
	atomic_store(&stop_probing, true);
	pthread_join(probe, NULL);
	qsort(samples, sample_count, sizeof(*samples), compare_i64);
	double p50 = sample_count ? (double)samples[sample_count / 2] / 1000.0 : 0;
	double p99 = sample_count ? (double)samples[(sample_count * 99) / 100] / 1000.0 : 0;
	double max = sample_count ? (double)samples[sample_count - 1] / 1000.0 : 0;
	printf("accepted=%ld posted_ms=%lld delivered_ms=%lld healthz_samples=%zu "
	       "healthz_p50_ms=%.2f healthz_p99_ms=%.2f healthz_max_ms=%.2f\n",
	       atomic_load(&accepted), (long long)(posted / 1000), (long long)(delivered / 1000),
	       sample_count, p50, p99, max);
	free(threads);
	free(samples);
	return atomic_load(&failed) ? 1 : 0;
}
