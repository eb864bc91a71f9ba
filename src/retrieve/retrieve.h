/* retrieve.h - ranking pieces that know nothing of SQL or HTTP: the vector
 * index and rank fusion.
 *
 * A vector index is an ops table plus context, chosen by name (retrieve_index_
 * create): "int8" (the default: an int8 scalar-quantized scan picks
 * candidates, their float32 vectors re-score them) and "exact" (a float32
 * scan of everything). Both are flat: memory and time grow linearly with the
 * number of vectors, which stays fast to about a million chunks on one core;
 * an approximate index (HNSW) can join behind the same ops.
 *
 * Items are identified by an id (the store's chunk row id) and belong to a
 * group (the store's document row id), so that a document's vectors can be
 * replaced or dropped at once and a metadata filter can be a set of groups.
 *
 * Threads: an index is not thread-safe; the caller serializes writers against
 * readers (rag_engine holds a read-write lock). Searches may run in parallel
 * with each other. */
#ifndef RAGD_RETRIEVE_H
#define RAGD_RETRIEVE_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define RETRIEVE_OPS_VERSION 1

struct retrieve_hit {
  int64_t id;
  int64_t group;
  float score; /* dot product with the query: a cosine for unit vectors */
};

/* Groups a search may return; NULL or count 0 with all = 1 means every group.
 * groups must be sorted ascending. */
struct retrieve_filter {
  int all;
  const int64_t *groups;
  size_t count;
};

struct retrieve_index_ops {
  int version; /* RETRIEVE_OPS_VERSION */
  const char *name;
  ragd_err (*create)(size_t dim, void **ctx /* OUT */);
  void (*destroy)(void *ctx);
  /* Appends one vector (dim floats, copied). The caller removes an id before
   * adding it again; ids are not checked for duplicates. */
  ragd_err (*add)(void *ctx, int64_t id, int64_t group, const float *v);
  /* Drops every vector of the group / the one of this id; returns how many
   * went. */
  size_t (*remove_group)(void *ctx, int64_t group);
  size_t (*remove)(void *ctx, int64_t id);
  /* The best min(k, matching) items for the query vector q, best first (ties
   * by smaller id). out has room for k hits; *n receives the count. filter
   * may be NULL (everything). */
  ragd_err (*search)(void *ctx, const float *q, size_t k, const struct retrieve_filter *filter,
                     struct retrieve_hit *out, size_t *n /* OUT */);
  /* Copies the float32 vector of id into out (dim floats); RAGD_ENOTFOUND
   * when the index does not hold it. */
  ragd_err (*get)(void *ctx, int64_t id, float *out);
  size_t (*count)(void *ctx);
  /* Bytes of memory held for the vectors and their ids. */
  size_t (*memory_bytes)(void *ctx);
};

struct retrieve_index {
  const struct retrieve_index_ops *ops;
  void *ctx;
  size_t dim;
};

/* name: "int8" or "exact" (NULL or "": int8). RAGD_ECONFIG for an unknown
 * name, RAGD_EINVAL for dim 0. */
ragd_err retrieve_index_create(const char *name, size_t dim, struct retrieve_index *out /* OUT */);
/* Destroys and zeroes ix; accepts a zeroed index. */
void retrieve_index_destroy(struct retrieve_index *ix);

extern const struct retrieve_index_ops retrieve_int8_ops;
extern const struct retrieve_index_ops retrieve_exact_ops;

/* ---- scalar quantization, exposed for tests and benchmarks ---- */

/* Quantizes v to int8 codes with one scale per vector: code = round(v / scale)
 * with scale = max|v| / 127, so |v[i] - code[i] * scale| <= scale / 2.
 * Returns the scale (0 for the zero vector, whose codes are all 0). */
float retrieve_quantize(const float *v, size_t dim, int8_t *codes /* OUT */);
float retrieve_dot_f32(const float *a, const float *b, size_t dim);
int32_t retrieve_dot_i8(const int8_t *a, const int8_t *b, size_t dim);
/* out[r] = retrieve_dot_i8(q, rows + r * dim, dim) for r < n (the int8
 * index's scan). Every code of q and rows must be in [-127, 127], as
 * retrieve_quantize writes them (-128 may give a wrong sum). */
void retrieve_scan_i8(const int8_t *q, const int8_t *rows, size_t dim, size_t n,
                      int32_t *out /* OUT */);

/* ---- fusion ---- */

#define RETRIEVE_RANKERS_MAX 4

/* One ranker's result list, best first (rank 1 is ids[0]). */
struct retrieve_ranking {
  const int64_t *ids;
  size_t count;
  double weight;        /* >= 0; 0 ignores the ranker */
  const double *scores; /* retrieve_blend only: the ranker's own score of each id,
                           finite, in the list's order (higher or lower better,
                           as long as the list is sorted best first) */
};

struct retrieve_fused {
  int64_t id;
  double score;                       /* rrf: sum of weight / (k + rank);
                                         blend: sum of weight * normalized score */
  size_t ranks[RETRIEVE_RANKERS_MAX]; /* 1-based rank in each ranking, 0 when absent */
};

/* Reciprocal Rank Fusion: every id of any ranking scores the sum over the
 * rankings that hold it of weight / (k + rank). Returns the best top ids,
 * score descending (ties: the better best rank, then the smaller id); an id
 * repeated within one ranking counts at its first rank only. *out is
 * malloc'd (free()), *n may be 0. RAGD_EINVAL for nrankings outside
 * 1..RETRIEVE_RANKERS_MAX, a negative weight or k < 0. */
ragd_err retrieve_rrf(const struct retrieve_ranking *rankings, size_t nrankings, double k,
                      size_t top, struct retrieve_fused **out /* OUT */, size_t *n /* OUT */);

enum retrieve_blend_norm {
  RETRIEVE_BLEND_MINMAX, /* (s - worst) / (best - worst): best 1, worst 0 */
  RETRIEVE_BLEND_ZSCORE  /* (s - mean) / standard deviation, sign so better is higher */
};

/* Score-normalized blend: each ranking's scores are normalized over its own
 * list (norm), and every id of any ranking scores the sum over the rankings
 * of weight * its normalized score there, or weight * that ranking's floor
 * where it is absent (the worst listed id's normalized value: 0 under
 * min-max). A ranking whose scores are all equal (one id, say) gives its ids
 * 1 and the floor 0. Better is read off each list's order (first score
 * against last), so BM25 scores where lower is better work as they come.
 * Order, ties, repeats, top, *out and *n as retrieve_rrf. RAGD_EINVAL for
 * nrankings outside 1..RETRIEVE_RANKERS_MAX, a negative weight, a ranking
 * with ids but no scores, or a score that is not finite. */
ragd_err retrieve_blend(const struct retrieve_ranking *rankings, size_t nrankings,
                        enum retrieve_blend_norm norm, size_t top,
                        struct retrieve_fused **out /* OUT */, size_t *n /* OUT */);

/* ---- keyword index ---- */

/* An in-memory BM25 index over chunks of three fields (title, heading path,
 * text), scored exactly like SQLite FTS5's bm25() with column weights
 * (bm25.c says how), so the SQLite store's ranking and this one agree; it
 * answers a keyword search without SQL. Items are ids in groups as for the
 * vector index. Threads: as the vector index (writers serialized against
 * readers by the caller; searches in parallel are fine). */

enum retrieve_tokens {
  RETRIEVE_TOKENS_BIGRAMS = 0, /* text_tokenize's terms: words, CJK bigrams (the store's) */
  RETRIEVE_TOKENS_WORDS = 1,   /* a CJK run is one term, like a whitespace word */
  RETRIEVE_TOKENS_BOTH = 2     /* bigrams plus the whole run */
};

struct retrieve_bm25_params {
  double k1, b;                       /* k1 >= 0, 0 <= b <= 1 */
  double w_title, w_heading, w_text;  /* >= 0, per occurrence */
  int tokens;                         /* enum retrieve_tokens */
};

struct retrieve_bm25_hit {
  int64_t id;
  int64_t group;
  double score; /* what -bm25() gives in SQLite: higher is better */
};

struct retrieve_bm25;

/* k1 1.2, b 0.75, weights 2 / 1.5 / 1 (the SQLite store's), bigrams. */
void retrieve_bm25_params_default(struct retrieve_bm25_params *p /* OUT */);
/* RAGD_EINVAL for parameters outside the ranges above. */
ragd_err retrieve_bm25_create(const struct retrieve_bm25_params *p,
                              struct retrieve_bm25 **out /* OUT */);
void retrieve_bm25_destroy(struct retrieve_bm25 *ix);
/* Indexes one chunk (strings borrowed; title and heading_path
 * NUL-terminated, may be NULL). An id already held is replaced. Text must be
 * valid UTF-8 (the store validated it). */
ragd_err retrieve_bm25_add(struct retrieve_bm25 *ix, int64_t id, int64_t group, const char *title,
                           const char *heading_path, const char *text, size_t text_len);
size_t retrieve_bm25_remove(struct retrieve_bm25 *ix, int64_t id);
size_t retrieve_bm25_remove_group(struct retrieve_bm25 *ix, int64_t group);
/* The best min(k, matching) chunks holding any term of query (tokenized as
 * the store tokenizes queries: never query syntax), best first, ties by
 * smaller id, restricted to filter's groups (NULL: all). out has room for k. */
ragd_err retrieve_bm25_search(struct retrieve_bm25 *ix, const char *query, size_t k,
                              const struct retrieve_filter *filter,
                              struct retrieve_bm25_hit *out, size_t *n /* OUT */);
/* Removes every chunk whose group is not in keep (sorted ascending);
 * returns how many went. */
size_t retrieve_bm25_keep_groups(struct retrieve_bm25 *ix, const int64_t *keep, size_t n);
/* Gives back the spare room of every posting list (after a bulk load). */
void retrieve_bm25_shrink(struct retrieve_bm25 *ix);
size_t retrieve_bm25_count(const struct retrieve_bm25 *ix);
int retrieve_bm25_contains(const struct retrieve_bm25 *ix, int64_t id);
/* Writes up to max live ids (in no set order) and returns how many there are. */
size_t retrieve_bm25_ids(const struct retrieve_bm25 *ix, int64_t *ids, size_t max);
size_t retrieve_bm25_memory_bytes(const struct retrieve_bm25 *ix);

#endif
