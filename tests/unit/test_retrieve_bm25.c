/* test_retrieve_bm25.c - the in-memory keyword index against the SQLite
 * store's FTS5 bm25(): same chunks, same queries, same ranking and scores
 * (within 1e-6), also after deletes and under a group filter; the token
 * modes (words vs bigrams for Korean); parameter checks; the pruned
 * (MaxScore) search against the exhaustive one on generated corpora. The
 * file includes bm25.c to reach the exhaustive search and its counters. */
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/retrieve/bm25.c"
#include "store/store.h"
#include "text/text.h"
#include "util/buf.h"

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static unsigned rnd(unsigned n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (unsigned)(rng % n);
}

/* Inflected English words (the stemmer folds some together), codes with
 * joiners, and Korean phrases (bigrams). */
static const char *const words[] = {
    "refund",   "refunds",  "refunded", "parcel",   "parcels", "tracking", "tracked", "order",
    "orders",   "account",  "deleting", "deleted",  "password", "reset",   "card",    "cards",
    "payment",  "payments", "delivery", "delivered", "address", "the",     "a",       "of",
    "to",       "is",       "HB-2024-000123", "v1.2", "3.5",   "Café",    "naïve",   "ERR_42",
    "환불",     "배송이",   "누락되었습니다", "비밀번호를", "재설정", "회원", "탈퇴를", "주문",
    "내역과",   "배송지가", "카드",     "결제",     "영업일",   "안에",    "처리됩니다", "택배"};
#define NWORDS (sizeof words / sizeof words[0])

static void sentence(struct buf *b, unsigned n) {
  for (unsigned i = 0; i < n; i++) {
    if (i) buf_append_char(b, ' ');
    buf_append_str(b, words[rnd(NWORDS)]);
  }
}

struct fx {
  char dir[64];
  char spec[96];
  struct store st;
  struct retrieve_bm25 *ix;
};

static int setup(void **state) {
  struct fx *fx = calloc(1, sizeof *fx);
  if (!fx) return -1;
  snprintf(fx->dir, sizeof fx->dir, "/tmp/ragd-bm25-XXXXXX");
  if (!mkdtemp(fx->dir)) return -1;
  snprintf(fx->spec, sizeof fx->spec, "sqlite:%s", fx->dir);
  if (store_open(fx->spec, &fx->st) != RAGD_OK) return -1;
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  struct fx *fx = *state;
  retrieve_bm25_destroy(fx->ix);
  store_close(&fx->st);
  nftw(fx->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
  free(fx);
  return 0;
}

/* Stores ndocs markdown documents of a few sections each, most of them in
 * ingest batches of up to 50 (whose FTS5 rows the store writes at the
 * batch's end), so the comparisons below check that path too. */
static void fill_store(struct fx *fx, unsigned ndocs) {
  for (unsigned d = 0; d < ndocs; d++) {
    int batch = d % 50 < 40 && fx->st.ops->batch_begin;
    struct buf text, title, id;
    struct text_chunk_list chunks = {0};
    struct text_chunk_opts opts = {40, 8};
    struct store_doc_in in;
    struct store_put_result res;
    buf_init(&text, 0);
    buf_init(&title, 0);
    buf_init(&id, 0);
    buf_appendf(&id, "doc-%u", d);
    sentence(&title, 1 + rnd(4));
    for (unsigned s = 0, ns = 1 + rnd(3); s < ns; s++) {
      buf_append_str(&text, "## ");
      sentence(&text, 1 + rnd(3));
      buf_append_str(&text, "\n\n");
      sentence(&text, 5 + rnd(60));
      buf_append_str(&text, "\n\n");
    }
    assert_int_equal(text_chunk(text.data, text.len, TEXT_FORMAT_MARKDOWN, &opts, &chunks), RAGD_OK);
    memset(&in, 0, sizeof in);
    in.external_id = id.data;
    in.title = title.data;
    in.url = "";
    in.metadata_json = d % 3 == 0 ? "{\"lang\":\"ko\"}" : "{\"lang\":\"en\"}";
    in.format = "markdown";
    in.content = text.data;
    in.content_len = text.len;
    in.chunks = &chunks;
    if (batch && d % 50 == 0) assert_int_equal(fx->st.ops->batch_begin(fx->st.ctx), RAGD_OK);
    if (batch && d % 7 == 3) {
      /* an earlier version in the same batch, replaced at once: the index
       * must forget it entirely */
      struct text_chunk_list v0 = {0};
      struct store_doc_in in0 = in;
      assert_int_equal(text_chunk("refund parcel zebra", 19, TEXT_FORMAT_TEXT, &opts, &v0), RAGD_OK);
      in0.content = "refund parcel zebra";
      in0.content_len = 19;
      in0.chunks = &v0;
      assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &in0, &res), RAGD_OK);
      text_chunk_list_dispose(&v0);
    }
    assert_int_equal(fx->st.ops->put_document(fx->st.ctx, &in, &res), RAGD_OK);
    if (batch && (d % 50 == 39 || d + 1 == ndocs))
      assert_int_equal(fx->st.ops->batch_end(fx->st.ctx, 1), RAGD_OK);
    text_chunk_list_dispose(&chunks);
    buf_dispose(&text);
    buf_dispose(&title);
    buf_dispose(&id);
  }
}

/* Builds the index from every chunk the store holds. */
static void load_index(struct fx *fx, const struct retrieve_bm25_params *p) {
  struct store_chunk_text_list batch = {0};
  int64_t after = 0;
  retrieve_bm25_destroy(fx->ix);
  assert_int_equal(retrieve_bm25_create(p, &fx->ix), RAGD_OK);
  for (;;) {
    assert_int_equal(fx->st.ops->chunks_without_vectors(fx->st.ctx, "test:none", 1, after, 50, &batch),
                     RAGD_OK);
    if (batch.count == 0) break;
    for (size_t i = 0; i < batch.count; i++) {
      const struct store_chunk_text *c = &batch.items[i];
      assert_int_equal(retrieve_bm25_add(fx->ix, c->chunk_rowid, c->document_rowid, c->title,
                                         c->heading_path, c->text, strlen(c->text)),
                       RAGD_OK);
    }
    after = batch.items[batch.count - 1].chunk_rowid;
    store_chunk_text_list_dispose(&batch);
  }
  store_chunk_text_list_dispose(&batch);
}

/* The store's and the index's top k for query agree: same ids in the same
 * order, scores within 1e-6. Returns the hit count. */
static size_t compare(struct fx *fx, const char *query, const char *filters, size_t k) {
  struct store_hit_list h = {0};
  struct retrieve_bm25_hit *mine = calloc(k + 1, sizeof *mine);
  struct retrieve_filter flt = {1, NULL, 0};
  int64_t *groups = NULL;
  size_t n = 0;
  assert_non_null(mine);
  if (filters) {
    assert_int_equal(fx->st.ops->filter_documents(fx->st.ctx, filters, &groups, &flt.count), RAGD_OK);
    flt.all = 0;
    flt.groups = groups;
  }
  assert_int_equal(fx->st.ops->search_bm25_filtered(fx->st.ctx, query, k, filters, &h), RAGD_OK);
  assert_int_equal(retrieve_bm25_search(fx->ix, query, k, &flt, mine, &n), RAGD_OK);
  if (n != h.count) fail_msg("\"%s\": store %zu hits, index %zu", query, h.count, n);
  for (size_t i = 0; i < n; i++) {
    if (h.items[i].chunk_rowid != mine[i].id || fabs(h.items[i].score - mine[i].score) > 1e-6)
      fail_msg("\"%s\" rank %zu: store %lld %.9f, index %lld %.9f", query, i + 1,
               (long long)h.items[i].chunk_rowid, h.items[i].score, (long long)mine[i].id,
               mine[i].score);
    assert_int_equal(h.items[i].document_rowid, mine[i].group);
  }
  store_hit_list_dispose(&h);
  free(groups);
  free(mine);
  return n;
}

static const char *const queries[] = {
    "refund",
    "How do I get my refunds for the parcel?",
    "tracking tracked parcels delivery",
    "HB-2024-000123 ERR_42",
    "배송이 누락되었습니다",
    "비밀번호를 재설정하려면 어떻게 하나요",
    "환불 카드 결제 영업일",
    "Café naïve v1.2 3.5",
    "the a of to is",
    "reset password account deleting",
    "\"refund\" OR NEAR(parcel) AND * ^title: (x)", /* no query syntax */
    "unknownword zzz",
    "",
};

static void test_matches_sqlite_bm25(void **state) {
  struct fx *fx = *state;
  struct retrieve_bm25_params p;
  size_t matched = 0;
  fill_store(fx, 120);
  retrieve_bm25_params_default(&p);
  load_index(fx, &p);
  for (size_t q = 0; q < sizeof queries / sizeof queries[0]; q++) {
    matched += compare(fx, queries[q], NULL, 10);
    compare(fx, queries[q], NULL, 200);
    compare(fx, queries[q], "{\"lang\":\"ko\"}", 10);
  }
  assert_true(matched > 50); /* the queries do hit */
  /* deletes move N, df and avgdl on both sides */
  assert_int_equal(fx->st.ops->delete_document(fx->st.ctx, "doc-0"), RAGD_OK);
  assert_int_equal(fx->st.ops->delete_document(fx->st.ctx, "doc-7"), RAGD_OK);
  {
    int64_t *g = NULL;
    size_t ng = 0, before = retrieve_bm25_count(fx->ix), removed = 0;
    /* the index learns which groups are left from the store */
    assert_int_equal(fx->st.ops->filter_documents(fx->st.ctx, "{}", &g, &ng), RAGD_OK);
    for (int64_t d = 1; d <= 120; d++) {
      int present = 0;
      for (size_t i = 0; i < ng; i++) present |= g[i] == d;
      if (!present) removed += retrieve_bm25_remove_group(fx->ix, d);
    }
    free(g);
    assert_true(removed > 0);
    assert_int_equal(retrieve_bm25_count(fx->ix), before - removed);
  }
  for (size_t q = 0; q < sizeof queries / sizeof queries[0]; q++) compare(fx, queries[q], NULL, 30);
}

static void test_many_deletes_compact(void **state) {
  struct fx *fx = *state;
  struct retrieve_bm25_params p;
  int64_t *g = NULL;
  size_t ng = 0;
  fill_store(fx, 400);
  retrieve_bm25_params_default(&p);
  load_index(fx, &p);
  /* remove and re-add most chunks through the index alone: the rebuilt
   * postings must score like a fresh load */
  for (unsigned d = 0; d < 400; d += 1) {
    if (d % 4 == 0) continue;
    char id[32];
    snprintf(id, sizeof id, "doc-%u", d);
    assert_int_equal(fx->st.ops->delete_document(fx->st.ctx, id), RAGD_OK);
  }
  assert_int_equal(fx->st.ops->filter_documents(fx->st.ctx, "{}", &g, &ng), RAGD_OK);
  for (int64_t d = 1; d <= 400; d++) {
    int present = 0;
    for (size_t i = 0; i < ng; i++) present |= g[i] == d;
    if (!present) retrieve_bm25_remove_group(fx->ix, d);
  }
  free(g);
  for (size_t q = 0; q < sizeof queries / sizeof queries[0]; q++) compare(fx, queries[q], NULL, 50);
  /* chunk ids re-used by new documents are found with their new text */
  fill_store(fx, 30);
  load_index(fx, &p);
  for (size_t q = 0; q < sizeof queries / sizeof queries[0]; q++) compare(fx, queries[q], NULL, 50);
}

/* Parameters other than the store's: a hand-computed score. */
static void test_params_and_hand_score(void **state) {
  struct retrieve_bm25_params p;
  struct retrieve_bm25 *ix = NULL;
  struct retrieve_bm25_hit h[4];
  size_t n = 0;
  double idf, f, want;
  (void)state;
  retrieve_bm25_params_default(&p);
  p.k1 = 0.9;
  p.b = 0.4;
  p.w_title = 3;
  p.w_heading = 0;
  p.w_text = 1;
  assert_int_equal(retrieve_bm25_create(&p, &ix), RAGD_OK);
  assert_int_equal(retrieve_bm25_add(ix, 1, 1, "refund", "", "refund takes days", 17), RAGD_OK);
  assert_int_equal(retrieve_bm25_add(ix, 2, 2, "shipping", "refund", "parcel parcel", 13), RAGD_OK);
  assert_int_equal(retrieve_bm25_add(ix, 3, 2, "other", "", "nothing here at all", 19), RAGD_OK);
  assert_int_equal(retrieve_bm25_search(ix, "refund", 4, NULL, h, &n), RAGD_OK);
  assert_int_equal(n, 2);
  /* N 3, df 2, avgdl (4 + 4 + 5) / 3; chunk 1: f = 3 + 1, D = 4 */
  idf = log((3 - 2 + 0.5) / (2 + 0.5));
  if (idf <= 0) idf = 1e-6;
  f = 4;
  want = idf * f * 1.9 / (f + 0.9 * (1 - 0.4 + 0.4 * 4 / (13.0 / 3)));
  assert_int_equal(h[0].id, 1);
  assert_true(fabs(h[0].score - want) < 1e-12);
  /* chunk 2 matches only in the heading, weight 0: listed, score 0 */
  assert_int_equal(h[1].id, 2);
  assert_true(h[1].score == 0.0);
  /* a filter to group 2 */
  {
    int64_t g2 = 2;
    struct retrieve_filter flt = {0, &g2, 1};
    assert_int_equal(retrieve_bm25_search(ix, "parcel refund", 4, &flt, h, &n), RAGD_OK);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].id, 2);
  }
  assert_int_equal(retrieve_bm25_remove(ix, 2), 1);
  assert_int_equal(retrieve_bm25_remove(ix, 2), 0);
  assert_int_equal(retrieve_bm25_search(ix, "parcel", 4, NULL, h, &n), RAGD_OK);
  assert_int_equal(n, 0);
  assert_int_equal(retrieve_bm25_count(ix), 2);
  retrieve_bm25_destroy(ix);
  p.b = 1.5;
  assert_int_equal(retrieve_bm25_create(&p, &ix), RAGD_EINVAL);
  p.b = 0.75;
  p.tokens = 7;
  assert_int_equal(retrieve_bm25_create(&p, &ix), RAGD_EINVAL);
}

/* words: a Hangul run is one term, so an inflected form ("배송이") does not
 * meet the bare noun ("배송"); bigrams do meet; both keeps both. */
static void test_token_modes(void **state) {
  struct retrieve_bm25_params p;
  struct retrieve_bm25 *ix = NULL;
  struct retrieve_bm25_hit h[4];
  size_t n = 0;
  (void)state;
  retrieve_bm25_params_default(&p);
  for (int mode = 0; mode < 3; mode++) {
    p.tokens = mode;
    assert_int_equal(retrieve_bm25_create(&p, &ix), RAGD_OK);
    assert_int_equal(retrieve_bm25_add(ix, 1, 1, "", "", "배송이 늦어요", strlen("배송이 늦어요")), RAGD_OK);
    assert_int_equal(retrieve_bm25_add(ix, 2, 2, "", "", "환불 규정 parcel", strlen("환불 규정 parcel")),
                     RAGD_OK);
    assert_int_equal(retrieve_bm25_search(ix, "배송 문의", 4, NULL, h, &n), RAGD_OK);
    assert_int_equal(n, mode == RETRIEVE_TOKENS_WORDS ? 0 : 1);
    assert_int_equal(retrieve_bm25_search(ix, "배송이", 4, NULL, h, &n), RAGD_OK);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].id, 1);
    assert_int_equal(retrieve_bm25_search(ix, "parcels", 4, NULL, h, &n), RAGD_OK);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].id, 2);
    retrieve_bm25_destroy(ix);
    ix = NULL;
  }
}


/* ---- pruned vs exhaustive ---- */

/* A Zipf-like vocabulary: word i of V is drawn with weight about 1/(i+1);
 * the first STOPS words are in most chunks ("the", "how", "to"). */
#define ZIPF_V 600
#define STOPS 8

static void zipf_word(struct buf *b, unsigned i) {
  static const char *const syl[] = {"ka", "ro", "mi", "te", "su", "na", "lo", "vi"};
  buf_append_str(b, "w");
  do {
    buf_append_str(b, syl[i % 8]);
    i /= 8;
  } while (i);
}

static unsigned zipf_draw(void) {
  /* inverse of the harmonic CDF, roughly: exp of a uniform over log(V) */
  double u = (double)rnd(1000000) / 1000000.0;
  unsigned i = (unsigned)(exp(u * log((double)ZIPF_V + 1)) - 1);
  return i < ZIPF_V ? i : ZIPF_V - 1;
}

static void zipf_text(struct buf *b, unsigned nwords) {
  for (unsigned s = 0; s < STOPS; s++)
    if (rnd(10) < 9) {
      buf_append_char(b, ' ');
      zipf_word(b, s);
    }
  for (unsigned i = 0; i < nwords; i++) {
    buf_append_char(b, ' ');
    zipf_word(b, zipf_draw());
  }
}

/* Adds chunk id (group id % 97) with generated fields; a few chunks share
 * one text so that equal scores must be ordered by id. */
static void zipf_add(struct retrieve_bm25 *ix, int64_t id) {
  struct buf title, head, text;
  buf_init(&title, 0);
  buf_init(&head, 0);
  buf_init(&text, 0);
  if (id % 50 == 7) {
    buf_append_str(&text, "wkaro wmite wsuna the same text");
  } else {
    zipf_text(&title, rnd(4));
    if (rnd(2)) zipf_text(&head, rnd(3));
    zipf_text(&text, 3 + rnd(rnd(5) ? 40 : 300));
  }
  assert_int_equal(retrieve_bm25_add(ix, id, id % 97, title.data ? title.data : "",
                                     head.data ? head.data : "", text.data ? text.data : "",
                                     text.len),
                   RAGD_OK);
  buf_dispose(&title);
  buf_dispose(&head);
  buf_dispose(&text);
}

/* Exhaustive and pruned searches give the same hits (ids, order, groups,
 * bit-equal scores); returns the postings each scored through the stats. */
static void compare_pruned(struct retrieve_bm25 *ix, const char *query, size_t k,
                           const struct retrieve_filter *f, size_t *post_ex, size_t *post_pr) {
  struct retrieve_bm25_hit *a = calloc(k, sizeof *a), *b = calloc(k, sizeof *b);
  struct kw_search_stats sa, sb;
  size_t na = 0, nb = 0;
  assert_non_null(a);
  assert_non_null(b);
  assert_int_equal(kw_search(ix, query, k, f, a, &na, 1, &sa), RAGD_OK);
  assert_int_equal(kw_search(ix, query, k, f, b, &nb, 0, &sb), RAGD_OK);
  if (na != nb) fail_msg("\"%s\" k %zu: exhaustive %zu hits, pruned %zu", query, k, na, nb);
  for (size_t i = 0; i < na; i++)
    if (a[i].id != b[i].id || a[i].group != b[i].group || a[i].score != b[i].score)
      fail_msg("\"%s\" k %zu rank %zu: exhaustive %lld %.17g, pruned %lld %.17g", query, k, i + 1,
               (long long)a[i].id, a[i].score, (long long)b[i].id, b[i].score);
  *post_ex += sa.postings;
  *post_pr += sb.postings;
  free(a);
  free(b);
}

static void zipf_query(struct buf *q, int stops_only) {
  unsigned n = 1 + rnd(stops_only ? 6 : 14);
  buf_reset(q);
  for (unsigned i = 0; i < n; i++) {
    if (i) buf_append_char(q, ' ');
    if (stops_only || rnd(3) == 0) zipf_word(q, rnd(STOPS));
    else if (rnd(10) == 0) buf_append_str(q, "wnotaword");
    else zipf_word(q, zipf_draw());
  }
}

static void test_pruned_equals_exhaustive(void **state) {
  static const size_t ks[] = {1, 3, 10, 57, 5000};
  struct retrieve_bm25_params p;
  struct buf q;
  size_t post_ex = 0, post_pr = 0;
  int64_t groups[40];
  (void)state;
  buf_init(&q, 0);
  for (size_t i = 0; i < 40; i++) groups[i] = (int64_t)(i * 2 + 1); /* ascending */
  for (int variant = 0; variant < 4; variant++) {
    struct retrieve_bm25 *ix = NULL;
    retrieve_bm25_params_default(&p);
    if (variant == 1) { /* zero weights give zero contributions and a zero bound */
      p.w_title = 0;
      p.w_heading = 3;
      p.w_text = 0.7;
      p.b = 1.0;
    } else if (variant == 2) {
      p.k1 = 2.0;
      p.b = 0.0;
      p.tokens = RETRIEVE_TOKENS_WORDS;
    } else if (variant == 3) {
      p.k1 = 0.5;
      p.b = 0.3;
      p.w_title = 5;
      p.tokens = RETRIEVE_TOKENS_BOTH;
    }
    assert_int_equal(retrieve_bm25_create(&p, &ix), RAGD_OK);
    for (int64_t id = 1; id <= 3000; id++) zipf_add(ix, id);
    /* deletes, whole groups, and re-adds (ids then leave slot order) */
    for (int64_t id = 1; id <= 3000; id++)
      if (rnd(5) == 0) retrieve_bm25_remove(ix, id);
    retrieve_bm25_remove_group(ix, 5);
    for (int rep = 0; rep < 300; rep++) zipf_add(ix, 1 + (int64_t)rnd(3000));
    for (int qn = 0; qn < 120; qn++) {
      struct retrieve_filter f = {0, groups, 1 + rnd(40)};
      zipf_query(&q, qn % 4 == 0);
      for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
        size_t ex = 0, pr = 0;
        compare_pruned(ix, q.data, ks[ki], NULL, &ex, &pr);
        compare_pruned(ix, q.data, ks[ki], &f, &ex, &pr);
        if (ks[ki] == 10) {
          post_ex += ex;
          post_pr += pr;
        }
      }
    }
    compare_pruned(ix, "wka wka wro wmi the same text", 10, NULL, &post_ex, &post_pr);
    retrieve_bm25_destroy(ix);
  }
  /* the pruning does prune: stop-word-heavy queries at k 10 score far
   * fewer postings than the exhaustive search */
  if (!(post_pr * 3 < post_ex)) fail_msg("pruned scored %zu postings, exhaustive %zu", post_pr, post_ex);
  buf_dispose(&q);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_matches_sqlite_bm25, setup, teardown),
      cmocka_unit_test_setup_teardown(test_many_deletes_compact, setup, teardown),
      cmocka_unit_test(test_params_and_hand_score),
      cmocka_unit_test(test_token_modes),
      cmocka_unit_test(test_pruned_equals_exhaustive),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
