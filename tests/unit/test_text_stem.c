/* test_text_stem.c - the light English stemmer behind BM25 terms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "text/text.h"

static void expect_stem(const char *word, const char *want) {
  char out[80];
  size_t n = text_stem_en(word, strlen(word), out);
  if (n != strlen(want) || memcmp(out, want, n) != 0)
    fail_msg("stem(%s) = %.*s, want %s", word, (int)n, out, want);
}

static void test_inflections_meet(void **state) {
  const char *groups[][4] = {
      {"refund", "refunds", "refunded", "refunding"},
      {"track", "tracks", "tracked", "tracking"},
      {"charge", "charges", "charged", "charging"},
      {"ship", "shipped", "shipping", "ships"},
  };
  (void)state;
  for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
    char first[80], other[80];
    size_t n0 = text_stem_en(groups[g][0], strlen(groups[g][0]), first);
    for (size_t i = 1; i < 4; i++) {
      size_t n = text_stem_en(groups[g][i], strlen(groups[g][i]), other);
      if (n != n0 || memcmp(first, other, n) != 0)
        fail_msg("%s -> %.*s but %s -> %.*s", groups[g][0], (int)n0, first, groups[g][i], (int)n, other);
    }
  }
  expect_stem("policies", "policy");
  expect_stem("addresses", "address");
}

static void test_leaves_the_rest_alone(void **state) {
  (void)state;
  expect_stem("bus", "bus");        /* short */
  expect_stem("status", "status");  /* -us */
  expect_stem("analysis", "analysis");
  expect_stem("class", "class");
  expect_stem("sing", "sing");      /* no stem left with a vowel */
  expect_stem("need", "need");
  expect_stem("hb-2024", "hb-2024"); /* not letters only */
  expect_stem("café", "café");
  expect_stem("환불은", "환불은");
  expect_stem("iphone15", "iphone15");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_inflections_meet),
      cmocka_unit_test(test_leaves_the_rest_alone),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
