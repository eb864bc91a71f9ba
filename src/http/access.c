/* access.c - the key cache and the small predicates of the access check
 * (see http_int.h).
 *
 * The cache is direct-mapped: a key's slot is chosen by the first bytes of
 * its SHA-256 (which tell an attacker nothing about any key), and the whole
 * stored hash is then compared with crypto_equal, so no comparison of
 * secret-derived bytes ends early. A colliding key simply replaces the
 * slot. Unknown keys are cached too (found = 0): a client guessing keys costs
 * the store one lookup per slot per cache_ms, not one per request. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_int.h"
#include "util/crypto.h"

#define KEY_CACHE_SLOTS 256
#define KEY_CACHE_MS_DEFAULT 500

struct key_cache_slot {
  char hash[65];
  int used;
  int found;
  struct http_key key;
  int64_t fetched_ms;
};

struct http_key_cache {
  pthread_mutex_t mu;
  const struct http_access_opts *opts;
  void *app;
  int64_t ttl_ms;
  int count_known;
  size_t count;
  int64_t count_fetched_ms;
  struct key_cache_slot slots[KEY_CACHE_SLOTS];
};

ragd_err http_key_cache_new(const struct http_access_opts *opts, void *app,
                            struct http_key_cache **out) {
  struct http_key_cache *c = calloc(1, sizeof *c);
  if (!c) return RAGD_ENOMEM;
  pthread_mutex_init(&c->mu, NULL);
  c->opts = opts;
  c->app = app;
  c->ttl_ms = opts->cache_ms > 0 ? opts->cache_ms : KEY_CACHE_MS_DEFAULT;
  *out = c;
  return RAGD_OK;
}

void http_key_cache_free(struct http_key_cache *c) {
  if (!c) return;
  pthread_mutex_destroy(&c->mu);
  free(c);
}

static int hex_value(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  return ch - 'a' + 10;
}

ragd_err http_key_cache_lookup(struct http_key_cache *c, const char *token, size_t token_len,
                               int64_t now_ms, struct http_key *out) {
  char hash[65];
  struct key_cache_slot *slot;
  struct http_key fresh;
  ragd_err rc;
  crypto_sha256_hex(token, token_len, hash);
  slot = &c->slots[hex_value(hash[0]) * 16 + hex_value(hash[1])];
  pthread_mutex_lock(&c->mu);
  if (slot->used && now_ms - slot->fetched_ms < c->ttl_ms && crypto_equal(slot->hash, hash, 64)) {
    rc = slot->found ? RAGD_OK : RAGD_ENOTFOUND;
    if (slot->found) *out = slot->key;
    pthread_mutex_unlock(&c->mu);
    return rc;
  }
  pthread_mutex_unlock(&c->mu);
  /* Outside the lock: the store may be slow, and other keys need not wait.
   * Two threads may both look the same key up; both get the truth. */
  memset(&fresh, 0, sizeof fresh);
  rc = c->opts->key_lookup(c->app, hash, &fresh);
  if (rc != RAGD_OK && rc != RAGD_ENOTFOUND) return rc; /* a failure is not cached */
  pthread_mutex_lock(&c->mu);
  memcpy(slot->hash, hash, sizeof hash);
  slot->used = 1;
  slot->found = rc == RAGD_OK;
  slot->key = fresh;
  slot->fetched_ms = now_ms;
  pthread_mutex_unlock(&c->mu);
  if (rc == RAGD_OK) *out = fresh;
  return rc;
}

ragd_err http_key_cache_count(struct http_key_cache *c, int64_t now_ms, size_t *out) {
  size_t n = 0;
  ragd_err rc;
  pthread_mutex_lock(&c->mu);
  if (c->count_known && now_ms - c->count_fetched_ms < c->ttl_ms) {
    *out = c->count;
    pthread_mutex_unlock(&c->mu);
    return RAGD_OK;
  }
  pthread_mutex_unlock(&c->mu);
  rc = c->opts->key_count ? c->opts->key_count(c->app, &n) : RAGD_OK;
  if (rc) return rc;
  pthread_mutex_lock(&c->mu);
  c->count = n;
  c->count_known = 1;
  c->count_fetched_ms = now_ms;
  pthread_mutex_unlock(&c->mu);
  *out = n;
  return RAGD_OK;
}

int http_cors_origin_allowed(const char *allow_list, const char *origin) {
  size_t olen;
  const char *p = allow_list;
  if (!allow_list || !allow_list[0] || !origin || !origin[0]) return 0;
  olen = strlen(origin);
  while (*p) {
    const char *start, *end;
    while (*p == ' ' || *p == ',') p++;
    start = p;
    while (*p && *p != ',') p++;
    end = p;
    while (end > start && end[-1] == ' ') end--;
    if (end - start == 1 && *start == '*') return 1;
    /* Origins compare exactly (scheme, host and port), case-insensitively
     * as browsers serialize them in lower case anyway. */
    if ((size_t)(end - start) == olen && strncasecmp(start, origin, olen) == 0) return 1;
  }
  return 0;
}

int http_host_is_loopback(const char *host) {
  struct in_addr a4;
  struct in6_addr a6;
  if (!host) return 0;
  if (strcmp(host, "localhost") == 0) return 1;
  if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  if (inet_pton(AF_INET6, host, &a6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&a6)) return 1;
    if (IN6_IS_ADDR_V4MAPPED(&a6)) return a6.s6_addr[12] == 127;
  }
  return 0;
}
