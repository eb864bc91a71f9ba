#include "util/config.h"

#include "util/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

enum config_kind { CONFIG_STR, CONFIG_LONG };

struct config_var {
  const char *name;
  enum config_kind kind;
  size_t offset;
  long min, max; /* for CONFIG_LONG */
  const char *def;
  const char *help;
};

#define STR_VAR(n, field, d, h) \
  {n, CONFIG_STR, offsetof(struct ragd_config, field), 0, 0, d, h}
#define LONG_VAR(n, field, lo, hi, d, h) \
  {n, CONFIG_LONG, offsetof(struct ragd_config, field), lo, hi, d, h}

static const struct config_var config_vars[] = {
    STR_VAR("RAGD_DATA", data_dir, "data", "data folder (SQLite database)"),
    STR_VAR("RAGD_STORE", store, "", "store: postgres://... (a libpq URI) or sqlite:DIR; default: SQLite in RAGD_DATA"),
    LONG_VAR("RAGD_STORE_POOL", store_pool, 1, 256, "4", "PostgreSQL connections held per process"),
    LONG_VAR("RAGD_STORE_TIMEOUT_MS", store_timeout_ms, 0, 3600000, "30000", "PostgreSQL statement timeout; 0: none"),
    LONG_VAR("RAGD_STORE_MIGRATE", store_migrate, 0, 1, "1", "1: create or upgrade the PostgreSQL schema at start-up; 0: refuse an old schema (run ragd migrate)"),
    STR_VAR("RAGD_LISTEN", listen, "127.0.0.1:8080", "HOST:PORT to serve on"),
    STR_VAR("RAGD_LLM_PROVIDER", llm_provider, "", "extractive | openai (default: openai when RAGD_LLM_BASE_URL is set)"),
    STR_VAR("RAGD_LLM_BASE_URL", llm_base_url, "", "OpenAI-compatible base URL, e.g. https://api.openai.com/v1"),
    STR_VAR("RAGD_LLM_API_KEY", llm_api_key, "", "API key sent as a Bearer token"),
    STR_VAR("RAGD_LLM_MODEL", llm_model, "gpt-4o-mini", "model name sent upstream"),
    LONG_VAR("RAGD_LLM_CONNECT_TIMEOUT_MS", llm_connect_timeout_ms, 1, 600000, "10000", "upstream connect timeout"),
    STR_VAR("RAGD_LLM_HTTP_VERSION", llm_http_version, "auto", "auto (HTTP/2 by ALPN over https, else HTTP/1.1) | 1.1 | 2 (also h2c with prior knowledge over http://, libcurl 8.0 or later): answers to one host share HTTP/2 connections"),
    STR_VAR("RAGD_LLM_CA_FILE", llm_ca_file, "", "PEM file of the certificate authorities trusted for https:// LLM upstreams, instead of the system's (e.g. a private CA or a test server's self-signed certificate); empty: the system's"),
    LONG_VAR("RAGD_LLM_TIMEOUT_MS", llm_timeout_ms, 1, 3600000, "120000", "upstream total timeout"),
    LONG_VAR("RAGD_LLM_IDLE_TIMEOUT_MS", llm_idle_timeout_ms, 1, 3600000, "60000", "upstream idle timeout between bytes"),
    LONG_VAR("RAGD_LLM_MAX_TOKENS", llm_max_tokens, 1, 1000000, "512", "answer length limit sent upstream"),
    LONG_VAR("RAGD_TOP_K", top_k, 1, 50, "5", "passages retrieved per question by default"),
    LONG_VAR("RAGD_TOP_K_MAX", top_k_max, 1, 1000, "50", "largest top_k a request may ask for"),
    LONG_VAR("RAGD_MAX_BODY_BYTES", max_body_bytes, 1024, 1073741824L, "4194304", "largest request body"),
    LONG_VAR("RAGD_MAX_MESSAGE_BYTES", max_message_bytes, 16, 1048576, "8192", "largest chat message"),
    LONG_VAR("RAGD_CHUNK_TOKENS", chunk_tokens, 32, 8192, "256", "chunk size in tokens"),
    LONG_VAR("RAGD_CHUNK_OVERLAP", chunk_overlap, 0, 1024, "32", "tokens shared by consecutive chunks"),
    LONG_VAR("RAGD_INGEST_BATCH", ingest_batch, 1, 100000, "256", "documents `ragd ingest` commits together (each still all-or-nothing); 1: one commit per document"),
    LONG_VAR("RAGD_PING_INTERVAL_S", ping_interval_s, 1, 3600, "15", "seconds between SSE heartbeat comments"),
    LONG_VAR("RAGD_WORKERS", workers, 1, 256, "4", "worker threads for retrieval and ingestion"),
    LONG_VAR("RAGD_MAX_CONNECTIONS", max_connections, 16, 1000000, "16384", "open HTTP connections allowed"),
    LONG_VAR("RAGD_HISTORY_TURNS", history_turns, 0, 100, "6", "earlier messages of a conversation sent to the model"),
    LONG_VAR("RAGD_STREAM_STALL_MS", stream_stall_ms, 100, 3600000, "30000", "cut a stream whose client reads nothing for this long"),
    LONG_VAR("RAGD_STREAM_QUEUE_BYTES", stream_queue_bytes, 4096, 268435456L, "1048576", "unsent bytes allowed per stream"),
    LONG_VAR("RAGD_RESUME_RETENTION_S", resume_retention_s, 0, 86400, "300", "seconds a finished answer stays resumable (Last-Event-ID)"),
    LONG_VAR("RAGD_RESUME_MAX_BYTES", resume_max_bytes, 0, 4294967296L, "67108864", "bytes of answers held for resume, all streams"),
    STR_VAR("RAGD_LOG_LEVEL", log_level, "info", "debug | info | warn | error | off"),
    STR_VAR("RAGD_TOKENIZER_DIR", tokenizer_dir, "", "folder of <encoding>.tiktoken BPE rank files (default: ../data/tokenizers from the binary's folder)"),
    STR_VAR("RAGD_MODELS_FILE", models_file, "", "model table additions: NAME ENCODING CONTEXT_WINDOW OUTPUT_RESERVE per line"),
    STR_VAR("RAGD_LLM_CHAIN", llm_chain_spec, "", "failover order of named generators, e.g. primary,backup; each NAME is set by RAGD_LLM_NAME_PROVIDER, _BASE_URL, _API_KEY, _MODEL"),
    LONG_VAR("RAGD_LLM_FIRST_TOKEN_TIMEOUT_MS", llm_first_token_timeout_ms, 1, 3600000, "30000", "longest wait for an answer's first token, per attempt"),
    LONG_VAR("RAGD_LLM_RETRIES", llm_retries, 0, 10, "2", "retries before the first token on connect errors, 429 and 5xx"),
    LONG_VAR("RAGD_LLM_RETRY_BUDGET_MS", llm_retry_budget_ms, 1, 600000, "10000", "no retry starts later than this after the first attempt"),
    LONG_VAR("RAGD_LLM_RETRY_BASE_MS", llm_retry_base_ms, 1, 60000, "250", "backoff base; retry n waits a random time up to base * 2^n"),
    LONG_VAR("RAGD_LLM_RETRY_MAX_DELAY_MS", llm_retry_max_delay_ms, 1, 600000, "4000", "longest backoff (a longer Retry-After is honoured)"),
    LONG_VAR("RAGD_LLM_BREAKER_MIN_REQUESTS", llm_breaker_min_requests, 0, 100000, "5", "requests in the window before a breaker may open; 0 disables breakers"),
    LONG_VAR("RAGD_LLM_BREAKER_FAILURE_PCT", llm_breaker_failure_pct, 1, 100, "50", "share of failed requests that opens a breaker"),
    LONG_VAR("RAGD_LLM_BREAKER_WINDOW_MS", llm_breaker_window_ms, 1000, 3600000, "60000", "breaker failure-rate window"),
    LONG_VAR("RAGD_LLM_BREAKER_COOLDOWN_MS", llm_breaker_cooldown_ms, 1, 3600000, "5000", "open breaker waits this long before a half-open probe"),
    LONG_VAR("RAGD_LLM_CONTEXT_WINDOW", llm_context_window, 0, 10000000, "0", "context window for prompt budgeting; 0: from the model table (8192 for unknown models)"),
    STR_VAR("RAGD_LLM_PARTIAL_POLICY", llm_partial_policy, "error", "after a failure mid-answer: error (an error event) or continue (the next generator of the chain continues the answer)"),
    LONG_VAR("RAGD_SHUTDOWN_GRACE_MS", shutdown_grace_ms, 0, 3600000, "10000", "on SIGTERM/SIGINT, how long answers in flight may finish before they are ended"),
    STR_VAR("RAGD_PRICES", prices, "", "price overrides, MODEL=INPUT/OUTPUT USD per 1M tokens, comma-separated"),
    STR_VAR("RAGD_LLM_LAST_RESORT", llm_last_resort, "extractive", "extractive | none: answer from the passages when every generator failed"),
    STR_VAR("RAGD_EMBEDDER", embedder, "", "hash | lsa | openai (default: openai when RAGD_EMBED_BASE_URL is set, else hash)"),
    LONG_VAR("RAGD_LSA_RANK", lsa_rank, 1, 8192, "300", "lsa embedder: rank of the truncated SVD (vector dimension)"),
    STR_VAR("RAGD_LSA_REFIT_FRACTION", lsa_refit_fraction, "0.25", "lsa embedder: the server refits in the background once chunks written since the last fit reach this fraction of the fitted corpus (a decimal; 0: only `ragd reindex`)"),
    STR_VAR("RAGD_EMBED_BASE_URL", embed_base_url, "", "OpenAI-compatible base URL for /embeddings"),
    STR_VAR("RAGD_EMBED_API_KEY", embed_api_key, "", "API key for the embeddings server"),
    STR_VAR("RAGD_EMBED_MODEL", embed_model, "text-embedding-3-small", "embedding model name sent upstream"),
    LONG_VAR("RAGD_EMBED_DIMENSIONS", embed_dimensions, 0, 8192, "0", "vector dimension; 0: the model's own (hash: 256)"),
    LONG_VAR("RAGD_EMBED_BATCH_SIZE", embed_batch_size, 1, 2048, "64", "inputs per embeddings request"),
    LONG_VAR("RAGD_EMBED_BATCH_TOKENS", embed_batch_tokens, 100, 1000000, "8000", "estimated tokens per embeddings request"),
    LONG_VAR("RAGD_EMBED_MAX_RETRIES", embed_max_retries, 0, 20, "4", "retries of an embeddings request after 429/5xx"),
    LONG_VAR("RAGD_EMBED_TIMEOUT_MS", embed_timeout_ms, 100, 600000, "30000", "timeout of one embeddings request"),
    STR_VAR("RAGD_VECTOR_INDEX", vector_index, "auto", "auto (the store's own vector search when it has one: pgvector on PostgreSQL; else int8) | store | int8 (in memory: quantized scan, float re-scoring) | exact (in memory: float32 scan)"),
    LONG_VAR("RAGD_RRF_K", rrf_k, 0, 10000, "60", "k of Reciprocal Rank Fusion: score = sum of weight / (k + rank)"),
    LONG_VAR("RAGD_RRF_DEPTH", rrf_depth, 1, 1000, "50", "candidates each ranker hands to fusion"),
    STR_VAR("RAGD_RRF_WEIGHT_KEYWORD", rrf_weight_keyword, "1", "weight of the BM25 ranking in fusion (a decimal >= 0)"),
    STR_VAR("RAGD_RRF_WEIGHT_VECTOR", rrf_weight_vector, "0.3", "weight of the vector ranking in fusion (a decimal >= 0)"),
    STR_VAR("RAGD_FUSION", fusion, "blend", "hybrid: how the keyword and vector rankings are fused: rrf (Reciprocal Rank Fusion, RAGD_RRF_*) | blend (normalized scores, RAGD_BLEND_*)"),
    STR_VAR("RAGD_BLEND_NORM", blend_norm, "minmax", "RAGD_FUSION=blend: each ranking's scores normalized over its candidates by minmax | zscore"),
    STR_VAR("RAGD_BLEND_WEIGHT_VECTOR", blend_weight_vector, "", "RAGD_FUSION=blend: weight of the vector ranking's normalized score, the keyword ranking's is 1 minus it (a decimal from 0 to 1; default: 0.3 for hash, 0.4 otherwise)"),
    STR_VAR("RAGD_VECTOR_MIN_SCORE", vector_min_score, "", "hybrid: cosine a passage found only by the vector ranker must reach (default: 0.3 for hash, 0 otherwise)"),
    STR_VAR("RAGD_HYBRID_FEEDBACK", hybrid_feedback, "1", "hybrid: weight of the best keyword hits' vectors added to the query vector (0: off)"),
    LONG_VAR("RAGD_HYBRID_FEEDBACK_DOCS", hybrid_feedback_docs, 0, 8, "3", "hybrid: keyword hits whose vectors steer the vector ranker"),
    STR_VAR("RAGD_KEYWORD_INDEX", keyword_index, "memory", "memory (an in-memory BM25 index scored like the store's; SQLite store only) | store (the store's own BM25 query)"),
    STR_VAR("RAGD_KEYWORD_TOKENS", keyword_tokens, "bigrams", "keyword terms of Korean/CJK text: bigrams (the store's), words (a run between spaces is one term) or both; not bigrams needs RAGD_KEYWORD_INDEX=memory"),
    STR_VAR("RAGD_BM25_K1", bm25_k1, "1.2", "BM25 k1 (term frequency saturation, 0 to 10); another value than 1.2 needs RAGD_KEYWORD_INDEX=memory"),
    STR_VAR("RAGD_BM25_B", bm25_b, "0.75", "BM25 b (length normalization, 0 to 1); another value than 0.75 needs RAGD_KEYWORD_INDEX=memory"),
    STR_VAR("RAGD_BM25_WEIGHTS", bm25_weights, "2,1.5,1", "BM25 weights of a term in the title, heading path and text, comma-separated; others than 2,1.5,1 need RAGD_KEYWORD_INDEX=memory"),
    STR_VAR("RAGD_CONDENSE", condense, "rules", "follow-up questions made standalone for retrieval: rules (terms of the previous question), llm (rewritten by the first LLM of the chain, rules when that fails) or off"),
    LONG_VAR("RAGD_CONDENSE_TIMEOUT_MS", condense_timeout_ms, 1, 60000, "2000", "RAGD_CONDENSE=llm: longest wait for the rewrite before the rules are used instead"),
    LONG_VAR("RAGD_CONVERSATION_RETENTION_DAYS", conversation_retention_days, 0, 36500, "0", "delete conversations (and their feedback) idle this many days, at start-up and hourly; 0 keeps them"),
    STR_VAR("RAGD_PII_MASK_LLM", pii_mask_llm, "on", "on | off: mask e-mail, phone, card, resident and account numbers and IP addresses in the question and history sent to an external LLM"),
    STR_VAR("RAGD_PII_MASK_EMBED", pii_mask_embed, "on", "on | off: mask the same personal data in text sent to an external embeddings API"),
    STR_VAR("RAGD_INJECTION_POLICY", injection_policy, "harden", "a message flagged as prompt injection: harden (extra system rule, answer), refuse (polite refusal, no LLM call) or off (no check)"),
    LONG_VAR("RAGD_ALLOW_OPEN", allow_open, 0, 1, "0", "1: serve without API keys even on a non-loopback address (no authentication at all)"),
    STR_VAR("RAGD_METRICS_AUTH", metrics_auth, "", "none | admin: whether /metrics needs an admin key (default: none on loopback, admin otherwise)"),
    STR_VAR("RAGD_CORS_ORIGINS", cors_origins, "", "origins allowed to call the API from a browser, comma-separated (https://help.example.com), * for any; empty: CORS off"),
    LONG_VAR("RAGD_RATE_LIMIT_RPM", rate_limit_rpm, 0, 100000000L, "600", "requests per minute per API key (a key's --rpm overrides); 0: no limit"),
    LONG_VAR("RAGD_RATE_LIMIT_ADDRESS_RPM", rate_limit_address_rpm, 0, 100000000L, "120", "requests per minute per client address without a key (loopback clients exempt); 0: no limit"),
    LONG_VAR("RAGD_RATE_LIMIT_STREAMS", rate_limit_streams, 0, 1000000, "50", "requests in flight per API key, streams until they end (a key's --streams overrides); 0: no limit"),
    LONG_VAR("RAGD_REQUEST_TIMEOUT_S", request_timeout_s, 1, 86400, "120", "longest a non-streamed answer may take before 504 request_timeout"),
    LONG_VAR("RAGD_MAX_HEADER_BYTES", max_header_bytes, 8192, 16777216, "32768", "bytes of the request line and headers; more gets 431 headers_too_large (a connection's memory is twice this)"),
};

#define CONFIG_VAR_COUNT (sizeof config_vars / sizeof config_vars[0])

static void set_error(struct buf *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct buf *err, const char *fmt, ...) {
  va_list ap;
  if (!err) return;
  buf_reset(err);
  va_start(ap, fmt);
  buf_vappendf(err, fmt, ap);
  va_end(ap);
}

static ragd_err apply(struct ragd_config *c, const struct config_var *v, const char *value,
                      struct buf *err) {
  char *p = (char *)c + v->offset;
  if (v->kind == CONFIG_STR) {
    char **slot = (char **)(void *)p;
    char *copy = strdup(value);
    if (!copy) return RAGD_ENOMEM;
    free(*slot);
    *slot = copy;
    return RAGD_OK;
  } else {
    long *slot = (long *)(void *)p;
    char *end = NULL;
    long n;
    errno = 0;
    n = strtol(value, &end, 10);
    if (errno || end == value || *end != '\0' || n < v->min || n > v->max) {
      if (err) {
        buf_reset(err);
        buf_appendf(err, "%s: expected an integer from %ld to %ld, got \"%s\"", v->name, v->min,
                    v->max, value);
      }
      return RAGD_ECONFIG;
    }
    *slot = n;
    return RAGD_OK;
  }
}

void config_init(struct ragd_config *c) {
  memset(c, 0, sizeof *c);
  for (size_t i = 0; i < CONFIG_VAR_COUNT; i++) apply(c, &config_vars[i], config_vars[i].def, NULL);
}

void config_dispose(struct ragd_config *c) {
  for (size_t i = 0; i < CONFIG_VAR_COUNT; i++) {
    if (config_vars[i].kind == CONFIG_STR) {
      char **slot = (char **)(void *)((char *)c + config_vars[i].offset);
      free(*slot);
      *slot = NULL;
    }
  }
  free(c->listen_host);
  c->listen_host = NULL;
  for (size_t i = 0; i < c->llm_chain_count; i++) {
    free(c->llm_chain[i].name);
    free(c->llm_chain[i].provider);
    free(c->llm_chain[i].base_url);
    free(c->llm_chain[i].api_key);
    free(c->llm_chain[i].model);
  }
  free(c->llm_chain);
  c->llm_chain = NULL;
  c->llm_chain_count = 0;
}

ragd_err config_set(struct ragd_config *c, const char *var, const char *value, struct buf *err) {
  for (size_t i = 0; i < CONFIG_VAR_COUNT; i++)
    if (strcmp(config_vars[i].name, var) == 0) return apply(c, &config_vars[i], value, err);
  set_error(err, "%s: unknown setting", var);
  return RAGD_ECONFIG;
}

static const char *const chain_fields[] = {"_PROVIDER", "_BASE_URL", "_API_KEY", "_MODEL"};

/* Nonzero when name is RAGD_LLM_<NAME>_<FIELD> for a NAME listed in spec. */
static int is_chain_variable(const char *name, const char *spec) {
  const char *rest;
  size_t rest_len;
  if (!spec || !spec[0] || strncmp(name, "RAGD_LLM_", 9) != 0) return 0;
  rest = name + 9;
  rest_len = strlen(rest);
  for (size_t f = 0; f < sizeof chain_fields / sizeof chain_fields[0]; f++) {
    size_t flen = strlen(chain_fields[f]);
    size_t nlen;
    const char *p = spec;
    if (rest_len <= flen || strcmp(rest + rest_len - flen, chain_fields[f]) != 0) continue;
    nlen = rest_len - flen;
    /* compare with each comma-separated entry, case-insensitively */
    while (*p) {
      const char *start, *end;
      while (*p == ' ' || *p == ',') p++;
      start = p;
      while (*p && *p != ',') p++;
      end = p;
      while (end > start && end[-1] == ' ') end--;
      if ((size_t)(end - start) == nlen && strncasecmp(start, rest, nlen) == 0) return 1;
    }
  }
  return 0;
}

ragd_err config_load_env(struct ragd_config *c, struct buf *err) {
  const char *spec = getenv("RAGD_LLM_CHAIN");
  for (char **e = environ; e && *e; e++) {
    const char *eq = strchr(*e, '=');
    char name[128];
    size_t n;
    ragd_err rc;
    if (strncmp(*e, "RAGD_", 5) != 0 || !eq) continue;
    n = (size_t)(eq - *e);
    if (n >= sizeof name) {
      set_error(err, "%.60s...: unknown RAGD_ variable", *e);
      return RAGD_ECONFIG;
    }
    memcpy(name, *e, n);
    name[n] = '\0';
    if (is_chain_variable(name, spec)) continue; /* read by config_finish */
    rc = config_set(c, name, eq + 1, err);
    if (rc) {
      if (err && strstr(err->data ? err->data : "", "unknown setting")) {
        buf_reset(err);
        buf_appendf(err,
                    "%s: unknown RAGD_ variable (see `ragd --help` for the list; unset it "
                    "or fix its name)",
                    name);
      }
      return rc;
    }
  }
  return RAGD_OK;
}

static int provider_known(const char *p) {
  return !strcmp(p, "openai") || !strcmp(p, "anthropic") || !strcmp(p, "gemini") ||
         !strcmp(p, "extractive");
}

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

/* Adds one chain entry; NULL strings become "". */
static ragd_err chain_add(struct ragd_config *c, const char *name, const char *provider,
                          const char *base_url, const char *api_key, const char *model) {
  struct config_llm_entry *p = realloc(c->llm_chain, (c->llm_chain_count + 1) * sizeof *p);
  struct config_llm_entry *e;
  if (!p) return RAGD_ENOMEM;
  /* The providers' public endpoints when none is given. */
  if (!base_url || !base_url[0]) {
    if (provider && !strcmp(provider, "anthropic")) base_url = "https://api.anthropic.com/v1";
    if (provider && !strcmp(provider, "gemini")) base_url = "https://generativelanguage.googleapis.com/v1beta";
  }
  c->llm_chain = p;
  e = &p[c->llm_chain_count];
  e->name = dup_or_empty(name);
  e->provider = dup_or_empty(provider);
  e->base_url = dup_or_empty(base_url);
  e->api_key = dup_or_empty(api_key);
  e->model = dup_or_empty(model);
  c->llm_chain_count++;
  if (!e->name || !e->provider || !e->base_url || !e->api_key || !e->model) return RAGD_ENOMEM;
  return RAGD_OK;
}

static ragd_err check_base_url(const char *var, const char *url, struct buf *err) {
  if (url[0] == '\0' || strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0)
    return RAGD_OK;
  set_error(err, "%s: expected an http:// or https:// URL, got \"%s\"", var, url);
  return RAGD_ECONFIG;
}

/* Builds c->llm_chain from RAGD_LLM_CHAIN and its RAGD_LLM_<NAME>_* variables. */
static ragd_err build_chain(struct ragd_config *c, struct buf *err) {
  const char *p = c->llm_chain_spec;
  ragd_err rc;
  while (*p) {
    char name[33], var[96];
    const char *start, *end, *provider, *base_url, *model;
    size_t n;
    while (*p == ' ' || *p == ',') p++;
    if (!*p) break;
    start = p;
    while (*p && *p != ',') p++;
    end = p;
    while (end > start && end[-1] == ' ') end--;
    n = (size_t)(end - start);
    if (n == 0 || n >= sizeof name) goto bad_name;
    for (size_t i = 0; i < n; i++) {
      char ch = start[i];
      if (ch >= 'a' && ch <= 'z') ch = (char)(ch - 'a' + 'A');
      if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))) goto bad_name;
      name[i] = ch;
    }
    name[n] = '\0';
    snprintf(var, sizeof var, "RAGD_LLM_%s_PROVIDER", name);
    provider = getenv(var);
    if (!provider || !provider_known(provider)) {
      set_error(err, "%s: expected openai, anthropic, gemini or extractive for chain entry %s, got \"%s\"",
                var, name, provider ? provider : "(unset)");
      return RAGD_ECONFIG;
    }
    snprintf(var, sizeof var, "RAGD_LLM_%s_BASE_URL", name);
    base_url = getenv(var);
    rc = check_base_url(var, base_url ? base_url : "", err);
    if (rc) return rc;
    if (!strcmp(provider, "openai") && (!base_url || !base_url[0])) {
      set_error(err, "%s: required for the openai entry %s", var, name);
      return RAGD_ECONFIG;
    }
    snprintf(var, sizeof var, "RAGD_LLM_%s_API_KEY", name);
    {
      const char *key = getenv(var);
      snprintf(var, sizeof var, "RAGD_LLM_%s_MODEL", name);
      model = getenv(var);
      rc = chain_add(c, name, provider, base_url, key, model && model[0] ? model : c->llm_model);
    }
    if (rc) return rc;
  }
  return RAGD_OK;
bad_name:
  set_error(err, "RAGD_LLM_CHAIN: names are 1-32 letters or digits separated by commas, got \"%s\"",
            c->llm_chain_spec);
  return RAGD_ECONFIG;
}

static ragd_err parse_listen(struct ragd_config *c, struct buf *err) {
  const char *colon = strrchr(c->listen, ':');
  char *end = NULL;
  long port;
  if (!colon || colon == c->listen) goto bad;
  errno = 0;
  port = strtol(colon + 1, &end, 10);
  if (errno || end == colon + 1 || *end || port < 0 || port > 65535) goto bad;
  free(c->listen_host);
  c->listen_host = strndup(c->listen, (size_t)(colon - c->listen));
  if (!c->listen_host) return RAGD_ENOMEM;
  c->listen_port = (int)port;
  return RAGD_OK;
bad:
  set_error(err, "RAGD_LISTEN: expected HOST:PORT such as 127.0.0.1:8080, got \"%s\"",
            c->listen);
  return RAGD_ECONFIG;
}

ragd_err config_finish(struct ragd_config *c, struct buf *err) {
  ragd_err rc = parse_listen(c, err);
  if (rc) return rc;
  if (c->llm_provider[0] == '\0') {
    free(c->llm_provider);
    c->llm_provider = strdup(c->llm_base_url[0] ? "openai" : "extractive");
    if (!c->llm_provider) return RAGD_ENOMEM;
  }
  if (!provider_known(c->llm_provider)) {
    set_error(err, "RAGD_LLM_PROVIDER: expected extractive, openai, anthropic or gemini, got \"%s\"",
              c->llm_provider);
    return RAGD_ECONFIG;
  }
  if (strcmp(c->llm_last_resort, "extractive") != 0 && strcmp(c->llm_last_resort, "none") != 0) {
    set_error(err, "RAGD_LLM_LAST_RESORT: expected extractive or none, got \"%s\"", c->llm_last_resort);
    return RAGD_ECONFIG;
  }
  if (strcmp(c->llm_provider, "openai") == 0) {
    if (c->llm_base_url[0] == '\0') {
      set_error(err, "RAGD_LLM_BASE_URL: required when RAGD_LLM_PROVIDER is openai");
      return RAGD_ECONFIG;
    }
    if (strncmp(c->llm_base_url, "http://", 7) != 0 && strncmp(c->llm_base_url, "https://", 8) != 0) {
      set_error(err, "RAGD_LLM_BASE_URL: expected an http:// or https:// URL, got \"%s\"",
                c->llm_base_url);
      return RAGD_ECONFIG;
    }
  }
  if (strcmp(c->llm_http_version, "auto") != 0 && strcmp(c->llm_http_version, "1.1") != 0 &&
      strcmp(c->llm_http_version, "2") != 0) {
    set_error(err, "RAGD_LLM_HTTP_VERSION: expected auto, 1.1 or 2, got \"%s\"", c->llm_http_version);
    return RAGD_ECONFIG;
  }
  if (c->llm_ca_file[0] && access(c->llm_ca_file, R_OK) != 0) {
    set_error(err, "RAGD_LLM_CA_FILE: cannot read \"%s\"", c->llm_ca_file);
    return RAGD_ECONFIG;
  }
  if (strcmp(c->condense, "rules") != 0 && strcmp(c->condense, "llm") != 0 &&
      strcmp(c->condense, "off") != 0) {
    set_error(err, "RAGD_CONDENSE: expected rules, llm or off, got \"%s\"", c->condense);
    return RAGD_ECONFIG;
  }
  if (strcmp(c->llm_partial_policy, "error") != 0 && strcmp(c->llm_partial_policy, "continue") != 0) {
    set_error(err, "RAGD_LLM_PARTIAL_POLICY: expected error or continue, got \"%s\"", c->llm_partial_policy);
    return RAGD_ECONFIG;
  }
  if (strcmp(c->pii_mask_llm, "on") != 0 && strcmp(c->pii_mask_llm, "off") != 0) {
    set_error(err, "RAGD_PII_MASK_LLM: expected on or off, got \"%s\"", c->pii_mask_llm);
    return RAGD_ECONFIG;
  }
  if (strcmp(c->pii_mask_embed, "on") != 0 && strcmp(c->pii_mask_embed, "off") != 0) {
    set_error(err, "RAGD_PII_MASK_EMBED: expected on or off, got \"%s\"", c->pii_mask_embed);
    return RAGD_ECONFIG;
  }
  if (strcmp(c->injection_policy, "harden") != 0 && strcmp(c->injection_policy, "refuse") != 0 &&
      strcmp(c->injection_policy, "off") != 0) {
    set_error(err, "RAGD_INJECTION_POLICY: expected harden, refuse or off, got \"%s\"",
              c->injection_policy);
    return RAGD_ECONFIG;
  }
  if (c->llm_chain_spec[0]) {
    rc = build_chain(c, err);
    if (rc) return rc;
  } else if (strcmp(c->llm_provider, "extractive") != 0) {
    rc = chain_add(c, "DEFAULT", c->llm_provider, c->llm_base_url, c->llm_api_key, c->llm_model);
    if (rc) return rc;
  }
  if (c->llm_chain_count == 0 && strcmp(c->llm_last_resort, "none") == 0) {
    set_error(err, "RAGD_LLM_LAST_RESORT: none leaves no generator; configure RAGD_LLM_BASE_URL or RAGD_LLM_CHAIN");
    return RAGD_ECONFIG;
  }
  if (log_level_parse(c->log_level) < 0) {
    set_error(err, "RAGD_LOG_LEVEL: expected debug, info, warn, error or off, got \"%s\"",
              c->log_level);
    return RAGD_ECONFIG;
  }
  if (c->top_k > c->top_k_max) {
    set_error(err, "RAGD_TOP_K: must not exceed RAGD_TOP_K_MAX");
    return RAGD_ECONFIG;
  }
  if (strcmp(c->metrics_auth, "") != 0 && strcmp(c->metrics_auth, "none") != 0 &&
      strcmp(c->metrics_auth, "admin") != 0) {
    set_error(err, "RAGD_METRICS_AUTH: expected none or admin, got \"%s\"", c->metrics_auth);
    return RAGD_ECONFIG;
  }
  if (c->chunk_overlap >= c->chunk_tokens) {
    set_error(err, "RAGD_CHUNK_OVERLAP: must be smaller than RAGD_CHUNK_TOKENS");
    return RAGD_ECONFIG;
  }
  return RAGD_OK;
}

void config_describe(struct buf *out) {
  for (size_t i = 0; i < CONFIG_VAR_COUNT; i++) {
    const struct config_var *v = &config_vars[i];
    buf_appendf(out, "  %-28s %s%s%s%s\n", v->name, v->help, v->def[0] ? " (default " : "",
                v->def, v->def[0] ? ")" : "");
  }
}
