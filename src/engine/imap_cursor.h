/* The pure decisions of IMAP sync about one folder (engine/imap_sync.h): what a SELECT means for
 * the stored cursor, which UIDs to ask for, and where the cursor stands afterwards. No I/O. */
#ifndef MT_ENGINE_IMAP_CURSOR_H
#define MT_ENGINE_IMAP_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum imap_cursor_action {
	IMAP_CURSOR_NOTHING,     /* no UID past the cursor can exist (UIDNEXT or HIGHESTMODSEQ) */
	IMAP_CURSOR_INCREMENTAL, /* UID last_uid+1:* */
	IMAP_CURSOR_FULL,        /* first sync, or UIDVALIDITY changed: everything since `since` */
};

struct imap_cursor_decision {
	enum imap_cursor_action action;
	uint32_t from_uid; /* the lowest UID wanted */
	bool reset;        /* the stored cursor is void (UIDVALIDITY changed or none yet) */
};

/* A folder's stored cursor (uidvalidity 0: never synced; highestmodseq 0: none) and what a
 * SELECT / EXAMINE answered (uidnext 0: not sent; highestmodseq 0: no CONDSTORE, or NOMODSEQ). */
struct imap_cursor_state {
	int64_t uidvalidity, last_uid, highestmodseq;
};
struct imap_cursor_select {
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq;
};

/* The stored cursor against a SELECT's answer. Nothing to do when UIDNEXT is at most last_uid+1,
 * or, from a server that sent no UIDNEXT, (RFC 7162) when HIGHESTMODSEQ equals the stored one:
 * every message added since the pass that stored it would carry a higher mod-sequence. */
struct imap_cursor_decision imap_cursor_decide(const struct imap_cursor_state *stored,
                                               const struct imap_cursor_select *sel);

/* Whether mail past the stored cursor may exist, for the checks before IDLE: UIDVALIDITY
 * changed, UIDNEXT past last_uid+1, or without UIDNEXT a HIGHESTMODSEQ other than the stored
 * one (without either: false, as before IDLE nothing else can tell). */
bool imap_cursor_maybe_new(const struct imap_cursor_state *stored,
                           const struct imap_cursor_select *sel);

/* The HIGHESTMODSEQ a chunk stores with its cursor: the pass's (its SELECT's) only with the
 * chunk that completes the folder — only then is every message below it stored — and until
 * then the one stored before the pass (0 on a reset pass). */
int64_t imap_cursor_modseq_after(bool complete, uint64_t pass_modseq, int64_t kept);

/* The UID SEARCH criteria of a decision: "UID n:*", "SINCE 1-Jan-2026" or "ALL" (since 0). */
void imap_cursor_criteria(const struct imap_cursor_decision *d, int64_t since, char *out,
                          size_t size);

/* Whether SEARCH SINCE <since's UTC day> finds a message whose INTERNALDATE is `internaldate`
 * ("17-Jul-1996 02:44:25 -0700", the day possibly space-padded): its day as written (RFC 3501
 * §6.4.4: time and zone disregarded) is that day or later. true for a date that cannot be read
 * (nothing is dropped on a guess) and for since 0. A full pass whose folder's oldest message is
 * covered fetches every UID (UID SEARCH ALL) and drops the few older ones by this test instead of
 * a SEARCH SINCE, which costs the server a look at every message (Dovecot: ~1 s for 100,000)
 * while the client waits. Pure. */
bool imap_cursor_since_covers(int64_t since, const char *internaldate);

/* Drops the UIDs below `from_uid` from an ascending list (a server answers "UID n:*" with the
 * highest UID even when it is below n), in place; the new count. */
size_t imap_cursor_filter(uint32_t *uids, size_t count, uint32_t from_uid);

/* The cursor once every wanted UID up to `done_uid` is stored: past `done_uid`, and once the
 * folder is done (`complete`) past everything below UIDNEXT too — nothing under it is wanted. */
uint32_t imap_cursor_after(uint32_t done_uid, bool complete, uint32_t uidnext);

#endif
