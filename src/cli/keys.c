/* keys.c - `ragd keys create|list|revoke`: the API keys of the HTTP API.
 *
 * A key is made by api_key_issue (api/keys.c, shared with POST /v1/keys):
 * it is printed once, by create, and never stored. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "cli/cli.h"


static const char help[] =
    "Usage: ragd keys create [--data DIR] --scope query|admin [--name NAME]\n"
    "                        [--rpm N] [--streams N]\n"
    "       ragd keys list   [--data DIR]\n"
    "       ragd keys revoke [--data DIR] ID\n"
    "\n"
    "API keys for the HTTP API, sent as \"Authorization: Bearer KEY\".\n"
    "\n"
    "  create   makes a key and prints it once, alone on the last line; only its\n"
    "           SHA-256 is stored. A query key may chat and search; an admin key\n"
    "           may also add, list and delete documents, and manage keys over\n"
    "           HTTP (POST/GET /v1/keys, DELETE /v1/keys/ID).\n"
    "  list     every key: id, scope, limits, when created, whether revoked.\n"
    "  revoke   refuses the key with this id (from `list`) from now on; running\n"
    "           servers notice within a second.\n"
    "\n"
    "  --scope query|admin   what the key may do (required for create)\n"
    "  --name NAME           a label for people (e.g. \"help-center widget\")\n"
    "  --rpm N               requests per minute for this key (default\n"
    "                        RAGD_RATE_LIMIT_RPM of the server)\n"
    "  --streams N           requests in flight for this key, streams until they\n"
    "                        end (default RAGD_RATE_LIMIT_STREAMS)\n"
    "  --data DIR            data folder (RAGD_DATA, default ./data)\n"
    "\n"
    "While no key exists, `ragd serve` answers everyone, and therefore listens\n"
    "on loopback only (unless RAGD_ALLOW_OPEN=1).\n";

struct keys_opts {
  const char *scope, *name, *rpm, *streams;
};

/* Takes the options only `keys` knows out of argv (in place) and leaves the
 * rest for cli_start. Returns the new argc, or -1 after printing an error. */
static int keys_take_opts(int argc, char **argv, struct keys_opts *ko) {
  int out = 1;
  memset(ko, 0, sizeof *ko);
  for (int i = 1; i < argc; i++) {
    static const char *const names[] = {"--scope", "--name", "--rpm", "--streams"};
    const char **slots[] = {&ko->scope, &ko->name, &ko->rpm, &ko->streams};
    int taken = 0;
    if (strcmp(argv[i], "--") == 0) {
      while (i < argc) argv[out++] = argv[i++];
      break;
    }
    for (size_t n = 0; n < sizeof names / sizeof names[0] && !taken; n++) {
      size_t len = strlen(names[n]);
      if (strncmp(argv[i], names[n], len) != 0 || (argv[i][len] != '\0' && argv[i][len] != '='))
        continue;
      taken = 1;
      if (argv[i][len] == '=') {
        *slots[n] = argv[i] + len + 1;
      } else if (i + 1 < argc) {
        *slots[n] = argv[++i];
      } else {
        fprintf(stderr, "ragd keys: %s needs a value\n", names[n]);
        return -1;
      }
    }
    if (!taken) argv[out++] = argv[i];
  }
  return out;
}

static int parse_count(const char *what, const char *text, long *out) {
  char *end = NULL;
  long n;
  *out = 0;
  if (!text) return 0;
  errno = 0;
  n = strtol(text, &end, 10);
  if (errno || end == text || *end || n < 1 || n > 100000000L) {
    fprintf(stderr, "ragd keys: %s: expected an integer from 1 to 100000000, got \"%s\"\n", what,
            text);
    return -1;
  }
  *out = n;
  return 0;
}

static void format_time(int64_t t, char *out, size_t n) {
  time_t tt = (time_t)t;
  struct tm tm;
  if (!gmtime_r(&tt, &tm) || strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    snprintf(out, n, "%lld", (long long)t);
}

static int keys_create(struct cli_run *run, const struct keys_opts *ko) {
  const struct store *st = &run->engine.store;
  char secret[API_KEY_SECRET_SIZE], id[API_KEY_ID_SIZE];
  long rpm = 0, streams = 0;
  ragd_err rc;
  if (!ko->scope || (strcmp(ko->scope, "query") != 0 && strcmp(ko->scope, "admin") != 0)) {
    fprintf(stderr, "ragd keys create: --scope must be query or admin\n");
    return 2;
  }
  if (ko->name && strlen(ko->name) > API_KEY_NAME_MAX) {
    fprintf(stderr, "ragd keys create: --name is longer than %d bytes\n", API_KEY_NAME_MAX);
    return 2;
  }
  if (parse_count("--rpm", ko->rpm, &rpm) || parse_count("--streams", ko->streams, &streams))
    return 2;
  rc = api_key_issue(st, ko->scope, ko->name, rpm, streams, secret, id);
  if (rc == RAGD_EUNSUPPORTED) {
    fprintf(stderr, "ragd keys: the %s store does not keep API keys\n", st->ops->name);
    return 1;
  }
  if (rc) {
    fprintf(stderr, "ragd keys create: cannot store the key: %s\n", ragd_strerror(rc));
    return 1;
  }
  printf("created %s key %s%s%s%s\n", ko->scope, id, ko->name ? " (" : "",
         ko->name ? ko->name : "", ko->name ? ")" : "");
  printf("limits: %s requests per minute, %s in flight\n", ko->rpm ? ko->rpm : "server default",
         ko->streams ? ko->streams : "server default");
  printf("The key is shown only now; send it as \"Authorization: Bearer KEY\":\n");
  printf("%s\n", secret);
  return 0;
}

static int keys_list(struct cli_run *run) {
  const struct store *st = &run->engine.store;
  struct store_key_list l = {0};
  ragd_err rc;
  if (!st->ops->key_list) {
    fprintf(stderr, "ragd keys: the %s store does not keep API keys\n", st->ops->name);
    return 1;
  }
  rc = st->ops->key_list(st->ctx, &l);
  if (rc) {
    fprintf(stderr, "ragd keys list: %s\n", ragd_strerror(rc));
    return 1;
  }
  if (l.count == 0) {
    printf("no API keys (the server is open, on loopback only); create one with\n"
           "  ragd keys create --scope admin\n");
    return 0;
  }
  printf("%-12s %-6s %-8s %-8s %-21s %-30s %s\n", "ID", "SCOPE", "RPM", "STREAMS", "CREATED",
         "STATUS", "NAME");
  for (size_t i = 0; i < l.count; i++) {
    const struct store_key *k = &l.items[i];
    char created[32], revoked[32], status[48], rpm[24], streams[24];
    format_time(k->created_at, created, sizeof created);
    if (k->revoked_at) {
      format_time(k->revoked_at, revoked, sizeof revoked);
      snprintf(status, sizeof status, "revoked %s", revoked);
    } else {
      snprintf(status, sizeof status, "active");
    }
    if (k->rpm)
      snprintf(rpm, sizeof rpm, "%ld", k->rpm);
    else
      snprintf(rpm, sizeof rpm, "default");
    if (k->streams)
      snprintf(streams, sizeof streams, "%ld", k->streams);
    else
      snprintf(streams, sizeof streams, "default");
    printf("%-12s %-6s %-8s %-8s %-21s %-30s %s\n", k->id, k->scope, rpm, streams, created, status,
           k->name);
  }
  store_key_list_dispose(&l);
  return 0;
}

static int keys_revoke(struct cli_run *run, const char *id) {
  const struct store *st = &run->engine.store;
  ragd_err rc;
  if (!st->ops->key_revoke) {
    fprintf(stderr, "ragd keys: the %s store does not keep API keys\n", st->ops->name);
    return 1;
  }
  rc = st->ops->key_revoke(st->ctx, id);
  if (rc == RAGD_ENOTFOUND) {
    fprintf(stderr, "ragd keys revoke: no active key has the id \"%s\" (see ragd keys list)\n", id);
    return 1;
  }
  if (rc) {
    fprintf(stderr, "ragd keys revoke: %s\n", ragd_strerror(rc));
    return 1;
  }
  printf("revoked %s; running servers refuse it within a second\n", id);
  return 0;
}

int cli_keys(int argc, char **argv) {
  struct keys_opts ko;
  struct cli_run run;
  const char *sub;
  int status, nargs;
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    fputs(help, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  sub = argv[1];
  if (strcmp(sub, "create") != 0 && strcmp(sub, "list") != 0 && strcmp(sub, "revoke") != 0) {
    fprintf(stderr, "ragd keys: unknown subcommand \"%s\" (create, list or revoke)\n", sub);
    return 2;
  }
  /* cli_start sees "keys" followed by what the subcommand got. */
  argv[1] = argv[0];
  argc = keys_take_opts(argc - 1, argv + 1, &ko);
  if (argc < 0) return 2;
  if (strcmp(sub, "create") != 0 && (ko.scope || ko.name || ko.rpm || ko.streams)) {
    fprintf(stderr, "ragd keys %s: --scope, --name, --rpm and --streams belong to create\n", sub);
    return 2;
  }
  nargs = strcmp(sub, "revoke") == 0 ? 1 : 0;
  status = cli_start(&run, argc, argv + 1, "d", help, nargs, nargs, 0);
  if (status >= 0) return status;
  if (strcmp(sub, "create") == 0)
    status = keys_create(&run, &ko);
  else if (strcmp(sub, "list") == 0)
    status = keys_list(&run);
  else
    status = keys_revoke(&run, run.opts.args[0]);
  cli_finish(&run);
  return status;
}
