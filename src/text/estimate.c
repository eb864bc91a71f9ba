/* estimate.c - a cheap LLM token estimate and the Hangul share of a text.
 *
 * The estimate is meant as an upper-leaning guess that adds up: the estimate
 * of a text is never more than the sum of the estimates of pieces it is cut
 * into, which is what lets the chunker pack pieces by summing. BPE
 * vocabularies hold most short English words whole and split numbers into
 * groups of about three digits; other alphabets cost more per letter; CJK
 * characters cost about one token each. */
#include <utf8proc.h>

#include "text/text_int.h"

enum run_kind { RUN_NONE, RUN_LATIN, RUN_DIGIT, RUN_OTHER_ALPHA };

static size_t run_cost(enum run_kind kind, size_t n) {
  switch (kind) {
  case RUN_LATIN:
    return (n + 3) / 4;
  case RUN_DIGIT:
    return (n + 2) / 3;
  case RUN_OTHER_ALPHA:
    return (n + 1) / 2;
  default:
    return 0;
  }
}

size_t text_estimate_tokens(const char *s, size_t len) {
  size_t i = 0, total = 0, run_len = 0;
  enum run_kind run = RUN_NONE, kind;
  int32_t cp;
  utf8proc_category_t cat;

  while (i < len) {
    i += text_int_decode(s, len, i, &cp);
    cat = cp >= 0 ? utf8proc_category(cp) : UTF8PROC_CATEGORY_SO;
    if (cat >= UTF8PROC_CATEGORY_MN && cat <= UTF8PROC_CATEGORY_ME) continue; /* marks ride along */
    if (cat == UTF8PROC_CATEGORY_CF) continue;                                /* ZWJ, VS, ... */
    if (text_int_is_alnum(cp) && !text_int_is_cjk(cp)) {
      if (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO) {
        kind = RUN_DIGIT;
      } else {
        kind = cp < 0x0250 ? RUN_LATIN : RUN_OTHER_ALPHA;
      }
      if (kind != run) {
        total += run_cost(run, run_len);
        run = kind;
        run_len = 0;
      }
      run_len++;
      continue;
    }
    total += run_cost(run, run_len);
    run = RUN_NONE;
    run_len = 0;
    if (text_int_is_space(cp) || cat == UTF8PROC_CATEGORY_CC) continue;
    total++; /* a CJK character, punctuation, symbol or emoji */
  }
  total += run_cost(run, run_len);
  return total;
}

double text_hangul_ratio(const char *s, size_t len) {
  size_t i = 0, letters = 0, hangul = 0;
  int32_t cp;
  utf8proc_category_t cat;
  while (i < len) {
    i += text_int_decode(s, len, i, &cp);
    if (cp < 0) continue;
    cat = utf8proc_category(cp);
    if (cat < UTF8PROC_CATEGORY_LU || cat > UTF8PROC_CATEGORY_LO) continue;
    letters++;
    if (text_int_is_hangul(cp)) hangul++;
  }
  return letters ? (double)hangul / (double)letters : 0.0;
}
