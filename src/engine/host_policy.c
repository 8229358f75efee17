#include "engine/host_policy.h"

#include "lib/limits.h"
#include "lib/str.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

struct host_check {
	struct event_base *base;
	struct event *deliver;
	const struct mt_cidr_list *allow;
	host_policy_done_fn *done;
	void *ctx;
	char host[MT_HOSTNAME_MAX + 1];
	enum host_verdict verdict;
	char reason[MT_HOSTNAME_MAX + 160];
};

bool host_name_valid(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];
	if (inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1)
		return true;
	size_t len = strlen(host);
	if (len == 0 || len > MT_HOST_FIELD_MAX)
		return false;
	size_t label = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)host[i];
		if (c == '.') {
			if (label == 0 || host[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!(isalnum(c) || c == '-') || (c == '-' && label == 0) || ++label > 63)
			return false;
	}
	return label > 0 || host[len - 1] == '.';
}

/* Results are delivered from a zero-delay timer so the caller never sees its callback run
 * inside host_policy_check (evdns answers literals synchronously). */
static void deliver(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct host_check *check = arg;
	event_free(check->deliver);
	check->done(check->ctx, check->verdict, check->reason);
	free(check);
}

static void schedule(struct host_check *check)
{
	check->deliver = evtimer_new(check->base, deliver, check);
	struct timeval zero = {0, 0};
	evtimer_add(check->deliver, &zero);
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	struct host_check *check = arg;
	if (result != 0 || res == NULL) {
		check->verdict = HOST_UNRESOLVABLE;
		snprintf(check->reason, sizeof(check->reason), "host '%s' cannot be resolved: %s",
		         check->host, result != 0 ? evutil_gai_strerror(result) : "no address");
	} else {
		check->verdict = HOST_ALLOWED;
		for (struct evutil_addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
			if (!mt_addr_is_private(ai->ai_addr) ||
			    mt_cidr_list_contains(check->allow, ai->ai_addr))
				continue;
			char text[INET6_ADDRSTRLEN] = "?";
			const void *bytes =
			    ai->ai_family == AF_INET
			        ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
			        : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
			inet_ntop(ai->ai_family, bytes, text, sizeof(text));
			check->verdict = HOST_PRIVATE;
			snprintf(check->reason, sizeof(check->reason),
			         "host '%s' resolves to %s, a private or local address this server "
			         "may not connect to",
			         check->host, text);
			break;
		}
	}
	if (res != NULL)
		evutil_freeaddrinfo(res);
	schedule(check);
}

void host_policy_check(struct event_base *base, struct evdns_base *dns, const char *host,
                       const struct mt_cidr_list *allow_private, host_policy_done_fn *done,
                       void *ctx)
{
	struct host_check *check = calloc(1, sizeof(*check));
	if (check == NULL) {
		done(ctx, HOST_UNRESOLVABLE, "out of memory");
		return;
	}
	check->base = base;
	check->allow = allow_private;
	check->done = done;
	check->ctx = ctx;
	mt_strlcpy(check->host, host, sizeof(check->host));
	if (!host_name_valid(host)) {
		check->verdict = HOST_INVALID;
		snprintf(check->reason, sizeof(check->reason), "'%s' is not a valid host name",
		         check->host);
		schedule(check);
		return;
	}
	struct evutil_addrinfo hints;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	/* "localhost" never leaves the machine: answer it as conn.c does (RFC 6761). */
	size_t len = strlen(host);
	if (strcasecmp(host, "localhost") == 0 ||
	    (len > 10 && strcasecmp(host + len - 10, ".localhost") == 0)) {
		struct sockaddr_in loopback = {.sin_family = AF_INET};
		loopback.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		struct evutil_addrinfo ai = {.ai_family = AF_INET,
		                             .ai_addr = (struct sockaddr *)&loopback,
		                             .ai_addrlen = sizeof(loopback)};
		check->verdict =
		    mt_cidr_list_contains(allow_private, ai.ai_addr) ? HOST_ALLOWED : HOST_PRIVATE;
		if (check->verdict == HOST_PRIVATE)
			snprintf(check->reason, sizeof(check->reason),
			         "host '%s' is this machine, which may not be used", check->host);
		schedule(check);
		return;
	}
	/* A NULL return means on_resolved already ran (a literal, the hosts file, or an error);
	 * either way it owns `check` now. */
	(void)evdns_getaddrinfo(dns, host, NULL, &hints, on_resolved, check);
}
