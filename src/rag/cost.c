/* cost.c - what an answer cost: list prices per million tokens by model.
 *
 * The defaults are the providers' published list prices for standard
 * (non-batch, non-cached) input and output tokens as of 2025-06; prices
 * change, so RAGD_PRICES overrides or extends them:
 *   RAGD_PRICES="gpt-4o=2.5/10,my-model=0.2/0.8"   (USD per 1M input/output).
 * A model is matched by the longest table entry that is a prefix of its
 * name, so "gpt-4o-2024-08-06" is priced as "gpt-4o". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rag/rag.h"

static const struct rag_price default_prices[] = {
    {"gpt-4o-mini", 0.15, 0.60},     {"gpt-4o", 2.50, 10.00},
    {"gpt-4.1-nano", 0.10, 0.40},    {"gpt-4.1-mini", 0.40, 1.60},
    {"gpt-4.1", 2.00, 8.00},         {"o3-mini", 1.10, 4.40},
    {"o4-mini", 1.10, 4.40},         {"gpt-3.5-turbo", 0.50, 1.50},
    {"claude-3-5-haiku", 0.80, 4.00}, {"claude-3-5-sonnet", 3.00, 15.00},
    {"claude-3-7-sonnet", 3.00, 15.00}, {"claude-sonnet-4", 3.00, 15.00},
    {"claude-opus-4", 15.00, 75.00}, {"gemini-1.5-flash", 0.075, 0.30},
    {"gemini-1.5-pro", 1.25, 5.00},  {"gemini-2.0-flash", 0.10, 0.40},
    {"gemini-2.5-flash", 0.30, 2.50}, {"gemini-2.5-pro", 1.25, 10.00},
    {"extractive", 0, 0},
};

static const struct rag_price *longest_prefix(const struct rag_price *table, size_t n,
                                              const char *model, size_t *best_len) {
  const struct rag_price *best = NULL;
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(table[i].model);
    if (len > *best_len && strncmp(model, table[i].model, len) == 0) {
      best = &table[i];
      *best_len = len;
    }
  }
  return best;
}

ragd_err rag_prices_parse(const char *spec, struct rag_price **out, size_t *count,
                          struct buf *err) {
  struct rag_price *items = NULL;
  size_t n = 0;
  const char *p = spec ? spec : "";
  *out = NULL;
  *count = 0;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    char entry[160];
    char *eq, *slash, *e1 = NULL, *e2 = NULL;
    struct rag_price *grown;
    double in, outp;
    if (len == 0 || len >= sizeof entry) goto bad;
    memcpy(entry, p, len);
    entry[len] = '\0';
    eq = strchr(entry, '=');
    slash = eq ? strchr(eq, '/') : NULL;
    if (!eq || !slash || eq == entry) goto bad;
    *eq = '\0';
    *slash = '\0';
    in = strtod(eq + 1, &e1);
    outp = strtod(slash + 1, &e2);
    if (e1 == eq + 1 || *e1 || e2 == slash + 1 || *e2 || in < 0 || outp < 0) goto bad;
    grown = realloc(items, (n + 1) * sizeof *items);
    if (!grown) {
      free(items);
      return RAGD_ENOMEM;
    }
    items = grown;
    items[n].model = strdup(entry);
    if (!items[n].model) {
      rag_prices_free(items, n);
      return RAGD_ENOMEM;
    }
    items[n].input_per_million = in;
    items[n].output_per_million = outp;
    n++;
    p += len;
    if (*p == ',') p++;
  }
  *out = items;
  *count = n;
  return RAGD_OK;
bad:
  if (err) buf_appendf(err, "RAGD_PRICES: expected MODEL=INPUT/OUTPUT (USD per 1M tokens) entries separated by commas, got \"%.*s\"",
                       (int)strcspn(p, ","), p);
  rag_prices_free(items, n);
  return RAGD_ECONFIG;
}

void rag_prices_free(struct rag_price *items, size_t n) {
  for (size_t i = 0; i < n; i++) free((char *)items[i].model);
  free(items);
}

int rag_price_lookup(const struct rag_price *overrides, size_t n, const char *model,
                     struct rag_price *out) {
  size_t best_len = 0;
  const struct rag_price *p;
  if (!model) return 0;
  p = longest_prefix(overrides, n, model, &best_len);
  if (!p) p = longest_prefix(default_prices, sizeof default_prices / sizeof default_prices[0], model, &best_len);
  if (!p) return 0;
  *out = *p;
  return 1;
}
