/* The replies of the HTTP server (see http/server.h): http_req_finish(), the one place a
 * request is answered (logged, counted, written on its connection or dropped when the client
 * has gone), and the http_reply_* functions built on it with the API's error body. How a
 * request reaches its reply is server_request.c's; the connection that writes it, server.c's;
 * what the three share is in server_internal.h. */
#include "http/server_internal.h"

#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/str.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REQUESTS_METRIC "mailtrail_http_requests_total"
#define REQUESTS_HELP   "HTTP requests answered, by route and status."
#define DROPPED_METRIC  "mailtrail_http_replies_dropped_total"
#define DROPPED_HELP    "Replies not sent because the client had gone away, by route."

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

/* ---- replies ------------------------------------------------------------------------------ */

static void log_and_count(struct http_request *req, int status, bool dropped)
{
	char code[16], ms[24];
	snprintf(code, sizeof(code), "%d", status);
	snprintf(ms, sizeof(ms), "%lld", (long long)(mt_now_ms() - req->start_ms));
	/* Never the path (it can carry an unsubscribe token), the query or any header. */
	/* An API key's request says which key acted for which user (ids only, never a secret). */
	bool key = req->log_key_id[0] != '\0';
	mt_log(MT_LOG_INFO, "http.request", MT_KV("method", req->method),
	       MT_KV("route", req->route_name), MT_KV("status", code), MT_KV("ms", ms),
	       MT_KV("request_id", req->request_id), MT_KV(key ? "key" : NULL, req->log_key_id),
	       MT_KV(key ? "as_user" : NULL, req->log_user_id[0] != '\0' ? req->log_user_id : "-"),
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
	/* Written straight to the socket when nothing else is queued: through the bufferevent,
	 * every reply armed and disarmed the socket's write event (two epoll_ctl) and waited a
	 * loop turn. What the socket does not take goes the bufferevent's way. */
	struct evbuffer *queued = bufferevent_get_output(conn->bev);
	bool direct = evbuffer_get_length(queued) == 0 && !conn->peer_closed;
	struct evbuffer *out = direct ? conn->reply_buf : queued;
	char date[MT_DATE_TEXT_MAX];
	mt_date_format(mt_wall_s(), "GMT", date); /* RFC 9110 §5.6.7 IMF-fixdate */
	evbuffer_add_printf(out,
	                    "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\n"
	                    "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
	                    "X-Request-Id: %s\r\n",
	                    status, reason_phrase(status), date,
	                    content_type != NULL ? content_type : "application/json; charset=utf-8",
	                    req->request_id);
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
	http_conn_set_state(conn, CONN_WRITING);
	if (!direct)
		return;
	/* A failed write (EAGAIN, or a reset the bufferevent then reports) leaves it all queued. */
	(void)evbuffer_write(out, conn->fd);
	if (evbuffer_get_length(out) > 0) {
		evbuffer_add_buffer(queued, out);
		return;
	}
	http_conn_written(conn);
}

/* The one place a request is answered. `extra` is a NULL-terminated name/value list. */
void http_req_finish(struct http_request *req, int status, const char *content_type,
                     const char *data, size_t len, const char *const *extra)
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
		http_conn_watch_stop(conn);
		conn_reply(conn, req, status, content_type, data, len, extra);
		conn->req = NULL;
	}
	req->conn = NULL;
	http_req_unlink_pending(req);
	if (req->busy == 0)
		http_req_free(req);
}

void http_reply_text(struct http_request *req, int status, const char *content_type,
                     const char *text, size_t len)
{
	http_req_finish(req, status, content_type, text, len, NULL);
}

void http_reply_empty(struct http_request *req, int status)
{
	http_req_finish(req, status, NULL, NULL, 0, NULL);
}

static void reply_json_extra(struct http_request *req, int status, json_t *body,
                             const char *const *extra)
{
	char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (text == NULL) {
		static const char internal[] = "{\"error\":{\"class\":\"internal\",\"message\":"
		                               "\"reply could not be encoded\"}}";
		http_req_finish(req, 500, NULL, internal, sizeof(internal) - 1, NULL);
		return;
	}
	http_req_finish(req, status, NULL, text, strlen(text), extra);
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

/* The machine code of an error no handler named more precisely: one per status. */
static const char *status_code_name(int status)
{
	switch (status) {
	case 400:
		return "invalid_request";
	case 401:
		return "unauthorized";
	case 403:
		return "forbidden";
	case 404:
		return "not_found";
	case 405:
		return "method_not_allowed";
	case 408:
		return "request_timeout";
	case 409:
		return "conflict";
	case 411:
		return "length_required";
	case 413:
		return "too_large";
	case 415:
		return "unsupported_media_type";
	case 422:
		return "check_failed";
	case 429:
		return "rate_limited";
	case 431:
		return "headers_too_large";
	case 501:
		return "not_implemented";
	case 503:
		return "unavailable";
	default:
		return status >= 500 ? "internal" : "invalid_request";
	}
}

struct error_detail {
	const char *code;  /* NULL: the status's */
	const char *field; /* NULL: none (JSON null) */
	const char *smtp_reply;
	const char *fingerprint;
};

static void reply_error_detail(struct http_request *req, int status, const char *cls,
                               const char *message, const struct error_detail *d,
                               const char *const *extra)
{
	json_t *error = json_object();
	json_object_set_new(error, "class", utf8_string(cls != NULL ? cls : "internal"));
	json_object_set_new(error, "code",
	                    utf8_string(d->code != NULL && d->code[0] != '\0'
	                                    ? d->code
	                                    : status_code_name(status)));
	json_object_set_new(error, "message", utf8_string(message != NULL ? message : ""));
	json_object_set_new(error, "field",
	                    d->field != NULL && d->field[0] != '\0' ? utf8_string(d->field)
	                                                            : json_null());
	if (d->smtp_reply != NULL)
		json_object_set_new(error, "smtp_reply", utf8_string(d->smtp_reply));
	if (d->fingerprint != NULL)
		json_object_set_new(error, "fingerprint", utf8_string(d->fingerprint));
	json_t *body = json_object();
	json_object_set_new(body, "error", error);
	reply_json_extra(req, status, body, extra);
}

void http_req_reply_error_extra(struct http_request *req, int status, const char *cls,
                                const char *message, const char *smtp_reply,
                                const char *fingerprint, const char *const *extra)
{
	struct error_detail d = {.smtp_reply = smtp_reply, .fingerprint = fingerprint};
	reply_error_detail(req, status, cls, message, &d, extra);
}

void http_reply_error_at(struct http_request *req, int status, const char *cls, const char *code,
                         const char *field, const char *message)
{
	struct error_detail d = {.code = code, .field = field};
	reply_error_detail(req, status, cls, message, &d, NULL);
}

void http_reply_error_check(struct http_request *req, int status, const char *cls, const char *code,
                            const char *field, const char *message, const char *smtp_reply,
                            const char *fingerprint)
{
	struct error_detail d = {
	    .code = code, .field = field, .smtp_reply = smtp_reply, .fingerprint = fingerprint};
	reply_error_detail(req, status, cls, message, &d, NULL);
}

void http_reply_error(struct http_request *req, int status, const char *cls, const char *message,
                      const char *smtp_reply, const char *fingerprint)
{
	http_req_reply_error_extra(req, status, cls, message, smtp_reply, fingerprint, NULL);
}

void http_reply_errorf(struct http_request *req, int status, const char *cls, const char *fmt, ...)
{
	char message[MT_ERROR_TEXT_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	http_req_reply_error_extra(req, status, cls, message, NULL, NULL, NULL);
}

void http_reply_error_retry(struct http_request *req, int status, const char *cls,
                            const char *message, unsigned retry_after_s)
{
	char seconds[16];
	snprintf(seconds, sizeof(seconds), "%u", retry_after_s);
	const char *const extra[] = {"Retry-After", seconds, NULL};
	http_req_reply_error_extra(req, status, cls, message, NULL, NULL, extra);
}

void http_request_abandon(struct http_request *req)
{
	if (req->gone || req->conn == NULL)
		http_req_finish(req, 500, NULL, NULL, 0, NULL);
	else
		http_reply_error(req, 500, "internal", "the request was abandoned", NULL, NULL);
}
