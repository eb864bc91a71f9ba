/* condense.c - follow-up questions made standalone for retrieval.
 *
 * "And the fee?" or "그럼 배송비는?" finds nothing useful on its own: the
 * subject is in an earlier turn. The rules here are deterministic and cheap:
 * a question leans on the conversation when it opens with a connective ("and",
 * "what about", "그럼"), refers back with a pronoun or demonstrative ("it",
 * "그거") while being short, or has almost no content words of its own. Such
 * a question is searched as the salient words of the previous question's
 * retrieval query (itself condensed when it was a follow-up, so a thread of
 * follow-ups keeps its subject) followed by the question itself.
 *
 * Salient words: the words of a question minus function words, with Korean
 * particles and polite endings stripped from the end of a word ("일본으로" ->
 * "일본", "배송되나요" -> "배송") so that the prefix reads as search terms. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "rag/rag.h"
#include "util/buf.h"

#define CONDENSE_WORD_MAX 64  /* bytes of one word kept */
#define CONDENSE_WORDS_MAX 64 /* words of one question looked at */

struct condense_words {
  char items[CONDENSE_WORDS_MAX][CONDENSE_WORD_MAX];
  size_t count;
};

/* English function words and question words: never salient. */
static const char *const condense_stop_en[] = {
    "a", "about", "again", "all", "also", "am", "an", "and", "any", "anything", "are", "as",
    "at", "be", "been", "but", "by", "can", "could", "did", "do", "does", "else", "for",
    "from", "get", "got", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it",
    "its", "just", "long", "many", "may", "me", "might", "much", "my", "need", "no", "not",
    "now", "of", "on", "one", "ones", "or", "other", "our", "please", "same", "should", "so",
    "some", "tell", "than", "thanks", "that", "the", "their", "them", "then", "there", "these",
    "they", "this", "those", "to", "too", "us", "was", "we", "what", "when", "where", "which",
    "who", "why", "will", "with", "would", "you", "your", NULL};

/* English words that make a question lean on the previous one. */
static const char *const condense_lead_en[] = {"and", "or", "but", "so", "then", "also",
                                               "what about", "how about", "what if",
                                               "same", NULL};
static const char *const condense_refer_en[] = {"it", "its", "it's", "they", "them", "their",
                                                "those", "these", "this", "that", "there",
                                                "one", "ones", NULL};

/* Korean words (after particles are stripped) that carry no subject. */
static const char *const condense_stop_ko[] = {
    "그럼", "그러면", "그리고", "그런데", "근데", "또", "그건", "그거", "그것", "이건",
    "이거", "이것", "저건", "저거", "거기", "여기", "그때", "그래서", "그렇다면", "그쪽",
    "어떻게", "얼마", "얼마나", "언제", "어디", "뭐", "무엇", "왜", "누가", "어떤", "어느",
    "제", "저", "나", "내", "우리", "좀", "수", "것", "건", "거", "있나요", "있어요",
    "있을까요", "되나요", "돼요", "되요", "하나요", "해요", "인가요", "이에요", "예요",
    "알려주세요", "궁금해요", "궁금합니다", "경우", "혹시", "다시", "정도", NULL};

/* Korean openers and demonstratives that lean on the previous turn. */
static const char *const condense_lead_ko[] = {"그럼", "그러면", "그리고", "그런데", "근데",
                                               "또", "그래서", "그렇다면", NULL};
static const char *const condense_refer_ko[] = {"그건", "그거", "그것", "이건", "이거",
                                                "이것", "저건", "저거", "거기", "그때",
                                                "그쪽", "그곳", NULL};

/* Endings stripped from a Korean word, longest first. A one-syllable ending
 * needs two syllables left ("국가" stays), a longer one one syllable. */
static const char *const condense_suffix_ko[] = {
    "되나요", "하나요", "할까요", "인가요", "이에요", "에서는", "으로는", "습니다",
    "합니다", "해요", "돼요", "나요", "까요", "예요", "에서", "으로", "까지", "부터", "에게",
    "한테", "처럼", "보다", "이나", "은요", "는요", "이요", "은", "는", "이", "가", "을",
    "를", "에", "로", "도", "만", "의", "와", "과", "요", NULL};

static int condense_in(const char *word, const char *const *list) {
  for (size_t i = 0; list[i]; i++)
    if (strcmp(word, list[i]) == 0) return 1;
  return 0;
}

/* Hangul syllables (U+AC00..U+D7A3) are 3 bytes in UTF-8: EA B0 80 .. ED 9E A3. */
static size_t condense_syllables(const char *p, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)p[i] >= 0xEA && (unsigned char)p[i] <= 0xED) n++;
  return n;
}

static int condense_is_hangul(const char *w) {
  return (unsigned char)w[0] >= 0xEA && (unsigned char)w[0] <= 0xED;
}

static void condense_strip_ko(char *w) {
  size_t len = strlen(w);
  for (size_t i = 0; condense_suffix_ko[i]; i++) {
    const char *suf = condense_suffix_ko[i];
    size_t n = strlen(suf);
    size_t need = n == 3 ? 2 : 1; /* syllables that must remain */
    if (len <= n || strcmp(w + len - n, suf) != 0) continue;
    if (condense_syllables(w, len - n) < need) continue;
    w[len - n] = '\0';
    return;
  }
}

/* Splits text into words: runs of letters and digits (ASCII, or any byte of a
 * multi-byte UTF-8 character) plus inner apostrophes and hyphens. ASCII is
 * lower-cased into lower[], the original kept in orig[]. */
static void condense_split(const char *text, struct condense_words *orig,
                           struct condense_words *lower) {
  size_t i = 0, len = strlen(text);
  orig->count = lower->count = 0;
  while (i < len && orig->count < CONDENSE_WORDS_MAX) {
    size_t start, n;
    unsigned char c = (unsigned char)text[i];
    if (!(isalnum(c) || c >= 0x80)) {
      i++;
      continue;
    }
    start = i;
    while (i < len) {
      c = (unsigned char)text[i];
      if (isalnum(c) || c >= 0x80) {
        i++;
      } else if ((c == '\'' || c == '-') && i + 1 < len &&
                 (isalnum((unsigned char)text[i + 1]) || (unsigned char)text[i + 1] >= 0x80)) {
        i++;
      } else {
        break;
      }
    }
    n = i - start;
    if (n >= CONDENSE_WORD_MAX) continue; /* a pasted blob is not a search term */
    memcpy(orig->items[orig->count], text + start, n);
    orig->items[orig->count][n] = '\0';
    for (size_t k = 0; k <= n; k++)
      lower->items[lower->count][k] = (char)tolower((unsigned char)orig->items[orig->count][k]);
    orig->count++;
    lower->count++;
  }
}

/* Keeps only the salient words of w (in place; lower and orig in step). */
static void condense_salient(struct condense_words *orig, struct condense_words *lower) {
  size_t kept = 0;
  for (size_t i = 0; i < lower->count; i++) {
    char *lw = lower->items[i], *ow = orig->items[i];
    size_t n;
    if (condense_is_hangul(lw)) {
      if (condense_in(lw, condense_stop_ko)) continue;
      condense_strip_ko(lw);
      condense_strip_ko(ow);
      if (condense_in(lw, condense_stop_ko)) continue;
    } else {
      n = strlen(lw);
      if (n > 2 && strcmp(lw + n - 2, "'s") == 0) {
        lw[n - 2] = '\0';
        ow[n - 2] = '\0';
      }
      if (condense_in(lw, condense_stop_en)) continue;
      if (strlen(lw) < 2 && !isdigit((unsigned char)lw[0])) continue;
    }
    if (kept != i) {
      memcpy(lower->items[kept], lw, strlen(lw) + 1);
      memcpy(orig->items[kept], ow, strlen(ow) + 1);
    }
    kept++;
  }
  orig->count = lower->count = kept;
}

int rag_condense_needed(const char *question) {
  struct condense_words *orig = malloc(sizeof *orig), *lower = malloc(sizeof *lower);
  size_t words, content;
  int refer = 0, lead = 0, needed = 0;
  if (!orig || !lower || !question) goto out;
  condense_split(question, orig, lower);
  words = lower->count;
  if (words == 0) goto out;
  if (condense_in(lower->items[0], condense_lead_en) ||
      condense_in(lower->items[0], condense_lead_ko))
    lead = 1;
  if (words >= 2) {
    char two[2 * CONDENSE_WORD_MAX + 2];
    size_t a = strlen(lower->items[0]), b = strlen(lower->items[1]);
    memcpy(two, lower->items[0], a);
    two[a] = ' ';
    memcpy(two + a + 1, lower->items[1], b + 1);
    if (condense_in(two, condense_lead_en)) lead = 1;
  }
  for (size_t i = 0; i < words; i++)
    if (condense_in(lower->items[i], condense_refer_en) ||
        condense_in(lower->items[i], condense_refer_ko))
      refer = 1;
  condense_salient(orig, lower);
  content = lower->count;
  /* A leading connective, a back-reference in a short question, or almost
   * nothing of its own to search for. */
  needed = lead || (refer && content <= 5) || content <= 2;
out:
  free(orig);
  free(lower);
  return needed;
}

ragd_err rag_condense_rules(const char *question, const struct store_message_list *history,
                            char **out) {
  struct condense_words *prev = NULL, *prev_lower = NULL, *cur = NULL, *cur_lower = NULL;
  const struct store_message *last = NULL;
  const char *source;
  struct buf q;
  size_t first;
  ragd_err rc = RAGD_OK;

  buf_init(&q, 0);
  *out = NULL;
  if (!question) return RAGD_EINVAL;
  for (size_t i = history ? history->count : 0; i-- > 0;)
    if (history->items[i].role && strcmp(history->items[i].role, "user") == 0) {
      last = &history->items[i];
      break;
    }
  if (!last || !last->content || !rag_condense_needed(question)) goto copy;
  source = last->retrieval_query && last->retrieval_query[0] ? last->retrieval_query
                                                              : last->content;
  prev = malloc(sizeof *prev);
  prev_lower = malloc(sizeof *prev_lower);
  cur = malloc(sizeof *cur);
  cur_lower = malloc(sizeof *cur_lower);
  if (!prev || !prev_lower || !cur || !cur_lower) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  condense_split(source, prev, prev_lower);
  condense_salient(prev, prev_lower);
  condense_split(question, cur, cur_lower);
  condense_salient(cur, cur_lower);
  /* the most recent terms count most: keep the last RAG_CONDENSE_TERMS_MAX */
  first = prev->count > RAG_CONDENSE_TERMS_MAX ? prev->count - RAG_CONDENSE_TERMS_MAX : 0;
  for (size_t i = first; i < prev->count; i++) {
    int dup = 0;
    for (size_t j = 0; j < cur_lower->count && !dup; j++)
      dup = strcmp(prev_lower->items[i], cur_lower->items[j]) == 0;
    for (size_t j = first; j < i && !dup; j++)
      dup = strcmp(prev_lower->items[i], prev_lower->items[j]) == 0;
    if (dup) continue;
    rc = buf_append_str(&q, prev->items[i]);
    if (!rc) rc = buf_append_char(&q, ' ');
    if (rc) goto out;
  }
copy:
  rc = buf_append_str(&q, question);
  if (rc) goto out;
  *out = buf_take(&q, NULL);
  if (!*out) rc = RAGD_ENOMEM;
out:
  free(prev);
  free(prev_lower);
  free(cur);
  free(cur_lower);
  buf_dispose(&q);
  return rc;
}
