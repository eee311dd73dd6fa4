#!/usr/bin/env bash
# Benchmark the release binary side by side with nginx (1 worker) through
# ../shared/tools/bench-anchors.sh, in one invocation so the ratios are
# comparable. Prints the harness's table with ratios against nginx1.
#
# Usage: tests/bench/run.sh [-d SECONDS] [-n RUNS] [--python] [--tls] [--floor]
#   -d SECONDS  length of each wrk run (default 10; the bar needs >= 10)
#   -n RUNS     repetitions, interleaved (default 3; the bar needs >= 3)
#   --python    also measure the original Python 0.2.0 (installed in a venv)
#   --tls       also measure our TLS listener against nginx-tls-rsa/-ecdsa
#   --floor     also measure tests/bench/floor.c (one recv + one send per
#               request, nothing else): the kernel's share no server avoids
# Needs Debian's wrk nginx-light haproxy time (installed if missing, as root).
# Traffic stays on loopback. The run takes about (targets x 5 scenarios x
# runs x seconds); the default is about 6 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
HARNESS=$ROOT/../shared/tools/bench-anchors.sh
FIXTURE=$ROOT/../shared/fixtures/consul/health_service_vault_passing_active.json

DUR=10 RUNS=3 PYTHON=0 TLS=0 FLOOR=0
while [ $# -gt 0 ]; do
  case $1 in
    -d) DUR=$2; shift 2 ;;
    -n) RUNS=$2; shift 2 ;;
    --python) PYTHON=1; shift ;;
    --tls) TLS=1; shift ;;
    --floor) FLOOR=1; shift ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
  esac
done

need=()
for tool in wrk nginx haproxy; do command -v $tool >/dev/null || need+=("$tool"); done
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: wrk nginx-light haproxy time"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light haproxy time >/dev/null
fi

cargo build --release --quiet
BIN=${VAULT_REDIRECTOR_BIN:-$ROOT/target/release/vault-redirector}

# Free loopback ports, picked by the kernel.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CONSUL_PORT=$(free_port) OURS_PORT=$(free_port) PY_PORT=$(free_port)

PIDS=()
WORK=$(mktemp -d /tmp/vr-bench.XXXXXX)
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2; exit 1
}

python3 "$ROOT/tests/bench/fake_consul.py" "$CONSUL_PORT" "$FIXTURE" & PIDS+=($!)
wait_port "$CONSUL_PORT"

# -l: per-request logging off, as an operator would run it under load.
taskset -c 1 "$BIN" -l -P "$OURS_PORT" --bind 127.0.0.1 "127.0.0.1:$CONSUL_PORT" 2>"$WORK/ours.log" & PIDS+=($!)
OURS_PID=$!
wait_port "$OURS_PORT"
TARGETS=(nginx1 "ours=http://127.0.0.1:$OURS_PORT@$OURS_PID")

if [ "$TLS" = 1 ]; then
  # nginx's TLS anchors have no session resumption: neither have we here,
  # so close50 measures a full handshake per request on both sides.
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -keyout "$WORK/rsa.key" -out "$WORK/rsa.crt" 2>/dev/null
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -keyout "$WORK/ec.key" -out "$WORK/ec.crt" 2>/dev/null
  for kind in rsa ec; do
    port=$(free_port)
    taskset -c 1 "$BIN" -l -S --no-tls-resumption -P "$port" --bind 127.0.0.1 \
      -c "$WORK/$kind.crt" -k "$WORK/$kind.key" "127.0.0.1:$CONSUL_PORT" 2>"$WORK/ours-$kind.log" & PIDS+=($!)
    wait_port "$port"
    TARGETS+=("ours-tls-$kind=https://127.0.0.1:$port@$!")
  done
  TARGETS+=(nginx-tls-rsa nginx-tls-ecdsa)
fi

if [ "$FLOOR" = 1 ]; then
  cc -O2 -o "$WORK/floor" "$ROOT/tests/bench/floor.c"
  port=$(free_port)
  taskset -c 1 "$WORK/floor" "$port" & PIDS+=($!)
  wait_port "$port"
  TARGETS+=("floor=http://127.0.0.1:$port@$!")
fi

if [ "$PYTHON" = 1 ]; then
  VENV=${PY_VENV:-/tmp/vault-redirector-py020}
  if [ ! -x "$VENV/bin/vault-redirector" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'vault-redirector[tls]==0.2.0' 'twisted[tls]'
  fi
  taskset -c 1 "$VENV/bin/vault-redirector" -l -P "$PY_PORT" "127.0.0.1:$CONSUL_PORT" 2>"$WORK/py.log" & PIDS+=($!)
  wait_port "$PY_PORT"
  TARGETS+=("python=http://127.0.0.1:$PY_PORT@$!")
fi

echo "machine: $(nproc) cores, $(uname -r); $(date -u +%F); binary: $BIN ($(stat -c %s "$BIN") bytes)"
echo "command: $HARNESS -d $DUR -n $RUNS -b nginx1 ${TARGETS[*]}"
"$HARNESS" -d "$DUR" -n "$RUNS" -b nginx1 "${TARGETS[@]}"
