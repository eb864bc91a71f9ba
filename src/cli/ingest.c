/* ingest.c - `ragd ingest`: files and folders into the knowledge base. Each
 * file is one document whose id is its path under the folder named on the
 * command line (so re-ingesting a folder replaces, or skips, the same ids).
 * Documents are committed RAGD_INGEST_BATCH at a time (the store's batch:
 * one transaction, a savepoint per document), which is most of ingest's
 * speed; a document that fails is still rolled back alone. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api/api.h"
#include "cli/cli.h"
#include "rag/rag.h"
#include "text/text.h"

#define FILE_MAX_BYTES (64L * 1024 * 1024)

static const char help[] =
    "Usage: ragd ingest [--data DIR] PATH...\n"
    "\n"
    "Adds documents to the knowledge base in DIR. PATH is a file or a folder\n"
    "(searched recursively). Markdown (.md, .markdown), text (.txt) and HTML\n"
    "(.html, .htm) files become one document each, with the file's path under\n"
    "the named folder as its id; .json files hold one document object or\n"
    "{\"documents\": [...]} in the HTTP API's format. Re-ingesting a file replaces\n"
    "its document; unchanged files are skipped.\n"
    "\n"
    "  --data DIR   data folder (RAGD_DATA, default ./data)\n"
    "\n"
    "RAGD_INGEST_BATCH (default 256) documents are committed together, each in\n"
    "a savepoint: a bad document is reported and rolled back alone; if a\n"
    "commit fails, the documents of that batch are reported failed. 1 commits\n"
    "every document on its own.\n";

struct ingest_counts {
  size_t created, updated, unchanged, failed;
};

/* What the run reports, and the open batch: its documents count once it
 * commits (pending until then). */
struct ingest_totals {
  struct ingest_counts done, pending;
  const struct store *st;
  const struct rag_engine *engine;
  size_t batch_size; /* 1: no batch, every document commits alone */
  size_t in_batch;   /* documents written into the open batch */
  int batch_open;
};

/* Commits the open batch (if any): its documents join the totals, or all
 * of those it wrote are reported failed when the commit fails. */
static void batch_flush(struct ingest_totals *t) {
  ragd_err rc = RAGD_OK;
  if (t->batch_open) rc = t->st->ops->batch_end(t->st->ctx, 1);
  if (rc) {
    size_t lost = t->pending.created + t->pending.updated;
    fprintf(stderr, "  failed     the last %zu documents written (one batch): commit: %s\n", lost,
            ragd_strerror(rc));
    t->pending.failed += lost;
    t->pending.created = t->pending.updated = 0;
  }
  t->done.created += t->pending.created;
  t->done.updated += t->pending.updated;
  t->done.unchanged += t->pending.unchanged;
  t->done.failed += t->pending.failed;
  memset(&t->pending, 0, sizeof t->pending);
  t->batch_open = 0;
  t->in_batch = 0;
}

/* Before each document: opens a batch when none is (a store that cannot
 * batch commits each document alone). The lsa embedder's first fit, which
 * rag_ingest runs while no model exists, stores the model and vectors
 * beside put_document, which a batch refuses: that document goes alone. */
static void batch_prepare(struct ingest_totals *t) {
  const struct embedder *em = &t->engine->embedder;
  if (strcmp(em->ops->name, "lsa") == 0 && !embed_lsa_fitted(em)) {
    batch_flush(t);
    return;
  }
  if (t->batch_open || t->batch_size <= 1 || !t->st->ops->batch_begin) return;
  if (t->st->ops->batch_begin(t->st->ctx) == RAGD_OK) t->batch_open = 1;
}

/* After each document: commits when the batch is full. */
static void batch_count(struct ingest_totals *t) {
  if (++t->in_batch >= t->batch_size) batch_flush(t);
}

static const char *ext_of(const char *path) {
  const char *slash = strrchr(path, '/');
  const char *dot = strrchr(path, '.');
  if (!dot || (slash && dot < slash)) return "";
  return dot;
}

static int supported(const char *path) {
  const char *e = ext_of(path);
  return !strcasecmp(e, ".md") || !strcasecmp(e, ".markdown") || !strcasecmp(e, ".txt") ||
         !strcasecmp(e, ".html") || !strcasecmp(e, ".htm") || !strcasecmp(e, ".json");
}

static ragd_err read_file(const char *path, struct buf *out) {
  FILE *f = fopen(path, "rb");
  char chunk[65536];
  size_t n;
  ragd_err rc = RAGD_OK;
  if (!f) return RAGD_EIO;
  buf_init(out, FILE_MAX_BYTES);
  while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0) rc = buf_append(out, chunk, n);
  if (!rc && ferror(f)) rc = RAGD_EIO;
  fclose(f);
  if (rc) buf_dispose(out);
  return rc;
}

static void report(struct ingest_totals *all, const char *id, ragd_err rc,
                   const struct rag_ingest_result *res, const char *why) {
  struct ingest_counts *t = &all->pending;
  if (rc) {
    t->failed++;
    fprintf(stderr, "  failed     %s: %s\n", id, why && why[0] ? why : ragd_strerror(rc));
    return;
  }
  if (res->status == STORE_PUT_CREATED) t->created++;
  if (res->status == STORE_PUT_UPDATED) t->updated++;
  if (res->status == STORE_PUT_UNCHANGED) t->unchanged++;
  printf("  %-10s %s (%zu chunks)\n", api_put_status_name(res->status), res->document_id,
         res->chunk_count);
  if (res->flagged_chunks)
    printf("  %-10s %zu of them address the model: %s\n", "guard", res->flagged_chunks,
           res->flagged_excluded ? "kept out of answers" : "used (allow_instructions)");
}

static void ingest_json(struct rag_engine *e, const char *id, struct buf *content,
                        struct ingest_totals *t) {
  json_error_t jerr;
  json_t *root = json_loadb(content->data, content->len, JSON_REJECT_DUPLICATES, &jerr);
  json_t *list;
  struct buf err;
  buf_init(&err, 4096);
  if (!root) {
    buf_appendf(&err, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column, jerr.text);
    report(t, id, RAGD_EJSON, NULL, err.data);
    goto out;
  }
  list = json_object_get(root, "documents");
  for (size_t i = 0; i < (list ? json_array_size(list) : 1); i++) {
    json_t *obj = list ? json_array_get(list, i) : root;
    struct rag_doc_in doc;
    struct rag_ingest_result res = {0};
    char *meta = NULL;
    ragd_err rc;
    buf_reset(&err);
    rc = api_document_from_json(obj, &doc, &meta, &err);
    batch_prepare(t);
    if (!rc) rc = rag_ingest(e, &doc, &res, &err);
    report(t, rc ? id : res.document_id, rc, &res, err.data);
    batch_count(t);
    free(res.document_id);
    free(meta);
  }
out:
  json_decref(root);
  buf_dispose(&err);
}

static void ingest_file(struct rag_engine *e, const char *path, const char *id,
                        struct ingest_totals *t) {
  struct buf content;
  struct rag_doc_in doc;
  struct rag_ingest_result res = {0};
  struct buf err;
  size_t bad = 0;
  enum text_format fmt;
  ragd_err rc;
  if (text_utf8_validate(id, strlen(id), &bad) != RAGD_OK) {
    t->pending.failed++;
    fprintf(stderr, "  skipped    a file whose name is not valid UTF-8 (byte %zu of \"%s\")\n", bad,
            path);
    return;
  }
  rc = read_file(path, &content);
  if (rc) {
    report(t, id, rc, NULL, rc == RAGD_ETOOBIG ? "file is larger than 64 MiB" : strerror(errno));
    return;
  }
  if (!strcasecmp(ext_of(path), ".json")) {
    ingest_json(e, id, &content, t);
    buf_dispose(&content);
    return;
  }
  fmt = text_format_from_path(path);
  memset(&doc, 0, sizeof doc);
  doc.id = id;
  doc.format = fmt == TEXT_FORMAT_HTML ? "html" : fmt == TEXT_FORMAT_TEXT ? "text" : "markdown";
  doc.text = content.data ? content.data : "";
  doc.text_len = content.len;
  buf_init(&err, 4096);
  batch_prepare(t);
  rc = rag_ingest(e, &doc, &res, &err);
  report(t, id, rc, &res, err.data);
  batch_count(t);
  free(res.document_id);
  buf_dispose(&err);
  buf_dispose(&content);
}

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Walks dir in name order; id_prefix is the id of dir itself. */
static void ingest_dir(struct rag_engine *e, const char *dir, const char *id_prefix,
                       struct ingest_totals *t, int depth) {
  DIR *d;
  struct dirent *de;
  char **names = NULL;
  size_t n = 0, cap = 0;
  if (depth > 32) return;
  d = opendir(dir);
  if (!d) {
    fprintf(stderr, "  failed     %s: %s\n", dir, strerror(errno));
    t->pending.failed++;
    return;
  }
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.') continue; /* hidden files, . and .. */
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 32;
      char **p = realloc(names, ncap * sizeof *p);
      if (!p) break;
      names = p;
      cap = ncap;
    }
    names[n] = strdup(de->d_name);
    if (names[n]) n++;
  }
  closedir(d);
  if (n) qsort(names, n, sizeof *names, name_cmp);
  for (size_t i = 0; i < n; i++) {
    struct buf path, id;
    struct stat st;
    buf_init(&path, 0);
    buf_init(&id, 0);
    if (buf_appendf(&path, "%s/%s", dir, names[i]) == RAGD_OK &&
        buf_appendf(&id, "%s%s%s", id_prefix, id_prefix[0] ? "/" : "", names[i]) == RAGD_OK &&
        stat(path.data, &st) == 0) {
      if (S_ISDIR(st.st_mode))
        ingest_dir(e, path.data, id.data, t, depth + 1);
      else if (S_ISREG(st.st_mode) && supported(path.data))
        ingest_file(e, path.data, id.data, t);
    }
    buf_dispose(&path);
    buf_dispose(&id);
    free(names[i]);
  }
  free(names);
}

int cli_ingest(int argc, char **argv) {
  struct cli_run run;
  struct ingest_totals t;
  int status = cli_start(&run, argc, argv, "d", help, 1, 1 << 30, 0);
  if (status >= 0) return status;
  memset(&t, 0, sizeof t);
  t.st = &run.engine.store;
  t.engine = &run.engine;
  t.batch_size = (size_t)run.cfg.ingest_batch;
  for (int i = 0; i < run.opts.nargs; i++) {
    struct stat st;
    char *path = strdup(run.opts.args[i]);
    size_t len = path ? strlen(path) : 0;
    const char *base;
    while (len > 1 && path[len - 1] == '/') path[--len] = '\0';
    if (!path || stat(path, &st) != 0) {
      fprintf(stderr, "  failed     %s: %s\n", run.opts.args[i], path ? strerror(errno) : "out of memory");
      t.pending.failed++;
      free(path);
      continue;
    }
    base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    if (S_ISDIR(st.st_mode))
      ingest_dir(&run.engine, path, strcmp(base, ".") == 0 ? "" : base, &t, 0);
    else
      ingest_file(&run.engine, path, base, &t);
    free(path);
  }
  batch_flush(&t);
  printf("ingested into %s: %zu created, %zu updated, %zu unchanged, %zu failed\n", run.cfg.data_dir,
         t.done.created, t.done.updated, t.done.unchanged, t.done.failed);
  status = t.done.failed ? 1 : 0;
  {
    /* lsa: the corpus grew past RAGD_LSA_REFIT_FRACTION of the fit: refit now
     * rather than leave it to the next server start. */
    struct buf err;
    int refitted = 0;
    ragd_err rc;
    buf_init(&err, 0);
    rc = rag_lsa_refit_if_due(&run.engine, &refitted, &err);
    if (rc) {
      fprintf(stderr, "ragd ingest: %s\n", err.data ? err.data : ragd_strerror(rc));
      status = 1;
    } else if (refitted) {
      printf("lsa model refitted: %s\n", run.engine.embedder.model_key);
    }
    buf_dispose(&err);
  }
  cli_finish(&run);
  return status;
}
