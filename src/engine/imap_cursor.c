#include "engine/imap_cursor.h"

#include <stdio.h>
#include <time.h>

struct imap_cursor_decision imap_cursor_decide(int64_t stored_uidvalidity, int64_t stored_last_uid,
                                               uint32_t uidvalidity, uint32_t uidnext)
{
	struct imap_cursor_decision d = {.action = IMAP_CURSOR_FULL, .from_uid = 1, .reset = true};
	if (stored_uidvalidity <= 0 || (uint32_t)stored_uidvalidity != uidvalidity ||
	    stored_last_uid < 0 || stored_last_uid >= UINT32_MAX)
		return d;
	d.reset = false;
	d.from_uid = (uint32_t)stored_last_uid + 1;
	/* UIDNEXT is a promise that no UID at or above it exists yet; 0 when not sent. */
	d.action =
	    uidnext != 0 && uidnext <= d.from_uid ? IMAP_CURSOR_NOTHING : IMAP_CURSOR_INCREMENTAL;
	return d;
}

void imap_cursor_criteria(const struct imap_cursor_decision *d, int64_t since, char *out,
                          size_t size)
{
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	if (d->action != IMAP_CURSOR_FULL) {
		snprintf(out, size, "UID %u:*", (unsigned)d->from_uid);
		return;
	}
	if (since <= 0) {
		snprintf(out, size, "ALL");
		return;
	}
	time_t t = (time_t)since;
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(out, size, "SINCE %d-%s-%d", tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900);
}

size_t imap_cursor_filter(uint32_t *uids, size_t count, uint32_t from_uid)
{
	size_t n = 0;
	for (size_t i = 0; i < count; i++)
		if (uids[i] >= from_uid && (n == 0 || uids[i] > uids[n - 1]))
			uids[n++] = uids[i];
	return n;
}

uint32_t imap_cursor_after(uint32_t done_uid, bool complete, uint32_t uidnext)
{
	if (complete && uidnext > 1 && uidnext - 1 > done_uid)
		return uidnext - 1;
	return done_uid;
}
