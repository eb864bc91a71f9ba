/* search.c - retrieval for a query: the one place that decides which rankers
 * run for a search mode. */
#include <string.h>

#include "rag/rag.h"

#include <pthread.h>

#include "util/clock.h"
#include "util/metrics.h"

static const char *const mode_names[] = {"hybrid", "keyword", "vector"};

int rag_search_mode_parse(const char *name) {
  for (int i = 0; i < 3; i++)
    if (strcmp(name, mode_names[i]) == 0) return i;
  return -1;
}

const char *rag_search_mode_name(enum rag_search_mode mode) {
  return (unsigned)mode < 3 ? mode_names[mode] : "unknown";
}

static ragd_err search_run(struct rag_engine *e, const struct rag_search_opts *o,
                           struct store_hit_list *out);

static struct metric *search_seconds;

static void search_metrics_create(void) {
  search_seconds = metrics_histogram("ragd_search_seconds",
                                     "Retrieval time per search (API searches and answers), by mode.",
                                     "mode", metrics_latency_buckets, metrics_latency_bucket_count);
}

/* Times every search for /metrics; the work is search_run's. */
ragd_err rag_search_ex(struct rag_engine *e, const struct rag_search_opts *o,
                       struct store_hit_list *out) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  int64_t started = clock_mono_us();
  ragd_err rc = search_run(e, o, out);
  pthread_once(&once, search_metrics_create);
  if (o) metrics_observe(search_seconds, (double)(clock_mono_us() - started) / 1e6,
                         rag_search_mode_name(o->mode));
  return rc;
}

static ragd_err search_run(struct rag_engine *e, const struct rag_search_opts *o,
                           struct store_hit_list *out) {
  if (o->filters_json && strcmp(o->filters_json, "{}") != 0) return RAGD_EUNSUPPORTED;
  switch (o->mode) {
    case RAG_SEARCH_KEYWORD:
    case RAG_SEARCH_HYBRID: /* keyword only until a vector index exists */
      return e->store.ops->search_bm25(e->store.ctx, o->query, o->k, out);
    case RAG_SEARCH_VECTOR:
      break;
  }
  return RAGD_EUNSUPPORTED;
}

ragd_err rag_search(struct rag_engine *e, const char *query, size_t k, struct store_hit_list *out) {
  struct rag_search_opts o = {query, k, RAG_SEARCH_HYBRID, NULL};
  return rag_search_ex(e, &o, out);
}
