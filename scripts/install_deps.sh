#!/usr/bin/env bash
# Installs the Debian packages llmux needs, only when one is missing. Idempotent; safe to rerun.
# Runs as root (apt-get directly) or through sudo when available.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libboost-dev          # Asio / Beast
  libssl-dev            # SHA-256, CRYPTO_memcmp
  nlohmann-json3-dev
  libspdlog-dev
  libyaml-cpp-dev
  prometheus-cpp-dev
  libsqlite3-dev
  libpcre2-dev          # Unicode-aware regex for byte-level BPE pre-tokenizers
  libicu-dev            # Unicode normalization forms (NFC for Qwen2 tokenizers)
  libopenblas-dev       # optional batch-dependent GEMM path (off by default)
  libgtest-dev libgmock-dev
  libbenchmark-dev
  nodejs npm            # integration tests use the official openai npm client
  libhiredis-dev        # cluster mode: tenant state shared by replicas in Redis
  libpqxx-dev libpq-dev # optional PostgreSQL usage ledger shared by replicas
  libzmq3-dev libmsgpack-cxx-dev   # KV-cache events for prefix-aware routers (vLLM's format)
  redis-server postgresql haproxy  # real servers the cluster tests start on loopback
  python3-zmq python3-msgpack      # the KV-event subscriber in the gateway tests
  apache2-utils python3-numpy      # make bench-anchors: ab, and llama.cpp's gguf-py
  gnuplot-nox                      # llmux-bench plots and the sweep's latency/throughput curve
  clang-14 libclang-rt-14-dev      # the ASan+UBSan tree of `make test` (thread-safety analysis), libFuzzer
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# nodejs/npm may come from outside Debian's packages on some images: a working binary is enough.
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=()
  for p in "${missing[@]}"; do [[ "$p" == nodejs || "$p" == npm ]] || filtered+=("$p"); done
  missing=("${filtered[@]}")
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install_deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
