#!/usr/bin/env bash
# ctest cpu_bench_op_profile_smoke: cpu_bench --op-profile on a `llmux make-model --shape tiny`
# model must exit 0 and print the decode table with exact counts: one profile per recorded
# decode step (tg x reps), every op of a step once per layer (four MatMuls, RoPE, WriteKv,
# Attention, SiLU; two norms), 6 + 10 x layers ops in a step, and the time between ops. Keeps the harness
# docs/performance.md's decode profiles come from from rotting. Under a second.
# Usage: smoke_test.sh CPU_BENCH LLMUX WORK_DIR
set -euo pipefail
bench=$1
llmux=$2
work=$3
rm -rf "$work"
mkdir -p "$work"
"$llmux" make-model --shape tiny --dtype f16 --seed 1 --out "$work/tiny" > /dev/null
layers=$(sed -n 's/.*"num_hidden_layers": *\([0-9]*\).*/\1/p' "$work/tiny/config.json")
out=$("$bench" --model "$work/tiny" --threads 2 --pp 4 --tg 5 --reps 2 --op-profile)
echo "$out"

fail() { echo "cpu_bench_op_profile_smoke: $*" >&2; exit 1; }
num='[0-9]+(\.[0-9]+)?'
[[ -n "$layers" ]] || fail "no num_hidden_layers in the tiny model's config"
grep -Eq "^\| tiny +\| f16 +\| +2 \| tg5 +\| +$num \| +$num \|$" <<< "$out" || fail "no tg5 row"
grep -q "^op profile: 10 decode steps;" <<< "$out" || fail "expected 10 recorded decode steps"
# A row: | op | calls | min us | % min | median us | % med | GB/s at min |
row() { grep -E "^\| $1 +\| +$2 \| +$num \| +$num% \| +$num \| +$num% \| +($num)? *\|$" <<< "$out"; }
for op in Rope WriteKv Attention SiluMul; do
  row "$op" "$layers" > /dev/null || fail "no $op row with $layers calls"
done
row AddRmsNorm $((2 * layers)) > /dev/null || fail "AddRmsNorm: expected $((2 * layers)) calls"
for op in BeginBatch Embedding RmsNorm GatherLogitsRows CopyToHostF32; do
  row "$op" 1 > /dev/null || fail "no $op row with 1 call"
done
# Four matrices per layer (q/k/v fused, o, gate/up fused, down) and the LM head, each with GB/s.
matmuls=$(grep -cE "^\| MatMul [0-9]+x[0-9]+ f16 +\| +[0-9]+ \| .* \| +$num \|$" <<< "$out" || true)
[[ "$matmuls" == 5 ]] || fail "expected 5 MatMul rows with GB/s, got $matmuls"
row "sum of ops" $((6 + 10 * layers)) > /dev/null || fail "sum of ops: expected $((6 + 10 * layers))"
grep -Eq "^\| between ops +\| +\| +$num \| +$num% \| +$num \| +$num% \| +\|$" <<< "$out" ||
  fail "no between-ops row"
grep -Eq "^\| step \(BeginBatch\.\.copy\) +\| +\| +$num \| 100\.0% \|" <<< "$out" || fail "no step row"
echo "cpu_bench_op_profile_smoke: ok"
