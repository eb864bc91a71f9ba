/* stream.c - the shared core of the streaming network generators (see
 * stream_int.h). The sink is detached (never touched again) as soon as
 * on_finish has fired, which may be before the transfer ends. */
#include "llm/stream_int.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/breaker_int.h"
#include "util/log.h"
#include "util/metrics.h"

/* ---- metrics ------------------------------------------------------------- */

static struct {
  struct metric *requests, *retries, *failures;
} um;

static void upstream_metrics_create(void) {
  um.requests = metrics_counter("ragd_upstream_requests_total",
                                "Generation requests sent to an LLM endpoint (retries not counted).",
                                "endpoint");
  um.retries = metrics_counter("ragd_upstream_retries_total",
                               "Attempts repeated after a retryable failure, by endpoint.", "endpoint");
  um.failures = metrics_counter("ragd_upstream_failures_total",
                                "Generation requests that failed, by endpoint and kind (connect, "
                                "timeout, idle_timeout, first_token_timeout, breaker_open, http_429, "
                                "http_4xx, http_5xx, or the stream's error code).",
                                "endpoint,kind");
}

static void upstream_metrics_init(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, upstream_metrics_create);
}

/* ---- endpoint settings ---------------------------------------------------- */

static long pick(long value, long def) { return value > 0 ? value : def; }

ragd_err llm_endpoint_init(struct llm_endpoint *ep, const struct llm_config *cfg,
                           const char *provider, char *url, const char *api_key) {
  struct llm_breaker_config bc;
  struct buf key;
  uint64_t fp = 1469598103934665603ULL; /* FNV-1a 64 */
  const unsigned char *p;
  ragd_err rc = RAGD_OK;

  memset(ep, 0, sizeof(*ep));
  ep->url = url;
  snprintf(ep->name, sizeof ep->name, "%s", cfg->name && cfg->name[0] ? cfg->name : provider);
  buf_init(&key, 8192);
  if (!url) return RAGD_ENOMEM;
  ep->connect_timeout_ms = pick(cfg->connect_timeout_ms, 10000);
  ep->total_timeout_ms = pick(cfg->total_timeout_ms, 120000);
  ep->idle_timeout_ms = pick(cfg->idle_timeout_ms, 60000);
  ep->first_token_timeout_ms =
      cfg->first_token_timeout_ms < 0 ? 0 : pick(cfg->first_token_timeout_ms, 30000);
  ep->retry.max_retries = cfg->retries > 0 ? cfg->retries : 0;
  ep->retry.budget_ms = pick(cfg->retry_budget_ms, 10000);
  ep->retry.base_delay_ms = pick(cfg->retry_base_ms, 250);
  ep->retry.max_delay_ms = pick(cfg->retry_max_delay_ms, 4000);
  ep->http_version = cfg->http_version;
  if (cfg->ca_file && cfg->ca_file[0]) {
    ep->ca_file = strdup(cfg->ca_file);
    if (!ep->ca_file) {
      rc = RAGD_ENOMEM;
      goto out;
    }
  }
  if (cfg->breaker_min_requests < 0) goto out;
  bc.min_requests = pick(cfg->breaker_min_requests, 5);
  bc.failure_pct = pick(cfg->breaker_failure_pct, 50);
  if (bc.failure_pct > 100) bc.failure_pct = 100;
  bc.window_ms = pick(cfg->breaker_window_ms, 60000);
  bc.cooldown_ms = pick(cfg->breaker_cooldown_ms, 5000);
  for (p = (const unsigned char *)(api_key ? api_key : ""); *p; p++) {
    fp ^= *p;
    fp *= 1099511628211ULL;
  }
  rc = buf_appendf(&key, "%s %s %016llx", provider, url, (unsigned long long)fp);
  if (rc) goto out;
  rc = llm_breaker_acquire(key.data, cfg->name && cfg->name[0] ? cfg->name : provider, url, &bc,
                           &ep->breaker);
out:
  buf_dispose(&key);
  return rc;
}

ragd_err llm_endpoint_create(struct llm_endpoint *ep, const struct llm_config *cfg,
                             const char *provider, const char *path, const char *key_prefix) {
  struct buf url, key;
  size_t base_len;
  ragd_err rc = RAGD_ECONFIG;

  memset(ep, 0, sizeof(*ep));
  buf_init(&url, 4096);
  buf_init(&key, 8192);
  if (!cfg || !cfg->base_url || !cfg->base_url[0] || !cfg->model || !cfg->model[0]) goto out;
  if (strpbrk(cfg->base_url, "\r\n") || (cfg->api_key && strpbrk(cfg->api_key, "\r\n"))) goto out;
  base_len = strlen(cfg->base_url);
  while (base_len && cfg->base_url[base_len - 1] == '/') base_len--;
  rc = buf_append(&url, cfg->base_url, base_len);
  if (!rc) rc = buf_append_str(&url, path);
  if (!rc) rc = llm_endpoint_init(ep, cfg, provider, buf_take(&url, NULL), cfg->api_key);
  if (rc || !cfg->api_key || !cfg->api_key[0]) goto out;
  rc = buf_appendf(&key, "%s%s", key_prefix, cfg->api_key);
  if (!rc) ep->key_header = buf_take(&key, NULL);
  if (!rc && !ep->key_header) rc = RAGD_ENOMEM;
out:
  if (rc) llm_endpoint_dispose(ep);
  buf_dispose(&url);
  if (key.data) memset(key.data, 0, key.len);
  buf_dispose(&key);
  return rc;
}

void llm_endpoint_dispose(struct llm_endpoint *ep) {
  if (!ep) return;
  if (ep->key_header) {
    /* The key should not linger in freed memory. */
    memset(ep->key_header, 0, strlen(ep->key_header));
    free(ep->key_header);
  }
  free(ep->url);
  free(ep->ca_file);
  llm_breaker_release(ep->breaker);
  memset(ep, 0, sizeof(*ep));
}

/* ---- sink delivery ---------------------------------------------------- */

static void stream_finish(struct llm_stream *s, ragd_err rc, const char *finish_reason,
                          const char *code, const char *message) {
  if (s->finished) return;
  if (rc != RAGD_OK && code && strcmp(code, "cancelled") != 0)
    metrics_add(um.failures, 1, s->endpoint, s->failure_kind ? s->failure_kind : code);
  if (s->sink.on_usage && (s->prompt_tokens >= 0 || s->completion_tokens >= 0))
    s->sink.on_usage(s->sink.ctx, s->prompt_tokens > 0 ? s->prompt_tokens : 0,
                     s->completion_tokens > 0 ? s->completion_tokens : 0);
  s->finished = 1;
  s->sink.on_finish(s->sink.ctx, rc, finish_reason, code, message);
}

void llm_stream_fail(struct llm_stream *s, ragd_err rc, const char *code, const char *message) {
  if (s->fail_code) return;
  s->fail_rc = rc;
  s->fail_code = code;
  s->fail_message = strdup(message ? message : "");
}

void llm_stream_set_usage(struct llm_stream *s, long prompt_tokens, long completion_tokens) {
  if (prompt_tokens >= 0) s->prompt_tokens = prompt_tokens;
  if (completion_tokens >= 0) s->completion_tokens = completion_tokens;
}

void llm_stream_set_finish_reason(struct llm_stream *s, const char *reason) {
  if (reason && reason[0]) snprintf(s->finish_reason, sizeof(s->finish_reason), "%s", reason);
}

void llm_stream_end(struct llm_stream *s) { s->ended = 1; }

/* Length of the UTF-8 sequence a lead byte announces; 0 for a continuation
 * byte, 1 for anything we will not try to complete. */
static size_t utf8_seq_len(unsigned char c) {
  if (c < 0x80) return 1;
  if (c < 0xC0) return 0;
  if (c < 0xE0) return 2;
  if (c < 0xF0) return 3;
  if (c < 0xF8) return 4;
  return 1;
}

/* Number of bytes at the end of p[0..len) that start a character whose
 * remaining bytes have not arrived yet. */
static size_t utf8_incomplete_tail(const unsigned char *p, size_t len) {
  size_t back, need;
  for (back = 1; back <= 4 && back <= len; back++) {
    need = utf8_seq_len(p[len - back]);
    if (need == 0) continue; /* continuation byte: keep looking for the lead */
    return need > back ? back : 0;
  }
  return 0;
}

ragd_err llm_stream_emit_text(struct llm_stream *s, const char *text, size_t len) {
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
  tail = utf8_incomplete_tail(p, total);
  if (total > tail) {
    s->deltas++;
    s->sink.on_delta(s->sink.ctx, (const char *)p, total - tail);
  }
  memcpy(s->utf8_tail, p + total - tail, tail);
  s->utf8_tail_len = tail;
out:
  buf_dispose(&joined);
  return rc;
}

void llm_error_message(json_t *root, char *out, size_t out_len, const char *fallback) {
  json_t *err, *msg = NULL;
  if (json_is_array(root)) root = json_array_get(root, 0);
  err = json_is_object(root) ? json_object_get(root, "error") : NULL;
  if (json_is_object(err)) msg = json_object_get(err, "message");
  if (json_is_string(err)) msg = err;
  if (json_is_string(msg) && json_string_length(msg) > 0) {
    snprintf(out, out_len, "%s", json_string_value(msg));
  } else {
    snprintf(out, out_len, "%s", fallback);
  }
}

static ragd_err request_id_header(const char *id, struct buf *storage, const char **headers,
                                 size_t *count) {
  ragd_err rc;
  if (!id || !id[0]) return RAGD_OK;
  if (strpbrk(id, "\r\n")) return RAGD_EINVAL;
  rc = buf_appendf(storage, "X-Request-ID: %s", id);
  if (rc) return rc;
  headers[(*count)++] = storage->data;
  return RAGD_OK;
}

/* ---- transfer callbacks (upstream thread) -------------------------------- */

static ragd_err stream_on_event(void *ctx, const struct llm_sse_event *ev) {
  struct llm_stream *s = ctx;
  if (s->ended || s->finished) return RAGD_OK;
  return s->on_event(s, ev);
}

static void stream_finish_ok(struct llm_stream *s) {
  /* A dangling partial character cannot become valid any more; drop it. */
  s->utf8_tail_len = 0;
  stream_finish(s, RAGD_OK, s->finish_reason[0] ? s->finish_reason : "stop", NULL, NULL);
}

static int stream_on_body(void *ctx, long http_status, const char *bytes, size_t len) {
  struct llm_stream *s = ctx;
  size_t room;

  s->http_status = http_status;
  if (http_status < 200 || http_status > 299) {
    room = LLM_STREAM_ERROR_BODY_MAX - s->error_body.len;
    if (len > room) len = room;
    if (len && buf_append(&s->error_body, bytes, len) != RAGD_OK) return 1;
    return 0;
  }
  if (s->finished) return 0; /* after the terminal event: let the response end by itself */
  if (llm_sse_parser_feed(&s->sse, bytes, len) != RAGD_OK) {
    if (!s->fail_code)
      llm_stream_fail(s, RAGD_EUPSTREAM, "upstream_protocol", "stream line longer than 1 MiB");
    return 1;
  }
  if (s->ended) stream_finish_ok(s);
  return 0;
}

static int stream_is_cancelled(void *ctx) {
  struct llm_stream *s = ctx;
  if (s->finished || !s->sink.is_cancelled) return 0;
  return s->sink.is_cancelled(s->sink.ctx);
}

static int stream_is_committed(void *ctx) {
  const struct llm_stream *s = ctx;
  return s->deltas > 0 || s->finished;
}

static void stream_reset_attempt(struct llm_stream *s) {
  llm_sse_event_fn fn = s->sse.on_event;
  llm_sse_parser_dispose(&s->sse);
  llm_sse_parser_init(&s->sse, LLM_STREAM_LINE_MAX, fn, s);
  buf_dispose(&s->error_body);
  buf_init(&s->error_body, LLM_STREAM_ERROR_BODY_MAX);
  s->http_status = 0;
  s->ended = 0;
  s->finish_reason[0] = '\0';
  s->prompt_tokens = s->completion_tokens = -1;
  s->utf8_tail_len = 0;
  free(s->fail_message);
  s->fail_message = NULL;
  s->fail_code = NULL;
  s->fail_rc = RAGD_OK;
}

static void stream_on_retry(void *ctx, int attempt, long delay_ms, const char *reason) {
  struct llm_stream *s = ctx;
  stream_reset_attempt(s);
  metrics_add(um.retries, 1, s->endpoint);
  if (!s->finished && s->sink.on_retry) s->sink.on_retry(s->sink.ctx, attempt, delay_ms, reason);
}

static void stream_finish_http_error(struct llm_stream *s, int attempts) {
  json_t *root = NULL;
  char fallback[64], provider_message[400], message[512];
  int unavailable = s->http_status >= 500 || s->http_status == 429;

  s->failure_kind = s->http_status == 429 ? "http_429" : s->http_status >= 500 ? "http_5xx" : "http_4xx";
  snprintf(fallback, sizeof(fallback), "upstream answered HTTP %ld", s->http_status);
  if (s->error_body.len) root = json_loadb(s->error_body.data, s->error_body.len, 0, NULL);
  llm_error_message(root, provider_message, sizeof(provider_message), fallback);
  json_decref(root);
  if (attempts > 1) {
    snprintf(message, sizeof(message), "%s (after %d attempts)", provider_message, attempts);
  } else {
    snprintf(message, sizeof(message), "%s", provider_message);
  }
  stream_finish(s, RAGD_EUPSTREAM, NULL, unavailable ? "upstream_unavailable" : "upstream_error",
                message);
}

static void stream_free(struct llm_stream *s) {
  if (!s) return;
  llm_sse_parser_dispose(&s->sse);
  buf_dispose(&s->error_body);
  free(s->fail_message);
  free(s);
}

static void stream_on_complete(void *ctx, const struct llm_upstream_result *res) {
  struct llm_stream *s = ctx;
  char message[512];

  if (s->finished) goto out;
  if (res->http_status) s->http_status = res->http_status;
  switch (res->outcome) {
  case LLM_UPSTREAM_CANCELLED:
  case LLM_UPSTREAM_SHUTDOWN:
    stream_finish(s, RAGD_ECANCELLED, NULL, "cancelled",
                  res->outcome == LLM_UPSTREAM_SHUTDOWN ? "server shutting down"
                                                         : "client went away");
    goto out;
  case LLM_UPSTREAM_TIMEOUT:
  case LLM_UPSTREAM_IDLE_TIMEOUT:
  case LLM_UPSTREAM_FIRST_TOKEN_TIMEOUT:
    s->failure_kind = res->outcome == LLM_UPSTREAM_TIMEOUT        ? "timeout"
                      : res->outcome == LLM_UPSTREAM_IDLE_TIMEOUT ? "idle_timeout"
                                                                  : "first_token_timeout";
    snprintf(message, sizeof(message), "upstream timed out: %s", res->message);
    stream_finish(s, RAGD_ETIMEOUT, NULL, "upstream_timeout", message);
    goto out;
  case LLM_UPSTREAM_CONNECT_FAILED:
    s->failure_kind = "connect";
    snprintf(message, sizeof(message), "cannot reach upstream%s: %s",
             res->attempts > 1 ? " (every attempt failed)" : "", res->message);
    stream_finish(s, RAGD_EUPSTREAM, NULL, "upstream_unavailable", message);
    goto out;
  case LLM_UPSTREAM_BREAKER_OPEN:
    s->failure_kind = "breaker_open";
    stream_finish(s, RAGD_EUPSTREAM, NULL, "upstream_unavailable", res->message);
    goto out;
  case LLM_UPSTREAM_DONE:
  case LLM_UPSTREAM_STOPPED:
  case LLM_UPSTREAM_FAILED:
    break;
  }
  if (s->http_status && (s->http_status < 200 || s->http_status > 299)) {
    stream_finish_http_error(s, res->attempts);
    goto out;
  }
  if (s->fail_code) {
    stream_finish(s, s->fail_rc, NULL, s->fail_code, s->fail_message);
    goto out;
  }
  if (s->ended || s->finish_reason[0]) {
    stream_finish_ok(s);
    goto out;
  }
  if (res->outcome == LLM_UPSTREAM_FAILED && s->http_status == 0) {
    snprintf(message, sizeof(message), "upstream failed: %s", res->message);
    stream_finish(s, RAGD_EUPSTREAM, NULL, "upstream_unavailable", message);
    goto out;
  }
  snprintf(message, sizeof(message), "upstream closed the stream before it finished%s%s",
           res->message[0] ? ": " : "", res->message);
  stream_finish(s, RAGD_EUPSTREAM, NULL, "upstream_closed", message);
out:
  stream_free(s);
}

ragd_err llm_stream_start(const struct llm_stream_request *req, const struct llm_sink *sink,
                          llm_stream_event_fn on_event) {
  struct llm_stream *s = NULL;
  struct llm_upstream_request up;
  struct llm_upstream_callbacks cb = {.on_body = stream_on_body,
                                      .is_cancelled = stream_is_cancelled,
                                      .on_complete = stream_on_complete,
                                      .is_committed = stream_is_committed,
                                      .on_retry = stream_on_retry};
  const struct llm_endpoint *ep = req->ep;
  ragd_err rc;

  if (!sink || !sink->on_delta || !sink->on_finish || !on_event) return RAGD_EINVAL;
  s = calloc(1, sizeof(*s));
  if (!s) return RAGD_ENOMEM;
  s->sink = *sink;
  s->on_event = on_event;
  s->prompt_tokens = s->completion_tokens = -1;
  snprintf(s->endpoint, sizeof s->endpoint, "%s", ep->name);
  upstream_metrics_init();
  llm_sse_parser_init(&s->sse, LLM_STREAM_LINE_MAX, stream_on_event, s);
  buf_init(&s->error_body, LLM_STREAM_ERROR_BODY_MAX);

  memset(&up, 0, sizeof(up));
  up.url = req->url ? req->url : ep->url;
  up.method = "POST";
  up.headers = req->headers;
  up.header_count = req->header_count;
  up.body = req->body;
  up.body_len = req->body_len;
  up.connect_timeout_ms = ep->connect_timeout_ms;
  up.total_timeout_ms = ep->total_timeout_ms;
  up.idle_timeout_ms = ep->idle_timeout_ms;
  up.first_token_timeout_ms = ep->first_token_timeout_ms;
  up.http_version = ep->http_version;
  up.ca_file = ep->ca_file;
  up.retry = ep->retry;
  up.breaker = ep->breaker;
  up.request_id = req->request_id;
  rc = llm_upstream_add(&up, &cb, s);
  if (rc) stream_free(s); /* on success the transfer owns s */
  else metrics_add(um.requests, 1, ep->name);
  return rc;
}

ragd_err llm_stream_post(const struct llm_endpoint *ep, const char *const *provider_headers,
                         size_t provider_header_count, const char *request_id, const char *body,
                         size_t body_len, const struct llm_sink *sink, llm_stream_event_fn on_event) {
  struct llm_stream_request sr;
  const char *headers[8];
  size_t count = 0;
  struct buf id_header;
  ragd_err rc;
  if (!sink || !sink->on_delta || !sink->on_finish || provider_header_count > 4) return RAGD_EINVAL;
  buf_init(&id_header, 1024);
  headers[count++] = "Content-Type: application/json";
  headers[count++] = "Accept: text/event-stream";
  for (size_t i = 0; i < provider_header_count; i++) headers[count++] = provider_headers[i];
  if (ep->key_header) headers[count++] = ep->key_header;
  rc = request_id_header(request_id, &id_header, headers, &count);
  if (!rc) {
    memset(&sr, 0, sizeof sr);
    sr.ep = ep;
    sr.headers = headers;
    sr.header_count = count;
    sr.body = body;
    sr.body_len = body_len;
    sr.request_id = request_id;
    rc = llm_stream_start(&sr, sink, on_event);
  }
  buf_dispose(&id_header);
  return rc;
}
