/* test_http_limits.c - the token bucket, the limiter table, the CORS
 * allow-list and the loopback test behind the HTTP access check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "http/http_int.h"

/* A fresh bucket is full: rpm requests pass at once, the next waits for
 * one token's worth of refill (60000 / rpm ms). */
static void test_bucket_burst_then_wait(void **state) {
  struct http_bucket b = {0};
  (void)state;
  for (int i = 0; i < 60; i++) assert_int_equal(http_bucket_take(&b, 60, 1000), 0);
  assert_int_equal(http_bucket_take(&b, 60, 1000), 1000);
  /* Nothing is taken by a refusal: the wait only shrinks with time. */
  assert_int_equal(http_bucket_take(&b, 60, 1000), 1000);
  assert_int_equal(http_bucket_take(&b, 60, 1400), 600);
  assert_int_equal(http_bucket_take(&b, 60, 2000), 0);
  assert_int_equal(http_bucket_take(&b, 60, 2000), 1000);
}

/* Refill is continuous and capped at rpm. */
static void test_bucket_refill_capped(void **state) {
  struct http_bucket b = {0};
  int passed = 0;
  (void)state;
  for (int i = 0; i < 10; i++) assert_int_equal(http_bucket_take(&b, 10, 0), 0);
  assert_false(http_bucket_full(&b, 10, 0));
  /* An hour idle refills only to 10. */
  assert_true(http_bucket_full(&b, 10, 3600000));
  while (http_bucket_take(&b, 10, 3600000) == 0 && passed < 100) passed++;
  assert_int_equal(passed, 10);
  /* 30 s later: half of the minute's 10 tokens. */
  passed = 0;
  while (http_bucket_take(&b, 10, 3630000) == 0 && passed < 100) passed++;
  assert_int_equal(passed, 5);
}

/* A clock that goes backwards adds nothing (and breaks nothing). */
static void test_bucket_clock_backwards(void **state) {
  struct http_bucket b = {0};
  (void)state;
  assert_int_equal(http_bucket_take(&b, 1, 5000), 0);
  assert_int_equal(http_bucket_take(&b, 1, 4000), 60000);
  assert_int_equal(http_bucket_take(&b, 1, 65000), 0);
}

/* High rates: the wait never rounds down to "now". */
static void test_bucket_high_rate(void **state) {
  struct http_bucket b = {0};
  (void)state;
  for (int i = 0; i < 600000; i++) assert_int_equal(http_bucket_take(&b, 600000, 7), 0);
  assert_int_equal(http_bucket_take(&b, 600000, 7), 1);
}

static void test_limiter_rate_and_inflight(void **state) {
  struct http_limiter *l = NULL;
  struct http_limit_slot *s1 = NULL, *s2 = NULL, *s3 = NULL;
  int64_t retry = 0;
  (void)state;
  assert_int_equal(http_limiter_new(16, &l), RAGD_OK);
  /* In flight: two places. */
  assert_int_equal(http_limiter_admit(l, "key:a", 100, 2, 0, &s1, &retry), HTTP_LIMIT_OK);
  assert_non_null(s1);
  assert_int_equal(http_limiter_admit(l, "key:a", 100, 2, 0, &s2, &retry), HTTP_LIMIT_OK);
  assert_int_equal(http_limiter_admit(l, "key:a", 100, 2, 0, &s3, &retry), HTTP_LIMIT_CONCURRENCY);
  assert_null(s3);
  assert_int_equal(retry, 1000);
  /* Another name is another bucket. */
  assert_int_equal(http_limiter_admit(l, "key:b", 100, 2, 0, &s3, &retry), HTTP_LIMIT_OK);
  http_limiter_release(l, s3);
  http_limiter_release(l, s1);
  assert_int_equal(http_limiter_admit(l, "key:a", 100, 2, 0, &s1, &retry), HTTP_LIMIT_OK);
  http_limiter_release(l, s1);
  http_limiter_release(l, s2);
  /* Rate: 3 tokens were taken of 100; 97 more pass, then 429 for 600 ms. */
  for (int i = 0; i < 97; i++) {
    assert_int_equal(http_limiter_admit(l, "key:a", 100, 0, 0, &s1, &retry), HTTP_LIMIT_OK);
    http_limiter_release(l, s1);
  }
  assert_int_equal(http_limiter_admit(l, "key:a", 100, 0, 0, &s1, &retry), HTTP_LIMIT_RATE);
  assert_int_equal(retry, 600);
  /* No limits at all: nothing is tracked. */
  assert_int_equal(http_limiter_admit(l, "key:c", 0, 0, 0, &s1, &retry), HTTP_LIMIT_OK);
  assert_null(s1);
  http_limiter_free(l);
}

/* The table stays bounded: idle entries (full bucket, nothing in flight)
 * go; busy ones stay; past the bound new names pass untracked. */
static void test_limiter_bounded(void **state) {
  struct http_limiter *l = NULL;
  struct http_limit_slot *held = NULL, *s = NULL;
  int64_t retry = 0;
  char name[32];
  (void)state;
  assert_int_equal(http_limiter_new(4, &l), RAGD_OK);
  assert_int_equal(http_limiter_admit(l, "busy", 60, 1, 0, &held, &retry), HTTP_LIMIT_OK);
  for (int i = 0; i < 3; i++) {
    snprintf(name, sizeof name, "addr:%d", i);
    assert_int_equal(http_limiter_admit(l, name, 60, 0, 0, &s, &retry), HTTP_LIMIT_OK);
    http_limiter_release(l, s);
  }
  assert_int_equal(http_limiter_size(l), 4);
  /* Full and nothing idle yet (the buckets are one token short). */
  assert_int_equal(http_limiter_admit(l, "late", 60, 0, 0, &s, &retry), HTTP_LIMIT_OK);
  assert_null(s);
  /* A minute on, the three idle entries are full again and make room. */
  assert_int_equal(http_limiter_admit(l, "later", 60, 0, 60000, &s, &retry), HTTP_LIMIT_OK);
  assert_non_null(s);
  http_limiter_release(l, s);
  assert_int_equal(http_limiter_size(l), 2);
  /* The busy entry kept its count. */
  assert_int_equal(http_limiter_admit(l, "busy", 60, 1, 60000, &s, &retry), HTTP_LIMIT_CONCURRENCY);
  http_limiter_release(l, held);
  http_limiter_free(l);
}

static void test_cors_allow_list(void **state) {
  (void)state;
  assert_false(http_cors_origin_allowed(NULL, "https://a.example"));
  assert_false(http_cors_origin_allowed("", "https://a.example"));
  assert_false(http_cors_origin_allowed("https://a.example", NULL));
  assert_true(http_cors_origin_allowed("https://a.example", "https://a.example"));
  assert_true(http_cors_origin_allowed(" https://b.example , https://a.example ", "https://a.example"));
  assert_false(http_cors_origin_allowed("https://a.example", "https://a.example.evil"));
  assert_false(http_cors_origin_allowed("https://a.example.evil", "https://a.example"));
  assert_false(http_cors_origin_allowed("https://a.example", "http://a.example"));
  assert_false(http_cors_origin_allowed("https://a.example:8443", "https://a.example"));
  assert_true(http_cors_origin_allowed("*", "https://anything.example"));
}

static void test_loopback(void **state) {
  (void)state;
  assert_true(http_host_is_loopback("127.0.0.1"));
  assert_true(http_host_is_loopback("127.3.2.1"));
  assert_true(http_host_is_loopback("::1"));
  assert_true(http_host_is_loopback("::ffff:127.0.0.1"));
  assert_true(http_host_is_loopback("localhost"));
  assert_false(http_host_is_loopback("0.0.0.0"));
  assert_false(http_host_is_loopback("::"));
  assert_false(http_host_is_loopback("10.0.0.1"));
  assert_false(http_host_is_loopback("128.0.0.1"));
  assert_false(http_host_is_loopback("::ffff:10.0.0.1"));
  assert_false(http_host_is_loopback("example.com"));
  assert_false(http_host_is_loopback(NULL));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bucket_burst_then_wait),
      cmocka_unit_test(test_bucket_refill_capped),
      cmocka_unit_test(test_bucket_clock_backwards),
      cmocka_unit_test(test_bucket_high_rate),
      cmocka_unit_test(test_limiter_rate_and_inflight),
      cmocka_unit_test(test_limiter_bounded),
      cmocka_unit_test(test_cors_allow_list),
      cmocka_unit_test(test_loopback),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
