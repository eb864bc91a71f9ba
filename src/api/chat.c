/* chat.c - POST /v1/chat and GET /v1/chat/stream: the native answer stream
 * (see DESIGN.md, "The native streaming contract") or, with "stream": false,
 * one JSON object; and the machinery every chat format shares: one answer's
 * life, its events fanned out through a held, resumable entry (resume.c),
 * Last-Event-ID reconnections.
 *
 * Life of a streamed answer: the handler starts the pipeline; on meta the
 * stream opens and is attached to a fresh resume entry; every encoded event
 * is appended to the entry, which writes it to the attached streams. When the
 * last attached stream goes (client hung up, stalled, overflowed) before the
 * answer is complete, the entry's on_abandon cancels the upstream request. A
 * chat is reference counted: the handler, the running answer, and the
 * entry's pending on_abandon each hold one. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api_int.h"
#include "guard/guard.h"
#include "util/crypto.h"
#include "util/log.h"

#define RETRY_HINT "retry: 3000\n\n"

static void chat_unref(struct chat *c) {
  int last;
  pthread_mutex_lock(&c->mu);
  last = --c->refs == 0;
  pthread_mutex_unlock(&c->mu);
  if (!last) return;
  rag_answer_release(c->answer);
  http_notes_release(c->notes);
  json_decref(c->sources);
  json_decref(c->citations);
  buf_dispose(&c->text);
  free(c->conversation_id);
  free(c->model);
  free(c->error_code);
  free(c->error_message);
  free(c->retrieval_query);
  free(c->message_id);
  free(c->degraded_reason);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

/* The last client left a live answer: stop paying for it. */
static void chat_abandoned(void *arg) {
  struct chat *c = arg;
  struct rag_answer *a;
  pthread_mutex_lock(&c->mu);
  c->abandoned = 1;
  a = c->answer;
  pthread_mutex_unlock(&c->mu);
  if (a) rag_answer_cancel(a);
  chat_unref(c);
}

static void emit_bytes(struct chat *c, struct buf *ev) {
  if (c->entry) api_resume_append(c->app->cfg, c->entry, ev->data, ev->len);
}

void api_chat_emit(struct chat *c, const char *event, json_t *obj) {
  struct buf data, ev;
  char id[64];
  buf_init(&data, 0);
  buf_init(&ev, 0);
  snprintf(id, sizeof id, "%s.%u", c->response_id, c->seq++);
  if (json_append(&data, obj) == RAGD_OK &&
      http_sse_event(&ev, event, id, data.data, data.len) == RAGD_OK)
    emit_bytes(c, &ev);
  json_decref(obj);
  buf_dispose(&data);
  buf_dispose(&ev);
}

void api_chat_emit_text(struct chat *c, const char *text) {
  struct buf ev;
  char id[64];
  buf_init(&ev, 0);
  snprintf(id, sizeof id, "%s.%u", c->response_id, c->seq++);
  if (http_sse_event(&ev, NULL, id, text, strlen(text)) == RAGD_OK) emit_bytes(c, &ev);
  buf_dispose(&ev);
}

json_t *api_chat_usage_json(const struct chat *c) {
  json_t *u = json_object();
  json_object_set_new(u, "prompt_tokens", json_integer(c->prompt_tokens));
  json_object_set_new(u, "completion_tokens", json_integer(c->completion_tokens));
  json_object_set_new(u, "total_tokens", json_integer(c->prompt_tokens + c->completion_tokens));
  /* ragd's own count of the prompt it sent, next to the provider's figures */
  if (c->has_budget) json_object_set_new(u, "ragd_prompt_tokens", json_integer(c->ragd_prompt_tokens));
  return u;
}

static json_t *sources_json(const struct store_hit_list *hits) {
  json_t *arr = json_array();
  for (size_t i = 0; i < hits->count; i++)
    json_array_append_new(arr, api_source_json(&hits->items[i], (int)i + 1));
  return arr;
}

static json_t *int_array(const int *v, size_t n) {
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++) json_array_append_new(arr, json_integer(v[i]));
  return arr;
}

/* ---- rag events -------------------------------------------------------------- */

static void ev_meta(void *ctx, const char *conversation_id, const char *provider,
                    const char *model) {
  struct chat *c = ctx;
  struct http_stream *s;
  const char *why = NULL;
  c->conversation_id = strdup(conversation_id);
  c->model = strdup(model);
  http_notes_set(c->notes, "provider", provider);
  http_notes_set(c->notes, "model", model);
  if (!c->streaming) return;
  s = http_reply_stream_ex(c->req, c->proto->content_type, c->proto->headers);
  if (!s) return;
  http_stream_write(s, RETRY_HINT, strlen(RETRY_HINT));
  c->entry = api_resume_open(c->app->cfg, c->response_id, c->proto->content_type,
                             c->proto->headers);
  if (!c->entry || api_resume_attach(c->entry, s, -1, c->app->cfg, &why) != RAGD_OK) {
    log_warn("chat %s: cannot follow the answer: %s", c->response_id, why ? why : "out of memory");
    http_stream_end(s);
    return;
  }
  pthread_mutex_lock(&c->mu);
  c->refs++; /* the entry's pending on_abandon */
  pthread_mutex_unlock(&c->mu);
  api_resume_set_abandon(c->entry, chat_abandoned, c);
}

static void ev_sources(void *ctx, const struct store_hit_list *hits) {
  struct chat *c = ctx;
  c->sources = sources_json(hits);
  c->sources_sent = 1;
  if (c->streaming) c->proto->on_sources(c);
}

static void ev_delta(void *ctx, const char *text, size_t len) {
  struct chat *c = ctx;
  if (c->streaming)
    c->proto->on_delta(c, text, len);
  else
    buf_append(&c->text, text, len);
}

static void ev_budget(void *ctx, const struct rag_budget_report *report) {
  struct chat *c = ctx;
  c->has_budget = 1;
  c->ragd_prompt_tokens = (long)report->prompt_tokens;
}

static void ev_query(void *ctx, const char *retrieval_query, const char *method,
                     const char *fallback) {
  struct chat *c = ctx;
  c->retrieval_query = strdup(retrieval_query);
  c->retrieval_query_source = strcmp(method, "none") == 0 ? "question" : method;
  c->retrieval_query_fallback = fallback;
}

/* How the retrieval query was made, next to it in meta and in the reply. */
static void set_retrieval_query(json_t *o, const struct chat *c) {
  if (!c->retrieval_query) return;
  json_object_set_new(o, "retrieval_query", json_string(c->retrieval_query));
  json_object_set_new(o, "retrieval_query_source", json_string(c->retrieval_query_source));
  if (c->retrieval_query_fallback)
    json_object_set_new(o, "retrieval_query_fallback", json_string(c->retrieval_query_fallback));
}

static void ev_guard(void *ctx, const struct guard_injection *result, size_t pii_masked) {
  struct chat *c = ctx;
  c->has_guard = 1;
  c->guard_injection = result->flagged;
  c->guard_rule = result->rule;
  c->guard_score = result->score;
  c->guard_pii_masked = pii_masked;
}

/* {"injection":bool,"rule":name|null,"score":n,"pii_masked":n} */
static json_t *guard_json(const struct chat *c) {
  json_t *o = json_object();
  json_object_set_new(o, "injection", json_boolean(c->guard_injection));
  json_object_set_new(o, "rule", c->guard_rule ? json_string(c->guard_rule) : json_null());
  json_object_set_new(o, "score", json_real(c->guard_score));
  json_object_set_new(o, "pii_masked", json_integer((json_int_t)c->guard_pii_masked));
  return o;
}

static void ev_message_id(void *ctx, const char *message_id) {
  struct chat *c = ctx;
  snprintf(c->answer_id, sizeof c->answer_id, "%s", message_id);
}

static void ev_saved(void *ctx, const char *message_id) {
  struct chat *c = ctx;
  c->message_id = strdup(message_id);
}

static void ev_usage(void *ctx, long prompt_tokens, long completion_tokens) {
  struct chat *c = ctx;
  c->prompt_tokens = prompt_tokens;
  c->completion_tokens = completion_tokens;
  c->has_usage = 1;
  http_notes_set_int(c->notes, "prompt_tokens", prompt_tokens);
  http_notes_set_int(c->notes, "completion_tokens", completion_tokens);
  if (c->streaming) c->proto->on_usage(c);
}

/* RAGD_REQUEST_TIMEOUT_S passed before a non-streamed answer ended (the
 * watcher thread; c lives until http_request_finish, which waits for this):
 * cancel the answer, whose end then replies request_timeout. */
static void chat_timed_out(void *arg) {
  struct chat *c = arg;
  pthread_mutex_lock(&c->mu);
  c->timed_out = 1;
  pthread_mutex_unlock(&c->mu);
  rag_answer_cancel(c->answer);
}

/* The answer is over (done or error): close the stream, or send the JSON
 * reply of a deferred non-streaming request. */
static void chat_finish(struct chat *c) {
  int reply, timed_out;
  if (c->streaming) {
    if (c->entry && api_resume_finish(c->entry)) chat_unref(c); /* on_abandon never runs */
    c->entry = NULL;
  }
  pthread_mutex_lock(&c->mu);
  c->finished = 1;
  reply = c->reply_later;
  timed_out = c->timed_out;
  pthread_mutex_unlock(&c->mu);
  if (reply && timed_out) {
    http_reply_problem(c->req, "request_timeout",
                       "the answer took longer than the server's limit of %ld s "
                       "(RAGD_REQUEST_TIMEOUT_S); ask with \"stream\": true to see it grow",
                       c->app->cfg->request_timeout_s);
    http_request_finish(c->req);
    c->req = NULL;
  } else if (reply) {
    c->proto->reply(c->req, c);
    http_request_finish(c->req);
    c->req = NULL;
  }
  chat_unref(c); /* the running answer's */
}

static void ev_done(void *ctx, const char *finish_reason, const int *cited, size_t cited_count,
                    const int *invalid, size_t invalid_count) {
  struct chat *c = ctx;
  c->finish_reason = strcmp(finish_reason, "length") == 0           ? "length"
                     : strcmp(finish_reason, "content_filter") == 0 ? "content_filter"
                                                                    : "stop";
  http_notes_set(c->notes, "finish_reason", c->finish_reason);
  c->citations = json_object();
  json_object_set_new(c->citations, "cited_sources", int_array(cited, cited_count));
  json_object_set_new(c->citations, "invalid_citations", int_array(invalid, invalid_count));
  if (c->streaming) c->proto->on_done(c);
  chat_finish(c);
}

static void ev_error(void *ctx, const char *code, const char *message) {
  struct chat *c = ctx;
  c->error_code = strdup(code);
  c->error_message = strdup(message);
  http_notes_set(c->notes, "error", code);
  if (c->streaming) c->proto->on_error(c, code, message);
  chat_finish(c);
}

/* The generator failed before its first token and the next one in the
 * failover chain answers instead. */
static void ev_notice(void *ctx, const char *provider, const char *model, int degraded,
                      const char *code, const char *message) {
  struct chat *c = ctx;
  if (degraded) c->degraded = 1;
  http_notes_set(c->notes, "provider", provider);
  http_notes_set(c->notes, "model", model);
  if (degraded) http_notes_set_int(c->notes, "degraded", 1);
  if (model) {
    free(c->model);
    c->model = strdup(model);
  }
  if (!c->sources_sent) {
    /* Before meta: meta itself carries it (meta is always the first event). */
    if (degraded && !c->degraded_reason) c->degraded_reason = strdup(code);
    return;
  }
  if (c->streaming && c->proto->on_notice)
    c->proto->on_notice(c, provider, model, degraded, code, message);
}

/* Earlier turns of an OpenAI or Vercel request become a fresh conversation,
 * which the pipeline then reads as history. */
static ragd_err seed_history(struct api_app *app, const struct chat_input *in, char *id,
                             size_t id_size) {
  struct store *st = &app->engine->store;
  ragd_err rc;
  if (id_size < 40) return RAGD_EINVAL;
  memcpy(id, "conv_", 5);
  if (crypto_random_hex(id + 5, 16) != 0) return RAGD_EIO;
  for (size_t i = 0; i < in->history_count; i++) {
    rc = st->ops->append_message(st->ctx, id, in->history[i].role, in->history[i].content);
    if (rc) return rc;
  }
  return RAGD_OK;
}

void api_chat_run(struct http_request *r, struct api_app *app, const struct chat_proto *proto,
                  const struct chat_input *in) {
  struct chat *c = calloc(1, sizeof *c);
  struct rag_question q;
  struct rag_events ev;
  const char *code = NULL;
  char seeded[48];
  int cancel_now, reply_now;
  ragd_err rc;

  if (!c) {
    http_reply_problem(r, "internal_error", "out of memory");
    return;
  }
  if (!in->stream && !proto->reply) proto = &api_proto_native; /* a stream-only format */
  pthread_mutex_init(&c->mu, NULL);
  buf_init(&c->text, 0);
  c->refs = 1; /* the handler's */
  c->req = r;
  c->notes = http_request_notes(r);
  c->app = app;
  c->proto = proto;
  c->streaming = in->stream;
  c->include_usage = in->include_usage;
  c->created_s = (int64_t)time(NULL);
  memcpy(c->response_id, "resp_", 5);
  crypto_random_hex(c->response_id + 5, 12);

  /* The question only at debug level, and masked like every log line. */
  log_debug("chat %s: question \"%s\"", c->response_id, in->message);
  memset(&q, 0, sizeof q);
  q.message = in->message;
  q.top_k = (size_t)in->top_k;
  q.conversation_id = in->conversation_id;
  q.mode = (enum rag_search_mode)in->mode;
  q.filters_json = in->filters_json;
  q.request_id = http_request_id(r);
  if (in->history_count) {
    rc = seed_history(app, in, seeded, sizeof seeded);
    if (rc) {
      http_reply_problem(r, "store_unavailable", "cannot keep the earlier turns: %s",
                         ragd_strerror(rc));
      goto out;
    }
    q.conversation_id = seeded;
  }
  memset(&ev, 0, sizeof ev);
  ev.ctx = c;
  ev.on_notice = ev_notice;
  ev.on_budget = ev_budget;
  ev.on_query = ev_query;
  ev.on_saved = ev_saved;
  ev.on_message_id = ev_message_id;
  ev.on_guard = ev_guard;
  ev.on_meta = ev_meta;
  ev.on_sources = ev_sources;
  ev.on_delta = ev_delta;
  ev.on_usage = ev_usage;
  ev.on_done = ev_done;
  ev.on_error = ev_error;
  c->refs++; /* the running answer's, dropped by chat_finish */
  rc = rag_answer_start(app->engine, &q, &ev, &c->answer, &code);
  if (rc) {
    c->refs--;
    if (strcmp(code, "invalid_field") == 0)
      http_reply_problem(r, code, "\"conversation_id\" must be 1-64 letters, digits, '-' or '_', "
                                  "and \"filters\" an object of metadata values");
    else if (strcmp(code, "question_too_long") == 0)
      http_reply_problem(r, code, "the question alone does not fit the model's context window "
                                  "with room for the answer; shorten it");
    else
      http_reply_problem(r, code, "%s", ragd_strerror(rc));
    goto out;
  }
  /* A client that left before the handle existed. */
  pthread_mutex_lock(&c->mu);
  cancel_now = c->abandoned;
  pthread_mutex_unlock(&c->mu);
  if (cancel_now) rag_answer_cancel(c->answer);
  if (c->streaming) {
    if (!c->entry && !c->finished)
      log_debug("chat %s: the stream could not open", c->response_id);
    goto out;
  }
  /* Not streaming: the reply waits for the answer's end, which must not
   * hold a worker (a slow provider would starve every other request). */
  http_request_defer(r);
  http_request_on_timeout(r, chat_timed_out, c);
  pthread_mutex_lock(&c->mu);
  reply_now = c->finished;
  c->reply_later = !reply_now;
  pthread_mutex_unlock(&c->mu);
  if (reply_now) {
    proto->reply(r, c);
    http_request_finish(r);
  }
  chat_unref(c); /* c->req now belongs to chat_finish */
  return;
out:
  c->req = NULL;
  chat_unref(c);
}

/* ---- resume ----------------------------------------------------------------- */

const char *api_chat_last_event_id(struct http_request *r) {
  const char *id = http_request_header(r, "Last-Event-ID");
  if (!id || !id[0]) id = http_request_query(r, "last_event_id");
  return id && id[0] ? id : NULL;
}

static void resume_error(struct http_stream *s, const char *last_id, const char *code,
                         const char *message) {
  json_t *o = json_object();
  json_t *err = json_object();
  struct buf data, ev;
  buf_init(&data, 0);
  buf_init(&ev, 0);
  json_object_set_new(err, "code", json_string(code));
  json_object_set_new(err, "message", json_string(message));
  json_object_set_new(o, "type", json_string("error"));
  json_object_set_new(o, "error", err);
  json_object_set_new(o, "last_event_id", json_string(last_id));
  if (json_append(&data, o) == RAGD_OK &&
      http_sse_event(&ev, "error", last_id, data.data, data.len) == RAGD_OK)
    http_stream_write(s, ev.data, ev.len);
  json_decref(o);
  buf_dispose(&data);
  buf_dispose(&ev);
  http_stream_end(s);
}

void api_chat_resume(struct http_request *r, struct api_app *app, const char *last_event_id) {
  char response_id[48];
  const char *dot = strrchr(last_event_id, '.');
  const char *why = NULL;
  char *end = NULL;
  long seq = -1;
  struct resume_entry *e = NULL;
  struct http_stream *s;
  size_t n = dot ? (size_t)(dot - last_event_id) : 0;
  /* The id is the client's: echo only a sane one. */
  const char *shown = strlen(last_event_id) < 80 ? last_event_id : "(too long)";
  if (dot && n > 0 && n < sizeof response_id && dot[1]) {
    memcpy(response_id, last_event_id, n);
    response_id[n] = '\0';
    seq = strtol(dot + 1, &end, 10);
    if (*end == '\0' && seq >= 0) e = api_resume_find(app->cfg, response_id);
  }
  s = http_reply_stream_ex(r, e ? api_resume_content_type(e) : "text/event-stream; charset=utf-8",
                           e ? api_resume_headers(e) : NULL);
  if (!s) goto out;
  http_stream_write(s, RETRY_HINT, strlen(RETRY_HINT));
  if (!e) {
    char msg[256];
    snprintf(msg, sizeof msg,
             "no answer is held for the event id \"%s\": it is unknown, or its answer finished "
             "more than %ld s ago; ask again",
             shown, app->cfg->resume_retention_s);
    resume_error(s, shown, "resume_unavailable", msg);
    goto out;
  }
  if (api_resume_attach(e, s, seq, app->cfg, &why) != RAGD_OK)
    resume_error(s, shown, "resume_unavailable", why ? why : "cannot resume");
out:
  api_resume_release(e);
}

/* ---- the native format -------------------------------------------------------- */

static void native_sources(struct chat *c) {
  json_t *o = json_object();
  json_object_set_new(o, "response_id", json_string(c->response_id));
  json_object_set_new(o, "conversation_id", json_string(c->conversation_id ? c->conversation_id : ""));
  json_object_set_new(o, "model", json_string(c->model ? c->model : ""));
  json_object_set_new(o, "degraded", json_boolean(c->degraded));
  if (c->degraded_reason) json_object_set_new(o, "degraded_reason", json_string(c->degraded_reason));
  set_retrieval_query(o, c);
  if (c->req) json_object_set_new(o, "request_id", json_string(http_request_id(c->req)));
  if (c->has_guard) json_object_set_new(o, "guard", guard_json(c));
  json_object_set_new(o, "type", json_string("meta"));
  api_chat_emit(c, "meta", o);
  o = json_object();
  json_object_set_new(o, "sources", json_incref(c->sources));
  json_object_set_new(o, "type", json_string("sources"));
  api_chat_emit(c, "sources", o);
}

static void native_delta(struct chat *c, const char *text, size_t len) {
  json_t *o = json_object();
  json_object_set_new(o, "content", json_stringn(text, len));
  json_object_set_new(o, "type", json_string("text_delta"));
  api_chat_emit(c, "text_delta", o);
}

static void native_usage(struct chat *c) {
  json_t *o = api_chat_usage_json(c);
  json_object_set_new(o, "type", json_string("usage"));
  api_chat_emit(c, "usage", o);
}

static void native_done(struct chat *c) {
  json_t *o = json_object();
  json_object_set_new(o, "finish_reason", json_string(c->finish_reason));
  json_object_update(o, c->citations);
  if (c->message_id) json_object_set_new(o, "message_id", json_string(c->message_id));
  json_object_set_new(o, "type", json_string("done"));
  api_chat_emit(c, "done", o);
}

static void native_error(struct chat *c, const char *code, const char *message) {
  json_t *o = json_object();
  json_t *err = json_object();
  json_object_set_new(err, "code", json_string(code));
  json_object_set_new(err, "message", json_string(message));
  json_object_set_new(o, "error", err);
  json_object_set_new(o, "type", json_string("error"));
  api_chat_emit(c, "error", o);
}

static void native_notice(struct chat *c, const char *provider, const char *model, int degraded,
                          const char *code, const char *message) {
  json_t *o = json_object();
  json_object_set_new(o, "provider", json_string(provider));
  json_object_set_new(o, "model", json_string(model));
  json_object_set_new(o, "degraded", json_boolean(degraded));
  json_object_set_new(o, "reason", json_string(code));
  json_object_set_new(o, "message", json_string(message));
  json_object_set_new(o, "type", json_string("notice"));
  api_chat_emit(c, "notice", o);
}

static void native_reply(struct http_request *r, struct chat *c) {
  json_t *o;
  if (c->error_code) {
    const char *code = http_problem_status(c->error_code) == 500 &&
                               strcmp(c->error_code, "internal_error") != 0
                           ? "upstream_error"
                           : c->error_code;
    http_reply_problem(r, code, "%s", c->error_message ? c->error_message : "");
    return;
  }
  o = json_object();
  json_object_set_new(o, "response_id", json_string(c->response_id));
  json_object_set_new(o, "conversation_id", json_string(c->conversation_id ? c->conversation_id : ""));
  json_object_set_new(o, "model", json_string(c->model ? c->model : ""));
  json_object_set_new(o, "degraded", json_boolean(c->degraded));
  if (c->degraded_reason) json_object_set_new(o, "degraded_reason", json_string(c->degraded_reason));
  json_object_set_new(o, "answer", json_stringn(c->text.data ? c->text.data : "", c->text.len));
  json_object_set_new(o, "sources", c->sources ? json_incref(c->sources) : json_array());
  if (c->has_usage) json_object_set_new(o, "usage", api_chat_usage_json(c));
  json_object_set_new(o, "finish_reason", json_string(c->finish_reason ? c->finish_reason : "stop"));
  if (c->citations) json_object_update(o, c->citations);
  set_retrieval_query(o, c);
  if (c->message_id) json_object_set_new(o, "message_id", json_string(c->message_id));
  if (c->has_guard) json_object_set_new(o, "guard", guard_json(c));
  http_reply_json(r, 200, o);
}

const struct chat_proto api_proto_native = {
    .name = "native",
    .content_type = "text/event-stream; charset=utf-8",
    .headers = NULL,
    .on_sources = native_sources,
    .on_delta = native_delta,
    .on_usage = native_usage,
    .on_done = native_done,
    .on_error = native_error,
    .on_notice = native_notice,
    .reply = native_reply,
};

/* ---- handlers ------------------------------------------------------------------ */

static int message_blank(const char *message) {
  for (size_t i = 0; message[i]; i++)
    if (!strchr(" \t\r\n", message[i])) return 0;
  return 1;
}

static const struct chat_proto *proto_by_name(const char *name) {
  if (!name || strcmp(name, "native") == 0) return &api_proto_native;
  if (strcmp(name, "vercel") == 0) return &api_proto_vercel;
  return NULL;
}

static void handle_chat(struct http_request *r, void *arg) {
  /* Fields of the Vercel AI SDK's useChat body ("id", "messages", "trigger",
   * "messageId") are read by api_vercel_input when the protocol is vercel. */
  static const char *const fields[] = {"message", "top_k", "stream", "conversation_id",
                                       "protocol", "mode", "filters", NULL};
  struct api_app *app = arg;
  json_t *body = http_request_json(r);
  json_t *filters = json_object_get(body, "filters");
  const char *mode = NULL;
  char *filters_json = NULL;
  struct chat_input in;
  const char *protocol = http_request_query(r, "protocol");
  const char *last_id = api_chat_last_event_id(r);
  const struct chat_proto *proto;

  if (last_id) {
    api_chat_resume(r, app, last_id);
    return;
  }
  memset(&in, 0, sizeof in);
  in.top_k = app->cfg->top_k;
  in.stream = 1;
  if (!protocol && json_is_string(json_object_get(body, "protocol")))
    protocol = json_string_value(json_object_get(body, "protocol"));
  proto = proto_by_name(protocol);
  if (!proto) {
    http_reply_problem(r, "invalid_field", "\"protocol\" must be \"native\" or \"vercel\"");
    return;
  }
  if (proto == &api_proto_vercel && !json_object_get(body, "message")) {
    api_vercel_chat(r, app, body);
    return;
  }
  if (!api_fields_known(r, body, fields) ||
      !api_field_string(r, body, "message", 1, (size_t)app->cfg->max_message_bytes, &in.message) ||
      !api_field_int(r, body, "top_k", 1, app->cfg->top_k_max, &in.top_k) ||
      !api_field_bool(r, body, "stream", &in.stream) ||
      !api_field_string(r, body, "conversation_id", 0, 64, &in.conversation_id) ||
      !api_field_string(r, body, "mode", 0, 16, &mode))
    return;
  if (message_blank(in.message)) {
    http_reply_problem(r, "invalid_field", "\"message\" must not be empty");
    return;
  }
  in.mode = mode ? rag_search_mode_parse(mode) : RAG_SEARCH_HYBRID;
  if (in.mode < 0) {
    http_reply_problem(r, "invalid_field", "\"mode\" must be hybrid, keyword or vector");
    return;
  }
  if (filters && !json_is_null(filters)) {
    if (!json_is_object(filters)) {
      http_reply_problem(r, "invalid_field", "\"filters\" must be an object");
      return;
    }
    filters_json = json_dumps(filters, JSON_COMPACT);
    in.filters_json = filters_json;
  }
  api_chat_run(r, app, proto, &in); /* retrieval is done when it returns */
  free(filters_json);
}

void api_chat_handle(struct http_request *r, void *app) { handle_chat(r, app); }

/* GET /v1/chat/stream?message=...&top_k=&conversation_id=: the native stream
 * for EventSource, which can only GET. Its automatic reconnection sends
 * Last-Event-ID and resumes. */
void api_chat_stream_get(struct http_request *r, void *arg) {
  struct api_app *app = arg;
  struct chat_input in;
  const char *last_id = api_chat_last_event_id(r);
  const char *top_k = http_request_query(r, "top_k");
  if (last_id) {
    api_chat_resume(r, app, last_id);
    return;
  }
  memset(&in, 0, sizeof in);
  in.top_k = app->cfg->top_k;
  in.stream = 1;
  in.message = http_request_query(r, "message");
  in.conversation_id = http_request_query(r, "conversation_id");
  if (!in.message || message_blank(in.message)) {
    http_reply_problem(r, "invalid_query", "the query parameter \"message\" is required");
    return;
  }
  if (strlen(in.message) > (size_t)app->cfg->max_message_bytes) {
    http_reply_problem(r, "invalid_query", "\"message\" is longer than %ld bytes",
                       app->cfg->max_message_bytes);
    return;
  }
  if (top_k) {
    char *end = NULL;
    long k = strtol(top_k, &end, 10);
    if (!top_k[0] || *end || k < 1 || k > app->cfg->top_k_max) {
      http_reply_problem(r, "invalid_query", "\"top_k\" must be an integer from 1 to %ld",
                         app->cfg->top_k_max);
      return;
    }
    in.top_k = k;
  }
  api_chat_run(r, app, &api_proto_native, &in);
}
