/* anthropic.c - the "anthropic" generator: streams the Messages API
 * (POST {base_url}/messages with "stream": true).
 *
 * The request differs from OpenAI's in three ways that matter here: system
 * messages go to the top-level "system" field, the conversation must
 * alternate user/assistant (consecutive turns of one role are joined), and
 * max_tokens is required. The response is a sequence of named events:
 * message_start (input token count), content_block_start, content_block_delta
 * (text_delta carries the answer), content_block_stop, message_delta (stop
 * reason, output token count), message_stop (the end), ping, and error. We
 * dispatch on the JSON "type", which Anthropic always mirrors from the event
 * name, and ignore types we do not know, as their versioning policy asks. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/llm.h"
#include "llm/stream_int.h"
#include "util/buf.h"

#define ANT_DEFAULT_VERSION "2023-06-01"
#define ANT_DEFAULT_MAX_TOKENS 1024

struct ant {
  struct llm_endpoint ep; /* url is {base_url}/messages; key header "x-api-key: ..." */
  char *version_header;   /* "anthropic-version: ..." */
  char *model;
};

/* ---- response parsing -------------------------------------------------- */

/* Anthropic's stop reasons, in the vocabulary the sink speaks. */
static const char *ant_finish_reason(const char *stop_reason) {
  if (strcmp(stop_reason, "end_turn") == 0 || strcmp(stop_reason, "stop_sequence") == 0)
    return "stop";
  if (strcmp(stop_reason, "max_tokens") == 0) return "length";
  if (strcmp(stop_reason, "tool_use") == 0) return "tool_calls";
  if (strcmp(stop_reason, "refusal") == 0) return "content_filter";
  return stop_reason;
}

static ragd_err ant_emit(struct llm_stream *s, json_t *text) {
  ragd_err rc;
  if (!json_is_string(text)) return RAGD_OK;
  rc = llm_stream_emit_text(s, json_string_value(text), json_string_length(text));
  if (rc) llm_stream_fail(s, rc, "upstream_protocol", ragd_strerror(rc));
  return rc;
}

static void ant_usage(struct llm_stream *s, json_t *usage) {
  json_t *in, *out;
  if (!json_is_object(usage)) return;
  in = json_object_get(usage, "input_tokens");
  out = json_object_get(usage, "output_tokens");
  llm_stream_set_usage(s, json_is_integer(in) ? (long)json_integer_value(in) : -1,
                       json_is_integer(out) ? (long)json_integer_value(out) : -1);
}

static ragd_err ant_handle(struct llm_stream *s, const char *type, json_t *ev) {
  json_t *block, *delta, *message, *reason;
  char text[512];

  if (strcmp(type, "message_start") == 0) {
    message = json_object_get(ev, "message");
    if (json_is_object(message)) ant_usage(s, json_object_get(message, "usage"));
  } else if (strcmp(type, "content_block_start") == 0) {
    block = json_object_get(ev, "content_block");
    if (json_is_object(block) && json_is_string(json_object_get(block, "type")) &&
        strcmp(json_string_value(json_object_get(block, "type")), "text") == 0)
      return ant_emit(s, json_object_get(block, "text"));
  } else if (strcmp(type, "content_block_delta") == 0) {
    delta = json_object_get(ev, "delta");
    /* thinking_delta, input_json_delta, signature_delta: not answer text */
    if (json_is_object(delta) && json_is_string(json_object_get(delta, "type")) &&
        strcmp(json_string_value(json_object_get(delta, "type")), "text_delta") == 0)
      return ant_emit(s, json_object_get(delta, "text"));
  } else if (strcmp(type, "message_delta") == 0) {
    delta = json_object_get(ev, "delta");
    reason = json_is_object(delta) ? json_object_get(delta, "stop_reason") : NULL;
    if (json_is_string(reason)) llm_stream_set_finish_reason(s, ant_finish_reason(json_string_value(reason)));
    ant_usage(s, json_object_get(ev, "usage"));
  } else if (strcmp(type, "message_stop") == 0) {
    llm_stream_end(s);
  } else if (strcmp(type, "error") == 0) {
    llm_error_message(ev, text, sizeof(text), "the provider reported an error mid-stream");
    llm_stream_fail(s, RAGD_EUPSTREAM, "upstream_error", text);
    return RAGD_EUPSTREAM;
  }
  /* ping, content_block_stop and types added later need nothing. */
  return RAGD_OK;
}

static ragd_err ant_on_event(struct llm_stream *s, const struct llm_sse_event *ev) {
  json_t *root, *type;
  json_error_t jerr;
  char message[256];
  ragd_err rc;

  root = json_loadb(ev->data.ptr, ev->data.len, JSON_ALLOW_NUL, &jerr);
  if (!root) {
    snprintf(message, sizeof(message), "invalid JSON in %s event at byte %d: %s", ev->type.ptr,
             jerr.position, jerr.text);
    llm_stream_fail(s, RAGD_EUPSTREAM, "upstream_protocol", message);
    return RAGD_EUPSTREAM;
  }
  type = json_is_object(root) ? json_object_get(root, "type") : NULL;
  if (!json_is_string(type)) {
    llm_stream_fail(s, RAGD_EUPSTREAM, "upstream_protocol", "stream event without a \"type\"");
    rc = RAGD_EUPSTREAM;
  } else {
    rc = ant_handle(s, json_string_value(type), root);
  }
  json_decref(root);
  return rc;
}

/* ---- request ------------------------------------------------------------- */

/* Appends one turn, joining it to the previous one when the role repeats. */
static ragd_err ant_add_turn(json_t *messages, const char *role, const char *content) {
  json_t *last = json_array_size(messages) ? json_array_get(messages, json_array_size(messages) - 1)
                                           : NULL;
  json_t *turn;
  struct buf joined;
  ragd_err rc = RAGD_ENOMEM;

  buf_init(&joined, 0);
  if (last && strcmp(json_string_value(json_object_get(last, "role")), role) == 0) {
    if (buf_append_str(&joined, json_string_value(json_object_get(last, "content"))) ||
        buf_append_str(&joined, "\n\n") || buf_append_str(&joined, content))
      goto out;
    if (json_object_set_new(last, "content", json_stringn(joined.data, joined.len))) goto out;
    rc = RAGD_OK;
    goto out;
  }
  turn = json_pack("{s:s, s:s}", "role", role, "content", content);
  if (!turn || json_array_append_new(messages, turn)) goto out;
  rc = RAGD_OK;
out:
  buf_dispose(&joined);
  return rc;
}

static ragd_err ant_build_body(const struct ant *g, const struct llm_request *req,
                               char **out /* OUT */, size_t *out_len /* OUT */) {
  json_t *root = NULL, *messages = NULL;
  struct buf system;
  const char *role;
  size_t i;
  ragd_err rc = RAGD_ENOMEM;

  *out = NULL;
  buf_init(&system, 0);
  root = json_object();
  messages = json_array();
  if (!root || !messages) goto out;
  for (i = 0; i < req->message_count; i++) {
    role = req->messages[i].role;
    if (!role || !req->messages[i].content) {
      rc = RAGD_EINVAL;
      goto out;
    }
    if (strcmp(role, "system") == 0) {
      if (system.len && buf_append_str(&system, "\n\n")) goto out;
      if (buf_append_str(&system, req->messages[i].content)) goto out;
      continue;
    }
    if (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0) {
      rc = RAGD_EINVAL;
      goto out;
    }
    rc = ant_add_turn(messages, role, req->messages[i].content);
    if (rc) goto out;
    rc = RAGD_ENOMEM;
  }
  if (req->message_count == 0 && req->question) {
    rc = ant_add_turn(messages, "user", req->question);
    if (rc) goto out;
    rc = RAGD_ENOMEM;
  }
  if (json_array_size(messages) == 0) {
    rc = RAGD_EINVAL;
    goto out;
  }
  if (json_object_set_new(root, "model", json_string(g->model))) goto out;
  if (json_object_set_new(root, "max_tokens",
                          json_integer(req->max_tokens > 0 ? req->max_tokens
                                                           : ANT_DEFAULT_MAX_TOKENS)))
    goto out;
  if (system.len && json_object_set_new(root, "system", json_stringn(system.data, system.len)))
    goto out;
  if (json_object_set(root, "messages", messages)) goto out;
  if (json_object_set_new(root, "stream", json_true())) goto out;
  if (req->temperature >= 0 &&
      json_object_set_new(root, "temperature", json_real(req->temperature)))
    goto out;
  *out = json_dumps(root, JSON_COMPACT);
  if (!*out) goto out;
  *out_len = strlen(*out);
  rc = RAGD_OK;
out:
  buf_dispose(&system);
  json_decref(messages);
  json_decref(root);
  return rc;
}

static ragd_err ant_start(void *ctx, const struct llm_request *req, const struct llm_sink *sink) {
  struct ant *g = ctx;
  const char *headers[4];
  size_t header_count = 0;
  char *body = NULL;
  size_t body_len = 0;
  ragd_err rc;
  if (!req) return RAGD_EINVAL;
  rc = ant_build_body(g, req, &body, &body_len);
  if (rc) return rc;
  headers[header_count++] = g->version_header;
  rc = llm_stream_post(&g->ep, headers, header_count, req->request_id, body, body_len, sink,
                       ant_on_event);
  free(body);
  return rc;
}

/* ---- lifecycle ------------------------------------------------------------ */

static void ant_destroy(void *ctx) {
  struct ant *g = ctx;
  if (!g) return;
  llm_endpoint_dispose(&g->ep);
  free(g->version_header);
  free(g->model);
  free(g);
}

static ragd_err ant_create(const struct llm_config *cfg, void **ctx /* OUT */) {
  struct ant *g = NULL;
  struct buf version;
  const char *api_version;
  ragd_err rc = RAGD_ECONFIG;

  *ctx = NULL;
  buf_init(&version, 256);
  if (!cfg) goto out;
  api_version = cfg->api_version && cfg->api_version[0] ? cfg->api_version : ANT_DEFAULT_VERSION;
  if (strpbrk(api_version, "\r\n")) goto out;
  g = calloc(1, sizeof(*g));
  if (!g) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  rc = llm_endpoint_create(&g->ep, cfg, "anthropic", "/messages", "x-api-key: ");
  if (rc) goto out;
  rc = buf_appendf(&version, "anthropic-version: %s", api_version);
  if (rc) goto out;
  g->version_header = buf_take(&version, NULL);
  g->model = strdup(cfg->model);
  if (!g->version_header || !g->model) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  *ctx = g;
  g = NULL;
out:
  ant_destroy(g);
  buf_dispose(&version);
  return rc;
}

const struct llm_ops llm_anthropic_ops = {
    .version = LLM_OPS_VERSION,
    .name = "anthropic",
    .create = ant_create,
    .destroy = ant_destroy,
    .start = ant_start,
};
