#!/bin/bash
# Profiles the `iotpki serve` process under bench/enroll_load (issue 4): attaches `perf record`
# with DWARF call graphs to the server once it listens, stops with the load, and prints the
# functions by inclusive share of the server's samples. By hand only; never in CI.
#
#   bench/enroll_profile.sh BUILD_DIR [MODE] [DEVICES] [extra enroll_load options...]
#   bench/enroll_profile.sh build est 1500
#   bench/enroll_profile.sh build tls 2000 --groups X25519:P-256
#
# Leaves perf.data and the load's output in $IOTPKI_PROFILE_DIR (default a new /var/tmp dir);
# `perf report -i DIR/perf.data --children` browses it.
set -euo pipefail
build=${1:?usage: enroll_profile.sh BUILD_DIR [MODE] [DEVICES] [options...]}
mode=${2:-est}
devices=${3:-1500}
shift $(($# < 3 ? $# : 3))
out=${IOTPKI_PROFILE_DIR:-$(mktemp -d /var/tmp/iotpki-enroll-profile.XXXXXX)}
mkdir -p "$out"

"$build/bench/enroll_load" --iotpki "$build/apps/iotpki/iotpki" --devices "$devices" \
  --connections 32 --mode "$mode" "$@" >"$out/load.txt" 2>&1 &
load=$!
server=
for _ in $(seq 1 600); do
  # The server is the load generator's child; it starts after the openssl speed baseline.
  server=$(pgrep -P "$load" -f 'iotpki serve' | head -1 || true)
  if [[ -n $server ]] && grep -q '^crypto per' "$out/load.txt"; then break; fi
  server=
  sleep 0.1
done
[[ -n $server ]] || { cat "$out/load.txt"; echo "enroll_profile: no server" >&2; exit 1; }
sleep 1  # past the server's start-up (key unlocking), into the load
perf record -F 1999 --call-graph dwarf,8192 -o "$out/perf.data" -p "$server" 2>/dev/null &
perf_pid=$!
wait "$load" || true
kill -INT "$perf_pid" 2>/dev/null || true
wait "$perf_pid" || true
cat "$out/load.txt"
echo "== server functions by inclusive share of samples ($out/perf.data)"
perf report -i "$out/perf.data" --children --sort symbol --stdio -g none 2>/dev/null |
  grep -E '^ +[0-9.]+%' | grep -v -e '0x0000' -e 'boost::' -e 'std::' -e '(inlined)' |
  cut -c1-160 | head -60
