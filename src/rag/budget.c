/* budget.c - fitting a prompt into the model's context window, counted with
 * the model's own BPE encoding.
 *
 * A chat prompt costs, per OpenAI's published accounting for chat models,
 * 3 tokens per message plus the tokens of its role and content, plus 3 that
 * prime the reply. When the prompt and the reserved answer do not fit:
 * lowest-ranked passages go first (one is always kept), then the oldest turns
 * of the conversation, then the longest remaining passage is cut at a token
 * boundary. A question that cannot fit even alone is refused. */
#include <stdlib.h>
#include <string.h>

#include "rag/rag.h"
#include "text/text.h"

#define TOKENS_PER_MESSAGE 3
#define TOKENS_REPLY_PRIMING 3

ragd_err rag_prompt_count(const struct text_bpe *bpe, const struct llm_message *msgs, size_t n,
                          size_t *tokens) {
  size_t total = TOKENS_REPLY_PRIMING;
  for (size_t i = 0; i < n; i++) {
    size_t role = 0, content = 0;
    ragd_err rc = text_bpe_count(bpe, msgs[i].role, strlen(msgs[i].role), &role);
    if (!rc) rc = text_bpe_count(bpe, msgs[i].content, strlen(msgs[i].content), &content);
    if (rc) return rc;
    total += TOKENS_PER_MESSAGE + role + content;
  }
  *tokens = total;
  return RAGD_OK;
}

/* The first keep tokens of s as a string, cut back to a whole UTF-8
 * character (a token may end inside one). */
static ragd_err cut_at_token(const struct text_bpe *bpe, const char *s, size_t keep, char **out) {
  uint32_t *ids = NULL;
  size_t count = 0;
  struct buf b;
  ragd_err rc = text_bpe_encode(bpe, s, strlen(s), &ids, &count);
  if (rc) return rc;
  buf_init(&b, 0);
  for (size_t i = 0; i < count && i < keep && !rc; i++) {
    size_t len = 0;
    const char *bytes = text_bpe_token_bytes(bpe, ids[i], &len);
    if (bytes) rc = buf_append(&b, bytes, len);
  }
  free(ids);
  if (rc) return rc;
  if (b.data) b.data[b.len = text_utf8_prefix(b.data, b.len, b.len)] = '\0';
  *out = buf_take(&b, NULL);
  return *out ? RAGD_OK : RAGD_ENOMEM;
}

ragd_err rag_budget_fit(const struct rag_budget *b, const char *question, unsigned prompt_flags,
                        struct llm_passage *passages, size_t *npassages,
                        struct store_message_list *history, size_t *history_skip,
                        char **cut_text, struct rag_prompt *prompt, struct rag_budget_report *report) {
  size_t limit, tokens = 0;
  ragd_err rc;
  memset(report, 0, sizeof *report);
  *history_skip = 0;
  *cut_text = NULL;
  if (b->window <= b->reserve) return RAGD_ECONFIG;
  limit = (size_t)(b->window - b->reserve);
  report->limit = limit;
  for (;;) {
    struct store_message_list view = {history ? history->items + *history_skip : NULL,
                                      history ? history->count - *history_skip : 0};
    rc = rag_prompt_build_ex(question, passages, *npassages, &view, prompt_flags, prompt);
    if (rc) return rc;
    rc = rag_prompt_count(b->bpe, prompt->messages, prompt->count, &tokens);
    if (rc) goto fail;
    if (tokens <= limit) break;
    if (*npassages > 1) {
      (*npassages)--;
      report->passages_dropped++;
    } else if (view.count > 0) {
      (*history_skip)++;
      report->history_dropped++;
    } else if (*npassages == 1 && passages[0].text && passages[0].text[0]) {
      /* cut the remaining passage by the overflow, plus a little for the
       * characters a cut token boundary may cost */
      size_t have = 0, over = tokens - limit, keep;
      char *cut = NULL;
      rc = text_bpe_count(b->bpe, passages[0].text, strlen(passages[0].text), &have);
      if (rc) goto fail;
      keep = have > over + 2 ? have - over - 2 : 0;
      rc = cut_at_token(b->bpe, passages[0].text, keep, &cut);
      if (rc) goto fail;
      free(*cut_text);
      *cut_text = cut;
      passages[0].text = cut;
      report->passage_truncated = 1;
    } else {
      /* nothing left to remove: even the question alone does not fit */
      rc = RAGD_ETOOBIG;
      goto fail;
    }
    rag_prompt_dispose(prompt);
  }
  report->prompt_tokens = tokens;
  return RAGD_OK;
fail:
  rag_prompt_dispose(prompt);
  free(*cut_text);
  *cut_text = NULL;
  return rc;
}
