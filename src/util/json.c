#include "util/json.h"

#include <string.h>

ragd_err json_parse_object(const char *text, size_t len, json_t **out, struct buf *detail) {
  json_error_t jerr;
  json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!v) {
    if (detail) {
      buf_reset(detail);
      buf_appendf(detail, "line %d column %d (byte %d): %s", jerr.line, jerr.column,
                  jerr.position, jerr.text);
    }
    return RAGD_EJSON;
  }
  if (!json_is_object(v)) {
    json_decref(v);
    if (detail) {
      buf_reset(detail);
      buf_append_str(detail, "the body must be a JSON object");
    }
    return RAGD_EJSON;
  }
  *out = v;
  return RAGD_OK;
}

static int json_dump_cb(const char *buffer, size_t size, void *data) {
  return buf_append((struct buf *)data, buffer, size) == RAGD_OK ? 0 : -1;
}

ragd_err json_append(struct buf *out, const json_t *v) {
  if (json_dump_callback(v, json_dump_cb, out, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
    return out->data ? RAGD_EINVAL : RAGD_ENOMEM;
  return RAGD_OK;
}

const char *json_get_str(const json_t *obj, const char *key) {
  json_t *v = json_object_get(obj, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}
