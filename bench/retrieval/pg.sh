#!/bin/sh
# bench/retrieval/pg.sh - one corpus on three stores: SQLite, Debian's
# PostgreSQL (keyword; vectors in memory, RAGD_VECTOR_INDEX=int8, since
# Debian 12 has no pgvector) and PGlite with pgvector (vectors searched in
# the database, HNSW).
#
#   sh bench/retrieval/pg.sh [BUILD_DIR] [DOCS]      e.g. build 2000
#
# DOCS 0 (the default) is the sample knowledge base (examples/kb/en + ko);
# otherwise ../shared/eval corpora scaled to DOCS documents (about one chunk
# each). For each store: `ragd ingest` wall time (documents per second), then
# `ragd serve` and /v1/search p50/p99 per mode (latency.mjs, sequential
# requests, top_k 10). On PGlite also the recall@10 of the HNSW search
# against an exact in-memory scan of the same rows (a second server with
# RAGD_VECTOR_INDEX=exact). Results go to stdout; docs/performance.md keeps
# them.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/build}
DOCS=${2:-0}
RAGD=$BUILD/ragd
EVAL=${EVAL_DIR:-$ROOT/../shared/eval}
N=${N:-200}
WORK=$(mktemp -d /tmp/ragd-bench-pg-XXXXXX)
PIDS=
cleanup() {
  for p in $PIDS; do kill "$p" 2>/dev/null || true; done
  node "$ROOT/tests/pglite_server.mjs" stop "$WORK/pglite" >/dev/null 2>&1 || true
  sh "$ROOT/scripts/pg-test-cluster.sh" stop "$WORK/pg" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
export RAGD_LOG_LEVEL=warn
wait_ready() { while ! grep -q '^READY' "$1"; do sleep 0.2; done; }

if [ "$DOCS" = 0 ]; then
  SRC="$ROOT/examples/kb/en $ROOT/examples/kb/ko"
  QUERIES="$WORK/queries.txt"
  # every heading of the sample knowledge base, as a question
  grep -h '^#' "$ROOT"/examples/kb/en/*.md "$ROOT"/examples/kb/ko/*.md | sed 's/^#* *//' > "$QUERIES"
else
  node "$ROOT/bench/retrieval/scale_corpus.mjs" --out "$WORK/c" --docs "$DOCS" \
    "$EVAL/en_stackfaq/corpus.jsonl" "$EVAL/ko_welfare_faq/corpus.jsonl" "$EVAL/en_xquad/corpus.jsonl"
  SRC="$WORK/c"
  QUERIES="$WORK/c.queries.txt"
fi
echo "queries: $(wc -l < "$QUERIES") distinct, $N requests per mode"

PG=$(sh "$ROOT/scripts/pg-test-cluster.sh" start "$WORK/pg")
PGLITE=$(node "$ROOT/tests/pglite_server.mjs" start "$WORK/pglite")

# run NAME ENV... : ingest, serve, measure
run() {
  name=$1
  shift
  echo "== $name"
  T0=$(date +%s.%N)
  env "$@" "$RAGD" ingest --data "$WORK/d-$name" $SRC | tail -1
  T1=$(date +%s.%N)
  echo "ingest: $(echo "$T0 $T1" | awk '{printf "%.2f s", $2-$1}')"
  env "$@" "$RAGD" serve --data "$WORK/d-$name" --listen 127.0.0.1:0 > "$WORK/s-$name" 2>&1 &
  PIDS="$PIDS $!"
  wait_ready "$WORK/s-$name"
  PORT=$(sed -n 's/^READY //p' "$WORK/s-$name")
  node "$ROOT/bench/retrieval/latency.mjs" --base "http://127.0.0.1:$PORT" --queries "$QUERIES" --n "$N"
}

run sqlite RAGD_VECTOR_INDEX=int8
run postgres RAGD_STORE="$PG" RAGD_VECTOR_INDEX=int8
run pglite RAGD_STORE="$PGLITE"
PGLITE_PORT=$PORT
env RAGD_STORE="$PGLITE" RAGD_VECTOR_INDEX=exact "$RAGD" serve --listen 127.0.0.1:0 > "$WORK/s-exact" 2>&1 &
PIDS="$PIDS $!"
wait_ready "$WORK/s-exact"
EXACT_PORT=$(sed -n 's/^READY //p' "$WORK/s-exact")
echo "== pglite HNSW vs exact (same rows)"
node "$ROOT/bench/retrieval/latency.mjs" --base "http://127.0.0.1:$PGLITE_PORT" --queries "$QUERIES" \
  --n "$(wc -l < "$QUERIES")" --modes vector --compare "http://127.0.0.1:$EXACT_PORT" --label HNSW | tail -1
