/* The activity rules (DESIGN.md §1 Activity, Message records, Never-log list): which messages
 * are logged, in which direction, on which profiles. Every source (outbox, IMAP, BCC dropbox,
 * add-in) hands its messages here, so the answer is the same whichever mailbox saw a message.
 *
 * The functions run inside a store job (on the store thread) and do all their work in the
 * caller's transaction: a job that fails rolls the whole message back.
 *
 * Ownership: the caller owns every struct passed in; matcher_message_from_summary() allocates
 * the mailbox and attachment arrays of the store_message it fills, and matcher_message_prepare()
 * its columns, all released with matcher_message_free(). */
#ifndef MT_ENGINE_MATCHER_H
#define MT_ENGINE_MATCHER_H

#include "lib/limits.h"
#include "store/store.h"
#include "store/store_message.h"

#include <stdbool.h>
#include <stddef.h>

struct mime_summary;

enum matcher_outcome {
	MATCHER_LOGGED,          /* the record is stored (profiles_matched may still be 0) */
	MATCHER_NEVER_LOG,       /* a participant is on an applicable never-log list */
	MATCHER_INTERNAL_ONLY,   /* every participant is in the org's domains */
	MATCHER_NO_PARTICIPANTS, /* no From and no recipients */
};

struct matcher_result {
	enum matcher_outcome outcome;
	char key[MT_MESSAGE_KEY_MAX]; /* the record's canonical key ("" unless LOGGED) */
	enum store_activity_type type;
	size_t profiles_matched;   /* distinct profiles among the participants */
	size_t activities_created; /* of which got a new activity now */
};

/* Logs one message seen by `user_id` (NULL when no user's mailbox is involved) through
 * `source`:
 * (1) no From and no recipients: NO_PARTICIPANTS;
 * (2) a participant (From, To, Cc, Bcc) on the org's never-log list or on this user's: NEVER_LOG,
 *     nothing stored; an entry is an address (exact) or a domain covering its subdomains;
 * (3) every participant in the org's domains (or their subdomains): INTERNAL_ONLY, nothing
 *     stored;
 * (4) direction: From an address of any user of the org (active or not): EMAIL_SENT, else
 *     EMAIL_RECEIVED;
 * (5) the record, found by any alias: created, or given the new aliases and participants (and
 *     the content when `source` is more trusted); the user is added to it;
 * (6) every profile having a participant address gets its activity; when the content was
 *     replaced or the user is new, the message's existing activities move in the feed.
 * 0 with *result_r, STORE_NOT_FOUND when the org does not exist, -1 on a store error. */
int matcher_log_message(struct store_tx *tx, const char *org_id, const char *user_id,
                        enum store_source source, const struct store_message *msg,
                        struct matcher_result *result_r);

/* matcher_log_message() for several messages seen by one user through one source (an IMAP
 * chunk, a batch of sent mail): the org's domains and never-log lists are read once. Stops at
 * the first error (-1 or STORE_NOT_FOUND); results_r[i] is filled for each message done. */
int matcher_log_messages(struct store_tx *tx, const char *org_id, const char *user_id,
                         enum store_source source, const struct store_message *const *msgs,
                         size_t count, struct matcher_result *results_r);

/* Backfill for a new profile or new addresses: the stored records having one of the profile's
 * addresses as a participant (newest first, at most MT_BACKFILL_RECORDS_MAX per address) get an
 * activity on it, unless a participant is now on the org's never-log list. *created_r counts
 * the new activities. STORE_NOT_FOUND when the profile is not the org's. */
int matcher_backfill_profile(struct store_tx *tx, const char *org_id, const char *profile_id,
                             size_t *created_r);

/* Records of one address a backfill looks at (newest first): an address in more mail than this
 * within record_retention_days is a list or a robot, not a person. Belongs in limits.h. */

/* Sets msg->thread_root to SHA-256(root), or to none (all zero) for "": root is
 * mime_thread_root() of the message. Pure. */
void matcher_set_thread_root(struct store_message *msg, const char *root);
/* A message's thread id (docs/api.md "Threads"): "thr_" and the first 100 bits of
 * SHA-256(org_id NUL SHA-256(root)) in base32 (20 characters), where root is the one
 * msg->thread_root was set from, or the message's first alias when it has none (no Message-ID:
 * a thread of its own). One org's ids tell nothing about another's. Pure. */
void matcher_thread_id(const char *org_id, const struct store_message *msg, char out[MT_ID_MAX]);
/* Whether `text` has the shape matcher_thread_id() gives. */
bool matcher_thread_id_valid(const char *text);

/* Converts a parsed message to the store's form: aliases, identity, participants, content.
 * 0, or -1 when memory runs out (nothing to free then). */
int matcher_message_from_summary(const struct mime_summary *summary, struct store_message *msg_r);
/* Does ahead, on the caller's thread, what logging the message would otherwise do on the store's
 * single writer thread: its JSON columns (store_message_columns_build()), and the digest of its
 * first alias as its thread root when it has none (the same thread id, one hash fewer). For a
 * message from matcher_message_from_summary() whose lists no longer change. 0, or -1 when
 * memory runs out (the message can still be logged as it is). */
int matcher_message_prepare(struct store_message *msg);
void matcher_message_free(struct store_message *msg);

#endif
