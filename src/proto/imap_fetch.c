#include "proto/imap_fetch.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* nstring: NULL for NIL; -1 for a list, a streamed literal or a missing value. */
static int nstring(const struct imap_value *v, const char **str_r)
{
	if (v == NULL || v->type == IMAP_LIST || v->streamed)
		return -1;
	*str_r = v->type == IMAP_NIL ? NULL : v->str;
	return 0;
}

static int parse_section(const struct imap_value *name, const struct imap_value *value,
                         struct imap_fetch_section *sec)
{
	memset(sec, 0, sizeof(*sec));
	sec->item = name->str;
	sec->value = value;
	sec->section = "";
	if (value->type == IMAP_LIST)
		return -1;
	const char *open = strchr(name->str, '[');
	if (open == NULL)
		return 0; /* RFC822, RFC822.HEADER, RFC822.TEXT */
	const char *close = strrchr(open, ']');
	if (close == NULL)
		return -1;
	sec->section = open + 1;
	sec->section_len = (size_t)(close - open - 1);
	if (close[1] == '\0')
		return 0;
	/* "<" number ">" */
	const char *p = close + 1;
	if (*p++ != '<' || *p < '0' || *p > '9')
		return -1;
	uint64_t n = 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		n = n * 10 + (uint64_t)(*p - '0');
		if (n > UINT32_MAX)
			return -1;
	}
	if (p[0] != '>' || p[1] != '\0')
		return -1;
	sec->has_origin = 1;
	sec->origin = (uint32_t)n;
	return 0;
}

static int is_section_item(const char *name)
{
	return strncasecmp(name, "BODY[", 5) == 0 || strncasecmp(name, "BODY.PEEK[", 10) == 0 ||
	       strncasecmp(name, "BINARY[", 7) == 0 || strncasecmp(name, "BINARY.PEEK[", 12) == 0 ||
	       strcasecmp(name, "RFC822") == 0 || strcasecmp(name, "RFC822.HEADER") == 0 ||
	       strcasecmp(name, "RFC822.TEXT") == 0;
}

int imap_fetch_parse(const struct imap_response *resp, struct imap_fetch *fetch_r,
                     const char **error_r)
{
	memset(fetch_r, 0, sizeof(*fetch_r));
	const struct imap_value *list = resp->data;
	if (strcmp(resp->name, "FETCH") != 0 || !resp->has_number || list == NULL ||
	    list->type != IMAP_LIST || list->next != NULL) {
		*error_r = "not an IMAP FETCH response";
		return -1;
	}
	fetch_r->seq = resp->number;
	const struct imap_value *v = list->child;
	for (; v != NULL; v = v->next->next) {
		const struct imap_value *arg = v->next;
		uint64_t n;
		if (v->type != IMAP_ATOM || arg == NULL)
			goto bad;
		const char *name = v->str;
		if (strcasecmp(name, "UID") == 0) {
			if (imap_value_number(arg, 1, UINT32_MAX, &n) < 0)
				goto bad;
			fetch_r->uid = (uint32_t)n;
			fetch_r->has |= IMAP_FETCH_UID;
		} else if (strcasecmp(name, "FLAGS") == 0) {
			if (arg->type != IMAP_LIST)
				goto bad;
			for (const struct imap_value *f = arg->child; f != NULL; f = f->next) {
				if (f->type != IMAP_ATOM)
					goto bad;
			}
			fetch_r->flags = arg->child;
			fetch_r->flag_count = arg->len;
			fetch_r->has |= IMAP_FETCH_FLAGS;
		} else if (strcasecmp(name, "INTERNALDATE") == 0) {
			if (arg->type != IMAP_STRING)
				goto bad;
			fetch_r->internaldate = arg->str;
			fetch_r->has |= IMAP_FETCH_INTERNALDATE;
		} else if (strcasecmp(name, "RFC822.SIZE") == 0) {
			if (imap_value_number(arg, 0, UINT32_MAX, &n) < 0)
				goto bad;
			fetch_r->size = (uint32_t)n;
			fetch_r->has |= IMAP_FETCH_SIZE;
		} else if (strcasecmp(name, "MODSEQ") == 0) {
			if (arg->type != IMAP_LIST || arg->len != 1 ||
			    imap_value_number(arg->child, 0, INT64_MAX, &n) < 0)
				goto bad;
			fetch_r->modseq = n;
			fetch_r->has |= IMAP_FETCH_MODSEQ;
		} else if (strcasecmp(name, "ENVELOPE") == 0) {
			if (arg->type != IMAP_LIST)
				goto bad;
			fetch_r->envelope = arg;
			fetch_r->has |= IMAP_FETCH_ENVELOPE;
		} else if (strcasecmp(name, "BODYSTRUCTURE") == 0 ||
		           strcasecmp(name, "BODY") == 0) {
			if (arg->type != IMAP_LIST)
				goto bad;
			fetch_r->bodystructure = arg;
			fetch_r->has |= IMAP_FETCH_BODYSTRUCTURE;
		} else if (is_section_item(name)) {
			if (fetch_r->section_count >= MT_IMAP_FETCH_SECTIONS_MAX) {
				*error_r = "IMAP FETCH response with more than " MT_STRINGIFY(
				    MT_IMAP_FETCH_SECTIONS_MAX) " body sections";
				return -1;
			}
			if (parse_section(v, arg, &fetch_r->sections[fetch_r->section_count]) < 0)
				goto bad;
			fetch_r->section_count++;
		}
	}
	return 0;
bad:
	*error_r = "malformed IMAP FETCH item";
	return -1;
}

int imap_address_get(const struct imap_value *address, struct imap_address *addr_r,
                     const char **error_r)
{
	memset(addr_r, 0, sizeof(*addr_r));
	const struct imap_value *v =
	    address != NULL && address->type == IMAP_LIST && address->len == 4 ? address->child
	                                                                       : NULL;
	if (v == NULL || nstring(v, &addr_r->name) < 0 || nstring(v->next, &addr_r->adl) < 0 ||
	    nstring(v->next->next, &addr_r->mailbox) < 0 ||
	    nstring(v->next->next->next, &addr_r->host) < 0) {
		*error_r = "malformed IMAP address";
		return -1;
	}
	return 0;
}

static int address_list(const struct imap_value *v, const struct imap_value **first_r,
                        const char **error_r)
{
	*first_r = NULL;
	if (v == NULL || (v->type != IMAP_NIL && v->type != IMAP_LIST)) {
		*error_r = "malformed IMAP ENVELOPE address list";
		return -1;
	}
	if (v->type == IMAP_NIL)
		return 0;
	struct imap_address addr;
	for (const struct imap_value *a = v->child; a != NULL; a = a->next) {
		if (imap_address_get(a, &addr, error_r) < 0)
			return -1;
	}
	*first_r = v->child;
	return 0;
}

int imap_envelope_parse(const struct imap_value *envelope, struct imap_envelope *env_r,
                        const char **error_r)
{
	memset(env_r, 0, sizeof(*env_r));
	const struct imap_value *f[10];
	if (envelope == NULL || envelope->type != IMAP_LIST || envelope->len != 10)
		goto bad;
	f[0] = envelope->child;
	for (int i = 1; i < 10; i++)
		f[i] = f[i - 1]->next;
	if (nstring(f[0], &env_r->date) < 0 || nstring(f[1], &env_r->subject) < 0 ||
	    nstring(f[8], &env_r->in_reply_to) < 0 || nstring(f[9], &env_r->message_id) < 0)
		goto bad;
	if (address_list(f[2], &env_r->from, error_r) < 0 ||
	    address_list(f[3], &env_r->sender, error_r) < 0 ||
	    address_list(f[4], &env_r->reply_to, error_r) < 0 ||
	    address_list(f[5], &env_r->to, error_r) < 0 ||
	    address_list(f[6], &env_r->cc, error_r) < 0 ||
	    address_list(f[7], &env_r->bcc, error_r) < 0)
		return -1;
	return 0;
bad:
	*error_r = "malformed IMAP ENVELOPE";
	return -1;
}

/* The value of parameter `key` in a body-fld-param list (NIL or pairs); NULL when absent. */
static const char *param(const struct imap_value *params, const char *key)
{
	if (params == NULL || params->type != IMAP_LIST)
		return NULL;
	for (const struct imap_value *k = params->child; k != NULL && k->next != NULL;
	     k = k->next->next) {
		if (imap_value_is(k, key))
			return imap_value_str(k->next);
	}
	return NULL;
}

static int params_ok(const struct imap_value *params)
{
	if (params == NULL)
		return 1; /* extension data is optional */
	if (params->type == IMAP_NIL)
		return 1;
	if (params->type != IMAP_LIST || params->len % 2 != 0)
		return 0;
	for (const struct imap_value *v = params->child; v != NULL; v = v->next) {
		if (imap_value_str(v) == NULL && v->type != IMAP_NIL)
			return 0;
	}
	return 1;
}

/* body-fld-dsp: "(" string SP body-fld-param ")" / nil */
static int disposition(const struct imap_value *dsp, struct imap_body_part *part)
{
	if (dsp == NULL || dsp->type == IMAP_NIL)
		return 0;
	if (dsp->type != IMAP_LIST || dsp->len < 1 || imap_value_str(dsp->child) == NULL ||
	    !params_ok(dsp->child->next))
		return -1;
	part->disposition = dsp->child->str;
	part->filename = param(dsp->child->next, "FILENAME");
	if (part->filename == NULL)
		part->filename = param(dsp->child->next, "FILENAME*");
	return 0;
}

struct walk {
	struct imap_body_part *parts;
	size_t max, count;
	const char **error_r;
};

static int walk_body(struct walk *w, const struct imap_value *body, const char *path,
                     unsigned depth)
{
	if (body == NULL || body->type != IMAP_LIST || body->len < 2) {
		*w->error_r = "malformed IMAP BODYSTRUCTURE";
		return -1;
	}
	if (w->count >= w->max) {
		*w->error_r = "IMAP BODYSTRUCTURE has too many parts";
		return -1;
	}
	struct imap_body_part *part = &w->parts[w->count++];
	memset(part, 0, sizeof(*part));
	snprintf(part->path, sizeof(part->path), "%s", path);
	part->depth = depth;
	const struct imap_value *v = body->child;
	if (v->type == IMAP_LIST) {
		/* body-type-mpart: 1*body SP media-subtype [SP body-ext-mpart] */
		part->multipart = 1;
		part->type = "multipart";
		unsigned n = 0;
		for (; v != NULL && v->type == IMAP_LIST; v = v->next) {
			char sub[sizeof(part->path)];
			int len =
			    snprintf(sub, sizeof(sub), "%s%s%u", path, path[0] ? "." : "", ++n);
			if (len < 0 || (size_t)len >= sizeof(sub)) {
				*w->error_r = "IMAP BODYSTRUCTURE nested too deep";
				return -1;
			}
			if (walk_body(w, v, sub, depth + 1) < 0)
				return -1;
		}
		/* parts may have moved: `part` stays valid, the array is the caller's */
		if (v == NULL || imap_value_str(v) == NULL || !params_ok(v->next) ||
		    (v->next != NULL && disposition(v->next->next, part) < 0)) {
			*w->error_r = "malformed IMAP BODYSTRUCTURE multipart";
			return -1;
		}
		part->subtype = v->str;
		return 0;
	}
	/* body-type-1part: type subtype params id desc enc octets ... */
	const struct imap_value *f[12] = {0};
	size_t nf = 0;
	for (const struct imap_value *x = v; x != NULL && nf < 12; x = x->next)
		f[nf++] = x;
	if (nf < 7 || imap_value_str(f[0]) == NULL || imap_value_str(f[1]) == NULL ||
	    !params_ok(f[2]) || f[2] == NULL || imap_value_str(f[5]) == NULL) {
		*w->error_r = "malformed IMAP BODYSTRUCTURE part";
		return -1;
	}
	part->type = f[0]->str;
	part->subtype = f[1]->str;
	part->charset = param(f[2], "CHARSET");
	part->name = param(f[2], "NAME");
	part->encoding = f[5]->str;
	uint64_t size = 0;
	if (f[6]->type == IMAP_NUMBER && f[6]->num <= UINT32_MAX)
		size = f[6]->num; /* servers have sent -1 and strings: the size is only a hint */
	part->size = (uint32_t)size;
	size_t ext = 7; /* body-ext-1part: md5, then the disposition */
	if (strcasecmp(part->type, "TEXT") == 0)
		ext = 8;
	else if (strcasecmp(part->type, "MESSAGE") == 0 &&
	         (strcasecmp(part->subtype, "RFC822") == 0 ||
	          strcasecmp(part->subtype, "GLOBAL") == 0))
		ext = 10;
	if (ext + 1 < nf && disposition(f[ext + 1], part) < 0) {
		*w->error_r = "malformed IMAP BODYSTRUCTURE disposition";
		return -1;
	}
	part->attachment =
	    (part->disposition != NULL && strcasecmp(part->disposition, "attachment") == 0) ||
	    part->filename != NULL || part->name != NULL;
	return 0;
}

int imap_bodystructure_parse(const struct imap_value *body, struct imap_body_part *parts,
                             size_t max, size_t *count_r, const char **error_r)
{
	struct walk w = {parts, max, 0, error_r};
	*count_r = 0;
	/* a single-part message's part is section "1" */
	int multipart = body != NULL && body->type == IMAP_LIST && body->child != NULL &&
	                body->child->type == IMAP_LIST;
	if (walk_body(&w, body, multipart ? "" : "1", 0) < 0)
		return -1;
	*count_r = w.count;
	return 0;
}

size_t imap_bodystructure_attachments(const struct imap_body_part *parts, size_t count)
{
	size_t n = 0;
	for (size_t i = 0; i < count; i++)
		n += parts[i].attachment != 0;
	return n;
}
