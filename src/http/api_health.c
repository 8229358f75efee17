/* GET /healthz (liveness) and GET /metrics (Prometheus text exposition). */
#include "http/api.h"

#include "lib/metrics.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

void api_healthz(struct http_request *req, void *app)
{
	(void)app;
	http_reply_json(req, 200, json_pack("{s:s,s:s}", "status", "ok", "version", MT_VERSION));
}

/* The store thread's counters, read when scraped: how well group commit is grouping. */
static void store_gauges(struct store *store)
{
	struct store_stats st;
	store_stats(store, &st);
	static const char help[] = "Store thread totals since start";
	const struct {
		const char *what;
		uint64_t value;
	} rows[] = {
	    {"jobs", st.jobs},
	    {"write_jobs", st.write_jobs},
	    {"commits", st.commits},
	    {"durable_commits", st.durable_commits},
	    {"failed_commits", st.failed_commits},
	    {"read_batches", st.read_batches},
	    {"max_batch", st.max_batch},
	    {"checkpoints", st.checkpoints},
	    {"replays", st.replays},
	    {"commit_ms", st.commit_us / 1000},
	    {"durable_commit_ms", st.durable_commit_us / 1000},
	    {"log_syncs", st.log_syncs},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		mt_metric_set_gauge("mailtrail_store", help, "what", rows[i].what, NULL, NULL,
		                    (double)rows[i].value);
}

void api_metrics(struct http_request *req, void *app)
{
	struct api *api = app;
	if (api->store != NULL)
		store_gauges(api->store);
	char *text = mt_metrics_render();
	if (text == NULL) {
		http_reply_error(req, 500, "internal", "out of memory", NULL, NULL);
		return;
	}
	http_reply_text(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
	free(text);
}
