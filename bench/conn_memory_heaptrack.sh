#!/bin/sh
# Where an idle connection's heap bytes go: runs heraldd under heaptrack, opens N idle
# connections with `conn_memory --attach` (Hello, Auth, Subscribe user:<id>), stops
# heraldd with SIGTERM and prints heaptrack's peak memory consumers.
# Usage: bench/conn_memory_heaptrack.sh BUILD_DIR [N]     (N defaults to 2000)
set -eu
build=${1:?usage: $0 BUILD_DIR [N]}
n=${2:-2000}
dir=$(mktemp -d /tmp/heraldd-heaptrack-XXXXXX)
heaptrack -o "$dir/heap" "$build/server/heraldd" --ready-file "$dir/ready.json" \
  --listen.tcp 127.0.0.1:0 --listen.api 127.0.0.1:0 --listen.ws 127.0.0.1:0 --server.loops 2 \
  --store.dir "$dir/data" --limits.max_connections_per_ip 1000000 --limits.accept_burst 1000000 \
  --server.log_level warn >"$dir/log" 2>&1 &
wrapper=$!
i=0
while [ ! -s "$dir/ready.json" ]; do
  i=$((i + 1))
  if [ $i -gt 300 ]; then echo "heraldd did not start" >&2; cat "$dir/log" >&2; kill "$wrapper"; exit 1; fi
  sleep 0.1
done
port=$(sed 's/.*"tcp":"127.0.0.1:\([0-9]*\)".*/\1/' "$dir/ready.json")
server=$(pgrep -P "$wrapper" -x heraldd)
"$build/bench/conn_memory" --attach "$port" --pid "$server" --connections "$n"
kill -TERM "$server"
wait "$wrapper" || true
heaptrack_print -f "$dir"/heap*.zst --print-peaks 1 --print-allocators 0 --print-temporary 0 \
  --print-leaks 0 --merge-backtraces 0 -n 30 > "$dir/peaks.txt"
echo "heaptrack data and report: $dir (peaks.txt); divide the peak bytes by $n"
