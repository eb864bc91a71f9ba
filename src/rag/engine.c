#include <string.h>

#include "rag/rag.h"

ragd_err rag_engine_open(const struct ragd_config *cfg, int with_llm, struct rag_engine *out,
                         struct buf *err) {
  struct llm_config lc;
  ragd_err rc;
  memset(out, 0, sizeof *out);
  out->cfg = cfg;
  rc = store_open(cfg->data_dir, &out->store);
  if (rc) {
    if (err) buf_appendf(err, "cannot open the store in \"%s\": %s", cfg->data_dir, ragd_strerror(rc));
    goto fail;
  }
  memset(&lc, 0, sizeof lc);
  lc.provider = "extractive";
  rc = llm_create(&lc, &out->extractive);
  if (rc) {
    if (err) buf_appendf(err, "cannot create the extractive generator: %s", ragd_strerror(rc));
    goto fail;
  }
  if (!with_llm) return RAGD_OK;
  lc.provider = cfg->llm_provider;
  lc.base_url = cfg->llm_base_url;
  lc.api_key = cfg->llm_api_key;
  /* The offline generator has no model; it reports its own name. */
  lc.model = strcmp(cfg->llm_provider, "extractive") == 0 ? "" : cfg->llm_model;
  lc.connect_timeout_ms = cfg->llm_connect_timeout_ms;
  lc.total_timeout_ms = cfg->llm_timeout_ms;
  lc.idle_timeout_ms = cfg->llm_idle_timeout_ms;
  if (strcmp(cfg->llm_provider, "extractive") != 0) {
    rc = llm_runtime_init();
    if (rc) {
      if (err) buf_appendf(err, "cannot start the upstream thread: %s", ragd_strerror(rc));
      goto fail;
    }
  }
  rc = llm_create(&lc, &out->llm);
  if (rc) {
    if (err) buf_appendf(err, "cannot create the %s generator: %s", cfg->llm_provider, ragd_strerror(rc));
    goto fail;
  }
  return RAGD_OK;
fail:
  rag_engine_close(out);
  return rc;
}

void rag_engine_close(struct rag_engine *e) {
  llm_destroy(&e->llm);
  llm_destroy(&e->extractive);
  store_close(&e->store);
}
