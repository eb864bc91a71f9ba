/* upstream.c - the one upstream thread: a curl multi loop that runs every
 * LLM (and later embedding) HTTP transfer, with its retries and breaker.
 *
 * Other threads only touch the pending queue and the multi handle's wakeup,
 * both under up_lock. Everything else (the active and waiting lists, the easy
 * handles once added) belongs to the upstream thread, which calls every
 * transfer callback without holding the lock, so callbacks may call
 * llm_wakeup or llm_upstream_add.
 *
 * A transfer is one logical request made of one or more attempts. An attempt
 * that fails in a retryable way before the consumer committed is parked on
 * the waiting list until its backoff delay is over, then the same easy handle
 * (same URL, headers and body) is added to the multi handle again. No thread
 * ever sleeps for a backoff: the loop's poll timeout covers it. */
#include "llm/upstream_int.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "llm/breaker_int.h"
#include "llm/llm.h"
#include "util/clock.h"
#include "util/log.h"

/* Longest the loop sleeps while transfers are active: bounds how late an
 * is_cancelled flag set without llm_wakeup is noticed, and idle checks. */
#define UP_POLL_ACTIVE_MS 200
#define UP_POLL_IDLE_MS 5000

/* Longest Retry-After we take literally (a day); anything longer is past
 * every sensible retry budget anyway. */
#define UP_RETRY_AFTER_MAX_MS (86400L * 1000L)

struct up_xfer {
  CURL *easy;
  struct curl_slist *headers;
  struct llm_upstream_callbacks cb;
  void *ctx;
  long idle_timeout_ms;
  long total_timeout_ms;
  long first_token_timeout_ms;
  struct llm_retry_policy retry;
  struct llm_breaker *breaker; /* own reference, or NULL */
  int probe;                   /* this attempt is the breaker's half-open probe */
  int attempts;                /* attempts started so far */
  int committed;               /* the consumer delivered output: never retry */
  int64_t first_start_ms;      /* when the first attempt began */
  int64_t attempt_start_ms;
  int64_t not_before_ms;       /* waiting list: when the next attempt may begin */
  long retry_after_ms;         /* Retry-After of the current response, -1 when none */
  int64_t last_activity_ms;
  int stopped; /* on_body asked to stop */
  char errbuf[CURL_ERROR_SIZE];
  char request_id[LOG_REQUEST_ID_MAX]; /* on the log lines of its callbacks */
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
static struct up_xfer *up_active;  /* in the multi handle */
static struct up_xfer *up_waiting; /* between attempts, waiting out a backoff */
static uint64_t up_rng_state;

static void up_xfer_free(struct up_xfer *x) {
  if (!x) return;
  if (x->easy) curl_easy_cleanup(x->easy);
  curl_slist_free_all(x->headers);
  llm_breaker_release(x->breaker);
  free(x);
}

static void up_touch(struct up_xfer *x) { x->last_activity_ms = clock_mono_ms(); }

/* xorshift64*: the jitter only has to spread retries, not be secret. */
static uint64_t up_random(void) {
  if (up_rng_state == 0)
    up_rng_state = (uint64_t)clock_mono_us() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
  up_rng_state ^= up_rng_state >> 12;
  up_rng_state ^= up_rng_state << 25;
  up_rng_state ^= up_rng_state >> 27;
  return up_rng_state * 0x2545F4914F6CDD1DULL;
}

/* Retry-After is either delay-seconds or an HTTP date (RFC 9110 10.2.3).
 * Returns milliseconds, or -1 when the value is neither. */
static long up_parse_retry_after(const char *value) {
  const char *p = value;
  long long secs = 0;
  time_t when;
  double diff;

  while (*p == ' ' || *p == '\t') p++;
  if (*p >= '0' && *p <= '9') {
    while (*p >= '0' && *p <= '9') {
      secs = secs * 10 + (*p - '0');
      if (secs * 1000 > UP_RETRY_AFTER_MAX_MS) return UP_RETRY_AFTER_MAX_MS;
      p++;
    }
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
    return *p ? -1 : (long)(secs * 1000);
  }
  when = curl_getdate(p, NULL);
  if (when == (time_t)-1) return -1;
  diff = difftime(when, time(NULL));
  if (diff <= 0) return 0;
  if (diff * 1000 > UP_RETRY_AFTER_MAX_MS) return UP_RETRY_AFTER_MAX_MS;
  return (long)(diff * 1000);
}

static size_t up_on_header(char *bytes, size_t size, size_t n, void *userdata) {
  struct up_xfer *x = userdata;
  size_t len = size * n;
  char line[256];
  static const char name[] = "retry-after:";

  up_touch(x);
  /* A new status line (after a redirect or "100 Continue") starts over. */
  if (len >= 5 && memcmp(bytes, "HTTP/", 5) == 0) x->retry_after_ms = -1;
  if (len > sizeof(name) - 1 && len < sizeof(line) &&
      strncasecmp(bytes, name, sizeof(name) - 1) == 0) {
    memcpy(line, bytes + sizeof(name) - 1, len - (sizeof(name) - 1));
    line[len - (sizeof(name) - 1)] = '\0';
    x->retry_after_ms = up_parse_retry_after(line);
  }
  return len;
}

static size_t up_on_write_scoped(struct up_xfer *x, char *bytes, size_t len);

static size_t up_on_write(char *bytes, size_t size, size_t n, void *userdata) {
  struct up_xfer *x = userdata;
  struct log_scope scope;
  size_t ret;
  log_scope_begin(&scope, x->request_id);
  ret = up_on_write_scoped(x, bytes, size * n);
  log_scope_end(&scope);
  return ret;
}

static size_t up_on_write_scoped(struct up_xfer *x, char *bytes, size_t len) {
  long status = 0;

  up_touch(x);
  if (x->stopped) return CURL_WRITEFUNC_ERROR;
  if (!x->cb.on_body) return len;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  if (x->cb.on_body(x->ctx, status, bytes, len)) {
    x->stopped = 1;
    return CURL_WRITEFUNC_ERROR;
  }
  if (!x->committed) {
    if (x->cb.is_committed) {
      x->committed = x->cb.is_committed(x->ctx) != 0;
    } else {
      x->committed = status >= 200 && status <= 299;
    }
    /* A half-open probe that is answering proves the endpoint: close the
     * breaker now, not when the answer ends (a streamed answer can take
     * a minute, and every other request would fail over meanwhile). The
     * request's own end is then counted as any other. */
    if (x->committed && x->probe) {
      llm_breaker_record(x->breaker, 1, LLM_BREAKER_SUCCESS);
      x->probe = 0;
    }
  }
  return len;
}

static void up_push(struct up_xfer **head, struct up_xfer *x) {
  x->prev = NULL;
  x->next = *head;
  if (*head) (*head)->prev = x;
  *head = x;
}

static void up_unlink(struct up_xfer **head, struct up_xfer *x) {
  if (x->prev) {
    x->prev->next = x->next;
  } else if (*head == x) {
    *head = x->next;
  }
  if (x->next) x->next->prev = x->prev;
  x->prev = x->next = NULL;
}

static enum llm_breaker_verdict up_verdict(enum llm_upstream_outcome outcome, long status);

/* Reports the transfer's outcome and frees it; x is on no list and not in
 * the multi handle. Upstream thread. */
static void up_report(struct up_xfer *x, enum llm_upstream_outcome outcome, const char *message) {
  struct llm_upstream_result res;
  struct log_scope scope;
  long status = 0;

  log_scope_begin(&scope, x->request_id);
  if (x->attempts > 0) curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  /* The breaker counts requests, not attempts: a request that needed three
   * attempts to fail is one failure, as the breaker settings describe it. */
  if (x->breaker && outcome != LLM_UPSTREAM_BREAKER_OPEN)
    llm_breaker_record(x->breaker, x->probe, up_verdict(outcome, status));
  x->probe = 0;
  res.outcome = outcome;
  res.attempts = x->attempts;
  res.http_status = status;
  res.message = message ? message : "";
  x->cb.on_complete(x->ctx, &res);
  up_xfer_free(x);
  log_scope_end(&scope);
}

static enum llm_breaker_verdict up_verdict(enum llm_upstream_outcome outcome, long status) {
  switch (outcome) {
  case LLM_UPSTREAM_DONE:
    return status == 429 || status >= 500 ? LLM_BREAKER_FAILURE : LLM_BREAKER_SUCCESS;
  case LLM_UPSTREAM_CONNECT_FAILED:
  case LLM_UPSTREAM_TIMEOUT:
  case LLM_UPSTREAM_IDLE_TIMEOUT:
  case LLM_UPSTREAM_FAILED:
  case LLM_UPSTREAM_FIRST_TOKEN_TIMEOUT:
    return LLM_BREAKER_FAILURE;
  case LLM_UPSTREAM_CANCELLED:
  case LLM_UPSTREAM_STOPPED:
  case LLM_UPSTREAM_SHUTDOWN:
  case LLM_UPSTREAM_BREAKER_OPEN:
    break;
  }
  return LLM_BREAKER_NEUTRAL;
}

/* Whether a failed attempt is worth repeating; writes why into reason. */
static int up_retryable(const struct up_xfer *x, enum llm_upstream_outcome outcome, long status,
                        const char *message, char *reason, size_t reason_len) {
  curl_off_t connect_us = 0;

  if (x->committed) return 0;
  switch (outcome) {
  case LLM_UPSTREAM_CONNECT_FAILED:
    snprintf(reason, reason_len, "connect error: %s", message);
    return 1;
  case LLM_UPSTREAM_TIMEOUT:
    curl_easy_getinfo(x->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
    if (status != 0 || connect_us != 0) return 0;
    snprintf(reason, reason_len, "connect timeout: %s", message);
    return 1;
  case LLM_UPSTREAM_DONE:
  case LLM_UPSTREAM_FAILED:
    if (status != 429 && (status < 500 || status > 599)) return 0;
    snprintf(reason, reason_len, "HTTP %ld", status);
    return 1;
  default:
    return 0;
  }
}

/* The backoff before the next attempt, or -1 when no retry may be made. */
static long up_retry_delay(struct up_xfer *x, int64_t now) {
  int64_t cap, delay;
  int retries_done = x->attempts - 1;

  if (retries_done >= x->retry.max_retries) return -1;
  if (x->cb.is_cancelled && x->cb.is_cancelled(x->ctx)) return -1;
  cap = x->retry.base_delay_ms > 0 ? x->retry.base_delay_ms : 0;
  /* base * 2^n, without overflowing for a large n */
  for (int i = 0; i < retries_done && cap < x->retry.max_delay_ms; i++) cap *= 2;
  if (x->retry.max_delay_ms > 0 && cap > x->retry.max_delay_ms) cap = x->retry.max_delay_ms;
  delay = cap > 0 ? (int64_t)(up_random() % (uint64_t)(cap + 1)) : 0;
  if (x->retry_after_ms > delay) delay = x->retry_after_ms;
  if (x->retry.budget_ms > 0 && now + delay - x->first_start_ms > x->retry.budget_ms) return -1;
  if (x->total_timeout_ms > 0 && now + delay >= x->first_start_ms + x->total_timeout_ms)
    return -1;
  if (x->breaker && llm_breaker_is_open(x->breaker)) return -1;
  return (long)delay;
}

/* An attempt ended (x is out of the multi handle and off every list):
 * records it with the breaker, then either parks x for a retry or reports
 * the outcome. Upstream thread. */
static void up_end_attempt(struct up_xfer *x, enum llm_upstream_outcome outcome,
                           const char *message) {
  char reason[CURL_ERROR_SIZE + 64];
  struct log_scope scope;
  long status = 0, delay;
  int64_t now = clock_mono_ms();

  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  if (!up_retryable(x, outcome, status, message ? message : "", reason, sizeof(reason))) {
    up_report(x, outcome, message);
    return;
  }
  delay = up_retry_delay(x, now);
  if (delay < 0) {
    up_report(x, outcome, message);
    return;
  }
  log_scope_begin(&scope, x->request_id);
  log_debug("upstream: attempt %d failed (%s); retrying in %ld ms", x->attempts, reason, delay);
  if (x->cb.on_retry) x->cb.on_retry(x->ctx, x->attempts + 1, delay, reason);
  log_scope_end(&scope);
  x->not_before_ms = now + delay;
  up_push(&up_waiting, x);
}

/* Removes x from the multi handle (closing its connection if the response
 * was not complete) and ends its attempt. Upstream thread. */
static void up_complete(struct up_xfer *x, enum llm_upstream_outcome outcome, const char *message) {
  up_unlink(&up_active, x);
  curl_multi_remove_handle(up_multi, x->easy);
  up_end_attempt(x, outcome, message);
}

/* Starts the next attempt of x (on no list): asks the breaker, sets the
 * remaining total time, adds the easy handle. Returns nonzero when an
 * attempt started. Upstream thread. */
static int up_begin_attempt(struct up_xfer *x) {
  int64_t now = clock_mono_ms(), left;
  long retry_in = 0;
  char message[384];
  CURLMcode mc;

  /* Only a request's first attempt asks the breaker; its retries belong to
   * the same request (and, half-open, to the same probe). */
  if (x->attempts == 0) x->first_start_ms = now;
  if (x->attempts == 0 && x->breaker && !llm_breaker_allow(x->breaker, &x->probe, &retry_in)) {
    if (retry_in > 0) {
      snprintf(message, sizeof(message),
               "circuit breaker open for %s after repeated failures; next probe in %ld ms",
               llm_breaker_endpoint(x->breaker), retry_in);
    } else {
      snprintf(message, sizeof(message),
               "circuit breaker half-open for %s; a probe request is already testing it",
               llm_breaker_endpoint(x->breaker));
    }
    up_report(x, LLM_UPSTREAM_BREAKER_OPEN, message);
    return 0;
  }
  if (x->total_timeout_ms > 0) {
    left = x->first_start_ms + x->total_timeout_ms - now;
    if (left <= 0) {
      up_report(x, LLM_UPSTREAM_TIMEOUT, "total timeout reached before the next attempt");
      return 0;
    }
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, (long)left);
  }
  x->attempts++;
  x->attempt_start_ms = now;
  x->retry_after_ms = -1;
  x->stopped = 0;
  x->errbuf[0] = '\0';
  up_touch(x);
  mc = curl_multi_add_handle(up_multi, x->easy);
  if (mc != CURLM_OK) {
    up_report(x, LLM_UPSTREAM_FAILED, curl_multi_strerror(mc));
    return 0;
  }
  up_push(&up_active, x);
  return 1;
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
    up_complete(x, up_classify(x, code),
                code == CURLE_OK ? "" : (x->errbuf[0] ? x->errbuf : curl_easy_strerror(code)));
  }
}

/* Polls is_cancelled and the idle and first-token deadlines, and starts the
 * retries whose backoff is over; returns how long the loop may sleep before
 * the next deadline (capped at UP_POLL_ACTIVE_MS). */
static long up_check_transfers(void) {
  struct up_xfer *x, *next;
  int64_t now = clock_mono_ms(), left;
  long wait = up_active || up_waiting ? UP_POLL_ACTIVE_MS : UP_POLL_IDLE_MS;
  char message[128];

  for (x = up_active; x; x = next) {
    next = x->next;
    if (x->cb.is_cancelled && x->cb.is_cancelled(x->ctx)) {
      up_complete(x, LLM_UPSTREAM_CANCELLED, "cancelled");
      continue;
    }
    if (x->first_token_timeout_ms > 0 && !x->committed) {
      left = x->attempt_start_ms + x->first_token_timeout_ms - now;
      if (left <= 0) {
        snprintf(message, sizeof(message), "no answer text from upstream within %ld ms",
                 x->first_token_timeout_ms);
        up_complete(x, LLM_UPSTREAM_FIRST_TOKEN_TIMEOUT, message);
        continue;
      }
      if (left < wait) wait = (long)left;
    }
    if (x->idle_timeout_ms > 0) {
      left = x->last_activity_ms + x->idle_timeout_ms - now;
      if (left <= 0) {
        up_complete(x, LLM_UPSTREAM_IDLE_TIMEOUT, "no data from upstream within the idle timeout");
        continue;
      }
      if (left < wait) wait = (long)left;
    }
  }
  for (x = up_waiting; x; x = next) {
    next = x->next;
    if (x->cb.is_cancelled && x->cb.is_cancelled(x->ctx)) {
      up_unlink(&up_waiting, x);
      up_report(x, LLM_UPSTREAM_CANCELLED, "cancelled");
      continue;
    }
    left = x->not_before_ms - now;
    if (left <= 0) {
      up_unlink(&up_waiting, x);
      /* A fresh handle in the multi wants curl_multi_perform soon. */
      if (up_begin_attempt(x)) wait = 0;
      continue;
    }
    if (left < wait) wait = (long)left;
  }
  return wait;
}

/* Moves queued transfers into the multi handle. Returns nonzero when the
 * runtime is stopping (the queue is then failed with SHUTDOWN instead). */
static int up_take_pending(void) {
  struct up_xfer *list, *x;
  int stopping;

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
      up_report(x, LLM_UPSTREAM_SHUTDOWN, "shutting down");
      continue;
    }
    up_begin_attempt(x);
  }
  return stopping;
}

static void *up_main(void *arg) {
  struct up_xfer *x;
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
  while (up_active) {
    x = up_active;
    up_unlink(&up_active, x);
    curl_multi_remove_handle(up_multi, x->easy);
    up_report(x, LLM_UPSTREAM_SHUTDOWN, "shutting down");
  }
  while (up_waiting) {
    x = up_waiting;
    up_unlink(&up_waiting, x);
    up_report(x, LLM_UPSTREAM_SHUTDOWN, "shutting down");
  }
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
  x->total_timeout_ms = req->total_timeout_ms;
  x->first_token_timeout_ms = req->first_token_timeout_ms;
  x->retry = req->retry;
  if (x->retry.max_retries < 0) x->retry.max_retries = 0;
  x->retry_after_ms = -1;
  snprintf(x->request_id, sizeof x->request_id, "%s", req->request_id ? req->request_id : "");
  x->breaker = req->breaker;
  llm_breaker_retain(x->breaker);
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
