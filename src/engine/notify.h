/* Notifications to users (DESIGN.md §1 Notification): a notice of a `kind` shown by
 * GET /v1/notifications and mailed to the user through the platform relay — the user's own
 * server may be the very problem. Once per incident, not once per failed attempt: the caller
 * records it inside the store transaction that changed the account's state (notify_record), so
 * that of several nodes seeing the same failure only the one whose change committed notices it.
 *
 * The mail is built before that transaction (notify_mail_build: GMime, off the store thread)
 * and stored with it, relay only; with no relay configured only the notice is recorded.
 *
 * Ownership: notify_record borrows its arguments; the list handed to `done` is valid during the
 * call only. */
#ifndef MT_ENGINE_NOTIFY_H
#define MT_ENGINE_NOTIFY_H

#include "engine/crud.h"
#include "engine/outbox.h"
#include "lib/failure.h"
#include "store/store_notification.h"
#include "store/store_org.h"
#include "store/store_smtp.h"
#include "store/store_user.h"

#include <stdbool.h>
#include <stddef.h>

struct store;
struct store_tx;

/* The text of an smtp_disconnected notice: the account (its address and host:port), the class
 * and the reason, what still works and how to reconnect. The reason is the server's reply or
 * our own words, never a secret (the client masks AUTH by protocol state). */
void notify_smtp_disconnected_text(const struct store_smtp_account *account,
                                   enum mt_failure_class cls, const char *reason, char *text,
                                   size_t size);

/* A notice's mail to the user, built without the route's fields (as the outbox stores mail):
 * *body_r malloc'd. 0, or -1 (out of memory, a name the builder refuses). */
int notify_mail_build(const struct store_user *user, const char *subject, const char *text,
                      char **body_r, size_t *len_r);

/* Inside a write job: records the notice and, when the relay can carry it, stores its mail
 * (`body`, from notify_mail_build; NULL: no mail) as a relay-only outbox message to the user.
 * *mailed_r whether it did. 0, or a store result. */
int notify_record(struct store_tx *tx, const struct store_org *org, const struct store_user *user,
                  const struct outbox_relay *relay, enum store_notification_kind kind,
                  const char *subject, const char *text, const char *body, size_t body_len,
                  bool *mailed_r);

/* Counts a recorded notice in mailtrail_notifications_total{kind} (after its commit). */
void notify_count(enum store_notification_kind kind);

struct notify_page {
	struct crud_outcome outcome;
	const struct store_notification_list *list; /* CRUD_OK */
};
typedef void notify_list_fn(void *ctx, const struct notify_page *page);
/* At most `limit` of the user's notifications, newest first, after `cursor` ("" or NULL: the
 * newest). CRUD_BAD_CURSOR for a cursor no page gave. `done` exactly once on the loop thread
 * (before returning when the store's queue is full). */
void notify_list(struct store *store, const char *org_id, const char *user_id, const char *cursor,
                 size_t limit, notify_list_fn *done, void *ctx);

#endif
