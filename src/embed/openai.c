/* openai.c - embeddings from any OpenAI-compatible server: POST
 * {base}/embeddings {"model", "input": [...], "encoding_format": "float",
 * "dimensions"?}.
 *
 * Why a blocking libcurl easy transfer on the calling thread, not the shared
 * upstream thread of llm/: an embedding is one short request whose answer the
 * caller cannot go on without (the ingest transaction needs the vectors, the
 * vector ranker needs the query vector), nothing streams, and no client
 * disconnect has to reach it mid-flight. The callers already run on worker
 * threads or in the command line, where blocking is what they want, and
 * `ragd ingest`/`reindex`/`eval` then need no upstream thread at all. This
 * file is the embeddings' upstream client, so curl.h stays in it.
 *
 * Inputs go in batches of at most batch_size texts and about batch_tokens
 * estimated tokens. A 429, a 5xx or a transport failure is retried up to
 * max_retries times after an exponential backoff with jitter (0.5 s, 1 s,
 * 2 s, ... capped at 20 s, each times 0.5..1), or after Retry-After seconds
 * when the server sends it (capped at 60 s). Other errors fail at once with
 * the server's own message. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "embed/embed.h"
#include "text/text.h"
#include "util/json.h"
#include "util/log.h"

#define OA_RESPONSE_MAX (256u * 1024 * 1024)
#define OA_BACKOFF_BASE_MS 500
#define OA_BACKOFF_MAX_MS 20000
#define OA_RETRY_AFTER_MAX_S 60

struct oa_embedder {
  char *url; /* {base}/embeddings */
  char *auth_header;
  char *model;
  long dimensions_requested; /* 0: not sent */
  long batch_size, batch_tokens, max_retries, timeout_ms;
  pthread_mutex_t mu;
  size_t dim; /* learned from the first answer unless requested */
  unsigned seed;
};

struct oa_response {
  struct buf body;
  long retry_after_s; /* -1: none */
};

static size_t oa_on_body(char *p, size_t size, size_t n, void *ctx) {
  struct oa_response *r = ctx;
  if (buf_append(&r->body, p, size * n) != RAGD_OK) return 0;
  return size * n;
}

static size_t oa_on_header(char *p, size_t size, size_t n, void *ctx) {
  struct oa_response *r = ctx;
  size_t len = size * n;
  static const char name[] = "retry-after:";
  if (len > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0) {
    char tmp[32];
    size_t vlen = len - (sizeof name - 1);
    if (vlen >= sizeof tmp) vlen = sizeof tmp - 1;
    memcpy(tmp, p + sizeof name - 1, vlen);
    tmp[vlen] = '\0';
    char *end = NULL;
    long s = strtol(tmp, &end, 10);
    /* delta-seconds only; an HTTP date falls back to the backoff */
    if (end != tmp && s >= 0) r->retry_after_s = s;
  }
  return len;
}

static void oa_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static ragd_err oa_create(const struct embed_config *cfg, void **ctx, struct buf *err) {
  struct oa_embedder *o;
  struct buf b;
  const char *base = cfg->base_url ? cfg->base_url : "";
  size_t blen = strlen(base);

  if (strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0) {
    if (err) buf_appendf(err, "RAGD_EMBED_BASE_URL: expected an http:// or https:// URL, got \"%s\"", base);
    return RAGD_ECONFIG;
  }
  if (cfg->dimensions < 0 || cfg->dimensions > EMBED_DIM_MAX) {
    if (err) buf_appendf(err, "RAGD_EMBED_DIMENSIONS: expected 0 to %d", EMBED_DIM_MAX);
    return RAGD_ECONFIG;
  }
  o = calloc(1, sizeof *o);
  if (!o) return RAGD_ENOMEM;
  pthread_mutex_init(&o->mu, NULL);
  while (blen && base[blen - 1] == '/') blen--;
  buf_init(&b, 0);
  buf_appendf(&b, "%.*s/embeddings", (int)blen, base);
  o->url = buf_take(&b, NULL);
  if (cfg->api_key && cfg->api_key[0]) {
    buf_appendf(&b, "Authorization: Bearer %s", cfg->api_key);
    o->auth_header = buf_take(&b, NULL);
  }
  o->model = strdup(cfg->model && cfg->model[0] ? cfg->model : "text-embedding-3-small");
  o->dimensions_requested = cfg->dimensions;
  o->dim = (size_t)cfg->dimensions;
  o->batch_size = cfg->batch_size > 0 ? cfg->batch_size : 64;
  o->batch_tokens = cfg->batch_tokens > 0 ? cfg->batch_tokens : 8000;
  o->max_retries = cfg->max_retries >= 0 ? cfg->max_retries : 4;
  o->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 30000;
  o->seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)o;
  if (!o->url || !o->model || (cfg->api_key && cfg->api_key[0] && !o->auth_header)) {
    free(o->url);
    free(o->auth_header);
    free(o->model);
    pthread_mutex_destroy(&o->mu);
    free(o);
    return RAGD_ENOMEM;
  }
  *ctx = o;
  return RAGD_OK;
}

static void oa_destroy(void *ctx) {
  struct oa_embedder *o = ctx;
  if (!o) return;
  free(o->url);
  free(o->auth_header);
  free(o->model);
  pthread_mutex_destroy(&o->mu);
  free(o);
}

static size_t oa_dimensions(void *ctx) {
  struct oa_embedder *o = ctx;
  size_t d;
  pthread_mutex_lock(&o->mu);
  d = o->dim;
  pthread_mutex_unlock(&o->mu);
  return d;
}

/* The server's {"error": {"message"}} or the start of the body. */
static void oa_describe_error(const struct oa_response *r, long status, struct buf *err) {
  json_t *root;
  const char *msg = NULL;
  if (!err) return;
  root = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, NULL);
  if (root) {
    json_t *e = json_object_get(root, "error");
    msg = json_is_object(e) ? json_get_str(e, "message") : json_is_string(e) ? json_string_value(e) : NULL;
  }
  buf_reset(err);
  if (msg)
    buf_appendf(err, "embeddings server answered %ld: %.300s", status, msg);
  else
    buf_appendf(err, "embeddings server answered %ld", status);
  json_decref(root);
}

/* Reads {"data": [{"index": i, "embedding": [...]}, ...]} into out. */
static ragd_err oa_parse(struct oa_embedder *o, const struct oa_response *r, size_t n, float *out,
                         struct buf *err) {
  json_t *root = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, NULL);
  json_t *data = root ? json_object_get(root, "data") : NULL;
  unsigned char *seen = NULL;
  ragd_err rc = RAGD_EUPSTREAM;
  size_t i, dim;

  if (!json_is_array(data) || json_array_size(data) != n) {
    if (err) buf_appendf(err, "embeddings server sent %zu embeddings for %zu inputs",
                         json_is_array(data) ? json_array_size(data) : 0, n);
    goto out;
  }
  seen = calloc(n, 1);
  if (!seen) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  for (i = 0; i < n; i++) {
    json_t *item = json_array_get(data, i);
    json_t *vec = json_object_get(item, "embedding");
    json_t *idx = json_object_get(item, "index");
    size_t at = json_is_integer(idx) ? (size_t)json_integer_value(idx) : i;
    size_t len = json_array_size(vec);
    if (!json_is_array(vec) || at >= n || seen[at] || len == 0 || len > EMBED_DIM_MAX) {
      if (err) buf_appendf(err, "embeddings server sent a malformed embedding at %zu", i);
      goto out;
    }
    pthread_mutex_lock(&o->mu);
    if (o->dim == 0) o->dim = len;
    dim = o->dim;
    pthread_mutex_unlock(&o->mu);
    if (len != dim) {
      if (err) buf_appendf(err, "embeddings server sent %zu dimensions, expected %zu", len, dim);
      goto out;
    }
    seen[at] = 1;
    for (size_t j = 0; j < len; j++) {
      json_t *x = json_array_get(vec, j);
      if (!json_is_number(x)) {
        if (err) buf_appendf(err, "embeddings server sent a non-number in embedding %zu", i);
        goto out;
      }
      out[at * dim + j] = (float)json_number_value(x);
    }
    /* OpenAI's are unit length already; other servers' need not be */
    embed_l2_normalize(out + at * dim, dim);
  }
  rc = RAGD_OK;
out:
  free(seen);
  json_decref(root);
  return rc;
}

static long oa_backoff_ms(struct oa_embedder *o, long attempt) {
  long ms = OA_BACKOFF_BASE_MS;
  unsigned r;
  for (long i = 0; i < attempt && ms < OA_BACKOFF_MAX_MS; i++) ms *= 2;
  if (ms > OA_BACKOFF_MAX_MS) ms = OA_BACKOFF_MAX_MS;
  pthread_mutex_lock(&o->mu);
  r = (unsigned)rand_r(&o->seed);
  pthread_mutex_unlock(&o->mu);
  return ms / 2 + (long)(r % (unsigned)(ms / 2 + 1));
}

/* One batch, with retries. */
static ragd_err oa_batch(struct oa_embedder *o, const struct slice *texts, size_t n, float *out,
                         struct buf *err) {
  json_t *req = json_object(), *input = json_array();
  struct curl_slist *headers = NULL;
  struct oa_response resp;
  char *body = NULL;
  ragd_err rc = RAGD_ENOMEM;
  long attempt;

  buf_init(&resp.body, OA_RESPONSE_MAX);
  if (!req || !input) goto out;
  for (size_t i = 0; i < n; i++) json_array_append_new(input, json_stringn(texts[i].ptr, texts[i].len));
  json_object_set_new(req, "model", json_string(o->model));
  json_object_set(req, "input", input);
  json_object_set_new(req, "encoding_format", json_string("float"));
  if (o->dimensions_requested)
    json_object_set_new(req, "dimensions", json_integer(o->dimensions_requested));
  body = json_dumps(req, JSON_COMPACT);
  headers = curl_slist_append(NULL, "Content-Type: application/json");
  if (headers && o->auth_header) headers = curl_slist_append(headers, o->auth_header);
  if (!body || !headers) goto out;
  for (attempt = 0;; attempt++) {
    CURL *h = curl_easy_init();
    long status = 0, wait_ms;
    CURLcode cc;
    if (!h) goto out;
    buf_reset(&resp.body);
    resp.retry_after_s = -1;
    curl_easy_setopt(h, CURLOPT_URL, o->url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, oa_on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, oa_on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &resp);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, o->timeout_ms < 10000 ? o->timeout_ms : 10000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "ragd/" RAGD_VERSION);
    cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (cc == CURLE_OK && status == 200) {
      buf_reset(err ? err : &resp.body);
      rc = oa_parse(o, &resp, n, out, err);
      goto out;
    }
    if (cc != CURLE_OK) {
      if (err) {
        buf_reset(err);
        buf_appendf(err, "embeddings server unreachable: %s", curl_easy_strerror(cc));
      }
    } else {
      oa_describe_error(&resp, status, err);
    }
    rc = RAGD_EUPSTREAM;
    if (cc == CURLE_OK && status != 429 && status < 500) goto out; /* our request is wrong */
    if (attempt >= o->max_retries) goto out;
    wait_ms = resp.retry_after_s >= 0
                  ? (resp.retry_after_s > OA_RETRY_AFTER_MAX_S ? OA_RETRY_AFTER_MAX_S : resp.retry_after_s) * 1000
                  : oa_backoff_ms(o, attempt);
    log_warn("embeddings: %s; retry %ld of %ld in %ld ms", err && err->data ? err->data : "failed",
             attempt + 1, o->max_retries, wait_ms);
    oa_sleep_ms(wait_ms);
  }
out:
  curl_slist_free_all(headers);
  free(body);
  json_decref(input);
  json_decref(req);
  buf_dispose(&resp.body);
  return rc;
}

static ragd_err oa_embed(void *ctx, const struct slice *texts, size_t n, float *out,
                         struct buf *err) {
  struct oa_embedder *o = ctx;
  size_t start = 0, dim = oa_dimensions(o);
  if (!dim && n) {
    /* the first text alone teaches the dimension (see embed.h) */
    float *one = malloc(EMBED_DIM_MAX * sizeof *one);
    ragd_err rc = one ? oa_batch(o, texts, 1, one, err) : RAGD_ENOMEM;
    if (!rc) {
      dim = oa_dimensions(o);
      memcpy(out, one, dim * sizeof *out);
    }
    free(one);
    if (rc) return rc;
    start = 1;
  }
  while (start < n) {
    size_t end = start, tokens = 0;
    ragd_err rc;
    while (end < n && (long)(end - start) < o->batch_size) {
      size_t t = text_estimate_tokens(texts[end].ptr, texts[end].len);
      if (end > start && (long)(tokens + t) > o->batch_tokens) break;
      tokens += t;
      end++;
    }
    rc = oa_batch(o, texts + start, end - start, out + start * dim, err);
    if (rc) return rc;
    start = end;
  }
  return RAGD_OK;
}

const struct embed_ops embed_openai_ops = {
    .version = EMBED_OPS_VERSION,
    .name = "openai",
    .create = oa_create,
    .destroy = oa_destroy,
    .embed = oa_embed,
    .dimensions = oa_dimensions,
    .remote = 1,
};
