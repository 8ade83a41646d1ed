#!/usr/bin/env bash
# Two `iotpki serve` nodes over one PostgreSQL store (issue 17), curl and openssl as the devices:
# enrollments spread over both give unique serials and exactly one certificate per accepted
# request; a token raced to both nodes at once is spent once (one 200, one 409) and replayed to
# the other node later is refused; the audit chain verifies. Then one node is killed (SIGKILL)
# in the middle of a load whose clients retry on the other: the other keeps answering, every
# certificate a client received is in the store, and no token got two certificates.
# Uses the cluster of ctest's `pg` fixture ($IOTPKI_TEST_PG_DIR), or starts its own.
# Usage: pg_multi_server_test.sh PATH_TO_IOTPKI
source "$(dirname "$0")/lib.sh"
IOTPKI=$1
CA="$WORK/ca"
HELPER="$(dirname "$0")/pg_cluster.sh"
source "$(dirname "$0")/pg_lib.sh"

OWN_CLUSTER=""
if [ -n "${IOTPKI_TEST_PG_DIR:-}" ] && [ -S "$IOTPKI_TEST_PG_DIR/.s.PGSQL.5432" ]; then
  PGDIR=$IOTPKI_TEST_PG_DIR
else
  PGDIR=$(mktemp -d /tmp/iotpki-pg-multi.XXXXXX)
  OWN_CLUSTER=1
  bash "$HELPER" start "$PGDIR" >/dev/null
  status=$?
  if [ "$status" -ne 0 ]; then
    rm -rf "$PGDIR"
    echo "PostgreSQL is not available (exit $status): skipped"
    if [ "$status" -eq 3 ] && [ "${CI:-}" != "true" ]; then exit 3; fi
    exit 1
  fi
fi
DB="iotpki_multi_$$"
cleanup() {
  stop_nodes
  psql -qAt "$(bash "$HELPER" url "$PGDIR" postgres)" -c "DROP DATABASE IF EXISTS $DB" \
    >/dev/null 2>&1
  [ -n "$OWN_CLUSTER" ] && bash "$HELPER" stop "$PGDIR"
  rm -rf "$WORK"
}
trap cleanup EXIT
psql -qAt "$(bash "$HELPER" url "$PGDIR" postgres)" -c "CREATE DATABASE $DB TEMPLATE template0"
STORE_URL=$(bash "$HELPER" url "$PGDIR" "$DB")

"$IOTPKI" ca init --dir "$CA" --org MultiCo --store "$STORE_URL" >/dev/null || exit 1
echo "# $(date +%T) provisioning"
mapfile -t DEVS < <(prepare_devices M 40)
equal "40 devices provisioned" "${#DEVS[@]}" "40"
start_node a
start_node b
ldevids() { store_sql "SELECT COUNT(*) FROM certificates WHERE profile = 'ldevid'"; }

echo "# $(date +%T) phase 1"
# --- 1. enrollments spread over both nodes -----------------------------------------------------
# 12 devices, four clients at a time, alternately on a and b.
: >"$WORK/phase1.log"
for w in 0 1 2 3; do
  (
    for ((k = w; k < 12; k += 4)); do
      if [ $((k % 2)) -eq 0 ]; then enroll "${DEVS[$k]}" "$WORK/phase1.log" a; else
        enroll "${DEVS[$k]}" "$WORK/phase1.log" b
      fi
    done
  ) &
done
wait_clients() {
  local pid rc=0
  for pid in $(jobs -p); do
    [[ " ${NODE_PID[*]} " == *" $pid "* ]] && continue
    wait "$pid" || rc=1
  done
  return "$rc"
}
check "12 clients on two nodes all enrolled" wait_clients
equal "12 certificates received" "$(wc -l <"$WORK/phase1.log")" "12"
equal "both nodes answered" "$(cut -d' ' -f3 "$WORK/phase1.log" | sort -u | tr '\n' ' ')" "a b "
equal "one LDevID in the store per accepted request" "$(ldevids)" "12"
equal "one replay row per accepted request" \
  "$(store_sql "SELECT COUNT(*) FROM bootstrap_replay")" "12"
equal "the received serials are unique" "$(cut -d' ' -f1 "$WORK/phase1.log" | sort -u | wc -l)" "12"

echo "# $(date +%T) phase 2"
# --- 2. the same token at both nodes at once, then replayed -----------------------------------
# Each of 6 devices sends one token to a and b at the same moment: exactly one 200 and one 409
# per token, and one certificate.
ts=$(($(date +%s) + 1))
for k in $(seq 12 17); do
  bootstrap_body "${DEVS[$k]}" "$ts" >"$WORK/race$k.json"
done
for k in $(seq 12 17); do
  post "${NODE_URL[a]}" "$WORK/race$k.json" "$WORK/race$k.a" >"$WORK/race$k.code.a" &
  post "${NODE_URL[b]}" "$WORK/race$k.json" "$WORK/race$k.b" >"$WORK/race$k.code.b" &
done
wait_clients
codes=""
for k in $(seq 12 17); do
  codes+="$( (cat "$WORK/race$k.code.a" && echo && cat "$WORK/race$k.code.b" && echo) | sort |
    tr -d '\n') "
done
equal "each raced token: one 200 and one 409" "$codes" "$(printf '200409 %.0s' $(seq 6))"
expect "the loser is told the token is spent" "bootstrap token already used" \
  <(cat "$WORK"/race*.a "$WORK"/race*.b)
equal "one certificate per raced token" "$(ldevids)" "18"
# Replays, later, to the node that did not take the token.
replays=""
for k in $(seq 12 17); do
  if grep -q 200 "$WORK/race$k.code.a"; then other=b; else other=a; fi
  replays+="$(post "${NODE_URL[$other]}" "$WORK/race$k.json" "$WORK/replay.out") "
done
equal "a token replayed to the other node is refused" "$replays" "$(printf '409 %.0s' $(seq 6))"
# And the tokens of phase 1, replayed to the node that did not take them.
replays=""
while read -r _ ts0 node0 dir0; do
  if [ "$node0" = a ]; then other=b; else other=a; fi
  bootstrap_body "$dir0" "$ts0" >"$WORK/replay.json"
  replays+="$(post "${NODE_URL[$other]}" "$WORK/replay.json" "$WORK/replay.out") "
done < <(head -6 "$WORK/phase1.log")
equal "a phase-1 token replayed to the other node is refused" "$replays" \
  "$(printf '409 %.0s' $(seq 6))"
equal "still one certificate per accepted request" "$(ldevids)" "18"
check "audit verify after two nodes" "$IOTPKI" audit verify --dir "$CA"

echo "# $(date +%T) phase 3"
# --- 3. kill -9 one node in the middle of a load ---------------------------------------------
# Four clients enroll 22 devices, each trying a first and b when a does not answer (half of
# them b first). Once 6 of them are in, a is killed.
: >"$WORK/phase2.log"
before=$(ldevids)
for w in 0 1 2 3; do
  (
    for ((k = 18 + w; k < 40; k += 4)); do
      if [ $((k % 2)) -eq 0 ]; then enroll "${DEVS[$k]}" "$WORK/phase2.log" a b; else
        enroll "${DEVS[$k]}" "$WORK/phase2.log" b a
      fi
    done
  ) &
done
for _ in $(seq 600); do
  [ "$(wc -l <"$WORK/phase2.log")" -ge 6 ] && break
  sleep 0.05
done
kill_node a
killed_at=$(wc -l <"$WORK/phase2.log")
check "every client enrolled, a killed under load" wait_clients
equal "22 certificates received in the load" "$(wc -l <"$WORK/phase2.log")" "22"
if [ "$killed_at" -lt 22 ]; then pass "a was killed mid-load ($killed_at of 22 done)"; else
  fail "a was killed after the load ended"
fi
# A client of a may have had its answer just before the kill and logged it after: one each.
after_kill=$(awk -v n="$((killed_at + 4))" 'NR > n' "$WORK/phase2.log" | cut -d' ' -f3 | sort -u |
  tr -d '\n')
equal "after the kill b answered every request" "$after_kill" "b"
cut -d' ' -f1 "$WORK/phase1.log" "$WORK/phase2.log" | sort >"$WORK/received"
for k in $(seq 12 17); do
  for n in a b; do grep -q 200 "$WORK/race$k.code.$n" && serial_of "$WORK/race$k.$n"; done
done | sort >>"$WORK/received"
sort -o "$WORK/received" "$WORK/received"
store_sql "SELECT serial FROM certificates WHERE profile = 'ldevid'" | sort >"$WORK/stored"
equal "every certificate a client received is in the store" \
  "$(comm -23 "$WORK/received" "$WORK/stored" | wc -l)" "0"
equal "the received serials are unique" "$(uniq -d "$WORK/received" | wc -l)" "0"
equal "no token has two certificates (one replay row per LDevID)" \
  "$(store_sql "SELECT COUNT(*) FROM bootstrap_replay")" "$(ldevids)"
stored_extra=$(($(ldevids) - before - 22))
if [ "$stored_extra" -ge 0 ]; then
  pass "stored beyond received: $stored_extra (committed, answer lost with a)"
else
  fail "fewer certificates stored than received ($stored_extra)"
fi
equal "serials are unique in the store" \
  "$(store_sql "SELECT COUNT(*) - COUNT(DISTINCT serial) FROM certificates")" "0"
check "audit verify after the kill" "$IOTPKI" audit verify --dir "$CA"
status=$(curl -sS -o "$WORK/health" -w '%{http_code}' --cacert "$CA/certs/root.pem" \
  "${NODE_URL[b]}/healthz" 2>/dev/null)
equal "b is healthy" "$status" "200"

finish
