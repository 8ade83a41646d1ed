#!/usr/bin/env bash
# The device agent's footprint (issue 15), by hand (a few seconds once built): the stripped size
# of iotpki-agent and the peak RSS of `run --mqtt` (connected to a broker, subscribed, idle 5 s)
# and of `run` without MQTT (idle 3 s), for each agent binary given.
#
#   bench/agent_size.sh IOTPKI AGENT [AGENT...]
#
# The device: one of a batch provisioned by IOTPKI, bootstrapped over EST against IOTPKI serve;
# the broker: tests/mqtt_broker.sh (mutual TLS, the rotation ACLs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
iotpki=$1
shift
work=$(mktemp -d "${TMPDIR:-/var/tmp}/iotpki-agent-size.XXXXXX")
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  "$root/tests/mqtt_broker.sh" stop "$work/broker" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
export IOTPKI_PASSPHRASE="benchmark passphrase"
export IOTPKI_KEY_PASSPHRASE="benchmark transport"
export IOTPKI_DEVICE_KEY_PASSPHRASE=$IOTPKI_KEY_PASSPHRASE
ca="$work/ca"
"$iotpki" ca init --dir "$ca" --org Size >/dev/null
"$iotpki" mfg provision --dir "$ca" --count 1 --serial-prefix SZ- --model m --batch b --keys ca \
  --out "$work/batch" >/dev/null 2>&1
"$iotpki" serve --dir "$ca" --listen 127.0.0.1:0 --port-file "$work/port" >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 300); do [ -s "$work/port" ] && break; sleep 0.1; done
url="https://127.0.0.1:$(cat "$work/port")"
cat "$ca/certs/root.pem" "$ca/certs/operational.pem" >"$work/cas.pem"
"$iotpki" crl export --dir "$ca" --out "$work/crl.pem" >/dev/null 2>&1
port=$("$root/tests/mqtt_broker.sh" start "$work/broker" "$work/cas.pem" "$work/crl.pem")

peak() {  # peak SECONDS AGENT ARGS...: the agent's peak RSS in kB, stopped with SIGTERM
  local secs=$1
  shift
  /usr/bin/time -f '%M' -o "$work/rss" "$@" >/dev/null 2>"$work/agent.err" &
  local pid=$!
  sleep "$secs"
  pkill -TERM -P "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  tail -n 1 "$work/rss"
}
for agent in "$@"; do
  s="$work/state"
  rm -rf "$s"
  mkdir -p "$s"
  cp -r "$work/batch/SZ-000001" "$s/factory"
  "$agent" --state "$s" bootstrap --server "$url" --est >/dev/null
  strip -o "$work/stripped" "$agent"
  printf '%s\n  stripped: %d bytes; dynamic libraries: %s\n' "$agent" "$(stat -c %s "$work/stripped")" \
    "$(ldd "$agent" | awk '/=>/ {print $1}' | sed 's/\.so.*//' | tr '\n' ' ')"
  printf '  peak RSS, run --mqtt (idle 5 s): %s kB\n' \
    "$(peak 5 "$agent" --state "$s" run --mqtt "mqtts://127.0.0.1:$port" --mqtt-ca "$work/broker/broker.crt")"
  printf '  peak RSS, run (no MQTT, idle 3 s): %s kB\n' "$(peak 3 "$agent" --state "$s" run)"
done
