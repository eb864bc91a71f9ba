/* cli.h - the ragd command line: one file per subcommand. Private to cli/. */
#ifndef RAGD_CLI_H
#define RAGD_CLI_H

#include "rag/rag.h"
#include "util/config.h"

/* Each returns the process exit status. argv[0] is the subcommand name. */
int cli_serve(int argc, char **argv);
int cli_ingest(int argc, char **argv);
int cli_search(int argc, char **argv);
int cli_ask(int argc, char **argv);
int cli_tokens(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_reindex(int argc, char **argv);
int cli_migrate(int argc, char **argv);
int cli_feedback(int argc, char **argv);
int cli_keys(int argc, char **argv);
int cli_doctor(int argc, char **argv);

/* Option parsing shared by the subcommands. */
struct cli_opts {
  const char *data;   /* --data DIR */
  const char *listen; /* --listen HOST:PORT */
  const char *k;      /* --k N */
  int help;
  char **args; /* positional arguments (borrowed from argv) */
  int nargs;
};

/* Parses argv[1..]. allowed is a string of the options this command takes
 * ("d" data, "l" listen, "k" k). Prints an error and returns -1 on a bad or
 * unknown option. */
int cli_parse(int argc, char **argv, const char *allowed, struct cli_opts *out);
/* config_init + environment + the parsed flags + config_finish; prints the
 * error naming the variable and returns -1 on failure. */
int cli_config(const struct cli_opts *o, struct ragd_config *cfg);

/* A command that works on the knowledge base: its options, configuration
 * and open engine. */
struct cli_run {
  struct cli_opts opts;
  struct ragd_config cfg;
  struct rag_engine engine;
  int cfg_ready;
  int engine_ready;
};

/* The common start of such a command: parses argv with the options in
 * allowed, prints help (to stdout on --help, to stderr when the number of
 * positional arguments is outside nargs_min..nargs_max), loads the
 * configuration and opens the engine (with_llm: also the generators).
 * Returns -1 when the command goes on (then call cli_finish), otherwise the
 * exit status to return at once (0 after --help, 2 for usage or
 * configuration errors, 1 when the engine cannot open). */
int cli_start(struct cli_run *run, int argc, char **argv, const char *allowed, const char *help,
              int nargs_min, int nargs_max, int with_llm);
/* Closes what cli_start opened. */
void cli_finish(struct cli_run *run);

#endif
