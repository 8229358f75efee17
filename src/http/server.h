/* The HTTP/1.1 server of the API (DESIGN.md §2) on the libevent loop: route matching with path
 * parameters, bearer-token authentication through an asynchronous hook, and replies in the
 * API's JSON error shape. Everything runs on the loop thread.
 *
 * A request is judged from its head before any of its body is read: route (404, 405), framing
 * (400), authentication (401, 403: the hook runs while the body waits unread on the socket),
 * then the route's body cap against the declared length (413); only then is the body read
 * (after "100 Continue" when the client asked), a chunked one cut at the cap. A request refused
 * before its body was read is answered and its connection closed. Connections are capped in
 * number (in all and per client address) and in time by absolute deadlines (struct
 * http_server_params); accept() failing for lack of descriptors pauses the listener with
 * back-off instead of spinning. Requests on a connection are handled one at a time, in order.
 *
 * Ownership: the server borrows `routes` (and the strings in them) and `app`; both must outlive
 * it. A `struct http_request` belongs to the server from its arrival until exactly one reply
 * function (or http_request_abandon()) has been called for it: a handler may return without
 * replying and reply later, but must reply eventually, even when the client is gone, or the
 * request leaks. Strings returned by the http_request_* getters are owned by the request and
 * valid until that reply. http_reply_json() steals the reference to its body. Handler state set
 * with http_request_set_data() stays the handler's to free. */
#ifndef MT_HTTP_SERVER_H
#define MT_HTTP_SERVER_H

#include "lib/limits.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct http_server;
struct http_request;

struct http_auth {
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX]; /* "" for an API key acting for the org itself */
	char token_id[MT_ID_MAX];
	char key_id[MT_ID_MAX]; /* an org-level API key's request: the key ("" for a user token) */
	bool admin;
};

typedef void http_handler_fn(struct http_request *req, void *app);
/* Called for routes that need auth with the bearer token text (valid until
 * http_request_authenticated() is called); must later call http_request_authenticated(req, auth)
 * with the result or NULL (-> 401), possibly asynchronously (after a store job). */
typedef void http_authenticate_fn(struct http_request *req, const char *token, void *app);

enum http_auth_rule { HTTP_PUBLIC, HTTP_USER, HTTP_ADMIN };

struct http_route {
	const char *method;       /* "GET", "POST", "PUT", "PATCH", "DELETE" */
	const char *pattern;      /* "/v1/users/{id}" — {name} matches one non-empty segment */
	enum http_auth_rule auth; /* HTTP_ADMIN: authenticated and auth->admin, else 403 */
	http_handler_fn *handler;
	const char *name; /* metric label, e.g. "users.update" */
	size_t body_max;  /* 0 = MT_HTTP_BODY_MAX; over it -> 413 class input */
	/* The query parameters it takes, comma-separated ("limit,cursor"); any other is 400
	 * unknown_parameter. NULL: none. "*": any (a page a provider or mail client links to). */
	const char *query;
	/* The body is streamed: the handler runs once the request is admitted (route, auth, the
	 * declared length against body_max), before any of its body is read, and takes the body
	 * a piece at a time with http_request_stream_body(); body_max caps the whole. */
	bool stream_body;
};

/* Connection caps and deadlines. A field left 0 takes its default from lib/limits.h (the same
 * as the config keys' defaults, docs/configuration.md). */
struct http_server_params {
	/* Open connections; at the cap no more are accepted (they wait in the kernel's backlog)
	 * until one closes. */
	unsigned max_connections;
	/* Open connections from one client address; one more is answered 503 and closed. */
	unsigned max_connections_per_ip;
	/* A request's head must arrive within this of its first byte (of the connection's accept
	 * for its first request); the whole request, head and body, within request_timeout_ms.
	 * Time spent waiting for the authenticate hook does not count. Past either: 408, closed. */
	unsigned header_timeout_ms;
	unsigned request_timeout_ms;
	/* A kept-alive connection waiting for its next request. */
	unsigned idle_timeout_ms;
	/* For the client to take a reply. */
	unsigned reply_timeout_ms;
};

/* `listen` is "127.0.0.1:8025" or "[::1]:8025"; port 0 picks a free one. `params` may be NULL
 * (all defaults). NULL with a message in *error_r (static storage, valid until the next call)
 * when the address is malformed or cannot be bound. */
struct http_server *http_server_new(struct event_base *base, const char *listen,
                                    const struct http_route *routes, size_t route_count,
                                    http_authenticate_fn *authenticate, void *app,
                                    const struct http_server_params *params, const char **error_r);
/* Closes the listener and every connection. Requests still waiting for their reply become gone:
 * their handlers must still reply (the reply is dropped) or abandon them. */
void http_server_free(struct http_server **server);
uint16_t http_server_port(const struct http_server *server);

/* ---- in handlers (loop thread) ---- */

/* Path parameter, percent-decoded; NULL if absent. */
const char *http_request_param(const struct http_request *req, const char *name);
/* Query parameter, percent-decoded ('+' is a space); NULL if absent. */
const char *http_request_query(const struct http_request *req, const char *name);
/* The request's id (X-Request-Id: the client's when usable, else one made here), also in its
 * log line and its reply. */
const char *http_request_id(const struct http_request *req);
/* Request header, case-insensitive name; NULL if absent. */
const char *http_request_header(const struct http_request *req, const char *name);
/* The body with a NUL after it (binary bodies may contain NULs: use *len_r). */
const char *http_request_body(const struct http_request *req, size_t *len_r);
const char *http_request_method(const struct http_request *req);
/* The matched route's name ("users.update"). */
const char *http_request_route_name(const struct http_request *req);
/* NULL on public routes and before authentication. */
const struct http_auth *http_request_auth(const struct http_request *req);
void http_request_authenticated(struct http_request *req, const struct http_auth *auth_or_null);
/* Who asked, for the request's log line (the API key and the user it acts for) when the hook
 * answers the request itself instead of admitting it; http_request_authenticated notes it too. */
void http_request_note_auth(struct http_request *req, const struct http_auth *auth);
void *http_request_get_data(const struct http_request *req);
void http_request_set_data(struct http_request *req, void *data);

/* ---- streamed bodies (routes with stream_body) ---- */

enum http_stream_event {
	HTTP_STREAM_DATA,   /* `data`, `len`: the next decoded bytes (valid during the call) */
	HTTP_STREAM_END,    /* the body is complete */
	HTTP_STREAM_FAILED, /* malformed framing, over body_max or past the request deadline:
	                     * `status` (400, 408, 413) and `why`; the rest is not read */
	HTTP_STREAM_GONE,   /* the client went away: nothing more comes, the reply is dropped */
};

struct http_stream_item {
	enum http_stream_event event;
	const char *data;
	size_t len;
	int status;
	const char *why;
};

typedef void http_stream_fn(void *ctx, const struct http_stream_item *item);

/* From the handler of a stream_body route: `fn` gets the body's pieces on the loop, then exactly
 * one of END, FAILED or GONE, and nothing once the request is answered. The handler may answer
 * at any point (a body not read to its end closes the connection after the reply). */
void http_request_stream_body(struct http_request *req, http_stream_fn *fn, void *ctx);
/* Stops reading the client's bytes (TCP pushes back) until resume; the time paused is not the
 * client's and does not count against the request deadline. May be called from `fn`. */
void http_request_stream_pause(struct http_request *req);
void http_request_stream_resume(struct http_request *req);

/* ---- replies: each request gets exactly one. A second call made while the handler is still
 * on the stack is ignored with a warning; after an asynchronous reply the request is freed, so
 * it must not be used at all. ---- */

void http_reply_json(struct http_request *req, int status, json_t *body /* stolen */);
void http_reply_empty(struct http_request *req, int status); /* 204 etc */
void http_reply_text(struct http_request *req, int status, const char *content_type,
                     const char *text, size_t len);
/* {"error":{"class":cls,"message":message,"smtp_reply":smtp_reply?,"fingerprint":fingerprint?}}
 * Bytes that are not valid UTF-8 (a server's reply can hold anything) are replaced by '?'. */
void http_reply_error(struct http_request *req, int status, const char *cls, const char *message,
                      const char *smtp_reply, const char *fingerprint);
void http_reply_errorf(struct http_request *req, int status, const char *cls, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Every error body is {"error": {class, code, message, field, ...}}: `code` is a stable machine
 * code (docs/api.md "Error codes"; the functions without one use the status's, e.g. 404
 * "not_found"), `field` the request field or query parameter at fault (NULL: none, JSON null). */
void http_reply_error_at(struct http_request *req, int status, const char *cls, const char *code,
                         const char *field, const char *message);
/* ... with a live check's SMTP reply and the presented certificate's pin (NULL: none). */
void http_reply_error_check(struct http_request *req, int status, const char *cls, const char *code,
                            const char *field, const char *message, const char *smtp_reply,
                            const char *fingerprint);
/* The same error shape with "Retry-After: retry_after_s", for 429 and 503. */
void http_reply_error_retry(struct http_request *req, int status, const char *cls,
                            const char *message, unsigned retry_after_s);

/* True once the client went away (or the server was freed): replies are then dropped, but the
 * handler's continuation must still make one (or call http_request_abandon()) so the request is
 * freed. The socket is watched while the request waits: a close, a reset or a half-close marks
 * the request gone at once and closes the connection, so a long live check can stop early. */
bool http_request_gone(const struct http_request *req);
/* Ends the request without a reply of the handler's: dropped when gone, else answered 500
 * class internal. Frees the request like a reply. */
void http_request_abandon(struct http_request *req);

#endif
