/* upstream.c - the one upstream thread: a curl multi loop that runs every
 * LLM (and later embedding) HTTP transfer.
 *
 * Other threads only touch the pending queue and the multi handle's wakeup,
 * both under up_lock. Everything else (the active list, the easy handles once
 * added) belongs to the upstream thread, which calls every transfer callback
 * without holding the lock, so callbacks may call llm_wakeup or
 * llm_upstream_add. */
#include "llm/upstream_int.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llm/llm.h"
#include "util/clock.h"
#include "util/log.h"

/* Longest the loop sleeps while transfers are active: bounds how late an
 * is_cancelled flag set without llm_wakeup is noticed, and idle checks. */
#define UP_POLL_ACTIVE_MS 200
#define UP_POLL_IDLE_MS 5000

struct up_xfer {
  CURL *easy;
  struct curl_slist *headers;
  struct llm_upstream_callbacks cb;
  void *ctx;
  long idle_timeout_ms;
  int64_t last_activity_ms;
  int stopped; /* on_body asked to stop */
  char errbuf[CURL_ERROR_SIZE];
  struct up_xfer *prev, *next;
};

static pthread_mutex_t up_lock = PTHREAD_MUTEX_INITIALIZER;
/* Guarded by up_lock. */
static int up_running;
static int up_stopping;
static CURLM *up_multi;
static pthread_t up_thread;
static struct up_xfer *up_pending_head, *up_pending_tail;
/* Upstream thread only. */
static struct up_xfer *up_active;

static void up_xfer_free(struct up_xfer *x) {
  if (!x) return;
  if (x->easy) curl_easy_cleanup(x->easy);
  curl_slist_free_all(x->headers);
  free(x);
}

static void up_touch(struct up_xfer *x) { x->last_activity_ms = clock_mono_ms(); }

static size_t up_on_header(char *bytes, size_t size, size_t n, void *userdata) {
  (void)bytes;
  up_touch(userdata);
  return size * n;
}

static size_t up_on_write(char *bytes, size_t size, size_t n, void *userdata) {
  struct up_xfer *x = userdata;
  long status = 0;
  size_t len = size * n;

  up_touch(x);
  if (x->stopped) return CURL_WRITEFUNC_ERROR;
  if (!x->cb.on_body) return len;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  if (x->cb.on_body(x->ctx, status, bytes, len)) {
    x->stopped = 1;
    return CURL_WRITEFUNC_ERROR;
  }
  return len;
}

static void up_unlink(struct up_xfer *x) {
  if (x->prev) {
    x->prev->next = x->next;
  } else if (up_active == x) {
    up_active = x->next;
  }
  if (x->next) x->next->prev = x->prev;
  x->prev = x->next = NULL;
}

/* Removes x from the multi handle (closing its connection if the response
 * was not complete), reports the outcome and frees it. Upstream thread. */
static void up_complete(struct up_xfer *x, int in_multi, enum llm_upstream_outcome outcome,
                        const char *message) {
  struct llm_upstream_result res;
  long status = 0;

  if (in_multi) {
    up_unlink(x);
    curl_multi_remove_handle(up_multi, x->easy);
  }
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  res.outcome = outcome;
  res.http_status = status;
  res.message = message ? message : "";
  x->cb.on_complete(x->ctx, &res);
  up_xfer_free(x);
}

static enum llm_upstream_outcome up_classify(const struct up_xfer *x, CURLcode code) {
  long status = 0;
  if (code == CURLE_OK) return LLM_UPSTREAM_DONE;
  if (x->stopped) return LLM_UPSTREAM_STOPPED;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  switch (code) {
  case CURLE_OPERATION_TIMEDOUT:
    return LLM_UPSTREAM_TIMEOUT;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
  case CURLE_COULDNT_CONNECT:
  case CURLE_SSL_CONNECT_ERROR:
    return LLM_UPSTREAM_CONNECT_FAILED;
  case CURLE_GOT_NOTHING:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
    /* The server hung up before saying anything: as good as down. */
    return status == 0 ? LLM_UPSTREAM_CONNECT_FAILED : LLM_UPSTREAM_FAILED;
  default:
    return LLM_UPSTREAM_FAILED;
  }
}

static void up_drain_messages(void) {
  CURLMsg *msg;
  int left = 0;
  struct up_xfer *x;
  char *priv;
  CURLcode code;

  for (;;) {
    msg = curl_multi_info_read(up_multi, &left);
    if (!msg) break;
    if (msg->msg != CURLMSG_DONE) continue;
    priv = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
    x = (struct up_xfer *)(void *)priv;
    if (!x) continue;
    code = msg->data.result;
    /* msg points into the multi handle; read it before removing the easy. */
    up_complete(x, 1, up_classify(x, code),
                code == CURLE_OK ? "" : (x->errbuf[0] ? x->errbuf : curl_easy_strerror(code)));
  }
}

/* Polls is_cancelled and the idle deadlines; returns how long the loop may
 * sleep before the next idle deadline (capped at UP_POLL_ACTIVE_MS). */
static long up_check_transfers(void) {
  struct up_xfer *x, *next;
  int64_t now = clock_mono_ms(), left;
  long wait = up_active ? UP_POLL_ACTIVE_MS : UP_POLL_IDLE_MS;

  for (x = up_active; x; x = next) {
    next = x->next;
    if (x->cb.is_cancelled && x->cb.is_cancelled(x->ctx)) {
      up_complete(x, 1, LLM_UPSTREAM_CANCELLED, "cancelled");
      continue;
    }
    if (x->idle_timeout_ms > 0) {
      left = x->last_activity_ms + x->idle_timeout_ms - now;
      if (left <= 0) {
        up_complete(x, 1, LLM_UPSTREAM_IDLE_TIMEOUT, "no data from upstream within the idle timeout");
        continue;
      }
      if (left < wait) wait = (long)left;
    }
  }
  return wait;
}

/* Moves queued transfers into the multi handle. Returns nonzero when the
 * runtime is stopping (the queue is then failed with SHUTDOWN instead). */
static int up_take_pending(void) {
  struct up_xfer *list, *x;
  int stopping;
  CURLMcode mc;

  pthread_mutex_lock(&up_lock);
  list = up_pending_head;
  up_pending_head = up_pending_tail = NULL;
  stopping = up_stopping;
  pthread_mutex_unlock(&up_lock);

  while (list) {
    x = list;
    list = x->next;
    x->next = NULL;
    if (stopping) {
      up_complete(x, 0, LLM_UPSTREAM_SHUTDOWN, "shutting down");
      continue;
    }
    up_touch(x);
    mc = curl_multi_add_handle(up_multi, x->easy);
    if (mc != CURLM_OK) {
      up_complete(x, 0, LLM_UPSTREAM_FAILED, curl_multi_strerror(mc));
      continue;
    }
    x->prev = NULL;
    x->next = up_active;
    if (up_active) up_active->prev = x;
    up_active = x;
  }
  return stopping;
}

static void *up_main(void *arg) {
  int still_running = 0;
  long wait;
  (void)arg;

  for (;;) {
    if (up_take_pending()) break;
    curl_multi_perform(up_multi, &still_running);
    up_drain_messages();
    wait = up_check_transfers();
    curl_multi_poll(up_multi, NULL, 0, (int)wait, NULL);
  }
  while (up_active) up_complete(up_active, 1, LLM_UPSTREAM_SHUTDOWN, "shutting down");
  return NULL;
}

ragd_err llm_runtime_init(void) {
  ragd_err rc = RAGD_OK;
  int curl_ready = 0;

  pthread_mutex_lock(&up_lock);
  if (up_running) goto out;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    rc = RAGD_EUPSTREAM;
    goto out;
  }
  curl_ready = 1;
  up_multi = curl_multi_init();
  if (!up_multi) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  up_stopping = 0;
  if (pthread_create(&up_thread, NULL, up_main, NULL) != 0) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  up_running = 1;
out:
  if (rc) {
    if (up_multi) curl_multi_cleanup(up_multi);
    up_multi = NULL;
    if (curl_ready) curl_global_cleanup();
  }
  pthread_mutex_unlock(&up_lock);
  return rc;
}

void llm_runtime_shutdown(void) {
  pthread_mutex_lock(&up_lock);
  if (!up_running || up_stopping) {
    pthread_mutex_unlock(&up_lock);
    return;
  }
  up_stopping = 1;
  curl_multi_wakeup(up_multi);
  pthread_mutex_unlock(&up_lock);

  pthread_join(up_thread, NULL);

  pthread_mutex_lock(&up_lock);
  curl_multi_cleanup(up_multi);
  up_multi = NULL;
  up_running = 0;
  up_stopping = 0;
  curl_global_cleanup();
  pthread_mutex_unlock(&up_lock);
}

void llm_wakeup(void) {
  pthread_mutex_lock(&up_lock);
  if (up_running && !up_stopping) curl_multi_wakeup(up_multi);
  pthread_mutex_unlock(&up_lock);
}

static ragd_err up_build_easy(struct up_xfer *x, const struct llm_upstream_request *req) {
  CURL *e = x->easy;
  struct curl_slist *h;
  size_t i;
  int ok = 1;

  for (i = 0; i < req->header_count; i++) {
    h = curl_slist_append(x->headers, req->headers[i]);
    if (!h) return RAGD_ENOMEM;
    x->headers = h;
  }
  /* Never wait for a "100 Continue" on large prompts. */
  h = curl_slist_append(x->headers, "Expect:");
  if (!h) return RAGD_ENOMEM;
  x->headers = h;

  ok &= curl_easy_setopt(e, CURLOPT_URL, req->url) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, up_on_write) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_WRITEDATA, x) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, up_on_header) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_HEADERDATA, x) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)x) == CURLE_OK;
  if (req->connect_timeout_ms > 0)
    ok &= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms) == CURLE_OK;
  if (req->total_timeout_ms > 0)
    ok &= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, req->total_timeout_ms) == CURLE_OK;
  if (req->body) {
    ok &= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req->body) == CURLE_OK;
  }
  if (req->method && strcmp(req->method, "GET") != 0 && strcmp(req->method, "POST") != 0)
    ok &= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method) == CURLE_OK;
  else if (req->method && strcmp(req->method, "GET") == 0 && req->body)
    ok &= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "GET") == CURLE_OK;
  return ok ? RAGD_OK : RAGD_EUPSTREAM;
}

ragd_err llm_upstream_add(const struct llm_upstream_request *req,
                          const struct llm_upstream_callbacks *cb, void *ctx) {
  struct up_xfer *x = NULL;
  ragd_err rc;

  if (!req || !req->url || !cb || !cb->on_complete) return RAGD_EINVAL;
  x = calloc(1, sizeof(*x));
  if (!x) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  x->cb = *cb;
  x->ctx = ctx;
  x->idle_timeout_ms = req->idle_timeout_ms;
  x->easy = curl_easy_init();
  if (!x->easy) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  rc = up_build_easy(x, req);
  if (rc) goto out;

  pthread_mutex_lock(&up_lock);
  if (!up_running || up_stopping) {
    rc = RAGD_EINVAL;
  } else {
    if (up_pending_tail) {
      up_pending_tail->next = x;
    } else {
      up_pending_head = x;
    }
    up_pending_tail = x;
    curl_multi_wakeup(up_multi);
  }
  pthread_mutex_unlock(&up_lock);
out:
  if (rc) up_xfer_free(x);
  return rc;
}
