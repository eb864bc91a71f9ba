/* tokenize.c - BM25 terms.
 *
 * The input is read as extended grapheme clusters (utf8proc), so a combining
 * mark stays with its letter, a decomposed Hangul syllable (L V T jamo) counts
 * as one character and an emoji ZWJ sequence is dropped as a whole. Each
 * cluster is classed by its first code point; terms are normalized from the
 * original bytes of the run they cover, so the offsets handed to the callback
 * always point into the caller's input. */
#include <utf8proc.h>

#include "text/text_int.h"

enum tok_class { TOK_SEP, TOK_WORD, TOK_CJK };

struct cluster {
  size_t start, end;
  int32_t cp; /* first code point */
  enum tok_class cls;
  int digit; /* first code point is a decimal digit */
};

struct tok_state {
  const char *s;
  text_term_cb cb;
  void *ctx;
  struct buf term;
};

static enum tok_class classify(int32_t cp) {
  if (!text_int_is_alnum(cp)) return TOK_SEP;
  return text_int_is_cjk(cp) ? TOK_CJK : TOK_WORD;
}

/* Reads the cluster starting at pos (< len). */
static ragd_err next_cluster(const char *s, size_t len, size_t pos, struct cluster *c) {
  utf8proc_int32_t cp, next;
  utf8proc_int32_t state = 0;
  utf8proc_ssize_t n;
  size_t end;
  n = utf8proc_iterate((const utf8proc_uint8_t *)s + pos, (utf8proc_ssize_t)(len - pos), &cp);
  if (n <= 0) return RAGD_EUTF8;
  c->start = pos;
  c->cp = cp;
  end = pos + (size_t)n;
  while (end < len) {
    n = utf8proc_iterate((const utf8proc_uint8_t *)s + end, (utf8proc_ssize_t)(len - end),
                         &next);
    if (n <= 0) return RAGD_EUTF8;
    if (utf8proc_grapheme_break_stateful(cp, next, &state)) break;
    cp = next;
    end += (size_t)n;
  }
  c->end = end;
  c->cls = classify(c->cp);
  c->digit = c->cp >= 0 && utf8proc_category(c->cp) == UTF8PROC_CATEGORY_ND;
  return RAGD_OK;
}

static ragd_err emit(struct tok_state *st, size_t start, size_t end) {
  ragd_err rc;
  buf_reset(&st->term);
  rc = text_int_norm_append(&st->term, st->s + start, end - start);
  if (rc) return rc;
  if (st->term.len == 0) return RAGD_OK;
  if (st->cb(st->ctx, st->term.data, st->term.len, start, end)) return RAGD_ECANCELLED;
  return RAGD_OK;
}

/* Whether joiner j between two word clusters keeps them in one term: '.' and
 * ',' need a digit on both sides (3.5, 1,000, v1.2), '-' a digit on either
 * side (HB-2024-000123, covid-19). */
static int joins(int32_t j, int left_digit, int right_digit) {
  if (j == '.' || j == ',') return left_digit && right_digit;
  if (j == '-') return left_digit || right_digit;
  return 0;
}

ragd_err text_tokenize(const char *s, size_t len, text_term_cb cb, void *ctx) {
  struct tok_state st = {.s = s, .cb = cb, .ctx = ctx};
  struct cluster c, peek, prev_cjk = {0};
  size_t pos = 0, cjk_count = 0, word_start = 0, word_end = 0;
  int in_word = 0, last_digit = 0;
  ragd_err rc = RAGD_OK;

  buf_init(&st.term, 0);
  while (pos < len) {
    rc = next_cluster(s, len, pos, &c);
    if (rc) goto out;
    if (c.cls == TOK_CJK) {
      if (in_word) {
        rc = emit(&st, word_start, word_end);
        if (rc) goto out;
        in_word = 0;
      }
      if (cjk_count > 0) {
        rc = emit(&st, prev_cjk.start, c.end);
        if (rc) goto out;
      }
      prev_cjk = c;
      cjk_count++;
      pos = c.end;
      continue;
    }
    if (cjk_count == 1) {
      rc = emit(&st, prev_cjk.start, prev_cjk.end);
      if (rc) goto out;
    }
    cjk_count = 0;
    if (c.cls == TOK_WORD) {
      if (!in_word) word_start = c.start;
      in_word = 1;
      word_end = c.end;
      last_digit = c.digit;
      pos = c.end;
      continue;
    }
    /* A separator: a single joiner may glue two parts of a word. */
    if (in_word && c.end - c.start == 1 && c.end < len) {
      rc = next_cluster(s, len, c.end, &peek);
      if (rc) goto out;
      if (peek.cls == TOK_WORD && joins(c.cp, last_digit, peek.digit)) {
        word_end = peek.end;
        last_digit = peek.digit;
        pos = peek.end;
        continue;
      }
    }
    if (in_word) {
      rc = emit(&st, word_start, word_end);
      if (rc) goto out;
      in_word = 0;
    }
    pos = c.end;
  }
  if (in_word) {
    rc = emit(&st, word_start, word_end);
    if (rc) goto out;
  }
  if (cjk_count == 1) {
    rc = emit(&st, prev_cjk.start, prev_cjk.end);
    if (rc) goto out;
  }
out:
  buf_dispose(&st.term);
  return rc;
}
