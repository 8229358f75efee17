/* The request's side of the HTTP server (see http/server.h): a request's life from its first
 * byte to its reply (made, handed to the authenticate hook or a handler, freed), the accessors
 * handlers use, dispatch (route matching, the query, the body caps and the large-body budget)
 * and streamed bodies. The replies themselves are server_reply.c's; the connection that reads
 * and writes a request is server.c's; what the three share is in server_internal.h. */
#include "http/server_internal.h"
#include "lib/random.h"

#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/str.h"

#include <sodium.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- small helpers ---------------------------------------------------------------------- */

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

/* ---- requests ----------------------------------------------------------------------------- */

void http_req_unlink_pending(struct http_request *req)
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

/* "req_" and 16 hex digits: unique enough to find one request's lines in the log. */
static void request_id_new(char id[MT_HTTP_REQUEST_ID_MAX + 1])
{
	unsigned char bytes[8];
	mt_random_id_bytes(bytes, sizeof(bytes));
	memcpy(id, "req_", 4);
	sodium_bin2hex(id + 4, MT_HTTP_REQUEST_ID_MAX + 1 - 4, bytes, sizeof(bytes));
}

/* A client's id is kept only when it cannot break a header or a log line. */
static bool request_id_usable(const char *id)
{
	size_t n = id != NULL ? strlen(id) : 0;
	if (n == 0 || n > MT_HTTP_REQUEST_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      strchr("._:+=/-", c) != NULL))
			return false;
	}
	return true;
}

const char *http_request_id(const struct http_request *req)
{
	return req->request_id;
}

struct http_request *http_req_new(struct http_conn *conn)
{
	struct http_request *req = calloc(1, sizeof(*req));
	if (req == NULL)
		return NULL;
	req->server = conn->server;
	req->conn = conn;
	req->method = "-";
	req->route_name = "unmatched";
	req->start_ms = mt_now_ms();
	request_id_new(req->request_id);
	http_request_parser_init(&req->parser);
	mt_buf_init(&req->body, 0);
	return req;
}

void http_req_free(struct http_request *req)
{
	if (req->conn != NULL && req->conn->req == req)
		req->conn->req = NULL;
	http_req_unlink_pending(req);
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

/* Frees the request once it is answered and none of our frames still use it. A request the
 * authenticate hook answers later holds its body unread (an unknown sender's upload stays in
 * the kernel's buffers), with the socket watched for a client that leaves; one a handler has
 * keeps the connection reading (its EOF is seen there). */
static void release(struct http_request *req)
{
	if (--req->busy > 0)
		return;
	if (req->replied) {
		http_req_free(req);
		return;
	}
	struct http_conn *conn = req->conn;
	if (conn != NULL && conn->req == req && !req->gone && conn->state == CONN_AUTH &&
	    conn->watch != NULL) {
		bufferevent_disable(conn->bev, EV_READ);
		event_add(conn->watch, NULL);
	}
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

void http_req_run_handler(struct http_request *req)
{
	http_conn_set_state(req->conn, CONN_HANDLER);
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

static void stream_deliver(struct http_request *req, const struct http_stream_item *item);

static void send_continue(struct http_request *req)
{
	/* RFC 9110 §10.1.1: only now that the body is wanted; never to an HTTP/1.0 client */
	if (req->head->expect_continue && req->head->minor == 1)
		evbuffer_add(bufferevent_get_output(req->conn->bev),
		             "HTTP/1.1 100 Continue\r\n\r\n", 25);
}

/* A streamed body's route: the handler runs first and starts reading (or answers at once). Its
 * bytes are never held beyond the piece being handed over, so the large-body budget does not
 * apply: what the handler keeps of them is its own to bound. */
static void run_streamed(struct http_request *req)
{
	struct http_conn *conn = req->conn;
	mt_buf_init(&req->body, body_cap(req));
	http_conn_set_state(conn, CONN_HANDLER);
	hand_to_app(req);
	req->busy++;
	req->route->handler(req, req->server != NULL ? req->server->app : NULL);
	bool reading = !req->replied && req->stream_fn != NULL && req->conn == conn;
	if (reading && req->head->body == HTTP_BODY_NONE) {
		req->body_state = BODY_DONE;
		struct http_stream_item item = {.event = HTTP_STREAM_END};
		stream_deliver(req, &item);
	} else if (reading) {
		req->body_state = BODY_READING;
		send_continue(req);
		if (!req->stream_paused) {
			http_conn_set_state(conn, CONN_BODY);
			http_conn_kick(conn);
		}
	}
	release(req);
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
	if (req->route->stream_body) {
		run_streamed(req);
		return;
	}
	if (head->body == HTTP_BODY_NONE) {
		http_req_run_handler(req);
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
	/* The body's room is allocated at once, at its declared length or (chunked) at the
	 * route's cap, as the budget above counts it: growing by doubling would copy up to half of
	 * a large body again, in one callback, on the loop. Pages are touched only as bytes come.
	 */
	if (mt_buf_presize(&req->body, want) < 0) {
		http_reply_errorf(req, 503, "internal", "cannot hold the request body");
		return;
	}
	req->body_state = BODY_READING;
	struct http_conn *conn = req->conn;
	send_continue(req);
	http_conn_set_state(conn, CONN_BODY);
	http_conn_kick(conn);
}

void http_request_note_auth(struct http_request *req, const struct http_auth *auth)
{
	mt_strlcpy(req->log_key_id, auth->key_id, sizeof(req->log_key_id));
	mt_strlcpy(req->log_user_id, auth->user_id, sizeof(req->log_user_id));
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
		http_req_finish(req, 401, NULL, NULL, 0, NULL); /* dropped */
		return;
	}
	static const char *const bearer[] = {"WWW-Authenticate", "Bearer", NULL};
	if (auth_or_null == NULL) {
		http_req_reply_error_extra(req, 401, "auth", "invalid or revoked token", NULL, NULL,
		                           bearer);
		return;
	}
	http_request_note_auth(req, auth_or_null);
	if (req->route->auth == HTTP_ADMIN && !auth_or_null->admin) {
		http_reply_error(req, 403, "auth", "this needs an org admin", NULL, NULL);
		return;
	}
	req->auth = *auth_or_null;
	req->has_auth = true;
	/* Ours again until the handler has it: a connection closed meanwhile frees it. */
	http_req_unlink_pending(req);
	req->in_app = false;
	struct http_conn *conn = req->conn;
	http_conn_watch_stop(conn);
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

/* Whether `name` is in the route's comma-separated list ("*": any). */
static bool query_allowed(const char *list, const char *name)
{
	if (list == NULL)
		return false;
	if (strcmp(list, "*") == 0)
		return true;
	size_t n = strlen(name);
	for (const char *p = list; *p != '\0';) {
		size_t len = strcspn(p, ",");
		if (len == n && strncmp(p, name, n) == 0)
			return true;
		p += len;
		if (*p == ',')
			p++;
	}
	return false;
}

/* Client text fit to echo in an error: printable ASCII only (a name is shown, never guessed). */
static bool ascii_printable(const char *text)
{
	for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++)
		if (*p < 0x20 || *p >= 0x7f)
			return false;
	return true;
}

/* application/x-www-form-urlencoded pairs; a repeated name is refused rather than guessed.
 * On -1, *code_r is the error's machine code and `name` (when not "") the parameter. */
static int parse_query(struct http_request *req, const char *query, const char **why_r,
                       const char **code_r, char *name_r, size_t name_size)
{
	*code_r = "malformed_query";
	name_r[0] = '\0';
	for (const char *s = query; s != NULL && *s != '\0';) {
		size_t len = strcspn(s, "&");
		if (len > 0) {
			const char *eq = memchr(s, '=', len);
			size_t nlen = eq != NULL ? (size_t)(eq - s) : len;
			if (req->query_count == MT_HTTP_QUERY_PARAMS_MAX) {
				*why_r = "too many query parameters";
				*code_r = "too_many_parameters";
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
				snprintf(name_r, name_size, "%.64s", name);
				free(name);
				free(value);
				*why_r = "repeated query parameter";
				*code_r = "repeated_parameter";
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
		http_reply_error_retry(req, 503, "internal", "out of memory", 1);
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
			http_req_reply_error_extra(req, 405, "input", "method not allowed", NULL,
			                           NULL, extra);
		} else {
			http_reply_error(req, 404, "input", "no such endpoint", NULL, NULL);
		}
		return false;
	}
	const char *why = NULL, *code = NULL;
	char name[80];
	if (target[plen] == '?' &&
	    parse_query(req, target + plen + 1, &why, &code, name, sizeof(name)) < 0) {
		char message[160];
		if (name[0] != '\0' && ascii_printable(name))
			snprintf(message, sizeof(message), "%s '%s'", why, name);
		else
			snprintf(message, sizeof(message), "%s", why);
		http_reply_error_at(req, 400, "input", code,
		                    name[0] != '\0' && ascii_printable(name) ? name : NULL,
		                    message);
		return false;
	}
	for (size_t i = 0; i < req->query_count; i++) {
		if (query_allowed(req->route->query, req->query[i].name))
			continue;
		const char *q = req->query[i].name;
		char message[160];
		bool show = strlen(q) <= 64 && ascii_printable(q);
		snprintf(message, sizeof(message), "unknown query parameter%s%s%s",
		         show ? " '" : "", show ? q : "", show ? "'" : "");
		http_reply_error_at(req, 400, "input", "unknown_parameter", show ? q : NULL,
		                    message);
		return false;
	}
	return true;
}

/* The head is in: everything is decided from it before any of the body is read. */
void http_req_on_head(struct http_conn *conn, struct http_request *req)
{
	struct http_server *server = conn->server;
	req->method = req->head->method;
	req->head_only = strcmp(req->method, "HEAD") == 0;
	const char *client_id = http_request_header(req, "X-Request-Id");
	if (request_id_usable(client_id))
		mt_strlcpy(req->request_id, client_id, sizeof(req->request_id));
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
		http_req_reply_error_extra(req, 401, "auth", "missing or malformed bearer token",
		                           NULL, NULL, bearer);
		return;
	}
	req->token = strndup(token, strcspn(token, " "));
	if (req->token == NULL) {
		http_reply_error_retry(req, 503, "internal", "out of memory", 1);
		return;
	}
	conn->waiting_since_ms = mt_now_ms();
	http_conn_set_state(conn, CONN_AUTH);
	hand_to_app(req);
	req->busy++;
	server->authenticate(req, req->token, server->app);
	release(req);
}

void http_req_parse_failed(struct http_request *req, const char *why)
{
	int status = http_request_parser_status(&req->parser);
	if (status == 413)
		http_reply_errorf(req, 413, "input", "request body larger than %zu bytes",
		                  body_cap(req));
	else
		http_reply_error(req, status, status == 503 ? "internal" : "input", why, NULL,
		                 NULL);
}

/* ---- streamed bodies ---------------------------------------------------------------------- */

void http_request_stream_body(struct http_request *req, http_stream_fn *fn, void *ctx)
{
	req->stream_fn = fn;
	req->stream_ctx = ctx;
}

/* One event to the handler's reader, with the request kept alive across the call. */
static void stream_deliver(struct http_request *req, const struct http_stream_item *item)
{
	if (req->replied || req->stream_over || req->stream_fn == NULL)
		return;
	if (item->event != HTTP_STREAM_DATA)
		req->stream_over = true;
	req->busy++;
	req->stream_fn(req->stream_ctx, item);
	release(req);
}

/* Reading stops: the handler has the request until it answers. */
static void stream_wait_reply(struct http_request *req)
{
	if (req->conn != NULL && req->conn->req == req)
		http_conn_set_state(req->conn, CONN_HANDLER);
}

void http_req_stream_feed(struct http_conn *conn, struct http_request *req)
{
	struct evbuffer *in = bufferevent_get_input(conn->bev);
	struct evbuffer_iovec vec;
	size_t consumed = 0;
	const char *why = NULL;
	evbuffer_peek(in, -1, NULL, &vec, 1);
	mt_buf_reset(&req->body);
	int ret = http_request_parse_body(&req->parser, vec.iov_base, vec.iov_len, &consumed,
	                                  &req->body, &why);
	int status = ret < 0 ? http_request_parser_status(&req->parser) : 0;
	evbuffer_drain(in, ret < 0 ? vec.iov_len : consumed);
	req->busy++;
	if (req->body.len > 0) {
		req->stream_bytes += req->body.len;
		if (req->stream_bytes > body_cap(req)) { /* a chunked body past the cap */
			ret = -1;
			status = 413;
			why = "request body larger than allowed";
		} else {
			struct http_stream_item item = {.event = HTTP_STREAM_DATA,
			                                .data = req->body.data,
			                                .len = req->body.len};
			stream_deliver(req, &item);
		}
	}
	if (ret == 1) {
		req->body_state = BODY_DONE;
		stream_wait_reply(req);
		struct http_stream_item item = {.event = HTTP_STREAM_END};
		stream_deliver(req, &item);
	} else if (ret < 0) {
		stream_wait_reply(req);
		char message[160];
		if (status == 413)
			snprintf(message, sizeof(message), "request body larger than %zu bytes",
			         body_cap(req));
		else
			snprintf(message, sizeof(message), "%s",
			         why != NULL ? why : "malformed body");
		struct http_stream_item item = {
		    .event = HTTP_STREAM_FAILED, .status = status, .why = message};
		stream_deliver(req, &item);
	}
	release(req);
}

void http_req_stream_stop(struct http_request *req, int status, const char *why)
{
	if (status != 0)
		stream_wait_reply(req);
	struct http_stream_item item = {.event =
	                                    status != 0 ? HTTP_STREAM_FAILED : HTTP_STREAM_GONE,
	                                .status = status,
	                                .why = why};
	stream_deliver(req, &item);
}

void http_request_stream_pause(struct http_request *req)
{
	if (req->stream_paused)
		return;
	req->stream_paused = true;
	req->paused_since_ms = mt_now_ms();
	struct http_conn *conn = req->conn;
	if (conn != NULL && conn->req == req && conn->state == CONN_BODY)
		http_conn_set_state(conn, CONN_HANDLER);
}

void http_request_stream_resume(struct http_request *req)
{
	if (!req->stream_paused)
		return;
	req->stream_paused = false;
	struct http_conn *conn = req->conn;
	if (conn == NULL || conn->req != req || req->replied || req->stream_over ||
	    req->body_state != BODY_READING || conn->state != CONN_HANDLER)
		return;
	/* the time paused was ours, not the client's */
	conn->request_deadline_ms += mt_now_ms() - req->paused_since_ms;
	http_conn_watch_stop(conn);
	http_conn_set_state(conn, CONN_BODY);
	http_conn_kick(conn);
}
