/* chat_vercel.c - the Vercel AI SDK UI message stream protocol (v1), asked
 * for with "protocol": "vercel" in the body or ?protocol=vercel, so a useChat
 * front end (DefaultChatTransport pointed at /v1/chat?protocol=vercel) works
 * against ragd unchanged.
 *
 * Stream (header x-vercel-ai-ui-message-stream: v1): start (messageId: the id
 * the answer is stored under, which feedback names; messageMetadata with
 * response_id and conversation_id), one source-url part per
 * source with a URL (source-document for those without), text-start,
 * text-delta*, text-end, finish (finishReason, and messageMetadata holding
 * the ids, usage and the citation report; message_id only when the answer was
 * stored), then `data: [DONE]`. useChat merges both metadata objects into
 * message.metadata. A failure is an error
 * part (errorText) before [DONE]. */
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

#define VERCEL_MESSAGES_MAX 256

static const char *const vercel_headers[] = {"x-vercel-ai-ui-message-stream", "v1", NULL};

static json_t *part(const char *type) {
  json_t *o = json_object();
  json_object_set_new(o, "type", json_string(type));
  return o;
}

static void text_id(const struct chat *c, char *out, size_t n) {
  snprintf(out, n, "text_%s", c->response_id + 5);
}

static void vercel_sources(struct chat *c) {
  json_t *o = part("start");
  json_t *meta = json_object();
  const char *message_id = c->answer_id[0] ? c->answer_id : c->response_id;
  size_t i;
  json_t *src;
  json_object_set_new(o, "messageId", json_string(message_id));
  json_object_set_new(meta, "response_id", json_string(c->response_id));
  json_object_set_new(meta, "conversation_id",
                      json_string(c->conversation_id ? c->conversation_id : ""));
  json_object_set_new(o, "messageMetadata", meta);
  api_chat_emit(c, NULL, o);
  json_array_foreach(c->sources, i, src) {
    const char *url = json_string_value(json_object_get(src, "url"));
    const char *title = json_string_value(json_object_get(src, "title"));
    char id[24];
    snprintf(id, sizeof id, "%zu", i + 1);
    if (url && url[0]) {
      o = part("source-url");
      json_object_set_new(o, "url", json_string(url));
    } else {
      o = part("source-document");
      json_object_set_new(o, "mediaType", json_string("text/markdown"));
      json_object_set_new(o, "filename",
                          json_incref(json_object_get(src, "document_id")));
    }
    json_object_set_new(o, "sourceId", json_string(id));
    json_object_set_new(o, "title", json_string(title ? title : ""));
    api_chat_emit(c, NULL, o);
  }
}

static void vercel_delta(struct chat *c, const char *text, size_t len) {
  char id[48];
  json_t *o;
  text_id(c, id, sizeof id);
  if (!c->text_started) {
    o = part("text-start");
    json_object_set_new(o, "id", json_string(id));
    api_chat_emit(c, NULL, o);
    c->text_started = 1;
  }
  o = part("text-delta");
  json_object_set_new(o, "id", json_string(id));
  json_object_set_new(o, "delta", json_stringn(text, len));
  api_chat_emit(c, NULL, o);
}

static void vercel_usage(struct chat *c) { (void)c; /* reported with finish */ }

static void text_end(struct chat *c) {
  char id[48];
  json_t *o;
  if (!c->text_started) return;
  text_id(c, id, sizeof id);
  o = part("text-end");
  json_object_set_new(o, "id", json_string(id));
  api_chat_emit(c, NULL, o);
}

static void vercel_done(struct chat *c) {
  json_t *o, *meta = json_object();
  text_end(c);
  o = part("finish");
  json_object_set_new(o, "finishReason", json_string(strcmp(c->finish_reason, "content_filter") == 0
                                                         ? "content-filter"
                                                         : c->finish_reason));
  json_object_set_new(meta, "response_id", json_string(c->response_id));
  json_object_set_new(meta, "conversation_id",
                      json_string(c->conversation_id ? c->conversation_id : ""));
  if (c->message_id) json_object_set_new(meta, "message_id", json_string(c->message_id));
  if (c->has_usage) json_object_set_new(meta, "usage", api_chat_usage_json(c));
  json_object_update(meta, c->citations);
  json_object_set_new(o, "messageMetadata", meta);
  api_chat_emit(c, NULL, o);
  api_chat_emit_text(c, "[DONE]");
}

static void vercel_error(struct chat *c, const char *code, const char *message) {
  json_t *o = part("error");
  char text[512];
  snprintf(text, sizeof text, "%s: %s", code, message);
  text_end(c);
  json_object_set_new(o, "errorText", json_string(text));
  api_chat_emit(c, NULL, o);
  api_chat_emit_text(c, "[DONE]");
}

const struct chat_proto api_proto_vercel = {
    .name = "vercel",
    .content_type = "text/event-stream; charset=utf-8",
    .headers = vercel_headers,
    .on_sources = vercel_sources,
    .on_delta = vercel_delta,
    .on_usage = vercel_usage,
    .on_done = vercel_done,
    .on_error = vercel_error,
    .reply = NULL, /* the protocol is a stream; see api_vercel_chat */
};

void api_vercel_chat(struct http_request *r, struct api_app *app, json_t *body) {
  json_t *messages = json_object_get(body, "messages");
  struct llm_message *history = NULL;
  char **owned = NULL;
  struct chat_input in;
  size_t count, last_user = (size_t)-1, kept = 0;

  memset(&in, 0, sizeof in);
  in.top_k = app->cfg->top_k;
  in.stream = 1;
  if (!json_is_array(messages) || json_array_size(messages) == 0) {
    http_reply_problem(r, "missing_field",
                       "send \"message\", or useChat's \"messages\" (a non-empty array)");
    return;
  }
  count = json_array_size(messages);
  if (count > VERCEL_MESSAGES_MAX) {
    http_reply_problem(r, "invalid_field", "\"messages\" has more than %d entries",
                       VERCEL_MESSAGES_MAX);
    return;
  }
  if (!api_field_int(r, body, "top_k", 1, app->cfg->top_k_max, &in.top_k)) return;
  history = calloc(count, sizeof *history);
  owned = calloc(count, sizeof *owned);
  if (!history || !owned) {
    http_reply_problem(r, "internal_error", "out of memory");
    goto out;
  }
  for (size_t i = 0; i < count; i++) {
    const char *role = json_string_value(json_object_get(json_array_get(messages, i), "role"));
    if (role && strcmp(role, "user") == 0) last_user = i;
  }
  if (last_user == (size_t)-1) {
    http_reply_problem(r, "invalid_field", "\"messages\" has no \"user\" message to answer");
    goto out;
  }
  for (size_t i = 0; i <= last_user; i++) {
    json_t *m = json_array_get(messages, i);
    const char *role = json_string_value(json_object_get(m, "role"));
    json_t *parts = json_object_get(m, "parts");
    const char *text;
    if (!role || (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0)) continue;
    text = api_message_text(parts ? parts : json_object_get(m, "content"), &owned[i]);
    if (!text || !text[0]) {
      if (i != last_user) continue;
      http_reply_problem(r, "invalid_field", "\"messages[%zu]\" has no text part", i);
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
  if (strlen(in.message) > (size_t)app->cfg->max_message_bytes) {
    http_reply_problem(r, "invalid_field", "the last user message is longer than %ld bytes",
                       app->cfg->max_message_bytes);
    goto out;
  }
  in.history = history;
  in.history_count = kept;
  api_chat_run(r, app, &api_proto_vercel, &in);
out:
  for (size_t i = 0; owned && i < count; i++) free(owned[i]);
  free(owned);
  free(history);
}
