/* refit.c - the lsa embedder's model over the engine's life: loaded from the
 * store at start-up (blob "lsa.model"), fitted when there is none, refitted
 * when the corpus has changed by RAGD_LSA_REFIT_FRACTION since the last fit,
 * and swapped in together with a vector index built for it.
 *
 * The swap is the point. A refit
 *   1. reads every stored chunk and fits a new model off to the side (no
 *      lock: searches and ingests go on with the current model);
 *   2. embeds every chunk it read with the new basis into a new index and
 *      stores those vectors under the new model key, batch by batch (still
 *      no engine lock; the old key's vectors stay, so a restart now loads
 *      the old model with its complete vectors);
 *   3. stores the model blob;
 *   4. takes model_lock for writing: ingests in flight finish first and new
 *      ones wait. Chunks written since step 1 (folded in with the old
 *      basis) are embedded with the new one and added; then, under the
 *      index write lock, the index and the embedder's model are swapped;
 *   5. deletes the old key's vectors.
 * A search projects its query under the index read lock (search.c), so the
 * query vector and the index always come from the same model. Ingest holds
 * model_lock for reading from embedding to index update, so its vectors are
 * of the model the index has. Lock order: refit_mu, model_lock, index_lock,
 * the embedder's own lock.
 *
 * A crash between 3 and 4 leaves the new model stored with the vectors of
 * step 2; at start-up rag_lsa_open folds in whatever chunk lacks a vector
 * under the stored model, so nothing is lost. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rag/rag_int.h"
#include "util/clock.h"
#include "util/log.h"

#define LSA_BLOB_NAME "lsa.model"
/* The stored model's key beside it (a few bytes): a running process reads
 * this one when the store moves, and the model only when the key is not
 * its own (rag_lsa_pick_up). */
#define LSA_KEY_BLOB_NAME "lsa.model.key"
#define REFIT_BATCH 256

/* Chunks read from the store, with their embedding inputs. */
struct chunk_set {
  int64_t *rowids;
  int64_t *docids;
  struct buf *inputs;
  size_t count, cap;
};

static void chunk_set_dispose(struct chunk_set *s) {
  for (size_t i = 0; i < s->count; i++) buf_dispose(&s->inputs[i]);
  free(s->rowids);
  free(s->docids);
  free(s->inputs);
  memset(s, 0, sizeof *s);
}

static ragd_err chunk_set_add(struct chunk_set *s, const struct store_chunk_text *c) {
  if (s->count == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 256;
    int64_t *r = realloc(s->rowids, cap * sizeof *r);
    if (!r) return RAGD_ENOMEM;
    s->rowids = r;
    int64_t *d = realloc(s->docids, cap * sizeof *d);
    if (!d) return RAGD_ENOMEM;
    s->docids = d;
    struct buf *b = realloc(s->inputs, cap * sizeof *b);
    if (!b) return RAGD_ENOMEM;
    s->inputs = b;
    s->cap = cap;
  }
  buf_init(&s->inputs[s->count], 0);
  s->rowids[s->count] = c->chunk_rowid;
  s->docids[s->count] = c->document_rowid;
  s->count++;
  return rag_embed_input(&s->inputs[s->count - 1], c->title, c->heading_path, c->text,
                         strlen(c->text));
}

/* Every chunk without a vector under (model, dim), ascending by row id. With
 * a key nothing is stored under, that is every chunk. */
static ragd_err read_chunks(struct rag_engine *e, const char *model, size_t dim,
                            struct chunk_set *out) {
  struct store_chunk_text_list batch = {0};
  int64_t after = 0;
  ragd_err rc;
  for (;;) {
    store_chunk_text_list_dispose(&batch);
    rc = e->store.ops->chunks_without_vectors(e->store.ctx, model, dim, after, REFIT_BATCH,
                                              &batch);
    if (rc || batch.count == 0) break;
    for (size_t i = 0; i < batch.count && !rc; i++) rc = chunk_set_add(out, &batch.items[i]);
    if (rc) break;
    after = batch.items[batch.count - 1].chunk_rowid;
  }
  store_chunk_text_list_dispose(&batch);
  return rc;
}

static void set_slices(const struct chunk_set *s, size_t from, size_t n, struct slice *texts) {
  for (size_t i = 0; i < n; i++) {
    texts[i].ptr = s->inputs[from + i].data ? s->inputs[from + i].data : "";
    texts[i].len = s->inputs[from + i].len;
  }
}

/* Embeds s with m into ix and the store (under m's key). replace: the
 * chunks' documents may already be in ix with older chunks (documents
 * rewritten since the fit read them): those are removed first. */
static ragd_err embed_into(struct rag_engine *e, const struct embed_lsa_model *m,
                           const struct chunk_set *s, struct retrieve_index *ix, int replace) {
  struct slice texts[REFIT_BATCH];
  size_t dim = ix->dim, i, j;
  float *vecs = malloc(REFIT_BATCH * dim * sizeof *vecs);
  int64_t last_doc = 0;
  ragd_err rc = vecs ? RAGD_OK : RAGD_ENOMEM;
  for (i = 0; !rc && i < s->count; i += REFIT_BATCH) {
    size_t n = s->count - i < REFIT_BATCH ? s->count - i : REFIT_BATCH;
    set_slices(s, i, n, texts);
    rc = embed_lsa_model_embed(m, texts, n, vecs);
    if (!rc)
      rc = e->store.ops->put_vectors(e->store.ctx, embed_lsa_model_key(m), dim, s->rowids + i,
                                     vecs, n);
    for (j = 0; j < n && !rc; j++) {
      if (replace) {
        /* a document's chunks are written together, so they come together */
        if (s->docids[i + j] != last_doc) ix->ops->remove_group(ix->ctx, s->docids[i + j]);
        last_doc = s->docids[i + j];
        ix->ops->remove(ix->ctx, s->rowids[i + j]);
      }
      rc = ix->ops->add(ix->ctx, s->rowids[i + j], s->docids[i + j], vecs + j * dim);
    }
  }
  free(vecs);
  return rc;
}

/* The swap: *ix becomes the engine's index and *m its model together,
 * under the index write lock (the caller holds the model lock); *old gets
 * the index they replace, for the caller to destroy outside the lock.
 * max_rowid: the largest chunk row id *ix holds, when it may be past what
 * the engine's index has read from the store (0: not). */
static void swap_in(struct rag_engine *e, struct retrieve_index *ix, struct embed_lsa_model **m,
                    int64_t max_rowid, struct retrieve_index *old) {
  pthread_rwlock_wrlock(&e->index_lock);
  *old = e->index;
  e->index = *ix;
  memset(ix, 0, sizeof *ix);
  if (max_rowid > e->vector_max_rowid) e->vector_max_rowid = max_rowid;
  embed_lsa_install(&e->embedder, *m);
  *m = NULL;
  pthread_rwlock_unlock(&e->index_lock);
}

ragd_err rag_lsa_refit(struct rag_engine *e, const struct slice *extra, size_t n_extra,
                       struct buf *err) {
  struct chunk_set all = {0}, late = {0};
  struct embed_lsa_model *m = NULL;
  struct retrieve_index ix = {0}, old = {0};
  struct slice *texts = NULL;
  struct buf blob;
  size_t changed_before, dim = embed_dimensions(&e->embedder), fitted = 0;
  int64_t t0 = clock_mono_us(), t_fit = 0;
  ragd_err rc;

  if (strcmp(e->embedder.ops->name, "lsa") != 0) return RAGD_EINVAL;
  buf_init(&blob, 0);
  pthread_mutex_lock(&e->refit_mu);
  changed_before = atomic_load(&e->lsa_changed);
  /* 1. every stored chunk (none has a vector under this key) */
  rc = read_chunks(e, "lsa:fit-scan", 1, &all);
  if (rc) goto out;
  texts = calloc(all.count + n_extra + 1, sizeof *texts);
  if (!texts) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  set_slices(&all, 0, all.count, texts);
  for (size_t i = 0; i < n_extra; i++) texts[all.count + i] = extra[i];
  rc = embed_lsa_model_fit(&e->embedder, texts, all.count + n_extra, &m, err);
  if (rc) goto out;
  fitted = all.count + n_extra;
  t_fit = clock_mono_us();
  /* 2. the new index, and the vectors in the store */
  rc = retrieve_index_create(e->memory_index, dim, &ix);
  if (!rc) rc = embed_into(e, m, &all, &ix, 0);
  if (!rc && e->vector_in_store) {
    /* the store searches the vectors (pgvector): index the new key's set
     * now, before the swap sends searches to it (k 0 prepares, no hits) */
    struct store_vector_query pq;
    struct store_hit_list none = {0};
    memset(&pq, 0, sizeof pq);
    pq.model = embed_lsa_model_key(m);
    pq.dim = dim;
    rc = e->store.ops->search_vectors(e->store.ctx, &pq, &none);
    store_hit_list_dispose(&none);
  }
  /* 3. the model */
  if (!rc) rc = embed_lsa_model_encode(m, &blob);
  if (!rc) rc = e->store.ops->put_blob(e->store.ctx, LSA_BLOB_NAME, blob.data, blob.len);
  if (!rc)
    rc = e->store.ops->put_blob(e->store.ctx, LSA_KEY_BLOB_NAME, embed_lsa_model_key(m),
                                strlen(embed_lsa_model_key(m)));
  if (rc) {
    if (err && err->len == 0) buf_appendf(err, "lsa: cannot store the new model: %s", ragd_strerror(rc));
    goto out;
  }
  /* 4. what was written meanwhile, then the swap */
  pthread_rwlock_wrlock(&e->model_lock);
  rc = read_chunks(e, embed_lsa_model_key(m), dim, &late);
  if (!rc) rc = embed_into(e, m, &late, &ix, 1);
  if (!rc) swap_in(e, &ix, &m, 0, &old);
  pthread_rwlock_unlock(&e->model_lock);
  if (rc) goto out;
  /* 5. the old fit's vectors (the key is ours to read: only refits change it) */
  rc = e->store.ops->delete_other_vectors(e->store.ctx, e->embedder.model_key, dim, NULL);
  atomic_fetch_sub(&e->lsa_changed, changed_before);
  log_info("lsa: fitted %s on %zu chunks in %.2f s, %zu vectors in %.2f s (%zu written during "
           "the fit)",
           e->embedder.model_key, fitted, (double)(t_fit - t0) / 1e6, all.count + late.count,
           (double)(clock_mono_us() - t_fit) / 1e6, late.count);
out:
  pthread_mutex_unlock(&e->refit_mu);
  if (rc && err && err->len == 0) buf_appendf(err, "lsa refit: %s", ragd_strerror(rc));
  retrieve_index_destroy(&old);
  retrieve_index_destroy(&ix);
  embed_lsa_model_free(m);
  chunk_set_dispose(&all);
  chunk_set_dispose(&late);
  free(texts);
  buf_dispose(&blob);
  return rc;
}

/* ---- start-up ---------------------------------------------------------------- */

/* The lsa.model file that versions before the model moved into the store
 * kept beside ragd.db; NULL for other stores. */
static ragd_err legacy_model_path(const struct ragd_config *cfg, struct buf *out) {
  const char *dir = cfg->data_dir;
  if (cfg->store && cfg->store[0]) {
    if (strncmp(cfg->store, "sqlite:", 7) != 0) return RAGD_EUNSUPPORTED;
    dir = cfg->store + 7;
  }
  return buf_appendf(out, "%s/lsa.model", dir);
}

/* RAGD_ENOTFOUND when path does not exist. */
static ragd_err read_file(const char *path, struct buf *out) {
  char chunk[65536];
  size_t got;
  ragd_err rc = RAGD_OK;
  FILE *f = fopen(path, "rb");
  if (!f) return errno == ENOENT ? RAGD_ENOTFOUND : RAGD_EIO;
  while (!rc && (got = fread(chunk, 1, sizeof chunk, f)) > 0) rc = buf_append(out, chunk, got);
  if (!rc && ferror(f)) rc = RAGD_EIO;
  fclose(f);
  return rc;
}

ragd_err rag_lsa_open(struct rag_engine *e, struct buf *err) {
  struct embed_lsa_model *m = NULL;
  struct buf path, file;
  void *data = NULL;
  size_t len = 0;
  ragd_err rc;

  buf_init(&path, 0);
  buf_init(&file, 0);
  rc = e->store.ops->get_blob(e->store.ctx, LSA_BLOB_NAME, &data, &len);
  if (!rc) {
    rc = embed_lsa_model_decode(&e->embedder, data, len, &m);
    if (!rc) embed_lsa_install(&e->embedder, m);
  } else if (rc == RAGD_ENOTFOUND && legacy_model_path(e->cfg, &path) == RAGD_OK) {
    /* Once: the model file of an earlier version moves into the store. */
    rc = read_file(path.data, &file);
    if (!rc) rc = embed_lsa_model_decode(&e->embedder, file.data, file.len, &m);
    if (!rc) rc = e->store.ops->put_blob(e->store.ctx, LSA_BLOB_NAME, file.data, file.len);
    if (!rc) {
      embed_lsa_install(&e->embedder, m);
      m = NULL;
      log_info("lsa: moved the model in %s into the store (the file is no longer read)", path.data);
    }
    embed_lsa_model_free(m);
  }
  free(data);
  if (rc == RAGD_ENOTFOUND) {
    log_info("lsa: no model yet; the first ingest or `ragd reindex` fits one");
    rc = RAGD_OK;
  } else if (rc == RAGD_ECONFIG) {
    log_warn("lsa: the stored model has another rank than RAGD_LSA_RANK; run `ragd reindex` to "
             "refit");
    rc = RAGD_OK;
  } else if (rc && err && err->len == 0) {
    buf_appendf(err, "cannot load the lsa model from the store: %s", ragd_strerror(rc));
  }
  buf_dispose(&path);
  buf_dispose(&file);
  return rc;
}

/* The change counter after a model arrived: the corpus may have moved on
 * since its fit (ingests by another process), by the difference between
 * the store's chunks and the fit's. */
static void lsa_changed_from_store(struct rag_engine *e) {
  struct store_stats stats = {0};
  size_t fitted = embed_lsa_fitted_chunks(&e->embedder);
  if (e->store.ops->stats(e->store.ctx, &stats) == RAGD_OK)
    atomic_store(&e->lsa_changed, stats.chunks > fitted ? stats.chunks - fitted : fitted - stats.chunks);
}

ragd_err rag_lsa_catch_up(struct rag_engine *e) {
  struct chunk_set late = {0};
  size_t dim = embed_dimensions(&e->embedder);
  ragd_err rc = RAGD_OK;
  if (!embed_lsa_fitted(&e->embedder)) return RAGD_OK;
  /* At start-up no other thread runs; later the model lock keeps refits out. */
  pthread_rwlock_wrlock(&e->model_lock);
  rc = read_chunks(e, e->embedder.model_key, dim, &late);
  if (!rc && late.count) {
    pthread_rwlock_wrlock(&e->index_lock);
    if (!e->index.ops) rc = retrieve_index_create(e->memory_index, dim, &e->index);
    /* folding in reads only the embedder's model, which this lock holds still */
    if (!rc) {
      struct slice texts[REFIT_BATCH];
      float *vecs = malloc(REFIT_BATCH * dim * sizeof *vecs);
      rc = vecs ? RAGD_OK : RAGD_ENOMEM;
      for (size_t i = 0; !rc && i < late.count; i += REFIT_BATCH) {
        size_t n = late.count - i < REFIT_BATCH ? late.count - i : REFIT_BATCH;
        set_slices(&late, i, n, texts);
        rc = embed_texts(&e->embedder, texts, n, vecs, NULL);
        if (!rc)
          rc = e->store.ops->put_vectors(e->store.ctx, e->embedder.model_key, dim,
                                         late.rowids + i, vecs, n);
        for (size_t j = 0; j < n && !rc; j++) {
          e->index.ops->remove(e->index.ctx, late.rowids[i + j]);
          rc = e->index.ops->add(e->index.ctx, late.rowids[i + j], late.docids[i + j],
                                 vecs + j * dim);
        }
      }
      free(vecs);
    }
    pthread_rwlock_unlock(&e->index_lock);
    if (!rc) log_info("lsa: folded in %zu chunks stored without a vector of %s", late.count,
                      e->embedder.model_key);
  }
  pthread_rwlock_unlock(&e->model_lock);
  if (!rc) lsa_changed_from_store(e);
  chunk_set_dispose(&late);
  return rc;
}

/* ---- a refit made by another process ------------------------------------------ */

struct pick_up_load {
  struct retrieve_index *ix;
  int64_t max_rowid;
  ragd_err rc;
};

static int pick_up_vector_cb(void *ctx, int64_t chunk_rowid, int64_t document_rowid,
                             const float *v, size_t dim) {
  struct pick_up_load *pl = ctx;
  if (dim != pl->ix->dim) return 0;
  pl->rc = pl->ix->ops->add(pl->ix->ctx, chunk_rowid, document_rowid, v);
  if (chunk_rowid > pl->max_rowid) pl->max_rowid = chunk_rowid;
  return pl->rc != RAGD_OK;
}

ragd_err rag_lsa_pick_up(struct rag_engine *e) {
  struct embed_lsa_model *m = NULL;
  struct retrieve_index ix = {0}, old = {0};
  struct chunk_set late = {0};
  struct pick_up_load pl = {0};
  void *data = NULL;
  size_t len = 0, dim = embed_dimensions(&e->embedder);
  ragd_err rc;

  if (strcmp(e->embedder.ops->name, "lsa") != 0) return RAGD_OK;
  /* a refit of this process's own is running: it will store its model, the
   * key blob moves again, and the next look decides */
  if (pthread_mutex_trylock(&e->refit_mu) != 0) return RAGD_ECANCELLED;
  rc = e->store.ops->get_blob(e->store.ctx, LSA_KEY_BLOB_NAME, &data, &len);
  if (rc == RAGD_ENOTFOUND) { /* a model of an earlier version, or none: the next start */
    rc = RAGD_OK;
    goto out;
  }
  /* only refits change model_key, and they hold refit_mu, as this does */
  if (rc || (len == strlen(e->embedder.model_key) && memcmp(data, e->embedder.model_key, len) == 0))
    goto out;
  free(data);
  data = NULL;
  rc = e->store.ops->get_blob(e->store.ctx, LSA_BLOB_NAME, &data, &len);
  if (!rc) rc = embed_lsa_model_decode(&e->embedder, data, len, &m);
  if (rc == RAGD_ECONFIG) { /* another rank than ours: as at start-up, until `ragd reindex` */
    log_debug("lsa: the stored model has another rank than RAGD_LSA_RANK; not picked up");
    rc = RAGD_OK;
    goto out;
  }
  if (rc || strcmp(embed_lsa_model_key(m), e->embedder.model_key) == 0) goto out;
  /* the other process stored the new model's vectors before the model */
  rc = retrieve_index_create(e->memory_index, dim, &ix);
  if (rc) goto out;
  pl.ix = &ix;
  rc = e->store.ops->load_vectors(e->store.ctx, embed_lsa_model_key(m), dim, pick_up_vector_cb, &pl);
  if (rc == RAGD_ECANCELLED && pl.rc) rc = pl.rc;
  if (rc) goto out;
  /* what has no vector of it yet (that process's last writes, or ours),
   * then the swap, as a refit of our own does */
  pthread_rwlock_wrlock(&e->model_lock);
  rc = read_chunks(e, embed_lsa_model_key(m), dim, &late);
  if (!rc) rc = embed_into(e, m, &late, &ix, 1);
  if (!rc) {
    for (size_t i = 0; i < late.count; i++)
      if (late.rowids[i] > pl.max_rowid) pl.max_rowid = late.rowids[i];
    swap_in(e, &ix, &m, pl.max_rowid, &old);
  }
  pthread_rwlock_unlock(&e->model_lock);
  if (rc) goto out;
  lsa_changed_from_store(e);
  log_info("lsa: picked up %s, fitted by another process (%zu chunks folded in)",
           e->embedder.model_key, late.count);
out:
  pthread_mutex_unlock(&e->refit_mu);
  retrieve_index_destroy(&old);
  retrieve_index_destroy(&ix);
  embed_lsa_model_free(m);
  chunk_set_dispose(&late);
  free(data);
  return rc;
}

/* ---- the trigger ---------------------------------------------------------------- */

static int refit_due(struct rag_engine *e) {
  size_t fitted = embed_lsa_fitted_chunks(&e->embedder);
  size_t changed = atomic_load(&e->lsa_changed);
  if (e->lsa_refit_fraction <= 0 || fitted == 0 || changed == 0) return 0;
  return (double)changed >= e->lsa_refit_fraction * (double)fitted;
}

static void *refit_thread(void *arg) {
  struct rag_engine *e = arg;
  struct buf err;
  ragd_err rc;
  buf_init(&err, 0);
  log_info("lsa: %zu chunks changed since the fit on %zu: refitting in the background",
           atomic_load(&e->lsa_changed), embed_lsa_fitted_chunks(&e->embedder));
  rc = rag_lsa_refit(e, NULL, 0, &err);
  if (rc) log_warn("lsa: background refit failed: %s", err.data ? err.data : ragd_strerror(rc));
  buf_dispose(&err);
  pthread_mutex_lock(&e->refit_state_mu);
  e->refit_running = 0;
  pthread_mutex_unlock(&e->refit_state_mu);
  return NULL;
}

/* Starts a background refit when one is due and none runs. */
static void refit_maybe_start(struct rag_engine *e) {
  if (!e->lsa_background || !refit_due(e)) return;
  pthread_mutex_lock(&e->refit_state_mu);
  if (!e->refit_running && !e->refit_closing) {
    if (e->refit_started) pthread_join(e->refit_thread, NULL);
    e->refit_started = 0;
    if (pthread_create(&e->refit_thread, NULL, refit_thread, e) == 0) {
      e->refit_started = 1;
      e->refit_running = 1;
    } else {
      log_warn("lsa: cannot start a background refit: %s", strerror(errno));
    }
  }
  pthread_mutex_unlock(&e->refit_state_mu);
}

void rag_lsa_note_change(struct rag_engine *e, size_t chunks) {
  if (strcmp(e->embedder.ops->name, "lsa") != 0 || chunks == 0) return;
  atomic_fetch_add(&e->lsa_changed, chunks);
  refit_maybe_start(e);
}

void rag_lsa_background(struct rag_engine *e, int on) {
  e->lsa_background = on;
  if (on && strcmp(e->embedder.ops->name, "lsa") == 0) refit_maybe_start(e);
}

ragd_err rag_lsa_refit_if_due(struct rag_engine *e, int *refitted, struct buf *err) {
  if (refitted) *refitted = 0;
  if (strcmp(e->embedder.ops->name, "lsa") != 0 || !refit_due(e)) return RAGD_OK;
  if (refitted) *refitted = 1;
  return rag_lsa_refit(e, NULL, 0, err);
}

void rag_lsa_wait(struct rag_engine *e) {
  pthread_mutex_lock(&e->refit_state_mu);
  e->refit_closing = 1;
  int started = e->refit_started;
  e->refit_started = 0;
  pthread_mutex_unlock(&e->refit_state_mu);
  if (started) pthread_join(e->refit_thread, NULL);
}
