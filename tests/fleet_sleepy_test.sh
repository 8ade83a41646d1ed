#!/usr/bin/env bash
# Sleepy devices (`iotpki-fleet run --max-online K`): a fleet larger than what is online at once
# is rotated through sessions the broker keeps. A real Mosquitto (mutual TLS, the rotation ACLs,
# max_connections 2K, connections logged), a real `iotpki serve --campaigns`, N
# simulated devices of which at most K hold a session at a time: each registers its persistent
# session once and sleeps; the campaign's commands are queued by the broker for the sleepers and
# delivered when each wakes in turn. At the end: every job confirmed and every device on its new
# certificate (the store's view and the simulator's agree), never more than K online (the
# simulator's count; the broker refused no connection), the broker saw every device connect at
# least twice (register, then wake for the command), each old certificate revoked after its
# confirmation, `audit verify`.
# Usage: fleet_sleepy_test.sh PATH_TO_IOTPKI PATH_TO_IOTPKI_FLEET   (exit 3: no mosquitto)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"
source "$(dirname "$0")/fleet_lib.sh"
N=240
K=40
# Room for K devices, the server, and the sessions just closed that the broker has not reaped
# yet (a burst of devices going to sleep is followed by a burst waking): twice K. The count of
# the simulator itself is the exact check; the broker's limit catches a simulator that ignores
# its own.
MQTT_BROKER_MAX_CONNECTIONS=$((2 * K)) fleet_ca_and_broker "$N" sleepy
printf '[campaigns]\ninterval_s = 1\n' >"$WORK/serve.toml"
start_server --config "$WORK/serve.toml" --campaigns --mqtt "$MQTT_URL" \
  --mqtt-ca "$BROKER/broker.crt"
check "iotpki-fleet bootstrap: $N devices over EST" "$FLEET_BIN" bootstrap \
  --factory "$WORK/factory" --fleet "$WORK/fleet" --server "$URL" --workers 4

refuse "--max-online 0 is refused" "max-online" "$FLEET_BIN" run --fleet "$WORK/fleet" \
  --mqtt "$MQTT_URL" --mqtt-ca "$BROKER/broker.crt" --max-online 0
refuse "a bad --awake is refused, naming it" "bad duration 'soon'" "$FLEET_BIN" run \
  --fleet "$WORK/fleet" --mqtt "$MQTT_URL" --mqtt-ca "$BROKER/broker.crt" --max-online 5 \
  --awake soon

"$FLEET_BIN" run --fleet "$WORK/fleet" --mqtt "$MQTT_URL" --mqtt-ca "$BROKER/broker.crt" \
  --max-online "$K" --awake 1s --workers 8 --until-rotated "$N" --out "$WORK/outcomes.jsonl" \
  --ready-file "$WORK/ready" >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM_PID=$!
for _ in $(seq 1200); do
  [ -e "$WORK/ready" ] && break
  kill -0 "$SIM_PID" 2>/dev/null || break
  sleep 0.1
done
check "every session registered, $K at a time" grep -q \
  "^ready: $N devices online (at most $K at once), 0 offline" "$WORK/sim.out"

# Commands live as long as a job's wait (--retry-after): long enough for every sleeper to wake.
check "campaign create" "$IOTPKI" campaign create --dir "$CA" --name sleepy --batch sleepy \
  --mode rekey --wave-size "$N" --retry-after 120 --max-attempts 2
RC=0
for _ in $(seq 1800); do
  kill -0 "$SIM_PID" 2>/dev/null || break
  sleep 0.1
done
wait "$SIM_PID" || RC=$?
SIM_PID=""
cat "$WORK/sim.out"
equal "the simulator ends once every device rotated" "$RC" "0"
confirmed=$(sql "SELECT COUNT(*) FROM rotation_jobs WHERE state = 'confirmed'")
equal "every job confirmed" "$confirmed" "$N"
equal "every device rotated" "$(grep -c '"outcome":"rotated"' "$WORK/outcomes.jsonl")" "$N"
peak=$(sed -n 's/.*at most \([0-9]*\) online at once.*/\1/p' "$WORK/sim.out")
check "never more than $K online at once (the simulator: $peak)" test "${peak:-999}" -le "$K"
equal "the broker refused no connection" \
  "$(grep -c 'max_connections exceeded' "$BROKER/mosquitto.log")" "0"
connects=$(grep -c 'New client connected' "$BROKER/mosquitto.log")
check "the broker saw each device connect at least twice ($connects connections)" \
  test "$connects" -ge $((2 * N))
jq -r '[.device_id, .new_serial] | @tsv' "$WORK/outcomes.jsonl" >"$WORK/outcomes.tsv"
{
  echo "CREATE TEMP TABLE o(device TEXT, serial TEXT);"
  echo ".mode tabs"
  echo ".import $WORK/outcomes.tsv o"
  echo "SELECT COUNT(*) FROM o JOIN devices d ON lower(hex(d.device_id)) = o.device
    JOIN rotation_jobs j ON j.device_seq = d.seq
    JOIN certificates c ON c.serial = j.new_serial
    WHERE j.state = 'confirmed' AND o.serial = j.new_serial AND c.status = 'valid';"
  echo "SELECT COUNT(*) FROM rotation_jobs j JOIN certificates c ON c.serial = j.old_serial
    WHERE c.status = 'revoked';"
} >"$WORK/cross.sql"
sqlite3 "$CA/iotpki.db" <"$WORK/cross.sql" >"$WORK/cross.out"
{ read -r agree; read -r revoked; } <"$WORK/cross.out"
equal "each device runs on its job's new certificate, valid in the store" "$agree" "$N"
equal "every old certificate revoked" "$revoked" "$N"
equal "each old certificate revoked after its device's confirmation" \
  "$(sqlite3 "$CA/iotpki.db" "
    CREATE TEMP TABLE rev AS SELECT seq, subject AS serial FROM audit_log
      WHERE action = 'cert.revoke';
    CREATE TEMP TABLE conf AS SELECT seq, json_extract(details, '$.new_serial') AS serial
      FROM audit_log WHERE action = 'campaign.job.confirmed';
    SELECT COUNT(*) FROM rotation_jobs j JOIN rev r ON r.serial = j.old_serial
      WHERE EXISTS (SELECT 1 FROM conf c WHERE c.serial = j.new_serial AND c.seq < r.seq);")" \
  "$N"
check "audit verify" "$IOTPKI" audit verify --dir "$CA"
finish
