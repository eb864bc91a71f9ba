/* redact.c - log redaction: credentials out, personal data masked (see
 * guard_redact_log in guard.h).
 *
 * Credentials are found by where they stand, not by what they look like
 * alone: after a header or parameter name that carries one, after an auth
 * scheme word, or in the shapes provider keys have (sk-..., AIza...). The
 * scan is one pass over ASCII bytes; other bytes are copied through. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "guard/guard.h"
#include "util/buf.h"

#define REDACTED "[REDACTED]"

/* Names whose value is a credential: as a header ("Name: value") or a
 * setting ("name=value", "\"name\":\"value\""). Compared without case. */
static const char *const secret_names[] = {
    "proxy-authorization", "authorization", "x-goog-api-key", "x-api-key", "api-key",
    "api_key", "apikey", "access_token", "client_secret", "password", "secret",
};

/* URL parameters whose value is a credential: "?key=...", "&key=...". */
static const char *const secret_params[] = {"key", "token", "sig", "signature"};

/* Auth schemes: after a secret name any of them; standing alone, only
 * "Bearer" (basic and token are ordinary words). */
static const char *const auth_schemes[] = {"bearer", "basic", "token"};

static int is_word(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

/* The end of a credential value starting at i: up to white space, a quote,
 * a comma, ';', '&', '#' or the end. */
static size_t value_end(const char *t, size_t len, size_t i) {
  while (i < len) {
    unsigned char c = (unsigned char)t[i];
    if (c <= ' ' || c == '"' || c == '\'' || c == ',' || c == ';' || c == '&' || c == '#' ||
        c == '}' || c == ']' || c == ')')
      break;
    i++;
  }
  return i;
}

static size_t skip_spaces(const char *t, size_t len, size_t i) {
  while (i < len && (t[i] == ' ' || t[i] == '\t')) i++;
  return i;
}

/* When an auth scheme word ("Bearer") starts at i and is followed by white
 * space, the index after that space; else i. */
static size_t skip_scheme(const char *t, size_t len, size_t i, size_t schemes) {
  for (size_t k = 0; k < schemes; k++) {
    size_t n = strlen(auth_schemes[k]);
    if (i + n < len && strncasecmp(t + i, auth_schemes[k], n) == 0 &&
        (t[i + n] == ' ' || t[i + n] == '\t'))
      return skip_spaces(t, len, i + n);
  }
  return i;
}

/* A secret name at i (at a word start): the index of its value, or 0. */
static size_t after_secret_name(const char *t, size_t len, size_t i) {
  for (size_t k = 0; k < sizeof secret_names / sizeof secret_names[0]; k++) {
    size_t n = strlen(secret_names[k]), j = i + n;
    if (j > len || strncasecmp(t + i, secret_names[k], n) != 0) continue;
    if (j < len && is_word((unsigned char)t[j])) continue;
    if (j < len && t[j] == '"') j++; /* a JSON key */
    j = skip_spaces(t, len, j);
    if (j >= len || (t[j] != ':' && t[j] != '=')) continue;
    j = skip_spaces(t, len, j + 1);
    if (j < len && (t[j] == '"' || t[j] == '\'')) j++;
    return skip_scheme(t, len, j, sizeof auth_schemes / sizeof auth_schemes[0]);
  }
  return 0;
}

/* A URL parameter holding a credential at i (just after '?' or '&'). */
static size_t after_secret_param(const char *t, size_t len, size_t i) {
  for (size_t k = 0; k < sizeof secret_params / sizeof secret_params[0]; k++) {
    size_t n = strlen(secret_params[k]);
    if (i + n < len && strncasecmp(t + i, secret_params[k], n) == 0 && t[i + n] == '=')
      return i + n + 1;
  }
  return 0;
}

/* A provider key shape at i (a word start): sk-..., sk-ant-..., AIza...,
 * and ragd's own API keys (rk_ and 43 characters), at least 20 characters in
 * all; a ragd key's public id (rk_ and 8) is shorter and stays, since logs
 * name keys by it. Returns its end or 0. */
static size_t key_shape_end(const char *t, size_t len, size_t i) {
  size_t j;
  if (i + 3 < len && strncmp(t + i, "sk-", 3) == 0) {
    j = i + 3;
  } else if (i + 4 < len && strncmp(t + i, "AIza", 4) == 0) {
    j = i + 4;
  } else if (i + 3 < len && strncmp(t + i, "rk_", 3) == 0) {
    j = i + 3;
  } else {
    return 0;
  }
  while (j < len && is_word((unsigned char)t[j])) j++;
  return j - i >= 20 ? j : 0;
}

/* Copies text with credentials replaced. */
static ragd_err redact_secrets(const char *t, size_t len, struct buf *out) {
  size_t i = 0, copied = 0;
  ragd_err rc = RAGD_OK;
  while (i < len) {
    int word_start = i == 0 || !is_word((unsigned char)t[i - 1]);
    size_t from = 0, to = 0;
    if (word_start && is_word((unsigned char)t[i])) {
      size_t v = after_secret_name(t, len, i);
      if (!v) {
        v = skip_scheme(t, len, i, 1); /* "Bearer TOKEN" anywhere */
        if (v == i) v = 0;
      }
      if (v) {
        from = v;
        to = value_end(t, len, v);
      } else {
        to = key_shape_end(t, len, i);
        if (to) from = i;
      }
    } else if ((t[i] == '?' || t[i] == '&') && i + 1 < len) {
      size_t v = after_secret_param(t, len, i + 1);
      if (v) {
        from = v;
        to = value_end(t, len, v);
      }
    }
    if (to > from) {
      rc = buf_append(out, t + copied, from - copied);
      if (!rc) rc = buf_append(out, REDACTED, strlen(REDACTED));
      if (rc) return rc;
      copied = i = to;
      continue;
    }
    i++;
  }
  return buf_append(out, t + copied, len - copied);
}

ragd_err guard_redact_log(const char *text, size_t len, char **out, size_t *out_len) {
  struct buf clean;
  ragd_err rc;
  *out = NULL;
  buf_init(&clean, 0);
  rc = redact_secrets(text, len, &clean);
  if (!rc)
    rc = guard_mask_pii(clean.data ? clean.data : "", clean.len, GUARD_PII_ALL, out, out_len, NULL);
  buf_dispose(&clean);
  return rc;
}
