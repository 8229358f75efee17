#include "lib/metrics.h"

#include "lib/buf.h"
#include "lib/limits.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct family {
	char *name;
	char *help;
	enum metric_type type;
	size_t first, last; /* series chain, in creation order; SIZE_MAX when empty */
	/* histograms: the upper bounds, ascending and finite (+Inf is implied) */
	double bounds[MT_METRIC_BUCKETS_MAX];
	size_t bound_count;
};

struct series {
	size_t family;
	size_t next; /* next series of the same family */
	uint64_t hash;
	size_t label_count;
	char *labels[MT_METRIC_LABELS_MAX][2];
	double value;     /* histograms: the sum of the observations */
	uint64_t *counts; /* histograms: per bucket (not cumulative), bound_count + 1 (+Inf) */
	uint64_t count;   /* histograms: observations */
};

/* Open addressing at most half full: slots hold series index + 1, 0 = empty. */
#define SLOTS_BITS 13
#define SLOTS      (1u << SLOTS_BITS)
_Static_assert(SLOTS >= 2 * MT_METRIC_SERIES_MAX, "hash table too small");

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct family *families;
static size_t family_count, family_cap;
static struct series *series;
static size_t series_count, series_cap;
static uint32_t slots[SLOTS];
static uint64_t dropped;

static bool valid_name(const char *s, bool colon_ok)
{
	if (s == NULL || *s == '\0' || strlen(s) > MT_METRIC_NAME_MAX)
		return false;
	for (const char *p = s; *p != '\0'; p++) {
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		          (colon_ok && c == ':') || (p != s && c >= '0' && c <= '9');
		if (!ok)
			return false;
	}
	return true;
}

static uint64_t fnv(uint64_t h, const char *s)
{
	/* The terminating NUL is hashed too, so ("ab","c") and ("a","bc") differ. */
	do {
		h ^= (unsigned char)*s;
		h *= 1099511628211u;
	} while (*s++ != '\0');
	return h;
}

static uint64_t series_hash(const char *name, const struct mt_metric_label *labels, size_t n)
{
	uint64_t h = fnv(14695981039346656037u, name);
	for (size_t i = 0; i < n; i++)
		h = fnv(fnv(h, labels[i].name), labels[i].value);
	return h;
}

static bool series_equal(const struct series *s, const char *name,
                         const struct mt_metric_label *labels, size_t n)
{
	if (s->label_count != n || strcmp(families[s->family].name, name) != 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(s->labels[i][0], labels[i].name) != 0 ||
		    strcmp(s->labels[i][1], labels[i].value) != 0)
			return false;
	}
	return true;
}

static bool grow(void **array, size_t *cap, size_t count, size_t item_size)
{
	if (count < *cap)
		return true;
	size_t ncap = *cap ? *cap * 2 : 16;
	void *p = realloc(*array, ncap * item_size);
	if (p == NULL)
		return false;
	*array = p;
	*cap = ncap;
	return true;
}

static struct family *find_family(const char *name, const char *help, enum metric_type type)
{
	for (size_t i = 0; i < family_count; i++) {
		if (strcmp(families[i].name, name) == 0)
			return families[i].type == type ? &families[i] : NULL;
	}
	if (!grow((void **)&families, &family_cap, family_count, sizeof(*families)))
		return NULL;
	struct family *f = &families[family_count];
	f->name = strdup(name);
	f->help = strdup(help != NULL ? help : "");
	if (f->name == NULL || f->help == NULL) {
		free(f->name);
		free(f->help);
		return NULL;
	}
	f->type = type;
	f->first = f->last = SIZE_MAX;
	f->bound_count = 0;
	family_count++;
	return f;
}

static void free_labels(struct series *s)
{
	free(s->counts);
	s->counts = NULL;
	for (size_t i = 0; i < MT_METRIC_LABELS_MAX; i++) {
		free(s->labels[i][0]);
		free(s->labels[i][1]);
	}
}

/* Called with the lock held; NULL means the update is dropped. */
static struct series *lookup(const char *name, const char *help, enum metric_type type,
                             const struct mt_metric_label *labels, size_t n)
{
	if (!valid_name(name, true) || n > MT_METRIC_LABELS_MAX)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (!valid_name(labels[i].name, false) || labels[i].value == NULL ||
		    strlen(labels[i].value) > MT_METRIC_LABEL_VALUE_MAX)
			return NULL;
	}
	uint64_t h = series_hash(name, labels, n);
	size_t slot = (size_t)(h & (SLOTS - 1));
	while (slots[slot] != 0) {
		struct series *s = &series[slots[slot] - 1];
		if (s->hash == h && series_equal(s, name, labels, n))
			return families[s->family].type == type ? s : NULL;
		slot = (slot + 1) & (SLOTS - 1);
	}
	if (series_count >= MT_METRIC_SERIES_MAX)
		return NULL;
	struct family *f = find_family(name, help, type);
	if (f == NULL)
		return NULL;
	if (!grow((void **)&series, &series_cap, series_count, sizeof(*series)))
		return NULL;
	struct series *s = &series[series_count];
	memset(s, 0, sizeof(*s));
	s->family = (size_t)(f - families);
	s->next = SIZE_MAX;
	s->hash = h;
	s->label_count = n;
	for (size_t i = 0; i < n; i++) {
		s->labels[i][0] = strdup(labels[i].name);
		s->labels[i][1] = strdup(labels[i].value);
		if (s->labels[i][0] == NULL || s->labels[i][1] == NULL) {
			free_labels(s);
			return NULL;
		}
	}
	if (type == METRIC_HISTOGRAM) {
		s->counts = calloc(f->bound_count + 1, sizeof(*s->counts));
		if (s->counts == NULL) {
			free_labels(s);
			return NULL;
		}
	}
	if (f->last == SIZE_MAX)
		f->first = series_count;
	else
		series[f->last].next = series_count;
	f->last = series_count;
	slots[slot] = (uint32_t)(++series_count);
	return s;
}

static size_t pairs(struct mt_metric_label out[2], const char *l1, const char *v1, const char *l2,
                    const char *v2)
{
	size_t n = 0;
	if (l1 != NULL) {
		out[n++] = (struct mt_metric_label){l1, v1};
		if (l2 != NULL)
			out[n++] = (struct mt_metric_label){l2, v2};
	}
	return n;
}

void mt_metric_counter_add(const char *name, const char *help, const struct mt_metric_label *labels,
                           size_t label_count, double delta)
{
	pthread_mutex_lock(&lock);
	/* Counters only go up (Prometheus treats a decrease as a restart). */
	struct series *s = NULL;
	if (delta >= 0 && isfinite(delta))
		s = lookup(name, help, METRIC_COUNTER, labels, label_count);
	if (s != NULL)
		s->value += delta;
	else
		dropped++;
	pthread_mutex_unlock(&lock);
}

void mt_metric_gauge_set(const char *name, const char *help, const struct mt_metric_label *labels,
                         size_t label_count, double value)
{
	pthread_mutex_lock(&lock);
	struct series *s = lookup(name, help, METRIC_GAUGE, labels, label_count);
	if (s != NULL)
		s->value = value;
	else
		dropped++;
	pthread_mutex_unlock(&lock);
}

void mt_metric_inc(const char *name, const char *help, const char *l1, const char *v1,
                   const char *l2, const char *v2)
{
	mt_metric_add(name, help, l1, v1, l2, v2, 1);
}

void mt_metric_add(const char *name, const char *help, const char *l1, const char *v1,
                   const char *l2, const char *v2, double delta)
{
	struct mt_metric_label labels[2];
	mt_metric_counter_add(name, help, labels, pairs(labels, l1, v1, l2, v2), delta);
}

void mt_metric_set_gauge(const char *name, const char *help, const char *l1, const char *v1,
                         const char *l2, const char *v2, double value)
{
	struct mt_metric_label labels[2];
	mt_metric_gauge_set(name, help, labels, pairs(labels, l1, v1, l2, v2), value);
}

/* The bounds are the family's from its first use: valid (1..MT_METRIC_BUCKETS_MAX, finite,
 * strictly ascending) and the same ever after. */
static bool bounds_ok(const double *bounds, size_t n)
{
	if (bounds == NULL || n == 0 || n > MT_METRIC_BUCKETS_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
			return false;
	return true;
}

void mt_metric_observe(const char *name, const char *help, const double *bounds, size_t bound_count,
                       const struct mt_metric_label *labels, size_t label_count, double value)
{
	pthread_mutex_lock(&lock);
	struct series *s = NULL;
	bool ok = bounds_ok(bounds, bound_count) && !isnan(value);
	for (size_t i = 0; ok && i < label_count && i < MT_METRIC_LABELS_MAX; i++)
		ok = labels[i].name == NULL || strcmp(labels[i].name, "le") != 0;
	if (ok && valid_name(name, true)) {
		/* The family first, so that its bounds are set before a series is made. */
		struct family *f = find_family(name, help, METRIC_HISTOGRAM);
		if (f != NULL && f->bound_count == 0 && f->first == SIZE_MAX) {
			memcpy(f->bounds, bounds, bound_count * sizeof(*bounds));
			f->bound_count = bound_count;
		}
		if (f != NULL && f->bound_count == bound_count &&
		    memcmp(f->bounds, bounds, bound_count * sizeof(*bounds)) == 0)
			s = lookup(name, help, METRIC_HISTOGRAM, labels, label_count);
	}
	if (s != NULL) {
		const struct family *f = &families[s->family];
		size_t b = 0;
		while (b < f->bound_count && value > f->bounds[b])
			b++;
		s->counts[b]++;
		s->count++;
		s->value += value;
	} else {
		dropped++;
	}
	pthread_mutex_unlock(&lock);
}

double mt_metric_get(const char *name, const struct mt_metric_label *labels, size_t label_count)
{
	double value = 0;
	if (name == NULL || label_count > MT_METRIC_LABELS_MAX)
		return 0;
	for (size_t i = 0; i < label_count; i++) {
		if (labels[i].name == NULL || labels[i].value == NULL)
			return 0;
	}
	pthread_mutex_lock(&lock);
	if (strcmp(name, "mailtrail_metrics_dropped_total") == 0 && label_count == 0) {
		value = (double)dropped;
	} else {
		uint64_t h = series_hash(name, labels, label_count);
		size_t slot = (size_t)(h & (SLOTS - 1));
		while (slots[slot] != 0) {
			struct series *s = &series[slots[slot] - 1];
			if (s->hash == h && series_equal(s, name, labels, label_count)) {
				value = families[s->family].type == METRIC_HISTOGRAM
				            ? (double)s->count
				            : s->value;
				break;
			}
			slot = (slot + 1) & (SLOTS - 1);
		}
	}
	pthread_mutex_unlock(&lock);
	return value;
}

/* Exposition format 0.0.4: HELP escapes backslash and newline; label values also escape the
 * double quote. */
static int append_escaped(struct mt_buf *out, const char *s, bool quote)
{
	for (; *s != '\0'; s++) {
		const char *rep = NULL;
		if (*s == '\\')
			rep = "\\\\";
		else if (*s == '\n')
			rep = "\\n";
		else if (*s == '"' && quote)
			rep = "\\\"";
		if ((rep != NULL ? mt_buf_append_str(out, rep) : mt_buf_append(out, s, 1)) < 0)
			return -1;
	}
	return 0;
}

static int append_value(struct mt_buf *out, double v)
{
	if (isnan(v))
		return mt_buf_append_str(out, "NaN");
	if (isinf(v))
		return mt_buf_append_str(out, v > 0 ? "+Inf" : "-Inf");
	/* The shortest form that reads back exactly, so 0.1 is not printed as 0.10000000000000001.
	 */
	char text[40];
	snprintf(text, sizeof(text), "%.15g", v);
	if (strtod(text, NULL) != v)
		snprintf(text, sizeof(text), "%.17g", v);
	return mt_buf_append_str(out, text);
}

/* One sample line: NAME[SUFFIX]{labels[,le="LE"]} VALUE. */
static int render_sample(struct mt_buf *out, const char *name, const char *suffix,
                         const struct series *s, const char *le, double v)
{
	if (mt_buf_append_str(out, name) < 0 || mt_buf_append_str(out, suffix) < 0)
		return -1;
	for (size_t l = 0; l < s->label_count; l++) {
		if (mt_buf_append_str(out, l == 0 ? "{" : ",") < 0 ||
		    mt_buf_printf(out, "%s=\"", s->labels[l][0]) < 0 ||
		    append_escaped(out, s->labels[l][1], true) < 0 ||
		    mt_buf_append_str(out, "\"") < 0)
			return -1;
	}
	if (le != NULL && mt_buf_printf(out, "%sle=\"%s\"", s->label_count > 0 ? "," : "{", le) < 0)
		return -1;
	if (((s->label_count > 0 || le != NULL) && mt_buf_append_str(out, "}") < 0) ||
	    mt_buf_append_str(out, " ") < 0 || append_value(out, v) < 0 ||
	    mt_buf_append_str(out, "\n") < 0)
		return -1;
	return 0;
}

/* _bucket lines (cumulative, le ascending, +Inf last), then _sum and _count. */
static int render_histogram(struct mt_buf *out, const struct family *f, const struct series *s)
{
	uint64_t cum = 0;
	for (size_t b = 0; b <= f->bound_count; b++) {
		char le[40] = "+Inf";
		if (b < f->bound_count) {
			snprintf(le, sizeof(le), "%.15g", f->bounds[b]);
			if (strtod(le, NULL) != f->bounds[b])
				snprintf(le, sizeof(le), "%.17g", f->bounds[b]);
		}
		cum += s->counts[b];
		if (render_sample(out, f->name, "_bucket", s, le, (double)cum) < 0)
			return -1;
	}
	if (render_sample(out, f->name, "_sum", s, NULL, s->value) < 0 ||
	    render_sample(out, f->name, "_count", s, NULL, (double)s->count) < 0)
		return -1;
	return 0;
}

static int render_family(struct mt_buf *out, const struct family *f)
{
	static const char *const type_names[] = {"counter", "gauge", "histogram"};
	if (mt_buf_printf(out, "# HELP %s ", f->name) < 0 ||
	    append_escaped(out, f->help, false) < 0 ||
	    mt_buf_printf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]) < 0)
		return -1;
	for (size_t i = f->first; i != SIZE_MAX; i = series[i].next) {
		const struct series *s = &series[i];
		int ret = f->type == METRIC_HISTOGRAM
		              ? render_histogram(out, f, s)
		              : render_sample(out, f->name, "", s, NULL, s->value);
		if (ret < 0)
			return -1;
	}
	return 0;
}

char *mt_metrics_render(void)
{
	struct mt_buf out;
	/* Series are capped, so the text is too; the cap here only guards against a bug. */
	mt_buf_init(&out, (size_t)64 * 1024 * 1024);
	pthread_mutex_lock(&lock);
	int ret = 0;
	for (size_t i = 0; i < family_count && ret == 0; i++)
		ret = render_family(&out, &families[i]);
	if (ret == 0)
		ret =
		    mt_buf_printf(&out,
		                  "# HELP mailtrail_metrics_dropped_total Metric updates dropped: "
		                  "too many series or a malformed update.\n"
		                  "# TYPE mailtrail_metrics_dropped_total counter\n"
		                  "mailtrail_metrics_dropped_total %llu\n",
		                  (unsigned long long)dropped);
	pthread_mutex_unlock(&lock);
	if (ret < 0) {
		mt_buf_free(&out);
		return NULL;
	}
	return out.data;
}

void mt_metrics_reset(void)
{
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < series_count; i++)
		free_labels(&series[i]);
	for (size_t i = 0; i < family_count; i++) {
		free(families[i].name);
		free(families[i].help);
	}
	free(series);
	free(families);
	series = NULL;
	families = NULL;
	series_count = series_cap = family_count = family_cap = 0;
	memset(slots, 0, sizeof(slots));
	dropped = 0;
	pthread_mutex_unlock(&lock);
}
