#!/usr/bin/env bash
# The reason the redirector exists, proven on a network of our own: network
# namespaces joined by veth pairs to a bridge in a namespace of its own (no
# link to the machine's network), one per host:
#   client 10.213.0.10   the bao CLI
#   lb     10.213.0.20   HAProxy, the redirector behind it on the lb's
#                        loopback, and the Consul server (a dev agent)
#   vault1..3 10.213.0.31..33  a 3-node OpenBao raft cluster with a file
#                        audit log; on each host a Consul client agent and
#                        the registrar, registering that node with its local
#                        agent as Vault does (so Node.Address is the host's)
# A write through HAProxy -> redirector -> 307 -> the active node must show
# up in the audit log with the client's address; the same write through
# HAProxy proxying straight to the cluster shows the load balancer's.
# Usage: netns.sh BINARY RESULTS_FILE (run by run.sh, as root, with the
# components cluster.sh installs already in place).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$1
RESULTS=$2
REAL_DIR=$(mktemp -d /tmp/vault-redirector-netns.XXXXXX)
# shellcheck source=tests/real/cluster.sh
. tests/real/cluster.sh
P=vr$$ # namespace prefix: unique to this run
NET=10.213.0
declare -A ADDR=([client]=$NET.10 [lb]=$NET.20 [vault1]=$NET.31 [vault2]=$NET.32 [vault3]=$NET.33)
HOSTS=(client lb vault1 vault2 vault3)
VAULTS=(vault1 vault2 vault3)
AUDIT=$REAL_DIR/audit.log
FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }
result() { echo "$*" | tee -a "$RESULTS"; }
on() { local host=$1; shift; ip netns exec "$P-$host" "$@"; }

# Everything started here runs in one of these namespaces (`on ... &`
# records a subshell's pid, not the server's): kill what each one holds,
# then remove them.
remove_network() {
  local ns pids
  for ns in "${HOSTS[@]}" sw; do
    pids=$(ip netns pids "$P-$ns" 2>/dev/null || true)
    [ -z "$pids" ] || kill $pids 2>/dev/null || true
  done
  sleep 0.5
  for ns in "${HOSTS[@]}" sw; do
    pids=$(ip netns pids "$P-$ns" 2>/dev/null || true)
    [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
    ip netns del "$P-$ns" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do stop_pid KILL "$pid"; done
  [ -n "${KEEP_REAL_DIR:-}" ] || rm -rf "$REAL_DIR"
}
trap remove_network EXIT

make_network() {
  local h
  ip netns add "$P-sw"
  ip -n "$P-sw" link add br0 type bridge
  ip -n "$P-sw" link set br0 up
  for h in "${HOSTS[@]}"; do
    ip netns add "$P-$h"
    ip link add eth0 netns "$P-$h" type veth peer name "p-$h" netns "$P-sw"
    ip -n "$P-sw" link set "p-$h" master br0 up
    ip -n "$P-$h" link set lo up
    ip -n "$P-$h" addr add "${ADDR[$h]}/24" dev eth0
    ip -n "$P-$h" link set eth0 up
  done
}

start_vault() { # HOST
  local h=$1 dir=$REAL_DIR/$1 joins="" v
  mkdir -p "$dir/data"
  for v in "${VAULTS[@]}"; do joins+="  retry_join { leader_api_addr = \"http://${ADDR[$v]}:8200\" }"$'\n'; done
  cat > "$dir/config.hcl" <<HCL
storage "raft" {
  path = "$dir/data"
  node_id = "$h"
$joins}
listener "tcp" {
  address = "${ADDR[$h]}:8200"
  cluster_address = "${ADDR[$h]}:8201"
  tls_disable = true
}
# OpenBao declares audit devices in its configuration (not through the API).
audit "file" "file" {
  options {
    file_path = "$AUDIT"
  }
}
api_addr = "http://${ADDR[$h]}:8200"
cluster_addr = "https://${ADDR[$h]}:8201"
disable_mlock = true
HCL
  on "$h" "$BAO" server -config="$dir/config.hcl" > "$dir/log" 2>&1 &
  PIDS+=("$!")
}

health_code() { # HOST
  on lb curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://${ADDR[$1]}:8200/v1/sys/health" || true
}

wait_code() { # HOST CODE: until the node answers CODE (unsealing it meanwhile)
  local i
  for i in $(seq 300); do
    [ "$(health_code "$1")" = "$2" ] && return 0
    on lb curl -s --max-time 5 -X PUT -d "{\"key\":\"$UNSEAL_KEY\"}" \
      "http://${ADDR[$1]}:8200/v1/sys/unseal" >/dev/null || true
    sleep 0.2
  done
  echo "$1 did not answer $2" >&2
  return 1
}

start_cluster_in_namespaces() {
  local v init
  for v in "${VAULTS[@]}"; do start_vault "$v"; done
  for v in "${VAULTS[@]}"; do on lb bash -c "$(declare -p CURL_NODE); $(declare -f wait_http); wait_http http://${ADDR[$v]}:8200/v1/sys/health"; done
  init=$(on lb curl -s --max-time 30 -X PUT -d '{"secret_shares":1,"secret_threshold":1}' \
    "http://${ADDR[vault1]}:8200/v1/sys/init")
  UNSEAL_KEY=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["keys"][0])' <<<"$init")
  ROOT_TOKEN=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["root_token"])' <<<"$init")
  wait_code vault1 200
  wait_code vault2 429
  wait_code vault3 429
  export BAO_TOKEN=$ROOT_TOKEN
  on lb env BAO_ADDR="http://${ADDR[vault1]}:8200" "$BAO" secrets enable -path=secret kv-v2 >/dev/null
}

start_consul_agents() {
  local v i
  on lb "$CONSUL" agent -dev -node lb -bind "${ADDR[lb]}" -client 127.0.0.1 -log-level warn \
    > "$REAL_DIR/consul-lb.log" 2>&1 &
  PIDS+=("$!")
  on lb bash -c "$(declare -p CURL_NODE); $(declare -f wait_http); wait_http http://127.0.0.1:8500/v1/status/leader"
  for v in "${VAULTS[@]}"; do
    mkdir -p "$REAL_DIR/consul-$v"
    on "$v" "$CONSUL" agent -node "$v" -data-dir "$REAL_DIR/consul-$v" -bind "${ADDR[$v]}" \
      -client 127.0.0.1 -retry-join "${ADDR[lb]}" -log-level warn > "$REAL_DIR/consul-$v.log" 2>&1 &
    PIDS+=("$!")
  done
  for v in "${VAULTS[@]}"; do
    for i in $(seq 150); do
      on "$v" curl -sf --max-time 1 -X PUT -o /dev/null "http://127.0.0.1:8500/v1/agent/service/register" \
        -d '{"Name":"probe"}' && break
      sleep 0.2
    done
    on "$v" curl -sf --max-time 1 -X PUT -o /dev/null "http://127.0.0.1:8500/v1/agent/service/deregister/probe" || true
    on "$v" python3 "$REAL_TESTS/registrar.py" http://127.0.0.1:8500 "http://${ADDR[$v]}:8200" \
      > "$REAL_DIR/registrar-$v.log" 2>&1 &
    PIDS+=("$!")
  done
}

start_lb() {
  local i
  for i in $(seq 150); do
    on lb curl -s "http://127.0.0.1:8500/v1/health/service/vault?passing&tag=active" | grep -q '"active"' && break
    sleep 0.2
  done
  on lb "$BIN" -I -P 18080 --bind 127.0.0.1 127.0.0.1:8500 > "$REAL_DIR/redirector.log" 2>&1 &
  PIDS+=("$!")
  on lb bash -c "$(declare -p CURL_NODE); $(declare -f wait_http); wait_http http://127.0.0.1:18080/vault-redirector-health"
  cat > "$REAL_DIR/haproxy.cfg" <<CFG
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
# Through the redirector: clients are sent to the active node.
frontend via_redirector
    bind ${ADDR[lb]}:8080
    default_backend redirectors
backend redirectors
    option httpchk GET /vault-redirector-health
    http-check expect status 200
    default-server inter 300ms fall 1 rise 2
    server r1 127.0.0.1:18080 check
# For contrast: HAProxy proxying straight to the cluster's active node.
frontend straight
    bind ${ADDR[lb]}:9200
    default_backend vaults
backend vaults
    option httpchk GET /v1/sys/health
    http-check expect status 200
    default-server inter 300ms fall 1 rise 2
    server vault1 ${ADDR[vault1]}:8200 check
    server vault2 ${ADDR[vault2]}:8200 check
    server vault3 ${ADDR[vault3]}:8200 check
CFG
  on lb haproxy -f "$REAL_DIR/haproxy.cfg" -db > "$REAL_DIR/haproxy.log" 2>&1 &
  PIDS+=("$!")
  for i in $(seq 100); do
    on client curl -s -o /dev/null --max-time 1 "http://${ADDR[lb]}:9200/v1/sys/health" &&
      on client curl -sf -o /dev/null --max-time 1 "http://${ADDR[lb]}:8080/vault-redirector-health" && return 0
    sleep 0.2
  done
  echo "HAProxy did not come up" >&2
  return 1
}

# The audit log's remote_address for request entries of PATH, one a line.
audit_addresses() { # PATH
  python3 - "$AUDIT" "$1" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    entry = json.loads(line)
    req = entry.get("request", {})
    if entry.get("type") == "request" and req.get("path") == sys.argv[2]:
        print(req.get("remote_address"))
PY
}

audit_line() { # PATH: the request entry, shortened to what shows the address
  python3 - "$AUDIT" "$1" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    entry = json.loads(line)
    req = entry.get("request", {})
    if entry.get("type") == "request" and req.get("path") == sys.argv[2]:
        print(json.dumps({"type": "request", "request": {k: req.get(k) for k in
              ("operation", "path", "remote_address", "remote_port")}}))
        break
PY
}

log "network namespaces: a bridge, client, lb and three OpenBao hosts ($NET.0/24, no link outside)"
make_network
start_cluster_in_namespaces
start_consul_agents
start_lb
log "client $NET.10 writes through HAProxy -> redirector -> 307 -> the active node"
on client env BAO_ADDR="http://${ADDR[lb]}:8080" "$BAO" kv put -mount=secret proof-redirected value=1 >/dev/null ||
  fail "the write through the redirector failed"
log "client $NET.10 writes through HAProxy proxying straight to the cluster"
on client env BAO_ADDR="http://${ADDR[lb]}:9200" "$BAO" kv put -mount=secret proof-proxied value=1 >/dev/null ||
  fail "the write through HAProxy alone failed"
redirected=$(audit_addresses secret/data/proof-redirected | sort -u)
proxied=$(audit_addresses secret/data/proof-proxied | sort -u)
result "netns via-redirector remote_address=${redirected:-none} (client ${ADDR[client]})"
result "netns via-haproxy-only remote_address=${proxied:-none} (load balancer ${ADDR[lb]})"
result "netns audit $(audit_line secret/data/proof-redirected)"
result "netns audit $(audit_line secret/data/proof-proxied)"
[ "$redirected" = "${ADDR[client]}" ] || fail "through the redirector, OpenBao saw ${redirected:-nothing}, not the client"
[ "$proxied" = "${ADDR[lb]}" ] || fail "through HAProxy alone, OpenBao saw ${proxied:-nothing}, not the load balancer"
exit "$FAILED"
