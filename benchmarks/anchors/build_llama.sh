#!/usr/bin/env bash
# Builds llama.cpp's llama-bench, llama-quantize and llama-server (CPU only) from the release
# that the npm package node-llama-cpp@3.22.1 ships (package/llama/gitRelease.bundle), into a
# cache outside the checkout. Reused when already built. Prints nothing but progress on stderr;
# the last line on stdout is the cache directory.
#
#   LLMUX_ANCHORS_CACHE   cache directory (default $HOME/.cache/llmux-anchors)
#   LLMUX_ANCHORS_JOBS    parallel compile jobs (default 2: the build machine is shared)
set -euo pipefail

NODE_LLAMA_CPP_VERSION=3.22.1
CACHE="${LLMUX_ANCHORS_CACHE:-$HOME/.cache/llmux-anchors}"
JOBS="${LLMUX_ANCHORS_JOBS:-2}"
SRC="$CACHE/llama.cpp"
BUILD="$CACHE/llama.cpp-build"
TARGETS=(llama-bench llama-quantize llama-server)

log() { echo "anchors/build: $*" >&2; }
mkdir -p "$CACHE"

have_all() {
  local t
  for t in "${TARGETS[@]}"; do [ -x "$BUILD/bin/$t" ] || return 1; done
}

if [ ! -d "$SRC/.git" ]; then
  command -v npm >/dev/null || { log "npm is required (scripts/install_deps.sh)"; exit 1; }
  pack="$CACHE/npm"
  rm -rf "$pack" && mkdir -p "$pack"
  log "npm pack node-llama-cpp@$NODE_LLAMA_CPP_VERSION"
  (cd "$pack" && npm pack --silent "node-llama-cpp@$NODE_LLAMA_CPP_VERSION" >/dev/null)
  tar -xzf "$pack/node-llama-cpp-$NODE_LLAMA_CPP_VERSION.tgz" -C "$pack" package/llama/gitRelease.bundle
  log "git clone package/llama/gitRelease.bundle -> $SRC"
  rm -rf "$SRC.tmp"
  git -c advice.detachedHead=false clone -q "$pack/package/llama/gitRelease.bundle" "$SRC.tmp"
  mv "$SRC.tmp" "$SRC"
  rm -rf "$pack"
fi

if ! have_all; then
  log "configuring CPU-only build in $BUILD"
  # Native CPU flags (AVX-512 where present), as llama.cpp's own release builds for the host;
  # no GPU backend, no tests/examples, no web UI download, no OpenSSL or libcurl.
  cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DGGML_OPENMP=ON \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
    >"$CACHE/configure.log" 2>&1 || { tail -30 "$CACHE/configure.log" >&2; exit 1; }
  log "building ${TARGETS[*]} with -j$JOBS (log: $CACHE/build.log)"
  cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}" >"$CACHE/build.log" 2>&1 \
    || { tail -40 "$CACHE/build.log" >&2; exit 1; }
fi
have_all || { log "build finished without ${TARGETS[*]}"; exit 1; }
git -C "$SRC" rev-parse HEAD >"$CACHE/llama.cpp.commit"
echo "$CACHE"
