#include "imap/client.h"

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/str.h"
#include "net/conn.h"
#include "proto/sasl.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum imap_state {
	IMAP_STATE_CONNECTING,
	IMAP_STATE_GREETING,
	IMAP_STATE_CAPABILITY, /* before authentication */
	IMAP_STATE_STARTTLS,
	IMAP_STATE_TLS_HANDSHAKE,
	IMAP_STATE_AUTHENTICATE,    /* AUTHENTICATE sent; its initial response may be pending */
	IMAP_STATE_XOAUTH2_ERROR,   /* answered the error challenge with an empty line */
	IMAP_STATE_LOGIN,           /* the LOGIN command */
	IMAP_STATE_CAPABILITY_AUTH, /* re-read after authentication */
	IMAP_STATE_ENABLE,
	IMAP_STATE_READY, /* operations; tagged answers go to the head operation */
	IMAP_STATE_LOGOUT,
	IMAP_STATE_CLOSED,
	IMAP_STATE_FAILED,
	IMAP_STATE_COUNT
};

static const char *const state_names[IMAP_STATE_COUNT] = {
    [IMAP_STATE_CONNECTING] = "connecting",
    [IMAP_STATE_GREETING] = "greeting",
    [IMAP_STATE_CAPABILITY] = "capability",
    [IMAP_STATE_STARTTLS] = "starttls",
    [IMAP_STATE_TLS_HANDSHAKE] = "tls-handshake",
    [IMAP_STATE_AUTHENTICATE] = "authenticate",
    [IMAP_STATE_XOAUTH2_ERROR] = "xoauth2-error",
    [IMAP_STATE_LOGIN] = "login",
    [IMAP_STATE_CAPABILITY_AUTH] = "capability-auth",
    [IMAP_STATE_ENABLE] = "enable",
    [IMAP_STATE_READY] = "ready",
    [IMAP_STATE_LOGOUT] = "logout",
    [IMAP_STATE_CLOSED] = "closed",
    [IMAP_STATE_FAILED] = "failed",
};

enum op_kind { OP_LIST, OP_SELECT, OP_FETCH, OP_SEARCH, OP_APPEND, OP_NOOP, OP_IDLE };

struct op {
	enum op_kind kind;
	struct op *next;
	imap_done_cb *done; /* NULL for the client's own NOOP and IDLE */
	imap_fetch_cb *on_fetch;
	void *ctx;
	char *arg;   /* mailbox, criteria or FETCH items */
	char *flags; /* APPEND */
	char *data;  /* APPEND */
	size_t len;
	bool read_only;
	bool started;
	unsigned outstanding; /* tagged commands awaiting their answer */
	/* The tags of its commands: a<tag_first> to a<tag_last>, in a row (operations never
	 * interleave their commands), so that a tagged answer finds its operation. */
	unsigned tag_first, tag_last;
	/* FETCH */
	uint32_t first, last, chunk, next_uid;
	bool star;       /* the last chunk is "first:*" */
	bool all_issued; /* every chunk is out */
	bool wants_more; /* items beyond UID/FLAGS/MODSEQ: a reply without them is unsolicited */
	/* APPEND: waiting for the "+" before the literal; IDLE: the "+" came, DONE sent */
	bool waiting_plus, continued, done_sent, end_wanted;
	struct imap_result res;
	struct imap_mailbox *boxes;
	size_t box_cap;
	uint32_t *uids;
	size_t uid_cap;
};

struct imap_client {
	struct event_base *base;
	struct imap_client_params params;
	char *host, *username, *bind_address;
	struct mt_tls_pin pin;
	struct mt_secret *secret;
	struct imap_client_callbacks cb;
	void *ctx;

	enum imap_state state;
	struct mt_conn *conn;
	struct imap_parser parser;
	struct mt_buf out;
	struct mt_buf raw; /* the server response being read, for the transcript */
	size_t raw_total;
	size_t transcript_total;
	bool transcript_cut;

	char *caps; /* " IMAP4REV1 IDLE AUTH=PLAIN ", sized to fit (at most MT_IMAP_CAPS_MAX) */
	bool caps_known;
	bool tls_active, preauth;
	bool ir_sent; /* AUTHENTICATE: the response went out */
	char *pending_ir;
	unsigned next_tag;
	char tag[16]; /* of the command in flight before READY */

	struct op *ops, *ops_tail;
	size_t op_count;
	bool idle_wanted, logout_requested, ready_reported;
	bool idle_refused; /* IDLE offered but refused: poll with NOOP instead */
	struct event *idle_timer, *poll_timer;

	/* the selected mailbox */
	uint32_t uidnext, exists;

	int callback_depth;
	bool free_requested;
};

static void client_destroy(struct imap_client *client);
static void session_fail(struct imap_client *client, enum mt_failure_class cls, const char *reason,
                         const struct imap_response *resp, const char *fingerprint);
static void pump(struct imap_client *client);

int imap_auth_parse(const char *name, enum imap_auth *auth_r)
{
	static const struct {
		const char *name;
		enum imap_auth auth;
	} names[] = {{"password", IMAP_AUTH_PASSWORD},
	             {"plain", IMAP_AUTH_PLAIN},
	             {"login", IMAP_AUTH_LOGIN},
	             {"xoauth2", IMAP_AUTH_XOAUTH2}};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(name, names[i].name) == 0) {
			*auth_r = names[i].auth;
			return 0;
		}
	}
	return -1;
}

const char *imap_auth_name(enum imap_auth auth)
{
	switch (auth) {
	case IMAP_AUTH_PLAIN:
		return "plain";
	case IMAP_AUTH_LOGIN:
		return "login";
	case IMAP_AUTH_XOAUTH2:
		return "xoauth2";
	case IMAP_AUTH_PASSWORD:
		break;
	}
	return "password";
}

const char *imap_client_state_name(const struct imap_client *client)
{
	return state_names[client->state];
}

bool imap_client_has_cap(const struct imap_client *client, const char *cap)
{
	char needle[128];
	int n = snprintf(needle, sizeof(needle), " %s ", cap);
	if (n < 0 || (size_t)n >= sizeof(needle))
		return false;
	return client->caps != NULL && strcasestr(client->caps, needle) != NULL;
}

const char *imap_mailbox_role(unsigned flags)
{
	if (flags & IMAP_MBOX_SENT)
		return "sent";
	if (flags & IMAP_MBOX_DRAFTS)
		return "drafts";
	if (flags & IMAP_MBOX_TRASH)
		return "trash";
	if (flags & IMAP_MBOX_JUNK)
		return "junk";
	if (flags & IMAP_MBOX_ARCHIVE)
		return "archive";
	if (flags & IMAP_MBOX_ALL)
		return "all";
	if (flags & IMAP_MBOX_FLAGGED)
		return "flagged";
	if (flags & IMAP_MBOX_IMPORTANT)
		return "important";
	return NULL;
}

const struct imap_mailbox *imap_mailboxes_find_sent(const struct imap_mailbox *boxes, size_t count)
{
	/* Names providers and clients use when the server has no SPECIAL-USE; the leaf is
	 * compared, so "INBOX.Sent" and "INBOX/Sent Items" count too. */
	static const char *const names[] = {"Sent",      "Sent Items",         "Sent Messages",
	                                    "Sent Mail", "Sent-Mail",          "Gesendet",
	                                    "Envoyés",   "Elementos enviados", "[Gmail]/Sent Mail"};
	for (size_t i = 0; i < count; i++)
		if ((boxes[i].flags & IMAP_MBOX_SENT) && !(boxes[i].flags & IMAP_MBOX_NOSELECT))
			return &boxes[i];
	for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
		for (size_t i = 0; i < count; i++) {
			const struct imap_mailbox *b = &boxes[i];
			if (b->flags & (IMAP_MBOX_NOSELECT | IMAP_MBOX_NONEXISTENT))
				continue;
			const char *leaf = b->name_utf8;
			if (strcasecmp(leaf, names[n]) == 0)
				return b;
			if (b->delimiter != '\0') {
				const char *d = strrchr(leaf, b->delimiter);
				if (d != NULL && strncasecmp(leaf, "INBOX", 5) == 0 &&
				    d == leaf + 5 && strcasecmp(d + 1, names[n]) == 0)
					return b;
			}
		}
	}
	return NULL;
}

/* ---- callbacks into the owner, guarded so that the owner may free us from inside ---- */

static void enter(struct imap_client *client)
{
	client->callback_depth++;
}

/* Returns true when the client was freed and must not be touched. */
static bool leave(struct imap_client *client)
{
	if (--client->callback_depth == 0 && client->free_requested) {
		client_destroy(client);
		return true;
	}
	return false;
}

static void transcript(struct imap_client *client, char direction, const char *line, size_t len)
{
	if (client->cb.transcript == NULL || client->transcript_cut)
		return;
	if (client->transcript_total + len > MT_IMAP_TRANSCRIPT_MAX) {
		client->transcript_cut = true;
		static const char cut[] = "<transcript cut: over its size cap>";
		client->cb.transcript(client->ctx, direction, cut, sizeof(cut) - 1);
		return;
	}
	client->transcript_total += len;
	client->cb.transcript(client->ctx, direction, line, len);
}

static void transcript_str(struct imap_client *client, char direction, const char *line)
{
	transcript(client, direction, line, strlen(line));
}

/* The raw bytes of the response just read, line by line, bounded. */
static void transcript_response(struct imap_client *client)
{
	if (client->cb.transcript == NULL || client->transcript_cut) {
		client->raw_total = 0; /* nothing was kept: no one reads it */
		return;
	}
	const char *p = client->raw.data, *end = p + client->raw.len;
	while (p != NULL && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		size_t shown = n;
		if (shown > 0 && p[shown - 1] == '\r')
			shown--;
		if (shown > MT_TRANSCRIPT_LINE_MAX)
			shown = MT_TRANSCRIPT_LINE_MAX;
		transcript(client, 'S', p, shown);
		p = nl != NULL ? nl + 1 : end;
	}
	if (client->raw_total > client->raw.len) {
		char note[96];
		snprintf(note, sizeof(note), "<%zu more bytes of this response>",
		         client->raw_total - client->raw.len);
		transcript_str(client, 'S', note);
	}
	mt_buf_free(&client->raw);
	client->raw_total = 0;
}

static void capture_raw(struct imap_client *client, const char *data, size_t len)
{
	if (client->cb.transcript == NULL || client->transcript_cut)
		return; /* a sync's FETCH answers are most of its bytes: not copied for no one */
	client->raw_total += len;
	size_t room = MT_IMAP_TRANSCRIPT_RESPONSE_MAX - client->raw.len;
	if (room > 0)
		mt_buf_append(&client->raw, data, len < room ? len : room);
}

static void set_state(struct imap_client *client, enum imap_state state)
{
	mt_log(MT_LOG_DEBUG, "imap.state", MT_KV("host", client->host),
	       MT_KV("from", state_names[client->state]), MT_KV("to", state_names[state]));
	client->state = state;
}

static int command_timeout(const struct imap_client *client)
{
	return client->params.command_timeout_ms > 0 ? client->params.command_timeout_ms
	                                             : MT_IMAP_COMMAND_TIMEOUT_MS;
}

static void flush(struct imap_client *client)
{
	if (client->out.len == 0 || client->conn == NULL)
		return;
	int r = mt_conn_write(client->conn, client->out.data, client->out.len);
	/* The buffer may have held a password; nothing is kept between commands. */
	mt_buf_free_wipe(&client->out);
	if (r < 0)
		session_fail(client, MT_CLASS_INTERNAL, "output buffer full", NULL, NULL);
}

/* Appends "TAG text CRLF" (a fresh tag, remembered in client->tag); `shown` replaces the text
 * in the transcript when it holds a secret. */
static int send_tagged(struct imap_client *client, const char *text, const char *shown)
{
	snprintf(client->tag, sizeof(client->tag), "a%u", ++client->next_tag);
	char line[MT_TRANSCRIPT_LINE_MAX];
	snprintf(line, sizeof(line), "%s %s", client->tag, shown != NULL ? shown : text);
	transcript_str(client, 'C', line);
	if (mt_buf_printf(&client->out, "%s ", client->tag) < 0 ||
	    mt_buf_append_str(&client->out, text) < 0 || mt_buf_append(&client->out, "\r\n", 2) < 0)
		return -1;
	return 0;
}

static int send_untagged(struct imap_client *client, const char *text, const char *shown)
{
	transcript_str(client, 'C', shown != NULL ? shown : text);
	if (mt_buf_append_str(&client->out, text) < 0 || mt_buf_append(&client->out, "\r\n", 2) < 0)
		return -1;
	return 0;
}

/* One command before READY: sent at once, the state it is answered in. */
static void send_now(struct imap_client *client, enum imap_state next, const char *text,
                     const char *shown)
{
	set_state(client, next);
	if (send_tagged(client, text, shown) < 0) {
		session_fail(client, MT_CLASS_INTERNAL, "command too long", NULL, NULL);
		return;
	}
	mt_conn_set_read_timeout(client->conn, command_timeout(client));
	flush(client);
}

/* A quoted string (RFC 3501 quoted): NUL, CR and LF cannot be sent this way. */
static int append_quoted(struct mt_buf *out, const char *s)
{
	if (mt_buf_append(out, "\"", 1) < 0)
		return -1;
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '\r' || *p == '\n')
			return -1;
		if ((*p == '"' || *p == '\\') && mt_buf_append(out, "\\", 1) < 0)
			return -1;
		if (mt_buf_append(out, p, 1) < 0)
			return -1;
	}
	return mt_buf_append(out, "\"", 1);
}

static void copy_response(char *dst, size_t size, const struct imap_response *resp)
{
	if (resp == NULL) {
		dst[0] = '\0';
		return;
	}
	if (resp->kind == IMAP_RESP_TAGGED)
		snprintf(dst, size, "%s %s %s%s%s%s%s", resp->tag, resp->name,
		         resp->code[0] ? "[" : "", resp->code, resp->code_args[0] ? " " : "",
		         resp->code_args, resp->code[0] ? "] " : "");
	else
		snprintf(dst, size, "* %s %s%s%s%s%s", resp->name, resp->code[0] ? "[" : "",
		         resp->code, resp->code_args[0] && resp->code[0] ? " " : "",
		         resp->code[0] ? resp->code_args : "", resp->code[0] ? "] " : "");
	size_t n = strlen(dst);
	if (n < size)
		snprintf(dst + n, size - n, "%s", resp->text != NULL ? resp->text : "");
}

static enum imap_code code_of(const struct imap_response *resp)
{
	struct imap_code_data code;
	const char *error;
	if (resp == NULL || imap_response_code(resp, &code, &error) < 0)
		return IMAP_CODE_NONE;
	return code.code;
}

/* NO / BAD / BYE: the class a refusal carries. */
static enum mt_failure_class refusal_class(const struct imap_response *resp,
                                           enum mt_failure_class otherwise)
{
	switch (code_of(resp)) {
	case IMAP_CODE_UNAVAILABLE:
	case IMAP_CODE_INUSE:
		return MT_CLASS_THROTTLE;
	case IMAP_CODE_AUTHENTICATIONFAILED:
	case IMAP_CODE_AUTHORIZATIONFAILED:
	case IMAP_CODE_EXPIRED:
		return MT_CLASS_AUTH;
	case IMAP_CODE_PRIVACYREQUIRED:
		return MT_CLASS_TLS;
	case IMAP_CODE_OVERQUOTA:
		return MT_CLASS_QUOTA;
	default:
		break;
	}
	return otherwise;
}

/* Out of memory leaves the capabilities unknown: the step that needs them fails. */
static void read_caps(struct imap_client *client, const struct imap_value *first)
{
	char caps[MT_IMAP_CAPS_MAX];
	size_t n = 0;
	caps[n++] = ' ';
	for (const struct imap_value *v = first; v != NULL; v = v->next) {
		const char *s = imap_value_str(v);
		if (s == NULL)
			continue;
		size_t len = strlen(s);
		if (n + len + 2 >= sizeof(caps))
			break;
		for (size_t i = 0; i < len; i++)
			caps[n++] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32 : s[i]);
		caps[n++] = ' ';
	}
	caps[n] = '\0';
	free(client->caps);
	client->caps = strdup(caps);
	client->caps_known = client->caps != NULL;
}

/* A CAPABILITY response code on a status response: 1 when read. */
static int caps_from_code(struct imap_client *client, const struct imap_response *resp)
{
	struct imap_code_data code;
	const char *error;
	if (imap_response_code(resp, &code, &error) < 0 || code.code != IMAP_CODE_CAPABILITY)
		return 0;
	read_caps(client, code.list);
	return client->caps_known;
}

/* ---- operations ---- */

static void op_free(struct op *op)
{
	free(op->arg);
	free(op->flags);
	free(op->data);
	free(op->boxes);
	free(op->uids);
	free(op);
}

static void event_report(struct imap_client *client, const struct imap_event *event)
{
	if (client->cb.event == NULL || client->free_requested)
		return;
	enter(client);
	client->cb.event(client->ctx, event);
	leave(client);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Pops the head operation and hands its result back. Returns true when the client was freed. */
static bool finish_head(struct imap_client *client)
{
	struct op *op = client->ops;
	client->ops = op->next;
	if (client->ops == NULL)
		client->ops_tail = NULL;
	client->op_count--;
	struct imap_result *res = &op->res;
	res->mailboxes = op->boxes;
	res->mailbox_count = op->kind == OP_LIST ? res->mailbox_count : 0;
	if (op->uids != NULL && res->uid_count > 1)
		qsort(op->uids, res->uid_count, sizeof(uint32_t), cmp_u32);
	res->uids = op->uids;
	bool freed = false;
	if (op->done != NULL && !client->free_requested) {
		enter(client);
		op->done(op->ctx, res);
		freed = leave(client);
	}
	op_free(op);
	return freed;
}

static void op_refused(struct op *op, const struct imap_response *resp)
{
	if (op->res.cls != MT_CLASS_NONE)
		return;
	op->res.cls =
	    refusal_class(resp, resp->status == IMAP_STATUS_BAD ? MT_CLASS_PROTO : MT_CLASS_RESP);
	snprintf(op->res.reason, sizeof(op->res.reason), "the server refused the command (%s)",
	         resp->name);
	copy_response(op->res.response, sizeof(op->res.response), resp);
}

static void arm_timer(struct event *timer, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(timer, &tv);
}

/* A command of `op` went out (its tag is the last one sent). */
static void op_sent(struct imap_client *client, struct op *op)
{
	if (op->tag_first == 0)
		op->tag_first = client->next_tag;
	op->tag_last = client->next_tag;
	op->outstanding++;
}

static unsigned fetch_window(const struct imap_client *client)
{
	return client->params.fetch_window ? client->params.fetch_window : MT_IMAP_FETCH_WINDOW;
}

/* UID FETCH commands awaiting their answer, of every operation in flight. */
static unsigned fetches_in_flight(const struct imap_client *client)
{
	unsigned n = 0;
	for (const struct op *op = client->ops; op != NULL && op->started; op = op->next) {
		if (op->kind == OP_FETCH)
			n += op->outstanding;
	}
	return n;
}

static int fetch_issue(struct imap_client *client, struct op *op)
{
	while (!op->all_issued && fetches_in_flight(client) < fetch_window(client) &&
	       op->res.cls == MT_CLASS_NONE) {
		char range[48];
		uint32_t to;
		if (op->star) {
			snprintf(range, sizeof(range), "%u:*", op->next_uid);
			op->all_issued = true;
		} else {
			to = op->last - op->next_uid < op->chunk - 1 ? op->last
			                                             : op->next_uid + op->chunk - 1;
			snprintf(range, sizeof(range), "%u:%u", op->next_uid, to);
			if (to == op->last)
				op->all_issued = true;
			else
				op->next_uid = to + 1;
		}
		struct mt_buf line;
		mt_buf_init(&line, MT_IMAP_LINE_MAX);
		int r = mt_buf_printf(&line, "UID FETCH %s %s", range, op->arg);
		if (r == 0)
			r = send_tagged(client, line.data, NULL);
		mt_buf_free(&line);
		if (r < 0)
			return -1;
		op_sent(client, op);
	}
	return 0;
}

/* Sends the head operation's command(s). */
static int op_start(struct imap_client *client, struct op *op)
{
	struct mt_buf line;
	int r = 0;
	op->started = true;
	mt_buf_init(&line, MT_IMAP_LINE_MAX);
	switch (op->kind) {
	case OP_LIST:
		r = send_tagged(client,
		                imap_client_has_cap(client, "SPECIAL-USE")
		                    ? "LIST \"\" \"*\" RETURN (SPECIAL-USE)"
		                    : "LIST \"\" \"*\"",
		                NULL);
		break;
	case OP_SELECT:
		r = mt_buf_append_str(&line, op->read_only ? "EXAMINE " : "SELECT ");
		if (r == 0)
			r = append_quoted(&line, op->arg);
		if (r == 0 && imap_client_has_cap(client, "CONDSTORE") &&
		    !imap_client_has_cap(client, "ENABLE"))
			r = mt_buf_append_str(&line, " (CONDSTORE)");
		if (r == 0)
			r = send_tagged(client, line.data, NULL);
		client->uidnext = 0;
		client->exists = 0;
		break;
	case OP_FETCH:
		if (op->last == UINT32_MAX) {
			if (client->uidnext > 0) {
				op->last = client->uidnext - 1;
			} else {
				op->star = true;
			}
		}
		op->next_uid = op->first;
		if (!op->star && op->last < op->first) {
			mt_buf_free(&line);
			return 0; /* nothing to fetch: finished by pump */
		}
		r = fetch_issue(client, op);
		mt_buf_free(&line);
		return r;
	case OP_SEARCH:
		r = mt_buf_printf(&line, "UID SEARCH %s%s",
		                  imap_client_has_cap(client, "ESEARCH") ? "RETURN (ALL) " : "",
		                  op->arg);
		if (r == 0)
			r = send_tagged(client, line.data, NULL);
		break;
	case OP_APPEND: {
		bool plus = imap_client_has_cap(client, "LITERAL+") ||
		            (imap_client_has_cap(client, "LITERAL-") && op->len <= 4096);
		r = mt_buf_append_str(&line, "APPEND ");
		if (r == 0)
			r = append_quoted(&line, op->arg);
		if (r == 0 && op->flags != NULL)
			r = mt_buf_printf(&line, " %s", op->flags);
		if (r == 0)
			r = mt_buf_printf(&line, " {%zu%s}", op->len, plus ? "+" : "");
		if (r == 0)
			r = send_tagged(client, line.data, NULL);
		if (r == 0 && plus) {
			char summary[64];
			snprintf(summary, sizeof(summary), "<%zu bytes of message data>", op->len);
			transcript_str(client, 'C', summary);
			r = mt_buf_append(&client->out, op->data, op->len);
			if (r == 0)
				r = mt_buf_append(&client->out, "\r\n", 2);
		} else {
			op->waiting_plus = true;
		}
		break;
	}
	case OP_NOOP:
		r = send_tagged(client, "NOOP", NULL);
		break;
	case OP_IDLE:
		r = send_tagged(client, "IDLE", NULL);
		break;
	}
	mt_buf_free(&line);
	if (r == 0)
		op_sent(client, op);
	return r;
}

static bool op_complete(const struct op *op)
{
	if (!op->started || op->outstanding > 0)
		return false;
	if (op->kind == OP_FETCH)
		return op->all_issued || op->res.cls != MT_CLASS_NONE ||
		       (!op->star && op->last < op->first);
	return true;
}

static void push_op(struct imap_client *client, struct op *op)
{
	if (client->ops_tail != NULL)
		client->ops_tail->next = op;
	else
		client->ops = op;
	client->ops_tail = op;
	client->op_count++;
}

/* Ends an IDLE at the head so that what was queued behind it can run. */
static void idle_end(struct imap_client *client)
{
	struct op *op = client->ops;
	if (op == NULL || op->kind != OP_IDLE || op->done_sent)
		return;
	op->end_wanted = true;
	if (!op->continued)
		return; /* DONE goes out when the "+" arrives */
	op->done_sent = true;
	evtimer_del(client->idle_timer);
	if (send_untagged(client, "DONE", NULL) < 0)
		session_fail(client, MT_CLASS_INTERNAL, "output buffer full", NULL, NULL);
	mt_conn_set_read_timeout(client->conn, command_timeout(client));
}

static void send_logout(struct imap_client *client)
{
	send_now(client, IMAP_STATE_LOGOUT, "LOGOUT", NULL);
}

/* FETCH operations queued in a row overlap: while the head's last commands are answered, the
 * next one's go out (within the window of FETCH commands), so the server is never idle for a
 * round trip between them. Answers still complete the operations in order. */
static int fetch_ahead(struct imap_client *client)
{
	struct op *prev = client->ops;
	for (struct op *op = prev->next; op != NULL && op->kind == OP_FETCH; op = op->next) {
		/* the one before has all its commands out and was not refused; room in the window
		 */
		if (prev->kind != OP_FETCH || !prev->all_issued || prev->res.cls != MT_CLASS_NONE ||
		    fetches_in_flight(client) >= fetch_window(client))
			break;
		if (!op->started) {
			if (op_start(client, op) < 0)
				return -1;
		} else if (fetch_issue(client, op) < 0) {
			return -1;
		}
		prev = op;
	}
	return 0;
}

static void pump(struct imap_client *client)
{
	if (client->state != IMAP_STATE_READY || client->free_requested)
		return;
	for (;;) {
		struct op *op = client->ops;
		if (op == NULL)
			break;
		if (op->kind == OP_IDLE && op->next != NULL)
			idle_end(client);
		if (!op->started) {
			if (op_start(client, op) < 0) {
				session_fail(client, MT_CLASS_INTERNAL, "command too long", NULL,
				             NULL);
				return;
			}
		} else if (op->kind == OP_FETCH && fetch_issue(client, op) < 0) {
			session_fail(client, MT_CLASS_INTERNAL, "command too long", NULL, NULL);
			return;
		}
		if (!op_complete(op)) {
			if (fetch_ahead(client) < 0) {
				session_fail(client, MT_CLASS_INTERNAL, "command too long", NULL,
				             NULL);
				return;
			}
			break;
		}
		if (finish_head(client) || client->free_requested ||
		    client->state != IMAP_STATE_READY)
			return;
	}
	if (client->ops == NULL) {
		if (client->logout_requested) {
			flush(client);
			send_logout(client);
			return;
		}
		if (client->idle_wanted) {
			if (imap_client_has_cap(client, "IDLE") && !client->idle_refused) {
				struct op *idle = calloc(1, sizeof(*idle));
				if (idle == NULL) {
					session_fail(client, MT_CLASS_INTERNAL, "out of memory",
					             NULL, NULL);
					return;
				}
				idle->kind = OP_IDLE;
				push_op(client, idle);
				if (op_start(client, idle) < 0) {
					session_fail(client, MT_CLASS_INTERNAL, "command too long",
					             NULL, NULL);
					return;
				}
			} else if (!evtimer_pending(client->poll_timer, NULL)) {
				arm_timer(client->poll_timer, client->params.poll_interval_ms > 0
				                                  ? client->params.poll_interval_ms
				                                  : MT_IMAP_POLL_INTERVAL_MS);
			}
		}
	}
	flush(client);
	if (client->state != IMAP_STATE_READY)
		return;
	bool idling = client->ops != NULL && client->ops->kind == OP_IDLE &&
	              client->ops->continued && !client->ops->done_sent;
	mt_conn_set_read_timeout(client->conn,
	                         client->ops != NULL && !idling ? command_timeout(client) : 0);
	/* A FETCH answer is a stream of TLS records: read them a batch at a time. */
	mt_conn_set_read_delay(client->conn,
	                       fetches_in_flight(client) > 0 ? MT_IMAP_FETCH_READ_DELAY_US : 0);
}

static void on_idle_timer(evutil_socket_t fd, short what, void *ctx)
{
	(void)fd;
	(void)what;
	struct imap_client *client = ctx;
	enter(client);
	/* RFC 2177: re-issue before the server's inactivity timeout. */
	idle_end(client);
	flush(client);
	leave(client);
}

static void on_poll_timer(evutil_socket_t fd, short what, void *ctx)
{
	(void)fd;
	(void)what;
	struct imap_client *client = ctx;
	if (client->state != IMAP_STATE_READY || client->ops != NULL || !client->idle_wanted)
		return;
	struct op *op = calloc(1, sizeof(*op));
	if (op == NULL)
		return;
	op->kind = OP_NOOP;
	push_op(client, op);
	enter(client);
	pump(client);
	leave(client);
}

/* ---- responses in READY ---- */

static void list_add(struct imap_client *client, struct op *op, const struct imap_response *resp)
{
	struct imap_list list;
	const char *error;
	if (imap_list_parse(resp, 0, &list, &error) < 0) {
		mt_log(MT_LOG_INFO, "imap.list_skipped", MT_KV("host", client->host),
		       MT_KV("reason", error));
		return;
	}
	if (op->res.mailbox_count >= MT_IMAP_LIST_MAX)
		return;
	if (op->res.mailbox_count == op->box_cap) {
		size_t n = op->box_cap ? op->box_cap * 2 : 16;
		struct imap_mailbox *grown = realloc(op->boxes, n * sizeof(*grown));
		if (grown == NULL)
			return;
		op->boxes = grown;
		op->box_cap = n;
	}
	struct imap_mailbox *b = &op->boxes[op->res.mailbox_count++];
	mt_strlcpy(b->name, list.name, sizeof(b->name));
	mt_strlcpy(b->name_utf8, list.name_utf8, sizeof(b->name_utf8));
	b->flags = list.flags;
	b->delimiter = list.delimiter;
}

static void uids_add(struct op *op, const struct imap_seqset *set)
{
	for (size_t i = 0; i < set->count; i++) {
		for (uint64_t u = set->ranges[i].first; u <= set->ranges[i].last; u++) {
			if (u == UINT32_MAX || op->res.uid_count >= MT_IMAP_SEARCH_UIDS_MAX)
				return;
			if (op->res.uid_count == op->uid_cap) {
				size_t n = op->uid_cap ? op->uid_cap * 2 : 256;
				uint32_t *grown = realloc(op->uids, n * sizeof(*grown));
				if (grown == NULL)
					return;
				op->uids = grown;
				op->uid_cap = n;
			}
			op->uids[op->res.uid_count++] = (uint32_t)u;
		}
	}
}

/* `op` is a FETCH in flight whose UID range holds the answer's UID. */
static bool fetch_wanted(const struct op *op, const struct imap_fetch *fetch)
{
	return op->kind == OP_FETCH && op->started && (fetch->has & IMAP_FETCH_UID) &&
	       fetch->uid >= op->first && (op->star || fetch->uid <= op->last);
}

static void handle_fetch(struct imap_client *client, const struct imap_response *resp)
{
	struct imap_fetch fetch;
	const char *error;
	if (imap_fetch_parse(resp, &fetch, &error) < 0) {
		session_fail(client, MT_CLASS_PROTO, error, resp, NULL);
		return;
	}
	/* the FETCH operation in flight whose UID range holds the answer's (they may overlap in
	 * time, never in UIDs as the sync asks for them; the first one in range otherwise) */
	struct op *op = client->ops;
	while (op != NULL && op->started && !fetch_wanted(op, &fetch))
		op = op->next;
	if (op != NULL && op->started) {
		bool answer = !op->wants_more ||
		              (fetch.has & (IMAP_FETCH_ENVELOPE | IMAP_FETCH_BODYSTRUCTURE |
		                            IMAP_FETCH_INTERNALDATE | IMAP_FETCH_SIZE)) ||
		              fetch.section_count > 0;
		if (answer) {
			op->res.fetched++;
			if (op->on_fetch != NULL) {
				enter(client);
				op->on_fetch(op->ctx, &fetch);
				leave(client);
			}
			return;
		}
	}
	struct imap_event event = {.kind = IMAP_EVENT_FETCH, .number = fetch.seq, .fetch = &fetch};
	event_report(client, &event);
}

static void handle_untagged_ready(struct imap_client *client, const struct imap_response *resp)
{
	struct op *op = client->ops;
	const char *name = resp->name;
	const char *error;
	if (strcmp(name, "FETCH") == 0) {
		handle_fetch(client, resp);
	} else if (strcmp(name, "EXISTS") == 0) {
		client->exists = resp->number;
		if (op != NULL && op->kind == OP_SELECT) {
			op->res.exists = resp->number;
		} else {
			struct imap_event event = {.kind = IMAP_EVENT_EXISTS,
			                           .number = resp->number};
			event_report(client, &event);
		}
	} else if (strcmp(name, "EXPUNGE") == 0) {
		if (client->exists > 0)
			client->exists--;
		struct imap_event event = {.kind = IMAP_EVENT_EXPUNGE, .number = resp->number};
		event_report(client, &event);
	} else if (strcmp(name, "RECENT") == 0) {
		if (op == NULL || op->kind != OP_SELECT) {
			struct imap_event event = {.kind = IMAP_EVENT_RECENT,
			                           .number = resp->number};
			event_report(client, &event);
		}
	} else if (strcmp(name, "VANISHED") == 0) {
		struct imap_vanished vanished;
		if (imap_vanished_parse(resp, &vanished, &error) < 0) {
			session_fail(client, MT_CLASS_PROTO, error, resp, NULL);
			return;
		}
		struct imap_event event = {.kind = IMAP_EVENT_VANISHED, .vanished = &vanished};
		event_report(client, &event);
		imap_seqset_deinit(&vanished.uids);
	} else if ((strcmp(name, "LIST") == 0 || strcmp(name, "LSUB") == 0) && op != NULL &&
	           op->kind == OP_LIST) {
		list_add(client, op, resp);
	} else if (strcmp(name, "SEARCH") == 0 && op != NULL && op->kind == OP_SEARCH) {
		struct imap_search search;
		if (imap_search_parse(resp, &search, &error) < 0) {
			session_fail(client, MT_CLASS_PROTO, error, resp, NULL);
			return;
		}
		uids_add(op, &search.numbers);
		imap_seqset_deinit(&search.numbers);
	} else if (strcmp(name, "ESEARCH") == 0 && op != NULL && op->kind == OP_SEARCH) {
		struct imap_esearch es;
		if (imap_esearch_parse(resp, &es, &error) < 0) {
			session_fail(client, MT_CLASS_PROTO, error, resp, NULL);
			return;
		}
		if (es.has & IMAP_ESEARCH_ALL)
			uids_add(op, &es.all);
		imap_seqset_deinit(&es.all);
	} else if (strcmp(name, "CAPABILITY") == 0) {
		read_caps(client, resp->data);
	} else if (resp->status == IMAP_STATUS_OK) {
		struct imap_code_data code;
		if (imap_response_code(resp, &code, &error) < 0) {
			session_fail(client, MT_CLASS_PROTO, error, resp, NULL);
			return;
		}
		if (code.code == IMAP_CODE_CAPABILITY)
			read_caps(client, code.list);
		if (op == NULL || op->kind != OP_SELECT)
			return;
		switch (code.code) {
		case IMAP_CODE_UIDVALIDITY:
			op->res.uidvalidity = (uint32_t)code.number;
			break;
		case IMAP_CODE_UIDNEXT:
			op->res.uidnext = (uint32_t)code.number;
			client->uidnext = (uint32_t)code.number;
			break;
		case IMAP_CODE_HIGHESTMODSEQ:
			op->res.highestmodseq = code.number;
			break;
		case IMAP_CODE_NOMODSEQ:
			op->res.highestmodseq = 0;
			break;
		default:
			break;
		}
	}
}

/* The operation in flight that sent the command tagged `tag`; NULL when none did. */
static struct op *op_of_tag(struct imap_client *client, const char *tag)
{
	char *end;
	if (tag[0] != 'a' || tag[1] < '1' || tag[1] > '9')
		return NULL;
	unsigned long n = strtoul(tag + 1, &end, 10);
	if (*end != '\0')
		return NULL;
	for (struct op *op = client->ops; op != NULL && op->started; op = op->next) {
		if (op->outstanding > 0 && n >= op->tag_first && n <= op->tag_last)
			return op;
	}
	return NULL;
}

static void handle_tagged_ready(struct imap_client *client, const struct imap_response *resp)
{
	struct op *op = op_of_tag(client, resp->tag);
	if (op == NULL) {
		session_fail(client, MT_CLASS_PROTO, "a tagged answer for no command", resp, NULL);
		return;
	}
	op->outstanding--;
	if (resp->status != IMAP_STATUS_OK) {
		op_refused(op, resp);
	} else if (op->kind == OP_SELECT) {
		enum imap_code code = code_of(resp);
		op->res.read_only = code == IMAP_CODE_READ_ONLY || op->read_only;
	} else if (op->kind == OP_APPEND) {
		struct imap_code_data code;
		const char *error;
		if (imap_response_code(resp, &code, &error) == 0 &&
		    code.code == IMAP_CODE_APPENDUID && code.uids != NULL) {
			op->res.append_uidvalidity = code.uidvalidity;
			op->res.append_uid = (uint32_t)strtoul(code.uids, NULL, 10);
		}
	}
	if (op->kind == OP_IDLE) {
		evtimer_del(client->idle_timer);
		/* Issuing it again would loop: fall back to NOOP polling for this session. */
		if (resp->status != IMAP_STATUS_OK)
			client->idle_refused = true;
	}
}

static void handle_continuation_ready(struct imap_client *client, const struct imap_response *resp)
{
	struct op *op = client->ops;
	if (op != NULL && op->kind == OP_APPEND && op->waiting_plus) {
		op->waiting_plus = false;
		char summary[64];
		snprintf(summary, sizeof(summary), "<%zu bytes of message data>", op->len);
		transcript_str(client, 'C', summary);
		if (mt_buf_append(&client->out, op->data, op->len) < 0 ||
		    mt_buf_append(&client->out, "\r\n", 2) < 0)
			session_fail(client, MT_CLASS_INTERNAL, "output buffer full", NULL, NULL);
		return;
	}
	if (op != NULL && op->kind == OP_IDLE && !op->continued) {
		op->continued = true;
		if (op->end_wanted || op->next != NULL) {
			idle_end(client);
		} else {
			arm_timer(client->idle_timer, client->params.idle_restart_ms > 0
			                                  ? client->params.idle_restart_ms
			                                  : MT_IMAP_IDLE_RESTART_MS);
		}
		return;
	}
	session_fail(client, MT_CLASS_PROTO, "an unexpected continuation request", resp, NULL);
}

/* ---- session setup ---- */

static void report_ready(struct imap_client *client)
{
	mt_secret_free(&client->secret); /* PREAUTH: never used */
	set_state(client, IMAP_STATE_READY);
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

static void after_auth_caps(struct imap_client *client)
{
	if (imap_client_has_cap(client, "ENABLE") && imap_client_has_cap(client, "CONDSTORE")) {
		send_now(client, IMAP_STATE_ENABLE,
		         imap_client_has_cap(client, "QRESYNC") ? "ENABLE CONDSTORE QRESYNC"
		                                                : "ENABLE CONDSTORE",
		         NULL);
		return;
	}
	report_ready(client);
}

/* After login (or PREAUTH): capabilities may differ now (RFC 3501 §6.2.3). */
static void after_auth(struct imap_client *client, const struct imap_response *resp)
{
	/* Logged in: the secret is of no further use to this session. */
	mt_secret_free(&client->secret);
	if (resp != NULL && caps_from_code(client, resp)) {
		after_auth_caps(client);
		return;
	}
	client->caps_known = false;
	send_now(client, IMAP_STATE_CAPABILITY_AUTH, "CAPABILITY", NULL);
}

static void start_auth(struct imap_client *client)
{
	if (!client->tls_active &&
	    !(client->params.security == MT_SECURITY_NONE && client->params.allow_plaintext_auth)) {
		session_fail(client, MT_CLASS_TLS, "refusing to send credentials without TLS", NULL,
		             NULL);
		return;
	}
	if (client->secret == NULL || client->username == NULL) {
		session_fail(client, MT_CLASS_AUTH, "no username or secret given", NULL, NULL);
		return;
	}
	enum imap_auth auth = client->params.auth;
	if (auth == IMAP_AUTH_PASSWORD) {
		if (imap_client_has_cap(client, "AUTH=PLAIN"))
			auth = IMAP_AUTH_PLAIN;
		else
			auth = IMAP_AUTH_LOGIN;
	}
	if (auth == IMAP_AUTH_LOGIN) {
		if (imap_client_has_cap(client, "LOGINDISABLED")) {
			session_fail(client, MT_CLASS_AUTH,
			             "the server disabled LOGIN and offers no usable AUTHENTICATE "
			             "mechanism",
			             NULL, NULL);
			return;
		}
		struct mt_buf line;
		mt_buf_init(&line, MT_SASL_RESPONSE_MAX);
		size_t secret_len = mt_secret_len(client->secret);
		char *password = malloc(secret_len + 1);
		int r = -1;
		if (password != NULL) {
			memcpy(password, mt_secret_bytes(client->secret), secret_len);
			password[secret_len] = '\0';
			if (strlen(password) == secret_len) {
				r = mt_buf_append_str(&line, "LOGIN ");
				if (r == 0)
					r = append_quoted(&line, client->username);
				if (r == 0)
					r = mt_buf_append(&line, " ", 1);
				if (r == 0)
					r = append_quoted(&line, password);
			}
			memset(password, 0, secret_len);
			free(password);
		}
		if (r < 0) {
			mt_buf_free_wipe(&line);
			session_fail(client, MT_CLASS_AUTH,
			             "the username or password cannot be sent with LOGIN", NULL,
			             NULL);
			return;
		}
		struct mt_buf shown;
		mt_buf_init(&shown, MT_TRANSCRIPT_LINE_MAX);
		if (mt_buf_append_str(&shown, "LOGIN ") < 0 ||
		    append_quoted(&shown, client->username) < 0 ||
		    mt_buf_append_str(&shown, " ****") < 0) {
			mt_buf_reset(&shown);
			mt_buf_append_str(&shown, "LOGIN ****");
		}
		send_now(client, IMAP_STATE_LOGIN, line.data, shown.data);
		mt_buf_free(&shown);
		mt_buf_free_wipe(&line);
		return;
	}
	const char *mech = auth == IMAP_AUTH_XOAUTH2 ? "XOAUTH2" : "PLAIN";
	char cap[32];
	snprintf(cap, sizeof(cap), "AUTH=%s", mech);
	if (!imap_client_has_cap(client, cap)) {
		char reason[128];
		snprintf(reason, sizeof(reason), "the server does not offer AUTHENTICATE %s", mech);
		session_fail(client, MT_CLASS_AUTH, reason, NULL, NULL);
		return;
	}
	struct mt_buf ir;
	mt_buf_init(&ir, MT_SASL_RESPONSE_MAX);
	int r = auth == IMAP_AUTH_XOAUTH2
	            ? sasl_xoauth2_response(&ir, client->username, client->secret)
	            : sasl_plain_response(&ir, client->username, client->secret);
	if (r < 0) {
		mt_buf_free_wipe(&ir);
		session_fail(client, MT_CLASS_AUTH, "username or secret cannot be encoded", NULL,
		             NULL);
		return;
	}
	while (ir.len > 0 && (ir.data[ir.len - 1] == '\n' || ir.data[ir.len - 1] == '\r'))
		ir.data[--ir.len] = '\0';
	char text[64], shown[64];
	client->ir_sent = false;
	if (imap_client_has_cap(client, "SASL-IR")) {
		struct mt_buf line;
		mt_buf_init(&line, MT_SASL_RESPONSE_MAX + 64);
		snprintf(shown, sizeof(shown), "AUTHENTICATE %s ****", mech);
		if (mt_buf_printf(&line, "AUTHENTICATE %s ", mech) < 0 ||
		    mt_buf_append(&line, ir.data, ir.len) < 0) {
			mt_buf_free_wipe(&line);
			mt_buf_free_wipe(&ir);
			session_fail(client, MT_CLASS_INTERNAL, "command too long", NULL, NULL);
			return;
		}
		client->ir_sent = true;
		send_now(client, IMAP_STATE_AUTHENTICATE, line.data, shown);
		mt_buf_free_wipe(&line);
		mt_buf_free_wipe(&ir);
		return;
	}
	client->pending_ir = strdup(ir.data);
	mt_buf_free_wipe(&ir);
	if (client->pending_ir == NULL) {
		session_fail(client, MT_CLASS_INTERNAL, "out of memory", NULL, NULL);
		return;
	}
	snprintf(text, sizeof(text), "AUTHENTICATE %s", mech);
	send_now(client, IMAP_STATE_AUTHENTICATE, text, NULL);
}

static void wipe_pending_ir(struct imap_client *client)
{
	if (client->pending_ir != NULL) {
		memset(client->pending_ir, 0, strlen(client->pending_ir));
		free(client->pending_ir);
		client->pending_ir = NULL;
	}
}

/* Capabilities known before authentication: TLS first, then log in. */
static void after_caps(struct imap_client *client)
{
	if (client->params.security == MT_SECURITY_STARTTLS && !client->tls_active) {
		if (!imap_client_has_cap(client, "STARTTLS")) {
			session_fail(client, MT_CLASS_TLS, "the server does not offer STARTTLS",
			             NULL, NULL);
			return;
		}
		send_now(client, IMAP_STATE_STARTTLS, "STARTTLS", NULL);
		return;
	}
	if (client->preauth) {
		after_auth(client, NULL);
		return;
	}
	start_auth(client);
}

static void handle_greeting(struct imap_client *client, const struct imap_response *resp)
{
	if (resp->kind != IMAP_RESP_UNTAGGED) {
		session_fail(client, MT_CLASS_PROTO, "no greeting", resp, NULL);
		return;
	}
	switch (resp->status) {
	case IMAP_STATUS_BYE:
		session_fail(client, refusal_class(resp, MT_CLASS_CONN), "refused at the greeting",
		             resp, NULL);
		return;
	case IMAP_STATUS_PREAUTH:
		/* Already authenticated in plaintext: there will be no STARTTLS, and a TLS
		 * account must not go on without it (RFC 2595 §3.1 / RFC 9051 §11.1). */
		if (client->params.security == MT_SECURITY_STARTTLS ||
		    (client->params.security == MT_SECURITY_TLS && !client->tls_active)) {
			session_fail(client, MT_CLASS_TLS,
			             "PREAUTH greeting on an account that requires TLS; session "
			             "aborted",
			             resp, NULL);
			return;
		}
		client->preauth = true;
		break;
	case IMAP_STATUS_OK:
		break;
	default:
		session_fail(client, MT_CLASS_PROTO, "unexpected greeting", resp, NULL);
		return;
	}
	if (caps_from_code(client, resp)) {
		after_caps(client);
		return;
	}
	send_now(client, IMAP_STATE_CAPABILITY, "CAPABILITY", NULL);
}

/* A tagged answer before READY must answer the command in flight. */
static bool tag_matches(struct imap_client *client, const struct imap_response *resp)
{
	if (strcmp(resp->tag, client->tag) == 0)
		return true;
	session_fail(client, MT_CLASS_PROTO, "a tagged answer for no command", resp, NULL);
	return false;
}

static void handle_setup(struct imap_client *client, const struct imap_response *resp)
{
	if (resp->kind == IMAP_RESP_UNTAGGED) {
		if (strcmp(resp->name, "CAPABILITY") == 0)
			read_caps(client, resp->data);
		return; /* others (ENABLED, OK [ALERT]...) change nothing here */
	}
	if (resp->kind == IMAP_RESP_CONTINUE) {
		if (client->state != IMAP_STATE_AUTHENTICATE) {
			session_fail(client, MT_CLASS_PROTO, "an unexpected continuation request",
			             resp, NULL);
			return;
		}
		if (!client->ir_sent && client->pending_ir != NULL) {
			client->ir_sent = true;
			if (send_untagged(client, client->pending_ir, "****") < 0)
				session_fail(client, MT_CLASS_INTERNAL, "output buffer full", NULL,
				             NULL);
			wipe_pending_ir(client);
			flush(client);
			return;
		}
		/* A challenge after our response: XOAUTH2's error (RFC 7628 §3.2.2 style);
		 * an empty answer gets the final NO. */
		if (client->params.auth == IMAP_AUTH_XOAUTH2) {
			struct sasl_xoauth2_error err;
			const char *error;
			if (sasl_xoauth2_parse_error(resp->text, strlen(resp->text), &err,
			                             &error) == 0)
				mt_log(MT_LOG_INFO, "imap.xoauth2_error",
				       MT_KV("host", client->host), MT_KV("status", err.status),
				       MT_KV("scope", err.scope));
		}
		set_state(client, IMAP_STATE_XOAUTH2_ERROR);
		if (send_untagged(client, "", NULL) < 0)
			session_fail(client, MT_CLASS_INTERNAL, "output buffer full", NULL, NULL);
		flush(client);
		return;
	}
	if (!tag_matches(client, resp))
		return;
	bool ok = resp->status == IMAP_STATUS_OK;
	switch (client->state) {
	case IMAP_STATE_CAPABILITY:
		if (!ok || !client->caps_known)
			session_fail(client, MT_CLASS_PROTO, "CAPABILITY failed", resp, NULL);
		else
			after_caps(client);
		break;
	case IMAP_STATE_STARTTLS: {
		if (!ok) {
			session_fail(client, MT_CLASS_TLS, "the server refused STARTTLS", resp,
			             NULL);
			break;
		}
		/* Anything already received after the go-ahead was sent in plaintext and would be
		 * read as if it came over TLS (CVE-2011-0411 and kin). */
		const char *error;
		if (mt_conn_input(client->conn)->len > 0 || imap_parser_busy(&client->parser)) {
			session_fail(client, MT_CLASS_TLS,
			             "plaintext data after the STARTTLS go-ahead (response "
			             "injection); session aborted",
			             resp, NULL);
			break;
		}
		set_state(client, IMAP_STATE_TLS_HANDSHAKE);
		if (mt_conn_start_tls(client->conn, &error) < 0)
			session_fail(client, MT_CLASS_TLS, error, NULL, NULL);
		break;
	}
	case IMAP_STATE_AUTHENTICATE:
	case IMAP_STATE_XOAUTH2_ERROR:
	case IMAP_STATE_LOGIN:
		wipe_pending_ir(client);
		if (ok) {
			after_auth(client, resp);
		} else {
			const char *reason = client->state == IMAP_STATE_XOAUTH2_ERROR &&
			                             client->params.auth == IMAP_AUTH_XOAUTH2
			                         ? "the OAuth access token was refused"
			                         : "authentication failed";
			session_fail(client,
			             refusal_class(resp, resp->status == IMAP_STATUS_BAD
			                                     ? MT_CLASS_PROTO
			                                     : MT_CLASS_AUTH),
			             reason, resp, NULL);
		}
		break;
	case IMAP_STATE_CAPABILITY_AUTH:
		if (!ok || !client->caps_known)
			session_fail(client, MT_CLASS_PROTO, "CAPABILITY failed", resp, NULL);
		else
			after_auth_caps(client);
		break;
	case IMAP_STATE_ENABLE:
		/* A refused ENABLE only means no CONDSTORE: HIGHESTMODSEQ stays 0. */
		report_ready(client);
		break;
	default:
		session_fail(client, MT_CLASS_PROTO, "unexpected response", resp, NULL);
		break;
	}
}

/* The one place a response moves the session on: a switch on the state it arrived in. */
static void handle_response(struct imap_client *client, const struct imap_response *resp)
{
	/* BYE: the server is closing the connection, whatever we asked (RFC 3501 §7.1.5). */
	if (resp->kind == IMAP_RESP_UNTAGGED && resp->status == IMAP_STATUS_BYE &&
	    client->state != IMAP_STATE_GREETING) {
		if (client->state == IMAP_STATE_LOGOUT)
			return;
		session_fail(client, refusal_class(resp, MT_CLASS_CONN),
		             "the server closed the session (BYE)", resp, NULL);
		return;
	}
	switch (client->state) {
	case IMAP_STATE_GREETING:
		handle_greeting(client, resp);
		break;
	case IMAP_STATE_CAPABILITY:
	case IMAP_STATE_STARTTLS:
	case IMAP_STATE_AUTHENTICATE:
	case IMAP_STATE_XOAUTH2_ERROR:
	case IMAP_STATE_LOGIN:
	case IMAP_STATE_CAPABILITY_AUTH:
	case IMAP_STATE_ENABLE:
		handle_setup(client, resp);
		break;
	case IMAP_STATE_READY:
		if (resp->kind == IMAP_RESP_UNTAGGED)
			handle_untagged_ready(client, resp);
		else if (resp->kind == IMAP_RESP_CONTINUE)
			handle_continuation_ready(client, resp);
		else
			handle_tagged_ready(client, resp);
		if (client->state == IMAP_STATE_READY)
			pump(client);
		break;
	case IMAP_STATE_LOGOUT:
		if (resp->kind == IMAP_RESP_TAGGED) {
			set_state(client, IMAP_STATE_CLOSED);
			mt_conn_free(&client->conn);
			if (client->cb.closed != NULL) {
				enter(client);
				client->cb.closed(client->ctx);
				leave(client);
			}
		}
		break;
	case IMAP_STATE_CONNECTING:
	case IMAP_STATE_TLS_HANDSHAKE:
	case IMAP_STATE_CLOSED:
	case IMAP_STATE_FAILED:
	case IMAP_STATE_COUNT:
		session_fail(client, MT_CLASS_PROTO, "unexpected response", resp, NULL);
		break;
	}
}

/* ---- failure ---- */

static void session_fail(struct imap_client *client, enum mt_failure_class cls, const char *reason,
                         const struct imap_response *resp, const char *fingerprint)
{
	if (client->state == IMAP_STATE_FAILED || client->state == IMAP_STATE_CLOSED)
		return;
	struct imap_failure failure;
	memset(&failure, 0, sizeof(failure));
	failure.cls = cls;
	mt_strlcpy(failure.reason, reason, sizeof(failure.reason));
	copy_response(failure.response, sizeof(failure.response), resp);
	if (fingerprint != NULL)
		mt_strlcpy(failure.fingerprint, fingerprint, sizeof(failure.fingerprint));
	mt_log(MT_LOG_INFO, "imap.session_failed", MT_KV("host", client->host),
	       MT_KV("state", state_names[client->state]), MT_KV("class", mt_class_name(cls)),
	       MT_KV("reason", failure.reason), MT_KV("response", failure.response));
	set_state(client, IMAP_STATE_FAILED);
	mt_conn_free(&client->conn);
	evtimer_del(client->idle_timer);
	evtimer_del(client->poll_timer);
	wipe_pending_ir(client);
	enter(client);
	while (client->ops != NULL) {
		struct op *op = client->ops;
		if (op->res.cls == MT_CLASS_NONE || op->outstanding > 0 || !op->started) {
			op->res.cls = cls;
			mt_strlcpy(op->res.reason, failure.reason, sizeof(op->res.reason));
			mt_strlcpy(op->res.response, failure.response, sizeof(op->res.response));
		}
		finish_head(client);
	}
	if (client->cb.failed != NULL && !client->free_requested)
		client->cb.failed(client->ctx, &failure);
	leave(client);
}

/* ---- connection callbacks ---- */

/* No answer awaited but IDLE's. */
static bool client_quiet(const struct imap_client *client)
{
	const struct op *op = client->ops;
	return op == NULL || (op->kind == OP_IDLE && op->next == NULL);
}

static void on_readable(void *ctx)
{
	struct imap_client *client = ctx;
	enter(client);
	/* Input parsed but not yet consumed: the buffer is compacted once per read event rather
	 * than once per response (a memmove of up to MT_NET_INPUT_MAX for each ~500-byte FETCH
	 * answer was a sixth of a bulk fetch's time). Outside the ready state it is consumed
	 * before each response is handled: the STARTTLS check looks at what is left. */
	size_t off = 0;
	while (client->conn != NULL && !client->free_requested) {
		struct mt_buf *input = mt_conn_input(client->conn);
		if (input->len <= off)
			break;
		size_t consumed = 0;
		const struct imap_response *resp;
		const char *error;
		int r = imap_parser_feed(&client->parser, input->data + off, input->len - off,
		                         &consumed, &resp, &error);
		if (r < 0) {
			capture_raw(client, input->data + off, input->len - off);
			transcript_response(client);
			session_fail(client, MT_CLASS_PROTO, error, NULL, NULL);
			break;
		}
		size_t used = r == 0 ? input->len - off : consumed;
		capture_raw(client, input->data + off, used);
		off += used;
		if (r == 0)
			break;
		if (client->state != IMAP_STATE_READY) {
			mt_buf_consume(input, off);
			off = 0;
		}
		transcript_response(client);
		if (client->state == IMAP_STATE_FAILED || client->state == IMAP_STATE_CLOSED)
			break;
		handle_response(client, resp);
	}
	/* the connection may be gone (failure, LOGOUT): its input with it */
	if (client->conn != NULL && off > 0)
		mt_buf_consume(mt_conn_input(client->conn), off);
	/* Under IDLE (or with nothing asked) the parser's buffers go until the next response:
	 * an idle session holds none (bench/sync-idle). Not between the responses of a FETCH,
	 * which would grow them again for each. */
	if (!client->free_requested && client_quiet(client) && !imap_parser_busy(&client->parser))
		imap_parser_release(&client->parser);
	if (!client->free_requested && client->conn != NULL)
		flush(client);
	leave(client);
}

static void on_connected(void *ctx)
{
	struct imap_client *client = ctx;
	if (client->params.security == MT_SECURITY_TLS)
		client->tls_active = true;
	set_state(client, IMAP_STATE_GREETING);
	mt_conn_set_read_timeout(client->conn, client->params.greeting_timeout_ms > 0
	                                           ? client->params.greeting_timeout_ms
	                                           : command_timeout(client));
}

static void on_tls_ready(void *ctx)
{
	struct imap_client *client = ctx;
	client->tls_active = true;
	/* What the server said before TLS may have been forged: ask again (RFC 9051 §6.2.1). */
	free(client->caps);
	client->caps = NULL;
	client->caps_known = false;
	char info[160];
	snprintf(info, sizeof(info), "<TLS established: %s>", mt_conn_tls_info(client->conn));
	transcript_str(client, 'C', info);
	enter(client);
	send_now(client, IMAP_STATE_CAPABILITY, "CAPABILITY", NULL);
	leave(client);
}

static void on_error(void *ctx, const struct mt_net_error *error)
{
	struct imap_client *client = ctx;
	enter(client);
	if (client->state == IMAP_STATE_LOGOUT) {
		set_state(client, IMAP_STATE_CLOSED);
		mt_conn_free(&client->conn);
		if (client->cb.closed != NULL)
			client->cb.closed(client->ctx);
	} else {
		session_fail(client, error->cls, error->reason, NULL,
		             error->fingerprint[0] ? error->fingerprint : NULL);
	}
	leave(client);
}

/* ---- life cycle ---- */

static char *dup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

struct imap_client *imap_client_new(struct event_base *base, struct evdns_base *dns,
                                    const struct imap_client_params *params,
                                    const struct imap_client_callbacks *callbacks, void *ctx,
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
	if (params->username != NULL && mt_str_has_crlf(params->username)) {
		*error_r = "invalid username";
		return NULL;
	}
	struct imap_client *client = calloc(1, sizeof(*client));
	if (client == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	client->base = base;
	client->params = *params;
	client->host = strdup(params->host);
	client->username = dup_or_null(params->username);
	client->bind_address = dup_or_null(params->bind_address);
	if (params->pin != NULL)
		client->pin = *params->pin;
	if (params->secret != NULL)
		client->secret =
		    mt_secret_new(mt_secret_bytes(params->secret), mt_secret_len(params->secret));
	client->params.host = client->host;
	client->params.username = client->username;
	client->params.bind_address = client->bind_address;
	client->params.secret = NULL;
	client->params.pin = params->pin != NULL ? &client->pin : NULL;
	client->cb = *callbacks;
	client->ctx = ctx;
	mt_buf_init(&client->out, MT_NET_OUTPUT_MAX);
	mt_buf_init(&client->raw, MT_IMAP_TRANSCRIPT_RESPONSE_MAX);
	imap_parser_init(&client->parser);
	client->idle_timer = evtimer_new(base, on_idle_timer, client);
	client->poll_timer = evtimer_new(base, on_poll_timer, client);
	if (client->host == NULL || (params->secret != NULL && client->secret == NULL) ||
	    client->idle_timer == NULL || client->poll_timer == NULL) {
		*error_r = "out of memory";
		client_destroy(client);
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
	    .error = on_error,
	};
	set_state(client, IMAP_STATE_CONNECTING);
	client->conn = mt_conn_new(base, dns, &conn_params, &conn_callbacks, client, error_r);
	if (client->conn == NULL) {
		client_destroy(client);
		return NULL;
	}
	return client;
}

static int queue_check(struct imap_client *client, const char **error_r)
{
	if (client->state == IMAP_STATE_FAILED || client->state == IMAP_STATE_CLOSED ||
	    client->state == IMAP_STATE_LOGOUT || client->logout_requested) {
		*error_r = "the session is over";
		return -1;
	}
	if (client->op_count >= MT_IMAP_OPS_MAX) {
		*error_r = "the operation queue is full";
		return -1;
	}
	return 0;
}

static int queue_op(struct imap_client *client, struct op *op, const char **error_r)
{
	if (op->arg == NULL && op->kind != OP_LIST && op->kind != OP_NOOP) {
		op_free(op);
		*error_r = "out of memory";
		return -1;
	}
	/* An IDLE in progress makes way: pump sends DONE. */
	push_op(client, op);
	if (client->state == IMAP_STATE_READY) {
		enter(client);
		pump(client);
		leave(client);
	}
	return 0;
}

static struct op *op_new(enum op_kind kind, imap_done_cb *done, void *ctx)
{
	struct op *op = calloc(1, sizeof(*op));
	if (op != NULL) {
		op->kind = kind;
		op->done = done;
		op->ctx = ctx;
	}
	return op;
}

static bool name_ok(const char *s)
{
	return s != NULL && s[0] != '\0' && !mt_str_has_crlf(s) && strlen(s) < MT_IMAP_MAILBOX_MAX;
}

int imap_client_list(struct imap_client *client, imap_done_cb *done, void *ctx,
                     const char **error_r)
{
	if (queue_check(client, error_r) < 0)
		return -1;
	struct op *op = op_new(OP_LIST, done, ctx);
	if (op == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	return queue_op(client, op, error_r);
}

int imap_client_select(struct imap_client *client, const char *mailbox, bool read_only,
                       imap_done_cb *done, void *ctx, const char **error_r)
{
	if (queue_check(client, error_r) < 0)
		return -1;
	if (!name_ok(mailbox)) {
		*error_r = "invalid mailbox name";
		return -1;
	}
	struct op *op = op_new(OP_SELECT, done, ctx);
	if (op == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	op->arg = strdup(mailbox);
	op->read_only = read_only;
	return queue_op(client, op, error_r);
}

/* Items that would set \Seen (RFC 3501 §6.4.5): BODY[...] and RFC822 / RFC822.TEXT. */
static bool items_set_seen(const char *items)
{
	for (const char *p = items; *p != '\0'; p++) {
		if (strncasecmp(p, "BODY[", 5) == 0 && (p == items || p[-1] != '.'))
			return true;
		if (strncasecmp(p, "RFC822", 6) == 0 &&
		    (p == items || p[-1] == ' ' || p[-1] == '(') &&
		    (strncasecmp(p + 6, ".SIZE", 5) != 0 && strncasecmp(p + 6, ".HEADER", 7) != 0))
			return true;
	}
	return false;
}

int imap_client_fetch(struct imap_client *client, uint32_t uid_first, uint32_t uid_last,
                      const char *items, uint32_t chunk, imap_fetch_cb *on_fetch,
                      imap_done_cb *done, void *ctx, const char **error_r)
{
	if (queue_check(client, error_r) < 0)
		return -1;
	if (items == NULL || items[0] == '\0' || mt_str_has_crlf(items) ||
	    strlen(items) > MT_IMAP_LINE_MAX / 2) {
		*error_r = "invalid FETCH items";
		return -1;
	}
	if (items_set_seen(items)) {
		*error_r = "FETCH items would set \\Seen: use BODY.PEEK[...]";
		return -1;
	}
	if (uid_first == 0 || uid_last < uid_first) {
		*error_r = "invalid UID range";
		return -1;
	}
	struct op *op = op_new(OP_FETCH, done, ctx);
	if (op == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	op->arg = strdup(items);
	op->on_fetch = on_fetch;
	op->first = uid_first;
	op->last = uid_last;
	op->chunk = chunk > 0 ? chunk : MT_IMAP_FETCH_CHUNK;
	op->wants_more = strcasestr(items, "ENVELOPE") != NULL ||
	                 strcasestr(items, "BODY") != NULL || strcasestr(items, "RFC822") != NULL ||
	                 strcasestr(items, "INTERNALDATE") != NULL;
	return queue_op(client, op, error_r);
}

int imap_client_search(struct imap_client *client, const char *criteria, imap_done_cb *done,
                       void *ctx, const char **error_r)
{
	if (queue_check(client, error_r) < 0)
		return -1;
	if (criteria == NULL || criteria[0] == '\0' || mt_str_has_crlf(criteria) ||
	    strlen(criteria) > MT_IMAP_LINE_MAX / 2) {
		*error_r = "invalid search criteria";
		return -1;
	}
	struct op *op = op_new(OP_SEARCH, done, ctx);
	if (op == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	op->arg = strdup(criteria);
	return queue_op(client, op, error_r);
}

int imap_client_append(struct imap_client *client, const char *mailbox, const char *flags,
                       const char *data, size_t len, imap_done_cb *done, void *ctx,
                       const char **error_r)
{
	if (queue_check(client, error_r) < 0)
		return -1;
	if (!name_ok(mailbox) ||
	    (flags != NULL && (mt_str_has_crlf(flags) || strlen(flags) > 256))) {
		*error_r = "invalid mailbox name or flags";
		return -1;
	}
	if (len == 0 || len > MT_IMAP_APPEND_MAX) {
		*error_r = "the message is empty or too large";
		return -1;
	}
	struct op *op = op_new(OP_APPEND, done, ctx);
	if (op == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	op->arg = strdup(mailbox);
	op->flags = dup_or_null(flags);
	op->data = malloc(len);
	if (op->data == NULL || (flags != NULL && op->flags == NULL)) {
		free(op->arg);
		op->arg = NULL;
	} else {
		memcpy(op->data, data, len);
	}
	op->len = len;
	return queue_op(client, op, error_r);
}

int imap_client_noop(struct imap_client *client, imap_done_cb *done, void *ctx,
                     const char **error_r)
{
	if (queue_check(client, error_r) < 0)
		return -1;
	struct op *op = op_new(OP_NOOP, done, ctx);
	if (op == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	return queue_op(client, op, error_r);
}

int imap_client_idle(struct imap_client *client, bool on, const char **error_r)
{
	if (queue_check(client, error_r) < 0)
		return -1;
	client->idle_wanted = on;
	if (!on) {
		evtimer_del(client->poll_timer);
		if (client->state == IMAP_STATE_READY && client->ops != NULL &&
		    client->ops->kind == OP_IDLE) {
			enter(client);
			idle_end(client);
			flush(client);
			leave(client);
		}
		return 0;
	}
	if (client->state == IMAP_STATE_READY) {
		enter(client);
		pump(client);
		leave(client);
	}
	return 0;
}

int imap_client_logout(struct imap_client *client, const char **error_r)
{
	if (queue_check(client, error_r) < 0)
		return -1;
	client->logout_requested = true;
	client->idle_wanted = false;
	evtimer_del(client->poll_timer);
	if (client->state == IMAP_STATE_READY) {
		enter(client);
		if (client->ops != NULL && client->ops->kind == OP_IDLE) {
			idle_end(client);
			flush(client);
		} else {
			pump(client);
		}
		leave(client);
	}
	return 0;
}

static void client_destroy(struct imap_client *client)
{
	mt_conn_free(&client->conn);
	imap_parser_deinit(&client->parser);
	mt_buf_free_wipe(&client->out);
	mt_buf_free(&client->raw);
	mt_secret_free(&client->secret);
	free(client->caps);
	wipe_pending_ir(client);
	while (client->ops != NULL) {
		struct op *op = client->ops;
		client->ops = op->next;
		op_free(op);
	}
	if (client->idle_timer != NULL)
		event_free(client->idle_timer);
	if (client->poll_timer != NULL)
		event_free(client->poll_timer);
	free(client->host);
	free(client->username);
	free(client->bind_address);
	free(client);
}

void imap_client_free(struct imap_client **clientp)
{
	struct imap_client *client = *clientp;
	if (client == NULL)
		return;
	*clientp = NULL;
	if (client->callback_depth > 0) {
		client->free_requested = true;
		mt_conn_free(&client->conn);
		if (client->idle_timer != NULL)
			evtimer_del(client->idle_timer);
		if (client->poll_timer != NULL)
			evtimer_del(client->poll_timer);
		return;
	}
	client_destroy(client);
}
