/* What the store's other files use of the message records (ops_message*.c): the names their
 * enums are stored as, a record found by its key, and erasure. Not for callers outside
 * src/store. Ownership: nothing here keeps a pointer it is given. */
#ifndef MT_STORE_MESSAGE_INTERNAL_H
#define MT_STORE_MESSAGE_INTERNAL_H

#include "store/store_internal.h"
#include "store/store_message.h"

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

/* Deletes a message record with its aliases, participants and users (not its activities);
 * nothing when there is no such record. */
int store_record_erase(struct store_tx *tx, const char *op, const char *org_id, int64_t record);
/* Erases the records having `address` as a participant that no activity uses (the erased
 * person's mail that no other profile keeps). */
int store_records_erase_orphans(struct store_tx *tx, const char *op, const char *org_id,
                                const char *address);

#endif
