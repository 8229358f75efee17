/* Activities (DESIGN.md §1): (profile, message record) pairs — exactly one per profile and
 * message — whose content comes from the record (store_message.h). Every change to an activity
 * (created, content replaced by a stronger source, a user added) gives it a new feed sequence
 * number, assigned in commit order; so does its removal (its profile erased, a duplicate
 * dropped when two records of one message merge), which leaves a tombstone in the feed, written
 * in the removing transaction. Operations run inside a store job (store.h).
 *
 * Ownership: the caller owns the structs it passes in; a store_activity_list's items and their
 * JSON texts are allocated by the store and freed with store_activity_list_free(). */
#ifndef MT_STORE_STORE_ACTIVITY_H
#define MT_STORE_STORE_ACTIVITY_H

#include "lib/limits.h"
#include "store/store.h"
#include "store/store_message.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Creates the activity (profile, key) if missing; *created_r tells which. */
int store_activity_ensure(struct store_tx *tx, const char *org_id, const char *profile_id,
                          const char *key, bool *created_r);
/* store_activity_ensure for the profiles of one message at once (one feed reservation):
 * *created_r counts the new activities; a profile that is not the org's gets none. */
int store_activities_ensure(struct store_tx *tx, const char *org_id,
                            const char (*profile_ids)[MT_ID_MAX], size_t count, const char *key,
                            size_t *created_r);
/* The matcher's step, right after store_message_put wrote record number `record` dated `date`:
 * every profile of the org having one of `addresses` gets its activity
 * (store_profiles_by_address and store_activities_ensure in one pass). *profiles_r counts the
 * distinct profiles found, *created_r the new activities; found_r (NULL, or `count` entries)
 * tells which addresses belong to a profile. */
int store_activities_for_addresses(struct store_tx *tx, const char *org_id, int64_t record,
                                   int64_t date, const char *const *addresses, size_t count,
                                   size_t *profiles_r, size_t *created_r, bool *found_r);
/* Gives every activity of record number `record` (the org's) a new feed position (its content
 * or users changed). */
int store_activities_touch(struct store_tx *tx, const char *org_id, int64_t record);
struct store_activity {
	char id[MT_ID_MAX];
	char profile_id[MT_ID_MAX];
	enum store_activity_type type;
	enum store_source source;
	char key[MT_MESSAGE_KEY_MAX];
	char message_id[MT_MESSAGE_ID_MAX + 1];
	char subject[MT_SUBJECT_MAX + 1];
	int64_t date;
	char from_address[MT_ADDRESS_MAX + 1];
	char from_name[MT_NAME_MAX + 1];
	char *to_json;          /* [{"address","name"}], malloc'd */
	char *cc_json;          /* same */
	char *attachments_json; /* [{"name","type","size"}] */
	char *users_json;       /* [{"id","email"}] */
	char snippet[MT_SNIPPET_BYTES + 1];
	char outbox_id[MT_ID_MAX];               /* "" unless we sent it */
	char in_reply_to[MT_MESSAGE_ID_MAX + 1]; /* "" if none */
	char thread_id[MT_ID_MAX];               /* "" on a record older than threads */
	int64_t seq;                             /* feed position */
	int64_t created_at, updated_at;
	/* A tombstone (the feed only): id, profile_id, seq, reason; updated_at is when the
	 * activity went; the content fields are empty and the JSON texts NULL. */
	bool deleted;
	char reason[MT_TOMBSTONE_REASON_MAX];
};

struct store_activity_list {
	struct store_activity *items;
	size_t count;
	char next_cursor[64]; /* "" when there is no next page (profile timelines) */
};
void store_activity_list_free(struct store_activity_list *list);

/* A profile's timeline, newest first (by message date, then id); cursor from the previous
 * page; only the activities of thread `thread_id` unless it is NULL or "". STORE_NOT_FOUND
 * when the profile is not the org's, STORE_INVALID when the cursor is not one this function
 * made. */
int store_profile_activities(struct store_tx *tx, const char *org_id, const char *profile_id,
                             const char *thread_id, const char *cursor, size_t limit,
                             struct store_activity_list *list_r);
/* The org's feed: activities and tombstones whose seq > since, in seq order; next_cursor is
 * always set (the last seq returned, or `since` when the page is empty). */
int store_activity_feed(struct store_tx *tx, const char *org_id, int64_t since, size_t limit,
                        struct store_activity_list *list_r);
/* Deletes the tombstones (of every org) made before `before` (unix seconds): the retention
 * job's, after record_retention_days. *deleted_r counts them. */
int store_tombstones_purge(struct store_tx *tx, int64_t before, size_t *deleted_r);
/* The activities of one message (the add-in's answer). */
int store_message_activities(struct store_tx *tx, const char *org_id, const char *key,
                             struct store_activity_list *list_r);

#endif
