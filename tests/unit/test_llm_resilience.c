/* test_llm_resilience.c - retries, Retry-After, circuit breakers and the
 * first-token timeout of the network generators, against
 * tests/fakes/fake_openai.mjs. Counts are what the fake saw (its request log)
 * and what the sink was told (on_retry). */
#include "llm_fake_harness.h"

static const struct llm_message msgs[] = {
    {"system", "You answer from the passages and cite them as [n]."},
    {"user", "How long do refunds take?"},
};

static void cfg_init(struct llm_config *cfg, const char *name) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->provider = "openai";
  cfg->name = name;
  cfg->base_url = base_url;
  cfg->api_key = "sk-test";
  cfg->model = "gpt-4o-mini";
  cfg->connect_timeout_ms = 2000;
  cfg->total_timeout_ms = 20000;
  cfg->idle_timeout_ms = 5000;
  cfg->retries = 2;
  cfg->retry_base_ms = 20;
  cfg->retry_max_delay_ms = 100;
  cfg->retry_budget_ms = 5000;
  cfg->breaker_min_requests = -1; /* breaker tests turn it on */
}

/* Runs one generation on g and waits for its end. */
static void run(struct llm *g, struct result *r) {
  struct llm_request req;
  struct llm_sink sink = make_sink(r);
  memset(&req, 0, sizeof(req));
  req.messages = msgs;
  req.message_count = 2;
  req.max_tokens = 256;
  req.temperature = -1;
  assert_int_equal(g->ops->start(g->ctx, &req, &sink), RAGD_OK);
  if (!result_wait(r, 0, 15000)) fail_msg("no on_finish within 15 s");
  usleep(20000);
  pthread_mutex_lock(&r->lock);
  assert_int_equal(r->finish_count, 1);
  assert_int_equal(r->after_finish, 0);
  assert_int_equal(r->retry_after_delta, 0);
  pthread_mutex_unlock(&r->lock);
}

static void run_cfg(const struct llm_config *cfg, struct result *r) {
  struct llm g;
  assert_int_equal(llm_create(cfg, &g), RAGD_OK);
  run(&g, r);
  llm_destroy(&g);
}

static void assert_answer(const struct result *r) {
  if (r->rc != RAGD_OK) fail_msg("%s: %s", r->code, r->message);
  assert_int_equal(r->text.len, strlen(default_text));
  assert_memory_equal(r->text.data, default_text, strlen(default_text));
}

static void test_429_retry_after_is_honoured(void **state) {
  struct llm_config cfg;
  struct result r;
  int64_t t0;
  (void)state;
  fake_configure("{\"fail_first\":1,\"fail_status\":429,\"retry_after\":\"1\"}");
  cfg_init(&cfg, "ra");
  result_init(&r);
  t0 = clock_mono_ms();
  run_cfg(&cfg, &r);
  assert_answer(&r);
  assert_int_equal(fake_request_count(), 2);
  assert_int_equal(r.retry_count, 1);
  /* Retry-After: 1 beats the 100 ms backoff cap. */
  assert_true(r.retry_delay_ms[0] >= 1000);
  if (clock_mono_ms() - t0 < 1000) fail_msg("retried after %lld ms", (long long)(clock_mono_ms() - t0));
  result_dispose(&r);
}

static void test_500_then_success(void **state) {
  struct llm_config cfg;
  struct result r;
  (void)state;
  fake_configure("{\"fail_first\":2,\"fail_status\":500}");
  cfg_init(&cfg, "500");
  result_init(&r);
  run_cfg(&cfg, &r);
  assert_answer(&r);
  assert_int_equal(fake_request_count(), 3);
  assert_int_equal(r.retry_count, 2);
  assert_true(r.retry_delay_ms[0] <= 100 && r.retry_delay_ms[1] <= 100);
  result_dispose(&r);
}

static void test_retries_are_bounded(void **state) {
  struct llm_config cfg;
  struct result r;
  int64_t t0;
  (void)state;
  fake_configure("{\"status\":503}");
  cfg_init(&cfg, "bounded");
  result_init(&r);
  run_cfg(&cfg, &r);
  assert_string_equal(r.code, "upstream_unavailable");
  assert_non_null(strstr(r.message, "after 3 attempts"));
  assert_int_equal(fake_request_count(), 3);
  assert_int_equal(r.retry_count, 2);
  result_dispose(&r);

  /* A Retry-After longer than the budget is not waited for. */
  fake_configure("{\"status\":429,\"retry_after\":\"30\"}");
  cfg.retry_budget_ms = 2000;
  result_init(&r);
  t0 = clock_mono_ms();
  run_cfg(&cfg, &r);
  assert_string_equal(r.code, "upstream_unavailable");
  assert_int_equal(fake_request_count(), 1);
  assert_int_equal(r.retry_count, 0);
  assert_true(clock_mono_ms() - t0 < 1500);
  result_dispose(&r);

  /* 4xx other than 429 is the caller's fault: never retried. */
  fake_configure("{\"status\":400}");
  result_init(&r);
  run_cfg(&cfg, &r);
  assert_string_equal(r.code, "upstream_error");
  assert_int_equal(fake_request_count(), 1);
  result_dispose(&r);
}

static void test_connect_refused_is_retried(void **state) {
  struct llm_config cfg;
  struct result r;
  (void)state;
  cfg_init(&cfg, "refused");
  cfg.base_url = "http://127.0.0.1:1/v1"; /* nothing listens on port 1 */
  result_init(&r);
  run_cfg(&cfg, &r);
  assert_string_equal(r.code, "upstream_unavailable");
  assert_int_equal(r.retry_count, 2);
  result_dispose(&r);
}

static void test_no_retry_after_first_delta(void **state) {
  struct llm_config cfg;
  struct result r;
  (void)state;
  fake_configure("{\"mode\":\"close-after:3\"}");
  cfg_init(&cfg, "committed");
  cfg.retries = 5;
  result_init(&r);
  run_cfg(&cfg, &r);
  assert_string_equal(r.code, "upstream_closed");
  assert_true(r.delta_count > 0);
  assert_int_equal(r.retry_count, 0);
  assert_int_equal(fake_request_count(), 1);
  result_dispose(&r);

  fake_configure("{\"mode\":\"reset-after:3\"}");
  result_init(&r);
  run_cfg(&cfg, &r);
  assert_string_equal(r.code, "upstream_closed");
  assert_int_equal(fake_request_count(), 1);
  result_dispose(&r);
}

/* The breaker state of the breaker called name, or -1 when it does not exist. */
static int breaker_status(const char *name, struct llm_breaker_state *out) {
  struct llm_breaker_state all[16];
  size_t n = llm_breakers_snapshot(all, 16), i;
  for (i = 0; i < n && i < 16; i++) {
    if (strcmp(all[i].name, name) == 0) {
      if (out) *out = all[i];
      return (int)all[i].status;
    }
  }
  return -1;
}

static void test_breaker_opens_fails_fast_half_opens_and_closes(void **state) {
  struct llm_config cfg;
  struct llm g;
  struct result r;
  struct llm_breaker_state st;
  int i;
  int64_t t0;
  (void)state;
  fake_configure("{\"status\":503}");
  cfg_init(&cfg, "brk");
  cfg.retries = -1;
  cfg.breaker_min_requests = 5;
  cfg.breaker_failure_pct = 50;
  cfg.breaker_cooldown_ms = 600;
  assert_int_equal(llm_create(&cfg, &g), RAGD_OK);
  assert_int_equal(breaker_status("brk", &st), LLM_BREAKER_CLOSED);
  assert_non_null(strstr(st.endpoint, "/v1/chat/completions"));

  for (i = 0; i < 5; i++) {
    result_init(&r);
    run(&g, &r);
    assert_string_equal(r.code, "upstream_unavailable");
    assert_null(strstr(r.message, "circuit breaker"));
    result_dispose(&r);
  }
  assert_int_equal(fake_request_count(), 5);
  assert_int_equal(breaker_status("brk", &st), LLM_BREAKER_OPEN);
  assert_int_equal(st.opened_total, 1);
  assert_true(st.retry_in_ms > 0 && st.retry_in_ms <= 600);

  /* Open: fails fast, the fake is not contacted. */
  result_init(&r);
  t0 = clock_mono_ms();
  run(&g, &r);
  assert_string_equal(r.code, "upstream_unavailable");
  assert_non_null(strstr(r.message, "circuit breaker open"));
  assert_true(r.finish_ms - t0 < 200);
  assert_int_equal(fake_request_count(), 5);
  result_dispose(&r);

  /* After the cool-down: half-open; a failing probe opens it again. */
  usleep(700000);
  assert_int_equal(breaker_status("brk", NULL), LLM_BREAKER_HALF_OPEN);
  result_init(&r);
  run(&g, &r);
  assert_null(strstr(r.message, "circuit breaker"));
  assert_int_equal(fake_request_count(), 6);
  assert_int_equal(breaker_status("brk", &st), LLM_BREAKER_OPEN);
  assert_int_equal(st.opened_total, 2);
  result_dispose(&r);

  /* The upstream recovers: the next probe succeeds and closes it. */
  usleep(700000);
  fake_configure(NULL);
  result_init(&r);
  run(&g, &r);
  assert_answer(&r);
  assert_int_equal(fake_request_count(), 1);
  assert_int_equal(breaker_status("brk", NULL), LLM_BREAKER_CLOSED);
  result_dispose(&r);
  llm_destroy(&g);
  /* The breaker went away with the last generator using it. */
  assert_int_equal(breaker_status("brk", NULL), -1);
}

static void test_breaker_ignores_a_minority_of_failures(void **state) {
  struct llm_config cfg;
  struct llm g;
  struct result r;
  int i;
  (void)state;
  cfg_init(&cfg, "minority");
  cfg.retries = -1;
  cfg.breaker_min_requests = 5;
  assert_int_equal(llm_create(&cfg, &g), RAGD_OK);
  /* 3 successes, then 2 failures: 40% < 50%, it stays closed. */
  for (i = 0; i < 5; i++) {
    fake_configure(i < 3 ? NULL : "{\"status\":500}");
    result_init(&r);
    run(&g, &r);
    result_dispose(&r);
  }
  assert_int_equal(breaker_status("minority", NULL), LLM_BREAKER_CLOSED);
  llm_destroy(&g);
}

static void test_first_token_timeout(void **state) {
  struct llm_config cfg;
  struct result r;
  int64_t t0;
  (void)state;
  /* The server accepts and reads the request, then says nothing. */
  fake_configure("{\"mode\":\"accept-hang\"}");
  cfg_init(&cfg, "ftt");
  cfg.first_token_timeout_ms = 300;
  result_init(&r);
  t0 = clock_mono_ms();
  run_cfg(&cfg, &r);
  assert_string_equal(r.code, "upstream_timeout");
  assert_int_equal(r.rc, RAGD_ETIMEOUT);
  assert_int_equal(r.delta_count, 0);
  assert_true(r.finish_ms - t0 < 2000);
  result_dispose(&r);

  /* Headers and the role chunk arrive, but no text: still no first token. */
  fake_configure("{\"mode\":\"hang-after:1\"}");
  result_init(&r);
  t0 = clock_mono_ms();
  run_cfg(&cfg, &r);
  assert_string_equal(r.code, "upstream_timeout");
  assert_true(r.finish_ms - t0 < 2000);
  assert_int_equal(fake_request_count(), 1);
  result_dispose(&r);
}

static void test_mid_stream_contract(void **state) {
  struct llm_config cfg;
  struct result r;
  (void)state;
  cfg_init(&cfg, "contract");
  /* A stall after text: upstream_timeout at the idle limit. */
  fake_configure("{\"mode\":\"hang-after:3\"}");
  cfg.idle_timeout_ms = 300;
  result_init(&r);
  run_cfg(&cfg, &r);
  assert_true(r.delta_count > 0);
  assert_string_equal(r.code, "upstream_timeout");
  result_dispose(&r);
  /* A 10 MiB line: upstream_protocol, not unbounded memory. */
  fake_configure("{\"mode\":\"big-line\"}");
  cfg.idle_timeout_ms = 5000;
  result_init(&r);
  run_cfg(&cfg, &r);
  assert_string_equal(r.code, "upstream_protocol");
  result_dispose(&r);
  /* A very slow drip still arrives whole, byte for byte. */
  fake_configure("{\"drip_ms\":1,\"text\":\"drip \\u00e9 \\ud83d\\ude00 ok\"}");
  cfg.idle_timeout_ms = 1000;
  result_init(&r);
  run_cfg(&cfg, &r);
  if (r.rc != RAGD_OK) fail_msg("%s: %s", r.code, r.message);
  assert_int_equal(r.text.len, strlen("drip \xC3\xA9 \xF0\x9F\x98\x80 ok"));
  assert_memory_equal(r.text.data, "drip \xC3\xA9 \xF0\x9F\x98\x80 ok", r.text.len);
  result_dispose(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_429_retry_after_is_honoured),
      cmocka_unit_test(test_500_then_success),
      cmocka_unit_test(test_retries_are_bounded),
      cmocka_unit_test(test_connect_refused_is_retried),
      cmocka_unit_test(test_no_retry_after_first_delta),
      cmocka_unit_test(test_breaker_opens_fails_fast_half_opens_and_closes),
      cmocka_unit_test(test_breaker_ignores_a_minority_of_failures),
      cmocka_unit_test(test_first_token_timeout),
      cmocka_unit_test(test_mid_stream_contract),
  };
  return cmocka_run_group_tests(tests, fake_start, fake_stop);
}
