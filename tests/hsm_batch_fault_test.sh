#!/usr/bin/env bash
# Issue 16: a factory batch whose CA key is in a real SoftHSM2 token (private SOFTHSM2_CONF, token
# made by this test) loses the token mid-batch. The token's removal is injected by the PKCS#11
# key store's test hook (IOTPKI_TEST_PKCS11_REMOVE_AFTER=N: every C_Sign after the N-th fails with
# CKR_DEVICE_REMOVED, test builds only): the batch stops with one line, the store, the folders
# and the manifest agree (nothing issued without a record), and --resume completes the batch once
# the token is back. Everything runs without IOTPKI_PASSPHRASE: token keys need only the PIN.
# Usage: hsm_batch_fault_test.sh PATH_TO_IOTPKI
source "$(dirname "$0")/lib.sh"
IOTPKI=$1
CA="$WORK/ca"
OUT="$WORK/batch"
unset IOTPKI_PASSPHRASE IOTPKI_MANUFACTURING_PASSPHRASE IOTPKI_PKCS11_MODULE
unset IOTPKI_TEST_PKCS11_REMOVE_AFTER
# The bootstrap master is a file (docs/hardware-keys.md); it keeps its own passphrase.
export IOTPKI_BOOTSTRAP_PASSPHRASE="bootstrap passphrase 1"
export IOTPKI_KEY_PASSPHRASE="device transport passphrase"
export IOTPKI_PKCS11_PIN="ca-token-pin-1"
mkdir -p "$WORK/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$WORK/tokens" >"$WORK/softhsm2.conf"
export SOFTHSM2_CONF="$WORK/softhsm2.conf"
softhsm2-util --init-token --free --label iotpki-ca --pin "$IOTPKI_PKCS11_PIN" \
  --so-pin "so-pin-12345" >"$WORK/init-token.out" 2>&1 || {
  echo "softhsm2-util --init-token failed (scripts/setup.sh installs softhsm2)" >&2
  cat "$WORK/init-token.out" >&2
  exit 1
}
sql() { sqlite3 "$CA/iotpki.db" "$1"; }
N=12
batch() {
  "$IOTPKI" mfg provision --dir "$CA" --count "$N" --serial-prefix f- --model sensor --batch f \
    --keys ca --group-size 4 --workers 2 --out "$OUT" "$@"
}
faulted() { (export IOTPKI_TEST_PKCS11_REMOVE_AFTER=8 && batch); }
issued() { sql "SELECT COUNT(*) FROM devices WHERE batch = 'f'"; }
folders() { find "$OUT" -mindepth 1 -maxdepth 1 -name 'f-*' -type d | wc -l | tr -d ' '; }
listed() { wc -l <"$OUT/manifest.jsonl" | tr -d ' '; }

check "ca init --key-store pkcs11: without IOTPKI_PASSPHRASE" "$IOTPKI" ca init --dir "$CA" \
  --org "Example Org" --key-store "pkcs11:token=iotpki-ca"

# --- the token goes away after a few signatures ------------------------------------------------
# 8 signatures: the first group of 4 (and its audit) commits, a later device's IDevID fails.
if faulted >"$WORK/fault.out" 2>"$WORK/fault.err"; then
  fail "a token lost mid-batch fails the batch (it succeeded)"
else
  pass "a token lost mid-batch fails the batch (exit $?)"
fi
# stderr also carries the progress line; the error is one line of its own.
equal "one error line" "$(grep -c '^iotpki:' "$WORK/fault.err")" 1
expect "it names the token, what happened and --resume" \
  "^iotpki: .*token 'iotpki-ca' went away while signing.*--resume.*CKR_DEVICE_REMOVED" \
  "$WORK/fault.err"
expect "the error says how far the batch got" "the batch stopped with [0-9]+ of $N devices" \
  "$WORK/fault.err"
done1=$(issued)
if [ "$done1" -gt 0 ] && [ "$done1" -lt "$N" ]; then
  pass "some devices were issued before the token went away ($done1 of $N)"
else
  fail "expected a partial batch, the store has $done1 of $N"
fi
equal "every device in the store has a finished folder" "$(folders)" "$done1"
equal "and a manifest line" "$(listed)" "$done1"
equal "one IDevID per device in the store, none without its device" \
  "$(sql "SELECT COUNT(*) FROM certificates WHERE profile = 'idevid'")" "$done1"
bad=0
for d in "$OUT"/f-*/; do
  openssl verify -CAfile "$CA/certs/root.pem" -untrusted "$CA/certs/manufacturing.pem" \
    "$d/cert.pem" >/dev/null 2>&1 || bad=$((bad + 1))
  serial=$(basename "$d")
  [ "$(sql "SELECT COUNT(*) FROM devices WHERE serial = '$serial'")" = 1 ] || bad=$((bad + 1))
done
equal "each folder's IDevID verifies (openssl) and its serial is in the store" "$bad" 0
refuse "without --resume the interrupted batch is refused" "--resume" batch

# --- the token is back: --resume completes the batch -------------------------------------------
check "--resume completes the batch once the token is back" batch --resume
equal "all devices in the store" "$(issued)" "$N"
equal "all folders" "$(folders)" "$N"
equal "all manifest lines, each device once" "$(cut -d'"' -f4 "$OUT/manifest.jsonl" |
  sort -u | wc -l | tr -d ' ')" "$N"
bad=0
for d in "$OUT"/f-*/; do
  openssl verify -CAfile "$CA/certs/root.pem" -untrusted "$CA/certs/manufacturing.pem" \
    "$d/cert.pem" >/dev/null 2>&1 || bad=$((bad + 1))
done
equal "every IDevID verifies to the root (openssl verify)" "$bad" 0
check "audit chain verifies" "$IOTPKI" audit verify --dir "$CA"

# --- the station's secure element fills up mid-batch ------------------------------------------
# IOTPKI_TEST_PKCS11_FULL_AFTER=N: every key pair generated after the N-th fails with
# CKR_DEVICE_MEMORY (SoftHSM2 itself has no size limit). Device keys made in the token, CSRs
# signed by it; the batch stops with one line naming the token, and --resume finishes it once
# the token has room (here: the variable unset).
softhsm2-util --init-token --free --label station-se --pin se-pin-3 --so-pin "so-pin-12345" \
  >"$WORK/init-se.out" 2>&1 || fail "softhsm2-util --init-token station-se"
printf 'se-pin-3\n' >"$WORK/se.pin"
SE="pkcs11:token=station-se?pin-source=file:$WORK/se.pin"
SE_OUT="$WORK/se"
MODULE=/usr/lib/softhsm/libsofthsm2.so
printf 'se-%s,5e0000%s\n' 1 01 2 02 3 03 4 04 5 05 6 06 >"$WORK/se.csv"
se_batch() {
  "$IOTPKI" mfg provision --dir "$CA" --serials "$WORK/se.csv" --model sensor --batch se \
    --secure-element "$SE" --group-size 2 --workers 1 --out "$SE_OUT" "$@"
}
se_issued() { sql "SELECT COUNT(*) FROM devices WHERE batch = 'se'"; }
se_keys() {
  pkcs11-tool --module "$MODULE" --token-label station-se --login --pin se-pin-3 \
    --list-objects --type privkey 2>/dev/null | grep -c 'Private Key Object'
}
# Token keys are labelled with their device_id: --count draws the fingerprints anew on every
# run, so a --resume would not find the interrupted run's keys. Refused before anything is made.
refuse "--secure-element with --count is refused, naming --serials" \
  "--secure-element needs each device's real fingerprint: give --serials FILE" \
  "$IOTPKI" mfg provision --dir "$CA" --count 2 --serial-prefix sc- --model sensor --batch sc \
  --secure-element "$SE" --out "$WORK/sc"
equal "the refusal made no key" "$(se_keys)" 0
if (export IOTPKI_TEST_PKCS11_FULL_AFTER=3 && se_batch) >"$WORK/se.out" 2>"$WORK/se.err"; then
  fail "a full secure element fails the batch (it succeeded)"
else
  pass "a full secure element fails the batch (exit $?)"
fi
equal "one error line" "$(grep -c '^iotpki:' "$WORK/se.err")" 1
expect "it names the token, that it is full and what to do" \
  "^iotpki: .*PKCS#11 token 'station-se' is full \(CKR_DEVICE_MEMORY\); free or add one" \
  "$WORK/se.err"
se_done=$(se_issued)
if [ "$se_done" -ge 2 ] && [ "$se_done" -lt 6 ]; then
  pass "the groups before the full token were issued ($se_done of 6)"
else
  fail "expected a partial secure-element batch, the store has $se_done of 6"
fi
equal "three keys in the token: the generated ones, none for a device the token refused" \
  "$(se_keys)" 3
equal "every device in the store has a manifest line" "$(wc -l <"$SE_OUT/manifest.jsonl" |
  tr -d ' ')" "$se_done"
check "--resume completes the batch once the token has room" se_batch --resume
equal "six devices of the batch in the store" "$(se_issued)" 6
equal "six device keys in the token, none twice" "$(se_keys)" 6
equal "six manifest lines, each device once" "$(cut -d'"' -f4 "$SE_OUT/manifest.jsonl" |
  sort -u | wc -l | tr -d ' ')" 6
check "audit chain verifies after the full token" "$IOTPKI" audit verify --dir "$CA"

# --- a manufacturing key in a file still needs its passphrase ----------------------------------
check "a file-key CA (with IOTPKI_PASSPHRASE)" env IOTPKI_PASSPHRASE="file passphrase 1" \
  "$IOTPKI" ca init --dir "$WORK/fileca"
refuse "mfg provision of a file-key CA without a passphrase names what is missing" \
  "no passphrase for the manufacturing key" "$IOTPKI" mfg provision --dir "$WORK/fileca" \
  --count 1 --serial-prefix x- --model sensor --batch x --keys ca --out "$WORK/x"

finish
