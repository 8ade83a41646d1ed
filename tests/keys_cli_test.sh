#!/usr/bin/env bash
# CA keys kept apart: a passphrase per key (files, environment, a file descriptor), the root key
# written elsewhere (an offline root), and `iotpki serve` opening only the operational CA key and
# the bootstrap master. Usage: keys_cli_test.sh PATH_TO_IOTPKI
source "$(dirname "$0")/lib.sh"
IOTPKI=$1
unset IOTPKI_PASSPHRASE
SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"' EXIT

for role in root manufacturing operational bootstrap audit; do
  printf '%s passphrase 123\n' "$role" >"$WORK/$role.pass"
done
roles() {
  for role in root manufacturing operational bootstrap audit; do
    printf -- '--%s-passphrase-file %s ' "$role" "$WORK/$role.pass"
  done
}

# --- a passphrase per key -----------------------------------------------------------------------
D="$WORK/ca"
mkdir -p "$WORK/usb"
chmod 700 "$WORK/usb"
# shellcheck disable=SC2046
check "ca init with a passphrase per key and the root key on removable media" \
  "$IOTPKI" ca init --dir "$D" --org "Keys Org" --root-key-dir "$WORK/usb" $(roles)
expect "ca init says where the root key went" "root key in $WORK/usb" "$WORK/out"
equal "no root key in the CA directory" "$(ls "$D/keys")" \
  "$(printf 'admin-ca.key\naudit.key\nbootstrap-master.key\nmanufacturing.key\noperational.key')"
equal "the root key on the media is 0600" "$(stat -c %a "$WORK/usb/root.key")" "600"
expect "iotpki.toml names the root key on the media" "root = 'file:$WORK/usb/root.key'" "$D/iotpki.toml"
for role in root manufacturing operational audit; do
  f="$D/keys/$role.key"
  [ "$role" = root ] && f="$WORK/usb/root.key"
  check "openssl opens the $role key with its own passphrase" \
    openssl pkey -in "$f" -passin "file:$WORK/$role.pass" -noout
  if openssl pkey -in "$f" -passin "file:$WORK/operational.pass" -noout 2>/dev/null &&
    [ "$role" != operational ]; then
    fail "the $role key opens with the operational passphrase"
  else
    pass "the $role key does not open with another key's passphrase"
  fi
done
check "openssl opens the bootstrap master with its passphrase" openssl enc -d -aes-256-cbc \
  -pbkdf2 -iter 100000 -md sha256 -in "$D/keys/bootstrap-master.key" -pass "file:$WORK/bootstrap.pass" -out "$WORK/master.txt"
expect "the audit public key is published" "BEGIN PUBLIC KEY" "$D/certs/audit-key.pem"
refuse "a second ca init into the same root-key-dir is refused" "root.key already exists" \
  "$IOTPKI" ca init --dir "$WORK/ca2" --root-key-dir "$WORK/usb" $(roles)
[ -e "$WORK/ca2" ] && fail "the refused ca init left $WORK/ca2" || pass "the refused ca init left nothing"
refuse "a missing root-key-dir" "not a directory" \
  "$IOTPKI" ca init --dir "$WORK/ca3" --root-key-dir "$WORK/nomedia" $(roles)
refuse "no passphrase at all names every way to give one" "manufacturing-passphrase-file.*IOTPKI_MANUFACTURING_PASSPHRASE.*--passphrase-fd" \
  "$IOTPKI" ca init --dir "$WORK/ca4" --root-passphrase-file "$WORK/root.pass"

# Issuing an IDevID takes the manufacturing passphrase only; the environment works as a file does.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/dev.key" \
  -subj /CN=x -out "$WORK/dev.csr" 2>/dev/null
issue() {
  "$IOTPKI" cert issue --dir "$D" --csr "$WORK/dev.csr" --profile idevid --serial SN-1 \
    --fingerprint 0011 --out "$WORK/idevid.pem" "$@"
}
IOTPKI_PASSPHRASE="$(cat "$WORK/operational.pass")" refuse \
  "the operational passphrase does not open the manufacturing CA" "passphrase" issue
refuse "an empty passphrase file" "is empty" issue --manufacturing-passphrase-file /dev/null
IOTPKI_MANUFACTURING_PASSPHRASE="$(cat "$WORK/manufacturing.pass")" check \
  "cert issue with \$IOTPKI_MANUFACTURING_PASSPHRASE" issue

# --passphrase-fd: no file name, no environment variable.
D2="$WORK/ca-fd"
check "ca init --passphrase-fd 3" "$IOTPKI" ca init --dir "$D2" --passphrase-fd 3 3<"$WORK/root.pass"
check "openssl opens its manufacturing key with the fd's passphrase" \
  openssl pkey -in "$D2/keys/manufacturing.key" -passin "file:$WORK/root.pass" -noout
refuse "a closed descriptor" "passphrase-fd 7" "$IOTPKI" ca init --dir "$WORK/ca5" --passphrase-fd 7
refuse "--passphrase-file and --passphrase-fd together" "not both" \
  "$IOTPKI" ca init --dir "$WORK/ca6" --passphrase-file "$WORK/root.pass" --passphrase-fd 3 3<"$WORK/root.pass"
# The shared passphrase still serves scripts written before per-key passphrases.
IOTPKI_PASSPHRASE="shared passphrase 1" check "ca init with the shared passphrase alone" \
  "$IOTPKI" ca init --dir "$WORK/ca-shared"

# --- serve opens only what it uses ----------------------------------------------------------------
start_serve() { # start_serve DIR [options...]: waits for the port file
  local dir=$1
  shift
  rm -f "$WORK/port"
  "$IOTPKI" serve --dir "$dir" --listen 127.0.0.1:0 --port-file "$WORK/port" --log-format json "$@" \
    >"$WORK/serve.out" 2>"$WORK/serve.err" &
  SERVER_PID=$!
  for _ in $(seq 300); do
    [ -s "$WORK/port" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
}
stop_serve() {
  kill -TERM "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=""
}

# The media unmounted (the root key gone) and manufacturing.key off the server's machine.
mv "$D/keys/manufacturing.key" "$WORK/manufacturing.key.away"
mv "$WORK/usb/root.key" "$WORK/root.key.away"
start_serve "$D" --operational-passphrase-file "$WORK/operational.pass" \
  --bootstrap-passphrase-file "$WORK/bootstrap.pass" \
  --passphrase-file "$WORK/root.pass"
if [ -s "$WORK/port" ]; then pass "serve runs without manufacturing.key and the root key"; else
  fail "serve runs without manufacturing.key and the root key"; sed 's/^/    /' "$WORK/serve.err"; fi
check "serve answers" curl -sS --cacert "$D/certs/root.pem" "https://127.0.0.1:$(cat "$WORK/port")/healthz"
check "without manufacturing.key it still serves the operational CRL" curl -sSf -o "$WORK/op.crl" \
  --cacert "$D/certs/root.pem" "https://127.0.0.1:$(cat "$WORK/port")/crl/operational.crl"
equal "... and not a manufacturing CRL it cannot sign (503)" 503 "$(curl -s -o /dev/null \
  -w '%{http_code}' --cacert "$D/certs/root.pem" \
  "https://127.0.0.1:$(cat "$WORK/port")/crl/manufacturing.crl")"
stop_serve
expect "serve says the manufacturing CA is offline" "serve.manufacturing_ca_offline" "$WORK/serve.err"
if grep -q "root_key_online" "$WORK/serve.err"; then fail "serve warned of a root key that is offline"; else
  pass "no warning while the root key is offline"; fi
mv "$WORK/manufacturing.key.away" "$D/keys/manufacturing.key"
mv "$WORK/root.key.away" "$WORK/usb/root.key"

# The root key put back into the CA directory: the server warns, and still runs.
cp "$WORK/usb/root.key" "$D/keys/root.key"
sed -i "s|root = 'file:$WORK/usb/root.key'|root = 'file:keys/root.key'|" "$D/iotpki.toml"
start_serve "$D" --operational-passphrase-file "$WORK/operational.pass" \
  --bootstrap-passphrase-file "$WORK/bootstrap.pass"
[ -s "$WORK/port" ] && pass "serve runs beside an online root key" || fail "serve runs beside an online root key"
stop_serve
expect "serve warns that the root key is online" 'warn.*serve.root_key_online.*keys/root.key' "$WORK/serve.err"
if grep -Eq "passphrase 123|PRIVATE KEY" "$WORK/serve.err" "$WORK/serve.out"; then
  fail "serve's log holds a passphrase or key"; else pass "no passphrase or key in serve's log"; fi

start_serve "$D" --operational-passphrase-file "$WORK/manufacturing.pass" \
  --bootstrap-passphrase-file "$WORK/bootstrap.pass"
wait "$SERVER_PID" 2>/dev/null
SERVER_PID=""
[ -s "$WORK/port" ] && fail "serve started with the wrong operational passphrase" ||
  pass "serve refuses a wrong operational passphrase"
expect "serve says which passphrase is wrong" "passphrase" "$WORK/serve.err"

finish
