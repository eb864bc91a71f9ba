/* rag.h - one request's pipeline: ingest a document (text -> store), search,
 * and answer a question (retrieve -> prompt -> generate -> cite).
 *
 * rag knows no protocol: it reports an answer through struct rag_events, and
 * the HTTP handlers and the command line encode those as they need. */
#ifndef RAGD_RAG_H
#define RAGD_RAG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "embed/embed.h"
#include "llm/llm.h"
#include "retrieve/retrieve.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/config.h"
#include "util/err.h"

struct rag_budget_report;
struct guard_injection; /* guard/guard.h */

struct rag_price {
  const char *model; /* a model name or prefix */
  double input_per_million;  /* USD per 1M input tokens */
  double output_per_million; /* USD per 1M output tokens */
};

/* One entry of the failover chain. */
struct rag_generator {
  char *name; /* the chain entry's name ("DEFAULT" for RAGD_LLM_*; "LAST_RESORT") */
  struct llm llm;
};

struct rag_engine {
  const struct ragd_config *cfg; /* borrowed; outlives the engine */
  struct store store;
  /* Generators in failover order. A generator that fails before its first
   * token hands the question to the next. With RAGD_LLM_LAST_RESORT=extractive
   * the last entry is the extractive generator, and an answer from it after
   * another generator failed is marked degraded. */
  struct rag_generator *gens;
  size_t gen_count;
  struct llm extractive; /* answers when nothing was retrieved */
  struct rag_price *prices; /* RAGD_PRICES overrides */
  size_t price_count;
  /* Prompt budget for the chain's models (bpe NULL: no LLM configured). */
  struct text_model_table *models;
  struct text_bpe *bpe;
  struct rag_budget {
    const struct text_bpe *bpe;
    long window;  /* context window of the model, tokens */
    long reserve; /* tokens kept free for the answer (the max_tokens asked for) */
  } budget;
  /* Answers still generating, for a graceful shutdown (answer.c). */
  pthread_mutex_t answers_mu;
  struct rag_answer *answers;
  size_t answer_count;
  int shutting_down;
  /* Runs the next generator of the chain after a failure: the failing one
   * reports on the upstream thread, which must not do the next one's work
   * (the extractive last resort answers synchronously). */
  struct workq *jobs;
  /* Hybrid retrieval: the configured embedder and the in-memory vector index
   * of every chunk's vector under embedder.model_key. index.ops is NULL until
   * the dimension is known (openai without RAGD_EMBED_DIMENSIONS: its first
   * answer). index_lock guards index: searches read, ingest writes. */
  struct embedder embedder;
  /* 1: vectors are searched in the store (store.ops->search_vectors:
   * pgvector), index stays empty and every node sees every vector at once;
   * 0: in index, of kind memory_index ("int8" | "exact"). */
  int vector_in_store;
  const char *memory_index;
  struct retrieve_index index;
  pthread_rwlock_t index_lock;
  int index_lock_ready;
  double rrf_k, rrf_weight_keyword, rrf_weight_vector;
  /* RAGD_FUSION: 0 rrf, 1 blend (retrieve_blend of norm blend_norm, the
   * vector ranking weighted blend_weight_vector, keyword 1 minus it) */
  int fusion_blend;
  enum retrieve_blend_norm blend_norm;
  double blend_weight_vector;
  double vector_min_score; /* hybrid: vector-only hits below this cosine are dropped */
  double vector_feedback;  /* hybrid: weight of the best keyword hits' vectors
                              added to the query vector (0: off) */
  size_t vector_feedback_docs;
  /* The in-memory keyword index (RAGD_KEYWORD_INDEX=memory, SQLite store):
   * NULL until the first keyword search loads it; then kept in step by
   * ingest like the vector index, under index_lock. */
  int keyword_memory;
  struct retrieve_bm25_params bm25;
  struct retrieve_bm25 *keyword;
  /* Another process's writes (a separate `ragd ingest` on the same SQLite
   * data): store data_version as of the last look, the largest chunk row id
   * each index has read from the store, when the last look was (retrieval.c,
   * rag_sync_external). */
  pthread_mutex_t sync_mu;
  int sync_ready;
  /* Tests only (NULL otherwise): called by the sync between reading another
   * process's changes and applying them, where a refit's swap can come. */
  void (*sync_between_hook)(struct rag_engine *e);
  uint64_t data_version;
  int64_t keyword_max_rowid, vector_max_rowid;
  int64_t sync_checked_us;
  /* The lsa embedder's refits (refit.c). model_lock: ingest holds the read
   * side from embedding a document to updating the index; a refit's swap
   * holds the write side. refit_mu serializes refits. */
  pthread_rwlock_t model_lock;
  pthread_mutex_t refit_mu;
  pthread_mutex_t refit_state_mu; /* guards the refit_* fields below */
  pthread_t refit_thread;
  int refit_started, refit_running, refit_closing;
  int lsa_background;          /* rag_lsa_background: refit on a thread when due */
  double lsa_refit_fraction;   /* RAGD_LSA_REFIT_FRACTION; 0: never by itself */
  atomic_size_t lsa_changed;   /* chunks written since the current fit began */
};

/* Opens the store the configuration names: RAGD_STORE when set, else
 * RAGD_DATA (a folder for SQLite, or itself a store spec), with the pool,
 * statement timeout and migration settings of cfg. On error appends a
 * message (never the URI, which may hold a password) to err. */
ragd_err rag_store_open(const struct ragd_config *cfg, struct store *out /* OUT */,
                        struct buf *err);

/* Opens the store in cfg->data_dir, creates the embedder, loads the vector
 * index (vectors stored under the embedder's model key and dimension; a
 * model switch is logged with a hint to run `ragd reindex`) and creates the
 * generators. with_llm = 0 skips the configured generators (ingest/search
 * commands). */
ragd_err rag_engine_open(const struct ragd_config *cfg, int with_llm, struct rag_engine *out,
                         struct buf *err);
void rag_engine_close(struct rag_engine *e);
/* Loads the in-memory keyword index from the store when it is configured
 * (RAGD_KEYWORD_INDEX=memory with SQLite) and not loaded yet. The first
 * keyword search does this by itself; a server calls it at start-up so that
 * no request waits for it. Takes the write lock while loading. */
ragd_err rag_keyword_ensure(struct rag_engine *e);

/* ---- ingest ---- */

struct rag_doc_in {
  const char *id; /* external id; NULL or "" to derive one from the content hash */
  const char *title; /* NULL: taken from the markup (first heading), else the id */
  const char *url;
  const char *metadata_json; /* NULL: "{}" */
  const char *format; /* "text" | "markdown" | "html"; NULL: markdown */
  const char *text;
  size_t text_len;
};

struct rag_ingest_result {
  char *document_id; /* owned; free() */
  enum store_put_status status;
  size_t chunk_count;
  /* Chunks guard_check_document flagged as text aimed at the model, and
   * whether they are kept out of prompts (0 when the document's metadata
   * holds "allow_instructions": true). */
  size_t flagged_chunks;
  int flagged_excluded;
};

/* Validates (UTF-8, sizes, format), chunks, embeds and stores one document
 * with its vectors in one transaction, then updates the vector index. An
 * unchanged document is neither embedded nor written.
 * Every chunk goes through guard_check_document. Flagged chunks are stored
 * and searchable, but answers leave them out of prompts and sources unless
 * the document's metadata holds "allow_instructions": true. The flags live in
 * the stored metadata under reserved keys (any caller-supplied values of
 * these keys are replaced): "guard_flagged_chunks" (ordinals of the flagged
 * chunks) and "guard_excluded": true (flagged and not allowed). On RAGD_EINVAL/
 * RAGD_EUTF8 err says what is wrong; RAGD_EUPSTREAM when the embedder
 * failed (nothing was written). Thread-safe. */
ragd_err rag_ingest(struct rag_engine *e, const struct rag_doc_in *doc,
                    struct rag_ingest_result *out /* OUT */, struct buf *err);

/* ---- search ---- */

enum rag_search_mode { RAG_SEARCH_HYBRID = 0, RAG_SEARCH_KEYWORD = 1, RAG_SEARCH_VECTOR = 2 };

/* "hybrid", "keyword", "vector" -> the mode; -1 when unknown. */
int rag_search_mode_parse(const char *name);
const char *rag_search_mode_name(enum rag_search_mode mode);

struct rag_search_opts {
  const char *query;
  size_t k;
  enum rag_search_mode mode;
  /* A JSON object of metadata equalities, e.g. {"lang":"ko"}; NULL or "{}"
   * for none. Applied before the top k is cut. */
  const char *filters_json;
  /* OUT, may be NULL: set to 1 when hybrid fell back to keyword alone
   * because the query could not be embedded (the embeddings service is
   * down or its requests fail). */
  int *degraded;
};

/* The top k passages for o->query, best first.
 * - keyword: BM25; hit score is the BM25 score.
 * - vector: the query's embedding against the vector index; score is the
 *   cosine. Chunks without a vector under the current model are not found.
 * - hybrid: RRF of the best RAGD_RRF_DEPTH (at least k) of each ranker;
 *   score is the fused score. When the query cannot be embedded (an
 *   embeddings server down) hybrid falls back to keyword alone.
 * Every hit carries keyword_rank/score and vector_rank/score of the rankers
 * that ran (rank 0: not returned by that ranker).
 * Errors: RAGD_EINVAL for a malformed filter, unknown mode or NULL query;
 * RAGD_EUPSTREAM when vector mode cannot embed the query; store errors.
 * Zero hits is not an error. Thread-safe. */
ragd_err rag_search_ex(struct rag_engine *e, const struct rag_search_opts *o,
                       struct store_hit_list *out /* OUT */);

/* rag_search_ex with the default mode and no filters. */
ragd_err rag_search(struct rag_engine *e, const char *query, size_t k,
                    struct store_hit_list *out /* OUT */);

/* Embeds every chunk that has no vector under the current model (after a
 * model switch or an interrupted ingest), batch by batch, then deletes the
 * vectors of other models and rebuilds the BM25 index. progress (may be
 * NULL) is called after each batch with the chunks embedded so far. */
ragd_err rag_reindex(struct rag_engine *e, void (*progress)(void *ctx, size_t done),
                     void *progress_ctx, size_t *embedded /* OUT */,
                     size_t *dropped /* OUT: vectors of other models */, struct buf *err);

/* lsa embedder: fits a new model on every stored chunk plus extra[0..n_extra)
 * (texts about to be stored; NULL/0 for none), builds a vector index for it,
 * stores model and vectors, and swaps both in atomically (refit.c explains
 * the steps). Searches and ingests go on meanwhile; ingests pause only for
 * the swap. One refit at a time (a second caller waits). RAGD_EINVAL when
 * the embedder is not lsa. */
ragd_err rag_lsa_refit(struct rag_engine *e, const struct slice *extra, size_t n_extra,
                       struct buf *err);
/* on = 1 (serve): from now on, an ingest that brings the chunks changed
 * since the last fit to RAGD_LSA_REFIT_FRACTION of the fitted corpus starts
 * rag_lsa_refit on a background thread (also right away when already due).
 * rag_engine_close waits for a refit in progress. */
void rag_lsa_background(struct rag_engine *e, int on);
/* Runs rag_lsa_refit on the calling thread when one is due (for commands
 * without a background thread: `ragd ingest` at its end). *refitted (may be
 * NULL) says whether it ran. */
ragd_err rag_lsa_refit_if_due(struct rag_engine *e, int *refitted, struct buf *err);

/* ---- answers ---- */

struct rag_question {
  const char *message;
  size_t top_k;
  const char *conversation_id; /* NULL: a new conversation */
  enum rag_search_mode mode;   /* zero: hybrid */
  const char *filters_json;    /* NULL: none; see rag_search_opts */
  const char *request_id;
};

/* What an answer reports, in this order: on_meta, on_sources, on_delta*,
 * on_usage?, then exactly one of on_done or on_error. Callbacks may run on the
 * caller's thread (before rag_answer_start returns) or on the upstream thread;
 * never two at once. Strings are borrowed for the call. */
struct rag_events {
  void *ctx;
  /* provider: the llm ops name of the first generator to answer ("openai",
   * "extractive"); model its model. */
  void (*on_meta)(void *ctx, const char *conversation_id, const char *provider, const char *model);
  void (*on_sources)(void *ctx, const struct store_hit_list *hits);
  void (*on_delta)(void *ctx, const char *text, size_t len);
  void (*on_usage)(void *ctx, long prompt_tokens, long completion_tokens);
  /* cited: source numbers the answer cited, ascending; invalid: numbers it
   * cited that are not in the sources list. */
  void (*on_done)(void *ctx, const char *finish_reason, const int *cited, size_t cited_count,
                  const int *invalid, size_t invalid_count);
  void (*on_error)(void *ctx, const char *code, const char *message);
  /* Optional (may be NULL). The generator that was answering failed before
   * its first token and the next one in the chain takes over: provider and
   * model name the new one, degraded is nonzero when it is the extractive
   * last resort, code/message say why the previous one failed. Fires between
   * on_sources and the first on_delta, any number of times. */
  void (*on_notice)(void *ctx, const char *provider, const char *model, int degraded,
                    const char *code, const char *message);
  /* Optional. Fires before on_meta when the prompt was fitted to a model's
   * context window: ragd's own token count of the prompt and what was left
   * out to make it fit. */
  void (*on_budget)(void *ctx, const struct rag_budget_report *report);
  /* Optional. Fires before on_meta: the query retrieval ran (the question,
   * or the follow-up made standalone from the conversation, see
   * RAGD_CONDENSE), how it was made: "none", "rules" or "llm", and, when
   * RAGD_CONDENSE=llm fell back to the rules, why (see rag_condensed; else
   * NULL). */
  void (*on_query)(void *ctx, const char *retrieval_query, const char *method,
                   const char *fallback);
  /* Optional. Fires just before on_done when the answer was stored as the
   * conversation's next message: its id ("msg_..."), for feedback. Does not
   * fire when the store refused it (the answer is still delivered). */
  void (*on_saved)(void *ctx, const char *message_id);
  /* Optional. Fires before on_meta when RAGD_INJECTION_POLICY is not off:
   * the injection check of the question (result->rule NULL when no rule
   * matched) and the number of personal-data spans masked in the prompt
   * sent to an external LLM (RAGD_PII_MASK_LLM). */
  void (*on_guard)(void *ctx, const struct guard_injection *result, size_t pii_masked);
  /* Optional. Fires before on_meta: the id the answer will be stored under
   * ("msg_..."), for formats that name the message up front (the Vercel
   * start part). It names a stored message only once on_saved fired. */
  void (*on_message_id)(void *ctx, const char *message_id);
};

struct rag_answer;

/* Retrieves, builds the prompt and starts generation.
 * Guard policies, from e->cfg: RAGD_PII_MASK_LLM=on masks personal data in
 * the question and history turns of the prompt (the extractive generator,
 * the stored conversation and retrieval keep the original text);
 * RAGD_INJECTION_POLICY checks the question with guard_check_injection and,
 * when it is flagged, either hardens the prompt (harden) or answers with a
 * fixed refusal in the question's language without calling any generator
 * and without sources, finish_reason "content_filter" (refuse). Passages of
 * chunks flagged at ingest (see rag_ingest) are left out. On RAGD_OK *out is a
 * handle the caller must rag_answer_release; events then run to on_done or
 * on_error. On error no event has fired (except that *code names the failure:
 * a problem code such as "store_unavailable"). */
ragd_err rag_answer_start(struct rag_engine *e, const struct rag_question *q,
                          const struct rag_events *ev, struct rag_answer **out /* OUT */,
                          const char **code /* OUT */);
/* The number of answers still generating. Any thread. */
size_t rag_engine_active_answers(struct rag_engine *e);
/* Graceful shutdown: refuses new answers (rag_answer_start fails with code
 * "shutting_down") and ends every answer still generating with an on_error
 * "shutting_down" (its upstream transfer is aborted). Any thread. */
void rag_engine_shutdown(struct rag_engine *e);

/* Asks the generation to stop (the client went away): the upstream transfer is
 * aborted and on_error("cancelled") follows. Any thread. */
void rag_answer_cancel(struct rag_answer *a);
/* Drops the caller's handle. Any thread; accepts NULL. */
void rag_answer_release(struct rag_answer *a);

/* ---- token budget ---- */

struct rag_prompt;
struct rag_budget_report;

/* struct rag_budget (in struct rag_engine): what a prompt may use, the
 * model's window minus the answer's reserve, counted with the model's
 * encoding (see budget.c for the accounting). */

struct rag_budget_report {
  size_t prompt_tokens;     /* the prompt as sent, ragd's own count */
  size_t limit;             /* window - reserve */
  size_t passages_dropped;  /* lowest-ranked passages left out */
  size_t history_dropped;   /* oldest conversation turns left out */
  int passage_truncated;    /* the last passage was cut at a token boundary */
};

/* Tokens of a chat prompt: 3 per message + role + content, + 3 for the reply. */
ragd_err rag_prompt_count(const struct text_bpe *bpe, const struct llm_message *msgs, size_t n,
                          size_t *tokens /* OUT */);

/* Builds *prompt (rag_prompt_build_ex with prompt_flags) so that it fits b: drops passages from
 * the end of passages[0..*npassages) (keeping one), then the oldest history
 * turns (*history_skip counts them), then cuts passages[0].text at a token
 * boundary (the cut copy is *cut_text, owned by the caller; passages[0].text
 * points at it). RAGD_ETOOBIG when the question alone does not fit,
 * RAGD_ECONFIG when the reserve leaves no room. */
ragd_err rag_budget_fit(const struct rag_budget *b, const char *question, unsigned prompt_flags,
                        struct llm_passage *passages, size_t *npassages /* IN/OUT */,
                        struct store_message_list *history, size_t *history_skip /* OUT */,
                        char **cut_text /* OUT */, struct rag_prompt *prompt /* OUT */,
                        struct rag_budget_report *report /* OUT */);

/* ---- cost ---- */



/* Parses RAGD_PRICES ("model=in/out,..."); *out is freed with
 * rag_prices_free. RAGD_ECONFIG with a message naming the variable. */
ragd_err rag_prices_parse(const char *spec, struct rag_price **out /* OUT */, size_t *count /* OUT */,
                          struct buf *err);
void rag_prices_free(struct rag_price *items, size_t n);
/* The price of model: the longest matching prefix among the overrides, then
 * the built-in table (see cost.c for its date). 0 when unknown. */
int rag_price_lookup(const struct rag_price *overrides, size_t n, const char *model,
                     struct rag_price *out /* OUT */);

/* ---- conversation memory (condense.c) ---- */

/* Terms of earlier turns a condensed query carries at most. */
#define RAG_CONDENSE_TERMS_MAX 8

/* Whether question leans on earlier turns (English or Korean): it opens with
 * a connective ("and", "what about", "그럼"), refers back with a pronoun or
 * demonstrative ("it", "그거") in a short question, or has at most two
 * content words ("and the fee?", "배송비는?"). */
int rag_condense_needed(const char *question);

/* The standalone retrieval query for question, asked after history (oldest
 * first; NULL or empty for none): when rag_condense_needed(question) and
 * history holds a user message, the salient terms of the last user message's
 * retrieval_query (its content when that is NULL or empty) that the
 * question lacks, at most RAG_CONDENSE_TERMS_MAX (the most recent ones),
 * each followed by a space, then the question verbatim; otherwise a copy of
 * question. Deterministic; no I/O. *out is owned by the caller (free). */
ragd_err rag_condense_rules(const char *question, const struct store_message_list *history,
                            char **out /* OUT */);

/* The retrieval query for a question asked in a conversation. */
struct rag_condensed {
  char *query;          /* owned (free) */
  const char *method;   /* static: "none" (the question as asked), "rules" or "llm" */
  const char *fallback; /* static; NULL, or why RAGD_CONDENSE=llm fell back to the
                           rules: "no_llm" (the chain has no LLM entry), "timeout"
                           (RAGD_CONDENSE_TIMEOUT_MS passed), "upstream_unavailable",
                           "upstream_error", "empty" or "too_long" (an unusable reply) */
};

/* Makes question, asked after history (oldest first; NULL or empty for none),
 * standalone for retrieval as e->cfg->condense says. off, or no earlier user
 * message: the question as asked. rules: rag_condense_rules. llm: the first
 * LLM entry of the generator chain (extractive entries skipped) rewrites it
 * in one non-streamed call with rag_prompt_condense (personal data masked
 * when RAGD_PII_MASK_LLM=on; its breaker, retries and token accounting as
 * for answers); an entry that is unavailable hands over to the next one while
 * time is left. The whole rewrite takes at most about
 * RAGD_CONDENSE_TIMEOUT_MS, blocking the calling thread; on any failure the
 * rules condense it instead and out->fallback says why (logged, counted in
 * ragd_condense_total). request_id (may be NULL) goes upstream as
 * X-Request-ID. Only RAGD_ENOMEM fails. Any thread but the upstream thread. */
ragd_err rag_condense(struct rag_engine *e, const char *question,
                      const struct store_message_list *history, const char *request_id,
                      struct rag_condensed *out /* OUT */);

/* Retention: deletes the conversations (and their feedback) whose last
 * message is older than RAGD_CONVERSATION_RETENTION_DAYS; nothing when it is
 * 0. Logs what it did. *deleted (may be NULL) counts them. Any thread. */
ragd_err rag_conversations_expire(struct rag_engine *e, size_t *deleted /* OUT */);

/* ---- pieces, exposed for tests ---- */

/* Scans answer text for citations "[n]" / "[n, m]" across delta boundaries. */
struct rag_citations {
  int state; /* 0 outside brackets, 1 inside */
  char pending[24];
  size_t pending_len;
  int *numbers; /* every number cited, in order of first appearance */
  size_t count, cap;
};
void rag_citations_init(struct rag_citations *c);
void rag_citations_feed(struct rag_citations *c, const char *text, size_t len);
void rag_citations_dispose(struct rag_citations *c);

/* Builds the chat prompt: system rules, history, then the passages and the
 * question in one user message. messages point into storage owned by *prompt. */
struct rag_prompt {
  struct llm_message *messages;
  size_t count;
  char **owned;
  size_t owned_count;
};
ragd_err rag_prompt_build(const char *question, const struct llm_passage *passages, size_t n,
                          const struct store_message_list *history, struct rag_prompt *out);
/* The prompt that asks a model to rewrite question, asked after history
 * (oldest first; may be NULL), as a standalone question (RAGD_CONDENSE=llm):
 * a fixed system message, then one user message with the turns ("Customer:"
 * / "Assistant:", each cut to turn_bytes_max bytes at a character boundary)
 * between <conversation> tags and the question between <question> tags, the
 * prompt's tags defanged inside both like rag_prompt_build. Dispose with
 * rag_prompt_dispose. */
ragd_err rag_prompt_condense(const char *question, const struct store_message_list *history,
                             size_t turn_bytes_max, struct rag_prompt *out /* OUT */);
/* RAG_PROMPT_HARDENED: the system message adds a rule that the customer's
 * message cannot change the rules (RAGD_INJECTION_POLICY=harden). */
enum rag_prompt_flags { RAG_PROMPT_HARDENED = 1u << 0 };
ragd_err rag_prompt_build_ex(const char *question, const struct llm_passage *passages, size_t n,
                             const struct store_message_list *history, unsigned flags,
                             struct rag_prompt *out);
void rag_prompt_dispose(struct rag_prompt *p);

#endif
