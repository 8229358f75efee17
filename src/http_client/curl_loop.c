#include "http_client/curl_loop.h"

#include <event2/event.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdlib.h>

struct curl_loop {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	curl_loop_done_fn *done;
};

/* One libevent event per socket libcurl asks us to watch. */
struct watch {
	struct curl_loop *loop;
	struct event *ev;
};

static void drain_done(struct curl_loop *l)
{
	CURLMsg *msg;
	int left = 0;
	while ((msg = curl_multi_info_read(l->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		void *private_data = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&private_data);
		if (private_data != NULL)
			l->done(private_data, msg->data.result);
	}
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
	struct watch *w = arg;
	struct curl_loop *l = w->loop;
	int flags =
	    ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
	int running = 0;
	curl_multi_socket_action(l->multi, fd, flags, &running);
	drain_done(l);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct curl_loop *l = arg;
	int running = 0;
	curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	drain_done(l);
}

/* CURLMOPT_SOCKETFUNCTION: watch, change or forget a socket. */
static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	(void)easy;
	struct curl_loop *l = userp;
	struct watch *w = socketp;
	if (what == CURL_POLL_REMOVE) {
		if (w != NULL) {
			event_free(w->ev);
			free(w);
			curl_multi_assign(l->multi, fd, NULL);
		}
		return 0;
	}
	short events = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
	               ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
	if (w == NULL) {
		if ((w = calloc(1, sizeof(*w))) == NULL)
			return -1;
		w->loop = l;
		curl_multi_assign(l->multi, fd, w);
	} else {
		event_free(w->ev);
	}
	w->ev = event_new(l->base, fd, events, on_socket, w);
	if (w->ev == NULL || event_add(w->ev, NULL) < 0)
		return -1;
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: one timer for the whole multi handle. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	(void)multi;
	struct curl_loop *l = userp;
	if (timeout_ms < 0)
		return evtimer_del(l->timer);
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	return evtimer_add(l->timer, &tv);
}

struct curl_loop *curl_loop_new(struct event_base *base, curl_loop_done_fn *done,
                                const char **error_r)
{
	/* Reference-counted by libcurl: every loop's call adds up. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		*error_r = "libcurl cannot start";
		return NULL;
	}
	struct curl_loop *l = calloc(1, sizeof(*l));
	if (l == NULL || (l->multi = curl_multi_init()) == NULL ||
	    (l->timer = evtimer_new(base, on_timer, l)) == NULL) {
		if (l != NULL && l->multi != NULL)
			curl_multi_cleanup(l->multi);
		free(l);
		*error_r = "out of memory";
		return NULL;
	}
	l->base = base;
	l->done = done;
	curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, l);
	curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, l);
	return l;
}

void curl_loop_free(struct curl_loop **loop)
{
	struct curl_loop *l = *loop;
	if (l == NULL)
		return;
	curl_multi_cleanup(l->multi);
	event_free(l->timer);
	free(l);
	*loop = NULL;
}

int curl_loop_add(struct curl_loop *l, CURL *easy)
{
	return curl_multi_add_handle(l->multi, easy) == CURLM_OK ? 0 : -1;
}

void curl_loop_remove(struct curl_loop *l, CURL *easy)
{
	curl_multi_remove_handle(l->multi, easy);
}

/* The operator's CA file beside the system CAs (CURLOPT_CAINFO would replace them). */
static CURLcode add_ca_file(CURL *easy, void *ssl_ctx, void *arg)
{
	(void)easy;
	const char *path = arg;
	X509_STORE *store = SSL_CTX_get_cert_store(ssl_ctx);
	return X509_STORE_load_file(store, path) == 1 ? CURLE_OK : CURLE_SSL_CACERT_BADFILE;
}

int curl_loop_post_setup(CURL *e, const struct curl_loop_post *p)
{
	bool ok = curl_easy_setopt(e, CURLOPT_URL, p->url) == CURLE_OK &&
	          curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, p->protocols) == CURLE_OK &&
	          curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
	          curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK &&
	          curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK &&
	          curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
	          curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, p->timeout_ms) == CURLE_OK &&
	          curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, p->timeout_ms) == CURLE_OK &&
	          curl_easy_setopt(e, CURLOPT_POSTFIELDS, p->body) == CURLE_OK &&
	          curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)p->body_len) == CURLE_OK &&
	          curl_easy_setopt(e, CURLOPT_HTTPHEADER, p->headers) == CURLE_OK &&
	          curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, p->on_reply) == CURLE_OK &&
	          curl_easy_setopt(e, CURLOPT_WRITEDATA, p->private_data) == CURLE_OK &&
	          curl_easy_setopt(e, CURLOPT_ERRORBUFFER, p->error_buffer) == CURLE_OK &&
	          curl_easy_setopt(e, CURLOPT_PRIVATE, p->private_data) == CURLE_OK &&
	          curl_easy_setopt(e, CURLOPT_USERAGENT, p->user_agent) == CURLE_OK;
	if (ok && p->no_proxy)
		ok = curl_easy_setopt(e, CURLOPT_PROXY, "") == CURLE_OK;
	if (ok && p->ca_file != NULL && p->ca_file[0] != '\0') {
		/* libcurl caches one CA store per multi handle: ours must not leak into it. */
		ok = curl_easy_setopt(e, CURLOPT_CA_CACHE_TIMEOUT, 0L) == CURLE_OK &&
		     curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, add_ca_file) == CURLE_OK &&
		     curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, (void *)p->ca_file) == CURLE_OK;
	}
	return ok ? 0 : -1;
}
