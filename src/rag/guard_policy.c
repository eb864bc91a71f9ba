/* guard_policy.c - where guard/ meets the pipeline: personal data masked in
 * prompt turns, the fixed refusal for a message flagged as prompt injection,
 * and chunks flagged at ingest kept out of answers.
 *
 * The ingest flags live in the document's metadata (reserved keys, see
 * rag_ingest in rag.h) rather than in a column of chunks, so both stores
 * keep them without a schema change. An answer finds the excluded documents
 * with the store's metadata filter and reads the flagged ordinals of only
 * those documents that appear among its hits. */
#include <stdlib.h>
#include <string.h>

#include "guard/guard.h"
#include "rag/rag_int.h"
#include "text/text.h"
#include "util/json.h"
#include "util/log.h"

#define GUARD_KEY_CHUNKS "guard_flagged_chunks"
#define GUARD_KEY_EXCLUDED "guard_excluded"
#define GUARD_KEY_ALLOW "allow_instructions"
/* Share of Hangul letters above which the refusal is in Korean (as the
 * extractive generator decides its language). */
#define GUARD_KOREAN_RATIO 0.3

/* ---- prompt turns ------------------------------------------------------------ */

ragd_err rag_guard_mask_turns(const struct store_message_list *in, unsigned kinds,
                              struct rag_masked_turns *out, size_t *masked) {
  size_t n = in ? in->count : 0;
  ragd_err rc = RAGD_OK;
  memset(out, 0, sizeof *out);
  if (n == 0) return RAGD_OK;
  out->items = calloc(n, sizeof *out->items);
  if (!out->items) return RAGD_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    const char *text = in->items[i].content ? in->items[i].content : "";
    size_t count = 0;
    char *copy = NULL;
    rc = guard_mask_pii(text, strlen(text), kinds, &copy, NULL, &count);
    if (rc) goto out;
    out->items[i] = in->items[i]; /* borrowed fields, all but content */
    out->items[i].content = copy;
    out->count = i + 1;
    if (masked) *masked += count;
  }
out:
  if (rc) rag_masked_turns_dispose(out);
  return rc;
}

void rag_masked_turns_dispose(struct rag_masked_turns *t) {
  if (!t) return;
  for (size_t i = 0; i < t->count; i++) free(t->items[i].content);
  free(t->items);
  memset(t, 0, sizeof *t);
}

/* ---- the refusal ------------------------------------------------------------- */

static const char refusal_en[] =
    "I'm sorry, but I can't help with that request. I can answer questions about our "
    "products, orders and services from our support knowledge base. If you need more help, "
    "please contact a support agent.";
static const char refusal_ko[] =
    "죄송하지만 해당 요청은 도와드릴 수 없습니다. 저는 고객지원 자료를 바탕으로 상품, 주문, "
    "서비스에 관한 질문에만 답변해 드릴 수 있습니다. 추가 도움이 필요하시면 상담원에게 "
    "문의해 주세요.";

const char *rag_guard_refusal(const char *question) {
  size_t len = question ? strlen(question) : 0;
  return len && text_hangul_ratio(question, len) > GUARD_KOREAN_RATIO ? refusal_ko : refusal_en;
}

/* A generator that never leaves the process: the fixed refusal, whole, as
 * one delta, then finish_reason "content_filter". */
static ragd_err refusal_start(void *ctx, const struct llm_request *req, const struct llm_sink *sink) {
  const char *text = rag_guard_refusal(req->question);
  (void)ctx;
  sink->on_delta(sink->ctx, text, strlen(text));
  sink->on_finish(sink->ctx, RAGD_OK, "content_filter", NULL, NULL);
  return RAGD_OK;
}

const struct llm_ops rag_guard_refusal_ops = {
    .version = LLM_OPS_VERSION,
    .name = "guard",
    .start = refusal_start,
};

/* ---- chunks flagged at ingest -------------------------------------------------- */

static int rowid_in(const int64_t *ids, size_t n, int64_t id) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (ids[mid] == id) return 1;
    if (ids[mid] < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return 0;
}

/* Whether the document's stored metadata lists ordinal among its flagged
 * chunks. A document that cannot be read counts as flagged: a guard that
 * cannot decide keeps the passage out. */
static int ordinal_flagged(struct rag_engine *e, const char *external_id, size_t ordinal) {
  struct store_doc doc;
  json_t *meta = NULL, *list;
  size_t i;
  int flagged = 1;
  memset(&doc, 0, sizeof doc);
  if (e->store.ops->get_document(e->store.ctx, external_id, &doc) != RAGD_OK) goto out;
  if (json_parse_object(doc.metadata_json, strlen(doc.metadata_json), &meta, NULL) != RAGD_OK)
    goto out;
  list = json_object_get(meta, GUARD_KEY_CHUNKS);
  if (!json_is_array(list)) goto out;
  flagged = 0;
  for (i = 0; i < json_array_size(list) && !flagged; i++)
    flagged = json_integer_value(json_array_get(list, i)) == (json_int_t)ordinal;
out:
  json_decref(meta);
  store_doc_dispose(&doc);
  return flagged;
}

ragd_err rag_guard_drop_flagged(struct rag_engine *e, struct store_hit_list *hits,
                                size_t *dropped) {
  int64_t *excluded = NULL;
  size_t excluded_count = 0, kept = 0;
  struct store_hit_list gone = {NULL, 0};
  ragd_err rc;
  *dropped = 0;
  if (hits->count == 0 || !e->store.ops->filter_documents) return RAGD_OK;
  rc = e->store.ops->filter_documents(e->store.ctx, "{\"" GUARD_KEY_EXCLUDED "\":true}", &excluded,
                                      &excluded_count);
  if (rc || excluded_count == 0) goto out;
  gone.items = calloc(hits->count, sizeof *gone.items);
  if (!gone.items) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  for (size_t i = 0; i < hits->count; i++) {
    struct store_hit *h = &hits->items[i];
    if (rowid_in(excluded, excluded_count, h->document_rowid) &&
        ordinal_flagged(e, h->document_id, h->ordinal))
      gone.items[gone.count++] = *h;
    else
      hits->items[kept++] = *h;
  }
  hits->count = kept;
  *dropped = gone.count;
out:
  store_hit_list_dispose(&gone);
  free(excluded);
  return rc;
}

/* ---- ingest ------------------------------------------------------------------ */

ragd_err rag_guard_document(const struct text_chunk_list *chunks, const char *metadata_json,
                            char **metadata_out, size_t *flagged, int *excluded) {
  json_t *meta = NULL, *ordinals = NULL;
  struct buf out;
  int allowed;
  ragd_err rc;
  *metadata_out = NULL;
  *flagged = 0;
  *excluded = 0;
  buf_init(&out, 0);
  rc = json_parse_object(metadata_json, strlen(metadata_json), &meta, NULL);
  if (rc) goto out;
  ordinals = json_array();
  if (!ordinals) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  for (size_t i = 0; i < chunks->count; i++) {
    struct guard_injection res;
    rc = guard_check_document(chunks->items[i].text, chunks->items[i].text_len, &res);
    if (rc) goto out; /* chunks are valid UTF-8: only RAGD_ENOMEM */
    if (!res.flagged) continue;
    if (json_array_append_new(ordinals, json_integer((json_int_t)i))) {
      rc = RAGD_ENOMEM;
      goto out;
    }
  }
  *flagged = json_array_size(ordinals);
  allowed = json_is_true(json_object_get(meta, GUARD_KEY_ALLOW));
  *excluded = *flagged > 0 && !allowed;
  if (*flagged == 0 && !json_object_get(meta, GUARD_KEY_CHUNKS) &&
      !json_object_get(meta, GUARD_KEY_EXCLUDED))
    goto out; /* nothing to record: the caller's metadata text is stored as sent */
  /* The reserved keys say what this ingest found, whatever the caller sent. */
  json_object_del(meta, GUARD_KEY_CHUNKS);
  json_object_del(meta, GUARD_KEY_EXCLUDED);
  if (*flagged && json_object_set(meta, GUARD_KEY_CHUNKS, ordinals)) rc = RAGD_ENOMEM;
  if (!rc && *excluded && json_object_set_new(meta, GUARD_KEY_EXCLUDED, json_true()))
    rc = RAGD_ENOMEM;
  if (!rc) rc = json_append(&out, meta);
  if (rc) goto out;
  *metadata_out = buf_take(&out, NULL);
  if (!*metadata_out) rc = RAGD_ENOMEM;
out:
  buf_dispose(&out);
  json_decref(ordinals);
  json_decref(meta);
  return rc;
}
