/* util: capped buffers and configuration errors that name the variable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/buf.h"
#include "util/config.h"

static void test_buf_cap_frees_and_reports(void **state) {
  struct buf b;
  (void)state;
  buf_init(&b, 8);
  assert_int_equal(buf_append_str(&b, "12345678"), RAGD_OK);
  assert_string_equal(b.data, "12345678");
  assert_int_equal(buf_append_char(&b, '9'), RAGD_ETOOBIG);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_int_equal(buf_appendf(&b, "%d-%s", 42, "x"), RAGD_OK);
  assert_string_equal(b.data, "42-x");
  buf_dispose(&b);
}

static void test_buf_take(void **state) {
  struct buf b;
  size_t n = 99;
  char *s;
  (void)state;
  buf_init(&b, 0);
  s = buf_take(&b, &n);
  assert_string_equal(s, "");
  assert_int_equal(n, 0);
  free(s);
  buf_append_str(&b, "abc");
  s = buf_take(&b, &n);
  assert_string_equal(s, "abc");
  assert_int_equal(n, 3);
  assert_null(b.data);
  free(s);
}

static ragd_err load_with(const char *var, const char *value, struct buf *err) {
  struct ragd_config c;
  ragd_err rc;
  setenv(var, value, 1);
  config_init(&c);
  rc = config_load_env(&c, err);
  if (!rc) rc = config_finish(&c, err);
  unsetenv(var);
  config_dispose(&c);
  return rc;
}

static void test_config_errors_name_the_variable(void **state) {
  struct buf err;
  (void)state;
  unsetenv("RAGD_SOURCE_DIR"); /* set by ctest; ragd itself would refuse it */
  buf_init(&err, 0);
  assert_int_equal(load_with("RAGD_TOP_K", "many", &err), RAGD_ECONFIG);
  assert_non_null(strstr(err.data, "RAGD_TOP_K"));
  assert_int_equal(load_with("RAGD_TOP_K", "0", &err), RAGD_ECONFIG);
  assert_int_equal(load_with("RAGD_LISTEN", "nowhere", &err), RAGD_ECONFIG);
  assert_non_null(strstr(err.data, "RAGD_LISTEN"));
  assert_int_equal(load_with("RAGD_LLM_PROVIDER", "magic", &err), RAGD_ECONFIG);
  assert_non_null(strstr(err.data, "RAGD_LLM_PROVIDER"));
  assert_int_equal(load_with("RAGD_LLM_BASE_URL", "ftp://x", &err), RAGD_ECONFIG);
  assert_non_null(strstr(err.data, "RAGD_LLM_BASE_URL"));
  assert_int_equal(load_with("RAGD_TYPO_VARIABLE", "1", &err), RAGD_ECONFIG);
  assert_non_null(strstr(err.data, "RAGD_TYPO_VARIABLE"));
  assert_int_equal(load_with("RAGD_LLM_HTTP_VERSION", "3", &err), RAGD_ECONFIG);
  assert_non_null(strstr(err.data, "RAGD_LLM_HTTP_VERSION"));
  assert_int_equal(load_with("RAGD_LLM_HTTP_VERSION", "2", &err), RAGD_OK);
  assert_int_equal(load_with("RAGD_LLM_HTTP_VERSION", "1.1", &err), RAGD_OK);
  assert_int_equal(load_with("RAGD_TOP_K", "7", &err), RAGD_OK);
  buf_dispose(&err);
}

static void test_config_base_url_switches_provider(void **state) {
  struct ragd_config c;
  struct buf err;
  (void)state;
  unsetenv("RAGD_SOURCE_DIR");
  buf_init(&err, 0);
  config_init(&c);
  assert_int_equal(config_finish(&c, &err), RAGD_OK);
  assert_string_equal(c.llm_provider, "extractive");
  assert_string_equal(c.listen_host, "127.0.0.1");
  assert_int_equal(c.listen_port, 8080);
  config_dispose(&c);
  config_init(&c);
  assert_int_equal(config_set(&c, "RAGD_LLM_BASE_URL", "http://127.0.0.1:9/v1", &err), RAGD_OK);
  assert_int_equal(config_finish(&c, &err), RAGD_OK);
  assert_string_equal(c.llm_provider, "openai");
  config_dispose(&c);
  buf_dispose(&err);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_buf_cap_frees_and_reports),
      cmocka_unit_test(test_buf_take),
      cmocka_unit_test(test_config_errors_name_the_variable),
      cmocka_unit_test(test_config_base_url_switches_provider),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
