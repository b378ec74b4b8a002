#!/usr/bin/env bash
# A latency goal against the machine's floor: alternating runs of one load-generator
# workload against heraldd, against floor_server (a server that does nothing but the sends:
# two threads with write(2), two threads with io_uring, one thread with write(2)) and
# against Redis, a fresh server for every run. One line per run:
#   SYSTEM  deliveries/s  p50 ms  p99 ms  p99.9 ms  server CPU s  lost
# then per system the median p50 and p99, and the median over runs of p99 / Redis's p99 in
# the same round. If floor_server's ratio is above a goal, no server that makes one send
# per delivery reaches that goal on this machine (bench/peers/README.md, "The latency floor").
#
# Usage: bench/floor_compare.sh [--build DIR] [--runs N] -- LOADGEN-ARGS...
# e.g.   bench/floor_compare.sh --runs 5 -- --workload broadcast --subscribers 1000 --rate 50 --seconds 8
#        bench/floor_compare.sh --runs 5 -- --workload unicast --subscribers 10000 --rate 25000 --seconds 8
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD=build/release
RUNS=3
while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: bench/floor_compare.sh [--build DIR] [--runs N] -- LOADGEN-ARGS..." >&2; exit 2 ;;
  esac
done
PY=/usr/bin/python3
LOADGEN=$BUILD/bench/loadgen/loadgen
for f in "$BUILD/server/heraldd" "$LOADGEN" "$BUILD/bench/floor_server"; do
  [[ -x $f ]] || { echo "missing $f: ninja -C $BUILD heraldd loadgen floor_server" >&2; exit 1; }
done
WORK="$(mktemp -d /tmp/floor-compare-XXXXXX)"
PID=""
cleanup() { [[ -n $PID ]] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
LG=(--connect-timeout 120 --drain-timeout 10 --sub-workers 2)

# run SYSTEM-NAME LOADGEN-SYSTEM ADDRESS: one loadgen run against the server in $PID.
run() {
  "$LOADGEN" --system "$2" --server "$3" --server-pid "$PID" "${LG[@]}" "${ARGS[@]}" 2>/dev/null | tail -1 | $PY -c '
import json, sys
d = json.loads(sys.stdin.read()); l = d["latency_us"]; s = d["server"]
print("%s %.0f %.3f %.3f %.3f %.2f %d" % (sys.argv[1], d["deliveries_per_s"], l["p50"] / 1000, l["p99"] / 1000,
      l.get("p999", 0) / 1000, s["cpu_s"], d["lost"]))' "$1" | tee -a "$WORK/lines"
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
}

ARGS=("$@")
echo "# system deliveries/s p50_ms p99_ms p999_ms cpu_s lost" >&2
for ((r = 1; r <= RUNS; r++)); do
  echo "round $r" >>"$WORK/lines"
  dir="$(mktemp -d "$WORK/srv-XXXXXX")"
  "$BUILD/server/heraldd" --ready-file "$dir/ready.json" --listen.tcp 127.0.0.1:0 --listen.api 127.0.0.1:0 \
    --listen.ws 127.0.0.1:0 --store.dir "$dir/data" --server.log_level warn \
    --limits.max_connections_per_ip 100000 --namespace "name=bench,subscribe=any,publish=any" \
    --namespace "name=user,publish=any,durable=false" >"$dir/log" 2>&1 &
  PID=$!
  for _ in $(seq 200); do [[ -s $dir/ready.json ]] && break; sleep 0.05; done
  [[ -s $dir/ready.json ]] || { cat "$dir/log" >&2; exit 1; }
  run herald herald "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["tcp"])' "$dir/ready.json")"
  for variant in "2" "2 --uring" "1"; do
    # shellcheck disable=SC2086  # the variant is a list of words
    "$BUILD/bench/floor_server" --port 0 --threads $variant >"$dir/floor.port" 2>/dev/null &
    PID=$!
    for _ in $(seq 100); do grep -q port= "$dir/floor.port" 2>/dev/null && break; sleep 0.05; done
    name="floor-${variant// /}"
    run "${name/--uring/-uring}" redis "127.0.0.1:$(sed -n 's/^port=//p' "$dir/floor.port")"
  done
  port=$((20000 + RANDOM % 20000))
  out="$(bench/peers/start.sh redis "$port" "$dir")"
  PID=${out%% *}
  run redis redis "127.0.0.1:$port"
done

$PY - "$WORK/lines" <<'EOF'
import statistics, sys
rounds, cur = [], None
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == "round":
        cur = {}
        rounds.append(cur)
    else:
        cur[f[0]] = (float(f[2]), float(f[3]))
for name in rounds[0]:
    p50 = statistics.median(r[name][0] for r in rounds if name in r)
    p99 = statistics.median(r[name][1] for r in rounds if name in r)
    ratios = [r[name][1] / r["redis"][1] for r in rounds if name in r and "redis" in r and r["redis"][1] > 0]
    ratio = "p99/redis %.2f (%s)" % (statistics.median(ratios), ", ".join("%.2f" % x for x in ratios)) if ratios else ""
    print("median %-12s p50 %.3f ms  p99 %.3f ms  %s" % (name, p50, p99, ratio))
EOF
