#!/bin/sh
# bench/retrieval/run.sh - hybrid retrieval speed at growing corpus sizes.
#
#   sh bench/retrieval/run.sh [BUILD_DIR] [SIZES]     e.g. build "10000 100000"
#
# For each size: scales ../shared/eval corpora to SIZE documents (about 1.2
# chunks each), times `ragd ingest` with the hash embedder on one core
# (taskset -c 0; MB of text per CPU second, user + sys), serves the data on
# one core (taskset -c 1, RAGD_WORKERS=1), measures /v1/search p50/p99 per
# mode with sequential requests and the server's CPU time per request
# (utime + stime from /proc: wall time on a shared machine includes waiting
# for the core), the keyword index's load time and bytes (from the server's
# log), the resident memory per chunk, and the int8 index's recall@10
# against an exact index over the same data, then (bench_search_cpu, when
# BUILD_DIR has it) each search's CPU time in process, p50/p99. Results go to stdout;
# docs/retrieval.md keeps them. Prints the load average before each step.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/build}
SIZES=${2:-"10000 100000"}
RAGD=$BUILD/ragd
EVAL=${EVAL_DIR:-$ROOT/../shared/eval}
N_REQ=${N_REQ:-300}
WORK=$(mktemp -d /tmp/ragd-bench-retrieval-XXXXXX)
trap 'kill $PID1 $PID2 2>/dev/null || true; rm -rf "$WORK"' EXIT
PID1= PID2=
export RAGD_LOG_LEVEL=warn
rss_kb() { awk '/VmRSS/ {print $2}' /proc/$1/status; }
wait_ready() { while ! grep -q '^READY' "$1"; do sleep 0.2; done; }
load() { echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"; }
for N in $SIZES; do
  echo "== $N documents"
  node "$ROOT/bench/retrieval/scale_corpus.mjs" --out "$WORK/c$N" --docs "$N" \
    "$EVAL/en_stackfaq/corpus.jsonl" "$EVAL/ko_welfare_faq/corpus.jsonl" "$EVAL/en_xquad/corpus.jsonl" \
    | tee "$WORK/gen"
  TEXT_MB=$(sed -n 's/.* documents, \([0-9.]*\) MB of text/\1/p' "$WORK/gen")
  load
  /usr/bin/time -f "%e %U %S" -o "$WORK/time" taskset -c 0 "$RAGD" ingest --data "$WORK/d$N" "$WORK/c$N" | tail -1
  read -r WALL USER SYS < "$WORK/time"
  echo "ingest: $(echo "$TEXT_MB $WALL $USER $SYS" | awk '{printf "%.1f MB of text in %.1f s wall, %.1f s CPU (user %.1f + sys %.1f): %.2f MB/s per CPU second, %.2f MB/s wall", $1, $2, $3+$4, $3, $4, $1/($3+$4), $1/$2}')"
  load
  taskset -c 1 env RAGD_WORKERS=1 RAGD_LOG_LEVEL=info "$RAGD" serve --data "$WORK/d$N" --listen 127.0.0.1:0 > "$WORK/s1" 2>&1 &
  PID1=$!
  wait_ready "$WORK/s1"
  P1=$(sed -n 's/^READY //p' "$WORK/s1")
  grep -o 'keyword index: [0-9]* chunks in [0-9.]* s, [0-9]* bytes' "$WORK/s1" | head -1 | awk '{printf "%s (%.0f bytes per chunk)\n", $0, $8/$3}'
  CHUNKS=$(grep -o 'keyword index: [0-9]* chunks' "$WORK/s1" | head -1 | awk '{print $3}')
  echo "server RSS after loading: $(rss_kb $PID1) kB for $CHUNKS chunks ($(( $(rss_kb $PID1) * 1024 / CHUNKS )) bytes per chunk)"
  node "$ROOT/bench/retrieval/latency.mjs" --base "http://127.0.0.1:$P1" --queries "$WORK/c$N.queries.txt" --n "$N_REQ" --pid "$PID1"
  load
  taskset -c 0 env RAGD_WORKERS=1 RAGD_VECTOR_INDEX=exact "$RAGD" serve --data "$WORK/d$N" --listen 127.0.0.1:0 > "$WORK/s2" 2>&1 &
  PID2=$!
  wait_ready "$WORK/s2"
  P2=$(sed -n 's/^READY //p' "$WORK/s2")
  node "$ROOT/bench/retrieval/latency.mjs" --base "http://127.0.0.1:$P2" --queries "$WORK/c$N.queries.txt" --n "$N_REQ" --modes vector --pid "$PID2" \
    | sed 's/^vector  /vector (exact index)/'
  node "$ROOT/bench/retrieval/latency.mjs" --base "http://127.0.0.1:$P1" --queries "$WORK/c$N.queries.txt" --n 200 --modes vector \
    --compare "http://127.0.0.1:$P2" | tail -1
  kill $PID1 $PID2; wait $PID1 $PID2 2>/dev/null || true; PID1= PID2=
  if [ -x "$BUILD/bench_search_cpu" ]; then
    load
    taskset -c 1 env RAGD_WORKERS=1 "$BUILD/bench_search_cpu" --n "$N_REQ" "$WORK/d$N" "$WORK/c$N.queries.txt"
  fi
done
