/* doctor.c - `ragd doctor`: checks what a deployment needs and says in plain
 * words what is wrong. Unlike the other commands it does not stop at the
 * first problem: a configuration error is one finding among the others, and
 * every check that can still run does.
 *
 * Each check prints one line, "ok", "FAIL" or "skip", to stdout. The exit
 * status is 0 only when no check failed (skips do not count), 1 otherwise,
 * 2 for a usage error. Logs stay off unless RAGD_LOG_LEVEL asks for them:
 * the report says everything in its own words. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "http/http.h"
#include "llm/llm.h"
#include "store/store.h"
#include "text/text.h"
#include "util/json.h"
#include "util/log.h"

#define DOCTOR_PROBE_TIMEOUT_MS 5000

static const char help[] =
    "Usage: ragd doctor [--listen HOST:PORT] [--data DIR]\n"
    "\n"
    "Checks the configuration (RAGD_* variables and flags, as `ragd serve` reads\n"
    "them) and what a deployment needs, and prints what is wrong in plain words:\n"
    "  - the configuration is valid\n"
    "  - the data folder is writable (SQLite)\n"
    "  - the store opens and its schema is current (SQLite or PostgreSQL)\n"
    "  - each generator of the chain and the embedding endpoint answer one tiny\n"
    "    authenticated call (GET {base}/models, 5 s timeout) and list the model\n"
    "  - each model is in the price table (RAGD_PRICES) and the token table\n"
    "    (RAGD_MODELS_FILE)\n"
    "  - the listen address is free\n"
    "  - at least one API key (ragd keys), when listening beyond loopback\n"
    "Exit status: 0 when everything holds, 1 when something does not.\n";

struct doctor {
  int failures;
  int skips;
};

static void report(struct doctor *d, const char *verdict, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report(struct doctor *d, const char *verdict, const char *fmt, ...) {
  va_list ap;
  if (strcmp(verdict, "FAIL") == 0) d->failures++;
  if (strcmp(verdict, "skip") == 0) d->skips++;
  printf("  %-5s ", verdict);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
}

/* ---- configuration ---- */

/* Loads the configuration like cli_config, but reports instead of exiting.
 * Returns 1 when cfg is complete (config_finish ran); 0 when the checks
 * below must make do with what was read. */
static int check_config(struct doctor *d, const struct cli_opts *o, struct ragd_config *cfg) {
  struct buf err;
  int complete = 0;
  buf_init(&err, 0);
  config_init(cfg);
  /* config_load_env stops at the first bad variable. Report it, drop it from
   * this process's environment and read again, so that every bad variable
   * is named and the checks below see all the good ones. */
  for (int tries = 0; tries < 64 && config_load_env(cfg, &err) != RAGD_OK; tries++) {
    const char *msg = err.data ? err.data : "invalid";
    size_t n = strcspn(msg, ": ");
    char name[128];
    report(d, "FAIL", "configuration: %s", msg);
    if (strncmp(msg, "RAGD_", 5) != 0 || msg[n] != ':' || n >= sizeof name) break;
    memcpy(name, msg, n);
    name[n] = '\0';
    unsetenv(name);
    buf_reset(&err);
    config_dispose(cfg);
    config_init(cfg);
  }
  buf_reset(&err);
  if (o->data && config_set(cfg, "RAGD_DATA", o->data, &err) != RAGD_OK) {
    report(d, "FAIL", "--data: %s", err.data ? err.data : "invalid");
    buf_reset(&err);
  }
  if (o->listen && config_set(cfg, "RAGD_LISTEN", o->listen, &err) != RAGD_OK) {
    report(d, "FAIL", "--listen: %s", err.data ? err.data : "invalid");
    buf_reset(&err);
  }
  if (config_finish(cfg, &err) != RAGD_OK) {
    report(d, "FAIL", "configuration: %s", err.data ? err.data : "invalid");
  } else {
    complete = 1;
    if (d->failures == 0) report(d, "ok", "configuration: RAGD_* variables and flags are valid");
  }
  buf_dispose(&err);
  return complete;
}

/* ---- data folder and store ---- */

static int spec_is_postgres(const char *spec) {
  return strncmp(spec, "postgres://", 11) == 0 || strncmp(spec, "postgresql://", 13) == 0;
}

/* The store spec `ragd serve` would open (see rag_store_open). */
static const char *store_spec(const struct ragd_config *cfg) {
  return cfg->store && cfg->store[0] ? cfg->store : cfg->data_dir;
}

/* The SQLite data folder of spec, or NULL for PostgreSQL. */
static const char *sqlite_folder(const char *spec) {
  if (spec_is_postgres(spec)) return NULL;
  if (strncmp(spec, "sqlite:", 7) == 0) return spec + 7;
  return spec;
}

/* Creates dir when missing (as the store would), then writes and removes a
 * file in it. Returns 1 when the folder is usable. */
static int check_data_folder(struct doctor *d, const char *dir) {
  struct stat st;
  struct buf probe;
  int fd = -1, ok = 0, created = 0;
  buf_init(&probe, 0);
  if (stat(dir, &st) != 0) {
    if (errno != ENOENT || mkdir(dir, 0750) != 0) {
      report(d, "FAIL", "data folder %s: cannot create it: %s", dir, strerror(errno));
      goto out;
    }
    created = 1;
  } else if (!S_ISDIR(st.st_mode)) {
    report(d, "FAIL", "data folder %s: exists but is not a folder", dir);
    goto out;
  }
  if (buf_appendf(&probe, "%s/.ragd-doctor-XXXXXX", dir) != RAGD_OK) goto out;
  fd = mkstemp(probe.data);
  if (fd < 0 || write(fd, "ok\n", 3) != 3) {
    report(d, "FAIL", "data folder %s: cannot write a file in it: %s (the store needs to)", dir,
           strerror(errno));
    goto out;
  }
  report(d, "ok", "data folder %s: %s and writable", dir, created ? "created" : "exists");
  ok = 1;
out:
  if (fd >= 0) {
    close(fd);
    unlink(probe.data);
  }
  buf_dispose(&probe);
  return ok;
}

/* Opens the store without upgrading a PostgreSQL schema (SQLite, embedded,
 * always brings its own file to the current schema, as serve would).
 * Returns the number of active API keys, -1 when the store did not open. */
static long check_store(struct doctor *d, const struct ragd_config *cfg) {
  struct store_options opts;
  struct store st;
  struct store_stats stats = {0};
  size_t keys = 0;
  const char *spec = store_spec(cfg);
  int pg = spec_is_postgres(spec);
  const char *shown = pg ? "PostgreSQL (connection URI)" : spec;
  ragd_err rc;
  memset(&st, 0, sizeof st);
  store_options_default(&opts);
  opts.pool_size = 1;
  opts.statement_timeout_ms = cfg->store_timeout_ms;
  opts.migrate = 0;
  rc = store_open_ex(spec, &opts, &st);
  if (rc == RAGD_ECONFIG && pg) {
    report(d, "FAIL", "store %s: its schema is not the one this ragd needs: run `ragd migrate`",
           shown);
    return -1;
  }
  if (rc) {
    report(d, "FAIL", "store %s: cannot open it: %s%s", shown, ragd_strerror(rc),
           pg ? " (is the server up, are the user, password and database right?)" : "");
    return -1;
  }
  st.ops->stats(st.ctx, &stats);
  /* A store without keys support has none (see store.h). */
  if (st.ops->key_count && st.ops->key_count(st.ctx, &keys) != RAGD_OK) {
    report(d, "FAIL", "store %s: opens, but its API keys cannot be read", shown);
    store_close(&st);
    return -1;
  }
  report(d, "ok", "store %s: opens, schema current, %zu documents (%zu chunks)",
         pg ? "PostgreSQL" : spec, stats.documents, stats.chunks);
  store_close(&st);
  return (long)keys;
}

/* ---- endpoints and models ---- */

/* Whether a /models answer lists model: OpenAI and Anthropic send
 * {"data":[{"id"}]}, Gemini {"models":[{"name":"models/..."}]}. Returns -1
 * when the body holds no such list. */
static int models_list_has(const struct buf *body, const char *model, size_t *count) {
  json_t *root = body->data ? json_loadb(body->data, body->len, 0, NULL) : NULL;
  json_t *list = NULL, *item;
  size_t i;
  int found = -1;
  *count = 0;
  if (json_is_object(root)) {
    list = json_object_get(root, "data");
    if (!json_is_array(list)) list = json_object_get(root, "models");
  }
  if (!json_is_array(list)) goto out;
  found = 0;
  *count = json_array_size(list);
  json_array_foreach(list, i, item) {
    const char *id = json_get_str(item, "id");
    const char *name = json_get_str(item, "name");
    if (name && strncmp(name, "models/", 7) == 0) name += 7;
    if ((id && strcmp(id, model) == 0) || (name && strcmp(name, model) == 0)) found = 1;
  }
out:
  json_decref(root);
  return found;
}

/* One GET {base}/models. what names the endpoint in the report, key_var the
 * variable that holds its key. */
static void check_endpoint(struct doctor *d, const char *what, const char *provider,
                           const char *base_url, const char *api_key, const char *ca_file,
                           const char *model, const char *key_var) {
  struct buf body, detail;
  long status = 0;
  size_t listed = 0;
  int has;
  ragd_err rc;
  buf_init(&body, 0);
  buf_init(&detail, 0);
  if (!base_url || !base_url[0]) {
    report(d, "FAIL", "%s (%s): no base URL is set", what, provider);
    goto out;
  }
  rc = llm_probe(provider, base_url, api_key, ca_file, DOCTOR_PROBE_TIMEOUT_MS, &status, &body,
                 &detail);
  if (rc) {
    report(d, "FAIL", "%s (%s): cannot reach %s: %s", what, provider, base_url,
           detail.data ? detail.data : ragd_strerror(rc));
    goto out;
  }
  if (status == 401 || status == 403) {
    report(d, "FAIL", "%s (%s): %s refused the API key (HTTP %ld): check %s%s", what, provider,
           base_url, status, key_var, api_key && api_key[0] ? "" : ", which is not set");
    goto out;
  }
  if (status < 200 || status > 299) {
    report(d, "FAIL", "%s (%s): %s answered HTTP %ld to GET /models%s", what, provider, base_url,
           status, status == 404 ? ": is the base URL right (OpenAI-style ones end in /v1)?" : "");
    goto out;
  }
  has = models_list_has(&body, model ? model : "", &listed);
  if (has == 0) {
    report(d, "FAIL", "%s (%s): %s answers, but its %zu models do not include \"%s\"", what,
           provider, base_url, listed, model ? model : "");
    goto out;
  }
  report(d, "ok", "%s (%s): %s answers with the key%s", what, provider, base_url,
         has == 1 ? " and lists the model" : "");
out:
  buf_dispose(&body);
  buf_dispose(&detail);
}

/* The model in the price table (cost in /metrics) and the token table
 * (prompt budget). */
static void check_model_tables(struct doctor *d, const struct ragd_config *cfg,
                               const struct rag_price *prices, size_t price_count,
                               const struct text_model_table *models, const char *model) {
  struct rag_price price;
  struct text_model tm;
  int priced = rag_price_lookup(prices, price_count, model, &price);
  int counted = models && text_model_lookup(models, model, &tm) == RAGD_OK;
  if (priced && counted) {
    report(d, "ok", "model %s: priced at $%g / $%g per 1M tokens in / out; %s, %ld-token window",
           model, price.input_per_million, price.output_per_million,
           text_bpe_encoding_name(tm.encoding), tm.context_window);
    return;
  }
  if (!priced)
    report(d, "FAIL", "model %s: not in the price table, so its cost reads 0 in /metrics: add "
                      "\"%s=INPUT/OUTPUT\" (USD per 1M tokens) to RAGD_PRICES",
           model, model);
  if (!counted)
    report(d, "FAIL", "model %s: not in the token table, so prompts are budgeted for %ld "
                      "tokens with an approximate count: add \"%s ENCODING WINDOW RESERVE\" to "
                      "the RAGD_MODELS_FILE file%s",
           model, cfg->llm_context_window ? cfg->llm_context_window : 8192L, model,
           cfg->models_file && cfg->models_file[0] ? "" : " (and set RAGD_MODELS_FILE)");
}

static void key_var_name(char *out, size_t n, const struct config_llm_entry *g, int chained) {
  if (chained)
    snprintf(out, n, "RAGD_LLM_%s_API_KEY", g->name);
  else
    snprintf(out, n, "RAGD_LLM_API_KEY");
}

static void check_generators(struct doctor *d, const struct ragd_config *cfg) {
  struct rag_price *prices = NULL;
  size_t price_count = 0;
  struct text_model_table *models = NULL;
  struct buf err;
  int chained = cfg->llm_chain_spec && cfg->llm_chain_spec[0];
  buf_init(&err, 0);
  if (rag_prices_parse(cfg->prices, &prices, &price_count, &err) != RAGD_OK) {
    report(d, "FAIL", "RAGD_PRICES: %s", err.data ? err.data : "invalid");
    buf_reset(&err);
  }
  if (text_model_table_load(cfg->models_file, &models, &err) != RAGD_OK) {
    report(d, "FAIL", "RAGD_MODELS_FILE: %s", err.data ? err.data : "cannot be read");
    buf_reset(&err);
  }
  if (cfg->llm_chain_count == 0)
    report(d, "ok", "generator: extractive (offline, answers from the passages): nothing to reach");
  for (size_t i = 0; i < cfg->llm_chain_count; i++) {
    const struct config_llm_entry *g = &cfg->llm_chain[i];
    char what[160], key_var[160];
    if (strcmp(g->provider, "extractive") == 0) {
      report(d, "ok", "generator %s: extractive (offline): nothing to reach", g->name);
      continue;
    }
    snprintf(what, sizeof what, "generator %s, model %s", g->name, g->model);
    key_var_name(key_var, sizeof key_var, g, chained);
    check_endpoint(d, what, g->provider, g->base_url, g->api_key, cfg->llm_ca_file, g->model,
                   key_var);
    check_model_tables(d, cfg, prices, price_count, models, g->model);
  }
  rag_prices_free(prices, price_count);
  text_model_table_free(models);
  buf_dispose(&err);
}

static void check_embedder(struct doctor *d, const struct ragd_config *cfg) {
  const char *name = cfg->embedder ? cfg->embedder : "";
  int remote = strcmp(name, "openai") == 0 ||
               (!name[0] && cfg->embed_base_url && cfg->embed_base_url[0]);
  char what[160];
  if (!remote) {
    report(d, "ok", "embedder: %s (offline): nothing to reach", name[0] ? name : "hash");
    return;
  }
  snprintf(what, sizeof what, "embedder, model %s", cfg->embed_model);
  check_endpoint(d, what, "openai", cfg->embed_base_url, cfg->embed_api_key, NULL,
                 cfg->embed_model, "RAGD_EMBED_API_KEY");
}

/* ---- listening ---- */

/* Binds and listens on the address as the server would, then lets go. */
static void check_listen(struct doctor *d, const struct ragd_config *cfg) {
  struct sockaddr_storage ss;
  struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
  socklen_t len;
  int fd = -1, one = 1;
  const char *host = strcmp(cfg->listen_host, "localhost") == 0 ? "127.0.0.1" : cfg->listen_host;
  memset(&ss, 0, sizeof ss);
  if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)cfg->listen_port);
    len = sizeof *sin;
  } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)cfg->listen_port);
    len = sizeof *sin6;
  } else {
    report(d, "FAIL", "listen address %s: \"%s\" is not a numeric IPv4 or IPv6 address",
           cfg->listen, cfg->listen_host);
    return;
  }
  fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 1) != 0) {
    int e = errno;
    report(d, "FAIL", "listen address %s: %s", cfg->listen,
           e == EADDRINUSE     ? "already in use (another ragd, or another program, listens there)"
           : e == EADDRNOTAVAIL ? "not an address of this machine"
           : e == EACCES        ? "needs privileges (ports below 1024)"
                                : strerror(e));
  } else {
    report(d, "ok", "listen address %s: free%s", cfg->listen,
           cfg->listen_port == 0 ? " (port 0: any free port)" : "");
  }
  if (fd >= 0) close(fd);
}

/* What `ragd serve` decides at start: beyond loopback it needs a key, or
 * RAGD_ALLOW_OPEN=1. keys is -1 when the store could not tell. */
static void check_keys(struct doctor *d, const struct ragd_config *cfg, long keys) {
  int loopback = http_host_is_loopback(cfg->listen_host);
  if (keys > 0) {
    report(d, "ok", "API keys: %ld active; every route but the health checks, the chat page "
                    "and the API description needs one",
           keys);
  } else if (keys < 0) {
    report(d, "skip", "API keys: unknown, the store did not open");
  } else if (loopback) {
    report(d, "ok", "API keys: none, and none needed: %s is loopback only", cfg->listen_host);
  } else if (cfg->allow_open) {
    report(d, "skip", "API keys: none, and RAGD_ALLOW_OPEN=1: anyone who can reach %s can read "
                      "and change the knowledge base",
           cfg->listen);
  } else {
    report(d, "FAIL", "API keys: none, so `ragd serve` refuses to listen on %s: create one with "
                      "`ragd keys create --scope admin`, listen on loopback, or set "
                      "RAGD_ALLOW_OPEN=1 to serve without authentication on purpose",
           cfg->listen);
  }
}

int cli_doctor(int argc, char **argv) {
  struct cli_opts opts;
  struct ragd_config cfg;
  struct doctor d = {0, 0};
  const char *folder;
  int complete, folder_ok = 1, status;
  long keys = -1;
  if (cli_parse(argc, argv, "dl", &opts) != 0) {
    free(opts.args);
    return 2;
  }
  if (opts.help || opts.nargs > 0) {
    fputs(help, opts.help ? stdout : stderr);
    free(opts.args);
    return opts.help ? 0 : 2;
  }
  log_set_level(LOG_OFF);
  printf("ragd doctor: checking what `ragd serve` needs\n\n");
  complete = check_config(&d, &opts, &cfg);
  if (getenv("RAGD_LOG_LEVEL") && log_level_parse(cfg.log_level) >= 0)
    log_set_level((enum log_level)log_level_parse(cfg.log_level));
  folder = sqlite_folder(store_spec(&cfg));
  if (folder)
    folder_ok = check_data_folder(&d, folder);
  else
    report(&d, "ok", "data folder: not used (the store is PostgreSQL)");
  if (folder_ok)
    keys = check_store(&d, &cfg);
  else
    report(&d, "skip", "store: not opened, its data folder is not usable");
  if (complete && llm_runtime_init() == RAGD_OK) {
    check_generators(&d, &cfg);
    check_embedder(&d, &cfg);
    llm_runtime_shutdown();
  } else {
    report(&d, "skip", "generators and embedder: %s",
           complete ? "cannot start the HTTP client" : "the configuration is incomplete");
    if (complete) d.failures++;
  }
  if (complete) {
    check_listen(&d, &cfg);
    check_keys(&d, &cfg, keys);
  } else {
    report(&d, "skip", "listen address and API keys: the configuration is incomplete");
  }
  if (d.failures)
    printf("\n%d problem%s found: `ragd serve` would not work as configured.\n", d.failures,
           d.failures == 1 ? "" : "s");
  else
    printf("\nEverything holds.\n");
  status = d.failures ? 1 : 0;
  config_dispose(&cfg);
  free(opts.args);
  return status;
}
