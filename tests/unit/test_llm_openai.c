/* test_llm_openai.c - the "openai" generator against tests/fakes/fake_openai.mjs
 * on a loopback port: streaming under every split, usage, request shape,
 * error mapping, timeouts and cancellation that reaches the upstream socket. */
#include "llm_fake_harness.h"

/* ---- running one generation ---------------------------------------------- */

static const struct llm_message test_messages[] = {
    {"system", "You answer from the passages and cite them as [n]."},
    {"user", "How long do refunds take?"},
};

static void make_config(struct llm_config *cfg, const char *key) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->provider = "openai";
  cfg->base_url = base_url;
  cfg->api_key = key;
  cfg->model = "gpt-4o-mini";
  cfg->connect_timeout_ms = 2000;
  cfg->total_timeout_ms = 20000;
  cfg->idle_timeout_ms = 5000;
}

static void make_request(struct llm_request *req) {
  memset(req, 0, sizeof(*req));
  req->messages = test_messages;
  req->message_count = 2;
  req->question = "How long do refunds take?";
  req->max_tokens = 256;
  req->temperature = 0.25;
  req->request_id = "req-test-1";
}

/* Runs one generation to its end with cfg; r receives everything. */
static void generate(const struct llm_config *cfg, struct result *r) {
  struct llm g;
  struct llm_request req;
  struct llm_sink sink = make_sink(r);
  assert_int_equal(llm_create(cfg, &g), RAGD_OK);
  make_request(&req);
  assert_int_equal(g.ops->start(g.ctx, &req, &sink), RAGD_OK);
  /* The generator may go away while its transfer runs. */
  llm_destroy(&g);
  if (!result_wait(r, 0, 15000)) fail_msg("no on_finish within 15 s");
  /* Give a stray late callback a moment to show up. */
  usleep(20000);
  pthread_mutex_lock(&r->lock);
  assert_int_equal(r->finish_count, 1);
  assert_int_equal(r->after_finish, 0);
  assert_int_equal(r->bad_delta, 0);
  pthread_mutex_unlock(&r->lock);
}

static void expect_error(const char *patch, const char *code, ragd_err rc) {
  struct llm_config cfg;
  struct result r;
  fake_configure(patch);
  make_config(&cfg, "sk-test");
  result_init(&r);
  generate(&cfg, &r);
  if (strcmp(r.code, code) != 0)
    fail_msg("patch %s: code \"%s\" (%s), want \"%s\"", patch, r.code, r.message, code);
  assert_int_equal(r.rc, rc);
  assert_string_equal(r.reason, "");
  assert_true(r.message[0] != '\0');
  result_dispose(&r);
}

/* ---- tests -------------------------------------------------------------- */

static void expect_full_answer(const char *patch, const char *text) {
  struct llm_config cfg;
  struct result r;

  fake_configure(patch);
  make_config(&cfg, "sk-test");
  result_init(&r);
  generate(&cfg, &r);
  if (r.rc != RAGD_OK) fail_msg("patch %s: %s: %s", patch, r.code, r.message);
  assert_string_equal(r.reason, "stop");
  assert_int_equal(r.text.len, strlen(text));
  assert_memory_equal(r.text.data, text, strlen(text));
  assert_int_equal(r.usage_count, 1);
  assert_true(r.prompt_tokens > 0);
  assert_true(r.completion_tokens > 0);
  result_dispose(&r);
}

static void test_stream_whole(void **state) {
  (void)state;
  expect_full_answer("{\"split\":\"whole\"}", default_text);
}

static void test_stream_bytes(void **state) {
  (void)state;
  expect_full_answer("{\"split\":\"bytes\"}", default_text);
}

static void test_stream_random(void **state) {
  int seed;
  char patch[64];
  (void)state;
  for (seed = 1; seed <= 5; seed++) {
    snprintf(patch, sizeof(patch), "{\"split\":\"random\",\"seed\":%d}", seed);
    expect_full_answer(patch, default_text);
  }
}

static void test_stream_custom_text_bytes(void **state) {
  (void)state;
  expect_full_answer("{\"split\":\"bytes\",\"text\":\"\\u00e9\\u00e9\\u4e2d\\ud83d\\ude00 "
                     "\\n\\n  leading  spaces\\tand tabs \\\"q\\\" \\\\ [2]\"}",
                     "\xC3\xA9\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80 \n\n  leading  spaces\tand "
                     "tabs \"q\" \\ [2]");
}

static void test_request_shape(void **state) {
  struct llm_config cfg;
  struct result r;
  json_t *log, *rec, *headers, *body;
  (void)state;

  fake_configure(NULL);
  make_config(&cfg, "sk-test");
  result_init(&r);
  generate(&cfg, &r);
  assert_int_equal(r.rc, RAGD_OK);
  result_dispose(&r);

  log = admin("GET", "/__admin/log", NULL);
  assert_int_equal(json_array_size(log), 1);
  rec = json_array_get(log, 0);
  assert_string_equal(json_string_value(json_object_get(rec, "url")), "/v1/chat/completions");
  headers = json_object_get(rec, "headers");
  assert_string_equal(json_string_value(json_object_get(headers, "authorization")),
                      "Bearer sk-test");
  assert_string_equal(json_string_value(json_object_get(headers, "content-type")),
                      "application/json");
  assert_string_equal(json_string_value(json_object_get(headers, "accept")),
                      "text/event-stream");
  assert_string_equal(json_string_value(json_object_get(headers, "x-request-id")), "req-test-1");
  body = json_object_get(rec, "body");
  assert_string_equal(json_string_value(json_object_get(body, "model")), "gpt-4o-mini");
  assert_true(json_is_true(json_object_get(body, "stream")));
  assert_true(json_is_true(
      json_object_get(json_object_get(body, "stream_options"), "include_usage")));
  assert_int_equal(json_integer_value(json_object_get(body, "max_tokens")), 256);
  assert_true(json_real_value(json_object_get(body, "temperature")) == 0.25);
  assert_int_equal(json_array_size(json_object_get(body, "messages")), 2);
  assert_string_equal(json_string_value(json_object_get(
                          json_array_get(json_object_get(body, "messages"), 1), "content")),
                      "How long do refunds take?");
  assert_false(json_is_true(json_object_get(rec, "client_aborted")));
  json_decref(log);
}

static void test_no_key_no_authorization(void **state) {
  struct llm_config cfg;
  struct result r;
  json_t *log, *headers;
  (void)state;
  fake_configure(NULL);
  make_config(&cfg, NULL);
  result_init(&r);
  generate(&cfg, &r);
  assert_int_equal(r.rc, RAGD_OK);
  result_dispose(&r);
  log = admin("GET", "/__admin/log", NULL);
  headers = json_object_get(json_array_get(log, 0), "headers");
  assert_null(json_object_get(headers, "authorization"));
  json_decref(log);
}

static void test_status_errors(void **state) {
  (void)state;
  expect_error("{\"status\":500}", "upstream_unavailable", RAGD_EUPSTREAM);
  expect_error("{\"status\":503}", "upstream_unavailable", RAGD_EUPSTREAM);
  expect_error("{\"status\":429}", "upstream_unavailable", RAGD_EUPSTREAM);
  expect_error("{\"status\":400}", "upstream_error", RAGD_EUPSTREAM);
}

static void test_status_401_carries_provider_message(void **state) {
  struct llm_config cfg;
  struct result r;
  (void)state;
  fake_configure("{\"status\":401}");
  make_config(&cfg, "sk-wrong");
  result_init(&r);
  generate(&cfg, &r);
  assert_string_equal(r.code, "upstream_error");
  assert_non_null(strstr(r.message, "Incorrect API key provided"));
  result_dispose(&r);
}

static void test_stream_cut_short(void **state) {
  (void)state;
  expect_error("{\"mode\":\"close-after:3\"}", "upstream_closed", RAGD_EUPSTREAM);
  expect_error("{\"mode\":\"reset-after:3\",\"split\":\"bytes\"}", "upstream_closed",
               RAGD_EUPSTREAM);
  expect_error("{\"mode\":\"close-after:0\"}", "upstream_closed", RAGD_EUPSTREAM);
}

static void test_protocol_errors(void **state) {
  (void)state;
  expect_error("{\"mode\":\"garbage\"}", "upstream_protocol", RAGD_EUPSTREAM);
  expect_error("{\"mode\":\"garbage\",\"split\":\"bytes\"}", "upstream_protocol", RAGD_EUPSTREAM);
  expect_error("{\"mode\":\"stream-error\"}", "upstream_error", RAGD_EUPSTREAM);
}

static void test_line_over_cap(void **state) {
  struct buf patch;
  size_t i;
  (void)state;
  /* One content token of 1.5 MiB: its data line passes the 1 MiB cap. */
  buf_init(&patch, 0);
  assert_int_equal(buf_append_str(&patch, "{\"text\":\""), RAGD_OK);
  for (i = 0; i < 1536 * 1024; i++) assert_int_equal(buf_append_char(&patch, 'x'), RAGD_OK);
  assert_int_equal(buf_append_str(&patch, "\"}"), RAGD_OK);
  expect_error(patch.data, "upstream_protocol", RAGD_EUPSTREAM);
  buf_dispose(&patch);
}

static void test_idle_timeout(void **state) {
  struct llm_config cfg;
  struct result r;
  int64_t t0;
  (void)state;
  fake_configure("{\"mode\":\"hang-after:2\"}");
  make_config(&cfg, "sk-test");
  cfg.idle_timeout_ms = 300;
  result_init(&r);
  t0 = clock_mono_ms();
  generate(&cfg, &r);
  assert_string_equal(r.code, "upstream_timeout");
  assert_int_equal(r.rc, RAGD_ETIMEOUT);
  assert_true(r.finish_ms - t0 < 3000);
  result_dispose(&r);
}

static void test_total_timeout(void **state) {
  struct llm_config cfg;
  struct result r;
  (void)state;
  fake_configure("{\"delay_ms\":150}");
  make_config(&cfg, "sk-test");
  cfg.total_timeout_ms = 400;
  result_init(&r);
  generate(&cfg, &r);
  assert_string_equal(r.code, "upstream_timeout");
  result_dispose(&r);
}

static void test_connect_refused(void **state) {
  struct llm_config cfg;
  struct result r;
  (void)state;
  make_config(&cfg, "sk-test");
  cfg.base_url = "http://127.0.0.1:1/v1"; /* nothing listens on port 1 */
  result_init(&r);
  generate(&cfg, &r);
  assert_string_equal(r.code, "upstream_unavailable");
  result_dispose(&r);
}

static void test_cancel_reaches_upstream(void **state) {
  struct llm_config cfg;
  struct llm g;
  struct llm_request req;
  struct result r;
  struct llm_sink sink;
  json_t *log = NULL;
  int64_t cancel_ms;
  int i, aborted = 0;
  (void)state;

  fake_configure("{\"delay_ms\":300}");
  make_config(&cfg, "sk-test");
  result_init(&r);
  sink = make_sink(&r);
  assert_int_equal(llm_create(&cfg, &g), RAGD_OK);
  make_request(&req);
  assert_int_equal(g.ops->start(g.ctx, &req, &sink), RAGD_OK);
  if (!result_wait(&r, 1, 10000)) fail_msg("no first delta");

  pthread_mutex_lock(&r.lock);
  assert_int_equal(r.finish_count, 0);
  r.cancelled = 1;
  pthread_mutex_unlock(&r.lock);
  cancel_ms = clock_mono_ms();
  llm_wakeup();

  if (!result_wait(&r, 0, 2000)) fail_msg("no on_finish after cancel");
  assert_string_equal(r.code, "cancelled");
  assert_int_equal(r.rc, RAGD_ECANCELLED);
  if (r.finish_ms - cancel_ms >= 500)
    fail_msg("cancel took %lld ms", (long long)(r.finish_ms - cancel_ms));
  assert_true(r.text.len < strlen(default_text));

  /* The fake must see its client go away (poll: node notices shortly). */
  for (i = 0; i < 50 && !aborted; i++) {
    json_decref(log);
    log = admin("GET", "/__admin/log", NULL);
    aborted = json_is_true(json_object_get(json_array_get(log, 0), "client_aborted"));
    if (!aborted) usleep(20000);
  }
  json_decref(log);
  assert_true(aborted);
  llm_destroy(&g);
  usleep(20000);
  pthread_mutex_lock(&r.lock);
  assert_int_equal(r.after_finish, 0);
  pthread_mutex_unlock(&r.lock);
  result_dispose(&r);
}

static void test_shutdown_cancels_in_flight(void **state) {
  struct llm_config cfg;
  struct llm g;
  struct llm_request req;
  struct result r;
  struct llm_sink sink;
  (void)state;

  fake_configure("{\"mode\":\"hang-after:1\"}");
  make_config(&cfg, "sk-test");
  result_init(&r);
  sink = make_sink(&r);
  assert_int_equal(llm_create(&cfg, &g), RAGD_OK);
  make_request(&req);
  assert_int_equal(g.ops->start(g.ctx, &req, &sink), RAGD_OK);
  usleep(200000);
  llm_runtime_shutdown();
  assert_int_equal(r.finish_count, 1);
  assert_string_equal(r.code, "cancelled");
  /* Starting while the runtime is down fails without touching the sink. */
  assert_int_not_equal(g.ops->start(g.ctx, &req, &sink), RAGD_OK);
  assert_int_equal(r.finish_count, 1);
  assert_int_equal(llm_runtime_init(), RAGD_OK);
  assert_int_equal(llm_runtime_init(), RAGD_OK); /* idempotent */
  llm_destroy(&g);
  result_dispose(&r);
}

static void test_many_concurrent(void **state) {
  enum { N = 16 };
  struct llm_config cfg;
  struct llm g;
  struct llm_request req;
  struct result r[N];
  struct llm_sink sink;
  int i;
  (void)state;

  fake_configure("{\"split\":\"random\"}");
  make_config(&cfg, "sk-test");
  assert_int_equal(llm_create(&cfg, &g), RAGD_OK);
  make_request(&req);
  for (i = 0; i < N; i++) {
    result_init(&r[i]);
    sink = make_sink(&r[i]);
    assert_int_equal(g.ops->start(g.ctx, &req, &sink), RAGD_OK);
  }
  for (i = 0; i < N; i++) {
    if (!result_wait(&r[i], 0, 15000)) fail_msg("stream %d did not finish", i);
    assert_int_equal(r[i].rc, RAGD_OK);
    assert_memory_equal(r[i].text.data, default_text, strlen(default_text));
    result_dispose(&r[i]);
  }
  llm_destroy(&g);
}

static void test_create_config_errors(void **state) {
  struct llm_config cfg;
  struct llm g;
  (void)state;
  make_config(&cfg, "sk-test");
  cfg.provider = "no-such-provider";
  assert_int_equal(llm_create(&cfg, &g), RAGD_ECONFIG);
  assert_null(g.ops);
  make_config(&cfg, "sk-test");
  cfg.base_url = NULL;
  assert_int_equal(llm_create(&cfg, &g), RAGD_ECONFIG);
  make_config(&cfg, "sk-test");
  cfg.model = "";
  assert_int_equal(llm_create(&cfg, &g), RAGD_ECONFIG);
  make_config(&cfg, "sk-bad\r\nX-Injected: 1");
  assert_int_equal(llm_create(&cfg, &g), RAGD_ECONFIG);
  make_config(&cfg, "sk-test");
  assert_int_equal(llm_create(&cfg, &g), RAGD_OK);
  assert_string_equal(g.model, "gpt-4o-mini");
  assert_string_equal(g.ops->name, "openai");
  llm_destroy(&g);
  assert_null(g.ops);
  llm_destroy(&g); /* a zeroed struct is fine */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_config_errors),
      cmocka_unit_test(test_stream_whole),
      cmocka_unit_test(test_stream_bytes),
      cmocka_unit_test(test_stream_random),
      cmocka_unit_test(test_stream_custom_text_bytes),
      cmocka_unit_test(test_request_shape),
      cmocka_unit_test(test_no_key_no_authorization),
      cmocka_unit_test(test_status_errors),
      cmocka_unit_test(test_status_401_carries_provider_message),
      cmocka_unit_test(test_stream_cut_short),
      cmocka_unit_test(test_protocol_errors),
      cmocka_unit_test(test_line_over_cap),
      cmocka_unit_test(test_idle_timeout),
      cmocka_unit_test(test_total_timeout),
      cmocka_unit_test(test_connect_refused),
      cmocka_unit_test(test_cancel_reaches_upstream),
      cmocka_unit_test(test_shutdown_cancels_in_flight),
      cmocka_unit_test(test_many_concurrent),
  };
  return cmocka_run_group_tests(tests, fake_start, fake_stop);
}
