#!/usr/bin/env bash
# `iotpki-agent run --mqtt` with the device's working key in hardware: one device whose key lives
# in a PKCS#11 token (SoftHSM2, a token made here with its own SOFTHSM2_CONF), one whose key
# lives in a TPM (swtpm, started here). Each connects to a real Mosquitto that requires client
# certificates (tests/mqtt_broker.sh), its TLS handshake signed in the token or the TPM; a signed
# rotate command (mode rekey, signed here with openssl alone) makes a new key in the same token
# or TPM, the job is confirmed, and the MQTT session moves to the new certificate, whose
# handshake the new key signs. The broker's log names each device as it connects.
# Usage: hw_mqtt_test.sh PATH_TO_IOTPKI PATH_TO_IOTPKI_AGENT
#   (exit 3: mosquitto or swtpm not installed; scripts/setup.sh installs both)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"
source "$(dirname "$0")/command_lib.sh"
BROKER_SH="$(dirname "$0")/mqtt_broker.sh"
SWTPM="$(dirname "$0")/swtpm.sh"
command -v mosquitto_pub >/dev/null || {
  echo "mosquitto clients are not installed (scripts/setup.sh installs them)" >&2
  exit 3
}
AGENT_PID=""
cleanup() {
  if [ -n "$AGENT_PID" ]; then
    kill -KILL "$AGENT_PID" 2>/dev/null
    wait "$AGENT_PID" 2>/dev/null
  fi
  bash "$BROKER_SH" stop "$WORK/broker" >/dev/null 2>&1
  bash "$SWTPM" stop "$WORK/tpm" >/dev/null 2>&1
  stop_server_quietly
  rm -rf "$WORK"
}
trap cleanup EXIT

rc=0
TCTI=$(bash "$SWTPM" start "$WORK/tpm") || rc=$?
[ "$rc" = 3 ] && exit 3
[ "$rc" = 0 ] || exit 1
export TPM2OPENSSL_TCTI=$TCTI TPM2TOOLS_TCTI=$TCTI

MODULE=/usr/lib/softhsm/libsofthsm2.so
mkdir -p "$WORK/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$WORK/tokens" >"$WORK/softhsm2.conf"
export SOFTHSM2_CONF="$WORK/softhsm2.conf" IOTPKI_PKCS11_PIN="device-se-pin-1"
unset IOTPKI_PKCS11_MODULE
softhsm2-util --init-token --free --label device-se --pin "$IOTPKI_PKCS11_PIN" \
  --so-pin "so-pin-12345" >"$WORK/init-token.out" 2>&1 || {
  echo "softhsm2-util --init-token failed (scripts/setup.sh installs softhsm2)" >&2
  exit 1
}

check "ca init" "$IOTPKI" ca init --dir "$CA" --org "Example Org"
provision hw 2
start_server
for n in 1 2; do
  mkdir -p "$WORK/state$n"
  cp -r "$WORK/hw/hw-00000$n" "$WORK/state$n/factory"
done
check "bootstrap the token device" "$AGENT" --state "$WORK/state1" --key-store pkcs11:token=device-se \
  bootstrap --server "$URL" --est
check "bootstrap the TPM device" "$AGENT" --state "$WORK/state2" --key-store tpm2: bootstrap \
  --server "$URL" --est
ID1=$(device_id "$WORK/state1/factory")
ID2=$(device_id "$WORK/state2/factory")
printf '%s\n%s\n' "$ID1" "$ID2" >"$WORK/ids.txt"
check "campaign" "$IOTPKI" campaign create --dir "$CA" --name hw --devices "$WORK/ids.txt"

cat "$CA/certs/root.pem" "$CA/certs/operational.pem" >"$WORK/clients-ca.pem"
PORT_MQTT=$(bash "$BROKER_SH" start "$WORK/broker" "$WORK/clients-ca.pem") || {
  rc=$?
  [ "$rc" = 3 ] && exit 3
  echo "broker did not start" >&2
  exit 1
}
# Each connection in the broker's log, with the identity it took from the client certificate.
sed -i 's/^log_type warning$/log_type warning\nlog_type notice/' "$WORK/broker/mosquitto.conf"
bash "$BROKER_SH" reload "$WORK/broker"

make_command_cert "$CA"
rotate_cmd() { # DEVICE JOB
  sign "$(printf '{"op":"rotate","campaign":"hw","job":%s,"device_id":"%s","mode":"rekey","nonce":"%s","not_after":%s}' \
    "$2" "$1" "$(openssl rand -hex 16)" $(($(date +%s) + 600)))"
}
publish() { # DEVICE PAYLOAD
  mosquitto_pub -h 127.0.0.1 -p "$PORT_MQTT" --cafile "$WORK/broker/broker.crt" \
    --cert "$WORK/cmd.pem" --key "$WORK/cmd.key" -V mqttv5 -q 1 -t "iotpki/devices/$1/cmd" -m "$2"
}
# wait_for FILE PATTERN COUNT: until FILE has COUNT lines matching PATTERN (20 s at most).
wait_for() {
  for _ in $(seq 200); do
    [ "$(grep -cE -- "$2" "$1" 2>/dev/null)" -ge "$3" ] && return 0
    sleep 0.1
  done
  return 1
}
key_uri() { head -1 "$1/active/key.uri"; }

# run_device NAME STATE ID JOB URI_PATTERN: the agent connects with its hardware key, a signed
# command rotates it to a new key in the same store, the session moves to the new certificate.
run_device() {
  local name=$1 state=$2 id=$3 job=$4 pattern=$5 old_uri new_uri
  old_uri=$(key_uri "$state")
  : >"$WORK/run-$name.out"
  "$AGENT" --state "$state" run --mqtt "mqtts://127.0.0.1:$PORT_MQTT" \
    --mqtt-ca "$WORK/broker/broker.crt" >>"$WORK/run-$name.out" 2>>"$WORK/run-$name.err" &
  AGENT_PID=$!
  check "$name: the agent connects, the handshake signed by its hardware key" \
    wait_for "$WORK/run-$name.out" "^mqtt: connected as $id" 1
  expect "$name: the broker took the device's identity from its certificate" \
    "New client connected from 127\.0\.0\.1.* as $id .*u'$id'" "$WORK/broker/mosquitto.log"
  sleep 0.5 # the subscription settles
  publish "$id" "$(rotate_cmd "$id" "$job")"
  check "$name: a signed rekey command rotates the device" wait_for "$WORK/run-$name.out" \
    "^rotated: certificate" 1
  check "$name: the session moves to the new certificate (a handshake with the new key)" \
    wait_for "$WORK/run-$name.out" "^mqtt: connected as $id" 2
  new_uri=$(key_uri "$state")
  if [ "$new_uri" != "$old_uri" ] && [[ "$new_uri" =~ $pattern ]]; then
    pass "$name: the new key is in the same store ($new_uri)"
  else
    fail "$name: key $old_uri -> $new_uri"
  fi
  equal "$name: the job is confirmed with the new certificate" \
    "$(sql "SELECT state || ' ' || new_serial FROM rotation_jobs WHERE ordinal = $job")" \
    "confirmed $(openssl x509 -in "$state/active/cert.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')"
  kill -TERM "$AGENT_PID"
  local code=0
  wait "$AGENT_PID" || code=$?
  AGENT_PID=""
  equal "$name: run ends on SIGTERM with exit 0" "$code" 0
  if grep -rlE "BEGIN (EC )?PRIVATE KEY" "$state" --exclude-dir=factory; then
    fail "$name: a private key in the clear in the state directory"
  else
    pass "$name: no private key in the clear in the state directory"
  fi
  no_secrets "$name: no secret in the agent's output" "$WORK/run-$name.out" "$IOTPKI_PKCS11_PIN"
}

# job_of DEVICE_ID: the device's job number in the campaign.
job_of() {
  sql "SELECT j.ordinal FROM rotation_jobs j JOIN devices d ON d.seq = j.device_seq \
    WHERE hex(d.device_id) = upper('$1')"
}
run_device pkcs11 "$WORK/state1" "$ID1" "$(job_of "$ID1")" '^pkcs11:token=device-se;object=ldevid-'
run_device tpm2 "$WORK/state2" "$ID2" "$(job_of "$ID2")" '^tpm2:blob=keys/ldevid-'
# tpm2-tools, now that no agent holds swtpm's one connection: nothing left loaded in the TPM.
equal "tpm2_getcap: no transient or persistent object left in the TPM" \
  "$(tpm2_getcap handles-transient)$(tpm2_getcap handles-persistent)" ""

stop_server
finish
