/* store_int.h - declarations shared by the files of store/ and nobody else.
 *
 * Only store/ may include this header (it pulls in sqlite3.h). */
#ifndef RAGD_STORE_INT_H
#define RAGD_STORE_INT_H

#include <sqlite3.h>

/* The name under which the BM25 tokenizer is registered with FTS5; the schema
 * refers to it (tokenize='ragd'). */
#define STORE_FTS_TOKENIZER_NAME "ragd"

/* Registers the FTS5 tokenizer that feeds text_tokenize()'s terms to FTS5, on
 * this connection only. Must run before any statement touches an FTS5 table
 * that uses it. Returns an SQLite result code (SQLITE_OK on success); the
 * caller owns db and serializes access to it. */
int store_fts_register_tokenizer(sqlite3 *db);

#endif
