#!/usr/bin/env bash
# `make bench`: runs every serving scenario in benchmarks/scenarios/ against a freshly started
# llmuxd each (llmux-bench starts and stops it per run with the scenario's own llmux.yaml and
# tenants.yaml) and writes build/bench/<scenario>.json, build/bench/<scenario>.txt and PNG plots
# under build/bench/plots/. Usage: scripts/bench.sh [BUILD_DIR] [SCENARIO...]
set -euo pipefail
build_dir="${1:-build}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if ! command -v gnuplot >/dev/null 2>&1; then
  echo "bench: installing gnuplot-nox for the plots"
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq gnuplot-nox >/dev/null || true
  elif command -v sudo >/dev/null; then sudo apt-get install -y -qq gnuplot-nox >/dev/null || true
  fi
  command -v gnuplot >/dev/null 2>&1 || echo "bench: gnuplot unavailable: plots are written as .gp + .dat only"
fi

if [ ! -f "$build_dir/build.ninja" ] && [ ! -f "$build_dir/Makefile" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLMUX_BENCHMARKS=ON
fi
cmake --build "$build_dir" -j "${JOBS:-2}" --target llmuxd llmux llmux-bench

out="$build_dir/bench"
mkdir -p "$out/plots"
if [ "$#" -gt 0 ]; then scenarios=("$@"); else scenarios=(benchmarks/scenarios/*.yaml); fi
status=0
for sc in "${scenarios[@]}"; do
  name="$(basename "$sc" .yaml)"
  shape="$(sed -n 's/^model: *\([A-Za-z0-9._-]*\).*/\1/p' "$sc" | head -1)"
  model="$build_dir/models/${shape:-tiny}"
  if [ ! -f "$model/config.json" ]; then
    "$build_dir/llmux" make-model --shape "${shape:-tiny}" --dtype f32 --seed 1 --out "$model" >/dev/null
  fi
  echo "bench: $name (model ${shape:-tiny})"
  if ! "$build_dir/llmux-bench" --scenario "$sc" --llmuxd "$build_dir/llmuxd" --model-dir "$model" \
      --work "$out/work" --out "$out/$name.json" --plot "$out/plots" | tee "$out/$name.txt"; then
    echo "bench: $name failed to run" >&2
    status=1
  fi
done
echo "bench: results in $out/*.json, tables in $out/*.txt, plots in $out/plots/"
exit $status
