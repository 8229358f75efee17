/* Retention (DESIGN.md §1 Message records, Message): message records older than
 * record_retention_days and the bodies of final outbox messages older than outbox_retention_days
 * are purged hourly, and once a minute after the start, in the background; metadata and
 * activities stay.
 *
 * Ownership: the retention timer borrows the loop and the store; retention_free() stops it (a
 * purge job already queued finishes first and is then freed by its completion). */
#ifndef MT_ENGINE_RETENTION_H
#define MT_ENGINE_RETENTION_H

#include <stdint.h>

struct event_base;
struct store;
struct retention;

struct retention *retention_start(struct event_base *base, struct store *store, int64_t record_days,
                                  int64_t outbox_days);
void retention_free(struct retention **retention);

#endif
