#!/usr/bin/env bash
# End-to-end test of `iotpki c509 encode|decode|show|verify` and `cert issue --format`, with
# openssl and sqlite3 as independent parsers, and the draft's examples from the shared vectors.
# Usage: c509_cli_test.sh PATH_TO_IOTPKI SHARED_DIR
source "$(dirname "$0")/lib.sh"
IOTPKI=$1
VECTORS=${2:-$(dirname "$0")/shared}/vectors/c509
D="$WORK/ca"
export IOTPKI_PASSPHRASE="test passphrase 1"

# Hex text <-> binary with bash and coreutils only (xxd is not on every CI image).
unhex() { printf "$(tr -d ' \n' <"$1" | sed 's/../\\x&/g')" >"$2"; }
tohex() { od -An -v -tx1 "$1" | tr -d ' \n'; }
# The store's copy of a certificate, as hex.
stored_der() {
  sqlite3 "$D/iotpki.db" \
    "SELECT lower(hex(der)) FROM certificates WHERE lower(serial) = lower('$1')"
}
new_csr() {
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null \
    -subj "/CN=device" -out "$1" 2>/dev/null
}

check "ca init" "$IOTPKI" ca init --dir "$D" --org "Example Org"
MFG="$D/certs/manufacturing.pem"
OPS="$D/certs/operational.pem"
FP=00112233445566778899aabbccddeeff

# --- certificates we issue: encode then decode returns the exact DER ----------------------------
new_csr "$WORK/idevid.csr"
new_csr "$WORK/ldevid.csr"
check "cert issue idevid" "$IOTPKI" cert issue --dir "$D" --csr "$WORK/idevid.csr" \
  --profile idevid --serial SN-C509-1 --fingerprint "$FP" --out "$WORK/idevid.pem"
check "cert issue ldevid" "$IOTPKI" cert issue --dir "$D" --csr "$WORK/ldevid.csr" \
  --profile ldevid --serial SN-C509-1 --fingerprint "$FP" --out "$WORK/ldevid.pem"
DEVICE_CN=$(openssl x509 -in "$WORK/idevid.pem" -noout -subject -nameopt RFC2253 |
  sed -E 's/.*CN=([0-9a-f]{64}).*/\1/')

for c in idevid ldevid; do
  openssl x509 -in "$WORK/$c.pem" -outform DER -out "$WORK/$c.der"
  check "$c: c509 encode (PEM file in, file out)" \
    "$IOTPKI" c509 encode --in "$WORK/$c.pem" --out "$WORK/$c.c509"
  check "$c: c509 decode (file in, file out)" \
    "$IOTPKI" c509 decode --in "$WORK/$c.c509" --out "$WORK/$c.back.der"
  check "$c: decode returns the exact DER" cmp "$WORK/$c.der" "$WORK/$c.back.der"
  equal "$c: the DER is the one in the store" "$(tohex "$WORK/$c.back.der")" \
    "$(stored_der "$(openssl x509 -in "$WORK/$c.pem" -noout -serial | cut -d= -f2)")"
  "$IOTPKI" c509 encode <"$WORK/$c.der" | "$IOTPKI" c509 decode >"$WORK/$c.pipe.der"
  check "$c: encode | decode through stdin/stdout (DER in)" cmp "$WORK/$c.der" "$WORK/$c.pipe.der"
  "$IOTPKI" c509 encode --in - --out - <"$WORK/$c.pem" >"$WORK/$c.stdout.c509"
  check "$c: '-' means stdin/stdout, same bytes as files" cmp "$WORK/$c.c509" "$WORK/$c.stdout.c509"
  check "$c: c509 encode --hex" "$IOTPKI" c509 encode --in "$WORK/$c.der" --hex --out "$WORK/$c.hex"
  check "$c: hex input decodes to the exact DER" \
    bash -c '"$1" c509 decode --in "$2" | cmp - "$3"' _ "$IOTPKI" "$WORK/$c.hex" "$WORK/$c.der"
  check "$c: c509 decode --pem" \
    "$IOTPKI" c509 decode --in "$WORK/$c.c509" --pem --out "$WORK/$c.back.pem"
  check "$c: decoded PEM equals the issued PEM" cmp "$WORK/$c.pem" "$WORK/$c.back.pem"
  size_der=$(stat -c %s "$WORK/$c.der")
  size_c509=$(stat -c %s "$WORK/$c.c509")
  echo "# $c: X.509 $size_der bytes, C509 $size_c509 bytes ($((100 * size_c509 / size_der))%)"
done
check "decoded IDevID verifies (openssl verify)" openssl verify -CAfile "$D/certs/root.pem" \
  -untrusted "$MFG" <(openssl x509 -inform DER -in "$WORK/idevid.back.der")

check "c509 verify --issuer (IDevID, manufacturing CA)" \
  "$IOTPKI" c509 verify --in "$WORK/idevid.c509" --issuer "$MFG"
expect "verify prints OK" "^OK$" "$WORK/out"
check "c509 verify --issuer (LDevID, operational CA)" \
  "$IOTPKI" c509 verify --in "$WORK/ldevid.c509" --issuer "$OPS"
check "c509 verify from stdin" bash -c '"$1" c509 verify --issuer "$2" <"$3"' _ "$IOTPKI" "$MFG" \
  "$WORK/idevid.c509"
refuse "c509 verify with the wrong issuer" "does not verify" \
  "$IOTPKI" c509 verify --in "$WORK/idevid.c509" --issuer "$OPS"
"$IOTPKI" c509 encode --in "$MFG" --out "$WORK/mfg.c509"
check "c509 verify --issuer given as C509" \
  "$IOTPKI" c509 verify --in "$WORK/idevid.c509" --issuer "$WORK/mfg.c509"

check "c509 show (C509 in)" "$IOTPKI" c509 show --in "$WORK/idevid.c509"
expect "show names the type" "type 3" "$WORK/out"
expect "show has the subject CN (the device id)" "CN=$DEVICE_CN" "$WORK/out"
expect "show has the subject serialNumber" "serialNumber=SN-C509-1" "$WORK/out"
expect "show has the issuer" "Manufacturing CA" "$WORK/out"
expect "show has the device URN" "urn:dev:os:32473-SN-C509-1" "$WORK/out"
check "c509 show (X.509 PEM in)" "$IOTPKI" c509 show --in "$WORK/ldevid.pem"
expect "show compares the sizes" "X.509 [0-9]+ bytes -> C509 [0-9]+ bytes" "$WORK/out"
expect "show has the LDevID's clientAuth" "clientAuth|TLS client" "$WORK/out"

# --- cert issue --format ----------------------------------------------------------------------
issue() {
  local serial=$1
  shift
  new_csr "$WORK/$serial.csr"
  "$IOTPKI" cert issue --dir "$D" --csr "$WORK/$serial.csr" --profile idevid --serial "$serial" \
    --fingerprint "$FP" "$@"
}
check "cert issue --format der" issue SN-DER --format der --out "$WORK/issued.der"
check "DER output is X.509 (openssl)" openssl x509 -inform DER -in "$WORK/issued.der" -noout
equal "DER output is the stored DER" "$(tohex "$WORK/issued.der")" \
  "$(stored_der "$(openssl x509 -inform DER -in "$WORK/issued.der" -noout -serial | cut -d= -f2)")"
check "cert issue --format c509" issue SN-C509-3 --format c509 --out "$WORK/issued.c509"
check "its C509 verifies with the manufacturing CA" \
  "$IOTPKI" c509 verify --in "$WORK/issued.c509" --issuer "$MFG"
"$IOTPKI" c509 decode --in "$WORK/issued.c509" --out "$WORK/issued.c509.der"
SERIAL3=$(openssl x509 -inform DER -in "$WORK/issued.c509.der" -noout -serial | cut -d= -f2)
equal "its decoded DER is the stored DER" "$(tohex "$WORK/issued.c509.der")" \
  "$(stored_der "$SERIAL3")"
check "cert issue --format c509-native" \
  issue SN-NATIVE --format c509-native --out "$WORK/native.c509"
check "c509-native verifies with --issuer manufacturing.pem" \
  "$IOTPKI" c509 verify --in "$WORK/native.c509" --issuer "$MFG"
refuse "c509-native does not verify with the operational CA" "does not verify" \
  "$IOTPKI" c509 verify --in "$WORK/native.c509" --issuer "$OPS"
check "c509 show of the native certificate" "$IOTPKI" c509 show --in "$WORK/native.c509"
expect "it is type 2" "type 2" "$WORK/out"
expect "it has the serial" "serialNumber=SN-NATIVE" "$WORK/out"
refuse "a natively signed C509 has no DER to decode to" "type 2|natively signed|type 3" \
  "$IOTPKI" c509 decode --in "$WORK/native.c509"
check "cert issue --format c509-native to stdout" issue SN-NATIVE-2 --format c509-native
cp "$WORK/out" "$WORK/native2.c509"
check "stdout c509-native verifies" "$IOTPKI" c509 verify --in "$WORK/native2.c509" --issuer "$MFG"
equal "every issued certificate is recorded as X.509" \
  "$(sqlite3 "$D/iotpki.db" "SELECT COUNT(*) FROM certificates WHERE device_seq IS NOT NULL")" "6"
refuse "cert issue --format with an unknown value" "format" issue SN-BADFMT --format cbor

# --- the draft's examples: byte-exact both ways -----------------------------------------------
for v in example cab_ecdsa cab_rsa; do
  x509="$VECTORS/c509_${v}_x509.hex"
  c509="$VECTORS/c509_${v}_reencoded.hex"
  [ -f "$c509" ] || c509="$VECTORS/c509_${v}_reencoded.DERIVED.hex"
  unhex "$x509" "$WORK/$v.der"
  unhex "$c509" "$WORK/$v.c509"
  check "$v: X.509 -> C509" "$IOTPKI" c509 encode --in "$WORK/$v.der" --out "$WORK/$v.enc"
  check "$v: C509 equals the draft's bytes" cmp "$WORK/$v.c509" "$WORK/$v.enc"
  check "$v: C509 -> X.509" "$IOTPKI" c509 decode --in "$WORK/$v.c509" --out "$WORK/$v.dec"
  check "$v: X.509 equals the draft's bytes" cmp "$WORK/$v.der" "$WORK/$v.dec"
  check "$v: decode reads the hex vector as it is" \
    bash -c '"$1" c509 decode --in "$2" | cmp - "$3"' _ "$IOTPKI" "$c509" "$WORK/$v.der"
done
equal "A.1 is 316 bytes as X.509" "$(stat -c %s "$WORK/example.der")" "316"
equal "A.1 is 141 bytes as C509" "$(stat -c %s "$WORK/example.c509")" "141"

# The examples' issuer: a self-signed certificate made by openssl from the draft's private scalar
# (SEC1 ECPrivateKey DER: version 1, the scalar, the P-256 OID).
printf '30310201010420%sa00a06082a8648ce3d030107' \
  "$(tr -d ' \n' <"$VECTORS/c509_example_issuer_private_key.hex")" >"$WORK/issuer-key.hex"
unhex "$WORK/issuer-key.hex" "$WORK/issuer-key.der"
openssl ec -inform DER -in "$WORK/issuer-key.der" -out "$WORK/issuer-key.pem" 2>/dev/null
openssl req -x509 -new -key "$WORK/issuer-key.pem" -subj "/CN=RFC test CA" -days 1 \
  -out "$WORK/rfc-test-ca.pem" 2>/dev/null
equal "the scalar gives the draft's issuer public key" \
  "$(openssl ec -in "$WORK/issuer-key.pem" -pubout -conv_form compressed -outform DER 2>/dev/null |
    tail -c 33 | od -An -v -tx1 | tr -d ' \n')" \
  "$(tr -d ' \n' <"$VECTORS/c509_example_issuer_public_key_compressed.hex")"
check "A.1 re-encoded verifies with the draft's issuer key" \
  "$IOTPKI" c509 verify --in "$WORK/example.c509" --issuer "$WORK/rfc-test-ca.pem"
check "A.1.2 natively signed verifies with the draft's issuer key" \
  "$IOTPKI" c509 verify --in "$VECTORS/c509_example_native.hex" --issuer "$WORK/rfc-test-ca.pem"
refuse "A.1.2 does not verify with another key" "does not verify" \
  "$IOTPKI" c509 verify --in "$VECTORS/c509_example_native.hex" --issuer "$MFG"

# --- bad inputs: one line on stderr, non-zero exit ----------------------------------------------
head -c 100 "$WORK/idevid.c509" >"$WORK/truncated.c509"
refuse "truncated C509 (decode)" "truncated|end of (input|data)|short" \
  "$IOTPKI" c509 decode --in "$WORK/truncated.c509"
refuse "truncated C509 (verify)" "truncated|end of (input|data)|short" \
  "$IOTPKI" c509 verify --in "$WORK/truncated.c509" --issuer "$MFG"
cat "$WORK/idevid.c509" <(printf '\x00') >"$WORK/trailing.c509"
refuse "C509 with trailing bytes" "trailing" "$IOTPKI" c509 decode --in "$WORK/trailing.c509"
head -c 300 /dev/urandom >"$WORK/garbage.bin"
refuse "garbage as C509" "." "$IOTPKI" c509 decode --in "$WORK/garbage.bin"
refuse "garbage as C509 (show)" "." "$IOTPKI" c509 show --in "$WORK/garbage.bin"
refuse "garbage as X.509" "." "$IOTPKI" c509 encode --in "$WORK/garbage.bin"
refuse "empty input" "." "$IOTPKI" c509 decode --in /dev/null
refuse "missing file" "cannot open|no such" "$IOTPKI" c509 decode --in "$WORK/nope.c509"
refuse "C509 given to encode" "." "$IOTPKI" c509 encode --in "$WORK/idevid.c509"
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null \
  -subj "/CN=a+O=b" -multivalue-rdn -outform DER -out "$WORK/multivalued.der" 2>/dev/null
refuse "X.509 with a multi-valued RDN is refused by name" "multi-valued RDN" \
  "$IOTPKI" c509 encode --in "$WORK/multivalued.der"
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null \
  -subj "/CN=negative" -set_serial -5 -outform DER -out "$WORK/negative.der" 2>/dev/null
refuse "X.509 with a negative serial is refused by name" "negative serial" \
  "$IOTPKI" c509 encode --in "$WORK/negative.der"
cp "$WORK/idevid.c509" "$WORK/tampered.c509"
flip "$WORK/tampered.c509" 5
refuse "c509 verify with a tampered signature (type 3)" "does not verify" \
  "$IOTPKI" c509 verify --in "$WORK/tampered.c509" --issuer "$MFG"
cp "$WORK/native.c509" "$WORK/tampered-native.c509"
flip "$WORK/tampered-native.c509" 5
refuse "c509 verify with a tampered signature (type 2)" "does not verify" \
  "$IOTPKI" c509 verify --in "$WORK/tampered-native.c509" --issuer "$MFG"
refuse "verify needs one input that is not stdin" "stdin" \
  "$IOTPKI" c509 verify --in - --issuer -
refuse "verify with a garbage issuer" "." \
  "$IOTPKI" c509 verify --in "$WORK/idevid.c509" --issuer "$WORK/garbage.bin"

finish
