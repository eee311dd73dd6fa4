#!/usr/bin/env bash
# Scale-out suite: N redirector replicas behind a real HAProxy, in front of
# a real Consul and a real 3-node OpenBao cluster (tests/real/cluster.sh),
# under wrk: rolling restart with --drain, an upgrade on one port with
# --reuse-port, SIGKILL of a replica, a change of the active node, the load
# on Consul; then the network-namespace proof that Vault sees the client's
# own address (netns.sh). Needs root (network namespaces); installs haproxy
# and wrk from Debian if missing. Prints the figures; exits 1 if a bound is
# missed. Everything runs in namespaces made here and removed on exit.
#
# The scenarios run in a namespace of their own: its loopback is theirs
# (no port clashes with anything else on the machine), and in it
# net.ipv4.tcp_migrate_req=1, as the README recommends for --reuse-port.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
log() { printf '[%s] %s\n' "$(date +%T)" "$*"; }

[ "$(id -u)" = 0 ] || { echo "SKIPPED: tests/scale needs root (network namespaces)"; exit 0; }
# shellcheck source=tests/debian.sh
. tests/debian.sh
install_missing haproxy wrk
if [ -z "${VAULT_REDIRECTOR_BIN:-}" ]; then cargo build --release --quiet; fi
BIN=${VAULT_REDIRECTOR_BIN:-$ROOT/target/release/vault-redirector}
# Components (Consul, OpenBao, hvac) are fetched here, with the network,
# before anything runs in a namespace without one.
REAL_DIR=$(mktemp -d /tmp/vault-redirector-scale-setup.XXXXXX)
# shellcheck source=tests/real/cluster.sh
. tests/real/cluster.sh
ensure_components
rm -rf "$REAL_DIR"

NS=vr-scale-$$
RESULTS=$(mktemp /tmp/vault-redirector-scale-results.XXXXXX)
remove_namespace() {
  ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
}
trap 'remove_namespace; rm -f "$RESULTS"' EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
ip netns exec "$NS" sysctl -qw net.ipv4.tcp_migrate_req=1
status=0
started=$(date +%s)
ip netns exec "$NS" tests/scale/scenarios.sh "$BIN" "$RESULTS" || status=1
log "scenarios took $(($(date +%s) - started)) s"
remove_namespace
started=$(date +%s)
tests/scale/netns.sh "$BIN" "$RESULTS" || status=1
log "network-namespace proof took $(($(date +%s) - started)) s"
echo
echo "=== figures"
cat "$RESULTS"
[ "$status" = 0 ] && echo "tests/scale: PASS" || echo "tests/scale: FAIL"
exit "$status"
