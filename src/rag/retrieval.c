/* retrieval.c - the engine's embedder and vector index: made at start-up,
 * loaded from the store, kept in step by ingest, rebuilt by reindex. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard/guard.h"
#include "rag/rag_int.h"
#include "util/clock.h"
#include "util/log.h"

#define REINDEX_BATCH 64

static ragd_err parse_weight(const char *var, const char *value, double *out, struct buf *err) {
  char *end = NULL;
  double w;
  errno = 0;
  w = strtod(value, &end);
  if (errno || end == value || *end || !isfinite(w) || w < 0 || w > 1000) {
    if (err) buf_appendf(err, "%s: expected a decimal from 0 to 1000, got \"%s\"", var, value);
    return RAGD_ECONFIG;
  }
  *out = w;
  return RAGD_OK;
}

/* Reads a decimal in [lo, hi] from value; names var in err otherwise. */
static ragd_err parse_range(const char *var, const char *value, double lo, double hi, double *out,
                            struct buf *err) {
  char *end = NULL;
  double v;
  errno = 0;
  v = strtod(value, &end);
  if (errno || end == value || *end || !isfinite(v) || v < lo || v > hi) {
    if (err) buf_appendf(err, "%s: expected a decimal from %g to %g, got \"%s\"", var, lo, hi, value);
    return RAGD_ECONFIG;
  }
  *out = v;
  return RAGD_OK;
}

/* RAGD_KEYWORD_INDEX, RAGD_KEYWORD_TOKENS and the BM25 parameters. The store's
 * BM25 query knows only the defaults, so other values need the in-memory
 * index (and with it the SQLite store). */
static ragd_err keyword_settings(struct rag_engine *e, struct buf *err) {
  const struct ragd_config *cfg = e->cfg;
  struct retrieve_bm25_params *p = &e->bm25, d;
  const char *w = cfg->bm25_weights;
  char *end = NULL;
  double *ws[3] = {&p->w_title, &p->w_heading, &p->w_text};
  ragd_err rc;

  retrieve_bm25_params_default(p);
  d = *p;
  if (strcmp(cfg->keyword_index, "memory") != 0 && strcmp(cfg->keyword_index, "store") != 0) {
    if (err) buf_appendf(err, "RAGD_KEYWORD_INDEX: expected memory or store, got \"%s\"", cfg->keyword_index);
    return RAGD_ECONFIG;
  }
  if (strcmp(cfg->keyword_tokens, "bigrams") == 0) p->tokens = RETRIEVE_TOKENS_BIGRAMS;
  else if (strcmp(cfg->keyword_tokens, "words") == 0) p->tokens = RETRIEVE_TOKENS_WORDS;
  else if (strcmp(cfg->keyword_tokens, "both") == 0) p->tokens = RETRIEVE_TOKENS_BOTH;
  else {
    if (err) buf_appendf(err, "RAGD_KEYWORD_TOKENS: expected bigrams, words or both, got \"%s\"", cfg->keyword_tokens);
    return RAGD_ECONFIG;
  }
  rc = parse_range("RAGD_BM25_K1", cfg->bm25_k1, 0, 10, &p->k1, err);
  if (!rc) rc = parse_range("RAGD_BM25_B", cfg->bm25_b, 0, 1, &p->b, err);
  if (rc) return rc;
  for (int i = 0; i < 3; i++) {
    errno = 0;
    *ws[i] = strtod(w, &end);
    if (errno || end == w || !isfinite(*ws[i]) || *ws[i] < 0 || *ws[i] > 100 ||
        (i < 2 && *end != ',') || (i == 2 && *end)) {
      if (err) buf_appendf(err, "RAGD_BM25_WEIGHTS: expected three decimals from 0 to 100 (title, heading, text), e.g. 2,1.5,1, got \"%s\"", cfg->bm25_weights);
      return RAGD_ECONFIG;
    }
    w = end + 1;
  }
  e->keyword_memory = strcmp(cfg->keyword_index, "memory") == 0 &&
                      strcmp(e->store.ops->name, "sqlite") == 0;
  if (!e->keyword_memory && memcmp(p, &d, sizeof d) != 0) {
    if (err) buf_appendf(err, "RAGD_KEYWORD_TOKENS and RAGD_BM25_* other than their defaults need RAGD_KEYWORD_INDEX=memory and the SQLite store");
    return RAGD_ECONFIG;
  }
  return RAGD_OK;
}

/* Called by load_vectors for each stored vector. */
static int load_one(void *ctx, int64_t chunk_rowid, int64_t document_rowid, const float *v,
                    size_t dim) {
  struct rag_engine *e = ctx;
  (void)dim;
  if (chunk_rowid > e->vector_max_rowid) e->vector_max_rowid = chunk_rowid;
  return e->index.ops->add(e->index.ctx, chunk_rowid, document_rowid, v) != RAGD_OK;
}

/* Where vectors are searched (RAGD_VECTOR_INDEX): auto and store take the
 * store's own search when it has one; on PostgreSQL without pgvector
 * start-up fails there, saying how to enable it or how to opt out. */
static ragd_err vector_search_choose(struct rag_engine *e, struct buf *err) {
  const char *mode = e->cfg->vector_index, *why = NULL;
  int in_store = strcmp(mode, "auto") == 0 || strcmp(mode, "store") == 0;
  if (!in_store) return RAGD_OK;
  if (!e->store.ops->search_vectors) {
    if (strcmp(mode, "auto") == 0) return RAGD_OK;
    if (err)
      buf_appendf(err, "RAGD_VECTOR_INDEX=store: the %s store has no vector search of its own "
                       "(use int8 or exact)", e->store.ops->name);
    return RAGD_ECONFIG;
  }
  if (!e->store.ops->vector_search_available(e->store.ctx, &why)) {
    if (err)
      buf_appendf(err, "vector search on %s needs pgvector: %s (or set RAGD_VECTOR_INDEX=int8 "
                       "to keep the vectors in each node's memory instead: a node then finds "
                       "vectors stored through another only after a restart)",
                  e->store.ops->name, why ? why : "not available");
    return RAGD_ECONFIG;
  }
  e->vector_in_store = 1;
  return RAGD_OK;
}

/* Store search: makes sure the set of the embedder's vectors is indexed
 * (an HNSW build on the first start over a large set takes a while). */
static ragd_err vector_set_prepare(struct rag_engine *e, size_t dim) {
  struct store_vector_query q;
  struct store_hit_list none = {0};
  ragd_err rc;
  memset(&q, 0, sizeof q);
  q.model = e->embedder.model_key;
  q.dim = dim;
  rc = e->store.ops->search_vectors(e->store.ctx, &q, &none);
  store_hit_list_dispose(&none);
  if (!rc)
    log_info("vector search: in the %s store (%s, %zu dimensions)", e->store.ops->name,
             e->embedder.model_key, dim);
  return rc;
}

static ragd_err index_create_and_load(struct rag_engine *e, size_t dim) {
  ragd_err rc = retrieve_index_create(e->memory_index, dim, &e->index);
  if (rc) return rc;
  return e->store.ops->load_vectors(e->store.ctx, e->embedder.model_key, dim, load_one, e);
}

/* Logs vectors of other models or dimensions: they are never searched, and
 * `ragd reindex` replaces them. */
static ragd_err report_model_switch(struct rag_engine *e, size_t dim, size_t *learned_dim) {
  struct store_vector_model_list models = {0};
  struct store_stats stats = {0};
  size_t i, ours = 0;
  ragd_err rc = e->store.ops->vector_models(e->store.ctx, &models);
  if (rc) return rc;
  for (i = 0; i < models.count; i++) {
    const struct store_vector_model *m = &models.items[i];
    int same_model = strcmp(m->model, e->embedder.model_key) == 0;
    if (same_model && (dim == 0 || m->dimensions == dim)) {
      ours += m->count;
      if (dim == 0 && learned_dim) *learned_dim = m->dimensions;
      continue;
    }
    log_warn("store holds %zu vectors of %s (%zu dimensions) but the embedder is %s (%zu "
             "dimensions): they are not searched; run `ragd reindex` to re-embed",
             m->count, m->model, m->dimensions, e->embedder.model_key, dim);
  }
  store_vector_model_list_dispose(&models);
  /* lsa folds such chunks in at start-up (rag_lsa_catch_up) */
  if (strcmp(e->embedder.ops->name, "lsa") != 0 &&
      e->store.ops->stats(e->store.ctx, &stats) == RAGD_OK && stats.chunks > ours)
    log_warn("%zu of %zu chunks have no %s vector; vector search skips them until `ragd "
             "reindex`", stats.chunks - ours, stats.chunks, e->embedder.model_key);
  return RAGD_OK;
}

/* RAGD_FUSION and the blend's settings, checked whichever fusion is chosen
 * (a typo in a setting not in use yet should not wait to be found). */
static ragd_err fusion_settings(struct rag_engine *e, struct buf *err) {
  const struct ragd_config *cfg = e->cfg;
  ragd_err rc;
  if (strcmp(cfg->fusion, "rrf") == 0) {
    e->fusion_blend = 0;
  } else if (strcmp(cfg->fusion, "blend") == 0) {
    e->fusion_blend = 1;
  } else {
    if (err) buf_appendf(err, "RAGD_FUSION: expected rrf or blend, got \"%s\"", cfg->fusion);
    return RAGD_ECONFIG;
  }
  if (strcmp(cfg->blend_norm, "minmax") == 0) {
    e->blend_norm = RETRIEVE_BLEND_MINMAX;
  } else if (strcmp(cfg->blend_norm, "zscore") == 0) {
    e->blend_norm = RETRIEVE_BLEND_ZSCORE;
  } else {
    if (err) buf_appendf(err, "RAGD_BLEND_NORM: expected minmax or zscore, got \"%s\"", cfg->blend_norm);
    return RAGD_ECONFIG;
  }
  /* "": set once the embedder is known (rag_retrieval_open) */
  if (!cfg->blend_weight_vector[0]) return RAGD_OK;
  rc = parse_range("RAGD_BLEND_WEIGHT_VECTOR", cfg->blend_weight_vector, 0, 1,
                   &e->blend_weight_vector, err);
  return rc;
}

ragd_err rag_retrieval_open(struct rag_engine *e, struct buf *err) {
  const struct ragd_config *cfg = e->cfg;
  struct embed_config ec;
  size_t dim, learned = 0;
  ragd_err rc;

  rc = parse_weight("RAGD_RRF_WEIGHT_KEYWORD", cfg->rrf_weight_keyword, &e->rrf_weight_keyword, err);
  if (!rc) rc = parse_weight("RAGD_RRF_WEIGHT_VECTOR", cfg->rrf_weight_vector, &e->rrf_weight_vector, err);
  if (rc) return rc;
  e->rrf_k = (double)cfg->rrf_k;
  rc = fusion_settings(e, err);
  if (rc) return rc;
  rc = parse_weight("RAGD_HYBRID_FEEDBACK", cfg->hybrid_feedback, &e->vector_feedback, err);
  if (rc) return rc;
  e->vector_feedback_docs = (size_t)cfg->hybrid_feedback_docs;
  if (strcmp(cfg->vector_index, "auto") != 0 && strcmp(cfg->vector_index, "store") != 0 &&
      strcmp(cfg->vector_index, "int8") != 0 && strcmp(cfg->vector_index, "exact") != 0) {
    if (err)
      buf_appendf(err, "RAGD_VECTOR_INDEX: expected auto, store, int8 or exact, got \"%s\"",
                  cfg->vector_index);
    return RAGD_ECONFIG;
  }
  e->memory_index = strcmp(cfg->vector_index, "exact") == 0 ? "exact" : "int8";
  rc = vector_search_choose(e, err);
  if (!rc) rc = keyword_settings(e, err);
  if (rc) return rc;
  rc = parse_weight("RAGD_LSA_REFIT_FRACTION", cfg->lsa_refit_fraction, &e->lsa_refit_fraction, err);
  if (rc) return rc;
  if (pthread_rwlock_init(&e->index_lock, NULL) != 0) return RAGD_ENOMEM;
  if (pthread_rwlock_init(&e->model_lock, NULL) != 0) {
    pthread_rwlock_destroy(&e->index_lock);
    return RAGD_ENOMEM;
  }
  pthread_mutex_init(&e->refit_mu, NULL);
  pthread_mutex_init(&e->refit_state_mu, NULL);
  atomic_init(&e->lsa_changed, 0);
  e->index_lock_ready = 1;
  if (pthread_mutex_init(&e->sync_mu, NULL) != 0) return RAGD_ENOMEM;
  e->sync_ready = 1;
  /* read before the indexes load: a commit from now on moves it */
  if (e->store.ops->data_version && e->store.ops->data_version(e->store.ctx, &e->data_version))
    e->data_version = 0;
  memset(&ec, 0, sizeof ec);
  ec.provider = cfg->embedder[0] ? cfg->embedder : cfg->embed_base_url[0] ? "openai" : "hash";
  ec.base_url = cfg->embed_base_url;
  ec.api_key = cfg->embed_api_key;
  ec.model = cfg->embed_model;
  ec.pii_mask = strcmp(cfg->pii_mask_embed, "on") == 0 ? GUARD_PII_ALL : 0;
  ec.dimensions = cfg->embed_dimensions;
  ec.batch_size = cfg->embed_batch_size;
  ec.batch_tokens = cfg->embed_batch_tokens;
  ec.max_retries = cfg->embed_max_retries;
  ec.timeout_ms = cfg->embed_timeout_ms;
  if (strcmp(ec.provider, "lsa") == 0) ec.dimensions = cfg->lsa_rank;
  rc = embed_create(&ec, &e->embedder, err);
  if (rc) return rc;
  if (strcmp(e->embedder.ops->name, "lsa") == 0) {
    rc = rag_lsa_open(e, err);
    if (rc) goto fail;
  }
  /* hash cosines under 0.3 come from a few shared character n-grams (a
   * nonsense question scores about 0.2 against the sample knowledge base) */
  if (cfg->vector_min_score[0]) {
    rc = parse_weight("RAGD_VECTOR_MIN_SCORE", cfg->vector_min_score, &e->vector_min_score, err);
    if (rc) return rc;
  } else {
    e->vector_min_score = strcmp(e->embedder.ops->name, "hash") == 0 ? 0.3 : 0;
  }
  /* the blend's vector weight by measurement (docs/retrieval.md): the
   * lexical hash vectors help BM25 most at 0.3, lsa at 0.4 (0.5 is better on
   * en_stackfaq alone, worse on en_xquad) */
  if (!cfg->blend_weight_vector[0])
    e->blend_weight_vector = strcmp(e->embedder.ops->name, "hash") == 0 ? 0.3 : 0.4;
  dim = embed_dimensions(&e->embedder);
  rc = report_model_switch(e, dim, &learned);
  if (rc) goto fail;
  if (dim == 0) dim = learned; /* openai: the dimension its stored vectors have */
  if (dim && e->vector_in_store) {
    rc = vector_set_prepare(e, dim);
    if (rc) goto fail;
  } else if (dim) {
    rc = index_create_and_load(e, dim);
    if (rc) goto fail;
    log_info("vector index: %zu vectors of %s, %zu dimensions (%s)",
             e->index.ops->count(e->index.ctx), e->embedder.model_key, dim, e->index.ops->name);
  }
  if (strcmp(e->embedder.ops->name, "lsa") == 0) {
    rc = rag_lsa_catch_up(e);
    if (rc) goto fail;
  }
  return RAGD_OK;
fail:
  if (err && err->len == 0)
    buf_appendf(err, "cannot load the vector index: %s", ragd_strerror(rc));
  return rc;
}

void rag_retrieval_close(struct rag_engine *e) {
  if (e->index_lock_ready) rag_lsa_wait(e);
  retrieve_index_destroy(&e->index);
  retrieve_bm25_destroy(e->keyword);
  e->keyword = NULL;
  embed_destroy(&e->embedder);
  if (e->index_lock_ready) {
    pthread_rwlock_destroy(&e->index_lock);
    pthread_rwlock_destroy(&e->model_lock);
    pthread_mutex_destroy(&e->refit_mu);
    pthread_mutex_destroy(&e->refit_state_mu);
  }
  if (e->sync_ready) pthread_mutex_destroy(&e->sync_mu);
  e->sync_ready = 0;
  e->index_lock_ready = 0;
}

ragd_err rag_index_ensure(struct rag_engine *e, size_t dim) {
  ragd_err rc = RAGD_OK;
  if (e->vector_in_store) return RAGD_OK;
  pthread_rwlock_wrlock(&e->index_lock);
  if (!e->index.ops) rc = retrieve_index_create(e->memory_index, dim, &e->index);
  else if (e->index.dim != dim) rc = RAGD_EINVAL;
  pthread_rwlock_unlock(&e->index_lock);
  return rc;
}

ragd_err rag_index_put_doc(struct rag_engine *e, int64_t document_rowid,
                           const int64_t *chunk_rowids, const float *vectors, size_t n,
                           size_t dim) {
  ragd_err rc = RAGD_OK;
  size_t i;
  if (e->vector_in_store) return RAGD_OK; /* the store has them already */
  pthread_rwlock_wrlock(&e->index_lock);
  if (!e->index.ops) {
    rc = retrieve_index_create(e->memory_index, dim, &e->index);
    if (rc) goto out;
  }
  if (e->index.dim != dim) {
    rc = RAGD_EINVAL;
    goto out;
  }
  e->index.ops->remove_group(e->index.ctx, document_rowid);
  /* Row ids of chunks deleted behind the index's back (DELETE /v1/documents)
   * may have been reused for these chunks. */
  for (i = 0; i < n; i++) e->index.ops->remove(e->index.ctx, chunk_rowids[i]);
  for (i = 0; i < n && !rc; i++)
    rc = e->index.ops->add(e->index.ctx, chunk_rowids[i], document_rowid, vectors + i * dim);
out:
  pthread_rwlock_unlock(&e->index_lock);
  return rc;
}

void rag_index_forget(struct rag_engine *e, const int64_t *chunk_rowids, size_t n) {
  if (n == 0) return;
  pthread_rwlock_wrlock(&e->index_lock);
  for (size_t i = 0; e->index.ops && i < n; i++) e->index.ops->remove(e->index.ctx, chunk_rowids[i]);
  for (size_t i = 0; e->keyword && i < n; i++) retrieve_bm25_remove(e->keyword, chunk_rowids[i]);
  pthread_rwlock_unlock(&e->index_lock);
}

ragd_err rag_embed_input(struct buf *out, const char *title, const char *heading_path,
                         const char *text, size_t text_len) {
  ragd_err rc = RAGD_OK;
  if (title && title[0]) rc = buf_appendf(out, "%s\n", title);
  if (!rc && heading_path && heading_path[0]) rc = buf_appendf(out, "%s\n", heading_path);
  if (!rc) rc = buf_append(out, text, text_len);
  return rc;
}

ragd_err rag_reindex(struct rag_engine *e, void (*progress)(void *ctx, size_t done),
                     void *progress_ctx, size_t *embedded, size_t *dropped, struct buf *err) {
  struct store_chunk_text_list batch = {0};
  struct slice texts[REINDEX_BATCH];
  struct buf inputs[REINDEX_BATCH];
  int64_t rowids[REINDEX_BATCH];
  float *vecs = NULL;
  int64_t after = 0;
  size_t done = 0, i, dim = embed_dimensions(&e->embedder);
  ragd_err rc = RAGD_OK;

  *embedded = 0;
  *dropped = 0;
  for (i = 0; i < REINDEX_BATCH; i++) buf_init(&inputs[i], 0);
  /* lsa: a new model over the whole corpus, every chunk embedded with it
   * and swapped in; the loop below then finds nothing left to embed. */
  if (strcmp(e->embedder.ops->name, "lsa") == 0) {
    rc = rag_lsa_refit(e, NULL, 0, err);
    if (rc) goto out;
  }
  rc = embed_ensure_dimensions(&e->embedder, &dim, err);
  if (rc) goto out;
  rc = rag_index_ensure(e, dim);
  if (rc) goto out;
  vecs = malloc(REINDEX_BATCH * dim * sizeof *vecs);
  if (!vecs) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  for (;;) {
    store_chunk_text_list_dispose(&batch);
    rc = e->store.ops->chunks_without_vectors(e->store.ctx, e->embedder.model_key, dim, after,
                                              REINDEX_BATCH, &batch);
    if (rc || batch.count == 0) break;
    for (i = 0; i < batch.count && !rc; i++) {
      const struct store_chunk_text *c = &batch.items[i];
      buf_reset(&inputs[i]);
      rc = rag_embed_input(&inputs[i], c->title, c->heading_path, c->text, strlen(c->text));
      texts[i].ptr = inputs[i].data ? inputs[i].data : "";
      texts[i].len = inputs[i].len;
      rowids[i] = c->chunk_rowid;
    }
    if (rc) break;
    rc = embed_texts(&e->embedder, texts, batch.count, vecs, err);
    if (!rc)
      rc = e->store.ops->put_vectors(e->store.ctx, e->embedder.model_key, dim, rowids, vecs,
                                     batch.count);
    if (rc) break;
    pthread_rwlock_wrlock(&e->index_lock);
    for (i = 0; i < batch.count && !rc && !e->vector_in_store; i++) {
      e->index.ops->remove(e->index.ctx, rowids[i]);
      rc = e->index.ops->add(e->index.ctx, rowids[i], batch.items[i].document_rowid, vecs + i * dim);
    }
    pthread_rwlock_unlock(&e->index_lock);
    if (rc) break;
    done += batch.count;
    after = batch.items[batch.count - 1].chunk_rowid;
    if (progress) progress(progress_ctx, done);
  }
  if (!rc) rc = e->store.ops->delete_other_vectors(e->store.ctx, e->embedder.model_key, dim, dropped);
  if (!rc) rc = e->store.ops->rebuild_keyword_index(e->store.ctx);
out:
  *embedded = done;
  store_chunk_text_list_dispose(&batch);
  for (i = 0; i < REINDEX_BATCH; i++) buf_dispose(&inputs[i]);
  free(vecs);
  return rc;
}

/* ---- the in-memory keyword index ---- */

#define KEYWORD_LOAD_BATCH 1000

ragd_err rag_keyword_ensure(struct rag_engine *e) {
  struct store_chunk_text_list batch = {0};
  struct retrieve_bm25 *ix = NULL;
  int64_t after = 0, t0;
  ragd_err rc = RAGD_OK;
  size_t i;

  if (!e->keyword_memory) return RAGD_OK;
  pthread_rwlock_rdlock(&e->index_lock);
  ix = e->keyword;
  pthread_rwlock_unlock(&e->index_lock);
  if (ix) return RAGD_OK;
  /* Loaded under the write lock: searches wait once, and ingest cannot
   * slip a document between the scan and the index going live. */
  pthread_rwlock_wrlock(&e->index_lock);
  if (e->keyword) goto out;
  t0 = clock_mono_us();
  rc = retrieve_bm25_create(&e->bm25, &ix);
  /* every chunk: none has a vector under this key */
  while (!rc) {
    store_chunk_text_list_dispose(&batch);
    rc = e->store.ops->chunks_without_vectors(e->store.ctx, "keyword:scan", 1, after,
                                              KEYWORD_LOAD_BATCH, &batch);
    if (rc || batch.count == 0) break;
    for (i = 0; i < batch.count && !rc; i++) {
      const struct store_chunk_text *c = &batch.items[i];
      rc = retrieve_bm25_add(ix, c->chunk_rowid, c->document_rowid, c->title, c->heading_path,
                             c->text, strlen(c->text));
    }
    after = batch.items[batch.count - 1].chunk_rowid;
  }
  if (!rc && after > e->keyword_max_rowid) e->keyword_max_rowid = after;
  store_chunk_text_list_dispose(&batch);
  if (rc) {
    log_warn("keyword index: cannot load: %s", ragd_strerror(rc));
    retrieve_bm25_destroy(ix);
    goto out;
  }
  retrieve_bm25_shrink(ix);
  e->keyword = ix;
  log_info("keyword index: %zu chunks in %.2f s, %zu bytes", retrieve_bm25_count(ix),
           (double)(clock_mono_us() - t0) / 1e6, retrieve_bm25_memory_bytes(ix));
out:
  pthread_rwlock_unlock(&e->index_lock);
  return rc;
}

void rag_keyword_put_doc(struct rag_engine *e, int64_t document_rowid, const int64_t *chunk_rowids,
                         const char *title, const struct text_chunk_list *chunks) {
  ragd_err rc = RAGD_OK;
  size_t i;
  pthread_rwlock_wrlock(&e->index_lock);
  if (!e->keyword) goto out; /* not loaded yet: its load will read the store */
  retrieve_bm25_remove_group(e->keyword, document_rowid);
  for (i = 0; i < chunks->count && !rc; i++) {
    const struct text_chunk *c = &chunks->items[i];
    rc = retrieve_bm25_add(e->keyword, chunk_rowids[i], document_rowid, title, c->heading_path,
                           c->text, c->text_len);
  }
  if (rc) {
    /* a partial document would rank wrongly: reload from the store instead */
    log_warn("keyword index: cannot add a document (%s); reloading on the next search",
             ragd_strerror(rc));
    retrieve_bm25_destroy(e->keyword);
    e->keyword = NULL;
  }
out:
  pthread_rwlock_unlock(&e->index_lock);
}

/* ---- another process's writes ---- */

#define SYNC_INTERVAL_US 200000

struct sync_vectors {
  int64_t after;
  size_t dim, n, cap;
  int64_t *ids, *groups;
  float *v;
  ragd_err rc;
};

static int sync_vector_cb(void *ctx, int64_t chunk_rowid, int64_t document_rowid, const float *v,
                          size_t dim) {
  struct sync_vectors *sv = ctx;
  if (chunk_rowid <= sv->after || dim != sv->dim) return 0;
  if (sv->n == sv->cap) {
    size_t cap = sv->cap ? sv->cap * 2 : 64;
    int64_t *ids = realloc(sv->ids, cap * sizeof *ids), *groups;
    float *vv;
    if (!ids) goto nomem;
    sv->ids = ids;
    groups = realloc(sv->groups, cap * sizeof *groups);
    if (!groups) goto nomem;
    sv->groups = groups;
    vv = realloc(sv->v, cap * dim * sizeof *vv);
    if (!vv) goto nomem;
    sv->v = vv;
    sv->cap = cap;
  }
  sv->ids[sv->n] = chunk_rowid;
  sv->groups[sv->n] = document_rowid;
  memcpy(sv->v + sv->n * dim, v, dim * sizeof *v);
  sv->n++;
  return 0;
nomem:
  sv->rc = RAGD_ENOMEM;
  return 1;
}

/* Reads what changed (outside the index lock), then applies it under the
 * write lock. Chunks already added by this process's own ingest are read
 * again and replaced by themselves. */
static ragd_err sync_apply(struct rag_engine *e) {
  struct store_chunk_text_list *batches = NULL;
  struct sync_vectors sv;
  int64_t *docs = NULL, kw_after, last = 0;
  size_t ndocs = 0, nb = 0, capb = 0, i, j, removed = 0, added = 0;
  int have_keyword;
  char key[sizeof e->embedder.model_key]; /* the index's model key (lsa refits change it) */
  ragd_err rc;

  memset(&sv, 0, sizeof sv);
  rc = e->store.ops->filter_documents(e->store.ctx, "{}", &docs, &ndocs);
  if (rc) goto out;
  pthread_rwlock_rdlock(&e->index_lock);
  have_keyword = e->keyword != NULL;
  kw_after = e->keyword_max_rowid;
  sv.after = e->vector_max_rowid;
  sv.dim = e->index.ops ? e->index.dim : 0;
  memcpy(key, e->embedder.model_key, sizeof key);
  pthread_rwlock_unlock(&e->index_lock);
  while (have_keyword) {
    if (nb == capb) {
      size_t cap = capb ? capb * 2 : 4;
      struct store_chunk_text_list *g = realloc(batches, cap * sizeof *g);
      if (!g) {
        rc = RAGD_ENOMEM;
        goto out;
      }
      batches = g;
      capb = cap;
    }
    memset(&batches[nb], 0, sizeof batches[nb]);
    rc = e->store.ops->chunks_without_vectors(e->store.ctx, "keyword:scan", 1, kw_after,
                                              KEYWORD_LOAD_BATCH, &batches[nb]);
    if (rc) goto out;
    if (batches[nb].count == 0) break;
    kw_after = batches[nb].items[batches[nb].count - 1].chunk_rowid;
    nb++;
  }
  if (sv.dim) {
    rc = e->store.ops->load_vectors(e->store.ctx, key, sv.dim, sync_vector_cb, &sv);
    if (rc == RAGD_ECANCELLED && sv.rc) rc = sv.rc;
    if (rc) goto out;
  }
  if (e->sync_between_hook) e->sync_between_hook(e);
  pthread_rwlock_wrlock(&e->index_lock);
  if (e->keyword && have_keyword) {
    removed = retrieve_bm25_keep_groups(e->keyword, docs, ndocs);
    for (i = 0; i < nb && !rc; i++) {
      for (j = 0; j < batches[i].count && !rc; j++) {
        const struct store_chunk_text *c = &batches[i].items[j];
        /* a document written again: its older chunks go first (a
         * document's chunks are stored together: consecutive row ids) */
        if (c->document_rowid != last) {
          retrieve_bm25_remove_group(e->keyword, c->document_rowid);
          last = c->document_rowid;
        }
        rc = retrieve_bm25_add(e->keyword, c->chunk_rowid, c->document_rowid, c->title,
                               c->heading_path, c->text, strlen(c->text));
        added++;
      }
    }
    if (kw_after > e->keyword_max_rowid) e->keyword_max_rowid = kw_after;
  }
  last = 0;
  /* an lsa refit swapped model and index meanwhile: these vectors are of
   * the old model; the caller looks again (RAGD_ECANCELLED) */
  if (sv.n && strcmp(key, e->embedder.model_key) != 0) rc = RAGD_ECANCELLED;
  else if (e->index.ops && e->index.dim == sv.dim) {
    for (i = 0; i < sv.n && !rc; i++) {
      if (sv.groups[i] != last) { /* load_vectors goes by chunk row id */
        e->index.ops->remove_group(e->index.ctx, sv.groups[i]);
        last = sv.groups[i];
      }
      e->index.ops->remove(e->index.ctx, sv.ids[i]);
      rc = e->index.ops->add(e->index.ctx, sv.ids[i], sv.groups[i], sv.v + i * sv.dim);
      if (sv.ids[i] > e->vector_max_rowid) e->vector_max_rowid = sv.ids[i];
    }
  }
  pthread_rwlock_unlock(&e->index_lock);
  if (added || removed || sv.n)
    log_info("another process changed the store: keyword index +%zu -%zu chunks, vector index +%zu",
             added, removed, sv.n);
out:
  for (i = 0; i < nb + (nb < capb ? 1 : 0) && batches; i++) store_chunk_text_list_dispose(&batches[i]);
  free(batches);
  free(docs);
  free(sv.ids);
  free(sv.groups);
  free(sv.v);
  return rc;
}

void rag_sync_external(struct rag_engine *e) {
  int64_t now = clock_mono_us();
  uint64_t v = 0;
  if (!e->sync_ready || !e->store.ops->data_version) return;
  if (now - __atomic_load_n(&e->sync_checked_us, __ATOMIC_RELAXED) < SYNC_INTERVAL_US) return;
  if (pthread_mutex_trylock(&e->sync_mu) != 0) return; /* another search is at it */
  __atomic_store_n(&e->sync_checked_us, now, __ATOMIC_RELAXED);
  if (e->store.ops->data_version(e->store.ctx, &v) == RAGD_OK && v != e->data_version) {
    /* a refit by the other process first: its new vectors are then ours */
    ragd_err picked = rag_lsa_pick_up(e), rc;
    if (picked && picked != RAGD_ECANCELLED)
      log_warn("cannot pick up another process's lsa model: %s", ragd_strerror(picked));
    rc = sync_apply(e);
    if (rc == RAGD_ECANCELLED) /* a refit's swap came between; the next search looks again */
      __atomic_store_n(&e->sync_checked_us, 0, __ATOMIC_RELAXED);
    else if (rc) log_warn("cannot apply another process's changes to the indexes: %s", ragd_strerror(rc));
    else if (!picked) e->data_version = v; /* else: the model again at the next look */
  }
  pthread_mutex_unlock(&e->sync_mu);
}
