/* fake_upstream.c - a dripping OpenAI-compatible upstream for the streaming
 * benchmark: one process, one epoll loop, non-blocking sockets, so it holds
 * ten thousand open answers without a thread (or a JavaScript object graph)
 * per connection.
 *
 *   fake_upstream [--port N] [--tokens N] [--delay-ms N]
 *
 * POST .../chat/completions with "stream": true gets what OpenAI sends: a
 * role-only chat.completion.chunk, --tokens content chunks (" tokN"), a
 * final chunk with finish_reason "stop", a usage chunk when the body asks for
 * stream_options.include_usage, and "data: [DONE]". The role chunk goes out
 * at once; every later event waits --delay-ms (default 250), so the upstream's
 * own delay before the first token is exactly --delay-ms. The response is
 * close-delimited (Connection: close).
 *
 * GET /__admin/stats answers {"requests","completed","aborted","open"} about
 * the answers (admin requests are not counted): aborted counts answers whose client closed the connection before the end,
 * which is how the benchmark checks that ragd cancels upstream requests.
 *
 * Prints "LISTENING <port>" once bound. SIGTERM or SIGINT prints the counters
 * on stderr and exits. Loopback only. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
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

#define REQUEST_MAX (1024 * 1024)
#define OUT_MAX (256 * 1024)

enum conn_state { C_READING = 0, C_STREAMING, C_CLOSING };

struct conn {
  int fd;
  enum conn_state state;
  char *in;
  size_t in_len, in_cap;
  char *out; /* unsent bytes */
  size_t out_len, out_off;
  int want_out; /* EPOLLOUT registered */
  int next_event; /* 0 role, 1..tokens content, tokens+1 finish, then usage, then [DONE] */
  int include_usage;
  int continued; /* "100 Continue" sent */
  int64_t due_ms;
  struct conn *qprev, *qnext; /* the timer queue */
  int queued;
};

static struct {
  int tokens;
  int delay_ms;
  int epfd;
  struct conn *qhead, *qtail; /* due times ascend: every delay is the same */
  unsigned long requests, completed, aborted, open;
  char id[32];
} fk = {.tokens = 40, .delay_ms = 250};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig) {
  (void)sig;
  stop_flag = 1;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void queue_remove(struct conn *c) {
  if (!c->queued) return;
  if (c->qprev) c->qprev->qnext = c->qnext;
  else fk.qhead = c->qnext;
  if (c->qnext) c->qnext->qprev = c->qprev;
  else fk.qtail = c->qprev;
  c->qprev = c->qnext = NULL;
  c->queued = 0;
}

static void queue_push(struct conn *c, int64_t due) {
  c->due_ms = due;
  c->qprev = fk.qtail;
  c->qnext = NULL;
  if (fk.qtail) fk.qtail->qnext = c;
  else fk.qhead = c;
  fk.qtail = c;
  c->queued = 1;
}

static void conn_close(struct conn *c) {
  if (c->state == C_STREAMING) {
    fk.aborted++;
    fk.open--;
  }
  queue_remove(c);
  epoll_ctl(fk.epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c->in);
  free(c->out);
  free(c);
}

/* Writes what is pending; registers for EPOLLOUT when the socket is full.
 * Returns -1 when the connection was closed. */
static int conn_flush(struct conn *c) {
  while (c->out_off < c->out_len) {
    ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
    if (n > 0) {
      c->out_off += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLOUT, .data.ptr = c};
        epoll_ctl(fk.epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = 1;
      }
      return 0;
    }
    conn_close(c);
    return -1;
  }
  c->out_len = c->out_off = 0;
  if (c->want_out) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(fk.epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = 0;
  }
  if (c->state == C_CLOSING) {
    if (c->next_event > 0) fk.completed++; /* an answer, not an admin reply */
    fk.open--;
    c->state = C_READING; /* not counted as aborted */
    conn_close(c);
    return -1;
  }
  return 0;
}

static int conn_append(struct conn *c, const char *p, size_t n) {
  if (c->out_len + n > OUT_MAX) return -1; /* the reader stopped: give up */
  if (!c->out) {
    c->out = malloc(OUT_MAX);
    if (!c->out) return -1;
  }
  memcpy(c->out + c->out_len, p, n);
  c->out_len += n;
  return 0;
}

/* Appends the next event of c's answer and, unless it was the last, queues
 * the one after. */
static int conn_next_event(struct conn *c, int64_t now) {
  char line[512];
  int n;
  int k = c->next_event++;
  int last = 0;
  const char *head = "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
                     "\"model\":\"gpt-fake-1\",\"system_fingerprint\":\"fp_fake0001\",\"choices\":[";
  n = snprintf(line, sizeof line, head, fk.id);
  if (k == 0) {
    n += snprintf(line + n, sizeof line - (size_t)n,
                  "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                  "\"logprobs\":null,\"finish_reason\":null}]}\n\n");
  } else if (k <= fk.tokens) {
    n += snprintf(line + n, sizeof line - (size_t)n,
                  "{\"index\":0,\"delta\":{\"content\":\" tok%d\"},\"logprobs\":null,"
                  "\"finish_reason\":null}]}\n\n",
                  k);
  } else if (k == fk.tokens + 1) {
    n += snprintf(line + n, sizeof line - (size_t)n,
                  "{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n");
  } else if (k == fk.tokens + 2 && c->include_usage) {
    n += snprintf(line + n, sizeof line - (size_t)n,
                  "],\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":%d,"
                  "\"total_tokens\":%d}}\n\n",
                  fk.tokens, fk.tokens + 100);
  } else {
    n = snprintf(line, sizeof line, "data: [DONE]\n\n");
    last = 1;
  }
  if (n < 0 || (size_t)n >= sizeof line || conn_append(c, line, (size_t)n) != 0) {
    conn_close(c);
    return -1;
  }
  if (last) c->state = C_CLOSING;
  else queue_push(c, now + fk.delay_ms);
  return conn_flush(c);
}

static const char *find_header(const char *head, size_t len, const char *name) {
  size_t nl = strlen(name);
  for (const char *p = head; p + nl < head + len; p++) {
    if ((p == head || p[-1] == '\n') && strncasecmp(p, name, nl) == 0 && p[nl] == ':')
      return p + nl + 1;
  }
  return NULL;
}

static void conn_answer_simple(struct conn *c, const char *status, const char *body) {
  char msg[512];
  int n = snprintf(msg, sizeof msg,
                   "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n%s",
                   status, strlen(body), body);
  c->state = C_CLOSING;
  fk.open++; /* conn_flush counts it completed */
  if (n > 0 && (size_t)n < sizeof msg && conn_append(c, msg, (size_t)n) == 0) conn_flush(c);
  else conn_close(c);
}

/* A whole request has arrived when the headers and Content-Length bytes are
 * in. Returns 1 when c was answered (or closed), 0 to keep reading. */
static int conn_try_request(struct conn *c, int64_t now) {
  char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
  const char *cl, *expect;
  size_t head_len, body_len = 0;
  if (!end) return 0;
  head_len = (size_t)(end - c->in) + 4;
  cl = find_header(c->in, head_len, "Content-Length");
  if (cl) body_len = strtoul(cl, NULL, 10);
  expect = find_header(c->in, head_len, "Expect");
  if (expect && !c->continued && body_len > 0 && c->in_len < head_len + body_len &&
      strncasecmp(expect + strspn(expect, " "), "100-continue", 12) == 0) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    c->continued = 1;
    if (write(c->fd, cont, sizeof cont - 1) < 0) {
      conn_close(c);
      return 1;
    }
  }
  if (c->in_len < head_len + body_len) return 0;
  if (strncmp(c->in, "GET /__admin/stats", 18) == 0) {
    char body[256];
    snprintf(body, sizeof body,
             "{\"requests\":%lu,\"completed\":%lu,\"aborted\":%lu,\"open\":%lu}\n",
             fk.requests, fk.completed, fk.aborted, fk.open);
    conn_answer_simple(c, "200 OK", body);
    return 1;
  }
  if (strncmp(c->in, "POST ", 5) != 0 || !memmem(c->in, head_len, "/chat/completions ", 18)) {
    conn_answer_simple(c, "404 Not Found", "{\"error\":{\"message\":\"unknown url\"}}");
    return 1;
  }
  fk.requests++;
  c->include_usage = memmem(c->in + head_len, body_len, "\"include_usage\":true", 20) != NULL;
  c->state = C_STREAMING;
  fk.open++;
  {
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                               "Cache-Control: no-cache\r\nConnection: close\r\n\r\n";
    if (conn_append(c, head, sizeof head - 1) != 0) {
      conn_close(c);
      return 1;
    }
  }
  conn_next_event(c, now);
  return 1;
}

static void conn_readable(struct conn *c, int64_t now) {
  for (;;) {
    char tmp[16384];
    ssize_t n = read(c->fd, tmp, sizeof tmp);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      conn_close(c); /* an abort when it was streaming */
      return;
    }
    if (c->state != C_READING) continue; /* ignore bytes after the request */
    if (c->in_len + (size_t)n > REQUEST_MAX) {
      conn_close(c);
      return;
    }
    if (c->in_len + (size_t)n > c->in_cap) {
      size_t cap = c->in_cap ? c->in_cap * 2 : 8192;
      char *p;
      while (cap < c->in_len + (size_t)n) cap *= 2;
      p = realloc(c->in, cap);
      if (!p) {
        conn_close(c);
        return;
      }
      c->in = p;
      c->in_cap = cap;
    }
    memcpy(c->in + c->in_len, tmp, (size_t)n);
    c->in_len += (size_t)n;
    if (conn_try_request(c, now)) return;
  }
}

static void accept_all(int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    struct conn *c;
    struct epoll_event ev;
    int one = 1;
    if (fd < 0) return;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c = calloc(1, sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    c->fd = fd;
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = c;
    if (epoll_ctl(fk.epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      close(fd);
      free(c);
    }
  }
}

int main(int argc, char **argv) {
  int port = 0, lfd, one = 1;
  struct sockaddr_in sa;
  socklen_t sl = sizeof sa;
  struct epoll_event ev, events[512];
  struct rlimit rl;
  static int listen_tag; /* data.ptr of the listening socket */
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--port") == 0) port = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--tokens") == 0) fk.tokens = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--delay-ms") == 0) fk.delay_ms = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "fake_upstream: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  snprintf(fk.id, sizeof fk.id, "chatcmpl-bench%d", (int)getpid());
  signal(SIGPIPE, SIG_IGN);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons((uint16_t)port);
  if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 4096) != 0) {
    perror("fake_upstream: listen");
    return 1;
  }
  getsockname(lfd, (struct sockaddr *)&sa, &sl);
  fk.epfd = epoll_create1(EPOLL_CLOEXEC);
  ev.events = EPOLLIN;
  ev.data.ptr = &listen_tag;
  epoll_ctl(fk.epfd, EPOLL_CTL_ADD, lfd, &ev);
  printf("LISTENING %d\n", ntohs(sa.sin_port));
  fflush(stdout);
  while (!stop_flag) {
    int64_t now = now_ms();
    int timeout = 1000;
    int got;
    if (fk.qhead) timeout = fk.qhead->due_ms > now ? (int)(fk.qhead->due_ms - now) : 0;
    got = epoll_wait(fk.epfd, events, 512, timeout);
    now = now_ms();
    for (int i = 0; i < got; i++) {
      struct conn *c = events[i].data.ptr;
      if (events[i].data.ptr == &listen_tag) {
        accept_all(lfd);
        continue;
      }
      if (events[i].events & EPOLLOUT) {
        if (conn_flush(c) < 0) continue;
      }
      if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) conn_readable(c, now);
    }
    while (fk.qhead && fk.qhead->due_ms <= now) {
      struct conn *c = fk.qhead;
      queue_remove(c);
      conn_next_event(c, now);
    }
  }
  fprintf(stderr, "fake_upstream: requests=%lu completed=%lu aborted=%lu open=%lu\n",
          fk.requests, fk.completed, fk.aborted, fk.open);
  return 0;
}
