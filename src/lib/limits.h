/* Every size and count cap in mailtrail lives here, so that a reviewer can see in one place
 * how much memory a hostile peer can make us hold. Units are in the names. */
#ifndef MT_LIB_LIMITS_H
#define MT_LIB_LIMITS_H

/* For messages that name a cap: MT_STRINGIFY(MT_JSON_DEPTH_MAX) is "16". */
#define MT_STRINGIFY_(x) #x
#define MT_STRINGIFY(x)  MT_STRINGIFY_(x)

/* SMTP (RFC 5321 §4.5.3.1): a reply line is at most 512 octets including CRLF. Servers exceed
 * it in practice (long EHLO AUTH lists, provider URLs), so we allow twice that. */
#define MT_SMTP_REPLY_LINE_MAX 1024
/* Lines of one multi-line reply (EHLO answers have ~15). */
#define MT_SMTP_REPLY_LINES_MAX 64
/* Whole text of one reply, all lines joined. */
#define MT_SMTP_REPLY_TEXT_MAX (MT_SMTP_REPLY_LINE_MAX * 4)
/* AUTH mechanisms remembered from EHLO. */
#define MT_SMTP_AUTH_MECHS_MAX 16
/* Longest address in MAIL FROM / RCPT TO (RFC 5321 §4.5.3.1.3 path: 256). */
#define MT_SMTP_PATH_MAX 256
/* Recipients of one message in one transaction (RFC 5321 §4.5.3.1.8 requires 100). */
#define MT_SMTP_RCPTS_MAX 100
/* Commands sent without waiting for their replies (msmtp: a fixed window avoids a TCP-window
 * deadlock when neither side reads). */
#define MT_SMTP_PIPELINE_WINDOW 100
/* Messages queued on one client session before the caller must wait. */
#define MT_SMTP_SESSION_QUEUE_MAX 1000
/* Largest message body we will transmit (the API's max_message_bytes default is 25 MiB;
 * encoding adds a third). */
#define MT_SMTP_MESSAGE_MAX (40u * 1024 * 1024)
/* Body bytes dot-stuffed per step, and the output level below which more are added: large
 * messages stream through the connection's capped output buffer instead of being copied whole. */
#define MT_SMTP_BODY_CHUNK     (64u * 1024)
#define MT_SMTP_BODY_LOW_WATER (256u * 1024)

/* SASL */
#define MT_SASL_SECRET_MAX   4096 /* password or OAuth access token */
#define MT_SASL_USER_MAX     512
#define MT_SASL_RESPONSE_MAX 12288 /* base64 of the longest initial response */

/* Network buffers */
#define MT_NET_INPUT_MAX  (64u * 1024)       /* unread input held per connection */
#define MT_NET_OUTPUT_MAX (8u * 1024 * 1024) /* unsent output held per connection */
#define MT_NET_READ_CHUNK 16384
#define MT_HOSTNAME_MAX   255
#define MT_DNS_ADDRS_MAX  16 /* addresses tried per host */
/* mt_conn_set_read_delay: at most 100 ms */
#define MT_NET_READ_DELAY_MAX_US 100000

/* TLS */
#define MT_TLS_FINGERPRINT_MAX 128 /* "spki-sha256:" + 64 hex + NUL, with room */

/* Logging */
#define MT_LOG_LINE_MAX  2048
#define MT_LOG_VALUE_MAX 512

/* Transcript lines kept by smtp-check and tests. */
#define MT_TRANSCRIPT_LINE_MAX 1024

/* The sender: claimed outbox messages held in memory (~8 KB each without their body). */
#define MT_SENDER_CLAIM_MAX   250  /* messages per claim job */
#define MT_SENDER_HELD_MAX    5000 /* claimed and not yet finished */
#define MT_SENDER_CLAIM_AHEAD 500  /* claimed and not yet handed to a session (engine/sender.c) */
/* Message bodies the sender holds (loaded for a ready session, not yet finished): node-wide and
 * per account. One message alone may exceed them; more wait for the ones in flight. */
#define MT_SENDER_BODY_BYTES_MAX         (256u * 1024 * 1024)
#define MT_SENDER_ACCOUNT_BODY_BYTES_MAX (64u * 1024 * 1024)
#define MT_SENDER_LOAD_BATCH             100 /* bodies loaded per store job */
/* Bodies one claim reads at most (in claim order, stopping at the first that does not fit): a
 * claim stays short for the results queued behind it, and larger messages load as sessions
 * take them. */
#define MT_SENDER_CLAIM_BODY_BYTES (4u * 1024 * 1024)

/* The send governor (engine/governor.h). */
#define MT_GOVERNOR_KEY_MAX (MT_ID_MAX + 8) /* "custom:" or "relay:" + a user id */
/* Accounts whose held mail one claim puts back; more wait for the next claim (a second). */
#define MT_GOVERNOR_WAKE_MAX 64
/* The longest pause after throttle or quota replies (it doubles from throttle_pause). */
#define MT_GOVERNOR_PAUSE_MAX_S 3600

/* Service: identifiers and stored strings */
#define MT_ID_MAX             32   /* "usr_" + 20 base32 characters, with room */
#define MT_ADDRESS_MAX        254  /* RFC 5321 path minus the brackets */
#define MT_ADDRESS_INPUT_MAX  1024 /* an address as typed, display name included */
#define MT_LOCAL_PART_MAX     64   /* RFC 5321 §4.5.3.1.1 */
#define MT_NAME_MAX           200  /* a person's or org's display name */
#define MT_HOST_FIELD_MAX     253
#define MT_ALIASES_MAX        20 /* aliases per user */
#define MT_PROFILE_EMAILS_MAX 20 /* addresses per profile */
#define MT_ORG_DOMAINS_MAX    50
#define MT_SEND_LIMITS_MAX    3 /* one per window: minute, hour, day */
#define MT_ERROR_TEXT_MAX     512
#define MT_DATE_TEXT_MAX      40 /* "Sat, 06 Dec 2025 05:46:40 +0000" (lib/str.h), with room */
#define MT_SEALED_MAX         (MT_SASL_SECRET_MAX + 64) /* sealed secret: header + tag */

/* HTTP API */
#define MT_HTTP_BODY_MAX    (1024 * 1024)      /* JSON bodies */
#define MT_HTTP_MESSAGE_MAX (31 * 1024 * 1024) /* a message (add-in), above max_message_bytes */
/* A CSV import's body (POST /v1/profiles/import), streamed: it is read a little at a time while
 * its rows are stored (MT_IMPORT_STREAM_BUFFER), never held whole. 1,000,000 rows of ~60 bytes
 * fit with room to spare. */
#define MT_HTTP_IMPORT_STREAM_MAX (256u * 1024 * 1024)
#define MT_HTTP_HEADERS_MAX       (16 * 1024)
/* Bodies over MT_HTTP_BODY_MAX read or handled at once, node-wide, in declared bytes (a JSON
 * tree and a built message take about three times the body): one more is 503 before it is read. */
#define MT_HTTP_LARGE_BODIES_MAX (96u * 1024 * 1024)
#define MT_JSON_DEPTH_MAX        16
/* Values in one JSON body, counted at each '[', '{' and ',' (jansson spends ~250 bytes on each
 * value): a message with 300 recipients and 100 attachments counts ~800; a never-log list of
 * 1,000 entries ~1,000. */
#define MT_JSON_VALUES_MAX    20000
#define MT_JSON_STRING_MAX    4096 /* any single string field unless the field says less */
#define MT_LIST_LIMIT_DEFAULT 50
#define MT_CURSOR_MAX         64 /* a list's opaque cursor */
#define MT_LIST_LIMIT_MAX     1000
/* A profile's external_id: the CRM's own id for the person (unique per org). */
#define MT_EXTERNAL_ID_MAX 128
/* Other profiles named in a reply's shared_with (more are counted, not listed). */
#define MT_SHARED_WITH_MAX 20
/* GET /v1/messages pages hold whole message rows (~7 KB each without recipients or body). */
#define MT_MESSAGES_LIST_MAX   200
#define MT_CSV_FIELD_MAX       4096
#define MT_CSV_FIELDS_MAX      16
#define MT_CSV_ROWS_MAX        1000000
#define MT_IMPORT_ROWS_PER_JOB 1000  /* profiles stored per transaction (~5.4 MB of rows) */
#define MT_IMPORT_REJECTS_MAX  1000  /* rejected rows listed in an import's answer */
#define MT_IMPORT_IDS_MAX      1000  /* stored rows listed (line, id) in an import's answer */
#define MT_LIVE_CHECKS_PER_ORG 4     /* concurrent SMTP/IMAP live checks */
#define MT_LIVE_CHECK_STEP_MS  10000 /* a live check's connect and greeting, each */
#define MT_LIVE_CHECK_TOTAL_MS 30000 /* a live check (SMTP or IMAP), all of it */
#define MT_AUTH_CACHE_ENTRIES  4096  /* tokens remembered between requests (~100 bytes each) */
#define MT_AUTH_CACHE_MS       5000  /* ...at most this long: another node's revocation */
#define MT_API_KEYS_MAX        50    /* unrevoked org-level API keys per org */
#define MT_TOKENS_LISTED_MAX   1000  /* a user's tokens listed by GET /v1/users/{id}/tokens */

/* A streamed import holds at most this much of its body waiting to be parsed (plus the bytes of
 * the step being parsed, as much again): past it, reading from the client pauses until the
 * workers and the store have caught up. */
#define MT_IMPORT_STREAM_BUFFER (1024u * 1024)
/* Imports running at once, each with its ~5.4 MB chunk of rows and a share of the store thread:
 * one more on the node is 503, a second in the same org 429 (both with Retry-After). */
#define MT_IMPORT_STREAMS_MAX     2
#define MT_IMPORT_STREAMS_PER_ORG 1

/* Worker threads for CPU-heavy request steps (src/work): MIME building and parsing, large JSON
 * and CSV bodies. Items waiting or running; more is 503. */
#define MT_WORK_THREADS   2
#define MT_WORK_QUEUE_MAX 4096
/* The workers' nice value (above the loop's 0): they yield a shared core to the loop. */
#define MT_WORK_NICE 10
/* A POST /v1/messages body up to this size is decoded and its message built on the loop: that
 * takes tens of microseconds (jansson, the plain-message writer), less than handing it to a
 * worker and waking it, which also waits behind the loop at the workers' nice value. */
#define MT_OUTBOX_INLINE_BYTES 8192

/* HTTP/1.1 requests as they arrive (src/proto/http_request.c). MT_HTTP_HEADERS_MAX above caps
 * the header section (and, counted with it, the trailer section of a chunked body). */
#define MT_HTTP_REQUEST_LINE_MAX  8192 /* CRLF included; RFC 9112 §3 asks for at least 8000 */
#define MT_HTTP_METHOD_MAX        16   /* longer is 501: no method of ours comes near */
#define MT_HTTP_HEADER_FIELDS_MAX 100  /* field lines in the head (trailers counted with them) */
#define MT_HTTP_CHUNK_LINE_MAX    1024 /* a chunk-size line with its (ignored) extensions */
#define MT_HTTP_CHUNK_SIZE_DIGITS 16   /* hex digits of a chunk-size: 2^64 - 1 at most */

/* HTTP connections (src/http/server.c). Counts and timeouts that an operator may tune are config
 * keys (docs/configuration.md); these are their defaults and the fixed ones. */
#define MT_HTTP_INPUT_MAX             (64 * 1024) /* unparsed input read ahead per connection */
#define MT_HTTP_CONNECTIONS_DEFAULT   1024        /* http_max_connections */
#define MT_HTTP_CONNECTIONS_MAX       65536       /* ... its largest value */
#define MT_HTTP_PER_IP_DEFAULT        64          /* http_max_connections_per_ip */
#define MT_HTTP_HEADER_TIMEOUT_S      10          /* http_header_timeout */
#define MT_HTTP_REQUEST_TIMEOUT_S     60          /* http_request_timeout */
#define MT_HTTP_IDLE_TIMEOUT_S        30          /* http_idle_timeout */
#define MT_HTTP_REPLY_TIMEOUT_S       60          /* a reply must be taken within this */
#define MT_HTTP_LINGER_MS             2000        /* unread input discarded after a last reply */
#define MT_HTTP_ACCEPT_BACKOFF_MIN_MS 50          /* accept() out of descriptors: first pause */
#define MT_HTTP_ACCEPT_BACKOFF_MAX_MS 1000        /* ... doubling up to this */
#define MT_HTTP_ACCEPTS_PER_WAKE      64          /* accept() calls per listener wake-up */

/* HTTP requests and JSON bodies (src/http/server*.c, src/proto/json_decode.c) */
#define MT_HTTP_PATH_PARAMS_MAX  4  /* {name} segments in one route pattern */
#define MT_HTTP_QUERY_PARAMS_MAX 32 /* query parameters of one request; more is 400 */
/* An X-Request-Id a client sends is echoed and logged when it is 1..this many of
 * [A-Za-z0-9._:+=/-]; otherwise the server makes one. */
#define MT_HTTP_REQUEST_ID_MAX  128
#define MT_JSON_ARRAY_ITEMS_MAX 1000 /* items of one array field unless the field says less */
#define MT_JSON_ERROR_MAX       256  /* a decoding error message, field name included */

/* Metrics registry: series (name + label values) and the length of names and label values. */
#define MT_METRIC_SERIES_MAX      4096
#define MT_METRIC_NAME_MAX        128
#define MT_METRIC_LABEL_VALUE_MAX 256
#define MT_METRIC_BUCKETS_MAX     20 /* a histogram's bucket bounds (+Inf not counted) */

/* Identifier randomness fetched at a time per thread (lib/random.h) */
#define MT_RANDOM_POOL_BYTES 512

/* Config */
#define MT_CONFIG_LINE_MAX  4096
#define MT_CONFIG_VALUE_MAX 2048

/* Store */
#define MT_SQLITE_CHECKPOINT_PAGES   16000      /* WAL length, then growth, waking checkpoints */
#define MT_SQLITE_CHECKPOINT_RESTART 64000      /* ...and that it rewinds, waiting for the writer */
#define MT_SQLITE_CHECKPOINT_WAIT_MS 100        /* ...waiting at most this long for it */
#define MT_SQLITE_CHECKPOINT_INLINE  131072     /* ...and past which a commit checkpoints itself */
#define MT_CHECKPOINT_NICE           10         /* the checkpoint thread's nice value */
#define MT_SQLITE_CACHE_KIB          524288     /* page cache ceiling per connection (512 MiB) */
#define MT_SQLITE_MMAP_BYTES         1073741824 /* mapped file window (1 GiB) */
#define MT_SQLITE_WAL_BUFFER         131071     /* WAL bytes a write gathers (the unix VFS's cap) */
#define MT_SQLITE_LOOKASIDE_SLOT     1200       /* bytes per lookaside slot */
#define MT_SQLITE_LOOKASIDE_SLOTS    4096       /* ~4.9 MB per connection */
#define MT_MALLOC_TOP_PAD            (64 << 20) /* heap growth step (glibc M_TOP_PAD) */
#define MT_MALLOC_MMAP_THRESHOLD     (1 << 20)  /* larger blocks: mmap'd (glibc M_MMAP_THRESHOLD) */
#define MT_STORE_QUEUE_MAX           100000     /* jobs waiting for the store thread */
#define MT_FEED_RESERVE              256        /* feed positions taken from the counter at once */
#define MT_TOMBSTONE_REASON_MAX      24         /* a tombstone's reason ("profile_erased") */
#define MT_STORE_BATCH_MAX           1000       /* write jobs group-committed in one transaction */
/* Log syncs in flight at once (src/store/store.c): a commit waits for a sync of its own instead of
 * also for the rest of the one running; two fdatasyncs overlap on the device. */
#define MT_STORE_SYNC_THREADS    2
#define MT_STORE_ID_RANDOM       20   /* base32 characters after an id's prefix (100 bits) */
#define MT_STORE_ID_TIME_CHARS   10   /* of which an ordered id's milliseconds (50 bits) */
#define MT_STORE_STMT_CACHE      256  /* prepared statements kept per connection */
#define MT_STORE_CALLER_ARGS_MAX 8    /* a statement's own arguments beside a helper's */
#define MT_STORE_BUSY_TIMEOUT_MS 5000 /* wait for another process's write lock */
#define MT_SQLITE_BUSY_FINE_MS   200  /* ...trying each ms this long, then each 10 ms */

/* CIDR lists (allow_private_hosts, no_auth_hosts) */
#define MT_CIDR_LIST_MAX  256 /* entries in one list */
#define MT_CIDR_ENTRY_MAX 64  /* text of one entry: an IPv6 address with a prefix fits in 50 */

/* Sealed secrets (src/crypto) */
#define MT_KEYRING_KEYS_MAX 64   /* master keys in one key file (rotations kept) */
#define MT_KEYRING_FILE_MAX 8192 /* bytes of a key file */
#define MT_SEAL_CONTEXT_MAX 256  /* "smtp:usr_..." associated data */

/* Messages seen by the activity sources (src/mime parsing, message records) */
#define MT_MESSAGE_ID_MAX      998  /* RFC 5322 line length */
#define MT_MESSAGE_KEY_MAX     1024 /* "mid:" / "mt:" / "sha:" + the id */
#define MT_MESSAGE_ALIASES_MAX 2    /* Message-ID and X-Mailtrail-Id */
#define MT_SUBJECT_MAX         998
#define MT_SNIPPET_CHARS       500 /* characters of text kept as the snippet */
/* Room counted for the fields the outbox puts before a stored message at delivery (From,
 * Sender, Reply-To with RFC 2047 names, Message-ID, X-Mailtrail-Id). */
#define MT_MESSAGE_HEAD_ROOM        2048
#define MT_SNIPPET_BYTES            (MT_SNIPPET_CHARS * 4)
#define MT_MESSAGE_PARTICIPANTS_MAX 500 /* From + To + Cc + Bcc addresses kept per message */
#define MT_ATTACHMENTS_MAX          100
#define MT_ATTACHMENT_NAME_MAX      255
#define MT_CONTENT_TYPE_MAX         127
#define MT_HEADER_BLOCK_MAX         (256 * 1024) /* all headers of one message */
#define MT_MIME_PARTS_MAX           500
#define MT_MIME_DEPTH_MAX           20
#define MT_REFERENCES_MAX           20 /* Message-IDs kept from References */
/* Bytes of an In-Reply-To or References value scanned for ids: the thread root is the first id,
 * so a 10,000-id References (a hostile or runaway chain) costs no more than this. */
#define MT_REFERENCES_BYTES_MAX (16 * 1024)
/* Address entries examined per message (valid or not), so that a header of 100k commas costs
 * little; valid ones are capped by MT_MESSAGE_PARTICIPANTS_MAX. */
#define MT_MESSAGE_ADDRESS_ENTRIES_MAX 5000
/* Decoded bytes of the chosen text part read to build the snippet: HTML mail often carries tens
 * of KiB of <style> before its first word. */
#define MT_SNIPPET_SOURCE_MAX (256 * 1024)
/* "Content-Type" lines in a message before its body is skipped and only its headers are read:
 * GMime's parser recurses once per nested part and has no depth limit of its own. */
#define MT_MIME_CONTENT_TYPES_MAX (2 * MT_MIME_PARTS_MAX)
#define MT_BACKFILL_RECORDS_MAX   10000 /* records backfilled per address, newest first */
#define MT_BACKFILL_PROFILES_JOB  200   /* profiles per background backfill job after an import */
#define MT_MATCHER_FROM_MEMO      64    /* From addresses remembered per matcher call */
#define MT_MATCHER_UNMATCHED_MEMO 64    /* addresses of no profile remembered per matcher call */
#define MT_NEVER_LOG_MAX          1000  /* entries per list */
/* A notification's text (engine/notify.h): one paragraph naming the account and the reason. */
#define MT_NOTIFICATION_TEXT_MAX 1024

/* Campaigns (src/engine/campaign.c) */
#define MT_CAMPAIGN_RECIPIENTS_MAX 10000 /* recipients of one campaign: one message each */
/* Every message of a campaign is built and stored before the 202: the built bytes of one
 * campaign (recipients x message size) are capped, not only each message. */
#define MT_CAMPAIGN_BYTES_MAX    (256 * 1024 * 1024)
#define MT_UNSUBSCRIBE_TOKEN_LEN 32 /* hex characters: 128 random bits */
#define MT_PUBLIC_URL_MAX        512
/* POST /v1/campaigns: its body (decoded on a worker) and the values in it — a recipient
 * {"email","name"} counts three. */
#define MT_HTTP_CAMPAIGN_MAX        (4 * 1024 * 1024)
#define MT_CAMPAIGN_JSON_VALUES_MAX (3 * MT_CAMPAIGN_RECIPIENTS_MAX + 100)

/* OAuth 2.0 token endpoint (src/proto/oauth_token.c, src/oauth/refresh.c). */
#define MT_CA_FILE_PATH_MAX   4096        /* an operator's CA file path, for HTTPS requests */
#define MT_OAUTH_RESPONSE_MAX (64 * 1024) /* a token endpoint's reply body */
/* One access or refresh token: what a secret holds and the store seals (Microsoft's access
 * tokens run ~1.5-2.5 KiB, Google's a few hundred bytes). */
#define MT_OAUTH_TOKEN_MAX     MT_SASL_SECRET_MAX
#define MT_OAUTH_TIMEOUT_MS    (30 * 1000) /* one refresh, connect to last byte */
#define MT_OAUTH_URL_MAX       2048        /* a token endpoint's URL */
#define MT_OAUTH_CLIENT_ID_MAX 512
#define MT_OAUTH_PROVIDER_MAX  32  /* a provider's id, NUL included */
#define MT_OAUTH_REQUESTS_MAX  256 /* refreshes in flight on one client */
/* The authorisation-code flow (engine/oauth_flow.c): a started flow waits this long for the
 * provider's redirect, and a user has at most this many waiting (older ones are dropped). */
#define MT_OAUTH_FLOW_TTL_S        (10 * 60)
#define MT_OAUTH_FLOWS_PER_USER    5
#define MT_OAUTH_AUTHORIZE_URL_MAX 4096 /* the URL a user's browser is sent to */
#define MT_OAUTH_CODE_MAX          2048 /* an authorisation code from the redirect */
/* engine/oauth_broker.c: an access token is handed out only while it has this long to live (a
 * login and a few minutes of IDLE or a session must not outlive it); the background refresh
 * looks this far ahead every MT_OAUTH_BACKGROUND_MS, at most MT_OAUTH_BACKGROUND_BATCH grants a
 * tick. A token endpoint that gives no expires_in is taken at its word for an hour. */
#define MT_OAUTH_REFRESH_MARGIN_S   300
#define MT_OAUTH_BACKGROUND_MS      (60 * 1000)
#define MT_OAUTH_BACKGROUND_BATCH   64
#define MT_OAUTH_DEFAULT_LIFETIME_S 3600
#define MT_OAUTH_FLIGHTS_MAX        4096 /* users with a token being looked up or refreshed */

/* IMAP responses (src/proto/imap_parse.c). A response is one line, or several joined by
 * literals; everything but a streamed FETCH body is held until the response is complete. */
#define MT_IMAP_LINE_MAX    (64 * 1024) /* one line outside literals, CRLF included */
#define MT_IMAP_TOKENS_MAX  65536       /* values (atoms, strings, lists...) of one response */
#define MT_IMAP_DEPTH_MAX   40          /* nested parentheses: BODYSTRUCTURE of MT_MIME_DEPTH_MAX */
#define MT_IMAP_TAG_MAX     64          /* a command tag echoed by the server */
#define MT_IMAP_LITERAL_MAX (64 * 1024) /* a literal kept in the tree: ENVELOPE subject, names */
/* A FETCH body literal (BODY[...], BINARY[...], RFC822.*) kept in the tree when no chunk
 * callback is set: headers (MT_HEADER_BLOCK_MAX) or a snippet's source, with room. */
#define MT_IMAP_BODY_LITERAL_MAX (1024 * 1024)
/* A FETCH body literal handed to the chunk callback: never held, only counted. */
#define MT_IMAP_STREAM_LITERAL_MAX (64u * 1024 * 1024)
/* Bytes held for one response: its lines, token texts and kept literals together. */
#define MT_IMAP_RESPONSE_MAX (4 * 1024 * 1024)
/* Ranges of one parsed sequence set (SEARCH, ESEARCH ALL, VANISHED, COPYUID). */
#define MT_IMAP_SEQSET_RANGES_MAX 10000
/* BODY[...] items of one FETCH response decoded into struct imap_fetch. */
#define MT_IMAP_FETCH_SECTIONS_MAX 8
/* A mailbox name decoded from modified UTF-7 to UTF-8, NUL included. */
#define MT_IMAP_MAILBOX_MAX 1024

/* The IMAP client (src/imap/client.c). */
#define MT_IMAP_COMMAND_TIMEOUT_MS (2 * 60 * 1000) /* an answer to one command */
/* IDLE is ended and re-issued after this: RFC 2177 asks for less than 29 minutes, as servers
 * may drop an idle client after 30. */
#define MT_IMAP_IDLE_RESTART_MS  (28 * 60 * 1000)
#define MT_IMAP_POLL_INTERVAL_MS (60 * 1000)         /* NOOP polling where IDLE is absent */
#define MT_IMAP_FETCH_CHUNK      500                 /* UIDs per UID FETCH command */
#define MT_IMAP_FETCH_WINDOW     4                   /* UID FETCH chunk commands in flight */
#define MT_IMAP_OPS_MAX          1024                /* operations queued on one session */
#define MT_IMAP_LIST_MAX         10000               /* mailboxes kept from one LIST */
#define MT_IMAP_SEARCH_UIDS_MAX  (4u * 1024 * 1024)  /* UIDs kept from one UID SEARCH */
#define MT_IMAP_APPEND_MAX       MT_SMTP_MESSAGE_MAX /* one APPENDed message */
#define MT_IMAP_CAPS_MAX         4096                /* the capability list, as one string */
/* While UID FETCH commands are answered, a read waits this long after the socket signals
 * (mt_conn_set_read_delay), so that the server's TLS records are read several at a time: a first
 * sync's loop woke ~25,000 times for 100,000 messages, each time preempting the server's TLS
 * proxy on a shared core (bench/sync-initial). */
#define MT_IMAP_FETCH_READ_DELAY_US 500
/* The session transcript: bytes shown per server response, and in all. */
#define MT_IMAP_TRANSCRIPT_RESPONSE_MAX 2048
#define MT_IMAP_TRANSCRIPT_MAX          (256 * 1024)

/* IMAP auto sync (src/engine/imap_*.c). */
#define MT_IMAP_FOLDERS_MAX 4   /* watched folders of one account */
#define MT_IMAP_ROLE_MAX    16  /* "inbox", "sent", ... NUL included */
#define MT_IMAP_SYNC_CHUNK  200 /* messages per fetch (and the cursor's step) */
/* Chunks of one session's pass alive at once: a group being stored (MT_IMAP_SYNC_STORE_GROUP)
 * while the next group is fetched and converted on the workers (with too few the fetch stops
 * while a group is stored). Each holds the chunk's FETCH answers (at most MT_IMAP_SYNC_CHUNK x
 * (header fields + MT_IMAP_TEXT_FETCH_BYTES)) and its converted messages (MT_IMAP_SYNC_CHUNK x
 * ~6.6 KB): ~2 MB for 2-4 KB mail, so ~40 MB per account while a pass runs (none once it is
 * over: sync_release_chunks). */
#define MT_IMAP_SYNC_PIPELINE 20
/* Chunks of a pass fetched at once: the next chunks' UID FETCH commands are queued at the
 * server while one is answered, so it never waits a round trip (and our loop's turn). */
#define MT_IMAP_SYNC_FETCHES 3
/* Converted chunks in a row stored in one transaction (each with its own cursor update, in UID
 * order): while the store is busy the next ones gather, and one commit then writes each
 * touched index page once for all of them. 10 against 5 (bench/sync-initial, 2026-12-07):
 * 25 % fewer bytes written (906 -> 690 MB for 100,000 messages), store CPU -5 %, wall -3 %
 * (medians of three alternating pairs, with the pipeline 20 and 3 fetches against 12 and 2). */
#define MT_IMAP_SYNC_STORE_GROUP 10
/* ...and while more chunks of the pass are coming, a group waits to be full this long at most
 * (engine/imap_sync_pass.c group_wait) */
#define MT_IMAP_SYNC_GROUP_WAIT_MS 1000
#define MT_IMAP_TEXT_FETCH_BYTES                                                                   \
	16384                        /* BODY.PEEK[TEXT]<0.N>: what the snippet needs (a plain      \
	                              * number: it is spelled into the command) */
#define MT_IMAP_SYNC_PARTS_MAX    64 /* BODYSTRUCTURE parts read per message */
#define MT_IMAP_SYNC_POLL_MS      (60 * 1000)     /* folders other than INBOX: polled this often */
#define MT_IMAP_RECONNECT_MIN_MS  1000            /* back-off after a broken session: first delay */
#define MT_IMAP_RECONNECT_MAX_MS  (5 * 60 * 1000) /* ... capped here (jittered) */
#define MT_IMAP_LOGINS_MAX        32              /* logins in progress across every account */
#define MT_IMAP_SYNC_ACCOUNTS_MAX 100000          /* accounts loaded at start (and per re-scan) */
/* The scheduler (src/engine/imap_sync_sched.c): new logins to one server host, a token bucket
 * (per second, burst); logins in progress to one host (a host that never greets holds at most
 * these of the MT_IMAP_LOGINS_MAX); hosts remembered; the re-scan of accounts to sync; the
 * wait for a greeting (a stalled server costs its session only this long). */
#define MT_IMAP_HOST_LOGINS_PER_S 10
#define MT_IMAP_HOST_LOGINS_BURST 10
#define MT_IMAP_HOST_LOGINS_MAX   8
#define MT_IMAP_SYNC_HOSTS_MAX    4096
#define MT_IMAP_SYNC_RESCAN_MS    (30 * 1000)
#define MT_IMAP_SYNC_GREETING_MS  (30 * 1000)

/* Webhooks (src/engine/webhooks*.c, src/webhook/): per org; deliveries one at a time per webhook
 * in event order; a failed one retried with exponential back-off (first delay, cap, jitter
 * +-20%) until MT_WEBHOOK_RETRY_S after its event, then recorded as failed and skipped. */
#define MT_WEBHOOKS_PER_ORG       20
#define MT_WEBHOOK_URL_MAX        2048
#define MT_WEBHOOK_EVENTS_MAX     8           /* event patterns per webhook */
#define MT_WEBHOOK_EVENT_NAME_MAX 32          /* "activity.*", "message.failed" */
#define MT_WEBHOOK_SECRET_BYTES   32          /* signing secret, shown once (hex: twice that) */
#define MT_WEBHOOK_TIMEOUT_MS     (10 * 1000) /* one delivery, connect to last byte */
#define MT_WEBHOOK_RESPONSE_MAX                                                                    \
	(16 * 1024) /* a receiver's reply body kept (the rest is read and dropped) */
#define MT_WEBHOOK_INFLIGHT_MAX   64          /* deliveries in flight across every webhook */
#define MT_WEBHOOK_BATCH          100         /* events loaded per store read */
#define MT_WEBHOOK_RETRY_S        (24 * 3600) /* an event is retried this long */
#define MT_WEBHOOK_BACKOFF_MIN_MS 1000
#define MT_WEBHOOK_BACKOFF_MAX_MS (10 * 60 * 1000)
#define MT_WEBHOOK_LEASE_MS       (30 * 1000) /* a node's hold on a webhook; > MT_WEBHOOK_TIMEOUT_MS */
#define MT_WEBHOOK_POLL_MS        500         /* how often due webhooks are looked for */
#define MT_WEBHOOK_PAYLOAD_MAX    (256 * 1024)    /* one delivery's JSON body */
#define MT_WEBHOOK_RETENTION_S    (7 * 24 * 3600) /* webhook_events and the delivery log kept */

#endif
