#!/usr/bin/env bash
# `cmake --install` as a distribution's package build runs it: into a DESTDIR with prefix /usr,
# then the installed commands run from there, and the documentation and example are in place.
# Usage: install_test.sh CMAKE BUILD_DIR
source "$(dirname "$0")/lib.sh"
CMAKE=$1
BUILD=$2
ROOT="$WORK/root"  # DESTDIR: nothing is written outside the test's own directory

check "cmake --install into a DESTDIR" env DESTDIR="$ROOT" "$CMAKE" --install "$BUILD" --prefix /usr
equal "everything lands under the prefix" "$(ls -A "$ROOT")" "usr"

BIN="$ROOT/usr/bin"
DOC="$ROOT/usr/share/doc/iotpki"
for f in "$BIN/iotpki" "$BIN/iotpki-agent"; do
  if [ -x "$f" ]; then pass "installed $(basename "$f")"; else fail "$f is not an executable"; fi
done
check "iotpki --version runs from the install" "$BIN/iotpki" --version
expect "it names the version" "^iotpki [0-9]+\.[0-9]+\.[0-9]+" "$WORK/out"
check "iotpki --help runs from the install" "$BIN/iotpki" --help
expect "its help lists the serve command" "serve" "$WORK/out"
check "iotpki-agent --help runs from the install" "$BIN/iotpki-agent" --help
expect "its help lists bootstrap" "bootstrap" "$WORK/out"
for f in README.md cli.md http-api.md operations.md examples/serve.toml; do
  if [ -s "$DOC/$f" ]; then pass "installed doc $f"; else fail "$DOC/$f is missing or empty"; fi
done
expect "the example is the serve configuration" "^\[server\]" "$DOC/examples/serve.toml"

finish
