#!/usr/bin/env bash
# The hostile-request catalogue against a real `iotpki serve`: each request answered with its
# status and nothing issued (the store, read with sqlite3, is unchanged). Clients: curl and
# `openssl s_client`; bad certificates made with `openssl ca`.
# Usage: serve_hostile_test.sh PATH_TO_IOTPKI
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"

check "ca init" "$IOTPKI" ca init --dir "$CA" --org "Example Org"
# A twin of the CA made before any device: same CA keys, its own inventory. Its devices have valid
# IDevIDs that this CA's inventory does not know.
cp -a "$CA" "$WORK/twin"
"$IOTPKI" mfg provision --dir "$WORK/twin" --count 1 --serial-prefix twin- --model sensor \
  --batch twin --keys ca --out "$WORK/twin-out" >/dev/null 2>&1
TWIN="$WORK/twin-out/twin-000001"
openssl pkey -in "$TWIN/key.pem" -passin env:IOTPKI_KEY_PASSPHRASE -out "$TWIN/key.plain.pem"
# A foreign CA and one of its devices.
"$IOTPKI" ca init --dir "$WORK/foreign" --org "Example Org" >/dev/null
"$IOTPKI" mfg provision --dir "$WORK/foreign" --count 1 --serial-prefix alien- --model sensor \
  --batch alien --keys ca --out "$WORK/alien" >/dev/null 2>&1
ALIEN="$WORK/alien/alien-000001"
openssl pkey -in "$ALIEN/key.pem" -passin env:IOTPKI_KEY_PASSPHRASE -out "$ALIEN/key.plain.pem"

provision dev 6
A="$WORK/dev/dev-000001"  # active, with an LDevID
B="$WORK/dev/dev-000002"  # manufactured
C="$WORK/dev/dev-000003"  # decommissioned
E="$WORK/dev/dev-000004"  # IDevID revoked
J="$WORK/dev/dev-000005"  # JSON API
R="$WORK/dev/dev-000006"  # active, LDevID revoked
for v in A B C E J R; do eval "ID_$v=\$(device_id \"\${$v}\")"; done

cat >"$WORK/serve.toml" <<TOML
[server]
request_timeout_s = 2
idle_timeout_s = 5
[bootstrap]
token_window_s = 300
TOML
start_server --config "$WORK/serve.toml" --log-format json

est() {  # est OP CERT KEY CSR_FILE [curl args]: POST an EST request
  local op=$1 cert=$2 key=$3 body=$4
  shift 4
  local auth=()
  [ -n "$cert" ] && auth=(--cert "$cert" --key "$key")
  http "${auth[@]}" -H 'Content-Type: application/pkcs10' --data-binary @"$body" "$@" \
    "$URL/.well-known/est/$op"
}

# Setup: A and R become active, then R's LDevID is revoked; C is decommissioned; E's IDevID is
# revoked.
csr_b64 "$WORK/a.key" "/CN=$ID_A" >"$WORK/a.b64"
status "setup: A enrolls" 200 "$(est simpleenroll "$A/cert.pem" "$A/key.plain.pem" "$WORK/a.b64")"
p7_certs "$WORK/body" "$WORK/a-ldevid.pem"
csr_b64 "$WORK/r.key" "/CN=$ID_R" >"$WORK/r.b64"
status "setup: R enrolls" 200 "$(est simpleenroll "$R/cert.pem" "$R/key.plain.pem" "$WORK/r.b64")"
p7_certs "$WORK/body" "$WORK/r-ldevid.pem"
R_SERIAL=$(openssl x509 -in "$WORK/r-ldevid.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
check "setup: cert revoke --serial $R_SERIAL" "$IOTPKI" cert revoke --dir "$CA" --serial "$R_SERIAL" \
  --reason keyCompromise
sql "UPDATE devices SET state = 'decommissioned' WHERE device_id = X'$ID_C'"
E_SERIAL=$(openssl x509 -in "$E/cert.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
check "setup: cert revoke --serial $E_SERIAL" "$IOTPKI" cert revoke --dir "$CA" --serial "$E_SERIAL" \
  --reason keyCompromise

# Expired certificates signed by the real CAs (openssl ca with dates in the past).
touch "$WORK/index.txt"
echo 01 >"$WORK/serialfile"
cat >"$WORK/openssl-ca.cnf" <<CNF
[ca]
default_ca = d
[d]
database = $WORK/index.txt
new_certs_dir = $WORK
serial = $WORK/serialfile
default_md = sha256
policy = p
unique_subject = no
[p]
commonName = supplied
organizationName = optional
serialNumber = optional
[ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
expired() {  # expired CA_NAME SUBJECT KEY OUT
  openssl req -new -key "$3" -subj "$2" -out "$WORK/expired.csr" 2>/dev/null
  openssl ca -batch -config "$WORK/openssl-ca.cnf" -extensions ext -notext \
    -cert "$CA/certs/$1.pem" -keyfile "$CA/keys/$1.key" -passin env:IOTPKI_PASSPHRASE \
    -startdate 20200101000000Z -enddate 20200201000000Z -in "$WORK/expired.csr" -out "$4" \
    >/dev/null 2>&1
}
expired manufacturing "/CN=$ID_B" "$B/key.plain.pem" "$WORK/b-expired-idevid.pem"
expired operational "/O=Example Org/CN=$ID_A/serialNumber=dev-000001" "$WORK/a.key" \
  "$WORK/a-expired-ldevid.pem"
check "expired certificates made" test -s "$WORK/b-expired-idevid.pem" -a -s "$WORK/a-expired-ldevid.pem"

BEFORE_LDEVIDS=$(ldevids)
BEFORE_DEVICES=$(sql "SELECT group_concat(lower(hex(device_id)) || state, ',') FROM devices ORDER BY device_id")

# --- EST: authentication ------------------------------------------------------------------------
csr_b64 "$WORK/b.key" "/CN=$ID_B" >"$WORK/b.b64"
status "no client certificate" 401 "$(est simpleenroll "" "" "$WORK/b.b64")"
csr_b64 "$WORK/alien-new.key" "/CN=$(device_id "$ALIEN")" >"$WORK/alien.b64"
status "certificate from a foreign CA" 401 \
  "$(est simpleenroll "$ALIEN/cert.pem" "$ALIEN/key.plain.pem" "$WORK/alien.b64")"
status "expired IDevID" 401 \
  "$(est simpleenroll "$WORK/b-expired-idevid.pem" "$B/key.plain.pem" "$WORK/b.b64")"
expect "the reason says expired" "expired" "$WORK/body"
SUBJ_A="/O=Example Org/CN=$ID_A/serialNumber=dev-000001"
csr_b64 "$WORK/a2.key" "$SUBJ_A" >"$WORK/a-re.b64"
status "expired LDevID (simplereenroll)" 401 \
  "$(est simplereenroll "$WORK/a-expired-ldevid.pem" "$WORK/a.key" "$WORK/a-re.b64")"
csr_b64 "$WORK/e.key" "/CN=$ID_E" >"$WORK/e.b64"
status "revoked IDevID" 403 "$(est simpleenroll "$E/cert.pem" "$E/key.plain.pem" "$WORK/e.b64")"
expect "the reason says revoked" "revoked" "$WORK/body"
csr_b64 "$WORK/r2.key" "/O=Example Org/CN=$ID_R/serialNumber=dev-000006" >"$WORK/r-re.b64"
status "revoked LDevID (simplereenroll)" 403 \
  "$(est simplereenroll "$WORK/r-ldevid.pem" "$WORK/r.key" "$WORK/r-re.b64")"

# --- EST: authorization and policy --------------------------------------------------------------
csr_b64 "$WORK/twin-new.key" "/CN=$(device_id "$TWIN")" >"$WORK/twin.b64"
status "unknown device (valid IDevID, not in the inventory)" 404 \
  "$(est simpleenroll "$TWIN/cert.pem" "$TWIN/key.plain.pem" "$WORK/twin.b64")"
csr_b64 "$WORK/c.key" "/CN=$ID_C" >"$WORK/c.b64"
status "decommissioned device" 403 \
  "$(est simpleenroll "$C/cert.pem" "$C/key.plain.pem" "$WORK/c.b64" -D "$WORK/c.headers")"
C_REQUEST=$(sed -n 's/^[Xx]-[Rr]equest-[Ii]d: *\([0-9a-f]\{16\}\).*/\1/p' "$WORK/c.headers")
expect "the EST error names its request id" "\(request id $C_REQUEST\)$" "$WORK/body"
csr_b64 "$B/key.plain.pem" "/CN=$ID_B" >"$WORK/b-own.b64"
status "CSR with the IDevID's own key" 403 \
  "$(est simpleenroll "$B/cert.pem" "$B/key.plain.pem" "$WORK/b-own.b64")"
csr_b64 "$WORK/a.key" "/CN=$ID_B" >"$WORK/b-akey.b64"
status "CSR with another device's key" 409 \
  "$(est simpleenroll "$B/cert.pem" "$B/key.plain.pem" "$WORK/b-akey.b64")"
# The same keys as compressed points (openssl writes the key's point form into the CSR): one key,
# one identity, refused exactly as above.
openssl ec -in "$B/key.plain.pem" -conv_form compressed -out "$WORK/b-own-c.pem" 2>/dev/null
csr_b64 "$WORK/b-own-c.pem" "/CN=$ID_B" >"$WORK/b-own-c.b64"
status "CSR with the IDevID's own key, as a compressed point" 403 \
  "$(est simpleenroll "$B/cert.pem" "$B/key.plain.pem" "$WORK/b-own-c.b64")"
openssl ec -in "$WORK/a.key" -conv_form compressed -out "$WORK/a-c.pem" 2>/dev/null
csr_b64 "$WORK/a-c.pem" "/CN=$ID_B" >"$WORK/b-akey-c.b64"
status "CSR with another device's key, as a compressed point" 409 \
  "$(est simpleenroll "$B/cert.pem" "$B/key.plain.pem" "$WORK/b-akey-c.b64")"
csr_b64 "$WORK/b.key" "/CN=$ID_A" >"$WORK/b-as-a.b64"
status "CSR subject naming another device" 403 \
  "$(est simpleenroll "$B/cert.pem" "$B/key.plain.pem" "$WORK/b-as-a.b64")"
csr_b64 "$WORK/a2.key" "/O=Other Org/CN=$ID_A/serialNumber=dev-000001" >"$WORK/a-other.b64"
status "reenroll with a different subject" 403 \
  "$(est simplereenroll "$WORK/a-ldevid.pem" "$WORK/a.key" "$WORK/a-other.b64")"
status "reenroll with an IDevID" 403 \
  "$(est simplereenroll "$A/cert.pem" "$A/key.plain.pem" "$WORK/a-re.b64")"
status "enroll with an LDevID" 403 \
  "$(est simpleenroll "$WORK/a-ldevid.pem" "$WORK/a.key" "$WORK/a-re.b64")"

# --- EST: malformed input -----------------------------------------------------------------------
printf 'this is not base64 at all!!' >"$WORK/garbage.b64"
status "garbage base64" 400 "$(est simpleenroll "$B/cert.pem" "$B/key.plain.pem" "$WORK/garbage.b64")"
head -c 300 /dev/urandom | base64 -w0 >"$WORK/noise.b64"
status "base64 of garbage (not a CSR)" 400 \
  "$(est simpleenroll "$B/cert.pem" "$B/key.plain.pem" "$WORK/noise.b64")"
status "wrong content type (EST)" 415 "$(http --cert "$B/cert.pem" --key "$B/key.plain.pem" \
  -H 'Content-Type: text/plain' --data-binary @"$WORK/b.b64" "$URL/.well-known/est/simpleenroll")"
expect "EST errors are text/plain" "Content-Type must be application/pkcs10" "$WORK/body"
status "EST error as JSON when asked (Accept)" 401 "$(est simpleenroll "" "" "$WORK/b.b64" \
  -H 'Accept: application/json')"
expect "JSON error body, with the request id" \
  '^\{"error":"unauthenticated","message":"[^"]+","request_id":"[0-9a-f]{16}"\}$' "$WORK/body"

# --- JSON bootstrap API -------------------------------------------------------------------------
J_CERT=$(openssl x509 -in "$J/cert.pem" -outform DER | base64 -w0)
J_KDEV=$(cat "$J/bootstrap.hex")
csr_b64 "$WORK/j.key" "/CN=$ID_J" >"$WORK/j.b64"
boot() {  # boot FILE [curl args]
  local f=$1
  shift
  http --cert "$J/cert.pem" --key "$J/key.plain.pem" -H 'Content-Type: application/json' \
    --data-binary @"$f" "$@" "$URL/api/v1/bootstrap"
}
body() {  # body TIMESTAMP TOKEN > file
  printf '{"device_id":"%s","csr":"%s","device_cert":"%s","timestamp":%s,"token":"%s"}' \
    "$ID_J" "$(cat "$WORK/j.b64")" "$J_CERT" "$1" "$2"
}
NOW=$(date +%s)
body "$NOW" "$(token "$(printf '%064d' 0)" "$ID_J" "$NOW")" >"$WORK/wrong-hmac.json"
status "token with a wrong HMAC" 401 "$(boot "$WORK/wrong-hmac.json")"
OLD=$((NOW - 1000))
body "$OLD" "$(token "$J_KDEV" "$ID_J" "$OLD")" >"$WORK/old.json"
status "timestamp outside the window" 401 "$(boot "$WORK/old.json")"
NOCERT_TS=$((NOW + 2))
body "$NOCERT_TS" "$(token "$J_KDEV" "$ID_J" "$NOCERT_TS")" >"$WORK/nocert.json"
status "no client certificate, and a CSR not signed with the IDevID key" 401 \
  "$(http -H 'Content-Type: application/json' --data-binary @"$WORK/nocert.json" \
    -D "$WORK/nocert.headers" "$URL/api/v1/bootstrap")"
NOCERT_REQUEST=$(sed -n 's/^[Xx]-[Rr]equest-[Ii]d: *\([0-9a-f]\{16\}\).*/\1/p' "$WORK/nocert.headers")
body "$NOW" "not-hex-$(printf '%056d' 0)" >"$WORK/nonhex.json"
status "non-hex token" 400 "$(boot "$WORK/nonhex.json")"
printf '{"device_id":"%s","timestamp":%s}' "$ID_J" "$NOW" >"$WORK/missing.json"
status "missing JSON fields" 400 "$(boot "$WORK/missing.json")"
expect "the reason names the field" "missing field" "$WORK/body"
printf '[1, 2, 3]' >"$WORK/array.json"
status "JSON that is not an object" 400 "$(boot "$WORK/array.json")"
printf '{"device_id": ' >"$WORK/truncated.json"
status "JSON cut short" 400 "$(boot "$WORK/truncated.json")"
printf '{"device_id":"%s","csr":"%%%%%%","device_cert":"%s","timestamp":%s,"token":"%s"}' \
  "$ID_J" "$J_CERT" "$NOW" "$(token "$J_KDEV" "$ID_J" "$NOW")" >"$WORK/badcsr.json"
status "garbage base64 in the JSON csr" 400 "$(boot "$WORK/badcsr.json")"
head -c 1048576 /dev/zero | tr '\0' 'a' | sed 's/^/{"pad":"/; s/$/"}/' >"$WORK/huge.json"
status "1 MB of JSON" 413 "$(boot "$WORK/huge.json")"
status "wrong content type (JSON)" 415 "$(http -H 'Content-Type: text/plain' \
  --data-binary @"$WORK/missing.json" "$URL/api/v1/bootstrap")"
SUBJ_TS=$((NOW + 3))
printf '{"device_id":"%s","csr":"%s","device_cert":"%s","timestamp":%s,"token":"%s"}' \
  "$ID_J" "$(csr_b64 "$WORK/j-as-a.key" "/CN=$ID_A")" "$J_CERT" "$SUBJ_TS" \
  "$(token "$J_KDEV" "$ID_J" "$SUBJ_TS")" >"$WORK/j-as-a.json"
status "JSON: CSR subject naming another device" 403 "$(boot "$WORK/j-as-a.json")"
ALIEN_CERT=$(openssl x509 -in "$ALIEN/cert.pem" -outform DER | base64 -w0)
printf '{"device_id":"%s","csr":"%s","device_cert":"%s","timestamp":%s,"token":"%s"}' \
  "$ID_J" "$(cat "$WORK/j.b64")" "$ALIEN_CERT" "$NOW" "$(printf '%064d' 0)" >"$WORK/alien.json"
status "JSON: a wrong token and a foreign device_cert" 401 \
  "$(http -H 'Content-Type: application/json' --data-binary @"$WORK/alien.json" \
    "$URL/api/v1/bootstrap")"
expect "the token is checked before the chain" "invalid bootstrap token" "$WORK/body"
AUDIT_TS=$((NOW + 1))
body "$AUDIT_TS" "$(token "$J_KDEV" "$ID_J" "$AUDIT_TS")" >"$WORK/good.json"
status "a valid bootstrap (control)" 200 "$(boot "$WORK/good.json")"
status "replayed token" 409 "$(boot "$WORK/good.json")"
ISSUED_BY_CONTROL=1

# --- transport limits ---------------------------------------------------------------------------
status "oversized headers" 431 "$(http -H "X-Padding: $(head -c 20000 /dev/zero | tr '\0' a)" \
  "$URL/healthz")"
status "unknown path" 404 "$(http "$URL/.well-known/est/fullcmc")"
status "wrong method" 405 "$(http -X DELETE "$URL/api/v1/bootstrap")"
# One byte per second: the whole request must arrive within request_timeout_s (2 s here).
( for c in G E T ' ' / h e a l t h z; do printf '%s' "$c"; sleep 1; done ) |
  timeout 20 openssl s_client -connect "127.0.0.1:$PORT" -quiet -ign_eof >"$WORK/slow" 2>/dev/null
expect "a client sending one byte per second gets 408" "HTTP/1.1 408" "$WORK/slow"
# Request smuggling (RFC 9112 6.3): a body framed by a Transfer-Encoding other than chunked must
# not be read as a second request.
printf 'POST /api/v1/bootstrap HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' |
  timeout 20 openssl s_client -connect "127.0.0.1:$PORT" -quiet -ign_eof >"$WORK/smuggle" 2>/dev/null
expect "Transfer-Encoding: gzip is 400" "HTTP/1.1 400" "$WORK/smuggle"
equal "its body is not answered as a second request" "$(grep -c '^HTTP/1.1' "$WORK/smuggle")" 1
status "a chunked request body (curl)" 411 "$(http -H 'Transfer-Encoding: chunked' \
  -H 'Content-Type: application/json' --data-binary @"$WORK/good.json" "$URL/api/v1/bootstrap")"
expect "the reason says to send Content-Length" "send Content-Length" "$WORK/body"
status "no Host header" 400 "$(http -H 'Host:' "$URL/healthz")"
printf 'GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n' |
  timeout 20 openssl s_client -connect "127.0.0.1:$PORT" -quiet -ign_eof >"$WORK/hosts" 2>/dev/null
expect "two Host headers are 400" "HTTP/1.1 400" "$WORK/hosts"

# --- nothing issued, nothing changed ------------------------------------------------------------
equal "no LDevID issued by any hostile request" "$(ldevids)" "$((BEFORE_LDEVIDS + ISSUED_BY_CONTROL))"
AFTER_DEVICES=$(sql "SELECT group_concat(lower(hex(device_id)) || state, ',') FROM devices ORDER BY device_id")
equal "device states unchanged but J" "$(echo "$AFTER_DEVICES" | tr ',' '\n' | grep -vc "$ID_J")" \
  "$(echo "$BEFORE_DEVICES" | tr ',' '\n' | grep -vc "$ID_J")"
check "refusals are audited" test "$(sql "SELECT COUNT(*) FROM audit_log WHERE action = 'cert.refuse'")" -ge 3
curl -sS --cacert "$CA/certs/root.pem" "$URL/metrics" >"$WORK/metrics"
expect "metrics: refusals by reason" \
  'iotpki_enroll_refusals_total\{endpoint="est_simpleenroll",reason="unauthenticated"\} [0-9]+' \
  "$WORK/metrics"
check "server survived everything (healthz)" test "$(http "$URL/healthz")" = 200
check "audit chain intact" "$IOTPKI" audit verify --dir "$CA"
check "server stops cleanly" stop_server

# --- the server's log (JSON Lines) --------------------------------------------------------------
# "Why did device C fail to enroll?" is one grep of its id, and the request id its client was
# shown leads to the same line.
grep -F "$ID_C" "$WORK/serve.err" >"$WORK/c.log"
expect "grep of the device id: its refusal and the reason" \
  '"status":403,.*"error":"permission_denied","reason":"device [0-9a-f]+ is decommissioned' \
  "$WORK/c.log"
check "the request id leads to the same line" \
  test "$(jq -r "select(.request_id == \"$C_REQUEST\") | .device" "$WORK/serve.err")" = "$ID_C"
check "every request has one line with a request id" \
  test "$(jq -r 'select(.event == "http.request") | .request_id' "$WORK/serve.err" | sort -u |
    grep -c '^[0-9a-f]\{16\}$')" -eq "$(grep -c '"http.request"' "$WORK/serve.err")"
check "without a client certificate, the line names the device_id of the body" \
  test "$(jq -r "select(.request_id == \"$NOCERT_REQUEST\") | .device" "$WORK/serve.err")" = "$ID_J"
no_secrets "no secret in the log: tokens, bootstrap secrets, passphrases, keys" "$WORK/serve.err"

# --- connection limits, on a server of their own ------------------------------------------------
# Holders complete the TLS handshake and send nothing. A connection that has not sent its first
# request is never closed to make room, and request_timeout_s is long here, so the holders stay
# until the test ends them: each check below is a single request made once every holder is in.
cat >"$WORK/limits.toml" <<TOML
[server]
max_connections = 4
max_connections_per_source = 3
request_timeout_s = 600
TOML
start_server --config "$WORK/limits.toml"
mkfifo "$WORK/hold"
exec {HOLD}<>"$WORK/hold"  # the holders' stdin: open, and nothing ever written
HOLDERS=()
hold() {  # hold SOURCE_ADDRESS: a connection from there, in once its handshake is done
  local out="$WORK/holder.${#HOLDERS[@]}"
  openssl s_client -connect "127.0.0.1:$PORT" -bind "$1:0" -ign_eof <"$WORK/hold" >"$out" 2>&1 &
  HOLDERS+=($!)
  for _ in $(seq 600); do
    grep -q "Verify return code" "$out" && return
    sleep 0.1
  done
  fail "holder from $1 did not connect" && sed 's/^/    /' "$out"
}
from() { http --interface "$@"; }  # from SOURCE_ADDRESS URL...
hold 127.0.0.1
hold 127.0.0.1
hold 127.0.0.1
hold 127.0.0.2
status "beyond max_connections (4 held)" 503 "$(from 127.0.0.3 "$URL/healthz")"
expect "the reason says too many connections" "too many connections, retry later" "$WORK/body"
status "beyond max_connections_per_source (3 held from 127.0.0.1)" 503 \
  "$(from 127.0.0.1 "$URL/healthz")"
expect "the reason names the address" "too many connections from your address" "$WORK/body"
kill "${HOLDERS[3]}"
GOT=""
for _ in $(seq 300); do  # until the server has seen the holder go
  GOT=$(from 127.0.0.2 "$URL/healthz")
  [ "$GOT" = 200 ] && break
  sleep 0.1
done
status "another address is served while 127.0.0.1 holds its share" 200 "$GOT"
status "127.0.0.1 still holds its share" 503 "$(from 127.0.0.1 "$URL/healthz")"
kill "${HOLDERS[@]}" 2>/dev/null
wait "${HOLDERS[@]}" 2>/dev/null
exec {HOLD}>&-
for _ in $(seq 300); do
  GOT=$(http "$URL/healthz")
  [ "$GOT" = 200 ] && break
  sleep 0.1
done
status "served again once the holders are gone" 200 "$GOT"
curl -sS --cacert "$CA/certs/root.pem" "$URL/metrics" >"$WORK/metrics"
expect "metrics: 503s counted" 'iotpki_http_connections_rejected_total\{action="503"\} [1-9]' \
  "$WORK/metrics"
expect "metrics: per-address refusals counted" \
  'iotpki_http_connections_source_limited_total [1-9]' "$WORK/metrics"
check "server stops cleanly" stop_server
no_secrets "no secret in the second server's log" "$WORK/serve.err"
finish
