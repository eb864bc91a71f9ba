/* search.c - `ragd search`: ranked passages with their scores. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "rag/rag.h"
#include "text/text.h"

static const char help[] =
    "Usage: ragd search [--data DIR] [--k N] \"question\"\n"
    "\n"
    "Prints the N best passages for the question, best first, with their BM25\n"
    "scores, document ids and section headings.\n"
    "\n"
    "  --data DIR   data folder (RAGD_DATA, default ./data)\n"
    "  --k N        number of passages (RAGD_TOP_K, default 5)\n";

int cli_search(int argc, char **argv) {
  struct cli_opts o;
  struct ragd_config cfg;
  struct rag_engine engine;
  struct store_hit_list hits = {0};
  struct buf err;
  int status = 1;
  ragd_err rc;

  if (cli_parse(argc, argv, "dk", &o) != 0) return 2;
  if (o.help || o.nargs != 1) {
    fputs(help, o.help ? stdout : stderr);
    free(o.args);
    return o.help ? 0 : 2;
  }
  if (cli_config(&o, &cfg) != 0) {
    free(o.args);
    return 2;
  }
  buf_init(&err, 0);
  rc = rag_engine_open(&cfg, 0, &engine, &err);
  if (rc) {
    fprintf(stderr, "ragd search: %s\n", err.data ? err.data : ragd_strerror(rc));
    goto out;
  }
  rc = rag_search(&engine, o.args[0], (size_t)cfg.top_k, &hits);
  if (rc) {
    fprintf(stderr, "ragd search: %s\n", ragd_strerror(rc));
    goto out_engine;
  }
  if (hits.count == 0) printf("No passage matches.\n");
  for (size_t i = 0; i < hits.count; i++) {
    const struct store_hit *h = &hits.items[i];
    size_t len = strlen(h->text);
    size_t cut = text_utf8_prefix(h->text, len, 300);
    /* The heading path starts at the document's own h1, so it names the
     * document already; the title stands in when there are no headings. */
    printf("%zu. score %.4f  %s", i + 1, h->score,
           h->heading_path && h->heading_path[0] ? h->heading_path : h->title);
    printf("\n   %s\n   %.*s%s\n\n", h->chunk_id, (int)cut, h->text, cut < len ? "…" : "");
  }
  status = 0;
  store_hit_list_dispose(&hits);
out_engine:
  rag_engine_close(&engine);
out:
  buf_dispose(&err);
  config_dispose(&cfg);
  free(o.args);
  return status;
}
