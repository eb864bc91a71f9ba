/* upstream_int.h - private to llm/ (and later embed/ through its own wrapper):
 * HTTP transfers on the one shared upstream thread.
 *
 * llm_runtime_init (llm.h) starts a thread that runs a curl multi loop. Any
 * thread may hand it a transfer with llm_upstream_add; from then on every
 * callback of that transfer runs on the upstream thread, one at a time, so a
 * transfer's callbacks never race each other. curl types stay inside
 * upstream.c: callers describe the request with plain C values. */
#ifndef RAGD_LLM_UPSTREAM_INT_H
#define RAGD_LLM_UPSTREAM_INT_H

#include <stddef.h>

#include "llm/llm.h"
#include "util/err.h"

/* How a transfer ended, at the transport level. */
enum llm_upstream_outcome {
  LLM_UPSTREAM_DONE = 0,       /* response received completely (any HTTP status) */
  LLM_UPSTREAM_CONNECT_FAILED, /* resolve/connect/TLS failure, or no response at all */
  LLM_UPSTREAM_TIMEOUT,        /* connect or total timeout */
  LLM_UPSTREAM_IDLE_TIMEOUT,   /* no byte from upstream for idle_timeout_ms */
  LLM_UPSTREAM_CANCELLED,      /* is_cancelled returned nonzero */
  LLM_UPSTREAM_STOPPED,        /* on_body returned nonzero */
  LLM_UPSTREAM_FAILED,         /* any other transport error, e.g. closed mid-body */
  LLM_UPSTREAM_SHUTDOWN,       /* llm_runtime_shutdown aborted it */
  LLM_UPSTREAM_FIRST_TOKEN_TIMEOUT, /* not committed within first_token_timeout_ms */
  LLM_UPSTREAM_BREAKER_OPEN    /* the endpoint's circuit breaker is open: nothing was sent */
};

struct llm_upstream_result {
  enum llm_upstream_outcome outcome;
  int attempts;     /* attempts made (0 when the breaker refused the first) */
  long http_status; /* 0 when no response status line arrived */
  const char *message; /* human-readable transport detail; borrowed for the call */
};

/* A transfer's callbacks; all run on the upstream thread with ctx.
 * - on_body: response body bytes as they arrive (borrowed), with the HTTP
 *   status of the response. Return 0 to go on; nonzero stops the transfer at
 *   once (outcome LLM_UPSTREAM_STOPPED). May be NULL (body discarded).
 * - is_cancelled: polled whenever the loop wakes (at least every few hundred
 *   ms, and promptly after llm_wakeup). Nonzero removes the transfer from the
 *   multi handle at once, which closes its connection. May be NULL.
 * - is_committed: polled after each on_body; once it returns nonzero (the
 *   consumer has delivered output it cannot take back) the transfer is never
 *   retried and the first-token deadline no longer applies. May be NULL
 *   (then the transfer commits at its first body byte of a 2xx response).
 * - on_retry: the attempt failed in a retryable way and will be repeated
 *   after delay_ms; the consumer resets whatever it kept of that attempt
 *   (error body, parser state). attempt numbers the next attempt (2 = the
 *   first retry). May be NULL.
 * - on_complete: fires exactly once, last; ctx is not used afterwards, so
 *   on_complete may free it. Required. */
struct llm_upstream_callbacks {
  int (*on_body)(void *ctx, long http_status, const char *bytes, size_t len);
  int (*is_cancelled)(void *ctx);
  void (*on_complete)(void *ctx, const struct llm_upstream_result *res);
  int (*is_committed)(void *ctx);
  void (*on_retry)(void *ctx, int attempt, long delay_ms, const char *reason);
};

/* When a failed attempt is repeated: only before the transfer committed, on
 * a connect error (refused, unreachable, connect timeout, hung up before the
 * status line), HTTP 429 or 5xx. The delay before retry n (0-based) is
 * uniform in [0, min(max_delay_ms, base_delay_ms * 2^n)] ("full jitter"),
 * raised to the response's Retry-After (seconds or an HTTP date) when it
 * says longer. A retry that would begin more than budget_ms after the first
 * attempt, or after the total deadline, is not made. All zero: no retries. */
struct llm_retry_policy {
  long max_retries;
  long budget_ms;
  long base_delay_ms;
  long max_delay_ms;
};

struct llm_breaker;

/* A request to perform. Everything is borrowed for the call to add only; the
 * transfer keeps copies. */
struct llm_upstream_request {
  const char *url;
  const char *method;         /* NULL: "POST" when body is set, else "GET" */
  const char *const *headers; /* "Name: value" strings */
  size_t header_count;
  const char *body; /* may be NULL */
  size_t body_len;
  long connect_timeout_ms; /* 0: no limit beyond curl's default */
  long total_timeout_ms;   /* 0: no limit; covers every attempt and the delays */
  long idle_timeout_ms;    /* 0: no limit */
  long first_token_timeout_ms; /* 0: no limit; from an attempt's start until it commits */
  enum llm_http_version http_version; /* see llm.h; 0: LLM_HTTP_AUTO */
  const char *ca_file; /* NULL: the system's CAs; else a PEM file of trusted CAs */
  struct llm_retry_policy retry;
  /* NULL: none. Consulted before the first attempt (an open breaker ends the
   * transfer with LLM_UPSTREAM_BREAKER_OPEN without any network traffic; a
   * breaker that opens meanwhile stops further retries) and told the
   * request's verdict once, from its last attempt: connect errors, timeouts,
   * 429, 5xx and transport failures mid-body are failures; other responses
   * are successes; cancellations and stops by the consumer are neutral. The
   * transfer holds its own reference. */
  struct llm_breaker *breaker;
  /* NULL: none. The HTTP request this transfer serves: every log line of
   * its callbacks carries it (see log_scope_begin). */
  const char *request_id;
};

/* Queues a transfer on the upstream thread. Any thread. On RAGD_OK,
 * on_complete fires exactly once on the upstream thread, possibly before add
 * returns. On error (RAGD_EINVAL when the runtime is not running or an
 * argument is missing, RAGD_ENOMEM, RAGD_EUPSTREAM when curl refuses the
 * request) no callback fires. */
ragd_err llm_upstream_add(const struct llm_upstream_request *req,
                          const struct llm_upstream_callbacks *cb, void *ctx);

#endif
