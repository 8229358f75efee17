#include "smtp/client.h"

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/str.h"
#include "net/conn.h"
#include "proto/sasl.h"
#include "proto/smtp_caps.h"
#include "proto/smtp_classify.h"
#include "proto/smtp_data.h"
#include "proto/smtp_reply.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* RFC 5321 §4.5.3.2 client timeouts, in milliseconds. */
#define TIMEOUT_BANNER_MS    (5 * 60 * 1000)
#define TIMEOUT_COMMAND_MS   (5 * 60 * 1000)
#define TIMEOUT_DATA_INIT_MS (2 * 60 * 1000)
#define TIMEOUT_DATA_END_MS  (10 * 60 * 1000)

enum smtp_state {
	SMTP_STATE_CONNECTING,
	SMTP_STATE_BANNER,
	SMTP_STATE_EHLO,
	SMTP_STATE_HELO,
	SMTP_STATE_STARTTLS,
	SMTP_STATE_TLS_HANDSHAKE,
	SMTP_STATE_AUTH_PLAIN,
	SMTP_STATE_AUTH_LOGIN,
	SMTP_STATE_AUTH_LOGIN_USER,
	SMTP_STATE_AUTH_LOGIN_PASS,
	SMTP_STATE_AUTH_XOAUTH2,
	SMTP_STATE_AUTH_XOAUTH2_ERROR,
	SMTP_STATE_READY, /* transactions; replies are matched to the command queue */
	SMTP_STATE_QUIT,
	SMTP_STATE_CLOSED,
	SMTP_STATE_FAILED,
	SMTP_STATE_COUNT
};

static const char *const state_names[SMTP_STATE_COUNT] = {
    [SMTP_STATE_CONNECTING] = "connecting",
    [SMTP_STATE_BANNER] = "banner",
    [SMTP_STATE_EHLO] = "ehlo",
    [SMTP_STATE_HELO] = "helo",
    [SMTP_STATE_STARTTLS] = "starttls",
    [SMTP_STATE_TLS_HANDSHAKE] = "tls-handshake",
    [SMTP_STATE_AUTH_PLAIN] = "auth-plain",
    [SMTP_STATE_AUTH_LOGIN] = "auth-login",
    [SMTP_STATE_AUTH_LOGIN_USER] = "auth-login-user",
    [SMTP_STATE_AUTH_LOGIN_PASS] = "auth-login-pass",
    [SMTP_STATE_AUTH_XOAUTH2] = "auth-xoauth2",
    [SMTP_STATE_AUTH_XOAUTH2_ERROR] = "auth-xoauth2-error",
    [SMTP_STATE_READY] = "ready",
    [SMTP_STATE_QUIT] = "quit",
    [SMTP_STATE_CLOSED] = "closed",
    [SMTP_STATE_FAILED] = "failed",
};

/* A command in flight in the READY state, waiting for its reply. */
enum pending_kind { PENDING_MAIL, PENDING_RCPT, PENDING_DATA, PENDING_DOT, PENDING_RSET };

struct pending {
	enum pending_kind kind;
	struct smtp_message *message; /* NULL for RSET */
	unsigned rcpt_index;
};

#define PENDING_RING (MT_SMTP_PIPELINE_WINDOW + 8)

/* Per-message progress, kept beside the caller's struct in a parallel record. */
struct tx {
	struct smtp_message *message;
	unsigned next_rcpt; /* next RCPT to issue */
	unsigned rcpts_answered;
	unsigned accepted;
	unsigned outstanding; /* commands of this message awaiting replies */
	bool mail_issued, data_issued, dot_issued;
	bool aborted; /* MAIL refused (or the message is unsendable): issue no more */
	bool done;    /* the final reply is in: hand it back when it reaches the head */
	bool mail_ok;
	bool needs_smtputf8;
	bool eight_bit; /* the head or the data has a byte over 0x7f */
	size_t size;    /* head_len + data_len */
	char abort_reason[256];
};

struct smtp_client {
	struct event_base *base;
	struct evdns_base *dns;
	struct smtp_client_params params;
	char *host, *username, *helo_name, *bind_address;
	struct mt_tls_pin pin;
	struct mt_secret *secret;
	struct smtp_client_callbacks cb;
	void *ctx;

	enum smtp_state state;
	struct mt_conn *conn;
	struct smtp_reply_parser parser;
	struct smtp_caps caps;
	bool tls_active;
	bool quit_requested;
	bool ready_reported;
	struct mt_buf out; /* commands assembled before one write */

	/* Messages: queue (FIFO). `issuing` is the message whose commands are being sent; those
	 * before it have all commands issued and wait for replies. */
	struct tx *txs;                       /* ring of MT_SMTP_SESSION_QUEUE_MAX */
	size_t tx_head, tx_count, tx_issuing; /* tx_issuing: offset from head */

	struct pending ring[PENDING_RING];
	size_t ring_head, ring_count;
	unsigned window;

	/* Body being streamed (the message whose DATA got 354). */
	struct tx *body_tx;
	size_t body_offset;
	struct smtp_dot_writer dot;

	int callback_depth;
	bool free_requested;
	/* Inside smtp_client_send(): outcomes known then (a message refused before its
	 * transaction) are handed back from `settle_later`, on the loop, not from inside the
	 * caller's send — a caller feeding messages in a loop would otherwise see one come back
	 * before its send returned. */
	bool in_send;
	struct event *settle_later;
};

static void smtp_client_destroy(struct smtp_client *client);
static void session_fail(struct smtp_client *client, enum mt_failure_class cls, bool permanent,
                         const char *reason, const struct smtp_reply *reply,
                         const char *fingerprint);
static void pump(struct smtp_client *client);

int smtp_auth_parse(const char *name, enum smtp_auth *auth_r)
{
	static const struct {
		const char *name;
		enum smtp_auth auth;
	} names[] = {{"none", SMTP_AUTH_NONE},
	             {"password", SMTP_AUTH_PASSWORD},
	             {"plain", SMTP_AUTH_PLAIN},
	             {"login", SMTP_AUTH_LOGIN},
	             {"xoauth2", SMTP_AUTH_XOAUTH2}};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(name, names[i].name) == 0) {
			*auth_r = names[i].auth;
			return 0;
		}
	}
	return -1;
}

const char *smtp_outcome_name(enum smtp_outcome outcome)
{
	switch (outcome) {
	case SMTP_OUTCOME_SENT:
		return "sent";
	case SMTP_OUTCOME_PARTIAL:
		return "partial";
	case SMTP_OUTCOME_FAILED:
		break;
	}
	return "failed";
}

const char *smtp_client_state_name(const struct smtp_client *client)
{
	return state_names[client->state];
}

bool smtp_client_pipelining(const struct smtp_client *client)
{
	return client->window > 1;
}

size_t smtp_client_pending(const struct smtp_client *client)
{
	return client->tx_count;
}

/* ---- callbacks into the owner, guarded so that the owner may free us from inside ---- */

static void enter(struct smtp_client *client)
{
	client->callback_depth++;
}

/* Returns true when the client was freed and must not be touched. */
static bool leave(struct smtp_client *client)
{
	if (--client->callback_depth == 0 && client->free_requested) {
		smtp_client_destroy(client);
		return true;
	}
	return false;
}

static void transcript(struct smtp_client *client, char direction, const char *line, size_t len)
{
	if (client->cb.transcript != NULL)
		client->cb.transcript(client->ctx, direction, line, len);
}

static void transcript_str(struct smtp_client *client, char direction, const char *line)
{
	transcript(client, direction, line, strlen(line));
}

static void transcript_reply(struct smtp_client *client, const struct smtp_reply *reply)
{
	if (client->cb.transcript == NULL)
		return;
	for (unsigned i = 0; i < reply->line_count; i++) {
		char line[MT_TRANSCRIPT_LINE_MAX];
		snprintf(line, sizeof(line), "%03d%c%s", reply->code,
		         i + 1 < reply->line_count ? '-' : ' ', reply->lines[i]);
		transcript_str(client, 'S', line);
	}
}

/* Each state is entered here and only here, so the timeouts and logging stay in one place. */
static void set_state(struct smtp_client *client, enum smtp_state state)
{
	mt_log(MT_LOG_DEBUG, "smtp.state", MT_KV("host", client->host),
	       MT_KV("from", state_names[client->state]), MT_KV("to", state_names[state]));
	client->state = state;
}

static int timeout_for(const struct smtp_client *client, int rfc_ms)
{
	return client->params.reply_timeout_ms > 0 ? client->params.reply_timeout_ms : rfc_ms;
}

/* Sends a command; `shown` replaces it in the transcript when the real text holds a secret. */
static int send_command(struct smtp_client *client, const char *command, const char *shown)
{
	transcript_str(client, 'C', shown != NULL ? shown : command);
	if (mt_buf_append_str(&client->out, command) < 0 ||
	    mt_buf_append(&client->out, "\r\n", 2) < 0)
		return -1;
	return 0;
}

static void flush(struct smtp_client *client)
{
	if (client->out.len == 0 || client->conn == NULL)
		return;
	int r = mt_conn_write(client->conn, client->out.data, client->out.len);
	/* The buffer may have held AUTH data. */
	if (client->out.len > 0)
		memset(client->out.data, 0, client->out.len);
	mt_buf_reset(&client->out);
	if (r < 0)
		session_fail(client, MT_CLASS_INTERNAL, false, "output buffer full", NULL, NULL);
}

static void send_line_now(struct smtp_client *client, enum smtp_state next, int timeout_ms,
                          const char *command, const char *shown)
{
	set_state(client, next);
	if (send_command(client, command, shown) < 0) {
		session_fail(client, MT_CLASS_INTERNAL, false, "command too long", NULL, NULL);
		return;
	}
	mt_conn_set_read_timeout(client->conn, timeout_for(client, timeout_ms));
	flush(client);
}

/* ---- message completion ---- */

static struct tx *tx_at(struct smtp_client *client, size_t offset)
{
	return &client->txs[(client->tx_head + offset) % MT_SMTP_SESSION_QUEUE_MAX];
}

static void copy_reply(char *dst, size_t size, const struct smtp_reply *reply)
{
	if (reply != NULL)
		smtp_reply_format(reply, dst, size);
	else
		dst[0] = '\0';
}

/* Completes the message at the head of the queue and hands it back. */
static bool complete_head(struct smtp_client *client)
{
	struct tx *tx = tx_at(client, 0);
	struct smtp_message *message = tx->message;
	client->tx_head = (client->tx_head + 1) % MT_SMTP_SESSION_QUEUE_MAX;
	client->tx_count--;
	if (client->tx_issuing > 0)
		client->tx_issuing--;
	if (client->body_tx == tx)
		client->body_tx = NULL;
	memset(tx, 0, sizeof(*tx));
	/* An owner that freed us mid-callback keeps its messages; no more callbacks. */
	if (client->cb.message_done == NULL || client->free_requested)
		return false;
	enter(client);
	client->cb.message_done(client->ctx, message);
	return leave(client);
}

static void finish_failed(struct smtp_message *message, enum mt_failure_class cls, bool permanent,
                          const char *reply_text)
{
	message->outcome = SMTP_OUTCOME_FAILED;
	message->cls = cls;
	message->permanent = permanent;
	mt_strlcpy(message->reply, reply_text, sizeof(message->reply));
	for (size_t i = 0; i < message->rcpt_count; i++) {
		struct smtp_rcpt_result *r = &message->results[i];
		if (r->accepted || r->reply[0] == '\0' || r->cls == MT_CLASS_NONE) {
			/* Accepted at RCPT but the transaction failed: not delivered either. */
			r->accepted = false;
			r->cls = cls;
			r->permanent = permanent;
			mt_strlcpy(r->reply, reply_text, sizeof(r->reply));
		}
	}
}

/* The verdict of a message whose recipients were all refused: the first refusal decides the
 * class; it is permanent only when every refusal was. */
static void finish_all_refused(struct smtp_message *message)
{
	bool permanent = true;
	enum mt_failure_class cls = MT_CLASS_RESP;
	const char *reply = "";
	for (size_t i = 0; i < message->rcpt_count; i++) {
		const struct smtp_rcpt_result *r = &message->results[i];
		if (i == 0) {
			cls = r->cls;
			reply = r->reply;
		}
		if (!r->permanent)
			permanent = false;
	}
	message->outcome = SMTP_OUTCOME_FAILED;
	message->cls = cls;
	message->permanent = permanent;
	mt_strlcpy(message->reply, reply, sizeof(message->reply));
}

/* ---- the transaction pump ---- */

static bool ring_full(const struct smtp_client *client)
{
	return client->ring_count >= client->window;
}

static void ring_push(struct smtp_client *client, enum pending_kind kind,
                      struct smtp_message *message, unsigned rcpt_index)
{
	struct pending *p = &client->ring[(client->ring_head + client->ring_count) % PENDING_RING];
	p->kind = kind;
	p->message = message;
	p->rcpt_index = rcpt_index;
	client->ring_count++;
}

static struct pending ring_pop(struct smtp_client *client)
{
	struct pending p = client->ring[client->ring_head];
	client->ring_head = (client->ring_head + 1) % PENDING_RING;
	client->ring_count--;
	return p;
}

static int pending_timeout(const struct smtp_client *client)
{
	if (client->ring_count == 0)
		return 0;
	switch (client->ring[client->ring_head].kind) {
	case PENDING_DATA:
		return timeout_for(client, TIMEOUT_DATA_INIT_MS);
	case PENDING_DOT:
		return timeout_for(client, TIMEOUT_DATA_END_MS);
	case PENDING_MAIL:
	case PENDING_RCPT:
	case PENDING_RSET:
		break;
	}
	return timeout_for(client, TIMEOUT_COMMAND_MS);
}

static bool address_needs_utf8(const char *address)
{
	for (const unsigned char *p = (const unsigned char *)address; *p != '\0'; p++)
		if (*p >= 0x80)
			return true;
	return false;
}

/* Issues the commands of the message at `tx_issuing` while the window allows. Returns true when
 * the message has all its commands out (or was aborted) and the next one may start. */
static void issue_commands(struct smtp_client *client)
{
	while (client->tx_issuing < client->tx_count && !ring_full(client)) {
		struct tx *tx = tx_at(client, client->tx_issuing);
		struct smtp_message *m = tx->message;
		char command[MT_SMTP_PATH_MAX + 64];
		if (!tx->mail_issued && !tx->aborted) {
			/* What the server cannot take is refused before a transaction starts. */
			const char *unsendable = NULL;
			enum mt_failure_class cls = MT_CLASS_PROTO;
			if (tx->needs_smtputf8 && !client->caps.smtputf8) {
				unsendable = "an address needs SMTPUTF8, which the server does not "
				             "offer";
			} else if (!client->caps.eightbitmime && tx->eight_bit) {
				unsendable = "the message has 8-bit data and the server does not "
				             "offer 8BITMIME";
			} else if (client->caps.size_max > 0 && tx->size > client->caps.size_max) {
				unsendable = "the message is larger than the server's SIZE limit";
				cls = MT_CLASS_RESP;
			}
			if (unsendable != NULL) {
				tx->aborted = true;
				finish_failed(m, cls, true, unsendable);
				client->tx_issuing++;
				continue;
			}
		}
		if (tx->aborted && !tx->mail_issued) {
			client->tx_issuing++;
			continue;
		}
		if (!tx->mail_issued) {
			int n = snprintf(command, sizeof(command), "MAIL FROM:<%s>", m->mail_from);
			if (client->caps.size)
				n += snprintf(command + n, sizeof(command) - (size_t)n, " SIZE=%zu",
				              tx->size);
			if (client->caps.eightbitmime && tx->eight_bit)
				n += snprintf(command + n, sizeof(command) - (size_t)n,
				              " BODY=8BITMIME");
			if (tx->needs_smtputf8)
				snprintf(command + n, sizeof(command) - (size_t)n, " SMTPUTF8");
			send_command(client, command, NULL);
			ring_push(client, PENDING_MAIL, m, 0);
			tx->mail_issued = true;
			tx->outstanding++;
			continue;
		}
		if (tx->aborted)
			return; /* wait for its outstanding replies */
		if (tx->next_rcpt < m->rcpt_count) {
			snprintf(command, sizeof(command), "RCPT TO:<%s>", m->rcpts[tx->next_rcpt]);
			send_command(client, command, NULL);
			ring_push(client, PENDING_RCPT, m, tx->next_rcpt);
			tx->next_rcpt++;
			tx->outstanding++;
			continue;
		}
		if (!tx->data_issued) {
			/* Without pipelining we know the RCPT verdicts: no DATA for nobody. */
			if (client->window == 1 && tx->accepted == 0)
				return;
			send_command(client, "DATA", NULL);
			ring_push(client, PENDING_DATA, m, 0);
			tx->data_issued = true;
			tx->outstanding++;
		}
		/* The next message may only start after this one's data went out. */
		return;
	}
}

static void stream_body(struct smtp_client *client)
{
	struct tx *tx = client->body_tx;
	struct smtp_message *m = tx->message;
	while (client->body_tx != NULL &&
	       mt_conn_output_pending(client->conn) < MT_SMTP_BODY_LOW_WATER) {
		/* head then data, as one stream: body_offset counts over both */
		size_t left = tx->accepted > 0 ? tx->size - client->body_offset : 0;
		size_t n = left < MT_SMTP_BODY_CHUNK ? left : MT_SMTP_BODY_CHUNK;
		const char *from;
		if (client->body_offset < m->head_len) {
			from = m->head + client->body_offset;
			if (n > m->head_len - client->body_offset)
				n = m->head_len - client->body_offset;
		} else {
			from = m->data + (client->body_offset - m->head_len);
		}
		if (n > 0) {
			if (smtp_dot_writer_write(&client->dot, &client->out, from, n) < 0) {
				session_fail(client, MT_CLASS_INTERNAL, false, "body buffer full",
				             NULL, NULL);
				return;
			}
			client->body_offset += n;
		}
		if (n == left) {
			char summary[96];
			snprintf(summary, sizeof(summary), "<%zu bytes of message data>",
			         tx->accepted > 0 ? tx->size : 0);
			transcript_str(client, 'C', summary);
			if (smtp_dot_writer_finish(&client->dot, &client->out) < 0) {
				session_fail(client, MT_CLASS_INTERNAL, false, "body buffer full",
				             NULL, NULL);
				return;
			}
			transcript_str(client, 'C', ".");
			ring_push(client, PENDING_DOT, m, 0);
			tx->dot_issued = true;
			tx->outstanding++;
			client->body_tx = NULL;
			client->tx_issuing++;
			/* The caller flushes: the next message's commands share this write. */
			return;
		}
		flush(client);
		if (client->state != SMTP_STATE_READY)
			return;
	}
}

/* Hands back, in queue order, the messages whose outcome is known. A transaction that ended
 * before its data is reset first (RFC 5321 §4.1.1.5), so the next MAIL starts clean. Returns
 * true when the client was freed. */
static bool settle(struct smtp_client *client)
{
	while (client->tx_count > 0 && client->state == SMTP_STATE_READY) {
		struct tx *tx = tx_at(client, 0);
		if (!tx->done && !(tx->aborted && tx->outstanding == 0 && client->body_tx != tx))
			break;
		if (client->in_send) {
			event_active(client->settle_later, EV_TIMEOUT, 0);
			return false;
		}
		if (!tx->done && tx->mail_issued) {
			if (client->ring_count >= PENDING_RING) {
				session_fail(client, MT_CLASS_INTERNAL, false, "command ring full",
				             NULL, NULL);
				return false;
			}
			send_command(client, "RSET", NULL);
			ring_push(client, PENDING_RSET, NULL, 0);
		}
		if (complete_head(client))
			return true;
		if (client->free_requested)
			return false;
	}
	return false;
}

static void send_quit(struct smtp_client *client)
{
	send_line_now(client, SMTP_STATE_QUIT, TIMEOUT_COMMAND_MS, "QUIT", NULL);
}

static void pump(struct smtp_client *client)
{
	if (client->state != SMTP_STATE_READY)
		return;
	if (client->body_tx != NULL) {
		stream_body(client);
		if (client->state != SMTP_STATE_READY || client->body_tx != NULL)
			return;
	}
	issue_commands(client);
	if (settle(client) || client->free_requested)
		return;
	issue_commands(client);
	flush(client);
	if (client->state != SMTP_STATE_READY)
		return;
	if (client->tx_count == 0 && client->ring_count == 0 && client->quit_requested) {
		send_quit(client);
		return;
	}
	mt_conn_set_read_timeout(client->conn, pending_timeout(client));
}

/* A reply for a command issued in READY. Returns true when the client was freed. */
static bool handle_transaction_reply(struct smtp_client *client, const struct smtp_reply *reply)
{
	if (client->ring_count == 0) {
		session_fail(client, MT_CLASS_PROTO, false, "reply without a command", reply, NULL);
		return false;
	}
	struct pending p = ring_pop(client);
	if (p.kind == PENDING_RSET) {
		if (reply->code / 100 != 2) {
			struct smtp_verdict v = smtp_classify_reply(reply, SMTP_PHASE_RSET);
			session_fail(client, v.cls, v.permanent, "RSET refused", reply, NULL);
		}
		return false;
	}
	/* p.message is at the head or among the first few transactions; find its record. */
	struct tx *tx = NULL;
	for (size_t i = 0; i < client->tx_count; i++) {
		if (tx_at(client, i)->message == p.message) {
			tx = tx_at(client, i);
			break;
		}
	}
	if (tx == NULL) {
		session_fail(client, MT_CLASS_INTERNAL, false, "reply for an unknown message",
		             reply, NULL);
		return false;
	}
	struct smtp_message *m = tx->message;
	tx->outstanding--;
	char text[512];
	copy_reply(text, sizeof(text), reply);
	bool positive = reply->code / 100 == 2 || (p.kind == PENDING_DATA && reply->code == 354);

	switch (p.kind) {
	case PENDING_MAIL:
		if (positive) {
			tx->mail_ok = true;
			break;
		}
		tx->aborted = true;
		{
			struct smtp_verdict v = smtp_classify_reply(reply, SMTP_PHASE_MAIL);
			for (size_t i = 0; i < m->rcpt_count; i++) {
				m->results[i].accepted = false;
				m->results[i].cls = v.cls;
				m->results[i].permanent = v.permanent;
				mt_strlcpy(m->results[i].reply, text, sizeof(m->results[i].reply));
			}
			m->outcome = SMTP_OUTCOME_FAILED;
			m->cls = v.cls;
			m->permanent = v.permanent;
			mt_strlcpy(m->reply, text, sizeof(m->reply));
		}
		break;
	case PENDING_RCPT: {
		struct smtp_rcpt_result *r = &m->results[p.rcpt_index];
		tx->rcpts_answered++;
		if (tx->aborted)
			break; /* MAIL failed; its verdict stands */
		mt_strlcpy(r->reply, text, sizeof(r->reply));
		if (positive) {
			r->accepted = true;
			r->cls = MT_CLASS_NONE;
			tx->accepted++;
		} else {
			struct smtp_verdict v = smtp_classify_reply(reply, SMTP_PHASE_RCPT);
			r->accepted = false;
			r->cls = v.cls;
			r->permanent = v.permanent;
		}
		break;
	}
	case PENDING_DATA:
		if (reply->code == 354) {
			/* Even with nobody accepted the server wants data: end it at once. */
			client->body_tx = tx;
			client->body_offset = 0;
			smtp_dot_writer_init(&client->dot);
			return false;
		}
		if (!tx->aborted) {
			if (tx->accepted == 0) {
				finish_all_refused(m);
			} else {
				struct smtp_verdict v = smtp_classify_reply(reply, SMTP_PHASE_DATA);
				finish_failed(m, v.cls, v.permanent, text);
			}
		}
		tx->aborted = true;
		break;
	case PENDING_DOT:
		if (tx->aborted || tx->accepted == 0) {
			if (!tx->aborted)
				finish_all_refused(m);
		} else if (positive) {
			m->outcome = tx->accepted == m->rcpt_count ? SMTP_OUTCOME_SENT
			                                           : SMTP_OUTCOME_PARTIAL;
			m->cls = MT_CLASS_NONE;
			m->permanent = false;
			mt_strlcpy(m->reply, text, sizeof(m->reply));
			/* Refused recipients keep their own verdicts. */
			for (size_t i = 0; i < m->rcpt_count; i++)
				if (m->results[i].accepted)
					mt_strlcpy(m->results[i].reply, text,
					           sizeof(m->results[i].reply));
		} else {
			struct smtp_verdict v = smtp_classify_reply(reply, SMTP_PHASE_DATA_END);
			finish_failed(m, v.cls, v.permanent, text);
		}
		tx->done = true;
		break;
	case PENDING_RSET:
		break;
	}

	/* Without pipelining, every recipient refused ends the message before DATA. */
	if (tx->outstanding == 0 && !tx->data_issued && !tx->aborted &&
	    tx->rcpts_answered == m->rcpt_count && tx->accepted == 0) {
		finish_all_refused(m);
		tx->aborted = true;
	}
	return settle(client);
}

/* ---- session setup ---- */

static void report_ready(struct smtp_client *client)
{
	set_state(client, SMTP_STATE_READY);
	client->window = client->caps.pipelining && !client->params.no_pipelining
	                     ? (client->params.pipeline_window ? client->params.pipeline_window
	                                                       : MT_SMTP_PIPELINE_WINDOW)
	                     : 1;
	if (client->window > MT_SMTP_PIPELINE_WINDOW)
		client->window = MT_SMTP_PIPELINE_WINDOW;
	mt_conn_set_read_timeout(client->conn, 0);
	if (!client->ready_reported && client->cb.ready != NULL) {
		client->ready_reported = true;
		enter(client);
		client->cb.ready(client->ctx);
		if (leave(client))
			return;
	}
	pump(client);
}

static void start_auth(struct smtp_client *client)
{
	enum smtp_auth auth = client->params.auth;
	if (auth == SMTP_AUTH_NONE) {
		report_ready(client);
		return;
	}
	unsigned offered = client->caps.auth_mechs;
	if (auth == SMTP_AUTH_PASSWORD)
		auth = (offered & SASL_MECH_PLAIN)   ? SMTP_AUTH_PLAIN
		       : (offered & SASL_MECH_LOGIN) ? SMTP_AUTH_LOGIN
		                                     : SMTP_AUTH_PASSWORD;
	unsigned wanted = auth == SMTP_AUTH_PLAIN     ? SASL_MECH_PLAIN
	                  : auth == SMTP_AUTH_LOGIN   ? SASL_MECH_LOGIN
	                  : auth == SMTP_AUTH_XOAUTH2 ? SASL_MECH_XOAUTH2
	                                              : 0;
	if (offered == 0 || (offered & wanted) == 0) {
		char reason[256];
		snprintf(reason, sizeof(reason), "the server does not offer AUTH %s%s",
		         auth == SMTP_AUTH_XOAUTH2 ? "XOAUTH2"
		         : auth == SMTP_AUTH_LOGIN ? "LOGIN"
		         : auth == SMTP_AUTH_PLAIN ? "PLAIN"
		                                   : "PLAIN or LOGIN",
		         !client->tls_active && client->params.security == MT_SECURITY_NONE
		             ? " (it may require TLS first)"
		             : "");
		session_fail(client, MT_CLASS_AUTH, true, reason, NULL, NULL);
		return;
	}
	if (client->secret == NULL || client->username == NULL) {
		session_fail(client, MT_CLASS_AUTH, true, "no username or secret given", NULL,
		             NULL);
		return;
	}
	struct mt_buf line;
	mt_buf_init(&line, MT_SASL_RESPONSE_MAX);
	int r;
	enum smtp_state next;
	const char *shown;
	if (auth == SMTP_AUTH_PLAIN) {
		r = sasl_plain_command(&line, client->username, client->secret);
		next = SMTP_STATE_AUTH_PLAIN;
		shown = "AUTH PLAIN ****";
	} else if (auth == SMTP_AUTH_LOGIN) {
		r = sasl_login_command(&line);
		next = SMTP_STATE_AUTH_LOGIN;
		shown = "AUTH LOGIN";
	} else {
		r = sasl_xoauth2_command(&line, client->username, client->secret);
		next = SMTP_STATE_AUTH_XOAUTH2;
		shown = "AUTH XOAUTH2 ****";
	}
	if (r < 0) {
		mt_buf_free_wipe(&line);
		session_fail(client, MT_CLASS_AUTH, true, "username or secret cannot be encoded",
		             NULL, NULL);
		return;
	}
	/* The encoders end lines with CRLF; send_command adds its own. */
	while (line.len > 0 && (line.data[line.len - 1] == '\n' || line.data[line.len - 1] == '\r'))
		line.data[--line.len] = '\0';
	send_line_now(client, next, TIMEOUT_COMMAND_MS, line.data, shown);
	mt_buf_free_wipe(&line);
}

static void send_login_step(struct smtp_client *client, bool user_step)
{
	struct mt_buf line;
	mt_buf_init(&line, MT_SASL_RESPONSE_MAX);
	int r = user_step ? sasl_login_user(&line, client->username)
	                  : sasl_login_secret(&line, client->secret);
	if (r < 0) {
		mt_buf_free_wipe(&line);
		session_fail(client, MT_CLASS_AUTH, true, "username or secret cannot be encoded",
		             NULL, NULL);
		return;
	}
	while (line.len > 0 && (line.data[line.len - 1] == '\n' || line.data[line.len - 1] == '\r'))
		line.data[--line.len] = '\0';
	send_line_now(client, user_step ? SMTP_STATE_AUTH_LOGIN_USER : SMTP_STATE_AUTH_LOGIN_PASS,
	              TIMEOUT_COMMAND_MS, line.data, "****");
	mt_buf_free_wipe(&line);
}

static void after_ehlo(struct smtp_client *client)
{
	if (client->params.security == MT_SECURITY_STARTTLS && !client->tls_active) {
		if (!client->caps.starttls) {
			session_fail(client, MT_CLASS_TLS, true,
			             "the server does not offer STARTTLS", NULL, NULL);
			return;
		}
		send_line_now(client, SMTP_STATE_STARTTLS, TIMEOUT_COMMAND_MS, "STARTTLS", NULL);
		return;
	}
	start_auth(client);
}

static void send_ehlo(struct smtp_client *client, bool helo)
{
	char command[MT_HOSTNAME_MAX + 8];
	snprintf(command, sizeof(command), "%s %s", helo ? "HELO" : "EHLO", client->helo_name);
	send_line_now(client, helo ? SMTP_STATE_HELO : SMTP_STATE_EHLO, TIMEOUT_COMMAND_MS, command,
	              NULL);
}

static void fail_on_reply(struct smtp_client *client, const struct smtp_reply *reply,
                          enum smtp_phase phase, const char *reason)
{
	struct smtp_verdict v = smtp_classify_reply(reply, phase);
	session_fail(client, v.cls == MT_CLASS_NONE ? MT_CLASS_PROTO : v.cls, v.permanent, reason,
	             reply, NULL);
}

/* The one place a reply moves the session on: a switch on the state it arrived in. Returns
 * true when the client was freed. */
static bool handle_reply(struct smtp_client *client, const struct smtp_reply *reply)
{
	transcript_reply(client, reply);
	/* 421: the server is closing the channel, whatever we asked (RFC 5321 §3.8). */
	if (reply->code == 421 && client->state != SMTP_STATE_QUIT) {
		fail_on_reply(client, reply, SMTP_PHASE_BANNER, "the server closed the session");
		return false;
	}
	switch (client->state) {
	case SMTP_STATE_BANNER:
		if (reply->code != 220)
			fail_on_reply(client, reply, SMTP_PHASE_BANNER, "refused at the greeting");
		else
			send_ehlo(client, false);
		break;
	case SMTP_STATE_EHLO:
		if (reply->code / 100 == 2) {
			const char *error;
			memset(&client->caps, 0, sizeof(client->caps));
			if (smtp_caps_parse(reply, &client->caps, &error) < 0) {
				session_fail(client, MT_CLASS_PROTO, false, error, reply, NULL);
				break;
			}
			after_ehlo(client);
		} else if (reply->code / 100 == 5) {
			send_ehlo(client, true); /* an old server: HELO, no extensions */
		} else {
			fail_on_reply(client, reply, SMTP_PHASE_EHLO, "EHLO refused");
		}
		break;
	case SMTP_STATE_HELO:
		if (reply->code / 100 != 2) {
			fail_on_reply(client, reply, SMTP_PHASE_EHLO, "HELO refused");
			break;
		}
		memset(&client->caps, 0, sizeof(client->caps));
		after_ehlo(client);
		break;
	case SMTP_STATE_STARTTLS: {
		if (reply->code != 220) {
			session_fail(client, MT_CLASS_TLS, reply->code / 100 == 5,
			             "the server refused STARTTLS", reply, NULL);
			break;
		}
		const char *error;
		/* Anything already received after the go-ahead was sent in plaintext and would be
		 * read as if it came over TLS (CVE-2011-0411 and kin). */
		if (mt_conn_input(client->conn)->len > 0 ||
		    smtp_reply_parser_busy(&client->parser)) {
			session_fail(client, MT_CLASS_TLS, true,
			             "plaintext data after the STARTTLS go-ahead (response "
			             "injection); session aborted",
			             reply, NULL);
			break;
		}
		set_state(client, SMTP_STATE_TLS_HANDSHAKE);
		if (mt_conn_start_tls(client->conn, &error) < 0)
			session_fail(client, MT_CLASS_TLS, true, error, NULL, NULL);
		break;
	}
	case SMTP_STATE_AUTH_PLAIN:
	case SMTP_STATE_AUTH_LOGIN_PASS:
		if (reply->code == 235)
			report_ready(client);
		else if (reply->code == 334)
			session_fail(client, MT_CLASS_PROTO, false, "unexpected AUTH challenge",
			             reply, NULL);
		else
			fail_on_reply(client, reply, SMTP_PHASE_AUTH, "authentication failed");
		break;
	case SMTP_STATE_AUTH_LOGIN:
		if (reply->code == 334)
			send_login_step(client, true);
		else
			fail_on_reply(client, reply, SMTP_PHASE_AUTH, "authentication failed");
		break;
	case SMTP_STATE_AUTH_LOGIN_USER:
		if (reply->code == 334)
			send_login_step(client, false);
		else
			fail_on_reply(client, reply, SMTP_PHASE_AUTH, "authentication failed");
		break;
	case SMTP_STATE_AUTH_XOAUTH2:
		if (reply->code == 235) {
			report_ready(client);
		} else if (reply->code == 334) {
			/* The error comes as a challenge; an empty answer gets the final 535. */
			struct sasl_xoauth2_error err;
			const char *error;
			const char *text = reply->line_count > 0 ? reply->lines[0] : "";
			if (sasl_xoauth2_parse_error(text, strlen(text), &err, &error) == 0)
				mt_log(MT_LOG_INFO, "smtp.xoauth2_error",
				       MT_KV("host", client->host), MT_KV("status", err.status),
				       MT_KV("scope", err.scope));
			send_line_now(client, SMTP_STATE_AUTH_XOAUTH2_ERROR, TIMEOUT_COMMAND_MS, "",
			              NULL);
		} else {
			fail_on_reply(client, reply, SMTP_PHASE_AUTH, "authentication failed");
		}
		break;
	case SMTP_STATE_AUTH_XOAUTH2_ERROR:
		if (reply->code / 100 == 2)
			report_ready(client);
		else
			session_fail(client, MT_CLASS_AUTH, true,
			             "the OAuth access token was refused", reply, NULL);
		break;
	case SMTP_STATE_READY:
		if (handle_transaction_reply(client, reply))
			return true;
		if (client->state == SMTP_STATE_READY)
			pump(client);
		break;
	case SMTP_STATE_QUIT:
		set_state(client, SMTP_STATE_CLOSED);
		mt_conn_free(&client->conn);
		if (client->cb.closed != NULL) {
			enter(client);
			client->cb.closed(client->ctx);
			return leave(client);
		}
		break;
	case SMTP_STATE_CONNECTING:
	case SMTP_STATE_TLS_HANDSHAKE:
	case SMTP_STATE_CLOSED:
	case SMTP_STATE_FAILED:
	case SMTP_STATE_COUNT:
		session_fail(client, MT_CLASS_PROTO, false, "unexpected reply", reply, NULL);
		break;
	}
	return false;
}

/* ---- failure ---- */

static void session_fail(struct smtp_client *client, enum mt_failure_class cls, bool permanent,
                         const char *reason, const struct smtp_reply *reply,
                         const char *fingerprint)
{
	if (client->state == SMTP_STATE_FAILED || client->state == SMTP_STATE_CLOSED)
		return;
	struct smtp_failure failure;
	memset(&failure, 0, sizeof(failure));
	failure.cls = cls;
	failure.permanent = permanent;
	mt_strlcpy(failure.reason, reason, sizeof(failure.reason));
	copy_reply(failure.reply, sizeof(failure.reply), reply);
	if (fingerprint != NULL)
		mt_strlcpy(failure.fingerprint, fingerprint, sizeof(failure.fingerprint));
	mt_log(MT_LOG_INFO, "smtp.session_failed", MT_KV("host", client->host),
	       MT_KV("state", state_names[client->state]), MT_KV("class", mt_class_name(cls)),
	       MT_KV("reason", failure.reason), MT_KV("reply", failure.reply));
	set_state(client, SMTP_STATE_FAILED);
	client->body_tx = NULL;
	client->ring_count = 0;
	/* The connection goes first: nothing more is read or written for this session. */
	mt_conn_free(&client->conn);

	/* Every message not yet answered failed with the session, temporarily: it may be sent
	 * again elsewhere. One whose dot went out unanswered is not known to be delivered. */
	char text[sizeof(failure.reason) + sizeof(failure.reply) + 2];
	snprintf(text, sizeof(text), "%s%s%s", failure.reason, failure.reply[0] ? ": " : "",
	         failure.reply);
	enter(client);
	while (client->tx_count > 0) {
		struct tx *tx = tx_at(client, 0);
		struct smtp_message *m = tx->message;
		bool decided = tx->aborted && tx->outstanding == 0;
		if (!decided)
			finish_failed(m, cls, false, text);
		if (complete_head(client))
			break; /* cannot happen: depth > 0 */
	}
	if (client->cb.session_failed != NULL)
		client->cb.session_failed(client->ctx, &failure);
	leave(client);
}

/* ---- connection callbacks ---- */

static void on_readable(void *ctx)
{
	struct smtp_client *client = ctx;
	enter(client);
	while (client->conn != NULL) {
		struct mt_buf *input = mt_conn_input(client->conn);
		if (input->len == 0)
			break;
		size_t consumed = 0;
		const struct smtp_reply *reply;
		const char *error;
		int r = smtp_reply_parser_feed(&client->parser, input->data, input->len, &consumed,
		                               &reply, &error);
		if (r < 0) {
			session_fail(client, MT_CLASS_PROTO, false, error, NULL, NULL);
			break;
		}
		mt_buf_consume(input, r == 0 ? input->len : consumed);
		if (r == 0)
			break;
		if (client->state == SMTP_STATE_FAILED || client->state == SMTP_STATE_CLOSED)
			break;
		if (handle_reply(client, reply) || client->free_requested)
			break;
	}
	leave(client);
}

static void on_connected(void *ctx)
{
	struct smtp_client *client = ctx;
	if (client->params.security == MT_SECURITY_TLS)
		client->tls_active = true;
	set_state(client, SMTP_STATE_BANNER);
	mt_conn_set_read_timeout(client->conn, client->params.greeting_timeout_ms > 0
	                                           ? client->params.greeting_timeout_ms
	                                           : timeout_for(client, TIMEOUT_BANNER_MS));
}

static void on_tls_ready(void *ctx)
{
	struct smtp_client *client = ctx;
	client->tls_active = true;
	/* What the server said before TLS may have been forged (RFC 3207 §4.2): ask again. */
	memset(&client->caps, 0, sizeof(client->caps));
	char info[160];
	snprintf(info, sizeof(info), "<TLS established: %s>", mt_conn_tls_info(client->conn));
	transcript_str(client, 'C', info);
	enter(client);
	send_ehlo(client, false);
	leave(client);
}

static void on_drained(void *ctx)
{
	struct smtp_client *client = ctx;
	if (client->body_tx == NULL)
		return;
	enter(client);
	pump(client);
	leave(client);
}

static void on_error(void *ctx, const struct mt_net_error *error)
{
	struct smtp_client *client = ctx;
	enter(client);
	if (client->state == SMTP_STATE_QUIT) {
		/* A server that closes without answering QUIT has still ended the session. */
		set_state(client, SMTP_STATE_CLOSED);
		mt_conn_free(&client->conn);
		if (client->cb.closed != NULL)
			client->cb.closed(client->ctx);
	} else {
		session_fail(client, error->cls, false, error->reason, NULL,
		             error->fingerprint[0] ? error->fingerprint : NULL);
	}
	leave(client);
}

/* ---- life cycle ---- */

static char *dup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

static char *default_helo_name(void)
{
	char name[MT_HOSTNAME_MAX + 1];
	if (gethostname(name, sizeof(name)) == 0) {
		name[MT_HOSTNAME_MAX] = '\0';
		if (strchr(name, '.') != NULL)
			return strdup(name);
	}
	return strdup("localhost");
}

static void on_settle_later(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct smtp_client *client = arg;
	enter(client);
	pump(client);
	leave(client);
}

struct smtp_client *smtp_client_new(struct event_base *base, struct evdns_base *dns,
                                    const struct smtp_client_params *params,
                                    const struct smtp_client_callbacks *callbacks, void *ctx,
                                    const char **error_r)
{
	if (params->host == NULL || params->port == 0) {
		*error_r = "host and port are required";
		return NULL;
	}
	if (params->security != MT_SECURITY_NONE && params->tls == NULL) {
		*error_r = "TLS configuration missing";
		return NULL;
	}
	if (params->helo_name != NULL &&
	    (mt_str_has_crlf(params->helo_name) || strlen(params->helo_name) > MT_HOSTNAME_MAX)) {
		*error_r = "invalid HELO name";
		return NULL;
	}
	if (params->username != NULL && mt_str_has_crlf(params->username)) {
		*error_r = "invalid username";
		return NULL;
	}
	struct smtp_client *client = calloc(1, sizeof(*client));
	if (client == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	client->txs = calloc(MT_SMTP_SESSION_QUEUE_MAX, sizeof(*client->txs));
	client->settle_later = event_new(base, -1, 0, on_settle_later, client);
	client->base = base;
	client->dns = dns;
	client->params = *params;
	client->host = strdup(params->host);
	client->username = dup_or_null(params->username);
	client->helo_name =
	    params->helo_name != NULL ? strdup(params->helo_name) : default_helo_name();
	client->bind_address = dup_or_null(params->bind_address);
	if (params->pin != NULL)
		client->pin = *params->pin;
	if (params->secret != NULL)
		client->secret =
		    mt_secret_new(mt_secret_bytes(params->secret), mt_secret_len(params->secret));
	client->params.host = client->host;
	client->params.username = client->username;
	client->params.helo_name = client->helo_name;
	client->params.bind_address = client->bind_address;
	client->params.secret = NULL;
	client->params.pin = params->pin != NULL ? &client->pin : NULL;
	client->cb = *callbacks;
	client->ctx = ctx;
	client->window = 1;
	mt_buf_init(&client->out, MT_NET_OUTPUT_MAX);
	smtp_reply_parser_init(&client->parser);
	if (client->txs == NULL || client->settle_later == NULL || client->host == NULL ||
	    client->helo_name == NULL || (params->secret != NULL && client->secret == NULL)) {
		*error_r = "out of memory";
		smtp_client_destroy(client);
		return NULL;
	}

	struct mt_conn_params conn_params = {
	    .host = client->host,
	    .port = params->port,
	    .bind_address = client->bind_address,
	    .connect_timeout_ms = params->connect_timeout_ms,
	    .implicit_tls = params->security == MT_SECURITY_TLS,
	    .tls = params->tls,
	    .pin = client->params.pin,
	    .public_only = params->public_only,
	    .allow_private = params->allow_private,
	};
	struct mt_conn_callbacks conn_callbacks = {
	    .connected = on_connected,
	    .readable = on_readable,
	    .tls_ready = on_tls_ready,
	    .drained = on_drained,
	    .error = on_error,
	};
	set_state(client, SMTP_STATE_CONNECTING);
	client->conn = mt_conn_new(base, dns, &conn_params, &conn_callbacks, client, error_r);
	if (client->conn == NULL) {
		smtp_client_destroy(client);
		return NULL;
	}
	return client;
}

int smtp_client_send(struct smtp_client *client, struct smtp_message *message, const char **error_r)
{
	if (client->state == SMTP_STATE_FAILED || client->state == SMTP_STATE_CLOSED ||
	    client->state == SMTP_STATE_QUIT || client->quit_requested) {
		*error_r = "the session is over";
		return -1;
	}
	if (client->tx_count >= MT_SMTP_SESSION_QUEUE_MAX) {
		*error_r = "the session queue is full";
		return -1;
	}
	if (message->rcpt_count == 0 || message->rcpt_count > MT_SMTP_RCPTS_MAX ||
	    message->results == NULL) {
		*error_r = "a message needs 1 to 100 recipients and a result array";
		return -1;
	}
	if (message->data_len > MT_SMTP_MESSAGE_MAX ||
	    message->head_len > MT_SMTP_MESSAGE_MAX - message->data_len ||
	    (message->head_len > 0 && message->head == NULL)) {
		*error_r = "the message is too large";
		return -1;
	}
	bool utf8 = address_needs_utf8(message->mail_from);
	if (strlen(message->mail_from) > MT_SMTP_PATH_MAX || mt_str_has_crlf(message->mail_from) ||
	    strpbrk(message->mail_from, "<> ") != NULL) {
		*error_r = "invalid envelope sender";
		return -1;
	}
	for (size_t i = 0; i < message->rcpt_count; i++) {
		const char *rcpt = message->rcpts[i];
		if (rcpt[0] == '\0' || strlen(rcpt) > MT_SMTP_PATH_MAX || mt_str_has_crlf(rcpt) ||
		    strpbrk(rcpt, "<> ") != NULL) {
			*error_r = "invalid recipient address";
			return -1;
		}
		utf8 = utf8 || address_needs_utf8(rcpt);
	}
	memset(message->results, 0, sizeof(*message->results) * message->rcpt_count);
	message->outcome = SMTP_OUTCOME_FAILED;
	message->cls = MT_CLASS_NONE;
	message->permanent = false;
	message->reply[0] = '\0';

	struct tx *tx = tx_at(client, client->tx_count);
	memset(tx, 0, sizeof(*tx));
	tx->message = message;
	tx->needs_smtputf8 = utf8;
	tx->size = message->head_len + message->data_len;
	tx->eight_bit = smtp_data_has_8bit(message->head, message->head_len) ||
	                (message->data_8bit == SMTP_DATA_8BIT_UNKNOWN
	                     ? smtp_data_has_8bit(message->data, message->data_len)
	                     : message->data_8bit == SMTP_DATA_8BIT);
	client->tx_count++;

	if (client->state == SMTP_STATE_READY) {
		/* What the server cannot take is refused before the transaction starts (and handed
		 * back from the loop, see in_send). */
		enter(client);
		client->in_send = true;
		pump(client);
		client->in_send = false;
		leave(client);
	}
	return 0;
}

void smtp_client_quit(struct smtp_client *client)
{
	client->quit_requested = true;
	if (client->state == SMTP_STATE_READY) {
		enter(client);
		pump(client);
		leave(client);
	}
}

static void smtp_client_destroy(struct smtp_client *client)
{
	if (client->settle_later != NULL)
		event_free(client->settle_later);
	mt_conn_free(&client->conn);
	smtp_reply_parser_deinit(&client->parser);
	mt_buf_free_wipe(&client->out);
	mt_secret_free(&client->secret);
	free(client->txs);
	free(client->host);
	free(client->username);
	free(client->helo_name);
	free(client->bind_address);
	free(client);
}

void smtp_client_free(struct smtp_client **clientp)
{
	struct smtp_client *client = *clientp;
	if (client == NULL)
		return;
	*clientp = NULL;
	if (client->callback_depth > 0) {
		client->free_requested = true;
		mt_conn_free(&client->conn);
		return;
	}
	smtp_client_destroy(client);
}
