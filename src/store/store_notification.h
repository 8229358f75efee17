/* Notifications to users (DESIGN.md §1 Notification): what GET /v1/notifications lists, newest
 * first. Deciding when one is due is the engine's (engine/notify.h): it adds one inside the
 * transaction that changed the account's state, so that an incident is noticed once whichever
 * node saw it. Operations run inside a store job (store.h).
 *
 * Ownership: the caller owns the structs it passes in and out; a list is malloc'd and freed
 * with store_notification_list_free(). */
#ifndef MT_STORE_STORE_NOTIFICATION_H
#define MT_STORE_STORE_NOTIFICATION_H

#include "lib/limits.h"
#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

/* Stored as their names. */
enum store_notification_kind {
	STORE_NOTIFY_SMTP_DISCONNECTED,
	STORE_NOTIFY_IMAP_DISCONNECTED,
	STORE_NOTIFY_OAUTH_REVOKED,
};
const char *store_notification_kind_name(enum store_notification_kind kind);

struct store_notification {
	char id[MT_ID_MAX]; /* ntf_…, ordered by creation time */
	char org_id[MT_ID_MAX];
	char user_id[MT_ID_MAX];
	enum store_notification_kind kind;
	char text[MT_NOTIFICATION_TEXT_MAX + 1];
	int64_t created_at;
};

/* Adds a notification; fills id and created_at. */
int store_notification_add(struct store_tx *tx, struct store_notification *notification);

struct store_notification_list {
	struct store_notification *items; /* malloc'd */
	size_t count;
	char next_cursor[MT_CURSOR_MAX]; /* "" on the last page */
};
void store_notification_list_free(struct store_notification_list *list);
/* At most `limit` of the user's notifications, newest first, older than `cursor` (a
 * next_cursor; "" for the newest). STORE_INVALID for a cursor no page gave. */
int store_notification_list(struct store_tx *tx, const char *org_id, const char *user_id,
                            const char *cursor, size_t limit,
                            struct store_notification_list *list_r);

#endif
