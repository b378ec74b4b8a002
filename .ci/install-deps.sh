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
  python3 python3-crc32c openssl sqlite3 strace
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "installing: ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
