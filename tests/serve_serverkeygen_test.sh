#!/usr/bin/env bash
# EST serverkeygen (RFC 7030 4.4) against a real `iotpki serve`: curl as the client, openssl cms
# opening the key sealed to the IDevID (-decrypt) and checking the server's signature over it
# (-verify), and iotpki-agent bootstrap --serverkeygen.
# Usage: serve_serverkeygen_test.sh PATH_TO_IOTPKI PATH_TO_IOTPKI_AGENT
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"

check "ca init" "$IOTPKI" ca init --dir "$CA" --org "Example Org"
provision skg 3
start_server
D1="$WORK/skg/skg-000001"
D2="$WORK/skg/skg-000002"
ID1=$(device_id "$D1")
EST="$URL/.well-known/est"

# part N FILE OUT: the base64 content of part N of the multipart answer FILE, decoded to OUT.
part() {
  tr -d '\r' <"$2" | awk -v n="$1" '
    /^--iotpki-est-serverkeygen/ { i++; body = 0; next }
    i == n && body { print }
    i == n && /^$/ { body = 1 }' | base64 -d >"$3"
}

# --- curl as the EST client ----------------------------------------------------------------------
csr_b64 "$D1/key.plain.pem" "/CN=$ID1" >"$WORK/req.b64"
code=$(http -D "$WORK/headers" --cert "$D1/cert.pem" --key "$D1/key.plain.pem" \
  -H 'Content-Type: application/pkcs10' --data-binary @"$WORK/req.b64" "$EST/serverkeygen")
status "serverkeygen with the IDevID" 200 "$code"
expect "answers multipart/mixed" "^[Cc]ontent-[Tt]ype: multipart/mixed; boundary=" "$WORK/headers"
cp "$WORK/body" "$WORK/answer"
expect "first part: the key, CMS-encrypted" \
  "^Content-Type: application/pkcs7-mime; smime-type=server-generated-key" "$WORK/answer"
expect "second part: the certificate" "^Content-Type: application/pkcs7-mime; smime-type=certs-only" \
  "$WORK/answer"
part 1 "$WORK/answer" "$WORK/sealed.der"
part 2 "$WORK/answer" "$WORK/certs.p7"
check "the certificate part is a certs-only PKCS#7" \
  openssl pkcs7 -inform DER -in "$WORK/certs.p7" -print_certs -out "$WORK/ldevid.pem"
openssl cms -cmsout -print -inform DER -in "$WORK/sealed.der" >"$WORK/cms.txt" 2>&1
expect "the key is in an EnvelopedData" "pkcs7-envelopedData" "$WORK/cms.txt"
expect "key agreement: ECDH with the SHA-256 X9.63 KDF (RFC 5753)" \
  "dhSinglePass-stdDH-sha256kdf-scheme" "$WORK/cms.txt"
expect "the content key wrapped with AES key wrap" "id-aes(128|256)-wrap" "$WORK/cms.txt"
expect "what is sealed is a SignedData (RFC 7030 4.4.2: signed, then encrypted)" \
  "contentType: pkcs7-signedData" "$WORK/cms.txt"
check "openssl cms -decrypt opens it with the IDevID key" openssl cms -decrypt -inform DER \
  -in "$WORK/sealed.der" -inkey "$D1/key.plain.pem" -recip "$D1/cert.pem" -binary \
  -out "$WORK/signed.der"
# der_len N: a DER length field for N octets (N < 65536).
der_len() {
  if [ "$1" -lt 128 ]; then printf "\\x%02x" "$1"
  elif [ "$1" -lt 256 ]; then printf "\\x81\\x%02x" "$1"
  else printf "\\x82\\x%02x\\x%02x" $(($1 >> 8)) $(($1 & 255)); fi
}
# The envelope's content is the SignedData itself (RFC 5652 nesting); openssl cms -verify reads
# a ContentInfo: SEQUENCE { id-signedData, [0] EXPLICIT SignedData }.
n=$(stat -c %s "$WORK/signed.der")
a0_len=$(der_len "$n")
a0_size=$((1 + $(printf "$a0_len" | wc -c) + n))
{
  printf "\x30$(der_len $((11 + a0_size)))\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02"
  printf "\xa0$a0_len"
  cat "$WORK/signed.der"
} >"$WORK/signed-ci.der"
check "openssl cms -verify: the key package is signed by the server's TLS certificate" \
  openssl cms -verify -inform DER -in "$WORK/signed-ci.der" -CAfile "$CA/certs/root.pem" \
  -purpose any -binary -out "$WORK/package.der"
openssl cms -cmsout -print -inform DER -in "$WORK/signed-ci.der" >"$WORK/signed.txt" 2>&1
expect "its content type is id-ct-KP-aKeyPackage (RFC 5958)" "eContentType: .*2.16.840.1.101.2.1.2.78.5" \
  "$WORK/signed.txt"
expect "its signer is the server" "subject: .*CN *= *127.0.0.1" "$WORK/signed.txt"
# AsymmetricKeyPackage ::= SEQUENCE OF OneAsymmetricKey: the one key after the outer header.
second=$(od -An -tu1 -j1 -N1 "$WORK/package.der" | tr -d ' ')
header=2
[ "$second" -gt 128 ] && header=$((2 + second - 128))
tail -c +$((header + 1)) "$WORK/package.der" >"$WORK/key.der"
equal "the opened key is the certificate's" \
  "$(openssl pkey -inform DER -in "$WORK/key.der" -pubout 2>&1)" \
  "$(openssl x509 -in "$WORK/ldevid.pem" -noout -pubkey)"
check "the LDevID verifies to the root" openssl verify -CAfile "$CA/certs/root.pem" \
  -untrusted "$CA/certs/operational.pem" -purpose sslclient "$WORK/ldevid.pem"
equal "the LDevID names the device" \
  "$(openssl x509 -in "$WORK/ldevid.pem" -noout -subject -nameopt RFC2253 |
    sed -n 's/.*CN=\([0-9a-f]*\).*/\1/p')" "$ID1"
equal "device active in the inventory" \
  "$(sql "SELECT state FROM devices WHERE device_id = X'$ID1'")" "active"
if openssl cms -decrypt -inform DER -in "$WORK/sealed.der" -inkey "$D2/key.plain.pem" \
  -recip "$D2/cert.pem" -binary -out "$WORK/key2.der" 2>/dev/null; then
  fail "another device's IDevID key cannot open it (it did)"
else
  pass "another device's IDevID key cannot open it"
fi

# --- refusals -------------------------------------------------------------------------------------
before=$(ldevids)
code=$(http -H 'Content-Type: application/pkcs10' --data-binary @"$WORK/req.b64" \
  "$EST/serverkeygen")
status "no client certificate" 401 "$code"
code=$(http --cert "$D2/cert.pem" --key "$D2/key.plain.pem" -H 'Content-Type: application/pkcs10' \
  --data-binary 'not a csr' "$EST/serverkeygen")
status "a body that is not a CSR" 400 "$code"
equal "nothing issued by the refusals" "$(ldevids)" "$before"

# --- the agent ------------------------------------------------------------------------------------
S="$WORK/state"
mkdir -p "$S"
cp -r "$WORK/skg/skg-000003" "$S/factory"
check "iotpki-agent bootstrap --serverkeygen" \
  "$AGENT" --state "$S" bootstrap --server "$URL" --serverkeygen
expect "one line saying what was installed" "^bootstrapped: device [0-9a-f]{64}" "$WORK/out"
check "the installed LDevID verifies to the root" openssl verify -CAfile "$CA/certs/root.pem" \
  -untrusted "$S/active/chain.pem" -purpose sslclient "$S/active/cert.pem"
equal "the installed key matches the certificate" \
  "$(openssl pkey -in "$S/active/key.pem" -pubout)" \
  "$(openssl x509 -in "$S/active/cert.pem" -noout -pubkey)"
equal "the installed key is private (0600)" "$(stat -c %a "$S/active/key.pem")" "600"
check "the agent renews with the server-made key" "$AGENT" --state "$S" renew
refuse "--serverkeygen with --json is a usage error" "excludes|serverkeygen" \
  "$AGENT" --state "$S" bootstrap --server "$URL" --serverkeygen --json

stop_server_quietly
# The generated key in every form a log could hold it: PKCS#8 base64, the private scalar in hex.
scalar=$(openssl pkey -inform DER -in "$WORK/key.der" -noout -text |
  sed -n '/^priv:/,/^pub:/p' | sed '1d;$d' | tr -d ' :\n')
no_secrets "no secret in the log (the generated key included)" "$WORK/serve.err" \
  "$(base64 -w0 "$WORK/key.der")" "$scalar"
finish
