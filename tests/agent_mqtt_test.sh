#!/usr/bin/env bash
# `iotpki-agent run --mqtt` against a real Mosquitto broker (mutual TLS, the rotation ACLs of
# tests/mqtt_broker.sh) and a real `iotpki serve`. The commands are signed here with openssl
# alone (a command-signer certificate from the operational CA, a compact JWS with ES256), and
# published with mosquitto_pub as the server's MQTT identity; mosquitto_sub reads the device's
# status topic. Unsigned, tampered, expired, misaddressed and replayed commands are dropped and
# reported; a good one rotates the device, which confirms with its new certificate and moves
# its MQTT session to it; the nonce cache survives a restart.
# Usage: agent_mqtt_test.sh PATH_TO_IOTPKI PATH_TO_IOTPKI_AGENT   (exit 3: no mosquitto)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"
source "$(dirname "$0")/command_lib.sh"
BROKER_SH="$(dirname "$0")/mqtt_broker.sh"
command -v mosquitto_pub >/dev/null && command -v mosquitto_sub >/dev/null || {
  echo "mosquitto clients are not installed (scripts/setup.sh installs them)" >&2
  exit 3
}
AGENT_PID=""
SUB_PID=""
cleanup() {
  local p
  for p in $AGENT_PID $SUB_PID; do
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  bash "$BROKER_SH" stop "$WORK/broker" >/dev/null 2>&1
  stop_server_quietly
  rm -rf "$WORK"
}
trap cleanup EXIT

check "ca init" "$IOTPKI" ca init --dir "$CA" --org "Example Org"
provision fleet 2
start_server
S1="$WORK/state1"
mkdir -p "$S1"
cp -r "$WORK/fleet/fleet-000001" "$S1/factory"
check "bootstrap" "$AGENT" --state "$S1" bootstrap --server "$URL" --est
ID1=$(device_id "$S1/factory")
ID2=$(device_id "$WORK/fleet/fleet-000002")
echo "$ID1" >"$WORK/ids.txt"
check "campaign" "$IOTPKI" campaign create --dir "$CA" --name ota --devices "$WORK/ids.txt"

cat "$CA/certs/root.pem" "$CA/certs/operational.pem" >"$WORK/clients-ca.pem"
PORT_MQTT=$(bash "$BROKER_SH" start "$WORK/broker" "$WORK/clients-ca.pem") || {
  rc=$?
  [ "$rc" = 3 ] && exit 3
  echo "broker did not start" >&2
  exit 1
}

make_command_cert "$CA"
cmd_json() { # DEVICE NONCE NOT_AFTER
  printf '{"op":"rotate","campaign":"ota","job":0,"device_id":"%s","mode":"rekey","nonce":"%s","not_after":%s}' \
    "$1" "$2" "$3"
}
nonce() { openssl rand -hex 16; }
publish() {
  mosquitto_pub -h 127.0.0.1 -p "$PORT_MQTT" --cafile "$WORK/broker/broker.crt" \
    --cert "$WORK/cmd.pem" --key "$WORK/cmd.key" -V mqttv5 -q 1 \
    -t "iotpki/devices/$ID1/cmd" -m "$1"
}
statuses() { cat "$WORK/status.log" 2>/dev/null; }
# wait_for FILE PATTERN COUNT: until FILE has COUNT lines matching PATTERN (10 s at most).
wait_for() {
  for _ in $(seq 100); do
    [ "$(grep -cE -- "$2" "$1" 2>/dev/null)" -ge "$3" ] && return 0
    sleep 0.1
  done
  return 1
}

mosquitto_sub -h 127.0.0.1 -p "$PORT_MQTT" --cafile "$WORK/broker/broker.crt" \
  --cert "$WORK/cmd.pem" --key "$WORK/cmd.key" -V mqttv5 -q 1 \
  -t "iotpki/devices/+/status" >"$WORK/status.log" 2>"$WORK/sub.err" &
SUB_PID=$!

start_agent() {
  "$AGENT" --state "$S1" run --mqtt "mqtts://127.0.0.1:$PORT_MQTT" \
    --mqtt-ca "$WORK/broker/broker.crt" >>"$WORK/run.out" 2>>"$WORK/run.err" &
  AGENT_PID=$!
}
start_agent
check "the agent connects with its LDevID" wait_for "$WORK/run.out" "^mqtt: connected as $ID1" 1
sleep 0.5 # the subscriptions settle

NOW=$(date +%s)
GOOD=$(sign "$(cmd_json "$ID1" "$(nonce)" $((NOW + 600)))")
UNSIGNED="${GOOD%.*}."
TAMPERED=$(sign "$(cmd_json "$ID1" "$(nonce)" $((NOW + 600)))" | sed 's/\.[^.]*\.\([A-Za-z0-9_-]*\)$/.eyJvcCI6InJvdGF0ZSJ9.\1/')
publish "$UNSIGNED"
check "unsigned: dropped and reported" wait_for "$WORK/status.log" '"op":"rejected".*unsigned' 1
publish "$TAMPERED"
check "badly signed: dropped and reported" wait_for "$WORK/status.log" '"op":"rejected"' 2
publish "$(sign "$(cmd_json "$ID2" "$(nonce)" $((NOW + 600)))")"
check "for another device: dropped and reported" wait_for "$WORK/status.log" \
  '"op":"rejected".*another device' 1
publish "$(sign "$(cmd_json "$ID1" "$(nonce)" $((NOW - 10)))")"
check "expired: dropped and reported" wait_for "$WORK/status.log" '"op":"rejected".*expired' 1
publish "not a command"
check "malformed: dropped and reported" wait_for "$WORK/status.log" '"op":"rejected"' 5
equal "nothing rotated by them" "$(sql "SELECT state FROM rotation_jobs WHERE ordinal = 0")" "pending"

OLD=$(openssl x509 -in "$S1/active/cert.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
publish "$GOOD"
check "a signed command rotates the device" wait_for "$WORK/status.log" \
  '"campaign":"ota".*"status":"installed"' 1
NEW=$(openssl x509 -in "$S1/active/cert.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
equal "job confirmed with the new certificate" \
  "$(sql "SELECT state || ' ' || new_serial FROM rotation_jobs WHERE ordinal = 0")" "confirmed $NEW"
equal "old certificate revoked" "$(sql "SELECT status FROM certificates WHERE serial = '$OLD'")" \
  "revoked"
check "the session moves to the new certificate" wait_for "$WORK/run.out" \
  "^mqtt: connected as $ID1" 2
publish "$GOOD"
check "replayed: dropped and reported" wait_for "$WORK/status.log" '"op":"rejected".*replay' 1

kill -TERM "$AGENT_PID"
RC=0
wait "$AGENT_PID" || RC=$?
AGENT_PID=""
equal "run ends on SIGTERM with exit 0" "$RC" "0"
check "the nonce cache is kept in the state directory (0600)" test "$(stat -c %a "$S1/nonces")" = 600
start_agent
check "restarted" wait_for "$WORK/run.out" "^mqtt: connected as $ID1" 3
sleep 0.5
publish "$GOOD"
check "replayed after a restart: still dropped" wait_for "$WORK/status.log" \
  '"op":"rejected".*replay' 2
equal "still one rotation" "$(grep -c '"status":"installed"' "$WORK/status.log")" "1"
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
AGENT_PID=""

# A failed install over MQTT: rolled back, reported on the status topic and to the server.
check "second campaign" "$IOTPKI" campaign create --dir "$CA" --name ota2 --devices "$WORK/ids.txt"
CUR=$(openssl x509 -in "$S1/active/cert.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
IOTPKI_AGENT_TEST_FAIL_INSTALL=1 start_agent
check "restarted with a failing install" wait_for "$WORK/run.out" "^mqtt: connected as $ID1" 4
sleep 0.5
publish "$(sign "$(cmd_json "$ID1" "$(nonce)" $((NOW + 600)) | sed 's/"ota"/"ota2"/')")"
check "the failure is published" wait_for "$WORK/status.log" \
  '"campaign":"ota2".*install failed on purpose.*"status":"failed"' 1
equal "the job waits for its retry with the device's reason" \
  "$(sql "SELECT j.state || ' ' || (j.last_error LIKE '%install failed on purpose%') FROM \
    rotation_jobs j JOIN campaigns c ON c.id = j.campaign_id WHERE c.name = 'ota2'")" "pending 1"
equal "the device keeps its certificate" \
  "$(openssl x509 -in "$S1/active/cert.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f') $(sql \
    "SELECT status FROM certificates WHERE serial = '$CUR'")" "$CUR valid"
check "no pending rotation left" test ! -e "$S1/pending"
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
AGENT_PID=""
# A confirmation that never reached the server (the server is down at that moment) leaves the
# rotation pending while `run` goes on. It is settled before the next command the agent
# handles, even one it then rejects, not only when the agent restarts.
check "third campaign" "$IOTPKI" campaign create --dir "$CA" --name ota3 --devices "$WORK/ids.txt"
CUR=$(openssl x509 -in "$S1/active/cert.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
IOTPKI_AGENT_TEST_STOP_AT=before-confirm start_agent
check "restarted to stop before its confirmation" wait_for "$WORK/run.out" \
  "^mqtt: connected as $ID1" 5
sleep 0.5
publish "$(sign "$(cmd_json "$ID1" "$(nonce)" $((NOW + 600)) | sed 's/"ota"/"ota3"/')")"
stopped() { [ "$(awk '{print $3}' "/proc/$AGENT_PID/stat" 2>/dev/null)" = T ]; }
for _ in $(seq 100); do stopped && break; sleep 0.1; done
check "the agent stops before its confirmation" stopped
stop_server || true
kill -CONT "$AGENT_PID"
check "the unreachable confirmation is reported" wait_for "$WORK/status.log" \
  '"campaign":"ota3".*"status":"failed"' 1
check "the rotation stays pending" test -e "$S1/pending"
equal "the device still runs on its certificate" \
  "$(openssl x509 -in "$S1/active/cert.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')" "$CUR"
rm -f "$WORK/port"
"$IOTPKI" serve --dir "$CA" --listen "127.0.0.1:$PORT" --port-file "$WORK/port" \
  >>"$WORK/serve.out" 2>>"$WORK/serve.err" &
SERVER_PID=$!
for _ in $(seq 300); do [ -s "$WORK/port" ] && break; sleep 0.1; done
check "the server is back on its port" test -s "$WORK/port"
publish "not a command"
check "the pending rotation is completed before the next command" wait_for "$WORK/run.out" \
  "^recover: pending rotation completed" 1
check "no pending rotation left after it" test ! -e "$S1/pending"
NEW=$(openssl x509 -in "$S1/active/cert.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
equal "the job is confirmed with the certificate now active" \
  "$(sql "SELECT j.state || ' ' || j.new_serial FROM rotation_jobs j JOIN campaigns c \
    ON c.id = j.campaign_id WHERE c.name = 'ota3'")" "confirmed $NEW"
equal "the certificate it replaced is revoked" \
  "$(sql "SELECT status FROM certificates WHERE serial = '$CUR'")" "revoked"
check "the session moves to the new certificate" wait_for "$WORK/run.out" \
  "^mqtt: connected as $ID1" 6
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
AGENT_PID=""
no_secrets "no secret in the agent's output" "$WORK/run.out"
stop_server
finish
