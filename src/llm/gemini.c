/* gemini.c - the "gemini" generator: Google's Gemini API,
 * POST {base_url}/models/{model}:streamGenerateContent?alt=sse with the key
 * in the x-goog-api-key header (never in the URL, where it would end up in
 * logs).
 *
 * Requests: system messages become "systemInstruction", the rest "contents"
 * with roles "user" and "model" (consecutive turns of one role are joined).
 * Responses: each SSE data line is a whole GenerateContentResponse; the
 * answer is the text of candidates[0].content.parts[], usage comes from
 * usageMetadata, and the stream simply ends after the chunk that carries
 * candidates[0].finishReason (there is no [DONE]). A prompt blocked before
 * generation has promptFeedback.blockReason and no candidates. Safety-type
 * stops are reported as finish reason "content_filter". */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/llm.h"
#include "llm/stream_int.h"
#include "util/buf.h"

struct gem {
  struct llm_endpoint ep; /* url is {base_url}/models/{model}:streamGenerateContent?alt=sse;
                             key header "x-goog-api-key: ..." */
};

/* ---- response parsing -------------------------------------------------- */

static const char *gem_finish_reason(const char *reason) {
  static const char *const filtered[] = {"SAFETY", "RECITATION", "BLOCKLIST",
                                         "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"};
  size_t i;
  if (strcmp(reason, "STOP") == 0) return "stop";
  if (strcmp(reason, "MAX_TOKENS") == 0) return "length";
  for (i = 0; i < sizeof(filtered) / sizeof(filtered[0]); i++) {
    if (strcmp(reason, filtered[i]) == 0) return "content_filter";
  }
  if (strcmp(reason, "FINISH_REASON_UNSPECIFIED") == 0) return NULL;
  return "other"; /* OTHER, MALFORMED_FUNCTION_CALL, and reasons added later */
}

static ragd_err gem_handle(struct llm_stream *s, json_t *chunk) {
  json_t *candidates, *cand, *content, *parts, *part, *text, *reason, *usage, *feedback, *block;
  const char *mapped;
  char message[512];
  size_t i;
  ragd_err rc;

  if (!json_is_object(chunk)) {
    llm_stream_fail(s, RAGD_EUPSTREAM, "upstream_protocol", "stream chunk is not a JSON object");
    return RAGD_EUPSTREAM;
  }
  if (json_object_get(chunk, "error")) {
    llm_error_message(chunk, message, sizeof(message), "the provider reported an error mid-stream");
    llm_stream_fail(s, RAGD_EUPSTREAM, "upstream_error", message);
    return RAGD_EUPSTREAM;
  }
  usage = json_object_get(chunk, "usageMetadata");
  if (json_is_object(usage)) {
    json_t *p = json_object_get(usage, "promptTokenCount");
    json_t *c = json_object_get(usage, "candidatesTokenCount");
    llm_stream_set_usage(s, json_is_integer(p) ? (long)json_integer_value(p) : -1,
                         json_is_integer(c) ? (long)json_integer_value(c) : -1);
  }
  feedback = json_object_get(chunk, "promptFeedback");
  block = json_is_object(feedback) ? json_object_get(feedback, "blockReason") : NULL;
  if (json_is_string(block)) llm_stream_set_finish_reason(s, "content_filter");

  candidates = json_object_get(chunk, "candidates");
  cand = json_is_array(candidates) ? json_array_get(candidates, 0) : NULL;
  if (!json_is_object(cand)) return RAGD_OK;
  content = json_object_get(cand, "content");
  parts = json_is_object(content) ? json_object_get(content, "parts") : NULL;
  json_array_foreach(parts, i, part) {
    /* A "thought" part is the model's reasoning, not the answer. */
    if (!json_is_object(part) || json_is_true(json_object_get(part, "thought"))) continue;
    text = json_object_get(part, "text");
    if (!json_is_string(text)) continue;
    rc = llm_stream_emit_text(s, json_string_value(text), json_string_length(text));
    if (rc) {
      llm_stream_fail(s, rc, "upstream_protocol", ragd_strerror(rc));
      return rc;
    }
  }
  reason = json_object_get(cand, "finishReason");
  if (json_is_string(reason)) {
    mapped = gem_finish_reason(json_string_value(reason));
    if (mapped) llm_stream_set_finish_reason(s, mapped);
  }
  return RAGD_OK;
}

static ragd_err gem_on_event(struct llm_stream *s, const struct llm_sse_event *ev) {
  json_t *chunk;
  json_error_t jerr;
  char message[256];
  ragd_err rc;

  chunk = json_loadb(ev->data.ptr, ev->data.len, JSON_ALLOW_NUL, &jerr);
  if (!chunk) {
    snprintf(message, sizeof(message), "invalid JSON in stream chunk at byte %d: %s",
             jerr.position, jerr.text);
    llm_stream_fail(s, RAGD_EUPSTREAM, "upstream_protocol", message);
    return RAGD_EUPSTREAM;
  }
  rc = gem_handle(s, chunk);
  json_decref(chunk);
  return rc;
}

/* ---- request ------------------------------------------------------------- */

/* Appends one turn, joining it to the previous one when the role repeats. */
static ragd_err gem_add_turn(json_t *contents, const char *role, const char *text) {
  size_t n = json_array_size(contents);
  json_t *last = n ? json_array_get(contents, n - 1) : NULL;
  json_t *turn, *part;
  struct buf joined;
  ragd_err rc = RAGD_ENOMEM;

  buf_init(&joined, 0);
  if (last && strcmp(json_string_value(json_object_get(last, "role")), role) == 0) {
    part = json_array_get(json_object_get(last, "parts"), 0);
    if (buf_append_str(&joined, json_string_value(json_object_get(part, "text"))) ||
        buf_append_str(&joined, "\n\n") || buf_append_str(&joined, text))
      goto out;
    if (json_object_set_new(part, "text", json_stringn(joined.data, joined.len))) goto out;
    rc = RAGD_OK;
    goto out;
  }
  turn = json_pack("{s:s, s:[{s:s}]}", "role", role, "parts", "text", text);
  if (!turn || json_array_append_new(contents, turn)) goto out;
  rc = RAGD_OK;
out:
  buf_dispose(&joined);
  return rc;
}

static ragd_err gem_build_body(const struct llm_request *req, char **out /* OUT */,
                               size_t *out_len /* OUT */) {
  json_t *root = NULL, *contents = NULL, *gen = NULL;
  struct buf system;
  const char *role;
  size_t i;
  ragd_err rc = RAGD_ENOMEM;

  *out = NULL;
  buf_init(&system, 0);
  root = json_object();
  contents = json_array();
  gen = json_object();
  if (!root || !contents || !gen) goto out;
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
    rc = gem_add_turn(contents, strcmp(role, "user") == 0 ? "user" : "model",
                      req->messages[i].content);
    if (rc) goto out;
    rc = RAGD_ENOMEM;
  }
  if (req->message_count == 0 && req->question) {
    rc = gem_add_turn(contents, "user", req->question);
    if (rc) goto out;
    rc = RAGD_ENOMEM;
  }
  if (json_array_size(contents) == 0) {
    rc = RAGD_EINVAL;
    goto out;
  }
  if (json_object_set(root, "contents", contents)) goto out;
  if (system.len &&
      json_object_set_new(root, "systemInstruction",
                          json_pack("{s:[{s:s%}]}", "parts", "text", system.data, system.len)))
    goto out;
  if (req->max_tokens > 0 &&
      json_object_set_new(gen, "maxOutputTokens", json_integer(req->max_tokens)))
    goto out;
  if (req->temperature >= 0 && json_object_set_new(gen, "temperature", json_real(req->temperature)))
    goto out;
  if (json_object_size(gen) && json_object_set(root, "generationConfig", gen)) goto out;
  *out = json_dumps(root, JSON_COMPACT);
  if (!*out) goto out;
  *out_len = strlen(*out);
  rc = RAGD_OK;
out:
  buf_dispose(&system);
  json_decref(gen);
  json_decref(contents);
  json_decref(root);
  return rc;
}

static ragd_err gem_start(void *ctx, const struct llm_request *req, const struct llm_sink *sink) {
  struct gem *g = ctx;
  char *body = NULL;
  size_t body_len = 0;
  ragd_err rc;
  if (!req) return RAGD_EINVAL;
  rc = gem_build_body(req, &body, &body_len);
  if (rc) return rc;
  rc = llm_stream_post(&g->ep, NULL, 0, req->request_id, body, body_len, sink, gem_on_event);
  free(body);
  return rc;
}

/* ---- lifecycle ------------------------------------------------------------ */

static void gem_destroy(void *ctx) {
  struct gem *g = ctx;
  if (!g) return;
  llm_endpoint_dispose(&g->ep);
  free(g);
}

/* Model ids are short ASCII names ("gemini-2.0-flash", "models/..."); they go
 * into the URL path, so anything else is refused rather than escaped. */
static int gem_model_ok(const char *model) {
  const char *p;
  for (p = model; *p; p++) {
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '-' || *p == '.' || *p == '_' || *p == '/'))
      return 0;
  }
  return p != model && strstr(model, "..") == NULL;
}

static ragd_err gem_create(const struct llm_config *cfg, void **ctx /* OUT */) {
  struct gem *g = NULL;
  struct buf path;
  ragd_err rc = RAGD_ECONFIG;

  *ctx = NULL;
  buf_init(&path, 1024);
  if (!cfg || !cfg->model || !gem_model_ok(cfg->model)) goto out;
  g = calloc(1, sizeof(*g));
  rc = g ? buf_appendf(&path, "/%s%s:streamGenerateContent?alt=sse",
                       strncmp(cfg->model, "models/", 7) == 0 ? "" : "models/", cfg->model)
         : RAGD_ENOMEM;
  if (rc) goto out;
  rc = llm_endpoint_create(&g->ep, cfg, "gemini", path.data, "x-goog-api-key: ");
  if (rc) goto out;
  *ctx = g;
  g = NULL;
out:
  gem_destroy(g);
  buf_dispose(&path);
  return rc;
}

const struct llm_ops llm_gemini_ops = {
    .version = LLM_OPS_VERSION,
    .name = "gemini",
    .create = gem_create,
    .destroy = gem_destroy,
    .start = gem_start,
};
