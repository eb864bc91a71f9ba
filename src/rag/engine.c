#include <stdlib.h>
#include <string.h>

#include "rag/rag_int.h"

ragd_err rag_engine_open(const struct ragd_config *cfg, int with_llm, struct rag_engine *out,
                         struct buf *err) {
  struct llm_config lc;
  ragd_err rc;
  memset(out, 0, sizeof *out);
  out->cfg = cfg;
  pthread_mutex_init(&out->answers_mu, NULL);
  rc = store_open(cfg->data_dir, &out->store);
  if (rc) {
    if (err) buf_appendf(err, "cannot open the store in \"%s\": %s", cfg->data_dir, ragd_strerror(rc));
    goto fail;
  }
  rc = rag_retrieval_open(out, err);
  if (rc) goto fail;
  memset(&lc, 0, sizeof lc);
  lc.provider = "extractive";
  rc = llm_create(&lc, &out->extractive);
  if (rc) {
    if (err) buf_appendf(err, "cannot create the extractive generator: %s", ragd_strerror(rc));
    goto fail;
  }
  if (!with_llm) return RAGD_OK;
  rc = rag_prices_parse(cfg->prices, &out->prices, &out->price_count, err);
  if (rc) goto fail;
  out->gens = calloc(cfg->llm_chain_count + 1, sizeof *out->gens);
  if (!out->gens) {
    rc = RAGD_ENOMEM;
    goto fail;
  }
  for (size_t i = 0; i <= cfg->llm_chain_count; i++) {
    const struct config_llm_entry *ce = i < cfg->llm_chain_count ? &cfg->llm_chain[i] : NULL;
    struct rag_generator *g = &out->gens[out->gen_count];
    if (!ce && strcmp(cfg->llm_last_resort, "extractive") != 0) break;
    memset(&lc, 0, sizeof lc);
    lc.provider = ce ? ce->provider : "extractive";
    lc.base_url = ce ? ce->base_url : "";
    lc.api_key = ce ? ce->api_key : "";
    /* The offline generator has no model; it reports its own name. */
    lc.model = ce && strcmp(ce->provider, "extractive") != 0 ? ce->model : "";
    lc.connect_timeout_ms = cfg->llm_connect_timeout_ms;
    lc.total_timeout_ms = cfg->llm_timeout_ms;
    lc.idle_timeout_ms = cfg->llm_idle_timeout_ms;
    lc.name = ce ? ce->name : "LAST_RESORT";
    lc.first_token_timeout_ms = cfg->llm_first_token_timeout_ms;
    lc.retries = cfg->llm_retries;
    lc.retry_budget_ms = cfg->llm_retry_budget_ms;
    lc.retry_base_ms = cfg->llm_retry_base_ms;
    lc.retry_max_delay_ms = cfg->llm_retry_max_delay_ms;
    lc.breaker_min_requests = cfg->llm_breaker_min_requests > 0 ? cfg->llm_breaker_min_requests : -1;
    lc.breaker_failure_pct = cfg->llm_breaker_failure_pct;
    lc.breaker_window_ms = cfg->llm_breaker_window_ms;
    lc.breaker_cooldown_ms = cfg->llm_breaker_cooldown_ms;
    if (strcmp(lc.provider, "extractive") != 0) {
      rc = llm_runtime_init();
      if (rc) {
        if (err) buf_appendf(err, "cannot start the upstream thread: %s", ragd_strerror(rc));
        goto fail;
      }
    }
    g->name = strdup(ce ? ce->name : "LAST_RESORT");
    if (!g->name) {
      rc = RAGD_ENOMEM;
      goto fail;
    }
    out->gen_count++;
    rc = llm_create(&lc, &g->llm);
    if (rc) {
      if (err)
        buf_appendf(err, "cannot create the %s generator %s: %s", lc.provider, g->name,
                    ragd_strerror(rc));
      goto fail;
    }
  }
  return RAGD_OK;
fail:
  rag_engine_close(out);
  return rc;
}

void rag_engine_close(struct rag_engine *e) {
  /* Every answer must be finished; rag_engine_shutdown ends them. */
  pthread_mutex_destroy(&e->answers_mu);
  for (size_t i = 0; i < e->gen_count; i++) {
    llm_destroy(&e->gens[i].llm);
    free(e->gens[i].name);
  }
  free(e->gens);
  e->gens = NULL;
  rag_prices_free(e->prices, e->price_count);
  e->prices = NULL;
  e->price_count = 0;
  e->gen_count = 0;
  llm_destroy(&e->extractive);
  rag_retrieval_close(e);
  store_close(&e->store);
}
