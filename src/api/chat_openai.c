/* chat_openai.c - POST /v1/chat/completions: the same retrieval-augmented
 * answer in OpenAI's Chat Completions format, so an OpenAI SDK pointed at
 * ragd works unchanged.
 *
 * Request: "messages" (several turns allowed: the last user turn is the
 * question, earlier user/assistant turns are history; system and developer
 * turns are ignored, ragd keeps its own grounding rules), "stream",
 * "stream_options": {"include_usage"}, and ragd's "top_k". "model" and the
 * sampling fields clients habitually send are accepted and ignored: the
 * configured generator answers, and its name is reported.
 *
 * Stream: chat.completion.chunk objects as `data:` lines (each with an id:
 * line, so Last-Event-ID resume works here too), a role chunk first, content
 * chunks, a chunk with finish_reason, a usage chunk with "choices": [] when
 * include_usage was asked, then `data: [DONE]`. The citations travel in an
 * extra "ragd" object (response and conversation ids and sources on the first
 * chunk; cited_sources, invalid_citations, conversation_id and the stored
 * answer's message_id, which feedback names, on the finish chunk) that
 * standard clients ignore. Errors use OpenAI's error object, in the body
 * before the stream began and as a data line after. */
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

#define OPENAI_MESSAGES_MAX 256

static json_t *chunk_new(struct chat *c) {
  json_t *o = json_object();
  char id[64];
  snprintf(id, sizeof id, "chatcmpl-%s", c->response_id + 5);
  json_object_set_new(o, "id", json_string(id));
  json_object_set_new(o, "object", json_string("chat.completion.chunk"));
  json_object_set_new(o, "created", json_integer(c->created_s));
  json_object_set_new(o, "model", json_string(c->model ? c->model : ""));
  return o;
}

/* A chunk with one choice: delta (taken) and finish_reason (NULL: null). */
static json_t *choice_chunk(struct chat *c, json_t *delta, const char *finish_reason) {
  json_t *o = chunk_new(c);
  json_t *choice = json_object();
  json_t *choices = json_array();
  json_object_set_new(choice, "index", json_integer(0));
  json_object_set_new(choice, "delta", delta);
  json_object_set_new(choice, "logprobs", json_null());
  json_object_set_new(choice, "finish_reason",
                      finish_reason ? json_string(finish_reason) : json_null());
  json_array_append_new(choices, choice);
  json_object_set_new(o, "choices", choices);
  if (c->include_usage) json_object_set_new(o, "usage", json_null());
  return o;
}

static void openai_sources(struct chat *c) {
  json_t *delta = json_object();
  json_t *ext = json_object();
  json_t *o;
  json_object_set_new(delta, "role", json_string("assistant"));
  json_object_set_new(delta, "content", json_string(""));
  o = choice_chunk(c, delta, NULL);
  json_object_set_new(ext, "response_id", json_string(c->response_id));
  json_object_set_new(ext, "conversation_id", json_string(c->conversation_id ? c->conversation_id : ""));
  json_object_set_new(ext, "sources", json_incref(c->sources));
  json_object_set_new(o, "ragd", ext);
  api_chat_emit(c, NULL, o);
}

static void openai_delta(struct chat *c, const char *text, size_t len) {
  json_t *delta = json_object();
  json_object_set_new(delta, "content", json_stringn(text, len));
  api_chat_emit(c, NULL, choice_chunk(c, delta, NULL));
}

static void openai_usage(struct chat *c) { (void)c; /* sent after the finish chunk */ }

/* The ids feedback needs: POST /v1/conversations/{conversation_id}/messages/
 * {message_id}/feedback. message_id only once the answer is stored. */
static void set_ids(json_t *ext, const struct chat *c) {
  json_object_set_new(ext, "conversation_id", json_string(c->conversation_id ? c->conversation_id : ""));
  if (c->message_id) json_object_set_new(ext, "message_id", json_string(c->message_id));
}

static void openai_done(struct chat *c) {
  json_t *o = choice_chunk(c, json_object(), c->finish_reason);
  json_t *ext = json_deep_copy(c->citations);
  set_ids(ext, c);
  json_object_set_new(o, "ragd", ext);
  api_chat_emit(c, NULL, o);
  if (c->include_usage) {
    o = chunk_new(c);
    json_object_set_new(o, "choices", json_array());
    json_object_set_new(o, "usage", api_chat_usage_json(c));
    api_chat_emit(c, NULL, o);
  }
  api_chat_emit_text(c, "[DONE]");
}

static json_t *error_object(const char *code, const char *message) {
  json_t *o = json_object();
  json_t *e = json_object();
  json_object_set_new(e, "message", json_string(message));
  json_object_set_new(e, "type", json_string("server_error"));
  json_object_set_new(e, "param", json_null());
  json_object_set_new(e, "code", json_string(code));
  json_object_set_new(o, "error", e);
  return o;
}

static void openai_error(struct chat *c, const char *code, const char *message) {
  api_chat_emit(c, NULL, error_object(code, message));
  api_chat_emit_text(c, "[DONE]");
}

static void openai_reply(struct http_request *r, struct chat *c) {
  json_t *o, *choice, *choices, *message, *ext;
  char id[64];
  if (c->error_code) {
    const char *code = http_problem_status(c->error_code) == 500 &&
                               strcmp(c->error_code, "internal_error") != 0
                           ? "upstream_error"
                           : c->error_code;
    http_reply_problem(r, code, "%s", c->error_message ? c->error_message : "");
    return;
  }
  o = json_object();
  snprintf(id, sizeof id, "chatcmpl-%s", c->response_id + 5);
  json_object_set_new(o, "id", json_string(id));
  json_object_set_new(o, "object", json_string("chat.completion"));
  json_object_set_new(o, "created", json_integer(c->created_s));
  json_object_set_new(o, "model", json_string(c->model ? c->model : ""));
  message = json_object();
  json_object_set_new(message, "role", json_string("assistant"));
  json_object_set_new(message, "content",
                      json_stringn(c->text.data ? c->text.data : "", c->text.len));
  json_object_set_new(message, "refusal", json_null());
  choice = json_object();
  json_object_set_new(choice, "index", json_integer(0));
  json_object_set_new(choice, "message", message);
  json_object_set_new(choice, "logprobs", json_null());
  json_object_set_new(choice, "finish_reason",
                      json_string(c->finish_reason ? c->finish_reason : "stop"));
  choices = json_array();
  json_array_append_new(choices, choice);
  json_object_set_new(o, "choices", choices);
  json_object_set_new(o, "usage", api_chat_usage_json(c));
  ext = json_object();
  json_object_set_new(ext, "response_id", json_string(c->response_id));
  set_ids(ext, c);
  json_object_set_new(ext, "sources", c->sources ? json_incref(c->sources) : json_array());
  if (c->citations) json_object_update(ext, c->citations);
  json_object_set_new(o, "ragd", ext);
  http_reply_json(r, 200, o);
}

const struct chat_proto api_proto_openai = {
    .name = "openai",
    .content_type = "text/event-stream; charset=utf-8",
    .headers = NULL,
    .on_sources = openai_sources,
    .on_delta = openai_delta,
    .on_usage = openai_usage,
    .on_done = openai_done,
    .on_error = openai_error,
    .reply = openai_reply,
};

/* The text of a message's content: a string, or an array of parts of which
 * the {"type":"text","text":...} ones count (joined by newlines). *owned is
 * set when the text had to be assembled (free it). NULL when unusable. */
const char *api_message_text(json_t *content, char **owned) {
  struct buf b;
  size_t i;
  json_t *part;
  *owned = NULL;
  if (json_is_string(content)) return json_string_value(content);
  if (!json_is_array(content)) return NULL;
  buf_init(&b, 0);
  json_array_foreach(content, i, part) {
    json_t *text = json_object_get(part, "text");
    const char *type = json_string_value(json_object_get(part, "type"));
    if (!type || strcmp(type, "text") != 0 || !json_is_string(text)) continue;
    if ((b.len && buf_append_char(&b, '\n')) || buf_append_str(&b, json_string_value(text))) {
      buf_dispose(&b);
      return NULL;
    }
  }
  *owned = buf_take(&b, NULL);
  return *owned;
}

void api_chat_completions(struct http_request *r, void *arg) {
  struct api_app *app = arg;
  json_t *body = http_request_json(r);
  json_t *messages = json_object_get(body, "messages");
  json_t *opts = json_object_get(body, "stream_options");
  json_t *n = json_object_get(body, "n");
  struct llm_message *history = NULL;
  char **owned = NULL;
  struct chat_input in;
  size_t count, last_user = (size_t)-1, kept = 0;

  if (api_chat_last_event_id(r)) {
    api_chat_resume(r, app, api_chat_last_event_id(r));
    return;
  }
  memset(&in, 0, sizeof in);
  in.top_k = app->cfg->top_k;
  in.stream = 0; /* OpenAI's default */
  if (!json_is_array(messages) || json_array_size(messages) == 0) {
    http_reply_problem(r, json_is_array(messages) || !messages ? "missing_field" : "invalid_field",
                       "\"messages\" must be a non-empty array of {\"role\", \"content\"}");
    return;
  }
  count = json_array_size(messages);
  if (count > OPENAI_MESSAGES_MAX) {
    http_reply_problem(r, "invalid_field", "\"messages\" has more than %d entries",
                       OPENAI_MESSAGES_MAX);
    return;
  }
  if (!api_field_bool(r, body, "stream", &in.stream) ||
      !api_field_int(r, body, "top_k", 1, app->cfg->top_k_max, &in.top_k))
    return;
  if (n && !json_is_null(n) && !(json_is_integer(n) && json_integer_value(n) == 1)) {
    http_reply_problem(r, "invalid_field", "\"n\" must be 1: ragd gives one answer");
    return;
  }
  if (opts && !json_is_null(opts)) {
    json_t *iu = json_object_get(opts, "include_usage");
    if (!json_is_object(opts) || (iu && !json_is_boolean(iu))) {
      http_reply_problem(r, "invalid_field",
                         "\"stream_options\" must be an object with a boolean \"include_usage\"");
      return;
    }
    in.include_usage = json_is_true(iu);
  }
  history = calloc(count, sizeof *history);
  owned = calloc(count, sizeof *owned);
  if (!history || !owned) {
    http_reply_problem(r, "internal_error", "out of memory");
    goto out;
  }
  for (size_t i = 0; i < count; i++) {
    json_t *m = json_array_get(messages, i);
    const char *role = json_string_value(json_object_get(m, "role"));
    if (!json_is_object(m) || !role) {
      http_reply_problem(r, "invalid_field", "\"messages[%zu]\" must be an object with a \"role\"", i);
      goto out;
    }
    if (strcmp(role, "user") == 0) last_user = i;
  }
  if (last_user == (size_t)-1) {
    http_reply_problem(r, "invalid_field", "\"messages\" has no \"user\" turn to answer");
    goto out;
  }
  for (size_t i = 0; i <= last_user; i++) {
    json_t *m = json_array_get(messages, i);
    const char *role = json_string_value(json_object_get(m, "role"));
    const char *text;
    if (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0) continue;
    text = api_message_text(json_object_get(m, "content"), &owned[i]);
    if (!text) {
      if (strcmp(role, "assistant") == 0 && i != last_user) continue; /* tool calls */
      http_reply_problem(r, "invalid_field",
                         "\"messages[%zu].content\" must be a string or an array of text parts", i);
      goto out;
    }
    if (i == last_user) {
      in.message = text;
    } else {
      history[kept].role = role;
      history[kept].content = text;
      kept++;
    }
  }
  if (strlen(in.message) == 0 || strlen(in.message) > (size_t)app->cfg->max_message_bytes) {
    http_reply_problem(r, "invalid_field", "the last user message must be 1 to %ld bytes",
                       app->cfg->max_message_bytes);
    goto out;
  }
  in.history = history;
  in.history_count = kept;
  api_chat_run(r, app, &api_proto_openai, &in);
out:
  for (size_t i = 0; owned && i < count; i++) free(owned[i]);
  free(owned);
  free(history);
}
