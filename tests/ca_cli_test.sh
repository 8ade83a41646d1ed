#!/usr/bin/env bash
# End-to-end test of `iotpki ca`, `cert issue` and `audit verify`, with openssl and GnuTLS
# certtool as independent clients and parsers. Usage: ca_cli_test.sh PATH_TO_IOTPKI
source "$(dirname "$0")/lib.sh"
IOTPKI=$1
D="$WORK/ca"
export IOTPKI_PASSPHRASE="test passphrase 1"

# devices / device certificates in the store, read with the sqlite3 CLI.
rows() {
  sqlite3 "$D/iotpki.db" "SELECT (SELECT COUNT(*) FROM devices) || '/' ||
    (SELECT COUNT(*) FROM certificates WHERE device_seq IS NOT NULL)"
}
audit_rows() { sqlite3 "$D/iotpki.db" "SELECT COUNT(*) FROM audit_log"; }

# --- version: the allocator the build linked (apps/iotpki/CMakeLists.txt) ----------------------
check "--version" "$IOTPKI" --version
expect "--version names the allocator the build linked" \
  "^iotpki [0-9.]+ \(malloc: ${IOTPKI_TEST_ALLOCATOR:?set by tests/CMakeLists.txt}[ )]" "$WORK/out"

# --- ca init / show ---------------------------------------------------------------------------
check "ca init" "$IOTPKI" ca init --dir "$D" --org "Example Org"
for k in root manufacturing operational; do
  equal "$k key is 0600" "$(stat -c %a "$D/keys/$k.key")" "600"
  expect "$k key is encrypted PKCS#8" "BEGIN ENCRYPTED PRIVATE KEY" "$D/keys/$k.key"
done
check "openssl decrypts the root key with the passphrase" \
  openssl pkey -in "$D/keys/root.key" -passin env:IOTPKI_PASSPHRASE -noout
refuse "ca init refuses an existing CA" "already" "$IOTPKI" ca init --dir "$D" --org "Other"
check "ca show" "$IOTPKI" ca show --dir "$D"
expect "ca show lists the manufacturing CA" "Manufacturing" "$WORK/out"
check "ca show --json" "$IOTPKI" ca show --dir "$D" --json
expect "ca show --json has fingerprints" '"sha256_fingerprint"' "$WORK/out"
check "root is self-signed and verifies" openssl verify -CAfile "$D/certs/root.pem" "$D/certs/root.pem"
for c in manufacturing operational; do
  check "$c CA verifies under root (openssl)" openssl verify -CAfile "$D/certs/root.pem" "$D/certs/$c.pem"
  openssl x509 -in "$D/certs/$c.pem" -noout -text >"$WORK/$c.txt"
  expect "$c CA has pathlen 0" "CA:TRUE, pathlen:0" "$WORK/$c.txt"
done

P384="$WORK/ca384"
check "ca init --root-curve P-384" "$IOTPKI" ca init --dir "$P384" --org "Example Org" --root-curve P-384
openssl x509 -in "$P384/certs/root.pem" -noout -text >"$WORK/root384.txt"
expect "P-384 root" "NIST CURVE: P-384|secp384r1" "$WORK/root384.txt"
refuse "ca init with an unknown curve" "curve" "$IOTPKI" ca init --dir "$WORK/bad" --root-curve P-521

# --- IDevID -----------------------------------------------------------------------------------
SERIAL=SN-000001
FP=00112233445566778899aabbccddeeff
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/dev.key" \
  -subj "/CN=device" -out "$WORK/dev.csr" 2>/dev/null
check "cert issue idevid" "$IOTPKI" cert issue --dir "$D" --csr "$WORK/dev.csr" --profile idevid \
  --serial "$SERIAL" --fingerprint "$FP" --out "$WORK/idevid.pem"
# device_id = SHA-256(serial || 0x00 || fingerprint bytes), computed here with openssl alone.
DEVICE_ID=$( (printf '%s\0' "$SERIAL"; printf "$(printf '%s' "$FP" | sed 's/../\\x&/g')") |
  openssl dgst -sha256 -r | cut -d' ' -f1)
cat "$WORK/idevid.pem" "$D/certs/manufacturing.pem" >"$WORK/idevid-chain.pem"
check "IDevID verifies (openssl verify)" \
  openssl verify -CAfile "$D/certs/root.pem" -untrusted "$D/certs/manufacturing.pem" "$WORK/idevid.pem"
check "IDevID verifies (GnuTLS certtool)" \
  certtool --verify --load-ca-certificate "$D/certs/root.pem" --infile "$WORK/idevid-chain.pem"
cat "$WORK/idevid-chain.pem" "$D/certs/root.pem" >"$WORK/idevid-full.pem"
check "IDevID chain (certtool --verify-chain)" certtool --verify-chain --infile "$WORK/idevid-full.pem"
openssl x509 -in "$WORK/idevid.pem" -noout -text -nameopt RFC2253 >"$WORK/idevid.txt"
expect "IDevID subject CN is the device id (openssl dgst)" "CN=$DEVICE_ID" "$WORK/idevid.txt"
expect "IDevID subject serialNumber" "serialNumber=$SERIAL" "$WORK/idevid.txt"
expect "IDevID subject O" "O=Example Org" "$WORK/idevid.txt"
expect "IDevID notAfter 99991231235959Z" "Not After : Dec 31 23:59:59 9999 GMT" "$WORK/idevid.txt"
expect "IDevID key usage critical" "X509v3 Key Usage: critical" "$WORK/idevid.txt"
expect "IDevID digitalSignature" "Digital Signature" "$WORK/idevid.txt"
expect "IDevID device URN (RFC 9039)" "URI:urn:dev:os:32473-$SERIAL" "$WORK/idevid.txt"
expect "IDevID hardwareModuleName otherName" "othername" "$WORK/idevid.txt"
expect "IDevID authority key identifier" "X509v3 Authority Key Identifier" "$WORK/idevid.txt"
expect "IDevID is ECDSA P-256" "prime256v1|P-256" "$WORK/idevid.txt"
certtool -i --infile "$WORK/idevid.pem" >"$WORK/idevid.certtool"
expect "hardwareModuleName otherName (certtool)" "otherName OID: 1.3.6.1.5.5.7.8.4" "$WORK/idevid.certtool"
expect "hwSerialNum is the serial (certtool)" "otherName ASCII: .*$SERIAL" "$WORK/idevid.certtool"
SERIAL_LEN=$(openssl x509 -in "$WORK/idevid.pem" -noout -serial | cut -d= -f2 | tr -d '\n' | wc -c)
equal "certificate serial is 16 bytes" "$SERIAL_LEN" "32"
equal "one device and one certificate recorded" "$(rows)" "1/1"

# --- LDevID -----------------------------------------------------------------------------------
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/op.key" \
  -subj "/CN=device" -out "$WORK/op.csr" 2>/dev/null
check "cert issue ldevid" "$IOTPKI" cert issue --dir "$D" --csr "$WORK/op.csr" --profile ldevid \
  --serial "$SERIAL" --fingerprint "$FP" --out "$WORK/ldevid.pem"
cat "$WORK/ldevid.pem" "$D/certs/operational.pem" >"$WORK/ldevid-chain.pem"
check "LDevID verifies (openssl verify)" \
  openssl verify -CAfile "$D/certs/root.pem" -untrusted "$D/certs/operational.pem" -purpose sslclient "$WORK/ldevid.pem"
check "LDevID verifies (GnuTLS certtool)" \
  certtool --verify --load-ca-certificate "$D/certs/root.pem" --infile "$WORK/ldevid-chain.pem"
openssl x509 -in "$WORK/ldevid.pem" -noout -text -nameopt RFC2253 >"$WORK/ldevid.txt"
expect "LDevID clientAuth" "TLS Web Client Authentication" "$WORK/ldevid.txt"
expect "LDevID subject CN is the device id" "CN=$DEVICE_ID" "$WORK/ldevid.txt"
NOT_AFTER=$(date -d "$(openssl x509 -in "$WORK/ldevid.pem" -noout -enddate | cut -d= -f2)" +%s)
DAYS=$(( (NOT_AFTER - $(date +%s) + 43200) / 86400 ))
equal "LDevID valid for 90 days" "$DAYS" "90"
check "stdout output when --out is absent" "$IOTPKI" cert issue --dir "$D" \
  --csr <(openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null -subj /CN=x 2>/dev/null) \
  --profile ldevid --serial "$SERIAL" --fingerprint "$FP"
expect "PEM on stdout" "BEGIN CERTIFICATE" "$WORK/out"
equal "device registered once, three certificates" "$(rows)" "1/3"

# --- bad inputs: one line, non-zero exit, nothing written -------------------------------------
BEFORE=$(rows)
AUDIT_BEFORE=$(audit_rows)
issue() { "$IOTPKI" cert issue --dir "$D" --profile idevid --serial SN-BAD-1 --fingerprint "$FP" "$@"; }
openssl req -in "$WORK/dev.csr" -outform DER -out "$WORK/dev.der"
head -c 60 "$WORK/dev.der" >"$WORK/truncated.der"
refuse "truncated CSR" "CSR" issue --csr "$WORK/truncated.der"
head -c 300 /dev/urandom >"$WORK/garbage.bin"
refuse "garbage CSR" "CSR" issue --csr "$WORK/garbage.bin"
refuse "missing CSR file" "cannot open|no such" issue --csr "$WORK/nope.csr"
# Flip one byte inside the signature (the last bytes of the DER).
cp "$WORK/dev.der" "$WORK/badsig.der"
flip "$WORK/badsig.der" 5
refuse "CSR with a bad signature" "signature|proof of possession" issue --csr "$WORK/badsig.der"
openssl req -new -newkey rsa:1024 -nodes -keyout /dev/null -subj /CN=x -out "$WORK/rsa1024.csr" 2>/dev/null
refuse "RSA-1024 CSR" "RSA-1024" issue --csr "$WORK/rsa1024.csr"
openssl ecparam -name prime192v1 -genkey -noout -out "$WORK/p192.key" 2>/dev/null
openssl req -new -key "$WORK/p192.key" -subj /CN=x -out "$WORK/p192.csr" 2>/dev/null
refuse "P-192 CSR" "prime192v1|P-192|curve" issue --csr "$WORK/p192.csr"
refuse "unknown profile" "profile" "$IOTPKI" cert issue --dir "$D" --csr "$WORK/dev.csr" \
  --profile rootish --serial SN-BAD-2 --fingerprint "$FP"
refuse "serial with invalid characters" "serial" "$IOTPKI" cert issue --dir "$D" \
  --csr "$WORK/op.csr" --profile idevid --serial 'SN 1/../x' --fingerprint "$FP"
refuse "fingerprint not hex" "fingerprint" "$IOTPKI" cert issue --dir "$D" --csr "$WORK/op.csr" \
  --profile idevid --serial SN-BAD-3 --fingerprint "xyz123"
IOTPKI_PASSPHRASE=wrong refuse "wrong passphrase" "passphrase" issue --csr "$WORK/op.csr"
refuse "no passphrase" "passphrase" env -u IOTPKI_PASSPHRASE "$IOTPKI" cert issue --dir "$D" \
  --csr "$WORK/op.csr" --profile idevid --serial SN-BAD-4 --fingerprint "$FP"
refuse "key already used (duplicate key)" "key" issue --csr "$WORK/dev.csr"
refuse "serial already provisioned" "already" "$IOTPKI" cert issue --dir "$D" --csr "$WORK/op.csr" \
  --profile idevid --serial "$SERIAL" --fingerprint "$FP"
refuse "ldevid for an unknown device" "not found|unknown|no device" "$IOTPKI" cert issue --dir "$D" \
  --csr "$WORK/op.csr" --profile ldevid --serial SN-UNKNOWN --fingerprint "$FP"
refuse "unknown CA directory" "iotpki ca init|no CA" "$IOTPKI" cert issue --dir "$WORK/none" \
  --csr "$WORK/op.csr" --profile idevid --serial SN-BAD-5 --fingerprint "$FP"
equal "bad inputs wrote no device or certificate" "$(rows)" "$BEFORE"
AUDIT_AFTER=$(audit_rows)
# Policy refusals (bad signature, weak keys, duplicate key, duplicate serial, unknown device) are
# audited; unparseable input never reaches the CA and is not.
equal "policy refusals are audited" "$((AUDIT_AFTER - AUDIT_BEFORE))" "6"

cp -r "$D" "$WORK/corrupt"
printf 'garbage\n' >"$WORK/corrupt/keys/manufacturing.key"
refuse "corrupted key file" "corrupt" "$IOTPKI" cert issue --dir "$WORK/corrupt" --csr "$WORK/op.csr" \
  --profile idevid --serial SN-BAD-6 --fingerprint "$FP"

# --- audit ------------------------------------------------------------------------------------
check "audit verify" "$IOTPKI" audit verify --dir "$D"
expect "audit verify reports the rows" "[0-9]+ rows" "$WORK/out"
sqlite3 "$D/iotpki.db" "UPDATE audit_log SET details = '{\"tampered\":true}' WHERE seq = 3"
refuse "tampered audit row is found" "row 3|seq 3" "$IOTPKI" audit verify --dir "$D"

finish
