/* documents.c - POST/GET/DELETE /v1/documents: ingest, read, list, delete. */
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

#define BATCH_MAX 100

const char *api_put_status_name(enum store_put_status s) {
  switch (s) {
    case STORE_PUT_CREATED:
      return "created";
    case STORE_PUT_UPDATED:
      return "updated";
    case STORE_PUT_UNCHANGED:
      return "unchanged";
  }
  return "unknown";
}

static ragd_err doc_string(json_t *obj, const char *key, int required, const char **out,
                           struct buf *err) {
  json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v)) {
    if (!required) return RAGD_OK;
    buf_appendf(err, "\"%s\" is required", key);
    return RAGD_EINVAL;
  }
  if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
    buf_appendf(err, "\"%s\" must be a string without NUL characters", key);
    return RAGD_EINVAL;
  }
  *out = json_string_value(v);
  return RAGD_OK;
}

ragd_err api_document_from_json(json_t *obj, struct rag_doc_in *out, char **metadata_owned,
                                struct buf *err) {
  static const char *const fields[] = {"id", "title", "text", "format", "url", "metadata", NULL};
  const char *key;
  json_t *v, *meta;
  ragd_err rc;
  memset(out, 0, sizeof *out);
  *metadata_owned = NULL;
  if (!json_is_object(obj)) {
    buf_append_str(err, "a document must be a JSON object");
    return RAGD_EINVAL;
  }
  json_object_foreach(obj, key, v) {
    int ok = 0;
    for (size_t i = 0; fields[i]; i++)
      if (strcmp(key, fields[i]) == 0) ok = 1;
    if (!ok) {
      buf_appendf(err, "unknown field \"%.64s\"", key);
      return RAGD_EINVAL;
    }
  }
  rc = doc_string(obj, "id", 0, &out->id, err);
  if (!rc) rc = doc_string(obj, "title", 0, &out->title, err);
  if (!rc) rc = doc_string(obj, "text", 1, &out->text, err);
  if (!rc) rc = doc_string(obj, "format", 0, &out->format, err);
  if (!rc) rc = doc_string(obj, "url", 0, &out->url, err);
  if (rc) return rc;
  out->text_len = strlen(out->text);
  meta = json_object_get(obj, "metadata");
  if (meta && !json_is_null(meta)) {
    if (!json_is_object(meta)) {
      buf_append_str(err, "\"metadata\" must be an object");
      return RAGD_EINVAL;
    }
    *metadata_owned = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    if (!*metadata_owned) return RAGD_ENOMEM;
    out->metadata_json = *metadata_owned;
  }
  return RAGD_OK;
}

void api_documents_post(struct http_request *r, void *arg) {
  struct api_app *app = arg;
  json_t *body = http_request_json(r);
  json_t *list = json_object_get(body, "documents");
  json_t *results = NULL;
  struct rag_doc_in *docs = NULL;
  char **metas = NULL;
  struct buf err;
  size_t n, i;
  ragd_err rc;

  buf_init(&err, 4096);
  if (list) {
    if (json_object_size(body) != 1) {
      http_reply_problem(r, "invalid_field", "a batch body holds only \"documents\"");
      goto out;
    }
    if (!json_is_array(list) || json_array_size(list) == 0) {
      http_reply_problem(r, "invalid_field", "\"documents\" must be a non-empty array");
      goto out;
    }
    n = json_array_size(list);
    if (n > BATCH_MAX) {
      http_reply_problem(r, "invalid_field", "\"documents\" holds %zu documents; at most %d per request",
                         n, BATCH_MAX);
      goto out;
    }
  } else {
    n = 1;
  }
  docs = calloc(n, sizeof *docs);
  metas = calloc(n, sizeof *metas);
  if (!docs || !metas) {
    http_reply_problem(r, "internal_error", "out of memory");
    goto out;
  }
  /* Validate every document before storing any. */
  for (i = 0; i < n; i++) {
    json_t *obj = list ? json_array_get(list, i) : body;
    rc = api_document_from_json(obj, &docs[i], &metas[i], &err);
    if (rc) {
      if (list)
        http_reply_problem(r, "invalid_document", "documents[%zu]: %s", i, err.data ? err.data : "");
      else
        http_reply_problem(r, "invalid_document", "%s", err.data ? err.data : "");
      goto out;
    }
  }
  results = json_array();
  for (i = 0; i < n; i++) {
    struct rag_ingest_result res;
    json_t *o;
    buf_reset(&err);
    rc = rag_ingest(app->engine, &docs[i], &res, &err);
    if (rc) {
      const char *code = (rc == RAGD_EUTF8)                                  ? "invalid_utf8"
                         : (rc == RAGD_EINVAL || rc == RAGD_EEMPTY)          ? "invalid_document"
                         : (rc == RAGD_ENOMEM)                               ? "internal_error"
                                                                             : "store_unavailable";
      /* Earlier documents of the batch are stored (each atomically); say which. */
      http_reply_problem(r, code, "%s%s%zu: %s (documents before it were stored)",
                         list ? "documents[" : "document ", "", i, err.data ? err.data : "");
      goto out;
    }
    o = json_object();
    json_object_set_new(o, "id", json_string(res.document_id));
    json_object_set_new(o, "status", json_string(api_put_status_name(res.status)));
    json_object_set_new(o, "chunks", json_integer((json_int_t)res.chunk_count));
    /* chunks that address the model (guard_check_document) */
    json_object_set_new(o, "flagged_chunks", json_integer((json_int_t)res.flagged_chunks));
    json_object_set_new(o, "flagged_excluded", json_boolean(res.flagged_excluded));
    json_array_append_new(results, o);
    free(res.document_id);
  }
  {
    json_t *o = json_object();
    json_object_set_new(o, "documents", results);
    results = NULL;
    http_reply_json(r, 200, o);
  }
out:
  json_decref(results);
  if (metas)
    for (i = 0; i < n; i++) free(metas[i]);
  free(metas);
  free(docs);
  buf_dispose(&err);
}

static json_t *doc_json(const struct store_doc *d, int with_text) {
  json_t *o = json_object();
  json_t *meta = json_loads(d->metadata_json ? d->metadata_json : "{}", 0, NULL);
  json_object_set_new(o, "id", json_string(d->external_id));
  json_object_set_new(o, "title", json_string(d->title ? d->title : ""));
  json_object_set_new(o, "url", json_string(d->url ? d->url : ""));
  json_object_set_new(o, "format", json_string(d->format ? d->format : "markdown"));
  json_object_set_new(o, "metadata", meta ? meta : json_object());
  json_object_set_new(o, "content_hash", json_string(d->content_hash ? d->content_hash : ""));
  json_object_set_new(o, "chunks", json_integer((json_int_t)d->chunk_count));
  json_object_set_new(o, "created_at", json_integer(d->created_at));
  json_object_set_new(o, "updated_at", json_integer(d->updated_at));
  if (with_text && d->content)
    json_object_set_new(o, "text", json_stringn(d->content, d->content_len));
  return o;
}

void api_documents_get(struct http_request *r, void *arg) {
  struct api_app *app = arg;
  struct store *st = &app->engine->store;
  struct store_doc d;
  const char *id = http_request_path_param(r);
  ragd_err rc;
  memset(&d, 0, sizeof d);
  rc = st->ops->get_document(st->ctx, id, &d);
  if (rc) {
    api_reply_store_error(r, rc, "no document with this id");
    return;
  }
  http_reply_json(r, 200, doc_json(&d, 1));
  store_doc_dispose(&d);
}

void api_documents_delete(struct http_request *r, void *arg) {
  struct api_app *app = arg;
  struct store *st = &app->engine->store;
  const char *id = http_request_path_param(r);
  json_t *o;
  ragd_err rc = st->ops->delete_document(st->ctx, id);
  if (rc) {
    api_reply_store_error(r, rc, "no document with this id");
    return;
  }
  o = json_object();
  json_object_set_new(o, "id", json_string(id));
  json_object_set_new(o, "deleted", json_true());
  http_reply_json(r, 200, o);
}

void api_documents_list(struct http_request *r, void *arg) {
  struct api_app *app = arg;
  struct store *st = &app->engine->store;
  struct store_doc_list list = {0};
  const char *limit_s = http_request_query(r, "limit");
  const char *cursor = http_request_query(r, "cursor");
  long limit = 50;
  json_t *o, *arr;
  ragd_err rc;
  if (limit_s) {
    char *end = NULL;
    limit = strtol(limit_s, &end, 10);
    if (!*limit_s || *end || limit < 1 || limit > 1000) {
      http_reply_problem(r, "invalid_query", "limit must be an integer from 1 to 1000");
      return;
    }
  }
  if (cursor && !cursor[0]) cursor = NULL;
  rc = st->ops->list_documents(st->ctx, cursor, (size_t)limit, &list);
  if (rc == RAGD_EINVAL) {
    http_reply_problem(r, "invalid_query", "cursor is not one this server gave out");
    return;
  }
  if (rc) {
    api_reply_store_error(r, rc, "listing failed");
    return;
  }
  o = json_object();
  arr = json_array();
  for (size_t i = 0; i < list.count; i++) json_array_append_new(arr, doc_json(&list.items[i], 0));
  json_object_set_new(o, "documents", arr);
  json_object_set_new(o, "next_cursor", list.next_cursor ? json_string(list.next_cursor) : json_null());
  store_doc_list_dispose(&list);
  http_reply_json(r, 200, o);
}
