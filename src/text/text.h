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

/* Light English stemming of one normalized term (see stem.c): folds
 * plurals, -ing, -ed and a final silent e ("refunds" -> "refund", "tracking"
 * -> "track", "charged" -> "charg"). Terms that are not 4..64 ASCII
 * lowercase letters are copied unchanged. out must have room for len bytes;
 * returns the stem's length (never more than len). Pure, thread-safe. */
size_t text_stem_en(const char *term, size_t len, char *out /* OUT */);

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

/* ---- BPE token counts ---------------------------------------------------------- */

/* Exact token counts for OpenAI's byte-level BPE encodings: the ids equal
 * tiktoken's encode_ordinary for the same text (special tokens such as
 * "<|endoftext|>" are counted as the plain text they are). The rank files
 * (<name>.tiktoken) are data: data/tokenizers/ in the source tree. */

struct buf;

enum text_bpe_encoding { TEXT_BPE_CL100K_BASE = 0, TEXT_BPE_O200K_BASE = 1 };

/* "cl100k_base" / "o200k_base" -> the enum; -1 when unknown. */
int text_bpe_encoding_parse(const char *name);
/* The encoding's name, e.g. "o200k_base" (static string). */
const char *text_bpe_encoding_name(enum text_bpe_encoding enc);

/* One loaded encoding (about 5 MB for cl100k_base, 10 MB for o200k_base).
 * Immutable once loaded: load it once at start-up and share it; every reading
 * function below may be called from any number of threads at once. */
struct text_bpe;

/* Reads <dir>/<name>.tiktoken and builds the lookup tables (tens of ms).
 * dir NULL or "" searches, in order, <exe>/../data/tokenizers (a build folder
 * of the source tree: build/ragd -> data/tokenizers) and
 * <exe>/../share/ragd/tokenizers (an installed binary), where <exe> is the
 * folder of the running executable; RAGD_TOKENIZER_DIR is how users name dir.
 * On failure returns RAGD_EIO (file missing or unreadable), RAGD_EINVAL
 * (malformed rank file) or RAGD_ENOMEM, and writes a message naming the file
 * (and line) into err when err is not NULL. The caller owns *out
 * (text_bpe_free). */
ragd_err text_bpe_load(enum text_bpe_encoding enc, const char *dir, struct text_bpe **out /* OUT */,
                       struct buf *err);
/* Frees an encoding; NULL is fine. No other thread may still be using it. */
void text_bpe_free(struct text_bpe *bpe);
enum text_bpe_encoding text_bpe_encoding_of(const struct text_bpe *bpe);

/* Number of tokens in s[0..len) (any length; s need not be NUL-terminated).
 * Returns RAGD_EUTF8 when s is not well-formed UTF-8 (NUL bytes are allowed,
 * as in tiktoken), RAGD_ENOMEM when a very long word cannot get its scratch
 * memory. */
ragd_err text_bpe_count(const struct text_bpe *bpe, const char *s, size_t len,
                        size_t *count /* OUT */);
/* The token ids of s[0..len), in order. *ids is malloc'd (free(); NULL when
 * *count is 0). Errors as text_bpe_count; on error *ids is NULL. */
ragd_err text_bpe_encode(const struct text_bpe *bpe, const char *s, size_t len,
                         uint32_t **ids /* OUT */, size_t *count /* OUT */);
/* The bytes of token id (not NUL-terminated; may be part of a UTF-8
 * sequence), borrowed from bpe; NULL when id is not a token of bpe.
 * Concatenating the bytes of text_bpe_encode's ids gives back the input. */
const char *text_bpe_token_bytes(const struct text_bpe *bpe, uint32_t id, size_t *len /* OUT */);

/* ---- Model table ---------------------------------------------------------------- */

/* What ragd needs to know about an LLM to budget a prompt for it. */
struct text_model {
  const char *name;                /* the table entry that matched, e.g. "gpt-4o*" */
  enum text_bpe_encoding encoding; /* how the model counts tokens */
  long context_window;             /* prompt + answer tokens the model accepts */
  long output_reserve;             /* tokens to keep free for the answer */
};

/* The built-in table (gpt-4o*, gpt-4.1*, gpt-5*, o1*, o3*, o4-mini* ->
 * o200k_base; gpt-4*, gpt-3.5-turbo*, text-embedding-* -> cl100k_base; see
 * docs/tokens.md) plus, when path is not NULL or "", the entries of a file
 * (RAGD_MODELS_FILE), which take precedence. File format: one model a line,
 * "NAME ENCODING CONTEXT_WINDOW OUTPUT_RESERVE" separated by spaces or tabs;
 * NAME ending in '*' matches every name starting with the rest; '#' starts a
 * comment; blank lines are ignored; 0 <= OUTPUT_RESERVE < CONTEXT_WINDOW.
 * Returns RAGD_EIO (unreadable file), RAGD_ECONFIG (malformed line; err says
 * "path:line: what"), RAGD_ENOMEM. The caller owns *out
 * (text_model_table_free). */
struct text_model_table;
ragd_err text_model_table_load(const char *path, struct text_model_table **out /* OUT */,
                               struct buf *err);
void text_model_table_free(struct text_model_table *table);

/* Finds the entry for a model name (case-sensitive, as APIs treat it). The
 * file's entries are searched first, then the built-in ones; within each, an
 * exact name beats the longest matching '*' prefix. A name with a provider
 * prefix ("openai/gpt-4o") that matches nothing is retried without it.
 * *out borrows from table. RAGD_ENOTFOUND when nothing matches. Thread-safe. */
ragd_err text_model_lookup(const struct text_model_table *table, const char *model,
                           struct text_model *out /* OUT */);

#endif
