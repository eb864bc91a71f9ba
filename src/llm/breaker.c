/* breaker.c - per-endpoint circuit breakers (see breaker_int.h).
 *
 * One mutex guards the registry and every breaker: each operation is a few
 * integer updates, far cheaper than the HTTP attempt it decides about, so a
 * finer lock would buy nothing. The window is a ring of buckets, each
 * window_ms / BREAKER_BUCKETS wide; a bucket is reused (zeroed) when the clock
 * has moved past it, so no timer is needed. */
#include "llm/breaker_int.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/llm.h"
#include "util/clock.h"

#define BREAKER_BUCKETS 10

struct breaker_bucket {
  int64_t epoch; /* now / bucket width when the bucket was last used */
  long ok, failed;
};

struct llm_breaker {
  char *key;
  char name[64];
  char endpoint[256];
  struct llm_breaker_config cfg;
  int refs;
  enum llm_breaker_status status;
  int64_t opened_ms;   /* when it last opened */
  int probe_out;       /* half-open: the probe is in flight */
  long opened_total;
  struct breaker_bucket buckets[BREAKER_BUCKETS];
  struct llm_breaker *next;
};

static pthread_mutex_t breaker_lock = PTHREAD_MUTEX_INITIALIZER;
static struct llm_breaker *breaker_list; /* guarded by breaker_lock */

static int64_t bucket_width(const struct llm_breaker *b) {
  int64_t w = b->cfg.window_ms / BREAKER_BUCKETS;
  return w > 0 ? w : 1;
}

static void window_clear(struct llm_breaker *b) { memset(b->buckets, 0, sizeof(b->buckets)); }

/* Sums the buckets still inside the window. Lock held. */
static void window_totals(const struct llm_breaker *b, int64_t now, long *total, long *failed) {
  int64_t epoch = now / bucket_width(b);
  size_t i;
  *total = *failed = 0;
  for (i = 0; i < BREAKER_BUCKETS; i++) {
    const struct breaker_bucket *k = &b->buckets[i];
    if (k->epoch > epoch - BREAKER_BUCKETS && k->epoch <= epoch) {
      *total += k->ok + k->failed;
      *failed += k->failed;
    }
  }
}

static void window_add(struct llm_breaker *b, int64_t now, int failed) {
  int64_t epoch = now / bucket_width(b);
  struct breaker_bucket *k = &b->buckets[(size_t)(epoch % BREAKER_BUCKETS)];
  if (k->epoch != epoch) {
    k->epoch = epoch;
    k->ok = k->failed = 0;
  }
  if (failed) {
    k->failed++;
  } else {
    k->ok++;
  }
}

static void breaker_open(struct llm_breaker *b, int64_t now) {
  b->status = LLM_BREAKER_OPEN;
  b->opened_ms = now;
  b->probe_out = 0;
  b->opened_total++;
  window_clear(b);
}

ragd_err llm_breaker_acquire(const char *key, const char *name, const char *endpoint,
                             const struct llm_breaker_config *cfg,
                             struct llm_breaker **out /* OUT */) {
  struct llm_breaker *b;
  ragd_err rc = RAGD_OK;

  *out = NULL;
  if (!key || !cfg) return RAGD_EINVAL;
  pthread_mutex_lock(&breaker_lock);
  for (b = breaker_list; b; b = b->next) {
    if (strcmp(b->key, key) == 0) break;
  }
  if (!b) {
    b = calloc(1, sizeof(*b));
    if (!b) {
      rc = RAGD_ENOMEM;
      goto out;
    }
    b->key = strdup(key);
    if (!b->key) {
      free(b);
      b = NULL;
      rc = RAGD_ENOMEM;
      goto out;
    }
    snprintf(b->name, sizeof(b->name), "%s", name ? name : "");
    snprintf(b->endpoint, sizeof(b->endpoint), "%s", endpoint ? endpoint : "");
    b->cfg = *cfg;
    b->status = LLM_BREAKER_CLOSED;
    b->next = breaker_list;
    breaker_list = b;
  }
  b->refs++;
  *out = b;
out:
  pthread_mutex_unlock(&breaker_lock);
  return rc;
}

void llm_breaker_retain(struct llm_breaker *b) {
  if (!b) return;
  pthread_mutex_lock(&breaker_lock);
  b->refs++;
  pthread_mutex_unlock(&breaker_lock);
}

void llm_breaker_release(struct llm_breaker *b) {
  struct llm_breaker **p;
  int last;
  if (!b) return;
  pthread_mutex_lock(&breaker_lock);
  last = --b->refs == 0;
  if (last) {
    for (p = &breaker_list; *p; p = &(*p)->next) {
      if (*p == b) {
        *p = b->next;
        break;
      }
    }
  }
  pthread_mutex_unlock(&breaker_lock);
  if (last) {
    free(b->key);
    free(b);
  }
}

int llm_breaker_allow(struct llm_breaker *b, int *probe /* OUT */, long *retry_in_ms /* OUT */) {
  int64_t now = clock_mono_ms(), left;
  int allowed = 1;

  *probe = 0;
  *retry_in_ms = 0;
  pthread_mutex_lock(&breaker_lock);
  if (b->status == LLM_BREAKER_OPEN) {
    left = b->opened_ms + b->cfg.cooldown_ms - now;
    if (left > 0) {
      *retry_in_ms = (long)left;
      allowed = 0;
      goto out;
    }
    b->status = LLM_BREAKER_HALF_OPEN;
    b->probe_out = 0;
  }
  if (b->status == LLM_BREAKER_HALF_OPEN) {
    if (b->probe_out) {
      allowed = 0;
      goto out;
    }
    b->probe_out = 1;
    *probe = 1;
  }
out:
  pthread_mutex_unlock(&breaker_lock);
  return allowed;
}

void llm_breaker_record(struct llm_breaker *b, int probe, enum llm_breaker_verdict verdict) {
  int64_t now = clock_mono_ms();
  long total, failed;

  pthread_mutex_lock(&breaker_lock);
  if (probe) {
    if (b->status == LLM_BREAKER_HALF_OPEN) {
      if (verdict == LLM_BREAKER_SUCCESS) {
        b->status = LLM_BREAKER_CLOSED;
        b->probe_out = 0;
        window_clear(b);
      } else if (verdict == LLM_BREAKER_FAILURE) {
        breaker_open(b, now);
      } else {
        b->probe_out = 0; /* let the next request probe instead */
      }
    }
    goto out;
  }
  /* Attempts that began before the breaker opened say nothing new. */
  if (b->status != LLM_BREAKER_CLOSED || verdict == LLM_BREAKER_NEUTRAL) goto out;
  window_add(b, now, verdict == LLM_BREAKER_FAILURE);
  if (verdict != LLM_BREAKER_FAILURE) goto out;
  window_totals(b, now, &total, &failed);
  if (total >= b->cfg.min_requests && failed * 100 >= b->cfg.failure_pct * total)
    breaker_open(b, now);
out:
  pthread_mutex_unlock(&breaker_lock);
}

const char *llm_breaker_endpoint(const struct llm_breaker *b) { return b->endpoint; }

int llm_breaker_is_open(struct llm_breaker *b) {
  int open;
  pthread_mutex_lock(&breaker_lock);
  open = b->status == LLM_BREAKER_OPEN && clock_mono_ms() < b->opened_ms + b->cfg.cooldown_ms;
  pthread_mutex_unlock(&breaker_lock);
  return open;
}

size_t llm_breakers_snapshot(struct llm_breaker_state *out, size_t max) {
  const struct llm_breaker *b;
  int64_t now = clock_mono_ms(), left;
  size_t n = 0;
  struct llm_breaker_state *s;

  pthread_mutex_lock(&breaker_lock);
  for (b = breaker_list; b; b = b->next, n++) {
    if (!out || n >= max) continue;
    s = &out[n];
    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", b->name);
    snprintf(s->endpoint, sizeof(s->endpoint), "%s", b->endpoint);
    s->status = b->status;
    s->opened_total = b->opened_total;
    window_totals(b, now, &s->window_requests, &s->window_failures);
    if (b->status == LLM_BREAKER_OPEN) {
      left = b->opened_ms + b->cfg.cooldown_ms - now;
      /* The cool-down is over: the next request will be the probe. */
      if (left <= 0) s->status = LLM_BREAKER_HALF_OPEN;
      s->retry_in_ms = left > 0 ? (long)left : 0;
    }
  }
  pthread_mutex_unlock(&breaker_lock);
  return n;
}

const char *llm_breaker_status_name(enum llm_breaker_status status) {
  switch (status) {
  case LLM_BREAKER_CLOSED:
    return "closed";
  case LLM_BREAKER_OPEN:
    return "open";
  case LLM_BREAKER_HALF_OPEN:
    return "half_open";
  }
  return "unknown";
}
