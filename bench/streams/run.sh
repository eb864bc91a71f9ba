#!/bin/sh
# bench/streams/run.sh - many concurrent answer streams through ragd, on
# loopback, against a fake upstream that drips tokens.
#
#   sh bench/streams/run.sh [path/to/ragd] [COUNTS]
#
#   path/to/ragd   default build/ragd (build it first: `make build`)
#   COUNTS         space-separated stream counts, default "100 1000 10000"
#
# Environment (all optional):
#   TOKENS=40       content chunks per answer from the fake upstream
#   DELAY_MS=250    the fake's wait before each event after its first: so its
#                   own delay before the first token is DELAY_MS, and an
#                   answer lasts about (TOKENS+2) * DELAY_MS
#   RATE=2000       new connections per second (0: all at once)
#   MODE=post       post: POST /v1/chat; get: GET /v1/chat/stream
#   H2=1            the fake upstream speaks HTTP/2 over TLS (as real
#                   providers do): bench/streams/fake_upstream_h2.mjs on node,
#                   with a throw-away self-signed certificate made here by
#                   `openssl req` and trusted by ragd through RAGD_LLM_CA_FILE;
#                   ragd multiplexes the answers over a few connections (one
#                   descriptor per stream instead of two). The fake's stats
#                   line then says how many TLS connections it saw.
#   SMOKE=1         a quick check that the tools work (used by the test
#                   suite): 20 streams, short answers, no table
#   PERF=PREFIX     record a perf profile of ragd (all threads, call
#                   graphs) during each run into PREFIX.N.data
#   PERF_CG="--call-graph dwarf"  perf's call-graph option (default -g, frame
#                   pointers, which this build does not keep)
#   LOGS=PREFIX     keep ragd's log (stderr, at RAGD_LOG_LEVEL, default error)
#                   of each run in PREFIX.N.ragd.log
#   THREADS=1       also print, per ragd and fake-upstream thread, CPU seconds
#                   and seconds spent runnable but waiting for a CPU
#                   (/proc/.../schedstat), and the load generator's own CPU:
#                   on a shared machine, tells ragd's cost from the queue
#
# Builds bench/streams/loadgen.c and fake_upstream.c with cc, raises the open
# file limit (ragd holds two descriptors per stream: the client's and the
# upstream's), ingests the sample knowledge base, and for each count: starts
# a fresh ragd and fake, reads ragd's idle VmRSS and its CPU time
# (/proc/PID/stat utime+stime) before and after the run, and prints one table
# row. RSS per stream is (VmRSS while every stream is open - idle VmRSS) / N.
# CPU per 1,000 events is ragd's CPU seconds over the events the clients
# received, divided by 1,000.
#
# The same per-stream cost is also read the way an operator would, from
# ragd's own GET /metrics (issue 9): once before the run (idle) and once a
# second during it (curl, in the background); the sample with the most open
# streams (ragd_http_open_streams) gives RSS per open stream =
# (process_resident_memory_bytes - idle) / open and fds per open stream =
# (process_open_fds - idle) / open. Those samples are kept in
# $METRICS_OUT.N.tsv when METRICS_OUT is set.
set -eu
cd "$(dirname "$0")/../.."
RAGD=${1:-build/ragd}
COUNTS=${2:-"100 1000 10000"}
TOKENS=${TOKENS:-40}
DELAY_MS=${DELAY_MS:-250}
RATE=${RATE:-2000}
MODE=${MODE:-post}
SMOKE=${SMOKE:-0}
if [ "$SMOKE" = 1 ]; then
  COUNTS=20
  TOKENS=3
  DELAY_MS=20
  RATE=0
fi

WORK=$(mktemp -d)
RAGD_PID=
FAKE_PID=
SCRAPE_PID=
cleanup() {
  [ -n "$SCRAPE_PID" ] && kill "$SCRAPE_PID" 2>/dev/null || :
  [ -n "$RAGD_PID" ] && kill "$RAGD_PID" 2>/dev/null || :
  [ -n "$FAKE_PID" ] && kill "$FAKE_PID" 2>/dev/null || :
  wait 2>/dev/null || :
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

CC=${CC:-cc}
$CC -std=c11 -O2 -Wall -Wextra -Werror -o "$WORK/loadgen" bench/streams/loadgen.c
$CC -std=c11 -O2 -Wall -Wextra -Werror -o "$WORK/fake_upstream" bench/streams/fake_upstream.c
H2=${H2:-0}
SCHEME=http
STATS_CURL="curl -s"
RAGD_TLS_ENV=
if [ "$H2" = 1 ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2> /dev/null
  SCHEME=https
  STATS_CURL="curl -s --http1.1 --cacert $WORK/cert.pem"
  RAGD_TLS_ENV="RAGD_LLM_CA_FILE=$WORK/cert.pem"
fi
start_fake() {
  if [ "$H2" = 1 ]; then
    node bench/streams/fake_upstream_h2.mjs --port 0 --tokens "$TOKENS" --delay-ms "$DELAY_MS" \
      --cert "$WORK/cert.pem" --key "$WORK/key.pem" > "$WORK/fake.out" 2> "$WORK/fake.err" &
  else
    "$WORK/fake_upstream" --port 0 --tokens "$TOKENS" --delay-ms "$DELAY_MS" \
      > "$WORK/fake.out" 2> "$WORK/fake.err" &
  fi
  FAKE_PID=$!
}

# Two descriptors per stream in ragd, plus room. Raising the hard limit needs
# root; otherwise the soft limit goes up to the hard one.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -H -n)"

# Waits for "WORD <port>" on the first line of a file.
wait_port() { # file word
  i=0
  while [ $i -lt 200 ]; do
    p=$(sed -n "s/^$2 \([0-9]*\)\$/\1/p" "$1" | head -1)
    if [ -n "$p" ]; then echo "$p"; return 0; fi
    sleep 0.05
    i=$((i + 1))
  done
  echo "bench: no $2 line in $1" >&2
  return 1
}

cpu_ticks() { # pid: utime + stime, in clock ticks
  sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# One /metrics sample: "open_streams rss_bytes open_fds" (nothing on failure).
scrape() { # port
  curl -s -m 10 "http://127.0.0.1:$1/metrics" | awk '
    $1 == "ragd_http_open_streams" { o = $2 }
    $1 == "process_resident_memory_bytes" { r = $2 }
    $1 == "process_open_fds" { f = $2 }
    END { if (r != "" && f != "") printf "%d %d %d\n", o, r, f }'
}
HZ=$(getconf CLK_TCK)

DATA="$WORK/data"
RAGD_LOG_LEVEL=warn "$RAGD" ingest --data "$DATA" examples/kb/en examples/kb/ko > /dev/null

if [ "$SMOKE" != 1 ]; then
  echo "ragd $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores;" \
    "fake upstream: $TOKENS tokens, ${DELAY_MS} ms apart, $([ "$H2" = 1 ] && echo 'HTTP/2 over TLS' || echo 'HTTP/1.1');" \
    "$RATE new streams/s; mode $MODE; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' streams errors \
    "first event p50 / p99 (ms)" "first token p50 / p99 (ms, minus upstream delay)" \
    "events relayed" "ragd CPU s" "CPU s / 1,000 events" "RSS idle (MiB)" "RSS / open stream (KiB)" \
    "most open at a /metrics scrape" "/metrics RSS / open stream (KiB)" "/metrics fds / open stream"
  echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
fi
LG_WRAP=
# THREADS=1: per-thread CPU and run-queue wait of ragd and the fake, and the
# load generator's own CPU, on stderr (is the machine, or a tool, the limit?)
[ -n "${THREADS:-}" ] && [ -x /usr/bin/time ] && LG_WRAP="/usr/bin/time -f bench:_loadgen_%U_user_%S_sys_s"
status=0
for N in $COUNTS; do
  start_fake
  FAKE_PORT=$(wait_port "$WORK/fake.out" LISTENING)
  env $RAGD_TLS_ENV RAGD_LOG_LEVEL=${RAGD_LOG_LEVEL:-error} RAGD_LLM_BASE_URL="$SCHEME://127.0.0.1:$FAKE_PORT/v1" \
    RAGD_LLM_API_KEY=sk-bench RAGD_LLM_MODEL=gpt-fake-1 \
    RAGD_MAX_CONNECTIONS=$((N + 1024)) \
    "$RAGD" serve --data "$DATA" --listen 127.0.0.1:0 > "$WORK/ragd.out" 2> "$WORK/ragd.err" &
  RAGD_PID=$!
  PORT=$(wait_port "$WORK/ragd.out" READY)
  sleep 0.5
  idle_kb=$(rss_kb "$RAGD_PID")
  m_idle=$(scrape "$PORT")
  : > "$WORK/metrics.tsv"
  ( while :; do scrape "$PORT" >> "$WORK/metrics.tsv"; sleep 1; done ) &
  SCRAPE_PID=$!
  cpu0=$(cpu_ticks "$RAGD_PID")
  PERF_PID=
  if [ -n "${PERF:-}" ]; then
    perf record -q -F 499 ${PERF_CG:--g} -p "$RAGD_PID" -o "$PERF.$N.data" > /dev/null 2>&1 &
    PERF_PID=$!
  fi
  set +e
  $LG_WRAP "$WORK/loadgen" --port "$PORT" --streams "$N" --rate "$RATE" --mode "$MODE" \
    --upstream-delay-ms "$DELAY_MS" --pid "$RAGD_PID" --timeout-s 600 \
    > "$WORK/lg.out" 2> "$WORK/lg.err"
  lg_status=$?
  set -e
  cpu1=$(cpu_ticks "$RAGD_PID")
  kill "$SCRAPE_PID" 2>/dev/null || :
  wait "$SCRAPE_PID" 2>/dev/null || :
  SCRAPE_PID=
  [ -n "${METRICS_OUT:-}" ] && { echo "idle $m_idle"; cat "$WORK/metrics.tsv"; } > "$METRICS_OUT.$N.tsv"
  # the sample with the most open streams
  m_peak=$(sort -n -k1,1 "$WORK/metrics.tsv" | tail -1)
  if [ -n "${THREADS:-}" ]; then
    # schedstat: ns on a CPU, ns runnable but waiting for one
    for t in /proc/"$RAGD_PID"/task/* /proc/"$FAKE_PID"/task/*; do
      echo "bench: thread $(basename "$t") $(cat "$t/comm"): $(awk '{ printf "%.2f CPU s, %.2f s waiting for a CPU", $1 / 1e9, $2 / 1e9 }' "$t/schedstat")" >&2
    done
  fi
  if [ -n "$PERF_PID" ]; then kill -INT "$PERF_PID"; wait "$PERF_PID" || :; fi
  cat "$WORK/lg.err" >&2
  [ $lg_status -eq 0 ] || status=1
  upstream=$($STATS_CURL "$SCHEME://127.0.0.1:$FAKE_PORT/__admin/stats" || echo '?')
  echo "bench: $N streams: fake upstream $upstream" >&2
  kill "$RAGD_PID"
  wait "$RAGD_PID" || { echo "bench: ragd exited badly:" >&2; cat "$WORK/ragd.err" >&2; status=1; }
  [ -n "${LOGS:-}" ] && cp "$WORK/ragd.err" "$LOGS.$N.ragd.log"
  RAGD_PID=
  kill "$FAKE_PID"
  wait "$FAKE_PID" || :
  FAKE_PID=
  grep -q '^RESULT ' "$WORK/lg.out" || { echo "bench: loadgen printed no result" >&2; exit 1; }
  if [ "$SMOKE" = 1 ]; then
    cat "$WORK/lg.out"
    continue
  fi
  awk -v idle="$idle_kb" -v c0="$cpu0" -v c1="$cpu1" -v hz="$HZ" -v midle="$m_idle" \
    -v mpeak="$m_peak" '
    /^RESULT / {
      for (i = 2; i <= NF; i++) { split($i, kv, "="); r[kv[1]] = kv[2] }
      errs = r["errors"] + 0 ? r["errors"] : "0"
      kinds = ""
      for (k in r) if (k ~ /^err_/) kinds = kinds " " substr(k, 5) "=" r[k]
      if (kinds != "") errs = errs " (" substr(kinds, 2) ")"
      cpu = (c1 - c0) / hz
      per = r["events"] > 0 ? cpu / (r["events"] / 1000) : 0
      rss = r["rss_all_open_kb"] > 0 ? sprintf("%.1f", (r["rss_all_open_kb"] - idle) / r["streams"]) : "n/a"
      split(midle, mi, " ")
      split(mpeak, mp, " ")
      mopen = mp[1] + 0
      mrss = mopen > 0 ? sprintf("%.1f", (mp[2] - mi[2]) / 1024 / mopen) : "n/a"
      mfds = mopen > 0 ? sprintf("%.2f", (mp[3] - mi[3]) / mopen) : "n/a"
      printf "| %s | %s | %s / %s | %s / %s | %s | %.2f | %.4f | %.1f | %s | %d | %s | %s |\n",
        r["streams"], errs, r["ttfe_p50_ms"], r["ttfe_p99_ms"], r["ttft_p50_ms"],
        r["ttft_p99_ms"], r["events"], cpu, per, idle / 1024, rss, mopen, mrss, mfds
    }' "$WORK/lg.out"
done
exit $status
