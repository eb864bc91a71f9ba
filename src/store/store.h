/* store.h - where documents, chunks, vectors and conversations live.
 *
 * A store is an ops table plus its private context, chosen by name at start-up
 * (store_open). All SQL in ragd lives behind this interface.
 *
 * Threads: every op may be called from any thread; an implementation
 * serializes or pools internally. Strings handed in are borrowed for the call;
 * results are owned by the caller and released with the matching *_dispose. */
#ifndef RAGD_STORE_H
#define RAGD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "text/text.h"
#include "util/err.h"

#define STORE_OPS_VERSION 1
/* Largest blob put_blob takes: under both SQLite's default length limit and
 * PostgreSQL's 1 GB field limit. */
#define STORE_BLOB_MAX ((size_t)900 * 1024 * 1024)

/* A document as handed to put_document. external_id identifies it to users;
 * content is the raw document (kept for GET and for hashing); chunks were made
 * by the caller from it. */
struct store_doc_in {
  const char *external_id; /* required, 1..256 bytes of UTF-8 */
  const char *title;       /* may be "" */
  const char *url;         /* may be "" */
  const char *metadata_json; /* a JSON object as text; "{}" when none */
  const char *format;        /* "text" | "markdown" | "html" */
  const char *content;
  size_t content_len;
  const struct text_chunk_list *chunks;
  /* Optional vectors, one per chunk (chunks->count rows of vector_dim
   * floats), written in the same transaction under vector_model. NULL: the
   * document's chunks get no vectors. */
  const char *vector_model;
  size_t vector_dim;
  const float *vectors;
  /* Optional OUT: room for chunks->count row ids of the new chunks, filled
   * when the document was written (not when unchanged). */
  int64_t *chunk_rowids;
};

enum store_put_status { STORE_PUT_CREATED = 0, STORE_PUT_UPDATED = 1, STORE_PUT_UNCHANGED = 2 };

struct store_put_result {
  enum store_put_status status;
  size_t chunk_count;
  int64_t document_rowid; /* the store's internal id of the document */
};

struct store_doc {
  char *external_id;
  char *title;
  char *url;
  char *metadata_json;
  char *format;
  char *content_hash; /* hex SHA-256 of the content */
  char *content;      /* NULL in list results */
  size_t content_len;
  int64_t created_at; /* Unix seconds */
  int64_t updated_at;
  size_t chunk_count;
};

struct store_doc_list {
  struct store_doc *items;
  size_t count;
  char *next_cursor; /* NULL when this was the last page */
};

/* One retrieved chunk. chunk_id is "<external_id>#<ordinal>". score is
 * larger-is-better (for BM25 this is -bm25(), i.e. positive). */
struct store_hit {
  char *chunk_id;
  char *document_id; /* the external id */
  char *title;
  char *url;
  char *heading_path;
  char *text;
  size_t ordinal;
  double score;
  int64_t chunk_rowid;    /* the store's internal ids (vector index keys) */
  int64_t document_rowid;
  /* Filled by rag_search_ex: each ranker's 1-based rank (0: the ranker did
   * not return this chunk) and its own score. */
  size_t keyword_rank;
  double keyword_score;
  size_t vector_rank;
  double vector_score;
};

struct store_hit_list {
  struct store_hit *items;
  size_t count;
};

struct store_message {
  char *role; /* "user" | "assistant" */
  char *content;
  int64_t created_at;
  /* Filled by get_conversation; list_messages fills id and retrieval_query
   * (either may be NULL from a store that does not keep them). Strings are
   * NULL when absent; numbers -1 when unknown. */
  char *id;              /* "msg_..." */
  char *retrieval_query; /* user: the query retrieval ran for this question */
  char *sources_json;    /* assistant: JSON array of the sources it was given */
  char *cited_json;      /* assistant: JSON array of the source numbers it cited */
  char *provider;        /* assistant: generator that answered ("openai", ...) */
  char *model;
  char *finish_reason;   /* assistant: "stop", "length", ... */
  long tokens;           /* tokens of content (ragd's count) */
  long prompt_tokens;    /* assistant: tokens of the prompt that produced it */
  char *feedback_rating; /* assistant: "up" | "down" | NULL (no feedback) */
  char *feedback_comment;
};

struct store_message_list {
  struct store_message *items;
  size_t count;
};

/* A message handed to put_message. Strings are borrowed; NULL optional
 * strings are stored as "" ("[]" for the JSON arrays). */
struct store_message_in {
  const char *conversation_id; /* required; the conversation is created when new */
  const char *message_id;      /* required, unique in the store: 1..64 bytes of
                                  [A-Za-z0-9_-] (ragd makes "msg_" + 24 hex) */
  const char *role;            /* "user" | "assistant" */
  const char *content;         /* valid UTF-8 */
  const char *retrieval_query;
  const char *sources_json; /* a JSON array as text */
  const char *cited_json;   /* a JSON array as text */
  const char *provider;
  const char *model;
  const char *finish_reason;
  long tokens;        /* < 0: unknown */
  long prompt_tokens; /* < 0: unknown */
  int64_t created_at; /* Unix seconds; 0: now */
};

/* One whole conversation (get_conversation). */
struct store_conversation {
  char *id;
  int64_t created_at; /* Unix seconds */
  int64_t updated_at; /* the last message */
  struct store_message_list messages; /* oldest first, every field filled */
};

/* Feedback on one answer (put_feedback). */
struct store_feedback_in {
  const char *conversation_id;
  const char *message_id; /* an assistant message of that conversation */
  const char *rating;     /* "up" | "down" */
  const char *comment;    /* NULL: ""; valid UTF-8 */
};

/* One feedback row as list_feedback reports it, with the answer it rates
 * and the question before it. Every string is borrowed for the callback and
 * never NULL ("" when absent). */
struct store_feedback_row {
  const char *conversation_id;
  const char *message_id;
  const char *rating;
  const char *comment;
  int64_t created_at; /* first rated, Unix seconds */
  int64_t updated_at; /* last changed */
  const char *question; /* the user message before the answer */
  const char *answer;
  const char *provider;
  const char *model;
  const char *sources_json; /* the answer's sources, a JSON array */
  const char *cited_json;   /* the source numbers it cited, a JSON array */
};

/* Called once per row by list_feedback; return nonzero to stop
 * (list_feedback then returns RAGD_ECANCELLED). */
typedef int (*store_feedback_cb)(void *ctx, const struct store_feedback_row *row);

/* A set of vectors in the store: one model key and dimension. */
struct store_vector_model {
  char *model;
  size_t dimensions;
  size_t count;
};

struct store_vector_model_list {
  struct store_vector_model *items;
  size_t count;
};

/* Called once per stored vector by load_vectors; v is borrowed for the
 * call. Return nonzero to stop (load_vectors then returns RAGD_ECANCELLED). */
typedef int (*store_vector_cb)(void *ctx, int64_t chunk_rowid, int64_t document_rowid,
                               const float *v, size_t dim);

/* A chunk handed to the embedder by reindex. */
struct store_chunk_text {
  int64_t chunk_rowid;
  int64_t document_rowid;
  char *title;
  char *heading_path;
  char *text;
};

struct store_chunk_text_list {
  struct store_chunk_text *items;
  size_t count;
};

/* A nearest-vector query (search_vectors). Everything is borrowed for the
 * call. */
struct store_vector_query {
  const char *model;   /* the vector set: the model key vectors are stored under */
  size_t dim;          /* and their dimension */
  const float *vector; /* dim floats of unit length (an embedder's output) */
  size_t k;            /* the best k; 0: only prepare the set (see search_vectors) */
  const char *filters_json; /* as search_bm25_filtered; NULL or "{}": all documents */
  /* Pseudo-relevance feedback (Rocchio), as the in-memory path does it: when
   * feedback_weight > 0 and some of these chunks have a vector in the set,
   * the query is normalize(vector + feedback_weight * their mean vector). */
  const int64_t *feedback_rowids;
  size_t feedback_count;
  double feedback_weight;
};

struct store_stats {
  size_t documents;
  size_t chunks;
};

/* How a store is opened; store_options_default fills in the defaults. A
 * store ignores what does not apply to it (SQLite has no pool). */
struct store_options {
  size_t pool_size;          /* connections held open (postgres), 1..256 */
  long statement_timeout_ms; /* longest one SQL statement may run; 0: no limit */
  int migrate;               /* 1: create or upgrade the schema at open; 0: refuse
                                to open a database whose schema is older than
                                this ragd (RAGD_ECONFIG; run `ragd migrate`) */
};

void store_options_default(struct store_options *o /* OUT */);
/* An API key as the store keeps it: never the key itself, only its SHA-256.
 * In results every string is owned (store_key_dispose); handed to key_create
 * they are borrowed. */
struct store_key {
  char *id;    /* public, non-secret prefix of the key ("rk_" + 8 characters):
                  names the key in lists, logs and revoke; unique */
  char *name;  /* a label for people, "" when none; at most 200 bytes of UTF-8 */
  char *scope; /* "query" | "admin" */
  char *hash;  /* lower-case hex SHA-256 of the whole key: 64 characters; unique */
  long rpm;     /* requests per minute for this key; 0: the server's default */
  long streams; /* concurrent streams for this key; 0: the server's default */
  int64_t created_at; /* Unix seconds (set by key_create) */
  int64_t revoked_at; /* Unix seconds; 0 while active */
};

struct store_key_list {
  struct store_key *items;
  size_t count;
};

struct store_ops {
  int version; /* STORE_OPS_VERSION */
  const char *name;
  /* location: for sqlite a data directory (created if missing; the database is
   * DIR/ragd.db); for postgres a libpq connection URI ("postgres://..." or
   * "postgresql://..."). opts is never NULL. */
  ragd_err (*open)(const char *location, const struct store_options *opts,
                   void **ctx /* OUT */);
  void (*close)(void *ctx);
  /* Inserts or atomically replaces the document with this external id, its
   * chunks and their index entries, in one transaction. When the stored
   * content hash equals the new one (and title/url/metadata are unchanged)
   * nothing is written and status is STORE_PUT_UNCHANGED. */
  ragd_err (*put_document)(void *ctx, const struct store_doc_in *doc,
                           struct store_put_result *out /* OUT */);
  /* RAGD_ENOTFOUND when there is no such document. */
  ragd_err (*get_document)(void *ctx, const char *external_id, struct store_doc *out /* OUT */);
  /* Ordered by external id; cursor is NULL for the first page or a
   * next_cursor from a previous page. limit 1..1000. */
  ragd_err (*list_documents)(void *ctx, const char *cursor, size_t limit,
                             struct store_doc_list *out /* OUT */);
  /* Deletes document, chunks and index entries in one transaction;
   * RAGD_ENOTFOUND when there is no such document. */
  ragd_err (*delete_document)(void *ctx, const char *external_id);
  /* Full-text BM25 over chunk text (title and heading path count too). The
   * query is tokenized with text_tokenize and its terms OR-ed; it is never
   * interpreted as query syntax. Best first, at most k hits; zero hits is not
   * an error. */
  ragd_err (*search_bm25)(void *ctx, const char *query, size_t k,
                          struct store_hit_list *out /* OUT */);
  /* Creates the conversation when new, then appends one message (with a
   * fresh message id, see put_message). */
  ragd_err (*append_message)(void *ctx, const char *conversation_id, const char *role,
                             const char *content);
  /* Oldest first, at most limit of the most recent messages. */
  ragd_err (*list_messages)(void *ctx, const char *conversation_id, size_t limit,
                            struct store_message_list *out /* OUT */);
  ragd_err (*stats)(void *ctx, struct store_stats *out /* OUT */);
  /* Cheap liveness check (e.g. SELECT 1). */
  ragd_err (*ping)(void *ctx);

  /* ---- hybrid retrieval ---- */

  /* search_bm25 restricted to documents whose metadata matches filters_json
   * (NULL or "{}": all), the filter applied before the top k is cut.
   * Filters are a JSON object of key -> value or key -> [values]: a document
   * matches when, for every key, its metadata value at that key (or any
   * element of it, when it is an array) equals the value or one of the
   * values. Values are strings, numbers or booleans, compared with their
   * JSON type (1 never equals "1"). RAGD_EINVAL for malformed filters: not
   * an object, a key longer than 64 bytes or holding '"', '\\' or control
   * characters, a value of another type, an empty or over-long (> 100) list. */
  ragd_err (*search_bm25_filtered)(void *ctx, const char *query, size_t k,
                                   const char *filters_json,
                                   struct store_hit_list *out /* OUT */);
  /* Row ids of the documents matching filters_json (as above), ascending. */
  ragd_err (*filter_documents)(void *ctx, const char *filters_json, int64_t **rowids /* OUT */,
                               size_t *count /* OUT */);
  /* The chunks with these row ids as hits (score 0), in the given order;
   * ids that no longer exist are left out. */
  ragd_err (*get_chunks)(void *ctx, const int64_t *chunk_rowids, size_t n,
                         struct store_hit_list *out /* OUT */);
  /* Calls cb for every vector stored under model with dim dimensions. */
  ragd_err (*load_vectors)(void *ctx, const char *model, size_t dim, store_vector_cb cb,
                           void *cb_ctx);
  /* Which models and dimensions have vectors, and how many. */
  ragd_err (*vector_models)(void *ctx, struct store_vector_model_list *out /* OUT */);
  /* Up to limit chunks with row id > after_rowid that have no vector under
   * (model, dim), ascending by row id. */
  ragd_err (*chunks_without_vectors)(void *ctx, const char *model, size_t dim,
                                     int64_t after_rowid, size_t limit,
                                     struct store_chunk_text_list *out /* OUT */);
  /* Writes n vectors (replacing any under the same model) in one
   * transaction; rowids of chunks that are gone are skipped. */
  ragd_err (*put_vectors)(void *ctx, const char *model, size_t dim, const int64_t *chunk_rowids,
                          const float *vectors, size_t n);
  /* Deletes every vector not stored under (model, dim); *deleted counts. */
  ragd_err (*delete_other_vectors)(void *ctx, const char *model, size_t dim,
                                   size_t *deleted /* OUT, may be NULL */);
  /* Whether put_document(doc) would be STORE_PUT_UNCHANGED, and the
   * document already has a vector under (doc->vector_model, doc->vector_dim)
   * for every chunk when doc->vector_model is set: lets a caller skip
   * embedding a document that will not be written. */
  ragd_err (*probe_document)(void *ctx, const struct store_doc_in *doc, int *unchanged /* OUT */);
  /* Re-tokenizes every chunk into the BM25 index (after the tokenizer's
   * rules changed). */
  ragd_err (*rebuild_keyword_index)(void *ctx);

  /* ---- conversations: messages with ids, transcripts, retention, feedback ---- */

  /* Creates the conversation when new (its updated_at becomes the message's
   * time), then stores one message with all its fields. RAGD_EINVAL for a
   * missing or malformed id or role, RAGD_EUTF8 for text that is not UTF-8;
   * a message_id already stored is RAGD_EINVAL too. append_message is
   * put_message with a fresh id and no extra fields. */
  ragd_err (*put_message)(void *ctx, const struct store_message_in *m);
  /* The conversation with every message, oldest first, each with its
   * feedback. RAGD_ENOTFOUND when there is no such conversation. Release
   * with store_conversation_dispose. */
  ragd_err (*get_conversation)(void *ctx, const char *conversation_id,
                               struct store_conversation *out /* OUT */);
  /* Deletes the conversation, its messages and their feedback in one
   * transaction. RAGD_ENOTFOUND when there is no such conversation. */
  ragd_err (*delete_conversation)(void *ctx, const char *conversation_id);
  /* Retention: deletes (as delete_conversation) every conversation whose
   * last message is older than before (Unix seconds, updated_at < before).
   * *deleted counts the conversations. */
  ragd_err (*delete_conversations_before)(void *ctx, int64_t before,
                                          size_t *deleted /* OUT, may be NULL */);
  /* Records the rating of an answer, replacing an earlier one for the same
   * message (created_at is kept, updated_at is now). RAGD_ENOTFOUND when the
   * conversation has no assistant message with this id; RAGD_EINVAL for a
   * rating other than "up"/"down"; RAGD_EUTF8 for a comment that is not
   * UTF-8. *created (may be NULL) is 1 for a first rating, 0 for a change. */
  ragd_err (*put_feedback)(void *ctx, const struct store_feedback_in *f,
                           int *created /* OUT, may be NULL */);
  /* Calls cb for every feedback row last changed at or after since (Unix
   * seconds; 0: all), oldest change first (ties by message). The store may
   * be locked while cb runs: cb must not call the store. */
  ragd_err (*list_feedback)(void *ctx, int64_t since, store_feedback_cb cb, void *cb_ctx);
  /* ---- API keys (ragd keys; the HTTP access check) ----
   * Another process (a second server on the same database, `ragd keys` from
   * a shell) may create and revoke keys at any time: every call reads the
   * stored state, nothing is cached here. */

  /* Stores a new active key (created_at = now; revoked_at ignored).
   * RAGD_EINVAL when id, scope, hash or name is malformed (see struct
   * store_key), rpm or streams is negative, or a key with this id or hash
   * already exists (the caller draws a new key and tries again). */
  ragd_err (*key_create)(void *ctx, const struct store_key *key);
  /* The active key whose hash is hash_hex (64 lower-case hex digits), or
   * RAGD_ENOTFOUND (no such key, or revoked). */
  ragd_err (*key_lookup)(void *ctx, const char *hash_hex, struct store_key *out /* OUT */);
  /* Every key, revoked ones included, oldest first. */
  ragd_err (*key_list)(void *ctx, struct store_key_list *out /* OUT */);
  /* Revokes the active key with this id (revoked_at = now): from then on
   * key_lookup no longer finds it. RAGD_ENOTFOUND when no active key has
   * this id. */
  ragd_err (*key_revoke)(void *ctx, const char *id);
  /* The number of active keys. */
  ragd_err (*key_count)(void *ctx, size_t *active /* OUT */);
  /* ---- shared rate limits (optional; NULL: the server keeps its own) ----
   * Counts one request of name (an API key or client address) against rpm
   * (> 0) requests per rolling minute, shared by every process using this
   * store. *admitted = 1 when it fits (and it is counted), else 0 with
   * *retry_after_ms (>= 1) until one would fit; a refused request is not
   * counted. On an error *admitted is 1 and nothing is known. Any thread. */
  ragd_err (*rate_take)(void *ctx, const char *name, long rpm, int *admitted /* OUT */,
                        int64_t *retry_after_ms /* OUT */);

  /* ---- vector search in the database (optional) ----
   * NULL in a store that cannot search vectors itself (SQLite): retrieval
   * then keeps every vector in an in-memory index filled by load_vectors.
   * When present, every node reads the same vectors: a document stored
   * through one is found by the others' next search. */

  /* 1 when this database can search vectors (PostgreSQL: the pgvector
   * extension, 0.8.0 or newer, is installed); else 0 and *why (may be NULL)
   * a static sentence saying what is missing. */
  int (*vector_search_available)(void *ctx, const char **why /* OUT */);
  /* The q->k chunks whose vectors in the set (q->model, q->dim) are nearest
   * the query by cosine, best first (ties by row id), restricted to
   * documents matching q->filters_json (applied in the same query, before
   * the k are cut), as hits whose score is the cosine similarity (1 - cosine
   * distance), the in-memory index's convention. Approximate: an index
   * (HNSW) may miss a true neighbour. q->k == 0 prepares the set (creates
   * its index when missing) and returns no hits. A zero query vector has no
   * neighbours (no hits). RAGD_EUNSUPPORTED when vector_search_available
   * says no; RAGD_EINVAL for malformed filters or a missing vector. */
  ragd_err (*search_vectors)(void *ctx, const struct store_vector_query *q,
                             struct store_hit_list *out /* OUT */);

  /* Optional (NULL: the store cannot tell). A number that changes whenever
   * another process (or another connection) commits a change to the
   * database, and stays the same for this connection's own writes: a
   * server asks it before a search to notice a separate `ragd ingest`.
   * SQLite: PRAGMA data_version. */
  ragd_err (*data_version)(void *ctx, uint64_t *out /* OUT */);

  /* ---- named blobs (the lsa embedder's model) ----
   * A blob is up to STORE_BLOB_MAX bytes stored under a name of 1..128
   * bytes of [A-Za-z0-9._:-]; every node of a shared database sees the same
   * blobs. */

  /* Stores data[0..len) under name, replacing an earlier blob of that name
   * in one transaction: a reader gets the old bytes or the new, never a mix.
   * RAGD_EINVAL for a bad name, NULL data with len > 0, or len over
   * STORE_BLOB_MAX. */
  ragd_err (*put_blob)(void *ctx, const char *name, const void *data, size_t len);
  /* The bytes stored under name: *data is malloc'd (free(); non-NULL even
   * for zero bytes), *len its length. RAGD_ENOTFOUND when there is none. */
  ragd_err (*get_blob)(void *ctx, const char *name, void **data /* OUT */, size_t *len /* OUT */);

  /* ---- batched writes (ragd ingest) ----
   * Between batch_begin and batch_end, put_document joins one open
   * transaction instead of committing its own: each document is written in
   * a savepoint of it, so a document that fails is rolled back alone (its
   * call returns the error) and the others stay; nothing is visible to
   * other connections before batch_end commits, and a failed commit keeps
   * none of the batch. The store's own BM25 (search_bm25*) may not find the
   * batch's chunks before batch_end (SQLite indexes them then). Meant for
   * one thread that only ingests meanwhile: put_document and the read
   * calls; other writes, and a second batch, are refused or wait. RAGD_EINVAL for batch_begin inside a batch or
   * batch_end outside one. batch_end(ctx, 0) rolls the batch back. */
  ragd_err (*batch_begin)(void *ctx);
  ragd_err (*batch_end)(void *ctx, int commit);
};

struct store {
  const struct store_ops *ops;
  void *ctx;
};

/* Opens the store named by spec: "sqlite:DIR" or a plain directory path means
 * the SQLite store in DIR; "postgres://..." or "postgresql://..." (a libpq
 * URI, passed to libpq whole) the PostgreSQL store. opts NULL means the
 * defaults. On error *out is untouched. */
ragd_err store_open_ex(const char *spec, const struct store_options *opts,
                       struct store *out /* OUT */);
/* store_open_ex with the default options. */
ragd_err store_open(const char *spec, struct store *out /* OUT */);
/* Closes and zeroes st; accepts a zeroed store. */
void store_close(struct store *st);

void store_doc_dispose(struct store_doc *d);
void store_doc_list_dispose(struct store_doc_list *l);
void store_hit_list_dispose(struct store_hit_list *l);
void store_message_list_dispose(struct store_message_list *l);
void store_conversation_dispose(struct store_conversation *c);
/* Whether id can name a message: 1..64 bytes of [A-Za-z0-9_-]. */
int store_message_id_ok(const char *id);

/* ---- the input checks every store makes before its SQL ----
 * One place for the contracts of put_message, put_feedback and key_create
 * above, so that the stores refuse alike. */

#define STORE_CONVERSATION_ID_MAX 256
#define STORE_KEY_ID_MAX 64
#define STORE_KEY_NAME_MAX 200

/* RAGD_EINVAL when id is NULL, empty or longer than max bytes; RAGD_EUTF8
 * when it is not UTF-8. */
ragd_err store_check_id(const char *id, size_t max);
/* RAGD_EUTF8 when s (not NULL) is not UTF-8. */
ragd_err store_check_utf8(const char *s);
/* put_message's checks: RAGD_EINVAL for a missing or malformed role,
 * message id, conversation id or content; RAGD_EUTF8 for an id or text
 * that is not UTF-8. */
ragd_err store_validate_message(const struct store_message_in *m);
/* put_feedback's checks: RAGD_EINVAL for a missing or malformed message id,
 * conversation id, or a rating other than "up"/"down"; RAGD_EUTF8 for a
 * comment that is not UTF-8. */
ragd_err store_validate_feedback(const struct store_feedback_in *f);
/* Whether h is a key hash as stored: 64 lower-case hex digits. */
int store_key_hash_ok(const char *h);
/* key_create's checks: RAGD_EINVAL when id, scope, hash or name is
 * malformed or rpm or streams is negative (see struct store_key). */
ragd_err store_validate_key(const struct store_key *k);
void store_vector_model_list_dispose(struct store_vector_model_list *l);
void store_chunk_text_list_dispose(struct store_chunk_text_list *l);
void store_key_dispose(struct store_key *k);
void store_key_list_dispose(struct store_key_list *l);
/* Whether name can name a blob (see put_blob). */
int store_blob_name_ok(const char *name);

extern const struct store_ops store_sqlite_ops;
extern const struct store_ops store_postgres_ops;

#endif
