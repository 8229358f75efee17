#include "http/server.h"

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/str.h"
#include "proto/http_request.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REQUESTS_METRIC "mailtrail_http_requests_total"
#define REQUESTS_HELP   "HTTP requests answered, by route and status."
#define DROPPED_METRIC  "mailtrail_http_replies_dropped_total"
#define DROPPED_HELP    "Replies not sent because the client had gone away, by route."
#define OPEN_METRIC     "mailtrail_http_connections"
#define OPEN_HELP       "HTTP connections open."
#define REFUSED_METRIC  "mailtrail_http_connections_refused_total"
#define REFUSED_HELP    "HTTP connections closed at accept because a cap was reached, by cap."
#define FULL_METRIC     "mailtrail_http_connections_full_total"
#define FULL_HELP       "Times http_max_connections was reached and accepting paused."
#define BACKOFF_METRIC  "mailtrail_http_accept_backoff_total"
#define BACKOFF_HELP                                                                               \
	"Episodes of accept() failing (out of descriptors or memory), by error; accepting pauses."
#define DEADLINE_METRIC "mailtrail_http_deadlines_total"
#define DEADLINE_HELP   "HTTP connections cut at a deadline, by what was late."

#define IP_BUCKETS 256

struct http_pair {
	char *name;
	char *value;
};

/* One client address and its open connections; it exists while it has any. */
struct ip_entry {
	unsigned char addr[16]; /* IPv4 as ::ffff:a.b.c.d */
	unsigned count;
	struct ip_entry *next;
};

/* A connection's states; each has one deadline policy (set_state()). */
enum conn_state {
	CONN_IDLE,    /* waiting for a request's first byte */
	CONN_HEAD,    /* reading a head */
	CONN_AUTH,    /* the authenticate hook has the request; its body waits unread */
	CONN_BODY,    /* reading a body */
	CONN_HANDLER, /* the handler has the request */
	CONN_WRITING, /* a reply is going out */
	CONN_LINGER,  /* after the last reply: discarding what the client still sends, then close */
};

static const char *const conn_state_names[] = {
    [CONN_IDLE] = "idle",     [CONN_HEAD] = "head",       [CONN_AUTH] = "auth",
    [CONN_BODY] = "body",     [CONN_HANDLER] = "handler", [CONN_WRITING] = "writing",
    [CONN_LINGER] = "linger",
};

struct http_conn {
	struct http_server *server;
	struct bufferevent *bev;
	evutil_socket_t fd;
	struct ip_entry *ip;
	enum conn_state state;
	struct http_request *req; /* being read, in the hook or handler; NULL between requests */
	struct event *timer;      /* the state's deadline */
	/* AUTH and HANDLER stop reading, so a client that left would only be noticed when the
	 * reply fails; this watches the socket meanwhile. */
	struct event *watch;
	struct event *kick; /* conn_kick() */
	int64_t accepted_ms;
	int64_t head_deadline_ms, request_deadline_ms;
	int64_t waiting_since_ms; /* CONN_AUTH: not the client's time */
	unsigned requests;        /* begun on this connection */
	bool close_after;         /* the reply going out is the last */
	struct http_conn *prev, *next;
};

struct http_server {
	struct event_base *base;
	evutil_socket_t listen_fd;
	struct event *listener;
	struct event *backoff_timer;
	bool listening;   /* the listener event is added */
	bool backing_off; /* accept() failed: paused until backoff_timer */
	bool in_episode;  /* ...and has not succeeded since: warned once */
	bool full;        /* at max_connections */
	int64_t full_warned_ms;
	unsigned backoff_ms;
	struct http_server_params params;
	const struct http_route *routes;
	size_t route_count;
	http_authenticate_fn *authenticate;
	void *app;
	uint16_t port;
	struct http_conn *conns;
	unsigned conn_count;
	struct ip_entry *ips[IP_BUCKETS];
	struct http_request *pending; /* requests the hook or a handler has */
	/* Bodies over MT_HTTP_BODY_MAX being read or handled, in bytes: what they and the work done
	 * on them (a JSON tree, a built message) hold is bounded node-wide, whichever tenant sends
	 * them (MT_HTTP_LARGE_BODIES_MAX). */
	size_t large_bytes;
};

enum body_state { BODY_NONE, BODY_UNREAD, BODY_READING, BODY_DONE };

struct http_request {
	size_t large_reserved;             /* its share of server->large_bytes */
	struct http_server *server;        /* NULL once the server is freed */
	struct http_conn *conn;            /* NULL once answered or once the connection is gone */
	struct http_request_parser parser; /* owns the head's strings */
	const struct http_request_head *head;
	struct mt_buf body;
	enum body_state body_state;
	const struct http_route *route;
	const char *route_name;
	const char *method;
	int64_t start_ms;
	bool head_only; /* HEAD: the reply without its content */
	bool in_app;    /* the hook or a handler has it: only a reply frees it */
	bool gone;
	bool replied;
	int busy; /* our callbacks on the stack: the free waits until they return */
	bool has_auth;
	struct http_auth auth;
	char *token;
	struct http_pair params[MT_HTTP_PATH_PARAMS_MAX];
	size_t param_count;
	struct http_pair query[MT_HTTP_QUERY_PARAMS_MAX];
	size_t query_count;
	void *data;
	struct http_request *prev, *next;
};

static _Thread_local char error_text[MT_ERROR_TEXT_MAX];

static void conn_close(struct http_conn *conn);
static void set_state(struct http_conn *conn, enum conn_state state);
static void listener_update(struct http_server *server);

/* ---- small helpers ---------------------------------------------------------------------- */

static const char *reason_phrase(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 204:
		return "No Content";
	case 301:
		return "Moved Permanently";
	case 302:
		return "Found";
	case 303:
		return "See Other";
	case 304:
		return "Not Modified";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 410:
		return "Gone";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 422:
		return "Unprocessable Content";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	}
	return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
}

/* Percent-decodes [s, s+len) into a new string. NULL on a malformed escape or a decoded NUL,
 * which would silently cut the value short for every C consumer. */
static char *percent_decode(const char *s, size_t len, bool plus_is_space)
{
	char *out = malloc(len + 1);
	if (out == NULL)
		return NULL;
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '%') {
			int hi = i + 2 < len ? mt_hex_value(s[i + 1]) : -1;
			int lo = hi >= 0 ? mt_hex_value(s[i + 2]) : -1;
			if (lo < 0 || (hi == 0 && lo == 0)) {
				free(out);
				return NULL;
			}
			out[n++] = (char)(hi * 16 + lo);
			i += 2;
		} else if (c == '+' && plus_is_space) {
			out[n++] = ' ';
		} else if (c == '\0') {
			free(out);
			return NULL;
		} else {
			out[n++] = c;
		}
	}
	out[n] = '\0';
	return out;
}

static void pairs_free(struct http_pair *pairs, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		free(pairs[i].name);
		free(pairs[i].value);
	}
}

/* RFC 9110 §5.6.7 IMF-fixdate, without the locale strftime() would use. */
static void http_date(char out[64])
{
	static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	snprintf(out, 64, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
	         months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void count_deadline(const char *what)
{
	mt_metric_inc(DEADLINE_METRIC, DEADLINE_HELP, "phase", what, NULL, NULL);
}

/* ---- requests ----------------------------------------------------------------------------- */

static void unlink_pending(struct http_request *req)
{
	if (req->server == NULL)
		return;
	if (req->prev != NULL)
		req->prev->next = req->next;
	else if (req->server->pending == req)
		req->server->pending = req->next;
	if (req->next != NULL)
		req->next->prev = req->prev;
	req->prev = req->next = NULL;
}

/* The hook or a handler gets the request: from now on only a reply frees it. */
static void hand_to_app(struct http_request *req)
{
	struct http_server *server = req->server;
	req->in_app = true;
	req->next = server->pending;
	if (server->pending != NULL)
		server->pending->prev = req;
	server->pending = req;
}

static void request_free(struct http_request *req)
{
	if (req->conn != NULL && req->conn->req == req)
		req->conn->req = NULL;
	unlink_pending(req);
	if (req->server != NULL)
		req->server->large_bytes -= req->large_reserved;
	http_request_parser_deinit(&req->parser);
	mt_buf_free(&req->body);
	pairs_free(req->params, req->param_count);
	pairs_free(req->query, req->query_count);
	if (req->token != NULL) {
		explicit_bzero(req->token, strlen(req->token));
		free(req->token);
	}
	free(req);
}

static void watch_stop(struct http_conn *conn)
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
	watch_stop(conn);
	if (n > 0)
		return;
	mt_log(MT_LOG_DEBUG, "http.client_gone",
	       MT_KV("route", conn->req != NULL ? conn->req->route_name : "-"));
	conn_close(conn);
}

/* Frees the request once it is answered and none of our frames still use it; a request left
 * waiting for an asynchronous reply gets its socket watched. */
static void release(struct http_request *req)
{
	if (--req->busy > 0)
		return;
	if (req->replied) {
		request_free(req);
		return;
	}
	struct http_conn *conn = req->conn;
	if (conn != NULL && conn->req == req && !req->gone &&
	    (conn->state == CONN_AUTH || conn->state == CONN_HANDLER) && conn->watch != NULL)
		event_add(conn->watch, NULL);
}

/* ---- replies ------------------------------------------------------------------------------ */

static void log_and_count(struct http_request *req, int status, bool dropped)
{
	char code[16], ms[24];
	snprintf(code, sizeof(code), "%d", status);
	snprintf(ms, sizeof(ms), "%lld", (long long)(mt_now_ms() - req->start_ms));
	/* Never the path (it can carry an unsubscribe token), the query or any header. */
	mt_log(MT_LOG_INFO, "http.request", MT_KV("method", req->method),
	       MT_KV("route", req->route_name), MT_KV("status", code), MT_KV("ms", ms),
	       MT_KV(dropped ? "client" : NULL, "gone"));
	if (dropped)
		mt_metric_inc(DROPPED_METRIC, DROPPED_HELP, "route", req->route_name, NULL, NULL);
	else
		mt_metric_inc(REQUESTS_METRIC, REQUESTS_HELP, "route", req->route_name, "status",
		              code);
}

/* Writes the reply on the connection; it is the last one when the client asked so or when the
 * request's body was not read (what is left of it makes the connection unusable). */
static void conn_reply(struct http_conn *conn, struct http_request *req, int status,
                       const char *content_type, const char *data, size_t len,
                       const char *const *extra)
{
	bool last = req->head == NULL || !req->head->keep_alive || req->body_state == BODY_UNREAD ||
	            req->body_state == BODY_READING || conn->server == NULL;
	bool no_content = status == 204 || status == 304;
	struct evbuffer *out = bufferevent_get_output(conn->bev);
	char date[64];
	http_date(date);
	evbuffer_add_printf(out,
	                    "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\n"
	                    "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
	                    status, reason_phrase(status), date,
	                    content_type != NULL ? content_type
	                                         : "application/json; charset=utf-8");
	if (!no_content)
		evbuffer_add_printf(out, "Content-Length: %zu\r\n", len);
	for (size_t i = 0; extra != NULL && extra[i] != NULL; i += 2)
		evbuffer_add_printf(out, "%s: %s\r\n", extra[i], extra[i + 1]);
	if (last)
		evbuffer_add(out, "Connection: close\r\n", 19);
	else if (req->head->minor == 0)
		evbuffer_add(out, "Connection: keep-alive\r\n", 24);
	evbuffer_add(out, "\r\n", 2);
	if (!no_content && !req->head_only && len > 0)
		evbuffer_add(out, data, len);
	conn->close_after = last;
	conn->requests++;
	set_state(conn, CONN_WRITING);
}

/* The one place a request is answered. `extra` is a NULL-terminated name/value list. */
static void finish(struct http_request *req, int status, const char *content_type, const char *data,
                   size_t len, const char *const *extra)
{
	if (req->replied) {
		mt_log(MT_LOG_WARN, "http.reply_twice", MT_KV("route", req->route_name));
		return;
	}
	req->replied = true;
	if (status < 100 || status > 599)
		status = 500;
	struct http_conn *conn = req->conn;
	bool dropped = req->gone || conn == NULL;
	log_and_count(req, status, dropped);
	if (!dropped) {
		watch_stop(conn);
		conn_reply(conn, req, status, content_type, data, len, extra);
		conn->req = NULL;
	}
	req->conn = NULL;
	unlink_pending(req);
	if (req->busy == 0)
		request_free(req);
}

void http_reply_text(struct http_request *req, int status, const char *content_type,
                     const char *text, size_t len)
{
	finish(req, status, content_type, text, len, NULL);
}

void http_reply_empty(struct http_request *req, int status)
{
	finish(req, status, NULL, NULL, 0, NULL);
}

static void reply_json_extra(struct http_request *req, int status, json_t *body,
                             const char *const *extra)
{
	char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (text == NULL) {
		static const char internal[] = "{\"error\":{\"class\":\"internal\",\"message\":"
		                               "\"reply could not be encoded\"}}";
		finish(req, 500, NULL, internal, sizeof(internal) - 1, NULL);
		return;
	}
	finish(req, status, NULL, text, strlen(text), extra);
	free(text);
}

void http_reply_json(struct http_request *req, int status, json_t *body)
{
	reply_json_extra(req, status, body, NULL);
}

/* jansson refuses invalid UTF-8; rather than lose an SMTP server's reply, its odd bytes
 * become '?'. */
static json_t *utf8_string(const char *s)
{
	json_t *j = json_string(s);
	if (j != NULL)
		return j;
	char *copy = strdup(s);
	if (copy == NULL)
		return NULL;
	for (char *p = copy; *p != '\0'; p++) {
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	}
	j = json_string(copy);
	free(copy);
	return j;
}

static void reply_error_extra(struct http_request *req, int status, const char *cls,
                              const char *message, const char *smtp_reply, const char *fingerprint,
                              const char *const *extra)
{
	json_t *error = json_object();
	json_object_set_new(error, "class", utf8_string(cls != NULL ? cls : "internal"));
	json_object_set_new(error, "message", utf8_string(message != NULL ? message : ""));
	if (smtp_reply != NULL)
		json_object_set_new(error, "smtp_reply", utf8_string(smtp_reply));
	if (fingerprint != NULL)
		json_object_set_new(error, "fingerprint", utf8_string(fingerprint));
	json_t *body = json_object();
	json_object_set_new(body, "error", error);
	reply_json_extra(req, status, body, extra);
}

void http_reply_error(struct http_request *req, int status, const char *cls, const char *message,
                      const char *smtp_reply, const char *fingerprint)
{
	reply_error_extra(req, status, cls, message, smtp_reply, fingerprint, NULL);
}

void http_reply_errorf(struct http_request *req, int status, const char *cls, const char *fmt, ...)
{
	char message[MT_ERROR_TEXT_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	reply_error_extra(req, status, cls, message, NULL, NULL, NULL);
}

void http_reply_error_retry(struct http_request *req, int status, const char *cls,
                            const char *message, unsigned retry_after_s)
{
	char seconds[16];
	snprintf(seconds, sizeof(seconds), "%u", retry_after_s);
	const char *const extra[] = {"Retry-After", seconds, NULL};
	reply_error_extra(req, status, cls, message, NULL, NULL, extra);
}

void http_request_abandon(struct http_request *req)
{
	if (req->gone || req->conn == NULL)
		finish(req, 500, NULL, NULL, 0, NULL);
	else
		http_reply_error(req, 500, "internal", "the request was abandoned", NULL, NULL);
}

/* ---- request accessors -------------------------------------------------------------------- */

static const char *pair_get(const struct http_pair *pairs, size_t count, const char *name)
{
	for (size_t i = 0; i < count && name != NULL; i++) {
		if (strcmp(pairs[i].name, name) == 0)
			return pairs[i].value;
	}
	return NULL;
}

const char *http_request_param(const struct http_request *req, const char *name)
{
	return pair_get(req->params, req->param_count, name);
}

const char *http_request_query(const struct http_request *req, const char *name)
{
	return pair_get(req->query, req->query_count, name);
}

const char *http_request_header(const struct http_request *req, const char *name)
{
	for (size_t i = 0; req->head != NULL && name != NULL && i < req->head->field_count; i++) {
		if (strcasecmp(req->head->fields[i].name, name) == 0)
			return req->head->fields[i].value;
	}
	return NULL;
}

const char *http_request_body(const struct http_request *req, size_t *len_r)
{
	if (len_r != NULL)
		*len_r = req->body.len;
	return req->body.data != NULL ? req->body.data : "";
}

const char *http_request_method(const struct http_request *req)
{
	return req->method;
}

const char *http_request_route_name(const struct http_request *req)
{
	return req->route_name;
}

const struct http_auth *http_request_auth(const struct http_request *req)
{
	return req->has_auth ? &req->auth : NULL;
}

void *http_request_get_data(const struct http_request *req)
{
	return req->data;
}

void http_request_set_data(struct http_request *req, void *data)
{
	req->data = data;
}

bool http_request_gone(const struct http_request *req)
{
	return req->gone;
}

/* ---- dispatch ----------------------------------------------------------------------------- */

/* Runs the bytes already read through the connection's state again, soon, from the loop (so
 * never inside a handler or the hook): bufferevent only calls back for bytes that arrive after
 * reading is enabled. */
static void conn_kick(struct http_conn *conn)
{
	if (evbuffer_get_length(bufferevent_get_input(conn->bev)) > 0)
		event_active(conn->kick, EV_TIMEOUT, 0);
}

static void run_handler(struct http_request *req)
{
	set_state(req->conn, CONN_HANDLER);
	hand_to_app(req);
	void *app = req->server != NULL ? req->server->app : NULL;
	req->busy++;
	req->route->handler(req, app);
	release(req);
}

static size_t body_cap(const struct http_request *req)
{
	return req->route->body_max > 0 ? req->route->body_max : MT_HTTP_BODY_MAX;
}

/* The request may go on: its declared size against the route's cap, then its body. */
static void accept_request(struct http_request *req)
{
	size_t max = body_cap(req);
	const struct http_request_head *head = req->head;
	if (head->body == HTTP_BODY_LENGTH && head->content_length > max) {
		http_reply_errorf(req, 413, "input", "request body larger than %zu bytes", max);
		return;
	}
	if (head->body == HTTP_BODY_NONE) {
		run_handler(req);
		return;
	}
	/* A large body is wanted only while the node's budget for them has room (a chunked one
	 * counts at the route's cap); else it stays unread and the client may try again soon. */
	size_t want = head->body == HTTP_BODY_LENGTH ? head->content_length : max;
	struct http_server *server = req->server;
	if (want > MT_HTTP_BODY_MAX && server != NULL) {
		if (server->large_bytes > 0 &&
		    server->large_bytes + want > MT_HTTP_LARGE_BODIES_MAX) {
			mt_metric_inc(
			    "mailtrail_http_large_bodies_refused_total",
			    "Large request bodies refused while the node's budget was full", NULL,
			    NULL, NULL, NULL);
			http_reply_error_retry(req, 503, "internal",
			                       "too many large requests at once; try again", 1);
			return;
		}
		server->large_bytes += want;
		req->large_reserved = want;
	}
	mt_buf_init(&req->body, max);
	req->body_state = BODY_READING;
	struct http_conn *conn = req->conn;
	/* RFC 9110 §10.1.1: only now that the body is wanted; never to an HTTP/1.0 client */
	if (head->expect_continue && head->minor == 1)
		evbuffer_add(bufferevent_get_output(conn->bev), "HTTP/1.1 100 Continue\r\n\r\n",
		             25);
	set_state(conn, CONN_BODY);
	conn_kick(conn);
}

void http_request_authenticated(struct http_request *req, const struct http_auth *auth_or_null)
{
	if (req->replied) {
		mt_log(MT_LOG_WARN, "http.authenticated_after_reply",
		       MT_KV("route", req->route_name));
		return;
	}
	if (req->token != NULL) {
		explicit_bzero(req->token, strlen(req->token));
		free(req->token);
		req->token = NULL;
	}
	if (req->gone || req->server == NULL || req->conn == NULL) {
		finish(req, 401, NULL, NULL, 0, NULL); /* dropped */
		return;
	}
	static const char *const bearer[] = {"WWW-Authenticate", "Bearer", NULL};
	if (auth_or_null == NULL) {
		reply_error_extra(req, 401, "auth", "invalid or revoked token", NULL, NULL, bearer);
		return;
	}
	if (req->route->auth == HTTP_ADMIN && !auth_or_null->admin) {
		http_reply_error(req, 403, "auth", "this needs an org admin", NULL, NULL);
		return;
	}
	req->auth = *auth_or_null;
	req->has_auth = true;
	/* Ours again until the handler has it: a connection closed meanwhile frees it. */
	unlink_pending(req);
	req->in_app = false;
	struct http_conn *conn = req->conn;
	watch_stop(conn);
	conn->request_deadline_ms += mt_now_ms() - conn->waiting_since_ms;
	accept_request(req);
}

enum match_result { MATCH_NO, MATCH_YES, MATCH_BAD };

/* Matches `path` (raw, percent-encoded) against `pattern` segment by segment; literal segments
 * compare against the decoded segment, {name} takes one non-empty segment. On MATCH_YES the
 * decoded parameters are in req->params. */
static enum match_result match_route(struct http_request *req, const char *pattern,
                                     const char *path)
{
	struct http_pair params[MT_HTTP_PATH_PARAMS_MAX];
	size_t count = 0;
	enum match_result result = MATCH_NO;
	const char *p = pattern, *s = path;
	if (*p != '/' || *s != '/')
		return MATCH_NO;
	for (;;) {
		p++, s++;
		size_t plen = strcspn(p, "/"), slen = strcspn(s, "/");
		char *seg = percent_decode(s, slen, false);
		if (seg == NULL) {
			result = MATCH_BAD;
			goto out;
		}
		if (plen >= 2 && p[0] == '{' && p[plen - 1] == '}') {
			if (slen == 0 || count == MT_HTTP_PATH_PARAMS_MAX) {
				free(seg);
				goto out;
			}
			params[count].name = strndup(p + 1, plen - 2);
			params[count].value = seg;
			count++;
			if (params[count - 1].name == NULL)
				goto out;
		} else {
			bool same = strlen(seg) == plen && memcmp(seg, p, plen) == 0;
			free(seg);
			if (!same)
				goto out;
		}
		p += plen, s += slen;
		if (*p == '\0' || *s == '\0') {
			if (*p == '\0' && *s == '\0')
				result = MATCH_YES;
			goto out;
		}
	}
out:
	if (result == MATCH_YES) {
		memcpy(req->params, params, count * sizeof(params[0]));
		req->param_count = count;
	} else {
		pairs_free(params, count);
	}
	return result;
}

/* application/x-www-form-urlencoded pairs; a repeated name is refused rather than guessed. */
static int parse_query(struct http_request *req, const char *query, const char **why_r)
{
	for (const char *s = query; s != NULL && *s != '\0';) {
		size_t len = strcspn(s, "&");
		if (len > 0) {
			const char *eq = memchr(s, '=', len);
			size_t nlen = eq != NULL ? (size_t)(eq - s) : len;
			if (req->query_count == MT_HTTP_QUERY_PARAMS_MAX) {
				*why_r = "too many query parameters";
				return -1;
			}
			char *name = percent_decode(s, nlen, true);
			char *value =
			    eq != NULL ? percent_decode(eq + 1, len - nlen - 1, true) : strdup("");
			if (name == NULL || value == NULL) {
				free(name);
				free(value);
				*why_r = "malformed query string";
				return -1;
			}
			if (http_request_query(req, name) != NULL) {
				free(name);
				free(value);
				*why_r = "repeated query parameter";
				return -1;
			}
			req->query[req->query_count++] = (struct http_pair){name, value};
		}
		s += len;
		if (*s == '&')
			s++;
	}
	return 0;
}

/* "Bearer <token>" (RFC 6750 §2.1: the scheme is case-insensitive, the token has no spaces). */
static const char *bearer_token(const char *value)
{
	if (value == NULL || strncasecmp(value, "Bearer ", 7) != 0)
		return NULL;
	const char *t = value + 7;
	while (*t == ' ')
		t++;
	size_t len = strlen(t);
	while (len > 0 && t[len - 1] == ' ')
		len--;
	if (len == 0 || len > MT_HTTP_HEADERS_MAX)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)t[i];
		if (c <= ' ' || c >= 0x7f)
			return NULL;
	}
	return t;
}

/* Finds the route; false when the request was answered (400, 404, 405). */
static bool route_request(struct http_request *req)
{
	struct http_server *server = req->server;
	const char *target = req->head->target;
	size_t plen = strcspn(target, "?");
	char *path = strndup(target, plen);
	if (path == NULL) {
		http_reply_error(req, 503, "internal", "out of memory", NULL, NULL);
		return false;
	}
	bool path_known = false, bad_path = false;
	char allow[64] = "";
	for (size_t i = 0; i < server->route_count && req->route == NULL; i++) {
		const struct http_route *r = &server->routes[i];
		enum match_result m = match_route(req, r->pattern, path);
		if (m == MATCH_BAD) {
			bad_path = true;
			break;
		}
		if (m != MATCH_YES)
			continue;
		if (strcmp(r->method, req->method) == 0) {
			req->route = r;
			req->route_name = r->name;
		} else {
			pairs_free(req->params, req->param_count);
			req->param_count = 0;
			path_known = true;
			if (strstr(allow, r->method) == NULL &&
			    strlen(allow) + strlen(r->method) + 3 < sizeof(allow)) {
				if (allow[0] != '\0')
					strcat(allow, ", ");
				strcat(allow, r->method);
			}
		}
	}
	free(path);
	if (bad_path) {
		http_reply_error(req, 400, "input", "malformed path", NULL, NULL);
		return false;
	}
	if (req->route == NULL) {
		if (path_known) {
			const char *const extra[] = {"Allow", allow, NULL};
			reply_error_extra(req, 405, "input", "method not allowed", NULL, NULL,
			                  extra);
		} else {
			http_reply_error(req, 404, "input", "no such endpoint", NULL, NULL);
		}
		return false;
	}
	const char *why = NULL;
	if (target[plen] == '?' && parse_query(req, target + plen + 1, &why) < 0) {
		http_reply_error(req, 400, "input", why, NULL, NULL);
		return false;
	}
	return true;
}

/* The head is in: everything is decided from it before any of the body is read. */
static void on_head(struct http_conn *conn, struct http_request *req)
{
	struct http_server *server = conn->server;
	req->method = req->head->method;
	req->head_only = strcmp(req->method, "HEAD") == 0;
	if (req->head->body != HTTP_BODY_NONE)
		req->body_state = BODY_UNREAD;
	if (!route_request(req))
		return;
	if (req->route->auth == HTTP_PUBLIC) {
		accept_request(req);
		return;
	}
	const char *token = bearer_token(http_request_header(req, "Authorization"));
	if (token == NULL || server->authenticate == NULL) {
		static const char *const bearer[] = {"WWW-Authenticate", "Bearer", NULL};
		reply_error_extra(req, 401, "auth", "missing or malformed bearer token", NULL, NULL,
		                  bearer);
		return;
	}
	req->token = strndup(token, strcspn(token, " "));
	if (req->token == NULL) {
		http_reply_error(req, 503, "internal", "out of memory", NULL, NULL);
		return;
	}
	conn->waiting_since_ms = mt_now_ms();
	set_state(conn, CONN_AUTH);
	hand_to_app(req);
	req->busy++;
	server->authenticate(req, req->token, server->app);
	release(req);
}

/* ---- connections -------------------------------------------------------------------------- */

static void conn_arm(struct http_conn *conn, int64_t deadline_ms)
{
	int64_t ms = deadline_ms - mt_now_ms();
	if (ms < 0)
		ms = 0;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(conn->timer, &tv);
}

static void set_state(struct http_conn *conn, enum conn_state state)
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
	case CONN_HANDLER:
		/* ours to wait for, not the client's: no deadline, and nothing more is read */
		evtimer_del(conn->timer);
		bufferevent_disable(conn->bev, EV_READ);
		break;
	case CONN_WRITING:
		conn_arm(conn, now + p->reply_timeout_ms);
		bufferevent_disable(conn->bev, EV_READ);
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
	struct http_request *req = calloc(1, sizeof(*req));
	if (req == NULL) {
		conn_close(conn);
		return;
	}
	req->server = conn->server;
	req->conn = conn;
	req->method = "-";
	req->route_name = "unmatched";
	req->start_ms = mt_now_ms();
	http_request_parser_init(&req->parser);
	mt_buf_init(&req->body, 0);
	conn->req = req;
	/* The first request's clock started at accept: a client that connects and waits is
	 * held no longer than one that trickles. */
	int64_t from = conn->requests == 0 ? conn->accepted_ms : req->start_ms;
	conn->head_deadline_ms = from + conn->server->params.header_timeout_ms;
	conn->request_deadline_ms = from + conn->server->params.request_timeout_ms;
	set_state(conn, CONN_HEAD);
}

static void parse_failed(struct http_request *req, const char *why)
{
	int status = http_request_parser_status(&req->parser);
	if (status == 413)
		http_reply_errorf(req, 413, "input", "request body larger than %zu bytes",
		                  body_cap(req));
	else
		http_reply_error(req, status, status == 503 ? "internal" : "input", why, NULL,
		                 NULL);
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
				parse_failed(req, why);
				return;
			}
			evbuffer_drain(in, consumed);
			if (ret == 1)
				on_head(conn, req);
			break;
		}
		case CONN_BODY: {
			struct http_request *req = conn->req;
			evbuffer_peek(in, -1, NULL, &vec, 1);
			ret = http_request_parse_body(&req->parser, vec.iov_base, vec.iov_len,
			                              &consumed, &req->body, &why);
			if (ret < 0) {
				parse_failed(req, why);
				return;
			}
			evbuffer_drain(in, consumed);
			if (ret == 1) {
				req->body_state = BODY_DONE;
				run_handler(req);
			}
			break;
		}
		case CONN_LINGER:
			evbuffer_drain(in, evbuffer_get_length(in));
			break;
		case CONN_AUTH:
		case CONN_HANDLER:
		case CONN_WRITING:
			return; /* the next request waits its turn */
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

static void on_write(struct bufferevent *bev, void *arg)
{
	struct http_conn *conn = arg;
	if (conn->state != CONN_WRITING || evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return; /* a 100 Continue went out, or more is still queued */
	if (conn->close_after) {
		/* Closing with unread input would reset the connection, and a client still
		 * sending its body could lose the reply with it: send our FIN, then read and
		 * drop what still comes, for a while. */
		shutdown(conn->fd, SHUT_WR);
		set_state(conn, CONN_LINGER);
		conn_kick(conn);
		return;
	}
	set_state(conn, CONN_IDLE);
	conn_kick(conn);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct http_conn *conn = arg;
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
		if (req->in_app)
			req->gone = true;
		else if (req->busy == 0)
			request_free(req);
	}
	event_free(conn->watch);
	event_free(conn->kick);
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
	}
	if (conn == NULL || ip == NULL || conn->bev == NULL || conn->timer == NULL ||
	    conn->watch == NULL || conn->kick == NULL) {
		if (conn != NULL) {
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
	set_state(conn, CONN_IDLE);
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
