#!/usr/bin/env bash
# Static, stripped musl builds of vault-redirector.
#
# Usage: cross/build.sh [TRIPLE...]
#   default: x86_64-unknown-linux-musl aarch64-unknown-linux-musl
# Output: target/<triple>/release/vault-redirector
#
# Installs what it needs when missing (as root): the rustup targets, and
# Debian's musl-tools (x86_64: a musl C compiler for ring's C and assembly)
# and gcc-aarch64-linux-gnu (aarch64: a C compiler for ring; the Rust side
# links with rust-lld, which ships with the toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -eq 0 ]; then
  set -- x86_64-unknown-linux-musl aarch64-unknown-linux-musl
fi

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

for triple in "$@"; do
  case $triple in
    x86_64-unknown-linux-musl)
      apt_install musl-tools file
      export CC_x86_64_unknown_linux_musl=musl-gcc
      # A static PIE (ASLR) carries a relocation per pointer in its data,
      # 72 KiB as RELA; packed as RELR (binutils >= 2.38, applied by the
      # musl 1.2.5 start-up code Rust ships) they take 1 KiB. This keeps the
      # binary under 2 MiB without giving up PIE.
      export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C link-arg=-Wl,-z,pack-relative-relocs"
      ;;
    aarch64-unknown-linux-musl)
      apt_install gcc-aarch64-linux-gnu file
      export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
      export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld
      ;;
    armv7-unknown-linux-musleabihf)
      echo "armv7 musl: its Rust standard library cannot be installed from the registries here" >&2
      exit 1
      ;;
    *)
      echo "unsupported target: $triple" >&2
      exit 2
      ;;
  esac
  rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"
  cargo build --release --locked --target "$triple"
  bin=target/$triple/release/vault-redirector
  info=$(file -b "$bin")
  case $info in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) echo "not static: $bin: $info" >&2; exit 1 ;;
  esac
  echo "$bin: $(stat -c %s "$bin") bytes; $info"
done
