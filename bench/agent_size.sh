#!/usr/bin/env bash
# The device agent's footprint (issue 15), by hand (a few seconds once built): the stripped size
# of iotpki-agent and the peak RSS of `run --mqtt` (connected to a broker, subscribed, idle 5 s)
# and of `run` without MQTT (idle 3 s), for each agent binary given. The peak is the whole
# process's (/usr/bin/time %M, exit included); for `run --mqtt` also VmHWM and the resident set
# by mapping (/proc/PID/smaps) while it idles, before it is stopped.
#
#   [AGENT_SIZE_SMAPS=FILE] bench/agent_size.sh IOTPKI AGENT [AGENT...]
#
# The device: one of a batch provisioned by IOTPKI, bootstrapped over EST against IOTPKI serve;
# the broker: tests/mqtt_broker.sh (mutual TLS, the rotation ACLs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
iotpki=$1
shift
work=$(mktemp -d "${TMPDIR:-/var/tmp}/iotpki-agent-size.XXXXXX")
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  "$root/tests/mqtt_broker.sh" stop "$work/broker" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
export IOTPKI_PASSPHRASE="benchmark passphrase"
export IOTPKI_KEY_PASSPHRASE="benchmark transport"
export IOTPKI_DEVICE_KEY_PASSPHRASE=$IOTPKI_KEY_PASSPHRASE
ca="$work/ca"
"$iotpki" ca init --dir "$ca" --org Size >/dev/null
"$iotpki" mfg provision --dir "$ca" --count 1 --serial-prefix SZ- --model m --batch b --keys ca \
  --out "$work/batch" >/dev/null 2>&1
"$iotpki" serve --dir "$ca" --listen 127.0.0.1:0 --port-file "$work/port" >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 300); do [ -s "$work/port" ] && break; sleep 0.1; done
url="https://127.0.0.1:$(cat "$work/port")"
cat "$ca/certs/root.pem" "$ca/certs/operational.pem" >"$work/cas.pem"
"$iotpki" crl export --dir "$ca" --out "$work/crl.pem" >/dev/null 2>&1
port=$("$root/tests/mqtt_broker.sh" start "$work/broker" "$work/cas.pem" "$work/crl.pem")

peak() {  # peak SECONDS AGENT ARGS...: the agent's peak RSS in kB, stopped with SIGTERM
  local secs=$1
  shift
  /usr/bin/time -f '%M' -o "$work/rss" "$@" >/dev/null 2>"$work/agent.err" &
  local pid=$!
  sleep "$secs"
  # The agent's mappings while it idles (its parent is time), for the breakdown below.
  local agent_pid
  agent_pid=$(pgrep -P "$pid" | head -n 1 || true)
  rm -f "$work/smaps" "$work/hwm"
  if [ -n "$agent_pid" ]; then
    cp "/proc/$agent_pid/smaps" "$work/smaps" 2>/dev/null || true
    grep VmHWM "/proc/$agent_pid/status" >"$work/hwm" 2>/dev/null || true
  fi
  pkill -TERM -P "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  tail -n 1 "$work/rss"
}

# The resident set of the last peak() run by mapping (shared libraries by name, the agent's own
# file, heap, stacks and other anonymous memory): resident and private kB, largest first.
# AGENT_SIZE_SMAPS=FILE keeps the raw mappings (of the last agent given) for a closer look.
breakdown() {
  [ -s "$work/smaps" ] || return 0
  if [ -n "${AGENT_SIZE_SMAPS:-}" ]; then cp "$work/smaps" "$AGENT_SIZE_SMAPS"; fi
  awk '
    /^[0-9a-f]+-[0-9a-f]+ / {
      name = (NF >= 6) ? $6 : "[anonymous]"
      sub(/.*\//, "", name)
      sub(/\.so.*/, "", name)
      next
    }
    $1 == "Rss:" { rss[name] += $2; total += $2 }
    $1 == "Private_Clean:" || $1 == "Private_Dirty:" { priv[name] += $2; ptotal += $2 }
    END {
      for (n in rss) if (rss[n] > 0) printf "    %-22s %6d kB resident, %6d kB private\n", n, rss[n], priv[n]
      printf "    %-22s %6d kB resident, %6d kB private\n", "(total)", total, ptotal
    }' "$work/smaps" | sort -k2 -n -r
  [ -s "$work/hwm" ] && awk '{ printf "    VmHWM after 5 s: %d kB\n", $2 }' "$work/hwm"
  return 0
}
for agent in "$@"; do
  s="$work/state"
  rm -rf "$s"
  mkdir -p "$s"
  cp -r "$work/batch/SZ-000001" "$s/factory"
  "$agent" --state "$s" bootstrap --server "$url" --est >/dev/null
  strip -o "$work/stripped" "$agent"
  printf '%s\n  stripped: %d bytes; dynamic libraries: %s\n' "$agent" "$(stat -c %s "$work/stripped")" \
    "$(ldd "$agent" | awk '/=>/ {print $1}' | sed 's/\.so.*//' | tr '\n' ' ')"
  printf '  peak RSS, run --mqtt (idle 5 s): %s kB; resident after 5 s by mapping:\n' \
    "$(peak 5 "$agent" --state "$s" run --mqtt "mqtts://127.0.0.1:$port" --mqtt-ca "$work/broker/broker.crt")"
  breakdown
  printf '  peak RSS, run (no MQTT, idle 3 s): %s kB\n' "$(peak 3 "$agent" --state "$s" run)"
done
