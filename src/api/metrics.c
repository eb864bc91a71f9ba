/* metrics.c - GET /metrics: the Prometheus text exposition (format 0.0.4) of
 * every metric in the registry, plus process gauges read at scrape time. */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "api/api_int.h"
#include "util/clock.h"
#include "util/metrics.h"

static int64_t started_ms;

static double resident_bytes(void *arg) {
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  (void)arg;
  if (!f) return 0;
  if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  fclose(f);
  return (double)resident * (double)sysconf(_SC_PAGESIZE);
}

static double open_fds(void *arg) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *de;
  double n = 0;
  (void)arg;
  if (!d) return 0;
  while ((de = readdir(d)) != NULL)
    if (de->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the directory stream's own descriptor */
}

static double uptime_seconds(void *arg) {
  (void)arg;
  return (double)(clock_mono_ms() - started_ms) / 1000.0;
}

static void register_process_metrics(void) {
  struct metric *info;
  started_ms = clock_mono_ms();
  metrics_gauge_fn("process_resident_memory_bytes", "Resident memory size in bytes.", resident_bytes, NULL);
  metrics_gauge_fn("process_open_fds", "Number of open file descriptors.", open_fds, NULL);
  metrics_gauge_fn("ragd_uptime_seconds", "Seconds since the server started.", uptime_seconds, NULL);
  info = metrics_gauge("ragd_build_info", "Version and git commit of this build (value 1).", "version,commit");
  metrics_set(info, 1, RAGD_VERSION, RAGD_GIT_COMMIT);
}

void api_metrics_init(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, register_process_metrics);
}

/* Values that live elsewhere and are read at scrape time: the circuit breaker
 * of every upstream endpoint (one series per state, 1 for the current one) and
 * what the store holds. */
static void refresh_snapshots(struct api_app *app) {
  static const enum llm_breaker_status states[] = {LLM_BREAKER_CLOSED, LLM_BREAKER_OPEN,
                                                   LLM_BREAKER_HALF_OPEN};
  struct metric *breaker = metrics_gauge(
      "ragd_upstream_breaker_state",
      "Circuit breaker of each LLM endpoint: 1 for its current state (closed, open, half_open).",
      "endpoint,state");
  struct metric *documents =
      metrics_gauge("ragd_documents_indexed", "Documents in the store.", NULL);
  struct metric *chunks = metrics_gauge("ragd_chunks_indexed", "Chunks (passages) in the store.", NULL);
  struct llm_breaker_state snap[32];
  struct store_stats st;
  size_t n = llm_breakers_snapshot(snap, sizeof snap / sizeof snap[0]);
  if (n > sizeof snap / sizeof snap[0]) n = sizeof snap / sizeof snap[0];
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < sizeof states / sizeof states[0]; j++)
      metrics_set(breaker, snap[i].status == states[j] ? 1 : 0, snap[i].name,
                  llm_breaker_status_name(states[j]));
  if (app && app->engine && app->engine->store.ops &&
      app->engine->store.ops->stats(app->engine->store.ctx, &st) == RAGD_OK) {
    metrics_set(documents, (double)st.documents);
    metrics_set(chunks, (double)st.chunks);
  }
}

void api_metrics_handle(struct http_request *r, void *arg) {
  struct buf out;
  api_metrics_init();
  refresh_snapshots(arg);
  buf_init(&out, 0);
  if (metrics_render(&out) != RAGD_OK) {
    buf_dispose(&out);
    http_reply_problem(r, "internal_error", "could not render the metrics");
    return;
  }
  http_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", out.data ? out.data : "", out.len);
  buf_dispose(&out);
}
