/* embed.c - picking an embedder by name, and what every embedder shares. */
#include "embed/embed.h"

#include "guard/guard.h"
#include "util/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct embed_ops *const embed_backends[] = {
    &embed_hash_ops,
    &embed_lsa_ops,
    &embed_openai_ops,
};

ragd_err embed_create(const struct embed_config *cfg, struct embedder *out, struct buf *err) {
  const char *name = cfg && cfg->provider && cfg->provider[0] ? cfg->provider : "hash";
  const struct embed_ops *ops = NULL;
  void *ctx = NULL;
  ragd_err rc;
  size_t i;

  memset(out, 0, sizeof *out);
  for (i = 0; i < sizeof embed_backends / sizeof embed_backends[0]; i++)
    if (strcmp(embed_backends[i]->name, name) == 0) ops = embed_backends[i];
  if (!ops) {
    if (err) buf_appendf(err, "RAGD_EMBEDDER: expected hash, lsa or openai, got \"%s\"", name);
    return RAGD_ECONFIG;
  }
  if (ops->version != EMBED_OPS_VERSION) return RAGD_EUNSUPPORTED;
  rc = ops->create(cfg, &ctx, err);
  if (rc) return rc;
  out->ops = ops;
  out->ctx = ctx;
  out->pii_mask = ops->remote && cfg ? cfg->pii_mask : 0;
  if (strcmp(name, "hash") == 0)
    snprintf(out->model_key, sizeof out->model_key, "hash:v1");
  else if (strcmp(name, "lsa") == 0)
    snprintf(out->model_key, sizeof out->model_key, "lsa:v1:unfitted");
  else
    snprintf(out->model_key, sizeof out->model_key, "%s:%s", name,
             cfg->model && cfg->model[0] ? cfg->model : "text-embedding-3-small");
  return RAGD_OK;
}

void embed_destroy(struct embedder *e) {
  if (!e) return;
  if (e->ops && e->ctx) e->ops->destroy(e->ctx);
  memset(e, 0, sizeof *e);
}

size_t embed_dimensions(const struct embedder *e) {
  return e && e->ops ? e->ops->dimensions(e->ctx) : 0;
}

ragd_err embed_ensure_dimensions(const struct embedder *e, size_t *dim, struct buf *err) {
  struct slice probe = SLICE_LIT("dimension probe");
  float *scratch;
  ragd_err rc;
  *dim = embed_dimensions(e);
  if (*dim) return RAGD_OK;
  if (!e || !e->ops) return RAGD_EINVAL;
  scratch = malloc(EMBED_DIM_MAX * sizeof *scratch);
  if (!scratch) return RAGD_ENOMEM;
  rc = e->ops->embed(e->ctx, &probe, 1, scratch, err);
  free(scratch);
  if (rc) return rc;
  *dim = embed_dimensions(e);
  return *dim ? RAGD_OK : RAGD_EUPSTREAM;
}

/* Embeds masked copies of texts: the third party sees placeholders
 * ("[PHONE]") where the customer or the knowledge base had personal data. */
static ragd_err embed_masked(const struct embedder *e, const struct slice *texts, size_t n,
                             float *out, struct buf *err) {
  struct slice *masked = calloc(n, sizeof *masked);
  size_t i, done = 0;
  ragd_err rc = RAGD_OK;
  if (!masked) return RAGD_ENOMEM;
  for (i = 0; i < n && !rc; i++) {
    char *copy = NULL;
    size_t len = 0;
    rc = guard_mask_pii(texts[i].ptr ? texts[i].ptr : "", texts[i].ptr ? texts[i].len : 0,
                        e->pii_mask, &copy, &len, NULL);
    if (rc) break;
    masked[i].ptr = copy;
    masked[i].len = len;
    done = i + 1;
  }
  if (!rc) rc = e->ops->embed(e->ctx, masked, n, out, err);
  for (i = 0; i < done; i++) free((char *)masked[i].ptr);
  free(masked);
  return rc;
}

static struct {
  struct metric *calls, *texts, *failures;
} em;
static pthread_once_t em_once = PTHREAD_ONCE_INIT;

static void embed_metrics_create(void) {
  em.calls = metrics_counter("ragd_embedding_calls_total", "embed_texts calls, by embedder.", "embedder");
  em.texts = metrics_counter("ragd_embedding_texts_total", "Texts embedded, by embedder.", "embedder");
  em.failures = metrics_counter("ragd_embedding_failures_total",
                                "embed_texts calls that failed (after the embedder's own retries), by embedder.",
                                "embedder");
}

ragd_err embed_texts(const struct embedder *e, const struct slice *texts, size_t n, float *out,
                     struct buf *err) {
  ragd_err rc;
  if (!e || !e->ops) return RAGD_EINVAL;
  if (n == 0) return RAGD_OK;
  if (!texts || !out) return RAGD_EINVAL;
  rc = e->pii_mask ? embed_masked(e, texts, n, out, err) : e->ops->embed(e->ctx, texts, n, out, err);
  pthread_once(&em_once, embed_metrics_create);
  metrics_add(em.calls, 1, e->ops->name);
  metrics_add(em.texts, (double)n, e->ops->name);
  if (rc) metrics_add(em.failures, 1, e->ops->name);
  return rc;
}

void embed_l2_normalize(float *v, size_t dim) {
  double sum = 0;
  size_t i;
  for (i = 0; i < dim; i++) sum += (double)v[i] * v[i];
  if (sum <= 0) return;
  float inv = (float)(1.0 / sqrt(sum));
  for (i = 0; i < dim; i++) v[i] *= inv;
}
