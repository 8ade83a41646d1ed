#!/usr/bin/env bash
# End-to-end test of the PostgreSQL store through the real binary, with psql as the independent
# client: `ca init --store`, a factory batch, `device`, `audit verify`, `--store` on each
# command, `store migrate` from SQLite (and its refusals), an older iotpki.toml, bad URLs, and no
# password in any message. Uses the cluster of ctest's `pg` fixture ($IOTPKI_TEST_PG_DIR), or
# starts its own. Usage: store_pg_cli_test.sh PATH_TO_IOTPKI
source "$(dirname "$0")/lib.sh"
IOTPKI=$1
HELPER="$(dirname "$0")/pg_cluster.sh"
export IOTPKI_PASSPHRASE="test passphrase 1"

if [ -n "${IOTPKI_TEST_PG_DIR:-}" ] && [ -S "$IOTPKI_TEST_PG_DIR/.s.PGSQL.5432" ]; then
  PGDIR=$IOTPKI_TEST_PG_DIR
else
  PGDIR=$(mktemp -d /tmp/iotpki-pg-cli.XXXXXX)
  bash "$HELPER" start "$PGDIR" >/dev/null
  status=$?
  if [ "$status" -ne 0 ]; then
    rm -rf "$PGDIR"
    echo "PostgreSQL is not available (exit $status): skipped"
    if [ "$status" -eq 3 ] && [ "${CI:-}" != "true" ]; then exit 3; fi
    exit 1
  fi
  trap 'bash "$HELPER" stop "$PGDIR"; rm -rf "$WORK"' EXIT
fi
export PGOPTIONS="-c client_min_messages=warning"
admin() { psql -qAt "$(bash "$HELPER" url "$PGDIR" postgres)" -c "$1"; }
newdb() {
  local name="iotpki_cli_$$_$1"
  admin "DROP DATABASE IF EXISTS $name" && admin "CREATE DATABASE $name TEMPLATE template0"
  bash "$HELPER" url "$PGDIR" "$name"
}
psql_in() { psql -qAt "$1" -c "$2"; }

PG1=$(newdb one)
PG2=$(newdb two)

# --- a CA on PostgreSQL -----------------------------------------------------------------------
B="$WORK/pgca"
check "ca init --store postgresql://" "$IOTPKI" ca init --dir "$B" --org PgCo --store "$PG1"
expect "iotpki.toml names the store" "^url = ['\"]postgresql://" "$B/iotpki.toml"
equal "no SQLite file in the CA directory" "$(ls "$B" | grep -c 'iotpki.db')" "0"
equal "the CA certificates are in PostgreSQL" \
  "$(psql_in "$PG1" "SELECT COUNT(*) FROM certificates WHERE device_seq IS NULL")" "3"
check "mfg provision into PostgreSQL" "$IOTPKI" mfg provision --dir "$B" --count 40 \
  --serial-prefix PG- --model M1 --batch pg1 --keys ca --no-bundles --discard-keys --workers 2 \
  --group-size 16 --out "$WORK/pgout"
check "device count" "$IOTPKI" device count --dir "$B" --batch pg1
equal "device count answers from PostgreSQL" "$(cat "$WORK/out")" "40"
equal "psql sees the devices" "$(psql_in "$PG1" "SELECT COUNT(*) FROM devices")" "40"
equal "psql sees one IDevID each" \
  "$(psql_in "$PG1" "SELECT COUNT(*) FROM certificates WHERE profile = 'idevid'")" "40"
check "audit verify --manifest on PostgreSQL" "$IOTPKI" audit verify --dir "$B" \
  --manifest "$WORK/pgout/manifest.jsonl"
expect "the manifest matches the audit log" "40 devices in 3 groups" "$WORK/out"
check "device ls" "$IOTPKI" device ls --dir "$B" --limit 5
expect "device ls lists them" "PG-" "$WORK/out"
check "ca show" "$IOTPKI" ca show --dir "$B"
refuse "ca init refuses a database that holds a CA" "already holds a CA" \
  "$IOTPKI" ca init --dir "$WORK/second" --store "$PG1"
equal "the refused init left no directory" "$(ls "$WORK" | grep -c '^second')" "0"
psql_in "$PG1" "UPDATE audit_log SET details = '{\"tampered\":true}' WHERE seq = 2"
refuse "a tampered row is found on PostgreSQL" "row 2" "$IOTPKI" audit verify --dir "$B"

# --- store migrate from SQLite ----------------------------------------------------------------
A="$WORK/sqliteca"
check "ca init (SQLite)" "$IOTPKI" ca init --dir "$A" --org LiteCo
check "mfg provision into SQLite" "$IOTPKI" mfg provision --dir "$A" --count 25 \
  --serial-prefix LT- --model M2 --batch lite --keys ca --no-bundles --discard-keys --workers 2 \
  --group-size 10 --out "$WORK/liteout"
"$IOTPKI" audit verify --dir "$A" >"$WORK/lite-audit.txt"
check "store migrate sqlite -> postgresql" "$IOTPKI" store migrate --from "sqlite:$A/iotpki.db" \
  --to "$PG2"
expect "migrate reports the devices" "devices 25;" "$WORK/out"
expect "migrate verified the chain" "audit log verified after the move" "$WORK/out"
check "audit verify --store on the copy" "$IOTPKI" audit verify --dir "$A" --store "$PG2"
equal "the copy's chain ends at the source's head" "$(cat "$WORK/out")" "$(cat "$WORK/lite-audit.txt")"
check "device count --store on the copy" "$IOTPKI" device count --dir "$A" --store "$PG2" \
  --model M2
equal "the counts came along" "$(cat "$WORK/out")" "25"
check "the manifest verifies against the copy" "$IOTPKI" audit verify --dir "$A" --store "$PG2" \
  --manifest "$WORK/liteout/manifest.jsonl"
check "mfg provision continues on the copy" "$IOTPKI" mfg provision --dir "$A" --store "$PG2" \
  --count 5 --serial-prefix LT2- --model M2 --batch lite2 --keys ca --no-bundles --discard-keys \
  --workers 2 --out "$WORK/liteout2"
equal "new devices follow the copied ones" \
  "$(psql_in "$PG2" "SELECT MIN(seq) > 25 FROM devices WHERE batch = 'lite2'")" "t"
refuse "migrate refuses a non-empty target" "not empty" \
  "$IOTPKI" store migrate --from "sqlite:$A/iotpki.db" --to "$PG2"
refuse "migrate refuses the same store twice" "same store" \
  "$IOTPKI" store migrate --from "$PG2" --to "$PG2"

# --- configuration and URLs -------------------------------------------------------------------
sed -i "s|^url = 'sqlite:iotpki.db'\$|backend = 'sqlite'\npath = 'iotpki.db'|" "$A/iotpki.toml"
expect "the CA's iotpki.toml has the older store keys" "^backend = 'sqlite'" "$A/iotpki.toml"
check "an older iotpki.toml opens its SQLite store" "$IOTPKI" device count --dir "$A"
equal "and counts the SQLite devices" "$(cat "$WORK/out")" "25"
refuse "an unsupported scheme exits 2 naming the forms" "postgresql://" \
  "$IOTPKI" device count --dir "$A" --store "mysql://db/iotpki"
"$IOTPKI" device count --dir "$A" --store "mysql://db/iotpki" >/dev/null 2>&1
equal "exit code 2 for a bad URL" "$?" "2"
refuse "an unreachable server is one line without the password" "cannot connect" \
  "$IOTPKI" device count --dir "$A" \
  --store "postgresql://iotpki:s3cretpw@127.0.0.1:1/iotpki?password=s3cretpw&connect_timeout=2"
equal "no password in the message" "$(grep -c 's3cretpw' "$WORK/err")" "0"

finish
