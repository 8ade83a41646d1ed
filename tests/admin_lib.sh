# The dashboard's fixture (sourced after lib.sh and serve_lib.sh): a CA whose `ca init` made the
# admin CA, operators alice (operator) and bob (read-only), 6 provisioned devices in batch b1, a
# running campaign "spring" over them, and a server with an admin listener; sets ADMIN_URL.
export IOTPKI_OPERATOR_PASSPHRASE="operator passphrase 1"
ADMIN_URL=""

admin_fixture() {
  "$IOTPKI" ca init --dir "$CA" --org "Example Org" >/dev/null 2>"$WORK/init.err" || {
    cat "$WORK/init.err" >&2
    exit 1
  }
  for who in "alice operator" "bob read-only"; do
    set -- $who
    "$IOTPKI" admin issue --dir "$CA" --name "$1" --role "$2" --out-dir "$WORK/ops" \
      >/dev/null 2>"$WORK/issue.err" || {
      cat "$WORK/issue.err" >&2
      exit 1
    }
    # curl takes an unencrypted key.
    openssl pkey -in "$WORK/ops/$1.key" -passin env:IOTPKI_OPERATOR_PASSPHRASE \
      -out "$WORK/ops/$1.plain.key"
  done
  provision b1 6
  "$IOTPKI" campaign create --dir "$CA" --name spring --batch b1 --wave-size 4 >/dev/null
}

# start_admin_server: the server of admin_fixture's CA, with its admin listener on a free port.
start_admin_server() {
  rm -f "$WORK/admin.port"
  start_server --admin-listen 127.0.0.1:0 --admin-port-file "$WORK/admin.port"
  for _ in $(seq 100); do
    [ -s "$WORK/admin.port" ] && break
    sleep 0.1
  done
  ADMIN_URL="https://127.0.0.1:$(cat "$WORK/admin.port")"
}
