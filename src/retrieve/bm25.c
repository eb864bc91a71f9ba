/* bm25.c - the in-memory keyword index (see retrieve.h, "keyword index").
 *
 * Layout: every chunk gets a slot (append-only; a removed chunk's slot is
 * dead until the next compaction). A term dictionary (open addressing over
 * the term bytes) maps each term to its posting list: (slot, occurrences in
 * title / heading path / text), slots ascending. Each slot remembers its
 * distinct terms (the forward list) so that removing a chunk can lower the
 * document frequencies at once; the dead postings themselves are skipped by
 * searches and dropped when dead slots outnumber live ones.
 *
 * Scoring is SQLite FTS5's bm25() (fts5_aux.c) term for term, so the two
 * rank alike: for each query phrase i (the query's distinct terms),
 *   idf_i = log((N - n_i + 0.5) / (n_i + 0.5)), or 1e-6 when that is <= 0
 *   f_i   = sum over the chunk's occurrences of the column weight
 *   score = sum_i idf_i * f_i * (k1 + 1) / (f_i + k1 * (1 - b + b * D / avgdl))
 * with N live chunks, n_i those holding term i, D the chunk's token count over
 * all columns and avgdl the mean of D. Terms are added in query order, which
 * is FTS5's order too, so equal inputs give bit-equal sums.
 *
 * Search is MaxScore, document at a time (kw_search_maxscore says how):
 * each term carries a bound on what it can add to a chunk (its largest
 * weighted frequency over its shortest chunk), so once the top k is full the
 * low-IDF terms ("how", "to", "the") are only probed for chunks that can
 * still enter it. Its results equal the exhaustive term-at-a-time search's
 * (kw_search_exhaustive, a dense accumulator per slot borrowed from a small
 * pool) bit for bit; tests/unit/test_retrieve_bm25.c checks the two. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "retrieve/retrieve.h"
#include "text/text.h"
#include "util/buf.h"

#define KW_STEM_MAX 64
#define KW_QUERY_TERMS_MAX 1024 /* as the SQLite store's MATCH expression */
#define KW_SCRATCH_POOL 8
#define KW_COUNT_MAX 65535

struct kw_posting {
  uint32_t slot;
  uint16_t c[3]; /* occurrences in title, heading path, text */
};

struct kw_term {
  uint32_t off, len; /* bytes in the pool */
  uint32_t hash;
  uint32_t df; /* live chunks holding the term */
  uint32_t add_mark, add_pos; /* retrieve_bm25_add: the serial of the add that last met the
                                 term, and the term's index in that add's list */
  struct kw_posting *post;
  uint32_t npost, cap;
  /* For the search's score bound: the largest weighted frequency and the
   * fewest tokens of any chunk ever posted here (removals leave them, so
   * they bound a superset of the live postings) */
  double f_max;
  uint32_t len_min;
};

struct kw_slot {
  int64_t id, group;
  uint32_t len;        /* tokens over all columns */
  uint32_t fwd_off;    /* first of its distinct term ids in fwd */
  uint32_t fwd_len;
  uint32_t alive;
};

struct kw_scratch {
  double *acc;
  uint8_t *seen;
  uint32_t *touched;
  size_t cap;
};

struct retrieve_bm25 {
  struct retrieve_bm25_params p;
  struct buf pool; /* term bytes */
  struct kw_term *terms;
  size_t nterms, terms_cap;
  uint32_t *dict; /* pairs (term id + 1, hash); id 0 = empty; dict_cap pairs (a power of 2) */
  size_t dict_cap;
  struct kw_slot *slots;
  size_t nslots, slots_cap, live;
  uint32_t *fwd;
  size_t nfwd, fwd_cap;
  /* chunk id -> slot + 1 */
  int64_t *idmap_keys;
  uint32_t *idmap_vals;
  size_t idmap_cap, idmap_used; /* used counts tombstones too */
  uint64_t total_len; /* tokens of the live chunks */
  int64_t max_group;  /* bound on every group ever added (never lowered); INT64_MIN: none */
  uint32_t add_serial;  /* counts retrieve_bm25_add calls, never 0 */
  /* norm[slot] = k1 * (1 - b + b * D / avgdl), or -1 for a dead slot; valid
   * while norm_serial == serial (writers bump serial) */
  double *norm;
  size_t norm_cap;
  uint64_t serial, norm_serial;
  pthread_mutex_t scratch_mu; /* also guards the norm refresh among readers */
  struct kw_scratch *scratch[KW_SCRATCH_POOL];
  size_t nscratch;
};

void retrieve_bm25_params_default(struct retrieve_bm25_params *p) {
  p->k1 = 1.2;
  p->b = 0.75;
  p->w_title = 2.0;
  p->w_heading = 1.5;
  p->w_text = 1.0;
  p->tokens = RETRIEVE_TOKENS_BIGRAMS;
}

static uint32_t kw_hash(const char *s, size_t n) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

static uint64_t id_hash(int64_t id) {
  uint64_t x = (uint64_t)id;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

#define IDMAP_EMPTY 0u
#define IDMAP_GONE UINT32_MAX

static ragd_err idmap_put(struct retrieve_bm25 *ix, int64_t id, uint32_t slot);

static ragd_err idmap_grow(struct retrieve_bm25 *ix) {
  size_t old_cap = ix->idmap_cap, i;
  int64_t *old_keys = ix->idmap_keys;
  uint32_t *old_vals = ix->idmap_vals;
  size_t cap = old_cap ? old_cap : 1024;
  while (cap < (ix->live + 1) * 4) cap *= 2;
  ix->idmap_keys = malloc(cap * sizeof *ix->idmap_keys);
  ix->idmap_vals = calloc(cap, sizeof *ix->idmap_vals);
  if (!ix->idmap_keys || !ix->idmap_vals) {
    free(ix->idmap_keys);
    free(ix->idmap_vals);
    ix->idmap_keys = old_keys;
    ix->idmap_vals = old_vals;
    return RAGD_ENOMEM;
  }
  ix->idmap_cap = cap;
  ix->idmap_used = 0;
  for (i = 0; i < old_cap; i++)
    if (old_vals[i] != IDMAP_EMPTY && old_vals[i] != IDMAP_GONE)
      idmap_put(ix, old_keys[i], old_vals[i] - 1);
  free(old_keys);
  free(old_vals);
  return RAGD_OK;
}

/* Index in the id map of id, or of the empty cell where it would go. */
static size_t idmap_find(const struct retrieve_bm25 *ix, int64_t id) {
  size_t mask = ix->idmap_cap - 1, i = (size_t)id_hash(id) & mask;
  while (ix->idmap_vals[i] != IDMAP_EMPTY) {
    if (ix->idmap_vals[i] != IDMAP_GONE && ix->idmap_keys[i] == id) return i;
    i = (i + 1) & mask;
  }
  return i;
}

static ragd_err idmap_put(struct retrieve_bm25 *ix, int64_t id, uint32_t slot) {
  size_t i;
  if ((ix->idmap_used + 1) * 2 > ix->idmap_cap) {
    ragd_err rc = idmap_grow(ix);
    if (rc) return rc;
  }
  i = idmap_find(ix, id);
  if (ix->idmap_vals[i] == IDMAP_EMPTY) ix->idmap_used++;
  ix->idmap_keys[i] = id;
  ix->idmap_vals[i] = slot + 1;
  return RAGD_OK;
}

/* Slot of id, or -1. */
static long idmap_get(const struct retrieve_bm25 *ix, int64_t id) {
  size_t i;
  if (!ix->idmap_cap) return -1;
  i = idmap_find(ix, id);
  return ix->idmap_vals[i] == IDMAP_EMPTY ? -1 : (long)ix->idmap_vals[i] - 1;
}

static void idmap_del(struct retrieve_bm25 *ix, int64_t id) {
  size_t i;
  if (!ix->idmap_cap) return;
  i = idmap_find(ix, id);
  if (ix->idmap_vals[i] != IDMAP_EMPTY) ix->idmap_vals[i] = IDMAP_GONE;
}

ragd_err retrieve_bm25_create(const struct retrieve_bm25_params *p, struct retrieve_bm25 **out) {
  struct retrieve_bm25 *ix;
  *out = NULL;
  if (!p || !(p->k1 >= 0) || !(p->b >= 0 && p->b <= 1) || !(p->w_title >= 0) ||
      !(p->w_heading >= 0) || !(p->w_text >= 0) ||
      (p->tokens != RETRIEVE_TOKENS_BIGRAMS && p->tokens != RETRIEVE_TOKENS_WORDS &&
       p->tokens != RETRIEVE_TOKENS_BOTH))
    return RAGD_EINVAL;
  ix = calloc(1, sizeof *ix);
  if (!ix) return RAGD_ENOMEM;
  ix->p = *p;
  ix->max_group = INT64_MIN;
  buf_init(&ix->pool, 0);
  if (pthread_mutex_init(&ix->scratch_mu, NULL) != 0) {
    free(ix);
    return RAGD_ENOMEM;
  }
  *out = ix;
  return RAGD_OK;
}

void retrieve_bm25_destroy(struct retrieve_bm25 *ix) {
  size_t i;
  if (!ix) return;
  for (i = 0; i < ix->nterms; i++) free(ix->terms[i].post);
  for (i = 0; i < ix->nscratch; i++) {
    free(ix->scratch[i]->acc);
    free(ix->scratch[i]->seen);
    free(ix->scratch[i]->touched);
    free(ix->scratch[i]);
  }
  pthread_mutex_destroy(&ix->scratch_mu);
  free(ix->norm);
  free(ix->terms);
  free(ix->dict);
  free(ix->slots);
  free(ix->fwd);
  free(ix->idmap_keys);
  free(ix->idmap_vals);
  buf_dispose(&ix->pool);
  free(ix);
}

/* ---- terms ---------------------------------------------------------------------------- */

/* Term id of (s, n), or -1; *cell receives the dictionary cell. */
static long dict_find(const struct retrieve_bm25 *ix, const char *s, size_t n, uint32_t h,
                      size_t *cell) {
  size_t mask, i;
  if (!ix->dict_cap) return -1;
  mask = ix->dict_cap - 1;
  for (i = h & mask; ix->dict[2 * i]; i = (i + 1) & mask) {
    if (ix->dict[2 * i + 1] != h) continue;
    const struct kw_term *t = &ix->terms[ix->dict[2 * i] - 1];
    if (t->len == n && memcmp(ix->pool.data + t->off, s, n) == 0) {
      if (cell) *cell = i;
      return (long)ix->dict[2 * i] - 1;
    }
  }
  if (cell) *cell = i;
  return -1;
}

static ragd_err dict_grow(struct retrieve_bm25 *ix) {
  size_t cap = ix->dict_cap ? ix->dict_cap * 2 : 4096, i;
  uint32_t *d = calloc(2 * cap, sizeof *d);
  if (!d) return RAGD_ENOMEM;
  for (i = 0; i < ix->nterms; i++) {
    size_t j = ix->terms[i].hash & (cap - 1);
    while (d[2 * j]) j = (j + 1) & (cap - 1);
    d[2 * j] = (uint32_t)i + 1;
    d[2 * j + 1] = ix->terms[i].hash;
  }
  free(ix->dict);
  ix->dict = d;
  ix->dict_cap = cap;
  return RAGD_OK;
}

/* Term id of (s, n), added when new. */
static ragd_err term_intern(struct retrieve_bm25 *ix, const char *s, size_t n, uint32_t *id) {
  uint32_t h = kw_hash(s, n);
  size_t cell = 0;
  long found;
  struct kw_term *t;
  ragd_err rc;
  if ((ix->nterms + 1) * 2 > ix->dict_cap) {
    rc = dict_grow(ix);
    if (rc) return rc;
  }
  found = dict_find(ix, s, n, h, &cell);
  if (found >= 0) {
    *id = (uint32_t)found;
    return RAGD_OK;
  }
  if (ix->nterms == ix->terms_cap) {
    size_t cap = ix->terms_cap ? ix->terms_cap * 2 : 1024;
    struct kw_term *g = realloc(ix->terms, cap * sizeof *g);
    if (!g) return RAGD_ENOMEM;
    ix->terms = g;
    ix->terms_cap = cap;
  }
  t = &ix->terms[ix->nterms];
  memset(t, 0, sizeof *t);
  t->off = (uint32_t)ix->pool.len;
  t->len = (uint32_t)n;
  t->hash = h;
  rc = buf_append(&ix->pool, s, n);
  if (rc) return rc;
  ix->dict[2 * cell] = (uint32_t)ix->nterms + 1;
  ix->dict[2 * cell + 1] = h;
  *id = (uint32_t)ix->nterms++;
  return RAGD_OK;
}

/* ---- tokenizing ----------------------------------------------------------------------- */

/* One term as the index sees it: text_tokenize's term, stemmed like the
 * SQLite store's FTS5 tokenizer does. */
typedef int (*kw_term_cb)(void *ctx, const char *term, size_t len);

struct kw_tok {
  int mode;
  kw_term_cb cb;
  void *ctx;
  /* words/both: the CJK run being merged from overlapping bigrams */
  struct buf run;
  size_t run_end, run_terms;
  int stop;
};

static int kw_emit(struct kw_tok *t, const char *term, size_t len) {
  char stem[KW_STEM_MAX];
  if (len <= sizeof stem) {
    len = text_stem_en(term, len, stem);
    term = stem;
  }
  if (t->cb(t->ctx, term, len)) {
    t->stop = 1;
    return 1;
  }
  return 0;
}

/* words/both: a finished run of two or more bigrams is one more term (both)
 * or the only term (words); a run of one bigram is that bigram. */
static int kw_flush_run(struct kw_tok *t) {
  int r = 0;
  if (t->run_terms == 0) return 0;
  if (t->mode == RETRIEVE_TOKENS_WORDS || t->run_terms > 1) r = kw_emit(t, t->run.data, t->run.len);
  buf_reset(&t->run);
  t->run_terms = 0;
  return r;
}

static size_t utf8_first_len(const char *s, size_t n) {
  size_t i = 1;
  while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80) i++;
  return i;
}

static int kw_on_term(void *ctx, const char *term, size_t len, size_t start, size_t end) {
  struct kw_tok *t = ctx;
  if (len == 0 || end <= start) return 0;
  if (t->mode == RETRIEVE_TOKENS_BIGRAMS) return kw_emit(t, term, len);
  /* Overlapping spans are the bigrams of one CJK run (nothing else overlaps). */
  if (t->run_terms && start < t->run_end) {
    size_t skip = utf8_first_len(term, len);
    if (buf_append(&t->run, term + skip, len - skip)) return t->stop = 1;
    t->run_end = end;
    t->run_terms++;
    return t->mode == RETRIEVE_TOKENS_BOTH ? kw_emit(t, term, len) : 0;
  }
  if (kw_flush_run(t)) return 1;
  /* a possible run start: a term of CJK characters (bigram or single) */
  if (t->mode == RETRIEVE_TOKENS_BOTH && kw_emit(t, term, len)) return 1;
  buf_reset(&t->run);
  if (buf_append(&t->run, term, len)) return t->stop = 1;
  t->run_end = end;
  t->run_terms = 1;
  return 0;
}

/* Calls cb for every term of s under the index's token mode. */
static ragd_err kw_tokenize(int mode, const char *s, size_t len, kw_term_cb cb, void *ctx) {
  struct kw_tok t;
  ragd_err rc;
  memset(&t, 0, sizeof t);
  t.mode = mode;
  t.cb = cb;
  t.ctx = ctx;
  buf_init(&t.run, 0);
  rc = text_tokenize(s, len, kw_on_term, &t);
  if (!rc && mode != RETRIEVE_TOKENS_BIGRAMS && t.run_terms) {
    /* a run's single term was held back in case a bigram followed */
    if (mode == RETRIEVE_TOKENS_WORDS || t.run_terms > 1) kw_emit(&t, t.run.data, t.run.len);
  }
  buf_dispose(&t.run);
  if (rc == RAGD_ECANCELLED || t.stop) return RAGD_ECANCELLED;
  return rc;
}

/* ---- adding and removing ------------------------------------------------------------------ */

struct kw_doc_term {
  uint32_t term;
  uint16_t c[3];
};

struct kw_add {
  struct retrieve_bm25 *ix;
  struct kw_doc_term *items;
  size_t count, cap;
  int col;
  uint32_t mark; /* this add's serial (see kw_term.add_mark) */
  uint32_t tokens;
  ragd_err rc;
};

static int kw_add_term(void *ctx, const char *term, size_t len) {
  struct kw_add *a = ctx;
  struct kw_term *t;
  uint32_t id;
  size_t i;
  a->rc = term_intern(a->ix, term, len, &id);
  if (a->rc) return 1;
  a->tokens++;
  t = &a->ix->terms[id];
  if (t->add_mark == a->mark) {
    i = t->add_pos;
    if (a->items[i].c[a->col] < KW_COUNT_MAX) a->items[i].c[a->col]++;
    return 0;
  }
  t->add_mark = a->mark;
  t->add_pos = (uint32_t)a->count;
  if (a->count == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 64;
    struct kw_doc_term *g = realloc(a->items, cap * sizeof *g);
    if (!g) {
      a->rc = RAGD_ENOMEM;
      return 1;
    }
    a->items = g;
    a->cap = cap;
  }
  memset(&a->items[a->count], 0, sizeof a->items[0]);
  a->items[a->count].term = id;
  a->items[a->count].c[a->col] = 1;
  a->count++;
  return 0;
}

static ragd_err posting_push(struct kw_term *t, uint32_t slot, const uint16_t c[3], double f,
                             uint32_t len) {
  if (t->npost == t->cap) {
    uint32_t cap = t->cap ? t->cap * 2 : 4;
    struct kw_posting *g = realloc(t->post, cap * sizeof *g);
    if (!g) return RAGD_ENOMEM;
    t->post = g;
    t->cap = cap;
  }
  t->post[t->npost].slot = slot;
  memcpy(t->post[t->npost].c, c, sizeof t->post[0].c);
  t->npost++;
  t->df++;
  if (f > t->f_max) t->f_max = f;
  if (t->npost == 1 || len < t->len_min) t->len_min = len;
  return RAGD_OK;
}

/* k1 * (1 - b + b * D / avgdl) for a chunk of D tokens: the norm[] of a
 * slot, and the smallest one a term can meet (its bound). */
static double kw_norm(double k1, double b, uint32_t tokens, double avgdl) {
  return k1 * (1 - b + b * (double)tokens / avgdl);
}

/* The weighted frequency of one posting: FTS5 adds the column weight once
 * per occurrence; a product is the same sum (exactly for the default
 * weights, to an ulp otherwise). Searches and the bound use this one
 * expression so that they agree bit for bit. */
static double kw_weighted(const struct retrieve_bm25 *ix, const uint16_t c[3]) {
  return ix->p.w_title * c[0] + ix->p.w_heading * c[1] + ix->p.w_text * c[2];
}

ragd_err retrieve_bm25_add(struct retrieve_bm25 *ix, int64_t id, int64_t group, const char *title,
                           const char *heading_path, const char *text, size_t text_len) {
  const char *cols[3] = {title ? title : "", heading_path ? heading_path : "", text ? text : ""};
  size_t lens[3] = {strlen(cols[0]), strlen(cols[1]), text ? text_len : 0};
  struct kw_add a;
  struct kw_slot *s;
  uint32_t slot;
  size_t i;
  ragd_err rc = RAGD_OK;

  if (!ix) return RAGD_EINVAL;
  if (idmap_get(ix, id) >= 0) retrieve_bm25_remove(ix, id);
  if (ix->nslots >= UINT32_MAX - 1) return RAGD_ENOMEM;
  memset(&a, 0, sizeof a);
  a.ix = ix;
  if (++ix->add_serial == 0) { /* wrapped: no term may keep an old serial */
    for (i = 0; i < ix->nterms; i++) ix->terms[i].add_mark = 0;
    ix->add_serial = 1;
  }
  a.mark = ix->add_serial;
  for (i = 0; i < 3 && !rc; i++) {
    a.col = (int)i;
    rc = kw_tokenize(ix->p.tokens, cols[i], lens[i], kw_add_term, &a);
    if (rc == RAGD_ECANCELLED) rc = a.rc ? a.rc : RAGD_ENOMEM;
  }
  if (rc) goto out;
  if (ix->nslots == ix->slots_cap) {
    size_t cap = ix->slots_cap ? ix->slots_cap * 2 : 1024;
    struct kw_slot *g = realloc(ix->slots, cap * sizeof *g);
    if (!g) {
      rc = RAGD_ENOMEM;
      goto out;
    }
    ix->slots = g;
    ix->slots_cap = cap;
  }
  if (ix->nfwd + a.count > ix->fwd_cap) {
    size_t cap = ix->fwd_cap ? ix->fwd_cap : 4096;
    uint32_t *g;
    while (cap < ix->nfwd + a.count) cap *= 2;
    g = realloc(ix->fwd, cap * sizeof *g);
    if (!g) {
      rc = RAGD_ENOMEM;
      goto out;
    }
    ix->fwd = g;
    ix->fwd_cap = cap;
  }
  slot = (uint32_t)ix->nslots;
  rc = idmap_put(ix, id, slot);
  if (rc) goto out;
  for (i = 0; i < a.count; i++) {
    const uint16_t *c = a.items[i].c;
    rc = posting_push(&ix->terms[a.items[i].term], slot, c, kw_weighted(ix, c), a.tokens);
    if (rc) {
      /* undo the postings already pushed: they are the last of their lists */
      while (i-- > 0) {
        ix->terms[a.items[i].term].npost--;
        ix->terms[a.items[i].term].df--;
      }
      idmap_del(ix, id);
      goto out;
    }
    ix->fwd[ix->nfwd + i] = a.items[i].term;
  }
  s = &ix->slots[slot];
  s->id = id;
  s->group = group;
  if (group > ix->max_group) ix->max_group = group;
  s->len = a.tokens;
  s->fwd_off = (uint32_t)ix->nfwd;
  s->fwd_len = (uint32_t)a.count;
  s->alive = 1;
  ix->nfwd += a.count;
  ix->serial++;
  ix->nslots++;
  ix->live++;
  ix->total_len += a.tokens;
out:
  free(a.items);
  return rc;
}

/* Drops dead slots from every posting list and renumbers the live ones. */
static void kw_compact(struct retrieve_bm25 *ix) {
  uint32_t *renum = malloc((ix->nslots + 1) * sizeof *renum);
  size_t i, j, nfwd = 0, n = 0;
  if (!renum) return; /* stays correct, only larger */
  for (i = 0; i < ix->nslots; i++) {
    struct kw_slot s = ix->slots[i];
    renum[i] = UINT32_MAX;
    if (!s.alive) continue;
    renum[i] = (uint32_t)n;
    memmove(&ix->fwd[nfwd], &ix->fwd[s.fwd_off], s.fwd_len * sizeof *ix->fwd);
    s.fwd_off = (uint32_t)nfwd;
    nfwd += s.fwd_len;
    ix->slots[n++] = s;
  }
  for (i = 0; i < ix->nterms; i++) {
    struct kw_term *t = &ix->terms[i];
    size_t kept = 0;
    for (j = 0; j < t->npost; j++) {
      uint32_t r = renum[t->post[j].slot];
      if (r == UINT32_MAX) continue;
      t->post[kept] = t->post[j];
      t->post[kept++].slot = r;
    }
    t->npost = (uint32_t)kept;
  }
  ix->nslots = n;
  ix->nfwd = nfwd;
  ix->serial++;
  for (i = 0; i < ix->idmap_cap; i++)
    if (ix->idmap_vals[i] != IDMAP_EMPTY && ix->idmap_vals[i] != IDMAP_GONE)
      ix->idmap_vals[i] = renum[ix->idmap_vals[i] - 1] + 1;
  free(renum);
  /* the id map's tombstones go with a rebuild at the current size */
  idmap_grow(ix);
}

static void kw_kill(struct retrieve_bm25 *ix, uint32_t slot) {
  struct kw_slot *s = &ix->slots[slot];
  for (uint32_t i = 0; i < s->fwd_len; i++) ix->terms[ix->fwd[s->fwd_off + i]].df--;
  s->alive = 0;
  ix->serial++;
  ix->live--;
  ix->total_len -= s->len;
  idmap_del(ix, s->id);
}

static void kw_maybe_compact(struct retrieve_bm25 *ix) {
  size_t dead = ix->nslots - ix->live;
  if (dead > 1024 && dead > ix->live) kw_compact(ix);
}

size_t retrieve_bm25_remove(struct retrieve_bm25 *ix, int64_t id) {
  long slot;
  if (!ix) return 0;
  slot = idmap_get(ix, id);
  if (slot < 0) return 0;
  kw_kill(ix, (uint32_t)slot);
  kw_maybe_compact(ix);
  return 1;
}

size_t retrieve_bm25_remove_group(struct retrieve_bm25 *ix, int64_t group) {
  size_t n = 0;
  if (!ix || group > ix->max_group) return 0; /* a new document: nothing to scan */
  for (size_t i = 0; i < ix->nslots; i++) {
    if (ix->slots[i].alive && ix->slots[i].group == group) {
      kw_kill(ix, (uint32_t)i);
      n++;
    }
  }
  if (n) kw_maybe_compact(ix);
  return n;
}

static int group_allowed(const struct retrieve_filter *f, int64_t g);

size_t retrieve_bm25_keep_groups(struct retrieve_bm25 *ix, const int64_t *keep, size_t n) {
  struct retrieve_filter f = {0, keep, n};
  size_t removed = 0;
  for (size_t i = 0; ix && i < ix->nslots; i++) {
    if (ix->slots[i].alive && !group_allowed(&f, ix->slots[i].group)) {
      kw_kill(ix, (uint32_t)i);
      removed++;
    }
  }
  if (removed) kw_maybe_compact(ix);
  return removed;
}

void retrieve_bm25_shrink(struct retrieve_bm25 *ix) {
  for (size_t i = 0; ix && i < ix->nterms; i++) {
    struct kw_term *t = &ix->terms[i];
    struct kw_posting *p;
    if (t->cap == t->npost || t->npost == 0) continue;
    p = realloc(t->post, t->npost * sizeof *p);
    if (!p) continue;
    t->post = p;
    t->cap = t->npost;
  }
}

size_t retrieve_bm25_count(const struct retrieve_bm25 *ix) { return ix ? ix->live : 0; }

int retrieve_bm25_contains(const struct retrieve_bm25 *ix, int64_t id) {
  return ix && idmap_get(ix, id) >= 0;
}

size_t retrieve_bm25_ids(const struct retrieve_bm25 *ix, int64_t *ids, size_t max) {
  size_t n = 0;
  for (size_t i = 0; ix && i < ix->nslots; i++)
    if (ix->slots[i].alive) {
      if (n < max) ids[n] = ix->slots[i].id;
      n++;
    }
  return n;
}

size_t retrieve_bm25_memory_bytes(const struct retrieve_bm25 *ix) {
  size_t n, i;
  if (!ix) return 0;
  n = sizeof *ix + ix->pool.cap + ix->terms_cap * sizeof *ix->terms +
      2 * ix->dict_cap * sizeof *ix->dict + ix->slots_cap * sizeof *ix->slots +
      ix->fwd_cap * sizeof *ix->fwd +
      ix->idmap_cap * (sizeof *ix->idmap_keys + sizeof *ix->idmap_vals);
  for (i = 0; i < ix->nterms; i++) n += ix->terms[i].cap * sizeof(struct kw_posting);
  return n;
}

/* ---- search --------------------------------------------------------------------------- */

/* A list of terms copied into one pool, in order of arrival. Zeroed, then
 * buf_init on pool; released with kw_terms_dispose. */
struct kw_terms_out {
  struct buf pool;
  size_t *off, *len;
  size_t n, cap;
  ragd_err rc; /* set when a push failed */
};

static void kw_terms_dispose(struct kw_terms_out *o) {
  buf_dispose(&o->pool);
  free(o->off);
  free(o->len);
}

/* Appends one term (a text_tokenize-style callback: nonzero stops, with
 * o->rc saying why). */
static int kw_collect(void *ctx, const char *term, size_t len) {
  struct kw_terms_out *o = ctx;
  if (o->n == o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 32;
    size_t *a = realloc(o->off, cap * sizeof *a), *b;
    if (!a) goto nomem;
    o->off = a;
    b = realloc(o->len, cap * sizeof *b);
    if (!b) goto nomem;
    o->len = b;
    o->cap = cap;
  }
  o->off[o->n] = o->pool.len;
  o->len[o->n] = len;
  if (buf_append(&o->pool, term, len)) goto nomem;
  o->n++;
  return 0;
nomem:
  o->rc = RAGD_ENOMEM;
  return 1;
}

/* text_tokenize's callback for the query's phrases as the SQLite store
 * builds its MATCH expression: every non-empty term, unstemmed. */
static int kw_query_raw(void *ctx, const char *term, size_t len, size_t start, size_t end) {
  if (len == 0 || end <= start) return 0;
  return kw_collect(ctx, term, len);
}

static int kw_seen(const struct kw_terms_out *o, size_t upto, const char *s, size_t len) {
  for (size_t i = 0; i < upto; i++)
    if (o->len[i] == len && memcmp(o->pool.data + o->off[i], s, len) == 0) return 1;
  return 0;
}

/* bigrams: text_tokenize's distinct normalized terms (as the store's MATCH
 * expression keeps them), each stemmed afterwards, so two words with one
 * stem stay two phrases as in FTS5. words/both: the index's own terms,
 * distinct after stemming. */
static ragd_err kw_query_terms(const struct retrieve_bm25 *ix, const char *query,
                               struct kw_terms_out *out) {
  struct kw_terms_out q;
  size_t i;
  ragd_err rc;
  memset(&q, 0, sizeof q);
  buf_init(&q.pool, 0);
  if (ix->p.tokens == RETRIEVE_TOKENS_BIGRAMS) {
    rc = text_tokenize(query, strlen(query), kw_query_raw, &q);
    if (rc == RAGD_ECANCELLED) rc = q.rc ? q.rc : rc;
    for (i = 0; i < q.n && !rc; i++) {
      const char *s = q.pool.data + q.off[i];
      size_t kept = out->n;
      char stem[KW_STEM_MAX];
      size_t len = q.len[i];
      if (kw_seen(&q, i, s, len)) continue;
      if (kept >= KW_QUERY_TERMS_MAX) break;
      if (len <= sizeof stem) {
        len = text_stem_en(s, len, stem);
        s = stem;
      }
      if (kw_collect(out, s, len)) rc = out->rc;
    }
  } else {
    struct kw_terms_out all;
    memset(&all, 0, sizeof all);
    buf_init(&all.pool, 0);
    rc = kw_tokenize(ix->p.tokens, query, strlen(query), kw_collect, &all);
    if (rc == RAGD_ECANCELLED) rc = all.rc ? all.rc : RAGD_ENOMEM;
    for (i = 0; i < all.n && !rc && out->n < KW_QUERY_TERMS_MAX; i++) {
      const char *s = all.pool.data + all.off[i];
      if (kw_seen(&all, i, s, all.len[i])) continue;
      if (kw_collect(out, s, all.len[i])) rc = out->rc;
    }
    kw_terms_dispose(&all);
  }
  kw_terms_dispose(&q);
  return rc;
}

static struct kw_scratch *scratch_get(struct retrieve_bm25 *ix) {
  struct kw_scratch *s = NULL;
  pthread_mutex_lock(&ix->scratch_mu);
  if (ix->nscratch) s = ix->scratch[--ix->nscratch];
  pthread_mutex_unlock(&ix->scratch_mu);
  if (!s) s = calloc(1, sizeof *s);
  if (!s) return NULL;
  if (s->cap < ix->nslots) {
    size_t cap = ix->nslots + ix->nslots / 4 + 64;
    double *acc = calloc(cap, sizeof *acc);
    uint8_t *seen = calloc(cap, sizeof *seen);
    uint32_t *touched = malloc(cap * sizeof *touched);
    if (!acc || !seen || !touched) {
      free(acc);
      free(seen);
      free(touched);
      free(s->acc);
      free(s->seen);
      free(s->touched);
      free(s);
      return NULL;
    }
    free(s->acc);
    free(s->seen);
    free(s->touched);
    s->acc = acc;
    s->seen = seen;
    s->touched = touched;
    s->cap = cap;
  }
  return s;
}

static void scratch_put(struct retrieve_bm25 *ix, struct kw_scratch *s) {
  pthread_mutex_lock(&ix->scratch_mu);
  if (ix->nscratch < KW_SCRATCH_POOL) {
    ix->scratch[ix->nscratch++] = s;
    s = NULL;
  }
  pthread_mutex_unlock(&ix->scratch_mu);
  if (s) {
    free(s->acc);
    free(s->seen);
    free(s->touched);
    free(s);
  }
}

/* a ranks before b: higher score, then smaller id */
static int hit_better(const struct retrieve_bm25_hit *a, const struct retrieve_bm25_hit *b) {
  return a->score > b->score || (a->score == b->score && a->id < b->id);
}

/* Min-heap on "better": the root is the worst of the kept hits. */
static void heap_down(struct retrieve_bm25_hit *h, size_t n, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, w = i;
    if (l < n && hit_better(&h[w], &h[l])) w = l;
    if (r < n && hit_better(&h[w], &h[r])) w = r;
    if (w == i) return;
    struct retrieve_bm25_hit t = h[i];
    h[i] = h[w];
    h[w] = t;
    i = w;
  }
}

static void heap_up(struct retrieve_bm25_hit *h, size_t i) {
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!hit_better(&h[p], &h[i])) return;
    struct retrieve_bm25_hit t = h[i];
    h[i] = h[p];
    h[p] = t;
    i = p;
  }
}

static int hit_cmp(const void *a, const void *b) {
  const struct retrieve_bm25_hit *x = a, *y = b;
  if (hit_better(x, y)) return -1;
  if (hit_better(y, x)) return 1;
  return 0;
}

static int group_allowed(const struct retrieve_filter *f, int64_t g) {
  size_t lo = 0, hi;
  if (!f || f->all) return 1;
  hi = f->count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (f->groups[mid] < g) lo = mid + 1;
    else if (f->groups[mid] > g) hi = mid;
    else return 1;
  }
  return 0;
}

/* Brings norm[] up to date with the live chunks (called by searches, which
 * hold the caller's read lock: writers cannot run meanwhile). */
static ragd_err norm_refresh(struct retrieve_bm25 *ix) {
  ragd_err rc = RAGD_OK;
  pthread_mutex_lock(&ix->scratch_mu);
  if (ix->norm_serial != ix->serial || !ix->norm) {
    double avgdl = (double)ix->total_len / (double)ix->live, k1 = ix->p.k1, b = ix->p.b;
    if (ix->norm_cap < ix->nslots || !ix->norm) {
      size_t cap = ix->nslots + ix->nslots / 4 + 64;
      double *g = realloc(ix->norm, cap * sizeof *g);
      if (!g) {
        rc = RAGD_ENOMEM;
        goto out;
      }
      ix->norm = g;
      ix->norm_cap = cap;
    }
    for (size_t i = 0; i < ix->nslots; i++)
      ix->norm[i] = ix->slots[i].alive ? kw_norm(k1, b, ix->slots[i].len, avgdl) : -1;
    ix->norm_serial = ix->serial;
  }
out:
  pthread_mutex_unlock(&ix->scratch_mu);
  return rc;
}

/* One resolved query term: its postings from the next one to look at, its
 * IDF, the bound on what it can add to any chunk's score, and its place in
 * the query (scores are summed in that order). */
struct kw_cursor {
  const struct kw_posting *at, *end;
  double idf, ub;
  uint32_t qi;
};

/* Counters of one search, for tests and profiles. */
struct kw_search_stats {
  size_t postings;   /* postings whose contribution was computed */
  size_t candidates; /* chunks considered (document-at-a-time) */
  size_t pruned;     /* of those, dropped by the bound before a full score */
};

static void hits_offer(struct retrieve_bm25_hit *out, size_t k, size_t *kept,
                       const struct retrieve_bm25_hit *h) {
  if (*kept < k) {
    out[*kept] = *h;
    heap_up(out, (*kept)++);
  } else if (hit_better(h, &out[0])) {
    out[0] = *h;
    heap_down(out, *kept, 0);
  }
}

/* What one posting adds to its chunk's score (nm: the chunk's norm). */
static double kw_contrib(const struct retrieve_bm25 *ix, const struct kw_cursor *c,
                         const struct kw_posting *p, double nm) {
  double f = kw_weighted(ix, p->c);
  return c->idf * ((f * (ix->p.k1 + 1.0)) / (f + nm));
}

/* Term-at-a-time over every posting into a dense accumulator: the reference
 * the pruned search must equal (kept for tests and as the definition). */
static ragd_err kw_search_exhaustive(struct retrieve_bm25 *ix, const struct kw_cursor *cur,
                                     size_t m, size_t k, const struct retrieve_filter *filter,
                                     struct retrieve_bm25_hit *out, size_t *n,
                                     struct kw_search_stats *st) {
  struct kw_scratch *sc = scratch_get(ix);
  size_t ntouched = 0, kept = 0, i;
  if (!sc) return RAGD_ENOMEM;
  for (i = 0; i < m; i++) {
    for (const struct kw_posting *p = cur[i].at; p < cur[i].end; p++) {
      double nm = ix->norm[p->slot];
      if (nm < 0) continue; /* dead */
      if (!sc->seen[p->slot]) {
        sc->seen[p->slot] = 1;
        sc->touched[ntouched++] = p->slot;
      }
      sc->acc[p->slot] += kw_contrib(ix, &cur[i], p, nm);
      st->postings++;
    }
  }
  /* every chunk holding a query term is a match, as for FTS5's OR query */
  for (i = 0; i < ntouched; i++) {
    uint32_t slot = sc->touched[i];
    struct retrieve_bm25_hit h = {ix->slots[slot].id, ix->slots[slot].group, sc->acc[slot]};
    sc->acc[slot] = 0.0;
    sc->seen[slot] = 0;
    if (group_allowed(filter, h.group)) hits_offer(out, k, &kept, &h);
  }
  scratch_put(ix, sc);
  *n = kept;
  return RAGD_OK;
}

/* The first posting at or after p whose slot is >= slot (galloping). */
static const struct kw_posting *kw_seek(const struct kw_posting *p, const struct kw_posting *end,
                                        uint32_t slot) {
  size_t step = 1, lo, hi, avail;
  if (p >= end || p->slot >= slot) return p;
  /* p->slot < slot: find hi with p[hi] >= slot (or the end), then bisect */
  avail = (size_t)(end - p);
  lo = 0;
  while (lo + step < avail && p[lo + step].slot < slot) {
    lo += step;
    step *= 2;
  }
  hi = lo + step < avail ? lo + step : avail;
  while (lo + 1 < hi) { /* p[lo].slot < slot, and p[hi] (if any) >= slot */
    size_t mid = lo + (hi - lo) / 2;
    if (p[mid].slot < slot) lo = mid;
    else hi = mid;
  }
  return p + hi;
}

/* x, a sum of bounds computed in some order, is surely below thr: the
 * margin covers the rounding of summing up to KW_QUERY_TERMS_MAX terms in a
 * different order than the score itself. */
static int kw_below(double x, double thr) { return x * (1.0 + 1e-9) < thr; }

static int cursor_by_ub(const void *a, const void *b) {
  const struct kw_cursor *x = a, *y = b;
  if (x->ub != y->ub) return x->ub < y->ub ? -1 : 1;
  return x->qi < y->qi ? -1 : x->qi > y->qi;
}

/* MaxScore (Turtle and Flood 1995), document at a time. Terms are sorted by
 * their bound ub; once the k-th best score so far (thr) exceeds the sum of
 * the smallest bounds, those terms are "non-essential": a chunk holding only
 * them cannot enter the top k, so candidates come from the essential terms'
 * postings alone, and the non-essential ones are only probed (by seeking)
 * for a candidate whose bound still reaches thr. A chunk that is scored is
 * scored fully and summed in query order, so its score is bit-equal to the
 * exhaustive search's; pruning only ever drops chunks whose score is surely
 * below thr, so the top k (ties by id included) is the exhaustive one.
 * Filters are applied before a chunk is scored. cur is reordered. */
static ragd_err kw_search_maxscore(struct retrieve_bm25 *ix, struct kw_cursor *cur, size_t m,
                                   size_t k, const struct retrieve_filter *filter,
                                   struct retrieve_bm25_hit *out, size_t *n,
                                   struct kw_search_stats *st) {
  double *cum = malloc(m * sizeof *cum), *contrib = malloc(m * sizeof *contrib);
  uint32_t *matched = malloc(m * sizeof *matched);
  double thr = -INFINITY;
  size_t ne = 0, kept = 0, i, j;
  ragd_err rc = RAGD_OK;
  if (!cum || !contrib || !matched) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  qsort(cur, m, sizeof *cur, cursor_by_ub);
  for (i = 0; i < m; i++) cum[i] = (i ? cum[i - 1] : 0.0) + cur[i].ub;
  for (;;) {
    uint32_t doc = UINT32_MAX;
    size_t nmatched = 0;
    double nm, partial = 0.0, score = 0.0;
    int pruned = 0;
    for (i = ne; i < m; i++)
      if (cur[i].at < cur[i].end && cur[i].at->slot < doc) doc = cur[i].at->slot;
    if (doc == UINT32_MAX) break;
    nm = ix->norm[doc];
    if (nm < 0 || !group_allowed(filter, ix->slots[doc].group)) {
      for (i = ne; i < m; i++)
        if (cur[i].at < cur[i].end && cur[i].at->slot == doc) cur[i].at++;
      continue;
    }
    st->candidates++;
    for (i = ne; i < m; i++) {
      if (cur[i].at < cur[i].end && cur[i].at->slot == doc) {
        double c = kw_contrib(ix, &cur[i], cur[i].at, nm);
        contrib[cur[i].qi] = c;
        matched[nmatched++] = cur[i].qi;
        partial += c;
        cur[i].at++;
        st->postings++;
      }
    }
    for (j = ne; j-- > 0;) {
      if (kw_below(partial + cum[j], thr)) {
        pruned = 1;
        break;
      }
      cur[j].at = kw_seek(cur[j].at, cur[j].end, doc);
      if (cur[j].at < cur[j].end && cur[j].at->slot == doc) {
        double c = kw_contrib(ix, &cur[j], cur[j].at, nm);
        contrib[cur[j].qi] = c;
        matched[nmatched++] = cur[j].qi;
        partial += c;
        st->postings++;
      }
    }
    if (pruned) {
      st->pruned++;
      continue;
    }
    /* query order, as the accumulator adds them (few: insertion sort) */
    for (i = 1; i < nmatched; i++) {
      uint32_t q = matched[i];
      for (j = i; j > 0 && matched[j - 1] > q; j--) matched[j] = matched[j - 1];
      matched[j] = q;
    }
    for (i = 0; i < nmatched; i++) score += contrib[matched[i]];
    {
      struct retrieve_bm25_hit h = {ix->slots[doc].id, ix->slots[doc].group, score};
      hits_offer(out, k, &kept, &h);
    }
    if (kept == k) {
      thr = out[0].score;
      while (ne < m && kw_below(cum[ne], thr)) ne++;
    }
  }
  *n = kept;
out:
  free(cum);
  free(contrib);
  free(matched);
  return rc;
}

/* The search behind retrieve_bm25_search; exhaustive selects the reference
 * scoring, st (may be NULL) receives counters. */
static ragd_err kw_search(struct retrieve_bm25 *ix, const char *query, size_t k,
                          const struct retrieve_filter *filter, struct retrieve_bm25_hit *out,
                          size_t *n, int exhaustive, struct kw_search_stats *st) {
  struct kw_terms_out qt;
  struct kw_cursor *cur = NULL;
  struct kw_search_stats dummy;
  size_t m = 0, i, bad = 0, kept = 0;
  double N, avgdl, k1, b;
  ragd_err rc;

  if (!ix || !query || (!out && k)) return RAGD_EINVAL;
  *n = 0;
  if (!st) st = &dummy;
  memset(st, 0, sizeof *st);
  memset(&qt, 0, sizeof qt);
  buf_init(&qt.pool, 0);
  if (text_utf8_validate(query, strlen(query), &bad) != RAGD_OK) return RAGD_EUTF8;
  if (k == 0 || ix->live == 0) return RAGD_OK;
  rc = kw_query_terms(ix, query, &qt);
  if (rc || qt.n == 0) goto out;
  rc = norm_refresh(ix);
  if (rc) goto out;
  cur = malloc(qt.n * sizeof *cur);
  if (!cur) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  N = (double)ix->live;
  avgdl = (double)ix->total_len / N;
  k1 = ix->p.k1;
  b = ix->p.b;
  for (i = 0; i < qt.n; i++) {
    const char *s = qt.pool.data + qt.off[i];
    long tid = dict_find(ix, s, qt.len[i], kw_hash(s, qt.len[i]), NULL);
    const struct kw_term *t;
    struct kw_cursor *c;
    double idf, nm_min;
    if (tid < 0) continue;
    t = &ix->terms[tid];
    if (t->df == 0) continue;
    idf = log((N - t->df + 0.5) / (t->df + 0.5));
    if (idf <= 0.0) idf = 1e-6;
    c = &cur[m];
    c->at = t->post;
    c->end = t->post + t->npost;
    c->idf = idf;
    c->qi = (uint32_t)m;
    /* the contribution grows with f and falls with the chunk's length */
    nm_min = kw_norm(k1, b, t->len_min, avgdl);
    c->ub = t->f_max > 0 ? idf * ((t->f_max * (k1 + 1.0)) / (t->f_max + nm_min)) : 0.0;
    if (!(c->ub >= 0) || isinf(c->ub)) c->ub = INFINITY; /* k1 0: never prune this term */
    m++;
  }
  if (m == 0) goto out;
  if (exhaustive) rc = kw_search_exhaustive(ix, cur, m, k, filter, out, &kept, st);
  else rc = kw_search_maxscore(ix, cur, m, k, filter, out, &kept, st);
  if (rc) goto out;
  qsort(out, kept, sizeof *out, hit_cmp);
  *n = kept;
out:
  free(cur);
  kw_terms_dispose(&qt);
  return rc;
}

ragd_err retrieve_bm25_search(struct retrieve_bm25 *ix, const char *query, size_t k,
                              const struct retrieve_filter *filter, struct retrieve_bm25_hit *out,
                              size_t *n) {
  return kw_search(ix, query, k, filter, out, n, 0, NULL);
}
