#!/usr/bin/env bash
# ctest gpu_bench_cpu_smoke: gpu_bench --backend cpu on a stories260K-shaped config (5 layers,
# dim 64; synthetic weights, no data needed) must exit 0 and print, and write with --out, its
# table: one row per decode batch (ms/step, tok/s, bytes moved per second, the roofline column,
# "-" on the CPU where no bandwidth is measured) and the prefill row. Keeps the harness the
# GPU check (benchmarks/gpu/check.sh) depends on from rotting without a GPU. A few seconds.
# Usage: smoke_test.sh GPU_BENCH WORK_DIR
set -euo pipefail
bench=$1
work=$2
mkdir -p "$work/config"
cat > "$work/config/config.json" <<'JSON'
{
  "architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "vocab_size": 512, "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 5,
  "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 8,
  "max_position_embeddings": 512, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
  "hidden_act": "silu", "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2,
  "torch_dtype": "float32"
}
JSON
rm -f "$work/table.md"
out=$("$bench" --backend cpu --config "$work/config" --batches 1,4 --context 32 --prefill 64 \
      --steps 3 --out "$work/table.md")
echo "$out"

fail() { echo "gpu_bench_cpu_smoke: $*" >&2; exit 1; }
num='[0-9]+(\.[0-9]+)?'
header='| what | time | tokens/s | bytes moved / time | of measured bandwidth |'
# The table as gpu_bench prints it at the end: header, rule, decode rows, prefill row.
expected_rows=(
  "\| engine decode step, batch 1, ctx 32, greedy \| $num ms \| [0-9]+ tok/s \| $num TB/s \| - \|"
  "\| engine decode step, batch 4, ctx 32, greedy \| $num ms \| [0-9]+ tok/s \| $num TB/s \| - \|"
  "\| engine prefill, 64 tokens \| $num ms \| [0-9]+ tok/s \| - \| - \|"
)
table=$(printf '%s\n' "$out" | awk -v h="$header" '$0 == h { p = 1 } p')
[[ -n "$table" ]] || fail "no table header '$header' in the output"
mapfile -t lines <<< "$table"
(( ${#lines[@]} == 2 + ${#expected_rows[@]} )) ||
  fail "the table has ${#lines[@]} lines, expected $(( 2 + ${#expected_rows[@]} ))"
[[ ${lines[1]} == '|---|---|---|---|---|' ]] || fail "bad rule line: ${lines[1]}"
for i in "${!expected_rows[@]}"; do
  printf '%s\n' "${lines[$((i + 2))]}" | grep -Eqx "${expected_rows[$i]}" ||
    fail "row $i: '${lines[$((i + 2))]}' does not match '${expected_rows[$i]}'"
  # A zero rate would mean nothing was timed.
  [[ ${lines[$((i + 2))]} != *"| 0 tok/s |"* ]] || fail "row $i reports 0 tok/s"
done
[[ -f "$work/table.md" ]] || fail "--out wrote no file"
[[ "$(cat "$work/table.md")" == "$table" ]] || fail "--out's table differs from the printed one"
echo "gpu_bench_cpu_smoke: ok"
