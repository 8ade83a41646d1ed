# Helpers for the `iotpki serve` integration tests (sourced after lib.sh): a CA with provisioned
# devices, a real server on a free loopback port, curl as the HTTP client.
IOTPKI=$1
AGENT=${2:-}
CA="$WORK/ca"
export IOTPKI_PASSPHRASE="test passphrase 1"
# The transport passphrase `mfg provision --keys ca` encrypts device keys with.
export IOTPKI_KEY_PASSPHRASE="device transport passphrase"
export IOTPKI_DEVICE_KEY_PASSPHRASE="$IOTPKI_KEY_PASSPHRASE"
SERVER_PID=""
PORT=""
URL=""

stop_server_quietly() {
  if [ -n "$SERVER_PID" ]; then
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
  fi
}
trap 'stop_server_quietly; rm -rf "$WORK"' EXIT

# start_server [serve options...]: starts `iotpki serve` for $CA on a free port; sets PORT, URL.
start_server() {
  rm -f "$WORK/port"
  "$IOTPKI" serve --dir "$CA" --listen 127.0.0.1:0 --port-file "$WORK/port" "$@" \
    >"$WORK/serve.out" 2>"$WORK/serve.err" &
  SERVER_PID=$!
  for _ in $(seq 300); do
    [ -s "$WORK/port" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ ! -s "$WORK/port" ]; then
    echo "server did not start:" >&2
    cat "$WORK/serve.out" "$WORK/serve.err" >&2
    exit 1
  fi
  PORT=$(cat "$WORK/port")
  URL="https://127.0.0.1:$PORT"
}

# stop_server: SIGTERM, then the server's exit status.
stop_server() {
  kill -TERM "$SERVER_PID"
  local rc=0
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=""
  return "$rc"
}

# http ARGS...: curl against the server (root CA trusted); prints the status, body in $WORK/body.
http() {
  curl -sS -o "$WORK/body" -w '%{http_code}' --cacert "$CA/certs/root.pem" "$@" 2>"$WORK/curl.err"
}

# status NAME EXPECTED ACTUAL
status() {
  if [ "$2" = "$3" ]; then pass "$1 ($3)"; else
    fail "$1 (HTTP $3, expected $2)"
    sed 's/^/    /' "$WORK/body" "$WORK/curl.err" 2>/dev/null | head -5
  fi
}

# provision BATCH COUNT: devices in $WORK/BATCH/<serial>/ (cert.pem, key.pem, chain.pem,
# bootstrap.hex), each key also decrypted to key.plain.pem for curl.
provision() {
  "$IOTPKI" mfg provision --dir "$CA" --count "$2" --serial-prefix "$1-" --model sensor \
    --batch "$1" --keys ca --out "$WORK/$1" >/dev/null 2>"$WORK/provision.err" || {
    cat "$WORK/provision.err" >&2
    exit 1
  }
  for d in "$WORK/$1"/*/; do
    openssl pkey -in "$d/key.pem" -passin env:IOTPKI_KEY_PASSPHRASE -out "$d/key.plain.pem"
  done
}

# device_id DIR: the CN of DIR/cert.pem.
device_id() {
  openssl x509 -in "$1/cert.pem" -noout -subject -nameopt RFC2253 |
    sed -n 's/.*CN=\([0-9a-f]\{64\}\).*/\1/p'
}

# csr_b64 KEYFILE SUBJECT [extra openssl req args]: a new CSR (DER, base64 one line). KEYFILE is
# created if missing.
csr_b64() {
  local key=$1 subject=$2
  shift 2
  [ -f "$key" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key" 2>/dev/null
  openssl req -new -key "$key" -subj "$subject" -outform DER "$@" 2>/dev/null | base64 -w0
}

# p7_certs FILE OUT: decodes an EST certs-only answer (base64 PKCS#7) into PEM certificates.
p7_certs() { base64 -d "$1" | openssl pkcs7 -inform DER -print_certs -out "$2"; }

# sql QUERY: one value from the store.
sql() { sqlite3 "$CA/iotpki.db" "$1"; }
ldevids() { sql "SELECT COUNT(*) FROM certificates WHERE profile = 'ldevid'"; }

# token KDEV_HEX DEVICE_ID TIMESTAMP: the bootstrap token, computed with openssl alone.
token() {
  printf '%s.%s' "$2" "$3" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$1" -r | cut -d' ' -f1
}

# no_secrets NAME LOG [SECRET...]: LOG is not empty and holds none of the test's secrets: the CA
# and transport passphrases, any private key, every bootstrap secret (bootstrap.hex) under $WORK,
# the "token" of every JSON body in $WORK, and each SECRET given.
no_secrets() {
  local name=$1 log=$2 secret leaked=()
  shift 2
  local secrets=("$IOTPKI_PASSPHRASE" "$IOTPKI_KEY_PASSPHRASE" "PRIVATE KEY" "$@")
  while IFS= read -r secret; do secrets+=("$secret"); done < <(
    find "$WORK" -name bootstrap.hex -exec cat {} +
    find "$WORK" -maxdepth 1 -name '*.json' -exec sed -n 's/.*"token":"\([^"]*\)".*/\1/p' {} +
  )
  for secret in "${secrets[@]}"; do
    [ -n "$secret" ] && grep -qF -- "$secret" "$log" && leaked+=("${secret:0:12}...")
  done
  if [ ! -s "$log" ]; then
    fail "$name ($log is empty)"
  elif [ ${#leaked[@]} -gt 0 ]; then
    fail "$name (found: ${leaked[*]})"
  else
    pass "$name (${#secrets[@]} secrets looked for)"
  fi
}

# metric NAME_WITH_LABELS: its value from /metrics ("" if absent).
metric() {
  curl -sS --cacert "$CA/certs/root.pem" "$URL/metrics" | grep -F "$1 " | awk '{print $2}' | head -1
}
