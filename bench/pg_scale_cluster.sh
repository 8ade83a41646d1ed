#!/usr/bin/env bash
# A PostgreSQL cluster for bench/scale.sh, by hand only: durable (fsync, full_page_writes and
# synchronous_commit on, as a production primary), tuned for a bulk load of millions of devices.
# Unlike tests/pg_cluster.sh (fsync off, test data only) its figures are those of a real server.
#
#   bench/pg_scale_cluster.sh start DIR   initdb into DIR/data, start it (socket in DIR), create
#                                         the database `scale`, print its URL
#   bench/pg_scale_cluster.sh stop DIR    stop it and remove DIR
#
# The settings (docs/performance.md records them beside the figures):
#   shared_buffers      IOTPKI_PG_SHARED_BUFFERS (default 4GB): both random-keyed unique
#                       indexes of a 10M fleet (devices.device_id, certificates.serial) stay cached
#   max_wal_size        64GB and checkpoint_timeout 30min: no checkpoint forced by WAL volume
#                       during a run, so a page's full image is logged once per run, not per
#                       checkpoint
#   wal_compression     lz4: the full-page images that remain are compressed
#   wal_buffers 64MB, maintenance_work_mem 1GB, autovacuum on (as in production)
set -euo pipefail
cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r | head -1)
if [ -z "$bin" ]; then
  echo "PostgreSQL's server binaries are not installed (scripts/setup.sh installs them)" >&2
  exit 1
fi
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case $cmd in
  start)
    mkdir -p "$dir"
    chmod 700 "$dir"
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale \
      >"$dir/initdb.log"
    cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$dir'
shared_buffers = ${IOTPKI_PG_SHARED_BUFFERS:-4GB}
max_wal_size = 64GB
checkpoint_timeout = 30min
wal_compression = lz4
wal_buffers = 64MB
maintenance_work_mem = 1GB
fsync = on
full_page_writes = on
synchronous_commit = on
EOF
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 120 start >/dev/null
    psql -qAt "postgresql:///postgres?host=$dir&user=postgres" -c "CREATE DATABASE scale"
    echo "postgresql:///scale?host=$dir&user=postgres"
    ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
