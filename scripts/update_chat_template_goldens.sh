#!/usr/bin/env bash
# Regenerates the chat-template goldens (tests/unit/tokenizer/chat_template_golden/*.json) from
# the reference renderer @huggingface/jinja (tests/oracle/jinja, pinned in its package.json):
# installs the oracle, fetches the pinned tokenizer configs, and reruns the golden tests with
# LLMUX_UPDATE_GOLDENS=1, which writes each golden from the oracle's output (after checking
# that llmux renders the same). Usage: scripts/update_chat_template_goldens.sh [BUILD_DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
(cd "$root/tests/oracle/jinja" && npm ci --silent)
"$root/scripts/test_data.sh"
CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=true cmake --build "$build" --target unit_tokenizer
LLMUX_UPDATE_GOLDENS=1 "$build/tests/unit_tokenizer" --gtest_filter='ChatTemplateGolden*:ChatTemplateToolsGolden*'
