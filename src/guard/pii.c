/* pii.c - finding and masking personal data in free text.
 *
 * Three scanners run over the bytes: e-mail addresses (around each '@'), runs
 * of digit groups (phones, cards, resident numbers, accounts, IPv4) and
 * colon-hex runs (IPv6). Each proposes candidate spans; overlapping
 * candidates are resolved by keeping the earliest, then the longest. Only
 * ASCII bytes are ever examined as syntax, so Korean text glued to a number
 * ("010-1234-5678로") still leaves the number a whole token, and invalid UTF-8
 * is harmless. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "guard/guard.h"
#include "util/buf.h"

#define RUN_GROUPS_MAX 8    /* more groups than any phone or card is written in */
#define RUN_DIGITS_MAX 32   /* digits kept per run; longer runs match nothing */
#define EMAIL_LOCAL_MAX 64
#define EMAIL_DOMAIN_MAX 253
#define IPV6_TEXT_MAX 45
#define ACCOUNT_CONTEXT_BEFORE 40
#define ACCOUNT_CONTEXT_AFTER 24
#define RRN_CONTEXT_BEFORE 32
#define IP_CONTEXT_BEFORE 16

struct span_vec {
  struct guard_pii_span *items;
  size_t count, cap;
};

/* One run of digit groups, e.g. "+82 (0)10-1234-5678" or "4111 1111 1111 1111". */
struct digit_run {
  size_t start, end; /* byte span, including a leading '+' or '(' */
  int plus;          /* starts with '+' */
  int paren;         /* the first group was written in parentheses: "(02)" */
  size_t ngroups;
  size_t gstart[RUN_GROUPS_MAX]; /* byte offset of each group's first digit */
  size_t gend[RUN_GROUPS_MAX];
  char sep[RUN_GROUPS_MAX]; /* separator before group i (sep[0] unused) */
};

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_alnum(unsigned char c) { return is_digit(c) || is_alpha(c); }
static int is_hex(unsigned char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static unsigned char lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }
/* Joiners that glue a number to a neighbouring word: PAY-401, v1.2, a_1, 1,000. */
static int is_joiner(unsigned char c) {
  return c == '-' || c == '.' || c == '/' || c == ',' || c == '_';
}

static ragd_err span_push(struct span_vec *v, size_t start, size_t len, enum guard_pii_kind kind) {
  if (v->count == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 8;
    struct guard_pii_span *items = realloc(v->items, cap * sizeof *items);
    if (!items) return RAGD_ENOMEM;
    v->items = items;
    v->cap = cap;
  }
  v->items[v->count].start = start;
  v->items[v->count].len = len;
  v->items[v->count].kind = kind;
  v->count++;
  return RAGD_OK;
}

/* May a token start at pos? Not inside a word, and not right after a joiner
 * that follows a word character (the 401 of PAY-401, the 2 of v1.2). */
static int starts_token(const unsigned char *s, size_t pos) {
  unsigned char c;
  if (pos == 0) return 1;
  c = s[pos - 1];
  if (is_alnum(c) || c == '_' || c == '@' || c == '+') return 0;
  if (is_joiner(c) && pos >= 2 && is_alnum(s[pos - 2])) return 0;
  return 1;
}

/* May a token end at pos (exclusive)? The mirror of starts_token. */
static int ends_token(const unsigned char *s, size_t len, size_t pos) {
  unsigned char c;
  if (pos >= len) return 1;
  c = s[pos];
  if (is_alnum(c) || c == '_' || c == '@') return 0;
  if (is_joiner(c) && pos + 1 < len && is_alnum(s[pos + 1])) return 0;
  return 1;
}

/* Case-insensitive (ASCII) search for needle in s[from..to). */
static int window_has(const unsigned char *s, size_t from, size_t to, const char *needle) {
  size_t n = strlen(needle);
  if (to < from || to - from < n) return 0;
  for (size_t i = from; i + n <= to; i++) {
    size_t k = 0;
    while (k < n && lower(s[i + k]) == (unsigned char)needle[k]) k++;
    if (k == n) return 1;
  }
  return 0;
}

static int window_has_any(const unsigned char *s, size_t from, size_t to,
                          const char *const *words) {
  for (size_t i = 0; words[i]; i++)
    if (window_has(s, from, to, words[i])) return 1;
  return 0;
}

/* ---- e-mail ----------------------------------------------------------------- */

static int email_local_char(unsigned char c) {
  return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}
static int email_domain_char(unsigned char c) { return is_alnum(c) || c == '.' || c == '-'; }

/* Checks a domain: two or more dot-separated labels of letters, digits and
 * inner hyphens, the last one two or more letters. */
static int email_domain_ok(const unsigned char *d, size_t n) {
  size_t labels = 0, i = 0, last_start = 0;
  while (i < n) {
    size_t j = i;
    while (j < n && d[j] != '.') j++;
    if (j == i || d[i] == '-' || d[j - 1] == '-') return 0;
    labels++;
    last_start = i;
    i = j + 1;
    if (j == n) break;
    if (i == n) return 0; /* trailing dot was trimmed by the caller */
  }
  if (labels < 2 || n - last_start < 2) return 0;
  for (size_t k = last_start; k < n; k++)
    if (!is_alpha(d[k])) return 0;
  return 1;
}

static ragd_err scan_emails(const unsigned char *s, size_t len, struct span_vec *out) {
  for (size_t at = 0; at < len; at++) {
    size_t lo = at, hi = at + 1;
    ragd_err rc;
    if (s[at] != '@') continue;
    while (lo > 0 && at - lo < EMAIL_LOCAL_MAX && email_local_char(s[lo - 1])) lo--;
    if (lo > 0 && email_local_char(s[lo - 1])) continue; /* local part too long */
    while (lo < at && s[lo] == '.') lo++;
    if (lo == at || s[at - 1] == '.') continue;
    while (hi < len && hi - at - 1 < EMAIL_DOMAIN_MAX && email_domain_char(s[hi])) hi++;
    if (hi < len && email_domain_char(s[hi])) continue; /* domain too long */
    while (hi > at + 1 && (s[hi - 1] == '.' || s[hi - 1] == '-')) hi--;
    if (!email_domain_ok(s + at + 1, hi - at - 1)) continue;
    rc = span_push(out, lo, hi - lo, GUARD_PII_EMAIL);
    if (rc) return rc;
    at = hi - 1;
  }
  return RAGD_OK;
}

/* ---- digit runs --------------------------------------------------------------- */

/* Reads the digit groups that start at pos (a digit, '+' or '('). Groups are
 * separated by one '-', '.' or ' '; "(02)" may open a run and "(0)" may follow
 * a country code. Returns 0 when nothing run-like starts at pos. */
static int run_parse(const unsigned char *s, size_t len, size_t pos, struct digit_run *r) {
  size_t i = pos;
  memset(r, 0, sizeof *r);
  r->start = pos;
  if (s[i] == '+') {
    r->plus = 1;
    i++;
  } else if (s[i] == '(') {
    r->paren = 1;
    i++;
  }
  if (i >= len || !is_digit(s[i])) return 0;
  for (;;) {
    size_t g = i;
    while (i < len && is_digit(s[i])) i++;
    r->gstart[r->ngroups] = g;
    r->gend[r->ngroups] = i;
    r->ngroups++;
    r->end = i;
    if (r->ngroups == 1 && r->paren) {
      if (i >= len || s[i] != ')') return 0;
      i++;
      r->end = i;
      if (i < len && (s[i] == ' ' || s[i] == '-')) i++;
      if (i >= len || !is_digit(s[i])) return 1;
      r->sep[r->ngroups] = ')';
      continue;
    }
    if (r->ngroups == RUN_GROUPS_MAX || i >= len) return 1;
    /* "+82 (0)10 ...": the trunk zero in parentheses is written, not dialled. */
    if (r->plus && r->ngroups == 1) {
      size_t k = i;
      if (k < len && s[k] == ' ') k++;
      if (k + 3 < len && s[k] == '(' && s[k + 1] == '0' && s[k + 2] == ')') {
        k += 3;
        if (k < len && (s[k] == ' ' || s[k] == '-')) k++;
        if (k < len && is_digit(s[k])) {
          r->sep[r->ngroups] = '(';
          i = k;
          continue;
        }
      }
    }
    if ((s[i] == '-' || s[i] == '.' || s[i] == ' ') && i + 1 < len && is_digit(s[i + 1])) {
      r->sep[r->ngroups] = (char)s[i];
      i++;
      continue;
    }
    return 1;
  }
}

/* Collects the digits of groups [a, b) into d; returns their count, or 0 when
 * there are too many. */
static size_t run_digits(const unsigned char *s, const struct digit_run *r, size_t a, size_t b,
                         char *d) {
  size_t n = 0;
  for (size_t g = a; g < b; g++) {
    for (size_t i = r->gstart[g]; i < r->gend[g]; i++) {
      if (n == RUN_DIGITS_MAX) return 0;
      d[n++] = (char)s[i];
    }
  }
  return n;
}

static size_t glen(const struct digit_run *r, size_t g) { return r->gend[g] - r->gstart[g]; }

/* All separators between groups [a, b) are one of the allowed characters. */
static int seps_in(const struct digit_run *r, size_t a, size_t b, const char *allowed) {
  for (size_t g = a + 1; g < b; g++)
    if (!strchr(allowed, r->sep[g])) return 0;
  return 1;
}

static int seps_uniform(const struct digit_run *r, size_t a, size_t b) {
  for (size_t g = a + 2; g < b; g++)
    if (r->sep[g] != r->sep[a + 1]) return 0;
  return 1;
}

static int luhn_ok(const char *d, size_t n) {
  unsigned sum = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned v = (unsigned)(d[n - 1 - i] - '0');
    if (i % 2 == 1) {
      v *= 2;
      if (v > 9) v -= 9;
    }
    sum += v;
  }
  return sum % 10 == 0;
}

static int is_card(const struct digit_run *r, size_t a, size_t b, const char *d, size_t n) {
  if (r->plus || r->paren || n < 13 || n > 19) return 0;
  if (!strchr("234569", d[0])) return 0;
  if (b - a > 1) {
    if (!seps_in(r, a, b, " -") || !seps_uniform(r, a, b)) return 0;
    for (size_t g = a; g < b; g++)
      if (glen(r, g) < 3) return 0;
  }
  return luhn_ok(d, n);
}

static int two(const char *d) { return (d[0] - '0') * 10 + (d[1] - '0'); }

/* A Korean resident registration number: YYMMDD + gender/century digit +
 * six more, the last a check digit (weights 2..9,2..5; foreigners' numbers
 * use a shifted remainder). */
static int rrn_check_ok(const char *d) {
  static const int weights[12] = {2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5};
  int sum = 0, check = d[12] - '0';
  for (int i = 0; i < 12; i++) sum += (d[i] - '0') * weights[i];
  if ((11 - sum % 11) % 10 == check) return 1;
  if (d[6] >= '5' && (13 - sum % 11) % 10 == check) return 1;
  return 0;
}

static int is_rrn(const unsigned char *s, const struct digit_run *r, size_t a, size_t b,
                  const char *d, size_t n) {
  static const char *const context[] = {"주민", "resident", "rrn", "registration", NULL};
  int month, day;
  size_t from;
  if (r->plus || r->paren || n != 13) return 0;
  if (b - a == 2) {
    if (glen(r, a) != 6 || r->sep[a + 1] != '-') return 0;
  } else if (b - a != 1) {
    return 0;
  }
  month = two(d + 2);
  day = two(d + 4);
  if (month < 1 || month > 12 || day < 1 || day > 31 || d[6] < '1' || d[6] > '8') return 0;
  if (rrn_check_ok(d)) return 1;
  from = r->gstart[a] > RRN_CONTEXT_BEFORE ? r->gstart[a] - RRN_CONTEXT_BEFORE : 0;
  return window_has_any(s, from, r->gstart[a], context);
}

/* Korean national significant number (no trunk 0): mobile 1X, Seoul 2,
 * regions 3x-6x, internet phones 70. */
static int kr_national_ok(const char *d, size_t n) {
  if (n < 8) return 0;
  if (d[0] == '1' && strchr("016789", d[1])) return n == 9 || n == 10;
  if (d[0] == '2') return n == 8 || n == 9;
  if (d[0] >= '3' && d[0] <= '6' && d[1] >= '1' && d[1] <= '5') return n == 9 || n == 10;
  if (d[0] == '7' && d[1] == '0') return n == 10;
  return 0;
}

static int is_phone(const struct digit_run *r, size_t a, size_t b, const char *d, size_t n) {
  size_t ng = b - a;
  if (r->plus) {
    if (a != 0) return 0;
    if (!seps_in(r, a, b, " -.(")) return 0;
    if (n >= 2 && d[0] == '8' && d[1] == '2' && (ng == 1 || glen(r, 0) == 2)) {
      const char *nat = d + 2;
      size_t nn = n - 2;
      if (nn > 0 && nat[0] == '0') {
        nat++;
        nn--;
      }
      return kr_national_ok(nat, nn);
    }
    return n >= 8 && n <= 15 && d[0] != '0';
  }
  /* Korean domestic: 0 + national number, in one group or as area-exchange-line. */
  if (n < 9 || d[0] != '0' || !kr_national_ok(d + 1, n - 1)) return 0;
  if (r->paren && a != 0) return 0;
  if (ng == 1) return !r->paren;
  if (ng != 3 || !seps_in(r, a, b, "-. )")) return 0;
  if (r->sep[a + 2] == ')' || (r->sep[a + 1] != ')' && r->sep[a + 1] != r->sep[a + 2]))
    return 0;
  return (glen(r, a) == 2 || glen(r, a) == 3) && glen(r, a + 1) >= 3 && glen(r, a + 1) <= 4 &&
         glen(r, a + 2) == 4;
}

static int is_account(const unsigned char *s, size_t len, const struct digit_run *r, size_t a,
                      size_t b, size_t n) {
  static const char *const before[] = {"계좌", "통장", "은행", "입금", "송금", "이체", "예금주",
                                       "account", "acct", "bank", "deposit", "iban", NULL};
  static const char *const after[] = {"계좌", "통장", "은행", "뱅크", "입금", "송금", "이체",
                                      "예금주", "bank", NULL};
  size_t from, to;
  if (r->plus || r->paren || n < 10 || n > 16 || b - a > 4) return 0;
  if (!seps_in(r, a, b, "-")) return 0;
  for (size_t g = a; g < b; g++)
    if (glen(r, g) < 2) return 0;
  from = r->gstart[a] > ACCOUNT_CONTEXT_BEFORE ? r->gstart[a] - ACCOUNT_CONTEXT_BEFORE : 0;
  if (window_has_any(s, from, r->gstart[a], before)) return 1;
  to = r->gend[b - 1] + ACCOUNT_CONTEXT_AFTER;
  if (to > len) to = len;
  return window_has_any(s, r->gend[b - 1], to, after);
}

static int is_ipv4(const unsigned char *s, const struct digit_run *r, size_t a, size_t b) {
  static const char *const version_words[] = {"version", "버전", "release", "릴리스", "build",
                                              "빌드", NULL};
  unsigned octet[4];
  size_t from;
  if (r->plus || r->paren || b - a != 4 || !seps_in(r, a, b, ".")) return 0;
  for (size_t g = a; g < b; g++) {
    unsigned v = 0;
    if (glen(r, g) > 3) return 0;
    for (size_t i = r->gstart[g]; i < r->gend[g]; i++) v = v * 10 + (unsigned)(s[i] - '0');
    if (v > 255) return 0;
    octet[g - a] = v;
  }
  if (octet[0] == 127 || (octet[0] == 0 && octet[1] == 0 && octet[2] == 0 && octet[3] == 0))
    return 0;
  from = r->gstart[a] > IP_CONTEXT_BEFORE ? r->gstart[a] - IP_CONTEXT_BEFORE : 0;
  return !window_has_any(s, from, r->gstart[a], version_words);
}

/* Classifies groups [a, b) of a run; 0 when they are none of the kinds. */
static enum guard_pii_kind run_classify(const unsigned char *s, size_t len,
                                        const struct digit_run *r, size_t a, size_t b,
                                        unsigned kinds) {
  char d[RUN_DIGITS_MAX];
  size_t n = run_digits(s, r, a, b, d);
  if (n == 0) return 0;
  if ((kinds & GUARD_PII_RRN) && is_rrn(s, r, a, b, d, n)) return GUARD_PII_RRN;
  if ((kinds & GUARD_PII_CARD) && is_card(r, a, b, d, n)) return GUARD_PII_CARD;
  if ((kinds & GUARD_PII_PHONE) && is_phone(r, a, b, d, n)) return GUARD_PII_PHONE;
  if ((kinds & GUARD_PII_ACCOUNT) && is_account(s, len, r, a, b, n)) return GUARD_PII_ACCOUNT;
  if ((kinds & GUARD_PII_IP) && is_ipv4(s, r, a, b)) return GUARD_PII_IP;
  return 0;
}

/* Where groups [a, b) begin in the text: a run's own start for a == 0 (so
 * "+" and "(" are masked too), the first digit otherwise. */
static size_t sub_start(const struct digit_run *r, size_t a) {
  return a == 0 ? r->start : r->gstart[a];
}

/* Tries every sub-run that begins and ends at a space (or at the run's own
 * edges), longest first, so "4111 1111 1111 1111 2025" still yields its card
 * and "3 010 1234 5678" its phone. Group counts are capped, so this is
 * bounded work per run. */
static ragd_err run_matches(const unsigned char *s, size_t len, const struct digit_run *r,
                            unsigned kinds, struct span_vec *out) {
  int end_ok = ends_token(s, len, r->end);
  size_t a = 0;
  while (a < r->ngroups) {
    size_t b, found = 0;
    if (a > 0 && r->sep[a] != ' ') {
      a++;
      continue;
    }
    for (b = r->ngroups; b > a; b--) {
      enum guard_pii_kind kind;
      size_t end;
      if (b == r->ngroups && !end_ok) continue;
      if (b < r->ngroups && r->sep[b] != ' ') continue;
      kind = run_classify(s, len, r, a, b, kinds);
      if (!kind) continue;
      end = (b == r->ngroups) ? r->end : r->gend[b - 1];
      {
        ragd_err rc = span_push(out, sub_start(r, a), end - sub_start(r, a), kind);
        if (rc) return rc;
      }
      found = b;
      break;
    }
    a = found ? found : a + 1;
  }
  return RAGD_OK;
}

static ragd_err scan_runs(const unsigned char *s, size_t len, unsigned kinds,
                          struct span_vec *out) {
  size_t i = 0;
  while (i < len) {
    struct digit_run r;
    unsigned char c = s[i];
    int opener = is_digit(c) || ((c == '+' || c == '(') && i + 1 < len && is_digit(s[i + 1]));
    if (!opener) {
      i++;
      continue;
    }
    if (!starts_token(s, i) || !run_parse(s, len, i, &r)) {
      /* Skip the rest of this word so its digits are not read as a new run. */
      i++;
      while (i < len && (is_alnum(s[i]) || s[i] == '_')) i++;
      continue;
    }
    {
      ragd_err rc = run_matches(s, len, &r, kinds, out);
      if (rc) return rc;
    }
    i = r.end > i ? r.end : i + 1;
  }
  return RAGD_OK;
}

/* ---- IPv6 -------------------------------------------------------------------- */

static ragd_err scan_ipv6(const unsigned char *s, size_t len, struct span_vec *out) {
  size_t i = 0;
  while (i < len) {
    size_t j = i, colons = 0, digits = 0;
    char tmp[IPV6_TEXT_MAX + 1];
    unsigned char addr[16];
    static const unsigned char loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                               0, 0, 0, 0, 0, 0, 0, 1};
    static const unsigned char unspecified[16] = {0};
    if (!(is_hex(s[i]) || s[i] == ':') ||
        (i > 0 && (is_alnum(s[i - 1]) || s[i - 1] == ':' || s[i - 1] == '.' || s[i - 1] == '_'))) {
      i++;
      continue;
    }
    while (j < len && (is_hex(s[j]) || s[j] == ':' || s[j] == '.')) {
      if (s[j] == ':') colons++;
      if (is_digit(s[j])) digits++;
      j++;
    }
    {
      size_t end = j;
      while (end > i && s[end - 1] == '.') end--;
      if (end - i >= 2 && s[end - 1] == ':' && s[end - 2] != ':') end--;
      if (colons >= 2 && digits > 0 && end - i <= IPV6_TEXT_MAX && ends_token(s, len, j)) {
        memcpy(tmp, s + i, end - i);
        tmp[end - i] = '\0';
        if (inet_pton(AF_INET6, tmp, addr) == 1 && memcmp(addr, loopback, 16) != 0 &&
            memcmp(addr, unspecified, 16) != 0) {
          ragd_err rc = span_push(out, i, end - i, GUARD_PII_IP);
          if (rc) return rc;
        }
      }
    }
    /* Continue after this candidate, and after the word it may be glued to. */
    i = j > i ? j : i + 1;
    while (i < len && (is_alnum(s[i]) || s[i] == '_')) i++;
  }
  return RAGD_OK;
}

/* ---- putting it together ------------------------------------------------------ */

static int span_cmp(const void *pa, const void *pb) {
  const struct guard_pii_span *a = pa, *b = pb;
  if (a->start != b->start) return a->start < b->start ? -1 : 1;
  if (a->len != b->len) return a->len > b->len ? -1 : 1;
  return 0;
}

ragd_err guard_find_pii(const char *text, size_t len, unsigned kinds, struct guard_pii_list *out) {
  const unsigned char *s = (const unsigned char *)text;
  struct span_vec v = {0};
  ragd_err rc = RAGD_OK;
  size_t kept = 0;
  out->items = NULL;
  out->count = 0;
  if (!text || len == 0 || !(kinds & GUARD_PII_ALL)) return RAGD_OK;
  if (kinds & GUARD_PII_EMAIL) {
    rc = scan_emails(s, len, &v);
    if (rc) goto out;
  }
  rc = scan_runs(s, len, kinds, &v);
  if (rc) goto out;
  if (kinds & GUARD_PII_IP) {
    rc = scan_ipv6(s, len, &v);
    if (rc) goto out;
  }
  if (v.count > 1) qsort(v.items, v.count, sizeof *v.items, span_cmp);
  for (size_t i = 0; i < v.count; i++) {
    if (kept > 0 && v.items[i].start < v.items[kept - 1].start + v.items[kept - 1].len)
      continue;
    v.items[kept++] = v.items[i];
  }
  out->items = v.items;
  out->count = kept;
  v.items = NULL;
out:
  free(v.items);
  return rc;
}

void guard_pii_list_dispose(struct guard_pii_list *list) {
  if (!list) return;
  free(list->items);
  list->items = NULL;
  list->count = 0;
}

const char *guard_pii_placeholder(enum guard_pii_kind kind) {
  switch (kind) {
    case GUARD_PII_EMAIL:
      return "[EMAIL]";
    case GUARD_PII_PHONE:
      return "[PHONE]";
    case GUARD_PII_CARD:
      return "[CARD]";
    case GUARD_PII_RRN:
      return "[RRN]";
    case GUARD_PII_ACCOUNT:
      return "[ACCOUNT]";
    case GUARD_PII_IP:
      return "[IP]";
  }
  return "[PII]";
}

const char *guard_pii_kind_name(enum guard_pii_kind kind) {
  switch (kind) {
    case GUARD_PII_EMAIL:
      return "email";
    case GUARD_PII_PHONE:
      return "phone";
    case GUARD_PII_CARD:
      return "card";
    case GUARD_PII_RRN:
      return "rrn";
    case GUARD_PII_ACCOUNT:
      return "account";
    case GUARD_PII_IP:
      return "ip";
  }
  return "pii";
}

ragd_err guard_mask_pii(const char *text, size_t len, unsigned kinds, char **masked,
                        size_t *masked_len, size_t *count) {
  struct guard_pii_list list = {0};
  struct buf b;
  size_t at = 0;
  ragd_err rc;
  *masked = NULL;
  if (masked_len) *masked_len = 0;
  if (count) *count = 0;
  buf_init(&b, 0);
  if (!text) len = 0;
  rc = guard_find_pii(text, len, kinds, &list);
  if (rc) goto out;
  for (size_t i = 0; i < list.count; i++) {
    rc = buf_append(&b, text + at, list.items[i].start - at);
    if (!rc) rc = buf_append_str(&b, guard_pii_placeholder(list.items[i].kind));
    if (rc) goto out;
    at = list.items[i].start + list.items[i].len;
  }
  rc = buf_append(&b, text ? text + at : "", len - at);
  if (rc) goto out;
  *masked = buf_take(&b, masked_len);
  if (!*masked) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  if (count) *count = list.count;
out:
  guard_pii_list_dispose(&list);
  buf_dispose(&b);
  return rc;
}
