/* llm.c - generator registry: picks an ops table by provider name; and
 * llm_complete, one generation waited for. */
#include "llm/llm.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/clock.h"
#include "util/log.h"

/* Adding a provider is one file and one line here. */
static const struct llm_ops *const llm_providers[] = {
    &llm_extractive_ops,
    &llm_openai_ops,
    &llm_anthropic_ops,
    &llm_gemini_ops,
};

static const struct llm_ops *llm_find_ops(const char *name) {
  size_t i;
  for (i = 0; i < sizeof(llm_providers) / sizeof(llm_providers[0]); i++) {
    if (strcmp(llm_providers[i]->name, name) == 0) return llm_providers[i];
  }
  return NULL;
}

ragd_err llm_create(const struct llm_config *cfg, struct llm *out /* OUT */) {
  const struct llm_ops *ops;
  const char *provider;
  void *ctx = NULL;
  char *model = NULL;
  ragd_err rc;

  if (!out) return RAGD_EINVAL;
  memset(out, 0, sizeof(*out));
  if (!cfg) return RAGD_EINVAL;
  /* No provider configured means the offline default. */
  provider = cfg->provider && cfg->provider[0] ? cfg->provider : "extractive";
  ops = llm_find_ops(provider);
  if (!ops) {
    log_error("llm: unknown provider \"%s\"", provider);
    rc = RAGD_ECONFIG;
    goto out;
  }
  if (ops->version != LLM_OPS_VERSION) {
    log_error("llm: provider \"%s\" has ops version %d, expected %d", provider, ops->version,
              LLM_OPS_VERSION);
    rc = RAGD_ECONFIG;
    goto out;
  }
  model = strdup(cfg->model && cfg->model[0] ? cfg->model : ops->name);
  if (!model) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  rc = ops->create(cfg, &ctx);
  if (rc) goto out;
  out->ops = ops;
  out->ctx = ctx;
  out->model = model;
  model = NULL;
out:
  free(model);
  return rc;
}

void llm_destroy(struct llm *g) {
  if (!g) return;
  if (g->ops && g->ops->destroy) g->ops->destroy(g->ctx);
  free(g->model);
  memset(g, 0, sizeof(*g));
}

/* ---- one generation, waited for ----------------------------------------- */

struct llm_wait {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct buf *text;
  int finished;
  atomic_int cancelled;
  int overflow; /* the text outgrew its buffer: the generation was stopped */
  ragd_err rc;
  struct llm_complete_result *res;
};

static void wait_delta(void *ctx, const char *text, size_t len) {
  struct llm_wait *w = ctx;
  if (w->overflow) return;
  if (buf_append(w->text, text, len) != RAGD_OK) {
    w->overflow = 1;
    atomic_store(&w->cancelled, 1); /* the sink is polled; nothing more is needed */
  }
}

static void wait_usage(void *ctx, long prompt_tokens, long completion_tokens) {
  struct llm_wait *w = ctx;
  w->res->prompt_tokens = prompt_tokens;
  w->res->completion_tokens = completion_tokens;
}

static int wait_cancelled(void *ctx) {
  struct llm_wait *w = ctx;
  return atomic_load(&w->cancelled);
}

static void wait_finish(void *ctx, ragd_err rc, const char *finish_reason, const char *error_code,
                        const char *error_message) {
  struct llm_wait *w = ctx;
  (void)finish_reason;
  pthread_mutex_lock(&w->mu);
  w->rc = rc;
  snprintf(w->res->code, sizeof w->res->code, "%s", error_code ? error_code : "");
  snprintf(w->res->message, sizeof w->res->message, "%s", error_message ? error_message : "");
  w->finished = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

ragd_err llm_complete(const struct llm *g, const struct llm_request *req, long timeout_ms,
                      struct buf *text, struct llm_complete_result *res /* OUT */) {
  struct llm_wait w;
  struct llm_sink sink;
  pthread_condattr_t attr;
  struct timespec deadline;
  int timed_out = 0;
  size_t max = text ? text->max : 0;
  ragd_err rc;

  memset(res, 0, sizeof *res);
  res->prompt_tokens = res->completion_tokens = -1;
  if (!g || !g->ops || !req || !text || timeout_ms <= 0) return RAGD_EINVAL;
  memset(&w, 0, sizeof w);
  w.text = text;
  w.res = res;
  atomic_init(&w.cancelled, 0);
  pthread_mutex_init(&w.mu, NULL);
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&w.cv, &attr);
  pthread_condattr_destroy(&attr);
  memset(&sink, 0, sizeof sink);
  sink.ctx = &w;
  sink.on_delta = wait_delta;
  sink.on_usage = wait_usage;
  sink.is_cancelled = wait_cancelled;
  sink.on_finish = wait_finish;

  deadline = clock_deadline_ms(CLOCK_MONOTONIC, timeout_ms);
  rc = g->ops->start(g->ctx, req, &sink);
  if (rc) {
    snprintf(res->code, sizeof res->code, "upstream_unavailable");
    snprintf(res->message, sizeof res->message, "%s", ragd_strerror(rc));
    goto out;
  }
  pthread_mutex_lock(&w.mu);
  while (!w.finished && !timed_out)
    timed_out = pthread_cond_timedwait(&w.cv, &w.mu, &deadline) == ETIMEDOUT;
  if (!w.finished) {
    /* Too slow: stop it, and wait for on_finish, which a cancel brings
     * promptly (the sink lives on this stack). */
    atomic_store(&w.cancelled, 1);
    pthread_mutex_unlock(&w.mu);
    llm_wakeup();
    pthread_mutex_lock(&w.mu);
    while (!w.finished) pthread_cond_wait(&w.cv, &w.mu);
  }
  pthread_mutex_unlock(&w.mu);
  if (timed_out && w.rc != RAGD_OK) {
    rc = RAGD_ETIMEOUT;
    snprintf(res->code, sizeof res->code, "timeout");
    snprintf(res->message, sizeof res->message, "no complete answer within %ld ms", timeout_ms);
  } else if (w.overflow) {
    rc = RAGD_ETOOBIG;
    snprintf(res->code, sizeof res->code, "too_long");
    snprintf(res->message, sizeof res->message, "the answer outgrew %zu bytes", max);
  } else {
    rc = w.rc;
  }
out:
  pthread_cond_destroy(&w.cv);
  pthread_mutex_destroy(&w.mu);
  return rc;
}
