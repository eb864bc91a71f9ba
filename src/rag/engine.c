#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/workq.h"

#include "rag/rag_int.h"

/* Loads the model table and the BPE encoding of the chain's models and sets
 * the prompt budget: the smallest context window among them, minus the
 * answer's reserve (RAGD_LLM_MAX_TOKENS). A model missing from the table gets
 * RAGD_LLM_CONTEXT_WINDOW (8192 when unset), counted with o200k_base plus a
 * 10% margin, since its provider's tokenizer differs. */
static ragd_err setup_budget(struct rag_engine *e, const struct ragd_config *cfg, struct buf *err) {
  long window = 0;
  int encoding = -1, unknown = 0, any_llm = 0;
  ragd_err rc;
  for (size_t i = 0; i < e->gen_count; i++) {
    const struct llm *g = &e->gens[i].llm;
    struct text_model m;
    if (strcmp(g->ops->name, "extractive") == 0) continue;
    any_llm = 1;
    if (!e->models) {
      rc = text_model_table_load(cfg->models_file, &e->models, err);
      if (rc) return rc;
    }
    if (g->model && text_model_lookup(e->models, g->model, &m) == RAGD_OK) {
      if (window == 0 || m.context_window < window) window = m.context_window;
      if (encoding < 0) encoding = (int)m.encoding;
    } else {
      unknown = 1;
      log_warn("model %s is not in the model table: budgeting its prompts for %ld tokens "
               "(set RAGD_LLM_CONTEXT_WINDOW or add it with RAGD_MODELS_FILE)",
               g->model ? g->model : "(none)", cfg->llm_context_window ? cfg->llm_context_window : 8192L);
    }
  }
  if (!any_llm) return RAGD_OK;
  if (cfg->llm_context_window > 0)
    window = cfg->llm_context_window;
  else if (unknown && (window == 0 || window > 8192))
    window = 8192;
  if (encoding < 0) encoding = TEXT_BPE_O200K_BASE;
  rc = text_bpe_load((enum text_bpe_encoding)encoding, cfg->tokenizer_dir, &e->bpe, err);
  if (rc) return rc;
  e->budget.bpe = e->bpe;
  e->budget.window = window;
  e->budget.reserve = cfg->llm_max_tokens + (unknown ? window / 10 : 0);
  if (e->budget.reserve >= window) {
    if (err)
      buf_appendf(err, "RAGD_LLM_MAX_TOKENS (%ld) leaves no room for a prompt in a %ld-token window",
                  cfg->llm_max_tokens, window);
    return RAGD_ECONFIG;
  }
  return RAGD_OK;
}

ragd_err rag_store_open(const struct ragd_config *cfg, struct store *out, struct buf *err) {
  struct store_options opts;
  const char *spec = cfg->store && cfg->store[0] ? cfg->store : cfg->data_dir;
  ragd_err rc;
  store_options_default(&opts);
  opts.pool_size = (size_t)cfg->store_pool;
  opts.statement_timeout_ms = cfg->store_timeout_ms;
  opts.migrate = cfg->store_migrate != 0;
  rc = store_open_ex(spec, &opts, out);
  /* Never echo a URI: it may carry a password. */
  if (rc && err)
    buf_appendf(err, "cannot open the store %s: %s",
                strstr(spec, "://") ? "(connection URI)" : spec, ragd_strerror(rc));
  return rc;
}

ragd_err rag_engine_open(const struct ragd_config *cfg, int with_llm, struct rag_engine *out,
                         struct buf *err) {
  struct llm_config lc;
  ragd_err rc;
  memset(out, 0, sizeof *out);
  out->cfg = cfg;
  pthread_mutex_init(&out->answers_mu, NULL);
  rc = workq_new(2, &out->jobs);
  if (rc) {
    pthread_mutex_destroy(&out->answers_mu);
    return rc;
  }
  rc = rag_store_open(cfg, &out->store, err);
  if (rc) goto fail;
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
    lc.http_version = strcmp(cfg->llm_http_version, "2") == 0     ? LLM_HTTP_V2
                      : strcmp(cfg->llm_http_version, "1.1") == 0 ? LLM_HTTP_V1_1
                                                                   : LLM_HTTP_AUTO;
    lc.ca_file = cfg->llm_ca_file;
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
  rc = setup_budget(out, cfg, err);
  if (rc) goto fail;
  return RAGD_OK;
fail:
  rag_engine_close(out);
  return rc;
}

void rag_engine_close(struct rag_engine *e) {
  /* Every answer must be finished; rag_engine_shutdown ends them. */
  /* Failovers still queued run to their end (they may need the generators). */
  workq_free(e->jobs);
  e->jobs = NULL;
  pthread_mutex_destroy(&e->answers_mu);
  for (size_t i = 0; i < e->gen_count; i++) {
    llm_destroy(&e->gens[i].llm);
    free(e->gens[i].name);
  }
  free(e->gens);
  e->gens = NULL;
  text_bpe_free(e->bpe);
  e->bpe = NULL;
  e->budget.bpe = NULL;
  text_model_table_free(e->models);
  e->models = NULL;
  rag_prices_free(e->prices, e->price_count);
  e->prices = NULL;
  e->price_count = 0;
  e->gen_count = 0;
  llm_destroy(&e->extractive);
  rag_retrieval_close(e);
  store_close(&e->store);
}
