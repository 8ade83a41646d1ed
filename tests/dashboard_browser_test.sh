#!/usr/bin/env bash
# The dashboard in headless Chromium (tests/browser/dashboard.test.js, playwright-core): counts
# equal `iotpki device count`, a campaign paused from the page is paused in the store, refused
# without a certificate or with a device's. Exit 3 (skipped) without chromium, node or
# tests/browser/node_modules (scripts/setup.sh installs them). Screenshots go to
# $IOTPKI_SCREENSHOT_DIR (docs/images to refresh the documentation's), else to the scratch dir.
# Usage: dashboard_browser_test.sh PATH_TO_IOTPKI
HERE=$(cd "$(dirname "$0")" && pwd)
# Skipped (exit 3) where the browser is missing; under CI=true that is a failure instead, so that
# CI never passes without having run it.
skip() {
  echo "SKIP: $1"
  [ "${CI:-}" = true ] && exit 1
  exit 3
}
for need in node "${CHROMIUM:-/usr/bin/chromium}"; do
  command -v "$need" >/dev/null || skip "$need is not installed (scripts/setup.sh)"
done
[ -d "$HERE/browser/node_modules/playwright-core" ] ||
  skip "run npm ci in tests/browser (scripts/setup.sh does)"
source "$HERE/lib.sh"
source "$HERE/serve_lib.sh"
source "$HERE/admin_lib.sh"

admin_fixture
dev=$(ls -d "$WORK"/b1/*/ | head -1)
openssl pkcs12 -export -in "$dev/cert.pem" -inkey "$dev/key.plain.pem" \
  -passout env:IOTPKI_OPERATOR_PASSPHRASE -out "$WORK/device.p12"
start_admin_server
# After the server started: it published the CRLs the report looks at.
"$IOTPKI" compliance report --dir "$CA" --standard etsi-en-303-645 --out "$WORK/report.html" \
  >/dev/null
shots=${IOTPKI_SCREENSHOT_DIR:-$WORK/shots}
mkdir -p "$shots"
if ADMIN_URL="$ADMIN_URL" IOTPKI="$IOTPKI" CA="$CA" SCREENSHOT_DIR="$shots" \
  OPERATOR_P12="$WORK/ops/alice.p12" DEVICE_P12="$WORK/device.p12" \
  DEVICE_SERIAL="$(basename "$dev")" REPORT="$WORK/report.html" node "$HERE/browser/dashboard.test.js" >"$WORK/node.out" 2>&1; then
  pass "dashboard in chromium"
else
  fail "dashboard in chromium"
fi
sed 's/^/    /' "$WORK/node.out"
finish
