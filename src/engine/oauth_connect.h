/* After a sign-in with a provider (engine/oauth_flow.c) the accounts it was for are saved on the
 * new grant, each after its live check, as PUT /v1/smtp and PUT /v1/imap with auth xoauth2 and
 * no tokens would: an account the user already set up keeps its server, login and settings and
 * moves onto the grant; without one, the provider's preset with the user's own address. A
 * feature the org has off is skipped. The outcome of each is the flow's `detail` line.
 *
 * Ownership: the connector borrows `accounts` and the store; each connection job owns copies of
 * the grant's names until it calls `finish`. */
#ifndef MT_ENGINE_OAUTH_CONNECT_H
#define MT_ENGINE_OAUTH_CONNECT_H

#include "engine/oauth_flow.h"

struct accounts;
struct store;
struct oauth_connect;

struct oauth_connect *oauth_connect_new(struct accounts *accounts, struct store *store);
void oauth_connect_free(struct oauth_connect **connect);

/* The flow's `granted` hook; ctx is the struct oauth_connect. */
void oauth_connect_granted(void *ctx, const struct oauth_flow_grant *grant,
                           oauth_granted_finish_fn *finish, void *finish_ctx);

/* The IMAP server of a provider's mailboxes ("google", "microsoft"); NULL for another. Pure. */
struct oauth_imap_server {
	const char *host;
	int port;
	const char *security;
};
const struct oauth_imap_server *oauth_connect_imap_server(const char *provider);
/* The SMTP preset of a provider ("gmail", "microsoft365"); NULL for another. Pure. */
const char *oauth_connect_smtp_preset(const char *provider);

#endif
