#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum log_level g_level = LOG_INFO;

void log_set_level(enum log_level level) { g_level = level; }

int log_level_parse(const char *s) {
  static const char *names[] = {"debug", "info", "warn", "error", "off"};
  for (int i = 0; i < 5; i++)
    if (strcmp(s, names[i]) == 0) return i;
  return -1;
}

void log_msg(enum log_level level, const char *fmt, ...) {
  static const char *tags[] = {"debug", "info", "warn", "error"};
  char line[2048];
  struct timespec ts;
  struct tm tm;
  size_t n;
  va_list ap;
  if (level < g_level || level >= LOG_OFF) return;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ %s ", ts.tv_nsec / 1000000L,
                        tags[level]);
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - n, fmt, ap);
  va_end(ap);
  /* A log line is a diagnostic, so cutting an overlong one is acceptable. */
  n = strlen(line);
  if (n >= sizeof line - 1) n = sizeof line - 2;
  line[n++] = '\n';
  fwrite(line, 1, n, stderr);
}
