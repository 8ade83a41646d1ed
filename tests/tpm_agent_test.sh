#!/usr/bin/env bash
# A device whose working keys live in a TPM 2.0 (swtpm, started here on a free loopback port and
# stopped at the end): `iotpki-agent --key-store tpm2:` bootstraps over EST with a key generated in
# the TPM (the CSR signed there), renews over mutual TLS with that key, and rotates with a new
# key made in the same TPM; a second device has its IDevID key in the TPM as well (certified from
# a CSR the TPM signed). openssl with the tpm2 provider checks from outside that each
# certificate's key is the TPM's (the TPM signs, the certificate's key verifies), tpm2-tools that
# nothing is left loaded in the TPM, grep that no private key is on disk in the clear.
# Usage: tpm_agent_test.sh PATH_TO_IOTPKI PATH_TO_IOTPKI_AGENT (exit 3: swtpm not installed)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"
SWTPM="$(dirname "$0")/swtpm.sh"
TPM="$WORK/tpm"
trap 'stop_server_quietly; bash "$SWTPM" stop "$TPM"; rm -rf "$WORK"' EXIT

rc=0
TCTI=$(bash "$SWTPM" start "$TPM") || rc=$?
if [ "$rc" = 3 ]; then
  echo "skipped: swtpm is not installed (scripts/setup.sh installs it)"
  exit 3
fi
[ "$rc" = 0 ] || exit 1
export TPM2OPENSSL_TCTI=$TCTI TPM2TOOLS_TCTI=$TCTI

check "ca init" "$IOTPKI" ca init --dir "$CA" --org "Example Org"
provision dev 1
start_server
S="$WORK/state"
mkdir -p "$S"
cp -r "$WORK/dev/dev-000001" "$S/factory"
ID=$(device_id "$S/factory")

# tpm_pub BLOB: the public key of a TPM key blob, as the TPM loads it (openssl + tpm2 provider).
tpm_pub() {
  openssl pkey -provider tpm2 -provider default -propquery '?provider=tpm2' -in "$1" -pubout
}
cert_pub() { openssl x509 -in "$1" -noout -pubkey; }
key_uri() { head -1 "$1/key.uri"; }
blob_of() { echo "$S/$(key_uri "$1" | sed 's/^tpm2:blob=//')"; }
# signed_by_tpm SLOT: the TPM signs with the slot's key (openssl pkeyutl through the provider) and
# the certificate's public key verifies it.
signed_by_tpm() {
  echo "challenge $RANDOM" >"$WORK/challenge"
  openssl dgst -sha256 -binary "$WORK/challenge" >"$WORK/challenge.sha256"
  openssl pkeyutl -provider tpm2 -provider default -propquery '?provider=tpm2' -sign \
    -inkey "$(blob_of "$1")" -in "$WORK/challenge.sha256" -out "$WORK/challenge.sig" &&
    cert_pub "$1/cert.pem" >"$WORK/cert.pub" &&
    openssl pkeyutl -verify -pubin -inkey "$WORK/cert.pub" -in "$WORK/challenge.sha256" \
      -sigfile "$WORK/challenge.sig" >/dev/null
}

# --- bad inputs: a clear line, nothing installed -----------------------------------------------
refuse "a key store the agent does not know" "expected tpm2:.*or pkcs11:token=LABEL" \
  "$AGENT" --state "$S" --key-store file:x bootstrap --server "$URL" --est
refuse "serverkeygen with a key store" "serverkeygen.*--key-store" \
  "$AGENT" --state "$S" --key-store tpm2: bootstrap --server "$URL" --serverkeygen
# A TPM that cannot be reached (a closed port): the TCTI named, nothing installed.
refuse "no TPM at the TCTI" "cannot reach a TPM.*TPM2OPENSSL_TCTI=swtpm:host=127.0.0.1,port=1" \
  env TPM2OPENSSL_TCTI=swtpm:host=127.0.0.1,port=1 \
  "$AGENT" --state "$S" --key-store tpm2: bootstrap --server "$URL" --est
if [ ! -e "$S/active" ] && [ ! -e "$S/key-store" ]; then pass "nothing installed"; else
  fail "a refused bootstrap left state behind"
fi

# --- bootstrap: the working key made in the TPM -----------------------------------------------
check "bootstrap --est with --key-store tpm2:" \
  "$AGENT" --state "$S" --key-store tpm2: bootstrap --server "$URL" --est
expect "the store is remembered" "^tpm2:$" "$S/key-store"
expect "the slot names the key by URI" "^tpm2:blob=keys/ldevid-[0-9a-f]{16}\.tpm$" "$S/active/key.uri"
if [ ! -e "$S/active/key.pem" ]; then pass "no key.pem in the slot"; else fail "key.pem in the slot"; fi
B1=$(blob_of "$S/active")
expect "the blob is the TPM's wrapped form" "^-----BEGIN TSS2 PRIVATE KEY-----" "$B1"
equal "the blob is 0600" "$(stat -c %a "$B1")" 600
if openssl pkey -in "$B1" -noout 2>/dev/null; then fail "openssl read a private key from the blob"; else
  pass "openssl alone cannot read a private key from the blob"
fi
equal "the certificate's key is the TPM key's (openssl + tpm2 provider)" \
  "$(tpm_pub "$B1")" "$(cert_pub "$S/active/cert.pem")"
if signed_by_tpm "$S/active"; then pass "the TPM signs with the certificate's key"; else
  fail "a TPM signature does not verify with the certificate's key"
fi
# tpm2-tools, independently of OpenSSL (swtpm serves one client at a time: the agent has
# exited): nothing left loaded in the TPM (swtpm has no resource manager to flush what a process
# leaves behind), and nothing made persistent.
no_tpm_leftovers() {
  local t p
  t=$(tpm2_getcap handles-transient) && p=$(tpm2_getcap handles-persistent) && [ -z "$t$p" ] || {
    echo "    transient: $t persistent: $p"
    return 1
  }
}
if no_tpm_leftovers; then pass "tpm2_getcap: no transient or persistent object left"; else
  fail "objects left in the TPM"
fi
if grep -rlE "BEGIN (EC )?PRIVATE KEY" "$S" --exclude-dir=factory; then
  fail "a private key in the clear in the state directory"
else
  pass "no private key in the clear in the state directory"
fi

# --- renew over mutual TLS with the TPM key (the key kept) ------------------------------------
SERIAL1=$(openssl x509 -in "$S/active/cert.pem" -noout -serial)
check "renew: mutual TLS with the TPM key" "$AGENT" --state "$S" renew
if [ "$(openssl x509 -in "$S/active/cert.pem" -noout -serial)" != "$SERIAL1" ]; then
  pass "a new certificate"
else
  fail "renew installed nothing new"
fi
equal "renew keeps the TPM key" "$(key_uri "$S/active")" "$(key_uri "$S/previous")"

# --- rotate with a new key, made in the same TPM ----------------------------------------------
echo "$ID" >"$WORK/ids.txt"
check "campaign" "$IOTPKI" campaign create --dir "$CA" --name rot --devices "$WORK/ids.txt"
OLD_URI=$(key_uri "$S/active")
check "rotate --mode rekey (the store from STATE/key-store)" \
  "$AGENT" --state "$S" rotate --campaign rot --job 0 --mode rekey
NEW_URI=$(key_uri "$S/active")
if [ "$NEW_URI" != "$OLD_URI" ] && [[ "$NEW_URI" == tpm2:blob=keys/* ]]; then
  pass "the rotated key is a new TPM key"
else
  fail "rotation key: $OLD_URI -> $NEW_URI"
fi
equal "the rotated certificate's key is the new TPM key's" \
  "$(tpm_pub "$(blob_of "$S/active")")" "$(cert_pub "$S/active/cert.pem")"
if signed_by_tpm "$S/active"; then pass "the TPM signs with the rotated certificate's key"; else
  fail "a TPM signature does not verify with the rotated certificate's key"
fi
equal "the job is confirmed" "$(sql "SELECT state FROM rotation_jobs WHERE ordinal = 0")" confirmed
# Keys no slot names any more are deleted with their slot: one blob per distinct key in use.
IN_USE=$(cat "$S"/slots/*/key.uri | sort -u | wc -l)
equal "only the keys slots name stay" "$(find "$S/keys" -name '*.tpm' | wc -l)" "$IN_USE"
check "renew --rekey: another new TPM key" "$AGENT" --state "$S" renew --rekey
equal "... whose certificate's key is the TPM's" \
  "$(tpm_pub "$(blob_of "$S/active")")" "$(cert_pub "$S/active/cert.pem")"
if [ -e "$B1" ]; then fail "the first key's blob outlived every slot naming it"; else
  pass "the first key is deleted once no slot names it"
fi
if no_tpm_leftovers; then pass "still nothing left in the TPM"; else fail "objects left in the TPM"; fi

# --- an orphaned key: a crash between making a key and writing its slot -----------------------
# What such a crash leaves: a blob in STATE/keys/ that no slot names (made here by openssl with
# the tpm2 provider, in the TPM the agent uses).
ORPHAN="$S/keys/ldevid-00000000deadbeef.tpm"
openssl genpkey -provider tpm2 -provider default -propquery '?provider=tpm2' -algorithm EC \
  -pkeyopt group:P-256 -out "$ORPHAN" 2>"$WORK/genpkey.err" || cat "$WORK/genpkey.err"
expect "an orphaned TPM key blob" "^-----BEGIN TSS2 PRIVATE KEY-----" "$ORPHAN"
check "recover" "$AGENT" --state "$S" recover
# It may be a key another command is making right now, until its slot is written.
check "a fresh one is kept" test -e "$ORPHAN"
touch -d '2 hours ago' "$ORPHAN"
check "recover, an hour later" "$AGENT" --state "$S" recover
expect "it says which key it deleted" "^recover: deleted the orphaned key tpm2:blob=keys/ldevid-00000000deadbeef.tpm" \
  "$WORK/out"
check "the orphan is deleted" test ! -e "$ORPHAN"
equal "the keys slots name stay" "$(find "$S/keys" -name '*.tpm' | wc -l)" \
  "$(cat "$S"/slots/*/key.uri | sort -u | wc -l)"
check "the device still renews with its TPM key" "$AGENT" --state "$S" renew
if no_tpm_leftovers; then pass "nothing left in the TPM"; else fail "objects left in the TPM"; fi

# --- a device whose IDevID key is in the TPM too ----------------------------------------------
# The device makes its IDevID key in its TPM and a CSR signed there (openssl with the tpm2
# provider); the factory certifies it from the CSR (mfg provision --csr-dir: no key in the
# folder); the device names the key in factory/key.uri. Its bootstrap authenticates with that
# key over mutual TLS, its working key is made in the same TPM, and it renews with it: every
# private key of the device is in the TPM.
S2="$WORK/state2"
mkdir -p "$S2/keys" "$WORK/csrs"
tpm_openssl() { openssl "$1" -provider tpm2 -provider default -propquery '?provider=tpm2' "${@:2}"; }
tpm_openssl genpkey -algorithm EC -pkeyopt group:P-256 -out "$S2/keys/idevid.tpm" \
  2>"$WORK/genpkey.err" || cat "$WORK/genpkey.err"
check "the device's CSR, signed in the TPM" tpm_openssl req -new -key "$S2/keys/idevid.tpm" \
  -subj "/CN=tpm-idevid" -out "$WORK/csrs/tpm-1.csr"
printf 'tpm-1,c0ffee02\n' >"$WORK/serials-tpm.csv"
check "mfg provision --csr-dir (the IDevID certified from the TPM's CSR)" \
  "$IOTPKI" mfg provision --dir "$CA" --serials "$WORK/serials-tpm.csv" --model sensor \
  --batch tpm --csr-dir "$WORK/csrs" --out "$WORK/tpm-batch"
cp -r "$WORK/tpm-batch/tpm-1" "$S2/factory"
echo "tpm2:blob=keys/idevid.tpm" >"$S2/factory/key.uri"
check "the factory folder holds no key" test ! -e "$S2/factory/key.pem"
equal "the IDevID's key is the TPM key's" "$(tpm_pub "$S2/keys/idevid.tpm")" \
  "$(cert_pub "$S2/factory/cert.pem")"
check "bootstrap --est: mutual TLS by the IDevID key in the TPM, the working key made there" \
  "$AGENT" --state "$S2" --key-store tpm2: bootstrap --server "$URL" --est
expect "the working key is a TPM key too" "^tpm2:blob=keys/ldevid-[0-9a-f]{16}\.tpm$" \
  "$S2/active/key.uri"
equal "the working certificate's key is the TPM's" \
  "$(tpm_pub "$S2/$(key_uri "$S2/active" | sed 's/^tpm2:blob=//')")" \
  "$(cert_pub "$S2/active/cert.pem")"
check "renew --rekey: mutual TLS with the TPM key, a new key in the TPM" \
  "$AGENT" --state "$S2" renew --rekey
check "renew with it" "$AGENT" --state "$S2" renew
check "recover keeps the IDevID key (factory/key.uri names it)" "$AGENT" --state "$S2" recover
check "... which is still there" test -e "$S2/keys/idevid.tpm"
if grep -rlE "BEGIN (EC )?PRIVATE KEY" "$S2"; then
  fail "a private key in the clear in the device's state directory"
else
  pass "no private key in the clear anywhere in the device's state directory, factory/ included"
fi
if no_tpm_leftovers; then pass "nothing left in the TPM at the end"; else fail "objects left in the TPM"; fi

stop_server
finish
