/* bpe_models.c - which encoding, context window and output reserve an LLM
 * has: a built-in table plus an optional file (RAGD_MODELS_FILE).
 *
 * The windows and reserves are the providers' published limits (context
 * window; largest answer) as of 2025, except where the largest answer would
 * take most of a small window (gpt-4, gpt-3.5-turbo): there the reserve is the
 * part of the window the budget leaves for the answer. docs/tokens.md holds
 * the table for users. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/text.h"
#include "util/buf.h"

struct model_entry {
  const char *name; /* exact, or a prefix followed by '*' */
  enum text_bpe_encoding encoding;
  long context_window;
  long output_reserve;
};

#define O200K TEXT_BPE_O200K_BASE
#define CL100K TEXT_BPE_CL100K_BASE

static const struct model_entry builtin_models[] = {
    {"gpt-5*", O200K, 400000, 128000},
    {"gpt-5-chat*", O200K, 128000, 16384},
    {"gpt-4.1*", O200K, 1047576, 32768},
    {"gpt-4.5*", O200K, 128000, 16384},
    {"gpt-4o*", O200K, 128000, 16384},
    {"chatgpt-4o*", O200K, 128000, 16384},
    {"o1*", O200K, 200000, 100000},
    {"o1-mini*", O200K, 128000, 65536},
    {"o1-preview*", O200K, 128000, 32768},
    {"o3*", O200K, 200000, 100000},
    {"o4-mini*", O200K, 200000, 100000},
    {"gpt-4", CL100K, 8192, 2048},
    {"gpt-4-0314", CL100K, 8192, 2048},
    {"gpt-4-0613", CL100K, 8192, 2048},
    {"gpt-4-32k*", CL100K, 32768, 4096},
    {"gpt-4-turbo*", CL100K, 128000, 4096},
    {"gpt-4-1106*", CL100K, 128000, 4096},
    {"gpt-4-0125*", CL100K, 128000, 4096},
    {"gpt-4-vision*", CL100K, 128000, 4096},
    {"gpt-3.5-turbo*", CL100K, 16385, 4096},
    {"gpt-3.5-turbo-instruct*", CL100K, 4096, 1024},
    {"gpt-35-turbo*", CL100K, 16385, 4096},
    {"text-embedding-3-*", CL100K, 8191, 0},
    {"text-embedding-ada-002", CL100K, 8191, 0},
};

#define BUILTIN_COUNT (sizeof builtin_models / sizeof builtin_models[0])

struct text_model_table {
  struct model_entry *file; /* from RAGD_MODELS_FILE; names are owned */
  size_t file_count;
};

static void set_error(struct buf *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct buf *err, const char *fmt, ...) {
  va_list ap;
  if (!err) return;
  buf_reset(err);
  va_start(ap, fmt);
  buf_vappendf(err, fmt, ap);
  va_end(ap);
}

void text_model_table_free(struct text_model_table *table) {
  if (!table) return;
  for (size_t i = 0; i < table->file_count; i++) free((char *)table->file[i].name);
  free(table->file);
  free(table);
}

static int parse_long(const char *s, long *out) {
  char *end = NULL;
  long v;
  errno = 0;
  v = strtol(s, &end, 10);
  if (errno || end == s || *end) return -1;
  *out = v;
  return 0;
}

/* Splits line (modified in place) into at most max fields at spaces and
 * tabs, stopping at '#'. Returns the number of fields, max + 1 if more. */
static int split_fields(char *line, char **fields, int max) {
  int n = 0;
  char *p = line;
  for (;;) {
    while (*p == ' ' || *p == '\t' || *p == '\r') p++;
    if (!*p || *p == '#') return n;
    if (n == max) return max + 1;
    fields[n++] = p;
    while (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != '#') p++;
    if (*p == '#') {
      *p = '\0';
      return n;
    }
    if (*p) *p++ = '\0';
  }
}

static ragd_err parse_line(char *line, const char *path, size_t line_no, struct model_entry *e,
                           struct buf *err) {
  char *f[4];
  int n = split_fields(line, f, 4), enc;
  if (n == 0) return RAGD_EEMPTY;
  if (n != 4) {
    set_error(err, "%s:%zu: expected NAME ENCODING CONTEXT_WINDOW OUTPUT_RESERVE", path, line_no);
    return RAGD_ECONFIG;
  }
  enc = text_bpe_encoding_parse(f[1]);
  if (enc < 0) {
    set_error(err, "%s:%zu: unknown encoding \"%s\" (cl100k_base or o200k_base)", path, line_no,
              f[1]);
    return RAGD_ECONFIG;
  }
  if (parse_long(f[2], &e->context_window) || e->context_window < 1 ||
      parse_long(f[3], &e->output_reserve) || e->output_reserve < 0 ||
      e->output_reserve >= e->context_window) {
    set_error(err,
              "%s:%zu: expected a context window >= 1 and an output reserve from 0 to one less "
              "than it, got \"%s\" and \"%s\"",
              path, line_no, f[2], f[3]);
    return RAGD_ECONFIG;
  }
  if (f[0][0] == '*') {
    set_error(err, "%s:%zu: a model name cannot be only '*'", path, line_no);
    return RAGD_ECONFIG;
  }
  e->encoding = (enum text_bpe_encoding)enc;
  e->name = strdup(f[0]);
  return e->name ? RAGD_OK : RAGD_ENOMEM;
}

static ragd_err load_file(struct text_model_table *t, const char *path, struct buf *err) {
  FILE *f = fopen(path, "r");
  char *line = NULL;
  size_t cap = 0, line_no = 0, alloc = 0;
  ragd_err rc = RAGD_OK;
  if (!f) {
    set_error(err, "RAGD_MODELS_FILE: %s: %s", path, strerror(errno));
    return RAGD_EIO;
  }
  while (getline(&line, &cap, f) >= 0) {
    struct model_entry e = {0};
    line_no++;
    line[strcspn(line, "\n")] = '\0';
    rc = parse_line(line, path, line_no, &e, err);
    if (rc == RAGD_EEMPTY) {
      rc = RAGD_OK;
      continue;
    }
    if (rc) goto out;
    if (t->file_count == alloc) {
      size_t n = alloc ? alloc * 2 : 16;
      struct model_entry *grown = realloc(t->file, n * sizeof *grown);
      if (!grown) {
        free((char *)e.name);
        rc = RAGD_ENOMEM;
        goto out;
      }
      t->file = grown;
      alloc = n;
    }
    t->file[t->file_count++] = e;
  }
  if (ferror(f)) {
    set_error(err, "RAGD_MODELS_FILE: %s: read error", path);
    rc = RAGD_EIO;
  }
out:
  free(line);
  fclose(f);
  return rc;
}

ragd_err text_model_table_load(const char *path, struct text_model_table **out, struct buf *err) {
  struct text_model_table *t = calloc(1, sizeof *t);
  ragd_err rc = RAGD_OK;
  *out = NULL;
  if (!t) return RAGD_ENOMEM;
  if (path && path[0]) rc = load_file(t, path, err);
  if (rc) {
    text_model_table_free(t);
    return rc;
  }
  *out = t;
  return RAGD_OK;
}

/* How well entry name matches model: 0 not at all, otherwise the prefix
 * length + 1 for a '*' entry and SIZE_MAX for an exact name. */
static size_t match_score(const char *name, const char *model) {
  size_t n = strlen(name);
  if (n && name[n - 1] == '*')
    return strncmp(name, model, n - 1) == 0 ? n : 0;
  return strcmp(name, model) == 0 ? (size_t)-1 : 0;
}

static const struct model_entry *best_match(const struct model_entry *entries, size_t count,
                                            const char *model) {
  const struct model_entry *best = NULL;
  size_t best_score = 0;
  for (size_t i = 0; i < count; i++) {
    size_t score = match_score(entries[i].name, model);
    if (score > best_score) {
      best = &entries[i];
      best_score = score;
    }
  }
  return best;
}

ragd_err text_model_lookup(const struct text_model_table *table, const char *model,
                           struct text_model *out) {
  const struct model_entry *e = NULL;
  for (int pass = 0; pass < 2 && !e && model; pass++) {
    if (table) e = best_match(table->file, table->file_count, model);
    if (!e) e = best_match(builtin_models, BUILTIN_COUNT, model);
    if (!e) {
      /* "openai/gpt-4o" as routers name models: try the bare name once. */
      const char *slash = strrchr(model, '/');
      model = slash ? slash + 1 : NULL;
    }
  }
  if (!e) return RAGD_ENOTFOUND;
  out->name = e->name;
  out->encoding = e->encoding;
  out->context_window = e->context_window;
  out->output_reserve = e->output_reserve;
  return RAGD_OK;
}
