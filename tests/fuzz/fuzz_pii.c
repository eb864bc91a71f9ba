/* libFuzzer driver: the PII masker and the injection detectors (guard.h).
 * Checks that spans are sorted, in bounds and disjoint; that the masked copy
 * is exactly the input with each span replaced by its placeholder; and that a
 * placeholder is never itself read as PII when the masked text is scanned
 * again. (Masking is not idempotent in general: a placeholder can put a bank
 * word within range of a number, or free a number that was glued to masked
 * text, and a second pass may then mask it. That is by design.) */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guard/guard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  struct guard_pii_list list = {0}, again = {0};
  struct guard_injection inj;
  char *masked = NULL;
  size_t masked_len = 0, count = 0, prev_end = 0;
  size_t *ph_start = NULL, *ph_end = NULL;
  if (guard_find_pii(s, size, GUARD_PII_ALL, &list) != RAGD_OK) return 0;
  for (size_t i = 0; i < list.count; i++) {
    const struct guard_pii_span *sp = &list.items[i];
    if (sp->len == 0 || sp->start < prev_end || sp->start + sp->len > size) __builtin_trap();
    prev_end = sp->start + sp->len;
  }
  if (guard_mask_pii(s, size, GUARD_PII_ALL, &masked, &masked_len, &count) != RAGD_OK) goto out;
  if (count != list.count || masked[masked_len] != '\0') __builtin_trap();
  ph_start = calloc(list.count + 1, sizeof *ph_start);
  ph_end = calloc(list.count + 1, sizeof *ph_end);
  if (!ph_start || !ph_end) goto out;
  {
    /* Rebuild the expected output piece by piece while noting where each
     * placeholder landed. */
    size_t in = 0, at = 0;
    for (size_t i = 0; i < list.count; i++) {
      const char *ph = guard_pii_placeholder(list.items[i].kind);
      size_t gap = list.items[i].start - in, phl = strlen(ph);
      if (memcmp(masked + at, s + in, gap) != 0) __builtin_trap();
      at += gap;
      if (memcmp(masked + at, ph, phl) != 0) __builtin_trap();
      ph_start[i] = at;
      ph_end[i] = at + phl;
      at += phl;
      in = list.items[i].start + list.items[i].len;
    }
    if (masked_len - at != size - in || memcmp(masked + at, s + in, size - in) != 0)
      __builtin_trap();
  }
  if (guard_find_pii(masked, masked_len, GUARD_PII_ALL, &again) == RAGD_OK) {
    for (size_t i = 0; i < again.count; i++)
      for (size_t k = 0; k < list.count; k++)
        if (again.items[i].start < ph_end[k] &&
            ph_start[k] < again.items[i].start + again.items[i].len)
          __builtin_trap();
  }
out:
  free(ph_start);
  free(ph_end);
  free(masked);
  guard_pii_list_dispose(&again);
  guard_pii_list_dispose(&list);
  (void)guard_check_injection(s, size, &inj);
  (void)guard_check_document(s, size, &inj);
  return 0;
}
