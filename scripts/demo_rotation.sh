#!/usr/bin/env bash
# The demo's rotation step (issue 15), called by scripts/demo.sh: a Mosquitto broker with mutual
# TLS, `iotpki serve --campaigns`, 200 simulated devices (iotpki-fleet: the agent's own rotation
# code) onboarded over EST, and a campaign in two waves in which 10% of the devices are offline
# at first and 5% fail every install. Shows the waves, the rollbacks, the retries and the final
# status table. About a minute.
#
#   scripts/demo_rotation.sh BUILD_DIR DATA_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: demo_rotation.sh BUILD_DIR DATA_DIR}
data=${2:?usage: demo_rotation.sh BUILD_DIR DATA_DIR}/rotation
iotpki="$build/apps/iotpki/iotpki"
fleet="$build/apps/iotpki-fleet/iotpki-fleet"
step() { printf '\n== %s\n' "$*"; }
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
  echo "rotation demo skipped: mosquitto is not installed (scripts/setup.sh installs it)"
  exit 0
fi
rm -rf "$data"
mkdir -p "$data"
ca="$data/ca"
export IOTPKI_PASSPHRASE=${IOTPKI_PASSPHRASE:-demo-passphrase-change-me}
export IOTPKI_KEY_PASSPHRASE="demo transport passphrase"
export IOTPKI_DEVICE_KEY_PASSPHRASE="$IOTPKI_KEY_PASSPHRASE"
server_pid=""
sim_pid=""
cleanup() {
  local p
  for p in $sim_pid $server_pid; do kill -TERM "$p" 2>/dev/null || true; done
  bash "$root/tests/mqtt_broker.sh" stop "$data/broker" >/dev/null 2>&1 || true
}
trap cleanup EXIT

step "rotation: a broker (mosquitto, mutual TLS), iotpki serve --campaigns, 200 devices onboarded"
"$iotpki" ca init --dir "$ca" --org "SmartHome Industries" >/dev/null
"$iotpki" mfg provision --dir "$ca" --count 200 --serial-prefix OTA- --model thermostat \
  --batch ota --keys ca --out "$data/factory" >/dev/null 2>&1
cat "$ca/certs/root.pem" "$ca/certs/operational.pem" >"$data/device-cas.pem"
mqtt="mqtts://127.0.0.1:$(bash "$root/tests/mqtt_broker.sh" start "$data/broker" "$data/device-cas.pem")"
printf '[campaigns]\ninterval_s = 1\n' >"$data/serve.toml"
"$iotpki" serve --dir "$ca" --listen 127.0.0.1:0 --port-file "$data/port" \
  --config "$data/serve.toml" --campaigns --mqtt "$mqtt" --mqtt-ca "$data/broker/broker.crt" \
  >"$data/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 300); do [ -s "$data/port" ] && break || sleep 0.1; done
"$fleet" bootstrap --factory "$data/factory" --fleet "$data/fleet" \
  --server "https://127.0.0.1:$(cat "$data/port")" --workers 4
echo "iotpki-fleet run: 10% offline for 10 s, 5% failing every install, 5% slow"
"$fleet" run --fleet "$data/fleet" --mqtt "$mqtt" --mqtt-ca "$data/broker/broker.crt" \
  --offline-share 0.1 --back-after 10s --fail-install-share 0.05 --slow-share 0.05 \
  --slow-by 2s --workers 4 --out "$data/outcomes.jsonl" --ready-file "$data/ready" \
  >"$data/fleet.log" 2>&1 &
sim_pid=$!
for _ in $(seq 600); do [ -e "$data/ready" ] && break || sleep 0.1; done
cat "$data/fleet.log"

step "iotpki campaign create: every device of batch ota, waves of 100, retry after 3 s, 3 attempts"
"$iotpki" campaign create --dir "$ca" --name spring --batch ota --mode rekey --wave-size 100 \
  --retry-after 3 --max-attempts 3 --max-failure-rate 0.2
step "the campaign runs: wave, jobs per state (iotpki campaign status --json, every 2 s)"
for _ in $(seq 45); do
  sleep 2
  "$iotpki" campaign status --dir "$ca" spring --json >"$data/status.json"
  jq -r '"state \(.state), wave \(.current_wave + 1)/\(.waves): " +
    ([.counts | to_entries[] | "\(.key) \(.value)"] | join(", ")) +
    ", failure rate \(.failure_rate)"' "$data/status.json"
  [ "$(jq -r .state "$data/status.json")" = running ] || break
done

step "iotpki campaign status spring"
"$iotpki" campaign status --dir "$ca" spring
step "iotpki campaign failures spring: rolled back, retried, then failed for good"
"$iotpki" campaign failures --dir "$ca" spring | head -n 15
step "the fleet's own view (iotpki-fleet summary table)"
kill -TERM "$sim_pid"
wait "$sim_pid" || true
sim_pid=""
sed -n '/^outcome/,$p' "$data/fleet.log"
echo "a rolled-back device still runs on its old certificate, valid in the store:"
line=$(grep -m1 '"outcome":"rolled_back"' "$data/outcomes.jsonl")
serial=$(jq -r .new_serial <<<"$line")
echo "  $(jq -r .name <<<"$line"): certificate $serial is" \
  "$(sqlite3 "$ca/iotpki.db" "SELECT status FROM certificates WHERE serial = '$serial'")"
"$iotpki" audit verify --dir "$ca"
