/* test_llm_extractive.c - the offline generator: grounded sentence choice,
 * citations, the not-found answer, streaming shape, usage and cancellation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llm/llm.h"
#include "util/buf.h"

#define NOT_FOUND_EN                                                                   \
  "I could not find this in the knowledge base. Please rephrase the question or " \
  "contact a support agent."
#define NOT_FOUND_KO                                                                   \
  "지식 베이스에서 이 질문에 대한 답을 찾지 못했습니다. 질문을 바꾸어 보시거나 " \
  "상담원에게 문의해 주세요."

/* Everything the sink saw, in order. */
struct recorder {
  struct buf text;
  size_t deltas;
  size_t deltas_after_finish;
  size_t bad_deltas; /* deltas that were not valid UTF-8 on their own */
  size_t empty_deltas;
  size_t finishes;
  size_t usages;
  long prompt_tokens;
  long completion_tokens;
  ragd_err rc;
  char finish_reason[32];
  char error_code[32];
  size_t cancel_after; /* 0: never cancel */
};

/* A strict UTF-8 check of our own, so the test does not trust the code under
 * test's helpers: no overlongs, no surrogates, nothing above U+10FFFF, no NUL. */
static int utf8_ok(const char *p, size_t len) {
  const unsigned char *s = (const unsigned char *)p;
  size_t i = 0;
  while (i < len) {
    unsigned char c = s[i];
    uint32_t cp;
    size_t n, k;
    if (c == 0) return 0;
    if (c < 0x80) {
      i++;
      continue;
    }
    if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return 0;
    }
    if (len - i <= n) return 0;
    for (k = 1; k <= n; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    i += n + 1;
  }
  return 1;
}

static void rec_delta(void *ctx, const char *text, size_t len) {
  struct recorder *r = ctx;
  if (r->finishes) r->deltas_after_finish++;
  if (!len) r->empty_deltas++;
  if (!utf8_ok(text, len)) r->bad_deltas++;
  r->deltas++;
  assert_int_equal(buf_append(&r->text, text, len), RAGD_OK);
}

static void rec_usage(void *ctx, long prompt_tokens, long completion_tokens) {
  struct recorder *r = ctx;
  r->usages++;
  r->prompt_tokens = prompt_tokens;
  r->completion_tokens = completion_tokens;
}

static int rec_cancelled(void *ctx) {
  struct recorder *r = ctx;
  return r->cancel_after && r->deltas >= r->cancel_after;
}

static void rec_finish(void *ctx, ragd_err rc, const char *finish_reason, const char *error_code,
                       const char *error_message) {
  struct recorder *r = ctx;
  (void)error_message;
  r->finishes++;
  r->rc = rc;
  snprintf(r->finish_reason, sizeof r->finish_reason, "%s", finish_reason ? finish_reason : "");
  snprintf(r->error_code, sizeof r->error_code, "%s", error_code ? error_code : "");
}

static struct llm_sink rec_sink(struct recorder *r) {
  struct llm_sink sink = {
      .ctx = r,
      .on_delta = rec_delta,
      .on_usage = rec_usage,
      .is_cancelled = rec_cancelled,
      .on_finish = rec_finish,
  };
  return sink;
}

static void rec_init(struct recorder *r) {
  memset(r, 0, sizeof *r);
  buf_init(&r->text, 0);
}

/* Runs one generation and checks what every generation must satisfy. */
static void run_ex(const char *question, size_t context_len, const struct llm_passage *passages,
                   size_t count, struct recorder *r) {
  struct llm_config cfg = {.provider = "extractive"};
  struct llm_request req = {0};
  struct llm_sink sink = rec_sink(r);
  void *ctx = NULL;
  req.question = question;
  req.question_context_len = context_len;
  req.passages = passages;
  req.passage_count = count;
  req.temperature = -1;
  assert_int_equal(llm_extractive_ops.create(&cfg, &ctx), RAGD_OK);
  assert_int_equal(llm_extractive_ops.start(ctx, &req, &sink), RAGD_OK);
  llm_extractive_ops.destroy(ctx);

  assert_int_equal(r->finishes, 1);
  assert_int_equal(r->deltas_after_finish, 0);
  assert_int_equal(r->bad_deltas, 0);
  assert_int_equal(r->empty_deltas, 0);
  assert_true(utf8_ok(r->text.data ? r->text.data : "", r->text.len));
}

static void run(const char *question, const struct llm_passage *passages, size_t count,
                struct recorder *r) {
  run_ex(question, 0, passages, count, r);
}

static void rec_dispose(struct recorder *r) { buf_dispose(&r->text); }

/* Counts "[n]" citations, checks each n is one of the given indexes. */
static size_t check_citations(const char *answer, const struct llm_passage *passages,
                              size_t count) {
  size_t found = 0;
  const char *p = answer;
  while ((p = strchr(p, '[')) != NULL) {
    char *end = NULL;
    long n = strtol(p + 1, &end, 10);
    size_t i;
    int given = 0;
    assert_true(end != p + 1);
    assert_int_equal(*end, ']');
    for (i = 0; i < count; i++) {
      if (passages[i].index == n) given = 1;
    }
    if (!given) fail_msg("cited [%ld], which was not given: %s", n, answer);
    found++;
    p = end;
  }
  return found;
}

static void assert_contains(const char *haystack, const char *needle) {
  if (!strstr(haystack, needle)) fail_msg("expected \"%s\" in \"%s\"", needle, haystack);
}

static void assert_lacks(const char *haystack, const char *needle) {
  if (strstr(haystack, needle)) fail_msg("did not expect \"%s\" in \"%s\"", needle, haystack);
}

/* ---- tests ----------------------------------------------------------------- */

static void test_ops_table(void **state) {
  void *ctx = NULL;
  struct llm_config cfg = {.provider = "extractive", .base_url = "http://ignored",
                           .api_key = "ignored", .model = "ignored"};
  (void)state;
  assert_int_equal(llm_extractive_ops.version, LLM_OPS_VERSION);
  assert_string_equal(llm_extractive_ops.name, "extractive");
  assert_int_equal(llm_extractive_ops.create(&cfg, &ctx), RAGD_OK);
  assert_non_null(ctx);
  llm_extractive_ops.destroy(ctx);
}

static void test_english_answer_from_second_passage(void **state) {
  static const struct llm_passage passages[] = {
      {.index = 1, .title = "Passwords",
       .text = "To reset your password, open Settings and choose Security. You will "
               "receive an e-mail with a link that stays valid for 24 hours."},
      {.index = 2, .title = "Refunds",
       .text = "Our refund policy is simple. Refunds are processed within 5 business days "
               "after we receive the returned item. Store credit is available as an "
               "alternative."},
      {.index = 3, .title = "Shipping",
       .text = "We ship to over 40 countries. Shipping is free on orders over $50."},
  };
  struct recorder r;
  (void)state;
  rec_init(&r);
  run("How long does it take to process a refund?", passages, 3, &r);
  assert_int_equal(r.rc, RAGD_OK);
  assert_string_equal(r.finish_reason, "stop");
  assert_contains(r.text.data,
                  "Refunds are processed within 5 business days after we receive the "
                  "returned item [2].");
  assert_lacks(r.text.data, "password");
  assert_lacks(r.text.data, "Settings");
  assert_lacks(r.text.data, "ship");
  assert_lacks(r.text.data, "Store credit");
  assert_lacks(r.text.data, "knowledge base");
  assert_true(check_citations(r.text.data, passages, 3) >= 1);
  /* Streamed in pieces, like a model. */
  assert_true(r.deltas >= 5);
  rec_dispose(&r);
}

static void test_korean_refund_question(void **state) {
  static const struct llm_passage passages[] = {
      {.index = 1, .title = "비밀번호",
       .text = "비밀번호를 잊으셨다면 로그인 화면에서 비밀번호 재설정을 누르세요. 등록된 "
               "이메일로 링크가 발송됩니다."},
      {.index = 2, .title = "환불 안내",
       .text = "환불은 결제 취소 후 영업일 기준 3~5일 이내에 처리됩니다. 카드사 사정에 "
               "따라 며칠 더 걸릴 수 있습니다."},
      {.index = 3, .title = "배송",
       .text = "배송은 주문 후 2일 이내에 시작됩니다. 도서 산간 지역은 하루가 더 걸립니다."},
  };
  struct recorder r;
  (void)state;
  rec_init(&r);
  run("환불은 언제 처리되나요?", passages, 3, &r);
  assert_int_equal(r.rc, RAGD_OK);
  assert_string_equal(r.finish_reason, "stop");
  assert_contains(r.text.data, "환불은 결제 취소 후 영업일 기준 3~5일 이내에 처리됩니다 [2].");
  assert_lacks(r.text.data, "비밀번호");
  assert_lacks(r.text.data, "배송");
  assert_lacks(r.text.data, "지식 베이스");
  assert_lacks(r.text.data, "knowledge");
  assert_true(check_citations(r.text.data, passages, 3) >= 1);
  rec_dispose(&r);
}

static void test_no_passages_english(void **state) {
  struct recorder r;
  (void)state;
  rec_init(&r);
  run("How long does shipping take?", NULL, 0, &r);
  assert_int_equal(r.rc, RAGD_OK);
  assert_string_equal(r.finish_reason, "stop");
  assert_string_equal(r.text.data, NOT_FOUND_EN);
  assert_null(strchr(r.text.data, '['));
  assert_int_equal(r.usages, 1);
  assert_true(r.completion_tokens > 0);
  rec_dispose(&r);
}

static void test_no_passages_korean(void **state) {
  struct recorder r;
  (void)state;
  rec_init(&r);
  run("배송은 며칠 걸리나요?", NULL, 0, &r);
  assert_int_equal(r.rc, RAGD_OK);
  assert_string_equal(r.finish_reason, "stop");
  assert_string_equal(r.text.data, NOT_FOUND_KO);
  assert_null(strchr(r.text.data, '['));
  rec_dispose(&r);
}

static void test_no_overlap_is_not_found(void **state) {
  static const struct llm_passage passages[] = {
      {.index = 1, .text = "To reset your password, open Settings and choose Security."},
      {.index = 2, .text = "Refunds are processed within 5 business days."},
  };
  static const struct llm_passage chatty[] = {
      {.index = 1, .text = "What is the fastest way to reach us? The chat is open all day."},
      {.index = 2, .text = "The refund of the order is what we process first."},
  };
  struct recorder r;
  (void)state;
  rec_init(&r);
  run("Can I change my delivery address?", passages, 2, &r);
  assert_int_equal(r.rc, RAGD_OK);
  assert_string_equal(r.finish_reason, "stop");
  assert_string_equal(r.text.data, NOT_FOUND_EN);
  rec_dispose(&r);

  /* Only question words in common ("what", "is", "the", "of") is no overlap
   * either. */
  rec_init(&r);
  run("What is the meaning of life?", chatty, 2, &r);
  assert_string_equal(r.text.data, NOT_FOUND_EN);
  rec_dispose(&r);
}

static void test_deltas_are_whole_characters(void **state) {
  /* A long run without spaces, offset by one ASCII byte so that a byte-count
   * cut would land inside a three-byte Hangul sequence. */
  static const struct llm_passage passages[] = {
      {.index = 3,
       .text = "A환불처리는영업일기준으로삼일에서오일정도소요되며카드사에따라다릅니다. "
               "환불 요청은 앱의 주문 내역 화면에서 할 수 있습니다 😀."},
  };
  struct recorder r;
  (void)state;
  rec_init(&r);
  run("환불처리는 얼마나 걸리나요? 환불 요청", passages, 1, &r);
  assert_int_equal(r.rc, RAGD_OK);
  assert_contains(r.text.data, "[3]");
  assert_true(r.deltas >= 6);
  assert_true(check_citations(r.text.data, passages, 1) <= 2);
  rec_dispose(&r);
}

static void test_citations_bounded_and_given(void **state) {
  /* Many relevant sentences, non-consecutive indexes. */
  static const struct llm_passage passages[] = {
      {.index = 4,
       .text = "Refunds for card payments are processed in 5 days. Refunds for bank "
               "transfers are processed in 7 days. Refunds for gift cards are processed "
               "at once."},
      {.index = 7,
       .text = "Refunds are processed after the return is inspected. Refunds are "
               "processed to the original payment method."},
      {.index = 9, .text = "Processed refunds show up on your statement within a week."},
  };
  struct recorder r;
  size_t citations;
  (void)state;
  rec_init(&r);
  run("When are refunds processed?", passages, 3, &r);
  citations = check_citations(r.text.data, passages, 3);
  assert_in_range(citations, 1, 2);
  rec_dispose(&r);
}

static void test_faq_answer_not_the_question(void **state) {
  static const struct llm_passage passages[] = {
      {.index = 1,
       .text = "How do I cancel my subscription? Open Billing and press the red button "
               "at the bottom of the page. Your plan stays active until the period ends."},
  };
  struct recorder r;
  (void)state;
  rec_init(&r);
  run("How can I cancel my subscription?", passages, 1, &r);
  assert_contains(r.text.data, "Open Billing and press the red button at the bottom of the "
                               "page [1].");
  assert_lacks(r.text.data, "How do I cancel");
  rec_dispose(&r);
}

static void test_duplicate_sentences_quoted_once(void **state) {
  /* Overlapping chunks repeat a sentence; the answer must not. */
  static const struct llm_passage passages[] = {
      {.index = 1, .text = "Exchanges are free within 30 days of delivery."},
      {.index = 2, .text = "Exchanges are free within 30 days of delivery."},
  };
  struct recorder r;
  (void)state;
  rec_init(&r);
  run("Are exchanges free?", passages, 2, &r);
  assert_string_equal(r.text.data, "Exchanges are free within 30 days of delivery [1].");
  rec_dispose(&r);
}

static void test_second_sentence_when_it_adds(void **state) {
  static const struct llm_passage passages[] = {
      {.index = 1,
       .text = "Refunds are processed within 5 business days. The refund policy is "
               "simple."},
      {.index = 2,
       .text = "Return shipping costs are paid by the customer unless the item arrived "
               "damaged. Our warehouse is in Ohio."},
  };
  struct recorder r;
  (void)state;
  rec_init(&r);
  run("How long do refunds take, and who pays the return shipping costs?", passages, 2, &r);
  assert_contains(r.text.data, "Refunds are processed within 5 business days [1].");
  assert_contains(r.text.data, "Return shipping costs are paid by the customer unless the "
                               "item arrived damaged [2].");
  /* Repeats a matched term and adds nothing: left out. */
  assert_lacks(r.text.data, "policy is simple");
  assert_lacks(r.text.data, "Ohio");
  assert_int_equal(check_citations(r.text.data, passages, 2), 2);
  rec_dispose(&r);
}

static void test_usage_reported(void **state) {
  static const struct llm_passage passages[] = {
      {.index = 1, .title = "Warranty",
       .text = "The warranty covers manufacturing defects for two years from purchase."},
  };
  struct recorder r;
  (void)state;
  rec_init(&r);
  run("What does the warranty cover?", passages, 1, &r);
  assert_int_equal(r.usages, 1);
  assert_true(r.prompt_tokens >= 10);
  assert_true(r.completion_tokens >= 5);
  assert_true(r.completion_tokens < r.prompt_tokens + 10);
  rec_dispose(&r);
}

static void test_cancel_after_first_delta(void **state) {
  static const struct llm_passage passages[] = {
      {.index = 1,
       .text = "Refunds are processed within 5 business days after we receive the item."},
  };
  struct recorder r;
  (void)state;
  rec_init(&r);
  r.cancel_after = 1;
  run("How long does a refund take to process?", passages, 1, &r);
  assert_int_equal(r.deltas, 1);
  assert_int_equal(r.rc, RAGD_ECANCELLED);
  assert_string_equal(r.error_code, "cancelled");
  rec_dispose(&r);
}

static void test_max_tokens_stops_with_length(void **state) {
  static const struct llm_passage passages[] = {
      {.index = 1,
       .text = "Refunds are processed within 5 business days after we receive the "
               "returned item and check that it is complete and undamaged."},
  };
  struct llm_request req = {0};
  struct recorder r;
  struct llm_sink sink;
  void *ctx = NULL;
  (void)state;
  rec_init(&r);
  sink = rec_sink(&r);
  req.question = "How are refunds processed?";
  req.passages = passages;
  req.passage_count = 1;
  req.max_tokens = 4;
  assert_int_equal(llm_extractive_ops.create(NULL, &ctx), RAGD_OK);
  assert_int_equal(llm_extractive_ops.start(ctx, &req, &sink), RAGD_OK);
  llm_extractive_ops.destroy(ctx);
  assert_int_equal(r.finishes, 1);
  assert_int_equal(r.rc, RAGD_OK);
  assert_string_equal(r.finish_reason, "length");
  assert_true(r.deltas >= 1);
  assert_true(r.text.len < strlen(passages[0].text));
  rec_dispose(&r);
}

static void test_bad_requests_touch_no_sink(void **state) {
  static const struct llm_passage passages[] = {{.index = 1, .text = "Anything."}};
  struct llm_request req = {0};
  struct recorder r;
  struct llm_sink sink;
  void *ctx = NULL;
  (void)state;
  rec_init(&r);
  sink = rec_sink(&r);
  assert_int_equal(llm_extractive_ops.create(NULL, &ctx), RAGD_OK);
  req.passages = passages;
  req.passage_count = 1;
  assert_int_equal(llm_extractive_ops.start(ctx, &req, &sink), RAGD_EINVAL);
  req.question = "bad \xc3\x28 byte";
  assert_int_equal(llm_extractive_ops.start(ctx, &req, &sink), RAGD_EUTF8);
  llm_extractive_ops.destroy(ctx);
  assert_int_equal(r.deltas, 0);
  assert_int_equal(r.finishes, 0);
  assert_int_equal(r.usages, 0);
  rec_dispose(&r);
}

static void test_korean_how_to_prefers_steps(void **state) {
  /* "How do I reset it?" is answered by the steps under the matching
   * heading, in their order, not by the account-lock sentence that shares
   * the most words with the question. */
  static const struct llm_passage passages[] = {
      {.index = 1, .heading_path = "비밀번호 재설정 > 비밀번호를 잊어버렸을 때",
       .text = "1. 로그인 > 비밀번호 찾기를 누릅니다.\n2. 계정의 이메일 주소를 입력합니다.\n"
               "3. 메일을 열고 재설정 링크를 누릅니다.\n4. 새 비밀번호를 입력합니다."},
      {.index = 2, .heading_path = "비밀번호 재설정 > 계정 잠금",
       .text = "비밀번호를 연속으로 5번 틀리면 로그인이 잠깁니다. 비밀번호를 재설정하면 바로 "
               "잠금이 풀립니다."},
  };
  struct recorder r;
  (void)state;
  rec_init(&r);
  run("비밀번호를 잊어버렸어요. 어떻게 재설정하나요?", passages, 2, &r);
  assert_contains(r.text.data, "재설정 링크를 누릅니다 [1].");
  assert_lacks(r.text.data, "잠");
  assert_int_equal(check_citations(r.text.data, passages, 2), 2);
  rec_dispose(&r);
}

static void test_question_kind_prefers_number(void **state) {
  /* Both sentences hold "refund"; only one says how long. */
  static const struct llm_passage passages[] = {
      {.index = 1,
       .text = "A refund is always sent back to the original payment method. The refund "
               "reaches your account in 3 to 5 business days."},
  };
  struct recorder r;
  (void)state;
  rec_init(&r);
  run("How long until the refund reaches my account?", passages, 1, &r);
  /* Two sentences of one passage are quoted in the passage's order. */
  assert_contains(r.text.data, "The refund reaches your account in 3 to 5 business days [1].");
  rec_dispose(&r);
}

static void test_neighbour_holds_the_answer(void **state) {
  /* The sentence with the question's words says nothing more; the answer
   * follows it and shares no word with the question. */
  static const struct llm_passage passages[] = {
      {.index = 2,
       .text = "Our warehouse moved last spring. The loyalty programme was redesigned "
               "after customer feedback. Members now collect stamps instead of points. "
               "Opening hours did not change."},
  };
  struct recorder r;
  (void)state;
  rec_init(&r);
  run("Why was the loyalty programme redesigned?", passages, 1, &r);
  assert_contains(r.text.data, "The loyalty programme was redesigned after customer feedback [2].");
  assert_contains(r.text.data, "Members now collect stamps instead of points [2].");
  assert_lacks(r.text.data, "warehouse");
  rec_dispose(&r);
}

static void test_when_prefers_a_year(void **state) {
  /* Both sentences name the store and hold a number; "when" asks for a year,
   * which outweighs the first passage's rank. */
  static const struct llm_passage passages[] = {
      {.index = 1, .text = "The Busan store has 3 floors and 40 staff."},
      {.index = 2, .text = "The Busan store opened in 2019 next to the station."},
  };
  struct recorder r;
  (void)state;
  rec_init(&r);
  run("When did the Busan store open?", passages, 2, &r);
  assert_string_equal(r.text.data, "The Busan store opened in 2019 next to the station [2].");
  rec_dispose(&r);
}

static void test_duration_verb_and_unit(void **state) {
  /* "take" belongs to "how long does it take", and a number with a unit of
   * time answers it better than a sentence that repeats the question's
   * words; the heading says what the list is about. */
  static const struct llm_passage passages[] = {
      {.index = 1, .title = "Returns",
       .text = "See the refund page for how long each payment method takes."},
      {.index = 2, .title = "Refund timing", .heading_path = "Refund timing > Refund times",
       .text = "- Card: the approval is cancelled within 3 to 5 business days. Depending on "
               "your card company, the card refund may show on your next bill.\n"
               "- Bank transfer: 1 to 2 business days."},
  };
  struct recorder r;
  (void)state;
  rec_init(&r);
  run("How long does a card refund take?", passages, 2, &r);
  assert_true(strncmp(r.text.data, "Card: the approval is cancelled within 3 to 5 business days [2].",
                      64) == 0);
  assert_lacks(r.text.data, "See the refund page");
  rec_dispose(&r);
}

static void test_weak_match_is_not_found(void **state) {
  /* Only a word that every sentence has in common with the question: the
   * passages do not answer it, and the reply says so in the question's
   * language. */
  static const struct llm_passage passages[] = {
      {.index = 1,
       .text = "Orders ship from Icheon. Orders over 30,000 won ship free. Orders placed "
               "before noon leave the same day. Orders can be tracked in the app."},
  };
  static const struct llm_passage ko[] = {
      {.index = 1,
       .text = "주문은 이천에서 발송됩니다. 주문 내역은 앱에서 볼 수 있습니다. 주문 금액이 "
               "3만 원 이상이면 배송비가 없습니다. 주문 취소는 발송 전까지 가능합니다."},
  };
  struct recorder r;
  (void)state;
  rec_init(&r);
  run("Can I pay my orders with a company purchase card and a tax invoice?", passages, 1, &r);
  assert_string_equal(r.text.data, NOT_FOUND_EN);
  rec_dispose(&r);
  rec_init(&r);
  run("회사 법인카드로 주문 결제하고 세금계산서를 받을 수 있나요?", ko, 1, &r);
  assert_string_equal(r.text.data, NOT_FOUND_KO);
  rec_dispose(&r);
}

static void test_sentence_about_the_document_not_quoted(void **state) {
  /* The page's own introduction repeats the question's words ("how long
   * delivery takes") but answers nothing; the sentences under the matching
   * heading hold the answer without repeating a question word. */
  static const struct llm_passage passages[] = {
      {.index = 1, .title = "Shipping Fees and Delivery Times",
       .heading_path = "Shipping Fees and Delivery Times",
       .text = "Hanbit Market ships every domestic order from our warehouse in Icheon. This page "
               "explains how much shipping costs and how long delivery usually takes."},
      {.index = 2, .title = "Shipping Fees and Delivery Times",
       .heading_path = "Shipping Fees and Delivery Times > Delivery times",
       .text = "- Most of Seoul, Gyeonggi-do and Incheon: 1 business day after dispatch.\n"
               "- Other mainland areas: 1 to 2 business days after dispatch.\n"
               "- Jeju Island and remote islands: 2 to 3 business days after dispatch."},
  };
  static const struct llm_passage ko[] = {
      {.index = 1, .title = "배송비와 배송 기간", .heading_path = "배송비와 배송 기간",
       .text = "국내 주문은 모두 이천 물류센터에서 발송됩니다. 이 문서에서는 배송비가 얼마인지, "
               "배송에 보통 며칠이 걸리는지 안내합니다."},
  };
  struct recorder r;
  (void)state;
  rec_init(&r);
  run("How long does delivery take?", passages, 2, &r);
  assert_lacks(r.text.data, "This page");
  assert_contains(r.text.data, "Most of Seoul, Gyeonggi-do and Incheon: 1 business day after dispatch [2].");
  rec_dispose(&r);
  /* Nothing but the introduction matches: saying so beats quoting it. */
  rec_init(&r);
  run("배송은 며칠 걸리나요?", ko, 1, &r);
  assert_lacks(r.text.data, "이 문서");
  rec_dispose(&r);
}

static void test_heading_holds_the_question_words(void **state) {
  /* "How long ... refund" against a list under "Refund times": the list
   * items name no refund, but the one with a duration answers it under that
   * heading (before, nothing matched and the answer was "not found"). */
  static const struct llm_passage passages[] = {
      {.index = 1, .title = "Refund times", .heading_path = "Refund times",
       .text = "- Gift cards are accepted at checkout.\n"
               "- Card payments: 3 to 5 business days."},
  };
  struct recorder r;
  (void)state;
  rec_init(&r);
  run("How long does a refund take?", passages, 1, &r);
  assert_contains(r.text.data, "Card payments: 3 to 5 business days [1].");
  rec_dispose(&r);
}

static void test_condensed_follow_up(void **state) {
  /* "And what about the shipping fee?" after questions about shipping to
   * Japan and paying with PayPal, condensed by rules into "ship Japan pay
   * PayPal and what about the shipping fee?", with the passages the sample
   * knowledge base retrieves for it. Read as one question, the rare "Japan"
   * puts the destinations sentence first; told which part was carried over,
   * the follow-up's own words win and the fee sentence comes first. */
  static const struct llm_passage passages[] = {
      {.index = 1, .title = "International Shipping", .heading_path = "International Shipping > Fees",
       .text = "- International shipping starts at 15,000 KRW and depends on the weight and the "
               "destination. The exact fee is shown at checkout before you pay.\n"
               "- The 50,000 KRW free-shipping threshold applies only to domestic orders. There "
               "is no free shipping for international orders.\n"
               "- Import duties, taxes and customs fees in the destination country are paid by "
               "the recipient. They are not included in the price you pay us."},
      {.index = 2, .title = "International Shipping",
       .heading_path = "International Shipping > Destinations and delivery time",
       .text = "We currently ship to 8 countries and regions: the United States, Canada, Japan, "
               "China, Taiwan, Hong Kong, Singapore and Australia. International parcels usually "
               "arrive 5 to 10 business days after dispatch, depending on customs in the "
               "destination country."},
      {.index = 3, .title = "Return Policy", .heading_path = "Return Policy > Return shipping fees",
       .text = "- Change of mind, when you paid the 3,000 KRW shipping fee on the original order: "
               "the return fee is 3,000 KRW.\n"
               "- Defective, damaged or wrong item: free. We cover all shipping costs.\n"
               "The return fee is deducted from your refund."},
  };
  static const char carried[] = "ship Japan pay PayPal ";
  static const char question[] = "ship Japan pay PayPal and what about the shipping fee?";
  struct recorder r;
  (void)state;
  rec_init(&r);
  run(question, passages, 3, &r);
  if (strncmp(r.text.data, "We currently ship to 8 countries", 32) != 0)
    fail_msg("expected the destinations sentence first when nothing is marked carried: %s",
             r.text.data);
  rec_dispose(&r);
  rec_init(&r);
  run_ex(question, strlen(carried), passages, 3, &r);
  if (strncmp(r.text.data, "The exact fee is shown at checkout before you pay [1].", 53) != 0)
    fail_msg("expected the fee sentence first: %s", r.text.data);
  rec_dispose(&r);
  /* a context length past the end of the question is ignored */
  rec_init(&r);
  run_ex("and what about the shipping fee?", 1000, passages, 3, &r);
  assert_true(r.text.len > 0);
  rec_dispose(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ops_table),
      cmocka_unit_test(test_english_answer_from_second_passage),
      cmocka_unit_test(test_korean_refund_question),
      cmocka_unit_test(test_no_passages_english),
      cmocka_unit_test(test_no_passages_korean),
      cmocka_unit_test(test_no_overlap_is_not_found),
      cmocka_unit_test(test_deltas_are_whole_characters),
      cmocka_unit_test(test_citations_bounded_and_given),
      cmocka_unit_test(test_faq_answer_not_the_question),
      cmocka_unit_test(test_duplicate_sentences_quoted_once),
      cmocka_unit_test(test_second_sentence_when_it_adds),
      cmocka_unit_test(test_usage_reported),
      cmocka_unit_test(test_cancel_after_first_delta),
      cmocka_unit_test(test_max_tokens_stops_with_length),
      cmocka_unit_test(test_bad_requests_touch_no_sink),
      cmocka_unit_test(test_korean_how_to_prefers_steps),
      cmocka_unit_test(test_question_kind_prefers_number),
      cmocka_unit_test(test_neighbour_holds_the_answer),
      cmocka_unit_test(test_when_prefers_a_year),
      cmocka_unit_test(test_duration_verb_and_unit),
      cmocka_unit_test(test_weak_match_is_not_found),
      cmocka_unit_test(test_condensed_follow_up),
      cmocka_unit_test(test_sentence_about_the_document_not_quoted),
      cmocka_unit_test(test_heading_holds_the_question_words),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
