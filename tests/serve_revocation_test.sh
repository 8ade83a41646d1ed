#!/usr/bin/env bash
# Revocation end to end with the real CLI and curl against `iotpki serve`: `cert revoke` by
# device, serial and batch (dry run, resume), `device decommission`, `cert ls --revoked`,
# `device show`; the server refuses a revoked client certificate at once (403) while another
# device renews; a copied old LDevID is refused once its renewal has been used; a device whose
# LDevID was revoked for keyCompromise may not re-enter with its IDevID. Every revocation has its
# cert.revoke audit row, and the chain stays intact.
# Usage: serve_revocation_test.sh PATH_TO_IOTPKI
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"

est() {  # est OP CERT KEY CSR_FILE: POST an EST request
  http --cert "$2" --key "$3" -H 'Content-Type: application/pkcs10' --data-binary @"$4" \
    "$URL/.well-known/est/$1"
}
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f'; }

check "ca init" "$IOTPKI" ca init --dir "$CA" --org "Example Org"
provision rv 3
D1="$WORK/rv/rv-000001"
D2="$WORK/rv/rv-000002"
D3="$WORK/rv/rv-000003"
ID1=$(device_id "$D1")
ID2=$(device_id "$D2")
ID3=$(device_id "$D3")
start_server

# Two devices enroll.
csr_b64 "$WORK/l1.key" "/CN=$ID1" >"$WORK/l1.b64"
status "D1 enrolls" 200 "$(est simpleenroll "$D1/cert.pem" "$D1/key.plain.pem" "$WORK/l1.b64")"
p7_certs "$WORK/body" "$WORK/l1.pem"
csr_b64 "$WORK/l2.key" "/CN=$ID2" >"$WORK/l2.b64"
status "D2 enrolls" 200 "$(est simpleenroll "$D2/cert.pem" "$D2/key.plain.pem" "$WORK/l2.b64")"
p7_certs "$WORK/body" "$WORK/l2.pem"
L1=$(serial_of "$WORK/l1.pem")

# --- cert revoke --device, and the server's refusal ---------------------------------------------
check "cert revoke --device (keyCompromise)" "$IOTPKI" cert revoke --dir "$CA" --device "$ID1" \
  --reason keyCompromise --json
expect "the JSON names the LDevID and the reason" "\"serial\": \"$L1\"" "$WORK/out"
expect "... with reason keyCompromise" '"reason": "keyCompromise"' "$WORK/out"
equal "the store says revoked" "$(sql "SELECT status || ' ' || revocation_reason FROM certificates
  WHERE serial = '$L1'")" "revoked keyCompromise"
equal "a cert.revoke audit row names the serial, with reason and time" \
  "$(sql "SELECT json_extract(details, '$.reason') || ' ' ||
          (json_extract(details, '$.revoked_at') = (SELECT revoked_at FROM certificates
           WHERE serial = '$L1')) FROM audit_log WHERE action = 'cert.revoke' AND subject = '$L1'")" \
  "keyCompromise 1"
SUBJ1="/O=Example Org/CN=$ID1/serialNumber=rv-000001"
csr_b64 "$WORK/l1.key" "$SUBJ1" >"$WORK/re1.b64"
status "simplereenroll with the revoked LDevID" 403 \
  "$(est simplereenroll "$WORK/l1.pem" "$WORK/l1.key" "$WORK/re1.b64")"
expect "the reason says revoked (keyCompromise)" "revoked \(keyCompromise\)" "$WORK/body"
SUBJ2="/O=Example Org/CN=$ID2/serialNumber=rv-000002"
csr_b64 "$WORK/l2.key" "$SUBJ2" >"$WORK/re2.b64"
status "simplereenroll with a still-valid LDevID (D2)" 200 \
  "$(est simplereenroll "$WORK/l2.pem" "$WORK/l2.key" "$WORK/re2.b64")"
p7_certs "$WORK/body" "$WORK/l2b.pem"
csr_b64 "$WORK/l1b.key" "/CN=$ID1" >"$WORK/l1b.b64"
status "D1 may not re-enter with its IDevID after keyCompromise" 403 \
  "$(est simpleenroll "$D1/cert.pem" "$D1/key.plain.pem" "$WORK/l1b.b64")"
expect "the reason names keyCompromise" "keyCompromise" "$WORK/body"

# --- renewal bound to the current LDevID -------------------------------------------------------
status "D2 uses its renewal" 200 \
  "$(est simplereenroll "$WORK/l2b.pem" "$WORK/l2.key" "$WORK/re2.b64")"
status "the copied old LDevID of D2 is refused" 403 \
  "$(est simplereenroll "$WORK/l2.pem" "$WORK/l2.key" "$WORK/re2.b64")"
expect "... as superseded" "revoked \(superseded\)" "$WORK/body"

# --- bad input: one line, nothing written -------------------------------------------------------
before=$(sql "SELECT COUNT(*) FROM audit_log")
refuse "revoking twice is refused" "already revoked \(keyCompromise" \
  "$IOTPKI" cert revoke --dir "$CA" --serial "$L1" --reason superseded
refuse "an unknown reason is refused" "unknown revocation reason 'hold'.*keyCompromise" \
  "$IOTPKI" cert revoke --dir "$CA" --serial "$L1" --reason hold
refuse "--serial with --device is refused" "exactly one of --serial" \
  "$IOTPKI" cert revoke --dir "$CA" --serial "$L1" --device "$ID2" --reason superseded
refuse "an unknown serial is refused" "not found" \
  "$IOTPKI" cert revoke --dir "$CA" --serial abcdef --reason superseded
refuse "cert ls without --revoked" "add --revoked" "$IOTPKI" cert ls --dir "$CA"
refuse "a bad --since" "--since 'yesterday'" "$IOTPKI" cert ls --dir "$CA" --revoked --since yesterday
equal "the refusals wrote nothing" "$(sql "SELECT COUNT(*) FROM audit_log")" "$before"

# --- listing --------------------------------------------------------------------------------------
check "cert ls --revoked" "$IOTPKI" cert ls --dir "$CA" --revoked
expect "lists the revoked LDevID with its reason" "keyCompromise .*$L1" "$WORK/out"
check "cert ls --revoked --since 1h" "$IOTPKI" cert ls --dir "$CA" --revoked --since 1h --json
expect "JSON too" "\"serial\": \"$L1\"" "$WORK/out"
check "cert ls --revoked --since 2100-01-01" "$IOTPKI" cert ls --dir "$CA" --revoked \
  --since 2100-01-01
expect "nothing revoked in the future" "no revoked certificates" "$WORK/out"
check "device show" "$IOTPKI" device show --dir "$CA" "$ID1"
expect "device show names the revocation" "revoked .*keyCompromise" "$WORK/out"

# --- decommission ---------------------------------------------------------------------------------
check "device decommission" "$IOTPKI" device decommission --dir "$CA" "$ID3"
equal "decommissioned, every certificate revoked (cessationOfOperation)" \
  "$(sql "SELECT d.state || ' ' || COUNT(*) FROM devices d JOIN certificates c ON
          c.device_seq = d.seq WHERE d.device_id = X'$ID3' AND c.revocation_reason =
          'cessationOfOperation'")" "decommissioned 1"
csr_b64 "$WORK/l3.key" "/CN=$ID3" >"$WORK/l3.b64"
status "the decommissioned device cannot enroll" 403 \
  "$(est simpleenroll "$D3/cert.pem" "$D3/key.plain.pem" "$WORK/l3.b64")"
refuse "decommissioning twice is refused" "decommissioned already" \
  "$IOTPKI" device decommission --dir "$CA" "$ID3"

# --- a whole batch: dry run, groups, resume ----------------------------------------------------
provision lk 5
revoked=$(sql "SELECT COUNT(*) FROM certificates WHERE status = 'revoked'")
check "batch dry run" "$IOTPKI" cert revoke --dir "$CA" --batch lk --reason keyCompromise --dry-run
expect "says how many" "would revoke 5 certificates of 5 devices" "$WORK/out"
equal "the dry run changed nothing" \
  "$(sql "SELECT COUNT(*) FROM certificates WHERE status = 'revoked'")" "$revoked"
LK1=$(device_id "$WORK/lk/lk-000001")
check "one device of the batch revoked first (an interrupted run)" "$IOTPKI" cert revoke \
  --dir "$CA" --device "$LK1" --all --reason keyCompromise
check "batch revoke, 2 devices per transaction" "$IOTPKI" cert revoke --dir "$CA" --batch lk \
  --reason keyCompromise --group 2
expect "revoked the rest, skipped the one done" "revoked 4 certificates of 5 devices \(1 were" \
  "$WORK/out"
check "batch revoke again (resume)" "$IOTPKI" cert revoke --dir "$CA" --batch lk \
  --reason keyCompromise --json
expect "nothing left to do" '"certificates_revoked": 0' "$WORK/out"
equal "one cert.revoke row per revoked certificate" \
  "$(sql "SELECT COUNT(*) FROM audit_log WHERE action = 'cert.revoke'")" \
  "$(sql "SELECT COUNT(*) FROM certificates WHERE status = 'revoked'")"
check "audit chain intact" "$IOTPKI" audit verify --dir "$CA"
stop_server
finish
