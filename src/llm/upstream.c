/* upstream.c - the one upstream thread: a curl multi loop that runs every
 * LLM (and later embedding) HTTP transfer, with its retries and breaker.
 *
 * Other threads only touch the pending queue, the scan request and the
 * eventfd that wakes the loop, under up_lock. Everything else (the active and
 * waiting lists, the easy handles once added) belongs to the upstream thread,
 * which calls every transfer callback without holding the lock, so callbacks
 * may call llm_wakeup or llm_upstream_add.
 *
 * The loop is event driven so that its cost follows the traffic, not the
 * number of open transfers: curl tells it which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION, kept in an epoll set) and when to call back
 * (CURLMOPT_TIMERFUNCTION), and each ready socket is handed to
 * curl_multi_socket_action alone. (curl_multi_poll rebuilt a poll() set of
 * every upstream socket on each wake-up: at ten thousand streams that walk,
 * in curl and in the kernel, was most of ragd's CPU.) The checks that need
 * every transfer (is_cancelled, the idle and first-token deadlines, retries
 * whose backoff is over) run in one scan at the earliest of those deadlines,
 * at least every UP_SCAN_MS, and soon after llm_wakeup, but never more often
 * than every UP_SCAN_GAP_MS: a wave of disconnects costs a few scans, not one
 * per socket event or per cancelled stream.
 *
 * A transfer is one logical request made of one or more attempts. An attempt
 * that fails in a retryable way before the consumer committed is parked on
 * the waiting list until its backoff delay is over, then the same easy handle
 * (same URL, headers and body) is added to the multi handle again. No thread
 * ever sleeps for a backoff: the loop's poll timeout covers it. */
#include "llm/upstream_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "llm/breaker_int.h"
#include "llm/llm.h"
#include "util/clock.h"
#include "util/log.h"

/* Longest time between two scans of every transfer while some are active:
 * bounds how late an is_cancelled flag set without llm_wakeup is noticed.
 * The idle and first-token deadlines bring a scan forward on their own. */
#define UP_SCAN_MS 200
#define UP_SCAN_IDLE_MS 5000
/* Shortest time between two scans, for the ones llm_wakeup asks for. */
#define UP_SCAN_GAP_MS 10
/* A due scan waits for the ready sockets to be read, but no longer than this. */
#define UP_SCAN_LATE_MS 1000
/* Socket events taken from the epoll set per wake-up. */
#define UP_EVENTS_MAX 256

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
static int up_scan_wanted;   /* llm_wakeup: check is_cancelled soon */
static int up_event_fd = -1; /* written to wake the loop */
/* Upstream thread only (created and closed with the thread). */
static int up_epoll_fd = -1;
static struct up_xfer *up_active;  /* in the multi handle */
static struct up_xfer *up_waiting; /* between attempts, waiting out a backoff */
static uint64_t up_rng_state;
static int64_t up_curl_due_ms = -1; /* curl's timer; -1 when none is set */
static int64_t up_scan_due_ms;      /* the next scan of every transfer */
static int64_t up_last_scan_ms;

/* Brings the next scan forward to when, if that is sooner. */
static void up_scan_by(int64_t when) {
  if (when < up_scan_due_ms) up_scan_due_ms = when;
}

/* Wakes the loop. Caller holds up_lock (so the eventfd is open). */
static void up_signal_locked(void) {
  uint64_t one = 1;
  ssize_t n;
  do {
    n = write(up_event_fd, &one, sizeof(one));
  } while (n < 0 && errno == EINTR);
  /* EAGAIN: the counter is saturated, so a wake-up is pending anyway. */
}

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
  up_scan_by(x->not_before_ms);
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
  up_scan_by(now + UP_SCAN_MS); /* the loop may have been idle, scanning seldom */
  if (x->first_token_timeout_ms > 0) up_scan_by(now + x->first_token_timeout_ms);
  if (x->idle_timeout_ms > 0) up_scan_by(now + x->idle_timeout_ms);
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

/* The scan: polls is_cancelled and the idle and first-token deadlines of
 * every transfer, starts the retries whose backoff is over, and sets when
 * the next scan is due (the soonest deadline, at most UP_SCAN_MS away).
 * Upstream thread. */
static void up_check_transfers(int64_t now) {
  struct up_xfer *x, *next;
  int64_t left;
  char message[128];

  up_last_scan_ms = now;
  up_scan_due_ms = now + (up_active || up_waiting ? UP_SCAN_MS : UP_SCAN_IDLE_MS);
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
      up_scan_by(now + left);
    }
    if (x->idle_timeout_ms > 0) {
      left = x->last_activity_ms + x->idle_timeout_ms - now;
      if (left <= 0) {
        up_complete(x, LLM_UPSTREAM_IDLE_TIMEOUT, "no data from upstream within the idle timeout");
        continue;
      }
      up_scan_by(now + left);
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
      up_begin_attempt(x); /* curl's timer callback asks for the first step */
      continue;
    }
    up_scan_by(now + left);
  }
}

/* Moves queued transfers into the multi handle and brings a scan forward
 * when llm_wakeup asked for one. Returns nonzero when the runtime is
 * stopping (the queue is then failed with SHUTDOWN instead). */
static int up_take_pending(void) {
  struct up_xfer *list, *x;
  int stopping, scan;

  pthread_mutex_lock(&up_lock);
  list = up_pending_head;
  up_pending_head = up_pending_tail = NULL;
  stopping = up_stopping;
  scan = up_scan_wanted;
  up_scan_wanted = 0;
  pthread_mutex_unlock(&up_lock);

  if (scan) up_scan_by(up_last_scan_ms + UP_SCAN_GAP_MS);

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

/* CURLMOPT_SOCKETFUNCTION: keeps the epoll set in step with the sockets
 * curl wants watched. socketp is non-NULL once fd is in the set. */
static int up_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
  struct epoll_event ev;
  int op = socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  (void)easy;
  (void)userp;

  if (what == CURL_POLL_REMOVE) {
    /* curl forgets the socketp itself; the socket may already be closed. */
    epoll_ctl(up_epoll_fd, EPOLL_CTL_DEL, fd, NULL);
    return 0;
  }
  memset(&ev, 0, sizeof(ev));
  ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
  ev.data.fd = fd;
  if (epoll_ctl(up_epoll_fd, op, fd, &ev) != 0) {
    /* Out of step (a descriptor number reused behind our back): retry the
     * other way round. */
    op = errno == EEXIST ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(up_epoll_fd, op, fd, &ev) != 0) {
      log_warn("upstream: cannot watch socket %d: %s", (int)fd, strerror(errno));
      return -1;
    }
  }
  if (!socketp) curl_multi_assign(up_multi, fd, &up_epoll_fd);
  return 0;
}

/* CURLMOPT_TIMERFUNCTION: when curl wants curl_multi_socket_action with
 * CURL_SOCKET_TIMEOUT; -1 deletes the timer. */
static int up_on_timer(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  (void)userp;
  up_curl_due_ms = timeout_ms < 0 ? -1 : clock_mono_ms() + timeout_ms;
  return 0;
}

/* How long epoll_wait may sleep: until curl's timer or the next scan. */
static int up_wait_ms(int64_t now) {
  int64_t due = up_scan_due_ms;
  if (up_curl_due_ms >= 0 && up_curl_due_ms < due) due = up_curl_due_ms;
  if (due <= now) return 0;
  if (due - now > UP_SCAN_IDLE_MS) return UP_SCAN_IDLE_MS;
  return (int)(due - now);
}

static void *up_main(void *arg) {
  struct epoll_event events[UP_EVENTS_MAX];
  struct up_xfer *x;
  int running = 0, n, i, flags;
  int64_t now;
  uint64_t count;
  (void)arg;

  up_last_scan_ms = clock_mono_ms();
  up_scan_due_ms = up_last_scan_ms;
  for (;;) {
    if (up_take_pending()) break;
    now = clock_mono_ms();
    if (up_curl_due_ms >= 0 && now >= up_curl_due_ms) {
      up_curl_due_ms = -1;
      curl_multi_socket_action(up_multi, CURL_SOCKET_TIMEOUT, 0, &running);
      up_drain_messages();
    }
    n = epoll_wait(up_epoll_fd, events, UP_EVENTS_MAX, up_wait_ms(clock_mono_ms()));
    for (i = 0; i < n; i++) {
      if (events[i].data.fd == up_event_fd) {
        /* The counter only wakes us; what to do is in up_take_pending. */
        if (read(up_event_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
          log_warn("upstream: eventfd read: %s", strerror(errno));
        continue;
      }
      flags = 0;
      if (events[i].events & (EPOLLIN | EPOLLHUP)) flags |= CURL_CSELECT_IN;
      if (events[i].events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
      if (events[i].events & EPOLLERR) flags |= CURL_CSELECT_ERR;
      curl_multi_socket_action(up_multi, events[i].data.fd, flags, &running);
    }
    if (n > 0) up_drain_messages();
    /* The scan comes after the sockets were read, and only once a wait
     * returned fewer events than it could take (nothing ready was left
     * unread), unless it is a second late: on a starved machine the thread
     * may wake long after a first token or an idle answer's next bytes
     * arrived, and a deadline must not fire on bytes that wait in a socket
     * buffer. */
    now = clock_mono_ms();
    if (now >= up_scan_due_ms && (n < UP_EVENTS_MAX || now - up_scan_due_ms > UP_SCAN_LATE_MS))
      up_check_transfers(now);
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

/* Closes what llm_runtime_init opened. Caller holds up_lock; the thread is
 * not running. */
static void up_close_loop(void) {
  if (up_multi) curl_multi_cleanup(up_multi);
  up_multi = NULL;
  if (up_epoll_fd >= 0) close(up_epoll_fd);
  up_epoll_fd = -1;
  if (up_event_fd >= 0) close(up_event_fd);
  up_event_fd = -1;
}

ragd_err llm_runtime_init(void) {
  ragd_err rc = RAGD_OK;
  int curl_ready = 0;
  struct epoll_event ev;

  pthread_mutex_lock(&up_lock);
  if (up_running) goto out;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    rc = RAGD_EUPSTREAM;
    goto out;
  }
  curl_ready = 1;
  up_epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  up_event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (up_epoll_fd < 0 || up_event_fd < 0) {
    rc = RAGD_EIO;
    goto out;
  }
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN;
  ev.data.fd = up_event_fd;
  if (epoll_ctl(up_epoll_fd, EPOLL_CTL_ADD, up_event_fd, &ev) != 0) {
    rc = RAGD_EIO;
    goto out;
  }
  up_multi = curl_multi_init();
  if (!up_multi) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  if (curl_multi_setopt(up_multi, CURLMOPT_SOCKETFUNCTION, up_on_socket) != CURLM_OK ||
      curl_multi_setopt(up_multi, CURLMOPT_TIMERFUNCTION, up_on_timer) != CURLM_OK) {
    rc = RAGD_EUPSTREAM;
    goto out;
  }
  up_curl_due_ms = -1;
  up_scan_wanted = 0;
  up_stopping = 0;
  if (pthread_create(&up_thread, NULL, up_main, NULL) != 0) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  up_running = 1;
out:
  if (rc) {
    up_close_loop();
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
  up_signal_locked();
  pthread_mutex_unlock(&up_lock);

  pthread_join(up_thread, NULL);

  pthread_mutex_lock(&up_lock);
  up_close_loop();
  up_running = 0;
  up_stopping = 0;
  curl_global_cleanup();
  pthread_mutex_unlock(&up_lock);
}

void llm_wakeup(void) {
  pthread_mutex_lock(&up_lock);
  if (up_running && !up_stopping) {
    up_scan_wanted = 1;
    up_signal_locked();
  }
  pthread_mutex_unlock(&up_lock);
}

/* libcurl before 8.0.0 breaks a prior-knowledge HTTP/2 connection when a
 * second transfer reuses it ("Error in the HTTP2 framing layer", curl issue
 * 10634, fixed by curl pull request 10643); Debian 12 ships 7.88.1. With such
 * a libcurl, RAGD_LLM_HTTP_VERSION=2 over http:// speaks HTTP/1.1 instead
 * (said once in the log). */
static int up_h2c_reuse_works(void) {
  static atomic_int warned;
  const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
  if (v && v->version_num >= 0x080000) return 1;
  if (!atomic_exchange(&warned, 1))
    log_warn("upstream: libcurl %s cannot reuse an h2c (HTTP/2 prior knowledge) connection; "
             "RAGD_LLM_HTTP_VERSION=2 over http:// uses HTTP/1.1 (https is not affected)",
             v ? v->version : "?");
  return 0;
}

static ragd_err up_build_easy(struct up_xfer *x, const struct llm_upstream_request *req) {
  CURL *e = x->easy;
  struct curl_slist *h;
  size_t i;
  int ok = 1;
  int tls = strncmp(req->url, "https://", 8) == 0;

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
  if (req->http_version == LLM_HTTP_V1_1 ||
      (req->http_version == LLM_HTTP_V2 && !tls && !up_h2c_reuse_works())) {
    ok &= curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1) == CURLE_OK;
  } else if (req->http_version == LLM_HTTP_V2 || tls) {
    /* HTTP/2: by ALPN over https, with prior knowledge (h2c) over http://
     * (V2 only). PIPEWAIT: a burst of new answers waits for the first
     * connection to the host to say whether it multiplexes instead of each
     * opening a socket (curl multiplexes by default, CURLPIPE_MULTIPLEX). */
    ok &= curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                           tls ? (long)CURL_HTTP_VERSION_2TLS
                               : (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L) == CURLE_OK;
  }
  /* curl copies string options: req may go once add returns. */
  if (req->ca_file && req->ca_file[0])
    ok &= curl_easy_setopt(e, CURLOPT_CAINFO, req->ca_file) == CURLE_OK;
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
    up_signal_locked();
  }
  pthread_mutex_unlock(&up_lock);
out:
  if (rc) up_xfer_free(x);
  return rc;
}
