#include "util/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct slice slice_from_cstr(const char *s) {
  struct slice sl = {s, s ? strlen(s) : 0};
  return sl;
}

void buf_init(struct buf *b, size_t max) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->max = max;
}

void buf_dispose(struct buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void buf_reset(struct buf *b) {
  b->len = 0;
  if (b->data) b->data[0] = '\0';
}

/* Makes room for n more bytes plus the terminating NUL. */
static ragd_err buf_reserve(struct buf *b, size_t n) {
  size_t need, cap;
  char *p;
  if (n > ((size_t)-1) - b->len - 1) goto too_big;
  need = b->len + n;
  if (b->max && need > b->max) goto too_big;
  if (need + 1 <= b->cap) return RAGD_OK;
  cap = b->cap ? b->cap : 64;
  while (cap < need + 1) {
    if (cap > ((size_t)-1) / 2) {
      cap = need + 1;
      break;
    }
    cap *= 2;
  }
  p = realloc(b->data, cap);
  if (!p) {
    buf_dispose(b);
    return RAGD_ENOMEM;
  }
  b->data = p;
  b->cap = cap;
  return RAGD_OK;
too_big:
  buf_dispose(b);
  return RAGD_ETOOBIG;
}

ragd_err buf_append(struct buf *b, const void *p, size_t n) {
  ragd_err rc = buf_reserve(b, n);
  if (rc) return rc;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return RAGD_OK;
}

ragd_err buf_append_str(struct buf *b, const char *s) {
  return buf_append(b, s, strlen(s));
}

ragd_err buf_append_char(struct buf *b, char c) { return buf_append(b, &c, 1); }

ragd_err buf_vappendf(struct buf *b, const char *fmt, va_list ap) {
  va_list ap2;
  int n;
  ragd_err rc;
  va_copy(ap2, ap);
  n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) return RAGD_EINVAL;
  rc = buf_reserve(b, (size_t)n);
  if (rc) return rc;
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return RAGD_OK;
}

ragd_err buf_appendf(struct buf *b, const char *fmt, ...) {
  va_list ap;
  ragd_err rc;
  va_start(ap, fmt);
  rc = buf_vappendf(b, fmt, ap);
  va_end(ap);
  return rc;
}

char *buf_take(struct buf *b, size_t *len) {
  char *p = b->data;
  if (!p) {
    p = calloc(1, 1);
    if (len) *len = 0;
    return p;
  }
  if (len) *len = b->len;
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  return p;
}
