#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "lib/buf.h"
#include "lib/limits.h"
#include "net/conn.h"
#include "net/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* --- a certificate made for the tests ------------------------------------------------------ */

static EVP_PKEY *test_key;
static X509 *test_cert;
static char test_cert_fingerprint[80]; /* "sha256:..." computed with X509_digest */
static char test_spki_pin[80];
static char test_ca_path[64];

static void hex_into(const char *prefix, const unsigned char *md, size_t len, char *out)
{
	size_t pos = (size_t)sprintf(out, "%s", prefix);
	for (size_t i = 0; i < len; i++)
		pos += (size_t)sprintf(out + pos, "%02x", md[i]);
}

static int make_test_cert(void **state)
{
	(void)state;
	test_key = EVP_EC_gen("P-256");
	assert_non_null(test_key);
	test_cert = X509_new();
	X509_set_version(test_cert, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(test_cert), 42);
	X509_gmtime_adj(X509_getm_notBefore(test_cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(test_cert), 86400);
	X509_set_pubkey(test_cert, test_key);
	X509_NAME *name = X509_get_subject_name(test_cert);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
	                           -1, 0);
	X509_set_issuer_name(test_cert, name);
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, test_cert, test_cert, NULL, NULL, 0);
	X509_EXTENSION *san =
	    X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
	assert_non_null(san);
	X509_add_ext(test_cert, san, -1);
	X509_EXTENSION_free(san);
	assert_true(X509_sign(test_cert, test_key, EVP_sha256()) > 0);

	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	X509_digest(test_cert, EVP_sha256(), md, &md_len);
	hex_into("sha256:", md, md_len, test_cert_fingerprint);

	unsigned char *spki = NULL;
	int spki_len = i2d_PUBKEY(test_key, &spki);
	assert_true(spki_len > 0);
	EVP_Digest(spki, (size_t)spki_len, md, &md_len, EVP_sha256(), NULL);
	OPENSSL_free(spki);
	hex_into("spki-sha256:", md, md_len, test_spki_pin);

	strcpy(test_ca_path, "/tmp/mt-test-ca-XXXXXX");
	int fd = mkstemp(test_ca_path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	PEM_write_X509(f, test_cert);
	fclose(f);
	return 0;
}

static int free_test_cert(void **state)
{
	(void)state;
	unlink(test_ca_path);
	X509_free(test_cert);
	EVP_PKEY_free(test_key);
	return 0;
}

/* --- an in-process server on the same loop ------------------------------------------------- */

enum server_mode {
	SERVER_ECHO,            /* echoes; "QUIT" -> "bye" and close */
	SERVER_GREET,           /* "220 plain" on accept, then echo */
	SERVER_SILENT,          /* accepts, never sends */
	SERVER_STARTTLS,        /* "220 ready"; STARTTLS -> "220 go", TLS, then echo */
	SERVER_STARTTLS_INJECT, /* STARTTLS -> "220 go" plus an injected line */
	SERVER_FLOOD,           /* sends flood_bytes, then closes */
	SERVER_SINK,            /* counts; after sink_expect bytes sends "got N" */
	SERVER_DRIP,            /* "p0" .. "p<DRIP_PIECES-1>" lines, one each DRIP_GAP_MS */
};

#define DRIP_PIECES 5
#define DRIP_GAP_MS 5

struct test_server {
	struct event_base *base;
	enum server_mode mode;
	bool tls; /* implicit TLS */
	SSL_CTX *ctx;
	int listen_fd;
	uint16_t port;
	struct event *accept_event;
	size_t flood_bytes;
	bool flood_keep_open;
	size_t sink_expect;
	struct event *drip_timer;
	int drip_sent;
	size_t drip_pad; /* bytes of padding before each piece's line (0: the line alone) */
	struct server_client *client;
	int parked_fd;
	char last_peer_ip[INET6_ADDRSTRLEN];
};

struct server_client {
	struct test_server *server;
	int fd;
	SSL *ssl;
	bool handshaking;
	struct event *read_event;
	struct event *write_event;
	struct mt_buf out;
	char line[512];
	size_t line_len;
	size_t sink_count;
	bool close_after_flush;
};

static void server_client_close(struct server_client *client)
{
	if (client->server != NULL)
		client->server->client = NULL;
	event_free(client->read_event);
	event_free(client->write_event);
	SSL_free(client->ssl); /* no close_notify: like many real servers */
	close(client->fd);
	mt_buf_free(&client->out);
	free(client);
}

static void server_send(struct server_client *client, const void *data, size_t len)
{
	assert_int_equal(mt_buf_append(&client->out, data, len), 0);
	event_add(client->write_event, NULL);
}

static void server_send_str(struct server_client *client, const char *text)
{
	server_send(client, text, strlen(text));
}

static void server_drip(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct test_server *server = arg;
	if (server->client == NULL)
		return;
	if (server->drip_pad > 0) {
		char *pad = malloc(server->drip_pad);
		assert_non_null(pad);
		memset(pad, '.', server->drip_pad);
		server_send(server->client, pad, server->drip_pad);
		free(pad);
	}
	char piece[16];
	snprintf(piece, sizeof(piece), "p%d\r\n", server->drip_sent++);
	server_send_str(server->client, piece);
	if (server->drip_sent < DRIP_PIECES)
		event_add(server->drip_timer, &(struct timeval){.tv_usec = DRIP_GAP_MS * 1000});
}

static void server_on_established(struct server_client *client)
{
	struct test_server *server = client->server;
	if (server->mode == SERVER_DRIP)
		server_drip(-1, 0, server);
	if (server->mode == SERVER_GREET || (server->tls && server->mode == SERVER_ECHO))
		server_send_str(client, server->tls ? "220 tls\r\n" : "220 plain\r\n");
	if (server->mode == SERVER_STARTTLS || server->mode == SERVER_STARTTLS_INJECT)
		server_send_str(client, "220 ready\r\n");
	if (server->mode == SERVER_FLOOD) {
		char chunk[4096];
		memset(chunk, 'x', sizeof(chunk));
		for (size_t sent = 0; sent < server->flood_bytes; sent += sizeof(chunk)) {
			size_t left = server->flood_bytes - sent;
			server_send(client, chunk, left < sizeof(chunk) ? left : sizeof(chunk));
		}
		client->close_after_flush = !server->flood_keep_open;
	}
}

static void server_start_tls(struct server_client *client)
{
	client->ssl = SSL_new(client->server->ctx);
	SSL_set_fd(client->ssl, client->fd);
	SSL_set_accept_state(client->ssl);
	client->handshaking = true;
}

static void server_on_line(struct server_client *client, const char *line)
{
	struct test_server *server = client->server;
	bool starttls_mode =
	    server->mode == SERVER_STARTTLS || server->mode == SERVER_STARTTLS_INJECT;
	if (starttls_mode && client->ssl == NULL && strcmp(line, "STARTTLS\r\n") == 0) {
		/* Plaintext is flushed synchronously here (loopback, tiny) before TLS starts. */
		const char *reply = server->mode == SERVER_STARTTLS_INJECT
		                        ? "220 go\r\n250 injected\r\n"
		                        : "220 go\r\n";
		assert_int_equal(send(client->fd, reply, strlen(reply), 0), (ssize_t)strlen(reply));
		if (server->mode == SERVER_STARTTLS)
			server_start_tls(client);
		return;
	}
	if (strcmp(line, "QUIT\r\n") == 0) {
		server_send_str(client, "bye\r\n");
		client->close_after_flush = true;
		return;
	}
	server_send_str(client, line);
}

static void server_on_data(struct server_client *client, const char *data, size_t len)
{
	struct test_server *server = client->server;
	if (server->mode == SERVER_SINK) {
		client->sink_count += len;
		if (client->sink_count == server->sink_expect) {
			char reply[64];
			snprintf(reply, sizeof(reply), "got %zu\r\n", client->sink_count);
			server_send_str(client, reply);
		}
		return;
	}
	for (size_t i = 0; i < len; i++) {
		if (client->line_len < sizeof(client->line) - 1)
			client->line[client->line_len++] = data[i];
		if (data[i] == '\n') {
			client->line[client->line_len] = '\0';
			client->line_len = 0;
			server_on_line(client, client->line);
			if (client->ssl != NULL && client->handshaking)
				return; /* the rest (none in these tests) would be TLS */
		}
	}
}

/* Returns false when the client was closed. */
static bool server_flush(struct server_client *client)
{
	while (client->out.len > 0) {
		ssize_t n;
		if (client->ssl != NULL) {
			int r = SSL_write(client->ssl, client->out.data, (int)client->out.len);
			if (r <= 0) {
				int err = SSL_get_error(client->ssl, r);
				if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ)
					return true;
				server_client_close(client); /* the client went away */
				return false;
			}
			n = r;
		} else {
			n = send(client->fd, client->out.data, client->out.len, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					return true;
				server_client_close(client);
				return false;
			}
		}
		mt_buf_consume(&client->out, (size_t)n);
	}
	event_del(client->write_event);
	if (client->close_after_flush) {
		server_client_close(client);
		return false;
	}
	return true;
}

static void server_on_io(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct server_client *client = arg;
	if (client->ssl != NULL && client->handshaking) {
		int r = SSL_do_handshake(client->ssl);
		if (r != 1) {
			int err = SSL_get_error(client->ssl, r);
			if (err == SSL_ERROR_WANT_WRITE)
				event_add(client->write_event, NULL);
			else if (err != SSL_ERROR_WANT_READ)
				server_client_close(client); /* the client rejected us */
			return;
		}
		client->handshaking = false;
		if (client->server->mode == SERVER_STARTTLS)
			client->server->mode = SERVER_ECHO; /* no second greeting after STARTTLS */
		else
			server_on_established(client);
	}
	for (;;) {
		char data[16384];
		ssize_t n;
		if (client->ssl != NULL) {
			int r = SSL_read(client->ssl, data, sizeof(data));
			if (r <= 0) {
				int err = SSL_get_error(client->ssl, r);
				if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
					server_client_close(client);
					return;
				}
				break;
			}
			n = r;
		} else {
			n = recv(client->fd, data, sizeof(data), 0);
			if (n == 0 || (n < 0 && errno != EAGAIN)) {
				server_client_close(client);
				return;
			}
			if (n < 0)
				break;
		}
		server_on_data(client, data, (size_t)n);
		if (client->ssl != NULL && client->handshaking)
			return;
	}
	server_flush(client);
}

static void server_on_accept(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct test_server *server = arg;
	struct sockaddr_in peer;
	socklen_t peer_len = sizeof(peer);
	int client_fd =
	    accept4(fd, (struct sockaddr *)&peer, &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (client_fd < 0)
		return;
	inet_ntop(AF_INET, &peer.sin_addr, server->last_peer_ip, sizeof(server->last_peer_ip));
	if (server->mode == SERVER_SILENT || server->client != NULL) {
		/* silent: keep it open and never answer (closed at the end) */
		if (server->mode == SERVER_SILENT && server->parked_fd < 0)
			server->parked_fd = client_fd;
		else
			close(client_fd);
		return;
	}
	struct server_client *client = calloc(1, sizeof(*client));
	client->server = server;
	client->fd = client_fd;
	mt_buf_init(&client->out, 16u * 1024 * 1024);
	client->read_event =
	    event_new(server->base, client_fd, EV_READ | EV_PERSIST, server_on_io, client);
	client->write_event =
	    event_new(server->base, client_fd, EV_WRITE | EV_PERSIST, server_on_io, client);
	event_add(client->read_event, NULL);
	server->client = client;
	if (server->tls) {
		server_start_tls(client);
		return;
	}
	server_on_established(client);
}

static void server_init(struct test_server *server, struct event_base *base, enum server_mode mode,
                        bool tls)
{
	memset(server, 0, sizeof(*server));
	server->base = base;
	server->mode = mode;
	server->tls = tls;
	server->parked_fd = -1;
	server->ctx = SSL_CTX_new(TLS_server_method());
	assert_int_equal(SSL_CTX_use_certificate(server->ctx, test_cert), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(server->ctx, test_key), 1);
	SSL_CTX_set_mode(server->ctx,
	                 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
	/* Records that do not divide the client's input cap leave decrypted bytes inside
	 * OpenSSL when the client pauses: the resume must find them without a socket event. */
	if (mode == SERVER_FLOOD)
		SSL_CTX_set_max_send_fragment(server->ctx, 1000);
	server->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(server->listen_fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(server->listen_fd, 16), 0);
	socklen_t len = sizeof(sin);
	getsockname(server->listen_fd, (struct sockaddr *)&sin, &len);
	server->port = ntohs(sin.sin_port);
	server->accept_event =
	    event_new(base, server->listen_fd, EV_READ | EV_PERSIST, server_on_accept, server);
	event_add(server->accept_event, NULL);
	server->drip_timer = evtimer_new(base, server_drip, server);
}

static void server_free(struct test_server *server)
{
	if (server->client != NULL)
		server_client_close(server->client);
	if (server->parked_fd >= 0)
		close(server->parked_fd);
	event_free(server->accept_event);
	event_free(server->drip_timer);
	close(server->listen_fd);
	SSL_CTX_free(server->ctx);
}

/* A port with nothing listening: bound once to pick it, then closed. */
static uint16_t closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	socklen_t len = sizeof(sin);
	getsockname(fd, (struct sockaddr *)&sin, &len);
	close(fd);
	return ntohs(sin.sin_port);
}

/* --- the client side ----------------------------------------------------------------------- */

struct client {
	struct event_base *base;
	struct mt_conn *conn;
	int connected;
	int tls_ready;
	int drained;
	int readable;
	int errors;
	struct mt_net_error error;
	struct mt_buf received;
	const char *stop_at; /* loopbreak once `received` contains this */
	const char *on_connect_send;
	bool free_in_error;
	bool free_in_readable;
	bool free_in_connected;
	/* STARTTLS script */
	bool starttls;
	int start_tls_result;
	const char *start_tls_error;
	/* back-pressure */
	bool hold_input;
	size_t max_input_seen;
	struct event *release_timer;
	size_t consumed;
	size_t expect_total; /* loopbreak once this much was received */
};

static void client_on_connected(void *ctx)
{
	struct client *c = ctx;
	c->connected++;
	if (c->free_in_connected) {
		mt_conn_free(&c->conn);
		event_base_loopbreak(c->base);
		return;
	}
	if (c->on_connect_send != NULL)
		assert_int_equal(
		    mt_conn_write(c->conn, c->on_connect_send, strlen(c->on_connect_send)), 0);
}

static void client_on_tls_ready(void *ctx)
{
	struct client *c = ctx;
	c->tls_ready++;
	assert_int_equal(mt_conn_write(c->conn, "PING\r\n", 6), 0);
}

static void client_on_drained(void *ctx)
{
	struct client *c = ctx;
	c->drained++;
}

static void client_release(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct client *c = arg;
	struct mt_buf *input = mt_conn_input(c->conn);
	c->consumed += input->len;
	mt_buf_reset(input);
	if (c->expect_total > 0 && c->consumed == c->expect_total) {
		event_base_loopbreak(c->base);
		return;
	}
	mt_conn_resume_read(c->conn);
}

static void client_on_readable(void *ctx)
{
	struct client *c = ctx;
	struct mt_buf *input = mt_conn_input(c->conn);
	c->readable++;
	if (input->len > c->max_input_seen)
		c->max_input_seen = input->len;
	if (c->hold_input) {
		/* Consume only from outside a callback, once the buffer is full. */
		if (c->expect_total > 0 && c->consumed + input->len == c->expect_total)
			event_base_loopbreak(c->base);
		else if (input->len >= MT_NET_INPUT_MAX)
			event_add(c->release_timer, &(struct timeval){.tv_usec = 1000});
		return;
	}
	if (c->starttls) {
		if (strstr(input->data, "250 injected\r\n") != NULL) {
			mt_buf_consume(input, strlen("220 go\r\n"));
			c->start_tls_result = mt_conn_start_tls(c->conn, &c->start_tls_error);
			event_base_loopbreak(c->base);
			return;
		}
		if (strcmp(input->data, "220 ready\r\n") == 0) {
			mt_buf_reset(input);
			assert_int_equal(mt_conn_write(c->conn, "STARTTLS\r\n", 10), 0);
			return;
		}
		if (strcmp(input->data, "220 go\r\n") == 0) {
			mt_buf_reset(input);
			c->start_tls_result = mt_conn_start_tls(c->conn, &c->start_tls_error);
			assert_int_equal(c->start_tls_result, 0);
			assert_false(mt_conn_is_tls(c->conn));
			return;
		}
	}
	assert_int_equal(mt_buf_append(&c->received, input->data, input->len), 0);
	mt_buf_reset(input);
	if (c->free_in_readable) {
		mt_conn_free(&c->conn);
		event_base_loopbreak(c->base);
		return;
	}
	if (c->stop_at != NULL && c->received.data != NULL && strstr(c->received.data, c->stop_at))
		event_base_loopbreak(c->base);
}

static void client_on_error(void *ctx, const struct mt_net_error *error)
{
	struct client *c = ctx;
	c->errors++;
	c->error = *error;
	if (c->free_in_error)
		mt_conn_free(&c->conn);
	event_base_loopbreak(c->base);
}

static const struct mt_conn_callbacks client_callbacks = {
    .connected = client_on_connected,
    .readable = client_on_readable,
    .tls_ready = client_on_tls_ready,
    .drained = client_on_drained,
    .error = client_on_error,
};

static void on_safety_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	fail_msg("test timed out (%s)", (const char *)arg);
}

struct fixture {
	struct event_base *base;
	struct test_server server;
	struct client client;
	struct event *safety;
};

static void fixture_init(struct fixture *f, enum server_mode mode, bool tls, const char *name)
{
	memset(f, 0, sizeof(*f));
	f->base = event_base_new();
	assert_non_null(f->base);
	server_init(&f->server, f->base, mode, tls);
	f->client.base = f->base;
	mt_buf_init(&f->client.received, 16u * 1024 * 1024);
	f->client.release_timer = evtimer_new(f->base, client_release, &f->client);
	f->safety = evtimer_new(f->base, on_safety_timeout, (void *)name);
	event_add(f->safety, &(struct timeval){.tv_sec = 5});
}

static void fixture_connect(struct fixture *f, const char *host, bool implicit_tls,
                            struct mt_tls_config *tls, const struct mt_tls_pin *pin)
{
	struct mt_conn_params params = {
	    .host = host,
	    .port = f->server.port,
	    .connect_timeout_ms = 2000,
	    .implicit_tls = implicit_tls,
	    .tls = tls,
	    .pin = pin,
	};
	const char *error = NULL;
	f->client.conn = mt_conn_new(f->base, NULL, &params, &client_callbacks, &f->client, &error);
	assert_non_null(f->client.conn);
	assert_string_equal(mt_conn_state_name(f->client.conn), "resolving");
	assert_int_equal(f->client.connected, 0); /* never called back from inside mt_conn_new */
}

static void fixture_run(struct fixture *f)
{
	event_base_dispatch(f->base);
}

/* fixture_run, timed: the milliseconds it took. */
static long fixture_run_timed(struct fixture *f)
{
	struct timeval start, end;
	gettimeofday(&start, NULL);
	fixture_run(f);
	gettimeofday(&end, NULL);
	return (end.tv_sec - start.tv_sec) * 1000 + (end.tv_usec - start.tv_usec) / 1000;
}

static void fixture_free(struct fixture *f)
{
	mt_conn_free(&f->client.conn);
	assert_null(f->client.conn);
	mt_buf_free(&f->client.received);
	event_free(f->client.release_timer);
	event_free(f->safety);
	server_free(&f->server);
	event_base_free(f->base);
}

/* --- tests --------------------------------------------------------------------------------- */

static void test_pin_parse(void **state)
{
	(void)state;
	struct mt_tls_pin pin;
	const char *error = NULL;
	const char *lower = "sha256:"
	                    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
	const char *upper = "sha256:"
	                    "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF";
	const char *colons = "sha256:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:"
	                     "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff";
	assert_int_equal(mt_tls_pin_parse(lower, &pin, &error), 0);
	assert_int_equal(pin.kind, MT_PIN_CERT_SHA256);
	assert_int_equal(pin.digest[0], 0x00);
	assert_int_equal(pin.digest[10], 0xaa);
	assert_int_equal(pin.digest[31], 0xff);
	struct mt_tls_pin other;
	assert_int_equal(mt_tls_pin_parse(upper, &other, &error), 0);
	assert_memory_equal(pin.digest, other.digest, 32);
	assert_int_equal(mt_tls_pin_parse(colons, &other, &error), 0);
	assert_memory_equal(pin.digest, other.digest, 32);

	assert_int_equal(mt_tls_pin_parse("spki-sha256:"
	                                  "00112233445566778899aabbccddeeff00112233445566778899aab"
	                                  "bccddeeff",
	                                  &other, &error),
	                 0);
	assert_int_equal(other.kind, MT_PIN_SPKI_SHA256);
	assert_memory_equal(pin.digest, other.digest, 32);

	error = NULL;
	assert_int_equal(mt_tls_pin_parse("sha256:0011", &other, &error), -1);
	assert_non_null(strstr(error, "64 hex digits"));
	assert_int_equal(mt_tls_pin_parse("sha256:"
	                                  "00112233445566778899aabbccddeeff00112233445566778899aab"
	                                  "bccddeeff00",
	                                  &other, &error),
	                 -1);
	assert_int_equal(
	    mt_tls_pin_parse("sha1:00112233445566778899aabbccddeeff00112233", &other, &error), -1);
	assert_non_null(strstr(error, "must start with"));
	assert_int_equal(mt_tls_pin_parse("md5:"
	                                  "00112233445566778899aabbccddeeff00112233445566778899aab"
	                                  "bccddeeff",
	                                  &other, &error),
	                 -1);
	assert_int_equal(mt_tls_pin_parse("sha256:"
	                                  "g0112233445566778899aabbccddeeff00112233445566778899aab"
	                                  "bccddeeff",
	                                  &other, &error),
	                 -1);
	assert_non_null(strstr(error, "hex"));
	/* colon form with a wrong separator */
	assert_int_equal(mt_tls_pin_parse("sha256:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF-"
	                                  "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff",
	                                  &other, &error),
	                 -1);
	assert_int_equal(mt_tls_pin_parse("", &other, &error), -1);
}

static void test_fingerprint_matches_openssl(void **state)
{
	(void)state;
	char fingerprint[MT_TLS_FINGERPRINT_MAX];
	mt_tls_cert_fingerprint(test_cert, fingerprint, sizeof(fingerprint));
	assert_string_equal(fingerprint, test_cert_fingerprint);
	mt_tls_spki_fingerprint(test_cert, fingerprint, sizeof(fingerprint));
	assert_string_equal(fingerprint, test_spki_pin);

	struct mt_tls_pin pin;
	const char *error;
	assert_int_equal(mt_tls_pin_parse(test_cert_fingerprint, &pin, &error), 0);
	assert_true(mt_tls_pin_matches(&pin, test_cert));
	assert_int_equal(mt_tls_pin_parse(test_spki_pin, &pin, &error), 0);
	assert_true(mt_tls_pin_matches(&pin, test_cert));
	pin.digest[0] ^= 1;
	assert_false(mt_tls_pin_matches(&pin, test_cert));
}

static void test_invalid_params(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	const char *error = NULL;
	struct mt_conn_params params = {.host = "", .port = 25};
	assert_null(mt_conn_new(base, NULL, &params, &client_callbacks, NULL, &error));
	assert_non_null(error);
	params.host = "127.0.0.1";
	params.implicit_tls = true;
	assert_null(mt_conn_new(base, NULL, &params, &client_callbacks, NULL, &error));
	params.implicit_tls = false;
	params.bind_address = "not-an-ip";
	assert_null(mt_conn_new(base, NULL, &params, &client_callbacks, NULL, &error));
	/* free before the loop ever ran: nothing must fire or leak */
	params.bind_address = NULL;
	struct mt_conn *conn = mt_conn_new(base, NULL, &params, &client_callbacks, NULL, &error);
	assert_non_null(conn);
	mt_conn_free(&conn);
	assert_null(conn);
	mt_conn_free(&conn);
	mt_conn_free(NULL);
	event_base_dispatch(base);
	event_base_free(base);
}

static void test_connect_refused(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, SERVER_SILENT, false, "refused");
	f.server.port = closed_port();
	fixture_connect(&f, "127.0.0.1", false, NULL, NULL);
	fixture_run(&f);
	assert_int_equal(f.client.errors, 1);
	assert_int_equal(f.client.connected, 0);
	assert_int_equal(f.client.error.cls, MT_CLASS_CONN);
	assert_non_null(strstr(f.client.error.reason, "connection refused"));
	assert_false(f.client.error.closed_by_peer);
	assert_string_equal(mt_conn_state_name(f.client.conn), "closed");
	assert_int_equal(mt_conn_write(f.client.conn, "x", 1), -1);
	fixture_free(&f);
}

static void test_connect_localhost_with_source_address(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, SERVER_ECHO, false, "localhost");
	struct mt_conn_params params = {
	    .host = "localhost",
	    .port = f.server.port,
	    .bind_address = "127.0.0.2",
	};
	const char *error;
	f.client.on_connect_send = "QUIT\r\n";
	f.client.conn = mt_conn_new(f.base, NULL, &params, &client_callbacks, &f.client, &error);
	assert_non_null(f.client.conn);
	fixture_run(&f);
	assert_int_equal(f.client.connected, 1);
	assert_int_equal(f.client.errors, 1);
	assert_string_equal(f.client.received.data, "bye\r\n");
	assert_string_equal(f.server.last_peer_ip, "127.0.0.2");
	char expected_peer[32];
	snprintf(expected_peer, sizeof(expected_peer), "127.0.0.1:%u", f.server.port);
	assert_string_equal(mt_conn_peer(f.client.conn), expected_peer);
	fixture_free(&f);
}

/* A user-supplied host must not reach the server's own network, checked on the addresses
 * actually connected to: refused for loopback unless the operator allows it. */
static void test_public_only(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, SERVER_ECHO, false, "public-only");
	struct mt_conn_params params = {
	    .host = "127.0.0.1",
	    .port = f.server.port,
	    .public_only = true,
	};
	const char *error;
	f.client.conn = mt_conn_new(f.base, NULL, &params, &client_callbacks, &f.client, &error);
	assert_non_null(f.client.conn);
	fixture_run(&f);
	assert_int_equal(f.client.connected, 0);
	assert_int_equal(f.client.errors, 1);
	assert_int_equal(f.client.error.cls, MT_CLASS_CONN);
	assert_non_null(strstr(f.client.error.reason, "private or local address"));
	fixture_free(&f);

	fixture_init(&f, SERVER_ECHO, false, "public-only-allowed");
	struct mt_cidr_list allow;
	assert_int_equal(mt_cidr_list_parse("127.0.0.0/8", &allow, &error), 0);
	params.port = f.server.port;
	params.allow_private = &allow;
	f.client.on_connect_send = "QUIT\r\n";
	f.client.conn = mt_conn_new(f.base, NULL, &params, &client_callbacks, &f.client, &error);
	assert_non_null(f.client.conn);
	fixture_run(&f);
	assert_int_equal(f.client.connected, 1);
	fixture_free(&f);
	mt_cidr_list_free(&allow);
}

static void test_plain_echo_then_eof(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, SERVER_ECHO, false, "echo");
	f.client.on_connect_send = "HELLO\r\nQUIT\r\n";
	fixture_connect(&f, "127.0.0.1", false, NULL, NULL);
	assert_int_equal(mt_conn_write(f.client.conn, "EARLY\r\n", 7), 0); /* queued pre-connect */
	fixture_run(&f);
	assert_int_equal(f.client.connected, 1);
	assert_true(f.client.readable >= 1);
	assert_true(f.client.drained >= 1);
	/* every byte read before the EOF was delivered first */
	assert_string_equal(f.client.received.data, "EARLY\r\nHELLO\r\nbye\r\n");
	assert_int_equal(f.client.errors, 1);
	assert_int_equal(f.client.error.cls, MT_CLASS_CONN);
	assert_true(f.client.error.closed_by_peer);
	assert_string_equal(f.client.error.reason, "connection closed by peer");
	assert_false(mt_conn_is_tls(f.client.conn));
	assert_string_equal(mt_conn_tls_info(f.client.conn), "");
	fixture_free(&f);
}

static void test_read_timeout(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, SERVER_SILENT, false, "read timeout");
	fixture_connect(&f, "127.0.0.1", false, NULL, NULL);
	mt_conn_set_read_timeout(f.client.conn, 200);
	long elapsed_ms = fixture_run_timed(&f);
	assert_int_equal(f.client.connected, 1);
	assert_int_equal(f.client.errors, 1);
	assert_int_equal(f.client.error.cls, MT_CLASS_CONN);
	assert_string_equal(f.client.error.reason, "timed out waiting for the server (0.2 s)");
	assert_true(elapsed_ms >= 190 && elapsed_ms < 2000);
	fixture_free(&f);
}

/* A server that sends its answer in pieces 5 ms apart (each after `pad` bytes of padding): read
 * at once, each piece is its own read (and wake-up); with a read delay longer than the whole
 * answer takes, one read gets it all and the owner hears of it once, no byte lost, in plaintext
 * as over TLS. */
static void run_read_delay(bool use_tls, int delay_us, size_t pad, int *readable_r,
                           long *elapsed_ms_r)
{
	const char *error;
	struct mt_tls_config *tls = mt_tls_config_new(test_ca_path, &error);
	struct fixture f;
	fixture_init(&f, SERVER_DRIP, use_tls, "read delay");
	f.server.drip_pad = pad;
	f.client.stop_at = "p4\r\n";
	fixture_connect(&f, "127.0.0.1", use_tls, tls, NULL);
	mt_conn_set_read_delay(f.client.conn, delay_us);
	*elapsed_ms_r = fixture_run_timed(&f);
	assert_int_equal(f.client.errors, 0);
	assert_int_equal(f.client.received.len, DRIP_PIECES * (pad + 4));
	if (pad == 0)
		assert_string_equal(f.client.received.data, "p0\r\np1\r\np2\r\np3\r\np4\r\n");
	*readable_r = f.client.readable;
	fixture_free(&f);
	mt_tls_config_free(&tls);
}

/* A sender at least as fast as we read (each piece fills the input buffer) is read at once after
 * the first wait: without that rule every piece would wait the delay, and the five would take
 * over half a second. */
static void test_read_delay_fast_sender(void **state)
{
	(void)state;
	int readable;
	long elapsed_ms;
	run_read_delay(false, 100000, 2 * MT_NET_INPUT_MAX, &readable, &elapsed_ms);
	assert_true(elapsed_ms >= 90); /* the first read waited */
	assert_true(elapsed_ms < 350); /* the others did not (each waiting: ~600 ms) */
}

static void test_read_delay(void **state)
{
	(void)state;
	for (int t = 0; t < 2; t++) {
		int readable;
		long elapsed_ms;
		run_read_delay(t == 1, 0, 0, &readable, &elapsed_ms);
		/* plaintext: a read per piece, give or take (the test server's TLS side sends
		 * its pieces as its own handshake and write events allow) */
		if (t == 0)
			assert_true(readable >= 3);
		run_read_delay(t == 1, 80000, 0, &readable, &elapsed_ms);
		assert_int_equal(readable, 1);
		/* libevent's timers run on the coarse monotonic clock: a few ms early at most */
		assert_true(elapsed_ms >= 70);
	}
	/* capped: a delay past the cap waits the cap */
	int readable;
	long elapsed_ms;
	run_read_delay(false, 10 * MT_NET_READ_DELAY_MAX_US, 0, &readable, &elapsed_ms);
	assert_int_equal(readable, 1);
	assert_true(elapsed_ms >= MT_NET_READ_DELAY_MAX_US / 1000 - 10 &&
	            elapsed_ms < 2 * MT_NET_READ_DELAY_MAX_US / 1000);
}

static void test_tls_self_signed_without_pin(void **state)
{
	(void)state;
	const char *error;
	struct mt_tls_config *tls = mt_tls_config_new(NULL, &error);
	assert_non_null(tls);
	struct fixture f;
	fixture_init(&f, SERVER_ECHO, true, "tls no pin");
	fixture_connect(&f, "localhost", true, tls, NULL);
	fixture_run(&f);
	assert_int_equal(f.client.connected, 0);
	assert_int_equal(f.client.errors, 1);
	assert_int_equal(f.client.error.cls, MT_CLASS_TLS);
	assert_string_equal(f.client.error.reason,
	                    "certificate verify failed: self-signed certificate");
	assert_string_equal(f.client.error.fingerprint, test_cert_fingerprint);
	fixture_free(&f);
	mt_tls_config_free(&tls);
	assert_null(tls);
}

static void run_tls_pinned(const char *pin_text, const char *host, bool expect_ok)
{
	const char *error;
	struct mt_tls_config *tls = mt_tls_config_new(NULL, &error);
	struct mt_tls_pin pin;
	assert_int_equal(mt_tls_pin_parse(pin_text, &pin, &error), 0);
	struct fixture f;
	fixture_init(&f, SERVER_ECHO, true, pin_text);
	f.client.stop_at = "QUIT-OK\r\n";
	f.client.on_connect_send = "QUIT-OK\r\n";
	fixture_connect(&f, host, true, tls, &pin);
	fixture_run(&f);
	if (expect_ok) {
		assert_int_equal(f.client.errors, 0);
		assert_int_equal(f.client.connected, 1);
		assert_true(mt_conn_is_tls(f.client.conn));
		assert_non_null(strstr(mt_conn_tls_info(f.client.conn), "TLSv1.3 TLS_"));
		assert_string_equal(f.client.received.data, "220 tls\r\nQUIT-OK\r\n");
	} else {
		assert_int_equal(f.client.connected, 0);
		assert_int_equal(f.client.errors, 1);
		assert_int_equal(f.client.error.cls, MT_CLASS_TLS);
		assert_non_null(strstr(f.client.error.reason, "does not match the pin"));
		assert_string_equal(f.client.error.fingerprint, test_cert_fingerprint);
	}
	fixture_free(&f);
	mt_tls_config_free(&tls);
}

static void test_tls_pins(void **state)
{
	(void)state;
	run_tls_pinned(test_cert_fingerprint, "127.0.0.1", true);
	run_tls_pinned(test_cert_fingerprint, "localhost", true);
	run_tls_pinned(test_spki_pin, "127.0.0.1", true);
	run_tls_pinned("sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	               "127.0.0.1", false);
	run_tls_pinned("spki-sha256:"
	               "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	               "127.0.0.1", false);
}

static void run_tls_with_ca(const char *host, const char *expect_error)
{
	const char *error;
	struct mt_tls_config *tls = mt_tls_config_new(test_ca_path, &error);
	assert_non_null(tls);
	struct fixture f;
	fixture_init(&f, SERVER_ECHO, true, host);
	f.client.on_connect_send = "QUIT\r\n";
	fixture_connect(&f, host, true, tls, NULL);
	fixture_run(&f);
	assert_int_equal(f.client.errors, 1);
	if (expect_error == NULL) {
		assert_int_equal(f.client.connected, 1);
		/* the server closed without close_notify: an ordinary EOF, after the data */
		assert_string_equal(f.client.received.data, "220 tls\r\nbye\r\n");
		assert_int_equal(f.client.error.cls, MT_CLASS_CONN);
		assert_true(f.client.error.closed_by_peer);
	} else {
		assert_int_equal(f.client.connected, 0);
		assert_int_equal(f.client.error.cls, MT_CLASS_TLS);
		assert_string_equal(f.client.error.reason, expect_error);
		assert_string_equal(f.client.error.fingerprint, test_cert_fingerprint);
	}
	fixture_free(&f);
	mt_tls_config_free(&tls);
}

static void test_tls_ca_file(void **state)
{
	(void)state;
	run_tls_with_ca("127.0.0.1", NULL);
	run_tls_with_ca("localhost", NULL);
	/* trusted chain, but the name is not in the certificate */
	run_tls_with_ca("sub.localhost", "certificate verify failed: hostname mismatch");

	const char *error = NULL;
	assert_null(mt_tls_config_new("/nonexistent/ca.pem", &error));
	assert_non_null(strstr(error, "CA file"));
}

static void test_tls_to_plaintext_server(void **state)
{
	(void)state;
	const char *error;
	struct mt_tls_config *tls = mt_tls_config_new(NULL, &error);
	struct fixture f;
	fixture_init(&f, SERVER_GREET, false, "tls to plain");
	fixture_connect(&f, "127.0.0.1", true, tls, NULL);
	fixture_run(&f);
	assert_int_equal(f.client.errors, 1);
	assert_int_equal(f.client.error.cls, MT_CLASS_TLS);
	assert_string_equal(f.client.error.reason, "TLS handshake failed: wrong version number");
	assert_string_equal(f.client.error.fingerprint, "");
	fixture_free(&f);
	mt_tls_config_free(&tls);
}

static void test_starttls(void **state)
{
	(void)state;
	const char *error;
	struct mt_tls_config *tls = mt_tls_config_new(test_ca_path, &error);
	struct fixture f;
	fixture_init(&f, SERVER_STARTTLS, false, "starttls");
	f.client.starttls = true;
	f.client.stop_at = "PING\r\n";
	fixture_connect(&f, "localhost", false, tls, NULL);
	fixture_run(&f);
	assert_int_equal(f.client.errors, 0);
	assert_int_equal(f.client.connected, 1);
	assert_int_equal(f.client.tls_ready, 1);
	assert_true(mt_conn_is_tls(f.client.conn));
	assert_string_equal(f.client.received.data, "PING\r\n");
	/* a second STARTTLS is refused */
	assert_int_equal(mt_conn_start_tls(f.client.conn, &error), -1);
	fixture_free(&f);
	mt_tls_config_free(&tls);
}

static void test_starttls_refuses_buffered_input(void **state)
{
	(void)state;
	const char *error;
	struct mt_tls_config *tls = mt_tls_config_new(test_ca_path, &error);
	struct fixture f;
	fixture_init(&f, SERVER_STARTTLS_INJECT, false, "starttls inject");
	f.client.starttls = true;
	fixture_connect(&f, "127.0.0.1", false, tls, NULL);
	fixture_run(&f);
	assert_int_equal(f.client.start_tls_result, -1);
	assert_non_null(strstr(f.client.start_tls_error, "injection"));
	assert_int_equal(f.client.tls_ready, 0);
	fixture_free(&f);
	mt_tls_config_free(&tls);
}

static void test_free_inside_callbacks(void **state)
{
	(void)state;
	struct fixture f;

	fixture_init(&f, SERVER_SILENT, false, "free in error");
	f.server.port = closed_port();
	f.client.free_in_error = true;
	fixture_connect(&f, "127.0.0.1", false, NULL, NULL);
	fixture_run(&f);
	assert_int_equal(f.client.errors, 1);
	assert_null(f.client.conn);
	fixture_free(&f);

	fixture_init(&f, SERVER_ECHO, false, "free in readable");
	f.client.on_connect_send = "QUIT\r\n"; /* "bye" and EOF arrive together */
	f.client.free_in_readable = true;
	fixture_connect(&f, "127.0.0.1", false, NULL, NULL);
	fixture_run(&f);
	assert_null(f.client.conn);
	assert_int_equal(f.client.errors, 0); /* freed: the EOF is never reported */
	fixture_free(&f);

	fixture_init(&f, SERVER_ECHO, false, "free in connected");
	f.client.free_in_connected = true;
	fixture_connect(&f, "127.0.0.1", false, NULL, NULL);
	fixture_run(&f);
	assert_null(f.client.conn);
	fixture_free(&f);

	/* TLS: freed from `error` after a verification failure */
	const char *error;
	struct mt_tls_config *tls = mt_tls_config_new(NULL, &error);
	fixture_init(&f, SERVER_ECHO, true, "free in tls error");
	f.client.free_in_error = true;
	fixture_connect(&f, "127.0.0.1", true, tls, NULL);
	fixture_run(&f);
	assert_int_equal(f.client.errors, 1);
	assert_int_equal(f.client.error.cls, MT_CLASS_TLS);
	assert_null(f.client.conn);
	fixture_free(&f);
	mt_tls_config_free(&tls);
}

/* The server floods; the client consumes only from a timer, once its input is full. With
 * keep_open the stream never ends, so a reader that failed to resume would stall. */
static void run_back_pressure(bool use_tls, bool keep_open)
{
	const char *error;
	struct mt_tls_config *tls = mt_tls_config_new(test_ca_path, &error);
	size_t total = 512u * 1024 + 100;
	struct fixture f;
	fixture_init(&f, SERVER_FLOOD, use_tls, "back-pressure");
	f.server.flood_bytes = total;
	f.server.flood_keep_open = keep_open;
	f.client.hold_input = true;
	if (keep_open)
		f.client.expect_total = total;
	fixture_connect(&f, "127.0.0.1", use_tls, tls, NULL);
	fixture_run(&f);
	if (keep_open) {
		assert_int_equal(f.client.errors, 0);
	} else {
		assert_int_equal(f.client.errors, 1);
		assert_true(f.client.error.closed_by_peer);
	}
	assert_int_equal(f.client.max_input_seen, MT_NET_INPUT_MAX); /* it did fill and pause */
	assert_int_equal(f.client.consumed + mt_conn_input(f.client.conn)->len, total);
	fixture_free(&f);
	mt_tls_config_free(&tls);
}

static void test_back_pressure(void **state)
{
	(void)state;
	run_back_pressure(false, false);
	run_back_pressure(true, false);
	run_back_pressure(false, true);
	run_back_pressure(true, true);
}

static void run_large_write(bool use_tls)
{
	const char *error;
	struct mt_tls_config *tls = mt_tls_config_new(test_ca_path, &error);
	struct fixture f;
	size_t total = 6u * 1024 * 1024;
	fixture_init(&f, SERVER_SINK, use_tls, "large write");
	f.server.sink_expect = total;
	char expect[64];
	snprintf(expect, sizeof(expect), "got %zu\r\n", total);
	f.client.stop_at = expect;
	fixture_connect(&f, "127.0.0.1", use_tls, tls, NULL);
	char *body = malloc(total);
	memset(body, 'b', total);
	assert_int_equal(mt_conn_write(f.client.conn, body, total), 0);
	assert_int_equal(mt_conn_output_pending(f.client.conn), total);
	/* the cap counts what is still unsent */
	assert_int_equal(mt_conn_write(f.client.conn, body, MT_NET_OUTPUT_MAX - total + 1), -1);
	free(body);
	fixture_run(&f);
	assert_int_equal(f.client.errors, 0);
	assert_string_equal(f.client.received.data, expect);
	assert_int_equal(mt_conn_output_pending(f.client.conn), 0);
	assert_true(f.client.drained >= 1);
	fixture_free(&f);
	mt_tls_config_free(&tls);
}

static void test_large_write(void **state)
{
	(void)state;
	run_large_write(false);
	run_large_write(true);
}

/* A connection whose owner consumed everything holds no input buffer (a read reserves
 * MT_NET_READ_CHUNK: 32 KiB kept on every idle connection otherwise), and reads on. */
static void run_idle_buffers(bool use_tls)
{
	const char *error;
	struct mt_tls_config *tls = mt_tls_config_new(NULL, &error);
	struct mt_tls_pin pin;
	assert_int_equal(mt_tls_pin_parse(test_cert_fingerprint, &pin, &error), 0);
	struct fixture f;
	fixture_init(&f, SERVER_ECHO, use_tls, "idle buffers");
	f.client.on_connect_send = "PING\r\n";
	f.client.stop_at = "PING\r\n";
	fixture_connect(&f, "127.0.0.1", use_tls, tls, use_tls ? &pin : NULL);
	fixture_run(&f);
	assert_int_equal(f.client.errors, 0);
	assert_true(f.client.readable >= 1);
	assert_int_equal(mt_conn_input(f.client.conn)->len, 0);
	assert_null(mt_conn_input(f.client.conn)->data);
	assert_int_equal(mt_conn_input(f.client.conn)->cap, 0);
	/* the next read allocates again */
	f.client.stop_at = "AGAIN\r\n";
	assert_int_equal(mt_conn_write(f.client.conn, "AGAIN\r\n", 7), 0);
	fixture_run(&f);
	assert_int_equal(f.client.errors, 0);
	assert_non_null(strstr(f.client.received.data, "PING\r\nAGAIN\r\n"));
	assert_null(mt_conn_input(f.client.conn)->data);
	fixture_free(&f);
	mt_tls_config_free(&tls);
}

static void test_idle_buffers(void **state)
{
	(void)state;
	run_idle_buffers(false);
	run_idle_buffers(true);
}

static void free_pending_lookup(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct client *c = arg;
	if (c->conn != NULL) {
		assert_string_equal(mt_conn_state_name(c->conn), "resolving");
		mt_conn_free(&c->conn);
	}
}

static void break_loop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

/* A name goes to evdns (no network here: it fails or hangs); freeing the connection while the
 * lookup is pending cancels it, and the late cancel callback must not touch the freed memory. */
static void test_dns_lookup_freed_while_pending(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct evdns_base *dns = mt_conn_dns_new(base);
	assert_non_null(dns);
	struct client c = {.base = base};
	mt_buf_init(&c.received, 1024);
	struct mt_conn_params params = {.host = "mailtrail-test.invalid", .port = 25};
	const char *error;
	c.conn = mt_conn_new(base, dns, &params, &client_callbacks, &c, &error);
	assert_non_null(c.conn);
	struct event *free_timer = evtimer_new(base, free_pending_lookup, &c);
	struct event *stop_timer = evtimer_new(base, break_loop, base);
	event_add(free_timer, &(struct timeval){0});
	event_add(stop_timer, &(struct timeval){.tv_usec = 300000});
	event_base_dispatch(base);
	/* Either the lookup failed at once (the error callback broke the loop) or it was freed
	 * while pending and cancelled silently; run the loop on so a late callback would land. */
	assert_int_equal(c.connected, 0);
	if (c.errors > 0) {
		assert_int_equal(c.error.cls, MT_CLASS_CONN);
		assert_non_null(strstr(c.error.reason, "cannot resolve mailtrail-test.invalid"));
		mt_conn_free(&c.conn);
		event_add(stop_timer, &(struct timeval){.tv_usec = 100000});
		event_base_dispatch(base);
	}
	assert_null(c.conn);
	event_free(free_timer);
	event_free(stop_timer);
	evdns_base_free(dns, 1);
	event_base_free(base);
	mt_buf_free(&c.received);
}

int main(void)
{
	/* OpenSSL writes with write(2): the library documents that programs ignore SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pin_parse),
	    cmocka_unit_test(test_fingerprint_matches_openssl),
	    cmocka_unit_test(test_invalid_params),
	    cmocka_unit_test(test_connect_refused),
	    cmocka_unit_test(test_connect_localhost_with_source_address),
	    cmocka_unit_test(test_public_only),
	    cmocka_unit_test(test_plain_echo_then_eof),
	    cmocka_unit_test(test_read_timeout),
	    cmocka_unit_test(test_read_delay),
	    cmocka_unit_test(test_read_delay_fast_sender),
	    cmocka_unit_test(test_tls_self_signed_without_pin),
	    cmocka_unit_test(test_tls_pins),
	    cmocka_unit_test(test_tls_ca_file),
	    cmocka_unit_test(test_tls_to_plaintext_server),
	    cmocka_unit_test(test_starttls),
	    cmocka_unit_test(test_starttls_refuses_buffered_input),
	    cmocka_unit_test(test_free_inside_callbacks),
	    cmocka_unit_test(test_back_pressure),
	    cmocka_unit_test(test_large_write),
	    cmocka_unit_test(test_idle_buffers),
	    cmocka_unit_test(test_dns_lookup_freed_while_pending),
	};
	return cmocka_run_group_tests(tests, make_test_cert, free_test_cert);
}
