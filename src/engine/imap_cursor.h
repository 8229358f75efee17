/* The pure decisions of IMAP sync about one folder (engine/imap_sync.h): what a SELECT means for
 * the stored cursor, which UIDs to ask for, and where the cursor stands afterwards. No I/O. */
#ifndef MT_ENGINE_IMAP_CURSOR_H
#define MT_ENGINE_IMAP_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum imap_cursor_action {
	IMAP_CURSOR_NOTHING,     /* no UID past the cursor can exist (UIDNEXT says so) */
	IMAP_CURSOR_INCREMENTAL, /* UID last_uid+1:* */
	IMAP_CURSOR_FULL,        /* first sync, or UIDVALIDITY changed: everything since `since` */
};

struct imap_cursor_decision {
	enum imap_cursor_action action;
	uint32_t from_uid; /* the lowest UID wanted */
	bool reset;        /* the stored cursor is void (UIDVALIDITY changed or none yet) */
};

/* The stored cursor (uidvalidity 0: never synced) against a SELECT's answer. */
struct imap_cursor_decision imap_cursor_decide(int64_t stored_uidvalidity, int64_t stored_last_uid,
                                               uint32_t uidvalidity, uint32_t uidnext);

/* The UID SEARCH criteria of a decision: "UID n:*", "SINCE 1-Jan-2026" or "ALL" (since 0). */
void imap_cursor_criteria(const struct imap_cursor_decision *d, int64_t since, char *out,
                          size_t size);

/* Drops the UIDs below `from_uid` from an ascending list (a server answers "UID n:*" with the
 * highest UID even when it is below n), in place; the new count. */
size_t imap_cursor_filter(uint32_t *uids, size_t count, uint32_t from_uid);

/* The cursor once every wanted UID up to `done_uid` is stored: past `done_uid`, and once the
 * folder is done (`complete`) past everything below UIDNEXT too — nothing under it is wanted. */
uint32_t imap_cursor_after(uint32_t done_uid, bool complete, uint32_t uidnext);

#endif
