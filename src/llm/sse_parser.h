/* sse_parser.h - an incremental parser for the WHATWG event-stream format
 * (text/event-stream), as spoken by OpenAI-compatible and other LLM APIs.
 *
 * The parser is fed the response body in chunks of any size, split anywhere:
 * inside a line, between the CR and LF of a CRLF, inside a multi-byte UTF-8
 * character. It follows the "interpreting an event stream" rules of the HTML
 * standard:
 *   - one leading UTF-8 BOM is skipped;
 *   - lines end with CRLF, LF or CR;
 *   - a line starting with ':' is a comment and is ignored;
 *   - "field: value" (one space after the colon is dropped), or a bare "field"
 *     with an empty value;
 *   - "event" sets the event type, "data" appends its value plus LF to the data
 *     buffer, "id" sets the last event id (ignored when it contains NUL),
 *     "retry" sets the reconnection time when it is all ASCII digits; other
 *     fields are ignored;
 *   - a blank line dispatches: nothing when the data buffer is empty,
 *     otherwise an event whose data has its final LF removed and whose type is
 *     "message" unless an event field said otherwise;
 *   - an event that is not terminated by a blank line when the stream ends is
 *     discarded.
 * Bytes are passed through unchanged (no UTF-8 validation here; the consumer
 * decodes JSON or text and validates it).
 *
 * Not thread-safe: one parser belongs to one stream and one thread at a time. */
#ifndef RAGD_LLM_SSE_PARSER_H
#define RAGD_LLM_SSE_PARSER_H

#include <stddef.h>

#include "util/buf.h"
#include "util/err.h"

/* One dispatched event. All slices are borrowed for the duration of the
 * callback only. type.ptr and data.ptr are NUL-terminated for convenience, but
 * a NUL byte in the stream is passed through, so trust len. */
struct llm_sse_event {
  struct slice type; /* "message" unless an event field set it */
  struct slice data; /* data lines joined by LF, without the final LF */
  struct slice id;   /* the last event id seen so far (may be empty) */
};

/* Called once per dispatched event. Returning nonzero stops the parser: feed
 * returns that value, and every later feed returns it too. */
typedef ragd_err (*llm_sse_event_fn)(void *ctx, const struct llm_sse_event *ev);

struct llm_sse_parser {
  llm_sse_event_fn on_event;
  void *ctx;
  struct buf line;  /* the line being assembled, without its terminator */
  struct buf data;  /* data buffer of the pending event */
  struct buf type;  /* event type buffer of the pending event */
  struct buf id;    /* last event id; persists across events */
  long retry_ms;    /* last valid retry field, -1 when none was seen */
  size_t bom_seen;  /* bytes of the leading BOM matched so far (0..3) */
  int bom_done;     /* the BOM check is over */
  int after_cr;     /* the previous byte was a CR, so a LF now is ignored */
  ragd_err failed;  /* sticky error, RAGD_OK while healthy */
};

/* Prepares p. line_max caps one line and the data of one event (bytes, not
 * counting terminators); 0 means no limit, which is only sensible for trusted
 * input. on_event is required; ctx is passed to it untouched. */
void llm_sse_parser_init(struct llm_sse_parser *p, size_t line_max, llm_sse_event_fn on_event,
                         void *ctx);
/* Releases everything p holds; p may be re-initialised afterwards. */
void llm_sse_parser_dispose(struct llm_sse_parser *p);
/* Consumes len bytes (borrowed). Events completed by these bytes are
 * dispatched, in order, before feed returns. Errors: RAGD_ETOOBIG when a line
 * or an event's data passes line_max, RAGD_ENOMEM, or whatever on_event
 * returned. After an error the parser stays failed and ignores further input. */
ragd_err llm_sse_parser_feed(struct llm_sse_parser *p, const char *bytes, size_t len);
/* The stream ended: an event without its terminating blank line is dropped
 * (as the standard says). Returns the sticky error, if any. */
ragd_err llm_sse_parser_finish(struct llm_sse_parser *p);
/* The last valid "retry" value in milliseconds, or -1 when none was seen. */
long llm_sse_parser_retry_ms(const struct llm_sse_parser *p);

#endif
