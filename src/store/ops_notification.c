/* Notifications to users: added by the engine inside the transaction that decided them, listed
 * newest first by their time-ordered ids. */
#include "store/store_notification.h"
#include "store/sql.h"
#include "store/store_webhook.h"

#include <jansson.h>
#include "store/store.h"
#include "store/store_internal.h"
#include "lib/str.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {
    [STORE_NOTIFY_SMTP_DISCONNECTED] = "smtp_disconnected",
    [STORE_NOTIFY_IMAP_DISCONNECTED] = "imap_disconnected",
    [STORE_NOTIFY_OAUTH_REVOKED] = "oauth_revoked",
};
#define KIND_COUNT (sizeof(kind_names) / sizeof(kind_names[0]))

const char *store_notification_kind_name(enum store_notification_kind kind)
{
	return sql_name(kind_names, KIND_COUNT, kind, STORE_NOTIFY_SMTP_DISCONNECTED);
}

#define NOTIFICATION_ROW(F, G, T)                                                                  \
	F(T, TEXT, "id", id)                                                                       \
	G(T, TEXT, "org_id", org_id)                                                               \
	G(T, TEXT, "user_id", user_id)                                                             \
	G(T, NAME, "kind", kind, kind_names, STORE_NOTIFY_SMTP_DISCONNECTED)                       \
	G(T, TEXT, "text", text)                                                                   \
	G(T, INT64, "created_at", created_at)
SQL_TABLE(notification_table, NOTIFICATION_ROW, struct store_notification);

int store_notification_add(struct store_tx *tx, struct store_notification *n)
{
	static const char op[] = "store_notification_add";
	if ((unsigned)n->kind >= KIND_COUNT)
		return store_invalid(op, "unknown notification kind");
	int rc = store_write_for_user(tx, op, n->org_id, n->user_id);
	if (rc != 0)
		return rc;
	/* Ordered ids: the list pages by id, newest first, without a second sort key. */
	store_new_ordered_id("ntf", n->id);
	n->created_at = mt_wall_s();
	rc = sql_insert(tx, op,
	                "INSERT INTO notifications (id, org_id, user_id, kind, text, created_at)"
	                " VALUES (?, ?, ?, ?, ?, ?)",
	                SQL_ARGS(SQL_TEXT(n->id), SQL_TEXT(n->org_id), SQL_TEXT(n->user_id),
	                         SQL_TEXT(kind_names[n->kind]), SQL_TEXT(n->text),
	                         SQL_INT(n->created_at)));
	if (rc != 0)
		return rc;
	json_t *data = json_pack("{s:s,s:s,s:s,s:s}", "id", n->id, "user_id", n->user_id, "kind",
	                         kind_names[n->kind], "text", n->text);
	char *text = data != NULL ? json_dumps(data, JSON_COMPACT) : NULL;
	json_decref(data);
	if (text == NULL)
		return store_invalid(op, "webhook payload");
	rc = store_webhook_event_add(tx, n->org_id, "notification", n->id, text);
	free(text);
	return rc;
}

static const struct store_page_query notification_page = {
    "SELECT " SQL_COLUMNS(NOTIFICATION_ROW) " FROM notifications"
                                            " WHERE user_id = ? AND org_id = ? AND id < ?"
                                            " ORDER BY id DESC LIMIT ?",
    &notification_table, offsetof(struct store_notification, id), "ntf_", true};

int store_notification_list(struct store_tx *tx, const char *org_id, const char *user_id,
                            const char *cursor, size_t limit,
                            struct store_notification_list *list_r)
{
	return STORE_PAGE_READ(tx, "store_notification_list", &notification_page,
	                       SQL_ARGS(SQL_TEXT(user_id), SQL_TEXT(org_id)), cursor, limit,
	                       list_r);
}

void store_notification_list_free(struct store_notification_list *list)
{
	STORE_PAGE_FREE(list);
}
