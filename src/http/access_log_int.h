/* access_log_int.h - private to http/: the access-log line and the notes a
 * handler adds to it (the public half is in http.h). */
#ifndef RAGD_HTTP_ACCESS_LOG_INT_H
#define RAGD_HTTP_ACCESS_LOG_INT_H

#include <stddef.h>

#include "http/http.h"

/* A fresh, empty set of notes holding one reference; NULL on allocation
 * failure. */
struct http_notes *http_notes_new(void);
/* Takes another reference to n and returns it; NULL for a NULL n. */
struct http_notes *http_notes_hold(struct http_notes *n);

/* Writes the access-log line of one request at info level: the message
 * "METHOD ROUTE STATUS" and the fields method, route (the route table's
 * pattern, never the path, which may hold ids), status, duration_ms, bytes,
 * "ended" when ended is not NULL (why the response was not sent whole:
 * "client_abort", "error"), then every note of n (may be NULL), under the
 * request id request_id. Any thread; nothing when info is not logged. */
void http_access_log(const char *request_id, struct http_notes *n, const char *method,
                     const char *route, int status, size_t bytes, double seconds,
                     const char *ended);

#endif
