#include "http/server.h"

#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/str.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* How long a connection may take to send a request or to take our reply. Waiting for a handler
 * is not limited here: evhttp stops reading while a request is being handled. */
#define HTTP_IO_TIMEOUT_S 60

#define REQUESTS_METRIC "mailtrail_http_requests_total"
#define REQUESTS_HELP   "HTTP requests answered, by route and status."
#define DROPPED_METRIC  "mailtrail_http_replies_dropped_total"
#define DROPPED_HELP    "Replies not sent because the client had gone away, by route."

struct http_pair {
	char *name;
	char *value;
};

struct http_server {
	struct event_base *base;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	const struct http_route *routes;
	size_t route_count;
	http_authenticate_fn *authenticate;
	void *app;
	uint16_t port;
	struct http_request *pending; /* requests waiting for their reply */
};

struct http_request {
	struct http_server *server; /* NULL once the server is freed */
	/* NULL once evhttp has freed it or we have handed it back with a reply. When the client
	 * goes away, evhttp either frees it with the connection (we are told by the close
	 * callback) or detaches it (evcon NULL) and leaves the freeing to us. */
	struct evhttp_request *ev;
	struct evhttp_connection *conn;
	/* evhttp stops reading while a request is handled, so it would only notice a client that
	 * left when the reply fails; this watches the socket meanwhile. */
	struct event *watch;
	const struct http_route *route;
	const char *route_name;
	const char *method;
	int64_t start_ms;
	bool gone;
	bool replied;
	int busy; /* our callbacks on the stack: the free waits until they return */
	bool has_auth;
	struct http_auth auth;
	char *token;
	char *body;
	size_t body_len;
	struct http_pair params[MT_HTTP_PATH_PARAMS_MAX];
	size_t param_count;
	struct http_pair query[MT_HTTP_QUERY_PARAMS_MAX];
	size_t query_count;
	struct http_pair *headers;
	size_t header_count;
	void *data;
	struct http_request *prev, *next;
};

static _Thread_local char error_text[MT_ERROR_TEXT_MAX];

/* ---- small helpers ---------------------------------------------------------------------- */

static const char *method_name(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	case EVHTTP_REQ_TRACE:
		return "TRACE";
	case EVHTTP_REQ_CONNECT:
		return "CONNECT";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	}
	return "OTHER";
}

static const char *reason_phrase(int status)
{
	switch (status) {
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
	case 409:
		return "Conflict";
	case 410:
		return "Gone";
	case 413:
		return "Content Too Large";
	case 415:
		return "Unsupported Media Type";
	case 422:
		return "Unprocessable Content";
	case 429:
		return "Too Many Requests";
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
	}
	return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
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
			int hi = i + 2 < len ? hex_value(s[i + 1]) : -1;
			int lo = hi >= 0 ? hex_value(s[i + 2]) : -1;
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

static void watch_stop(struct http_request *req)
{
	if (req->watch != NULL) {
		event_free(req->watch);
		req->watch = NULL;
	}
}

/* The socket became readable while the request waits: either the client pipelined its next
 * request (left for evhttp) or it closed or reset the connection. A client that only shut down
 * its sending side is taken as gone too, as most servers do. */
static void on_peer_event(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct http_request *req = arg;
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	watch_stop(req);
	if (n > 0)
		return;
	mt_log(MT_LOG_DEBUG, "http.client_gone", MT_KV("route", req->route_name));
	/* evhttp frees its request with the connection. */
	evhttp_connection_set_closecb(req->conn, NULL, NULL);
	if (req->ev != NULL && evhttp_request_get_connection(req->ev) != NULL)
		req->ev = NULL;
	req->gone = true;
	evhttp_connection_free(req->conn);
}

static void watch_start(struct http_request *req)
{
	if (req->watch != NULL || req->gone || req->ev == NULL || req->server == NULL)
		return;
	struct bufferevent *bev = evhttp_connection_get_bufferevent(req->conn);
	evutil_socket_t fd = bev != NULL ? bufferevent_getfd(bev) : -1;
	if (fd < 0)
		return;
	req->watch = event_new(req->server->base, fd, EV_READ | EV_PERSIST, on_peer_event, req);
	if (req->watch != NULL && event_add(req->watch, NULL) < 0)
		watch_stop(req);
}

static void request_free(struct http_request *req)
{
	watch_stop(req);
	unlink_pending(req);
	/* A request evhttp detached from a dead connection is ours to free. */
	if (req->ev != NULL)
		evhttp_request_free(req->ev);
	pairs_free(req->params, req->param_count);
	pairs_free(req->query, req->query_count);
	pairs_free(req->headers, req->header_count);
	free(req->headers);
	if (req->token != NULL) {
		explicit_bzero(req->token, strlen(req->token));
		free(req->token);
	}
	free(req->body);
	free(req);
}

/* Frees the request once it is answered and none of our frames still use it; a request left
 * waiting for an asynchronous reply gets its socket watched. */
static void release(struct http_request *req)
{
	if (--req->busy > 0)
		return;
	if (req->replied)
		request_free(req);
	else
		watch_start(req);
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

/* The one place a request is answered. `extra` is a NULL-terminated name/value list. */
static void finish(struct http_request *req, int status, const char *content_type, const char *data,
                   size_t len, const char *const *extra)
{
	if (req->replied) {
		mt_log(MT_LOG_WARN, "http.reply_twice", MT_KV("route", req->route_name));
		return;
	}
	req->replied = true;
	watch_stop(req);
	if (status < 100 || status > 599)
		status = 500;
	bool dropped = req->gone || req->ev == NULL;
	log_and_count(req, status, dropped);
	if (!dropped) {
		struct evhttp_request *ev = req->ev;
		req->ev = NULL; /* evhttp frees it once the reply is written */
		evhttp_connection_set_closecb(req->conn, NULL, NULL);
		struct evkeyvalq *out = evhttp_request_get_output_headers(ev);
		evhttp_add_header(out, "Content-Type",
		                  content_type != NULL ? content_type
		                                       : "application/json; charset=utf-8");
		evhttp_add_header(out, "Cache-Control", "no-store");
		evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
		for (size_t i = 0; extra != NULL && extra[i] != NULL; i += 2)
			evhttp_add_header(out, extra[i], extra[i + 1]);
		struct evbuffer *buf = NULL;
		if (len > 0 && status != 204 && status != 304) {
			buf = evbuffer_new();
			if (buf != NULL)
				evbuffer_add(buf, data, len);
		}
		evhttp_send_reply(ev, status, reason_phrase(status), buf);
		if (buf != NULL)
			evbuffer_free(buf);
	}
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

void http_request_abandon(struct http_request *req)
{
	if (req->gone || req->ev == NULL)
		finish(req, 500, NULL, NULL, 0, NULL);
	else
		http_reply_error(req, 500, "internal", "the request was abandoned", NULL, NULL);
}

/* ---- request accessors -------------------------------------------------------------------- */

static const char *pair_get(const struct http_pair *pairs, size_t count, const char *name,
                            bool nocase)
{
	for (size_t i = 0; i < count && name != NULL; i++) {
		if ((nocase ? strcasecmp(pairs[i].name, name) : strcmp(pairs[i].name, name)) == 0)
			return pairs[i].value;
	}
	return NULL;
}

const char *http_request_param(const struct http_request *req, const char *name)
{
	return pair_get(req->params, req->param_count, name, false);
}

const char *http_request_query(const struct http_request *req, const char *name)
{
	return pair_get(req->query, req->query_count, name, false);
}

const char *http_request_header(const struct http_request *req, const char *name)
{
	return pair_get(req->headers, req->header_count, name, true);
}

const char *http_request_body(const struct http_request *req, size_t *len_r)
{
	if (len_r != NULL)
		*len_r = req->body_len;
	return req->body;
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

static void run_handler(struct http_request *req)
{
	void *app = req->server != NULL ? req->server->app : NULL;
	req->busy++;
	req->route->handler(req, app);
	release(req);
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
	if (req->gone || req->server == NULL) {
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
	run_handler(req);
}

/* The connection closed while the request waited for its reply. */
static void on_close(struct evhttp_connection *conn, void *arg)
{
	(void)conn;
	struct http_request *req = arg;
	req->gone = true;
	/* Still attached: evhttp frees it with the connection right after this callback. */
	if (req->ev != NULL && evhttp_request_get_connection(req->ev) != NULL)
		req->ev = NULL;
}

static int copy_headers(struct http_request *req, struct evhttp_request *ev)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(ev);
	size_t n = 0;
	for (struct evkeyval *h = in->tqh_first; h != NULL; h = h->next.tqe_next)
		n++;
	if (n == 0)
		return 0;
	req->headers = calloc(n, sizeof(*req->headers));
	if (req->headers == NULL)
		return -1;
	for (struct evkeyval *h = in->tqh_first; h != NULL; h = h->next.tqe_next) {
		struct http_pair *p = &req->headers[req->header_count];
		p->name = strdup(h->key);
		p->value = strdup(h->value);
		req->header_count++;
		if (p->name == NULL || p->value == NULL)
			return -1;
	}
	return 0;
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

static void on_request(struct evhttp_request *ev, void *arg)
{
	struct http_server *server = arg;
	struct http_request *req = calloc(1, sizeof(*req));
	if (req == NULL) {
		evhttp_send_error(ev, 503, NULL);
		return;
	}
	req->server = server;
	req->ev = ev;
	req->conn = evhttp_request_get_connection(ev);
	req->method = method_name(evhttp_request_get_command(ev));
	req->route_name = "unmatched";
	req->start_ms = mt_now_ms();
	req->next = server->pending;
	if (server->pending != NULL)
		server->pending->prev = req;
	server->pending = req;
	evhttp_connection_set_closecb(req->conn, on_close, req);
	req->busy = 1;

	if (copy_headers(req, ev) < 0) {
		http_reply_error(req, 503, "internal", "out of memory", NULL, NULL);
		goto out;
	}

	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	bool path_known = false, bad_path = false;
	char allow[64] = "";
	for (size_t i = 0; path != NULL && i < server->route_count && req->route == NULL; i++) {
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
	if (bad_path) {
		http_reply_error(req, 400, "input", "malformed path", NULL, NULL);
		goto out;
	}
	if (req->route == NULL) {
		if (path_known) {
			const char *const extra[] = {"Allow", allow, NULL};
			reply_error_extra(req, 405, "input", "method not allowed", NULL, NULL,
			                  extra);
		} else {
			http_reply_error(req, 404, "input", "no such endpoint", NULL, NULL);
		}
		goto out;
	}

	/* evhttp only caps the body globally (at the largest route cap). */
	struct evbuffer *input = evhttp_request_get_input_buffer(ev);
	size_t len = evbuffer_get_length(input);
	size_t max = req->route->body_max > 0 ? req->route->body_max : MT_HTTP_BODY_MAX;
	if (len > max) {
		http_reply_errorf(req, 413, "input", "request body larger than %zu bytes", max);
		goto out;
	}
	req->body = malloc(len + 1);
	if (req->body == NULL) {
		http_reply_error(req, 503, "internal", "out of memory", NULL, NULL);
		goto out;
	}
	req->body_len = len;
	evbuffer_copyout(input, req->body, len);
	req->body[len] = '\0';

	const char *why = NULL;
	if (parse_query(req, evhttp_uri_get_query(uri), &why) < 0) {
		http_reply_error(req, 400, "input", why, NULL, NULL);
		goto out;
	}

	if (req->route->auth == HTTP_PUBLIC) {
		run_handler(req);
		goto out;
	}
	const char *token = bearer_token(http_request_header(req, "Authorization"));
	if (token == NULL || server->authenticate == NULL) {
		static const char *const bearer[] = {"WWW-Authenticate", "Bearer", NULL};
		reply_error_extra(req, 401, "auth", "missing or malformed bearer token", NULL, NULL,
		                  bearer);
		goto out;
	}
	size_t tlen = strcspn(token, " ");
	req->token = strndup(token, tlen);
	if (req->token == NULL) {
		http_reply_error(req, 503, "internal", "out of memory", NULL, NULL);
		goto out;
	}
	req->busy++;
	server->authenticate(req, req->token, server->app);
	release(req);
out:
	release(req);
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

struct http_server *http_server_new(struct event_base *base, const char *listen,
                                    const struct http_route *routes, size_t route_count,
                                    http_authenticate_fn *authenticate, void *app,
                                    const char **error_r)
{
	char host[MT_HOSTNAME_MAX + 1];
	uint16_t port = 0;
	if (listen == NULL || parse_listen(listen, host, sizeof(host), &port) < 0) {
		*error_r = fail("invalid listen address '%.100s' (want HOST:PORT or [V6]:PORT)",
		                listen != NULL ? listen : "");
		return NULL;
	}
	size_t body_max = MT_HTTP_BODY_MAX;
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
		if (routes[i].body_max > body_max)
			body_max = routes[i].body_max;
	}
	struct http_server *server = calloc(1, sizeof(*server));
	if (server == NULL) {
		*error_r = fail("out of memory");
		return NULL;
	}
	server->base = base;
	server->routes = routes;
	server->route_count = route_count;
	server->authenticate = authenticate;
	server->app = app;
	server->http = evhttp_new(base);
	if (server->http == NULL) {
		free(server);
		*error_r = fail("evhttp_new failed");
		return NULL;
	}
	evhttp_set_allowed_methods(server->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
	                                             EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE |
	                                             EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
	evhttp_set_max_body_size(server->http, (ev_ssize_t)body_max);
	evhttp_set_max_headers_size(server->http, MT_HTTP_HEADERS_MAX);
	evhttp_set_timeout(server->http, HTTP_IO_TIMEOUT_S);
	evhttp_set_gencb(server->http, on_request, server);
	errno = 0;
	server->bound = evhttp_bind_socket_with_handle(server->http, host, port);
	if (server->bound == NULL) {
		int err = errno;
		evhttp_free(server->http);
		free(server);
		*error_r = fail("cannot listen on %s: %s", listen,
		                err != 0 ? strerror(err) : "address not usable");
		return NULL;
	}
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	evutil_socket_t fd = evhttp_bound_socket_get_fd(server->bound);
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) == 0) {
		if (ss.ss_family == AF_INET)
			server->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			server->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	mt_log(MT_LOG_INFO, "http.listen", MT_KV("address", listen));
	return server;
}

void http_server_free(struct http_server **server_p)
{
	struct http_server *server = *server_p;
	if (server == NULL)
		return;
	*server_p = NULL;
	/* evhttp_free() frees every connection and the requests attached to them; ours stay
	 * until their handlers reply, so cut them loose first. */
	for (struct http_request *req = server->pending, *next; req != NULL; req = next) {
		next = req->next;
		watch_stop(req);
		if (req->ev != NULL && evhttp_request_get_connection(req->ev) != NULL) {
			evhttp_connection_set_closecb(req->conn, NULL, NULL);
			req->ev = NULL;
		}
		req->gone = true;
		req->server = NULL;
		req->prev = req->next = NULL;
	}
	server->pending = NULL;
	evhttp_free(server->http);
	free(server);
}

uint16_t http_server_port(const struct http_server *server)
{
	return server->port;
}
