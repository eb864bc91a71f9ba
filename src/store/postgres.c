/* postgres.c - the server store: PostgreSQL through libpq, for several ragd
 * nodes on one database.
 *
 * Connections: a fixed pool of opts->pool_size connections, opened at start
 * and handed out one per op (an op waits while all are busy). Every statement
 * is prepared once per connection, right after it connects (and again after
 * a broken connection is reset); statement_timeout is set per connection.
 *
 * Schema: versioned migrations (pg_migrations) applied in one transaction
 * under an advisory lock, so nodes starting together do not race; applied
 * versions are rows of ragd_schema_migrations.
 *
 * Keyword search: ragd's own tokenizer (text_tokenize: NFKC, case folding,
 * Hangul/Han/Kana bigrams) turns title, heading path and text into terms in
 * C; they are stored as a tsvector literal (lexemes quoted as they are, so no
 * text search configuration touches them) with weight A for title terms, B
 * for heading terms and D for body terms, indexed with GIN. A query is
 * tokenized the same way and its terms OR-ed into a tsquery. The score is
 * FTS5's bm25() with the SQLite store's column weights (2.0, 1.5, 1.0),
 * k1 = 1.2, b = 0.75, computed in SQL from stored statistics: each chunk's
 * term count, the number of chunks, and each query term's chunk frequency
 * (counted through the GIN index). Both stores therefore rank alike
 * (docs/performance.md). tsvector keeps at most 256 positions of a lexeme
 * and positions up to 16383, far beyond a chunk of RAGD_CHUNK_TOKENS.
 *
 * Metadata filters run on a jsonb copy of the metadata: for every filter key,
 * (metadata -> key) @> one of the key's values, which is JSON equality with
 * types for a scalar and "has this element" for an array.
 *
 * Vectors are float32 arrays (bytea, the host's byte order) served to the
 * in-memory index through load_vectors, as with SQLite.
 *
 * Conversations (schema 3) keep what the SQLite store keeps: messages with
 * public ids and their answer's metadata, feedback per answer (deleted with
 * its conversation by cascade). A message id already taken inserts nothing
 * (ON CONFLICT DO NOTHING), so put_message reports RAGD_EINVAL without an
 * aborted transaction or an error in the server's log.
 *
 * API keys (schema 4) are the SQLite store's api_keys table: hashes only,
 * read afresh on every call, so all nodes see a revocation at once; a
 * duplicate id or hash is refused the same way (ON CONFLICT DO NOTHING).
 *
 * Rate limits (schema 5) are shared by every node: one row per key or client
 * address in an UNLOGGED table (not WAL-logged, emptied by a crash: counts
 * are not worth durability), a sliding-window counter on the database's
 * clock, taken with one UPSERT per request (see pg_rate_take). */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "store/store.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/crypto.h"
#include "util/json.h"
#include "util/log.h"

#define PG_EXTERNAL_ID_MAX 256
#define PG_LIST_LIMIT_MAX 1000
#define PG_QUERY_TERMS_MAX 1024
/* tsvector refuses lexemes of 2 KiB or more; such a "word" is noise anyway. */
#define PG_LEXEME_MAX 2046
#define PG_POSITION_MAX 16383
#define PG_FILTER_KEY_MAX 64
#define PG_FILTER_KEYS_MAX 16
#define PG_FILTER_VALUES_MAX 100
#define PG_PARAMS_MAX 16
/* hnsw.ef_search at least: the candidate list of an HNSW search. pgvector's
 * default (40) is below the 50 candidates fusion asks for; measured recall
 * in docs/postgres.md. */
#define PG_EF_SEARCH "100"
/* HNSW indexes vector up to 2,000 dimensions and halfvec up to 4,000. */
#define PG_HNSW_VECTOR_MAX 2000
#define PG_HNSW_HALFVEC_MAX 4000
/* The key of the advisory lock that serializes migrations ('ragd'). */
#define PG_MIGRATION_LOCK "1918986596"

/* ---- schema ------------------------------------------------------------------ */

struct pg_migration {
  int version;
  const char *sql;
  /* NULL, or a step in C run after sql in the same transaction */
  ragd_err (*after)(PGconn *conn);
};

static ragd_err pg_backfill_embeddings(PGconn *conn);

static const struct pg_migration pg_migrations[] = {
    {1,
     "CREATE TABLE documents ("
     " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
     " external_id text COLLATE \"C\" NOT NULL UNIQUE,"
     " title text NOT NULL DEFAULT '',"
     " url text NOT NULL DEFAULT '',"
     " metadata_json text NOT NULL DEFAULT '{}',"
     " metadata jsonb NOT NULL DEFAULT '{}',"
     " format text NOT NULL,"
     " content text NOT NULL,"
     " content_hash text NOT NULL,"
     " created_at bigint NOT NULL,"
     " updated_at bigint NOT NULL);"
     "CREATE TABLE chunks ("
     " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
     " document_id bigint NOT NULL REFERENCES documents(id) ON DELETE CASCADE,"
     " ordinal integer NOT NULL,"
     " heading_path text NOT NULL DEFAULT '',"
     " text text NOT NULL,"
     " token_count integer NOT NULL,"
     " term_count integer NOT NULL,"
     " tsv tsvector NOT NULL,"
     " UNIQUE (document_id, ordinal));"
     "CREATE INDEX chunks_tsv ON chunks USING gin (tsv);"
     "CREATE TABLE vectors ("
     " chunk_id bigint NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,"
     " model text NOT NULL,"
     " dimensions integer NOT NULL,"
     " data bytea NOT NULL,"
     " PRIMARY KEY (chunk_id, model));"
     "CREATE TABLE conversations ("
     " id text PRIMARY KEY,"
     " created_at bigint NOT NULL,"
     " updated_at bigint NOT NULL);"
     "CREATE TABLE messages ("
     " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
     " conversation_id text NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,"
     " role text NOT NULL,"
     " content text NOT NULL,"
     " created_at bigint NOT NULL);"
     "CREATE INDEX messages_by_conversation ON messages(conversation_id, id);", NULL},
    /* English stemming of indexed terms: the data is rewritten from C
     * (pg_open), the version only records that. */
    {2, "SELECT 1", NULL},
    /* Conversation memory, as the SQLite store's schema 3: messages get a
     * public id (random for the ones stored before), the retrieval query,
     * sources, citations, provider, model, finish reason and token counts;
     * answers get feedback; conversations are found by age for retention.
     * Every statement may run again over its own result. */
    {3,
     "ALTER TABLE messages ADD COLUMN IF NOT EXISTS public_id text COLLATE \"C\";"
     "ALTER TABLE messages ADD COLUMN IF NOT EXISTS retrieval_query text NOT NULL DEFAULT '';"
     "ALTER TABLE messages ADD COLUMN IF NOT EXISTS sources_json text NOT NULL DEFAULT '[]';"
     "ALTER TABLE messages ADD COLUMN IF NOT EXISTS cited_json text NOT NULL DEFAULT '[]';"
     "ALTER TABLE messages ADD COLUMN IF NOT EXISTS provider text NOT NULL DEFAULT '';"
     "ALTER TABLE messages ADD COLUMN IF NOT EXISTS model text NOT NULL DEFAULT '';"
     "ALTER TABLE messages ADD COLUMN IF NOT EXISTS finish_reason text NOT NULL DEFAULT '';"
     "ALTER TABLE messages ADD COLUMN IF NOT EXISTS tokens integer;"
     "ALTER TABLE messages ADD COLUMN IF NOT EXISTS prompt_tokens integer;"
     /* "msg_" and 24 hex digits, as ragd makes them: 90 random bits of a
      * version 4 UUID (gen_random_uuid is built in from PostgreSQL 13 on) */
     "UPDATE messages SET public_id ="
     " 'msg_' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 24)"
     " WHERE public_id IS NULL;"
     "ALTER TABLE messages ALTER COLUMN public_id SET NOT NULL;"
     "CREATE UNIQUE INDEX IF NOT EXISTS messages_by_public_id ON messages(public_id);"
     "CREATE INDEX IF NOT EXISTS conversations_by_updated ON conversations(updated_at);"
     "CREATE TABLE IF NOT EXISTS feedback ("
     " message_id bigint PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,"
     " rating text NOT NULL CHECK (rating IN ('up', 'down')),"
     " comment text NOT NULL DEFAULT '',"
     " created_at bigint NOT NULL,"
     " updated_at bigint NOT NULL);"
     "CREATE INDEX IF NOT EXISTS feedback_by_updated ON feedback(updated_at, message_id);", NULL},
    /* API keys, as the SQLite store's api_keys table: only the SHA-256 of a
     * key is kept. Every node reads the same rows, so a key created or
     * revoked through any of them (or `ragd keys`) holds for all. */
    {4,
     "CREATE TABLE IF NOT EXISTS api_keys ("
     " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
     " public_id text COLLATE \"C\" NOT NULL UNIQUE,"
     " name text NOT NULL DEFAULT '',"
     " scope text NOT NULL CHECK (scope IN ('query', 'admin')),"
     " key_hash text COLLATE \"C\" NOT NULL UNIQUE,"
     " rpm bigint NOT NULL DEFAULT 0,"
     " streams bigint NOT NULL DEFAULT 0,"
     " created_at bigint NOT NULL,"
     " revoked_at bigint);", NULL},
    /* Shared rate limits: the requests of the current and the previous
     * minute of each key or client address (times in ms on the database's
     * clock). UNLOGGED: a crash empties it, which only forgives a minute. */
    {5,
     "CREATE UNLOGGED TABLE IF NOT EXISTS rate_limits ("
     " name text COLLATE \"C\" PRIMARY KEY,"
     " window_start bigint NOT NULL,"
     " count integer NOT NULL,"
     " prev_count integer NOT NULL,"
     " touched_ms bigint NOT NULL);", NULL},
    /* Vectors as real[] beside the bytea: pgvector casts them
     * (embedding::vector(n)) in the per-set HNSW indexes and in nearest-
     * vector search. A plain array, so that this schema needs no extension;
     * the rows stored before are converted in C (pg_backfill_embeddings). */
    {6, "ALTER TABLE vectors ADD COLUMN IF NOT EXISTS embedding real[];", pg_backfill_embeddings},
    /* Named blobs: the lsa embedder's model (basis, vocabulary, version),
     * so every node loads the same fit and lsa needs no file. */
    {7,
     "CREATE TABLE IF NOT EXISTS blobs ("
     " name text COLLATE \"C\" PRIMARY KEY,"
     " data bytea NOT NULL,"
     " updated_at bigint NOT NULL);", NULL},
};

#define PG_SCHEMA_VERSION 7
/* From this version on, indexed terms are stemmed (text_stem_en): chunks
 * indexed by an older version are re-tokenized when the store opens. */
#define PG_SCHEMA_STEMMED 2

/* ---- statements --------------------------------------------------------------- */

/* Shared rate limits: a minute's window, and the previous and current
 * counts of a row rolled forward to EXCLUDED's (the request's) window. */
#define PG_RATE_WINDOW_MS "60000"
#define PG_RATE_PREV                                                              \
  "(CASE WHEN r.window_start = EXCLUDED.window_start THEN r.prev_count"           \
  " WHEN r.window_start = EXCLUDED.window_start - " PG_RATE_WINDOW_MS " THEN r.count" \
  " ELSE 0 END)"
#define PG_RATE_CUR "(CASE WHEN r.window_start = EXCLUDED.window_start THEN r.count ELSE 0 END)"
#define PG_RATE_SWEEP_EVERY_MS 60000

enum pg_stmt_id {
  PG_DOC_LOOKUP,
  PG_DOC_INSERT,
  PG_DOC_UPDATE,
  PG_DOC_DELETE,
  PG_DOC_LOCK,
  PG_DOC_GET,
  PG_DOC_LIST,
  PG_CHUNKS_DELETE_DOC,
  PG_CHUNK_INSERT,
  PG_SEARCH,
  PG_FILTER_DOCS,
  PG_CONV_TOUCH,
  PG_MSG_LIST,
  PG_STATS,
  PG_PING,
  PG_VEC_INSERT,
  PG_VEC_LOAD,
  PG_VEC_MODELS,
  PG_VEC_DELETE_OTHER,
  PG_DOC_VEC_COUNT,
  PG_CHUNKS_NO_VEC,
  PG_CHUNK_GET,
  PG_CHUNKS_ALL,
  PG_CHUNK_RETERM,
  PG_MSG_PUT,
  PG_CONV_GET,
  PG_CONV_DELETE,
  PG_CONV_EXPIRE,
  PG_FB_TARGET,
  PG_FB_EXISTS,
  PG_FB_PUT,
  PG_FB_LIST,
  PG_KEY_INSERT,
  PG_KEY_LOOKUP,
  PG_KEY_LIST,
  PG_KEY_REVOKE,
  PG_KEY_COUNT,
  PG_RATE_TAKE,
  PG_RATE_PEEK,
  PG_RATE_SWEEP,
  PG_STMT_COUNT
};

#define PG_DOC_COLUMNS                                                           \
  "d.external_id, d.title, d.url, d.metadata_json, d.format, d.content_hash,"   \
  " d.created_at, d.updated_at,"                                                \
  " (SELECT count(*) FROM chunks c WHERE c.document_id = d.id)"

#define PG_KEY_COLUMNS \
  "public_id, name, scope, key_hash, rpm, streams, created_at, coalesce(revoked_at, 0)"

#define PG_HIT_COLUMNS \
  "d.external_id, d.title, d.url, c.heading_path, c.text, c.ordinal, s.score, c.id, d.id"

/* True when document dd matches the filter in parameters keys text[],
 * value_key int[] (1-based index into keys), values text[] (JSON): for every
 * key one of its values is contained in the metadata at that key. Empty
 * arrays match every document. */
#define PG_FILTER(keys, value_key, values)                                                  \
  "NOT EXISTS (SELECT 1 FROM unnest(" keys "::text[]) WITH ORDINALITY AS fk(key, i)"        \
  " WHERE NOT EXISTS (SELECT 1 FROM unnest(" value_key "::int[], " values "::text[])"       \
  " AS fv(i, val) WHERE fv.i = fk.i AND (dd.metadata -> fk.key) @> fv.val::jsonb))"

static const char *const pg_stmt_sql[PG_STMT_COUNT] = {
    [PG_DOC_LOOKUP] = "SELECT id, created_at,"
                      " content_hash = $2::text AND title = $3::text AND url = $4::text"
                      " AND metadata_json = $5::text AND format = $6::text,"
                      " (SELECT count(*) FROM chunks c WHERE c.document_id = documents.id)"
                      " FROM documents WHERE external_id = $1::text",
    [PG_DOC_INSERT] = "INSERT INTO documents(external_id, title, url, metadata_json, metadata,"
                      " format, content, content_hash, created_at, updated_at)"
                      " VALUES ($1::text, $2::text, $3::text, $4::text, $4::text::jsonb,"
                      " $5::text, $6::text, $7::text, $8::bigint, $8::bigint) RETURNING id",
    [PG_DOC_UPDATE] = "UPDATE documents SET title = $2::text, url = $3::text,"
                      " metadata_json = $4::text, metadata = $4::text::jsonb, format = $5::text,"
                      " content = $6::text, content_hash = $7::text, updated_at = $8::bigint"
                      " WHERE id = $1::bigint RETURNING id",
    [PG_DOC_DELETE] = "DELETE FROM documents WHERE external_id = $1::text RETURNING id",
    /* Serializes writers of one external id, whichever node they run on. */
    [PG_DOC_LOCK] = "SELECT pg_advisory_xact_lock(hashtext($1::text))",
    [PG_DOC_GET] = "SELECT " PG_DOC_COLUMNS ", d.content FROM documents d"
                   " WHERE d.external_id = $1::text",
    [PG_DOC_LIST] = "SELECT " PG_DOC_COLUMNS " FROM documents d"
                    " WHERE d.external_id > $1::text ORDER BY d.external_id LIMIT $2::bigint",
    [PG_CHUNKS_DELETE_DOC] = "DELETE FROM chunks WHERE document_id = $1::bigint",
    [PG_CHUNK_INSERT] = "INSERT INTO chunks(document_id, ordinal, heading_path, text,"
                        " token_count, term_count, tsv) VALUES ($1::bigint, $2::int, $3::text,"
                        " $4::text, $5::int, $6::int, $7::text::tsvector) RETURNING id",
    /* $1 terms, $2 one tsquery per term, $3 their OR, $4 k, $5..$7 filter.
     * bm25 as FTS5 computes it: idf = ln((N - n + 0.5) / (n + 0.5)), floored
     * at 1e-6; f = the term's weighted frequency in the chunk (title 2.0,
     * heading 1.5, body 1.0 per occurrence); D = the chunk's term count. */
    [PG_SEARCH] =
        "WITH q AS (SELECT term, tq::tsquery AS tq FROM unnest($1::text[], $2::text[]) AS q(term, tq)),"
        " n AS (SELECT count(*)::float8 AS n, coalesce(avg(term_count), 1)::float8 AS avgdl"
        " FROM chunks),"
        " qi AS (SELECT q.term, greatest(ln((n.n - df.df + 0.5) / (df.df + 0.5)), 1e-6) AS idf"
        " FROM q CROSS JOIN n CROSS JOIN LATERAL"
        " (SELECT count(*)::float8 AS df FROM chunks c WHERE c.tsv @@ q.tq) AS df),"
        " cand AS (SELECT c.id, c.tsv, c.term_count FROM chunks c"
        " JOIN documents dd ON dd.id = c.document_id"
        " WHERE c.tsv @@ $3::text::tsquery AND " PG_FILTER("$5", "$6", "$7") "),"
        " s AS (SELECT cand.id, sum(qi.idf * f.wf * 2.2"
        " / (f.wf + 1.2 * (0.25 + 0.75 * cand.term_count / greatest(n.avgdl, 1e-9)))) AS score"
        " FROM cand CROSS JOIN n CROSS JOIN LATERAL unnest(cand.tsv) AS u"
        " JOIN qi ON qi.term = u.lexeme"
        " CROSS JOIN LATERAL (SELECT sum(CASE w WHEN 'A' THEN 2.0 WHEN 'B' THEN 1.5"
        " ELSE 1.0 END)::float8 AS wf FROM unnest(u.weights) AS w) AS f"
        " GROUP BY cand.id)"
        " SELECT " PG_HIT_COLUMNS " FROM s JOIN chunks c ON c.id = s.id"
        " JOIN documents d ON d.id = c.document_id"
        " ORDER BY s.score DESC, c.id LIMIT $4::bigint",
    [PG_FILTER_DOCS] = "SELECT dd.id FROM documents dd WHERE " PG_FILTER("$1", "$2", "$3")
                       " ORDER BY dd.id",
    [PG_CONV_TOUCH] = "INSERT INTO conversations(id, created_at, updated_at)"
                      " VALUES ($1::text, $2::bigint, $2::bigint)"
                      " ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at",
    [PG_MSG_LIST] = "SELECT role, content, created_at, public_id, retrieval_query FROM"
                    " (SELECT id, role, content, created_at, public_id, retrieval_query"
                    " FROM messages WHERE conversation_id = $1::text"
                    " ORDER BY id DESC LIMIT $2::bigint) AS m ORDER BY id",
    [PG_STATS] = "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks)",
    [PG_PING] = "SELECT 1",
    [PG_VEC_INSERT] = "INSERT INTO vectors(chunk_id, model, dimensions, data, embedding)"
                      " SELECT $1::bigint, $2::text, $3::int, $4::bytea, $5::real[]"
                      " WHERE EXISTS (SELECT 1 FROM chunks WHERE id = $1::bigint)"
                      " ON CONFLICT (chunk_id, model) DO UPDATE"
                      " SET dimensions = excluded.dimensions, data = excluded.data,"
                      " embedding = excluded.embedding",
    [PG_VEC_LOAD] = "SELECT v.chunk_id, c.document_id, v.data FROM vectors v"
                    " JOIN chunks c ON c.id = v.chunk_id"
                    " WHERE v.model = $1::text AND v.dimensions = $2::int ORDER BY v.chunk_id",
    [PG_VEC_MODELS] = "SELECT model, dimensions, count(*) FROM vectors"
                      " GROUP BY model, dimensions ORDER BY model, dimensions",
    [PG_VEC_DELETE_OTHER] = "DELETE FROM vectors WHERE NOT (model = $1::text AND dimensions = $2::int)",
    [PG_DOC_VEC_COUNT] = "SELECT count(*) FROM vectors v JOIN chunks c ON c.id = v.chunk_id"
                         " WHERE c.document_id = $1::bigint AND v.model = $2::text"
                         " AND v.dimensions = $3::int",
    [PG_CHUNKS_NO_VEC] = "SELECT c.id, c.document_id, d.title, c.heading_path, c.text"
                         " FROM chunks c JOIN documents d ON d.id = c.document_id"
                         " WHERE c.id > $3::bigint AND NOT EXISTS (SELECT 1 FROM vectors v"
                         " WHERE v.chunk_id = c.id AND v.model = $1::text"
                         " AND v.dimensions = $2::int)"
                         " ORDER BY c.id LIMIT $4::bigint",
    [PG_CHUNK_GET] = "SELECT " PG_HIT_COLUMNS " FROM unnest($1::bigint[]) WITH ORDINALITY"
                     " AS q(id, ord) JOIN chunks c ON c.id = q.id"
                     " JOIN documents d ON d.id = c.document_id"
                     " CROSS JOIN (SELECT 0.0::float8 AS score) AS s ORDER BY q.ord",
    [PG_CHUNKS_ALL] = "SELECT c.id, d.title, c.heading_path, c.text FROM chunks c"
                      " JOIN documents d ON d.id = c.document_id ORDER BY c.id FOR UPDATE OF c",
    [PG_CHUNK_RETERM] = "UPDATE chunks SET tsv = $2::text::tsvector, term_count = $3::int"
                        " WHERE id = $1::bigint",
    /* A message id already stored inserts nothing (and returns no row):
     * the caller tells that from a failure without aborting the transaction. */
    [PG_MSG_PUT] = "INSERT INTO messages(conversation_id, role, content, created_at, public_id,"
                   " retrieval_query, sources_json, cited_json, provider, model, finish_reason,"
                   " tokens, prompt_tokens)"
                   " VALUES ($1::text, $2::text, $3::text, $4::bigint, $5::text, $6::text,"
                   " $7::text, $8::text, $9::text, $10::text, $11::text, $12::int, $13::int)"
                   " ON CONFLICT (public_id) DO NOTHING RETURNING id",
    /* The conversation and its messages in one statement (one snapshot):
     * no row means no conversation; the columns pg_read_message reads
     * follow the first two. */
    [PG_CONV_GET] = "SELECT c.created_at, c.updated_at, m.role, m.content, m.created_at,"
                    " m.public_id, m.retrieval_query, m.sources_json, m.cited_json, m.provider,"
                    " m.model, m.finish_reason, m.tokens, m.prompt_tokens, f.rating, f.comment"
                    " FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id"
                    " LEFT JOIN feedback f ON f.message_id = m.id"
                    " WHERE c.id = $1::text ORDER BY m.id",
    /* messages and their feedback go by cascade */
    [PG_CONV_DELETE] = "DELETE FROM conversations WHERE id = $1::text",
    [PG_CONV_EXPIRE] = "DELETE FROM conversations WHERE updated_at < $1::bigint",
    /* Locks the rated answer: ratings of one answer from several nodes take
     * turns, so each sees whether one was stored before it. */
    [PG_FB_TARGET] = "SELECT m.id FROM messages m WHERE m.conversation_id = $1::text"
                     " AND m.public_id = $2::text AND m.role = 'assistant' FOR UPDATE",
    [PG_FB_EXISTS] = "SELECT EXISTS (SELECT 1 FROM feedback WHERE message_id = $1::bigint)",
    [PG_FB_PUT] = "INSERT INTO feedback(message_id, rating, comment, created_at, updated_at)"
                  " VALUES ($1::bigint, $2::text, $3::text, $4::bigint, $4::bigint)"
                  " ON CONFLICT (message_id) DO UPDATE SET rating = excluded.rating,"
                  " comment = excluded.comment, updated_at = excluded.updated_at",
    [PG_FB_LIST] = "SELECT m.conversation_id, m.public_id, f.rating, f.comment, f.created_at,"
                   " f.updated_at,"
                   " coalesce((SELECT u.content FROM messages u"
                   " WHERE u.conversation_id = m.conversation_id AND u.id < m.id"
                   " AND u.role = 'user' ORDER BY u.id DESC LIMIT 1), ''),"
                   " m.content, m.provider, m.model, m.sources_json, m.cited_json"
                   " FROM feedback f JOIN messages m ON m.id = f.message_id"
                   " WHERE f.updated_at >= $1::bigint ORDER BY f.updated_at, f.message_id",
    /* An id or hash already stored inserts nothing (and returns no row):
     * the caller draws another key, and the server logs no error. */
    [PG_KEY_INSERT] = "INSERT INTO api_keys(public_id, name, scope, key_hash, rpm, streams,"
                      " created_at) VALUES ($1::text, $2::text, $3::text, $4::text,"
                      " $5::bigint, $6::bigint, $7::bigint)"
                      " ON CONFLICT DO NOTHING RETURNING id",
    [PG_KEY_LOOKUP] = "SELECT " PG_KEY_COLUMNS " FROM api_keys"
                      " WHERE key_hash = $1::text AND revoked_at IS NULL",
    [PG_KEY_LIST] = "SELECT " PG_KEY_COLUMNS " FROM api_keys ORDER BY id",
    [PG_KEY_REVOKE] = "UPDATE api_keys SET revoked_at = $2::bigint"
                      " WHERE public_id = $1::text AND revoked_at IS NULL",
    [PG_KEY_COUNT] = "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL",
    /* $1 name, $2 rpm. Rolls the row to the current minute, then counts the
     * request only when the estimate of the last 60 s (the previous minute's
     * count weighted by how much of it is still inside the last 60 s, plus
     * this minute's) leaves room: no row returned means refused, and a
     * refused request is not counted. */
    [PG_RATE_TAKE] =
        "INSERT INTO rate_limits AS r (name, window_start, count, prev_count, touched_ms)"
        " SELECT $1, n - n % " PG_RATE_WINDOW_MS ", 1, 0, n FROM"
        " (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS n) t"
        " ON CONFLICT (name) DO UPDATE SET"
        " prev_count = " PG_RATE_PREV ", count = " PG_RATE_CUR " + 1,"
        " window_start = EXCLUDED.window_start, touched_ms = EXCLUDED.touched_ms"
        " WHERE " PG_RATE_PREV "::float8 * (" PG_RATE_WINDOW_MS
        " - (EXCLUDED.touched_ms - EXCLUDED.window_start)) / " PG_RATE_WINDOW_MS
        " + " PG_RATE_CUR " + 1 <= $2::bigint"
        " RETURNING r.count",
    [PG_RATE_PEEK] = "SELECT window_start, count, prev_count,"
                     " (extract(epoch FROM clock_timestamp()) * 1000)::bigint"
                     " FROM rate_limits WHERE name = $1",
    [PG_RATE_SWEEP] = "DELETE FROM rate_limits WHERE touched_ms <"
                      " (extract(epoch FROM clock_timestamp()) * 1000)::bigint - 2 * "
                      PG_RATE_WINDOW_MS,
};

/* ---- the pool ------------------------------------------------------------------ */

struct pg_conn {
  PGconn *conn;
  int prepared; /* statements prepared on this connection */
  int batch;    /* held by an open ingest batch (pg_batch_begin) */
  /* Statement names are "<prefix><id>", the prefix unique to this
   * connection in this process and to the process: PGlite's socket server
   * runs every client on one shared session, where names would collide. */
  char prefix[48];
  /* The vector set (SHA-256 of "<dim>/<model>") whose search statement is
   * prepared on this connection, "" when none. */
  char vec_set[65];
};

static pthread_mutex_t pg_seq_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned long pg_seq;

struct pg_store {
  char *conninfo;
  long statement_timeout_ms;
  size_t nconns;
  struct pg_conn *conns;
  size_t *idle; /* stack of indexes into conns */
  size_t nidle;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int64_t rate_swept_ms; /* last sweep of idle rate_limits rows (guarded by mu) */
  /* pgvector: 1 when installed (0.8.0 or newer), else why_no_vectors says
   * what is missing. vec_indexed is the last vector set whose HNSW index
   * this process made sure of (under vec_mu). */
  int pgvector;
  const char *why_no_vectors;
  char why_buf[320];
  pthread_mutex_t vec_mu;
  char vec_indexed[65];
  /* An open ingest batch (guarded by mu): its connection, out of the pool
   * and handed to every call of the thread that opened it; broken: an
   * error ended its transaction, so it can only be rolled back. */
  struct pg_conn *batch_conn;
  pthread_t batch_thread;
  int batch_broken;
};

/* Parameters of one statement: text in binary format (exact length, no
 * terminator needed), integers as text. */
struct pg_params {
  const char *values[PG_PARAMS_MAX];
  int lengths[PG_PARAMS_MAX];
  int formats[PG_PARAMS_MAX];
  char numbers[PG_PARAMS_MAX][24];
  int n;
};

static void pp_init(struct pg_params *p) { memset(p, 0, sizeof *p); }

static void pp_textn(struct pg_params *p, const char *s, size_t len) {
  p->values[p->n] = s ? s : "";
  p->lengths[p->n] = s ? (int)len : 0;
  p->formats[p->n] = 1;
  p->n++;
}

static void pp_text(struct pg_params *p, const char *s) { pp_textn(p, s, s ? strlen(s) : 0); }

/* A literal in the text format (array literals must be sent that way); s is
 * NUL-terminated. */
static void pp_literal(struct pg_params *p, const struct buf *b) {
  p->values[p->n] = b->data ? b->data : "";
  p->lengths[p->n] = 0;
  p->formats[p->n] = 0;
  p->n++;
}

static void pp_i64(struct pg_params *p, int64_t v) {
  snprintf(p->numbers[p->n], sizeof p->numbers[p->n], "%lld", (long long)v);
  p->values[p->n] = p->numbers[p->n];
  p->lengths[p->n] = 0;
  p->formats[p->n] = 0;
  p->n++;
}

/* A count that may be unknown (< 0): SQL NULL then. */
static void pp_count(struct pg_params *p, long v) {
  if (v >= 0) {
    pp_i64(p, v);
    return;
  }
  p->values[p->n] = NULL;
  p->lengths[p->n] = 0;
  p->formats[p->n] = 0;
  p->n++;
}

static void pp_size(struct pg_params *p, size_t v) {
  pp_i64(p, (uint64_t)v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v);
}

static void pp_bytes(struct pg_params *p, const void *data, size_t len) {
  p->values[p->n] = data;
  p->lengths[p->n] = (int)len;
  p->formats[p->n] = 1;
  p->n++;
}

/* Maps a failed result (or a broken connection) to ragd's errors. */
static ragd_err pg_map(const PGresult *res) {
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  if (!state) return RAGD_EIO; /* no SQLSTATE: the connection failed */
  if (strcmp(state, "57014") == 0) return RAGD_ETIMEOUT;    /* statement timeout */
  if (strcmp(state, "55P03") == 0) return RAGD_ETIMEOUT;    /* lock not available */
  if (strcmp(state, "40001") == 0) return RAGD_ETIMEOUT;    /* serialization */
  if (strcmp(state, "40P01") == 0) return RAGD_ETIMEOUT;    /* deadlock */
  if (strcmp(state, "22021") == 0) return RAGD_EUTF8;       /* bad byte sequence */
  if (strncmp(state, "22", 2) == 0) return RAGD_EINVAL;     /* data exceptions */
  if (strcmp(state, "54000") == 0) return RAGD_ETOOBIG;     /* program limit */
  if (strncmp(state, "08", 2) == 0) return RAGD_EIO;        /* connection */
  if (strcmp(state, "53200") == 0) return RAGD_ENOMEM;
  return RAGD_ESTORE;
}

static ragd_err pg_check(PGconn *conn, PGresult *res, const char *what) {
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_SINGLE_TUPLE)
    return RAGD_OK;
  log_error("store: %s: %s", what,
            res && *PQresultErrorMessage(res) ? PQresultErrorMessage(res) : PQerrorMessage(conn));
  return pg_map(res);
}

/* Runs SQL text without parameters (may hold several statements). */
static ragd_err pg_exec_sql(PGconn *conn, const char *sql, const char *what) {
  PGresult *res = PQexec(conn, sql);
  ragd_err rc = pg_check(conn, res, what);
  PQclear(res);
  return rc;
}

/* Server notices ("relation already exists, skipping") are for debugging. */
static void pg_notice(void *arg, const char *message) {
  (void)arg;
  log_debug("store: PostgreSQL: %s", message);
}

static ragd_err pg_conn_setup(struct pg_store *s, struct pg_conn *c) {
  struct buf sql;
  ragd_err rc;
  size_t i;
  char name[64];

  c->prepared = 0;
  pthread_mutex_lock(&pg_seq_mu);
  snprintf(c->prefix, sizeof c->prefix, "ragd_%ld_%lu_", (long)getpid(), ++pg_seq);
  pthread_mutex_unlock(&pg_seq_mu);
  if (PQstatus(c->conn) != CONNECTION_OK) {
    log_error("store: cannot connect to PostgreSQL: %s", PQerrorMessage(c->conn));
    return RAGD_EIO;
  }
  PQsetNoticeProcessor(c->conn, pg_notice, NULL);
  if (PQsetClientEncoding(c->conn, "UTF8") != 0) {
    log_error("store: cannot set the client encoding: %s", PQerrorMessage(c->conn));
    return RAGD_ESTORE;
  }
  buf_init(&sql, 0);
  c->vec_set[0] = '\0';
  rc = buf_appendf(&sql, "SET statement_timeout = %ld", s->statement_timeout_ms);
  if (!rc) rc = pg_exec_sql(c->conn, sql.data, "set statement_timeout");
  buf_dispose(&sql);
  /* HNSW search: at least PG_EF_SEARCH candidates (more when the URI's
   * options ask for more), and iterative scans so that a metadata filter
   * does not leave fewer than k hits. */
  if (!rc && s->pgvector)
    rc = pg_exec_sql(c->conn,
                     "SET hnsw.iterative_scan = relaxed_order;"
                     "SELECT set_config('hnsw.ef_search', '" PG_EF_SEARCH "', false)"
                     " WHERE coalesce(current_setting('hnsw.ef_search', true), '0')::int < "
                     PG_EF_SEARCH,
                     "set the hnsw search options");
  if (rc) return rc;
  for (i = 0; i < PG_STMT_COUNT; i++) {
    PGresult *res;
    snprintf(name, sizeof name, "%s%zu", c->prefix, i);
    res = PQprepare(c->conn, name, pg_stmt_sql[i], 0, NULL);
    rc = pg_check(c->conn, res, "prepare statement");
    PQclear(res);
    if (rc) return rc;
  }
  c->prepared = 1;
  return RAGD_OK;
}

/* Takes a connection, waiting while all are in use; a broken one is reset
 * (and its statements prepared again) first. */
static ragd_err pg_acquire(struct pg_store *s, struct pg_conn **out) {
  struct pg_conn *c;
  ragd_err rc = RAGD_OK;
  pthread_mutex_lock(&s->mu);
  if (s->batch_conn && pthread_equal(s->batch_thread, pthread_self())) {
    /* the batch's own thread: its reads see the batch's writes */
    *out = s->batch_conn;
    pthread_mutex_unlock(&s->mu);
    return RAGD_OK;
  }
  while (s->nidle == 0) pthread_cond_wait(&s->cv, &s->mu);
  c = &s->conns[s->idle[--s->nidle]];
  pthread_mutex_unlock(&s->mu);
  if (PQstatus(c->conn) != CONNECTION_OK || !c->prepared) {
    log_warn("store: reconnecting to PostgreSQL");
    PQreset(c->conn);
    rc = pg_conn_setup(s, c);
  }
  if (rc) {
    pthread_mutex_lock(&s->mu);
    s->idle[s->nidle++] = (size_t)(c - s->conns);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return rc;
  }
  *out = c;
  return RAGD_OK;
}

/* Returns a connection to the pool, rolling back a transaction an error
 * left open. */
static void pg_release(struct pg_store *s, struct pg_conn *c) {
  if (!c || c->batch) return; /* the batch keeps it until pg_batch_end */
  if (PQtransactionStatus(c->conn) != PQTRANS_IDLE &&
      PQstatus(c->conn) == CONNECTION_OK) {
    PGresult *res = PQexec(c->conn, "ROLLBACK");
    PQclear(res);
  }
  pthread_mutex_lock(&s->mu);
  s->idle[s->nidle++] = (size_t)(c - s->conns);
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* Runs prepared statement id; *out (may be NULL: result dropped) is the
 * caller's to PQclear on success. */
static ragd_err pg_run(struct pg_conn *c, enum pg_stmt_id id, const struct pg_params *p,
                       int binary_result, const char *what, PGresult **out) {
  char name[64];
  PGresult *res;
  ragd_err rc;
  snprintf(name, sizeof name, "%s%d", c->prefix, (int)id);
  res = PQexecPrepared(c->conn, name, p ? p->n : 0, p ? p->values : NULL,
                       p ? p->lengths : NULL, p ? p->formats : NULL, binary_result);
  rc = pg_check(c->conn, res, what);
  if (rc || !out) {
    PQclear(res);
    return rc;
  }
  *out = res;
  return RAGD_OK;
}

/* A write of its own; refused on a batch's connection (BEGIN there would
 * only warn, and the caller's COMMIT would commit the batch). */
static ragd_err pg_begin(struct pg_conn *c) {
  if (c->batch) {
    log_error("store: a write outside put_document during an ingest batch");
    return RAGD_EINVAL;
  }
  return pg_exec_sql(c->conn, "BEGIN", "begin");
}

static ragd_err pg_commit(struct pg_conn *c) { return pg_exec_sql(c->conn, "COMMIT", "commit"); }

static int64_t pg_i64(const PGresult *res, int row, int col) {
  return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static ragd_err pg_dup(const PGresult *res, int row, int col, char **out, size_t *len) {
  int n = PQgetlength(res, row, col);
  char *copy = malloc((size_t)n + 1);
  if (!copy) return RAGD_ENOMEM;
  if (n > 0) memcpy(copy, PQgetvalue(res, row, col), (size_t)n);
  copy[n] = '\0';
  *out = copy;
  if (len) *len = (size_t)n;
  return RAGD_OK;
}

/* ---- checks shared with the SQLite store's contract ------------------------------- */

static int pg_utf8_ok(const char *p, size_t len) {
  size_t bad = 0;
  return text_utf8_validate(p, len, &bad) == RAGD_OK;
}



/* ---- literals --------------------------------------------------------------------- */

/* Appends a quoted tsvector/tsquery lexeme: quote and backslash doubled. */
static ragd_err pg_lexeme_append(struct buf *b, const char *term, size_t len) {
  ragd_err rc = buf_append_char(b, '\'');
  size_t i;
  for (i = 0; i < len && !rc; i++) {
    if (term[i] == '\'' || term[i] == '\\') rc = buf_append_char(b, term[i]);
    if (!rc) rc = buf_append_char(b, term[i]);
  }
  if (!rc) rc = buf_append_char(b, '\'');
  return rc;
}

/* Appends one element to a text[] literal under construction in b ("{" is
 * written before the first); pg_array_end closes it ("{}" when empty). */
static ragd_err pg_array_elem(struct buf *b, const char *p, size_t len) {
  ragd_err rc = buf_append_char(b, b->len ? ',' : '{');
  size_t i;
  if (!rc) rc = buf_append_char(b, '"');
  for (i = 0; i < len && !rc; i++) {
    if (p[i] == '"' || p[i] == '\\') rc = buf_append_char(b, '\\');
    if (!rc) rc = buf_append_char(b, p[i]);
  }
  if (!rc) rc = buf_append_char(b, '"');
  return rc;
}

static ragd_err pg_array_end(struct buf *b) {
  if (b->len == 0) return buf_append_str(b, "{}");
  return buf_append_char(b, '}');
}

/* Appends n floats as open, comma-separated values, close: a real[]
 * literal ('{', '}') or a pgvector one ('[', ']'). %.9g round-trips a
 * float32 exactly. */
static ragd_err pg_floats_literal(struct buf *b, char open, const float *v, size_t n, char close) {
  ragd_err rc = buf_append_char(b, open);
  for (size_t i = 0; i < n && !rc; i++) rc = buf_appendf(b, i ? ",%.9g" : "%.9g", (double)v[i]);
  if (!rc) rc = buf_append_char(b, close);
  return rc;
}

/* ---- terms ------------------------------------------------------------------------- */

/* Builds a chunk's tsvector literal from its three fields. */
struct pg_tsv {
  struct buf out;
  size_t pos;     /* positions given so far */
  size_t terms;   /* every term, the BM25 document length */
  char weight;
};

/* The term as the index keeps it: English inflections folded to one stem,
 * exactly as the SQLite store's FTS5 tokenizer does (fts_tokenizer.c). */
static const char *pg_index_term(const char *term, size_t *len, char stem[64]) {
  if (*len > 64) return term;
  *len = text_stem_en(term, *len, stem);
  return stem;
}

static int pg_tsv_term(void *ctx, const char *term, size_t len, size_t start, size_t end) {
  struct pg_tsv *t = ctx;
  char stem[64];
  ragd_err rc;
  (void)start;
  (void)end;
  if (len == 0) return 0;
  term = pg_index_term(term, &len, stem);
  t->terms++;
  if (len > PG_LEXEME_MAX) return 0;
  t->pos++;
  if (t->out.len) {
    rc = buf_append_char(&t->out, ' ');
    if (rc) return 1;
  }
  rc = pg_lexeme_append(&t->out, term, len);
  if (!rc)
    rc = buf_appendf(&t->out, ":%zu%c", t->pos < PG_POSITION_MAX ? t->pos : PG_POSITION_MAX,
                     t->weight);
  return rc ? 1 : 0;
}

static ragd_err pg_tsv_field(struct pg_tsv *t, const char *p, size_t len, char weight) {
  ragd_err rc;
  t->weight = weight;
  if (!len) return RAGD_OK;
  rc = text_tokenize(p, len, pg_tsv_term, t);
  if (rc == RAGD_ECANCELLED) rc = RAGD_ENOMEM; /* only an append stops it */
  return rc;
}

/* tsv (initialized by the caller) gets the terms of a chunk. */
static ragd_err pg_tsv_build(struct pg_tsv *t, const char *title, const char *heading,
                             const char *text, size_t text_len) {
  ragd_err rc;
  buf_reset(&t->out);
  t->pos = 0;
  t->terms = 0;
  rc = pg_tsv_field(t, title, strlen(title), 'A');
  if (!rc) rc = pg_tsv_field(t, heading, strlen(heading), 'B');
  if (!rc) rc = pg_tsv_field(t, text, text_len, 'D');
  return rc;
}

/* A query's distinct terms as the three parameters of PG_SEARCH. */
struct pg_query {
  struct buf terms; /* text[] of the terms */
  struct buf tqs;   /* text[] of one-lexeme tsqueries */
  struct buf orq;   /* their OR */
  struct buf seen;  /* "\n"-separated terms already taken, for deduplication */
  size_t count;
  ragd_err rc;
};

static int pg_query_term(void *ctx, const char *term, size_t len, size_t start, size_t end) {
  struct pg_query *q = ctx;
  struct buf one;
  char stem[64];
  size_t i;
  (void)start;
  (void)end;
  if (len) term = pg_index_term(term, &len, stem);
  if (len == 0 || len > PG_LEXEME_MAX || q->count >= PG_QUERY_TERMS_MAX) return 0;
  /* Terms never hold '\n' (it separates terms); a linear scan is fine for
   * the at most 1024 terms of a query. */
  for (i = 0; i + len <= q->seen.len; i++) {
    if ((i == 0 || q->seen.data[i - 1] == '\n') && memcmp(q->seen.data + i, term, len) == 0 &&
        (i + len == q->seen.len || q->seen.data[i + len] == '\n'))
      return 0;
  }
  buf_init(&one, 0);
  q->rc = buf_append(&q->seen, term, len);
  if (!q->rc) q->rc = buf_append_char(&q->seen, '\n');
  if (!q->rc) q->rc = pg_array_elem(&q->terms, term, len);
  if (!q->rc) q->rc = pg_lexeme_append(&one, term, len);
  if (!q->rc) q->rc = pg_array_elem(&q->tqs, one.data, one.len);
  if (!q->rc && q->orq.len) q->rc = buf_append_str(&q->orq, " | ");
  if (!q->rc) q->rc = buf_append(&q->orq, one.data, one.len);
  buf_dispose(&one);
  if (q->rc) return 1;
  q->count++;
  return 0;
}

static void pg_query_dispose(struct pg_query *q) {
  buf_dispose(&q->terms);
  buf_dispose(&q->tqs);
  buf_dispose(&q->orq);
  buf_dispose(&q->seen);
}

static ragd_err pg_query_build(const char *query, struct pg_query *q) {
  size_t len = strlen(query);
  ragd_err rc;
  memset(q, 0, sizeof *q);
  buf_init(&q->terms, 0);
  buf_init(&q->tqs, 0);
  buf_init(&q->orq, 0);
  buf_init(&q->seen, 0);
  if (!pg_utf8_ok(query, len)) return RAGD_EUTF8;
  rc = text_tokenize(query, len, pg_query_term, q);
  if (rc == RAGD_ECANCELLED && q->rc) rc = q->rc;
  if (!rc) rc = pg_array_end(&q->terms);
  if (!rc) rc = pg_array_end(&q->tqs);
  return rc;
}

/* ---- metadata filters ---------------------------------------------------------------- */

/* A parsed filter as PG_FILTER's three array parameters. */
struct pg_filter {
  struct buf keys;
  struct buf value_key;
  struct buf values;
  size_t nkeys;
};

static void pg_filter_dispose(struct pg_filter *f) {
  buf_dispose(&f->keys);
  buf_dispose(&f->value_key);
  buf_dispose(&f->values);
}

static ragd_err pg_filter_key_ok(const char *key) {
  size_t n = strlen(key), i;
  if (n == 0 || n > PG_FILTER_KEY_MAX || !pg_utf8_ok(key, n)) return RAGD_EINVAL;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)key[i];
    if (c < 0x20 || c == '"' || c == '\\' || c == 0x7f) return RAGD_EINVAL;
  }
  return RAGD_OK;
}

static ragd_err pg_filter_value(struct pg_filter *f, const json_t *v, size_t key_index) {
  struct buf json;
  char idx[24];
  ragd_err rc;
  if (json_is_string(v)) {
    if (strlen(json_string_value(v)) != json_string_length(v)) return RAGD_EINVAL;
  } else if (!json_is_number(v) && !json_is_boolean(v)) {
    return RAGD_EINVAL;
  }
  buf_init(&json, 0);
  rc = json_append(&json, v);
  if (!rc) rc = pg_array_elem(&f->values, json.data, json.len);
  buf_dispose(&json);
  snprintf(idx, sizeof idx, "%zu", key_index);
  if (!rc) rc = pg_array_elem(&f->value_key, idx, strlen(idx));
  return rc;
}

/* Parses filters_json (the contract of store.h's search_bm25_filtered). */
static ragd_err pg_filter_build(const char *filters_json, struct pg_filter *f) {
  json_t *root = NULL, *v;
  const char *key;
  ragd_err rc = RAGD_OK;
  size_t i;

  memset(f, 0, sizeof *f);
  buf_init(&f->keys, 0);
  buf_init(&f->value_key, 0);
  buf_init(&f->values, 0);
  if (filters_json && filters_json[0]) {
    if (json_parse_object(filters_json, strlen(filters_json), &root, NULL)) return RAGD_EINVAL;
    if (json_object_size(root) > PG_FILTER_KEYS_MAX) {
      rc = RAGD_EINVAL;
      goto out;
    }
    json_object_foreach(root, key, v) {
      rc = pg_filter_key_ok(key);
      if (rc) goto out;
      f->nkeys++;
      rc = pg_array_elem(&f->keys, key, strlen(key));
      if (rc) goto out;
      if (json_is_array(v)) {
        if (json_array_size(v) == 0 || json_array_size(v) > PG_FILTER_VALUES_MAX) {
          rc = RAGD_EINVAL;
          goto out;
        }
        for (i = 0; i < json_array_size(v) && !rc; i++)
          rc = pg_filter_value(f, json_array_get(v, i), f->nkeys);
      } else {
        rc = pg_filter_value(f, v, f->nkeys);
      }
      if (rc) goto out;
    }
  }
  rc = pg_array_end(&f->keys);
  if (!rc) rc = pg_array_end(&f->value_key);
  if (!rc) rc = pg_array_end(&f->values);
out:
  json_decref(root);
  return rc;
}

static ragd_err pg_rebuild_keyword_index(void *ctx);

/* ---- open / close / migrate ----------------------------------------------------------- */

static ragd_err pg_schema_version(PGconn *conn, int *version) {
  PGresult *res = PQexec(conn, "SELECT coalesce(max(version), 0) FROM ragd_schema_migrations");
  ragd_err rc = pg_check(conn, res, "read the schema version");
  if (!rc) *version = atoi(PQgetvalue(res, 0, 0));
  PQclear(res);
  return rc;
}

/* Applies the migrations newer than the database, in one transaction, under
 * an advisory lock (another node may be migrating the same database). With
 * migrate 0 only checks. */
static ragd_err pg_migrate(PGconn *conn, int migrate, int *from_version /* OUT */) {
  int version = 0, in_txn = 0;
  size_t i;
  ragd_err rc;
  struct buf sql;

  buf_init(&sql, 0);
  rc = pg_exec_sql(conn, "BEGIN", "begin migration");
  if (rc) goto out;
  in_txn = 1;
  rc = pg_exec_sql(conn,
                   "SELECT pg_advisory_xact_lock(" PG_MIGRATION_LOCK ");"
                   "CREATE TABLE IF NOT EXISTS ragd_schema_migrations ("
                   " version integer PRIMARY KEY,"
                   " applied_at timestamptz NOT NULL DEFAULT now())",
                   "create the migrations table");
  if (rc) goto out;
  rc = pg_schema_version(conn, &version);
  if (rc) goto out;
  *from_version = version;
  if (version > PG_SCHEMA_VERSION) {
    log_error("store: the database has schema %d, newer than this ragd (%d)", version,
              PG_SCHEMA_VERSION);
    rc = RAGD_ECONFIG;
    goto out;
  }
  if (version < PG_SCHEMA_VERSION && !migrate) {
    log_error("store: the database has schema %d, this ragd needs %d: run `ragd migrate` "
              "(or set RAGD_STORE_MIGRATE=1)",
              version, PG_SCHEMA_VERSION);
    rc = RAGD_ECONFIG;
    goto out;
  }
  for (i = 0; i < sizeof pg_migrations / sizeof pg_migrations[0]; i++) {
    if (pg_migrations[i].version <= version) continue;
    rc = pg_exec_sql(conn, pg_migrations[i].sql, "apply a migration");
    if (!rc && pg_migrations[i].after) rc = pg_migrations[i].after(conn);
    if (rc) goto out;
    buf_reset(&sql);
    rc = buf_appendf(&sql, "INSERT INTO ragd_schema_migrations(version) VALUES (%d)",
                     pg_migrations[i].version);
    if (!rc) rc = pg_exec_sql(conn, sql.data, "record a migration");
    if (rc) goto out;
    log_info("store: PostgreSQL schema migrated to version %d", pg_migrations[i].version);
  }
  rc = pg_exec_sql(conn, "COMMIT", "commit migration");
  if (!rc) in_txn = 0;
out:
  if (in_txn) {
    PGresult *res = PQexec(conn, "ROLLBACK");
    PQclear(res);
  }
  buf_dispose(&sql);
  return rc;
}

/* Finds pgvector, creating the extension when the server has it and
 * migrate is 1 (as the database owner or a superuser; under the migration
 * lock, since nodes may start together). Without it (or too old) the store
 * still opens: s->why_no_vectors says why, and search_vectors refuses. */
static ragd_err pg_vector_setup(struct pg_store *s, PGconn *conn, int migrate) {
  PGresult *res = NULL;
  int major = 0, minor = 0;
  ragd_err rc;

  res = PQexec(conn, "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'vector'),"
                     " EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')");
  rc = pg_check(conn, res, "look for pgvector");
  if (rc) goto out;
  if (PQgetisnull(res, 0, 0) && strcmp(PQgetvalue(res, 0, 1), "t") == 0 && migrate) {
    PGresult *created = PQexec(conn, "BEGIN; SELECT pg_advisory_xact_lock(" PG_MIGRATION_LOCK ");"
                                     " CREATE EXTENSION IF NOT EXISTS vector; COMMIT");
    if (PQresultStatus(created) != PGRES_COMMAND_OK)
      log_warn("store: cannot create the pgvector extension: %s", PQresultErrorMessage(created));
    else
      log_info("store: created the pgvector extension");
    PQclear(created);
    if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
      PQclear(PQexec(conn, "ROLLBACK"));
    }
    PQclear(res);
    res = PQexec(conn, "SELECT extversion FROM pg_extension WHERE extname = 'vector'");
    rc = pg_check(conn, res, "look for pgvector");
    if (rc) goto out;
    if (PQntuples(res) == 0) {
      s->why_no_vectors = "the database has no pgvector extension, and this role cannot create "
                          "it: run CREATE EXTENSION vector; as a superuser or the database owner";
      goto out;
    }
  } else if (PQgetisnull(res, 0, 0) && strcmp(PQgetvalue(res, 0, 1), "t") == 0) {
    s->why_no_vectors = "the database has no pgvector extension: run CREATE EXTENSION vector; "
                        "as a superuser or the database owner (or start ragd with "
                        "RAGD_STORE_MIGRATE=1)";
    goto out;
  } else if (PQgetisnull(res, 0, 0)) {
    snprintf(s->why_buf, sizeof s->why_buf,
             "the PostgreSQL %d server has no pgvector: install it (Debian and Ubuntu: "
             "postgresql-%d-pgvector from the PGDG apt repository; a managed PostgreSQL: enable "
             "its vector extension), then run CREATE EXTENSION vector;",
             PQserverVersion(conn) / 10000, PQserverVersion(conn) / 10000);
    s->why_no_vectors = s->why_buf;
    goto out;
  }
  if (sscanf(PQgetvalue(res, 0, 0), "%d.%d", &major, &minor) != 2 ||
      (major == 0 && minor < 8)) {
    s->why_no_vectors = "pgvector is older than 0.8.0 (iterative index scans): run ALTER "
                        "EXTENSION vector UPDATE; after upgrading its package";
    goto out;
  }
  s->pgvector = 1;
out:
  PQclear(res);
  return rc;
}

static void pg_close(void *ctx) {
  struct pg_store *s = ctx;
  size_t i;
  if (!s) return;
  for (i = 0; i < s->nconns; i++) PQfinish(s->conns[i].conn);
  free(s->conns);
  free(s->idle);
  free(s->conninfo);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->vec_mu);
  free(s);
}

static ragd_err pg_open(const char *location, const struct store_options *opts, void **ctx) {
  struct pg_store *s;
  ragd_err rc = RAGD_OK;
  int from_version = PG_SCHEMA_VERSION;
  size_t i;

  if (!location || !*location || !opts || !ctx) return RAGD_EINVAL;
  s = calloc(1, sizeof *s);
  if (!s) return RAGD_ENOMEM;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  pthread_mutex_init(&s->vec_mu, NULL);
  s->statement_timeout_ms = opts->statement_timeout_ms;
  s->conninfo = strdup(location);
  s->conns = calloc(opts->pool_size, sizeof *s->conns);
  s->idle = calloc(opts->pool_size, sizeof *s->idle);
  if (!s->conninfo || !s->conns || !s->idle) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  for (i = 0; i < opts->pool_size; i++) {
    s->conns[i].conn = PQconnectdb(s->conninfo);
    s->nconns++;
    if (!s->conns[i].conn) {
      rc = RAGD_ENOMEM;
      goto out;
    }
    PQsetNoticeProcessor(s->conns[i].conn, pg_notice, NULL);
    if (PQstatus(s->conns[i].conn) != CONNECTION_OK) {
      log_error("store: cannot connect to PostgreSQL: %s", PQerrorMessage(s->conns[i].conn));
      rc = RAGD_EIO;
      goto out;
    }
    /* The schema first: statements cannot be prepared against missing tables. */
    if (i == 0) {
      rc = pg_migrate(s->conns[0].conn, opts->migrate, &from_version);
      if (!rc) rc = pg_vector_setup(s, s->conns[0].conn, opts->migrate);
      if (rc) goto out;
    }
    rc = pg_conn_setup(s, &s->conns[i]);
    if (rc) goto out;
    s->idle[s->nidle++] = i;
  }
  if (from_version > 0 && from_version < PG_SCHEMA_STEMMED) {
    log_info("store: re-tokenizing the keyword index (terms are stemmed from schema %d on)",
             PG_SCHEMA_STEMMED);
    rc = pg_rebuild_keyword_index(s);
    if (rc) goto out;
  }
  *ctx = s;
  return RAGD_OK;
out:
  pg_close(s);
  return rc;
}

/* ---- documents ----------------------------------------------------------------------- */

static int pg_format_known(const char *format) {
  return strcmp(format, "text") == 0 || strcmp(format, "markdown") == 0 ||
         strcmp(format, "html") == 0;
}

struct pg_doc_fields {
  const char *external_id;
  const char *title;
  const char *url;
  const char *metadata_json;
  const char *format;
  const char *content;
  size_t content_len;
  const struct text_chunk *chunks;
  size_t chunk_count;
  const char *vector_model;
  size_t vector_dim;
  const float *vectors;
  int64_t *chunk_rowids;
};

static ragd_err pg_doc_fields_init(const struct store_doc_in *doc, struct pg_doc_fields *f) {
  ragd_err rc = store_check_id(doc->external_id, PG_EXTERNAL_ID_MAX);
  if (rc) return rc;
  if (!doc->format || !pg_format_known(doc->format)) return RAGD_EINVAL;
  if (!doc->content && doc->content_len) return RAGD_EINVAL;
  if (doc->chunks && doc->chunks->count && !doc->chunks->items) return RAGD_EINVAL;
  memset(f, 0, sizeof *f);
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
  if (!rc && !pg_utf8_ok(f->content, f->content_len)) rc = RAGD_EUTF8;
  return rc;
}

/* Every chunk usable, checked before the transaction starts. */
static ragd_err pg_chunks_check(const struct pg_doc_fields *f) {
  size_t i;
  for (i = 0; i < f->chunk_count; i++) {
    const struct text_chunk *c = &f->chunks[i];
    const char *heading = c->heading_path ? c->heading_path : "";
    if (!c->text) return RAGD_EINVAL;
    if (!pg_utf8_ok(heading, strlen(heading)) || !pg_utf8_ok(c->text, c->text_len))
      return RAGD_EUTF8;
  }
  return RAGD_OK;
}

struct pg_existing {
  int found;
  int unchanged;
  int64_t id;
  size_t chunk_count;
};

static ragd_err pg_doc_lookup(struct pg_conn *c, const struct pg_doc_fields *f, const char *hash,
                              struct pg_existing *ex) {
  struct pg_params p;
  PGresult *res = NULL;
  ragd_err rc;
  memset(ex, 0, sizeof *ex);
  pp_init(&p);
  pp_text(&p, f->external_id);
  pp_text(&p, hash);
  pp_text(&p, f->title);
  pp_text(&p, f->url);
  pp_text(&p, f->metadata_json);
  pp_text(&p, f->format);
  rc = pg_run(c, PG_DOC_LOOKUP, &p, 0, "look up document", &res);
  if (rc) return rc;
  if (PQntuples(res) == 1) {
    ex->found = 1;
    ex->id = pg_i64(res, 0, 0);
    ex->unchanged = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
    ex->chunk_count = (size_t)pg_i64(res, 0, 3);
  }
  PQclear(res);
  res = NULL;
  /* Unchanged text whose vectors under the wanted model are incomplete is
   * written again, vectors and all. */
  if (ex->unchanged && f->vector_model) {
    pp_init(&p);
    pp_i64(&p, ex->id);
    pp_text(&p, f->vector_model);
    pp_size(&p, f->vector_dim);
    rc = pg_run(c, PG_DOC_VEC_COUNT, &p, 0, "count vectors", &res);
    if (rc) return rc;
    if ((size_t)pg_i64(res, 0, 0) != ex->chunk_count) ex->unchanged = 0;
    PQclear(res);
  }
  return RAGD_OK;
}

static ragd_err pg_vector_insert(struct pg_conn *c, int64_t chunk_id, const char *model,
                                 size_t dim, const float *v) {
  struct pg_params p;
  struct buf arr;
  ragd_err rc;
  buf_init(&arr, 0);
  rc = pg_floats_literal(&arr, '{', v, dim, '}');
  if (rc) goto out;
  pp_init(&p);
  pp_i64(&p, chunk_id);
  pp_text(&p, model);
  pp_size(&p, dim);
  pp_bytes(&p, v, dim * sizeof *v);
  pp_literal(&p, &arr);
  rc = pg_run(c, PG_VEC_INSERT, &p, 0, "insert vector", NULL);
out:
  buf_dispose(&arr);
  return rc;
}

static ragd_err pg_chunk_insert(struct pg_conn *c, int64_t doc_id, size_t ordinal,
                                const struct pg_doc_fields *f, struct pg_tsv *tsv) {
  const struct text_chunk *ch = &f->chunks[ordinal];
  const char *heading = ch->heading_path ? ch->heading_path : "";
  struct pg_params p;
  PGresult *res = NULL;
  int64_t chunk_id;
  ragd_err rc = pg_tsv_build(tsv, f->title, heading, ch->text, ch->text_len);
  if (rc) return rc;
  pp_init(&p);
  pp_i64(&p, doc_id);
  pp_size(&p, ordinal);
  pp_text(&p, heading);
  pp_textn(&p, ch->text, ch->text_len);
  pp_size(&p, ch->token_count);
  pp_size(&p, tsv->terms);
  pp_textn(&p, tsv->out.data ? tsv->out.data : "", tsv->out.len);
  rc = pg_run(c, PG_CHUNK_INSERT, &p, 0, "insert chunk", &res);
  if (rc) return rc;
  chunk_id = pg_i64(res, 0, 0);
  PQclear(res);
  if (f->chunk_rowids) f->chunk_rowids[ordinal] = chunk_id;
  if (f->vector_model)
    rc = pg_vector_insert(c, chunk_id, f->vector_model, f->vector_dim,
                          f->vectors + ordinal * f->vector_dim);
  return rc;
}

static ragd_err pg_doc_write(struct pg_conn *c, const struct pg_existing *ex,
                             const struct pg_doc_fields *f, const char *hash, int64_t *doc_id) {
  struct pg_params p;
  PGresult *res = NULL;
  ragd_err rc;
  pp_init(&p);
  if (ex->found) {
    pp_i64(&p, ex->id);
    rc = pg_run(c, PG_CHUNKS_DELETE_DOC, &p, 0, "delete chunks", NULL);
    if (rc) return rc;
  } else {
    pp_text(&p, f->external_id);
  }
  pp_text(&p, f->title);
  pp_text(&p, f->url);
  pp_text(&p, f->metadata_json);
  pp_text(&p, f->format);
  pp_textn(&p, f->content, f->content_len);
  pp_text(&p, hash);
  pp_i64(&p, clock_wall_s());
  rc = pg_run(c, ex->found ? PG_DOC_UPDATE : PG_DOC_INSERT, &p, 0, "write document", &res);
  if (rc) return rc;
  *doc_id = pg_i64(res, 0, 0);
  PQclear(res);
  return RAGD_OK;
}

static ragd_err pg_put_document(void *ctx, const struct store_doc_in *doc,
                                struct store_put_result *out) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct pg_doc_fields f;
  struct pg_existing ex;
  struct pg_params p;
  struct pg_tsv tsv;
  enum store_put_status status = STORE_PUT_CREATED;
  size_t chunk_count = 0, i;
  char hash[65];
  int64_t doc_id = 0;
  int in_savepoint = 0;
  ragd_err rc;

  if (!s || !doc || !out) return RAGD_EINVAL;
  rc = pg_doc_fields_init(doc, &f);
  if (!rc) rc = pg_chunks_check(&f);
  if (rc) return rc;
  crypto_sha256_hex(f.content, f.content_len, hash);
  buf_init(&tsv.out, 0);
  rc = pg_acquire(s, &c);
  if (rc) goto out;
  if (c->batch) {
    /* in a batch every statement of this document, reads too, runs in its
     * savepoint: an error then undoes this document alone */
    rc = s->batch_broken ? RAGD_EIO : pg_exec_sql(c->conn, "SAVEPOINT ragd_doc", "savepoint");
    if (rc) {
      s->batch_broken = 1;
      goto out;
    }
    in_savepoint = 1;
  }
  /* Re-ingesting an unchanged knowledge base is the common case: answer it
   * without a transaction. */
  rc = pg_doc_lookup(c, &f, hash, &ex);
  if (rc) goto out;
  if (ex.found && ex.unchanged) goto unchanged;
  if (!c->batch) {
    rc = pg_begin(c);
    if (rc) goto out;
  }
  pp_init(&p);
  pp_text(&p, f.external_id);
  rc = pg_run(c, PG_DOC_LOCK, &p, 0, "lock document", NULL);
  if (rc) goto out;
  /* Again under the lock: another node may have written meanwhile. */
  rc = pg_doc_lookup(c, &f, hash, &ex);
  if (rc) goto out;
  if (ex.found && ex.unchanged) goto unchanged;
  rc = pg_doc_write(c, &ex, &f, hash, &doc_id);
  for (i = 0; i < f.chunk_count && !rc; i++) rc = pg_chunk_insert(c, doc_id, i, &f, &tsv);
  if (rc) goto out;
  if (!c->batch) rc = pg_commit(c); /* a batch's savepoint is released below */
  if (rc) goto out;
  status = ex.found ? STORE_PUT_UPDATED : STORE_PUT_CREATED;
  chunk_count = f.chunk_count;
  goto out;
unchanged:
  status = STORE_PUT_UNCHANGED;
  chunk_count = ex.chunk_count;
  doc_id = ex.id;
out:
  /* in a batch: undo this document alone (an error aborted the
   * transaction; rolling back to the savepoint revives it) */
  if (in_savepoint &&
      ((rc && pg_exec_sql(c->conn, "ROLLBACK TO SAVEPOINT ragd_doc", "rollback to savepoint")) ||
       pg_exec_sql(c->conn, "RELEASE SAVEPOINT ragd_doc", "release savepoint"))) {
    s->batch_broken = 1;
    if (!rc) rc = RAGD_EIO;
  }
  pg_release(s, c); /* rolls back what an error left open */
  buf_dispose(&tsv.out);
  if (!rc) {
    out->status = status;
    out->chunk_count = chunk_count;
    out->document_rowid = doc_id;
  }
  return rc;
}

static ragd_err pg_read_doc(const PGresult *res, int row, struct store_doc *d) {
  ragd_err rc = pg_dup(res, row, 0, &d->external_id, NULL);
  if (!rc) rc = pg_dup(res, row, 1, &d->title, NULL);
  if (!rc) rc = pg_dup(res, row, 2, &d->url, NULL);
  if (!rc) rc = pg_dup(res, row, 3, &d->metadata_json, NULL);
  if (!rc) rc = pg_dup(res, row, 4, &d->format, NULL);
  if (!rc) rc = pg_dup(res, row, 5, &d->content_hash, NULL);
  d->created_at = pg_i64(res, row, 6);
  d->updated_at = pg_i64(res, row, 7);
  d->chunk_count = (size_t)pg_i64(res, row, 8);
  return rc;
}

static ragd_err pg_get_document(void *ctx, const char *external_id, struct store_doc *out) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct pg_params p;
  struct store_doc d;
  PGresult *res = NULL;
  ragd_err rc;

  if (!s || !out) return RAGD_EINVAL;
  rc = store_check_id(external_id, PG_EXTERNAL_ID_MAX);
  if (rc == RAGD_EINVAL && external_id) return RAGD_ENOTFOUND;
  if (rc) return rc;
  memset(&d, 0, sizeof d);
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  pp_init(&p);
  pp_text(&p, external_id);
  rc = pg_run(c, PG_DOC_GET, &p, 0, "get document", &res);
  if (rc) goto out;
  if (PQntuples(res) != 1) {
    rc = RAGD_ENOTFOUND;
    goto out;
  }
  rc = pg_read_doc(res, 0, &d);
  if (!rc) rc = pg_dup(res, 0, 9, &d.content, &d.content_len);
out:
  PQclear(res);
  pg_release(s, c);
  if (rc) {
    store_doc_dispose(&d);
    return rc;
  }
  *out = d;
  return RAGD_OK;
}

/* A cursor is the hex of the last external id of a page, as in the SQLite
 * store. */
static char *pg_cursor_encode(const char *external_id) {
  static const char digits[] = "0123456789abcdef";
  size_t n = strlen(external_id), i;
  char *out = malloc(2 * n + 1);
  if (!out) return NULL;
  for (i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)external_id[i];
    out[2 * i] = digits[ch >> 4];
    out[2 * i + 1] = digits[ch & 15];
  }
  out[2 * n] = '\0';
  return out;
}

static int pg_hex_value(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

static ragd_err pg_cursor_decode(const char *cursor, char **out) {
  size_t n = strlen(cursor), i;
  char *id;
  if (n == 0 || n % 2 || n / 2 > PG_EXTERNAL_ID_MAX) return RAGD_EINVAL;
  id = malloc(n / 2 + 1);
  if (!id) return RAGD_ENOMEM;
  for (i = 0; i < n / 2; i++) {
    int hi = pg_hex_value(cursor[2 * i]);
    int lo = pg_hex_value(cursor[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      free(id);
      return RAGD_EINVAL;
    }
    id[i] = (char)(hi << 4 | lo);
  }
  id[n / 2] = '\0';
  if (store_check_id(id, PG_EXTERNAL_ID_MAX)) {
    free(id);
    return RAGD_EINVAL;
  }
  *out = id;
  return RAGD_OK;
}

static ragd_err pg_list_documents(void *ctx, const char *cursor, size_t limit,
                                  struct store_doc_list *out) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct store_doc_list list = {0};
  struct pg_params p;
  PGresult *res = NULL;
  char *after = NULL;
  int rows, i;
  ragd_err rc;

  if (!s || !out || limit < 1 || limit > PG_LIST_LIMIT_MAX) return RAGD_EINVAL;
  if (cursor) {
    rc = pg_cursor_decode(cursor, &after);
    if (rc) return rc;
  }
  rc = pg_acquire(s, &c);
  if (rc) goto out;
  pp_init(&p);
  pp_text(&p, after ? after : ""); /* "" sorts before every external id */
  pp_size(&p, limit + 1);          /* one more row says whether a page follows */
  rc = pg_run(c, PG_DOC_LIST, &p, 0, "list documents", &res);
  if (rc) goto out;
  rows = PQntuples(res);
  list.items = calloc(limit, sizeof *list.items);
  if (!list.items) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  for (i = 0; i < rows && (size_t)i < limit && !rc; i++) {
    list.count++;
    rc = pg_read_doc(res, i, &list.items[i]);
  }
  if (!rc && (size_t)rows > limit) {
    list.next_cursor = pg_cursor_encode(list.items[limit - 1].external_id);
    if (!list.next_cursor) rc = RAGD_ENOMEM;
  }
out:
  PQclear(res);
  pg_release(s, c);
  free(after);
  if (rc) {
    store_doc_list_dispose(&list);
    return rc;
  }
  *out = list;
  return RAGD_OK;
}

static ragd_err pg_delete_document(void *ctx, const char *external_id) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct pg_params p;
  PGresult *res = NULL;
  ragd_err rc;

  if (!s) return RAGD_EINVAL;
  rc = store_check_id(external_id, PG_EXTERNAL_ID_MAX);
  if (rc == RAGD_EINVAL && external_id) return RAGD_ENOTFOUND;
  if (rc) return rc;
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  pp_init(&p);
  pp_text(&p, external_id);
  /* One statement: chunks and vectors go by cascade, atomically. */
  rc = pg_run(c, PG_DOC_DELETE, &p, 0, "delete document", &res);
  if (!rc && PQntuples(res) == 0) rc = RAGD_ENOTFOUND;
  PQclear(res);
  pg_release(s, c);
  return rc;
}

/* ---- search ------------------------------------------------------------------------- */

static ragd_err pg_read_hits(const PGresult *res, struct store_hit_list *out) {
  struct store_hit_list hits = {0};
  int rows = PQntuples(res), i;
  ragd_err rc = RAGD_OK;
  if (rows == 0) goto done;
  hits.items = calloc((size_t)rows, sizeof *hits.items);
  if (!hits.items) return RAGD_ENOMEM;
  for (i = 0; i < rows && !rc; i++) {
    struct store_hit *h = &hits.items[i];
    struct buf id;
    hits.count++;
    rc = pg_dup(res, i, 0, &h->document_id, NULL);
    if (!rc) rc = pg_dup(res, i, 1, &h->title, NULL);
    if (!rc) rc = pg_dup(res, i, 2, &h->url, NULL);
    if (!rc) rc = pg_dup(res, i, 3, &h->heading_path, NULL);
    if (!rc) rc = pg_dup(res, i, 4, &h->text, NULL);
    if (rc) break;
    h->ordinal = (size_t)pg_i64(res, i, 5);
    h->score = strtod(PQgetvalue(res, i, 6), NULL);
    h->chunk_rowid = pg_i64(res, i, 7);
    h->document_rowid = pg_i64(res, i, 8);
    buf_init(&id, 0);
    rc = buf_appendf(&id, "%s#%zu", h->document_id, h->ordinal);
    if (!rc) h->chunk_id = buf_take(&id, NULL);
    if (!rc && !h->chunk_id) rc = RAGD_ENOMEM;
  }
  if (rc) {
    store_hit_list_dispose(&hits);
    return rc;
  }
done:
  *out = hits;
  return RAGD_OK;
}

static ragd_err pg_search_bm25_filtered(void *ctx, const char *query, size_t k,
                                        const char *filters_json, struct store_hit_list *out) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct store_hit_list hits = {0};
  struct pg_query q;
  struct pg_filter f;
  struct pg_params p;
  PGresult *res = NULL;
  ragd_err rc;

  if (!s || !query || !out) return RAGD_EINVAL;
  rc = pg_filter_build(filters_json, &f);
  if (!rc) rc = pg_query_build(query, &q);
  else memset(&q, 0, sizeof q);
  if (rc || q.count == 0 || k == 0) goto out;
  rc = pg_acquire(s, &c);
  if (rc) goto out;
  pp_init(&p);
  pp_literal(&p, &q.terms);
  pp_literal(&p, &q.tqs);
  pp_textn(&p, q.orq.data, q.orq.len);
  pp_size(&p, k);
  pp_literal(&p, &f.keys);
  pp_literal(&p, &f.value_key);
  pp_literal(&p, &f.values);
  rc = pg_run(c, PG_SEARCH, &p, 0, "search", &res);
  if (!rc) rc = pg_read_hits(res, &hits);
out:
  PQclear(res);
  pg_release(s, c);
  pg_query_dispose(&q);
  pg_filter_dispose(&f);
  if (rc) return rc;
  *out = hits;
  return RAGD_OK;
}

static ragd_err pg_search_bm25(void *ctx, const char *query, size_t k,
                               struct store_hit_list *out) {
  return pg_search_bm25_filtered(ctx, query, k, NULL, out);
}

static ragd_err pg_filter_documents(void *ctx, const char *filters_json, int64_t **rowids,
                                   size_t *count) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct pg_filter f;
  struct pg_params p;
  PGresult *res = NULL;
  int64_t *ids = NULL;
  int rows = 0, i;
  ragd_err rc;

  if (!s || !rowids || !count) return RAGD_EINVAL;
  *rowids = NULL;
  *count = 0;
  rc = pg_filter_build(filters_json, &f);
  if (rc) goto out;
  rc = pg_acquire(s, &c);
  if (rc) goto out;
  pp_init(&p);
  pp_literal(&p, &f.keys);
  pp_literal(&p, &f.value_key);
  pp_literal(&p, &f.values);
  rc = pg_run(c, PG_FILTER_DOCS, &p, 0, "filter documents", &res);
  if (rc) goto out;
  rows = PQntuples(res);
  if (rows) {
    ids = malloc((size_t)rows * sizeof *ids);
    if (!ids) {
      rc = RAGD_ENOMEM;
      goto out;
    }
  }
  for (i = 0; i < rows; i++) ids[i] = pg_i64(res, i, 0);
out:
  PQclear(res);
  pg_release(s, c);
  pg_filter_dispose(&f);
  if (rc) {
    free(ids);
    return rc;
  }
  *rowids = ids;
  *count = (size_t)rows;
  return RAGD_OK;
}

/* ---- vectors ---------------------------------------------------------------------------- */

static ragd_err pg_get_chunks(void *ctx, const int64_t *chunk_rowids, size_t n,
                              struct store_hit_list *out) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct store_hit_list hits = {0};
  struct pg_params p;
  struct buf ids;
  PGresult *res = NULL;
  ragd_err rc = RAGD_OK;
  size_t i;

  if (!s || !out || (n && !chunk_rowids)) return RAGD_EINVAL;
  if (n == 0) {
    *out = hits;
    return RAGD_OK;
  }
  buf_init(&ids, 0);
  rc = buf_append_char(&ids, '{');
  for (i = 0; i < n && !rc; i++)
    rc = buf_appendf(&ids, "%s%lld", i ? "," : "", (long long)chunk_rowids[i]);
  if (!rc) rc = buf_append_char(&ids, '}');
  if (!rc) rc = pg_acquire(s, &c);
  if (rc) goto out;
  pp_init(&p);
  pp_literal(&p, &ids);
  rc = pg_run(c, PG_CHUNK_GET, &p, 0, "get chunks", &res);
  if (!rc) rc = pg_read_hits(res, &hits);
out:
  PQclear(res);
  pg_release(s, c);
  buf_dispose(&ids);
  if (rc) return rc;
  *out = hits;
  return RAGD_OK;
}

/* A big-endian integer of `bytes` bytes (PostgreSQL's binary results). */
static uint64_t pg_be(const char *p, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; i++) v = v << 8 | (unsigned char)p[i];
  return v;
}

static int64_t pg_be64(const char *p) { return (int64_t)pg_be(p, 8); }

/* Streams the rows one at a time (single-row mode): a large knowledge base's
 * vectors never sit in memory twice. Binary results: ids are 8-byte big
 * endian, the blob is the raw floats. */
static ragd_err pg_load_vectors(void *ctx, const char *model, size_t dim, store_vector_cb cb,
                                void *cb_ctx) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct pg_params p;
  PGresult *res;
  float *v = NULL;
  size_t skipped = 0;
  int stopped = 0;
  char name[64];
  ragd_err rc;

  if (!s || !model || !cb || dim == 0) return RAGD_EINVAL;
  v = malloc(dim * sizeof *v);
  if (!v) return RAGD_ENOMEM;
  rc = pg_acquire(s, &c);
  if (rc) goto out;
  pp_init(&p);
  pp_text(&p, model);
  pp_size(&p, dim);
  snprintf(name, sizeof name, "%s%d", c->prefix, (int)PG_VEC_LOAD);
  if (!PQsendQueryPrepared(c->conn, name, p.n, p.values, p.lengths, p.formats, 1) ||
      !PQsetSingleRowMode(c->conn)) {
    log_error("store: load vectors: %s", PQerrorMessage(c->conn));
    rc = RAGD_EIO;
    goto out;
  }
  /* Every result must be read before the connection can be used again. */
  while ((res = PQgetResult(c->conn)) != NULL) {
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_SINGLE_TUPLE && !rc && !stopped) {
      if (PQgetlength(res, 0, 0) != 8 || PQgetlength(res, 0, 1) != 8 ||
          (size_t)PQgetlength(res, 0, 2) != dim * sizeof *v) {
        skipped++;
      } else {
        memcpy(v, PQgetvalue(res, 0, 2), dim * sizeof *v);
        if (cb(cb_ctx, pg_be64(PQgetvalue(res, 0, 0)), pg_be64(PQgetvalue(res, 0, 1)), v, dim)) {
          stopped = 1;
          rc = RAGD_ECANCELLED;
        }
      }
    } else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK && !rc) {
      rc = pg_check(c->conn, res, "load vectors");
    }
    PQclear(res);
  }
out:
  pg_release(s, c);
  if (skipped) log_warn("store: %zu vectors of %s had the wrong size and were skipped", skipped, model);
  free(v);
  return rc;
}

/* Migration 6: fills embedding (real[]) from the bytea of every vector
 * stored before, in batches, in the migration's transaction. A row whose
 * bytes do not match its dimension is left NULL (never searched). */
static ragd_err pg_backfill_embeddings(PGconn *conn) {
  struct buf ids, models, arrays, one, after_model;
  int64_t after_id = -1;
  size_t total = 0;
  ragd_err rc = RAGD_OK;

  buf_init(&ids, 0);
  buf_init(&models, 0);
  buf_init(&arrays, 0);
  buf_init(&one, 0);
  buf_init(&after_model, 0);
  for (;;) {
    const char *values[2];
    char idtxt[24];
    PGresult *res;
    int rows, i;
    snprintf(idtxt, sizeof idtxt, "%lld", (long long)after_id);
    values[0] = idtxt;
    values[1] = after_model.data ? after_model.data : "";
    res = PQexecParams(conn,
                       "SELECT chunk_id, model, dimensions, data FROM vectors"
                       " WHERE embedding IS NULL AND (chunk_id, model) > ($1::bigint, $2::text)"
                       " ORDER BY chunk_id, model LIMIT 500",
                       2, NULL, values, NULL, NULL, 1);
    rc = pg_check(conn, res, "read vectors to convert");
    rows = rc ? 0 : PQntuples(res);
    buf_reset(&ids);
    buf_reset(&models);
    buf_reset(&arrays);
    for (i = 0; i < rows && !rc; i++) {
      const char *data = PQgetvalue(res, i, 3);
      size_t len = (size_t)PQgetlength(res, i, 3);
      size_t dim = (size_t)pg_be(PQgetvalue(res, i, 2), 4);
      float *v;
      after_id = pg_be64(PQgetvalue(res, i, 0));
      buf_reset(&after_model);
      rc = buf_append(&after_model, PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1));
      if (rc || dim == 0 || len != dim * sizeof(float)) continue;
      v = malloc(len);
      if (!v) {
        rc = RAGD_ENOMEM;
        break;
      }
      memcpy(v, data, len);
      buf_reset(&one);
      rc = pg_floats_literal(&one, '{', v, dim, '}');
      free(v);
      snprintf(idtxt, sizeof idtxt, "%lld", (long long)after_id);
      if (!rc) rc = pg_array_elem(&ids, idtxt, strlen(idtxt));
      if (!rc) rc = pg_array_elem(&models, after_model.data, after_model.len);
      if (!rc) rc = pg_array_elem(&arrays, one.data, one.len);
      total++;
    }
    PQclear(res);
    if (rc || rows == 0) break;
    if (ids.len == 0) continue;
    rc = pg_array_end(&ids);
    if (!rc) rc = pg_array_end(&models);
    if (!rc) rc = pg_array_end(&arrays);
    if (rc) break;
    {
      const char *uv[3] = {ids.data, models.data, arrays.data};
      res = PQexecParams(conn,
                         "UPDATE vectors v SET embedding = u.e::real[]"
                         " FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(id, model, e)"
                         " WHERE v.chunk_id = u.id AND v.model = u.model",
                         3, NULL, uv, NULL, NULL, 0);
    }
    rc = pg_check(conn, res, "convert vectors");
    PQclear(res);
    if (rc) break;
  }
  if (!rc && total) log_info("store: converted %zu stored vectors for pgvector", total);
  buf_dispose(&ids);
  buf_dispose(&models);
  buf_dispose(&arrays);
  buf_dispose(&one);
  buf_dispose(&after_model);
  return rc;
}

static int pg_vector_search_available(void *ctx, const char **why) {
  struct pg_store *s = ctx;
  if (s && s->pgvector) return 1;
  if (why) *why = s && s->why_no_vectors ? s->why_no_vectors : "no PostgreSQL store";
  return 0;
}

/* The SQL type a set's vectors are indexed and compared as: HNSW takes
 * vector up to 2,000 dimensions and halfvec up to 4,000; beyond that there
 * is no index (exact scans). */
static const char *pg_vector_type(size_t dim) {
  return dim > PG_HNSW_VECTOR_MAX && dim <= PG_HNSW_HALFVEC_MAX ? "halfvec" : "vector";
}

/* The set's name: SHA-256 of "<dim>/<model>" (index and statement names). */
static void pg_vector_set_id(const char *model, size_t dim, char out[65]) {
  struct buf key;
  buf_init(&key, 0);
  if (buf_appendf(&key, "%zu/%s", dim, model) == RAGD_OK) crypto_sha256_hex(key.data, key.len, out);
  else out[0] = '\0';
  buf_dispose(&key);
}

/* Makes sure the set has its partial HNSW index (cosine) on c, once per
 * process and set: CREATE INDEX IF NOT EXISTS under the migration lock, so
 * that nodes starting together build it once, without a statement timeout
 * (a large set takes a while). */
static ragd_err pg_vector_index_ensure(struct pg_store *s, struct pg_conn *c, const char *model,
                                       size_t dim, const char *set) {
  struct buf sql;
  char *lit = NULL;
  const char *ty = pg_vector_type(dim);
  ragd_err rc = RAGD_OK;

  pthread_mutex_lock(&s->vec_mu);
  if (strcmp(s->vec_indexed, set) == 0 || dim > PG_HNSW_HALFVEC_MAX) goto out;
  buf_init(&sql, 0);
  lit = PQescapeLiteral(c->conn, model, strlen(model));
  if (!lit) {
    rc = RAGD_ENOMEM;
    goto out_sql;
  }
  rc = buf_appendf(&sql,
                   "BEGIN; SET LOCAL statement_timeout = 0;"
                   " SELECT pg_advisory_xact_lock(" PG_MIGRATION_LOCK ");"
                   " CREATE INDEX IF NOT EXISTS vectors_hnsw_%.16s ON vectors USING hnsw"
                   " ((embedding::%s(%zu)) %s_cosine_ops) WHERE model = %s AND dimensions = %zu;"
                   " COMMIT",
                   set, ty, dim, ty, lit, dim);
  if (!rc) rc = pg_exec_sql(c->conn, sql.data, "create the HNSW index");
  if (!rc) memcpy(s->vec_indexed, set, 65);
out_sql:
  PQfreemem(lit);
  buf_dispose(&sql);
out:
  pthread_mutex_unlock(&s->vec_mu);
  return rc;
}

/* Prepares the set's search statement on c (once per connection and set).
 * Model and dimension are literals in the text: the planner matches the
 * partial index's predicate and expression only then.
 *   $1 query vector, $2 feedback chunk ids, $3 feedback weight, $4 k,
 *   $5..$7 filter (PG_FILTER).
 * Rocchio: normalize(q + w * mean(feedback vectors)), or q when none has a
 * vector. A NaN distance (a zero stored vector) scores 0, as the in-memory
 * dot product does. */
static ragd_err pg_vector_prepare(struct pg_conn *c, const char *model, size_t dim,
                                  const char *set) {
  struct buf sql;
  char name[80];
  char *lit;
  const char *ty = pg_vector_type(dim);
  PGresult *res;
  ragd_err rc;

  if (strcmp(c->vec_set, set) == 0) return RAGD_OK;
  snprintf(name, sizeof name, "%svs", c->prefix);
  if (c->vec_set[0]) {
    struct buf dealloc;
    buf_init(&dealloc, 0);
    rc = buf_appendf(&dealloc, "DEALLOCATE %s", name);
    if (!rc) rc = pg_exec_sql(c->conn, dealloc.data, "drop a vector statement");
    buf_dispose(&dealloc);
    if (rc) return rc;
    c->vec_set[0] = '\0';
  }
  lit = PQescapeLiteral(c->conn, model, strlen(model));
  if (!lit) return RAGD_ENOMEM;
  buf_init(&sql, 0);
  rc = buf_appendf(
      &sql,
      "WITH q AS (SELECT coalesce(l2_normalize($1::vector(%zu) + (SELECT avg(f.embedding::vector(%zu))"
      " FROM vectors f WHERE f.model = %s AND f.dimensions = %zu AND f.chunk_id = ANY($2::bigint[]))"
      " * array_fill($3::real, ARRAY[%zu])::vector(%zu)), $1::vector(%zu)) AS v),"
      " s AS (SELECT v.chunk_id, v.embedding::%s(%zu) <=> (SELECT q.v::%s(%zu) FROM q) AS dist"
      " FROM vectors v JOIN chunks c ON c.id = v.chunk_id JOIN documents dd ON dd.id = c.document_id"
      " WHERE v.model = %s AND v.dimensions = %zu AND " PG_FILTER("$5", "$6", "$7")
      " ORDER BY dist LIMIT $4::bigint)"
      " SELECT d.external_id, d.title, d.url, c.heading_path, c.text, c.ordinal,"
      " CASE WHEN s.dist = 'NaN'::float8 THEN 0 ELSE 1 - s.dist END, c.id, d.id"
      " FROM s JOIN chunks c ON c.id = s.chunk_id JOIN documents d ON d.id = c.document_id"
      " ORDER BY s.dist, c.id",
      dim, dim, lit, dim, dim, dim, dim, ty, dim, ty, dim, lit, dim);
  PQfreemem(lit);
  if (rc) goto out;
  res = PQprepare(c->conn, name, sql.data, 0, NULL);
  rc = pg_check(c->conn, res, "prepare the vector search");
  PQclear(res);
  if (!rc) memcpy(c->vec_set, set, 65);
out:
  buf_dispose(&sql);
  return rc;
}

static ragd_err pg_search_vectors(void *ctx, const struct store_vector_query *q,
                                  struct store_hit_list *out) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct store_hit_list hits = {0};
  struct buf qv, fb, w;
  struct pg_filter f;
  struct pg_params p;
  PGresult *res = NULL;
  char set[65], name[80];
  int nonzero = 0;
  size_t i;
  ragd_err rc;

  if (!s || !q || !out || !q->model || !q->model[0] || q->dim == 0 || (q->k && !q->vector))
    return RAGD_EINVAL;
  memset(out, 0, sizeof *out);
  if (!s->pgvector) return RAGD_EUNSUPPORTED;
  buf_init(&qv, 0);
  buf_init(&fb, 0);
  buf_init(&w, 0);
  rc = pg_filter_build(q->filters_json, &f);
  if (rc) goto out;
  pg_vector_set_id(q->model, q->dim, set);
  if (!set[0]) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  rc = pg_acquire(s, &c);
  if (!rc) rc = pg_vector_index_ensure(s, c, q->model, q->dim, set);
  if (rc || q->k == 0) goto out;
  for (i = 0; i < q->dim && !nonzero; i++) nonzero = q->vector[i] != 0.0f;
  if (!nonzero) goto out;
  rc = pg_vector_prepare(c, q->model, q->dim, set);
  if (!rc) rc = pg_floats_literal(&qv, '[', q->vector, q->dim, ']');
  for (i = 0; !rc && q->feedback_weight > 0 && i < q->feedback_count; i++)
    rc = buf_appendf(&fb, i ? ",%lld" : "{%lld", (long long)q->feedback_rowids[i]);
  if (!rc) rc = fb.len ? buf_append_char(&fb, '}') : buf_append_str(&fb, "{}");
  if (!rc) rc = buf_appendf(&w, "%.9g", q->feedback_weight > 0 ? q->feedback_weight : 0.0);
  if (rc) goto out;
  pp_init(&p);
  pp_literal(&p, &qv);
  pp_literal(&p, &fb);
  pp_literal(&p, &w);
  pp_size(&p, q->k);
  pp_literal(&p, &f.keys);
  pp_literal(&p, &f.value_key);
  pp_literal(&p, &f.values);
  snprintf(name, sizeof name, "%svs", c->prefix);
  res = PQexecPrepared(c->conn, name, p.n, p.values, p.lengths, p.formats, 0);
  rc = pg_check(c->conn, res, "vector search");
  if (!rc) rc = pg_read_hits(res, &hits);
out:
  PQclear(res);
  pg_release(s, c);
  pg_filter_dispose(&f);
  buf_dispose(&qv);
  buf_dispose(&fb);
  buf_dispose(&w);
  if (rc) return rc;
  *out = hits;
  return RAGD_OK;
}

static ragd_err pg_vector_models(void *ctx, struct store_vector_model_list *out) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct store_vector_model_list list = {0};
  PGresult *res = NULL;
  int rows, i;
  ragd_err rc;

  if (!s || !out) return RAGD_EINVAL;
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  rc = pg_run(c, PG_VEC_MODELS, NULL, 0, "list vector models", &res);
  if (rc) goto out;
  rows = PQntuples(res);
  if (rows) {
    list.items = calloc((size_t)rows, sizeof *list.items);
    if (!list.items) {
      rc = RAGD_ENOMEM;
      goto out;
    }
  }
  for (i = 0; i < rows && !rc; i++) {
    struct store_vector_model *m = &list.items[i];
    list.count++;
    rc = pg_dup(res, i, 0, &m->model, NULL);
    m->dimensions = (size_t)pg_i64(res, i, 1);
    m->count = (size_t)pg_i64(res, i, 2);
  }
out:
  PQclear(res);
  pg_release(s, c);
  if (rc) {
    store_vector_model_list_dispose(&list);
    return rc;
  }
  *out = list;
  return RAGD_OK;
}

static ragd_err pg_chunks_without_vectors(void *ctx, const char *model, size_t dim,
                                          int64_t after_rowid, size_t limit,
                                          struct store_chunk_text_list *out) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct store_chunk_text_list list = {0};
  struct pg_params p;
  PGresult *res = NULL;
  int rows, i;
  ragd_err rc;

  if (!s || !model || !out || limit == 0 || limit > 100000) return RAGD_EINVAL;
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  pp_init(&p);
  pp_text(&p, model);
  pp_size(&p, dim);
  pp_i64(&p, after_rowid);
  pp_size(&p, limit);
  rc = pg_run(c, PG_CHUNKS_NO_VEC, &p, 0, "list chunks to embed", &res);
  if (rc) goto out;
  rows = PQntuples(res);
  list.items = calloc(rows ? (size_t)rows : 1, sizeof *list.items);
  if (!list.items) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  for (i = 0; i < rows && !rc; i++) {
    struct store_chunk_text *ct = &list.items[i];
    list.count++;
    ct->chunk_rowid = pg_i64(res, i, 0);
    ct->document_rowid = pg_i64(res, i, 1);
    rc = pg_dup(res, i, 2, &ct->title, NULL);
    if (!rc) rc = pg_dup(res, i, 3, &ct->heading_path, NULL);
    if (!rc) rc = pg_dup(res, i, 4, &ct->text, NULL);
  }
out:
  PQclear(res);
  pg_release(s, c);
  if (rc) {
    store_chunk_text_list_dispose(&list);
    return rc;
  }
  *out = list;
  return RAGD_OK;
}

static ragd_err pg_put_vectors(void *ctx, const char *model, size_t dim,
                               const int64_t *chunk_rowids, const float *vectors, size_t n) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  ragd_err rc;
  size_t i;

  if (!s || !model || !model[0] || dim == 0 || (n && (!chunk_rowids || !vectors)))
    return RAGD_EINVAL;
  if (n == 0) return RAGD_OK;
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  rc = pg_begin(c);
  for (i = 0; i < n && !rc; i++)
    rc = pg_vector_insert(c, chunk_rowids[i], model, dim, vectors + i * dim);
  if (!rc) rc = pg_commit(c);
  pg_release(s, c);
  return rc;
}

static ragd_err pg_delete_other_vectors(void *ctx, const char *model, size_t dim,
                                        size_t *deleted) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct pg_params p;
  PGresult *res = NULL;
  ragd_err rc;

  if (!s || !model) return RAGD_EINVAL;
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  pp_init(&p);
  pp_text(&p, model);
  pp_size(&p, dim);
  rc = pg_run(c, PG_VEC_DELETE_OTHER, &p, 0, "delete other vectors", &res);
  if (!rc && deleted) *deleted = (size_t)strtoull(PQcmdTuples(res), NULL, 10);
  PQclear(res);
  pg_release(s, c);
  return rc;
}

static ragd_err pg_probe_document(void *ctx, const struct store_doc_in *doc, int *unchanged) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct pg_doc_fields f;
  struct pg_existing ex;
  char hash[65];
  ragd_err rc;

  if (!s || !doc || !unchanged) return RAGD_EINVAL;
  *unchanged = 0;
  rc = pg_doc_fields_init(doc, &f);
  /* The probe comes before the vectors exist: only their model matters. */
  if (rc == RAGD_EINVAL && doc->vector_model && !doc->vectors) {
    struct store_doc_in copy = *doc;
    copy.vector_model = NULL;
    rc = pg_doc_fields_init(&copy, &f);
    f.vector_model = doc->vector_model;
    f.vector_dim = doc->vector_dim;
  }
  if (rc) return rc;
  crypto_sha256_hex(f.content, f.content_len, hash);
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  rc = pg_doc_lookup(c, &f, hash, &ex);
  pg_release(s, c);
  if (!rc) *unchanged = ex.found && ex.unchanged;
  return rc;
}

/* Re-tokenizes every chunk in one transaction (rows locked as they are read). */
static ragd_err pg_rebuild_keyword_index(void *ctx) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct pg_params p;
  struct pg_tsv tsv;
  PGresult *res = NULL;
  int rows, i;
  ragd_err rc;

  if (!s) return RAGD_EINVAL;
  buf_init(&tsv.out, 0);
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  rc = pg_begin(c);
  if (!rc) rc = pg_run(c, PG_CHUNKS_ALL, NULL, 0, "read chunks", &res);
  if (rc) goto out;
  rows = PQntuples(res);
  for (i = 0; i < rows && !rc; i++) {
    rc = pg_tsv_build(&tsv, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), PQgetvalue(res, i, 3),
                      (size_t)PQgetlength(res, i, 3));
    if (rc) break;
    pp_init(&p);
    pp_i64(&p, pg_i64(res, i, 0));
    pp_textn(&p, tsv.out.data ? tsv.out.data : "", tsv.out.len);
    pp_size(&p, tsv.terms);
    rc = pg_run(c, PG_CHUNK_RETERM, &p, 0, "re-index chunk", NULL);
  }
  if (!rc) rc = pg_commit(c);
out:
  PQclear(res);
  pg_release(s, c);
  buf_dispose(&tsv.out);
  return rc;
}

/* ---- conversations ------------------------------------------------------------------ */


/* A nullable text column: NULL stays NULL. */
static ragd_err pg_dup_opt(const PGresult *res, int row, int col, char **out) {
  if (PQgetisnull(res, row, col)) {
    *out = NULL;
    return RAGD_OK;
  }
  return pg_dup(res, row, col, out, NULL);
}

/* A nullable count column: NULL is -1 (unknown). */
static long pg_count(const PGresult *res, int row, int col) {
  if (PQgetisnull(res, row, col)) return -1;
  return (long)pg_i64(res, row, col);
}

static ragd_err pg_put_message(void *ctx, const struct store_message_in *m) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct pg_params p;
  PGresult *res = NULL;
  int64_t now;
  ragd_err rc;

  if (!s) return RAGD_EINVAL;
  rc = store_validate_message(m);
  if (rc) return rc;
  now = m->created_at > 0 ? m->created_at : clock_wall_s();
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  rc = pg_begin(c);
  if (rc) goto out;
  pp_init(&p);
  pp_text(&p, m->conversation_id);
  pp_i64(&p, now);
  rc = pg_run(c, PG_CONV_TOUCH, &p, 0, "touch conversation", NULL);
  if (rc) goto out;
  pp_init(&p);
  pp_text(&p, m->conversation_id);
  pp_text(&p, m->role);
  pp_text(&p, m->content);
  pp_i64(&p, now);
  pp_text(&p, m->message_id);
  pp_text(&p, m->retrieval_query);
  pp_text(&p, m->sources_json ? m->sources_json : "[]");
  pp_text(&p, m->cited_json ? m->cited_json : "[]");
  pp_text(&p, m->provider);
  pp_text(&p, m->model);
  pp_text(&p, m->finish_reason);
  pp_count(&p, m->tokens);
  pp_count(&p, m->prompt_tokens);
  rc = pg_run(c, PG_MSG_PUT, &p, 0, "insert message", &res);
  if (rc) goto out;
  /* The message id is taken: pg_release rolls the touch back. */
  if (PQntuples(res) == 0) {
    rc = RAGD_EINVAL;
    goto out;
  }
  rc = pg_commit(c);
out:
  PQclear(res);
  pg_release(s, c);
  return rc;
}

static ragd_err pg_append_message(void *ctx, const char *conversation_id, const char *role,
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
  return pg_put_message(ctx, &m);
}

static ragd_err pg_list_messages(void *ctx, const char *conversation_id, size_t limit,
                                 struct store_message_list *out) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct store_message_list list = {0};
  struct pg_params p;
  PGresult *res = NULL;
  int rows, i;
  ragd_err rc = RAGD_OK;

  if (!s || !conversation_id || !out) return RAGD_EINVAL;
  if (limit == 0) goto done;
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  pp_init(&p);
  pp_text(&p, conversation_id);
  pp_size(&p, limit);
  rc = pg_run(c, PG_MSG_LIST, &p, 0, "list messages", &res);
  if (rc) goto out;
  rows = PQntuples(res);
  if (rows) {
    list.items = calloc((size_t)rows, sizeof *list.items);
    if (!list.items) {
      rc = RAGD_ENOMEM;
      goto out;
    }
  }
  for (i = 0; i < rows && !rc; i++) {
    struct store_message *m = &list.items[i];
    list.count++;
    m->created_at = pg_i64(res, i, 2);
    m->tokens = -1;
    m->prompt_tokens = -1;
    rc = pg_dup(res, i, 0, &m->role, NULL);
    if (!rc) rc = pg_dup(res, i, 1, &m->content, NULL);
    if (!rc) rc = pg_dup(res, i, 3, &m->id, NULL);
    if (!rc) rc = pg_dup(res, i, 4, &m->retrieval_query, NULL);
  }
out:
  PQclear(res);
  pg_release(s, c);
  if (rc) {
    store_message_list_dispose(&list);
    return rc;
  }
done:
  *out = list;
  return RAGD_OK;
}

/* ---- transcripts, retention, feedback ------------------------------------------------- */

/* One message of a PG_CONV_GET row (its columns from 2 on) into *m. */
static ragd_err pg_read_message(const PGresult *res, int row, struct store_message *m) {
  ragd_err rc;
  memset(m, 0, sizeof *m);
  m->created_at = pg_i64(res, row, 4);
  m->tokens = pg_count(res, row, 12);
  m->prompt_tokens = pg_count(res, row, 13);
  rc = pg_dup(res, row, 2, &m->role, NULL);
  if (!rc) rc = pg_dup(res, row, 3, &m->content, NULL);
  if (!rc) rc = pg_dup(res, row, 5, &m->id, NULL);
  if (!rc) rc = pg_dup(res, row, 6, &m->retrieval_query, NULL);
  if (!rc) rc = pg_dup(res, row, 7, &m->sources_json, NULL);
  if (!rc) rc = pg_dup(res, row, 8, &m->cited_json, NULL);
  if (!rc) rc = pg_dup(res, row, 9, &m->provider, NULL);
  if (!rc) rc = pg_dup(res, row, 10, &m->model, NULL);
  if (!rc) rc = pg_dup(res, row, 11, &m->finish_reason, NULL);
  if (!rc) rc = pg_dup_opt(res, row, 14, &m->feedback_rating);
  if (!rc) rc = pg_dup_opt(res, row, 15, &m->feedback_comment);
  return rc;
}

static ragd_err pg_get_conversation(void *ctx, const char *conversation_id,
                                    struct store_conversation *out) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct store_conversation conv;
  struct pg_params p;
  PGresult *res = NULL;
  int rows, i;
  ragd_err rc;

  if (!s || !out) return RAGD_EINVAL;
  rc = store_check_id(conversation_id, STORE_CONVERSATION_ID_MAX);
  if (rc) return rc;
  memset(&conv, 0, sizeof conv);
  conv.id = strdup(conversation_id);
  if (!conv.id) return RAGD_ENOMEM;
  rc = pg_acquire(s, &c);
  if (rc) goto out;
  pp_init(&p);
  pp_text(&p, conversation_id);
  rc = pg_run(c, PG_CONV_GET, &p, 0, "get conversation", &res);
  if (rc) goto out;
  rows = PQntuples(res);
  if (rows == 0) {
    rc = RAGD_ENOTFOUND;
    goto out;
  }
  conv.created_at = pg_i64(res, 0, 0);
  conv.updated_at = pg_i64(res, 0, 1);
  /* A conversation without messages is one row of NULL message columns. */
  if (PQgetisnull(res, 0, 5)) rows = 0;
  if (rows) {
    conv.messages.items = calloc((size_t)rows, sizeof *conv.messages.items);
    if (!conv.messages.items) {
      rc = RAGD_ENOMEM;
      goto out;
    }
  }
  for (i = 0; i < rows && !rc; i++) {
    conv.messages.count++;
    rc = pg_read_message(res, i, &conv.messages.items[i]);
  }
out:
  PQclear(res);
  pg_release(s, c);
  if (rc) {
    store_conversation_dispose(&conv);
    return rc;
  }
  *out = conv;
  return RAGD_OK;
}

static ragd_err pg_delete_conversation(void *ctx, const char *conversation_id) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct pg_params p;
  PGresult *res = NULL;
  ragd_err rc;

  if (!s) return RAGD_EINVAL;
  rc = store_check_id(conversation_id, STORE_CONVERSATION_ID_MAX);
  if (rc) return rc;
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  pp_init(&p);
  pp_text(&p, conversation_id);
  rc = pg_run(c, PG_CONV_DELETE, &p, 0, "delete conversation", &res);
  if (!rc && strtoull(PQcmdTuples(res), NULL, 10) == 0) rc = RAGD_ENOTFOUND;
  PQclear(res);
  pg_release(s, c);
  return rc;
}

static ragd_err pg_delete_conversations_before(void *ctx, int64_t before, size_t *deleted) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct pg_params p;
  PGresult *res = NULL;
  ragd_err rc;

  if (deleted) *deleted = 0;
  if (!s) return RAGD_EINVAL;
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  pp_init(&p);
  pp_i64(&p, before);
  rc = pg_run(c, PG_CONV_EXPIRE, &p, 0, "expire conversations", &res);
  if (!rc && deleted) *deleted = (size_t)strtoull(PQcmdTuples(res), NULL, 10);
  PQclear(res);
  pg_release(s, c);
  return rc;
}

static ragd_err pg_put_feedback(void *ctx, const struct store_feedback_in *f, int *created) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct pg_params p;
  PGresult *res = NULL;
  const char *comment;
  int64_t row = 0;
  int existed = 0;
  ragd_err rc;

  if (!s) return RAGD_EINVAL;
  rc = store_validate_feedback(f);
  if (rc) return rc;
  comment = f->comment ? f->comment : "";
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  rc = pg_begin(c);
  if (rc) goto out;
  pp_init(&p);
  pp_text(&p, f->conversation_id);
  pp_text(&p, f->message_id);
  rc = pg_run(c, PG_FB_TARGET, &p, 0, "find rated message", &res);
  if (rc) goto out;
  if (PQntuples(res) == 0) {
    rc = RAGD_ENOTFOUND;
    goto out;
  }
  row = pg_i64(res, 0, 0);
  PQclear(res);
  res = NULL;
  /* A statement of its own: its snapshot is taken after the lock above was
   * granted, so it sees a rating another node committed meanwhile. */
  pp_init(&p);
  pp_i64(&p, row);
  rc = pg_run(c, PG_FB_EXISTS, &p, 0, "find earlier feedback", &res);
  if (rc) goto out;
  existed = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
  pp_init(&p);
  pp_i64(&p, row);
  pp_text(&p, f->rating);
  pp_text(&p, comment);
  pp_i64(&p, clock_wall_s());
  rc = pg_run(c, PG_FB_PUT, &p, 0, "store feedback", NULL);
  if (!rc) rc = pg_commit(c);
  if (!rc && created) *created = !existed;
out:
  PQclear(res);
  pg_release(s, c);
  return rc;
}

/* Streams the rows one at a time (single-row mode), as load_vectors does:
 * an export of every rating never sits in memory whole. */
static ragd_err pg_list_feedback(void *ctx, int64_t since, store_feedback_cb cb, void *cb_ctx) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct pg_params p;
  PGresult *res;
  int stopped = 0;
  char name[64];
  ragd_err rc;

  if (!s || !cb) return RAGD_EINVAL;
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  pp_init(&p);
  pp_i64(&p, since);
  snprintf(name, sizeof name, "%s%d", c->prefix, (int)PG_FB_LIST);
  if (!PQsendQueryPrepared(c->conn, name, p.n, p.values, p.lengths, p.formats, 0) ||
      !PQsetSingleRowMode(c->conn)) {
    log_error("store: list feedback: %s", PQerrorMessage(c->conn));
    rc = RAGD_EIO;
    goto out;
  }
  /* Every result must be read before the connection can be used again. */
  while ((res = PQgetResult(c->conn)) != NULL) {
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_SINGLE_TUPLE && !rc && !stopped) {
      struct store_feedback_row row;
      row.conversation_id = PQgetvalue(res, 0, 0);
      row.message_id = PQgetvalue(res, 0, 1);
      row.rating = PQgetvalue(res, 0, 2);
      row.comment = PQgetvalue(res, 0, 3);
      row.created_at = pg_i64(res, 0, 4);
      row.updated_at = pg_i64(res, 0, 5);
      row.question = PQgetvalue(res, 0, 6);
      row.answer = PQgetvalue(res, 0, 7);
      row.provider = PQgetvalue(res, 0, 8);
      row.model = PQgetvalue(res, 0, 9);
      row.sources_json = PQgetvalue(res, 0, 10);
      row.cited_json = PQgetvalue(res, 0, 11);
      if (cb(cb_ctx, &row)) {
        stopped = 1;
        rc = RAGD_ECANCELLED;
      }
    } else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK && !rc) {
      rc = pg_check(c->conn, res, "list feedback");
    }
    PQclear(res);
  }
out:
  pg_release(s, c);
  return rc;
}

/* ---- API keys --------------------------------------------------------------------------- */



static ragd_err pg_key_read(const PGresult *res, int row, struct store_key *k) {
  ragd_err rc;
  memset(k, 0, sizeof *k);
  rc = pg_dup(res, row, 0, &k->id, NULL);
  if (!rc) rc = pg_dup(res, row, 1, &k->name, NULL);
  if (!rc) rc = pg_dup(res, row, 2, &k->scope, NULL);
  if (!rc) rc = pg_dup(res, row, 3, &k->hash, NULL);
  k->rpm = (long)pg_i64(res, row, 4);
  k->streams = (long)pg_i64(res, row, 5);
  k->created_at = pg_i64(res, row, 6);
  k->revoked_at = pg_i64(res, row, 7);
  if (rc) store_key_dispose(k);
  return rc;
}

static ragd_err pg_key_create(void *ctx, const struct store_key *key) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct pg_params p;
  PGresult *res = NULL;
  ragd_err rc;

  if (!s || store_validate_key(key)) return RAGD_EINVAL;
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  pp_init(&p);
  pp_text(&p, key->id);
  pp_text(&p, key->name ? key->name : "");
  pp_text(&p, key->scope);
  pp_text(&p, key->hash);
  pp_i64(&p, key->rpm);
  pp_i64(&p, key->streams);
  pp_i64(&p, clock_wall_s());
  rc = pg_run(c, PG_KEY_INSERT, &p, 0, "insert key", &res);
  if (!rc && PQntuples(res) == 0) rc = RAGD_EINVAL; /* the id or the hash exists */
  PQclear(res);
  pg_release(s, c);
  return rc;
}

static ragd_err pg_key_lookup(void *ctx, const char *hash_hex, struct store_key *out) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct pg_params p;
  PGresult *res = NULL;
  ragd_err rc;

  if (!s || !out || !store_key_hash_ok(hash_hex)) return !out ? RAGD_EINVAL : RAGD_ENOTFOUND;
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  pp_init(&p);
  pp_text(&p, hash_hex);
  rc = pg_run(c, PG_KEY_LOOKUP, &p, 0, "look up key", &res);
  if (!rc) rc = PQntuples(res) > 0 ? pg_key_read(res, 0, out) : RAGD_ENOTFOUND;
  PQclear(res);
  pg_release(s, c);
  return rc;
}

static ragd_err pg_key_list(void *ctx, struct store_key_list *out) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  PGresult *res = NULL;
  int i, n;
  ragd_err rc;

  if (!s || !out) return RAGD_EINVAL;
  memset(out, 0, sizeof *out);
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  rc = pg_run(c, PG_KEY_LIST, NULL, 0, "list keys", &res);
  if (rc) goto out;
  n = PQntuples(res);
  if (n == 0) goto out;
  out->items = calloc((size_t)n, sizeof *out->items);
  if (!out->items) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  for (i = 0; i < n && !rc; i++) {
    rc = pg_key_read(res, i, &out->items[i]);
    if (!rc) out->count++;
  }
out:
  PQclear(res);
  pg_release(s, c);
  if (rc) store_key_list_dispose(out);
  return rc;
}

static ragd_err pg_key_revoke(void *ctx, const char *id) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct pg_params p;
  PGresult *res = NULL;
  ragd_err rc;

  if (!s || store_check_id(id, STORE_KEY_ID_MAX)) return RAGD_ENOTFOUND;
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  pp_init(&p);
  pp_text(&p, id);
  pp_i64(&p, clock_wall_s());
  rc = pg_run(c, PG_KEY_REVOKE, &p, 0, "revoke key", &res);
  if (!rc && strtoull(PQcmdTuples(res), NULL, 10) == 0) rc = RAGD_ENOTFOUND;
  PQclear(res);
  pg_release(s, c);
  return rc;
}

static ragd_err pg_key_count(void *ctx, size_t *active) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  PGresult *res = NULL;
  ragd_err rc;

  if (!s || !active) return RAGD_EINVAL;
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  rc = pg_run(c, PG_KEY_COUNT, NULL, 0, "count keys", &res);
  if (!rc) *active = (size_t)pg_i64(res, 0, 0);
  PQclear(res);
  pg_release(s, c);
  return rc;
}

/* ---- shared rate limits ---------------------------------------------------------------- */

/* Milliseconds until a request fits under rpm, from a row (window start,
 * count, previous count) and the database's now, by the same estimate as
 * PG_RATE_TAKE. At least 1. */
static int64_t pg_rate_retry_ms(int64_t window_start, int64_t count, int64_t prev, int64_t now,
                                long rpm) {
  const double w = 60000.0;
  int64_t cur_start = now - now % 60000;
  double elapsed = (double)(now - cur_start), need, wait;
  if (window_start != cur_start) { /* roll forward as the UPSERT would */
    prev = window_start == cur_start - 60000 ? count : 0;
    count = 0;
  }
  if (count + 1 <= rpm) {
    /* prev * (w - e) / w + count + 1 <= rpm  <=>  e >= w * (1 - (rpm - 1 - count) / prev) */
    need = prev > 0 ? w * (1.0 - (double)(rpm - 1 - count) / (double)prev) : 0.0;
    wait = need - elapsed;
  } else {
    /* Not this minute: in the next, this minute's count is the previous. */
    need = count > rpm - 1 ? w * (1.0 - (double)(rpm - 1) / (double)count) : 0.0;
    wait = (w - elapsed) + need;
  }
  return wait < 1.0 ? 1 : (int64_t)(wait + 0.999);
}

static ragd_err pg_rate_take(void *ctx, const char *name, long rpm, int *admitted,
                             int64_t *retry_after_ms) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  struct pg_params p;
  PGresult *res = NULL;
  int64_t now = clock_mono_ms();
  int sweep = 0;
  ragd_err rc;

  if (!s || !name || !admitted || !retry_after_ms || rpm <= 0) return RAGD_EINVAL;
  *admitted = 1;
  *retry_after_ms = 0;
  pthread_mutex_lock(&s->mu);
  if (now - s->rate_swept_ms >= PG_RATE_SWEEP_EVERY_MS) {
    s->rate_swept_ms = now;
    sweep = 1;
  }
  pthread_mutex_unlock(&s->mu);
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  /* Rows idle for two minutes count nothing any more: one node drops them
   * about once a minute, so the table holds only active clients. */
  if (sweep) rc = pg_run(c, PG_RATE_SWEEP, NULL, 0, "sweep rate limits", NULL);
  pp_init(&p);
  pp_text(&p, name);
  pp_i64(&p, rpm);
  if (!rc) rc = pg_run(c, PG_RATE_TAKE, &p, 0, "take a rate-limit token", &res);
  if (!rc && PQntuples(res) == 0) {
    *admitted = 0;
    PQclear(res);
    res = NULL;
    pp_init(&p);
    pp_text(&p, name);
    rc = pg_run(c, PG_RATE_PEEK, &p, 0, "read a rate limit", &res);
    if (!rc && PQntuples(res) == 1)
      *retry_after_ms = pg_rate_retry_ms(pg_i64(res, 0, 0), pg_i64(res, 0, 1), pg_i64(res, 0, 2),
                                         pg_i64(res, 0, 3), rpm);
    else if (!rc)
      *retry_after_ms = 1000;
  }
  PQclear(res);
  pg_release(s, c);
  if (rc) *admitted = 1; /* the caller decides what a failure means */
  return rc;
}

/* ---- health ---------------------------------------------------------------------------- */

static ragd_err pg_stats(void *ctx, struct store_stats *out) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  PGresult *res = NULL;
  ragd_err rc;
  if (!s || !out) return RAGD_EINVAL;
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  rc = pg_run(c, PG_STATS, NULL, 0, "stats", &res);
  if (!rc) {
    out->documents = (size_t)pg_i64(res, 0, 0);
    out->chunks = (size_t)pg_i64(res, 0, 1);
  }
  PQclear(res);
  pg_release(s, c);
  return rc;
}

static ragd_err pg_ping(void *ctx) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  ragd_err rc;
  if (!s) return RAGD_EINVAL;
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  rc = pg_run(c, PG_PING, NULL, 0, "ping", NULL);
  pg_release(s, c);
  return rc;
}

/* ---- blobs ---------------------------------------------------------------------------- */

/* Rare and large: sent as one binary parameter, not a prepared statement. */
static ragd_err pg_put_blob(void *ctx, const char *name, const void *data, size_t len) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  char now[32];
  const char *values[3];
  int lengths[3] = {0, 0, 0}, formats[3] = {0, 1, 0};
  PGresult *res;
  ragd_err rc;
  if (!s || !store_blob_name_ok(name) || (len && !data) || len > STORE_BLOB_MAX)
    return RAGD_EINVAL;
  snprintf(now, sizeof now, "%lld", (long long)clock_wall_s());
  values[0] = name;
  values[1] = len ? data : "";
  values[2] = now;
  lengths[1] = (int)len;
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  res = PQexecParams(c->conn,
                     "INSERT INTO blobs(name, data, updated_at) VALUES ($1, $2, $3::bigint)"
                     " ON CONFLICT (name) DO UPDATE SET data = excluded.data,"
                     " updated_at = excluded.updated_at",
                     3, NULL, values, lengths, formats, 0);
  rc = pg_check(c->conn, res, "store a blob");
  PQclear(res);
  pg_release(s, c);
  return rc;
}

static ragd_err pg_get_blob(void *ctx, const char *name, void **data, size_t *len) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  const char *values[1];
  PGresult *res;
  ragd_err rc;
  if (!s || !data || !len || !store_blob_name_ok(name)) return RAGD_EINVAL;
  *data = NULL;
  *len = 0;
  values[0] = name;
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  res = PQexecParams(c->conn, "SELECT data FROM blobs WHERE name = $1", 1, NULL, values, NULL,
                     NULL, 1);
  rc = pg_check(c->conn, res, "read a blob");
  if (!rc && PQntuples(res) == 0) rc = RAGD_ENOTFOUND;
  if (!rc) {
    size_t n = (size_t)PQgetlength(res, 0, 0);
    *data = malloc(n ? n : 1);
    if (!*data) {
      rc = RAGD_ENOMEM;
    } else {
      if (n) memcpy(*data, PQgetvalue(res, 0, 0), n);
      *len = n;
    }
  }
  PQclear(res);
  pg_release(s, c);
  return rc;
}

static ragd_err pg_batch_begin(void *ctx) {
  struct pg_store *s = ctx;
  struct pg_conn *c = NULL;
  ragd_err rc;
  if (!s) return RAGD_EINVAL;
  pthread_mutex_lock(&s->mu);
  rc = s->batch_conn ? RAGD_EINVAL : RAGD_OK;
  pthread_mutex_unlock(&s->mu);
  if (rc) return rc;
  rc = pg_acquire(s, &c);
  if (rc) return rc;
  rc = pg_begin(c);
  if (rc) {
    pg_release(s, c);
    return rc;
  }
  c->batch = 1;
  pthread_mutex_lock(&s->mu);
  s->batch_conn = c;
  s->batch_thread = pthread_self();
  s->batch_broken = 0;
  pthread_mutex_unlock(&s->mu);
  return RAGD_OK;
}

static ragd_err pg_batch_end(void *ctx, int commit) {
  struct pg_store *s = ctx;
  struct pg_conn *c;
  ragd_err rc = RAGD_OK;
  if (!s) return RAGD_EINVAL;
  pthread_mutex_lock(&s->mu);
  c = s->batch_conn;
  if (c && !pthread_equal(s->batch_thread, pthread_self())) c = NULL;
  if (c) s->batch_conn = NULL;
  pthread_mutex_unlock(&s->mu);
  if (!c) return RAGD_EINVAL;
  if (commit && (s->batch_broken || PQtransactionStatus(c->conn) != PQTRANS_INTRANS)) rc = RAGD_EIO;
  else if (commit) rc = pg_commit(c); /* COMMIT of an aborted transaction reports ROLLBACK */
  if (!commit || rc) {
    PGresult *res = PQexec(c->conn, "ROLLBACK");
    PQclear(res);
  }
  if (!rc && commit && PQtransactionStatus(c->conn) != PQTRANS_IDLE) rc = RAGD_EIO;
  c->batch = 0;
  s->batch_broken = 0;
  pg_release(s, c);
  return rc;
}

const struct store_ops store_postgres_ops = {
    .version = STORE_OPS_VERSION,
    .name = "postgres",
    .open = pg_open,
    .close = pg_close,
    .put_document = pg_put_document,
    .get_document = pg_get_document,
    .list_documents = pg_list_documents,
    .delete_document = pg_delete_document,
    .search_bm25 = pg_search_bm25,
    .append_message = pg_append_message,
    .list_messages = pg_list_messages,
    .stats = pg_stats,
    .ping = pg_ping,
    .search_bm25_filtered = pg_search_bm25_filtered,
    .filter_documents = pg_filter_documents,
    .get_chunks = pg_get_chunks,
    .load_vectors = pg_load_vectors,
    .vector_models = pg_vector_models,
    .chunks_without_vectors = pg_chunks_without_vectors,
    .put_vectors = pg_put_vectors,
    .delete_other_vectors = pg_delete_other_vectors,
    .probe_document = pg_probe_document,
    .rebuild_keyword_index = pg_rebuild_keyword_index,
    .put_message = pg_put_message,
    .get_conversation = pg_get_conversation,
    .delete_conversation = pg_delete_conversation,
    .delete_conversations_before = pg_delete_conversations_before,
    .put_feedback = pg_put_feedback,
    .list_feedback = pg_list_feedback,
    .key_create = pg_key_create,
    .key_lookup = pg_key_lookup,
    .key_list = pg_key_list,
    .key_revoke = pg_key_revoke,
    .key_count = pg_key_count,
    .rate_take = pg_rate_take,
    .vector_search_available = pg_vector_search_available,
    .search_vectors = pg_search_vectors,
    .put_blob = pg_put_blob,
    .get_blob = pg_get_blob,
    .batch_begin = pg_batch_begin,
    .batch_end = pg_batch_end,
};
