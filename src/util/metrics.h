/* metrics.h - a process-wide registry of Prometheus metrics (counters,
 * gauges, histograms with labels) and its text exposition (format 0.0.4).
 *
 * Metrics are created once (at start-up, or lazily: creating the same name
 * twice returns the same metric) and live until metrics_reset. Every function
 * is thread-safe. Label values are copied; a metric keeps at most
 * METRICS_SERIES_MAX label combinations and drops updates for new ones past
 * that (so a bug or hostile input cannot grow memory without bound). */
#ifndef RAGD_UTIL_METRICS_H
#define RAGD_UTIL_METRICS_H

#include <stddef.h>

#include "util/buf.h"
#include "util/err.h"

#define METRICS_SERIES_MAX 2000
#define METRICS_LABELS_MAX 4

struct metric;

/* label_names: comma-separated ("route,status"), or NULL for none. name must
 * match [a-zA-Z_:][a-zA-Z0-9_:]*. Returns NULL on allocation failure or when
 * the name exists with another type (both are programming errors; updates to
 * a NULL metric are ignored). */
struct metric *metrics_counter(const char *name, const char *help, const char *label_names);
struct metric *metrics_gauge(const char *name, const char *help, const char *label_names);
/* bounds: ascending upper bounds of the buckets (+Inf is implied). */
struct metric *metrics_histogram(const char *name, const char *help, const char *label_names,
                                 const double *bounds, size_t nbounds);

/* Each takes exactly as many label values (NUL-terminated strings) as the
 * metric has label names, in order. m may be NULL. */
void metrics_add(struct metric *m, double v, ...);
void metrics_set(struct metric *m, double v, ...);
void metrics_observe(struct metric *m, double v, ...);

/* Appends the whole registry in the text exposition format, metrics in
 * creation order, series in first-update order. A gauge callback registered
 * with metrics_gauge_fn is read at this moment. */
ragd_err metrics_render(struct buf *out);

/* A gauge without labels whose value is fn(arg) at render time (resident
 * memory, open file descriptors, ...). */
struct metric *metrics_gauge_fn(const char *name, const char *help, double (*fn)(void *arg),
                                void *arg);

/* Frees every metric (tests and shutdown). Pointers obtained earlier become
 * invalid. */
void metrics_reset(void);

/* Latency buckets in seconds, from 1 ms to 60 s, for request and answer
 * timings. */
extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_bucket_count;

#endif
