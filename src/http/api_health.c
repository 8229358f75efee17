/* GET /healthz (liveness) and GET /metrics (Prometheus text exposition). */
#include "http/api.h"

#include "lib/metrics.h"

#include <stdlib.h>
#include <string.h>

void api_healthz(struct http_request *req, void *app)
{
	(void)app;
	http_reply_json(req, 200, json_pack("{s:s,s:s}", "status", "ok", "version", MT_VERSION));
}

void api_metrics(struct http_request *req, void *app)
{
	(void)app;
	char *text = mt_metrics_render();
	if (text == NULL) {
		http_reply_error(req, 500, "internal", "out of memory", NULL, NULL);
		return;
	}
	http_reply_text(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
	free(text);
}
