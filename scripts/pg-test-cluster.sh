#!/bin/sh
# A throw-away PostgreSQL cluster for the tests: Debian's postgresql server,
# initdb into a temporary folder, listening on a loopback port only, run as an
# unprivileged user (postgres refuses to run as root).
#
#   scripts/pg-test-cluster.sh start STATE [PORT]  initdb into a new /tmp folder
#                                                  and start on PORT (default: a
#                                                  free one); the URL goes to
#                                                  STATE/url and to stdout
#   scripts/pg-test-cluster.sh stop STATE          stop it and remove its folder
#
# The database is "ragd_test", owner and login "ragd" (trust authentication,
# 127.0.0.1 only). The cluster lives under /tmp so that the unprivileged user
# can reach it wherever the checkout is; STATE only records where.
set -eu

PGBIN=""
for d in /usr/lib/postgresql/*/bin; do
  if [ -x "$d/initdb" ]; then PGBIN="$d"; fi
done
if [ -z "$PGBIN" ]; then
  echo "pg-test-cluster: no PostgreSQL server found (apt-get install postgresql)" >&2
  exit 1
fi

# As root, run the server as nobody; otherwise as ourselves.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u nobody -- "$@"
  else
    "$@"
  fi
}

cmd="${1:-}"
state="${2:-}"
if [ -z "$cmd" ] || [ -z "$state" ]; then
  echo "usage: $0 start STATE [PORT] | stop STATE" >&2
  exit 2
fi

stop_cluster() {
  if [ -f "$state/datadir" ]; then
    dir="$(cat "$state/datadir")"
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    case "$dir" in /tmp/ragd-pg-*) rm -rf "$dir" ;; esac
    rm -f "$state/datadir" "$state/url"
  fi
}

case "$cmd" in
start)
  mkdir -p "$state"
  stop_cluster # a cluster a crashed run left behind
  dir="$(mktemp -d /tmp/ragd-pg-XXXXXX)"
  echo "$dir" >"$state/datadir"
  if [ "$(id -u)" -eq 0 ]; then chown nobody:nogroup "$dir"; fi
  as_owner "$PGBIN/initdb" -D "$dir/data" -U ragd --auth=trust -E UTF8 --locale=C.UTF-8 \
    >"$state/initdb.log" 2>&1 || { cat "$state/initdb.log" >&2; exit 1; }
  # fsync off: a test cluster is thrown away; durability is not what it tests.
  tries=0
  while :; do
    port="${3:-$(shuf -i 20000-60000 -n 1)}"
    if as_owner "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
      start >/dev/null; then
      break
    fi
    tries=$((tries + 1))
    if [ -n "${3:-}" ] || [ "$tries" -ge 5 ]; then
      cat "$dir/server.log" >&2
      exit 1
    fi
  done
  as_owner "$PGBIN/createdb" -h 127.0.0.1 -p "$port" -U ragd ragd_test
  echo "postgres://ragd@127.0.0.1:$port/ragd_test" >"$state/url"
  cat "$state/url"
  ;;
stop)
  stop_cluster
  ;;
*)
  echo "usage: $0 start STATE [PORT] | stop STATE" >&2
  exit 2
  ;;
esac
