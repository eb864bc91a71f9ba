/* llm.h - the generator interface: turns a prompt (and the retrieved passages)
 * into a stream of text deltas.
 *
 * A generator is an ops table plus context, made by name from configuration
 * (llm_create): "extractive" (offline, built from the passages themselves) or
 * "openai" (any OpenAI-compatible /chat/completions endpoint, streamed).
 *
 * Network generators run on one shared upstream thread (a curl multi loop)
 * started by llm_runtime_init. Their sink callbacks fire on that thread. The
 * extractive generator calls its sink synchronously, before start returns. */
#ifndef RAGD_LLM_H
#define RAGD_LLM_H

#include <stddef.h>

#include "util/err.h"

#define LLM_OPS_VERSION 1

/* A retrieved passage the answer may cite as [index]. Borrowed for the call to
 * start; a generator copies what it keeps. */
struct llm_passage {
  int index; /* 1-based citation number */
  const char *title;
  const char *url;
  const char *heading_path;
  const char *text;
};

struct llm_message {
  const char *role; /* "system" | "user" | "assistant" */
  const char *content;
};

struct llm_request {
  const struct llm_message *messages; /* the full prompt, for chat models */
  size_t message_count;
  const char *question; /* the customer's question, verbatim */
  const struct llm_passage *passages;
  size_t passage_count;
  long max_tokens;    /* 0: provider default */
  double temperature; /* < 0: provider default */
  const char *request_id; /* sent upstream as X-Request-ID; may be NULL */
};

/* Where a generator delivers its output. All callbacks receive ctx.
 * - on_delta: a piece of answer text, valid UTF-8 (a multi-byte character is
 *   never split across deltas); the bytes are borrowed for the call.
 * - on_usage: token counts when the provider reports them (may not fire).
 * - is_cancelled: polled by the generator; nonzero means the client went away
 *   and the generation must stop (the upstream transfer is aborted). After
 *   setting whatever is_cancelled reads, call llm_wakeup().
 * - on_finish: fires exactly once per successful start, last. rc is RAGD_OK
 *   with finish_reason ("stop", "length", "content_filter", ...), or an error
 *   with a stable error_code ("upstream_unavailable", "upstream_error",
 *   "upstream_timeout", "upstream_closed", "upstream_protocol", "cancelled")
 *   and a message for humans. After on_finish the sink is never touched. */
struct llm_sink {
  void *ctx;
  void (*on_delta)(void *ctx, const char *text, size_t len);
  void (*on_usage)(void *ctx, long prompt_tokens, long completion_tokens);
  int (*is_cancelled)(void *ctx);
  void (*on_finish)(void *ctx, ragd_err rc, const char *finish_reason, const char *error_code,
                    const char *error_message);
};

struct llm_config {
  const char *provider; /* "extractive" | "openai" */
  const char *base_url; /* e.g. "https://api.openai.com/v1" (no trailing /chat/completions) */
  const char *api_key;  /* may be NULL or "" for local servers */
  const char *model;
  long connect_timeout_ms; /* 0: 10000 */
  long total_timeout_ms;   /* 0: 120000 */
  long idle_timeout_ms;    /* 0: 60000; no byte from upstream for this long aborts */
};

struct llm_ops {
  int version; /* LLM_OPS_VERSION */
  const char *name;
  /* cfg is borrowed; the generator copies what it keeps. */
  ragd_err (*create)(const struct llm_config *cfg, void **ctx /* OUT */);
  void (*destroy)(void *ctx);
  /* Begins one generation. On RAGD_OK the sink receives on_finish exactly once
   * (possibly before start returns). On error nothing is delivered to the sink.
   * req is borrowed for the duration of the call only. Any thread. */
  ragd_err (*start)(void *ctx, const struct llm_request *req, const struct llm_sink *sink);
};

struct llm {
  const struct llm_ops *ops;
  void *ctx;
  char *model; /* model name reported to clients (owned) */
};

/* Starts the shared upstream thread. Call once before creating network
 * generators; idempotent. */
ragd_err llm_runtime_init(void);
/* Aborts every transfer (their sinks get on_finish with "cancelled") and joins
 * the upstream thread. */
void llm_runtime_shutdown(void);
/* Makes the upstream thread re-check is_cancelled on all transfers now. Any
 * thread, async-signal-unsafe. */
void llm_wakeup(void);

/* Creates the generator cfg->provider names. */
ragd_err llm_create(const struct llm_config *cfg, struct llm *out /* OUT */);
/* Destroys and zeroes g; accepts a zeroed struct. */
void llm_destroy(struct llm *g);

extern const struct llm_ops llm_extractive_ops;
extern const struct llm_ops llm_openai_ops;

#endif
