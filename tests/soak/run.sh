#!/usr/bin/env bash
# Soak under chaos: a plain and a TLS redirector under load (wrk keep-alive,
# new TLS connections at a steady rate, 500 idle and 100 slow clients each)
# while a fake Consul flaps the active node every few seconds and answers
# 500s, garbage and hangs for less than the grace period; the TLS
# certificate is reloaded every ~10 s (SIGHUP) and logging toggled
# (SIGUSR1/SIGUSR2). Then the checks: no error and nothing but 307s to
# well-behaved clients, every Location a node of the cluster, each switch
# followed within 1.5 s, memory back within 512 KiB and descriptors back
# to the baseline once the clients are gone, health 200, no log storm.
#
# Usage: tests/soak/run.sh [SECONDS]     (default 180; plus a 20 s warm-up)
# Loopback only. Installs wrk and openssl from Debian if missing (as root).
# VAULT_REDIRECTOR_BIN: the binary to soak (default: a release build).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
seconds=${1:-180}
case $seconds in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

# shellcheck source=tests/debian.sh
. tests/debian.sh
install_missing wrk openssl python3
if [ -z "${VAULT_REDIRECTOR_BIN:-}" ]; then cargo build --release --quiet; fi
BIN=${VAULT_REDIRECTOR_BIN:-$ROOT/target/release/vault-redirector}

TLS_DIR=$(mktemp -d /tmp/vault-redirector-soak-tls.XXXXXX)
trap 'rm -rf "$TLS_DIR"' EXIT
# shellcheck source=tests/pki.sh
. tests/pki.sh
make_ca "$TLS_DIR"
make_leaf "$TLS_DIR" 1
make_leaf "$TLS_DIR" 2
python3 tests/soak/soak.py --bin "$BIN" --tls-dir "$TLS_DIR" --seconds "$seconds"
