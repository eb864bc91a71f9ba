/* stream_int.h - private to llm/: the part every streaming network generator
 * (openai, anthropic, gemini) shares.
 *
 * A provider file builds its URL, headers and JSON body and interprets one
 * SSE event at a time; everything else lives in stream.c: the resilience
 * settings resolved from llm_config (struct llm_endpoint), the upstream
 * transfer with its retries and breaker, collecting error bodies, holding
 * back a UTF-8 character split across events, usage and finish bookkeeping,
 * and mapping how a transfer ended to the sink's stable error codes.
 *
 * One generation is one struct llm_stream, owned by its upstream transfer:
 * created by llm_stream_start, freed when the transfer completes. All
 * llm_stream_* functions below are for the provider's event handler, which
 * runs on the upstream thread. */
#ifndef RAGD_LLM_STREAM_INT_H
#define RAGD_LLM_STREAM_INT_H

#include <jansson.h>
#include <stddef.h>

#include "llm/llm.h"
#include "llm/sse_parser.h"
#include "llm/upstream_int.h"
#include "util/buf.h"

#define LLM_STREAM_LINE_MAX (1024 * 1024)      /* one SSE line / event from upstream */
#define LLM_STREAM_ERROR_BODY_MAX (64 * 1024)  /* kept of a non-2xx response body */

/* Per generator: where to send requests and how hard to try. */
struct llm_endpoint {
  char *url;
  long connect_timeout_ms;
  long total_timeout_ms;
  long idle_timeout_ms;
  long first_token_timeout_ms;
  enum llm_http_version http_version;
  char *ca_file; /* owned copy of llm_config.ca_file; NULL: the system's CAs */
  struct llm_retry_policy retry;
  struct llm_breaker *breaker; /* NULL when disabled */
  char name[64]; /* llm_config.name or the provider: the metrics' endpoint label */
  char *key_header; /* "Name: key", sent with every request; NULL without a key.
                       Wiped before it is freed. */
};

/* The common set-up of a network generator: refuses cfg without base_url or
 * model, or with a line break in base_url or api_key (RAGD_ECONFIG); the URL
 * is base_url without its trailing slashes followed by path; with an API key,
 * the key header is key_prefix followed by the key (e.g. "Authorization:
 * Bearer "); the rest as llm_endpoint_init. On error ep holds nothing. */
ragd_err llm_endpoint_create(struct llm_endpoint *ep, const struct llm_config *cfg,
                             const char *provider, const char *path, const char *key_prefix);

/* Fills ep from cfg's settings (defaults for zeros, see llm.h), takes url
 * (malloc'd; ep owns it from now on, even on error) and acquires the breaker
 * shared by every generator of the same provider, URL and key. The key is
 * only fingerprinted, never stored. */
ragd_err llm_endpoint_init(struct llm_endpoint *ep, const struct llm_config *cfg,
                           const char *provider, char *url, const char *api_key);
/* Releases what ep holds (the key header wiped first); accepts a zeroed
 * struct. */
void llm_endpoint_dispose(struct llm_endpoint *ep);

struct llm_stream;

/* Interprets one SSE event. Return RAGD_OK to go on; on a problem call
 * llm_stream_fail first, then return nonzero to stop the transfer. */
typedef ragd_err (*llm_stream_event_fn)(struct llm_stream *s, const struct llm_sse_event *ev);

struct llm_stream {
  struct llm_sink sink;
  llm_stream_event_fn on_event;
  int finished;  /* on_finish has fired; the sink is off limits */
  int ended;     /* the provider's terminal event arrived */
  long deltas;   /* on_delta calls made */
  char finish_reason[64];
  long prompt_tokens, completion_tokens; /* -1 until reported */
  struct llm_sse_parser sse;
  unsigned char utf8_tail[4]; /* incomplete trailing character held back */
  size_t utf8_tail_len;
  struct buf error_body; /* body of a non-2xx response (capped) */
  long http_status;
  /* A failure found while parsing, reported when the transfer ends. */
  ragd_err fail_rc;
  const char *fail_code;
  char *fail_message;
  char endpoint[64];       /* llm_endpoint.name, for metrics */
  const char *failure_kind; /* metrics: how the transfer failed, when more precise than the code */
};

struct llm_stream_request {
  const struct llm_endpoint *ep;
  const char *url;            /* NULL: ep->url */
  const char *const *headers; /* "Name: value"; borrowed for the call */
  size_t header_count;
  const char *body;
  size_t body_len;
  const char *request_id; /* NULL: none; for log lines, see llm_upstream_request */
};

/* Starts one generation. Same contract as llm_ops.start: on RAGD_OK the sink
 * gets on_finish exactly once; on error nothing reaches it. */
ragd_err llm_stream_start(const struct llm_stream_request *req, const struct llm_sink *sink,
                          llm_stream_event_fn on_event);

/* Delivers answer text, never splitting a UTF-8 character across deltas. */
ragd_err llm_stream_emit_text(struct llm_stream *s, const char *text, size_t len);
/* Records the first failure; later ones are consequences of it. */
void llm_stream_fail(struct llm_stream *s, ragd_err rc, const char *code, const char *message);
/* Token counts; a negative value keeps what was reported before. Delivered
 * to on_usage once, just before on_finish. */
void llm_stream_set_usage(struct llm_stream *s, long prompt_tokens, long completion_tokens);
void llm_stream_set_finish_reason(struct llm_stream *s, const char *reason);
/* The provider's terminal event: the answer finishes as soon as the event
 * handler returns, even if the server is slow to close the response. */
void llm_stream_end(struct llm_stream *s);

/* Copies a provider error message out of root, which may be an
 * {"error": {"message": ...}} object (OpenAI, Anthropic, Gemini), an array
 * holding one (Gemini), or {"error": "text"}; fallback otherwise. */
void llm_error_message(json_t *root, char *out, size_t out_len, const char *fallback);

/* The common start of a network generator: POSTs body (borrowed) to ep with
 * "Content-Type: application/json", "Accept: text/event-stream", the
 * provider's own headers (at most 4, borrowed; may be NULL when there are
 * none), ep's key header and "X-Request-ID" when request_id is set, then streams the response through on_event. Same
 * contract as llm_ops.start. RAGD_EINVAL for a missing sink callback or a
 * request id holding a line break. */
ragd_err llm_stream_post(const struct llm_endpoint *ep, const char *const *provider_headers,
                         size_t provider_header_count, const char *request_id, const char *body,
                         size_t body_len, const struct llm_sink *sink, llm_stream_event_fn on_event);

#endif
