/* sentence.c - sentence boundaries for Korean and English support prose.
 *
 * A boundary follows a run of end marks (. ! ? … and the full-width 。！？)
 * plus any closing quotes or brackets, when:
 * - the marks follow a Hangul syllable (Korean endings: 다. 요. 까? 죠.), even
 *   with no space after them, unless the word is part of a URL or address or
 *   a closing quote is followed by a quotative particle ("...요."라고);
 * - otherwise whitespace or the end of the text follows, and the period is not
 *   the end of an abbreviation (Mr. e.g. etc. U.S.), an initial (J.), a list
 *   number at the start of a line (1.), nor an ellipsis followed by a
 *   lower-case word;
 * - full-width marks end a sentence wherever they are.
 * A period between digits (3.5) or inside a URL/e-mail address is never
 * followed by whitespace, so it never ends a sentence. A line break ends a
 * sentence when a blank line or a list item follows, or when the line itself
 * is a list item. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/text_int.h"

struct span_list {
  struct text_span *items;
  size_t count, cap;
};

static ragd_err push_span(struct span_list *l, const char *s, size_t start, size_t end) {
  int32_t cp;
  size_t p;
  /* trim trailing whitespace */
  while (end > start) {
    p = text_int_prev_start(s, end);
    text_int_decode(s, end, p, &cp);
    if (!text_int_is_space(cp)) break;
    end = p;
  }
  if (end <= start) return RAGD_OK;
  if (l->count == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 16;
    struct text_span *n = realloc(l->items, cap * sizeof *n);
    if (!n) return RAGD_ENOMEM;
    l->items = n;
    l->cap = cap;
  }
  l->items[l->count].start = start;
  l->items[l->count].len = end - start;
  l->count++;
  return RAGD_OK;
}

static int is_end_mark(int32_t cp) {
  return cp == '.' || cp == '!' || cp == '?' || cp == 0x2026 || cp == 0x3002 ||
         cp == 0xFF01 || cp == 0xFF1F || cp == 0x203C || cp == 0x2047 || cp == 0x2048 ||
         cp == 0x2049;
}

static int is_fullwidth_end(int32_t cp) { return cp == 0x3002 || cp == 0xFF01 || cp == 0xFF1F; }

static int is_closer(int32_t cp) {
  utf8proc_category_t cat;
  if (cp == '"' || cp == '\'' || cp == ')' || cp == ']' || cp == '}') return 1;
  if (cp < 0x80) return 0;
  cat = utf8proc_category(cp);
  return cat == UTF8PROC_CATEGORY_PE || cat == UTF8PROC_CATEGORY_PF;
}

static int is_ascii_upper(int32_t cp) { return cp >= 'A' && cp <= 'Z'; }

/* Length of a list marker ("- ", "* ", "+ ", "• ", "12. ", "3) ") at s[i],
 * including the space after it; 0 when there is none. */
static size_t list_marker_len(const char *s, size_t len, size_t i) {
  size_t j = i;
  if (i < len && (s[i] == '-' || s[i] == '*' || s[i] == '+')) {
    j = i + 1;
  } else if (len - i >= 3 && memcmp(s + i, "\xE2\x80\xA2", 3) == 0) {
    j = i + 3;
  } else {
    while (j < len && j - i < 3 && s[j] >= '0' && s[j] <= '9') j++;
    if (j == i || j >= len || (s[j] != '.' && s[j] != ')')) return 0;
    j++;
  }
  if (j >= len || (s[j] != ' ' && s[j] != '\t')) return 0;
  return j + 1 - i;
}

/* Skips spaces and tabs (not line breaks) from i. */
static size_t skip_blanks(const char *s, size_t len, size_t i) {
  while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r')) i++;
  return i;
}

/* Abbreviations that are never the end of a sentence, and those that are
 * only when a capitalized word follows. Compared case-insensitively, without
 * the final period. */
static const char *const abbrev_never[] = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "v", "e.g", "i.e", "cf",
    "approx", "dept", "mt", "rev", "gen", "col", "capt", "lt", "sgt", "ave", "blvd",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"};
static const char *const abbrev_maybe[] = {"etc", "inc", "ltd", "co", "corp", "u.s",
                                           "u.k", "a.m", "p.m", "llc", "est"};
static const char *const abbrev_number[] = {"no", "nos", "fig", "vol", "p", "pp", "art", "sec"};

static int word_in(const char *w, size_t n, const char *const *list, size_t count) {
  size_t k, j;
  for (k = 0; k < count; k++) {
    if (strlen(list[k]) != n) continue;
    for (j = 0; j < n; j++) {
      char c = w[j];
      if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
      if (c != list[k][j]) break;
    }
    if (j == n) return 1;
  }
  return 0;
}

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Start of the whitespace-delimited word that ends at byte i, looking back
 * at most WORD_LOOKBACK bytes (enough for any abbreviation or URL scheme,
 * and it keeps "a.a.a.a..." linear). */
#define WORD_LOOKBACK 256
static size_t word_start(const char *s, size_t floor, size_t i) {
  int32_t cp;
  size_t p;
  if (i - floor > WORD_LOOKBACK) floor = i - WORD_LOOKBACK;
  while (i > floor) {
    p = text_int_prev_start(s, i);
    text_int_decode(s, i, p, &cp);
    if (text_int_is_space(cp)) break;
    i = p;
  }
  return i;
}

static int looks_like_address(const char *w, size_t n) {
  size_t k;
  if (n >= 4 && (memcmp(w, "www.", 4) == 0 || memcmp(w, "WWW.", 4) == 0)) return 1;
  for (k = 0; k < n; k++) {
    if (w[k] == '@') return 1;
    if (k + 3 <= n && memcmp(w + k, "://", 3) == 0) return 1;
  }
  return 0;
}

/* Quotative particles that join a closing quote to the sentence around it. */
static const char *const quotative_particles[] = {
    "\xEB\x9D\xBC\xEA\xB3\xA0",             /* 라고 */
    "\xEC\x9D\xB4\xEB\x9D\xBC\xEA\xB3\xA0", /* 이라고 */
    "\xEB\x9D\xBC\xEB\xA9\xB0",             /* 라며 */
    "\xEB\x9D\xBC\xEB\x8A\x94",             /* 라는 */
    "\xED\x95\x98\xEA\xB3\xA0",             /* 하고 */
    "\xEA\xB3\xA0 ",                         /* 고, then a space */
};

static int quotative_follows(const char *s, size_t len, size_t i) {
  size_t k, n;
  for (k = 0; k < sizeof quotative_particles / sizeof quotative_particles[0]; k++) {
    n = strlen(quotative_particles[k]);
    if (len - i >= n && memcmp(s + i, quotative_particles[k], n) == 0) return 1;
  }
  return 0;
}

/* Decides whether the end marks s[mark_start..mark_end) (closers already
 * skipped up to after) end a sentence that began at sent_start. */
static int is_boundary(const char *s, size_t len, size_t sent_start, size_t line_start,
                       size_t mark_start, size_t mark_end, size_t after) {
  int32_t prev = -1, next = -1, first_mark, cp;
  size_t w0, wn, dots = 0, k, j;
  int ellipsis = 0, only_periods = 1;
  const char *w;

  for (k = mark_start; k < mark_end;) {
    k += text_int_decode(s, len, k, &cp);
    if (is_fullwidth_end(cp)) return 1;
    if (cp == '.') dots++;
    if (cp == 0x2026) ellipsis = 1;
    if (cp != '.') only_periods = 0;
  }
  if (dots >= 2) ellipsis = 1;
  text_int_decode(s, len, mark_start, &first_mark);
  if (mark_start > sent_start) text_int_decode(s, len, text_int_prev_start(s, mark_start), &prev);
  if (after < len) text_int_decode(s, len, after, &next);

  if (after >= len) return 1;
  if (!text_int_is_space(next)) {
    /* Only Korean endings end a sentence without a following space. */
    if (prev < 0xAC00 || prev > 0xD7A3) return 0;
    /* A quoted sentence followed by a quotative particle ("..."라고 했다)
     * is part of the sentence that quotes it. */
    if (after > mark_end && quotative_follows(s, len, after)) return 0;
    w0 = word_start(s, sent_start, mark_start);
    return !looks_like_address(s + w0, mark_start - w0);
  }
  if (prev >= 0xAC00 && prev <= 0xD7A3) return 1;
  if (!only_periods && !ellipsis) return 1; /* ! ? and mixes */

  /* the first character of the next word */
  j = after;
  while (j < len) {
    j += text_int_decode(s, len, j, &cp);
    if (!text_int_is_space(cp)) break;
  }
  if (j >= len && text_int_is_space(cp)) return 1;
  next = cp;

  if (ellipsis) return is_ascii_upper(next) || (next >= 0x80 && !is_closer(next));
  if (first_mark != '.' || dots != 1) return 1;

  w0 = word_start(s, sent_start, mark_start);
  w = s + w0;
  wn = mark_start - w0;
  /* strip opening punctuation from the word */
  while (wn > 0 && (*w == '(' || *w == '"' || *w == '\'' || *w == '[')) {
    w++;
    wn--;
  }

  if (wn == 1 && is_ascii_upper((unsigned char)w[0])) return 0; /* an initial: J. */
  if (word_in(w, wn, abbrev_never, COUNT_OF(abbrev_never))) return 0;
  if (word_in(w, wn, abbrev_number, COUNT_OF(abbrev_number)))
    return !(next >= '0' && next <= '9');
  if (word_in(w, wn, abbrev_maybe, COUNT_OF(abbrev_maybe)))
    return is_ascii_upper(next) || next >= 0x80;
  /* "1." opening a list line */
  if (w0 == skip_blanks(s, len, line_start) && wn > 0 && wn <= 3) {
    for (k = 0; k < wn && w[k] >= '0' && w[k] <= '9'; k++) {
    }
    if (k == wn) return 0;
  }
  return 1;
}

/* Whether the line break at s[i] ends the sentence. */
static int newline_breaks(const char *s, size_t len, size_t line_start, size_t i) {
  size_t j = skip_blanks(s, len, i + 1);
  if (j >= len || s[j] == '\n') return 1;
  if (list_marker_len(s, len, j)) return 1;
  return list_marker_len(s, len, skip_blanks(s, len, line_start)) != 0;
}

ragd_err text_sentences(const char *s, size_t len, struct text_span **out, size_t *count) {
  struct span_list l = {0};
  size_t i = 0, start = 0, line_start = 0, n, k, marker;
  int open = 0;
  int32_t cp;
  ragd_err rc = RAGD_OK;

  *out = NULL;
  *count = 0;
  while (i < len) {
    n = text_int_decode(s, len, i, &cp);
    if (!open) {
      if (text_int_is_space(cp)) {
        if (cp == '\n') line_start = i + 1;
        i += n;
        continue;
      }
      open = 1;
      start = i;
      /* A bullet is layout, not part of the sentence; list numbers stay. */
      marker = list_marker_len(s, len, i);
      if (marker && (s[i] < '0' || s[i] > '9') && i == skip_blanks(s, len, line_start)) {
        start = skip_blanks(s, len, i + marker);
        i = start;
        if (i >= len) break;
        continue;
      }
    }
    if (cp == '\n') {
      if (newline_breaks(s, len, line_start, i)) {
        rc = push_span(&l, s, start, i);
        if (rc) goto out;
        open = 0;
      }
      line_start = i + 1;
      i += n;
      continue;
    }
    if (is_end_mark(cp)) {
      size_t mark_end = i, after;
      int32_t c2;
      while (mark_end < len) {
        k = text_int_decode(s, len, mark_end, &c2);
        if (!is_end_mark(c2)) break;
        mark_end += k;
      }
      after = mark_end;
      while (after < len) {
        k = text_int_decode(s, len, after, &c2);
        if (!is_closer(c2)) break;
        after += k;
      }
      if (is_boundary(s, len, start, line_start, i, mark_end, after)) {
        rc = push_span(&l, s, start, after);
        if (rc) goto out;
        open = 0;
      }
      i = after;
      continue;
    }
    i += n;
  }
  if (open) {
    rc = push_span(&l, s, start, len);
    if (rc) goto out;
  }
  *out = l.items;
  *count = l.count;
  l.items = NULL;
out:
  free(l.items);
  return rc;
}
