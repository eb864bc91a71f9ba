/* test_rag_lsa.c - the lsa embedder inside the engine: refits swapped in
 * atomically under concurrent searches and ingests, the refit trigger, the
 * model kept in the store across a restart (and an old lsa.model file moved
 * into it).
 *
 * RAGD_TEST_STORE picks the store as in test_store.c: unset or "sqlite" for
 * SQLite in a temporary folder, "postgres" for the server whose URL is in
 * the file RAGD_TEST_PG_URL_FILE (each test in a schema of its own). */
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "rag/rag.h"
#include "text/text.h"
#include "util/clock.h"
#include "util/log.h"

#define RANK "8"

static char pg_url[512]; /* empty: SQLite */
static unsigned schema_seq;

struct fx {
  char dir[64];
  char schema[48];
  char store[768];
  struct ragd_config cfg;
  struct rag_engine e;
  int open;
};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int pg_admin(const char *sql) {
  PGconn *conn = PQconnectdb(pg_url);
  PGresult *res;
  int ok;
  if (PQstatus(conn) != CONNECTION_OK) {
    fprintf(stderr, "test_rag_lsa: %s", PQerrorMessage(conn));
    PQfinish(conn);
    return -1;
  }
  res = PQexec(conn, "SET client_min_messages = warning");
  PQclear(res);
  res = PQexec(conn, sql);
  ok = PQresultStatus(res) == PGRES_COMMAND_OK;
  if (!ok) fprintf(stderr, "test_rag_lsa: %s: %s", sql, PQresultErrorMessage(res));
  PQclear(res);
  PQfinish(conn);
  return ok ? 0 : -1;
}

static void engine_open(struct fx *fx, const char *fraction) {
  struct buf err;
  buf_init(&err, 0);
  config_init(&fx->cfg);
  assert_int_equal(config_set(&fx->cfg, "RAGD_DATA", fx->dir, &err), RAGD_OK);
  if (fx->store[0]) assert_int_equal(config_set(&fx->cfg, "RAGD_STORE", fx->store, &err), RAGD_OK);
  assert_int_equal(config_set(&fx->cfg, "RAGD_LOG_LEVEL", "off", &err), RAGD_OK);
  assert_int_equal(config_set(&fx->cfg, "RAGD_EMBEDDER", "lsa", &err), RAGD_OK);
  assert_int_equal(config_set(&fx->cfg, "RAGD_LSA_RANK", RANK, &err), RAGD_OK);
  assert_int_equal(config_set(&fx->cfg, "RAGD_VECTOR_INDEX", "exact", &err), RAGD_OK);
  assert_int_equal(config_set(&fx->cfg, "RAGD_LSA_REFIT_FRACTION", fraction, &err), RAGD_OK);
  assert_int_equal(config_finish(&fx->cfg, &err), RAGD_OK);
  if (rag_engine_open(&fx->cfg, 0, &fx->e, &err) != RAGD_OK) fail_msg("open: %s", err.data);
  fx->open = 1;
  buf_dispose(&err);
}

static void engine_close(struct fx *fx) {
  if (!fx->open) return;
  rag_engine_close(&fx->e);
  config_dispose(&fx->cfg);
  fx->open = 0;
}

static int setup(void **state) {
  struct fx *fx = calloc(1, sizeof *fx);
  if (!fx) return -1;
  snprintf(fx->dir, sizeof fx->dir, "/tmp/ragd-lsa-XXXXXX");
  if (!mkdtemp(fx->dir)) {
    free(fx);
    return -1;
  }
  if (pg_url[0]) {
    char sql[200];
    snprintf(fx->schema, sizeof fx->schema, "ragd_lsa%ld_%u", (long)getpid(), schema_seq++);
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", fx->schema,
             fx->schema);
    if (pg_admin(sql) != 0) return -1;
    snprintf(fx->store, sizeof fx->store, "%s%coptions=-csearch_path%%3D%s", pg_url,
             strchr(pg_url, '?') ? '&' : '?', fx->schema);
  }
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  struct fx *fx = *state;
  engine_close(fx);
  nftw(fx->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
  if (fx->schema[0]) {
    char sql[96];
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", fx->schema);
    pg_admin(sql);
  }
  free(fx);
  return 0;
}

/* ---- a corpus ------------------------------------------------------------------ */

#define TOPICS 4
#define WORDS 10
static const char *const topic_words[TOPICS][WORDS] = {
    {"parcel", "delivery", "courier", "shipping", "tracking", "package", "dispatch", "address",
     "warehouse", "doorstep"},
    {"refund", "payment", "invoice", "charge", "card", "billing", "receipt", "balance", "bank",
     "transfer"},
    {"password", "login", "account", "reset", "email", "verify", "session", "username", "token",
     "locked"},
    {"battery", "charger", "screen", "firmware", "bluetooth", "speaker", "cable", "power",
     "button", "display"},
};

/* Document i of topic t: seven words of the topic picked by a fixed LCG. */
static void doc_text(size_t t, size_t i, char *out, size_t cap) {
  uint32_t s = (uint32_t)(t * 7919 + i * 104729 + 17);
  size_t len = 0;
  out[0] = '\0';
  for (int w = 0; w < 7; w++) {
    s = s * 1664525u + 1013904223u;
    len += (size_t)snprintf(out + len, cap - len, "%s%s", w ? " " : "",
                            topic_words[t][(s >> 16) % WORDS]);
  }
  snprintf(out + len, cap - len, " number %zu", i);
}

static void doc_id(size_t t, size_t i, char *out, size_t cap) { snprintf(out, cap, "t%zu-%zu", t, i); }

static void ingest_doc(struct rag_engine *e, size_t t, size_t i) {
  char id[32], text[256];
  struct rag_doc_in d;
  struct rag_ingest_result res;
  struct buf err;
  doc_id(t, i, id, sizeof id);
  doc_text(t, i, text, sizeof text);
  buf_init(&err, 0);
  memset(&d, 0, sizeof d);
  d.id = id;
  d.title = id;
  d.format = "text";
  d.text = text;
  d.text_len = strlen(text);
  if (rag_ingest(e, &d, &res, &err) != RAGD_OK) fail_msg("ingest %s: %s", id, err.data);
  free(res.document_id);
  buf_dispose(&err);
}

/* The query that is exactly document (t, i)'s embedding input: with the
 * model the index was built with, the best cosine is 1. */
static void self_query(size_t t, size_t i, char *out, size_t cap) {
  char id[32], text[256];
  doc_id(t, i, id, sizeof id);
  doc_text(t, i, text, sizeof text);
  snprintf(out, cap, "%s\n%s", id, text);
}

static double best_vector_score(struct rag_engine *e, const char *q, char *doc /* OUT */) {
  struct rag_search_opts o = {q, 1, RAG_SEARCH_VECTOR, NULL, NULL};
  struct store_hit_list h = {0};
  double score = -2;
  assert_int_equal(rag_search_ex(e, &o, &h), RAGD_OK);
  if (h.count) {
    score = h.items[0].vector_score;
    if (doc) snprintf(doc, 32, "%s", h.items[0].document_id);
  }
  store_hit_list_dispose(&h);
  return score;
}

static void reindex(struct rag_engine *e) {
  size_t embedded = 0, dropped = 0;
  struct buf err;
  buf_init(&err, 0);
  if (rag_reindex(e, NULL, NULL, &embedded, &dropped, &err) != RAGD_OK)
    fail_msg("reindex: %s", err.data);
  buf_dispose(&err);
}

static double dot(const float *a, const float *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

static void embed_now(struct rag_engine *e, const char *text, float *v) {
  struct slice s = slice_from_cstr(text);
  assert_int_equal(embed_texts(&e->embedder, &s, 1, v, NULL), RAGD_OK);
}

/* ---- atomic swap ------------------------------------------------------------------- */

#define STABLE 12 /* documents per topic that stay put */
#define ROUNDS 12

struct searcher {
  struct rag_engine *e;
  atomic_int *stop;
  size_t searches;
  double worst;      /* lowest best score seen */
  char worst_q[300]; /* and its query */
  int failed;
};

static void *search_loop(void *arg) {
  struct searcher *s = arg;
  char q[300];
  uint32_t r = (uint32_t)(uintptr_t)s;
  s->worst = 2;
  while (!atomic_load(s->stop)) {
    r = r * 1664525u + 1013904223u;
    size_t t = (r >> 8) % 3, i = (r >> 16) % STABLE;
    struct rag_search_opts o = {q, 1, RAG_SEARCH_VECTOR, NULL, NULL};
    struct store_hit_list h = {0};
    self_query(t, i, q, sizeof q);
    if (rag_search_ex(s->e, &o, &h) != RAGD_OK || h.count == 0) {
      s->failed = 1;
    } else if (h.items[0].vector_score < s->worst) {
      s->worst = h.items[0].vector_score;
      snprintf(s->worst_q, sizeof s->worst_q, "%s", q);
    }
    store_hit_list_dispose(&h);
    s->searches++;
  }
  return NULL;
}

/* Two threads search all the time (each query is a stored chunk's own
 * text, so the best cosine is 1 whenever query and index come from the same
 * model) while the main thread changes the corpus a lot (a fourth topic in,
 * then out) and refits, again and again. A search that projected its query
 * with one model and scored it against another's vectors would score far
 * below 1: the test checks first that the successive models really differ
 * that much. */
static void test_swap_under_concurrent_searches(void **state) {
  struct fx *fx = *state;
  struct searcher s[2];
  pthread_t th[2];
  atomic_int stop;
  char q[300];
  float *va = NULL, *vb = NULL;
  size_t dim, t, i, round;
  double sim;

  engine_open(fx, "0");
  for (t = 0; t < 3; t++)
    for (i = 0; i < STABLE; i++) ingest_doc(&fx->e, t, i);
  reindex(&fx->e);
  dim = embed_dimensions(&fx->e.embedder);
  va = malloc(dim * sizeof *va);
  vb = malloc(dim * sizeof *vb);
  assert_non_null(va);
  assert_non_null(vb);

  /* the two corpus states give models far apart */
  self_query(0, 0, q, sizeof q);
  embed_now(&fx->e, q, va);
  for (i = 0; i < 2 * STABLE; i++) ingest_doc(&fx->e, 3, i);
  reindex(&fx->e);
  embed_now(&fx->e, q, vb);
  sim = dot(va, vb, dim);
  if (sim > 0.95) fail_msg("the two models embed the probe alike (%f): the test cannot see a mix", sim);

  atomic_init(&stop, 0);
  for (int k = 0; k < 2; k++) {
    memset(&s[k], 0, sizeof s[k]);
    s[k].e = &fx->e;
    s[k].stop = &stop;
    assert_int_equal(pthread_create(&th[k], NULL, search_loop, &s[k]), 0);
  }
  for (round = 0; round < ROUNDS; round++) {
    char id[32];
    for (i = 0; i < 2 * STABLE; i++) {
      doc_id(3, i, id, sizeof id);
      if (round % 2 == 0)
        assert_int_equal(fx->e.store.ops->delete_document(fx->e.store.ctx, id), RAGD_OK);
      else
        ingest_doc(&fx->e, 3, i);
    }
    {
      struct buf err;
      buf_init(&err, 0);
      if (rag_lsa_refit(&fx->e, NULL, 0, &err) != RAGD_OK) fail_msg("refit: %s", err.data);
      buf_dispose(&err);
    }
  }
  atomic_store(&stop, 1);
  for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
  for (int k = 0; k < 2; k++) {
    assert_false(s[k].failed);
    assert_true(s[k].searches > 0);
    if (s[k].worst < 0.999)
      fail_msg("searcher %d: best cosine %f for its own chunk's text (%zu searches): query and "
               "index of different models\n%s",
               k, s[k].worst, s[k].searches, s[k].worst_q);
  }
  fprintf(stderr, "test_rag_lsa: %zu + %zu searches across %d refits\n", s[0].searches,
          s[1].searches, ROUNDS);
  free(va);
  free(vb);
}

/* ---- the trigger -------------------------------------------------------------- */

/* With RAGD_LSA_REFIT_FRACTION=0.5, folding in fewer new chunks than half
 * the fitted corpus does not refit; reaching it does: on the command line
 * through rag_lsa_refit_if_due, in a server on a background thread, after
 * which every chunk has a vector of the new model and no other. */
static void test_refit_trigger(void **state) {
  struct fx *fx = *state;
  struct store_vector_model_list models = {0};
  struct buf err;
  char before[160], doc[32], q[300];
  int refitted = -1;
  size_t i;

  buf_init(&err, 0);
  engine_open(fx, "0.5");
  for (i = 0; i < 10; i++) ingest_doc(&fx->e, 0, i);
  for (i = 0; i < 10; i++) ingest_doc(&fx->e, 1, i);
  reindex(&fx->e);
  assert_int_equal(embed_lsa_fitted_chunks(&fx->e.embedder), 20);
  snprintf(before, sizeof before, "%s", fx->e.embedder.model_key);
  for (i = 0; i < 9; i++) ingest_doc(&fx->e, 2, i); /* 9 < 0.5 * 20 */
  assert_int_equal(rag_lsa_refit_if_due(&fx->e, &refitted, &err), RAGD_OK);
  assert_int_equal(refitted, 0);
  assert_string_equal(fx->e.embedder.model_key, before);
  ingest_doc(&fx->e, 2, 9); /* 10: due */
  assert_int_equal(rag_lsa_refit_if_due(&fx->e, &refitted, &err), RAGD_OK);
  assert_int_equal(refitted, 1);
  assert_int_equal(embed_lsa_fitted_chunks(&fx->e.embedder), 30);
  assert_string_not_equal(fx->e.embedder.model_key, before);
  assert_int_equal(rag_lsa_refit_if_due(&fx->e, &refitted, &err), RAGD_OK);
  assert_int_equal(refitted, 0);

  /* a server: the ingest that makes it due starts the refit on a thread */
  rag_lsa_background(&fx->e, 1);
  snprintf(before, sizeof before, "%s", fx->e.embedder.model_key);
  for (i = 0; i < 15; i++) ingest_doc(&fx->e, 3, i);
  {
    int64_t deadline = clock_mono_ms() + 60000;
    while (embed_lsa_fitted_chunks(&fx->e.embedder) != 45 && clock_mono_ms() < deadline)
      usleep(20000);
  }
  assert_int_equal(embed_lsa_fitted_chunks(&fx->e.embedder), 45);
  rag_lsa_background(&fx->e, 0);
  engine_close(fx); /* waits for the refit thread's end */
  engine_open(fx, "0");
  assert_string_not_equal(fx->e.embedder.model_key, before);
  self_query(3, 14, q, sizeof q);
  if (best_vector_score(&fx->e, q, doc) < 0.999) fail_msg("t3-14 after the background refit");
  assert_string_equal(doc, "t3-14");
  assert_int_equal(fx->e.store.ops->vector_models(fx->e.store.ctx, &models), RAGD_OK);
  assert_int_equal(models.count, 1);
  assert_string_equal(models.items[0].model, fx->e.embedder.model_key);
  assert_int_equal(models.items[0].count, 45);
  store_vector_model_list_dispose(&models);
  buf_dispose(&err);
}

/* ---- persistence ----------------------------------------------------------------- */

/* The model lives in the store: a restart loads it (same key, searches
 * answer at once) without fitting, and a chunk written by another process
 * with the old model's vectors missing is folded in at start-up. */
static void test_model_persists_across_restart(void **state) {
  struct fx *fx = *state;
  struct store_stats stats = {0};
  char key[160], doc[32], q[300];
  void *blob = NULL;
  size_t len = 0, i;
  double score;

  engine_open(fx, "0");
  assert_false(embed_lsa_fitted(&fx->e.embedder));
  for (i = 0; i < 8; i++) ingest_doc(&fx->e, 0, i);
  for (i = 0; i < 8; i++) ingest_doc(&fx->e, 2, i);
  reindex(&fx->e);
  snprintf(key, sizeof key, "%s", fx->e.embedder.model_key);
  assert_int_equal(fx->e.store.ops->get_blob(fx->e.store.ctx, "lsa.model", &blob, &len), RAGD_OK);
  assert_true(len > 100);
  free(blob);
  engine_close(fx);

  engine_open(fx, "0");
  assert_true(embed_lsa_fitted(&fx->e.embedder));
  assert_string_equal(fx->e.embedder.model_key, key);
  assert_int_equal(embed_lsa_fitted_chunks(&fx->e.embedder), 16);
  self_query(2, 5, q, sizeof q);
  score = best_vector_score(&fx->e, q, doc);
  if (score < 0.999) fail_msg("after restart: best cosine %f", score);
  assert_string_equal(doc, "t2-5");
  /* a document stored with vectors of some other model (as by a process
   * that fitted nothing): at the next start it is folded in */
  {
    struct store_doc_in in;
    struct store_put_result put;
    struct text_chunk_list chunks = {0};
    struct text_chunk_opts opts = {.tokens_max = 200, .tokens_overlap = 0};
    const char *text = "parcel courier warehouse doorstep dispatch";
    int64_t rowid = 0;
    float zero[8] = {0};
    assert_int_equal(text_chunk(text, strlen(text), TEXT_FORMAT_TEXT, &opts, &chunks), RAGD_OK);
    memset(&in, 0, sizeof in);
    in.external_id = "late";
    in.title = "late";
    in.url = "";
    in.metadata_json = "{}";
    in.format = "text";
    in.content = text;
    in.content_len = strlen(text);
    in.chunks = &chunks;
    in.vector_model = "other:v1";
    in.vector_dim = 8;
    in.vectors = zero;
    in.chunk_rowids = &rowid;
    assert_int_equal(chunks.count, 1);
    assert_int_equal(fx->e.store.ops->put_document(fx->e.store.ctx, &in, &put), RAGD_OK);
    text_chunk_list_dispose(&chunks);
  }
  engine_close(fx);
  engine_open(fx, "0");
  assert_string_equal(fx->e.embedder.model_key, key); /* no refit */
  score = best_vector_score(&fx->e, "late\nparcel courier warehouse doorstep dispatch", doc);
  if (score < 0.999) fail_msg("folded in at start-up: best cosine %f", score);
  assert_string_equal(doc, "late");
  assert_int_equal(fx->e.store.ops->stats(fx->e.store.ctx, &stats), RAGD_OK);
  assert_int_equal(stats.chunks, 17);
}

/* The "running server" fx with topics 0 and 1 fitted (its key in key1),
 * and a second engine on the same data, as another process; the caller
 * closes and frees it. */
static struct fx *fitted_and_another(struct fx *fx, char *key1, size_t cap) {
  struct fx *other;
  size_t i;
  engine_open(fx, "0");
  for (i = 0; i < 8; i++) ingest_doc(&fx->e, 0, i);
  for (i = 0; i < 8; i++) ingest_doc(&fx->e, 1, i);
  reindex(&fx->e);
  snprintf(key1, cap, "%s", fx->e.embedder.model_key);
  other = calloc(1, sizeof *other);
  assert_non_null(other);
  memcpy(other->dir, fx->dir, sizeof other->dir);
  engine_open(other, "0");
  assert_string_equal(other->e.embedder.model_key, key1);
  return other;
}

/* A refit made by another process on the same data (`ragd ingest` refits at
 * its end) reaches a running engine at its next search after the store
 * moved: the new model and its vectors are swapped in, and what that
 * process wrote after its refit is searched with the same model. SQLite
 * only (the store with data_version). */
static void test_pick_up_other_process_refit(void **state) {
  struct fx *fx = *state;
  struct fx *other;
  char key1[160], key2[160], doc[32], q[300];
  static const size_t probes[][2] = {{0, 3}, {1, 6}, {2, 5}, {3, 0}};
  size_t i;
  double score;

  if (fx->store[0]) skip();
  other = fitted_and_another(fx, key1, sizeof key1);
  for (i = 0; i < 8; i++) ingest_doc(&other->e, 2, i); /* a new topic, folded in */
  reindex(&other->e);
  snprintf(key2, sizeof key2, "%s", other->e.embedder.model_key);
  if (strcmp(key1, key2) == 0) fail_msg("the other process's refit kept the key %s", key1);
  ingest_doc(&other->e, 3, 0); /* after its refit: a vector of the new model */
  engine_close(other);
  free(other);

  usleep(250 * 1000); /* past the engine's look interval at the store (200 ms) */
  self_query(2, 5, q, sizeof q);
  (void)best_vector_score(&fx->e, q, NULL); /* the look happens before this search */
  assert_string_equal(fx->e.embedder.model_key, key2);
  for (i = 0; i < sizeof probes / sizeof probes[0]; i++) {
    char want[32];
    self_query(probes[i][0], probes[i][1], q, sizeof q);
    doc_id(probes[i][0], probes[i][1], want, sizeof want);
    score = best_vector_score(&fx->e, q, doc);
    if (score < 0.999) fail_msg("%s after the pick-up: best cosine %f (%s)", want, score, doc);
    assert_string_equal(doc, want);
  }
  /* nothing new: the next look leaves model and index as they are */
  usleep(250 * 1000);
  ingest_doc(&fx->e, 3, 1);
  self_query(3, 1, q, sizeof q);
  score = best_vector_score(&fx->e, q, doc);
  assert_string_equal(fx->e.embedder.model_key, key2);
  if (score < 0.999) fail_msg("own ingest after the pick-up: best cosine %f", score);
  assert_string_equal(doc, "t3-1");
}

/* The sync's guard against a refit of its own: when a refit swaps model
 * and index between the sync's reading another process's vectors (of the
 * old model) and applying them, they must not go into the new index; the
 * next search looks again. The hook runs the refit exactly there. SQLite
 * only. */
static int hook_refits;

static void refit_in_between(struct rag_engine *e) {
  e->sync_between_hook = NULL; /* once */
  reindex(e);
  hook_refits++;
}

static void test_sync_skips_vectors_of_a_swapped_model(void **state) {
  struct fx *fx = *state;
  struct fx *other;
  char key1[160], doc[32], q[300];
  size_t i;
  double score;

  if (fx->store[0]) skip();
  other = fitted_and_another(fx, key1, sizeof key1);
  /* folded in with the first model: vectors under key1 */
  for (i = 0; i < 8; i++) ingest_doc(&other->e, 2, i);
  assert_string_equal(other->e.embedder.model_key, key1);
  engine_close(other);
  free(other);

  hook_refits = 0;
  fx->e.sync_between_hook = refit_in_between;
  usleep(250 * 1000);
  self_query(2, 5, q, sizeof q);
  (void)best_vector_score(&fx->e, q, NULL);
  assert_int_equal(hook_refits, 1);
  if (strcmp(fx->e.embedder.model_key, key1) == 0) fail_msg("the refit kept the key %s", key1);
  /* now and after the next look: every new chunk of the new model */
  for (int look = 0; look < 2; look++) {
    for (i = 0; i < 8; i++) {
      char want[32];
      self_query(2, i, q, sizeof q);
      doc_id(2, i, want, sizeof want);
      score = best_vector_score(&fx->e, q, doc);
      if (score < 0.999) fail_msg("look %d, %s: best cosine %f (%s)", look, want, score, doc);
      assert_string_equal(doc, want);
    }
    usleep(250 * 1000);
  }
}

/* An lsa.model file beside ragd.db (where earlier versions kept the model)
 * is read once and moved into the store. SQLite only. */
static void test_legacy_model_file(void **state) {
  struct fx *fx = *state;
  char key[160], path[128], db[128];
  void *blob = NULL;
  size_t len = 0, i;
  sqlite3 *sq = NULL;

  if (pg_url[0]) skip();
  engine_open(fx, "0");
  for (i = 0; i < 8; i++) ingest_doc(&fx->e, 1, i);
  reindex(&fx->e);
  snprintf(key, sizeof key, "%s", fx->e.embedder.model_key);
  snprintf(path, sizeof path, "%s/lsa.model", fx->dir);
  assert_int_equal(embed_lsa_save(&fx->e.embedder, path, NULL), RAGD_OK);
  engine_close(fx);
  snprintf(db, sizeof db, "%s/ragd.db", fx->dir);
  assert_int_equal(sqlite3_open(db, &sq), SQLITE_OK);
  assert_int_equal(sqlite3_exec(sq, "DELETE FROM blobs", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(sq);

  engine_open(fx, "0");
  assert_string_equal(fx->e.embedder.model_key, key);
  assert_int_equal(fx->e.store.ops->get_blob(fx->e.store.ctx, "lsa.model", &blob, &len), RAGD_OK);
  assert_true(len > 100);
  free(blob);
}

static int suite_init(void) {
  const char *which = getenv("RAGD_TEST_STORE");
  const char *file = getenv("RAGD_TEST_PG_URL_FILE");
  FILE *f;
  size_t n;
  if (!which || !*which || strcmp(which, "sqlite") == 0) return 0;
  if (!file || !(f = fopen(file, "r"))) {
    fprintf(stderr, "test_rag_lsa: RAGD_TEST_STORE=postgres needs RAGD_TEST_PG_URL_FILE\n");
    return -1;
  }
  n = fread(pg_url, 1, sizeof pg_url - 1, f);
  fclose(f);
  while (n && (pg_url[n - 1] == '\n' || pg_url[n - 1] == ' ')) n--;
  pg_url[n] = '\0';
  return pg_url[0] ? 0 : -1;
}

int main(void) {
  if (suite_init() != 0) return 1;
  log_set_level(getenv("RAGD_TEST_LOG") ? LOG_INFO : LOG_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_swap_under_concurrent_searches, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refit_trigger, setup, teardown),
      cmocka_unit_test_setup_teardown(test_model_persists_across_restart, setup, teardown),
      cmocka_unit_test_setup_teardown(test_legacy_model_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pick_up_other_process_refit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sync_skips_vectors_of_a_swapped_model, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
