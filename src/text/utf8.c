/* utf8.c - UTF-8 validation and decoding, and the character classes the rest of
 * text/ is built on. */
#include <utf8proc.h>

#include "text/text_int.h"

/* Length of the well-formed sequence at s[i], or 0 when it is ill-formed.
 * The ranges are those of Unicode's table of well-formed byte sequences
 * (chapter 3, "UTF-8"); they exclude overlongs, surrogates and values above
 * U+10FFFF by construction. */
static size_t seq_len(const unsigned char *s, size_t len, size_t i) {
  unsigned char b = s[i];
  unsigned char lo = 0x80, hi = 0xBF;
  size_t n, k;
  if (b < 0x80) return b == 0 ? 0 : 1;
  if (b >= 0xC2 && b <= 0xDF) {
    n = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    n = 3;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    n = 4;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (len - i < n) return 0;
  if (s[i + 1] < lo || s[i + 1] > hi) return 0;
  for (k = 2; k < n; k++) {
    if (s[i + k] < 0x80 || s[i + k] > 0xBF) return 0;
  }
  return n;
}

ragd_err text_utf8_validate(const char *s, size_t len, size_t *bad_offset) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0, n;
  while (i < len) {
    if (u[i] >= 0x01 && u[i] < 0x80) {
      i++;
      continue;
    }
    n = seq_len(u, len, i);
    if (n == 0) {
      if (bad_offset) *bad_offset = i;
      return RAGD_EUTF8;
    }
    i += n;
  }
  return RAGD_OK;
}

size_t text_utf8_prefix(const char *s, size_t len, size_t max) {
  size_t n;
  if (len <= max) return len;
  n = max;
  while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
  return n;
}

size_t text_int_decode(const char *s, size_t len, size_t i, int32_t *cp) {
  const unsigned char *u = (const unsigned char *)s;
  size_t n = seq_len(u, len, i);
  size_t k;
  int32_t v;
  if (n == 0) {
    /* NUL is well-formed as a code point; only validation rejects it. */
    *cp = u[i] == 0 ? 0 : -1;
    return 1;
  }
  if (n == 1) {
    *cp = u[i];
    return 1;
  }
  v = u[i] & (0xFF >> (n + 1));
  for (k = 1; k < n; k++) v = (v << 6) | (u[i + k] & 0x3F);
  *cp = v;
  return n;
}

size_t text_int_prev_start(const char *s, size_t i) {
  size_t j = i - 1;
  while (j > 0 && i - j < 4 && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
  return j;
}

ragd_err text_int_put_cp(struct buf *out, int32_t cp) {
  utf8proc_uint8_t tmp[4];
  utf8proc_ssize_t n;
  if (cp < 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
  n = utf8proc_encode_char(cp, tmp);
  return buf_append(out, tmp, (size_t)n);
}

int text_int_is_space(int32_t cp) {
  utf8proc_category_t cat;
  if (cp < 0) return 0;
  if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return 1;
  if (cp < 0x80) return 0;
  cat = utf8proc_category(cp);
  return cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL ||
         cat == UTF8PROC_CATEGORY_ZP || cp == 0x85;
}

int text_int_is_hangul(int32_t cp) {
  return (cp >= 0xAC00 && cp <= 0xD7A3) || /* syllables */
         (cp >= 0x1100 && cp <= 0x11FF) || /* conjoining jamo */
         (cp >= 0x3130 && cp <= 0x318F) || /* compatibility jamo */
         (cp >= 0xA960 && cp <= 0xA97F) || /* jamo extended-A */
         (cp >= 0xD7B0 && cp <= 0xD7FF) || /* jamo extended-B */
         (cp >= 0xFFA0 && cp <= 0xFFDC);   /* half-width jamo */
}

int text_int_is_cjk(int32_t cp) {
  if (text_int_is_hangul(cp)) return 1;
  return (cp >= 0x3040 && cp <= 0x30FF) ||   /* Hiragana, Katakana */
         (cp >= 0x31F0 && cp <= 0x31FF) ||   /* Katakana phonetic extensions */
         (cp >= 0xFF66 && cp <= 0xFF9F) ||   /* half-width Katakana */
         (cp >= 0x1B000 && cp <= 0x1B16F) || /* Kana supplement and extensions */
         (cp >= 0x3005 && cp <= 0x3007) ||   /* iteration mark, ideographic zero */
         (cp >= 0x3021 && cp <= 0x3029) ||   /* Hangzhou numerals */
         (cp >= 0x3038 && cp <= 0x303B) ||
         (cp >= 0x3400 && cp <= 0x4DBF) ||   /* Han extension A */
         (cp >= 0x4E00 && cp <= 0x9FFF) ||   /* Han unified ideographs */
         (cp >= 0xF900 && cp <= 0xFAFF) ||   /* Han compatibility ideographs */
         (cp >= 0x20000 && cp <= 0x3134F);   /* Han extensions B..G, compat supplement */
}

int text_int_is_alnum(int32_t cp) {
  utf8proc_category_t cat;
  if (cp < 0) return 0;
  if (cp < 0x80) {
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
  }
  cat = utf8proc_category(cp);
  return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
         (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
}
