#!/usr/bin/env bash
# Runs the codec benchmarks of an existing build (builds nothing) and says where results went.
#
#   bench/run_codec_bench.sh [BUILD_DIR] [extra codec_bench flags...]
#
# BUILD_DIR defaults to build/release (what `./dev bench` and `./dev run` build). Results:
# BUILD_DIR/codec_bench.json (Google Benchmark JSON: every repetition plus median/mean/stddev/cv;
# the console shows only the aggregates) and BUILD_DIR/dictionary_bench.json (one JSON object). Env: REPS (default 5); HERALD_BENCH_CPU=N
# pins both programs to CPU N with taskset (recommended on a shared machine: taskset -c 1).
# Exit status: non-zero if a program fails, including dictionary_bench's ratio check.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:-$ROOT/build/release}"
shift || true
[[ "$dir" = /* ]] || dir="$PWD/$dir"

for prog in codec_bench dictionary_bench; do
  if [[ ! -x "$dir/bench/$prog" ]]; then
    echo "run_codec_bench: $dir/bench/$prog not found; build first, e.g." >&2
    echo "  cmake -S $ROOT -B $dir -G Ninja -DCMAKE_BUILD_TYPE=Release -DHERALD_BUILD_TESTS=OFF && ninja -C $dir" >&2
    exit 2
  fi
done

pin=()
if [[ -n "${HERALD_BENCH_CPU:-}" ]]; then
  if command -v taskset >/dev/null; then
    pin=(taskset -c "$HERALD_BENCH_CPU")
  else
    echo "run_codec_bench: taskset not found; running unpinned" >&2
  fi
fi

echo "== codec_bench (${REPS:-5} repetitions, median/mean/stddev/cv) ${pin[*]:-}"
# display_aggregates_only (not report_aggregates_only): the JSON keeps each repetition, which
# docs/benchmarks.md needs for its min-max columns.
"${pin[@]}" "$dir/bench/codec_bench" --benchmark_repetitions="${REPS:-5}" --benchmark_display_aggregates_only=true \
  --benchmark_out="$dir/codec_bench.json" --benchmark_out_format=json --benchmark_format=console "$@"

echo
echo "== dictionary_bench ${pin[*]:-}"
"${pin[@]}" "$dir/bench/dictionary_bench" --benchmark_out="$dir/dictionary_bench.json"

echo
echo "results: $dir/codec_bench.json"
echo "         $dir/dictionary_bench.json"
