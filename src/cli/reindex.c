/* reindex.c - `ragd reindex`: re-embed after an embedding model switch. */
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "rag/rag.h"

static const char help[] =
    "Usage: ragd reindex [--data DIR]\n"
    "\n"
    "Embeds every chunk that has no vector under the configured embedder\n"
    "(RAGD_EMBEDDER, RAGD_EMBED_MODEL, RAGD_EMBED_DIMENSIONS): after switching\n"
    "the embedding model, or after an interrupted ingest. Then deletes the\n"
    "vectors of other models and rebuilds the BM25 index. Safe to interrupt and\n"
    "run again: it continues where it stopped. Stop the server first, or\n"
    "restart it afterwards, so that it loads the new vectors.\n"
    "\n"
    "  --data DIR   data folder (RAGD_DATA, default ./data)\n";

static void progress(void *ctx, size_t done) {
  (void)ctx;
  fprintf(stderr, "\rembedded %zu chunks", done);
}

int cli_reindex(int argc, char **argv) {
  struct cli_run run;
  struct buf err;
  size_t embedded = 0, dropped = 0;
  int status = cli_start(&run, argc, argv, "d", help, 0, 0, 0);
  ragd_err rc;
  if (status >= 0) return status;
  status = 1;
  buf_init(&err, 0);
  rc = rag_reindex(&run.engine, progress, NULL, &embedded, &dropped, &err);
  if (embedded) fputc('\n', stderr);
  if (rc) {
    fprintf(stderr, "ragd reindex: stopped after %zu chunks: %s\n", embedded,
            err.data ? err.data : ragd_strerror(rc));
  } else {
    printf("reindexed %s: %zu chunks embedded with %s (%zu dimensions), %zu vectors of other "
           "models deleted, BM25 index rebuilt\n",
           run.cfg.data_dir, embedded, run.engine.embedder.model_key,
           embed_dimensions(&run.engine.embedder), dropped);
    status = 0;
  }
  buf_dispose(&err);
  cli_finish(&run);
  return status;
}
