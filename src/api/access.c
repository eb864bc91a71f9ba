/* access.c - what the HTTP access check asks of the store: a key by its
 * hash, and how many keys exist (see http_access_opts). */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "util/crypto.h"

static ragd_err api_key_lookup(void *arg, const char *hash_hex, struct http_key *out) {
  struct api_app *app = arg;
  const struct store *st = &app->engine->store;
  struct store_key k;
  ragd_err rc;
  if (!st->ops->key_lookup) return RAGD_ENOTFOUND;
  rc = st->ops->key_lookup(st->ctx, hash_hex, &k);
  if (rc) return rc;
  /* The store found the row by its hash; check it once more, in constant
   * time, so no code path ever compares key material byte by byte. */
  if (!k.hash || strlen(k.hash) != 64 || !crypto_equal(k.hash, hash_hex, 64)) {
    rc = RAGD_ENOTFOUND;
    goto out;
  }
  memset(out, 0, sizeof *out);
  snprintf(out->id, sizeof out->id, "%s", k.id);
  out->admin = strcmp(k.scope, "admin") == 0;
  out->rpm = k.rpm;
  out->streams = k.streams;
out:
  store_key_dispose(&k);
  return rc;
}

static ragd_err api_key_count(void *arg, size_t *active) {
  struct api_app *app = arg;
  const struct store *st = &app->engine->store;
  *active = 0;
  if (!st->ops->key_count) return RAGD_OK; /* a store without keys: none exist */
  return st->ops->key_count(st->ctx, active);
}

/* Requests per minute on the store's shared counter (PostgreSQL: every node). */
static ragd_err api_rate_take(void *arg, const char *name, long rpm, int *admitted,
                              int64_t *retry_after_ms) {
  struct api_app *app = arg;
  const struct store *st = &app->engine->store;
  *admitted = 1;
  *retry_after_ms = 0;
  if (!st->ops->rate_take) return RAGD_EUNSUPPORTED;
  return st->ops->rate_take(st->ctx, name, rpm, admitted, retry_after_ms);
}

void api_access_opts(const struct ragd_config *cfg, const struct store *st,
                     struct http_access_opts *out) {
  memset(out, 0, sizeof *out);
  out->key_lookup = api_key_lookup;
  out->key_count = api_key_count;
  if (st && st->ops->rate_take) out->rate_take = api_rate_take;
  out->allow_open = cfg->allow_open != 0;
  if (cfg->metrics_auth[0])
    out->metrics_admin = strcmp(cfg->metrics_auth, "admin") == 0;
  else
    out->metrics_admin = !http_host_is_loopback(cfg->listen_host);
  out->rpm_key = cfg->rate_limit_rpm;
  out->rpm_address = cfg->rate_limit_address_rpm;
  out->streams_key = cfg->rate_limit_streams;
  out->cors_origins = cfg->cors_origins;
}
