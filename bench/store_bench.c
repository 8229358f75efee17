/* store-bench: the figures behind bench/store. Everything goes through the store's public
 * operations and job API, on a SQLite file on disk (fsync is real).
 *
 * 1. Profile lookups by address with N profiles: many lookups inside one read job, one store_run
 *    per lookup (a thread round trip each), and one store_submit per lookup from the event loop
 *    (batched by the store thread).
 * 2. Durable single-row writes: one at a time, each waited for (a commit and fsync each), against
 *    the same number submitted together from the loop (group commit).
 *
 * Usage: store-bench [--dir DIR] [--profiles N] [--lookups N] [--round-trips N] [--writes N]
 *                    [--rounds N] */
#include "lib/str.h"
#include "store/store.h"
#include "store/store_org.h"
#include "store/store_profile.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static char org_id[MT_ID_MAX];
static long n_profiles = 1000000;

static void address_of(long i, char *out, size_t size)
{
	snprintf(out, size, "p%07ld@example.com", i);
}

/* ---- building ---- */

struct build {
	long from, to;
};

static int j_build(struct store_tx *tx, void *arg)
{
	struct build *b = arg;
	static struct store_profile p;
	for (long i = b->from; i < b->to; i++) {
		memset(&p, 0, sizeof(p));
		mt_strlcpy(p.org_id, org_id, sizeof(p.org_id));
		p.kind = STORE_PROFILE_APPLICANT;
		snprintf(p.name, sizeof(p.name), "Person %07ld", i);
		address_of(i, p.emails[0], sizeof(p.emails[0]));
		p.email_count = 1;
		if (store_profile_create(tx, &p) != 0)
			return -1;
	}
	return 0;
}

static int j_org(struct store_tx *tx, void *arg)
{
	return store_org_create(tx, arg);
}

struct loop_count {
	struct event_base *base;
	long want, done, failed;
};

/* A job's argument is also its completion's: each write carries its org and the counter. */
struct write_job {
	struct loop_count *count;
	struct store_org org;
};

static int j_write(struct store_tx *tx, void *arg)
{
	struct write_job *w = arg;
	return store_org_create(tx, &w->org);
}

/* ---- lookups ---- */

static int lookup_one(struct store_tx *tx)
{
	char address[64];
	char ids[2][MT_ID_MAX];
	size_t count;
	address_of((long)(rng() % (uint64_t)n_profiles), address, sizeof(address));
	if (store_profiles_by_address(tx, org_id, address, ids, 2, &count) != 0 || count != 1)
		return -1;
	return 0;
}

static int j_lookups(struct store_tx *tx, void *arg)
{
	long n = *(long *)arg;
	for (long i = 0; i < n; i++) {
		if (lookup_one(tx) != 0)
			return -1;
	}
	return 0;
}

static int j_lookup(struct store_tx *tx, void *arg)
{
	(void)arg;
	return lookup_one(tx);
}

static void count_done(struct loop_count *c, int result)
{
	c->done++;
	c->failed += result != 0;
	if (c->done == c->want)
		event_base_loopbreak(c->base);
}

static void on_lookup_done(void *arg, int result)
{
	count_done(arg, result);
}

static void on_write_done(void *arg, int result)
{
	count_done(((struct write_job *)arg)->count, result);
}

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double rate(long n, int64_t us)
{
	return (double)n * 1e6 / (double)(us > 0 ? us : 1);
}

static double best(double a, double b)
{
	return a > b ? a : b;
}

/* Submits `n` jobs from the loop at once (args[i], or `c` itself when args is NULL) and runs the
 * loop until every completion arrived. */
static int64_t submit_all(struct store *s, struct event_base *base, enum store_job_kind kind,
                          store_job_fn *fn, store_done_fn *done, long n, void *const *args,
                          struct loop_count *c)
{
	*c = (struct loop_count){.base = base, .want = n};
	int64_t t0 = now_us();
	for (long i = 0; i < n; i++) {
		if (store_submit(s, kind, fn, done, args != NULL ? args[i] : c) != 0) {
			fprintf(stderr, "store_submit failed\n");
			exit(1);
		}
	}
	event_base_dispatch(base);
	return now_us() - t0;
}

int main(int argc, char **argv)
{
	const char *dir = "/var/tmp";
	long lookups = 200000, round_trips = 20000, writes = 2000;
	int rounds = 3;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--dir") == 0)
			dir = argv[i + 1];
		else if (strcmp(argv[i], "--profiles") == 0)
			n_profiles = atol(argv[i + 1]);
		else if (strcmp(argv[i], "--lookups") == 0)
			lookups = atol(argv[i + 1]);
		else if (strcmp(argv[i], "--round-trips") == 0)
			round_trips = atol(argv[i + 1]);
		else if (strcmp(argv[i], "--writes") == 0)
			writes = atol(argv[i + 1]);
		else if (strcmp(argv[i], "--rounds") == 0)
			rounds = atoi(argv[i + 1]);
		else {
			fprintf(stderr,
			        "usage: store-bench [--dir DIR] [--profiles N] [--lookups N]"
			        " [--round-trips N] [--writes N] [--rounds N]\n");
			return 2;
		}
	}
	if (n_profiles < 1 || rounds < 1 || lookups < 1 || round_trips < 1 || writes < 1 ||
	    round_trips > MT_STORE_QUEUE_MAX || writes > MT_STORE_QUEUE_MAX) {
		fprintf(stderr, "store-bench: counts must be 1..%d\n", MT_STORE_QUEUE_MAX);
		return 2;
	}
	char tmp[512], path[600];
	snprintf(tmp, sizeof(tmp), "%s/store-bench.XXXXXX", dir);
	if (mkdtemp(tmp) == NULL) {
		perror(tmp);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/bench.db", tmp);
	struct event_base *base = event_base_new();
	const char *error = NULL;
	struct store *s = store_open(path, base, &error);
	if (s == NULL) {
		fprintf(stderr, "store_open: %s\n", error);
		return 1;
	}
	struct store_org org = {0};
	mt_strlcpy(org.name, "bench", sizeof(org.name));
	if (store_run(s, STORE_WRITE, j_org, &org) != 0)
		return 1;
	memcpy(org_id, org.id, sizeof(org_id));

	printf("store-bench: SQLite file in %s, %ld profiles\n", dir, n_profiles);

	/* 1. Build, in jobs of 50,000 profiles (one transaction each). */
	int64_t t0 = now_us();
	for (long from = 0; from < n_profiles; from += 50000) {
		struct build b = {from, from + 50000 < n_profiles ? from + 50000 : n_profiles};
		if (store_run(s, STORE_WRITE, j_build, &b) != 0) {
			fprintf(stderr, "build failed\n");
			return 1;
		}
	}
	int64_t build_us = now_us() - t0;
	printf("build: %ld profiles in %.1f s (%.0f profiles/s, store_profile_create in jobs of "
	       "50,000)\n",
	       n_profiles, (double)build_us / 1e6, rate(n_profiles, build_us));

	/* 2. Lookups, best of `rounds` (the machine is shared and noisy). */
	double in_job = 0, per_run = 0, per_submit = 0;
	struct loop_count c;
	for (int r = 0; r < rounds; r++) {
		int64_t t = now_us();
		if (store_run(s, STORE_READ, j_lookups, &lookups) != 0) {
			fprintf(stderr, "lookups failed\n");
			return 1;
		}
		in_job = best(in_job, rate(lookups, now_us() - t));

		t = now_us();
		for (long i = 0; i < round_trips; i++) {
			if (store_run(s, STORE_READ, j_lookup, NULL) != 0) {
				fprintf(stderr, "lookup failed\n");
				return 1;
			}
		}
		per_run = best(per_run, rate(round_trips, now_us() - t));

		int64_t us = submit_all(s, base, STORE_READ, j_lookup, on_lookup_done, round_trips,
		                        NULL, &c);
		if (c.failed != 0) {
			fprintf(stderr, "%ld lookups failed\n", c.failed);
			return 1;
		}
		per_submit = best(per_submit, rate(round_trips, us));
	}
	printf("lookups by address (store_profiles_by_address, random addresses), best of %d:\n",
	       rounds);
	printf("  %7ld inside one read job:          %9.0f lookups/s\n", lookups, in_job);
	printf("  %7ld jobs, one store_run each:     %9.0f lookups/s  (%.3fx in-job)\n",
	       round_trips, per_run, per_run / in_job);
	printf("  %7ld jobs, store_submit from loop: %9.0f lookups/s  (%.3fx in-job, %.1fx "
	       "store_run)\n",
	       round_trips, per_submit, per_submit / in_job, per_submit / per_run);

	/* 3. Single-row writes, best of `rounds`. */
	struct write_job *orgs = calloc((size_t)writes, sizeof(*orgs));
	void **args = calloc((size_t)writes, sizeof(*args));
	for (long i = 0; i < writes; i++) {
		orgs[i].count = &c;
		snprintf(orgs[i].org.name, sizeof(orgs[i].org.name), "w%ld", i);
		args[i] = &orgs[i];
	}
	double serial = 0, grouped = 0, nondurable = 0;
	uint64_t grouped_commits = 0, nondurable_commits = 0;
	struct store_stats st0, st1;
	for (int r = 0; r < rounds; r++) {
		int64_t t = now_us();
		for (long i = 0; i < writes; i++) {
			if (store_run(s, STORE_WRITE_DURABLE, j_write, &orgs[i]) != 0) {
				fprintf(stderr, "write failed\n");
				return 1;
			}
		}
		serial = best(serial, rate(writes, now_us() - t));

		store_stats(s, &st0);
		int64_t us = submit_all(s, base, STORE_WRITE_DURABLE, j_write, on_write_done,
		                        writes, args, &c);
		store_stats(s, &st1);
		if (c.failed != 0 || st1.durable_commits == st0.durable_commits) {
			fprintf(stderr, "durable writes failed\n");
			return 1;
		}
		grouped = best(grouped, rate(writes, us));
		grouped_commits += st1.commits - st0.commits;

		store_stats(s, &st0);
		us = submit_all(s, base, STORE_WRITE, j_write, on_write_done, writes, args, &c);
		store_stats(s, &st1);
		nondurable = best(nondurable, rate(writes, us));
		nondurable_commits += st1.commits - st0.commits;
	}
	printf("single-row writes (store_org_create), %ld per run, best of %d:\n", writes, rounds);
	printf("  durable, one at a time, each waited for: %8.0f writes/s  (1 commit each)\n",
	       serial);
	printf("  durable, submitted together (loop):      %8.0f writes/s  (%.1f commits per run)"
	       "  %.1fx one-at-a-time\n",
	       grouped, (double)grouped_commits / rounds, grouped / serial);
	printf("  non-durable, submitted together (loop):  %8.0f writes/s  (%.1f commits per run)"
	       "  %.1fx one-at-a-time\n",
	       nondurable, (double)nondurable_commits / rounds, nondurable / serial);

	store_close(&s);
	event_base_free(base);
	free(orgs);
	free(args);
	static const char *const suffixes[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < 3; i++) {
		char p[640];
		snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
		unlink(p);
	}
	rmdir(tmp);
	return 0;
}
