/* server.c - the libmicrohttpd event loop, routing, request limits, worker
 * dispatch and the stream queue behind http_stream_*.
 *
 * Lifecycle of a request: the event thread collects the body (capped), checks
 * route, method, media type, UTF-8 and JSON, then suspends the connection and
 * hands the request to a worker. The worker runs the handler, which stores its
 * response in the request; the worker resumes the connection and the event
 * thread queues that response on its next call.
 *
 * A streamed response pulls from a per-stream byte queue. When the queue is
 * empty the content reader suspends the connection; the next write (or the
 * end, or a heartbeat) resumes it. Nothing polls.
 *
 * libmicrohttpd does not watch the socket of a suspended connection, so a
 * client that hangs up while its stream waits for upstream tokens would go
 * unnoticed until the next write. A watcher thread therefore keeps a side
 * epoll set of every streaming socket, registered for EPOLLRDHUP only: the
 * peer's FIN or RST wakes it, it cancels the stream (and through on_cancel
 * the upstream transfer) and resumes the connection so the daemon closes it.
 * The same thread sends heartbeats and cuts streams whose client stopped
 * reading (stall_ms).
 *
 * Writes do not resume their connection themselves. libmicrohttpd 0.9.75
 * walks its whole list of suspended connections, under a mutex that
 * MHD_resume_connection also takes, on every loop iteration after any resume:
 * with ten thousand streams waiting for tokens, one resume per relayed event
 * made that walk a quarter of ragd's CPU and stalled the writers. A write to
 * a suspended stream instead puts it on the wake list (once, however many
 * events it queues meanwhile), and the watcher thread resumes the whole list
 * every STREAM_FLUSH_MS: one walk per tick, and each resume carries every
 * event queued during it. Cancellations and shutdown still resume at once. */
#include <arpa/inet.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/access_log_int.h"
#include "http/http.h"
#include "http/http_int.h"
#include "text/text.h"
#include "util/clock.h"
#include "util/crypto.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/workq.h"

#define STREAM_QUEUE_MAX (4u * 1024u * 1024u)
#define STREAM_BLOCK_SIZE (16u * 1024u)
#define WATCH_TICK_MS 100 /* heartbeats and stall checks */
#define STREAM_FLUSH_MS 5 /* longest a queued event waits for its connection's resume */
#define WATCH_BATCH 256
#define HEADER_BYTES_DEFAULT (32u * 1024u)
#define LIMITER_ENTRIES_MAX 100000 /* keys and client addresses with live buckets */

enum request_state { REQ_READING = 0, REQ_RUNNING, REQ_REPLIED, REQ_DONE };
/* http_request_defer / http_request_finish handshake with run_handler. */
enum request_defer { DEFER_NONE = 0, DEFER_WAITING, DEFER_FINISHED };

struct http_server {
  struct MHD_Daemon *daemon;
  const struct http_server_opts *opts;
  struct workq *workers;
  struct workq *quick; /* one thread for HTTP_LANE_QUICK routes */
  int port;
  pthread_t watcher;
  int watcher_started;
  int watch_fd; /* the side epoll set of streaming sockets; -1 when none */
  int wake_fd;  /* eventfd in watch_fd: the wake list became non-empty; -1 when none */
  pthread_mutex_t wake_mu;       /* guards wake_list (taken after a stream's mu) */
  struct http_stream *wake_list; /* suspended streams with something new to send */
  pthread_mutex_t mu; /* guards streams, graveyard, next_serial, stopping */
  int stopping;
  uint64_t next_serial;
  struct http_stream *streams;   /* open streamed responses */
  struct http_stream *graveyard; /* gone, but maybe named by a pending epoll event */
  size_t deferred; /* requests deferred and not yet finished (guarded by mu) */
  struct http_request *deferred_list; /* deferred, not yet finished */
  pthread_cond_t timeout_done;        /* an on_timeout call returned */
  struct http_key_cache *keys;   /* NULL without opts->access */
  struct http_limiter *limiter;  /* NULL without opts->access */
  int listen_loopback;           /* opts->host is a loopback address */
};

/* Counters since start-up (see http_stream_stats). */
static struct {
  pthread_mutex_t mu;
  struct http_stream_stats v;
} stats = {PTHREAD_MUTEX_INITIALIZER, {0}};

static void stats_add(size_t *field, long delta) {
  pthread_mutex_lock(&stats.mu);
  *field = (size_t)((long)*field + delta);
  pthread_mutex_unlock(&stats.mu);
}

void http_stream_stats(struct http_stream_stats *out) {
  pthread_mutex_lock(&stats.mu);
  *out = stats.v;
  pthread_mutex_unlock(&stats.mu);
}

struct http_request {
  struct http_server *srv;
  struct http_notes *notes; /* the access-log line's extra fields */
  int64_t started_us;
  size_t reply_bytes;         /* body of a buffered reply */
  struct http_stream *stream; /* a streamed reply (the request holds a reference) */
  struct MHD_Connection *conn;
  const struct http_route *route;
  const char *problem; /* set while reading: answer with this problem code */
  char *method;
  char *path;
  const char *param;
  char request_id[136];
  struct buf body;
  int too_large;
  json_t *json;
  enum request_state state;
  enum request_defer defer;   /* guarded by srv->mu */
  int handler_returned;       /* guarded by srv->mu; only for a deferred request */
  /* RAGD_REQUEST_TIMEOUT_S for a deferred request (guarded by srv->mu). */
  struct http_request *deferred_prev, *deferred_next; /* in srv->deferred_list */
  void (*on_timeout)(void *arg);
  void *timeout_arg;
  int timeout_running; /* the watcher is calling on_timeout */
  int status;
  struct MHD_Response *response;
  char peer[72];      /* client address ("" unknown); IPv6 as its /64 */
  int peer_loopback;
  char *cors_origin;  /* the request's Origin when the allow-list admits it */
  struct http_limit_slot *slot; /* its place among its client's requests in flight */
  char key_id[72];    /* the admitting key's public id; "" without one */
};

struct http_stream {
  pthread_mutex_t mu;
  struct http_server *srv;
  size_t bytes_out; /* handed to the connection */
  struct MHD_Connection *conn; /* NULL once the response is gone */
  struct buf queue;
  size_t sent; /* bytes of queue already handed to the connection */
  int refs;
  int ended;
  int cancelled;
  int suspended;
  int wake_queued;    /* on srv->wake_list, which holds a reference */
  struct http_stream *wake_next;
  int watched;        /* registered in srv->watch_fd (guarded by srv->mu) */
  int listed;         /* in srv->streams (guarded by srv->mu) */
  uint64_t serial;    /* names the stream in log lines */
  char request_id[LOG_REQUEST_ID_MAX];
  int64_t last_write_ms;
  int64_t last_progress_ms; /* the client last took bytes, or the queue was empty */
  int64_t stall_ms;         /* 0: never cut a slow reader on time alone */
  void (*on_cancel)(void *arg);
  void *cancel_arg;
  void (*on_release)(void *arg);
  void *release_arg;
  struct http_limit_slot *slot; /* taken over from the request: the place is held
                                   until the connection is done with the stream */
  struct http_stream *prev, *next;
};

/* ---- metrics (GET /metrics) ------------------------------------------------------ */

static struct {
  struct metric *requests, *duration, *bytes, *connections, *cancels;
} hm;

static double open_streams(void *arg) {
  struct http_stream_stats st;
  (void)arg;
  http_stream_stats(&st);
  return (double)st.open;
}

static void http_metrics_create(void) {
  hm.requests = metrics_counter("ragd_http_requests_total",
                                "HTTP requests answered, by method, route pattern and status.",
                                "method,route,status");
  hm.duration = metrics_histogram("ragd_http_request_duration_seconds",
                                  "Time from the request line to the end of the response (a "
                                  "stream's whole life), by route pattern.",
                                  "route", metrics_latency_buckets, metrics_latency_bucket_count);
  hm.bytes = metrics_counter("ragd_http_response_bytes_total",
                             "Response body bytes handed to the connection, by route pattern.",
                             "route");
  hm.connections = metrics_gauge("ragd_http_open_connections", "Open HTTP connections.", NULL);
  metrics_gauge_fn("ragd_http_open_streams", "Streamed responses (SSE) now open.", open_streams, NULL);
  hm.cancels = metrics_counter("ragd_http_stream_cancellations_total",
                               "Streams cut before their end, by cause (disconnect: the client "
                               "hung up; stall: it stopped reading; overflow: its queue filled).",
                               "cause");
}

static void http_metrics_init(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, http_metrics_create);
}

/* The route label: the route table's pattern, so ids never become series. */
static const char *route_label(const struct http_request *r) {
  return r->route ? r->route->path : "unmatched";
}

/* Records a finished request. Event thread. */
static void request_observe(struct http_request *r, enum MHD_RequestTerminationCode toe) {
  char status[16];
  size_t bytes = r->reply_bytes;
  double seconds = (double)(clock_mono_us() - r->started_us) / 1e6;
  const char *method = "other";
  if (r->route) method = strcmp(r->method, "HEAD") == 0 ? "HEAD" : r->route->method;
  if (r->stream) {
    pthread_mutex_lock(&r->stream->mu);
    bytes = r->stream->bytes_out;
    pthread_mutex_unlock(&r->stream->mu);
  }
  snprintf(status, sizeof status, "%d", r->status);
  metrics_add(hm.requests, 1, method, route_label(r), status);
  metrics_observe(hm.duration, seconds, route_label(r));
  metrics_add(hm.bytes, (double)bytes, route_label(r));
  if (r->key_id[0]) http_notes_set(r->notes, "key_id", r->key_id); /* the public id */
  http_access_log(r->request_id, r->notes, r->method, route_label(r), r->status, bytes, seconds,
                  toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? NULL
                  : toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT ? "client_abort" : "error");
}

/* ---- requests ------------------------------------------------------------------ */

static int request_id_sane(const char *id) {
  size_t n = 0;
  if (!id) return 0;
  for (; id[n]; n++) {
    char c = id[n];
    if (n >= 128) return 0;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '_' || c == '.' || c == ':'))
      return 0;
  }
  return n > 0;
}

static const struct http_route *route_find(const struct http_server_opts *o, const char *method,
                                           const char *path, const char **param,
                                           int *path_matched) {
  *path_matched = 0;
  for (size_t i = 0; i < o->route_count; i++) {
    const struct http_route *rt = &o->routes[i];
    size_t n = strlen(rt->path);
    int match;
    const char *rest = "";
    if (n && rt->path[n - 1] == '*') {
      match = strncmp(path, rt->path, n - 1) == 0 && path[n - 1] != '\0';
      rest = path + n - 1;
    } else {
      match = strcmp(path, rt->path) == 0;
    }
    if (!match) continue;
    *path_matched = 1;
    if (strcmp(method, rt->method) == 0 || (strcmp(method, "HEAD") == 0 && strcmp(rt->method, "GET") == 0)) {
      *param = rest;
      return rt;
    }
  }
  return NULL;
}

static void stream_unref(struct http_stream *s);

static void request_free(struct http_request *r) {
  if (!r) return;
  if (r->slot) http_limiter_release(r->srv->limiter, r->slot);
  free(r->cors_origin);
  http_notes_release(r->notes);
  if (r->stream) stream_unref(r->stream);
  if (r->response) MHD_destroy_response(r->response);
  json_decref(r->json);
  buf_dispose(&r->body);
  free(r->method);
  free(r->path);
  free(r);
}

static void add_common_headers(struct http_request *r, struct MHD_Response *resp) {
  const struct http_access_opts *a = r->srv->opts->access;
  MHD_add_response_header(resp, "X-Request-ID", r->request_id);
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  if (a && a->cors_origins && a->cors_origins[0]) MHD_add_response_header(resp, "Vary", "Origin");
  if (r->cors_origin) {
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->cors_origin);
    MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                            "Retry-After, WWW-Authenticate, X-Request-ID, "
                            "x-vercel-ai-ui-message-stream");
  }
}

/* Appends the methods the route table takes on path ("GET, POST"), or
 * nothing when no route has this path. */
static void path_methods(const struct http_server *srv, const char *path, struct buf *allow) {
  for (size_t i = 0; i < srv->opts->route_count; i++) {
    const struct http_route *rt = &srv->opts->routes[i];
    size_t n = strlen(rt->path);
    int m = (n && rt->path[n - 1] == '*') ? strncmp(path, rt->path, n - 1) == 0 && path[n - 1]
                                          : strcmp(path, rt->path) == 0;
    if (m && (!allow->data || !strstr(allow->data, rt->method)))
      if (buf_appendf(allow, "%s%s", allow->len ? ", " : "", rt->method)) break;
  }
}

static void set_response(struct http_request *r, int status, struct MHD_Response *resp) {
  if (r->response) MHD_destroy_response(r->response);
  r->response = resp;
  r->status = status;
}

/* The OpenAI error object, for routes that promise OpenAI's shape:
 * {"error":{"message","type","param","code"}}. */
static struct MHD_Response *openai_error_response(struct http_request *r, const char *code,
                                                  const char *detail, int status) {
  json_t *o = json_object();
  json_t *e = json_object();
  struct buf out;
  struct MHD_Response *resp = NULL;
  const char *msg = detail && detail[0] ? detail : http_problem_title(code);
  buf_init(&out, 0);
  if (json_object_set_new(e, "message", json_string(msg)) != 0)
    json_object_set_new(e, "message", json_string(http_problem_title(code)));
  json_object_set_new(e, "type", json_string(http_openai_error_type(status)));
  json_object_set_new(e, "param", json_null());
  json_object_set_new(e, "code", json_string(code));
  json_object_set_new(o, "error", e);
  if (json_append(&out, o) == RAGD_OK && buf_append_char(&out, '\n') == RAGD_OK)
    resp = MHD_create_response_from_buffer(out.len, out.data, MHD_RESPMEM_MUST_COPY);
  json_decref(o);
  if (resp) r->reply_bytes = out.len;
  buf_dispose(&out);
  if (!resp) return NULL;
  MHD_add_response_header(resp, "Content-Type", "application/json");
  add_common_headers(r, resp);
  return resp;
}

static struct MHD_Response *problem_response(struct http_request *r, const char *code,
                                             const char *detail, int *status) {
  json_t *o = json_object();
  struct buf out;
  struct MHD_Response *resp = NULL;
  char type[96];
  buf_init(&out, 0);
  *status = http_problem_status(code);
  if (r->route && r->route->body == HTTP_BODY_OPENAI_JSON) {
    json_decref(o);
    return openai_error_response(r, code, detail, *status);
  }
  snprintf(type, sizeof type, "/errors/%s", code);
  json_object_set_new(o, "type", json_string(type));
  json_object_set_new(o, "title", json_string(http_problem_title(code)));
  json_object_set_new(o, "status", json_integer(*status));
  json_object_set_new(o, "code", json_string(code));
  /* detail is ours, but may quote user bytes: jansson refuses invalid UTF-8,
   * so fall back to no detail rather than a broken document. */
  if (json_object_set_new(o, "detail", json_string(detail ? detail : "")) != 0)
    json_object_set_new(o, "detail", json_string(""));
  json_object_set_new(o, "request_id", json_string(r->request_id));
  if (json_append(&out, o) == RAGD_OK && buf_append_char(&out, '\n') == RAGD_OK)
    resp = MHD_create_response_from_buffer(out.len, out.data, MHD_RESPMEM_MUST_COPY);
  json_decref(o);
  if (resp) r->reply_bytes = out.len;
  buf_dispose(&out);
  if (!resp) return NULL;
  MHD_add_response_header(resp, "Content-Type", "application/problem+json");
  add_common_headers(r, resp);
  if (strcmp(code, "method_not_allowed") == 0) {
    /* List the methods this path takes. */
    struct buf allow;
    buf_init(&allow, 256);
    path_methods(r->srv, r->path, &allow);
    if (allow.data) MHD_add_response_header(resp, "Allow", allow.data);
    buf_dispose(&allow);
  }
  return resp;
}

static void reply_problem_v(struct http_request *r, const char *code, const char *fmt, va_list ap) {
  struct buf detail;
  int status = 500;
  struct MHD_Response *resp;
  buf_init(&detail, 4096);
  if (fmt) buf_vappendf(&detail, fmt, ap);
  resp = problem_response(r, code, detail.data, &status);
  buf_dispose(&detail);
  set_response(r, status, resp);
}

static void reply_problem(struct http_request *r, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reply_problem(struct http_request *r, const char *code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  reply_problem_v(r, code, fmt, ap);
  va_end(ap);
}

static enum MHD_Result queue_stored(struct http_request *r) {
  enum MHD_Result ret;
  r->state = REQ_DONE;
  if (!r->response) return MHD_NO;
  ret = MHD_queue_response(r->conn, (unsigned)r->status, r->response);
  MHD_destroy_response(r->response);
  r->response = NULL;
  return ret;
}

static int media_type_is_json(const char *ct) {
  size_t n = strlen("application/json");
  if (!ct) return 0;
  while (*ct == ' ') ct++;
  if (strncasecmp(ct, "application/json", n) != 0) return 0;
  ct += n;
  while (*ct == ' ') ct++;
  return *ct == '\0' || *ct == ';';
}

/* Checks media type, UTF-8 and JSON; stores a problem response on failure. */
static int request_check_json(struct http_request *r) {
  const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
  size_t bad = 0;
  struct buf detail;
  ragd_err rc;
  if (!media_type_is_json(ct)) {
    reply_problem(r, "unsupported_media_type", "Content-Type is \"%s\"; send application/json",
                  ct ? ct : "(none)");
    return 0;
  }
  if (r->body.len == 0) {
    reply_problem(r, "invalid_json", "the request body is empty; send a JSON object");
    return 0;
  }
  if (text_utf8_validate(r->body.data, r->body.len, &bad) != RAGD_OK) {
    reply_problem(r, "invalid_utf8", "the body is not valid UTF-8 at byte %zu", bad);
    return 0;
  }
  buf_init(&detail, 1024);
  rc = json_parse_object(r->body.data, r->body.len, &r->json, &detail);
  if (rc) {
    reply_problem(r, "invalid_json", "%s", detail.data ? detail.data : "invalid JSON");
    buf_dispose(&detail);
    return 0;
  }
  buf_dispose(&detail);
  return 1;
}

/* ---- access and limits ------------------------------------------------------------ */

/* 401 with the RFC 6750 challenge; error is NULL (no key sent) or
 * "invalid_token". */
static void reply_unauthorized(struct http_request *r, const char *error, const char *detail) {
  char challenge[96];
  reply_problem(r, "unauthorized", "%s", detail);
  snprintf(challenge, sizeof challenge, "Bearer realm=\"ragd\"%s%s%s", error ? ", error=\"" : "",
           error ? error : "", error ? "\"" : "");
  if (r->response) MHD_add_response_header(r->response, "WWW-Authenticate", challenge);
}

/* The key of "Authorization: Bearer KEY" (scheme case-insensitive), or NULL. */
static const char *request_bearer(struct http_request *r, size_t *len) {
  const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
  size_t n;
  if (!h || strncasecmp(h, "Bearer ", 7) != 0) return NULL;
  h += 7;
  while (*h == ' ') h++;
  n = strlen(h);
  while (n && (h[n - 1] == ' ' || h[n - 1] == '\t')) n--;
  *len = n;
  return n ? h : NULL;
}

/* Checks who may call the route and takes the caller's rate-limit token and
 * in-flight place. Worker thread, before the handler. Returns 1 when the
 * handler may run; otherwise a reply is stored. */
static int request_admit(struct http_request *r) {
  const struct http_access_opts *a = r->srv->opts->access;
  enum http_access need = r->route->access;
  struct http_key key;
  char name[96];
  const char *token;
  size_t active = 0, token_len = 0;
  long rpm, concurrent;
  int64_t now = clock_mono_ms(), retry_ms = 0;
  enum http_limit_verdict verdict;
  ragd_err rc = RAGD_OK;
  if (!a || need == HTTP_ACCESS_OPEN || (need == HTTP_ACCESS_METRICS && !a->metrics_admin))
    return 1;
  if (a->key_lookup) rc = http_key_cache_count(r->srv->keys, now, &active);
  if (rc) {
    reply_problem(r, "store_unavailable", "API keys cannot be checked: %s", ragd_strerror(rc));
    return 0;
  }
  if (active == 0) {
    /* No keys: open, but only where nobody else can reach us. */
    if (!r->srv->listen_loopback && !a->allow_open) {
      reply_unauthorized(r, NULL,
                         "this server has no API keys and does not listen on loopback; create "
                         "one with `ragd keys create --scope query`");
      return 0;
    }
    if (r->peer_loopback || !r->peer[0]) return 1;
    snprintf(name, sizeof name, "addr:%s", r->peer);
    rpm = a->rpm_address;
    concurrent = a->streams_key;
  } else {
    token = request_bearer(r, &token_len);
    if (!token) {
      reply_unauthorized(r, NULL, "this route needs an API key: send \"Authorization: Bearer <key>\"");
      return 0;
    }
    rc = http_key_cache_lookup(r->srv->keys, token, token_len, now, &key);
    if (rc == RAGD_ENOTFOUND) {
      reply_unauthorized(r, "invalid_token", "the API key is not valid (unknown or revoked)");
      return 0;
    }
    if (rc) {
      reply_problem(r, "store_unavailable", "API keys cannot be checked: %s", ragd_strerror(rc));
      return 0;
    }
    if (need == HTTP_ACCESS_ADMIN && !key.admin) {
      reply_problem(r, "forbidden", "%s %s needs an admin key; key %s has the query scope",
                    r->method, r->route->path, key.id);
      if (r->response)
        MHD_add_response_header(r->response, "WWW-Authenticate",
                                "Bearer realm=\"ragd\", error=\"insufficient_scope\", scope=\"admin\"");
      return 0;
    }
    snprintf(r->key_id, sizeof r->key_id, "%s", key.id);
    snprintf(name, sizeof name, "key:%s", key.id);
    rpm = key.rpm > 0 ? key.rpm : a->rpm_key;
    concurrent = key.streams > 0 ? key.streams : a->streams_key;
  }
  verdict = http_limits_admit(r->srv->limiter, a, r->srv->opts->app, name, rpm, concurrent, now,
                              &r->slot, &retry_ms);
  if (verdict != HTTP_LIMIT_OK) {
    char secs[24];
    const char *who = r->key_id[0] ? "key " : "address ";
    const char *id = r->key_id[0] ? r->key_id : r->peer;
    if (verdict == HTTP_LIMIT_RATE)
      reply_problem(r, "rate_limited", "%s%s is over its limit of %ld requests per minute", who,
                    id, rpm);
    else
      reply_problem(r, "rate_limited",
                    "%s%s already has %ld requests or streams in flight, its limit", who, id,
                    concurrent);
    snprintf(secs, sizeof secs, "%lld", (long long)((retry_ms + 999) / 1000));
    if (r->response) MHD_add_response_header(r->response, "Retry-After", secs);
    return 0;
  }
  return 1;
}

/* The client's address, IPv6 cut to its /64 (one host's share), and
 * whether it is loopback. Event thread. */
static void request_peer(struct http_request *r) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  const struct sockaddr *sa = ci ? ci->client_addr : NULL;
  if (!sa) return;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
    inet_ntop(AF_INET, &in->sin_addr, r->peer, sizeof r->peer);
  } else if (sa->sa_family == AF_INET6) {
    struct in6_addr a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&a)) {
      inet_ntop(AF_INET, &a.s6_addr[12], r->peer, sizeof r->peer);
    } else if (IN6_IS_ADDR_LOOPBACK(&a)) {
      snprintf(r->peer, sizeof r->peer, "::1");
    } else {
      char text[INET6_ADDRSTRLEN];
      memset(&a.s6_addr[8], 0, 8);
      if (inet_ntop(AF_INET6, &a, text, sizeof text))
        snprintf(r->peer, sizeof r->peer, "%s/64", text);
    }
  }
  r->peer_loopback = http_host_is_loopback(r->peer);
}

/* An OPTIONS request: the methods of the path (Allow) and, for a CORS
 * preflight from an allowed origin, the Access-Control-* answer. Event
 * thread; the reply is stored. */
static void reply_options(struct http_request *r) {
  const char *origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
  const char *want = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                 "Access-Control-Request-Method");
  struct MHD_Response *resp;
  struct buf allow;
  buf_init(&allow, 256);
  path_methods(r->srv, r->path, &allow);
  if (!allow.data) {
    reply_problem(r, "not_found", "no route for OPTIONS %s", r->path);
    goto out;
  }
  if (origin && want && !r->cors_origin) {
    reply_problem(r, "forbidden", "origin %s is not allowed (RAGD_CORS_ORIGINS)", origin);
    goto out;
  }
  resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  if (!resp) goto out;
  add_common_headers(r, resp);
  if (r->cors_origin && want) {
    MHD_add_response_header(resp, "Access-Control-Allow-Methods", allow.data);
    MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                            "Authorization, Content-Type, Last-Event-ID, X-Request-ID");
    MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
  }
  buf_append_str(&allow, ", OPTIONS");
  MHD_add_response_header(resp, "Allow", allow.data);
  set_response(r, 204, resp);
out:
  buf_dispose(&allow);
}

/* Hands the stored reply to the daemon: the connection resumes and the event
 * thread queues the response. r may be freed as soon as this returns. */
static void request_complete(struct http_request *r) {
  if (!r->response) {
    log_error("request %s: handler for %s %s gave no reply", r->request_id, r->method, r->path);
    reply_problem(r, "internal_error", "the handler produced no response");
  }
  r->state = REQ_REPLIED;
  MHD_resume_connection(r->conn);
}

static void run_handler(void *arg) {
  struct http_request *r = arg;
  struct http_server *srv = r->srv;
  struct log_scope scope;
  int later;
  log_scope_begin(&scope, r->request_id);
  /* Who is asking comes first: a caller without a key learns nothing about
   * its body. The body checks run here too, off the event thread. */
  if (request_admit(r) && (r->route->body == HTTP_BODY_NONE || request_check_json(r)))
    r->route->handler(r, srv->opts->app);
  log_scope_end(&scope);
  /* A deferred request not finished yet is completed by http_request_finish
   * on another thread, which may free r at any moment after the unlock. */
  pthread_mutex_lock(&srv->mu);
  later = r->defer == DEFER_WAITING;
  if (r->defer == DEFER_FINISHED) srv->deferred--; /* finished before we got here */
  r->handler_returned = 1;
  pthread_mutex_unlock(&srv->mu);
  if (later) return;
  request_complete(r);
}

void http_request_defer(struct http_request *r) {
  pthread_mutex_lock(&r->srv->mu);
  r->defer = DEFER_WAITING;
  r->deferred_prev = NULL;
  r->deferred_next = r->srv->deferred_list;
  if (r->deferred_next) r->deferred_next->deferred_prev = r;
  r->srv->deferred_list = r;
  r->srv->deferred++;
  pthread_mutex_unlock(&r->srv->mu);
}

void http_request_finish(struct http_request *r) {
  struct http_server *srv = r->srv;
  int now;
  pthread_mutex_lock(&srv->mu);
  while (r->timeout_running) pthread_cond_wait(&srv->timeout_done, &srv->mu);
  r->on_timeout = NULL;
  if (r->deferred_prev) r->deferred_prev->deferred_next = r->deferred_next;
  else if (srv->deferred_list == r) srv->deferred_list = r->deferred_next;
  if (r->deferred_next) r->deferred_next->deferred_prev = r->deferred_prev;
  r->deferred_prev = r->deferred_next = NULL;
  r->defer = DEFER_FINISHED;
  now = r->handler_returned;
  pthread_mutex_unlock(&srv->mu);
  if (!now) return; /* run_handler completes it */
  request_complete(r);
  /* Counted down only now, so that http_server_stop cannot stop the daemon
   * between our resume and its. */
  pthread_mutex_lock(&srv->mu);
  srv->deferred--;
  pthread_mutex_unlock(&srv->mu);
}

void http_request_on_timeout(struct http_request *r, void (*on_timeout)(void *arg), void *arg) {
  pthread_mutex_lock(&r->srv->mu);
  if (r->defer == DEFER_WAITING && r->srv->opts->request_timeout_s > 0) {
    r->on_timeout = on_timeout;
    r->timeout_arg = arg;
  }
  pthread_mutex_unlock(&r->srv->mu);
}

/* Deferred requests past their time limit: marks each running and returns
 * them (at most cap) for their on_timeout to be called outside the lock.
 * Caller holds srv->mu. */
static size_t watch_timeouts(struct http_server *srv, int64_t now_us, struct http_request **out,
                             size_t cap) {
  int64_t limit_us = (int64_t)srv->opts->request_timeout_s * 1000000;
  size_t n = 0;
  for (struct http_request *r = srv->deferred_list; r && n < cap; r = r->deferred_next) {
    if (!r->on_timeout || now_us - r->started_us < limit_us) continue;
    r->timeout_running = 1;
    out[n++] = r;
  }
  return n;
}

/* The limit on the request line and headers that ragd enforces itself, so
 * that going over it gets a problem+json 431 (see connection_memory). */
static size_t header_limit(const struct http_server_opts *opts) {
  return opts->max_header_bytes ? opts->max_header_bytes : HEADER_BYTES_DEFAULT;
}

static enum MHD_Result count_header_bytes(void *cls, enum MHD_ValueKind kind, const char *key,
                                          const char *value) {
  size_t *n = cls;
  (void)kind;
  /* "key: value\r\n", or "key=value&" in the query string */
  *n += strlen(key) + (value ? strlen(value) : 0) + 4;
  return MHD_YES;
}

/* The bytes of the request line and header lines as libmicrohttpd parsed
 * them (the query string counted as its decoded arguments). Event thread. */
static size_t request_header_bytes(struct MHD_Connection *conn, const char *method,
                                   const char *url, const char *version) {
  size_t n = strlen(method) + strlen(url) + strlen(version) + 4;
  MHD_get_connection_values(conn, MHD_HEADER_KIND, count_header_bytes, &n);
  MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, count_header_bytes, &n);
  return n;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
  struct http_server *srv = cls;
  struct http_request *r = *con_cls;
  if (!r) {
    const char *id, *cl;
    size_t header_bytes;
    int path_matched = 0;
    r = calloc(1, sizeof *r);
    if (!r) return MHD_NO;
    r->srv = srv;
    r->conn = conn;
    r->started_us = clock_mono_us();
    r->method = strdup(method);
    r->path = strdup(url);
    r->notes = http_notes_new();
    buf_init(&r->body, srv->opts->max_body_bytes);
    if (!r->method || !r->path || !r->notes) {
      request_free(r);
      return MHD_NO;
    }
    *con_cls = r;
    id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-ID");
    if (request_id_sane(id)) {
      snprintf(r->request_id, sizeof r->request_id, "%s", id);
    } else {
      memcpy(r->request_id, "req_", 4);
      if (crypto_random_hex(r->request_id + 4, 12) != 0) snprintf(r->request_id, sizeof r->request_id, "req_unknown");
    }
    request_peer(r);
    header_bytes = request_header_bytes(conn, method, url, version);
    if (header_bytes > header_limit(srv->opts)) {
      reply_problem(r, "headers_too_large",
                    "the request line and headers take %zu bytes; the limit is %zu "
                    "(RAGD_MAX_HEADER_BYTES)",
                    header_bytes, header_limit(srv->opts));
      return queue_stored(r);
    }
    if (srv->opts->access && http_cors_origin_allowed(srv->opts->access->cors_origins,
                                                      MHD_lookup_connection_value(
                                                          conn, MHD_HEADER_KIND, "Origin")))
      r->cors_origin = strdup(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin"));
    if (strcmp(method, "OPTIONS") == 0) {
      reply_options(r);
      return queue_stored(r);
    }
    r->route = route_find(srv->opts, method, url, &r->param, &path_matched);
    if (!r->route) r->problem = path_matched ? "method_not_allowed" : "not_found";
    cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > 4 * (unsigned long long)srv->opts->max_body_bytes) {
      /* Far over the limit: answer now instead of reading it all. */
      reply_problem(r, "body_too_large", "the body is %s bytes; the limit is %zu", cl,
                    srv->opts->max_body_bytes);
      return queue_stored(r);
    }
    return MHD_YES;
  }
  if (r->state == REQ_READING) {
    if (*upload_data_size) {
      if (!r->too_large && buf_append(&r->body, upload_data, *upload_data_size) != RAGD_OK)
        r->too_large = 1; /* keep reading and dropping, then answer 413 */
      *upload_data_size = 0;
      return MHD_YES;
    }
    if (r->problem) {
      if (strcmp(r->problem, "not_found") == 0)
        reply_problem(r, r->problem, "no route for %s %s", r->method, r->path);
      else
        reply_problem(r, r->problem, "%s is not allowed on %s", r->method, r->path);
      return queue_stored(r);
    }
    if (r->too_large) {
      reply_problem(r, "body_too_large", "the body exceeds the limit of %zu bytes",
                    srv->opts->max_body_bytes);
      return queue_stored(r);
    }
    r->state = REQ_RUNNING;
    MHD_suspend_connection(conn);
    if (workq_submit(r->route && r->route->lane == HTTP_LANE_QUICK ? srv->quick : srv->workers,
                     run_handler, r) != RAGD_OK) {
      MHD_resume_connection(conn);
      reply_problem(r, "overloaded", "the server is shutting down");
      r->state = REQ_REPLIED;
    }
    return MHD_YES;
  }
  if (r->state == REQ_REPLIED) return queue_stored(r);
  return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  struct http_request *r = *con_cls;
  (void)cls;
  (void)conn;
  if (r && r->status) request_observe(r, toe);
  else if (r) /* gone before any reply: no metrics, but its access line */
    http_access_log(r->request_id, r->notes, r->method, route_label(r), 0, 0,
                    (double)(clock_mono_us() - r->started_us) / 1e6, "client_abort");
  request_free(r);
  *con_cls = NULL;
}

/* ---- request accessors and replies ----------------------------------------------- */

const char *http_request_method(const struct http_request *r) { return r->method; }
const char *http_request_path(const struct http_request *r) { return r->path; }
const char *http_request_path_param(const struct http_request *r) { return r->param ? r->param : ""; }
const char *http_request_id(const struct http_request *r) { return r->request_id; }
const char *http_request_key_id(const struct http_request *r) { return r->key_id[0] ? r->key_id : NULL; }
int http_request_peer_loopback(const struct http_request *r) { return r->peer_loopback; }
struct http_notes *http_request_notes(struct http_request *r) { return http_notes_hold(r->notes); }

json_t *http_request_json(const struct http_request *r) { return r->json; }

const char *http_request_header(const struct http_request *r, const char *name) {
  return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *http_request_query(const struct http_request *r, const char *name) {
  return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

void http_reply(struct http_request *r, int status, const char *content_type, const char *body,
                size_t len) {
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (!resp) return;
  MHD_add_response_header(resp, "Content-Type", content_type);
  add_common_headers(r, resp);
  set_response(r, status, resp);
  r->reply_bytes = len;
}

void http_reply_json(struct http_request *r, int status, json_t *obj) {
  struct buf out;
  buf_init(&out, 0);
  if (json_append(&out, obj) != RAGD_OK || buf_append_char(&out, '\n') != RAGD_OK) {
    buf_dispose(&out);
    json_decref(obj);
    reply_problem(r, "internal_error", "could not encode the response");
    return;
  }
  json_decref(obj);
  http_reply(r, status, "application/json", out.data, out.len);
  buf_dispose(&out);
}

void http_reply_problem(struct http_request *r, const char *code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  reply_problem_v(r, code, fmt, ap);
  va_end(ap);
}

/* ---- streams ------------------------------------------------------------------------ */

static void stream_unref(struct http_stream *s) {
  int last;
  pthread_mutex_lock(&s->mu);
  last = --s->refs == 0;
  pthread_mutex_unlock(&s->mu);
  if (!last) return;
  if (s->on_release) s->on_release(s->release_arg);
  buf_dispose(&s->queue);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

/* Resumes s's connection now, so the daemon reads its queue, its end or its
 * cancellation. Caller holds s->mu. */
static void stream_resume_now(struct http_stream *s) {
  if (s->suspended && s->conn) {
    s->suspended = 0;
    MHD_resume_connection(s->conn);
  }
}

/* Has s's connection resumed at the watcher's next flush (within
 * STREAM_FLUSH_MS): for new bytes and the end, which may wait that long.
 * Caller holds s->mu. */
static void stream_wake(struct http_stream *s) {
  struct http_server *srv = s->srv;
  if (!s->suspended || !s->conn || s->wake_queued) return;
  pthread_mutex_lock(&srv->wake_mu);
  if (srv->wake_fd < 0) { /* no watcher to flush (stopping) */
    pthread_mutex_unlock(&srv->wake_mu);
    stream_resume_now(s);
    return;
  }
  s->wake_queued = 1;
  s->refs++; /* the wake list's */
  s->wake_next = srv->wake_list;
  srv->wake_list = s;
  if (!s->wake_next) {
    uint64_t one = 1;
    if (write(srv->wake_fd, &one, sizeof one) < 0) {
      /* EAGAIN: the counter is full, so the watcher is awake anyway */
    }
  }
  pthread_mutex_unlock(&srv->wake_mu);
}

/* Resumes every stream on the wake list (watcher thread, or the stopping
 * thread once the watcher is gone). Holds no lock on entry. */
static void wake_flush(struct http_server *srv) {
  struct http_stream *s;
  pthread_mutex_lock(&srv->wake_mu);
  s = srv->wake_list;
  srv->wake_list = NULL;
  pthread_mutex_unlock(&srv->wake_mu);
  while (s) {
    struct http_stream *next = s->wake_next;
    pthread_mutex_lock(&s->mu);
    s->wake_next = NULL;
    s->wake_queued = 0;
    stream_resume_now(s);
    pthread_mutex_unlock(&s->mu);
    stream_unref(s);
    s = next;
  }
}

/* Marks s cancelled and takes its on_cancel for the caller to run (outside
 * every lock). Caller holds s->mu. Returns 1 when s was live. */
static int stream_cancel_locked(struct http_stream *s, void (**fn)(void *), void **arg) {
  int was_live = !s->cancelled && !s->ended;
  *fn = NULL;
  *arg = NULL;
  if (!s->ended) {
    *fn = s->on_cancel;
    *arg = s->cancel_arg;
  }
  s->on_cancel = NULL;
  s->cancelled = 1;
  stream_resume_now(s);
  return was_live;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
  struct http_stream *s = cls;
  ssize_t n = 0;
  (void)pos;
  pthread_mutex_lock(&s->mu);
  if (s->cancelled) {
    /* Client gone, too slow, or the server stopping: drop what is queued. */
    n = MHD_CONTENT_READER_END_WITH_ERROR;
  } else if (s->sent < s->queue.len) {
    size_t avail = s->queue.len - s->sent;
    n = (ssize_t)(avail < max ? avail : max);
    memcpy(out, s->queue.data + s->sent, (size_t)n);
    s->sent += (size_t)n;
    s->bytes_out += (size_t)n;
    s->last_progress_ms = clock_mono_ms();
    if (s->sent == s->queue.len) {
      buf_reset(&s->queue);
      s->sent = 0;
    }
  } else if (s->ended) {
    n = MHD_CONTENT_READER_END_OF_STREAM;
  } else {
    s->suspended = 1;
    MHD_suspend_connection(s->conn);
  }
  pthread_mutex_unlock(&s->mu);
  return n;
}

/* The response is destroyed: the connection is closing. Runs on the event
 * thread, before the daemon closes the socket, so the side epoll entry can
 * still be removed by its descriptor. */
static void stream_gone(void *cls) {
  struct http_stream *s = cls;
  struct http_server *srv = s->srv;
  void (*fn)(void *) = NULL;
  void *arg = NULL;
  int fd = -1;
  pthread_mutex_lock(&s->mu);
  if (s->conn) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(s->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci) fd = ci->connect_fd;
  }
  pthread_mutex_unlock(&s->mu);
  pthread_mutex_lock(&srv->mu);
  if (s->prev) s->prev->next = s->next;
  else if (srv->streams == s) srv->streams = s->next;
  if (s->next) s->next->prev = s->prev;
  s->prev = s->next = NULL;
  s->listed = 0;
  if (s->watched) {
    /* A batch of epoll events may still name s: keep it alive until the
     * watcher has seen that batch (it empties the graveyard). */
    if (fd >= 0) epoll_ctl(srv->watch_fd, EPOLL_CTL_DEL, fd, NULL);
    s->watched = 0;
    s->next = srv->graveyard;
    srv->graveyard = s;
    pthread_mutex_lock(&s->mu);
    s->refs++; /* the graveyard's */
    pthread_mutex_unlock(&s->mu);
  }
  pthread_mutex_unlock(&srv->mu);
  pthread_mutex_lock(&s->mu);
  s->conn = NULL;
  s->suspended = 0;
  if (!s->ended && !s->cancelled) {
    stats_add(&stats.v.cancelled_disconnect, 1);
    metrics_add(hm.cancels, 1, "disconnect");
  }
  stream_cancel_locked(s, &fn, &arg);
  pthread_mutex_unlock(&s->mu);
  stats_add(&stats.v.open, -1);
  if (s->slot) http_limiter_release(srv->limiter, s->slot);
  s->slot = NULL;
  if (fn) fn(arg);
  stream_unref(s);
}

struct http_stream *http_reply_stream(struct http_request *r, const char *content_type) {
  return http_reply_stream_ex(r, content_type, NULL);
}

struct http_stream *http_reply_stream_ex(struct http_request *r, const char *content_type,
                                         const char *const *headers) {
  struct http_server *srv = r->srv;
  struct http_stream *s = calloc(1, sizeof *s);
  struct MHD_Response *resp;
  const union MHD_ConnectionInfo *ci;
  if (!s) goto fail;
  pthread_mutex_init(&s->mu, NULL);
  buf_init(&s->queue, STREAM_QUEUE_MAX);
  s->srv = srv;
  s->conn = r->conn;
  s->refs = 3; /* the caller's, the response's and the request's */
  snprintf(s->request_id, sizeof s->request_id, "%s", r->request_id);
  s->last_write_ms = clock_mono_ms();
  s->last_progress_ms = s->last_write_ms;
  resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK_SIZE, stream_read, s,
                                           stream_gone);
  if (!resp) {
    pthread_mutex_destroy(&s->mu);
    free(s);
    goto fail;
  }
  MHD_add_response_header(resp, "Content-Type", content_type);
  if (strncmp(content_type, "text/event-stream", 17) == 0) {
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
  }
  for (size_t i = 0; headers && headers[i] && headers[i + 1]; i += 2)
    MHD_add_response_header(resp, headers[i], headers[i + 1]);
  add_common_headers(r, resp);
  set_response(r, 200, resp);
  if (r->stream) stream_unref(r->stream);
  r->stream = s;
  s->slot = r->slot; /* the client's place in flight lasts as long as the stream */
  r->slot = NULL;
  ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  pthread_mutex_lock(&srv->mu);
  s->serial = ++srv->next_serial;
  s->next = srv->streams;
  if (srv->streams) srv->streams->prev = s;
  srv->streams = s;
  s->listed = 1;
  if (ci && srv->watch_fd >= 0) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLRDHUP | EPOLLONESHOT;
    /* The stream itself, not a serial to look up: with ten thousand open
     * streams a lookup per event was a list walk. The pointer stays valid
     * for the batch that names it (see stream_gone and the graveyard). */
    ev.data.ptr = s;
    if (epoll_ctl(srv->watch_fd, EPOLL_CTL_ADD, ci->connect_fd, &ev) == 0) s->watched = 1;
  }
  pthread_mutex_unlock(&srv->mu);
  stats_add(&stats.v.open, 1);
  stats_add(&stats.v.total, 1);
  return s;
fail:
  reply_problem(r, "internal_error", "out of memory");
  return NULL;
}

void http_stream_set_limits(struct http_stream *s, size_t max_queue_bytes, long stall_ms) {
  pthread_mutex_lock(&s->mu);
  if (max_queue_bytes) s->queue.max = max_queue_bytes;
  s->stall_ms = stall_ms > 0 ? stall_ms : 0;
  pthread_mutex_unlock(&s->mu);
}

ragd_err http_stream_write(struct http_stream *s, const char *p, size_t n) {
  ragd_err rc;
  pthread_mutex_lock(&s->mu);
  if (s->cancelled || s->ended) {
    rc = RAGD_ECANCELLED;
    goto out;
  }
  if (s->sent > 0 && s->sent * 2 >= s->queue.len) {
    /* Drop what was already sent so a steady stream stays small. */
    memmove(s->queue.data, s->queue.data + s->sent, s->queue.len - s->sent);
    s->queue.len -= s->sent;
    s->queue.data[s->queue.len] = '\0';
    s->sent = 0;
  }
  if (s->queue.len == s->sent) s->last_progress_ms = clock_mono_ms();
  rc = buf_append(&s->queue, p, n);
  if (rc) {
    /* The client stopped reading: give up on it rather than grow. (A failed
     * append has freed the queue.) on_cancel runs when the daemon closes
     * the connection, which the wake below makes it do now. */
    s->sent = 0;
    s->cancelled = 1;
    stats_add(&stats.v.cancelled_overflow, 1);
    metrics_add(hm.cancels, 1, "overflow");
  }
  s->last_write_ms = clock_mono_ms();
  stream_wake(s);
out:
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int http_stream_cancelled(struct http_stream *s) {
  int c;
  pthread_mutex_lock(&s->mu);
  c = s->cancelled;
  pthread_mutex_unlock(&s->mu);
  return c;
}

void http_stream_set_owner(struct http_stream *s, void *arg, void (*on_cancel)(void *arg),
                           void (*on_release)(void *arg)) {
  pthread_mutex_lock(&s->mu);
  s->on_cancel = on_cancel;
  s->cancel_arg = arg;
  s->on_release = on_release;
  s->release_arg = arg;
  pthread_mutex_unlock(&s->mu);
}

void http_stream_end(struct http_stream *s) {
  pthread_mutex_lock(&s->mu);
  s->ended = 1;
  s->on_cancel = NULL;
  stream_wake(s);
  pthread_mutex_unlock(&s->mu);
  stream_unref(s);
}

/* ---- the watcher thread --------------------------------------------------------------- */

struct pending_cancel {
  struct http_stream *s;
  void (*fn)(void *);
  void *arg;
};

/* Heartbeats and stall cut-offs. Caller holds srv->mu; cancellations to run
 * outside the lock go into out (at most cap; the rest wait a tick). */
static size_t watch_tick(struct http_server *srv, int64_t now, struct pending_cancel *out,
                         size_t cap) {
  int64_t interval = (int64_t)srv->opts->ping_interval_s * 1000;
  size_t n = 0;
  for (struct http_stream *s = srv->streams; s; s = s->next) {
    pthread_mutex_lock(&s->mu);
    if (!s->ended && !s->cancelled && s->stall_ms && s->queue.len > s->sent &&
        now - s->last_progress_ms >= s->stall_ms && n < cap) {
      struct log_scope scope;
      log_scope_begin(&scope, s->request_id);
      log_info("stream %llu: the client read nothing for %lld ms; cutting it",
               (unsigned long long)s->serial, (long long)(now - s->last_progress_ms));
      log_scope_end(&scope);
      stats_add(&stats.v.cancelled_stall, 1);
      metrics_add(hm.cancels, 1, "stall");
      stream_cancel_locked(s, &out[n].fn, &out[n].arg);
      s->refs++;
      out[n++].s = s;
    } else if (!s->ended && !s->cancelled && now - s->last_write_ms >= interval) {
      if (s->queue.len == s->sent) s->last_progress_ms = now;
      if (http_sse_comment(&s->queue, "ping") != RAGD_OK) s->cancelled = 1;
      s->last_write_ms = now;
      stream_wake(s);
    }
    pthread_mutex_unlock(&s->mu);
  }
  return n;
}

static void run_cancels(struct pending_cancel *pc, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (pc[i].fn) pc[i].fn(pc[i].arg);
    stream_unref(pc[i].s);
  }
}

static void *watcher_main(void *arg) {
  struct http_server *srv = arg;
  struct epoll_event events[WATCH_BATCH];
  struct pending_cancel pc[WATCH_BATCH];
  struct http_request *late[WATCH_BATCH];
  int64_t last_tick = clock_mono_ms();
  int64_t flush_at = 0; /* when the wake list is due; 0: nothing queued */
  for (;;) {
    int64_t now = clock_mono_ms();
    int64_t wait_ms = last_tick + WATCH_TICK_MS - now;
    int got;
    struct http_stream *dead;
    size_t n = 0, n_late = 0;
    if (flush_at && flush_at - now < wait_ms) wait_ms = flush_at - now;
    got = epoll_wait(srv->watch_fd, events, WATCH_BATCH, wait_ms > 0 ? (int)wait_ms : 0);
    now = clock_mono_ms();
    pthread_mutex_lock(&srv->mu);
    if (srv->stopping) {
      pthread_mutex_unlock(&srv->mu);
      break;
    }
    for (int i = 0; i < got; i++) {
      struct http_stream *s = events[i].data.ptr;
      if (!s) { /* the wake list became non-empty: flush it a tick from now */
        uint64_t count;
        if (read(srv->wake_fd, &count, sizeof count) < 0) {
          /* EAGAIN: already read */
        }
        if (!flush_at) flush_at = now + STREAM_FLUSH_MS;
        continue;
      }
      if (!s->listed) continue; /* gone already: held by the graveyard */
      pthread_mutex_lock(&s->mu);
      if (stream_cancel_locked(s, &pc[n].fn, &pc[n].arg)) {
        stats_add(&stats.v.cancelled_disconnect, 1);
        metrics_add(hm.cancels, 1, "disconnect");
      }
      s->refs++;
      pc[n++].s = s;
      pthread_mutex_unlock(&s->mu);
    }
    if (now - last_tick >= WATCH_TICK_MS) {
      n += watch_tick(srv, now, pc + n, WATCH_BATCH - n);
      n_late = watch_timeouts(srv, clock_mono_us(), late, WATCH_BATCH);
      last_tick = now;
    }
    dead = srv->graveyard;
    srv->graveyard = NULL;
    pthread_mutex_unlock(&srv->mu);
    if (flush_at && now >= flush_at) {
      flush_at = 0;
      wake_flush(srv);
    }
    run_cancels(pc, n);
    for (size_t i = 0; i < n_late; i++) {
      /* The owner cannot finish r (and free what arg points to) until
       * timeout_running drops: http_request_finish waits for it. */
      late[i]->on_timeout(late[i]->timeout_arg);
      pthread_mutex_lock(&srv->mu);
      late[i]->timeout_running = 0;
      late[i]->on_timeout = NULL;
      pthread_cond_broadcast(&srv->timeout_done);
      pthread_mutex_unlock(&srv->mu);
    }
    while (dead) {
      struct http_stream *next = dead->next;
      dead->next = NULL;
      stream_unref(dead);
      dead = next;
    }
  }
  return NULL;
}

/* ---- the server ------------------------------------------------------------------- */

/* Counts open connections (event thread). */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code) {
  (void)cls;
  (void)conn;
  (void)socket_ctx;
  metrics_add(hm.connections, code == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1);
}

static void log_mhd(void *cls, const char *fmt, va_list ap) {
  char line[512];
  size_t n;
  (void)cls;
  vsnprintf(line, sizeof line, fmt, ap);
  n = strlen(line);
  while (n && line[n - 1] == '\n') line[--n] = '\0';
  log_warn("http: %s", line);
}

/* Ten thousand open streams need ten thousand descriptors: take the hard
 * limit, which needs no privilege. */
static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) return;
  rl.rlim_cur = rl.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) log_warn("http: cannot raise the open file limit");
}

/* libmicrohttpd keeps a connection's request line, headers and buffers in
 * one pool and answers 431 itself, with its own HTML page, when the headers
 * do not fit. Twice the header limit leaves room for headers up to the limit
 * and somewhat over it, which on_request then refuses with a problem+json
 * 431; only headers near twice the limit or more still meet
 * libmicrohttpd's page. With the default limit the pool is 64 KiB, as it
 * was before ragd counted headers itself. */
static size_t connection_memory(const struct http_server_opts *opts) {
  return 2 * header_limit(opts);
}

ragd_err http_server_start(const struct http_server_opts *opts, struct http_server **out) {
  struct http_server *srv = calloc(1, sizeof *srv);
  struct sockaddr_storage ss;
  struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                   MHD_USE_ERROR_LOG | MHD_USE_ITC; /* ITC: quiesce needs it */
  const union MHD_DaemonInfo *info;
  ragd_err rc;
  if (!srv) return RAGD_ENOMEM;
  srv->opts = opts;
  srv->watch_fd = -1;
  srv->wake_fd = -1;
  pthread_mutex_init(&srv->mu, NULL);
  pthread_mutex_init(&srv->wake_mu, NULL);
  pthread_cond_init(&srv->timeout_done, NULL);
  http_metrics_init();
  raise_fd_limit();
  memset(&ss, 0, sizeof ss);
  if (inet_pton(AF_INET, opts->host, &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)opts->port);
  } else if (inet_pton(AF_INET6, opts->host, &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)opts->port);
    flags |= MHD_USE_IPv6;
  } else if (strcmp(opts->host, "localhost") == 0) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)opts->port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  } else {
    log_error("listen address \"%s\" is not a numeric IPv4/IPv6 address", opts->host);
    rc = RAGD_ECONFIG;
    goto fail;
  }
  srv->watch_fd = epoll_create1(EPOLL_CLOEXEC);
  if (srv->watch_fd < 0) {
    rc = RAGD_EIO;
    goto fail;
  }
  srv->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (srv->wake_fd >= 0) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.ptr = NULL; /* the wake list, not a stream */
    if (epoll_ctl(srv->watch_fd, EPOLL_CTL_ADD, srv->wake_fd, &ev) != 0) {
      close(srv->wake_fd);
      srv->wake_fd = -1; /* every wake resumes at once, as before */
    }
  }
  rc = workq_new(opts->workers, &srv->workers);
  if (!rc) rc = workq_new(1, &srv->quick);
  if (rc) goto fail;
  srv->listen_loopback = http_host_is_loopback(opts->host);
  if (opts->access) {
    rc = http_key_cache_new(opts->access, opts->app, &srv->keys);
    if (!rc) rc = http_limiter_new(LIMITER_ENTRIES_MAX, &srv->limiter);
    if (rc) goto fail;
  }
  srv->daemon = MHD_start_daemon(
      flags, (uint16_t)opts->port, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER,
      log_mhd, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED,
      on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
      MHD_OPTION_CONNECTION_LIMIT, opts->max_connections,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      connection_memory(opts), MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)4096, MHD_OPTION_END);
  if (!srv->daemon) {
    log_error("cannot listen on %s:%d (in use, or not an address of this machine)", opts->host,
              opts->port);
    rc = RAGD_EIO;
    goto fail;
  }
  info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
  srv->port = info ? (int)info->port : opts->port;
  if (pthread_create(&srv->watcher, NULL, watcher_main, srv) == 0) srv->watcher_started = 1;
  *out = srv;
  return RAGD_OK;
fail:
  http_server_stop(srv);
  return rc;
}

int http_server_port(const struct http_server *s) { return s->port; }

void http_server_quiesce(struct http_server *srv) {
  MHD_socket fd;
  if (!srv || !srv->daemon) return;
  fd = MHD_quiesce_daemon(srv->daemon);
  if (fd != MHD_INVALID_SOCKET) close(fd);
}

void http_server_stop(struct http_server *srv) {
  struct http_stream *dead;
  int wake_fd;
  if (!srv) return;
  pthread_mutex_lock(&srv->mu);
  srv->stopping = 1;
  pthread_mutex_unlock(&srv->mu);
  if (srv->watcher_started) pthread_join(srv->watcher, NULL);
  /* From now on wakes resume at once; then the watcher's last batch. */
  pthread_mutex_lock(&srv->wake_mu);
  wake_fd = srv->wake_fd;
  srv->wake_fd = -1;
  pthread_mutex_unlock(&srv->wake_mu);
  wake_flush(srv);
  if (wake_fd >= 0) close(wake_fd);
  /* Open streams end now: their clients see the connection close. */
  pthread_mutex_lock(&srv->mu);
  for (struct http_stream *s = srv->streams; s; s = s->next) {
    pthread_mutex_lock(&s->mu);
    s->cancelled = 1;
    stream_resume_now(s);
    pthread_mutex_unlock(&s->mu);
  }
  pthread_mutex_unlock(&srv->mu);
  /* Workers finish their handlers first: they resume suspended connections,
   * which the daemon then closes. Deferred replies come from answers, which
   * all end once the engine is shut down (the caller's job): wait for them,
   * as the workers once waited for those answers themselves. */
  workq_free(srv->workers);
  srv->workers = NULL;
  workq_free(srv->quick);
  srv->quick = NULL;
  for (;;) {
    size_t left;
    struct timespec ts = {0, 10 * 1000000L};
    pthread_mutex_lock(&srv->mu);
    left = srv->deferred;
    pthread_mutex_unlock(&srv->mu);
    if (left == 0) break;
    nanosleep(&ts, NULL);
  }
  if (srv->daemon) MHD_stop_daemon(srv->daemon);
  /* The watcher is gone: release what it would have. */
  dead = srv->graveyard;
  srv->graveyard = NULL;
  while (dead) {
    struct http_stream *next = dead->next;
    dead->next = NULL;
    stream_unref(dead);
    dead = next;
  }
  if (srv->watch_fd >= 0) close(srv->watch_fd);
  http_key_cache_free(srv->keys);
  http_limiter_free(srv->limiter);
  pthread_mutex_destroy(&srv->mu);
  pthread_mutex_destroy(&srv->wake_mu);
  pthread_cond_destroy(&srv->timeout_done);
  free(srv);
}
