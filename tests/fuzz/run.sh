#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of every parser that reads
# what peers and operators send: the request stream through Session, the
# Consul answer, Vault's /v1/sys/health and /v1/sys/leader answers, the PEM
# reader, the command line and environment.
#
# Usage: tests/fuzz/run.sh [SECONDS] [TARGET...]
#   SECONDS per target (default 60); all targets unless some are named.
# Fails on the first crash (panic, failed invariant, out-of-memory,
# timeout); libFuzzer leaves the input under tests/fuzz/artifacts/<target>/.
#
# A fresh machine has only the stable toolchain: cargo-fuzz needs nightly
# flags (-Z), which stable accepts with RUSTC_BOOTSTRAP=1. No sanitizer
# (-s none): the parsers are safe Rust, where a bug shows as a panic; debug
# assertions (-a) catch integer overflow. The committed seeds under
# corpus/<target>/ are read only; what libFuzzer finds goes to a temporary
# corpus that is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
case $seconds in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(session consul_answer vault_answers pem cli)

export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz

# Bounds per input: a slow or huge one is a finding too.
TIMEOUT_SECS=10
RSS_LIMIT_MB=1024
MAX_INPUT_BYTES=16384

cargo fuzz build --fuzz-dir "$PWD" -s none -a
work=$(mktemp -d /tmp/vault-redirector-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
for target in "${targets[@]}"; do
  echo "=== fuzzing $target for ${seconds}s"
  mkdir -p "$work/$target" "artifacts/$target"
  # Both cores unless told otherwise (FUZZ_JOBS=1 on a busy machine).
  jobs=${FUZZ_JOBS:-$(nproc)}
  log=$work/$target.log
  if ! cargo fuzz run --fuzz-dir "$PWD" -s none -a "$target" "$work/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout="$TIMEOUT_SECS" -rss_limit_mb="$RSS_LIMIT_MB" \
    -max_len="$MAX_INPUT_BYTES" -print_final_stats=1 -fork="$jobs" \
    -artifact_prefix="$PWD/artifacts/$target/" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz target $target failed; the input is under tests/fuzz/artifacts/$target/" >&2
    exit 1
  fi
  # The last progress line: executions, coverage (cov, ft), corpus, exec/s.
  grep -E '^#[0-9]+' "$log" | tail -n 1
done
echo "=== all fuzz targets ran ${seconds}s without a finding"
