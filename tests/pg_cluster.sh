#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests, listening only on a Unix socket in its own directory
# (no TCP port, so clusters of several test runs never collide).
#
#   tests/pg_cluster.sh start DIR   initdb into DIR/data, start the server with its socket in DIR,
#                                   print the URL of its `postgres` database
#   tests/pg_cluster.sh stop DIR    stop the server and remove DIR
#   tests/pg_cluster.sh url DIR DB  the URL of database DB of the cluster in DIR
#
# As root (CI runs as root; initdb refuses root) the server runs as the `postgres` user that
# Debian's package creates, through runuser. The cluster trusts local connections and runs with
# fsync off: it holds test data only. Without PostgreSQL's server binaries (scripts/setup.sh
# installs them) `start` says so and exits 3; with CI=true that is a failure (exit 1), so that CI
# never passes with the PostgreSQL tests skipped.
set -euo pipefail
cmd=${1:-}
dir=${2:-}
port=5432  # names the socket file only: the directory is private

if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop|url DIR [DB]" >&2
  exit 2
fi

bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      echo "$d"
      return 0
    fi
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v initdb)"
    return 0
  fi
  return 1
}

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

url() { echo "postgresql:///$1?host=$dir&port=$port&user=postgres"; }

case $cmd in
  start)
    if ! bin=$(bindir); then
      echo "pg_cluster: PostgreSQL's server binaries (initdb, pg_ctl) are not installed;" \
        "scripts/setup.sh installs them (Debian package postgresql)" >&2
      if [ "${CI:-}" = "true" ]; then exit 1; fi
      exit 3
    fi
    # initdb's helpers redirect to /dev/null; a file renamed over it (a command writing its
    # output "atomically" to /dev/null as root) breaks them with a misleading message.
    if [ ! -c /dev/null ]; then
      echo "pg_cluster: /dev/null is not a character device (a file was moved over it);" \
        "restore it with: rm /dev/null && mknod -m 666 /dev/null c 1 3" >&2
      exit 1
    fi
    # A cluster left behind by an interrupted run is replaced.
    if [ -d "$dir" ]; then bash "$0" stop "$dir"; fi
    mkdir -p "$dir"
    chmod 700 "$dir"
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
    if ! as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale \
      >"$dir/initdb.log" 2>&1; then
      cat "$dir/initdb.log" >&2
      exit 1
    fi
    if ! as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-k $dir -p $port -c listen_addresses= -c fsync=off -c synchronous_commit=off \
          -c full_page_writes=off -c max_connections=300" start >/dev/null; then
      cat "$dir/server.log" >&2
      exit 1
    fi
    url postgres
    ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ] && bin=$(bindir); then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  url)
    url "${3:-postgres}"
    ;;
  *)
    echo "usage: $0 start|stop|url DIR [DB]" >&2
    exit 2
    ;;
esac
