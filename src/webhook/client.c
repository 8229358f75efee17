#include "webhook/client.h"
#include "lib/limits.h"
#include "lib/str.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <inttypes.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define CA_FILE_PATH_MAX 4096

struct request {
	struct webhook_client *client;
	struct request *prev, *next;
	CURL *easy;
	struct curl_slist *headers;
	char *body;
	size_t reply_len;
	const struct mt_cidr_list *allow_private;
	bool refused; /* the opensocket check turned an address down */
	char refused_addr[INET6_ADDRSTRLEN];
	char ca_file[CA_FILE_PATH_MAX];
	char curl_error[CURL_ERROR_SIZE];
	webhook_post_done_fn *done;
	void *ctx;
};

struct webhook_client {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	struct request *requests;
	size_t inflight;
};

struct watch {
	struct webhook_client *client;
	struct event *ev;
};

void webhook_sign(const unsigned char *secret, size_t secret_len, int64_t t, const char *body,
                  size_t body_len, char out[WEBHOOK_SIGNATURE_MAX])
{
	char stamp[24];
	int n = snprintf(stamp, sizeof(stamp), "%" PRId64 ".", t);
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, secret, secret_len);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)stamp, (size_t)n);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, body_len);
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_memzero(&st, sizeof(st));
	char hex[2 * sizeof(mac) + 1];
	sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
	snprintf(out, WEBHOOK_SIGNATURE_MAX, "t=%" PRId64 ",v1=%s", t, hex);
}

int webhook_url_host(const char *url, char *host, size_t host_size, bool *https_r)
{
	const char *p;
	if (strncasecmp(url, "https://", 8) == 0) {
		*https_r = true;
		p = url + 8;
	} else if (strncasecmp(url, "http://", 7) == 0) {
		*https_r = false;
		p = url + 7;
	} else {
		return -1;
	}
	size_t auth = strcspn(p, "/?#");
	if (memchr(p, '@', auth) != NULL)
		return -1; /* userinfo: credentials in a URL we would show back */
	const char *end;
	const char *start = p;
	if (*p == '[') {
		start = p + 1;
		end = memchr(start, ']', auth);
		if (end == NULL)
			return -1;
	} else {
		end = p + strcspn(p, ":/?#");
	}
	size_t len = (size_t)(end - start);
	if (len == 0 || len >= host_size)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)start[i];
		if (c <= ' ' || c >= 0x7f)
			return -1;
		host[i] = (char)tolower(c);
	}
	host[len] = '\0';
	for (const char *c = url; *c != '\0'; c++) {
		if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
			return -1;
	}
	return 0;
}

static void drain_done(struct webhook_client *c);

static void request_free(struct request *q)
{
	struct webhook_client *c = q->client;
	if (q->prev != NULL)
		q->prev->next = q->next;
	else
		c->requests = q->next;
	if (q->next != NULL)
		q->next->prev = q->prev;
	c->inflight--;
	if (q->easy != NULL) {
		curl_multi_remove_handle(c->multi, q->easy);
		curl_easy_cleanup(q->easy);
	}
	curl_slist_free_all(q->headers);
	free(q->body);
	free(q);
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
	struct watch *w = arg;
	struct webhook_client *c = w->client;
	int flags =
	    ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
	int running = 0;
	curl_multi_socket_action(c->multi, fd, flags, &running);
	drain_done(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct webhook_client *c = arg;
	int running = 0;
	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	drain_done(c);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	(void)easy;
	struct webhook_client *c = userp;
	struct watch *w = socketp;
	if (what == CURL_POLL_REMOVE) {
		if (w != NULL) {
			event_free(w->ev);
			free(w);
			curl_multi_assign(c->multi, fd, NULL);
		}
		return 0;
	}
	short events = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
	               ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
	if (w == NULL) {
		if ((w = calloc(1, sizeof(*w))) == NULL)
			return -1;
		w->client = c;
		curl_multi_assign(c->multi, fd, w);
	} else {
		event_free(w->ev);
	}
	w->ev = event_new(c->base, fd, events, on_socket, w);
	if (w->ev == NULL || event_add(w->ev, NULL) < 0)
		return -1;
	return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	(void)multi;
	struct webhook_client *c = userp;
	if (timeout_ms < 0)
		return evtimer_del(c->timer);
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	return evtimer_add(c->timer, &tv);
}

/* The reply is not used (the status says it all): counted and dropped. */
static size_t on_body(char *data, size_t size, size_t count, void *arg)
{
	(void)data;
	struct request *q = arg;
	size_t len = size * count;
	q->reply_len += len;
	return q->reply_len > MT_WEBHOOK_RESPONSE_MAX ? 0 : len;
}

/* The SSRF rule on the address actually connected to (after libcurl's own resolution). */
static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct request *q = arg;
	if (purpose != CURLSOCKTYPE_IPCXN)
		return CURL_SOCKET_BAD;
	const struct sockaddr *sa = &a->addr;
	if (mt_addr_is_private(sa) &&
	    (q->allow_private == NULL || !mt_cidr_list_contains(q->allow_private, sa))) {
		q->refused = true;
		if (sa->sa_family == AF_INET)
			inet_ntop(AF_INET,
			          &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
			          q->refused_addr, sizeof(q->refused_addr));
		else if (sa->sa_family == AF_INET6)
			inet_ntop(AF_INET6,
			          &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
			          q->refused_addr, sizeof(q->refused_addr));
		return CURL_SOCKET_BAD;
	}
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static CURLcode add_ca_file(CURL *easy, void *ssl_ctx, void *arg)
{
	(void)easy;
	struct request *q = arg;
	X509_STORE *store = SSL_CTX_get_cert_store(ssl_ctx);
	return X509_STORE_load_file(store, q->ca_file) == 1 ? CURLE_OK : CURLE_SSL_CACERT_BADFILE;
}

static void finish(struct request *q, CURLcode code)
{
	long status = 0;
	char error[MT_ERROR_TEXT_MAX] = "";
	if (code == CURLE_OK || (code == CURLE_WRITE_ERROR && q->reply_len > 0))
		curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status);
	if (q->refused)
		snprintf(error, sizeof(error),
		         "the receiver's address %s is on the server's own network "
		         "(allow_private_hosts)",
		         q->refused_addr);
	else if (code != CURLE_OK && status == 0)
		snprintf(error, sizeof(error), "%.300s",
		         q->curl_error[0] != '\0' ? q->curl_error : curl_easy_strerror(code));
	webhook_post_done_fn *done = q->done;
	void *ctx = q->ctx;
	request_free(q);
	done(ctx, (int)status, error);
}

static void drain_done(struct webhook_client *c)
{
	CURLMsg *msg;
	int left = 0;
	while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		struct request *q = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&q);
		if (q != NULL)
			finish(q, msg->data.result);
	}
}

struct webhook_client *webhook_client_new(struct event_base *base, const char **error_r)
{
	/* curl_global_init is reference-counted: the OAuth refresher's call and ours add up. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		*error_r = "libcurl cannot start";
		return NULL;
	}
	struct webhook_client *c = calloc(1, sizeof(*c));
	if (c == NULL || (c->multi = curl_multi_init()) == NULL ||
	    (c->timer = evtimer_new(base, on_timer, c)) == NULL) {
		if (c != NULL && c->multi != NULL)
			curl_multi_cleanup(c->multi);
		free(c);
		*error_r = "out of memory";
		return NULL;
	}
	c->base = base;
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	return c;
}

void webhook_client_free(struct webhook_client **client)
{
	struct webhook_client *c = *client;
	if (c == NULL)
		return;
	while (c->requests != NULL)
		request_free(c->requests);
	curl_multi_cleanup(c->multi);
	event_free(c->timer);
	free(c);
	*client = NULL;
}

int webhook_client_post(struct webhook_client *c, const struct webhook_post *p,
                        webhook_post_done_fn *done, void *ctx, const char **error_r)
{
	char host[MT_HOSTNAME_MAX + 1];
	bool https = false;
	if (p->url == NULL || strlen(p->url) > MT_WEBHOOK_URL_MAX ||
	    webhook_url_host(p->url, host, sizeof(host), &https) < 0) {
		*error_r = "not an http(s) URL";
		return -1;
	}
	if (!https && !p->allow_http) {
		*error_r = "plain http is not allowed to this host";
		return -1;
	}
	if (p->body_len > MT_WEBHOOK_PAYLOAD_MAX) {
		*error_r = "the payload is too large";
		return -1;
	}
	if (p->ca_file != NULL && strlen(p->ca_file) >= CA_FILE_PATH_MAX) {
		*error_r = "the CA file's path is too long";
		return -1;
	}
	if (c->inflight >= MT_WEBHOOK_INFLIGHT_MAX) {
		*error_r = "too many deliveries in flight";
		return -1;
	}
	struct request *q = calloc(1, sizeof(*q));
	if (q == NULL || (q->body = malloc(p->body_len + 1)) == NULL) {
		free(q);
		*error_r = "out of memory";
		return -1;
	}
	memcpy(q->body, p->body, p->body_len);
	q->body[p->body_len] = '\0';
	q->client = c;
	q->next = c->requests;
	if (c->requests != NULL)
		c->requests->prev = q;
	c->requests = q;
	c->inflight++;
	q->done = done;
	q->ctx = ctx;
	q->allow_private = p->allow_private;
	if (p->ca_file != NULL)
		mt_strlcpy(q->ca_file, p->ca_file, sizeof(q->ca_file));
	char sig[WEBHOOK_SIGNATURE_MAX + 40], evid[MT_ID_MAX + 64];
	snprintf(sig, sizeof(sig), "X-Mailtrail-Signature: %s", p->signature);
	snprintf(evid, sizeof(evid), "X-Mailtrail-Event-Id: %s", p->event_id);
	struct curl_slist *h = NULL;
	bool ok = (h = curl_slist_append(h, "Content-Type: application/json")) != NULL &&
	          (q->headers = h) != NULL && (h = curl_slist_append(h, sig)) != NULL &&
	          (h = curl_slist_append(h, evid)) != NULL &&
	          (h = curl_slist_append(h, "Expect:")) != NULL;
	if (h != NULL)
		q->headers = h;
	long timeout = p->timeout_ms > 0 && p->timeout_ms < MT_WEBHOOK_TIMEOUT_MS
	                   ? p->timeout_ms
	                   : MT_WEBHOOK_TIMEOUT_MS;
	CURL *e = q->easy = ok ? curl_easy_init() : NULL;
	ok = e != NULL && curl_easy_setopt(e, CURLOPT_URL, p->url) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, https ? "https" : "http") == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_PROXY, "") == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)p->body_len) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_HTTPHEADER, q->headers) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_WRITEDATA, q) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, q) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_ERRORBUFFER, q->curl_error) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_PRIVATE, q) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_USERAGENT, "mailtrail-webhooks") == CURLE_OK;
	if (ok && q->ca_file[0] != '\0') {
		ok = curl_easy_setopt(e, CURLOPT_CA_CACHE_TIMEOUT, 0L) == CURLE_OK &&
		     curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, add_ca_file) == CURLE_OK &&
		     curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, q) == CURLE_OK;
	}
	if (!ok || curl_multi_add_handle(c->multi, e) != CURLM_OK) {
		request_free(q);
		*error_r = "the delivery cannot be set up";
		return -1;
	}
	return 0;
}
