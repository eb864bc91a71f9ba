/* test_llm_sse.c - the incremental event-stream parser, fed whole, byte by
 * byte and in random splits, must produce the same events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llm/sse_parser.h"
#include "util/buf.h"

/* A recorded OpenAI stream (trimmed ids), decorated with what other servers
 * send: a BOM, CRLF and bare CR line ends, comments, an event name, ids,
 * retry, a multi-line data field, and multi-byte UTF-8 everywhere. */
static const char recorded[] =
    "\xEF\xBB\xBF"
    ": OPENROUTER PROCESSING\r\n"
    "\r\n"
    "retry: 3000\r\n"
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
    "\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
    "\"finish_reason\":null}],\"usage\":null}\r\n"
    "\r\n"
    "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" "
    "Refunds \xF0\x9F\x98\x80 \xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4\"},"
    "\"finish_reason\":null}]}\n"
    "\n"
    ":keep-alive comment\r"
    "id: 42\r"
    "event: delta\r"
    "data:no-space-after-colon\r"
    "data:  two spaces keep one\r"
    "data\r"
    "ignored-field: x\r"
    "\r"
    "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{},"
    "\"finish_reason\":\"stop\"}]}\r\n"
    "\r\n"
    "id\n"
    "data: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":812,"
    "\"completion_tokens\":64,\"total_tokens\":876}}\n"
    "\n"
    "event: only-a-name\n"
    "\n"
    "data: [DONE]\n"
    "\n"
    "data: never dispatched, no blank line\n";

/* What the recorded stream must produce, one "type|id|data" string each. */
static const char *const expected[] = {
    "message||{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
    "\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
    "\"finish_reason\":null}],\"usage\":null}",
    "message||{\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" "
    "Refunds \xF0\x9F\x98\x80 \xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4\"},"
    "\"finish_reason\":null}]}",
    "delta|42|no-space-after-colon\n two spaces keep one\n",
    "message|42|{\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{},"
    "\"finish_reason\":\"stop\"}]}",
    "message||{\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":812,"
    "\"completion_tokens\":64,\"total_tokens\":876}}",
    "message||[DONE]",
};

/* Collects events as "type|id|data" records separated by 0x1E. */
struct recorder {
  struct buf out;
  size_t count;
  size_t fail_at; /* return an error on this event (1-based); 0 never */
};

static ragd_err record_event(void *ctx, const struct llm_sse_event *ev) {
  struct recorder *r = ctx;
  ragd_err rc;
  r->count++;
  if (r->fail_at && r->count == r->fail_at) return RAGD_ECANCELLED;
  rc = buf_append(&r->out, ev->type.ptr, ev->type.len);
  if (!rc) rc = buf_append_char(&r->out, '|');
  if (!rc) rc = buf_append(&r->out, ev->id.ptr, ev->id.len);
  if (!rc) rc = buf_append_char(&r->out, '|');
  if (!rc) rc = buf_append(&r->out, ev->data.ptr, ev->data.len);
  if (!rc) rc = buf_append_char(&r->out, '\x1e');
  return rc;
}

static uint32_t rng_next(uint32_t *state) {
  uint32_t x = *state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  *state = x;
  return x;
}

enum split_kind { SPLIT_WHOLE, SPLIT_BYTES, SPLIT_RANDOM };

/* Parses input split as asked; returns the records (caller frees). */
static char *parse_split(const char *input, size_t len, enum split_kind kind, uint32_t seed,
                         size_t line_max, ragd_err *rc_out, long *retry_out) {
  struct llm_sse_parser p;
  struct recorder r;
  size_t i = 0, n;
  ragd_err rc = RAGD_OK;

  memset(&r, 0, sizeof(r));
  buf_init(&r.out, 0);
  llm_sse_parser_init(&p, line_max, record_event, &r);
  while (i < len && !rc) {
    if (kind == SPLIT_WHOLE) {
      n = len;
    } else if (kind == SPLIT_BYTES) {
      n = 1;
    } else {
      n = 1 + rng_next(&seed) % 40;
      if (rng_next(&seed) % 8 == 0) n = 0; /* empty feeds are legal too */
    }
    if (n > len - i) n = len - i;
    rc = llm_sse_parser_feed(&p, input + i, n);
    i += n;
  }
  if (!rc) rc = llm_sse_parser_finish(&p);
  if (rc_out) *rc_out = rc;
  if (retry_out) *retry_out = llm_sse_parser_retry_ms(&p);
  llm_sse_parser_dispose(&p);
  return buf_take(&r.out, NULL);
}

static char *expected_records(void) {
  struct buf b;
  size_t i;
  buf_init(&b, 0);
  for (i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
    assert_int_equal(buf_append_str(&b, expected[i]), RAGD_OK);
    assert_int_equal(buf_append_char(&b, '\x1e'), RAGD_OK);
  }
  return buf_take(&b, NULL);
}

static void test_whole_stream_gives_expected_events(void **state) {
  ragd_err rc;
  long retry;
  char *want = expected_records();
  char *got = parse_split(recorded, sizeof(recorded) - 1, SPLIT_WHOLE, 0, 0, &rc, &retry);
  (void)state;
  assert_int_equal(rc, RAGD_OK);
  assert_string_equal(got, want);
  assert_int_equal(retry, 3000);
  free(got);
  free(want);
}

static void test_byte_by_byte_matches_whole(void **state) {
  ragd_err rc;
  char *want = expected_records();
  char *got = parse_split(recorded, sizeof(recorded) - 1, SPLIT_BYTES, 0, 1024, &rc, NULL);
  (void)state;
  assert_int_equal(rc, RAGD_OK);
  assert_string_equal(got, want);
  free(got);
  free(want);
}

static void test_random_splits_match_whole(void **state) {
  ragd_err rc;
  uint32_t seed;
  char *want = expected_records();
  char *got;
  (void)state;
  for (seed = 1; seed <= 2000; seed++) {
    got = parse_split(recorded, sizeof(recorded) - 1, SPLIT_RANDOM, seed, 1024, &rc, NULL);
    if (rc != RAGD_OK || strcmp(got, want) != 0) fail_msg("seed %u diverged (rc %d)", seed, rc);
    free(got);
  }
  free(want);
}

/* The same events whatever the line ends, however they are split. */
static void test_line_end_styles_are_equivalent(void **state) {
  static const char lf[] = "event: a\ndata: 1\ndata: 2\n\ndata: x\n\n";
  static const char crlf[] = "event: a\r\ndata: 1\r\ndata: 2\r\n\r\ndata: x\r\n\r\n";
  static const char cr[] = "event: a\rdata: 1\rdata: 2\r\rdata: x\r\r";
  static const char mixed[] = "event: a\rdata: 1\r\ndata: 2\n\r\ndata: x\r\r\n";
  const char *inputs[] = {crlf, cr, mixed};
  size_t lens[] = {sizeof(crlf) - 1, sizeof(cr) - 1, sizeof(mixed) - 1};
  char *want, *got;
  ragd_err rc;
  size_t i;
  uint32_t seed;
  (void)state;

  want = parse_split(lf, sizeof(lf) - 1, SPLIT_WHOLE, 0, 0, &rc, NULL);
  assert_string_equal(want, "a||1\n2\x1emessage||x\x1e");
  for (i = 0; i < 3; i++) {
    got = parse_split(inputs[i], lens[i], SPLIT_WHOLE, 0, 0, &rc, NULL);
    assert_string_equal(got, want);
    free(got);
    got = parse_split(inputs[i], lens[i], SPLIT_BYTES, 0, 0, &rc, NULL);
    assert_string_equal(got, want);
    free(got);
    for (seed = 1; seed < 200; seed++) {
      got = parse_split(inputs[i], lens[i], SPLIT_RANDOM, seed, 0, &rc, NULL);
      assert_string_equal(got, want);
      free(got);
    }
  }
  free(want);
}

/* A CR at the end of one feed and the LF at the start of the next are one
 * line end, not two (which would dispatch early). */
static void test_crlf_split_across_feeds(void **state) {
  struct llm_sse_parser p;
  struct recorder r;
  (void)state;
  memset(&r, 0, sizeof(r));
  buf_init(&r.out, 0);
  llm_sse_parser_init(&p, 0, record_event, &r);
  assert_int_equal(llm_sse_parser_feed(&p, "data: a\r", 8), RAGD_OK);
  assert_int_equal(llm_sse_parser_feed(&p, "\ndata: b\r", 9), RAGD_OK);
  assert_int_equal(r.count, 0);
  assert_int_equal(llm_sse_parser_feed(&p, "\n\r", 2), RAGD_OK);
  assert_int_equal(r.count, 1);
  assert_int_equal(llm_sse_parser_feed(&p, "\n", 1), RAGD_OK);
  assert_int_equal(r.count, 1);
  assert_string_equal(r.out.data, "message||a\nb\x1e");
  llm_sse_parser_dispose(&p);
  buf_dispose(&r.out);
}

static void test_bom_only_stripped_once_at_start(void **state) {
  static const char twice[] = "\xEF\xBB\xBF\xEF\xBB\xBF" "data: x\n\n";
  static const char partial[] = "\xEF\xBB" "data: x\n\n";
  ragd_err rc;
  char *got;
  (void)state;
  /* The second BOM is part of the field name, so the line is ignored. */
  got = parse_split(twice, sizeof(twice) - 1, SPLIT_BYTES, 0, 0, &rc, NULL);
  assert_string_equal(got, "");
  free(got);
  got = parse_split(partial, sizeof(partial) - 1, SPLIT_BYTES, 0, 0, &rc, NULL);
  assert_string_equal(got, "");
  free(got);
  got = parse_split(twice + 3, sizeof(twice) - 4, SPLIT_BYTES, 0, 0, &rc, NULL);
  assert_string_equal(got, "message||x\x1e");
  free(got);
}

static void test_line_over_cap_is_an_error(void **state) {
  struct buf big;
  size_t i;
  ragd_err rc;
  char *got;
  (void)state;
  buf_init(&big, 0);
  assert_int_equal(buf_append_str(&big, "data: ok\n\ndata: "), RAGD_OK);
  for (i = 0; i < 200; i++) assert_int_equal(buf_append_char(&big, 'x'), RAGD_OK);
  assert_int_equal(buf_append_str(&big, "\n\ndata: after\n\n"), RAGD_OK);

  got = parse_split(big.data, big.len, SPLIT_WHOLE, 0, 100, &rc, NULL);
  assert_int_equal(rc, RAGD_ETOOBIG);
  assert_string_equal(got, "message||ok\x1e");
  free(got);
  got = parse_split(big.data, big.len, SPLIT_BYTES, 0, 100, &rc, NULL);
  assert_int_equal(rc, RAGD_ETOOBIG);
  assert_string_equal(got, "message||ok\x1e");
  free(got);
  /* Exactly at the cap is fine. */
  got = parse_split(big.data, big.len, SPLIT_RANDOM, 7, 206, &rc, NULL);
  assert_int_equal(rc, RAGD_OK);
  free(got);
  buf_dispose(&big);
}

/* Many short data lines can add up past the cap too. */
static void test_event_data_over_cap_is_an_error(void **state) {
  struct buf many;
  size_t i;
  ragd_err rc;
  char *got;
  (void)state;
  buf_init(&many, 0);
  for (i = 0; i < 50; i++) assert_int_equal(buf_append_str(&many, "data: abcdefgh\n"), RAGD_OK);
  assert_int_equal(buf_append_str(&many, "\n"), RAGD_OK);
  got = parse_split(many.data, many.len, SPLIT_RANDOM, 3, 100, &rc, NULL);
  assert_int_equal(rc, RAGD_ETOOBIG);
  free(got);
  buf_dispose(&many);
}

static void test_error_is_sticky_and_callback_can_stop(void **state) {
  struct llm_sse_parser p;
  struct recorder r;
  static const char in[] = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
  (void)state;
  memset(&r, 0, sizeof(r));
  buf_init(&r.out, 0);
  r.fail_at = 2;
  llm_sse_parser_init(&p, 0, record_event, &r);
  assert_int_equal(llm_sse_parser_feed(&p, in, sizeof(in) - 1), RAGD_ECANCELLED);
  assert_int_equal(r.count, 2);
  assert_int_equal(llm_sse_parser_feed(&p, "data: 4\n\n", 9), RAGD_ECANCELLED);
  assert_int_equal(llm_sse_parser_finish(&p), RAGD_ECANCELLED);
  assert_int_equal(r.count, 2);
  assert_string_equal(r.out.data, "message||1\x1e");
  llm_sse_parser_dispose(&p);
  buf_dispose(&r.out);
}

static void test_fields_and_retry(void **state) {
  static const char in[] =
      "retry: 12x\n"  /* not all digits: ignored */
      "retry: 250\n"
      "retry:\n"      /* empty: ignored */
      "id: a\0b\n"    /* contains NUL: ignored */
      "id: 7\n"
      "data\n"        /* empty data line */
      "\n"
      "data: \n"
      "data: \n"
      "\n";
  ragd_err rc;
  long retry;
  char *got = parse_split(in, sizeof(in) - 1, SPLIT_BYTES, 0, 0, &rc, &retry);
  (void)state;
  assert_int_equal(rc, RAGD_OK);
  assert_int_equal(retry, 250);
  assert_memory_equal(got, "message|7|\x1emessage|7|\n\x1e", 23);
  free(got);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_whole_stream_gives_expected_events),
      cmocka_unit_test(test_byte_by_byte_matches_whole),
      cmocka_unit_test(test_random_splits_match_whole),
      cmocka_unit_test(test_line_end_styles_are_equivalent),
      cmocka_unit_test(test_crlf_split_across_feeds),
      cmocka_unit_test(test_bom_only_stripped_once_at_start),
      cmocka_unit_test(test_line_over_cap_is_an_error),
      cmocka_unit_test(test_event_data_over_cap_is_an_error),
      cmocka_unit_test(test_error_is_sticky_and_callback_can_stop),
      cmocka_unit_test(test_fields_and_retry),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
