#include "proto/imap_response.h"

#include "lib/str.h"
#include "proto/imap_utf7.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* nz-number (no leading zero, at most 2^32-1) or "*". Advances *s. */
static int seq_number(const char **s, uint32_t *num_r)
{
	const char *p = *s;
	if (*p == '*') {
		*num_r = UINT32_MAX;
		*s = p + 1;
		return 0;
	}
	if (*p < '1' || *p > '9')
		return -1;
	uint64_t n = 0;
	while (*p >= '0' && *p <= '9') {
		n = n * 10 + (uint64_t)(*p - '0');
		if (n > UINT32_MAX)
			return -1;
		p++;
	}
	*num_r = (uint32_t)n;
	*s = p;
	return 0;
}

static int seqset_push(struct imap_seqset *set, size_t *cap, uint32_t first, uint32_t last,
                       const char **error_r)
{
	if (set->count >= MT_IMAP_SEQSET_RANGES_MAX) {
		*error_r = "IMAP sequence set has more than " MT_STRINGIFY(
		    MT_IMAP_SEQSET_RANGES_MAX) " ranges";
		return -1;
	}
	if (set->count == *cap) {
		size_t grown = *cap ? *cap * 2 : 16;
		if (grown > MT_IMAP_SEQSET_RANGES_MAX)
			grown = MT_IMAP_SEQSET_RANGES_MAX;
		struct imap_range *ranges = realloc(set->ranges, grown * sizeof(*ranges));
		if (ranges == NULL) {
			*error_r = "out of memory for an IMAP sequence set";
			return -1;
		}
		set->ranges = ranges;
		*cap = grown;
	}
	set->ranges[set->count].first = first < last ? first : last;
	set->ranges[set->count].last = first < last ? last : first;
	set->count++;
	return 0;
}

int imap_seqset_parse(const char *text, struct imap_seqset *set_r, const char **error_r)
{
	memset(set_r, 0, sizeof(*set_r));
	size_t cap = 0;
	const char *s = text != NULL ? text : "";
	for (;;) {
		uint32_t first, last;
		if (seq_number(&s, &first) < 0) {
			*error_r = "malformed IMAP sequence set";
			goto fail;
		}
		last = first;
		if (*s == ':') {
			s++;
			if (seq_number(&s, &last) < 0) {
				*error_r = "malformed IMAP sequence set";
				goto fail;
			}
		}
		if (seqset_push(set_r, &cap, first, last, error_r) < 0)
			goto fail;
		if (*s == '\0')
			return 0;
		if (*s++ != ',') {
			*error_r = "malformed IMAP sequence set";
			goto fail;
		}
	}
fail:
	imap_seqset_deinit(set_r);
	return -1;
}

void imap_seqset_deinit(struct imap_seqset *set)
{
	free(set->ranges);
	set->ranges = NULL;
	set->count = 0;
}

uint64_t imap_seqset_size(const struct imap_seqset *set)
{
	uint64_t n = 0;
	for (size_t i = 0; i < set->count; i++)
		n += (uint64_t)set->ranges[i].last - set->ranges[i].first + 1;
	return n;
}

static const struct {
	const char *name;
	enum imap_code code;
} codes[] = {
    {"ALERT", IMAP_CODE_ALERT},
    {"PARSE", IMAP_CODE_PARSE},
    {"BADCHARSET", IMAP_CODE_BADCHARSET},
    {"CAPABILITY", IMAP_CODE_CAPABILITY},
    {"PERMANENTFLAGS", IMAP_CODE_PERMANENTFLAGS},
    {"READ-ONLY", IMAP_CODE_READ_ONLY},
    {"READ-WRITE", IMAP_CODE_READ_WRITE},
    {"TRYCREATE", IMAP_CODE_TRYCREATE},
    {"UIDNEXT", IMAP_CODE_UIDNEXT},
    {"UIDVALIDITY", IMAP_CODE_UIDVALIDITY},
    {"UNSEEN", IMAP_CODE_UNSEEN},
    {"CLOSED", IMAP_CODE_CLOSED},
    {"HIGHESTMODSEQ", IMAP_CODE_HIGHESTMODSEQ},
    {"NOMODSEQ", IMAP_CODE_NOMODSEQ},
    {"MODIFIED", IMAP_CODE_MODIFIED},
    {"APPENDUID", IMAP_CODE_APPENDUID},
    {"COPYUID", IMAP_CODE_COPYUID},
    {"UIDNOTSTICKY", IMAP_CODE_UIDNOTSTICKY},
    {"UNAVAILABLE", IMAP_CODE_UNAVAILABLE},
    {"AUTHENTICATIONFAILED", IMAP_CODE_AUTHENTICATIONFAILED},
    {"AUTHORIZATIONFAILED", IMAP_CODE_AUTHORIZATIONFAILED},
    {"EXPIRED", IMAP_CODE_EXPIRED},
    {"PRIVACYREQUIRED", IMAP_CODE_PRIVACYREQUIRED},
    {"CONTACTADMIN", IMAP_CODE_CONTACTADMIN},
    {"NOPERM", IMAP_CODE_NOPERM},
    {"INUSE", IMAP_CODE_INUSE},
    {"EXPUNGEISSUED", IMAP_CODE_EXPUNGEISSUED},
    {"CORRUPTION", IMAP_CODE_CORRUPTION},
    {"SERVERBUG", IMAP_CODE_SERVERBUG},
    {"CLIENTBUG", IMAP_CODE_CLIENTBUG},
    {"CANNOT", IMAP_CODE_CANNOT},
    {"LIMIT", IMAP_CODE_LIMIT},
    {"OVERQUOTA", IMAP_CODE_OVERQUOTA},
    {"ALREADYEXISTS", IMAP_CODE_ALREADYEXISTS},
    {"NONEXISTENT", IMAP_CODE_NONEXISTENT},
};

/* A set argument: an atom ("304,319:320") or a number ("3955"). */
static const char *set_text(const struct imap_value *v)
{
	return v != NULL && (v->type == IMAP_ATOM || v->type == IMAP_NUMBER) ? v->str : NULL;
}

static int code_args(enum imap_code code, const struct imap_value *args,
                     struct imap_code_data *data, const char **error_r)
{
	uint64_t n = 0;
	switch (code) {
	case IMAP_CODE_UIDNEXT:
	case IMAP_CODE_UIDVALIDITY:
	case IMAP_CODE_UNSEEN:
		/* UIDNEXT 0 and UNSEEN 0 are seen from servers with empty mailboxes */
		if (imap_value_number(args, code == IMAP_CODE_UIDVALIDITY, UINT32_MAX, &n) < 0)
			goto bad;
		data->number = n;
		return 0;
	case IMAP_CODE_HIGHESTMODSEQ:
		if (imap_value_number(args, 0, INT64_MAX, &n) < 0)
			goto bad;
		data->number = n;
		return 0;
	case IMAP_CODE_APPENDUID:
	case IMAP_CODE_COPYUID:
		if (imap_value_number(args, 1, UINT32_MAX, &n) < 0)
			goto bad;
		data->uidvalidity = (uint32_t)n;
		args = args->next;
		if (code == IMAP_CODE_COPYUID) {
			data->source = set_text(args);
			if (data->source == NULL)
				goto bad;
			args = args->next;
		}
		data->uids = set_text(args);
		if (data->uids == NULL)
			goto bad;
		return 0;
	case IMAP_CODE_CAPABILITY:
		for (const struct imap_value *v = args; v != NULL; v = v->next) {
			if (v->type != IMAP_ATOM)
				goto bad;
		}
		data->list = args;
		return 0;
	case IMAP_CODE_PERMANENTFLAGS:
		if (args == NULL || args->type != IMAP_LIST)
			goto bad;
		data->list = args->child;
		return 0;
	case IMAP_CODE_BADCHARSET:
		if (args != NULL && args->type != IMAP_LIST)
			goto bad;
		data->list = args != NULL ? args->child : NULL;
		return 0;
	default:
		return 0;
	}
bad:
	*error_r = "IMAP response code with malformed arguments";
	return -1;
}

int imap_response_code(const struct imap_response *resp, struct imap_code_data *code_r,
                       const char **error_r)
{
	memset(code_r, 0, sizeof(*code_r));
	code_r->name = resp->code != NULL ? resp->code : "";
	if (code_r->name[0] == '\0')
		return 0;
	code_r->code = IMAP_CODE_OTHER;
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		if (strcmp(codes[i].name, code_r->name) == 0) {
			code_r->code = codes[i].code;
			break;
		}
	}
	if (resp->code_args[0] != '\0' && resp->code_values == NULL &&
	    code_r->code != IMAP_CODE_OTHER && code_r->code != IMAP_CODE_ALERT) {
		*error_r = "IMAP response code with malformed arguments";
		return -1;
	}
	return code_args(code_r->code, resp->code_values, code_r, error_r);
}

int imap_caps_has(const struct imap_value *first, const char *cap)
{
	for (const struct imap_value *v = first; v != NULL; v = v->next) {
		if (v->type == IMAP_ATOM && imap_value_is(v, cap))
			return 1;
	}
	return 0;
}

static const struct {
	const char *name;
	unsigned flag;
} mbox_flags[] = {
    {"\\Noinferiors", IMAP_MBOX_NOINFERIORS},
    {"\\Noselect", IMAP_MBOX_NOSELECT},
    {"\\Marked", IMAP_MBOX_MARKED},
    {"\\Unmarked", IMAP_MBOX_UNMARKED},
    {"\\HasChildren", IMAP_MBOX_HASCHILDREN},
    {"\\HasNoChildren", IMAP_MBOX_HASNOCHILDREN},
    {"\\NonExistent", IMAP_MBOX_NONEXISTENT},
    {"\\Subscribed", IMAP_MBOX_SUBSCRIBED},
    {"\\Remote", IMAP_MBOX_REMOTE},
    {"\\All", IMAP_MBOX_ALL},
    {"\\Archive", IMAP_MBOX_ARCHIVE},
    {"\\Drafts", IMAP_MBOX_DRAFTS},
    {"\\Flagged", IMAP_MBOX_FLAGGED},
    {"\\Junk", IMAP_MBOX_JUNK},
    {"\\Sent", IMAP_MBOX_SENT},
    {"\\Trash", IMAP_MBOX_TRASH},
    {"\\Important", IMAP_MBOX_IMPORTANT},
};

/* astring: atom, number, quoted string or literal. */
static const char *astring(const struct imap_value *v)
{
	if (v == NULL || v->type == IMAP_LIST || v->type == IMAP_NIL || v->streamed)
		return NULL;
	return v->str;
}

int imap_list_parse(const struct imap_response *resp, int utf8_enabled, struct imap_list *list_r,
                    const char **error_r)
{
	memset(list_r, 0, sizeof(*list_r));
	const struct imap_value *flags = resp->data;
	if ((strcmp(resp->name, "LIST") != 0 && strcmp(resp->name, "LSUB") != 0) || flags == NULL ||
	    flags->type != IMAP_LIST) {
		*error_r = "not an IMAP LIST response";
		return -1;
	}
	for (const struct imap_value *f = flags->child; f != NULL; f = f->next) {
		for (size_t i = 0; i < sizeof(mbox_flags) / sizeof(mbox_flags[0]); i++) {
			if (imap_value_is(f, mbox_flags[i].name))
				list_r->flags |= mbox_flags[i].flag;
		}
	}
	const struct imap_value *delim = flags->next;
	if (delim == NULL ||
	    (delim->type != IMAP_NIL && (delim->type != IMAP_STRING || delim->len != 1))) {
		*error_r = "IMAP LIST response with a malformed delimiter";
		return -1;
	}
	list_r->delimiter = delim->type == IMAP_NIL ? '\0' : delim->str[0];
	list_r->name = astring(delim->next);
	if (list_r->name == NULL) {
		*error_r = "IMAP LIST response without a mailbox name";
		return -1;
	}
	if (!utf8_enabled)
		return imap_utf7_decode(list_r->name, list_r->name_utf8, sizeof(list_r->name_utf8),
		                        error_r);
	if (!mt_utf8_valid(list_r->name, strlen(list_r->name)) ||
	    mt_strlcpy(list_r->name_utf8, list_r->name, sizeof(list_r->name_utf8)) >=
	        sizeof(list_r->name_utf8)) {
		*error_r = "IMAP mailbox name not valid UTF-8 or too long";
		return -1;
	}
	return 0;
}

int imap_status_parse(const struct imap_response *resp, struct imap_status_data *status_r,
                      const char **error_r)
{
	memset(status_r, 0, sizeof(*status_r));
	static const struct {
		const char *name;
		unsigned item;
	} items[] = {
	    {"MESSAGES", IMAP_STATUS_MESSAGES}, {"RECENT", IMAP_STATUS_RECENT},
	    {"UIDNEXT", IMAP_STATUS_UIDNEXT},   {"UIDVALIDITY", IMAP_STATUS_UIDVALIDITY},
	    {"UNSEEN", IMAP_STATUS_UNSEEN},     {"HIGHESTMODSEQ", IMAP_STATUS_HIGHESTMODSEQ},
	};
	if (strcmp(resp->name, "STATUS") != 0 ||
	    (status_r->mailbox = astring(resp->data)) == NULL || resp->data->next == NULL ||
	    resp->data->next->type != IMAP_LIST) {
		*error_r = "not an IMAP STATUS response";
		return -1;
	}
	const struct imap_value *v = resp->data->next->child;
	for (; v != NULL; v = v->next->next) {
		uint64_t n;
		if (v->type != IMAP_ATOM ||
		    imap_value_number(v->next, 0,
		                      v->next != NULL && imap_value_is(v, "HIGHESTMODSEQ")
		                          ? INT64_MAX
		                          : UINT32_MAX,
		                      &n) < 0) {
			*error_r = "IMAP STATUS response with a malformed item";
			return -1;
		}
		for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
			if (!imap_value_is(v, items[i].name))
				continue;
			status_r->has |= items[i].item;
			switch (items[i].item) {
			case IMAP_STATUS_MESSAGES:
				status_r->messages = (uint32_t)n;
				break;
			case IMAP_STATUS_RECENT:
				status_r->recent = (uint32_t)n;
				break;
			case IMAP_STATUS_UIDNEXT:
				status_r->uidnext = (uint32_t)n;
				break;
			case IMAP_STATUS_UIDVALIDITY:
				status_r->uidvalidity = (uint32_t)n;
				break;
			case IMAP_STATUS_UNSEEN:
				status_r->unseen = (uint32_t)n;
				break;
			default:
				status_r->highestmodseq = n;
			}
		}
	}
	return 0;
}

/* "(MODSEQ n)" after SEARCH or inside ESEARCH. */
static int modseq_list(const struct imap_value *v, uint64_t *modseq_r)
{
	if (v->type != IMAP_LIST || v->len != 2 || !imap_value_is(v->child, "MODSEQ"))
		return -1;
	return imap_value_number(v->child->next, 0, INT64_MAX, modseq_r);
}

int imap_search_parse(const struct imap_response *resp, struct imap_search *search_r,
                      const char **error_r)
{
	memset(search_r, 0, sizeof(*search_r));
	if (strcmp(resp->name, "SEARCH") != 0) {
		*error_r = "not an IMAP SEARCH response";
		return -1;
	}
	size_t cap = 0;
	struct imap_seqset *set = &search_r->numbers;
	for (const struct imap_value *v = resp->data; v != NULL; v = v->next) {
		uint64_t n;
		if (v->next == NULL && v->type == IMAP_LIST) {
			if (modseq_list(v, &search_r->modseq) < 0)
				goto bad;
			search_r->has_modseq = 1;
			break;
		}
		if (imap_value_number(v, 1, UINT32_MAX, &n) < 0)
			goto bad;
		if (set->count > 0 && set->ranges[set->count - 1].last + 1ull == n) {
			set->ranges[set->count - 1].last = (uint32_t)n;
			continue;
		}
		if (seqset_push(set, &cap, (uint32_t)n, (uint32_t)n, error_r) < 0) {
			imap_seqset_deinit(set);
			return -1;
		}
	}
	return 0;
bad:
	imap_seqset_deinit(set);
	*error_r = "IMAP SEARCH response with a malformed number";
	return -1;
}

int imap_esearch_parse(const struct imap_response *resp, struct imap_esearch *esearch_r,
                       const char **error_r)
{
	memset(esearch_r, 0, sizeof(*esearch_r));
	if (strcmp(resp->name, "ESEARCH") != 0) {
		*error_r = "not an IMAP ESEARCH response";
		return -1;
	}
	const struct imap_value *v = resp->data;
	if (v != NULL && v->type == IMAP_LIST) {
		if (v->len != 2 || !imap_value_is(v->child, "TAG") ||
		    (esearch_r->tag = astring(v->child->next)) == NULL)
			goto bad;
		v = v->next;
	}
	if (v != NULL && v->type == IMAP_ATOM && imap_value_is(v, "UID")) {
		esearch_r->uid = 1;
		v = v->next;
	}
	for (; v != NULL; v = v->next->next) {
		if (v->type != IMAP_ATOM || v->next == NULL)
			goto bad;
		uint64_t n;
		const struct imap_value *arg = v->next;
		if (imap_value_is(v, "MIN") || imap_value_is(v, "MAX") ||
		    imap_value_is(v, "COUNT")) {
			if (imap_value_number(arg, imap_value_is(v, "COUNT") ? 0 : 1, UINT32_MAX,
			                      &n) < 0)
				goto bad;
			if (imap_value_is(v, "MIN")) {
				esearch_r->has |= IMAP_ESEARCH_MIN;
				esearch_r->min = (uint32_t)n;
			} else if (imap_value_is(v, "MAX")) {
				esearch_r->has |= IMAP_ESEARCH_MAX;
				esearch_r->max = (uint32_t)n;
			} else {
				esearch_r->has |= IMAP_ESEARCH_COUNT;
				esearch_r->count = (uint32_t)n;
			}
		} else if (imap_value_is(v, "MODSEQ")) {
			if (imap_value_number(arg, 0, INT64_MAX, &esearch_r->modseq) < 0)
				goto bad;
			esearch_r->has |= IMAP_ESEARCH_MODSEQ;
		} else if (imap_value_is(v, "ALL")) {
			if ((esearch_r->has & IMAP_ESEARCH_ALL) != 0)
				goto bad;
			if (imap_seqset_parse(set_text(arg), &esearch_r->all, error_r) < 0)
				return -1;
			esearch_r->has |= IMAP_ESEARCH_ALL;
		}
		/* other search-return-data (RFC 9394 PARTIAL...) is skipped with its value */
	}
	return 0;
bad:
	imap_seqset_deinit(&esearch_r->all);
	*error_r = "malformed IMAP ESEARCH response";
	return -1;
}

int imap_vanished_parse(const struct imap_response *resp, struct imap_vanished *vanished_r,
                        const char **error_r)
{
	memset(vanished_r, 0, sizeof(*vanished_r));
	const struct imap_value *v = resp->data;
	if (strcmp(resp->name, "VANISHED") != 0 || v == NULL) {
		*error_r = "not an IMAP VANISHED response";
		return -1;
	}
	if (v->type == IMAP_LIST) {
		if (v->len != 1 || !imap_value_is(v->child, "EARLIER")) {
			*error_r = "malformed IMAP VANISHED response";
			return -1;
		}
		vanished_r->earlier = 1;
		v = v->next;
	}
	if (v == NULL || v->next != NULL) {
		*error_r = "malformed IMAP VANISHED response";
		return -1;
	}
	return imap_seqset_parse(set_text(v), &vanished_r->uids, error_r);
}
