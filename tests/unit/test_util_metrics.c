/* util/metrics: the Prometheus text exposition of counters, gauges and
 * histograms, label escaping, and the cap on label combinations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/metrics.h"

static char *render(void) {
  struct buf b;
  buf_init(&b, 0);
  assert_int_equal(metrics_render(&b), RAGD_OK);
  return buf_take(&b, NULL);
}

static int teardown(void **state) {
  (void)state;
  metrics_reset();
  return 0;
}

static void test_counter_and_gauge(void **state) {
  struct metric *c = metrics_counter("ragd_requests_total", "Requests by route.", "route,status");
  struct metric *g = metrics_gauge("ragd_open_streams", "Open streams.", NULL);
  char *text;
  (void)state;
  assert_non_null(c);
  assert_ptr_equal(metrics_counter("ragd_requests_total", "again", "route,status"), c);
  assert_null(metrics_gauge("ragd_requests_total", "type clash", NULL));
  metrics_add(c, 1, "/v1/chat", "200");
  metrics_add(c, 2, "/v1/chat", "200");
  metrics_add(c, 1, "/v1/search", "400");
  metrics_set(g, 7);
  metrics_add(g, -2);
  text = render();
  assert_non_null(strstr(text, "# HELP ragd_requests_total Requests by route.\n# TYPE ragd_requests_total counter\n"));
  assert_non_null(strstr(text, "ragd_requests_total{route=\"/v1/chat\",status=\"200\"} 3\n"));
  assert_non_null(strstr(text, "ragd_requests_total{route=\"/v1/search\",status=\"400\"} 1\n"));
  assert_non_null(strstr(text, "# TYPE ragd_open_streams gauge\nragd_open_streams 5\n"));
  free(text);
}

static void test_histogram_is_cumulative(void **state) {
  const double bounds[] = {0.1, 1, 10};
  struct metric *h = metrics_histogram("ragd_answer_seconds", "Answer time.", "provider", bounds, 3);
  char *text;
  (void)state;
  metrics_observe(h, 0.05, "openai");
  metrics_observe(h, 0.5, "openai");
  metrics_observe(h, 0.5, "openai");
  metrics_observe(h, 100, "openai");
  metrics_observe(h, 1, "extractive"); /* on a bound: counts in that bucket */
  text = render();
  assert_non_null(strstr(text,
                         "ragd_answer_seconds_bucket{provider=\"openai\",le=\"0.1\"} 1\n"
                         "ragd_answer_seconds_bucket{provider=\"openai\",le=\"1\"} 3\n"
                         "ragd_answer_seconds_bucket{provider=\"openai\",le=\"10\"} 3\n"
                         "ragd_answer_seconds_bucket{provider=\"openai\",le=\"+Inf\"} 4\n"
                         "ragd_answer_seconds_sum{provider=\"openai\"} 101.05\n"
                         "ragd_answer_seconds_count{provider=\"openai\"} 4\n"));
  assert_non_null(strstr(text, "ragd_answer_seconds_bucket{provider=\"extractive\",le=\"1\"} 1\n"));
  free(text);
}

static void test_label_values_are_escaped(void **state) {
  struct metric *c = metrics_counter("ragd_odd_total", "Help with \\ and\nnewline.", "v");
  char *text;
  (void)state;
  metrics_add(c, 1, "quote\" back\\slash\nline");
  text = render();
  assert_non_null(strstr(text, "# HELP ragd_odd_total Help with \\\\ and\\nnewline.\n"));
  assert_non_null(strstr(text, "ragd_odd_total{v=\"quote\\\" back\\\\slash\\nline\"} 1\n"));
  free(text);
}

static void test_series_are_capped(void **state) {
  struct metric *c = metrics_counter("ragd_many_total", "Many series.", "id");
  char *text, id[32];
  size_t lines = 0;
  (void)state;
  for (int i = 0; i < METRICS_SERIES_MAX + 50; i++) {
    snprintf(id, sizeof id, "%d", i);
    metrics_add(c, 1, id);
  }
  text = render();
  for (const char *p = text; (p = strstr(p, "ragd_many_total{")) != NULL; p++) lines++;
  assert_int_equal(lines, METRICS_SERIES_MAX);
  free(text);
}

static double forty_two(void *arg) {
  (void)arg;
  return 42;
}

static void test_gauge_fn_and_bad_names(void **state) {
  char *text;
  (void)state;
  assert_non_null(metrics_gauge_fn("ragd_answer", "The answer.", forty_two, NULL));
  assert_null(metrics_counter("9bad", "", NULL));
  assert_null(metrics_counter("bad-name", "", NULL));
  assert_null(metrics_counter("ok_name", "", "bad-label"));
  metrics_add(NULL, 1); /* ignored */
  text = render();
  assert_non_null(strstr(text, "ragd_answer 42\n"));
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_counter_and_gauge, teardown),
      cmocka_unit_test_teardown(test_histogram_is_cumulative, teardown),
      cmocka_unit_test_teardown(test_label_values_are_escaped, teardown),
      cmocka_unit_test_teardown(test_series_are_capped, teardown),
      cmocka_unit_test_teardown(test_gauge_fn_and_bad_names, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
