/* libcurl's multi interface on our libevent loop, for the HTTPS (and allowed plain http) requests
 * the service makes: OAuth token endpoints and webhook receivers. libcurl's sockets and its one
 * timer are libevent events, so the loop never blocks on DNS, connect, TLS or a slow peer.
 *
 * A caller owns its requests: it sets up an easy handle (curl_loop_post_setup() holds the options
 * every request of ours shares), sets CURLOPT_PRIVATE to its own request, and hands the handle to
 * curl_loop_add(). When the transfer ends the loop calls `done(private, code)` once, from the
 * loop, never from inside curl_loop_add(); the handle is still added then, and the caller removes
 * it (curl_loop_remove) and cleans it up. curl_loop_free() calls nothing: the caller removes its
 * handles first.
 *
 * Ownership: the loop owns the multi handle, its timer and one watch per socket; strings given to
 * curl_loop_post_setup() are not copied and must live as long as the easy handle. */
#ifndef MT_HTTP_CLIENT_CURL_LOOP_H
#define MT_HTTP_CLIENT_CURL_LOOP_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct curl_loop;

typedef void curl_loop_done_fn(void *private_data, CURLcode code);

struct curl_loop *curl_loop_new(struct event_base *base, curl_loop_done_fn *done,
                                const char **error_r);
void curl_loop_free(struct curl_loop **loop);

/* 0, or -1 when libcurl refuses the handle (nothing was added). */
int curl_loop_add(struct curl_loop *loop, CURL *easy);
void curl_loop_remove(struct curl_loop *loop, CURL *easy);

/* One POST of ours: no redirects, the certificate and host verified, no signals, the whole
 * request and its connect capped at timeout_ms. */
struct curl_loop_post {
	const char *url;
	const char *protocols; /* CURLOPT_PROTOCOLS_STR: "https", or "http" where allowed */
	const char *body;
	size_t body_len;
	struct curl_slist *headers;
	curl_write_callback on_reply; /* its data pointer is `private_data` */
	void *private_data;           /* CURLOPT_PRIVATE and CURLOPT_WRITEDATA */
	char *error_buffer;           /* CURL_ERROR_SIZE bytes */
	const char *user_agent;
	long timeout_ms;
	bool no_proxy;       /* ignore the environment's proxy settings */
	const char *ca_file; /* NULL or "": the system CAs only; else also this file's */
};

/* Sets the options; 0, or -1 when libcurl refuses one. */
int curl_loop_post_setup(CURL *easy, const struct curl_loop_post *post);

#endif
