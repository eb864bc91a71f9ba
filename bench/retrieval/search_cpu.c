/* bench/retrieval/search_cpu.c - the CPU time of each search, in process.
 *
 *   bench_search_cpu [--n N] [--modes keyword,vector,hybrid] DATA_DIR QUERIES
 *
 * Opens the engine on DATA_DIR as `ragd serve` does (configuration from the
 * environment, so RAGD_VECTOR_INDEX etc. apply), loads the keyword index,
 * then for each mode runs N searches (top 10; the lines of QUERIES in turn,
 * after 20 warm-up searches) on this one thread and prints p50, p99 and max
 * of the thread's CPU time per search (CLOCK_THREAD_CPUTIME_ID) beside the
 * wall time. On a shared machine wall time includes waiting for a core;
 * thread CPU time is what one search costs a core, so its p99 is the
 * number to hold against a latency aim "on one core" (HTTP and JSON, about
 * half a millisecond, come on top: latency.mjs measures those). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rag/rag.h"
#include "util/buf.h"
#include "util/config.h"
#include "util/log.h"

static double now_ms(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int dbl_cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(const double *sorted, size_t n, double p) {
  size_t i = (size_t)(p / 100.0 * (double)n);
  return sorted[i < n ? i : n - 1];
}

/* Reads the non-empty lines of path into *lines (each malloc'd). */
static size_t read_lines(const char *path, char ***lines) {
  FILE *f = fopen(path, "rb");
  struct buf line;
  size_t n = 0, cap = 0;
  int c;
  *lines = NULL;
  if (!f) return 0;
  buf_init(&line, 0);
  do {
    c = fgetc(f);
    if (c != '\n' && c != EOF) {
      buf_append_char(&line, (char)c);
      continue;
    }
    if (line.len == 0) continue;
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 256;
      char **g = realloc(*lines, ncap * sizeof *g);
      if (!g) break;
      *lines = g;
      cap = ncap;
    }
    (*lines)[n++] = strdup(line.data);
    buf_reset(&line);
  } while (c != EOF);
  buf_dispose(&line);
  fclose(f);
  return n;
}

int main(int argc, char **argv) {
  const char *modes = "keyword,vector,hybrid", *data = NULL, *qpath = NULL;
  struct ragd_config cfg;
  struct rag_engine engine;
  struct buf err;
  char **queries = NULL, *list = NULL;
  size_t nq, n = 300, i;
  double *cpu = NULL, *wall = NULL;
  int status = 1;

  for (int a = 1; a < argc; a++) {
    if (!strcmp(argv[a], "--n") && a + 1 < argc) n = (size_t)strtoul(argv[++a], NULL, 10);
    else if (!strcmp(argv[a], "--modes") && a + 1 < argc) modes = argv[++a];
    else if (!data) data = argv[a];
    else qpath = argv[a];
  }
  if (!data || !qpath || n == 0) {
    fprintf(stderr, "usage: bench_search_cpu [--n N] [--modes keyword,vector,hybrid] DATA_DIR QUERIES\n");
    return 2;
  }
  nq = read_lines(qpath, &queries);
  if (nq == 0) {
    fprintf(stderr, "bench_search_cpu: no queries in %s\n", qpath);
    return 2;
  }
  buf_init(&err, 0);
  config_init(&cfg);
  if (config_load_env(&cfg, &err) || config_set(&cfg, "RAGD_DATA", data, &err) ||
      config_finish(&cfg, &err)) {
    fprintf(stderr, "bench_search_cpu: %s\n", err.data ? err.data : "configuration error");
    goto out_cfg;
  }
  log_set_level((enum log_level)log_level_parse(cfg.log_level));
  if (rag_engine_open(&cfg, 0, &engine, &err) != RAGD_OK) {
    fprintf(stderr, "bench_search_cpu: %s\n", err.data ? err.data : "cannot open the engine");
    goto out_cfg;
  }
  cpu = malloc(n * sizeof *cpu);
  wall = malloc(n * sizeof *wall);
  list = strdup(modes);
  if (!cpu || !wall || !list || rag_keyword_ensure(&engine) != RAGD_OK) goto out;
  {
    for (char *m = list, *next; m; m = next) {
      struct rag_search_opts o;
      int mode;
      next = strchr(m, ',');
      if (next) *next++ = '\0';
      mode = rag_search_mode_parse(m);
      if (mode < 0) {
        fprintf(stderr, "bench_search_cpu: unknown mode %s\n", m);
        goto out;
      }
      memset(&o, 0, sizeof o);
      o.k = 10;
      o.mode = (enum rag_search_mode)mode;
      for (i = 0; i < n + 20; i++) {
        struct store_hit_list hits = {0};
        double c0, w0;
        o.query = queries[i % nq];
        c0 = now_ms(CLOCK_THREAD_CPUTIME_ID);
        w0 = now_ms(CLOCK_MONOTONIC);
        if (rag_search_ex(&engine, &o, &hits) != RAGD_OK) {
          fprintf(stderr, "bench_search_cpu: search failed: %s\n", o.query);
          goto out;
        }
        if (i >= 20) {
          cpu[i - 20] = now_ms(CLOCK_THREAD_CPUTIME_ID) - c0;
          wall[i - 20] = now_ms(CLOCK_MONOTONIC) - w0;
        }
        store_hit_list_dispose(&hits);
      }
      qsort(cpu, n, sizeof *cpu, dbl_cmp);
      qsort(wall, n, sizeof *wall, dbl_cmp);
      printf("%-8s cpu p50 %.2f ms  p99 %.2f ms  max %.2f ms | wall p50 %.2f ms  p99 %.2f ms  (%zu searches, in process)\n",
             m, pct(cpu, n, 50), pct(cpu, n, 99), cpu[n - 1], pct(wall, n, 50), pct(wall, n, 99), n);
    }
  }
  status = 0;
out:
  rag_engine_close(&engine);
out_cfg:
  config_dispose(&cfg);
  buf_dispose(&err);
  for (i = 0; i < nq; i++) free(queries[i]);
  free(queries);
  free(list);
  free(cpu);
  free(wall);
  return status;
}
