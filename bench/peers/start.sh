#!/usr/bin/env bash
# Starts one benchmark peer (mosquitto, redis-server or nats-server, Debian packages) on
# 127.0.0.1:PORT with its config, pid file and log in DIR, detached from this shell.
# Usage: bench/peers/start.sh SYSTEM PORT DIR [VARIANT]
#   SYSTEM   mosquitto (or mqtt) | redis | nats
#   PORT     a free loopback port (refused if something listens there; never the default)
#   DIR      an existing directory for this run (config, pid file, log)
#   VARIANT  optional: mosquitto "nodup" or "refuse" (tests only), redis "iothreads";
#            bench/peers/SYSTEM-VARIANT.conf is added after bench/peers/SYSTEM.conf
# On success prints one line "PID VERSION" on stdout (e.g. "12345 2.0.11") and exits 0 once
# the server accepts connections; stop it with kill PID (DIR/SYSTEM.pid holds the same pid).
# On failure prints why (and the server's log) on stderr and exits 1, leaving nothing running.
set -euo pipefail

die() { echo "start.sh: $*" >&2; exit 1; }

[[ $# -ge 3 && $# -le 4 ]] || die "usage: start.sh SYSTEM PORT DIR [VARIANT]"
system=$1 port=$2 dir=$3 variant=${4:-}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then die "bad port '$port'"; fi
[[ -d $dir ]] || die "no such directory '$dir'"
dir="$(cd "$dir" && pwd)"

case $system in
  mosquitto | mqtt) system=mosquitto; default_port=1883 ;;
  redis) default_port=6379 ;;
  nats) default_port=4222 ;;
  *) die "unknown system '$system' (mosquitto, redis, nats)" ;;
esac
((port != default_port)) || die "port $port is ${system}'s default port; pick another"

base="$here/$system.conf"
overlay=""
if [[ -n $variant ]]; then
  overlay="$here/$system-$variant.conf"
  [[ -f $overlay ]] || die "no variant '$variant' for $system (no $overlay)"
fi

# Something already listening on the port (ours from an earlier run, or anybody's).
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if port_in_use "$port" || ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
  die "port $port is in use"
fi

conf="$dir/$system.conf"
pidfile="$dir/$system.pid"
log="$dir/$system.log"
rm -f "$pidfile"
{
  sed -e "s|@PORT@|$port|g" -e "s|@DIR@|$dir|g" -e "s|@USER@|$(id -un)|g" "$base"
  if [[ -n $overlay ]]; then
    echo
    sed -e "s|@PORT@|$port|g" -e "s|@DIR@|$dir|g" -e "s|@USER@|$(id -un)|g" "$overlay"
  fi
} >"$conf"
# A variant may bring a data file its config names (mosquitto's dynamic-security JSON).
if [[ -n $variant && -f $here/$system-$variant.json ]]; then
  cp "$here/$system-$variant.json" "$dir/"
fi

case $system in
  mosquitto)
    bin=/usr/sbin/mosquitto
    # mosquitto -h prints its version and exits 3.
    version="$( ("$bin" -h 2>&1 || true) | sed -n 's/^mosquitto version \([^ ]*\).*/\1/p' | head -1)"
    cmd=("$bin" -c "$conf") ;;
  redis)
    bin=/usr/bin/redis-server
    version="$("$bin" --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
    cmd=("$bin" "$conf") ;;
  nats)
    bin=/usr/sbin/nats-server
    version="$("$bin" --version | sed -n 's/^nats-server: v\(.*\)$/\1/p')"
    cmd=("$bin" -c "$conf") ;;
esac
[[ -x $bin ]] || die "$bin not installed (.ci/install-deps.sh installs it)"

# The open-files limit bounds the connections a server can hold; use all the machine allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Foreground mode, detached: its own session (no terminal signals from this shell), stdin
# closed, stdout/stderr into DIR. The server's own pid file is the authority on its pid.
setsid "${cmd[@]}" </dev/null >>"$dir/$system.stdout" 2>&1 &
launched=$!

fail_start() {
  echo "start.sh: $system did not start on port $port: $1" >&2
  for f in "$log" "$dir/$system.stdout"; do
    [[ -s $f ]] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }
  done
  kill "$launched" 2>/dev/null || true
  exit 1
}

# Poll (with a deadline) until the pid file names a live process and the port accepts.
deadline=$((SECONDS + 15))
while :; do
  if ! kill -0 "$launched" 2>/dev/null; then
    wait "$launched" 2>/dev/null || true
    fail_start "it exited"
  fi
  if [[ -s $pidfile ]] && port_in_use "$port"; then break; fi
  ((SECONDS < deadline)) || fail_start "not accepting connections after 15 s"
  sleep 0.05
done
pid="$(tr -dc '0-9' <"$pidfile")"
[[ $pid == "$launched" ]] || fail_start "pid file says $pid, started $launched"
echo "$pid $version"
