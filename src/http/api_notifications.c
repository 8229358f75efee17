/* GET /v1/notifications: the user's own notices, newest first (engine/notify.h reads them). */
#include "http/api.h"

#include "engine/notify.h"
#include "store/store_notification.h"

static void list_done(void *ctx, const struct notify_page *page)
{
	struct http_request *req = ctx;
	if (api_reply_outcome(req, &page->outcome, "notifications"))
		return;
	const struct store_notification_list *list = page->list;
	json_t *items = json_array();
	for (size_t i = 0; i < list->count; i++) {
		const struct store_notification *n = &list->items[i];
		json_array_append_new(items, json_pack("{s:s,s:s,s:o,s:o}", "id", n->id, "kind",
		                                       store_notification_kind_name(n->kind),
		                                       "text", api_text(n->text), "created_at",
		                                       api_time(n->created_at)));
	}
	http_reply_json(
	    req, 200,
	    json_pack("{s:o,s:o}", "notifications", items, "next_cursor",
	              list->next_cursor[0] ? json_string(list->next_cursor) : json_null()));
}

void api_notifications_list(struct http_request *req, void *app)
{
	struct api *api = app;
	size_t limit;
	const char *cursor;
	if (!api_list_params(req, &limit, &cursor))
		return;
	const struct http_auth *auth = http_request_auth(req);
	notify_list(api->store, auth->org_id, auth->user_id, cursor, limit, list_done, req);
}
