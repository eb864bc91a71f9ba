/* rag_int.h - shared by the files of rag/ and nobody else: the engine's
 * retrieval half (embedder, vector index) set up and kept in step with the
 * store. */
#ifndef RAGD_RAG_INT_H
#define RAGD_RAG_INT_H

#include "rag/rag.h"

/* Creates the embedder from e->cfg, parses the fusion settings and loads the
 * vectors of the embedder's model into a new index. Called by
 * rag_engine_open after the store is open; err names a bad setting. */
ragd_err rag_retrieval_open(struct rag_engine *e, struct buf *err);
/* Releases what rag_retrieval_open made; safe on a zeroed engine. */
void rag_retrieval_close(struct rag_engine *e);

/* Creates the (empty) index when it does not exist yet; RAGD_EINVAL when it
 * exists with another dimension. Takes the write lock. */
ragd_err rag_index_ensure(struct rag_engine *e, size_t dim);

/* Replaces the document's vectors in the index by n new ones (rows of the
 * index's dimension), creating the index when its dimension was unknown.
 * Takes the write lock. */
ragd_err rag_index_put_doc(struct rag_engine *e, int64_t document_rowid,
                           const int64_t *chunk_rowids, const float *vectors, size_t n,
                           size_t dim);

/* Replaces the document's chunks in the keyword index, when it is loaded
 * (chunk_rowids as the store assigned them). Takes the write lock. */
void rag_keyword_put_doc(struct rag_engine *e, int64_t document_rowid, const int64_t *chunk_rowids,
                         const char *title, const struct text_chunk_list *chunks);

/* Applies another process's committed changes to the in-memory indexes:
 * when the store's data_version moved (looked at no more than every 200 ms),
 * chunks stored since the indexes last read the store are added (their
 * documents' older chunks replaced) and chunks of deleted documents leave
 * the keyword index (the vector index drops them when a search meets them).
 * A no-op for stores without data_version. Searches call it first. */
void rag_sync_external(struct rag_engine *e);

/* Drops chunks that the store no longer has (found missing by a search)
 * from both indexes. */
void rag_index_forget(struct rag_engine *e, const int64_t *chunk_rowids, size_t n);

/* ---- the lsa model (refit.c) ---- */

/* Loads the model stored in the store (or, once, an lsa.model file beside
 * an SQLite database, which then moves into the store). No model, or one of
 * another rank, is not an error: the first ingest or `ragd reindex` fits.
 * Called by rag_retrieval_open before the index loads. */
ragd_err rag_lsa_open(struct rag_engine *e, struct buf *err);
/* Folds in, with the current model, every chunk stored without a vector of
 * it (written by another process, or left by a refit that stopped before
 * its swap), and sets the change counter from the store's chunk count.
 * Called by rag_retrieval_open after the index loads. */
ragd_err rag_lsa_catch_up(struct rag_engine *e);
/* A model another process fitted (`ragd ingest`'s refit at its end, another
 * node's): when the stored model's key (the small blob lsa.model.key that
 * every refit writes after the model) is not this engine's, loads that
 * model and its vectors into a new index, folds in what has no vector of
 * it, and swaps both in as a refit of its own does. RAGD_OK when there is
 * nothing to pick up (no key blob: a model of an earlier version, read at
 * the next start; another rank: ignored as at start-up); RAGD_ECANCELLED
 * when this engine's own refit is running (look again later). Any thread;
 * called by rag_sync_external when the store's data_version moved. */
ragd_err rag_lsa_pick_up(struct rag_engine *e);
/* Counts chunks an ingest wrote; may start a background refit. */
void rag_lsa_note_change(struct rag_engine *e, size_t chunks);
/* Waits for a background refit in progress and starts no new one. */
void rag_lsa_wait(struct rag_engine *e);

/* The text a chunk is embedded from: its document title, heading path and
 * text on separate lines. Appends to out. */
ragd_err rag_embed_input(struct buf *out, const char *title, const char *heading_path,
                         const char *text, size_t text_len);

/* Adds tokens a generator used (an answer, or the rewrite of a follow-up)
 * to ragd_tokens_total and their price to ragd_cost_usd_total (answer.c). */
void rag_account_tokens(struct rag_engine *e, const char *provider, const char *model,
                        long prompt_tokens, long completion_tokens);

/* ---- guard policies (guard_policy.c) ---- */

/* Copies of prompt turns with personal data masked. */
struct rag_masked_turns {
  struct store_message *items; /* content owned; every other field borrowed from
                                  the list it was made from */
  size_t count;
};

/* Masks the content of every message of in (kinds: guard_pii_kind bits) into
 * *out, which borrows in's other fields (dispose it first). *masked (may be
 * NULL) is increased by the spans replaced. RAGD_ENOMEM leaves *out empty. */
ragd_err rag_guard_mask_turns(const struct store_message_list *in, unsigned kinds,
                              struct rag_masked_turns *out /* OUT */, size_t *masked /* IN/OUT */);
void rag_masked_turns_dispose(struct rag_masked_turns *t);

/* The fixed refusal for a question flagged as prompt injection, in Korean
 * when the question is mostly Hangul, else in English. Static text. */
const char *rag_guard_refusal(const char *question);
/* A generator (no create/destroy, ctx unused) that answers with
 * rag_guard_refusal(req->question) and finish_reason "content_filter"
 * before start returns; nothing leaves the process. */
extern const struct llm_ops rag_guard_refusal_ops;

/* Removes from hits, keeping the order, the chunks flagged at ingest in
 * documents not allowed to carry instructions (see rag_ingest); *dropped
 * counts them. One metadata query to the store, plus one document read per
 * hit of an excluded document. Store errors are returned with hits untouched. */
ragd_err rag_guard_drop_flagged(struct rag_engine *e, struct store_hit_list *hits,
                                size_t *dropped /* OUT */);

/* Runs guard_check_document on every chunk. *flagged counts the flagged
 * chunks; *excluded is 1 when there are some and metadata_json does not hold
 * "allow_instructions": true. *metadata_out (owned, free()) is the metadata
 * to store: metadata_json with the reserved keys set to what was found, or
 * NULL when it can be stored as sent (nothing flagged, no reserved keys).
 * RAGD_EJSON when metadata_json is not a JSON object, RAGD_ENOMEM. */
ragd_err rag_guard_document(const struct text_chunk_list *chunks, const char *metadata_json,
                            char **metadata_out /* OUT */, size_t *flagged /* OUT */,
                            int *excluded /* OUT */);

#endif
