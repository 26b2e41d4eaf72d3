#!/usr/bin/env bash
# benchmarks/gpu/check.sh's choice between the carried binaries and building on the device,
# run for real (`check.sh --select-only`) on tiny fake archives made here with cc: stand-ins
# for llmux, gpu_bench and unit_backend_cuda that load a carried library and a stand-in CUDA
# runtime (soname libcudart.so.99: a major no real runtime on the test machine has), and
# stand-in nvidia-smi output. No GPU, no sm_90 build: a few seconds.
# Usage: gpu_carry_test.sh [SOURCE_DIR] (default: this checkout).
set -euo pipefail
src="$(realpath "${1:-$(dirname "$0")/../..}")"
check="$src/benchmarks/gpu/check.sh"
source "$src/benchmarks/gpu/carry.sh"

tmp="$(mktemp -d)"
trap '[[ -n "${KEEP_TMP:-}" ]] || rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# --- carry.sh's parsers on fixed text ------------------------------------------------------
parsed="$(carry_ldd_parse <<'EOF'
	linux-vdso.so.1 (0x00007ffd0a3f2000)
	libfoo.so.1 => /opt/x/libfoo.so.1 (0x00007f0a1c000000)
	libbar.so.2 => not found
./b: /lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.32' not found (required by ./b)
	/lib64/ld-linux-x86-64.so.2 (0x00007f0a1c400000)
EOF
)"
expected="$(printf 'libfoo.so.1\t/opt/x/libfoo.so.1\nlibbar.so.2\tnot found\nGLIBCXX_3.4.32\tnot found')"
[[ "$parsed" == "$expected" ]] || fail "carry_ldd_parse printed: $parsed"
[[ "$(carry_driver_cuda_version <<<'| NVIDIA-SMI 580.159.04   Driver Version: 580.159.04   CUDA Version: 13.0     |')" == 13.0 ]] \
  || fail "carry_driver_cuda_version did not read 13.0"
carry_cuda_compatible 13.0.88 13.0 13.0.96 >/dev/null || fail "13.0.88 on driver 13.0 / runtime 13.0.96 rejected"
carry_cuda_compatible 13.0.88 13.2 "" >/dev/null || fail "13.0.88 on driver 13.2 rejected"
carry_cuda_compatible 13.0.88 12.8 "" >/dev/null && fail "13.0.88 on driver 12.8 accepted"
carry_cuda_compatible 13.1.20 13.1 13.0.96 >/dev/null && fail "13.1.20 on runtime 13.0.96 accepted"
carry_device_lib libcublasLt.so.13 || fail "cuBLASLt is the device's"
carry_device_lib libopenblas.so.0 && fail "OpenBLAS is not the device's"

# --- stand-ins: a CUDA runtime (the device's), a carried library, three binaries ---------------
mkdir -p "$tmp/cuda-99.0.1" "$tmp/cuda-99.2.5" "$tmp/stage/build/tests" "$tmp/stage/lib" "$tmp/bin"
# Its cudaRuntimeGetVersion answers 99000 / 99020 (what carry_runtime_version asks through
# Python's ctypes; without python3 it reads 99.0.1 / 99.2.5 from the file name).
for v in 99.0.1 99.2.5; do
  printf 'int cudaRuntimeGetVersion(int* v) { *v = %d; return 0; }\n' \
    "$(( ${v%%.*} * 1000 + $(cut -d. -f2 <<<"$v") * 10 ))" > "$tmp/cudart.c"
  cc -shared -fPIC -Wl,-soname,libcudart.so.99 -o "$tmp/cuda-$v/libcudart.so.$v" "$tmp/cudart.c"
  ln -s "libcudart.so.$v" "$tmp/cuda-$v/libcudart.so.99"
done
echo 'int carried_fn(void) { return 0; }' > "$tmp/carried.c"
cc -shared -fPIC -Wl,-soname,libllmuxcarrytest.so.1 -o "$tmp/stage/lib/libllmuxcarrytest.so.1" "$tmp/carried.c"
# Each binary calls into both libraries (so both are NEEDED) and fails unless the runtime answers.
echo 'int carried_fn(void); int cudaRuntimeGetVersion(int* v);
int main(void) { int v = 0; return carried_fn() + (cudaRuntimeGetVersion(&v) != 0 || v <= 0); }' > "$tmp/main.c"
for b in "${CARRY_BINARIES[@]}"; do
  cc -o "$tmp/stage/build/$b" "$tmp/main.c" "$tmp/stage/lib/libllmuxcarrytest.so.1" \
    "$tmp/cuda-99.0.1/libcudart.so.99"
done
# The binaries really run with the carried lib/ and a CUDA folder, and not without the former.
LD_LIBRARY_PATH="$tmp/stage/lib:$tmp/cuda-99.0.1" "$tmp/stage/build/llmux" || fail "stand-in did not run"
if LD_LIBRARY_PATH="$tmp/cuda-99.0.1" "$tmp/stage/build/llmux" 2>/dev/null; then fail "stand-in ran without lib/"; fi
(cd "$src" && sha256sum CMakeLists.txt cmake/Dependencies.cmake) > "$tmp/stage/sources.sha256"

# pack [CUDA_VERSION] [what to leave out...]: writes $tmp/prefix/gpu-carry.tar.xz from the stage.
pack() {
  local cuda="$1" items=(MANIFEST sources.sha256 build lib)
  shift
  printf 'built_utc=2026-01-01T00:00:00Z\ncommit=0123abc\ncuda_version=%s\ncuda_architectures=90\nglibc_needed=GLIBC_2.34\nglibcxx_needed=GLIBCXX_3.4.30\n' \
    "$cuda" > "$tmp/stage/MANIFEST"
  local excludes=() x
  for x in "$@"; do excludes+=("--exclude=$x"); done
  rm -rf "$tmp/prefix"
  mkdir -p "$tmp/prefix"
  : > "$tmp/prefix/root.tar.xz"  # the fallback's packages (never unpacked by --select-only)
  tar -C "$tmp/stage" "${excludes[@]}" -cf - "${items[@]}" | xz -1 > "$tmp/prefix/gpu-carry.tar.xz"
}
smi() {  # smi CUDA_VERSION: a stand-in nvidia-smi (header and --query-gpu)
  printf '#!/bin/sh\nif [ "$#" -gt 0 ]; then echo "NVIDIA H100 80GB HBM3, 81559 MiB, 580.159.04"; exit 0; fi\necho "| NVIDIA-SMI 580.159.04    Driver Version: 580.159.04    CUDA Version: %s |"\n' \
    "$1" > "$tmp/bin/nvidia-smi"
  chmod +x "$tmp/bin/nvidia-smi"
}
# expect NAME PATH REASON_PATTERN [ENV...]: runs check.sh --select-only and checks its choice.
expect() {
  local name="$1" want="$2" reason="$3" log
  shift 3
  log="$(env -u LLMUX_GPU_BUILD_DIR -u LLMUX_GPU_CHECK_BUILD PATH="$tmp/bin:$PATH" OUT="$tmp/out" \
           LLMUX_GPU_PREFIX="$tmp/prefix" LLMUX_GPU_CARRIED_DIR="$tmp/carried" \
           LLMUX_GPU_CUDA_LIBS="$tmp/cuda-99.0.1" \
           LLMUX_GPU_CUDA_SEARCH="$tmp/nowhere" "$@" \
           bash "$check" --select-only 2>&1)" || { fail "$name: check.sh exited $?: $log"; return; }
  if ! grep -q "^check: selected=$want\$" <<<"$log"; then
    fail "$name: wanted $want, got: $log"
  elif [[ "$want" == build ]] && ! grep -qE "binaries: BUILT HERE, because: .*$reason" <<<"$log"; then
    fail "$name: the reason does not match '$reason': $log"
  elif [[ "$want" == carried ]] && ! grep -q "binaries: CARRIED" <<<"$log"; then
    fail "$name: the carried path is not announced: $log"
  else
    echo "ok: $name -> $want"
  fi
}

smi 99.0
pack 99.0.88
expect "compatible archive" carried ""
[[ -x "$tmp/carried/build/tests/unit_backend_cuda" ]] || fail "the archive was not unpacked"
[[ ! -e "$tmp/prefix/carried" ]] || fail "the archive was unpacked inside the prefix"
expect "forced fallback" build "LLMUX_GPU_CHECK_BUILD=1" LLMUX_GPU_CHECK_BUILD=1
expect "newer runtime" carried "" LLMUX_GPU_CUDA_LIBS="$tmp/cuda-99.2.5"
pack 99.2.1
expect "runtime older than the build" build "CUDA runtime is 99.0(.1)?, older than the build's 99.2"
pack 99.0.88
smi 98.8
expect "driver of an older major" build "the driver supports CUDA 98.8"
smi 99.0
mkdir -p "$tmp/nowhere" "$tmp/search/venv/nvidia/lib"
expect "no CUDA runtime anywhere" build "ldd: .*libcudart.so.99 not found" \
  LLMUX_GPU_CUDA_LIBS="$tmp/nowhere" LLMUX_GPU_CUDA_SEARCH="$tmp/nowhere"
cp -P "$tmp"/cuda-99.0.1/libcudart.so.99* "$tmp/search/venv/nvidia/lib/"
expect "the CUDA runtime in another folder" carried "" \
  LLMUX_GPU_CUDA_LIBS="$tmp/nowhere" LLMUX_GPU_CUDA_SEARCH="$tmp/nowhere $tmp/search"
pack 99.0.88 lib/libllmuxcarrytest.so.1
expect "a carried library left out" build "ldd: build/llmux: libllmuxcarrytest.so.1 not found"
pack 99.0.88 build/gpu_bench
expect "a binary left out" build "lacks build/gpu_bench"
pack 99.0.88
head -c 2000 "$tmp/prefix/gpu-carry.tar.xz" > "$tmp/cut" && mv "$tmp/cut" "$tmp/prefix/gpu-carry.tar.xz"
expect "a truncated archive" build "did not unpack"
rm "$tmp/prefix/gpu-carry.tar.xz"
expect "no archive" build "no .*gpu-carry.tar.xz"
(cd "$src" && sha256sum CMakeLists.txt) | awk '{print "0000000000000000000000000000000000000000000000000000000000000000  " $2}' \
  > "$tmp/stage/sources.sha256"
pack 99.0.88
expect "sources changed since the build" build "sources differ .*1 changed, e.g. CMakeLists.txt"

if (( fails )); then
  echo "$fails failure(s)"
  exit 1
fi
echo "all checks passed"
