#include <string.h>

#include "http/http.h"

ragd_err http_sse_event(struct buf *out, const char *event, const char *id, const char *data,
                        size_t len) {
  ragd_err rc = RAGD_OK;
  size_t start = 0;
  if (event) rc = buf_appendf(out, "event: %s\n", event);
  if (!rc && id) rc = buf_appendf(out, "id: %s\n", id);
  /* Split on \r\n, \r and \n: the three line ends the WHATWG parser knows. */
  while (!rc) {
    size_t end = start;
    while (end < len && data[end] != '\n' && data[end] != '\r') end++;
    rc = buf_append(out, "data: ", 6);
    if (!rc) rc = buf_append(out, data + start, end - start);
    if (!rc) rc = buf_append_char(out, '\n');
    if (end >= len) break;
    if (data[end] == '\r' && end + 1 < len && data[end + 1] == '\n') end++;
    start = end + 1;
  }
  if (!rc) rc = buf_append_char(out, '\n');
  return rc;
}

ragd_err http_sse_comment(struct buf *out, const char *text) {
  return buf_appendf(out, ": %s\n\n", text);
}
