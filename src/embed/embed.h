/* embed.h - the embedder interface: turns passages and questions into
 * L2-normalized float vectors for the vector index.
 *
 * An embedder is an ops table plus context, made by name from configuration
 * (embed_create):
 * - "hash" (the offline default): signed feature hashing of normalized word
 *   unigrams, word bigrams and character n-grams (Hangul syllables included)
 *   into a fixed dimension. Lexical, not semantic: it finds "tracking" for
 *   "track" and "환불은" for "환불", never "parcel" for "package".
 * - "lsa": latent semantic analysis learned from the knowledge base itself
 *   (lsa.c): a truncated SVD of the term-by-chunk matrix over the BM25 terms,
 *   fitted by embed_lsa_fit; semantic without a model download. Its model
 *   key names the fitted model ("lsa:v1:<rank>:<id>"), so vectors of an
 *   older fit are never compared with a newer one's.
 * - "openai": POST {base}/embeddings of any OpenAI-compatible server, batched,
 *   with retries on 429/5xx (Retry-After honoured). It blocks the calling
 *   thread (a worker or the command line) until the vectors arrive.
 *
 * Every vector an embedder makes is tagged with its model key ("hash:v1",
 * "openai:text-embedding-3-small") and dimension; the store keeps both, and
 * vectors of another key or dimension are never compared with these. */
#ifndef RAGD_EMBED_H
#define RAGD_EMBED_H

#include <stddef.h>

#include "util/buf.h"
#include "util/err.h"

#define EMBED_OPS_VERSION 1

/* Default dimension of the hash embedder; the largest any embedder may have. */
#define EMBED_HASH_DIM_DEFAULT 256
#define EMBED_DIM_MAX 8192
/* Default rank (dimension) of the lsa embedder, chosen by measurement
 * (docs/retrieval.md). */
#define EMBED_LSA_RANK_DEFAULT 300

struct embed_config {
  const char *provider;   /* "hash" | "openai"; NULL or "": hash */
  const char *base_url;   /* openai: e.g. https://api.openai.com/v1 */
  const char *api_key;    /* openai: sent as a Bearer token; may be "" */
  const char *model;      /* openai: default text-embedding-3-small */
  long dimensions;        /* 0: the model's own (hash: 256); openai sends it
                             as "dimensions" when nonzero */
  long batch_size;        /* openai: inputs per request, 0: 64 */
  long batch_tokens;      /* openai: estimated tokens per request, 0: 8000 */
  long max_retries;       /* openai: retries after a 429/5xx/transport error */
  long timeout_ms;        /* openai: per request, 0: 30000 */
  long lsa_min_df;        /* lsa: terms in fewer chunks are left out, 0: 2 */
  long lsa_seed;          /* lsa: seed of the range finder, 0: a fixed default */
  unsigned pii_mask;      /* guard_pii_kind bits masked in every text sent to a
                             remote embedder (RAGD_PII_MASK_EMBED); 0: none.
                             A local embedder always sees the original text. */
};

struct embed_ops {
  int version; /* EMBED_OPS_VERSION */
  const char *name;
  /* On error writes why into err (may be NULL). */
  ragd_err (*create)(const struct embed_config *cfg, void **ctx /* OUT */, struct buf *err);
  void (*destroy)(void *ctx);
  /* Embeds texts[0..n) into out[i * dim .. (i + 1) * dim), each vector of
   * unit length (a text with no features gives the zero vector). dim is the
   * embedder's dimension (embedder.dimensions); for openai without a
   * configured dimension it is learned from the first response, so callers
   * learn it first with embed_ensure_dimensions and size out by it; a later
   * response of another length is an error (RAGD_EUPSTREAM). Blocking; any
   * thread; an embedder may be used by several threads at once. On error
   * writes why into err (may be NULL) and out is unspecified. */
  ragd_err (*embed)(void *ctx, const struct slice *texts, size_t n, float *out,
                    struct buf *err);
  /* Current dimension; 0 while unknown (openai before its first answer). */
  size_t (*dimensions)(void *ctx);
  /* Nonzero when texts leave the machine (a third party sees them): only
   * then does embedder.pii_mask apply. */
  int remote;
};

struct embedder {
  const struct embed_ops *ops;
  void *ctx;
  char model_key[160]; /* "<provider>:<model>", the name vectors are stored under */
  unsigned pii_mask;   /* embed_config.pii_mask when ops->remote, else 0 */
};

/* Creates the embedder cfg->provider names. RAGD_ECONFIG for an unknown
 * provider or a bad setting (err says which). */
ragd_err embed_create(const struct embed_config *cfg, struct embedder *out /* OUT */,
                      struct buf *err);
/* Destroys and zeroes e; accepts a zeroed embedder. */
void embed_destroy(struct embedder *e);
/* The embedder's dimension now (0 while unknown). */
size_t embed_dimensions(const struct embedder *e);
/* The dimension, asking the embedder once (one short input) when it is not
 * known yet. */
ragd_err embed_ensure_dimensions(const struct embedder *e, size_t *dim /* OUT */,
                                 struct buf *err);
/* Embeds n texts; see embed_ops.embed. When e->pii_mask is set, each text
 * is sent with its personal data replaced by placeholders (guard_mask_pii),
 * so the vectors are those of the masked text. RAGD_EINVAL for n > 0 with a
 * NULL texts or out. */
ragd_err embed_texts(const struct embedder *e, const struct slice *texts, size_t n, float *out,
                     struct buf *err);

/* Scales v to unit length; a zero vector stays zero. */
void embed_l2_normalize(float *v, size_t dim);

/* ---- lsa -------------------------------------------------------------------
 * The lsa embedder's model. e must be an lsa embedder (else RAGD_EINVAL).
 * Before the first fit or load it embeds every text as the zero vector.
 *
 * A model is immutable once made: a refit builds a new one off to the side
 * (embed_lsa_model_fit, any thread, no lock held), may embed with it
 * (embed_lsa_model_embed) to build a new vector index, and then hands it to
 * the embedder (embed_lsa_install), which swaps it in under its write lock:
 * concurrent embed calls project with the old or the new model, never a mix.
 * The owner of the embedder (rag/) decides when the swap happens relative
 * to its own vector index. */
struct embed_lsa_model;

/* Fits a new model on texts[0..n) (the chunks' embedding inputs) with e's
 * rank, min_df and seed; does not touch e's current model. Same texts and
 * seed: same model, bit for bit. *out is the caller's (embed_lsa_install or
 * embed_lsa_model_free). */
ragd_err embed_lsa_model_fit(const struct embedder *e, const struct slice *texts, size_t n,
                             struct embed_lsa_model **out /* OUT */, struct buf *err);
/* Embeds texts with m (as the embed op would with m installed). Any thread. */
ragd_err embed_lsa_model_embed(const struct embed_lsa_model *m, const struct slice *texts,
                               size_t n, float *out);
/* "lsa:v1:<rank>:<id>": the key vectors of m are stored under. Owned by m. */
const char *embed_lsa_model_key(const struct embed_lsa_model *m);
/* The number of chunks m was fitted on. */
size_t embed_lsa_model_chunks(const struct embed_lsa_model *m);
/* Appends m's portable bytes (format 1: vocabulary, idf, basis, version) to
 * out, for the store (put_blob) or a file. */
ragd_err embed_lsa_model_encode(const struct embed_lsa_model *m, struct buf *out);
/* Reads bytes written by embed_lsa_model_encode into a new model for e.
 * RAGD_ECONFIG when it has another rank than e (refit), RAGD_EINVAL when
 * the bytes are malformed or truncated. */
ragd_err embed_lsa_model_decode(const struct embedder *e, const void *data, size_t len,
                                struct embed_lsa_model **out /* OUT */);
void embed_lsa_model_free(struct embed_lsa_model *m); /* accepts NULL */
/* Makes m (owned from now on by e) the current model and sets e->model_key
 * to its key; frees the previous one. Callers must keep other threads from
 * reading e->model_key during the call (rag/ holds its model lock). */
void embed_lsa_install(struct embedder *e, struct embed_lsa_model *m);

/* embed_lsa_model_fit + embed_lsa_install. */
ragd_err embed_lsa_fit(struct embedder *e, const struct slice *texts, size_t n, struct buf *err);
/* Nonzero when a model is loaded or fitted. */
int embed_lsa_fitted(const struct embedder *e);
/* Chunks the current model was fitted on (0 before the first). */
size_t embed_lsa_fitted_chunks(const struct embedder *e);
/* Writes the current model to path atomically (path.tmp, then rename).
 * RAGD_EINVAL when there is no model, RAGD_EIO on a write failure. */
ragd_err embed_lsa_save(const struct embedder *e, const char *path, struct buf *err);
/* Loads a model written by embed_lsa_save and installs it. RAGD_ENOTFOUND
 * when the file does not exist, RAGD_ECONFIG when it has another rank than
 * the embedder (refit), RAGD_EINVAL when it is malformed. */
ragd_err embed_lsa_load(struct embedder *e, const char *path, struct buf *err);

extern const struct embed_ops embed_hash_ops;
extern const struct embed_ops embed_lsa_ops;
extern const struct embed_ops embed_openai_ops;

#endif
