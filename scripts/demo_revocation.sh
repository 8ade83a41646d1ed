#!/usr/bin/env bash
# The demo's revocation step (issue 14), end to end with the tools a relying party has: device
# STH-L1-000004 is revoked (keyCompromise) with `iotpki cert revoke`, and then the onboarding
# server refuses its renewal (403), `openssl verify -crl_check` with the served CRL fails,
# `openssl ocsp` against the server's responder says revoked, and a Mosquitto broker fed by
# `iotpki serve --broker-crl` refuses its connection, while STH-L1-000005 passes every check.
#
#   scripts/demo_revocation.sh IOTPKI DATA_DIR
#
# DATA_DIR is scripts/demo.sh's: its CA (DATA_DIR/ca, IOTPKI_PASSPHRASE set) and its onboarded
# devices (DATA_DIR/devices/<serial>, agent state directories). Starts its own server and broker
# on free loopback ports and stops both.
set -euo pipefail
iotpki=$1
data=$2
ca="$data/ca"
work="$data/revocation"
rm -rf "$work"
mkdir -p "$work"
root="$ca/certs/root.pem"
ops="$ca/certs/operational.pem"
step() { printf '\n== %s\n' "$*"; }

server_pid=""
broker_pid=""
cleanup() {
  [ -n "$broker_pid" ] && kill -TERM "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  return 0
}
trap cleanup EXIT

# Mosquitto's own TLS certificate (the broker is not part of the CA) and its pid file, which the
# server's --broker-reload signals after each CRL change.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
  -keyout "$work/broker.key" -out "$work/broker.crt" 2>/dev/null
cat "$root" "$ops" >"$work/device-cas.pem"

step "iotpki serve --broker-crl $work/broker-crl.pem --broker-reload 'kill -HUP <mosquitto>'"
"$iotpki" serve --dir "$ca" --listen 127.0.0.1:0 --port-file "$work/port" \
  --broker-crl "$work/broker-crl.pem" \
  --broker-reload "kill -HUP \$(cat '$work/mosquitto.pid') 2>/dev/null || true" \
  >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 300); do
  [ -s "$work/port" ] && [ -s "$work/broker-crl.pem" ] && break
  sleep 0.1
done
url="https://127.0.0.1:$(cat "$work/port")"
echo "server at $url; CRLs at $url/crl/<ca>.crl, OCSP at $url/ocsp"

step "mosquitto with mutual TLS (require_certificate) and the server's CRL file (crlfile)"
mqtt_port=""
for _ in $(seq 20); do
  port=$((20000 + RANDOM % 40000))
  cat >"$work/mosquitto.conf" <<CONF
user root
pid_file $work/mosquitto.pid
persistence false
log_dest stderr
log_type error
per_listener_settings false
allow_anonymous true
listener $port 127.0.0.1
cafile $work/device-cas.pem
certfile $work/broker.crt
keyfile $work/broker.key
require_certificate true
use_identity_as_username true
crlfile $work/broker-crl.pem
CONF
  mosquitto -c "$work/mosquitto.conf" 2>>"$work/mosquitto.log" &
  broker_pid=$!
  for _ in $(seq 50); do
    kill -0 "$broker_pid" 2>/dev/null || break
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      mqtt_port=$port
      break 2
    fi
    sleep 0.1
  done
  kill -TERM "$broker_pid" 2>/dev/null || true
  wait "$broker_pid" 2>/dev/null || true
  broker_pid=""
done
[ -n "$mqtt_port" ] || { echo "mosquitto did not start" >&2; cat "$work/mosquitto.log" >&2; exit 1; }
echo "broker on 127.0.0.1:$mqtt_port"

stolen="$data/devices/STH-L1-000004/active"
good="$data/devices/STH-L1-000005/active"
publish() {  # publish SLOT: one MQTT message with the device's working certificate
  mosquitto_pub -h 127.0.0.1 -p "$mqtt_port" --cafile "$work/broker.crt" --cert "$1/cert.pem" \
    --key "$1/key.pem" -t "demo/$(basename "$(dirname "$1")")" -m hello -q 1 2>"$work/pub.err"
}
publish "$stolen" && echo "STH-L1-000004 connects to the broker"
publish "$good" && echo "STH-L1-000005 connects to the broker"

step "iotpki cert revoke --device <STH-L1-000004> --reason keyCompromise"
id=$("$iotpki" device show --dir "$ca" --serial STH-L1-000004 --json |
  sed -n 's/.*"device_id": "\([0-9a-f]\{64\}\)".*/\1/p' | head -n 1)
"$iotpki" cert revoke --dir "$ca" --device "$id" --reason keyCompromise
sleep 0.5  # the server's CRL publisher notices a revocation within its poll (2 s)

step "EST simplereenroll with the revoked certificate: refused"
openssl req -new -key "$stolen/key.pem" -subj "/CN=$id" -outform DER 2>/dev/null |
  base64 >"$work/reenroll.b64"
code=$(curl -sS -o "$work/reenroll.body" -w '%{http_code}' --cacert "$root" \
  --cert "$stolen/cert.pem" --key "$stolen/key.pem" -H 'Content-Type: application/pkcs10' \
  --data-binary @"$work/reenroll.b64" "$url/.well-known/est/simplereenroll")
echo "HTTP $code: $(head -c 200 "$work/reenroll.body")"
[ "$code" = 403 ] || { echo "unexpected: expected 403" >&2; exit 1; }

step "openssl verify -crl_check with the CRL served at $url/crl/operational.crl"
# Until the served CRL lists this certificate (an earlier CRL may list others): 60 s at most, the
# publisher polls every 2 s, longer on a busy machine.
stolen_serial=$(openssl x509 -in "$stolen/cert.pem" -noout -serial | cut -d= -f2)
for _ in $(seq 300); do
  curl -sS --cacert "$root" -o "$work/operational.crl" "$url/crl/operational.crl"
  openssl crl -inform DER -in "$work/operational.crl" -noout -text |
    grep -qi "Serial Number: *$stolen_serial" && break
  sleep 0.2
done
openssl crl -inform DER -in "$work/operational.crl" -out "$work/operational.crl.pem"
openssl crl -in "$work/operational.crl.pem" -noout -issuer -lastupdate -nextupdate -crlnumber
if openssl verify -crl_check -CAfile "$root" -untrusted "$ops" -CRLfile "$work/operational.crl.pem" \
  "$stolen/cert.pem" >"$work/verify.out" 2>&1; then
  echo "unexpected: the revoked certificate verified" >&2
  exit 1
fi
grep -m1 'error' "$work/verify.out"
openssl verify -crl_check -CAfile "$root" -untrusted "$ops" -CRLfile "$work/operational.crl.pem" \
  "$good/cert.pem"

step "openssl ocsp -url $url/ocsp"
for who in "$stolen" "$good"; do
  openssl ocsp -issuer "$ops" -cert "$who/cert.pem" -url "$url/ocsp" -CAfile "$root" \
    -verify_other "$ops" 2>&1 | grep -E 'cert.pem: |Reason|Revocation Time' | sed "s|$data/||"
done

step "the broker: the revoked device is refused, the other one still connects"
refused=""
for _ in $(seq 300); do  # 60 s at most: the publisher polls every 2 s, longer on a busy machine
  if ! publish "$stolen"; then refused=yes; break; fi
  sleep 0.2
done
[ -n "$refused" ] || { echo "unexpected: the broker let the revoked device in" >&2; exit 1; }
echo "STH-L1-000004 refused: $(tail -n 1 "$work/pub.err")"
publish "$good" && echo "STH-L1-000005 connects to the broker"
