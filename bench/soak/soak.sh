#!/usr/bin/env bash
# soak.sh - a bounded soak of ragd on loopback: mixed traffic with injected
# upstream faults and random client disconnects, reporting outcomes by kind,
# ragd's RSS and open fds at the start and the end. A benchmark, not a test:
# run it by hand (docs/reliability.md has the numbers and the command).
#
#   bench/soak/soak.sh [-c CONCURRENCY] [-d MINUTES] [-f FAULT_PCT]
#                      [-x DISCONNECT_PCT] [-o OUT_DIR]
#
# Defaults: -c 1000 -d 30 -f 5 -x 5, -o a new folder under /tmp. RAGD_BIN
# (default build/ragd) picks the binary; TOKEN_DELAY_MS (default 100) paces
# the fake upstream's tokens, so one healthy answer takes about 3 s.
#
# What runs, all on 127.0.0.1 and all stopped when the script exits:
#   primary  tests/fakes/fake_openai.mjs, faults chosen per request by the
#            client through `FAKE:` lines (see bench/soak/client.mjs)
#   backup   a second fake_openai with --directives 0 (always healthy)
#   ragd     serve, chain primary,backup + the extractive last resort, short
#            timeouts, the sample knowledge base
#   client   bench/soak/client.mjs, bounded by the duration plus its
#            per-request timeout
# A sampler writes samples.csv (seconds, VmRSS kB, open fds, threads) every
# 5 s. Baseline and end are both taken the same way: no traffic for 7 s (the
# fakes drop idle keep-alive connections after 5 s), then three sequential
# requests 1.1 s apart (curl prunes its dead cached connections on a new
# one), then a sample.
set -euo pipefail

CONCURRENCY=1000
MINUTES=30
FAULT_PCT=5
DISCONNECT_PCT=5
OUT=""
while getopts "c:d:f:x:o:h" opt; do
  case "$opt" in
    c) CONCURRENCY=$OPTARG ;;
    d) MINUTES=$OPTARG ;;
    f) FAULT_PCT=$OPTARG ;;
    x) DISCONNECT_PCT=$OPTARG ;;
    o) OUT=$OPTARG ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
  esac
done

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RAGD_BIN=${RAGD_BIN:-$ROOT/build/ragd}
TOKEN_DELAY_MS=${TOKEN_DELAY_MS:-100}
OUT=${OUT:-$(mktemp -d /tmp/ragd-soak.XXXXXX)}
mkdir -p "$OUT"
DATA="$OUT/data"
DURATION_S=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')
# A healthy answer is about 33 events TOKEN_DELAY_MS apart: the total
# upstream timeout and the client's own limit must leave room for it, or
# every healthy answer would end in upstream_timeout and the breakers would
# count it as a failure.
LLM_TOTAL_MS=$((TOKEN_DELAY_MS * 40 + 20000))
[ "$LLM_TOTAL_MS" -lt 30000 ] && LLM_TOTAL_MS=30000
REQUEST_TIMEOUT_S=$((LLM_TOTAL_MS / 1000 + 60))

[ -x "$RAGD_BIN" ] || { echo "soak: no binary at $RAGD_BIN (make build first)" >&2; exit 2; }
# Two sockets per stream in ragd (client + upstream), and the client's own.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# Starts a fake upstream and sets FAKE_PORT (not in a subshell: the trap
# must know its pid).
start_fake() {
  local name=$1
  shift
  node "$ROOT/tests/fakes/fake_openai.mjs" --port 0 "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" &
  PIDS+=($!)
  for _ in $(seq 100); do
    if grep -q '^LISTENING' "$OUT/$name.out"; then
      FAKE_PORT=$(sed -n 's/^LISTENING //p' "$OUT/$name.out")
      return
    fi
    sleep 0.1
  done
  echo "soak: fake $name did not start" >&2
  exit 1
}

TEXT=$(printf ' Refunds are issued within 3 business days of approval [1].%.0s' 1 2 3)
start_fake primary --text "$TEXT" --delay-ms "$TOKEN_DELAY_MS" --split random
PRIMARY=$FAKE_PORT
start_fake backup --text "$TEXT" --delay-ms "$TOKEN_DELAY_MS" --directives 0
BACKUP=$FAKE_PORT

"$RAGD_BIN" ingest --data "$DATA" "$ROOT/examples/kb/en" "$ROOT/examples/kb/ko" >"$OUT/ingest.log" 2>&1

# ragd refuses unknown RAGD_* variables: start it from a clean set.
env $(env | sed -n 's/^\(RAGD_[A-Z0-9_]*\)=.*/-u \1/p') \
  RAGD_LOG_LEVEL=warn \
  RAGD_LLM_CHAIN=primary,backup \
  RAGD_LLM_PRIMARY_PROVIDER=openai RAGD_LLM_PRIMARY_BASE_URL="http://127.0.0.1:$PRIMARY/v1" \
  RAGD_LLM_PRIMARY_MODEL=model-a \
  RAGD_LLM_BACKUP_PROVIDER=openai RAGD_LLM_BACKUP_BASE_URL="http://127.0.0.1:$BACKUP/v1" \
  RAGD_LLM_BACKUP_MODEL=model-b \
  RAGD_LLM_CONNECT_TIMEOUT_MS=2000 RAGD_LLM_FIRST_TOKEN_TIMEOUT_MS=5000 \
  RAGD_LLM_IDLE_TIMEOUT_MS=3000 RAGD_LLM_TIMEOUT_MS=$LLM_TOTAL_MS \
  RAGD_LLM_RETRIES=2 RAGD_LLM_RETRY_BASE_MS=100 \
  "$RAGD_BIN" serve --listen 127.0.0.1:0 --data "$DATA" >"$OUT/ragd.out" 2>"$OUT/ragd.err" &
RAGD_PID=$!
PIDS+=("$RAGD_PID")
for _ in $(seq 100); do
  grep -qs "^READY" "$OUT/ragd.out" && break
  sleep 0.1
done
PORT=$(sed -n 's/^READY //p' "$OUT/ragd.out")
[ -n "$PORT" ] || { echo "soak: ragd did not start: $(cat "$OUT/ragd.err")" >&2; exit 1; }
BASE="http://127.0.0.1:$PORT"

sample() { # seconds rss_kb fds threads
  local rss thr fds
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$RAGD_PID/status")
  thr=$(awk '/^Threads:/ { print $2 }' "/proc/$RAGD_PID/status")
  fds=$(ls "/proc/$RAGD_PID/fd" | wc -l)
  echo "$SECONDS,$rss,$fds,$thr"
}

# The same quiet point before and after the traffic; the three requests ask
# the primary for an unpaced answer (a FAKE: line) so that they take
# milliseconds, not TOKEN_DELAY_MS per token.
quiesce() {
  sleep 7
  for _ in 1 2 3; do
    curl -sS -o /dev/null -H 'content-type: application/json' \
      -d '{"message":"How long do refunds take?\nFAKE: {\"delay_ms\":0}"}' "$BASE/v1/chat"
    sleep 1.1
  done
}

echo "soak: ragd pid $RAGD_PID on $BASE; primary :$PRIMARY, backup :$BACKUP; output in $OUT" >&2
quiesce
START=$(sample)
echo "seconds,rss_kb,fds,threads" >"$OUT/samples.csv"
echo "$START" >>"$OUT/samples.csv"
( while kill -0 "$RAGD_PID" 2>/dev/null; do sleep 5; sample >>"$OUT/samples.csv" 2>/dev/null || true; done ) &
PIDS+=($!)

timeout $((DURATION_S + REQUEST_TIMEOUT_S + 60)) node "$ROOT/bench/soak/client.mjs" \
  --base "$BASE" --concurrency "$CONCURRENCY" --duration-s "$DURATION_S" \
  --fault-pct "$FAULT_PCT" --disconnect-pct "$DISCONNECT_PCT" \
  --request-timeout-s "$REQUEST_TIMEOUT_S" --report "$OUT/client.json" >/dev/null 2>"$OUT/client.err" || {
  echo "soak: the client failed: $(tail -5 "$OUT/client.err")" >&2
  exit 1
}

PEAK=$(awk -F, 'NR > 1 { if ($2 > r) r = $2; if ($3 > f) f = $3 } END { print r "," f }' "$OUT/samples.csv")
quiesce
END=$(sample)
kill -TERM "$RAGD_PID"
set +e
wait "$RAGD_PID"
EXIT=$?
set -e
SANITIZER=$(grep -c -E 'Sanitizer|runtime error:' "$OUT/ragd.err" || true)

IFS=, read -r _ rss0 fd0 thr0 <<<"$START"
IFS=, read -r _ rss1 fd1 thr1 <<<"$END"
IFS=, read -r rssp fdp <<<"$PEAK"
{
  echo "{"
  echo "  \"command\": \"bench/soak/soak.sh -c $CONCURRENCY -d $MINUTES -f $FAULT_PCT -x $DISCONNECT_PCT\","
  echo "  \"rss_kb\": {\"start\": $rss0, \"peak\": $rssp, \"end\": $rss1},"
  echo "  \"fds\": {\"start\": $fd0, \"peak\": $fdp, \"end\": $fd1},"
  echo "  \"threads\": {\"start\": $thr0, \"end\": $thr1},"
  echo "  \"ragd_exit\": $EXIT, \"sanitizer_reports\": $SANITIZER,"
  echo "  \"client\": $(cat "$OUT/client.json")"
  echo "}"
} >"$OUT/report.json"
cat "$OUT/report.json"
