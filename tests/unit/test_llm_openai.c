/* test_llm_openai.c - the "openai" generator against tests/fakes/fake_openai.mjs
 * on a loopback port: streaming under every split, usage, request shape,
 * error mapping, timeouts and cancellation that reaches the upstream socket. */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "llm/llm.h"
#include "util/buf.h"
#include "util/clock.h"

extern char **environ;

static const char default_text[] =
    " Refunds are issued within 3 business days [1].\n  Second line with \"quotes\", emoji "
    "\xF0\x9F\x98\x80 and \xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4.";

/* ---- the fake upstream process ------------------------------------------- */

static pid_t fake_pid = -1;
static int fake_stdin = -1; /* closing it makes the fake exit */
static int fake_port;
static char base_url[128];

/* The repository root: RAGD_SOURCE_DIR when the build sets it, otherwise
 * derived at compile time from this file's path (CMake passes absolute
 * source paths, so __FILE__ ends in tests/unit/test_llm_openai.c). */
static void source_dir(char *out, size_t out_len) {
  const char *env = getenv("RAGD_SOURCE_DIR");
  const char *suffix = "tests/unit/test_llm_openai.c";
  size_t len, slen = strlen(suffix);
  if (env && env[0]) {
    snprintf(out, out_len, "%s", env);
    return;
  }
  len = strlen(__FILE__);
  if (len >= slen && strcmp(__FILE__ + len - slen, suffix) == 0) {
    snprintf(out, out_len, "%.*s", (int)(len - slen), __FILE__);
  } else {
    snprintf(out, out_len, ".");
  }
  if (out[0] == '\0') snprintf(out, out_len, ".");
}

static int fake_start(void **state) {
  char dir[1024], script[1200], line[128];
  char *argv[] = {"node", script, "--port", "0", "--exit-on-stdin-eof", "1", NULL};
  posix_spawn_file_actions_t fa;
  int out_pipe[2], in_pipe[2];
  struct pollfd pfd;
  size_t used = 0;
  ssize_t n;
  (void)state;

  source_dir(dir, sizeof(dir));
  snprintf(script, sizeof(script), "%s/tests/fakes/fake_openai.mjs", dir);
  if (pipe(out_pipe) || pipe(in_pipe)) return -1;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, in_pipe[0], STDIN_FILENO);
  posix_spawn_file_actions_addclose(&fa, out_pipe[0]);
  posix_spawn_file_actions_addclose(&fa, in_pipe[1]);
  if (posix_spawnp(&fake_pid, "node", &fa, NULL, argv, environ) != 0) {
    posix_spawn_file_actions_destroy(&fa);
    fprintf(stderr, "cannot spawn node\n");
    return -1;
  }
  posix_spawn_file_actions_destroy(&fa);
  close(out_pipe[1]);
  close(in_pipe[0]);
  fake_stdin = in_pipe[1];

  /* Wait (bounded) for "LISTENING <port>\n". */
  memset(line, 0, sizeof(line));
  pfd.fd = out_pipe[0];
  pfd.events = POLLIN;
  while (used < sizeof(line) - 1 && !strchr(line, '\n')) {
    if (poll(&pfd, 1, 10000) <= 0) break;
    n = read(out_pipe[0], line + used, sizeof(line) - 1 - used);
    if (n <= 0) break;
    used += (size_t)n;
  }
  close(out_pipe[0]);
  if (sscanf(line, "LISTENING %d", &fake_port) != 1) {
    fprintf(stderr, "fake_openai did not start (%s): got \"%s\"\n", script, line);
    return -1;
  }
  snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%d/v1", fake_port);
  if (llm_runtime_init() != RAGD_OK) return -1;
  return 0;
}

static int fake_stop(void **state) {
  (void)state;
  llm_runtime_shutdown();
  if (fake_pid > 0) {
    kill(fake_pid, SIGTERM);
    waitpid(fake_pid, NULL, 0);
    fake_pid = -1;
  }
  if (fake_stdin >= 0) close(fake_stdin);
  fake_stdin = -1;
  return 0;
}

static size_t admin_collect(char *p, size_t size, size_t n, void *ud) {
  return buf_append(ud, p, size * n) == RAGD_OK ? size * n : 0;
}

/* One blocking request to the fake's admin API; returns the parsed reply. */
static json_t *admin(const char *method, const char *path, const char *body) {
  CURL *c = curl_easy_init();
  struct curl_slist *h = NULL;
  struct buf out;
  char url[256];
  json_t *j;
  CURLcode code;

  buf_init(&out, 0);
  snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", fake_port, path);
  h = curl_slist_append(h, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, admin_collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
  code = curl_easy_perform(c);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  if (code != CURLE_OK) fail_msg("admin %s %s: %s", method, path, curl_easy_strerror(code));
  j = json_loadb(out.data ? out.data : "", out.len, 0, NULL);
  buf_dispose(&out);
  if (!j) fail_msg("admin %s %s: reply is not JSON", method, path);
  return j;
}

/* Resets the fake, applies patch (a JSON object, may be NULL), clears its log. */
static void fake_configure(const char *patch) {
  json_t *j;
  j = admin("POST", "/__admin/config", "{\"reset\":true}");
  json_decref(j);
  if (patch) {
    j = admin("POST", "/__admin/config", patch);
    json_decref(j);
  }
  j = admin("DELETE", "/__admin/log", NULL);
  json_decref(j);
}

/* ---- a recording sink ---------------------------------------------------- */

struct result {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct buf text;
  int delta_count;
  int bad_delta; /* a delta that was empty or not valid UTF-8 on its own */
  int usage_count;
  long prompt_tokens, completion_tokens;
  int finish_count;
  int after_finish; /* a callback arrived after on_finish */
  ragd_err rc;
  char reason[64], code[64], message[512];
  int64_t finish_ms;
  int cancelled; /* read by is_cancelled on the upstream thread */
};

static void result_init(struct result *r) {
  memset(r, 0, sizeof(*r));
  pthread_mutex_init(&r->lock, NULL);
  pthread_cond_init(&r->cond, NULL);
  buf_init(&r->text, 0);
}

static void result_dispose(struct result *r) {
  buf_dispose(&r->text);
  pthread_mutex_destroy(&r->lock);
  pthread_cond_destroy(&r->cond);
}

/* Strict enough for the test: lead byte, then the right number of
 * continuation bytes, all inside the delta. */
static int utf8_valid(const unsigned char *p, size_t len) {
  size_t i = 0, need, k;
  while (i < len) {
    if (p[i] < 0x80) {
      need = 0;
    } else if (p[i] >= 0xC2 && p[i] < 0xE0) {
      need = 1;
    } else if (p[i] >= 0xE0 && p[i] < 0xF0) {
      need = 2;
    } else if (p[i] >= 0xF0 && p[i] < 0xF5) {
      need = 3;
    } else {
      return 0;
    }
    if (need >= len - i) return 0;
    for (k = 1; k <= need; k++) {
      if ((p[i + k] & 0xC0) != 0x80) return 0;
    }
    i += need + 1;
  }
  return 1;
}

static void sink_delta(void *ctx, const char *text, size_t len) {
  struct result *r = ctx;
  pthread_mutex_lock(&r->lock);
  if (r->finish_count) r->after_finish = 1;
  if (len == 0 || !utf8_valid((const unsigned char *)text, len)) r->bad_delta = 1;
  if (buf_append(&r->text, text, len) != RAGD_OK) r->bad_delta = 1;
  r->delta_count++;
  pthread_cond_broadcast(&r->cond);
  pthread_mutex_unlock(&r->lock);
}

static void sink_usage(void *ctx, long prompt_tokens, long completion_tokens) {
  struct result *r = ctx;
  pthread_mutex_lock(&r->lock);
  if (r->finish_count) r->after_finish = 1;
  r->usage_count++;
  r->prompt_tokens = prompt_tokens;
  r->completion_tokens = completion_tokens;
  pthread_mutex_unlock(&r->lock);
}

static int sink_is_cancelled(void *ctx) {
  struct result *r = ctx;
  int v;
  pthread_mutex_lock(&r->lock);
  if (r->finish_count) r->after_finish = 1;
  v = r->cancelled;
  pthread_mutex_unlock(&r->lock);
  return v;
}

static void sink_finish(void *ctx, ragd_err rc, const char *finish_reason, const char *error_code,
                        const char *error_message) {
  struct result *r = ctx;
  pthread_mutex_lock(&r->lock);
  r->finish_count++;
  r->rc = rc;
  snprintf(r->reason, sizeof(r->reason), "%s", finish_reason ? finish_reason : "");
  snprintf(r->code, sizeof(r->code), "%s", error_code ? error_code : "");
  snprintf(r->message, sizeof(r->message), "%s", error_message ? error_message : "");
  r->finish_ms = clock_mono_ms();
  pthread_cond_broadcast(&r->cond);
  pthread_mutex_unlock(&r->lock);
}

static struct llm_sink make_sink(struct result *r) {
  struct llm_sink s = {.ctx = r,
                       .on_delta = sink_delta,
                       .on_usage = sink_usage,
                       .is_cancelled = sink_is_cancelled,
                       .on_finish = sink_finish};
  return s;
}

/* Waits until want_deltas deltas (or on_finish) arrived, or only on_finish
 * when want_deltas is 0; gives up after timeout_ms. Returns nonzero on success. */
static int result_wait(struct result *r, int want_deltas, long timeout_ms) {
  struct timespec ts;
  int ok;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += timeout_ms / 1000;
  ts.tv_nsec += (timeout_ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&r->lock);
  for (;;) {
    ok = want_deltas ? (r->delta_count >= want_deltas || r->finish_count) : r->finish_count > 0;
    if (ok) break;
    if (pthread_cond_timedwait(&r->cond, &r->lock, &ts) == ETIMEDOUT) break;
  }
  pthread_mutex_unlock(&r->lock);
  return ok;
}

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
