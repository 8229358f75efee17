#include "engine/imap_cursor.h"

#include "lib/str.h"

#include <stdio.h>
#include <strings.h>
#include <time.h>

struct imap_cursor_decision imap_cursor_decide(const struct imap_cursor_state *stored,
                                               const struct imap_cursor_select *sel)
{
	struct imap_cursor_decision d = {.action = IMAP_CURSOR_FULL, .from_uid = 1, .reset = true};
	if (stored->uidvalidity <= 0 || (uint32_t)stored->uidvalidity != sel->uidvalidity ||
	    stored->last_uid < 0 || stored->last_uid >= UINT32_MAX)
		return d;
	d.reset = false;
	d.from_uid = (uint32_t)stored->last_uid + 1;
	/* UIDNEXT is a promise that no UID at or above it exists yet; 0 when not sent. */
	if (sel->uidnext != 0 && sel->uidnext <= d.from_uid)
		d.action = IMAP_CURSOR_NOTHING;
	/* Without UIDNEXT, RFC 7162 §3.1: a message added gets a mod-sequence above the mailbox's
	 * HIGHESTMODSEQ then; the stored value is the one of the SELECT of the pass that completed
	 * the folder up to last_uid. A UIDNEXT that was sent is trusted over it. */
	else if (sel->uidnext == 0 && sel->highestmodseq != 0 && stored->highestmodseq > 0 &&
	         sel->highestmodseq == (uint64_t)stored->highestmodseq)
		d.action = IMAP_CURSOR_NOTHING;
	else
		d.action = IMAP_CURSOR_INCREMENTAL;
	return d;
}

bool imap_cursor_maybe_new(const struct imap_cursor_state *stored,
                           const struct imap_cursor_select *sel)
{
	if (stored->uidvalidity <= 0 || (uint32_t)stored->uidvalidity != sel->uidvalidity)
		return true;
	if (sel->uidnext != 0)
		return (int64_t)sel->uidnext > stored->last_uid + 1;
	return sel->highestmodseq != 0 && sel->highestmodseq != (uint64_t)stored->highestmodseq;
}

int64_t imap_cursor_modseq_after(bool complete, uint64_t pass_modseq, int64_t kept)
{
	if (complete)
		return pass_modseq <= INT64_MAX ? (int64_t)pass_modseq : 0;
	return kept;
}

void imap_cursor_criteria(const struct imap_cursor_decision *d, int64_t since, char *out,
                          size_t size)
{
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
	snprintf(out, size, "SINCE %d-%s-%d", tm.tm_mday, mt_month_names[tm.tm_mon],
	         tm.tm_year + 1900);
}

bool imap_cursor_since_covers(int64_t since, const char *internaldate)
{
	if (since <= 0 || internaldate == NULL)
		return true;
	unsigned day = 0, year = 0;
	char month[4] = {0};
	int used = 0;
	if (sscanf(internaldate, " %2u-%3c-%4u%n", &day, month, &year, &used) != 3 || used == 0 ||
	    day < 1 || day > 31)
		return true;
	unsigned mon = 0;
	for (unsigned i = 0; i < 12 && mon == 0; i++)
		if (strncasecmp(mt_month_names[i], month, 3) == 0)
			mon = i + 1;
	if (mon == 0)
		return true;
	time_t t = (time_t)since;
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL)
		return true;
	unsigned long have = (unsigned long)year * 10000 + mon * 100 + day;
	unsigned long want = (unsigned long)(tm.tm_year + 1900) * 10000 +
	                     (unsigned long)(tm.tm_mon + 1) * 100 + (unsigned long)tm.tm_mday;
	return have >= want;
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
