/* buf.h - growable byte buffers with a per-use maximum, and slices.
 *
 * A buf owns its bytes. data is always NUL-terminated when non-NULL (the NUL is
 * not counted in len), so a buf can be handed to C string APIs. An append that
 * would pass max, or that fails to allocate, frees the buffer and returns
 * RAGD_ETOOBIG or RAGD_ENOMEM: nothing is ever silently truncated. */
#ifndef RAGD_UTIL_BUF_H
#define RAGD_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "util/err.h"

/* A borrowed view of bytes; never owns them. */
struct slice {
  const char *ptr;
  size_t len;
};

#define SLICE_LIT(s) ((struct slice){(s), sizeof(s) - 1})
struct slice slice_from_cstr(const char *s);

struct buf {
  char *data;
  size_t len;
  size_t cap;
  size_t max; /* largest len allowed; 0 means no limit */
};

/* Prepares an empty buffer that may grow to max bytes (0 = unlimited). */
void buf_init(struct buf *b, size_t max);
/* Frees the bytes; the buffer is empty and reusable afterwards. */
void buf_dispose(struct buf *b);
/* Keeps the allocation, sets len to 0. */
void buf_reset(struct buf *b);
ragd_err buf_append(struct buf *b, const void *p, size_t n);
ragd_err buf_append_str(struct buf *b, const char *s);
ragd_err buf_append_char(struct buf *b, char c);
ragd_err buf_appendf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
ragd_err buf_vappendf(struct buf *b, const char *fmt, va_list ap);
/* Hands the bytes to the caller (free() them); the buffer becomes empty.
 * Returns an empty malloc'd string when the buffer held nothing, NULL only on
 * allocation failure. */
char *buf_take(struct buf *b, size_t *len /* OUT, may be NULL */);

#endif
