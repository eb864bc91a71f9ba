/* bpe.c - exact byte-level BPE token counts: rank files, the rank lookup,
 * byte-pair merging and the encode/count driver.
 *
 * The text is cut into pieces by the encoding's split rules (bpe_split.c).
 * A piece that is itself a token is one id; any other piece starts as single
 * bytes and the adjacent pair whose concatenation has the lowest rank is
 * merged, again and again, until no adjacent pair is a token. This is
 * tiktoken's algorithm; ties (the same pair twice in a piece) go to the
 * leftmost pair, as there. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "text/bpe_int.h"
#include "util/buf.h"

/* Pieces up to this many bytes merge by scanning a small array (what nearly
 * every word is); longer ones use a heap of candidate pairs. */
#define SMALL_PIECE 128

static const char *const encoding_names[] = {"cl100k_base", "o200k_base"};

int text_bpe_encoding_parse(const char *name) {
  for (size_t i = 0; name && i < sizeof encoding_names / sizeof encoding_names[0]; i++)
    if (strcmp(name, encoding_names[i]) == 0) return (int)i;
  return -1;
}

const char *text_bpe_encoding_name(enum text_bpe_encoding enc) {
  return (unsigned)enc < sizeof encoding_names / sizeof encoding_names[0] ? encoding_names[enc]
                                                                            : "unknown";
}

enum text_bpe_encoding text_bpe_encoding_of(const struct text_bpe *bpe) { return bpe->encoding; }

static void set_error(struct buf *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct buf *err, const char *fmt, ...) {
  va_list ap;
  if (!err) return;
  buf_reset(err);
  va_start(ap, fmt);
  buf_vappendf(err, fmt, ap);
  va_end(ap);
}

/* ---- rank lookup --------------------------------------------------------------- */

/* A multiply-xorshift hash over 8-byte words; tokens are short, so the loop
 * runs once or twice. */
static uint64_t hash_bytes(const unsigned char *p, size_t n) {
  uint64_t h = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)n * 0xff51afd7ed558ccdULL);
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 31;
    p += 8;
    n -= 8;
  }
  if (n) {
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0x94d049bb133111ebULL;
    h ^= h >> 29;
  }
  h *= 0xd6e8feb86659fd93ULL;
  h ^= h >> 32;
  return h;
}

uint32_t bpe_rank(const struct text_bpe *b, const unsigned char *p, size_t n) {
  uint64_t h;
  uint32_t tag;
  size_t i;
  if (n == 1) return b->byte_rank[p[0]];
  if (n == 2) return b->pair_rank[(size_t)p[0] << 8 | p[1]];
  if (n == 0 || n > UINT16_MAX) return BPE_RANK_NONE;
  h = hash_bytes(p, n);
  tag = (uint32_t)(h >> 32);
  for (i = (size_t)h & b->mask;; i = (i + 1) & b->mask) {
    uint64_t slot = b->slots[i];
    uint32_t r;
    if (!slot) return BPE_RANK_NONE;
    if ((uint32_t)(slot >> 32) != tag) continue;
    r = (uint32_t)slot - 1;
    if (b->length[r] == n && memcmp(b->bytes + b->offset[r], p, n) == 0) return r;
  }
}

/* ---- loading ------------------------------------------------------------------- */

static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

/* Standard base64 with padding; dst needs n / 4 * 3 bytes. Returns the
 * decoded length, or -1 when src is not base64. */
static long b64_decode(const char *src, size_t n, unsigned char *dst) {
  long out = 0;
  if (n == 0 || n % 4) return -1;
  for (size_t i = 0; i < n; i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; k++) {
      unsigned char c = (unsigned char)src[i + k];
      if (c == '=' && i + 4 == n && k >= 2) {
        v[k] = 0;
        pad++;
      } else if (pad) {
        return -1; /* data after '=' */
      } else {
        v[k] = b64_value(c);
        if (v[k] < 0) return -1;
      }
    }
    dst[out++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
    if (pad < 2) dst[out++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
    if (pad < 1) dst[out++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
  }
  return out;
}

static ragd_err read_file(const char *path, char **data /* OUT */, size_t *len /* OUT */) {
  FILE *f = fopen(path, "rb");
  struct buf b;
  char chunk[65536];
  size_t n;
  ragd_err rc = RAGD_OK;
  *data = NULL;
  if (!f) return RAGD_EIO;
  buf_init(&b, (size_t)64 << 20);
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    rc = buf_append(&b, chunk, n);
    if (rc) goto out;
  }
  if (ferror(f)) {
    rc = RAGD_EIO;
    goto out;
  }
  *data = buf_take(&b, len);
  if (!*data) rc = RAGD_ENOMEM;
out:
  buf_dispose(&b);
  fclose(f);
  return rc;
}

/* Inserts rank r; returns the rank already holding the same bytes, or
 * BPE_RANK_NONE when r was new. */
static uint32_t table_insert(struct text_bpe *b, uint32_t r) {
  const unsigned char *p = b->bytes + b->offset[r];
  size_t n = b->length[r];
  uint64_t h = hash_bytes(p, n);
  size_t i;
  for (i = (size_t)h & b->mask; b->slots[i]; i = (i + 1) & b->mask) {
    uint32_t other = (uint32_t)b->slots[i] - 1;
    if (b->length[other] == n && memcmp(b->bytes + b->offset[other], p, n) == 0) return other;
  }
  b->slots[i] = (h >> 32) << 32 | (uint64_t)(r + 1);
  return BPE_RANK_NONE;
}

/* Parses "<base64> <rank>\n" lines. Ranks must be exactly 0..lines-1, each
 * once, with distinct bytes, and every single byte must be a token (so any
 * text can be encoded). */
static ragd_err parse_ranks(struct text_bpe *b, const char *path, const char *data, size_t len,
                            struct buf *err) {
  size_t lines = 0, line_no = 0, used = 0, slots = 1;
  const char *p = data, *end = data + len;
  for (size_t i = 0; i < len; i++) lines += data[i] == '\n';
  if (len && data[len - 1] != '\n') lines++;
  if (lines < 256 || lines >= UINT32_MAX / 2) {
    set_error(err, "%s: %zu lines; not a rank file", path, lines);
    return RAGD_EINVAL;
  }
  while (slots < lines * 2) slots <<= 1;
  b->n_ranks = (uint32_t)lines;
  b->bytes = malloc(len);
  b->offset = malloc(lines * sizeof *b->offset);
  b->length = calloc(lines, sizeof *b->length);
  b->slots = calloc(slots, sizeof *b->slots);
  b->pair_rank = malloc(65536 * sizeof *b->pair_rank);
  if (!b->bytes || !b->offset || !b->length || !b->slots || !b->pair_rank) return RAGD_ENOMEM;
  b->mask = slots - 1;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *line_end = nl ? nl : end;
    const char *space = memchr(p, ' ', (size_t)(line_end - p));
    unsigned long rank = 0;
    long n;
    line_no++;
    if (!space || space + 1 == line_end) goto bad_line;
    for (const char *q = space + 1; q < line_end; q++) {
      if (*q < '0' || *q > '9' || rank >= lines) goto bad_line;
      rank = rank * 10 + (unsigned long)(*q - '0');
    }
    n = b64_decode(p, (size_t)(space - p), b->bytes + used);
    if (n <= 0 || n > UINT16_MAX || rank >= lines || b->length[rank]) goto bad_line;
    b->offset[rank] = (uint32_t)used;
    b->length[rank] = (uint16_t)n;
    used += (size_t)n;
    p = line_end + (nl ? 1 : 0);
  }
  /* lines distinct ranks below lines: every rank is there. */
  for (uint32_t r = 0; r < b->n_ranks; r++) {
    uint32_t dup = table_insert(b, r);
    if (dup != BPE_RANK_NONE) {
      set_error(err, "%s: ranks %u and %u have the same bytes", path, dup, r);
      return RAGD_EINVAL;
    }
  }
  /* bpe_rank answers one- and two-byte lookups from these arrays. */
  for (unsigned c = 0; c < 256; c++) b->byte_rank[c] = BPE_RANK_NONE;
  for (uint32_t r = 0; r < b->n_ranks; r++) {
    const unsigned char *t = b->bytes + b->offset[r];
    if (b->length[r] == 1) b->byte_rank[t[0]] = r;
  }
  for (size_t i = 0; i < 65536; i++) b->pair_rank[i] = BPE_RANK_NONE;
  for (uint32_t r = 0; r < b->n_ranks; r++) {
    const unsigned char *t = b->bytes + b->offset[r];
    if (b->length[r] == 2) b->pair_rank[(size_t)t[0] << 8 | t[1]] = r;
  }
  for (unsigned c = 0; c < 256; c++) {
    if (b->byte_rank[c] == BPE_RANK_NONE) {
      set_error(err, "%s: byte 0x%02x has no token", path, c);
      return RAGD_EINVAL;
    }
  }
  return RAGD_OK;
bad_line:
  set_error(err, "%s:%zu: expected \"<base64> <rank>\" with a new rank below %zu", path, line_no,
            lines);
  return RAGD_EINVAL;
}

/* The folder holding the running executable, or an empty string. */
static void exe_dir(struct buf *out) {
  char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  char *slash;
  if (n <= 0) return;
  path[n] = '\0';
  slash = strrchr(path, '/');
  if (!slash) return;
  *slash = '\0';
  buf_append_str(out, path);
}

static ragd_err load_path(struct text_bpe *b, const char *path, struct buf *err) {
  char *data = NULL;
  size_t len = 0;
  ragd_err rc = read_file(path, &data, &len);
  if (rc == RAGD_EIO) set_error(err, "%s: %s", path, strerror(errno));
  if (rc == RAGD_ETOOBIG) {
    set_error(err, "%s: larger than 64 MiB; not a rank file", path);
    rc = RAGD_EINVAL;
  }
  if (!rc) rc = parse_ranks(b, path, data, len, err);
  free(data);
  return rc;
}

ragd_err text_bpe_load(enum text_bpe_encoding enc, const char *dir, struct text_bpe **out,
                       struct buf *err) {
  struct text_bpe *b = NULL;
  struct buf path, exe;
  const char *name = text_bpe_encoding_name(enc);
  ragd_err rc = RAGD_OK;
  *out = NULL;
  buf_init(&path, 0);
  buf_init(&exe, 0);
  if (text_bpe_encoding_parse(name) < 0) {
    set_error(err, "unknown encoding %d", (int)enc);
    return RAGD_EINVAL;
  }
  b = calloc(1, sizeof *b);
  if (!b) return RAGD_ENOMEM;
  b->encoding = enc;
  if (dir && dir[0]) {
    rc = buf_appendf(&path, "%s/%s.tiktoken", dir, name);
    if (!rc) rc = load_path(b, path.data, err);
    goto out;
  }
  exe_dir(&exe);
  {
    static const char *const relative[] = {"../data/tokenizers", "../share/ragd/tokenizers"};
    for (size_t i = 0; i < sizeof relative / sizeof relative[0]; i++) {
      buf_reset(&path);
      rc = buf_appendf(&path, "%s/%s/%s.tiktoken", exe.data ? exe.data : ".", relative[i], name);
      if (rc) goto out;
      if (access(path.data, R_OK) == 0) {
        rc = load_path(b, path.data, err);
        goto out;
      }
    }
  }
  set_error(err,
            "%s.tiktoken not found in %s/../data/tokenizers or %s/../share/ragd/tokenizers; "
            "set RAGD_TOKENIZER_DIR to the folder that holds it",
            name, exe.data ? exe.data : ".", exe.data ? exe.data : ".");
  rc = RAGD_EIO;
out:
  buf_dispose(&path);
  buf_dispose(&exe);
  if (rc) {
    text_bpe_free(b);
    return rc;
  }
  *out = b;
  return RAGD_OK;
}

void text_bpe_free(struct text_bpe *bpe) {
  if (!bpe) return;
  free(bpe->bytes);
  free(bpe->offset);
  free(bpe->length);
  free(bpe->slots);
  free(bpe->pair_rank);
  free(bpe);
}

const char *text_bpe_token_bytes(const struct text_bpe *bpe, uint32_t id, size_t *len) {
  if (id >= bpe->n_ranks) return NULL;
  *len = bpe->length[id];
  return (const char *)bpe->bytes + bpe->offset[id];
}

/* ---- merging ------------------------------------------------------------------- */

size_t bpe_merge_scan(const struct text_bpe *b, const unsigned char *p, size_t n,
                      uint32_t *starts) {
  uint32_t stack_ranks[SMALL_PIECE + 1];
  uint32_t *ranks = n <= SMALL_PIECE ? stack_ranks : malloc((n + 1) * sizeof *ranks);
  size_t count = n + 1; /* boundaries in starts */
  if (!ranks) return 0;
  /* ranks[i] is the rank of parts i and i+1 joined (none for the last part
   * and the end sentinel). */
  for (size_t i = 0; i <= n; i++) starts[i] = (uint32_t)i;
  for (size_t i = 0; i + 1 < n; i++) ranks[i] = b->pair_rank[(size_t)p[i] << 8 | p[i + 1]];
  ranks[n - 1] = BPE_RANK_NONE;
  ranks[n] = BPE_RANK_NONE;
  for (;;) {
    uint32_t best = BPE_RANK_NONE;
    size_t at = 0;
    for (size_t i = 0; i + 1 < count; i++) {
      if (ranks[i] < best) {
        best = ranks[i];
        at = i;
      }
    }
    if (best == BPE_RANK_NONE) break;
    /* Parts at and at+1 become one; its pairs with both neighbours change. */
    if (at > 0)
      ranks[at - 1] = at + 2 < count ? bpe_rank(b, p + starts[at - 1], starts[at + 2] - starts[at - 1])
                                     : BPE_RANK_NONE;
    ranks[at] = at + 3 < count ? bpe_rank(b, p + starts[at], starts[at + 3] - starts[at])
                               : BPE_RANK_NONE;
    memmove(starts + at + 1, starts + at + 2, (count - at - 2) * sizeof *starts);
    memmove(ranks + at + 1, ranks + at + 2, (count - at - 2) * sizeof *ranks);
    count--;
  }
  if (ranks != stack_ranks) free(ranks);
  return count - 1;
}

/* A candidate merge: parts starting at left and at its current right
 * neighbour, together covering [left, end). */
struct cand {
  uint32_t rank, left, end;
};

static bool cand_before(const struct cand *a, const struct cand *b) {
  return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(struct cand *heap, size_t *n, struct cand c) {
  size_t i = (*n)++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!cand_before(&c, &heap[parent])) break;
    heap[i] = heap[parent];
    i = parent;
  }
  heap[i] = c;
}

static struct cand heap_pop(struct cand *heap, size_t *n) {
  struct cand top = heap[0], last = heap[--*n];
  size_t i = 0;
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= *n) break;
    if (child + 1 < *n && cand_before(&heap[child + 1], &heap[child])) child++;
    if (!cand_before(&heap[child], &last)) break;
    heap[i] = heap[child];
    i = child;
  }
  if (*n) heap[i] = last;
  return top;
}

#define NODE_NONE UINT32_MAX
#define NODE_DEAD (UINT32_MAX - 1)

/* Parts are a linked list whose nodes are named by their first byte's
 * offset, so a part ends where its successor starts. Entries for pairs that
 * have since changed stay in the heap and are skipped when popped: an entry
 * is current when its left part is alive and its right neighbour still ends
 * at entry.end (the rank then describes exactly those bytes). Popping the
 * least (rank, left) is the array scan's choice, leftmost on ties. */
size_t bpe_merge_heap(const struct text_bpe *b, const unsigned char *p, size_t n,
                      uint32_t *starts) {
  uint32_t *next = malloc(n * sizeof *next);
  uint32_t *prev = malloc(n * sizeof *prev);
  struct cand *heap = malloc(3 * n * sizeof *heap);
  size_t heap_n = 0, count = 0;
  if (!next || !prev || !heap) goto out;
  for (size_t i = 0; i < n; i++) {
    next[i] = (uint32_t)(i + 1);
    prev[i] = i ? (uint32_t)(i - 1) : NODE_NONE;
  }
  for (size_t i = 0; i + 1 < n; i++) {
    uint32_t r = b->pair_rank[(size_t)p[i] << 8 | p[i + 1]];
    if (r != BPE_RANK_NONE) heap_push(heap, &heap_n, (struct cand){r, (uint32_t)i, (uint32_t)i + 2});
  }
  while (heap_n) {
    struct cand c = heap_pop(heap, &heap_n);
    uint32_t left = c.left, right = next[left], after;
    if (prev[left] == NODE_DEAD || right >= n || next[right] != c.end) continue;
    after = next[right];
    next[left] = after;
    if (after < n) prev[after] = left;
    prev[right] = NODE_DEAD;
    if (prev[left] != NODE_NONE) {
      uint32_t before = prev[left];
      uint32_t r = bpe_rank(b, p + before, after - before);
      if (r != BPE_RANK_NONE) heap_push(heap, &heap_n, (struct cand){r, before, after});
    }
    if (after < n) {
      uint32_t r = bpe_rank(b, p + left, next[after] - left);
      if (r != BPE_RANK_NONE) heap_push(heap, &heap_n, (struct cand){r, left, next[after]});
    }
  }
  for (uint32_t i = 0; i < n; i = next[i]) starts[count++] = i;
  starts[count] = (uint32_t)n;
out:
  free(next);
  free(prev);
  free(heap);
  return count;
}

/* ---- encoding ------------------------------------------------------------------ */

/* Where tokens go: counted only, or appended to a growing array. */
struct sink {
  bool keep_ids;
  uint32_t *ids;
  size_t count, cap;
};

static ragd_err sink_push(struct sink *k, uint32_t id) {
  if (k->keep_ids && k->count == k->cap) {
    size_t cap = k->cap ? k->cap * 2 : 256;
    uint32_t *ids = realloc(k->ids, cap * sizeof *ids);
    if (!ids) return RAGD_ENOMEM;
    k->ids = ids;
    k->cap = cap;
  }
  if (k->keep_ids) k->ids[k->count] = id;
  k->count++;
  return RAGD_OK;
}

static ragd_err encode_piece(const struct text_bpe *b, const unsigned char *p, size_t n,
                             struct sink *k) {
  uint32_t small[SMALL_PIECE + 1];
  uint32_t *starts = small;
  uint32_t r = bpe_rank(b, p, n);
  size_t count;
  ragd_err rc = RAGD_OK;
  if (r != BPE_RANK_NONE) return sink_push(k, r);
  /* Every single byte is a token, so n >= 2 here. */
  if (n > SMALL_PIECE) {
    if (n >= NODE_DEAD) return RAGD_ETOOBIG;
    starts = malloc((n + 1) * sizeof *starts);
    if (!starts) return RAGD_ENOMEM;
  }
  count = n <= SMALL_PIECE ? bpe_merge_scan(b, p, n, starts) : bpe_merge_heap(b, p, n, starts);
  if (!count) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  if (!k->keep_ids) {
    k->count += count;
    goto out;
  }
  for (size_t t = 0; t < count && !rc; t++)
    rc = sink_push(k, bpe_rank(b, p + starts[t], starts[t + 1] - starts[t]));
out:
  if (starts != small) free(starts);
  return rc;
}

static ragd_err encode(const struct text_bpe *b, const char *s, size_t len, struct sink *k) {
  const unsigned char *u = (const unsigned char *)s;
  size_t (*split)(const unsigned char *, size_t, size_t) =
      b->encoding == TEXT_BPE_CL100K_BASE ? bpe_split_cl100k : bpe_split_o200k;
  size_t pos = 0;
  while (pos < len) {
    size_t end = split(u, len, pos);
    ragd_err rc;
    if (!end) return RAGD_EUTF8;
    rc = encode_piece(b, u + pos, end - pos, k);
    if (rc) return rc;
    pos = end;
  }
  return RAGD_OK;
}

ragd_err text_bpe_count(const struct text_bpe *bpe, const char *s, size_t len, size_t *count) {
  struct sink k = {0};
  ragd_err rc = encode(bpe, s, len, &k);
  *count = rc ? 0 : k.count;
  return rc;
}

ragd_err text_bpe_encode(const struct text_bpe *bpe, const char *s, size_t len, uint32_t **ids,
                         size_t *count) {
  struct sink k = {.keep_ids = true};
  ragd_err rc = encode(bpe, s, len, &k);
  if (rc) {
    free(k.ids);
    k.ids = NULL;
    k.count = 0;
  }
  *ids = k.ids;
  *count = k.count;
  return rc;
}
