/* probe.c - llm_probe: one GET {base}/models on the upstream thread, waited
 * for on the caller's (see llm.h). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "llm/llm.h"
#include "llm/upstream_int.h"

#define PROBE_BODY_MAX (256 * 1024)
#define PROBE_ANTHROPIC_VERSION "2023-06-01"

struct probe {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  long status;
  enum llm_upstream_outcome outcome;
  char message[256];
  struct buf body;
};

static int probe_on_body(void *ctx, long http_status, const char *bytes, size_t len) {
  struct probe *p = ctx;
  size_t room = PROBE_BODY_MAX - p->body.len;
  p->status = http_status;
  if (len > room) len = room;
  if (len) buf_append(&p->body, bytes, len); /* a lost body only loses detail */
  return 0;
}

static void probe_on_complete(void *ctx, const struct llm_upstream_result *res) {
  struct probe *p = ctx;
  pthread_mutex_lock(&p->mu);
  if (res->http_status) p->status = res->http_status;
  p->outcome = res->outcome;
  snprintf(p->message, sizeof p->message, "%s", res->message ? res->message : "");
  p->done = 1;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

/* The provider's key header into out; RAGD_EINVAL for an unknown provider. */
static ragd_err key_header(const char *provider, const char *api_key, struct buf *out,
                           const char **extra) {
  *extra = NULL;
  if (strcmp(provider, "openai") == 0) {
    return api_key && api_key[0] ? buf_appendf(out, "Authorization: Bearer %s", api_key) : RAGD_OK;
  } else if (strcmp(provider, "anthropic") == 0) {
    *extra = "anthropic-version: " PROBE_ANTHROPIC_VERSION;
    return api_key && api_key[0] ? buf_appendf(out, "x-api-key: %s", api_key) : RAGD_OK;
  } else if (strcmp(provider, "gemini") == 0) {
    return api_key && api_key[0] ? buf_appendf(out, "x-goog-api-key: %s", api_key) : RAGD_OK;
  }
  return RAGD_EINVAL;
}

ragd_err llm_probe(const char *provider, const char *base_url, const char *api_key,
                   const char *ca_file, long timeout_ms, long *status, struct buf *body,
                   struct buf *detail) {
  struct probe p;
  struct llm_upstream_request req;
  struct llm_upstream_callbacks cb = {.on_body = probe_on_body, .on_complete = probe_on_complete};
  struct buf url, key;
  const char *headers[2], *extra = NULL;
  size_t count = 0, base_len;
  ragd_err rc;

  memset(&p, 0, sizeof p);
  pthread_mutex_init(&p.mu, NULL);
  pthread_cond_init(&p.cv, NULL);
  buf_init(&p.body, PROBE_BODY_MAX);
  buf_init(&url, 4096);
  buf_init(&key, 4096);
  *status = 0;
  if (!provider || !base_url || strpbrk(base_url, "\r\n") ||
      (api_key && strpbrk(api_key, "\r\n"))) {
    rc = RAGD_EINVAL;
    if (detail) buf_appendf(detail, "the base URL or the API key holds a line break");
    goto out;
  }
  rc = key_header(provider, api_key, &key, &extra);
  if (rc) {
    if (detail) buf_appendf(detail, "no probe for provider \"%s\"", provider);
    goto out;
  }
  if (key.data) headers[count++] = key.data;
  if (extra) headers[count++] = extra;
  base_len = strlen(base_url);
  while (base_len && base_url[base_len - 1] == '/') base_len--;
  rc = buf_append(&url, base_url, base_len);
  if (!rc) rc = buf_append_str(&url, "/models");
  if (rc) goto out;
  memset(&req, 0, sizeof req);
  req.url = url.data;
  req.method = "GET";
  req.headers = headers;
  req.header_count = count;
  req.connect_timeout_ms = timeout_ms;
  req.total_timeout_ms = timeout_ms;
  req.ca_file = ca_file; /* NULL or "": the system's */
  rc = llm_upstream_add(&req, &cb, &p);
  if (rc) {
    if (detail) buf_appendf(detail, "cannot start the request: %s", ragd_strerror(rc));
    goto out;
  }
  pthread_mutex_lock(&p.mu);
  while (!p.done) pthread_cond_wait(&p.cv, &p.mu);
  pthread_mutex_unlock(&p.mu);
  *status = p.status;
  switch (p.outcome) {
  case LLM_UPSTREAM_DONE:
    rc = RAGD_OK;
    break;
  case LLM_UPSTREAM_TIMEOUT:
  case LLM_UPSTREAM_IDLE_TIMEOUT:
  case LLM_UPSTREAM_FIRST_TOKEN_TIMEOUT:
    rc = RAGD_ETIMEOUT;
    if (detail) buf_appendf(detail, "no answer within %ld ms (%s)", timeout_ms, p.message);
    break;
  default:
    rc = RAGD_EUPSTREAM;
    if (detail) buf_appendf(detail, "%s", p.message[0] ? p.message : "no response");
    break;
  }
  if (!rc && body && p.body.data) rc = buf_append(body, p.body.data, p.body.len);
out:
  buf_dispose(&p.body);
  buf_dispose(&url);
  buf_dispose(&key);
  pthread_cond_destroy(&p.cv);
  pthread_mutex_destroy(&p.mu);
  return rc;
}
