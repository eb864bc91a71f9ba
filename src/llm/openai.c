/* openai.c - the "openai" generator: streams /chat/completions from any
 * OpenAI-compatible server. The transfer, retries, breaker and error mapping
 * are shared with the other network generators (stream.c); this file builds
 * the request and reads chat.completion.chunk events. `data: [DONE]` ends the
 * answer at once even if the server is slow to close the response. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/llm.h"
#include "llm/stream_int.h"
#include "util/buf.h"

struct oai {
  struct llm_endpoint ep; /* url is {base_url}/chat/completions; key header
                             "Authorization: Bearer ..." */
  char *model;
};

/* ---- response parsing -------------------------------------------------- */

static ragd_err oai_handle_chunk(struct llm_stream *s, json_t *chunk) {
  json_t *choices, *choice, *delta, *content, *reason, *usage, *err;
  char message[512];
  ragd_err rc = RAGD_OK;

  if (!json_is_object(chunk)) {
    llm_stream_fail(s, RAGD_EUPSTREAM, "upstream_protocol", "stream chunk is not a JSON object");
    return RAGD_EUPSTREAM;
  }
  err = json_object_get(chunk, "error");
  if (err && !json_is_null(err)) {
    llm_error_message(chunk, message, sizeof(message), "the provider reported an error mid-stream");
    llm_stream_fail(s, RAGD_EUPSTREAM, "upstream_error", message);
    return RAGD_EUPSTREAM;
  }
  choices = json_object_get(chunk, "choices");
  choice = json_is_array(choices) ? json_array_get(choices, 0) : NULL;
  if (json_is_object(choice)) {
    delta = json_object_get(choice, "delta");
    content = json_is_object(delta) ? json_object_get(delta, "content") : NULL;
    if (json_is_string(content)) {
      rc = llm_stream_emit_text(s, json_string_value(content), json_string_length(content));
      if (rc) {
        llm_stream_fail(s, rc, "upstream_protocol", ragd_strerror(rc));
        return rc;
      }
    }
    reason = json_object_get(choice, "finish_reason");
    if (json_is_string(reason)) llm_stream_set_finish_reason(s, json_string_value(reason));
  }
  usage = json_object_get(chunk, "usage");
  if (json_is_object(usage)) {
    llm_stream_set_usage(s, (long)json_integer_value(json_object_get(usage, "prompt_tokens")),
                         (long)json_integer_value(json_object_get(usage, "completion_tokens")));
  }
  return RAGD_OK;
}

static ragd_err oai_on_event(struct llm_stream *s, const struct llm_sse_event *ev) {
  json_t *chunk;
  json_error_t jerr;
  char message[256];
  ragd_err rc;

  if (ev->data.len == 6 && memcmp(ev->data.ptr, "[DONE]", 6) == 0) {
    llm_stream_end(s);
    return RAGD_OK;
  }
  chunk = json_loadb(ev->data.ptr, ev->data.len, JSON_ALLOW_NUL, &jerr);
  if (!chunk) {
    snprintf(message, sizeof(message), "invalid JSON in stream chunk at byte %d: %s",
             jerr.position, jerr.text);
    llm_stream_fail(s, RAGD_EUPSTREAM, "upstream_protocol", message);
    return RAGD_EUPSTREAM;
  }
  rc = oai_handle_chunk(s, chunk);
  json_decref(chunk);
  return rc;
}

/* ---- request ------------------------------------------------------------- */

static ragd_err oai_build_body(const struct oai *g, const struct llm_request *req,
                               char **out /* OUT */, size_t *out_len /* OUT */) {
  json_t *root = NULL, *messages = NULL, *m;
  size_t i;
  ragd_err rc = RAGD_ENOMEM;

  *out = NULL;
  root = json_object();
  messages = json_array();
  if (!root || !messages) goto out;
  if (req->message_count) {
    for (i = 0; i < req->message_count; i++) {
      if (!req->messages[i].role || !req->messages[i].content) {
        rc = RAGD_EINVAL;
        goto out;
      }
      m = json_pack("{s:s, s:s}", "role", req->messages[i].role, "content",
                    req->messages[i].content);
      if (!m || json_array_append_new(messages, m)) goto out;
    }
  } else if (req->question) {
    m = json_pack("{s:s, s:s}", "role", "user", "content", req->question);
    if (!m || json_array_append_new(messages, m)) goto out;
  } else {
    rc = RAGD_EINVAL;
    goto out;
  }
  if (json_object_set_new(root, "model", json_string(g->model))) goto out;
  if (json_object_set(root, "messages", messages)) goto out;
  if (json_object_set_new(root, "stream", json_true())) goto out;
  if (json_object_set_new(root, "stream_options", json_pack("{s:b}", "include_usage", 1))) goto out;
  if (req->max_tokens > 0 &&
      json_object_set_new(root, "max_tokens", json_integer(req->max_tokens)))
    goto out;
  if (req->temperature >= 0 &&
      json_object_set_new(root, "temperature", json_real(req->temperature)))
    goto out;
  *out = json_dumps(root, JSON_COMPACT);
  if (!*out) goto out;
  *out_len = strlen(*out);
  rc = RAGD_OK;
out:
  json_decref(messages);
  json_decref(root);
  return rc;
}

static ragd_err oai_start(void *ctx, const struct llm_request *req, const struct llm_sink *sink) {
  struct oai *g = ctx;
  char *body = NULL;
  size_t body_len = 0;
  ragd_err rc;
  if (!req) return RAGD_EINVAL;
  rc = oai_build_body(g, req, &body, &body_len);
  if (rc) return rc;
  rc = llm_stream_post(&g->ep, NULL, 0, req->request_id, body, body_len, sink, oai_on_event);
  free(body);
  return rc;
}

/* ---- lifecycle ------------------------------------------------------------ */

static void oai_destroy(void *ctx) {
  struct oai *g = ctx;
  if (!g) return;
  llm_endpoint_dispose(&g->ep);
  free(g->model);
  free(g);
}

static ragd_err oai_create(const struct llm_config *cfg, void **ctx /* OUT */) {
  struct oai *g = calloc(1, sizeof(*g));
  ragd_err rc = RAGD_ENOMEM;

  *ctx = NULL;
  if (!g) goto out;
  rc = llm_endpoint_create(&g->ep, cfg, "openai", "/chat/completions", "Authorization: Bearer ");
  if (rc) goto out;
  g->model = strdup(cfg->model);
  if (!g->model) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  *ctx = g;
  g = NULL;
out:
  oai_destroy(g);
  return rc;
}

const struct llm_ops llm_openai_ops = {
    .version = LLM_OPS_VERSION,
    .name = "openai",
    .create = oai_create,
    .destroy = oai_destroy,
    .start = oai_start,
};
