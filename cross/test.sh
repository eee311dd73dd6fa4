#!/usr/bin/env bash
# Run the black-box integration tests against a cross-built binary; an
# aarch64 one runs under qemu user-mode emulation.
#
# Usage: cross/test.sh TRIPLE
set -euo pipefail
cd "$(dirname "$0")/.."
triple=${1:?usage: cross/test.sh TRIPLE}

cross/build.sh "$triple"
bin=$PWD/target/$triple/release/vault-redirector

case $triple in
  x86_64-*) runner=() ;;
  aarch64-*)
    dpkg -s qemu-user-static >/dev/null 2>&1 || {
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static >/dev/null
    }
    runner=(qemu-aarch64-static)
    ;;
  *) echo "unsupported target: $triple" >&2; exit 2 ;;
esac

# The tests spawn VAULT_REDIRECTOR_BIN directly; a wrapper puts the
# emulator in front (exec keeps the PID, so signals reach the binary).
wrapper=$(mktemp /tmp/vault-redirector-"$triple".XXXXXX)
trap 'rm -f "$wrapper"' EXIT
printf '#!/bin/sh\nexec %s "%s" "$@"\n' "${runner[*]:-}" "$bin" > "$wrapper"
chmod +x "$wrapper"
"$wrapper" -V

echo "running the integration tests against $bin ${runner[*]:+under ${runner[*]}}"
VAULT_REDIRECTOR_BIN=$wrapper cargo test --locked --test redirector
