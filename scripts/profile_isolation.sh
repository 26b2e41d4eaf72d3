#!/usr/bin/env bash
# Profiles llmuxd under the noisy-neighbor scenario's `loaded` run (premium trickle + batch-lane
# flood): samples every thread of the daemon with perf (cpu-clock, a software event, so it works
# in VMs without hardware counters) while llmux-bench drives the load, then writes where each
# thread's time goes (by thread name: llmux-io, llmux-engine, ...) and the top symbols of each.
#
#   scripts/profile_isolation.sh BUILD_DIR MODEL_DIR [OUT_DIR] [SECONDS] [SCENARIO]
#
# Needs linux-perf (`perf stat -e task-clock true` must work; kernel.perf_event_paranoid <= 2
# for a process of your own). Outputs: OUT_DIR/perf.data, OUT_DIR/by_thread.txt,
# OUT_DIR/by_symbol.txt, OUT_DIR/bench.txt.
set -euo pipefail
BUILD=${1:?BUILD_DIR}
MODEL=${2:?MODEL_DIR}
OUT=${3:-$BUILD/bench/profile}
SECONDS_TO_SAMPLE=${4:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCENARIO=${5:-$ROOT/benchmarks/scenarios/noisy-neighbor.yaml}
WORK=$OUT/work
mkdir -p "$OUT"
rm -rf "$WORK"

"$BUILD/llmux-bench" --scenario "$SCENARIO" \
    --llmuxd "$BUILD/llmuxd" --model-dir "$MODEL" --run loaded --work "$WORK" \
    > "$OUT/bench.txt" 2>&1 &
BENCH=$!
# The daemon this run started (its config lives under our own work folder).
PID=""
for _ in $(seq 1 600); do
  kill -0 "$BENCH" 2>/dev/null || break  # llmux-bench gave up (llmuxd did not start)
  PID=$(pgrep -n -f "llmuxd --config $WORK/" || true)
  if [ -n "$PID" ] && grep -q "serving" "$WORK"/*/*/llmuxd.log 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -z "$PID" ] || ! kill -0 "$PID" 2>/dev/null; then
  echo "profile_isolation: llmuxd did not start" >&2
  wait "$BENCH" || true
  exit 1
fi
sleep 3  # let the flood reach its steady state
perf record -e cpu-clock -F 999 -g -p "$PID" -o "$OUT/perf.data" -- sleep "$SECONDS_TO_SAMPLE" \
    2> "$OUT/perf-record.log"
wait "$BENCH"
perf report -i "$OUT/perf.data" --no-children --sort comm --stdio 2>/dev/null \
    | grep -v '^$' > "$OUT/by_thread.txt"
perf report -i "$OUT/perf.data" --no-children --sort comm,dso,sym --stdio -g none \
    --percent-limit 0.5 2>/dev/null | grep -v '^$' > "$OUT/by_symbol.txt"
echo "profile_isolation: $OUT/by_thread.txt $OUT/by_symbol.txt $OUT/bench.txt"
