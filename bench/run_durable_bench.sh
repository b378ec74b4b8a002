#!/usr/bin/env bash
# W4: durable publish throughput and latency with store.synchronous=FULL (or $SYNC),
# single publishes from many connections and the batch API, 1 KiB payloads.
# Usage: bench/run_durable_bench.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
BUILD=${1:-build}
SECS=${2:-10}
SYNC=${SYNC:-FULL}
DIR=$(mktemp -d /tmp/herald-w4-XXXXXX)
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
"$BUILD/server/heraldd" --store.dir "$DIR/data" --store.synchronous "$SYNC" --listen.tcp 127.0.0.1:0 \
  --listen.api 127.0.0.1:0 --listen.ws 127.0.0.1:0 --ready-file "$DIR/ready.json" --server.log_level warn \
  --delivery.dedup_window_s 300 >"$DIR/log" 2>&1 &
PID=$!
for _ in $(seq 100); do [[ -s "$DIR/ready.json" ]] && break; sleep 0.1; done
API=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$DIR/ready.json")
echo "heraldd on $API, store $DIR/data, synchronous=$SYNC, $(nproc) cores"
"$BUILD/bench/durable_load" --api "$API" --mode single --connections 64 --seconds "$SECS"
"$BUILD/bench/durable_load" --api "$API" --mode batch --batch 500 --connections 4 --seconds "$SECS"
curl -s -H 'Authorization: Bearer herald-dev-api-key' "http://$API/v1/stats" |
  /usr/bin/python3 -c 'import json,sys; print("store:", json.load(sys.stdin)["store"])'
