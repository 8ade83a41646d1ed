#!/usr/bin/env bash
# A throwaway software TPM 2.0 for tests: swtpm in socket mode on a free loopback port, its
# state in DIR, the dictionary-attack lockout relaxed (a test that tries a wrong key password
# must not lock the TPM for the tests after it).
#
#   swtpm.sh start DIR   prints the TCTI string (also in DIR/tcti): swtpm:host=127.0.0.1,port=N
#   swtpm.sh stop DIR
#
# Clients: TPM2OPENSSL_TCTI (our tpm2: key store, through the tpm2-openssl provider) and
# TPM2TOOLS_TCTI (tpm2-tools) set to that string. swtpm serves one connection at a time: run
# tpm2-tools between our processes, not beside them. Exit 3 when swtpm is not installed.
set -euo pipefail

usage() {
  echo "usage: swtpm.sh start DIR | stop DIR" >&2
  exit 2
}
[ $# -eq 2 ] || usage
cmd=$1
dir=$2

case "$cmd" in
start)
  if ! command -v swtpm >/dev/null 2>&1; then
    echo "swtpm is not installed (scripts/setup.sh installs swtpm, swtpm-tools, tpm2-tools)" >&2
    exit 3
  fi
  mkdir -p "$dir/state"
  for _ in $(seq 20); do
    port=$((20000 + RANDOM % 40000))
    swtpm socket --tpm2 --tpmstate "dir=$dir/state" \
      --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
      --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" \
      --flags not-need-init,startup-clear --log "file=$dir/swtpm.log" </dev/null >/dev/null 2>&1 &
    pid=$!
    echo "$pid" >"$dir/pid"
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break # a port was taken: try others
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        tcti="swtpm:host=127.0.0.1,port=$port"
        echo "$tcti" >"$dir/tcti"
        if command -v tpm2_dictionarylockout >/dev/null 2>&1; then
          TPM2TOOLS_TCTI=$tcti tpm2_dictionarylockout --setup-parameters --max-tries=10000 \
            --recovery-time=0 --lockout-recovery-time=0 --clear-lockout >/dev/null
        fi
        echo "$tcti"
        exit 0
      fi
      sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  echo "swtpm did not start:" >&2
  cat "$dir/swtpm.log" >&2 || true
  exit 1
  ;;
stop)
  if [ -s "$dir/pid" ]; then
    pid=$(cat "$dir/pid")
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      grep -qs '^State:.*[RSD]' "/proc/$pid/status" || break
      sleep 0.05
    done
    rm -f "$dir/pid" "$dir/tcti"
  fi
  ;;
*) usage ;;
esac
