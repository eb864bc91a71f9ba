/* health.c - GET /healthz (the process answers) and GET /readyz (the store
 * answers and a generator is configured). */
#include "api/api_int.h"
#include "util/clock.h"

void api_healthz_handle(struct http_request *r, void *arg) {
  struct api_app *app = arg;
  json_t *o = json_object();
  json_object_set_new(o, "status", json_string("ok"));
  json_object_set_new(o, "version", json_string(RAGD_VERSION));
  json_object_set_new(o, "uptime_s", json_integer((clock_mono_ms() - app->started_ms) / 1000));
  http_reply_json(r, 200, o);
}

void api_readyz_handle(struct http_request *r, void *arg) {
  struct api_app *app = arg;
  struct rag_engine *e = app->engine;
  int store_ok = e->store.ops && e->store.ops->ping(e->store.ctx) == RAGD_OK;
  int gen_ok = e->llm.ops != NULL;
  json_t *o = json_object();
  json_object_set_new(o, "status", json_string(store_ok && gen_ok ? "ready" : "not_ready"));
  json_object_set_new(o, "store", json_string(store_ok ? "ok" : "unavailable"));
  json_object_set_new(o, "generator", json_string(gen_ok ? e->llm.ops->name : "none"));
  if (gen_ok && e->llm.model) json_object_set_new(o, "model", json_string(e->llm.model));
  http_reply_json(r, store_ok && gen_ok ? 200 : 503, o);
}
