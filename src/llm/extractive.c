/* extractive.c - the offline generator: answers with the one or two sentences
 * of the retrieved passages that best match the question, each cited.
 *
 * No model is involved. Every passage is split into sentences; the question's
 * BM25 terms (minus a few stop words, with a light English suffix strip) are
 * weighted by how rare they are among those sentences, and each sentence scores
 * the share of that weight it covers, adjusted by small priors: passage rank,
 * a number when the question asks for a quantity or a time, sentence length.
 * FAQ entries ("How long does X take? X takes 5 days.") are handled by passing
 * the score of a matching question sentence on to the sentence that follows it;
 * question sentences themselves are never quoted as answers. The second
 * sentence completes the first, or else is its neighbour in the passage. When
 * even the best sentence scores too little, the answer says plainly that the
 * knowledge base does not hold one, in the question's language.
 *
 * The answer is streamed word by word through the sink, synchronously, the way
 * a model would stream it, so that every layer above sees a real stream. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llm/llm.h"
#include "text/text.h"
#include "util/buf.h"
#include "util/log.h"

/* Tuning. Coverage is in [0, 1]; the priors are small next to it. */
#define EXTRACTIVE_SENTENCES_MAX 2
#define EXTRACTIVE_SECOND_RATIO 0.5   /* second sentence needs this share of the best score */
#define EXTRACTIVE_RANK_DECAY 0.25    /* score divided by (1 + decay * rank) */
#define EXTRACTIVE_TYPE_BONUS 0.2     /* the sentence holds the kind of thing asked */
#define EXTRACTIVE_KIND_MISSING 0.15  /* score cut when it lacks it entirely */
#define EXTRACTIVE_MIN_SCORE 0.1      /* below: the not-found answer */
#define EXTRACTIVE_NEIGHBOUR_RANK 1e-9 /* a bare neighbour: the last resort */
#define EXTRACTIVE_PAIR_BONUS 0.0     /* times the share of question word pairs kept */
#define EXTRACTIVE_HEADING_CREDIT 0.7 /* heading terms count for the sentences under it */
#define EXTRACTIVE_NEXT_BONUS 0.2     /* second sentence right after the first */
#define EXTRACTIVE_OTHER_PASSAGE_FACTOR 0.6 /* second sentence from another passage */
#define EXTRACTIVE_OTHER_PART_SHARE 0.25 /* ... unless it adds this much question weight */
#define EXTRACTIVE_SHORT_BYTES 15
#define EXTRACTIVE_SHORT_FACTOR 0.5
#define EXTRACTIVE_LONG_BYTES 400
#define EXTRACTIVE_LONG_FACTOR 0.7
#define EXTRACTIVE_FAQ_MIN_COVERAGE 0.3 /* a question sentence passes score on from here */
#define EXTRACTIVE_FAQ_SHARE 0.5
#define EXTRACTIVE_DELTA_BYTES_MAX 24   /* longest delta, for words without spaces */
#define EXTRACTIVE_KOREAN_RATIO 0.3
/* Terms a condensed follow-up carries over from earlier turns (see
 * llm_request.question_context_len) weigh this much of their rarity: they
 * pick between sentences that answer the follow-up's own words ("the fee" of
 * the international order) but must not outweigh them. */
#define EXTRACTIVE_CONTEXT_WEIGHT 0.25

static const char extractive_not_found_en[] =
    "I could not find this in the knowledge base. Please rephrase the question or "
    "contact a support agent.";
static const char extractive_not_found_ko[] =
    "지식 베이스에서 이 질문에 대한 답을 찾지 못했습니다. 질문을 바꾸어 보시거나 "
    "상담원에게 문의해 주세요.";

/* Words that say how a question is asked rather than what it is about. They
 * would otherwise make unrelated sentences look relevant. Korean entries are
 * bigrams of verb endings and question words, as text_tokenize produces them. */
static const char *const extractive_stop_words[] = {
    "a",     "about", "am",    "an",    "and",   "any",   "are",   "as",    "at",
    "be",    "been",  "being", "but",   "by",    "can",   "could", "did",   "do",
    "does",  "for",   "from",  "get",   "got",   "had",   "has",   "have",  "how",
    "i",     "if",    "in",    "into",  "is",    "it",    "its",   "long",  "many",
    "me",    "much",  "my",    "of",    "often", "on",    "or",    "our",   "please",
    "should", "so",   "soon",  "some",  "than",  "that",  "the",   "their", "them",
    "then",  "there", "these", "they",  "this",  "those", "to",    "us",    "was",
    "we",    "were",  "what",  "when",  "where", "which", "while", "who",   "why",
    "will",  "with",  "would", "you",   "your",
    /* how English questions name the thing asked for: "what type of", "another
     * term for", "what is it called", "name an example of" */
    "another", "other", "type", "kind", "sort", "called", "name", "named", "term", "example",
    "니다",  "습니",  "나요",  "까요",  "가요",  "세요",  "어요",  "해요",  "되나",
    "하나",  "있나",  "합니",  "됩니",  "입니",  "언제",  "얼마",  "어떻",  "떻게",
    "무엇",  "려면",  "하려",  "하면",  "는지",  "인지",  "건가",  "은가",  "한가",
};

/* What a question asks for, from cue phrases (normalized, matched as
 * substrings; English ones are padded with spaces so that "when" does not
 * match "whenever"). The first cue that matches wins. */
enum xq_kind { XQ_ANY = 0, XQ_NUMBER, XQ_NAME, XQ_STEPS, XQ_TIME, XQ_DURATION };

static const struct {
  const char *cue;
  enum xq_kind kind;
} extractive_kind_cues[] = {
    {" how long ", XQ_DURATION}, {" how soon ", XQ_DURATION}, {"며칠", XQ_DURATION},
    {"얼마나 걸", XQ_DURATION},  {" what year ", XQ_TIME},     {" which year ", XQ_TIME},
    {" what decade ", XQ_TIME},  {" what century ", XQ_TIME},  {" what date ", XQ_TIME},
    {" what month ", XQ_TIME},   {" when ", XQ_TIME},          {"언제", XQ_TIME},
    {" how much ", XQ_NUMBER},   {" how many ", XQ_NUMBER},    {" how often ", XQ_NUMBER},
    {" how old ", XQ_NUMBER},    {" how far ", XQ_NUMBER},     {" how large ", XQ_NUMBER},
    {" how big ", XQ_NUMBER},    {" what time ", XQ_NUMBER},   {" what percentage ", XQ_NUMBER},
    {"몇", XQ_NUMBER},           {"얼마", XQ_NUMBER},
    {" who ", XQ_NAME},         {" whom ", XQ_NAME},
    {" whose ", XQ_NAME},      {" where ", XQ_NAME},       {"누가", XQ_NAME},
    {"누구", XQ_NAME},         {"어디", XQ_NAME},          {" how do ", XQ_STEPS},
    {" how can ", XQ_STEPS},   {" how to ", XQ_STEPS},     {" how should ", XQ_STEPS},
    {"어떻게", XQ_STEPS},      {"방법", XQ_STEPS},
};

/* A sentence holding one of these speaks about the document ("This page
 * explains how long delivery takes"): it repeats the question's words
 * without answering them, so it is never quoted, like a question sentence.
 * Matched in ASCII lower case. */
static const char *const extractive_about_doc_cues[] = {
    "this article", "this page", "this document", "this guide", "this section",
    "this faq", "이 문서", "이 글에서", "이 페이지",
};

/* Number words count as numbers for XQ_NUMBER questions. */
static const char *const extractive_number_words[] = {
    "one",    "two",     "three",    "four",    "five",     "six",      "seven",
    "eight",  "nine",    "ten",      "eleven",  "twelve",   "twenty",   "thirty",
    "forty",  "fifty",   "hundred",  "hundreds", "thousand", "thousands", "million",
    "millions", "billion", "dozen",  "half",    "once",     "twice",
    "january", "february", "march",  "april",   "may",      "june",     "july",
    "august", "september", "october", "november", "december", "century",
};

/* Words that make a number a point in time (XQ_TIME) or a length of time
 * (XQ_DURATION). A four-digit number counts as a year by itself. */
static const char *const extractive_month_words[] = {
    "january", "february", "march",    "april",   "may",      "june",   "july",
    "august",  "september", "october", "november", "december", "century", "centuries",
    "decade",  "monday",   "tuesday",  "wednesday", "thursday", "friday", "saturday",
    "sunday",  "월",       "년",
};
static const char *const extractive_unit_words[] = {
    "second", "seconds", "minute", "minutes", "hour",  "hours", "day",   "days",
    "week",   "weeks",   "month",  "months",  "year",  "years", "decade", "decades",
    "일",     "시간",    "분",     "주",      "개월",  "년",    "영업일",
};

static const char *const extractive_duration_verbs[] = {"take", "takes", "took", "last",
                                                        "lasts", "lasted"};

/* A question term and what the sentences say about it. */
struct xq_term {
  char *text;
  size_t len;
  size_t df;         /* sentences containing the term */
  size_t seen_stamp; /* last sentence (index + 1) that counted it */
  double weight;
  int context; /* only in the part carried over from earlier turns */
};

/* Adjacent question terms ("credit card", "카드 환불") kept as pairs. */
#define EXTRACTIVE_PAIRS_MAX 64

/* The question's distinct terms, with an open-addressing index over them. */
struct xq_set {
  struct xq_term *items;
  size_t count;
  size_t cap;
  size_t *slots; /* item index + 1; 0 is empty */
  size_t slot_count; /* a power of two, more than twice count */
  size_t pairs[EXTRACTIVE_PAIRS_MAX][2]; /* term indexes next to each other in the question */
  size_t pair_count;
};

struct xs_sentence {
  size_t passage;     /* position in req->passages (its rank) */
  size_t pairs;       /* question word pairs found next to each other */
  int new_number;     /* a number (or number word) the question does not hold */
  int new_name;       /* a capitalized word, not first, the question does not hold */
  int new_time;       /* a year, month or weekday the question does not hold */
  int has_unit;       /* a unit of time (days, hours, 영업일) */
  int is_step;        /* a numbered list item ("1. Open Settings.") */
  size_t start;       /* byte range in the passage text, trimmed */
  size_t len;
  size_t match_first; /* range in the match list */
  size_t match_count;
  int has_digit;
  int is_question;
  int about_doc;   /* says what the document covers ("This article explains"): never quoted */
  double coverage; /* share of question weight the sentence holds */
  double score;
};

struct xs_list {
  struct xs_sentence *items;
  size_t count;
  size_t cap;
  size_t *matches; /* question term indexes, grouped per sentence */
  size_t match_count;
  size_t match_cap;
};

/* The state text_tokenize callbacks work on. */
struct xtok_ctx {
  struct xq_set *terms;
  struct xs_list *sentences; /* NULL while reading the question */
  const char *src;           /* the text being tokenized */
  size_t stamp;
  size_t prev;               /* question term index of the previous content word */
  int heading_mode;          /* reading a title or heading: marks heading_terms */
  unsigned char *heading_terms; /* one flag per question term */
  enum xq_kind kind;            /* of the question being read */
  int context_mode;             /* reading the carried-over part of the question */
  ragd_err rc;
};

struct extractive {
  size_t sentences_max;
  double second_ratio;
};

/* ---- small helpers ----------------------------------------------------------- */

static ragd_err extractive_grow(void **items, size_t *cap, size_t need, size_t elem) {
  size_t new_cap;
  void *p;
  if (need <= *cap) return RAGD_OK;
  new_cap = *cap ? *cap : 16;
  while (new_cap < need) {
    if (new_cap > SIZE_MAX / 2) return RAGD_ENOMEM;
    new_cap *= 2;
  }
  if (new_cap > SIZE_MAX / elem) return RAGD_ENOMEM;
  p = realloc(*items, new_cap * elem);
  if (!p) return RAGD_ENOMEM;
  *items = p;
  *cap = new_cap;
  return RAGD_OK;
}

static uint64_t extractive_hash(const char *s, size_t len) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  size_t i;
  for (i = 0; i < len; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ULL;
  }
  return h;
}

static int extractive_in_list(const char *term, size_t len, const char *const *list,
                              size_t count) {
  size_t i;
  for (i = 0; i < count; i++)
    if (strlen(list[i]) == len && memcmp(list[i], term, len) == 0) return 1;
  return 0;
}

static int extractive_is_stop_word(const char *term, size_t len) {
  size_t i;
  for (i = 0; i < sizeof extractive_stop_words / sizeof extractive_stop_words[0]; i++) {
    const char *w = extractive_stop_words[i];
    if (strlen(w) == len && memcmp(w, term, len) == 0) return 1;
  }
  return 0;
}

static int extractive_ends_with(const char *s, size_t len, const char *suffix) {
  size_t n = strlen(suffix);
  return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* A crude English suffix strip so that "refund", "refunds" and "refunded", or
 * "policy" and "policies", meet. It only ever shortens the term, so the result
 * is a prefix length. Terms that are not plain lowercase ASCII are left alone. */
static size_t extractive_stem_len(const char *t, size_t len) {
  size_t i;
  for (i = 0; i < len; i++) {
    if (t[i] < 'a' || t[i] > 'z') return len;
  }
  if (len > 4 && extractive_ends_with(t, len, "ies")) {
    len -= 3;
  } else if (len > 3 && t[len - 1] == 's' && !extractive_ends_with(t, len, "ss") &&
             !extractive_ends_with(t, len, "us") && !extractive_ends_with(t, len, "is")) {
    len -= 1;
  }
  if (len > 5 && extractive_ends_with(t, len, "ing")) {
    len -= 3;
  } else if (len > 4 && extractive_ends_with(t, len, "ed")) {
    len -= 2;
  }
  if (len > 3 && (t[len - 1] == 'y' || t[len - 1] == 'e')) len -= 1;
  return len;
}

/* ---- question terms ------------------------------------------------------------ */

static void xq_set_dispose(struct xq_set *set) {
  size_t i;
  for (i = 0; i < set->count; i++) free(set->items[i].text);
  free(set->items);
  free(set->slots);
  memset(set, 0, sizeof *set);
}

/* Index of the term in set, or SIZE_MAX. */
static size_t xq_set_find(const struct xq_set *set, const char *term, size_t len) {
  size_t mask, pos;
  if (!set->slot_count) return SIZE_MAX;
  mask = set->slot_count - 1;
  pos = (size_t)extractive_hash(term, len) & mask;
  while (set->slots[pos]) {
    const struct xq_term *t = &set->items[set->slots[pos] - 1];
    if (t->len == len && memcmp(t->text, term, len) == 0) return set->slots[pos] - 1;
    pos = (pos + 1) & mask;
  }
  return SIZE_MAX;
}

static void xq_set_place(struct xq_set *set, size_t item) {
  size_t mask = set->slot_count - 1;
  size_t pos = (size_t)extractive_hash(set->items[item].text, set->items[item].len) & mask;
  while (set->slots[pos]) pos = (pos + 1) & mask;
  set->slots[pos] = item + 1;
}

static ragd_err xq_set_rehash(struct xq_set *set, size_t slot_count) {
  size_t i;
  size_t *slots = calloc(slot_count, sizeof *slots);
  if (!slots) return RAGD_ENOMEM;
  free(set->slots);
  set->slots = slots;
  set->slot_count = slot_count;
  for (i = 0; i < set->count; i++) xq_set_place(set, i);
  return RAGD_OK;
}

static ragd_err xq_set_add(struct xq_set *set, const char *term, size_t len) {
  ragd_err rc;
  char *copy;
  if (xq_set_find(set, term, len) != SIZE_MAX) return RAGD_OK;
  if ((set->count + 1) * 2 >= set->slot_count) {
    size_t slot_count = set->slot_count ? set->slot_count * 2 : 32;
    if (slot_count < set->slot_count) return RAGD_ENOMEM;
    rc = xq_set_rehash(set, slot_count);
    if (rc) return rc;
  }
  rc = extractive_grow((void **)&set->items, &set->cap, set->count + 1, sizeof *set->items);
  if (rc) return rc;
  copy = malloc(len + 1);
  if (!copy) return RAGD_ENOMEM;
  memcpy(copy, term, len);
  copy[len] = '\0';
  memset(&set->items[set->count], 0, sizeof set->items[set->count]);
  set->items[set->count].text = copy;
  set->items[set->count].len = len;
  set->count++;
  xq_set_place(set, set->count - 1);
  return RAGD_OK;
}

/* ---- sentences ---------------------------------------------------------------- */

static void xs_list_dispose(struct xs_list *list) {
  free(list->items);
  free(list->matches);
  memset(list, 0, sizeof *list);
}

/* text_tokenize callback for both the question (collects its terms) and the
 * sentences (records which question terms each sentence holds, once each). */
static int extractive_on_term(void *ctx, const char *term, size_t term_len, size_t start,
                              size_t end) {
  struct xtok_ctx *tc = ctx;
  struct xs_list *list = tc->sentences;
  struct xs_sentence *s;
  size_t idx, len;
  (void)start;
  (void)end;
  if (extractive_is_stop_word(term, term_len)) return 0;
  len = extractive_stem_len(term, term_len);
  if (!list) {
    struct xq_set *set = tc->terms;
    /* "How long does it take?": the verb belongs to the question form. */
    if (tc->kind == XQ_DURATION &&
        extractive_in_list(term, term_len, extractive_duration_verbs,
                           sizeof extractive_duration_verbs / sizeof extractive_duration_verbs[0]))
      return 0;
    if (tc->context_mode) {
      /* a carried-over term: weighed less, unless the follow-up has it too,
       * and never part of a word pair */
      if (xq_set_find(set, term, len) != SIZE_MAX) return 0;
      tc->rc = xq_set_add(set, term, len);
      if (tc->rc) return 1;
      set->items[set->count - 1].context = 1;
      return 0;
    }
    tc->rc = xq_set_add(set, term, len);
    if (tc->rc) return 1;
    idx = xq_set_find(set, term, len);
    if (tc->prev != SIZE_MAX && tc->prev != idx && set->pair_count < EXTRACTIVE_PAIRS_MAX) {
      set->pairs[set->pair_count][0] = tc->prev;
      set->pairs[set->pair_count][1] = idx;
      set->pair_count++;
    }
    tc->prev = idx;
    return 0;
  }
  idx = xq_set_find(tc->terms, term, len);
  if (!tc->heading_mode && list->count &&
      extractive_in_list(term, term_len, extractive_unit_words,
                         sizeof extractive_unit_words / sizeof extractive_unit_words[0]))
    list->items[list->count - 1].has_unit = 1;
  if (tc->heading_mode) {
    if (idx != SIZE_MAX && tc->terms->items[idx].seen_stamp != tc->stamp) {
      tc->terms->items[idx].seen_stamp = tc->stamp;
      tc->heading_terms[idx] = 1;
    }
    return 0;
  }
  {
    size_t prev = tc->prev, p;
    tc->prev = idx;
    if (idx != SIZE_MAX && prev != SIZE_MAX && list->count) {
      for (p = 0; p < tc->terms->pair_count; p++) {
        if (tc->terms->pairs[p][0] == prev && tc->terms->pairs[p][1] == idx) {
          list->items[list->count - 1].pairs++;
          break;
        }
      }
    }
  }
  if (idx == SIZE_MAX && list->count) {
    struct xs_sentence *cur = &list->items[list->count - 1];
    size_t k;
    int digit = 0;
    for (k = 0; k < term_len && !digit; k++) digit = term[k] >= '0' && term[k] <= '9';
    if (digit || extractive_in_list(term, term_len, extractive_number_words,
                                    sizeof extractive_number_words /
                                        sizeof extractive_number_words[0]))
      cur->new_number = 1;
    if ((digit && (term_len == 4 || (term_len == 5 && term[4] == 's'))) ||
        extractive_in_list(term, term_len, extractive_month_words,
                           sizeof extractive_month_words / sizeof extractive_month_words[0]))
      cur->new_time = 1;
    if (start > 0 && tc->src && tc->src[start] >= 'A' && tc->src[start] <= 'Z') cur->new_name = 1;
  }
  if (idx == SIZE_MAX || tc->terms->items[idx].seen_stamp == tc->stamp) return 0;
  tc->rc = extractive_grow((void **)&list->matches, &list->match_cap, list->match_count + 1,
                           sizeof *list->matches);
  if (tc->rc) return 1;
  tc->terms->items[idx].seen_stamp = tc->stamp;
  tc->terms->items[idx].df++;
  list->matches[list->match_count++] = idx;
  s = &list->items[list->count - 1];
  s->match_count++;
  return 0;
}

static int extractive_is_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Whether the len bytes at text hold one of extractive_about_doc_cues. */
static int extractive_about_doc(const char *text, size_t len) {
  size_t i, j, n;
  for (i = 0; i < sizeof extractive_about_doc_cues / sizeof extractive_about_doc_cues[0]; i++) {
    const char *cue = extractive_about_doc_cues[i];
    n = strlen(cue);
    for (j = 0; j + n <= len; j++) {
      size_t k = 0;
      while (k < n) {
        unsigned char c = (unsigned char)text[j + k];
        if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
        if (c != (unsigned char)cue[k]) break;
        k++;
      }
      if (k == n) return 1;
    }
  }
  return 0;
}

/* Adds the sentences of one passage to list and matches them against terms. */
static ragd_err extractive_read_passage(const char *text, size_t text_len, size_t rank,
                                        struct xq_set *terms, struct xs_list *list) {
  struct text_span *spans = NULL;
  size_t span_count = 0, i, j;
  struct xtok_ctx tc;
  ragd_err rc;

  rc = text_sentences(text, text_len, &spans, &span_count);
  if (rc) goto out;
  for (i = 0; i < span_count; i++) {
    struct xs_sentence *s;
    size_t start = spans[i].start, len = spans[i].len;
    if (start > text_len || len > text_len - start) continue; /* defensive */
    while (len && extractive_is_space((unsigned char)text[start])) {
      start++;
      len--;
    }
    while (len && extractive_is_space((unsigned char)text[start + len - 1])) len--;
    if (!len) continue;
    rc = extractive_grow((void **)&list->items, &list->cap, list->count + 1, sizeof *list->items);
    if (rc) goto out;
    s = &list->items[list->count++];
    memset(s, 0, sizeof *s);
    s->passage = rank;
    s->start = start;
    s->len = len;
    s->match_first = list->match_count;
    for (j = 0; j < len; j++) {
      if (text[start + j] >= '0' && text[start + j] <= '9') {
        s->has_digit = 1;
        break;
      }
    }
    s->is_step = text[start] >= '0' && text[start] <= '9' &&
                 (extractive_ends_with(text + start, 2, ".") || extractive_ends_with(text + start, 2, ")") ||
                  (len > 2 && text[start + 1] >= '0' && text[start + 1] <= '9' &&
                   (text[start + 2] == '.' || text[start + 2] == ')')));
    s->about_doc = extractive_about_doc(text + start, len);
    s->is_question = text[start + len - 1] == '?' ||
                     (len >= 3 && memcmp(text + start + len - 3, "\xef\xbc\x9f", 3) == 0);
    memset(&tc, 0, sizeof tc);
    tc.terms = terms;
    tc.sentences = list;
    tc.src = text + start;
    tc.prev = SIZE_MAX;
    tc.stamp = list->count; /* index + 1 */
    tc.rc = RAGD_OK;
    rc = text_tokenize(text + start, len, extractive_on_term, &tc);
    if (tc.rc) rc = tc.rc;
    if (rc) goto out;
  }
out:
  free(spans);
  return rc;
}

/* What the question asks for; see extractive_kind_cues. */
static enum xq_kind extractive_question_kind(const char *question, size_t len) {
  char *norm = NULL;
  struct buf padded;
  size_t norm_len = 0, i;
  enum xq_kind kind = XQ_ANY;
  buf_init(&padded, 0);
  if (text_normalize(question, len, &norm, &norm_len)) goto out;
  if (buf_append_char(&padded, ' ')) goto out;
  for (i = 0; i < norm_len; i++) {
    char c = norm[i];
    /* ASCII punctuation separates words like a space does. */
    if (c > 0 && c < 0x7f && !(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9')) c = ' ';
    if (buf_append_char(&padded, c)) goto out;
  }
  if (buf_append_char(&padded, ' ')) goto out;
  for (i = 0; i < sizeof extractive_kind_cues / sizeof extractive_kind_cues[0]; i++) {
    if (strstr(padded.data, extractive_kind_cues[i].cue)) {
      kind = extractive_kind_cues[i].kind;
      break;
    }
  }
out:
  free(norm);
  buf_dispose(&padded);
  return kind;
}

/* Weighs the question terms by how rare they are among the sentences and
 * gives every sentence the share of the weight it holds. */
static void extractive_weigh(struct xq_set *terms, struct xs_list *list) {
  double total = 0.0, n = (double)list->count;
  size_t i, j;

  for (i = 0; i < terms->count; i++) {
    double df = (double)terms->items[i].df;
    terms->items[i].weight = log(1.0 + (n - df + 0.5) / (df + 0.5));
    if (terms->items[i].context) terms->items[i].weight *= EXTRACTIVE_CONTEXT_WEIGHT;
    total += terms->items[i].weight;
  }
  for (i = 0; i < terms->count; i++)
    terms->items[i].weight = total > 0.0 ? terms->items[i].weight / total : 0.0;
  for (i = 0; i < list->count; i++) {
    struct xs_sentence *s = &list->items[i];
    double held = 0.0;
    for (j = 0; j < s->match_count; j++)
      held += terms->items[list->matches[s->match_first + j]].weight;
    s->coverage = held;
  }
}

/* Marks the question terms that a passage's heading (or title) holds in
 * flags[0..terms->count). A heading that names what the question asks about
 * is evidence for the sentences under it ("Refund times" over "Card: 3 to 5
 * business days"). */
static void extractive_heading_terms(const struct llm_passage *p, size_t rank,
                                     struct xq_set *terms, struct xs_list *list,
                                     unsigned char *flags) {
  const char *heading = p->heading_path && p->heading_path[0] ? p->heading_path : p->title;
  struct xtok_ctx tc;
  size_t bad;
  if (!heading || !heading[0] || text_utf8_validate(heading, strlen(heading), &bad)) return;
  memset(&tc, 0, sizeof tc);
  tc.terms = terms;
  tc.sentences = list;
  tc.src = heading;
  tc.prev = SIZE_MAX;
  tc.stamp = SIZE_MAX - rank; /* never a sentence's stamp */
  tc.heading_mode = 1;
  tc.heading_terms = flags;
  (void)text_tokenize(heading, strlen(heading), extractive_on_term, &tc);
}

/* The question weight the heading adds to a sentence: terms of the heading
 * that the sentence itself lacks, at partial credit. */
static double extractive_heading_credit(const struct xq_set *terms, const struct xs_list *list,
                                        const struct xs_sentence *s,
                                        const unsigned char *flags) {
  double held = 0.0;
  size_t i, j;
  for (i = 0; i < terms->count; i++) {
    int in_sentence = 0;
    if (!flags[i]) continue;
    for (j = 0; j < s->match_count && !in_sentence; j++)
      in_sentence = list->matches[s->match_first + j] == i;
    if (!in_sentence) held += terms->items[i].weight;
  }
  return EXTRACTIVE_HEADING_CREDIT * held;
}

/* How well a sentence holds the kind of thing asked, from 0 to 1: a year for
 * "when", a number with a unit of time for "how long", a number for "how
 * many", a name for "who" and "where". A bare number half-answers a question
 * about time. */
static double extractive_kind_match(enum xq_kind kind, const struct xs_sentence *s) {
  switch (kind) {
  case XQ_NUMBER: return s->new_number ? 1.0 : 0.0;
  case XQ_NAME: return s->new_name ? 1.0 : 0.0;
  case XQ_TIME: return s->new_time ? 1.0 : s->new_number ? 0.5 : 0.0;
  case XQ_DURATION: return s->new_number && s->has_unit ? 1.0 : s->new_number ? 0.5 : 0.0;
  case XQ_STEPS: return s->is_step ? 1.0 : 0.0;
  case XQ_ANY: break;
  }
  return 0.0;
}

/* Scores every sentence; see the comment at the top of the file. */
static void extractive_score(const struct xq_set *terms, struct xs_list *list,
                             enum xq_kind kind, const unsigned char *heading_terms) {
  size_t pair_count = terms->pair_count;
  size_t i;
  for (i = 0; i < list->count; i++) {
    struct xs_sentence *s = &list->items[i];
    const struct xs_sentence *prev = i ? &list->items[i - 1] : NULL;
    double score = s->coverage;
    double heading = extractive_heading_credit(terms, list, s, heading_terms + s->passage * terms->count);
    /* The answer that follows a matching FAQ question. */
    if (prev && prev->passage == s->passage && prev->is_question &&
        prev->coverage >= EXTRACTIVE_FAQ_MIN_COVERAGE)
      score += EXTRACTIVE_FAQ_SHARE * prev->coverage;
    /* A sentence that repeats none of the question's words still answers it
     * when it holds the kind of thing asked under a heading that holds them
     * ("Jeju: 2 to 3 business days." under "Delivery times" for "how long
     * does delivery take?"). */
    if ((score <= 0.0 && (heading <= 0.0 || kind == XQ_STEPS ||
                          extractive_kind_match(kind, s) <= 0.0)) ||
        s->is_question || s->about_doc) {
      s->score = 0.0;
      continue;
    }
    if (pair_count) score += EXTRACTIVE_PAIR_BONUS * (double)s->pairs / (double)pair_count;
    score += EXTRACTIVE_TYPE_BONUS * extractive_kind_match(kind, s);
    /* A sentence without a number or a name barely answers "how many" or
     * "who", however many question words it repeats. */
    if (kind != XQ_ANY && kind != XQ_STEPS)
      score *= 1.0 - EXTRACTIVE_KIND_MISSING * (1.0 - extractive_kind_match(kind, s));
    score += heading;
    score /= 1.0 + EXTRACTIVE_RANK_DECAY * (double)s->passage;
    if (s->len < EXTRACTIVE_SHORT_BYTES) score *= EXTRACTIVE_SHORT_FACTOR;
    if (s->len > EXTRACTIVE_LONG_BYTES) score *= EXTRACTIVE_LONG_FACTOR;
    s->score = score;
  }
}

/* Whether sentence `next` is worth quoting after sentence `first`: it holds a
 * question term that first lacks, or it is the sentence right after first in
 * the same passage (and so likely continues it). A sentence that only repeats
 * what first already matched adds length, not answer. */
static int extractive_adds_to(const struct xs_list *list, size_t first, size_t next) {
  const struct xs_sentence *a = &list->items[first], *b = &list->items[next];
  size_t i, j;
  if (next == first + 1 && a->passage == b->passage) return 1;
  for (i = 0; i < b->match_count; i++) {
    size_t term = list->matches[b->match_first + i];
    int shared = 0;
    for (j = 0; j < a->match_count && !shared; j++)
      shared = list->matches[a->match_first + j] == term;
    if (!shared) return 1;
  }
  return 0;
}

/* How well sentence `next` completes sentence `first` as the answer's second
 * sentence: its own score, more when it follows first in the same passage
 * (where an answer often continues: "X happened in 1817. It reopened in
 * April 1991."), less when it comes from another passage. */
static double extractive_second_score(const struct xq_set *terms, const struct xs_list *list,
                                      size_t first, size_t next) {
  const struct xs_sentence *a = &list->items[first], *b = &list->items[next];
  double score = b->score, added = 0.0;
  size_t i, j;
  if (a->passage != b->passage) {
    /* Unless it answers another part of the question ("how long ..., and who
     * pays ...?"): the weight of the terms it holds that first lacks. */
    for (i = 0; i < b->match_count; i++) {
      size_t term = list->matches[b->match_first + i];
      int shared = 0;
      for (j = 0; j < a->match_count && !shared; j++)
        shared = list->matches[a->match_first + j] == term;
      if (!shared) added += terms->items[term].weight;
    }
    return added >= EXTRACTIVE_OTHER_PART_SHARE ? score
                                                : score * EXTRACTIVE_OTHER_PASSAGE_FACTOR;
  }
  if (next == first + 1) score += EXTRACTIVE_NEXT_BONUS;
  if (next + 1 == first) score += EXTRACTIVE_NEXT_BONUS / 2;
  return score;
}

/* ---- the answer --------------------------------------------------------------- */

/* Length of the run of sentence-final marks (. ! ? and their full-width forms,
 * the ellipsis) that ends s, so the citation can go in front of it. */
static size_t extractive_end_marks_len(const char *s, size_t len) {
  static const char *const marks[] = {".", "!", "?", "\xe3\x80\x82", "\xef\xbc\x81",
                                      "\xef\xbc\x9f", "\xe2\x80\xa6"};
  size_t total = 0, i;
  int matched = 1;
  while (matched) {
    matched = 0;
    for (i = 0; i < sizeof marks / sizeof marks[0]; i++) {
      size_t m = strlen(marks[i]);
      if (len - total >= m && memcmp(s + len - total - m, marks[i], m) == 0) {
        total += m;
        matched = 1;
        break;
      }
    }
  }
  return total;
}

/* Appends s with whitespace runs collapsed to one space. */
static ragd_err extractive_append_collapsed(struct buf *out, const char *s, size_t len) {
  size_t i = 0;
  ragd_err rc = RAGD_OK;
  while (i < len && !rc) {
    size_t run = i;
    if (extractive_is_space((unsigned char)s[i])) {
      while (i < len && extractive_is_space((unsigned char)s[i])) i++;
      rc = buf_append_char(out, ' ');
      continue;
    }
    while (i < len && !extractive_is_space((unsigned char)s[i])) i++;
    rc = buf_append(out, s + run, i - run);
  }
  return rc;
}

/* Appends one sentence as "text [n]." (citation before the final marks). */
static ragd_err extractive_append_sentence(struct buf *out, const char *s, size_t len,
                                           int index) {
  size_t marks;
  ragd_err rc;
  /* A list bullet left in front of the sentence is not part of the answer. */
  if (len > 2 && (s[0] == '-' || s[0] == '*') && s[1] == ' ') {
    s += 2;
    len -= 2;
  } else if (len > 4 && memcmp(s, "\xe2\x80\xa2 ", 4) == 0) {
    s += 4;
    len -= 4;
  }
  marks = extractive_end_marks_len(s, len);
  rc = extractive_append_collapsed(out, s, len - marks);
  if (rc) return rc;
  rc = buf_appendf(out, " [%d]", index);
  if (rc) return rc;
  return buf_append(out, s + len - marks, marks);
}

/* Composes the answer into out; *found is 0 when the not-found text was used. */
static ragd_err extractive_compose(const struct extractive *x, const struct llm_request *req,
                                   struct buf *out, int *found /* OUT */) {
  struct xq_set terms;
  struct xs_list list;
  struct xtok_ctx tc;
  const char *question = req->question;
  size_t question_len = strlen(req->question), i, chosen_count = 0;
  size_t context_len = req->question_context_len <= question_len ? req->question_context_len : 0;
  size_t chosen[EXTRACTIVE_SENTENCES_MAX];
  size_t chosen_max = x->sentences_max;
  unsigned char *headings = NULL;
  enum xq_kind qkind;
  int neighbours_too = 0;
  ragd_err rc;

  memset(&terms, 0, sizeof terms);
  memset(&list, 0, sizeof list);
  *found = 0;
  if (chosen_max > EXTRACTIVE_SENTENCES_MAX) chosen_max = EXTRACTIVE_SENTENCES_MAX;

  memset(&tc, 0, sizeof tc);
  tc.terms = &terms;
  tc.sentences = NULL;
  /* The follow-up's own words first (they set the kind of answer and the
   * word pairs), then the terms carried over in front of them. */
  tc.src = question + context_len;
  qkind = extractive_question_kind(question + context_len, question_len - context_len);
  tc.kind = qkind;
  tc.prev = SIZE_MAX;
  tc.stamp = 0;
  tc.rc = RAGD_OK;
  rc = text_tokenize(question + context_len, question_len - context_len, extractive_on_term, &tc);
  if (tc.rc) rc = tc.rc;
  if (rc) goto out;
  if (context_len) {
    tc.src = question;
    tc.context_mode = 1;
    rc = text_tokenize(question, context_len, extractive_on_term, &tc);
    if (tc.rc) rc = tc.rc;
    if (rc) goto out;
    tc.context_mode = 0;
  }

  for (i = 0; i < req->passage_count && terms.count; i++) {
    const char *text = req->passages[i].text;
    size_t text_len, bad;
    if (!text) continue;
    text_len = strlen(text);
    if (text_utf8_validate(text, text_len, &bad)) {
      log_warn("extractive: passage [%d] is not valid UTF-8 at byte %zu; skipped",
               req->passages[i].index, bad);
      continue;
    }
    rc = extractive_read_passage(text, text_len, i, &terms, &list);
    if (rc) goto out;
  }

  extractive_weigh(&terms, &list);
  if (terms.count && req->passage_count > SIZE_MAX / terms.count) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  headings = calloc(req->passage_count * terms.count + 1, 1);
  if (!headings) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  for (i = 0; i < req->passage_count && terms.count; i++)
    extractive_heading_terms(&req->passages[i], i, &terms, &list, headings + i * terms.count);
  extractive_score(&terms, &list, qkind, headings);

  /* The first sentence is the best; the second the best that completes it.
   * When none comes close, the best of the weaker ones that add a question
   * term and the neighbours of the first in its passage is quoted: the
   * answer often sits right before or after the sentence that repeats the
   * question's words ("The plan was drafted in 1972. It was adopted four
   * years later."). */
  while (chosen_count < chosen_max) {
    size_t best = SIZE_MAX;
    double best_rank = 0.0;
    for (i = 0; i < list.count; i++) {
      const struct xs_sentence *s = &list.items[i];
      double rank = s->score;
      size_t k;
      int taken = 0, neighbour = 0;
      if (chosen_count && neighbours_too)
        neighbour = s->passage == list.items[chosen[0]].passage &&
                    (i == chosen[0] + 1 || i + 1 == chosen[0]);
      if (s->is_question || s->about_doc || (s->score <= 0.0 && !neighbour)) continue;
      if (chosen_count) rank = extractive_second_score(&terms, &list, chosen[0], i);
      /* A neighbour that holds neither a question term nor the kind asked
       * comes after any sentence that adds a question term. */
      if (neighbour && s->score <= 0.0)
        rank = extractive_kind_match(qkind, s) > 0.0
                   ? rank + EXTRACTIVE_TYPE_BONUS * extractive_kind_match(qkind, s)
                   : EXTRACTIVE_NEIGHBOUR_RANK * (i > chosen[0] ? 2.0 : 1.0); /* next first */
      if (best != SIZE_MAX && rank <= best_rank) continue;
      for (k = 0; k < chosen_count; k++) {
        const struct xs_sentence *c = &list.items[chosen[k]];
        /* Overlapping chunks repeat sentences; quote each text once. */
        if (chosen[k] == i ||
            (c->len == s->len && memcmp(req->passages[c->passage].text + c->start,
                                        req->passages[s->passage].text + s->start, s->len) == 0))
          taken = 1;
      }
      if (taken) continue;
      if (chosen_count && !neighbour &&
          ((!neighbours_too && rank < x->second_ratio * list.items[chosen[0]].score) ||
           !extractive_adds_to(&list, chosen[0], i)))
        continue;
      best = i;
      best_rank = rank;
    }
    if (best == SIZE_MAX && chosen_count == 1 && !neighbours_too) {
      neighbours_too = 1;
      continue;
    }
    if (best == SIZE_MAX) break;
    /* A best sentence this weak shares a common word or two with the
     * question, not its subject: saying so beats quoting it. */
    if (!chosen_count && list.items[best].score < EXTRACTIVE_MIN_SCORE) break;
    chosen[chosen_count++] = best;
  }

  if (!chosen_count) {
    int korean = text_hangul_ratio(question, question_len) > EXTRACTIVE_KOREAN_RATIO;
    rc = buf_append_str(out, korean ? extractive_not_found_ko : extractive_not_found_en);
    goto out;
  }
  /* Two sentences of one passage read best in the passage's order. */
  if (chosen_count == 2 && list.items[chosen[0]].passage == list.items[chosen[1]].passage &&
      chosen[1] < chosen[0]) {
    size_t t = chosen[0];
    chosen[0] = chosen[1];
    chosen[1] = t;
  }
  for (i = 0; i < chosen_count; i++) {
    const struct xs_sentence *s = &list.items[chosen[i]];
    const struct llm_passage *p = &req->passages[s->passage];
    if (i) {
      rc = buf_append_char(out, ' ');
      if (rc) goto out;
    }
    rc = extractive_append_sentence(out, p->text + s->start, s->len, p->index);
    if (rc) goto out;
  }
  *found = 1;
out:
  free(headings);
  xq_set_dispose(&terms);
  xs_list_dispose(&list);
  return rc;
}

static long extractive_prompt_tokens(const struct llm_request *req) {
  size_t total = text_estimate_tokens(req->question, strlen(req->question)), i;
  for (i = 0; i < req->passage_count; i++) {
    const struct llm_passage *p = &req->passages[i];
    if (p->title) total += text_estimate_tokens(p->title, strlen(p->title));
    if (p->text) total += text_estimate_tokens(p->text, strlen(p->text));
  }
  return (long)total;
}

/* Length of the next delta at s: leading spaces and one word, cut to at most
 * EXTRACTIVE_DELTA_BYTES_MAX bytes on a character boundary. */
static size_t extractive_next_piece(const char *s, size_t len) {
  size_t n = 0, cut;
  while (n < len && s[n] == ' ') n++;
  while (n < len && s[n] != ' ') n++;
  if (n <= EXTRACTIVE_DELTA_BYTES_MAX) return n;
  cut = text_utf8_prefix(s, len, EXTRACTIVE_DELTA_BYTES_MAX);
  return cut ? cut : n;
}

/* ---- ops ---------------------------------------------------------------------- */

static ragd_err extractive_create(const struct llm_config *cfg, void **ctx) {
  struct extractive *x;
  (void)cfg; /* base_url, api_key and model mean nothing offline */
  if (!ctx) return RAGD_EINVAL;
  x = calloc(1, sizeof *x);
  if (!x) return RAGD_ENOMEM;
  x->sentences_max = EXTRACTIVE_SENTENCES_MAX;
  x->second_ratio = EXTRACTIVE_SECOND_RATIO;
  *ctx = x;
  return RAGD_OK;
}

static void extractive_destroy(void *ctx) { free(ctx); }

static ragd_err extractive_start(void *ctx, const struct llm_request *req,
                                 const struct llm_sink *sink) {
  const struct extractive *x = ctx;
  struct buf answer;
  size_t pos = 0, bad, question_len;
  long used_tokens = 0;
  const char *finish_reason = "stop";
  int found = 0;
  ragd_err rc;

  buf_init(&answer, 0);
  if (!x || !req || !req->question || !sink || !sink->on_delta || !sink->on_finish ||
      (req->passage_count && !req->passages)) {
    rc = RAGD_EINVAL;
    goto out;
  }
  question_len = strlen(req->question);
  rc = text_utf8_validate(req->question, question_len, &bad);
  if (rc) goto out;
  rc = extractive_compose(x, req, &answer, &found);
  if (rc) goto out;
  log_debug("extractive: %zu passages, %s", req->passage_count,
            found ? "answered" : "nothing relevant");

  /* From here on the sink owns the outcome: start returns RAGD_OK. */
  while (pos < answer.len) {
    size_t n = extractive_next_piece(answer.data + pos, answer.len - pos);
    if (sink->is_cancelled && sink->is_cancelled(sink->ctx)) {
      sink->on_finish(sink->ctx, RAGD_ECANCELLED, NULL, "cancelled",
                      "the client cancelled the request");
      goto out;
    }
    if (req->max_tokens > 0) {
      long piece_tokens = (long)text_estimate_tokens(answer.data + pos, n);
      if (used_tokens + piece_tokens > req->max_tokens) {
        finish_reason = "length";
        break;
      }
      used_tokens += piece_tokens;
    }
    sink->on_delta(sink->ctx, answer.data + pos, n);
    pos += n;
  }
  if (sink->on_usage)
    sink->on_usage(sink->ctx, extractive_prompt_tokens(req),
                   (long)text_estimate_tokens(answer.data, pos));
  sink->on_finish(sink->ctx, RAGD_OK, finish_reason, NULL, NULL);
out:
  buf_dispose(&answer);
  return rc;
}

const struct llm_ops llm_extractive_ops = {
    .version = LLM_OPS_VERSION,
    .name = "extractive",
    .create = extractive_create,
    .destroy = extractive_destroy,
    .start = extractive_start,
};
