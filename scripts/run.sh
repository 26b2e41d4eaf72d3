#!/usr/bin/env bash
# `make run`: starts llmuxd on 127.0.0.1:8080 with config/llmux.yaml and config/tenants.yaml,
# serving $MODEL (an HF model directory) when set, else the `tiny` model that
# `llmux make-model` writes under build/models/tiny (random weights: the machinery is real,
# the text is not).
set -euo pipefail
build_dir="$1"
model="${2:-}"
if [ -z "$model" ]; then
  model="$build_dir/models/tiny"
  if [ ! -f "$model/config.json" ]; then
    "$build_dir/llmux" make-model --shape tiny --dtype f32 --seed 1 --out "$model"
  fi
fi
echo "llmux: demo keys: sk-llmux-demo-premium, sk-llmux-demo-batch (tenants), sk-llmux-demo-admin (admin)"
exec "$build_dir/llmuxd" --config config/llmux.yaml --model "$model"
