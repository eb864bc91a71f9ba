/* config.h - ragd's settings: flags override RAGD_* environment variables,
 * which override the defaults below.
 *
 * config_init fills defaults; config_load_env applies the environment and
 * refuses unknown RAGD_* variables and malformed values with a message that
 * names the variable. Flags are applied by the command line parser with
 * config_set, which validates the same way. */
#ifndef RAGD_UTIL_CONFIG_H
#define RAGD_UTIL_CONFIG_H

#include <stddef.h>

#include "util/buf.h"
#include "util/err.h"

/* One generator of the failover chain (RAGD_LLM_CHAIN). */
struct config_llm_entry {
  char *name;     /* as listed in RAGD_LLM_CHAIN, upper-cased */
  char *provider; /* RAGD_LLM_<NAME>_PROVIDER: openai | anthropic | gemini | extractive */
  char *base_url; /* RAGD_LLM_<NAME>_BASE_URL */
  char *api_key;  /* RAGD_LLM_<NAME>_API_KEY */
  char *model;    /* RAGD_LLM_<NAME>_MODEL */
};

struct ragd_config {
  char *data_dir;       /* RAGD_DATA, default "data" */
  char *store;          /* RAGD_STORE: "" (SQLite in data_dir), postgres://..., sqlite:DIR */
  long store_pool;      /* RAGD_STORE_POOL, default 4 */
  long store_timeout_ms; /* RAGD_STORE_TIMEOUT_MS, default 30000 */
  long store_migrate;   /* RAGD_STORE_MIGRATE, default 1 */
  char *listen;         /* RAGD_LISTEN, default "127.0.0.1:8080" */
  char *listen_host;    /* parsed from listen */
  int listen_port;      /* parsed from listen; 0 means any free port */
  char *llm_provider;   /* RAGD_LLM_PROVIDER: extractive | openai; openai when
                           RAGD_LLM_BASE_URL is set and this is not */
  char *llm_base_url;   /* RAGD_LLM_BASE_URL */
  char *llm_api_key;    /* RAGD_LLM_API_KEY */
  char *llm_model;      /* RAGD_LLM_MODEL, default "gpt-4o-mini" */
  long llm_connect_timeout_ms; /* RAGD_LLM_CONNECT_TIMEOUT_MS, default 10000 */
  char *llm_http_version;      /* RAGD_LLM_HTTP_VERSION: auto | 1.1 | 2 */
  char *llm_ca_file;           /* RAGD_LLM_CA_FILE: trusted CAs for https upstreams; "": system's */
  long llm_timeout_ms;         /* RAGD_LLM_TIMEOUT_MS, default 120000 */
  long llm_idle_timeout_ms;    /* RAGD_LLM_IDLE_TIMEOUT_MS, default 60000 */
  long llm_max_tokens;         /* RAGD_LLM_MAX_TOKENS, default 512 */
  long top_k;                  /* RAGD_TOP_K, default 5 (1..50) */
  long top_k_max;              /* RAGD_TOP_K_MAX, default 50 */
  long max_body_bytes;         /* RAGD_MAX_BODY_BYTES, default 4 MiB */
  long max_message_bytes;      /* RAGD_MAX_MESSAGE_BYTES, default 8192 */
  long chunk_tokens;           /* RAGD_CHUNK_TOKENS, default 256 */
  long chunk_overlap;          /* RAGD_CHUNK_OVERLAP, default 32 */
  long ingest_batch;           /* RAGD_INGEST_BATCH, default 256: documents per ragd ingest commit */
  long ping_interval_s;        /* RAGD_PING_INTERVAL_S, default 15 */
  long workers;                /* RAGD_WORKERS, default 4 */
  long max_connections;        /* RAGD_MAX_CONNECTIONS, default 16384 */
  long history_turns;          /* RAGD_HISTORY_TURNS, default 6 */
  long stream_stall_ms;        /* RAGD_STREAM_STALL_MS, default 30000: cut a stream
                                  whose client reads nothing for this long */
  long stream_queue_bytes;     /* RAGD_STREAM_QUEUE_BYTES, default 1 MiB unsent per stream */
  long resume_retention_s;     /* RAGD_RESUME_RETENTION_S, default 300 */
  long resume_max_bytes;       /* RAGD_RESUME_MAX_BYTES, default 64 MiB held for resume */
  char *log_level;             /* RAGD_LOG_LEVEL, default "info" */
  char *tokenizer_dir;         /* RAGD_TOKENIZER_DIR: folder of the BPE rank files;
                                  "" searches beside the binary (text_bpe_load) */
  char *models_file;           /* RAGD_MODELS_FILE: model table file; "" none */
  char *llm_chain_spec;        /* RAGD_LLM_CHAIN, e.g. "primary,backup"; "" none */
  char *llm_last_resort;       /* RAGD_LLM_LAST_RESORT: extractive | none */
  char *prices;                /* RAGD_PRICES: model=in/out,... USD per 1M tokens */
  long shutdown_grace_ms;      /* RAGD_SHUTDOWN_GRACE_MS, default 10000 */
  char *llm_partial_policy;    /* RAGD_LLM_PARTIAL_POLICY: error | continue */
  long llm_context_window;     /* RAGD_LLM_CONTEXT_WINDOW: 0 = from the model table */
  long llm_first_token_timeout_ms; /* RAGD_LLM_FIRST_TOKEN_TIMEOUT_MS, default 30000 */
  long llm_retries;                /* RAGD_LLM_RETRIES, default 2 */
  long llm_retry_budget_ms;        /* RAGD_LLM_RETRY_BUDGET_MS, default 10000 */
  long llm_retry_base_ms;          /* RAGD_LLM_RETRY_BASE_MS, default 250 */
  long llm_retry_max_delay_ms;     /* RAGD_LLM_RETRY_MAX_DELAY_MS, default 4000 */
  long llm_breaker_min_requests;   /* RAGD_LLM_BREAKER_MIN_REQUESTS, default 5; 0 disables */
  long llm_breaker_failure_pct;    /* RAGD_LLM_BREAKER_FAILURE_PCT, default 50 */
  long llm_breaker_window_ms;      /* RAGD_LLM_BREAKER_WINDOW_MS, default 60000 */
  long llm_breaker_cooldown_ms;    /* RAGD_LLM_BREAKER_COOLDOWN_MS, default 5000 */
  char *embedder;              /* RAGD_EMBEDDER: hash | lsa | openai; "" means openai when
                                  RAGD_EMBED_BASE_URL is set, else hash */
  long lsa_rank;               /* RAGD_LSA_RANK, default 300 */
  char *lsa_refit_fraction;    /* RAGD_LSA_REFIT_FRACTION, default "0.25" (a decimal) */
  char *embed_base_url;        /* RAGD_EMBED_BASE_URL */
  char *embed_api_key;         /* RAGD_EMBED_API_KEY */
  char *embed_model;           /* RAGD_EMBED_MODEL, default "text-embedding-3-small" */
  long embed_dimensions;       /* RAGD_EMBED_DIMENSIONS, 0: the model's own (hash 256) */
  long embed_batch_size;       /* RAGD_EMBED_BATCH_SIZE, default 64 inputs per request */
  long embed_batch_tokens;     /* RAGD_EMBED_BATCH_TOKENS, default 8000 per request */
  long embed_max_retries;      /* RAGD_EMBED_MAX_RETRIES, default 4 */
  long embed_timeout_ms;       /* RAGD_EMBED_TIMEOUT_MS, default 30000 per request */
  char *vector_index;          /* RAGD_VECTOR_INDEX: auto (default) | store | int8 | exact */
  long rrf_k;                  /* RAGD_RRF_K, default 60 */
  long rrf_depth;              /* RAGD_RRF_DEPTH, default 50: candidates per ranker */
  char *rrf_weight_keyword;    /* RAGD_RRF_WEIGHT_KEYWORD, default "1" (a decimal) */
  char *rrf_weight_vector;     /* RAGD_RRF_WEIGHT_VECTOR, default "0.3" (a decimal) */
  char *fusion;                /* RAGD_FUSION: blend (default) | rrf */
  char *blend_norm;            /* RAGD_BLEND_NORM: minmax (default) | zscore */
  char *blend_weight_vector;   /* RAGD_BLEND_WEIGHT_VECTOR (0 to 1): "" means 0.3
                                  for hash, 0.4 otherwise */
  char *vector_min_score;      /* RAGD_VECTOR_MIN_SCORE: hybrid's cosine floor for
                                  passages only the vector ranker found;
                                  "" means 0.3 for hash, 0 otherwise */
  char *hybrid_feedback;       /* RAGD_HYBRID_FEEDBACK, default "1": weight of the
                                  best keyword hits' vectors added to the query vector */
  long hybrid_feedback_docs;   /* RAGD_HYBRID_FEEDBACK_DOCS, default 3 */
  char *keyword_index;         /* RAGD_KEYWORD_INDEX: memory (default) | store */
  char *keyword_tokens;        /* RAGD_KEYWORD_TOKENS: bigrams (default) | words | both */
  char *bm25_k1;               /* RAGD_BM25_K1, default "1.2" */
  char *bm25_b;                /* RAGD_BM25_B, default "0.75" */
  char *bm25_weights;          /* RAGD_BM25_WEIGHTS, default "2,1.5,1": title, heading, text */
  char *condense;              /* RAGD_CONDENSE: rules (default) | llm | off: how a
                                  follow-up question is made standalone for retrieval */
  long condense_timeout_ms;    /* RAGD_CONDENSE_TIMEOUT_MS, default 2000: the llm rewrite's limit */
  long conversation_retention_days; /* RAGD_CONVERSATION_RETENTION_DAYS, default 0: keep
                                       forever; else conversations idle this long are deleted */
  char *pii_mask_llm;          /* RAGD_PII_MASK_LLM: on (default) | off: mask personal data
                                  in the question and history sent to an external LLM */
  char *pii_mask_embed;        /* RAGD_PII_MASK_EMBED: on (default) | off: mask personal
                                  data in text sent to an external embeddings API */
  char *injection_policy;      /* RAGD_INJECTION_POLICY: harden (default) | refuse | off */
  long allow_open;             /* RAGD_ALLOW_OPEN, default 0: 1 serves without API keys
                                  on a non-loopback address */
  char *metrics_auth;          /* RAGD_METRICS_AUTH: none | admin; "" means none when
                                  listening on loopback, else admin */
  char *cors_origins;          /* RAGD_CORS_ORIGINS: allowed origins, comma-separated,
                                  "*" any; "" CORS off */
  long rate_limit_rpm;         /* RAGD_RATE_LIMIT_RPM, default 600 per key; 0 none */
  long rate_limit_address_rpm; /* RAGD_RATE_LIMIT_ADDRESS_RPM, default 120 per client
                                  address without a key; 0 none */
  long rate_limit_streams;     /* RAGD_RATE_LIMIT_STREAMS, default 50 in flight per key;
                                  0 none */
  long request_timeout_s;      /* RAGD_REQUEST_TIMEOUT_S, default 120 */
  long max_header_bytes;       /* RAGD_MAX_HEADER_BYTES, default 32768 */
  /* The generators to try, in order, built by config_finish: the entries of
   * RAGD_LLM_CHAIN, or the single RAGD_LLM_* generator; the extractive last
   * resort is not in this list (see llm_last_resort). */
  struct config_llm_entry *llm_chain;
  size_t llm_chain_count;
};

void config_init(struct ragd_config *c);
void config_dispose(struct ragd_config *c);
/* Applies one setting by its environment variable name (e.g. "RAGD_TOP_K").
 * On error returns RAGD_ECONFIG and writes a message naming the variable into
 * err (when err is not NULL). */
ragd_err config_set(struct ragd_config *c, const char *var, const char *value,
                    struct buf *err);
/* Applies every RAGD_* variable of the environment; unknown ones are errors. */
ragd_err config_load_env(struct ragd_config *c, struct buf *err);
/* Final consistency (provider chosen from the base URL, listen parsed). */
ragd_err config_finish(struct ragd_config *c, struct buf *err);

/* Writes "VAR default description" lines for --help. */
void config_describe(struct buf *out);

#endif
