/* migrate.c - `ragd migrate`: create or upgrade the store's schema, then exit. */
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "rag/rag.h"

static const char help[] =
    "Usage: ragd migrate [--data DIR]\n"
    "\n"
    "Creates the store's schema, or applies the migrations this ragd has and\n"
    "the database lacks, each version in one transaction (nodes migrating the\n"
    "same PostgreSQL database at once wait for each other). Running it again\n"
    "changes nothing. With several nodes, set RAGD_STORE_MIGRATE=0 on them and\n"
    "run this once per deploy: a node then refuses to start on an old schema.\n"
    "\n"
    "  --data DIR   data folder or store spec (RAGD_STORE wins when set)\n";

int cli_migrate(int argc, char **argv) {
  struct cli_opts o;
  struct ragd_config cfg;
  struct store st = {0};
  struct store_stats stats = {0};
  struct buf err;
  int status = 1;

  if (cli_parse(argc, argv, "d", &o) != 0) return 2;
  if (o.help || o.nargs != 0) {
    fputs(help, o.help ? stdout : stderr);
    free(o.args);
    return o.help ? 0 : 2;
  }
  if (cli_config(&o, &cfg) != 0) {
    free(o.args);
    return 2;
  }
  cfg.store_migrate = 1; /* this command is the request to migrate */
  buf_init(&err, 0);
  if (rag_store_open(&cfg, &st, &err) != RAGD_OK) {
    fprintf(stderr, "ragd migrate: %s\n", err.data ? err.data : "cannot open the store");
    goto out;
  }
  if (st.ops->stats(st.ctx, &stats) != RAGD_OK) {
    fprintf(stderr, "ragd migrate: the store does not answer after migrating\n");
    goto out;
  }
  printf("%s store schema is current: %zu documents, %zu chunks\n", st.ops->name,
         stats.documents, stats.chunks);
  status = 0;
out:
  store_close(&st);
  buf_dispose(&err);
  config_dispose(&cfg);
  free(o.args);
  return status;
}
