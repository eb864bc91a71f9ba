/* fusion.c - Reciprocal Rank Fusion (Cormack, Clarke, Büttcher 2009) and a
 * score-normalized blend.
 *
 * RRF needs only ranks, so scores of different scales (BM25's unbounded
 * sums, cosines) never have to be calibrated against each other; k damps the
 * lead of the very first ranks (60 is the paper's value). The blend keeps
 * how far apart the scores are, which ranks throw away: each ranking's
 * scores are normalized over its own candidate list (min-max or z-score) and
 * summed with the rankings' weights (a convex combination when they add up
 * to 1). */
#include <math.h>
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

/* Every id of the switched-on rankings once, with its 1-based rank in each
 * ranking (the first, for an id repeated within one), in id order; scores
 * are left 0. *out is malloc'd (free()), NULL when *n is 0. */
static ragd_err fuse_group(const struct retrieve_ranking *rankings, size_t nrankings,
                           struct retrieve_fused **out, size_t *n) {
  struct rrf_entry *entries = NULL;
  struct retrieve_fused *fused = NULL;
  size_t total = 0, i, j, nf = 0;
  ragd_err rc = RAGD_OK;

  *out = NULL;
  *n = 0;
  for (i = 0; i < nrankings; i++)
    if (rankings[i].weight > 0) total += rankings[i].count;
  if (total == 0) return RAGD_OK;
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
  qsort(entries, total, sizeof *entries, entry_cmp);
  for (i = 0; i < total; i++) {
    const struct rrf_entry *e = &entries[i];
    if (nf == 0 || fused[nf - 1].id != e->id) {
      fused[nf].id = e->id;
      nf++;
    }
    if (!fused[nf - 1].ranks[e->ranker]) fused[nf - 1].ranks[e->ranker] = e->rank;
  }
  *out = fused;
  *n = nf;
  fused = NULL;
out:
  free(entries);
  free(fused);
  return rc;
}

static ragd_err check_rankings(const struct retrieve_ranking *rankings, size_t nrankings,
                               int need_scores) {
  if (nrankings < 1 || nrankings > RETRIEVE_RANKERS_MAX) return RAGD_EINVAL;
  for (size_t i = 0; i < nrankings; i++) {
    if (!rankings[i].count) continue;
    if (!rankings[i].ids || (need_scores && !rankings[i].scores)) return RAGD_EINVAL;
    if (!(rankings[i].weight >= 0)) return RAGD_EINVAL;
    for (size_t j = 0; need_scores && j < rankings[i].count; j++)
      if (!isfinite(rankings[i].scores[j])) return RAGD_EINVAL;
  }
  return RAGD_OK;
}

/* Sorts the scored fusion and hands the best top back. */
static void fuse_finish(struct retrieve_fused *fused, size_t nf, size_t top,
                        struct retrieve_fused **out, size_t *n) {
  qsort(fused, nf, sizeof *fused, fused_cmp);
  *n = nf < top ? nf : top;
  *out = fused;
}

ragd_err retrieve_rrf(const struct retrieve_ranking *rankings, size_t nrankings, double k,
                      size_t top, struct retrieve_fused **out, size_t *n) {
  struct retrieve_fused *fused = NULL;
  size_t nf = 0, i, r;
  ragd_err rc;

  *out = NULL;
  *n = 0;
  rc = check_rankings(rankings, nrankings, 0);
  if (rc || !(k >= 0)) return rc ? rc : RAGD_EINVAL;
  if (top == 0) return RAGD_OK;
  rc = fuse_group(rankings, nrankings, &fused, &nf);
  if (rc || nf == 0) return rc;
  for (i = 0; i < nf; i++)
    for (r = 0; r < nrankings; r++)
      if (fused[i].ranks[r]) fused[i].score += rankings[r].weight / (k + (double)fused[i].ranks[r]);
  fuse_finish(fused, nf, top, out, n);
  return RAGD_OK;
}

/* How one ranking's raw scores map onto a common scale: value(s) = scale *
 * (s - offset), and floor is what an id the ranking does not hold gets. */
struct blend_norm {
  double offset, scale, floor;
};

/* A ranking lists its ids best first, so the direction of "better" is read
 * off its own order (BM25 scores may be negative, lower better): the first
 * score against the last. Only the ranking's first occurrence of an id
 * counts, as in fusion. A ranking of one score, or of equal scores, gives
 * its ids 1 and the floor 0 under both normalizations. */
static struct blend_norm blend_norm_of(const struct retrieve_ranking *r, enum retrieve_blend_norm how) {
  struct blend_norm nm = {0, 0, 0};
  double lo, hi, sum = 0, sq = 0, mean, sd, dir;
  size_t i;
  if (!r->count) return nm;
  lo = hi = r->scores[0];
  for (i = 0; i < r->count; i++) {
    double s = r->scores[i];
    if (s < lo) lo = s;
    if (s > hi) hi = s;
    sum += s;
  }
  dir = r->scores[0] >= r->scores[r->count - 1] ? 1.0 : -1.0;
  if (!(hi > lo)) {
    nm.offset = r->scores[0] - 1.0; /* value 1 for every id held */
    nm.scale = 1.0;
    nm.floor = 0;
    return nm;
  }
  if (how == RETRIEVE_BLEND_MINMAX) {
    /* the best score 1, the worst 0; the floor is the worst */
    nm.offset = dir > 0 ? lo : hi;
    nm.scale = dir / (hi - lo);
    nm.floor = 0;
    return nm;
  }
  mean = sum / (double)r->count;
  for (i = 0; i < r->count; i++) sq += (r->scores[i] - mean) * (r->scores[i] - mean);
  sd = sqrt(sq / (double)r->count);
  nm.offset = mean;
  nm.scale = dir / sd;
  /* the floor is the worst listed id's z */
  nm.floor = nm.scale * ((dir > 0 ? lo : hi) - mean);
  return nm;
}

ragd_err retrieve_blend(const struct retrieve_ranking *rankings, size_t nrankings,
                        enum retrieve_blend_norm norm, size_t top,
                        struct retrieve_fused **out, size_t *n) {
  struct blend_norm nm[RETRIEVE_RANKERS_MAX];
  struct retrieve_fused *fused = NULL;
  size_t nf = 0, i, r;
  ragd_err rc;

  *out = NULL;
  *n = 0;
  rc = check_rankings(rankings, nrankings, 1);
  if (rc) return rc;
  if (norm != RETRIEVE_BLEND_MINMAX && norm != RETRIEVE_BLEND_ZSCORE) return RAGD_EINVAL;
  if (top == 0) return RAGD_OK;
  rc = fuse_group(rankings, nrankings, &fused, &nf);
  if (rc || nf == 0) return rc;
  for (r = 0; r < nrankings; r++) nm[r] = blend_norm_of(&rankings[r], norm);
  for (i = 0; i < nf; i++) {
    for (r = 0; r < nrankings; r++) {
      double v;
      if (!(rankings[r].weight > 0)) continue;
      v = fused[i].ranks[r] ? nm[r].scale * (rankings[r].scores[fused[i].ranks[r] - 1] - nm[r].offset)
                            : nm[r].floor;
      fused[i].score += rankings[r].weight * v;
    }
  }
  fuse_finish(fused, nf, top, out, n);
  return RAGD_OK;
}
