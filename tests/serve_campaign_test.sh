#!/usr/bin/env bash
# Rotation campaigns inside `iotpki serve`, end to end: a real Mosquitto (tests/mqtt_broker.sh,
# mutual TLS, the rotation ACLs), a real server with --campaigns, devices enrolled over EST whose
# LDevIDs mosquitto_sub and mosquitto_pub present. A campaign created from the CLI reaches each
# device as a signed command (checked with openssl alone: chain, key purpose, ES256 signature);
# the jobs are notified; a device's failure report puts its job back to pending with its retry
# delay; bad reports (malformed JSON, another device's job, a device in no campaign) are counted
# and change nothing; after kill -9 and a restart nothing is notified again before its delay.
# Usage: serve_campaign_test.sh PATH_TO_IOTPKI
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)

if ! command -v mosquitto_sub >/dev/null || ! command -v mosquitto_pub >/dev/null; then
  echo "mosquitto_sub or mosquitto_pub not installed (scripts/setup.sh installs them); skipped"
  exit 3
fi
BROKER="$WORK/broker"
trap 'bash "$HERE/mqtt_broker.sh" stop "$BROKER"; stop_server_quietly; rm -rf "$WORK"' EXIT

check "ca init" "$IOTPKI" ca init --dir "$CA" --org "Example Org"
provision rot 3
cat "$CA/certs/root.pem" "$CA/certs/operational.pem" >"$WORK/device-cas.pem"
MQTT_PORT=$(bash "$HERE/mqtt_broker.sh" start "$BROKER" "$WORK/device-cas.pem") || {
  rc=$?
  [ "$rc" -eq 3 ] && exit 3
  echo "broker did not start" >&2
  exit 1
}
MQTT_URL="mqtts://127.0.0.1:$MQTT_PORT"

refuse "--campaigns without a broker is refused" "campaigns need an MQTT broker" \
  "$IOTPKI" serve --dir "$CA" --listen 127.0.0.1:0 --campaigns
refuse "a bad --mqtt URL is refused" "bad MQTT broker URL" \
  "$IOTPKI" serve --dir "$CA" --listen 127.0.0.1:0 --campaigns --mqtt "mqtt://127.0.0.1:1" \
  --mqtt-ca "$BROKER/broker.crt"

serve_campaigns() {
  start_server --campaigns --mqtt "$MQTT_URL" --mqtt-ca "$BROKER/broker.crt"
}
serve_campaigns
check "serve made the command certificate" test -s "$CA/certs/command.pem"
equal "its key is 0600" "$(stat -c %a "$CA/keys/command.key")" "600"
check "its key is encrypted" grep -q "ENCRYPTED PRIVATE KEY" "$CA/keys/command.key"
openssl x509 -in "$CA/certs/command.pem" -noout -ext extendedKeyUsage >"$WORK/eku" 2>&1
expect "the command certificate carries the command-signing purpose" "1.3.6.1.4.1.32473.2.1" \
  "$WORK/eku"

# Three devices with LDevIDs from EST; 1 and 2 are in the campaign, 3 is not.
enroll() { # enroll DEVICE_DIR NAME: an LDevID in $WORK/NAME.pem with key $WORK/NAME.key
  csr_b64 "$WORK/$2.key" "/CN=$(device_id "$1")" >"$WORK/$2.b64"
  status "simpleenroll $2" 200 "$(http --cert "$1/cert.pem" --key "$1/key.plain.pem" \
    -H 'Content-Type: application/pkcs10' --data-binary @"$WORK/$2.b64" \
    "$URL/.well-known/est/simpleenroll")"
  p7_certs "$WORK/body" "$WORK/$2.pem"
}
i=0
for d in "$WORK"/rot/*/; do
  i=$((i + 1))
  enroll "$d" "dev$i"
  device_id "$d" >"$WORK/dev$i.id"
done
ID1=$(cat "$WORK/dev1.id")
ID2=$(cat "$WORK/dev2.id")
ID3=$(cat "$WORK/dev3.id")

mq() { # mq NAME: the options that connect as device NAME
  echo -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$BROKER/broker.crt" --cert "$WORK/$1.pem" \
    --key "$WORK/$1.key"
}
# Persistent sessions subscribed before the campaign exists: the broker keeps each device's
# command (QoS 1) until it reads it, so nothing depends on timing.
for n in 1 2; do
  id=$(cat "$WORK/dev$n.id")
  # shellcheck disable=SC2046
  check "device $n subscribes to its command topic" mosquitto_sub $(mq "dev$n") -c -i "dev$n" \
    -q 1 -t "iotpki/devices/$id/cmd" -E
done

printf '%s\n%s\n' "$ID1" "$ID2" >"$WORK/cohort.txt"
check "campaign create" "$IOTPKI" campaign create --dir "$CA" --name q3 --devices \
  "$WORK/cohort.txt" --retry-after 3600 --max-attempts 3 --mode rekey

for n in 1 2; do
  id=$(cat "$WORK/dev$n.id")
  # shellcheck disable=SC2046
  mosquitto_sub $(mq "dev$n") -c -i "dev$n" -q 1 -t "iotpki/devices/$id/cmd" -C 1 -W 60 \
    >"$WORK/cmd$n" 2>"$WORK/sub$n.err"
  check "device $n received a command" test -s "$WORK/cmd$n"
done

# --- the command, checked with openssl alone ----------------------------------------------------
b64url_decode() {
  local x
  x=$(printf '%s' "$1" | tr '_-' '/+')
  while [ $((${#x} % 4)) -ne 0 ]; do x="$x="; done
  printf '%s' "$x" | base64 -d
}
IFS=. read -r jws_h jws_p jws_s <"$WORK/cmd1"
b64url_decode "$jws_h" >"$WORK/jws-header.json"
b64url_decode "$jws_p" >"$WORK/jws-payload.json"
expect "the JWS header says ES256" '"alg":"ES256"' "$WORK/jws-header.json"
sed 's/.*"x5c":\["\([^"]*\)".*/\1/' "$WORK/jws-header.json" | base64 -d >"$WORK/signer.der"
openssl x509 -inform DER -in "$WORK/signer.der" -out "$WORK/signer.pem"
check "the signer chains to the operational CA (openssl verify)" openssl verify -partial_chain \
  -CAfile "$CA/certs/operational.pem" "$WORK/signer.pem"
if cmp -s "$WORK/signer.der" <(openssl x509 -in "$CA/certs/command.pem" -outform DER); then
  pass "the signer is the server's command certificate"
else
  fail "the signer is the server's command certificate"
fi
hex=$(b64url_decode "$jws_s" | od -An -tx1 -v | tr -d ' \n')
printf 'asn1=SEQUENCE:sig\n[sig]\nr=INTEGER:0x%s\ns=INTEGER:0x%s\n' "${hex:0:64}" "${hex:64:64}" \
  >"$WORK/sig.cnf"
openssl asn1parse -genconf "$WORK/sig.cnf" -out "$WORK/sig.der" -noout
printf '%s.%s' "$jws_h" "$jws_p" >"$WORK/jws-input"
openssl x509 -in "$WORK/signer.pem" -pubkey -noout >"$WORK/signer-pub.pem"
check "the ES256 signature verifies (openssl dgst)" openssl dgst -sha256 -verify \
  "$WORK/signer-pub.pem" -signature "$WORK/sig.der" "$WORK/jws-input"
expect "the command is for device 1" "\"device_id\":\"$ID1\"" "$WORK/jws-payload.json"
expect "the command names the campaign and the mode" '"campaign":"q3".*"mode":"rekey"' \
  "$WORK/jws-payload.json"
expect "op rotate" '"op":"rotate"' "$WORK/jws-payload.json"

check "campaign status" "$IOTPKI" campaign status --dir "$CA" q3
expect "both jobs are notified" "pending 0, notified 2" "$WORK/out"

job_of() { sql "SELECT j.ordinal FROM rotation_jobs j JOIN devices d ON d.seq = j.device_seq
  WHERE lower(hex(d.device_id)) = '$1'"; }
J1=$(job_of "$ID1")
jobs() { sql "SELECT group_concat(ordinal || ':' || state || ':' || attempts || ':' ||
  next_attempt_at || ':' || ifnull(last_error, ''), ' ') FROM rotation_jobs"; }

metric() { # metric NAME_AND_LABELS: its value on /metrics (0 when absent)
  curl -sS --cacert "$CA/certs/root.pem" "$URL/metrics" >"$WORK/metrics"
  local v
  v=$(grep -vF "#" "$WORK/metrics" | grep -F "$1 " | awk '{print $2}')
  echo "${v:-0}"
}
wait_metric() { # wait_metric NAME_AND_LABELS AT_LEAST
  for _ in $(seq 200); do
    [ "$(metric "$1")" -ge "$2" ] 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
expect "metrics: jobs by state" "iotpki_campaign_jobs\\{campaign=\"q3\",state=\"notified\"\\} 2" \
  <(curl -sS --cacert "$CA/certs/root.pem" "$URL/metrics")
check "metrics: notifications published" test "$(metric \
  'iotpki_campaign_notifications_total{result="published"}')" -ge 2

# --- bad reports: counted, nothing changed -------------------------------------------------------
before=$(jobs)
report1="{\"campaign\":\"q3\",\"job\":$J1,\"status\":\"failed\",\"reason\":\"install failed\"}"
# First a report the broker's ACL drops (device 2 on device 1's status topic), then the rest;
# messages reach the server in the order the broker took them, so once the last is counted, the
# dropped one would have been too.
# shellcheck disable=SC2046
mosquitto_pub $(mq dev2) -q 1 -t "iotpki/devices/$ID1/status" -m "$report1" >"$WORK/pub.err" 2>&1
# shellcheck disable=SC2046
check "device 2 sends malformed JSON" mosquitto_pub $(mq dev2) -q 1 \
  -t "iotpki/devices/$ID2/status" -m '{"campaign":'
# shellcheck disable=SC2046
check "device 2 reports a failure of device 1's job" mosquitto_pub $(mq dev2) -q 1 \
  -t "iotpki/devices/$ID2/status" -m "$report1"
# shellcheck disable=SC2046
check "device 3 (in no campaign) reports a failure of device 1's job" mosquitto_pub $(mq dev3) \
  -q 1 -t "iotpki/devices/$ID3/status" -m "$report1"
check "malformed report counted" wait_metric \
  'iotpki_campaign_status_messages_total{outcome="malformed"}' 1
check "reports about another device's job counted" wait_metric \
  'iotpki_campaign_status_messages_total{outcome="not_this_device"}' 2
equal "device 2 could not speak for device 1 (the broker's ACL)" \
  "$(metric 'iotpki_campaign_status_messages_total{outcome="applied"}')" "0"
equal "no job changed" "$(jobs)" "$before"
expect "refused reports are logged" "campaign.status_refused" "$WORK/serve.err"

# --- a failure report from the device itself -----------------------------------------------------
t0=$(date +%s)
# shellcheck disable=SC2046
check "device 1 reports its failure" mosquitto_pub $(mq dev1) -q 1 \
  -t "iotpki/devices/$ID1/status" -m "$report1"
check "the report is applied" wait_metric \
  'iotpki_campaign_status_messages_total{outcome="applied"}' 1
IFS='|' read -r state attempts next err < <(sql "SELECT state, attempts, next_attempt_at,
  last_error FROM rotation_jobs WHERE ordinal = $J1")
equal "device 1's job is pending again" "$state" "pending"
equal "after one attempt" "$attempts" "1"
check "not before its retry delay (3600 s)" test "$next" -ge $((t0 + 3600))
equal "with the device's reason" "$err" "device: install failed"
expect "the transition has its audit row" "campaign.job.pending" \
  <(sql "SELECT action FROM audit_log WHERE subject = '$ID1' ORDER BY seq DESC LIMIT 1")

# --- kill -9, restart: nothing notified again before its delay -----------------------------------
before=$(jobs)
notified_rows=$(sql "SELECT COUNT(*) FROM audit_log WHERE action = 'campaign.job.notified'")
stop_server_quietly
serve_campaigns
if wait_metric 'iotpki_campaign_scheduler_passes_total' 3; then
  pass "the restarted server runs scheduler passes"
else
  fail "the restarted server runs scheduler passes"
  grep -E "campaign|mqtt" "$WORK/serve.err" | head -5
  grep campaign "$WORK/metrics" | head -20
fi
equal "no job changed after the restart" "$(jobs)" "$before"
equal "nothing was notified again" \
  "$(sql "SELECT COUNT(*) FROM audit_log WHERE action = 'campaign.job.notified'")" "$notified_rows"
check "audit verify" "$IOTPKI" audit verify --dir "$CA"
no_secrets "the server log holds no secret" "$WORK/serve.err"

finish
