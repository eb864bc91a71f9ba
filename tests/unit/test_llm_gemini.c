/* test_llm_gemini.c - the "gemini" generator against
 * tests/fakes/fake_gemini.mjs: streamGenerateContent?alt=sse under every
 * split, text relayed byte for byte, usageMetadata, finish reasons (SAFETY as
 * "content_filter"), error chunks and the request's shape (key in the
 * x-goog-api-key header, systemInstruction, contents, generationConfig). */
#include "llm_fake_harness.h"

static void cfg_init(struct llm_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->provider = "gemini";
  cfg->base_url = base_url;
  cfg->api_key = "AIza-test";
  cfg->model = "gemini-fake";
  cfg->idle_timeout_ms = 5000;
}

static void test_stream_splits(void **state) {
  (void)state;
  harness_expect_answer_splits();
}

static void test_request_shape(void **state) {
  struct result r;
  json_t *log, *rec, *h, *body, *c, *si;
  (void)state;
  fake_configure(NULL);
  result_init(&r);
  harness_run(256, &r);
  assert_int_equal(r.rc, RAGD_OK);
  result_dispose(&r);
  log = admin("GET", "/__admin/log", NULL);
  assert_int_equal(json_array_size(log), 1);
  rec = json_array_get(log, 0);
  assert_string_equal(json_string_value(json_object_get(rec, "url")),
                      "/v1beta/models/gemini-fake:streamGenerateContent?alt=sse");
  h = json_object_get(rec, "headers");
  assert_string_equal(json_string_value(json_object_get(h, "x-goog-api-key")), "AIza-test");
  assert_null(json_object_get(h, "authorization"));
  body = json_object_get(rec, "body");
  si = json_object_get(body, "systemInstruction");
  assert_string_equal(
      json_string_value(json_object_get(json_array_get(json_object_get(si, "parts"), 0), "text")),
      "You answer from the passages.\n\nCite them as [n].");
  c = json_object_get(body, "contents");
  assert_int_equal(json_array_size(c), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(c, 0), "role")), "user");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(body, "generationConfig"),
                                                      "maxOutputTokens")),
                   256);
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
  harness_expect_error("{\"mode\":\"close-after:3\"}", "upstream_closed");
  harness_expect_error("{\"status\":503}", "upstream_unavailable");
  fake_configure("{\"status\":429}");
  result_init(&r);
  harness_run(256, &r);
  assert_string_equal(r.code, "upstream_unavailable");
  assert_non_null(strstr(r.message, "Resource has been exhausted"));
  result_dispose(&r);
  fake_configure("{\"status\":403}");
  result_init(&r);
  harness_run(256, &r);
  assert_string_equal(r.code, "upstream_error");
  assert_non_null(strstr(r.message, "API key not valid"));
  result_dispose(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stream_splits),
      cmocka_unit_test(test_request_shape),
      cmocka_unit_test(test_stop_reasons),
      cmocka_unit_test(test_errors),
  };
  fake_script = "fake_gemini.mjs";
  fake_api_prefix = "/v1beta";
  harness_cfg_init = cfg_init;
  harness_request_id = "req-gem-1";
  return cmocka_run_group_tests(tests, fake_start, fake_stop);
}
