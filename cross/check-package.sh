#!/usr/bin/env bash
# Checks the systemd units and the Debian package, as CI runs them:
#   - the service unit's sandbox: `systemd-analyze security --offline=true`,
#     overall exposure at most 2.0;
#   - the amd64 package (cross/deb.sh): lintian without errors, its
#     contents, the conffile;
#   - both units verified (`systemd-analyze verify`) as installed by the
#     package, its binary and man page included;
#   - the packaged binary runs: -V, and under `systemd-socket-activate`
#     (socket activation as systemd does it) against a fake Consul;
#   - the black-box service tests (notify, watchdog, socket activation)
#     against the packaged binary.
# Installs what it lacks (Debian's systemd, lintian, man-db, curl), as root.
#
# Usage: cross/check-package.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# systemd counts exposure in tenths: 20 is 2.0.
MAX_EXPOSURE_TENTHS=20

step() { printf '\n--- %s\n' "$*"; }

# shellcheck source=tests/debian.sh
. tests/debian.sh
install_missing systemd-analyze:systemd systemd-socket-activate:systemd lintian man:man-db curl \
  dpkg-deb:dpkg

work=$(mktemp -d /tmp/vault-redirector-package.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

step "service unit sandbox: exposure <= 2.0 (systemd-analyze security --offline=true)"
systemd-analyze security --offline=true --threshold=$MAX_EXPOSURE_TENTHS \
  cross/package/vault-redirector.service | tail -n 1

step "amd64 package (cross/deb.sh amd64)"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
cross/deb.sh amd64
deb=target/deb/vault-redirector_${version}_amd64.deb

step "lintian: no errors"
lintian --allow-root --fail-on error --display-info "$deb" | tee "$work/lintian.txt"
echo "lintian: $(grep -c '^E:' "$work/lintian.txt" || true) errors, $(grep -c '^W:' "$work/lintian.txt" || true) warnings, $(grep -c '^I:' "$work/lintian.txt" || true) infos"

step "contents and conffile"
dpkg-deb -c "$deb" | awk '{print $1, $NF}'
for path in ./usr/bin/vault-redirector ./lib/systemd/system/vault-redirector.service \
  ./lib/systemd/system/vault-redirector.socket ./usr/share/man/man8/vault-redirector.8.gz \
  ./etc/default/vault-redirector; do
  dpkg-deb -c "$deb" | awk '{print $NF}' | grep -qx "$path" || { echo "missing from the package: $path" >&2; exit 1; }
done
[ "$(dpkg-deb -f "$deb" Architecture)" = amd64 ]
dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles | grep -qx /etc/default/vault-redirector

step "unpacked: units verify (systemd-analyze verify)"
root=$work/root
dpkg-deb -x "$deb" "$root"
bin=$root/usr/bin/vault-redirector
# The units as installed, pointing at the unpacked binary; the man page
# from the package answers Documentation=man:vault-redirector(8).
mkdir "$work/units"
for unit in vault-redirector.service vault-redirector.socket; do
  sed "s#/usr/bin/vault-redirector#$bin#" "$root/lib/systemd/system/$unit" >"$work/units/$unit"
done
MANPATH=$root/usr/share/man systemd-analyze verify \
  "$work/units/vault-redirector.service" "$work/units/vault-redirector.socket"
echo "units verify"

step "the packaged binary runs"
"$bin" -V
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
consul_port=$(free_port)
python3 tests/bench/fake_consul.py "$consul_port" tests/data/consul/steady_passing.json &
pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$consul_port/" && break; sleep 0.1; done
port=$(free_port)
# systemd-socket-activate listens, and starts the binary with the socket
# (LISTEN_FDS=1) at the first connection, as the .socket unit does.
systemd-socket-activate -l "127.0.0.1:$port" "$bin" "127.0.0.1:$consul_port" 2>"$work/daemon.log" &
activator=$!
pids+=("$activator")
for _ in $(seq 100); do grep -q "Listening on" "$work/daemon.log" && break; sleep 0.1; done
location=$(curl -s --max-time 20 -o /dev/null -w '%{http_code} %{redirect_url}' "http://127.0.0.1:$port/v1/sys/health?x=1")
echo "through systemd-socket-activate: $location"
# The fixture's active node is testnode:8210.
[ "$location" = "307 http://testnode:8210/v1/sys/health?x=1" ] || { cat "$work/daemon.log"; exit 1; }
grep -q "Socket activation: serving the 1 listening socket(s) passed by the service manager" "$work/daemon.log" ||
  { cat "$work/daemon.log"; exit 1; }
kill -TERM "$activator"
wait "$activator" && echo "exited 0 on SIGTERM"

step "black-box service tests against the packaged binary"
VAULT_REDIRECTOR_BIN=$bin cargo test --locked --test redirector service::
