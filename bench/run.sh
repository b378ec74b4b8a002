#!/usr/bin/env bash
# Issue 7's benchmark suite: Herald (binary TCP and WebSocket) against mosquitto, Redis and
# NATS on the same machine, in the same run. Builds nothing: takes the binaries of a build
# directory, starts a fresh server for every run (heraldd on port 0 with its own store; the
# peers with bench/peers/start.sh on free ports), drives it with bench/loadgen, and writes
# one JSON line per run. Stops every process it started, on every exit path.
#
# Usage: bench/run.sh --quick|--full [--out FILE] [--build DIR] [--runs N] [--only "W1 W2 ..."]
#   --quick   about a minute: small counts, every system at least once (CI's smoke test)
#   --full    the issue's sizes, 3 runs each (--runs changes that)
#   --out     JSON lines go there (default: stdout); progress goes to stderr
#   --build   build directory (default build/release; Release for measurements)
#   --only    run only these workloads (W1 W2 W3 W4 W5 W6 W7; W8 = W1/W2 of herald-ws)
# Environment (full mode): W2_BIG=0 skips W2 at 10,000 subscribers; W5_N sets W5's
# subscriber count (default 1000).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="" OUT="" BUILD="$ROOT/build/release" RUNS="" ONLY=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) MODE=quick ;;
    --full) MODE=full ;;
    --out) OUT=$2; shift ;;
    --build) BUILD=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --only) ONLY=$2; shift ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[[ -n $MODE ]] || { echo "usage: bench/run.sh --quick|--full [--out FILE] [--build DIR] [--runs N] [--only \"W1 W2\"]" >&2; exit 2; }
BUILD="$(cd "$BUILD" && pwd)"
LOADGEN="$BUILD/bench/loadgen/loadgen"
HERALDD="$BUILD/server/heraldd"
for b in "$LOADGEN" "$HERALDD"; do [[ -x $b ]] || { echo "run.sh: $b missing (build it first)" >&2; exit 2; }; done
PY=/usr/bin/python3

WORK="$(mktemp -d /tmp/herald-bench-XXXXXX)"
STARTED=()  # pids of every server this script started and has not stopped yet
stop_pid() {
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
  kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
  for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
  STARTED=()
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -n $OUT ]]; then : >"$OUT"; fi
emit() { if [[ -n $OUT ]]; then echo "$1" >>"$OUT"; else echo "$1"; fi; }
log() { echo "run.sh: $*" >&2; }
FAILURES=0

wanted() { [[ -z $ONLY || " $ONLY " == *" $1 "* ]]; }

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

HERALD_VERSION="$("$HERALDD" --version 2>/dev/null | head -1 | awk '{print $NF}')" || true
[[ -n $HERALD_VERSION ]] || HERALD_VERSION=unknown
TS="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# start_server SYSTEM [VARIANT]: sets SRV_ADDR, SRV_PID, SRV_VERSION, SRV_CONFIG (and SRV_API
# for Herald). Herald variants: live (default: the bench namespace and a live user namespace),
# durable (built-in user namespace: the durable offline inbox), smallbuf (+ 4 KiB socket
# send buffers, so the priority lanes hold the backlog).
start_server() {
  local system=$1 variant=${2:-} dir
  dir="$(mktemp -d "$WORK/srv-XXXXXX")"
  case $system in
    herald | herald-ws)
      local args=(--ready-file "$dir/ready.json" --listen.tcp 127.0.0.1:0 --listen.api 127.0.0.1:0
        --listen.ws 127.0.0.1:0 --store.dir "$dir/data" --server.log_level warn
        --limits.max_connections_per_ip 100000)
      SRV_CONFIG="heraldd defaults + --namespace name=bench,subscribe=any,publish=any"
      args+=(--namespace "name=bench,subscribe=any,publish=any")
      if [[ $variant != durable ]]; then
        args+=(--namespace "name=user,publish=any,durable=false")
        SRV_CONFIG+=" --namespace name=user,publish=any,durable=false"
      fi
      if [[ $variant == smallbuf ]]; then
        args+=(--delivery.send_buffer_bytes 4096)
        SRV_CONFIG+=" --delivery.send_buffer_bytes 4096"
      fi
      "$HERALDD" "${args[@]}" >"$dir/log" 2>&1 &
      SRV_PID=$!
      STARTED+=("$SRV_PID")
      for _ in $(seq 200); do [[ -s $dir/ready.json ]] && break; sleep 0.05; done
      [[ -s $dir/ready.json ]] || { log "heraldd did not start:"; cat "$dir/log" >&2; return 1; }
      local key=tcp
      [[ $system == herald-ws ]] && key=ws
      SRV_ADDR="$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$dir/ready.json" $key)"
      SRV_API="$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$dir/ready.json")"
      SRV_VERSION=$HERALD_VERSION ;;
    mqtt | redis | nats)
      local peer=$system port line
      [[ $system == mqtt ]] && peer=mosquitto
      port="$(free_port)"
      line="$("$ROOT/bench/peers/start.sh" "$peer" "$port" "$dir" $variant)" || return 1
      SRV_PID=${line%% *}
      SRV_VERSION=${line#* }
      STARTED+=("$SRV_PID")
      SRV_ADDR="127.0.0.1:$port"
      SRV_CONFIG="bench/peers/$peer.conf"
      if [[ -n $variant ]]; then SRV_CONFIG+=" + bench/peers/$peer-$variant.conf"; fi ;;
  esac
}

stop_server() {
  stop_pid "$SRV_PID"
  local keep=()
  for p in "${STARTED[@]}"; do [[ $p == "$SRV_PID" ]] || keep+=("$p"); done
  STARTED=("${keep[@]}")
}

# one WORKLOAD SYSTEM VARIANT RUN [server variant] -- loadgen args...
one() {
  local workload=$1 system=$2 variant=$3 run=$4 srv_variant=$5
  shift 6
  if ! start_server "$system" "$srv_variant"; then
    log "$workload $system $variant run $run: the server did not start"
    FAILURES=$((FAILURES + 1))
    return 0
  fi
  local meta extra=()
  if [[ $workload == W6 ]]; then extra+=(--api "$SRV_API"); fi
  meta="$($PY -c 'import json,sys; print(json.dumps({"workload":sys.argv[1],"variant":sys.argv[2],"run":int(sys.argv[3]),"config":sys.argv[4],"version":sys.argv[5],"ts":sys.argv[6]}))' \
    "$workload" "$variant" "$run" "$SRV_CONFIG" "$SRV_VERSION" "$TS")"
  log "$workload $system $variant run $run"
  local line rc=0
  line="$("$LOADGEN" --system "$system" --server "$SRV_ADDR" --server-pid "$SRV_PID" --meta "$meta" \
    "${extra[@]}" "$@")" || rc=$?
  stop_server
  if [[ -n $line ]]; then emit "$line"; fi
  if [[ $rc -ne 0 ]]; then
    log "$workload $system $variant run $run FAILED (exit $rc)"
    FAILURES=$((FAILURES + 1))
  fi
}

PEERS=(mqtt redis nats)
if [[ $MODE == quick ]]; then
  RUNS=${RUNS:-1}
  W1_N=300 W2_N=200 W2_BIG=0 W3_N=300 W3_RATE=2000 W5_N=100 W6_N=300 SECS=1 SETTLE=0.3 W4_SECS=1 W7_COUNT=300 W7_TRAIN=500
else
  RUNS=${RUNS:-3}
  W1_N=10000 W2_N=1000 W2_BIG=${W2_BIG:-10000} W3_N=10000 W3_RATE=25000 W5_N=${W5_N:-1000} W6_N=10000 SECS=5 SETTLE=2 W4_SECS=10 W7_COUNT=5000 W7_TRAIN=5000
fi
COMMON=(--connect-timeout 120 --drain-timeout 10 --sub-workers 2)

for run in $(seq "$RUNS"); do
  # W1 idle (and W8: herald-ws): N connections, each subscribed to its own channel.
  if wanted W1 || wanted W8; then
    for s in herald herald-ws "${PEERS[@]}"; do
      w=W1
      [[ $s == herald-ws ]] && w=W8
      wanted $w || continue
      one $w "$s" "${W1_N}conns-idle" "$run" "" -- --workload idle --subscribers "$W1_N" --warmup $((W1_N / 10)) \
        --settle "$SETTLE" "${COMMON[@]}"
    done
  fi
  # W2 broadcast (and W8): flat out, and latency at a fixed rate.
  if wanted W2 || wanted W8; then
    W2_SYSTEMS=(herald herald-ws "${PEERS[@]}" mqtt-nodup)
    [[ $MODE == quick ]] && W2_SYSTEMS=(herald herald-ws "${PEERS[@]}")
    for s in "${W2_SYSTEMS[@]}"; do
      w=W2 sys=$s srv=""
      [[ $s == herald-ws ]] && w=W8
      [[ $s == mqtt-nodup ]] && sys=mqtt srv=nodup
      wanted $w || continue
      one $w "$sys" "${W2_N}subs-flat${srv:+-$srv}" "$run" "$srv" -- --workload broadcast --subscribers "$W2_N" --rate 0 --seconds "$SECS" "${COMMON[@]}"
      [[ $MODE == quick && $s != herald ]] && continue  # quick: the paced publisher once
      one $w "$sys" "${W2_N}subs-50ps${srv:+-$srv}" "$run" "$srv" -- --workload broadcast --subscribers "$W2_N" --rate 50 --seconds "$SECS" "${COMMON[@]}"
      if [[ $W2_BIG -gt 0 ]]; then
        one $w "$sys" "${W2_BIG}subs-flat${srv:+-$srv}" "$run" "$srv" -- --workload broadcast --subscribers "$W2_BIG" --rate 0 --seconds "$SECS" "${COMMON[@]}"
        one $w "$sys" "${W2_BIG}subs-1.5ps${srv:+-$srv}" "$run" "$srv" -- --workload broadcast --subscribers "$W2_BIG" --rate 1.5 --seconds 20 "${COMMON[@]}"
      fi
    done
  fi
  # MQTT QoS 1 (acknowledged delivery, what Herald's acked delivery compares with): W2 at 50 msg/s.
  if wanted W2 && [[ $MODE == full ]]; then
    one W2 mqtt "${W2_N}subs-50ps-qos1" "$run" "" -- --workload broadcast --subscribers "$W2_N" --rate 50 --qos 1 --seconds "$SECS" "${COMMON[@]}"
  fi
  # W3 unicast: personal channels, publishes to random users.
  if wanted W3; then
    for s in herald "${PEERS[@]}"; do
      one W3 "$s" "${W3_N}users-flat" "$run" "" -- --workload unicast --subscribers "$W3_N" --rate 0 --seconds "$SECS" "${COMMON[@]}"
      [[ $MODE == quick && $s != herald ]] && continue  # quick: the paced publisher once
      one W3 "$s" "${W3_N}users-${W3_RATE}ps" "$run" "" -- --workload unicast --subscribers "$W3_N" --rate "$W3_RATE" --seconds "$SECS" "${COMMON[@]}"
    done
  fi
  # W5 priorities (Herald only): P0 probes at 50/s while a P3 flood fills the same connections.
  if wanted W5; then
    one W5 herald "${W5_N}subs-p0-under-p3-flood" "$run" smallbuf -- --workload priority --subscribers "$W5_N" --rcvbuf 4096 --probe-rate 50 --seconds "$SECS" "${COMMON[@]}"
    # The same with the P3 flood paced at about 300,000 deliveries a second, over
    # 1,000, 100 and 10 subscribers: how the P0's latency grows with its fan-out (one
    # write per subscriber) rather than with the flood.
    if [[ $MODE == full ]]; then
      for fan in 1000:300 100:3000 10:10000; do
        one W5 herald "${fan%%:*}subs-p0-under-p3-${fan##*:}ps" "$run" smallbuf -- --workload priority --subscribers "${fan%%:*}" \
          --rate "${fan##*:}" --rcvbuf 4096 --probe-rate 50 --seconds "$SECS" "${COMMON[@]}"
      done
    fi
  fi
  # W6 reconnect storm (Herald only): N users resume 10 missed messages each.
  if wanted W6; then
    one W6 herald "${W6_N}clients-10missed" "$run" durable -- --workload reconnect --subscribers "$W6_N" --missed 10 "${COMMON[@]}"
  fi
  # W4 durable publishes (bench/run_durable_bench.sh starts its own heraldd, synchronous=FULL).
  if wanted W4 && [[ -x $BUILD/bench/durable_load ]]; then
    log "W4 herald run $run"
    if w4="$("$ROOT/bench/run_durable_bench.sh" "$BUILD" "$W4_SECS" 2>&1)"; then
      while read -r l; do
        [[ $l == mode=* ]] || continue
        emit "$($PY - "$l" "$run" "$HERALD_VERSION" "$TS" <<'EOF'
import json, sys
kv = dict(p.split("=", 1) for p in sys.argv[1].split() if "=" in p)
print(json.dumps({"workload": "W4", "system": "herald", "variant": kv["mode"] + "-batch" + kv["batch"],
                  "run": int(sys.argv[2]), "connections": int(kv["connections"]), "published": int(kv["acked"]) + int(kv["failed"]),
                  "delivered": int(kv["acked"]), "lost": int(kv["failed"]), "seconds": float(kv["seconds"]),
                  "acked_per_s": float(kv["acked_per_s"]),
                  "latency_us": {"p50": float(kv["p50"]) * 1000, "p99": float(kv["p99"]) * 1000, "max": float(kv["max"]) * 1000},
                  "config": "heraldd --store.synchronous FULL (bench/run_durable_bench.sh)", "version": sys.argv[3], "ts": sys.argv[4]}))
EOF
)"
      done <<<"$w4"
    else
      log "W4 run $run FAILED:"; echo "$w4" >&2
      FAILURES=$((FAILURES + 1))
    fi
  fi
  # W7 bytes per notification (sizes only, no server).
  if wanted W7 && [[ -x $BUILD/bench/w7_bytes ]]; then
    log "W7 run $run"
    if w7="$("$BUILD/bench/w7_bytes" --count "$W7_COUNT" --train-count "$W7_TRAIN" --run "$run")"; then
      while read -r l; do if [[ -n $l ]]; then emit "$l"; fi; done <<<"$w7"
    else
      log "W7 run $run FAILED"
      FAILURES=$((FAILURES + 1))
    fi
  fi
done

if [[ $FAILURES -gt 0 ]]; then
  log "$FAILURES run(s) failed"
  exit 1
fi
log "all runs completed"
