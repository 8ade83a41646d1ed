#!/usr/bin/env bash
# Installs every Debian 12 package that the build, the tests and the demo need. Idempotent and
# non-interactive; does nothing when everything is already there.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang clang-format libclang-rt-14-dev
  # libraries
  libssl-dev libboost-dev libboost-system-dev libsqlite3-dev nlohmann-json3-dev libcli11-dev
  libspdlog-dev libfmt-dev libtomlplusplus-dev libexpected-dev libgtest-dev libgmock-dev
  libbenchmark-dev libjemalloc-dev libpq-dev libmosquitto-dev
  # independent clients and parsers used by tests and the demo
  openssl gnutls-bin curl sqlite3
  # the MQTT broker that enforces revocation in tests/broker_crl_test.sh
  mosquitto mosquitto-clients
  # the PostgreSQL store's tests start a throwaway cluster of their own (tests/pg_cluster.sh)
  postgresql
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
