/* imap-drive: runs one IMAP client session for the peer and integration tests. It runs the
 * --op operations in order, printing one JSON line per result (and per FETCH answer and
 * mailbox event), then a last line for the session, and exits with the class exit code of
 * what went wrong (0 when everything succeeded; a refused operation is 14, resp).
 *
 *   imap-drive --host H --port P [--security starttls|tls|none] [--user U --password-file F]
 *              [--auth password|plain|login|xoauth2] [--ca-file F] [--fingerprint PIN]
 *              [--transcript FILE] [--bind ADDR] [--allow-plaintext] [--idle-restart-ms N]
 *              [--poll-ms N] [--fetch-window N] [--command-timeout-ms N] [--quiet-fetch]
 *              [--pause-after N --pause-file PATH] --op OP ...
 *   OP: list | select:BOX | examine:BOX | fetch:FIRST:LAST|*:CHUNK:ITEMS | search:CRITERIA |
 *       append:BOX:FILE | append-text:BOX:TEXT ("\n" in TEXT: CRLF) | noop | idle:SECONDS |
 *       logout | fetch+:FIRST:LAST|*:CHUNK:ITEMS (queued without waiting for its answer: the
 *       next operation goes out beside it; each FETCH answer then names its operation's index)
 *
 * --pause-after N: after the Nth FETCH answer, prints {"paused":true} and waits (blocking the
 * loop, as a slow consumer would) until --pause-file exists: a test changes the mailbox from
 * another connection meanwhile. */
#include "imap/client.h"
#include "lib/failure.h"
#include "lib/secret.h"
#include "lib/str.h"
#include "net/conn.h"
#include "net/security.h"
#include "net/tls.h"
#include "proto/imap_fetch.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_OPS 64

struct drive;
/* What an operation's callbacks get: the drive, the operation's index, whether it was queued
 * ahead (fetch+: the next operation was started without waiting for it). */
struct op_ref {
	struct drive *d;
	size_t index;
	bool ahead;
};

struct drive {
	struct event_base *base;
	struct imap_client *client;
	FILE *transcript;
	const char *ops[MAX_OPS];
	size_t op_count, next_op;
	int exit_code;
	bool over;
	bool quiet_fetch;
	size_t fetched;
	size_t pause_after;
	const char *pause_file;
	struct event *idle_timer;
	char *append_data;
	struct op_ref refs[MAX_OPS];
};

static void print_json(json_t *obj)
{
	char *s = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(obj);
	if (s != NULL) {
		puts(s);
		fflush(stdout);
		free(s);
	}
}

static void on_transcript(void *ctx, char direction, const char *line, size_t len)
{
	struct drive *d = ctx;
	if (d->transcript != NULL)
		fprintf(d->transcript, "%c: %.*s\n", direction, (int)len, line);
}

static void next_op(struct drive *d);

static void finish(struct drive *d, enum mt_failure_class cls, const char *reason,
                   const char *response, const char *fingerprint)
{
	if (d->over)
		return;
	d->over = true;
	if (d->exit_code == 0 || cls != MT_CLASS_NONE)
		d->exit_code = cls != MT_CLASS_NONE ? mt_class_exit_code(cls) : d->exit_code;
	print_json(json_pack("{s:s,s:s,s:s,s:s,s:s,s:i}", "session",
	                     cls == MT_CLASS_NONE ? "ok" : "failed", "class", mt_class_name(cls),
	                     "reason", reason ? reason : "", "response", response ? response : "",
	                     "fingerprint", fingerprint ? fingerprint : "", "fetched",
	                     (int)d->fetched));
	event_base_loopbreak(d->base);
}

static void on_failed(void *ctx, const struct imap_failure *f)
{
	finish(ctx, f->cls, f->reason, f->response, f->fingerprint);
}

static void on_closed(void *ctx)
{
	finish(ctx, MT_CLASS_NONE, NULL, NULL, NULL);
}

static json_t *str_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

static void on_event(void *ctx, const struct imap_event *e)
{
	(void)ctx;
	static const char *const names[] = {"exists", "expunge", "vanished", "fetch", "recent"};
	json_t *o = json_pack("{s:s,s:i}", "event", names[e->kind], "number", (int)e->number);
	if (e->kind == IMAP_EVENT_VANISHED && e->vanished != NULL)
		json_object_set_new(o, "count",
		                    json_integer((json_int_t)imap_seqset_size(&e->vanished->uids)));
	if (e->kind == IMAP_EVENT_FETCH && e->fetch != NULL && (e->fetch->has & IMAP_FETCH_UID))
		json_object_set_new(o, "uid", json_integer(e->fetch->uid));
	print_json(o);
}

static void on_fetch(void *ctx, const struct imap_fetch *f)
{
	struct op_ref *ref = ctx;
	struct drive *d = ref->d;
	d->fetched++;
	if (!d->quiet_fetch) {
		json_t *o = json_pack("{s:i,s:i,s:i}", "fetch", (int)f->uid, "seq", (int)f->seq,
		                      "op_index", (int)ref->index);
		json_t *flags = json_array();
		for (const struct imap_value *v = f->flags; v != NULL; v = v->next)
			json_array_append_new(flags, str_or_null(imap_value_str(v)));
		json_object_set_new(o, "flags", flags);
		if (f->has & IMAP_FETCH_MODSEQ)
			json_object_set_new(o, "modseq", json_integer((json_int_t)f->modseq));
		if (f->envelope != NULL) {
			struct imap_envelope env;
			const char *error;
			if (imap_envelope_parse(f->envelope, &env, &error) == 0) {
				json_object_set_new(o, "subject", str_or_null(env.subject));
				json_object_set_new(o, "message_id", str_or_null(env.message_id));
				struct imap_address a;
				if (env.from != NULL && imap_address_get(env.from, &a, &error) == 0)
					json_object_set_new(o, "from_mailbox",
					                    str_or_null(a.mailbox));
			} else {
				json_object_set_new(o, "envelope_error", json_string(error));
			}
		}
		if (f->bodystructure != NULL) {
			struct imap_body_part parts[64];
			size_t count = 0;
			const char *error;
			if (imap_bodystructure_parse(f->bodystructure, parts, 64, &count, &error) ==
			    0) {
				json_object_set_new(o, "parts", json_integer((json_int_t)count));
				json_object_set_new(
				    o, "attachments",
				    json_integer(
				        (json_int_t)imap_bodystructure_attachments(parts, count)));
			} else {
				json_object_set_new(o, "bodystructure_error", json_string(error));
			}
		}
		json_t *sections = json_object();
		for (size_t i = 0; i < f->section_count; i++) {
			const struct imap_fetch_section *s = &f->sections[i];
			const char *text = imap_value_str(s->value);
			json_object_set_new(sections, s->item,
			                    text != NULL ? json_stringn_nocheck(text, strlen(text))
			                                 : json_null());
		}
		json_object_set_new(o, "sections", sections);
		print_json(o);
	}
	if (d->pause_after > 0 && d->fetched == d->pause_after && d->pause_file != NULL) {
		print_json(json_pack("{s:b}", "paused", 1));
		for (int i = 0; i < 6000 && access(d->pause_file, F_OK) != 0; i++)
			usleep(10000);
	}
}

static void on_next(evutil_socket_t fd, short what, void *ctx)
{
	(void)fd;
	(void)what;
	next_op(ctx);
}

static void on_done(void *ctx, const struct imap_result *r)
{
	struct op_ref *ref = ctx;
	struct drive *d = ref->d;
	const char *op = d->ops[ref->index];
	json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "op", op, "class", mt_class_name(r->cls),
	                      "reason", r->reason, "response", r->response);
	if (r->mailbox_count > 0) {
		json_t *boxes = json_array();
		for (size_t i = 0; i < r->mailbox_count; i++) {
			const char *role = imap_mailbox_role(r->mailboxes[i].flags);
			json_array_append_new(boxes, json_pack("{s:s,s:o}", "name",
			                                       r->mailboxes[i].name_utf8, "role",
			                                       str_or_null(role)));
		}
		json_object_set_new(o, "mailboxes", boxes);
		const struct imap_mailbox *sent =
		    imap_mailboxes_find_sent(r->mailboxes, r->mailbox_count);
		json_object_set_new(o, "sent", str_or_null(sent != NULL ? sent->name : NULL));
	}
	if (strncmp(op, "select", 6) == 0 || strncmp(op, "examine", 7) == 0) {
		json_object_set_new(o, "uidvalidity", json_integer(r->uidvalidity));
		json_object_set_new(o, "uidnext", json_integer(r->uidnext));
		json_object_set_new(o, "exists", json_integer(r->exists));
		json_object_set_new(o, "highestmodseq", json_integer((json_int_t)r->highestmodseq));
		json_object_set_new(o, "read_only", json_boolean(r->read_only));
	}
	if (strncmp(op, "fetch", 5) == 0)
		json_object_set_new(o, "fetched", json_integer((json_int_t)r->fetched));
	if (strncmp(op, "search", 6) == 0) {
		json_t *uids = json_array();
		for (size_t i = 0; i < r->uid_count && i < 100000; i++)
			json_array_append_new(uids, json_integer(r->uids[i]));
		json_object_set_new(o, "uids", uids);
	}
	if (strncmp(op, "append", 6) == 0) {
		json_object_set_new(o, "uid", json_integer(r->append_uid));
		json_object_set_new(o, "uidvalidity", json_integer(r->append_uidvalidity));
	}
	print_json(o);
	free(d->append_data);
	d->append_data = NULL;
	if (r->cls == MT_CLASS_RESP || r->cls == MT_CLASS_PROTO) {
		if (d->exit_code == 0)
			d->exit_code = mt_class_exit_code(r->cls);
	} else if (r->cls != MT_CLASS_NONE) {
		return; /* the session failed: on_failed follows */
	}
	if (ref->ahead)
		return; /* the next operation is out already */
	/* From the loop: when the session is failing, its `failed` comes first. */
	event_base_once(d->base, -1, EV_TIMEOUT, on_next, d, NULL);
}

static void on_idle_over(evutil_socket_t fd, short what, void *ctx)
{
	(void)fd;
	(void)what;
	struct drive *d = ctx;
	const char *error;
	if (imap_client_idle(d->client, false, &error) < 0)
		return;
	print_json(json_pack("{s:s,s:s}", "op", d->ops[d->next_op - 1], "class", "ok"));
	next_op(d);
}

static char *read_file(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	size_t cap = 65536, len = 0;
	char *data = malloc(cap);
	size_t n;
	while (data != NULL && (n = fread(data + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap) {
			cap *= 2;
			char *grown = realloc(data, cap);
			if (grown == NULL) {
				free(data);
				data = NULL;
			}
			data = grown;
		}
	}
	fclose(f);
	*len_r = len;
	return data;
}

static void next_op(struct drive *d)
{
	if (d->over)
		return;
	const char *error = "unknown operation";
	int r = -1;
	if (d->next_op == d->op_count) {
		/* all done: LOGOUT unless the script did */
		if (imap_client_logout(d->client, &error) < 0)
			finish(d, MT_CLASS_INTERNAL, error, NULL, NULL);
		return;
	}
	struct op_ref *ref = &d->refs[d->next_op];
	*ref = (struct op_ref){d, d->next_op, false};
	const char *op = d->ops[d->next_op++];
	ref->ahead = strncmp(op, "fetch+:", 7) == 0;
	if (strcmp(op, "list") == 0) {
		r = imap_client_list(d->client, on_done, ref, &error);
	} else if (strncmp(op, "select:", 7) == 0) {
		r = imap_client_select(d->client, op + 7, false, on_done, ref, &error);
	} else if (strncmp(op, "examine:", 8) == 0) {
		r = imap_client_select(d->client, op + 8, true, on_done, ref, &error);
	} else if (strncmp(op, "fetch:", 6) == 0 || ref->ahead) {
		const char *spec = op + (ref->ahead ? 7 : 6);
		char first[16], last[16];
		unsigned chunk;
		int used = 0;
		if (sscanf(spec, "%15[^:]:%15[^:]:%u:%n", first, last, &chunk, &used) == 3 &&
		    used > 0) {
			uint32_t f = (uint32_t)strtoul(first, NULL, 10);
			uint32_t l =
			    strcmp(last, "*") == 0 ? UINT32_MAX : (uint32_t)strtoul(last, NULL, 10);
			r = imap_client_fetch(d->client, f, l, spec + used, chunk, on_fetch,
			                      on_done, ref, &error);
		} else {
			error = "fetch:FIRST:LAST:CHUNK:ITEMS";
		}
	} else if (strncmp(op, "search:", 7) == 0) {
		r = imap_client_search(d->client, op + 7, on_done, ref, &error);
	} else if (strncmp(op, "append:", 7) == 0) {
		const char *colon = strrchr(op + 7, ':');
		if (colon != NULL) {
			char box[MT_IMAP_MAILBOX_MAX];
			snprintf(box, sizeof(box), "%.*s", (int)(colon - (op + 7)), op + 7);
			size_t len = 0;
			d->append_data = read_file(colon + 1, &len);
			if (d->append_data != NULL)
				r = imap_client_append(d->client, box, NULL, d->append_data, len,
				                       on_done, ref, &error);
			else
				error = "cannot read the message file";
		}
	} else if (strncmp(op, "append-text:", 12) == 0) {
		const char *colon = strchr(op + 12, ':');
		if (colon != NULL) {
			char box[MT_IMAP_MAILBOX_MAX];
			snprintf(box, sizeof(box), "%.*s", (int)(colon - (op + 12)), op + 12);
			size_t n = 0;
			d->append_data = malloc(strlen(colon) * 2 + 1);
			for (const char *p = colon + 1; d->append_data != NULL && *p != '\0'; p++) {
				if (p[0] == '\\' && p[1] == 'n') {
					d->append_data[n++] = '\r';
					d->append_data[n++] = '\n';
					p++;
				} else {
					d->append_data[n++] = *p;
				}
			}
			if (d->append_data != NULL)
				r = imap_client_append(d->client, box, NULL, d->append_data, n,
				                       on_done, ref, &error);
		}
	} else if (strcmp(op, "noop") == 0) {
		r = imap_client_noop(d->client, on_done, ref, &error);
	} else if (strncmp(op, "idle:", 5) == 0) {
		double seconds = atof(op + 5);
		r = imap_client_idle(d->client, true, &error);
		if (r == 0) {
			struct timeval tv = {(long)seconds,
			                     (long)((seconds - (long)seconds) * 1000000)};
			evtimer_add(d->idle_timer, &tv);
		}
	} else if (strcmp(op, "logout") == 0) {
		d->next_op = d->op_count;
		r = imap_client_logout(d->client, &error);
	}
	if (r < 0) {
		fprintf(stderr, "imap-drive: %s: %s\n", op, error);
		finish(d, MT_CLASS_INTERNAL, error, NULL, NULL);
	} else if (ref->ahead) {
		next_op(d);
	}
}

static void on_ready(void *ctx)
{
	struct drive *d = ctx;
	print_json(json_pack("{s:b}", "ready", 1));
	next_op(d);
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
	    {"host", required_argument, NULL, 'h'},
	    {"port", required_argument, NULL, 'p'},
	    {"security", required_argument, NULL, 's'},
	    {"auth", required_argument, NULL, 'a'},
	    {"user", required_argument, NULL, 'u'},
	    {"password-file", required_argument, NULL, 'P'},
	    {"ca-file", required_argument, NULL, 'c'},
	    {"fingerprint", required_argument, NULL, 'F'},
	    {"transcript", required_argument, NULL, 't'},
	    {"bind", required_argument, NULL, 'b'},
	    {"allow-plaintext", no_argument, NULL, 'A'},
	    {"idle-restart-ms", required_argument, NULL, 'I'},
	    {"poll-ms", required_argument, NULL, 'N'},
	    {"fetch-window", required_argument, NULL, 'W'},
	    {"command-timeout-ms", required_argument, NULL, 'T'},
	    {"quiet-fetch", no_argument, NULL, 'q'},
	    {"pause-after", required_argument, NULL, 'x'},
	    {"pause-file", required_argument, NULL, 'X'},
	    {"op", required_argument, NULL, 'o'},
	    {NULL, 0, NULL, 0},
	};
	struct drive d;
	memset(&d, 0, sizeof(d));
	struct imap_client_params params;
	memset(&params, 0, sizeof(params));
	params.security = MT_SECURITY_STARTTLS;
	const char *port_text = NULL, *password_file = NULL, *ca_file = NULL, *fingerprint = NULL;
	const char *transcript = NULL;
	const char *error = NULL;
	struct mt_tls_pin pin;
	int opt;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			params.host = optarg;
			break;
		case 'p':
			port_text = optarg;
			break;
		case 's':
			if (mt_security_parse(optarg, &params.security) < 0)
				error = "bad --security";
			break;
		case 'a':
			if (imap_auth_parse(optarg, &params.auth) < 0)
				error = "bad --auth";
			break;
		case 'u':
			params.username = optarg;
			break;
		case 'P':
			password_file = optarg;
			break;
		case 'c':
			ca_file = optarg;
			break;
		case 'F':
			fingerprint = optarg;
			break;
		case 't':
			transcript = optarg;
			break;
		case 'b':
			params.bind_address = optarg;
			break;
		case 'A':
			params.allow_plaintext_auth = true;
			break;
		case 'I':
			params.idle_restart_ms = atoi(optarg);
			break;
		case 'N':
			params.poll_interval_ms = atoi(optarg);
			break;
		case 'W':
			params.fetch_window = (unsigned)atoi(optarg);
			break;
		case 'T':
			params.command_timeout_ms = atoi(optarg);
			break;
		case 'q':
			d.quiet_fetch = true;
			break;
		case 'x':
			d.pause_after = (size_t)atol(optarg);
			break;
		case 'X':
			d.pause_file = optarg;
			break;
		case 'o':
			if (d.op_count < MAX_OPS)
				d.ops[d.op_count++] = optarg;
			break;
		default:
			error = "bad option";
		}
	}
	if (error == NULL && (params.host == NULL || port_text == NULL ||
	                      mt_parse_port(port_text, &params.port) < 0))
		error = "--host and --port are required";
	if (error == NULL && fingerprint != NULL &&
	    mt_tls_pin_parse(fingerprint, &pin, &error) == 0)
		params.pin = &pin;
	if (error != NULL) {
		fprintf(stderr, "imap-drive: %s\n", error);
		return 2;
	}
	struct mt_secret *secret = NULL;
	if (password_file != NULL) {
		secret = mt_secret_from_file(password_file, &error);
		if (secret == NULL) {
			fprintf(stderr, "imap-drive: %s: %s\n", password_file, error);
			return 2;
		}
	}
	params.secret = secret;
	signal(SIGPIPE, SIG_IGN);
	struct mt_tls_config *tls = mt_tls_config_new(ca_file, &error);
	if (tls == NULL) {
		fprintf(stderr, "imap-drive: %s\n", error);
		return 2;
	}
	params.tls = tls;
	if (transcript != NULL) {
		d.transcript = fopen(transcript, "w");
		if (d.transcript != NULL)
			setvbuf(d.transcript, NULL, _IOLBF, 0);
	}
	d.base = event_base_new();
	struct evdns_base *dns = mt_conn_dns_new(d.base);
	d.idle_timer = evtimer_new(d.base, on_idle_over, &d);
	struct imap_client_callbacks callbacks = {
	    .ready = on_ready,
	    .failed = on_failed,
	    .closed = on_closed,
	    .event = on_event,
	    .transcript = on_transcript,
	};
	d.client = imap_client_new(d.base, dns, &params, &callbacks, &d, &error);
	mt_secret_free(&secret);
	if (d.client == NULL)
		finish(&d, MT_CLASS_INTERNAL, error, NULL, NULL);
	else
		event_base_dispatch(d.base);
	imap_client_free(&d.client);
	free(d.append_data);
	event_free(d.idle_timer);
	evdns_base_free(dns, 0);
	event_base_free(d.base);
	mt_tls_config_free(&tls);
	if (d.transcript != NULL)
		fclose(d.transcript);
	return d.exit_code;
}
