/* The asynchronous IMAP client (RFC 3501 / RFC 9051): one session on the libevent loop that
 * connects, secures (implicit TLS or STARTTLS, RFC 2595, under the SMTP client's rules: no
 * silent downgrade, plaintext after the STARTTLS go-ahead aborts, PREAUTH on a TLS account
 * aborts), authenticates (AUTHENTICATE PLAIN with SASL-IR, XOAUTH2, or the LOGIN command),
 * enables CONDSTORE / QRESYNC when offered, and then runs operations the caller queues: LIST,
 * SELECT / EXAMINE, UID FETCH in pipelined chunks (BODY.PEEK only: \Seen is never set), UID
 * SEARCH (ESEARCH when offered), APPEND (LITERAL+ and UIDPLUS when offered), IDLE (RFC 2177,
 * re-issued before the server's 30 minutes) or NOOP polling where IDLE is absent, and LOGOUT.
 *
 * Operations run one at a time in the order queued (a FETCH keeps several chunk commands in
 * flight); each completes exactly once through its `done` callback. Mailbox changes the server
 * reports (EXISTS, EXPUNGE, VANISHED, a FETCH that is not an answer) go to `event`, whenever
 * they arrive. A session failure (connection lost, BYE, timeout, TLS, authentication, a
 * response over a cap) completes every queued operation with that class, keeping what was
 * already delivered, before `failed`.
 *
 * Failure classes (lib/failure.h): auth (AUTHENTICATIONFAILED, or NO to LOGIN / AUTHENTICATE),
 * throttle (UNAVAILABLE), conn, tls, proto (a malformed or over-cap response, BAD), resp (an
 * operation refused with NO: the session goes on).
 *
 * Ownership: the client copies the params (the secret too, wiped once logged in, or on free)
 * and the strings and data an operation is given; results passed to callbacks are valid only
 * during the call. The caller frees the client with imap_client_free(), also allowed from
 * inside a callback. Every function returns 0, or -1 with *error_r (static text). */
#ifndef MT_IMAP_CLIENT_H
#define MT_IMAP_CLIENT_H

#include "lib/cidr.h"
#include "lib/failure.h"
#include "lib/limits.h"
#include "lib/secret.h"
#include "net/security.h"
#include "net/tls.h"
#include "proto/imap_fetch.h"
#include "proto/imap_response.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evdns_base;
struct imap_client;

enum imap_auth {
	IMAP_AUTH_PASSWORD, /* AUTHENTICATE PLAIN when offered, else LOGIN */
	IMAP_AUTH_PLAIN,
	IMAP_AUTH_LOGIN, /* the LOGIN command */
	IMAP_AUTH_XOAUTH2,
};

/* "password" / "plain" / "login" / "xoauth2"; -1 when unknown. */
int imap_auth_parse(const char *name, enum imap_auth *auth_r);
const char *imap_auth_name(enum imap_auth auth);

struct imap_client_params {
	const char *host;
	uint16_t port;
	enum mt_security security;
	enum imap_auth auth;
	const char *username;
	const struct mt_secret *secret; /* password or OAuth access token; copied */
	struct mt_tls_config *tls;      /* borrowed; must outlive the client */
	const struct mt_tls_pin *pin;   /* NULL: CA and host-name verification */
	const char *bind_address;
	/* a password over a connection without TLS (security none): the operator's consent */
	bool allow_plaintext_auth;
	int connect_timeout_ms;  /* 0 = 30 s */
	int greeting_timeout_ms; /* 0 = command_timeout_ms */
	int command_timeout_ms;  /* each command's answer; 0 = MT_IMAP_COMMAND_TIMEOUT_MS */
	int idle_restart_ms;     /* IDLE re-issued after; 0 = MT_IMAP_IDLE_RESTART_MS (< 29 min) */
	int poll_interval_ms;    /* NOOP polling without IDLE; 0 = MT_IMAP_POLL_INTERVAL_MS */
	unsigned fetch_window;   /* FETCH chunk commands in flight; 0 = MT_IMAP_FETCH_WINDOW */
	/* A user-supplied host: see mt_conn_params (never the server's own network). */
	bool public_only;
	const struct mt_cidr_list *allow_private;
};

struct imap_failure {
	enum mt_failure_class cls;
	char reason[256];
	char response[512];                       /* the server response that caused it, if any */
	char fingerprint[MT_TLS_FINGERPRINT_MAX]; /* presented certificate, on tls failures */
};

/* A mailbox change reported by the server (unsolicited, or while IDLE / NOOP). */
enum imap_event_kind {
	IMAP_EVENT_EXISTS,   /* number: messages in the mailbox now */
	IMAP_EVENT_EXPUNGE,  /* number: the sequence number removed */
	IMAP_EVENT_VANISHED, /* vanished: UIDs removed (QRESYNC) */
	IMAP_EVENT_FETCH,    /* fetch: flags (or other items) changed */
	IMAP_EVENT_RECENT,   /* number */
};

struct imap_event {
	enum imap_event_kind kind;
	uint32_t number;
	const struct imap_fetch *fetch;
	const struct imap_vanished *vanished;
};

struct imap_mailbox {
	char name[MT_IMAP_MAILBOX_MAX];      /* as sent (modified UTF-7): give this to select */
	char name_utf8[MT_IMAP_MAILBOX_MAX]; /* for people */
	unsigned flags;                      /* enum imap_mbox_flag */
	char delimiter;
};

/* The outcome of one operation. `cls` is MT_CLASS_NONE on success; resp when the server
 * refused it (NO); otherwise the session's failure. */
struct imap_result {
	enum mt_failure_class cls;
	char reason[256];
	char response[512];
	/* LIST */
	const struct imap_mailbox *mailboxes;
	size_t mailbox_count;
	/* SELECT / EXAMINE */
	uint32_t uidvalidity, uidnext, exists;
	uint64_t highestmodseq; /* 0 when the server has none (NOMODSEQ, no CONDSTORE) */
	bool read_only;
	/* FETCH: answers delivered to `on_fetch` (kept when the session failed midway) */
	size_t fetched;
	/* SEARCH: ascending UIDs */
	const uint32_t *uids;
	size_t uid_count;
	/* APPEND (UIDPLUS): 0 when the server did not say */
	uint32_t append_uidvalidity, append_uid;
};

typedef void imap_done_cb(void *ctx, const struct imap_result *result);
/* One FETCH answer of a UID FETCH (UID within the requested range). */
typedef void imap_fetch_cb(void *ctx, const struct imap_fetch *fetch);

struct imap_client_callbacks {
	/* Connected, secured, authenticated, capabilities known, CONDSTORE/QRESYNC enabled. */
	void (*ready)(void *ctx);
	/* The session broke; every queued operation was completed before this. */
	void (*failed)(void *ctx, const struct imap_failure *failure);
	/* LOGOUT answered (or the connection closed after it). */
	void (*closed)(void *ctx);
	void (*event)(void *ctx, const struct imap_event *event); /* optional */
	/* One protocol line, 'C' or 'S', without CRLF; secrets masked by protocol state, literal
	 * data summarised, bounded per response and per session. Optional. */
	void (*transcript)(void *ctx, char direction, const char *line, size_t len);
};

struct imap_client *imap_client_new(struct event_base *base, struct evdns_base *dns,
                                    const struct imap_client_params *params,
                                    const struct imap_client_callbacks *callbacks, void *ctx,
                                    const char **error_r);
void imap_client_free(struct imap_client **client);

/* Operations: queued, run in order once the client is ready. UID FETCH operations queued in a
 * row overlap (the next one's commands go out once the one before has all of its out, within
 * the FETCH window); they still complete in the order they were queued. */

/* LIST "" "*" (RETURN (SPECIAL-USE) when offered). */
int imap_client_list(struct imap_client *client, imap_done_cb *done, void *ctx,
                     const char **error_r);
/* SELECT (or EXAMINE when read_only) of a mailbox name as LIST gave it. */
int imap_client_select(struct imap_client *client, const char *mailbox, bool read_only,
                       imap_done_cb *done, void *ctx, const char **error_r);
/* UID FETCH uid_first:uid_last ITEMS in chunks of `chunk` UIDs (0 = MT_IMAP_FETCH_CHUNK);
 * uid_last UINT32_MAX means "*". `items` is a parenthesised list ("(UID FLAGS ENVELOPE
 * BODY.PEEK[HEADER])"); BODY[ and RFC822 / RFC822.TEXT (which set \Seen) are refused. */
int imap_client_fetch(struct imap_client *client, uint32_t uid_first, uint32_t uid_last,
                      const char *items, uint32_t chunk, imap_fetch_cb *on_fetch,
                      imap_done_cb *done, void *ctx, const char **error_r);
/* UID SEARCH criteria (e.g. "UID 100:*", "SINCE 1-Jan-2026"). */
int imap_client_search(struct imap_client *client, const char *criteria, imap_done_cb *done,
                       void *ctx, const char **error_r);
/* APPEND a message (CRLF line ends) to a mailbox, with optional flags ("(\\Seen)"). */
int imap_client_append(struct imap_client *client, const char *mailbox, const char *flags,
                       const char *data, size_t len, imap_done_cb *done, void *ctx,
                       const char **error_r);
/* NOOP: a round trip that collects pending mailbox events. */
int imap_client_noop(struct imap_client *client, imap_done_cb *done, void *ctx,
                     const char **error_r);
/* While nothing is queued: IDLE when offered, else NOOP every poll interval. Operations queued
 * meanwhile end the IDLE (DONE) and it resumes after them. */
int imap_client_idle(struct imap_client *client, bool on, const char **error_r);
/* LOGOUT once every queued operation is done; then `closed`. */
int imap_client_logout(struct imap_client *client, const char **error_r);

/* What the server offered (valid after `ready`): a capability name, ASCII case-insensitive. */
bool imap_client_has_cap(const struct imap_client *client, const char *cap);
const char *imap_client_state_name(const struct imap_client *client);

/* The \Sent mailbox of a LIST: by special-use, else by a well-known name ("Sent", "Sent Items",
 * "Sent Messages", "[Gmail]/Sent Mail", ...); NULL when none. */
const struct imap_mailbox *imap_mailboxes_find_sent(const struct imap_mailbox *boxes, size_t count);
/* "sent", "drafts", "trash", "junk", "archive", "all", "flagged", "important", or NULL. */
const char *imap_mailbox_role(unsigned flags);

#endif
