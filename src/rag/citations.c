#include <stdlib.h>
#include <string.h>

#include "rag/rag.h"

void rag_citations_init(struct rag_citations *c) { memset(c, 0, sizeof *c); }

void rag_citations_dispose(struct rag_citations *c) {
  free(c->numbers);
  memset(c, 0, sizeof *c);
}

static void add_number(struct rag_citations *c, int n) {
  for (size_t i = 0; i < c->count; i++)
    if (c->numbers[i] == n) return;
  if (c->count == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 8;
    int *p = realloc(c->numbers, cap * sizeof *p);
    if (!p) return; /* a citation report may lose an entry; the answer does not */
    c->numbers = p;
    c->cap = cap;
  }
  c->numbers[c->count++] = n;
}

/* Accepts "[1]", "[1, 2]", "[1,2,3]"; anything else inside brackets (a link
 * text, "[see]") is not a citation. */
static void close_bracket(struct rag_citations *c) {
  int nums[8];
  size_t count = 0;
  size_t i = 0;
  if (c->pending_len == 0) return;
  while (i < c->pending_len) {
    long n = 0;
    size_t digits = 0;
    while (i < c->pending_len && c->pending[i] == ' ') i++;
    while (i < c->pending_len && c->pending[i] >= '0' && c->pending[i] <= '9' && digits < 4) {
      n = n * 10 + (c->pending[i] - '0');
      i++;
      digits++;
    }
    if (!digits || count == 8) return;
    nums[count++] = (int)n;
    while (i < c->pending_len && c->pending[i] == ' ') i++;
    if (i < c->pending_len) {
      if (c->pending[i] != ',') return;
      i++;
      if (i == c->pending_len) return; /* "[1,]" lists nothing after the comma */
    }
  }
  for (size_t k = 0; k < count; k++) add_number(c, nums[k]);
}

void rag_citations_feed(struct rag_citations *c, const char *text, size_t len) {
  for (size_t i = 0; i < len; i++) {
    char ch = text[i];
    if (ch == '[') {
      c->state = 1;
      c->pending_len = 0;
    } else if (c->state == 1) {
      if (ch == ']') {
        close_bracket(c);
        c->state = 0;
      } else if (c->pending_len < sizeof c->pending && ((ch >= '0' && ch <= '9') || ch == ',' || ch == ' ')) {
        c->pending[c->pending_len++] = ch;
      } else {
        c->state = 0;
      }
    }
  }
}
