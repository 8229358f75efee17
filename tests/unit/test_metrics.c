#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "lib/limits.h"
#include "lib/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reset(void **state)
{
	(void)state;
	mt_metrics_reset();
	return 0;
}

static void empty_registry(void **state)
{
	(void)state;
	char *text = mt_metrics_render();
	assert_string_equal(text, "# HELP mailtrail_metrics_dropped_total Metric updates dropped: "
	                          "too many series or a malformed update.\n"
	                          "# TYPE mailtrail_metrics_dropped_total counter\n"
	                          "mailtrail_metrics_dropped_total 0\n");
	free(text);
}

static void counters_and_gauges(void **state)
{
	(void)state;
	mt_metric_inc("mailtrail_http_requests_total", "HTTP requests answered.", "route",
	              "users.update", "status", "200");
	mt_metric_inc("mailtrail_http_requests_total", "ignored: first help wins", "route",
	              "users.update", "status", "200");
	mt_metric_inc("mailtrail_http_requests_total", NULL, "route", "unmatched", "status", "404");
	mt_metric_add("mailtrail_sent_total", "Messages sent.", NULL, NULL, NULL, NULL, 2.5);
	mt_metric_set_gauge("mailtrail_queue", "Queued.", "role", "sender", NULL, NULL, 7);
	mt_metric_set_gauge("mailtrail_queue", "Queued.", "role", "sender", NULL, NULL, -3);
	const struct mt_metric_label three[] = {{"a", "1"}, {"b", "2"}, {"c", "3"}};
	mt_metric_gauge_set("mailtrail_three", "Three labels.", three, 3, 0.1);

	char *text = mt_metrics_render();
	assert_string_equal(
	    text, "# HELP mailtrail_http_requests_total HTTP requests answered.\n"
	          "# TYPE mailtrail_http_requests_total counter\n"
	          "mailtrail_http_requests_total{route=\"users.update\",status=\"200\"} 2\n"
	          "mailtrail_http_requests_total{route=\"unmatched\",status=\"404\"} 1\n"
	          "# HELP mailtrail_sent_total Messages sent.\n"
	          "# TYPE mailtrail_sent_total counter\n"
	          "mailtrail_sent_total 2.5\n"
	          "# HELP mailtrail_queue Queued.\n"
	          "# TYPE mailtrail_queue gauge\n"
	          "mailtrail_queue{role=\"sender\"} -3\n"
	          "# HELP mailtrail_three Three labels.\n"
	          "# TYPE mailtrail_three gauge\n"
	          "mailtrail_three{a=\"1\",b=\"2\",c=\"3\"} 0.1\n"
	          "# HELP mailtrail_metrics_dropped_total Metric updates dropped: "
	          "too many series or a malformed update.\n"
	          "# TYPE mailtrail_metrics_dropped_total counter\n"
	          "mailtrail_metrics_dropped_total 0\n");
	free(text);
	const struct mt_metric_label l[] = {{"route", "users.update"}, {"status", "200"}};
	assert_true(mt_metric_get("mailtrail_http_requests_total", l, 2) == 2);
	assert_true(mt_metric_get("mailtrail_http_requests_total", l, 1) == 0);
}

static void escaping(void **state)
{
	(void)state;
	mt_metric_inc("mailtrail_esc_total", "Help with \\ and\nnewline \"quoted\".", "v",
	              "a\"b\\c\nd", NULL, NULL);
	char *text = mt_metrics_render();
	assert_non_null(strstr(text, "# HELP mailtrail_esc_total Help with \\\\ and\\nnewline "
	                             "\"quoted\".\n"));
	assert_non_null(strstr(text, "mailtrail_esc_total{v=\"a\\\"b\\\\c\\nd\"} 1\n"));
	free(text);
}

static void malformed_dropped(void **state)
{
	(void)state;
	mt_metric_inc("bad name", "x", NULL, NULL, NULL, NULL);
	mt_metric_inc("9starts_with_digit", "x", NULL, NULL, NULL, NULL);
	mt_metric_inc("ok_total", "x", "bad-label", "v", NULL, NULL);
	mt_metric_inc("ok_total", "x", "l", NULL, NULL, NULL);
	mt_metric_add("ok_total", "x", NULL, NULL, NULL, NULL, -1);
	char longv[MT_METRIC_LABEL_VALUE_MAX + 2];
	memset(longv, 'v', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	mt_metric_inc("ok_total", "x", "l", longv, NULL, NULL);
	/* A name is a counter or a gauge, not both. */
	mt_metric_inc("mixed", "x", NULL, NULL, NULL, NULL);
	mt_metric_set_gauge("mixed", "x", NULL, NULL, NULL, NULL, 1);
	mt_metric_set_gauge("mixed", "x", "l", "v", NULL, NULL, 1);
	const struct mt_metric_label four[] = {{"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}};
	mt_metric_counter_add("four_total", "x", four, 4, 1);
	assert_true(mt_metric_get("mailtrail_metrics_dropped_total", NULL, 0) == 9);
	assert_true(mt_metric_get("mixed", NULL, 0) == 1);
	char *text = mt_metrics_render();
	assert_null(strstr(text, "gauge"));
	assert_non_null(strstr(text, "mailtrail_metrics_dropped_total 9\n"));
	free(text);
}

static void series_cap(void **state)
{
	(void)state;
	char v[32];
	for (int i = 0; i < MT_METRIC_SERIES_MAX + 10; i++) {
		snprintf(v, sizeof(v), "%d", i);
		mt_metric_inc("many_total", "Many.", "i", v, NULL, NULL);
	}
	/* Existing series still count once the cap is reached. */
	mt_metric_inc("many_total", "Many.", "i", "0", NULL, NULL);
	const struct mt_metric_label l0[] = {{"i", "0"}};
	assert_true(mt_metric_get("many_total", l0, 1) == 2);
	assert_true(mt_metric_get("mailtrail_metrics_dropped_total", NULL, 0) == 10);
	char *text = mt_metrics_render();
	size_t lines = 0;
	for (const char *p = text; *p != '\0'; p++)
		lines += *p == '\n';
	assert_int_equal(lines, MT_METRIC_SERIES_MAX + 2 + 3);
	free(text);
}

static void *bump(void *arg)
{
	(void)arg;
	for (int i = 0; i < 20000; i++)
		mt_metric_inc("threads_total", "Threads.", NULL, NULL, NULL, NULL);
	return NULL;
}

static void other_thread(void **state)
{
	(void)state;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, bump, NULL), 0);
	bump(NULL);
	pthread_join(t, NULL);
	assert_true(mt_metric_get("threads_total", NULL, 0) == 40000);
}

static void histogram(void **state)
{
	(void)state;
	static const double bounds[] = {0.5, 1, 2.5};
	static const double values[] = {0.1, 0.5, 0.7, 2, 3, 100};
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		mt_metric_observe("lag_seconds", "Lag.", bounds, 3, NULL, 0, values[i]);
	struct mt_metric_label l = {"kind", "a\"b"};
	mt_metric_observe("lag_seconds", NULL, bounds, 3, &l, 1, 1);
	/* dropped: other bounds, NaN, a label named le, unordered or too many bounds */
	static const double other[] = {0.5, 1, 5};
	mt_metric_observe("lag_seconds", NULL, other, 3, NULL, 0, 1);
	mt_metric_observe("lag_seconds", NULL, bounds, 2, NULL, 0, 1);
	mt_metric_observe("lag_seconds", NULL, bounds, 3, NULL, 0, 0.0 / 0.0);
	struct mt_metric_label le = {"le", "1"};
	mt_metric_observe("lag_seconds", NULL, bounds, 3, &le, 1, 1);
	static const double unordered[] = {1, 0.5};
	mt_metric_observe("other_seconds", NULL, unordered, 2, NULL, 0, 1);
	double many[MT_METRIC_BUCKETS_MAX + 1];
	for (size_t i = 0; i < MT_METRIC_BUCKETS_MAX + 1; i++)
		many[i] = (double)i;
	mt_metric_observe("other_seconds", NULL, many, MT_METRIC_BUCKETS_MAX + 1, NULL, 0, 1);
	mt_metric_observe("other_seconds", NULL, NULL, 0, NULL, 0, 1);
	/* a name used as another type */
	mt_metric_inc("lag_seconds", NULL, NULL, NULL, NULL, NULL);
	assert_true(mt_metric_get("mailtrail_metrics_dropped_total", NULL, 0) == 8);
	assert_true(mt_metric_get("lag_seconds", NULL, 0) == 6);
	assert_true(mt_metric_get("lag_seconds", &l, 1) == 1);
	char *text = mt_metrics_render();
	assert_non_null(text);
	assert_non_null(strstr(text, "# HELP lag_seconds Lag.\n"
	                             "# TYPE lag_seconds histogram\n"
	                             "lag_seconds_bucket{le=\"0.5\"} 2\n"
	                             "lag_seconds_bucket{le=\"1\"} 3\n"
	                             "lag_seconds_bucket{le=\"2.5\"} 4\n"
	                             "lag_seconds_bucket{le=\"+Inf\"} 6\n"
	                             "lag_seconds_sum 106.3\n"
	                             "lag_seconds_count 6\n"
	                             "lag_seconds_bucket{kind=\"a\\\"b\",le=\"0.5\"} 0\n"
	                             "lag_seconds_bucket{kind=\"a\\\"b\",le=\"1\"} 1\n"
	                             "lag_seconds_bucket{kind=\"a\\\"b\",le=\"2.5\"} 1\n"
	                             "lag_seconds_bucket{kind=\"a\\\"b\",le=\"+Inf\"} 1\n"
	                             "lag_seconds_sum{kind=\"a\\\"b\"} 1\n"
	                             "lag_seconds_count{kind=\"a\\\"b\"} 1\n"));
	assert_null(strstr(text, "other_seconds_bucket"));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(empty_registry, reset),
	    cmocka_unit_test_setup(counters_and_gauges, reset),
	    cmocka_unit_test_setup(escaping, reset),
	    cmocka_unit_test_setup(malformed_dropped, reset),
	    cmocka_unit_test_setup(series_cap, reset),
	    cmocka_unit_test_setup(histogram, reset),
	    cmocka_unit_test_setup_teardown(other_thread, reset, reset),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
