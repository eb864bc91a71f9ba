/* llm.h - the generator interface: turns a prompt (and the retrieved passages)
 * into a stream of text deltas.
 *
 * A generator is an ops table plus context, made by name from configuration
 * (llm_create): "extractive" (offline, built from the passages themselves),
 * "openai" (any OpenAI-compatible /chat/completions endpoint, streamed),
 * "anthropic" (the Messages API, streamed) or "gemini" (Google's
 * streamGenerateContent with alt=sse).
 *
 * Network generators share one resilience policy (see struct llm_config):
 * timeouts for connect, first token, idle gaps and the whole answer; retries
 * with exponential backoff and full jitter on connect errors, HTTP 429 and
 * 5xx, honouring Retry-After, but only while no text has reached the sink;
 * and a circuit breaker per endpoint shared by every request.
 *
 * Network generators run on one shared upstream thread (a curl multi loop)
 * started by llm_runtime_init. Their sink callbacks fire on that thread. The
 * extractive generator calls its sink synchronously, before start returns. */
#ifndef RAGD_LLM_H
#define RAGD_LLM_H

#include <stddef.h>

#include "util/buf.h"
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
  /* The retrieval score that ranked the passage (BM25, cosine or fused RRF,
   * depending on the search mode): higher is better, comparable only between
   * the passages of one request; 0 when unknown. Passages come best first
   * whatever the scores say. */
  double score;
};

struct llm_message {
  const char *role; /* "system" | "user" | "assistant" */
  const char *content;
};

struct llm_request {
  const struct llm_message *messages; /* the full prompt, for chat models */
  size_t message_count;
  /* The question to answer, standalone: the customer's words, or a
   * follow-up made standalone from the conversation (RAGD_CONDENSE). */
  const char *question;
  const struct llm_passage *passages;
  size_t passage_count;
  long max_tokens;    /* 0: provider default */
  double temperature; /* < 0: provider default */
  const char *request_id; /* sent upstream as X-Request-ID; may be NULL */
  /* Leading bytes of question that are terms carried over from earlier
   * turns rather than the customer's words (a follow-up condensed by rules:
   * "ship Japan " + "and the fee?"); 0: none. Only the extractive generator
   * reads it: it weighs those terms less. */
  size_t question_context_len;
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
 *   and a message for humans. After on_finish the sink is never touched.
 *   The codes are stable: before the first delta, "upstream_unavailable" means
 *   the endpoint could not be used (connect error, 429/5xx after the retries,
 *   or an open circuit breaker: the message then says so) and a failover to
 *   another generator is sensible. After the first delta: the upstream closed
 *   the stream early -> "upstream_closed"; no byte for the idle timeout ->
 *   "upstream_timeout"; malformed data -> "upstream_protocol"; an error event
 *   from the provider -> "upstream_error". A first token that does not come
 *   within first_token_timeout_ms -> "upstream_timeout" (no delta was sent).
 * - on_retry (optional, may be NULL): a failed attempt is about to be retried
 *   after delay_ms; attempt is the number of the attempt that will follow
 *   (2 for the first retry); reason is e.g. "HTTP 429" or "connect error: ..."
 *   (borrowed for the call). Fires on the upstream thread, only before the
 *   first on_delta, never after on_finish. */
struct llm_sink {
  void *ctx;
  void (*on_delta)(void *ctx, const char *text, size_t len);
  void (*on_usage)(void *ctx, long prompt_tokens, long completion_tokens);
  int (*is_cancelled)(void *ctx);
  void (*on_retry)(void *ctx, int attempt, long delay_ms, const char *reason);
  void (*on_finish)(void *ctx, ragd_err rc, const char *finish_reason, const char *error_code,
                    const char *error_message);
};

/* The HTTP version spoken upstream (RAGD_LLM_HTTP_VERSION). Over HTTP/2 the
 * answers to one host share connections (up to 100 streams each), so ten
 * thousand answers hold about a hundred sockets instead of ten thousand.
 * AUTO: curl's default, HTTP/2 when an https server offers it by ALPN
 * (transfers then wait for a connection to the host to multiplex onto
 * rather than each opening one), HTTP/1.1 over http://. V1_1: HTTP/1.1
 * always. V2: HTTP/2 by ALPN over https, and over http:// with prior
 * knowledge (h2c): only for an upstream known to speak it. */
enum llm_http_version { LLM_HTTP_AUTO = 0, LLM_HTTP_V1_1 = 1, LLM_HTTP_V2 = 2 };

/* Zero in any numeric field means its default, so a zeroed struct plus
 * provider/base_url/model is a complete configuration. */
struct llm_config {
  const char *provider; /* "extractive" | "openai" | "anthropic" | "gemini" */
  /* openai: e.g. "https://api.openai.com/v1" (no trailing /chat/completions);
   * anthropic: e.g. "https://api.anthropic.com/v1" (we append /messages);
   * gemini: e.g. "https://generativelanguage.googleapis.com/v1beta" (we append
   * /models/{model}:streamGenerateContent?alt=sse) */
  const char *base_url;
  const char *api_key;  /* may be NULL or "" for local servers */
  const char *model;
  long connect_timeout_ms; /* 0: 10000 */
  long total_timeout_ms;   /* 0: 120000; the whole answer, retries included */
  long idle_timeout_ms;    /* 0: 60000; no byte from upstream for this long aborts */
  /* Added for resilience; append new fields below. */
  const char *name;        /* label in breaker snapshots (a chain entry name); NULL: provider */
  long first_token_timeout_ms; /* 0: 30000; < 0: none. Time from an attempt's start to
                                  its first text delta */
  long retries;            /* 0 or < 0: none (RAGD_LLM_RETRIES defaults to 2). Retries
                              after the first attempt */
  long retry_budget_ms;    /* 0: 10000. No retry starts later than this after the first attempt */
  long retry_base_ms;      /* 0: 250. Backoff before retry n is uniform in
                              [0, min(retry_max_delay_ms, retry_base_ms * 2^n)] */
  long retry_max_delay_ms; /* 0: 4000 (a longer Retry-After is still honoured) */
  long breaker_min_requests; /* 0: 5; < 0: no breaker. Requests (retries included in
                                their request) in the window before it may open */
  long breaker_failure_pct;  /* 0: 50. Opens when at least this share of them failed */
  long breaker_window_ms;    /* 0: 60000 */
  long breaker_cooldown_ms;  /* 0: 5000. Open this long before one half-open probe */
  const char *api_version;   /* anthropic-version header; NULL or "": "2023-06-01" */
  enum llm_http_version http_version; /* LLM_HTTP_AUTO (0) unless set */
  /* PEM file of the CAs trusted for https:// (curl's CAINFO) instead of the
   * system's store; NULL or "": the system's. Borrowed; the generator copies it. */
  const char *ca_file;
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

/* One tiny authenticated call to a provider, for `ragd doctor`: GET
 * {base_url}/models (trailing slashes of base_url dropped) with the
 * provider's key header when api_key is set (openai: "Authorization: Bearer",
 * anthropic: "x-api-key" and "anthropic-version", gemini: "x-goog-api-key"),
 * no retries, no breaker, at most timeout_ms in all. Needs llm_runtime_init;
 * blocks the calling thread (not the upstream thread). RAGD_OK when a
 * response arrived, whatever its status: *status is it and body (may be
 * NULL) holds up to 256 KiB of it. RAGD_EUPSTREAM (nothing answered:
 * refused, unresolvable, reset), RAGD_ETIMEOUT or RAGD_EINVAL (unknown
 * provider, a line break in base_url or api_key); detail then says what
 * happened, never the key. ca_file as llm_config.ca_file (NULL or "": the
 * system's CAs), so the probe trusts what the generators trust. */
ragd_err llm_probe(const char *provider, const char *base_url, const char *api_key,
                   const char *ca_file, long timeout_ms, long *status /* OUT */, struct buf *body,
                   struct buf *detail);

/* ---- circuit breakers -------------------------------------------------- */

enum llm_breaker_status { LLM_BREAKER_CLOSED = 0, LLM_BREAKER_OPEN, LLM_BREAKER_HALF_OPEN };

/* One breaker as seen at snapshot time. A breaker exists while a generator
 * (or a transfer in flight) for its endpoint does; generators with the same
 * provider, URL and API key share one. */
struct llm_breaker_state {
  char name[64];      /* llm_config.name, or the provider name */
  char endpoint[256]; /* the request URL (no key) */
  enum llm_breaker_status status; /* HALF_OPEN also once the cool-down is over */
  long window_requests; /* requests counted in the current window (retries are part of their request) */
  long window_failures;
  long opened_total;    /* times it opened since it was created */
  long retry_in_ms;     /* open: time left until a probe may go; else 0 */
};

/* Copies the state of up to max breakers into out (out may be NULL when max
 * is 0) and returns how many exist, which may be more than max. Any thread. */
size_t llm_breakers_snapshot(struct llm_breaker_state *out /* OUT */, size_t max);
/* "closed", "open" or "half_open". */
const char *llm_breaker_status_name(enum llm_breaker_status status);

/* Creates the generator cfg->provider names. */
ragd_err llm_create(const struct llm_config *cfg, struct llm *out /* OUT */);
/* Destroys and zeroes g; accepts a zeroed struct. */
void llm_destroy(struct llm *g);

/* What llm_complete reports besides the text. */
struct llm_complete_result {
  long prompt_tokens, completion_tokens; /* -1: not reported */
  char code[32];     /* on failure: the sink's error code ("upstream_unavailable", ...),
                        "timeout" or "too_long"; "" on success */
  char message[256]; /* on failure: for humans */
};

/* Runs one generation of g to its end and appends its text to text (capped
 * by text->max): for short internal calls whose output is not streamed to a
 * client, such as rewriting a follow-up question. Blocks the calling thread,
 * which must not be the upstream thread, for at most about timeout_ms: a
 * generation still running then is cancelled (and waited for, which the
 * cancel makes prompt). The generator's own resilience applies (its circuit
 * breaker, retries, timeouts). RAGD_OK with the whole text; RAGD_ETIMEOUT;
 * RAGD_ETOOBIG when the text outgrew text->max (the generation is stopped);
 * the generator's error otherwise (res->code and res->message say which).
 * text may hold part of an answer after an error. Any thread but the
 * upstream thread. */
ragd_err llm_complete(const struct llm *g, const struct llm_request *req, long timeout_ms,
                      struct buf *text, struct llm_complete_result *res /* OUT */);

extern const struct llm_ops llm_extractive_ops;
extern const struct llm_ops llm_openai_ops;
extern const struct llm_ops llm_anthropic_ops;
extern const struct llm_ops llm_gemini_ops;

#endif
