#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rag/rag_int.h"
#include "text/text.h"
#include "util/crypto.h"
#include "util/log.h"

#define DOC_ID_MAX 256
#define DOC_TITLE_MAX 1024
#define DOC_URL_MAX 2048

static int utf8_ok(const char *s, const char *field, struct buf *err) {
  size_t bad = 0;
  if (!s) return 1;
  if (text_utf8_validate(s, strlen(s), &bad) == RAGD_OK) return 1;
  if (err) buf_appendf(err, "%s is not valid UTF-8 at byte %zu", field, bad);
  return 0;
}

/* Embeds every chunk of a document that will be written (an unchanged one,
 * with its vectors complete, is not embedded again). Sets in->vector_* and
 * *vectors (malloc'd, chunk count rows of *dim floats); leaves *vectors NULL
 * when the document is unchanged. */
static ragd_err embed_chunks(struct rag_engine *e, struct store_doc_in *in,
                             const struct text_chunk_list *chunks, float **vectors, size_t *dim,
                             struct buf *err) {
  struct slice *texts = NULL;
  struct buf *inputs = NULL;
  int unchanged = 0;
  size_t i;
  ragd_err rc;

  rc = embed_ensure_dimensions(&e->embedder, dim, err);
  if (rc) {
    if (err && err->len == 0) buf_appendf(err, "cannot embed the text: %s", ragd_strerror(rc));
    return rc == RAGD_EINVAL ? RAGD_EUPSTREAM : rc;
  }
  in->vector_model = e->embedder.model_key;
  in->vector_dim = *dim;
  rc = e->store.ops->probe_document(e->store.ctx, in, &unchanged);
  if (rc || unchanged) {
    if (unchanged) in->vector_model = NULL; /* nothing will be written */
    return rc;
  }
  texts = calloc(chunks->count, sizeof *texts);
  inputs = calloc(chunks->count, sizeof *inputs);
  *vectors = malloc(chunks->count * *dim * sizeof **vectors);
  if (!texts || !inputs || !*vectors) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  for (i = 0; i < chunks->count && !rc; i++) {
    const struct text_chunk *c = &chunks->items[i];
    buf_init(&inputs[i], 0);
    rc = rag_embed_input(&inputs[i], in->title, c->heading_path, c->text, c->text_len);
    texts[i].ptr = inputs[i].data ? inputs[i].data : "";
    texts[i].len = inputs[i].len;
  }
  if (!rc) rc = embed_texts(&e->embedder, texts, chunks->count, *vectors, err);
out:
  for (i = 0; inputs && i < chunks->count; i++) buf_dispose(&inputs[i]);
  free(inputs);
  free(texts);
  if (rc) {
    free(*vectors);
    *vectors = NULL;
    in->vector_model = NULL;
  }
  return rc;
}

/* lsa with no model yet: the first ingest fits one on the document's own
 * chunks plus whatever the store holds (later ones are folded in). Runs
 * before the model lock is taken: the fit swaps the model in under it. */
static ragd_err lsa_first_fit(struct rag_engine *e, const char *title,
                              const struct text_chunk_list *chunks, struct buf *err) {
  struct slice *texts = calloc(chunks->count + 1, sizeof *texts);
  struct buf *inputs = calloc(chunks->count + 1, sizeof *inputs);
  ragd_err rc = texts && inputs ? RAGD_OK : RAGD_ENOMEM;
  size_t i;
  for (i = 0; inputs && i < chunks->count; i++) buf_init(&inputs[i], 0);
  for (i = 0; i < chunks->count && !rc; i++) {
    const struct text_chunk *c = &chunks->items[i];
    rc = rag_embed_input(&inputs[i], title, c->heading_path, c->text, c->text_len);
    texts[i].ptr = inputs[i].data ? inputs[i].data : "";
    texts[i].len = inputs[i].len;
  }
  if (!rc) rc = rag_lsa_refit(e, texts, chunks->count, err);
  for (i = 0; inputs && i < chunks->count; i++) buf_dispose(&inputs[i]);
  free(inputs);
  free(texts);
  return rc;
}

ragd_err rag_ingest(struct rag_engine *e, const struct rag_doc_in *doc,
                    struct rag_ingest_result *out, struct buf *err) {
  struct text_chunk_list chunks = {0};
  struct text_chunk_opts opts;
  struct store_doc_in in;
  struct store_put_result put;
  char hash[65];
  char derived_id[32];
  char *title_owned = NULL;
  char *guarded_metadata = NULL;
  size_t flagged = 0;
  int excluded = 0;
  const char *format = doc->format ? doc->format : "markdown";
  const char *id = doc->id;
  const char *title = doc->title;
  size_t bad = 0, dim = 0;
  float *vectors = NULL;
  int64_t *chunk_rowids = NULL;
  int fmt, model_locked = 0;
  ragd_err rc;

  memset(out, 0, sizeof *out);
  if (!utf8_ok(doc->id, "id", err) || !utf8_ok(doc->title, "title", err) ||
      !utf8_ok(doc->url, "url", err))
    return RAGD_EUTF8;
  if (text_utf8_validate(doc->text, doc->text_len, &bad) != RAGD_OK) {
    if (err) buf_appendf(err, "text is not valid UTF-8 at byte %zu", bad);
    return RAGD_EUTF8;
  }
  fmt = text_format_parse(format);
  if (fmt < 0) {
    if (err) buf_appendf(err, "format must be markdown, text or html, not \"%s\"", format);
    return RAGD_EINVAL;
  }
  if (id && strlen(id) > DOC_ID_MAX) {
    if (err) buf_appendf(err, "id is longer than %d bytes", DOC_ID_MAX);
    return RAGD_EINVAL;
  }
  if (id && id[0] && strspn(id, " \t\r\n") == strlen(id)) {
    if (err) buf_append_str(err, "id must not be blank");
    return RAGD_EINVAL;
  }
  if (title && strlen(title) > DOC_TITLE_MAX) {
    if (err) buf_appendf(err, "title is longer than %d bytes", DOC_TITLE_MAX);
    return RAGD_EINVAL;
  }
  if (doc->url && strlen(doc->url) > DOC_URL_MAX) {
    if (err) buf_appendf(err, "url is longer than %d bytes", DOC_URL_MAX);
    return RAGD_EINVAL;
  }
  if (!id || !id[0]) {
    crypto_sha256_hex(doc->text, doc->text_len, hash);
    snprintf(derived_id, sizeof derived_id, "doc-%.16s", hash);
    id = derived_id;
  }
  if (!title || !title[0]) {
    title_owned = text_title(doc->text, doc->text_len, (enum text_format)fmt);
    title = title_owned ? title_owned : id;
  }
  opts.tokens_max = (size_t)e->cfg->chunk_tokens;
  opts.tokens_overlap = (size_t)e->cfg->chunk_overlap;
  rc = text_chunk(doc->text, doc->text_len, (enum text_format)fmt, &opts, &chunks);
  if (rc) {
    if (err) buf_appendf(err, "cannot split the text into chunks: %s", ragd_strerror(rc));
    goto out;
  }
  if (chunks.count == 0) {
    if (err) buf_append_str(err, "text has no content to index");
    rc = RAGD_EEMPTY;
    goto out;
  }
  rc = rag_guard_document(&chunks, doc->metadata_json ? doc->metadata_json : "{}",
                          &guarded_metadata, &flagged, &excluded);
  if (rc == RAGD_EJSON) {
    if (err) buf_append_str(err, "metadata is not a JSON object");
    rc = RAGD_EINVAL;
    goto out;
  }
  if (rc) {
    if (err) buf_appendf(err, "cannot check the text for instructions: %s", ragd_strerror(rc));
    goto out;
  }
  if (flagged)
    log_info("document %s: %zu of %zu chunks address the model (guard); %s", id, flagged,
             chunks.count, excluded ? "kept out of answers" : "allowed by allow_instructions");
  memset(&in, 0, sizeof in);
  in.external_id = id;
  in.title = title;
  in.url = doc->url ? doc->url : "";
  in.metadata_json = guarded_metadata      ? guarded_metadata
                     : doc->metadata_json ? doc->metadata_json
                                          : "{}";
  in.format = fmt == TEXT_FORMAT_HTML ? "html" : fmt == TEXT_FORMAT_TEXT ? "text" : "markdown";
  in.content = doc->text;
  in.content_len = doc->text_len;
  in.chunks = &chunks;
  if (strcmp(e->embedder.ops->name, "lsa") == 0 && !embed_lsa_fitted(&e->embedder)) {
    rc = lsa_first_fit(e, title, &chunks, err);
    if (rc) goto out;
  }
  /* From embedding to the index update the model cannot change (refit.c). */
  pthread_rwlock_rdlock(&e->model_lock);
  model_locked = 1;
  rc = embed_chunks(e, &in, &chunks, &vectors, &dim, err);
  if (rc) goto out;
  if (vectors) {
    chunk_rowids = calloc(chunks.count, sizeof *chunk_rowids);
    if (!chunk_rowids) {
      rc = RAGD_ENOMEM;
      goto out;
    }
    in.vectors = vectors;
    in.chunk_rowids = chunk_rowids;
  }
  rc = e->store.ops->put_document(e->store.ctx, &in, &put);
  if (rc) {
    if (err) buf_appendf(err, "the store refused the document: %s", ragd_strerror(rc));
    goto out;
  }
  if (vectors && put.status != STORE_PUT_UNCHANGED) {
    rc = rag_index_put_doc(e, put.document_rowid, chunk_rowids, vectors, chunks.count, dim);
    if (rc) {
      /* the document is stored; only the in-memory index missed it */
      log_warn("document %s: vector index not updated: %s", id, ragd_strerror(rc));
      rc = RAGD_OK;
    }
  }
  if (chunk_rowids && put.status != STORE_PUT_UNCHANGED)
    rag_keyword_put_doc(e, put.document_rowid, chunk_rowids, title, &chunks);
  pthread_rwlock_unlock(&e->model_lock);
  model_locked = 0;
  if (put.status != STORE_PUT_UNCHANGED) rag_lsa_note_change(e, put.chunk_count);
  out->document_id = strdup(id);
  if (!out->document_id) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  out->status = put.status;
  out->chunk_count = put.chunk_count;
  out->flagged_chunks = flagged;
  out->flagged_excluded = excluded;
out:
  if (model_locked) pthread_rwlock_unlock(&e->model_lock);
  text_chunk_list_dispose(&chunks);
  free(title_owned);
  free(guarded_metadata);
  free(vectors);
  free(chunk_rowids);
  return rc;
}


