/* flat.c - the flat vector indexes: "exact" scans float32 vectors, "int8"
 * scans int8 codes and re-scores the best candidates with their float32
 * vectors.
 *
 * Vectors live in one contiguous array each (row i at i * dim), so a scan
 * walks memory linearly; removal moves the last row into the hole. The int8
 * scan looks at RESCORE_FACTOR times more candidates than asked for (and at
 * least RESCORE_MIN), which keeps recall@10 against the exact scan near 1
 * for unit vectors (see docs/retrieval.md for the measured number). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "retrieve/retrieve.h"

#define RESCORE_FACTOR 4
#define RESCORE_MIN 40
#define SCAN_BLOCK 512 /* rows scored per retrieve_scan_i8 call (2 KiB of sums) */

struct flat {
  size_t dim;
  int quantized;
  size_t count, cap;
  int64_t *ids;
  int64_t *groups;
  float *vecs;
  int8_t *codes;  /* quantized only */
  float *scales;  /* quantized only */
  /* Upper bounds of every id and group ever added (never lowered): a new
   * document's rows (larger row ids than any before) are known absent
   * without a scan, which keeps a bulk ingest linear. INT64_MIN: none yet. */
  int64_t max_id, max_group;
};

/* ---- dot products ------------------------------------------------------------ */

/* Eight independent sums let the compiler keep them in vector lanes without
 * reassociating floating-point additions on its own. */
float retrieve_dot_f32(const float *a, const float *b, size_t dim) {
  float acc[8] = {0};
  size_t i = 0, j;
  for (; i + 8 <= dim; i += 8)
    for (j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
  for (; i < dim; i++) acc[0] += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* One int8 dot product (any codes, -128 included): 16 sums of int16
 * products, which the compiler keeps in vector lanes. The scan below is the
 * vector ranker's hot loop and has an AVX2 kernel of its own. */
static int32_t dot_i8_portable(const int8_t *a, const int8_t *b, size_t dim) {
  int32_t acc[16] = {0};
  size_t i = 0, j;
  for (; i + 16 <= dim; i += 16)
    for (j = 0; j < 16; j++) acc[j] += (int16_t)a[i + j] * (int16_t)b[i + j];
  for (; i < dim; i++) acc[0] += (int16_t)a[i] * (int16_t)b[i];
  int32_t sum = 0;
  for (j = 0; j < 16; j++) sum += acc[j];
  return sum;
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define FLAT_HAVE_AVX2 1
#endif

int32_t retrieve_dot_i8(const int8_t *a, const int8_t *b, size_t dim) {
  return dot_i8_portable(a, b, dim);
}

/* The scan: many rows against one query, the CPU check made once. With
 * codes in [-127, 127] (what retrieve_quantize writes) AVX2 takes 32 codes
 * per step: vpmaddubsw multiplies |q| (unsigned) by the row's codes carrying
 * q's sign (vpsignb) and adds pairs into int16 lanes, which cannot saturate
 * (2 * 127 * 127 < 32767), then vpmaddwd by ones widens to int32: exact,
 * with a third of the instructions of widening both sides first. */
static void scan_i8_portable(const int8_t *q, const int8_t *rows, size_t dim, size_t n,
                             int32_t *out) {
  for (size_t r = 0; r < n; r++) out[r] = dot_i8_portable(q, rows + r * dim, dim);
}

#ifdef FLAT_HAVE_AVX2
__attribute__((target("avx2"))) static void scan_i8_avx2(const int8_t *q, const int8_t *rows,
                                                         size_t dim, size_t n, int32_t *out) {
  const __m256i ones = _mm256_set1_epi16(1);
  size_t body = dim & ~(size_t)31;
  for (size_t r = 0; r < n; r++) {
    const int8_t *c = rows + r * dim;
    __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
    __m128i lo;
    int32_t sum;
    size_t i = 0;
    for (; i + 64 <= body; i += 64) {
      __m256i q0 = _mm256_loadu_si256((const __m256i *)(const void *)(q + i));
      __m256i q1 = _mm256_loadu_si256((const __m256i *)(const void *)(q + i + 32));
      __m256i c0 = _mm256_loadu_si256((const __m256i *)(const void *)(c + i));
      __m256i c1 = _mm256_loadu_si256((const __m256i *)(const void *)(c + i + 32));
      __m256i p0 = _mm256_maddubs_epi16(_mm256_abs_epi8(q0), _mm256_sign_epi8(c0, q0));
      __m256i p1 = _mm256_maddubs_epi16(_mm256_abs_epi8(q1), _mm256_sign_epi8(c1, q1));
      acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(p0, ones));
      acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(p1, ones));
    }
    for (; i < body; i += 32) {
      __m256i q0 = _mm256_loadu_si256((const __m256i *)(const void *)(q + i));
      __m256i c0 = _mm256_loadu_si256((const __m256i *)(const void *)(c + i));
      __m256i p0 = _mm256_maddubs_epi16(_mm256_abs_epi8(q0), _mm256_sign_epi8(c0, q0));
      acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(p0, ones));
    }
    acc0 = _mm256_add_epi32(acc0, acc1);
    lo = _mm_add_epi32(_mm256_castsi256_si128(acc0), _mm256_extracti128_si256(acc0, 1));
    lo = _mm_add_epi32(lo, _mm_shuffle_epi32(lo, 0x4e));
    lo = _mm_add_epi32(lo, _mm_shuffle_epi32(lo, 0xb1));
    sum = _mm_cvtsi128_si32(lo);
    for (; i < dim; i++) sum += (int32_t)q[i] * (int32_t)c[i];
    out[r] = sum;
  }
}
#endif

void retrieve_scan_i8(const int8_t *q, const int8_t *rows, size_t dim, size_t n, int32_t *out) {
#ifdef FLAT_HAVE_AVX2
  if (__builtin_cpu_supports("avx2")) {
    scan_i8_avx2(q, rows, dim, n, out);
    return;
  }
#endif
  scan_i8_portable(q, rows, dim, n, out);
}

float retrieve_quantize(const float *v, size_t dim, int8_t *codes) {
  float max = 0, scale, inv;
  size_t i;
  for (i = 0; i < dim; i++) {
    float a = fabsf(v[i]);
    if (a > max) max = a;
  }
  if (max == 0 || !isfinite(max)) {
    memset(codes, 0, dim);
    return 0;
  }
  scale = max / 127.0f;
  inv = 1.0f / scale;
  for (i = 0; i < dim; i++) {
    long q = lrintf(v[i] * inv);
    if (q > 127) q = 127;
    if (q < -127) q = -127;
    codes[i] = (int8_t)q;
  }
  return scale;
}

/* ---- a bounded min-heap of the best hits ------------------------------------------ */

struct topk {
  struct retrieve_hit *items;
  size_t count, k;
};

/* a ranks below b: lower score, or equal score and larger id */
static int hit_worse(const struct retrieve_hit *a, const struct retrieve_hit *b) {
  if (a->score != b->score) return a->score < b->score;
  return a->id > b->id;
}

static void topk_sift_down(struct topk *t, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < t->count && hit_worse(&t->items[l], &t->items[m])) m = l;
    if (r < t->count && hit_worse(&t->items[r], &t->items[m])) m = r;
    if (m == i) return;
    struct retrieve_hit tmp = t->items[i];
    t->items[i] = t->items[m];
    t->items[m] = tmp;
    i = m;
  }
}

static void topk_push(struct topk *t, const struct retrieve_hit *h) {
  size_t i;
  if (t->k == 0) return;
  if (t->count == t->k) {
    if (!hit_worse(&t->items[0], h)) return;
    t->items[0] = *h;
    topk_sift_down(t, 0);
    return;
  }
  i = t->count++;
  t->items[i] = *h;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!hit_worse(&t->items[i], &t->items[p])) break;
    struct retrieve_hit tmp = t->items[i];
    t->items[i] = t->items[p];
    t->items[p] = tmp;
    i = p;
  }
}

static int hit_cmp_best_first(const void *a, const void *b) {
  const struct retrieve_hit *x = a, *y = b;
  if (hit_worse(x, y)) return 1;
  if (hit_worse(y, x)) return -1;
  return 0;
}

/* ---- the index ------------------------------------------------------------------------- */

static ragd_err flat_create_common(size_t dim, int quantized, void **ctx) {
  struct flat *f;
  if (dim == 0 || dim > 65536) return RAGD_EINVAL;
  f = calloc(1, sizeof *f);
  if (!f) return RAGD_ENOMEM;
  f->dim = dim;
  f->quantized = quantized;
  f->max_id = f->max_group = INT64_MIN;
  *ctx = f;
  return RAGD_OK;
}

static ragd_err flat_create_exact(size_t dim, void **ctx) { return flat_create_common(dim, 0, ctx); }
static ragd_err flat_create_int8(size_t dim, void **ctx) { return flat_create_common(dim, 1, ctx); }

static void flat_destroy(void *ctx) {
  struct flat *f = ctx;
  if (!f) return;
  free(f->ids);
  free(f->groups);
  free(f->vecs);
  free(f->codes);
  free(f->scales);
  free(f);
}

static ragd_err flat_grow(struct flat *f) {
  size_t cap = f->cap ? f->cap * 2 : 256;
  void *p;
  p = realloc(f->ids, cap * sizeof *f->ids);
  if (!p) return RAGD_ENOMEM;
  f->ids = p;
  p = realloc(f->groups, cap * sizeof *f->groups);
  if (!p) return RAGD_ENOMEM;
  f->groups = p;
  p = realloc(f->vecs, cap * f->dim * sizeof *f->vecs);
  if (!p) return RAGD_ENOMEM;
  f->vecs = p;
  if (f->quantized) {
    p = realloc(f->codes, cap * f->dim);
    if (!p) return RAGD_ENOMEM;
    f->codes = p;
    p = realloc(f->scales, cap * sizeof *f->scales);
    if (!p) return RAGD_ENOMEM;
    f->scales = p;
  }
  f->cap = cap;
  return RAGD_OK;
}

static ragd_err flat_add(void *ctx, int64_t id, int64_t group, const float *v) {
  struct flat *f = ctx;
  size_t i;
  if (!f || !v) return RAGD_EINVAL;
  if (f->count == f->cap) {
    ragd_err rc = flat_grow(f);
    if (rc) return rc;
  }
  i = f->count++;
  f->ids[i] = id;
  f->groups[i] = group;
  if (id > f->max_id) f->max_id = id;
  if (group > f->max_group) f->max_group = group;
  memcpy(f->vecs + i * f->dim, v, f->dim * sizeof *v);
  if (f->quantized) f->scales[i] = retrieve_quantize(v, f->dim, f->codes + i * f->dim);
  return RAGD_OK;
}

/* Moves the last row into row i. */
static void flat_remove_at(struct flat *f, size_t i) {
  size_t last = --f->count;
  if (i == last) return;
  f->ids[i] = f->ids[last];
  f->groups[i] = f->groups[last];
  memcpy(f->vecs + i * f->dim, f->vecs + last * f->dim, f->dim * sizeof *f->vecs);
  if (f->quantized) {
    memcpy(f->codes + i * f->dim, f->codes + last * f->dim, f->dim);
    f->scales[i] = f->scales[last];
  }
}

static size_t flat_remove_group(void *ctx, int64_t group) {
  struct flat *f = ctx;
  size_t removed = 0, i = 0;
  if (group > f->max_group) return 0;
  while (i < f->count) {
    if (f->groups[i] == group) {
      flat_remove_at(f, i);
      removed++;
    } else {
      i++;
    }
  }
  return removed;
}

static size_t flat_remove(void *ctx, int64_t id) {
  struct flat *f = ctx;
  if (id > f->max_id) return 0;
  for (size_t i = 0; i < f->count; i++)
    if (f->ids[i] == id) {
      flat_remove_at(f, i);
      return 1;
    }
  return 0;
}

static int group_allowed(const struct retrieve_filter *flt, int64_t g) {
  size_t lo = 0, hi;
  if (!flt || flt->all) return 1;
  hi = flt->count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (flt->groups[mid] == g) return 1;
    if (flt->groups[mid] < g) lo = mid + 1;
    else hi = mid;
  }
  return 0;
}

static void sort_out(struct topk *t, struct retrieve_hit *out, size_t *n) {
  qsort(t->items, t->count, sizeof *t->items, hit_cmp_best_first);
  if (out != t->items) memcpy(out, t->items, t->count * sizeof *out);
  *n = t->count;
}

static ragd_err flat_search(void *ctx, const float *q, size_t k,
                            const struct retrieve_filter *flt, struct retrieve_hit *out,
                            size_t *n) {
  struct flat *f = ctx;
  struct topk t = {0};
  int8_t *qcodes = NULL;
  int32_t *dots = NULL;
  ragd_err rc = RAGD_OK;
  size_t i, m;

  *n = 0;
  if (!f || !q || (k && !out)) return RAGD_EINVAL;
  if (k == 0 || f->count == 0) return RAGD_OK;
  if (!f->quantized) {
    t.items = out;
    t.k = k;
    for (i = 0; i < f->count; i++) {
      struct retrieve_hit h;
      if (!group_allowed(flt, f->groups[i])) continue;
      h.id = f->ids[i];
      h.group = f->groups[i];
      h.score = retrieve_dot_f32(q, f->vecs + i * f->dim, f->dim);
      topk_push(&t, &h);
    }
    sort_out(&t, out, n);
    return RAGD_OK;
  }
  /* int8: candidates by approximate score (slot index kept in id) */
  m = k * RESCORE_FACTOR;
  if (m < RESCORE_MIN) m = RESCORE_MIN;
  t.items = malloc(m * sizeof *t.items);
  qcodes = malloc(f->dim);
  dots = malloc(SCAN_BLOCK * sizeof *dots);
  if (!t.items || !qcodes || !dots) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  t.k = m;
  (void)retrieve_quantize(q, f->dim, qcodes);
  for (size_t b0 = 0; b0 < f->count; b0 += SCAN_BLOCK) {
    size_t nb = f->count - b0 < SCAN_BLOCK ? f->count - b0 : SCAN_BLOCK;
    retrieve_scan_i8(qcodes, f->codes + b0 * f->dim, f->dim, nb, dots);
    for (size_t j = 0; j < nb; j++) {
      struct retrieve_hit h;
      i = b0 + j;
      h.score = (float)dots[j] * f->scales[i];
      /* most rows lose to the kept worst: skip them before the filter */
      if (t.count == t.k && h.score < t.items[0].score) continue;
      if (!group_allowed(flt, f->groups[i])) continue;
      h.id = (int64_t)i;
      h.group = 0;
      topk_push(&t, &h);
    }
  }
  {
    struct topk best = {out, 0, k};
    for (i = 0; i < t.count; i++) {
      size_t slot = (size_t)t.items[i].id;
      struct retrieve_hit h;
      h.id = f->ids[slot];
      h.group = f->groups[slot];
      h.score = retrieve_dot_f32(q, f->vecs + slot * f->dim, f->dim);
      topk_push(&best, &h);
    }
    sort_out(&best, out, n);
  }
out:
  free(t.items);
  free(qcodes);
  free(dots);
  return rc;
}

static ragd_err flat_get(void *ctx, int64_t id, float *out) {
  struct flat *f = ctx;
  for (size_t i = 0; i < f->count; i++)
    if (f->ids[i] == id) {
      memcpy(out, f->vecs + i * f->dim, f->dim * sizeof *out);
      return RAGD_OK;
    }
  return RAGD_ENOTFOUND;
}

static size_t flat_count(void *ctx) { return ((struct flat *)ctx)->count; }

static size_t flat_memory_bytes(void *ctx) {
  struct flat *f = ctx;
  size_t per = 2 * sizeof(int64_t) + f->dim * sizeof(float);
  if (f->quantized) per += f->dim + sizeof(float);
  return f->cap * per;
}

const struct retrieve_index_ops retrieve_exact_ops = {
    .version = RETRIEVE_OPS_VERSION,
    .name = "exact",
    .create = flat_create_exact,
    .destroy = flat_destroy,
    .add = flat_add,
    .remove_group = flat_remove_group,
    .remove = flat_remove,
    .search = flat_search,
    .get = flat_get,
    .count = flat_count,
    .memory_bytes = flat_memory_bytes,
};

const struct retrieve_index_ops retrieve_int8_ops = {
    .version = RETRIEVE_OPS_VERSION,
    .name = "int8",
    .create = flat_create_int8,
    .destroy = flat_destroy,
    .add = flat_add,
    .remove_group = flat_remove_group,
    .remove = flat_remove,
    .search = flat_search,
    .get = flat_get,
    .count = flat_count,
    .memory_bytes = flat_memory_bytes,
};

ragd_err retrieve_index_create(const char *name, size_t dim, struct retrieve_index *out) {
  static const struct retrieve_index_ops *const kinds[] = {&retrieve_int8_ops, &retrieve_exact_ops};
  const struct retrieve_index_ops *ops = NULL;
  void *ctx = NULL;
  ragd_err rc;
  memset(out, 0, sizeof *out);
  if (!name || !name[0]) name = "int8";
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
    if (strcmp(kinds[i]->name, name) == 0) ops = kinds[i];
  if (!ops) return RAGD_ECONFIG;
  if (dim == 0) return RAGD_EINVAL;
  rc = ops->create(dim, &ctx);
  if (rc) return rc;
  out->ops = ops;
  out->ctx = ctx;
  out->dim = dim;
  return RAGD_OK;
}

void retrieve_index_destroy(struct retrieve_index *ix) {
  if (!ix) return;
  if (ix->ops && ix->ctx) ix->ops->destroy(ix->ctx);
  memset(ix, 0, sizeof *ix);
}
