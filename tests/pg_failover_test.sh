#!/usr/bin/env bash
# A PostgreSQL primary that fails (issue 17): a primary and a synchronous standby (streaming
# replication, synchronous_commit = on, synchronous_standby_names), two `iotpki serve` nodes on
# a libpq multi-host URL with target_session_attrs=read-write, an enrollment load from clients
# that retry; the primary's whole process group is killed (SIGKILL, as a lost machine) and the
# standby promoted with `pg_ctl promote`, as a failover tool would. The nodes reconnect and carry
# on; every certificate a client received is in the new primary (no certificate was reported
# issued that the standby did not hold); no token has two certificates; the audit chain verifies.
#
# The promotion is the test's own `pg_ctl promote` rather than pg_auto_failover: that tool needs
# a monitor and a keeper per node (three more processes here) and notices a lost primary after
# its health checks time out (tens of seconds); what iotpki must do is the same either way:
# follow the URL's hosts to whichever is primary now.
#
# Runs only with IOTPKI_TEST_HA=1 (otherwise exit 3: skipped); its clusters are its own, on
# Unix sockets in private directories. Usage: pg_failover_test.sh PATH_TO_IOTPKI
if [ "${IOTPKI_TEST_HA:-}" != "1" ]; then
  echo "IOTPKI_TEST_HA is not 1: skipped"
  exit 3
fi
source "$(dirname "$0")/lib.sh"
IOTPKI=$1
CA="$WORK/ca"
source "$(dirname "$0")/pg_lib.sh"

BIN=""
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
  if [ -x "$d/initdb" ] && [ -x "$d/pg_basebackup" ]; then BIN=$d && break; fi
done
if [ -z "$BIN" ]; then
  echo "PostgreSQL's server binaries are not installed (scripts/setup.sh installs them): skipped"
  exit 3
fi
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
PG=$(mktemp -d /tmp/iotpki-pg-ha.XXXXXX)
chmod 755 "$PG"
P="$PG/primary"
S="$PG/standby"
mkdir -m 700 "$P" "$S"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$P" "$S"; fi
cleanup() {
  stop_nodes
  local dir
  for dir in "$P" "$S"; do
    [ -f "$dir/data/postmaster.pid" ] &&
      as_owner "$BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
  done
  rm -rf "$PG" "$WORK"
}
trap cleanup EXIT
# pg_start DIR NAME: the cluster in DIR/data, its socket in DIR.
pg_start() {
  as_owner "$BIN/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 60 -o "-k $1 -p 5432 \
    -c listen_addresses= -c cluster_name=$2 -c max_connections=100" start >/dev/null || {
    cat "$1/server.log" >&2
    exit 1
  }
}
url_of() { echo "postgresql:///$2?host=$1&port=5432&user=postgres"; }

echo "# $(date +%T) primary and standby"
as_owner "$BIN/initdb" -D "$P/data" -U postgres --auth=trust -E UTF8 --no-locale \
  >"$P/initdb.log" 2>&1 || {
  cat "$P/initdb.log" >&2
  exit 1
}
# A commit returns once the standby has it (remote_flush): what a client was told is issued
# survives the loss of the primary.
cat >>"$P/data/postgresql.conf" <<'EOF'
synchronous_commit = on
synchronous_standby_names = 'standby1'
wal_level = replica
max_wal_senders = 4
EOF
pg_start "$P" primary
as_owner "$BIN/pg_basebackup" -h "$P" -p 5432 -U postgres -D "$S/data" -R -X stream \
  >"$S/basebackup.log" 2>&1 || {
  cat "$S/basebackup.log" >&2
  exit 1
}
pg_start "$S" standby1
for _ in $(seq 100); do
  state=$(psql -qAt "$(url_of "$P" postgres)" \
    -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'")
  [ "$state" = sync ] && break
  sleep 0.1
done
equal "the standby replicates synchronously" "$state" "sync"
equal "the standby is in recovery" \
  "$(psql -qAt "$(url_of "$S" postgres)" -c "SELECT pg_is_in_recovery()")" "t"

psql -qAt "$(url_of "$P" postgres)" -c "CREATE DATABASE iotpki TEMPLATE template0"
# Both hosts, the primary first; each connection goes to whichever accepts writes.
STORE_URL="postgresql:///iotpki?host=$P,$S&port=5432,5432&user=postgres"
STORE_URL+="&target_session_attrs=read-write"
"$IOTPKI" ca init --dir "$CA" --org FailCo --store "$STORE_URL" >/dev/null || exit 1
mapfile -t DEVS < <(prepare_devices F 32)
equal "32 devices provisioned" "${#DEVS[@]}" "32"
start_node a
start_node b

echo "# $(date +%T) load, then the primary is lost"
: >"$WORK/load.log"
for w in 0 1 2 3; do
  (
    for ((k = w; k < 32; k += 4)); do
      if [ $((k % 2)) -eq 0 ]; then enroll "${DEVS[$k]}" "$WORK/load.log" a b; else
        enroll "${DEVS[$k]}" "$WORK/load.log" b a
      fi
    done
  ) &
  CLIENTS+=" $!"
done
for _ in $(seq 600); do
  [ "$(wc -l <"$WORK/load.log")" -ge 8 ] && break
  sleep 0.05
done
# The postmaster and all its children at once, as a lost machine.
primary_pid=$(head -1 "$P/data/postmaster.pid")
# shellcheck disable=SC2046
kill -KILL "$primary_pid" $(ps -o pid= --ppid "$primary_pid")
lost_at=$(wc -l <"$WORK/load.log")
if [ "$lost_at" -lt 32 ]; then pass "the primary was lost mid-load ($lost_at of 32 done)"; else
  fail "the primary was lost after the load ended"
fi
# A failover tool's decision, after it has seen the primary gone.
sleep 1
check "the standby is promoted" as_owner "$BIN/pg_ctl" -D "$S/data" -w -t 60 promote
for _ in $(seq 100); do
  [ "$(psql -qAt "$(url_of "$S" postgres)" -c "SELECT pg_is_in_recovery()")" = f ] && break
  sleep 0.1
done
# The new primary has no standby: its copy of synchronous_standby_names would hold every commit
# waiting for one. A failover tool does the same (pg_auto_failover drops to async when the
# secondary is gone), and adds it back when a new standby has caught up.
psql -qAt "$(url_of "$S" postgres)" -c "ALTER SYSTEM SET synchronous_standby_names = ''" \
  -c "SELECT pg_reload_conf()" >/dev/null
rc=0
for pid in $CLIENTS; do wait "$pid" || rc=1; done
equal "every client enrolled through the failover" "$rc" "0"
equal "32 certificates received" "$(wc -l <"$WORK/load.log")" "32"
after=$(awk -v n="$((lost_at + 4))" 'NR > n' "$WORK/load.log" | cut -d' ' -f3 | sort -u |
  tr -d '\n')
equal "both nodes answered after the failover" "$after" "ab"
# Between the loss and the promotion a node answers 503 (the store unavailable), never 500.
equal "the nodes answered 503 while there was no primary" \
  "$(cut -d' ' -f1 "$WORK/load.log.refused" 2>/dev/null | sort -u | tr '\n' ' ')" "503 "
for n in a b; do
  kill -0 "${NODE_PID[$n]}" 2>/dev/null && pass "node $n is still running" ||
    fail "node $n exited"
done

echo "# $(date +%T) the new primary"
STORE_URL=$(url_of "$S" iotpki)
cut -d' ' -f1 "$WORK/load.log" | sort >"$WORK/received"
store_sql "SELECT serial FROM certificates WHERE profile = 'ldevid'" | sort >"$WORK/stored"
equal "every certificate a client received is in the new primary" \
  "$(comm -23 "$WORK/received" "$WORK/stored" | wc -l)" "0"
equal "the received serials are unique" "$(uniq -d "$WORK/received" | wc -l)" "0"
equal "no token has two certificates (one replay row per LDevID)" \
  "$(store_sql "SELECT COUNT(*) FROM bootstrap_replay")" \
  "$(store_sql "SELECT COUNT(*) FROM certificates WHERE profile = 'ldevid'")"
check "audit verify on the new primary" "$IOTPKI" audit verify --dir "$CA"
check "audit verify --store naming the new primary alone" "$IOTPKI" audit verify --dir "$CA" \
  --store "$STORE_URL"
# One more enrollment on each node, on the new primary alone.
: >"$WORK/more.log"
check "node a enrolls on the new primary" enroll "${DEVS[0]}" "$WORK/more.log" a
check "node b enrolls on the new primary" enroll "${DEVS[1]}" "$WORK/more.log" b
# A restart of the primary ends every connection the nodes hold, idle ones included: the next
# request to each node is answered at its first attempt, on a new connection.
check "the new primary restarts" as_owner "$BIN/pg_ctl" -D "$S/data" -m fast -w -t 60 restart \
  -l "$S/server.log"
n=2
for node in a b; do
  bootstrap_body "${DEVS[$n]}" "$(date +%s)" >"$WORK/after-restart.json"
  equal "node $node answers at once after the restart" \
    "$(post "${NODE_URL[$node]}" "$WORK/after-restart.json" "$WORK/after-restart.out")" "200"
  n=$((n + 1))
done
expect "node a logged why it answered 503" \
  '"status":503.*"reason":"(cannot connect to the PostgreSQL server|the database is unavailable)' \
  "$WORK/a.err"

finish
