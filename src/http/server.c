/* The connection's side of the HTTP server (see http/server.h): each connection's state
 * machine, its reads, writes and deadlines, the per-address table and the close; the listener
 * with its cap and accept() back-off; the server's making and freeing. What a request does
 * once its head is in is server_request.c's, its reply server_reply.c's; what the three share
 * is in server_internal.h. */
#include "http/server_internal.h"

#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/str.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define OPEN_METRIC    "mailtrail_http_connections"
#define OPEN_HELP      "HTTP connections open."
#define REFUSED_METRIC "mailtrail_http_connections_refused_total"
#define REFUSED_HELP   "HTTP connections closed at accept because a cap was reached, by cap."
#define FULL_METRIC    "mailtrail_http_connections_full_total"
#define FULL_HELP      "Times http_max_connections was reached and accepting paused."
#define BACKOFF_METRIC "mailtrail_http_accept_backoff_total"
#define BACKOFF_HELP                                                                               \
	"Episodes of accept() failing (out of descriptors or memory), by error; accepting pauses."
#define DEADLINE_METRIC "mailtrail_http_deadlines_total"
#define DEADLINE_HELP   "HTTP connections cut at a deadline, by what was late."

static const char *const conn_state_names[] = {
    [CONN_IDLE] = "idle",     [CONN_HEAD] = "head",       [CONN_AUTH] = "auth",
    [CONN_BODY] = "body",     [CONN_HANDLER] = "handler", [CONN_WRITING] = "writing",
    [CONN_LINGER] = "linger",
};

static _Thread_local char error_text[MT_ERROR_TEXT_MAX];

static void conn_close(struct http_conn *conn);
static void listener_update(struct http_server *server);

/* ---- small helpers ---------------------------------------------------------------------- */

static void count_deadline(const char *what)
{
	mt_metric_inc(DEADLINE_METRIC, DEADLINE_HELP, "phase", what, NULL, NULL);
}

/* ---- connections -------------------------------------------------------------------------- */

void http_conn_watch_stop(struct http_conn *conn)
{
	if (conn != NULL && conn->watch != NULL)
		event_del(conn->watch);
}

/* The socket became readable while the request waits: either the client sent more (its body,
 * or its next request: left for later) or it closed or reset the connection. A client that only
 * shut down its sending side is taken as gone too, as most servers do. */
static void on_peer_event(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct http_conn *conn = arg;
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	http_conn_watch_stop(conn);
	if (n > 0)
		return;
	mt_log(MT_LOG_DEBUG, "http.client_gone",
	       MT_KV("route", conn->req != NULL ? conn->req->route_name : "-"));
	conn_close(conn);
}

/* Runs the bytes already read through the connection's state again, soon, from the loop (so
 * never inside a handler or the hook): bufferevent only calls back for bytes that arrive after
 * reading is enabled. */
void http_conn_kick(struct http_conn *conn)
{
	if (evbuffer_get_length(bufferevent_get_input(conn->bev)) > 0)
		event_active(conn->kick, EV_TIMEOUT, 0);
}

static void conn_arm(struct http_conn *conn, int64_t deadline_ms)
{
	int64_t ms = deadline_ms - mt_now_ms();
	if (ms < 0)
		ms = 0;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(conn->timer, &tv);
}

void http_conn_set_state(struct http_conn *conn, enum conn_state state)
{
	const struct http_server_params *p = &conn->server->params;
	int64_t now = mt_now_ms();
	conn->state = state;
	switch (state) {
	case CONN_IDLE:
		conn_arm(conn, conn->requests == 0 ? conn->accepted_ms + p->header_timeout_ms
		                                   : now + p->idle_timeout_ms);
		bufferevent_enable(conn->bev, EV_READ);
		break;
	case CONN_HEAD:
		conn_arm(conn, conn->head_deadline_ms < conn->request_deadline_ms
		                   ? conn->head_deadline_ms
		                   : conn->request_deadline_ms);
		bufferevent_enable(conn->bev, EV_READ);
		break;
	case CONN_BODY:
		conn_arm(conn, conn->request_deadline_ms);
		bufferevent_enable(conn->bev, EV_READ);
		break;
	case CONN_AUTH:
		/* Ours to wait for, not the client's: no deadline. Reading stops only if the hook
		 * answers later (release() in server_request.c): a body is never read before its
		 * sender is known. */
		evtimer_del(conn->timer);
		break;
	case CONN_HANDLER:
		/* Ours to wait for: no deadline. Reading goes on, so a client that leaves is
		 * noticed, and what it sends early waits (at most MT_HTTP_INPUT_MAX, the read
		 * watermark). Stopping and starting it at each state cost ~8 epoll_ctl each. */
		evtimer_del(conn->timer);
		bufferevent_enable(conn->bev, EV_READ);
		break;
	case CONN_WRITING:
		conn_arm(conn, now + p->reply_timeout_ms);
		bufferevent_enable(conn->bev, EV_READ);
		break;
	case CONN_LINGER:
		conn_arm(conn, now + MT_HTTP_LINGER_MS);
		bufferevent_enable(conn->bev, EV_READ);
		break;
	}
}

/* A request's first byte arrived. */
static void request_begin(struct http_conn *conn)
{
	struct http_request *req = http_req_new(conn);
	if (req == NULL) {
		conn_close(conn);
		return;
	}
	conn->req = req;
	/* The first request's clock started at accept: a client that connects and waits is
	 * held no longer than one that trickles. */
	int64_t from = conn->requests == 0 ? conn->accepted_ms : req->start_ms;
	conn->head_deadline_ms = from + conn->server->params.header_timeout_ms;
	conn->request_deadline_ms = from + conn->server->params.request_timeout_ms;
	http_conn_set_state(conn, CONN_HEAD);
}

/* Feeds what has been read to the state that wants it. Called only from the loop, never from
 * inside a handler or the hook, so a state change below cannot free what a caller holds. */
static void conn_process(struct http_conn *conn)
{
	struct evbuffer *in = bufferevent_get_input(conn->bev);
	while (evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec vec;
		size_t consumed = 0;
		const char *why = NULL;
		int ret;
		switch (conn->state) {
		case CONN_IDLE:
			request_begin(conn);
			if (conn->req == NULL)
				return;
			continue;
		case CONN_HEAD: {
			struct http_request *req = conn->req;
			evbuffer_peek(in, -1, NULL, &vec, 1);
			ret = http_request_parse_head(&req->parser, vec.iov_base, vec.iov_len,
			                              &consumed, &req->head, &why);
			if (ret < 0) {
				req->head = NULL;
				http_req_parse_failed(req, why);
				return;
			}
			evbuffer_drain(in, consumed);
			if (ret == 1)
				http_req_on_head(conn, req);
			break;
		}
		case CONN_BODY: {
			struct http_request *req = conn->req;
			if (req->stream_fn != NULL) {
				http_req_stream_feed(conn, req);
				break;
			}
			evbuffer_peek(in, -1, NULL, &vec, 1);
			ret = http_request_parse_body(&req->parser, vec.iov_base, vec.iov_len,
			                              &consumed, &req->body, &why);
			if (ret < 0) {
				http_req_parse_failed(req, why);
				return;
			}
			evbuffer_drain(in, consumed);
			if (ret == 1) {
				req->body_state = BODY_DONE;
				http_req_run_handler(req);
			}
			break;
		}
		case CONN_LINGER:
			evbuffer_drain(in, evbuffer_get_length(in));
			break;
		case CONN_AUTH:
		case CONN_HANDLER:
		case CONN_WRITING:
			/* The next request waits its turn. Once it fills the read-ahead, reading
			 * stops until a state that consumes input: libevent calls the read callback
			 * again and again while the input is over its high watermark and reading is
			 * on, and this one drains nothing (a core spun for as long as the handler
			 * waited). */
			if (evbuffer_get_length(in) >= MT_HTTP_INPUT_MAX)
				bufferevent_disable(conn->bev, EV_READ);
			return;
		}
	}
}

static void on_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	conn_process(arg);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	conn_process(arg);
}

void http_conn_written(struct http_conn *conn)
{
	if (conn->close_after) {
		/* Closing with unread input would reset the connection, and a client still
		 * sending its body could lose the reply with it: send our FIN, then read and
		 * drop what still comes, for a while. */
		shutdown(conn->fd, SHUT_WR);
		http_conn_set_state(conn, CONN_LINGER);
		http_conn_kick(conn);
		return;
	}
	http_conn_set_state(conn, CONN_IDLE);
	http_conn_kick(conn);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct http_conn *conn = arg;
	if (conn->state != CONN_WRITING || evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return; /* a 100 Continue went out, or more is still queued */
	if (conn->peer_closed) {
		conn_close(conn);
		return;
	}
	http_conn_written(conn);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct http_conn *conn = arg;
	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && conn->state == CONN_WRITING) {
		/* A client that shut down its side after its request still gets the reply. */
		conn->peer_closed = true;
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (conn->state != CONN_LINGER && conn->state != CONN_IDLE)
			mt_log(MT_LOG_DEBUG, "http.connection_lost",
			       MT_KV("state", conn_state_names[conn->state]));
		conn_close(conn);
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct http_conn *conn = arg;
	switch (conn->state) {
	case CONN_IDLE:
		count_deadline(conn->requests == 0 ? "header" : "idle");
		conn_close(conn);
		return;
	case CONN_HEAD:
	case CONN_BODY: {
		bool head = conn->state == CONN_HEAD;
		/* the timer was set for the earlier of the two */
		count_deadline(head && conn->head_deadline_ms <= conn->request_deadline_ms
		                   ? "header"
		                   : "request");
		mt_log(MT_LOG_INFO, "http.request_timeout",
		       MT_KV("state", conn_state_names[conn->state]));
		if (!head && conn->req->stream_fn != NULL) { /* the handler has it: it answers */
			http_req_stream_stop(conn->req, 408, "the request did not arrive in time");
			return;
		}
		http_reply_error(conn->req, 408, "input",
		                 head ? "the request head did not arrive in time"
		                      : "the request did not arrive in time",
		                 NULL, NULL);
		return;
	}
	case CONN_WRITING:
		count_deadline("reply");
		conn_close(conn);
		return;
	case CONN_LINGER:
		conn_close(conn);
		return;
	case CONN_AUTH:
	case CONN_HANDLER:
		return;
	}
}

static struct ip_entry **ip_slot(struct http_server *server, const unsigned char addr[16])
{
	uint32_t h = 2166136261u;
	for (int i = 0; i < 16; i++)
		h = (h ^ addr[i]) * 16777619u;
	struct ip_entry **slot = &server->ips[h % IP_BUCKETS];
	while (*slot != NULL && memcmp((*slot)->addr, addr, 16) != 0)
		slot = &(*slot)->next;
	return slot;
}

static void ip_key(const struct sockaddr_storage *ss, unsigned char addr[16])
{
	memset(addr, 0, 16);
	if (ss->ss_family == AF_INET) {
		addr[10] = addr[11] = 0xff;
		memcpy(addr + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		memcpy(addr, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
	}
}

static void gauge_connections(const struct http_server *server)
{
	mt_metric_set_gauge(OPEN_METRIC, OPEN_HELP, NULL, NULL, NULL, NULL,
	                    (double)server->conn_count);
}

/* Frees the connection. A request the hook or a handler still has becomes gone: its reply is
 * dropped and frees it; any other request goes with the connection. */
static void conn_close(struct http_conn *conn)
{
	struct http_server *server = conn->server;
	struct http_request *req = conn->req;
	if (req != NULL) {
		conn->req = NULL;
		req->conn = NULL;
		if (req->in_app) {
			req->gone = true;
			if (req->stream_fn != NULL)
				http_req_stream_stop(req, 0, NULL);
		} else if (req->busy == 0) {
			http_req_free(req);
		}
	}
	event_free(conn->watch);
	event_free(conn->kick);
	evbuffer_free(conn->reply_buf);
	event_free(conn->timer);
	/* libevent 2.1 frees a bufferevent (and would close its socket) only later, from the
	 * loop: the client must see the close now, even when the loop is about to stop. */
	bufferevent_free(conn->bev);
	evutil_closesocket(conn->fd);
	if (conn->ip != NULL && --conn->ip->count == 0) {
		struct ip_entry **slot = ip_slot(server, conn->ip->addr);
		*slot = conn->ip->next;
		free(conn->ip);
	}
	if (conn->prev != NULL)
		conn->prev->next = conn->next;
	else
		server->conns = conn->next;
	if (conn->next != NULL)
		conn->next->prev = conn->prev;
	server->conn_count--;
	free(conn);
	gauge_connections(server);
	listener_update(server);
}

/* A client over its address's cap: told so in one write the socket surely takes, then closed. */
static void refuse(evutil_socket_t fd)
{
	static const char head[] =
	    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
	    "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nRetry-After: 1\r\n"
	    "Connection: close\r\nContent-Length: ";
	static const char body[] = "{\"error\":{\"class\":\"internal\",\"message\":"
	                           "\"too many connections from this address; try again\"}}";
	char reply[512];
	int n = snprintf(reply, sizeof(reply), "%s%zu\r\n\r\n%s", head, sizeof(body) - 1, body);
	mt_metric_inc(REFUSED_METRIC, REFUSED_HELP, "cap", "per_ip", NULL, NULL);
	if (send(fd, reply, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) == n)
		shutdown(fd, SHUT_WR);
	evutil_closesocket(fd);
}

static void conn_new(struct http_server *server, evutil_socket_t fd,
                     const struct sockaddr_storage *ss)
{
	unsigned char addr[16];
	ip_key(ss, addr);
	struct ip_entry **slot = ip_slot(server, addr);
	if (*slot != NULL && (*slot)->count >= server->params.max_connections_per_ip) {
		refuse(fd);
		return;
	}
	struct http_conn *conn = calloc(1, sizeof(*conn));
	struct ip_entry *ip = *slot != NULL ? *slot : calloc(1, sizeof(*ip));
	if (conn != NULL) {
		conn->bev = bufferevent_socket_new(server->base, fd, 0);
		conn->timer = evtimer_new(server->base, on_timer, conn);
		conn->watch =
		    event_new(server->base, fd, EV_READ | EV_PERSIST, on_peer_event, conn);
		conn->kick = event_new(server->base, -1, 0, on_kick, conn);
		conn->reply_buf = evbuffer_new();
	}
	if (conn == NULL || ip == NULL || conn->bev == NULL || conn->timer == NULL ||
	    conn->watch == NULL || conn->kick == NULL || conn->reply_buf == NULL) {
		if (conn != NULL) {
			if (conn->reply_buf != NULL)
				evbuffer_free(conn->reply_buf);
			if (conn->bev != NULL)
				bufferevent_free(conn->bev);
			if (conn->timer != NULL)
				event_free(conn->timer);
			if (conn->watch != NULL)
				event_free(conn->watch);
			if (conn->kick != NULL)
				event_free(conn->kick);
			free(conn);
		}
		evutil_closesocket(fd);
		if (ip != NULL && *slot == NULL)
			free(ip);
		return;
	}
	if (*slot == NULL) {
		memcpy(ip->addr, addr, 16);
		*slot = ip;
	}
	ip->count++;
	conn->ip = ip;
	conn->server = server;
	conn->fd = fd;
	conn->accepted_ms = mt_now_ms();
	conn->next = server->conns;
	if (server->conns != NULL)
		server->conns->prev = conn;
	server->conns = conn;
	server->conn_count++;
	gauge_connections(server);
	bufferevent_setcb(conn->bev, on_read, on_write, on_event, conn);
	bufferevent_setwatermark(conn->bev, EV_READ, 0, MT_HTTP_INPUT_MAX);
	http_conn_set_state(conn, CONN_IDLE);
	listener_update(server);
}

/* ---- listening ---------------------------------------------------------------------------- */

/* The listener runs unless accept() is backing off or the connections are at their cap. */
static void listener_update(struct http_server *server)
{
	bool full = server->conn_count >= server->params.max_connections;
	if (full && !server->full) {
		mt_metric_inc(FULL_METRIC, FULL_HELP, NULL, NULL, NULL, NULL);
		/* at the cap a flood gets here on every close: a warning a minute is enough */
		int64_t now = mt_now_ms();
		if (server->full_warned_ms == 0 || now - server->full_warned_ms >= 60000) {
			server->full_warned_ms = now;
			char max[16];
			snprintf(max, sizeof(max), "%u", server->params.max_connections);
			mt_log(MT_LOG_WARN, "http.connections_full", MT_KV("max", max));
		}
	}
	server->full = full;
	bool want = !server->backing_off && !full && server->listen_fd >= 0;
	if (want == server->listening)
		return;
	if (want)
		event_add(server->listener, NULL);
	else
		event_del(server->listener);
	server->listening = want;
}

static const char *accept_error_name(int err)
{
	switch (err) {
	case EMFILE:
		return "EMFILE";
	case ENFILE:
		return "ENFILE";
	case ENOBUFS:
		return "ENOBUFS";
	case ENOMEM:
		return "ENOMEM";
	}
	return "other";
}

/* accept() cannot go on (no descriptor or memory for one more): the listening socket stays
 * readable, so retrying at once would spin. The listener pauses, doubling the pause while the
 * failures last; one warning per episode. */
static void backoff(struct http_server *server, int err)
{
	server->backoff_ms =
	    server->backoff_ms == 0 ? MT_HTTP_ACCEPT_BACKOFF_MIN_MS : server->backoff_ms * 2;
	if (server->backoff_ms > MT_HTTP_ACCEPT_BACKOFF_MAX_MS)
		server->backoff_ms = MT_HTTP_ACCEPT_BACKOFF_MAX_MS;
	if (!server->in_episode) {
		server->in_episode = true;
		char open[16];
		snprintf(open, sizeof(open), "%u", server->conn_count);
		mt_log(MT_LOG_WARN, "http.accept_paused", MT_KV("error", strerror(err)),
		       MT_KV("connections", open));
		mt_metric_inc(BACKOFF_METRIC, BACKOFF_HELP, "error", accept_error_name(err), NULL,
		              NULL);
	}
	server->backing_off = true;
	listener_update(server);
	struct timeval tv = {0, (suseconds_t)server->backoff_ms * 1000};
	if (server->backoff_ms >= 1000)
		tv = (struct timeval){(time_t)(server->backoff_ms / 1000),
		                      (suseconds_t)(server->backoff_ms % 1000) * 1000};
	evtimer_add(server->backoff_timer, &tv);
}

static void episode_over(struct http_server *server)
{
	if (!server->in_episode)
		return;
	server->in_episode = false;
	server->backoff_ms = 0;
	mt_log(MT_LOG_INFO, "http.accept_resumed");
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct http_server *server = arg;
	for (int i = 0; i < MT_HTTP_ACCEPTS_PER_WAKE && server->listening; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		evutil_socket_t cfd =
		    accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			int err = errno;
			if (err == EAGAIN || err == EWOULDBLOCK) {
				episode_over(server);
				return;
			}
			/* the connection died in the backlog, or a signal: the next one may do */
			if (err == EINTR || err == ECONNABORTED || err == EPROTO || err == EPERM)
				continue;
			backoff(server, err);
			return;
		}
		episode_over(server);
		conn_new(server, cfd, &ss);
	}
}

static void on_backoff_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct http_server *server = arg;
	server->backing_off = false;
	listener_update(server);
}

/* ---- server ------------------------------------------------------------------------------- */

static const char *fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static const char *fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(error_text, sizeof(error_text), fmt, ap);
	va_end(ap);
	return error_text;
}

/* "host:port" or "[v6]:port"; port 0 lets the kernel choose. */
static int parse_listen(const char *listen, char *host, size_t host_size, uint16_t *port_r)
{
	const char *colon;
	const char *h = listen;
	size_t hlen;
	if (listen[0] == '[') {
		const char *end = strchr(listen, ']');
		if (end == NULL || end[1] != ':')
			return -1;
		h = listen + 1;
		hlen = (size_t)(end - h);
		colon = end + 1;
	} else {
		colon = strrchr(listen, ':');
		if (colon == NULL)
			return -1;
		hlen = (size_t)(colon - listen);
		if (memchr(listen, ':', hlen) != NULL) /* an IPv6 literal needs brackets */
			return -1;
	}
	if (hlen == 0 || hlen >= host_size)
		return -1;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	const char *p = colon + 1;
	if (*p == '\0' || strlen(p) > 5)
		return -1;
	unsigned long v = 0;
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v > 65535)
		return -1;
	*port_r = (uint16_t)v;
	return 0;
}

/* A non-blocking listening socket on the first address `host` resolves to; -1 with errno. */
static evutil_socket_t listen_socket(const char *host, uint16_t port, uint16_t *bound_r)
{
	char service[8];
	snprintf(service, sizeof(service), "%u", port);
	struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	                         .ai_family = AF_UNSPEC,
	                         .ai_socktype = SOCK_STREAM};
	struct addrinfo *ai = NULL;
	int rc = getaddrinfo(host, service, &hints, &ai);
	if (rc != 0) {
		errno = rc == EAI_SYSTEM ? errno : EADDRNOTAVAIL;
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int err = errno;
	if (fd >= 0) {
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
			err = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(ai);
	if (fd < 0) {
		errno = err;
		return -1;
	}
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	*bound_r = 0;
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) == 0) {
		if (ss.ss_family == AF_INET)
			*bound_r = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			*bound_r = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	return fd;
}

static unsigned or_default(unsigned v, unsigned def)
{
	return v != 0 ? v : def;
}

struct http_server *http_server_new(struct event_base *base, const char *listen,
                                    const struct http_route *routes, size_t route_count,
                                    http_authenticate_fn *authenticate, void *app,
                                    const struct http_server_params *params, const char **error_r)
{
	char host[MT_HOSTNAME_MAX + 1];
	uint16_t port = 0;
	if (listen == NULL || parse_listen(listen, host, sizeof(host), &port) < 0) {
		*error_r = fail("invalid listen address '%.100s' (want HOST:PORT or [V6]:PORT)",
		                listen != NULL ? listen : "");
		return NULL;
	}
	for (size_t i = 0; i < route_count; i++) {
		size_t n = 0;
		for (const char *p = strchr(routes[i].pattern, '{'); p != NULL;
		     p = strchr(p + 1, '{'))
			n++;
		if (routes[i].pattern[0] != '/' || n > MT_HTTP_PATH_PARAMS_MAX ||
		    routes[i].handler == NULL || routes[i].name == NULL) {
			*error_r = fail("bad route '%s'", routes[i].pattern);
			return NULL;
		}
	}
	struct http_server *server = calloc(1, sizeof(*server));
	if (server == NULL) {
		*error_r = fail("out of memory");
		return NULL;
	}
	const struct http_server_params none = {0};
	const struct http_server_params *p = params != NULL ? params : &none;
	server->params = (struct http_server_params){
	    .max_connections = or_default(p->max_connections, MT_HTTP_CONNECTIONS_DEFAULT),
	    .max_connections_per_ip = or_default(p->max_connections_per_ip, MT_HTTP_PER_IP_DEFAULT),
	    .header_timeout_ms = or_default(p->header_timeout_ms, MT_HTTP_HEADER_TIMEOUT_S * 1000),
	    .request_timeout_ms =
	        or_default(p->request_timeout_ms, MT_HTTP_REQUEST_TIMEOUT_S * 1000),
	    .idle_timeout_ms = or_default(p->idle_timeout_ms, MT_HTTP_IDLE_TIMEOUT_S * 1000),
	    .reply_timeout_ms = or_default(p->reply_timeout_ms, MT_HTTP_REPLY_TIMEOUT_S * 1000),
	};
	server->base = base;
	server->routes = routes;
	server->route_count = route_count;
	server->authenticate = authenticate;
	server->app = app;
	server->listen_fd = listen_socket(host, port, &server->port);
	if (server->listen_fd < 0) {
		int err = errno;
		free(server);
		*error_r = fail("cannot listen on %s: %s", listen,
		                err != 0 ? strerror(err) : "address not usable");
		return NULL;
	}
	server->listener =
	    event_new(base, server->listen_fd, EV_READ | EV_PERSIST, on_accept, server);
	server->backoff_timer = evtimer_new(base, on_backoff_timer, server);
	if (server->listener == NULL || server->backoff_timer == NULL) {
		if (server->listener != NULL)
			event_free(server->listener);
		if (server->backoff_timer != NULL)
			event_free(server->backoff_timer);
		close(server->listen_fd);
		free(server);
		*error_r = fail("out of memory");
		return NULL;
	}
	listener_update(server);
	gauge_connections(server);
	mt_log(MT_LOG_INFO, "http.listen", MT_KV("address", listen));
	return server;
}

void http_server_free(struct http_server **server_p)
{
	struct http_server *server = *server_p;
	if (server == NULL)
		return;
	*server_p = NULL;
	/* Requests the hook or a handler still has outlive the server: cut them loose. */
	for (struct http_request *req = server->pending, *next; req != NULL; req = next) {
		next = req->next;
		req->gone = true;
		req->server = NULL;
		req->prev = req->next = NULL;
	}
	server->pending = NULL;
	evutil_socket_t fd = server->listen_fd;
	server->listen_fd = -1; /* nothing reopens the listener from here */
	while (server->conns != NULL)
		conn_close(server->conns);
	event_free(server->listener);
	event_free(server->backoff_timer);
	close(fd);
	gauge_connections(server);
	free(server);
}

uint16_t http_server_port(const struct http_server *server)
{
	return server->port;
}
