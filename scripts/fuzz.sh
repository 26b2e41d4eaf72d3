#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-14 (ASan+UBSan) in $1 and runs each for $2 seconds
# on a scratch copy of its seed corpus (tests/fuzz/corpus/<target>/ stays as committed).
# Findings are written to $1/findings/<target>/; the script fails when any target crashed.
set -euo pipefail
build="${1:-build-fuzz}"
seconds="${2:-60}"
jobs="${3:-2}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if ! command -v clang++-14 >/dev/null || ! ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  echo "fuzz: installing clang-14 and libclang-rt-14-dev" >&2
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get install -y --no-install-recommends clang-14 libclang-rt-14-dev >&2
fi
if [ ! -f "$build/build.ninja" ]; then
  CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DLLMUX_CUDA=OFF -DLLMUX_BENCHMARKS=OFF -DLLMUX_FUZZ=ON \
    -DLLMUX_SANITIZE=address,undefined
fi
targets=()
for src in tests/fuzz/*_fuzz.cpp; do
  name="$(basename "$src" _fuzz.cpp)"
  targets+=("$name")
done
cmake --build "$build" -j "$jobs" --target "${targets[@]/#/fuzz_}"
export LLMUX_TEST_DATA="${LLMUX_TEST_DATA:-$root/../shared}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
failed=0
summary=""
for name in "${targets[@]}"; do
  work="$build/corpus/$name"
  findings="$build/findings/$name"
  mkdir -p "$work" "$findings"
  cp -n tests/fuzz/corpus/"$name"/* "$work"/ 2>/dev/null || true
  log="$build/findings/$name.log"
  echo "fuzz: $name for ${seconds}s" >&2
  if ! "$build/fuzz_$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
      -max_len=65536 -artifact_prefix="$findings/" -print_final_stats=1 "$work" >"$log" 2>&1; then
    failed=1
    echo "fuzz: $name FAILED (see $log and $findings/)" >&2
    tail -30 "$log" >&2
  fi
  execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)"
  summary+="$name: ${execs} executions, $(ls "$findings" | wc -l) crashes"$'\n'
done
printf '%s' "$summary"
exit "$failed"
