#!/usr/bin/env bash
# iotpki-agent against a real `iotpki serve`: bootstrap over EST and the JSON API from factory
# bundles made by `iotpki mfg provision`, renew and rekey, the atomic active slot, and the exit
# codes for an unreachable server, a TLS failure and a refusal.
# Usage: serve_agent_test.sh PATH_TO_IOTPKI PATH_TO_IOTPKI_AGENT
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/serve_lib.sh"

check "ca init" "$IOTPKI" ca init --dir "$CA" --org "Example Org"
provision fleet 6
start_server
state() {  # state N: a device state directory holding the factory bundle of device N
  local s="$WORK/state$1"
  mkdir -p "$s"
  [ -d "$s/factory" ] || cp -r "$WORK/fleet/fleet-00000$1" "$s/factory"
  echo "$s"
}
S1=$(state 1)
S2=$(state 2)
S3=$(state 3)
S4=$(state 4)
S5=$(state 5)
S6=$(state 6)

# --- bootstrap ----------------------------------------------------------------------------------
check "bootstrap over EST" "$AGENT" --state "$S1" bootstrap --server "$URL" --est
expect "one line saying what was installed" "^bootstrapped: device [0-9a-f]{64}" "$WORK/out"
check "active is a symlink to a slot" test -L "$S1/active"
check "installed LDevID verifies to the root" openssl verify -CAfile "$CA/certs/root.pem" \
  -untrusted "$S1/active/chain.pem" -purpose sslclient "$S1/active/cert.pem"
equal "installed key is private (0600)" "$(stat -c %a "$S1/active/key.pem")" "600"
equal "installed key matches the certificate" "$(openssl pkey -in "$S1/active/key.pem" -pubout)" \
  "$(openssl x509 -in "$S1/active/cert.pem" -noout -pubkey)"
check "the working key is new (not the IDevID's)" test \
  "$(openssl x509 -in "$S1/active/cert.pem" -noout -pubkey)" != \
  "$(openssl x509 -in "$S1/factory/cert.pem" -noout -pubkey)"
ID1=$(device_id "$S1/factory")
equal "device active in the inventory" "$(sql "SELECT state FROM devices WHERE device_id = X'$ID1'")" "active"

check "bootstrap over the JSON API (token + TLS client certificate)" \
  "$AGENT" --state "$S2" bootstrap --server "$URL" --json
check "JSON LDevID verifies" openssl verify -CAfile "$CA/certs/root.pem" \
  -untrusted "$S2/active/chain.pem" "$S2/active/cert.pem"
check "bootstrap over the JSON API without a client certificate" \
  "$AGENT" --state "$S3" bootstrap --server "$URL" --json --no-client-cert
equal "that LDevID certifies the IDevID key" \
  "$(openssl x509 -in "$S3/active/cert.pem" -noout -pubkey)" \
  "$(openssl x509 -in "$S3/factory/cert.pem" -noout -pubkey)"
# The factory key stays where it was given (encrypted there): the slot links to it, and no
# private key is written anywhere else in the state directory.
equal "the slot's key.pem links to the factory key" "$(readlink "$S3/active/key.pem")" \
  "../../factory/key.pem"
equal "no private key outside factory/ in the state directory" \
  "$(grep -rl -- "PRIVATE KEY" "$S3" | grep -v "^$S3/factory/")" ""
check "renew (same key) on the factory key" "$AGENT" --state "$S3" renew
equal "the renewed slot links to the factory key too" "$(readlink "$S3/active/key.pem")" \
  "../../factory/key.pem"
equal "still no private key outside factory/" \
  "$(grep -rl -- "PRIVATE KEY" "$S3" | grep -v "^$S3/factory/")" ""

# --- renew and rekey ----------------------------------------------------------------------------
OLD_SLOT=$(readlink "$S1/active")
OLD_PUB=$(openssl x509 -in "$S1/active/cert.pem" -noout -pubkey)
check "renew (same key)" "$AGENT" --state "$S1" renew
expect "says renewed" "^renewed:" "$WORK/out"
equal "renew keeps the key" "$(openssl x509 -in "$S1/active/cert.pem" -noout -pubkey)" "$OLD_PUB"
equal "previous names the slot replaced" "$(readlink "$S1/previous")" "$OLD_SLOT"
check "rekey" "$AGENT" --state "$S1" renew --rekey
check "rekey changes the key" test "$(openssl x509 -in "$S1/active/cert.pem" -noout -pubkey)" != "$OLD_PUB"
check "rekeyed LDevID verifies" openssl verify -CAfile "$CA/certs/root.pem" \
  -untrusted "$S1/active/chain.pem" "$S1/active/cert.pem"
equal "two slots kept (active and previous)" "$(ls "$S1/slots" | wc -l)" "2"
check "renew of a JSON-bootstrapped device" "$AGENT" --state "$S2" renew
check "renew of a device whose LDevID certifies its IDevID key" "$AGENT" --state "$S3" renew
equal "LDevIDs in the store (3 + 2 + 3)" "$(ldevids)" "8"

# --- C509 answers (the agent checks the answer's media type, decodes it to the exact DER) -------
check "bootstrap over EST with a C509 answer" \
  "$AGENT" --state "$S6" bootstrap --server "$URL" --est --c509
check "the C509-delivered LDevID verifies with openssl" \
  openssl verify -CAfile "$CA/certs/root.pem" -untrusted "$S6/active/chain.pem" "$S6/active/cert.pem"
check "rekey with a C509 answer" "$AGENT" --state "$S6" renew --rekey --c509
check "the renewed LDevID verifies with openssl" \
  openssl verify -CAfile "$CA/certs/root.pem" -untrusted "$S6/active/chain.pem" "$S6/active/cert.pem"
equal "LDevIDs in the store (8 + 2)" "$(ldevids)" "10"

# --- failures: one line each, distinct exit codes -----------------------------------------------
agent_exit() {  # agent_exit NAME CODE PATTERN ARGS...: the agent exits CODE with one line
  local name=$1 code=$2 pattern=$3 rc=0
  shift 3
  "$AGENT" "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
  if [ "$rc" -ne "$code" ]; then
    fail "$name (exit $rc, expected $code)"
    sed 's/^/    /' "$WORK/err"
  elif [ "$(wc -l <"$WORK/err")" -ne 1 ] || ! grep -Eq -- "$pattern" "$WORK/err"; then
    fail "$name (stderr does not match /$pattern/)"
    sed 's/^/    /' "$WORK/err"
  else
    pass "$name (exit $code)"
  fi
}
agent_exit "server unreachable" 3 "server unreachable" --state "$S4" bootstrap --server https://127.0.0.1:1
agent_exit "TLS failure (server certificate not for this name)" 4 "TLS failure.*hostname mismatch" \
  --state "$S4" bootstrap --server "https://localhost:$PORT"
ID5=$(device_id "$S5/factory")
sql "UPDATE devices SET state = 'decommissioned' WHERE device_id = X'$ID5'"
agent_exit "refused by the server, with its reason" 5 "refused by server: HTTP 403: .*decommissioned" \
  --state "$S5" bootstrap --server "$URL"
check "a refused bootstrap installs nothing" test ! -e "$S5/active"
agent_exit "renew before bootstrap" 1 "bootstrap first" --state "$S4" renew --server "$URL"
agent_exit "--c509 with --json" 2 "usage: .*(c509|json)" --state "$S4" bootstrap --server "$URL" --json --c509
agent_exit "bad server URL" 2 "usage|https://" --state "$S4" bootstrap --server "http://x"
agent_exit "missing factory bundle" 1 "no factory bundle" --state "$WORK/empty" bootstrap --server "$URL"
IOTPKI_DEVICE_KEY_PASSPHRASE=wrong-passphrase-x agent_exit "wrong key passphrase" 1 "key" \
  --state "$S4" bootstrap --server "$URL"
check "the server stops cleanly" stop_server
no_secrets "no secret in the server's log (tokens, bootstrap secrets, keys)" "$WORK/serve.err"
agent_exit "server gone" 3 "server unreachable" --state "$S4" bootstrap --server "$URL"
finish
