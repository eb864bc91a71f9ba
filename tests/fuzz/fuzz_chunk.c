/* libFuzzer driver: the chunker and title extraction for text, markdown and
 * HTML. The first byte picks the format and a small token budget so that
 * splitting and overlap paths run on short inputs. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct text_chunk_list list = {0};
  struct text_chunk_opts opts;
  enum text_format fmt;
  const char *s;
  char *title;
  if (size < 1) return 0;
  fmt = (enum text_format)(data[0] % 3);
  opts.tokens_max = (size_t)(data[0] >> 2) + 1; /* 1..64 */
  opts.tokens_overlap = (size_t)(data[0] & 0x3) * 3;
  s = (const char *)data + 1;
  size--;
  if (text_utf8_validate(s, size, NULL) != RAGD_OK) return 0;
  if (text_chunk(s, size, fmt, &opts, &list) == RAGD_OK) {
    for (size_t i = 0; i < list.count; i++) {
      const struct text_chunk *c = &list.items[i];
      if (!c->text || !c->heading_path || strlen(c->text) != c->text_len) __builtin_trap();
      if (text_utf8_validate(c->text, c->text_len, NULL) != RAGD_OK) __builtin_trap();
    }
  }
  text_chunk_list_dispose(&list);
  title = text_title(s, size, fmt);
  if (title && text_utf8_validate(title, strlen(title), NULL) != RAGD_OK) __builtin_trap();
  free(title);
  return 0;
}
