/* libFuzzer driver: UTF-8 validation, normalization, BM25 terms, sentences and
 * the token estimate (text/text.h), with the invariants their contracts state. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/text.h"

struct term_check {
  size_t len;
};

static int on_term(void *ctx, const char *term, size_t term_len, size_t start, size_t end) {
  const struct term_check *c = ctx;
  if (term_len == 0 || start >= end || end > c->len) __builtin_trap();
  if (text_utf8_validate(term, term_len, NULL) != RAGD_OK) __builtin_trap();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  char *norm = NULL;
  size_t norm_len = 0, count = 0, bad;
  struct text_span *spans = NULL;
  struct term_check tc = {size};
  if (text_utf8_validate(s, size, &bad) != RAGD_OK) return 0;
  for (size_t max = 0; max <= size && max < 8; max++)
    if (text_utf8_prefix(s, size, max) > max) __builtin_trap();
  if (text_normalize(s, size, &norm, &norm_len) == RAGD_OK) {
    if (strlen(norm) != norm_len) __builtin_trap();
    if (text_utf8_validate(norm, norm_len, NULL) != RAGD_OK) __builtin_trap();
  }
  free(norm);
  (void)text_tokenize(s, size, on_term, &tc);
  if (text_sentences(s, size, &spans, &count) == RAGD_OK) {
    for (size_t i = 0; i < count; i++)
      if (spans[i].start + spans[i].len > size) __builtin_trap();
  }
  free(spans);
  (void)text_estimate_tokens(s, size);
  {
    double r = text_hangul_ratio(s, size);
    if (r < 0.0 || r > 1.0) __builtin_trap();
  }
  return 0;
}
