#!/usr/bin/env bash
# End-to-end test of `iotpki campaign` on a SQLite store made by `ca init` and `mfg provision`,
# with sqlite3 as the independent client: a dry run writes nothing, create makes one job per
# device in waves (every cohort selection), status/ls/failures read them, pause/resume/cancel
# follow the state machine with an audit row each, and every bad input is one line, a non-zero
# exit and nothing written. Usage: campaign_cli_test.sh PATH_TO_IOTPKI
source "$(dirname "$0")/lib.sh"
IOTPKI=$1
D="$WORK/ca"
export IOTPKI_PASSPHRASE="test passphrase 1"
export IOTPKI_KEY_PASSPHRASE="station transport passphrase"

sql() { sqlite3 "$D/iotpki.db" "$1"; }
campaign() { "$IOTPKI" campaign "$@"; }
create() { "$IOTPKI" campaign create --dir "$D" "$@"; }
# Rows that no refused command may change.
snapshot() { sql "SELECT (SELECT COUNT(*) FROM campaigns) || '/' || (SELECT COUNT(*) FROM
  rotation_jobs) || '/' || (SELECT COUNT(*) FROM audit_log)"; }

check "ca init" "$IOTPKI" ca init --dir "$D" --org "Example Org"
check "mfg provision b1" "$IOTPKI" mfg provision --dir "$D" --workers 2 --count 6 \
  --serial-prefix A- --model TH-100 --batch b1 --keys ca --out "$WORK/b1"
check "mfg provision b2" "$IOTPKI" mfg provision --dir "$D" --workers 2 --count 3 \
  --serial-prefix B- --model CAM-2 --batch b2 --keys ca --out "$WORK/b2"

# --- dry run ---------------------------------------------------------------------------------
before=$(snapshot)
check "create --dry-run" create --name q3 --batch b1 --wave-size 4 --dry-run
expect "dry run names the cohort" "dry run, nothing created: campaign q3: 6 devices in 2 waves" \
  "$WORK/out"
expect "dry run counts the stranded devices" "^0 devices have not been seen" "$WORK/out"
equal "dry run wrote nothing" "$(snapshot)" "$before"

# --- create ----------------------------------------------------------------------------------
check "create --batch" create --name q3 --batch b1 --wave-size 4 --max-failure-rate 0.25 \
  --retry-after 60 --max-attempts 3 --deadline 2d --mode rekey
expect "create says what it made" "created campaign q3: 6 devices in 2 waves of up to 4, mode rekey" \
  "$WORK/out"
equal "one job per device of b1 (sqlite3)" "$(sql "SELECT COUNT(*) FROM rotation_jobs j JOIN
  devices d ON d.seq = j.device_seq JOIN campaigns c ON c.id = j.campaign_id WHERE c.name = 'q3'
  AND d.batch = 'b1'")" "6"
equal "waves of 4 (sqlite3)" "$(sql "SELECT group_concat(n) FROM (SELECT COUNT(*) AS n FROM
  rotation_jobs GROUP BY wave ORDER BY wave)")" "4,2"
equal "only wave 0 is due" "$(sql "SELECT COUNT(*) FROM rotation_jobs WHERE next_attempt_at <
  4611686018427387904")" "4"
equal "campaign row (sqlite3)" "$(sql "SELECT mode || ' ' || state || ' ' || max_failure_ppm || ' '
  || retry_after || ' ' || max_attempts FROM campaigns WHERE name = 'q3'")" \
  "rekey running 250000 60 3"
equal "audit row campaign.create" "$(sql "SELECT action || ' ' || subject FROM audit_log ORDER BY
  seq DESC LIMIT 1")" "campaign.create q3"

check "create --model" create --name cams --model CAM-2
equal "model cohort" "$(sql "SELECT jobs FROM campaigns WHERE name = 'cams'")" "3"
mfg_fp=$("$IOTPKI" ca show --dir "$D" --json | tr -d ' \n' |
  grep -o '"name":"manufacturing"[^}]*"sha256_fingerprint":"[^"]*"' | sed 's/.*:"//; s/"$//')
check "create --issued-by-ca" create --name all-mfg --issued-by-ca "$mfg_fp" --wave-size 5
equal "issuer cohort: every device with a birth certificate" \
  "$(sql "SELECT jobs || ' ' || waves FROM campaigns WHERE name = 'all-mfg'")" "9 2"
sql "SELECT lower(hex(device_id)) FROM devices WHERE batch = 'b2' ORDER BY seq LIMIT 2" \
  >"$WORK/ids.txt"
printf '# two cameras\n\n' | cat - "$WORK/ids.txt" >"$WORK/list.txt"
check "create --devices" create --name two --devices "$WORK/list.txt" --wave-size 1
equal "listed cohort" "$(sql "SELECT jobs || ' ' || waves FROM campaigns WHERE name = 'two'")" "2 2"

# --- reading ---------------------------------------------------------------------------------
check "ls" campaign ls --dir "$D"
expect "ls lists q3" "^q3 +running +rekey +6 +0 +0 +1/2" "$WORK/out"
expect "ls lists newest first" "$(printf '^NAME')" "$WORK/out"
check "status" campaign status --dir "$D" q3
expect "status: state and wave" "campaign q3: running, mode rekey, wave 1 of 2" "$WORK/out"
expect "status: counts" "jobs 6, pending 6, notified 0, enrolled 0, confirmed 0, failed 0" \
  "$WORK/out"
expect "status: failure rate" "failure rate of the current wave 0.0% \(halts above 25.0%\)" \
  "$WORK/out"
check "status --json" campaign status --dir "$D" q3 --json
expect "status --json counts" '"pending": 6' "$WORK/out"
expect "status --json waves" '"waves": 2' "$WORK/out"
check "failures" campaign failures --dir "$D" q3
expect "failures: none yet" "campaign q3: no failures" "$WORK/out"
# A job that failed once, written as the scheduler would (sqlite3), is listed with its error.
sql "UPDATE rotation_jobs SET attempts = 1, last_error = 'install failed', next_attempt_at =
  1900000000 WHERE ordinal = 1 AND campaign_id = (SELECT id FROM campaigns WHERE name = 'q3')"
check "failures --json" campaign failures --dir "$D" q3 --json
expect "failures --json lists the error" '"last_error": "install failed"' "$WORK/out"
expect "failures --json next retry" '"next_retry": "2030-03-17T17:46:40Z"' "$WORK/out"

# --- steering ----------------------------------------------------------------------------------
check "pause" campaign pause --dir "$D" q3
expect "pause: running -> paused" "campaign q3: running -> paused" "$WORK/out"
refuse "pause a paused campaign" "campaign q3 is paused; pause needs it running" \
  campaign pause --dir "$D" q3
check "resume" campaign resume --dir "$D" q3
check "cancel" campaign cancel --dir "$D" q3
expect "cancel: running -> cancelled" "running -> cancelled" "$WORK/out"
refuse "resume a cancelled campaign" "is cancelled; resume needs it paused or halted" \
  campaign resume --dir "$D" q3
equal "audit rows of the transitions" "$(sql "SELECT group_concat(action, ' ') FROM (SELECT action
  FROM audit_log WHERE subject = 'q3' ORDER BY seq)")" \
  "campaign.create campaign.pause campaign.resume campaign.cancel"

# --- bad inputs: one line, non-zero exit, nothing written --------------------------------------
before=$(snapshot)
refuse "name exists" "a campaign named 'cams' exists already" create --name cams --batch b1
refuse "filter selects nothing" "the filter selects no device" create --name none --batch nope
refuse "wave size 0" "--wave-size must be at least 1" create --name w0 --batch b1 --wave-size 0
refuse "failure rate above 1" "--max-failure-rate must lie between 0 and 1" \
  create --name r1 --batch b1 --max-failure-rate 1.5
refuse "failure rate below 0" "--max-failure-rate must lie between 0 and 1" \
  create --name r2 --batch b1 --max-failure-rate=-0.1
refuse "two filters" "give exactly one of --expiring-within" \
  create --name two-f --batch b1 --model TH-100
refuse "no filter" "give exactly one of --expiring-within" create --name no-f
refuse "bad name" "campaign name must be 1 to 128 characters" create --name 'a b' --batch b1
refuse "bad mode" "--mode must be renew or rekey" create --name m --batch b1 --mode swap
refuse "bad deadline" "--deadline '3x'" create --name d --batch b1 --deadline 3x
refuse "bad window" "--expiring-within 'soon'" create --name e --expiring-within soon
refuse "unknown CA fingerprint" "is not the fingerprint of a CA" \
  create --name f --issued-by-ca 00:11
printf 'not-an-id\n' >"$WORK/bad.txt"
refuse "bad device list" "line 1: expected a device id" create --name l --devices "$WORK/bad.txt"
printf '%064d\n' 7 >"$WORK/ghost.txt"
refuse "unknown device in the list" "device 0+7 not found" create --name g --devices "$WORK/ghost.txt"
refuse "unknown campaign (status)" "no campaign named 'nope'" campaign status --dir "$D" nope
refuse "unknown campaign (pause)" "no campaign named 'nope'" campaign pause --dir "$D" nope
refuse "unknown campaign (failures)" "no campaign named 'nope'" campaign failures --dir "$D" nope
equal "refusals wrote nothing" "$(snapshot)" "$before"

check "audit verify" "$IOTPKI" audit verify --dir "$D"
finish
