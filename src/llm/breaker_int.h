/* breaker_int.h - private to llm/: one circuit breaker per upstream endpoint,
 * shared by every request to it.
 *
 * States: closed (requests flow, outcomes are counted in a sliding window) ->
 * open (when at least min_requests requests in the window ended and at least
 * failure_pct percent of them failed; every attempt fails fast) -> half-open
 * after cooldown_ms (exactly one probe attempt may go) -> closed when the probe
 * succeeds, open again (a new cool-down) when it fails.
 *
 * Breakers live in one process-wide registry keyed by a string the caller
 * builds (provider, URL and a fingerprint of the key, so two API keys for the
 * same URL do not share a rate-limit verdict). A breaker is reference counted:
 * every generator and every transfer in flight holds one reference; the last
 * release removes it. All functions are thread-safe. */
#ifndef RAGD_LLM_BREAKER_INT_H
#define RAGD_LLM_BREAKER_INT_H

#include "util/err.h"

struct llm_breaker;

struct llm_breaker_config {
  long min_requests; /* requests in the window before the ratio counts */
  long failure_pct;  /* 1..100 */
  long window_ms;
  long cooldown_ms;
};

/* What an attempt's end means to its breaker. */
enum llm_breaker_verdict {
  LLM_BREAKER_NEUTRAL = 0, /* cancelled or stopped by us: says nothing about the endpoint */
  LLM_BREAKER_SUCCESS,
  LLM_BREAKER_FAILURE
};

/* Finds the breaker for key or creates it with cfg, name and endpoint (all
 * copied; the first creator's settings win). *out holds one reference. */
ragd_err llm_breaker_acquire(const char *key, const char *name, const char *endpoint,
                             const struct llm_breaker_config *cfg,
                             struct llm_breaker **out /* OUT */);
/* Adds a reference; b may be NULL. */
void llm_breaker_retain(struct llm_breaker *b);
/* Drops a reference; the last one frees the breaker. b may be NULL. */
void llm_breaker_release(struct llm_breaker *b);

/* Asks to start an attempt now. Returns 1 when it may go: *probe is then 1
 * when the attempt is the half-open probe, whose verdict must be recorded.
 * Returns 0 when the breaker is open (or a probe is already out): the attempt
 * must fail fast; *retry_in_ms says how long until a probe may go (0 when a
 * probe is in flight). */
int llm_breaker_allow(struct llm_breaker *b, int *probe /* OUT */, long *retry_in_ms /* OUT */);
/* Records an attempt's end. probe is what llm_breaker_allow returned. */
void llm_breaker_record(struct llm_breaker *b, int probe, enum llm_breaker_verdict verdict);
/* The endpoint given at creation; valid while the caller holds a reference. */
const char *llm_breaker_endpoint(const struct llm_breaker *b);
/* Nonzero while the breaker is open (cool-down not over). */
int llm_breaker_is_open(struct llm_breaker *b);

#endif
