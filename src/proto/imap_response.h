/* Typed views of IMAP responses read by imap_parse.h: response codes, CAPABILITY, LIST, STATUS,
 * SEARCH, ESEARCH, VANISHED and sequence sets. FETCH is in imap_fetch.h.
 *
 *   resp-text-code = "ALERT" / "BADCHARSET" [SP "(" charset *(SP charset) ")"] /
 *                    capability-data / "PARSE" / "PERMANENTFLAGS" SP "(" [flag-perm
 *                    *(SP flag-perm)] ")" / "READ-ONLY" / "READ-WRITE" / "TRYCREATE" /
 *                    "UIDNEXT" SP nz-number / "UIDVALIDITY" SP nz-number /
 *                    "UNSEEN" SP nz-number / "CLOSED" / atom [SP 1*<TEXT-CHAR except "]">]
 *   resp-text-code =/ "HIGHESTMODSEQ" SP mod-sequence-value / "NOMODSEQ"      ; RFC 7162
 *   resp-text-code =/ "APPENDUID" SP nz-number SP append-uid /                ; RFC 4315
 *                     "COPYUID" SP nz-number SP uid-set SP uid-set / "UIDNOTSTICKY"
 *   resp-text-code =/ "UNAVAILABLE" / "AUTHENTICATIONFAILED" / ... / "NONEXISTENT" ; RFC 5530
 *   mailbox-list   = "(" [mbx-list-flags] ")" SP (DQUOTE QUOTED-CHAR DQUOTE / nil) SP mailbox
 *   status-att-list = status-att SP number *(SP status-att SP number)
 *   search-return-data = "MIN" SP nz-number / "MAX" SP nz-number /            ; RFC 4731
 *                    "ALL" SP sequence-set / "COUNT" SP number / "MODSEQ" SP mod-sequence-value
 *   search-correlator = SP "(" "TAG" SP tag-string ")"
 *   sequence-set   = (seq-number / seq-range) ["," sequence-set]
 *   seq-range      = seq-number ":" seq-number      ; either order
 *   seq-number     = nz-number / "*"
 *
 * Functions return 0, or -1 with *error_r set (static text). Strings and values in the results
 * point into the response and share its lifetime (imap_parse.h); a struct imap_seqset owns its
 * ranges until imap_seqset_deinit(). */
#ifndef MT_PROTO_IMAP_RESPONSE_H
#define MT_PROTO_IMAP_RESPONSE_H

#include "proto/imap_parse.h"

#include <stddef.h>
#include <stdint.h>

/* A parsed sequence set: ascending by `first`, as sent (not merged). "*" is UINT32_MAX. */
struct imap_range {
	uint32_t first, last; /* first <= last */
};
struct imap_seqset {
	struct imap_range *ranges;
	size_t count;
};

/* At most MT_IMAP_SEQSET_RANGES_MAX ranges; the set is empty (count 0) on error. */
int imap_seqset_parse(const char *text, struct imap_seqset *set_r, const char **error_r);
void imap_seqset_deinit(struct imap_seqset *set);
/* Numbers covered by the set (saturating). */
uint64_t imap_seqset_size(const struct imap_seqset *set);

enum imap_code {
	IMAP_CODE_NONE,  /* no [code] */
	IMAP_CODE_OTHER, /* one we do not know: see `name` and the response's code_args */
	IMAP_CODE_ALERT,
	IMAP_CODE_PARSE,
	IMAP_CODE_BADCHARSET,
	IMAP_CODE_CAPABILITY,
	IMAP_CODE_PERMANENTFLAGS,
	IMAP_CODE_READ_ONLY,
	IMAP_CODE_READ_WRITE,
	IMAP_CODE_TRYCREATE,
	IMAP_CODE_UIDNEXT,
	IMAP_CODE_UIDVALIDITY,
	IMAP_CODE_UNSEEN,
	IMAP_CODE_CLOSED,
	IMAP_CODE_HIGHESTMODSEQ,
	IMAP_CODE_NOMODSEQ,
	IMAP_CODE_MODIFIED,
	IMAP_CODE_APPENDUID,
	IMAP_CODE_COPYUID,
	IMAP_CODE_UIDNOTSTICKY,
	IMAP_CODE_UNAVAILABLE,
	IMAP_CODE_AUTHENTICATIONFAILED,
	IMAP_CODE_AUTHORIZATIONFAILED,
	IMAP_CODE_EXPIRED,
	IMAP_CODE_PRIVACYREQUIRED,
	IMAP_CODE_CONTACTADMIN,
	IMAP_CODE_NOPERM,
	IMAP_CODE_INUSE,
	IMAP_CODE_EXPUNGEISSUED,
	IMAP_CODE_CORRUPTION,
	IMAP_CODE_SERVERBUG,
	IMAP_CODE_CLIENTBUG,
	IMAP_CODE_CANNOT,
	IMAP_CODE_LIMIT,
	IMAP_CODE_OVERQUOTA,
	IMAP_CODE_ALREADYEXISTS,
	IMAP_CODE_NONEXISTENT,
};

struct imap_code_data {
	enum imap_code code;
	const char *name;     /* the code's atom ("" for NONE) */
	uint64_t number;      /* UIDNEXT, UIDVALIDITY, UNSEEN, HIGHESTMODSEQ */
	uint32_t uidvalidity; /* APPENDUID, COPYUID */
	const char *uids;     /* APPENDUID: its uid-set; COPYUID: the destination set */
	const char *source;   /* COPYUID: the source set */
	/* CAPABILITY: the first capability atom; PERMANENTFLAGS and BADCHARSET: the first item
	 * of the list (NULL when empty); linked by ->next. */
	const struct imap_value *list;
};

/* The code of a status response or continuation. Known codes must have their arguments
 * (UIDVALIDITY abc is -1); unknown ones are IMAP_CODE_OTHER. */
int imap_response_code(const struct imap_response *resp, struct imap_code_data *code_r,
                       const char **error_r);

/* 1 when the capability list starting at `first` (a "* CAPABILITY" response's data or a
 * CAPABILITY code's list) has `cap` (ASCII case-insensitive), else 0. */
int imap_caps_has(const struct imap_value *first, const char *cap);

/* LIST / LSUB (RFC 3501 §7.2.2, RFC 6154 SPECIAL-USE, RFC 5258 LIST-EXTENDED). */
enum imap_mbox_flag {
	IMAP_MBOX_NOINFERIORS = 1 << 0,
	IMAP_MBOX_NOSELECT = 1 << 1,
	IMAP_MBOX_MARKED = 1 << 2,
	IMAP_MBOX_UNMARKED = 1 << 3,
	IMAP_MBOX_HASCHILDREN = 1 << 4,
	IMAP_MBOX_HASNOCHILDREN = 1 << 5,
	IMAP_MBOX_NONEXISTENT = 1 << 6,
	IMAP_MBOX_SUBSCRIBED = 1 << 7,
	IMAP_MBOX_REMOTE = 1 << 8,
	IMAP_MBOX_ALL = 1 << 9,
	IMAP_MBOX_ARCHIVE = 1 << 10,
	IMAP_MBOX_DRAFTS = 1 << 11,
	IMAP_MBOX_FLAGGED = 1 << 12,
	IMAP_MBOX_JUNK = 1 << 13,
	IMAP_MBOX_SENT = 1 << 14,
	IMAP_MBOX_TRASH = 1 << 15,
	IMAP_MBOX_IMPORTANT = 1 << 16, /* RFC 8457 */
};

struct imap_list {
	unsigned flags;   /* enum imap_mbox_flag bits; unknown flags are ignored */
	char delimiter;   /* '\0' for NIL (a flat namespace) */
	const char *name; /* as sent (modified UTF-7 unless UTF8=ACCEPT is enabled) */
	char name_utf8[MT_IMAP_MAILBOX_MAX];
};

/* `utf8_enabled`: the server was told ENABLE UTF8=ACCEPT, names are UTF-8 as they are.
 * Otherwise the name is decoded from modified UTF-7, strictly. */
int imap_list_parse(const struct imap_response *resp, int utf8_enabled, struct imap_list *list_r,
                    const char **error_r);

/* STATUS (RFC 3501 §7.2.4, RFC 7162 HIGHESTMODSEQ). */
enum imap_status_item {
	IMAP_STATUS_MESSAGES = 1 << 0,
	IMAP_STATUS_RECENT = 1 << 1,
	IMAP_STATUS_UIDNEXT = 1 << 2,
	IMAP_STATUS_UIDVALIDITY = 1 << 3,
	IMAP_STATUS_UNSEEN = 1 << 4,
	IMAP_STATUS_HIGHESTMODSEQ = 1 << 5,
};

struct imap_status_data {
	const char *mailbox; /* as sent */
	unsigned has;        /* enum imap_status_item bits */
	uint32_t messages, recent, uidnext, uidvalidity, unseen;
	uint64_t highestmodseq;
};

int imap_status_parse(const struct imap_response *resp, struct imap_status_data *status_r,
                      const char **error_r);

/* "* SEARCH 2 5 6 (MODSEQ 917162500)": the numbers as single-number ranges, adjacent ones
 * merged (2:2, 5:6). */
struct imap_search {
	struct imap_seqset numbers;
	int has_modseq;
	uint64_t modseq;
};
int imap_search_parse(const struct imap_response *resp, struct imap_search *search_r,
                      const char **error_r);

/* "* ESEARCH (TAG "a1") UID MIN 2 MAX 9 COUNT 3 ALL 2,5:9 MODSEQ 12" (RFC 4731). */
enum imap_esearch_item {
	IMAP_ESEARCH_MIN = 1 << 0,
	IMAP_ESEARCH_MAX = 1 << 1,
	IMAP_ESEARCH_COUNT = 1 << 2,
	IMAP_ESEARCH_ALL = 1 << 3,
	IMAP_ESEARCH_MODSEQ = 1 << 4,
};
struct imap_esearch {
	const char *tag; /* search-correlator, NULL when absent */
	int uid;
	unsigned has; /* enum imap_esearch_item bits */
	uint32_t min, max, count;
	uint64_t modseq;
	struct imap_seqset all; /* empty unless ALL */
};
int imap_esearch_parse(const struct imap_response *resp, struct imap_esearch *esearch_r,
                       const char **error_r);

/* "* VANISHED (EARLIER) 300:310,405" (RFC 7162 §3.2.10). */
struct imap_vanished {
	int earlier;
	struct imap_seqset uids;
};
int imap_vanished_parse(const struct imap_response *resp, struct imap_vanished *vanished_r,
                        const char **error_r);

#endif
