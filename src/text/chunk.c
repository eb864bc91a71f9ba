/* chunk.c - heading-aware, token-bounded chunks with overlap.
 *
 * The parsed document (structure.c) is a list of blocks, each in a section.
 * Blocks are cut into pieces only when one is longer than tokens_max: at
 * sentence ends first, then between words, then between code points. Pieces
 * are packed greedily into chunks; a chunk is a list of units, each a byte
 * range of one block, so a chunk's text is always copied from whole UTF-8
 * sequences of the source.
 *
 * Budgets add up piece estimates: text_estimate_tokens of a concatenation is
 * never more than the sum of its parts (estimate.c), so a chunk never exceeds
 * tokens_max by its own token_count either. */
#include <stdlib.h>
#include <string.h>

#include "text/text_int.h"

#define CHUNK_TOKENS_MAX_DEFAULT 256
#define CHUNK_TOKENS_OVERLAP_DEFAULT 32
/* The overlap is searched for in at most this many bytes at the end of the
 * previous chunk (only zero-token text such as marks could make it longer). */
#define CHUNK_OVERLAP_BYTES_MAX 16384

struct unit {
  size_t block;
  size_t start, end; /* byte range in the block's text */
};

struct unit_list {
  struct unit *items;
  size_t count, cap;
};

struct chunker {
  const struct text_doc *doc;
  size_t tokens_max;
  size_t tokens_overlap;
  struct text_chunk_list *out;
  size_t out_cap;
  struct unit_list cur;
  size_t cur_tokens;
};

static ragd_err units_push(struct unit_list *l, size_t block, size_t start, size_t end) {
  struct unit *last = l->count ? &l->items[l->count - 1] : NULL;
  if (last && last->block == block && last->end == start) {
    last->end = end;
    return RAGD_OK;
  }
  if (l->count == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 8;
    struct unit *n = realloc(l->items, cap * sizeof *n);
    if (!n) return RAGD_ENOMEM;
    l->items = n;
    l->cap = cap;
  }
  l->items[l->count].block = block;
  l->items[l->count].start = start;
  l->items[l->count].end = end;
  l->count++;
  return RAGD_OK;
}

static int is_space_byte(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Appends the text of the current units as one chunk. */
static ragd_err emit_chunk(struct chunker *c) {
  const struct text_doc *doc = c->doc;
  struct buf text;
  struct text_chunk *ch;
  size_t k, section = 0;
  int prev_kind = -1;
  size_t prev_block = (size_t)-1;
  ragd_err rc = RAGD_OK;
  char *path = NULL, *body = NULL;
  size_t body_len = 0;

  buf_init(&text, 0);
  for (k = 0; k < c->cur.count; k++) {
    const struct unit *u = &c->cur.items[k];
    const struct text_block *b = &doc->blocks[u->block];
    const char *p = b->text + u->start;
    size_t n = u->end - u->start;
    while (n > 0 && is_space_byte(p[0])) {
      p++;
      n--;
    }
    while (n > 0 && is_space_byte(p[n - 1])) n--;
    if (n == 0) continue;
    section = b->section;
    if (text.len > 0) {
      const char *sep = "\n\n";
      if (u->block == prev_block) {
        sep = " ";
      } else if (prev_kind == TEXT_BLOCK_ITEM && b->kind == TEXT_BLOCK_ITEM) {
        sep = "\n";
      }
      rc = buf_append_str(&text, sep);
      if (rc) goto out;
    }
    rc = buf_append(&text, p, n);
    if (rc) goto out;
    prev_kind = (int)b->kind;
    prev_block = u->block;
  }
  if (text.len == 0) goto out;

  if (c->out->count == c->out_cap) {
    size_t cap = c->out_cap ? c->out_cap * 2 : 8;
    struct text_chunk *items = realloc(c->out->items, cap * sizeof *items);
    if (!items) {
      rc = RAGD_ENOMEM;
      goto out;
    }
    c->out->items = items;
    c->out_cap = cap;
  }
  path = strdup(doc->paths[section]);
  body = buf_take(&text, &body_len);
  if (!path || !body) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  ch = &c->out->items[c->out->count++];
  ch->heading_path = path;
  ch->text = body;
  ch->text_len = body_len;
  ch->token_count = text_estimate_tokens(body, body_len);
  path = NULL;
  body = NULL;
out:
  free(path);
  free(body);
  buf_dispose(&text);
  return rc;
}

/* Start of the longest suffix of t[a..z) made of whole sentences that fits in
 * sentence_budget tokens; when not even the last sentence fits, of whole
 * words within word_budget; z when not even one word fits. A sentence may
 * overshoot the word budget a little: a repeated fragment of a sentence
 * reads worse than a slightly longer overlap. */
static ragd_err suffix_start(const char *t, size_t a, size_t z, size_t sentence_budget,
                             size_t word_budget, size_t *start) {
  struct text_span *spans = NULL;
  size_t count = 0, k, p, best = z;
  ragd_err rc;

  *start = z;
  if (z - a > CHUNK_OVERLAP_BYTES_MAX) a = text_utf8_prefix(t, z, z - CHUNK_OVERLAP_BYTES_MAX);
  rc = text_sentences(t + a, z - a, &spans, &count);
  if (rc) return rc;
  for (k = count; k > 0; k--) {
    p = a + spans[k - 1].start;
    if (text_estimate_tokens(t + p, z - p) > sentence_budget) break;
    best = p;
  }
  free(spans);
  if (best == z) {
    /* word starts, from the end */
    p = z;
    while (p > a) {
      size_t w = p;
      while (w > a && is_space_byte(t[w - 1])) w--;
      while (w > a && !is_space_byte(t[w - 1])) w--;
      if (w == p) break;
      if (text_estimate_tokens(t + w, z - w) > word_budget) break;
      best = w;
      p = w;
    }
  }
  *start = best;
  return RAGD_OK;
}

/* Closes the current chunk and starts the next one with about
 * tokens_overlap tokens from its end, leaving room for next_tokens more. */
static ragd_err next_chunk(struct chunker *c, size_t next_tokens) {
  struct unit_list keep = {0};
  size_t budget = c->tokens_overlap, used = 0, k, first, hard, soft;
  ragd_err rc;

  rc = emit_chunk(c);
  if (rc) goto out;
  /* room left next to the next piece; never half of the previous chunk */
  hard = c->tokens_max - next_tokens;
  if (hard > c->cur_tokens / 2) hard = c->cur_tokens / 2;
  if (budget > hard) budget = hard;
  soft = budget + budget / 2;
  if (soft > hard) soft = hard;

  /* walk back over whole units, then part of one */
  first = c->cur.count;
  while (budget > used && first > 0) {
    const struct unit *u = &c->cur.items[first - 1];
    const char *t = c->doc->blocks[u->block].text;
    size_t ut = text_estimate_tokens(t + u->start, u->end - u->start), p;
    if (used + ut <= budget) {
      used += ut;
      first--;
      continue;
    }
    rc = suffix_start(t, u->start, u->end, soft - used, budget - used, &p);
    if (rc) goto out;
    if (p < u->end) {
      rc = units_push(&keep, u->block, p, u->end);
      if (rc) goto out;
      used += text_estimate_tokens(t + p, u->end - p);
    }
    break;
  }
  for (k = first; k < c->cur.count; k++) {
    rc = units_push(&keep, c->cur.items[k].block, c->cur.items[k].start, c->cur.items[k].end);
    if (rc) goto out;
  }
  free(c->cur.items);
  c->cur = keep;
  keep.items = NULL;
  c->cur_tokens = used;
out:
  free(keep.items);
  return rc;
}

/* Adds a piece (tokens <= tokens_max) of block bi to the current chunk. */
static ragd_err add_piece(struct chunker *c, size_t bi, size_t start, size_t end,
                          size_t tokens) {
  ragd_err rc;
  if (c->cur.count > 0 && c->cur_tokens + tokens > c->tokens_max) {
    rc = next_chunk(c, tokens);
    if (rc) return rc;
  }
  rc = units_push(&c->cur, bi, start, end);
  if (rc) return rc;
  c->cur_tokens += tokens;
  return RAGD_OK;
}

/* A section ends: its last chunk carries no overlap into the next one. */
static ragd_err end_section(struct chunker *c) {
  ragd_err rc = RAGD_OK;
  if (c->cur.count > 0) rc = emit_chunk(c);
  c->cur.count = 0;
  c->cur_tokens = 0;
  return rc;
}

/* Code point by code point, for a word longer than tokens_max. */
static ragd_err split_chars(struct chunker *c, size_t bi, size_t a, size_t z) {
  const char *t = c->doc->blocks[bi].text;
  size_t i = a, n;
  int32_t cp;
  ragd_err rc;
  while (i < z) {
    n = text_int_decode(t, z, i, &cp);
    rc = add_piece(c, bi, i, i + n, text_estimate_tokens(t + i, n));
    if (rc) return rc;
    i += n;
  }
  return RAGD_OK;
}

/* Word by word (with the whitespace after each), for a sentence longer than
 * tokens_max. */
static ragd_err split_words(struct chunker *c, size_t bi, size_t a, size_t z) {
  const char *t = c->doc->blocks[bi].text;
  size_t i = a, w, wt;
  ragd_err rc;
  while (i < z) {
    w = i;
    while (i < z && !is_space_byte(t[i])) i++;
    while (i < z && is_space_byte(t[i])) i++;
    wt = text_estimate_tokens(t + w, i - w);
    if (wt <= c->tokens_max) {
      rc = add_piece(c, bi, w, i, wt);
    } else {
      rc = split_chars(c, bi, w, i);
    }
    if (rc) return rc;
  }
  return RAGD_OK;
}

static ragd_err split_block(struct chunker *c, size_t bi) {
  const struct text_block *b = &c->doc->blocks[bi];
  struct text_span *spans = NULL;
  size_t count = 0, k, a, z, st;
  ragd_err rc;

  rc = text_sentences(b->text, b->len, &spans, &count);
  if (rc) goto out;
  for (k = 0; k < count; k++) {
    a = k == 0 ? 0 : spans[k].start;
    z = k + 1 < count ? spans[k + 1].start : b->len;
    st = text_estimate_tokens(b->text + a, z - a);
    if (st <= c->tokens_max) {
      rc = add_piece(c, bi, a, z, st);
    } else {
      rc = split_words(c, bi, a, z);
    }
    if (rc) goto out;
  }
out:
  free(spans);
  return rc;
}

ragd_err text_chunk(const char *s, size_t len, enum text_format fmt,
                    const struct text_chunk_opts *opts, struct text_chunk_list *out) {
  struct text_doc doc;
  struct chunker c;
  size_t k, section = 0, bt;
  ragd_err rc;

  memset(out, 0, sizeof *out);
  memset(&c, 0, sizeof c);
  c.tokens_max = CHUNK_TOKENS_MAX_DEFAULT;
  c.tokens_overlap = CHUNK_TOKENS_OVERLAP_DEFAULT;
  if (opts && (opts->tokens_max || opts->tokens_overlap)) {
    if (opts->tokens_max) c.tokens_max = opts->tokens_max;
    c.tokens_overlap = opts->tokens_overlap;
  }
  if (c.tokens_overlap > c.tokens_max / 2) c.tokens_overlap = c.tokens_max / 2;
  c.out = out;

  rc = text_doc_parse(s, len, fmt, &doc);
  if (rc) goto out;
  c.doc = &doc;
  for (k = 0; k < doc.block_count; k++) {
    const struct text_block *b = &doc.blocks[k];
    if (k == 0 || b->section != section) {
      rc = end_section(&c);
      if (rc) goto out;
      section = b->section;
    }
    bt = text_estimate_tokens(b->text, b->len);
    if (bt <= c.tokens_max) {
      rc = add_piece(&c, k, 0, b->len, bt);
    } else {
      rc = split_block(&c, k);
    }
    if (rc) goto out;
  }
  rc = end_section(&c);
out:
  free(c.cur.items);
  text_doc_dispose(&doc);
  if (rc) text_chunk_list_dispose(out);
  return rc;
}

void text_chunk_list_dispose(struct text_chunk_list *list) {
  size_t k;
  if (!list) return;
  for (k = 0; k < list->count; k++) {
    free(list->items[k].heading_path);
    free(list->items[k].text);
  }
  free(list->items);
  list->items = NULL;
  list->count = 0;
}
