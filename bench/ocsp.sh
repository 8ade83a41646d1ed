#!/usr/bin/env bash
# OCSP answers per second (issue 14), by hand only (about a minute; never in CI): our responder
# in `iotpki serve` next to OpenSSL's own (`openssl ocsp -index ... -port`) on the same CA, the
# same revocations and the same requests, in the same run, and `openssl speed ecdsap256`.
#
#   bench/ocsp.sh [REQUESTS] [BUILD_DIR] [CLIENTS]
#   REQUESTS   per case (default 4000), sent by CLIENTS curl processes (default 4), each over one
#              keep-alive connection when the server keeps it open
#
# The CA: `mfg provision` of two batches of 500 devices, one revoked (`cert revoke --batch`), so
# that the responders look a certificate up among 500 revocations. The request asks for one good
# IDevID of the manufacturing CA, by GET (RFC 6960 A.1), with a nonce (every answer signed anew)
# and without (ours answers from its cache of signed good answers; OpenSSL signs every answer).
# OpenSSL's responder gets the same manufacturing CA, our delegated responder certificate and key,
# and an index.txt with the same revocations (and the good certificate as valid). Ours is HTTPS
# (TLS 1.3, server authentication), OpenSSL's plain HTTP: the comparison counts our TLS too.
#
# Figures: answers/s (wall) and answers per CPU second of the responder process (utime + stime
# from /proc/PID/stat), the rate per core that `openssl speed` signatures compare with.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
requests=${1:-4000}
build=${2:-"$root/build"}
clients=${3:-4}
ninja -C "$build" iotpki >/dev/null
iotpki="$build/apps/iotpki/iotpki"
work=$(mktemp -d "${TMPDIR:-/var/tmp}/iotpki-ocsp.XXXXXX")
server_pid=""
ossl_pid=""
cleanup() {
  set +e
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  [ -n "$ossl_pid" ] && kill -TERM "$ossl_pid" 2>/dev/null && wait "$ossl_pid" 2>/dev/null
  rm -rf "$work"
}
trap 'rc=$?; cleanup; exit $rc' EXIT
export IOTPKI_PASSPHRASE="benchmark passphrase"
export IOTPKI_KEY_PASSPHRASE="benchmark transport"
ca="$work/ca"

echo "== $(date -u +%FT%TZ) on $(nproc) cores, $(openssl version), load $(cut -d' ' -f1-3 /proc/loadavg)${IOTPKI_OCSP_IO_THREADS:+, serve io_threads $IOTPKI_OCSP_IO_THREADS}"
sign=$(openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/256 bits ecdsa \(nistp256\)/ {print $(NF-1)}')
echo "openssl speed ecdsap256 (one core): $sign signatures/s"

"$iotpki" ca init --dir "$ca" --org Ocsp >/dev/null
for b in good bad; do
  "$iotpki" mfg provision --dir "$ca" --count 500 --serial-prefix "$b-" --model bench --batch "$b" \
    --keys ca --out "$work/$b" >/dev/null
done
"$iotpki" cert revoke --dir "$ca" --batch bad --reason keyCompromise >/dev/null
leaf=$(find "$work/good" -name cert.pem -print -quit)
issuer="$ca/certs/manufacturing.pem"

# IOTPKI_OCSP_IO_THREADS=N: serve with N I/O threads ([server] io_threads; default one per core).
serve_config=()
if [ -n "${IOTPKI_OCSP_IO_THREADS:-}" ]; then
  printf '[server]\nio_threads = %d\n' "$IOTPKI_OCSP_IO_THREADS" >"$work/serve.toml"
  serve_config=(--config "$work/serve.toml")
fi
"$iotpki" serve --dir "$ca" --listen 127.0.0.1:0 --port-file "$work/port" "${serve_config[@]}" \
  >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 300); do [ -s "$work/port" ] && break; sleep 0.1; done
ours="https://127.0.0.1:$(cat "$work/port")/ocsp"

# OpenSSL's responder: the same CA, our responder certificate and key (made by serve), the
# same revocations (from the CRL serve published) and the good certificate as valid.
openssl pkey -in "$ca/keys/ocsp-manufacturing.key" -passin env:IOTPKI_PASSPHRASE \
  -out "$work/ocsp.key"
openssl crl -inform DER -in "$ca/crl/manufacturing.crl" -noout -text | awk '
  /Serial Number:/ { serial = $3 }
  /Revocation Date:/ {
    split("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec", m, " ")
    for (i = 1; i <= 12; i++) if (m[i] == $3) mon = i
    split($5, t, ":")
    printf "R\t991231235959Z\t%02d%02d%02d%02d%02d%02dZ,keyCompromise\t%s\tunknown\t/CN=%s\n",
      $6 % 100, mon, $4, t[1], t[2], t[3], serial, serial
  }' >"$work/index.txt"
good_serial=$(openssl x509 -in "$leaf" -noout -serial | cut -d= -f2)
printf 'V\t991231235959Z\t\t%s\tunknown\t/CN=good\n' "$good_serial" >>"$work/index.txt"
echo "unique_subject = no" >"$work/index.txt.attr"
echo "index: $(grep -c '^R' "$work/index.txt") revoked, 1 valid"
# Below the ephemeral port range (32768 and up), retried if the port is taken.
for _ in $(seq 10); do
  port=$((20000 + RANDOM % 12000))
  openssl ocsp -index "$work/index.txt" -port "$port" -CA "$issuer" \
    -rsigner "$ca/certs/ocsp-manufacturing.pem" -rkey "$work/ocsp.key" -ignore_err -nmin 60 \
    >"$work/openssl-ocsp.log" 2>&1 &
  ossl_pid=$!
  # No probe connection: OpenSSL 3.0's responder spins on a connection closed without a
  # request. A responder that could not bind has exited by now.
  sleep 1
  kill -0 "$ossl_pid" 2>/dev/null && break
  wait "$ossl_pid" 2>/dev/null || true
  ossl_pid=""
done
theirs="http://127.0.0.1:$port"

openssl ocsp -issuer "$issuer" -cert "$leaf" -reqout "$work/req-nonce.der" -nonce >/dev/null 2>&1 ||
  true
openssl ocsp -issuer "$issuer" -cert "$leaf" -reqout "$work/req-plain.der" -no_nonce \
  >/dev/null 2>&1 || true
for who in "$ours" "$theirs"; do
  openssl ocsp -issuer "$issuer" -cert "$leaf" -url "$who" -CAfile "$ca/certs/root.pem" \
    -VAfile "$ca/certs/ocsp-manufacturing.pem" >"$work/check.out" 2>&1 || true
  grep ': good' "$work/check.out" >/dev/null ||
    { echo "the responder at $who does not answer good:" >&2; cat "$work/check.out" \
      "$work/openssl-ocsp.log" >&2; exit 1; }
done

cpu() {  # cpu PID: utime + stime in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}
# run NAME URL PID REQUEST: REQUESTS GETs over CLIENTS curl processes; prints the figures.
run() {
  local name=$1 base=$2 pid=$3 req=$4 path i
  path=$(base64 -w0 "$req" | sed 's/+/%2B/g; s|/|%2F|g; s/=/%3D/g')
  for i in $(seq "$clients"); do
    : >"$work/urls.$i"
    for _ in $(seq $((requests / clients))); do
      printf 'url = "%s/%s"\noutput = "/dev/null"\n' "$base" "$path" >>"$work/urls.$i"
    done
  done
  local c0 t0 c1 t1
  c0=$(cpu "$pid")
  t0=$(date +%s.%N)
  for i in $(seq "$clients"); do
    curl -s --cacert "$ca/certs/root.pem" -K "$work/urls.$i" \
      -w '%{http_code} %{num_connects}\n' >"$work/codes.$i" &
  done
  wait $(jobs -p | grep -v -e "^$server_pid\$" -e "^$ossl_pid\$" -e "^${perf_pid:-none}\$") 2>/dev/null || true
  t1=$(date +%s.%N)
  c1=$(cpu "$pid")
  local ok conns
  ok=$(cat "$work"/codes.* | grep -c '^200 ' || true)
  conns=$(cat "$work"/codes.* | awk '{s += $2} END {print s}')
  rm -f "$work"/codes.*
  awk -v n="$name" -v ok="$ok" -v c="$conns" -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" \
    -v hz="$(getconf CLK_TCK)" -v s="$sign" 'BEGIN {
      wall = t1 - t0; cpu = (c1 - c0) / hz
      printf "%-34s %6d answers, %5d connections: %7.0f/s wall, %7.0f per CPU second", n, ok, c, ok / wall, (cpu > 0 ? ok / cpu : 0)
      if (cpu > 0) printf " (%.2f of openssl speed signs)", ok / cpu / s
      printf "\n" }'
}
# IOTPKI_OCSP_PERF=FILE: also `perf record` our responder during its first case.
perf_pid=""
if [ -n "${IOTPKI_OCSP_PERF:-}" ]; then
  # IOTPKI_OCSP_PERF_OPTS: perf record options (default -F 499 -g; --call-graph dwarf to see
  # through libraries built without frame pointers).
  # shellcheck disable=SC2086
  perf record ${IOTPKI_OCSP_PERF_OPTS:--F 499 -g} -p "$server_pid" -o "$IOTPKI_OCSP_PERF" \
    >/dev/null 2>&1 &
  perf_pid=$!
  sleep 1
fi
run "ours, nonce (a fresh signature)" "$ours" "$server_pid" "$work/req-nonce.der"
if [ -n "$perf_pid" ]; then
  kill -INT "$perf_pid"
  wait "$perf_pid" 2>/dev/null || true
fi
run "openssl ocsp -port, nonce" "$theirs" "$ossl_pid" "$work/req-nonce.der"
run "ours, no nonce (cached answer)" "$ours" "$server_pid" "$work/req-plain.der"
run "openssl ocsp -port, no nonce" "$theirs" "$ossl_pid" "$work/req-plain.der"
