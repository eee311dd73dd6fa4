#!/usr/bin/env bash
# Real-world suite without Consul: a real 3-node OpenBao 2.7.2 raft cluster,
# no Consul, no registrar; the redirector finds the active node by asking
# the nodes themselves (--vault-nodes, -p 1), over HTTP or over HTTPS with
# node certificates from a throwaway CA. Real clients (bao CLI, hvac,
# curl -L) through the redirector; a step-down, a SIGKILL of the active
# node and a sealed standby, each measured (tests/real/failover.py samples
# every 20 ms) and checked against the bounds:
#   clients sent to a node not answering 200: <= 1.0 s
#   the new active served <= 1.0 s after it first answers 200
#
# Usage: tests/real/vault_nodes.sh [http|https]   (default: both, in turn)
# Components as tests/real/run.sh installs them (SKIPPED if they cannot be).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
MODES=("${@:-http}")
[ $# -gt 0 ] || MODES=(http https)

# Each mode runs in a child of its own (fresh cluster, fresh directory).
if [ "${#MODES[@]}" -gt 1 ]; then
  for mode in "${MODES[@]}"; do "$0" "$mode"; done
  exit 0
fi
MODE=${MODES[0]}
REAL_DIR=$(mktemp -d /tmp/vault-redirector-nodes.XXXXXX)
if [ "$MODE" = https ]; then
  command -v openssl >/dev/null || { echo "SKIPPED: openssl is missing"; exit 0; }
  NODE_TLS_DIR=$REAL_DIR/tls
  mkdir -p "$NODE_TLS_DIR"
fi
# shellcheck source=tests/real/cluster.sh
. tests/real/cluster.sh
# Ports of their own: tests/real/run.sh may run beside this suite.
NODES=(18400 18410 18420)
REDIRECTOR_PORT=18480
trap cleanup EXIT
FAILED=0
fail() { echo "FAIL ($MODE): $*"; FAILED=1; }
le() { awk -v a="$1" -v b="$2" 'BEGIN{exit !(a<=b)}'; }
# The issue's bounds, with -p 1.
BOUND_WRONG=1.0
BOUND_SERVED=1.0

make_tls() { # a throwaway CA and one certificate for 127.0.0.1
  # shellcheck source=tests/pki.sh
  . tests/pki.sh
  make_ca "$NODE_TLS_DIR"
  make_leaf "$NODE_TLS_DIR" node
}

ensure_components
if [ -z "${VAULT_REDIRECTOR_BIN:-}" ]; then cargo build --release --quiet; fi
BIN=${VAULT_REDIRECTOR_BIN:-$ROOT/target/release/vault-redirector}
[ "$MODE" = https ] && make_tls
CA_ARG=-
CLIENT_TLS=()
if [ "$MODE" = https ]; then
  CA_ARG=$NODE_TLS_DIR/ca.pem
  export BAO_CACERT=$CA_ARG
  CLIENT_TLS=(--cacert "$CA_ARG")
fi

log "($MODE) starting a 3-node OpenBao cluster, no Consul"
start_cluster
ACTIVE=$(wait_active)
NODE_URLS=()
for p in "${NODES[@]}"; do NODE_URLS+=("$NODE_SCHEME://127.0.0.1:$p"); done
LIST=$(IFS=,; echo "${NODE_URLS[*]}")
VAULT_CACERT=${NODE_TLS_DIR:+$NODE_TLS_DIR/ca.pem} \
  "$BIN" -p 1 -P "$REDIRECTOR_PORT" --bind 127.0.0.1 --vault-nodes "$LIST" \
  > "$REAL_DIR/redirector.log" 2>&1 &
REDIRECTOR_PID=$!
PIDS+=("$REDIRECTOR_PID")
REDIR=http://127.0.0.1:$REDIRECTOR_PORT
wait_http "$REDIR/vault-redirector-health"
log "($MODE) active node: 127.0.0.1:$ACTIVE; redirector: $BIN --vault-nodes $LIST"
[ "$(redirect_port)" = "$ACTIVE" ] || fail "the redirector does not point at the active node"

log "($MODE) scenario 1: bao CLI, hvac, curl -L through the redirector"
BAO_ADDR=$REDIR BAO_TOKEN=$ROOT_TOKEN "$BAO" kv put -mount=secret cli-key v=from-bao >/dev/null ||
  fail "bao kv put through the redirector"
got=$(BAO_ADDR=$NODE_SCHEME://127.0.0.1:$ACTIVE BAO_TOKEN=$ROOT_TOKEN "$BAO" kv get -mount=secret -field=v cli-key || true)
[ "$got" = from-bao ] || fail "bao write not on the active node (got '$got')"
"$VENV/bin/python" - "$REDIR" "$ROOT_TOKEN" "$CA_ARG" <<'PY' || fail "hvac write/read/list"
import sys, hvac
verify = True if sys.argv[3] == "-" else sys.argv[3]
c = hvac.Client(url=sys.argv[1], token=sys.argv[2], verify=verify)
c.secrets.kv.v2.create_or_update_secret(path="hvac-key", secret={"v": "from-hvac"}, mount_point="secret")
assert c.secrets.kv.v2.read_secret_version(path="hvac-key", mount_point="secret")["data"]["data"]["v"] == "from-hvac"
keys = c.secrets.kv.v2.list_secrets(path="", mount_point="secret")["data"]["keys"]
assert "hvac-key" in keys and "cli-key" in keys, keys
PY
curl -sSfL "${CLIENT_TLS[@]}" -X POST -H "X-Vault-Token: $ROOT_TOKEN" -d '{"data":{"v":"from-curl"}}' \
  "$REDIR/v1/secret/data/curl-key" >/dev/null || fail "curl -L write"
got=$(curl -sSfL "${CLIENT_TLS[@]}" -H "X-Vault-Token: $ROOT_TOKEN" "$REDIR/v1/secret/data/curl-key" |
  grep -o '"v":"[^"]*"' || true)
[ "$got" = '"v":"from-curl"' ] || fail "curl -L read (got '$got')"
health=$(curl -s "$REDIR/vault-redirector-health")
"$VENV/bin/python" - "$health" <<'PY' || fail "health JSON: $health"
import json, sys
h = json.loads(sys.argv[1])
assert h["consul_host_port"] is None, h
assert sorted(n["status"] for n in h["vault_nodes"]) == ["active", "standby", "standby"], h
PY

# Raft voters: autopilot promotes joined nodes after a stabilisation time; a
# leader killed before that leaves no quorum.
raft_voters() {
  local active
  active=$(active_port)
  [ -n "$active" ] || { echo 0; return 0; }
  BAO_ADDR=$NODE_SCHEME://127.0.0.1:$active BAO_TOKEN=$ROOT_TOKEN "$BAO" operator raft list-peers -format=json 2>/dev/null |
    python3 -c 'import json,sys; print(sum(1 for s in json.load(sys.stdin)["data"]["config"]["servers"] if s["voter"]))' 2>/dev/null ||
    echo 0
}
settle() { # an active node, two unsealed standbys, three voters
  local i codes
  for i in $(seq 600); do
    codes=$(for p in "${NODES[@]}"; do node_health_code "$p"; echo; done | sort | tr '\n' ' ')
    [ "$codes" = "200 429 429 " ] && [ "$(raft_voters)" = 3 ] && return 0
    sleep 0.1
  done
  echo "the cluster did not settle: health codes $codes" >&2
  return 1
}

measure() { # NAME OLD_PORT NEW LIMIT TRIGGER... : runs failover.py, sets its figures
  local name=$1 old=$2 new=$3 limit=$4
  shift 4
  local out
  out=$("$VENV/bin/python" "$REAL_TESTS/failover.py" "$REDIR" "$NODE_SCHEME://127.0.0.1:$old" "$limit" "$new" \
    "$CA_ARG" "${NODE_URLS[@]}" -- "$@")
  eval "$out"
  echo "FIGURES ($MODE, -p 1) $name: sent to a node not answering 200 ${WRONG}s (to the old one ${DEAD}s), 503 ${REFUSED}s, election ${ELECTION}s, new active served ${SERVED}s after it first answered 200"
  [ "$SERVED" != never ] || { fail "$name: the new active node was never served"; return 0; }
  le "$WRONG" "$BOUND_WRONG" || fail "$name: clients sent to a node not answering 200 for ${WRONG}s (> ${BOUND_WRONG}s)"
  le "$SERVED" "$BOUND_SERVED" || fail "$name: new active served ${SERVED}s after it answered 200 (> ${BOUND_SERVED}s)"
}

settle
ACTIVE=$(wait_active)
log "($MODE) scenario 2: step-down of the active node ($ACTIVE)"
measure step-down "$ACTIVE" 0 60 env BAO_ADDR="$NODE_SCHEME://127.0.0.1:$ACTIVE" BAO_TOKEN="$ROOT_TOKEN" \
  "$BAO" operator step-down

settle
ACTIVE=$(wait_active)
log "($MODE) scenario 3: SIGKILL of the active node ($ACTIVE)"
KILLED=$ACTIVE
measure SIGKILL "$KILLED" 1 90 kill -KILL "${NODE_PID[$KILLED]}"
wait "${NODE_PID[$KILLED]}" 2>/dev/null || true
grep -q "Vault node $NODE_SCHEME://127.0.0.1:$KILLED is now unreachable" "$REAL_DIR/redirector.log" ||
  fail "SIGKILL: the node's change of state was not logged"
[ "$(grep -c "Vault node $NODE_SCHEME://127.0.0.1:$KILLED is now unreachable" "$REAL_DIR/redirector.log")" = 1 ] ||
  fail "SIGKILL: the node's change of state was logged more than once"

# Bring the killed node back (sealed after a restart), so quorum survives.
start_node "$KILLED"
unseal "$KILLED"
settle
ACTIVE=$(wait_active)
log "($MODE) scenario 4: a sealed standby"
seal_a_standby_and_sample
ok=$OK_SAMPLES sealed=$SEALED_SAMPLES
status=$(curl -s "$REDIR/vault-redirector-health" | python3 -c "import json,sys; print([n['status'] for n in json.load(sys.stdin)['vault_nodes'] if n['url'].endswith(':$STANDBY')][0])")
echo "FIGURES ($MODE) sealed standby: $ok of 50 samples sent to the active node, $sealed to the sealed one; health JSON says '$status'"
[ "$sealed" = 0 ] || fail "sealed standby: clients were sent to the sealed node"
[ "$ok" -ge 45 ] || fail "sealed standby: only $ok of 50 samples sent to the active node"
[ "$status" = sealed ] || fail "sealed standby: the health JSON says '$status'"
BAO_ADDR=$REDIR BAO_TOKEN=$ROOT_TOKEN "$BAO" kv put -mount=secret sealed-key v=1 >/dev/null ||
  fail "write with a sealed standby"

exit_if_failed 40
log "($MODE) all scenarios passed"
