#include "oauth/refresh.h"
#include "http_client/curl_loop.h"
#include "lib/buf.h"
#include "lib/limits.h"
#include "lib/str.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct request {
	struct oauth_refresher *refresher;
	struct request *prev, *next;
	CURL *easy;
	struct curl_slist *headers;
	struct mt_buf form;  /* the POST body: holds the refresh token and the client secret */
	struct mt_buf reply; /* capped at MT_OAUTH_RESPONSE_MAX */
	bool reply_over_cap;
	char ca_file[MT_CA_FILE_PATH_MAX];
	char curl_error[CURL_ERROR_SIZE];
	oauth_refresh_done_fn *done;
	void *ctx;
};

struct oauth_refresher {
	struct curl_loop *loop;
	struct request *requests;
	size_t inflight;
};

static void request_free(struct request *q)
{
	struct oauth_refresher *r = q->refresher;
	if (q->prev != NULL)
		q->prev->next = q->next;
	else
		r->requests = q->next;
	if (q->next != NULL)
		q->next->prev = q->prev;
	r->inflight--;
	if (q->easy != NULL) {
		curl_loop_remove(r->loop, q->easy);
		curl_easy_cleanup(q->easy);
	}
	curl_slist_free_all(q->headers);
	mt_buf_free_wipe(&q->form);
	mt_buf_free_wipe(&q->reply);
	free(q);
}

static size_t on_body(char *data, size_t size, size_t count, void *arg)
{
	struct request *q = arg;
	size_t len = size * count;
	if (q->reply.len + len > MT_OAUTH_RESPONSE_MAX) {
		q->reply_over_cap = true;
		return 0; /* libcurl ends the transfer: CURLE_WRITE_ERROR */
	}
	return mt_buf_append(&q->reply, data, len) == 0 ? len : 0;
}

static void finish(void *private_data, CURLcode code)
{
	struct request *q = private_data;
	struct oauth_token_reply reply;
	memset(&reply, 0, sizeof(reply));
	long status = 0;
	curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status);
	const char *error = NULL;
	if (code != CURLE_OK) {
		reply.outcome = OAUTH_TEMPORARY;
		if (q->reply_over_cap)
			snprintf(reply.reason, sizeof(reply.reason),
			         "the token endpoint's reply is over %d bytes",
			         MT_OAUTH_RESPONSE_MAX);
		else
			snprintf(reply.reason, sizeof(reply.reason), "token endpoint: %.200s",
			         q->curl_error[0] != '\0' ? q->curl_error
			                                  : curl_easy_strerror(code));
	} else if (oauth_token_reply_parse(status, q->reply.data, q->reply.len, &reply, &error) <
	           0) {
		reply.outcome = OAUTH_TEMPORARY;
		snprintf(reply.reason, sizeof(reply.reason),
		         "the token endpoint's reply (HTTP %ld) cannot be read: %s", status, error);
	}
	oauth_refresh_done_fn *done = q->done;
	void *ctx = q->ctx;
	request_free(q);
	done(ctx, &reply);
	oauth_token_reply_clear(&reply);
}

struct oauth_refresher *oauth_refresher_new(struct event_base *base, const char **error_r)
{
	struct oauth_refresher *r = calloc(1, sizeof(*r));
	if (r == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	if ((r->loop = curl_loop_new(base, finish, error_r)) == NULL) {
		free(r);
		return NULL;
	}
	return r;
}

void oauth_refresher_free(struct oauth_refresher **refresher)
{
	struct oauth_refresher *r = *refresher;
	if (r == NULL)
		return;
	while (r->requests != NULL)
		request_free(r->requests);
	curl_loop_free(&r->loop);
	free(r);
	*refresher = NULL;
}

/* application/x-www-form-urlencoded (RFC 6749 Appendix B): unreserved bytes as they are, the
 * rest %XX. Written into our buffer rather than curl_easy_escape's, so that it can be wiped. */
static int form_add(struct mt_buf *form, const char *name, const unsigned char *value, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	if ((form->len > 0 && mt_buf_append(form, "&", 1) < 0) ||
	    mt_buf_append(form, name, strlen(name)) < 0 || mt_buf_append(form, "=", 1) < 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = value[i];
		char enc[3] = {'%', hex[c >> 4], hex[c & 15]};
		bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		             (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
		if (mt_buf_append(form, plain ? (const char *)&value[i] : enc, plain ? 1 : 3) < 0)
			return -1;
	}
	return 0;
}

static int form_add_str(struct mt_buf *form, const char *name, const char *value)
{
	return form_add(form, name, (const unsigned char *)value, strlen(value));
}

static int refresh_form(struct mt_buf *form, const struct oauth_refresh_params *p)
{
	if (form_add_str(form, "grant_type", "refresh_token") < 0 ||
	    form_add(form, "refresh_token", mt_secret_bytes(p->refresh_token),
	             mt_secret_len(p->refresh_token)) < 0 ||
	    form_add_str(form, "client_id", p->client_id) < 0)
		return -1;
	if (p->client_secret != NULL &&
	    form_add(form, "client_secret", mt_secret_bytes(p->client_secret),
	             mt_secret_len(p->client_secret)) < 0)
		return -1;
	if (p->scope != NULL && form_add_str(form, "scope", p->scope) < 0)
		return -1;
	return 0;
}

static int exchange_form(struct mt_buf *form, const struct oauth_exchange_params *p)
{
	if (form_add_str(form, "grant_type", "authorization_code") < 0 ||
	    form_add(form, "code", mt_secret_bytes(p->code), mt_secret_len(p->code)) < 0 ||
	    form_add_str(form, "redirect_uri", p->redirect_uri) < 0 ||
	    form_add(form, "code_verifier", mt_secret_bytes(p->code_verifier),
	             mt_secret_len(p->code_verifier)) < 0 ||
	    form_add_str(form, "client_id", p->client_id) < 0)
		return -1;
	if (p->client_secret != NULL &&
	    form_add(form, "client_secret", mt_secret_bytes(p->client_secret),
	             mt_secret_len(p->client_secret)) < 0)
		return -1;
	return 0;
}

static size_t secret_len(const struct mt_secret *s)
{
	return s != NULL ? mt_secret_len(s) : 0;
}

static size_t str_len(const char *s)
{
	return s != NULL ? strlen(s) : 0;
}

/* Every byte a form can take (3 per value byte), reserved at once: a buffer that grew would
 * leave copies of the secrets in freed memory. */
static size_t form_size(size_t values)
{
	return 3 * values + 256;
}

static int check_endpoint(const char *token_url, const char *client_id, const char *ca_file,
                          const char **error_r)
{
	if (token_url == NULL || strncmp(token_url, "https://", 8) != 0 ||
	    strlen(token_url) > MT_OAUTH_URL_MAX) {
		*error_r = "the token endpoint must be an https:// URL";
		return -1;
	}
	if (client_id == NULL || client_id[0] == '\0' ||
	    strlen(client_id) > MT_OAUTH_CLIENT_ID_MAX) {
		*error_r = "a client id is required";
		return -1;
	}
	if (ca_file != NULL && strlen(ca_file) >= MT_CA_FILE_PATH_MAX) {
		*error_r = "the CA file's path is too long";
		return -1;
	}
	return 0;
}

static bool secret_ok(const struct mt_secret *s)
{
	return s != NULL && mt_secret_len(s) > 0 && mt_secret_len(s) <= MT_OAUTH_TOKEN_MAX;
}

/* A request with its form reserved (form_max bytes), linked into the refresher. */
static struct request *request_new(struct oauth_refresher *r, size_t form_max,
                                   oauth_refresh_done_fn *done, void *ctx, const char **error_r)
{
	if (r->inflight >= MT_OAUTH_REQUESTS_MAX) {
		*error_r = "too many token requests in flight";
		return NULL;
	}
	struct request *q = calloc(1, sizeof(*q));
	if (q == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	q->refresher = r;
	q->next = r->requests;
	if (r->requests != NULL)
		r->requests->prev = q;
	r->requests = q;
	r->inflight++;
	q->done = done;
	q->ctx = ctx;
	mt_buf_init(&q->form, form_max);
	mt_buf_init(&q->reply, MT_OAUTH_RESPONSE_MAX);
	/* The reply holds the new token: reserved whole for the same reason as the form. */
	if (mt_buf_reserve(&q->form, form_max) == NULL ||
	    mt_buf_reserve(&q->reply, MT_OAUTH_RESPONSE_MAX) == NULL) {
		request_free(q);
		*error_r = "out of memory";
		return NULL;
	}
	return q;
}

/* Sends the request's form to token_url; on failure the request is freed. */
static int request_start(struct request *q, const char *token_url, const char *ca_file,
                         long timeout_ms, const char **error_r)
{
	struct oauth_refresher *r = q->refresher;
	if (ca_file != NULL)
		mt_strlcpy(q->ca_file, ca_file, sizeof(q->ca_file));
	long timeout = timeout_ms > 0 ? timeout_ms : MT_OAUTH_TIMEOUT_MS;
	CURL *e = q->easy = curl_easy_init();
	bool ok =
	    e != NULL && (q->headers = curl_slist_append(NULL, "Accept: application/json")) != NULL;
	const struct curl_loop_post post = {
	    .url = token_url,
	    .protocols = "https",
	    .body = q->form.data,
	    .body_len = q->form.len,
	    .headers = q->headers,
	    .on_reply = on_body,
	    .private_data = q,
	    .error_buffer = q->curl_error,
	    .user_agent = "mailtrail",
	    .timeout_ms = timeout,
	    .ca_file = q->ca_file,
	};
	ok = ok && curl_loop_post_setup(e, &post) == 0;
	if (!ok || curl_loop_add(r->loop, e) < 0) {
		request_free(q);
		*error_r = "the token request cannot be set up";
		return -1;
	}
	return 0;
}

int oauth_refresh(struct oauth_refresher *r, const struct oauth_refresh_params *p,
                  oauth_refresh_done_fn *done, void *ctx, const char **error_r)
{
	if (check_endpoint(p->token_url, p->client_id, p->ca_file, error_r) < 0)
		return -1;
	if (!secret_ok(p->refresh_token)) {
		*error_r = "a refresh token is required";
		return -1;
	}
	size_t values = secret_len(p->refresh_token) + str_len(p->client_id) +
	                secret_len(p->client_secret) + str_len(p->scope);
	struct request *q = request_new(r, form_size(values), done, ctx, error_r);
	if (q == NULL)
		return -1;
	if (refresh_form(&q->form, p) < 0) {
		request_free(q);
		*error_r = "the token request is too large";
		return -1;
	}
	return request_start(q, p->token_url, p->ca_file, p->timeout_ms, error_r);
}

int oauth_exchange(struct oauth_refresher *r, const struct oauth_exchange_params *p,
                   oauth_refresh_done_fn *done, void *ctx, const char **error_r)
{
	if (check_endpoint(p->token_url, p->client_id, p->ca_file, error_r) < 0)
		return -1;
	if (!secret_ok(p->code) || !secret_ok(p->code_verifier) || p->redirect_uri == NULL ||
	    strlen(p->redirect_uri) > MT_OAUTH_URL_MAX) {
		*error_r = "a code, its verifier and the redirect URI are required";
		return -1;
	}
	size_t values = secret_len(p->code) + str_len(p->redirect_uri) +
	                secret_len(p->code_verifier) + str_len(p->client_id) +
	                secret_len(p->client_secret);
	struct request *q = request_new(r, form_size(values), done, ctx, error_r);
	if (q == NULL)
		return -1;
	if (exchange_form(&q->form, p) < 0) {
		request_free(q);
		*error_r = "the token request is too large";
		return -1;
	}
	return request_start(q, p->token_url, p->ca_file, p->timeout_ms, error_r);
}
