#!/usr/bin/env bash
# `iotpki serve` with curl as an independent EST client (RFC 7030): cacerts, csrattrs,
# simpleenroll, simplereenroll (renew and rekey), CSRs made by `openssl req`, answers decoded with
# `openssl pkcs7`, chains checked with `openssl verify`, the store read with sqlite3; the JSON API
# with a token computed by `openssl dgst`; metrics; a graceful shutdown with a request in flight;
# C509 answers chosen by Accept, decoded with `iotpki c509 decode` and checked with openssl.
# Usage: serve_est_test.sh PATH_TO_IOTPKI
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"

check "ca init" "$IOTPKI" ca init --dir "$CA" --org "Example Org"
provision est 3
D1="$WORK/est/est-000001"
D2="$WORK/est/est-000002"
D3="$WORK/est/est-000003"
ID1=$(device_id "$D1")
start_server --log-format text
expect "logs the address it listens on" "INFO  serve.listening address=127.0.0.1:$PORT " \
  "$WORK/serve.err"
check "server certificate recorded in the store" \
  test "$(sql "SELECT COUNT(*) FROM certificates WHERE profile = 'server' AND subject NOT LIKE '%OCSP responder%'")" = 1
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
equal "LDevID is for the CSR's key" "$(openssl x509 -in "$WORK/ld1.pem" -noout -pubkey)" \
  "$(openssl pkey -in "$WORK/ld1.key" -pubout)"
equal "device is active" "$(sql "SELECT state FROM devices WHERE device_id = X'$ID1'")" "active"
expect "the enrollment's log line names the device" \
  "INFO  http.request request_id=[0-9a-f]{16} peer=127.0.0.1:[0-9]+ method=POST \
path=/.well-known/est/simpleenroll endpoint=est_simpleenroll status=200 device=$ID1 ms=" \
  "$WORK/serve.err"
equal "LDevID recorded for the device" \
  "$(sql "SELECT COUNT(*) FROM certificates WHERE profile = 'ldevid' AND
    device_seq = (SELECT seq FROM devices WHERE device_id = X'$ID1')")" "1"
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
  "$(sql "SELECT COUNT(*) FROM certificates WHERE profile = 'ldevid' AND
    device_seq = (SELECT seq FROM devices WHERE device_id = X'$ID1')")" "4"

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
expect "logs the signal" "INFO  serve.stopping signal=SIGTERM" "$WORK/serve.err"
expect "logs that it stopped" "INFO  serve.stopped store_batches=[0-9]+" "$WORK/serve.err"
no_secrets "no secret in the log (tokens, bootstrap secrets, passphrases, keys)" "$WORK/serve.err"
if curl -sS --cacert "$CA/certs/root.pem" "$URL/healthz" >/dev/null 2>&1; then
  fail "no longer listening after shutdown"
else
  pass "no longer listening after shutdown"
fi

# --- logging options: refused when wrong, the flags over [log] -----------------------------------
refuse "an unknown --log-format" "^iotpki: --log-format: log format 'xml' is not one of text, json$" \
  "$IOTPKI" serve --dir "$CA" --log-format xml
printf '[log]\nlevel = "loud"\n' >"$WORK/badlog.toml"
refuse "an unknown [log] level" "badlog.toml: log.level: log level 'loud' is not one of" \
  "$IOTPKI" serve --dir "$CA" --config "$WORK/badlog.toml"
printf '[log]\nformat = "json"\nlevel = "error"\n' >"$WORK/log.toml"

# --- restart: the server certificate is reused --------------------------------------------------
start_server --config "$WORK/log.toml" --log-format text --log-level info
expect "--log-format and --log-level win over [log]" "INFO  serve.listening" "$WORK/serve.err"
status "restarted server answers" 200 "$(http "$URL/healthz")"
equal "server certificate reused, not reissued" \
  "$(sql "SELECT COUNT(*) FROM certificates WHERE profile = 'server' AND subject NOT LIKE '%OCSP responder%'")" "1"

# --- C509 answers (Accept), draft-ietf-cose-cbor-encoded-cert + draft-liao-ace-est-c509 ---------
# ctype: the Content-Type of the last answer; headers in $WORK/headers.
ctype() { sed -n 's/^[Cc]ontent-[Tt]ype: *\(.*\)\r$/\1/p' "$WORK/headers" | tail -1; }
# cose_split FILE PREFIX: the byte strings of a COSE_C509 (one, or an array of them) into PREFIX.0,
# PREFIX.1, ... with od and dd, independently of iotpki's CBOR code; fails on anything else.
cose_split() {
  local f=$1 p=$2 off=0 count=1 i h len hl
  byte() { od -An -tu1 -j"$1" -N1 "$f" | tr -d ' '; }
  h=$(byte 0)
  if [ $((h >> 5)) = 4 ]; then count=$((h & 31)); off=1; fi
  for ((i = 0; i < count; i++)); do
    h=$(byte $off)
    [ $((h >> 5)) = 2 ] || return 1
    case $((h & 31)) in
      24) len=$(byte $((off + 1))); hl=2 ;;
      25) len=$(($(byte $((off + 1))) * 256 + $(byte $((off + 2))))); hl=3 ;;
      *) len=$((h & 31)); hl=1 ;;
    esac
    dd if="$f" of="$p.$i" bs=1 skip=$((off + hl)) count="$len" status=none
    off=$((off + hl + len))
  done
  if [ "$off" = "$(stat -c %s "$f")" ]; then echo "$count"; else echo "$count, then trailing bytes"; fi
}
openssl x509 -in "$CA/certs/operational.pem" -outform DER -out "$WORK/opca.der"
openssl x509 -in "$CA/certs/root.pem" -outform DER -out "$WORK/root.der"

status "cacerts, Accept: application/cose-c509-cert+cbor" 200 "$(http -D "$WORK/headers" \
  -H 'Accept: application/cose-c509-cert+cbor' "$URL/.well-known/est/cacerts")"
equal "its Content-Type" "$(ctype)" "application/cose-c509-cert+cbor"
if grep -qi '^Content-Transfer-Encoding' "$WORK/headers"; then
  fail "no Content-Transfer-Encoding on CBOR (draft-liao-ace-est-c509)"
else pass "no Content-Transfer-Encoding on CBOR (draft-liao-ace-est-c509)"; fi
base64 -d "$WORK/body" >"$WORK/cacert.c509"
check "the body is base64 of one C509 certificate: iotpki c509 decode" \
  "$IOTPKI" c509 decode --in "$WORK/cacert.c509" --out "$WORK/cacert.der"
check "... giving back the operational CA's DER" cmp "$WORK/cacert.der" "$WORK/opca.der"

status "cacerts, Accept: application/cose-c509+cbor; usage=chain" 200 "$(http -D "$WORK/headers" \
  -H 'Accept: application/cose-c509+cbor; usage=chain' "$URL/.well-known/est/cacerts")"
equal "its Content-Type" "$(ctype)" "application/cose-c509+cbor; usage=chain"
base64 -d "$WORK/body" >"$WORK/cachain.cbor"
equal "COSE_C509: an array of two byte strings, nothing after" \
  "$(cose_split "$WORK/cachain.cbor" "$WORK/cachain")" "2"
check "first the operational CA" \
  sh -c "'$IOTPKI' c509 decode --in '$WORK/cachain.0' | cmp - '$WORK/opca.der'"
check "then the root" sh -c "'$IOTPKI' c509 decode --in '$WORK/cachain.1' | cmp - '$WORK/root.der'"
status "cacerts, Accept: application/cose-c509+cbor (a set)" 200 "$(http -D "$WORK/headers" \
  -H 'Accept: application/cose-c509+cbor' "$URL/.well-known/est/cacerts")"
equal "its Content-Type has no usage" "$(ctype)" "application/cose-c509+cbor"
status "cacerts without Accept" 200 "$(http -D "$WORK/headers" -H 'Accept:' \
  "$URL/.well-known/est/cacerts")"
equal "is still PKCS#7" "$(ctype)" "application/pkcs7-mime"
check "... which openssl reads" p7_certs "$WORK/body" "$WORK/cacerts2.pem"
status "cacerts, Accept: */* (curl's default)" 200 "$(http -D "$WORK/headers" -H 'Accept: */*' \
  "$URL/.well-known/est/cacerts")"
equal "is PKCS#7" "$(ctype)" "application/pkcs7-mime"

# simpleenroll, one certificate: D1 is active, so a retry with a fresh key is answered again.
csr_b64 "$WORK/c1.key" "/CN=$ID1" >"$WORK/c1.b64"
status "simpleenroll, Accept: application/cose-c509-cert+cbor" 200 "$(http -D "$WORK/headers" \
  --cert "$D1/cert.pem" --key "$D1/key.plain.pem" -H 'Content-Type: application/pkcs10' \
  -H 'Accept: application/pkcs7-mime;q=0.5, application/cose-c509-cert+cbor' \
  --data-binary @"$WORK/c1.b64" "$URL/.well-known/est/simpleenroll")"
equal "its Content-Type" "$(ctype)" "application/cose-c509-cert+cbor"
base64 -d "$WORK/body" >"$WORK/c1.c509"
check "iotpki c509 decode gives DER" "$IOTPKI" c509 decode --in "$WORK/c1.c509" --out "$WORK/c1.der"
openssl x509 -inform DER -in "$WORK/c1.der" -out "$WORK/c1.pem"
check "that DER verifies to the root (openssl verify): the X.509 signature survived" \
  openssl verify -CAfile "$CA/certs/root.pem" -untrusted "$CA/certs/operational.pem" \
  -purpose sslclient "$WORK/c1.pem"
equal "it certifies the CSR's key" "$(openssl x509 -in "$WORK/c1.pem" -noout -pubkey)" \
  "$(openssl pkey -in "$WORK/c1.key" -pubout)"
equal "and is the DER the store recorded" "$(sql "SELECT COUNT(*) FROM certificates WHERE \
  hex(der) = '$(od -An -tx1 -v "$WORK/c1.der" | tr -d ' \n' | tr a-f A-F)'")" "1"
check "the C509 is smaller than the DER" test "$(stat -c %s "$WORK/c1.c509")" -lt \
  "$(stat -c %s "$WORK/c1.der")"

# simplereenroll, the chain: leaf then the operational CA.
csr_b64 "$WORK/rekey.key" "$SUBJ" >"$WORK/c2.b64"
status "simplereenroll, Accept: application/cose-c509+cbor" 200 "$(http -D "$WORK/headers" \
  --cert "$WORK/rekeyed.pem" --key "$WORK/rekey.key" -H 'Content-Type: application/pkcs10' \
  -H 'Accept: application/cose-c509+cbor' --data-binary @"$WORK/c2.b64" \
  "$URL/.well-known/est/simplereenroll")"
equal "its Content-Type says usage=chain" "$(ctype)" "application/cose-c509+cbor; usage=chain"
base64 -d "$WORK/body" >"$WORK/c2.cbor"
equal "COSE_C509 of two certificates" "$(cose_split "$WORK/c2.cbor" "$WORK/c2")" "2"
"$IOTPKI" c509 decode --in "$WORK/c2.0" --pem --out "$WORK/c2.leaf.pem"
"$IOTPKI" c509 decode --in "$WORK/c2.1" --pem --out "$WORK/c2.ca.pem"
check "the decoded leaf verifies with the decoded chain (openssl verify)" \
  openssl verify -CAfile "$CA/certs/root.pem" -untrusted "$WORK/c2.ca.pem" "$WORK/c2.leaf.pem"
check "the chain's CA is the operational CA" \
  sh -c "openssl x509 -in '$WORK/c2.ca.pem' -outform DER | cmp - '$WORK/opca.der'"
equal "renewed: same key" "$(openssl x509 -in "$WORK/c2.leaf.pem" -noout -pubkey)" \
  "$(openssl pkey -in "$WORK/rekey.key" -pubout)"

# Nothing acceptable: 406 before anything is issued; a malformed Accept: 400.
before=$(ldevids)
csr_b64 "$WORK/c3.key" "/CN=$ID1" >"$WORK/c3.b64"
status "simpleenroll, Accept: application/json only" 406 "$(http -D "$WORK/headers" \
  --cert "$D1/cert.pem" --key "$D1/key.plain.pem" -H 'Content-Type: application/pkcs10' \
  -H 'Accept: application/json' --data-binary @"$WORK/c3.b64" "$URL/.well-known/est/simpleenroll")"
expect "406 body is the JSON error" '"error": ?"not_acceptable"' "$WORK/body"
expect "naming what is available" 'application/cose-c509-cert\+cbor' "$WORK/body"
status "simpleenroll, Accept: application/cose-c509-cert+cbor;q=0, text/*" 406 "$(http \
  --cert "$D1/cert.pem" --key "$D1/key.plain.pem" -H 'Content-Type: application/pkcs10' \
  -H 'Accept: application/cose-c509-cert+cbor;q=0, text/*' --data-binary @"$WORK/c3.b64" \
  "$URL/.well-known/est/simpleenroll")"
status "cacerts, Accept: image/png" 406 "$(http -H 'Accept: image/png' \
  "$URL/.well-known/est/cacerts")"
status "simpleenroll, malformed Accept" 400 "$(http --cert "$D1/cert.pem" \
  --key "$D1/key.plain.pem" -H 'Content-Type: application/pkcs10' \
  -H 'Accept: application/cose-c509-cert+cbor;q=2' --data-binary @"$WORK/c3.b64" \
  "$URL/.well-known/est/simpleenroll")"
expect "400 names the problem" "malformed Accept header" "$WORK/body"
equal "nothing issued by the refused requests" "$(ldevids)" "$before"
check "audit chain intact" "$IOTPKI" audit verify --dir "$CA"
stop_server
no_secrets "no secret in the restarted server's log" "$WORK/serve.err"
finish
