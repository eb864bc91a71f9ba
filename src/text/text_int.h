/* text_int.h - declarations shared by the files of src/text/ and its unit
 * tests; nothing outside text/ includes this header.
 *
 * Everything here is pure and thread-safe like the public API. */
#ifndef RAGD_TEXT_INT_H
#define RAGD_TEXT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "text/text.h"
#include "util/buf.h"

/* ---- code points ------------------------------------------------------------ */

/* Decodes the code point starting at s[i] (i < len). Returns the number of
 * bytes it occupies (always >= 1, so callers make progress) and stores the
 * code point in *cp, or -1 when the bytes there are not well-formed UTF-8. */
size_t text_int_decode(const char *s, size_t len, size_t i, int32_t *cp /* OUT */);

/* Start of the code point that ends right before byte i (i > 0), walking back
 * over continuation bytes. */
size_t text_int_prev_start(const char *s, size_t i);

/* Appends the UTF-8 encoding of cp (U+FFFD for surrogates and values outside
 * Unicode). Errors are those of buf_append. */
ragd_err text_int_put_cp(struct buf *out, int32_t cp);

/* Whitespace for splitting purposes: Unicode Zs/Zl/Zp and ASCII tab, LF, VT,
 * FF, CR. */
int text_int_is_space(int32_t cp);

/* Hangul letters: syllables, conjoining and compatibility jamo, half-width
 * jamo. */
int text_int_is_hangul(int32_t cp);

/* Scripts written without spaces between words, indexed as character bigrams:
 * Hangul, Han (CJK ideographs and their extensions), Hiragana, Katakana. Block
 * ranges, since utf8proc has no script property. */
int text_int_is_cjk(int32_t cp);

/* 1 for letters (L*) and numbers (N*), 0 otherwise. */
int text_int_is_alnum(int32_t cp);

/* ---- normalization ---------------------------------------------------------- */

/* Appends NFKC + case fold of the valid UTF-8 s[0..len) to out. ASCII and
 * precomposed Hangul take a copy-only fast path. Returns RAGD_EUTF8 for bytes
 * utf8proc rejects, RAGD_ENOMEM/RAGD_ETOOBIG from the buffer. */
ragd_err text_int_norm_append(struct buf *out, const char *s, size_t len);

/* ---- HTML entities ---------------------------------------------------------- */

/* When s[0..n) starts with an HTML character reference ("&amp;", "&#233;",
 * "&#x1F600;"), appends its decoding to out and stores the reference's byte
 * length in *consumed; otherwise *consumed is 0 and nothing is appended.
 * Numeric references to NUL, surrogates or values above U+10FFFF decode to
 * U+FFFD. */
ragd_err text_int_entity(const char *s, size_t n, struct buf *out, size_t *consumed /* OUT */);

/* ---- document structure ----------------------------------------------------- */

enum text_block_kind {
  TEXT_BLOCK_PARA = 0, /* paragraph, block quote, HTML div/p text */
  TEXT_BLOCK_ITEM = 1, /* list item or table row: joined to its neighbours by "\n" */
  TEXT_BLOCK_CODE = 2  /* fenced code or <pre>: whitespace kept */
};

struct text_block {
  size_t section; /* index into text_doc.paths */
  enum text_block_kind kind;
  char *text; /* plain text, trimmed, NUL-terminated, never empty */
  size_t len;
};

/* A parsed document: its sections (one heading path each; paths[0] is the
 * part before the first heading, "") and its blocks in reading order. */
struct text_doc {
  char **paths;
  size_t path_count;
  size_t path_cap;
  struct text_block *blocks;
  size_t block_count;
  size_t block_cap;
  char *first_h1;      /* NULL when absent */
  char *first_heading; /* any level; NULL when absent */
  char *html_title;    /* <title>; NULL when absent */
};

/* Parses s (valid UTF-8) into *doc, which the caller releases with
 * text_doc_dispose (also after an error). */
ragd_err text_doc_parse(const char *s, size_t len, enum text_format fmt,
                        struct text_doc *doc /* OUT */);
void text_doc_dispose(struct text_doc *doc);

/* Markdown inline markup reduced to text (emphasis, code spans, links, images,
 * autolinks, raw HTML tags, escapes, entities), appended to out. */
ragd_err text_int_md_inline(const char *s, size_t len, struct buf *out);

#endif
