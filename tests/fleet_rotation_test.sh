#!/usr/bin/env bash
# A fleet rotated by a campaign, end to end: a real Mosquitto (tests/mqtt_broker.sh, mutual TLS,
# the rotation ACLs), a real `iotpki serve --campaigns`, and $IOTPKI_FLEET_DEVICES (default
# 1000) simulated devices from a real factory batch (`iotpki mfg provision`, onboarded over EST
# by `iotpki-fleet bootstrap`) running the agent's own rotation code (`iotpki-fleet run`). 10%
# of them are offline when the campaign starts and come back; 5% fail every install (rolled
# back); the server is killed (-9) mid-campaign and restarted on its port. At the end: every
# device runs on a certificate the store holds valid (new, or old after its rollbacks: the
# simulator's outcomes cross-checked with the store, a sample checked with openssl verify and a
# real mutual-TLS request each); the failures were retried, then reported (`campaign failures
# --json`); no old certificate was revoked before its device confirmed the new one (audit
# order); `audit verify` passes.
# Usage: fleet_rotation_test.sh PATH_TO_IOTPKI PATH_TO_IOTPKI_FLEET   (exit 3: no mosquitto)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"
source "$(dirname "$0")/fleet_lib.sh"
N=${IOTPKI_FLEET_DEVICES:-1000}
OFFLINE=$(((N + 5) / 10))
FAILING=$(((N + 10) / 20))
t_start=$(date +%s)
elapsed() { echo "# $(($(date +%s) - t_start)) s: $1"; }

fleet_ca_and_broker "$N" fleet
# A short lease: jobs a killed server had claimed are taken over soon by its successor.
printf '[campaigns]\ninterval_s = 1\nlease_s = 10\n' >"$WORK/serve.toml"
start_server --config "$WORK/serve.toml" --campaigns --mqtt "$MQTT_URL" \
  --mqtt-ca "$BROKER/broker.crt"
# restart_server: on the same port, the one the devices saved at bootstrap.
restart_server() {
  rm -f "$WORK/port"
  "$IOTPKI" serve --dir "$CA" --listen "127.0.0.1:$PORT" --port-file "$WORK/port" \
    --config "$WORK/serve.toml" --campaigns --mqtt "$MQTT_URL" --mqtt-ca "$BROKER/broker.crt" \
    >>"$WORK/serve.out" 2>>"$WORK/serve.err" &
  SERVER_PID=$!
  for _ in $(seq 300); do
    [ -s "$WORK/port" ] && return 0
    sleep 0.1
  done
  return 1
}

check "iotpki-fleet bootstrap: $N devices over EST" "$FLEET_BIN" bootstrap \
  --factory "$WORK/factory" --fleet "$WORK/fleet" --server "$URL" --workers 4
expect "every device onboarded" "bootstrap: $N devices onboarded" "$WORK/out"
elapsed "bootstrapped"

"$FLEET_BIN" run --fleet "$WORK/fleet" --mqtt "$MQTT_URL" --mqtt-ca "$BROKER/broker.crt" \
  --offline-share 0.1 --back-after 15s --fail-install-share 0.05 --workers 8 \
  --out "$WORK/outcomes.jsonl" --ready-file "$WORK/ready" >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM_PID=$!
for _ in $(seq 1200); do
  [ -e "$WORK/ready" ] && break
  kill -0 "$SIM_PID" 2>/dev/null || break
  sleep 0.1
done
check "the fleet is online, $OFFLINE devices off" grep -q \
  "^ready: $((N - OFFLINE)) devices online, $OFFLINE offline" "$WORK/sim.out"
elapsed "fleet online"

check "campaign create" "$IOTPKI" campaign create --dir "$CA" --name fleet --batch fleet \
  --mode rekey --wave-size $(((N + 1) / 2)) --retry-after 3 --max-attempts 4 \
  --max-failure-rate 0.5

counts() { # counts: "confirmed failed open" of the campaign's jobs
  sql "SELECT SUM(state = 'confirmed') || ' ' || SUM(state = 'failed') || ' ' ||
    SUM(state NOT IN ('confirmed', 'failed')) FROM rotation_jobs"
}
# Mid-campaign: kill -9 once a fifth of the jobs are confirmed, restart two seconds later.
for _ in $(seq 1200); do
  read -r confirmed _ _ < <(counts)
  [ "${confirmed:-0}" -ge $((N / 5)) ] && break
  kill -0 "$SIM_PID" 2>/dev/null || break
  sleep 0.1
done
elapsed "$confirmed confirmed: kill -9 the server"
kill -KILL "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null
SERVER_PID=""
sleep 2
check "the server restarts on its port" restart_server
for _ in $(seq 2400); do
  read -r confirmed failed open < <(counts)
  [ "${open:-1}" -eq 0 ] && break
  kill -0 "$SIM_PID" 2>/dev/null || break
  sleep 0.1
done
elapsed "campaign over: $confirmed confirmed, $failed failed, $open open"
equal "every job ended" "$open" "0"
campaign_state() { "$IOTPKI" campaign status --dir "$CA" fleet --json | jq -r .state; }
for _ in $(seq 100); do
  [ "$(campaign_state)" = "done" ] && break
  sleep 0.1
done
equal "the campaign is done" "$(campaign_state)" "done"

kill -TERM "$SIM_PID"
RC=0
wait "$SIM_PID" || RC=$?
SIM_PID=""
equal "the simulator ends on SIGTERM with exit 0" "$RC" "0"
cat "$WORK/sim.out"
elapsed "simulator stopped"

# --- the simulator's outcomes, cross-checked with the store --------------------------------------
# How many jobs confirm depends on the machine's speed: a device that cannot act on a command
# before it expires (its job's wait) is notified again, and after 4 attempts its job fails, on
# an overloaded machine too. What must hold whatever the speed: each device's outcome agrees
# with its job, and runs on a certificate the store holds valid.
equal "one outcome per device" "$(wc -l <"$WORK/outcomes.jsonl")" "$N"
equal "every device came online" "$(grep -c '"outcome":"never_online"' "$WORK/outcomes.jsonl")" 0
equal "none left a rotation pending" "$(grep -c '"outcome":"pending"' "$WORK/outcomes.jsonl")" 0
jq -r '[.device_id, .outcome, .new_serial, .old_serial, .fail_install, .failures] | @tsv' \
  "$WORK/outcomes.jsonl" >"$WORK/outcomes.tsv"
{
  echo "CREATE TEMP TABLE o(device TEXT, outcome TEXT, serial TEXT, old TEXT, failing TEXT,
    failures INTEGER);"
  echo ".mode tabs"
  echo ".import $WORK/outcomes.tsv o"
  echo "CREATE TEMP TABLE jo AS SELECT o.*, j.state, j.old_serial AS job_old, j.new_serial AS
    job_new FROM o JOIN devices d ON lower(hex(d.device_id)) = o.device
    JOIN rotation_jobs j ON j.device_seq = d.seq;"
  echo "SELECT COUNT(*) FROM jo;"
  echo "SELECT COUNT(*) FROM jo WHERE outcome = 'rotated' AND state = 'confirmed'
    AND serial = job_new;"
  echo "SELECT COUNT(*) FROM jo WHERE outcome IN ('rolled_back', 'untouched') AND state = 'failed'
    AND serial = job_old AND serial = old;"
  echo "SELECT COUNT(*) FROM jo WHERE failing = 'true' AND state = 'failed' AND failures >= 1;"
  echo "SELECT COUNT(*) FROM jo j JOIN certificates c ON c.serial = j.serial
    WHERE c.status = 'valid' AND c.profile = 'ldevid';"
} >"$WORK/cross.sql"
sqlite3 "$CA/iotpki.db" <"$WORK/cross.sql" >"$WORK/cross.out"
{ read -r joined; read -r rotated_ok; read -r kept_ok; read -r failing_ok; read -r valid; } \
  <"$WORK/cross.out"
equal "every device has its job" "$joined" "$N"
equal "each device rotated iff its job confirmed (with the certificate it runs on)" \
  "$((rotated_ok + kept_ok))" "$N"
equal "rotated devices = confirmed jobs" "$rotated_ok" "$confirmed"
equal "every device failing its install rolled back (each time) and its job failed" \
  "$failing_ok" "$FAILING"
equal "the store holds every certificate in use valid" "$valid" "$N"
check "most of the others confirmed (at least 80%: $confirmed of $((N - FAILING)))" \
  test "$((confirmed * 10))" -ge "$(((N - FAILING) * 8))"

# A sample: the certificate in use verifies (openssl) and makes a real mutual-TLS request: a
# repeated confirmation (200, confirmed) or, for a failed job, a refusal of the job (409) by a
# server that accepted the certificate.
job_of() { sql "SELECT j.ordinal FROM rotation_jobs j JOIN devices d ON d.seq = j.device_seq
  WHERE lower(hex(d.device_id)) = '$1'"; }
sample_ok=0
sample=0
while read -r name; do
  dir="$WORK/fleet/$name/active"
  id=$(openssl x509 -in "$dir/cert.pem" -noout -subject -nameopt RFC2253 |
    sed -n 's/.*CN=\([0-9a-f]\{64\}\).*/\1/p')
  sample=$((sample + 1))
  openssl verify -CAfile "$CA/certs/root.pem" -untrusted "$CA/certs/operational.pem" \
    "$dir/cert.pem" >/dev/null 2>&1 || continue
  code=$(curl -sS -o "$WORK/body" -w '%{http_code}' --cacert "$CA/certs/root.pem" \
    --cert "$dir/cert.pem" --key "$dir/key.pem" -H 'Content-Type: application/json' \
    --data "{\"campaign\":\"fleet\",\"job\":$(job_of "$id"),\"status\":\"installed\"}" \
    "$URL/api/v1/devices/$id/rotation")
  case "$code" in 200 | 409) sample_ok=$((sample_ok + 1)) ;; *) cat "$WORK/body" >&2 ;; esac
done < <(
  {
    grep '"outcome":"rotated"' "$WORK/outcomes.jsonl" | head -8
    grep '"outcome":"rolled_back"' "$WORK/outcomes.jsonl" | head -4
  } | sed -n 's/.*"name":"\([^"]*\)".*/\1/p'
)
equal "a sample verifies (openssl) and is accepted over mutual TLS" "$sample_ok" "$sample"

# --- failures retried, then reported -------------------------------------------------------------
check "campaign failures --json" "$IOTPKI" campaign failures --dir "$CA" fleet --json
cp "$WORK/out" "$WORK/failures.json"
equal "every failed job is reported after 4 attempts, with its last error" \
  "$(jq '[.[] | select(.state == "failed" and .attempts == 4 and .last_error != "")] | length' \
    "$WORK/failures.json")" "$failed"
check "the failing devices' reason reached the server" \
  test "$(jq '[.[] | select(.last_error | contains("install failed on purpose"))] | length' \
    "$WORK/failures.json")" -ge 1

# --- no old certificate revoked before its device confirmed --------------------------------------
equal "every confirmed job's old certificate is revoked (superseded)" \
  "$(sql "SELECT COUNT(*) FROM rotation_jobs j JOIN certificates c ON c.serial = j.old_serial
    WHERE j.state = 'confirmed' AND c.status = 'revoked' AND c.revocation_reason = 'superseded'")" \
  "$confirmed"
equal "each revocation of an old certificate comes after its device's confirmation" \
  "$(sqlite3 "$CA/iotpki.db" "
    CREATE TEMP TABLE rev AS SELECT seq, subject AS serial FROM audit_log
      WHERE action = 'cert.revoke';
    CREATE TEMP TABLE conf AS SELECT seq, json_extract(details, '$.new_serial') AS serial
      FROM audit_log WHERE action = 'campaign.job.confirmed';
    CREATE INDEX temp.rev_serial ON rev (serial);
    CREATE INDEX temp.conf_serial ON conf (serial);
    SELECT COUNT(*) FROM rotation_jobs j JOIN rev r ON r.serial = j.old_serial
      WHERE NOT EXISTS (SELECT 1 FROM conf c WHERE c.serial = j.new_serial AND c.seq < r.seq);")" \
  "0"
check "audit verify" "$IOTPKI" audit verify --dir "$CA"
elapsed "audit verified"
# As serve_lib.sh's no_secrets, with one grep for the thousands of device secrets.
{
  printf '%s\n' "$IOTPKI_PASSPHRASE" "$IOTPKI_KEY_PASSPHRASE" "PRIVATE KEY"
  find "$WORK/factory" -name bootstrap.hex -exec cat {} + | sed '/^$/d'
} >"$WORK/secrets"
equal "no secret in the simulator's output ($(wc -l <"$WORK/secrets") looked for)" \
  "$(cat "$WORK/sim.out" "$WORK/sim.err" | grep -c -F -f "$WORK/secrets")" "0"
elapsed "checked"
stop_server
finish
