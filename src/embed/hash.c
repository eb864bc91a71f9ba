/* hash.c - the offline embedder: signed feature hashing.
 *
 * The text goes through text_tokenize (NFKC + case fold; Hangul, Han and Kana
 * as overlapping character bigrams), and every term yields features:
 * - words: the word itself, the pair it forms with the previous word, and its
 *   character trigrams with word boundaries ("^tr", "tra", ..., "ng$"), which
 *   is what lets "tracking" meet "track" and "refunds" meet "refund";
 * - CJK bigrams: the bigram itself, its syllables, and the trigram it forms
 *   with the overlapping previous bigram (환불 + 불은 -> 환불은).
 * Each feature is hashed (FNV-1a, then a 64-bit finalizer) to a slot and a
 * sign; the signs make collisions cancel on average instead of piling up. The
 * vector is then scaled to unit length, so a dot product is a cosine. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "embed/embed.h"
#include "text/text.h"

#define HASH_DIM_MAX 8192
#define HASH_TERM_MAX 128 /* longer terms (base64, URLs) add only their unigram */

/* Feature weights, chosen on the development sets (docs/retrieval.md). */
#define W_WORD 1.0f
#define W_WORD_PAIR 0.6f
#define W_TRIGRAM 0.35f
#define W_CJK_BIGRAM 1.0f
#define W_CJK_CHAR 0.3f
#define W_CJK_TRIGRAM 0.5f

struct hash_embedder {
  size_t dim;
};

/* The state of one text's walk through its terms. */
struct hash_walk {
  float *v;
  size_t dim;
  char prev_word[HASH_TERM_MAX];
  size_t prev_word_len;
  char prev_cjk[HASH_TERM_MAX];
  size_t prev_cjk_len;
  size_t prev_cjk_end; /* byte offset where the previous CJK term ended */
};

static uint64_t hash_mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

static uint64_t hash_bytes(uint64_t h, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

/* Adds weight to the slot of the feature kind + a + b. */
static void hash_add(struct hash_walk *w, char kind, const char *a, size_t alen, const char *b,
                     size_t blen, float weight) {
  uint64_t h = 0xcbf29ce484222325ULL;
  char k = kind;
  h = hash_bytes(h, &k, 1);
  h = hash_bytes(h, a, alen);
  if (b) {
    h = hash_bytes(h, "\x1f", 1);
    h = hash_bytes(h, b, blen);
  }
  h = hash_mix(h);
  w->v[h % w->dim] += (h >> 63) ? -weight : weight;
}

/* Byte length of the UTF-8 sequence led by c (1 for stray bytes). */
static size_t utf8_len(unsigned char c) {
  if (c >= 0xf0) return 4;
  if (c >= 0xe0) return 3;
  if (c >= 0xc0) return 2;
  return 1;
}

/* Whether a normalized term is a CJK one: its first character is at or
 * above U+2E80 (CJK radicals), which text_tokenize's word terms never start
 * with except for rare scripts that are then treated the same way. */
static int term_is_cjk(const char *t, size_t len) {
  const unsigned char *u = (const unsigned char *)t;
  uint32_t cp;
  if (len < 3 || u[0] < 0xe0) return 0;
  if (u[0] < 0xf0) cp = (uint32_t)(u[0] & 0x0f) << 12 | (uint32_t)(u[1] & 0x3f) << 6 | (u[2] & 0x3f);
  else return 1;
  return cp >= 0x2e80;
}

static void hash_word(struct hash_walk *w, const char *t, size_t len) {
  char framed[HASH_TERM_MAX + 2];
  char stem[HASH_TERM_MAX];
  size_t starts[HASH_TERM_MAX + 2], n = 0, i, stem_len;
  /* words and pairs by their stem, as BM25 sees them */
  stem_len = text_stem_en(t, len, stem);
  hash_add(w, 'w', stem, stem_len, NULL, 0, W_WORD);
  if (w->prev_word_len)
    hash_add(w, 'p', w->prev_word, w->prev_word_len, stem, stem_len, W_WORD_PAIR);
  if (len + 2 > sizeof framed) {
    w->prev_word_len = 0;
    return;
  }
  framed[0] = '^';
  memcpy(framed + 1, t, len);
  framed[len + 1] = '$';
  /* character (not byte) trigrams of ^word$ */
  for (i = 0; i < len + 2; i += utf8_len((unsigned char)framed[i])) starts[n++] = i;
  starts[n] = len + 2;
  if (n >= 4) /* words of two or more characters */
    for (i = 0; i + 3 <= n; i++)
      hash_add(w, 't', framed + starts[i], starts[i + 3] - starts[i], NULL, 0, W_TRIGRAM);
  memcpy(w->prev_word, stem, stem_len);
  w->prev_word_len = stem_len;
}

static void hash_cjk(struct hash_walk *w, const char *t, size_t len, size_t start, size_t end) {
  size_t i;
  hash_add(w, 'w', t, len, NULL, 0, W_CJK_BIGRAM);
  for (i = 0; i < len; i += utf8_len((unsigned char)t[i]))
    hash_add(w, 'c', t + i, utf8_len((unsigned char)t[i]), NULL, 0, W_CJK_CHAR);
  /* overlapping bigrams ab + bc -> abc */
  if (w->prev_cjk_len && w->prev_cjk_end > start && len > 0) {
    size_t first = utf8_len((unsigned char)t[0]);
    if (first < len) hash_add(w, 'k', w->prev_cjk, w->prev_cjk_len, t + first, len - first, W_CJK_TRIGRAM);
  }
  memcpy(w->prev_cjk, t, len);
  w->prev_cjk_len = len;
  w->prev_cjk_end = end;
}

static int hash_term(void *ctx, const char *t, size_t len, size_t start, size_t end) {
  struct hash_walk *w = ctx;
  if (len == 0) return 0;
  if (len > HASH_TERM_MAX) {
    hash_add(w, 'w', t, len, NULL, 0, W_WORD);
    w->prev_word_len = 0;
    w->prev_cjk_len = 0;
    return 0;
  }
  if (term_is_cjk(t, len)) {
    hash_cjk(w, t, len, start, end);
    w->prev_word_len = 0;
  } else {
    hash_word(w, t, len);
    w->prev_cjk_len = 0;
  }
  return 0;
}

static ragd_err hash_create(const struct embed_config *cfg, void **ctx, struct buf *err) {
  struct hash_embedder *h;
  long dim = cfg && cfg->dimensions ? cfg->dimensions : EMBED_HASH_DIM_DEFAULT;
  if (dim < 16 || dim > HASH_DIM_MAX || dim % 16) {
    if (err)
      buf_appendf(err, "RAGD_EMBED_DIMENSIONS: the hash embedder needs a multiple of 16 from 16 to %d, got %ld",
                  HASH_DIM_MAX, dim);
    return RAGD_ECONFIG;
  }
  h = calloc(1, sizeof *h);
  if (!h) return RAGD_ENOMEM;
  h->dim = (size_t)dim;
  *ctx = h;
  return RAGD_OK;
}

static void hash_destroy(void *ctx) { free(ctx); }

static size_t hash_dimensions(void *ctx) { return ((struct hash_embedder *)ctx)->dim; }

static ragd_err hash_embed(void *ctx, const struct slice *texts, size_t n, float *out,
                           struct buf *err) {
  struct hash_embedder *h = ctx;
  for (size_t i = 0; i < n; i++) {
    struct hash_walk w;
    ragd_err rc;
    memset(&w, 0, sizeof w);
    w.v = out + i * h->dim;
    w.dim = h->dim;
    memset(w.v, 0, h->dim * sizeof *w.v);
    rc = text_tokenize(texts[i].ptr, texts[i].len, hash_term, &w);
    if (rc) {
      if (err) buf_appendf(err, "text %zu cannot be embedded: %s", i, ragd_strerror(rc));
      return rc;
    }
    embed_l2_normalize(w.v, h->dim);
  }
  return RAGD_OK;
}

const struct embed_ops embed_hash_ops = {
    .version = EMBED_OPS_VERSION,
    .name = "hash",
    .create = hash_create,
    .destroy = hash_destroy,
    .embed = hash_embed,
    .dimensions = hash_dimensions,
};
