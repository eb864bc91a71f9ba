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
  int gen_ok = e->gen_count > 0;
  json_t *o = json_object();
  json_t *chain = json_array();
  int draining = atomic_load(&app->draining);
  json_object_set_new(o, "status", json_string(draining              ? "draining"
                                               : store_ok && gen_ok ? "ready"
                                                                    : "not_ready"));
  json_object_set_new(o, "store", json_string(store_ok ? "ok" : "unavailable"));
  json_object_set_new(o, "generator", json_string(gen_ok ? e->gens[0].llm.ops->name : "none"));
  if (gen_ok && e->gens[0].llm.model)
    json_object_set_new(o, "model", json_string(e->gens[0].llm.model));
  /* the failover order, so an operator sees what answers when a provider fails */
  for (size_t i = 0; i < e->gen_count; i++) {
    json_t *g = json_object();
    json_object_set_new(g, "name", json_string(e->gens[i].name));
    json_object_set_new(g, "provider", json_string(e->gens[i].llm.ops->name));
    json_object_set_new(g, "model", json_string(e->gens[i].llm.model ? e->gens[i].llm.model : ""));
    json_array_append_new(chain, g);
  }
  json_object_set_new(o, "chain", chain);
  {
    /* circuit breakers, shared by all requests to one endpoint */
    struct llm_breaker_state states[32];
    size_t n = llm_breakers_snapshot(states, 32);
    json_t *arr = json_array();
    for (size_t i = 0; i < n && i < 32; i++) {
      json_t *b = json_object();
      json_object_set_new(b, "name", json_string(states[i].name));
      json_object_set_new(b, "endpoint", json_string(states[i].endpoint));
      json_object_set_new(b, "state", json_string(llm_breaker_status_name(states[i].status)));
      json_object_set_new(b, "window_requests", json_integer(states[i].window_requests));
      json_object_set_new(b, "window_failures", json_integer(states[i].window_failures));
      json_object_set_new(b, "opened_total", json_integer(states[i].opened_total));
      json_object_set_new(b, "retry_in_ms", json_integer(states[i].retry_in_ms));
      json_array_append_new(arr, b);
    }
    json_object_set_new(o, "breakers", arr);
  }
  http_reply_json(r, store_ok && gen_ok && !draining ? 200 : 503, o);
}
