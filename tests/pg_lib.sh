# Helpers for the tests of several `iotpki serve` nodes over PostgreSQL (sourced after lib.sh):
# devices with their bootstrap requests prepared, servers started by name, and a client that
# enrolls through the JSON bootstrap API and retries on the other nodes. Needs IOTPKI, CA, WORK.
export IOTPKI_PASSPHRASE="test passphrase 1"
export IOTPKI_KEY_PASSPHRASE="device transport passphrase"
export PGOPTIONS="-c client_min_messages=warning"
declare -A NODE_PID NODE_URL

# start_node NAME [serve options...]: `iotpki serve` for $CA on a free loopback port.
start_node() {
  local name=$1
  shift
  rm -f "$WORK/$name.port"
  "$IOTPKI" serve --dir "$CA" --listen 127.0.0.1:0 --port-file "$WORK/$name.port" "$@" \
    >"$WORK/$name.out" 2>"$WORK/$name.err" &
  NODE_PID[$name]=$!
  for _ in $(seq 300); do
    [ -s "$WORK/$name.port" ] && break
    kill -0 "${NODE_PID[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  if [ ! -s "$WORK/$name.port" ]; then
    echo "server $name did not start:" >&2
    cat "$WORK/$name.out" "$WORK/$name.err" >&2
    exit 1
  fi
  NODE_URL[$name]="https://127.0.0.1:$(cat "$WORK/$name.port")"
}

# kill_node NAME: SIGKILL, no goodbye.
kill_node() {
  kill -KILL "${NODE_PID[$1]}" 2>/dev/null
  wait "${NODE_PID[$1]}" 2>/dev/null
  NODE_PID[$1]=""
}

stop_nodes() {
  local name
  for name in "${!NODE_PID[@]}"; do
    [ -n "${NODE_PID[$name]}" ] && kill_node "$name"
  done
  return 0
}

# prepare_devices BATCH COUNT: provisions COUNT devices and writes, for each, DIR/id, DIR/csr
# (a CSR for its IDevID key, base64 DER) and DIR/cert (the IDevID, base64 DER): the parts of a
# bootstrap request that do not change between attempts. Prints the device directories.
prepare_devices() {
  "$IOTPKI" mfg provision --dir "$CA" --count "$2" --serial-prefix "$1-" --model sensor \
    --batch "$1" --keys ca --out "$WORK/$1" >/dev/null 2>"$WORK/provision.err" || {
    cat "$WORK/provision.err" >&2
    exit 1
  }
  local serial id
  # One openssl per device: the id from the manifest, the IDevID as written (cert.der).
  while read -r serial id; do
    local d="$WORK/$1/$serial"
    echo "$id" >"$d/id"
    openssl req -new -key "$d/key.pem" -passin env:IOTPKI_KEY_PASSPHRASE -subj "/CN=$id" \
      -outform DER | base64 -w0 >"$d/csr"
    base64 -w0 "$d/cert.der" >"$d/cert"
    echo "$d"
  done < <(sed -n 's/^{"serial":"\([^"]*\)","device_id":"\([0-9a-f]*\)".*/\1 \2/p' \
    "$WORK/$1/manifest.jsonl")
}

# bootstrap_body DIR TIMESTAMP: the JSON bootstrap request of DIR's device, its token computed
# with openssl.
bootstrap_body() {
  local id token
  id=$(cat "$1/id")
  token=$(printf '%s.%s' "$id" "$2" |
    openssl dgst -sha256 -mac HMAC -macopt "hexkey:$(cat "$1/bootstrap.hex")" -r | cut -d' ' -f1)
  printf '{"device_id":"%s","csr":"%s","device_cert":"%s","timestamp":%s,"token":"%s"}' \
    "$id" "$(cat "$1/csr")" "$(cat "$1/cert")" "$2" "$token"
}

# post URL BODY_FILE OUT: POST /api/v1/bootstrap; prints the HTTP status (000: no answer).
post() {
  curl -sS -m 30 -o "$3" -w '%{http_code}' --cacert "$CA/certs/root.pem" \
    -H 'Content-Type: application/json' --data-binary @"$2" "$1/api/v1/bootstrap" 2>/dev/null
}

# serial_of ANSWER: the serial of the certificate in a bootstrap answer, as the store writes it.
serial_of() {
  sed -n 's/.*"certificate":"\([^"]*\)".*/\1/p' "$1" | base64 -d |
    openssl x509 -inform DER -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f'
}

# enroll DIR LOG NODE...: one enrollment of DIR's device as a client that retries: it tries the
# nodes in turn (a node that does not answer, or answers 5xx, is left for the next); a token
# refused as used (409: an earlier attempt was committed but its answer lost) is replaced by a
# new one. Other answers are appended to LOG.refused ("CODE NODE"). On success appends
# "SERIAL TIMESTAMP NODE DIR" to LOG. Gives up after 40 attempts.
enroll() {
  local dir=$1 log=$2
  shift 2
  local nodes=("$@") ts attempt code i=0 node
  ts=$(date +%s)
  local body="$dir/body.$$.$BASHPID" answer="$dir/answer.$$.$BASHPID"
  bootstrap_body "$dir" "$ts" >"$body"
  for attempt in $(seq 40); do
    node=${nodes[$((i % ${#nodes[@]}))]}
    code=$(post "${NODE_URL[$node]}" "$body" "$answer")
    case $code in
      200)
        echo "$(serial_of "$answer") $ts $node $dir" >>"$log"
        return 0
        ;;
      409)
        ts=$((ts + 1))
        bootstrap_body "$dir" "$ts" >"$body"
        ;;
      *)
        echo "$code $node" >>"$log.refused"
        i=$((i + 1))
        [ $((i % ${#nodes[@]})) -eq 0 ] && sleep 0.2
        ;;
    esac
  done
  echo "enroll: gave up on $dir after $attempt attempts (last HTTP $code)" >&2
  return 1
}

# store_sql QUERY: one value from the store (psql as the independent client).
store_sql() { psql -qAt "$STORE_URL" -c "$1"; }
