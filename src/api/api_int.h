/* api_int.h - the handlers behind api_routes and what the chat route family
 * shares; private to api/. Each handler runs on a worker thread and replies
 * exactly once (see http.h). */
#ifndef RAGD_API_INT_H
#define RAGD_API_INT_H

#include <pthread.h>
#include <stdint.h>

#include "api/api.h"

void api_chat_handle(struct http_request *r, void *app);
void api_chat_stream_get(struct http_request *r, void *app);
void api_chat_completions(struct http_request *r, void *app);
void api_search_handle(struct http_request *r, void *app);
void api_documents_post(struct http_request *r, void *app);
void api_documents_list(struct http_request *r, void *app);
void api_documents_get(struct http_request *r, void *app);
void api_documents_delete(struct http_request *r, void *app);
void api_healthz_handle(struct http_request *r, void *app);
void api_readyz_handle(struct http_request *r, void *app);
void api_metrics_handle(struct http_request *r, void *app);
void api_web_handle(struct http_request *r, void *app);
void api_conversations_get(struct http_request *r, void *app);
void api_conversations_delete(struct http_request *r, void *app);
void api_conversations_post(struct http_request *r, void *app);
void api_keys_post(struct http_request *r, void *app);
void api_keys_list(struct http_request *r, void *app);
void api_keys_delete(struct http_request *r, void *app);

/* The chat page's files, generated from web/ at build time. */
struct api_web_asset {
  const char *path; /* "/web/index.html" */
  const char *content_type;
  const unsigned char *data;
  size_t len;
};
extern const struct api_web_asset api_web_assets[];
extern const size_t api_web_asset_count;

/* ---- one answer, encoded by a protocol (chat.c) ---- */

struct chat;

/* A wire format for answers: the native event stream, OpenAI Chat
 * Completions, the Vercel AI SDK UI message stream. The stream encoders run
 * on the thread that delivers the answer's events, one at a time, and emit
 * through api_chat_emit; reply builds the non-streaming response from the
 * collected answer. */
struct chat_proto {
  const char *name;
  const char *content_type;
  const char *const *headers; /* extra response headers, name/value, NULL-terminated */
  void (*on_sources)(struct chat *c); /* meta and sources are known (c->sources) */
  void (*on_delta)(struct chat *c, const char *text, size_t len);
  void (*on_usage)(struct chat *c); /* c->prompt_tokens, c->completion_tokens */
  void (*on_done)(struct chat *c);  /* c->finish_reason, c->citations */
  void (*on_error)(struct chat *c, const char *code, const char *message);
  /* Optional: the failover chain switched generators (see rag_events). */
  void (*on_notice)(struct chat *c, const char *provider, const char *model, int degraded,
                    const char *code, const char *message);
  void (*reply)(struct http_request *r, struct chat *c);
};

extern const struct chat_proto api_proto_native;
extern const struct chat_proto api_proto_openai;
extern const struct chat_proto api_proto_vercel;

/* What a request asks, whatever its format. Strings are borrowed for the
 * call to api_chat_run. */
struct chat_input {
  const char *message;
  long top_k;
  int stream;
  const char *conversation_id; /* NULL: new conversation */
  const struct llm_message *history; /* earlier turns, oldest first: seeded into a
                                        new conversation */
  size_t history_count;
  int include_usage; /* openai: stream_options.include_usage */
  int mode;                 /* enum rag_search_mode; zero: hybrid */
  const char *filters_json; /* metadata filters as JSON text; NULL: none */
};

struct chat {
  pthread_mutex_t mu;
  int refs;
  struct http_request *req; /* until the handler returns; not streaming: until the reply */
  struct http_notes *notes; /* the request's access-log line: provider, model, tokens */
  struct api_app *app;
  const struct chat_proto *proto;
  int streaming;
  int include_usage;
  char response_id[40];
  int64_t created_s;
  unsigned seq;
  struct resume_entry *entry; /* streaming: where events go */
  struct rag_answer *answer;
  int abandoned;
  /* the answer so far */
  char *conversation_id;
  char *model;
  json_t *sources;
  struct buf text;
  long prompt_tokens, completion_tokens;
  int has_usage;
  long ragd_prompt_tokens; /* ragd's count of the prompt (has_budget) */
  int has_budget;
  int degraded; /* the extractive last resort answered after a failure */
  char *degraded_reason; /* why, when known before meta (e.g. embedder_unavailable) */
  int sources_sent;      /* meta and sources have gone out */
  const char *finish_reason; /* static */
  json_t *citations;         /* {"cited_sources":[...],"invalid_citations":[...]} */
  char *error_code;
  char *error_message;
  int finished;
  int reply_later; /* not streaming: chat_finish sends the reply (the request is deferred) */
  int timed_out;   /* RAGD_REQUEST_TIMEOUT_S passed before the answer ended (guarded by mu) */
  /* protocol state */
  int text_started;
  /* conversation memory: what retrieval searched for, the stored answer's id */
  char *retrieval_query;
  const char *retrieval_query_source;   /* static: "question" | "rules" | "llm" */
  const char *retrieval_query_fallback; /* static: why the llm rewrite was not used, or NULL */
  char *message_id; /* NULL until the answer is stored */
  char answer_id[32]; /* the id the answer will be stored under (on_message_id); "" before */
  /* the guard's verdict on the message (rag_events.on_guard) */
  int has_guard;
  int guard_injection;
  const char *guard_rule; /* static; NULL when no rule matched */
  double guard_score;
  size_t guard_pii_masked;
};

/* Answers one question in proto's format: validates nothing more, starts the
 * pipeline and replies (a stream, or one JSON object when !in->stream). */
void api_chat_run(struct http_request *r, struct api_app *app, const struct chat_proto *proto,
                  const struct chat_input *in);
/* Emits one SSE event whose data is obj (taken), with the next id; event may
 * be NULL (no event: line). */
void api_chat_emit(struct chat *c, const char *event, json_t *obj);
/* Emits "data: TEXT" (e.g. "[DONE]") with the next id. */
void api_chat_emit_text(struct chat *c, const char *text);
/* Serves a Last-Event-ID reconnection ("<response_id>.<seq>"). */
void api_chat_resume(struct http_request *r, struct api_app *app, const char *last_event_id);
/* The Last-Event-ID of a request (header, else ?last_event_id=), or NULL. */
const char *api_chat_last_event_id(struct http_request *r);
/* The usage object {"prompt_tokens","completion_tokens","total_tokens"}. */
json_t *api_chat_usage_json(const struct chat *c);

/* The text of an OpenAI or UI message's content: a string, or an array of
 * parts whose {"type":"text","text"} entries are joined by newlines (then
 * *owned holds it: free it). NULL when there is no usable text. */
const char *api_message_text(json_t *content, char **owned /* OUT */);
/* Answers a Vercel AI SDK useChat body ({"id","messages":[{"role","parts"}],
 * "trigger","messageId"}) in the UI message stream format: the last user
 * message is the question, earlier turns are history. */
void api_vercel_chat(struct http_request *r, struct api_app *app, json_t *body);

/* ---- held answers for resume (resume.c) ---- */

struct resume_entry;
/* Holds a new answer; the caller (the producer) holds one reference, given
 * back by api_resume_finish. NULL on allocation failure. */
struct resume_entry *api_resume_open(const struct ragd_config *cfg, const char *response_id,
                                     const char *content_type, const char *const *headers);
/* on_abandon(arg) runs at most once, with no lock held, when the last
 * attached stream leaves while the answer is live. */
void api_resume_set_abandon(struct resume_entry *e, void (*on_abandon)(void *arg), void *arg);
/* Holds one encoded event and writes it to every attached stream. Returns
 * the number of streams still attached. Producer's thread. */
int api_resume_append(const struct ragd_config *cfg, struct resume_entry *e, const char *p,
                      size_t n);
/* The answer is complete: attached streams end. Returns 1 when on_abandon
 * was still set (it will never run). Drops the producer's reference. */
int api_resume_finish(struct resume_entry *e);
/* Writes the held events after after_seq (-1: all) to s and, while the answer
 * is live, keeps s attached for the rest. On RAGD_OK the entry owns s. On an
 * error *why says why and the caller still owns s (write an error, end it). */
ragd_err api_resume_attach(struct resume_entry *e, struct http_stream *s, long after_seq,
                           const struct ragd_config *cfg, const char **why /* OUT */);
/* A held answer by response id (a new reference), or NULL: unknown, expired. */
struct resume_entry *api_resume_find(const struct ragd_config *cfg, const char *response_id);
void api_resume_release(struct resume_entry *e);
const char *api_resume_content_type(const struct resume_entry *e);
const char *const *api_resume_headers(const struct resume_entry *e);

#endif
