/* A store job that holds the store thread until the test opens it, so that every job submitted
 * meanwhile lands in the next batch: a group commit the test decides. Include after cmocka.h. */
#ifndef MT_TEST_STORE_GATE_H
#define MT_TEST_STORE_GATE_H

#include "store/store.h"

#include <pthread.h>
#include <stdbool.h>

struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool entered, open;
};

static int j_gate(struct store_tx *tx, void *arg)
{
	(void)tx;
	struct gate *g = arg;
	pthread_mutex_lock(&g->mu);
	g->entered = true;
	pthread_cond_broadcast(&g->cv);
	while (!g->open)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
	return 0;
}

/* Submits the gate and returns once the store thread is inside it. */
static void gate_close(struct store *s, struct gate *g)
{
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	g->entered = g->open = false;
	assert_int_equal(store_submit(s, STORE_READ, j_gate, NULL, g), 0);
	pthread_mutex_lock(&g->mu);
	while (!g->entered)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
}

static void gate_open(struct gate *g)
{
	pthread_mutex_lock(&g->mu);
	g->open = true;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

static void gate_destroy(struct gate *g)
{
	pthread_mutex_destroy(&g->mu);
	pthread_cond_destroy(&g->cv);
}

#endif
