/* err.h - the one error type of ragd.
 *
 * Every fallible function returns a ragd_err: 0 is success, anything else is
 * one of the codes below. Codes are appended, never renumbered; the HTTP layer
 * maps each to a problem+json code in one table (http/problem.c). */
#ifndef RAGD_UTIL_ERR_H
#define RAGD_UTIL_ERR_H

/* X(name, number, short message) */
#define RAGD_ERR_LIST(X)                                              \
  X(RAGD_OK, 0, "ok")                                                 \
  X(RAGD_ENOMEM, 1, "out of memory")                                  \
  X(RAGD_EINVAL, 2, "invalid argument")                               \
  X(RAGD_ETOOBIG, 3, "too large")                                     \
  X(RAGD_EUTF8, 4, "invalid UTF-8")                                   \
  X(RAGD_EJSON, 5, "malformed JSON")                                  \
  X(RAGD_ENOTFOUND, 6, "not found")                                   \
  X(RAGD_EIO, 7, "input/output error")                                \
  X(RAGD_ESTORE, 8, "store error")                                    \
  X(RAGD_EUPSTREAM, 9, "upstream error")                              \
  X(RAGD_ETIMEOUT, 10, "timed out")                                   \
  X(RAGD_ECANCELLED, 11, "cancelled")                                 \
  X(RAGD_ECONFIG, 12, "invalid configuration")                        \
  X(RAGD_EUNSUPPORTED, 13, "unsupported")                             \
  X(RAGD_EEMPTY, 14, "empty input")

typedef enum {
#define RAGD_ERR_ENUM(name, num, msg) name = num,
  RAGD_ERR_LIST(RAGD_ERR_ENUM)
#undef RAGD_ERR_ENUM
} ragd_err;

/* Returns a static, human-readable message for rc (never NULL). */
const char *ragd_strerror(ragd_err rc);
/* Returns the enum name of rc, e.g. "RAGD_ENOMEM" (never NULL). */
const char *ragd_errname(ragd_err rc);

#endif
