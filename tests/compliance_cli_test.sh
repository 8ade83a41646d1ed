#!/usr/bin/env bash
# `iotpki compliance report` on a real CA: JSON and HTML reports whose verdicts follow the fleet's
# state; an audit row edited with sqlite3 turns the audit finding to fail; bad input is one line
# and writes nothing. Usage: compliance_cli_test.sh PATH_TO_IOTPKI
source "$(dirname "$0")/lib.sh"
IOTPKI=$1
D="$WORK/ca"
export IOTPKI_PASSPHRASE="test passphrase 1"
export IOTPKI_KEY_PASSPHRASE="station transport passphrase"

verdict() { # verdict FILE ID: the verdict of finding ID in a JSON report
  tr -d '\n' <"$1" | grep -o "\"id\": \"$2\"[^}]*\"verdict\": \"[a-z-]*\"" | sed 's/.*"verdict": "//; s/"$//'
}

check "ca init" "$IOTPKI" ca init --dir "$D"
check "mfg provision" "$IOTPKI" mfg provision --dir "$D" --count 3 --serial-prefix A- --model m \
  --batch b1 --keys ca --out "$WORK/b1"
check "crl export" "$IOTPKI" crl export --dir "$D" --out "$WORK/crls.pem"
check "report json" "$IOTPKI" compliance report --dir "$D" --standard etsi-en-303-645 \
  --format json --out "$WORK/r.json"
expect "says what it wrote" "^wrote $WORK/r.json: [0-9]+ findings" "$WORK/out"
equal "CRLs current: pass" "$(verdict "$WORK/r.json" crl-freshness)" "pass"
equal "audit chain: pass" "$(verdict "$WORK/r.json" audit-chain)" "pass"
equal "CA keys in files: fail" "$(verdict "$WORK/r.json" ca-keys-hardware)" "fail"
expect "counts the fleet" '"devices": "3"' "$WORK/r.json"
equal "no shared key or id: pass" "$(verdict "$WORK/r.json" unique-credentials)" "pass"
expect "keys the CA made are counted" '"key made by the CA or server": "3 \(100.0%\)"' "$WORK/r.json"
equal "keys made off the device: manual evidence" "$(verdict "$WORK/r.json" keys-on-device)" \
  "needs-manual-evidence"
equal "nothing stranded: pass" "$(verdict "$WORK/r.json" stranded-devices)" "pass"
# Break one thing: the second device given the first one's key behind the store's back.
sqlite3 "$D/iotpki.db" "INSERT INTO certificates (serial, device_seq, profile, issuer, subject,
  not_before, not_after, key_fingerprint, der, status, created_at) SELECT 'ff01',
  (SELECT seq FROM devices ORDER BY seq LIMIT 1 OFFSET 1), profile, issuer, subject, not_before, not_after,
  key_fingerprint, der, status, created_at FROM certificates WHERE device_seq =
  (SELECT seq FROM devices ORDER BY seq LIMIT 1)"
check "report after a reused key" "$IOTPKI" compliance report --dir "$D" \
  --standard etsi-en-303-645 --format json --out "$WORK/r1.json"
equal "a reused key: fail" "$(verdict "$WORK/r1.json" unique-credentials)" "fail"
expect "the reused key is counted" '"public keys certified for more than one owner": "1"' \
  "$WORK/r1.json"
sqlite3 "$D/iotpki.db" "DELETE FROM certificates WHERE serial = 'ff01'"
check "report html" "$IOTPKI" compliance report --dir "$D" --standard nistir-8259a --out "$WORK/r.html"
expect "summary table first" "<h2>Summary</h2><table>|<h2>Summary</h2>" "$WORK/r.html"

sqlite3 "$D/iotpki.db" "UPDATE audit_log SET details = '{}' WHERE seq = 2"
check "report after an edited audit row" "$IOTPKI" compliance report --dir "$D" \
  --standard en-18031-1 --format json --out "$WORK/r2.json"
equal "audit chain: fail" "$(verdict "$WORK/r2.json" audit-chain)" "fail"

refuse "unknown standard" "--standard must be etsi-en-303-645" "$IOTPKI" compliance report \
  --dir "$D" --standard iso-27001 --out "$WORK/bad.json"
refuse "unknown format" "--format must be html or json" "$IOTPKI" compliance report --dir "$D" \
  --standard en-18031-1 --format pdf --out "$WORK/bad.json"
equal "refusals wrote nothing" "$(ls "$WORK"/bad.json 2>/dev/null)" ""
finish
