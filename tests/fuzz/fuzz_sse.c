/* libFuzzer driver: the upstream SSE parser (llm/sse_parser.h).
 * The first byte picks a line cap, the second how the rest is cut into feed()
 * calls, so splits inside CRLF, BOMs and UTF-8 sequences are all exercised.
 * Each dispatched event's data is parsed as JSON, as the OpenAI consumer does. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "llm/sse_parser.h"
#include "util/json.h"

static ragd_err on_event(void *ctx, const struct llm_sse_event *ev) {
  size_t *events = ctx;
  json_error_t err;
  json_t *v;
  /* The header promises NUL-terminated slices. */
  if (ev->type.ptr[ev->type.len] != '\0' || ev->data.ptr[ev->data.len] != '\0') __builtin_trap();
  if (ev->type.len == 0) __builtin_trap();
  v = json_loadb(ev->data.ptr, ev->data.len, JSON_DISABLE_EOF_CHECK, &err);
  json_decref(v);
  (*events)++;
  return RAGD_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct llm_sse_parser p;
  size_t events = 0, step, at = 2, line_max;
  if (size < 2) return 0;
  line_max = (size_t)data[0] * 16; /* 0: unlimited */
  step = (size_t)(data[1] % 17) + 1;
  llm_sse_parser_init(&p, line_max, on_event, &events);
  while (at < size) {
    size_t n = size - at < step ? size - at : step;
    if (llm_sse_parser_feed(&p, (const char *)data + at, n) != RAGD_OK) break;
    at += n;
  }
  (void)llm_sse_parser_finish(&p);
  (void)llm_sse_parser_retry_ms(&p);
  llm_sse_parser_dispose(&p);
  return 0;
}
