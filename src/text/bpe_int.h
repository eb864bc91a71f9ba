/* bpe_int.h - internals of the BPE token counter shared by bpe.c,
 * bpe_split.c and the unit tests. Not for other modules: they use text.h. */
#ifndef RAGD_TEXT_BPE_INT_H
#define RAGD_TEXT_BPE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "text/text.h"

#define BPE_RANK_NONE UINT32_MAX

/* One loaded encoding. Immutable after text_bpe_load, so any number of
 * threads may read it at once. */
struct text_bpe {
  enum text_bpe_encoding encoding;
  uint32_t n_ranks;         /* ranks are 0 .. n_ranks-1, every one present */
  unsigned char *bytes;     /* every token's bytes, back to back */
  uint32_t *offset;         /* token r is bytes[offset[r] .. offset[r] + length[r]) */
  uint16_t *length;
  uint64_t *slots;          /* open addressing: hash tag << 32 | (rank + 1); 0 empty */
  size_t mask;              /* slot count - 1 (a power of two) */
  uint32_t *pair_rank;      /* 65536 entries: rank of each two-byte token or NONE */
  uint32_t byte_rank[256];  /* rank of each single byte */
};

/* The rank of the token whose bytes are p[0..n), or BPE_RANK_NONE. */
uint32_t bpe_rank(const struct text_bpe *b, const unsigned char *p, size_t n);

/* Pre-tokenization: the end (exclusive byte offset) of the piece that starts
 * at pos, following the split pattern of the encoding exactly; pos < len.
 * Returns 0 when s holds ill-formed UTF-8 at the piece being scanned. */
size_t bpe_split_cl100k(const unsigned char *s, size_t len, size_t pos);
size_t bpe_split_o200k(const unsigned char *s, size_t len, size_t pos);

/* Byte-pair merging of one piece p[0..n), n >= 2, following tiktoken's rule:
 * repeatedly merge the adjacent pair whose concatenation has the lowest rank,
 * the leftmost one on ties. Writes the boundaries of the resulting tokens to
 * starts[0..count] (starts[0] = 0, starts[count] = n; starts holds n + 1
 * entries) and returns count, or 0 when memory ran out. The two functions
 * give identical results: the first scans a small array (fast for short
 * pieces), the second keeps a heap of candidate pairs (O(n log n) for long
 * ones). */
size_t bpe_merge_scan(const struct text_bpe *b, const unsigned char *p, size_t n,
                      uint32_t *starts /* OUT */);
size_t bpe_merge_heap(const struct text_bpe *b, const unsigned char *p, size_t n,
                      uint32_t *starts /* OUT */);

#endif
