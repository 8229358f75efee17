/* A client connection on the libevent loop: async DNS (evdns; every IPv4 and IPv6 address tried
 * in turn), non-blocking connect with a timeout, a read (idle) timeout, and TLS driven directly
 * over OpenSSL (implicit, or started later for STARTTLS).
 *
 * Input lands in a capped buffer the owner consumes; output is queued and flushed as the socket
 * allows. Failures are reported once through `error` with class `conn` or `tls` and a reason;
 * a TLS verification failure carries the fingerprint the server presented. After `error` the
 * owner must free the connection (from the callback or later). Idle TLS connections release
 * their buffers (SSL_MODE_RELEASE_BUFFERS). OpenSSL 3's "unexpected EOF while reading" is an
 * ordinary close.
 *
 * Callbacks only ever run from the event loop, never from inside a call into this module, and
 * mt_conn_free() may be called from any of them (the free is completed on the way out).
 *
 * Back-pressure: when MT_NET_INPUT_MAX unread bytes are held, reading (and the read timeout)
 * stops. It resumes by itself after any callback returns, and on mt_conn_write() or
 * mt_conn_resume_read() when the owner consumed input outside a callback.
 *
 * SIGPIPE: plaintext writes use MSG_NOSIGNAL, but OpenSSL writes to the socket with write(2), so
 * the program must ignore SIGPIPE (signal(SIGPIPE, SIG_IGN) in main); the library never changes
 * signal dispositions.
 *
 * Ownership: the owner creates and frees the connection with mt_conn_free(); callbacks may free
 * it. Params strings are copied. */
#ifndef MT_NET_CONN_H
#define MT_NET_CONN_H

#include "lib/buf.h"
#include "lib/failure.h"
#include "lib/cidr.h"
#include "lib/limits.h"
#include "net/tls.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evdns_base;
struct mt_conn;

struct mt_conn_params {
	const char *host; /* name or IP literal; also the SNI and verified name */
	uint16_t port;
	const char *bind_address;     /* optional local source address (tests use 127.0.0.N) */
	int connect_timeout_ms;       /* per address tried; 0 = 30 s */
	bool implicit_tls;            /* TLS right after connect (smtps/imaps) */
	struct mt_tls_config *tls;    /* required when TLS may be used */
	const struct mt_tls_pin *pin; /* NULL: verify against the CAs and the host name */
	/* For user-supplied hosts: never connect to a loopback, private, link-local or
	 * unique-local address (mt_addr_is_private) unless `allow_private` covers it. Checked on
	 * the addresses actually connected to, so a name that re-resolves between a check and the
	 * connection (DNS rebinding) cannot reach the server's own network. */
	bool public_only;
	const struct mt_cidr_list *allow_private; /* borrowed; may be NULL */
};

struct mt_net_error {
	enum mt_failure_class cls; /* MT_CLASS_CONN or MT_CLASS_TLS */
	char reason[256];
	/* "sha256:..." of the presented leaf, on tls failures; "" otherwise */
	char fingerprint[MT_TLS_FINGERPRINT_MAX];
	bool closed_by_peer; /* a clean EOF */
};

struct mt_conn_callbacks {
	/* TCP connected (and TLS established when implicit_tls). */
	void (*connected)(void *ctx);
	/* New bytes are in mt_conn_input(). */
	void (*readable)(void *ctx);
	/* The handshake started by mt_conn_start_tls() succeeded. */
	void (*tls_ready)(void *ctx);
	/* All queued output was written (optional; for flow control of large bodies). */
	void (*drained)(void *ctx);
	/* Connection failed or closed; reported once. */
	void (*error)(void *ctx, const struct mt_net_error *error);
};

/* Starts resolving and connecting; the result arrives through the callbacks. NULL only on
 * allocation failure or invalid params (*error_r). */
struct mt_conn *mt_conn_new(struct event_base *base, struct evdns_base *dns,
                            const struct mt_conn_params *params,
                            const struct mt_conn_callbacks *callbacks, void *ctx,
                            const char **error_r);
void mt_conn_free(struct mt_conn **conn);

struct mt_buf *mt_conn_input(struct mt_conn *conn);
/* Queues bytes (also before the connection is open: they are sent once it is); -1 if the output
 * cap (MT_NET_OUTPUT_MAX) would be exceeded or after `error`. Never calls a callback. */
int mt_conn_write(struct mt_conn *conn, const void *data, size_t len);
size_t mt_conn_output_pending(const struct mt_conn *conn);
/* Tells the connection the owner consumed input outside a callback, so that reading restarts if
 * it had stopped with a full input buffer. */
void mt_conn_resume_read(struct mt_conn *conn);
/* Fails the connection with `error` after `ms` without new input; 0 disables. Restarted by
 * every read. */
void mt_conn_set_read_timeout(struct mt_conn *conn, int ms);
/* Reads wait `us` microseconds (at most MT_NET_READ_DELAY_MAX_US; 0, the default: none) after
 * the socket signals input, so that a stream arriving in many small pieces (TLS records of a
 * bulk transfer) is read several at a time: one wake-up of our loop, and of the sender that it
 * would preempt, per batch instead of per piece. Only while the sender is slower than us: after
 * a wake-up whose reads filled the input buffer (MT_NET_INPUT_MAX) the next read is at once.
 * For an owner that expects a long answer (IMAP's UID FETCH): input then waits this long more
 * before the owner sees it. */
void mt_conn_set_read_delay(struct mt_conn *conn, int us);
/* Starts the TLS handshake on a plaintext connection (after STARTTLS's 220); 0, then `tls_ready`
 * or `error` follows. Refuses (-1 with *error_r) when unread input is buffered: plaintext after
 * the go-ahead is an injection attack; also when output is still unsent or TLS is active. The
 * handshake is bounded by connect_timeout_ms (and by the read timeout when set). */
int mt_conn_start_tls(struct mt_conn *conn, const char **error_r);
bool mt_conn_is_tls(const struct mt_conn *conn);
/* "1.2.3.4:587" of the connected peer ("" before connect). */
const char *mt_conn_peer(const struct mt_conn *conn);
/* Protocol and cipher, e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384" ("" without TLS). */
const char *mt_conn_tls_info(const struct mt_conn *conn);
/* "resolving", "connecting", "tls_handshake", "open" or "closed" (for logs and tests). */
const char *mt_conn_state_name(const struct mt_conn *conn);

/* A resolver for mt_conn_new(): the system's nameservers and /etc/hosts, falling back to the
 * hosts file alone when /etc/resolv.conf is unusable; an idle resolver does not keep the loop
 * running. IP literals and "localhost" never need it. NULL on failure; evdns_base_free(dns, 1). */
struct evdns_base *mt_conn_dns_new(struct event_base *base);

#endif
