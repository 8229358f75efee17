/* Retention (DESIGN.md §1 Message records, Message): message records older than
 * record_retention_days (those no activity uses), the feed's tombstones older than
 * record_retention_days and the bodies of final outbox messages older than
 * outbox_retention_days are purged hourly in the background, the first time `first_s` after the
 * start (RETENTION_FIRST_S; the tests shorten it). Metadata and activities stay, so the purge
 * itself leaves no tombstone: nothing a CRM mirrors goes.
 *
 * Ownership: the retention timer borrows the loop and the store; retention_free() stops it (a
 * purge job already queued finishes first and is then freed by its completion). */
#ifndef MT_ENGINE_RETENTION_H
#define MT_ENGINE_RETENTION_H

#include <stdint.h>

struct event_base;
struct store;
struct retention;

#define RETENTION_FIRST_S 60

struct retention *retention_start(struct event_base *base, struct store *store, int64_t record_days,
                                  int64_t outbox_days, int first_s);
void retention_free(struct retention **retention);

#endif
