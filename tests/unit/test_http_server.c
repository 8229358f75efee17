#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "http/server.h"
#include "lib/limits.h"
#include "lib/metrics.h"
#include "proto/json_decode.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

/* The server runs its loop in a thread of its own; the tests talk to it over blocking sockets
 * from the main thread, byte for byte as a client would. */

static struct event_base *base;
static struct http_server *server;
static pthread_t loop_thread;
static uint16_t port;

static atomic_int slow_replied;  /* async replies made by the slow route */
static atomic_int slow_saw_gone; /* ... of which after the client had gone */
static atomic_int auth_calls;

/* ---- routes ------------------------------------------------------------------------------ */

static void h_health(struct http_request *req, void *app)
{
	(void)app;
	assert_null(http_request_auth(req));
	http_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

static void h_item_get(struct http_request *req, void *app)
{
	(void)app;
	const struct http_auth *auth = http_request_auth(req);
	const char *q = http_request_query(req, "q");
	http_reply_json(req, 200,
	                json_pack("{s:s,s:s?,s:s,s:b,s:s}", "id", http_request_param(req, "id"),
	                          "q", q, "user", auth->user_id, "admin", auth->admin, "method",
	                          http_request_method(req)));
}

static void h_item_delete(struct http_request *req, void *app)
{
	(void)app;
	http_reply_empty(req, 204);
}

static void h_item_create(struct http_request *req, void *app)
{
	(void)app;
	size_t len;
	const char *body = http_request_body(req, &len);
	char error[MT_JSON_ERROR_MAX];
	json_t *j = json_decode_body(body, len, error, sizeof(error));
	if (j == NULL) {
		http_reply_error(req, 400, "input", error, NULL, NULL);
		return;
	}
	const char *name = NULL;
	const struct json_field fields[] = {
	    {.name = "name", .type = JSON_FIELD_STRING, .required = true, .out = &name}};
	if (json_decode_fields(j, fields, 1, error, sizeof(error)) < 0) {
		json_decref(j);
		http_reply_error(req, 400, "input", error, NULL, NULL);
		return;
	}
	http_reply_json(req, 201,
	                json_pack("{s:s,s:s?}", "name", name, "ctype",
	                          http_request_header(req, "content-type")));
	json_decref(j);
}

static void h_admin(struct http_request *req, void *app)
{
	(void)app;
	assert_true(http_request_auth(req)->admin);
	http_reply_json(req, 200, json_pack("{s:s}", "org", http_request_auth(req)->org_id));
}

static void slow_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct http_request *req = arg;
	assert_int_equal(*(int *)http_request_get_data(req), 42);
	free(http_request_get_data(req));
	if (http_request_gone(req))
		atomic_fetch_add(&slow_saw_gone, 1);
	/* A reply even when gone: that is what frees the request. */
	http_reply_json(req, 200, json_pack("{s:s}", "slow", "done"));
	atomic_fetch_add(&slow_replied, 1);
}

static void h_slow(struct http_request *req, void *app)
{
	(void)app;
	int *data = malloc(sizeof(*data));
	*data = 42;
	http_request_set_data(req, data);
	const char *ms = http_request_query(req, "ms");
	struct timeval tv = {0, (ms != NULL ? atoi(ms) : 100) * 1000};
	event_base_once(base, -1, EV_TIMEOUT, slow_done, req, &tv);
}

static void h_twice(struct http_request *req, void *app)
{
	(void)app;
	http_reply_text(req, 200, "text/plain; charset=utf-8", "first\n", 6);
	http_reply_error(req, 500, "internal", "second", NULL, NULL); /* ignored, logged */
}

static void h_error(struct http_request *req, void *app)
{
	(void)app;
	http_reply_error(req, 422, "auth", "535 5.7.8 bad \xff credentials", "535 5.7.8 \xc3\x28",
	                 "sha256:ab");
}

static void h_errorf(struct http_request *req, void *app)
{
	(void)app;
	http_reply_errorf(req, 409, "input", "port %d in use by %s", 25, "x");
}

static void h_abandon(struct http_request *req, void *app)
{
	(void)app;
	http_request_abandon(req);
}

static void h_big(struct http_request *req, void *app)
{
	(void)app;
	size_t len;
	http_request_body(req, &len);
	http_reply_json(req, 200, json_pack("{s:I}", "len", (json_int_t)len));
}

/* A reply larger than loopback's socket buffers take at once (~10 MB at most): part of it waits
 * in the bufferevent. */
#define BIG_REPLY_BYTES (32u << 20)

static void h_big_reply(struct http_request *req, void *app)
{
	(void)app;
	char *text = malloc(BIG_REPLY_BYTES);
	assert_non_null(text);
	memset(text, 'x', BIG_REPLY_BYTES);
	http_reply_text(req, 200, "text/plain", text, BIG_REPLY_BYTES);
	free(text);
}

static void h_busy(struct http_request *req, void *app)
{
	(void)app;
	http_reply_error_retry(req, 503, "internal", "the store is busy; try again", 1);
}

static void h_stop(struct http_request *req, void *app)
{
	(void)app;
	http_reply_empty(req, 204);
	/* Later, so the reply is written first. */
	struct timeval tv = {0, 100000};
	event_base_loopexit(base, &tv);
}

static const struct http_route routes[] = {
    {"GET", "/healthz", HTTP_PUBLIC, h_health, "health", 0, NULL, false},
    {"GET", "/v1/items/{id}", HTTP_USER, h_item_get, "items.get", 0, "q,other,flag", false},
    {"DELETE", "/v1/items/{id}", HTTP_USER, h_item_delete, "items.delete", 0, NULL, false},
    {"POST", "/v1/items", HTTP_USER, h_item_create, "items.create", 64, NULL, false},
    {"PUT", "/v1/admin", HTTP_ADMIN, h_admin, "admin.put", 0, NULL, false},
    {"GET", "/v1/slow", HTTP_USER, h_slow, "slow", 0, "ms", false},
    {"GET", "/twice", HTTP_PUBLIC, h_twice, "twice", 0, NULL, false},
    {"GET", "/error", HTTP_PUBLIC, h_error, "error", 0, NULL, false},
    {"GET", "/errorf", HTTP_PUBLIC, h_errorf, "errorf", 0, NULL, false},
    {"GET", "/abandon", HTTP_PUBLIC, h_abandon, "abandon", 0, NULL, false},
    {"POST", "/big", HTTP_PUBLIC, h_big, "big", 2 * MT_HTTP_BODY_MAX, NULL, false},
    {"GET", "/u/{a}/x/{b}", HTTP_PUBLIC, h_health, "two", 0, NULL, false},
    {"POST", "/test/stop", HTTP_PUBLIC, h_stop, "stop", 0, NULL, false},
    /* Routes that need auth: one at the default cap, one with a larger cap of its own. */
    {"POST", "/v1/notes", HTTP_USER, h_big, "notes", 0, NULL, false},
    {"POST", "/v1/upload", HTTP_USER, h_big, "upload", 4 * MT_HTTP_BODY_MAX, NULL, false},
    {"GET", "/busy", HTTP_PUBLIC, h_busy, "busy", 0, NULL, false},
    {"GET", "/bigreply", HTTP_PUBLIC, h_big_reply, "bigreply", 0, NULL, false},
};

/* Accepts "good" and "admin", one loop iteration later, like a store job would. */
struct auth_job {
	struct http_request *req;
	char token[64];
};

static void auth_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct auth_job *job = arg;
	struct http_auth auth = {.org_id = "org_1", .user_id = "usr_1", .token_id = "tok_1"};
	if (strcmp(job->token, "admin") == 0)
		auth.admin = true;
	bool ok = strcmp(job->token, "good") == 0 || strcmp(job->token, "admin") == 0 ||
	          strcmp(job->token, "slowgood") == 0;
	http_request_authenticated(job->req, ok ? &auth : NULL);
	free(job);
}

static void authenticate(struct http_request *req, const char *token, void *app)
{
	assert_ptr_equal(app, &port);
	atomic_fetch_add(&auth_calls, 1);
	/* The hook may also answer at once, either way. */
	if (strcmp(token, "busy") == 0) {
		http_reply_error(req, 503, "internal", "the store is busy", NULL, NULL);
		return;
	}
	if (strcmp(token, "sync") == 0) {
		struct http_auth auth = {
		    .org_id = "org_2", .user_id = "usr_2", .token_id = "tok_2"};
		http_request_authenticated(req, &auth);
		return;
	}
	struct auth_job *job = calloc(1, sizeof(*job));
	job->req = req;
	snprintf(job->token, sizeof(job->token), "%s", token);
	/* "slow..." tokens take as long as a store under load might */
	struct timeval when = {0, strncmp(token, "slow", 4) == 0 ? 300000 : 0};
	event_base_once(base, -1, EV_TIMEOUT, auth_done, job, &when);
}

/* ---- client ------------------------------------------------------------------------------ */

static void *run_loop(void *arg)
{
	(void)arg;
	event_base_dispatch(base);
	return NULL;
}

static int start(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	const char *error = NULL;
	server = http_server_new(base, "127.0.0.1:0", routes, sizeof(routes) / sizeof(routes[0]),
	                         authenticate, &port, NULL, &error);
	if (server == NULL)
		fail_msg("http_server_new: %s", error);
	port = http_server_port(server);
	assert_true(port > 0);
	pthread_create(&loop_thread, NULL, run_loop, NULL);
	return 0;
}

static int connect_server(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct timeval tv = {5, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

static void send_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n <= 0)
			return; /* the server may close early (413) */
		data += n;
		len -= (size_t)n;
	}
}

struct response {
	int status;
	char head[4096];
	char *body;
	size_t body_len;
};

static void response_free(struct response *r)
{
	free(r->body);
	r->body = NULL;
}

static const char *response_header(struct response *r, const char *name)
{
	static char value[512];
	size_t nlen = strlen(name);
	for (const char *line = strstr(r->head, "\r\n"); line != NULL;
	     line = strstr(line + 2, "\r\n")) {
		const char *l = line + 2;
		if (strncasecmp(l, name, nlen) == 0 && l[nlen] == ':') {
			const char *v = l + nlen + 1;
			while (*v == ' ')
				v++;
			size_t vlen = strcspn(v, "\r\n");
			snprintf(value, sizeof(value), "%.*s", (int)vlen, v);
			return value;
		}
	}
	return NULL;
}

/* Reads one response: the head, then Content-Length bytes (or to EOF without one). */
static void read_response(int fd, struct response *r)
{
	memset(r, 0, sizeof(*r));
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	char *end = NULL;
	for (;;) {
		if (len == cap) {
			/* `end` points into the buffer: it moves with it */
			size_t end_off = end != NULL ? (size_t)(end - buf) : 0;
			cap *= 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
			if (end != NULL)
				end = buf + end_off;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		if (end == NULL && (end = memmem(buf, len, "\r\n\r\n", 4)) != NULL) {
			size_t hlen = (size_t)(end - buf);
			assert_true(hlen < sizeof(r->head));
			memcpy(r->head, buf, hlen);
			r->head[hlen] = '\0';
			const char *cl = response_header(r, "Content-Length");
			if (cl != NULL && len >= hlen + 4 + (size_t)atol(cl))
				break;
		} else if (end != NULL) {
			const char *cl = response_header(r, "Content-Length");
			if (cl != NULL && len >= (size_t)(end - buf) + 4 + (size_t)atol(cl))
				break;
		}
	}
	assert_non_null(end);
	sscanf(r->head, "HTTP/1.%*d %d", &r->status);
	size_t off = (size_t)(end - buf) + 4;
	r->body_len = len - off;
	r->body = malloc(r->body_len + 1);
	memcpy(r->body, buf + off, r->body_len);
	r->body[r->body_len] = '\0';
	free(buf);
}

static void request(struct response *r, const char *method, const char *path, const char *auth,
                    const char *body, const char *extra)
{
	int fd = connect_server();
	char head[2048];
	size_t blen = body != NULL ? strlen(body) : 0;
	int n =
	    snprintf(head, sizeof(head),
	             "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s%s%s"
	             "Content-Length: %zu\r\n%s\r\n",
	             method, path, auth != NULL ? "Authorization: " : "", auth != NULL ? auth : "",
	             auth != NULL ? "\r\n" : "", blen, extra != NULL ? extra : "");
	send_all(fd, head, (size_t)n);
	if (blen > 0)
		send_all(fd, body, blen);
	read_response(fd, r);
	close(fd);
}

static json_t *error_of(struct response *r, const char *cls)
{
	json_t *j = json_loads(r->body, 0, NULL);
	assert_non_null(j);
	json_t *e = json_object_get(j, "error");
	assert_non_null(e);
	assert_string_equal(json_string_value(json_object_get(e, "class")), cls);
	assert_non_null(json_string_value(json_object_get(e, "message")));
	return j;
}

static void expect_error(const char *method, const char *path, const char *auth, const char *body,
                         int status, const char *cls)
{
	struct response r;
	request(&r, method, path, auth, body, NULL);
	if (r.status != status)
		fail_msg("%s %s: got %d, want %d: %s", method, path, r.status, status, r.body);
	json_decref(error_of(&r, cls));
	assert_string_equal(response_header(&r, "Content-Type"), "application/json; charset=utf-8");
	assert_string_equal(response_header(&r, "Cache-Control"), "no-store");
	response_free(&r);
}

/* An error's machine code and field (NULL: JSON null). */
static void expect_code(const char *method, const char *path, const char *auth, int status,
                        const char *code, const char *field)
{
	struct response r;
	request(&r, method, path, auth, NULL, NULL);
	if (r.status != status)
		fail_msg("%s %s: got %d, want %d: %s", method, path, r.status, status, r.body);
	json_t *j = error_of(&r, "input");
	json_t *e = json_object_get(j, "error");
	const char *got = json_string_value(json_object_get(e, "code"));
	json_t *f = json_object_get(e, "field");
	const char *got_field = json_string_value(f);
	if (got == NULL || strcmp(got, code) != 0 ||
	    (field == NULL ? !json_is_null(f) : got_field == NULL || strcmp(got_field, field) != 0))
		fail_msg("%s %s: want code %s field %s: %s", method, path, code,
		         field != NULL ? field : "null", r.body);
	json_decref(j);
	response_free(&r);
}

static double requests_counted(const char *route, const char *status)
{
	const struct mt_metric_label l[] = {{"route", route}, {"status", status}};
	return mt_metric_get("mailtrail_http_requests_total", l, 2);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void public_route(void **state)
{
	(void)state;
	double before = requests_counted("health", "200");
	struct response r;
	request(&r, "GET", "/healthz", NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "{\"ok\":true}");
	assert_string_equal(response_header(&r, "Content-Type"), "application/json; charset=utf-8");
	assert_string_equal(response_header(&r, "Cache-Control"), "no-store");
	response_free(&r);
	assert_true(requests_counted("health", "200") == before + 1);
}

/* Every reply carries an X-Request-Id: the client's when it is usable, else a fresh one. */
static void request_ids(void **state)
{
	(void)state;
	struct response r;
	request(&r, "GET", "/healthz", NULL, NULL, "X-Request-Id: crm-7f3a:42/b=c\r\n");
	assert_int_equal(r.status, 200);
	assert_string_equal(response_header(&r, "X-Request-Id"), "crm-7f3a:42/b=c");
	response_free(&r);
	char made[2][64];
	for (int i = 0; i < 2; i++) {
		request(&r, "GET", "/healthz", NULL, NULL, NULL);
		const char *id = response_header(&r, "X-Request-Id");
		assert_non_null(id);
		assert_int_equal(strlen(id), 20);
		assert_memory_equal(id, "req_", 4);
		assert_int_equal(strspn(id + 4, "0123456789abcdef"), 16);
		snprintf(made[i], sizeof(made[i]), "%s", id);
		response_free(&r);
	}
	assert_string_not_equal(made[0], made[1]);
	/* odd ones are replaced, never echoed: a quote, a semicolon, too long */
	char longer[MT_HTTP_REQUEST_ID_MAX + 40];
	memset(longer, 'a', MT_HTTP_REQUEST_ID_MAX + 1);
	longer[MT_HTTP_REQUEST_ID_MAX + 1] = '\0';
	const char *odd[] = {"a\"b", "id;x", longer};
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		char extra[MT_HTTP_REQUEST_ID_MAX + 64];
		snprintf(extra, sizeof(extra), "X-Request-Id: %s\r\n", odd[i]);
		request(&r, "GET", "/healthz", NULL, NULL, extra);
		assert_int_equal(r.status, 200);
		assert_memory_equal(response_header(&r, "X-Request-Id"), "req_", 4);
		response_free(&r);
	}
	/* an error reply carries one too */
	request(&r, "GET", "/nowhere", NULL, NULL, "X-Request-Id: err-1\r\n");
	assert_int_equal(r.status, 404);
	assert_string_equal(response_header(&r, "X-Request-Id"), "err-1");
	response_free(&r);
}

static void path_and_query(void **state)
{
	(void)state;
	struct response r;
	request(&r, "GET", "/v1/items/a%20b%2Fc%C3%A9?q=x%26y+z&other=1&flag", "Bearer good", NULL,
	        NULL);
	assert_int_equal(r.status, 200);
	json_t *j = json_loads(r.body, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "id")), "a b/c\xc3\xa9");
	assert_string_equal(json_string_value(json_object_get(j, "q")), "x&y z");
	assert_string_equal(json_string_value(json_object_get(j, "user")), "usr_1");
	assert_string_equal(json_string_value(json_object_get(j, "method")), "GET");
	assert_true(json_is_false(json_object_get(j, "admin")));
	json_decref(j);
	response_free(&r);

	request(&r, "GET", "/u/one/x/two", NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	response_free(&r);

	expect_error("GET", "/v1/items/%zz", "Bearer good", NULL, 400, "input");
	expect_error("GET", "/v1/items/a%00b", "Bearer good", NULL, 400, "input");
	expect_error("GET", "/v1/items/a%2", "Bearer good", NULL, 400, "input");
	expect_error("GET", "/v1/items/1?q=a&q=b", "Bearer good", NULL, 400, "input");
	expect_error("GET", "/v1/items/1?q=%", "Bearer good", NULL, 400, "input");
	char many[1024] = "/v1/items/1?";
	for (int i = 0; i <= MT_HTTP_QUERY_PARAMS_MAX; i++)
		sprintf(many + strlen(many), "p%d=1&", i);
	expect_error("GET", many, "Bearer good", NULL, 400, "input");
	/* Codes and fields: the parameter at fault is named; a route takes only its own. */
	expect_code("GET", "/v1/items/1?q=a&q=b", "Bearer good", 400, "repeated_parameter", "q");
	expect_code("GET", "/v1/items/1?q=a&limt=5", "Bearer good", 400, "unknown_parameter",
	            "limt");
	expect_code("GET", "/v1/items/1?q=%00", "Bearer good", 400, "malformed_query", NULL);
	expect_code("GET", many, "Bearer good", 400, "too_many_parameters", NULL);
	expect_code("GET", "/healthz?verbose=1", NULL, 400, "unknown_parameter", "verbose");
	expect_code("GET", "/v1/items/1?%01=1", "Bearer good", 400, "unknown_parameter", NULL);
	expect_code("GET", "/nope", NULL, 404, "not_found", NULL);
	expect_code("GET", "/v1/items", NULL, 405, "method_not_allowed", NULL);
}

static void not_found_and_method(void **state)
{
	(void)state;
	double before = requests_counted("unmatched", "404");
	expect_error("GET", "/nope", NULL, NULL, 404, "input");
	expect_error("GET", "/v1/items", NULL, NULL, 405, "input");
	expect_error("GET", "/v1/items/", NULL, NULL, 404, "input"); /* {id} is never empty */
	expect_error("GET", "/v1/items/1/", NULL, NULL, 404, "input");
	expect_error("GET", "/v1//items", NULL, NULL, 404, "input");
	expect_error("GET", "/healthz/", NULL, NULL, 404, "input");
	assert_true(requests_counted("unmatched", "404") == before + 5);
	assert_true(requests_counted("unmatched", "405") >= 1);

	struct response r;
	request(&r, "PATCH", "/v1/items/1", "Bearer good", NULL, NULL);
	assert_int_equal(r.status, 405);
	assert_string_equal(response_header(&r, "Allow"), "GET, DELETE");
	response_free(&r);
}

static void authentication(void **state)
{
	(void)state;
	int calls = atomic_load(&auth_calls);
	expect_error("GET", "/v1/items/1", NULL, NULL, 401, "auth");
	expect_error("GET", "/v1/items/1", "Basic Z29vZA==", NULL, 401, "auth");
	expect_error("GET", "/v1/items/1", "Bearer", NULL, 401, "auth");
	expect_error("GET", "/v1/items/1", "Bearer ", NULL, 401, "auth");
	assert_int_equal(atomic_load(&auth_calls), calls); /* refused before the hook */
	expect_error("GET", "/v1/items/1", "Bearer bad", NULL, 401, "auth");
	assert_int_equal(atomic_load(&auth_calls), calls + 1);

	struct response r;
	request(&r, "GET", "/v1/items/1", "Bearer bad", NULL, NULL);
	assert_string_equal(response_header(&r, "WWW-Authenticate"), "Bearer");
	response_free(&r);

	request(&r, "GET", "/v1/items/1", "bearer  good ", NULL, NULL);
	assert_int_equal(r.status, 200);
	response_free(&r);

	expect_error("GET", "/v1/items/1", "Bearer busy", NULL, 503, "internal");
	request(&r, "GET", "/v1/items/1", "Bearer sync", NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"user\":\"usr_2\""));
	response_free(&r);
	expect_error("PUT", "/v1/admin", "Bearer sync", NULL, 403, "auth");

	expect_error("PUT", "/v1/admin", "Bearer good", NULL, 403, "auth");
	request(&r, "PUT", "/v1/admin", "Bearer admin", NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "{\"org\":\"org_1\"}");
	response_free(&r);

	request(&r, "DELETE", "/v1/items/7", "Bearer good", NULL, NULL);
	assert_int_equal(r.status, 204);
	assert_int_equal(r.body_len, 0);
	response_free(&r);
	assert_true(requests_counted("items.delete", "204") >= 1);
	assert_true(requests_counted("admin.put", "403") >= 1);
}

static void bodies(void **state)
{
	(void)state;
	struct response r;
	request(&r, "POST", "/v1/items", "Bearer good", "{\"name\":\"x\"}",
	        "Content-Type: application/json\r\n");
	assert_int_equal(r.status, 201);
	assert_string_equal(r.body, "{\"name\":\"x\",\"ctype\":\"application/json\"}");
	response_free(&r);

	expect_error("POST", "/v1/items", "Bearer good", "{\"name\":\"x\",\"name\":\"y\"}", 400,
	             "input");
	expect_error("POST", "/v1/items", "Bearer good", "{\"nom\":\"x\"}", 400, "input");
	/* Over the route's cap (64) but under the server's: our JSON 413. */
	char big[200];
	snprintf(big, sizeof(big), "{\"name\":\"%0150d\"}", 0);
	expect_error("POST", "/v1/items", "Bearer good", big, 413, "input");
	assert_true(requests_counted("items.create", "413") >= 1);

	/* A route's own cap, here larger than the default, lets it take more than 1 MiB. */
	size_t n = MT_HTTP_BODY_MAX + 1000;
	char *huge = malloc(n + 1);
	memset(huge, 'a', n);
	huge[n] = '\0';
	request(&r, "POST", "/big", NULL, huge, NULL);
	assert_int_equal(r.status, 200);
	char want[64];
	snprintf(want, sizeof(want), "{\"len\":%zu}", n);
	assert_string_equal(r.body, want);
	response_free(&r);
	free(huge);

	/* Beyond the route's cap: 413 from the declared length, before any of the body. */
	int fd = connect_server();
	char head[256];
	int hl = snprintf(head, sizeof(head),
	                  "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
	                  3 * MT_HTTP_BODY_MAX);
	send_all(fd, head, (size_t)hl);
	read_response(fd, &r);
	assert_int_equal(r.status, 413);
	response_free(&r);
	close(fd);
}

static void replies(void **state)
{
	(void)state;
	struct response r;
	request(&r, "GET", "/twice", NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "first\n");
	assert_string_equal(response_header(&r, "Content-Type"), "text/plain; charset=utf-8");
	response_free(&r);

	request(&r, "GET", "/error", NULL, NULL, NULL);
	assert_int_equal(r.status, 422);
	json_t *j = error_of(&r, "auth");
	json_t *e = json_object_get(j, "error");
	assert_string_equal(json_string_value(json_object_get(e, "message")),
	                    "535 5.7.8 bad ? credentials");
	assert_string_equal(json_string_value(json_object_get(e, "smtp_reply")), "535 5.7.8 ?(");
	assert_string_equal(json_string_value(json_object_get(e, "fingerprint")), "sha256:ab");
	json_decref(j);
	response_free(&r);

	request(&r, "GET", "/errorf", NULL, NULL, NULL);
	assert_int_equal(r.status, 409);
	assert_string_equal(
	    r.body, "{\"error\":{\"class\":\"input\",\"code\":\"conflict\",\"message\":\"port "
	            "25 in use by x\",\"field\":null}}");
	response_free(&r);

	expect_error("GET", "/abandon", NULL, NULL, 500, "internal");
}

static void keep_alive(void **state)
{
	(void)state;
	/* Several requests on one connection, one of them answered asynchronously. */
	int fd = connect_server();
	static const char one[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
	static const char two[] = "GET /v1/slow?ms=10 HTTP/1.1\r\nHost: x\r\n"
	                          "Authorization: Bearer good\r\n\r\n";
	struct response r;
	for (int i = 0; i < 3; i++) {
		send_all(fd, one, sizeof(one) - 1);
		read_response(fd, &r);
		assert_int_equal(r.status, 200);
		response_free(&r);
		send_all(fd, two, sizeof(two) - 1);
		read_response(fd, &r);
		assert_int_equal(r.status, 200);
		assert_string_equal(r.body, "{\"slow\":\"done\"}");
		response_free(&r);
	}
	close(fd);
}

static void wait_for(atomic_int *counter, int value)
{
	for (int i = 0; i < 500 && atomic_load(counter) < value; i++)
		usleep(10000);
	assert_true(atomic_load(counter) >= value);
}

static void client_gone(void **state)
{
	(void)state;
	/* The client leaves while the handler waits; the late reply is dropped, nothing leaks
	 * and nothing is touched after free (ASan build). */
	int replied = atomic_load(&slow_replied);
	int gone = atomic_load(&slow_saw_gone);
	const struct mt_metric_label l[] = {{"route", "slow"}};
	double dropped = mt_metric_get("mailtrail_http_replies_dropped_total", l, 1);
	for (int i = 0; i < 5; i++) {
		int fd = connect_server();
		static const char req[] = "GET /v1/slow?ms=150 HTTP/1.1\r\nHost: x\r\n"
		                          "Authorization: Bearer good\r\n\r\n";
		send_all(fd, req, sizeof(req) - 1);
		usleep(30000); /* let the server read it */
		if (i % 2 == 1) {
			/* A reset rather than a FIN. */
			struct linger lin = {1, 0};
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin));
		}
		close(fd);
	}
	/* And one that leaves while the token is being checked. */
	int fd = connect_server();
	static const char req[] = "GET /v1/items/1 HTTP/1.1\r\nHost: x\r\n"
	                          "Authorization: Bearer good\r\n\r\n";
	send_all(fd, req, sizeof(req) - 1);
	close(fd);
	wait_for(&slow_replied, replied + 5);
	usleep(50000);
	/* The server still works. */
	struct response r;
	request(&r, "GET", "/healthz", NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	response_free(&r);
	/* Seen while waiting, not only when the reply fails. */
	assert_int_equal(atomic_load(&slow_saw_gone), gone + 5);
	assert_true(mt_metric_get("mailtrail_http_replies_dropped_total", l, 1) == dropped + 5);
}

static void metrics_rendered(void **state)
{
	(void)state;
	char *text = mt_metrics_render();
	assert_non_null(strstr(text, "# TYPE mailtrail_http_requests_total counter\n"));
	assert_non_null(
	    strstr(text, "mailtrail_http_requests_total{route=\"health\",status=\"200\"}"));
	assert_non_null(
	    strstr(text, "mailtrail_http_requests_total{route=\"unmatched\",status=\"404\"}"));
	free(text);
}

static int stop(void **state)
{
	(void)state;
	struct response r;
	request(&r, "POST", "/test/stop", NULL, NULL, NULL);
	response_free(&r);
	pthread_join(loop_thread, NULL);
	http_server_free(&server);
	assert_null(server);
	event_base_free(base);
	return 0;
}

/* A request still waiting when the server is freed: its late reply is dropped and frees it. */
static void free_with_pending(void **state)
{
	(void)state;
	base = event_base_new();
	const char *error = NULL;
	server = http_server_new(base, "127.0.0.1:0", routes, sizeof(routes) / sizeof(routes[0]),
	                         authenticate, &port, NULL, &error);
	assert_non_null(server);
	port = http_server_port(server);
	int replied = atomic_load(&slow_replied);
	int fd = connect_server();
	static const char req[] = "GET /v1/slow?ms=100 HTTP/1.1\r\nHost: x\r\n"
	                          "Authorization: Bearer good\r\n\r\n";
	send_all(fd, req, sizeof(req) - 1);
	/* Run the loop until the handler has the request (auth takes one more iteration). */
	struct timeval tv = {0, 50000};
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	http_server_free(&server);
	/* The connection is closed... */
	char c;
	assert_int_equal(read(fd, &c, 1), 0);
	close(fd);
	/* ...and the handler's timer still fires and replies into the void. */
	event_base_dispatch(base);
	assert_int_equal(atomic_load(&slow_replied), replied + 1);
	event_base_free(base);
}

static void listen_addresses(void **state)
{
	(void)state;
	static const char *const bad[] = {"127.0.0.1", "::1:80",          "[::1]80",
	                                  "[::1]:",    "127.0.0.1:x",     "127.0.0.1:65536",
	                                  ":80",       "127.0.0.1:123456"};
	struct event_base *b = event_base_new();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *error = NULL;
		assert_null(http_server_new(b, bad[i], routes, 1, NULL, NULL, NULL, &error));
		assert_non_null(error);
	}
	const char *error = NULL;
	struct http_server *s = http_server_new(b, "[::1]:0", routes, 1, NULL, NULL, NULL, &error);
	if (s == NULL) {
		print_message("no IPv6 loopback here: %s\n", error);
	} else {
		assert_true(http_server_port(s) > 0);
		/* The port is taken now. */
		char again[32];
		snprintf(again, sizeof(again), "[::1]:%u", http_server_port(s));
		assert_null(http_server_new(b, again, routes, 1, NULL, NULL, NULL, &error));
		assert_non_null(strstr(error, "cannot listen"));
		http_server_free(&s);
	}
	event_base_free(b);
}

/* ---- hostile clients --------------------------------------------------------------------- */

static int connect_from(const char *source)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in src = {.sin_family = AF_INET};
	inet_pton(AF_INET, source, &src.sin_addr);
	assert_int_equal(bind(fd, (struct sockaddr *)&src, sizeof(src)), 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct timeval tv = {5, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

static void send_str(int fd, const char *s)
{
	send_all(fd, s, strlen(s));
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* True when bytes are waiting within `ms` (or the peer closed). */
static bool readable(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, ms) == 1;
}

/* Reads one head (to the empty line) byte by byte, so that nothing after it is taken. */
static void read_head(int fd, char *head, size_t size)
{
	size_t n = 0;
	while (n + 1 < size) {
		ssize_t r = read(fd, head + n, 1);
		assert_true(r == 1);
		n++;
		head[n] = '\0';
		if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0)
			return;
	}
	fail_msg("head too long: %s", head);
}

/* True when the server closes the connection within `ms` (whatever it sent first). */
static bool closed_within(int fd, int ms)
{
	int64_t end = now_ms() + ms;
	char buf[4096];
	while (now_ms() < end) {
		if (!readable(fd, (int)(end - now_ms())))
			return false;
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
		if (n < 0)
			return false;
	}
	return false;
}

/* The head and response of a request made with `head` sent raw. */
static void raw_request(struct response *r, const char *head)
{
	int fd = connect_server();
	send_str(fd, head);
	read_response(fd, r);
	close(fd);
}

static int status_of_raw(const char *head, bool *closed_r)
{
	int fd = connect_server();
	send_str(fd, head);
	struct response r;
	read_response(fd, &r);
	int status = r.status;
	const char *connection = response_header(&r, "Connection");
	*closed_r =
	    connection != NULL && strcmp(connection, "close") == 0 && closed_within(fd, 2000);
	response_free(&r);
	close(fd);
	return status;
}

/* A declared 100 MB body to a route that needs auth: 401 without the client sending any of it,
 * whether the token is missing or fails the hook (auth is decided before the size). */
/* Sends bytes as fast as the socket takes them until the server answers, `limit` went out or
 * nothing moved for a second; how many went out. */
static size_t push_until_reply(int fd, size_t limit)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	static char chunk[16384];
	memset(chunk, 'b', sizeof(chunk));
	size_t pushed = 0;
	struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT};
	while (pushed < limit && poll(&p, 1, 1000) == 1 && !(p.revents & POLLIN)) {
		ssize_t n = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL);
		if (n > 0)
			pushed += (size_t)n;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return pushed;
}

static void unauthenticated_body_unread(void **state)
{
	(void)state;
	static const char *const auths[] = {"", "Authorization: Bearer bad\r\n"};
	for (size_t i = 0; i < 2; i++) {
		char head[512];
		snprintf(
		    head, sizeof(head),
		    "POST /v1/upload HTTP/1.1\r\nHost: x\r\n%sContent-Length: 100000000\r\n\r\n",
		    auths[i]);
		bool closed;
		assert_int_equal(status_of_raw(head, &closed), 401);
		assert_true(closed);
	}
	/* A client that sends its body at once anyway: nothing of it is read while the token is
	 * checked (300 ms here), so the socket buffers fill and the client is held back. */
	int fd = connect_server();
	int small = 64 * 1024;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	int calls = atomic_load(&auth_calls);
	send_str(fd, "POST /v1/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer slowbad\r\n"
	             "Content-Length: 3145728\r\n\r\n");
	size_t pushed = push_until_reply(fd, 3145728);
	struct response r;
	read_response(fd, &r);
	assert_int_equal(r.status, 401);
	response_free(&r);
	close(fd);
	assert_int_equal(atomic_load(&auth_calls), calls + 1);
	print_message("pushed %zu bytes before the 401\n", pushed);
	assert_true(pushed < 1024 * 1024);
}

/* A valid token on a route with the default cap and a declared length over it: 413 before the
 * body, with or without 100-continue (and then no 100). */
static void over_cap_after_auth(void **state)
{
	(void)state;
	for (int expect = 0; expect < 2; expect++) {
		char head[512];
		snprintf(head, sizeof(head),
		         "POST /v1/notes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n"
		         "%sContent-Length: %d\r\n\r\n",
		         expect ? "Expect: 100-continue\r\n" : "", MT_HTTP_BODY_MAX + 1);
		int fd = connect_server();
		send_str(fd, head);
		char first[4096];
		read_head(fd, first, sizeof(first));
		assert_int_equal(strncmp(first, "HTTP/1.1 413 ", 13), 0);
		assert_non_null(strstr(first, "Connection: close\r\n"));
		close(fd);
	}
	/* at the cap exactly it is taken */
	size_t n = MT_HTTP_BODY_MAX;
	char *body = malloc(n + 1);
	memset(body, 'n', n);
	body[n] = '\0';
	struct response r;
	request(&r, "POST", "/v1/notes", "Bearer good", body, NULL);
	assert_int_equal(r.status, 200);
	response_free(&r);
	free(body);
}

/* A route with a larger cap takes a body over 1 MiB, after auth: "100 Continue" comes only
 * once the token has been checked, and never for a request refused. */
static void large_body_after_auth(void **state)
{
	(void)state;
	size_t n = MT_HTTP_BODY_MAX + 1000;
	char *body = malloc(n);
	memset(body, 'u', n);
	char head[512];
	snprintf(head, sizeof(head),
	         "POST /v1/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer slowgood\r\n"
	         "Expect: 100-continue\r\nContent-Length: %zu\r\n\r\n",
	         n);
	int calls = atomic_load(&auth_calls);
	int64_t t0 = now_ms();
	int fd = connect_server();
	send_str(fd, head);
	char first[4096];
	read_head(fd, first, sizeof(first));
	assert_string_equal(first, "HTTP/1.1 100 Continue\r\n\r\n");
	assert_int_equal(atomic_load(&auth_calls), calls + 1);
	assert_true(now_ms() - t0 >= 250); /* the slow token's check came first */
	send_all(fd, body, n);
	struct response r;
	read_response(fd, &r);
	assert_int_equal(r.status, 200);
	char want[64];
	snprintf(want, sizeof(want), "{\"len\":%zu}", n);
	assert_string_equal(r.body, want);
	response_free(&r);
	close(fd);

	/* refused: the final status, no 100 */
	snprintf(head, sizeof(head),
	         "POST /v1/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer bad\r\n"
	         "Expect: 100-continue\r\nContent-Length: %zu\r\n\r\n",
	         n);
	fd = connect_server();
	send_str(fd, head);
	read_head(fd, first, sizeof(first));
	assert_int_equal(strncmp(first, "HTTP/1.1 401 ", 13), 0);
	close(fd);

	/* without Expect the body may follow at once */
	request(&r, "POST", "/v1/upload", "Bearer good", NULL, NULL);
	assert_int_equal(r.status, 200);
	response_free(&r);
	free(body);
}

static void framing_refused(void **state)
{
	(void)state;
	bool closed;
	assert_int_equal(status_of_raw("POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
	                               "Content-Length: 2\r\n\r\nhi",
	                               &closed),
	                 400);
	assert_true(closed);
	assert_int_equal(
	    status_of_raw("POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\nhi",
	                  &closed),
	    400);
	assert_int_equal(
	    status_of_raw("POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
	                  "Content-Length: 2\r\n\r\n0\r\n\r\n",
	                  &closed),
	    400);
	assert_true(closed);
	assert_int_equal(status_of_raw("POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, "
	                               "chunked\r\n\r\n",
	                               &closed),
	                 501);
	assert_int_equal(
	    status_of_raw("GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", &closed), 400);
	assert_int_equal(status_of_raw("GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n", &closed), 400);
	assert_int_equal(status_of_raw("GET /healthz HTTP/1.1\r\n\r\n", &closed), 400);
	assert_int_equal(status_of_raw("GET /healthz HTTP/2.0\r\n\r\n", &closed), 505);
	struct response r;
	raw_request(&r, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
	                "Content-Length: 1\r\n\r\nx");
	json_decref(error_of(&r, "input"));
	response_free(&r);
}

static void chunked_bodies(void **state)
{
	(void)state;
	struct response r;
	raw_request(&r,
	            "POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	            "5;note=1\r\nhello\r\n0b\r\n, chunked!!\r\n0\r\nX-Trailer: dropped\r\n\r\n");
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "{\"len\":16}");
	response_free(&r);
	raw_request(
	    &r, "POST /v1/items HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n"
	        "Transfer-Encoding: chunked\r\n\r\n4\r\n{\"na\r\n8\r\nme\":\"c\"}\r\n0\r\n\r\n");
	assert_int_equal(r.status, 201);
	assert_string_equal(r.body, "{\"name\":\"c\",\"ctype\":null}");
	response_free(&r);
	/* over the route's cap (64): 413 at the chunk that passes it */
	raw_request(&r, "POST /v1/items HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n"
	                "Transfer-Encoding: chunked\r\n\r\n41\r\n");
	assert_int_equal(r.status, 413);
	json_decref(error_of(&r, "input"));
	response_free(&r);

	/* A stream with no end: counted as it comes and cut at the cap (2 MiB), long before the
	 * client would stop. */
	int fd = connect_server();
	send_str(fd, "POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	size_t piece = 65536 + 9;
	char *chunk = malloc(piece);
	memcpy(chunk, "10000\r\n", 7);
	memset(chunk + 7, 'c', 65536);
	memcpy(chunk + 7 + 65536, "\r\n", 2);
	size_t pushed = 0, limit = 32u * 1024 * 1024;
	struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT};
	while (pushed < limit && poll(&p, 1, 2000) == 1 && !(p.revents & POLLIN)) {
		ssize_t n = send(fd, chunk + pushed % piece, piece - pushed % piece, MSG_NOSIGNAL);
		if (n > 0)
			pushed += (size_t)n;
	}
	free(chunk);
	assert_true(pushed < limit);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	read_response(fd, &r);
	assert_int_equal(r.status, 413);
	response_free(&r);
	close(fd);
}

/* Everything the server sends until it closes (or `size` - 1 bytes), as a string. */
static void read_to_close(int fd, char *buf, size_t size)
{
	size_t got = 0;
	for (ssize_t n; got < size - 1 && (n = read(fd, buf + got, size - 1 - got)) > 0;)
		got += (size_t)n;
	buf[got] = '\0';
}

/* Replies go straight to the socket when they can, and reading goes on while a handler has
 * the request: a client that shuts down its sending side after a request answered at once still
 * gets it whole, even one far larger than the socket takes at once (the rest is queued, the FIN
 * seen meanwhile); one whose request waits for its handler is taken as gone (as before); a
 * request sent behind one that waits for its handler is answered after it, in order. */
static void half_closed_and_pipelined(void **state)
{
	(void)state;
	struct response r;
	int fd = connect_server();
	send_str(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
	shutdown(fd, SHUT_WR);
	read_response(fd, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "{\"ok\":true}");
	response_free(&r);
	assert_true(closed_within(fd, 2000));
	close(fd);

	fd = connect_server();
	send_str(fd, "GET /bigreply HTTP/1.1\r\nHost: x\r\n\r\n");
	shutdown(fd, SHUT_WR);
	usleep(100000); /* the server writes what fits, then sees the FIN while the rest waits */
	read_response(fd, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, BIG_REPLY_BYTES);
	assert_non_null(memchr(r.body, 'x', 1));
	assert_null(memchr(r.body, 0, r.body_len));
	response_free(&r);
	assert_true(closed_within(fd, 2000));
	close(fd);

	fd = connect_server();
	send_str(fd,
	         "GET /v1/slow?ms=100 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n\r\n");
	usleep(30000);
	shutdown(fd, SHUT_WR);
	char c;
	assert_true(closed_within(fd, 2000));
	assert_true(read(fd, &c, 1) <= 0);
	close(fd);

	fd = connect_server();
	send_str(fd,
	         "GET /v1/slow?ms=50 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n\r\n");
	usleep(20000); /* the first one is with its handler when the second comes */
	send_str(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	/* both replies, which may come in one read: in order, then the close */
	char both[4096];
	read_to_close(fd, both, sizeof(both));
	const char *slow = strstr(both, "{\"slow\":\"done\"}");
	const char *ok = strstr(both, "{\"ok\":true}");
	assert_int_equal(strncmp(both, "HTTP/1.1 200 ", 13), 0);
	assert_non_null(slow);
	assert_non_null(ok);
	assert_true(slow < ok);
	assert_int_equal(strncmp(slow + strlen("{\"slow\":\"done\"}"), "HTTP/1.1 200 ", 13), 0);
	close(fd);

	/* Reading on while the handler waits is bounded by the read-ahead (MT_HTTP_INPUT_MAX):
	 * a client pushing more behind its request is held back by TCP, not buffered by us. */
	fd = connect_server();
	int small = 64 * 1024;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	send_str(fd,
	         "GET /v1/slow?ms=300 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n\r\n");
	size_t pushed = push_until_reply(fd, 8u << 20);
	char reply[4096];
	read_to_close(fd, reply, sizeof(reply));
	close(fd);
	assert_int_equal(strncmp(reply, "HTTP/1.1 200 ", 13), 0);
	print_message("pushed %zu bytes while the handler waited\n", pushed);
	assert_true(pushed < 1024 * 1024);
}

static void connection_handling(void **state)
{
	(void)state;
	/* two requests in one write: two replies, in order, the connection kept between them */
	int fd = connect_server();
	send_str(fd, "GET /errorf HTTP/1.1\r\nHost: x\r\n\r\n"
	             "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	char both[4096];
	read_to_close(fd, both, sizeof(both));
	close(fd);
	assert_int_equal(strncmp(both, "HTTP/1.1 409 ", 13), 0);
	const char *second = strstr(both, "}HTTP/1.1 ");
	assert_non_null(second);
	assert_int_equal(strncmp(second + 1, "HTTP/1.1 200 ", 13), 0);
	const char *close_header = strstr(both, "Connection: close\r\n");
	assert_true(close_header > second);
	struct response r;
	/* HTTP/1.0 closes unless asked not to */
	fd = connect_server();
	send_str(fd, "GET /healthz HTTP/1.0\r\n\r\n");
	read_response(fd, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(response_header(&r, "Connection"), "close");
	assert_string_equal(response_header(&r, "X-Content-Type-Options"), "nosniff");
	assert_true(closed_within(fd, 2000));
	response_free(&r);
	close(fd);
	fd = connect_server();
	send_str(fd, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	read_response(fd, &r);
	assert_string_equal(response_header(&r, "Connection"), "keep-alive");
	response_free(&r);
	send_str(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	read_response(fd, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(response_header(&r, "Connection"), "close");
	assert_true(closed_within(fd, 2000));
	response_free(&r);
	close(fd);
	/* HEAD: the head of the reply, no content */
	raw_request(&r, "HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	assert_int_equal(r.status, 405);
	assert_int_equal(r.body_len, 0);
	response_free(&r);
	/* Retry-After through the helper */
	request(&r, "GET", "/busy", NULL, NULL, NULL);
	assert_int_equal(r.status, 503);
	assert_string_equal(response_header(&r, "Retry-After"), "1");
	json_decref(error_of(&r, "internal"));
	response_free(&r);
}

/* A server of its own, with the given caps and deadlines, run like the main one. */
static void serve(const struct http_server_params *params)
{
	base = event_base_new();
	const char *error = NULL;
	server = http_server_new(base, "127.0.0.1:0", routes, sizeof(routes) / sizeof(routes[0]),
	                         authenticate, &port, params, &error);
	if (server == NULL)
		fail_msg("http_server_new: %s", error);
	port = http_server_port(server);
	pthread_create(&loop_thread, NULL, run_loop, NULL);
}

static void unserve(void)
{
	int fd = connect_from("127.0.0.254");
	send_str(fd, "POST /test/stop HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	struct response r;
	read_response(fd, &r);
	assert_int_equal(r.status, 204);
	response_free(&r);
	close(fd);
	pthread_join(loop_thread, NULL);
	http_server_free(&server);
	event_base_free(base);
}

static double deadlines(const char *phase)
{
	const struct mt_metric_label l[] = {{"phase", phase}};
	return mt_metric_get("mailtrail_http_deadlines_total", l, 1);
}

/* Absolute deadlines: a client trickling bytes is cut when its head is due, not kept alive by
 * each byte as an idle timeout would. */
static void slow_clients_cut(void **state)
{
	(void)state;
	const struct http_server_params params = {
	    .header_timeout_ms = 400, .request_timeout_ms = 1200, .idle_timeout_ms = 600};
	serve(&params);
	double header = deadlines("header"), request_ = deadlines("request"),
	       idle = deadlines("idle");

	/* slowloris: one byte of its head every 100 ms */
	int64_t t0 = now_ms();
	int fd = connect_server();
	send_str(fd, "GET /healthz HTTP/1.1\r\nX-Slow: ");
	while (!readable(fd, 100) && now_ms() - t0 < 5000)
		send_str(fd, "a");
	struct response r;
	read_response(fd, &r);
	int64_t took = now_ms() - t0;
	assert_int_equal(r.status, 408);
	assert_string_equal(response_header(&r, "Connection"), "close");
	response_free(&r);
	assert_true(closed_within(fd, 2500));
	close(fd);
	print_message("head cut after %lld ms\n", (long long)took);
	assert_true(took >= 350 && took < 1000);
	assert_true(deadlines("header") == header + 1);

	/* the body trickles: cut at the request deadline */
	t0 = now_ms();
	fd = connect_server();
	send_str(fd, "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
	while (!readable(fd, 100) && now_ms() - t0 < 5000)
		send_str(fd, "b");
	read_response(fd, &r);
	took = now_ms() - t0;
	assert_int_equal(r.status, 408);
	response_free(&r);
	close(fd);
	assert_true(took >= 1100 && took < 2000);
	assert_true(deadlines("request") == request_ + 1);

	/* idle between requests: closed without a word */
	fd = connect_server();
	send_str(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
	read_response(fd, &r);
	assert_int_equal(r.status, 200);
	response_free(&r);
	t0 = now_ms();
	char c;
	assert_int_equal(read(fd, &c, 1), 0);
	took = now_ms() - t0;
	assert_true(took >= 500 && took < 1500);
	close(fd);
	assert_true(deadlines("idle") == idle + 1);

	/* connected, silent: closed when its first head is due */
	t0 = now_ms();
	fd = connect_server();
	assert_int_equal(read(fd, &c, 1), 0);
	took = now_ms() - t0;
	assert_true(took >= 350 && took < 1000);
	close(fd);
	unserve();
}

static double open_connections(void)
{
	return mt_metric_get("mailtrail_http_connections", NULL, 0);
}

static void wait_open(double n)
{
	for (int i = 0; i < 300 && open_connections() != n; i++)
		usleep(10000);
	assert_true(open_connections() == n);
}

static void connection_caps(void **state)
{
	(void)state;
	const struct http_server_params params = {.max_connections = 6,
	                                          .max_connections_per_ip = 3};
	serve(&params);
	const struct mt_metric_label per_ip[] = {{"cap", "per_ip"}};
	double refused = mt_metric_get("mailtrail_http_connections_refused_total", per_ip, 1);
	int a[3], b[3];
	for (int i = 0; i < 3; i++)
		a[i] = connect_from("127.0.0.2");
	wait_open(3);
	/* one more from the same address: 503 with Retry-After (or a bare close), at once */
	int extra = connect_from("127.0.0.2");
	char buf[1024] = "";
	ssize_t n = read(extra, buf, sizeof(buf) - 1);
	assert_true(n >= 0 || errno == ECONNRESET);
	if (n > 0) {
		buf[n] = '\0';
		assert_int_equal(strncmp(buf, "HTTP/1.1 503 ", 13), 0);
		assert_non_null(strstr(buf, "Retry-After: 1\r\n"));
	}
	close(extra);
	assert_true(mt_metric_get("mailtrail_http_connections_refused_total", per_ip, 1) ==
	            refused + 1);

	/* the global cap: past it the listener waits until a connection closes */
	for (int i = 0; i < 3; i++)
		b[i] = connect_from("127.0.0.3");
	wait_open(6);
	int waiting = connect_from("127.0.0.4"); /* completes in the kernel's backlog */
	send_str(waiting, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
	assert_false(readable(waiting, 300));
	assert_true(open_connections() == 6);
	close(b[0]);
	assert_true(readable(waiting, 2000));
	struct response r;
	read_response(waiting, &r);
	assert_int_equal(r.status, 200);
	response_free(&r);
	close(waiting);

	/* a freed slot of an address takes a new connection from it */
	close(a[0]);
	wait_open(4); /* a[1], a[2], b[1], b[2] */
	a[0] = connect_from("127.0.0.2");
	send_str(a[0], "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
	read_response(a[0], &r);
	assert_int_equal(r.status, 200);
	response_free(&r);
	for (int i = 0; i < 3; i++)
		close(a[i]);
	for (int i = 1; i < 3; i++)
		close(b[i]);
	wait_open(0);
	unserve();
}

/* The client side of accept_backoff, in a process of its own so that its sockets do not take
 * the server's descriptors: waits for the go, connects `count` clients that each send a request,
 * and returns how many were answered 200 within 10 s. Only async-signal-safe calls (fork). */
static int backoff_clients(int go, int count)
{
	char c;
	if (read(go, &c, 1) != 1)
		return -1;
	int fds[16];
	static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	for (int i = 0; i < count; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
		    write(fds[i], req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1))
			return -1;
	}
	int ok = 0;
	for (int i = 0; i < count; i++) {
		char buf[16];
		struct pollfd p = {.fd = fds[i], .events = POLLIN};
		if (poll(&p, 1, 10000) == 1 && read(fds[i], buf, 13) == 13 &&
		    memcmp(buf, "HTTP/1.1 200 ", 13) == 0)
			ok++;
		close(fds[i]);
	}
	return ok;
}

/* Out of descriptors: accept() fails with EMFILE while connections wait in the backlog. The
 * loop must not spin on the readable listening socket, and accepting must resume once
 * descriptors are free. */
static void accept_backoff(void **state)
{
	(void)state;
	serve(NULL);
	const struct mt_metric_label emfile[] = {{"error", "EMFILE"}};
	double episodes = mt_metric_get("mailtrail_http_accept_backoff_total", emfile, 1);
	int go[2], result[2];
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(result), 0);
	const int count = 8;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int ok = backoff_clients(go[0], count);
		_exit(write(result[1], &ok, sizeof(ok)) == sizeof(ok) ? 0 : 1);
	}
	close(go[0]);
	close(result[1]);

	/* every descriptor of this process taken */
	struct rlimit old;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	int probe = dup(0);
	close(probe);
	struct rlimit low = {(rlim_t)probe + 16, old.rlim_max};
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	int fillers[64], nfillers = 0;
	for (int fd; nfillers < 64 && (fd = dup(0)) >= 0;)
		fillers[nfillers++] = fd;
	assert_true(nfillers < 64);
	assert_int_equal(write(go[1], "g", 1), 1);
	usleep(200000); /* the clients connect; accept() fails */

	struct rusage before, after;
	getrusage(RUSAGE_SELF, &before);
	usleep(1000000);
	getrusage(RUSAGE_SELF, &after);
	double cpu = (double)(after.ru_utime.tv_sec - before.ru_utime.tv_sec) +
	             (double)(after.ru_stime.tv_sec - before.ru_stime.tv_sec) +
	             (double)(after.ru_utime.tv_usec - before.ru_utime.tv_usec) / 1e6 +
	             (double)(after.ru_stime.tv_usec - before.ru_stime.tv_usec) / 1e6;
	double now = mt_metric_get("mailtrail_http_accept_backoff_total", emfile, 1);
	/* descriptors back: the next retry accepts, and every waiting request is answered */
	for (int i = 0; i < nfillers; i++)
		close(fillers[i]);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	print_message("cpu %.3f s over 1 s out of descriptors\n", cpu);
	assert_true(cpu < 0.25);
	assert_true(now == episodes + 1); /* one episode, however many failures */
	int ok = -1;
	assert_int_equal(read(result[0], &ok, sizeof(ok)), sizeof(ok));
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	close(go[1]);
	close(result[0]);
	assert_int_equal(ok, count);
	wait_open(0);
	unserve();
}

int main(void)
{
	const struct CMUnitTest served[] = {
	    cmocka_unit_test(public_route),
	    cmocka_unit_test(request_ids),
	    cmocka_unit_test(path_and_query),
	    cmocka_unit_test(not_found_and_method),
	    cmocka_unit_test(authentication),
	    cmocka_unit_test(bodies),
	    cmocka_unit_test(replies),
	    cmocka_unit_test(keep_alive),
	    cmocka_unit_test(client_gone),
	    cmocka_unit_test(metrics_rendered),
	    cmocka_unit_test(unauthenticated_body_unread),
	    cmocka_unit_test(over_cap_after_auth),
	    cmocka_unit_test(large_body_after_auth),
	    cmocka_unit_test(framing_refused),
	    cmocka_unit_test(chunked_bodies),
	    cmocka_unit_test(connection_handling),
	    cmocka_unit_test(half_closed_and_pipelined),
	};
	const struct CMUnitTest alone[] = {
	    cmocka_unit_test(free_with_pending),
	    cmocka_unit_test(listen_addresses),
	    /* each with a server of its own caps and deadlines */
	    cmocka_unit_test(slow_clients_cut),
	    cmocka_unit_test(connection_caps),
	    cmocka_unit_test(accept_backoff),
	};
	int failed = cmocka_run_group_tests(served, start, stop);
	failed += cmocka_run_group_tests(alone, NULL, NULL);
	return failed;
}
