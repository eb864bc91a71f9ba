/* search.c - POST /v1/search: ranked passages without an answer. */
#include <string.h>

#include "api/api_int.h"

void api_search_handle(struct http_request *r, void *arg) {
  static const char *const fields[] = {"query", "top_k", NULL};
  struct api_app *app = arg;
  json_t *body = http_request_json(r);
  struct store_hit_list hits = {0};
  const char *query = NULL;
  long top_k = app->cfg->top_k;
  json_t *out, *results;
  size_t i, n;
  ragd_err rc;

  if (!api_fields_known(r, body, fields) ||
      !api_field_string(r, body, "query", 1, (size_t)app->cfg->max_message_bytes, &query) ||
      !api_field_int(r, body, "top_k", 1, app->cfg->top_k_max, &top_k))
    return;
  n = strlen(query);
  for (i = 0; i < n && strchr(" \t\r\n", query[i]); i++) {
  }
  if (i == n) {
    http_reply_problem(r, "invalid_field", "\"query\" must not be empty");
    return;
  }
  rc = rag_search(app->engine, query, (size_t)top_k, &hits);
  if (rc) {
    api_reply_store_error(r, rc, "search failed");
    return;
  }
  out = json_object();
  results = json_array();
  for (i = 0; i < hits.count; i++) json_array_append_new(results, api_source_json(&hits.items[i], 0));
  json_object_set_new(out, "results", results);
  store_hit_list_dispose(&hits);
  http_reply_json(r, 200, out);
}
