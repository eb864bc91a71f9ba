/* llm.c - generator registry: picks an ops table by provider name. */
#include "llm/llm.h"

#include <stdlib.h>
#include <string.h>

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
