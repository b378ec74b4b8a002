#!/usr/bin/env bash
# W1 at 100,000 connections (issue 7): one heraldd process holds at most about 19,900
# sockets on this machine (open-files limit 20,000), so N connections are spread over
# several heraldd processes, each driven by its own loadgen (idle workload: authenticated,
# each connection subscribed to its own personal channel), all connected at the same time.
# Prints one JSON line per process (loadgen's) and a summary line with the total server
# memory and the memory per connection.
#
# Usage: bench/w1_100k.sh [--build DIR] [--connections N] [--processes K] [--settle S]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build/release" N=100000 K=6 SETTLE=10
while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift ;;
    --connections) N=$2; shift ;;
    --processes) K=$2; shift ;;
    --settle) SETTLE=$2; shift ;;
    *) echo "w1_100k.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
HERALDD="$BUILD/server/heraldd"
LOADGEN="$BUILD/bench/loadgen/loadgen"
PY=/usr/bin/python3
[[ -x $HERALDD && -x $LOADGEN ]] || { echo "w1_100k.sh: build heraldd and loadgen in $BUILD first" >&2; exit 2; }
PER=$(((N + K - 1) / K))
((PER <= 19000)) || { echo "w1_100k.sh: $PER connections per process is above the open-files limit; use more --processes" >&2; exit 2; }
ulimit -n 20000

WORK="$(mktemp -d /tmp/herald-w1-XXXXXX)"
PIDS=()
LG=()
cleanup() {
  for p in "${LG[@]}" "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${LG[@]}" "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

for ((i = 0; i < K; i++)); do
  d="$WORK/srv$i"
  mkdir -p "$d"
  "$HERALDD" --ready-file "$d/ready.json" --listen.tcp 127.0.0.1:0 --listen.api 127.0.0.1:0 --listen.ws "" \
    --store.dir "$d/data" --server.log_level warn --limits.max_connections_per_ip 100000 \
    --namespace "name=user,publish=any,durable=false" >"$d/log" 2>&1 &
  PIDS+=($!)
done
for ((i = 0; i < K; i++)); do
  for _ in $(seq 200); do [[ -s $WORK/srv$i/ready.json ]] && break; sleep 0.05; done
  [[ -s $WORK/srv$i/ready.json ]] || { cat "$WORK/srv$i/log" >&2; exit 1; }
done
echo "w1_100k: $K heraldd processes, $PER connections each, settle ${SETTLE}s" >&2
for ((i = 0; i < K; i++)); do
  addr="$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["tcp"])' "$WORK/srv$i/ready.json")"
  # Every loadgen connects, then waits SETTLE seconds before sampling its server, so all
  # N connections are up at once while the samples are taken.
  "$LOADGEN" --system herald --server "$addr" --server-pid "${PIDS[$i]}" --workload idle --subscribers "$PER" \
    --settle "$SETTLE" --connect-timeout 300 --prefix "p$i-" >"$WORK/lg$i.json" 2>"$WORK/lg$i.err" &
  LG+=($!)
done
rc=0
for p in "${LG[@]}"; do wait "$p" || rc=1; done
LG=()
for ((i = 0; i < K; i++)); do tail -1 "$WORK/lg$i.json"; done
$PY - "$WORK" "$K" <<'EOF'
import json, sys
work, k = sys.argv[1], int(sys.argv[2])
rows = [json.loads(open(f"{work}/lg{i}.json").read().strip().splitlines()[-1]) for i in range(k)]
conns = sum(r["connections"] - 0 for r in rows)
rss = sum(r["server"]["rss_bytes"] for r in rows)
before = sum(r["server"]["rss_before_bytes"] for r in rows)
per = [r["server"]["rss_per_conn_bytes"] for r in rows]
print(json.dumps({"workload": "W1", "variant": f"{conns}conns-idle-{k}procs", "connections": conns,
                  "server_rss_total_bytes": rss, "server_rss_before_total_bytes": before,
                  "rss_per_conn_bytes": (rss - before) / conns if conns else 0,
                  "rss_per_conn_bytes_per_process": per}))
EOF
for ((i = 0; i < K; i++)); do
  if [[ -s $WORK/lg$i.err ]] && grep -qiE "failed [1-9]|error" "$WORK/lg$i.err"; then
    echo "loadgen $i:" >&2
    tail -3 "$WORK/lg$i.err" >&2
  fi
done
exit $rc
