#!/usr/bin/env bash
# tests/scale, inside the network namespace run.sh made for it (its own
# loopback, nothing else): real Consul, a real 3-node OpenBao cluster,
# three redirector replicas behind a real HAProxy, wrk at steady load.
# Usage (from run.sh): scenarios.sh BINARY RESULTS_FILE
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$1
RESULTS=$2
SCALE=tests/scale
REAL_DIR=$(mktemp -d /tmp/vault-redirector-scale.XXXXXX)
# shellcheck source=tests/real/cluster.sh
. tests/real/cluster.sh
trap cleanup EXIT

FRONT=19000
REPLICAS=(19081 19082 19083)
UPGRADE_PORT=19090
COUNTER_PORT=18501
# SCALE_DRAIN=0 shows what step 1 is about: without --drain the bounds fail.
DRAIN_SECS=${SCALE_DRAIN:-2}
# wrk: two threads, 16 connections, each request a Vault path.
WRK=(wrk -t2 -c16 -s "$SCALE/wrk_status.lua")
declare -A REPLICA_PID
FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }
result() { echo "$*" | tee -a "$RESULTS"; }

start_replica() { # PORT
  "$BIN" -I -P "$1" --bind 127.0.0.1 --drain "$DRAIN_SECS" "127.0.0.1:$COUNTER_PORT" \
    >> "$REAL_DIR/replica-$1.log" 2>&1 &
  REPLICA_PID[$1]=$!
  PIDS+=("$!")
  wait_http "http://127.0.0.1:$1/vault-redirector-health"
}

haproxy_stat() { # FIELD [SERVER]: a column of `show stat` for a server, or the backend
  python3 - "$REAL_DIR/haproxy.sock" "$1" "${2:-BACKEND}" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"show stat\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
lines = data.decode().splitlines()
header = lines[0].lstrip("# ").split(",")
for line in lines[1:]:
    row = dict(zip(header, line.split(",")))
    if row.get("pxname") == "redirectors" and row.get("svname") == sys.argv[3]:
        print(row[sys.argv[2]])
PY
}

wait_all_up() { # HAProxy sees every replica UP (bounded)
  local i p up
  for i in $(seq 200); do
    up=0
    for p in "${REPLICAS[@]}"; do [ "$(haproxy_stat status "r$p")" = UP ] && up=$((up + 1)); done
    [ "$up" = "${#REPLICAS[@]}" ] && return 0
    sleep 0.1
  done
  fail "HAProxy did not see all replicas UP"
  return 1
}

wrk_field() { # NAME FILE
  grep -o "$1=[0-9]*" "$2" | cut -d= -f2
}

wrk_errors() { # FILE: socket errors + non-307 responses
  local f=$1
  echo $(($(wrk_field connect "$f") + $(wrk_field read "$f") + $(wrk_field write "$f") +
    $(wrk_field timeout "$f") + $(wrk_field not307 "$f")))
}

log "starting Consul, a 3-node OpenBao cluster and the registrar"
ensure_components
start_consul
start_cluster
start_registrar
python3 "$SCALE/consul_counter.py" "$COUNTER_PORT" "$CONSUL_HTTP" "$REAL_DIR/consul_requests" &
PIDS+=("$!")
wait_http "http://127.0.0.1:$COUNTER_PORT/v1/status/leader"
for p in "${REPLICAS[@]}"; do start_replica "$p"; done
servers=""
for p in "${REPLICAS[@]}"; do servers+="    server r$p 127.0.0.1:$p check"$'\n'; done
sed -e "s|@STATS_SOCKET@|$REAL_DIR/haproxy.sock|" -e "s|@FRONT@|127.0.0.1:$FRONT|" \
  -e "s|@SERVERS@|${servers//$'\n'/\\n}|" "$SCALE/haproxy.cfg.in" > "$REAL_DIR/haproxy.cfg"
haproxy -f "$REAL_DIR/haproxy.cfg" -db > "$REAL_DIR/haproxy.log" 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$FRONT/vault-redirector-health"
wait_all_up
URL=http://127.0.0.1:$FRONT/v1/secret/data/app

log "1. rolling restart of the three replicas (--drain $DRAIN_SECS) under wrk through HAProxy"
retr0=$(haproxy_stat wretr) redis0=$(haproxy_stat wredis)
"${WRK[@]}" -d 20s "$URL" > "$REAL_DIR/wrk1" 2>&1 &
wrk_pid=$!
sleep 2
for p in "${REPLICAS[@]}"; do
  kill -TERM "${REPLICA_PID[$p]}"
  wait "${REPLICA_PID[$p]}" || fail "replica $p did not exit 0 after SIGTERM"
  start_replica "$p"
  wait_all_up
done
wait "$wrk_pid"
retr=$(($(haproxy_stat wretr) - retr0)) redis=$(($(haproxy_stat wredis) - redis0))
errors=$(wrk_errors "$REAL_DIR/wrk1")
result "1 rolling-restart requests=$(wrk_field requests "$REAL_DIR/wrk1") errors=$errors not307=$(wrk_field not307 "$REAL_DIR/wrk1") wretr=$retr wredis=$redis"
[ "$errors" = 0 ] && [ "$retr" = 0 ] && [ "$redis" = 0 ] || fail "rolling restart: errors or retries (see above)"

log "2. upgrade on one port with --reuse-port, no load balancer"
"$BIN" -I -P "$UPGRADE_PORT" --bind 127.0.0.1 --reuse-port --drain 1 "127.0.0.1:$COUNTER_PORT" > "$REAL_DIR/old.log" 2>&1 &
old=$!
PIDS+=("$old")
wait_http "http://127.0.0.1:$UPGRADE_PORT/vault-redirector-health"
"${WRK[@]}" -d 6s "http://127.0.0.1:$UPGRADE_PORT/v1/secret/data/app" > "$REAL_DIR/wrk2" 2>&1 &
wrk_pid=$!
sleep 2
"$BIN" -I -P "$UPGRADE_PORT" --bind 127.0.0.1 --reuse-port --drain 1 "127.0.0.1:$COUNTER_PORT" > "$REAL_DIR/new.log" 2>&1 &
new=$!
PIDS+=("$new")
for _ in $(seq 100); do grep -q "listening on" "$REAL_DIR/new.log" && break; sleep 0.1; done
grep -q "listening on" "$REAL_DIR/new.log" || fail "the new process did not start"
kill -TERM "$old"
wait "$old" || fail "the old process did not exit 0"
wait "$wrk_pid"
errors=$(wrk_errors "$REAL_DIR/wrk2")
result "2 reuse-port-upgrade requests=$(wrk_field requests "$REAL_DIR/wrk2") errors=$errors tcp_migrate_req=$(cat /proc/sys/net/ipv4/tcp_migrate_req)"
[ "$errors" = 0 ] || fail "upgrade on one port: $errors errors"
stop_pid TERM "$new"

log "3. SIGKILL of one replica under load"
retr0=$(haproxy_stat wretr) redis0=$(haproxy_stat wredis)
"${WRK[@]}" -d 6s "$URL" > "$REAL_DIR/wrk3" 2>&1 &
wrk_pid=$!
sleep 2
stop_pid KILL "${REPLICA_PID[${REPLICAS[1]}]}"
wait "$wrk_pid"
retr=$(($(haproxy_stat wretr) - retr0)) redis=$(($(haproxy_stat wredis) - redis0))
errors=$(wrk_errors "$REAL_DIR/wrk3")
result "3 sigkill requests=$(wrk_field requests "$REAL_DIR/wrk3") errors=$errors wretr=$retr wredis=$redis"
[ "$errors" = 0 ] || fail "SIGKILL of a replica: $errors failed requests reached the client"
start_replica "${REPLICAS[1]}"
wait_all_up

log "4. a change of the active Vault node"
ACTIVE=$(wait_active)
urls=()
for p in "${REPLICAS[@]}"; do urls+=("http://127.0.0.1:$p"); done
urls+=("http://127.0.0.1:$FRONT")
python3 "$SCALE/switch.py" "http://127.0.0.1:$ACTIVE" "$ROOT_TOKEN" "http://127.0.0.1:$CONSUL_HTTP" "${urls[@]}" > "$REAL_DIR/switch"
cat "$REAL_DIR/switch"
consul_at=$(awk -v c="http://127.0.0.1:$CONSUL_HTTP" '$2 == c {print $3}' "$REAL_DIR/switch")
while read -r _ what at; do
  [ "$what" = "http://127.0.0.1:$CONSUL_HTTP" ] && continue
  if [ "$at" = none ] || [ "$consul_at" = none ]; then
    fail "$what never followed the new active node"
    continue
  fi
  lag=$(python3 -c "print(f'{$at - $consul_at:.3f}')")
  result "4 switch $what after_step_down=${at}s after_consul=${lag}s"
  python3 -c "import sys; sys.exit(0 if $lag <= 1.0 else 1)" || fail "$what followed Consul after ${lag}s (> 1 s)"
done < "$REAL_DIR/switch"

log "5. the load ${#REPLICAS[@]} replicas put on Consul while nothing changes (30 s)"
sleep 6 # past the step-down's aftermath (registrar updates, pacing)
c0=$(cat "$REAL_DIR/consul_requests")
sleep 30
c1=$(cat "$REAL_DIR/consul_requests")
per_minute=$(((c1 - c0) * 2))
result "5 consul-load replicas=${#REPLICAS[@]} poll_interval=5 requests_per_minute=$per_minute"
# Blocking queries: about one per replica per poll interval (12 a minute each).
[ "$per_minute" -le $((${#REPLICAS[@]} * 12 * 2)) ] || fail "replicas asked Consul $per_minute times a minute"

exit "$FAILED"
