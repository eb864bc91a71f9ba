/* log.c - JSON lines on standard error (see log.h).
 *
 * The line is built with jansson, so escaping is jansson's; a message is
 * redacted by guard before it goes in, and its bytes are made valid UTF-8
 * first, since jansson refuses anything else. */
#include "util/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "guard/guard.h"

#define LOG_MSG_MAX 8192

static atomic_int g_level = LOG_INFO;
static pthread_mutex_t g_write_mu = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local char tl_request_id[LOG_REQUEST_ID_MAX];

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void log_set_level(enum log_level level) { atomic_store(&g_level, (int)level); }

int log_enabled(enum log_level level) {
  return level < LOG_OFF && (int)level >= atomic_load(&g_level);
}

int log_level_parse(const char *s) {
  for (int i = 0; i < 5; i++)
    if (s && strcmp(s, level_names[i]) == 0) return i;
  return -1;
}

/* ---- request ids ---- */

const char *log_request_id(void) { return tl_request_id; }

static void set_request_id(const char *id) {
  snprintf(tl_request_id, sizeof tl_request_id, "%s", id ? id : "");
}

void log_scope_begin(struct log_scope *scope, const char *id) {
  memcpy(scope->saved, tl_request_id, sizeof scope->saved);
  set_request_id(id);
}

void log_scope_end(struct log_scope *scope) {
  scope->saved[sizeof scope->saved - 1] = '\0';
  set_request_id(scope->saved);
}

/* ---- one line ---- */

/* Length of the valid UTF-8 sequence at p[0..n), 0 when invalid. */
static size_t utf8_valid_seq(const unsigned char *p, size_t n) {
  size_t need;
  unsigned cp;
  if (p[0] < 0x80) return 1;
  if (p[0] >= 0xC2 && p[0] <= 0xDF) {
    need = 2;
    cp = p[0] & 0x1Fu;
  } else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
    need = 3;
    cp = p[0] & 0x0Fu;
  } else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
    need = 4;
    cp = p[0] & 0x07u;
  } else {
    return 0;
  }
  if (n < need) return 0;
  for (size_t i = 1; i < need; i++) {
    if ((p[i] & 0xC0u) != 0x80u) return 0;
    cp = (cp << 6) | (p[i] & 0x3Fu);
  }
  if ((need == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
      (need == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
    return 0;
  return need;
}

/* Copies text as valid UTF-8 (U+FFFD for each bad byte), cut to at most
 * LOG_MSG_MAX bytes at a character boundary. */
static ragd_err utf8_clean(const char *text, size_t len, struct buf *out) {
  const unsigned char *p = (const unsigned char *)text;
  size_t i = 0;
  ragd_err rc = RAGD_OK;
  while (i < len && !rc) {
    size_t n = utf8_valid_seq(p + i, len - i);
    size_t add = n ? n : 3;
    if (out->len + add > LOG_MSG_MAX) return buf_append_str(out, "...");
    rc = n ? buf_append(out, p + i, n) : buf_append(out, "\xEF\xBF\xBD", 3);
    i += n ? n : 1;
  }
  return rc;
}

static void write_all(const char *p, size_t n) {
  pthread_mutex_lock(&g_write_mu);
  while (n > 0) {
    ssize_t w = write(STDERR_FILENO, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break; /* nowhere to report a failing stderr */
    p += w;
    n -= (size_t)w;
  }
  pthread_mutex_unlock(&g_write_mu);
}

static void log_vline(enum log_level level, json_t *fields, const char *fmt, va_list ap) {
  struct buf text, clean, line;
  char ts[40], *redacted = NULL, *dumped = NULL;
  size_t redacted_len = 0;
  struct timespec now;
  struct tm tm;
  json_t *o = NULL;
  const char *key;
  json_t *value;

  buf_init(&text, 0);
  buf_init(&clean, 0);
  buf_init(&line, 0);
  if (!log_enabled(level)) goto out;
  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts + strlen(ts), sizeof ts - strlen(ts), ".%03ldZ", now.tv_nsec / 1000000L);
  if (buf_vappendf(&text, fmt, ap) != RAGD_OK) goto out;
  if (guard_redact_log(text.data ? text.data : "", text.len, &redacted, &redacted_len) != RAGD_OK)
    goto out;
  if (utf8_clean(redacted, redacted_len, &clean) != RAGD_OK) goto out;
  o = json_object();
  if (!o) goto out;
  json_object_set_new(o, "ts", json_string(ts));
  json_object_set_new(o, "level", json_string(level_names[level]));
  json_object_set_new(o, "msg", json_stringn(clean.data ? clean.data : "", clean.len));
  if (tl_request_id[0]) json_object_set_new(o, "request_id", json_string(tl_request_id));
  if (json_is_object(fields)) {
    json_object_foreach(fields, key, value) {
      if (strcmp(key, "ts") == 0 || strcmp(key, "level") == 0 || strcmp(key, "msg") == 0 ||
          strcmp(key, "request_id") == 0)
        continue;
      json_object_set(o, key, value);
    }
  }
  /* ten significant digits: a duration reads 66.1, not 66.099999999999994 */
  dumped = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
  if (!dumped || buf_append_str(&line, dumped) != RAGD_OK || buf_append_char(&line, '\n') != RAGD_OK)
    goto out;
  write_all(line.data, line.len);
out:
  json_decref(o);
  json_decref(fields);
  free(redacted);
  free(dumped);
  buf_dispose(&text);
  buf_dispose(&clean);
  buf_dispose(&line);
}

void log_msg(enum log_level level, const char *fmt, ...) {
  va_list ap;
  if (!log_enabled(level)) return;
  va_start(ap, fmt);
  log_vline(level, NULL, fmt, ap);
  va_end(ap);
}

void log_fields(enum log_level level, json_t *fields, const char *fmt, ...) {
  va_list ap;
  if (!log_enabled(level)) {
    json_decref(fields);
    return;
  }
  va_start(ap, fmt);
  log_vline(level, fields, fmt, ap);
  va_end(ap);
}
