/* bpe_split.c - the pre-tokenization rules of cl100k_base and o200k_base,
 * written out by hand from their regular expressions.
 *
 * OpenAI cuts text into pieces with one regular expression per encoding before
 * any byte-pair merging, and a token never crosses a piece boundary, so the
 * pieces must be reproduced exactly. The patterns (as tiktoken publishes them):
 *
 * cl100k_base
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}{1,3}
 *   | ' '?[^\s\p{L}\p{N}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
 *
 * o200k_base
 *   [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|...|'d)?
 *   | [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|...|'d)?
 *   | \p{N}{1,3} | ' '?[^\s\p{L}\p{N}]+[\r\n/]* | \s*[\r\n]+ | \s+(?!\S) | \s+
 *
 * The engine behind them (Rust's regex/fancy-regex) takes the first
 * alternative that matches at the current position, each quantifier greedy,
 * backtracking inside an alternative before giving up on it. Every character
 * starts some alternative, so the pieces tile the text. The functions below
 * follow that order branch by branch; the comments name the alternative. A
 * regex library would do the same, but these patterns only ever look one code
 * point back or ahead, and a hand-written scanner over a class table is both
 * dependency-free and several times faster.
 *
 * Classes: \s is Unicode White_Space; \p{L}, \p{N}, \p{M} and the letter
 * subcategories come from utf8proc. (?i:'s) also matches "'S" and the long s
 * "'ſ" (U+017F), which case-folds to s; no other letter of the contractions
 * has a non-ASCII case variant. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <utf8proc.h>

#include "text/bpe_int.h"

/* Class bits: one code point may be in several sets. */
enum {
  F_LETTER = 1u << 0,  /* \p{L} */
  F_NUMBER = 1u << 1,  /* \p{N} */
  F_SPACE = 1u << 2,   /* \s */
  F_NEWLINE = 1u << 3, /* [\r\n] */
  F_UPPERISH = 1u << 4, /* [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] (o200k) */
  F_LOWERISH = 1u << 5, /* [\p{Ll}\p{Lm}\p{Lo}\p{M}] (o200k) */
  F_PUNCT = 1u << 6,    /* [^\s\p{L}\p{N}] */
  F_PREFIX = 1u << 7,   /* [^\r\n\p{L}\p{N}] */
  F_VALID = 1u << 8     /* set for every well-formed code point */
};

#define CLS_UPPER (F_VALID | F_LETTER | F_UPPERISH)                /* Lu Lt */
#define CLS_LOWER (F_VALID | F_LETTER | F_LOWERISH)                /* Ll */
#define CLS_LETTER (F_VALID | F_LETTER | F_UPPERISH | F_LOWERISH)  /* Lm Lo */
#define CLS_MARK (F_VALID | F_UPPERISH | F_LOWERISH | F_PUNCT | F_PREFIX)
#define CLS_NUMBER (F_VALID | F_NUMBER)
#define CLS_SPACE (F_VALID | F_SPACE | F_PREFIX)
#define CLS_NEWLINE (F_VALID | F_SPACE | F_NEWLINE)
#define CLS_OTHER (F_VALID | F_PUNCT | F_PREFIX)

static unsigned classify_ascii(unsigned c) {
  if (c == '\r' || c == '\n') return CLS_NEWLINE;
  if (c == ' ' || (c >= 0x09 && c <= 0x0d)) return CLS_SPACE;
  if (c >= 'A' && c <= 'Z') return CLS_UPPER;
  if (c >= 'a' && c <= 'z') return CLS_LOWER;
  if (c >= '0' && c <= '9') return CLS_NUMBER;
  return CLS_OTHER;
}

static bool is_white_space(int32_t cp) {
  return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

static unsigned classify(int32_t cp) {
  if (cp < 0x80) return classify_ascii((unsigned)cp);
  if (cp >= 0xac00 && cp <= 0xd7a3) return CLS_LETTER; /* Hangul syllables: Lo */
  if (is_white_space(cp)) return CLS_SPACE;
  switch (utf8proc_category(cp)) {
  case UTF8PROC_CATEGORY_LU:
  case UTF8PROC_CATEGORY_LT:
    return CLS_UPPER;
  case UTF8PROC_CATEGORY_LL:
    return CLS_LOWER;
  case UTF8PROC_CATEGORY_LM:
  case UTF8PROC_CATEGORY_LO:
    return CLS_LETTER;
  case UTF8PROC_CATEGORY_MN:
  case UTF8PROC_CATEGORY_MC:
  case UTF8PROC_CATEGORY_ME:
    return CLS_MARK;
  case UTF8PROC_CATEGORY_ND:
  case UTF8PROC_CATEGORY_NL:
  case UTF8PROC_CATEGORY_NO:
    return CLS_NUMBER;
  default:
    return CLS_OTHER;
  }
}

static inline bool is_cont(unsigned char b) { return (b & 0xc0) == 0x80; }

/* The class bits of the code point at s[i] (i < len) and its length in *n;
 * 0 when the bytes there are not well-formed UTF-8. */
static inline unsigned cp_class(const unsigned char *s, size_t len, size_t i, size_t *n) {
  unsigned char b0 = s[i];
  int32_t cp;
  if (b0 < 0x80) {
    *n = 1;
    return classify_ascii(b0);
  }
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    if (i + 1 >= len || !is_cont(s[i + 1])) return 0;
    cp = ((int32_t)(b0 & 0x1f) << 6) | (s[i + 1] & 0x3f);
    *n = 2;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    unsigned char lo = b0 == 0xe0 ? 0xa0 : 0x80, hi = b0 == 0xed ? 0x9f : 0xbf;
    if (i + 2 >= len || s[i + 1] < lo || s[i + 1] > hi || !is_cont(s[i + 2])) return 0;
    cp = ((int32_t)(b0 & 0x0f) << 12) | ((int32_t)(s[i + 1] & 0x3f) << 6) | (s[i + 2] & 0x3f);
    *n = 3;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    unsigned char lo = b0 == 0xf0 ? 0x90 : 0x80, hi = b0 == 0xf4 ? 0x8f : 0xbf;
    if (i + 3 >= len || s[i + 1] < lo || s[i + 1] > hi || !is_cont(s[i + 2]) ||
        !is_cont(s[i + 3]))
      return 0;
    cp = ((int32_t)(b0 & 0x07) << 18) | ((int32_t)(s[i + 1] & 0x3f) << 12) |
         ((int32_t)(s[i + 2] & 0x3f) << 6) | (s[i + 3] & 0x3f);
    *n = 4;
  } else {
    return 0;
  }
  return classify(cp);
}

/* Sentinel for "ill-formed UTF-8 seen": no piece can end at SIZE_MAX. */
#define BAD SIZE_MAX

/* End of the longest run from i of code points having any bit of mask. */
static size_t scan_while(const unsigned char *s, size_t len, size_t i, unsigned mask) {
  while (i < len) {
    size_t n;
    unsigned c = cp_class(s, len, i, &n);
    if (!c) return BAD;
    if (!(c & mask)) break;
    i += n;
  }
  return i;
}

/* Length of (?i:'s|'t|'re|'ve|'m|'ll|'d) at s[i], or 0. */
static size_t contraction(const unsigned char *s, size_t len, size_t i) {
  unsigned char a, b;
  if (i + 1 >= len || s[i] != '\'') return 0;
  a = (unsigned char)(s[i + 1] | 0x20); /* ASCII lower case for letters */
  if (s[i + 1] == 0xc5 && i + 2 < len && s[i + 2] == 0xbf) return 3; /* 'ſ */
  if (!((s[i + 1] >= 'A' && s[i + 1] <= 'Z') || (s[i + 1] >= 'a' && s[i + 1] <= 'z'))) return 0;
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (i + 2 >= len) return 0;
  b = (unsigned char)(s[i + 2] | 0x20);
  if (!((s[i + 2] >= 'A' && s[i + 2] <= 'Z') || (s[i + 2] >= 'a' && s[i + 2] <= 'z'))) return 0;
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

/* The three whitespace alternatives shared by both encodings, at a
 * whitespace code point i:  \s*[\r\n]+  |  \s+(?!\S)  |  \s+  */
static size_t split_space(const unsigned char *s, size_t len, size_t i) {
  size_t j = i, last_start = i, newline_end = 0;
  while (j < len) {
    size_t n;
    unsigned c = cp_class(s, len, j, &n);
    if (!c) return BAD;
    if (!(c & F_SPACE)) break;
    last_start = j;
    j += n;
    if (c & F_NEWLINE) newline_end = j;
  }
  /* \s*[\r\n]+: greedy \s* backs off to the last line break of the run. */
  if (newline_end) return newline_end;
  /* \s+(?!\S): the whole run at the end of the text, else all but its last
   * code point, which the next piece takes as its prefix. */
  if (j == len || last_start > i) return j == len ? j : last_start;
  /* \s+ */
  return j;
}

/* ' '?[^\s\p{L}\p{N}]+ then any line breaks (and slashes when slash). */
static size_t split_punct(const unsigned char *s, size_t len, size_t i, unsigned c0, bool slash) {
  size_t j = i, n1;
  if (s[i] == ' ' && i + 1 < len) {
    unsigned c1 = cp_class(s, len, i + 1, &n1);
    if (!c1) return BAD;
    if (c1 & F_PUNCT) {
      c0 = c1;
      j = i + 1;
    }
  }
  if (!(c0 & F_PUNCT)) return 0;
  j = scan_while(s, len, j, F_PUNCT);
  if (j == BAD) return BAD;
  while (j < len && (s[j] == '\r' || s[j] == '\n' || (slash && s[j] == '/'))) j++;
  return j;
}

size_t bpe_split_cl100k(const unsigned char *s, size_t len, size_t i) {
  size_t n0, n1, j;
  unsigned c0 = cp_class(s, len, i, &n0);
  if (!c0) return 0;
  /* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
  j = contraction(s, len, i);
  if (j) return i + j;
  /* [^\r\n\p{L}\p{N}]?\p{L}+ */
  if (c0 & F_LETTER) {
    j = scan_while(s, len, i, F_LETTER);
    return j == BAD ? 0 : j;
  }
  if ((c0 & F_PREFIX) && i + n0 < len) {
    unsigned c1 = cp_class(s, len, i + n0, &n1);
    if (!c1) return 0;
    if (c1 & F_LETTER) {
      j = scan_while(s, len, i + n0, F_LETTER);
      return j == BAD ? 0 : j;
    }
  }
  /* \p{N}{1,3} */
  if (c0 & F_NUMBER) {
    j = i + n0;
    for (int k = 1; k < 3 && j < len; k++) {
      unsigned c = cp_class(s, len, j, &n1);
      if (!c) return 0;
      if (!(c & F_NUMBER)) break;
      j += n1;
    }
    return j;
  }
  /* ' '?[^\s\p{L}\p{N}]+[\r\n]* */
  j = split_punct(s, len, i, c0, false);
  if (j) return j == BAD ? 0 : j;
  /* \s*[\r\n]+ | \s+(?!\S) | \s+ */
  j = split_space(s, len, i);
  return j == BAD ? 0 : j;
}

/* [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+ from i, without
 * the optional contraction. The greedy star first takes the whole run of
 * "upper-ish" code points; if a "lower-ish" one follows, the plus takes the
 * run from there. Otherwise the star backs off until the plus can match: at
 * the last code point of the run that is lower-ish too (Lm, Lo, M), and the
 * plus then takes just that one. 0 when nothing matches. */
static size_t word_lower(const unsigned char *s, size_t len, size_t i) {
  size_t j = i, last_lowerish_end = 0, n;
  while (j < len) {
    unsigned c = cp_class(s, len, j, &n);
    if (!c) return BAD;
    if (!(c & F_UPPERISH)) {
      if (c & F_LOWERISH) return scan_while(s, len, j, F_LOWERISH);
      break;
    }
    j += n;
    if (c & F_LOWERISH) last_lowerish_end = j;
  }
  return last_lowerish_end;
}

/* [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]* from i. */
static size_t word_upper(const unsigned char *s, size_t len, size_t i) {
  size_t j = scan_while(s, len, i, F_UPPERISH);
  if (j == BAD) return BAD;
  if (j == i) return 0;
  return scan_while(s, len, j, F_LOWERISH);
}

size_t bpe_split_o200k(const unsigned char *s, size_t len, size_t i) {
  size_t n0, n1, j = 0;
  unsigned c0 = cp_class(s, len, i, &n0);
  /* Where the word may start: after an optional prefix code point (tried
   * first, the ? being greedy), then at i itself. */
  size_t starts[2];
  int nstarts = 0;
  if (!c0) return 0;
  if ((c0 & F_PREFIX) && i + n0 < len) starts[nstarts++] = i + n0;
  if (c0 & (F_UPPERISH | F_LOWERISH)) starts[nstarts++] = i;
  /* The first alternative with every choice of prefix, then the second. */
  for (int alt = 0; alt < 2 && !j; alt++) {
    for (int k = 0; k < nstarts && !j; k++) {
      j = alt == 0 ? word_lower(s, len, starts[k]) : word_upper(s, len, starts[k]);
      if (j == BAD) return 0;
    }
  }
  if (j) return j + contraction(s, len, j);
  /* \p{N}{1,3} */
  if (c0 & F_NUMBER) {
    j = i + n0;
    for (int k = 1; k < 3 && j < len; k++) {
      unsigned c = cp_class(s, len, j, &n1);
      if (!c) return 0;
      if (!(c & F_NUMBER)) break;
      j += n1;
    }
    return j;
  }
  /* ' '?[^\s\p{L}\p{N}]+[\r\n/]* */
  j = split_punct(s, len, i, c0, true);
  if (j) return j == BAD ? 0 : j;
  /* \s*[\r\n]+ | \s+(?!\S) | \s+ */
  j = split_space(s, len, i);
  return j == BAD ? 0 : j;
}
