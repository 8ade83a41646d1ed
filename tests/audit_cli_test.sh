#!/usr/bin/env bash
# The audit log an auditor can trust, end to end with the sqlite3 CLI as the attacker's tool:
# anchors (`audit head`, `audit verify --expect`), signed checkpoints, and the cross-check of the
# certificates table against the log. Usage: audit_cli_test.sh PATH_TO_IOTPKI
source "$(dirname "$0")/lib.sh"
IOTPKI=$1
D="$WORK/ca"
export IOTPKI_PASSPHRASE="test passphrase 1"
DB="$D/iotpki.db"

# recompute_chain FROM: rewrites prev_hash and hash of every row from seq FROM on, as an attacker
# with write access to the database would after editing a row (audit.h's layout, openssl dgst).
recompute_chain() {
  local seq last prev row hex
  last=$(sqlite3 "$DB" "SELECT MAX(seq) FROM audit_log")
  prev=$(sqlite3 "$DB" "SELECT COALESCE((SELECT hex(hash) FROM audit_log WHERE seq = $1 - 1),
                                        '$(printf '0%.0s' {1..64})')")
  for ((seq = $1; seq <= last; seq++)); do
    row=$(sqlite3 -separator ' ' "$DB" "SELECT time,
      printf('%08x', length(CAST(actor AS BLOB))) || hex(actor),
      printf('%08x', length(CAST(action AS BLOB))) || hex(action),
      printf('%08x', length(CAST(subject AS BLOB))) || hex(subject),
      printf('%08x', length(CAST(details AS BLOB))) || hex(details)
      FROM audit_log WHERE seq = $seq")
    set -- $row "$@"
    hex="$prev$(printf '%016x%016x' "$seq" "$1")$2$3$4$5"
    shift 5
    prev=$(printf "$(printf '%s' "$hex" | sed 's/../\\x&/g')" | openssl dgst -sha256 -r | cut -c1-64)
    sqlite3 "$DB" "UPDATE audit_log SET prev_hash = (SELECT hash FROM audit_log WHERE seq = $seq - 1),
                   hash = X'$prev' WHERE seq = $seq"
  done
  sqlite3 "$DB" "UPDATE audit_log SET prev_hash = zeroblob(32) WHERE seq = 1"
}

check "ca init" "$IOTPKI" ca init --dir "$D" --org "Audit Org"
issue() { # issue SERIAL PROFILE
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/k.pem" \
    -subj /CN=x -out "$WORK/req.csr" 2>/dev/null
  "$IOTPKI" cert issue --dir "$D" --csr "$WORK/req.csr" --profile "$2" --serial "$1" \
    --fingerprint 00112233 --out "$WORK/cert-$1-$2.pem"
}
for i in 1 2 3; do check "issue SN-$i" issue "SN-$i" idevid; done

# --- anchors ---------------------------------------------------------------------------------
check "audit head" "$IOTPKI" audit head --dir "$D"
ANCHOR=$(cat "$WORK/out")
expect "audit head prints SEQ:HASH" "^[0-9]+:[0-9a-f]{64}$" "$WORK/out"
HEAD_SEQ=${ANCHOR%%:*}
equal "audit head is the last row" "$HEAD_SEQ" "$(sqlite3 "$DB" "SELECT MAX(seq) FROM audit_log")"
equal "audit head's hash is the row's" "${ANCHOR#*:}" \
  "$(sqlite3 "$DB" "SELECT lower(hex(hash)) FROM audit_log WHERE seq = $HEAD_SEQ")"
check "audit verify --expect the head" "$IOTPKI" audit verify --dir "$D" --expect "$ANCHOR"
expect "verify says the anchor matched" "1 anchor\(s\) match" "$WORK/out"
refuse "a malformed anchor is a usage error" "SEQ:HASH" "$IOTPKI" audit verify --dir "$D" --expect 3-abc
refuse "an anchor past the end: rows were cut off" "ends at row" "$IOTPKI" audit verify --dir "$D" \
  --expect "$((HEAD_SEQ + 5)):${ANCHOR#*:}"

cp "$DB" "$WORK/before-attack.db"
sqlite3 "$DB" "UPDATE audit_log SET details = replace(details, 'SN-2', 'SN-9') WHERE seq = 4"
refuse "an edited row breaks the chain" "row 4" "$IOTPKI" audit verify --dir "$D"
recompute_chain 4
check "the attacker's recomputed chain verifies without an anchor" "$IOTPKI" audit verify --dir "$D"
refuse "the anchor finds the recomputed chain" "row $HEAD_SEQ.*anchored" \
  "$IOTPKI" audit verify --dir "$D" --expect "$ANCHOR"
cp "$WORK/before-attack.db" "$DB"

# --- signed checkpoints ------------------------------------------------------------------------
expect "the audit key's public half is published" "BEGIN PUBLIC KEY" "$D/certs/audit-key.pem"
check "audit checkpoint" "$IOTPKI" audit checkpoint --dir "$D"
expect "checkpoint names what it signed" "signed checkpoint of $ANCHOR" "$WORK/out"
equal "the checkpoint is a row of the log" \
  "$(sqlite3 "$DB" "SELECT action || ' ' || subject FROM audit_log ORDER BY seq DESC LIMIT 1")" \
  "audit.checkpoint $HEAD_SEQ"
check "audit checkpoint --min-rows: not needed right after one" \
  "$IOTPKI" audit checkpoint --dir "$D" --min-rows 100
expect "no checkpoint needed" "no checkpoint needed" "$WORK/out"
IOTPKI_AUDIT_PASSPHRASE=wrong-passphrase refuse "audit checkpoint with a wrong audit passphrase" \
  "passphrase" "$IOTPKI" audit checkpoint --dir "$D"
check "audit verify checks the checkpoint" "$IOTPKI" audit verify --dir "$D"
expect "verify counts the checkpoint" "1 signed checkpoint\(s\), the last at row $HEAD_SEQ" "$WORK/out"
check "audit verify with the auditor's copy of the audit key" \
  "$IOTPKI" audit verify --dir "$D" --audit-key "$D/certs/audit-key.pem"
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkey -pubout >"$WORK/other.pem"
refuse "a checkpoint does not verify with another key" "signature does not verify" \
  "$IOTPKI" audit verify --dir "$D" --audit-key "$WORK/other.pem"

cp "$DB" "$WORK/before-attack.db"
sqlite3 "$DB" "UPDATE audit_log SET details = replace(details, 'SN-2', 'SN-9') WHERE seq = 4"
recompute_chain 4
refuse "a recomputed chain fails the signed checkpoint, without any anchor" \
  "checkpoint at row $((HEAD_SEQ + 1)).*row $HEAD_SEQ no longer has the signed hash" \
  "$IOTPKI" audit verify --dir "$D"
cp "$WORK/before-attack.db" "$DB"

# --- certificates against the log -----------------------------------------------------------------
check "audit verify cross-checks the certificates" "$IOTPKI" audit verify --dir "$D"
expect "the certificates match" "certificates match the audit log: 6 certificates, 0 revoked" "$WORK/out"
SERIAL2=$(openssl x509 -in "$WORK/cert-SN-2-idevid.pem" -noout -serial | cut -d= -f2 | tr A-F a-f)
sqlite3 "$DB" "UPDATE certificates SET status = 'revoked', revoked_at = 1,
               revocation_reason = 'keyCompromise' WHERE serial = '$SERIAL2'"
refuse "a revocation the log never made is reported" "1 certificates are revoked; the audit log revoked 0" \
  "$IOTPKI" audit verify --dir "$D"
cp "$WORK/before-attack.db" "$DB"
sqlite3 "$DB" "DELETE FROM certificates WHERE serial = '$SERIAL2'"
refuse "a removed certificate row is reported" "$SERIAL2 is not in the certificates table" \
  "$IOTPKI" audit verify --dir "$D"
cp "$WORK/before-attack.db" "$DB"

finish
