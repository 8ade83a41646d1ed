#!/usr/bin/env bash
# Installs every Debian 12 package that the build, the tests and the demo need. Idempotent and
# non-interactive; does nothing when everything is already there.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang clang-format libclang-rt-14-dev
  # libraries
  libssl-dev libboost-dev libboost-system-dev libsqlite3-dev nlohmann-json3-dev libcli11-dev
  libtomlplusplus-dev libexpected-dev libgtest-dev libgmock-dev
  libbenchmark-dev libjemalloc-dev libpq-dev libmosquitto-dev
  # PKCS#11: the API's header (the module is dlopen'ed), SoftHSM2 as the token in tests and
  # pkcs11-tool (opensc) as an independent client that checks keys cannot be exported
  libp11-kit-dev softhsm2 opensc
  # TPM 2.0 (hardware keys): the tpm2-openssl provider our tpm2: key store loads, swtpm as the TPM
  # in tests (tests/swtpm.sh), tpm2-tools to check keys from outside
  tpm2-openssl swtpm swtpm-tools tpm2-tools
  # independent clients and parsers used by tests and the demo
  openssl gnutls-bin curl sqlite3
  # the MQTT broker that enforces revocation in tests/broker_crl_test.sh
  mosquitto mosquitto-clients
  # the PostgreSQL store's tests start a throwaway cluster of their own (tests/pg_cluster.sh)
  postgresql
  # the dashboard's browser test (tests/dashboard_browser_test.sh): headless Chromium driven by
  # playwright-core from npm (tests/browser/package-lock.json)
  chromium nodejs
  # fleet (issue 15): tests/fleet_rotation_test.sh and the demo read JSON answers with jq
  jq
)
# npm comes with NodeSource's nodejs; Debian's own nodejs needs Debian's npm beside it.
command -v npm >/dev/null 2>&1 || packages+=(npm)

# playwright-core (and only it: no browser download) into tests/browser/node_modules, exactly as
# package-lock.json pins it, whenever that is not there yet.
npm_ci() {
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
  if [ ! -d "$dir/node_modules/playwright-core" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
    echo "setup: npm ci in tests/browser"
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  fi
}

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  npm_ci
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
npm_ci
