/* api.h - the HTTP routes of ragd: one file per route family (chat, search,
 * documents, health). Handlers run on worker threads (see http.h). */
#ifndef RAGD_API_H
#define RAGD_API_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"
#include "rag/rag.h"
#include "util/config.h"

struct api_app {
  struct rag_engine *engine;
  const struct ragd_config *cfg;
  int64_t started_ms;
  atomic_int draining; /* shutting down: /readyz answers 503 */
};

/* The route table handed to http_server_start (app = struct api_app *). */
extern const struct http_route api_routes[];
extern const size_t api_route_count;

/* Reads one document object ({"id","title","text","format","url","metadata"})
 * into *out, borrowing strings from obj (keep obj alive while *out is used).
 * *metadata_owned receives the serialized metadata (free()). On error returns
 * RAGD_EINVAL and writes a message naming the field into err. */
ragd_err api_document_from_json(json_t *obj, struct rag_doc_in *out /* OUT */,
                                char **metadata_owned /* OUT */, struct buf *err);

/* Registers the process gauges of /metrics (memory, fds, uptime, build
 * info); call once at start-up so uptime counts from then. Idempotent. */
void api_metrics_init(void);

/* The status word of a put result: "created", "updated", "unchanged". */
const char *api_put_status_name(enum store_put_status s);

/* Fills *out from the configuration (RAGD_ALLOW_OPEN, RAGD_METRICS_AUTH,
 * RAGD_CORS_ORIGINS, RAGD_RATE_LIMIT_*), with keys looked up in the store of
 * the api_app given to the server as its app; requests per minute are counted
 * on that store's shared counter when st (the same store) has one
 * (PostgreSQL). out borrows from cfg. */
void api_access_opts(const struct ragd_config *cfg, const struct store *st,
                     struct http_access_opts *out /* OUT */);

/* ---- API keys (api/keys.c) ---- */

#define API_KEY_SECRET_SIZE 48 /* "rk_" + 43 base64url characters + NUL */
#define API_KEY_ID_SIZE 12     /* "rk_" + 8 characters + NUL */
#define API_KEY_NAME_MAX 200   /* bytes of a key's name */

/* Makes a new active key in st: scope "query" or "admin", name (NULL: none),
 * rpm and streams (0: the server's defaults). On RAGD_OK secret holds the key,
 * to be shown once and then wiped by the caller, and id its public id; only
 * the key's SHA-256 is stored. RAGD_EUNSUPPORTED when the store keeps no
 * keys, RAGD_EIO when the random source failed, or the store's error. Any
 * thread. */
ragd_err api_key_issue(const struct store *st, const char *scope, const char *name, long rpm,
                       long streams, char secret[API_KEY_SECRET_SIZE] /* OUT */,
                       char id[API_KEY_ID_SIZE] /* OUT */);

/* ---- shared by the handlers (api/common.c) ---- */

/* Field readers: on a bad value they reply with a problem and return 0.
 * A missing optional field leaves *out unchanged and returns 1. */
int api_field_string(struct http_request *r, json_t *obj, const char *key, int required,
                     size_t max_bytes, const char **out);
int api_field_int(struct http_request *r, json_t *obj, const char *key, long min, long max,
                  long *out);
int api_field_bool(struct http_request *r, json_t *obj, const char *key, int *out);
/* Replies invalid_field and returns 0 when obj has a key not in allowed
 * (NULL-terminated). */
int api_fields_known(struct http_request *r, json_t *obj, const char *const *allowed);
/* A source as the API shows it: index, document_id, chunk_id, title, url,
 * heading, snippet, score. */
json_t *api_source_json(const struct store_hit *h, int index);
/* Maps a ragd_err from the store to a problem reply. */
void api_reply_store_error(struct http_request *r, ragd_err rc, const char *what);

#endif
