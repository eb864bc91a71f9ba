/* bench/lsa/fit.c - how long the lsa embedder takes to fit, re-embed and
 * answer, and how much memory the fit needs, on a corpus written by
 * bench/retrieval/scale_corpus.mjs.
 *
 *   bench_lsa_fit [--rank R] [--queries FILE] CORPUS_DIR
 *
 * Reads CORPUS_DIR/part-*.json, chunks every document as ingest does
 * (text_chunk with the default 256/32 tokens) into the text ingest embeds
 * (title, heading path, text on separate lines), then times:
 *   fit      embed_lsa_model_fit over every chunk (the background refit's
 *            first step),
 *   embed    every chunk projected with the new model (the refit's second
 *            step, without the store writes),
 *   query    one projection per line of FILE (the lsa half of a search),
 *            p50 and p99,
 * and prints the process's peak RSS after loading the texts and after the
 * fit (getrusage: the fit's own peak is the difference, roughly). One line
 * of key=value per figure, for bench/lsa/run.sh. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "embed/embed.h"
#include "text/text.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/json.h"

struct texts {
  struct buf *items;
  size_t count, cap;
};

static long peak_rss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static struct buf *texts_next(struct texts *t) {
  if (t->count == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 4096;
    struct buf *b = realloc(t->items, cap * sizeof *b);
    if (!b) return NULL;
    t->items = b;
    t->cap = cap;
  }
  buf_init(&t->items[t->count], 0);
  return &t->items[t->count++];
}

static int load_part(const char *path, struct texts *t) {
  FILE *f = fopen(path, "rb");
  struct buf data;
  char chunk[65536];
  size_t got, i, c;
  json_t *root = NULL, *docs;
  struct text_chunk_opts opts = {.tokens_max = 256, .tokens_overlap = 32};
  int status = -1;
  buf_init(&data, 0);
  if (!f) return -1;
  while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
    if (buf_append(&data, chunk, got)) goto out;
  if (json_parse_object(data.data, data.len, &root, NULL) != RAGD_OK) goto out;
  docs = json_object_get(root, "documents");
  for (i = 0; i < json_array_size(docs); i++) {
    json_t *d = json_array_get(docs, i);
    const char *title = json_get_str(d, "title"), *text = json_get_str(d, "text");
    struct text_chunk_list chunks = {0};
    if (!text) continue;
    if (text_chunk(text, strlen(text), TEXT_FORMAT_TEXT, &opts, &chunks) != RAGD_OK) goto out;
    for (c = 0; c < chunks.count; c++) {
      struct buf *b = texts_next(t);
      if (!b) goto out;
      if (title && title[0]) buf_appendf(b, "%s\n", title);
      if (chunks.items[c].heading_path[0]) buf_appendf(b, "%s\n", chunks.items[c].heading_path);
      buf_append(b, chunks.items[c].text, chunks.items[c].text_len);
    }
    text_chunk_list_dispose(&chunks);
  }
  status = 0;
out:
  fclose(f);
  json_decref(root);
  buf_dispose(&data);
  return status;
}

static int dbl_cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  const char *dir = NULL, *queries = NULL;
  long rank = EMBED_LSA_RANK_DEFAULT;
  struct texts t = {0};
  struct embed_config cfg;
  struct embedder e;
  struct embed_lsa_model *m = NULL;
  struct slice *slices;
  struct buf err, blob;
  char **names = NULL;
  size_t n_names = 0, i;
  DIR *d;
  struct dirent *de;
  float *vecs;
  int64_t t0, t1, t2;

  for (int a = 1; a < argc; a++) {
    if (strcmp(argv[a], "--rank") == 0 && a + 1 < argc) rank = atol(argv[++a]);
    else if (strcmp(argv[a], "--queries") == 0 && a + 1 < argc) queries = argv[++a];
    else dir = argv[a];
  }
  if (!dir || !(d = opendir(dir))) {
    fprintf(stderr, "usage: bench_lsa_fit [--rank R] [--queries FILE] CORPUS_DIR\n");
    return 2;
  }
  while ((de = readdir(d)) != NULL) {
    if (strncmp(de->d_name, "part-", 5) != 0) continue;
    names = realloc(names, (n_names + 1) * sizeof *names);
    size_t len = strlen(dir) + strlen(de->d_name) + 2;
    names[n_names] = malloc(len);
    snprintf(names[n_names], len, "%s/%s", dir, de->d_name);
    n_names++;
  }
  closedir(d);
  qsort(names, n_names, sizeof *names, name_cmp);
  for (i = 0; i < n_names; i++) {
    if (load_part(names[i], &t) != 0) {
      fprintf(stderr, "bench_lsa_fit: cannot read %s\n", names[i]);
      return 1;
    }
    free(names[i]);
  }
  free(names);
  printf("chunks=%zu\nrank=%ld\nrss_loaded_kb=%ld\n", t.count, rank, peak_rss_kb());
  slices = calloc(t.count + 1, sizeof *slices);
  for (i = 0; i < t.count; i++) slices[i] = (struct slice){t.items[i].data, t.items[i].len};

  memset(&cfg, 0, sizeof cfg);
  cfg.provider = "lsa";
  cfg.dimensions = rank;
  buf_init(&err, 0);
  if (embed_create(&cfg, &e, &err) != RAGD_OK) {
    fprintf(stderr, "bench_lsa_fit: %s\n", err.data);
    return 1;
  }
  t0 = clock_mono_us();
  if (embed_lsa_model_fit(&e, slices, t.count, &m, &err) != RAGD_OK) {
    fprintf(stderr, "bench_lsa_fit: %s\n", err.data);
    return 1;
  }
  t1 = clock_mono_us();
  printf("fit_s=%.2f\nrss_after_fit_kb=%ld\n", (double)(t1 - t0) / 1e6, peak_rss_kb());
  vecs = malloc(4096 * (size_t)rank * sizeof *vecs);
  for (i = 0; i < t.count; i += 4096) {
    size_t n = t.count - i < 4096 ? t.count - i : 4096;
    embed_lsa_model_embed(m, slices + i, n, vecs);
  }
  t2 = clock_mono_us();
  printf("embed_s=%.2f\n", (double)(t2 - t1) / 1e6);
  buf_init(&blob, 0);
  embed_lsa_model_encode(m, &blob);
  printf("model_bytes=%zu\n", blob.len);
  buf_dispose(&blob);
  if (queries) {
    FILE *f = fopen(queries, "r");
    char line[4096];
    double *us = NULL;
    size_t nq = 0;
    while (f && fgets(line, sizeof line, f)) {
      struct slice q = {line, strcspn(line, "\n")};
      int64_t q0 = clock_mono_us();
      embed_lsa_model_embed(m, &q, 1, vecs);
      us = realloc(us, (nq + 1) * sizeof *us);
      us[nq++] = (double)(clock_mono_us() - q0);
    }
    if (f) fclose(f);
    if (nq) {
      qsort(us, nq, sizeof *us, dbl_cmp);
      printf("queries=%zu\nquery_p50_us=%.0f\nquery_p99_us=%.0f\n", nq, us[nq / 2],
             us[nq * 99 / 100]);
    }
    free(us);
  }
  printf("rss_peak_kb=%ld\n", peak_rss_kb());
  free(vecs);
  embed_lsa_model_free(m);
  embed_destroy(&e);
  for (i = 0; i < t.count; i++) buf_dispose(&t.items[i]);
  free(t.items);
  free(slices);
  buf_dispose(&err);
  return 0;
}
