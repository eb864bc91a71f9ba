/* ask.c - `ragd ask`: the answer streams to the terminal as it arrives, then
 * the sources it cited. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "rag/rag.h"

static const char help[] =
    "Usage: ragd ask [--data DIR] [--k N] \"question\"\n"
    "\n"
    "Answers the question from the knowledge base in DIR, streaming the answer as\n"
    "it is generated, then lists the sources; [n] in the answer is source n.\n"
    "Uses the generator configured by RAGD_LLM_* (offline extractive by default).\n"
    "\n"
    "  --data DIR   data folder (RAGD_DATA, default ./data)\n"
    "  --k N        passages to retrieve (RAGD_TOP_K, default 5)\n";

struct ask {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int finished;
  int failed;
  char **lines;
  size_t nlines;
};

static void on_sources(void *ctx, const struct store_hit_list *hits) {
  struct ask *a = ctx;
  a->lines = calloc(hits->count + 1, sizeof *a->lines);
  if (!a->lines) return;
  for (size_t i = 0; i < hits->count; i++) {
    struct buf b;
    buf_init(&b, 0);
    const char *heading = hits->items[i].heading_path;
    buf_appendf(&b, "[%zu] %s", i + 1, heading && heading[0] ? heading : hits->items[i].title);
    buf_appendf(&b, "  (%s, score %.3f)", hits->items[i].chunk_id, hits->items[i].score);
    a->lines[a->nlines++] = buf_take(&b, NULL);
  }
}

static void on_delta(void *ctx, const char *text, size_t len) {
  (void)ctx;
  fwrite(text, 1, len, stdout);
  fflush(stdout);
}

static void finish(struct ask *a, int failed) {
  pthread_mutex_lock(&a->mu);
  a->finished = 1;
  a->failed = failed;
  pthread_cond_signal(&a->cv);
  pthread_mutex_unlock(&a->mu);
}

static void on_done(void *ctx, const char *finish_reason, const int *cited, size_t cited_count,
                    const int *invalid, size_t invalid_count) {
  struct ask *a = ctx;
  printf("\n\nSources:\n");
  for (size_t i = 0; i < a->nlines; i++) {
    int was_cited = 0;
    for (size_t k = 0; k < cited_count; k++)
      if (cited[k] == (int)i + 1) was_cited = 1;
    printf("  %s%s\n", a->lines[i], was_cited ? "  *cited*" : "");
  }
  if (a->nlines == 0) printf("  (none)\n");
  if (invalid_count) {
    printf("Warning: the answer cites sources that do not exist:");
    for (size_t k = 0; k < invalid_count; k++) printf(" [%d]", invalid[k]);
    printf("\n");
  }
  if (strcmp(finish_reason, "stop") != 0) printf("(finish reason: %s)\n", finish_reason);
  fflush(stdout);
  finish(a, 0);
}

static void on_error(void *ctx, const char *code, const char *message) {
  struct ask *a = ctx;
  fflush(stdout);
  fprintf(stderr, "\nragd ask: %s: %s\n", code, message);
  finish(a, 1);
}

int cli_ask(int argc, char **argv) {
  struct cli_run run;
  struct rag_question q;
  struct rag_events ev;
  struct rag_answer *answer = NULL;
  struct ask a;
  const char *code = NULL;
  int status = cli_start(&run, argc, argv, "dk", help, 1, 1, 1);
  ragd_err rc;
  if (status >= 0) return status;
  status = 1;
  memset(&a, 0, sizeof a);
  pthread_mutex_init(&a.mu, NULL);
  pthread_cond_init(&a.cv, NULL);
  memset(&q, 0, sizeof q);
  q.message = run.opts.args[0];
  q.top_k = (size_t)run.cfg.top_k;
  memset(&ev, 0, sizeof ev);
  ev.ctx = &a;
  ev.on_sources = on_sources;
  ev.on_delta = on_delta;
  ev.on_done = on_done;
  ev.on_error = on_error;
  rc = rag_answer_start(&run.engine, &q, &ev, &answer, &code);
  if (rc) {
    fprintf(stderr, "ragd ask: %s: %s\n", code, ragd_strerror(rc));
    goto out;
  }
  pthread_mutex_lock(&a.mu);
  while (!a.finished) pthread_cond_wait(&a.cv, &a.mu);
  pthread_mutex_unlock(&a.mu);
  rag_answer_release(answer);
  status = a.failed ? 1 : 0;
out:
  cli_finish(&run);
  for (size_t i = 0; i < a.nlines; i++) free(a.lines[i]);
  free(a.lines);
  pthread_mutex_destroy(&a.mu);
  pthread_cond_destroy(&a.cv);
  return status;
}
