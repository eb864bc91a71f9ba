/* metrics.c - the registry behind metrics.h. One mutex guards everything:
 * updates are a few instructions and a short list walk, and /metrics is read
 * a few times a minute, so contention is not worth more machinery. */
#include "util/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct series {
  char *values[METRICS_LABELS_MAX];
  double value;    /* counter, gauge */
  double sum;      /* histogram */
  unsigned long long *buckets; /* histogram: nbounds + 1 (the last is +Inf) */
  unsigned long long count;
  struct series *next;
};

struct metric {
  enum metric_type type;
  char *name;
  char *help;
  char *labels[METRICS_LABELS_MAX];
  size_t nlabels;
  double *bounds;
  size_t nbounds;
  double (*fn)(void *arg);
  void *fn_arg;
  struct series *series, *series_tail;
  size_t nseries;
  struct metric *next;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct metric *g_head, *g_tail;

const double metrics_latency_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                          0.5,   1,      2.5,   5,    10,    30,    60};
const size_t metrics_latency_bucket_count =
    sizeof metrics_latency_buckets / sizeof metrics_latency_buckets[0];

static int name_ok(const char *s) {
  if (!s || !*s) return 0;
  for (size_t i = 0; s[i]; i++) {
    char c = s[i];
    int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return 0;
  }
  return 1;
}

static void metric_free(struct metric *m) {
  struct series *s = m->series;
  while (s) {
    struct series *next = s->next;
    for (size_t i = 0; i < m->nlabels; i++) free(s->values[i]);
    free(s->buckets);
    free(s);
    s = next;
  }
  for (size_t i = 0; i < m->nlabels; i++) free(m->labels[i]);
  free(m->bounds);
  free(m->name);
  free(m->help);
  free(m);
}

/* Caller holds g_mu. */
static struct metric *find(const char *name) {
  for (struct metric *m = g_head; m; m = m->next)
    if (strcmp(m->name, name) == 0) return m;
  return NULL;
}

static struct metric *create(enum metric_type type, const char *name, const char *help,
                             const char *label_names, const double *bounds, size_t nbounds) {
  struct metric *m;
  if (!name_ok(name)) return NULL;
  pthread_mutex_lock(&g_mu);
  m = find(name);
  if (m) {
    pthread_mutex_unlock(&g_mu);
    return m->type == type ? m : NULL;
  }
  m = calloc(1, sizeof *m);
  if (!m) goto fail;
  m->type = type;
  m->name = strdup(name);
  m->help = strdup(help ? help : "");
  if (!m->name || !m->help) goto fail;
  if (label_names && *label_names) {
    const char *p = label_names;
    while (*p) {
      const char *comma = strchr(p, ',');
      size_t n = comma ? (size_t)(comma - p) : strlen(p);
      if (m->nlabels == METRICS_LABELS_MAX) goto fail;
      m->labels[m->nlabels] = strndup(p, n);
      if (!m->labels[m->nlabels] || !name_ok(m->labels[m->nlabels])) {
        m->nlabels++;
        goto fail;
      }
      m->nlabels++;
      p += n;
      if (*p == ',') p++;
    }
  }
  if (nbounds) {
    m->bounds = malloc(nbounds * sizeof *m->bounds);
    if (!m->bounds) goto fail;
    memcpy(m->bounds, bounds, nbounds * sizeof *bounds);
    m->nbounds = nbounds;
  }
  if (g_tail)
    g_tail->next = m;
  else
    g_head = m;
  g_tail = m;
  pthread_mutex_unlock(&g_mu);
  return m;
fail:
  pthread_mutex_unlock(&g_mu);
  if (m) metric_free(m);
  return NULL;
}

struct metric *metrics_counter(const char *name, const char *help, const char *label_names) {
  return create(METRIC_COUNTER, name, help, label_names, NULL, 0);
}

struct metric *metrics_gauge(const char *name, const char *help, const char *label_names) {
  return create(METRIC_GAUGE, name, help, label_names, NULL, 0);
}

struct metric *metrics_histogram(const char *name, const char *help, const char *label_names,
                                 const double *bounds, size_t nbounds) {
  return create(METRIC_HISTOGRAM, name, help, label_names, bounds, nbounds);
}

struct metric *metrics_gauge_fn(const char *name, const char *help, double (*fn)(void *arg),
                                void *arg) {
  struct metric *m = create(METRIC_GAUGE, name, help, NULL, NULL, 0);
  if (m) {
    pthread_mutex_lock(&g_mu);
    m->fn = fn;
    m->fn_arg = arg;
    pthread_mutex_unlock(&g_mu);
  }
  return m;
}

/* Finds or adds the series for the label values in ap. Caller holds g_mu.
 * NULL when the series limit is reached or memory runs out. */
static struct series *series_for(struct metric *m, va_list ap) {
  const char *values[METRICS_LABELS_MAX];
  struct series *s;
  for (size_t i = 0; i < m->nlabels; i++) {
    values[i] = va_arg(ap, const char *);
    if (!values[i]) values[i] = "";
  }
  for (s = m->series; s; s = s->next) {
    size_t i = 0;
    while (i < m->nlabels && strcmp(s->values[i], values[i]) == 0) i++;
    if (i == m->nlabels) return s;
  }
  if (m->nseries >= METRICS_SERIES_MAX) return NULL;
  s = calloc(1, sizeof *s);
  if (!s) return NULL;
  if (m->type == METRIC_HISTOGRAM) {
    s->buckets = calloc(m->nbounds + 1, sizeof *s->buckets);
    if (!s->buckets) goto fail;
  }
  for (size_t i = 0; i < m->nlabels; i++) {
    s->values[i] = strdup(values[i]);
    if (!s->values[i]) goto fail;
  }
  if (m->series_tail)
    m->series_tail->next = s;
  else
    m->series = s;
  m->series_tail = s;
  m->nseries++;
  return s;
fail:
  for (size_t i = 0; i < m->nlabels; i++) free(s->values[i]);
  free(s->buckets);
  free(s);
  return NULL;
}

void metrics_add(struct metric *m, double v, ...) {
  va_list ap;
  struct series *s;
  if (!m) return;
  va_start(ap, v);
  pthread_mutex_lock(&g_mu);
  s = series_for(m, ap);
  if (s) s->value += v;
  pthread_mutex_unlock(&g_mu);
  va_end(ap);
}

void metrics_set(struct metric *m, double v, ...) {
  va_list ap;
  struct series *s;
  if (!m) return;
  va_start(ap, v);
  pthread_mutex_lock(&g_mu);
  s = series_for(m, ap);
  if (s) s->value = v;
  pthread_mutex_unlock(&g_mu);
  va_end(ap);
}

void metrics_observe(struct metric *m, double v, ...) {
  va_list ap;
  struct series *s;
  if (!m || m->type != METRIC_HISTOGRAM) return;
  va_start(ap, v);
  pthread_mutex_lock(&g_mu);
  s = series_for(m, ap);
  if (s) {
    size_t b = 0;
    while (b < m->nbounds && v > m->bounds[b]) b++;
    s->buckets[b]++;
    s->count++;
    s->sum += v;
  }
  pthread_mutex_unlock(&g_mu);
  va_end(ap);
}

/* Label values escape backslash, double quote and line feed; help text
 * escapes backslash and line feed. */
static ragd_err append_escaped(struct buf *out, const char *s, int quotes) {
  ragd_err rc = RAGD_OK;
  for (; *s && !rc; s++) {
    if (*s == '\\')
      rc = buf_append(out, "\\\\", 2);
    else if (*s == '\n')
      rc = buf_append(out, "\\n", 2);
    else if (quotes && *s == '"')
      rc = buf_append(out, "\\\"", 2);
    else
      rc = buf_append_char(out, *s);
  }
  return rc;
}

static ragd_err append_number(struct buf *out, double v) {
  if (isnan(v)) return buf_append_str(out, "NaN");
  if (isinf(v)) return buf_append_str(out, v > 0 ? "+Inf" : "-Inf");
  if (fabs(v) < 1e15 && v == (double)(long long)v) return buf_appendf(out, "%lld", (long long)v);
  /* the shortest form that reads back as the same double */
  for (int precision = 15; precision < 17; precision++) {
    char tmp[40];
    snprintf(tmp, sizeof tmp, "%.*g", precision, v);
    if (strtod(tmp, NULL) == v) return buf_append_str(out, tmp);
  }
  return buf_appendf(out, "%.17g", v);
}

/* name{l1="v1",l2="v2"[,le="x"]} */
static ragd_err append_series_name(struct buf *out, const struct metric *m, const char *suffix,
                                   const struct series *s, const char *le) {
  ragd_err rc = buf_append_str(out, m->name);
  if (!rc && suffix) rc = buf_append_str(out, suffix);
  if (rc || (m->nlabels == 0 && !le)) return rc;
  rc = buf_append_char(out, '{');
  for (size_t i = 0; i < m->nlabels && !rc; i++) {
    rc = buf_appendf(out, "%s%s=\"", i ? "," : "", m->labels[i]);
    if (!rc) rc = append_escaped(out, s->values[i], 1);
    if (!rc) rc = buf_append_char(out, '"');
  }
  if (!rc && le) rc = buf_appendf(out, "%sle=\"%s\"", m->nlabels ? "," : "", le);
  if (!rc) rc = buf_append_char(out, '}');
  return rc;
}

static ragd_err render_metric(struct buf *out, struct metric *m) {
  static const char *const types[] = {"counter", "gauge", "histogram"};
  ragd_err rc = buf_appendf(out, "# HELP %s ", m->name);
  if (!rc) rc = append_escaped(out, m->help, 0);
  if (!rc) rc = buf_appendf(out, "\n# TYPE %s %s\n", m->name, types[m->type]);
  if (!rc && m->fn) {
    rc = buf_appendf(out, "%s ", m->name);
    if (!rc) rc = append_number(out, m->fn(m->fn_arg));
    if (!rc) rc = buf_append_char(out, '\n');
    return rc;
  }
  for (struct series *s = m->series; s && !rc; s = s->next) {
    if (m->type != METRIC_HISTOGRAM) {
      rc = append_series_name(out, m, NULL, s, NULL);
      if (!rc) rc = buf_append_char(out, ' ');
      if (!rc) rc = append_number(out, s->value);
      if (!rc) rc = buf_append_char(out, '\n');
      continue;
    }
    {
      unsigned long long cumulative = 0;
      for (size_t b = 0; b <= m->nbounds && !rc; b++) {
        struct buf le;
        buf_init(&le, 64);
        cumulative += s->buckets[b];
        rc = b < m->nbounds ? append_number(&le, m->bounds[b]) : buf_append_str(&le, "+Inf");
        if (!rc) rc = append_series_name(out, m, "_bucket", s, le.data);
        if (!rc) rc = buf_appendf(out, " %llu\n", cumulative);
        buf_dispose(&le);
      }
      if (!rc) rc = append_series_name(out, m, "_sum", s, NULL);
      if (!rc) rc = buf_append_char(out, ' ');
      if (!rc) rc = append_number(out, s->sum);
      if (!rc) rc = buf_append_char(out, '\n');
      if (!rc) rc = append_series_name(out, m, "_count", s, NULL);
      if (!rc) rc = buf_appendf(out, " %llu\n", s->count);
    }
  }
  return rc;
}

ragd_err metrics_render(struct buf *out) {
  ragd_err rc = RAGD_OK;
  pthread_mutex_lock(&g_mu);
  for (struct metric *m = g_head; m && !rc; m = m->next) rc = render_metric(out, m);
  pthread_mutex_unlock(&g_mu);
  return rc;
}

void metrics_reset(void) {
  struct metric *m;
  pthread_mutex_lock(&g_mu);
  m = g_head;
  g_head = g_tail = NULL;
  pthread_mutex_unlock(&g_mu);
  while (m) {
    struct metric *next = m->next;
    metric_free(m);
    m = next;
  }
}
