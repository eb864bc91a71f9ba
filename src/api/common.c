#include <string.h>

#include "api/api.h"
#include "text/text.h"

#define SNIPPET_BYTES 240

int api_field_string(struct http_request *r, json_t *obj, const char *key, int required,
                     size_t max_bytes, const char **out) {
  json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v)) {
    if (!required) return 1;
    http_reply_problem(r, "missing_field", "\"%s\" is required", key);
    return 0;
  }
  if (!json_is_string(v)) {
    http_reply_problem(r, "invalid_field", "\"%s\" must be a string", key);
    return 0;
  }
  if (json_string_length(v) > max_bytes) {
    http_reply_problem(r, "invalid_field", "\"%s\" is longer than %zu bytes", key, max_bytes);
    return 0;
  }
  if (strlen(json_string_value(v)) != json_string_length(v)) {
    http_reply_problem(r, "invalid_field", "\"%s\" must not contain NUL characters", key);
    return 0;
  }
  *out = json_string_value(v);
  return 1;
}

int api_field_int(struct http_request *r, json_t *obj, const char *key, long min, long max,
                  long *out) {
  json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v)) return 1;
  if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
    http_reply_problem(r, "invalid_field", "\"%s\" must be an integer from %ld to %ld", key, min,
                       max);
    return 0;
  }
  *out = (long)json_integer_value(v);
  return 1;
}

int api_field_bool(struct http_request *r, json_t *obj, const char *key, int *out) {
  json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v)) return 1;
  if (!json_is_boolean(v)) {
    http_reply_problem(r, "invalid_field", "\"%s\" must be true or false", key);
    return 0;
  }
  *out = json_is_true(v);
  return 1;
}

int api_fields_known(struct http_request *r, json_t *obj, const char *const *allowed) {
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    int ok = 0;
    (void)v;
    for (size_t i = 0; allowed[i]; i++)
      if (strcmp(key, allowed[i]) == 0) ok = 1;
    if (!ok) {
      http_reply_problem(r, "invalid_field", "unknown field \"%.64s\"", key);
      return 0;
    }
  }
  return 1;
}

json_t *api_source_json(const struct store_hit *h, int index) {
  json_t *o = json_object();
  size_t len = strlen(h->text);
  size_t cut = text_utf8_prefix(h->text, len, SNIPPET_BYTES);
  json_t *snippet = json_stringn(h->text, cut);
  if (cut < len && snippet) {
    json_decref(snippet);
    {
      struct buf b;
      buf_init(&b, 0);
      buf_append(&b, h->text, cut);
      buf_append_str(&b, "…");
      snippet = json_string(b.data ? b.data : "");
      buf_dispose(&b);
    }
  }
  if (index > 0) json_object_set_new(o, "index", json_integer(index));
  json_object_set_new(o, "document_id", json_string(h->document_id));
  json_object_set_new(o, "chunk_id", json_string(h->chunk_id));
  json_object_set_new(o, "title", json_string(h->title));
  json_object_set_new(o, "url", json_string(h->url));
  json_object_set_new(o, "heading", json_string(h->heading_path ? h->heading_path : ""));
  json_object_set_new(o, "snippet", snippet ? snippet : json_string(""));
  json_object_set_new(o, "score", json_real(h->score));
  return o;
}

void api_reply_store_error(struct http_request *r, ragd_err rc, const char *what) {
  if (rc == RAGD_ENOTFOUND)
    http_reply_problem(r, "document_not_found", "%s", what);
  else if (rc == RAGD_ENOMEM)
    http_reply_problem(r, "internal_error", "out of memory");
  else
    http_reply_problem(r, "store_unavailable", "%s: %s", what, ragd_strerror(rc));
}
