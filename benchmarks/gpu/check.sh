#!/usr/bin/env bash
# The GPU check, run ON the device machine from the repository root with .gpu-prefix/ carried
# (made by benchmarks/gpu/prepare.sh). Which binaries it runs, said in its output and summary:
#   carried: .gpu-prefix/gpu-carry.tar.xz holds llmux, unit_backend_cuda and gpu_bench built on
#     the build machine for sm_90 with the libraries they load; they are unpacked (into
#     build-gpu-carried/, or LLMUX_GPU_CARRIED_DIR) and run when `ldd` finds every library
#     (LD_LIBRARY_PATH: the carried lib/, then the device's CUDA), the driver and CUDA runtime
#     can run the build's CUDA version, and the tree's sources are the ones they were built
#     from. Nothing is compiled.
#   built here (the fallback when any of that fails, or the archive is missing): configures
#     against the -dev packages of .gpu-prefix/root.tar.xz (unpacked into build-gpu-root/) and
#     builds the three for sm_90 in build-gpu/ (3-4 of the 8 minutes).
#   LLMUX_GPU_BUILD_DIR=DIR: the binaries in a build tree made elsewhere, as they are.
# LLMUX_GPU_CHECK_BUILD=1 forces the fallback; LLMUX_GPU_PREFIX (default .gpu-prefix) and
# LLMUX_GPU_CUDA_LIBS (default /usr/local/cuda/lib64: the device's cudart and cuBLAS) say where
# the carried files and the device's CUDA libraries are; CUDA libraries not found there are
# looked for under LLMUX_GPU_CUDA_SEARCH (default "/usr/local /opt /usr/lib").
# `check.sh --select-only` only chooses (and unpacks), prints the choice and exits:
# tests/scripts/gpu_carry_test.sh runs it.
# It then runs the GPU unit tests (which include the CPU-vs-CUDA agreement of the real model on
# stories260K-hf: first greedy tokens and logit error bounds, gpu_model_test.cpp), and times a
# llama3-8b-shaped model from its config alone (no weight files are written). Prints progress
# as it goes; writes check.log and summary.md under $OUT (or out/gpu-check).
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

source "$root/benchmarks/gpu/carry.sh"
select_only=0
[[ "${1:-}" == "--select-only" ]] && select_only=1
prefix="${LLMUX_GPU_PREFIX:-$root/.gpu-prefix}"
# What is unpacked goes OUTSIDE .gpu-prefix (into git-ignored build-gpu-* folders), so that
# .gpu-prefix stays the size prepare.sh measured if it is carried again after a run.
carried="${LLMUX_GPU_CARRIED_DIR:-$root/build-gpu-carried}"
P="$prefix/root"  # an unpacked prefix (older prepare.sh) is used as it is
[[ -d "$P/usr" ]] || P="$root/build-gpu-root/root"
if [[ ! -d "$prefix/root/usr" && ! -f "$prefix/root.tar.xz" && ! -f "$prefix/gpu-carry.tar.xz" ]]; then
  echo "check: $prefix holds neither binaries nor packages: run benchmarks/gpu/prepare.sh first and carry .gpu-prefix" >&2
  exit 2
fi
libdir="$P/usr/lib/x86_64-linux-gnu"
# The device's CUDA runtime libraries (cudart, cuBLAS): its toolkit's.
cuda_libs="${LLMUX_GPU_CUDA_LIBS:-/usr/local/cuda/lib64}"
export PATH="/usr/local/cuda/bin:$PATH"

smi_header="$(nvidia-smi 2>/dev/null || true)"
step "device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'nvidia-smi unavailable')"

# Which binaries run: sets `build` (the tree holding llmux, gpu_bench, tests/unit_backend_cuda)
# and `path_taken`; on the carried path also LD_LIBRARY_PATH. Any reason not to run the carried
# binaries is said, and the binaries are built here instead.
select_binaries() {
  path_taken=""
  if [[ -n "${LLMUX_GPU_BUILD_DIR:-}" ]]; then
    build="$LLMUX_GPU_BUILD_DIR"
    for b in "${CARRY_BINARIES[@]}"; do
      [[ -x "$build/$b" ]] || { echo "check: $build/$b missing (LLMUX_GPU_BUILD_DIR)" >&2; exit 2; }
    done
    path_taken="given"
    return
  fi
  local archive="$prefix/gpu-carry.tar.xz" why="" missing manifest
  local cuda_missing found
  if [[ "${LLMUX_GPU_CHECK_BUILD:-0}" == 1 ]]; then
    why="LLMUX_GPU_CHECK_BUILD=1"
  elif [[ ! -f "$archive" ]]; then
    why="no $archive (prepare.sh --no-build, or not carried)"
  else
    rm -rf "$carried"
    mkdir -p "$carried"
    manifest="$carried/MANIFEST"
    if ! { carry_unxz "$archive" | tar -C "$carried" -xf -; } 2>"$out/carry_unpack.log"; then
      why="$archive did not unpack: $(head -1 "$out/carry_unpack.log")"
    elif [[ ! -f "$manifest" ]]; then
      why="$archive has no MANIFEST"
    else
      local bins=("${CARRY_BINARIES[@]/#/$carried/build/}") b built driver runtime bad
      for b in "${bins[@]}"; do
        [[ -x "$b" ]] || { why="$archive lacks build/${b#"$carried/build/"}"; break; }
      done
      if [[ -z "$why" ]]; then
        built="$(carry_manifest_get "$manifest" cuda_version)"
        echo "check: carried binaries: $(carry_manifest_get "$manifest" commit), built $(carry_manifest_get "$manifest" built_utc) with CUDA $built for sm_$(carry_manifest_get "$manifest" cuda_architectures); need $(carry_manifest_get "$manifest" glibc_needed), $(carry_manifest_get "$manifest" glibcxx_needed)"
        missing="$(carry_missing "$carried/lib:$cuda_libs" "${bins[@]}")"
        cuda_missing="$(grep -oE 'lib(cudart|cublas|cublasLt)\.so\.[0-9]+' <<<"$missing" | sort -u)"
        if [[ -n "$cuda_missing" ]]; then
          # CUDA's libraries elsewhere than $cuda_libs (another toolkit folder, Python wheels).
          found="$(carry_find_lib_dirs "${LLMUX_GPU_CUDA_SEARCH:-/usr/local /opt /usr/lib}" $cuda_missing | paste -sd: -)"
          if [[ -n "$found" ]]; then
            echo "check: CUDA libraries not in $cuda_libs; found in $found"
            cuda_libs="$cuda_libs:$found"
            missing="$(carry_missing "$carried/lib:$cuda_libs" "${bins[@]}")"
          fi
        fi
        if [[ -n "$missing" ]]; then
          echo "$missing" | sed "s|$carried/||; s/^/check: ldd: /"
          why="ldd: $(echo "$missing" | sed "s|$carried/||" | head -3 | paste -sd ';' -)"
        fi
      fi
      if [[ -z "$why" ]]; then
        driver="$(carry_driver_cuda_version <<<"$smi_header")"
        runtime="$(carry_runtime_version "$carried/lib:$cuda_libs" "${bins[0]}")"
        echo "check: CUDA: built with ${built:-?}, the driver supports ${driver:-? (no nvidia-smi)}, CUDA runtime library ${runtime:-? (unknown)}"
        bad="$(carry_cuda_compatible "$built" "$driver" "$runtime")" || why="$bad"
      fi
      if [[ -z "$why" ]] && [[ -f "$carried/sources.sha256" ]]; then
        if ! bad="$(cd "$root" && sha256sum --quiet -c "$carried/sources.sha256" 2>/dev/null)"; then
          why="the tree's sources differ from the binaries' ($(echo "$bad" | grep -c ': FAILED') changed, e.g. $(echo "$bad" | head -1 | cut -d: -f1))"
        fi
      elif [[ -z "$why" ]]; then
        why="$archive has no sources.sha256"
      fi
    fi
  fi
  if [[ -z "$why" ]]; then
    build="$carried/build"
    export LD_LIBRARY_PATH="$carried/lib:$cuda_libs:${LD_LIBRARY_PATH:-}"
    path_taken="carried"
    return
  fi
  build="build-gpu"
  path_taken="build"
  build_reason="$why"
}
select_binaries
case "$path_taken" in
  given) step "binaries: using $build (LLMUX_GPU_BUILD_DIR, built elsewhere; nothing is compiled here)"
         note "| binaries | given: $build |" ;;
  carried) step "binaries: CARRIED, from gpu-carry.tar.xz (nothing is compiled here)"
           note "| binaries | carried (gpu-carry.tar.xz, $(carry_manifest_get "$build/../MANIFEST" commit)) |" ;;
  build) step "binaries: BUILT HERE, because: $build_reason"
         note "| binaries | built on the device: $build_reason |" ;;
esac
# Both paths build for x86-64-v4 (AVX-512: the CPU backend's kernels, the reference side of the
# agreement tests); say so up front when this host's CPU lacks it (glibc's loader knows).
if /lib64/ld-linux-x86-64.so.2 --help 2>/dev/null | grep -q "x86-64-v4 (supported"; then
  echo "check: host CPU: x86-64-v4 (AVX-512) supported"
elif /lib64/ld-linux-x86-64.so.2 --help 2>/dev/null | grep -q "x86-64-v4"; then
  note "| host CPU | lacks x86-64-v4 (AVX-512): the CPU-reference tests will stop with SIGILL |"
fi
if (( select_only )); then
  echo "check: selected=$path_taken"
  exit 0
fi

if [[ "$path_taken" == build ]]; then
  if [[ ! -d "$P/usr" ]]; then
    step "unpack the -dev packages (root.tar.xz)"
    [[ -f "$prefix/root.tar.xz" ]] || { echo "check: no $prefix/root.tar.xz to build against" >&2; exit 2; }
    mkdir -p "$(dirname "$P")"
    carry_unxz "$prefix/root.tar.xz" | tar -C "$(dirname "$P")" -xf - || { echo "check: root.tar.xz did not unpack" >&2; exit 1; }
  fi
  export LD_LIBRARY_PATH="$libdir:$libdir/openblas-pthread:$cuda_libs:${LD_LIBRARY_PATH:-}"
  # NOTE: no -Werror (an unknown compiler's new warning must not stop the check) and no
  # -march=native (the device machine's CPU is unknown to the build): see carry_configure.
  step "configure (against .gpu-prefix/root only)"
  if ! carry_configure "$root" "$build" "$P" > "$out/configure.log" 2>&1; then
    tail -40 "$out/configure.log"
    echo "check: FAILED at configure (full log: configure.log)"
    note "| build on the device | FAIL at configure (configure.log) |"
    write_summary
    exit 1
  fi
  grep -E "llmux: CUDA backend" "$out/configure.log"

  step "build llmux unit_backend_cuda gpu_bench (ninja -j16, sm_90)"
  if ! timeout "$(cap 300)" cmake --build "$build" -j 16 --target llmux unit_backend_cuda gpu_bench \
      > "$out/build.log" 2>&1; then
    grep -E "error|Error" "$out/build.log" | head -40
    echo "check: FAILED at build (full log: build.log)"
    note "| build on the device | FAIL after $(( $(date +%s) - t0 )) s (build.log: $(tail -1 "$out/build.log")) |"
    write_summary
    exit 1
  fi
  step "build done"
fi

step "GPU unit tests (kernels vs CPU ops, faults, the real model vs the CPU backend)"
# CI=true: missing test data fails instead of skipping; the model is carried in .gpu-prefix.
CI=true LLMUX_TEST_DATA="$prefix" \
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
