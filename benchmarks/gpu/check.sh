#!/usr/bin/env bash
# The GPU check, run ON the device machine from the repository root with .gpu-prefix/ carried
# (made by benchmarks/gpu/prepare.sh): configures against the unpacked packages, builds only
# llmux, unit_backend_cuda and gpu_bench for sm_90 (or uses binaries built elsewhere: set
# LLMUX_GPU_BUILD_DIR to a tree that has them and nothing is compiled here), runs the GPU unit
# tests (which include the CPU-vs-CUDA agreement of the real model on stories260K-hf: first
# greedy tokens and logit error bounds, gpu_model_test.cpp), and times a llama3-8b-shaped
# model from its config alone (no weight files are written). Prints progress as it goes;
# writes check.log and summary.md under $OUT (or out/gpu-check).
#
# Hard bound: the whole check, build included, ends within LLMUX_GPU_CHECK_LIMIT_S seconds
# (default 480, 8 minutes): the script re-runs itself under timeout(1), which ends every
# process it started when the limit passes; each step's own timeout is capped by what is left,
# and a step that would start with under 20 s left is skipped (reported in summary.md). If the
# limit is reached anyway, summary.md still lists what finished and says where it stopped
# (exit status 124).
set -uo pipefail
cd "$(dirname "$0")/../.."
limit_s="${LLMUX_GPU_CHECK_LIMIT_S:-480}"
if [[ -z "${LLMUX_GPU_CHECK_T0:-}" ]]; then
  LLMUX_GPU_CHECK_T0=$(date +%s)
  export LLMUX_GPU_CHECK_T0
  # --kill-after: a step that ignores SIGTERM is killed 5 s later.
  timeout --kill-after=5 "$limit_s" bash "$0" "$@"
  rc=$?
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "check: stopped at the ${limit_s} s limit (exit $rc); see summary.md" >&2
  fi
  exit $rc
fi
root=$PWD
out="${OUT:-$root/out/gpu-check}"
mkdir -p "$out"
exec > >(tee "$out/check.log") 2>&1
t0=$LLMUX_GPU_CHECK_T0
current_step="start"
step() { current_step="$*"; echo "[check +$(( $(date +%s) - t0 ))s] $*"; }
summary=()
note() { summary+=("$1"); echo "$1"; }
# cap WANT: WANT seconds, or fewer so that the step ends 15 s before the limit (the summary
# is written in that time); at least 1 (timeout 0 would mean no limit).
cap() {
  local left=$(( t0 + limit_s - 15 - $(date +%s) ))
  if (( left < 1 )); then echo 1; elif (( left < $1 )); then echo "$left"; else echo "$1"; fi
}
write_summary() {
  {
    echo "## GPU check ($(date -u +%FT%TZ), $(( $(date +%s) - t0 )) s of ${limit_s} s)"
    echo
    echo "| check | result |"
    echo "|---|---|"
    printf '%s\n' "${summary[@]}"
    echo
    if grep -q "^\[gpu_bench\] GEMM " "$out/gpu_bench.log" 2>/dev/null; then
      echo "### invariant-mode GEMM kernel per Llama-3-8B weight shape (gpu_bench)"
      echo
      grep "^\[gpu_bench\] GEMM " "$out/gpu_bench.log" | sed 's/^\[gpu_bench\] GEMM /- /'
      echo
    fi
    [[ -f "$out/gpu_bench.md" ]] && { echo "### invariant mode"; cat "$out/gpu_bench.md"; }
    [[ -f "$out/gpu_bench_fast.md" ]] && { echo; echo "### fast mode"; cat "$out/gpu_bench_fast.md"; }
    [[ -f "$out/gpu_bench_nucleus.md" ]] && { echo; echo "### nucleus sampling (invariant mode)"; cat "$out/gpu_bench_nucleus.md"; }
  } > "$out/summary.md"
}
# timeout(1) sends SIGTERM to the whole process group at the limit: record where it stopped.
# NOTE: tee (the log) got the signal too: nothing more is written to stdout, only summary.md.
on_limit() {
  trap '' PIPE
  summary+=("| check | STOPPED at the ${limit_s} s limit during: ${current_step} |")
  write_summary
  exit 124
}
trap on_limit TERM

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
build="${LLMUX_GPU_BUILD_DIR:-build-gpu}"

if [[ -n "${LLMUX_GPU_BUILD_DIR:-}" ]]; then
  for b in llmux tests/unit_backend_cuda gpu_bench; do
    [[ -x "$build/$b" ]] || { echo "check: $build/$b missing (LLMUX_GPU_BUILD_DIR)" >&2; exit 2; }
  done
  step "using the binaries in $build (built elsewhere; nothing is compiled here)"
else
  # NOTE: no -Werror (an unknown compiler's new warning must not stop the check) and no
  # -march=native (the device machine's CPU is unknown to the build): x86-64-v4 is the AVX-512
  # baseline the CPU backend's kernels need (the reference side of the agreement tests).
  step "configure"
  if ! cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DLLMUX_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_STANDARD=17 \
      -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DLLMUX_BENCHMARKS=ON \
      -DLLMUX_WERROR=OFF -DLLMUX_NATIVE=OFF -DCMAKE_CXX_FLAGS=-march=x86-64-v4 \
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
  if ! timeout "$(cap 300)" cmake --build "$build" -j 16 --target llmux unit_backend_cuda gpu_bench \
      > "$out/build.log" 2>&1; then
    grep -E "error|Error" "$out/build.log" | head -40
    echo "check: FAILED at build (full log: build.log)"
    exit 1
  fi
  step "build done"
fi

step "GPU unit tests (kernels vs CPU ops, faults, the real model vs the CPU backend)"
# CI=true: missing test data fails instead of skipping; the model is carried in .gpu-prefix.
CI=true LLMUX_TEST_DATA="$root/.gpu-prefix" \
  timeout "$(cap 240)" "$build/tests/unit_backend_cuda" > "$out/unit_backend_cuda.log" 2>&1
rc=$?
grep -E "^\[  (FAILED|PASSED|SKIPPED) |^\[==========\]|GEMM weight shapes|GEMM choice:|largest logit error" \
  "$out/unit_backend_cuda.log"
if grep -q "SKIPPED: no CUDA device" "$out/unit_backend_cuda.log"; then
  note "| unit_backend_cuda | FAIL: tests skipped, no CUDA device visible |"
elif [[ $rc -eq 0 ]]; then
  note "| unit_backend_cuda | pass ($(grep -c '^\[       OK \]' "$out/unit_backend_cuda.log") tests) |"
else
  note "| unit_backend_cuda | FAIL (rc $rc, see unit_backend_cuda.log) |"
fi

# The batch-invariance, reference and serving-path checks, one row each (a parameterised test
# counts as passed when no instance failed and at least one passed).
for t in GpuModel.TeacherForcedLogitsAgreeWithTheCpuBackend \
    GpuModel.FirstGreedyTokensMatchTheReference GpuModel.LogitsAreBitIdenticalAtBatch1And8And64 \
    GpuModel.ServingPathGreedyTokensMatchTheReference \
    GpuGemm.RowsAreBitIdenticalAcrossBatchSizes GpuGemm.ForcedFallbackMatchesReferenceAndIsInvariant \
    GpuGemm.FastModeChoosesPerM \
    GpuElementwise.EmbeddingEqualsTheCpuOp GpuElementwise.RmsNormMatchesTheCpuOp \
    GpuElementwise.AddRmsNormMatchesTheCpuOps GpuElementwise.RopeMatchesTheCpuOpAtModelFrequencies \
    GpuElementwise.SiluMulMatchesTheCpuOp GpuElementwise.MatMulBiasEqualsTheCpuOp \
    GpuElementwise.WriteKvEqualsTheCpuOp GpuElementwise.GatherLogitsRowsEqualsTheCpuOp \
    GqaRatios/GpuAttention.MixedPrefillAndDecodeMatchTheCpuBackend \
    GqaRatios/GpuAttention.LongContextMatchesTheCpuBackend \
    GqaRatios/GpuAttention.DecodeRowIsBitIdenticalAloneAndInABatch \
    GqaRatios/GpuAttention.TokensAreBitIdenticalAcrossChunkingsAndDecodes \
    GpuSampling.GreedyMatchesTheCpuSamplerExactly GpuSampling.SeededDrawsMatchTheCpuSampler \
    GpuSampling.AMaskedTokenIsNeverSampled \
    GpuSampling.EverythingSuppressedFallsBackToTheMaskedArgmax \
    GpuSampling.EmpiricalFrequenciesFollowTheCuts \
    GpuSampling.KernelEqualsTheHostEmulationTokenForToken \
    GpuSampling.TheDrawDoesNotDependOnTheBlockSizeOrTheBatch \
    GpuSampling.AFailedSamplingLaunchFailsThatCallWithUnavailable \
    GpuGraphs.DecodeStepsReplayGraphsWithIdenticalLogits \
    GpuGraphs.AnEarlyLaunchedGraphThatWasWrongIsOverwrittenByTheStepsOps; do
  if grep -q "^\[  FAILED  \] $t" "$out/unit_backend_cuda.log"; then
    note "| $t | FAIL (see unit_backend_cuda.log) |"
  elif grep -q "^\[       OK \] $t" "$out/unit_backend_cuda.log"; then
    note "| $t | pass |"
  else
    note "| $t | not run (see unit_backend_cuda.log) |"
  fi
done

step "gpu_bench: Engine steps on the real Model, llama3-8b shape (config only)"
# Only the shape matters for timing: gpu_bench writes the Llama-3-8B config.json to a temporary
# directory and generates the weights in memory (Model::LoadSynthetic); no checkpoint is
# written or read. Invariant mode first, then fast mode at batch 1 and 256 (the goal: invariant
# within 15% of fast at batch 1).
timeout "$(cap 240)" "$build/gpu_bench" --batches 1,8,32,256 --context 1024 --prefill 2048 --micro \
  --out "$out/gpu_bench.md" 2>&1 | tee "$out/gpu_bench.log" | grep -v '^|'
rc_bench=${PIPESTATUS[0]}
if (( $(cap 90) >= 60 )); then
  timeout "$(cap 90)" "$build/gpu_bench" --fast --batches 1,256 --context 1024 --prefill 2048 --steps 10 \
    --out "$out/gpu_bench_fast.md" 2>&1 | tee "$out/gpu_bench_fast.log" | grep -v '^|'
  rc_bench=$(( rc_bench | PIPESTATUS[0] ))
else
  note "| gpu_bench --fast | skipped: under 60 s left of the ${limit_s} s limit |"
fi
# Device sampling's longest path (temperature + top-p draws) in whole engine steps.
if (( $(cap 60) >= 40 )); then
  timeout "$(cap 60)" "$build/gpu_bench" --sampling nucleus --batches 1,256 --context 1024 --prefill 16 \
    --steps 10 --out "$out/gpu_bench_nucleus.md" 2>&1 | tee "$out/gpu_bench_nucleus.log" \
    | grep -v '^|'
  rc_bench=$(( rc_bench | PIPESTATUS[0] ))
else
  note "| gpu_bench --sampling nucleus | skipped: under 40 s left of the ${limit_s} s limit |"
fi
[[ $rc_bench -eq 0 ]] || note "| gpu_bench | FAIL (rc $rc_bench, see gpu_bench.log) |"

step "done"
write_summary
cat "$out/summary.md"
