#!/usr/bin/env bash
# Over-the-air rotation against a real `iotpki serve`, without MQTT: `iotpki-agent rotate`
# re-enrolls, writes the pending slot, confirms with the NEW certificate over mutual TLS, then
# switches `active`. curl plays the device for every refusal of the confirmation endpoint. The
# agent is stopped (SIGSTOP, a test hook) at each step of a rotation and killed with SIGKILL;
# after a restart the device works with its active certificate (curl with it), and the job in
# the store agrees. A forced install failure rolls back and is retried later.
# Usage: serve_rotation_test.sh PATH_TO_IOTPKI PATH_TO_IOTPKI_AGENT
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"

check "ca init" "$IOTPKI" ca init --dir "$CA" --org "Example Org"
provision fleet 9
start_server
S=()
IDS=()
for n in 1 2 3 4 5 6 7 8 9; do
  S[n]="$WORK/state$n"
  mkdir -p "${S[n]}"
  cp -r "$WORK/fleet/fleet-00000$n" "${S[n]}/factory"
  "$AGENT" --state "${S[n]}" bootstrap --server "$URL" --est >/dev/null 2>"$WORK/err" || {
    cat "$WORK/err" >&2
    exit 1
  }
  IDS[n]=$(device_id "${S[n]}/factory")
done
# Job n-1 is device n's.
for n in 1 2 3 4 5 6 7 8 9; do echo "${IDS[n]}"; done >"$WORK/ids.txt"
check "campaign over the nine devices" \
  "$IOTPKI" campaign create --dir "$CA" --name rot --devices "$WORK/ids.txt" --retry-after 60

job_state() { sql "SELECT state FROM rotation_jobs WHERE ordinal = $1"; }
job_field() { sql "SELECT $2 FROM rotation_jobs WHERE ordinal = $1"; }
serial_of() { openssl x509 -in "$1" -noout -serial | sed 's/serial=//' | tr 'A-F' 'a-f'; }
cert_status() { sql "SELECT status FROM certificates WHERE serial = '$1'"; }
# answer STATE_OR_CERTDIR DEVICE_ID BODY [curl args]: POST the rotation answer with DIR's
# cert.pem and key.pem; prints the status.
answer() {
  local dir=$1 id=$2 body=$3
  shift 3
  http --cert "$dir/cert.pem" --key "$dir/key.pem" -H "Content-Type: ${CT:-application/json}" \
    -d "$body" "$@" "$URL/api/v1/devices/$id/rotation"
}
# works N: device N's active certificate authenticates and is not revoked (the endpoint then
# looks for the campaign named: 404), over mutual TLS with curl.
works() {
  local code
  code=$(answer "${S[$1]}/active" "${IDS[$1]}" '{"campaign":"no-such","job":0,"status":"installed"}')
  if [ "$code" = 404 ] && grep -q "no campaign" "$WORK/body"; then return 0; fi
  echo "device $1: HTTP $code $(cat "$WORK/body")" >&2
  return 1
}
# stop_at N STEP: runs device N's rotation until the agent stops itself at STEP, then SIGKILL.
stop_at() {
  local n=$1 step=$2 pid state=""
  IOTPKI_AGENT_TEST_STOP_AT=$step "$AGENT" --state "${S[n]}" rotate --campaign rot \
    --job $((n - 1)) --mode rekey >"$WORK/agent.out" 2>"$WORK/agent.err" &
  pid=$!
  for _ in $(seq 300); do
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)
    [ "$state" = T ] && break
    [ -z "$state" ] && break
    sleep 0.05
  done
  if [ "$state" != T ]; then
    fail "device $n did not stop at $step"
    cat "$WORK/agent.out" "$WORK/agent.err" >&2
    return 1
  fi
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null
  pass "device $n killed (-9) at $step"
}

# --- a rotation end to end -----------------------------------------------------------------------
OLD1=$(serial_of "${S[1]}/active/cert.pem")
OLD_PUB1=$(openssl x509 -in "${S[1]}/active/cert.pem" -noout -pubkey)
check "rotate (rekey) with the one-shot command" \
  "$AGENT" --state "${S[1]}" rotate --campaign rot --job 0 --mode rekey
expect "one line saying what was rotated" "^rotated: device [0-9a-f]{64}, certificate $OLD1 -> " \
  "$WORK/out"
NEW1=$(serial_of "${S[1]}/active/cert.pem")
equal "job 0 confirmed" "$(job_state 0)" "confirmed"
equal "job 0 names the new certificate" "$(job_field 0 new_serial)" "$NEW1"
equal "old certificate revoked" "$(cert_status "$OLD1")" "revoked"
equal "reason superseded" "$(sql "SELECT revocation_reason FROM certificates WHERE serial = '$OLD1'")" \
  "superseded"
check "rekey made a new key" test "$(openssl x509 -in "${S[1]}/active/cert.pem" -noout -pubkey)" \
  != "$OLD_PUB1"
check "no pending rotation left" test ! -e "${S[1]}/pending"
check "the device works with its new certificate" works 1
equal "the confirmation repeated with the same certificate: 200 (idempotent)" \
  "$(answer "${S[1]}/active" "${IDS[1]}" '{"campaign":"rot","job":0,"status":"installed"}')" "200"
equal "a failure after the confirmation: 409 (final)" \
  "$(answer "${S[1]}/active" "${IDS[1]}" '{"campaign":"rot","job":0,"status":"failed"}')" "409"
equal "the old certificate is refused (revoked)" \
  "$(answer "${S[1]}/previous" "${IDS[1]}" '{"campaign":"rot","job":0,"status":"installed"}')" "403"
equal "audit rows: job enrolled and confirmed, old certificate revoked" \
  "$(sql "SELECT group_concat(action, ' ') FROM (SELECT action FROM audit_log WHERE (action LIKE \
    'campaign.job.%' OR action = 'cert.revoke') AND seq > 0 ORDER BY seq)")" \
  "campaign.job.enrolled campaign.job.confirmed cert.revoke"

# --- killed before the confirmation; the refusals, with curl as the device -------------------------
stop_at 2 before-confirm
OLD2=$(serial_of "${S[2]}/active/cert.pem")
NEW2=$(job_field 1 new_serial)
equal "job 1 enrolled with the new serial" "$(job_state 1)" "enrolled"
check "the pending slot holds the new certificate" test -s "${S[2]}/pending"
P2="${S[2]}/slots/$(sed 's/.*"slot":"\([^"]*\)".*/\1/' "${S[2]}/pending")"
equal "pending slot's certificate is the job's" "$(serial_of "$P2/cert.pem")" "$NEW2"
equal "the old certificate is still valid" "$(cert_status "$OLD2")" "valid"
body() { printf '{"campaign":"%s","job":%s,"status":"%s"}' "$1" "$2" "$3"; }
status "confirmation with the old certificate" 403 \
  "$(answer "${S[2]}/active" "${IDS[2]}" "$(body rot 1 installed)")"
expect "says to use the new certificate" "new certificate" "$WORK/body"
status "confirmation with another device's certificate" 403 \
  "$(answer "${S[3]}/active" "${IDS[2]}" "$(body rot 1 installed)")"
expect "says it is another device's" "another device" "$WORK/body"
status "confirmation for a job that does not exist" 404 \
  "$(answer "$P2" "${IDS[2]}" "$(body rot 99 installed)")"
status "confirmation for another device's job" 404 \
  "$(answer "$P2" "${IDS[2]}" "$(body rot 2 installed)")"
status "confirmation for a campaign that does not exist" 404 \
  "$(answer "$P2" "${IDS[2]}" "$(body nope 1 installed)")"
status "malformed body" 400 "$(answer "$P2" "${IDS[2]}" '{"campaign":"rot","job":"one"}')"
expect "error shape of the other endpoints" '"error":"invalid_argument"' "$WORK/body"
status "unknown status" 400 "$(answer "$P2" "${IDS[2]}" "$(body rot 1 done)")"
status "not JSON" 415 "$(CT=text/plain answer "$P2" "${IDS[2]}" "$(body rot 1 installed)")"
status "no client certificate" 401 \
  "$(http -H 'Content-Type: application/json' -d "$(body rot 1 installed)" \
    "$URL/api/v1/devices/${IDS[2]}/rotation")"
status "the birth certificate" 403 \
  "$(http --cert "${S[2]}/factory/cert.pem" --key "$WORK/fleet/fleet-000002/key.plain.pem" \
    -H 'Content-Type: application/json' -d "$(body rot 1 installed)" \
    "$URL/api/v1/devices/${IDS[2]}/rotation")"
equal "nothing changed by the refusals" "$(job_state 1) $(cert_status "$OLD2")" "enrolled valid"
check "restart: the pending rotation is completed" "$AGENT" --state "${S[2]}" recover
expect "says completed" "^recover: pending rotation completed" "$WORK/out"
equal "job 1 confirmed" "$(job_state 1)" "confirmed"
equal "active is the new certificate" "$(serial_of "${S[2]}/active/cert.pem")" "$NEW2"
equal "old certificate revoked after the confirmation" "$(cert_status "$OLD2")" "revoked"
check "device 2 works" works 2

# --- SIGKILL at every other step, then a restart ------------------------------------------------
# before-csr: nothing happened; the job is untouched; the old certificate works.
OLD3=$(serial_of "${S[3]}/active/cert.pem")
stop_at 3 before-csr
check "restart after before-csr" "$AGENT" --state "${S[3]}" recover
expect "nothing pending" "nothing pending" "$WORK/out"
equal "job 2 untouched" "$(job_state 2)" "pending"
check "device 3 works with the old certificate" works 3
check "rotation after the restart" "$AGENT" --state "${S[3]}" rotate --campaign rot --job 2 --mode rekey
equal "job 2 confirmed" "$(job_state 2) $(cert_status "$OLD3")" "confirmed revoked"
check "device 3 works" works 3

# after-enroll: the server issued a certificate the device never stored; the old one still works
# (nothing is revoked before a confirmation), and the next rotation replaces the lost one.
OLD4=$(serial_of "${S[4]}/active/cert.pem")
stop_at 4 after-enroll
LOST4=$(job_field 3 new_serial)
check "restart after after-enroll" "$AGENT" --state "${S[4]}" recover
equal "job 3 enrolled, old certificate still valid" "$(job_state 3) $(cert_status "$OLD4")" \
  "enrolled valid"
check "device 4 works with the old certificate" works 4
check "rotation after the restart" "$AGENT" --state "${S[4]}" rotate --campaign rot --job 3 --mode rekey
equal "job 3 confirmed with a newer certificate" \
  "$(job_state 3) $(test "$(job_field 3 new_serial)" != "$LOST4" && echo newer)" "confirmed newer"
equal "the lost and the old certificate revoked" "$(cert_status "$LOST4") $(cert_status "$OLD4")" \
  "revoked revoked"
check "device 4 works" works 4

# before-rename: the server confirmed (and revoked the old certificate), the device did not
# switch: the restart confirms again (200, the same serial) and switches.
OLD5=$(serial_of "${S[5]}/active/cert.pem")
stop_at 5 before-rename
equal "job 4 confirmed, old revoked, active still old" \
  "$(job_state 4) $(cert_status "$OLD5") $(serial_of "${S[5]}/active/cert.pem")" \
  "confirmed revoked $OLD5"
check "restart after before-rename" "$AGENT" --state "${S[5]}" recover
expect "says completed" "pending rotation completed" "$WORK/out"
equal "active is the job's certificate" "$(serial_of "${S[5]}/active/cert.pem")" \
  "$(job_field 4 new_serial)"
check "device 5 works" works 5

# after-rename: only STATE/pending was left.
stop_at 6 after-rename
check "restart after after-rename" "$AGENT" --state "${S[6]}" recover
expect "says it was active already" "was active already" "$WORK/out"
equal "job 5 confirmed, active is its certificate" \
  "$(job_state 5) $(serial_of "${S[6]}/active/cert.pem")" "confirmed $(job_field 5 new_serial)"
check "no pending rotation left" test ! -e "${S[6]}/pending"
check "device 6 works" works 6

# A rotation command on a device with a pending rotation finishes that one first.
stop_at 7 before-confirm
check "rotate after a kill before the confirmation" \
  "$AGENT" --state "${S[7]}" rotate --campaign rot --job 6 --mode renew
expect "recovered first" "^recover: pending rotation completed" "$WORK/out"
expect "and stops there: it was the same job" "^rotated: job 6 of campaign rot completed by the recovery" \
  "$WORK/out"
equal "job 6 confirmed" "$(job_state 6)" "confirmed"
check "device 7 works" works 7

# --- forced install failure: rollback, failure reported, retried later ----------------------------
OLD8=$(serial_of "${S[8]}/active/cert.pem")
SLOTS8=$(ls "${S[8]}/slots")
refuse "install failed on purpose" "install failed on purpose.*rolled back to $OLD8" \
  env IOTPKI_AGENT_TEST_FAIL_INSTALL=1 "$AGENT" --state "${S[8]}" rotate --campaign rot --job 7
equal "job 7 pending its retry, with the device's reason" \
  "$(job_state 7) $(job_field 7 "last_error LIKE '%install failed on purpose%'")" "pending 1"
equal "the certificate never installed is revoked" "$(cert_status "$(job_field 7 new_serial)")" \
  "revoked"
equal "the old certificate is valid and active" \
  "$(cert_status "$OLD8") $(serial_of "${S[8]}/active/cert.pem")" "valid $OLD8"
equal "slots as before the rotation" "$(ls "${S[8]}/slots")" "$SLOTS8"
check "no pending rotation left" test ! -e "${S[8]}/pending"
check "device 8 works with the old certificate" works 8
check "the retry succeeds" "$AGENT" --state "${S[8]}" rotate --campaign rot --job 7
equal "job 7 confirmed, old revoked" "$(job_state 7) $(cert_status "$OLD8")" "confirmed revoked"
check "device 8 works" works 8

refuse "rotate without a campaign" "campaign" "$AGENT" --state "${S[9]}" rotate --job 8
refuse "rotate for a job of another device" "HTTP 404" \
  "$AGENT" --state "${S[9]}" rotate --campaign rot --job 0
check "device 9 rolled back and works" works 9
# The server is gone when the agent restarts: the pending rotation stays (the server may have
# confirmed it), the device keeps a working certificate, and the next start completes it.
OLD9=$(serial_of "${S[9]}/active/cert.pem")
stop_at 9 before-confirm
stop_server
refuse "recover without the server: unreachable, nothing discarded" "server unreachable" \
  "$AGENT" --state "${S[9]}" recover
check "the pending rotation is kept" test -s "${S[9]}/pending"
equal "active is still the old certificate" "$(serial_of "${S[9]}/active/cert.pem")" "$OLD9"
start_server
check "recover with the server back" "$AGENT" --state "${S[9]}" recover --server "$URL"
expect "completed" "pending rotation completed" "$WORK/out"
equal "job 8 confirmed, old revoked" "$(job_state 8) $(cert_status "$OLD9")" "confirmed revoked"
check "device 9 works" works 9

# --- run: no campaign; renews by itself at two thirds of the lifetime, with the device's jitter --
"$AGENT" --state "${S[9]}" run >"$WORK/run.out" 2>"$WORK/run.err" &
RUN_PID=$!
for _ in $(seq 100); do grep -q "next renewal in" "$WORK/run.out" && break; sleep 0.1; done
kill -TERM "$RUN_PID"
RUN_RC=0
wait "$RUN_PID" || RUN_RC=$?
equal "run ends on SIGTERM with exit 0" "$RUN_RC" "0"
NEXT=$(sed -n 's/^run: next renewal in \([0-9]*\) s$/\1/p' "$WORK/run.out" | head -1)
NB=$(date -d "$(openssl x509 -in "${S[9]}/active/cert.pem" -noout -startdate | cut -d= -f2)" +%s)
NA=$(date -d "$(openssl x509 -in "${S[9]}/active/cert.pem" -noout -enddate | cut -d= -f2)" +%s)
AT=$(($(date +%s) + ${NEXT:-0}))
LIFE=$((NA - NB))
check "run's renewal is due between 2/3 and 3/4 of the lifetime" \
  test "$AT" -ge $((NB + LIFE * 2 / 3 - 5)) -a "$AT" -le $((NB + LIFE * 3 / 4 + 5))

check "audit chain verifies" "$IOTPKI" audit verify --dir "$CA"
no_secrets "no secret in the server's log" "$WORK/serve.err"
stop_server
finish
