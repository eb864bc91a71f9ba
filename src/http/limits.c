/* limits.c - token buckets and requests in flight, per API key and per
 * client address (see http_int.h). One mutex guards the table: an admission
 * is a hash, a short chain walk and a few arithmetic operations. With a
 * shared counter (http_access_opts.rate_take, the PostgreSQL store) the
 * requests per minute are counted there instead, and the table keeps only
 * the requests in flight. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_int.h"
#include "util/log.h"

#define LIMITER_BUCKETS 1024 /* hash chains; entries may outnumber them */

int64_t http_bucket_take(struct http_bucket *b, long rpm, int64_t now_ms) {
  double per_ms = (double)rpm / 60000.0;
  double need;
  if (!b->started) {
    b->started = 1;
    b->tokens = (double)rpm;
    b->last_ms = now_ms;
  }
  if (now_ms > b->last_ms) {
    b->tokens += (double)(now_ms - b->last_ms) * per_ms;
    if (b->tokens > (double)rpm) b->tokens = (double)rpm;
    b->last_ms = now_ms;
  }
  if (b->tokens >= 1.0) {
    b->tokens -= 1.0;
    return 0;
  }
  need = ceil((1.0 - b->tokens) / per_ms);
  return need < 1.0 ? 1 : (int64_t)need;
}

int http_bucket_full(const struct http_bucket *b, long rpm, int64_t now_ms) {
  double t;
  if (!b->started) return 1;
  t = b->tokens;
  if (now_ms > b->last_ms) t += (double)(now_ms - b->last_ms) * ((double)rpm / 60000.0);
  return t >= (double)rpm;
}

struct http_limit_slot {
  struct http_limit_slot *next; /* hash chain */
  struct http_bucket bucket;
  long rpm;      /* as last admitted: decides when the bucket is full again */
  long inflight; /* requests and streams now holding a place */
  char name[];
};

struct http_limiter {
  pthread_mutex_t mu;
  size_t count, max_entries;
  int warned;
  struct http_limit_slot *chains[LIMITER_BUCKETS];
};

ragd_err http_limiter_new(size_t max_entries, struct http_limiter **out) {
  struct http_limiter *l = calloc(1, sizeof *l);
  if (!l) return RAGD_ENOMEM;
  pthread_mutex_init(&l->mu, NULL);
  l->max_entries = max_entries ? max_entries : 1;
  *out = l;
  return RAGD_OK;
}

void http_limiter_free(struct http_limiter *l) {
  if (!l) return;
  for (size_t i = 0; i < LIMITER_BUCKETS; i++) {
    struct http_limit_slot *e = l->chains[i];
    while (e) {
      struct http_limit_slot *next = e->next;
      free(e);
      e = next;
    }
  }
  pthread_mutex_destroy(&l->mu);
  free(l);
}

/* FNV-1a: names are ours (key ids, addresses), not chosen to collide. */
static size_t limiter_hash(const char *name) {
  uint64_t h = 1469598103934665603ull;
  for (; *name; name++) h = (h ^ (unsigned char)*name) * 1099511628211ull;
  return (size_t)(h % LIMITER_BUCKETS);
}

/* Drops entries that hold nothing: a full bucket and no request in flight.
 * Caller holds l->mu. */
static void limiter_sweep(struct http_limiter *l, int64_t now_ms) {
  for (size_t i = 0; i < LIMITER_BUCKETS; i++) {
    struct http_limit_slot **pp = &l->chains[i];
    while (*pp) {
      struct http_limit_slot *e = *pp;
      if (e->inflight == 0 && (e->rpm <= 0 || http_bucket_full(&e->bucket, e->rpm, now_ms))) {
        *pp = e->next;
        free(e);
        l->count--;
      } else {
        pp = &e->next;
      }
    }
  }
}

enum http_limit_verdict http_limiter_admit(struct http_limiter *l, const char *name, long rpm,
                                           long concurrent, int64_t now_ms,
                                           struct http_limit_slot **slot,
                                           int64_t *retry_after_ms) {
  size_t h = limiter_hash(name);
  struct http_limit_slot *e;
  enum http_limit_verdict v = HTTP_LIMIT_OK;
  *slot = NULL;
  *retry_after_ms = 0;
  if (rpm <= 0 && concurrent <= 0) return HTTP_LIMIT_OK;
  pthread_mutex_lock(&l->mu);
  for (e = l->chains[h]; e; e = e->next)
    if (strcmp(e->name, name) == 0) break;
  if (!e) {
    size_t n = strlen(name);
    if (l->count >= l->max_entries) limiter_sweep(l, now_ms);
    if (l->count >= l->max_entries) {
      if (!l->warned) log_warn("rate limits: %zu clients tracked; admitting new ones untracked", l->count);
      l->warned = 1;
      goto out;
    }
    e = calloc(1, sizeof *e + n + 1);
    if (!e) goto out; /* no memory for a bucket: admit rather than refuse */
    memcpy(e->name, name, n + 1);
    e->next = l->chains[h];
    l->chains[h] = e;
    l->count++;
  }
  if (concurrent > 0 && e->inflight >= concurrent) {
    v = HTTP_LIMIT_CONCURRENCY;
    *retry_after_ms = 1000;
    goto out;
  }
  e->rpm = rpm;
  if (rpm > 0) {
    int64_t wait = http_bucket_take(&e->bucket, rpm, now_ms);
    if (wait) {
      v = HTTP_LIMIT_RATE;
      *retry_after_ms = wait;
      goto out;
    }
  }
  e->inflight++;
  *slot = e;
out:
  pthread_mutex_unlock(&l->mu);
  return v;
}

enum http_limit_verdict http_limits_admit(struct http_limiter *l, const struct http_access_opts *a,
                                          void *app, const char *name, long rpm, long concurrent,
                                          int64_t now_ms, struct http_limit_slot **slot,
                                          int64_t *retry_after_ms) {
  static _Atomic int64_t warned_ms = -60000;
  enum http_limit_verdict v;
  int admitted = 1;
  int64_t retry = 0;
  ragd_err rc;
  if (!a || !a->rate_take || rpm <= 0)
    return http_limiter_admit(l, name, rpm, concurrent, now_ms, slot, retry_after_ms);
  v = http_limiter_admit(l, name, 0, concurrent, now_ms, slot, retry_after_ms);
  if (v != HTTP_LIMIT_OK) return v;
  rc = a->rate_take(app, name, rpm, &admitted, &retry);
  if (rc) {
    int64_t last = warned_ms;
    if (now_ms - last >= 60000 && atomic_compare_exchange_strong(&warned_ms, &last, now_ms))
      log_warn("rate limits: the shared counter failed (%s); counting in this process",
               ragd_strerror(rc));
    http_limiter_release(l, *slot);
    return http_limiter_admit(l, name, rpm, concurrent, now_ms, slot, retry_after_ms);
  }
  if (!admitted) {
    http_limiter_release(l, *slot);
    *slot = NULL;
    *retry_after_ms = retry > 0 ? retry : 1;
    return HTTP_LIMIT_RATE;
  }
  return HTTP_LIMIT_OK;
}

void http_limiter_release(struct http_limiter *l, struct http_limit_slot *slot) {
  if (!slot) return;
  pthread_mutex_lock(&l->mu);
  slot->inflight--;
  pthread_mutex_unlock(&l->mu);
}

size_t http_limiter_size(struct http_limiter *l) {
  size_t n;
  pthread_mutex_lock(&l->mu);
  n = l->count;
  pthread_mutex_unlock(&l->mu);
  return n;
}
