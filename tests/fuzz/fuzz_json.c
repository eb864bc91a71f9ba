/* libFuzzer driver: the JSON request path. A body goes through what the HTTP
 * layer checks first (UTF-8 validation, json_parse_object with its error
 * detail), then through the document validator of POST /v1/documents for a
 * single document and for a {"documents": [...]} batch, and the format name. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "text/text.h"
#include "util/json.h"

static void one_document(json_t *obj) {
  struct rag_doc_in doc;
  char *metadata = NULL;
  struct buf err;
  buf_init(&err, 1024);
  if (api_document_from_json(obj, &doc, &metadata, &err) == RAGD_OK) {
    if (!doc.text || strlen(doc.text) != doc.text_len) __builtin_trap();
    if (doc.format) (void)text_format_parse(doc.format);
  }
  free(metadata);
  buf_dispose(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  json_t *root = NULL, *docs;
  struct buf detail;
  size_t bad = 0;
  if (text_utf8_validate(s, size, &bad) != RAGD_OK) {
    if (bad >= size) __builtin_trap();
    return 0;
  }
  buf_init(&detail, 512);
  if (json_parse_object(s, size, &root, &detail) != RAGD_OK) {
    if (root) __builtin_trap();
    goto out;
  }
  docs = json_object_get(root, "documents");
  if (json_is_array(docs)) {
    size_t i;
    json_t *d;
    json_array_foreach(docs, i, d) one_document(d);
  } else {
    one_document(root);
  }
  (void)json_get_str(root, "message");
out:
  json_decref(root);
  buf_dispose(&detail);
  return 0;
}
