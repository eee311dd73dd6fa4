#!/usr/bin/env bash
# Benchmark the release binary beside nginx (1 worker, the same 307) on
# loopback, and print one markdown table of medians and ratios.
#
# Usage: tests/bench/run.sh [-d SECONDS] [-n RUNS] [--python] [--tls] [--floor] [-s SCENARIOS]
#                           [--compare NAME=BINARY]...
#   -d SECONDS    length of each wrk run (default 10; the bar needs >= 10)
#   -n RUNS       repetitions, interleaved (default 3; the bar needs >= 3)
#   -s SCENARIOS  comma-separated, of: ka1 (1 keep-alive connection), ka50,
#                 ka1000 (keep-alive), close50 (`Connection: close`: one TCP
#                 connection, and with TLS one full handshake, per request),
#                 health50 (GET /vault-redirector-health). Default: all five,
#                 and ka50,close50 for the TLS servers.
#   --tls         also measure our TLS listener (--no-tls-resumption) against
#                 nginx with the same certificate, RSA-2048 and ECDSA P-256,
#                 neither side resuming sessions
#   --floor       also measure tests/bench/floor.c (one recv + one send per
#                 request, nothing else): the kernel's share no server avoids
#   --compare NAME=BINARY
#                 also measure another build of the redirector, as NAME, in
#                 the same runs (before/after a change: build the old commit
#                 elsewhere and name its binary here)
#   --python      also measure the original Python 0.2.0 (installed in a venv
#                 from PyPI; PY_VENV chooses where, default
#                 /tmp/vault-redirector-py020)
# Installs what is missing (Debian's wrk, nginx-light, openssl, a C compiler
# for --floor) with apt-get, as root. Traffic stays on loopback; every wrk
# run is bounded in time; every process started is stopped on exit or
# Ctrl-C. VAULT_REDIRECTOR_BIN measures another binary than the release
# build. Takes about targets x scenarios x runs x (SECONDS + 1 s).
#
# Method (tests/bench/bench.py does the measuring):
# - wrk runs pinned to CPU 0 and every server to CPU 1 (taskset), so the
#   client never steals the server's core and each server gets one core,
#   as nginx's single worker has.
# - The figure that matters is the server's CPU time per request: utime +
#   stime of its processes from /proc/PID/stat over a run, divided by the
#   requests wrk completed. On two cores wrk often saturates its own core
#   first, which caps req/s for every server alike; CPU per request still
#   shows what each server spends, and "of which sys" how much of it is the
#   kernel's TCP work.
# - Single runs on a shared machine wander by tens of percent. Repetitions
#   are interleaved (run 1 of every target and scenario, then run 2, ...) so
#   that a change of the machine's load hits all targets alike, and medians
#   are reported because one disturbed run moves a median little.
# - Absolute figures depend on the machine and its load at the time, so
#   every target is also given as a ratio to a baseline measured in the same
#   invocation (nginx1, or for TLS the nginx with the same key): that ratio
#   is what can be compared across machines and days.
set -euo pipefail
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/../.."
ROOT=$PWD
FIXTURE=$ROOT/tests/data/consul/health_service_vault_passing_active.json

usage() { sed -n '/^# Usage:/,/^# Method/p' "$SELF" | sed -e '$d' -e 's/^# \{0,1\}//'; }
value() { [ $# -ge 2 ] || { usage >&2; exit 2; }; }
DUR=10 RUNS=3 PYTHON=0 TLS=0 FLOOR=0 SCENARIOS=
COMPARE=()
while [ $# -gt 0 ]; do
  case $1 in
    -d) value "$@"; DUR=$2; shift 2 ;;
    -n) value "$@"; RUNS=$2; shift 2 ;;
    -s) value "$@"; SCENARIOS=$2; shift 2 ;;
    --compare) value "$@"; COMPARE+=(--compare "$2"); shift 2 ;;
    --python) PYTHON=1; shift ;;
    --tls) TLS=1; shift ;;
    --floor) FLOOR=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
for s in ${SCENARIOS//,/ }; do
  case $s in ka1|ka50|ka1000|close50|health50) ;; *) echo "unknown scenario: $s" >&2; exit 2 ;; esac
done
for n in "$DUR" "$RUNS"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "-d and -n take a positive whole number" >&2; exit 2; }
done

# Debian packages this run needs but the machine lacks.
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v taskset >/dev/null || missing+=(util-linux)
command -v python3 >/dev/null || missing+=(python3)
[ "$TLS" = 0 ] || command -v openssl >/dev/null || missing+=(openssl)
[ "$FLOOR" = 0 ] || command -v cc >/dev/null || missing+=(gcc libc6-dev)
[ "$PYTHON" = 0 ] || python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  [ "$(id -u)" = 0 ] || { echo "run as root, or install them first" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH=$PATH:/usr/sbin

if [ -n "${VAULT_REDIRECTOR_BIN:-}" ]; then
  BIN=$VAULT_REDIRECTOR_BIN
else
  cargo build --release --quiet
  BIN=$ROOT/target/release/vault-redirector
fi

PY_ARGS=()
if [ "$PYTHON" = 1 ]; then
  VENV=${PY_VENV:-/tmp/vault-redirector-py020}
  if [ ! -x "$VENV/bin/vault-redirector" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'vault-redirector[tls]==0.2.0' 'twisted[tls]'
  fi
  PY_ARGS=(--python "$VENV/bin/vault-redirector")
fi

ARGS=(--seconds "$DUR" --runs "$RUNS" --binary "$BIN" --fixture "$FIXTURE")
[ -z "$SCENARIOS" ] || ARGS+=(--scenarios "$SCENARIOS")
[ "$TLS" = 0 ] || ARGS+=(--tls)
[ "$FLOOR" = 0 ] || ARGS+=(--floor)
ARGS+=("${COMPARE[@]}")
echo "# tests/bench/run.sh -d $DUR -n $RUNS${SCENARIOS:+ -s $SCENARIOS}$([ "$TLS" = 0 ] || echo ' --tls')$([ "$FLOOR" = 0 ] || echo ' --floor')$([ "$PYTHON" = 0 ] || echo ' --python') ${COMPARE[*]}"
# exec: the benchmark's process is this one, so Ctrl-C and kill reach the
# code that stops the servers.
exec python3 -B "$ROOT/tests/bench/bench.py" "${ARGS[@]}" "${PY_ARGS[@]}"
