/* workq.h - a fixed pool of worker threads running submitted jobs in FIFO
 * order. CPU work (retrieval, ingestion, the offline generator) runs here so
 * the HTTP event thread never blocks on it. */
#ifndef RAGD_UTIL_WORKQ_H
#define RAGD_UTIL_WORKQ_H

#include <stddef.h>

#include "util/err.h"

struct workq;

typedef void (*workq_fn)(void *arg);

/* Starts threads workers. */
ragd_err workq_new(size_t threads, struct workq **out /* OUT */);
/* Queues fn(arg); any thread. RAGD_ECANCELLED once workq_free has begun. */
ragd_err workq_submit(struct workq *q, workq_fn fn, void *arg);
/* Runs every queued job, then joins the threads. Accepts NULL. */
void workq_free(struct workq *q);

#endif
