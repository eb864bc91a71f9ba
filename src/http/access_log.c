/* access_log.c - the access-log line of every request and the notes handlers
 * add to it (see http.h, http_request_notes).
 *
 * Notes are shared between the request, which logs them when it ends on the
 * event thread, and whoever learns them later on another thread (a streamed
 * answer's provider and tokens arrive on the upstream thread), so they are
 * reference counted and locked; a note set after the line was written is
 * dropped with the notes. */
#include <pthread.h>
#include <stdlib.h>

#include "http/access_log_int.h"
#include "util/log.h"

struct http_notes {
  pthread_mutex_t mu;
  int refs;
  json_t *fields; /* NULL until the first note */
};

struct http_notes *http_notes_new(void) {
  struct http_notes *n = calloc(1, sizeof *n);
  if (!n) return NULL;
  pthread_mutex_init(&n->mu, NULL);
  n->refs = 1;
  return n;
}

struct http_notes *http_notes_hold(struct http_notes *n) {
  if (!n) return NULL;
  pthread_mutex_lock(&n->mu);
  n->refs++;
  pthread_mutex_unlock(&n->mu);
  return n;
}

void http_notes_release(struct http_notes *n) {
  int last;
  if (!n) return;
  pthread_mutex_lock(&n->mu);
  last = --n->refs == 0;
  pthread_mutex_unlock(&n->mu);
  if (!last) return;
  json_decref(n->fields);
  pthread_mutex_destroy(&n->mu);
  free(n);
}

/* Sets fields[key] = value, taking the reference to value. */
static void notes_put(struct http_notes *n, const char *key, json_t *value) {
  if (!n || !key || !value) goto out;
  pthread_mutex_lock(&n->mu);
  if (!n->fields) n->fields = json_object();
  if (n->fields) json_object_set(n->fields, key, value);
  pthread_mutex_unlock(&n->mu);
out:
  json_decref(value);
}

void http_notes_set(struct http_notes *n, const char *key, const char *value) {
  notes_put(n, key, value ? json_string(value) : NULL);
}

void http_notes_set_int(struct http_notes *n, const char *key, long long value) {
  notes_put(n, key, json_integer((json_int_t)value));
}

void http_access_log(const char *request_id, struct http_notes *n, const char *method,
                     const char *route, int status, size_t bytes, double seconds,
                     const char *ended) {
  struct log_scope scope;
  json_t *f = json_object(), *notes;
  if (!f || !log_enabled(LOG_INFO)) goto out;
  json_object_set_new(f, "method", json_string(method));
  json_object_set_new(f, "route", json_string(route));
  json_object_set_new(f, "status", json_integer(status));
  /* milliseconds with one decimal */
  json_object_set_new(f, "duration_ms", json_real((double)(long long)(seconds * 1e4) / 10.0));
  json_object_set_new(f, "bytes", json_integer((json_int_t)bytes));
  if (ended) json_object_set_new(f, "ended", json_string(ended));
  if (n) {
    pthread_mutex_lock(&n->mu);
    notes = n->fields ? json_deep_copy(n->fields) : NULL;
    pthread_mutex_unlock(&n->mu);
    if (notes) json_object_update_missing(f, notes);
    json_decref(notes);
  }
  log_scope_begin(&scope, request_id);
  log_fields(LOG_INFO, f, "%s %s %d", method, route, status);
  f = NULL; /* taken */
  log_scope_end(&scope);
out:
  json_decref(f);
}
