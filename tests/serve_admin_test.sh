#!/usr/bin/env bash
# The dashboard's admin listener with curl as the client: `ca init` makes the admin CA, `admin
# issue` the operators; only an operator certificate of the admin CA is let in (no certificate or
# a device's: 403), the JSON figures equal the CLI's, and an action needs the operator role, a
# POST with the session's CSRF token and no foreign Origin; each is an audit row naming the
# operator (sqlite3); `admin revoke` shuts an operator out from the next request on.
# Usage: serve_admin_test.sh PATH_TO_IOTPKI
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"
source "$(dirname "$0")/admin_lib.sh"

admin_fixture
equal "ca init made the admin CA (openssl)" \
  "$(openssl x509 -in "$CA/certs/admin-ca.pem" -noout -ext basicConstraints | tail -1 | tr -d ' ')" \
  "CA:TRUE,pathlen:0"
equal "operator key is 0600" "$(stat -c %a "$WORK/ops/alice.key")" "600"
equal "PKCS#12 is 0600" "$(stat -c %a "$WORK/ops/alice.p12")" "600"
check "openssl opens the PKCS#12" openssl pkcs12 -in "$WORK/ops/alice.p12" -noout \
  -passin env:IOTPKI_OPERATOR_PASSPHRASE
expect "role in the subject OU" "OU ?= ?operator" \
  <(openssl x509 -in "$WORK/ops/alice.pem" -noout -subject)
check "operator verifies under the admin CA (openssl)" openssl verify -CAfile \
  "$CA/certs/admin-ca.pem" -purpose sslclient "$WORK/ops/alice.pem"
refuse "bad role" "role must be read-only or operator" "$IOTPKI" admin issue --dir "$CA" \
  --name carol --role root --out-dir "$WORK/ops"
refuse "same name twice" "exists already" "$IOTPKI" admin issue --dir "$CA" --name alice \
  --role operator --out-dir "$WORK/ops"
refuse "admin init twice" "admin CA exists already" "$IOTPKI" admin init --dir "$CA"
equal "admin.issue audit rows" "$(sql "SELECT COUNT(*) FROM audit_log WHERE action = 'admin.issue'")" "2"

start_admin_server
admin() { # admin WHO ARGS...: curl as operator WHO
  local who=$1
  shift
  http --cert "$WORK/ops/$who.pem" --key "$WORK/ops/$who.plain.key" "$@"
}
dev=$(ls -d "$WORK"/b1/*/ | head -1)

status "no certificate: 403" 403 "$(http "$ADMIN_URL/admin/api/v1/overview")"
status "a device certificate: 403" 403 \
  "$(http --cert "$dev/cert.pem" --key "$dev/key.plain.pem" "$ADMIN_URL/admin/api/v1/overview")"
status "a device certificate gets no page: 403" 403 \
  "$(http --cert "$dev/cert.pem" --key "$dev/key.plain.pem" "$ADMIN_URL/admin/")"
status "session" 200 "$(admin bob "$ADMIN_URL/admin/api/v1/session")"
expect "session names bob read-only" '"operator":"bob","role":"read-only"' "$WORK/body"
status "overview" 200 "$(admin bob "$ADMIN_URL/admin/api/v1/overview")"
total=$("$IOTPKI" device count --dir "$CA")
expect "overview total equals iotpki device count ($total)" "\"total\":$total," "$WORK/body"
status "expiry" 200 "$(admin bob "$ADMIN_URL/admin/api/v1/expiry?days=365")"
status "bad days: 400" 400 "$(admin bob "$ADMIN_URL/admin/api/v1/expiry?days=9999")"
status "campaigns" 200 "$(admin bob "$ADMIN_URL/admin/api/v1/campaigns")"
expect "campaign spring running with 6 jobs" '"name":"spring","state":"running".*"jobs":6' \
  "$WORK/body"
status "device by serial" 200 "$(admin bob "$ADMIN_URL/admin/api/v1/devices/$(basename "$dev")")"
expect "device page lists its birth certificate" '"slot":"birth"' "$WORK/body"
status "status" 200 "$(admin bob "$ADMIN_URL/admin/api/v1/status")"
expect "the operational CRL is published" '"ca":"operational","revoked":0,"crl":\{"number"' \
  "$WORK/body"
status "page" 200 "$(admin bob "$ADMIN_URL/admin/")"
expect "the page is the dashboard" "<title>iotpki dashboard</title>" "$WORK/body"

# --- actions ---
pause="$ADMIN_URL/admin/api/v1/campaigns/spring/pause"
admin alice "$ADMIN_URL/admin/api/v1/session" >/dev/null
tok=$(sed -n 's/.*"csrf_token":"\([0-9a-f]*\)".*/\1/p' "$WORK/body")
bob_tok=$(admin bob "$ADMIN_URL/admin/api/v1/session" >/dev/null;
  sed -n 's/.*"csrf_token":"\([0-9a-f]*\)".*/\1/p' "$WORK/body")
audit_rows() { sql "SELECT COUNT(*) FROM audit_log"; }
before=$(audit_rows)
status "no state change by GET" 405 "$(admin alice "$pause")"
status "read-only role: 403" 403 "$(admin bob -X POST -H 'Content-Type: application/json' \
  -H "X-CSRF-Token: $bob_tok" --data '{}' "$pause")"
status "no token: 403" 403 "$(admin alice -X POST -H 'Content-Type: application/json' \
  --data '{}' "$pause")"
status "another operator's token: 403" 403 "$(admin alice -X POST -H 'Content-Type: application/json' \
  -H "X-CSRF-Token: $bob_tok" --data '{}' "$pause")"
status "foreign Origin: 403" 403 "$(admin alice -X POST -H 'Content-Type: application/json' \
  -H "X-CSRF-Token: $tok" -H 'Origin: https://evil.example' --data '{}' "$pause")"
status "cross-site fetch: 403" 403 "$(admin alice -X POST -H 'Content-Type: application/json' \
  -H "X-CSRF-Token: $tok" -H 'Sec-Fetch-Site: cross-site' --data '{}' "$pause")"
status "a form post: 415" 415 "$(admin alice -X POST -H "X-CSRF-Token: $tok" --data 'a=b' "$pause")"
equal "refusals changed nothing" "$(audit_rows)" "$before"
check "campaign still running" "$IOTPKI" campaign status --dir "$CA" spring
expect "campaign status says running" "^campaign spring: running" "$WORK/out"
status "pause" 200 "$(admin alice -X POST -H 'Content-Type: application/json' \
  -H "X-CSRF-Token: $tok" -H "Origin: $ADMIN_URL" -H 'Sec-Fetch-Site: same-origin' \
  --data '{}' "$pause")"
check "campaign status" "$IOTPKI" campaign status --dir "$CA" spring
expect "campaign status says paused" "^campaign spring: paused" "$WORK/out"
equal "audit row names the operator (sqlite3)" "$(sql "SELECT actor || ' ' || action FROM
  audit_log ORDER BY seq DESC LIMIT 1")" "admin:alice campaign.pause"

serial=$(sql "SELECT serial FROM certificates WHERE profile = 'idevid' ORDER BY serial LIMIT 1")
status "revoke" 200 "$(admin alice -X POST -H 'Content-Type: application/json' \
  -H "X-CSRF-Token: $tok" --data '{"reason":"keyCompromise"}' \
  "$ADMIN_URL/admin/api/v1/certificates/$serial/revoke")"
equal "revoked in the store (sqlite3)" "$(sql "SELECT status || ' ' || revocation_reason FROM
  certificates WHERE serial = '$serial'")" "revoked keyCompromise"
status "revocations" 200 "$(admin bob "$ADMIN_URL/admin/api/v1/revocations")"
expect "revocations list it" "\"serial\":\"$serial\"" "$WORK/body"

# --- what issue 18 added last: issuance per day, a device's audit rows, operator revocation ---
status "overview again" 200 "$(admin bob "$ADMIN_URL/admin/api/v1/overview")"
issued=$(sql "SELECT COUNT(*) FROM certificates WHERE created_at >= (strftime('%s','now') / 86400) * 86400")
expect "issued today equals the certificates recorded today (sqlite3: $issued)" \
  "\"issued_per_day\":\[.*\"n\":$issued,\"by_profile\"" "$WORK/body"
dev_id=$(sql "SELECT lower(hex(device_id)) FROM devices WHERE serial = '$(basename "$dev")'")
status "device audit rows" 200 "$(admin bob "$ADMIN_URL/admin/api/v1/devices/$dev_id/audit?limit=5")"
expect "the device's audit rows are its own" "\"device_id\":\"$dev_id\",\"audit\":\[" "$WORK/body"
refuse "revoke needs --name or --serial" "name one operator" "$IOTPKI" admin revoke --dir "$CA"
refuse "revoke an unknown operator" "no operator certificate was issued to 'carol'" \
  "$IOTPKI" admin revoke --dir "$CA" --name carol
check "admin revoke --name bob" "$IOTPKI" admin revoke --dir "$CA" --name bob
expect "it says what it revoked" "revoked operator certificate [0-9a-f]* of bob" "$WORK/out"
status "bob's revoked certificate: 403 at once" 403 "$(admin bob "$ADMIN_URL/admin/api/v1/session")"
expect "the refusal says why" "was revoked" "$WORK/body"
status "alice is still let in" 200 "$(admin alice "$ADMIN_URL/admin/api/v1/session")"
equal "admin.revoke audit row (sqlite3)" "$(sql "SELECT action FROM audit_log ORDER BY seq DESC
  LIMIT 1")" "admin.revoke"
refuse "revoke bob twice" "revoked already" "$IOTPKI" admin revoke --dir "$CA" --name bob

stop_server
no_secrets "no secret in the server's log" "$WORK/serve.err" "$IOTPKI_OPERATOR_PASSPHRASE" "$tok"
finish
