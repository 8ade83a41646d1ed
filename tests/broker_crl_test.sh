#!/usr/bin/env bash
# Revocation enforced where devices connect: a real Mosquitto broker (mutual TLS,
# require_certificate, crlfile) fed by `iotpki serve --broker-crl --broker-reload`. Two devices
# connect with their LDevIDs (mosquitto_pub); one is revoked (`iotpki cert revoke`); the server
# rewrites the CRL file and signals the broker; the revoked device is refused while the other still connects. `iotpki crl export`
# then writes the same set for a broker that no server feeds.
# Usage: broker_crl_test.sh PATH_TO_IOTPKI
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"

if ! command -v mosquitto >/dev/null || ! command -v mosquitto_pub >/dev/null; then
  echo "mosquitto or mosquitto_pub not installed (scripts/setup.sh installs them); skipped"
  exit 3
fi
MOSQUITTO=$(command -v mosquitto)
MOSQ_PID=""
stop_broker() {
  if [ -n "$MOSQ_PID" ]; then
    kill -TERM "$MOSQ_PID" 2>/dev/null
    wait "$MOSQ_PID" 2>/dev/null
    MOSQ_PID=""
  fi
}
trap 'stop_broker; stop_server_quietly; rm -rf "$WORK"' EXIT

check "ca init" "$IOTPKI" ca init --dir "$CA" --org "Example Org"
provision brk 2
D1="$WORK/brk/brk-000001"
D2="$WORK/brk/brk-000002"
ROOT="$CA/certs/root.pem"
OPS="$CA/certs/operational.pem"

start_server --broker-crl "$WORK/broker-crl.pem" \
  --broker-reload "kill -HUP \$(cat '$WORK/mosquitto.pid') && echo reloaded >>'$WORK/reloads'"
check "the server wrote the broker's CRL file" test -s "$WORK/broker-crl.pem"

enroll() {  # enroll DEVICE_DIR NAME: an LDevID in $WORK/NAME.pem with key $WORK/NAME.key
  csr_b64 "$WORK/$2.key" "/CN=$(device_id "$1")" >"$WORK/$2.b64"
  status "simpleenroll $2" 200 "$(http --cert "$1/cert.pem" --key "$1/key.plain.pem" \
    -H 'Content-Type: application/pkcs10' --data-binary @"$WORK/$2.b64" \
    "$URL/.well-known/est/simpleenroll")"
  p7_certs "$WORK/body" "$WORK/$2.pem"
}
enroll "$D1" dev1
enroll "$D2" dev2

# The broker's own TLS certificate, made by openssl: the broker is not part of the CA.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
  -keyout "$WORK/broker.key" -out "$WORK/broker.crt" 2>/dev/null
cat "$ROOT" "$OPS" >"$WORK/device-cas.pem"

# start_broker: mosquitto on a free loopback port, config generated here; sets MQTT_PORT.
start_broker() {
  local try
  for try in $(seq 20); do
    MQTT_PORT=$((20000 + RANDOM % 40000))
    cat >"$WORK/mosquitto.conf" <<CONF
user root
pid_file $WORK/mosquitto.pid
persistence false
log_dest stderr
log_type error
log_type warning
per_listener_settings false
allow_anonymous true
listener $MQTT_PORT 127.0.0.1
cafile $WORK/device-cas.pem
certfile $WORK/broker.crt
keyfile $WORK/broker.key
require_certificate true
use_identity_as_username true
crlfile $WORK/broker-crl.pem
CONF
    "$MOSQUITTO" -c "$WORK/mosquitto.conf" 2>>"$WORK/mosquitto.log" &
    MOSQ_PID=$!
    for _ in $(seq 100); do
      kill -0 "$MOSQ_PID" 2>/dev/null || break  # the port was taken: try another
      (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null && return 0
      sleep 0.1
    done
    stop_broker
  done
  echo "mosquitto did not start:" >&2
  cat "$WORK/mosquitto.log" >&2
  exit 1
}

publish() {  # publish NAME: connects with $WORK/NAME.pem and publishes one message
  mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$WORK/broker.crt" \
    --cert "$WORK/$1.pem" --key "$WORK/$1.key" -t "devices/$1" -m hello -q 1 \
    >"$WORK/pub.out" 2>&1
}

start_broker
check "device 1 connects with its LDevID" publish dev1
check "device 2 connects with its LDevID" publish dev2
if mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$WORK/broker.crt" -t x -m y \
  >/dev/null 2>&1; then fail "a client without a certificate is refused"; else
  pass "a client without a certificate is refused"
fi

serial1=$(openssl x509 -in "$WORK/dev1.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
check "cert revoke --serial (keyCompromise)" "$IOTPKI" cert revoke --dir "$CA" --serial "$serial1" \
  --reason keyCompromise
for _ in $(seq 100); do
  [ -s "$WORK/reloads" ] && break
  sleep 0.1
done
check "the server rewrote the CRL file and signalled the broker" test -s "$WORK/reloads"
# Mosquitto reloads its listeners' TLS settings on SIGHUP; give it a moment.
refused=""
for _ in $(seq 50); do
  if ! publish dev1; then refused=yes; break; fi
  sleep 0.1
done
equal "the revoked device is refused by the broker" "$refused" yes
check "the other device still connects" publish dev2

# Without a server: crl export, then a broker restart.
stop_server
stop_broker
rm -f "$WORK/broker-crl.pem"
check "crl export writes the broker's file" "$IOTPKI" crl export --dir "$CA" \
  --out "$WORK/broker-crl.pem"
start_broker
if publish dev1; then fail "after a restart on the export, the revoked device is refused"; else
  pass "after a restart on the export, the revoked device is refused"
fi
check "after a restart on the export, the other device connects" publish dev2

finish
