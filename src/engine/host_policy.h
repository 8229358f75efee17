/* Whether a user-supplied mail host may be used: it must not reach the server's own network
 * (DESIGN.md §1). The host is resolved (evdns) and every address it has is checked: a
 * loopback, private, link-local or unique-local address is refused unless the operator's
 * `allow_private_hosts` covers it. One bad address refuses the host, so a name cannot hide a
 * private address behind a public one.
 *
 * Ownership: the check copies the host; `done` is called exactly once, always from the loop
 * (never from inside host_policy_check). */
#ifndef MT_ENGINE_HOST_POLICY_H
#define MT_ENGINE_HOST_POLICY_H

#include "lib/cidr.h"

#include <stdbool.h>

struct evdns_base;
struct event_base;

enum host_verdict {
	HOST_ALLOWED,
	HOST_PRIVATE,      /* resolves to an address of the server's own network */
	HOST_UNRESOLVABLE, /* no address */
	HOST_INVALID,      /* not a host name or IP literal */
};

/* `reason` is a sentence for the API's error message. */
typedef void host_policy_done_fn(void *ctx, enum host_verdict verdict, const char *reason);

void host_policy_check(struct event_base *base, struct evdns_base *dns, const char *host,
                       const struct mt_cidr_list *allow_private, host_policy_done_fn *done,
                       void *ctx);

/* Syntax only: an LDH host name (labels 1..63, total <= 253) or an IPv4/IPv6 literal. */
bool host_name_valid(const char *host);

#endif
