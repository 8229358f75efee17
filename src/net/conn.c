#include "net/conn.h"

#include "lib/log.h"
#include "lib/str.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONN_DEFAULT_CONNECT_TIMEOUT_MS 30000

enum conn_state {
	CONN_RESOLVING,
	CONN_CONNECTING,
	CONN_TLS_HANDSHAKE,
	CONN_OPEN,
	CONN_CLOSED,
	CONN_STATE_COUNT
};

static const char *const conn_state_names[CONN_STATE_COUNT] = {
    [CONN_RESOLVING] = "resolving",
    [CONN_CONNECTING] = "connecting",
    [CONN_TLS_HANDSHAKE] = "tls_handshake",
    [CONN_OPEN] = "open",
    [CONN_CLOSED] = "closed",
};

/* The evdns callback's argument. It is separate from the connection because a cancelled lookup
 * still calls back later (from a deferred callback), possibly after the connection is gone. */
struct conn_dns_lookup {
	struct mt_conn *conn; /* NULL once the connection gave up on the lookup */
};

enum conn_io_result { CONN_IO_AGAIN, CONN_IO_EOF, CONN_IO_ERROR };

struct conn_address {
	struct sockaddr_storage sa;
	socklen_t len;
};

struct mt_conn {
	struct event_base *base;
	struct evdns_base *dns;
	enum conn_state state;

	char host[MT_HOSTNAME_MAX + 1];
	char bind_address[INET6_ADDRSTRLEN];
	uint16_t port;
	int connect_timeout_ms;
	bool implicit_tls;
	struct mt_tls_config *tls;
	struct mt_tls_pin pin;
	bool pinned;
	struct mt_conn_callbacks callbacks;
	void *ctx;

	struct conn_dns_lookup *lookup;
	struct evdns_getaddrinfo_request *dns_request;
	/* the addresses to try (MT_DNS_ADDRS_MAX, 2 KiB): only until one is connected */
	struct conn_address *addrs;
	int addr_count;
	int addr_next;
	bool public_only;
	const struct mt_cidr_list *allow_private;
	int refused_private; /* addresses skipped by public_only */
	char last_connect_error[192];

	evutil_socket_t fd;
	struct event *read_event;
	struct event *write_event;
	bool read_armed;
	bool write_armed;
	/* Deadline of the current connect attempt or TLS handshake. */
	struct event *step_timer;
	struct event *read_timer;
	int read_timeout_ms;
	/* Deferred work run from the loop, so that callbacks never fire from inside mt_conn_new(),
	 * mt_conn_start_tls() or mt_conn_resume_read(). */
	struct event *kick;
	/* Plaintext: queued output is written at the loop's next turn (a zero timeout: never
	 * inside mt_conn_write(), and other sockets are polled in between, as with the write
	 * event) without the socket's write event: arming and disarming it cost two epoll_ctl per
	 * write. The event is armed only once the socket refused part of the output
	 * (write_blocked). */
	struct event *flusher;
	bool write_blocked;
	/* mt_conn_set_read_delay(): how long a read waits after the socket signals, and the timer
	 * armed while one waits (the read event is off meanwhile: it is level-triggered). A burst
	 * is what was read from one wake-up until the socket had no more; the delay applies only
	 * after a burst that did not fill the input buffer (a sender slower than us). */
	int read_delay_us;
	struct event *read_delayer;
	bool read_delayed;
	size_t burst;
	size_t last_burst;

	SSL *ssl;
	struct mt_tls_verify_state verify;
	int handshake_wants; /* SSL_ERROR_WANT_READ / _WRITE, 0 before the first step */
	bool read_wants_write;
	bool write_wants_read;
	/* An SSL_write that wanted I/O must be repeated with the same length. */
	size_t tls_retry_len;
	bool tls_established;
	bool starttls; /* the handshake was started by mt_conn_start_tls() */

	struct mt_buf input;
	bool input_paused; /* stopped reading because the input buffer is full */
	struct mt_buf output;
	size_t output_sent; /* output.data[output_sent, output.len) is still to be sent */

	char peer[INET6_ADDRSTRLEN + 8];
	char tls_info[128];

	int callback_depth;
	bool free_pending;
	bool error_reported;
};

static void conn_update_events(struct mt_conn *conn);

/* --- lifetime ------------------------------------------------------------------------------ */

/* Every entry from the event loop is bracketed by conn_enter()/conn_leave(): an owner callback
 * that calls mt_conn_free() only marks the connection, and the outermost conn_leave() frees
 * it once no frame of ours still uses it. */
static void conn_enter(struct mt_conn *conn)
{
	conn->callback_depth++;
}

static void conn_destroy(struct mt_conn *conn)
{
	if (conn->lookup != NULL) {
		conn->lookup->conn = NULL;
		if (conn->dns_request != NULL)
			evdns_getaddrinfo_cancel(conn->dns_request);
	}
	if (conn->read_event != NULL)
		event_free(conn->read_event);
	if (conn->write_event != NULL)
		event_free(conn->write_event);
	if (conn->step_timer != NULL)
		event_free(conn->step_timer);
	if (conn->read_timer != NULL)
		event_free(conn->read_timer);
	if (conn->kick != NULL)
		event_free(conn->kick);
	if (conn->flusher != NULL)
		event_free(conn->flusher);
	if (conn->read_delayer != NULL)
		event_free(conn->read_delayer);
	/* No close_notify: the application protocol (QUIT, LOGOUT) has already ended the session,
	 * and a blocking-free shutdown on a possibly dead socket gains nothing. */
	SSL_free(conn->ssl);
	if (conn->fd >= 0)
		evutil_closesocket(conn->fd);
	mt_buf_free(&conn->input);
	mt_buf_free(&conn->output);
	free(conn->addrs);
	free(conn);
}

static void conn_leave(struct mt_conn *conn)
{
	if (--conn->callback_depth == 0 && conn->free_pending)
		conn_destroy(conn);
}

/* Calls an owner callback; false when the owner freed the connection (or it failed) in it. */
static bool conn_notify(struct mt_conn *conn, void (*callback)(void *ctx))
{
	if (callback != NULL)
		callback(conn->ctx);
	return !conn->free_pending && conn->state != CONN_CLOSED;
}

static void conn_stop_io(struct mt_conn *conn)
{
	if (conn->read_event != NULL)
		event_del(conn->read_event);
	if (conn->write_event != NULL)
		event_del(conn->write_event);
	conn->read_armed = conn->write_armed = false;
	event_del(conn->step_timer);
	event_del(conn->read_timer);
	event_del(conn->kick);
	event_del(conn->flusher);
	event_del(conn->read_delayer);
	conn->read_delayed = false;
}

/* Reports the failure (once) and stops all I/O. Only called from inside conn_enter/leave, so an
 * owner freeing the connection from `error` is safe; callers return right after. */
static void conn_fail(struct mt_conn *conn, enum mt_failure_class cls, bool closed_by_peer,
                      const char *fingerprint, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void conn_fail(struct mt_conn *conn, enum mt_failure_class cls, bool closed_by_peer,
                      const char *fingerprint, const char *fmt, ...)
{
	if (conn->error_reported || conn->free_pending)
		return;
	conn->error_reported = true;
	conn_stop_io(conn);
	enum conn_state failed_in = conn->state;
	conn->state = CONN_CLOSED;

	struct mt_net_error error = {.cls = cls, .closed_by_peer = closed_by_peer};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(error.reason, sizeof(error.reason), fmt, ap);
	va_end(ap);
	if (fingerprint != NULL)
		mt_strlcpy(error.fingerprint, fingerprint, sizeof(error.fingerprint));
	mt_log(MT_LOG_DEBUG, "net.conn_failed", MT_KV("host", conn->host),
	       MT_KV("state", conn_state_names[failed_in]), MT_KV("class", mt_class_name(cls)),
	       MT_KV("reason", error.reason));
	if (conn->callbacks.error != NULL)
		conn->callbacks.error(conn->ctx, &error);
}

/* strerror() reads as a sentence start ("Connection refused"); our reasons are fragments. */
static void describe_errno(int err, char *out, size_t out_size)
{
	mt_strlcpy(out, strerror(err), out_size);
	if (out[0] != '\0')
		out[0] = (char)tolower((unsigned char)out[0]);
}

static void format_seconds(int ms, char *out, size_t out_size)
{
	if (ms % 1000 == 0)
		snprintf(out, out_size, "%d s", ms / 1000);
	else
		snprintf(out, out_size, "%.1f s", ms / 1000.0);
}

static void format_address(const struct sockaddr *sa, char *out, size_t out_size)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		snprintf(out, out_size, "[%s]:%u", ip, ntohs(sin6->sin6_port));
	} else {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		snprintf(out, out_size, "%s:%u", ip, ntohs(sin->sin_port));
	}
}

static void conn_arm_timer(struct event *timer, int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	event_add(timer, &tv);
}

/* The read timeout runs while we wait for the server: during handshakes and while open, not
 * while connecting (that has its own deadline) nor while we refuse to read (input full). */
static void conn_arm_read_timer(struct mt_conn *conn)
{
	bool waiting = conn->state == CONN_TLS_HANDSHAKE || conn->state == CONN_OPEN;
	if (conn->read_timeout_ms > 0 && waiting && !conn->input_paused)
		conn_arm_timer(conn->read_timer, conn->read_timeout_ms);
	else
		event_del(conn->read_timer);
}

/* --- connecting ---------------------------------------------------------------------------- */

static void conn_close_socket(struct mt_conn *conn)
{
	if (conn->read_event != NULL) {
		event_free(conn->read_event);
		conn->read_event = NULL;
	}
	if (conn->write_event != NULL) {
		event_free(conn->write_event);
		conn->write_event = NULL;
	}
	conn->read_armed = conn->write_armed = false;
	if (conn->fd >= 0) {
		evutil_closesocket(conn->fd);
		conn->fd = -1;
	}
}

static void conn_add_address(struct mt_conn *conn, const struct sockaddr *sa, socklen_t len)
{
	if (conn->addrs == NULL || conn->addr_count >= MT_DNS_ADDRS_MAX)
		return;
	if ((sa->sa_family != AF_INET && sa->sa_family != AF_INET6) ||
	    len > (socklen_t)sizeof(conn->addrs[0].sa))
		return;
	if (conn->public_only && mt_addr_is_private(sa) &&
	    (conn->allow_private == NULL || !mt_cidr_list_contains(conn->allow_private, sa))) {
		conn->refused_private++;
		return;
	}
	memcpy(&conn->addrs[conn->addr_count].sa, sa, len);
	conn->addrs[conn->addr_count].len = len;
	conn->addr_count++;
}

static void conn_add_addresses(struct mt_conn *conn, const struct evutil_addrinfo *list)
{
	for (const struct evutil_addrinfo *ai = list; ai != NULL; ai = ai->ai_next)
		conn_add_address(conn, ai->ai_addr, (socklen_t)ai->ai_addrlen);
}

static int conn_bind_source(struct mt_conn *conn, int family)
{
	struct sockaddr_storage local;
	socklen_t local_len;
	memset(&local, 0, sizeof(local));
	if (family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&local;
		sin6->sin6_family = AF_INET6;
		if (inet_pton(AF_INET6, conn->bind_address, &sin6->sin6_addr) != 1)
			goto mismatch;
		local_len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&local;
		sin->sin_family = AF_INET;
		if (inet_pton(AF_INET, conn->bind_address, &sin->sin_addr) != 1)
			goto mismatch;
		local_len = sizeof(*sin);
	}
	if (bind(conn->fd, (struct sockaddr *)&local, local_len) < 0) {
		char why[64];
		describe_errno(errno, why, sizeof(why));
		snprintf(conn->last_connect_error, sizeof(conn->last_connect_error),
		         "cannot bind to %s: %s", conn->bind_address, why);
		return -1;
	}
	return 0;
mismatch:
	snprintf(conn->last_connect_error, sizeof(conn->last_connect_error),
	         "source address %s is not an IPv%c address", conn->bind_address,
	         family == AF_INET6 ? '6' : '4');
	return -1;
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg);

/* Starts a non-blocking connect to addrs[index]; -1 (with last_connect_error) if it failed at
 * once. */
static int conn_connect_address(struct mt_conn *conn, int index)
{
	const struct sockaddr *sa = (const struct sockaddr *)&conn->addrs[index].sa;
	conn_close_socket(conn);
	conn->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
	if (conn->fd < 0) {
		describe_errno(errno, conn->last_connect_error, sizeof(conn->last_connect_error));
		return -1;
	}
	if (conn->bind_address[0] != '\0' && conn_bind_source(conn, sa->sa_family) < 0) {
		conn_close_socket(conn);
		return -1;
	}
	/* Commands and replies are small and flushed whole; Nagle would only add delay. */
	int one = 1;
	setsockopt(conn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(conn->fd, sa, conn->addrs[index].len) < 0 && errno != EINPROGRESS) {
		describe_errno(errno, conn->last_connect_error, sizeof(conn->last_connect_error));
		conn_close_socket(conn);
		return -1;
	}
	conn->read_event =
	    event_new(conn->base, conn->fd, EV_READ | EV_PERSIST, on_socket_event, conn);
	conn->write_event =
	    event_new(conn->base, conn->fd, EV_WRITE | EV_PERSIST, on_socket_event, conn);
	if (conn->read_event == NULL || conn->write_event == NULL) {
		mt_strlcpy(conn->last_connect_error, "out of memory",
		           sizeof(conn->last_connect_error));
		conn_close_socket(conn);
		return -1;
	}
	conn->state = CONN_CONNECTING;
	conn_update_events(conn); /* writable = connect finished, either way */
	conn_arm_timer(conn->step_timer, conn->connect_timeout_ms);
	return 0;
}

static void conn_connect_next(struct mt_conn *conn)
{
	while (conn->addr_next < conn->addr_count) {
		int index = conn->addr_next++;
		if (conn_connect_address(conn, index) == 0)
			return;
		char address[INET6_ADDRSTRLEN + 8];
		format_address((const struct sockaddr *)&conn->addrs[index].sa, address,
		               sizeof(address));
		mt_log(MT_LOG_DEBUG, "net.connect_failed", MT_KV("address", address),
		       MT_KV("reason", conn->last_connect_error));
	}
	conn_close_socket(conn);
	if (conn->addr_count == 0 && conn->refused_private > 0) {
		conn_fail(
		    conn, MT_CLASS_CONN, false, NULL,
		    "%s resolves to a private or local address this server may not connect to",
		    conn->host);
	} else if (conn->addr_count == 0) {
		conn_fail(conn, MT_CLASS_CONN, false, NULL, "no address found for %s", conn->host);
	} else if (conn->addr_count == 1) {
		conn_fail(conn, MT_CLASS_CONN, false, NULL, "cannot connect to %s port %u: %s",
		          conn->host, conn->port, conn->last_connect_error);
	} else {
		conn_fail(conn, MT_CLASS_CONN, false, NULL,
		          "cannot connect to %s port %u (%d addresses tried, last: %s)", conn->host,
		          conn->port, conn->addr_count, conn->last_connect_error);
	}
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	struct conn_dns_lookup *lookup = arg;
	struct mt_conn *conn = lookup->conn;
	free(lookup);
	if (conn == NULL) { /* cancelled or abandoned: the connection is gone */
		if (res != NULL)
			evutil_freeaddrinfo(res);
		return;
	}
	conn->lookup = NULL;
	conn->dns_request = NULL;
	conn_enter(conn);
	if (result != 0) {
		conn_fail(conn, MT_CLASS_CONN, false, NULL, "cannot resolve %s: %s", conn->host,
		          evutil_gai_strerror(result));
	} else {
		conn_add_addresses(conn, res);
		conn_connect_next(conn);
	}
	if (res != NULL)
		evutil_freeaddrinfo(res);
	conn_leave(conn);
}

/* RFC 6761 §6.3: "localhost" and names below it are the loopback, whatever DNS says; this also
 * keeps them working where /etc/resolv.conf points nowhere. */
static bool host_is_localhost(const char *host)
{
	static const char suffix[] = ".localhost";
	size_t len = strlen(host);
	size_t suffix_len = sizeof(suffix) - 1;
	return strcasecmp(host, "localhost") == 0 ||
	       (len > suffix_len && strcasecmp(host + len - suffix_len, suffix) == 0);
}

static void conn_resolve(struct mt_conn *conn)
{
	char service[8];
	snprintf(service, sizeof(service), "%u", conn->port);
	struct evutil_addrinfo hints;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	/* Literals first, without any resolver: they must work with no DNS at all. */
	hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
	struct evutil_addrinfo *res = NULL;
	if (evutil_getaddrinfo(conn->host, service, &hints, &res) == 0) {
		conn_add_addresses(conn, res);
		evutil_freeaddrinfo(res);
		conn_connect_next(conn);
		return;
	}
	if (host_is_localhost(conn->host)) {
		struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons(conn->port)};
		v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons(conn->port)};
		v6.sin6_addr = in6addr_loopback;
		conn_add_address(conn, (struct sockaddr *)&v4, sizeof(v4));
		conn_add_address(conn, (struct sockaddr *)&v6, sizeof(v6));
		conn_connect_next(conn);
		return;
	}
	if (conn->dns == NULL) {
		conn_fail(conn, MT_CLASS_CONN, false, NULL, "cannot resolve %s: no DNS resolver",
		          conn->host);
		return;
	}
	struct conn_dns_lookup *lookup = calloc(1, sizeof(*lookup));
	if (lookup == NULL) {
		conn_fail(conn, MT_CLASS_CONN, false, NULL, "cannot resolve %s: out of memory",
		          conn->host);
		return;
	}
	lookup->conn = conn;
	conn->lookup = lookup;
	hints.ai_flags = EVUTIL_AI_NUMERICSERV;
	/* May call on_resolved before returning (hosts file, errors); it then returns NULL. */
	struct evdns_getaddrinfo_request *request =
	    evdns_getaddrinfo(conn->dns, conn->host, service, &hints, on_resolved, lookup);
	if (conn->lookup != lookup)
		return; /* already answered */
	if (request == NULL) {
		/* Documented not to happen without a callback; if it does, never touch the
		 * lookup again (a late callback frees it) and fail now. */
		lookup->conn = NULL;
		conn->lookup = NULL;
		conn_fail(conn, MT_CLASS_CONN, false, NULL, "cannot resolve %s", conn->host);
		return;
	}
	conn->dns_request = request;
}

/* --- TLS ----------------------------------------------------------------------------------- */

static void conn_handshake_step(struct mt_conn *conn);

static void conn_begin_handshake(struct mt_conn *conn)
{
	const char *error;
	conn->ssl =
	    mt_tls_client_new(conn->tls, conn->fd, conn->host, conn->pinned, &conn->verify, &error);
	if (conn->ssl == NULL) {
		conn_fail(conn, MT_CLASS_TLS, false, NULL, "%s", error);
		return;
	}
	conn->state = CONN_TLS_HANDSHAKE;
	conn->handshake_wants = 0;
	conn_arm_timer(conn->step_timer, conn->connect_timeout_ms);
	conn_arm_read_timer(conn);
}

static void conn_handshake_done(struct mt_conn *conn)
{
	char reason[200];
	char fingerprint[MT_TLS_FINGERPRINT_MAX];
	if (mt_tls_check_peer(conn->ssl, conn->pinned ? &conn->pin : NULL, &conn->verify, reason,
	                      sizeof(reason), fingerprint, sizeof(fingerprint)) < 0) {
		conn_fail(conn, MT_CLASS_TLS, false, fingerprint, "%s", reason);
		return;
	}
	mt_tls_session_info(conn->ssl, conn->tls_info, sizeof(conn->tls_info));
	conn->tls_established = true;
	conn->state = CONN_OPEN;
	conn->handshake_wants = 0;
	event_del(conn->step_timer);
	conn_arm_read_timer(conn);
	conn_update_events(conn);
	/* Application data may already sit decrypted inside OpenSSL, where no socket event
	 * would announce it. */
	event_active(conn->kick, EV_TIMEOUT, 1);
}

static void conn_handshake_step(struct mt_conn *conn)
{
	ERR_clear_error();
	errno = 0;
	int ret = SSL_do_handshake(conn->ssl);
	int saved_errno = errno;
	if (ret == 1) {
		bool starttls = conn->starttls;
		conn_handshake_done(conn);
		if (conn->state != CONN_OPEN)
			return;
		conn_notify(conn, starttls ? conn->callbacks.tls_ready : conn->callbacks.connected);
		return;
	}
	int err = SSL_get_error(conn->ssl, ret);
	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
		conn->handshake_wants = err;
		conn_update_events(conn);
		return;
	}
	char why[160];
	if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
		if (saved_errno != 0)
			describe_errno(saved_errno, why, sizeof(why));
		else
			mt_strlcpy(why, "connection closed by peer", sizeof(why));
		ERR_clear_error();
	} else if (err == SSL_ERROR_ZERO_RETURN) {
		mt_strlcpy(why, "connection closed by peer", sizeof(why));
	} else {
		mt_tls_last_error("protocol error", why, sizeof(why));
	}
	conn_fail(conn, MT_CLASS_TLS, false, NULL, "TLS handshake failed: %s", why);
}

/* --- reading and writing ------------------------------------------------------------------- */

struct conn_io_error {
	enum mt_failure_class cls;
	char reason[160];
};

/* One read into dst; > 0 bytes, or 0 with *result_r. */
static size_t conn_read_once(struct mt_conn *conn, char *dst, size_t len,
                             enum conn_io_result *result_r, struct conn_io_error *error)
{
	*result_r = CONN_IO_AGAIN;
	if (conn->ssl == NULL) {
		ssize_t n = recv(conn->fd, dst, len, 0);
		if (n > 0)
			return (size_t)n;
		if (n == 0) {
			*result_r = CONN_IO_EOF;
		} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			*result_r = CONN_IO_ERROR;
			error->cls = MT_CLASS_CONN;
			describe_errno(errno, error->reason, sizeof(error->reason));
		}
		return 0;
	}
	int chunk = len > INT_MAX ? INT_MAX : (int)len;
	ERR_clear_error();
	errno = 0;
	int n = SSL_read(conn->ssl, dst, chunk);
	int saved_errno = errno;
	if (n > 0) {
		conn->read_wants_write = false;
		return (size_t)n;
	}
	int err = SSL_get_error(conn->ssl, n);
	conn->read_wants_write = err == SSL_ERROR_WANT_WRITE;
	switch (err) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		break;
	case SSL_ERROR_ZERO_RETURN: /* close_notify */
		*result_r = CONN_IO_EOF;
		break;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0 && saved_errno == 0) {
			*result_r = CONN_IO_EOF; /* EOF without close_notify (pre-3.0 style) */
			break;
		}
		*result_r = CONN_IO_ERROR;
		error->cls = MT_CLASS_CONN;
		if (saved_errno != 0)
			describe_errno(saved_errno, error->reason, sizeof(error->reason));
		else
			mt_tls_last_error("input/output error", error->reason,
			                  sizeof(error->reason));
		ERR_clear_error();
		break;
	default:
		if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			ERR_clear_error();
			*result_r = CONN_IO_EOF;
			break;
		}
		*result_r = CONN_IO_ERROR;
		error->cls = MT_CLASS_TLS;
		char why[128];
		mt_tls_last_error("protocol error", why, sizeof(why));
		snprintf(error->reason, sizeof(error->reason), "TLS error: %s", why);
		break;
	}
	return 0;
}

static void conn_handle_input(struct mt_conn *conn)
{
	size_t before = conn->input.len;
	enum conn_io_result result = CONN_IO_AGAIN;
	struct conn_io_error error = {.cls = MT_CLASS_CONN};
	while (conn->input.len < MT_NET_INPUT_MAX) {
		size_t room = MT_NET_INPUT_MAX - conn->input.len;
		size_t want = room < MT_NET_READ_CHUNK ? room : MT_NET_READ_CHUNK;
		char *dst = mt_buf_reserve(&conn->input, want);
		if (dst == NULL) {
			result = CONN_IO_ERROR;
			mt_strlcpy(error.reason, "out of memory", sizeof(error.reason));
			break;
		}
		size_t n = conn_read_once(conn, dst, want, &result, &error);
		if (n == 0)
			break;
		mt_buf_commit(&conn->input, n);
		/* A short plaintext read took all the socket had: asking again would only hear
		 * EAGAIN, a system call per reply (the read event is level-triggered and comes back
		 * for anything that arrives after). TLS reads a record at a time, so it goes on. */
		if (conn->ssl == NULL && n < want)
			break;
	}
	/* Back-pressure: with a full buffer we stop reading (and stop the read timeout) until
	 * the owner consumes; see conn_refresh(). */
	conn->input_paused = result == CONN_IO_AGAIN && conn->input.len >= MT_NET_INPUT_MAX;
	conn->burst += conn->input.len - before;
	if (result == CONN_IO_AGAIN && !conn->input_paused) {
		conn->last_burst = conn->burst;
		conn->burst = 0;
	}
	if (conn->input.len > before) {
		conn_arm_read_timer(conn);
		if (!conn_notify(conn, conn->callbacks.readable))
			return;
	}
	/* The owner consumed everything: the buffer goes until the next read. A read reserves
	 * MT_NET_READ_CHUNK, so a kept buffer was 32 KiB on every idle connection (most of an
	 * idle IMAP account's memory, bench/sync-idle). */
	if (conn->input.len == 0)
		mt_buf_free(&conn->input);
	if (result == CONN_IO_EOF)
		conn_fail(conn, MT_CLASS_CONN, true, NULL, "connection closed by peer");
	else if (result == CONN_IO_ERROR)
		conn_fail(conn, error.cls, false, NULL, "%s", error.reason);
}

static size_t conn_write_once(struct mt_conn *conn, const char *src, size_t len,
                              enum conn_io_result *result_r, struct conn_io_error *error)
{
	*result_r = CONN_IO_AGAIN;
	if (conn->ssl == NULL) {
		/* MSG_NOSIGNAL: a peer that went away must be an error here, not a SIGPIPE. */
		ssize_t n = send(conn->fd, src, len, MSG_NOSIGNAL);
		if (n > 0)
			return (size_t)n;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			*result_r = CONN_IO_ERROR;
			error->cls = MT_CLASS_CONN;
			describe_errno(errno, error->reason, sizeof(error->reason));
		}
		return 0;
	}
	if (conn->tls_retry_len > 0)
		len = conn->tls_retry_len;
	int chunk = len > INT_MAX ? INT_MAX : (int)len;
	ERR_clear_error();
	errno = 0;
	int n = SSL_write(conn->ssl, src, chunk);
	int saved_errno = errno;
	if (n > 0) {
		conn->tls_retry_len = 0;
		conn->write_wants_read = false;
		return (size_t)n;
	}
	int err = SSL_get_error(conn->ssl, n);
	conn->write_wants_read = err == SSL_ERROR_WANT_READ;
	switch (err) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		conn->tls_retry_len = (size_t)chunk;
		break;
	case SSL_ERROR_ZERO_RETURN:
		*result_r = CONN_IO_EOF;
		break;
	case SSL_ERROR_SYSCALL:
		*result_r = CONN_IO_ERROR;
		error->cls = MT_CLASS_CONN;
		describe_errno(saved_errno != 0 ? saved_errno : EPIPE, error->reason,
		               sizeof(error->reason));
		ERR_clear_error();
		break;
	default: {
		*result_r = CONN_IO_ERROR;
		error->cls = MT_CLASS_TLS;
		char why[128];
		mt_tls_last_error("protocol error", why, sizeof(why));
		snprintf(error->reason, sizeof(error->reason), "TLS error: %s", why);
		break;
	}
	}
	return 0;
}

static size_t conn_pending(const struct mt_conn *conn)
{
	return conn->output.len - conn->output_sent;
}

static void conn_flush(struct mt_conn *conn)
{
	bool wrote = false;
	enum conn_io_result result = CONN_IO_AGAIN;
	struct conn_io_error error = {.cls = MT_CLASS_CONN};
	while (conn_pending(conn) > 0) {
		size_t n = conn_write_once(conn, conn->output.data + conn->output_sent,
		                           conn_pending(conn), &result, &error);
		if (n == 0)
			break;
		conn->output_sent += n;
		wrote = true;
	}
	if (result == CONN_IO_EOF) {
		conn_fail(conn, MT_CLASS_CONN, true, NULL, "connection closed by peer");
		return;
	}
	if (result == CONN_IO_ERROR) {
		conn_fail(conn, error.cls, false, NULL, "cannot send: %s", error.reason);
		return;
	}
	conn->write_blocked = conn_pending(conn) > 0;
	if (conn->write_blocked)
		return;
	/* A drained output buffer goes: an idle connection holds none. */
	mt_buf_free(&conn->output);
	conn->output_sent = 0;
	if (wrote)
		conn_notify(conn, conn->callbacks.drained);
}

/* Which socket events we wait for follows from the state, the buffers and what OpenSSL last
 * asked for; libevent is level-triggered, so an unwanted event must not stay armed. */
static void conn_update_events(struct mt_conn *conn)
{
	bool want_read = false;
	bool want_write = false;
	switch (conn->state) {
	case CONN_CONNECTING:
		want_write = true;
		break;
	case CONN_TLS_HANDSHAKE:
		want_read = conn->handshake_wants == SSL_ERROR_WANT_READ;
		want_write = conn->handshake_wants == SSL_ERROR_WANT_WRITE;
		break;
	case CONN_OPEN: {
		bool room = conn->input.len < MT_NET_INPUT_MAX;
		bool output = conn_pending(conn) > 0;
		if (conn->ssl != NULL) {
			/* TLS keeps the write event: with the timer, bench/sync-initial (IMAP over
			 * STARTTLS) measured ~10 % slower in 5 of 7 pairs. */
			want_read = room || (output && conn->write_wants_read);
			want_write = (output && !conn->write_wants_read) || conn->read_wants_write;
		} else {
			want_read = room;
			want_write = output && conn->write_blocked;
		}
		want_read = want_read && !conn->read_delayed;
		if (conn->ssl == NULL && output && !conn->write_blocked &&
		    !evtimer_pending(conn->flusher, NULL)) {
			static const struct timeval next_turn = {0, 0};
			evtimer_add(conn->flusher, &next_turn);
		}
		break;
	}
	default:
		break;
	}
	if (conn->read_event != NULL && want_read != conn->read_armed) {
		if (want_read)
			event_add(conn->read_event, NULL);
		else
			event_del(conn->read_event);
		conn->read_armed = want_read;
	}
	if (conn->write_event != NULL && want_write != conn->write_armed) {
		if (want_write)
			event_add(conn->write_event, NULL);
		else
			event_del(conn->write_event);
		conn->write_armed = want_write;
	}
}

/* Re-evaluates the events after the owner had a chance to consume input or queue output. A
 * paused TLS reader is kicked, since decrypted bytes may wait inside OpenSSL, invisible to
 * the socket. */
static void conn_refresh(struct mt_conn *conn)
{
	if (conn->free_pending || conn->state == CONN_CLOSED)
		return;
	if (conn->input_paused && conn->input.len < MT_NET_INPUT_MAX) {
		conn->input_paused = false;
		conn_arm_read_timer(conn);
		if (conn->state == CONN_OPEN)
			event_active(conn->kick, EV_TIMEOUT, 1);
	}
	conn_update_events(conn);
}

static void conn_handle_open(struct mt_conn *conn, bool try_read)
{
	if (try_read && conn->input.len < MT_NET_INPUT_MAX) {
		conn_handle_input(conn);
		if (conn->free_pending || conn->state != CONN_OPEN)
			return;
	}
	if (conn_pending(conn) > 0)
		conn_flush(conn);
}

static void conn_finish_connect(struct mt_conn *conn)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0) {
		describe_errno(err, conn->last_connect_error, sizeof(conn->last_connect_error));
		conn_connect_next(conn);
		return;
	}
	event_del(conn->step_timer);
	format_address((const struct sockaddr *)&conn->addrs[conn->addr_next - 1].sa, conn->peer,
	               sizeof(conn->peer));
	/* Connected: no other address is tried. */
	free(conn->addrs);
	conn->addrs = NULL;
	conn->addr_next = conn->addr_count;
	if (conn->implicit_tls) {
		conn_begin_handshake(conn);
		if (conn->state == CONN_TLS_HANDSHAKE)
			conn_handshake_step(conn);
		return;
	}
	conn->state = CONN_OPEN;
	conn_arm_read_timer(conn);
	conn_update_events(conn);
	conn_notify(conn, conn->callbacks.connected);
}

/* --- event handlers ------------------------------------------------------------------------ */

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	struct mt_conn *conn = arg;
	conn_enter(conn);
	switch (conn->state) {
	case CONN_CONNECTING:
		if (what & EV_WRITE)
			conn_finish_connect(conn);
		break;
	case CONN_TLS_HANDSHAKE:
		conn_handshake_step(conn);
		break;
	case CONN_OPEN:
		if (what == EV_READ && conn->read_delay_us > 0 &&
		    conn->last_burst < MT_NET_INPUT_MAX) {
			/* More may come: read after the delay, several records at once. (A sender
			 * that filled the buffer last time is read at once: waiting would only
			 * stall it.) Data came, so the read timeout starts again. */
			const struct timeval delay = {0, conn->read_delay_us};
			conn->read_delayed = true;
			evtimer_add(conn->read_delayer, &delay);
			conn_arm_read_timer(conn);
			break;
		}
		/* Over TLS either direction may be what OpenSSL waits for, so try both. */
		conn_handle_open(conn, (what & EV_READ) || conn->ssl != NULL);
		break;
	default:
		break;
	}
	conn_refresh(conn);
	conn_leave(conn);
}

static void on_read_delay(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct mt_conn *conn = arg;
	conn_enter(conn);
	conn->read_delayed = false;
	if (conn->state == CONN_OPEN && !conn->free_pending)
		conn_handle_open(conn, true);
	conn_refresh(conn);
	conn_leave(conn);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct mt_conn *conn = arg;
	conn_enter(conn);
	if (conn->state == CONN_OPEN && !conn->free_pending && conn_pending(conn) > 0)
		conn_flush(conn);
	conn_refresh(conn);
	conn_leave(conn);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct mt_conn *conn = arg;
	conn_enter(conn);
	switch (conn->state) {
	case CONN_RESOLVING:
		conn_resolve(conn);
		break;
	case CONN_TLS_HANDSHAKE:
		conn_handshake_step(conn);
		break;
	case CONN_OPEN:
		conn_handle_open(conn, true);
		break;
	default:
		break;
	}
	conn_refresh(conn);
	conn_leave(conn);
}

static void on_step_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct mt_conn *conn = arg;
	char seconds[32];
	format_seconds(conn->connect_timeout_ms, seconds, sizeof(seconds));
	conn_enter(conn);
	if (conn->state == CONN_CONNECTING) {
		snprintf(conn->last_connect_error, sizeof(conn->last_connect_error),
		         "timed out (%s)", seconds);
		conn_connect_next(conn);
	} else if (conn->state == CONN_TLS_HANDSHAKE) {
		conn_fail(conn, MT_CLASS_CONN, false, NULL,
		          "timed out during the TLS handshake (%s)", seconds);
	}
	conn_refresh(conn);
	conn_leave(conn);
}

static void on_read_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct mt_conn *conn = arg;
	char seconds[32];
	format_seconds(conn->read_timeout_ms, seconds, sizeof(seconds));
	conn_enter(conn);
	conn_fail(conn, MT_CLASS_CONN, false, NULL, "timed out waiting for the server (%s)",
	          seconds);
	conn_leave(conn);
}

/* --- public API ---------------------------------------------------------------------------- */

struct mt_conn *mt_conn_new(struct event_base *base, struct evdns_base *dns,
                            const struct mt_conn_params *params,
                            const struct mt_conn_callbacks *callbacks, void *ctx,
                            const char **error_r)
{
	if (params->host == NULL || params->host[0] == '\0') {
		*error_r = "no host given";
		return NULL;
	}
	if (strlen(params->host) > MT_HOSTNAME_MAX) {
		*error_r = "host name too long";
		return NULL;
	}
	if (params->port == 0) {
		*error_r = "port 0 is not valid";
		return NULL;
	}
	if (params->implicit_tls && params->tls == NULL) {
		*error_r = "implicit TLS needs a TLS configuration";
		return NULL;
	}
	if (params->bind_address != NULL && params->bind_address[0] != '\0' &&
	    !mt_tls_host_is_ip(params->bind_address)) {
		*error_r = "the source address must be an IP address";
		return NULL;
	}
	if (params->pin != NULL && params->pin->kind == MT_PIN_NONE) {
		*error_r = "the pin has no digest";
		return NULL;
	}
	struct mt_conn *conn = calloc(1, sizeof(*conn));
	if (conn == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	conn->base = base;
	conn->dns = dns;
	conn->fd = -1;
	conn->state = CONN_RESOLVING;
	mt_strlcpy(conn->host, params->host, sizeof(conn->host));
	if (params->bind_address != NULL)
		mt_strlcpy(conn->bind_address, params->bind_address, sizeof(conn->bind_address));
	conn->port = params->port;
	conn->connect_timeout_ms = params->connect_timeout_ms > 0 ? params->connect_timeout_ms
	                                                          : CONN_DEFAULT_CONNECT_TIMEOUT_MS;
	conn->implicit_tls = params->implicit_tls;
	conn->tls = params->tls;
	conn->public_only = params->public_only;
	conn->allow_private = params->allow_private;
	if (params->pin != NULL) {
		conn->pin = *params->pin;
		conn->pinned = true;
	}
	conn->callbacks = *callbacks;
	conn->ctx = ctx;
	mt_buf_init(&conn->input, MT_NET_INPUT_MAX);
	mt_buf_init(&conn->output, MT_NET_OUTPUT_MAX);
	conn->addrs = calloc(MT_DNS_ADDRS_MAX, sizeof(*conn->addrs));
	conn->step_timer = evtimer_new(base, on_step_timeout, conn);
	conn->read_timer = evtimer_new(base, on_read_timeout, conn);
	conn->kick = event_new(base, -1, 0, on_kick, conn);
	conn->flusher = evtimer_new(base, on_flush, conn);
	conn->read_delayer = evtimer_new(base, on_read_delay, conn);
	if (conn->addrs == NULL || conn->step_timer == NULL || conn->read_timer == NULL ||
	    conn->kick == NULL || conn->flusher == NULL || conn->read_delayer == NULL) {
		conn_destroy(conn);
		*error_r = "out of memory";
		return NULL;
	}
	event_active(conn->kick, EV_TIMEOUT, 1);
	return conn;
}

void mt_conn_free(struct mt_conn **connp)
{
	if (connp == NULL || *connp == NULL)
		return;
	struct mt_conn *conn = *connp;
	*connp = NULL;
	if (conn->callback_depth > 0) {
		/* Inside one of our callbacks: stop everything now, free on the way out. */
		conn->free_pending = true;
		conn_stop_io(conn);
		return;
	}
	conn_destroy(conn);
}

struct mt_buf *mt_conn_input(struct mt_conn *conn)
{
	return &conn->input;
}

int mt_conn_write(struct mt_conn *conn, const void *data, size_t len)
{
	if (conn->state == CONN_CLOSED || conn->free_pending)
		return -1;
	if (len == 0)
		return 0;
	if (len > MT_NET_OUTPUT_MAX - conn_pending(conn))
		return -1;
	/* What was sent goes before the buffer grows: a message streamed through a steady window
	 * reuses the room instead of reallocating (and copying) everything sent so far. */
	if (conn->output_sent > 0 && (conn->output.len + len + 1 > conn->output.cap ||
	                              conn->output.len + len > MT_NET_OUTPUT_MAX)) {
		/* Safe even with an SSL_write pending: SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER. */
		mt_buf_consume(&conn->output, conn->output_sent);
		conn->output_sent = 0;
	}
	if (mt_buf_append(&conn->output, data, len) < 0)
		return -1;
	conn_refresh(conn);
	return 0;
}

void mt_conn_resume_read(struct mt_conn *conn)
{
	if (conn->input.len == 0)
		mt_buf_free(
		    &conn->input); /* consumed outside the callback: as in conn_handle_input */
	conn_refresh(conn);
}

size_t mt_conn_output_pending(const struct mt_conn *conn)
{
	return conn_pending(conn);
}

void mt_conn_set_read_timeout(struct mt_conn *conn, int ms)
{
	conn->read_timeout_ms = ms > 0 ? ms : 0;
	if (conn->state != CONN_CLOSED)
		conn_arm_read_timer(conn);
}

void mt_conn_set_read_delay(struct mt_conn *conn, int us)
{
	if (us > MT_NET_READ_DELAY_MAX_US)
		us = MT_NET_READ_DELAY_MAX_US;
	conn->read_delay_us = us > 0 ? us : 0;
}

int mt_conn_start_tls(struct mt_conn *conn, const char **error_r)
{
	if (conn->state != CONN_OPEN || conn->free_pending) {
		*error_r = "the connection is not open";
		return -1;
	}
	if (conn->ssl != NULL) {
		*error_r = "TLS is already active";
		return -1;
	}
	if (conn->tls == NULL) {
		*error_r = "no TLS configuration";
		return -1;
	}
	if (conn->input.len > 0) {
		*error_r = "the server sent data after the STARTTLS go-ahead (possible injection)";
		return -1;
	}
	if (conn_pending(conn) > 0) {
		*error_r = "plaintext output is still being sent";
		return -1;
	}
	const char *error;
	conn->ssl =
	    mt_tls_client_new(conn->tls, conn->fd, conn->host, conn->pinned, &conn->verify, &error);
	if (conn->ssl == NULL) {
		*error_r = error;
		return -1;
	}
	conn->state = CONN_TLS_HANDSHAKE;
	conn->starttls = true;
	conn->handshake_wants = 0;
	conn->input_paused = false;
	conn_arm_timer(conn->step_timer, conn->connect_timeout_ms);
	conn_arm_read_timer(conn);
	conn_update_events(conn);
	event_active(conn->kick, EV_TIMEOUT, 1);
	return 0;
}

bool mt_conn_is_tls(const struct mt_conn *conn)
{
	return conn->tls_established;
}

const char *mt_conn_peer(const struct mt_conn *conn)
{
	return conn->peer;
}

const char *mt_conn_tls_info(const struct mt_conn *conn)
{
	return conn->tls_info;
}

const char *mt_conn_state_name(const struct mt_conn *conn)
{
	return conn_state_names[conn->state];
}

struct evdns_base *mt_conn_dns_new(struct event_base *base)
{
	/* DISABLE_WHEN_INACTIVE: an idle resolver must not keep event_base_dispatch() running. */
	struct evdns_base *dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
	                                                  EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (dns == NULL) {
		dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		if (dns != NULL)
			evdns_base_load_hosts(dns, NULL);
	}
	return dns;
}
