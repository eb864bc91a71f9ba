/* llm_fake_harness.h - what the generator tests share: a fake provider
 * (one of tests/fakes/fake_*.mjs) spawned on a loopback port for the whole group, its
 * admin API, and a recording sink. Included by one test file each; every
 * function is static. */
#ifndef RAGD_TEST_LLM_FAKE_HARNESS_H
#define RAGD_TEST_LLM_FAKE_HARNESS_H

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

static const char default_text[] =
    " Refunds are issued within 3 business days [1].\n  Second line with \"quotes\", emoji "
    "\xF0\x9F\x98\x80 and \xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4.";

extern char **environ;

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
  const char *suffix = "tests/unit/llm_fake_harness.h";
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

/* Set by the including test before cmocka starts: the fake to run and the
 * path prefix of its API ("/v1" or "/v1beta"). */
static const char *fake_script = "fake_openai.mjs";
static const char *fake_api_prefix = "/v1";

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
  snprintf(script, sizeof(script), "%s/tests/fakes/%s", dir, fake_script);
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
    fprintf(stderr, "%s did not start: got \"%s\"\n", script, line);
    return -1;
  }
  snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%d%s", fake_port, fake_api_prefix);
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
  int retry_count; /* on_retry calls */
  long retry_delay_ms[8];
  int retry_after_delta; /* on_retry after text went out: must never happen */
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

static void sink_retry(void *ctx, int attempt, long delay_ms, const char *reason) {
  struct result *r = ctx;
  (void)attempt;
  (void)reason;
  pthread_mutex_lock(&r->lock);
  if (r->finish_count) r->after_finish = 1;
  if (r->delta_count) r->retry_after_delta = 1;
  if (r->retry_count < 8) r->retry_delay_ms[r->retry_count] = delay_ms;
  r->retry_count++;
  pthread_mutex_unlock(&r->lock);
}

static struct llm_sink make_sink(struct result *r) {
  struct llm_sink s = {.ctx = r,
                       .on_delta = sink_delta,
                       .on_usage = sink_usage,
                       .is_cancelled = sink_is_cancelled,
                       .on_retry = sink_retry,
                       .on_finish = sink_finish};
  return s;
}

/* Waits until want_deltas deltas (or on_finish) arrived, or only on_finish
 * when want_deltas is 0; gives up after timeout_ms. Returns nonzero on success. */
static int result_wait(struct result *r, int want_deltas, long timeout_ms) {
  struct timespec ts = clock_deadline_ms(CLOCK_REALTIME, timeout_ms);
  int ok;
  pthread_mutex_lock(&r->lock);
  for (;;) {
    ok = want_deltas ? (r->delta_count >= want_deltas || r->finish_count) : r->finish_count > 0;
    if (ok) break;
    if (pthread_cond_timedwait(&r->cond, &r->lock, &ts) == ETIMEDOUT) break;
  }
  pthread_mutex_unlock(&r->lock);
  return ok;
}

/* ---- one generation against the fake ---------------------------------------- */

/* Set by a test file that uses harness_run (before the group starts): its
 * generator's configuration, and the request id its requests carry. */
static void (*harness_cfg_init)(struct llm_config *cfg);
static const char *harness_request_id;

/* Two system turns and the question: what every provider's request shape
 * test reads back. */
static const struct llm_message harness_msgs[] = {
    {"system", "You answer from the passages."},
    {"system", "Cite them as [n]."},
    {"user", "How long do refunds take?"},
};

/* Runs one generation of harness_msgs to its end (15 s at most) and checks
 * what every generation must satisfy: one on_finish, nothing after it, every
 * delta valid UTF-8 on its own. */
static __attribute__((unused)) void harness_run(long max_tokens, struct result *r) {
  struct llm_config cfg;
  struct llm g;
  struct llm_request req;
  struct llm_sink sink = make_sink(r);
  harness_cfg_init(&cfg);
  assert_int_equal(llm_create(&cfg, &g), RAGD_OK);
  memset(&req, 0, sizeof(req));
  req.messages = harness_msgs;
  req.message_count = sizeof harness_msgs / sizeof harness_msgs[0];
  req.max_tokens = max_tokens;
  req.temperature = -1;
  req.request_id = harness_request_id;
  assert_int_equal(g.ops->start(g.ctx, &req, &sink), RAGD_OK);
  llm_destroy(&g);
  if (!result_wait(r, 0, 15000)) fail_msg("no on_finish within 15 s");
  usleep(20000);
  assert_int_equal(r->finish_count, 1);
  assert_int_equal(r->after_finish, 0);
  assert_int_equal(r->bad_delta, 0);
}

/* The fakes' token count: runs of non-space characters, each with the
 * spaces before it (plus a final run of spaces, if any). */
static __attribute__((unused)) long harness_count_tokens(const char *t) {
  long n = 0;
  int in_word = 0;
  for (; *t; t++) {
    int space = *t == ' ' || *t == '\n' || *t == '\t';
    if (!space && !in_word) n++;
    in_word = !space;
  }
  if (t[-1] == ' ' || t[-1] == '\n') n++;
  return n;
}

/* With the fake configured by patch (NULL: its defaults), the whole default
 * text arrives byte for byte, with "stop" and the fake's usage. */
static __attribute__((unused)) void harness_expect_answer(const char *patch) {
  struct result r;
  fake_configure(patch);
  result_init(&r);
  harness_run(256, &r);
  if (r.rc != RAGD_OK) fail_msg("%s: %s: %s", patch ? patch : "{}", r.code, r.message);
  assert_string_equal(r.reason, "stop");
  assert_int_equal(r.text.len, strlen(default_text));
  assert_memory_equal(r.text.data, default_text, strlen(default_text));
  assert_int_equal(r.usage_count, 1);
  assert_true(r.prompt_tokens > 0);
  assert_int_equal(r.completion_tokens, harness_count_tokens(default_text));
  result_dispose(&r);
}

/* The default text under every split: whole, byte by byte, random pieces. */
static __attribute__((unused)) void harness_expect_answer_splits(void) {
  char patch[64];
  int seed;
  harness_expect_answer(NULL);
  harness_expect_answer("{\"split\":\"bytes\"}");
  for (seed = 1; seed <= 5; seed++) {
    snprintf(patch, sizeof(patch), "{\"split\":\"random\",\"seed\":%d}", seed);
    harness_expect_answer(patch);
  }
}

/* With the fake configured by patch, the generation ends with error code
 * code and a message for humans. */
static __attribute__((unused)) void harness_expect_error(const char *patch, const char *code) {
  struct result r;
  fake_configure(patch);
  result_init(&r);
  harness_run(256, &r);
  if (strcmp(r.code, code) != 0) fail_msg("%s: code \"%s\" (%s), want %s", patch, r.code, r.message, code);
  assert_true(r.message[0] != '\0');
  result_dispose(&r);
}

/* Number of API requests the fake logged. */
static __attribute__((unused)) size_t fake_request_count(void) {
  json_t *log = admin("GET", "/__admin/log", NULL);
  size_t n = json_array_size(log);
  json_decref(log);
  return n;
}

#endif
