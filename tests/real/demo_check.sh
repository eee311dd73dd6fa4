#!/usr/bin/env bash
# Checks the README's first set-up command as a user would run it: starts
# tests/real/demo.sh in a session of its own (as a terminal would), waits
# for it to come up, writes a secret with the bao CLI through the
# redirector, presses Ctrl-C (SIGINT to the whole process group) and checks
# that nothing it started is left running. Exits 1 on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
REAL_DIR=$(mktemp -d /tmp/vault-redirector-demo-check.XXXXXX)
# shellcheck source=tests/real/cluster.sh
. tests/real/cluster.sh
OUT=$REAL_DIR/demo.out
UP_WITHIN=900  # seconds: the first run downloads and builds

# A terminal starts the demo with SIGINT at its default; a background job
# of this script would inherit it ignored, and bash cannot trap a signal
# that was ignored when it started.
python3 -c '
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.setsid()
os.execvp(sys.argv[1], sys.argv[1:])' tests/real/demo.sh > "$OUT" 2>&1 &
DEMO=$!
stop_all() { kill -KILL -- "-$DEMO" 2>/dev/null || true; }
trap 'stop_all; rm -rf "$REAL_DIR"' EXIT
failed() { echo "FAIL: $*"; echo "--- demo output"; tail -n 40 "$OUT"; exit 1; }

for _ in $(seq "$UP_WITHIN"); do
  grep -q "Ctrl-C stops everything" "$OUT" && break
  kill -0 "$DEMO" 2>/dev/null || failed "the demo exited before it came up"
  sleep 1
done
grep -q "Ctrl-C stops everything" "$OUT" || failed "the demo did not come up within $UP_WITHIN s"
token=$(sed -n 's/.*Root token: //p' "$OUT")
log "demo up; writing a secret with the bao CLI through the redirector"
BAO_ADDR=http://127.0.0.1:$REDIRECTOR_PORT BAO_TOKEN=$token "$BAO" kv put -mount=secret demo-check v=1 >/dev/null ||
  failed "bao kv put through the redirector"
got=$(BAO_ADDR=http://127.0.0.1:$REDIRECTOR_PORT BAO_TOKEN=$token "$BAO" kv get -mount=secret -field=v demo-check) ||
  failed "bao kv get through the redirector"
[ "$got" = 1 ] || failed "read back '$got'"

log "pressing Ctrl-C"
kill -INT -- "-$DEMO"
for _ in $(seq 150); do
  pgrep -g "$DEMO" >/dev/null || break
  sleep 0.1
done
if pgrep -g "$DEMO" >/dev/null; then
  ps -o pid,cmd -g "$DEMO"
  failed "processes of the demo still run 15 s after Ctrl-C"
fi
log "demo: came up, took a write through the redirector, and Ctrl-C left nothing running"
