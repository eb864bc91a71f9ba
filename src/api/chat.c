/* chat.c - POST /v1/chat: the native answer stream (see DESIGN.md, "The
 * native streaming contract") or, with "stream": false, one JSON object. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "util/crypto.h"
#include "util/log.h"

struct chat {
  struct http_request *req; /* only until the handler returns */
  struct api_app *app;
  int streaming;
  struct http_stream *stream;
  struct rag_answer *answer;
  char response_id[40];
  unsigned seq;
  /* non-streaming: the collected answer */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int finished;
  char *conversation_id;
  char *model;
  json_t *sources;
  struct buf text;
  long prompt_tokens, completion_tokens;
  int has_usage;
  int degraded; /* the extractive last resort answered after a failure */
  json_t *done; /* finish_reason, cited_sources, invalid_citations */
  char *error_code;
  char *error_message;
};

static void chat_free(struct chat *c) {
  json_decref(c->sources);
  json_decref(c->done);
  buf_dispose(&c->text);
  free(c->conversation_id);
  free(c->model);
  free(c->error_code);
  free(c->error_message);
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
  free(c);
}

/* Stream owner callbacks. */
static void chat_cancelled(void *arg) {
  struct chat *c = arg;
  rag_answer_cancel(c->answer);
}

static void chat_released(void *arg) {
  struct chat *c = arg;
  rag_answer_release(c->answer);
  chat_free(c);
}

/* Sends one SSE event whose data is obj (taken). */
static void chat_send(struct chat *c, const char *type, json_t *obj) {
  struct buf data, ev;
  char id[64];
  buf_init(&data, 0);
  buf_init(&ev, 0);
  json_object_set_new(obj, "type", json_string(type));
  snprintf(id, sizeof id, "%s.%u", c->response_id, c->seq++);
  if (json_append(&data, obj) == RAGD_OK &&
      http_sse_event(&ev, type, id, data.data, data.len) == RAGD_OK && c->stream)
    http_stream_write(c->stream, ev.data, ev.len);
  json_decref(obj);
  buf_dispose(&data);
  buf_dispose(&ev);
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

static void ev_meta(void *ctx, const char *conversation_id, const char *model) {
  struct chat *c = ctx;
  if (c->streaming) {
    json_t *o = json_object();
    c->stream = http_reply_stream(c->req, "text/event-stream; charset=utf-8");
    if (!c->stream) return;
    http_stream_set_owner(c->stream, c, chat_cancelled, chat_released);
    http_stream_write(c->stream, "retry: 3000\n\n", 13);
    json_object_set_new(o, "response_id", json_string(c->response_id));
    json_object_set_new(o, "conversation_id", json_string(conversation_id));
    json_object_set_new(o, "model", json_string(model));
    json_object_set_new(o, "degraded", json_false());
    json_object_set_new(o, "request_id", json_string(http_request_id(c->req)));
    chat_send(c, "meta", o);
  } else {
    c->conversation_id = strdup(conversation_id);
    c->model = strdup(model);
  }
}

static void ev_sources(void *ctx, const struct store_hit_list *hits) {
  struct chat *c = ctx;
  if (c->streaming) {
    json_t *o = json_object();
    json_object_set_new(o, "sources", sources_json(hits));
    chat_send(c, "sources", o);
  } else {
    c->sources = sources_json(hits);
  }
}

static void ev_delta(void *ctx, const char *text, size_t len) {
  struct chat *c = ctx;
  if (c->streaming) {
    json_t *o = json_object();
    json_object_set_new(o, "content", json_stringn(text, len));
    chat_send(c, "text_delta", o);
  } else {
    buf_append(&c->text, text, len);
  }
}

static void ev_usage(void *ctx, long prompt_tokens, long completion_tokens) {
  struct chat *c = ctx;
  c->prompt_tokens = prompt_tokens;
  c->completion_tokens = completion_tokens;
  c->has_usage = 1;
  if (c->streaming) {
    json_t *o = json_object();
    json_object_set_new(o, "prompt_tokens", json_integer(prompt_tokens));
    json_object_set_new(o, "completion_tokens", json_integer(completion_tokens));
    json_object_set_new(o, "total_tokens", json_integer(prompt_tokens + completion_tokens));
    chat_send(c, "usage", o);
  }
}

static void chat_finish(struct chat *c) {
  if (c->streaming) {
    struct http_stream *s = c->stream;
    c->stream = NULL;
    if (s) http_stream_end(s);
  } else {
    pthread_mutex_lock(&c->mu);
    c->finished = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
  }
}

static void ev_done(void *ctx, const char *finish_reason, const int *cited, size_t cited_count,
                    const int *invalid, size_t invalid_count) {
  struct chat *c = ctx;
  json_t *o = json_object();
  json_object_set_new(o, "finish_reason", json_string(finish_reason));
  json_object_set_new(o, "cited_sources", int_array(cited, cited_count));
  json_object_set_new(o, "invalid_citations", int_array(invalid, invalid_count));
  if (c->streaming)
    chat_send(c, "done", o);
  else
    c->done = o;
  chat_finish(c);
}

static void ev_error(void *ctx, const char *code, const char *message) {
  struct chat *c = ctx;
  if (c->streaming) {
    json_t *o = json_object();
    json_t *err = json_object();
    json_object_set_new(err, "code", json_string(code));
    json_object_set_new(err, "message", json_string(message));
    json_object_set_new(o, "error", err);
    chat_send(c, "error", o);
  } else {
    c->error_code = strdup(code);
    c->error_message = strdup(message);
  }
  chat_finish(c);
}

/* The generator failed before its first token and the next one in the
 * failover chain answers instead. */
static void ev_notice(void *ctx, const char *provider, const char *model, int degraded,
                      const char *code, const char *message) {
  struct chat *c = ctx;
  if (degraded) c->degraded = 1;
  if (c->streaming) {
    json_t *o = json_object();
    json_object_set_new(o, "provider", json_string(provider));
    json_object_set_new(o, "model", json_string(model));
    json_object_set_new(o, "degraded", json_boolean(degraded));
    json_object_set_new(o, "reason", json_string(code));
    json_object_set_new(o, "message", json_string(message));
    chat_send(c, "notice", o);
  } else if (model) {
    free(c->model);
    c->model = strdup(model);
  }
}

static void reply_collected(struct http_request *r, struct chat *c) {
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
  json_object_set_new(o, "answer", json_stringn(c->text.data ? c->text.data : "", c->text.len));
  json_object_set_new(o, "sources", c->sources ? json_incref(c->sources) : json_array());
  if (c->has_usage) {
    json_t *u = json_object();
    json_object_set_new(u, "prompt_tokens", json_integer(c->prompt_tokens));
    json_object_set_new(u, "completion_tokens", json_integer(c->completion_tokens));
    json_object_set_new(u, "total_tokens", json_integer(c->prompt_tokens + c->completion_tokens));
    json_object_set_new(o, "usage", u);
  }
  if (c->done) json_object_update(o, c->done);
  http_reply_json(r, 200, o);
}

static void handle_chat(struct http_request *r, void *arg) {
  static const char *const fields[] = {"message", "top_k", "stream", "conversation_id", NULL};
  struct api_app *app = arg;
  json_t *body = http_request_json(r);
  struct chat *c = NULL;
  struct rag_question q;
  struct rag_events ev;
  const char *message = NULL, *conversation_id = NULL, *code = NULL;
  long top_k = app->cfg->top_k;
  int stream = 1;
  size_t i, n;
  ragd_err rc;

  if (!api_fields_known(r, body, fields) ||
      !api_field_string(r, body, "message", 1, (size_t)app->cfg->max_message_bytes, &message) ||
      !api_field_int(r, body, "top_k", 1, app->cfg->top_k_max, &top_k) ||
      !api_field_bool(r, body, "stream", &stream) ||
      !api_field_string(r, body, "conversation_id", 0, 64, &conversation_id))
    return;
  n = strlen(message);
  for (i = 0; i < n && strchr(" \t\r\n", message[i]); i++) {
  }
  if (i == n) {
    http_reply_problem(r, "invalid_field", "\"message\" must not be empty");
    return;
  }
  c = calloc(1, sizeof *c);
  if (!c) {
    http_reply_problem(r, "internal_error", "out of memory");
    return;
  }
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  buf_init(&c->text, 0);
  c->req = r;
  c->app = app;
  c->streaming = stream;
  memcpy(c->response_id, "resp_", 5);
  crypto_random_hex(c->response_id + 5, 12);

  memset(&q, 0, sizeof q);
  q.message = message;
  q.top_k = (size_t)top_k;
  q.conversation_id = conversation_id;
  q.request_id = http_request_id(r);
  memset(&ev, 0, sizeof ev);
  ev.ctx = c;
  ev.on_notice = ev_notice;
  ev.on_meta = ev_meta;
  ev.on_sources = ev_sources;
  ev.on_delta = ev_delta;
  ev.on_usage = ev_usage;
  ev.on_done = ev_done;
  ev.on_error = ev_error;
  rc = rag_answer_start(app->engine, &q, &ev, &c->answer, &code);
  if (rc) {
    if (strcmp(code, "invalid_field") == 0)
      http_reply_problem(r, code, "\"conversation_id\" must be 1-64 letters, digits, '-' or '_'");
    else
      http_reply_problem(r, code, "%s", ragd_strerror(rc));
    chat_free(c);
    return;
  }
  /* Streaming: the stream owns c from here; chat_released frees it. */
  if (stream) return;
  pthread_mutex_lock(&c->mu);
  while (!c->finished) pthread_cond_wait(&c->cv, &c->mu);
  pthread_mutex_unlock(&c->mu);
  reply_collected(r, c);
  rag_answer_release(c->answer);
  chat_free(c);
}

void api_chat_handle(struct http_request *r, void *app) { handle_chat(r, app); }
