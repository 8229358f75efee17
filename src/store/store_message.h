/* Message records (DESIGN.md §1): the compact form of one message seen by any source, kept for
 * record_retention_days so that a profile created later gets its mail (backfill). A record is
 * found by its aliases ("mid:<Message-ID>", "mt:<X-Mailtrail-Id>", "sha:<digest>"): every alias
 * of a message points to one canonical key, so our own message is one record whether a copy
 * shows its Message-ID, its X-Mailtrail-Id or both. Its activities are in store_activity.h.
 * Operations run inside a store job (store.h).
 *
 * Ownership: the caller owns the structs it passes in and out; a store_message's arrays and its
 * columns are borrowed from the caller; only store_message_columns_build() allocates (the texts
 * of the struct it fills, freed by store_message_columns_free()). */
#ifndef MT_STORE_STORE_MESSAGE_H
#define MT_STORE_STORE_MESSAGE_H

#include "lib/limits.h"
#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum store_source {
	STORE_SOURCE_ADDIN = 1, /* trust grows with the value: outbox > imap > bcc > addin */
	STORE_SOURCE_BCC = 2,
	STORE_SOURCE_IMAP = 3,
	STORE_SOURCE_OUTBOX = 4,
};
const char *store_source_name(enum store_source source); /* "addin", "bcc", "imap", "outbox" */
/* The source of a name store_source_name() gives; 0 (no source) for anything else. */
enum store_source store_source_parse(const char *name);

enum store_activity_type { STORE_EMAIL_SENT, STORE_EMAIL_RECEIVED };

#define STORE_THREAD_ROOT_BYTES 32 /* SHA-256 */

struct store_mailbox {
	char address[MT_ADDRESS_MAX + 1]; /* normalised */
	char name[MT_NAME_MAX + 1];
};

struct store_attachment {
	char name[MT_ATTACHMENT_NAME_MAX + 1];
	char type[MT_CONTENT_TYPE_MAX + 1];
	int64_t size;
};

/* A record's JSON content columns, as a write stores them: to, cc, bcc and attachments. */
struct store_message_columns {
	char *to, *cc, *bcc, *attachments;
	bool lossy; /* an address is not in to/cc/bcc as it is: the participants column lists all */
};

/* A message as the matcher hands it to the store. Arrays are borrowed from the caller. */
struct store_message {
	char aliases[MT_MESSAGE_ALIASES_MAX][MT_MESSAGE_KEY_MAX];
	size_t alias_count;
	char message_id[MT_MESSAGE_ID_MAX + 1];
	int64_t date;
	struct store_mailbox from;
	const struct store_mailbox *to, *cc, *bcc;
	size_t to_count, cc_count, bcc_count;
	char subject[MT_SUBJECT_MAX + 1];
	char snippet[MT_SNIPPET_BYTES + 1];
	const struct store_attachment *attachments;
	size_t attachment_count;
	/* Conversations (docs/api.md "Threads"). The root is kept as its digest: an IMAP chunk
	 * holds MT_IMAP_SYNC_CHUNK of these messages, and a root may be 998 bytes. */
	char outbox_id[MT_ID_MAX];               /* our "msg_..." when we sent it; "" otherwise */
	char in_reply_to[MT_MESSAGE_ID_MAX + 1]; /* normalised like message_id; "" if none */
	unsigned char thread_root[STORE_THREAD_ROOT_BYTES]; /* matcher_set_thread_root(); all
	                                                       zero: none (the first alias) */
	/* store_message_columns_build() of this message's to/cc/bcc/attachments, built before the
	 * write (which then only binds them): NULL, the write builds them. The lists must not
	 * change once they are built. */
	const struct store_message_columns *columns;
};

/* Builds msg's JSON columns: no store access, so any thread. A caller logging many messages (IMAP
 * sync's workers) builds them ahead, sparing the store's single writer thread the encoding
 * (jansson: a few microseconds a message). 0, or -1 when out of memory (nothing to free). */
int store_message_columns_build(const struct store_message *msg,
                                struct store_message_columns *columns_r);
void store_message_columns_free(struct store_message_columns *columns);

/* Finds the canonical key of a message by any of its aliases; STORE_NOT_FOUND when none is
 * known. *source_r is the source of the record's current content. When the aliases lead to two
 * records (copies seen out of order: one by Message-ID, one by X-Mailtrail-Id), a write job
 * merges them into the one with the more trusted content: one message, one activity per
 * profile (numbered parameters ?N in its SQL). */
int store_message_lookup(struct store_tx *tx, const char *org_id, const struct store_message *msg,
                         char key_r[MT_MESSAGE_KEY_MAX], enum store_source *source_r);
/* Creates the record (key = its first alias) or, for an existing key, adds missing aliases and
 * participants and — when `source` is more trusted than the stored one — replaces the content.
 * `type` is stored with the record (the org-wide direction rule), `thread_id` too (the
 * matcher's, from msg->thread_root). An outbox id, once a record has one, stays whichever
 * source comes later; in_reply_to and thread_id go with the content (a stronger copy without
 * them keeps the stored ones), and fill a record that has none (one stored before they
 * existed). *content_replaced_r tells
 * whether an existing record's content changed; *date_r is the record's date afterwards (its
 * activities copy it); *record_r its number, which the calls below take (valid within the
 * transaction; a number never leaves the store). */
int store_message_put(struct store_tx *tx, const char *org_id, const char *key,
                      enum store_source source, enum store_activity_type type,
                      const char *thread_id, const struct store_message *msg,
                      bool *content_replaced_r, int64_t *date_r, int64_t *record_r);
/* Records that `user_id` (one of the record's org) saw record `record`; *added_r false when it
 * already had. */
int store_message_add_user(struct store_tx *tx, int64_t record, const char *user_id, bool *added_r);
/* The canonical keys of records having this participant address (for backfill), newest first,
 * up to `max`; *count_r is how many were filled. */
int store_message_keys_by_address(struct store_tx *tx, const char *org_id, const char *address,
                                  char (*keys_r)[MT_MESSAGE_KEY_MAX], size_t max, size_t *count_r);
/* The participant addresses (From, To, Cc, Bcc) of a record in address order, up to `max`;
 * *count_r is how many were filled. An unknown key has none. */
int store_message_participants(struct store_tx *tx, const char *org_id, const char *key,
                               char (*addresses_r)[MT_ADDRESS_MAX + 1], size_t max,
                               size_t *count_r);
/* Deletes records last seen before `before` (unix seconds) that no activity uses — those kept
 * only for backfill — in every org (a maintenance job). A record with activities is their
 * content and stays with them. *deleted_r counts the records. */
int store_messages_purge(struct store_tx *tx, int64_t before, size_t *deleted_r);

#endif
