/* Every size and count cap in mailtrail lives here, so that a reviewer can see in one place
 * how much memory a hostile peer can make us hold. Units are in the names. */
#ifndef MT_LIB_LIMITS_H
#define MT_LIB_LIMITS_H

/* SMTP (RFC 5321 §4.5.3.1): a reply line is at most 512 octets including CRLF. Servers exceed
 * it in practice (long EHLO AUTH lists, provider URLs), so we allow twice that. */
#define MT_SMTP_REPLY_LINE_MAX	1024
/* Lines of one multi-line reply (EHLO answers have ~15). */
#define MT_SMTP_REPLY_LINES_MAX 64
/* Whole text of one reply, all lines joined. */
#define MT_SMTP_REPLY_TEXT_MAX	(MT_SMTP_REPLY_LINE_MAX * 4)
/* AUTH mechanisms remembered from EHLO. */
#define MT_SMTP_AUTH_MECHS_MAX	16
/* Longest address in MAIL FROM / RCPT TO (RFC 5321 §4.5.3.1.3 path: 256). */
#define MT_SMTP_PATH_MAX	256
/* Recipients of one message in one transaction (RFC 5321 §4.5.3.1.8 requires 100). */
#define MT_SMTP_RCPTS_MAX	100
/* Commands sent without waiting for their replies (msmtp: a fixed window avoids a TCP-window
 * deadlock when neither side reads). */
#define MT_SMTP_PIPELINE_WINDOW 100
/* Messages queued on one client session before the caller must wait. */
#define MT_SMTP_SESSION_QUEUE_MAX 1000
/* Largest message body we will transmit (the API's max_message_bytes default is 25 MiB;
 * encoding adds a third). */
#define MT_SMTP_MESSAGE_MAX	(40u * 1024 * 1024)

/* SASL */
#define MT_SASL_SECRET_MAX	4096 /* password or OAuth access token */
#define MT_SASL_USER_MAX	512
#define MT_SASL_RESPONSE_MAX	12288 /* base64 of the longest initial response */

/* Network buffers */
#define MT_NET_INPUT_MAX	(64u * 1024) /* unread input held per connection */
#define MT_NET_OUTPUT_MAX	(8u * 1024 * 1024) /* unsent output held per connection */
#define MT_NET_READ_CHUNK	16384
#define MT_HOSTNAME_MAX		255
#define MT_DNS_ADDRS_MAX	16 /* addresses tried per host */

/* TLS */
#define MT_TLS_FINGERPRINT_MAX	128 /* "spki-sha256:" + 64 hex + NUL, with room */

/* Logging */
#define MT_LOG_LINE_MAX		2048
#define MT_LOG_VALUE_MAX	512

/* Transcript lines kept by smtp-check and tests. */
#define MT_TRANSCRIPT_LINE_MAX	1024

#endif
