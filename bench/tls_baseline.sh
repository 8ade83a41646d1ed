#!/usr/bin/env bash
# What one mutual-TLS 1.3 handshake costs the server inside OpenSSL's own libssl, next to what it
# costs `iotpki serve` (issue 4). By hand only; never in CI.
#
#   bench/tls_baseline.sh BUILD_DIR [SECONDS] [CLIENTS]
#   bench/tls_baseline.sh build 20 16
#   IOTPKI_TLS_BASELINE_PERF=DIR  also profile each server under its load (perf record, self time
#                                 by DSO and symbol; DIR keeps perf.data files); perf inflates the
#                                 CPU figures of such a run
#   IOTPKI_TLS_BASELINE_PERF_OPTS="-F 499 --call-graph dwarf,8192"  perf record options (default
#                                 -F 999, no call graphs)
#
# In one run, on loopback, ports chosen by the kernel (port 0), everything in a temporary
# directory removed on exit:
# 1. An iotpki CA (`iotpki ca init`) and one provisioned device (`mfg provision --keys ca`): its
#    IDevID (P-256, issued by the Manufacturing CA) and key are the client certificate of every
#    connection, as in `enroll_load --mode tls`. A throwaway P-256 CA and server certificate made
#    by `openssl req`/`openssl x509` for s_server (sent with its CA, as iotpki sends its chain).
# 2. `openssl s_server` with TLS 1.3 only, P-256 only, a client certificate required (-Verify 1)
#    and verified against the Manufacturing CA with -partial_chain -x509_strict (the flags and
#    trust store iotpki serve uses), no tickets, no session cache, -WWW answering GET /healthz
#    from a file.
# 3. The same load against `iotpki serve` on the same CA (it issues its own P-256 server
#    certificate at start; not timed).
# The load: CLIENTS (default 16) `openssl s_time -new -www /healthz` processes in parallel for
# SECONDS (default 20), each connection a new TCP connection and a full handshake with the IDevID
# as client certificate, no resumption; the clients offer only P-256 (an OpenSSL config with
# `Groups = P-256`, since s_time has no -groups) so there is no HelloRetryRequest. Server CPU is
# utime + stime of the server process from /proc/PID/stat (all its threads) before and after the
# load, divided by the connections the clients completed. The load column is the 1-minute load
# average when each server's load starts (it includes this script's own previous phase).
# 4. `openssl speed -seconds 3 ecdsap256 ecdhp256` (one core) and the crypto model: one handshake
#    on the server = 2 signatures (CertificateVerify, the ephemeral key's generation, counted as a
#    signature as in enroll_load) + 2 verifications (client CertificateVerify, the IDevID's
#    signature) + 1 ECDH; one enrollment = 3 signatures + 4 verifications + 1 ECDH.
set -euo pipefail
build=${1:?usage: tls_baseline.sh BUILD_DIR [SECONDS] [CLIENTS]}
seconds=${2:-20}
clients=${3:-16}
iotpki="$build/apps/iotpki/iotpki"
[[ -x $iotpki ]] || { echo "tls_baseline: no $iotpki" >&2; exit 1; }
perf_dir=${IOTPKI_TLS_BASELINE_PERF:-}
[[ -z $perf_dir ]] || mkdir -p "$perf_dir"
read -ra perf_opts <<<"${IOTPKI_TLS_BASELINE_PERF_OPTS:--F 999}"

work=$(mktemp -d /var/tmp/iotpki-tls-baseline.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
# forget PID: a process this script started and has waited for, no longer to be killed on exit.
forget() {
  local p kept=()
  for p in "${pids[@]}"; do [[ $p == "$1" ]] || kept+=("$p"); done
  pids=("${kept[@]}")
}
# stop PID [SIGNAL]: ends one process this script started.
stop() {
  kill "-${2:-TERM}" "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget "$1"
}
trap 'exit 130' INT TERM

export IOTPKI_PASSPHRASE="tls baseline CA passphrase"
export IOTPKI_KEY_PASSPHRASE="tls baseline transport passphrase"
tck=$(getconf CLK_TCK)

# cpu_seconds PID: utime + stime of the whole process (every thread) in seconds.
cpu_seconds() {
  # Fields 14 and 15 of /proc/PID/stat; the command name (field 2) may hold spaces.
  awk -v tck="$tck" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / tck }' "/proc/$1/stat"
}
load_avg() { cut -d' ' -f1 /proc/loadavg; }

# --- certificates -------------------------------------------------------------------------------
"$iotpki" ca init --dir "$work/ca" --org "TLS Baseline" >"$work/ca-init.out"
"$iotpki" mfg provision --dir "$work/ca" --count 1 --serial-prefix tlsb- --model sensor \
  --batch tlsb --keys ca --out "$work/devices" >"$work/provision.out" 2>&1
device=$(echo "$work"/devices/tlsb-*/)
cp "$device/cert.pem" "$work/client.pem"
openssl pkey -in "$device/key.pem" -passin env:IOTPKI_KEY_PASSPHRASE -out "$work/client.key"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/O=TLS Baseline/CN=s_server CA" -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign \
  -keyout "$work/sca.key" -out "$work/sca.pem" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf '%s\n' 'subjectAltName=IP:127.0.0.1' 'extendedKeyUsage=serverAuth' \
  'keyUsage=critical,digitalSignature' >"$work/server.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/sca.pem" -CAkey "$work/sca.key" \
  -CAcreateserial -days 2 -extfile "$work/server.ext" -out "$work/server.pem" 2>/dev/null

# The clients' OpenSSL configuration: key share on P-256 only (s_time has no -groups option).
cat >"$work/client.cnf" <<'EOF'
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Groups = P-256
EOF
mkdir "$work/www"
echo '{"status":"ok"}' >"$work/www/healthz"

# --- crypto baseline ----------------------------------------------------------------------------
openssl speed -seconds 3 ecdsap256 ecdhp256 2>/dev/null >"$work/speed.txt"
read -r sign verify < <(awk '/ecdsa \(nistp256\)/ { print $(NF-1), $NF }' "$work/speed.txt")
ecdh=$(awk '/ecdh \(nistp256\)/ { print $NF }' "$work/speed.txt")
[[ -n $sign && -n $verify && -n $ecdh ]] || { cat "$work/speed.txt"; exit 1; }
hs_crypto=$(awk -v s="$sign" -v v="$verify" -v e="$ecdh" 'BEGIN { printf "%.4f", (2/s + 2/v + 1/e) * 1e3 }')
enroll_crypto=$(awk -v s="$sign" -v v="$verify" -v e="$ecdh" 'BEGIN { printf "%.4f", (3/s + 4/v + 1/e) * 1e3 }')

echo "== tls_baseline: $(openssl version), $(nproc) cores, $clients clients x ${seconds} s each server"
echo "openssl speed -seconds 3 ecdsap256 ecdhp256 (one core): sign ${sign}/s, verify ${verify}/s, ecdh ${ecdh}/s"
echo "crypto per handshake, server side (2 sign + 2 verify + 1 ECDH): $hs_crypto ms"
echo "crypto per enrollment (3 sign + 4 verify + 1 ECDH): $enroll_crypto ms"

# check_server NAME PORT: one connection with s_client and the clients' configuration first: TLS
# 1.3, the key exchange on P-256, the client certificate accepted, /healthz answered.
check_server() {
  local out="$work/check.${1// /_}"
  printf 'GET /healthz HTTP/1.0\r\n\r\n' | OPENSSL_CONF="$work/client.cnf" openssl s_client \
    -connect "127.0.0.1:$2" -cert "$work/client.pem" -key "$work/client.key" -ign_eof \
    >"$out" 2>&1 || true
  if ! grep -q 'Server Temp Key: ECDH, prime256v1' "$out" || ! grep -Eq 'New, TLSv1\.3|Protocol *: TLSv1\.3' "$out" ||
    ! grep -q '"status":"ok"' "$out"; then
    cat "$out"
    echo "tls_baseline: $1 check failed" >&2
    exit 1
  fi
}

# run_load NAME PID PORT: drives the server, prints one result row.
rows=()
run_load() {
  local name=$1 pid=$2 port=$3 tag=${1// /_} load cpu0 cpu1 t0 t1 i n perf_pid=
  sleep 1 # past the server's start-up
  load=$(load_avg)
  if [[ -n $perf_dir ]]; then
    perf record "${perf_opts[@]}" -o "$perf_dir/$tag.perf.data" -p "$pid" 2>"$perf_dir/$tag.perf.err" &
    perf_pid=$!
    pids+=("$perf_pid")
    sleep 1
  fi
  cpu0=$(cpu_seconds "$pid")
  t0=$(date +%s.%N)
  local client_pids=()
  for ((i = 0; i < clients; i++)); do
    OPENSSL_CONF="$work/client.cnf" openssl s_time -connect "127.0.0.1:$port" -new \
      -time "$seconds" -cert "$work/client.pem" -key "$work/client.key" -www /healthz \
      >"$work/$tag.client$i.out" 2>&1 &
    client_pids+=($!)
    pids+=($!)
  done
  for i in "${client_pids[@]}"; do
    wait "$i" || { echo "tls_baseline: a client failed against $name" >&2; cat "$work/$tag".client*.out >&2; exit 1; }
    forget "$i"
  done
  t1=$(date +%s.%N)
  cpu1=$(cpu_seconds "$pid")
  [[ -z $perf_pid ]] || stop "$perf_pid" INT
  # "N connections in X real seconds", once per client.
  n=$(cat "$work/$tag".client*.out | awk '/connections in .* real seconds/ { s += $1 } END { print s + 0 }')
  ((n > 0)) || { echo "tls_baseline: no connection completed against $name" >&2; exit 1; }
  rows+=("$(awk -v name="$name" -v load="$load" -v n="$n" -v c0="$cpu0" -v c1="$cpu1" \
    -v t0="$t0" -v t1="$t1" -v hs="$hs_crypto" -v en="$enroll_crypto" 'BEGIN {
      per = (c1 - c0) / n * 1e3
      printf "| %s | %s | %d | %.0f | %.2f s | %.3f ms | %.1fx | %.1fx |", name, load, n,
        n / (t1 - t0), c1 - c0, per, per / hs, per / en }')")
}

# --- openssl s_server -----------------------------------------------------------------------------
(cd "$work/www" && exec openssl s_server -accept 127.0.0.1:0 -tls1_3 -groups P-256 \
  -cert "$work/server.pem" -key "$work/server.key" -cert_chain "$work/sca.pem" \
  -CAfile "$work/ca/certs/manufacturing.pem" -partial_chain -x509_strict -Verify 1 -verify_quiet \
  -no_ticket -num_tickets 0 -no_cache -WWW) >"$work/s_server.out" 2>&1 &
s_server=$!
pids+=("$s_server")
port=
for _ in $(seq 100); do
  port=$(sed -n 's/^ACCEPT 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/s_server.out")
  [[ -n $port ]] && break
  sleep 0.1
done
[[ -n $port ]] || { cat "$work/s_server.out"; echo "tls_baseline: s_server did not start" >&2; exit 1; }
check_server "s_server" "$port"
run_load s_server "$s_server" "$port"
stop "$s_server"

# --- iotpki serve -------------------------------------------------------------------------------
"$iotpki" serve --dir "$work/ca" --listen 127.0.0.1:0 --port-file "$work/port" \
  >"$work/serve.out" 2>"$work/serve.err" &
serve=$!
pids+=("$serve")
for _ in $(seq 300); do
  [[ -s $work/port ]] && break
  sleep 0.1
done
[[ -s $work/port ]] || { cat "$work/serve.out" "$work/serve.err"; echo "tls_baseline: iotpki serve did not start" >&2; exit 1; }
port=$(cat "$work/port")
check_server "iotpki serve" "$port"
run_load "iotpki serve" "$serve" "$port"
stop "$serve"

echo
echo "| server | load | handshakes | handshakes/s (wall) | server CPU | per handshake | x handshake crypto | x enrollment crypto |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo "(goal: server CPU per enrollment <= 1.5x the enrollment crypto, i.e. <= $(awk -v e="$enroll_crypto" 'BEGIN { printf "%.3f", 1.5 * e }') ms)"

if [[ -n $perf_dir ]]; then
  for tag in s_server iotpki_serve; do
    echo
    echo "== $tag: self time by DSO ($perf_dir/$tag.perf.data)"
    perf report -i "$perf_dir/$tag.perf.data" --no-children --sort dso --stdio 2>/dev/null |
      grep -E '^ +[0-9.]+%' | head -12 || true
    echo "== $tag: self time by DSO and symbol"
    perf report -i "$perf_dir/$tag.perf.data" --no-children --sort dso,sym --stdio 2>/dev/null |
      grep -E '^ +[0-9.]+%' | cut -c1-150 | head -40 || true
  done
fi
