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
 * "일본", "배송되나요" -> "배송") so that the prefix reads as search terms.
 *
 * RAGD_CONDENSE=llm asks a model instead (rag_condense, at the end): one short
 * non-streamed call with a fixed prompt (rag_prompt_condense), bounded by
 * RAGD_CONDENSE_TIMEOUT_MS, falling back to the rules on any failure. */
#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "guard/guard.h"
#include "rag/rag_int.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/metrics.h"

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

/* ---- RAGD_CONDENSE=llm ------------------------------------------------------ */

#define CONDENSE_LLM_TOKENS_MAX 128   /* the rewrite is one question */
#define CONDENSE_LLM_TEXT_MAX 4096    /* bytes of the model's reply kept */
#define CONDENSE_LLM_QUERY_MAX 1000   /* a longer "question" is not a rewrite */
#define CONDENSE_LLM_TURN_BYTES 600   /* of each earlier turn, in the prompt */

static struct metric *condense_metric;
static pthread_once_t condense_metric_once = PTHREAD_ONCE_INIT;

static void condense_metric_create(void) {
  condense_metric = metrics_counter(
      "ragd_condense_total",
      "Follow-up questions made standalone, by how (rules, llm) and, for the rules, why the "
      "llm rewrite was not used (none when it was not asked for).",
      "method,fallback");
}

static int condense_is_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/* The model's reply as a search query: its first non-empty line, trimmed of
 * spaces and of quotes around it. NULL when nothing is left. */
static char *condense_reply_query(const char *reply, size_t len) {
  size_t start = 0, end;
  char *q;
  while (start < len && condense_is_space((unsigned char)reply[start])) start++;
  end = start;
  while (end < len && reply[end] != '\n' && reply[end] != '\r') end++;
  while (end > start && condense_is_space((unsigned char)reply[end - 1])) end--;
  if (end - start >= 2 && ((reply[start] == '"' && reply[end - 1] == '"') ||
                           (reply[start] == '\'' && reply[end - 1] == '\''))) {
    start++;
    end--;
  } else if (end - start >= 6 && memcmp(reply + start, "\xe2\x80\x9c", 3) == 0 &&
             memcmp(reply + end - 3, "\xe2\x80\x9d", 3) == 0) { /* “...” */
    start += 3;
    end -= 3;
  }
  while (start < end && condense_is_space((unsigned char)reply[start])) start++;
  while (end > start && condense_is_space((unsigned char)reply[end - 1])) end--;
  if (end == start) return NULL;
  q = malloc(end - start + 1);
  if (!q) return NULL;
  memcpy(q, reply + start, end - start);
  q[end - start] = '\0';
  return q;
}

/* One rewrite by the first LLM entry of the chain that answers in time.
 * RAGD_OK with *out set; otherwise *why names the failure ("no_llm",
 * "timeout", "upstream_unavailable", "empty", ...). */
static ragd_err condense_llm(struct rag_engine *e, const char *question,
                             const struct store_message_list *history, const char *request_id,
                             char **out, const char **why) {
  const struct ragd_config *cfg = e->cfg;
  struct rag_masked_turns masked_turns = {NULL, 0};
  struct store_message_list turns = {NULL, 0};
  struct rag_prompt prompt;
  struct llm_request req;
  struct buf reply;
  char *masked_question = NULL;
  int64_t deadline = clock_mono_us() + (int64_t)cfg->condense_timeout_ms * 1000;
  int tried = 0;
  ragd_err rc;

  *out = NULL;
  *why = "no_llm";
  memset(&prompt, 0, sizeof prompt);
  buf_init(&reply, CONDENSE_LLM_TEXT_MAX);
  if (history) turns = *history;
  if (strcmp(cfg->pii_mask_llm, "on") == 0) {
    /* the model is outside the process: it sees what the answer's prompt would */
    rc = guard_mask_pii(question, strlen(question), GUARD_PII_ALL, &masked_question, NULL, NULL);
    if (!rc) rc = rag_guard_mask_turns(&turns, GUARD_PII_ALL, &masked_turns, NULL);
    if (rc) goto fail;
    question = masked_question;
    turns.items = masked_turns.items;
  }
  rc = rag_prompt_condense(question, &turns, CONDENSE_LLM_TURN_BYTES, &prompt);
  if (rc) goto fail;
  memset(&req, 0, sizeof req);
  req.messages = prompt.messages;
  req.message_count = prompt.count;
  req.question = question;
  req.max_tokens = CONDENSE_LLM_TOKENS_MAX;
  req.temperature = 0;
  req.request_id = request_id;
  for (size_t i = 0; i < e->gen_count; i++) {
    const struct llm *g = &e->gens[i].llm;
    struct llm_complete_result res;
    int64_t left_ms = (deadline - clock_mono_us()) / 1000;
    if (strcmp(g->ops->name, "extractive") == 0) continue;
    if (left_ms <= 0) {
      *why = "timeout";
      break;
    }
    tried = 1;
    buf_dispose(&reply);
    buf_init(&reply, CONDENSE_LLM_TEXT_MAX);
    rc = llm_complete(g, &req, (long)left_ms, &reply, &res);
    if (res.prompt_tokens >= 0 || res.completion_tokens >= 0)
      rag_account_tokens(e, g->ops->name, g->model ? g->model : g->ops->name,
                         res.prompt_tokens > 0 ? res.prompt_tokens : 0,
                         res.completion_tokens > 0 ? res.completion_tokens : 0);
    if (rc == RAGD_OK) {
      *out = condense_reply_query(reply.data ? reply.data : "", reply.len);
      if (*out && strlen(*out) <= CONDENSE_LLM_QUERY_MAX) goto done;
      *why = *out ? "too_long" : "empty";
      free(*out);
      *out = NULL;
      log_warn("condense: %s gave no usable rewrite (%s); the rules condense the follow-up "
               "instead", e->gens[i].name, *why);
      goto fail; /* a model that answered badly is not asked twice */
    }
    if (rc == RAGD_ETIMEOUT)
      *why = "timeout";
    else if (strcmp(res.code, "upstream_unavailable") == 0)
      *why = "upstream_unavailable";
    else
      *why = "upstream_error";
    log_warn("condense: %s could not rewrite the follow-up (%s: %s)%s", e->gens[i].name,
             res.code[0] ? res.code : ragd_strerror(rc), res.message,
             rc == RAGD_ETIMEOUT ? "; the rules condense it instead" : "");
    if (rc == RAGD_ETIMEOUT || rc == RAGD_ENOMEM) break;
  }
  if (!tried) *why = "no_llm";
  rc = RAGD_EUPSTREAM;
  goto fail;
done:
  *why = NULL;
  rc = RAGD_OK;
fail:
  rag_prompt_dispose(&prompt);
  rag_masked_turns_dispose(&masked_turns);
  free(masked_question);
  buf_dispose(&reply);
  return rc;
}

ragd_err rag_condense(struct rag_engine *e, const char *question,
                      const struct store_message_list *history, const char *request_id,
                      struct rag_condensed *out) {
  const char *mode = e->cfg->condense;
  int has_user = 0;
  ragd_err rc;

  memset(out, 0, sizeof *out);
  out->method = "none";
  pthread_once(&condense_metric_once, condense_metric_create);
  for (size_t i = 0; history && i < history->count && !has_user; i++)
    has_user = history->items[i].role && strcmp(history->items[i].role, "user") == 0;
  if (strcmp(mode, "off") == 0 || !has_user) {
    out->query = strdup(question);
    return out->query ? RAGD_OK : RAGD_ENOMEM;
  }
  if (strcmp(mode, "llm") == 0) {
    rc = condense_llm(e, question, history, request_id, &out->query, &out->fallback);
    if (rc == RAGD_OK) {
      out->method = "llm";
      metrics_add(condense_metric, 1, "llm", "none");
      return RAGD_OK;
    }
    if (rc == RAGD_ENOMEM) return rc;
  }
  rc = rag_condense_rules(question, history, &out->query);
  if (rc) return rc;
  if (strcmp(out->query, question) != 0) out->method = "rules";
  if (out->fallback || strcmp(out->method, "rules") == 0)
    metrics_add(condense_metric, 1, "rules", out->fallback ? out->fallback : "none");
  return RAGD_OK;
}
