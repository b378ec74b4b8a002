#!/usr/bin/env bash
# What the live histories hold while W3 (unicast to 10,000 users, flat out) fills them,
# under one limits.history_memory_bytes: every 2 s, heraldd's RSS and its history gauges
# (herald_history_bytes, herald_history_publications, herald_history_trimmed_total), then
# the load generator's deliveries per second. Used for docs/benchmarks.md, tenth round.
#
# Usage: bench/history_memory.sh [--build DIR] LIMIT_BYTES [SECONDS]
# e.g.   bench/history_memory.sh 0 12            # no limit
#        bench/history_memory.sh 134217728 12    # 128 MiB
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD=build/release
if [[ ${1:-} == --build ]]; then BUILD=$2; shift 2; fi
[[ $# -ge 1 ]] || { echo "usage: bench/history_memory.sh [--build DIR] LIMIT_BYTES [SECONDS]" >&2; exit 2; }
LIMIT=$1
SECS=${2:-12}
PY=/usr/bin/python3
dir="$(mktemp -d /tmp/history-memory-XXXXXX)"
"$BUILD/server/heraldd" --ready-file "$dir/ready.json" --listen.tcp 127.0.0.1:0 --listen.api 127.0.0.1:0 \
  --listen.ws 127.0.0.1:0 --store.dir "$dir/data" --limits.max_connections_per_ip 100000 \
  --namespace "name=bench,subscribe=any,publish=any" --namespace "name=user,publish=any,durable=false" \
  --limits.history_memory_bytes "$LIMIT" >"$dir/log" 2>&1 &
PID=$!
SAMPLER=""
cleanup() {
  [[ -n $SAMPLER ]] && kill "$SAMPLER" 2>/dev/null
  kill "$PID" 2>/dev/null
  wait "$PID" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 200); do [[ -s $dir/ready.json ]] && break; sleep 0.05; done
[[ -s $dir/ready.json ]] || { cat "$dir/log" >&2; exit 1; }
tcp=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["tcp"])' "$dir/ready.json")
api=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$dir/ready.json")
(
  # Bounded: the run plus the time 10,000 connections take to open and close.
  for i in $(seq 1 $((SECS / 2 + 6))); do
    sleep 2
    gauges=$(curl -s "http://$api/metrics" | awk '/^herald_history_(bytes|publications|trimmed_total) / {printf "%s=%s ", $1, $2}')
    echo "t=$((i * 2))s rss_kib=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status") $gauges"
  done
) &
SAMPLER=$!
"$BUILD/bench/loadgen/loadgen" --system herald --server "$tcp" --server-pid "$PID" --connect-timeout 120 \
  --drain-timeout 10 --sub-workers 2 --workload unicast --subscribers 10000 --rate 0 --seconds "$SECS" 2>/dev/null |
  tail -1 | $PY -c 'import json,sys; d=json.loads(sys.stdin.read()); print("deliveries/s", round(d["deliveries_per_s"]), "lost", d["lost"])'
wait "$SAMPLER"
SAMPLER=""
grep -h "history_memory_bytes" "$dir/log" || true
