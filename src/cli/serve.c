/* serve.c - `ragd serve`: the HTTP API until SIGINT or SIGTERM. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "cli/cli.h"
#include "util/clock.h"
#include "util/log.h"

static const char help[] =
    "Usage: ragd serve [--listen HOST:PORT] [--data DIR]\n"
    "\n"
    "Serves the HTTP API (POST /v1/chat, /v1/search, /v1/documents, GET /healthz,\n"
    "/readyz) for the knowledge base in DIR. Stops cleanly on Ctrl-C or SIGTERM.\n"
    "\n"
    "  --listen HOST:PORT   address to listen on (RAGD_LISTEN, default 127.0.0.1:8080;\n"
    "                       port 0 picks a free port)\n"
    "  --data DIR           data folder (RAGD_DATA, default ./data)\n"
    "\n"
    "Without RAGD_LLM_BASE_URL answers come from the offline extractive generator.\n"
    "Set RAGD_LLM_BASE_URL, RAGD_LLM_API_KEY and RAGD_LLM_MODEL to use any\n"
    "OpenAI-compatible provider.\n";

/* Graceful shutdown: stop accepting and report not ready, let answers in
 * flight finish for up to RAGD_SHUTDOWN_GRACE_MS, then end the rest with an
 * error event "shutting_down" and give their streams a moment to flush.
 * Ingests in flight finish in http_server_stop, which waits for the workers;
 * each is one transaction, so it commits whole or not at all. */
static void drain(struct http_server *srv, struct rag_engine *engine, struct api_app *app,
                  const struct ragd_config *cfg, int sig) {
  int64_t deadline = clock_mono_ms() + cfg->shutdown_grace_ms;
  size_t left;
  atomic_store(&app->draining, 1);
  http_server_quiesce(srv);
  log_info("signal %d: stopped accepting; %zu answers in flight, waiting up to %ld ms", sig,
           rag_engine_active_answers(engine), cfg->shutdown_grace_ms);
  while ((left = rag_engine_active_answers(engine)) > 0 && clock_mono_ms() < deadline) {
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
  }
  if (left > 0) {
    log_warn("ending %zu answers still in flight", left);
    rag_engine_shutdown(engine);
    deadline = clock_mono_ms() + 2000;
    while (rag_engine_active_answers(engine) > 0 && clock_mono_ms() < deadline) {
      struct timespec ts = {0, 20 * 1000000L};
      nanosleep(&ts, NULL);
    }
  }
  rag_engine_shutdown(engine);
  /* Let the last events reach the clients before connections close. */
  {
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
  }
}

static pthread_t serve_main_thread;

/* OpenBLAS (the lsa embedder's linear algebra) starts its worker threads
 * when the library is loaded, before cli_serve can block the stop signals,
 * so the kernel may hand SIGTERM to one of them. This handler passes it on
 * to the main thread, where it is blocked and sigwait picks it up.
 * pthread_kill is async-signal-safe. */
static void serve_forward_stop(int sig) {
  pthread_kill(serve_main_thread, sig);
}

int cli_serve(int argc, char **argv) {
  struct cli_run run;
  struct rag_engine *engine = &run.engine;
  const struct ragd_config *cfg = &run.cfg;
  struct api_app app;
  struct http_server_opts hopts;
  struct http_access_opts access;
  size_t keys = 0;
  struct http_server *srv = NULL;
  struct store_stats stats = {0};
  sigset_t set;
  struct sigaction forward;
  int sig = 0, status;

  /* Block the stop signals before any thread starts (the engine starts the
   * upstream thread), so only sigwait sees them. */
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  serve_main_thread = pthread_self();
  memset(&forward, 0, sizeof forward);
  forward.sa_handler = serve_forward_stop;
  sigemptyset(&forward.sa_mask);
  sigaction(SIGINT, &forward, NULL);
  sigaction(SIGTERM, &forward, NULL);
  signal(SIGPIPE, SIG_IGN);
  status = cli_start(&run, argc, argv, "dl", help, 0, 0, 1);
  if (status >= 0) return status;
  status = 1;
  app.engine = engine;
  app.cfg = cfg;
  app.started_ms = clock_mono_ms();
  atomic_init(&app.draining, 0);
  api_metrics_init();
  /* Without keys nobody can be told apart: serve only where nobody else can
   * reach us, unless the operator says otherwise. */
  if (engine->store.ops->key_count && engine->store.ops->key_count(engine->store.ctx, &keys) != RAGD_OK) {
    fprintf(stderr, "ragd serve: cannot read the API keys from the store\n");
    goto out;
  }
  if (keys == 0 && !http_host_is_loopback(cfg->listen_host) && !cfg->allow_open) {
    fprintf(stderr,
            "ragd serve: refusing to listen on %s without API keys: anyone who can reach it "
            "could read and change the knowledge base.\n"
            "  Create a key first:  ragd keys create --scope admin   (and --scope query for clients)\n"
            "  or listen on loopback (127.0.0.1), or set RAGD_ALLOW_OPEN=1 to serve without "
            "authentication on purpose.\n",
            cfg->listen);
    status = 2;
    goto out;
  }
  if (rag_keyword_ensure(engine) != RAGD_OK)
    fprintf(stderr, "ragd serve: the keyword index did not load; keyword searches will retry\n");
  api_access_opts(cfg, &engine->store, &access);
  memset(&hopts, 0, sizeof hopts);
  hopts.access = &access;
  hopts.max_header_bytes = (size_t)cfg->max_header_bytes;
  hopts.request_timeout_s = (unsigned)cfg->request_timeout_s;
  hopts.host = cfg->listen_host;
  hopts.port = cfg->listen_port;
  hopts.max_body_bytes = (size_t)cfg->max_body_bytes;
  hopts.max_connections = (unsigned)cfg->max_connections;
  hopts.ping_interval_s = (unsigned)cfg->ping_interval_s;
  hopts.workers = (size_t)cfg->workers;
  hopts.routes = api_routes;
  hopts.route_count = api_route_count;
  hopts.app = &app;
  if (http_server_start(&hopts, &srv) != RAGD_OK) {
    fprintf(stderr, "ragd serve: cannot listen on %s\n", cfg->listen);
    goto out;
  }
  /* lsa: refits run on a thread of their own while the server serves. */
  rag_lsa_background(engine, 1);
  engine->store.ops->stats(engine->store.ctx, &stats);
  printf("ragd %s serving %zu documents (%zu chunks) from %s\n", RAGD_VERSION, stats.documents,
         stats.chunks, cfg->data_dir);
  printf("generators, in failover order:");
  for (size_t i = 0; i < engine->gen_count; i++)
    printf("%s %s (%s%s%s)", i ? "," : "", engine->gens[i].name, engine->gens[i].llm.ops->name,
           engine->gens[i].llm.model && engine->gens[i].llm.model[0] ? ", model " : "",
           engine->gens[i].llm.model ? engine->gens[i].llm.model : "");
  printf("\n");
  if (keys == 0 && http_host_is_loopback(cfg->listen_host))
    printf("no API keys: serving without authentication, on loopback only "
           "(ragd keys create --scope admin turns authentication on)\n");
  else if (keys == 0)
    printf("no API keys and RAGD_ALLOW_OPEN=1: serving WITHOUT authentication on %s\n",
           cfg->listen_host);
  else
    printf("API keys: %zu active; every route but /healthz, /readyz, the chat page and the API "
           "description needs one\n",
           keys);
  printf("listening on http://%s:%d  (Ctrl-C to stop)\n\n", cfg->listen_host, http_server_port(srv));
  printf("Open http://%s:%d/ in a browser, or try:\n"
         "  curl -N http://%s:%d/v1/chat -H 'Content-Type: application/json' \\\n"
         "    -d '{\"message\": \"비밀번호를 잊어버렸어요. 어떻게 재설정하나요?\"}'\n\n",
         cfg->listen_host, http_server_port(srv), cfg->listen_host, http_server_port(srv));
  /* Machine-readable line for scripts and tests. */
  printf("READY %d\n", http_server_port(srv));
  fflush(stdout);
  /* Retention runs now and then hourly while waiting for a stop signal. */
  for (;;) {
    struct timespec hour = {3600, 0};
    rag_conversations_expire(engine, NULL);
    sig = sigtimedwait(&set, NULL, &hour);
    if (sig > 0) break;
  }
  status = 0;
  drain(srv, engine, &app, cfg, sig);
  http_server_stop(srv);
out:
  cli_finish(&run);
  return status;
}
