/* normalize.c - NFKC + case folding (utf8proc) and HTML character references. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <utf8proc.h>

#include "text/text_int.h"

#define NORM_OPTIONS \
  (UTF8PROC_COMPOSE | UTF8PROC_COMPAT | UTF8PROC_CASEFOLD | UTF8PROC_STABLE)

static ragd_err map_utf8proc_error(utf8proc_ssize_t rc) {
  if (rc == UTF8PROC_ERROR_NOMEM) return RAGD_ENOMEM;
  if (rc == UTF8PROC_ERROR_OVERFLOW) return RAGD_ETOOBIG;
  if (rc == UTF8PROC_ERROR_INVALIDUTF8 || rc == UTF8PROC_ERROR_NOTASSIGNED) return RAGD_EUTF8;
  return RAGD_EINVAL;
}

/* 1 when s[0..len) is ASCII only: folding is then a lower-casing. */
static int all_ascii(const char *s, size_t len) {
  size_t i;
  for (i = 0; i < len; i++) {
    if ((unsigned char)s[i] >= 0x80) return 0;
  }
  return 1;
}

/* 1 when s[0..len) is precomposed Hangul syllables only (U+AC00..U+D7A3),
 * which NFKC and case folding leave unchanged. */
static int all_hangul_syllables(const char *s, size_t len) {
  size_t i = 0;
  int32_t cp;
  while (i < len) {
    i += text_int_decode(s, len, i, &cp);
    if (cp < 0xAC00 || cp > 0xD7A3) return 0;
  }
  return 1;
}

ragd_err text_int_norm_append(struct buf *out, const char *s, size_t len) {
  utf8proc_uint8_t *mapped = NULL;
  utf8proc_ssize_t n;
  ragd_err rc;
  size_t i;
  if (len == 0) return RAGD_OK;
  if (all_ascii(s, len)) {
    size_t base = out->len;
    rc = buf_append(out, s, len);
    if (rc) return rc;
    for (i = base; i < out->len; i++) {
      if (out->data[i] >= 'A' && out->data[i] <= 'Z') out->data[i] = (char)(out->data[i] + 32);
    }
    return RAGD_OK;
  }
  if (all_hangul_syllables(s, len)) return buf_append(out, s, len);
  if (len > (size_t)SSIZE_MAX) return RAGD_ETOOBIG;
  n = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &mapped, NORM_OPTIONS);
  if (n < 0) return map_utf8proc_error(n);
  rc = buf_append(out, mapped, (size_t)n);
  free(mapped);
  return rc;
}

ragd_err text_normalize(const char *s, size_t len, char **out, size_t *out_len) {
  struct buf b;
  ragd_err rc;
  char *p;
  size_t n = 0;
  *out = NULL;
  if (out_len) *out_len = 0;
  buf_init(&b, 0);
  rc = text_int_norm_append(&b, s, len);
  if (rc) goto out;
  p = buf_take(&b, &n);
  if (!p) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  *out = p;
  if (out_len) *out_len = n;
out:
  buf_dispose(&b);
  return rc;
}

/* ---- HTML character references --------------------------------------------- */

struct named_entity {
  const char *name;
  int32_t cp;
};

/* The references support documents actually use; the full HTML list has
 * more than two thousand, most of them mathematical symbols. */
static const struct named_entity named_entities[] = {
    {"amp", '&'},       {"lt", '<'},         {"gt", '>'},         {"quot", '"'},
    {"apos", '\''},     {"nbsp", ' '},       {"ensp", ' '},       {"emsp", ' '},
    {"thinsp", ' '},    {"copy", 0xA9},      {"reg", 0xAE},       {"trade", 0x2122},
    {"hellip", 0x2026}, {"mdash", 0x2014},   {"ndash", 0x2013},   {"lsquo", 0x2018},
    {"rsquo", 0x2019},  {"sbquo", 0x201A},   {"ldquo", 0x201C},   {"rdquo", 0x201D},
    {"bdquo", 0x201E},  {"laquo", 0xAB},     {"raquo", 0xBB},     {"middot", 0xB7},
    {"bull", 0x2022},   {"times", 0xD7},     {"divide", 0xF7},    {"plusmn", 0xB1},
    {"deg", 0xB0},      {"micro", 0xB5},     {"para", 0xB6},      {"sect", 0xA7},
    {"cent", 0xA2},     {"pound", 0xA3},     {"yen", 0xA5},       {"euro", 0x20AC},
    {"won", 0x20A9},    {"curren", 0xA4},    {"shy", 0xAD},       {"iexcl", 0xA1},
    {"iquest", 0xBF},   {"frac12", 0xBD},    {"frac14", 0xBC},    {"frac34", 0xBE},
    {"sup2", 0xB2},     {"sup3", 0xB3},      {"larr", 0x2190},    {"rarr", 0x2192},
    {"uarr", 0x2191},   {"darr", 0x2193},    {"harr", 0x2194},    {"check", 0x2713},
    {"eacute", 0xE9},   {"egrave", 0xE8},    {"ecirc", 0xEA},     {"euml", 0xEB},
    {"aacute", 0xE1},   {"agrave", 0xE0},    {"acirc", 0xE2},     {"auml", 0xE4},
    {"aring", 0xE5},    {"atilde", 0xE3},    {"ccedil", 0xE7},    {"iacute", 0xED},
    {"iuml", 0xEF},     {"ntilde", 0xF1},    {"oacute", 0xF3},    {"ouml", 0xF6},
    {"oslash", 0xF8},   {"uacute", 0xFA},    {"uuml", 0xFC},      {"szlig", 0xDF},
    {"Auml", 0xC4},     {"Ouml", 0xD6},      {"Uuml", 0xDC},      {"Eacute", 0xC9},
    {"zwj", 0x200D},    {"zwnj", 0x200C},    {"lrm", 0x200E},     {"rlm", 0x200F},
};

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

ragd_err text_int_entity(const char *s, size_t n, struct buf *out, size_t *consumed) {
  size_t i, k;
  uint32_t cp = 0; /* unsigned: 8 hex digits (&#xFFFFFFFF;) overflow int32_t */
  *consumed = 0;
  if (n < 3 || s[0] != '&') return RAGD_OK;
  if (s[1] == '#') {
    int hex = (s[2] == 'x' || s[2] == 'X');
    int digits = 0;
    i = hex ? 3 : 2;
    for (; i < n && digits < 8; i++, digits++) {
      int d = hex ? hex_value(s[i]) : (s[i] >= '0' && s[i] <= '9' ? s[i] - '0' : -1);
      if (d < 0) break;
      cp = cp * (hex ? 16u : 10u) + (uint32_t)d;
    }
    if (digits == 0 || i >= n || s[i] != ';') return RAGD_OK;
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
    *consumed = i + 1;
    return text_int_put_cp(out, (int32_t)cp);
  }
  for (i = 1; i < n && i < 12; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) break;
  }
  if (i >= n || s[i] != ';' || i == 1) return RAGD_OK;
  for (k = 0; k < sizeof named_entities / sizeof named_entities[0]; k++) {
    const char *name = named_entities[k].name;
    if (strlen(name) == i - 1 && memcmp(name, s + 1, i - 1) == 0) {
      *consumed = i + 1;
      return text_int_put_cp(out, named_entities[k].cp);
    }
  }
  return RAGD_OK;
}
