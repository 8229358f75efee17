/* What the message record files (ops_message.c, ops_message_participants.c) share, and what
 * the store's other files use of them: the names their enums are stored as, a record found by
 * its key, the participant index, erasure. Not for callers outside src/store. Ownership:
 * nothing here keeps a pointer it is given; a store_part_list borrows its addresses. */
#ifndef MT_STORE_MESSAGE_INTERNAL_H
#define MT_STORE_MESSAGE_INTERNAL_H

#include "store/store_internal.h"
#include "store/store_message.h"

#include "lib/limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The stored names of enum store_source (index 0 is no source: NULL) and enum
 * store_activity_type. */
extern const char *const store_source_names[STORE_SOURCE_OUTBOX + 1];
extern const char *const store_type_names[STORE_EMAIL_RECEIVED + 1];

/* A record as other rows point to it: its number, its content's source and its date (which
 * its activities copy). */
struct store_record_ref {
	int64_t rid;
	enum store_source source;
	int64_t date;
};
/* The record with this key in the org; STORE_NOT_FOUND when none. */
int store_record_find(struct store_tx *tx, const char *op, const char *org_id, const char *key,
                      struct store_record_ref *ref_r);

/* ---- the participant index (ops_message_participants.c) ---- */

/* The addresses a message adds to the index: From, To, Cc, Bcc, each once. The index is
 * capped; a message beyond it (a huge Cc list) is still logged for the profiles matched now,
 * only a later backfill may miss its tail. */
struct store_part_list {
	const char *addr[MT_MESSAGE_PARTICIPANTS_MAX];
	size_t count;
};
/* A message's list; the addresses point into `msg`. */
void store_parts_collect(const struct store_message *msg, struct store_part_list *l);
/* The list as a participants column (one address a line, malloc'd; NULL when empty): for a
 * record whose content cannot tell its participants. 0, or -1 when out of memory. */
int store_parts_text(const struct store_part_list *l, char **text_r);
/* The index rows of a record just created with `l` as its content. */
int store_parts_put_new(struct store_tx *tx, const char *op, const char *org_id, int64_t rid,
                        const struct store_part_list *l);
/* Adds addresses to the index rows of record `rid` (existing) and its column. */
int store_parts_add(struct store_tx *tx, const char *op, const char *org_id, int64_t rid,
                    const char *const *addresses, size_t count);
/* Before new content (the message's, `now`) replaces a record's: the old content's participants
 * that the new does not list go into the column, and the new content's own when it cannot hold
 * them (`lossy`), so that content and column still list every index row. */
int store_parts_keep_old(struct store_tx *tx, const char *op, int64_t rid,
                         const struct store_part_list *now, bool lossy);
/* Gives record `to` every participant of record `from` (a merge); STORE_NOT_FOUND without
 * `from`. */
int store_parts_move(struct store_tx *tx, const char *op, const char *org_id, int64_t from,
                     int64_t to);

/* Deletes a message record with its aliases, participants and users (not its activities);
 * nothing when there is no such record. */
int store_record_erase(struct store_tx *tx, const char *op, const char *org_id, int64_t record);
/* Erases the records having `address` as a participant that no activity uses (the erased
 * person's mail that no other profile keeps). */
int store_records_erase_orphans(struct store_tx *tx, const char *op, const char *org_id,
                                const char *address);

#endif
