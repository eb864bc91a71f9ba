/* test_rag_condense.c - the deterministic rules that make a follow-up
 * question standalone for retrieval, in English and Korean. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rag/rag.h"

/* The query for question after one earlier exchange whose user turn was
 * user_text (searched as retrieval, when not NULL). */
static char *condense(const char *question, const char *user_text, const char *retrieval) {
  struct store_message items[2] = {
      {.role = "user", .content = (char *)user_text, .retrieval_query = (char *)retrieval},
      {.role = "assistant", .content = "An answer about something else entirely [1]."}};
  struct store_message_list hist = {items, 2};
  char *out = NULL;
  assert_int_equal(rag_condense_rules(question, user_text ? &hist : NULL, &out), RAGD_OK);
  assert_non_null(out);
  return out;
}

#define assert_condensed(question, user_text, retrieval, expected) \
  do {                                                             \
    char *got_ = condense(question, user_text, retrieval);         \
    assert_string_equal(got_, expected);                           \
    free(got_);                                                    \
  } while (0)

static void test_needed_english(void **state) {
  (void)state;
  /* connectives, anaphora, ellipsis */
  assert_true(rag_condense_needed("and the fee?"));
  assert_true(rag_condense_needed("And for returns?"));
  assert_true(rag_condense_needed("What about Japan?"));
  assert_true(rag_condense_needed("how about points"));
  assert_true(rag_condense_needed("Can I pay for it with PayPal?"));
  assert_true(rag_condense_needed("How much is the fee?"));
  assert_true(rag_condense_needed("why?"));
  assert_true(rag_condense_needed("Is that free?"));
  /* standalone questions */
  assert_false(rag_condense_needed("How long does a card refund take after a return?"));
  assert_false(rag_condense_needed("Do you ship internationally to Japan?"));
  assert_false(rag_condense_needed("Which payment methods work for international orders?"));
  /* a pronoun in a long, content-rich question is not a follow-up */
  assert_false(rag_condense_needed(
      "Is there a shipping fee for Jeju Island orders over fifty thousand won paid by card?"));
  assert_false(rag_condense_needed(""));
}

static void test_needed_korean(void **state) {
  (void)state;
  assert_true(rag_condense_needed("그럼 배송비는?"));
  assert_true(rag_condense_needed("배송비는요?"));
  assert_true(rag_condense_needed("그거 환불돼요?"));
  assert_true(rag_condense_needed("그리고 반품은 어떻게 하나요?"));
  assert_true(rag_condense_needed("얼마예요?"));
  assert_false(rag_condense_needed("카드 결제 환불은 며칠 걸리나요?"));
  assert_false(rag_condense_needed("비밀번호를 잊어버렸어요. 어떻게 재설정하나요?"));
  assert_false(rag_condense_needed("해외 배송 가능한 국가 목록 알려주세요"));
}

static void test_condense_english(void **state) {
  (void)state;
  assert_condensed("How much is the fee?", "Do you ship to Japan?", NULL,
                   "ship Japan How much is the fee?");
  /* the previous turn's retrieval query carries the older subject along */
  assert_condensed("And for returns?", "How much is the fee?", "ship Japan How much is the fee?",
                   "ship Japan fee And for returns?");
  /* terms the question already has are not repeated (case-insensitively) */
  assert_condensed("and the Japan fee?", "Do you ship to Japan?", NULL,
                   "ship and the Japan fee?");
  /* possessives and one-letter words drop out */
  assert_condensed("What about it?", "Is Hanbit Market's return policy fair to me?", NULL,
                   "Hanbit Market return policy fair What about it?");
  /* a standalone question is searched as it is */
  assert_condensed("How long does a card refund take?", "Do you ship to Japan?", NULL,
                   "How long does a card refund take?");
}

static void test_condense_korean(void **state) {
  (void)state;
  /* particles and polite endings are stripped from the carried terms */
  assert_condensed("그럼 배송비는?", "일본으로 배송되나요?", NULL, "일본 배송 그럼 배송비는?");
  assert_condensed("그럼 반품은요?", "배송비는 얼마예요?", "일본 배송 배송비는 얼마예요?",
                   "일본 배송 배송비 그럼 반품은요?");
  /* a two-syllable word keeps its last syllable ("국가" is not 국 + 가) */
  assert_condensed("그거 얼마예요?", "국가 목록이 있나요?", NULL, "국가 목록 그거 얼마예요?");
  assert_condensed("카드 결제 환불은 며칠 걸리나요?", "일본으로 배송되나요?", NULL,
                   "카드 결제 환불은 며칠 걸리나요?");
}

static void test_condense_history_shapes(void **state) {
  struct store_message only_answer[1] = {{.role = "assistant", .content = "Hello [1]"}};
  struct store_message_list hist = {only_answer, 1};
  struct store_message many[RAG_CONDENSE_TERMS_MAX + 1];
  char *out = NULL;
  (void)state;
  /* no history, or none of it from the user: the question itself */
  assert_int_equal(rag_condense_rules("and the fee?", NULL, &out), RAGD_OK);
  assert_string_equal(out, "and the fee?");
  free(out);
  assert_int_equal(rag_condense_rules("and the fee?", &hist, &out), RAGD_OK);
  assert_string_equal(out, "and the fee?");
  free(out);
  /* the last user turn counts, and only its most recent terms */
  memset(many, 0, sizeof many);
  for (size_t i = 0; i < RAG_CONDENSE_TERMS_MAX; i++) many[i].role = "assistant";
  many[0].role = "user";
  many[0].content = "older subject words";
  many[RAG_CONDENSE_TERMS_MAX].role = "user";
  many[RAG_CONDENSE_TERMS_MAX].content =
      "alpha bravo charlie delta echo foxtrot golf hotel india juliet";
  hist.items = many;
  hist.count = RAG_CONDENSE_TERMS_MAX + 1;
  assert_int_equal(rag_condense_rules("and?", &hist, &out), RAGD_OK);
  assert_string_equal(out, "charlie delta echo foxtrot golf hotel india juliet and?");
  free(out);
  assert_int_equal(rag_condense_rules(NULL, &hist, &out), RAGD_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_needed_english),
      cmocka_unit_test(test_needed_korean),
      cmocka_unit_test(test_condense_english),
      cmocka_unit_test(test_condense_korean),
      cmocka_unit_test(test_condense_history_shapes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
