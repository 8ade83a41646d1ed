#!/usr/bin/env bash
# A throwaway Mosquitto broker for tests: mutual TLS on a free loopback port, device identities
# taken from their certificates' CN, the rotation topics' ACLs (docs/rotation.md#mqtt).
#
#   mqtt_broker.sh start DIR CAFILE [CRLFILE]   prints the port; DIR/port, DIR/pid, DIR/broker.crt
#   mqtt_broker.sh reload DIR                   SIGHUP: re-reads the CRL file
#   mqtt_broker.sh stop DIR
#
# MQTT_BROKER_PORT=N start: that port (a restart on the port clients know, for reconnect tests).
# CAFILE: the CAs whose certificates clients present (root + operational CA). CRLFILE: a PEM
# file of CRLs for every CA in CAFILE (`iotpki crl export`), checked on every connection.
# The broker's own certificate (CN and IP SAN 127.0.0.1) is made here by openssl: the broker is
# not part of our CA, and clients trust DIR/broker.crt. The server's MQTT identity is the CN
# $IOTPKI_MQTT_SERVER_CN (default iotpki-server): it may publish to every device's command topic
# and subscribe to every device's status topic. Exit 3 when mosquitto is not installed.
set -euo pipefail

usage() {
  echo "usage: mqtt_broker.sh start DIR CAFILE [CRLFILE] | reload DIR | stop DIR" >&2
  exit 2
}
[ $# -ge 2 ] || usage
cmd=$1
dir=$2
server_cn=${IOTPKI_MQTT_SERVER_CN:-iotpki-server}

case "$cmd" in
start)
  [ $# -ge 3 ] || usage
  cafile=$3
  crlfile=${4:-}
  mosquitto=$(command -v mosquitto || true)
  [ -n "$mosquitto" ] || mosquitto=/usr/sbin/mosquitto
  if [ ! -x "$mosquitto" ]; then
    echo "mosquitto is not installed (scripts/setup.sh installs it)" >&2
    exit 3
  fi
  mkdir -p "$dir"
  if [ ! -s "$dir/broker.key" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
      -keyout "$dir/broker.key" -out "$dir/broker.crt" 2>/dev/null
  fi
  cat >"$dir/acl" <<ACL
# Devices (user = certificate CN = device id): read their own commands, write their own status.
pattern read iotpki/devices/%u/cmd
pattern write iotpki/devices/%u/status

user $server_cn
topic write iotpki/devices/+/cmd
topic read iotpki/devices/+/status
ACL
  for _ in $(seq 20); do
    port=${MQTT_BROKER_PORT:-$((20000 + RANDOM % 40000))}
    {
      echo "pid_file $dir/mosquitto.pid"
      echo "persistence false"
      echo "log_dest stderr"
      echo "log_type error"
      echo "log_type warning"
      echo "per_listener_settings false"
      echo "allow_anonymous true"
      echo "acl_file $dir/acl"
      echo "listener $port 127.0.0.1"
      # MQTT_BROKER_MAX_CONNECTIONS=N: refuse (and log at notice) connections past N.
      if [ -n "${MQTT_BROKER_MAX_CONNECTIONS:-}" ]; then
        echo "max_connections $MQTT_BROKER_MAX_CONNECTIONS"
        echo "log_type notice"
      fi
      echo "cafile $cafile"
      echo "certfile $dir/broker.crt"
      echo "keyfile $dir/broker.key"
      echo "require_certificate true"
      echo "use_identity_as_username true"
      [ -z "$crlfile" ] || echo "crlfile $crlfile"
      [ "$(id -u)" != 0 ] || echo "user root"
    } >"$dir/mosquitto.conf"
    "$mosquitto" -c "$dir/mosquitto.conf" </dev/null >>"$dir/mosquitto.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/pid"
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break # the port was taken: try another
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "$port" >"$dir/port"
        echo "$port"
        exit 0
      fi
      sleep 0.05
    done
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  echo "mosquitto did not start:" >&2
  cat "$dir/mosquitto.log" >&2
  exit 1
  ;;
reload)
  kill -HUP "$(cat "$dir/pid")"
  ;;
stop)
  if [ -s "$dir/pid" ]; then
    pid=$(cat "$dir/pid")
    # KILL: a throwaway broker keeps nothing, and TERM takes it a second or two.
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      # Gone, or a zombie its adopter has not reaped yet: either way the port is free.
      grep -qs '^State:.*[RSD]' "/proc/$pid/status" || break
      sleep 0.05
    done
    rm -f "$dir/pid" "$dir/port"
  fi
  ;;
*) usage ;;
esac
