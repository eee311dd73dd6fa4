#!/usr/bin/env bash
# Debian packages of vault-redirector, from the static musl binaries.
#
# Usage: cross/deb.sh [ARCH...]     ARCH: amd64, arm64 (default: both)
# Output: target/deb/vault-redirector_<version>_<arch>.deb
#
# The package holds /usr/bin/vault-redirector, the systemd units
# (vault-redirector.service and .socket), the man page, and
# /etc/default/vault-redirector (a conffile) read by the service. No
# maintainer scripts: nothing starts on install (the Consul address needs
# a look first); `systemctl enable --now vault-redirector.socket` (or
# .service) does. Builds the binaries with cross/build.sh when missing or
# stale (cargo decides), and needs dpkg-deb (Debian's dpkg).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -eq 0 ]; then
  set -- amd64 arm64
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
pkg=cross/package
out=target/deb
mkdir -p "$out"

build_one() {
  local arch=$1 triple
  case $arch in
    amd64) triple=x86_64-unknown-linux-musl ;;
    arm64) triple=aarch64-unknown-linux-musl ;;
    *) echo "unsupported architecture: $arch (amd64, arm64)" >&2; exit 2 ;;
  esac
  cross/build.sh "$triple" >/dev/null
  local root=$out/root-$arch
  rm -rf "$root"
  install -D -m 0755 "target/$triple/release/vault-redirector" "$root/usr/bin/vault-redirector"
  install -D -m 0644 "$pkg/vault-redirector.service" "$root/lib/systemd/system/vault-redirector.service"
  install -D -m 0644 "$pkg/vault-redirector.socket" "$root/lib/systemd/system/vault-redirector.socket"
  install -D -m 0644 "$pkg/vault-redirector.default" "$root/etc/default/vault-redirector"
  install -d -m 0755 "$root/usr/share/man/man8" "$root/usr/share/doc/vault-redirector"
  gzip -9n <"$pkg/vault-redirector.8" >"$root/usr/share/man/man8/vault-redirector.8.gz"
  install -m 0644 "$pkg/copyright" "$root/usr/share/doc/vault-redirector/copyright"
  changelog "$version" | gzip -9n >"$root/usr/share/doc/vault-redirector/changelog.gz"
  install -D -m 0644 "$pkg/lintian-overrides" "$root/usr/share/lintian/overrides/vault-redirector"
  chmod 0644 "$root/usr/share/man/man8/vault-redirector.8.gz" "$root/usr/share/doc/vault-redirector/changelog.gz"

  install -d -m 0755 "$root/DEBIAN"
  echo /etc/default/vault-redirector >"$root/DEBIAN/conffiles"
  (cd "$root" && find usr lib -type f -print0 | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
  control "$arch" "$(du -sk --exclude=DEBIAN "$root" | cut -f1)" >"$root/DEBIAN/control"
  chmod 0644 "$root/DEBIAN/"*
  local deb=$out/vault-redirector_${version}_$arch.deb
  # Reproducible: file times from the last commit (or a fixed date).
  local epoch
  epoch=$(git log -1 --format=%ct 2>/dev/null || echo 1700000000)
  find "$root" -exec touch -h -d "@$epoch" {} +
  SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
  rm -rf "$root"
  echo "$deb: $(stat -c %s "$deb") bytes"
}

control() {
  cat <<CONTROL
Package: vault-redirector
Version: $version
Architecture: $1
Maintainer: The vault-redirector authors <vault-redirector@users.noreply.github.com>
Installed-Size: $2
Section: net
Priority: optional
Homepage: https://github.com/vault-redirector/vault-redirector-rs
Description: redirect Vault and OpenBao clients to the active HA node
 vault-redirector sits in front of a HashiCorp Vault or OpenBao
 high-availability cluster, behind any load balancer, and answers every
 HTTP(S) request with a 307 redirect to the cluster's active node, which it
 learns from Consul. It serves a health check for the load balancer, and
 runs as a sandboxed systemd service (notify, watchdog, socket activation).
 .
 A drop-in replacement for the Python vault-redirector 0.2.0: one static
 binary, no dependencies.
CONTROL
}

changelog() {
  cat <<CHANGELOG
vault-redirector ($1) unstable; urgency=medium

  * Upstream release $1; see /usr/share/doc/vault-redirector and the
    project's README for what changed.

 -- The vault-redirector authors <vault-redirector@users.noreply.github.com>  $(date -u -R -d "@$(git log -1 --format=%ct 2>/dev/null || echo 1700000000)")
CHANGELOG
}

for arch in "$@"; do
  build_one "$arch"
done
