#!/usr/bin/env bash
# The GPU check, run ON the device machine from the repository root with .gpu-prefix/ carried
# (made by benchmarks/gpu/prepare.sh): configures against the unpacked packages, builds only
# llmux, unit_backend_cuda and gpu_bench for sm_90, runs the GPU unit tests, compares
# stories260K-hf greedy tokens between the CPU and CUDA backends, and times a llama3-8b-shaped
# model. Prints progress as it goes; writes check.log and summary.md under $OUT (or
# out/gpu-check). Budget: 8 minutes on one H200, build included.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
out="${OUT:-$root/out/gpu-check}"
mkdir -p "$out"
exec > >(tee "$out/check.log") 2>&1
t0=$(date +%s)
step() { echo "[check +$(( $(date +%s) - t0 ))s] $*"; }
summary=()
note() { summary+=("$1"); echo "$1"; }

P="$root/.gpu-prefix/root"
if [[ ! -d "$P/usr" ]]; then
  echo "check: $P missing: run benchmarks/gpu/prepare.sh first and carry .gpu-prefix" >&2
  exit 2
fi
libdir="$P/usr/lib/x86_64-linux-gnu"
export LD_LIBRARY_PATH="$libdir:$libdir/openblas-pthread:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export PKG_CONFIG_SYSROOT_DIR="$P"
export PKG_CONFIG_LIBDIR="$libdir/pkgconfig:$libdir/openblas-pthread/pkgconfig:$P/usr/share/pkgconfig"
pkg_config="$(command -v pkg-config || true)"
[[ -n "$pkg_config" ]] || pkg_config="$P/usr/bin/pkgconf"
export PATH="/usr/local/cuda/bin:$PATH"

step "device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'nvidia-smi unavailable')"

# The HTTP server is not built here (LLMUX_SERVER=OFF: no Boost on the device machine); the
# engine, the CLI and the kernels link prometheus-cpp and the rest from .gpu-prefix.
build=build-gpu

step "configure"
if ! cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DLLMUX_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_STANDARD=17 \
    -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DLLMUX_BENCHMARKS=ON \
    -DCMAKE_PREFIX_PATH="$P/usr" -DOPENSSL_ROOT_DIR="$P/usr" \
    -DPKG_CONFIG_EXECUTABLE="$pkg_config" \
    -DLLMUX_SERVER=OFF \
    > "$out/configure.log" 2>&1; then
  tail -40 "$out/configure.log"
  echo "check: FAILED at configure (full log: configure.log)"
  exit 1
fi
grep -E "llmux: CUDA backend" "$out/configure.log"

step "build llmux unit_backend_cuda gpu_bench (ninja -j16, sm_90)"
if ! timeout 300 cmake --build "$build" -j 16 --target llmux unit_backend_cuda gpu_bench \
    > "$out/build.log" 2>&1; then
  grep -E "error|Error" "$out/build.log" | head -40
  echo "check: FAILED at build (full log: build.log)"
  exit 1
fi
step "build done"

step "GPU unit tests"
timeout 240 "$build/tests/unit_backend_cuda" > "$out/unit_backend_cuda.log" 2>&1
rc=$?
grep -E "^\[  (FAILED|PASSED|SKIPPED) |^\[==========\]|GEMM weight shapes" "$out/unit_backend_cuda.log"
if grep -q "SKIPPED: no CUDA device" "$out/unit_backend_cuda.log"; then
  note "| unit_backend_cuda | FAIL: tests skipped, no CUDA device visible |"
elif [[ $rc -eq 0 ]]; then
  note "| unit_backend_cuda | pass ($(grep -c '^\[       OK \]' "$out/unit_backend_cuda.log") tests) |"
else
  note "| unit_backend_cuda | FAIL (rc $rc, see unit_backend_cuda.log) |"
fi

step "stories260K-hf greedy: CPU vs CUDA"
model="$root/.gpu-prefix/models/stories260K-hf"
gen_args=(--prompt "Once upon a time" --max-tokens 64 --temperature 0)
if [[ -n "${LLMUX_GENERATE_ARGS:-}" ]]; then read -ra gen_args <<< "$LLMUX_GENERATE_ARGS"; fi
if "$build/llmux" generate --help 2>&1 | grep -q -- "--backend"; then
  timeout 60 "$build/llmux" generate --model "$model" --backend cpu "${gen_args[@]}" \
    > "$out/generate_cpu.txt" 2> "$out/generate_cpu.err"
  rc_cpu=$?
  timeout 60 "$build/llmux" generate --model "$model" --backend cuda "${gen_args[@]}" \
    > "$out/generate_cuda.txt" 2> "$out/generate_cuda.err"
  rc_cuda=$?
  if [[ $rc_cpu -ne 0 || $rc_cuda -ne 0 ]]; then
    tail -5 "$out/generate_cpu.err" "$out/generate_cuda.err"
    note "| greedy stories260K cpu vs cuda | FAIL (rc cpu $rc_cpu, cuda $rc_cuda) |"
  elif cmp -s "$out/generate_cpu.txt" "$out/generate_cuda.txt"; then
    note "| greedy stories260K cpu vs cuda | identical output ($(wc -c < "$out/generate_cuda.txt") bytes) |"
  else
    diff "$out/generate_cpu.txt" "$out/generate_cuda.txt" | head -10
    note "| greedy stories260K cpu vs cuda | DIFFERENT (see generate_*.txt) |"
  fi
else
  note "| greedy stories260K cpu vs cuda | not run: this llmux has no 'generate --backend' |"
fi

step "llama3-8b shape"
config_args=()
elapsed=$(( $(date +%s) - t0 ))
if (( elapsed < 240 )) && "$build/llmux" make-model --help > /dev/null 2>&1; then
  rm -rf /tmp/l8b
  if timeout 120 "$build/llmux" make-model --shape llama3-8b --dtype bf16 --seed 1 --out /tmp/l8b \
      > "$out/make_model.log" 2>&1 && [[ -f /tmp/l8b/config.json ]]; then
    config_args=(--config /tmp/l8b/config.json)
    step "made /tmp/l8b ($(du -sh /tmp/l8b | cut -f1)); timing its shape"
  else
    tail -5 "$out/make_model.log"
    step "make-model failed; timing the built-in Llama-3-8B shape"
  fi
else
  step "make-model unavailable or no time left; timing the built-in Llama-3-8B shape"
fi
# NOTE: gpu_bench uses synthetic weights of the config's shape (timing does not depend on the
# values) so it needs no model loader.
timeout 200 "$build/gpu_bench" "${config_args[@]}" --batches 1,32,256 --context 1024 \
  --hbm-tbs 4.3 --out "$out/gpu_bench.md" 2>&1 | tee "$out/gpu_bench.log" | grep -v '^|'
rc_bench=${PIPESTATUS[0]}
[[ $rc_bench -eq 0 ]] || note "| gpu_bench | FAIL (rc $rc_bench, see gpu_bench.log) |"

step "done"
{
  echo "## GPU check ($(date -u +%FT%TZ), $(( $(date +%s) - t0 )) s)"
  echo
  echo "| check | result |"
  echo "|---|---|"
  printf '%s\n' "${summary[@]}"
  echo
  [[ -f "$out/gpu_bench.md" ]] && cat "$out/gpu_bench.md"
} > "$out/summary.md"
cat "$out/summary.md"
