/* main.c - `ragd COMMAND ...`: dispatch, shared option parsing and --help. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "util/log.h"

static const char usage[] =
    "ragd - a customer-support answer engine: ingest your knowledge base, ask\n"
    "questions in Korean or English, get cited answers streamed over SSE.\n"
    "\n"
    "Usage:\n"
    "  ragd serve  [--listen HOST:PORT] [--data DIR]   serve the HTTP API\n"
    "  ragd ingest [--data DIR] PATH...                add .md .txt .html .json files or folders\n"
    "  ragd search [--data DIR] [--k N] \"question\"     print the best passages with scores\n"
    "  ragd ask    [--data DIR] [--k N] \"question\"     stream an answer, then its sources\n"
    "  ragd eval   --corpus F --queries F --qrels F    retrieval (and answer) quality on a\n"
    "              [--mode M] [--json] [--answers F]   BEIR-format test collection\n"
    "  ragd tokens [--encoding E | --model M] [--ids]  exact LLM token count of stdin\n"
    "  ragd reindex [--data DIR]                       re-embed after an embedding model switch\n"
    "  ragd migrate [--data DIR]                       create or upgrade the store schema\n"
    "  ragd feedback export [--data DIR] [--since W]   answer ratings as CSV\n"
    "  ragd keys create|list|revoke [--data DIR] ...   API keys for the HTTP API\n"
    "  ragd doctor [--data DIR] [--listen HOST:PORT]   check the configuration and dependencies\n"
    "  ragd COMMAND --help                             help for one command\n"
    "\n"
    "Quick start:\n"
    "  ragd ingest examples/kb/en examples/kb/ko\n"
    "  ragd ask \"How long does a refund take?\"\n"
    "  ragd serve    # then: curl -N localhost:8080/v1/chat -H 'Content-Type: application/json' \\\n"
    "                #         -d '{\"message\":\"환불은 언제 되나요?\"}'\n"
    "\n"
    "Settings: flags override RAGD_* environment variables, which override the\n"
    "defaults. Unknown RAGD_* variables are refused at start-up.\n";

static void print_help(void) {
  struct buf vars;
  buf_init(&vars, 0);
  config_describe(&vars);
  printf("%s\nEnvironment:\n%s", usage, vars.data ? vars.data : "");
  buf_dispose(&vars);
}

int cli_parse(int argc, char **argv, const char *allowed, struct cli_opts *out) {
  memset(out, 0, sizeof *out);
  out->args = calloc((size_t)argc + 1, sizeof *out->args);
  if (!out->args) return -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char **slot = NULL;
    char flag = 0;
    if (strcmp(a, "--") == 0) {
      for (i++; i < argc; i++) out->args[out->nargs++] = argv[i];
      break;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      out->help = 1;
      continue;
    }
    if (strncmp(a, "--", 2) != 0) {
      out->args[out->nargs++] = argv[i];
      continue;
    }
    if (strncmp(a, "--data", 6) == 0 && (a[6] == 0 || a[6] == '=')) {
      slot = &out->data;
      flag = 'd';
    } else if (strncmp(a, "--listen", 8) == 0 && (a[8] == 0 || a[8] == '=')) {
      slot = &out->listen;
      flag = 'l';
    } else if (strncmp(a, "--k", 3) == 0 && (a[3] == 0 || a[3] == '=')) {
      slot = &out->k;
      flag = 'k';
    }
    if (!slot || !strchr(allowed, flag)) {
      fprintf(stderr, "ragd %s: unknown option %s (see ragd %s --help)\n", argv[0], a, argv[0]);
      return -1;
    }
    if (strchr(a, '=')) {
      *slot = strchr(a, '=') + 1;
    } else if (i + 1 < argc) {
      *slot = argv[++i];
    } else {
      fprintf(stderr, "ragd %s: %s needs a value\n", argv[0], a);
      return -1;
    }
  }
  return 0;
}

int cli_config(const struct cli_opts *o, struct ragd_config *cfg) {
  struct buf err;
  ragd_err rc;
  buf_init(&err, 0);
  config_init(cfg);
  rc = config_load_env(cfg, &err);
  if (!rc && o->data) rc = config_set(cfg, "RAGD_DATA", o->data, &err);
  if (!rc && o->listen) rc = config_set(cfg, "RAGD_LISTEN", o->listen, &err);
  if (!rc && o->k) {
    rc = config_set(cfg, "RAGD_TOP_K", o->k, &err);
    if (rc) {
      buf_reset(&err);
      buf_appendf(&err, "--k: expected an integer from 1 to 50, got \"%s\"", o->k);
    }
  }
  if (!rc) rc = config_finish(cfg, &err);
  if (rc) {
    fprintf(stderr, "ragd: configuration error: %s\n", err.data ? err.data : ragd_strerror(rc));
    buf_dispose(&err);
    config_dispose(cfg);
    return -1;
  }
  buf_dispose(&err);
  log_set_level((enum log_level)log_level_parse(cfg->log_level));
  return 0;
}

int cli_start(struct cli_run *run, int argc, char **argv, const char *allowed, const char *help,
              int nargs_min, int nargs_max, int with_llm) {
  struct buf err;
  ragd_err rc;
  memset(run, 0, sizeof *run);
  if (cli_parse(argc, argv, allowed, &run->opts) != 0) {
    free(run->opts.args);
    return 2;
  }
  if (run->opts.help || run->opts.nargs < nargs_min || run->opts.nargs > nargs_max) {
    fputs(help, run->opts.help ? stdout : stderr);
    free(run->opts.args);
    return run->opts.help ? 0 : 2;
  }
  if (cli_config(&run->opts, &run->cfg) != 0) {
    free(run->opts.args);
    return 2;
  }
  run->cfg_ready = 1;
  buf_init(&err, 0);
  rc = rag_engine_open(&run->cfg, with_llm, &run->engine, &err);
  if (rc) {
    fprintf(stderr, "ragd %s: %s\n", argv[0], err.data ? err.data : ragd_strerror(rc));
    buf_dispose(&err);
    cli_finish(run);
    return 1;
  }
  buf_dispose(&err);
  run->engine_ready = 1;
  return -1;
}

void cli_finish(struct cli_run *run) {
  if (run->engine_ready) {
    llm_runtime_shutdown();
    rag_engine_close(&run->engine);
  }
  if (run->cfg_ready) config_dispose(&run->cfg);
  free(run->opts.args);
  memset(run, 0, sizeof *run);
}

int main(int argc, char **argv) {
  static const struct {
    const char *name;
    int (*fn)(int, char **);
  } commands[] = {
      {"serve", cli_serve}, {"ingest", cli_ingest}, {"search", cli_search}, {"ask", cli_ask},
      {"eval", cli_eval}, {"reindex", cli_reindex}, {"tokens", cli_tokens},
      {"migrate", cli_migrate}, {"feedback", cli_feedback}, {"keys", cli_keys},
      {"doctor", cli_doctor}};
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    print_help();
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("ragd %s (%s)\n", RAGD_VERSION, RAGD_GIT_COMMIT);
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "ragd: unknown command \"%s\" (see ragd --help)\n", argv[1]);
  return 2;
}
