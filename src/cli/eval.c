/* eval.c - `ragd eval`: retrieval metrics (and, with --answers, answer
 * quality) on a BEIR-format test collection.
 *
 * The corpus is ingested into a temporary data folder that is removed
 * afterwards; every judged query then runs through rag_search_ex once per
 * search mode. Hits are chunks; a document is ranked once, at the rank of its
 * best chunk, before any metric is computed. Metrics follow trec_eval, as BEIR
 * reports them: recall@k over the documents with a judgment score > 0, MRR@10,
 * and nDCG@10 with linear gain (the judgment score) and a log2(rank + 1)
 * discount. Queries without any relevant judgment are not evaluated.
 *
 * With --answers every query that has gold answer strings goes through the
 * whole ask pipeline with the extractive generator, and the answer text (its
 * "[n]" citation marks removed, NFKC + case folded, whitespace collapsed) is
 * checked for containing any gold string (normalized the same way). */
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "rag/rag.h"
#include "text/text.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/log.h"

#define EVAL_LINE_MAX (64u * 1024u * 1024u) /* longest input line */
#define EVAL_K_DEFAULT 50                   /* chunks retrieved per query */
#define EVAL_K_MAX 1000
#define EVAL_NDCG_DEPTH 10
#define EVAL_MRR_DEPTH 10
#define EVAL_ANSWER_MAX (1024u * 1024u)

static const size_t eval_recall_depths[] = {1, 5, 10, 20};
#define EVAL_RECALLS (sizeof eval_recall_depths / sizeof eval_recall_depths[0])

static const char help[] =
    "Usage: ragd eval --corpus corpus.jsonl --queries queries.jsonl --qrels qrels.tsv\n"
    "                 [--mode hybrid|keyword|vector|all] [--k N] [--json]\n"
    "                 [--answers answers.jsonl] [--limit-queries N]\n"
    "                 [--embedder hash|lsa|openai]\n"
    "\n"
    "Measures retrieval on a BEIR-format collection: ingests the corpus into a\n"
    "temporary data folder (removed afterwards), runs every judged query and\n"
    "prints recall@1/5/10/20, MRR@10, nDCG@10 and search latency p50/p99 per\n"
    "search mode. A document counts once, at the rank of its best chunk.\n"
    "\n"
    "  --corpus FILE    JSON lines {\"_id\" or \"id\", \"title\", \"text\"}\n"
    "  --queries FILE   JSON lines {\"_id\" or \"id\", \"text\"}\n"
    "  --qrels FILE     TSV query-id, corpus-id, score (header line allowed);\n"
    "                   score > 0 is relevant, larger is more relevant\n"
    "  --mode MODE      hybrid, keyword, vector or all (default all); a mode the\n"
    "                   build cannot run is reported as unavailable\n"
    "  --k N            chunks retrieved per query (default 50, at most 1000)\n"
    "  --json           print one JSON object instead of a table\n"
    "  --answers FILE   JSON lines {\"id\": query id, \"answers\": [\"...\"]}: also\n"
    "                   answer each of those queries with the extractive generator\n"
    "                   and report how often the answer contains a gold string\n"
    "  --limit-queries N  only the first N queries of the queries file\n"
    "  --embedder NAME  the vector side: hash, lsa (fitted on the corpus) or\n"
    "                   openai (RAGD_EMBED_*); the same as RAGD_EMBEDDER=NAME\n"
    "\n"
    "Settings come from RAGD_* variables as for the other commands (chunk size,\n"
    "RAGD_TOP_K passages per answer); RAGD_DATA is ignored. Exit status 1 on a\n"
    "malformed input line (reported as FILE:LINE).\n";

/* ---- inputs ------------------------------------------------------------------ */

struct eval_rel {
  char *doc_id;
  long score;
};

struct eval_query {
  char *id;
  char *text;
  struct eval_rel *rels;
  size_t rel_count, rel_cap;
  char **answers; /* normalized gold strings */
  size_t answer_count;
};

/* Query id -> index: open addressing, power-of-two slots. */
struct eval_index {
  size_t *slots; /* index + 1; 0 is empty */
  size_t slot_count;
};

struct eval {
  const char *corpus_path, *queries_path, *qrels_path, *answers_path;
  const char *embedder; /* --embedder; NULL: RAGD_EMBEDDER or its default */
  const char *mode_name;
  size_t k;
  size_t limit;
  int json;

  struct eval_query *queries;
  size_t query_count, query_cap;
  struct eval_index query_index;
  size_t judged; /* queries with at least one relevant document */
  size_t with_answers;

  char *data_dir;
  struct ragd_config cfg;
  int cfg_ready;
  struct rag_engine engine;
  int engine_open;
  size_t documents, chunks, skipped;
  double ingest_s;
};

static uint64_t eval_hash(const char *s) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ULL;
  }
  return h;
}

static size_t eval_index_find(const struct eval *ev, const char *id) {
  size_t mask, pos;
  if (!ev->query_index.slot_count) return SIZE_MAX;
  mask = ev->query_index.slot_count - 1;
  pos = (size_t)eval_hash(id) & mask;
  while (ev->query_index.slots[pos]) {
    size_t q = ev->query_index.slots[pos] - 1;
    if (strcmp(ev->queries[q].id, id) == 0) return q;
    pos = (pos + 1) & mask;
  }
  return SIZE_MAX;
}

static ragd_err eval_index_build(struct eval *ev) {
  size_t slots = 16, i;
  while (slots < ev->query_count * 2 + 1) slots *= 2;
  ev->query_index.slots = calloc(slots, sizeof *ev->query_index.slots);
  if (!ev->query_index.slots) return RAGD_ENOMEM;
  ev->query_index.slot_count = slots;
  for (i = 0; i < ev->query_count; i++) {
    size_t pos = (size_t)eval_hash(ev->queries[i].id) & (slots - 1);
    while (ev->query_index.slots[pos]) pos = (pos + 1) & (slots - 1);
    ev->query_index.slots[pos] = i + 1;
  }
  return RAGD_OK;
}

static ragd_err eval_grow(void **items, size_t *cap, size_t need, size_t elem) {
  size_t new_cap;
  void *p;
  if (need <= *cap) return RAGD_OK;
  new_cap = *cap ? *cap * 2 : 16;
  while (new_cap < need) new_cap *= 2;
  if (new_cap > SIZE_MAX / elem) return RAGD_ENOMEM;
  p = realloc(*items, new_cap * elem);
  if (!p) return RAGD_ENOMEM;
  *items = p;
  *cap = new_cap;
  return RAGD_OK;
}

/* Reads a file line by line into a capped buffer; lineno counts from 1. */
struct eval_lines {
  const char *path;
  FILE *f;
  struct buf line;
  size_t lineno;
};

static int eval_lines_open(struct eval_lines *r, const char *path) {
  memset(r, 0, sizeof *r);
  r->path = path;
  buf_init(&r->line, EVAL_LINE_MAX);
  r->f = fopen(path, "rb");
  if (!r->f) {
    fprintf(stderr, "ragd eval: cannot open %s: %m\n", path);
    return -1;
  }
  return 0;
}

/* 1 with a line (without its line break), 0 at the end, -1 on error. */
static int eval_lines_next(struct eval_lines *r) {
  char block[65536];
  int got = 0;
  buf_reset(&r->line);
  while (fgets(block, sizeof block, r->f)) {
    size_t n = strlen(block);
    got = 1;
    if (buf_append(&r->line, block, n) != RAGD_OK) {
      fprintf(stderr, "ragd eval: %s:%zu: line longer than %u bytes\n", r->path, r->lineno + 1,
              EVAL_LINE_MAX);
      return -1;
    }
    if (n && block[n - 1] == '\n') break;
  }
  if (ferror(r->f)) {
    fprintf(stderr, "ragd eval: cannot read %s\n", r->path);
    return -1;
  }
  if (!got) return 0;
  r->lineno++;
  while (r->line.len && (r->line.data[r->line.len - 1] == '\n' ||
                         r->line.data[r->line.len - 1] == '\r'))
    r->line.data[--r->line.len] = '\0';
  return 1;
}

static void eval_lines_close(struct eval_lines *r) {
  if (r->f) fclose(r->f);
  buf_dispose(&r->line);
}

static int eval_blank(const struct buf *line) {
  return line->len == 0 || strspn(line->data, " \t") == line->len;
}

/* Parses one JSON line into an object; reports and returns -1 when it is not. */
static int eval_json_line(struct eval_lines *r, json_t **obj) {
  struct buf detail;
  ragd_err rc;
  buf_init(&detail, 0);
  rc = json_parse_object(r->line.data, r->line.len, obj, &detail);
  if (rc) {
    fprintf(stderr, "ragd eval: %s:%zu: not a JSON object: %s\n", r->path, r->lineno,
            detail.data ? detail.data : ragd_strerror(rc));
    buf_dispose(&detail);
    return -1;
  }
  buf_dispose(&detail);
  return 0;
}

/* The "_id" (BEIR) or "id" of obj as a string (integers accepted); NULL with
 * a report when there is none. */
static const char *eval_json_id(struct eval_lines *r, json_t *obj, char *num, size_t num_size) {
  json_t *v = json_object_get(obj, "_id");
  if (!v) v = json_object_get(obj, "id");
  if (v && json_is_string(v) && json_string_length(v) > 0) return json_string_value(v);
  if (v && json_is_integer(v)) {
    snprintf(num, num_size, "%lld", (long long)json_integer_value(v));
    return num;
  }
  fprintf(stderr, "ragd eval: %s:%zu: expected a non-empty string \"_id\" or \"id\"\n", r->path,
          r->lineno);
  return NULL;
}

static int eval_load_queries(struct eval *ev) {
  struct eval_lines r;
  int status = -1, got;
  json_t *obj = NULL;

  if (eval_lines_open(&r, ev->queries_path)) return -1;
  while ((got = eval_lines_next(&r)) > 0) {
    char num[32];
    const char *id, *text;
    struct eval_query *q;
    if (eval_blank(&r.line)) continue;
    if (eval_json_line(&r, &obj)) goto out;
    id = eval_json_id(&r, obj, num, sizeof num);
    if (!id) goto out;
    text = json_get_str(obj, "text");
    if (!text) {
      fprintf(stderr, "ragd eval: %s:%zu: expected a string \"text\"\n", r.path, r.lineno);
      goto out;
    }
    if (ev->limit && ev->query_count >= ev->limit) {
      json_decref(obj);
      obj = NULL;
      continue; /* still validated: a bad line is reported wherever it is */
    }
    if (eval_grow((void **)&ev->queries, &ev->query_cap, ev->query_count + 1,
                  sizeof *ev->queries))
      goto oom;
    q = &ev->queries[ev->query_count];
    memset(q, 0, sizeof *q);
    q->id = strdup(id);
    q->text = strdup(text);
    ev->query_count++;
    if (!q->id || !q->text) goto oom;
    json_decref(obj);
    obj = NULL;
  }
  if (got < 0) goto out;
  if (eval_index_build(ev)) goto oom;
  for (size_t i = 0; i < ev->query_count; i++) {
    if (eval_index_find(ev, ev->queries[i].id) != i) {
      fprintf(stderr, "ragd eval: %s: query id \"%s\" appears twice\n", r.path,
              ev->queries[i].id);
      goto out;
    }
  }
  status = 0;
  goto out;
oom:
  fprintf(stderr, "ragd eval: out of memory reading %s\n", r.path);
out:
  json_decref(obj);
  eval_lines_close(&r);
  return status;
}

/* Splits line into exactly n tab-separated fields (in place). */
static int eval_split_tabs(char *line, char **fields, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    char *tab = strchr(line, '\t');
    fields[i] = line;
    if (i + 1 < n) {
      if (!tab) return -1;
      *tab = '\0';
      line = tab + 1;
    } else if (tab) {
      return -1;
    }
  }
  return 0;
}

static int eval_parse_long(const char *s, long *out) {
  char *end;
  long v;
  while (*s == ' ') s++;
  if (!*s) return -1;
  v = strtol(s, &end, 10);
  while (*end == ' ') end++;
  if (*end) return -1;
  *out = v;
  return 0;
}

static int eval_load_qrels(struct eval *ev) {
  struct eval_lines r;
  int status = -1, got;

  if (eval_lines_open(&r, ev->qrels_path)) return -1;
  while ((got = eval_lines_next(&r)) > 0) {
    char *fields[3];
    long score;
    size_t q;
    struct eval_query *query;
    if (eval_blank(&r.line)) continue;
    if (eval_split_tabs(r.line.data, fields, 3) || !fields[0][0] || !fields[1][0]) {
      fprintf(stderr,
              "ragd eval: %s:%zu: expected three tab-separated fields: query-id, corpus-id, "
              "score\n",
              r.path, r.lineno);
      goto out;
    }
    if (eval_parse_long(fields[2], &score)) {
      if (r.lineno == 1) continue; /* the header */
      fprintf(stderr, "ragd eval: %s:%zu: score \"%s\" is not an integer\n", r.path, r.lineno,
              fields[2]);
      goto out;
    }
    q = eval_index_find(ev, fields[0]);
    if (q == SIZE_MAX || score <= 0) continue; /* another query set, or not relevant */
    query = &ev->queries[q];
    if (eval_grow((void **)&query->rels, &query->rel_cap, query->rel_count + 1,
                  sizeof *query->rels))
      goto oom;
    query->rels[query->rel_count].doc_id = strdup(fields[1]);
    query->rels[query->rel_count].score = score;
    if (!query->rels[query->rel_count].doc_id) goto oom;
    if (query->rel_count == 0) ev->judged++;
    query->rel_count++;
  }
  if (got < 0) goto out;
  status = 0;
  goto out;
oom:
  fprintf(stderr, "ragd eval: out of memory reading %s\n", r.path);
out:
  eval_lines_close(&r);
  return status;
}

/* Appends text with "[n]" / "[n, m]" citation marks (and the space before
 * them) removed. */
static ragd_err eval_strip_citations(const char *s, size_t len, struct buf *out) {
  size_t i = 0;
  ragd_err rc = RAGD_OK;
  while (i < len && !rc) {
    if (s[i] == '[') {
      size_t j = i + 1;
      int digits = 0;
      while (j < len && ((s[j] >= '0' && s[j] <= '9') || s[j] == ',' || s[j] == ' ')) {
        if (s[j] >= '0' && s[j] <= '9') digits = 1;
        j++;
      }
      if (digits && j < len && s[j] == ']') {
        while (out->len && out->data[out->len - 1] == ' ') out->data[--out->len] = '\0';
        i = j + 1;
        continue;
      }
    }
    rc = buf_append_char(out, s[i]);
    i++;
  }
  return rc;
}

/* NFKC + case fold, whitespace runs collapsed to one space, trimmed. NULL on
 * failure (invalid UTF-8 or memory). */
static char *eval_normalize(const char *s, size_t len) {
  char *norm = NULL, *w;
  size_t norm_len = 0, i;
  int space = 0;
  if (text_normalize(s, len, &norm, &norm_len)) return NULL;
  w = norm;
  for (i = 0; i < norm_len; i++) {
    char c = norm[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      space = w != norm;
      continue;
    }
    if (space) *w++ = ' ';
    space = 0;
    *w++ = c;
  }
  *w = '\0';
  return norm;
}

static int eval_load_answers(struct eval *ev) {
  struct eval_lines r;
  int status = -1, got;
  json_t *obj = NULL;

  if (eval_lines_open(&r, ev->answers_path)) return -1;
  while ((got = eval_lines_next(&r)) > 0) {
    char num[32];
    const char *id;
    json_t *list, *item;
    size_t q, i;
    struct eval_query *query;
    if (eval_blank(&r.line)) continue;
    if (eval_json_line(&r, &obj)) goto out;
    id = eval_json_id(&r, obj, num, sizeof num);
    if (!id) goto out;
    list = json_object_get(obj, "answers");
    if (!json_is_array(list)) {
      fprintf(stderr, "ragd eval: %s:%zu: expected an array of strings \"answers\"\n", r.path,
              r.lineno);
      goto out;
    }
    json_array_foreach(list, i, item) {
      if (!json_is_string(item)) {
        fprintf(stderr, "ragd eval: %s:%zu: answers[%zu] is not a string\n", r.path, r.lineno,
                i);
        goto out;
      }
    }
    q = eval_index_find(ev, id);
    if (q == SIZE_MAX || json_array_size(list) == 0) {
      json_decref(obj);
      obj = NULL;
      continue;
    }
    query = &ev->queries[q];
    if (query->answers) {
      fprintf(stderr, "ragd eval: %s:%zu: answers for query \"%s\" given twice\n", r.path,
              r.lineno, id);
      goto out;
    }
    query->answers = calloc(json_array_size(list), sizeof *query->answers);
    if (!query->answers) goto oom;
    json_array_foreach(list, i, item) {
      char *norm = eval_normalize(json_string_value(item), json_string_length(item));
      if (!norm) goto oom;
      if (!norm[0]) {
        free(norm);
        continue;
      }
      query->answers[query->answer_count++] = norm;
    }
    if (query->answer_count) ev->with_answers++;
    json_decref(obj);
    obj = NULL;
  }
  if (got < 0) goto out;
  status = 0;
  goto out;
oom:
  fprintf(stderr, "ragd eval: out of memory reading %s\n", r.path);
out:
  json_decref(obj);
  eval_lines_close(&r);
  return status;
}

/* ---- the temporary data folder and the corpus ---------------------------------- */

static int eval_rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)st;
  (void)type;
  (void)ftw;
  if (remove(path) != 0) log_warn("eval: cannot remove %s", path);
  return 0;
}

static void eval_remove_dir(const char *dir) {
  if (dir) nftw(dir, eval_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int eval_open_engine(struct eval *ev) {
  const char *tmp = getenv("TMPDIR");
  struct buf path, err;
  ragd_err rc;
  int status = -1;

  buf_init(&path, 4096);
  buf_init(&err, 0);
  if (buf_appendf(&path, "%s/ragd-eval-XXXXXX", tmp && tmp[0] ? tmp : "/tmp")) goto out;
  if (!mkdtemp(path.data)) {
    fprintf(stderr, "ragd eval: cannot create a temporary folder %s: %m\n", path.data);
    goto out;
  }
  ev->data_dir = buf_take(&path, NULL);
  if (!ev->data_dir) goto out;

  config_init(&ev->cfg);
  ev->cfg_ready = 1;
  rc = config_load_env(&ev->cfg, &err);
  if (!rc) rc = config_set(&ev->cfg, "RAGD_DATA", ev->data_dir, &err);
  if (!rc && ev->embedder) rc = config_set(&ev->cfg, "RAGD_EMBEDDER", ev->embedder, &err);
  /* Answers are measured for the offline generator, whatever RAGD_LLM_* say. */
  if (!rc) rc = config_set(&ev->cfg, "RAGD_LLM_PROVIDER", "extractive", &err);
  if (!rc) rc = config_finish(&ev->cfg, &err);
  if (rc) {
    fprintf(stderr, "ragd eval: configuration error: %s\n",
            err.data ? err.data : ragd_strerror(rc));
    goto out;
  }
  log_set_level((enum log_level)log_level_parse(ev->cfg.log_level));
  rc = rag_engine_open(&ev->cfg, 1, &ev->engine, &err);
  if (rc) {
    fprintf(stderr, "ragd eval: %s\n", err.data ? err.data : ragd_strerror(rc));
    goto out;
  }
  ev->engine_open = 1;
  status = 0;
out:
  buf_dispose(&path);
  buf_dispose(&err);
  return status;
}

/* Ingests the corpus line by line (title + text, format text, id = corpus id). */
static int eval_ingest(struct eval *ev) {
  struct eval_lines r;
  struct buf err;
  json_t *obj = NULL;
  int status = -1, got;
  int64_t t0 = clock_mono_us();

  buf_init(&err, 0);
  if (eval_lines_open(&r, ev->corpus_path)) {
    buf_dispose(&err);
    return -1;
  }
  while ((got = eval_lines_next(&r)) > 0) {
    char num[32];
    struct rag_doc_in doc;
    struct rag_ingest_result res;
    json_t *title;
    const char *id, *text;
    ragd_err rc;
    if (eval_blank(&r.line)) continue;
    if (eval_json_line(&r, &obj)) goto out;
    id = eval_json_id(&r, obj, num, sizeof num);
    if (!id) goto out;
    text = json_get_str(obj, "text");
    title = json_object_get(obj, "title");
    if (!text || (title && !json_is_string(title) && !json_is_null(title))) {
      fprintf(stderr, "ragd eval: %s:%zu: expected a string \"text\" (and \"title\", if any)\n",
              r.path, r.lineno);
      goto out;
    }
    memset(&doc, 0, sizeof doc);
    doc.id = id;
    /* An empty title would make the store fall back to the id as title,
     * which would add the id's words to the index. */
    doc.title = json_is_string(title) && json_string_length(title) ? json_string_value(title) : " ";
    doc.format = "text";
    doc.text = text;
    doc.text_len = strlen(text);
    buf_reset(&err);
    rc = rag_ingest(&ev->engine, &doc, &res, &err);
    if (rc == RAGD_EEMPTY) {
      /* Nothing to index (BEIR corpora have a few empty texts): the document
       * cannot be retrieved, which the metrics then show. */
      log_warn("eval: %s:%zu: document \"%s\" has no text; skipped", r.path, r.lineno, id);
      ev->skipped++;
      json_decref(obj);
      obj = NULL;
      continue;
    }
    if (rc) {
      fprintf(stderr, "ragd eval: %s:%zu: document \"%s\": %s\n", r.path, r.lineno, id,
              err.data ? err.data : ragd_strerror(rc));
      goto out;
    }
    if (res.status != STORE_PUT_CREATED) {
      fprintf(stderr, "ragd eval: %s:%zu: document id \"%s\" appears twice\n", r.path, r.lineno,
              id);
      free(res.document_id);
      goto out;
    }
    free(res.document_id);
    ev->documents++;
    ev->chunks += res.chunk_count;
    json_decref(obj);
    obj = NULL;
  }
  if (got < 0) goto out;
  if (strcmp(ev->engine.embedder.ops->name, "lsa") == 0) {
    /* lsa: fit over the whole corpus, as `ragd reindex` after a bulk load
     * would (the first document alone fitted the ingest-time model). */
    size_t embedded = 0, dropped = 0;
    ragd_err rc;
    buf_reset(&err);
    rc = rag_reindex(&ev->engine, NULL, NULL, &embedded, &dropped, &err);
    if (rc) {
      fprintf(stderr, "ragd eval: lsa fit: %s\n", err.data ? err.data : ragd_strerror(rc));
      goto out;
    }
  }
  ev->ingest_s = (double)(clock_mono_us() - t0) / 1e6;
  status = 0;
out:
  json_decref(obj);
  eval_lines_close(&r);
  buf_dispose(&err);
  return status;
}

/* ---- retrieval metrics -------------------------------------------------------- */

struct eval_mode_result {
  enum rag_search_mode mode;
  int available;
  const char *why; /* when not available */
  double recall[EVAL_RECALLS];
  double mrr, ndcg;
  double p50_ms, p99_ms;
};

static int eval_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int eval_cmp_long_desc(const void *a, const void *b) {
  long x = *(const long *)a, y = *(const long *)b;
  return x > y ? -1 : x < y;
}

/* Nearest-rank percentile of a sorted array. */
static double eval_percentile(const double *sorted, size_t n, double p) {
  size_t rank;
  if (!n) return 0.0;
  rank = (size_t)ceil(p / 100.0 * (double)n);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return sorted[rank - 1];
}

static long eval_rel_score(const struct eval_query *q, const char *doc_id) {
  size_t i;
  for (i = 0; i < q->rel_count; i++)
    if (strcmp(q->rels[i].doc_id, doc_id) == 0) return q->rels[i].score;
  return 0;
}

/* Scores one query's chunk ranking into the sums. gains is scratch space of
 * at least k longs. */
static void eval_score_query(const struct eval_query *q, const struct store_hit_list *hits,
                             long *gains, const char **seen, double *recall_sum,
                             double *mrr_sum, double *ndcg_sum) {
  size_t ranked = 0, i, j, found = 0, r;
  double dcg = 0.0, idcg = 0.0;
  long *ideal = gains + hits->count;
  int mrr_done = 0;

  for (i = 0; i < hits->count; i++) {
    const char *doc = hits->items[i].document_id;
    int dup = 0;
    for (j = 0; j < ranked && !dup; j++) dup = strcmp(seen[j], doc) == 0;
    if (dup) continue;
    seen[ranked] = doc;
    gains[ranked++] = eval_rel_score(q, doc);
  }
  for (r = 0; r < EVAL_RECALLS; r++) {
    found = 0;
    for (i = 0; i < ranked && i < eval_recall_depths[r]; i++) found += gains[i] > 0;
    recall_sum[r] += (double)found / (double)q->rel_count;
  }
  for (i = 0; i < ranked && i < EVAL_MRR_DEPTH && !mrr_done; i++) {
    if (gains[i] > 0) {
      *mrr_sum += 1.0 / (double)(i + 1);
      mrr_done = 1;
    }
  }
  for (i = 0; i < ranked && i < EVAL_NDCG_DEPTH; i++)
    dcg += (double)gains[i] / log2((double)i + 2.0);
  for (i = 0; i < q->rel_count; i++) ideal[i] = q->rels[i].score;
  qsort(ideal, q->rel_count, sizeof *ideal, eval_cmp_long_desc);
  for (i = 0; i < q->rel_count && i < EVAL_NDCG_DEPTH; i++)
    idcg += (double)ideal[i] / log2((double)i + 2.0);
  if (idcg > 0.0) *ndcg_sum += dcg / idcg;
}

static int eval_run_mode(struct eval *ev, struct eval_mode_result *res) {
  double recall_sum[EVAL_RECALLS] = {0}, mrr_sum = 0.0, ndcg_sum = 0.0;
  double *lat = NULL;
  long *gains = NULL;
  const char **seen = NULL;
  size_t max_rels = 0, n = 0, i, r;
  int status = -1;

  for (i = 0; i < ev->query_count; i++)
    if (ev->queries[i].rel_count > max_rels) max_rels = ev->queries[i].rel_count;
  lat = calloc(ev->judged + 1, sizeof *lat);
  gains = calloc(ev->k + max_rels + 1, sizeof *gains);
  seen = calloc(ev->k + 1, sizeof *seen);
  if (!lat || !gains || !seen) {
    fprintf(stderr, "ragd eval: out of memory\n");
    goto out;
  }
  res->available = 1;
  for (i = 0; i < ev->query_count; i++) {
    const struct eval_query *q = &ev->queries[i];
    struct store_hit_list hits = {0};
    struct rag_search_opts opts;
    int64_t t0;
    ragd_err rc;
    if (!q->rel_count) continue;
    memset(&opts, 0, sizeof opts);
    opts.query = q->text;
    opts.k = ev->k;
    opts.mode = res->mode;
    t0 = clock_mono_us();
    rc = rag_search_ex(&ev->engine, &opts, &hits);
    lat[n] = (double)(clock_mono_us() - t0) / 1000.0;
    if (rc == RAGD_EUNSUPPORTED) {
      store_hit_list_dispose(&hits);
      res->available = 0;
      res->why = ragd_strerror(rc);
      status = 0;
      goto out;
    }
    if (rc) {
      fprintf(stderr, "ragd eval: %s search for query \"%s\" failed: %s\n",
              rag_search_mode_name(res->mode), q->id, ragd_strerror(rc));
      goto out;
    }
    if (hits.count > ev->k) hits.count = ev->k; /* defensive: the scratch holds k */
    eval_score_query(q, &hits, gains, seen, recall_sum, &mrr_sum, &ndcg_sum);
    store_hit_list_dispose(&hits);
    n++;
  }
  qsort(lat, n, sizeof *lat, eval_cmp_double);
  for (r = 0; r < EVAL_RECALLS; r++) res->recall[r] = n ? recall_sum[r] / (double)n : 0.0;
  res->mrr = n ? mrr_sum / (double)n : 0.0;
  res->ndcg = n ? ndcg_sum / (double)n : 0.0;
  res->p50_ms = eval_percentile(lat, n, 50.0);
  res->p99_ms = eval_percentile(lat, n, 99.0);
  status = 0;
out:
  free(lat);
  free(gains);
  free(seen);
  return status;
}

/* ---- answers ------------------------------------------------------------------ */

struct eval_answers_result {
  size_t questions;
  double contains_answer;
  double answer_in_sources; /* a gold string is somewhere in the retrieved passages */
  double mean_chars;
  double with_citation;
  double citations_in_sources;
  double not_found; /* answers without any citation: nothing was quoted */
  double p50_ms, p99_ms;
};

/* One answer being collected. The extractive generator reports before
 * rag_answer_start returns, but the wait below does not rely on it. */
struct eval_collect {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int finished, failed;
  struct buf text;
  size_t cited, invalid;
  int in_sources;
  const struct eval_query *q;
  char error[256];
};

static int eval_contains_gold(const struct eval_query *q, const char *norm) {
  size_t i;
  for (i = 0; i < q->answer_count; i++)
    if (strstr(norm, q->answers[i])) return 1;
  return 0;
}

static void eval_on_sources(void *ctx, const struct store_hit_list *hits) {
  struct eval_collect *c = ctx;
  size_t i;
  for (i = 0; i < hits->count && !c->in_sources; i++) {
    const char *t = hits->items[i].text;
    char *norm = t ? eval_normalize(t, strlen(t)) : NULL;
    if (norm && eval_contains_gold(c->q, norm)) c->in_sources = 1;
    free(norm);
  }
}

static void eval_on_delta(void *ctx, const char *text, size_t len) {
  struct eval_collect *c = ctx;
  if (buf_append(&c->text, text, len)) c->failed = 1;
}

static void eval_finish(struct eval_collect *c, int failed) {
  pthread_mutex_lock(&c->mu);
  c->finished = 1;
  if (failed) c->failed = 1;
  pthread_cond_signal(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

static void eval_on_done(void *ctx, const char *finish_reason, const int *cited,
                         size_t cited_count, const int *invalid, size_t invalid_count) {
  struct eval_collect *c = ctx;
  (void)finish_reason;
  (void)cited;
  (void)invalid;
  c->cited = cited_count;
  c->invalid = invalid_count;
  eval_finish(c, 0);
}

static void eval_on_error(void *ctx, const char *code, const char *message) {
  struct eval_collect *c = ctx;
  snprintf(c->error, sizeof c->error, "%s: %s", code, message);
  eval_finish(c, 1);
}

static size_t eval_utf8_chars(const char *s, size_t len) {
  size_t i, n = 0;
  for (i = 0; i < len; i++) n += ((unsigned char)s[i] & 0xC0) != 0x80;
  return n;
}

static int eval_run_answers(struct eval *ev, struct eval_answers_result *res) {
  double *lat = NULL;
  size_t n = 0, contains = 0, in_sources = 0, chars = 0, with_cite = 0, cites = 0, valid = 0,
         none = 0, i;
  int status = -1;

  memset(res, 0, sizeof *res);
  lat = calloc(ev->with_answers + 1, sizeof *lat);
  if (!lat) {
    fprintf(stderr, "ragd eval: out of memory\n");
    return -1;
  }
  for (i = 0; i < ev->query_count; i++) {
    const struct eval_query *q = &ev->queries[i];
    struct eval_collect c;
    struct rag_question question;
    struct rag_events events;
    struct rag_answer *answer = NULL;
    struct buf stripped;
    const char *code = NULL;
    char *norm = NULL;
    int64_t t0;
    ragd_err rc;
    if (!q->answer_count) continue;
    memset(&c, 0, sizeof c);
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    buf_init(&c.text, EVAL_ANSWER_MAX);
    buf_init(&stripped, EVAL_ANSWER_MAX);
    c.q = q;
    memset(&question, 0, sizeof question);
    question.message = q->text;
    question.top_k = (size_t)ev->cfg.top_k;
    memset(&events, 0, sizeof events);
    events.ctx = &c;
    events.on_sources = eval_on_sources;
    events.on_delta = eval_on_delta;
    events.on_done = eval_on_done;
    events.on_error = eval_on_error;
    t0 = clock_mono_us();
    rc = rag_answer_start(&ev->engine, &question, &events, &answer, &code);
    if (rc) {
      fprintf(stderr, "ragd eval: answering query \"%s\" failed: %s (%s)\n", q->id,
              ragd_strerror(rc), code ? code : "");
    } else {
      pthread_mutex_lock(&c.mu);
      while (!c.finished) pthread_cond_wait(&c.cv, &c.mu);
      pthread_mutex_unlock(&c.mu);
      rag_answer_release(answer);
      lat[n] = (double)(clock_mono_us() - t0) / 1000.0;
      if (c.failed) {
        fprintf(stderr, "ragd eval: answering query \"%s\" failed: %s\n", q->id,
                c.error[0] ? c.error : "answer too long");
        rc = RAGD_EIO;
      }
    }
    if (!rc && c.text.len) rc = eval_strip_citations(c.text.data, c.text.len, &stripped);
    if (!rc) {
      norm = eval_normalize(stripped.data ? stripped.data : "", stripped.len);
      if (!norm) rc = RAGD_ENOMEM;
    }
    if (!rc) {
      n++;
      contains += eval_contains_gold(q, norm);
      in_sources += (size_t)c.in_sources;
      chars += eval_utf8_chars(c.text.data ? c.text.data : "", c.text.len);
      with_cite += c.cited > 0;
      none += c.cited == 0;
      cites += c.cited + c.invalid;
      valid += c.cited;
      log_debug("eval: %s: %s", q->id, c.text.data ? c.text.data : "");
    }
    free(norm);
    buf_dispose(&stripped);
    buf_dispose(&c.text);
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.cv);
    if (rc) goto out;
  }
  qsort(lat, n, sizeof *lat, eval_cmp_double);
  res->questions = n;
  if (n) {
    res->contains_answer = (double)contains / (double)n;
    res->answer_in_sources = (double)in_sources / (double)n;
    res->mean_chars = (double)chars / (double)n;
    res->with_citation = (double)with_cite / (double)n;
    res->not_found = (double)none / (double)n;
  }
  res->citations_in_sources = cites ? (double)valid / (double)cites : 1.0;
  res->p50_ms = eval_percentile(lat, n, 50.0);
  res->p99_ms = eval_percentile(lat, n, 99.0);
  status = 0;
out:
  free(lat);
  return status;
}

/* ---- output ------------------------------------------------------------------- */

static int eval_print_json(const struct eval *ev, const struct eval_mode_result *modes,
                           size_t mode_count, const struct eval_answers_result *ans) {
  json_t *root = json_object(), *jm = json_object();
  struct buf out;
  size_t i, r;
  int status = -1;

  buf_init(&out, 0);
  if (!root || !jm) goto out;
  json_object_set_new(root, "documents", json_integer((json_int_t)ev->documents));
  json_object_set_new(root, "chunks", json_integer((json_int_t)ev->chunks));
  json_object_set_new(root, "queries", json_integer((json_int_t)ev->judged));
  json_object_set_new(root, "k", json_integer((json_int_t)ev->k));
  for (i = 0; i < mode_count; i++) {
    const struct eval_mode_result *m = &modes[i];
    json_t *o;
    if (!m->available) {
      json_object_set_new(jm, rag_search_mode_name(m->mode), json_null());
      continue;
    }
    o = json_object();
    if (!o) goto out;
    for (r = 0; r < EVAL_RECALLS; r++) {
      char key[32];
      snprintf(key, sizeof key, "recall@%zu", eval_recall_depths[r]);
      json_object_set_new(o, key, json_real(m->recall[r]));
    }
    json_object_set_new(o, "mrr@10", json_real(m->mrr));
    json_object_set_new(o, "ndcg@10", json_real(m->ndcg));
    json_object_set_new(o, "p50_ms", json_real(m->p50_ms));
    json_object_set_new(o, "p99_ms", json_real(m->p99_ms));
    json_object_set_new(jm, rag_search_mode_name(m->mode), o);
  }
  json_object_set(root, "modes", jm);
  if (ans) {
    json_t *a = json_object();
    if (!a) goto out;
    json_object_set_new(a, "questions", json_integer((json_int_t)ans->questions));
    json_object_set_new(a, "contains_answer", json_real(ans->contains_answer));
    json_object_set_new(a, "answer_in_sources", json_real(ans->answer_in_sources));
    json_object_set_new(a, "mean_chars", json_real(ans->mean_chars));
    json_object_set_new(a, "with_citation", json_real(ans->with_citation));
    json_object_set_new(a, "citations_in_sources", json_real(ans->citations_in_sources));
    json_object_set_new(a, "not_found", json_real(ans->not_found));
    json_object_set_new(a, "p50_ms", json_real(ans->p50_ms));
    json_object_set_new(a, "p99_ms", json_real(ans->p99_ms));
    json_object_set_new(root, "answers", a);
  }
  if (json_append(&out, root)) goto out;
  printf("%s\n", out.data);
  status = 0;
out:
  json_decref(jm);
  json_decref(root);
  buf_dispose(&out);
  return status;
}

static void eval_print_table(const struct eval *ev, const struct eval_mode_result *modes,
                             size_t mode_count, const struct eval_answers_result *ans) {
  size_t i, r;
  printf("%zu documents (%zu chunks) ingested in %.1f s; %zu judged queries; %zu chunks per "
         "query\n\n",
         ev->documents, ev->chunks, ev->ingest_s, ev->judged, ev->k);
  printf("%-8s %7s %7s %7s %7s %7s %7s %8s %8s\n", "mode", "R@1", "R@5", "R@10", "R@20",
         "MRR@10", "nDCG@10", "p50 ms", "p99 ms");
  for (i = 0; i < mode_count; i++) {
    const struct eval_mode_result *m = &modes[i];
    printf("%-8s", rag_search_mode_name(m->mode));
    if (!m->available) {
      printf(" unavailable (%s)\n", m->why ? m->why : "unsupported");
      continue;
    }
    for (r = 0; r < EVAL_RECALLS; r++) printf(" %7.3f", m->recall[r]);
    printf(" %7.3f %7.3f %8.2f %8.2f\n", m->mrr, m->ndcg, m->p50_ms, m->p99_ms);
  }
  if (ans) {
    printf("\nanswers (extractive generator, %ld passages per question): %zu questions\n",
           ev->cfg.top_k, ans->questions);
    printf("  contains a gold answer   %.3f\n", ans->contains_answer);
    printf("  gold answer in sources   %.3f\n", ans->answer_in_sources);
    printf("  mean length              %.1f characters\n", ans->mean_chars);
    printf("  with a citation          %.3f\n", ans->with_citation);
    printf("  citations into sources   %.3f\n", ans->citations_in_sources);
    printf("  not found (no quote)     %.3f\n", ans->not_found);
    printf("  time per answer          p50 %.2f ms, p99 %.2f ms\n", ans->p50_ms, ans->p99_ms);
  }
}

/* ---- the command ----------------------------------------------------------------- */

static int eval_parse_size(const char *flag, const char *v, size_t min, size_t max,
                           size_t *out) {
  long n;
  if (eval_parse_long(v, &n) || n < (long)min || (size_t)n > max) {
    fprintf(stderr, "ragd eval: %s: expected an integer from %zu to %zu, got \"%s\"\n", flag, min,
            max, v);
    return -1;
  }
  *out = (size_t)n;
  return 0;
}

/* 0 ok, 1 help, -1 usage error. */
static int eval_parse_args(int argc, char **argv, struct eval *ev) {
  static const char *const flags[] = {"--corpus", "--queries",       "--qrels",
                                      "--mode",   "--k",             "--answers",
                                      "--limit-queries", "--embedder"};
  int i;
  ev->k = EVAL_K_DEFAULT;
  ev->mode_name = "all";
  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *value = NULL;
    size_t f, n;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) return 1;
    if (strcmp(a, "--json") == 0) {
      ev->json = 1;
      continue;
    }
    for (f = 0; f < sizeof flags / sizeof flags[0]; f++) {
      n = strlen(flags[f]);
      if (strncmp(a, flags[f], n) == 0 && (a[n] == '\0' || a[n] == '=')) break;
    }
    if (f == sizeof flags / sizeof flags[0]) {
      fprintf(stderr, "ragd eval: unknown option or argument %s (see ragd eval --help)\n", a);
      return -1;
    }
    n = strlen(flags[f]);
    if (a[n] == '=') {
      value = a + n + 1;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      fprintf(stderr, "ragd eval: %s needs a value\n", a);
      return -1;
    }
    switch (f) {
      case 0: ev->corpus_path = value; break;
      case 1: ev->queries_path = value; break;
      case 2: ev->qrels_path = value; break;
      case 3: ev->mode_name = value; break;
      case 4:
        if (eval_parse_size("--k", value, 1, EVAL_K_MAX, &ev->k)) return -1;
        break;
      case 5: ev->answers_path = value; break;
      case 6:
        if (eval_parse_size("--limit-queries", value, 1, SIZE_MAX / 4, &ev->limit)) return -1;
        break;
      default: ev->embedder = value; break;
    }
  }
  if (!ev->corpus_path || !ev->queries_path || !ev->qrels_path) {
    fprintf(stderr, "ragd eval: --corpus, --queries and --qrels are required\n");
    return -1;
  }
  if (strcmp(ev->mode_name, "all") != 0 && rag_search_mode_parse(ev->mode_name) < 0) {
    fprintf(stderr, "ragd eval: --mode: expected hybrid, keyword, vector or all, got \"%s\"\n",
            ev->mode_name);
    return -1;
  }
  return 0;
}

static void eval_dispose(struct eval *ev) {
  size_t i, j;
  if (ev->engine_open) rag_engine_close(&ev->engine);
  if (ev->cfg_ready) config_dispose(&ev->cfg);
  eval_remove_dir(ev->data_dir);
  free(ev->data_dir);
  for (i = 0; i < ev->query_count; i++) {
    struct eval_query *q = &ev->queries[i];
    for (j = 0; j < q->rel_count; j++) free(q->rels[j].doc_id);
    for (j = 0; j < q->answer_count; j++) free(q->answers[j]);
    free(q->rels);
    free(q->answers);
    free(q->id);
    free(q->text);
  }
  free(ev->queries);
  free(ev->query_index.slots);
}

int cli_eval(int argc, char **argv) {
  static const enum rag_search_mode all_modes[] = {RAG_SEARCH_KEYWORD, RAG_SEARCH_VECTOR,
                                                   RAG_SEARCH_HYBRID};
  struct eval ev;
  struct eval_mode_result modes[3];
  struct eval_answers_result answers;
  size_t mode_count = 0, i;
  int status = 1, parsed;

  memset(&ev, 0, sizeof ev);
  memset(modes, 0, sizeof modes);
  parsed = eval_parse_args(argc, argv, &ev);
  if (parsed) {
    fputs(help, parsed > 0 ? stdout : stderr);
    return parsed > 0 ? 0 : 2;
  }
  if (strcmp(ev.mode_name, "all") == 0) {
    for (i = 0; i < 3; i++) modes[mode_count++].mode = all_modes[i];
  } else {
    modes[mode_count++].mode = (enum rag_search_mode)rag_search_mode_parse(ev.mode_name);
  }

  if (eval_load_queries(&ev) || eval_load_qrels(&ev)) goto out;
  if (ev.answers_path && eval_load_answers(&ev)) goto out;
  if (!ev.judged && !ev.with_answers) {
    fprintf(stderr, "ragd eval: no query of %s has a relevant document in %s\n", ev.queries_path,
            ev.qrels_path);
    goto out;
  }
  if (eval_open_engine(&ev) || eval_ingest(&ev)) goto out;
  for (i = 0; i < mode_count; i++)
    if (eval_run_mode(&ev, &modes[i])) goto out;
  if (ev.answers_path && eval_run_answers(&ev, &answers)) goto out;
  if (ev.json) {
    if (eval_print_json(&ev, modes, mode_count, ev.answers_path ? &answers : NULL)) goto out;
  } else {
    eval_print_table(&ev, modes, mode_count, ev.answers_path ? &answers : NULL);
  }
  fflush(stdout);
  status = 0;
out:
  eval_dispose(&ev);
  return status;
}
