/* openai.c - the "openai" generator: streams /chat/completions from any
 * OpenAI-compatible server over the shared upstream thread.
 *
 * One generation is one struct oai_stream, owned by its upstream transfer:
 * created in start, freed in the transfer's on_complete. The sink is detached
 * (never touched again) as soon as on_finish has fired, which may be before
 * the transfer ends: `data: [DONE]` finishes the answer at once even if the
 * server is slow to close the response. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/llm.h"
#include "llm/sse_parser.h"
#include "llm/upstream_int.h"
#include "util/buf.h"
#include "util/log.h"

#define OAI_LINE_MAX (1024 * 1024)   /* one SSE line / event from upstream */
#define OAI_ERROR_BODY_MAX (64 * 1024) /* kept of a non-2xx response body */
#define OAI_FINISH_REASON_MAX 64

struct oai {
  char *url; /* {base_url}/chat/completions */
  char *auth_header; /* "Authorization: Bearer ..." or NULL */
  char *model;
  long connect_timeout_ms;
  long total_timeout_ms;
  long idle_timeout_ms;
};

struct oai_stream {
  struct llm_sink sink;
  int finished; /* on_finish has fired; the sink is off limits */
  int saw_done; /* data: [DONE] */
  char finish_reason[OAI_FINISH_REASON_MAX];
  struct llm_sse_parser sse;
  unsigned char utf8_tail[4]; /* incomplete trailing character held back */
  size_t utf8_tail_len;
  struct buf error_body; /* body of a non-2xx response (capped) */
  long http_status;
  /* A failure found while parsing, reported when the transfer ends. */
  ragd_err fail_rc;
  const char *fail_code;
  char *fail_message;
};

/* ---- sink delivery ---------------------------------------------------- */

static void oai_finish(struct oai_stream *s, ragd_err rc, const char *finish_reason,
                       const char *code, const char *message) {
  if (s->finished) return;
  s->finished = 1;
  s->sink.on_finish(s->sink.ctx, rc, finish_reason, code, message);
}

/* Records the first failure; later ones are consequences of it. */
static void oai_fail(struct oai_stream *s, ragd_err rc, const char *code, const char *message) {
  if (s->fail_code) return;
  s->fail_rc = rc;
  s->fail_code = code;
  s->fail_message = strdup(message ? message : "");
}

/* Length of the UTF-8 sequence a lead byte announces; 0 for a continuation
 * byte, 1 for anything we will not try to complete. */
static size_t oai_utf8_seq_len(unsigned char c) {
  if (c < 0x80) return 1;
  if (c < 0xC0) return 0;
  if (c < 0xE0) return 2;
  if (c < 0xF0) return 3;
  if (c < 0xF8) return 4;
  return 1;
}

/* Number of bytes at the end of p[0..len) that start a character whose
 * remaining bytes have not arrived yet. */
static size_t oai_utf8_incomplete_tail(const unsigned char *p, size_t len) {
  size_t back, need;
  for (back = 1; back <= 4 && back <= len; back++) {
    need = oai_utf8_seq_len(p[len - back]);
    if (need == 0) continue; /* continuation byte: keep looking for the lead */
    return need > back ? back : 0;
  }
  return 0;
}

/* Delivers text, never splitting a character across on_delta calls. */
static ragd_err oai_emit_text(struct oai_stream *s, const char *text, size_t len) {
  struct buf joined;
  const unsigned char *p;
  size_t total, tail;
  ragd_err rc = RAGD_OK;

  buf_init(&joined, 0);
  if (len == 0 || s->finished) goto out;
  if (s->utf8_tail_len) {
    rc = buf_append(&joined, s->utf8_tail, s->utf8_tail_len);
    if (rc) goto out;
    rc = buf_append(&joined, text, len);
    if (rc) goto out;
    p = (const unsigned char *)joined.data;
    total = joined.len;
  } else {
    p = (const unsigned char *)text;
    total = len;
  }
  tail = oai_utf8_incomplete_tail(p, total);
  if (total > tail) s->sink.on_delta(s->sink.ctx, (const char *)p, total - tail);
  memcpy(s->utf8_tail, p + total - tail, tail);
  s->utf8_tail_len = tail;
out:
  buf_dispose(&joined);
  return rc;
}

/* ---- response parsing -------------------------------------------------- */

/* Copies error.message (or a fallback) out of an OpenAI-style error object. */
static void oai_error_message(json_t *root, char *out, size_t out_len, const char *fallback) {
  json_t *err = json_is_object(root) ? json_object_get(root, "error") : NULL;
  json_t *msg = NULL;
  if (json_is_object(err)) msg = json_object_get(err, "message");
  if (json_is_string(err)) msg = err;
  if (json_is_string(msg)) {
    snprintf(out, out_len, "%s", json_string_value(msg));
  } else {
    snprintf(out, out_len, "%s", fallback);
  }
}

static ragd_err oai_handle_chunk(struct oai_stream *s, json_t *chunk) {
  json_t *choices, *choice, *delta, *content, *reason, *usage, *err;
  char message[512];
  ragd_err rc = RAGD_OK;

  if (!json_is_object(chunk)) {
    oai_fail(s, RAGD_EUPSTREAM, "upstream_protocol", "stream chunk is not a JSON object");
    return RAGD_EUPSTREAM;
  }
  err = json_object_get(chunk, "error");
  if (err && !json_is_null(err)) {
    oai_error_message(chunk, message, sizeof(message), "the provider reported an error mid-stream");
    oai_fail(s, RAGD_EUPSTREAM, "upstream_error", message);
    return RAGD_EUPSTREAM;
  }
  choices = json_object_get(chunk, "choices");
  choice = json_is_array(choices) ? json_array_get(choices, 0) : NULL;
  if (json_is_object(choice)) {
    delta = json_object_get(choice, "delta");
    content = json_is_object(delta) ? json_object_get(delta, "content") : NULL;
    if (json_is_string(content)) {
      rc = oai_emit_text(s, json_string_value(content), json_string_length(content));
      if (rc) {
        oai_fail(s, rc, "upstream_protocol", ragd_strerror(rc));
        return rc;
      }
    }
    reason = json_object_get(choice, "finish_reason");
    if (json_is_string(reason) && json_string_length(reason) > 0)
      snprintf(s->finish_reason, sizeof(s->finish_reason), "%s", json_string_value(reason));
  }
  usage = json_object_get(chunk, "usage");
  if (json_is_object(usage) && s->sink.on_usage && !s->finished) {
    s->sink.on_usage(s->sink.ctx, (long)json_integer_value(json_object_get(usage, "prompt_tokens")),
                     (long)json_integer_value(json_object_get(usage, "completion_tokens")));
  }
  return RAGD_OK;
}

static ragd_err oai_on_event(void *ctx, const struct llm_sse_event *ev) {
  struct oai_stream *s = ctx;
  json_t *chunk;
  json_error_t jerr;
  char message[256];
  ragd_err rc;

  if (s->saw_done || s->finished) return RAGD_OK;
  if (ev->data.len == 6 && memcmp(ev->data.ptr, "[DONE]", 6) == 0) {
    s->saw_done = 1;
    return RAGD_OK;
  }
  chunk = json_loadb(ev->data.ptr, ev->data.len, JSON_ALLOW_NUL, &jerr);
  if (!chunk) {
    snprintf(message, sizeof(message), "invalid JSON in stream chunk at byte %d: %s",
             jerr.position, jerr.text);
    oai_fail(s, RAGD_EUPSTREAM, "upstream_protocol", message);
    return RAGD_EUPSTREAM;
  }
  rc = oai_handle_chunk(s, chunk);
  json_decref(chunk);
  return rc;
}

/* Reports success once the stream said [DONE]. */
static void oai_finish_ok(struct oai_stream *s) {
  /* A dangling partial character cannot become valid any more; drop it. */
  s->utf8_tail_len = 0;
  oai_finish(s, RAGD_OK, s->finish_reason[0] ? s->finish_reason : "stop", NULL, NULL);
}

/* ---- transfer callbacks (upstream thread) -------------------------------- */

static int oai_on_body(void *ctx, long http_status, const char *bytes, size_t len) {
  struct oai_stream *s = ctx;
  size_t room;

  s->http_status = http_status;
  if (http_status < 200 || http_status > 299) {
    room = OAI_ERROR_BODY_MAX - s->error_body.len;
    if (len > room) len = room;
    if (len && buf_append(&s->error_body, bytes, len) != RAGD_OK) return 1;
    return 0;
  }
  if (s->finished) return 0; /* after [DONE]: let the response end by itself */
  if (llm_sse_parser_feed(&s->sse, bytes, len) != RAGD_OK) {
    if (!s->fail_code)
      oai_fail(s, RAGD_EUPSTREAM, "upstream_protocol", "stream line longer than 1 MiB");
    return 1;
  }
  if (s->saw_done) oai_finish_ok(s);
  return 0;
}

static int oai_is_cancelled(void *ctx) {
  struct oai_stream *s = ctx;
  if (s->finished || !s->sink.is_cancelled) return 0;
  return s->sink.is_cancelled(s->sink.ctx);
}

static void oai_finish_http_error(struct oai_stream *s) {
  json_t *root = NULL;
  char fallback[64], message[512];
  int unavailable = s->http_status >= 500 || s->http_status == 429;

  snprintf(fallback, sizeof(fallback), "upstream answered HTTP %ld", s->http_status);
  if (s->error_body.len) root = json_loadb(s->error_body.data, s->error_body.len, 0, NULL);
  oai_error_message(root, message, sizeof(message), fallback);
  json_decref(root);
  oai_finish(s, RAGD_EUPSTREAM, NULL, unavailable ? "upstream_unavailable" : "upstream_error",
             message);
}

static void oai_stream_free(struct oai_stream *s) {
  if (!s) return;
  llm_sse_parser_dispose(&s->sse);
  buf_dispose(&s->error_body);
  free(s->fail_message);
  free(s);
}

static void oai_on_complete(void *ctx, const struct llm_upstream_result *res) {
  struct oai_stream *s = ctx;
  char message[512];

  if (s->finished) goto out;
  if (res->http_status) s->http_status = res->http_status;
  switch (res->outcome) {
  case LLM_UPSTREAM_CANCELLED:
  case LLM_UPSTREAM_SHUTDOWN:
    oai_finish(s, RAGD_ECANCELLED, NULL, "cancelled",
               res->outcome == LLM_UPSTREAM_SHUTDOWN ? "server shutting down" : "client went away");
    goto out;
  case LLM_UPSTREAM_TIMEOUT:
  case LLM_UPSTREAM_IDLE_TIMEOUT:
    snprintf(message, sizeof(message), "upstream timed out: %s", res->message);
    oai_finish(s, RAGD_ETIMEOUT, NULL, "upstream_timeout", message);
    goto out;
  case LLM_UPSTREAM_CONNECT_FAILED:
    snprintf(message, sizeof(message), "cannot reach upstream: %s", res->message);
    oai_finish(s, RAGD_EUPSTREAM, NULL, "upstream_unavailable", message);
    goto out;
  case LLM_UPSTREAM_DONE:
  case LLM_UPSTREAM_STOPPED:
  case LLM_UPSTREAM_FAILED:
    break;
  }
  if (s->http_status && (s->http_status < 200 || s->http_status > 299)) {
    oai_finish_http_error(s);
    goto out;
  }
  if (s->fail_code) {
    oai_finish(s, s->fail_rc, NULL, s->fail_code, s->fail_message);
    goto out;
  }
  if (s->saw_done || s->finish_reason[0]) {
    oai_finish_ok(s);
    goto out;
  }
  if (res->outcome == LLM_UPSTREAM_FAILED && s->http_status == 0) {
    snprintf(message, sizeof(message), "upstream failed: %s", res->message);
    oai_finish(s, RAGD_EUPSTREAM, NULL, "upstream_unavailable", message);
    goto out;
  }
  snprintf(message, sizeof(message), "upstream closed the stream before it finished%s%s",
           res->message[0] ? ": " : "", res->message);
  oai_finish(s, RAGD_EUPSTREAM, NULL, "upstream_closed", message);
out:
  oai_stream_free(s);
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
  struct oai_stream *s = NULL;
  struct llm_upstream_request up;
  struct llm_upstream_callbacks cb = {
      .on_body = oai_on_body, .is_cancelled = oai_is_cancelled, .on_complete = oai_on_complete};
  const char *headers[4];
  size_t header_count = 0;
  struct buf request_id;
  char *body = NULL;
  size_t body_len = 0;
  ragd_err rc;

  buf_init(&request_id, 1024);
  if (!req || !sink || !sink->on_delta || !sink->on_finish) {
    rc = RAGD_EINVAL;
    goto out;
  }
  rc = oai_build_body(g, req, &body, &body_len);
  if (rc) goto out;

  headers[header_count++] = "Content-Type: application/json";
  headers[header_count++] = "Accept: text/event-stream";
  if (g->auth_header) headers[header_count++] = g->auth_header;
  if (req->request_id && req->request_id[0]) {
    if (strpbrk(req->request_id, "\r\n")) {
      rc = RAGD_EINVAL;
      goto out;
    }
    rc = buf_appendf(&request_id, "X-Request-ID: %s", req->request_id);
    if (rc) goto out;
    headers[header_count++] = request_id.data;
  }

  s = calloc(1, sizeof(*s));
  if (!s) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  s->sink = *sink;
  llm_sse_parser_init(&s->sse, OAI_LINE_MAX, oai_on_event, s);
  buf_init(&s->error_body, OAI_ERROR_BODY_MAX);

  memset(&up, 0, sizeof(up));
  up.url = g->url;
  up.method = "POST";
  up.headers = headers;
  up.header_count = header_count;
  up.body = body;
  up.body_len = body_len;
  up.connect_timeout_ms = g->connect_timeout_ms;
  up.total_timeout_ms = g->total_timeout_ms;
  up.idle_timeout_ms = g->idle_timeout_ms;
  rc = llm_upstream_add(&up, &cb, s);
  if (rc) goto out;
  s = NULL; /* the transfer owns it now */
out:
  oai_stream_free(s);
  free(body);
  buf_dispose(&request_id);
  return rc;
}

/* ---- lifecycle ------------------------------------------------------------ */

static void oai_destroy(void *ctx) {
  struct oai *g = ctx;
  if (!g) return;
  free(g->url);
  if (g->auth_header) {
    /* The key should not linger in freed memory. */
    memset(g->auth_header, 0, strlen(g->auth_header));
    free(g->auth_header);
  }
  free(g->model);
  free(g);
}

static ragd_err oai_create(const struct llm_config *cfg, void **ctx /* OUT */) {
  struct oai *g = NULL;
  struct buf url, auth;
  size_t base_len;
  ragd_err rc;

  *ctx = NULL;
  buf_init(&url, 4096);
  buf_init(&auth, 8192);
  if (!cfg || !cfg->base_url || !cfg->base_url[0] || !cfg->model || !cfg->model[0]) {
    rc = RAGD_ECONFIG;
    goto out;
  }
  if (strpbrk(cfg->base_url, "\r\n") || (cfg->api_key && strpbrk(cfg->api_key, "\r\n"))) {
    rc = RAGD_ECONFIG;
    goto out;
  }
  g = calloc(1, sizeof(*g));
  if (!g) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  base_len = strlen(cfg->base_url);
  while (base_len && cfg->base_url[base_len - 1] == '/') base_len--;
  rc = buf_append(&url, cfg->base_url, base_len);
  if (rc) goto out;
  rc = buf_append_str(&url, "/chat/completions");
  if (rc) goto out;
  g->url = buf_take(&url, NULL);
  if (cfg->api_key && cfg->api_key[0]) {
    rc = buf_appendf(&auth, "Authorization: Bearer %s", cfg->api_key);
    if (rc) goto out;
    g->auth_header = buf_take(&auth, NULL);
  }
  g->model = strdup(cfg->model);
  if (!g->url || !g->model || (cfg->api_key && cfg->api_key[0] && !g->auth_header)) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  g->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 10000;
  g->total_timeout_ms = cfg->total_timeout_ms > 0 ? cfg->total_timeout_ms : 120000;
  g->idle_timeout_ms = cfg->idle_timeout_ms > 0 ? cfg->idle_timeout_ms : 60000;
  *ctx = g;
  g = NULL;
out:
  oai_destroy(g);
  buf_dispose(&url);
  if (auth.data) memset(auth.data, 0, auth.len);
  buf_dispose(&auth);
  return rc;
}

const struct llm_ops llm_openai_ops = {
    .version = LLM_OPS_VERSION,
    .name = "openai",
    .create = oai_create,
    .destroy = oai_destroy,
    .start = oai_start,
};
