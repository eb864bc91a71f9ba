/* http_int.h - the access and rate-limit machinery behind server.c; private
 * to http/ (unit tests include the .c files).
 *
 * Token buckets (limits.c): one per API key and one per client address,
 * each holding at most rpm tokens and refilled continuously at rpm per
 * minute, so a client may burst up to a minute's allowance and then goes at
 * the sustained rate. Beside each bucket, a count of requests in flight
 * (streams included, until they end) against the concurrency limit.
 *
 * Key cache (access.c): what the store said about a key hash, for at most
 * cache_ms, so a revoked key is refused within that time by every server on
 * the same database, and the store sees at most one lookup per key per
 * cache_ms. */
#ifndef RAGD_HTTP_INT_H
#define RAGD_HTTP_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

/* ---- token bucket (limits.c) ---- */

struct http_bucket {
  double tokens;
  int64_t last_ms; /* when tokens was last brought up to date */
  int started;     /* 0: a new bucket, full at its first take */
};

/* Takes one token from b at now_ms, for a limit of rpm requests per minute
 * (rpm > 0). Returns 0 when a token was taken, otherwise the milliseconds
 * until one will be there (>= 1); nothing is taken then. now_ms must not go
 * backwards (a monotonic clock); a clock that does is treated as no time
 * passing. Not thread-safe: the caller locks. */
int64_t http_bucket_take(struct http_bucket *b, long rpm, int64_t now_ms);
/* Nonzero when b would be full at now_ms: forgetting it changes nothing. */
int http_bucket_full(const struct http_bucket *b, long rpm, int64_t now_ms);

/* ---- the table of buckets and in-flight counts (limits.c) ---- */

struct http_limiter;
struct http_limit_slot; /* one admitted request's hold on its entry */

/* max_entries bounds the table: past it, idle entries (full bucket, nothing
 * in flight) are dropped; when none is idle a new name is admitted without
 * being tracked (and a warning is logged once). */
ragd_err http_limiter_new(size_t max_entries, struct http_limiter **out /* OUT */);
/* Accepts NULL. Every slot must have been released. */
void http_limiter_free(struct http_limiter *l);

enum http_limit_verdict { HTTP_LIMIT_OK = 0, HTTP_LIMIT_RATE = 1, HTTP_LIMIT_CONCURRENCY = 2 };

/* Admits one request of name (a key id or a client address): takes a token
 * (rpm <= 0: no rate limit) and, when concurrent > 0, one of concurrent
 * in-flight places. On HTTP_LIMIT_OK *slot holds the place (NULL when
 * untracked; release it when the request, or its stream, ends). Otherwise
 * *retry_after_ms says when to try again. Any thread. */
enum http_limit_verdict http_limiter_admit(struct http_limiter *l, const char *name, long rpm,
                                           long concurrent, int64_t now_ms,
                                           struct http_limit_slot **slot /* OUT */,
                                           int64_t *retry_after_ms /* OUT */);
/* http_limiter_admit, with the requests per minute counted by a->rate_take
 * (shared by every server on the database) when it is set: the in-flight
 * place is taken here first, then the shared token; a refused token gives the
 * place back. When rate_take fails, this process's bucket decides (a warning
 * is logged at most once a minute). */
enum http_limit_verdict http_limits_admit(struct http_limiter *l, const struct http_access_opts *a,
                                          void *app, const char *name, long rpm, long concurrent,
                                          int64_t now_ms, struct http_limit_slot **slot /* OUT */,
                                          int64_t *retry_after_ms /* OUT */);
/* Gives back the in-flight place. Accepts NULL. Any thread. */
void http_limiter_release(struct http_limiter *l, struct http_limit_slot *slot);
/* Entries now in the table (for tests). */
size_t http_limiter_size(struct http_limiter *l);

/* ---- key cache (access.c) ---- */

struct http_key_cache;

ragd_err http_key_cache_new(const struct http_access_opts *opts, void *app,
                            struct http_key_cache **out /* OUT */);
void http_key_cache_free(struct http_key_cache *c);
/* The key a bearer token names. RAGD_OK fills *out; RAGD_ENOTFOUND: no
 * active key; another code: the store failed. The token's SHA-256 is
 * compared in constant time. Any thread; may call the store. */
ragd_err http_key_cache_lookup(struct http_key_cache *c, const char *token, size_t token_len,
                               int64_t now_ms, struct http_key *out /* OUT */);
/* The number of active keys (cached like lookups). */
ragd_err http_key_cache_count(struct http_key_cache *c, int64_t now_ms, size_t *out /* OUT */);

/* ---- small helpers (access.c) ---- */

/* Nonzero when origin (len bytes) is in the comma-separated allow-list
 * ("*" allows any origin). */
int http_cors_origin_allowed(const char *allow_list, const char *origin);

#endif
