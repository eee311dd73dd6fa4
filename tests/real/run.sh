#!/usr/bin/env bash
# Real-world suite: a real Consul 1.8.7 agent, a real 3-node OpenBao 2.7.2
# (Vault API) raft cluster registered in Consul as Vault registers itself,
# real clients (bao CLI, hvac, curl -L) through our release binary, and
# failure scenarios with measured figures and generous bounds.
#
# Usage: tests/real/run.sh [--python]
#   --python  run the step-down and SIGKILL scenarios against the Python
#             0.2.0 original instead (for comparison; not part of CI)
# Components are installed on first use into $REAL_CACHE
# (default /var/cache/vault-redirector-real); if that fails the suite prints
# "SKIPPED: <reason>" and exits 0. A failing scenario exits 1.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
REAL_DIR=$(mktemp -d /tmp/vault-redirector-real.XXXXXX)
# shellcheck source=tests/real/cluster.sh
. tests/real/cluster.sh
trap cleanup EXIT

PYTHON=0
[ "${1:-}" = "--python" ] && PYTHON=1
FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }

ensure_components
if [ "$PYTHON" = 1 ]; then
  PYVENV=$CACHE/pyvr
  [ -x "$PYVENV/bin/vault-redirector" ] || {
    python3 -m venv "$PYVENV" && "$PYVENV/bin/pip" install -q 'vault-redirector[tls]==0.2.0' 'twisted[tls]'
  } || skip "the Python original could not be installed"
  BIN=$PYVENV/bin/vault-redirector
  EXTRA=()
else
  if [ -z "${VAULT_REDIRECTOR_BIN:-}" ]; then cargo build --release --quiet; fi
  BIN=${VAULT_REDIRECTOR_BIN:-$ROOT/target/release/vault-redirector}
  EXTRA=(--bind 127.0.0.1)
fi

log "starting Consul, a 3-node OpenBao cluster and the registrar"
start_consul
start_cluster
start_registrar
ACTIVE=$(wait_active)
log "active node: 127.0.0.1:$ACTIVE; redirector: $BIN"
# The default poll interval: blocking queries make switches fast anyway.
if [ "$PYTHON" = 1 ]; then
  "$BIN" -I -P "$REDIRECTOR_PORT" -p 1 "127.0.0.1:$CONSUL_HTTP" > "$REAL_DIR/redirector.log" 2>&1 &
  REDIRECTOR_PID=$!
  PIDS+=("$REDIRECTOR_PID")
  wait_http "http://127.0.0.1:$REDIRECTOR_PORT/vault-redirector-health"
else
  start_redirector "$BIN" "${EXTRA[@]}"
fi
REDIR=http://127.0.0.1:$REDIRECTOR_PORT
[ "$(redirect_port)" = "$ACTIVE" ] || fail "the redirector does not point at the active node"

# Sample the truth (which node says it is active) and the redirector's
# answer every 100 ms until the redirector has pointed at the active node
# for a second (with NEW=1: at a node other than OLD), or LIMIT seconds pass.
# Sets WRONG (s sent to a node that is not active), DEAD (s sent to OLD),
# REFUSED (s of 503), SERVED (s until the active node was served again).
watch_failover() { # OLD LIMIT NEW
  local old=$1 limit=$2 new=$3 start now truth r stable=0
  WRONG=0 DEAD=0 REFUSED=0 SERVED=""
  start=$(date +%s.%N)
  while :; do
    now=$(date +%s.%N)
    if awk -v a="$now" -v b="$start" -v l="$limit" 'BEGIN{exit !(a-b>l)}'; then break; fi
    truth=$(active_port)
    r=$(redirect_port)
    if [ -n "$truth" ] && [ "$r" = "$truth" ]; then
      if [ "$new" = 0 ] || [ "$r" != "$old" ]; then
        [ -n "$SERVED" ] || SERVED=$(awk -v a="$now" -v b="$start" 'BEGIN{printf "%.1f", a-b}')
        stable=$((stable + 1))
        [ $stable -ge 10 ] && break
      fi
    elif [ "$r" = 503 ]; then
      REFUSED=$(awk -v x="$REFUSED" 'BEGIN{printf "%.1f", x+0.1}')
    else
      WRONG=$(awk -v x="$WRONG" 'BEGIN{printf "%.1f", x+0.1}')
      [ "$r" = "$old" ] && DEAD=$(awk -v x="$DEAD" 'BEGIN{printf "%.1f", x+0.1}')
    fi
    sleep 0.1
  done
  [ -n "$SERVED" ] || SERVED=never
}

le() { awk -v a="$1" -v b="$2" 'BEGIN{exit !(a<=b)}'; }

if [ "$PYTHON" = 0 ]; then
  log "scenario 1: steady — bao CLI, hvac, curl -L through the redirector"
  BAO_ADDR=$REDIR BAO_TOKEN=$ROOT_TOKEN "$BAO" kv put -mount=secret cli-key v=from-bao >/dev/null ||
    fail "bao kv put through the redirector"
  # The Go client takes a second redirect as success: check the active node itself.
  got=$(BAO_ADDR=http://127.0.0.1:$ACTIVE BAO_TOKEN=$ROOT_TOKEN "$BAO" kv get -mount=secret -field=v cli-key || true)
  [ "$got" = from-bao ] || fail "bao write not on the active node (got '$got')"
  "$VENV/bin/python" - "$REDIR" "$ROOT_TOKEN" <<'PY' || fail "hvac write/read/list"
import sys, hvac
c = hvac.Client(url=sys.argv[1], token=sys.argv[2])
c.secrets.kv.v2.create_or_update_secret(path="hvac-key", secret={"v": "from-hvac"}, mount_point="secret")
assert c.secrets.kv.v2.read_secret_version(path="hvac-key", mount_point="secret")["data"]["data"]["v"] == "from-hvac"
keys = c.secrets.kv.v2.list_secrets(path="", mount_point="secret")["data"]["keys"]
assert "hvac-key" in keys and "cli-key" in keys, keys
PY
  curl -sSfL -X POST -H "X-Vault-Token: $ROOT_TOKEN" -d '{"data":{"v":"from-curl"}}' \
    "$REDIR/v1/secret/data/curl-key" >/dev/null || fail "curl -L write"
  got=$(curl -sSfL -H "X-Vault-Token: $ROOT_TOKEN" "$REDIR/v1/secret/data/curl-key" | grep -o '"v":"[^"]*"' || true)
  [ "$got" = '"v":"from-curl"' ] || fail "curl -L read (got '$got')"
  log "steady: ok"
fi

log "scenario 2: step-down of the active node ($ACTIVE)"
BAO_ADDR=http://127.0.0.1:$ACTIVE BAO_TOKEN=$ROOT_TOKEN "$BAO" operator step-down >/dev/null
watch_failover "$ACTIVE" 60 0
echo "FIGURES step-down: sent to a non-active node ${WRONG}s, 503 ${REFUSED}s, active node served again after ${SERVED}s"
if [ "$PYTHON" = 0 ]; then
  le "$WRONG" 5 || fail "step-down: clients sent to a non-active node for ${WRONG}s (> 5 s)"
  [ "$SERVED" != never ] || fail "step-down: the new active node was never served"
fi
ACTIVE=$(wait_active)

# Raft voters: nodes that joined are promoted by autopilot only after a
# stabilisation time; a leader killed before that leaves no quorum.
raft_voters() {
  local active
  active=$(active_port)
  [ -n "$active" ] || { echo 0; return 0; }
  BAO_ADDR=http://127.0.0.1:$active BAO_TOKEN=$ROOT_TOKEN "$BAO" operator raft list-peers -format=json 2>/dev/null |
    python3 -c 'import json,sys; print(sum(1 for s in json.load(sys.stdin)["data"]["config"]["servers"] if s["voter"]))' 2>/dev/null ||
    echo 0
}

# Let the cluster settle: an active node, two unsealed standbys, three raft
# voters, and Consul agreeing on the active one.
settle() {
  local i codes
  for i in $(seq 600); do
    codes=$(for p in "${NODES[@]}"; do node_health_code "$p"; echo; done | sort | tr '\n' ' ')
    if [ "$codes" = "200 429 429 " ] && [ "$(passing_active_count)" = 1 ] && [ "$(raft_voters)" = 3 ]; then
      return 0
    fi
    sleep 0.1
  done
  echo "the cluster did not settle: health codes $codes" >&2
  return 1
}
settle
ACTIVE=$(wait_active)
log "scenario 3: SIGKILL of the active node ($ACTIVE)"
KILLED=$ACTIVE
stop_pid KILL "${NODE_PID[$KILLED]}"
watch_failover "$KILLED" 90 1
echo "FIGURES SIGKILL: sent to the dead node ${DEAD}s, to any non-active node ${WRONG}s, 503 ${REFUSED}s, new active served after ${SERVED}s"
if [ "$PYTHON" = 0 ]; then
  le "$DEAD" 10 || fail "SIGKILL: clients sent to the dead node for ${DEAD}s (> 10 s)"
  [ "$SERVED" != never ] || fail "SIGKILL: the new active node was never served"
fi

if [ "$PYTHON" = 0 ]; then
  # Bring the killed node back (sealed after a restart), so quorum survives
  # the next scenario.
  start_node "$KILLED"
  unseal "$KILLED"
  settle
  ACTIVE=$(wait_active)

  log "scenario 4a: a sealed standby"
  seal_a_standby_and_sample
  ok=$OK_SAMPLES sealed=$SEALED_SAMPLES
  echo "FIGURES sealed standby: $ok of 50 samples sent to the active node, $sealed to the sealed one"
  [ "$sealed" = 0 ] || fail "sealed standby: clients were sent to the sealed node"
  [ "$ok" -ge 45 ] || fail "sealed standby: only $ok of 50 samples sent to the active node"
  BAO_ADDR=$REDIR BAO_TOKEN=$ROOT_TOKEN "$BAO" kv put -mount=secret sealed-key v=1 >/dev/null ||
    fail "write with a sealed standby"
  unseal "$STANDBY"
  settle
  ACTIVE=$(wait_active)

  log "scenario 4b: the Consul agent stops answering for 6 s (clients must not notice)"
  kill -STOP "$CONSUL_PID"
  bad=0
  for _ in $(seq 60); do
    [ "$(redirect_port)" = "$ACTIVE" ] || bad=$((bad + 1))
    sleep 0.1
  done
  kill -CONT "$CONSUL_PID"
  echo "FIGURES Consul hung 6 s: $bad of 60 samples not sent to the active node"
  [ "$bad" = 0 ] || fail "Consul outage: clients noticed ($bad samples)"

  log "scenario 4c: Consul agent killed and restarted"
  stop_pid KILL "$CONSUL_PID"
  restarted=$(date +%s.%N)
  start_consul
  # The agent restores the registrations from its data directory; Vault
  # keeps its TTL check alive (here: the registrar, restarted as a Vault
  # process would keep running).
  start_registrar
  watch_failover none 60 0
  took=$(awk -v a="$(date +%s.%N)" -v b="$restarted" 'BEGIN{printf "%.1f", a-b}')
  echo "FIGURES Consul restart: agent back and answering after the restart; 503 ${REFUSED}s, sent to a non-active node ${WRONG}s, active served after ${SERVED}s (watched ${took}s)"
  [ "$SERVED" != never ] || fail "Consul restart: the active node was not served again"
  le "$WRONG" 0 || fail "Consul restart: clients were sent to a non-active node"

  log "scenario 4d: Consul with default-deny ACLs and a read token"
  kill "$REDIRECTOR_PID" "$REGISTRAR_PID" 2>/dev/null || true
  kill -9 "$CONSUL_PID"
  wait "$REDIRECTOR_PID" "$REGISTRAR_PID" "$CONSUL_PID" 2>/dev/null || true
  start_consul acl
  setup_acls
  start_registrar
  # Without a token: Consul answers an empty list, and we say why.
  timeout 30 "$BIN" -I -P 0 --bind 127.0.0.1 "127.0.0.1:$CONSUL_HTTP" > "$REAL_DIR/no-token.log" 2>&1 &&
    code=0 || code=$?
  echo "FIGURES ACLs without a token: exit $code"
  [ "$code" = 3 ] || fail "ACLs without a token: exit $code, expected 3"
  grep -q "no Consul ACL token is configured" "$REAL_DIR/no-token.log" || fail "ACLs without a token: no hint"
  # With the read token (from the environment, as the consul CLI takes it).
  CONSUL_HTTP_TOKEN=$READ_TOKEN start_redirector "$BIN" --bind 127.0.0.1
  ACTIVE=$(wait_active)
  [ "$(redirect_port)" = "$ACTIVE" ] || fail "ACLs with a read token: not sent to the active node"
  BAO_ADDR=$REDIR BAO_TOKEN=$ROOT_TOKEN "$BAO" kv put -mount=secret acl-key v=1 >/dev/null || fail "write with ACLs"
  ! grep -q "$READ_TOKEN" "$REAL_DIR/redirector.log" || fail "the Consul token appears in the log"
  echo "FIGURES ACLs with a read token: sent to the active node 127.0.0.1:$ACTIVE"
fi

exit_if_failed 30
log "all scenarios passed"
