/* log.h - line-oriented logging to standard error.
 *
 * Thread-safe (one write per line). Levels below the configured one are
 * dropped. Never log request bodies or API keys. */
#ifndef RAGD_UTIL_LOG_H
#define RAGD_UTIL_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3, LOG_OFF = 4 };

void log_set_level(enum log_level level);
/* Parses "debug", "info", "warn", "error", "off"; returns -1 when unknown. */
int log_level_parse(const char *s);
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
