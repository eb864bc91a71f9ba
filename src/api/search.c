/* search.c - POST /v1/search: ranked passages without an answer, with each
 * ranker's rank and score so a support engineer can see why a passage won. */
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

/* {"rank": n, "score": s} of one ranker, or null when it did not return the
 * passage (or did not run). */
static json_t *ranker_json(size_t rank, double score) {
  json_t *o;
  if (!rank) return json_null();
  o = json_object();
  json_object_set_new(o, "rank", json_integer((json_int_t)rank));
  json_object_set_new(o, "score", json_real(score));
  return o;
}

/* "filters": a JSON object, handed on serialized (*out, free()); its keys
 * and values are checked by the store. Absent or null leaves *out NULL. */
static int field_filters(struct http_request *r, json_t *body, char **out) {
  json_t *v = json_object_get(body, "filters");
  if (!v || json_is_null(v)) return 1;
  if (!json_is_object(v)) {
    http_reply_problem(r, "invalid_field", "\"filters\" must be an object");
    return 0;
  }
  *out = json_dumps(v, JSON_COMPACT);
  if (!*out) {
    http_reply_problem(r, "internal_error", "out of memory");
    return 0;
  }
  return 1;
}

void api_search_handle(struct http_request *r, void *arg) {
  static const char *const fields[] = {"query", "top_k", "mode", "filters", NULL};
  struct api_app *app = arg;
  json_t *body = http_request_json(r);
  struct store_hit_list hits = {0};
  struct rag_search_opts so;
  const char *query = NULL, *mode_name = NULL;
  char *filters = NULL;
  long top_k = app->cfg->top_k;
  int mode = RAG_SEARCH_HYBRID;
  json_t *out, *results;
  size_t i, n;
  ragd_err rc;

  if (!api_fields_known(r, body, fields) ||
      !api_field_string(r, body, "query", 1, (size_t)app->cfg->max_message_bytes, &query) ||
      !api_field_int(r, body, "top_k", 1, app->cfg->top_k_max, &top_k) ||
      !api_field_string(r, body, "mode", 0, 16, &mode_name) ||
      !field_filters(r, body, &filters))
    return;
  n = strlen(query);
  for (i = 0; i < n && strchr(" \t\r\n", query[i]); i++) {
  }
  if (i == n) {
    http_reply_problem(r, "invalid_field", "\"query\" must not be empty");
    goto out;
  }
  if (mode_name) {
    mode = rag_search_mode_parse(mode_name);
    if (mode < 0) {
      http_reply_problem(r, "invalid_field", "\"mode\" must be hybrid, keyword or vector");
      goto out;
    }
  }
  memset(&so, 0, sizeof so);
  so.query = query;
  so.k = (size_t)top_k;
  so.mode = (enum rag_search_mode)mode;
  so.filters_json = filters;
  rc = rag_search_ex(app->engine, &so, &hits);
  if (rc == RAGD_EINVAL) {
    http_reply_problem(r, "invalid_field",
                       "\"filters\" must map metadata keys (1..64 bytes, no quotes or "
                       "backslashes) to a string, number or boolean, or a list of 1..100 of them");
    goto out;
  }
  if (rc == RAGD_EUPSTREAM) {
    http_reply_problem(r, "upstream_unavailable", "the embeddings server did not answer");
    goto out;
  }
  if (rc) {
    api_reply_store_error(r, rc, "search failed");
    goto out;
  }
  out = json_object();
  results = json_array();
  for (i = 0; i < hits.count; i++) {
    const struct store_hit *h = &hits.items[i];
    json_t *o = api_source_json(h, 0);
    json_object_set_new(o, "keyword", ranker_json(h->keyword_rank, h->keyword_score));
    json_object_set_new(o, "vector", ranker_json(h->vector_rank, h->vector_score));
    json_array_append_new(results, o);
  }
  json_object_set_new(out, "mode", json_string(rag_search_mode_name(so.mode)));
  json_object_set_new(out, "results", results);
  store_hit_list_dispose(&hits);
  http_reply_json(r, 200, out);
out:
  free(filters);
}
