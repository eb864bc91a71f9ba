/* web.c - GET / and GET /web/<file>: the chat page, embedded in the binary at
 * build time from web/ (cmake/embed_web.cmake), so `ragd serve` needs no file
 * beside it. */
#include <string.h>

#include "api/api_int.h"

static const struct api_web_asset *asset_find(const char *path) {
  for (size_t i = 0; i < api_web_asset_count; i++)
    if (strcmp(api_web_assets[i].path, path) == 0) return &api_web_assets[i];
  return NULL;
}

void api_web_handle(struct http_request *r, void *app) {
  const char *path = http_request_path(r);
  const struct api_web_asset *a;
  /* GET /openapi.json and GET /docs: the API description and its page. */
  if (strcmp(path, "/openapi.json") == 0) path = "/web/openapi.json";
  else if (strcmp(path, "/docs") == 0) path = "/web/docs.html";
  a = asset_find(strcmp(path, "/") == 0 ? "/web/index.html" : path);
  (void)app;
  if (!a) {
    http_reply_problem(r, "not_found", "no page %s", path);
    return;
  }
  http_reply(r, 200, a->content_type, (const char *)a->data, a->len);
}
