/* stem.c - a light English stemmer for BM25 terms.
 *
 * Deliberately smaller than Porter's: it folds the inflections a customer's
 * question and a help article disagree on most ("refunds"/"refund",
 * "tracking"/"tracked"/"track", "charges"/"charged"/"charge", "policies"/
 * "policy") and leaves everything else alone. Words shorter than four
 * letters, words with anything but ASCII letters, and stems that would lose
 * their last vowel are not touched, so codes, names and non-English words
 * pass through unchanged. */
#include <string.h>

#include "text/text.h"

static int is_vowel(char c) { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u' || c == 'y'; }

static int has_vowel(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (is_vowel(s[i])) return 1;
  return 0;
}

static int ends(const char *s, size_t n, const char *suffix) {
  size_t k = strlen(suffix);
  return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* After "-ing"/"-ed" came off: "stopp" -> "stop" (not ll, ss, zz). */
static size_t undouble(const char *s, size_t n) {
  if (n >= 2 && s[n - 1] == s[n - 2] && !is_vowel(s[n - 1]) && s[n - 1] != 'l' &&
      s[n - 1] != 's' && s[n - 1] != 'z')
    return n - 1;
  return n;
}

size_t text_stem_en(const char *term, size_t len, char *out) {
  size_t n = len, i;
  if (len < 4 || len > 64) goto copy;
  for (i = 0; i < len; i++)
    if (term[i] < 'a' || term[i] > 'z') goto copy;
  memcpy(out, term, len);
  /* plurals and third person */
  if (ends(out, n, "ies") && n > 4) {
    n -= 2;
    out[n - 1] = 'y';
  } else if (ends(out, n, "sses")) {
    n -= 2;
  } else if (ends(out, n, "s") && !ends(out, n, "ss") && !ends(out, n, "us") &&
             !ends(out, n, "is") && has_vowel(out, n - 2)) {
    n -= 1;
  }
  /* -ing, -ed */
  if (ends(out, n, "ing") && n - 3 >= 3 && has_vowel(out, n - 3)) {
    n = undouble(out, n - 3);
  } else if (ends(out, n, "ed") && !ends(out, n, "eed") && n - 2 >= 3 && has_vowel(out, n - 2)) {
    n = undouble(out, n - 2);
  }
  /* a final silent e, so that "charge", "charged", "charging" meet */
  if (n >= 5 && out[n - 1] == 'e' && !is_vowel(out[n - 2])) n--;
  return n;
copy:
  memcpy(out, term, len);
  return len;
}
