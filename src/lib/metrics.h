/* A process-wide registry of counters, gauges and histograms, rendered in the Prometheus text
 * exposition format 0.0.4 for GET /metrics. Series are identified by name plus up to
 * MT_METRIC_LABELS_MAX label pairs given in a fixed order; at most MT_METRIC_SERIES_MAX series
 * exist, and updates that would create more (or that are malformed: bad names, a name used with two
 * types, an over-long label value, a counter going down) are dropped and counted in
 * mailtrail_metrics_dropped_total. A mutex guards the registry, so the loop thread and one
 * other thread may both update it.
 *
 * Ownership: the registry copies names, help texts and labels; callers keep theirs.
 * mt_metrics_render() returns a malloc'd string the caller frees. */
#ifndef MT_LIB_METRICS_H
#define MT_LIB_METRICS_H

#include <stddef.h>

#define MT_METRIC_LABELS_MAX 3

struct mt_metric_label {
	const char *name;
	const char *value;
};

/* Counters: `name` should end in _total. A NULL label name ends the list (v1 with l1 NULL is
 * ignored). */
void mt_metric_inc(const char *name, const char *help, const char *l1, const char *v1,
                   const char *l2, const char *v2);
void mt_metric_add(const char *name, const char *help, const char *l1, const char *v1,
                   const char *l2, const char *v2, double delta);
/* Gauges. */
void mt_metric_set_gauge(const char *name, const char *help, const char *l1, const char *v1,
                         const char *l2, const char *v2, double value);

/* The same with up to MT_METRIC_LABELS_MAX labels. */
void mt_metric_counter_add(const char *name, const char *help, const struct mt_metric_label *labels,
                           size_t label_count, double delta);
void mt_metric_gauge_set(const char *name, const char *help, const struct mt_metric_label *labels,
                         size_t label_count, double value);

/* Histograms: one observation. `bounds` are the buckets' upper bounds (le), finite and
 * strictly ascending, at most MT_METRIC_BUCKETS_MAX (+Inf is added); a family keeps the
 * bounds of its first observation, and an observation with other bounds, a NaN, or a label
 * named "le" is dropped. Rendered as NAME_bucket{...,le="..."} (cumulative), NAME_sum and
 * NAME_count. */
void mt_metric_observe(const char *name, const char *help, const double *bounds, size_t bound_count,
                       const struct mt_metric_label *labels, size_t label_count, double value);

/* Current value of a series (a histogram's: its number of observations), 0 when it does not
 * exist (for tests and health checks). */
double mt_metric_get(const char *name, const struct mt_metric_label *labels, size_t label_count);

/* The exposition text; NULL only when out of memory. */
char *mt_metrics_render(void);

/* Forgets every series (tests). */
void mt_metrics_reset(void);

#endif
