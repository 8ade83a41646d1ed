#!/usr/bin/env bash
# `iotpki serve` with curl as an independent EST client (RFC 7030): cacerts, csrattrs,
# simpleenroll, simplereenroll (renew and rekey), CSRs made by `openssl req`, answers decoded with
# `openssl pkcs7`, chains checked with `openssl verify`, the store read with sqlite3; the JSON API
# with a token computed by `openssl dgst`; metrics; a graceful shutdown with a request in flight.
# Usage: serve_est_test.sh PATH_TO_IOTPKI
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"

check "ca init" "$IOTPKI" ca init --dir "$CA" --org "Example Org"
provision est 3
D1="$WORK/est/est-000001"
D2="$WORK/est/est-000002"
D3="$WORK/est/est-000003"
ID1=$(device_id "$D1")
start_server
expect "prints the port it listens on" "listening on 127.0.0.1:$PORT" "$WORK/serve.out"
check "server certificate recorded in the store" \
  test "$(sql "SELECT COUNT(*) FROM certificates WHERE profile = 'server'")" = 1
openssl s_client -connect "127.0.0.1:$PORT" -CAfile "$CA/certs/root.pem" -verify_return_error \
  -verify_ip 127.0.0.1 </dev/null >"$WORK/sclient" 2>&1
expect "server certificate verifies to the root with its IP in the SAN (s_client)" \
  "Verify return code: 0" "$WORK/sclient"
openssl s_client -connect "127.0.0.1:$PORT" -tls1_2 -CAfile "$CA/certs/root.pem" </dev/null \
  >"$WORK/sclient12" 2>&1
expect "TLS 1.2 accepted" "Protocol *: TLSv1.2" "$WORK/sclient12"
expect "client certificates are requested (manufacturing CA named)" \
  "Acceptable client certificate CA names" "$WORK/sclient12"

# --- cacerts, csrattrs --------------------------------------------------------------------------
status "GET cacerts without a client certificate" 200 "$(http "$URL/.well-known/est/cacerts")"
p7_certs "$WORK/body" "$WORK/cacerts.pem"
expect "cacerts holds the operational CA" "CN ?= ?Operational CA" "$WORK/cacerts.pem"
expect "cacerts holds the root" "CN ?= ?Root CA" "$WORK/cacerts.pem"
status "GET cacerts under a CA label" 200 "$(http "$URL/.well-known/est/fleet-a/cacerts")"
status "a label named like an operation is no label" 404 \
  "$(http "$URL/.well-known/est/simpleenroll/cacerts")"
status "GET csrattrs" 200 "$(http "$URL/.well-known/est/csrattrs")"
base64 -d "$WORK/body" | openssl asn1parse -inform DER >"$WORK/csrattrs.txt"
expect "csrattrs asks for ECDSA-SHA256 on P-256" "prime256v1" "$WORK/csrattrs.txt"

# --- simpleenroll -------------------------------------------------------------------------------
csr_b64 "$WORK/ld1.key" "/CN=$ID1" >"$WORK/ld1.b64"
status "simpleenroll with the IDevID" 200 "$(http --cert "$D1/cert.pem" --key "$D1/key.plain.pem" \
  -H 'Content-Type: application/pkcs10' --data-binary @"$WORK/ld1.b64" \
  "$URL/.well-known/est/simpleenroll")"
p7_certs "$WORK/body" "$WORK/ld1.pem"
check "the answer holds only the new certificate" test "$(grep -c 'BEGIN CERTIFICATE' "$WORK/ld1.pem")" = 1
check "LDevID verifies to the root (openssl verify, sslclient)" openssl verify \
  -CAfile "$CA/certs/root.pem" -untrusted "$CA/certs/operational.pem" -purpose sslclient "$WORK/ld1.pem"
openssl x509 -in "$WORK/ld1.pem" -noout -text -nameopt RFC2253 >"$WORK/ld1.txt"
expect "LDevID names the device" "CN=$ID1" "$WORK/ld1.txt"
expect "LDevID is for the CSR's key" "$(openssl pkey -in "$WORK/ld1.key" -pubout | sed -n 2p | cut -c1-40)" \
  <(openssl x509 -in "$WORK/ld1.pem" -noout -pubkey)
equal "device is active" "$(sql "SELECT state FROM devices WHERE device_id = '$ID1'")" "active"
equal "LDevID recorded for the device" \
  "$(sql "SELECT COUNT(*) FROM certificates WHERE profile = 'ldevid' AND device_id = '$ID1'")" "1"
equal "issuance audited" \
  "$(sql "SELECT COUNT(*) FROM audit_log WHERE action = 'cert.issue' AND actor = 'server'")" "1"

# CRLF line breaks and a Content-Transfer-Encoding header (ignored, RFC 8951); a retry of an
# active device with a fresh key is accepted (idempotent enrollment); a label is accepted.
csr_b64 "$WORK/ld1b.key" "/CN=$ID1" | fold -w 64 | sed 's/$/\r/' >"$WORK/ld1b.b64"
status "simpleenroll retry with CRLF base64 and a label" 200 "$(http --cert "$D1/cert.pem" \
  --key "$D1/key.plain.pem" -H 'Content-Type: application/pkcs10' \
  -H 'Content-Transfer-Encoding: base64' --data-binary @"$WORK/ld1b.b64" \
  "$URL/.well-known/est/fleet-a/simpleenroll")"

# --- simplereenroll: renew (same key) and rekey (new key) ---------------------------------------
SUBJ="/O=Example Org/CN=$ID1/serialNumber=est-000001"
csr_b64 "$WORK/ld1.key" "$SUBJ" >"$WORK/renew.b64"
status "simplereenroll, same key (renew)" 200 "$(http --cert "$WORK/ld1.pem" --key "$WORK/ld1.key" \
  -H 'Content-Type: application/pkcs10' --data-binary @"$WORK/renew.b64" \
  "$URL/.well-known/est/simplereenroll")"
p7_certs "$WORK/body" "$WORK/renewed.pem"
equal "renewed certificate keeps the key" \
  "$(openssl x509 -in "$WORK/renewed.pem" -noout -pubkey)" "$(openssl x509 -in "$WORK/ld1.pem" -noout -pubkey)"
check "renewed certificate verifies" openssl verify -CAfile "$CA/certs/root.pem" \
  -untrusted "$CA/certs/operational.pem" "$WORK/renewed.pem"
csr_b64 "$WORK/rekey.key" "$SUBJ" >"$WORK/rekey.b64"
status "simplereenroll, new key (rekey)" 200 "$(http --cert "$WORK/renewed.pem" \
  --key "$WORK/ld1.key" -H 'Content-Type: application/pkcs10' --data-binary @"$WORK/rekey.b64" \
  "$URL/.well-known/est/simplereenroll")"
p7_certs "$WORK/body" "$WORK/rekeyed.pem"
equal "rekeyed certificate carries the new key" \
  "$(openssl x509 -in "$WORK/rekeyed.pem" -noout -pubkey)" "$(openssl pkey -in "$WORK/rekey.key" -pubout)"
equal "four LDevIDs for the device" \
  "$(sql "SELECT COUNT(*) FROM certificates WHERE profile = 'ldevid' AND device_id = '$ID1'")" "4"

# --- the JSON bootstrap API, with a token computed by openssl -----------------------------------
ID2=$(device_id "$D2")
TS=$(date +%s)
TOKEN=$(token "$(cat "$D2/bootstrap.hex")" "$ID2" "$TS")
csr_b64 "$WORK/ld2.key" "/CN=$ID2" >"$WORK/ld2.b64"
printf '{"device_id":"%s","csr":"%s","device_cert":"%s","timestamp":%s,"token":"%s"}' \
  "$ID2" "$(cat "$WORK/ld2.b64")" "$(openssl x509 -in "$D2/cert.pem" -outform DER | base64 -w0)" \
  "$TS" "$TOKEN" >"$WORK/boot2.json"
status "JSON bootstrap with TLS client authentication" 200 "$(http --cert "$D2/cert.pem" \
  --key "$D2/key.plain.pem" -H 'Content-Type: application/json' --data-binary @"$WORK/boot2.json" \
  "$URL/api/v1/bootstrap")"
expect "answer has certificate, chain and not_after" '"certificate":.*"chain":.*"not_after":' "$WORK/body"
sed -n 's/.*"certificate":"\([^"]*\)".*/\1/p' "$WORK/body" | base64 -d |
  openssl x509 -inform DER -out "$WORK/ld2.pem"
check "JSON LDevID verifies" openssl verify -CAfile "$CA/certs/root.pem" \
  -untrusted "$CA/certs/operational.pem" "$WORK/ld2.pem"

# The brief's flow: no client certificate, the CSR signed with the IDevID key itself.
ID3=$(device_id "$D3")
TS=$(date +%s)
printf '{"device_id":"%s","csr":"%s","device_cert":"%s","timestamp":%s,"token":"%s"}' \
  "$ID3" "$(csr_b64 "$D3/key.plain.pem" "/CN=$ID3")" \
  "$(openssl x509 -in "$D3/cert.pem" -outform DER | base64 -w0)" "$TS" \
  "$(token "$(cat "$D3/bootstrap.hex")" "$ID3" "$TS")" >"$WORK/boot3.json"
status "JSON bootstrap without a client certificate (CSR signed by the IDevID key)" 200 \
  "$(http -H 'Content-Type: application/json' --data-binary @"$WORK/boot3.json" "$URL/api/v1/bootstrap")"

# --- metrics ------------------------------------------------------------------------------------
curl -sS --cacert "$CA/certs/root.pem" "$URL/metrics" >"$WORK/metrics"
expect "metrics: requests by endpoint and status" \
  'iotpki_http_requests_total\{endpoint="est_simpleenroll",status="200"\} 2' "$WORK/metrics"
expect "metrics: certificates issued by profile" \
  'iotpki_certificates_issued_total\{profile="ldevid"\} 6' "$WORK/metrics"
expect "metrics: enrollment latency histogram" \
  'iotpki_enrollment_duration_seconds_bucket\{endpoint="bootstrap",le="\+Inf"\} 2' "$WORK/metrics"
expect "metrics: certificates expiring within 90 days" \
  'iotpki_certificates_expiring\{within="90d"\} 3' "$WORK/metrics"
status "healthz" 200 "$(http "$URL/healthz")"

# --- graceful shutdown: a request in flight when SIGTERM arrives still gets its answer ----------
( printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n'; sleep 3; printf '\r\n'; sleep 2 ) |
  openssl s_client -connect "127.0.0.1:$PORT" -quiet -ign_eof >"$WORK/inflight" 2>/dev/null &
CLIENT=$!
sleep 1.5  # the request's first bytes are in; its end comes after SIGTERM
kill -TERM "$SERVER_PID"
wait "$CLIENT"
expect "request in flight answered after SIGTERM" "HTTP/1.1 200 OK" "$WORK/inflight"
expect "with Connection: close" "Connection: close" "$WORK/inflight"
rc=0
wait "$SERVER_PID" || rc=$?
SERVER_PID=""
equal "server exits 0 after SIGTERM" "$rc" "0"
expect "server says it stopped" "^stopped" "$WORK/serve.out"
if curl -sS --cacert "$CA/certs/root.pem" "$URL/healthz" >/dev/null 2>&1; then
  fail "no longer listening after shutdown"
else
  pass "no longer listening after shutdown"
fi

# --- restart: the server certificate is reused --------------------------------------------------
start_server
status "restarted server answers" 200 "$(http "$URL/healthz")"
equal "server certificate reused, not reissued" \
  "$(sql "SELECT COUNT(*) FROM certificates WHERE profile = 'server'")" "1"
check "audit chain intact" "$IOTPKI" audit verify --dir "$CA"
stop_server
finish
