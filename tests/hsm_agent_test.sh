#!/usr/bin/env bash
# A device whose keys live only in a PKCS#11 token: a real SoftHSM2 token made by this test (its
# own SOFTHSM2_CONF) stands in for the device's secure element. The IDevID key is generated there
# by `mfg provision --secure-element` (the device folder gets its URI as factory/key.uri), and
# `iotpki-agent --key-store pkcs11:token=...` bootstraps over EST with mutual TLS by that key,
# with a working key made in the same token; renews over mutual TLS with it; renews with --rekey
# and rotates with --mode rekey into the token; and a rotation that fails deletes its new key
# from the token. pkcs11-tool and GnuTLS's p11tool look at the token from outside: each
# certificate's key is the token's, the token signs for it, no private key can be exported, and
# no private key is in the agent's state directory.
# Usage: hsm_agent_test.sh PATH_TO_IOTPKI PATH_TO_IOTPKI_AGENT   (needs the agent's test hooks)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"

MODULE=/usr/lib/softhsm/libsofthsm2.so
mkdir -p "$WORK/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$WORK/tokens" >"$WORK/softhsm2.conf"
export SOFTHSM2_CONF="$WORK/softhsm2.conf"
export IOTPKI_PKCS11_PIN="device-se-pin-1"
unset IOTPKI_PKCS11_MODULE
softhsm2-util --init-token --free --label device-se --pin "$IOTPKI_PKCS11_PIN" \
  --so-pin "so-pin-12345" >"$WORK/init-token.out" 2>&1 || {
  echo "softhsm2-util --init-token failed (scripts/setup.sh installs softhsm2)" >&2
  cat "$WORK/init-token.out" >&2
  exit 1
}
p11() { pkcs11-tool --module "$MODULE" --token-label device-se --login --pin "$IOTPKI_PKCS11_PIN" "$@"; }
# labels: the labels of the token's private keys, sorted.
labels() {
  p11 --list-objects --type privkey 2>/dev/null | sed -n 's/^ *label: *//p' | sort
}
STORE="pkcs11:token=device-se"

check "ca init" "$IOTPKI" ca init --dir "$CA" --org "Example Org"
printf 'hw-1,c0ffee01\n' >"$WORK/serials.csv"
check "mfg provision --secure-element (the IDevID key made in the device's token)" \
  "$IOTPKI" mfg provision --dir "$CA" --serials "$WORK/serials.csv" --model sensor --batch hw \
  --out "$WORK/hw" --secure-element "$STORE"
start_server
S="$WORK/state"
mkdir -p "$S"
cp -r "$WORK/hw/hw-1" "$S/factory"
# The device's provisioning hands the agent the key's URI from the manifest.
sed -n 's/.*"key_uri":"\([^"]*\)".*/\1/p' "$WORK/hw/manifest.jsonl" >"$S/factory/key.uri"
ID=$(device_id "$S/factory")
expect "factory/key.uri names the IDevID key in the token" "^pkcs11:token=device-se;object=$ID;id=" \
  "$S/factory/key.uri"

key_uri() { head -1 "$1/key.uri"; }
label_of() { key_uri "$1" | sed -n 's/.*;object=\([^;?]*\).*/\1/p'; }
# token_pub LABEL: the token's public key of that label, as PEM (pkcs11-tool, then openssl).
token_pub() {
  p11 --read-object --type pubkey --label "$1" -o "$WORK/pub.der" >/dev/null 2>&1 &&
    openssl pkey -pubin -inform DER -in "$WORK/pub.der" -pubout
}
cert_pub() { openssl x509 -in "$1" -noout -pubkey; }
id_of() { key_uri "$1" | sed -n 's/.*;id=\([^;?]*\).*/\1/p' | tr -d '%'; }
# signed_by_token SLOT: the token signs a fresh challenge with the slot's key (pkcs11-tool) and the
# certificate's public key verifies it (openssl). The key is chosen by its CKA_ID: OpenSC 0.23's
# --sign ignores --label and takes the token's first private key.
signed_by_token() {
  echo "challenge $RANDOM" >"$WORK/challenge"
  openssl dgst -sha256 -binary "$WORK/challenge" >"$WORK/challenge.sha256"
  [ -n "$(id_of "$1")" ] || return 1
  p11 --sign --mechanism ECDSA --id "$(id_of "$1")" --signature-format openssl \
    -i "$WORK/challenge.sha256" -o "$WORK/challenge.sig" >/dev/null 2>&1 &&
    cert_pub "$1/cert.pem" >"$WORK/cert.pub" &&
    openssl pkeyutl -verify -pubin -inkey "$WORK/cert.pub" -in "$WORK/challenge.sha256" \
      -sigfile "$WORK/challenge.sig" >/dev/null
}
# not_exportable LABEL: no tool gets the private key out of the token.
not_exportable() {
  local label=$1
  rm -f "$WORK/exported"
  # OpenSC 0.23 does not even try ("reading private keys not (yet) supported"); whatever it
  # says, nothing may come out.
  p11 --read-object --type privkey --label "$label" -o "$WORK/exported" >/dev/null 2>&1
  if [ -s "$WORK/exported" ]; then
    echo "    pkcs11-tool wrote a private key" >&2
    return 1
  fi
  # GnuTLS asks the token for CKA_VALUE, which a sensitive key refuses.
  if GNUTLS_PIN="$IOTPKI_PKCS11_PIN" p11tool --provider "$MODULE" --login \
    --export "pkcs11:token=device-se;object=$label;type=private" >"$WORK/exported" 2>&1; then
    echo "    p11tool exported it" >&2
    return 1
  fi
  grep -q "requested data were not available" "$WORK/exported"
}
# STATE/keys/ holds only the records of the token keys the agent made: one URI each.
no_private_key_in_state() {
  if grep -rlE "PRIVATE KEY|BEGIN EC" "$S"; then return 1; fi
  [ -z "$(find "$S" -name 'key.pem')" ] || return 1
  [ -z "$(find "$S/keys" -type f ! -name 'ldevid-*.p11' 2>/dev/null)" ] || return 1
  ! cat "$S"/keys/*.p11 2>/dev/null | grep -qvE '^pkcs11:token=device-se;object=ldevid-[0-9a-f]{16}$'
}
# records: the labels the agent's records name (STATE/keys/<label>.p11), sorted.
records() { find "$S/keys" -name 'ldevid-*.p11' -printf '%f\n' 2>/dev/null | sed 's/\.p11$//' | sort; }

# --- bad inputs: one clear line, nothing installed, nothing made in the token ------------------
BEFORE=$(labels)
refuse "--key-store pkcs11: with an object label" "names the token only" \
  "$AGENT" --state "$S" --key-store "$STORE;object=mine" bootstrap --server "$URL" --est
refuse "a PIN in the URI" "pin-value.*IOTPKI_PKCS11_PIN" \
  "$AGENT" --state "$S" --key-store "$STORE?pin-value=1234" bootstrap --server "$URL" --est
refuse "a wrong PIN" "wrong PIN for PKCS#11 token 'device-se'" \
  env IOTPKI_PKCS11_PIN=not-the-pin "$AGENT" --state "$S" --key-store "$STORE" bootstrap \
  --server "$URL" --est
refuse "no PIN" "no PIN for PKCS#11 token 'device-se'.*IOTPKI_PKCS11_PIN" \
  env -u IOTPKI_PKCS11_PIN "$AGENT" --state "$S" --key-store "$STORE" bootstrap --server "$URL" --est
refuse "a token that is not there" "no PKCS#11 token labelled 'no-such-token'" \
  "$AGENT" --state "$S" --key-store "pkcs11:token=no-such-token" bootstrap --server "$URL" --est
refuse "serverkeygen cannot open a key sealed to a token's IDevID" "serverkeygen.*--est" \
  "$AGENT" --state "$S" bootstrap --server "$URL" --serverkeygen
if [ ! -e "$S/active" ] && [ ! -e "$S/key-store" ] && [ ! -e "$S/keys" ]; then
  pass "nothing installed, no key recorded"
else
  fail "a refused bootstrap left state behind"
fi
equal "no key made in the token by the refusals" "$(labels)" "$BEFORE"

# --- bootstrap: mutual TLS by the IDevID key in the token, the working key made there ---------
check "bootstrap --est with --key-store pkcs11:token=device-se" \
  "$AGENT" --state "$S" --key-store "$STORE" bootstrap --server "$URL" --est
expect "the store is remembered" "^pkcs11:token=device-se$" "$S/key-store"
expect "the slot names the key by URI" "^pkcs11:token=device-se;object=ldevid-[0-9a-f]{16};id=" \
  "$S/active/key.uri"
L1=$(label_of "$S/active")
equal "the certificate's key is the token's (pkcs11-tool)" "$(token_pub "$L1")" \
  "$(cert_pub "$S/active/cert.pem")"
if signed_by_token "$S/active"; then pass "the token signs with the certificate's key"; else
  fail "a token signature does not verify with the certificate's key"
fi
p11 --list-objects --type privkey >"$WORK/privkeys.txt" 2>&1
expect "the working key is sensitive and never extractable" \
  "Access: +sensitive, always sensitive, never extractable" "$WORK/privkeys.txt"
if not_exportable "$L1"; then pass "the working key cannot be exported (pkcs11-tool, p11tool)"; else
  fail "the working key was exported"
fi
if not_exportable "$ID"; then pass "nor can the IDevID key"; else fail "the IDevID key was exported"; fi
if no_private_key_in_state; then pass "no private key in the state directory"; else
  fail "a private key in the state directory"
fi

# --- renew over mutual TLS with the token key (the key kept) -----------------------------------
SERIAL1=$(openssl x509 -in "$S/active/cert.pem" -noout -serial)
check "renew: mutual TLS with the token key" "$AGENT" --state "$S" renew
if [ "$(openssl x509 -in "$S/active/cert.pem" -noout -serial)" != "$SERIAL1" ]; then
  pass "a new certificate"
else
  fail "renew installed nothing new"
fi
equal "renew keeps the token key" "$(key_uri "$S/active")" "$(key_uri "$S/previous")"

# --- rotate with a new key made in the token ---------------------------------------------------
echo "$ID" >"$WORK/ids.txt"
check "campaign" "$IOTPKI" campaign create --dir "$CA" --name rot --devices "$WORK/ids.txt"
check "rotate --mode rekey (the store from STATE/key-store)" \
  "$AGENT" --state "$S" rotate --campaign rot --job 0 --mode rekey
L2=$(label_of "$S/active")
if [ -n "$L2" ] && [ "$L2" != "$L1" ]; then pass "the rotated key is a new token key"; else
  fail "rotation key: $L1 -> $L2"
fi
equal "the rotated certificate's key is the new token key" "$(token_pub "$L2")" \
  "$(cert_pub "$S/active/cert.pem")"
if signed_by_token "$S/active"; then pass "the token signs with the rotated certificate's key"; else
  fail "a token signature does not verify with the rotated certificate's key"
fi
equal "the job is confirmed" "$(sql "SELECT state FROM rotation_jobs WHERE ordinal = 0")" confirmed

check "renew --rekey: another new token key" "$AGENT" --state "$S" renew --rekey
L3=$(label_of "$S/active")
equal "... whose certificate's key is the token's" "$(token_pub "$L3")" \
  "$(cert_pub "$S/active/cert.pem")"
# Keys no slot names any more are deleted with their slot; the IDevID key stays.
equal "the token holds the IDevID key and the keys of the two slots kept" "$(labels)" \
  "$(printf '%s\n' "$ID" "$L2" "$L3" | sort)"
equal "the agent's records name exactly the working keys in the token" "$(records)" \
  "$(printf '%s\n' "$L2" "$L3" | sort)"

# --- a rotation that fails after its new key was made: the key is deleted from the token -----
check "second campaign" "$IOTPKI" campaign create --dir "$CA" --name rot2 --devices "$WORK/ids.txt"
BEFORE=$(labels)
CUR=$(openssl x509 -in "$S/active/cert.pem" -noout -serial)
if IOTPKI_AGENT_TEST_FAIL_INSTALL=1 "$AGENT" --state "$S" rotate --campaign rot2 --job 0 \
  --mode rekey >"$WORK/out" 2>"$WORK/err"; then
  fail "a failing install succeeded"
else
  expect "the failed rotation says it rolled back" "install failed on purpose.*rolled back" "$WORK/err"
fi
equal "the new key is deleted from the token" "$(labels)" "$BEFORE"
equal "... and so is its record" "$(records)" "$(labels | grep -vx "$ID")"
equal "the device keeps its certificate" "$(openssl x509 -in "$S/active/cert.pem" -noout -serial)" \
  "$CUR"
check "no pending rotation left" test ! -e "$S/pending"
if no_private_key_in_state; then pass "still no private key in the state directory"; else
  fail "a private key in the state directory"
fi
check "and the device still renews with its token key afterwards" "$AGENT" --state "$S" renew

# --- what the agent asks the token: never a private key's value ---------------------------------
# OpenSC's pkcs11-spy sits between the agent and SoftHSM2 and logs every call with its
# attributes. A renew with a new key (generate, sign the CSR, mutual TLS with the old key and
# the new one's first use) never asks for CKA_VALUE, nor wraps or derives anything.
SPY=$(ls /usr/lib/*/pkcs11-spy.so 2>/dev/null | head -1)
if [ -z "$SPY" ]; then
  fail "no pkcs11-spy.so (scripts/setup.sh installs opensc-pkcs11)"
else
  check "renew --rekey through pkcs11-spy" env IOTPKI_PKCS11_MODULE="$SPY" PKCS11SPY="$MODULE" \
    PKCS11SPY_OUTPUT="$WORK/spy.log" "$AGENT" --state "$S" renew --rekey
  expect "the spy saw the key made in the token" "C_GenerateKeyPair" "$WORK/spy.log"
  expect "and the token's signatures" "C_Sign$" "$WORK/spy.log"
  if grep -qE '^ +CKA_VALUE +|C_WrapKey|C_DeriveKey|C_CopyObject' "$WORK/spy.log"; then
    fail "the agent asked the token for a key's value or to move a key"
    grep -nE '^ +CKA_VALUE +|C_WrapKey|C_DeriveKey|C_CopyObject' "$WORK/spy.log" | head -5 >&2
  else
    pass "no call asks for CKA_VALUE, wraps, derives or copies a key (pkcs11-spy)"
  fi
  rm -f "$WORK/spy.log" # it holds the test PIN (C_Login's argument)
fi

# --- a crash between making a key in the token and writing its slot ---------------------------
# The agent records each token key it makes (STATE/keys/<label>.p11) before the token makes it;
# a rotation killed after the enrollment leaves the key and its record, and no slot names it.
check "third campaign" "$IOTPKI" campaign create --dir "$CA" --name rot3 --devices "$WORK/ids.txt"
BEFORE=$(labels)
IOTPKI_AGENT_TEST_STOP_AT=after-enroll "$AGENT" --state "$S" rotate --campaign rot3 --job 0 \
  --mode rekey >"$WORK/out" 2>"$WORK/err" &
pid=$!
state=""
for _ in $(seq 300); do
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)
  [ "$state" = T ] || [ -z "$state" ] && break
  sleep 0.05
done
if [ "$state" = T ]; then pass "the rotation stopped after its enrollment"; else
  fail "the rotation did not stop at after-enroll"
  cat "$WORK/out" "$WORK/err" >&2
fi
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
ORPHAN=$(comm -13 <(echo "$BEFORE") <(labels))
expect "the killed rotation left one new key in the token" "^ldevid-[0-9a-f]{16}$" <(echo "$ORPHAN")
expect "... and its record" "^pkcs11:token=device-se;object=$ORPHAN$" "$S/keys/$ORPHAN.p11"
check "recover" "$AGENT" --state "$S" recover
# It may be the key of a command running beside this one, until its slot is written.
equal "a fresh one is kept" "$(labels)" "$(printf '%s\n' $BEFORE "$ORPHAN" | sort)"
touch -d '2 hours ago' "$S/keys/$ORPHAN.p11"
check "recover, an hour later" "$AGENT" --state "$S" recover
expect "it says which key it deleted" \
  "^recover: deleted the orphaned key pkcs11:token=device-se;object=$ORPHAN " "$WORK/out"
equal "the orphan is deleted from the token, the others kept" "$(labels)" "$BEFORE"
check "and its record" test ! -e "$S/keys/$ORPHAN.p11"
equal "one record for each working key in the token" "$(records)" "$(labels | grep -vx "$ID")"
if no_private_key_in_state; then pass "still no private key in the state directory"; else
  fail "a private key in the state directory"
fi
check "the device still renews with its token key" "$AGENT" --state "$S" renew

stop_server
finish
