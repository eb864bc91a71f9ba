/* answer.c - one question's pipeline: retrieve, build the prompt, generate,
 * track citations, save the turn.
 *
 * A rag_answer has two references: the caller's handle and the running
 * generation's. The generator's sink callbacks run on the upstream thread (or
 * synchronously for the extractive generator); the last of the two releases
 * frees the answer. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard/guard.h"
#include "rag/rag_int.h"
#include "text/text.h"
#include "util/clock.h"
#include "util/crypto.h"
#include "util/json.h"
#include "util/metrics.h"
#include "util/workq.h"
#include "util/log.h"

#define ANSWER_TEXT_MAX (1024 * 1024)
/* Messages read back for condensing a follow-up, when RAGD_HISTORY_TURNS asks
 * for fewer: the last exchange, even if its answer was not saved. */
#define ANSWER_CONDENSE_MESSAGES 4
#define ANSWER_SNIPPET_BYTES 240

struct rag_answer {
  struct rag_answer *prev_active, *next_active; /* engine->answers while generating */
  int shutdown; /* cancelled by rag_engine_shutdown */
  pthread_mutex_t mu;
  int refs;
  atomic_int cancelled;
  struct rag_engine *e;
  struct rag_events ev;
  char *question;
  char *llm_question; /* the question as the prompt holds it (PII masked) */
  struct rag_masked_turns masked_history; /* history as the prompt holds it */
  char conversation_id[80];
  char request_id[136];
  struct store_hit_list hits;
  struct llm_passage *passages;
  struct store_message_list convo;   /* the conversation's last messages (owned) */
  struct store_message_list history; /* the last history_turns of convo (a view) */
  char *retrieval_query;             /* what retrieval searched for */
  const char *condense_method;       /* "none" | "rules" | "llm" */
  const char *condense_fallback;     /* why the llm rewrite was not used, or NULL */
  char user_message_id[32];
  char message_id[32]; /* the answer's */
  long question_tokens; /* -1: unknown */
  struct rag_prompt prompt;
  struct buf text; /* the whole answer, saved as the assistant's turn */
  struct rag_citations cites;
  /* generation: gens[gen_index] of gens[0..gen_count) is answering */
  const struct rag_generator *gens;
  struct rag_generator no_hits; /* the extractive generator alone */
  size_t gen_count;
  size_t gen_index;
  int delivered; /* a delta reached the client: no failover after this */
  struct llm_request req;
  struct llm_sink sink;
  /* continuation after a mid-answer failure (RAGD_LLM_PARTIAL_POLICY=continue):
   * the prompt, the text sent so far as the assistant's turn, and an
   * instruction to go on from there */
  struct llm_message *cont_messages;
  char *cont_partial;
  int text_truncated; /* text lost bytes (cap or memory): it cannot be continued */
  /* the token budget: passages[0..passage_count) and history from
   * history_skip on made it into the prompt */
  size_t passage_count;
  size_t history_skip;
  char *cut_text; /* the last passage, cut to fit */
  struct rag_budget_report budget;
  int budgeted;
  int retrieval_degraded; /* hybrid retrieval ran on keywords alone */
  /* accounting */
  int64_t started_us;
  int64_t first_delta_us; /* 0 until the first delta */
  long prompt_tokens, completion_tokens;
  int has_usage;
  char finish_reason[32]; /* for finish_saved_job */
};

static void start_generation(struct rag_answer *a);
static void start_generation_job(void *arg);

/* ---- the engine's list of answers still generating ---- */

static int active_add(struct rag_answer *a) {
  struct rag_engine *e = a->e;
  int ok;
  pthread_mutex_lock(&e->answers_mu);
  ok = !e->shutting_down;
  if (ok) {
    a->next_active = e->answers;
    if (e->answers) e->answers->prev_active = a;
    e->answers = a;
    e->answer_count++;
  }
  pthread_mutex_unlock(&e->answers_mu);
  return ok;
}

static void active_remove(struct rag_answer *a) {
  struct rag_engine *e = a->e;
  pthread_mutex_lock(&e->answers_mu);
  if (a->prev_active)
    a->prev_active->next_active = a->next_active;
  else if (e->answers == a)
    e->answers = a->next_active;
  if (a->next_active) a->next_active->prev_active = a->prev_active;
  a->prev_active = a->next_active = NULL;
  e->answer_count--;
  pthread_mutex_unlock(&e->answers_mu);
}

size_t rag_engine_active_answers(struct rag_engine *e) {
  size_t n;
  pthread_mutex_lock(&e->answers_mu);
  n = e->answer_count;
  pthread_mutex_unlock(&e->answers_mu);
  return n;
}

void rag_engine_shutdown(struct rag_engine *e) {
  pthread_mutex_lock(&e->answers_mu);
  e->shutting_down = 1;
  for (struct rag_answer *a = e->answers; a; a = a->next_active) {
    a->shutdown = 1;
    atomic_store(&a->cancelled, 1);
  }
  pthread_mutex_unlock(&e->answers_mu);
  llm_wakeup();
}

/* ---- metrics ---------------------------------------------------------------- */

static struct {
  struct metric *answers, *errors, *first_token, *duration, *tokens, *cost, *cancelled,
      *degraded, *failovers;
} m;
static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;

static void metrics_create(void) {
  m.answers = metrics_counter("ragd_answers_total", "Answers finished, by provider and finish reason.",
                              "provider,finish_reason");
  m.errors = metrics_counter("ragd_answer_errors_total", "Answers that ended in an error event, by provider and code.",
                             "provider,code");
  m.first_token = metrics_histogram("ragd_answer_first_token_seconds",
                                    "Time from the question to the first answer text, by provider.",
                                    "provider", metrics_latency_buckets, metrics_latency_bucket_count);
  m.duration = metrics_histogram("ragd_answer_seconds", "Time from the question to the end of the answer, by provider.",
                                 "provider", metrics_latency_buckets, metrics_latency_bucket_count);
  m.tokens = metrics_counter("ragd_tokens_total", "Tokens by provider, model and direction (in = prompt, out = completion).",
                             "provider,model,direction");
  m.cost = metrics_counter("ragd_cost_usd_total", "Estimated cost in USD from the price table (RAGD_PRICES), by provider and model.",
                           "provider,model");
  m.cancelled = metrics_counter("ragd_answer_cancellations_total", "Answers cancelled because the client went away.", NULL);
  m.degraded = metrics_counter("ragd_degraded_answers_total", "Answers given by the extractive last resort after a failure, by reason.",
                               "reason");
  m.failovers = metrics_counter("ragd_failovers_total", "Hand-overs to the next generator of the chain, by reason.",
                                "reason");
}

/* Records the end of an answer by the current generator. */
static void account(struct rag_answer *a, ragd_err rc, const char *finish_reason, const char *code) {
  const struct llm *gen = &a->gens[a->gen_index].llm;
  const char *provider = gen->ops->name;
  const char *model = gen->model ? gen->model : provider;
  double elapsed = (double)(clock_mono_us() - a->started_us) / 1e6;
  pthread_once(&metrics_once, metrics_create);
  metrics_observe(m.duration, elapsed, provider);
  if (a->first_delta_us)
    metrics_observe(m.first_token, (double)(a->first_delta_us - a->started_us) / 1e6, provider);
  if (rc == RAGD_OK)
    metrics_add(m.answers, 1, provider, finish_reason ? finish_reason : "stop");
  else if (rc == RAGD_ECANCELLED)
    metrics_add(m.cancelled, 1);
  else
    metrics_add(m.errors, 1, provider, code ? code : "internal_error");
  if (a->has_usage)
    rag_account_tokens(a->e, provider, model, a->prompt_tokens, a->completion_tokens);
}

void rag_account_tokens(struct rag_engine *e, const char *provider, const char *model,
                        long prompt_tokens, long completion_tokens) {
  struct rag_price price;
  pthread_once(&metrics_once, metrics_create);
  metrics_add(m.tokens, (double)prompt_tokens, provider, model, "in");
  metrics_add(m.tokens, (double)completion_tokens, provider, model, "out");
  if (rag_price_lookup(e->prices, e->price_count, model, &price))
    metrics_add(m.cost,
                ((double)prompt_tokens * price.input_per_million +
                 (double)completion_tokens * price.output_per_million) / 1e6,
                provider, model);
}

static void answer_unref(struct rag_answer *a) {
  int last;
  pthread_mutex_lock(&a->mu);
  last = --a->refs == 0;
  pthread_mutex_unlock(&a->mu);
  if (!last) return;
  rag_prompt_dispose(&a->prompt);
  free(a->cont_messages);
  free(a->cont_partial);
  free(a->cut_text);
  store_message_list_dispose(&a->convo);
  free(a->retrieval_query);
  store_hit_list_dispose(&a->hits);
  free(a->passages);
  free(a->question);
  free(a->llm_question);
  rag_masked_turns_dispose(&a->masked_history);
  buf_dispose(&a->text);
  rag_citations_dispose(&a->cites);
  pthread_mutex_destroy(&a->mu);
  free(a);
}

static void sink_delta(void *ctx, const char *text, size_t len) {
  struct rag_answer *a = ctx;
  a->delivered = 1;
  if (!a->first_delta_us) a->first_delta_us = clock_mono_us();
  rag_citations_feed(&a->cites, text, len);
  /* The saved copy is capped; the client still gets every byte. */
  if (a->text_truncated || a->text.len + len > a->text.max || buf_append(&a->text, text, len))
    a->text_truncated = 1;
  a->ev.on_delta(a->ev.ctx, text, len);
}

static void sink_usage(void *ctx, long prompt_tokens, long completion_tokens) {
  struct rag_answer *a = ctx;
  a->prompt_tokens = prompt_tokens;
  a->completion_tokens = completion_tokens;
  a->has_usage = 1;
  if (a->ev.on_usage) a->ev.on_usage(a->ev.ctx, prompt_tokens, completion_tokens);
}

static int sink_cancelled(void *ctx) {
  struct rag_answer *a = ctx;
  return atomic_load(&a->cancelled);
}

/* Moves to the next generator after a failure before the first token.
 * Returns 0 when there is none (or the client is gone). */
static int is_extractive(const struct rag_generator *g) {
  return strcmp(g->llm.ops->name, "extractive") == 0;
}

static const char continue_instruction[] =
    "Your previous answer was cut off. Continue it exactly where it stopped: do not repeat "
    "any of the text already written and do not start over; begin with the next characters "
    "of the answer. Keep following the rules and citing passages as [n].";

/* Points a->req at the prompt plus the text sent so far, so that the next
 * generator continues the answer instead of starting it again. */
static ragd_err build_continuation(struct rag_answer *a) {
  size_t n = a->prompt.count;
  struct llm_message *msgs;
  char *partial;
  if (!a->text.data || a->text.len == 0 || a->text_truncated) return RAGD_EINVAL;
  msgs = calloc(n + 2, sizeof *msgs);
  partial = strdup(a->text.data);
  if (!msgs || !partial) {
    free(msgs);
    free(partial);
    return RAGD_ENOMEM;
  }
  memcpy(msgs, a->prompt.messages, n * sizeof *msgs);
  msgs[n].role = "assistant";
  msgs[n].content = partial;
  msgs[n + 1].role = "user";
  msgs[n + 1].content = continue_instruction;
  free(a->cont_messages);
  free(a->cont_partial);
  a->cont_messages = msgs;
  a->cont_partial = partial;
  a->req.messages = msgs;
  a->req.message_count = n + 2;
  return RAGD_OK;
}

static int fail_over(struct rag_answer *a, const char *code, const char *message) {
  const struct rag_generator *next;
  size_t next_index = a->gen_index + 1;
  if (atomic_load(&a->cancelled)) return 0;
  if (a->delivered) {
    /* Text already reached the client: only a model can go on from it, and
     * only when the operator chose to (the default ends with an error). */
    if (strcmp(a->e->cfg->llm_partial_policy, "continue") != 0) return 0;
    while (next_index < a->gen_count && is_extractive(&a->gens[next_index])) next_index++;
    if (next_index >= a->gen_count || build_continuation(a) != RAGD_OK) return 0;
  }
  if (next_index >= a->gen_count) return 0;
  a->gen_index = next_index;
  next = &a->gens[a->gen_index];
  log_warn("generator %s failed (%s: %s); %s takes over", a->gens[a->gen_index - 1].name, code,
           message ? message : "", next->name);
  pthread_once(&metrics_once, metrics_create);
  metrics_add(m.failovers, 1, code);
  if (strcmp(next->llm.ops->name, "extractive") == 0) metrics_add(m.degraded, 1, code);
  if (a->ev.on_notice)
    a->ev.on_notice(a->ev.ctx, next->llm.ops->name, next->llm.model ? next->llm.model : next->llm.ops->name,
                    strcmp(next->llm.ops->name, "extractive") == 0, code, message ? message : "");
  return 1;
}

/* ---- conversation memory ------------------------------------------------------ */

static ragd_err new_message_id(char out[32]) {
  memcpy(out, "msg_", 4);
  return crypto_random_hex(out + 4, 12) == 0 ? RAGD_OK : RAGD_EIO;
}

/* The sources the prompt held, as the client saw them (a snippet of each). */
static char *sources_json(const struct rag_answer *a) {
  json_t *arr = json_array();
  struct buf out;
  char *text = NULL;
  buf_init(&out, 0);
  for (size_t i = 0; arr && i < a->passage_count; i++) {
    const struct store_hit *h = &a->hits.items[i];
    size_t len = strlen(h->text);
    json_t *o = json_object();
    json_object_set_new(o, "index", json_integer((json_int_t)i + 1));
    json_object_set_new(o, "document_id", json_string(h->document_id));
    json_object_set_new(o, "chunk_id", json_string(h->chunk_id));
    json_object_set_new(o, "title", json_string(h->title));
    json_object_set_new(o, "url", json_string(h->url));
    json_object_set_new(o, "heading", json_string(h->heading_path ? h->heading_path : ""));
    json_object_set_new(o, "snippet",
                        json_stringn(h->text, text_utf8_prefix(h->text, len, ANSWER_SNIPPET_BYTES)));
    json_object_set_new(o, "score", json_real(h->score));
    json_array_append_new(arr, o);
  }
  if (arr && json_append(&out, arr) == RAGD_OK) text = buf_take(&out, NULL);
  json_decref(arr);
  buf_dispose(&out);
  return text;
}

static char *int_array_json(const int *v, size_t n) {
  struct buf out;
  buf_init(&out, 0);
  if (buf_append_char(&out, '[')) goto fail;
  for (size_t i = 0; i < n; i++)
    if (buf_appendf(&out, "%s%d", i ? "," : "", v[i])) goto fail;
  if (buf_append_char(&out, ']')) goto fail;
  return buf_take(&out, NULL);
fail:
  buf_dispose(&out);
  return NULL;
}

/* Stores the finished answer as the assistant's turn, with its sources,
 * citations, token counts and the generator that gave it. */
static ragd_err save_answer(struct rag_answer *a, const char *finish_reason, const int *cited,
                            size_t cited_count) {
  const struct llm *gen = &a->gens[a->gen_index].llm;
  struct store_message_in msg;
  char *sources = sources_json(a);
  char *cites = int_array_json(cited, cited_count);
  size_t own = 0;
  ragd_err rc = RAGD_ENOMEM;
  if (!sources || !cites) goto out;
  memset(&msg, 0, sizeof msg);
  msg.conversation_id = a->conversation_id;
  msg.message_id = a->message_id;
  msg.role = "assistant";
  msg.content = a->text.data;
  msg.sources_json = sources;
  msg.cited_json = cites;
  msg.provider = gen->ops->name;
  msg.model = gen->model ? gen->model : gen->ops->name;
  msg.finish_reason = finish_reason ? finish_reason : "stop";
  msg.tokens = a->has_usage ? a->completion_tokens : -1;
  msg.prompt_tokens = a->has_usage ? a->prompt_tokens : -1;
  if (msg.tokens < 0 && a->e->budget.bpe && !a->text_truncated &&
      text_bpe_count(a->e->budget.bpe, a->text.data, a->text.len, &own) == RAGD_OK)
    msg.tokens = (long)own;
  /* a store without the conversation ops keeps the text alone */
  rc = a->e->store.ops->put_message
           ? a->e->store.ops->put_message(a->e->store.ctx, &msg)
           : a->e->store.ops->append_message(a->e->store.ctx, msg.conversation_id, msg.role, msg.content);
out:
  if (rc) log_warn("conversation %s: could not save the answer: %s", a->conversation_id,
                   ragd_strerror(rc));
  free(sources);
  free(cites);
  return rc;
}

/* Reads the conversation's last messages: the prompt's history is the last
 * RAGD_HISTORY_TURNS of them, condensing may look further back. */
static ragd_err load_conversation(struct rag_answer *a) {
  struct rag_engine *e = a->e;
  size_t turns = e->cfg->history_turns > 0 ? (size_t)e->cfg->history_turns : 0;
  size_t want = turns;
  ragd_err rc;
  if (strcmp(e->cfg->condense, "off") != 0 && want < ANSWER_CONDENSE_MESSAGES)
    want = ANSWER_CONDENSE_MESSAGES;
  if (want == 0) return RAGD_OK;
  rc = e->store.ops->list_messages(e->store.ctx, a->conversation_id, want, &a->convo);
  if (rc) return rc;
  a->history.items = a->convo.items;
  a->history.count = a->convo.count;
  if (a->history.count > turns) {
    a->history.items += a->history.count - turns;
    a->history.count = turns;
  }
  return RAGD_OK;
}

/* The query retrieval runs: the question, or with RAGD_CONDENSE the question
 * made standalone from the conversation. */
static ragd_err make_retrieval_query(struct rag_answer *a, const char *question) {
  struct rag_condensed c;
  ragd_err rc = rag_condense(a->e, question, &a->convo, a->request_id[0] ? a->request_id : NULL, &c);
  a->retrieval_query = c.query;
  a->condense_method = c.method;
  a->condense_fallback = c.fallback;
  return rc;
}

/* Stores the question as the user's turn, with the query it was searched as. */
static ragd_err save_question(struct rag_answer *a) {
  struct store_message_in msg;
  memset(&msg, 0, sizeof msg);
  msg.conversation_id = a->conversation_id;
  msg.message_id = a->user_message_id;
  msg.role = "user";
  msg.content = a->question;
  msg.retrieval_query = a->retrieval_query;
  msg.tokens = a->question_tokens;
  msg.prompt_tokens = -1;
  if (!a->e->store.ops->put_message)
    return a->e->store.ops->append_message(a->e->store.ctx, msg.conversation_id, msg.role, msg.content);
  return a->e->store.ops->put_message(a->e->store.ctx, &msg);
}

/* The end of a successful answer: saves it as the assistant's turn, then the
 * done event (its citations, checked against the passages). */
static void finish_ok(struct rag_answer *a, const char *finish_reason) {
  int *cited = calloc(a->cites.count + 1, sizeof *cited);
  int *invalid = calloc(a->cites.count + 1, sizeof *invalid);
  size_t nc = 0, ni = 0;
  for (size_t i = 0; cited && invalid && i < a->cites.count; i++) {
    int n = a->cites.numbers[i];
    if (n >= 1 && (size_t)n <= a->passage_count)
      cited[nc++] = n;
    else
      invalid[ni++] = n;
  }
  /* ascending order for the report */
  for (size_t i = 1; i < nc; i++)
    for (size_t j = i; j > 0 && cited[j - 1] > cited[j]; j--) {
      int t = cited[j];
      cited[j] = cited[j - 1];
      cited[j - 1] = t;
    }
  /* the id is the stored message's only when the store keeps ids */
  if (a->text.data && save_answer(a, finish_reason, cited, nc) == RAGD_OK &&
      a->e->store.ops->put_message && a->ev.on_saved)
    a->ev.on_saved(a->ev.ctx, a->message_id);
  a->ev.on_done(a->ev.ctx, finish_reason ? finish_reason : "stop", cited, nc, invalid, ni);
  free(cited);
  free(invalid);
}

/* finish_ok on the job queue: saving takes the store's lock, which retrieval
 * holds for milliseconds at a time, and the upstream thread that finished the
 * answer relays every other stream's tokens meanwhile. */
static void finish_saved_job(void *arg) {
  struct rag_answer *a = arg;
  finish_ok(a, a->finish_reason);
  active_remove(a);
  answer_unref(a);
}

static void sink_finish(void *ctx, ragd_err rc, const char *finish_reason, const char *error_code,
                        const char *error_message) {
  struct rag_answer *a = ctx;
  if (rc != RAGD_OK && rc != RAGD_ECANCELLED &&
      fail_over(a, error_code ? error_code : "upstream_unavailable", error_message)) {
    /* the generation's reference carries over to the next one */
    if (!a->e->jobs || workq_submit(a->e->jobs, start_generation_job, a) != RAGD_OK)
      start_generation(a);
    return;
  }
  if (rc == RAGD_ECANCELLED && a->shutdown) {
    /* The client is still there: tell it why the answer stops. */
    rc = RAGD_EIO;
    error_code = "shutting_down";
    error_message = "the server is shutting down; ask again in a moment";
  }
  account(a, rc, finish_reason, error_code);
  if (rc == RAGD_OK && !a->has_usage && a->budgeted && a->ev.on_usage) {
    /* the provider reported no usage: ragd's own counts, exact for OpenAI
     * encodings */
    size_t completion = 0;
    if (a->text.data && !a->text_truncated)
      text_bpe_count(a->e->budget.bpe, a->text.data, a->text.len, &completion);
    sink_usage(a, (long)a->budget.prompt_tokens, (long)completion);
  }
  if (rc == RAGD_OK) {
    snprintf(a->finish_reason, sizeof a->finish_reason, "%s", finish_reason ? finish_reason : "stop");
    /* still active until done is sent: a graceful stop waits for it */
    if (a->text.data && a->e->jobs && workq_submit(a->e->jobs, finish_saved_job, a) == RAGD_OK)
      return; /* the job drops the generation's reference */
    active_remove(a);
    finish_ok(a, a->finish_reason);
  } else {
    active_remove(a);
    a->ev.on_error(a->ev.ctx, error_code ? error_code : "internal_error",
                   error_message ? error_message : ragd_strerror(rc));
  }
  answer_unref(a);
}

/* ---- guard policies ------------------------------------------------------------ */

/* Retrieval for the answer, without the chunks flagged at ingest: when some
 * were dropped from a full page of hits, asks once more for enough to make
 * up for them. */
static ragd_err retrieve_passages(struct rag_answer *a, const struct rag_question *q) {
  struct rag_search_opts so = {a->retrieval_query, q->top_k, q->mode, q->filters_json,
                               &a->retrieval_degraded};
  size_t dropped = 0;
  ragd_err rc = rag_search_ex(a->e, &so, &a->hits);
  if (rc) return rc;
  rc = rag_guard_drop_flagged(a->e, &a->hits, &dropped);
  if (rc || dropped == 0 || a->hits.count + dropped < q->top_k) return rc;
  store_hit_list_dispose(&a->hits);
  so.k = q->top_k + 2 * dropped;
  rc = rag_search_ex(a->e, &so, &a->hits);
  if (!rc) rc = rag_guard_drop_flagged(a->e, &a->hits, &dropped);
  if (!rc && a->hits.count > q->top_k) {
    /* hand back the surplus */
    struct store_hit_list surplus = {NULL, a->hits.count - q->top_k};
    surplus.items = malloc(surplus.count * sizeof *surplus.items);
    if (!surplus.items) return RAGD_ENOMEM;
    memcpy(surplus.items, a->hits.items + q->top_k, surplus.count * sizeof *surplus.items);
    a->hits.count = q->top_k;
    store_hit_list_dispose(&surplus);
  }
  return rc;
}

/* Whether a generator that may answer sends the prompt out of the process
 * (every one but the extractive generator and the refusal). */
static int prompt_leaves(const struct rag_answer *a) {
  if (a->gens == &a->no_hits) return 0;
  for (size_t i = 0; i < a->gen_count; i++)
    if (!is_extractive(&a->gens[i])) return 1;
  return 0;
}

/* RAGD_PII_MASK_LLM: the question and history turns as an external model
 * will see them. *masked counts the spans replaced. */
static ragd_err mask_prompt_text(struct rag_answer *a, size_t *masked) {
  size_t count = 0;
  ragd_err rc = guard_mask_pii(a->question, strlen(a->question), GUARD_PII_ALL, &a->llm_question,
                               NULL, &count);
  if (rc) return rc;
  *masked = count;
  rc = rag_guard_mask_turns(&a->history, GUARD_PII_ALL, &a->masked_history, masked);
  if (rc) return rc;
  a->history.items = a->masked_history.items;
  a->history.count = a->masked_history.count;
  return RAGD_OK;
}

static int conversation_id_ok(const char *id) {
  size_t n = strlen(id);
  if (n == 0 || n > 64) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = id[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '_'))
      return 0;
  }
  return 1;
}

ragd_err rag_answer_start(struct rag_engine *e, const struct rag_question *q,
                          const struct rag_events *ev, struct rag_answer **out,
                          const char **code) {
  struct rag_answer *a = calloc(1, sizeof *a);
  const char *policy = e->cfg->injection_policy;
  struct guard_injection injection;
  unsigned prompt_flags = 0;
  size_t pii_masked = 0;
  int refuse = 0;
  ragd_err rc;
  *code = "internal_error";
  memset(&injection, 0, sizeof injection);
  if (!a) return RAGD_ENOMEM;
  pthread_mutex_init(&a->mu, NULL);
  a->refs = 1;
  a->e = e;
  a->ev = *ev;
  buf_init(&a->text, ANSWER_TEXT_MAX);
  rag_citations_init(&a->cites);
  if (q->request_id) snprintf(a->request_id, sizeof a->request_id, "%s", q->request_id);
  a->question = strdup(q->message);
  if (!a->question) {
    rc = RAGD_ENOMEM;
    goto fail;
  }
  if (q->conversation_id && q->conversation_id[0]) {
    if (!conversation_id_ok(q->conversation_id)) {
      *code = "invalid_field";
      rc = RAGD_EINVAL;
      goto fail;
    }
    snprintf(a->conversation_id, sizeof a->conversation_id, "%s", q->conversation_id);
    rc = load_conversation(a);
    if (rc) {
      *code = "store_unavailable";
      goto fail;
    }
  } else {
    memcpy(a->conversation_id, "conv_", 5);
    if (crypto_random_hex(a->conversation_id + 5, 16) != 0) {
      rc = RAGD_EIO;
      goto fail;
    }
  }
  if (new_message_id(a->user_message_id) || new_message_id(a->message_id)) {
    rc = RAGD_EIO;
    goto fail;
  }
  a->question_tokens = -1;
  {
    size_t n = 0;
    if (e->budget.bpe && text_bpe_count(e->budget.bpe, q->message, strlen(q->message), &n) == RAGD_OK)
      a->question_tokens = (long)n;
  }
  if (strcmp(policy, "off") != 0) {
    /* the HTTP layer hands over valid UTF-8; anything else is not flagged */
    rc = guard_check_injection(q->message, strlen(q->message), &injection);
    if (rc && rc != RAGD_EUTF8) goto fail;
    if (injection.flagged) {
      refuse = strcmp(policy, "refuse") == 0;
      if (!refuse) prompt_flags |= RAG_PROMPT_HARDENED;
      log_warn("request %s: message flagged as prompt injection (rule %s, score %.2f); %s",
               a->request_id[0] ? a->request_id : "-", injection.rule ? injection.rule : "-",
               injection.score, refuse ? "refused" : "prompt hardened");
    }
  }
  rc = make_retrieval_query(a, q->message);
  if (rc) goto fail;
  /* A refused question retrieves nothing: no passages, no citations. */
  rc = refuse ? RAGD_OK : retrieve_passages(a, q);
  if (rc == RAGD_EINVAL) {
    *code = "invalid_field";
    goto fail;
  }
  if (rc) {
    *code = "store_unavailable";
    goto fail;
  }
  a->passages = calloc(a->hits.count + 1, sizeof *a->passages);
  if (!a->passages) {
    rc = RAGD_ENOMEM;
    goto fail;
  }
  for (size_t i = 0; i < a->hits.count; i++) {
    a->passages[i].index = (int)i + 1;
    a->passages[i].title = a->hits.items[i].title;
    a->passages[i].url = a->hits.items[i].url;
    a->passages[i].heading_path = a->hits.items[i].heading_path;
    a->passages[i].text = a->hits.items[i].text;
    a->passages[i].score = a->hits.items[i].score;
  }
  /* Nothing retrieved: the extractive generator says so honestly instead of
   * letting a model answer from nowhere. */
  if (refuse) {
    a->no_hits.name = "GUARD";
    a->no_hits.llm.ops = &rag_guard_refusal_ops;
    a->gens = &a->no_hits;
    a->gen_count = 1;
  } else if (a->hits.count == 0 || e->gen_count == 0) {
    a->no_hits.name = "EXTRACTIVE";
    a->no_hits.llm = e->extractive;
    a->gens = &a->no_hits;
    a->gen_count = 1;
  } else {
    a->gens = e->gens;
    a->gen_count = e->gen_count;
  }
  a->passage_count = a->hits.count;
  /* Only a generator of the chain sends the prompt out; the extractive one
   * and the refusal read a->question, the customer's own text. The token
   * budget counts the prompt as sent, masked. */
  if (prompt_leaves(a) && strcmp(e->cfg->pii_mask_llm, "on") == 0) {
    rc = mask_prompt_text(a, &pii_masked);
    if (rc) goto fail;
  }
  if (a->gens != &a->no_hits && e->budget.bpe) {
    rc = rag_budget_fit(&e->budget, a->llm_question ? a->llm_question : q->message, prompt_flags,
                        a->passages, &a->passage_count, &a->history, &a->history_skip,
                        &a->cut_text, &a->prompt, &a->budget);
    if (rc == RAGD_ETOOBIG) {
      *code = "question_too_long";
      goto fail;
    }
    if (rc) goto fail;
    a->budgeted = 1;
  } else {
    rc = rag_prompt_build_ex(a->llm_question ? a->llm_question : q->message, a->passages,
                             a->hits.count, &a->history, prompt_flags, &a->prompt);
    if (rc) goto fail;
  }
  rc = save_question(a);
  if (rc) {
    *code = "store_unavailable";
    goto fail;
  }
  if (!active_add(a)) {
    *code = "overloaded";
    rc = RAGD_ECANCELLED;
    goto fail;
  }
  if (a->budgeted && ev->on_budget) ev->on_budget(ev->ctx, &a->budget);
  if (ev->on_query)
    ev->on_query(ev->ctx, a->retrieval_query, a->condense_method, a->condense_fallback);
  if (ev->on_message_id) ev->on_message_id(ev->ctx, a->message_id);
  if (ev->on_guard && strcmp(policy, "off") != 0) ev->on_guard(ev->ctx, &injection, pii_masked);
  {
    const struct llm *first = &a->gens[0].llm;
    if (ev->on_meta)
      ev->on_meta(ev->ctx, a->conversation_id, first->ops->name,
                  first->model ? first->model : first->ops->name);
    if (a->retrieval_degraded) {
      /* The answer goes on from keyword search alone; say so. */
      pthread_once(&metrics_once, metrics_create);
      metrics_add(m.degraded, 1, "embedder_unavailable");
      if (ev->on_notice)
        ev->on_notice(ev->ctx, first->ops->name, first->model ? first->model : first->ops->name, 1,
                      "embedder_unavailable",
                      "the embeddings service is unavailable: passages were found by keyword "
                      "search alone");
    }
  }
  if (ev->on_sources) {
    /* only the passages the prompt holds are sources */
    struct store_hit_list shown = {a->hits.items, a->passage_count};
    ev->on_sources(ev->ctx, &shown);
  }

  memset(&a->req, 0, sizeof a->req);
  a->req.messages = a->prompt.messages;
  a->req.message_count = a->prompt.count;
  /* The extractive generator answers the question it is given: the
   * standalone one when a follow-up was condensed ("and the fee?" alone
   * names no subject). The refusal answers the customer's own words. */
  a->req.question = refuse ? a->question : a->retrieval_query;
  if (!refuse && strcmp(a->condense_method, "rules") == 0)
    a->req.question_context_len = strlen(a->retrieval_query) - strlen(a->question);
  a->req.passages = a->passages;
  a->req.passage_count = a->passage_count;
  a->req.max_tokens = e->cfg->llm_max_tokens;
  a->req.temperature = -1;
  a->req.request_id = a->request_id[0] ? a->request_id : NULL;
  a->sink.ctx = a;
  a->sink.on_delta = sink_delta;
  a->sink.on_usage = sink_usage;
  a->sink.is_cancelled = sink_cancelled;
  a->sink.on_finish = sink_finish;
  a->refs = 2; /* the caller's handle and the generation */
  a->started_us = clock_mono_us();
  *out = a;
  start_generation(a);
  return RAGD_OK;
fail:
  answer_unref(a);
  return rc;
}

/* Starts gens[gen_index], moving down the chain while a start fails at once.
 * After a successful start a may already be freed: touch nothing. */
static void start_generation_job(void *arg) { start_generation(arg); }

static void start_generation(struct rag_answer *a) {
  for (;;) {
    const struct llm *gen = &a->gens[a->gen_index].llm;
    ragd_err rc = gen->ops->start(gen->ctx, &a->req, &a->sink);
    if (rc == RAGD_OK) return;
    if (!fail_over(a, "upstream_unavailable", ragd_strerror(rc))) {
      account(a, rc, NULL, "upstream_unavailable");
      active_remove(a);
      a->ev.on_error(a->ev.ctx, "upstream_unavailable", ragd_strerror(rc));
      answer_unref(a);
      return;
    }
  }
}

void rag_answer_cancel(struct rag_answer *a) {
  if (!a) return;
  atomic_store(&a->cancelled, 1);
  llm_wakeup();
}

void rag_answer_release(struct rag_answer *a) {
  if (a) answer_unref(a);
}
