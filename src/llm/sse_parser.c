/* sse_parser.c - incremental text/event-stream parser (see sse_parser.h). */
#include "llm/sse_parser.h"

#include <string.h>

static const unsigned char sse_bom[3] = {0xEF, 0xBB, 0xBF};

void llm_sse_parser_init(struct llm_sse_parser *p, size_t line_max, llm_sse_event_fn on_event,
                         void *ctx) {
  memset(p, 0, sizeof(*p));
  p->on_event = on_event;
  p->ctx = ctx;
  buf_init(&p->line, line_max);
  /* One maximal data line plus the LF the standard appends after it. */
  buf_init(&p->data, line_max ? line_max + 1 : 0);
  buf_init(&p->type, line_max);
  buf_init(&p->id, line_max);
  p->retry_ms = -1;
  p->failed = RAGD_OK;
}

void llm_sse_parser_dispose(struct llm_sse_parser *p) {
  buf_dispose(&p->line);
  buf_dispose(&p->data);
  buf_dispose(&p->type);
  buf_dispose(&p->id);
}

long llm_sse_parser_retry_ms(const struct llm_sse_parser *p) { return p->retry_ms; }

static struct slice sse_buf_slice(const struct buf *b) {
  struct slice s = {b->data ? b->data : "", b->len};
  return s;
}

static int sse_field_is(const char *field, size_t len, const char *name) {
  size_t n = strlen(name);
  return len == n && memcmp(field, name, n) == 0;
}

static ragd_err sse_dispatch(struct llm_sse_parser *p) {
  struct llm_sse_event ev;
  ragd_err rc = RAGD_OK;

  if (p->data.len == 0) goto out;
  /* The standard appends LF after every data line; the last one goes. */
  p->data.len--;
  p->data.data[p->data.len] = '\0';
  ev.type = p->type.len ? sse_buf_slice(&p->type) : SLICE_LIT("message");
  ev.data = sse_buf_slice(&p->data);
  ev.id = sse_buf_slice(&p->id);
  rc = p->on_event(p->ctx, &ev);
out:
  buf_reset(&p->data);
  buf_reset(&p->type);
  return rc;
}

static void sse_parse_retry(struct llm_sse_parser *p, const char *value, size_t len) {
  long ms = 0;
  size_t i;
  if (len == 0) return;
  for (i = 0; i < len; i++) {
    if (value[i] < '0' || value[i] > '9') return;
    /* Saturate instead of overflowing; nobody means a retry of 2^63 ms. */
    if (ms > (0x7fffffffL - 9) / 10) {
      ms = 0x7fffffffL;
    } else {
      ms = ms * 10 + (value[i] - '0');
    }
  }
  p->retry_ms = ms;
}

/* Interprets one complete line (terminator already stripped). */
static ragd_err sse_process_line(struct llm_sse_parser *p, const char *line, size_t len) {
  const char *colon, *value;
  size_t field_len, value_len;
  ragd_err rc = RAGD_OK;

  if (len == 0) return sse_dispatch(p);
  if (line[0] == ':') return RAGD_OK;

  colon = memchr(line, ':', len);
  if (colon) {
    field_len = (size_t)(colon - line);
    value = colon + 1;
    value_len = len - field_len - 1;
    if (value_len && value[0] == ' ') {
      value++;
      value_len--;
    }
  } else {
    field_len = len;
    value = "";
    value_len = 0;
  }

  if (sse_field_is(line, field_len, "data")) {
    rc = buf_append(&p->data, value, value_len);
    if (rc) goto out;
    rc = buf_append_char(&p->data, '\n');
  } else if (sse_field_is(line, field_len, "event")) {
    buf_reset(&p->type);
    rc = buf_append(&p->type, value, value_len);
  } else if (sse_field_is(line, field_len, "id")) {
    if (memchr(value, '\0', value_len) == NULL) {
      buf_reset(&p->id);
      rc = buf_append(&p->id, value, value_len);
    }
  } else if (sse_field_is(line, field_len, "retry")) {
    sse_parse_retry(p, value, value_len);
  }
out:
  return rc;
}

/* Returns the index of the first CR or LF in bytes[from..len), or len. */
static size_t sse_find_eol(const char *bytes, size_t from, size_t len) {
  size_t i;
  for (i = from; i < len; i++) {
    if (bytes[i] == '\n' || bytes[i] == '\r') break;
  }
  return i;
}

ragd_err llm_sse_parser_feed(struct llm_sse_parser *p, const char *bytes, size_t len) {
  size_t i = 0, eol;
  ragd_err rc = p->failed;

  if (rc) return rc;
  while (i < len) {
    if (!p->bom_done) {
      if ((unsigned char)bytes[i] == sse_bom[p->bom_seen]) {
        p->bom_seen++;
        i++;
        if (p->bom_seen == sizeof(sse_bom)) p->bom_done = 1;
        continue;
      }
      /* Not a BOM after all: the bytes matched so far belong to the line. */
      p->bom_done = 1;
      rc = buf_append(&p->line, sse_bom, p->bom_seen);
      if (rc) goto out;
    }
    if (p->after_cr) {
      p->after_cr = 0;
      if (bytes[i] == '\n') {
        i++;
        continue;
      }
    }
    eol = sse_find_eol(bytes, i, len);
    if (p->line.len == 0 && eol < len) {
      /* The whole line is inside this chunk: no copy needed. */
      rc = (p->line.max && eol - i > p->line.max) ? RAGD_ETOOBIG
                                                  : sse_process_line(p, bytes + i, eol - i);
    } else {
      rc = buf_append(&p->line, bytes + i, eol - i);
      if (rc || eol == len) goto out;
      rc = sse_process_line(p, p->line.data, p->line.len);
      buf_reset(&p->line);
    }
    if (rc) goto out;
    if (bytes[eol] == '\r') p->after_cr = 1;
    i = eol + 1;
  }
out:
  p->failed = rc;
  return rc;
}

ragd_err llm_sse_parser_finish(struct llm_sse_parser *p) {
  if (p->failed) return p->failed;
  buf_reset(&p->line);
  buf_reset(&p->data);
  buf_reset(&p->type);
  return RAGD_OK;
}
