/* rag budget: prompts fitted to a context window with exact BPE counts:
 * exactly at the limit nothing is dropped, one token over drops the
 * lowest-ranked passage, then history goes, then the last passage is cut at
 * a token boundary, and a question that cannot fit is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rag/rag.h"
#include "text/text.h"

static struct text_bpe *bpe;

static int setup(void **state) {
  const char *src = getenv("RAGD_SOURCE_DIR");
  char dir[4096];
  struct buf err;
  (void)state;
  snprintf(dir, sizeof dir, "%s/data/tokenizers", src ? src : ".");
  buf_init(&err, 0);
  if (text_bpe_load(TEXT_BPE_O200K_BASE, dir, &bpe, &err) != RAGD_OK) {
    fprintf(stderr, "cannot load o200k_base: %s\n", err.data ? err.data : "");
    buf_dispose(&err);
    return -1;
  }
  buf_dispose(&err);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  text_bpe_free(bpe);
  return 0;
}

static void passages_init(struct llm_passage *p, size_t n) {
  static const char *const texts[] = {
      "Card refunds are returned to the card within 3 to 5 business days.",
      "Bank transfers are refunded within 1 to 2 business days to the account on file.",
      "Points come back at once with their original expiry date.",
      "Coupons come back when they have not expired yet.",
  };
  for (size_t i = 0; i < n; i++) {
    p[i].index = (int)i + 1;
    p[i].title = "Refund timing";
    p[i].url = "";
    p[i].heading_path = "Refund timing > By payment method";
    p[i].text = texts[i % 4];
  }
}

/* The token count of the prompt with every passage and no history. */
static size_t full_count(void) {
  struct llm_passage p[4];
  struct rag_prompt prompt;
  size_t tokens = 0;
  passages_init(p, 4);
  assert_int_equal(rag_prompt_build("How long do refunds take?", p, 4, NULL, &prompt), RAGD_OK);
  assert_int_equal(rag_prompt_count(bpe, prompt.messages, prompt.count, &tokens), RAGD_OK);
  rag_prompt_dispose(&prompt);
  return tokens;
}

static void fit(long window, long reserve, struct llm_passage *p, size_t *n,
                struct store_message_list *hist, size_t *skip, char **cut,
                struct rag_budget_report *rep, ragd_err want) {
  struct rag_budget b = {bpe, window, reserve};
  struct rag_prompt prompt;
  ragd_err rc = rag_budget_fit(&b, "How long do refunds take?", 0, p, n, hist, skip, cut, &prompt, rep);
  assert_int_equal(rc, want);
  if (rc == RAGD_OK) {
    size_t tokens = 0;
    assert_int_equal(rag_prompt_count(bpe, prompt.messages, prompt.count, &tokens), RAGD_OK);
    assert_int_equal(tokens, rep->prompt_tokens);
    assert_true(tokens <= (size_t)(window - reserve));
    rag_prompt_dispose(&prompt);
  }
}

static void test_exactly_at_the_limit_keeps_everything(void **state) {
  struct llm_passage p[4];
  size_t n = 4, skip = 0, full = full_count();
  char *cut = NULL;
  struct rag_budget_report rep;
  (void)state;
  passages_init(p, 4);
  fit((long)full + 100, 100, p, &n, NULL, &skip, &cut, &rep, RAGD_OK);
  assert_int_equal(n, 4);
  assert_int_equal(rep.prompt_tokens, full);
  assert_int_equal(rep.passages_dropped, 0);
  assert_null(cut);
}

static void test_one_token_over_drops_the_last_passage(void **state) {
  struct llm_passage p[4];
  size_t n = 4, skip = 0, full = full_count();
  char *cut = NULL;
  struct rag_budget_report rep;
  (void)state;
  passages_init(p, 4);
  fit((long)full + 100 - 1, 100, p, &n, NULL, &skip, &cut, &rep, RAGD_OK);
  assert_int_equal(n, 3);
  assert_int_equal(rep.passages_dropped, 1);
  assert_int_equal(p[0].index, 1); /* the best passages stay */
}

static void test_history_goes_after_passages_then_the_passage_is_cut(void **state) {
  struct llm_passage p[4];
  struct store_message items[6];
  struct store_message_list hist = {items, 6};
  size_t n = 4, skip = 0;
  char *cut = NULL;
  struct rag_budget_report rep;
  char *long_text;
  size_t original_tokens = 0;
  (void)state;
  for (int i = 0; i < 6; i++) {
    items[i].role = i % 2 ? "assistant" : "user";
    items[i].content = "An earlier turn of the conversation about shipping fees and parcels.";
    items[i].created_at = 0;
  }
  passages_init(p, 4);
  /* a first passage far longer than the window */
  long_text = malloc(40000);
  assert_non_null(long_text);
  long_text[0] = '\0';
  for (int i = 0; i < 400; i++) strncat(long_text, "환불은 영업일 기준 3일 안에 처리됩니다. ", 40000 - strlen(long_text) - 1);
  p[0].text = long_text;
  assert_int_equal(text_bpe_count(bpe, long_text, strlen(long_text), &original_tokens), RAGD_OK);
  fit(1500, 300, p, &n, &hist, &skip, &cut, &rep, RAGD_OK);
  assert_int_equal(n, 1);
  assert_int_equal(skip, 6);
  assert_int_equal(rep.history_dropped, 6);
  assert_int_equal(rep.passage_truncated, 1);
  assert_non_null(cut);
  assert_ptr_equal(p[0].text, cut);
  /* a prefix of the original, whole characters, and as long as fits */
  assert_int_equal(strncmp(long_text, cut, strlen(cut)), 0);
  assert_true(strlen(cut) > 0);
  assert_int_equal(text_utf8_validate(cut, strlen(cut), NULL), RAGD_OK);
  assert_true(rep.prompt_tokens > 1200 - 30); /* not cut far more than needed */
  free(cut);
  free(long_text);
}

static void test_question_that_cannot_fit_is_refused(void **state) {
  struct llm_passage p[1];
  size_t n = 1, skip = 0;
  char *cut = NULL;
  struct rag_budget_report rep;
  (void)state;
  passages_init(p, 1);
  fit(150, 100, p, &n, NULL, &skip, &cut, &rep, RAGD_ETOOBIG);
  assert_null(cut);
  fit(100, 100, p, &n, NULL, &skip, &cut, &rep, RAGD_ECONFIG);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exactly_at_the_limit_keeps_everything),
      cmocka_unit_test(test_one_token_over_drops_the_last_passage),
      cmocka_unit_test(test_history_goes_after_passages_then_the_passage_is_cut),
      cmocka_unit_test(test_question_that_cannot_fit_is_refused),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
