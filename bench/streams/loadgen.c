/* loadgen.c - holds N concurrent answer streams against ragd and measures
 * them: one process, one epoll loop, non-blocking sockets, no thread per
 * connection.
 *
 *   loadgen --port P [--host 127.0.0.1] [--streams N] [--rate R]
 *           [--mode post|get] [--message TEXT] [--upstream-delay-ms D]
 *           [--timeout-s T] [--pid PID]
 *
 * Each stream is POST /v1/chat {"message": TEXT, "stream": true} (or GET
 * /v1/chat/stream?message=TEXT with --mode get), read to its end: HTTP/1.1,
 * chunked or close-delimited, decoded, then parsed as an event stream. New
 * connections start at R per second (0: all at once). A stream counts as
 * good when its status is 200, it ends with a `done` event, and the response
 * ends cleanly; anything else is counted by kind:
 *   connect        connect() failed or the connection was refused
 *   reset          the connection was reset or failed mid-stream
 *   status_NNN     the response status was not 200
 *   error_event    the stream's last event was `error` (its code is listed)
 *   eof_before_done the response ended without a done or error event
 *   timeout        the stream was still open after T seconds (default 300)
 *   degraded       it ended with done, but after a `notice`: the answer did
 *                  not come (only) from the upstream (e.g. ragd could not
 *                  reach it and answered from the passages)
 *
 * Measured per stream, from the moment its connect() starts: the first
 * event of any kind (meta), and the first text_delta, from which
 * --upstream-delay-ms (the fake upstream's own wait before its first token)
 * is subtracted. With --pid, VmRSS of that process is sampled every 100 ms
 * and the highest sample taken while every stream was open is reported.
 *
 * Output: a human summary on stderr and one line on stdout:
 *   RESULT streams=N ok=.. errors=.. events=.. ttfe_p50_ms=.. ttfe_p99_ms=..
 *          ttft_p50_ms=.. ttft_p99_ms=.. peak_open=.. rss_all_open_kb=.. wall_s=..
 * (rss_all_open_kb is 0 without --pid or when the streams never were all
 * open at once). Exit status 0 when every stream was good, 1 otherwise. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES (256 * 1024)
#define HEAD_MAX_BYTES (16 * 1024)
#define ERROR_KINDS 9

enum kind { K_OK = 0, K_CONNECT, K_RESET, K_STATUS, K_ERROR_EVENT, K_EOF, K_TIMEOUT, K_PENDING, K_DEGRADED };
static const char *const kind_names[ERROR_KINDS] = {
    "ok", "connect", "reset", "status", "error_event", "eof_before_done", "timeout", "pending",
    "degraded"};

enum phase { P_CONNECTING = 0, P_SENDING, P_HEAD, P_BODY, P_DONE };
enum chunk_state { CH_SIZE = 0, CH_DATA, CH_DATA_CRLF, CH_END };

struct stream {
  int fd;
  enum phase phase;
  size_t sent;
  char head[HEAD_MAX_BYTES];
  size_t head_len;
  int status;
  int chunked;
  enum chunk_state ch;
  size_t ch_left;
  char ch_line[32];
  size_t ch_line_len;
  char *line; /* the event-stream line being assembled */
  size_t line_len;
  char event[32];
  int has_data;
  int saw_done, saw_error, saw_notice;
  char error_code[48];
  int64_t t_start_us, t_first_event_us, t_first_delta_us;
  enum kind result;
};

static struct {
  const char *host;
  int port;
  int streams;
  double rate;
  int get_mode;
  const char *message;
  long upstream_delay_ms;
  long timeout_s;
  int pid;
  int epfd;
  char request[4096];
  size_t request_len;
  long events;
  int open_now, peak_open, finished;
  long rss_all_open_kb;
  char error_codes[512];
} lg = {.host = "127.0.0.1", .streams = 100, .message = "How do I get a refund?",
        .timeout_s = 300};

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void note_error_code(const char *code) {
  size_t have = strlen(lg.error_codes);
  if (strstr(lg.error_codes, code)) return;
  if (have + strlen(code) + 2 < sizeof lg.error_codes)
    snprintf(lg.error_codes + have, sizeof lg.error_codes - have, "%s%s", have ? "," : "", code);
}

static void stream_finish(struct stream *s, enum kind k) {
  if (s->phase == P_DONE) return;
  if (s->phase >= P_HEAD) lg.open_now--;
  s->phase = P_DONE;
  s->result = k;
  if (k == K_ERROR_EVENT) note_error_code(s->error_code[0] ? s->error_code : "?");
  if (s->fd >= 0) {
    epoll_ctl(lg.epfd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    s->fd = -1;
  }
  free(s->line);
  s->line = NULL;
  lg.finished++;
}

/* One complete event-stream line (without its line end). */
static void sse_line(struct stream *s, const char *p, size_t n) {
  if (n == 0) {
    if (s->has_data) {
      int64_t t = now_us();
      lg.events++;
      if (!s->t_first_event_us) s->t_first_event_us = t;
      if (!s->t_first_delta_us && strcmp(s->event, "text_delta") == 0) s->t_first_delta_us = t;
      if (strcmp(s->event, "done") == 0) s->saw_done = 1;
      if (strcmp(s->event, "error") == 0) s->saw_error = 1;
      if (strcmp(s->event, "notice") == 0) s->saw_notice = 1;
    }
    s->event[0] = '\0';
    s->has_data = 0;
    return;
  }
  if (p[0] == ':') return; /* a comment: ping */
  if (n > 6 && memcmp(p, "event:", 6) == 0) {
    size_t off = p[6] == ' ' ? 7 : 6;
    size_t len = n - off < sizeof s->event - 1 ? n - off : sizeof s->event - 1;
    memcpy(s->event, p + off, len);
    s->event[len] = '\0';
  } else if (n >= 5 && memcmp(p, "data:", 5) == 0) {
    s->has_data = 1;
    if (strcmp(s->event, "error") == 0) {
      const char *c = memmem(p, n, "\"code\":\"", 8);
      if (c) {
        size_t i = 0;
        c += 8;
        while (c < p + n && *c != '"' && i + 1 < sizeof s->error_code) s->error_code[i++] = *c++;
        s->error_code[i] = '\0';
      }
    }
  }
}

static int sse_feed(struct stream *s, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char ch = p[i];
    if (ch == '\n') {
      size_t len = s->line_len;
      if (len && s->line[len - 1] == '\r') len--;
      sse_line(s, s->line, len);
      s->line_len = 0;
      continue;
    }
    if (!s->line) {
      s->line = malloc(LINE_MAX_BYTES);
      if (!s->line) return -1;
    }
    if (s->line_len >= LINE_MAX_BYTES) return -1;
    s->line[s->line_len++] = ch;
  }
  return 0;
}

/* Decodes Transfer-Encoding: chunked. Returns 1 at the last chunk, -1 on a
 * malformed body. */
static int chunked_feed(struct stream *s, const char *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (s->ch == CH_SIZE) {
      char ch = p[i++];
      if (ch == '\n') {
        s->ch_line[s->ch_line_len] = '\0';
        s->ch_left = strtoul(s->ch_line, NULL, 16);
        s->ch_line_len = 0;
        if (s->ch_left == 0) {
          s->ch = CH_END;
          return 1;
        }
        s->ch = CH_DATA;
      } else if (ch != '\r') {
        if (s->ch_line_len + 1 >= sizeof s->ch_line) return -1;
        s->ch_line[s->ch_line_len++] = ch;
      }
    } else if (s->ch == CH_DATA) {
      size_t take = n - i < s->ch_left ? n - i : s->ch_left;
      if (sse_feed(s, p + i, take) != 0) return -1;
      i += take;
      s->ch_left -= take;
      if (s->ch_left == 0) s->ch = CH_DATA_CRLF;
    } else if (s->ch == CH_DATA_CRLF) {
      if (p[i++] == '\n') s->ch = CH_SIZE;
    } else {
      return 1;
    }
  }
  return 0;
}

static enum kind end_kind(const struct stream *s) {
  if (s->saw_error) return K_ERROR_EVENT;
  if (s->saw_done) return s->saw_notice ? K_DEGRADED : K_OK;
  return K_EOF;
}

static void on_body(struct stream *s, const char *p, size_t n) {
  int r;
  if (!s->chunked) {
    if (sse_feed(s, p, n) != 0) stream_finish(s, K_RESET);
    return;
  }
  r = chunked_feed(s, p, n);
  if (r < 0) stream_finish(s, K_RESET);
  else if (r > 0) stream_finish(s, end_kind(s));
}

static void on_head_bytes(struct stream *s, const char *p, size_t n) {
  char *end;
  size_t room = sizeof s->head - 1 - s->head_len;
  size_t take = n < room ? n : room;
  size_t head_len;
  memcpy(s->head + s->head_len, p, take);
  s->head_len += take;
  s->head[s->head_len] = '\0';
  end = strstr(s->head, "\r\n\r\n");
  if (!end) {
    if (s->head_len >= sizeof s->head - 1) stream_finish(s, K_RESET);
    return;
  }
  head_len = (size_t)(end - s->head) + 4;
  s->status = atoi(s->head + 9);
  if (s->status != 200) {
    stream_finish(s, K_STATUS);
    return;
  }
  for (const char *q = strstr(s->head, "\r\n"); q && q < end; q = strstr(q + 2, "\r\n")) {
    const char *eol = strstr(q + 2, "\r\n");
    if (strncasecmp(q + 2, "transfer-encoding:", 18) == 0 && eol &&
        memmem(q + 2, (size_t)(eol - q - 2), "chunked", 7))
      s->chunked = 1;
  }
  s->phase = P_BODY;
  lg.open_now++;
  if (lg.open_now > lg.peak_open) lg.peak_open = lg.open_now;
  /* Bytes after the head are body: those copied into head, then the rest. */
  if (s->head_len > head_len) on_body(s, s->head + head_len, s->head_len - head_len);
  if (take < n && s->phase == P_BODY) on_body(s, p + take, n - take);
}

static void on_readable(struct stream *s) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(s->fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0) {
      stream_finish(s, s->phase == P_CONNECTING ? K_CONNECT : K_RESET);
      return;
    }
    if (n == 0) {
      if (s->phase == P_BODY && !s->chunked) stream_finish(s, end_kind(s));
      else if (s->phase == P_BODY) stream_finish(s, s->saw_error ? K_ERROR_EVENT : K_EOF);
      else stream_finish(s, K_RESET);
      return;
    }
    if (s->phase == P_HEAD) on_head_bytes(s, buf, (size_t)n);
    else if (s->phase == P_BODY) on_body(s, buf, (size_t)n);
    if (s->phase == P_DONE) return;
  }
}

static void on_writable(struct stream *s) {
  if (s->phase == P_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      stream_finish(s, K_CONNECT);
      return;
    }
    s->phase = P_SENDING;
  }
  while (s->phase == P_SENDING && s->sent < lg.request_len) {
    ssize_t n = write(s->fd, lg.request + s->sent, lg.request_len - s->sent);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0) {
      stream_finish(s, K_RESET);
      return;
    }
    s->sent += (size_t)n;
  }
  if (s->phase == P_SENDING) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = s};
    epoll_ctl(lg.epfd, EPOLL_CTL_MOD, s->fd, &ev);
    s->phase = P_HEAD;
  }
}

static void stream_start(struct stream *s, const struct sockaddr_in *sa) {
  struct epoll_event ev;
  int one = 1;
  s->t_start_us = now_us();
  s->result = K_PENDING;
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) {
    s->phase = P_CONNECTING;
    stream_finish(s, K_CONNECT);
    return;
  }
  setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  s->phase = P_CONNECTING;
  if (connect(s->fd, (const struct sockaddr *)sa, sizeof *sa) != 0 && errno != EINPROGRESS) {
    stream_finish(s, K_CONNECT);
    return;
  }
  ev.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP;
  ev.data.ptr = s;
  if (epoll_ctl(lg.epfd, EPOLL_CTL_ADD, s->fd, &ev) != 0) stream_finish(s, K_CONNECT);
}

static long read_rss_kb(int pid) {
  char path[64], line[256];
  long kb = 0;
  FILE *f;
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  f = fopen(path, "r");
  if (!f) return 0;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
  fclose(f);
  return kb;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* The q-quantile (nearest rank) of v[0..n), in ms; v is sorted in place. */
static double quantile_ms(int64_t *v, size_t n, double q) {
  size_t rank;
  if (n == 0) return 0;
  qsort(v, n, sizeof *v, cmp_i64);
  rank = (size_t)(q * (double)n + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return (double)v[rank - 1] / 1000.0;
}

static void url_encode(const char *in, char *out, size_t cap) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < cap; p++) {
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
        *p == '-' || *p == '_' || *p == '.') {
      out[o++] = (char)*p;
    } else {
      out[o++] = '%';
      out[o++] = hex[*p >> 4];
      out[o++] = hex[*p & 15];
    }
  }
  out[o] = '\0';
}

static int build_request(void) {
  int n;
  if (lg.get_mode) {
    char q[1024];
    url_encode(lg.message, q, sizeof q);
    n = snprintf(lg.request, sizeof lg.request,
                 "GET /v1/chat/stream?message=%s HTTP/1.1\r\nHost: %s:%d\r\n"
                 "Accept: text/event-stream\r\nConnection: close\r\n\r\n",
                 q, lg.host, lg.port);
  } else {
    char body[1024];
    int b = snprintf(body, sizeof body, "{\"message\":\"%s\",\"stream\":true}", lg.message);
    if (b < 0 || (size_t)b >= sizeof body) return -1;
    n = snprintf(lg.request, sizeof lg.request,
                 "POST /v1/chat HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                 "Accept: text/event-stream\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
                 lg.host, lg.port, b, body);
  }
  if (n < 0 || (size_t)n >= sizeof lg.request) return -1;
  lg.request_len = (size_t)n;
  return 0;
}

static int parse_args(int argc, char **argv) {
  for (int i = 1; i < argc; i += 2) {
    const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) return -1;
    if (strcmp(k, "--host") == 0) lg.host = v;
    else if (strcmp(k, "--port") == 0) lg.port = atoi(v);
    else if (strcmp(k, "--streams") == 0) lg.streams = atoi(v);
    else if (strcmp(k, "--rate") == 0) lg.rate = atof(v);
    else if (strcmp(k, "--mode") == 0) lg.get_mode = strcmp(v, "get") == 0;
    else if (strcmp(k, "--message") == 0) lg.message = v;
    else if (strcmp(k, "--upstream-delay-ms") == 0) lg.upstream_delay_ms = atol(v);
    else if (strcmp(k, "--timeout-s") == 0) lg.timeout_s = atol(v);
    else if (strcmp(k, "--pid") == 0) lg.pid = atoi(v);
    else return -1;
  }
  if (lg.port <= 0 || lg.streams <= 0 || strchr(lg.message, '"') || strchr(lg.message, '\\'))
    return -1;
  return 0;
}

int main(int argc, char **argv) {
  struct sockaddr_in sa;
  struct stream *st;
  struct epoll_event events[1024];
  struct rlimit rl;
  int started = 0;
  int64_t t0, last_sample = 0, last_scan = 0;
  int64_t *ttfe, *ttft;
  size_t n_ttfe = 0, n_ttft = 0;
  long kinds[ERROR_KINDS] = {0};
  int errors = 0;
  double wall_s;

  if (parse_args(argc, argv) != 0 || build_request() != 0) {
    fprintf(stderr,
            "usage: loadgen --port P [--host H] [--streams N] [--rate R] [--mode post|get]\n"
            "               [--message TEXT] [--upstream-delay-ms D] [--timeout-s T] [--pid PID]\n");
    return 2;
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)lg.streams + 32)
    fprintf(stderr, "loadgen: warning: the open file limit (%lu) is below %d streams\n",
            (unsigned long)rl.rlim_cur, lg.streams);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)lg.port);
  if (inet_pton(AF_INET, lg.host, &sa.sin_addr) != 1) {
    fprintf(stderr, "loadgen: --host must be a numeric IPv4 address\n");
    return 2;
  }
  st = calloc((size_t)lg.streams, sizeof *st);
  ttfe = calloc((size_t)lg.streams, sizeof *ttfe);
  ttft = calloc((size_t)lg.streams, sizeof *ttft);
  lg.epfd = epoll_create1(EPOLL_CLOEXEC);
  if (!st || !ttfe || !ttft || lg.epfd < 0) {
    fprintf(stderr, "loadgen: out of memory\n");
    return 2;
  }
  for (int i = 0; i < lg.streams; i++) st[i].fd = -1;
  t0 = now_us();
  while (lg.finished < lg.streams) {
    int64_t now = now_us();
    int due = lg.rate > 0 ? (int)((double)(now - t0) / 1e6 * lg.rate) + 1 : lg.streams;
    int got;
    if (due > lg.streams) due = lg.streams;
    while (started < due) stream_start(&st[started++], &sa);
    got = epoll_wait(lg.epfd, events, 1024, started < lg.streams ? 2 : 50);
    for (int i = 0; i < got; i++) {
      struct stream *s = events[i].data.ptr;
      if (s->phase == P_DONE) continue;
      if (events[i].events & EPOLLOUT) on_writable(s);
      if (s->phase != P_DONE && s->phase != P_CONNECTING &&
          (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        on_readable(s);
      else if (s->phase == P_CONNECTING && (events[i].events & (EPOLLHUP | EPOLLERR)))
        stream_finish(s, K_CONNECT);
    }
    now = now_us();
    if (lg.pid && now - last_sample >= 100000) {
      /* Every stream has its headers and none has ended: all are open. */
      if (lg.open_now == lg.streams) {
        long kb = read_rss_kb(lg.pid);
        if (kb > lg.rss_all_open_kb) lg.rss_all_open_kb = kb;
      }
      last_sample = now;
    }
    if (now - last_scan >= 500000) {
      for (int i = 0; i < started; i++)
        if (st[i].phase != P_DONE && now - st[i].t_start_us > lg.timeout_s * 1000000)
          stream_finish(&st[i], K_TIMEOUT);
      last_scan = now;
    }
  }
  wall_s = (double)(now_us() - t0) / 1e6;
  for (int i = 0; i < lg.streams; i++) {
    struct stream *s = &st[i];
    kinds[s->result]++;
    if (s->result != K_OK) errors++;
    if (s->t_first_event_us) ttfe[n_ttfe++] = s->t_first_event_us - s->t_start_us;
    if (s->t_first_delta_us)
      ttft[n_ttft++] = s->t_first_delta_us - s->t_start_us - lg.upstream_delay_ms * 1000;
  }
  fprintf(stderr, "loadgen: %d streams, %d ok, %d errors in %.1f s; %ld events; peak %d open\n",
          lg.streams, lg.streams - errors, errors, wall_s, lg.events, lg.peak_open);
  for (int k = 1; k < ERROR_KINDS; k++)
    if (kinds[k]) fprintf(stderr, "loadgen:   %-16s %ld\n", kind_names[k], kinds[k]);
  if (lg.error_codes[0]) fprintf(stderr, "loadgen:   error event codes: %s\n", lg.error_codes);
  printf("RESULT streams=%d ok=%d errors=%d", lg.streams, lg.streams - errors, errors);
  for (int k = 1; k < ERROR_KINDS; k++)
    if (kinds[k]) printf(" err_%s=%ld", kind_names[k], kinds[k]);
  printf(" events=%ld ttfe_p50_ms=%.1f ttfe_p99_ms=%.1f ttft_p50_ms=%.1f ttft_p99_ms=%.1f"
         " peak_open=%d rss_all_open_kb=%ld wall_s=%.1f\n",
         lg.events, quantile_ms(ttfe, n_ttfe, 0.50), quantile_ms(ttfe, n_ttfe, 0.99),
         quantile_ms(ttft, n_ttft, 0.50), quantile_ms(ttft, n_ttft, 0.99), lg.peak_open,
         lg.rss_all_open_kb, wall_s);
  free(ttfe);
  free(ttft);
  free(st);
  close(lg.epfd);
  return errors ? 1 : 0;
}
