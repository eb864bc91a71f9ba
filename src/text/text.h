/* text.h - everything ragd does to raw text before it is stored or searched:
 * UTF-8 validation, Unicode normalization, the BM25 term tokenizer,
 * document structure (markdown/HTML/plain), heading-aware chunking, sentence
 * splitting and a cheap token estimate.
 *
 * All functions are pure and thread-safe. Input text is a pointer and a byte
 * length (it need not be NUL-terminated). Output strings are malloc'd and owned
 * by the caller unless a comment says otherwise. */
#ifndef RAGD_TEXT_H
#define RAGD_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* ---- UTF-8 ---------------------------------------------------------------- */

/* Checks that s[0..len) is well-formed UTF-8 (no overlongs, no surrogates, no
 * code points above U+10FFFF, no NUL bytes). Returns RAGD_OK, or RAGD_EUTF8 with
 * *bad_offset set to the byte offset of the first offending byte: the first
 * byte of an ill-formed sequence (the lead byte of an overlong, surrogate,
 * too-large or truncated sequence; a stray continuation byte, 0xC0, 0xC1,
 * 0xF5..0xFF or NUL itself). bad_offset may be NULL. */
ragd_err text_utf8_validate(const char *s, size_t len, size_t *bad_offset /* OUT */);

/* Length in bytes of the longest prefix of s[0..len) that is no longer than max
 * bytes and does not end inside a UTF-8 sequence. s must be valid UTF-8. */
size_t text_utf8_prefix(const char *s, size_t len, size_t max);

/* ---- Normalization --------------------------------------------------------- */

/* NFKC then Unicode case folding of valid UTF-8 input, for matching (never for
 * display). *out is malloc'd and NUL-terminated. */
ragd_err text_normalize(const char *s, size_t len, char **out /* OUT */,
                        size_t *out_len /* OUT */);

/* ---- BM25 terms ------------------------------------------------------------ */

/* Called once per term, in order. term is normalized (NFKC + case fold) and
 * is only valid during the call. [start, end) are byte offsets of the term's
 * source in the original input. Return nonzero to stop early (text_tokenize
 * then returns RAGD_ECANCELLED). */
typedef int (*text_term_cb)(void *ctx, const char *term, size_t term_len, size_t start,
                            size_t end);

/* Splits valid UTF-8 into BM25 terms. The text is read as extended grapheme
 * clusters (a letter with its combining marks, a jamo-spelled Hangul syllable,
 * an emoji sequence), each classed by its first code point:
 * - Latin, Cyrillic, Greek, digits and other alphabetic scripts: maximal runs of
 *   letters/digits (Unicode categories L*, N*, plus marks M* inside a word),
 *   normalized. One joiner character between two such runs keeps them in a
 *   single term when: '.' or ',' has a decimal digit (Nd) right before AND
 *   right after it (3.5, 1,000, v1.2.3); '-' has a decimal digit right before
 *   OR right after it (HB-2024-000123 -> "hb-2024-000123", covid-19). Only the
 *   joined term is emitted, not its parts. Otherwise joiners separate terms
 *   (well-known -> well, known; e.g. -> e, g; "in 2024." -> in, 2024).
 * - Hangul, Han, Hiragana, Katakana: every overlapping pair of adjacent
 *   characters in a run is one term (환불은 -> 환불, 불은); a run of one
 *   character is one term. A change of script class ends a run
 *   (policy를 -> policy, 를).
 * - Punctuation, symbols, emoji and whitespace separate terms and are dropped.
 * Query text goes through the same function, so query syntax characters never
 * reach the index engine (refund "NEAR" * -foo OR ( -> refund, near, foo, or).
 * Returns RAGD_EUTF8 if the input is not valid UTF-8 (terms before the bad
 * byte may already have been delivered), RAGD_ENOMEM, or RAGD_ECANCELLED. */
ragd_err text_tokenize(const char *s, size_t len, text_term_cb cb, void *ctx);

/* ---- Structure and chunks ---------------------------------------------------- */

enum text_format { TEXT_FORMAT_TEXT = 0, TEXT_FORMAT_MARKDOWN = 1, TEXT_FORMAT_HTML = 2 };

/* Parses "text", "markdown"/"md", "html"; returns -1 when unknown. */
int text_format_parse(const char *name);
/* Guesses the format from a file name's extension (.md/.markdown, .html/.htm,
 * anything else text). */
enum text_format text_format_from_path(const char *path);

struct text_chunk {
  char *heading_path; /* "Refunds > Card payments"; "" when no heading */
  char *text;         /* the chunk's plain text (markup removed) */
  size_t text_len;
  size_t token_count; /* text_estimate_tokens(text) */
};

struct text_chunk_list {
  struct text_chunk *items;
  size_t count;
};

/* A zeroed struct means the defaults; tokens_max 0 alone means 256 with the
 * given overlap. The overlap is capped at tokens_max / 2. */
struct text_chunk_opts {
  size_t tokens_max;     /* upper bound per chunk (default 256) */
  size_t tokens_overlap; /* tokens repeated from the previous chunk of the same
                            section (default 32) */
};

/* Splits a document into chunks. Markdown: ATX headings (#..######) and setext
 * headings start sections; paragraphs, list items, block quotes and fenced
 * code are blocks; inline markup (emphasis, links -> their text, images -> alt
 * text, inline code) is reduced to text. HTML: h1-h6 start sections; p, li, div,
 * br, tr, pre... end blocks; script, style, head, template, noscript contents are
 * dropped; entities decoded (named common ones and numeric). Text: blank lines
 * separate paragraphs.
 * A chunk holds whole blocks of one section up to tokens_max; a block longer
 * than tokens_max is split at sentence, then word, then character boundaries,
 * never inside a UTF-8 sequence. Consecutive chunks of one section share about
 * tokens_overlap tokens (whole sentences, or whole words when the last
 * sentence is too long). Empty documents yield zero chunks.
 * heading_path joins every open heading level, h1 included, with " > ".
 * Chunk text holds no heading lines; blocks are separated by a blank line,
 * list items and table rows ("cell | cell") by one line break; bullets become
 * "- ", ordered items keep their number.
 * s must be valid UTF-8. *out is filled and owned by the caller
 * (text_chunk_list_dispose). opts may be NULL for defaults. */
ragd_err text_chunk(const char *s, size_t len, enum text_format fmt,
                    const struct text_chunk_opts *opts, struct text_chunk_list *out /* OUT */);
void text_chunk_list_dispose(struct text_chunk_list *list);

/* The document's title as markup states it: the first h1; else HTML <title>;
 * else the first heading of any level. Inline markup removed, whitespace
 * collapsed. NULL when there is none (always for TEXT_FORMAT_TEXT) or on
 * allocation failure. The result is malloc'd (free()). */
char *text_title(const char *s, size_t len, enum text_format fmt);

/* ---- Sentences and tokens ------------------------------------------------------ */

struct text_span {
  size_t start; /* byte offset */
  size_t len;   /* byte length, trailing whitespace excluded */
};

/* Splits valid UTF-8 prose into sentences. Knows Korean endings (다. 요. 까?
 * 죠. and friends, also without a space after them), English abbreviations
 * (Mr., e.g., i.e., etc., U.S.), decimals (3.5), URLs, e-mail addresses,
 * ellipses, closing quotes and parentheses after the end mark, and line breaks
 * between list items (a leading bullet "- ", "* ", "+ ", "• " is left out of
 * its sentence's span; item numbers stay). Single line breaks elsewhere do
 * not end a sentence. *out is malloc'd (free()); *count may be 0. */
ragd_err text_sentences(const char *s, size_t len, struct text_span **out /* OUT */,
                        size_t *count /* OUT */);

/* A cheap estimate of LLM tokens in s: about one per short Latin word (longer
 * words count more), one per Hangul/Han/Kana character, one per punctuation or
 * symbol. Used for chunk budgets; exact BPE counting lives elsewhere. */
size_t text_estimate_tokens(const char *s, size_t len);

/* Share (0..1) of letters in s that are Hangul; lets the generator answer in
 * the language of the question. */
double text_hangul_ratio(const char *s, size_t len);

#endif
