/* cli.h - the ragd command line: one file per subcommand. Private to cli/. */
#ifndef RAGD_CLI_H
#define RAGD_CLI_H

#include "util/config.h"

/* Each returns the process exit status. argv[0] is the subcommand name. */
int cli_serve(int argc, char **argv);
int cli_ingest(int argc, char **argv);
int cli_search(int argc, char **argv);
int cli_ask(int argc, char **argv);
int cli_tokens(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_reindex(int argc, char **argv);

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

#endif
