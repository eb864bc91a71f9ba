/* util/log: JSON lines on stderr, levels, the thread's request id, extra
 * fields, and the redaction every message goes through (guard_redact_log). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "guard/guard.h"
#include "util/log.h"

/* stderr goes to a temporary file while a test logs. */
static int saved_stderr = -1;
static FILE *capture;

static int setup(void **state) {
  (void)state;
  capture = tmpfile();
  assert_non_null(capture);
  fflush(stderr);
  saved_stderr = dup(STDERR_FILENO);
  assert_true(dup2(fileno(capture), STDERR_FILENO) >= 0);
  log_set_level(LOG_INFO);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  dup2(saved_stderr, STDERR_FILENO);
  close(saved_stderr);
  fclose(capture);
  log_set_level(LOG_INFO);
  return 0;
}

/* Everything logged so far, one parsed JSON object per line; every line
 * must parse. */
static json_t *captured_lines(void) {
  json_t *lines = json_array();
  char line[16384];
  rewind(capture);
  while (fgets(line, sizeof line, capture)) {
    json_error_t jerr;
    json_t *o;
    size_t n = strlen(line);
    assert_true(n > 0 && line[n - 1] == '\n');
    o = json_loads(line, 0, &jerr);
    if (!o) fail_msg("not JSON: %s (%s)", line, jerr.text);
    assert_true(json_is_object(o));
    json_array_append_new(lines, o);
  }
  return lines;
}

static const char *str(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

static void test_json_line_shape(void **state) {
  json_t *lines, *o;
  const char *ts;
  (void)state;
  log_info("hello \"world\"\n tab\t %d", 42);
  lines = captured_lines();
  assert_int_equal(json_array_size(lines), 1);
  o = json_array_get(lines, 0);
  assert_string_equal(str(o, "level"), "info");
  assert_string_equal(str(o, "msg"), "hello \"world\"\n tab\t 42");
  ts = str(o, "ts");
  assert_non_null(ts);
  /* 2025-06-01T12:00:00.123Z */
  assert_int_equal(strlen(ts), 24);
  assert_int_equal(ts[10], 'T');
  assert_int_equal(ts[23], 'Z');
  assert_null(json_object_get(o, "request_id"));
  json_decref(lines);
}

static void test_levels(void **state) {
  json_t *lines;
  (void)state;
  log_set_level(LOG_WARN);
  assert_false(log_enabled(LOG_INFO));
  assert_true(log_enabled(LOG_ERROR));
  log_debug("dropped");
  log_info("dropped");
  log_warn("kept warn");
  log_error("kept error");
  log_set_level(LOG_OFF);
  log_error("dropped too");
  lines = captured_lines();
  assert_int_equal(json_array_size(lines), 2);
  assert_string_equal(str(json_array_get(lines, 0), "level"), "warn");
  assert_string_equal(str(json_array_get(lines, 1), "level"), "error");
  assert_int_equal(log_level_parse("debug"), LOG_DEBUG);
  assert_int_equal(log_level_parse("off"), LOG_OFF);
  assert_int_equal(log_level_parse("verbose"), -1);
  json_decref(lines);
}

static void test_request_scope_nests(void **state) {
  struct log_scope outer, inner;
  json_t *lines;
  (void)state;
  log_scope_begin(&outer, "req_outer");
  log_info("one");
  log_scope_begin(&inner, "req_inner");
  log_info("two");
  log_scope_end(&inner);
  log_info("three");
  log_scope_end(&outer);
  log_info("four");
  assert_string_equal(log_request_id(), "");
  lines = captured_lines();
  assert_int_equal(json_array_size(lines), 4);
  assert_string_equal(str(json_array_get(lines, 0), "request_id"), "req_outer");
  assert_string_equal(str(json_array_get(lines, 1), "request_id"), "req_inner");
  assert_string_equal(str(json_array_get(lines, 2), "request_id"), "req_outer");
  assert_null(json_object_get(json_array_get(lines, 3), "request_id"));
  json_decref(lines);
}

static void *other_thread(void *arg) {
  (void)arg;
  log_info("from another thread");
  return NULL;
}

static void test_request_id_is_per_thread(void **state) {
  struct log_scope scope;
  pthread_t t;
  json_t *lines;
  (void)state;
  log_scope_begin(&scope, "req_main");
  assert_int_equal(pthread_create(&t, NULL, other_thread, NULL), 0);
  pthread_join(t, NULL);
  log_scope_end(&scope);
  lines = captured_lines();
  assert_int_equal(json_array_size(lines), 1);
  assert_null(json_object_get(json_array_get(lines, 0), "request_id"));
  json_decref(lines);
}

static void test_fields(void **state) {
  json_t *f = json_object(), *lines, *o;
  struct log_scope scope;
  (void)state;
  json_object_set_new(f, "route", json_string("/v1/chat"));
  json_object_set_new(f, "status", json_integer(200));
  json_object_set_new(f, "duration_ms", json_real(12.5));
  json_object_set_new(f, "msg", json_string("must not replace the message"));
  json_object_set_new(f, "request_id", json_string("must not replace the id"));
  log_scope_begin(&scope, "req_f");
  log_fields(LOG_INFO, f, "POST %s", "/v1/chat");
  log_fields(LOG_DEBUG, json_object(), "dropped, and its fields freed");
  log_scope_end(&scope);
  lines = captured_lines();
  assert_int_equal(json_array_size(lines), 1);
  o = json_array_get(lines, 0);
  assert_string_equal(str(o, "msg"), "POST /v1/chat");
  assert_string_equal(str(o, "request_id"), "req_f");
  assert_string_equal(str(o, "route"), "/v1/chat");
  assert_int_equal(json_integer_value(json_object_get(o, "status")), 200);
  assert_true(json_real_value(json_object_get(o, "duration_ms")) == 12.5);
  json_decref(lines);
}

static void test_invalid_utf8_and_long_messages(void **state) {
  json_t *lines;
  char *big = malloc(20000);
  (void)state;
  log_info("bad \xff\xfe bytes \xed\xa0\x80 and good 한국어");
  memset(big, 'a', 19999);
  big[19999] = '\0';
  log_info("%s", big);
  free(big);
  lines = captured_lines();
  assert_int_equal(json_array_size(lines), 2);
  assert_string_equal(str(json_array_get(lines, 0), "msg"),
                      "bad \xEF\xBF\xBD\xEF\xBF\xBD bytes \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD "
                      "and good 한국어");
  assert_true(strlen(str(json_array_get(lines, 1), "msg")) <= 8192 + 3);
  json_decref(lines);
}

/* Log lines never carry credentials or unmasked personal data. */
static void test_messages_are_redacted(void **state) {
  json_t *lines;
  const char *m;
  (void)state;
  log_warn("upstream said: Authorization: Bearer sk-proj-abcdefghijklmnopqrstuvwxyz0123");
  log_info("customer jane.doe@example.com paid with 4111 1111 1111 1111, call 010-1234-5678");
  log_debug("dropped at info");
  lines = captured_lines();
  assert_int_equal(json_array_size(lines), 2);
  m = str(json_array_get(lines, 0), "msg");
  assert_null(strstr(m, "sk-proj"));
  assert_non_null(strstr(m, "[REDACTED]"));
  m = str(json_array_get(lines, 1), "msg");
  assert_string_equal(m, "customer [EMAIL] paid with [CARD], call [PHONE]");
  json_decref(lines);
}

static void redacts(const char *in, const char *want) {
  char *out = NULL;
  size_t len = 0;
  assert_int_equal(guard_redact_log(in, strlen(in), &out, &len), RAGD_OK);
  if (strcmp(out, want) != 0) fail_msg("redact(%s) = %s, want %s", in, out, want);
  assert_int_equal(len, strlen(out));
  free(out);
}

static void test_redaction_rules(void **state) {
  (void)state;
  redacts("Authorization: Bearer abc.def-ghi", "Authorization: Bearer [REDACTED]");
  redacts("authorization=Basic dXNlcjpwYXNz rest", "authorization=Basic [REDACTED] rest");
  redacts("x-api-key: sk-ant-api03-xyz, next", "x-api-key: [REDACTED], next");
  redacts("x-goog-api-key:AIzaSyA1234567890", "x-goog-api-key:[REDACTED]");
  redacts("{\"api_key\":\"hunter2\"}", "{\"api_key\":\"[REDACTED]\"}");
  redacts("GET /v1/models?alt=sse&key=AIzaSecret123&x=1", "GET /v1/models?alt=sse&key=[REDACTED]&x=1");
  redacts("token sk-abcdefghijklmnopqrstuvwx leaked", "token [REDACTED] leaked");
  redacts("got bearer eyJhbGciOi.payload.sig", "got bearer [REDACTED]");
  /* ordinary words stay */
  redacts("token count 812, basic plan, the key to refunds", "token count 812, basic plan, the key to refunds");
  redacts("sk-short stays", "sk-short stays");
  /* ragd's own keys: the key goes, its public id (what logs name) stays */
  redacts("pasted rk_AbCdEfGh1234567890abcdefghijklmnopqrstuvwxy_- here", "pasted [REDACTED] here");
  redacts("key rk_AbCdEfGh revoked", "key rk_AbCdEfGh revoked");
  redacts("monkey=3 passwords: none", "monkey=3 passwords: none");
  redacts("", "");
  redacts("mail me at a.b@example.co.kr", "mail me at [EMAIL]");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_json_line_shape, setup, teardown),
      cmocka_unit_test_setup_teardown(test_levels, setup, teardown),
      cmocka_unit_test_setup_teardown(test_request_scope_nests, setup, teardown),
      cmocka_unit_test_setup_teardown(test_request_id_is_per_thread, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fields, setup, teardown),
      cmocka_unit_test_setup_teardown(test_invalid_utf8_and_long_messages, setup, teardown),
      cmocka_unit_test_setup_teardown(test_messages_are_redacted, setup, teardown),
      cmocka_unit_test(test_redaction_rules),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
