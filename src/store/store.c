/* store.c - picking a store by name, and releasing store results. */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

/* Stores ragd knows, by the name that prefixes a spec ("sqlite:DIR"). */
static const struct store_ops *const store_backends[] = {
    &store_sqlite_ops,
};

/* URI schemes handed whole to a store: libpq wants the URI as it is. */
static const struct {
  const char *prefix;
  const struct store_ops *ops;
} store_uri_schemes[] = {
    {"postgres://", &store_postgres_ops},
    {"postgresql://", &store_postgres_ops},
};

static int store_has_prefix(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

void store_options_default(struct store_options *o) {
  memset(o, 0, sizeof *o);
  o->pool_size = 4;
  o->statement_timeout_ms = 30000;
  o->migrate = 1;
}

ragd_err store_open(const char *spec, struct store *out) {
  return store_open_ex(spec, NULL, out);
}

ragd_err store_open_ex(const char *spec, const struct store_options *opts, struct store *out) {
  const struct store_ops *ops = &store_sqlite_ops; /* a plain path means sqlite */
  const char *location = spec;
  struct store_options defaults;
  void *ctx = NULL;
  ragd_err rc;
  size_t i;

  if (!spec || !out) return RAGD_EINVAL;
  store_options_default(&defaults);
  if (!opts) opts = &defaults;
  if (opts->pool_size < 1 || opts->pool_size > 256 || opts->statement_timeout_ms < 0)
    return RAGD_EINVAL;
  for (i = 0; i < sizeof store_uri_schemes / sizeof store_uri_schemes[0]; i++) {
    if (store_has_prefix(spec, store_uri_schemes[i].prefix)) {
      ops = store_uri_schemes[i].ops;
      goto found;
    }
  }
  for (i = 0; i < sizeof store_backends / sizeof store_backends[0]; i++) {
    size_t name_len = strlen(store_backends[i]->name);
    if (strncmp(spec, store_backends[i]->name, name_len) == 0 && spec[name_len] == ':') {
      ops = store_backends[i];
      location = spec + name_len + 1;
      break;
    }
  }
found:
  if (!*location) return RAGD_EINVAL;
  if (ops->version != STORE_OPS_VERSION) return RAGD_EUNSUPPORTED;
  rc = ops->open(location, opts, &ctx);
  if (rc) return rc;
  out->ops = ops;
  out->ctx = ctx;
  return RAGD_OK;
}

void store_close(struct store *st) {
  if (!st) return;
  if (st->ops && st->ctx) st->ops->close(st->ctx);
  st->ops = NULL;
  st->ctx = NULL;
}

void store_doc_dispose(struct store_doc *d) {
  if (!d) return;
  free(d->external_id);
  free(d->title);
  free(d->url);
  free(d->metadata_json);
  free(d->format);
  free(d->content_hash);
  free(d->content);
  memset(d, 0, sizeof *d);
}

void store_doc_list_dispose(struct store_doc_list *l) {
  size_t i;
  if (!l) return;
  for (i = 0; i < l->count; i++) store_doc_dispose(&l->items[i]);
  free(l->items);
  free(l->next_cursor);
  memset(l, 0, sizeof *l);
}

void store_hit_list_dispose(struct store_hit_list *l) {
  size_t i;
  if (!l) return;
  for (i = 0; i < l->count; i++) {
    struct store_hit *h = &l->items[i];
    free(h->chunk_id);
    free(h->document_id);
    free(h->title);
    free(h->url);
    free(h->heading_path);
    free(h->text);
  }
  free(l->items);
  memset(l, 0, sizeof *l);
}

void store_message_list_dispose(struct store_message_list *l) {
  size_t i;
  if (!l) return;
  for (i = 0; i < l->count; i++) {
    struct store_message *m = &l->items[i];
    free(m->role);
    free(m->content);
    free(m->id);
    free(m->retrieval_query);
    free(m->sources_json);
    free(m->cited_json);
    free(m->provider);
    free(m->model);
    free(m->finish_reason);
    free(m->feedback_rating);
    free(m->feedback_comment);
  }
  free(l->items);
  memset(l, 0, sizeof *l);
}

void store_conversation_dispose(struct store_conversation *c) {
  if (!c) return;
  free(c->id);
  store_message_list_dispose(&c->messages);
  memset(c, 0, sizeof *c);
}

/* 1..max bytes of [A-Za-z0-9] and the characters of extra. */
static int store_name_ok(const char *s, size_t max, const char *extra) {
  size_t n;
  if (!s) return 0;
  n = strlen(s);
  if (n == 0 || n > max) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          strchr(extra, c)))
      return 0;
  }
  return 1;
}

int store_message_id_ok(const char *id) { return store_name_ok(id, 64, "-_"); }

void store_vector_model_list_dispose(struct store_vector_model_list *l) {
  size_t i;
  if (!l) return;
  for (i = 0; i < l->count; i++) free(l->items[i].model);
  free(l->items);
  memset(l, 0, sizeof *l);
}

void store_chunk_text_list_dispose(struct store_chunk_text_list *l) {
  size_t i;
  if (!l) return;
  for (i = 0; i < l->count; i++) {
    free(l->items[i].title);
    free(l->items[i].heading_path);
    free(l->items[i].text);
  }
  free(l->items);
  memset(l, 0, sizeof *l);
}

void store_key_dispose(struct store_key *k) {
  if (!k) return;
  free(k->id);
  free(k->name);
  free(k->scope);
  free(k->hash);
  memset(k, 0, sizeof *k);
}

void store_key_list_dispose(struct store_key_list *l) {
  size_t i;
  if (!l) return;
  for (i = 0; i < l->count; i++) store_key_dispose(&l->items[i]);
  free(l->items);
  memset(l, 0, sizeof *l);
}

/* ---- input checks shared by the stores ---- */

ragd_err store_check_utf8(const char *s) {
  size_t bad = 0;
  return text_utf8_validate(s, strlen(s), &bad) == RAGD_OK ? RAGD_OK : RAGD_EUTF8;
}

ragd_err store_check_id(const char *id, size_t max) {
  size_t len;
  if (!id) return RAGD_EINVAL;
  len = strlen(id);
  if (len == 0 || len > max) return RAGD_EINVAL;
  return store_check_utf8(id);
}

static int store_role_ok(const char *role) {
  return role && (strcmp(role, "user") == 0 || strcmp(role, "assistant") == 0);
}

static ragd_err store_check_opt(const char *s) { return s ? store_check_utf8(s) : RAGD_OK; }

ragd_err store_validate_message(const struct store_message_in *m) {
  ragd_err rc;
  if (!m || !store_role_ok(m->role) || !m->content || !store_message_id_ok(m->message_id))
    return RAGD_EINVAL;
  rc = store_check_id(m->conversation_id, STORE_CONVERSATION_ID_MAX);
  if (!rc) rc = store_check_utf8(m->content);
  if (!rc) rc = store_check_opt(m->retrieval_query);
  if (!rc) rc = store_check_opt(m->sources_json);
  if (!rc) rc = store_check_opt(m->cited_json);
  if (!rc) rc = store_check_opt(m->provider);
  if (!rc) rc = store_check_opt(m->model);
  if (!rc) rc = store_check_opt(m->finish_reason);
  return rc;
}

ragd_err store_validate_feedback(const struct store_feedback_in *f) {
  ragd_err rc;
  if (!f || !f->rating || !store_message_id_ok(f->message_id)) return RAGD_EINVAL;
  if (strcmp(f->rating, "up") != 0 && strcmp(f->rating, "down") != 0) return RAGD_EINVAL;
  rc = store_check_id(f->conversation_id, STORE_CONVERSATION_ID_MAX);
  if (!rc) rc = store_check_opt(f->comment);
  return rc;
}

int store_key_hash_ok(const char *h) {
  size_t n = 0;
  if (!h) return 0;
  for (; h[n]; n++)
    if (!((h[n] >= '0' && h[n] <= '9') || (h[n] >= 'a' && h[n] <= 'f'))) return 0;
  return n == 64;
}

ragd_err store_validate_key(const struct store_key *k) {
  if (!k || store_check_id(k->id, STORE_KEY_ID_MAX) || !k->scope ||
      (strcmp(k->scope, "query") != 0 && strcmp(k->scope, "admin") != 0) ||
      !store_key_hash_ok(k->hash) || k->rpm < 0 || k->streams < 0 ||
      (k->name && (strlen(k->name) > STORE_KEY_NAME_MAX || store_check_utf8(k->name))))
    return RAGD_EINVAL;
  return RAGD_OK;
}

int store_blob_name_ok(const char *name) { return store_name_ok(name, 128, "-_.:"); }
