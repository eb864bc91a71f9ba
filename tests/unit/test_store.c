/* test_store.c - the store conformance suite: every store passes the same
 * tests through the public interface.
 *
 * RAGD_TEST_STORE picks the store: unset or "sqlite" for SQLite in a
 * temporary folder; "postgres" for PostgreSQL at the URL in the file named by
 * RAGD_TEST_PG_URL_FILE (or RAGD_TEST_PG_URL itself). CTest registers the
 * suite once per store; the PostgreSQL runs depend on fixtures that start a
 * throw-away server (scripts/pg-test-cluster.sh, tests/pglite_server.mjs).
 * The API key ops are here too, tested through two stores on one database.
 * Each test gets a schema of its own (search_path through the URL's
 * options), so runs never see each other's rows. */
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "store/store.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/crypto.h"

/* ---- fixtures -------------------------------------------------------------------- */

static int suite_postgres;       /* RAGD_TEST_STORE=postgres */
static char suite_pg_url[512];   /* the server, without a schema */
static unsigned suite_schema_seq;
static struct store_options suite_opts; /* RAGD_TEST_PG_POOL sets the pool */

struct fixture {
  char dir[64];
  char data_dir[96]; /* a not-yet-existing subfolder: open must create it */
  char schema[48];
  char spec[768];    /* what store_open gets */
  struct store st;
};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* Runs one statement on the test server (schema housekeeping only). */
static int pg_admin(const char *sql) {
  PGconn *conn = PQconnectdb(suite_pg_url);
  PGresult *res;
  int ok;
  if (PQstatus(conn) != CONNECTION_OK) {
    fprintf(stderr, "test_store: %s", PQerrorMessage(conn));
    PQfinish(conn);
    return -1;
  }
  res = PQexec(conn, "SET client_min_messages = warning");
  PQclear(res);
  res = PQexec(conn, sql);
  ok = PQresultStatus(res) == PGRES_COMMAND_OK;
  if (!ok) fprintf(stderr, "test_store: %s: %s", sql, PQresultErrorMessage(res));
  PQclear(res);
  PQfinish(conn);
  return ok ? 0 : -1;
}

/* The spec of a store in a fresh schema of the test server. PGlite's socket
 * server (RAGD_TEST_PG_SHARED=1) runs every client on one shared session
 * that ignores startup options: there the tables are dropped instead. */
static int pg_fresh_spec(struct fixture *fx) {
  char sql[200];
  const char *shared = getenv("RAGD_TEST_PG_SHARED");
  if (shared && strcmp(shared, "1") == 0) {
    snprintf(fx->spec, sizeof fx->spec, "%s", suite_pg_url);
    fx->schema[0] = '\0';
    return pg_admin("DROP TABLE IF EXISTS ragd_schema_migrations, rate_limits, api_keys, feedback,"
                    " messages, conversations, vectors, chunks, documents, blobs CASCADE");
  }
  snprintf(fx->schema, sizeof fx->schema, "ragd_t%ld_%u", (long)getpid(), suite_schema_seq++);
  snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", fx->schema,
           fx->schema);
  if (pg_admin(sql) != 0) return -1;
  snprintf(fx->spec, sizeof fx->spec, "%s%coptions=-csearch_path%%3D%s", suite_pg_url,
           strchr(suite_pg_url, '?') ? '&' : '?', fx->schema);
  return 0;
}

static int setup(void **state) {
  struct fixture *fx = calloc(1, sizeof *fx);
  if (!fx) return -1;
  snprintf(fx->dir, sizeof fx->dir, "/tmp/ragd-store-XXXXXX");
  if (!mkdtemp(fx->dir)) {
    free(fx);
    return -1;
  }
  snprintf(fx->data_dir, sizeof fx->data_dir, "%s/data/nested", fx->dir);
  snprintf(fx->spec, sizeof fx->spec, "%s", fx->data_dir);
  if ((suite_postgres && pg_fresh_spec(fx) != 0) ||
      store_open_ex(fx->spec, &suite_opts, &fx->st) != RAGD_OK) {
    nftw(fx->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return -1;
  }
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  struct fixture *fx = *state;
  char sql[96];
  store_close(&fx->st);
  nftw(fx->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
  if (suite_postgres && fx->schema[0]) {
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", fx->schema);
    pg_admin(sql);
  }
  free(fx);
  return 0;
}

/* A document with borrowed chunk texts; heading_path "" unless given. */
struct doc_builder {
  struct text_chunk items[8];
  struct text_chunk_list list;
  struct store_doc_in in;
};

static void doc_build(struct doc_builder *b, const char *external_id, const char *title,
                      const char *content, const char *const *texts, size_t n) {
  size_t i;
  memset(b, 0, sizeof *b);
  assert_true(n <= 8);
  for (i = 0; i < n; i++) {
    b->items[i].heading_path = (char *)"";
    b->items[i].text = (char *)texts[i];
    b->items[i].text_len = texts[i] ? strlen(texts[i]) : 0;
    b->items[i].token_count = b->items[i].text_len / 4 + 1;
  }
  b->list.items = b->items;
  b->list.count = n;
  b->in.external_id = external_id;
  b->in.title = title;
  b->in.url = "https://help.example.com/x";
  b->in.metadata_json = "{}";
  b->in.format = "text";
  b->in.content = content;
  b->in.content_len = strlen(content);
  b->in.chunks = &b->list;
}

static ragd_err put_simple(struct store *st, const char *id, const char *title, const char *text,
                           enum store_put_status *status) {
  struct doc_builder b;
  struct store_put_result res;
  const char *texts[1] = {text};
  ragd_err rc;
  doc_build(&b, id, title, text, texts, 1);
  rc = st->ops->put_document(st->ctx, &b.in, &res);
  if (!rc && status) *status = res.status;
  return rc;
}

/* Number of hits for query, asserting the call succeeds. */
static size_t hit_count(struct store *st, const char *query) {
  struct store_hit_list hits;
  size_t n;
  assert_int_equal(st->ops->search_bm25(st->ctx, query, 50, &hits), RAGD_OK);
  n = hits.count;
  store_hit_list_dispose(&hits);
  return n;
}

/* Whether any hit of query has this chunk id. */
static int finds_chunk(struct store *st, const char *query, const char *chunk_id) {
  struct store_hit_list hits;
  size_t i;
  int found = 0;
  assert_int_equal(st->ops->search_bm25(st->ctx, query, 50, &hits), RAGD_OK);
  for (i = 0; i < hits.count; i++)
    if (strcmp(hits.items[i].chunk_id, chunk_id) == 0) found = 1;
  store_hit_list_dispose(&hits);
  return found;
}

/* ---- store_open ------------------------------------------------------------------------ */

static void test_open_specs(void **state) {
  struct fixture *fx = *state;
  struct store st = {0};
  struct buf spec;

  /* A postgres URL goes to the postgres store whole: nothing listens on
   * port 1, so it fails to connect, and leaves st alone. */
  assert_int_equal(store_open("postgres://127.0.0.1:1/ragd?connect_timeout=2", &st), RAGD_EIO);
  assert_null(st.ops);
  assert_int_equal(store_open("postgresql://127.0.0.1:1/ragd?connect_timeout=2", &st), RAGD_EIO);
  assert_int_equal(store_open("", &st), RAGD_EINVAL);
  assert_int_equal(store_open("sqlite:", &st), RAGD_EINVAL);
  assert_int_equal(store_open(NULL, &st), RAGD_EINVAL);
  store_close(&st); /* zeroed: a no-op */
  store_close(NULL);

  buf_init(&spec, 0);
  assert_int_equal(buf_appendf(&spec, "sqlite:%s/other", fx->dir), RAGD_OK);
  assert_int_equal(store_open(spec.data, &st), RAGD_OK);
  assert_string_equal(st.ops->name, "sqlite");
  assert_int_equal(st.ops->ping(st.ctx), RAGD_OK);
  store_close(&st);
  assert_null(st.ops);
  assert_null(st.ctx);
  buf_dispose(&spec);
}

static void test_reopen_keeps_data(void **state) {
  struct fixture *fx = *state;
  struct store_doc d;
  struct store_stats stats;

  assert_int_equal(put_simple(&fx->st, "faq-1", "Shipping", "Parcels leave within two days.",
                              NULL),
                   RAGD_OK);
  store_close(&fx->st);
  assert_int_equal(store_open_ex(fx->spec, &suite_opts, &fx->st), RAGD_OK);
  assert_int_equal(fx->st.ops->get_document(fx->st.ctx, "faq-1", &d), RAGD_OK);
  assert_string_equal(d.title, "Shipping");
  store_doc_dispose(&d);
  assert_int_equal(fx->st.ops->stats(fx->st.ctx, &stats), RAGD_OK);
  assert_int_equal(stats.documents, 1);
  assert_int_equal(stats.chunks, 1);
  assert_int_equal(hit_count(&fx->st, "parcels"), 1);
}

/* ---- blobs ------------------------------------------------------------------------------ */

/* Blobs are bytes (zeros and 0xff included) by name: replaced whole,
 * kept across a reopen, zero length allowed, bad names refused. */
static void test_blobs(void **state) {
  struct fixture *fx = *state;
  const struct store_ops *ops = fx->st.ops;
  enum { BIG = 3 * 1024 * 1024 + 7 };
  unsigned char *big = malloc(BIG), small[5] = {0, 0xff, 0, 'x', 0x80};
  char long_name[130];
  void *data = NULL;
  size_t len = 0;
  assert_non_null(big);
  for (size_t i = 0; i < BIG; i++) big[i] = (unsigned char)(i * 2654435761u >> 13);
  assert_int_equal(ops->get_blob(fx->st.ctx, "lsa.model", &data, &len), RAGD_ENOTFOUND);
  assert_null(data);
  assert_int_equal(ops->put_blob(fx->st.ctx, "lsa.model", big, BIG), RAGD_OK);
  assert_int_equal(ops->put_blob(fx->st.ctx, "other:1", small, sizeof small), RAGD_OK);
  assert_int_equal(ops->get_blob(fx->st.ctx, "lsa.model", &data, &len), RAGD_OK);
  assert_int_equal(len, BIG);
  assert_memory_equal(data, big, BIG);
  free(data);
  /* replaced whole by a shorter one */
  assert_int_equal(ops->put_blob(fx->st.ctx, "lsa.model", small, 3), RAGD_OK);
  store_close(&fx->st);
  assert_int_equal(store_open_ex(fx->spec, &suite_opts, &fx->st), RAGD_OK);
  ops = fx->st.ops;
  assert_int_equal(ops->get_blob(fx->st.ctx, "lsa.model", &data, &len), RAGD_OK);
  assert_int_equal(len, 3);
  assert_memory_equal(data, small, 3);
  free(data);
  assert_int_equal(ops->get_blob(fx->st.ctx, "other:1", &data, &len), RAGD_OK);
  assert_int_equal(len, sizeof small);
  assert_memory_equal(data, small, sizeof small);
  free(data);
  assert_int_equal(ops->put_blob(fx->st.ctx, "empty", NULL, 0), RAGD_OK);
  assert_int_equal(ops->get_blob(fx->st.ctx, "empty", &data, &len), RAGD_OK);
  assert_non_null(data);
  assert_int_equal(len, 0);
  free(data);
  memset(long_name, 'a', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';
  assert_int_equal(ops->put_blob(fx->st.ctx, "", small, 1), RAGD_EINVAL);
  assert_int_equal(ops->put_blob(fx->st.ctx, "a b", small, 1), RAGD_EINVAL);
  assert_int_equal(ops->put_blob(fx->st.ctx, "x'y", small, 1), RAGD_EINVAL);
  assert_int_equal(ops->put_blob(fx->st.ctx, long_name, small, 1), RAGD_EINVAL);
  assert_int_equal(ops->put_blob(fx->st.ctx, "nodata", NULL, 1), RAGD_EINVAL);
  assert_int_equal(ops->get_blob(fx->st.ctx, "a b", &data, &len), RAGD_EINVAL);
  free(big);
}

/* ---- documents --------------------------------------------------------------------------- */

static void test_put_get_round_trip(void **state) {
  struct fixture *fx = *state;
  struct doc_builder b;
  struct store_put_result res;
  struct store_doc d;
  const char *content = "# Refunds\n\nRefunds are paid back to the card.\n\nAsk support.";
  const char *texts[2] = {"Refunds are paid back to the card.", "Ask support."};
  char hash[65];

  doc_build(&b, "policy/refunds", "Refunds", content, texts, 2);
  b.in.metadata_json = "{\"lang\":\"en\"}";
  b.in.format = "markdown";
  b.items[0].heading_path = (char *)"Refunds";
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_OK);
  assert_int_equal(res.status, STORE_PUT_CREATED);
  assert_int_equal(res.chunk_count, 2);

  assert_int_equal(fx->st.ops->get_document(fx->st.ctx, "policy/refunds", &d), RAGD_OK);
  assert_string_equal(d.external_id, "policy/refunds");
  assert_string_equal(d.title, "Refunds");
  assert_string_equal(d.url, "https://help.example.com/x");
  assert_string_equal(d.metadata_json, "{\"lang\":\"en\"}");
  assert_string_equal(d.format, "markdown");
  assert_int_equal(d.content_len, strlen(content));
  assert_memory_equal(d.content, content, strlen(content));
  crypto_sha256_hex(content, strlen(content), hash);
  assert_string_equal(d.content_hash, hash);
  assert_int_equal(d.chunk_count, 2);
  assert_true(d.created_at > 0);
  assert_int_equal(d.created_at, d.updated_at);
  store_doc_dispose(&d);

  assert_int_equal(fx->st.ops->get_document(fx->st.ctx, "nope", &d), RAGD_ENOTFOUND);
  assert_int_equal(fx->st.ops->get_document(fx->st.ctx, "", &d), RAGD_ENOTFOUND);
}

static void test_hit_fields(void **state) {
  struct fixture *fx = *state;
  struct doc_builder b;
  struct store_put_result res;
  struct store_hit_list hits;
  const char *texts[3] = {"Opening hours are nine to five.", "Warranty lasts two years.",
                          "Warranty claims need the receipt."};

  doc_build(&b, "kb-7", "Warranty", "whole text", texts, 3);
  b.items[1].heading_path = (char *)"Terms > Warranty";
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_OK);

  assert_int_equal(fx->st.ops->search_bm25(fx->st.ctx, "Warranty: how many years?", 10, &hits),
                   RAGD_OK);
  /* The title matches every chunk; only chunk 1 says "years". */
  assert_int_equal(hits.count, 3);
  assert_string_equal(hits.items[0].chunk_id, "kb-7#1");
  assert_string_equal(hits.items[0].document_id, "kb-7");
  assert_string_equal(hits.items[0].title, "Warranty");
  assert_string_equal(hits.items[0].url, "https://help.example.com/x");
  assert_string_equal(hits.items[0].heading_path, "Terms > Warranty");
  assert_string_equal(hits.items[0].text, "Warranty lasts two years.");
  assert_int_equal(hits.items[0].ordinal, 1);
  assert_true(hits.items[0].score > 0.0);
  assert_true(hits.items[0].score >= hits.items[1].score);
  assert_true(hits.items[1].score >= hits.items[2].score);
  assert_true(hits.items[2].score > 0.0);
  store_hit_list_dispose(&hits);

  /* k bounds the hits; k = 0 is zero hits, not an error. */
  assert_int_equal(fx->st.ops->search_bm25(fx->st.ctx, "warranty", 1, &hits), RAGD_OK);
  assert_int_equal(hits.count, 1);
  store_hit_list_dispose(&hits);
  assert_int_equal(fx->st.ops->search_bm25(fx->st.ctx, "warranty", 0, &hits), RAGD_OK);
  assert_int_equal(hits.count, 0);
  store_hit_list_dispose(&hits);
}

static void test_reput_unchanged(void **state) {
  struct fixture *fx = *state;
  struct doc_builder b;
  struct store_put_result res;
  struct store_doc before, after;
  const char *texts[2] = {"Alpha chunk.", "Beta chunk."};

  doc_build(&b, "d1", "Title", "Alpha chunk. Beta chunk.", texts, 2);
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_OK);
  assert_int_equal(res.status, STORE_PUT_CREATED);
  assert_int_equal(fx->st.ops->get_document(fx->st.ctx, "d1", &before), RAGD_OK);

  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_OK);
  assert_int_equal(res.status, STORE_PUT_UNCHANGED);
  assert_int_equal(res.chunk_count, 2);
  assert_int_equal(fx->st.ops->get_document(fx->st.ctx, "d1", &after), RAGD_OK);
  assert_int_equal(after.updated_at, before.updated_at);
  assert_int_equal(after.chunk_count, 2);
  store_doc_dispose(&before);
  store_doc_dispose(&after);

  /* Same content, new title: a real change. */
  b.in.title = "New title";
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_OK);
  assert_int_equal(res.status, STORE_PUT_UPDATED);
  assert_int_equal(hit_count(&fx->st, "title"), 2); /* both chunks carry the title */
  b.in.metadata_json = "{\"v\":2}";
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_OK);
  assert_int_equal(res.status, STORE_PUT_UPDATED);
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_OK);
  assert_int_equal(res.status, STORE_PUT_UNCHANGED);
}

static void test_reput_changed(void **state) {
  struct fixture *fx = *state;
  struct doc_builder b;
  struct store_put_result res;
  struct store_doc before, after;
  struct store_stats stats;
  const char *v1[2] = {"Old pineapple policy.", "Shared sentence about kiwis."};
  const char *v2[3] = {"New mango policy.", "Shared sentence about kiwis.", "Extra papaya."};

  doc_build(&b, "fruit", "Fruit", "v1 content", v1, 2);
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_OK);
  assert_int_equal(fx->st.ops->get_document(fx->st.ctx, "fruit", &before), RAGD_OK);
  assert_int_equal(put_simple(&fx->st, "other", "Other", "Pineapple elsewhere.", NULL), RAGD_OK);
  assert_int_equal(hit_count(&fx->st, "pineapple"), 2);

  doc_build(&b, "fruit", "Fruit", "v2 content", v2, 3);
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_OK);
  assert_int_equal(res.status, STORE_PUT_UPDATED);
  assert_int_equal(res.chunk_count, 3);

  assert_false(finds_chunk(&fx->st, "pineapple", "fruit#0"));
  assert_true(finds_chunk(&fx->st, "pineapple", "other#0"));
  assert_true(finds_chunk(&fx->st, "mango", "fruit#0"));
  assert_true(finds_chunk(&fx->st, "papaya", "fruit#2"));
  assert_int_equal(hit_count(&fx->st, "kiwis"), 1);

  assert_int_equal(fx->st.ops->get_document(fx->st.ctx, "fruit", &after), RAGD_OK);
  assert_int_equal(after.created_at, before.created_at);
  assert_true(after.updated_at >= before.updated_at);
  assert_memory_equal(after.content, "v2 content", after.content_len);
  assert_int_equal(after.chunk_count, 3);
  store_doc_dispose(&before);
  store_doc_dispose(&after);
  assert_int_equal(fx->st.ops->stats(fx->st.ctx, &stats), RAGD_OK);
  assert_int_equal(stats.documents, 2);
  assert_int_equal(stats.chunks, 4);

  /* Replacing with zero chunks empties the document's part of the index. */
  doc_build(&b, "fruit", "Fruit", "", NULL, 0);
  b.in.chunks = NULL;
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_OK);
  assert_int_equal(res.status, STORE_PUT_UPDATED);
  assert_int_equal(res.chunk_count, 0);
  assert_int_equal(hit_count(&fx->st, "mango papaya kiwis"), 0);
}

static void test_delete(void **state) {
  struct fixture *fx = *state;
  struct store_doc d;
  struct store_stats stats;

  assert_int_equal(put_simple(&fx->st, "a", "Alpha", "Quokka facts.", NULL), RAGD_OK);
  assert_int_equal(put_simple(&fx->st, "b", "Beta", "Quokka habitat.", NULL), RAGD_OK);
  assert_int_equal(hit_count(&fx->st, "quokka"), 2);

  assert_int_equal(fx->st.ops->delete_document(fx->st.ctx, "a"), RAGD_OK);
  assert_int_equal(hit_count(&fx->st, "quokka"), 1);
  assert_false(finds_chunk(&fx->st, "quokka", "a#0"));
  assert_int_equal(hit_count(&fx->st, "alpha facts"), 0);
  assert_int_equal(fx->st.ops->get_document(fx->st.ctx, "a", &d), RAGD_ENOTFOUND);
  assert_int_equal(fx->st.ops->delete_document(fx->st.ctx, "a"), RAGD_ENOTFOUND);
  assert_int_equal(fx->st.ops->delete_document(fx->st.ctx, "never"), RAGD_ENOTFOUND);
  assert_int_equal(fx->st.ops->stats(fx->st.ctx, &stats), RAGD_OK);
  assert_int_equal(stats.documents, 1);
  assert_int_equal(stats.chunks, 1);

  /* The id is free again. */
  assert_int_equal(put_simple(&fx->st, "a", "Alpha", "Quokka again.", NULL), RAGD_OK);
  assert_int_equal(hit_count(&fx->st, "quokka"), 2);
}

static void test_list_pagination(void **state) {
  struct fixture *fx = *state;
  const char *ids[5] = {"doc-c", "doc-a", "doc-e", "doc-b", "doc-d"};
  const char *sorted[5] = {"doc-a", "doc-b", "doc-c", "doc-d", "doc-e"};
  struct store_doc_list page;
  char *cursor = NULL;
  size_t seen = 0, pages = 0, i;

  for (i = 0; i < 5; i++)
    assert_int_equal(put_simple(&fx->st, ids[i], "T", "Some text here.", NULL), RAGD_OK);

  do {
    assert_int_equal(fx->st.ops->list_documents(fx->st.ctx, cursor, 2, &page), RAGD_OK);
    free(cursor);
    cursor = NULL;
    pages++;
    assert_true(page.count >= 1 && page.count <= 2);
    for (i = 0; i < page.count; i++) {
      assert_true(seen < 5);
      assert_string_equal(page.items[i].external_id, sorted[seen]);
      assert_null(page.items[i].content);
      assert_int_equal(page.items[i].chunk_count, 1);
      assert_string_equal(page.items[i].format, "text");
      seen++;
    }
    if (page.next_cursor) cursor = strdup(page.next_cursor);
    store_doc_list_dispose(&page);
  } while (cursor);
  assert_int_equal(seen, 5);
  assert_int_equal(pages, 3);

  /* A page that ends exactly at the last document has no next cursor. */
  assert_int_equal(fx->st.ops->list_documents(fx->st.ctx, NULL, 5, &page), RAGD_OK);
  assert_int_equal(page.count, 5);
  assert_null(page.next_cursor);
  store_doc_list_dispose(&page);

  assert_int_equal(fx->st.ops->list_documents(fx->st.ctx, NULL, 0, &page), RAGD_EINVAL);
  assert_int_equal(fx->st.ops->list_documents(fx->st.ctx, NULL, 1001, &page), RAGD_EINVAL);
  assert_int_equal(fx->st.ops->list_documents(fx->st.ctx, "zz", 2, &page), RAGD_EINVAL);
  assert_int_equal(fx->st.ops->list_documents(fx->st.ctx, "abc", 2, &page), RAGD_EINVAL);
  assert_int_equal(fx->st.ops->list_documents(fx->st.ctx, "", 2, &page), RAGD_EINVAL);
}

static void test_list_empty(void **state) {
  struct fixture *fx = *state;
  struct store_doc_list page;
  assert_int_equal(fx->st.ops->list_documents(fx->st.ctx, NULL, 10, &page), RAGD_OK);
  assert_int_equal(page.count, 0);
  assert_null(page.next_cursor);
  store_doc_list_dispose(&page);
}

/* ---- search ----------------------------------------------------------------------------- */

static void test_korean_search(void **state) {
  struct fixture *fx = *state;
  struct store_hit_list hits;

  assert_int_equal(put_simple(&fx->st, "refund-ko", "자주 묻는 질문",
                              "환불은 영업일 기준 3일 이내에 처리됩니다", NULL),
                   RAGD_OK);
  assert_int_equal(put_simple(&fx->st, "ship-ko", "배송 안내", "배송은 주문 후 2일 걸립니다",
                              NULL),
                   RAGD_OK);
  assert_int_equal(fx->st.ops->search_bm25(fx->st.ctx, "환불 언제 돼요?", 5, &hits), RAGD_OK);
  assert_true(hits.count >= 1);
  assert_string_equal(hits.items[0].chunk_id, "refund-ko#0");
  assert_string_equal(hits.items[0].text, "환불은 영업일 기준 3일 이내에 처리됩니다");
  store_hit_list_dispose(&hits);

  /* Full-width and case variants meet the same normalized terms. */
  assert_int_equal(put_simple(&fx->st, "en", "Card", "REFUND to the Card", NULL), RAGD_OK);
  assert_true(finds_chunk(&fx->st, "ｒｅｆｕｎｄ", "en#0"));
}

/* Codes, decimals and compatibility characters: text_tokenize keeps some as
 * one term, and FTS5 re-tokenizes every quoted query term, so both sides must
 * agree. */
static void test_special_terms(void **state) {
  struct fixture *fx = *state;
  assert_int_equal(put_simple(&fx->st, "codes", "Errors",
                              "Error HB-2024-000123 after v1.2; fee 3.5% of 1,000 won; "
                              "use \xc2\xbd cup; Café",
                              NULL),
                   RAGD_OK);
  assert_true(finds_chunk(&fx->st, "what is HB-2024-000123?", "codes#0"));
  assert_true(finds_chunk(&fx->st, "fee 3.5", "codes#0"));
  assert_true(finds_chunk(&fx->st, "1,000", "codes#0"));
  assert_true(finds_chunk(&fx->st, "\xc2\xbd", "codes#0")); /* ½ */
  assert_true(finds_chunk(&fx->st, "CAFÉ", "codes#0"));
  assert_true(finds_chunk(&fx->st, "cafe\xcc\x81", "codes#0")); /* e + combining acute */
  assert_int_equal(hit_count(&fx->st, "HB-2024-999999"), 0);
}

static void test_hostile_queries(void **state) {
  struct fixture *fx = *state;
  static const char *const queries[] = {
      "\"",        "\"\"",       "\"refund",        "NEAR(",         "NEAR(refund card, 2)",
      "*",         "refund*",    "-",               "-refund",       "OR",
      "AND NOT",   "refund AND", "NOT refund",      "(((refund",     "refund)))",
      ")(",        "",           "   ",             "?!.,;:",        "{refund card}",
      "title:x",   "^refund",    "refund + card",   "'; DROP TABLE documents; --",
      "\\\"\\",    "🙂🙂",       "a\"b\"c",         "refund OR OR OR",
  };
  size_t i;
  struct store_hit_list hits;
  struct store_stats stats;

  assert_int_equal(put_simple(&fx->st, "x", "Refund", "Refund to the card or cash.", NULL),
                   RAGD_OK);
  for (i = 0; i < sizeof queries / sizeof queries[0]; i++) {
    ragd_err rc = fx->st.ops->search_bm25(fx->st.ctx, queries[i], 10, &hits);
    if (rc != RAGD_OK) fail_msg("query %zu (%s) failed: %s", i, queries[i], ragd_errname(rc));
    store_hit_list_dispose(&hits);
  }
  /* Words that are FTS5 operators are searched as words. */
  assert_true(finds_chunk(&fx->st, "OR", "x#0"));
  assert_true(finds_chunk(&fx->st, "NEAR(refund", "x#0"));
  assert_int_equal(hit_count(&fx->st, "?!.,;:"), 0);
  assert_int_equal(fx->st.ops->stats(fx->st.ctx, &stats), RAGD_OK);
  assert_int_equal(stats.documents, 1);

  /* Invalid UTF-8 is refused, not searched. */
  assert_int_equal(fx->st.ops->search_bm25(fx->st.ctx, "\xff\xfe", 10, &hits), RAGD_EUTF8);
}

static void test_long_query(void **state) {
  struct fixture *fx = *state;
  struct buf q;
  size_t i;

  assert_int_equal(put_simple(&fx->st, "x", "Zebra", "Zebra crossing rules.", NULL), RAGD_OK);
  buf_init(&q, 0);
  /* Many distinct terms, many repeats: deduplicated, capped, still answered. */
  for (i = 0; i < 3000; i++) assert_int_equal(buf_appendf(&q, "w%zu zebra ", i % 2000), RAGD_OK);
  assert_int_equal(hit_count(&fx->st, q.data), 1);
  buf_dispose(&q);
}

/* ---- atomicity -------------------------------------------------------------------------- */

static void assert_v1_intact(struct store *st) {
  struct store_doc d;
  struct store_stats stats;
  assert_int_equal(st->ops->get_document(st->ctx, "atom", &d), RAGD_OK);
  assert_string_equal(d.title, "Version one");
  assert_memory_equal(d.content, "v1", 2);
  assert_int_equal(d.chunk_count, 2);
  store_doc_dispose(&d);
  assert_true(finds_chunk(st, "walrus", "atom#0"));
  assert_true(finds_chunk(st, "narwhal", "atom#1"));
  assert_int_equal(hit_count(st, "octopus"), 0);
  assert_int_equal(hit_count(st, "squid two"), 0);
  assert_int_equal(st->ops->stats(st->ctx, &stats), RAGD_OK);
  assert_int_equal(stats.documents, 1);
  assert_int_equal(stats.chunks, 2);
}

static void test_failed_put_keeps_previous(void **state) {
  struct fixture *fx = *state;
  struct doc_builder b;
  struct store_put_result res = {STORE_PUT_CREATED, 99, 0};
  const char *v1[2] = {"Walrus chapter.", "Narwhal chapter."};
  const char *v2_null[3] = {"Octopus chapter.", "Squid chapter.", NULL};
  const char *v2_bad_utf8[3] = {"Octopus chapter.", "Squid \xc3\x28 chapter.", "Crab."};

  doc_build(&b, "atom", "Version one", "v1", v1, 2);
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_OK);

  /* Fails at the third chunk, after the old chunks were deleted and two new
   * ones written: all of it must roll back. */
  doc_build(&b, "atom", "Version two", "v2", v2_null, 3);
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_EINVAL);
  assert_int_equal(res.chunk_count, 2); /* out untouched on error */
  assert_v1_intact(&fx->st);

  doc_build(&b, "atom", "Version two", "v2", v2_bad_utf8, 3);
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_EUTF8);
  assert_v1_intact(&fx->st);

  /* Required fields and bad values are refused before anything is written. */
  doc_build(&b, "atom", "Version two", "v2", v1, 2);
  b.in.external_id = NULL;
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_EINVAL);
  b.in.external_id = "";
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_EINVAL);
  b.in.external_id = "atom";
  b.in.format = NULL;
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_EINVAL);
  b.in.format = "pdf";
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_EINVAL);
  b.in.format = "text";
  b.in.content = NULL;
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_EINVAL);
  b.in.content = "\xff";
  b.in.content_len = 1;
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_EUTF8);
  assert_v1_intact(&fx->st);

  /* And the store still works afterwards. */
  doc_build(&b, "atom", "Version two", "v2", v2_bad_utf8, 1);
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_OK);
  assert_int_equal(res.status, STORE_PUT_UPDATED);
  assert_int_equal(hit_count(&fx->st, "walrus"), 0);
  assert_int_equal(hit_count(&fx->st, "octopus"), 1);
}


/* Batches (ragd ingest): documents join one transaction, each in its own
 * savepoint, so a failing one is undone alone; a rolled-back batch leaves
 * nothing; the same id twice in a batch keeps the index consistent. */
static void test_batch(void **state) {
  struct fixture *fx = *state;
  struct doc_builder b;
  struct store_put_result res;
  struct store_doc d;
  struct store_stats stats;
  const char *v1[2] = {"Walrus chapter.", "Narwhal chapter."};
  const char *v2_null[3] = {"Octopus chapter.", "Squid chapter.", NULL};
  const char *v2_bad_utf8[3] = {"Octopus chapter.", "Squid \xc3\x28 chapter.", "Crab."};
  enum store_put_status status;

  doc_build(&b, "atom", "Version one", "v1", v1, 2);
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_OK);
  assert_int_equal(fx->st.ops->batch_end(fx->st.ctx, 1), RAGD_EINVAL); /* none open */

  assert_int_equal(fx->st.ops->batch_begin(fx->st.ctx), RAGD_OK);
  assert_int_equal(fx->st.ops->batch_begin(fx->st.ctx), RAGD_EINVAL);
  assert_int_equal(put_simple(&fx->st, "b1", "Manatee", "Manatee facts.", &status), RAGD_OK);
  assert_int_equal(status, STORE_PUT_CREATED);
  /* the batch's own calls see its writes */
  memset(&d, 0, sizeof d);
  assert_int_equal(fx->st.ops->get_document(fx->st.ctx, "b1", &d), RAGD_OK);
  store_doc_dispose(&d);
  /* replacing atom fails after its old chunks were cleared: atom alone is undone */
  doc_build(&b, "atom", "Version two", "v2", v2_bad_utf8, 3);
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_EUTF8);
  assert_int_equal(put_simple(&fx->st, "b2", "Dugong", "Dugong facts.", &status), RAGD_OK);
  doc_build(&b, "atom", "Version two", "v2", v2_null, 3);
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_EINVAL);
  assert_int_equal(fx->st.ops->batch_end(fx->st.ctx, 1), RAGD_OK);
  assert_int_equal(fx->st.ops->get_document(fx->st.ctx, "atom", &d), RAGD_OK);
  assert_string_equal(d.title, "Version one");
  assert_int_equal(d.chunk_count, 2);
  store_doc_dispose(&d);
  assert_true(finds_chunk(&fx->st, "walrus", "atom#0"));
  assert_true(finds_chunk(&fx->st, "narwhal", "atom#1"));
  assert_int_equal(fx->st.ops->stats(fx->st.ctx, &stats), RAGD_OK);
  assert_int_equal(stats.documents, 3);
  assert_int_equal(stats.chunks, 4);
  assert_int_equal(hit_count(&fx->st, "manatee"), 1);
  assert_int_equal(hit_count(&fx->st, "dugong"), 1);
  assert_int_equal(hit_count(&fx->st, "octopus"), 0);

  /* rolled back: nothing of it stays */
  assert_int_equal(fx->st.ops->batch_begin(fx->st.ctx), RAGD_OK);
  assert_int_equal(put_simple(&fx->st, "b3", "Beluga", "Beluga facts.", &status), RAGD_OK);
  assert_int_equal(put_simple(&fx->st, "b1", "Manatee", "Sirenian facts.", &status), RAGD_OK);
  assert_int_equal(fx->st.ops->batch_end(fx->st.ctx, 0), RAGD_OK);
  assert_int_equal(hit_count(&fx->st, "beluga"), 0);
  assert_int_equal(hit_count(&fx->st, "sirenian"), 0);
  assert_int_equal(hit_count(&fx->st, "manatee"), 1);
  assert_int_equal(fx->st.ops->get_document(fx->st.ctx, "b3", &d), RAGD_ENOTFOUND);

  /* one id written twice in a batch, and an unchanged one: the last text wins */
  assert_int_equal(fx->st.ops->batch_begin(fx->st.ctx), RAGD_OK);
  assert_int_equal(put_simple(&fx->st, "b4", "Seal", "Harbor seal facts.", &status), RAGD_OK);
  assert_int_equal(put_simple(&fx->st, "b4", "Seal", "Elephant seal facts.", &status), RAGD_OK);
  assert_int_equal(status, STORE_PUT_UPDATED);
  assert_int_equal(put_simple(&fx->st, "b2", "Dugong", "Dugong facts.", &status), RAGD_OK);
  assert_int_equal(status, STORE_PUT_UNCHANGED);
  assert_int_equal(fx->st.ops->batch_end(fx->st.ctx, 1), RAGD_OK);
  assert_int_equal(hit_count(&fx->st, "harbor"), 0);
  assert_int_equal(hit_count(&fx->st, "elephant"), 1);
  assert_int_equal(hit_count(&fx->st, "seal"), 1);

  /* and single puts work again afterwards */
  assert_int_equal(put_simple(&fx->st, "b5", "Otter", "Otter facts.", &status), RAGD_OK);
  assert_int_equal(hit_count(&fx->st, "otter"), 1);
}

static void test_external_id_limits(void **state) {
  struct fixture *fx = *state;
  char id[258];
  memset(id, 'k', sizeof id - 1);
  id[256] = '\0';
  assert_int_equal(put_simple(&fx->st, id, "T", "Long id.", NULL), RAGD_OK);
  id[256] = 'k';
  id[257] = '\0';
  assert_int_equal(put_simple(&fx->st, id, "T", "Too long id.", NULL), RAGD_EINVAL);
  assert_int_equal(put_simple(&fx->st, "bad\xff", "T", "x", NULL), RAGD_EUTF8);
}

/* ---- conversations ------------------------------------------------------------------------ */

static void test_messages(void **state) {
  struct fixture *fx = *state;
  struct store_message_list list;
  char text[32];
  int i;

  for (i = 0; i < 5; i++) {
    snprintf(text, sizeof text, "message %d", i);
    assert_int_equal(fx->st.ops->append_message(fx->st.ctx, "conv-1", i % 2 ? "assistant" : "user",
                                                text),
                     RAGD_OK);
  }
  assert_int_equal(fx->st.ops->append_message(fx->st.ctx, "conv-2", "user", "other"), RAGD_OK);

  assert_int_equal(fx->st.ops->list_messages(fx->st.ctx, "conv-1", 10, &list), RAGD_OK);
  assert_int_equal(list.count, 5);
  for (i = 0; i < 5; i++) {
    snprintf(text, sizeof text, "message %d", i);
    assert_string_equal(list.items[i].content, text);
    assert_string_equal(list.items[i].role, i % 2 ? "assistant" : "user");
    assert_true(list.items[i].created_at > 0);
  }
  store_message_list_dispose(&list);

  /* The most recent three, oldest first. */
  assert_int_equal(fx->st.ops->list_messages(fx->st.ctx, "conv-1", 3, &list), RAGD_OK);
  assert_int_equal(list.count, 3);
  assert_string_equal(list.items[0].content, "message 2");
  assert_string_equal(list.items[2].content, "message 4");
  store_message_list_dispose(&list);

  assert_int_equal(fx->st.ops->list_messages(fx->st.ctx, "unknown", 10, &list), RAGD_OK);
  assert_int_equal(list.count, 0);
  store_message_list_dispose(&list);
  assert_int_equal(fx->st.ops->list_messages(fx->st.ctx, "conv-1", 0, &list), RAGD_OK);
  assert_int_equal(list.count, 0);
  store_message_list_dispose(&list);

  assert_int_equal(fx->st.ops->append_message(fx->st.ctx, "conv-1", "system", "x"), RAGD_EINVAL);
  assert_int_equal(fx->st.ops->append_message(fx->st.ctx, "", "user", "x"), RAGD_EINVAL);
  assert_int_equal(fx->st.ops->append_message(fx->st.ctx, "conv-1", "user", NULL), RAGD_EINVAL);
  assert_int_equal(fx->st.ops->append_message(fx->st.ctx, "conv-1", "user", "\xc0\x80"),
                   RAGD_EUTF8);
  assert_int_equal(fx->st.ops->list_messages(fx->st.ctx, "conv-1", 100, &list), RAGD_OK);
  assert_int_equal(list.count, 5);
  store_message_list_dispose(&list);
}

/* ---- conversations: message ids, transcripts, retention, feedback ---------------------- */

static struct store_message_in msg(const char *conv, const char *id, const char *role,
                                   const char *content) {
  struct store_message_in m;
  memset(&m, 0, sizeof m);
  m.conversation_id = conv;
  m.message_id = id;
  m.role = role;
  m.content = content;
  m.tokens = -1;
  m.prompt_tokens = -1;
  return m;
}

/* A user question and its answer, with every field of the answer set. */
static void put_turn(struct store *st, const char *conv, const char *n, int64_t at) {
  char uid[32], aid[32], q[64], a[64];
  struct store_message_in m;
  snprintf(uid, sizeof uid, "msg_u%s", n);
  snprintf(aid, sizeof aid, "msg_a%s", n);
  snprintf(q, sizeof q, "question %s", n);
  snprintf(a, sizeof a, "answer %s [1]", n);
  m = msg(conv, uid, "user", q);
  m.retrieval_query = "retrieval query";
  m.tokens = 2;
  m.created_at = at;
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_OK);
  m = msg(conv, aid, "assistant", a);
  m.sources_json = "[{\"index\":1,\"document_id\":\"en/a.md\"}]";
  m.cited_json = "[1]";
  m.provider = "openai";
  m.model = "gpt-4o-mini";
  m.finish_reason = "stop";
  m.tokens = 5;
  m.prompt_tokens = 812;
  m.created_at = at;
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_OK);
}

static void test_transcript_round_trip(void **state) {
  struct fixture *fx = *state;
  struct store *st = &fx->st;
  struct store_conversation c;
  const struct store_message *u, *a;
  put_turn(st, "conv_1", "1", 1000);
  put_turn(st, "conv_1", "2", 1005);
  assert_int_equal(st->ops->get_conversation(st->ctx, "conv_1", &c), RAGD_OK);
  assert_string_equal(c.id, "conv_1");
  assert_int_equal(c.created_at, 1000);
  assert_int_equal(c.updated_at, 1005);
  assert_int_equal(c.messages.count, 4);
  u = &c.messages.items[0];
  a = &c.messages.items[1];
  assert_string_equal(u->id, "msg_u1");
  assert_string_equal(u->role, "user");
  assert_string_equal(u->content, "question 1");
  assert_string_equal(u->retrieval_query, "retrieval query");
  assert_string_equal(u->sources_json, "[]");
  assert_int_equal(u->tokens, 2);
  assert_int_equal(u->prompt_tokens, -1);
  assert_null(u->feedback_rating);
  assert_string_equal(a->id, "msg_a1");
  assert_string_equal(a->role, "assistant");
  assert_string_equal(a->content, "answer 1 [1]");
  assert_string_equal(a->sources_json, "[{\"index\":1,\"document_id\":\"en/a.md\"}]");
  assert_string_equal(a->cited_json, "[1]");
  assert_string_equal(a->provider, "openai");
  assert_string_equal(a->model, "gpt-4o-mini");
  assert_string_equal(a->finish_reason, "stop");
  assert_int_equal(a->tokens, 5);
  assert_int_equal(a->prompt_tokens, 812);
  assert_int_equal(a->created_at, 1000);
  assert_string_equal(c.messages.items[3].id, "msg_a2");
  store_conversation_dispose(&c);
  store_conversation_dispose(&c); /* idempotent on a zeroed struct */

  /* list_messages carries the ids and retrieval queries too */
  {
    struct store_message_list l = {0};
    assert_int_equal(st->ops->list_messages(st->ctx, "conv_1", 2, &l), RAGD_OK);
    assert_int_equal(l.count, 2);
    assert_string_equal(l.items[0].id, "msg_u2");
    assert_string_equal(l.items[0].retrieval_query, "retrieval query");
    assert_string_equal(l.items[1].id, "msg_a2");
    store_message_list_dispose(&l);
  }
}

static void test_put_message_checks(void **state) {
  struct fixture *fx = *state;
  struct store *st = &fx->st;
  struct store_message_in m = msg("conv_1", "msg_1", "user", "hello");
  struct store_conversation c;
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_OK);
  /* the same id again */
  m = msg("conv_2", "msg_1", "user", "hello");
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_EINVAL);
  m = msg("conv_1", "msg 2", "user", "hello");
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_EINVAL);
  m = msg("conv_1", "", "user", "hello");
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_EINVAL);
  m = msg("conv_1", NULL, "user", "hello");
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_EINVAL);
  m = msg("conv_1", "msg_3", "system", "hello");
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_EINVAL);
  m = msg("conv_1", "msg_4", "user", "bad \xff utf-8");
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_EUTF8);
  m = msg("conv_1", "msg_5", "assistant", "ok");
  m.model = "\xc3";
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_EUTF8);
  m = msg("", "msg_6", "user", "hello");
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_EINVAL);
  /* nothing of the refused ones was stored, nor a conversation for them */
  assert_int_equal(st->ops->get_conversation(st->ctx, "conv_1", &c), RAGD_OK);
  assert_int_equal(c.messages.count, 1);
  store_conversation_dispose(&c);
  assert_int_equal(st->ops->get_conversation(st->ctx, "conv_2", &c), RAGD_ENOTFOUND);
  /* append_message makes its own ids */
  assert_int_equal(st->ops->append_message(st->ctx, "conv_1", "assistant", "hi"), RAGD_OK);
  assert_int_equal(st->ops->get_conversation(st->ctx, "conv_1", &c), RAGD_OK);
  assert_int_equal(c.messages.count, 2);
  assert_true(store_message_id_ok(c.messages.items[1].id));
  assert_int_equal(strncmp(c.messages.items[1].id, "msg_", 4), 0);
  store_conversation_dispose(&c);
}

static void test_delete_conversation(void **state) {
  struct fixture *fx = *state;
  struct store *st = &fx->st;
  struct store_conversation c;
  struct store_feedback_in f = {"conv_1", "msg_a1", "up", "thanks"};
  struct store_message_in m;
  put_turn(st, "conv_1", "1", 0);
  put_turn(st, "conv_2", "2", 0);
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, NULL), RAGD_OK);
  assert_int_equal(st->ops->delete_conversation(st->ctx, "conv_1"), RAGD_OK);
  assert_int_equal(st->ops->get_conversation(st->ctx, "conv_1", &c), RAGD_ENOTFOUND);
  assert_int_equal(st->ops->delete_conversation(st->ctx, "conv_1"), RAGD_ENOTFOUND);
  assert_int_equal(st->ops->delete_conversation(st->ctx, "nope"), RAGD_ENOTFOUND);
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, NULL), RAGD_ENOTFOUND);
  /* the other conversation is untouched */
  assert_int_equal(st->ops->get_conversation(st->ctx, "conv_2", &c), RAGD_OK);
  assert_int_equal(c.messages.count, 2);
  store_conversation_dispose(&c);
  /* the deleted message ids went with it: they may be used again */
  m = msg("conv_3", "msg_a1", "user", "again");
  assert_int_equal(st->ops->put_message(st->ctx, &m), RAGD_OK);
}

static int count_feedback(void *ctx, const struct store_feedback_row *row) {
  (void)row;
  (*(int *)ctx)++;
  return 0;
}

static void test_retention(void **state) {
  struct fixture *fx = *state;
  struct store *st = &fx->st;
  struct store_conversation c;
  struct store_feedback_in f = {"conv_old", "msg_aold", "down", ""};
  size_t deleted = 99;
  int rows = 0;
  int64_t now = clock_wall_s();
  put_turn(st, "conv_old", "old", now - 10 * 86400);
  put_turn(st, "conv_new", "new", now - 86400);
  /* an old conversation that went on recently is kept */
  put_turn(st, "conv_mixed", "m1", now - 10 * 86400);
  put_turn(st, "conv_mixed", "m2", now);
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, NULL), RAGD_OK);
  assert_int_equal(st->ops->delete_conversations_before(st->ctx, now - 7 * 86400, &deleted),
                   RAGD_OK);
  assert_int_equal(deleted, 1);
  assert_int_equal(st->ops->get_conversation(st->ctx, "conv_old", &c), RAGD_ENOTFOUND);
  assert_int_equal(st->ops->get_conversation(st->ctx, "conv_new", &c), RAGD_OK);
  store_conversation_dispose(&c);
  assert_int_equal(st->ops->get_conversation(st->ctx, "conv_mixed", &c), RAGD_OK);
  assert_int_equal(c.messages.count, 4);
  store_conversation_dispose(&c);
  /* its feedback went too */
  assert_int_equal(st->ops->list_feedback(st->ctx, 0, count_feedback, &rows), RAGD_OK);
  assert_int_equal(rows, 0);
  assert_int_equal(st->ops->delete_conversations_before(st->ctx, now - 7 * 86400, &deleted),
                   RAGD_OK);
  assert_int_equal(deleted, 0);
  assert_int_equal(st->ops->delete_conversations_before(st->ctx, now - 7 * 86400, NULL), RAGD_OK);
}

struct collected_feedback {
  int count;
  char rating[3][8];
  char comment[3][64];
  char question[3][64];
  char answer[3][64];
  char message_id[3][32];
  char model[3][32];
  int stop_after;
};

static int collect_feedback(void *ctx, const struct store_feedback_row *row) {
  struct collected_feedback *c = ctx;
  if (c->count < 3) {
    snprintf(c->rating[c->count], sizeof c->rating[0], "%s", row->rating);
    snprintf(c->comment[c->count], sizeof c->comment[0], "%s", row->comment);
    snprintf(c->question[c->count], sizeof c->question[0], "%s", row->question);
    snprintf(c->answer[c->count], sizeof c->answer[0], "%s", row->answer);
    snprintf(c->message_id[c->count], sizeof c->message_id[0], "%s", row->message_id);
    snprintf(c->model[c->count], sizeof c->model[0], "%s", row->model);
  }
  c->count++;
  return c->stop_after && c->count >= c->stop_after;
}

static void test_feedback(void **state) {
  struct fixture *fx = *state;
  struct store *st = &fx->st;
  struct store_feedback_in f;
  struct store_conversation c;
  struct collected_feedback got;
  int created = -1;
  put_turn(st, "conv_1", "1", 0);
  put_turn(st, "conv_1", "2", 0);
  put_turn(st, "conv_2", "3", 0);

  f = (struct store_feedback_in){"conv_1", "msg_a1", "down", "wrong fee, \"3,000\"\nsee policy"};
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, &created), RAGD_OK);
  assert_int_equal(created, 1);
  /* a change replaces the rating */
  f = (struct store_feedback_in){"conv_1", "msg_a1", "up", NULL};
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, &created), RAGD_OK);
  assert_int_equal(created, 0);
  f = (struct store_feedback_in){"conv_2", "msg_a3", "down", "too slow"};
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, &created), RAGD_OK);
  assert_int_equal(created, 1);

  /* refused: a user message, another conversation's message, unknown ids,
   * a bad rating, a comment that is not UTF-8 */
  f = (struct store_feedback_in){"conv_1", "msg_u1", "up", ""};
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, NULL), RAGD_ENOTFOUND);
  f = (struct store_feedback_in){"conv_2", "msg_a1", "up", ""};
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, NULL), RAGD_ENOTFOUND);
  f = (struct store_feedback_in){"conv_9", "msg_a9", "up", ""};
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, NULL), RAGD_ENOTFOUND);
  f = (struct store_feedback_in){"conv_1", "msg_a2", "meh", ""};
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, NULL), RAGD_EINVAL);
  f = (struct store_feedback_in){"conv_1", "msg_a2", "up", "\xff"};
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, NULL), RAGD_EUTF8);
  f = (struct store_feedback_in){"conv_1", "bad id!", "up", ""};
  assert_int_equal(st->ops->put_feedback(st->ctx, &f, NULL), RAGD_EINVAL);

  /* the transcript shows it */
  assert_int_equal(st->ops->get_conversation(st->ctx, "conv_1", &c), RAGD_OK);
  assert_string_equal(c.messages.items[1].feedback_rating, "up");
  assert_string_equal(c.messages.items[1].feedback_comment, "");
  assert_null(c.messages.items[3].feedback_rating);
  store_conversation_dispose(&c);

  memset(&got, 0, sizeof got);
  assert_int_equal(st->ops->list_feedback(st->ctx, 0, collect_feedback, &got), RAGD_OK);
  assert_int_equal(got.count, 2);
  /* same second: ordered by message */
  assert_string_equal(got.message_id[0], "msg_a1");
  assert_string_equal(got.rating[0], "up");
  assert_string_equal(got.question[0], "question 1");
  assert_string_equal(got.answer[0], "answer 1 [1]");
  assert_string_equal(got.model[0], "gpt-4o-mini");
  assert_string_equal(got.message_id[1], "msg_a3");
  assert_string_equal(got.comment[1], "too slow");
  assert_string_equal(got.question[1], "question 3");

  /* since: nothing changed in the future */
  memset(&got, 0, sizeof got);
  assert_int_equal(st->ops->list_feedback(st->ctx, clock_wall_s() + 3600, collect_feedback, &got), RAGD_OK);
  assert_int_equal(got.count, 0);
  /* a callback that stops */
  memset(&got, 0, sizeof got);
  got.stop_after = 1;
  assert_int_equal(st->ops->list_feedback(st->ctx, 0, collect_feedback, &got), RAGD_ECANCELLED);
  assert_int_equal(got.count, 1);
  /* the store is usable after a stop */
  memset(&got, 0, sizeof got);
  assert_int_equal(st->ops->list_feedback(st->ctx, 0, collect_feedback, &got), RAGD_OK);
  assert_int_equal(got.count, 2);
}

/* Runs sql in the schema of fx's store (PostgreSQL only). */
static int pg_admin_in(const struct fixture *fx, const char *sql) {
  struct buf b;
  int rc;
  buf_init(&b, 0);
  if (fx->schema[0]) assert_int_equal(buf_appendf(&b, "SET search_path TO %s;", fx->schema), RAGD_OK);
  assert_int_equal(buf_append_str(&b, sql), RAGD_OK);
  rc = pg_admin(b.data);
  buf_dispose(&b);
  return rc;
}

/* Turns fx's database back into one written before conversation memory
 * (SQLite schema 1, PostgreSQL schema 2: messages without ids or metadata,
 * no feedback) holding conversation conv_old with two messages. */
static void write_old_conversation_schema(struct fixture *fx) {
  if (suite_postgres) {
    assert_int_equal(
        pg_admin_in(fx, "DROP TABLE feedback;"
                        "DROP INDEX conversations_by_updated;"
                        "ALTER TABLE messages DROP COLUMN public_id, DROP COLUMN retrieval_query,"
                        " DROP COLUMN sources_json, DROP COLUMN cited_json, DROP COLUMN provider,"
                        " DROP COLUMN model, DROP COLUMN finish_reason, DROP COLUMN tokens,"
                        " DROP COLUMN prompt_tokens;"
                        "DELETE FROM ragd_schema_migrations WHERE version >= 3;"
                        "INSERT INTO conversations VALUES ('conv_old', 5, 6);"
                        "INSERT INTO messages(conversation_id, role, content, created_at)"
                        " VALUES ('conv_old', 'user', 'old question', 5),"
                        " ('conv_old', 'assistant', 'old answer', 6)"),
        0);
  } else {
    char path[160];
    sqlite3 *db = NULL;
    snprintf(path, sizeof path, "%s/ragd.db", fx->data_dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "DROP TABLE feedback;"
                                  "DROP INDEX messages_by_public_id;"
                                  "DROP INDEX conversations_by_updated;"
                                  "DROP TABLE messages;"
                                  "CREATE TABLE messages (id INTEGER PRIMARY KEY,"
                                  " conversation_id TEXT NOT NULL REFERENCES conversations(id)"
                                  " ON DELETE CASCADE, role TEXT NOT NULL, content TEXT NOT NULL,"
                                  " created_at INTEGER NOT NULL);"
                                  "INSERT INTO conversations VALUES ('conv_old', 5, 6);"
                                  "INSERT INTO messages(conversation_id, role, content, created_at)"
                                  " VALUES ('conv_old', 'user', 'old question', 5),"
                                  " ('conv_old', 'assistant', 'old answer', 6);"
                                  "PRAGMA user_version = 1;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
  }
}

/* A database written before conversation memory opens, migrates, and its
 * messages get distinct ids that feedback can name. On PostgreSQL the
 * migration also runs again over its own result (a node that applied it
 * but died before recording it) without touching the ids. */
static void test_migrate_conversations(void **state) {
  struct fixture *fx = *state;
  struct store_options no_migrate = suite_opts;
  struct store_conversation c;
  struct store st = {0};
  char answer_id[80];
  int created = -1;

  store_close(&fx->st);
  write_old_conversation_schema(fx);
  if (suite_postgres) {
    no_migrate.migrate = 0;
    assert_int_equal(store_open_ex(fx->spec, &no_migrate, &st), RAGD_ECONFIG);
    assert_null(st.ops);
  }
  assert_int_equal(store_open_ex(fx->spec, &suite_opts, &fx->st), RAGD_OK);
  assert_int_equal(fx->st.ops->get_conversation(fx->st.ctx, "conv_old", &c), RAGD_OK);
  assert_int_equal(c.created_at, 5);
  assert_int_equal(c.updated_at, 6);
  assert_int_equal(c.messages.count, 2);
  assert_true(store_message_id_ok(c.messages.items[0].id));
  assert_true(store_message_id_ok(c.messages.items[1].id));
  assert_int_equal(strncmp(c.messages.items[1].id, "msg_", 4), 0);
  assert_int_equal(strlen(c.messages.items[1].id), 28);
  assert_true(strcmp(c.messages.items[0].id, c.messages.items[1].id) != 0);
  assert_string_equal(c.messages.items[0].retrieval_query, "");
  assert_string_equal(c.messages.items[1].content, "old answer");
  assert_string_equal(c.messages.items[1].sources_json, "[]");
  assert_string_equal(c.messages.items[1].cited_json, "[]");
  assert_string_equal(c.messages.items[1].provider, "");
  assert_int_equal(c.messages.items[1].tokens, -1);
  assert_int_equal(c.messages.items[1].prompt_tokens, -1);
  assert_null(c.messages.items[1].feedback_rating);
  snprintf(answer_id, sizeof answer_id, "%s", c.messages.items[1].id);
  store_conversation_dispose(&c);
  {
    struct store_feedback_in f = {"conv_old", answer_id, "up", "still right"};
    assert_int_equal(fx->st.ops->put_feedback(fx->st.ctx, &f, &created), RAGD_OK);
    assert_int_equal(created, 1);
  }
  /* new messages go on after the old ones */
  assert_int_equal(fx->st.ops->append_message(fx->st.ctx, "conv_old", "user", "new question"),
                   RAGD_OK);
  if (!suite_postgres) return;

  store_close(&fx->st);
  assert_int_equal(pg_admin_in(fx, "DELETE FROM ragd_schema_migrations WHERE version = 3"), 0);
  assert_int_equal(store_open_ex(fx->spec, &suite_opts, &fx->st), RAGD_OK);
  assert_int_equal(fx->st.ops->get_conversation(fx->st.ctx, "conv_old", &c), RAGD_OK);
  assert_int_equal(c.messages.count, 3);
  assert_string_equal(c.messages.items[1].id, answer_id);
  assert_string_equal(c.messages.items[1].feedback_rating, "up");
  assert_string_equal(c.messages.items[1].feedback_comment, "still right");
  assert_string_equal(c.messages.items[2].content, "new question");
  store_conversation_dispose(&c);
}

static void test_message_id_ok(void **state) {
  (void)state;
  assert_true(store_message_id_ok("msg_0123456789abcdef01234567"));
  assert_true(store_message_id_ok("a-B_9"));
  assert_false(store_message_id_ok(""));
  assert_false(store_message_id_ok(NULL));
  assert_false(store_message_id_ok("msg/1"));
  assert_false(store_message_id_ok("msg 1"));
  assert_false(store_message_id_ok("메시지"));
  assert_true(store_message_id_ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
  assert_false(store_message_id_ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

/* ---- hybrid retrieval: filters and vectors ------------------------------------------------ */

static ragd_err put_meta(struct store *st, const char *id, const char *text, const char *meta) {
  struct doc_builder b;
  struct store_put_result res;
  const char *texts[1] = {text};
  doc_build(&b, id, "T", text, texts, 1);
  b.in.metadata_json = meta;
  return st->ops->put_document(st->ctx, &b.in, &res);
}

/* Hits of a filtered search as "id,id,..." (document ids, best first). */
static void filtered_ids(struct store *st, const char *query, const char *filters, char *out,
                         size_t cap) {
  struct store_hit_list hits;
  size_t i, used = 0;
  assert_int_equal(st->ops->search_bm25_filtered(st->ctx, query, 10, filters, &hits), RAGD_OK);
  out[0] = '\0';
  for (i = 0; i < hits.count; i++)
    used += (size_t)snprintf(out + used, cap - used, "%s%s", i ? "," : "", hits.items[i].document_id);
  store_hit_list_dispose(&hits);
}

static void test_filters(void **state) {
  struct fixture *fx = *state;
  struct store *st = &fx->st;
  char ids[256];
  int64_t *rowids = NULL;
  size_t n = 0;

  assert_int_equal(put_meta(st, "a", "Parcel alpha.", "{\"lang\":\"en\",\"tier\":1,\"vip\":true}"), RAGD_OK);
  assert_int_equal(put_meta(st, "b", "Parcel beta.", "{\"lang\":\"ko\",\"tier\":\"1\",\"tags\":[\"x\",\"y\"]}"), RAGD_OK);
  assert_int_equal(put_meta(st, "c", "Parcel gamma.", "{\"lang\":\"en\",\"tier\":2.0,\"tags\":[\"y\"]}"), RAGD_OK);

  filtered_ids(st, "parcel", "{\"lang\":\"en\"}", ids, sizeof ids);
  assert_string_equal(ids, "a,c");
  filtered_ids(st, "parcel", "{\"lang\":[\"ko\",\"fr\"]}", ids, sizeof ids);
  assert_string_equal(ids, "b");
  /* JSON types count: 1 never equals "1"; 2 equals 2.0. */
  filtered_ids(st, "parcel", "{\"tier\":1}", ids, sizeof ids);
  assert_string_equal(ids, "a");
  filtered_ids(st, "parcel", "{\"tier\":\"1\"}", ids, sizeof ids);
  assert_string_equal(ids, "b");
  filtered_ids(st, "parcel", "{\"tier\":2}", ids, sizeof ids);
  assert_string_equal(ids, "c");
  filtered_ids(st, "parcel", "{\"vip\":true}", ids, sizeof ids);
  assert_string_equal(ids, "a");
  /* An array in the metadata matches any of its elements; keys AND. */
  filtered_ids(st, "parcel", "{\"tags\":\"y\"}", ids, sizeof ids);
  assert_string_equal(ids, "b,c");
  filtered_ids(st, "parcel", "{\"tags\":\"y\",\"lang\":\"en\"}", ids, sizeof ids);
  assert_string_equal(ids, "c");
  filtered_ids(st, "parcel", "{\"missing\":\"y\"}", ids, sizeof ids);
  assert_string_equal(ids, "");
  filtered_ids(st, "parcel", "{}", ids, sizeof ids);
  assert_int_equal(strlen(ids), strlen("a,b,c"));

  assert_int_equal(st->ops->filter_documents(st->ctx, "{\"lang\":\"en\"}", &rowids, &n), RAGD_OK);
  assert_int_equal(n, 2);
  assert_true(rowids[0] < rowids[1]);
  free(rowids);
  assert_int_equal(st->ops->filter_documents(st->ctx, NULL, &rowids, &n), RAGD_OK);
  assert_int_equal(n, 3);
  free(rowids);

  {
    static const char *const bad[] = {"[1]", "{\"k\":{}}", "{\"k\":[]}", "{\"k\":[[1]]}",
                                      "{\"a\\\"b\":1}", "{\"k\":null}", "not json"};
    struct store_hit_list hits;
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      ragd_err rc = st->ops->search_bm25_filtered(st->ctx, "parcel", 5, bad[i], &hits);
      if (rc != RAGD_EINVAL) fail_msg("filter %s: %s", bad[i], ragd_errname(rc));
    }
  }
}

static int collect_vector(void *ctx, int64_t chunk_rowid, int64_t document_rowid, const float *v,
                          size_t dim) {
  float *sum = ctx;
  (void)chunk_rowid;
  (void)document_rowid;
  for (size_t i = 0; i < dim; i++) sum[i] += v[i];
  sum[dim]++;
  return 0;
}

static void test_vectors(void **state) {
  struct fixture *fx = *state;
  struct store *st = &fx->st;
  struct doc_builder b;
  struct store_put_result res;
  struct store_vector_model_list models;
  struct store_chunk_text_list todo;
  struct store_hit_list hits;
  const char *texts[2] = {"Vector one.", "Vector two."};
  float vecs[2][3] = {{1, 2, 3}, {4, 5, 6}};
  float sum[4] = {0};
  int64_t rowids[2] = {0, 0};
  size_t deleted = 0;
  int unchanged = -1;

  doc_build(&b, "v", "Vectors", "Vector one. Vector two.", texts, 2);
  b.in.vector_model = "m1";
  b.in.vector_dim = 3;
  b.in.vectors = &vecs[0][0];
  b.in.chunk_rowids = rowids;
  assert_int_equal(st->ops->put_document(st->ctx, &b.in, &res), RAGD_OK);
  assert_true(rowids[0] > 0 && rowids[1] > 0 && rowids[0] != rowids[1]);
  assert_int_equal(st->ops->probe_document(st->ctx, &b.in, &unchanged), RAGD_OK);
  assert_int_equal(unchanged, 1);

  assert_int_equal(st->ops->load_vectors(st->ctx, "m1", 3, collect_vector, sum), RAGD_OK);
  assert_true(sum[0] == 5 && sum[1] == 7 && sum[2] == 9 && sum[3] == 2);
  assert_int_equal(st->ops->vector_models(st->ctx, &models), RAGD_OK);
  assert_int_equal(models.count, 1);
  assert_string_equal(models.items[0].model, "m1");
  assert_int_equal(models.items[0].dimensions, 3);
  assert_int_equal(models.items[0].count, 2);
  store_vector_model_list_dispose(&models);

  /* Under another model every chunk still needs a vector. */
  b.in.vector_model = "m2";
  b.in.vectors = NULL;
  assert_int_equal(st->ops->probe_document(st->ctx, &b.in, &unchanged), RAGD_OK);
  assert_int_equal(unchanged, 0);
  assert_int_equal(st->ops->chunks_without_vectors(st->ctx, "m2", 3, 0, 10, &todo), RAGD_OK);
  assert_int_equal(todo.count, 2);
  assert_int_equal(todo.items[0].chunk_rowid, rowids[0]);
  assert_string_equal(todo.items[0].title, "Vectors");
  assert_string_equal(todo.items[1].text, "Vector two.");
  store_chunk_text_list_dispose(&todo);
  assert_int_equal(st->ops->chunks_without_vectors(st->ctx, "m2", 3, rowids[0], 10, &todo), RAGD_OK);
  assert_int_equal(todo.count, 1);
  store_chunk_text_list_dispose(&todo);

  {
    int64_t ids[3] = {rowids[1], 999999, rowids[0]}; /* a gone chunk is skipped */
    float m2[3][3] = {{0, 0, 1}, {9, 9, 9}, {1, 0, 0}};
    assert_int_equal(st->ops->put_vectors(st->ctx, "m2", 3, ids, &m2[0][0], 3), RAGD_OK);
  }
  assert_int_equal(st->ops->chunks_without_vectors(st->ctx, "m2", 3, 0, 10, &todo), RAGD_OK);
  assert_int_equal(todo.count, 0);
  store_chunk_text_list_dispose(&todo);
  assert_int_equal(st->ops->delete_other_vectors(st->ctx, "m2", 3, &deleted), RAGD_OK);
  assert_int_equal(deleted, 2);
  memset(sum, 0, sizeof sum);
  assert_int_equal(st->ops->load_vectors(st->ctx, "m1", 3, collect_vector, sum), RAGD_OK);
  assert_true(sum[3] == 0);
  assert_int_equal(st->ops->load_vectors(st->ctx, "m2", 3, collect_vector, sum), RAGD_OK);
  assert_true(sum[0] == 1 && sum[2] == 1 && sum[3] == 2);

  /* get_chunks keeps the order asked for and leaves out ids that are gone. */
  {
    int64_t ids[3] = {rowids[1], 424242, rowids[0]};
    assert_int_equal(st->ops->get_chunks(st->ctx, ids, 3, &hits), RAGD_OK);
    assert_int_equal(hits.count, 2);
    assert_string_equal(hits.items[0].chunk_id, "v#1");
    assert_string_equal(hits.items[1].chunk_id, "v#0");
    assert_int_equal(hits.items[0].chunk_rowid, rowids[1]);
    assert_int_equal(hits.items[0].document_rowid, res.document_rowid);
    store_hit_list_dispose(&hits);
  }

  /* Deleting the document takes its vectors along. */
  assert_int_equal(st->ops->delete_document(st->ctx, "v"), RAGD_OK);
  assert_int_equal(st->ops->vector_models(st->ctx, &models), RAGD_OK);
  assert_int_equal(models.count, 0);
  store_vector_model_list_dispose(&models);
}

/* ---- vector search in the database (pgvector) --------------------------------------------- */

#define VS_DOCS 24
#define VS_DIM 8

/* A deterministic unit vector (an LCG) for document i; 0 <= i. */
static void vs_vector(unsigned seed, float *v) {
  double norm = 0;
  unsigned x = seed * 2654435761u + 12345u;
  for (size_t j = 0; j < VS_DIM; j++) {
    x = x * 1103515245u + 12345u;
    v[j] = (float)((double)(x >> 8 & 0xffff) / 65536.0 - 0.5);
    norm += (double)v[j] * v[j];
  }
  for (size_t j = 0; j < VS_DIM; j++) v[j] = (float)(v[j] / sqrt(norm));
}

/* Exact cosine ranking of the stored vectors (the ones passing team, NULL:
 * all) for q: indexes into docs, best first. */
static size_t vs_exact(float vecs[][VS_DIM], const float *q, const char *team, size_t k,
                       size_t *order, double *scores) {
  size_t n = 0, i, j;
  double all[VS_DOCS];
  size_t idx[VS_DOCS];
  for (i = 0; i < VS_DOCS; i++) {
    if (team && (i % 2 == 0) != (strcmp(team, "a") == 0)) continue;
    all[n] = 0;
    for (j = 0; j < VS_DIM; j++) all[n] += (double)vecs[i][j] * q[j];
    idx[n++] = i;
  }
  for (i = 0; i < n; i++)
    for (j = i + 1; j < n; j++)
      if (all[j] > all[i]) {
        double t = all[i];
        size_t u = idx[i];
        all[i] = all[j];
        idx[i] = idx[j];
        all[j] = t;
        idx[j] = u;
      }
  for (i = 0; i < n && i < k; i++) {
    order[i] = idx[i];
    scores[i] = all[i];
  }
  return n < k ? n : k;
}

/* search_vectors returns what an exact cosine scan returns (24 vectors: the
 * HNSW search visits them all), with filters in the same query, feedback as
 * the in-memory path does it, and only the asked-for set. */
static void test_vector_search(void **state) {
  struct fixture *fx = *state;
  struct store *st = &fx->st;
  static float vecs[VS_DOCS][VS_DIM];
  float q[VS_DIM], other[4] = {1, 0, 0, 0}, zero[VS_DIM] = {0};
  int64_t rowids[VS_DOCS];
  size_t order[10];
  double scores[10];
  struct store_hit_list hits;
  const char *why = NULL, *want = getenv("RAGD_TEST_PGVECTOR");
  struct store_vector_query vq;
  size_t i, n;

  if (!st->ops->search_vectors) {
    /* SQLite: retrieval keeps its in-memory index */
    assert_null(st->ops->vector_search_available);
    assert_false(suite_postgres);
    return;
  }
  memset(&vq, 0, sizeof vq);
  vq.model = "hash:test";
  vq.dim = VS_DIM;
  vq.vector = q;
  vq.k = 10;
  if (!st->ops->vector_search_available(st->ctx, &why)) {
    /* Debian's PostgreSQL has no pgvector: refused, saying what to do */
    assert_false(want && strcmp(want, "1") == 0);
    assert_non_null(why);
    assert_non_null(strstr(why, "CREATE EXTENSION vector"));
    vs_vector(1, q);
    assert_int_equal(st->ops->search_vectors(st->ctx, &vq, &hits), RAGD_EUNSUPPORTED);
    return;
  }
  for (i = 0; i < VS_DOCS; i++) {
    struct doc_builder b;
    struct store_put_result res;
    char id[16], text[64];
    const char *texts[1] = {text};
    snprintf(id, sizeof id, "vs%02zu", i);
    snprintf(text, sizeof text, "Vector document %zu.", i);
    vs_vector((unsigned)i, vecs[i]);
    doc_build(&b, id, "T", text, texts, 1);
    b.in.metadata_json = i % 2 == 0 ? "{\"team\": \"a\"}" : "{\"team\": [\"b\", \"c\"]}";
    b.in.vector_model = "hash:test";
    b.in.vector_dim = VS_DIM;
    b.in.vectors = vecs[i];
    b.in.chunk_rowids = &rowids[i];
    assert_int_equal(st->ops->put_document(st->ctx, &b.in, &res), RAGD_OK);
  }
  /* another set in the same table: never returned for this one */
  {
    struct doc_builder b;
    struct store_put_result res;
    const char *texts[1] = {"Other model."};
    doc_build(&b, "other", "T", "Other model.", texts, 1);
    b.in.vector_model = "other:model";
    b.in.vector_dim = 4;
    b.in.vectors = other;
    assert_int_equal(st->ops->put_document(st->ctx, &b.in, &res), RAGD_OK);
  }

  vq.k = 0; /* prepare only */
  assert_int_equal(st->ops->search_vectors(st->ctx, &vq, &hits), RAGD_OK);
  assert_int_equal(hits.count, 0);
  vq.k = 10;
  for (unsigned trial = 100; trial < 105; trial++) {
    vs_vector(trial, q);
    n = vs_exact(vecs, q, NULL, 10, order, scores);
    assert_int_equal(st->ops->search_vectors(st->ctx, &vq, &hits), RAGD_OK);
    assert_int_equal(hits.count, n);
    for (i = 0; i < n; i++) {
      char id[24];
      snprintf(id, sizeof id, "vs%02zu#0", order[i]);
      assert_string_equal(hits.items[i].chunk_id, id);
      assert_int_equal(hits.items[i].chunk_rowid, rowids[order[i]]);
      assert_string_equal(hits.items[i].title, "T");
      if (fabs(hits.items[i].score - scores[i]) > 1e-5)
        fail_msg("hit %zu: score %.7f, exact cosine %.7f", i, hits.items[i].score, scores[i]);
    }
    store_hit_list_dispose(&hits);
  }

  /* filters in the same query: k hits of team b, even though team a's
   * vectors are as near (iterative index scan) */
  vs_vector(200, q);
  vq.filters_json = "{\"team\": \"b\"}";
  n = vs_exact(vecs, q, "b", 10, order, scores);
  assert_int_equal(n, 10);
  assert_int_equal(st->ops->search_vectors(st->ctx, &vq, &hits), RAGD_OK);
  assert_int_equal(hits.count, n);
  for (i = 0; i < n; i++) assert_int_equal(hits.items[i].chunk_rowid, rowids[order[i]]);
  store_hit_list_dispose(&hits);
  vq.filters_json = "{\"team\": 1}"; /* 1 is not "1": nothing */
  assert_int_equal(st->ops->search_vectors(st->ctx, &vq, &hits), RAGD_OK);
  assert_int_equal(hits.count, 0);
  vq.filters_json = "[1]";
  assert_int_equal(st->ops->search_vectors(st->ctx, &vq, &hits), RAGD_EINVAL);
  vq.filters_json = NULL;

  /* feedback: normalize(q + w * mean of the feedback chunks' vectors) */
  {
    float moved[VS_DIM];
    int64_t fb[3] = {rowids[3], rowids[7], 987654}; /* a chunk without a vector counts not */
    double norm = 0;
    vs_vector(300, q);
    for (i = 0; i < VS_DIM; i++) {
      moved[i] = q[i] + 0.8f * (vecs[3][i] + vecs[7][i]) / 2;
      norm += (double)moved[i] * moved[i];
    }
    for (i = 0; i < VS_DIM; i++) moved[i] = (float)(moved[i] / sqrt(norm));
    n = vs_exact(vecs, moved, NULL, 10, order, scores);
    vq.feedback_rowids = fb;
    vq.feedback_count = 3;
    vq.feedback_weight = 0.8;
    assert_int_equal(st->ops->search_vectors(st->ctx, &vq, &hits), RAGD_OK);
    assert_int_equal(hits.count, n);
    for (i = 0; i < n; i++) {
      assert_int_equal(hits.items[i].chunk_rowid, rowids[order[i]]);
      assert_true(fabs(hits.items[i].score - scores[i]) < 1e-5);
    }
    store_hit_list_dispose(&hits);
    vq.feedback_count = 0;
    vq.feedback_weight = 0;
  }

  /* a zero query vector has no neighbours */
  vq.vector = zero;
  assert_int_equal(st->ops->search_vectors(st->ctx, &vq, &hits), RAGD_OK);
  assert_int_equal(hits.count, 0);
  vq.vector = q;

  /* the other set, and a deleted document */
  vq.model = "other:model";
  vq.dim = 4;
  vq.vector = other;
  assert_int_equal(st->ops->search_vectors(st->ctx, &vq, &hits), RAGD_OK);
  assert_int_equal(hits.count, 1);
  assert_string_equal(hits.items[0].chunk_id, "other#0");
  assert_true(fabs(hits.items[0].score - 1.0) < 1e-6);
  store_hit_list_dispose(&hits);
  vq.model = "hash:test";
  vq.dim = VS_DIM;
  vs_vector(5, q); /* document 5's own vector: itself first */
  vq.vector = q;
  assert_int_equal(st->ops->search_vectors(st->ctx, &vq, &hits), RAGD_OK);
  assert_string_equal(hits.items[0].chunk_id, "vs05#0");
  store_hit_list_dispose(&hits);
  assert_int_equal(st->ops->delete_document(st->ctx, "vs05"), RAGD_OK);
  assert_int_equal(st->ops->search_vectors(st->ctx, &vq, &hits), RAGD_OK);
  assert_true(hits.count > 0);
  for (i = 0; i < hits.count; i++) assert_string_not_equal(hits.items[i].chunk_id, "vs05#0");
  store_hit_list_dispose(&hits);

  /* a second store on the same database (another node) finds them too */
  {
    struct store other_node = {0};
    assert_int_equal(store_open_ex(fx->spec, &suite_opts, &other_node), RAGD_OK);
    vs_vector(7, q);
    assert_int_equal(other_node.ops->search_vectors(other_node.ctx, &vq, &hits), RAGD_OK);
    assert_string_equal(hits.items[0].chunk_id, "vs07#0");
    store_hit_list_dispose(&hits);
    store_close(&other_node);
  }
}

/* Schema 6 converts the vectors stored before it (bytea) for pgvector. */
static void test_migrate_vectors(void **state) {
  struct fixture *fx = *state;
  struct store_hit_list hits;
  struct store_vector_query vq;
  float v[VS_DIM];
  const char *texts[1] = {"Old vector."};
  struct doc_builder b;
  struct store_put_result res;

  if (!suite_postgres) return;
  vs_vector(9, v);
  doc_build(&b, "old", "T", "Old vector.", texts, 1);
  b.in.vector_model = "hash:test";
  b.in.vector_dim = VS_DIM;
  b.in.vectors = v;
  assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &b.in, &res), RAGD_OK);
  store_close(&fx->st);
  /* as schema 5 left it: no embedding column (nor the later migrations, which
   * run again: 7 creates blobs only if missing); a row of the wrong size too */
  assert_int_equal(pg_admin_in(fx, "ALTER TABLE vectors DROP COLUMN embedding;"
                                   " INSERT INTO vectors(chunk_id, model, dimensions, data)"
                                   " SELECT id, 'bad', 3, '\\x0102'::bytea FROM chunks;"
                                   " DELETE FROM ragd_schema_migrations WHERE version >= 6"),
                   0);
  assert_int_equal(store_open_ex(fx->spec, &suite_opts, &fx->st), RAGD_OK);
  assert_int_equal(pg_admin_in(fx, "DO $$ BEGIN IF (SELECT count(*) FROM vectors"
                                   " WHERE model = 'hash:test' AND embedding IS NOT NULL) <> 1"
                                   " OR (SELECT count(*) FROM vectors WHERE model = 'bad'"
                                   " AND embedding IS NULL) <> 1"
                                   " THEN RAISE EXCEPTION 'not converted'; END IF; END $$"),
                   0);
  if (!fx->st.ops->vector_search_available(fx->st.ctx, NULL)) return;
  memset(&vq, 0, sizeof vq);
  vq.model = "hash:test";
  vq.dim = VS_DIM;
  vq.vector = v;
  vq.k = 5;
  assert_int_equal(fx->st.ops->search_vectors(fx->st.ctx, &vq, &hits), RAGD_OK);
  assert_int_equal(hits.count, 1);
  assert_true(fabs(hits.items[0].score - 1.0) < 1e-6);
  store_hit_list_dispose(&hits);
}

static void test_rebuild_keyword_index(void **state) {
  struct fixture *fx = *state;
  struct store_hit_list before, after;
  assert_int_equal(put_simple(&fx->st, "r1", "Returns", "Return the parcel within 30 days.", NULL),
                   RAGD_OK);
  assert_int_equal(put_simple(&fx->st, "r2", "환불", "환불은 3일 이내", NULL), RAGD_OK);
  assert_int_equal(fx->st.ops->search_bm25(fx->st.ctx, "return parcel 환불", 10, &before), RAGD_OK);
  assert_int_equal(fx->st.ops->rebuild_keyword_index(fx->st.ctx), RAGD_OK);
  assert_int_equal(fx->st.ops->search_bm25(fx->st.ctx, "return parcel 환불", 10, &after), RAGD_OK);
  assert_int_equal(before.count, 2);
  assert_int_equal(after.count, before.count);
  for (size_t i = 0; i < after.count; i++) {
    assert_string_equal(after.items[i].chunk_id, before.items[i].chunk_id);
    assert_true(fabs(after.items[i].score - before.items[i].score) < 1e-9);
  }
  store_hit_list_dispose(&before);
  store_hit_list_dispose(&after);
}

/* The same documents in SQLite and in the store under test rank alike: the
 * same chunks, in the same order, with the same BM25 scores. */
static void test_bm25_matches_sqlite(void **state) {
  struct fixture *fx = *state;
  static const char *const docs[][3] = {
      {"refund", "Refunds", "Refunds are paid back to the card within 5 business days."},
      {"refund-ko", "환불 안내", "환불은 영업일 기준 3일 이내에 카드로 처리됩니다."},
      {"shipping", "Shipping", "Parcels ship within two days; express shipping costs extra."},
      {"password", "Password reset", "To reset your password open Settings and choose reset."},
      {"long", "Card payments", "Card card card payments are accepted. The card is charged once "
                                "the parcel ships, and a refund goes back to the same card."},
      {"ko-pw", "비밀번호", "비밀번호를 잊어버렸다면 비밀번호 찾기를 누르세요."},
  };
  static const char *const queries[] = {"refund card", "환불 언제 돼요?", "shipping parcel days",
                                        "reset password", "비밀번호 찾기", "card", "express"};
  struct store sq = {0};
  char dir[64], path[96];
  size_t i, j;

  if (strcmp(fx->st.ops->name, "sqlite") == 0) skip(); /* compares another store to SQLite */
  snprintf(dir, sizeof dir, "/tmp/ragd-store-cmp-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/db", dir);
  assert_int_equal(store_open(path, &sq), RAGD_OK);
  for (i = 0; i < sizeof docs / sizeof docs[0]; i++) {
    assert_int_equal(put_simple(&sq, docs[i][0], docs[i][1], docs[i][2], NULL), RAGD_OK);
    assert_int_equal(put_simple(&fx->st, docs[i][0], docs[i][1], docs[i][2], NULL), RAGD_OK);
  }
  for (i = 0; i < sizeof queries / sizeof queries[0]; i++) {
    struct store_hit_list a, b;
    assert_int_equal(sq.ops->search_bm25(sq.ctx, queries[i], 10, &a), RAGD_OK);
    assert_int_equal(fx->st.ops->search_bm25(fx->st.ctx, queries[i], 10, &b), RAGD_OK);
    if (a.count != b.count) fail_msg("%s: sqlite %zu hits, %s %zu", queries[i], a.count, fx->st.ops->name, b.count);
    for (j = 0; j < a.count; j++) {
      if (strcmp(a.items[j].chunk_id, b.items[j].chunk_id) != 0 ||
          fabs(a.items[j].score - b.items[j].score) > 1e-6 * fabs(a.items[j].score))
        fail_msg("%s #%zu: sqlite %s %.9f, %s %s %.9f", queries[i], j, a.items[j].chunk_id,
                 a.items[j].score, fx->st.ops->name, b.items[j].chunk_id, b.items[j].score);
    }
    store_hit_list_dispose(&a);
    store_hit_list_dispose(&b);
  }
  store_close(&sq);
  nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* ---- API keys ---------------------------------------------------------------------------- */

static void make_key(const char *secret, const char *id, const char *scope, char hash[65],
                     struct store_key *k) {
  crypto_sha256_hex(secret, strlen(secret), hash);
  memset(k, 0, sizeof *k);
  k->id = (char *)id;
  k->name = (char *)"widget";
  k->scope = (char *)scope;
  k->hash = hash;
  k->rpm = 30;
}

/* Only hashes are kept, lookups see revocations at once, and a second store
 * on the same database (another server, `ragd keys` from a shell) sees
 * them too. */
static void test_keys(void **state) {
  struct fixture *fx = *state;
  const struct store_ops *ops = fx->st.ops;
  void *a = fx->st.ctx;
  struct store other = {0};
  struct store_key k, got;
  struct store_key_list l;
  char hash[65], second[65], spare[65];
  size_t n = 99;

  assert_int_equal(store_open_ex(fx->spec, &suite_opts, &other), RAGD_OK);
  assert_int_equal(ops->key_count(a, &n), RAGD_OK);
  assert_int_equal(n, 0);
  assert_int_equal(ops->key_list(a, &l), RAGD_OK);
  assert_int_equal(l.count, 0);
  store_key_list_dispose(&l);

  make_key("rk_secret-one", "rk_secret-o", "query", hash, &k);
  assert_int_equal(ops->key_create(a, &k), RAGD_OK);
  /* The same id, or the same hash under another id: refused, and the store
   * still works afterwards (no transaction left aborted). */
  assert_int_equal(ops->key_create(a, &k), RAGD_EINVAL);
  k.id = (char *)"rk_another";
  assert_int_equal(ops->key_create(a, &k), RAGD_EINVAL);
  make_key("rk_secret-two", "rk_secret-o", "admin", second, &k);
  assert_int_equal(ops->key_create(a, &k), RAGD_EINVAL);
  /* Malformed fields. */
  make_key("rk_x", "rk_x", "root", spare, &k);
  assert_int_equal(ops->key_create(a, &k), RAGD_EINVAL);
  make_key("rk_x", "rk_x", "admin", spare, &k);
  k.hash = (char *)"ABCDEF";
  assert_int_equal(ops->key_create(a, &k), RAGD_EINVAL);
  make_key("rk_x", "rk_x", "admin", spare, &k);
  k.rpm = -1;
  assert_int_equal(ops->key_create(a, &k), RAGD_EINVAL);
  make_key("rk_x", "", "admin", spare, &k);
  assert_int_equal(ops->key_create(a, &k), RAGD_EINVAL);
  make_key("rk_x", "rk_x", "admin", spare, &k);
  k.name = (char *)"\xff\xfe";
  assert_int_equal(ops->key_create(a, &k), RAGD_EINVAL);
  assert_int_equal(ops->key_count(a, &n), RAGD_OK);
  assert_int_equal(n, 1);

  /* Found through the other store, by hash, with every field. */
  assert_int_equal(other.ops->key_lookup(other.ctx, hash, &got), RAGD_OK);
  assert_string_equal(got.id, "rk_secret-o");
  assert_string_equal(got.scope, "query");
  assert_string_equal(got.name, "widget");
  assert_string_equal(got.hash, hash);
  assert_int_equal(got.rpm, 30);
  assert_int_equal(got.streams, 0);
  assert_int_equal(got.revoked_at, 0);
  assert_true(got.created_at > 0);
  store_key_dispose(&got);
  assert_int_equal(ops->key_lookup(a, second, &got), RAGD_ENOTFOUND);
  assert_int_equal(ops->key_lookup(a, "not a hash", &got), RAGD_ENOTFOUND);

  /* A second key, admin, with no name and its own limits; created through
   * the other store, listed after the first. */
  make_key("rk_secret-two", "rk_secret-t", "admin", second, &k);
  k.name = NULL;
  k.rpm = 0;
  k.streams = 3;
  assert_int_equal(other.ops->key_create(other.ctx, &k), RAGD_OK);
  assert_int_equal(ops->key_lookup(a, second, &got), RAGD_OK);
  assert_string_equal(got.name, "");
  assert_string_equal(got.scope, "admin");
  assert_int_equal(got.streams, 3);
  store_key_dispose(&got);

  /* Nothing stored holds the key itself. */
  assert_int_equal(ops->key_list(a, &l), RAGD_OK);
  assert_int_equal(l.count, 2);
  assert_string_equal(l.items[0].id, "rk_secret-o");
  assert_string_equal(l.items[1].id, "rk_secret-t");
  assert_null(strstr(l.items[0].hash, "secret"));
  assert_null(strstr(l.items[1].hash, "secret"));
  store_key_list_dispose(&l);

  /* Revoked through one store, gone from the other at once. */
  assert_int_equal(ops->key_revoke(a, "rk_secret-o"), RAGD_OK);
  assert_int_equal(other.ops->key_lookup(other.ctx, hash, &got), RAGD_ENOTFOUND);
  assert_int_equal(ops->key_revoke(a, "rk_secret-o"), RAGD_ENOTFOUND);
  assert_int_equal(other.ops->key_revoke(other.ctx, "rk_secret-o"), RAGD_ENOTFOUND);
  assert_int_equal(ops->key_revoke(a, "rk_nope"), RAGD_ENOTFOUND);
  assert_int_equal(ops->key_revoke(a, ""), RAGD_ENOTFOUND);
  assert_int_equal(other.ops->key_count(other.ctx, &n), RAGD_OK);
  assert_int_equal(n, 1);
  assert_int_equal(ops->key_list(a, &l), RAGD_OK);
  assert_int_equal(l.count, 2);
  assert_true(l.items[0].revoked_at > 0);
  assert_int_equal(l.items[1].revoked_at, 0);
  store_key_list_dispose(&l);

  /* Reopened, the keys are still there. */
  store_close(&fx->st);
  assert_int_equal(store_open_ex(fx->spec, &suite_opts, &fx->st), RAGD_OK);
  assert_int_equal(fx->st.ops->key_count(fx->st.ctx, &n), RAGD_OK);
  assert_int_equal(n, 1);
  store_close(&other);
}

/* Shared rate limits (PostgreSQL only; the SQLite store has no such op): a
 * name gets rpm requests per rolling minute through any store on the
 * database, refused ones are not counted, and names do not share. */
static void test_rate_take(void **state) {
  struct fixture *fx = *state;
  const struct store_ops *ops = fx->st.ops;
  struct store other = {0};
  int admitted = -1;
  int64_t retry = -1;
  if (!ops->rate_take) {
    assert_string_equal(ops->name, "sqlite");
    return;
  }
  assert_int_equal(store_open_ex(fx->spec, &suite_opts, &other), RAGD_OK);
  for (int i = 0; i < 5; i++) {
    const struct store *st = i % 2 ? &other : &fx->st;
    assert_int_equal(st->ops->rate_take(st->ctx, "key:rk_rate", 5, &admitted, &retry), RAGD_OK);
    assert_int_equal(admitted, 1);
    assert_int_equal(retry, 0);
  }
  for (int i = 0; i < 3; i++) {
    assert_int_equal(other.ops->rate_take(other.ctx, "key:rk_rate", 5, &admitted, &retry), RAGD_OK);
    assert_int_equal(admitted, 0);
    assert_true(retry >= 1 && retry <= 120000);
  }
  /* A higher limit for the same name admits again: refusals were not counted. */
  assert_int_equal(ops->rate_take(fx->st.ctx, "key:rk_rate", 6, &admitted, &retry), RAGD_OK);
  assert_int_equal(admitted, 1);
  assert_int_equal(ops->rate_take(fx->st.ctx, "key:rk_rate", 6, &admitted, &retry), RAGD_OK);
  assert_int_equal(admitted, 0);
  assert_int_equal(ops->rate_take(fx->st.ctx, "addr:192.0.2.7", 1, &admitted, &retry), RAGD_OK);
  assert_int_equal(admitted, 1);
  assert_int_equal(ops->rate_take(fx->st.ctx, "key:rk_rate", 0, &admitted, &retry), RAGD_EINVAL);
  store_close(&other);
}

/* ---- threads -------------------------------------------------------------------------------- */

struct worker_arg {
  struct store *st;
  int index;
  ragd_err rc;
};

static void *worker(void *p) {
  struct worker_arg *a = p;
  char id[32], text[64];
  struct store_hit_list hits;
  int i;
  a->rc = RAGD_OK;
  for (i = 0; i < 20 && !a->rc; i++) {
    snprintf(id, sizeof id, "t%d-%d", a->index, i);
    snprintf(text, sizeof text, "Thread %d writes lemur number %d.", a->index, i);
    a->rc = put_simple(a->st, id, "Lemurs", text, NULL);
    if (!a->rc) a->rc = a->st->ops->search_bm25(a->st->ctx, "lemur", 5, &hits);
    if (!a->rc) store_hit_list_dispose(&hits);
    if (!a->rc) a->rc = a->st->ops->append_message(a->st->ctx, id, "user", text);
  }
  return NULL;
}

static void test_threads(void **state) {
  struct fixture *fx = *state;
  pthread_t threads[4];
  struct worker_arg args[4];
  struct store_stats stats;
  int i;
  for (i = 0; i < 4; i++) {
    args[i].st = &fx->st;
    args[i].index = i;
    assert_int_equal(pthread_create(&threads[i], NULL, worker, &args[i]), 0);
  }
  for (i = 0; i < 4; i++) {
    pthread_join(threads[i], NULL);
    assert_int_equal(args[i].rc, RAGD_OK);
  }
  assert_int_equal(fx->st.ops->stats(fx->st.ctx, &stats), RAGD_OK);
  assert_int_equal(stats.documents, 80);
  assert_int_equal(stats.chunks, 80);
}

/* Reads the store to test from the environment; 0 when the suite can run. */
static int suite_init(void) {
  const char *which = getenv("RAGD_TEST_STORE");
  const char *url = getenv("RAGD_TEST_PG_URL");
  const char *file = getenv("RAGD_TEST_PG_URL_FILE");
  const char *pool = getenv("RAGD_TEST_PG_POOL");
  store_options_default(&suite_opts);
  if (pool && *pool) suite_opts.pool_size = (size_t)atoi(pool);
  if (!which || !*which || strcmp(which, "sqlite") == 0) return 0;
  if (strcmp(which, "postgres") != 0) {
    fprintf(stderr, "test_store: RAGD_TEST_STORE=%s: expected sqlite or postgres\n", which);
    return -1;
  }
  suite_postgres = 1;
  if (file && *file) {
    FILE *f = fopen(file, "r");
    size_t n;
    if (!f) {
      fprintf(stderr, "test_store: cannot read %s (did the server fixture start?)\n", file);
      return -1;
    }
    n = fread(suite_pg_url, 1, sizeof suite_pg_url - 1, f);
    fclose(f);
    while (n && (suite_pg_url[n - 1] == '\n' || suite_pg_url[n - 1] == ' ')) n--;
    suite_pg_url[n] = '\0';
  } else if (url && *url) {
    snprintf(suite_pg_url, sizeof suite_pg_url, "%s", url);
  }
  if (!suite_pg_url[0]) {
    fprintf(stderr, "test_store: RAGD_TEST_STORE=postgres needs RAGD_TEST_PG_URL or "
                    "RAGD_TEST_PG_URL_FILE\n");
    return -1;
  }
  fprintf(stderr, "test_store: conformance run against %s\n", suite_pg_url);
  return 0;
}

int main(void) {
  if (suite_init() != 0) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_open_specs, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
      cmocka_unit_test_setup_teardown(test_blobs, setup, teardown),
      cmocka_unit_test_setup_teardown(test_put_get_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_hit_fields, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reput_unchanged, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reput_changed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_pagination, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_empty, setup, teardown),
      cmocka_unit_test_setup_teardown(test_korean_search, setup, teardown),
      cmocka_unit_test_setup_teardown(test_special_terms, setup, teardown),
      cmocka_unit_test_setup_teardown(test_hostile_queries, setup, teardown),
      cmocka_unit_test_setup_teardown(test_long_query, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failed_put_keeps_previous, setup, teardown),
      cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_external_id_limits, setup, teardown),
      cmocka_unit_test_setup_teardown(test_messages, setup, teardown),
      cmocka_unit_test_setup_teardown(test_transcript_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_put_message_checks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_delete_conversation, setup, teardown),
      cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
      cmocka_unit_test_setup_teardown(test_feedback, setup, teardown),
      cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rate_take, setup, teardown),
      cmocka_unit_test_setup_teardown(test_migrate_conversations, setup, teardown),
      cmocka_unit_test(test_message_id_ok),
      cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
      cmocka_unit_test_setup_teardown(test_filters, setup, teardown),
      cmocka_unit_test_setup_teardown(test_vectors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_vector_search, setup, teardown),
      cmocka_unit_test_setup_teardown(test_migrate_vectors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rebuild_keyword_index, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bm25_matches_sqlite, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
