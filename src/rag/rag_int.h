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

/* Drops chunks that the store no longer has (found missing by a search). */
void rag_index_forget(struct rag_engine *e, const int64_t *chunk_rowids, size_t n);

/* The text a chunk is embedded from: its document title, heading path and
 * text on separate lines. Appends to out. */
ragd_err rag_embed_input(struct buf *out, const char *title, const char *heading_path,
                         const char *text, size_t text_len);

#endif
