#!/usr/bin/env bash
# Try vault-redirector in two minutes: a real Consul agent, a real 3-node
# OpenBao (Vault API) cluster registered in it as Vault registers itself,
# and the redirector in front. Prints what to try; Ctrl-C tears it all down.
# Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/../.."
REAL_DIR=$(mktemp -d /tmp/vault-redirector-demo.XXXXXX)
# shellcheck source=tests/real/cluster.sh
. tests/real/cluster.sh
trap cleanup EXIT
trap 'echo; echo "stopping..."; exit 0' INT TERM

ensure_components
log "building the redirector (cargo build --release; about a minute the first time)"
cargo build --release
log "starting Consul (127.0.0.1:$CONSUL_HTTP) and OpenBao on ports ${NODES[*]} (about 30 s)"
start_consul
start_cluster
start_registrar
start_redirector "$PWD/target/release/vault-redirector" -v

cat <<TXT

  The redirector listens on http://127.0.0.1:$REDIRECTOR_PORT (log: $REAL_DIR/redirector.log)
  Root token: $ROOT_TOKEN

  Try:
    curl -si http://127.0.0.1:$REDIRECTOR_PORT/v1/sys/health                 # a 307 to the active node
    curl -s  http://127.0.0.1:$REDIRECTOR_PORT/vault-redirector-health; echo  # the health JSON
    BAO_ADDR=http://127.0.0.1:$REDIRECTOR_PORT BAO_TOKEN=$ROOT_TOKEN $BAO kv put -mount=secret demo hello=world

  Then make the active node step down and watch the Location follow:
    BAO_ADDR=http://127.0.0.1:$REDIRECTOR_PORT BAO_TOKEN=$ROOT_TOKEN $BAO operator step-down

  Ctrl-C stops everything.
TXT
# Wait in `wait`, which a signal interrupts (a foreground sleep would hold
# off the traps until it ends).
while :; do
  sleep 3600 &
  PIDS+=("$!")
  wait $! || true
done
