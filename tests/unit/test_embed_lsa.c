/* test_embed_lsa.c - the lsa embedder: the randomized SVD against a matrix
 * of known rank, determinism, fold-in against a refit, the model file, and
 * what it finds similar that the words alone do not say.
 *
 * Includes lsa.c to reach lsa_svd and struct lsa_sparse. */
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

#include "../../src/embed/lsa.c"

#define TOPICS 3
#define WORDS 8
#define DOCS 48
#define RANK 4
#define PI 3.14159265358979323846

static const char *const topic_words[TOPICS][WORDS] = {
    {"parcel", "delivery", "courier", "shipping", "tracking", "package", "dispatch", "address"},
    {"refund", "payment", "invoice", "charge", "card", "billing", "receipt", "balance"},
    {"password", "login", "account", "reset", "email", "verify", "session", "username"},
};

/* DOCS synthetic chunks: six words of one topic (chosen by a fixed LCG)
 * plus two words every topic uses. */
static void make_corpus(char texts[DOCS][256], struct slice *slices) {
  uint32_t state = 12345;
  for (size_t d = 0; d < DOCS; d++) {
    size_t topic = d % TOPICS, len = 0;
    texts[d][0] = '\0';
    for (int w = 0; w < 6; w++) {
      state = state * 1664525u + 1013904223u;
      len += (size_t)snprintf(texts[d] + len, 256 - len, "%s ",
                              topic_words[topic][(state >> 16) % WORDS]);
    }
    snprintf(texts[d] + len, 256 - len, "customer help");
    slices[d] = slice_from_cstr(texts[d]);
  }
}

static void make_lsa(struct embedder *e, long rank) {
  struct embed_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.provider = "lsa";
  cfg.dimensions = rank;
  cfg.lsa_min_df = 1;
  assert_int_equal(embed_create(&cfg, e, NULL), RAGD_OK);
  assert_int_equal(embed_dimensions(e), (size_t)rank);
}

static double dot(const float *a, const float *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

static void embed_one(struct embedder *e, const char *text, float *out) {
  struct slice s = slice_from_cstr(text);
  assert_int_equal(embed_texts(e, &s, 1, out, NULL), RAGD_OK);
}

/* A 60 x 40 matrix of rank 3 with singular values 9, 4 and 1 (orthonormal
 * factors from sines), stored sparse, comes back with those values and a
 * basis that spans the same column space. */
static void test_lsa_svd_recovers_low_rank(void **state) {
  enum { M = 60, N = 40, R = 3, K = 5 };
  static const double sigma[R] = {9, 4, 1};
  double uf[M][R], vf[N][R], dense[M][N];
  float u[M * K], s[K];
  struct lsa_sparse a = {0};
  size_t p = 0;
  (void)state;
  /* Columns of sin((c+1) * pi * (i+1) / (M+1)) are orthogonal; scale to unit. */
  for (int c = 0; c < R; c++) {
    for (int i = 0; i < M; i++)
      uf[i][c] = sin((c + 1) * PI * (i + 1) / (M + 1)) * sqrt(2.0 / (M + 1));
    for (int j = 0; j < N; j++)
      vf[j][c] = sin((c + 1) * PI * (j + 1) / (N + 1)) * sqrt(2.0 / (N + 1));
  }
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      dense[i][j] = 0;
      for (int c = 0; c < R; c++) dense[i][j] += uf[i][c] * sigma[c] * vf[j][c];
    }
  a.rows = M;
  a.cols = N;
  a.start = calloc(N + 1, sizeof *a.start);
  a.term = calloc(M * N, sizeof *a.term);
  a.weight = calloc(M * N, sizeof *a.weight);
  assert_non_null(a.start);
  assert_non_null(a.term);
  assert_non_null(a.weight);
  for (int j = 0; j < N; j++) {
    a.start[j] = p;
    for (int i = 0; i < M; i++) {
      a.term[p] = (uint32_t)i;
      a.weight[p++] = dense[i][j];
    }
  }
  a.start[N] = p;
  assert_int_equal(lsa_svd(&a, K, 7, u, s), RAGD_OK);
  for (int c = 0; c < R; c++) {
    /* single precision: a few ulps of float relative to sigma_1 */
    if (fabs(s[c] - sigma[c]) > 1e-5 * sigma[0])
      fail_msg("singular value %d: %.12f, want %.1f", c, s[c], sigma[c]);
    /* The recovered column equals the true one up to sign. */
    double d = 0;
    for (int i = 0; i < M; i++) d += u[i * K + c] * uf[i][c];
    if (fabs(fabs(d) - 1) > 1e-5) fail_msg("column %d: |<u, u_true>| = %.12f, want 1", c, fabs(d));
  }
  for (int c = R; c < K; c++) {
    if (s[c] > 1e-5 * sigma[0]) fail_msg("singular value %d: %g, want 0", c, s[c]);
    for (int i = 0; i < M; i++) assert_true(u[i * K + c] == 0);
  }
  free(a.start);
  free(a.term);
  free(a.weight);
}

/* Same corpus, same seed: the same model key and bit-identical vectors. */
static void test_lsa_deterministic(void **state) {
  char texts[DOCS][256];
  struct slice slices[DOCS];
  struct embedder a, b;
  float va[RANK], vb[RANK];
  (void)state;
  make_corpus(texts, slices);
  make_lsa(&a, RANK);
  make_lsa(&b, RANK);
  assert_false(embed_lsa_fitted(&a));
  assert_int_equal(embed_lsa_fit(&a, slices, DOCS, NULL), RAGD_OK);
  assert_int_equal(embed_lsa_fit(&b, slices, DOCS, NULL), RAGD_OK);
  assert_true(embed_lsa_fitted(&a));
  assert_string_equal(a.model_key, b.model_key);
  for (size_t d = 0; d < DOCS; d++) {
    embed_one(&a, texts[d], va);
    embed_one(&b, texts[d], vb);
    assert_memory_equal(va, vb, sizeof va);
    double n = dot(va, va, RANK);
    if (fabs(n - 1) > 1e-5) fail_msg("chunk %zu: squared norm %f, want 1", d, n);
  }
  embed_destroy(&a);
  embed_destroy(&b);
}

/* Before a fit every vector is zero; a text of unknown words is zero too. */
static void test_lsa_unfitted_and_unknown_are_zero(void **state) {
  char texts[DOCS][256];
  struct slice slices[DOCS];
  struct embedder e;
  float v[RANK], zero[RANK] = {0};
  (void)state;
  make_corpus(texts, slices);
  make_lsa(&e, RANK);
  embed_one(&e, "parcel delivery", v);
  assert_memory_equal(v, zero, sizeof v);
  assert_int_equal(embed_lsa_fit(&e, slices, DOCS, NULL), RAGD_OK);
  embed_one(&e, "zebra quantum", v);
  assert_memory_equal(v, zero, sizeof v);
  embed_destroy(&e);
}

/* The semantic point: "courier" and "shipping" never need to share a word
 * with "parcel" to land near it; "refund" does not. */
static void test_lsa_finds_related_words(void **state) {
  char texts[DOCS][256];
  struct slice slices[DOCS];
  struct embedder e;
  float q[RANK], same[RANK], other[RANK];
  (void)state;
  make_corpus(texts, slices);
  make_lsa(&e, RANK);
  assert_int_equal(embed_lsa_fit(&e, slices, DOCS, NULL), RAGD_OK);
  embed_one(&e, "parcel", q);
  embed_one(&e, "courier shipping", same);
  embed_one(&e, "refund invoice", other);
  double near = dot(q, same, RANK), far = dot(q, other, RANK);
  if (!(near > 0.6 && far < 0.3))
    fail_msg("parcel~courier %f (want > 0.6), parcel~refund %f (want < 0.3)", near, far);
  embed_destroy(&e);
}

/* A chunk embedded with a basis fitted without it scores against queries
 * as it does after a refit that includes it. */
static void test_lsa_fold_in_matches_refit(void **state) {
  static const char *const queries[] = {"parcel tracking", "refund card", "password reset",
                                        "courier address", "billing receipt"};
  char texts[DOCS][256];
  struct slice slices[DOCS];
  struct embedder before, after;
  float q1[RANK], q2[RANK], x1[RANK], x2[RANK];
  (void)state;
  make_corpus(texts, slices);
  make_lsa(&before, RANK);
  make_lsa(&after, RANK);
  assert_int_equal(embed_lsa_fit(&before, slices, DOCS - 3, NULL), RAGD_OK);
  assert_int_equal(embed_lsa_fit(&after, slices, DOCS, NULL), RAGD_OK);
  for (size_t d = DOCS - 3; d < DOCS; d++) {
    embed_one(&before, texts[d], x1); /* folded in */
    embed_one(&after, texts[d], x2);  /* part of the fit */
    for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
      embed_one(&before, queries[i], q1);
      embed_one(&after, queries[i], q2);
      double s1 = dot(q1, x1, RANK), s2 = dot(q2, x2, RANK);
      if (fabs(s1 - s2) > 0.05)
        fail_msg("chunk %zu, query \"%s\": folded in %f, refitted %f", d, queries[i], s1, s2);
    }
  }
  embed_destroy(&before);
  embed_destroy(&after);
}

/* The model file round-trips; another rank is refused; garbage is refused. */
static void test_lsa_save_load(void **state) {
  char texts[DOCS][256], path[] = "/tmp/ragd-lsa-XXXXXX";
  struct slice slices[DOCS];
  struct embedder a, b, c;
  float va[RANK], vb[RANK];
  char file[64];
  FILE *f;
  (void)state;
  assert_non_null(mkdtemp(path));
  snprintf(file, sizeof file, "%s/lsa.model", path);
  make_corpus(texts, slices);
  make_lsa(&a, RANK);
  make_lsa(&b, RANK);
  make_lsa(&c, RANK + 1);
  assert_int_equal(embed_lsa_save(&a, file, NULL), RAGD_EINVAL); /* no model */
  assert_int_equal(embed_lsa_load(&b, file, NULL), RAGD_ENOTFOUND);
  assert_int_equal(embed_lsa_fit(&a, slices, DOCS, NULL), RAGD_OK);
  assert_int_equal(embed_lsa_save(&a, file, NULL), RAGD_OK);
  assert_int_equal(embed_lsa_load(&b, file, NULL), RAGD_OK);
  assert_string_equal(a.model_key, b.model_key);
  embed_one(&a, "parcel refund password", va);
  embed_one(&b, "parcel refund password", vb);
  assert_memory_equal(va, vb, sizeof va);
  assert_int_equal(embed_lsa_load(&c, file, NULL), RAGD_ECONFIG);
  assert_false(embed_lsa_fitted(&c));
  f = fopen(file, "r+b");
  assert_non_null(f);
  assert_int_equal(fseek(f, 56, SEEK_SET), 0);
  assert_int_equal(fwrite("\xff\xff\xff\xff", 1, 4, f), 4); /* a term length past the limit */
  fclose(f);
  assert_int_equal(embed_lsa_load(&b, file, NULL), RAGD_EINVAL);
  assert_string_equal(a.model_key, b.model_key); /* b keeps its model */
  remove(file);
  rmdir(path);
  embed_destroy(&a);
  embed_destroy(&b);
  embed_destroy(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lsa_svd_recovers_low_rank),
      cmocka_unit_test(test_lsa_deterministic),
      cmocka_unit_test(test_lsa_unfitted_and_unknown_are_zero),
      cmocka_unit_test(test_lsa_finds_related_words),
      cmocka_unit_test(test_lsa_fold_in_matches_refit),
      cmocka_unit_test(test_lsa_save_load),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
