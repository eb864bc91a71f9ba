#!/bin/sh
# bench/lsa/run.sh - fit time, peak memory, re-embed time and query
# projection latency of the lsa embedder at growing corpus sizes.
#
#   sh bench/lsa/run.sh [BUILD_DIR] [SIZES] [RANK]    e.g. build "10000 100000" 300
#
# For each size: scales ../shared/eval corpora to SIZE documents with
# bench/retrieval/scale_corpus.mjs (about 1.2 chunks each), then runs
# BUILD_DIR/bench_lsa_fit on it (bench/lsa/fit.c: chunking as ingest does,
# embed_lsa_model_fit, every chunk re-embedded with the new model, 500 query
# projections) under /usr/bin/time. Prints fit_s, embed_s, query p50/p99,
# model bytes and the process's peak RSS. OpenBLAS may use every core for the
# QR steps; the sparse products run on one thread. On a shared machine read
# the user CPU seconds of /usr/bin/time next to the wall clock.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/build}
SIZES=${2:-"10000 100000"}
RANK=${3:-300}
EVAL=${EVAL_DIR:-$ROOT/../shared/eval}
WORK=$(mktemp -d /tmp/ragd-bench-lsa-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
for N in $SIZES; do
  echo "== $N documents, rank $RANK"
  node "$ROOT/bench/retrieval/scale_corpus.mjs" --out "$WORK/c$N" --docs "$N" \
    "$EVAL/en_stackfaq/corpus.jsonl" "$EVAL/ko_welfare_faq/corpus.jsonl" "$EVAL/en_xquad/corpus.jsonl"
  /usr/bin/time -f "wall_s=%e user_s=%U sys_s=%S max_rss_kb=%M" \
    "$BUILD/bench_lsa_fit" --rank "$RANK" --queries "$WORK/c$N.queries.txt" "$WORK/c$N"
  rm -rf "$WORK/c$N"
done
