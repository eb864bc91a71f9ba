/* test_retrieve.c - the vector indexes, quantization error bounds, RRF on
 * hand-made rankings, metadata filter semantics, and the engine's hybrid
 * search end to end (modes, persistence, model switch and reindex). */
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "rag/rag.h"
#include "retrieve/retrieve.h"
#include "store/store.h"

/* ---- helpers -------------------------------------------------------------------- */

static uint64_t rng_state = 88172645463325252ULL;

static double rnd(void) { /* xorshift64, uniform in [0, 1) */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) / 9007199254740992.0;
}

static double gauss(void) {
  double u = rnd() + 1e-12, v = rnd();
  return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

static void unit_random(float *v, size_t dim) {
  double s = 0;
  for (size_t i = 0; i < dim; i++) {
    v[i] = (float)gauss();
    s += (double)v[i] * v[i];
  }
  for (size_t i = 0; i < dim; i++) v[i] = (float)(v[i] / sqrt(s));
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* ---- quantization ------------------------------------------------------------------ */

/* The int8 dot product (vectorized where the CPU allows) equals the plain
 * sum, extremes and odd lengths included. */
static void test_dot_i8_exact(void **state) {
  int8_t a[300], b[300];
  (void)state;
  for (int trial = 0; trial < 50; trial++) {
    size_t dim = trial < 2 ? 300 : 1 + (size_t)(rnd() * 299);
    int64_t want = 0;
    for (size_t i = 0; i < dim; i++) {
      a[i] = trial == 0 ? -128 : (int8_t)(rnd() * 256 - 128);
      b[i] = trial == 0 ? -128 : trial == 1 ? 127 : (int8_t)(rnd() * 256 - 128);
      want += (int64_t)a[i] * b[i];
    }
    assert_int_equal(retrieve_dot_i8(a, b, dim), want);
  }
}


/* The index's scan gives every row's exact dot product, for codes in
 * [-127, 127] (the extremes included) and lengths that are not multiples
 * of the vector width. */
static void test_scan_i8_exact(void **state) {
  enum { MAXDIM = 300, ROWS = 7 };
  int8_t q[MAXDIM], rows[ROWS * MAXDIM];
  int32_t got[ROWS];
  (void)state;
  for (int trial = 0; trial < 60; trial++) {
    size_t dim = trial < 3 ? (size_t)(trial == 0 ? 256 : trial == 1 ? 300 : 64)
                           : 1 + (size_t)(rnd() * (MAXDIM - 1));
    for (size_t i = 0; i < dim; i++)
      q[i] = trial == 0 ? -127 : trial == 1 ? 127 : (int8_t)(rnd() * 255 - 127);
    for (size_t i = 0; i < ROWS * dim; i++)
      rows[i] = trial < 2 ? (i % 2 ? 127 : -127) : (int8_t)(rnd() * 255 - 127);
    retrieve_scan_i8(q, rows, dim, ROWS, got);
    for (size_t r = 0; r < ROWS; r++) {
      int64_t want = 0;
      for (size_t i = 0; i < dim; i++) want += (int64_t)q[i] * rows[r * dim + i];
      if (got[r] != want) fail_msg("dim %zu row %zu: scan %d, want %lld", dim, r, got[r], (long long)want);
    }
  }
}

static void test_quantize_error_bounds(void **state) {
  enum { DIM = 256 };
  float a[DIM], b[DIM];
  int8_t qa[DIM], qb[DIM];
  (void)state;
  for (int trial = 0; trial < 200; trial++) {
    double l1a = 0, l1b = 0, exact, approx, bound;
    float sa, sb;
    unit_random(a, DIM);
    unit_random(b, DIM);
    sa = retrieve_quantize(a, DIM, qa);
    sb = retrieve_quantize(b, DIM, qb);
    for (size_t i = 0; i < DIM; i++) {
      /* each code is within half a step of the value */
      assert_true(fabs(a[i] - qa[i] * sa) <= sa / 2 + 1e-7);
      l1a += fabs(qa[i] * sa);
      l1b += fabs(b[i]);
    }
    exact = retrieve_dot_f32(a, b, DIM);
    approx = (double)retrieve_dot_i8(qa, qb, DIM) * sa * sb;
    /* |a.b - a~.b~| <= |ea|.|b| + |a~|.|eb| */
    bound = sa / 2 * l1b + sb / 2 * l1a;
    if (fabs(exact - approx) > bound + 1e-6)
      fail_msg("trial %d: |%f - %f| > %f", trial, exact, approx, bound);
    (void)l1b;
  }
  /* the zero vector quantizes to zeros with scale 0 */
  memset(a, 0, sizeof a);
  assert_true(retrieve_quantize(a, DIM, qa) == 0.0f);
  for (size_t i = 0; i < DIM; i++) assert_int_equal(qa[i], 0);
}

/* ---- indexes --------------------------------------------------------------------------- */

static void brute_top(const float *vecs, size_t n, size_t dim, const float *q, size_t k,
                      int64_t *ids) {
  float *best = malloc(k * sizeof *best);
  size_t have = 0;
  assert_non_null(best);
  for (size_t i = 0; i < n; i++) {
    float s = retrieve_dot_f32(q, vecs + i * dim, dim);
    size_t j = have < k ? have++ : k;
    if (j == k && s <= best[k - 1]) continue;
    if (j == k) j = k - 1;
    while (j > 0 && best[j - 1] < s) {
      best[j] = best[j - 1];
      ids[j] = ids[j - 1];
      j--;
    }
    best[j] = s;
    ids[j] = (int64_t)i + 1;
  }
  free(best);
}

static void test_exact_matches_brute_force(void **state) {
  enum { N = 1000, DIM = 32, K = 10 };
  float *vecs = malloc(N * DIM * sizeof *vecs);
  struct retrieve_index ix;
  struct retrieve_hit hits[K];
  int64_t want[K];
  float q[DIM];
  size_t n;
  (void)state;
  assert_non_null(vecs);
  assert_int_equal(retrieve_index_create("exact", DIM, &ix), RAGD_OK);
  for (size_t i = 0; i < N; i++) {
    unit_random(vecs + i * DIM, DIM);
    assert_int_equal(ix.ops->add(ix.ctx, (int64_t)i + 1, (int64_t)i / 10, vecs + i * DIM), RAGD_OK);
  }
  for (int t = 0; t < 20; t++) {
    unit_random(q, DIM);
    brute_top(vecs, N, DIM, q, K, want);
    assert_int_equal(ix.ops->search(ix.ctx, q, K, NULL, hits, &n), RAGD_OK);
    assert_int_equal(n, K);
    for (size_t i = 0; i < K; i++) assert_int_equal(hits[i].id, want[i]);
    for (size_t i = 1; i < K; i++) assert_true(hits[i - 1].score >= hits[i].score);
  }
  /* k larger than the index: everything, best first */
  {
    struct retrieve_index small;
    struct retrieve_hit all[5];
    assert_int_equal(retrieve_index_create("exact", DIM, &small), RAGD_OK);
    small.ops->add(small.ctx, 7, 1, vecs);
    small.ops->add(small.ctx, 8, 1, vecs + DIM);
    assert_int_equal(small.ops->search(small.ctx, vecs, 5, NULL, all, &n), RAGD_OK);
    assert_int_equal(n, 2);
    assert_int_equal(all[0].id, 7);
    retrieve_index_destroy(&small);
  }
  retrieve_index_destroy(&ix);
  free(vecs);
}

/* int8 candidates + float re-scoring against the exact scan, on vectors with
 * structure (queries are noisy copies of stored vectors, as real questions
 * are close to their passages). */
static void test_int8_recall_against_exact(void **state) {
  enum { N = 5000, DIM = 128, K = 10, Q = 50 };
  float *vecs = malloc(N * DIM * sizeof *vecs);
  struct retrieve_index exact, q8;
  struct retrieve_hit he[K], hq[K];
  float q[DIM];
  size_t ne, nq, found = 0;
  (void)state;
  assert_non_null(vecs);
  assert_int_equal(retrieve_index_create("exact", DIM, &exact), RAGD_OK);
  assert_int_equal(retrieve_index_create(NULL, DIM, &q8), RAGD_OK);
  assert_string_equal(q8.ops->name, "int8");
  for (size_t i = 0; i < N; i++) {
    unit_random(vecs + i * DIM, DIM);
    exact.ops->add(exact.ctx, (int64_t)i, 0, vecs + i * DIM);
    q8.ops->add(q8.ctx, (int64_t)i, 0, vecs + i * DIM);
  }
  for (int t = 0; t < Q; t++) {
    const float *base = vecs + (size_t)(rnd() * N) * DIM;
    double s = 0;
    for (size_t i = 0; i < DIM; i++) {
      q[i] = base[i] + (float)(0.08 * gauss());
      s += (double)q[i] * q[i];
    }
    for (size_t i = 0; i < DIM; i++) q[i] = (float)(q[i] / sqrt(s));
    exact.ops->search(exact.ctx, q, K, NULL, he, &ne);
    q8.ops->search(q8.ctx, q, K, NULL, hq, &nq);
    assert_int_equal(ne, K);
    assert_int_equal(nq, K);
    for (size_t i = 0; i < K; i++)
      for (size_t j = 0; j < K; j++)
        if (he[i].id == hq[j].id) found++;
    /* re-scored hits carry exact scores */
    for (size_t j = 0; j < nq; j++)
      assert_true(fabsf(hq[j].score - retrieve_dot_f32(q, vecs + hq[j].id * DIM, DIM)) < 1e-6f);
  }
  print_message("int8 recall@10 vs exact: %.4f\n", (double)found / (Q * K));
  assert_true((double)found / (Q * K) >= 0.95);
  assert_true(q8.ops->memory_bytes(q8.ctx) > exact.ops->memory_bytes(exact.ctx));
  retrieve_index_destroy(&exact);
  retrieve_index_destroy(&q8);
  free(vecs);
}

static void test_index_remove_and_filter(void **state) {
  enum { DIM = 16 };
  const char *kinds[] = {"exact", "int8"};
  (void)state;
  for (size_t kind = 0; kind < 2; kind++) {
    struct retrieve_index ix;
    struct retrieve_hit hits[20];
    float v[DIM];
    int64_t only[] = {2, 4};
    struct retrieve_filter flt = {0, only, 2};
    struct retrieve_filter none = {0, NULL, 0};
    size_t n;
    assert_int_equal(retrieve_index_create(kinds[kind], DIM, &ix), RAGD_OK);
    for (int64_t id = 1; id <= 12; id++) {
      unit_random(v, DIM);
      ix.ops->add(ix.ctx, id, (id - 1) / 3 + 1, v); /* groups 1..4 of 3 */
    }
    assert_int_equal(ix.ops->count(ix.ctx), 12);
    assert_int_equal(ix.ops->search(ix.ctx, v, 20, &flt, hits, &n), RAGD_OK);
    assert_int_equal(n, 6);
    for (size_t i = 0; i < n; i++) assert_true(hits[i].group == 2 || hits[i].group == 4);
    assert_int_equal(ix.ops->search(ix.ctx, v, 20, &none, hits, &n), RAGD_OK);
    assert_int_equal(n, 0);
    assert_int_equal(ix.ops->remove_group(ix.ctx, 2), 3);
    assert_int_equal(ix.ops->remove(ix.ctx, 12), 1);
    assert_int_equal(ix.ops->remove(ix.ctx, 12), 0);
    assert_int_equal(ix.ops->count(ix.ctx), 8);
    assert_int_equal(ix.ops->search(ix.ctx, v, 20, &flt, hits, &n), RAGD_OK);
    assert_int_equal(n, 2); /* ids 10, 11 of group 4 remain */
    for (size_t i = 0; i < n; i++) assert_true(hits[i].id == 10 || hits[i].id == 11);
    assert_int_equal(ix.ops->search(ix.ctx, v, 20, NULL, hits, &n), RAGD_OK);
    assert_int_equal(n, 8);
    retrieve_index_destroy(&ix);
  }
  {
    struct retrieve_index ix;
    assert_int_equal(retrieve_index_create("hnsw", 8, &ix), RAGD_ECONFIG);
    assert_int_equal(retrieve_index_create("exact", 0, &ix), RAGD_EINVAL);
  }
}

/* ---- fusion ----------------------------------------------------------------------------------- */

static void test_rrf_hand_made(void **state) {
  const int64_t a[] = {1, 2, 3};
  const int64_t b[] = {3, 1, 4};
  struct retrieve_ranking r[2] = {{a, 3, 1.0, NULL}, {b, 3, 1.0, NULL}};
  struct retrieve_fused *f;
  size_t n;
  (void)state;
  assert_int_equal(retrieve_rrf(r, 2, 60, 10, &f, &n), RAGD_OK);
  assert_int_equal(n, 4);
  /* 1: 1/61 + 1/62; 3: 1/63 + 1/61; 2: 1/62; 4: 1/63 */
  assert_int_equal(f[0].id, 1);
  assert_int_equal(f[1].id, 3);
  assert_int_equal(f[2].id, 2);
  assert_int_equal(f[3].id, 4);
  assert_true(fabs(f[0].score - (1.0 / 61 + 1.0 / 62)) < 1e-12);
  assert_true(fabs(f[1].score - (1.0 / 63 + 1.0 / 61)) < 1e-12);
  assert_int_equal(f[1].ranks[0], 3);
  assert_int_equal(f[1].ranks[1], 1);
  assert_int_equal(f[3].ranks[0], 0);
  free(f);

  /* a heavy second ranker wins; top cuts */
  r[1].weight = 3.0;
  assert_int_equal(retrieve_rrf(r, 2, 60, 2, &f, &n), RAGD_OK);
  assert_int_equal(n, 2);
  assert_int_equal(f[0].id, 3);
  assert_int_equal(f[1].id, 1);
  free(f);

  /* weight 0 switches a ranker off entirely */
  r[1].weight = 0;
  assert_int_equal(retrieve_rrf(r, 2, 60, 10, &f, &n), RAGD_OK);
  assert_int_equal(n, 3);
  assert_int_equal(f[0].id, 1);
  assert_int_equal(f[2].id, 3);
  assert_int_equal(f[2].ranks[1], 0);
  free(f);

  /* k = 0 is plain 1/rank; a repeat within a ranking counts once */
  {
    const int64_t dup[] = {5, 5, 6};
    struct retrieve_ranking one = {dup, 3, 1.0, NULL};
    assert_int_equal(retrieve_rrf(&one, 1, 0, 10, &f, &n), RAGD_OK);
    assert_int_equal(n, 2);
    assert_int_equal(f[0].id, 5);
    assert_true(fabs(f[0].score - 1.0) < 1e-12);
    assert_true(fabs(f[1].score - 1.0 / 3) < 1e-12);
    free(f);
  }
  /* equal scores: the better best rank first, then the smaller id */
  {
    const int64_t x[] = {9, 8};
    const int64_t y[] = {8, 9};
    struct retrieve_ranking two[2] = {{x, 2, 1.0, NULL}, {y, 2, 1.0, NULL}};
    assert_int_equal(retrieve_rrf(two, 2, 60, 10, &f, &n), RAGD_OK);
    assert_int_equal(n, 2);
    assert_int_equal(f[0].id, 8);
    free(f);
  }
  assert_int_equal(retrieve_rrf(r, 0, 60, 10, &f, &n), RAGD_EINVAL);
  assert_int_equal(retrieve_rrf(r, 2, -1, 10, &f, &n), RAGD_EINVAL);
  /* nothing to fuse */
  r[0].count = r[1].count = 0;
  assert_int_equal(retrieve_rrf(r, 2, 60, 10, &f, &n), RAGD_OK);
  assert_int_equal(n, 0);
  assert_null(f);
}

static void expect_order(const struct retrieve_fused *f, size_t n, const int64_t *want, size_t nwant) {
  if (n != nwant) fail_msg("%zu fused ids, want %zu", n, nwant);
  for (size_t i = 0; i < n; i++)
    if (f[i].id != want[i])
      fail_msg("fused[%zu] is %lld (score %.6f), want %lld", i, (long long)f[i].id, f[i].score,
               (long long)want[i]);
}

static void expect_score(const struct retrieve_fused *f, size_t i, double want) {
  if (fabs(f[i].score - want) > 1e-9) fail_msg("fused[%zu] score %.12f, want %.12f", i, f[i].score, want);
}

static void test_blend_hand_made(void **state) {
  const int64_t a[] = {1, 2, 3};
  const double as[] = {10, 6, 2};
  const double as_neg[] = {-10, -6, -2}; /* BM25 as FTS5 gives it: lower is better */
  const int64_t b[] = {3, 1, 4};
  const double bs[] = {0.9, 0.5, 0.1};
  struct retrieve_ranking r[2] = {{a, 3, 0.5, as}, {b, 3, 0.5, bs}};
  struct retrieve_fused *f;
  size_t n;
  (void)state;
  /* min-max: a 1 -> 1, 2 -> 0.5, 3 -> 0; b 3 -> 1, 1 -> 0.5, 4 -> 0; floor 0
   * 1: .5 + .25; 3: 0 + .5; 2: .25 + 0 (floor); 4: 0 + 0 */
  assert_int_equal(retrieve_blend(r, 2, RETRIEVE_BLEND_MINMAX, 10, &f, &n), RAGD_OK);
  expect_order(f, n, (const int64_t[]){1, 3, 2, 4}, 4);
  expect_score(f, 0, 0.75);
  expect_score(f, 1, 0.5);
  expect_score(f, 2, 0.25);
  expect_score(f, 3, 0);
  assert_int_equal(f[1].ranks[0], 3);
  assert_int_equal(f[1].ranks[1], 1);
  assert_int_equal(f[2].ranks[1], 0);
  free(f);
  /* the same with lower-is-better keyword scores */
  r[0].scores = as_neg;
  assert_int_equal(retrieve_blend(r, 2, RETRIEVE_BLEND_MINMAX, 10, &f, &n), RAGD_OK);
  expect_order(f, n, (const int64_t[]){1, 3, 2, 4}, 4);
  expect_score(f, 0, 0.75);
  expect_score(f, 2, 0.25);
  free(f);
  /* z-score: both lists are z = (+z0, 0, -z0), z0 = 4 / sqrt(32 / 3); the
   * floor is -z0. 1: z0/2; 3: 0; 2: -z0/2; 4: -z0 */
  {
    const double z0 = 4 / sqrt(32.0 / 3);
    assert_int_equal(retrieve_blend(r, 2, RETRIEVE_BLEND_ZSCORE, 10, &f, &n), RAGD_OK);
    expect_order(f, n, (const int64_t[]){1, 3, 2, 4}, 4);
    expect_score(f, 0, z0 / 2);
    expect_score(f, 1, 0);
    expect_score(f, 2, -z0 / 2);
    expect_score(f, 3, -z0);
    free(f);
  }
  /* scores, not ranks: 2 is second in both lists but nearly tied with the
   * first in the keyword one; RRF puts it last, the blend first */
  {
    const int64_t k[] = {1, 2, 3}, v[] = {3, 2, 1};
    const double ks[] = {10, 9.9, 0}, vs[] = {0.9, 0.5, 0.1};
    struct retrieve_ranking two[2] = {{k, 3, 0.5, ks}, {v, 3, 0.5, vs}};
    assert_int_equal(retrieve_rrf(two, 2, 60, 10, &f, &n), RAGD_OK);
    assert_int_equal(n, 3);
    assert_int_equal(f[2].id, 2);
    free(f);
    assert_int_equal(retrieve_blend(two, 2, RETRIEVE_BLEND_MINMAX, 1, &f, &n), RAGD_OK);
    expect_order(f, n, (const int64_t[]){2}, 1);
    expect_score(f, 0, 0.5 * 0.99 + 0.5 * (0.5 - 0.1) / 0.8);
    free(f);
    /* a vector weight of 0.9 lets the vector list's first win */
    two[0].weight = 0.1;
    two[1].weight = 0.9;
    assert_int_equal(retrieve_blend(two, 2, RETRIEVE_BLEND_MINMAX, 10, &f, &n), RAGD_OK);
    expect_order(f, n, (const int64_t[]){3, 2, 1}, 3);
    free(f);
  }
  /* weight 0 switches a ranker off; top cuts */
  r[0].scores = as;
  r[1].weight = 0;
  assert_int_equal(retrieve_blend(r, 2, RETRIEVE_BLEND_MINMAX, 2, &f, &n), RAGD_OK);
  expect_order(f, n, (const int64_t[]){1, 2}, 2);
  expect_score(f, 0, 0.5);
  free(f);
  /* one score, or equal scores: the ids held 1, the floor 0; a repeat
   * within a ranking counts at its first rank only */
  {
    const int64_t one_id[] = {7}, eq[] = {8, 9}, dup[] = {5, 5, 6};
    const double one_s[] = {3}, eq_s[] = {0.4, 0.4}, dup_s[] = {3, 2, 1};
    struct retrieve_ranking two[2] = {{one_id, 1, 1.0, one_s}, {eq, 2, 2.0, eq_s}};
    struct retrieve_ranking d = {dup, 3, 1.0, dup_s};
    assert_int_equal(retrieve_blend(two, 2, RETRIEVE_BLEND_ZSCORE, 10, &f, &n), RAGD_OK);
    expect_order(f, n, (const int64_t[]){8, 9, 7}, 3);
    expect_score(f, 0, 2.0);
    expect_score(f, 2, 1.0);
    free(f);
    assert_int_equal(retrieve_blend(&d, 1, RETRIEVE_BLEND_MINMAX, 10, &f, &n), RAGD_OK);
    expect_order(f, n, (const int64_t[]){5, 6}, 2);
    expect_score(f, 0, 1.0);
    expect_score(f, 1, 0);
    free(f);
  }
  /* bad input */
  {
    const double nan_s[] = {1, NAN, 0};
    struct retrieve_ranking bad = {a, 3, 1.0, NULL};
    assert_int_equal(retrieve_blend(&bad, 1, RETRIEVE_BLEND_MINMAX, 10, &f, &n), RAGD_EINVAL);
    bad.scores = nan_s;
    assert_int_equal(retrieve_blend(&bad, 1, RETRIEVE_BLEND_MINMAX, 10, &f, &n), RAGD_EINVAL);
    bad.scores = as;
    bad.weight = -1;
    assert_int_equal(retrieve_blend(&bad, 1, RETRIEVE_BLEND_MINMAX, 10, &f, &n), RAGD_EINVAL);
    assert_int_equal(retrieve_rrf(&bad, 1, 60, 10, &f, &n), RAGD_EINVAL);
    bad.weight = 1;
    assert_int_equal(retrieve_blend(&bad, 1, (enum retrieve_blend_norm)9, 10, &f, &n), RAGD_EINVAL);
    assert_int_equal(retrieve_blend(&bad, 0, RETRIEVE_BLEND_MINMAX, 10, &f, &n), RAGD_EINVAL);
    assert_null(f);
  }
  /* nothing to fuse */
  r[0].count = r[1].count = 0;
  assert_int_equal(retrieve_blend(r, 2, RETRIEVE_BLEND_MINMAX, 10, &f, &n), RAGD_OK);
  assert_int_equal(n, 0);
  assert_null(f);
}

/* ---- the engine ------------------------------------------------------------------------------- */

struct engine_fx {
  char dir[64];
  struct ragd_config cfg;
  struct rag_engine e;
};

/* Sets the fixture's configuration: its data folder, logging off, dims
 * (NULL: the default) and the NULL-terminated name/value pairs of extra. */
static void engine_config(struct engine_fx *fx, const char *dims, const char *const *extra) {
  struct buf err;
  buf_init(&err, 0);
  config_init(&fx->cfg);
  assert_int_equal(config_set(&fx->cfg, "RAGD_DATA", fx->dir, &err), RAGD_OK);
  assert_int_equal(config_set(&fx->cfg, "RAGD_LOG_LEVEL", "off", &err), RAGD_OK);
  if (dims) assert_int_equal(config_set(&fx->cfg, "RAGD_EMBED_DIMENSIONS", dims, &err), RAGD_OK);
  for (size_t i = 0; extra && extra[i]; i += 2)
    assert_int_equal(config_set(&fx->cfg, extra[i], extra[i + 1], &err), RAGD_OK);
  assert_int_equal(config_finish(&fx->cfg, &err), RAGD_OK);
  buf_dispose(&err);
}

static void engine_open_with(struct engine_fx *fx, const char *dims, const char *const *extra) {
  struct buf err;
  buf_init(&err, 0);
  engine_config(fx, dims, extra);
  if (rag_engine_open(&fx->cfg, 0, &fx->e, &err) != RAGD_OK) fail_msg("open: %s", err.data);
  buf_dispose(&err);
}

static void engine_open(struct engine_fx *fx, const char *dims) { engine_open_with(fx, dims, NULL); }

static void engine_close(struct engine_fx *fx) {
  rag_engine_close(&fx->e);
  config_dispose(&fx->cfg);
}

static void ingest(struct rag_engine *e, const char *id, const char *title, const char *meta,
                   const char *text) {
  struct rag_doc_in d;
  struct rag_ingest_result res;
  struct buf err;
  buf_init(&err, 0);
  memset(&d, 0, sizeof d);
  d.id = id;
  d.title = title;
  d.metadata_json = meta;
  d.format = "text";
  d.text = text;
  d.text_len = strlen(text);
  if (rag_ingest(e, &d, &res, &err) != RAGD_OK) fail_msg("ingest %s: %s", id, err.data);
  free(res.document_id);
  buf_dispose(&err);
}

static const struct {
  const char *id, *title, *meta, *text;
} kb[] = {
    {"refund", "Refund timing", "{\"lang\":\"en\",\"product\":\"shop\"}",
     "Refunds are issued within 3 business days after the returned item arrives."},
    {"track", "Tracking a parcel", "{\"lang\":\"en\",\"product\":\"shipping\"}",
     "Use the tracking number in your order e-mail to follow the parcel."},
    {"delete", "Delete account", "{\"lang\":\"en\",\"product\":\"account\",\"tags\":[\"privacy\",\"gdpr\"]}",
     "Deleting your account removes orders and saved addresses permanently."},
    {"ko-refund", "환불 안내", "{\"lang\":\"ko\",\"product\":\"shop\",\"tier\":2}",
     "환불은 반품 상품이 도착한 뒤 3영업일 안에 처리됩니다."},
    {"ko-delete", "회원 탈퇴", "{\"lang\":\"ko\",\"product\":\"account\",\"vip\":true}",
     "회원 탈퇴를 하면 주문 내역과 배송지가 모두 삭제됩니다."},
};

static int engine_setup(void **state) {
  struct engine_fx *fx = calloc(1, sizeof *fx);
  if (!fx) return -1;
  snprintf(fx->dir, sizeof fx->dir, "/tmp/ragd-retrieve-XXXXXX");
  if (!mkdtemp(fx->dir)) {
    free(fx);
    return -1;
  }
  *state = fx;
  return 0;
}

static int engine_teardown(void **state) {
  struct engine_fx *fx = *state;
  nftw(fx->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
  free(fx);
  return 0;
}

static ragd_err search(struct rag_engine *e, const char *q, size_t k, enum rag_search_mode mode,
                       const char *filters, struct store_hit_list *out) {
  struct rag_search_opts o = {q, k, mode, filters, NULL};
  return rag_search_ex(e, &o, out);
}

static void test_engine_modes(void **state) {
  struct engine_fx *fx = *state;
  struct store_hit_list h = {0};
  (void)state;
  engine_open(fx, NULL);
  for (size_t i = 0; i < sizeof kb / sizeof kb[0]; i++)
    ingest(&fx->e, kb[i].id, kb[i].title, kb[i].meta, kb[i].text);

  /* vector: "tracking" in the question, "tracking" and "track" in the KB; no
   * word of "refunds issued" needed for the refund passage */
  assert_int_equal(search(&fx->e, "how do I track my parcel", 2, RAG_SEARCH_VECTOR, NULL, &h), RAGD_OK);
  assert_true(h.count >= 1);
  assert_string_equal(h.items[0].document_id, "track");
  assert_int_equal(h.items[0].vector_rank, 1);
  assert_int_equal(h.items[0].keyword_rank, 0);
  assert_true(h.items[0].score > 0 && h.items[0].score <= 1.0001);
  store_hit_list_dispose(&h);

  /* keyword ranks carry BM25 scores */
  assert_int_equal(search(&fx->e, "refunds business days", 3, RAG_SEARCH_KEYWORD, NULL, &h), RAGD_OK);
  assert_true(h.count >= 1);
  assert_string_equal(h.items[0].document_id, "refund");
  assert_int_equal(h.items[0].keyword_rank, 1);
  assert_true(h.items[0].keyword_score == h.items[0].score);
  store_hit_list_dispose(&h);

  /* BM25 meets inflections: "tracked parcels" finds "tracking ... parcel" */
  assert_int_equal(search(&fx->e, "tracked parcels", 1, RAG_SEARCH_KEYWORD, NULL, &h), RAGD_OK);
  assert_int_equal(h.count, 1);
  assert_string_equal(h.items[0].document_id, "track");
  store_hit_list_dispose(&h);

  /* hybrid: fused score and both rankers' ranks; the default blend gives
   * the first of both rankings 1 in each, so weights (1 - w) + w */
  assert_int_equal(fx->e.fusion_blend, 1);
  assert_true(fabs(fx->e.blend_weight_vector - 0.3) < 1e-12); /* hash's default */
  assert_int_equal(search(&fx->e, "refunds business days", 3, RAG_SEARCH_HYBRID, NULL, &h), RAGD_OK);
  assert_true(h.count >= 1);
  assert_string_equal(h.items[0].document_id, "refund");
  assert_int_equal(h.items[0].keyword_rank, 1);
  assert_int_equal(h.items[0].vector_rank, 1);
  if (fabs(h.items[0].score - 1.0) > 1e-9) fail_msg("blend score %.12f, want 1", h.items[0].score);
  for (size_t i = 1; i < h.count; i++) assert_true(h.items[i].score <= h.items[i - 1].score);
  store_hit_list_dispose(&h);

  /* Korean with a verb ending: the refund passage wins in hybrid */
  assert_int_equal(search(&fx->e, "환불은 언제 처리되나요?", 2, RAG_SEARCH_HYBRID, NULL, &h), RAGD_OK);
  assert_true(h.count >= 1);
  assert_string_equal(h.items[0].document_id, "ko-refund");
  store_hit_list_dispose(&h);

  assert_int_equal(search(&fx->e, "anything", 0, RAG_SEARCH_HYBRID, NULL, &h), RAGD_OK);
  assert_int_equal(h.count, 0);
  assert_int_equal(search(&fx->e, "anything", 3, (enum rag_search_mode)7, NULL, &h), RAGD_EINVAL);
  engine_close(fx);
}

/* RAGD_FUSION=rrf still fuses by rank; the blend's settings are checked
 * at start-up and named in the error. */
static void test_engine_fusion_settings(void **state) {
  struct engine_fx *fx = *state;
  struct store_hit_list h = {0};
  static const char *const rrf[] = {"RAGD_FUSION", "rrf", NULL};
  static const struct {
    const char *name, *value;
  } bad[] = {
      {"RAGD_FUSION", "rfr"},
      {"RAGD_BLEND_NORM", "max"},
      {"RAGD_BLEND_WEIGHT_VECTOR", "1.5"},
      {"RAGD_BLEND_WEIGHT_VECTOR", "-0.1"},
      {"RAGD_BLEND_WEIGHT_VECTOR", "half"},
  };
  engine_open_with(fx, NULL, rrf);
  for (size_t i = 0; i < sizeof kb / sizeof kb[0]; i++)
    ingest(&fx->e, kb[i].id, kb[i].title, kb[i].meta, kb[i].text);
  assert_int_equal(fx->e.fusion_blend, 0);
  assert_int_equal(search(&fx->e, "refunds business days", 3, RAG_SEARCH_HYBRID, NULL, &h), RAGD_OK);
  assert_true(h.count >= 1);
  assert_string_equal(h.items[0].document_id, "refund");
  assert_int_equal(h.items[0].keyword_rank, 1);
  assert_int_equal(h.items[0].vector_rank, 1);
  assert_true(fabs(h.items[0].score - (fx->e.rrf_weight_keyword + fx->e.rrf_weight_vector) /
                                          (fx->e.rrf_k + 1)) < 1e-9);
  store_hit_list_dispose(&h);
  engine_close(fx);

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *const extra[] = {bad[i].name, bad[i].value, NULL};
    struct rag_engine e;
    struct buf err;
    buf_init(&err, 0);
    engine_config(fx, NULL, extra);
    memset(&e, 0, sizeof e);
    if (rag_engine_open(&fx->cfg, 0, &e, &err) != RAGD_ECONFIG)
      fail_msg("%s=%s was accepted", bad[i].name, bad[i].value);
    if (!err.data || !strstr(err.data, bad[i].name))
      fail_msg("%s=%s: error \"%s\" does not name it", bad[i].name, bad[i].value,
               err.data ? err.data : "");
    buf_dispose(&err);
    config_dispose(&fx->cfg);
  }
  {
    static const char *const lsa_like[] = {"RAGD_BLEND_WEIGHT_VECTOR", "0.75", "RAGD_BLEND_NORM", "zscore", NULL};
    engine_open_with(fx, NULL, lsa_like);
    assert_true(fabs(fx->e.blend_weight_vector - 0.75) < 1e-12);
    assert_int_equal(fx->e.blend_norm, RETRIEVE_BLEND_ZSCORE);
    engine_close(fx);
  }
}

static size_t count_doc(const struct store_hit_list *h, const char *id) {
  size_t n = 0;
  for (size_t i = 0; i < h->count; i++) n += strcmp(h->items[i].document_id, id) == 0;
  return n;
}

static void test_engine_filters(void **state) {
  struct engine_fx *fx = *state;
  struct store_hit_list h = {0};
  const enum rag_search_mode modes[] = {RAG_SEARCH_KEYWORD, RAG_SEARCH_VECTOR, RAG_SEARCH_HYBRID};
  engine_open(fx, NULL);
  for (size_t i = 0; i < sizeof kb / sizeof kb[0]; i++)
    ingest(&fx->e, kb[i].id, kb[i].title, kb[i].meta, kb[i].text);
  for (size_t m = 0; m < 3; m++) {
    /* the filter applies before the top k: the one English refund passage
     * comes back even with k = 1 when Korean text would outrank it */
    assert_int_equal(search(&fx->e, "환불 refund 3영업일", 1, modes[m], "{\"lang\":\"en\"}", &h), RAGD_OK);
    assert_int_equal(h.count, 1);
    assert_string_equal(h.items[0].document_id, "refund");
    store_hit_list_dispose(&h);
    /* two keys: both must match; a list means any of */
    assert_int_equal(search(&fx->e, "account orders 탈퇴 환불", 10, modes[m],
                            "{\"lang\":[\"ko\",\"en\"],\"product\":\"account\"}", &h), RAGD_OK);
    assert_int_equal(count_doc(&h, "refund") + count_doc(&h, "ko-refund") + count_doc(&h, "track"), 0);
    assert_true(count_doc(&h, "delete") + count_doc(&h, "ko-delete") >= 1);
    store_hit_list_dispose(&h);
    /* an array in the metadata matches any element; types are strict */
    assert_int_equal(search(&fx->e, "account orders", 10, modes[m], "{\"tags\":\"gdpr\"}", &h), RAGD_OK);
    assert_int_equal(h.count, count_doc(&h, "delete"));
    assert_int_equal(count_doc(&h, "delete"), 1);
    store_hit_list_dispose(&h);
    assert_int_equal(search(&fx->e, "환불", 10, modes[m], "{\"tier\":\"2\"}", &h), RAGD_OK);
    assert_int_equal(h.count, 0);
    assert_int_equal(search(&fx->e, "환불", 10, modes[m], "{\"tier\":2}", &h), RAGD_OK);
    assert_int_equal(count_doc(&h, "ko-refund"), 1);
    assert_int_equal(h.count, 1);
    store_hit_list_dispose(&h);
    assert_int_equal(search(&fx->e, "탈퇴", 10, modes[m], "{\"vip\":true}", &h), RAGD_OK);
    assert_int_equal(h.count, 1);
    assert_string_equal(h.items[0].document_id, "ko-delete");
    store_hit_list_dispose(&h);
    /* no document matches: nothing, not an error */
    assert_int_equal(search(&fx->e, "refund", 10, modes[m], "{\"lang\":\"fr\"}", &h), RAGD_OK);
    assert_int_equal(h.count, 0);
    assert_int_equal(search(&fx->e, "refund", 10, modes[m], "{}", &h), RAGD_OK);
    assert_true(h.count >= 1);
    store_hit_list_dispose(&h);
    /* malformed filters */
    assert_int_equal(search(&fx->e, "refund", 3, modes[m], "[1]", &h), RAGD_EINVAL);
    assert_int_equal(search(&fx->e, "refund", 3, modes[m], "{\"lang\":{\"a\":1}}", &h), RAGD_EINVAL);
    assert_int_equal(search(&fx->e, "refund", 3, modes[m], "{\"lang\":[]}", &h), RAGD_EINVAL);
    assert_int_equal(search(&fx->e, "refund", 3, modes[m], "{\"la\\\"ng\":\"en\"}", &h), RAGD_EINVAL);
    assert_int_equal(search(&fx->e, "refund", 3, modes[m], "{\"lang\":null}", &h), RAGD_EINVAL);
  }
  engine_close(fx);
}

static void test_engine_persistence_and_model_switch(void **state) {
  struct engine_fx *fx = *state;
  struct store_hit_list h = {0};
  struct buf err;
  size_t embedded = 0, dropped = 0;
  buf_init(&err, 0);
  engine_open(fx, NULL);
  for (size_t i = 0; i < sizeof kb / sizeof kb[0]; i++)
    ingest(&fx->e, kb[i].id, kb[i].title, kb[i].meta, kb[i].text);
  assert_int_equal(fx->e.index.ops->count(fx->e.index.ctx), 5);
  /* re-ingesting a changed document replaces its vectors, not adds */
  ingest(&fx->e, "track", "Tracking a parcel", "{\"lang\":\"en\"}", "Track parcels with the number.");
  assert_int_equal(fx->e.index.ops->count(fx->e.index.ctx), 5);
  engine_close(fx);

  /* a restart loads the vectors from the store */
  engine_open(fx, NULL);
  assert_non_null(fx->e.index.ops);
  assert_int_equal(fx->e.index.ops->count(fx->e.index.ctx), 5);
  assert_int_equal(search(&fx->e, "track parcels", 1, RAG_SEARCH_VECTOR, NULL, &h), RAGD_OK);
  assert_int_equal(h.count, 1);
  assert_string_equal(h.items[0].document_id, "track");
  store_hit_list_dispose(&h);
  engine_close(fx);

  /* another dimension is another model: none of the old vectors is used */
  engine_open(fx, "128");
  assert_true(!fx->e.index.ops || fx->e.index.ops->count(fx->e.index.ctx) == 0);
  assert_int_equal(search(&fx->e, "track parcels", 3, RAG_SEARCH_VECTOR, NULL, &h), RAGD_OK);
  assert_int_equal(h.count, 0);
  /* hybrid still answers from BM25 */
  assert_int_equal(search(&fx->e, "track parcels", 3, RAG_SEARCH_HYBRID, NULL, &h), RAGD_OK);
  assert_true(h.count >= 1);
  assert_string_equal(h.items[0].document_id, "track");
  assert_int_equal(h.items[0].vector_rank, 0);
  store_hit_list_dispose(&h);
  if (rag_reindex(&fx->e, NULL, NULL, &embedded, &dropped, &err) != RAGD_OK)
    fail_msg("reindex: %s", err.data);
  assert_int_equal(embedded, 5);
  /* same model key: the 128-dimension vectors replaced the old rows in place */
  {
    struct store_vector_model_list models = {0};
    assert_int_equal(fx->e.store.ops->vector_models(fx->e.store.ctx, &models), RAGD_OK);
    assert_int_equal(models.count, 1);
    assert_string_equal(models.items[0].model, "hash:v1");
    assert_int_equal(models.items[0].dimensions, 128);
    assert_int_equal(models.items[0].count, 5);
    store_vector_model_list_dispose(&models);
  }
  assert_int_equal(fx->e.index.ops->count(fx->e.index.ctx), 5);
  assert_int_equal(fx->e.index.dim, 128);
  assert_int_equal(search(&fx->e, "track parcels", 1, RAG_SEARCH_VECTOR, NULL, &h), RAGD_OK);
  assert_int_equal(h.count, 1);
  assert_string_equal(h.items[0].document_id, "track");
  store_hit_list_dispose(&h);
  /* nothing left to do the second time */
  assert_int_equal(rag_reindex(&fx->e, NULL, NULL, &embedded, &dropped, &err), RAGD_OK);
  assert_int_equal(embedded, 0);
  assert_int_equal(dropped, 0);
  engine_close(fx);
  buf_dispose(&err);
}

static void test_engine_deleted_document(void **state) {
  struct engine_fx *fx = *state;
  struct store_hit_list h = {0};
  engine_open(fx, NULL);
  for (size_t i = 0; i < sizeof kb / sizeof kb[0]; i++)
    ingest(&fx->e, kb[i].id, kb[i].title, kb[i].meta, kb[i].text);
  /* deleted straight in the store (as DELETE /v1/documents does) */
  assert_int_equal(fx->e.store.ops->delete_document(fx->e.store.ctx, "track"), RAGD_OK);
  assert_int_equal(search(&fx->e, "track my parcel", 5, RAG_SEARCH_VECTOR, NULL, &h), RAGD_OK);
  assert_int_equal(count_doc(&h, "track"), 0);
  store_hit_list_dispose(&h);
  assert_int_equal(fx->e.index.ops->count(fx->e.index.ctx), 4); /* forgotten on the way */
  /* a new document may reuse the chunk row id: its own vector is the one found */
  ingest(&fx->e, "new", "Gift cards", "{}", "Gift cards never expire and can be topped up.");
  assert_int_equal(fx->e.index.ops->count(fx->e.index.ctx), 5);
  assert_int_equal(search(&fx->e, "gift cards expire", 1, RAG_SEARCH_VECTOR, NULL, &h), RAGD_OK);
  assert_string_equal(h.items[0].document_id, "new");
  store_hit_list_dispose(&h);
  engine_close(fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dot_i8_exact),
      cmocka_unit_test(test_scan_i8_exact),
      cmocka_unit_test(test_quantize_error_bounds),
      cmocka_unit_test(test_exact_matches_brute_force),
      cmocka_unit_test(test_int8_recall_against_exact),
      cmocka_unit_test(test_index_remove_and_filter),
      cmocka_unit_test(test_rrf_hand_made),
      cmocka_unit_test(test_blend_hand_made),
      cmocka_unit_test_setup_teardown(test_engine_modes, engine_setup, engine_teardown),
      cmocka_unit_test_setup_teardown(test_engine_fusion_settings, engine_setup, engine_teardown),
      cmocka_unit_test_setup_teardown(test_engine_filters, engine_setup, engine_teardown),
      cmocka_unit_test_setup_teardown(test_engine_persistence_and_model_switch, engine_setup,
                                      engine_teardown),
      cmocka_unit_test_setup_teardown(test_engine_deleted_document, engine_setup, engine_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
