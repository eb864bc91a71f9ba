/* sqlite.c - the embedded store: one SQLite database DIR/ragd.db.
 *
 * WAL journal (readers never wait for the writer, and a crash loses at most
 * the last transaction), foreign keys on (deleting a document cascades to its
 * chunks, their vectors; a conversation to its messages), schema version in
 * PRAGMA user_version.
 *
 * BM25 runs on an FTS5 table, chunk_fts, over (title, heading_path, text) of
 * every chunk. It is an external-content table reading from the view
 * chunk_fts_source, so the text is stored once (in chunks) and the index can be
 * rebuilt with INSERT INTO chunk_fts(chunk_fts) VALUES('rebuild') when the
 * tokenizer's rules change. The price of external content is that rows must be
 * removed from the index with the 'delete' command and the exact values that
 * were indexed; sq_doc_clear_chunks does that before the chunks go.
 *
 * Threads: one connection, every op holds s->lock for its whole duration.
 * That is plenty for an embedded store whose writes are ingest jobs and chat
 * turns; a reader pool can come later behind the same ops. Other processes
 * (ragd ingest while the server runs) are handled by WAL and busy_timeout.
 *
 * Every statement is prepared once at open and reset (with its bindings
 * cleared) right after each use, so no read transaction stays open between
 * calls and borrowed strings bound with SQLITE_STATIC are never kept. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "store/store.h"
#include "store/store_int.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/crypto.h"
#include "util/json.h"
#include "util/log.h"

#define SQ_SCHEMA_VERSION 4
#define SQ_BUSY_TIMEOUT_MS 5000
#define SQ_EXTERNAL_ID_MAX 256
#define SQ_LIST_LIMIT_MAX 1000
/* A pasted e-mail can yield thousands of terms; the first this many distinct
 * ones (in query order) carry the question and keep the OR expression cheap. */
#define SQ_QUERY_TERMS_MAX 1024

/* Column weights of bm25(): a hit in the title counts double, one in the
 * heading path half again as much as one in the body. */
#define SQ_BM25_WEIGHTS "2.0, 1.5, 1.0"

/* Version 1. Every statement is idempotent so that a half-finished migration
 * by a crashed process (impossible inside a transaction, but cheap to allow)
 * can simply run again. */
static const char sq_schema_v1[] =
    "CREATE TABLE IF NOT EXISTS documents ("
    " id INTEGER PRIMARY KEY,"
    " external_id TEXT NOT NULL UNIQUE,"
    " title TEXT NOT NULL DEFAULT '',"
    " url TEXT NOT NULL DEFAULT '',"
    " metadata_json TEXT NOT NULL DEFAULT '{}',"
    " format TEXT NOT NULL,"
    " content TEXT NOT NULL,"
    " content_hash TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS chunks ("
    " id INTEGER PRIMARY KEY,"
    " document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,"
    " ordinal INTEGER NOT NULL,"
    " heading_path TEXT NOT NULL DEFAULT '',"
    " text TEXT NOT NULL,"
    " token_count INTEGER NOT NULL,"
    " UNIQUE (document_id, ordinal));"
    "CREATE TABLE IF NOT EXISTS vectors ("
    " chunk_id INTEGER NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,"
    " model TEXT NOT NULL,"
    " dimensions INTEGER NOT NULL,"
    " data BLOB NOT NULL,"
    " PRIMARY KEY (chunk_id, model));"
    "CREATE TABLE IF NOT EXISTS conversations ("
    " id TEXT PRIMARY KEY,"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS messages ("
    " id INTEGER PRIMARY KEY,"
    " conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,"
    " role TEXT NOT NULL,"
    " content TEXT NOT NULL,"
    " created_at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, id);"
    "CREATE VIEW IF NOT EXISTS chunk_fts_source AS"
    " SELECT c.id AS id, c.document_id AS document_id, d.title AS title,"
    " c.heading_path AS heading_path, c.text AS text"
    " FROM chunks c JOIN documents d ON d.id = c.document_id;"
    "CREATE VIRTUAL TABLE IF NOT EXISTS chunk_fts USING fts5("
    " title, heading_path, text,"
    " content='chunk_fts_source', content_rowid='id',"
    " tokenize='" STORE_FTS_TOKENIZER_NAME "');";

/* Version 3: conversation memory. Messages get a public id, the retrieval
 * query, their sources and citations, token counts, provider, model and
 * finish reason; answers get feedback; conversations are found by age for
 * retention. Messages stored before get a random id. */
static const char sq_schema_v3[] =
    "ALTER TABLE messages ADD COLUMN public_id TEXT;"
    "ALTER TABLE messages ADD COLUMN retrieval_query TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE messages ADD COLUMN sources_json TEXT NOT NULL DEFAULT '[]';"
    "ALTER TABLE messages ADD COLUMN cited_json TEXT NOT NULL DEFAULT '[]';"
    "ALTER TABLE messages ADD COLUMN provider TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE messages ADD COLUMN model TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE messages ADD COLUMN finish_reason TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE messages ADD COLUMN tokens INTEGER;"
    "ALTER TABLE messages ADD COLUMN prompt_tokens INTEGER;"
    "UPDATE messages SET public_id = 'msg_' || lower(hex(randomblob(12)))"
    " WHERE public_id IS NULL;"
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_by_public_id ON messages(public_id);"
    "CREATE INDEX IF NOT EXISTS conversations_by_updated ON conversations(updated_at);"
    "CREATE TABLE IF NOT EXISTS feedback ("
    " message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,"
    " rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),"
    " comment TEXT NOT NULL DEFAULT '',"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS feedback_by_updated ON feedback(updated_at, message_id);";

/* Version 4: named blobs (the lsa embedder's model, so that a restart or
 * another process finds it in the database rather than beside it). */
static const char sq_schema_v4[] =
    "CREATE TABLE IF NOT EXISTS blobs ("
    " name TEXT PRIMARY KEY,"
    " data BLOB NOT NULL,"
    " updated_at INTEGER NOT NULL);";

enum sq_stmt_id {
  SQ_BEGIN,
  SQ_COMMIT,
  SQ_ROLLBACK,
  SQ_SAVEPOINT,
  SQ_RELEASE,
  SQ_ROLLBACK_TO,
  SQ_DOC_LOOKUP,
  SQ_DOC_INSERT,
  SQ_DOC_UPDATE,
  SQ_DOC_DELETE,
  SQ_DOC_ID,
  SQ_DOC_GET,
  SQ_DOC_LIST,
  SQ_FTS_DELETE_DOC,
  SQ_CHUNKS_DELETE_DOC,
  SQ_CHUNK_INSERT,
  SQ_FTS_INSERT,
  SQ_FTS_INSERT_STORED,
  SQ_SEARCH,
  SQ_CONV_TOUCH,
  SQ_MSG_INSERT,
  SQ_MSG_LIST,
  SQ_STATS,
  SQ_PING,
  SQ_DATA_VERSION,
  SQ_VEC_INSERT,
  SQ_VEC_LOAD,
  SQ_VEC_MODELS,
  SQ_VEC_DELETE_OTHER,
  SQ_DOC_VEC_COUNT,
  SQ_CHUNKS_NO_VEC,
  SQ_CHUNK_GET,
  SQ_FTS_REBUILD,
  SQ_MSG_PUT,
  SQ_CONV_GET,
  SQ_CONV_MESSAGES,
  SQ_CONV_DELETE,
  SQ_CONV_EXPIRE,
  SQ_FB_TARGET,
  SQ_FB_PUT,
  SQ_FB_LIST,
  SQ_STMT_COUNT
};

/* The document columns every reader of store_doc selects first, in this
 * order (see sq_read_doc). */
#define SQ_DOC_COLUMNS                                                           \
  "d.external_id, d.title, d.url, d.metadata_json, d.format, d.content_hash,"   \
  " d.created_at, d.updated_at,"                                                \
  " (SELECT count(*) FROM chunks c WHERE c.document_id = d.id)"

/* The columns sq_read_hit reads, in this order; f.score is the hit's score. */
#define SQ_HIT_COLUMNS                                                               \
  "d.external_id, d.title, d.url, c.heading_path, c.text, c.ordinal, f.score, c.id, d.id"

/* BM25 over the index restricted by a filter clause on documents d2 (see
 * sq_filter_build); the clause's parameters follow ?1 (query) and ?2 (k). */
#define SQ_SEARCH_FILTERED_HEAD                                                       \
  "SELECT " SQ_HIT_COLUMNS                                                              \
  " FROM (SELECT chunk_fts.rowid AS chunk_rowid,"                                       \
  " -bm25(chunk_fts, " SQ_BM25_WEIGHTS ") AS score"                                     \
  " FROM chunk_fts JOIN chunks c2 ON c2.id = chunk_fts.rowid"                           \
  " JOIN documents d2 ON d2.id = c2.document_id"                                        \
  " WHERE chunk_fts MATCH ?1"
#define SQ_SEARCH_FILTERED_TAIL                                                       \
  " ORDER BY score DESC, chunk_fts.rowid LIMIT ?2) AS f"                                \
  " JOIN chunks c ON c.id = f.chunk_rowid"                                              \
  " JOIN documents d ON d.id = c.document_id"                                           \
  " ORDER BY f.score DESC, c.id"

static const char *const sq_stmt_sql[SQ_STMT_COUNT] = {
    [SQ_BEGIN] = "BEGIN IMMEDIATE",
    [SQ_COMMIT] = "COMMIT",
    [SQ_ROLLBACK] = "ROLLBACK",
    [SQ_SAVEPOINT] = "SAVEPOINT ragd_doc",
    [SQ_RELEASE] = "RELEASE ragd_doc",
    [SQ_ROLLBACK_TO] = "ROLLBACK TO ragd_doc",
    /* ?1 external_id, ?2.. the new values: column 2 says "nothing changed". */
    [SQ_DOC_LOOKUP] = "SELECT id, created_at,"
                      " content_hash = ?2 AND title = ?3 AND url = ?4"
                      " AND metadata_json = ?5 AND format = ?6,"
                      " (SELECT count(*) FROM chunks c WHERE c.document_id = documents.id)"
                      " FROM documents WHERE external_id = ?1",
    [SQ_DOC_INSERT] = "INSERT INTO documents(external_id, title, url, metadata_json, format,"
                      " content, content_hash, created_at, updated_at)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
    [SQ_DOC_UPDATE] = "UPDATE documents SET title = ?2, url = ?3, metadata_json = ?4,"
                      " format = ?5, content = ?6, content_hash = ?7, updated_at = ?8"
                      " WHERE id = ?1",
    [SQ_DOC_DELETE] = "DELETE FROM documents WHERE id = ?1",
    [SQ_DOC_ID] = "SELECT id FROM documents WHERE external_id = ?1",
    [SQ_DOC_GET] = "SELECT " SQ_DOC_COLUMNS ", d.content FROM documents d"
                   " WHERE d.external_id = ?1",
    [SQ_DOC_LIST] = "SELECT " SQ_DOC_COLUMNS " FROM documents d"
                    " WHERE d.external_id > ?1 ORDER BY d.external_id LIMIT ?2",
    [SQ_FTS_DELETE_DOC] = "INSERT INTO chunk_fts(chunk_fts, rowid, title, heading_path, text)"
                          " SELECT 'delete', id, title, heading_path, text"
                          " FROM chunk_fts_source WHERE document_id = ?1",
    [SQ_CHUNKS_DELETE_DOC] = "DELETE FROM chunks WHERE document_id = ?1",
    [SQ_CHUNK_INSERT] = "INSERT INTO chunks(document_id, ordinal, heading_path, text, token_count)"
                        " VALUES (?1, ?2, ?3, ?4, ?5)",
    [SQ_FTS_INSERT] = "INSERT INTO chunk_fts(rowid, title, heading_path, text)"
                      " VALUES (?1, ?2, ?3, ?4)",
    [SQ_FTS_INSERT_STORED] = "INSERT INTO chunk_fts(rowid, title, heading_path, text)"
                             " SELECT id, title, heading_path, text FROM chunk_fts_source"
                             " WHERE id = ?1",
    [SQ_SEARCH] = "SELECT " SQ_HIT_COLUMNS
                  " FROM (SELECT rowid AS chunk_rowid,"
                  " -bm25(chunk_fts, " SQ_BM25_WEIGHTS ") AS score"
                  " FROM chunk_fts WHERE chunk_fts MATCH ?1"
                  " ORDER BY score DESC, rowid LIMIT ?2) AS f"
                  " JOIN chunks c ON c.id = f.chunk_rowid"
                  " JOIN documents d ON d.id = c.document_id"
                  " ORDER BY f.score DESC, c.id",
    [SQ_CONV_TOUCH] = "INSERT INTO conversations(id, created_at, updated_at) VALUES (?1, ?2, ?2)"
                      " ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at",
    [SQ_MSG_INSERT] = "INSERT INTO messages(conversation_id, role, content, created_at)"
                      " VALUES (?1, ?2, ?3, ?4)",
    [SQ_MSG_LIST] = "SELECT role, content, created_at, public_id, retrieval_query FROM"
                    " (SELECT id, role, content, created_at, public_id, retrieval_query"
                    " FROM messages WHERE conversation_id = ?1 ORDER BY id DESC LIMIT ?2)"
                    " ORDER BY id",
    [SQ_STATS] = "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks)",
    [SQ_PING] = "SELECT 1",
    [SQ_DATA_VERSION] = "PRAGMA data_version",
    /* vectors are float32 in the machine's byte order, dimensions of them */
    [SQ_VEC_INSERT] = "INSERT OR REPLACE INTO vectors(chunk_id, model, dimensions, data)"
                      " SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM chunks WHERE id = ?1)",
    [SQ_VEC_LOAD] = "SELECT v.chunk_id, c.document_id, v.data FROM vectors v"
                    " JOIN chunks c ON c.id = v.chunk_id"
                    " WHERE v.model = ?1 AND v.dimensions = ?2 ORDER BY v.chunk_id",
    [SQ_VEC_MODELS] = "SELECT model, dimensions, count(*) FROM vectors"
                      " GROUP BY model, dimensions ORDER BY model, dimensions",
    [SQ_VEC_DELETE_OTHER] = "DELETE FROM vectors WHERE NOT (model = ?1 AND dimensions = ?2)",
    [SQ_DOC_VEC_COUNT] = "SELECT count(*) FROM vectors v JOIN chunks c ON c.id = v.chunk_id"
                         " WHERE c.document_id = ?1 AND v.model = ?2 AND v.dimensions = ?3",
    [SQ_CHUNKS_NO_VEC] = "SELECT c.id, c.document_id, d.title, c.heading_path, c.text"
                         " FROM chunks c JOIN documents d ON d.id = c.document_id"
                         " WHERE c.id > ?3 AND NOT EXISTS (SELECT 1 FROM vectors v"
                         " WHERE v.chunk_id = c.id AND v.model = ?1 AND v.dimensions = ?2)"
                         " ORDER BY c.id LIMIT ?4",
    [SQ_CHUNK_GET] = "SELECT " SQ_HIT_COLUMNS " FROM chunks c"
                     " JOIN documents d ON d.id = c.document_id"
                     " JOIN (SELECT 0.0 AS score) f WHERE c.id = ?1",
    [SQ_FTS_REBUILD] = "INSERT INTO chunk_fts(chunk_fts) VALUES ('rebuild')",
    [SQ_MSG_PUT] = "INSERT INTO messages(conversation_id, role, content, created_at, public_id,"
                   " retrieval_query, sources_json, cited_json, provider, model, finish_reason,"
                   " tokens, prompt_tokens)"
                   " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    [SQ_CONV_GET] = "SELECT created_at, updated_at FROM conversations WHERE id = ?1",
    /* the columns sq_read_message reads, in this order */
    [SQ_CONV_MESSAGES] = "SELECT m.role, m.content, m.created_at, m.public_id, m.retrieval_query,"
                         " m.sources_json, m.cited_json, m.provider, m.model, m.finish_reason,"
                         " m.tokens, m.prompt_tokens, f.rating, f.comment"
                         " FROM messages m LEFT JOIN feedback f ON f.message_id = m.id"
                         " WHERE m.conversation_id = ?1 ORDER BY m.id",
    [SQ_CONV_DELETE] = "DELETE FROM conversations WHERE id = ?1",
    [SQ_CONV_EXPIRE] = "DELETE FROM conversations WHERE updated_at < ?1",
    [SQ_FB_TARGET] = "SELECT m.id, EXISTS (SELECT 1 FROM feedback f WHERE f.message_id = m.id)"
                     " FROM messages m WHERE m.conversation_id = ?1 AND m.public_id = ?2"
                     " AND m.role = 'assistant'",
    [SQ_FB_PUT] = "INSERT INTO feedback(message_id, rating, comment, created_at, updated_at)"
                  " VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT(message_id) DO UPDATE SET"
                  " rating = excluded.rating, comment = excluded.comment,"
                  " updated_at = excluded.updated_at",
    [SQ_FB_LIST] = "SELECT m.conversation_id, m.public_id, f.rating, f.comment, f.created_at,"
                   " f.updated_at,"
                   " (SELECT u.content FROM messages u WHERE u.conversation_id = m.conversation_id"
                   " AND u.id < m.id AND u.role = 'user' ORDER BY u.id DESC LIMIT 1),"
                   " m.content, m.provider, m.model, m.sources_json, m.cited_json"
                   " FROM feedback f JOIN messages m ON m.id = f.message_id"
                   " WHERE f.updated_at >= ?1 ORDER BY f.updated_at, f.message_id",
};

struct sq_store {
  sqlite3 *db;
  pthread_mutex_t lock;
  sqlite3_stmt *stmts[SQ_STMT_COUNT];
  /* batch_begin .. batch_end (under lock): put_document writes each
   * document in a savepoint of the batch's open transaction; broken: an
   * error ended that transaction, so the batch can only be rolled back */
  int batch, batch_broken;
  /* In a batch the chunks' FTS5 rows wait here (chunk id, document id)
   * until batch_end: FTS5 writes its pending terms out at every savepoint
   * (each statement inside one), which made a savepoint per document cost
   * a fifth of ingest. fts_doc_mark: the count when the current document's
   * savepoint opened (its rollback drops what it added). */
  struct sq_fts_row {
    int64_t chunk, doc;
  } *fts_pending;
  size_t fts_npending, fts_cap, fts_doc_mark;
};

/* ---- small helpers ---------------------------------------------------------- */

static ragd_err sq_map(int src) {
  switch (src & 0xff) {
  case SQLITE_OK:
  case SQLITE_DONE:
  case SQLITE_ROW:
    return RAGD_OK;
  case SQLITE_NOMEM:
    return RAGD_ENOMEM;
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    return RAGD_ETIMEOUT;
  case SQLITE_IOERR:
  case SQLITE_FULL:
  case SQLITE_CANTOPEN:
  case SQLITE_READONLY:
  case SQLITE_PERM:
    return RAGD_EIO;
  case SQLITE_TOOBIG:
    return RAGD_ETOOBIG;
  default:
    return RAGD_ESTORE;
  }
}

/* Logs what failed (never the data) and maps the SQLite code. */
static ragd_err sq_fail(struct sq_store *s, int src, const char *what) {
  log_error("store: %s: %s (%s)", what, sqlite3_errmsg(s->db), sqlite3_errstr(src));
  return sq_map(src);
}

static void sq_release(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

/* Binds borrowed text; the statement is reset before the call returns. */
static int sq_bind_text(sqlite3_stmt *st, int idx, const char *p, size_t len) {
  return sqlite3_bind_text64(st, idx, p ? p : "", p ? (sqlite3_uint64)len : 0, SQLITE_STATIC,
                             SQLITE_UTF8);
}

static int sq_bind_str(sqlite3_stmt *st, int idx, const char *p) {
  return sq_bind_text(st, idx, p, p ? strlen(p) : 0);
}

static sqlite3_int64 sq_clamp_i64(size_t n) {
  return (uint64_t)n > (uint64_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)n;
}

/* Runs a statement that returns no rows (after bind_rc, the first binding
 * error if any), then resets it. */
static ragd_err sq_run(struct sq_store *s, sqlite3_stmt *st, int bind_rc, const char *what) {
  int src = bind_rc;
  ragd_err rc = RAGD_OK;
  if (src == SQLITE_OK) src = sqlite3_step(st);
  if (src != SQLITE_DONE && src != SQLITE_ROW) rc = sq_fail(s, src, what);
  sq_release(st);
  return rc;
}

/* A write of its own; refused while a batch holds the transaction (a
 * nested BEGIN would fail, and its caller's rollback would end the batch). */
static ragd_err sq_begin(struct sq_store *s) {
  if (s->batch) {
    log_error("store: a write outside put_document during an ingest batch");
    return RAGD_EINVAL;
  }
  return sq_run(s, s->stmts[SQ_BEGIN], SQLITE_OK, "begin");
}

static ragd_err sq_commit(struct sq_store *s) {
  return sq_run(s, s->stmts[SQ_COMMIT], SQLITE_OK, "commit");
}

/* Rolls back when a transaction is still open (an error may already have
 * ended it). */
static void sq_rollback(struct sq_store *s) {
  if (sqlite3_get_autocommit(s->db)) return;
  (void)sq_run(s, s->stmts[SQ_ROLLBACK], SQLITE_OK, "rollback");
}

/* Copies a text column into a new NUL-terminated string; NULL becomes "". */
static ragd_err sq_col_dup(sqlite3_stmt *st, int col, char **out, size_t *len) {
  const unsigned char *p = sqlite3_column_text(st, col);
  int n = sqlite3_column_bytes(st, col);
  char *copy;
  if (!p && sqlite3_column_type(st, col) != SQLITE_NULL) return RAGD_ENOMEM;
  if (n < 0) n = 0;
  copy = malloc((size_t)n + 1);
  if (!copy) return RAGD_ENOMEM;
  if (n > 0) memcpy(copy, p, (size_t)n);
  copy[n] = '\0';
  *out = copy;
  if (len) *len = (size_t)n;
  return RAGD_OK;
}

static int sq_utf8_ok(const char *p, size_t len) {
  size_t bad = 0;
  return text_utf8_validate(p, len, &bad) == RAGD_OK;
}



/* ---- cursors ---------------------------------------------------------------- */

/* A cursor is the hex of the last external id of a page: opaque to users,
 * safe in a URL, and decodable without a lookup. */
static char *sq_cursor_encode(const char *external_id) {
  static const char digits[] = "0123456789abcdef";
  size_t n = strlen(external_id), i;
  char *out = malloc(2 * n + 1);
  if (!out) return NULL;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)external_id[i];
    out[2 * i] = digits[c >> 4];
    out[2 * i + 1] = digits[c & 15];
  }
  out[2 * n] = '\0';
  return out;
}

static int sq_hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static ragd_err sq_cursor_decode(const char *cursor, char **out) {
  size_t n = strlen(cursor), i;
  char *id;
  ragd_err rc;
  if (n == 0 || n % 2 || n / 2 > SQ_EXTERNAL_ID_MAX) return RAGD_EINVAL;
  id = malloc(n / 2 + 1);
  if (!id) return RAGD_ENOMEM;
  for (i = 0; i < n / 2; i++) {
    int hi = sq_hex_value(cursor[2 * i]);
    int lo = sq_hex_value(cursor[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      free(id);
      return RAGD_EINVAL;
    }
    id[i] = (char)(hi << 4 | lo);
  }
  id[n / 2] = '\0';
  rc = store_check_id(id, SQ_EXTERNAL_ID_MAX);
  if (rc) {
    free(id);
    return RAGD_EINVAL;
  }
  *out = id;
  return RAGD_OK;
}

/* ---- open / close --------------------------------------------------------------- */

/* mkdir -p. New directories are private to the user: they will hold the
 * knowledge base and customers' conversations. */
static ragd_err sq_mkdir_p(const char *dir) {
  char *path = strdup(dir);
  struct stat sb;
  ragd_err rc = RAGD_OK;
  char *p;
  if (!path) return RAGD_ENOMEM;
  for (p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
      rc = RAGD_EIO;
      goto out;
    }
    *p = '/';
  }
  if (mkdir(path, 0700) != 0 && errno != EEXIST) {
    rc = RAGD_EIO;
    goto out;
  }
  if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) rc = RAGD_EIO;
out:
  if (rc) log_error("store: cannot create directory %s", dir);
  free(path);
  return rc;
}

static ragd_err sq_exec(struct sq_store *s, const char *sql, const char *what) {
  char *msg = NULL;
  int src = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
  if (src == SQLITE_OK) return RAGD_OK;
  log_error("store: %s: %s", what, msg ? msg : sqlite3_errstr(src));
  sqlite3_free(msg);
  return sq_map(src);
}

/* The api_keys table stands apart from the numbered schema: it is created
 * (IF NOT EXISTS) at every open, so adding it needed no schema version of its
 * own and older databases simply gain it. Key operations are rare (the HTTP
 * layer caches lookups for well under a second), so their statements are
 * prepared per call rather than held in s->stmts. Only hashes are stored. */
static const char sq_schema_keys[] =
    "CREATE TABLE IF NOT EXISTS api_keys ("
    " id INTEGER PRIMARY KEY,"
    " public_id TEXT NOT NULL UNIQUE,"
    " name TEXT NOT NULL DEFAULT '',"
    " scope TEXT NOT NULL CHECK (scope IN ('query', 'admin')),"
    " key_hash TEXT NOT NULL UNIQUE,"
    " rpm INTEGER NOT NULL DEFAULT 0,"
    " streams INTEGER NOT NULL DEFAULT 0,"
    " created_at INTEGER NOT NULL,"
    " revoked_at INTEGER);";

static ragd_err sq_user_version(struct sq_store *s, int *version) {
  sqlite3_stmt *st = NULL;
  ragd_err rc = RAGD_OK;
  int src = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
  if (src == SQLITE_OK) src = sqlite3_step(st);
  if (src == SQLITE_ROW) {
    *version = sqlite3_column_int(st, 0);
  } else {
    rc = sq_fail(s, src, "read schema version");
  }
  sqlite3_finalize(st);
  return rc;
}

static ragd_err sq_migrate(struct sq_store *s, const char *path) {
  int version = 0, in_txn = 0;
  ragd_err rc = sq_user_version(s, &version);
  if (rc) goto out;
  if (version == SQ_SCHEMA_VERSION) goto out;
  if (version > SQ_SCHEMA_VERSION) goto too_new;
  rc = sq_exec(s, "BEGIN IMMEDIATE", "begin migration");
  if (rc) goto out;
  in_txn = 1;
  /* Another process may have migrated while we waited for the lock. */
  rc = sq_user_version(s, &version);
  if (rc) goto out;
  if (version > SQ_SCHEMA_VERSION) goto too_new;
  if (version < 1) {
    rc = sq_exec(s, sq_schema_v1, "create schema v1");
    if (rc) goto out;
    rc = sq_exec(s, "PRAGMA user_version = 1", "set schema version");
    if (rc) goto out;
  }
  if (version < 2) {
    /* Version 2: the tokenizer stems English words; terms indexed by
     * version 1 are re-tokenized. */
    rc = sq_exec(s, "INSERT INTO chunk_fts(chunk_fts) VALUES ('rebuild');"
                    "PRAGMA user_version = 2", "rebuild the BM25 index for schema v2");
    if (rc) goto out;
  }
  if (version < 3) {
    rc = sq_exec(s, sq_schema_v3, "migrate schema to v3");
    if (rc) goto out;
    rc = sq_exec(s, "PRAGMA user_version = 3", "set schema version");
    if (rc) goto out;
  }
  if (version < 4) {
    rc = sq_exec(s, sq_schema_v4, "migrate schema to v4");
    if (rc) goto out;
    rc = sq_exec(s, "PRAGMA user_version = 4", "set schema version");
    if (rc) goto out;
  }
  rc = sq_exec(s, "COMMIT", "commit migration");
  if (rc) goto out;
  in_txn = 0;
  if (version < SQ_SCHEMA_VERSION)
    log_info("store: %s migrated to schema %d", path, SQ_SCHEMA_VERSION);
  goto out;
too_new:
  log_error("store: %s has schema %d, newer than this ragd (%d)", path, version,
            SQ_SCHEMA_VERSION);
  rc = RAGD_ECONFIG;
out:
  if (in_txn && !sqlite3_get_autocommit(s->db)) sq_exec(s, "ROLLBACK", "rollback migration");
  return rc;
}

static void sq_close(void *ctx) {
  struct sq_store *s = ctx;
  size_t i;
  int src;
  if (!s) return;
  for (i = 0; i < SQ_STMT_COUNT; i++) sqlite3_finalize(s->stmts[i]);
  free(s->fts_pending);
  if (s->db) {
    /* Lets SQLite refresh its planner statistics when it thinks it helps. */
    sqlite3_exec(s->db, "PRAGMA optimize", NULL, NULL, NULL);
    src = sqlite3_close(s->db);
    if (src != SQLITE_OK) log_error("store: close: %s", sqlite3_errstr(src));
  }
  pthread_mutex_destroy(&s->lock);
  free(s);
}

static ragd_err sq_open(const char *location, const struct store_options *opts, void **ctx) {
  struct sq_store *s = NULL;
  struct buf path;
  ragd_err rc;
  int src;
  size_t i;

  (void)opts; /* one connection, and the embedded schema always migrates */
  buf_init(&path, 0);
  if (!location || !*location || !ctx) return RAGD_EINVAL;
  rc = sq_mkdir_p(location);
  if (rc) goto out;
  rc = buf_append_str(&path, location);
  if (!rc && location[strlen(location) - 1] != '/') rc = buf_append_char(&path, '/');
  if (!rc) rc = buf_append_str(&path, "ragd.db");
  if (rc) goto out;

  s = calloc(1, sizeof *s);
  if (!s) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  if (pthread_mutex_init(&s->lock, NULL) != 0) {
    free(s);
    s = NULL;
    rc = RAGD_ENOMEM;
    goto out;
  }
  /* NOMUTEX: s->lock already serializes every use of the connection. */
  src = sqlite3_open_v2(path.data, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (src != SQLITE_OK) {
    log_error("store: cannot open %s: %s", path.data,
              s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(src));
    rc = sq_map(src);
    goto out;
  }
  sqlite3_extended_result_codes(s->db, 1);
  sqlite3_busy_timeout(s->db, SQ_BUSY_TIMEOUT_MS);
  /* No writes to FTS5 shadow tables or other footguns through SQL. */
  sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
  rc = sq_exec(s, "PRAGMA journal_mode = WAL", "enable WAL");
  if (!rc) rc = sq_exec(s, "PRAGMA synchronous = NORMAL", "set synchronous");
  if (!rc) rc = sq_exec(s, "PRAGMA foreign_keys = ON", "enable foreign keys");
  if (rc) goto out;
  src = store_fts_register_tokenizer(s->db);
  if (src != SQLITE_OK) {
    rc = sq_fail(s, src, "register FTS5 tokenizer");
    goto out;
  }
  rc = sq_migrate(s, path.data);
  if (!rc) rc = sq_exec(s, sq_schema_keys, "create the api_keys table");
  if (rc) goto out;
  for (i = 0; i < SQ_STMT_COUNT; i++) {
    src = sqlite3_prepare_v3(s->db, sq_stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                             &s->stmts[i], NULL);
    if (src != SQLITE_OK) {
      rc = sq_fail(s, src, "prepare statement");
      goto out;
    }
  }
  *ctx = s;
  s = NULL;
out:
  sq_close(s);
  buf_dispose(&path);
  return rc;
}

/* ---- documents ------------------------------------------------------------------ */

/* The canonical names of store.h; aliases (md) are the caller's to resolve. */
static int sq_format_known(const char *format) {
  return strcmp(format, "text") == 0 || strcmp(format, "markdown") == 0 ||
         strcmp(format, "html") == 0;
}

/* store_doc_in with defaults filled in and everything but the chunks checked. */
struct sq_doc_fields {
  const char *external_id;
  const char *title;
  const char *url;
  const char *metadata_json;
  const char *format;
  const char *content;
  size_t content_len;
  const struct text_chunk *chunks;
  size_t chunk_count;
  const char *vector_model; /* NULL: no vectors */
  size_t vector_dim;
  const float *vectors;
  int64_t *chunk_rowids;
};

static ragd_err sq_doc_fields_init(const struct store_doc_in *doc, struct sq_doc_fields *f) {
  ragd_err rc = store_check_id(doc->external_id, SQ_EXTERNAL_ID_MAX);
  if (rc) return rc;
  if (!doc->format || !sq_format_known(doc->format)) return RAGD_EINVAL;
  if (!doc->content && doc->content_len) return RAGD_EINVAL;
  if (doc->chunks && doc->chunks->count && !doc->chunks->items) return RAGD_EINVAL;
  f->external_id = doc->external_id;
  f->title = doc->title ? doc->title : "";
  f->url = doc->url ? doc->url : "";
  f->metadata_json = doc->metadata_json ? doc->metadata_json : "{}";
  f->format = doc->format;
  f->content = doc->content ? doc->content : "";
  f->content_len = doc->content_len;
  f->chunks = doc->chunks ? doc->chunks->items : NULL;
  f->chunk_count = doc->chunks ? doc->chunks->count : 0;
  f->chunk_rowids = doc->chunk_rowids;
  f->vector_model = NULL;
  f->vector_dim = 0;
  f->vectors = NULL;
  if (doc->vector_model) {
    if (!doc->vector_model[0] || doc->vector_dim == 0 || (f->chunk_count && !doc->vectors))
      return RAGD_EINVAL;
    f->vector_model = doc->vector_model;
    f->vector_dim = doc->vector_dim;
    f->vectors = doc->vectors;
  }
  rc = store_check_utf8(f->title);
  if (!rc) rc = store_check_utf8(f->url);
  if (!rc) rc = store_check_utf8(f->metadata_json);
  if (!rc && !sq_utf8_ok(f->content, f->content_len)) rc = RAGD_EUTF8;
  return rc;
}

struct sq_existing {
  int found;
  int unchanged;
  int64_t id;
  int64_t created_at;
  size_t chunk_count;
};

static ragd_err sq_doc_lookup(struct sq_store *s, const struct sq_doc_fields *f,
                              const char *hash, struct sq_existing *ex) {
  sqlite3_stmt *st = s->stmts[SQ_DOC_LOOKUP];
  ragd_err rc = RAGD_OK;
  int src;
  memset(ex, 0, sizeof *ex);
  src = sq_bind_str(st, 1, f->external_id);
  if (!src) src = sq_bind_str(st, 2, hash);
  if (!src) src = sq_bind_str(st, 3, f->title);
  if (!src) src = sq_bind_str(st, 4, f->url);
  if (!src) src = sq_bind_str(st, 5, f->metadata_json);
  if (!src) src = sq_bind_str(st, 6, f->format);
  if (!src) src = sqlite3_step(st);
  if (src == SQLITE_ROW) {
    ex->found = 1;
    ex->id = sqlite3_column_int64(st, 0);
    ex->created_at = sqlite3_column_int64(st, 1);
    ex->unchanged = sqlite3_column_int(st, 2) == 1;
    ex->chunk_count = (size_t)sqlite3_column_int64(st, 3);
  } else if (src != SQLITE_DONE) {
    rc = sq_fail(s, src, "look up document");
  }
  sq_release(st);
  /* Unchanged text whose vectors under the wanted model are incomplete (the
   * model was switched) is written again, vectors and all. */
  if (!rc && ex->unchanged && f->vector_model) {
    int64_t have = 0;
    st = s->stmts[SQ_DOC_VEC_COUNT];
    src = sqlite3_bind_int64(st, 1, ex->id);
    if (!src) src = sq_bind_str(st, 2, f->vector_model);
    if (!src) src = sqlite3_bind_int64(st, 3, sq_clamp_i64(f->vector_dim));
    if (!src) src = sqlite3_step(st);
    if (src == SQLITE_ROW) have = sqlite3_column_int64(st, 0);
    else rc = sq_fail(s, src, "count vectors");
    sq_release(st);
    if (!rc && (size_t)have != ex->chunk_count) ex->unchanged = 0;
  }
  return rc;
}

/* Removes a document's chunks from the index, then from chunks (their vectors
 * go by cascade). The index must go first: the 'delete' command needs the
 * values that were indexed. */
static ragd_err sq_doc_clear_chunks(struct sq_store *s, int64_t doc_id) {
  sqlite3_stmt *st = s->stmts[SQ_FTS_DELETE_DOC];
  ragd_err rc = sq_run(s, st, sqlite3_bind_int64(st, 1, doc_id), "unindex chunks");
  if (rc) return rc;
  st = s->stmts[SQ_CHUNKS_DELETE_DOC];
  return sq_run(s, st, sqlite3_bind_int64(st, 1, doc_id), "delete chunks");
}

/* Binds ?2..?8 shared by SQ_DOC_INSERT and SQ_DOC_UPDATE. */
static int sq_bind_doc(sqlite3_stmt *st, const struct sq_doc_fields *f, const char *hash,
                       int64_t now) {
  int src = sq_bind_str(st, 2, f->title);
  if (!src) src = sq_bind_str(st, 3, f->url);
  if (!src) src = sq_bind_str(st, 4, f->metadata_json);
  if (!src) src = sq_bind_str(st, 5, f->format);
  if (!src) src = sq_bind_text(st, 6, f->content, f->content_len);
  if (!src) src = sq_bind_str(st, 7, hash);
  if (!src) src = sqlite3_bind_int64(st, 8, now);
  return src;
}

static ragd_err sq_doc_write(struct sq_store *s, const struct sq_existing *ex,
                             const struct sq_doc_fields *f, const char *hash, int64_t now,
                             int64_t *doc_id) {
  sqlite3_stmt *st;
  ragd_err rc;
  int src;
  if (ex->found) {
    st = s->stmts[SQ_DOC_UPDATE];
    src = sqlite3_bind_int64(st, 1, ex->id);
    if (!src) src = sq_bind_doc(st, f, hash, now);
    rc = sq_run(s, st, src, "update document");
    if (!rc) *doc_id = ex->id;
    return rc;
  }
  st = s->stmts[SQ_DOC_INSERT];
  src = sq_bind_str(st, 1, f->external_id);
  if (!src) src = sq_bind_doc(st, f, hash, now);
  rc = sq_run(s, st, src, "insert document");
  if (!rc) *doc_id = sqlite3_last_insert_rowid(s->db);
  return rc;
}

/* Inserts one chunk and its index entry. A chunk that is not usable fails the
 * whole put (the caller rolls back). */
static ragd_err sq_vector_insert(struct sq_store *s, int64_t chunk_id, const char *model,
                                 size_t dim, const float *v) {
  sqlite3_stmt *st = s->stmts[SQ_VEC_INSERT];
  int src = sqlite3_bind_int64(st, 1, chunk_id);
  if (!src) src = sq_bind_str(st, 2, model);
  if (!src) src = sqlite3_bind_int64(st, 3, sq_clamp_i64(dim));
  if (!src) src = sqlite3_bind_blob64(st, 4, v, (sqlite3_uint64)(dim * sizeof *v), SQLITE_STATIC);
  return sq_run(s, st, src, "insert vector");
}

/* Queues a chunk's FTS5 row until the batch ends (see fts_pending). */
static ragd_err sq_fts_defer(struct sq_store *s, int64_t chunk_id, int64_t doc_id) {
  if (s->fts_npending == s->fts_cap) {
    size_t cap = s->fts_cap ? s->fts_cap * 2 : 1024;
    struct sq_fts_row *g = realloc(s->fts_pending, cap * sizeof *g);
    if (!g) return RAGD_ENOMEM;
    s->fts_pending = g;
    s->fts_cap = cap;
  }
  s->fts_pending[s->fts_npending].chunk = chunk_id;
  s->fts_pending[s->fts_npending++].doc = doc_id;
  return RAGD_OK;
}

/* Writes the queued FTS5 rows from the stored chunks (outside any
 * savepoint, so FTS5 keeps them in memory until the commit). On error the
 * rows not yet written stay queued. */
static ragd_err sq_fts_flush(struct sq_store *s) {
  sqlite3_stmt *st = s->stmts[SQ_FTS_INSERT_STORED];
  size_t i;
  ragd_err rc = RAGD_OK;
  for (i = 0; i < s->fts_npending && !rc; i++)
    rc = sq_run(s, st, sqlite3_bind_int64(st, 1, s->fts_pending[i].chunk), "index chunk");
  if (rc) i--; /* the failed one stays */
  memmove(s->fts_pending, s->fts_pending + i, (s->fts_npending - i) * sizeof *s->fts_pending);
  s->fts_npending -= i;
  return rc;
}

/* Whether a chunk of doc_id waits in the queue. */
static int sq_fts_pending_for(const struct sq_store *s, int64_t doc_id) {
  for (size_t i = 0; i < s->fts_npending; i++)
    if (s->fts_pending[i].doc == doc_id) return 1;
  return 0;
}

static ragd_err sq_chunk_insert(struct sq_store *s, int64_t doc_id, size_t ordinal,
                                const struct text_chunk *c, const char *title,
                                const struct sq_doc_fields *f) {
  const char *heading = c->heading_path ? c->heading_path : "";
  sqlite3_stmt *st;
  sqlite3_int64 chunk_id;
  ragd_err rc;
  int src;
  if (!c->text) return RAGD_EINVAL;
  if (!sq_utf8_ok(heading, strlen(heading)) || !sq_utf8_ok(c->text, c->text_len))
    return RAGD_EUTF8;
  st = s->stmts[SQ_CHUNK_INSERT];
  src = sqlite3_bind_int64(st, 1, doc_id);
  if (!src) src = sqlite3_bind_int64(st, 2, sq_clamp_i64(ordinal));
  if (!src) src = sq_bind_str(st, 3, heading);
  if (!src) src = sq_bind_text(st, 4, c->text, c->text_len);
  if (!src) src = sqlite3_bind_int64(st, 5, sq_clamp_i64(c->token_count));
  rc = sq_run(s, st, src, "insert chunk");
  if (rc) return rc;
  chunk_id = sqlite3_last_insert_rowid(s->db);
  if (s->batch) {
    rc = sq_fts_defer(s, chunk_id, doc_id);
  } else {
    st = s->stmts[SQ_FTS_INSERT];
    src = sqlite3_bind_int64(st, 1, chunk_id);
    if (!src) src = sq_bind_str(st, 2, title);
    if (!src) src = sq_bind_str(st, 3, heading);
    if (!src) src = sq_bind_text(st, 4, c->text, c->text_len);
    rc = sq_run(s, st, src, "index chunk");
  }
  if (rc) return rc;
  if (f->chunk_rowids) f->chunk_rowids[ordinal] = chunk_id;
  if (f->vector_model)
    rc = sq_vector_insert(s, chunk_id, f->vector_model, f->vector_dim,
                          f->vectors + ordinal * f->vector_dim);
  return rc;
}

/* One document's write: its own transaction, or inside a batch its own
 * savepoint (called under s->lock). */
static ragd_err sq_doc_begin(struct sq_store *s) {
  if (!s->batch) return sq_begin(s);
  if (s->batch_broken || sqlite3_get_autocommit(s->db)) {
    s->batch_broken = 1;
    log_error("store: the batch's transaction ended after an error; no more documents join it");
    return RAGD_EIO;
  }
  s->fts_doc_mark = s->fts_npending;
  return sq_run(s, s->stmts[SQ_SAVEPOINT], SQLITE_OK, "savepoint");
}

static ragd_err sq_doc_commit(struct sq_store *s) {
  return sq_run(s, s->stmts[s->batch ? SQ_RELEASE : SQ_COMMIT], SQLITE_OK,
                s->batch ? "release savepoint" : "commit");
}

/* Undoes the document's writes: the whole transaction, or in a batch the
 * savepoint alone (the documents before it stay in the batch). */
static void sq_doc_rollback(struct sq_store *s) {
  if (!s->batch) {
    sq_rollback(s);
    return;
  }
  s->fts_npending = s->fts_doc_mark; /* its chunks are gone with it */
  /* an error such as SQLITE_FULL may have rolled back the whole batch */
  if (sqlite3_get_autocommit(s->db) ||
      sq_run(s, s->stmts[SQ_ROLLBACK_TO], SQLITE_OK, "rollback to savepoint") ||
      sq_run(s, s->stmts[SQ_RELEASE], SQLITE_OK, "release savepoint"))
    s->batch_broken = 1;
}

static ragd_err sq_put_document(void *ctx, const struct store_doc_in *doc,
                                struct store_put_result *out) {
  struct sq_store *s = ctx;
  struct sq_doc_fields f;
  struct sq_existing ex;
  enum store_put_status status = STORE_PUT_CREATED;
  size_t chunk_count = 0, i;
  char hash[65];
  int64_t doc_id = 0;
  int in_txn = 0;
  ragd_err rc;

  if (!s || !doc || !out) return RAGD_EINVAL;
  rc = sq_doc_fields_init(doc, &f);
  if (rc) return rc;
  crypto_sha256_hex(f.content, f.content_len, hash);

  pthread_mutex_lock(&s->lock);
  /* Re-ingesting an unchanged knowledge base is the common case: answer it
   * without taking the write lock. */
  rc = sq_doc_lookup(s, &f, hash, &ex);
  if (rc) goto out;
  if (ex.found && ex.unchanged) goto unchanged;
  /* The FTS5 'delete' of a replaced document's chunks must meet the rows
   * it indexed: index queued ones first (outside the savepoint, so that
   * this document's rollback cannot undo them). */
  if (s->batch && ex.found && sq_fts_pending_for(s, ex.id)) {
    rc = sq_fts_flush(s);
    if (rc) {
      s->batch_broken = 1;
      goto out;
    }
  }

  rc = sq_doc_begin(s);
  if (rc) goto out;
  in_txn = 1;
  /* Again under the write lock: another process may have written meanwhile
   * (a batch holds the write lock since batch_begin). */
  if (!s->batch) {
    rc = sq_doc_lookup(s, &f, hash, &ex);
    if (rc) goto out;
    if (ex.found && ex.unchanged) goto unchanged;
  }
  if (ex.found) {
    rc = sq_doc_clear_chunks(s, ex.id);
    if (rc) goto out;
  }
  rc = sq_doc_write(s, &ex, &f, hash, clock_wall_s(), &doc_id);
  if (rc) goto out;
  for (i = 0; i < f.chunk_count; i++) {
    rc = sq_chunk_insert(s, doc_id, i, &f.chunks[i], f.title, &f);
    if (rc) goto out;
  }
  rc = sq_doc_commit(s);
  if (rc) goto out;
  in_txn = 0;
  status = ex.found ? STORE_PUT_UPDATED : STORE_PUT_CREATED;
  chunk_count = f.chunk_count;
  goto out;
unchanged:
  status = STORE_PUT_UNCHANGED;
  chunk_count = ex.chunk_count;
  doc_id = ex.id;
out:
  if (in_txn) sq_doc_rollback(s);
  pthread_mutex_unlock(&s->lock);
  if (!rc) {
    out->status = status;
    out->chunk_count = chunk_count;
    out->document_rowid = doc_id;
  }
  return rc;
}

static ragd_err sq_batch_begin(void *ctx) {
  struct sq_store *s = ctx;
  ragd_err rc;
  if (!s) return RAGD_EINVAL;
  pthread_mutex_lock(&s->lock);
  if (s->batch) {
    rc = RAGD_EINVAL;
  } else {
    rc = sq_begin(s);
    s->batch = !rc;
    s->batch_broken = 0;
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

static ragd_err sq_batch_end(void *ctx, int commit) {
  struct sq_store *s = ctx;
  ragd_err rc = RAGD_OK;
  if (!s) return RAGD_EINVAL;
  pthread_mutex_lock(&s->lock);
  if (!s->batch) {
    rc = RAGD_EINVAL;
    goto out;
  }
  if (commit && (s->batch_broken || sqlite3_get_autocommit(s->db))) rc = RAGD_EIO;
  if (commit && !rc) rc = sq_fts_flush(s);
  if (commit && !rc) rc = sq_commit(s);
  if (!commit || rc) sq_rollback(s);
  s->batch = 0;
  s->batch_broken = 0;
  s->fts_npending = 0;
out:
  pthread_mutex_unlock(&s->lock);
  return rc;
}

/* Reads the SQ_DOC_COLUMNS of the current row. On error d holds what was
 * read so far (store_doc_dispose frees it). */
static ragd_err sq_read_doc(sqlite3_stmt *st, struct store_doc *d) {
  ragd_err rc = sq_col_dup(st, 0, &d->external_id, NULL);
  if (!rc) rc = sq_col_dup(st, 1, &d->title, NULL);
  if (!rc) rc = sq_col_dup(st, 2, &d->url, NULL);
  if (!rc) rc = sq_col_dup(st, 3, &d->metadata_json, NULL);
  if (!rc) rc = sq_col_dup(st, 4, &d->format, NULL);
  if (!rc) rc = sq_col_dup(st, 5, &d->content_hash, NULL);
  d->created_at = sqlite3_column_int64(st, 6);
  d->updated_at = sqlite3_column_int64(st, 7);
  d->chunk_count = (size_t)sqlite3_column_int64(st, 8);
  return rc;
}

static ragd_err sq_get_document(void *ctx, const char *external_id, struct store_doc *out) {
  struct sq_store *s = ctx;
  struct store_doc d;
  sqlite3_stmt *st;
  ragd_err rc;
  int src;

  if (!s || !out) return RAGD_EINVAL;
  rc = store_check_id(external_id, SQ_EXTERNAL_ID_MAX);
  if (rc == RAGD_EINVAL && external_id) return RAGD_ENOTFOUND; /* too long or empty */
  if (rc) return rc;
  memset(&d, 0, sizeof d);
  pthread_mutex_lock(&s->lock);
  st = s->stmts[SQ_DOC_GET];
  src = sq_bind_str(st, 1, external_id);
  if (!src) src = sqlite3_step(st);
  if (src == SQLITE_ROW) {
    rc = sq_read_doc(st, &d);
    if (!rc) rc = sq_col_dup(st, 9, &d.content, &d.content_len);
  } else if (src == SQLITE_DONE) {
    rc = RAGD_ENOTFOUND;
  } else {
    rc = sq_fail(s, src, "get document");
  }
  sq_release(st);
  pthread_mutex_unlock(&s->lock);
  if (rc) {
    store_doc_dispose(&d);
    return rc;
  }
  *out = d;
  return RAGD_OK;
}

static ragd_err sq_list_documents(void *ctx, const char *cursor, size_t limit,
                                  struct store_doc_list *out) {
  struct sq_store *s = ctx;
  struct store_doc_list list = {0};
  char *after = NULL;
  sqlite3_stmt *st = NULL;
  int locked = 0, src;
  ragd_err rc;

  if (!s || !out || limit < 1 || limit > SQ_LIST_LIMIT_MAX) return RAGD_EINVAL;
  if (cursor) {
    rc = sq_cursor_decode(cursor, &after);
    if (rc) return rc;
  }
  list.items = calloc(limit, sizeof *list.items);
  if (!list.items) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  pthread_mutex_lock(&s->lock);
  locked = 1;
  st = s->stmts[SQ_DOC_LIST];
  /* "" sorts before every external id (they are never empty). One row more
   * than the page tells whether another page follows. */
  src = sq_bind_str(st, 1, after ? after : "");
  if (!src) src = sqlite3_bind_int64(st, 2, (sqlite3_int64)limit + 1);
  for (;;) {
    if (src) break;
    src = sqlite3_step(st);
    if (src != SQLITE_ROW) break;
    if (list.count == limit) {
      list.next_cursor = sq_cursor_encode(list.items[limit - 1].external_id);
      rc = list.next_cursor ? RAGD_OK : RAGD_ENOMEM;
      src = SQLITE_DONE;
      goto out;
    }
    list.count++;
    rc = sq_read_doc(st, &list.items[list.count - 1]);
    if (rc) goto out;
    src = SQLITE_OK;
  }
  rc = src == SQLITE_DONE ? RAGD_OK : sq_fail(s, src, "list documents");
out:
  if (st) sq_release(st);
  if (locked) pthread_mutex_unlock(&s->lock);
  free(after);
  if (rc) {
    store_doc_list_dispose(&list);
    return rc;
  }
  *out = list;
  return RAGD_OK;
}

static ragd_err sq_delete_document(void *ctx, const char *external_id) {
  struct sq_store *s = ctx;
  sqlite3_stmt *st;
  int64_t doc_id = 0;
  int in_txn = 0, src;
  ragd_err rc;

  if (!s) return RAGD_EINVAL;
  rc = store_check_id(external_id, SQ_EXTERNAL_ID_MAX);
  if (rc == RAGD_EINVAL && external_id) return RAGD_ENOTFOUND;
  if (rc) return rc;
  pthread_mutex_lock(&s->lock);
  rc = sq_begin(s);
  if (rc) goto out;
  in_txn = 1;
  st = s->stmts[SQ_DOC_ID];
  src = sq_bind_str(st, 1, external_id);
  if (!src) src = sqlite3_step(st);
  if (src == SQLITE_ROW) doc_id = sqlite3_column_int64(st, 0);
  else if (src == SQLITE_DONE) rc = RAGD_ENOTFOUND;
  else rc = sq_fail(s, src, "look up document");
  sq_release(st);
  if (rc) goto out;
  rc = sq_doc_clear_chunks(s, doc_id);
  if (rc) goto out;
  st = s->stmts[SQ_DOC_DELETE];
  rc = sq_run(s, st, sqlite3_bind_int64(st, 1, doc_id), "delete document");
  if (rc) goto out;
  rc = sq_commit(s);
  if (rc) goto out;
  in_txn = 0;
out:
  if (in_txn) sq_rollback(s);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

/* ---- search ------------------------------------------------------------------------ */

/* One query term: its normalized bytes live in a shared pool (ptr is set
 * once the pool stops growing); [src_start, src_end) is where it came from in
 * the query; pos is its order of appearance. */
struct sq_term {
  size_t off;
  size_t len;
  size_t pos;
  size_t src_start;
  size_t src_end;
  const char *ptr;
};

struct sq_terms {
  struct buf pool;
  struct sq_term *items;
  size_t count;
  size_t cap;
  ragd_err rc;
};

static int sq_collect_term(void *ctx, const char *term, size_t term_len, size_t start,
                           size_t end) {
  struct sq_terms *t = ctx;
  if (term_len == 0 || end <= start) return 0;
  if (t->count == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 32;
    struct sq_term *grown = realloc(t->items, cap * sizeof *grown);
    if (!grown) {
      t->rc = RAGD_ENOMEM;
      return 1;
    }
    t->items = grown;
    t->cap = cap;
  }
  t->items[t->count].off = t->pool.len;
  t->items[t->count].len = term_len;
  t->items[t->count].pos = t->count;
  t->items[t->count].src_start = start;
  t->items[t->count].src_end = end;
  t->items[t->count].ptr = NULL;
  t->rc = buf_append(&t->pool, term, term_len);
  if (t->rc) return 1;
  t->count++;
  return 0;
}

/* By bytes, then by first appearance. */
static int sq_term_cmp_text(const void *a, const void *b) {
  const struct sq_term *x = a, *y = b;
  size_t n = x->len < y->len ? x->len : y->len;
  int c = memcmp(x->ptr, y->ptr, n);
  if (c) return c;
  if (x->len != y->len) return x->len < y->len ? -1 : 1;
  return (x->pos > y->pos) - (x->pos < y->pos);
}

static int sq_term_cmp_pos(const void *a, const void *b) {
  const struct sq_term *x = a, *y = b;
  return (x->pos > y->pos) - (x->pos < y->pos);
}

/* Turns a user's query into an FTS5 expression that can only mean "any of
 * these terms": every distinct term of text_tokenize, double-quoted (a quote
 * inside doubled), joined by OR. Nothing of the user's text is read as FTS5
 * syntax: NEAR, AND, *, ^, column filters and parentheses all become plain
 * quoted strings or vanish as punctuation. *nterms may be 0, and then expr is
 * empty.
 *
 * Terms are deduplicated by their normalized form, but what goes between the
 * quotes is the term's original span of the query: FTS5 runs every quoted
 * string through the tokenizer again, and the original bytes are guaranteed
 * to come out exactly as they do for indexed text, while a normalized term
 * need not (NFKC may introduce separators, e.g. U+2044 in the form of ½). */
static ragd_err sq_match_expr(const char *query, struct buf *expr, size_t *nterms) {
  struct sq_terms t;
  size_t len = strlen(query), i, j, kept = 0;
  ragd_err rc;

  memset(&t, 0, sizeof t);
  buf_init(&t.pool, 0);
  *nterms = 0;
  if (!sq_utf8_ok(query, len)) return RAGD_EUTF8;
  rc = text_tokenize(query, len, sq_collect_term, &t);
  if (rc == RAGD_ECANCELLED && t.rc) rc = t.rc;
  if (rc) goto out;
  for (i = 0; i < t.count; i++) t.items[i].ptr = t.pool.data + t.items[i].off;
  if (t.count > 1) {
    qsort(t.items, t.count, sizeof *t.items, sq_term_cmp_text);
    for (i = 0; i < t.count; i++) {
      if (kept && t.items[kept - 1].len == t.items[i].len &&
          memcmp(t.items[kept - 1].ptr, t.items[i].ptr, t.items[i].len) == 0)
        continue;
      t.items[kept++] = t.items[i];
    }
    qsort(t.items, kept, sizeof *t.items, sq_term_cmp_pos);
  } else {
    kept = t.count;
  }
  if (kept > SQ_QUERY_TERMS_MAX) kept = SQ_QUERY_TERMS_MAX;
  for (i = 0; i < kept && !rc; i++) {
    const struct sq_term *term = &t.items[i];
    if (i) rc = buf_append_str(expr, " OR ");
    if (!rc) rc = buf_append_char(expr, '"');
    for (j = term->src_start; j < term->src_end && j < len && !rc; j++) {
      if (query[j] == '"') rc = buf_append_char(expr, '"');
      if (!rc) rc = buf_append_char(expr, query[j]);
    }
    if (!rc) rc = buf_append_char(expr, '"');
  }
  if (!rc) *nterms = kept;
out:
  free(t.items);
  buf_dispose(&t.pool);
  return rc;
}

/* Appends one zeroed hit to l, growing it; the new hit is l->items[l->count-1]
 * so store_hit_list_dispose frees whatever gets filled in. */
static ragd_err sq_hit_push(struct store_hit_list *l, size_t *cap) {
  if (l->count == *cap) {
    size_t grown_cap = *cap ? *cap * 2 : 16;
    struct store_hit *grown = realloc(l->items, grown_cap * sizeof *grown);
    if (!grown) return RAGD_ENOMEM;
    l->items = grown;
    *cap = grown_cap;
  }
  memset(&l->items[l->count], 0, sizeof l->items[0]);
  l->count++;
  return RAGD_OK;
}

static ragd_err sq_read_hit(sqlite3_stmt *st, struct store_hit *h) {
  struct buf id;
  ragd_err rc = sq_col_dup(st, 0, &h->document_id, NULL);
  if (!rc) rc = sq_col_dup(st, 1, &h->title, NULL);
  if (!rc) rc = sq_col_dup(st, 2, &h->url, NULL);
  if (!rc) rc = sq_col_dup(st, 3, &h->heading_path, NULL);
  if (!rc) rc = sq_col_dup(st, 4, &h->text, NULL);
  if (rc) return rc;
  h->ordinal = (size_t)sqlite3_column_int64(st, 5);
  h->score = sqlite3_column_double(st, 6);
  h->chunk_rowid = sqlite3_column_int64(st, 7);
  h->document_rowid = sqlite3_column_int64(st, 8);
  buf_init(&id, 0);
  rc = buf_appendf(&id, "%s#%zu", h->document_id, h->ordinal);
  if (rc) return rc;
  h->chunk_id = buf_take(&id, NULL);
  return h->chunk_id ? RAGD_OK : RAGD_ENOMEM;
}

static ragd_err sq_search_bm25(void *ctx, const char *query, size_t k,
                               struct store_hit_list *out) {
  struct sq_store *s = ctx;
  struct store_hit_list hits = {0};
  struct buf expr;
  sqlite3_stmt *st = NULL;
  size_t nterms = 0, cap = 0;
  int locked = 0, src;
  ragd_err rc;

  if (!s || !query || !out) return RAGD_EINVAL;
  buf_init(&expr, 0);
  rc = sq_match_expr(query, &expr, &nterms);
  if (rc || nterms == 0 || k == 0) goto out;
  pthread_mutex_lock(&s->lock);
  locked = 1;
  st = s->stmts[SQ_SEARCH];
  src = sq_bind_text(st, 1, expr.data, expr.len);
  if (!src) src = sqlite3_bind_int64(st, 2, sq_clamp_i64(k));
  for (;;) {
    if (src) break;
    src = sqlite3_step(st);
    if (src != SQLITE_ROW) break;
    rc = sq_hit_push(&hits, &cap);
    if (!rc) rc = sq_read_hit(st, &hits.items[hits.count - 1]);
    if (rc) goto out;
    src = SQLITE_OK;
  }
  if (src != SQLITE_DONE) rc = sq_fail(s, src, "search");
out:
  if (st) sq_release(st);
  if (locked) pthread_mutex_unlock(&s->lock);
  buf_dispose(&expr);
  if (rc) {
    store_hit_list_dispose(&hits);
    return rc;
  }
  *out = hits;
  return RAGD_OK;
}

/* ---- metadata filters ------------------------------------------------------------------ */

#define SQ_FILTER_KEY_MAX 64
#define SQ_FILTER_KEYS_MAX 16
#define SQ_FILTER_VALUES_MAX 100

/* A parsed filter: SQL clauses on a documents alias and the values they
 * bind, in order. paths[i] is owned; values are borrowed from root. */
struct sq_filter {
  json_t *root;
  struct buf sql;
  size_t nkeys;
  char *paths[SQ_FILTER_KEYS_MAX];
  json_t **values;
  size_t *value_key; /* values[j] belongs to paths[value_key[j]] */
  size_t nvalues;
};

static void sq_filter_dispose(struct sq_filter *f) {
  for (size_t i = 0; i < f->nkeys; i++) free(f->paths[i]);
  free(f->values);
  free(f->value_key);
  buf_dispose(&f->sql);
  json_decref(f->root);
  memset(f, 0, sizeof *f);
}

static int sq_filter_scalar_ok(const json_t *v) {
  if (json_is_string(v)) return strlen(json_string_value(v)) == json_string_length(v);
  return json_is_number(v) || json_is_boolean(v);
}

static ragd_err sq_filter_key_ok(const char *key) {
  size_t n = strlen(key);
  if (n == 0 || n > SQ_FILTER_KEY_MAX || !sq_utf8_ok(key, n)) return RAGD_EINVAL;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)key[i];
    if (c < 0x20 || c == '"' || c == '\\' || c == 0x7f) return RAGD_EINVAL;
  }
  return RAGD_OK;
}

/* One value's test on a json_each row: its JSON type, then its value. */
static ragd_err sq_filter_value_sql(struct buf *sql, const json_t *v, int *param) {
  if (json_is_true(v)) return buf_append_str(sql, "type = 'true'");
  if (json_is_false(v)) return buf_append_str(sql, "type = 'false'");
  if (json_is_string(v)) return buf_appendf(sql, "(type = 'text' AND value = ?%d)", (*param)++);
  return buf_appendf(sql, "(type IN ('integer', 'real') AND value = ?%d)", (*param)++);
}

static ragd_err sq_filter_push(struct sq_filter *f, json_t *v, size_t key) {
  if (!sq_filter_scalar_ok(v)) return RAGD_EINVAL;
  f->values[f->nvalues] = v;
  f->value_key[f->nvalues] = key;
  f->nvalues++;
  return RAGD_OK;
}

/* Parses filters_json into clauses " AND EXISTS (SELECT 1 FROM json_each(
 * <alias>.metadata_json, ?path) WHERE <value tests>)", one per key, whose
 * parameters are numbered from first_param on (sq_filter_bind binds them).
 * An absent or empty filter leaves f->nkeys 0. */
static ragd_err sq_filter_build(const char *filters_json, const char *alias, int first_param,
                                struct sq_filter *f) {
  int param = first_param;
  const char *key;
  json_t *v;
  size_t cap = 0;
  ragd_err rc = RAGD_OK;

  memset(f, 0, sizeof *f);
  buf_init(&f->sql, 0);
  if (!filters_json || !filters_json[0]) return RAGD_OK;
  rc = json_parse_object(filters_json, strlen(filters_json), &f->root, NULL);
  if (rc) return RAGD_EINVAL;
  if (json_object_size(f->root) > SQ_FILTER_KEYS_MAX) return RAGD_EINVAL;
  json_object_foreach(f->root, key, v) {
    cap += json_is_array(v) ? json_array_size(v) : 1;
  }
  if (json_object_size(f->root) == 0) return RAGD_OK;
  f->values = calloc(cap + 1, sizeof *f->values);
  f->value_key = calloc(cap + 1, sizeof *f->value_key);
  if (!f->values || !f->value_key) return RAGD_ENOMEM;
  json_object_foreach(f->root, key, v) {
    struct buf path;
    size_t k = f->nkeys, first = f->nvalues, i;
    rc = sq_filter_key_ok(key);
    if (rc) return rc;
    buf_init(&path, 0);
    rc = buf_appendf(&path, "$.\"%s\"", key);
    if (rc) return rc;
    f->paths[k] = buf_take(&path, NULL);
    if (!f->paths[k]) return RAGD_ENOMEM;
    f->nkeys++;
    if (json_is_array(v)) {
      if (json_array_size(v) == 0 || json_array_size(v) > SQ_FILTER_VALUES_MAX) return RAGD_EINVAL;
      for (i = 0; i < json_array_size(v); i++) {
        rc = sq_filter_push(f, json_array_get(v, i), k);
        if (rc) return rc;
      }
    } else {
      rc = sq_filter_push(f, v, k);
      if (rc) return rc;
    }
    rc = buf_appendf(&f->sql, " AND EXISTS (SELECT 1 FROM json_each(%s.metadata_json, ?%d) WHERE ",
                     alias, param++);
    for (i = first; i < f->nvalues && !rc; i++) {
      if (i > first) rc = buf_append_str(&f->sql, " OR ");
      if (!rc) rc = sq_filter_value_sql(&f->sql, f->values[i], &param);
    }
    if (!rc) rc = buf_append_char(&f->sql, ')');
    if (rc) return rc;
  }
  return RAGD_OK;
}

/* Binds the filter's parameters from index first on, in clause order. */
static int sq_filter_bind(sqlite3_stmt *st, const struct sq_filter *f, int first) {
  int idx = first, src = SQLITE_OK;
  size_t j = 0;
  for (size_t k = 0; k < f->nkeys && !src; k++) {
    src = sq_bind_str(st, idx++, f->paths[k]);
    for (; j < f->nvalues && f->value_key[j] == k && !src; j++) {
      const json_t *v = f->values[j];
      if (json_is_boolean(v)) continue; /* tested by type alone */
      if (json_is_string(v))
        src = sq_bind_text(st, idx++, json_string_value(v), json_string_length(v));
      else if (json_is_integer(v))
        src = sqlite3_bind_int64(st, idx++, (sqlite3_int64)json_integer_value(v));
      else
        src = sqlite3_bind_double(st, idx++, json_real_value(v));
    }
  }
  return src;
}

/* Runs a prepared hit query to completion, appending to hits. */
static ragd_err sq_collect_hits(struct sq_store *s, sqlite3_stmt *st, int src,
                                struct store_hit_list *hits, size_t *cap, const char *what) {
  ragd_err rc;
  for (;;) {
    if (src) break;
    src = sqlite3_step(st);
    if (src != SQLITE_ROW) break;
    rc = sq_hit_push(hits, cap);
    if (!rc) rc = sq_read_hit(st, &hits->items[hits->count - 1]);
    if (rc) return rc;
    src = SQLITE_OK;
  }
  if (src != SQLITE_DONE) return sq_fail(s, src, what);
  return RAGD_OK;
}

static ragd_err sq_search_bm25_filtered(void *ctx, const char *query, size_t k,
                                        const char *filters_json, struct store_hit_list *out) {
  struct sq_store *s = ctx;
  struct store_hit_list hits = {0};
  struct sq_filter f;
  struct buf expr, sql;
  sqlite3_stmt *st = NULL;
  size_t nterms = 0, cap = 0;
  int locked = 0, src;
  ragd_err rc;

  if (!s || !query || !out) return RAGD_EINVAL;
  buf_init(&expr, 0);
  buf_init(&sql, 0);
  rc = sq_filter_build(filters_json, "d2", 3, &f);
  if (rc) goto out;
  if (f.nkeys == 0) {
    sq_filter_dispose(&f);
    return sq_search_bm25(ctx, query, k, out);
  }
  rc = sq_match_expr(query, &expr, &nterms);
  if (rc || nterms == 0 || k == 0) goto out;
  rc = buf_append_str(&sql, SQ_SEARCH_FILTERED_HEAD);
  if (!rc) rc = buf_append(&sql, f.sql.data, f.sql.len);
  if (!rc) rc = buf_append_str(&sql, SQ_SEARCH_FILTERED_TAIL);
  if (rc) goto out;
  pthread_mutex_lock(&s->lock);
  locked = 1;
  src = sqlite3_prepare_v2(s->db, sql.data, (int)sql.len, &st, NULL);
  if (src) {
    rc = sq_fail(s, src, "prepare filtered search");
    goto out;
  }
  src = sq_bind_text(st, 1, expr.data, expr.len);
  if (!src) src = sqlite3_bind_int64(st, 2, sq_clamp_i64(k));
  if (!src) src = sq_filter_bind(st, &f, 3);
  rc = sq_collect_hits(s, st, src, &hits, &cap, "filtered search");
out:
  sqlite3_finalize(st);
  if (locked) pthread_mutex_unlock(&s->lock);
  sq_filter_dispose(&f);
  buf_dispose(&expr);
  buf_dispose(&sql);
  if (rc) {
    store_hit_list_dispose(&hits);
    return rc;
  }
  *out = hits;
  return RAGD_OK;
}

static ragd_err sq_filter_documents(void *ctx, const char *filters_json, int64_t **rowids,
                                   size_t *count) {
  struct sq_store *s = ctx;
  struct sq_filter f;
  struct buf sql;
  sqlite3_stmt *st = NULL;
  int64_t *ids = NULL;
  size_t n = 0, cap = 0;
  int locked = 0, src;
  ragd_err rc;

  if (!s || !rowids || !count) return RAGD_EINVAL;
  *rowids = NULL;
  *count = 0;
  buf_init(&sql, 0);
  rc = sq_filter_build(filters_json, "d", 1, &f);
  if (!rc) rc = buf_append_str(&sql, "SELECT d.id FROM documents d WHERE 1");
  if (!rc && f.nkeys) rc = buf_append(&sql, f.sql.data, f.sql.len);
  if (!rc) rc = buf_append_str(&sql, " ORDER BY d.id");
  if (rc) goto out;
  pthread_mutex_lock(&s->lock);
  locked = 1;
  src = sqlite3_prepare_v2(s->db, sql.data, (int)sql.len, &st, NULL);
  if (src) {
    rc = sq_fail(s, src, "prepare document filter");
    goto out;
  }
  src = sq_filter_bind(st, &f, 1);
  for (;;) {
    if (src) break;
    src = sqlite3_step(st);
    if (src != SQLITE_ROW) break;
    if (n == cap) {
      size_t grown_cap = cap ? cap * 2 : 64;
      int64_t *grown = realloc(ids, grown_cap * sizeof *grown);
      if (!grown) {
        rc = RAGD_ENOMEM;
        goto out;
      }
      ids = grown;
      cap = grown_cap;
    }
    ids[n++] = sqlite3_column_int64(st, 0);
    src = SQLITE_OK;
  }
  if (src != SQLITE_DONE) rc = sq_fail(s, src, "filter documents");
out:
  sqlite3_finalize(st);
  if (locked) pthread_mutex_unlock(&s->lock);
  sq_filter_dispose(&f);
  buf_dispose(&sql);
  if (rc) {
    free(ids);
    return rc;
  }
  *rowids = ids;
  *count = n;
  return RAGD_OK;
}

/* ---- vectors ---------------------------------------------------------------------------- */

static ragd_err sq_get_chunks(void *ctx, const int64_t *chunk_rowids, size_t n,
                              struct store_hit_list *out) {
  struct sq_store *s = ctx;
  struct store_hit_list hits = {0};
  sqlite3_stmt *st;
  size_t cap = 0, i;
  ragd_err rc = RAGD_OK;

  if (!s || !out || (n && !chunk_rowids)) return RAGD_EINVAL;
  pthread_mutex_lock(&s->lock);
  st = s->stmts[SQ_CHUNK_GET];
  for (i = 0; i < n && !rc; i++) {
    rc = sq_collect_hits(s, st, sqlite3_bind_int64(st, 1, chunk_rowids[i]), &hits, &cap,
                         "get chunk");
    sq_release(st);
  }
  pthread_mutex_unlock(&s->lock);
  if (rc) {
    store_hit_list_dispose(&hits);
    return rc;
  }
  *out = hits;
  return RAGD_OK;
}

static ragd_err sq_load_vectors(void *ctx, const char *model, size_t dim, store_vector_cb cb,
                                void *cb_ctx) {
  struct sq_store *s = ctx;
  sqlite3_stmt *st;
  size_t skipped = 0;
  ragd_err rc = RAGD_OK;
  float *v = NULL;
  int src;

  if (!s || !model || !cb || dim == 0) return RAGD_EINVAL;
  v = malloc(dim * sizeof *v);
  if (!v) return RAGD_ENOMEM;
  pthread_mutex_lock(&s->lock);
  st = s->stmts[SQ_VEC_LOAD];
  src = sq_bind_str(st, 1, model);
  if (!src) src = sqlite3_bind_int64(st, 2, sq_clamp_i64(dim));
  for (;;) {
    const void *blob;
    if (src) break;
    src = sqlite3_step(st);
    if (src != SQLITE_ROW) break;
    blob = sqlite3_column_blob(st, 2);
    src = SQLITE_OK;
    if (!blob || (size_t)sqlite3_column_bytes(st, 2) != dim * sizeof *v) {
      skipped++;
      continue;
    }
    memcpy(v, blob, dim * sizeof *v); /* blobs need not be aligned for float */
    if (cb(cb_ctx, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1), v, dim)) {
      rc = RAGD_ECANCELLED;
      src = SQLITE_DONE;
      break;
    }
  }
  if (src != SQLITE_DONE) rc = sq_fail(s, src, "load vectors");
  sq_release(st);
  pthread_mutex_unlock(&s->lock);
  if (skipped) log_warn("store: %zu vectors of %s had the wrong size and were skipped", skipped, model);
  free(v);
  return rc;
}

static ragd_err sq_vector_models(void *ctx, struct store_vector_model_list *out) {
  struct sq_store *s = ctx;
  struct store_vector_model_list list = {0};
  sqlite3_stmt *st;
  size_t cap = 0;
  ragd_err rc = RAGD_OK;
  int src;

  if (!s || !out) return RAGD_EINVAL;
  pthread_mutex_lock(&s->lock);
  st = s->stmts[SQ_VEC_MODELS];
  for (;;) {
    struct store_vector_model *m;
    src = sqlite3_step(st);
    if (src != SQLITE_ROW) break;
    if (list.count == cap) {
      size_t grown_cap = cap ? cap * 2 : 4;
      struct store_vector_model *grown = realloc(list.items, grown_cap * sizeof *grown);
      if (!grown) {
        rc = RAGD_ENOMEM;
        break;
      }
      list.items = grown;
      cap = grown_cap;
    }
    m = &list.items[list.count++];
    memset(m, 0, sizeof *m);
    rc = sq_col_dup(st, 0, &m->model, NULL);
    if (rc) break;
    m->dimensions = (size_t)sqlite3_column_int64(st, 1);
    m->count = (size_t)sqlite3_column_int64(st, 2);
  }
  if (!rc && src != SQLITE_DONE) rc = sq_fail(s, src, "list vector models");
  sq_release(st);
  pthread_mutex_unlock(&s->lock);
  if (rc) {
    store_vector_model_list_dispose(&list);
    return rc;
  }
  *out = list;
  return RAGD_OK;
}

static ragd_err sq_chunks_without_vectors(void *ctx, const char *model, size_t dim,
                                          int64_t after_rowid, size_t limit,
                                          struct store_chunk_text_list *out) {
  struct sq_store *s = ctx;
  struct store_chunk_text_list list = {0};
  sqlite3_stmt *st;
  ragd_err rc = RAGD_OK;
  int src;

  if (!s || !model || !out || limit == 0 || limit > 100000) return RAGD_EINVAL;
  list.items = calloc(limit, sizeof *list.items);
  if (!list.items) return RAGD_ENOMEM;
  pthread_mutex_lock(&s->lock);
  st = s->stmts[SQ_CHUNKS_NO_VEC];
  src = sq_bind_str(st, 1, model);
  if (!src) src = sqlite3_bind_int64(st, 2, sq_clamp_i64(dim));
  if (!src) src = sqlite3_bind_int64(st, 3, after_rowid);
  if (!src) src = sqlite3_bind_int64(st, 4, sq_clamp_i64(limit));
  for (;;) {
    struct store_chunk_text *c;
    if (src) break;
    src = sqlite3_step(st);
    if (src != SQLITE_ROW) break;
    c = &list.items[list.count++];
    c->chunk_rowid = sqlite3_column_int64(st, 0);
    c->document_rowid = sqlite3_column_int64(st, 1);
    rc = sq_col_dup(st, 2, &c->title, NULL);
    if (!rc) rc = sq_col_dup(st, 3, &c->heading_path, NULL);
    if (!rc) rc = sq_col_dup(st, 4, &c->text, NULL);
    if (rc) break;
    src = SQLITE_OK;
  }
  if (!rc && src != SQLITE_DONE) rc = sq_fail(s, src, "list chunks to embed");
  sq_release(st);
  pthread_mutex_unlock(&s->lock);
  if (rc) {
    store_chunk_text_list_dispose(&list);
    return rc;
  }
  *out = list;
  return RAGD_OK;
}

static ragd_err sq_put_vectors(void *ctx, const char *model, size_t dim,
                               const int64_t *chunk_rowids, const float *vectors, size_t n) {
  struct sq_store *s = ctx;
  int in_txn = 0;
  ragd_err rc;
  size_t i;

  if (!s || !model || !model[0] || dim == 0 || (n && (!chunk_rowids || !vectors)))
    return RAGD_EINVAL;
  if (n == 0) return RAGD_OK;
  pthread_mutex_lock(&s->lock);
  rc = sq_begin(s);
  if (rc) goto out;
  in_txn = 1;
  for (i = 0; i < n && !rc; i++)
    rc = sq_vector_insert(s, chunk_rowids[i], model, dim, vectors + i * dim);
  if (rc) goto out;
  rc = sq_commit(s);
  if (!rc) in_txn = 0;
out:
  if (in_txn) sq_rollback(s);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

static ragd_err sq_delete_other_vectors(void *ctx, const char *model, size_t dim,
                                        size_t *deleted) {
  struct sq_store *s = ctx;
  sqlite3_stmt *st;
  ragd_err rc;
  int src;
  if (!s || !model) return RAGD_EINVAL;
  pthread_mutex_lock(&s->lock);
  st = s->stmts[SQ_VEC_DELETE_OTHER];
  src = sq_bind_str(st, 1, model);
  if (!src) src = sqlite3_bind_int64(st, 2, sq_clamp_i64(dim));
  rc = sq_run(s, st, src, "delete other vectors");
  if (!rc && deleted) *deleted = (size_t)sqlite3_changes(s->db);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

static ragd_err sq_probe_document(void *ctx, const struct store_doc_in *doc, int *unchanged) {
  struct sq_store *s = ctx;
  struct sq_doc_fields f;
  struct sq_existing ex;
  char hash[65];
  ragd_err rc;

  if (!s || !doc || !unchanged) return RAGD_EINVAL;
  *unchanged = 0;
  rc = sq_doc_fields_init(doc, &f);
  /* The probe comes before the vectors exist: only their model matters. */
  if (rc == RAGD_EINVAL && doc->vector_model && !doc->vectors) {
    struct store_doc_in copy = *doc;
    copy.vector_model = NULL;
    rc = sq_doc_fields_init(&copy, &f);
    f.vector_model = doc->vector_model;
    f.vector_dim = doc->vector_dim;
  }
  if (rc) return rc;
  crypto_sha256_hex(f.content, f.content_len, hash);
  pthread_mutex_lock(&s->lock);
  rc = sq_doc_lookup(s, &f, hash, &ex);
  pthread_mutex_unlock(&s->lock);
  if (!rc) *unchanged = ex.found && ex.unchanged;
  return rc;
}

static ragd_err sq_rebuild_keyword_index(void *ctx) {
  struct sq_store *s = ctx;
  ragd_err rc;
  if (!s) return RAGD_EINVAL;
  pthread_mutex_lock(&s->lock);
  rc = sq_run(s, s->stmts[SQ_FTS_REBUILD], SQLITE_OK, "rebuild the BM25 index");
  pthread_mutex_unlock(&s->lock);
  return rc;
}

/* ---- conversations ------------------------------------------------------------------ */


static int sq_bind_count(sqlite3_stmt *st, int idx, long n) {
  return n < 0 ? sqlite3_bind_null(st, idx) : sqlite3_bind_int64(st, idx, n);
}

static ragd_err sq_put_message(void *ctx, const struct store_message_in *m) {
  struct sq_store *s = ctx;
  sqlite3_stmt *st;
  int64_t now;
  int in_txn = 0, src;
  ragd_err rc;

  if (!s) return RAGD_EINVAL;
  rc = store_validate_message(m);
  if (rc) return rc;
  now = m->created_at > 0 ? m->created_at : clock_wall_s();
  pthread_mutex_lock(&s->lock);
  rc = sq_begin(s);
  if (rc) goto out;
  in_txn = 1;
  st = s->stmts[SQ_CONV_TOUCH];
  src = sq_bind_str(st, 1, m->conversation_id);
  if (!src) src = sqlite3_bind_int64(st, 2, now);
  rc = sq_run(s, st, src, "touch conversation");
  if (rc) goto out;
  st = s->stmts[SQ_MSG_PUT];
  src = sq_bind_str(st, 1, m->conversation_id);
  if (!src) src = sq_bind_str(st, 2, m->role);
  if (!src) src = sq_bind_str(st, 3, m->content);
  if (!src) src = sqlite3_bind_int64(st, 4, now);
  if (!src) src = sq_bind_str(st, 5, m->message_id);
  if (!src) src = sq_bind_str(st, 6, m->retrieval_query);
  if (!src) src = sq_bind_str(st, 7, m->sources_json ? m->sources_json : "[]");
  if (!src) src = sq_bind_str(st, 8, m->cited_json ? m->cited_json : "[]");
  if (!src) src = sq_bind_str(st, 9, m->provider);
  if (!src) src = sq_bind_str(st, 10, m->model);
  if (!src) src = sq_bind_str(st, 11, m->finish_reason);
  if (!src) src = sq_bind_count(st, 12, m->tokens);
  if (!src) src = sq_bind_count(st, 13, m->prompt_tokens);
  if (!src) src = sqlite3_step(st);
  if ((src & 0xff) == SQLITE_CONSTRAINT) {
    rc = RAGD_EINVAL; /* the message id is taken */
  } else if (src != SQLITE_DONE) {
    rc = sq_fail(s, src, "insert message");
  }
  sq_release(st);
  if (rc) goto out;
  rc = sq_commit(s);
  if (rc) goto out;
  in_txn = 0;
out:
  if (in_txn) sq_rollback(s);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

static ragd_err sq_append_message(void *ctx, const char *conversation_id, const char *role,
                                  const char *content) {
  struct store_message_in m;
  char id[4 + 24 + 1];
  memset(&m, 0, sizeof m);
  memcpy(id, "msg_", 4);
  if (crypto_random_hex(id + 4, 12) != 0) return RAGD_EIO;
  m.conversation_id = conversation_id;
  m.message_id = id;
  m.role = role;
  m.content = content;
  m.tokens = -1;
  m.prompt_tokens = -1;
  return sq_put_message(ctx, &m);
}

static ragd_err sq_list_messages(void *ctx, const char *conversation_id, size_t limit,
                                 struct store_message_list *out) {
  struct sq_store *s = ctx;
  struct store_message_list list = {0};
  sqlite3_stmt *st = NULL;
  size_t cap = 0;
  int locked = 0, src;
  ragd_err rc = RAGD_OK;

  if (!s || !conversation_id || !out) return RAGD_EINVAL;
  if (limit == 0) goto out;
  pthread_mutex_lock(&s->lock);
  locked = 1;
  st = s->stmts[SQ_MSG_LIST];
  src = sq_bind_str(st, 1, conversation_id);
  if (!src) src = sqlite3_bind_int64(st, 2, sq_clamp_i64(limit));
  for (;;) {
    struct store_message *m;
    if (src) break;
    src = sqlite3_step(st);
    if (src != SQLITE_ROW) break;
    if (list.count == cap) {
      size_t grown_cap = cap ? cap * 2 : 16;
      struct store_message *grown = realloc(list.items, grown_cap * sizeof *grown);
      if (!grown) {
        rc = RAGD_ENOMEM;
        goto out;
      }
      list.items = grown;
      cap = grown_cap;
    }
    m = &list.items[list.count++];
    memset(m, 0, sizeof *m);
    rc = sq_col_dup(st, 0, &m->role, NULL);
    if (!rc) rc = sq_col_dup(st, 1, &m->content, NULL);
    if (!rc) rc = sq_col_dup(st, 3, &m->id, NULL);
    if (!rc) rc = sq_col_dup(st, 4, &m->retrieval_query, NULL);
    if (rc) goto out;
    m->created_at = sqlite3_column_int64(st, 2);
    m->tokens = -1;
    m->prompt_tokens = -1;
    src = SQLITE_OK;
  }
  if (src != SQLITE_DONE) rc = sq_fail(s, src, "list messages");
out:
  if (st) sq_release(st);
  if (locked) pthread_mutex_unlock(&s->lock);
  if (rc) {
    store_message_list_dispose(&list);
    return rc;
  }
  *out = list;
  return RAGD_OK;
}

/* ---- transcripts, retention, feedback ------------------------------------------------- */

/* Copies a nullable text column: NULL stays NULL. */
static ragd_err sq_col_dup_opt(sqlite3_stmt *st, int col, char **out) {
  if (sqlite3_column_type(st, col) == SQLITE_NULL) {
    *out = NULL;
    return RAGD_OK;
  }
  return sq_col_dup(st, col, out, NULL);
}

static long sq_col_count(sqlite3_stmt *st, int col) {
  if (sqlite3_column_type(st, col) == SQLITE_NULL) return -1;
  return (long)sqlite3_column_int64(st, col);
}

/* One row of SQ_CONV_MESSAGES into *m (zeroed first). */
static ragd_err sq_read_message(sqlite3_stmt *st, struct store_message *m) {
  ragd_err rc;
  memset(m, 0, sizeof *m);
  rc = sq_col_dup(st, 0, &m->role, NULL);
  if (!rc) rc = sq_col_dup(st, 1, &m->content, NULL);
  if (!rc) rc = sq_col_dup(st, 3, &m->id, NULL);
  if (!rc) rc = sq_col_dup(st, 4, &m->retrieval_query, NULL);
  if (!rc) rc = sq_col_dup(st, 5, &m->sources_json, NULL);
  if (!rc) rc = sq_col_dup(st, 6, &m->cited_json, NULL);
  if (!rc) rc = sq_col_dup(st, 7, &m->provider, NULL);
  if (!rc) rc = sq_col_dup(st, 8, &m->model, NULL);
  if (!rc) rc = sq_col_dup(st, 9, &m->finish_reason, NULL);
  if (!rc) rc = sq_col_dup_opt(st, 12, &m->feedback_rating);
  if (!rc) rc = sq_col_dup_opt(st, 13, &m->feedback_comment);
  m->created_at = sqlite3_column_int64(st, 2);
  m->tokens = sq_col_count(st, 10);
  m->prompt_tokens = sq_col_count(st, 11);
  return rc;
}

static ragd_err sq_get_conversation(void *ctx, const char *conversation_id,
                                    struct store_conversation *out) {
  struct sq_store *s = ctx;
  struct store_conversation conv;
  sqlite3_stmt *st = NULL;
  size_t cap = 0;
  int src;
  ragd_err rc;

  if (!s || !out) return RAGD_EINVAL;
  rc = store_check_id(conversation_id, STORE_CONVERSATION_ID_MAX);
  if (rc) return rc;
  memset(&conv, 0, sizeof conv);
  conv.id = strdup(conversation_id);
  if (!conv.id) return RAGD_ENOMEM;
  pthread_mutex_lock(&s->lock);
  /* One read transaction: the messages belong to the conversation row read. */
  rc = sq_exec(s, "BEGIN", "begin read");
  if (rc) goto out;
  st = s->stmts[SQ_CONV_GET];
  src = sq_bind_str(st, 1, conversation_id);
  if (!src) src = sqlite3_step(st);
  if (src == SQLITE_ROW) {
    conv.created_at = sqlite3_column_int64(st, 0);
    conv.updated_at = sqlite3_column_int64(st, 1);
  } else if (src == SQLITE_DONE) {
    rc = RAGD_ENOTFOUND;
  } else {
    rc = sq_fail(s, src, "get conversation");
  }
  sq_release(st);
  if (rc) goto out;
  st = s->stmts[SQ_CONV_MESSAGES];
  src = sq_bind_str(st, 1, conversation_id);
  while (!src) {
    src = sqlite3_step(st);
    if (src != SQLITE_ROW) break;
    if (conv.messages.count == cap) {
      size_t grown_cap = cap ? cap * 2 : 16;
      struct store_message *grown = realloc(conv.messages.items, grown_cap * sizeof *grown);
      if (!grown) {
        rc = RAGD_ENOMEM;
        break;
      }
      conv.messages.items = grown;
      cap = grown_cap;
    }
    rc = sq_read_message(st, &conv.messages.items[conv.messages.count++]);
    if (rc) break;
    src = SQLITE_OK;
  }
  if (!rc && src != SQLITE_DONE) rc = sq_fail(s, src, "list conversation");
  sq_release(st);
out:
  if (!sqlite3_get_autocommit(s->db)) (void)sq_exec(s, "COMMIT", "end read");
  pthread_mutex_unlock(&s->lock);
  if (rc) {
    store_conversation_dispose(&conv);
    return rc;
  }
  *out = conv;
  return RAGD_OK;
}

static ragd_err sq_delete_conversation(void *ctx, const char *conversation_id) {
  struct sq_store *s = ctx;
  sqlite3_stmt *st;
  ragd_err rc;
  if (!s) return RAGD_EINVAL;
  rc = store_check_id(conversation_id, STORE_CONVERSATION_ID_MAX);
  if (rc) return rc;
  pthread_mutex_lock(&s->lock);
  st = s->stmts[SQ_CONV_DELETE];
  /* messages and their feedback go by cascade, in the statement's own
   * transaction */
  rc = sq_run(s, st, sq_bind_str(st, 1, conversation_id), "delete conversation");
  if (!rc && sqlite3_changes(s->db) == 0) rc = RAGD_ENOTFOUND;
  pthread_mutex_unlock(&s->lock);
  return rc;
}

static ragd_err sq_delete_conversations_before(void *ctx, int64_t before, size_t *deleted) {
  struct sq_store *s = ctx;
  sqlite3_stmt *st;
  ragd_err rc;
  if (!s) return RAGD_EINVAL;
  pthread_mutex_lock(&s->lock);
  st = s->stmts[SQ_CONV_EXPIRE];
  rc = sq_run(s, st, sqlite3_bind_int64(st, 1, before), "expire conversations");
  if (deleted) *deleted = rc ? 0 : (size_t)sqlite3_changes(s->db);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

static ragd_err sq_put_feedback(void *ctx, const struct store_feedback_in *f, int *created) {
  struct sq_store *s = ctx;
  const char *comment;
  sqlite3_stmt *st;
  int64_t row = 0;
  int existed = 0, in_txn = 0, src;
  ragd_err rc;

  if (!s) return RAGD_EINVAL;
  rc = store_validate_feedback(f);
  if (rc) return rc;
  comment = f->comment ? f->comment : "";
  pthread_mutex_lock(&s->lock);
  rc = sq_begin(s);
  if (rc) goto out;
  in_txn = 1;
  st = s->stmts[SQ_FB_TARGET];
  src = sq_bind_str(st, 1, f->conversation_id);
  if (!src) src = sq_bind_str(st, 2, f->message_id);
  if (!src) src = sqlite3_step(st);
  if (src == SQLITE_ROW) {
    row = sqlite3_column_int64(st, 0);
    existed = sqlite3_column_int(st, 1);
  } else if (src == SQLITE_DONE) {
    rc = RAGD_ENOTFOUND;
  } else {
    rc = sq_fail(s, src, "find rated message");
  }
  sq_release(st);
  if (rc) goto out;
  st = s->stmts[SQ_FB_PUT];
  src = sqlite3_bind_int64(st, 1, row);
  if (!src) src = sq_bind_str(st, 2, f->rating);
  if (!src) src = sq_bind_str(st, 3, comment);
  if (!src) src = sqlite3_bind_int64(st, 4, clock_wall_s());
  rc = sq_run(s, st, src, "store feedback");
  if (rc) goto out;
  rc = sq_commit(s);
  if (rc) goto out;
  in_txn = 0;
  if (created) *created = !existed;
out:
  if (in_txn) sq_rollback(s);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

static const char *sq_col_text(sqlite3_stmt *st, int col) {
  const unsigned char *p = sqlite3_column_text(st, col);
  return p ? (const char *)p : "";
}

static ragd_err sq_list_feedback(void *ctx, int64_t since, store_feedback_cb cb, void *cb_ctx) {
  struct sq_store *s = ctx;
  sqlite3_stmt *st;
  ragd_err rc = RAGD_OK;
  int src;
  if (!s || !cb) return RAGD_EINVAL;
  pthread_mutex_lock(&s->lock);
  st = s->stmts[SQ_FB_LIST];
  src = sqlite3_bind_int64(st, 1, since);
  while (!src) {
    struct store_feedback_row row;
    src = sqlite3_step(st);
    if (src != SQLITE_ROW) break;
    row.conversation_id = sq_col_text(st, 0);
    row.message_id = sq_col_text(st, 1);
    row.rating = sq_col_text(st, 2);
    row.comment = sq_col_text(st, 3);
    row.created_at = sqlite3_column_int64(st, 4);
    row.updated_at = sqlite3_column_int64(st, 5);
    row.question = sq_col_text(st, 6);
    row.answer = sq_col_text(st, 7);
    row.provider = sq_col_text(st, 8);
    row.model = sq_col_text(st, 9);
    row.sources_json = sq_col_text(st, 10);
    row.cited_json = sq_col_text(st, 11);
    if (cb(cb_ctx, &row)) {
      rc = RAGD_ECANCELLED;
      break;
    }
    src = SQLITE_OK;
  }
  if (!rc && src != SQLITE_DONE) rc = sq_fail(s, src, "list feedback");
  sq_release(st);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

/* ---- health ---------------------------------------------------------------------------- */

/* Steps the prepared single-row statement stmts[which] under the lock and
 * copies its first ncols integer columns into cols; an error (no row
 * included) is reported as "what". */
static ragd_err sq_one_row(struct sq_store *s, enum sq_stmt_id which, const char *what, int64_t *cols,
                           int ncols) {
  sqlite3_stmt *st;
  ragd_err rc = RAGD_OK;
  int src, i;
  pthread_mutex_lock(&s->lock);
  st = s->stmts[which];
  src = sqlite3_step(st);
  if (src == SQLITE_ROW)
    for (i = 0; i < ncols; i++) cols[i] = sqlite3_column_int64(st, i);
  else
    rc = sq_fail(s, src, what);
  sq_release(st);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

static ragd_err sq_stats(void *ctx, struct store_stats *out) {
  int64_t v[2] = {0, 0};
  ragd_err rc;
  if (!ctx || !out) return RAGD_EINVAL;
  rc = sq_one_row(ctx, SQ_STATS, "stats", v, 2);
  if (rc) return rc;
  out->documents = (size_t)v[0];
  out->chunks = (size_t)v[1];
  return RAGD_OK;
}

static ragd_err sq_ping(void *ctx) {
  if (!ctx) return RAGD_EINVAL;
  return sq_one_row(ctx, SQ_PING, "ping", NULL, 0);
}

static ragd_err sq_data_version(void *ctx, uint64_t *out) {
  int64_t v = 0;
  ragd_err rc;
  if (!ctx || !out) return RAGD_EINVAL;
  rc = sq_one_row(ctx, SQ_DATA_VERSION, "data_version", &v, 1);
  if (!rc) *out = (uint64_t)v;
  return rc;
}

/* ---- API keys ------------------------------------------------------------------- */

#define SQ_KEY_COLUMNS "public_id, name, scope, key_hash, rpm, streams, created_at, revoked_at"


static ragd_err sq_key_read(sqlite3_stmt *st, struct store_key *k) {
  ragd_err rc;
  memset(k, 0, sizeof *k);
  rc = sq_col_dup(st, 0, &k->id, NULL);
  if (!rc) rc = sq_col_dup(st, 1, &k->name, NULL);
  if (!rc) rc = sq_col_dup(st, 2, &k->scope, NULL);
  if (!rc) rc = sq_col_dup(st, 3, &k->hash, NULL);
  k->rpm = (long)sqlite3_column_int64(st, 4);
  k->streams = (long)sqlite3_column_int64(st, 5);
  k->created_at = sqlite3_column_int64(st, 6);
  k->revoked_at = sqlite3_column_int64(st, 7);
  if (rc) store_key_dispose(k);
  return rc;
}

static ragd_err sq_key_create(void *ctx, const struct store_key *key) {
  struct sq_store *s = ctx;
  sqlite3_stmt *st = NULL;
  ragd_err rc = RAGD_OK;
  int src;
  if (!s || store_validate_key(key)) return RAGD_EINVAL;
  pthread_mutex_lock(&s->lock);
  src = sqlite3_prepare_v2(s->db,
                           "INSERT INTO api_keys (public_id, name, scope, key_hash, rpm, streams,"
                           " created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                           -1, &st, NULL);
  if (src != SQLITE_OK) {
    rc = sq_fail(s, src, "prepare key insert");
    goto out;
  }
  src = sq_bind_str(st, 1, key->id);
  if (src == SQLITE_OK) src = sq_bind_str(st, 2, key->name ? key->name : "");
  if (src == SQLITE_OK) src = sq_bind_str(st, 3, key->scope);
  if (src == SQLITE_OK) src = sq_bind_str(st, 4, key->hash);
  if (src == SQLITE_OK) src = sqlite3_bind_int64(st, 5, key->rpm);
  if (src == SQLITE_OK) src = sqlite3_bind_int64(st, 6, key->streams);
  if (src == SQLITE_OK) src = sqlite3_bind_int64(st, 7, clock_wall_s());
  if (src == SQLITE_OK) src = sqlite3_step(st);
  if ((src & 0xff) == SQLITE_CONSTRAINT)
    rc = RAGD_EINVAL; /* the id or the hash exists: draw another key */
  else if (src != SQLITE_DONE)
    rc = sq_fail(s, src, "insert key");
out:
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

static ragd_err sq_key_lookup(void *ctx, const char *hash_hex, struct store_key *out) {
  struct sq_store *s = ctx;
  sqlite3_stmt *st = NULL;
  ragd_err rc = RAGD_OK;
  int src;
  if (!s || !out || !store_key_hash_ok(hash_hex)) return !out ? RAGD_EINVAL : RAGD_ENOTFOUND;
  pthread_mutex_lock(&s->lock);
  src = sqlite3_prepare_v2(s->db,
                           "SELECT " SQ_KEY_COLUMNS " FROM api_keys"
                           " WHERE key_hash = ?1 AND revoked_at IS NULL",
                           -1, &st, NULL);
  if (src != SQLITE_OK) {
    rc = sq_fail(s, src, "prepare key lookup");
    goto out;
  }
  src = sq_bind_str(st, 1, hash_hex);
  if (src == SQLITE_OK) src = sqlite3_step(st);
  if (src == SQLITE_ROW)
    rc = sq_key_read(st, out);
  else if (src == SQLITE_DONE)
    rc = RAGD_ENOTFOUND;
  else
    rc = sq_fail(s, src, "look up key");
out:
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

static ragd_err sq_key_list(void *ctx, struct store_key_list *out) {
  struct sq_store *s = ctx;
  sqlite3_stmt *st = NULL;
  ragd_err rc = RAGD_OK;
  size_t cap = 0;
  int src;
  if (!s || !out) return RAGD_EINVAL;
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&s->lock);
  src = sqlite3_prepare_v2(s->db, "SELECT " SQ_KEY_COLUMNS " FROM api_keys ORDER BY id", -1, &st,
                           NULL);
  if (src != SQLITE_OK) {
    rc = sq_fail(s, src, "prepare key list");
    goto out;
  }
  while ((src = sqlite3_step(st)) == SQLITE_ROW) {
    if (out->count == cap) {
      size_t ncap = cap ? cap * 2 : 8;
      struct store_key *p = realloc(out->items, ncap * sizeof *p);
      if (!p) {
        rc = RAGD_ENOMEM;
        goto out;
      }
      out->items = p;
      cap = ncap;
    }
    rc = sq_key_read(st, &out->items[out->count]);
    if (rc) goto out;
    out->count++;
  }
  if (src != SQLITE_DONE) rc = sq_fail(s, src, "list keys");
out:
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->lock);
  if (rc) store_key_list_dispose(out);
  return rc;
}

static ragd_err sq_key_revoke(void *ctx, const char *id) {
  struct sq_store *s = ctx;
  sqlite3_stmt *st = NULL;
  ragd_err rc = RAGD_OK;
  int src;
  if (!s || store_check_id(id, STORE_KEY_ID_MAX)) return RAGD_ENOTFOUND;
  pthread_mutex_lock(&s->lock);
  src = sqlite3_prepare_v2(s->db,
                           "UPDATE api_keys SET revoked_at = ?2"
                           " WHERE public_id = ?1 AND revoked_at IS NULL",
                           -1, &st, NULL);
  if (src != SQLITE_OK) {
    rc = sq_fail(s, src, "prepare key revoke");
    goto out;
  }
  src = sq_bind_str(st, 1, id);
  if (src == SQLITE_OK) src = sqlite3_bind_int64(st, 2, clock_wall_s());
  if (src == SQLITE_OK) src = sqlite3_step(st);
  if (src != SQLITE_DONE)
    rc = sq_fail(s, src, "revoke key");
  else if (sqlite3_changes(s->db) == 0)
    rc = RAGD_ENOTFOUND;
out:
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

static ragd_err sq_key_count(void *ctx, size_t *active) {
  struct sq_store *s = ctx;
  sqlite3_stmt *st = NULL;
  ragd_err rc = RAGD_OK;
  int src;
  if (!s || !active) return RAGD_EINVAL;
  pthread_mutex_lock(&s->lock);
  src = sqlite3_prepare_v2(s->db, "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL", -1,
                           &st, NULL);
  if (src == SQLITE_OK) src = sqlite3_step(st);
  if (src == SQLITE_ROW)
    *active = (size_t)sqlite3_column_int64(st, 0);
  else
    rc = sq_fail(s, src, "count keys");
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

/* ---- blobs ---------------------------------------------------------------------- */

/* Rare and large: prepared per call, as the key statements are. */
static ragd_err sq_put_blob(void *ctx, const char *name, const void *data, size_t len) {
  struct sq_store *s = ctx;
  sqlite3_stmt *st = NULL;
  ragd_err rc = RAGD_OK;
  int src;
  if (!s || !store_blob_name_ok(name) || (len && !data) || len > STORE_BLOB_MAX)
    return RAGD_EINVAL;
  pthread_mutex_lock(&s->lock);
  src = sqlite3_prepare_v2(s->db,
                           "INSERT INTO blobs(name, data, updated_at) VALUES (?1, ?2, ?3)"
                           " ON CONFLICT(name) DO UPDATE SET data = excluded.data,"
                           " updated_at = excluded.updated_at",
                           -1, &st, NULL);
  if (src == SQLITE_OK) src = sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  if (src == SQLITE_OK) src = sqlite3_bind_blob64(st, 2, len ? data : "", len, SQLITE_STATIC);
  if (src == SQLITE_OK) src = sqlite3_bind_int64(st, 3, clock_wall_s());
  if (src == SQLITE_OK) src = sqlite3_step(st);
  if (src != SQLITE_DONE) rc = sq_fail(s, src, "store a blob");
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

static ragd_err sq_get_blob(void *ctx, const char *name, void **data, size_t *len) {
  struct sq_store *s = ctx;
  sqlite3_stmt *st = NULL;
  ragd_err rc = RAGD_OK;
  int src;
  if (!s || !data || !len || !store_blob_name_ok(name)) return RAGD_EINVAL;
  *data = NULL;
  *len = 0;
  pthread_mutex_lock(&s->lock);
  src = sqlite3_prepare_v2(s->db, "SELECT data FROM blobs WHERE name = ?1", -1, &st, NULL);
  if (src == SQLITE_OK) src = sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  if (src == SQLITE_OK) src = sqlite3_step(st);
  if (src == SQLITE_ROW) {
    const void *p = sqlite3_column_blob(st, 0);
    size_t n = (size_t)sqlite3_column_bytes(st, 0);
    *data = malloc(n ? n : 1);
    if (!*data) {
      rc = RAGD_ENOMEM;
    } else {
      if (n) memcpy(*data, p, n);
      *len = n;
    }
  } else if (src == SQLITE_DONE) {
    rc = RAGD_ENOTFOUND;
  } else {
    rc = sq_fail(s, src, "read a blob");
  }
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

const struct store_ops store_sqlite_ops = {
    .version = STORE_OPS_VERSION,
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .put_document = sq_put_document,
    .get_document = sq_get_document,
    .list_documents = sq_list_documents,
    .delete_document = sq_delete_document,
    .search_bm25 = sq_search_bm25,
    .append_message = sq_append_message,
    .list_messages = sq_list_messages,
    .stats = sq_stats,
    .ping = sq_ping,
    .data_version = sq_data_version,
    .search_bm25_filtered = sq_search_bm25_filtered,
    .filter_documents = sq_filter_documents,
    .get_chunks = sq_get_chunks,
    .load_vectors = sq_load_vectors,
    .vector_models = sq_vector_models,
    .chunks_without_vectors = sq_chunks_without_vectors,
    .put_vectors = sq_put_vectors,
    .delete_other_vectors = sq_delete_other_vectors,
    .probe_document = sq_probe_document,
    .rebuild_keyword_index = sq_rebuild_keyword_index,
    .put_message = sq_put_message,
    .get_conversation = sq_get_conversation,
    .delete_conversation = sq_delete_conversation,
    .delete_conversations_before = sq_delete_conversations_before,
    .put_feedback = sq_put_feedback,
    .list_feedback = sq_list_feedback,
    .key_create = sq_key_create,
    .key_lookup = sq_key_lookup,
    .key_list = sq_key_list,
    .key_revoke = sq_key_revoke,
    .key_count = sq_key_count,
    .put_blob = sq_put_blob,
    .get_blob = sq_get_blob,
    .batch_begin = sq_batch_begin,
    .batch_end = sq_batch_end,
};
