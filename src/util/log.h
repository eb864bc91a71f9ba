/* log.h - structured logging: one JSON object per line on standard error.
 *
 *   {"ts":"2025-06-01T12:00:00.123Z","level":"info","msg":"...",
 *    "request_id":"req_...", ...fields}
 *
 * Thread-safe: each line is one write(2) under a lock, so lines of different
 * threads never interleave. Levels below the configured one (RAGD_LOG_LEVEL,
 * default info) are dropped before any formatting.
 *
 * Every message passes through guard_redact_log before it is written, at
 * every level: credentials (Authorization and API-key header values, Bearer
 * tokens, provider key shapes, key= URL parameters) become "[REDACTED]" and
 * personal data (e-mail, phone, card numbers, ...) its guard placeholder.
 * That is a safety net, not a licence: never log request bodies, prompts or
 * answers except at debug level, and never an API key at all.
 *
 * The request id: a thread that works for one HTTP request sets it
 * (log_scope_begin) and every line it logs meanwhile carries "request_id".
 * The http layer does so around handlers, the upstream thread around the
 * callbacks of a transfer that names one. */
#ifndef RAGD_UTIL_LOG_H
#define RAGD_UTIL_LOG_H

#include <stddef.h>

#include "util/json.h"

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3, LOG_OFF = 4 };

/* Longest request id kept (longer ones are cut), terminating NUL included. */
#define LOG_REQUEST_ID_MAX 136

void log_set_level(enum log_level level);
/* Nonzero when a line of this level would be written. Any thread. */
int log_enabled(enum log_level level);
/* Parses "debug", "info", "warn", "error", "off"; returns -1 when unknown. */
int log_level_parse(const char *s);

/* Writes one line: msg is formatted printf-style, redacted (see above) and
 * cut to 8 KiB at a character boundary; invalid UTF-8 becomes U+FFFD. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* log_msg with extra top-level fields: fields is a JSON object (the
 * reference is taken; NULL for none) whose members follow "request_id" in
 * its order. Members named ts, level, msg or request_id are ignored. Field
 * values are written as given, not redacted: put only values the program
 * made (routes, statuses, counts, provider names) there, never user text. */
void log_fields(enum log_level level, json_t *fields, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- the calling thread's request id ---- */

/* The id lines of this thread carry, "" when none. Valid until the thread
 * changes it. */
const char *log_request_id(void);

/* Saves the calling thread's request id in *scope and sets id (NULL or "":
 * none). Pair with log_scope_end on the same thread; scopes nest. */
struct log_scope {
  char saved[LOG_REQUEST_ID_MAX];
};
void log_scope_begin(struct log_scope *scope, const char *id);
/* Restores the id saved by log_scope_begin. */
void log_scope_end(struct log_scope *scope);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
