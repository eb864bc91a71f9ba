/* test_embed.c - the hash embedder: determinism, unit length, what it finds
 * similar (and what it does not), settings. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "embed/embed.h"
#include "retrieve/retrieve.h"

static void make_hash(struct embedder *e, long dim) {
  struct embed_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.provider = "hash";
  cfg.dimensions = dim;
  assert_int_equal(embed_create(&cfg, e, NULL), RAGD_OK);
}

static void embed_one(struct embedder *e, const char *text, float *out) {
  struct slice s = slice_from_cstr(text);
  assert_int_equal(embed_texts(e, &s, 1, out, NULL), RAGD_OK);
}

static double norm(const float *v, size_t dim) {
  double sum = 0;
  for (size_t i = 0; i < dim; i++) sum += (double)v[i] * v[i];
  return sqrt(sum);
}

static double cosine(struct embedder *e, const char *a, const char *b) {
  float va[EMBED_HASH_DIM_DEFAULT], vb[EMBED_HASH_DIM_DEFAULT];
  embed_one(e, a, va);
  embed_one(e, b, vb);
  return retrieve_dot_f32(va, vb, EMBED_HASH_DIM_DEFAULT);
}

static void test_hash_deterministic_unit_length(void **state) {
  struct embedder e1, e2;
  float a[256], b[256];
  struct slice batch[2] = {SLICE_LIT("Refunds take 3 business days."), SLICE_LIT("환불은 3영업일")};
  float both[512];
  (void)state;
  make_hash(&e1, 0);
  make_hash(&e2, 256);
  assert_string_equal(e1.model_key, "hash:v1");
  assert_int_equal(embed_dimensions(&e1), 256);
  embed_one(&e1, "Refunds take 3 business days.", a);
  embed_one(&e2, "Refunds take 3 business days.", b);
  assert_memory_equal(a, b, sizeof a); /* same text, another instance: same bits */
  assert_true(fabs(norm(a, 256) - 1.0) < 1e-5);
  /* a batch gives exactly what single calls give */
  assert_int_equal(embed_texts(&e1, batch, 2, both, NULL), RAGD_OK);
  assert_memory_equal(both, a, sizeof a);
  embed_one(&e1, "환불은 3영업일", b);
  assert_memory_equal(both + 256, b, sizeof b);
  assert_true(fabs(norm(b, 256) - 1.0) < 1e-5);
  embed_destroy(&e1);
  embed_destroy(&e2);
}

static void test_hash_normalizes_text(void **state) {
  struct embedder e;
  (void)state;
  make_hash(&e, 0);
  /* case and NFKC width forms do not change the vector */
  assert_true(cosine(&e, "REFUND Policy", "refund policy") > 0.9999);
  assert_true(cosine(&e, "ＡＢＣ refund", "abc refund") > 0.9999);
  embed_destroy(&e);
}

static void test_hash_empty_is_zero(void **state) {
  struct embedder e;
  float v[256];
  (void)state;
  make_hash(&e, 0);
  embed_one(&e, "", v);
  assert_true(norm(v, 256) == 0.0);
  embed_one(&e, " ?!. ", v);
  assert_true(norm(v, 256) == 0.0);
  embed_destroy(&e);
}

static void test_hash_similarity(void **state) {
  struct embedder e;
  double near, far;
  (void)state;
  make_hash(&e, 0);
  /* inflections share character trigrams */
  near = cosine(&e, "tracking my refunds", "track refund");
  far = cosine(&e, "tracking my refunds", "delete account");
  print_message("tracking/track %.3f vs delete %.3f\n", near, far);
  assert_true(near > far + 0.2);
  /* Korean endings: 환불은 / 환불 share the syllable bigram and syllables */
  near = cosine(&e, "환불은 언제 처리되나요?", "환불 처리 기간 안내");
  far = cosine(&e, "환불은 언제 처리되나요?", "회원 탈퇴 방법");
  print_message("환불 %.3f vs 탈퇴 %.3f\n", near, far);
  assert_true(near > far + 0.2);
  embed_destroy(&e);
}

static void test_hash_settings(void **state) {
  struct embed_config cfg;
  struct embedder e;
  struct buf err;
  (void)state;
  buf_init(&err, 0);
  memset(&cfg, 0, sizeof cfg);
  cfg.provider = "hash";
  cfg.dimensions = 100; /* not a multiple of 16 */
  assert_int_equal(embed_create(&cfg, &e, &err), RAGD_ECONFIG);
  assert_non_null(strstr(err.data, "RAGD_EMBED_DIMENSIONS"));
  buf_reset(&err);
  cfg.provider = "word2vec";
  assert_int_equal(embed_create(&cfg, &e, &err), RAGD_ECONFIG);
  assert_non_null(strstr(err.data, "RAGD_EMBEDDER"));
  cfg.provider = "hash";
  cfg.dimensions = 64;
  assert_int_equal(embed_create(&cfg, &e, NULL), RAGD_OK);
  assert_int_equal(embed_dimensions(&e), 64);
  embed_destroy(&e);
  embed_destroy(&e); /* twice is harmless */
  buf_dispose(&err);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hash_deterministic_unit_length),
      cmocka_unit_test(test_hash_normalizes_text),
      cmocka_unit_test(test_hash_empty_is_zero),
      cmocka_unit_test(test_hash_similarity),
      cmocka_unit_test(test_hash_settings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
