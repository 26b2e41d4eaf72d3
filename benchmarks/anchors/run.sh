#!/usr/bin/env bash
# `make bench-anchors`: llmux and llama.cpp side by side on this machine (README.md here).
#   benchmarks/anchors/run.sh [BUILD_DIR] [anchors.py options...]
# Builds llama.cpp (build_llama.sh, cached outside the checkout) and the llmux targets the
# comparison runs, then runs anchors.py. Summary: BUILD_DIR/bench/anchors/summary.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build_dir="${1:-build}"
[ $# -gt 0 ] && shift
cd "$root"
for tool in ab npm git cmake cc; do
  command -v "$tool" >/dev/null || { echo "bench-anchors: $tool not found (scripts/install_deps.sh)" >&2; exit 1; }
done
/usr/bin/python3 -c 'import numpy' 2>/dev/null \
  || { echo "bench-anchors: python3-numpy not found (scripts/install_deps.sh)" >&2; exit 1; }
benchmarks/anchors/build_llama.sh >/dev/null
cmake --build "$build_dir" -j "${LLMUX_ANCHORS_JOBS:-2}" --target llmux llmuxd cpu_bench
exec /usr/bin/python3 benchmarks/anchors/anchors.py --build "$build_dir" "$@"
