/* test_text.c - unit tests for src/text/: UTF-8, normalization, BM25 terms,
 * structure and chunking, sentences, estimates, titles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "text/text.h"
#include "util/buf.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* ---- helpers ------------------------------------------------------------------ */

/* Terms collected from text_tokenize, "|"-joined, and their offsets. */
struct terms {
  struct buf joined;
  size_t starts[256];
  size_t ends[256];
  size_t count;
  size_t stop_after; /* 0: never stop */
};

static int collect(void *ctx, const char *term, size_t term_len, size_t start, size_t end) {
  struct terms *t = ctx;
  if (t->joined.len > 0) assert_int_equal(buf_append_char(&t->joined, '|'), RAGD_OK);
  assert_int_equal(buf_append(&t->joined, term, term_len), RAGD_OK);
  assert_true(t->count < 256);
  t->starts[t->count] = start;
  t->ends[t->count] = end;
  t->count++;
  return t->stop_after && t->count >= t->stop_after;
}

/* Tokenizes s and compares the "|"-joined terms with want. */
static void check_terms(const char *s, const char *want) {
  struct terms t;
  memset(&t, 0, sizeof t);
  buf_init(&t.joined, 0);
  assert_int_equal(text_tokenize(s, strlen(s), collect, &t), RAGD_OK);
  assert_string_equal(t.joined.data ? t.joined.data : "", want);
  buf_dispose(&t.joined);
}

static void check_norm(const char *s, const char *want) {
  char *out = NULL;
  size_t n = 0;
  assert_int_equal(text_normalize(s, strlen(s), &out, &n), RAGD_OK);
  assert_string_equal(out, want);
  assert_int_equal(n, strlen(want));
  free(out);
}

static void check_invalid(const char *s, size_t len, size_t want_offset) {
  size_t off = (size_t)-1;
  assert_int_equal(text_utf8_validate(s, len, &off), RAGD_EUTF8);
  assert_int_equal(off, want_offset);
}

/* Sentences of s, "|"-joined. */
static char *sentences(const char *s) {
  struct text_span *spans = NULL;
  size_t count = 0, k;
  struct buf b;
  buf_init(&b, 0);
  assert_int_equal(text_sentences(s, strlen(s), &spans, &count), RAGD_OK);
  for (k = 0; k < count; k++) {
    if (k) assert_int_equal(buf_append_char(&b, '|'), RAGD_OK);
    assert_int_equal(buf_append(&b, s + spans[k].start, spans[k].len), RAGD_OK);
  }
  free(spans);
  return buf_take(&b, NULL);
}

static int valid_utf8(const char *s, size_t n) {
  size_t off;
  return text_utf8_validate(s, n, &off) == RAGD_OK;
}

/* ---- UTF-8 ---------------------------------------------------------------------- */

static void test_utf8_valid(void **state) {
  const char *ok = "Refund 환불 返金 возврат Ελλάδα 😀 naïve";
  size_t off = 99;
  (void)state;
  assert_int_equal(text_utf8_validate(ok, strlen(ok), &off), RAGD_OK);
  assert_int_equal(text_utf8_validate("", 0, &off), RAGD_OK);
  /* boundaries: U+007F, U+0080, U+07FF, U+0800, U+D7FF, U+E000, U+FFFF, U+10000, U+10FFFF */
  assert_int_equal(text_utf8_validate(S("\x7F\xC2\x80\xDF\xBF\xE0\xA0\x80\xED\x9F\xBF"
                                        "\xEE\x80\x80\xEF\xBF\xBF\xF0\x90\x80\x80\xF4\x8F\xBF\xBF"),
                                      &off),
                   RAGD_OK);
}

static void test_utf8_invalid(void **state) {
  (void)state;
  check_invalid(S("ab\xC0\xAF"), 2);             /* overlong '/' */
  check_invalid(S("a\xE0\x80\xAF"), 1);          /* overlong 3-byte */
  check_invalid(S("abc\xF0\x80\x80\xAF"), 3);    /* overlong 4-byte */
  check_invalid(S("x\xED\xA0\x80y"), 1);         /* surrogate U+D800 */
  check_invalid(S("\xED\xBF\xBF"), 0);           /* surrogate U+DFFF */
  check_invalid(S("환불\xEC\x9D"), 6);           /* truncated at the end */
  check_invalid(S("ab\xE2\x82" "c"), 2);         /* truncated in the middle */
  check_invalid(S("abc\x80"), 3);                /* stray continuation */
  check_invalid(S("\xC3\xA9\xA9"), 2);           /* continuation after a complete char */
  check_invalid(S("ok\xFF"), 2);
  check_invalid(S("ok\xFE"), 2);
  check_invalid(S("\xF4\x90\x80\x80"), 0);       /* above U+10FFFF */
  check_invalid(S("\xF5\x80\x80\x80"), 0);
  check_invalid("abc\0def", 7, 3);                /* NUL */
}

static void test_utf8_prefix(void **state) {
  const char *k = "가나다"; /* 3 bytes each */
  (void)state;
  assert_int_equal(text_utf8_prefix(k, 9, 100), 9);
  assert_int_equal(text_utf8_prefix(k, 9, 9), 9);
  assert_int_equal(text_utf8_prefix(k, 9, 8), 6);
  assert_int_equal(text_utf8_prefix(k, 9, 7), 6);
  assert_int_equal(text_utf8_prefix(k, 9, 6), 6);
  assert_int_equal(text_utf8_prefix(k, 9, 2), 0);
  assert_int_equal(text_utf8_prefix("ab😀", 6, 5), 2);
  assert_int_equal(text_utf8_prefix("abc", 3, 2), 2);
}

/* ---- normalization --------------------------------------------------------------- */

static void test_normalize(void **state) {
  (void)state;
  check_norm("ＡＢＣ", "abc");
  check_norm("ｒｅｆｕｎｄ１２３", "refund123");
  check_norm("\xEF\xAC\x81le", "file"); /* U+FB01 ligature */
  check_norm("환불 정책은 무엇인가요?", "환불 정책은 무엇인가요?");
  check_norm("Straße", "strasse");
  check_norm("ΣΊΣΥΦΟΣ", "σίσυφοσ");
  check_norm("e\xCC\x81", "\xC3\xA9"); /* e + combining acute composes */
  check_norm("\xE2\x91\xA0", "1");     /* circled one */
  check_norm("ｶﾀｶﾅ", "カタカナ");      /* half-width katakana */
  check_norm("", "");
}

/* ---- BM25 terms ----------------------------------------------------------------- */

static void test_tokenize_words(void **state) {
  (void)state;
  check_terms("Refund POLICY for Card-Payments", "refund|policy|for|card|payments");
  check_terms("  ", "");
  check_terms("", "");
  check_terms("Ｆｕｌｌ-width ＡＢＣ", "full|width|abc");
  check_terms("café naïve", "café|naïve");
  check_terms("cafe\xCC\x81", "caf\xC3\xA9"); /* mark inside a word, composed */
  check_terms("Straße", "strasse");
  check_terms("\xEF\xAC\x81nal", "final");
  check_terms("Возврат денег", "возврат|денег");
}

static void test_tokenize_digits(void **state) {
  (void)state;
  check_terms("price 3.5 USD", "price|3.5|usd");
  check_terms("1,000 won", "1,000|won");
  check_terms("Order HB-2024-000123 is late", "order|hb-2024-000123|is|late");
  check_terms("v1.2.3", "v1.2.3");
  check_terms("covid-19", "covid-19");
  check_terms("well-known e.g. a,b", "well|known|e|g|a|b");
  check_terms("in 2024. Then", "in|2024|then");
  check_terms("3, 4", "3|4");
  check_terms("2024-", "2024");
  check_terms("1..2", "1|2");
}

static void test_tokenize_korean(void **state) {
  (void)state;
  check_terms("환불은", "환불|불은");
  check_terms("환불을", "환불|불을");
  check_terms("환불이", "환불|불이");
  check_terms("환", "환");
  check_terms("환불 policy를 알려줘", "환불|policy|를|알려|려줘");
  check_terms("3개월", "3|개월");
  check_terms("返金ポリシー", "返金|金ポ|ポリ|リシ|シー");
  check_terms("한빛마켓(Hanbit)", "한빛|빛마|마켓|hanbit");
}

static void test_tokenize_drops_symbols(void **state) {
  (void)state;
  check_terms("refund \"NEAR\" * -foo OR (", "refund|near|foo|or");
  check_terms("AND: ^title:x~2 {a} [b]", "and|title|x|2|a|b");
  check_terms("good 👍 great 👨‍👩‍👧 ok", "good|great|ok");
  check_terms("환불😀정책", "환불|정책");
  check_terms("!!! ... ---", "");
}

static void test_tokenize_offsets(void **state) {
  const char *s = "ＡＢＣ 환불은 Café";
  struct terms t;
  (void)state;
  memset(&t, 0, sizeof t);
  buf_init(&t.joined, 0);
  assert_int_equal(text_tokenize(s, strlen(s), collect, &t), RAGD_OK);
  assert_string_equal(t.joined.data, "abc|환불|불은|café");
  /* "ＡＢＣ" is 9 bytes in the original, the term only 3 */
  assert_int_equal(t.starts[0], 0);
  assert_int_equal(t.ends[0], 9);
  assert_int_equal(t.starts[1], 10);
  assert_int_equal(t.ends[1], 16);
  assert_int_equal(t.starts[2], 13);
  assert_int_equal(t.ends[2], 19);
  assert_int_equal(t.starts[3], 20);
  assert_int_equal(t.ends[3], strlen(s));
  assert_memory_equal(s + t.starts[3], "Café", 5);
  buf_dispose(&t.joined);
}

static void test_tokenize_stop(void **state) {
  struct terms t;
  (void)state;
  memset(&t, 0, sizeof t);
  buf_init(&t.joined, 0);
  t.stop_after = 2;
  assert_int_equal(text_tokenize(S("one two three four"), collect, &t), RAGD_ECANCELLED);
  assert_int_equal(t.count, 2);
  buf_dispose(&t.joined);
}

/* ---- structure and chunks ---------------------------------------------------------- */

static struct text_chunk *find_chunk(struct text_chunk_list *l, const char *needle) {
  size_t k;
  for (k = 0; k < l->count; k++) {
    if (strstr(l->items[k].text, needle)) return &l->items[k];
  }
  return NULL;
}

static void test_chunk_markdown(void **state) {
  const char *md =
      "---\ntitle: front matter\n---\n"
      "# Refunds\n\n"
      "Intro with **bold**, _em_, `code` and a [link](https://x.example/a_b).\n"
      "Second line of the *same* paragraph.\n\n"
      "## Card payments\n\n"
      "- First ~~old~~ item\n"
      "* Second item with ![alt text](img.png)\n\n"
      "1. Step one\n"
      "2. Step two\n\n"
      "Setext heading\n"
      "--------------\n\n"
      "> Quoted &amp; decoded\n\n"
      "| Method | Days |\n|---|:---:|\n| Card | 3-5 |\n\n"
      "```sh\nrefund --now *raw*\n```\n\n"
      "### Deep\n\nsnake_case stays. 2 * 3 = 6.\n\n"
      "Literal: https://x.example/_private, 5* and ~5 days, [not a link] and a*b*c.\n\n"
      "# Other top\n\nTop text.\n";
  struct text_chunk_list l;
  struct text_chunk *c;
  size_t k;
  (void)state;
  assert_int_equal(text_chunk(md, strlen(md), TEXT_FORMAT_MARKDOWN, NULL, &l), RAGD_OK);
  assert_true(l.count >= 4);
  for (k = 0; k < l.count; k++) {
    assert_int_equal(strlen(l.items[k].text), l.items[k].text_len);
    assert_int_equal(l.items[k].token_count,
                     text_estimate_tokens(l.items[k].text, l.items[k].text_len));
    assert_null(strstr(l.items[k].text, "front matter"));
  }

  c = find_chunk(&l, "Intro");
  assert_non_null(c);
  assert_string_equal(c->heading_path, "Refunds");
  assert_string_equal(c->text, "Intro with bold, em, code and a link. Second line of the same "
                               "paragraph.");

  c = find_chunk(&l, "First");
  assert_non_null(c);
  assert_string_equal(c->heading_path, "Refunds > Card payments");
  assert_string_equal(c->text, "- First old item\n- Second item with alt text\n"
                               "1. Step one\n2. Step two");

  c = find_chunk(&l, "Quoted");
  assert_non_null(c);
  assert_string_equal(c->heading_path, "Refunds > Setext heading");
  assert_non_null(strstr(c->text, "Quoted & decoded"));
  assert_non_null(strstr(c->text, "Method | Days\nCard | 3-5"));
  assert_null(strstr(c->text, "---"));
  assert_non_null(strstr(c->text, "refund --now *raw*")); /* code kept verbatim */

  c = find_chunk(&l, "snake_case");
  assert_non_null(c);
  assert_string_equal(c->heading_path, "Refunds > Setext heading > Deep");
  assert_memory_equal(c->text, "snake_case stays. 2 * 3 = 6.\n\n", 30);

  c = find_chunk(&l, "Literal");
  assert_non_null(c);
  /* a*b*c is emphasis inside a word, as in CommonMark */
  assert_non_null(strstr(c->text, "Literal: https://x.example/_private, 5* and ~5 days, "
                                  "[not a link] and abc."));

  c = find_chunk(&l, "Top text");
  assert_non_null(c);
  assert_string_equal(c->heading_path, "Other top");
  text_chunk_list_dispose(&l);
}

static void test_chunk_plain_text(void **state) {
  const char *txt = "First paragraph\nsecond line.\n\n\n  Second paragraph.  \n";
  struct text_chunk_list l;
  (void)state;
  assert_int_equal(text_chunk(txt, strlen(txt), TEXT_FORMAT_TEXT, NULL, &l), RAGD_OK);
  assert_int_equal(l.count, 1);
  assert_string_equal(l.items[0].heading_path, "");
  assert_string_equal(l.items[0].text, "First paragraph\nsecond line.\n\nSecond paragraph.");
  text_chunk_list_dispose(&l);

  assert_int_equal(text_chunk(S(" \n\n \t"), TEXT_FORMAT_TEXT, NULL, &l), RAGD_OK);
  assert_int_equal(l.count, 0);
  text_chunk_list_dispose(&l);
  assert_int_equal(text_chunk("", 0, TEXT_FORMAT_MARKDOWN, NULL, &l), RAGD_OK);
  assert_int_equal(l.count, 0);
  text_chunk_list_dispose(&l);
}

/* Builds "Sentence number N is here." for N = 1..count, one paragraph. */
static char *long_paragraph(size_t count) {
  struct buf b;
  size_t k;
  buf_init(&b, 0);
  assert_int_equal(buf_append_str(&b, "# Long\n\n"), RAGD_OK);
  for (k = 1; k <= count; k++) {
    assert_int_equal(buf_appendf(&b, "Sentence number %zu is here. ", k), RAGD_OK);
  }
  return buf_take(&b, NULL);
}

static void test_chunk_long_paragraph_overlap(void **state) {
  char *doc = long_paragraph(200);
  struct text_chunk_opts opts = {.tokens_max = 64, .tokens_overlap = 16};
  struct text_chunk_list l;
  size_t k;
  (void)state;
  assert_int_equal(text_chunk(doc, strlen(doc), TEXT_FORMAT_MARKDOWN, &opts, &l), RAGD_OK);
  assert_true(l.count > 5);
  for (k = 0; k < l.count; k++) {
    const struct text_chunk *c = &l.items[k];
    assert_true(c->token_count <= 64);
    assert_true(c->token_count > 16);
    assert_string_equal(c->heading_path, "Long");
    /* cut at sentence ends */
    assert_memory_equal(c->text, "Sentence number ", 16);
    assert_int_equal(c->text[c->text_len - 1], '.');
    if (k > 0) {
      /* overlap: the previous chunk's last sentence opens this one, or
       * follows the sentences repeated before it */
      const struct text_chunk *p = &l.items[k - 1];
      const char *last = strrchr(p->text, 'S');
      char first[64];
      size_t first_len = (size_t)(strchr(c->text, '.') - c->text) + 1;
      assert_true(first_len < sizeof first);
      memcpy(first, c->text, first_len);
      first[first_len] = '\0';
      assert_non_null(last);
      assert_non_null(strstr(c->text, last));
      assert_non_null(strstr(p->text, first));
      assert_true(strstr(c->text, last) - c->text < (ptrdiff_t)c->text_len / 2);
    }
  }
  /* nothing lost: the first and the last sentence are there */
  assert_non_null(strstr(l.items[0].text, "Sentence number 1 is"));
  assert_non_null(strstr(l.items[l.count - 1].text, "Sentence number 200 is here."));
  text_chunk_list_dispose(&l);

  /* without overlap, chunks do not share sentences */
  opts.tokens_overlap = 0;
  opts.tokens_max = 64;
  assert_int_equal(text_chunk(doc, strlen(doc), TEXT_FORMAT_MARKDOWN, &opts, &l), RAGD_OK);
  for (k = 1; k < l.count; k++) {
    const char *last = strrchr(l.items[k - 1].text, 'S');
    assert_null(strstr(l.items[k].text, last));
  }
  text_chunk_list_dispose(&l);
  free(doc);
}

static void test_chunk_long_korean(void **state) {
  struct buf b;
  char *doc;
  size_t len, k, total = 0;
  struct text_chunk_opts opts = {.tokens_max = 50, .tokens_overlap = 10};
  struct text_chunk_list l;
  (void)state;
  /* one 1000-syllable "word" (no spaces, no end marks): cut by characters */
  buf_init(&b, 0);
  for (k = 0; k < 1000; k++) assert_int_equal(buf_append_str(&b, k % 2 ? "환" : "불"), RAGD_OK);
  doc = buf_take(&b, &len);
  assert_int_equal(text_chunk(doc, len, TEXT_FORMAT_TEXT, &opts, &l), RAGD_OK);
  assert_true(l.count >= 20);
  for (k = 0; k < l.count; k++) {
    assert_true(valid_utf8(l.items[k].text, l.items[k].text_len));
    assert_int_equal(l.items[k].text_len % 3, 0);
    assert_true(l.items[k].token_count <= 50);
    total += l.items[k].text_len;
  }
  assert_true(total >= len);
  text_chunk_list_dispose(&l);
  free(doc);

  /* Korean prose with sentence endings and no space after some of them */
  buf_init(&b, 0);
  for (k = 0; k < 60; k++) {
    assert_int_equal(buf_appendf(&b, "환불은 영업일 기준 %zu일 안에 처리됩니다.%s", k,
                                 k % 3 ? " " : ""),
                     RAGD_OK);
  }
  doc = buf_take(&b, &len);
  assert_int_equal(text_chunk(doc, len, TEXT_FORMAT_TEXT, &opts, &l), RAGD_OK);
  assert_true(l.count > 3);
  for (k = 0; k < l.count; k++) {
    const struct text_chunk *c = &l.items[k];
    assert_true(valid_utf8(c->text, c->text_len));
    assert_true(c->token_count <= 50);
    if (k == 0) assert_memory_equal(c->text, "환불은", strlen("환불은"));
    if (k > 0) {
      /* overlap: this chunk opens with the end of the previous one */
      char head[32];
      size_t n = text_utf8_prefix(c->text, c->text_len, 12);
      memcpy(head, c->text, n);
      head[n] = '\0';
      assert_non_null(strstr(l.items[k - 1].text, head));
    }
    assert_memory_equal(c->text + c->text_len - strlen("니다."), "니다.", strlen("니다."));
  }
  text_chunk_list_dispose(&l);
  free(doc);
}

static void test_chunk_html(void **state) {
  const char *html =
      "<!DOCTYPE html><html><head><title>Help &amp; FAQ</title>"
      "<style>body { color: red; }</style><script>var secret = 1;</script></head>"
      "<body><nav>Home</nav><h1>Refunds</h1><p>We refund <b>within</b>\n  5&nbsp;days &lt;"
      "guaranteed&gt; &#xD55C;&#44544; &eacute;t&eacute;.</p>"
      "<!-- hidden comment --><h2 class=\"x\">Card <em>payments</em></h2>"
      "<ul><li>First</li><li>Second<br>line</li></ul>"
      "<table><tr><th>Method</th><th>Days</th></tr><tr><td>Card</td><td>3</td></tr></table>"
      "<script type=\"text/javascript\">if (a < b) { alert('x'); }</script>"
      "<pre>  keep   spaces\n  here</pre><noscript>enable js</noscript>"
      "<p attr='a > b'>Attr ok</p></body></html>";
  struct text_chunk_list l;
  struct text_chunk *c;
  size_t k;
  char *title;
  (void)state;
  assert_int_equal(text_chunk(html, strlen(html), TEXT_FORMAT_HTML, NULL, &l), RAGD_OK);
  for (k = 0; k < l.count; k++) {
    assert_null(strstr(l.items[k].text, "secret"));
    assert_null(strstr(l.items[k].text, "alert"));
    assert_null(strstr(l.items[k].text, "color"));
    assert_null(strstr(l.items[k].text, "hidden"));
    assert_null(strstr(l.items[k].text, "enable js"));
    assert_null(strstr(l.items[k].text, "Help"));
    assert_null(strstr(l.items[k].text, "<b>"));
    assert_null(strstr(l.items[k].text, "<p"));
    assert_null(strstr(l.items[k].text, "nav"));
  }
  c = find_chunk(&l, "We refund");
  assert_non_null(c);
  assert_string_equal(c->heading_path, "Refunds");
  assert_string_equal(c->text, "We refund within 5 days <guaranteed> 한글 été.");
  c = find_chunk(&l, "First");
  assert_non_null(c);
  assert_string_equal(c->heading_path, "Refunds > Card payments");
  assert_null(strstr(c->text, "- First"));
  assert_non_null(strstr(c->text, "First\nSecond\nline"));
  assert_non_null(strstr(c->text, "Method | Days\nCard | 3"));
  assert_non_null(strstr(c->text, "keep   spaces\n  here"));
  assert_non_null(strstr(c->text, "Attr ok"));
  text_chunk_list_dispose(&l);

  title = text_title(html, strlen(html), TEXT_FORMAT_HTML);
  assert_string_equal(title, "Refunds");
  free(title);
}

static void test_title(void **state) {
  char *t;
  (void)state;
  t = text_title(S("intro\n\n## Sub\n\n# Main *Title* #\n"), TEXT_FORMAT_MARKDOWN);
  assert_string_equal(t, "Main Title");
  free(t);
  t = text_title(S("text\n\n### Only [h3](x)\n"), TEXT_FORMAT_MARKDOWN);
  assert_string_equal(t, "Only h3");
  free(t);
  t = text_title(S("Setext Title\n===\n\nBody"), TEXT_FORMAT_MARKDOWN);
  assert_string_equal(t, "Setext Title");
  free(t);
  t = text_title(S("# 환불 정책\n본문"), TEXT_FORMAT_MARKDOWN);
  assert_string_equal(t, "환불 정책");
  free(t);
  t = text_title(S("```\n# not a heading\n```\nplain"), TEXT_FORMAT_MARKDOWN);
  assert_null(t);
  t = text_title(S("#hashtag is not a heading"), TEXT_FORMAT_MARKDOWN);
  assert_null(t);
  t = text_title(S("<html><head><title> Page\n title </title></head><body><h2>Sub</h2>"),
                 TEXT_FORMAT_HTML);
  assert_string_equal(t, "Page title");
  free(t);
  t = text_title(S("<p>no headings</p>"), TEXT_FORMAT_HTML);
  assert_null(t);
  t = text_title(S("# Looks like markdown"), TEXT_FORMAT_TEXT);
  assert_null(t);
}

static void test_formats(void **state) {
  (void)state;
  assert_int_equal(text_format_parse("text"), TEXT_FORMAT_TEXT);
  assert_int_equal(text_format_parse("markdown"), TEXT_FORMAT_MARKDOWN);
  assert_int_equal(text_format_parse("md"), TEXT_FORMAT_MARKDOWN);
  assert_int_equal(text_format_parse("HTML"), TEXT_FORMAT_HTML);
  assert_int_equal(text_format_parse("pdf"), -1);
  assert_int_equal(text_format_parse(NULL), -1);
  assert_int_equal(text_format_from_path("kb/ko/refund.md"), TEXT_FORMAT_MARKDOWN);
  assert_int_equal(text_format_from_path("a/b.markdown"), TEXT_FORMAT_MARKDOWN);
  assert_int_equal(text_format_from_path("page.HTM"), TEXT_FORMAT_HTML);
  assert_int_equal(text_format_from_path("index.html"), TEXT_FORMAT_HTML);
  assert_int_equal(text_format_from_path("notes.txt"), TEXT_FORMAT_TEXT);
  assert_int_equal(text_format_from_path("dir.md/README"), TEXT_FORMAT_TEXT);
  assert_int_equal(text_format_from_path("noext"), TEXT_FORMAT_TEXT);
}

/* ---- sentences ------------------------------------------------------------------------ */

/* Checks each {in, want} row: the sentences of in, "|"-joined. */
struct sentence_case {
  const char *in;
  const char *want;
};

static void check_sentence_table(const struct sentence_case *cases, size_t count) {
  size_t k;
  for (k = 0; k < count; k++) {
    char *got = sentences(cases[k].in);
    if (strcmp(got, cases[k].want) != 0) print_error("case %zu: \"%s\"\n", k, cases[k].in);
    assert_string_equal(got, cases[k].want);
    free(got);
  }
}

static void test_sentences(void **state) {
  static const struct sentence_case cases[] = {
      {"", ""},
      {"   ", ""},
      {"One sentence", "One sentence"},
      {"返金します。ありがとう！", "返金します。|ありがとう！"},
      {"- First item\n- Second item\n1. Step one\n2. Step two",
       "First item|Second item|1. Step one|2. Step two"},
      {"A line that wraps\nonto the next. Done.", "A line that wraps\nonto the next.|Done."},
      {"Para one\n\nPara two", "Para one|Para two"},
  };
  (void)state;
  check_sentence_table(cases, sizeof cases / sizeof cases[0]);
}

/* English: abbreviations, initials, decimals, URLs and addresses, quotes. */
static void test_sentences_english(void **state) {
  static const struct sentence_case cases[] = {
      {"Hello world. How are you? Fine!", "Hello world.|How are you?|Fine!"},
      {"The fee is 3.5 percent. Next.", "The fee is 3.5 percent.|Next."},
      {"Prices rose 0.75% in Q3. Then they fell.", "Prices rose 0.75% in Q3.|Then they fell."},
      {"It costs $1,299.99 today. Tomorrow more.", "It costs $1,299.99 today.|Tomorrow more."},
      {"Use a card, e.g. Visa. Then pay.", "Use a card, e.g. Visa.|Then pay."},
      {"Pay by bank, i.e. a transfer. Done.", "Pay by bank, i.e. a transfer.|Done."},
      {"Mr. Kim called. He left.", "Mr. Kim called.|He left."},
      {"Dr. Lee and Mrs. Park met at 5 p.m. on Monday. Ok.",
       "Dr. Lee and Mrs. Park met at 5 p.m. on Monday.|Ok."},
      {"Apples, pears, etc. are fruit. Buy them.", "Apples, pears, etc. are fruit.|Buy them."},
      {"It ships from the U.S. Next week it arrives.",
       "It ships from the U.S.|Next week it arrives."},
      {"Visit https://example.com/a.b?c=1. Then log in.",
       "Visit https://example.com/a.b?c=1.|Then log in."},
      {"Go to www.example.com/help. It lists the fees.",
       "Go to www.example.com/help.|It lists the fees."},
      {"Mail help@hanbit-market.example today. Thanks.",
       "Mail help@hanbit-market.example today.|Thanks."},
      {"He said \"Stop.\" Then he left.", "He said \"Stop.\"|Then he left."},
      {"(See the policy.) Next.", "(See the policy.)|Next."},
      {"Wait... what? Yes... Done.", "Wait... what?|Yes...|Done."},
      {"Really?! Yes.", "Really?!|Yes."},
      {"See No. 5 please. Ok.", "See No. 5 please.|Ok."},
      {"See fig. 3 and vol. 2 for details. Ok.", "See fig. 3 and vol. 2 for details.|Ok."},
      {"Ask J. Smith. He knows.", "Ask J. Smith.|He knows."},
      {"In 2024. Then", "In 2024.|Then"},
      {"Brown v. Board of Education was decided in 1954. Then",
       "Brown v. Board of Education was decided in 1954.|Then"},
      {"Version 2.1.3 is out. Update now.", "Version 2.1.3 is out.|Update now."},
  };
  (void)state;
  check_sentence_table(cases, sizeof cases / sizeof cases[0]);
}

/* Korean: endings (다. 요. 까? 죠.) with or without a space after them,
 * quotes and parentheses, numbers, addresses. */
static void test_sentences_korean(void **state) {
  static const struct sentence_case cases[] = {
      {"환불은 3일 안에 처리됩니다. 감사합니다.", "환불은 3일 안에 처리됩니다.|감사합니다."},
      {"처리됩니다.감사합니다.", "처리됩니다.|감사합니다."},
      {"가능한가요?네, 가능해요.", "가능한가요?|네, 가능해요."},
      {"배송은 며칠 걸리나요? 보통 2일 걸립니다.", "배송은 며칠 걸리나요?|보통 2일 걸립니다."},
      {"취소할 수 있을까? 네, 됩니다!", "취소할 수 있을까?|네, 됩니다!"},
      {"배송비는 3.5달러입니다.", "배송비는 3.5달러입니다."},
      {"수수료는 1,000원(부가세 10% 포함)입니다. 환불 시 돌려드립니다.",
       "수수료는 1,000원(부가세 10% 포함)입니다.|환불 시 돌려드립니다."},
      {"좋죠. 그렇죠!", "좋죠.|그렇죠!"},
      {"\"환불됩니다.\"다음 문장", "\"환불됩니다.\"|다음 문장"},
      {"상담원은 \"곧 연락드릴게요.\"라고 말했습니다. 기다려 주세요.",
       "상담원은 \"곧 연락드릴게요.\"라고 말했습니다.|기다려 주세요."},
      {"(자세한 내용은 약관을 보세요.) 다음 안내입니다.",
       "(자세한 내용은 약관을 보세요.)|다음 안내입니다."},
      {"https://한빛.example/a를 보세요.", "https://한빛.example/a를 보세요."},
      {"help@hanbit.example로 메일을 보내세요. 답장은 하루 안에 옵니다.",
       "help@hanbit.example로 메일을 보내세요.|답장은 하루 안에 옵니다."},
      {"버전 2.1.3을 설치하세요. 끝입니다.", "버전 2.1.3을 설치하세요.|끝입니다."},
      {"1. 앱을 엽니다.\n2. 설정을 누릅니다.", "1. 앱을 엽니다.|2. 설정을 누릅니다."},
      {"Visa 카드도 됩니다. Mastercard도 됩니다.", "Visa 카드도 됩니다.|Mastercard도 됩니다."},
  };
  (void)state;
  check_sentence_table(cases, sizeof cases / sizeof cases[0]);
}

/* ---- estimates ------------------------------------------------------------------------------ */

static void test_estimate(void **state) {
  (void)state;
  assert_int_equal(text_estimate_tokens("", 0), 0);
  assert_int_equal(text_estimate_tokens(S("   \n")), 0);
  assert_int_equal(text_estimate_tokens(S("the cat sat")), 3);
  assert_int_equal(text_estimate_tokens(S("internationalization")), 5);
  assert_int_equal(text_estimate_tokens(S("환불 정책")), 4);
  assert_int_equal(text_estimate_tokens(S("Hi, you!")), 4);
  assert_int_equal(text_estimate_tokens(S("123456")), 2);
  /* adds up: never more than the sum of the halves */
  assert_true(text_estimate_tokens(S("internationalization")) <=
              text_estimate_tokens(S("internati")) + text_estimate_tokens(S("onalization")));
}

static void test_hangul_ratio(void **state) {
  (void)state;
  assert_true(text_hangul_ratio(S("환불 정책")) > 0.99);
  assert_true(text_hangul_ratio(S("refund policy")) < 0.01);
  assert_true(text_hangul_ratio(S("123 !!")) == 0.0);
  assert_true(text_hangul_ratio("", 0) == 0.0);
  /* 2 Hangul letters, 2 Latin letters */
  assert_true(text_hangul_ratio(S("환불 ab")) > 0.49 && text_hangul_ratio(S("환불 ab")) < 0.51);
}


/* ---- robustness: pieces of markup and multilingual text in random order ---------------- */

static int check_offsets(void *ctx, const char *term, size_t term_len, size_t start, size_t end) {
  size_t *state = ctx; /* [0] input length, [1] previous start */
  assert_true(term_len > 0);
  assert_true(start < end);
  assert_true(end <= state[0]);
  assert_true(start >= state[1]);
  state[1] = start;
  (void)term;
  return 0;
}

static void test_random_documents(void **state) {
  static const char *const pieces[] = {
      "# ", "## ", "\n", "\n\n", " ", "- ", "1. ", "> ", "```\n", "|", "---\n", "*", "_",
      "`", "[", "](", ")", "![", "<p>", "</p>", "<h2>", "</h2>", "<script>", "</script>",
      "<!--", "-->", "&amp;", "&#", "&#x1F600;", "&", "<", ">", "\"", ".", "?", "!", "...",
      "3.5", "e.g.", "환불", "은", "다.", "요?", "返金", "カタ", "refund", "Policy", "😀",
      "👨‍👩‍👧", "e\xCC\x81", "ｆｕｌｌ", "\t", "\r\n", "<li>", "<br>", "<title>", "</title>",
      "https://a.example/x.y", "HB-2024-000123", "1,000", "-", ",", "\xEF\xAC\x81"};
  struct buf b;
  size_t iter, k, n, count;
  unsigned seed = 12345;
  (void)state;
  for (iter = 0; iter < 400; iter++) {
    struct text_chunk_opts opts = {.tokens_max = 1 + iter % 40, .tokens_overlap = iter % 7};
    struct text_chunk_list l;
    struct text_span *spans = NULL;
    size_t offsets[2];
    int fmt = (int)(iter % 3);
    char *doc;
    buf_init(&b, 0);
    n = 1 + iter % 150;
    for (k = 0; k < n; k++) {
      seed = seed * 1103515245u + 12345u;
      assert_int_equal(buf_append_str(&b, pieces[(seed >> 16) % (sizeof pieces / sizeof pieces[0])]),
                       RAGD_OK);
    }
    doc = buf_take(&b, &n);
    assert_true(valid_utf8(doc, n));

    assert_int_equal(text_chunk(doc, n, (enum text_format)fmt, &opts, &l), RAGD_OK);
    for (k = 0; k < l.count; k++) {
      assert_true(l.items[k].text_len > 0);
      assert_true(valid_utf8(l.items[k].text, l.items[k].text_len));
      assert_true(valid_utf8(l.items[k].heading_path, strlen(l.items[k].heading_path)));
      assert_true(l.items[k].token_count <= opts.tokens_max);
    }
    text_chunk_list_dispose(&l);

    assert_int_equal(text_sentences(doc, n, &spans, &count), RAGD_OK);
    for (k = 0; k < count; k++) {
      assert_true(spans[k].len > 0);
      assert_true(spans[k].start + spans[k].len <= n);
      if (k) assert_true(spans[k].start >= spans[k - 1].start + spans[k - 1].len);
      assert_true(valid_utf8(doc + spans[k].start, spans[k].len));
    }
    free(spans);

    offsets[0] = n;
    offsets[1] = 0;
    assert_int_equal(text_tokenize(doc, n, check_offsets, offsets), RAGD_OK);
    free(text_title(doc, n, (enum text_format)fmt));
    free(doc);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_utf8_valid),
      cmocka_unit_test(test_utf8_invalid),
      cmocka_unit_test(test_utf8_prefix),
      cmocka_unit_test(test_normalize),
      cmocka_unit_test(test_tokenize_words),
      cmocka_unit_test(test_tokenize_digits),
      cmocka_unit_test(test_tokenize_korean),
      cmocka_unit_test(test_tokenize_drops_symbols),
      cmocka_unit_test(test_tokenize_offsets),
      cmocka_unit_test(test_tokenize_stop),
      cmocka_unit_test(test_chunk_markdown),
      cmocka_unit_test(test_chunk_plain_text),
      cmocka_unit_test(test_chunk_long_paragraph_overlap),
      cmocka_unit_test(test_chunk_long_korean),
      cmocka_unit_test(test_chunk_html),
      cmocka_unit_test(test_title),
      cmocka_unit_test(test_formats),
      cmocka_unit_test(test_sentences),
      cmocka_unit_test(test_sentences_english),
      cmocka_unit_test(test_sentences_korean),
      cmocka_unit_test(test_estimate),
      cmocka_unit_test(test_hangul_ratio),
      cmocka_unit_test(test_random_documents),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
