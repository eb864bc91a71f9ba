/* json.h - small helpers over jansson shared by every module that reads or
 * writes JSON. jansson's own API stays usable through this header. */
#ifndef RAGD_UTIL_JSON_H
#define RAGD_UTIL_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "util/buf.h"
#include "util/err.h"

/* Parses a whole JSON text that must be an object. On failure returns
 * RAGD_EJSON and writes "line L column C (byte B): reason" into detail. The
 * caller owns *out (json_decref). */
ragd_err json_parse_object(const char *text, size_t len, json_t **out /* OUT */,
                           struct buf *detail);

/* Serializes v compactly (UTF-8, no newlines) and appends it to out. */
ragd_err json_append(struct buf *out, const json_t *v);

/* Returns the string value of obj[key] or NULL when absent or not a string. */
const char *json_get_str(const json_t *obj, const char *key);

#endif
