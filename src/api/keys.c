/* keys.c - API keys: issuing one (shared by `ragd keys create` and
 * POST /v1/keys) and the admin routes POST/GET /v1/keys and
 * DELETE /v1/keys/{id}.
 *
 * A key is "rk_" and 43 base64url characters (32 bytes from OpenSSL's
 * CSPRNG). It is handed out once and never stored: the store keeps its
 * SHA-256 and a public id (its first 11 characters) to list and revoke it
 * by. */
#include <stdio.h>
#include <string.h>

#include "api/api_int.h"
#include "util/clock.h"
#include "util/crypto.h"

#define KEY_PREFIX "rk_"
#define KEY_RANDOM_BYTES 32
#define KEY_LIMIT_MAX 100000000L

ragd_err api_key_issue(const struct store *st, const char *scope, const char *name, long rpm,
                       long streams, char secret[API_KEY_SECRET_SIZE], char id[API_KEY_ID_SIZE]) {
  struct store_key k;
  char hash[65];
  ragd_err rc = RAGD_EINVAL;
  if (!st->ops->key_create) return RAGD_EUNSUPPORTED;
  /* A clash of ids (1 in 2^48 per pair of keys) makes the store refuse the
   * insert; draw again. */
  for (int attempt = 0; attempt < 3 && rc == RAGD_EINVAL; attempt++) {
    memcpy(secret, KEY_PREFIX, sizeof KEY_PREFIX - 1);
    if (crypto_random_base64url(secret + sizeof KEY_PREFIX - 1, KEY_RANDOM_BYTES) != 0)
      return RAGD_EIO;
    memcpy(id, secret, API_KEY_ID_SIZE - 1); /* "rk_" and the first random characters */
    id[API_KEY_ID_SIZE - 1] = '\0';
    crypto_sha256_hex(secret, strlen(secret), hash);
    memset(&k, 0, sizeof k);
    k.id = id;
    k.name = (char *)(name ? name : "");
    k.scope = (char *)scope;
    k.hash = hash;
    k.rpm = rpm;
    k.streams = streams;
    rc = st->ops->key_create(st->ctx, &k);
  }
  if (rc) memset(secret, 0, API_KEY_SECRET_SIZE);
  return rc;
}

/* A key as the API shows it: never its secret or its hash. */
static json_t *key_json(const struct store_key *k) {
  json_t *o = json_object();
  json_object_set_new(o, "id", json_string(k->id));
  json_object_set_new(o, "scope", json_string(k->scope));
  json_object_set_new(o, "name", json_string(k->name ? k->name : ""));
  json_object_set_new(o, "rpm", k->rpm ? json_integer(k->rpm) : json_null());
  json_object_set_new(o, "streams", k->streams ? json_integer(k->streams) : json_null());
  json_object_set_new(o, "created_at", json_integer(k->created_at));
  json_object_set_new(o, "revoked_at", k->revoked_at ? json_integer(k->revoked_at) : json_null());
  return o;
}

static int keys_supported(struct http_request *r, const struct store *st) {
  if (st->ops->key_create && st->ops->key_list && st->ops->key_revoke) return 1;
  http_reply_problem(r, "store_unavailable", "the %s store does not keep API keys", st->ops->name);
  return 0;
}

void api_keys_post(struct http_request *r, void *arg) {
  static const char *const fields[] = {"scope", "name", "rpm", "streams", NULL};
  struct api_app *app = arg;
  const struct store *st = &app->engine->store;
  json_t *body = http_request_json(r);
  const char *scope = NULL, *name = "";
  long rpm = 0, streams = 0;
  char secret[API_KEY_SECRET_SIZE], id[API_KEY_ID_SIZE];
  struct store_key shown;
  struct http_notes *notes;
  json_t *o;
  ragd_err rc;
  if (!keys_supported(r, st)) return;
  if (!api_fields_known(r, body, fields)) return;
  if (!api_field_string(r, body, "scope", 1, 16, &scope)) return;
  if (strcmp(scope, "query") != 0 && strcmp(scope, "admin") != 0) {
    http_reply_problem(r, "invalid_field", "\"scope\" must be \"query\" or \"admin\"");
    return;
  }
  if (!api_field_string(r, body, "name", 0, API_KEY_NAME_MAX, &name)) return;
  if (!api_field_int(r, body, "rpm", 1, KEY_LIMIT_MAX, &rpm)) return;
  if (!api_field_int(r, body, "streams", 1, KEY_LIMIT_MAX, &streams)) return;
  /* Without keys the route is open to whoever the server serves. The first
   * key may then be made only from this machine (loopback): on a server
   * opened up with RAGD_ALLOW_OPEN, a stranger's first key would switch
   * authentication on and lock everyone else out. */
  if (!http_request_key_id(r) && !http_request_peer_loopback(r)) {
    http_reply_problem(r, "forbidden",
                       "the first API key must be created from loopback or with `ragd keys "
                       "create --scope admin`");
    return;
  }
  rc = api_key_issue(st, scope, name, rpm, streams, secret, id);
  if (rc) {
    http_reply_problem(r, "store_unavailable", "the key cannot be stored: %s", ragd_strerror(rc));
    return;
  }
  memset(&shown, 0, sizeof shown);
  shown.id = id;
  shown.scope = (char *)scope;
  shown.name = (char *)name;
  shown.rpm = rpm;
  shown.streams = streams;
  shown.created_at = clock_wall_s();
  o = key_json(&shown);
  json_object_del(o, "revoked_at");
  json_object_set_new(o, "key", json_string(secret));
  memset(secret, 0, sizeof secret);
  /* Program-made values only: the id, never the key. */
  notes = http_request_notes(r);
  http_notes_set(notes, "key_created", id);
  http_notes_release(notes);
  http_reply_json(r, 201, o);
}

void api_keys_list(struct http_request *r, void *arg) {
  struct api_app *app = arg;
  const struct store *st = &app->engine->store;
  struct store_key_list l = {0};
  json_t *arr, *o;
  ragd_err rc;
  if (!keys_supported(r, st)) return;
  rc = st->ops->key_list(st->ctx, &l);
  if (rc) {
    http_reply_problem(r, "store_unavailable", "listing keys failed: %s", ragd_strerror(rc));
    return;
  }
  arr = json_array();
  for (size_t i = 0; i < l.count; i++) json_array_append_new(arr, key_json(&l.items[i]));
  store_key_list_dispose(&l);
  o = json_object();
  json_object_set_new(o, "keys", arr);
  http_reply_json(r, 200, o);
}

void api_keys_delete(struct http_request *r, void *arg) {
  struct api_app *app = arg;
  const struct store *st = &app->engine->store;
  const char *id = http_request_path_param(r);
  json_t *o;
  ragd_err rc;
  if (!keys_supported(r, st)) return;
  if (strlen(id) != API_KEY_ID_SIZE - 1 || strncmp(id, KEY_PREFIX, sizeof KEY_PREFIX - 1) != 0) {
    http_reply_problem(r, "key_not_found", "a key id is \"rk_\" and 8 characters (GET /v1/keys)");
    return;
  }
  rc = st->ops->key_revoke(st->ctx, id);
  if (rc == RAGD_ENOTFOUND) {
    http_reply_problem(r, "key_not_found", "no active key has the id %s", id);
    return;
  }
  if (rc) {
    http_reply_problem(r, "store_unavailable", "revoking the key failed: %s", ragd_strerror(rc));
    return;
  }
  o = json_object();
  json_object_set_new(o, "id", json_string(id));
  json_object_set_new(o, "revoked", json_true());
  http_reply_json(r, 200, o);
}
