/* structure.c - markdown, HTML and plain text to sections and blocks of plain
 * text, and the document title.
 *
 * The parsers are line- (markdown) or tag- (HTML) driven approximations of
 * CommonMark and HTML5 that never fail on odd input: anything they do not
 * recognise is kept as text. Searches for closing delimiters are bounded so
 * hostile input cannot make them quadratic. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "text/text_int.h"

#define HEADING_LEVELS 6
#define INLINE_SEARCH_MAX 4096 /* bytes searched for a closing ] ) or ` */
#define INLINE_DEPTH_MAX 8     /* nested link texts */

/* ---- the document builder ---------------------------------------------------- */

struct builder {
  struct text_doc *doc;
  char *stack[HEADING_LEVELS + 1]; /* heading text per level, 1-based */
  size_t section;
};

static char *dup_bytes(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (!p) return NULL;
  if (n) memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

static int is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static void trim(const char **s, size_t *n) {
  while (*n > 0 && is_ascii_space((*s)[0])) {
    (*s)++;
    (*n)--;
  }
  while (*n > 0 && is_ascii_space((*s)[*n - 1])) (*n)--;
}

static ragd_err add_path(struct builder *b, char *path) {
  struct text_doc *d = b->doc;
  if (d->path_count == d->path_cap) {
    size_t cap = d->path_cap ? d->path_cap * 2 : 8;
    char **n = realloc(d->paths, cap * sizeof *n);
    if (!n) {
      free(path);
      return RAGD_ENOMEM;
    }
    d->paths = n;
    d->path_cap = cap;
  }
  d->paths[d->path_count] = path;
  b->section = d->path_count;
  d->path_count++;
  return RAGD_OK;
}

static ragd_err builder_init(struct builder *b, struct text_doc *doc) {
  char *root = dup_bytes("", 0);
  memset(doc, 0, sizeof *doc);
  memset(b, 0, sizeof *b);
  b->doc = doc;
  if (!root) return RAGD_ENOMEM;
  return add_path(b, root);
}

static void builder_dispose(struct builder *b) {
  int k;
  for (k = 0; k <= HEADING_LEVELS; k++) free(b->stack[k]);
}

/* Adds a block of plain text (trimmed; empty text adds nothing). */
static ragd_err add_block(struct builder *b, enum text_block_kind kind, const char *s, size_t n) {
  struct text_doc *d = b->doc;
  struct text_block *blk;
  trim(&s, &n);
  if (n == 0) return RAGD_OK;
  if (d->block_count == d->block_cap) {
    size_t cap = d->block_cap ? d->block_cap * 2 : 16;
    struct text_block *nb = realloc(d->blocks, cap * sizeof *nb);
    if (!nb) return RAGD_ENOMEM;
    d->blocks = nb;
    d->block_cap = cap;
  }
  blk = &d->blocks[d->block_count];
  blk->text = dup_bytes(s, n);
  if (!blk->text) return RAGD_ENOMEM;
  blk->len = n;
  blk->kind = kind;
  blk->section = b->section;
  d->block_count++;
  return RAGD_OK;
}

/* Collapses whitespace runs of s[0..n) to single spaces, trimmed. */
static ragd_err collapse_ws(const char *s, size_t n, struct buf *out) {
  size_t i;
  int pending = 0;
  ragd_err rc;
  for (i = 0; i < n; i++) {
    if (is_ascii_space(s[i])) {
      pending = 1;
      continue;
    }
    if (pending && out->len > 0) {
      rc = buf_append_char(out, ' ');
      if (rc) return rc;
    }
    pending = 0;
    rc = buf_append_char(out, s[i]);
    if (rc) return rc;
  }
  return RAGD_OK;
}

/* Starts a new section under a heading of the given level (1..6); text is
 * plain already. */
static ragd_err add_heading(struct builder *b, int level, const char *s, size_t n) {
  struct buf clean, path;
  ragd_err rc;
  char *text = NULL, *p;
  int k;

  buf_init(&clean, 0);
  buf_init(&path, 0);
  rc = collapse_ws(s, n, &clean);
  if (rc) goto out;
  text = buf_take(&clean, NULL);
  if (!text) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  if (text[0]) {
    if (level == 1 && !b->doc->first_h1) {
      b->doc->first_h1 = dup_bytes(text, strlen(text));
      if (!b->doc->first_h1) {
        rc = RAGD_ENOMEM;
        goto out;
      }
    }
    if (!b->doc->first_heading) {
      b->doc->first_heading = dup_bytes(text, strlen(text));
      if (!b->doc->first_heading) {
        rc = RAGD_ENOMEM;
        goto out;
      }
    }
  }
  for (k = level; k <= HEADING_LEVELS; k++) {
    free(b->stack[k]);
    b->stack[k] = NULL;
  }
  b->stack[level] = text;
  text = NULL;
  for (k = 1; k <= HEADING_LEVELS; k++) {
    if (!b->stack[k] || !b->stack[k][0]) continue;
    if (path.len > 0) {
      rc = buf_append_str(&path, " > ");
      if (rc) goto out;
    }
    rc = buf_append_str(&path, b->stack[k]);
    if (rc) goto out;
  }
  p = buf_take(&path, NULL);
  if (!p) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  rc = add_path(b, p);
out:
  free(text);
  buf_dispose(&clean);
  buf_dispose(&path);
  return rc;
}

void text_doc_dispose(struct text_doc *doc) {
  size_t k;
  if (!doc) return;
  for (k = 0; k < doc->path_count; k++) free(doc->paths[k]);
  for (k = 0; k < doc->block_count; k++) free(doc->blocks[k].text);
  free(doc->paths);
  free(doc->blocks);
  free(doc->first_h1);
  free(doc->first_heading);
  free(doc->html_title);
  memset(doc, 0, sizeof *doc);
}

/* ---- markdown inline markup --------------------------------------------------- */

static int is_ascii_punct(char c) {
  return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') ||
         (c >= '{' && c <= '~');
}

static int is_word_byte(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (unsigned char)c >= 0x80;
}

/* Bytes an inline pass may scan looking for closing delimiters, on top of
 * INLINE_WORK_PER_BYTE per input byte; past it, delimiters are literal. This
 * keeps "[[[[..." or "`` ``` ````..." linear. */
#define INLINE_WORK_BASE 65536
#define INLINE_WORK_PER_BYTE 16

/* Takes n bytes of search work from *budget; 0 when it is spent. */
static int spend(size_t *budget, size_t n) {
  if (!budget) return 1;
  if (*budget < n) {
    *budget = 0;
    return 0;
  }
  *budget -= n;
  return 1;
}

/* Index of the ']' closing the '[' at s[i], honouring nesting and escapes, or
 * 0 when there is none close enough. budget may be NULL. */
static size_t match_bracket(const char *s, size_t n, size_t i, char open, char close,
                            size_t *budget) {
  size_t j, limit = n - i > INLINE_SEARCH_MAX ? i + INLINE_SEARCH_MAX : n;
  int depth = 0;
  if (!spend(budget, limit - i)) return 0;
  for (j = i; j < limit; j++) {
    if (s[j] == '\\') {
      j++;
      continue;
    }
    if (s[j] == open) depth++;
    if (s[j] == close) {
      depth--;
      if (depth == 0) return j;
    }
  }
  return 0;
}

struct inline_ctx {
  struct buf *out;
  size_t budget; /* search work left */
};

static ragd_err md_inline_run(struct inline_ctx *x, const char *s, size_t n, int depth);

/* A link or image at s[i] ('['): appends its text and returns the bytes it
 * spans, or 0 when s[i] does not open a link. */
static ragd_err md_link(struct inline_ctx *x, const char *s, size_t n, size_t i, int depth,
                        size_t *span) {
  size_t close = match_bracket(s, n, i, '[', ']', &x->budget), end;
  *span = 0;
  if (!close || depth >= INLINE_DEPTH_MAX || close + 1 >= n) return RAGD_OK;
  if (s[close + 1] == '(') {
    end = match_bracket(s, n, close + 1, '(', ')', &x->budget);
  } else if (s[close + 1] == '[') {
    end = match_bracket(s, n, close + 1, '[', ']', &x->budget);
  } else {
    return RAGD_OK;
  }
  if (!end) return RAGD_OK;
  *span = end + 1 - i;
  return md_inline_run(x, s + i + 1, close - i - 1, depth + 1);
}

/* Code span at s[i] ('`'): appends the code and returns its span, or 0. */
static ragd_err md_code(struct inline_ctx *x, const char *s, size_t n, size_t i,
                        size_t *span) {
  size_t run = 0, j, k, limit = n - i > INLINE_SEARCH_MAX ? i + INLINE_SEARCH_MAX : n;
  const char *code;
  size_t code_len;
  while (i + run < n && s[i + run] == '`') run++;
  *span = 0;
  if (!spend(&x->budget, limit - i)) limit = i;
  for (j = i + run; j < limit; j++) {
    if (s[j] != '`') continue;
    k = 0;
    while (j + k < n && s[j + k] == '`') k++;
    if (k == run) {
      code = s + i + run;
      code_len = j - i - run;
      if (code_len >= 2 && code[0] == ' ' && code[code_len - 1] == ' ') {
        code++;
        code_len -= 2;
      }
      *span = j + k - i;
      return buf_append(x->out, code, code_len);
    }
    j += k - 1;
  }
  /* unmatched: the backticks are literal */
  *span = run;
  return buf_append(x->out, s + i, run);
}

/* Raw HTML or autolink at s[i] ('<'): strips tags and comments, keeps the
 * address of an autolink. Returns the span, 0 when '<' is literal. */
static ragd_err md_angle(struct inline_ctx *x, const char *s, size_t n, size_t i,
                         size_t *span) {
  size_t j, limit = n - i > INLINE_SEARCH_MAX ? i + INLINE_SEARCH_MAX : n;
  const char *end;
  *span = 0;
  if (n - i >= 4 && memcmp(s + i, "<!--", 4) == 0) {
    if (!spend(&x->budget, n - i)) return RAGD_OK;
    end = memmem(s + i + 4, n - i - 4, "-->", 3);
    if (end) *span = (size_t)(end + 3 - (s + i));
    return RAGD_OK;
  }
  if (i + 1 >= n) return RAGD_OK;
  if (!((s[i + 1] >= 'a' && s[i + 1] <= 'z') || (s[i + 1] >= 'A' && s[i + 1] <= 'Z') ||
        s[i + 1] == '/'))
    return RAGD_OK;
  for (j = i + 1; j < limit; j++) {
    if (s[j] == '<' || s[j] == '\n') return RAGD_OK;
    if (s[j] == '>') break;
  }
  if (j >= limit) return RAGD_OK;
  *span = j + 1 - i;
  /* <https://x> and <a@b.c> are autolinks: keep what is inside */
  if (memchr(s + i + 1, ':', j - i - 1) || memchr(s + i + 1, '@', j - i - 1)) {
    if (!memchr(s + i + 1, ' ', j - i - 1)) return buf_append(x->out, s + i + 1, j - i - 1);
  }
  return RAGD_OK;
}

/* 1 when a closing run of c (one with text right before it) follows s[from]. */
static int closer_ahead(struct inline_ctx *x, const char *s, size_t n, size_t from, char c) {
  size_t j, limit = n - from > INLINE_SEARCH_MAX ? from + INLINE_SEARCH_MAX : n;
  if (!spend(&x->budget, limit - from)) return 0;
  for (j = from; j < limit; j++) {
    if (s[j] == c && j > from && !is_ascii_space(s[j - 1]) && s[j - 1] != c) return 1;
  }
  return 0;
}

/* Whether the run s[i..i+run) of '*', '_' or '~' is emphasis markup (to drop)
 * rather than a literal character. An opener (text after it) needs a closer
 * further on; a closer (text before it) needs an open emphasis; '_' inside a
 * word (snake_case), a run between spaces (2 * 3) and '~' other than "~~"
 * (~5 days) are literal. *open counts emphasis opened in this pass. */
static int emphasis_delimiter(struct inline_ctx *x, const char *s, size_t n, size_t i, size_t run,
                              char before, char after, int *open) {
  char c = s[i];
  int opens = !is_ascii_space(after), closes = !is_ascii_space(before);
  if (c == '~') return run == 2 && (opens || closes);
  if (c == '_' && is_word_byte(before) && is_word_byte(after)) return 0;
  if (closes && *open > 0) {
    (*open)--;
    return 1;
  }
  if (opens && closer_ahead(x, s, n, i + run, c)) {
    (*open)++;
    return 1;
  }
  return 0;
}

static ragd_err md_inline_run(struct inline_ctx *x, const char *s, size_t n, int depth) {
  struct buf *out = x->out;
  size_t i = 0, span, run;
  int open_star = 0, open_under = 0;
  ragd_err rc = RAGD_OK;
  char c, before, after;
  while (i < n && !rc) {
    c = s[i];
    if (c == '\\' && i + 1 < n && is_ascii_punct(s[i + 1])) {
      rc = buf_append_char(out, s[i + 1]);
      i += 2;
      continue;
    }
    if (c == '`') {
      rc = md_code(x, s, n, i, &span);
      i += span;
      continue;
    }
    if (c == '[' || (c == '!' && i + 1 < n && s[i + 1] == '[')) {
      size_t at = c == '!' ? i + 1 : i;
      rc = md_link(x, s, n, at, depth, &span);
      if (rc) break;
      if (span) {
        i = at + span;
        continue;
      }
    }
    if (c == '<') {
      rc = md_angle(x, s, n, i, &span);
      if (rc) break;
      if (span) {
        i += span;
        continue;
      }
    }
    if (c == '&') {
      rc = text_int_entity(s + i, n - i, out, &span);
      if (rc) break;
      if (span) {
        i += span;
        continue;
      }
    }
    if (c == '*' || c == '_' || c == '~') {
      run = 0;
      while (i + run < n && s[i + run] == c) run++;
      before = i > 0 ? s[i - 1] : ' ';
      after = i + run < n ? s[i + run] : ' ';
      if (!emphasis_delimiter(x, s, n, i, run, before, after, c == '*' ? &open_star : &open_under))
        rc = buf_append(out, s + i, run);
      i += run;
      continue;
    }
    rc = buf_append_char(out, c);
    i++;
  }
  return rc;
}

static ragd_err md_inline(const char *s, size_t n, struct buf *out) {
  struct inline_ctx x;
  x.out = out;
  x.budget = INLINE_WORK_BASE;
  if (n < ((size_t)-1 - INLINE_WORK_BASE) / INLINE_WORK_PER_BYTE)
    x.budget += n * INLINE_WORK_PER_BYTE;
  return md_inline_run(&x, s, n, 0);
}

ragd_err text_int_md_inline(const char *s, size_t len, struct buf *out) {
  return md_inline(s, len, out);
}

/* ---- markdown blocks ------------------------------------------------------------ */

struct md_state {
  struct builder *b;
  struct buf para;      /* raw lines of the open paragraph / item, joined by ' ' */
  enum text_block_kind kind;
  int quote;            /* the open paragraph is a block quote */
  int in_fence;
  char fence_char;
  size_t fence_len;
  struct buf code;
};

static size_t leading_spaces(const char *s, size_t n) {
  size_t i = 0;
  while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
  return i;
}

/* Emits the open paragraph with inline markup removed. */
static ragd_err md_flush(struct md_state *m) {
  struct buf text;
  ragd_err rc;
  if (m->para.len == 0) return RAGD_OK;
  buf_init(&text, 0);
  rc = md_inline(m->para.data, m->para.len, &text);
  if (!rc) rc = add_block(m->b, m->kind, text.data ? text.data : "", text.len);
  buf_dispose(&text);
  buf_reset(&m->para);
  m->kind = TEXT_BLOCK_PARA;
  m->quote = 0;
  return rc;
}

static ragd_err md_append_line(struct md_state *m, const char *s, size_t n) {
  ragd_err rc;
  trim(&s, &n);
  if (n == 0) return RAGD_OK;
  if (m->para.len > 0) {
    rc = buf_append_char(&m->para, ' ');
    if (rc) return rc;
  }
  return buf_append(&m->para, s, n);
}

/* Level of an ATX heading line ("## Text"), 0 when it is not one; *text and
 * *text_len receive the heading text without the closing #s. */
static int atx_level(const char *s, size_t n, const char **text, size_t *text_len) {
  size_t i = 0, e;
  int level = 0;
  while (i < n && s[i] == '#') i++;
  if (i == 0 || i > HEADING_LEVELS) return 0;
  if (i < n && s[i] != ' ' && s[i] != '\t') return 0;
  level = (int)i;
  e = n;
  while (e > i && is_ascii_space(s[e - 1])) e--;
  while (e > i && s[e - 1] == '#') e--;
  if (e < n && e > i && s[e - 1] != ' ' && s[e - 1] != '\t') {
    e = n; /* "# C#" keeps its # */
  }
  *text = s + i;
  *text_len = e - i;
  return level;
}

/* 1 when s[0..n) is made only of c (and spaces) with at least min of them. */
static int only_char(const char *s, size_t n, char c, size_t min) {
  size_t i, count = 0;
  for (i = 0; i < n; i++) {
    if (s[i] == c) {
      count++;
    } else if (!is_ascii_space(s[i])) {
      return 0;
    }
  }
  return count >= min;
}

static int is_thematic_break(const char *s, size_t n) {
  return only_char(s, n, '-', 3) || only_char(s, n, '*', 3) || only_char(s, n, '_', 3);
}

/* A table delimiter row: | --- | :---: | */
static int is_table_rule(const char *s, size_t n) {
  size_t i;
  int bar = 0, dash = 0;
  for (i = 0; i < n; i++) {
    if (s[i] == '|') {
      bar = 1;
    } else if (s[i] == '-') {
      dash = 1;
    } else if (s[i] != ':' && !is_ascii_space(s[i])) {
      return 0;
    }
  }
  return bar && dash;
}

/* "[label]: destination" */
static int is_link_definition(const char *s, size_t n) {
  size_t close;
  if (n < 4 || s[0] != '[') return 0;
  close = match_bracket(s, n, 0, '[', ']', NULL);
  return close && close + 1 < n && s[close + 1] == ':';
}

/* Length of a bullet or ordered list marker with its space; *ordered is set
 * for "1." / "1)". */
static size_t md_list_marker(const char *s, size_t n, int *ordered) {
  size_t j = 0;
  *ordered = 0;
  if (n >= 2 && (s[0] == '-' || s[0] == '*' || s[0] == '+') && (s[1] == ' ' || s[1] == '\t'))
    return 2;
  while (j < n && j < 9 && s[j] >= '0' && s[j] <= '9') j++;
  if (j == 0 || j + 1 >= n || (s[j] != '.' && s[j] != ')')) return 0;
  if (s[j + 1] != ' ' && s[j + 1] != '\t') return 0;
  *ordered = 1;
  return j + 2;
}

/* A table row becomes one line with its cells separated by " | ". */
static ragd_err md_table_row(struct md_state *m, const char *s, size_t n) {
  struct buf row, text;
  size_t i = 0, cell_start;
  ragd_err rc = RAGD_OK;
  buf_init(&row, 0);
  buf_init(&text, 0);
  if (n > 0 && s[0] == '|') i = 1;
  while (i < n && !rc) {
    const char *cell;
    size_t cell_len;
    cell_start = i;
    while (i < n && s[i] != '|') {
      if (s[i] == '\\' && i + 1 < n) i++;
      i++;
    }
    cell = s + cell_start;
    cell_len = (i < n ? i : n) - cell_start;
    i++;
    trim(&cell, &cell_len);
    if (cell_len == 0 && i >= n) break;
    if (row.len > 0) rc = buf_append_str(&row, " | ");
    if (!rc) rc = buf_append(&row, cell, cell_len);
  }
  if (!rc) rc = md_inline(row.data ? row.data : "", row.len, &text);
  if (!rc) rc = add_block(m->b, TEXT_BLOCK_ITEM, text.data ? text.data : "", text.len);
  buf_dispose(&row);
  buf_dispose(&text);
  return rc;
}

static ragd_err md_line(struct md_state *m, const char *line, size_t n) {
  const char *rest, *htext;
  size_t indent, rest_len, htext_len, marker, k;
  int level, ordered;
  ragd_err rc;

  if (m->in_fence) {
    indent = leading_spaces(line, n);
    k = 0;
    while (indent + k < n && line[indent + k] == m->fence_char) k++;
    if (indent < 4 && k >= m->fence_len && only_char(line + indent, n - indent, m->fence_char, 1)) {
      m->in_fence = 0;
      rc = add_block(m->b, TEXT_BLOCK_CODE, m->code.data ? m->code.data : "", m->code.len);
      buf_reset(&m->code);
      return rc;
    }
    rc = buf_append(&m->code, line, n);
    if (!rc) rc = buf_append_char(&m->code, '\n');
    return rc;
  }

  indent = leading_spaces(line, n);
  rest = line + indent;
  rest_len = n - indent;
  while (rest_len > 0 && is_ascii_space(rest[rest_len - 1])) rest_len--;

  if (rest_len == 0) return md_flush(m);

  if (indent < 4 && rest_len >= 3 && (rest[0] == '`' || rest[0] == '~')) {
    k = 0;
    while (k < rest_len && rest[k] == rest[0]) k++;
    if (k >= 3 && !(rest[0] == '`' && memchr(rest + k, '`', rest_len - k))) {
      rc = md_flush(m);
      if (rc) return rc;
      m->in_fence = 1;
      m->fence_char = rest[0];
      m->fence_len = k;
      return RAGD_OK;
    }
  }

  if (rest[0] == '>') {
    /* block quote: strip the markers, keep the text as a paragraph */
    if (!m->quote) {
      rc = md_flush(m);
      if (rc) return rc;
      m->quote = 1;
    }
    while (rest_len > 0 && (rest[0] == '>' || rest[0] == ' ' || rest[0] == '\t')) {
      rest++;
      rest_len--;
    }
    if (rest_len == 0) return md_flush(m);
    return md_append_line(m, rest, rest_len);
  }

  if (indent < 4) {
    level = atx_level(rest, rest_len, &htext, &htext_len);
    if (level) {
      struct buf plain;
      rc = md_flush(m);
      if (rc) return rc;
      buf_init(&plain, 0);
      rc = md_inline(htext, htext_len, &plain);
      if (!rc) rc = add_heading(m->b, level, plain.data ? plain.data : "", plain.len);
      buf_dispose(&plain);
      return rc;
    }
    if (m->para.len > 0 && m->kind == TEXT_BLOCK_PARA && !m->quote &&
        (only_char(rest, rest_len, '=', 1) || only_char(rest, rest_len, '-', 1))) {
      struct buf plain;
      level = rest[0] == '=' ? 1 : 2;
      buf_init(&plain, 0);
      rc = md_inline(m->para.data, m->para.len, &plain);
      if (!rc) rc = add_heading(m->b, level, plain.data ? plain.data : "", plain.len);
      buf_dispose(&plain);
      buf_reset(&m->para);
      return rc;
    }
    if (is_thematic_break(rest, rest_len)) return md_flush(m);
  }

  if (is_table_rule(rest, rest_len)) return md_flush(m);
  if (rest[0] == '|') {
    rc = md_flush(m);
    if (rc) return rc;
    return md_table_row(m, rest, rest_len);
  }
  if (is_link_definition(rest, rest_len)) return md_flush(m);

  marker = md_list_marker(rest, rest_len, &ordered);
  if (marker) {
    rc = md_flush(m);
    if (rc) return rc;
    m->kind = TEXT_BLOCK_ITEM;
    if (ordered) {
      rc = buf_append(&m->para, rest, marker - 1);
      if (!rc) rc = buf_append_char(&m->para, ' ');
    } else {
      rc = buf_append_str(&m->para, "- ");
    }
    if (rc) return rc;
    return buf_append(&m->para, rest + marker, rest_len - marker);
  }
  if (m->quote) {
    /* a line without '>' ends the quote unless it continues its paragraph */
    m->quote = 0;
  }
  return md_append_line(m, rest, rest_len);
}

static ragd_err parse_markdown(struct builder *b, const char *s, size_t len) {
  struct md_state m;
  size_t i = 0, e, line_len;
  ragd_err rc = RAGD_OK;

  memset(&m, 0, sizeof m);
  m.b = b;
  buf_init(&m.para, 0);
  buf_init(&m.code, 0);

  /* YAML front matter: "---" on the first line up to the next "---" */
  if (len >= 4 && memcmp(s, "---", 3) == 0 && (s[3] == '\n' || s[3] == '\r')) {
    const char *end = memmem(s + 3, len - 3, "\n---", 4);
    if (end) {
      i = (size_t)(end - s) + 4;
      while (i < len && s[i] != '\n') i++;
    }
  }
  while (i < len) {
    const char *nl = memchr(s + i, '\n', len - i);
    e = nl ? (size_t)(nl - s) : len;
    line_len = e - i;
    if (line_len > 0 && s[i + line_len - 1] == '\r') line_len--;
    rc = md_line(&m, s + i, line_len);
    if (rc) goto out;
    i = e + 1;
  }
  if (m.in_fence) {
    rc = add_block(b, TEXT_BLOCK_CODE, m.code.data ? m.code.data : "", m.code.len);
    if (rc) goto out;
  }
  rc = md_flush(&m);
out:
  buf_dispose(&m.para);
  buf_dispose(&m.code);
  return rc;
}

/* ---- plain text --------------------------------------------------------------------- */

static ragd_err parse_text(struct builder *b, const char *s, size_t len) {
  struct buf para;
  size_t i = 0, e, line_len;
  ragd_err rc = RAGD_OK;
  buf_init(&para, 0);
  while (i < len) {
    const char *nl = memchr(s + i, '\n', len - i);
    const char *line = s + i;
    e = nl ? (size_t)(nl - s) : len;
    line_len = e - i;
    while (line_len > 0 && is_ascii_space(line[line_len - 1])) line_len--;
    if (line_len == 0) {
      rc = add_block(b, TEXT_BLOCK_PARA, para.data ? para.data : "", para.len);
      buf_reset(&para);
    } else {
      if (para.len > 0) rc = buf_append_char(&para, '\n');
      if (!rc) rc = buf_append(&para, line, line_len);
    }
    if (rc) goto out;
    i = e + 1;
  }
  rc = add_block(b, TEXT_BLOCK_PARA, para.data ? para.data : "", para.len);
out:
  buf_dispose(&para);
  return rc;
}

/* ---- HTML ------------------------------------------------------------------------------ */

struct html_state {
  struct builder *b;
  struct buf block;
  enum text_block_kind kind;
  struct buf heading;
  int heading_level; /* 0 when not inside h1-h6 */
  struct buf title;
  int in_title;
  int in_head;
  int pre;
  int space_pending;
};

static int tag_is(const char *name, const char *const *list, size_t count) {
  size_t k;
  for (k = 0; k < count; k++) {
    if (strcmp(name, list[k]) == 0) return 1;
  }
  return 0;
}

static const char *const html_raw_skip[] = {"script", "style", "template", "noscript",
                                            "textarea", "svg", "math", "iframe", "object"};
static const char *const html_block_tags[] = {
    "p",      "div",     "br",     "li",       "ul",         "ol",      "dl",     "dt",
    "dd",     "tr",      "table",  "thead",    "tbody",      "tfoot",   "pre",    "blockquote",
    "hr",     "section", "article", "header",  "footer",     "nav",     "aside",  "main",
    "figure", "figcaption", "address", "form", "fieldset",   "details", "summary", "caption",
    "body",   "html",    "center", "legend",   "option",     "label"};

static ragd_err html_end_block(struct html_state *h) {
  ragd_err rc;
  rc = add_block(h->b, h->pre ? TEXT_BLOCK_CODE : h->kind, h->block.data ? h->block.data : "",
                 h->block.len);
  buf_reset(&h->block);
  h->kind = TEXT_BLOCK_PARA;
  h->space_pending = 0;
  return rc;
}

/* Appends decoded text to the current target, collapsing whitespace outside
 * <pre>. */
static ragd_err html_text(struct html_state *h, const char *s, size_t n) {
  struct buf *target;
  struct buf decoded;
  size_t i, used;
  ragd_err rc = RAGD_OK;

  if (h->in_title) {
    target = &h->title;
  } else if (h->in_head) {
    return RAGD_OK;
  } else if (h->heading_level) {
    target = &h->heading;
  } else {
    target = &h->block;
  }
  buf_init(&decoded, 0);
  for (i = 0; i < n && !rc;) {
    if (s[i] == '&') {
      rc = text_int_entity(s + i, n - i, &decoded, &used);
      if (rc) break;
      if (used) {
        i += used;
        continue;
      }
    }
    rc = buf_append_char(&decoded, s[i]);
    i++;
  }
  for (i = 0; i < decoded.len && !rc; i++) {
    char c = decoded.data[i];
    if (!h->pre && is_ascii_space(c)) {
      h->space_pending = 1;
      continue;
    }
    if (h->space_pending && target->len > 0 && target->data[target->len - 1] != ' ' &&
        target->data[target->len - 1] != '\n') {
      rc = buf_append_char(target, ' ');
      if (rc) break;
    }
    h->space_pending = 0;
    rc = buf_append_char(target, c);
  }
  buf_dispose(&decoded);
  return rc;
}

/* Index just past the '>' ending the tag that starts at s[i], skipping quoted
 * attribute values; len when the tag is not closed. */
static size_t tag_end(const char *s, size_t len, size_t i) {
  char quote = 0;
  for (; i < len; i++) {
    if (quote) {
      if (s[i] == quote) quote = 0;
    } else if (s[i] == '"' || s[i] == '\'') {
      quote = s[i];
    } else if (s[i] == '>') {
      return i + 1;
    }
  }
  return len;
}

/* Finds "</name" (any case) from i; returns its index or len. */
static size_t find_close_tag(const char *s, size_t len, size_t i, const char *name) {
  size_t nl = strlen(name);
  for (; i + 2 + nl <= len; i++) {
    if (s[i] == '<' && s[i + 1] == '/' && strncasecmp(s + i + 2, name, nl) == 0) {
      char c = i + 2 + nl < len ? s[i + 2 + nl] : '>';
      if (c == '>' || is_ascii_space(c) || c == '/') return i;
    }
  }
  return len;
}

static ragd_err html_tag(struct html_state *h, const char *name, int closing) {
  ragd_err rc = RAGD_OK;
  if (name[0] == 'h' && name[1] >= '1' && name[1] <= '6' && name[2] == '\0') {
    int level = name[1] - '0';
    if (!closing) {
      rc = html_end_block(h);
      buf_reset(&h->heading);
      h->heading_level = level;
    } else if (h->heading_level) {
      rc = add_heading(h->b, h->heading_level, h->heading.data ? h->heading.data : "",
                       h->heading.len);
      buf_reset(&h->heading);
      h->heading_level = 0;
      h->space_pending = 0;
    }
    return rc;
  }
  if (strcmp(name, "head") == 0) {
    h->in_head = !closing;
    return RAGD_OK;
  }
  if (strcmp(name, "body") == 0) h->in_head = 0;
  if (strcmp(name, "title") == 0) {
    h->in_title = !closing;
    return RAGD_OK;
  }
  if (strcmp(name, "td") == 0 || strcmp(name, "th") == 0) {
    if (!closing && h->block.len > 0) rc = buf_append_str(&h->block, " | ");
    h->space_pending = 0;
    return rc;
  }
  if (h->heading_level && strcmp(name, "br") == 0) {
    h->space_pending = 1;
    return RAGD_OK;
  }
  if (tag_is(name, html_block_tags, sizeof html_block_tags / sizeof html_block_tags[0])) {
    enum text_block_kind kind = h->kind;
    if (h->heading_level) return RAGD_OK;
    rc = html_end_block(h);
    if (rc) return rc;
    if (strcmp(name, "br") == 0) h->kind = kind; /* a line break inside an item */
    if (strcmp(name, "pre") == 0) {
      if (closing && h->pre > 0) h->pre--;
      if (!closing) h->pre++;
    }
    if (!closing && (strcmp(name, "li") == 0 || strcmp(name, "tr") == 0 ||
                     strcmp(name, "dt") == 0 || strcmp(name, "dd") == 0))
      h->kind = TEXT_BLOCK_ITEM;
    return RAGD_OK;
  }
  /* inline tags (a, span, strong, img, ...) only separate words when spaced */
  return RAGD_OK;
}

static ragd_err parse_html(struct builder *b, const char *s, size_t len) {
  struct html_state h;
  size_t i = 0, j, end, nlen;
  char name[16];
  int closing;
  ragd_err rc = RAGD_OK;
  char *title;

  memset(&h, 0, sizeof h);
  h.b = b;
  buf_init(&h.block, 0);
  buf_init(&h.heading, 0);
  buf_init(&h.title, 0);

  while (i < len) {
    if (s[i] != '<') {
      const char *lt = memchr(s + i, '<', len - i);
      end = lt ? (size_t)(lt - s) : len;
      rc = html_text(&h, s + i, end - i);
      if (rc) goto out;
      i = end;
      continue;
    }
    if (len - i >= 4 && memcmp(s + i, "<!--", 4) == 0) {
      const char *c = memmem(s + i + 4, len - i - 4, "-->", 3);
      i = c ? (size_t)(c - s) + 3 : len;
      continue;
    }
    if (len - i >= 9 && memcmp(s + i, "<![CDATA[", 9) == 0) {
      const char *c = memmem(s + i + 9, len - i - 9, "]]>", 3);
      end = c ? (size_t)(c - s) : len;
      rc = html_text(&h, s + i + 9, end - i - 9);
      if (rc) goto out;
      i = c ? end + 3 : len;
      continue;
    }
    if (i + 1 < len && (s[i + 1] == '!' || s[i + 1] == '?')) {
      i = tag_end(s, len, i + 1);
      continue;
    }
    j = i + 1;
    closing = 0;
    if (j < len && s[j] == '/') {
      closing = 1;
      j++;
    }
    nlen = 0;
    while (j < len && ((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z') ||
                       (nlen > 0 && ((s[j] >= '0' && s[j] <= '9') || s[j] == '-')))) {
      if (nlen < sizeof name - 1) {
        char c = s[j];
        if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
        name[nlen] = c;
      }
      nlen++;
      j++;
    }
    if (nlen == 0) {
      /* a lone '<' is text */
      rc = html_text(&h, s + i, 1);
      if (rc) goto out;
      i++;
      continue;
    }
    if (nlen >= sizeof name) nlen = sizeof name - 1;
    name[nlen] = '\0';
    i = tag_end(s, len, j);
    if (!closing && tag_is(name, html_raw_skip, sizeof html_raw_skip / sizeof html_raw_skip[0])) {
      if (i >= 2 && s[i - 1] == '>' && s[i - 2] == '/') continue; /* <script/> */
      i = find_close_tag(s, len, i, name);
      i = i < len ? tag_end(s, len, i) : len;
      continue;
    }
    rc = html_tag(&h, name, closing);
    if (rc) goto out;
  }
  if (h.heading_level) {
    rc = add_heading(b, h.heading_level, h.heading.data ? h.heading.data : "", h.heading.len);
    if (rc) goto out;
  }
  rc = html_end_block(&h);
  if (rc) goto out;
  if (h.title.len > 0) {
    struct buf clean;
    buf_init(&clean, 0);
    rc = collapse_ws(h.title.data, h.title.len, &clean);
    title = rc ? NULL : buf_take(&clean, NULL);
    buf_dispose(&clean);
    if (rc) goto out;
    if (!title) {
      rc = RAGD_ENOMEM;
      goto out;
    }
    if (title[0]) {
      b->doc->html_title = title;
    } else {
      free(title);
    }
  }
out:
  buf_dispose(&h.block);
  buf_dispose(&h.heading);
  buf_dispose(&h.title);
  return rc;
}

/* ---- entry points ------------------------------------------------------------------------ */

ragd_err text_doc_parse(const char *s, size_t len, enum text_format fmt, struct text_doc *doc) {
  struct builder b;
  ragd_err rc;
  rc = builder_init(&b, doc);
  if (rc) goto out;
  switch (fmt) {
  case TEXT_FORMAT_MARKDOWN:
    rc = parse_markdown(&b, s, len);
    break;
  case TEXT_FORMAT_HTML:
    rc = parse_html(&b, s, len);
    break;
  default:
    rc = parse_text(&b, s, len);
    break;
  }
out:
  builder_dispose(&b);
  return rc;
}

int text_format_parse(const char *name) {
  if (!name) return -1;
  if (strcasecmp(name, "text") == 0 || strcasecmp(name, "txt") == 0 ||
      strcasecmp(name, "plain") == 0)
    return TEXT_FORMAT_TEXT;
  if (strcasecmp(name, "markdown") == 0 || strcasecmp(name, "md") == 0)
    return TEXT_FORMAT_MARKDOWN;
  if (strcasecmp(name, "html") == 0 || strcasecmp(name, "htm") == 0) return TEXT_FORMAT_HTML;
  return -1;
}

enum text_format text_format_from_path(const char *path) {
  const char *dot, *slash;
  if (!path) return TEXT_FORMAT_TEXT;
  dot = strrchr(path, '.');
  slash = strrchr(path, '/');
  if (!dot || (slash && dot < slash)) return TEXT_FORMAT_TEXT;
  dot++;
  if (strcasecmp(dot, "md") == 0 || strcasecmp(dot, "markdown") == 0 ||
      strcasecmp(dot, "mdown") == 0 || strcasecmp(dot, "mkd") == 0)
    return TEXT_FORMAT_MARKDOWN;
  if (strcasecmp(dot, "html") == 0 || strcasecmp(dot, "htm") == 0 ||
      strcasecmp(dot, "xhtml") == 0)
    return TEXT_FORMAT_HTML;
  return TEXT_FORMAT_TEXT;
}

char *text_title(const char *s, size_t len, enum text_format fmt) {
  struct text_doc doc;
  char *title = NULL;
  ragd_err rc = text_doc_parse(s, len, fmt, &doc);
  if (rc) goto out;
  if (doc.first_h1) {
    title = doc.first_h1;
    doc.first_h1 = NULL;
  } else if (doc.html_title) {
    title = doc.html_title;
    doc.html_title = NULL;
  } else if (doc.first_heading) {
    title = doc.first_heading;
    doc.first_heading = NULL;
  }
out:
  text_doc_dispose(&doc);
  return title;
}
