/* search.c - retrieval for a query: the one place that decides which rankers
 * run for a search mode and how their lists are fused. */
#include <stdlib.h>
#include <string.h>

#include "rag/rag_int.h"
#include "util/log.h"

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

static int filters_empty(const char *filters_json) {
  if (!filters_json) return 1;
  while (*filters_json == ' ' || *filters_json == '\t' || *filters_json == '\n' || *filters_json == '\r')
    filters_json++;
  return strncmp(filters_json, "{}", 2) == 0 && filters_json[2 + strspn(filters_json + 2, " \t\r\n")] == '\0';
}

static void hit_move(struct store_hit *dst, struct store_hit *src) {
  *dst = *src;
  memset(src, 0, sizeof *src);
}

static int rowid_cmp(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Pseudo-relevance feedback (Rocchio): moves the query vector towards the
 * mean of the vectors of the best keyword hits, so the vector ranker looks
 * for more passages like the ones BM25 (which knows term rarity) put first.
 * Caller holds the index read lock. */
static void add_feedback(struct rag_engine *e, float *q, size_t dim, const int64_t *ids, size_t n) {
  float *v = malloc(dim * sizeof *v);
  size_t used = 0, i, j;
  if (!v) return;
  float *sum = calloc(dim, sizeof *sum);
  if (!sum) {
    free(v);
    return;
  }
  for (i = 0; i < n; i++) {
    if (e->index.ops->get(e->index.ctx, ids[i], v) != RAGD_OK) continue;
    for (j = 0; j < dim; j++) sum[j] += v[j];
    used++;
  }
  if (used) {
    for (j = 0; j < dim; j++) q[j] += (float)(e->vector_feedback / (double)used) * sum[j];
    embed_l2_normalize(q, dim);
  }
  free(v);
  free(sum);
}

/* The store's own vector search (pgvector): filters and feedback run in the
 * same query; the hits it returns go to *pre for fetch_chunks. */
static ragd_err store_vector_ranking(struct rag_engine *e, const struct rag_search_opts *o,
                                     const float *q, size_t dim, size_t k, const int64_t *feedback,
                                     size_t nfeedback, struct retrieve_hit *out, size_t *n,
                                     struct store_hit_list *pre) {
  struct store_vector_query vq = {e->embedder.model_key, dim, q, k, o->filters_json,
                                  feedback, nfeedback, e->vector_feedback};
  ragd_err rc = e->store.ops->search_vectors(e->store.ctx, &vq, pre);
  if (rc) return rc;
  for (size_t i = 0; i < pre->count && i < k; i++) {
    out[i].id = pre->items[i].chunk_rowid;
    out[i].group = pre->items[i].document_rowid;
    out[i].score = (float)pre->items[i].score;
    *n = i + 1;
  }
  return RAGD_OK;
}

/* The vector ranking: up to k hits of the index (or the store, with the
 * hits in *pre) for the query's embedding, best first, restricted to
 * documents matching the filters. */
static ragd_err vector_ranking(struct rag_engine *e, const struct rag_search_opts *o, size_t k,
                               const int64_t *feedback, size_t nfeedback,
                               struct retrieve_hit **out, size_t *n, struct store_hit_list *pre) {
  struct retrieve_filter flt = {1, NULL, 0};
  int64_t *groups = NULL;
  float *q = NULL;
  struct slice text;
  struct buf err;
  size_t dim = 0;
  int local;
  ragd_err rc;

  *out = NULL;
  *n = 0;
  buf_init(&err, 0);
  if (!e->vector_in_store && !filters_empty(o->filters_json)) {
    rc = e->store.ops->filter_documents(e->store.ctx, o->filters_json, &groups, &flt.count);
    if (rc) goto out;
    flt.all = 0;
    flt.groups = groups;
    if (flt.count > 1) qsort(groups, flt.count, sizeof *groups, rowid_cmp);
    if (flt.count == 0) goto out; /* nothing can match */
  }
  rc = embed_ensure_dimensions(&e->embedder, &dim, &err);
  if (rc) goto embed_failed;
  q = malloc(dim * sizeof *q);
  *out = malloc(k * sizeof **out);
  if (!q || !*out) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  text = slice_from_cstr(o->query);
  /* lsa projects the query under the index lock: a refit swaps model,
   * model key and index together under its write side (refit.c), so the
   * query vector is always of the index's model. In the store's search the
   * lock stays held through the query, which selects the vectors by the
   * model key read under it: one model's query never meets another's
   * vectors, and the old set is deleted only after the swap. A remote
   * embedder (its model key never changes) is called outside the lock. */
  local = strcmp(e->embedder.ops->name, "lsa") == 0;
  if (!local) rc = embed_texts(&e->embedder, &text, 1, q, &err);
  if (rc) goto embed_failed;
  if (e->vector_in_store) {
    if (local) {
      pthread_rwlock_rdlock(&e->index_lock);
      rc = embed_texts(&e->embedder, &text, 1, q, &err);
      if (rc) {
        pthread_rwlock_unlock(&e->index_lock);
        goto embed_failed;
      }
      rc = store_vector_ranking(e, o, q, dim, k, feedback, nfeedback, *out, n, pre);
      pthread_rwlock_unlock(&e->index_lock);
    } else {
      rc = store_vector_ranking(e, o, q, dim, k, feedback, nfeedback, *out, n, pre);
    }
    goto out;
  }
  pthread_rwlock_rdlock(&e->index_lock);
  if (local) rc = embed_texts(&e->embedder, &text, 1, q, &err);
  if (!rc && e->index.ops && e->index.dim == dim) {
    if (nfeedback && e->vector_feedback > 0) add_feedback(e, q, dim, feedback, nfeedback);
    rc = e->index.ops->search(e->index.ctx, q, k, &flt, *out, n);
  }
  pthread_rwlock_unlock(&e->index_lock);
  if (rc && local) goto embed_failed;
  goto out;
embed_failed:
  log_warn("search: cannot embed the query: %s", err.data ? err.data : ragd_strerror(rc));
  if (rc != RAGD_ENOMEM && rc != RAGD_EINVAL) rc = RAGD_EUPSTREAM;
out:
  if (rc) {
    free(*out);
    *out = NULL;
    *n = 0;
  }
  buf_dispose(&err);
  free(q);
  free(groups);
  return rc;
}

/* The index in pre of the unused hit of chunk id, or pre->count. */
static size_t pre_find(const struct store_hit_list *pre, int64_t id) {
  size_t j;
  for (j = 0; j < pre->count; j++)
    if (pre->items[j].chunk_id && pre->items[j].chunk_rowid == id) break;
  return j;
}

/* Fetches the chunks with these ids, in this order: from pre (may be NULL;
 * the store's vector search already read them) when it holds them all,
 * else from the store; ids missing from the store are dropped from the
 * index. */
static ragd_err fetch_chunks(struct rag_engine *e, const int64_t *ids, size_t n,
                             struct store_hit_list *pre, struct store_hit_list *out) {
  size_t i, j, missing_n = 0;
  int64_t *missing;
  ragd_err rc;
  for (i = 0; pre && i < n && pre_find(pre, ids[i]) < pre->count; i++) {
  }
  if (pre && pre->count && i == n) {
    out->items = calloc(n + 1, sizeof *out->items);
    if (!out->items) return RAGD_ENOMEM;
    for (i = 0; i < n; i++) hit_move(&out->items[out->count++], &pre->items[pre_find(pre, ids[i])]);
    return RAGD_OK;
  }
  rc = e->store.ops->get_chunks(e->store.ctx, ids, n, out);
  if (rc || out->count == n) return rc;
  missing = malloc(n * sizeof *missing);
  if (!missing) return RAGD_OK;
  for (i = 0, j = 0; i < n; i++) {
    if (j < out->count && out->items[j].chunk_rowid == ids[i]) j++;
    else missing[missing_n++] = ids[i];
  }
  rag_index_forget(e, missing, missing_n);
  free(missing);
  return RAGD_OK;
}


/* The in-memory keyword ranking (see rag_keyword_ensure): up to k chunk ids
 * and scores, best first, as the store's search_bm25_filtered would rank
 * them; no chunk is read. *out is malloc'd. */
static ragd_err keyword_ranking(struct rag_engine *e, const struct rag_search_opts *o, size_t k,
                                struct retrieve_bm25_hit **out, size_t *n) {
  struct retrieve_filter flt = {1, NULL, 0};
  int64_t *groups = NULL;
  ragd_err rc = rag_keyword_ensure(e);
  *out = NULL;
  *n = 0;
  if (rc) return rc;
  if (!filters_empty(o->filters_json)) {
    rc = e->store.ops->filter_documents(e->store.ctx, o->filters_json, &groups, &flt.count);
    if (rc) goto out;
    flt.all = 0;
    flt.groups = groups;
    if (flt.count > 1) qsort(groups, flt.count, sizeof *groups, rowid_cmp);
    if (flt.count == 0) goto out;
  }
  *out = malloc((k ? k : 1) * sizeof **out);
  if (!*out) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  pthread_rwlock_rdlock(&e->index_lock);
  if (e->keyword) rc = retrieve_bm25_search(e->keyword, o->query, k, &flt, *out, n);
  pthread_rwlock_unlock(&e->index_lock);
out:
  if (rc) {
    free(*out);
    *out = NULL;
    *n = 0;
  }
  free(groups);
  return rc;
}

/* Keyword mode from the in-memory index: the hits' chunks are read from the
 * store; a chunk the store no longer has (deleted behind the index's back)
 * is dropped from the indexes and the ranking is made again without it. */
static ragd_err keyword_memory(struct rag_engine *e, const struct rag_search_opts *o, size_t k,
                               struct store_hit_list *out) {
  struct retrieve_bm25_hit *kh = NULL;
  int64_t *ids = NULL;
  size_t n = 0, i, j, attempt;
  ragd_err rc = RAGD_OK;
  for (attempt = 0; attempt < 4; attempt++) {
    store_hit_list_dispose(out);
    free(kh);
    free(ids);
    kh = NULL;
    ids = NULL;
    rc = keyword_ranking(e, o, k, &kh, &n);
    if (rc || n == 0) goto out;
    ids = malloc(n * sizeof *ids);
    if (!ids) {
      rc = RAGD_ENOMEM;
      goto out;
    }
    for (i = 0; i < n; i++) ids[i] = kh[i].id;
    rc = fetch_chunks(e, ids, n, NULL, out);
    if (rc || out->count == n) break;
  }
  for (i = 0, j = 0; i < out->count; i++) {
    while (j < n && kh[j].id != out->items[i].chunk_rowid) j++;
    if (j == n) break;
    out->items[i].score = kh[j].score;
  }
out:
  if (rc) store_hit_list_dispose(out);
  free(kh);
  free(ids);
  return rc;
}

static ragd_err search_keyword(struct rag_engine *e, const struct rag_search_opts *o, size_t k,
                               struct store_hit_list *out) {
  ragd_err rc = e->keyword_memory
                    ? keyword_memory(e, o, k, out)
                    : e->store.ops->search_bm25_filtered(e->store.ctx, o->query, k, o->filters_json, out);
  if (rc) return rc;
  for (size_t i = 0; i < out->count; i++) {
    out->items[i].keyword_rank = i + 1;
    out->items[i].keyword_score = out->items[i].score;
  }
  return RAGD_OK;
}

static ragd_err search_vector(struct rag_engine *e, const struct rag_search_opts *o,
                              struct store_hit_list *out) {
  struct retrieve_hit *vh = NULL;
  struct store_hit_list pre = {0};
  int64_t *ids = NULL;
  size_t n = 0, i, j;
  ragd_err rc = vector_ranking(e, o, o->k, NULL, 0, &vh, &n, &pre);
  if (rc || n == 0) goto out;
  ids = malloc(n * sizeof *ids);
  if (!ids) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  for (i = 0; i < n; i++) ids[i] = vh[i].id;
  rc = fetch_chunks(e, ids, n, &pre, out);
  if (rc) goto out;
  for (i = 0, j = 0; i < out->count; i++) {
    while (j < n && vh[j].id != out->items[i].chunk_rowid) j++;
    if (j == n) break;
    out->items[i].vector_rank = j + 1;
    out->items[i].vector_score = vh[j].score;
    out->items[i].score = vh[j].score;
  }
out:
  store_hit_list_dispose(&pre);
  free(vh);
  free(ids);
  return rc;
}

/* Hybrid: both rankings to depth, fused, then the fused top k's chunks.
 * With the store's BM25 the keyword hits arrive with their chunks; with the
 * in-memory index only ids do, and only the fused top k is read. */
static ragd_err search_hybrid(struct rag_engine *e, const struct rag_search_opts *o,
                              struct store_hit_list *out) {
  size_t depth = (size_t)e->cfg->rrf_depth > o->k ? (size_t)e->cfg->rrf_depth : o->k;
  struct store_hit_list kw = {0}, fetched = {0}, result = {0}, pre = {0};
  struct retrieve_hit *vh = NULL;
  struct retrieve_bm25_hit *kh = NULL;
  struct retrieve_fused *fused = NULL;
  struct retrieve_ranking rk[2];
  int64_t *kw_ids = NULL, *vec_ids = NULL, *need = NULL;
  double *kw_scores = NULL, *vec_scores = NULL;
  size_t nk = 0, nv = 0, nf = 0, nneed = 0, i, j;
  ragd_err rc;

  if (e->keyword_memory) {
    rc = keyword_ranking(e, o, depth, &kh, &nk);
  } else {
    rc = search_keyword(e, o, depth, &kw);
    nk = kw.count;
  }
  if (rc) goto out;
  kw_ids = malloc((nk + 1) * sizeof *kw_ids);
  kw_scores = malloc((nk + 1) * sizeof *kw_scores);
  if (!kw_ids || !kw_scores) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  for (i = 0; i < nk; i++) {
    kw_ids[i] = kh ? kh[i].id : kw.items[i].chunk_rowid;
    kw_scores[i] = kh ? kh[i].score : kw.items[i].score;
  }
  {
    int64_t fb[8];
    size_t nfb = nk < e->vector_feedback_docs ? nk : e->vector_feedback_docs;
    if (nfb > 8) nfb = 8;
    for (i = 0; i < nfb; i++) fb[i] = kw_ids[i];
    rc = vector_ranking(e, o, depth, fb, nfb, &vh, &nv, &pre);
  }
  if (rc == RAGD_EUPSTREAM) {
    /* the embeddings server is down: keyword alone still answers */
    rc = RAGD_OK;
    nv = 0;
    if (o->degraded) *o->degraded = 1;
  }
  if (rc) goto out;
  vec_ids = malloc((nv + 1) * sizeof *vec_ids);
  vec_scores = malloc((nv + 1) * sizeof *vec_scores);
  if (!vec_ids || !vec_scores) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  /* A passage only the vector ranker found must reach the floor: below it a
   * cosine says "shares a few character n-grams", not "answers the
   * question" (a nonsense question would otherwise always get passages). */
  for (i = 0, j = 0; i < nv; i++) {
    int in_keyword = 0;
    for (size_t m = 0; m < nk && !in_keyword; m++) in_keyword = kw_ids[m] == vh[i].id;
    if (in_keyword || vh[i].score >= e->vector_min_score) vh[j++] = vh[i];
  }
  nv = j;
  for (i = 0; i < nv; i++) {
    vec_ids[i] = vh[i].id;
    vec_scores[i] = vh[i].score;
  }
  if (e->fusion_blend) {
    rk[0] = (struct retrieve_ranking){kw_ids, nk, 1.0 - e->blend_weight_vector, kw_scores};
    rk[1] = (struct retrieve_ranking){vec_ids, nv, e->blend_weight_vector, vec_scores};
    rc = retrieve_blend(rk, 2, e->blend_norm, o->k, &fused, &nf);
  } else {
    rk[0] = (struct retrieve_ranking){kw_ids, nk, e->rrf_weight_keyword, NULL};
    rk[1] = (struct retrieve_ranking){vec_ids, nv, e->rrf_weight_vector, NULL};
    rc = retrieve_rrf(rk, 2, e->rrf_k, o->k, &fused, &nf);
  }
  if (rc || nf == 0) goto out;
  /* chunks not read yet: all of them with the in-memory index, else the
   * ones only the vector ranker found */
  need = malloc(nf * sizeof *need);
  result.items = calloc(nf, sizeof *result.items);
  if (!need || !result.items) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  for (i = 0; i < nf; i++)
    if (kh || !fused[i].ranks[0]) need[nneed++] = fused[i].id;
  rc = fetch_chunks(e, need, nneed, &pre, &fetched);
  if (rc) goto out;
  for (i = 0; i < nf; i++) {
    const struct retrieve_fused *f = &fused[i];
    struct store_hit *h = &result.items[result.count];
    if (f->ranks[0] && !kh) {
      hit_move(h, &kw.items[f->ranks[0] - 1]);
    } else {
      for (j = 0; j < fetched.count && fetched.items[j].chunk_rowid != f->id; j++) {
      }
      if (j == fetched.count) continue; /* deleted meanwhile */
      hit_move(h, &fetched.items[j]);
    }
    h->keyword_rank = f->ranks[0];
    h->keyword_score = f->ranks[0] ? kw_scores[f->ranks[0] - 1] : 0;
    h->vector_rank = f->ranks[1];
    h->vector_score = f->ranks[1] ? vh[f->ranks[1] - 1].score : 0;
    h->score = f->score;
    result.count++;
  }
  *out = result;
  result.items = NULL;
  result.count = 0;
out:
  store_hit_list_dispose(&kw);
  store_hit_list_dispose(&pre);
  store_hit_list_dispose(&fetched);
  store_hit_list_dispose(&result);
  free(vh);
  free(kh);
  free(fused);
  free(kw_ids);
  free(kw_scores);
  free(vec_scores);
  free(vec_ids);
  free(need);
  return rc;
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
  struct store_hit_list hits = {0};
  ragd_err rc;
  if (!e || !o || !o->query || !out) return RAGD_EINVAL;
  memset(out, 0, sizeof *out);
  if (o->k == 0) return RAGD_OK;
  rag_sync_external(e);
  switch (o->mode) {
    case RAG_SEARCH_KEYWORD:
      rc = search_keyword(e, o, o->k, &hits);
      break;
    case RAG_SEARCH_VECTOR:
      rc = search_vector(e, o, &hits);
      break;
    case RAG_SEARCH_HYBRID:
      rc = search_hybrid(e, o, &hits);
      break;
    default:
      return RAGD_EINVAL;
  }
  if (rc) {
    store_hit_list_dispose(&hits);
    return rc;
  }
  *out = hits;
  return RAGD_OK;
}

ragd_err rag_search(struct rag_engine *e, const char *query, size_t k, struct store_hit_list *out) {
  struct rag_search_opts o = {query, k, RAG_SEARCH_HYBRID, NULL, NULL};
  return rag_search_ex(e, &o, out);
}
