# Helpers for the fleet tests (sourced after lib.sh and serve_lib.sh; $2 is iotpki-fleet):
# sqlite3 and jq required (exit 3 without), a cleanup of the simulator, the broker and the server,
# and fleet_ca_and_broker to make the CA, a factory batch and a real Mosquitto for them.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FLEET_BIN=$2
command -v sqlite3 >/dev/null && command -v jq >/dev/null || {
  echo "sqlite3 or jq is not installed (scripts/setup.sh installs them)" >&2
  exit 3
}
BROKER="$WORK/broker"
SIM_PID=""
cleanup() {
  [ -z "$SIM_PID" ] || kill -KILL "$SIM_PID" 2>/dev/null
  bash "$HERE/mqtt_broker.sh" stop "$BROKER" >/dev/null 2>&1
  stop_server_quietly
  rm -rf "$WORK"
}
trap cleanup EXIT

# fleet_ca_and_broker N BATCH: a CA, a factory batch BATCH of N devices (serials BATCH-...,
# `--keys ca`) and a broker trusting the device CAs (MQTT_BROKER_* settings from the environment);
# sets MQTT_PORT and MQTT_URL. Exits 3 when mosquitto is not installed.
fleet_ca_and_broker() {
  check "ca init" "$IOTPKI" ca init --dir "$CA" --org "Example Org"
  check "a factory batch of $1 devices" "$IOTPKI" mfg provision --dir "$CA" --count "$1" \
    --serial-prefix "$2-" --model sensor --batch "$2" --keys ca --out "$WORK/factory"
  cat "$CA/certs/root.pem" "$CA/certs/operational.pem" >"$WORK/device-cas.pem"
  MQTT_PORT=$(bash "$HERE/mqtt_broker.sh" start "$BROKER" "$WORK/device-cas.pem") || {
    local rc=$?
    [ "$rc" -eq 3 ] && exit 3
    echo "broker did not start" >&2
    exit 1
  }
  MQTT_URL="mqtts://127.0.0.1:$MQTT_PORT"
}
