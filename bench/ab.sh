#!/usr/bin/env bash
# A/B runs of one heraldd build with two sets of extra flags (e.g. --delivery.io_uring
# true|false), alternating A and B, a fresh heraldd for every run, configured as run.sh
# configures Herald (the bench namespace, live personal channels). One line per run:
#   A|B  deliveries/s  p50 ms  p99 ms  server CPU s  RSS MiB  write calls/delivery  lost
# and the median of each column per side at the end. Used for the before/after rows of
# docs/benchmarks.md.
#
# Two builds: --a-heraldd / --b-heraldd name each side's binary (default: the build's).
#
# Usage: bench/ab.sh [--build DIR] [--runs N] [--a-heraldd PATH] [--b-heraldd PATH]
#                    --a "FLAGS" --b "FLAGS" -- LOADGEN-ARGS...
# e.g.   bench/ab.sh --runs 3 --a "--delivery.io_uring false" --b "--delivery.io_uring true" \
#          -- --workload unicast --subscribers 10000 --rate 0 --seconds 5
#        bench/ab.sh --runs 3 --a-heraldd /tmp/heraldd.before --a "" --b "" -- --workload broadcast ...
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build/release" RUNS=3 A="" B="" A_BIN="" B_BIN=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --build) BUILD=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --a) A=$2; shift ;;
    --b) B=$2; shift ;;
    --a-heraldd) A_BIN=$2; shift ;;
    --b-heraldd) B_BIN=$2; shift ;;
    --) shift; break ;;
    *) echo "ab.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[[ $# -gt 0 ]] || { echo "usage: bench/ab.sh [--build DIR] [--runs N] --a FLAGS --b FLAGS -- LOADGEN-ARGS..." >&2; exit 2; }
HERALDD="$BUILD/server/heraldd"
LOADGEN="$BUILD/bench/loadgen/loadgen"
PY=/usr/bin/python3
A_BIN=${A_BIN:-$HERALDD} B_BIN=${B_BIN:-$HERALDD}
[[ -x $A_BIN && -x $B_BIN && -x $LOADGEN ]] || { echo "ab.sh: build heraldd and loadgen in $BUILD first" >&2; exit 2; }
ulimit -n 20000 2>/dev/null || true

WORK="$(mktemp -d /tmp/herald-ab-XXXXXX)"
PID=""
cleanup() {
  if [[ -n $PID ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

one() {  # one SIDE HERALDD "FLAGS" LOADGEN-ARGS...
  local side=$1 bin=$2 flags=$3 dir
  shift 3
  dir="$(mktemp -d "$WORK/srv-XXXXXX")"
  # shellcheck disable=SC2086  # FLAGS is a list of words
  "$bin" --ready-file "$dir/ready.json" --listen.tcp 127.0.0.1:0 --listen.api 127.0.0.1:0 \
    --listen.ws 127.0.0.1:0 --store.dir "$dir/data" --server.log_level warn \
    --limits.max_connections_per_ip 100000 --namespace "name=bench,subscribe=any,publish=any" \
    --namespace "name=user,publish=any,durable=false" $flags >"$dir/log" 2>&1 &
  PID=$!
  for _ in $(seq 200); do [[ -s $dir/ready.json ]] && break; sleep 0.05; done
  [[ -s $dir/ready.json ]] || { cat "$dir/log" >&2; exit 1; }
  local addr
  addr="$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["tcp"])' "$dir/ready.json")"
  "$LOADGEN" --system herald --server "$addr" --server-pid "$PID" --connect-timeout 120 --drain-timeout 10 \
    --sub-workers 2 "$@" 2>/dev/null | tail -1 | $PY -c '
import json, sys
d = json.loads(sys.stdin.read()); l = d["latency_us"]; s = d["server"]
print("%s %.0f %.2f %.2f %.2f %d %.3f %d" % (sys.argv[1], d["deliveries_per_s"], l["p50"] / 1000, l["p99"] / 1000,
      s["cpu_s"], s["rss_bytes"] >> 20, s.get("write_calls_per_delivery", 0), d["lost"]))' "$side" | tee -a "$WORK/lines"
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
}

echo "# A: $A_BIN $A" >&2
echo "# B: $B_BIN $B" >&2
echo "# side deliveries/s p50_ms p99_ms cpu_s rss_mib writes/delivery lost" >&2
for ((r = 1; r <= RUNS; r++)); do
  one A "$A_BIN" "$A" "$@"
  one B "$B_BIN" "$B" "$@"
done
$PY - "$WORK/lines" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
names = ["deliveries/s", "p50_ms", "p99_ms", "cpu_s", "rss_mib", "writes/delivery", "lost"]
med = {}
for side in ("A", "B"):
    got = [[float(x) for x in r[1:]] for r in rows if r[0] == side]
    med[side] = [statistics.median(c) for c in zip(*got)]
    print("median " + side + " " + " ".join("%s=%g" % (n, round(v, 3)) for n, v in zip(names, med[side])))
if med["A"][0] > 0:
    print("B/A deliveries/s %.2f, cpu per delivery %.2f" % (med["B"][0] / med["A"][0],
          (med["B"][3] / med["B"][0]) / (med["A"][3] / med["A"][0]) if med["B"][0] > 0 else float("nan")))
EOF
