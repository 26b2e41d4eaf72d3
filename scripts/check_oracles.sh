#!/usr/bin/env bash
# Re-checks the golden data of the tokenizer and chat-template tests against the reference
# implementations that produced it (pinned npm packages):
#   - chat templates: @huggingface/jinja (tests/oracle/jinja/render.mjs) renders every golden
#     case live and the golden test compares llmux's output with it (set LLMUX_UPDATE_GOLDENS=1
#     to rewrite tests/unit/tokenizer/chat_template_golden/*.json from the oracle);
#   - token ids: @huggingface/tokenizers (scripts/oracles/tokenize.mjs) prints the ids of any
#     text for a tokenizer folder, the source of the expected ids in tests/unit/tokenizer.
# Usage: scripts/check_oracles.sh [BUILD_DIR]   (after `make build`)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
(cd "$root/tests/oracle/jinja" && npm ci --no-audit --no-fund --loglevel=error)
(cd "$root/scripts/oracles" && npm ci --no-audit --no-fund --loglevel=error)
"$root/scripts/test_data.sh"
echo "== chat templates against @huggingface/jinja (live)"
"$build/unit_tokenizer" --gtest_filter='*Golden*'
echo "== Llama-3 token ids from @huggingface/tokenizers"
node "$root/scripts/oracles/tokenize.mjs" "$root/.testdata/llama3" \
  "I'M DON'T you'll WE'VE it's" "1234567 12 3.14159 1,000,000" "tabs		and  spaces   "
