/* fusion.c - Reciprocal Rank Fusion (Cormack, Clarke, Büttcher 2009).
 *
 * RRF needs only ranks, so scores of different scales (BM25's unbounded
 * sums, cosines) never have to be calibrated against each other; k damps the
 * lead of the very first ranks (60 is the paper's value). */
#include <stdlib.h>
#include <string.h>

#include "retrieve/retrieve.h"

struct rrf_entry {
  int64_t id;
  size_t ranker;
  size_t rank;
};

static int entry_cmp(const void *a, const void *b) {
  const struct rrf_entry *x = a, *y = b;
  if (x->id != y->id) return x->id < y->id ? -1 : 1;
  if (x->ranker != y->ranker) return x->ranker < y->ranker ? -1 : 1;
  return (x->rank > y->rank) - (x->rank < y->rank);
}

static size_t best_rank(const struct retrieve_fused *f) {
  size_t best = 0;
  for (size_t i = 0; i < RETRIEVE_RANKERS_MAX; i++)
    if (f->ranks[i] && (!best || f->ranks[i] < best)) best = f->ranks[i];
  return best;
}

static int fused_cmp(const void *a, const void *b) {
  const struct retrieve_fused *x = a, *y = b;
  size_t bx, by;
  if (x->score != y->score) return x->score > y->score ? -1 : 1;
  bx = best_rank(x);
  by = best_rank(y);
  if (bx != by) return bx < by ? -1 : 1;
  return (x->id > y->id) - (x->id < y->id);
}

ragd_err retrieve_rrf(const struct retrieve_ranking *rankings, size_t nrankings, double k,
                      size_t top, struct retrieve_fused **out, size_t *n) {
  struct rrf_entry *entries = NULL;
  struct retrieve_fused *fused = NULL;
  size_t total = 0, i, j, nf = 0;
  ragd_err rc = RAGD_OK;

  *out = NULL;
  *n = 0;
  if (nrankings < 1 || nrankings > RETRIEVE_RANKERS_MAX || !(k >= 0)) return RAGD_EINVAL;
  for (i = 0; i < nrankings; i++) {
    if (rankings[i].count && !rankings[i].ids) return RAGD_EINVAL;
    total += rankings[i].count;
  }
  if (total == 0 || top == 0) return RAGD_OK;
  entries = malloc(total * sizeof *entries);
  fused = calloc(total, sizeof *fused);
  if (!entries || !fused) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  total = 0;
  for (i = 0; i < nrankings; i++) {
    if (!(rankings[i].weight > 0)) continue; /* a ranker switched off */
    for (j = 0; j < rankings[i].count; j++) {
      entries[total].id = rankings[i].ids[j];
      entries[total].ranker = i;
      entries[total].rank = j + 1;
      total++;
    }
  }
  if (total == 0) goto out;
  qsort(entries, total, sizeof *entries, entry_cmp);
  for (i = 0; i < total; i++) {
    const struct rrf_entry *e = &entries[i];
    struct retrieve_fused *f;
    if (nf == 0 || fused[nf - 1].id != e->id) {
      fused[nf].id = e->id;
      nf++;
    }
    f = &fused[nf - 1];
    if (f->ranks[e->ranker]) continue; /* a repeat within one ranking */
    f->ranks[e->ranker] = e->rank;
    f->score += rankings[e->ranker].weight / (k + (double)e->rank);
  }
  qsort(fused, nf, sizeof *fused, fused_cmp);
  *n = nf < top ? nf : top;
  *out = fused;
  fused = NULL;
out:
  free(entries);
  free(fused);
  return rc;
}
