#!/usr/bin/env bash
# Installs every Debian package Herald needs to build and test, when missing.
# Idempotent and quick when everything is present (one dpkg query).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libevent-dev libssl-dev libzstd-dev zstd
  protobuf-compiler libprotobuf-dev libspdlog-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libsqlite3-dev nlohmann-json3-dev libcli11-dev libtoml11-dev libwslay-dev
  clang-14 libclang-rt-14-dev llvm-14
  python3 python3-crc32c openssl sqlite3 strace iproute2 liburing-dev libjemalloc-dev
  sslscan testssl.sh
  chromium python3-websockets slowhttptest
  # Issue 7's benchmark peers (started only by bench/peers/start.sh, on ports it picks, never
  # as services) and the plots of bench/plot.py.
  mosquitto redis-server nats-server python3-matplotlib
  # bench/run.sh's W4 (bench/run_durable_bench.sh reads heraldd's /v1/stats with it).
  curl
)
# Node and npm for the JS client's tests; a machine that already has them (e.g. from
# NodeSource, whose nodejs bundles npm) keeps its own.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  PACKAGES+=(nodejs npm)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# The JS client's dev dependencies (ws, playwright-core), from the committed lock file.
npm_ci() {
  local js
  js="$(cd "$(dirname "${BASH_SOURCE[0]}")/../client-sdk/js" && pwd)"
  if [[ ! -d "$js/node_modules/ws" || ! -d "$js/node_modules/playwright-core" ||
        "$js/package-lock.json" -nt "$js/node_modules" ]]; then
    (cd "$js" && npm ci --no-audit --no-fund)
  fi
}

if ((${#missing[@]} == 0)); then
  npm_ci
  exit 0
fi

echo "installing: ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
npm_ci
