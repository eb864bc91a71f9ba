#!/bin/sh
# The cost of shared rate limits on PostgreSQL: one PG_RATE_TAKE per admitted
# request, against a SELECT 1 round trip, with pgbench on a throw-away cluster.
#
#   bench/rate_limits/run.sh [SECONDS]     (default 10 per case)
#
# Cases: SELECT 1 (one client); the UPSERT over 100 keys with 1 and 4
# clients; one key with 4 clients (its row lock serializes them).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
secs=${1:-10}
state=$(mktemp -d)
sh "$here/../../scripts/pg-test-cluster.sh" start "$state" > /dev/null
trap 'sh "$here/../../scripts/pg-test-cluster.sh" stop "$state" > /dev/null; rm -rf "$state"' EXIT
url=$(cat "$state/url")
psql "$url" -qc 'CREATE UNLOGGED TABLE rate_limits (name text COLLATE "C" PRIMARY KEY,
  window_start bigint NOT NULL, count integer NOT NULL, prev_count integer NOT NULL,
  touched_ms bigint NOT NULL)'
echo 'SELECT 1;' > "$state/select1.pgbench"
run() { # label clients script [keys]
  printf '%-28s ' "$1"
  pgbench -n -M prepared -T "$secs" -c "$2" -j "$2" ${4:+-D keys=$4} -f "$3" "$url" 2>&1 |
    awk '/latency average/ {l=$4} /^tps/ {t=$3} END {printf "latency %s ms, %d per second\n", l, t}'
}
run "SELECT 1, 1 client" 1 "$state/select1.pgbench"
run "take, 100 keys, 1 client" 1 "$here/take.pgbench" 100
run "take, 100 keys, 4 clients" 4 "$here/take.pgbench" 100
run "take, 1 key, 4 clients" 4 "$here/take.pgbench" 1
