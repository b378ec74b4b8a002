#!/usr/bin/env bash
# W4: durable publish throughput and latency with store.synchronous=FULL (or $SYNC),
# single publishes from many connections and the batch API, 1 KiB payloads.
# Each run starts heraldd on a fresh temporary store, runs both modes, and reports for
# each: acknowledged publishes/s, request latency, the load generator's CPU, heraldd's
# CPU over the run (all threads) and acknowledged publishes per heraldd CPU-second (a
# figure that depends less on what else the shared machine is doing), plus the load
# average. The medians of RUNS runs come last.
#
# Usage: bench/run_durable_bench.sh [BUILD_DIR] [SECONDS]
#   env: SYNC=FULL|NORMAL  RUNS=3  API_THREADS=2  CONNECTIONS=256  BATCH=200
#        BATCH_CONNECTIONS=8  COMMIT_MAX_BYTES=1048576  EXTRA="more heraldd flags"
set -euo pipefail
BUILD=${1:-build}
SECS=${2:-10}
SYNC=${SYNC:-FULL}
RUNS=${RUNS:-3}
API_THREADS=${API_THREADS:-2}
CONNECTIONS=${CONNECTIONS:-256}
BATCH=${BATCH:-200}
BATCH_CONNECTIONS=${BATCH_CONNECTIONS:-8}
COMMIT_MAX_BYTES=${COMMIT_MAX_BYTES:-1048576}
EXTRA=${EXTRA:-}
PY=/usr/bin/python3
TICKS=$(getconf CLK_TCK)
RESULTS=$(mktemp /tmp/herald-w4-results-XXXXXX)
PID=
DIR=
cleanup() {
  if [[ -n "$PID" ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  if [[ -n "$DIR" ]]; then rm -rf "$DIR"; fi
}
trap 'cleanup; rm -f "$RESULTS"' EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "synchronous=$SYNC api_threads=$API_THREADS commit_max_bytes=$COMMIT_MAX_BYTES runs=$RUNS seconds=$SECS $(nproc) cores"
for run in $(seq "$RUNS"); do
  DIR=$(mktemp -d /tmp/herald-w4-XXXXXX)
  # shellcheck disable=SC2086
  "$BUILD/server/heraldd" --store.dir "$DIR/data" --store.synchronous "$SYNC" --listen.tcp 127.0.0.1:0 \
    --listen.api 127.0.0.1:0 --listen.ws 127.0.0.1:0 --ready-file "$DIR/ready.json" --server.log_level warn \
    --delivery.dedup_window_s 300 --server.api_threads "$API_THREADS" --store.commit_max_bytes "$COMMIT_MAX_BYTES" \
    --limits.max_connections_per_ip 10000 $EXTRA >"$DIR/log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do [[ -s "$DIR/ready.json" ]] && break; sleep 0.1; done
  API=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$DIR/ready.json")
  for mode in single batch; do
    if [[ $mode == single ]]; then
      args=(--mode single --connections "$CONNECTIONS")
    else
      args=(--mode batch --batch "$BATCH" --connections "$BATCH_CONNECTIONS")
    fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    c0=$(cpu_ticks "$PID")
    line=$("$BUILD/bench/durable_load" --api "$API" "${args[@]}" --seconds "$SECS" || true)
    c1=$(cpu_ticks "$PID")
    echo "run $run load=$load $line heraldd_cpu_s=$(( (c1 - c0) / TICKS )).$(( (c1 - c0) % TICKS * 100 / TICKS ))" |
      tee -a "$RESULTS"
  done
  curl -s -H 'Authorization: Bearer herald-dev-api-key' "http://$API/v1/stats" |
    $PY -c 'import json,sys; print("  store:", json.load(sys.stdin)["store"])'
  cleanup
  PID=
  DIR=
done
# Medians per mode.
$PY - "$RESULTS" <<'EOF'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    kv = dict(re.findall(r'(\w+)=([\d.]+%?)', line))
    mode = re.search(r'mode=(\w+)', line).group(1)
    secs = float(kv['seconds'])
    acked = float(kv['acked'])
    cpu = float(kv['heraldd_cpu_s'])
    rows.setdefault(mode, []).append({
        'acked_per_s': float(kv['acked_per_s']), 'p50': float(kv['p50']), 'p99': float(kv['p99']),
        'heraldd_cpu_pct': 100 * cpu / secs, 'acked_per_cpu_s': acked / cpu if cpu > 0 else 0,
        'loadgen_cpu_pct': float(kv['loadgen_cpu'].rstrip('%')), 'load': float(kv['load'])})
for mode, rs in rows.items():
    med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
    print(f"median {mode} ({len(rs)} runs): acked/s {med['acked_per_s']:.0f}  p50 {med['p50']:.1f} ms  "
          f"p99 {med['p99']:.1f} ms  heraldd CPU {med['heraldd_cpu_pct']:.0f}%  "
          f"acked per heraldd CPU-s {med['acked_per_cpu_s']:.0f}  loadgen CPU {med['loadgen_cpu_pct']:.0f}%  "
          f"load avg {med['load']:.1f}")
EOF
