#!/bin/sh
# bench/retrieval/run.sh - hybrid retrieval speed at growing corpus sizes.
#
#   sh bench/retrieval/run.sh [BUILD_DIR] [SIZES]     e.g. build "10000 100000"
#
# For each size: scales ../shared/eval corpora to SIZE documents (about one
# chunk each), times `ragd ingest` with the hash embedder (MB of text per
# second), serves the data on one core (taskset -c 0, RAGD_WORKERS=1),
# measures /v1/search p50/p99 per mode with sequential requests, the server's
# resident memory per chunk, and the int8 index's recall@10 against an exact
# index over the same data. Results go to stdout; docs/retrieval.md keeps them.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/build}
SIZES=${2:-"10000 100000"}
RAGD=$BUILD/ragd
EVAL=${EVAL_DIR:-$ROOT/../shared/eval}
WORK=$(mktemp -d /tmp/ragd-bench-retrieval-XXXXXX)
trap 'kill $PID1 $PID2 2>/dev/null || true; rm -rf "$WORK"' EXIT
PID1= PID2=
export RAGD_LOG_LEVEL=warn
rss_kb() { awk '/VmRSS/ {print $2}' /proc/$1/status; }
wait_ready() { while ! grep -q '^READY' "$1"; do sleep 0.2; done; }
for N in $SIZES; do
  echo "== $N documents"
  node "$ROOT/bench/retrieval/scale_corpus.mjs" --out "$WORK/c$N" --docs "$N" \
    "$EVAL/en_stackfaq/corpus.jsonl" "$EVAL/ko_welfare_faq/corpus.jsonl" "$EVAL/en_xquad/corpus.jsonl"
  BYTES=$(cat "$WORK"/c$N/part-*.json | wc -c)
  T0=$(date +%s.%N)
  taskset -c 0 "$RAGD" ingest --data "$WORK/d$N" "$WORK/c$N" | tail -1
  T1=$(date +%s.%N)
  echo "ingest: $(echo "$BYTES $T0 $T1" | awk '{printf "%.2f MB/s of JSON input (%.1f s, one core)", $1/1e6/($3-$2), $3-$2}')"
  taskset -c 0 env RAGD_WORKERS=1 "$RAGD" serve --data "$WORK/d$N" --listen 127.0.0.1:0 > "$WORK/s1" 2>&1 &
  PID1=$!
  wait_ready "$WORK/s1"
  P1=$(sed -n 's/^READY //p' "$WORK/s1")
  CHUNKS=$(sed -n 's/.*(\([0-9]*\) chunks).*/\1/p' "$WORK/s1" | head -1)
  echo "server RSS after loading: $(rss_kb $PID1) kB for $CHUNKS chunks"
  node "$ROOT/bench/retrieval/latency.mjs" --base "http://127.0.0.1:$P1" --queries "$WORK/c$N.queries.txt" --n 300
  taskset -c 1 env RAGD_WORKERS=1 RAGD_VECTOR_INDEX=exact "$RAGD" serve --data "$WORK/d$N" --listen 127.0.0.1:0 > "$WORK/s2" 2>&1 &
  PID2=$!
  wait_ready "$WORK/s2"
  P2=$(sed -n 's/^READY //p' "$WORK/s2")
  node "$ROOT/bench/retrieval/latency.mjs" --base "http://127.0.0.1:$P2" --queries "$WORK/c$N.queries.txt" --n 300 --modes vector \
    | sed 's/^vector  /vector (exact index)/'
  node "$ROOT/bench/retrieval/latency.mjs" --base "http://127.0.0.1:$P1" --queries "$WORK/c$N.queries.txt" --n 200 --modes vector \
    --compare "http://127.0.0.1:$P2" | tail -1
  kill $PID1 $PID2; wait $PID1 $PID2 2>/dev/null || true; PID1= PID2=
done
