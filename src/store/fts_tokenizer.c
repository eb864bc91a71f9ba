/* fts_tokenizer.c - the FTS5 tokenizer "ragd".
 *
 * FTS5 asks a tokenizer for the terms of every indexed column value and of
 * every quoted phrase of a MATCH expression. Handing both to text_tokenize()
 * keeps the index and the queries on exactly the same rules (NFKC + case fold,
 * Hangul/Han/Kana bigrams), which is what makes Korean questions find Korean
 * passages. The tokenizer has no options and no state. */
#include <stddef.h>

#include "store/store_int.h"
#include "text/text.h"

/* FTS5 wants a non-NULL handle from xCreate; ours carries nothing. */
struct ragd_fts_tokenizer {
  int unused;
};

static struct ragd_fts_tokenizer ragd_fts_instance;

/* Carries FTS5's callback through text_tokenize's callback. */
struct ragd_fts_emit {
  int (*x_token)(void *, int, const char *, int, int, int);
  void *fts_ctx;
  int sqlite_rc; /* first non-OK result of x_token */
};

static int ragd_fts_create(void *api_ctx, const char **args, int nargs, Fts5Tokenizer **out) {
  (void)api_ctx;
  (void)args;
  if (nargs != 0) return SQLITE_ERROR;
  *out = (Fts5Tokenizer *)&ragd_fts_instance;
  return SQLITE_OK;
}

static void ragd_fts_delete(Fts5Tokenizer *tok) { (void)tok; }

static int ragd_fts_on_term(void *ctx, const char *term, size_t term_len, size_t start,
                            size_t end) {
  struct ragd_fts_emit *emit = ctx;
  char stem[64];
  int rc;
  /* English inflections meet at one stem; text_stem_en copies anything that
   * is not a plain lowercase ASCII word of 4..64 letters. */
  if (term_len <= sizeof stem) {
    term_len = text_stem_en(term, term_len, stem);
    term = stem;
  }
  /* Offsets fit in int: FTS5 handed us at most INT_MAX bytes. No flags: the
   * tokenizer never emits synonyms at the same position. */
  rc = emit->x_token(emit->fts_ctx, 0, term, (int)term_len, (int)start, (int)end);
  if (rc != SQLITE_OK) {
    emit->sqlite_rc = rc;
    return 1;
  }
  return 0;
}

static int ragd_fts_tokenize(Fts5Tokenizer *tok, void *fts_ctx, int flags, const char *text,
                             int text_len,
                             int (*x_token)(void *, int, const char *, int, int, int)) {
  struct ragd_fts_emit emit = {x_token, fts_ctx, SQLITE_OK};
  size_t bad = 0;
  ragd_err rc;
  (void)tok;
  (void)flags; /* documents and queries are tokenized alike */
  if (!text || text_len <= 0) return SQLITE_OK;
  /* store/ validates everything it indexes; this only guards text_tokenize's
   * precondition against values that reached the table some other way. */
  if (text_utf8_validate(text, (size_t)text_len, &bad) != RAGD_OK) return SQLITE_ERROR;
  rc = text_tokenize(text, (size_t)text_len, ragd_fts_on_term, &emit);
  if (rc == RAGD_OK) return SQLITE_OK;
  if (rc == RAGD_ECANCELLED && emit.sqlite_rc != SQLITE_OK) return emit.sqlite_rc;
  if (rc == RAGD_ENOMEM) return SQLITE_NOMEM;
  return SQLITE_ERROR;
}

/* Asks the connection for its fts5_api: SELECT fts5(?1) fills a pointer bound
 * with the "fts5_api_ptr" type. */
static int ragd_fts_api(sqlite3 *db, fts5_api **out) {
  sqlite3_stmt *st = NULL;
  fts5_api *api = NULL;
  int rc;
  rc = sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &st, NULL);
  if (rc != SQLITE_OK) goto out;
  rc = sqlite3_bind_pointer(st, 1, &api, "fts5_api_ptr", NULL);
  if (rc != SQLITE_OK) goto out;
  rc = sqlite3_step(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) goto out;
  rc = api && api->iVersion >= 2 ? SQLITE_OK : SQLITE_ERROR;
  if (rc == SQLITE_OK) *out = api;
out:
  sqlite3_finalize(st);
  return rc;
}

int store_fts_register_tokenizer(sqlite3 *db) {
  fts5_api *api = NULL;
  fts5_tokenizer methods = {
      .xCreate = ragd_fts_create,
      .xDelete = ragd_fts_delete,
      .xTokenize = ragd_fts_tokenize,
  };
  int rc = ragd_fts_api(db, &api);
  if (rc != SQLITE_OK) return rc;
  return api->xCreateTokenizer(api, STORE_FTS_TOKENIZER_NAME, NULL, &methods, NULL);
}
