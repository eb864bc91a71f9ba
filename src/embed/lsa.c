/* lsa.c - the offline semantic embedder: latent semantic analysis of the
 * knowledge base itself.
 *
 * A fit builds the term-by-chunk matrix A (terms as BM25 sees them:
 * text_tokenize + English stemming; weight = saturated tf x idf, the BM25
 * shape with k1 = 1.2, b = 0.75) and factors it with a randomized truncated
 * SVD (Halko, Martinsson, Tropp 2011): a Gaussian range finder with a fixed
 * seed, two power iterations re-orthonormalized with LAPACKE_dgeqrf/dorgqr,
 * then LAPACKE_dgesdd of the small projected matrix. A is only ever held
 * sparse (one term list per chunk); the products A*X and A^T*Y are written
 * here, the dense ones go to cblas_dgemm.
 *
 * A text's vector is U_k^T d (d its weighted term vector, U_k the first k
 * left singular vectors), L2-normalized. For a chunk of the fit that is its
 * row of V_k S_k, so a chunk embedded after the fit ("folded in") gets
 * exactly the vector it would have had inside the fit, up to the change its
 * presence would have made to idf and the basis.
 *
 * A model is immutable once built. The embedder holds the current one behind
 * a pointer guarded by a rwlock: embed takes the read side for the whole
 * projection; embed_lsa_install swaps the pointer under the write side, so a
 * text is never projected with half a model. When to swap (together with
 * the vector index) is rag/refit.c's business. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embed/embed.h"
#include "text/text.h"

#define LSA_MAGIC "RAGDLSA1"
#define LSA_FORMAT_VERSION 1u
#define LSA_OVERSAMPLE 10
#define LSA_POWER_ITERATIONS 2
#define LSA_TERM_MAX 64 /* longer terms (URLs, base64) are not vocabulary */
/* At most this many terms (the most frequent): keeps the basis (terms x rank
 * floats) and the model blob bounded on a very large corpus: 315 MB at rank
 * 300. */
#define LSA_VOCAB_MAX 262144
#define LSA_K1 1.2
#define LSA_B 0.75

struct embed_lsa_model {
  size_t rank;     /* vector dimension (columns of basis; some may be zero) */
  size_t terms;    /* vocabulary size */
  size_t chunks;   /* chunks the model was fitted on */
  uint64_t seed;
  uint64_t id;     /* checksum of the model: part of the model key */
  double avg_len;  /* mean chunk length in terms, for length normalization */
  char **vocab;    /* terms[i], sorted by bytes (binary search) */
  float *idf;      /* [terms] */
  float *basis;    /* [terms x rank], row-major */
  char key[64];    /* "lsa:v1:<rank>:<id>" */
};

struct lsa_embedder {
  pthread_rwlock_t lock;
  struct embed_lsa_model *model; /* NULL before the first fit */
  size_t rank;
  size_t min_df;
  uint64_t seed;
};

/* ---- terms -------------------------------------------------------------------- */

/* One text's distinct terms with their counts, sorted by bytes. Terms are
 * collected as they come (into one arena), then sorted and counted: a
 * chunk of a few hundred terms costs n log n compares, not n^2. */
struct lsa_bag {
  struct buf arena; /* every occurrence's term, NUL-terminated */
  size_t *off;      /* occurrence -> offset in arena */
  size_t n_occ, cap;
  char **term;      /* after lsa_bag_fill: distinct terms (into arena), sorted */
  unsigned *count;
  size_t n;
  size_t total; /* term occurrences */
  int failed;
};

static int lsa_term_cb(void *ctx, const char *term, size_t len, size_t start, size_t end) {
  struct lsa_bag *bag = ctx;
  char stem[LSA_TERM_MAX];
  (void)start;
  (void)end;
  if (len == 0 || len >= LSA_TERM_MAX) return 0;
  len = text_stem_en(term, len, stem);
  stem[len] = '\0';
  bag->total++;
  if (bag->n_occ == bag->cap) {
    size_t cap = bag->cap ? bag->cap * 2 : 64;
    size_t *o = realloc(bag->off, cap * sizeof *o);
    if (!o) goto oom;
    bag->off = o;
    bag->cap = cap;
  }
  bag->off[bag->n_occ++] = bag->arena.len;
  if (buf_append(&bag->arena, stem, len + 1) != RAGD_OK) goto oom;
  return 0;
oom:
  bag->failed = 1;
  return 1;
}

static void lsa_bag_dispose(struct lsa_bag *bag) {
  buf_dispose(&bag->arena);
  free(bag->off);
  free(bag->term);
  free(bag->count);
  memset(bag, 0, sizeof *bag);
}

static int lsa_str_cmp(const void *x, const void *y) {
  return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Fills bag with the terms of text. Invalid UTF-8 gives the terms before it. */
static ragd_err lsa_bag_fill(struct lsa_bag *bag, struct slice text) {
  ragd_err rc;
  size_t i, j;
  memset(bag, 0, sizeof *bag);
  buf_init(&bag->arena, 0);
  rc = text_tokenize(text.ptr ? text.ptr : "", text.ptr ? text.len : 0, lsa_term_cb, bag);
  if (bag->failed) return RAGD_ENOMEM;
  if (rc == RAGD_EUTF8) rc = RAGD_OK;
  if (rc || bag->n_occ == 0) return rc;
  bag->term = malloc(bag->n_occ * sizeof *bag->term);
  bag->count = malloc(bag->n_occ * sizeof *bag->count);
  if (!bag->term || !bag->count) return RAGD_ENOMEM;
  for (i = 0; i < bag->n_occ; i++) bag->term[i] = bag->arena.data + bag->off[i];
  qsort(bag->term, bag->n_occ, sizeof *bag->term, lsa_str_cmp);
  for (i = 0; i < bag->n_occ; i = j) {
    for (j = i + 1; j < bag->n_occ && strcmp(bag->term[j], bag->term[i]) == 0;) j++;
    bag->term[bag->n] = bag->term[i];
    bag->count[bag->n++] = (unsigned)(j - i);
  }
  return RAGD_OK;
}

static double lsa_weight(unsigned tf, size_t len, double avg_len, double idf) {
  double norm = LSA_K1 * (1 - LSA_B + LSA_B * (avg_len > 0 ? (double)len / avg_len : 1));
  return idf * (tf * (LSA_K1 + 1)) / (tf + norm);
}

static long lsa_vocab_find(const struct embed_lsa_model *m, const char *term) {
  size_t lo = 0, hi = m->terms;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(m->vocab[mid], term);
    if (c == 0) return (long)mid;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return -1;
}

static void lsa_model_free(struct embed_lsa_model *m) {
  if (!m) return;
  for (size_t i = 0; m->vocab && i < m->terms; i++) free(m->vocab[i]);
  free(m->vocab);
  free(m->idf);
  free(m->basis);
  free(m);
}

/* ---- the sparse matrix ---------------------------------------------------------- */

/* A, stored by chunk (CSC): chunk j's entries are term[start[j]..start[j+1])
 * with their weights. OpenBLAS has no sparse routines, so the two products
 * below are written here: every nonzero is one axpy of a dense row of l
 * floats (cblas_saxpy, vectorized by OpenBLAS). */
struct lsa_sparse {
  size_t rows, cols; /* terms, chunks */
  size_t *start;     /* [cols + 1] */
  uint32_t *term;
  float *weight;
};

/* Y (rows x l) = A X, X (cols x l); all row-major. */
static void lsa_mul(const struct lsa_sparse *a, const float *x, size_t l, float *y) {
  memset(y, 0, a->rows * l * sizeof *y);
  for (size_t j = 0; j < a->cols; j++)
    for (size_t p = a->start[j]; p < a->start[j + 1]; p++)
      cblas_saxpy((int)l, a->weight[p], x + j * l, 1, y + (size_t)a->term[p] * l, 1);
}

/* Z (cols x l) = A^T Y, Y (rows x l). */
static void lsa_mul_t(const struct lsa_sparse *a, const float *y, size_t l, float *z) {
  memset(z, 0, a->cols * l * sizeof *z);
  for (size_t j = 0; j < a->cols; j++)
    for (size_t p = a->start[j]; p < a->start[j + 1]; p++)
      cblas_saxpy((int)l, a->weight[p], y + (size_t)a->term[p] * l, 1, z + j * l, 1);
}

/* Replaces m (rows x l, rows >= l) by an orthonormal basis of its columns. */
static ragd_err lsa_orthonormalize(float *m, size_t rows, size_t l, float *tau) {
  if (LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, (int)rows, (int)l, m, (int)l, tau) != 0) return RAGD_ENOMEM;
  if (LAPACKE_sorgqr(LAPACK_ROW_MAJOR, (int)rows, (int)l, (int)l, m, (int)l, tau) != 0)
    return RAGD_ENOMEM;
  return RAGD_OK;
}

/* xorshift64* and Box-Muller: the same seed gives the same test matrix on
 * every machine. */
static double lsa_gauss(uint64_t *s) {
  double u1, u2;
  do {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    u1 = (double)((*s * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
  } while (u1 <= 0);
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  u2 = (double)((*s * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
  return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

/* The k leading left singular vectors (u: rows x k, row-major; columns past
 * the numerical rank are zero) and singular values (s: k) of a.
 *
 * Single precision throughout the large matrices (the basis is stored as
 * floats anyway; float halves memory and doubles the BLAS rate), double for
 * the small l x l SVD. With l = k + 10 columns and q power iterations:
 *   Y = A Omega; Q = qr(Y); q times { Z = qr(A^T Q); Q = qr(A Z) };
 *   Z = A^T Q = W R (QR, R only), R = U_r S V_r^T, so
 *   A ~ Q Q^T A = Q Z^T = Q R^T W^T = (Q V_r) S (W U_r)^T: u = Q V_r. */
static ragd_err lsa_svd(const struct lsa_sparse *a, size_t k, uint64_t seed, float *u, float *s) {
  size_t l = k + LSA_OVERSAMPLE, i, c;
  float *y = NULL, *z = NULL, *tau = NULL, *vt_f = NULL;
  double *r = NULL, *sv = NULL, *ur = NULL, *vt = NULL;
  uint64_t state = seed ? seed : 0x9E3779B97F4A7C15ULL;
  ragd_err rc = RAGD_OK;
  int it;

  memset(u, 0, a->rows * k * sizeof *u);
  memset(s, 0, k * sizeof *s);
  if (l > a->rows) l = a->rows;
  if (l > a->cols) l = a->cols;
  if (l == 0) return RAGD_OK;
  y = malloc(a->rows * l * sizeof *y);
  z = malloc(a->cols * l * sizeof *z);
  tau = malloc(l * sizeof *tau);
  r = calloc(l * l, sizeof *r);
  sv = malloc(l * sizeof *sv);
  ur = malloc(l * l * sizeof *ur);
  vt = malloc(l * l * sizeof *vt);
  vt_f = malloc(l * l * sizeof *vt_f);
  if (!y || !z || !tau || !r || !sv || !ur || !vt || !vt_f) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  for (i = 0; i < a->cols * l; i++) z[i] = (float)lsa_gauss(&state);
  lsa_mul(a, z, l, y);
  rc = lsa_orthonormalize(y, a->rows, l, tau);
  for (it = 0; it < LSA_POWER_ITERATIONS && !rc; it++) {
    lsa_mul_t(a, y, l, z);
    rc = lsa_orthonormalize(z, a->cols, l, tau);
    if (rc) break;
    lsa_mul(a, z, l, y);
    rc = lsa_orthonormalize(y, a->rows, l, tau);
  }
  if (rc) goto out;
  lsa_mul_t(a, y, l, z);
  if (LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, (int)a->cols, (int)l, z, (int)l, tau) != 0) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  for (i = 0; i < l; i++)
    for (c = i; c < l; c++) r[i * l + c] = z[i * l + c];
  if (LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'A', (int)l, (int)l, r, (int)l, sv, ur, (int)l, vt,
                     (int)l) != 0) {
    rc = RAGD_EINVAL;
    goto out;
  }
  /* u = Q V_r: vt holds V_r^T, so multiply by the transpose of its first k rows */
  for (i = 0; i < l * l; i++) vt_f[i] = (float)vt[i];
  if (k > l) {
    /* fewer columns than asked for: compute l, the rest stays zero */
    float *tmp = malloc(a->rows * l * sizeof *tmp);
    if (!tmp) {
      rc = RAGD_ENOMEM;
      goto out;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)a->rows, (int)l, (int)l, 1.0f, y,
                (int)l, vt_f, (int)l, 0.0f, tmp, (int)l);
    for (i = 0; i < a->rows; i++) memcpy(u + i * k, tmp + i * l, l * sizeof *u);
    free(tmp);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)a->rows, (int)k, (int)l, 1.0f, y,
                (int)l, vt_f, (int)l, 0.0f, u, (int)k);
  }
  for (c = 0; c < k && c < l; c++) {
    /* A fixed sign per column: its largest entry positive. */
    float best = 0;
    for (i = 0; i < a->rows; i++)
      if (fabsf(u[i * k + c]) > fabsf(best)) best = u[i * k + c];
    float sign = best < 0 ? -1.0f : 1.0f;
    s[c] = (float)sv[c];
    if (sv[c] <= sv[0] * 1e-5) { /* numerically zero (float): leave the column zero */
      for (i = 0; i < a->rows; i++) u[i * k + c] = 0;
      continue;
    }
    for (i = 0; i < a->rows; i++) u[i * k + c] *= sign;
  }
out:
  free(y);
  free(z);
  free(tau);
  free(r);
  free(sv);
  free(ur);
  free(vt);
  free(vt_f);
  return rc;
}

/* ---- fitting ----------------------------------------------------------------------- */

/* Every distinct term of the corpus, interned once: an open-addressing hash
 * table (FNV-1a) of ids, the terms (strings kept in 1 MiB blocks) and their
 * document frequencies by id. */
struct lsa_intern {
  struct lsa_slot {
    const char *term; /* NULL: empty */
    uint64_t hash;
    uint32_t id;
  } *slots;
  size_t cap;
  struct lsa_term_info {
    const char *term;
    uint32_t df;
  } *by_id;
  size_t n, by_cap;
  char **blocks;
  size_t n_blocks, block_used;
};

#define LSA_BLOCK (1u << 20)

static uint64_t lsa_fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

static void lsa_intern_dispose(struct lsa_intern *t) {
  for (size_t i = 0; i < t->n_blocks; i++) free(t->blocks[i]);
  free(t->blocks);
  free(t->slots);
  free(t->by_id);
  memset(t, 0, sizeof *t);
}

static ragd_err lsa_intern_grow(struct lsa_intern *t) {
  size_t cap = t->cap ? t->cap * 2 : (size_t)1 << 16, i;
  struct lsa_slot *slots = calloc(cap, sizeof *slots);
  if (!slots) return RAGD_ENOMEM;
  for (i = 0; i < t->cap; i++) {
    size_t h;
    if (!t->slots[i].term) continue;
    for (h = (size_t)(t->slots[i].hash & (cap - 1)); slots[h].term; h = (h + 1) & (cap - 1)) {
    }
    slots[h] = t->slots[i];
  }
  free(t->slots);
  t->slots = slots;
  t->cap = cap;
  return RAGD_OK;
}

/* The id of term (interning it), its df counted once more. */
static ragd_err lsa_intern(struct lsa_intern *t, const char *term, uint32_t *id) {
  size_t len = strlen(term), h;
  uint64_t hash = lsa_fnv(0xcbf29ce484222325ULL, term, len);
  ragd_err rc;
  if ((t->n + 1) * 2 > t->cap) {
    rc = lsa_intern_grow(t);
    if (rc) return rc;
  }
  for (h = (size_t)(hash & (t->cap - 1)); t->slots[h].term; h = (h + 1) & (t->cap - 1))
    if (t->slots[h].hash == hash && strcmp(t->slots[h].term, term) == 0) break;
  if (!t->slots[h].term) {
    char *copy;
    if (t->n >= UINT32_MAX - 1) return RAGD_ENOMEM;
    if (t->n == t->by_cap) {
      size_t cap = t->by_cap ? t->by_cap * 2 : 1024;
      struct lsa_term_info *b = realloc(t->by_id, cap * sizeof *b);
      if (!b) return RAGD_ENOMEM;
      t->by_id = b;
      t->by_cap = cap;
    }
    if (t->n_blocks == 0 || t->block_used + len + 1 > LSA_BLOCK) {
      char **b = realloc(t->blocks, (t->n_blocks + 1) * sizeof *b);
      if (!b) return RAGD_ENOMEM;
      t->blocks = b;
      t->blocks[t->n_blocks] = malloc(LSA_BLOCK);
      if (!t->blocks[t->n_blocks]) return RAGD_ENOMEM;
      t->n_blocks++;
      t->block_used = 0;
    }
    copy = t->blocks[t->n_blocks - 1] + t->block_used;
    memcpy(copy, term, len + 1);
    t->block_used += len + 1;
    t->slots[h] = (struct lsa_slot){copy, hash, (uint32_t)t->n};
    t->by_id[t->n++] = (struct lsa_term_info){copy, 0};
  }
  *id = t->slots[h].id;
  t->by_id[*id].df++;
  return RAGD_OK;
}

struct lsa_vocab_pick {
  const char *term;
  uint32_t df;
  uint32_t id;
};

/* Most chunks first; ties by bytes (deterministic). */
static int lsa_pick_by_df(const void *x, const void *y) {
  const struct lsa_vocab_pick *a = x, *b = y;
  if (a->df != b->df) return a->df > b->df ? -1 : 1;
  return strcmp(a->term, b->term);
}

static int lsa_pick_by_term(const void *x, const void *y) {
  return strcmp(((const struct lsa_vocab_pick *)x)->term, ((const struct lsa_vocab_pick *)y)->term);
}

/* The corpus as term ids and counts per chunk, before the vocabulary is
 * chosen. */
struct lsa_counts {
  size_t *start; /* [chunks + 1] */
  uint32_t *id;
  uint32_t *count;
  uint32_t *len; /* [chunks]: term occurrences of the chunk */
  size_t nnz, cap;
};

static void lsa_counts_dispose(struct lsa_counts *c) {
  free(c->start);
  free(c->id);
  free(c->count);
  free(c->len);
  memset(c, 0, sizeof *c);
}

static ragd_err lsa_fit_model(const struct lsa_embedder *le, const struct slice *texts, size_t n,
                              struct embed_lsa_model **out) {
  struct lsa_intern tab = {0};
  struct lsa_counts cnt = {0};
  struct lsa_vocab_pick *pick = NULL;
  uint32_t *id_to_term = NULL;
  struct lsa_sparse a = {0};
  struct embed_lsa_model *m = NULL;
  size_t i, j, p, total_len = 0, n_pick = 0;
  ragd_err rc = RAGD_OK;

  *out = NULL;
  m = calloc(1, sizeof *m);
  cnt.start = calloc(n + 1, sizeof *cnt.start);
  cnt.len = calloc(n + 1, sizeof *cnt.len);
  if (!m || !cnt.start || !cnt.len) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  /* Every chunk's distinct terms, interned, with their counts. */
  for (i = 0; i < n && !rc; i++) {
    struct lsa_bag bag;
    rc = lsa_bag_fill(&bag, texts[i]);
    if (!rc && cnt.nnz + bag.n > cnt.cap) {
      size_t cap = (cnt.nnz + bag.n) * 2;
      uint32_t *s2 = realloc(cnt.id, cap * sizeof *s2);
      if (s2) cnt.id = s2;
      uint32_t *c2 = realloc(cnt.count, cap * sizeof *c2);
      if (c2) cnt.count = c2;
      if (!s2 || !c2) rc = RAGD_ENOMEM;
      else cnt.cap = cap;
    }
    cnt.start[i] = cnt.nnz;
    for (j = 0; !rc && j < bag.n; j++) {
      rc = lsa_intern(&tab, bag.term[j], &cnt.id[cnt.nnz]);
      cnt.count[cnt.nnz++] = bag.count[j];
    }
    cnt.len[i] = (uint32_t)bag.total;
    total_len += bag.total;
    lsa_bag_dispose(&bag);
  }
  if (rc) goto out;
  cnt.start[n] = cnt.nnz;
  /* The vocabulary: terms in at least min_df chunks, at most LSA_VOCAB_MAX
   * of them (the most frequent), in byte order. */
  pick = malloc((tab.n ? tab.n : 1) * sizeof *pick);
  id_to_term = malloc((tab.n ? tab.n : 1) * sizeof *id_to_term);
  if (!pick || !id_to_term) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  for (i = 0; i < tab.n; i++) {
    id_to_term[i] = UINT32_MAX;
    if (tab.by_id[i].df >= le->min_df)
      pick[n_pick++] = (struct lsa_vocab_pick){tab.by_id[i].term, tab.by_id[i].df, (uint32_t)i};
  }
  if (n_pick > LSA_VOCAB_MAX) {
    qsort(pick, n_pick, sizeof *pick, lsa_pick_by_df);
    n_pick = LSA_VOCAB_MAX;
  }
  qsort(pick, n_pick, sizeof *pick, lsa_pick_by_term);
  m->rank = le->rank;
  m->chunks = n;
  m->seed = le->seed;
  m->avg_len = n ? (double)total_len / (double)n : 0;
  m->terms = n_pick;
  m->vocab = calloc(n_pick ? n_pick : 1, sizeof *m->vocab);
  m->idf = calloc(n_pick ? n_pick : 1, sizeof *m->idf);
  m->basis = calloc((n_pick ? n_pick : 1) * m->rank, sizeof *m->basis);
  if (!m->vocab || !m->idf || !m->basis) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  for (i = 0; i < n_pick; i++) {
    double df = (double)pick[i].df;
    m->vocab[i] = strdup(pick[i].term);
    if (!m->vocab[i]) {
      rc = RAGD_ENOMEM;
      goto out;
    }
    m->idf[i] = (float)log(1 + ((double)n - df + 0.5) / (df + 0.5));
    id_to_term[pick[i].id] = (uint32_t)i;
  }
  /* The sparse matrix, chunk by chunk. */
  a.rows = m->terms;
  a.cols = n;
  a.start = calloc(n + 1, sizeof *a.start);
  a.term = malloc((cnt.nnz ? cnt.nnz : 1) * sizeof *a.term);
  a.weight = malloc((cnt.nnz ? cnt.nnz : 1) * sizeof *a.weight);
  if (!a.start || !a.term || !a.weight) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  for (i = 0, p = 0; i < n; i++) {
    a.start[i] = p;
    for (j = cnt.start[i]; j < cnt.start[i + 1]; j++) {
      uint32_t t = id_to_term[cnt.id[j]];
      if (t == UINT32_MAX) continue;
      a.term[p] = t;
      a.weight[p++] = (float)lsa_weight(cnt.count[j], cnt.len[i], m->avg_len, m->idf[t]);
    }
  }
  a.start[n] = p;
  lsa_counts_dispose(&cnt); /* the matrix is all the SVD needs */
  lsa_intern_dispose(&tab);
  {
    float *s = malloc(m->rank * sizeof *s);
    rc = s ? lsa_svd(&a, m->rank, m->seed, m->basis, s) : RAGD_ENOMEM;
    free(s);
  }
  if (rc) goto out;
  m->id = lsa_fnv(0xcbf29ce484222325ULL, m->basis, m->terms * m->rank * sizeof *m->basis);
  m->id = lsa_fnv(m->id, m->idf, m->terms * sizeof *m->idf);
  *out = m;
  m = NULL;
out:
  lsa_counts_dispose(&cnt);
  lsa_intern_dispose(&tab);
  free(pick);
  free(id_to_term);
  free(a.start);
  free(a.term);
  free(a.weight);
  lsa_model_free(m);
  return rc;
}

/* ---- the ops ---------------------------------------------------------------------- */

static ragd_err lsa_create(const struct embed_config *cfg, void **ctx, struct buf *err) {
  struct lsa_embedder *le;
  long rank = cfg && cfg->dimensions ? cfg->dimensions : EMBED_LSA_RANK_DEFAULT;
  if (rank < 1 || rank > EMBED_DIM_MAX) {
    if (err) buf_appendf(err, "lsa rank must be 1..%d, got %ld", EMBED_DIM_MAX, rank);
    return RAGD_ECONFIG;
  }
  le = calloc(1, sizeof *le);
  if (!le) return RAGD_ENOMEM;
  if (pthread_rwlock_init(&le->lock, NULL) != 0) {
    free(le);
    return RAGD_ENOMEM;
  }
  le->rank = (size_t)rank;
  le->min_df = cfg && cfg->lsa_min_df > 0 ? (size_t)cfg->lsa_min_df : 2;
  le->seed = cfg && cfg->lsa_seed ? (uint64_t)cfg->lsa_seed : 20261122u;
  *ctx = le;
  return RAGD_OK;
}

static void lsa_destroy(void *ctx) {
  struct lsa_embedder *le = ctx;
  if (!le) return;
  lsa_model_free(le->model);
  pthread_rwlock_destroy(&le->lock);
  free(le);
}

static size_t lsa_dimensions(void *ctx) {
  return ((struct lsa_embedder *)ctx)->rank;
}

/* Projects one text; the caller holds the read lock. */
static ragd_err lsa_project(const struct embed_lsa_model *m, struct slice text, float *v) {
  struct lsa_bag bag;
  ragd_err rc = lsa_bag_fill(&bag, text);
  memset(v, 0, m ? m->rank * sizeof *v : 0);
  for (size_t i = 0; !rc && m && i < bag.n; i++) {
    long t = lsa_vocab_find(m, bag.term[i]);
    if (t < 0) continue;
    float w = (float)lsa_weight(bag.count[i], bag.total, m->avg_len, m->idf[t]);
    cblas_saxpy((int)m->rank, w, m->basis + (size_t)t * m->rank, 1, v, 1);
  }
  lsa_bag_dispose(&bag);
  if (!rc && m) embed_l2_normalize(v, m->rank);
  return rc;
}

static ragd_err lsa_embed(void *ctx, const struct slice *texts, size_t n, float *out,
                          struct buf *err) {
  struct lsa_embedder *le = ctx;
  ragd_err rc = RAGD_OK;
  (void)err;
  pthread_rwlock_rdlock(&le->lock);
  for (size_t i = 0; i < n && !rc; i++) {
    if (le->model) rc = lsa_project(le->model, texts[i], out + i * le->rank);
    else memset(out + i * le->rank, 0, le->rank * sizeof *out); /* no model yet */
  }
  pthread_rwlock_unlock(&le->lock);
  return rc;
}

const struct embed_ops embed_lsa_ops = {
    .version = EMBED_OPS_VERSION,
    .name = "lsa",
    .create = lsa_create,
    .destroy = lsa_destroy,
    .embed = lsa_embed,
    .dimensions = lsa_dimensions,
    .remote = 0,
};

/* ---- the public lsa functions ---------------------------------------------------- */

static struct lsa_embedder *lsa_of(const struct embedder *e) {
  return e && e->ops == &embed_lsa_ops ? e->ctx : NULL;
}

static void lsa_set_key(struct embed_lsa_model *m) {
  snprintf(m->key, sizeof m->key, "lsa:v1:%zu:%016llx", m->rank, (unsigned long long)m->id);
}

void embed_lsa_model_free(struct embed_lsa_model *m) { lsa_model_free(m); }

const char *embed_lsa_model_key(const struct embed_lsa_model *m) { return m->key; }

size_t embed_lsa_model_chunks(const struct embed_lsa_model *m) { return m->chunks; }

ragd_err embed_lsa_model_embed(const struct embed_lsa_model *m, const struct slice *texts,
                               size_t n, float *out) {
  ragd_err rc = RAGD_OK;
  if (!m || (n && (!texts || !out))) return RAGD_EINVAL;
  for (size_t i = 0; i < n && !rc; i++) rc = lsa_project(m, texts[i], out + i * m->rank);
  return rc;
}

int embed_lsa_fitted(const struct embedder *e) {
  struct lsa_embedder *le = lsa_of(e);
  int fitted;
  if (!le) return 0;
  pthread_rwlock_rdlock(&le->lock);
  fitted = le->model != NULL;
  pthread_rwlock_unlock(&le->lock);
  return fitted;
}

size_t embed_lsa_fitted_chunks(const struct embedder *e) {
  struct lsa_embedder *le = lsa_of(e);
  size_t chunks = 0;
  if (!le) return 0;
  pthread_rwlock_rdlock(&le->lock);
  if (le->model) chunks = le->model->chunks;
  pthread_rwlock_unlock(&le->lock);
  return chunks;
}

ragd_err embed_lsa_model_fit(const struct embedder *e, const struct slice *texts, size_t n,
                             struct embed_lsa_model **out, struct buf *err) {
  struct lsa_embedder *le = lsa_of(e);
  ragd_err rc;
  *out = NULL;
  if (!le || (n && !texts)) return RAGD_EINVAL;
  rc = lsa_fit_model(le, texts, n, out);
  if (rc && err) buf_appendf(err, "lsa fit over %zu chunks: %s", n, ragd_strerror(rc));
  if (!rc) lsa_set_key(*out);
  return rc;
}

void embed_lsa_install(struct embedder *e, struct embed_lsa_model *m) {
  struct lsa_embedder *le = lsa_of(e);
  struct embed_lsa_model *old;
  if (!le || !m) {
    lsa_model_free(m);
    return;
  }
  pthread_rwlock_wrlock(&le->lock);
  old = le->model;
  le->model = m;
  snprintf(e->model_key, sizeof e->model_key, "%s", m->key);
  pthread_rwlock_unlock(&le->lock);
  lsa_model_free(old);
}

ragd_err embed_lsa_fit(struct embedder *e, const struct slice *texts, size_t n, struct buf *err) {
  struct embed_lsa_model *m = NULL;
  ragd_err rc = embed_lsa_model_fit(e, texts, n, &m, err);
  if (!rc) embed_lsa_install(e, m);
  return rc;
}

/* Layout (little-endian host order, as written by x86-64 and arm64 alike):
 * magic[8], u32 format, u32 rank, u64 terms, u64 chunks, u64 seed, u64 id,
 * f64 avg_len; per term u32 length + bytes; f32 idf[terms];
 * f32 basis[terms x rank]. The same bytes as the lsa.model file of
 * earlier versions. */
ragd_err embed_lsa_model_encode(const struct embed_lsa_model *m, struct buf *out) {
  uint32_t fmt = LSA_FORMAT_VERSION, rank;
  uint64_t terms, chunks;
  ragd_err rc;
  if (!m || !out) return RAGD_EINVAL;
  rank = (uint32_t)m->rank;
  terms = m->terms;
  chunks = m->chunks;
  rc = buf_append(out, LSA_MAGIC, 8);
  if (!rc) rc = buf_append(out, &fmt, 4);
  if (!rc) rc = buf_append(out, &rank, 4);
  if (!rc) rc = buf_append(out, &terms, 8);
  if (!rc) rc = buf_append(out, &chunks, 8);
  if (!rc) rc = buf_append(out, &m->seed, 8);
  if (!rc) rc = buf_append(out, &m->id, 8);
  if (!rc) rc = buf_append(out, &m->avg_len, 8);
  for (size_t i = 0; !rc && i < m->terms; i++) {
    uint32_t len = (uint32_t)strlen(m->vocab[i]);
    rc = buf_append(out, &len, 4);
    if (!rc) rc = buf_append(out, m->vocab[i], len);
  }
  if (!rc && m->terms) rc = buf_append(out, m->idf, m->terms * sizeof *m->idf);
  if (!rc && m->terms) rc = buf_append(out, m->basis, m->terms * m->rank * sizeof *m->basis);
  return rc;
}

/* A cursor over an encoded model: take() fails (0) past the end. */
struct lsa_reader {
  const unsigned char *p;
  size_t left;
};

static int lsa_take(struct lsa_reader *r, void *dst, size_t n) {
  if (n > r->left) return 0;
  memcpy(dst, r->p, n);
  r->p += n;
  r->left -= n;
  return 1;
}

ragd_err embed_lsa_model_decode(const struct embedder *e, const void *data, size_t len,
                                struct embed_lsa_model **out) {
  struct lsa_embedder *le = lsa_of(e);
  struct lsa_reader r = {data, len};
  struct embed_lsa_model *m = NULL;
  char magic[8];
  uint32_t fmt = 0, rank = 0;
  uint64_t terms = 0, chunks = 0;
  ragd_err rc = RAGD_OK;
  int ok;
  *out = NULL;
  if (!le || (len && !data)) return RAGD_EINVAL;
  m = calloc(1, sizeof *m);
  if (!m) return RAGD_ENOMEM;
  ok = lsa_take(&r, magic, 8) && memcmp(magic, LSA_MAGIC, 8) == 0 && lsa_take(&r, &fmt, 4) &&
       fmt == LSA_FORMAT_VERSION && lsa_take(&r, &rank, 4) && lsa_take(&r, &terms, 8) &&
       lsa_take(&r, &chunks, 8) && lsa_take(&r, &m->seed, 8) && lsa_take(&r, &m->id, 8) &&
       lsa_take(&r, &m->avg_len, 8) && terms < ((uint64_t)1 << 32) && rank > 0 &&
       rank <= EMBED_DIM_MAX;
  if (ok && rank != le->rank) {
    rc = RAGD_ECONFIG; /* another rank was asked for: the caller refits */
    goto out;
  }
  /* Every term takes at least 4 + 4 + 4 * rank bytes: a claimed count that
   * cannot fit is refused before anything that large is allocated. */
  if (!ok || terms > r.left / (8 + 4 * (uint64_t)rank)) {
    rc = RAGD_EINVAL;
    goto out;
  }
  m->rank = rank;
  m->chunks = (size_t)chunks;
  m->vocab = calloc(terms ? terms : 1, sizeof *m->vocab);
  m->idf = malloc((terms ? terms : 1) * sizeof *m->idf);
  m->basis = malloc((terms ? terms : 1) * rank * sizeof *m->basis);
  if (!m->vocab || !m->idf || !m->basis) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  for (m->terms = 0; ok && m->terms < terms; m->terms++) {
    uint32_t tlen = 0;
    ok = lsa_take(&r, &tlen, 4) && tlen < LSA_TERM_MAX;
    if (!ok) break;
    m->vocab[m->terms] = malloc(tlen + 1);
    if (!m->vocab[m->terms]) {
      rc = RAGD_ENOMEM;
      goto out;
    }
    ok = lsa_take(&r, m->vocab[m->terms], tlen);
    m->vocab[m->terms][tlen] = '\0';
  }
  if (ok && terms)
    ok = lsa_take(&r, m->idf, terms * sizeof *m->idf) &&
         lsa_take(&r, m->basis, terms * rank * sizeof *m->basis);
  ok = ok && r.left == 0;
  for (size_t i = 1; ok && i < m->terms; i++) ok = strcmp(m->vocab[i - 1], m->vocab[i]) < 0;
  if (!ok) {
    rc = RAGD_EINVAL;
    goto out;
  }
  lsa_set_key(m);
  *out = m;
  m = NULL;
out:
  lsa_model_free(m);
  return rc;
}

ragd_err embed_lsa_save(const struct embedder *e, const char *path, struct buf *err) {
  struct lsa_embedder *le = lsa_of(e);
  struct buf data;
  char tmp[4096];
  FILE *f = NULL;
  ragd_err rc = RAGD_OK;
  if (!le || !path) return RAGD_EINVAL;
  if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) return RAGD_EINVAL;
  buf_init(&data, 0);
  pthread_rwlock_rdlock(&le->lock);
  rc = le->model ? embed_lsa_model_encode(le->model, &data) : RAGD_EINVAL;
  pthread_rwlock_unlock(&le->lock);
  if (rc) goto out;
  f = fopen(tmp, "wb");
  if (!f) {
    rc = RAGD_EIO;
    goto out;
  }
  if (fwrite(data.data, 1, data.len, f) != data.len) rc = RAGD_EIO;
  if (fclose(f) != 0) rc = RAGD_EIO;
  if (!rc && rename(tmp, path) != 0) rc = RAGD_EIO;
  if (rc) remove(tmp);
  if (rc && err) buf_appendf(err, "cannot write the lsa model %s: %s", path, ragd_strerror(rc));
out:
  buf_dispose(&data);
  return rc;
}

ragd_err embed_lsa_load(struct embedder *e, const char *path, struct buf *err) {
  struct embed_lsa_model *m = NULL;
  struct buf data;
  char chunk[65536];
  size_t got;
  FILE *f;
  ragd_err rc = RAGD_OK;
  if (!lsa_of(e) || !path) return RAGD_EINVAL;
  f = fopen(path, "rb");
  if (!f) return RAGD_ENOTFOUND;
  buf_init(&data, 0);
  while (!rc && (got = fread(chunk, 1, sizeof chunk, f)) > 0) rc = buf_append(&data, chunk, got);
  if (!rc && ferror(f)) rc = RAGD_EIO;
  fclose(f);
  if (!rc) rc = embed_lsa_model_decode(e, data.data, data.len, &m);
  if (!rc) embed_lsa_install(e, m);
  if (rc && rc != RAGD_ECONFIG && err)
    buf_appendf(err, "cannot read the lsa model %s: %s", path, ragd_strerror(rc));
  buf_dispose(&data);
  return rc;
}
