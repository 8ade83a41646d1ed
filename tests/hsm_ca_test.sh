#!/usr/bin/env bash
# A CA whose keys live only in a PKCS#11 token (a real SoftHSM2 token made by this test, with its
# own SOFTHSM2_CONF): ca init into the token, a factory batch, serve with curl as the EST client
# (and with campaigns: its command certificate signed in the token, connected to a Mosquitto),
# openssl verify/crl/ocsp as the relying party, pkcs11-tool and GnuTLS's p11tool as independent
# clients that read the keys' attributes and try to export one, and a grep of the CA directory
# for private key material.
# Usage: hsm_ca_test.sh PATH_TO_IOTPKI
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"
# Token keys need only the PIN: no CA passphrase anywhere in this test (ca init, mfg provision,
# serve). The bootstrap master is a file with its own passphrase (docs/hardware-keys.md).
unset IOTPKI_PASSPHRASE
export IOTPKI_BOOTSTRAP_PASSPHRASE="test bootstrap passphrase"

MODULE=/usr/lib/softhsm/libsofthsm2.so
mkdir -p "$WORK/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$WORK/tokens" >"$WORK/softhsm2.conf"
export SOFTHSM2_CONF="$WORK/softhsm2.conf"
export IOTPKI_PKCS11_PIN="ca-token-pin-1"
unset IOTPKI_PKCS11_MODULE
softhsm2-util --init-token --free --label iotpki-ca --pin "$IOTPKI_PKCS11_PIN" \
  --so-pin "so-pin-12345" >"$WORK/init-token.out" 2>&1 || {
  echo "softhsm2-util --init-token failed (scripts/setup.sh installs softhsm2)" >&2
  cat "$WORK/init-token.out" >&2
  exit 1
}
p11() { pkcs11-tool --module "$MODULE" --token-label iotpki-ca "$@"; }

# --- ca init into the token ---------------------------------------------------------------------
check "ca init --key-store pkcs11:token=iotpki-ca" "$IOTPKI" ca init --dir "$CA" --org "Example Org" \
  --key-store "pkcs11:token=iotpki-ca"
expect "iotpki.toml names the root key by URI" "root = 'pkcs11:token=iotpki-ca;object=iotpki-root;id=" \
  "$CA/iotpki.toml"
expect "and the operational key" \
  "operational = 'pkcs11:token=iotpki-ca;object=iotpki-operational;id=" "$CA/iotpki.toml"
check "no key file for root, manufacturing, operational or audit" \
  test ! -e "$CA/keys/root.key" -a ! -e "$CA/keys/manufacturing.key" \
  -a ! -e "$CA/keys/operational.key" -a ! -e "$CA/keys/audit.key"
check "the CA certificates chain (openssl verify)" openssl verify -CAfile "$CA/certs/root.pem" \
  "$CA/certs/manufacturing.pem" "$CA/certs/operational.pem"
p11 --login --pin "$IOTPKI_PKCS11_PIN" --list-objects --type privkey >"$WORK/privkeys.txt" 2>&1
expect "the token holds the root key" "label: +iotpki-root" "$WORK/privkeys.txt"
expect "CA keys are sensitive and never extractable (pkcs11-tool)" \
  "Access: +sensitive, always sensitive, never extractable" "$WORK/privkeys.txt"
equal "four keys in the token" "$(grep -c 'Private Key Object' "$WORK/privkeys.txt")" 4
GNUTLS_PIN="$IOTPKI_PKCS11_PIN" p11tool --provider "$MODULE" --login --list-all-privkeys \
  "pkcs11:token=iotpki-ca" >"$WORK/p11tool.txt" 2>&1
expect "CA keys are CKA_NEVER_EXTRACTABLE and CKA_SENSITIVE (p11tool)" \
  "CKA_PRIVATE; CKA_NEVER_EXTRACTABLE; CKA_SENSITIVE;" "$WORK/p11tool.txt"
# pkcs11-tool cannot read private keys at all; GnuTLS's p11tool tries and the token refuses.
refuse "exporting a CA private key from the token fails (p11tool --export)" \
  "requested data were not available" env GNUTLS_PIN="$IOTPKI_PKCS11_PIN" p11tool \
  --provider "$MODULE" --login --export "pkcs11:token=iotpki-ca;object=iotpki-root;type=private"

# --- bad inputs: a clear error, no CA, the token's keys untouched -------------------------------
refuse "a second CA with the same labels is refused" "already holds an object labelled 'iotpki-root'" \
  "$IOTPKI" ca init --dir "$WORK/ca2" --key-store "pkcs11:token=iotpki-ca"
check "... and leaves no directory" test ! -e "$WORK/ca2"
refuse "a wrong PIN is refused" "wrong PIN for PKCS#11 token 'iotpki-ca'" \
  env IOTPKI_PKCS11_PIN=not-the-pin "$IOTPKI" ca init --dir "$WORK/ca3" \
  --key-store "pkcs11:token=iotpki-ca"
refuse "a missing token is named" "no PKCS#11 token labelled 'no-such-token'" \
  "$IOTPKI" ca init --dir "$WORK/ca4" --key-store "pkcs11:token=no-such-token"
refuse "a PIN in the URI is refused" "pin-value in a pkcs11: URI is refused" \
  "$IOTPKI" ca init --dir "$WORK/ca5" --key-store "pkcs11:token=iotpki-ca?pin-value=1234"
refuse "--key-store takes pkcs11: only" "--key-store takes a PKCS#11 token URI" \
  "$IOTPKI" ca init --dir "$WORK/ca6" --key-store "file:keys"
p11 --login --pin "$IOTPKI_PKCS11_PIN" --list-objects --type privkey >"$WORK/privkeys2.txt" 2>&1
equal "still four keys in the token" "$(grep -c 'Private Key Object' "$WORK/privkeys2.txt")" 4

# --- a factory batch signed by the manufacturing CA in the token --------------------------------
# Through OpenSC's pkcs11-spy, which logs every PKCS#11 call with its attributes: the batch signs
# in the token and never asks it for a key's value (CKA_VALUE), nor wraps, derives or copies.
SPY=$(ls /usr/lib/*/pkcs11-spy.so 2>/dev/null | head -1)
[ -n "$SPY" ] || fail "no pkcs11-spy.so (scripts/setup.sh installs opensc-pkcs11)"
export IOTPKI_PKCS11_MODULE="${SPY:-$MODULE}" PKCS11SPY="$MODULE" PKCS11SPY_OUTPUT="$WORK/spy.log"
provision hsm 2
unset IOTPKI_PKCS11_MODULE PKCS11SPY PKCS11SPY_OUTPUT
if [ -n "$SPY" ]; then
  expect "the batch's IDevIDs are signed in the token (pkcs11-spy)" "C_Sign$" "$WORK/spy.log"
  if grep -qE '^ +CKA_VALUE +|C_WrapKey|C_DeriveKey|C_CopyObject' "$WORK/spy.log"; then
    fail "the batch asked the token for a key's value or to move a key"
  else
    pass "no call asks for CKA_VALUE, wraps, derives or copies a key (pkcs11-spy)"
  fi
  rm -f "$WORK/spy.log" # it holds the test PIN (C_Login's argument)
fi
D1="$WORK/hsm/hsm-000001"
ID1=$(device_id "$D1")
check "IDevID verifies to the root (openssl verify)" openssl verify -CAfile "$CA/certs/root.pem" \
  -untrusted "$CA/certs/manufacturing.pem" "$D1/cert.pem"
check "audit chain verifies" "$IOTPKI" audit verify --dir "$CA"
if grep -rlE "PRIVATE KEY|BEGIN EC" "$CA" >"$WORK/keyfiles"; then
  fail "no private key material in the CA directory ($(tr '\n' ' ' <"$WORK/keyfiles"))"
else
  pass "no private key material in the CA directory after ca init and a batch"
fi

# --- serve: TLS and OCSP certificates, EST enrollment, CRLs -------------------------------------
start_server
csr_b64 "$WORK/ld1.key" "/CN=$ID1" >"$WORK/ld1.b64"
status "EST simpleenroll with the IDevID, CA key in the token" 200 "$(http --cert "$D1/cert.pem" \
  --key "$D1/key.plain.pem" -H 'Content-Type: application/pkcs10' --data-binary @"$WORK/ld1.b64" \
  "$URL/.well-known/est/simpleenroll")"
p7_certs "$WORK/body" "$WORK/ld1.pem"
check "LDevID verifies to the root (openssl verify)" openssl verify -CAfile "$CA/certs/root.pem" \
  -untrusted "$CA/certs/operational.pem" -purpose sslclient "$WORK/ld1.pem"
status "the operational CA's CRL" 200 "$(http "$URL/crl/operational.crl")"
openssl crl -inform DER -in "$WORK/body" -CAfile "$CA/certs/operational-chain.pem" -noout \
  >"$WORK/crl.out" 2>&1
expect "the CRL's signature (by the token key) verifies" "verify OK" "$WORK/crl.out"
openssl ocsp -issuer "$CA/certs/operational.pem" -cert "$WORK/ld1.pem" -url "$URL/ocsp" \
  -CAfile "$CA/certs/root.pem" >"$WORK/ocsp.out" 2>&1
expect "OCSP answers good for the LDevID, responder certified by the token key" \
  "ld1.pem: good" "$WORK/ocsp.out"
check "server stops cleanly" stop_server
# Without a passphrase the server's TLS key and its OCSP responders' keys (leaf keys OpenSSL signs
# with in this process) live in memory only; nothing in the directory holds a private key.
grep -rlE "PRIVATE KEY|BEGIN EC" "$CA" | sed "s|^$CA/||" | sort | tr '\n' ' ' >"$WORK/keyfiles"
equal "serve without a passphrase writes no private key file" "$(cat "$WORK/keyfiles")" ""
# With the operational and manufacturing passphrases given, they are kept in encrypted files.
export IOTPKI_OPERATIONAL_PASSPHRASE="test operational passphrase"
export IOTPKI_MANUFACTURING_PASSPHRASE="test manufacturing passphrase"
# Campaigns too (a real Mosquitto requiring client certificates): the server's command
# certificate, which devices check every rotate command against, is signed by the token's
# operational CA key, and the server connects to the broker with it.
BROKER_SH="$(dirname "$0")/mqtt_broker.sh"
cat "$CA/certs/root.pem" "$CA/certs/operational.pem" >"$WORK/clients-ca.pem"
rc=0
MQTT_PORT=$(bash "$BROKER_SH" start "$WORK/broker" "$WORK/clients-ca.pem" 2>"$WORK/broker.err") ||
  rc=$?
trap 'stop_server_quietly; bash "$BROKER_SH" stop "$WORK/broker" >/dev/null 2>&1; rm -rf "$WORK"' EXIT
KEYFILES="keys/ocsp-manufacturing.key keys/ocsp-operational.key keys/server.key "
if [ "$rc" = 0 ]; then
  sed -i 's/^log_type warning$/log_type warning\nlog_type notice/' "$WORK/broker/mosquitto.conf"
  bash "$BROKER_SH" reload "$WORK/broker"
  start_server --campaigns --mqtt "mqtts://127.0.0.1:$MQTT_PORT" --mqtt-ca "$WORK/broker/broker.crt"
  KEYFILES="keys/command.key $KEYFILES"
  openssl x509 -in "$CA/certs/command.pem" -out "$WORK/command.pem" 2>/dev/null
  check "the command certificate verifies to the root, signed by the token's operational key" \
    openssl verify -CAfile "$CA/certs/root.pem" -untrusted "$CA/certs/operational.pem" \
    "$WORK/command.pem"
  for _ in $(seq 100); do
    grep -q "as iotpki-server-" "$WORK/broker/mosquitto.log" 2>/dev/null && break
    sleep 0.1
  done
  expect "the server connects to the broker with its command certificate" \
    "New client connected from 127\.0\.0\.1.* as iotpki-server-.*u'iotpki-server'" \
    "$WORK/broker/mosquitto.log"
else
  echo "# mosquitto is not installed: campaigns not checked (scripts/setup.sh installs it)"
  start_server
fi
status "with passphrases for the leaf keys: EST cacerts" 200 "$(http "$URL/.well-known/est/cacerts")"
check "server stops cleanly" stop_server
unset IOTPKI_OPERATIONAL_PASSPHRASE IOTPKI_MANUFACTURING_PASSPHRASE
grep -rlE "PRIVATE KEY|BEGIN EC" "$CA" | sed "s|^$CA/||" | sort | tr '\n' ' ' >"$WORK/keyfiles"
equal "then only the server's own TLS, OCSP (and command) keys are files" "$(cat "$WORK/keyfiles")" \
  "$KEYFILES"


# --- device keys generated in the station's secure element --------------------------------------
# A second token stands in for the station's secure element; its PIN comes from a pin-source file
# (IOTPKI_PKCS11_PIN is the CA token's, in the same process).
softhsm2-util --init-token --free --label station-se --pin "se-pin-2" --so-pin "so-pin-12345" \
  >"$WORK/init-se.out" 2>&1
printf 'se-pin-2\n' >"$WORK/se.pin"
printf 'wrong-pin\n' >"$WORK/se-wrong.pin"
SE="pkcs11:token=station-se?pin-source=file:$WORK/se.pin"
printf 'se-1,a1b2c3\nse-2,a1b2c4\nse-3,a1b2c5\n' >"$WORK/se.csv"
se_id() { { printf '%s\0' "$1"; printf '%s' "$2" | xxd -r -p; } | sha256sum | cut -d' ' -f1; }
SE_ID1=$(se_id se-1 a1b2c3)
SE_ID2=$(se_id se-2 a1b2c4)
se_p11() { pkcs11-tool --module "$MODULE" --token-label station-se "$@"; }
mfg_se() {
  "$IOTPKI" mfg provision --dir "$CA" --serials "$WORK/se.csv" --model sensor --batch se \
    --out "$WORK/se" "$@"
}
se_devices() { sql "SELECT COUNT(*) FROM devices WHERE batch = 'se'"; }

refuse "a wrong secure-element PIN is refused" "wrong PIN for PKCS#11 token 'station-se'" \
  mfg_se --secure-element "pkcs11:token=station-se?pin-source=file:$WORK/se-wrong.pin"
refuse "a missing secure element is named" "no PKCS#11 token labelled 'no-such-se'" \
  mfg_se --secure-element "pkcs11:token=no-such-se"
se_p11 --login --pin se-pin-2 --keypairgen --key-type EC:prime256v1 --label "$SE_ID2" \
  >/dev/null 2>&1
refuse "a device_id label already in the token is refused, naming the device" \
  "already holds a key labelled $SE_ID2 \(device se-2\)" mfg_se --secure-element "$SE"
equal "nothing was issued by the refused runs" "$(se_devices)" 0
se_p11 --login --pin se-pin-2 --list-objects --type privkey >"$WORK/se-keys0.txt" 2>&1
equal "no key was generated by the refused runs" "$(grep -c 'Private Key Object' "$WORK/se-keys0.txt")" 1
se_p11 --login --pin se-pin-2 --delete-object --type privkey --label "$SE_ID2" >/dev/null 2>&1
se_p11 --login --pin se-pin-2 --delete-object --type pubkey --label "$SE_ID2" >/dev/null 2>&1

check "mfg provision --secure-element" mfg_se --secure-element "$SE"
equal "three devices in the inventory" "$(se_devices)" 3
expect "the manifest records the key's URI, not key material" \
  "\"key_uri\":\"pkcs11:token=station-se;object=$SE_ID1;id=[%0-9a-f]+\?pin-source=file:" \
  "$WORK/se/manifest.jsonl"
check "no key file in the device folders" test -z "$(find "$WORK/se" -name 'key*')"
se_p11 --login --pin se-pin-2 --list-objects >"$WORK/se-objects.txt" 2>&1
equal "three device keys in the token" "$(grep -c 'Private Key Object' "$WORK/se-objects.txt")" 3
equal "three certificates in the token" "$(grep -c 'Certificate Object' "$WORK/se-objects.txt")" 3
expect "device keys are never extractable" "Access: +sensitive, always sensitive, never extractable" \
  "$WORK/se-objects.txt"
se_p11 --read-object --type cert --label "$SE_ID1" -o "$WORK/se1-token.der" >/dev/null 2>&1
check "the token's certificate is the folder's IDevID, byte for byte" \
  cmp "$WORK/se1-token.der" "$WORK/se/se-1/cert.der"
check "it verifies to the root (openssl verify)" openssl verify -CAfile "$CA/certs/root.pem" \
  -untrusted "$CA/certs/manufacturing.pem" "$WORK/se/se-1/cert.pem"
se_p11 --read-object --type pubkey --label "$SE_ID1" -o "$WORK/se1-pub.der" >/dev/null 2>&1
equal "the IDevID certifies the token's key" \
  "$(openssl pkey -pubin -inform DER -in "$WORK/se1-pub.der" -pubout 2>&1)" \
  "$(openssl x509 -in "$WORK/se/se-1/cert.pem" -noout -pubkey)"
refuse "exporting a device key from the token fails (p11tool --export)" \
  "requested data were not available" env GNUTLS_PIN=se-pin-2 p11tool --provider "$MODULE" \
  --login --export "pkcs11:token=station-se;object=$SE_ID1;type=private"
check "mfg provision --resume of the finished batch changes nothing" mfg_se --secure-element "$SE" \
  --resume
se_p11 --login --pin se-pin-2 --list-objects >"$WORK/se-objects2.txt" 2>&1
equal "still three certificates in the token" "$(grep -c 'Certificate Object' "$WORK/se-objects2.txt")" 3

finish
