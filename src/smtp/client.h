/* The asynchronous SMTP client: one session (RFC 5321) on the libevent loop that connects,
 * secures (implicit TLS or STARTTLS, RFC 3207), authenticates (RFC 4954: PLAIN, LOGIN, XOAUTH2)
 * and then carries any number of messages, pipelined (RFC 2920) when the server offers it.
 *
 * The caller queues messages with smtp_client_send(); each one comes back exactly once through
 * `message_done` with a result per recipient, never from inside smtp_client_send() (one the
 * server cannot take comes back from the loop right after). A session failure (connection lost,
 * timeout, a 421, a TLS or AUTH failure) completes every queued message as a temporary failure of
 * that class before `session_failed` — a message whose final dot was sent but not answered is never
 * reported as sent.
 *
 * Ownership: the caller owns each struct smtp_message (and the strings and data it points to)
 * until its `message_done`; the client copies the params (the secret too, wiped on free). The
 * caller frees the client with smtp_client_free(), also allowed from inside a callback. */
#ifndef MT_SMTP_CLIENT_H
#define MT_SMTP_CLIENT_H

#include "lib/cidr.h"
#include "lib/failure.h"
#include "lib/limits.h"
#include "lib/secret.h"
#include "net/security.h"
#include "net/tls.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evdns_base;
struct smtp_client;

enum smtp_auth {
	SMTP_AUTH_NONE,
	SMTP_AUTH_PASSWORD, /* PLAIN when offered, else LOGIN */
	SMTP_AUTH_PLAIN,
	SMTP_AUTH_LOGIN,
	SMTP_AUTH_XOAUTH2,
};

/* "none" / "password" / "plain" / "login" / "xoauth2"; -1 when unknown. */
int smtp_auth_parse(const char *name, enum smtp_auth *auth_r);

struct smtp_client_params {
	const char *host;
	uint16_t port;
	enum mt_security security;
	const char *helo_name; /* NULL: this host's name when it is qualified, else "localhost" */
	enum smtp_auth auth;
	const char *username;
	const struct mt_secret *secret; /* password or OAuth access token; copied */
	struct mt_tls_config *tls;      /* borrowed; must outlive the client */
	const struct mt_tls_pin *pin;   /* NULL: CA and host-name verification */
	const char *bind_address;
	bool no_pipelining;       /* never pipeline, even when offered */
	unsigned pipeline_window; /* commands in flight; 0 = MT_SMTP_PIPELINE_WINDOW */
	int reply_timeout_ms;     /* 0 = RFC 5321 §4.5.3.2 per-command timeouts */
	int connect_timeout_ms;   /* 0 = 30 s */
	int greeting_timeout_ms;  /* the 220 banner; 0 = reply_timeout_ms or RFC 5321's 5 min */
	/* A user-supplied host: see mt_conn_params (never the server's own network). */
	bool public_only;
	const struct mt_cidr_list *allow_private;
};

enum smtp_outcome {
	SMTP_OUTCOME_SENT,    /* every recipient accepted and the data acknowledged */
	SMTP_OUTCOME_PARTIAL, /* data acknowledged for some recipients, others refused */
	SMTP_OUTCOME_FAILED,  /* nobody got it; see cls / permanent */
};

const char *smtp_outcome_name(enum smtp_outcome outcome);

struct smtp_rcpt_result {
	bool accepted; /* final: the server took responsibility for this recipient */
	enum mt_failure_class cls;
	bool permanent;
	char reply[512];
};

struct smtp_message {
	/* Input */
	const char *mail_from; /* envelope sender, without <> ("" for the null sender) */
	const char *const *rcpts;
	size_t rcpt_count; /* 1..MT_SMTP_RCPTS_MAX */
	/* The RFC 5322 message is head then data (LF or CRLF line ends; dot-stuffed here): a
	 * caller may keep the header fields that depend on the route apart from the stored rest.
	 * head may be NULL. */
	const char *head;
	size_t head_len;
	const char *data;
	size_t data_len;
	/* Whether data has a byte over 0x7f (BODY=8BITMIME), when the caller found out off the
	 * loop; else (SMTP_DATA_8BIT_UNKNOWN, 0) the client scans it on the loop. */
	enum smtp_data_8bit {
		SMTP_DATA_8BIT_UNKNOWN = 0,
		SMTP_DATA_7BIT,
		SMTP_DATA_8BIT,
	} data_8bit;
	void *user;
	/* Output, valid in message_done */
	struct smtp_rcpt_result *results; /* caller-provided array of rcpt_count */
	enum smtp_outcome outcome;
	enum mt_failure_class cls; /* MT_CLASS_NONE when sent */
	bool permanent;
	char reply[512]; /* the reply that decided the outcome */
	/* Private to the client */
	struct smtp_message *next_;
};

struct smtp_failure {
	enum mt_failure_class cls;
	bool permanent;
	char reason[256];
	char reply[512];                          /* server reply, if one caused it */
	char fingerprint[MT_TLS_FINGERPRINT_MAX]; /* presented certificate, on tls failures */
};

struct smtp_client_callbacks {
	/* Connected, secured and authenticated. */
	void (*ready)(void *ctx);
	void (*message_done)(void *ctx, struct smtp_message *message);
	/* The session broke; every queued message was completed before this. */
	void (*session_failed)(void *ctx, const struct smtp_failure *failure);
	/* QUIT answered (or the connection closed after QUIT). */
	void (*closed)(void *ctx);
	/* One protocol line, direction 'C' or 'S', without CRLF. Secrets are masked by protocol
	 * state (AUTH arguments, LOGIN answers) and message data is summarised. Optional. */
	void (*transcript)(void *ctx, char direction, const char *line, size_t len);
};

struct smtp_client *smtp_client_new(struct event_base *base, struct evdns_base *dns,
                                    const struct smtp_client_params *params,
                                    const struct smtp_client_callbacks *callbacks, void *ctx,
                                    const char **error_r);
void smtp_client_free(struct smtp_client **client);

/* Queues a message. -1 (and the message is not taken) when the session has failed or is
 * quitting, the queue is full (MT_SMTP_SESSION_QUEUE_MAX), or the message is malformed
 * (*error_r). */
int smtp_client_send(struct smtp_client *client, struct smtp_message *message,
                     const char **error_r);
/* Sends QUIT once every queued message is done. */
void smtp_client_quit(struct smtp_client *client);
/* Messages queued and not yet completed. */
size_t smtp_client_pending(const struct smtp_client *client);
/* What the server offered (valid after `ready`). */
bool smtp_client_pipelining(const struct smtp_client *client);
const char *smtp_client_state_name(const struct smtp_client *client);

#endif
