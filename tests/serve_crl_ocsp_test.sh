#!/usr/bin/env bash
# CRLs and the OCSP responder of `iotpki serve`, checked by independent clients: `openssl crl`,
# `openssl verify -crl_check`, GnuTLS `certtool --crl-info` and `certtool --verify --load-crl`,
# `openssl ocsp` (good, revoked, unknown; with and without nonce; POST and GET), a hostile set
# (truncated DER, a wrong hash algorithm, too many CertIDs, a 1 MB body), metrics, the broker's
# CRL file and `iotpki crl export`. Certificates are revoked with `iotpki cert revoke`, as an
# operator would, while the server runs.
# Usage: serve_crl_ocsp_test.sh PATH_TO_IOTPKI
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"

check "ca init" "$IOTPKI" ca init --dir "$CA" --org "Example Org"
provision rev 3
D1="$WORK/rev/rev-000001"
D2="$WORK/rev/rev-000002"
D3="$WORK/rev/rev-000003"
ROOT="$CA/certs/root.pem"
OPS="$CA/certs/operational.pem"
MFG="$CA/certs/manufacturing.pem"
cat "$ROOT" "$OPS" "$MFG" >"$WORK/cas.pem"

refuse "a public URL with a trailing slash is refused" "public URL" \
  "$IOTPKI" serve --dir "$CA" --listen 127.0.0.1:0 --public-url "http://pki.test/"
start_server --log-format text --public-url "http://pki.test:8080" \
  --broker-crl "$WORK/broker-crl.pem" --broker-reload "date +%s%N >>'$WORK/reloads'"
check "the broker CRL file exists at start" test -s "$WORK/broker-crl.pem"
equal "it holds both issuing CAs' CRLs" "$(grep -c 'BEGIN X509 CRL' "$WORK/broker-crl.pem")" 2
check "the reload command ran" test -s "$WORK/reloads"
equal "one OCSP responder per issuing CA, recorded in the store" \
  "$(sql "SELECT COUNT(*) FROM certificates WHERE profile = 'server' AND subject LIKE '%OCSP responder%'")" 2
check "responder keys are kept 0600" test "$(stat -c %a "$CA/keys/ocsp-operational.key")" = 600
check "DIR/crl holds DER and PEM CRLs" test -s "$CA/crl/operational.crl" -a \
  -s "$CA/crl/operational.pem" -a -s "$CA/crl/manufacturing.crl"

# --- CRLs over HTTP -----------------------------------------------------------------------------
crl_get() {  # crl_get CA OUT: fetches /crl/CA.crl without a client certificate
  curl -sS -D "$WORK/headers" -o "$2" -w '%{http_code}' --cacert "$ROOT" "$URL/crl/$1.crl"
}
status "GET /crl/operational.crl without a client certificate" 200 \
  "$(crl_get operational "$WORK/ops0.crl")"
expect "served as application/pkix-crl" "^[Cc]ontent-[Tt]ype: application/pkix-crl" "$WORK/headers"
expect "with Cache-Control" "^[Cc]ache-[Cc]ontrol: public, max-age=[0-9]+" "$WORK/headers"
etag=$(sed -n 's/^[Ee][Tt]ag: *\(.*\)\r$/\1/p' "$WORK/headers")
check "with an ETag" test -n "$etag"
status "If-None-Match with the ETag" 304 "$(http -H "If-None-Match: $etag" "$URL/crl/operational.crl")"
cmp -s "$WORK/ops0.crl" "$CA/crl/operational.crl" && pass "served CRL is DIR/crl/operational.crl" ||
  fail "served CRL is DIR/crl/operational.crl"
check "openssl crl -verify (operational)" openssl crl -inform DER -in "$WORK/ops0.crl" -noout \
  -CAfile "$WORK/cas.pem" -verify
openssl crl -inform DER -in "$WORK/ops0.crl" -noout -text >"$WORK/ops0.txt"
expect "CRL v2" "Version 2" "$WORK/ops0.txt"
expect "CRL number" "X509v3 CRL Number" "$WORK/ops0.txt"
expect "authorityKeyIdentifier" "X509v3 Authority Key Identifier" "$WORK/ops0.txt"
next_days=$(( ($(date -d "$(openssl crl -inform DER -in "$WORK/ops0.crl" -noout -nextupdate | cut -d= -f2)" +%s) -
  $(date -d "$(openssl crl -inform DER -in "$WORK/ops0.crl" -noout -lastupdate | cut -d= -f2)" +%s)) / 86400 ))
equal "nextUpdate is 7 days after thisUpdate" "$next_days" 7
status "GET /crl/manufacturing.crl" 200 "$(crl_get manufacturing "$WORK/mfg0.crl")"
check "openssl crl -verify (manufacturing)" openssl crl -inform DER -in "$WORK/mfg0.crl" -noout \
  -CAfile "$WORK/cas.pem" -verify
status "PEM form" 200 "$(http "$URL/crl/operational.pem")"
expect "PEM form is a PEM CRL" "BEGIN X509 CRL" "$WORK/body"
status "an unknown CA's CRL" 404 "$(http "$URL/crl/root.crl")"
certtool --crl-info --inder --infile "$WORK/ops0.crl" >"$WORK/certtool-crl.txt" 2>&1
expect "certtool --crl-info reads it" "No revoked certificates|Revoked certificates \(0\)" "$WORK/certtool-crl.txt"

# --- Two working certificates (operational CA), naming the CRL and the responder ---------------
enroll() {  # enroll DEVICE_DIR NAME: an LDevID in $WORK/NAME.pem with key $WORK/NAME.key
  local id
  id=$(device_id "$1")
  csr_b64 "$WORK/$2.key" "/CN=$id" >"$WORK/$2.b64"
  status "simpleenroll $2" 200 "$(http --cert "$1/cert.pem" --key "$1/key.plain.pem" \
    -H 'Content-Type: application/pkcs10' --data-binary @"$WORK/$2.b64" \
    "$URL/.well-known/est/simpleenroll")"
  p7_certs "$WORK/body" "$WORK/$2.pem"
}
enroll "$D1" ld1
enroll "$D2" ld2
openssl x509 -in "$WORK/ld1.pem" -noout -text >"$WORK/ld1.txt"
expect "the LDevID names its CRL partition (its issuance month)" \
  "URI:http://pki.test:8080/crl/operational/[0-9]{4}-[0-9]{2}\.crl" "$WORK/ld1.txt"
MONTH=$(sed -n 's,.*URI:http://pki.test:8080/crl/operational/\([0-9-]*\)\.crl.*,\1,p' "$WORK/ld1.txt")
status "GET /crl/operational/MONTH.crl" 200 "$(http "$URL/crl/operational/$MONTH.crl")"
cmp -s "$WORK/body" "$CA/crl/operational.crl" &&
  pass "under the partition size a partition URL serves the whole CRL" ||
  fail "under the partition size a partition URL serves the whole CRL"
status "a malformed partition name" 404 "$(http "$URL/crl/operational/2026-13.crl")"
expect "the LDevID names the OCSP responder" "OCSP - URI:http://pki.test:8080/ocsp" "$WORK/ld1.txt"
check "openssl verify -crl_check accepts a good certificate" openssl verify -crl_check \
  -CAfile "$ROOT" -untrusted "$OPS" -CRLfile "$CA/crl/operational.pem" "$WORK/ld1.pem"

# --- OCSP: good ---------------------------------------------------------------------------------
ocsp() {  # ocsp OUT ARGS...: openssl ocsp against the responder over HTTPS
  local out=$1
  shift
  openssl ocsp -issuer "$OPS" -url "$URL/ocsp" -CAfile "$ROOT" -resp_text "$@" >"$out" 2>&1
}
ocsp "$WORK/o-good.txt" -cert "$WORK/ld1.pem"
expect "openssl ocsp: good" "ld1.pem: good" "$WORK/o-good.txt"
expect "the response verifies (delegated responder)" "Response verify OK" "$WORK/o-good.txt"
expect "the responder certificate has OCSP Signing" "OCSP Signing" "$WORK/o-good.txt"
expect "the nonce is echoed" "OCSP Nonce" "$WORK/o-good.txt"
ocsp "$WORK/o-nononce.txt" -cert "$WORK/ld1.pem" -no_nonce
expect "without a nonce: good" "ld1.pem: good" "$WORK/o-nononce.txt"
expect "without a nonce: verifies" "Response verify OK" "$WORK/o-nononce.txt"
ocsp "$WORK/o-cached.txt" -cert "$WORK/ld1.pem" -no_nonce
expect "again without a nonce: good (cached)" "ld1.pem: good" "$WORK/o-cached.txt"
ocsp "$WORK/o-two.txt" -cert "$WORK/ld1.pem" -cert "$WORK/ld2.pem"
expect "two CertIDs in one request: the first" "ld1.pem: good" "$WORK/o-two.txt"
expect "two CertIDs in one request: the second" "ld2.pem: good" "$WORK/o-two.txt"
ocsp "$WORK/o-unknown.txt" -serial 0x0123456789abcdef
expect "a serial the CA never issued: unknown" "0x0123456789abcdef: unknown" "$WORK/o-unknown.txt"
openssl ocsp -issuer "$MFG" -cert "$D3/cert.pem" -url "$URL/ocsp" -CAfile "$ROOT" \
  >"$WORK/o-mfg.txt" 2>&1
expect "an IDevID (manufacturing CA's responder): good" "cert.pem: good" "$WORK/o-mfg.txt"
expect "the manufacturing CA's responder verifies" "Response verify OK" "$WORK/o-mfg.txt"

# GET /ocsp/<base64>, percent-encoded (RFC 6960 A.1).
openssl ocsp -issuer "$OPS" -cert "$WORK/ld2.pem" -no_nonce -reqout "$WORK/req-ld2.der" >/dev/null 2>&1
b64=$(base64 -w0 "$WORK/req-ld2.der" | sed 's/+/%2B/g; s,/,%2F,g; s/=/%3D/g')
status "GET /ocsp/<base64>" 200 "$(http -D "$WORK/headers" "$URL/ocsp/$b64")"
expect "GET answer as application/ocsp-response" "^[Cc]ontent-[Tt]ype: application/ocsp-response" \
  "$WORK/headers"
expect "GET answer cacheable" "^[Cc]ache-[Cc]ontrol: public, max-age=" "$WORK/headers"
openssl ocsp -respin "$WORK/body" -reqin "$WORK/req-ld2.der" -issuer "$OPS" -CAfile "$ROOT" \
  -cert "$WORK/ld2.pem" >"$WORK/o-get.txt" 2>&1
expect "GET: good and verified" "ld2.pem: good" "$WORK/o-get.txt"

# --- Revocation ---------------------------------------------------------------------------------
serial1=$(openssl x509 -in "$WORK/ld1.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
reloads_before=$(wc -l <"$WORK/reloads")
check "cert revoke --serial (keyCompromise)" "$IOTPKI" cert revoke --dir "$CA" --serial "$serial1" \
  --reason keyCompromise
ocsp "$WORK/o-revoked.txt" -cert "$WORK/ld1.pem" -no_nonce
expect "OCSP says revoked at once (the cached good answer is not used)" "ld1.pem: revoked" \
  "$WORK/o-revoked.txt"
expect "with the reason" "Reason: keyCompromise" "$WORK/o-revoked.txt"
expect "and the time" "Revocation Time: " "$WORK/o-revoked.txt"
ocsp "$WORK/o-still.txt" -cert "$WORK/ld2.pem"
expect "the other device is still good" "ld2.pem: good" "$WORK/o-still.txt"

listed=""
for _ in $(seq 100); do
  crl_get operational "$WORK/ops1.crl" >/dev/null
  if openssl crl -inform DER -in "$WORK/ops1.crl" -noout -text 2>/dev/null | tr 'A-F' 'a-f' |
    grep -q "Serial Number: $serial1"; then
    listed=yes
    break
  fi
  sleep 0.1
done
equal "the served CRL lists the revocation within seconds" "$listed" yes
openssl crl -inform DER -in "$WORK/ops1.crl" -out "$WORK/ops1.pem"
openssl verify -crl_check -CAfile "$ROOT" -untrusted "$OPS" -CRLfile "$WORK/ops1.pem" \
  "$WORK/ld1.pem" >"$WORK/v1.txt" 2>&1 && fail "openssl verify -crl_check refuses the revoked certificate" ||
  expect "openssl verify -crl_check refuses the revoked certificate" "certificate revoked" "$WORK/v1.txt"
check "openssl verify -crl_check accepts the other" openssl verify -crl_check -CAfile "$ROOT" \
  -untrusted "$OPS" -CRLfile "$WORK/ops1.pem" "$WORK/ld2.pem"
certtool --crl-info --inder --infile "$WORK/ops1.crl" >"$WORK/certtool-crl1.txt" 2>&1
expect "certtool --crl-info lists it" "Revoked certificates \(1\)" "$WORK/certtool-crl1.txt"
cat "$WORK/ld1.pem" "$OPS" >"$WORK/ld1-chain.pem"
cat "$WORK/ld2.pem" "$OPS" >"$WORK/ld2-chain.pem"
certtool --verify --load-ca-certificate "$ROOT" --load-crl "$WORK/ops1.pem" \
  --infile "$WORK/ld1-chain.pem" >"$WORK/ct1.txt" 2>&1 &&
  fail "certtool --verify --load-crl refuses the revoked certificate" ||
  expect "certtool --verify --load-crl refuses the revoked certificate" "revoked" "$WORK/ct1.txt"
check "certtool --verify --load-crl accepts the other" certtool --verify \
  --load-ca-certificate "$ROOT" --load-crl "$WORK/ops1.pem" --infile "$WORK/ld2-chain.pem"
check "the new CRL has a higher CRL number" test \
  "$(openssl crl -inform DER -in "$WORK/ops1.crl" -noout -crlnumber | cut -d= -f2)" != \
  "$(openssl crl -inform DER -in "$WORK/ops0.crl" -noout -crlnumber | cut -d= -f2)"
for _ in $(seq 50); do grep -q "$serial1" <(openssl crl -in "$WORK/broker-crl.pem" -noout -text 2>/dev/null | tr 'A-F' 'a-f') && break; sleep 0.1; done
openssl verify -crl_check -CAfile "$ROOT" -untrusted "$OPS" -CRLfile "$WORK/broker-crl.pem" \
  "$WORK/ld1.pem" >/dev/null 2>&1 && fail "the broker CRL file refuses the revoked certificate" ||
  pass "the broker CRL file refuses the revoked certificate"
check "the reload command ran again" test "$(wc -l <"$WORK/reloads")" -gt "$reloads_before"

# --- Hostile requests: an OCSP error response or an HTTP refusal, never a crash ------------------
post_ocsp() {  # post_ocsp FILE: POSTs FILE as an OCSP request; prints the status
  http -H 'Content-Type: application/ocsp-request' --data-binary @"$1" "$URL/ocsp"
}
resp_status() { openssl ocsp -respin "$WORK/body" -resp_text -noverify 2>&1 | sed -n 's/^Responder Error: //p'; }
head -c $(($(stat -c %s "$WORK/req-ld2.der") - 3)) "$WORK/req-ld2.der" >"$WORK/trunc.der"
status "truncated DER: 200 with an OCSP answer" 200 "$(post_ocsp "$WORK/trunc.der")"
equal "truncated DER: malformedRequest" "$(resp_status)" "malformedrequest (1)"
openssl ocsp -issuer "$OPS" -cert "$WORK/ld2.pem" -md5 -no_nonce -reqout "$WORK/md5.der" >/dev/null 2>&1
status "MD5 CertID" 200 "$(post_ocsp "$WORK/md5.der")"
equal "a wrong hash algorithm: malformedRequest" "$(resp_status)" "malformedrequest (1)"
args=()
for i in $(seq 100); do args+=(-serial "$i"); done
openssl ocsp -issuer "$OPS" "${args[@]}" -no_nonce -reqout "$WORK/many.der" >/dev/null 2>&1
status "100 CertIDs" 200 "$(post_ocsp "$WORK/many.der")"
equal "more CertIDs than the cap: malformedRequest" "$(resp_status)" "malformedrequest (1)"
args=()
for i in $(seq 10000); do args+=(-serial "$i"); done
openssl ocsp -issuer "$OPS" "${args[@]}" -no_nonce -reqout "$WORK/10k.der" >/dev/null 2>&1
status "10,000 CertIDs: refused by the body limit" 413 "$(post_ocsp "$WORK/10k.der")"
head -c 1048576 /dev/zero >"$WORK/1mb.der"
status "a 1 MB body" 413 "$(post_ocsp "$WORK/1mb.der")"
status "the wrong Content-Type" 415 "$(http -H 'Content-Type: text/plain' \
  --data-binary @"$WORK/req-ld2.der" "$URL/ocsp")"
status "GET with bad base64" 200 "$(http "$URL/ocsp/%%%")"
status "GET with a non-request" 200 "$(http "$URL/ocsp/AAAA")"
equal "GET with a non-request: malformedRequest" "$(resp_status)" "malformedrequest (1)"
openssl ocsp -issuer "$CA/certs/root.pem" -cert "$OPS" -no_nonce -reqout "$WORK/root.der" >/dev/null 2>&1
status "a CertID of an issuer we do not serve" 200 "$(post_ocsp "$WORK/root.der")"
equal "an issuer we do not serve: unauthorized" "$(resp_status)" "unauthorized (6)"
ocsp "$WORK/o-after.txt" -cert "$WORK/ld2.pem"
expect "still answering after the hostile set" "ld2.pem: good" "$WORK/o-after.txt"

# --- Metrics ------------------------------------------------------------------------------------
check "OCSP answers by status: good" test "$(metric 'iotpki_ocsp_answers_total{status="good"}')" -ge 5
check "OCSP answers by status: revoked" test "$(metric 'iotpki_ocsp_answers_total{status="revoked"}')" -ge 1
check "OCSP answers by status: unknown" test "$(metric 'iotpki_ocsp_answers_total{status="unknown"}')" -ge 1
check "OCSP answers by status: malformed" test "$(metric 'iotpki_ocsp_answers_total{status="malformed"}')" -ge 3
check "CRL size per CA" test "$(metric 'iotpki_crl_bytes{ca="operational"}')" -gt 100
check "CRL age per CA" test -n "$(metric 'iotpki_crl_age_seconds{ca="manufacturing"}')"

no_secrets "no secret in the server's log" "$WORK/serve.err"
stop_server
equal "server exits 0 after SIGTERM" "$?" "0"

# --- A restart keeps the responders and the current CRL ------------------------------------------
start_server
equal "a restart reuses the OCSP responders" \
  "$(sql "SELECT COUNT(*) FROM certificates WHERE profile = 'server' AND subject LIKE '%OCSP responder%'")" 2
status "GET the CRL after a restart" 200 "$(crl_get operational "$WORK/ops2.crl")"
equal "a restart keeps the CRL (same CRL number)" \
  "$(openssl crl -inform DER -in "$WORK/ops2.crl" -noout -crlnumber)" \
  "$(openssl crl -inform DER -in "$WORK/ops1.crl" -noout -crlnumber)"
ocsp "$WORK/o-restart.txt" -cert "$WORK/ld1.pem"
expect "OCSP after a restart: revoked" "ld1.pem: revoked" "$WORK/o-restart.txt"
stop_server

# --- Partitioned CRLs: a threshold so low that every CRL passes it ------------------------------
printf '\n[crl]\npartition_bytes = 1\n' >>"$CA/iotpki.toml"
start_server --public-url "http://pki.test:8080" --broker-crl "$WORK/broker-parts.pem"
status "GET the partition of ld1's month" 200 "$(http "$URL/crl/operational/$MONTH.crl")"
cp "$WORK/body" "$WORK/part.crl"
openssl crl -inform DER -in "$WORK/part.crl" -noout -text >"$WORK/part.txt"
expect "the partition names itself (issuingDistributionPoint)" "Issuing Distribution Point: critical" \
  "$WORK/part.txt"
expect "with the URL the certificates name" "URI:http://pki.test:8080/crl/operational/$MONTH.crl" \
  "$WORK/part.txt"
check "openssl crl -verify (partition)" openssl crl -inform DER -in "$WORK/part.crl" -noout \
  -CAfile "$WORK/cas.pem" -verify
openssl crl -inform DER -in "$WORK/part.crl" -out "$WORK/part.pem"
openssl verify -crl_check -CAfile "$ROOT" -untrusted "$OPS" -CRLfile "$WORK/part.pem" \
  "$WORK/ld1.pem" >"$WORK/vp.txt" 2>&1 &&
  fail "openssl verify -crl_check with the partition refuses the revoked certificate" ||
  expect "openssl verify -crl_check with the partition refuses the revoked certificate" \
    "certificate revoked" "$WORK/vp.txt"
check "openssl verify -crl_check with the partition accepts the other" openssl verify -crl_check \
  -CAfile "$ROOT" -untrusted "$OPS" -CRLfile "$WORK/part.pem" "$WORK/ld2.pem"
certtool --crl-info --inder --infile "$WORK/part.crl" >"$WORK/certtool-part.txt" 2>&1
expect "certtool --crl-info reads the partition" "Revoked certificates \(1\)" "$WORK/certtool-part.txt"
status "a month no certificate can have been issued in" 404 "$(http "$URL/crl/operational/1999-01.crl")"
check "DIR/crl/operational/ holds the partitions" test -s "$CA/crl/operational/$MONTH.crl"
check "the broker file holds the whole CRLs and every partition" \
  test "$(grep -c 'BEGIN X509 CRL' "$WORK/broker-parts.pem")" -ge 4
openssl verify -crl_check -CAfile "$ROOT" -untrusted "$OPS" -CRLfile "$WORK/broker-parts.pem" \
  "$WORK/ld1.pem" >/dev/null 2>&1 && fail "the partitioned broker file refuses the revoked certificate" ||
  pass "the partitioned broker file refuses the revoked certificate"
check "the partitioned broker file accepts the other" openssl verify -crl_check -CAfile "$ROOT" \
  -untrusted "$OPS" -CRLfile "$WORK/broker-parts.pem" "$WORK/ld2.pem"
stop_server
sed -i '/^\[crl\]$/,$d' "$CA/iotpki.toml"

# --- iotpki crl export --------------------------------------------------------------------------
check "crl export" "$IOTPKI" crl export --dir "$CA" --out "$WORK/export.pem"
expect "crl export says what it wrote" "2 CRLs, 1 revoked" "$WORK/out"
equal "two CRLs in the export" "$(grep -c 'BEGIN X509 CRL' "$WORK/export.pem")" 2
openssl verify -crl_check -CAfile "$ROOT" -untrusted "$OPS" -CRLfile "$WORK/export.pem" \
  "$WORK/ld1.pem" >/dev/null 2>&1 && fail "the export refuses the revoked certificate" ||
  pass "the export refuses the revoked certificate"
check "the export accepts the other" openssl verify -crl_check -CAfile "$ROOT" -untrusted "$OPS" \
  -CRLfile "$WORK/export.pem" "$WORK/ld2.pem"
refuse "crl export to a directory" "is a directory" \
  "$IOTPKI" crl export --dir "$CA" --out "$WORK"
refuse "crl export without a CA" "no CA" "$IOTPKI" crl export --dir "$WORK/none" --out "$WORK/x.pem"
check "nothing written by the refusal" test ! -e "$WORK/x.pem"

finish
