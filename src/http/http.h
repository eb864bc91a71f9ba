/* http.h - ragd's HTTP front: a libmicrohttpd server on one epoll thread, a
 * route table, request limits, problem+json errors and Server-Sent Events.
 *
 * Threads: the event thread (libmicrohttpd) reads requests and writes
 * responses and never blocks. Every routed request runs its handler on a
 * worker thread; the handler answers with exactly one http_reply_* call. A
 * streamed answer is then written with http_stream_write from any thread.
 *
 * Only this module includes microhttpd.h. */
#ifndef RAGD_HTTP_H
#define RAGD_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/err.h"
#include "util/json.h"

struct http_server;
struct http_request;
struct http_stream;

/* Runs on a worker thread. Must call exactly one http_reply_* before it
 * returns. app is http_server_opts.app. */
typedef void (*http_handler_fn)(struct http_request *req, void *app);

/* HTTP_BODY_OPENAI_JSON: as HTTP_BODY_JSON, and every error of the route,
 * the server's own body checks included, is OpenAI's error object
 * {"error":{"message","type","param","code"}} instead of problem+json, since
 * OpenAI clients parse only that. */
enum http_body { HTTP_BODY_NONE = 0, HTTP_BODY_JSON = 1, HTTP_BODY_OPENAI_JSON = 2 };

/* Who may call a route when API keys exist (see http_access_opts). The zero
 * value is QUERY, so a route added without a word about access is closed
 * rather than open. An admin key may call QUERY routes too. */
enum http_access {
  HTTP_ACCESS_QUERY = 0, /* a query or admin key */
  HTTP_ACCESS_ADMIN = 1, /* an admin key */
  HTTP_ACCESS_OPEN = 2,  /* anyone: health, the chat page, the API description */
  HTTP_ACCESS_METRICS = 3 /* OPEN, or ADMIN when http_access_opts.metrics_admin */
};

/* Which worker pool runs a route's handler. The zero value is WORK: the
 * pool that runs retrieval and everything else, first come first served.
 * QUICK routes (health, metrics, the static chat page) do no retrieval and
 * run on a separate one-thread pool, so that a backlog of questions waiting
 * for the workers never delays a liveness probe or a metrics scrape. A QUICK
 * handler must stay short: it holds up every other QUICK request. */
enum http_lane { HTTP_LANE_WORK = 0, HTTP_LANE_QUICK = 1 };

struct http_route {
  const char *method; /* "GET", "POST", "DELETE" */
  /* An exact path, or a prefix ending in an asterisk that matches any
   * non-empty rest (the documents route: "/v1/documents/" plus the asterisk);
   * the rest is http_request_path_param. */
  const char *path;
  enum http_body body; /* HTTP_BODY_JSON (and _OPENAI_JSON): Content-Type must
                          be application/json, the body valid UTF-8 and a
                          JSON object, checked before the handler runs */
  http_handler_fn handler;
  enum http_access access;
  enum http_lane lane;
};

/* What the access check knows of one API key. */
struct http_key {
  char id[72]; /* the key's public id (never the key) */
  int admin;   /* admin scope; otherwise query */
  long rpm;     /* requests per minute; 0: http_access_opts.rpm_key */
  long streams; /* requests in flight, streams included; 0: .streams_key */
};

/* Looks up the active key whose SHA-256 is hash_hex (64 lower-case hex
 * digits): RAGD_OK and *out, RAGD_ENOTFOUND, or another error when the
 * store failed. Runs on worker threads, at most once per key per cache_ms. */
typedef ragd_err (*http_key_lookup_fn)(void *app, const char *hash_hex, struct http_key *out);
/* The number of active keys; same threads and caching. */
typedef ragd_err (*http_key_count_fn)(void *app, size_t *active);
/* Shared requests-per-minute limits (several servers on one database):
 * counts one request of name against rpm; *admitted 0 with *retry_after_ms
 * when it does not fit. An error lets the server's own bucket decide.
 * Worker threads, once per admitted request. */
typedef ragd_err (*http_rate_take_fn)(void *app, const char *name, long rpm, int *admitted,
                                      int64_t *retry_after_ms);

/* Access control and limits. With no active key the server is open, but
 * only when it listens on a loopback address or allow_open is set;
 * otherwise every non-OPEN route answers 401. With keys, non-OPEN routes
 * need "Authorization: Bearer KEY" (401 unauthorized without a valid key,
 * 403 forbidden for a query key on an admin route). Admitted requests take
 * a token from their key's bucket (keyless requests: their client
 * address's, except loopback peers, which may be a local proxy speaking for
 * everyone) and a place among its requests in flight; 429 rate_limited with
 * Retry-After when there is none. Zero values: no limit. */
struct http_access_opts {
  http_key_lookup_fn key_lookup; /* NULL: no keys exist, ever */
  http_key_count_fn key_count;
  http_rate_take_fn rate_take; /* NULL: requests per minute counted in this
                                  process only (requests in flight always are) */
  long cache_ms;     /* key cache lifetime; 0: 500 ms */
  int allow_open;    /* serve without keys on a non-loopback address */
  int metrics_admin; /* HTTP_ACCESS_METRICS routes need an admin key */
  long rpm_key;      /* default requests per minute of a key */
  long rpm_address;  /* requests per minute of a client address, without a key */
  long streams_key;  /* default requests in flight (streams until they end) of a
                        key, and of a client address without a key */
  const char *cors_origins; /* comma-separated allowed origins, "*" for any;
                               NULL or "": no CORS headers at all */
};

struct http_server_opts {
  const char *host; /* numeric IPv4/IPv6 address to bind */
  int port;         /* 0: any free port (see http_server_port) */
  size_t max_body_bytes;
  unsigned max_connections;
  unsigned ping_interval_s; /* SSE heartbeat comment while a stream is idle */
  size_t workers;
  size_t max_header_bytes;    /* request line and headers: more gets a
                                 problem+json 431 headers_too_large; a
                                 connection's memory is twice this (far
                                 larger headers get libmicrohttpd's own 431
                                 page); 0: 32 KiB */
  unsigned request_timeout_s; /* time limit of deferred requests (see
                                 http_request_on_timeout); 0: none */
  const struct http_access_opts *access; /* NULL: every route open, no limits */
  const struct http_route *routes;
  size_t route_count;
  void *app;
};

/* Nonzero when host (a numeric IPv4/IPv6 address or "localhost") is a
 * loopback address: 127.0.0.0/8, ::1, ::ffff:127.x.y.z. */
int http_host_is_loopback(const char *host);

/* Binds and starts serving. opts and routes must outlive the server. */
ragd_err http_server_start(const struct http_server_opts *opts, struct http_server **out /* OUT */);
int http_server_port(const struct http_server *s);
/* Stops accepting new connections (the listening socket is closed); open
 * connections and streams go on. For a graceful shutdown: quiesce, let
 * streams finish, then http_server_stop. */
void http_server_quiesce(struct http_server *s);
/* Stops accepting, ends open streams, joins every thread. Accepts NULL. */
void http_server_stop(struct http_server *s);

/* ---- request accessors: valid on the handler's thread until its reply ---- */

const char *http_request_method(const struct http_request *r);
const char *http_request_path(const struct http_request *r);
const char *http_request_path_param(const struct http_request *r); /* "" when none */
/* NULL when absent. */
const char *http_request_header(const struct http_request *r, const char *name);
const char *http_request_query(const struct http_request *r, const char *name);
/* The parsed JSON body of an HTTP_BODY_JSON route (borrowed), else NULL. */
json_t *http_request_json(const struct http_request *r);
/* The request id (incoming X-Request-ID when sane, else generated). */
const char *http_request_id(const struct http_request *r);
/* The public id of the API key the request was admitted with, or NULL
 * (no keys exist; an OPEN route). */
const char *http_request_key_id(const struct http_request *r);
/* Nonzero when the client's address is loopback (127.0.0.0/8, ::1). */
int http_request_peer_loopback(const struct http_request *r);

/* ---- the access-log line ----
 *
 * When a request ends (its response sent, or its connection gone) one info
 * line is logged under its request id: "METHOD ROUTE STATUS" with the fields
 * method, route (the route's pattern), status, duration_ms, bytes (of the
 * body; a stream's whole life), "ended" when it did not end normally, and
 * the notes its handler set, e.g. a chat's provider, model and tokens.
 *
 * Notes outlive the handler: a streamed answer learns its token counts on
 * another thread long after the handler returned. http_request_notes hands
 * out a reference (call it on the handler's thread, or before
 * http_request_finish of a deferred request; NULL when the request has
 * none); http_notes_set and _set_int may then be called from any thread,
 * copy key and value and replace an earlier value of the key; a note set
 * after the line was written is dropped. http_notes_release drops the
 * reference (any thread). All three accept a NULL n. Note values are logged
 * as they are: program-made values only, never user text. */
struct http_notes;
struct http_notes *http_request_notes(struct http_request *r);
void http_notes_set(struct http_notes *n, const char *key, const char *value);
void http_notes_set_int(struct http_notes *n, const char *key, long long value);
void http_notes_release(struct http_notes *n);

/* ---- replies: exactly one per request, from the handler's thread ---- */

/* Copies body. */
void http_reply(struct http_request *r, int status, const char *content_type, const char *body,
                size_t len);
/* Takes the reference to obj. */
void http_reply_json(struct http_request *r, int status, json_t *obj);
/* application/problem+json with the status the error table gives code (see
 * docs/errors.md); detail is formatted printf-style. */
void http_reply_problem(struct http_request *r, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Starts a streamed 200 response (chunked). text/event-stream gets the SSE
 * headers (no-cache, X-Accel-Buffering: no). The caller holds one reference
 * and must end it with http_stream_end. NULL on allocation failure (a 500 has
 * then been queued). */
struct http_stream *http_reply_stream(struct http_request *r, const char *content_type);

/* http_reply_stream with extra response headers: a NULL-terminated list of
 * name, value pairs (copied), e.g. {"x-vercel-ai-ui-message-stream", "v1",
 * NULL}. */
struct http_stream *http_reply_stream_ex(struct http_request *r, const char *content_type,
                                         const char *const *headers);

/* Replying later, from another thread, without holding a worker: the
 * handler calls http_request_defer before it hands r to whatever will reply,
 * and may return at once. Exactly one reply (http_reply*, not a stream) must
 * then be made, from any one thread, followed by http_request_finish(r);
 * after that r is no longer the caller's. Until then the connection stays
 * suspended and r and its accessors stay valid. http_server_stop waits for
 * every deferred request to be finished. */
void http_request_defer(struct http_request *r);
void http_request_finish(struct http_request *r);
/* For a deferred request: on_timeout(arg) runs at most once, on the watcher
 * thread, when the request's time limit (http_server_opts.request_timeout_s,
 * counted from the request line) passes before http_request_finish. The
 * owner should then stop its work and reply (request_timeout) as usual.
 * http_request_finish waits for a running on_timeout to return, so arg need
 * only stay alive until the owner has called it; on_timeout must not call
 * http_request_finish itself. No effect without a time limit. Call after
 * http_request_defer, from the thread that deferred. */
void http_request_on_timeout(struct http_request *r, void (*on_timeout)(void *arg), void *arg);

/* The HTTP status of a problem code; 500 for unknown codes. */
int http_problem_status(const char *code);
/* The title of a problem code. */
const char *http_problem_title(const char *code);
/* The OpenAI error "type" for an HTTP status: "invalid_request_error" for
 * 4xx, "server_error" otherwise. */
const char *http_openai_error_type(int status);

/* ---- streams ---- */

/* Queues bytes for the client; any thread. RAGD_ECANCELLED once the client has
 * gone, RAGD_ETOOBIG when the client stopped reading and the queue is full (the
 * stream is then cancelled; its on_cancel runs on the event thread once the
 * connection closes, never on the caller's thread). */
ragd_err http_stream_write(struct http_stream *s, const char *p, size_t n);
/* Nonzero once the client has gone away. Any thread. */
int http_stream_cancelled(struct http_stream *s);
/* Ties an owner object to the stream. on_cancel(arg) runs at most once when
 * the stream is cut before http_stream_end: the client hung up (noticed within
 * milliseconds even while the stream waits, by the watcher thread), stopped
 * reading for longer than the stall limit, or let the queue fill. It runs on
 * the event thread, the watcher thread or a writer's thread, never while an
 * http lock is held, and may race with a concurrent http_stream_end; arg is
 * still alive then. on_release(arg) runs once when the stream is freed: after
 * http_stream_end and after the connection is done with it (event or watcher
 * thread). Call before the handler returns. Either callback may be NULL. */
void http_stream_set_owner(struct http_stream *s, void *arg, void (*on_cancel)(void *arg),
                           void (*on_release)(void *arg));
/* Backpressure limits for one stream: at most max_queue_bytes unsent (0: the
 * default, 4 MiB) and, when stall_ms > 0, a stream with unsent bytes whose
 * client takes none for stall_ms is cut (on_cancel runs). Any thread. */
void http_stream_set_limits(struct http_stream *s, size_t max_queue_bytes, long stall_ms);

/* Counters since start-up, for metrics. */
struct http_stream_stats {
  size_t open;                 /* streamed responses now open */
  size_t total;                /* streamed responses started */
  size_t cancelled_disconnect; /* cut because the client hung up */
  size_t cancelled_stall;      /* cut because the client stopped reading */
  size_t cancelled_overflow;   /* cut because the queue reached its limit */
};
void http_stream_stats(struct http_stream_stats *out /* OUT */);

/* No more writes: the response ends once the queue drains. Drops the caller's
 * reference; s must not be used afterwards. */
void http_stream_end(struct http_stream *s);

/* ---- Server-Sent Events encoding ---- */

/* Appends one event: "event: NAME\nid: ID\ndata: DATA\n\n". A data payload
 * holding line breaks is split over several data: lines, so any payload
 * survives; ragd's JSON payloads are single lines. event and id may be NULL. */
ragd_err http_sse_event(struct buf *out, const char *event, const char *id, const char *data,
                        size_t len);
/* Appends ": TEXT\n\n" (a comment; clients ignore it). */
ragd_err http_sse_comment(struct buf *out, const char *text);

#endif
