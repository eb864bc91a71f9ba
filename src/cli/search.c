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
  struct cli_run run;
  struct store_hit_list hits = {0};
  int status = cli_start(&run, argc, argv, "dk", help, 1, 1, 0);
  ragd_err rc;
  if (status >= 0) return status;
  status = 1;
  rc = rag_search(&run.engine, run.opts.args[0], (size_t)run.cfg.top_k, &hits);
  if (rc) {
    fprintf(stderr, "ragd search: %s\n", ragd_strerror(rc));
    goto out;
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
out:
  cli_finish(&run);
  return status;
}
