#!/usr/bin/env bash
# `make run`: generates text with $MODEL (an HF model directory) or, when unset, the `tiny`
# model made by `llmux make-model` under build/models/tiny.
set -euo pipefail
build_dir="$1"
model="${2:-}"
if [ -z "$model" ]; then
  model="$build_dir/models/tiny"
  if [ ! -f "$model/config.json" ]; then
    "$build_dir/llmux" make-model --shape tiny --dtype f32 --seed 1 --out "$model"
  fi
fi
exec "$build_dir/llmux" generate --model "$model" --prompt "Once upon a time" --max-tokens 64 \
  --temperature 0.8 --seed 42
