/* test_llm_anthropic.c - the "anthropic" generator against
 * tests/fakes/fake_anthropic.mjs: the Messages API stream under every split,
 * text relayed byte for byte, usage, stop reasons, error events and the
 * request's shape (system at the top level, x-api-key, anthropic-version). */
#include "llm_fake_harness.h"

static void cfg_init(struct llm_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->provider = "anthropic";
  cfg->base_url = base_url;
  cfg->api_key = "sk-ant-test";
  cfg->model = "claude-fake";
  cfg->idle_timeout_ms = 5000;
}

static void test_stream_splits(void **state) {
  (void)state;
  harness_expect_answer_splits();
}

static void test_request_shape(void **state) {
  struct result r;
  json_t *log, *rec, *h, *body, *m;
  (void)state;
  fake_configure(NULL);
  result_init(&r);
  harness_run(256, &r);
  assert_int_equal(r.rc, RAGD_OK);
  result_dispose(&r);
  log = admin("GET", "/__admin/log", NULL);
  assert_int_equal(json_array_size(log), 1);
  rec = json_array_get(log, 0);
  assert_string_equal(json_string_value(json_object_get(rec, "url")), "/v1/messages");
  h = json_object_get(rec, "headers");
  assert_string_equal(json_string_value(json_object_get(h, "x-api-key")), "sk-ant-test");
  assert_string_equal(json_string_value(json_object_get(h, "anthropic-version")), "2023-06-01");
  assert_null(json_object_get(h, "authorization"));
  assert_string_equal(json_string_value(json_object_get(h, "x-request-id")), "req-ant-1");
  body = json_object_get(rec, "body");
  assert_string_equal(json_string_value(json_object_get(body, "model")), "claude-fake");
  assert_true(json_is_true(json_object_get(body, "stream")));
  assert_int_equal(json_integer_value(json_object_get(body, "max_tokens")), 256);
  assert_string_equal(json_string_value(json_object_get(body, "system")),
                      "You answer from the passages.\n\nCite them as [n].");
  assert_null(json_object_get(body, "temperature"));
  m = json_object_get(body, "messages");
  assert_int_equal(json_array_size(m), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(m, 0), "role")), "user");
  json_decref(log);
}

static void test_stop_reasons(void **state) {
  struct result r;
  (void)state;
  fake_configure(NULL);
  result_init(&r);
  harness_run(3, &r); /* max_tokens 3: the fake stops with "max_tokens" */
  assert_int_equal(r.rc, RAGD_OK);
  assert_string_equal(r.reason, "length");
  assert_string_equal(r.text.data, " Refunds are issued");
  assert_int_equal(r.completion_tokens, 3);
  result_dispose(&r);
  fake_configure("{\"mode\":\"safety\"}");
  result_init(&r);
  harness_run(256, &r);
  assert_int_equal(r.rc, RAGD_OK);
  assert_string_equal(r.reason, "content_filter");
  result_dispose(&r);
}

static void test_errors(void **state) {
  struct result r;
  (void)state;
  harness_expect_error("{\"mode\":\"stream-error\"}", "upstream_error");
  harness_expect_error("{\"mode\":\"garbage\",\"split\":\"bytes\"}", "upstream_protocol");
  harness_expect_error("{\"mode\":\"close-after:4\"}", "upstream_closed");
  harness_expect_error("{\"status\":529}", "upstream_unavailable");
  harness_expect_error("{\"status\":429}", "upstream_unavailable");
  /* The provider's own words reach the sink. */
  fake_configure("{\"status\":401}");
  result_init(&r);
  harness_run(256, &r);
  assert_string_equal(r.code, "upstream_error");
  assert_non_null(strstr(r.message, "invalid x-api-key"));
  result_dispose(&r);
  /* An error event after text keeps the text that was sent. */
  fake_configure("{\"mode\":\"stream-error\"}");
  result_init(&r);
  harness_run(256, &r);
  assert_string_equal(r.text.data, " Refunds");
  assert_non_null(strstr(r.message, "Overloaded"));
  result_dispose(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stream_splits),
      cmocka_unit_test(test_request_shape),
      cmocka_unit_test(test_stop_reasons),
      cmocka_unit_test(test_errors),
  };
  fake_script = "fake_anthropic.mjs";
  harness_cfg_init = cfg_init;
  harness_request_id = "req-ant-1";
  return cmocka_run_group_tests(tests, fake_start, fake_stop);
}
