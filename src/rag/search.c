/* search.c - retrieval for a query: the one place that decides which rankers
 * run for a search mode. */
#include <string.h>

#include "rag/rag.h"

static const char *const mode_names[] = {"hybrid", "keyword", "vector"};

int rag_search_mode_parse(const char *name) {
  for (int i = 0; i < 3; i++)
    if (strcmp(name, mode_names[i]) == 0) return i;
  return -1;
}

const char *rag_search_mode_name(enum rag_search_mode mode) {
  return (unsigned)mode < 3 ? mode_names[mode] : "unknown";
}

ragd_err rag_search_ex(struct rag_engine *e, const struct rag_search_opts *o,
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
