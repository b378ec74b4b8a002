#!/usr/bin/env bash
# Trains a zstd dictionary for Herald's notification bodies from generated samples.
#
#   bench/train_dictionary.sh OUT.dict [SEED] [COUNT]     (defaults: SEED=1, COUNT=5000)
#
# Runs shared/data/gen_notifications.py (next to this repository, or in $HERALD_SHARED_DIR),
# stores each JSON line as one sample file, runs `zstd --train --maxdict=16384`, and prints
# the dictionary id (bytes 4..7 of the dictionary, little-endian) on stdout. Load the result
# with DictionarySet::add (codec/compression.h).
set -euo pipefail

usage() {
  echo "usage: $0 OUT.dict [SEED] [COUNT]" >&2
  exit 2
}
[[ $# -ge 1 && $# -le 3 ]] || usage
out=$1
seed=${2:-1}
count=${3:-5000}
[[ $seed =~ ^[0-9]+$ && $count =~ ^[0-9]+$ && $count -gt 0 ]] || usage

python=/usr/bin/python3  # Debian's interpreter; see /work/shared/TESTING.md
generator="$(dirname "$0")/../../shared/data/gen_notifications.py"
if [[ ! -f $generator && -n ${HERALD_SHARED_DIR:-} ]]; then
  generator="$HERALD_SHARED_DIR/data/gen_notifications.py"
fi
if [[ ! -f $generator ]]; then
  echo "$0: cannot find gen_notifications.py (looked next to the repository and in" \
    "\$HERALD_SHARED_DIR/data)" >&2
  exit 1
fi
command -v zstd >/dev/null || { echo "$0: the zstd command-line tool is not installed" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/herald-dict.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# One file per message: zstd --train treats every file as one sample.
"$python" "$generator" --seed "$seed" --count "$count" >"$tmp/lines.jsonl"
mkdir "$tmp/samples"
awk -v dir="$tmp/samples" '{ f = sprintf("%s/%07d.json", dir, NR); print > f; close(f) }' \
  "$tmp/lines.jsonl"
samples=$(find "$tmp/samples" -type f | wc -l)
if [[ $samples -eq 0 ]]; then
  echo "$0: the generator produced no samples" >&2
  exit 1
fi

zstd -q --train -r "$tmp/samples" -o "$tmp/out.dict" --maxdict=16384
mv -f "$tmp/out.dict" "$out"

# A zstd dictionary starts with the magic 37 A4 30 EC, then its id as u32 little-endian.
read -r -a b <<<"$(od -An -v -t u1 -N8 "$out" | tr '\n' ' ')"
if [[ ${#b[@]} -ne 8 || "${b[*]:0:4}" != "55 164 48 236" ]]; then
  echo "$0: $out is not a zstd dictionary" >&2
  exit 1
fi
echo "$samples samples -> $out ($(wc -c <"$out") bytes)" >&2
echo $((b[4] | (b[5] << 8) | (b[6] << 16) | (b[7] << 24)))
