#include "webhook/client.h"
#include "http_client/curl_loop.h"
#include "lib/limits.h"
#include "lib/str.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

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
	char ca_file[MT_CA_FILE_PATH_MAX];
	char curl_error[CURL_ERROR_SIZE];
	webhook_post_done_fn *done;
	void *ctx;
};

struct webhook_client {
	struct curl_loop *loop;
	struct request *requests;
	size_t inflight;
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
		curl_loop_remove(c->loop, q->easy);
		curl_easy_cleanup(q->easy);
	}
	curl_slist_free_all(q->headers);
	free(q->body);
	free(q);
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

static void finish(void *private_data, CURLcode code)
{
	struct request *q = private_data;
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

struct webhook_client *webhook_client_new(struct event_base *base, const char **error_r)
{
	struct webhook_client *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	if ((c->loop = curl_loop_new(base, finish, error_r)) == NULL) {
		free(c);
		return NULL;
	}
	return c;
}

void webhook_client_free(struct webhook_client **client)
{
	struct webhook_client *c = *client;
	if (c == NULL)
		return;
	while (c->requests != NULL)
		request_free(c->requests);
	curl_loop_free(&c->loop);
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
	if (p->ca_file != NULL && strlen(p->ca_file) >= MT_CA_FILE_PATH_MAX) {
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
	const struct curl_loop_post post = {
	    .url = p->url,
	    .protocols = https ? "https" : "http",
	    .body = q->body,
	    .body_len = p->body_len,
	    .headers = q->headers,
	    .on_reply = on_body,
	    .private_data = q,
	    .error_buffer = q->curl_error,
	    .user_agent = "mailtrail-webhooks",
	    .timeout_ms = timeout,
	    .no_proxy = true,
	    .ca_file = q->ca_file,
	};
	CURL *e = q->easy = ok ? curl_easy_init() : NULL;
	ok = e != NULL && curl_loop_post_setup(e, &post) == 0 &&
	     curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket) == CURLE_OK &&
	     curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, q) == CURLE_OK;
	if (!ok || curl_loop_add(c->loop, e) < 0) {
		request_free(q);
		*error_r = "the delivery cannot be set up";
		return -1;
	}
	return 0;
}
