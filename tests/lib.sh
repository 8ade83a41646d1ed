# Shared helpers for the CLI integration tests (sourced). Each test script runs real binaries
# against real clients (openssl, certtool, sqlite3) in a temporary directory.
set -u

PASS=0
FAIL=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/iotpki-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

pass() { PASS=$((PASS + 1)); echo "ok - $1"; }
fail() { FAIL=$((FAIL + 1)); echo "FAIL - $1"; }

# check NAME CMD...: CMD must succeed.
check() {
  local name=$1
  shift
  if "$@" >"$WORK/out" 2>"$WORK/err"; then
    pass "$name"
  else
    fail "$name (exit $?)"
    sed 's/^/    /' "$WORK/out" "$WORK/err" | head -20
  fi
}

# refuse NAME PATTERN CMD...: CMD must fail with exactly one line on stderr matching PATTERN.
refuse() {
  local name=$1 pattern=$2
  shift 2
  if "$@" >"$WORK/out" 2>"$WORK/err"; then
    fail "$name (succeeded, expected a refusal)"
    return
  fi
  local lines
  lines=$(wc -l <"$WORK/err")
  if [ "$lines" -ne 1 ]; then
    fail "$name (expected one line on stderr, got $lines)"
    sed 's/^/    /' "$WORK/err" | head -10
  elif ! grep -Eqi -- "$pattern" "$WORK/err"; then
    fail "$name (stderr does not match /$pattern/)"
    sed 's/^/    /' "$WORK/err"
  else
    pass "$name"
  fi
}

# expect NAME PATTERN FILE: FILE contains PATTERN (extended regex).
expect() {
  if grep -Eq -- "$2" "$3"; then pass "$1"; else
    fail "$1 (/$2/ not found in $3)"
  fi
}

# equal NAME A B
equal() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1 ('$2' != '$3')"; fi
}

# flip FILE OFFSET_FROM_END: changes one byte (XOR 1), counted from the end of the file.
flip() {
  local size byte
  size=$(stat -c %s "$1")
  byte=$(od -An -tu1 -j $((size - $2)) -N1 "$1" | tr -d ' ')
  printf "\\x$(printf '%02x' $((byte ^ 1)))" |
    dd of="$1" bs=1 seek=$((size - $2)) conv=notrunc 2>/dev/null
}

finish() {
  echo "$PASS passed, $FAIL failed"
  [ "$FAIL" -eq 0 ]
}
