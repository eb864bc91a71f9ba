/* resume.c - answers held for Last-Event-ID resume, and the fan-out of one
 * answer's events to the client streams attached to it.
 *
 * An entry is one answer's encoded SSE events, numbered from 0. The producer
 * (api/chat.c) appends; every attached stream gets each event as it is
 * appended; a stream that reconnects with Last-Event-ID is attached after the
 * held events past that id are written to it. Entries are found by response
 * id in one process-wide table, bounded two ways: a finished entry is dropped
 * retention_s after it finished, and the bytes of all entries together stay
 * under max_bytes (oldest finished entries go first; a live answer that
 * would pass the limit stops being held, and a later resume of it gets an
 * error, while its attached streams keep receiving it).
 *
 * The table keeps two lists: every entry in the order it was opened (for
 * lookups), and the finished ones in the order they finished. Only finished
 * entries are ever dropped, oldest first, so a sweep pops from the head of
 * the finished list and stops at the first entry it keeps: its cost is the
 * number of entries it drops, not the number held (at ten thousand open
 * answers a sweep over every entry on each new answer showed in profiles).
 *
 * Locks: table.mu, then entry->mu, then the http stream's own. Producer
 * callbacks (on_abandon) run with no lock held. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "util/clock.h"

#define RESUME_SUBSCRIBERS_MAX 8

struct resume_entry {
  pthread_mutex_t mu;
  int refs; /* the table's, the producer's and each attached stream's */
  char response_id[48];
  const char *content_type; /* static strings of the protocol */
  const char *const *headers;
  struct buf bytes;  /* every event, back to back */
  size_t *ends;      /* ends[i]: offset just past event i */
  size_t count, cap;
  int finished;
  int dropped; /* no longer held (over the byte limit); resumes fail */
  int64_t finished_ms;
  struct http_stream *subs[RESUME_SUBSCRIBERS_MAX];
  size_t sub_count;
  void (*on_abandon)(void *arg); /* the last stream left a live answer */
  void *abandon_arg;
  /* Under table.mu: every entry, oldest first; and, once finished (and so
   * set under table.mu too), the finished ones in the order they finished. */
  struct resume_entry *prev, *next;
  struct resume_entry *fprev, *fnext;
  int listed; /* still in the table */
};

static struct {
  pthread_mutex_t mu;
  struct resume_entry *head, *tail;   /* every entry */
  struct resume_entry *fhead, *ftail; /* finished entries, by finish time */
  size_t bytes;
} table = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, NULL, NULL, 0};

static void entry_unref(struct resume_entry *e) {
  int last;
  pthread_mutex_lock(&e->mu);
  last = --e->refs == 0;
  pthread_mutex_unlock(&e->mu);
  if (!last) return;
  buf_dispose(&e->bytes);
  free(e->ends);
  pthread_mutex_destroy(&e->mu);
  free(e);
}

/* Unlinks a finished entry from both lists; caller holds table.mu and drops
 * the table's reference after unlocking. */
static void table_unlink(struct resume_entry *e) {
  if (e->prev) e->prev->next = e->next;
  else table.head = e->next;
  if (e->next) e->next->prev = e->prev;
  else table.tail = e->prev;
  if (e->fprev) e->fprev->fnext = e->fnext;
  else table.fhead = e->fnext;
  if (e->fnext) e->fnext->fprev = e->fprev;
  else table.ftail = e->fprev;
  e->prev = e->next = e->fprev = e->fnext = NULL;
  e->listed = 0;
  table.bytes -= e->bytes.len;
}

/* Drops expired entries, and finished ones while over max_bytes (room for
 * need more), oldest finished first. Caller holds table.mu; the dropped
 * entries are returned as a list (through next) to unref unlocked. */
static struct resume_entry *table_sweep(const struct ragd_config *cfg, size_t need) {
  struct resume_entry *dead = NULL, *e;
  int64_t now = clock_mono_ms();
  while (table.fhead) {
    e = table.fhead;
    /* finished_ms is written under table.mu, which we hold. */
    if (now - e->finished_ms < cfg->resume_retention_s * 1000 &&
        table.bytes + need <= (size_t)cfg->resume_max_bytes)
      break;
    pthread_mutex_lock(&e->mu);
    e->dropped = 1;
    pthread_mutex_unlock(&e->mu);
    table_unlink(e);
    e->next = dead;
    dead = e;
  }
  return dead;
}

static void unref_list(struct resume_entry *e) {
  while (e) {
    struct resume_entry *next = e->next;
    entry_unref(e);
    e = next;
  }
}

struct resume_entry *api_resume_open(const struct ragd_config *cfg, const char *response_id,
                                     const char *content_type, const char *const *headers) {
  struct resume_entry *e = calloc(1, sizeof *e);
  struct resume_entry *dead;
  if (!e) return NULL;
  pthread_mutex_init(&e->mu, NULL);
  snprintf(e->response_id, sizeof e->response_id, "%s", response_id);
  e->content_type = content_type;
  e->headers = headers;
  e->refs = 2; /* the table's and the producer's */
  buf_init(&e->bytes, 0);
  pthread_mutex_lock(&table.mu);
  dead = table_sweep(cfg, 0);
  e->prev = table.tail;
  if (table.tail) table.tail->next = e;
  else table.head = e;
  table.tail = e;
  e->listed = 1;
  pthread_mutex_unlock(&table.mu);
  unref_list(dead);
  return e;
}

void api_resume_set_abandon(struct resume_entry *e, void (*on_abandon)(void *arg), void *arg) {
  pthread_mutex_lock(&e->mu);
  e->on_abandon = on_abandon;
  e->abandon_arg = arg;
  pthread_mutex_unlock(&e->mu);
}

/* Keeps one more event if the byte budget allows; caller holds neither lock. */
static void entry_hold(const struct ragd_config *cfg, struct resume_entry *e, const char *p,
                       size_t n) {
  struct resume_entry *dead = NULL;
  int fits;
  pthread_mutex_lock(&table.mu);
  fits = table.bytes + n <= (size_t)cfg->resume_max_bytes;
  if (!fits) {
    dead = table_sweep(cfg, n);
    fits = table.bytes + n <= (size_t)cfg->resume_max_bytes;
  }
  pthread_mutex_lock(&e->mu);
  if (e->dropped) {
    fits = 0;
  } else if (fits && e->count == e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 32;
    size_t *ends = realloc(e->ends, cap * sizeof *ends);
    if (ends) {
      e->ends = ends;
      e->cap = cap;
    } else {
      fits = 0;
    }
  }
  if (fits && buf_append(&e->bytes, p, n) == RAGD_OK) {
    e->ends[e->count++] = e->bytes.len;
    table.bytes += n;
  } else {
    /* Stop holding this answer; what was held no longer resumes cleanly. */
    table.bytes -= e->bytes.len;
    buf_dispose(&e->bytes);
    e->count = 0;
    e->dropped = 1;
  }
  pthread_mutex_unlock(&e->mu);
  pthread_mutex_unlock(&table.mu);
  unref_list(dead);
}

int api_resume_append(const struct ragd_config *cfg, struct resume_entry *e, const char *p,
                      size_t n) {
  void (*abandon)(void *) = NULL;
  void *arg = NULL;
  struct http_stream *gone[RESUME_SUBSCRIBERS_MAX];
  size_t gone_count = 0;
  int listeners;
  entry_hold(cfg, e, p, n);
  pthread_mutex_lock(&e->mu);
  for (size_t i = 0; i < e->sub_count;) {
    if (http_stream_write(e->subs[i], p, n) != RAGD_OK) {
      /* Gone or too slow: stop following it. */
      gone[gone_count++] = e->subs[i];
      e->subs[i] = e->subs[--e->sub_count];
      continue;
    }
    i++;
  }
  listeners = (int)e->sub_count;
  if (!listeners && !e->finished) {
    abandon = e->on_abandon;
    arg = e->abandon_arg;
    e->on_abandon = NULL;
  }
  pthread_mutex_unlock(&e->mu);
  for (size_t i = 0; i < gone_count; i++) http_stream_end(gone[i]);
  if (abandon) abandon(arg);
  return listeners;
}

int api_resume_finish(struct resume_entry *e) {
  struct http_stream *subs[RESUME_SUBSCRIBERS_MAX];
  size_t n;
  int had_abandon;
  pthread_mutex_lock(&table.mu);
  pthread_mutex_lock(&e->mu);
  e->finished = 1;
  e->finished_ms = clock_mono_ms();
  had_abandon = e->on_abandon != NULL;
  e->on_abandon = NULL;
  n = e->sub_count;
  memcpy(subs, e->subs, n * sizeof subs[0]);
  e->sub_count = 0;
  pthread_mutex_unlock(&e->mu);
  if (e->listed) {
    /* The newest finish goes last: the list stays in finish order. */
    e->fprev = table.ftail;
    if (table.ftail) table.ftail->fnext = e;
    else table.fhead = e;
    table.ftail = e;
  }
  pthread_mutex_unlock(&table.mu);
  for (size_t i = 0; i < n; i++) http_stream_end(subs[i]);
  entry_unref(e); /* the producer's */
  return had_abandon;
}

/* ---- attached streams ---- */

struct resume_sub {
  struct resume_entry *e;
  struct http_stream *s;
};

static void sub_cancelled(void *arg) {
  struct resume_sub *sub = arg;
  struct resume_entry *e = sub->e;
  void (*abandon)(void *) = NULL;
  void *abandon_arg = NULL;
  int found = 0;
  pthread_mutex_lock(&e->mu);
  for (size_t i = 0; i < e->sub_count; i++)
    if (e->subs[i] == sub->s) {
      e->subs[i] = e->subs[--e->sub_count];
      found = 1;
      break;
    }
  if (e->sub_count == 0 && !e->finished) {
    abandon = e->on_abandon;
    abandon_arg = e->abandon_arg;
    e->on_abandon = NULL;
  }
  pthread_mutex_unlock(&e->mu);
  /* Our reference on the stream went with the entry's list. */
  if (found) http_stream_end(sub->s);
  if (abandon) abandon(abandon_arg);
}

static void sub_released(void *arg) {
  struct resume_sub *sub = arg;
  entry_unref(sub->e);
  free(sub);
}

ragd_err api_resume_attach(struct resume_entry *e, struct http_stream *s, long after_seq,
                           const struct ragd_config *cfg, const char **why) {
  struct resume_sub *sub = calloc(1, sizeof *sub);
  ragd_err rc = RAGD_OK;
  int follow = 0;
  *why = "out of memory";
  if (!sub) return RAGD_ENOMEM;
  sub->e = e;
  sub->s = s;
  http_stream_set_limits(s, (size_t)cfg->stream_queue_bytes, cfg->stream_stall_ms);
  pthread_mutex_lock(&e->mu);
  e->refs++;
  http_stream_set_owner(s, sub, sub_cancelled, sub_released);
  if (e->dropped) {
    *why = "the answer grew too large to hold for resume";
    rc = RAGD_ENOTFOUND;
  } else if (after_seq < -1 || after_seq >= (long)e->count) {
    *why = "the event id is past the end of the answer";
    rc = RAGD_EINVAL;
  } else if (!e->finished && e->sub_count == RESUME_SUBSCRIBERS_MAX) {
    *why = "too many clients follow this answer";
    rc = RAGD_ETOOBIG;
  } else {
    size_t from = after_seq < 0 ? 0 : e->ends[after_seq];
    if (e->bytes.len > from) rc = http_stream_write(s, e->bytes.data + from, e->bytes.len - from);
    if (rc == RAGD_OK && !e->finished) {
      e->subs[e->sub_count++] = s;
      follow = 1;
    }
    *why = NULL;
  }
  pthread_mutex_unlock(&e->mu);
  if (rc == RAGD_OK && !follow) http_stream_end(s); /* all replayed */
  return rc;
}

struct resume_entry *api_resume_find(const struct ragd_config *cfg, const char *response_id) {
  struct resume_entry *found = NULL, *dead;
  pthread_mutex_lock(&table.mu);
  dead = table_sweep(cfg, 0);
  for (struct resume_entry *e = table.head; e; e = e->next)
    if (strcmp(e->response_id, response_id) == 0) {
      pthread_mutex_lock(&e->mu);
      e->refs++;
      pthread_mutex_unlock(&e->mu);
      found = e;
      break;
    }
  pthread_mutex_unlock(&table.mu);
  unref_list(dead);
  return found;
}

void api_resume_release(struct resume_entry *e) {
  if (e) entry_unref(e);
}

const char *api_resume_content_type(const struct resume_entry *e) { return e->content_type; }
const char *const *api_resume_headers(const struct resume_entry *e) { return e->headers; }
