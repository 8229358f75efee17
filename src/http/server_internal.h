/* What src/http/server.c (connections, listening, the server), src/http/server_request.c
 * (requests, accessors, dispatch, streamed bodies) and src/http/server_reply.c (replies) share:
 * the server's private structs and the few functions between them. Nothing else includes this;
 * the API is http/server.h.
 *
 * Ownership. The server owns its connections: each is made at accept and freed only by
 * conn_close() in server.c (client gone, deadline, end of linger, http_server_free()). A
 * request is made by http_req_new() when its first byte arrives and freed by http_req_free()
 * either once it is answered (its one reply, http_req_finish() in server_reply.c) or, unanswered,
 * by the close of the connection reading it (conn->req). Once the authenticate hook or a handler
 * has it (req->in_app, on server->pending) only its reply frees it: a connection's close or
 * the server's free just mark it gone and clear req->conn or req->server, which a request only
 * borrows. While our own frames are on the stack for a request (req->busy), the free waits for
 * the last of them to return (release()).
 */
#ifndef MT_HTTP_SERVER_INTERNAL_H
#define MT_HTTP_SERVER_INTERNAL_H

#include "http/server.h"
#include "lib/buf.h"
#include "lib/limits.h"
#include "proto/http_request.h"

#include <event2/util.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bufferevent;
struct event;
struct event_base;

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

/* A connection's states; each has one deadline policy (http_conn_set_state()). */
enum conn_state {
	CONN_IDLE,    /* waiting for a request's first byte */
	CONN_HEAD,    /* reading a head */
	CONN_AUTH,    /* the authenticate hook has the request; its body waits unread */
	CONN_BODY,    /* reading a body */
	CONN_HANDLER, /* the handler has the request */
	CONN_WRITING, /* a reply is going out */
	CONN_LINGER,  /* after the last reply: discarding what the client still sends, then close */
};

struct http_conn {
	struct http_server *server;
	struct bufferevent *bev;
	evutil_socket_t fd;
	struct ip_entry *ip;
	enum conn_state state;
	struct http_request *req; /* being read, in the hook or handler; NULL between requests */
	struct event *timer;      /* the state's deadline */
	/* While an authenticate hook answers later nothing is read, so a client that left would
	 * only be noticed when the reply fails; this watches the socket meanwhile. */
	struct event *watch;
	struct event *kick;         /* http_conn_kick() */
	struct evbuffer *reply_buf; /* a reply being written straight to the socket */
	int64_t accepted_ms;
	int64_t head_deadline_ms, request_deadline_ms;
	int64_t waiting_since_ms; /* CONN_AUTH: not the client's time */
	unsigned requests;        /* begun on this connection */
	bool close_after;         /* the reply going out is the last */
	bool peer_closed;         /* the client shut down its side while its reply was going out */
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
	char request_id[MT_HTTP_REQUEST_ID_MAX + 1]; /* X-Request-Id: the client's, or ours */
	bool head_only;                              /* HEAD: the reply without its content */
	bool in_app; /* the hook or a handler has it: only a reply frees it */
	bool gone;
	bool replied;
	int busy; /* our callbacks on the stack: the free waits until they return */
	bool has_auth;
	struct http_auth auth;
	char log_key_id[MT_ID_MAX]; /* http_request_note_auth: an API key and whom it acted for */
	char log_user_id[MT_ID_MAX];
	char *token;
	struct http_pair params[MT_HTTP_PATH_PARAMS_MAX];
	size_t param_count;
	struct http_pair query[MT_HTTP_QUERY_PARAMS_MAX];
	size_t query_count;
	void *data;
	/* A streamed body (route->stream_body): the handler's reader; `stream_over` once END,
	 * FAILED or GONE went to it; paused by the handler since paused_since_ms. */
	http_stream_fn *stream_fn;
	void *stream_ctx;
	bool stream_paused;
	bool stream_over;
	uint64_t stream_bytes;
	int64_t paused_since_ms;
	struct http_request *prev, *next;
};

/* ---- server.c: the connection's side, which the request's side drives ---- */

/* Replies, the hook and handlers taking a request, and a body being wanted all move the
 * connection on; each state has its own deadline and reading policy. */
void http_conn_set_state(struct http_conn *conn, enum conn_state state);
/* A body wanted after its head may already sit in the input buffer, which bufferevent would
 * not call back for. */
void http_conn_kick(struct http_conn *conn);
/* The watch for a client that leaves covers only a request an authenticate hook answers later;
 * its reply or its return from the hook ends it. */
void http_conn_watch_stop(struct http_conn *conn);
/* CONN_WRITING's reply has gone out: the next request, or the linger before the close. Never
 * frees the connection. */
void http_conn_written(struct http_conn *conn);

/* ---- server_request.c: the request's side, which the connection's read loop feeds ---- */

/* Made at a request's first byte, with its parser and empty body; NULL when out of memory. */
struct http_request *http_req_new(struct http_conn *conn);
/* For the connection's close, which frees a request nobody else has (see Ownership). */
void http_req_free(struct http_request *req);
/* The head is parsed: routing, authentication and the body cap are decided from it. */
void http_req_on_head(struct http_conn *conn, struct http_request *req);
/* The body is in (or there is none): the route's handler gets the request. */
void http_req_run_handler(struct http_request *req);
/* CONN_BODY of a streamed body: decodes what has been read and hands it to the handler. */
void http_req_stream_feed(struct http_conn *conn, struct http_request *req);
/* A streamed body cannot go on: the deadline passed (FAILED with `status`), or the connection
 * closed (status 0: GONE). */
void http_req_stream_stop(struct http_request *req, int status, const char *why);
/* The parser refused the head or body: answers with the status it calls for. */
void http_req_parse_failed(struct http_request *req, const char *why);
/* Takes the request off server->pending, where the hook or a handler having it put it: its
 * reply and its return to us from the hook both end that. */
void http_req_unlink_pending(struct http_request *req);

/* ---- server_reply.c: the replies, which both the request's side and handlers send ---- */

/* The one place a request is answered: logged and counted, then written on its connection, or
 * dropped when the client has gone; frees the request unless our frames still hold it.
 * `extra` is a NULL-terminated name/value list of headers. */
void http_req_finish(struct http_request *req, int status, const char *content_type,
                     const char *data, size_t len, const char *const *extra);
/* http_reply_error() with extra headers (Allow, WWW-Authenticate), which only the request's
 * own refusals need. */
void http_req_reply_error_extra(struct http_request *req, int status, const char *cls,
                                const char *message, const char *smtp_reply,
                                const char *fingerprint, const char *const *extra);

#endif
