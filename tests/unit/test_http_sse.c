/* The SSE encoder: whatever text an answer holds (leading spaces, newlines,
 * quotes, backslashes, non-BMP characters, CR) must survive encoding to JSON
 * in one data line and decoding by an event-stream parser, byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/http.h"
#include "llm/sse_parser.h"

struct decoded {
  char *type[16];
  char *data[16];
  char *id[16];
  size_t count;
};

static ragd_err collect(void *ctx, const struct llm_sse_event *ev) {
  struct decoded *d = ctx;
  assert_true(d->count < 16);
  d->type[d->count] = strndup(ev->type.ptr, ev->type.len);
  d->data[d->count] = strndup(ev->data.ptr, ev->data.len);
  d->id[d->count] = strndup(ev->id.ptr, ev->id.len);
  d->count++;
  return RAGD_OK;
}

static void decoded_free(struct decoded *d) {
  for (size_t i = 0; i < d->count; i++) {
    free(d->type[i]);
    free(d->data[i]);
    free(d->id[i]);
  }
}

static const char *const tricky[] = {
    " Hello",
    "  two leading spaces and a trailing one ",
    "line one\nline two\n\nafter a blank line",
    "carriage\rreturn and crlf\r\nend",
    "\"quoted\" and \\backslash\\ and a tab\t.",
    "emoji 😀🎉 and a non-BMP CJK 𠀀 and 한국어 [1].",
    "data: not a field\nevent: not an event\n: not a comment",
    "",
    "\n",
};

static void test_json_payloads_round_trip(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof tricky / sizeof tricky[0]; i++) {
    struct buf data, out;
    struct llm_sse_parser p;
    struct decoded d = {0};
    json_t *obj = json_object(), *back;
    buf_init(&data, 0);
    buf_init(&out, 0);
    json_object_set_new(obj, "type", json_string("text_delta"));
    json_object_set_new(obj, "content", json_string(tricky[i]));
    assert_int_equal(json_append(&data, obj), RAGD_OK);
    assert_null(memchr(data.data, '\n', data.len));
    assert_int_equal(http_sse_event(&out, "text_delta", "resp_1.7", data.data, data.len), RAGD_OK);
    /* exactly one data line */
    assert_non_null(strstr(out.data, "\ndata: "));
    assert_null(strstr(strstr(out.data, "\ndata: ") + 1, "\ndata: "));
    llm_sse_parser_init(&p, 0, collect, &d);
    /* fed one byte at a time, as a network might */
    for (size_t k = 0; k < out.len; k++) assert_int_equal(llm_sse_parser_feed(&p, out.data + k, 1), RAGD_OK);
    assert_int_equal(llm_sse_parser_finish(&p), RAGD_OK);
    assert_int_equal(d.count, 1);
    assert_string_equal(d.type[0], "text_delta");
    assert_string_equal(d.id[0], "resp_1.7");
    back = json_loads(d.data[0], 0, NULL);
    assert_non_null(back);
    assert_string_equal(json_string_value(json_object_get(back, "content")), tricky[i]);
    json_decref(back);
    json_decref(obj);
    llm_sse_parser_dispose(&p);
    decoded_free(&d);
    buf_dispose(&data);
    buf_dispose(&out);
  }
}

static void test_raw_multiline_data_is_split_into_data_lines(void **state) {
  struct buf out;
  struct llm_sse_parser p;
  struct decoded d = {0};
  const char *raw = "a\nb\r\nc\rd";
  (void)state;
  buf_init(&out, 0);
  assert_int_equal(http_sse_event(&out, "x", NULL, raw, strlen(raw)), RAGD_OK);
  assert_string_equal(out.data, "event: x\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
  llm_sse_parser_init(&p, 0, collect, &d);
  assert_int_equal(llm_sse_parser_feed(&p, out.data, out.len), RAGD_OK);
  assert_int_equal(d.count, 1);
  /* line ends are normalised to LF by the format itself */
  assert_string_equal(d.data[0], "a\nb\nc\nd");
  llm_sse_parser_dispose(&p);
  decoded_free(&d);
  buf_dispose(&out);
}

static void test_comment(void **state) {
  struct buf out;
  (void)state;
  buf_init(&out, 0);
  assert_int_equal(http_sse_comment(&out, "ping"), RAGD_OK);
  assert_string_equal(out.data, ": ping\n\n");
  buf_dispose(&out);
}

static void test_problem_table(void **state) {
  (void)state;
  assert_int_equal(http_problem_status("invalid_json"), 400);
  assert_int_equal(http_problem_status("body_too_large"), 413);
  assert_int_equal(http_problem_status("unsupported_media_type"), 415);
  assert_int_equal(http_problem_status("method_not_allowed"), 405);
  assert_int_equal(http_problem_status("no_such_code"), 500);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_payloads_round_trip),
      cmocka_unit_test(test_raw_multiline_data_is_split_into_data_lines),
      cmocka_unit_test(test_comment),
      cmocka_unit_test(test_problem_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
