#!/usr/bin/env bash
# Rotation throughput end to end (issue 15): DEVICES simulated devices (iotpki-fleet) rotated by
# one campaign against a real Mosquitto and a real `iotpki serve --campaigns` on this machine:
# notify (a signed command over MQTT), re-enroll over mutual TLS (EST simplereenroll, a new key),
# confirm with the new certificate over mutual TLS, the old one revoked. By hand only; never in
# CI.
#
#   bench/rotation_fleet.sh BUILD_DIR [DEVICES]      (default 100000)
#   nice bench/rotation_fleet.sh build 2000
#
# Set up (not timed): a CA, a factory batch (`mfg provision --keys ca`), a broker
# (tests/mqtt_broker.sh), the server, the fleet onboarded over EST (`iotpki-fleet bootstrap`)
# and online: shards of at most IOTPKI_FLEET_SHARD devices (default 5000) per simulator
# process, since each simulated device holds three descriptors (its socket and libmosquitto's
# socket pair) and `ulimit -n` bounds a process.
# Timed: from `campaign create` (one wave holding every device, no retries) until every job is
# confirmed (the store, polled every 0.5 s). Reported: total time, devices/s, and the server's
# CPU (utime + stime of every thread, /proc/PID/stat) per rotation next to the crypto cost of
# one rotation from the same run's `openssl speed -seconds 3 ecdsap256 ecdhp256` (one core),
# and the simulators' and the broker's CPU per rotation (what else shares the 2 cores):
# one re-enrollment (3 signatures, 4 verifications, 1 ECDH, as bench/tls_baseline.sh counts
# an enrollment) + one confirmation's handshake (2 signatures, 2 verifications, 1 ECDH) + the
# command's ES256 signature = 6 signatures, 6 verifications, 2 ECDH. Everything lives in a
# temporary directory removed on exit.
#
# Sleepy devices: a Mosquitto holds one descriptor per connection, so one broker here holds at
# most ~19,900 devices at once (the container's hard `ulimit -n` of 20,000). Above
# IOTPKI_FLEET_ONLINE devices (default 15000) the simulators run with `--max-online`, each its
# share of IOTPKI_FLEET_ONLINE: every device registers its persistent session, sleeps, and wakes
# in turn to get the command the broker queued for it (the campaign's commands then live 2 hours,
# --retry-after 7200, long enough for every sleeper to wake). The timed part then also holds a
# second MQTT connection per device (its wake-up). A woken device with nothing to do stays
# IOTPKI_FLEET_AWAKE (default 30s): shorter, and the broker spends itself on idle wake-ups
# (a TLS handshake each) while the server is still publishing the campaign's commands.
#
# IOTPKI_ROTATION_PERF=FILE also records the server with `perf record` (call graphs through
# DWARF, 200 Hz) over the timed part into FILE, for `perf report -i FILE`, and counts its fsync
# and fdatasync calls into FILE.stat.
set -euo pipefail
build=${1:?usage: rotation_fleet.sh BUILD_DIR [DEVICES]}
devices=${2:-100000}
shard=${IOTPKI_FLEET_SHARD:-5000}
online=${IOTPKI_FLEET_ONLINE:-15000}
retry_after=600
[ "$devices" -le "$online" ] || retry_after=7200
here=$(cd "$(dirname "$0")" && pwd)
iotpki="$build/apps/iotpki/iotpki"
fleet="$build/apps/iotpki-fleet/iotpki-fleet"
for b in "$iotpki" "$fleet"; do
  [ -x "$b" ] || {
    echo "rotation_fleet.sh: $b not built (ninja -C $build iotpki iotpki-fleet)" >&2
    exit 2
  }
done
# IOTPKI_BENCH_REUSE=DIR: the work directory of an earlier run of the same size, kept
# (IOTPKI_BENCH_KEEP, or the run killed): its CA, batch and onboarded fleet are used again (no
# rotation campaign in it yet), the server listens on the port the devices were onboarded with.
if [ -n "${IOTPKI_BENCH_REUSE:-}" ]; then
  work=$IOTPKI_BENCH_REUSE
  IOTPKI_BENCH_KEEP=1
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/iotpki-rotation-bench.XXXXXX")
fi
export IOTPKI_PASSPHRASE="bench passphrase 1"
export IOTPKI_KEY_PASSPHRASE="device transport passphrase"
export IOTPKI_DEVICE_KEY_PASSPHRASE="$IOTPKI_KEY_PASSPHRASE"
server_pid=""
sims=()
cleanup() {
  local p
  for p in "${sims[@]}" $server_pid; do kill -KILL "$p" 2>/dev/null || true; done
  bash "$here/../tests/mqtt_broker.sh" stop "$work/broker" >/dev/null 2>&1 || true
  if [ -n "${IOTPKI_BENCH_KEEP:-}" ]; then echo "kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
say() { echo "[$(date +%T)] $*"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

say "setup: $devices devices$([ "$devices" -le "$online" ] || echo ", at most $online online at once")"
listen=127.0.0.1:0
campaign=bench-$(date +%s)
if [ -n "${IOTPKI_BENCH_REUSE:-}" ]; then
  listen=127.0.0.1:$(cat "$work/port")
  rm -f "$work"/sim.* "$work"/ready.* "$work/port"
  # An earlier run's campaign, if it was cut short: cancelled, its devices free for this one.
  for c in $(sqlite3 "$work/ca/iotpki.db" "SELECT name FROM campaigns WHERE state IN
    ('running', 'paused', 'halted')"); do
    "$iotpki" campaign cancel --dir "$work/ca" "$c" >/dev/null
  done
else
  "$iotpki" ca init --dir "$work/ca" --org "Bench Org" >/dev/null
  "$iotpki" mfg provision --dir "$work/ca" --count "$devices" --serial-prefix b- --model sensor \
    --batch bench --keys ca --out "$work/factory" >/dev/null 2>"$work/provision.err"
fi
cat "$work/ca/certs/root.pem" "$work/ca/certs/operational.pem" >"$work/device-cas.pem"
mqtt_port=$(bash "$here/../tests/mqtt_broker.sh" start "$work/broker" "$work/device-cas.pem")
mqtt="mqtts://127.0.0.1:$mqtt_port"
printf '[server]\nmax_connections = 8192\nmax_connections_per_source = 8192\n[campaigns]\ninterval_s = 1\n' \
  >"$work/serve.toml"
"$iotpki" serve --dir "$work/ca" --listen "$listen" --port-file "$work/port" \
  --config "$work/serve.toml" --campaigns --mqtt "$mqtt" --mqtt-ca "$work/broker/broker.crt" \
  --log-level warn >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
for _ in $(seq 300); do [ -s "$work/port" ] && break || sleep 0.1; done
url="https://127.0.0.1:$(cat "$work/port")"
t0=$(date +%s.%N)
"$fleet" bootstrap --factory "$work/factory" --fleet "$work/fleet" --server "$url" --workers 8
calc() { awk "BEGIN {print $*}"; }
say "bootstrap took $(calc "$(date +%s.%N) - $t0") s"

first=0
while [ "$first" -lt "$devices" ]; do
  n=$((devices - first < shard ? devices - first : shard))
  sleepy=()
  [ "$devices" -le "$online" ] ||
    sleepy=(--max-online $((online * n / devices)) --awake "${IOTPKI_FLEET_AWAKE:-30s}")
  "$fleet" run --fleet "$work/fleet" --first "$first" --devices "$n" --mqtt "$mqtt" \
    --mqtt-ca "$work/broker/broker.crt" --workers 8 --until-rotated "$n" "${sleepy[@]}" \
    --ready-file "$work/ready.$first" >"$work/sim.$first.out" 2>"$work/sim.$first.err" &
  sims+=($!)
  first=$((first + n))
done
for f in $(seq 0 "$shard" $((devices - 1))); do
  for _ in $(seq 3000); do [ -e "$work/ready.$f" ] && break || sleep 0.1; done
  [ -e "$work/ready.$f" ] || {
    echo "shard $f did not come online:" >&2
    cat "$work/sim.$f.err" >&2
    exit 1
  }
done
say "fleet online: ${#sims[@]} simulator process(es); RSS $(for p in "${sims[@]}"; do
  awk '/VmRSS/ {print $2}' "/proc/$p/status"
done | awk '{s += $1} END {print s}') kB in all"

perf_pid=""
if [ -n "${IOTPKI_ROTATION_PERF:-}" ]; then
  perf record -F 200 --call-graph dwarf,16384 -p "$server_pid" -o "$IOTPKI_ROTATION_PERF" \
    >"$work/perf.out" 2>&1 &
  perf_pid=$!
  perf stat -e syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync -p "$server_pid" \
    -o "$IOTPKI_ROTATION_PERF.stat" >"$work/perfstat.out" 2>&1 &
  stat_pid=$!
  sleep 1
fi
audit_seq() { sqlite3 "$work/ca/iotpki.db" "SELECT COALESCE(MAX(seq), 0) FROM audit_log"; }
audit0=$(audit_seq)
cpu0=$(cpu_ticks "$server_pid")
broker_pid=$(cat "$work/broker/pid")
broker0=$(cpu_ticks "$broker_pid")
# A simulator exits once its devices are rotated: its CPU is the last reading taken while it ran.
declare -A sim0 sim1
for p in "${sims[@]}"; do
  sim0[$p]=$(cpu_ticks "$p")
  sim1[$p]=${sim0[$p]}
done
t0=$(date +%s.%N)
"$iotpki" campaign create --dir "$work/ca" --name "$campaign" --batch bench --mode rekey \
  --wave-size "$devices" --retry-after "$retry_after" --max-failure-rate 1 >/dev/null
while :; do
  confirmed=$(sqlite3 "$work/ca/iotpki.db" "SELECT COUNT(*) FROM rotation_jobs j JOIN campaigns c
    ON c.id = j.campaign_id WHERE c.name = '$campaign' AND j.state = 'confirmed'")
  for p in "${sims[@]}"; do
    if ticks=$(cpu_ticks "$p" 2>/dev/null); then sim1[$p]=$ticks; fi
  done
  [ "$confirmed" -ge "$devices" ] && break
  sleep 0.5
done
t1=$(date +%s.%N)
cpu1=$(cpu_ticks "$server_pid")
broker1=$(cpu_ticks "$broker_pid")
sim_ticks=0
for p in "${sims[@]}"; do sim_ticks=$((sim_ticks + ${sim1[$p]} - ${sim0[$p]})); done
if [ -n "$perf_pid" ]; then
  kill -INT "$perf_pid" "$stat_pid"
  wait "$perf_pid" "$stat_pid" || true
fi
for p in "${sims[@]}"; do wait "$p" || true; done
sims=()
audit1=$(audit_seq)
revoked=$(sqlite3 "$work/ca/iotpki.db" "SELECT COUNT(*) FROM rotation_jobs j JOIN campaigns k
  ON k.id = j.campaign_id AND k.name = '$campaign' JOIN certificates c
  ON c.serial = j.old_serial WHERE c.status = 'revoked'")
hz=$(getconf CLK_TCK)
total=$(calc "$t1 - $t0")
cpu_ms=$(calc "($cpu1 - $cpu0) * 1000 / $hz / $devices")

openssl speed -seconds 3 ecdsap256 ecdhp256 2>/dev/null >"$work/speed"
read -r sign_s verify_s < <(awk '/256 bits ecdsa \(nistp256\)/ {print $(NF-1), $NF}' "$work/speed")
ecdh_s=$(awk '/256 bits ecdh \(nistp256\)/ {print $NF}' "$work/speed")
crypto_ms=$(calc "(6 / $sign_s + 6 / $verify_s + 2 / $ecdh_s) * 1000")

printf '\nrotated %d devices end to end in %.1f s: %.0f devices/s (old certificates revoked: %d)\n' \
  "$devices" "$total" "$(calc "$devices / $total")" "$revoked"
printf 'server CPU per rotation %.2f ms; crypto of one rotation %.2f ms (openssl speed: %s sign/s, %s verify/s, %s ECDH/s); ratio %.1fx\n' \
  "$cpu_ms" "$crypto_ms" "$sign_s" "$verify_s" "$ecdh_s" "$(calc "$cpu_ms / $crypto_ms")"
printf 'CPU per rotation elsewhere: simulator(s) %.2f ms, broker %.2f ms; the three of them used %.2f of the 2 cores over the run\n' \
  "$(calc "$sim_ticks * 1000 / $hz / $devices")" "$(calc "($broker1 - $broker0) * 1000 / $hz / $devices")" \
  "$(calc "($cpu1 - $cpu0 + $sim_ticks + $broker1 - $broker0) / $hz / $total")"
cat "$work"/sim.*.out | awk '/^sessions / {gsub(",", "", $2); s += $2; p += $5}
  END {printf "MQTT sessions %d in all (%.2f per device), at most %d online at once\n", s, s / '"$devices"', p}'
printf 'audit rows per rotation %.1f\n' "$(calc "($audit1 - $audit0) / $devices")"
if [ -n "$perf_pid" ]; then
  printf 'server fsync + fdatasync per rotation %.2f\n' "$(calc "$(awk '/syscalls:sys_enter_f(data)?sync/ {
    gsub(",", "", $1); s += $1 } END {print s}' "$IOTPKI_ROTATION_PERF.stat") / $devices")"
fi
printf '100,000 devices at this rate: %.0f s\n' "$(calc "100000 * $total / $devices")"
