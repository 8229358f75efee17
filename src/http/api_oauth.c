/* GET /v1/oauth/start: the provider's authorisation URL for the user's browser; GET
 * /oauth/callback: where the provider sends the browser back — a page saying what happened
 * (engine/oauth_flow.h does the work). */
#include "http/api.h"

#include "engine/oauth_flow.h"

#include <stdio.h>
#include <string.h>

static void started(void *ctx, const struct oauth_start_result *r)
{
	struct http_request *req = ctx;
	if (api_reply_outcome(req, &r->outcome, "user"))
		return;
	http_reply_json(req, 200, json_pack("{s:s}", "url", r->url));
}

void api_oauth_start(struct http_request *req, void *app)
{
	struct api *api = app;
	const struct http_auth *auth = http_request_auth(req);
	oauth_flow_start(api->oauth_flows, auth->org_id, auth->user_id,
	                 http_request_query(req, "provider"), http_request_query(req, "for"),
	                 started, req);
}

static void finished(void *ctx, const struct oauth_finish_result *r)
{
	struct http_request *req = ctx;
	char reason[2 * MT_ERROR_TEXT_MAX];
	char detail[2 * MT_ERROR_TEXT_MAX];
	char body[6 * MT_ERROR_TEXT_MAX];
	api_html_escape(r->outcome.reason, reason, sizeof(reason));
	api_html_escape(r->detail, detail, sizeof(detail));
	switch (r->outcome.verdict) {
	case CRUD_OK:
		snprintf(body, sizeof(body),
		         "<p>Signed in with %s for %s%s%s.</p><p>%s</p>"
		         "<p>You can close this window.</p>",
		         strcmp(r->provider, "microsoft") == 0 ? "Microsoft" : "Google",
		         r->purposes & OAUTH_FOR_SMTP ? "sending" : "",
		         (r->purposes & OAUTH_FOR_SMTP) && (r->purposes & OAUTH_FOR_IMAP) ? " and "
		                                                                          : "",
		         r->purposes & OAUTH_FOR_IMAP ? "syncing" : "", detail);
		api_reply_page(req, 200, "Connected", body);
		return;
	case CRUD_BUSY:
		api_reply_page(req, 503, "Try again",
		               "<p>We are busy; please start the sign-in again in a moment.</p>");
		return;
	case CRUD_FAILED:
		api_reply_page(req, 500, "Something went wrong",
		               "<p>The sign-in could not be completed; please start it again.</p>");
		return;
	default:
		snprintf(body, sizeof(body), "<p>%s</p>%s%s%s", reason, detail[0] ? "<p>" : "",
		         detail, detail[0] ? "</p>" : "");
		api_reply_page(req, r->outcome.verdict == CRUD_REFUSED ? 409 : 400, "Not connected",
		               body);
		return;
	}
}

void api_oauth_callback(struct http_request *req, void *app)
{
	struct api *api = app;
	oauth_flow_finish(api->oauth_flows, http_request_query(req, "state"),
	                  http_request_query(req, "code"), http_request_query(req, "error"),
	                  http_request_query(req, "error_description"), finished, req);
}
