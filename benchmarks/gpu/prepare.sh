#!/usr/bin/env bash
# Prepares, on a networked Debian 12 build machine with CUDA's nvcc, everything
# benchmarks/gpu/check.sh needs on the bare offline GPU machine, in one git-ignored folder
# that travels with the tree (.gpu-prefix/, < 64 MiB):
#   .gpu-prefix/gpu-carry.tar.xz  llmux, gpu_bench and unit_backend_cuda built HERE for sm_90,
#                                 stripped, with the shared libraries they load (benchmarks/gpu/
#                                 carry.sh says what is in it): the device only runs them
#   .gpu-prefix/root.tar.xz       the project's -dev packages (dpkg -x, no install): check.sh's
#                                 fallback builds on the device against them when the carried
#                                 binaries cannot run there
#   .gpu-prefix/models/           stories260K-hf (the end-to-end greedy check)
#
# Usage (from anywhere): benchmarks/gpu/prepare.sh [--no-build] [--build-dir DIR] [SHARED_DIR]
#   --no-build      only the packages and the model (the device then builds, 3-4 of its 8 min)
#   --build-dir DIR the sm_90 build tree (default build-gpu-carry; ignored by git). Kept between
#                   runs: a second prepare rebuilds only what changed. The first build takes
#                   15-30 minutes on 2 cores.
# SHARED_DIR defaults to $LLMUX_TEST_DATA, then ../shared, then /work/shared.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
source benchmarks/gpu/carry.sh

build_binaries=1
build="$root/build-gpu-carry"
shared="${LLMUX_TEST_DATA:-}"
while (( $# )); do
  case "$1" in
    --no-build) build_binaries=0 ;;
    --build-dir) build="$(realpath -m "$2")"; shift ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "prepare: unknown option $1" >&2; exit 2 ;;
    *) shared="$1" ;;
  esac
  shift
done
for d in "$shared" ../shared /work/shared; do
  if [[ -n "$d" && -d "$d/models/stories260K-hf" ]]; then shared="$d"; break; fi
done
if [[ ! -d "$shared/models/stories260K-hf" ]]; then
  echo "prepare: stories260K-hf not found (pass the shared data folder)" >&2
  exit 1
fi
t0=$(date +%s)
say() { echo "[prepare +$(( $(date +%s) - t0 ))s] $*"; }

prefix="$root/.gpu-prefix"
rm -rf "$prefix"
mkdir -p "$prefix/debs" "$prefix/root" "$prefix/models"
P="$prefix/root"
libdir="$P/usr/lib/x86_64-linux-gnu"

# The HTTP server is not built for the check (LLMUX_SERVER=OFF), so Boost (~150 MB of headers)
# is not carried; ICU (30 MB of data) and libpqxx are not linked (carry_configure). prometheus-
# cpp's CMake package config checks for its pull/push libraries and finds civetweb, CURL and
# ZLIB, so those small -dev packages come too. pkgconf is carried because the GPU image may lack
# it. The runtime libraries that libzmq and libgfortran load (Kerberos' GSSAPI, libbsd,
# libquadmath) come as runtime packages: the device image need not have them.
packages=(
  nlohmann-json3-dev
  libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3
  libopenblas-dev libopenblas-pthread-dev libopenblas0 libopenblas0-pthread libgfortran5
  libquadmath0
  libgtest-dev libgmock-dev
  libbenchmark-dev libbenchmark1debian
  libyaml-cpp-dev libyaml-cpp0.7
  libspdlog-dev libspdlog1.10 libfmt-dev libfmt9
  libsqlite3-dev libsqlite3-0
  libssl-dev libssl3
  prometheus-cpp-dev libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0
  libprometheus-cpp-push1.0 civetweb libcivetweb-dev libcivetweb1 libcurl4-openssl-dev libcurl4
  zlib1g-dev
  libzmq3-dev libzmq5 libsodium23 libnorm1 libpgm-5.3-0 libbsd0 libmd0
  libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1
  libmsgpack-cxx-dev
  pkgconf pkgconf-bin libpkgconf3
)
say "downloading ${#packages[@]} packages"
(cd "$prefix/debs" && apt-get download "${packages[@]}" >/dev/null)
for deb in "$prefix"/debs/*.deb; do
  dpkg -x "$deb" "$P"
done
rm -rf "$prefix/debs"

# Trim what the check never reads: docs, man pages, static archives other than GoogleTest's
# (Debian ships it static only) and Google Benchmark's (its CMake config names them), and
# OpenBLAS' LAPACK (the project links -lopenblas).
rm -rf "$P/usr/share/doc" "$P/usr/share/man" "$P/usr/share/lintian"
find "$P" -name '*.a' ! -name 'libgtest*.a' ! -name 'libgmock*.a' ! -name 'libbenchmark*.a' -delete
find "$P" -name 'liblapack*' -delete
# Debian's libblas/liblapack alternatives are symlinks under /etc; point the dev names at the
# unpacked OpenBLAS directly.
if [[ -f "$libdir/openblas-pthread/libopenblas.so.0" && ! -e "$libdir/libopenblas.so.0" ]]; then
  ln -s openblas-pthread/libopenblas.so.0 "$libdir/libopenblas.so.0"
fi
# Dangling absolute symlinks (into /etc/alternatives) would confuse find_library.
find "$P" -xtype l -delete
# libzmq.pc names what a STATIC link of it needs (Requires.private: Kerberos' GSSAPI, NORM
# and its libxml2, ...), which pkg-config insists on finding even for the shared link the
# project does; the linker finds libzmq's own needs among the runtime packages above.
sed -i '/^Requires.private:/d' "$libdir/pkgconfig/libzmq.pc"

mkdir -p "$prefix/models/stories260K-hf"
cp "$shared"/models/stories260K-hf/* "$prefix/models/stories260K-hf/"

if (( build_binaries )); then
  export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=true
  nvcc="${CUDACXX:-/usr/local/cuda/bin/nvcc}"
  cuda_lib="$(dirname "$(dirname "$nvcc")")/lib64"
  [[ -x "$nvcc" ]] || { echo "prepare: $nvcc not found (set CUDACXX)" >&2; exit 1; }
  say "configure $build against .gpu-prefix/root only"
  mkdir -p "$build"
  if ! carry_configure "$root" "$build" "$P" > "$build/configure.log" 2>&1; then
    tail -30 "$build/configure.log"
    echo "prepare: configure failed (full log: $build/configure.log)" >&2
    exit 1
  fi
  grep -q "llmux: CUDA backend ON" "$build/configure.log" \
    || { echo "prepare: the CUDA backend is not enabled (see $build/configure.log)" >&2; exit 1; }
  say "build ${CARRY_BINARIES[*]} for sm_90 (ninja -j$(nproc))"
  cmake --build "$build" -j "$(nproc)" --target llmux unit_backend_cuda gpu_bench \
    > "$build/build.log" 2>&1 \
    || { grep -E "error" "$build/build.log" | head -30; echo "prepare: build failed ($build/build.log)" >&2; exit 1; }

  say "pack the binaries and the libraries they load"
  stage="$build/carry-stage"
  rm -rf "$stage"
  mkdir -p "$stage/build/tests" "$stage/lib"
  for b in "${CARRY_BINARIES[@]}"; do
    strip --strip-unneeded -o "$stage/build/$b" "$build/$b"
  done
  bins=("${CARRY_BINARIES[@]/#/$stage/build/}")
  # Pass 1: resolve against the prefix (and CUDA's folder); ldd lists the whole closure, the
  # libraries' own needs included. Copy each library the prefix holds; anything else that is
  # not the device's own (glibc, the C++ runtime, CUDA: carry_device_lib) is an error, since
  # the device would not have it (this machine's /usr/lib is found too, so it shows here).
  foreign=0
  while IFS=$'\t' read -r name where; do
    if carry_device_lib "$name"; then continue; fi
    if [[ "$where" == "$P"/* ]]; then
      cp -L "$where" "$stage/lib/$name"
    else
      echo "prepare: $name resolves to $where, which .gpu-prefix/root does not hold" >&2
      foreign=1
    fi
  done < <(for b in "${bins[@]}"; do
             LD_LIBRARY_PATH="$libdir:$libdir/openblas-pthread:$cuda_lib" ldd "$b" | carry_ldd_parse
           done | sort -u)
  # Pass 2: with lib/ alone (and CUDA's folder), every library the binaries and the copied
  # libraries load that is not the device's own must resolve inside lib/.
  for b in "${bins[@]}" "$stage"/lib/*; do
    while IFS=$'\t' read -r name where; do
      carry_device_lib "$name" && continue
      if [[ "$where" != "$stage/lib/"* ]]; then
        echo "prepare: $(basename "$b") loads $name from $where, not from the carried lib/" >&2
        foreign=1
      fi
    done < <(LD_LIBRARY_PATH="$stage/lib:$cuda_lib" ldd "$b" | carry_ldd_parse)
  done
  (( foreign == 0 )) || { echo "prepare: add the missing packages to prepare.sh" >&2; exit 1; }
  for b in "${bins[@]}"; do
    echo "--- ldd build/${b#"$stage/build/"} (LD_LIBRARY_PATH=lib:$cuda_lib)"
    LD_LIBRARY_PATH="$stage/lib:$cuda_lib" ldd "$b" | sed 's/ (0x[0-9a-f]*)$//'
  done
  glibc_needed=$(objdump -T "${bins[@]}" "$stage"/lib/* | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
  glibcxx_needed=$(objdump -T "${bins[@]}" "$stage"/lib/* | grep -o 'GLIBCXX_[0-9.]*' | sort -uV | tail -1)
  cuda_version=$(sed -n 's/^CMAKE_CUDA_COMPILER_VERSION:[A-Z]*=//p' "$build/CMakeCache.txt")
  [[ -n "$cuda_version" ]] || cuda_version=$(sed -n 's/^set(CMAKE_CUDA_COMPILER_VERSION "\(.*\)")/\1/p' \
                                               "$build"/CMakeFiles/*/CMakeCUDACompiler.cmake)
  {
    echo "built_utc=$(date -u +%FT%TZ)"
    echo "commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo -dirty)"
    echo "cuda_version=$cuda_version"
    echo "cuda_architectures=90"
    echo "cxx=$(c++ --version | head -1)"
    echo "glibc_needed=$glibc_needed"
    echo "glibcxx_needed=$glibcxx_needed"
    echo "binaries=${CARRY_BINARIES[*]}"
    echo "libs=$(cd "$stage/lib" && ls | tr '\n' ' ')"
  } > "$stage/MANIFEST"
  carry_source_files | xargs sha256sum > "$stage/sources.sha256"
  cat "$stage/MANIFEST"
  tar -C "$stage" -cf - MANIFEST sources.sha256 build lib | xz -9 -T2 > "$prefix/gpu-carry.tar.xz"
  rm -rf "$stage"
fi

say "compress the -dev packages (the device-build fallback)"
tar -C "$prefix" -cf - root | xz -9 -T2 > "$prefix/root.tar.xz"
rm -rf "$P"

say "done"
(cd "$prefix" && du -sk --apparent-size gpu-carry.tar.xz root.tar.xz models 2>/dev/null \
   | awk '{printf "prepare:   %-18s %6.1f MiB\n", $2, $1 / 1024}')
size_kib=$(du -sk --apparent-size "$prefix" | cut -f1)
tree_kib=$(git ls-files -z | du -ck --apparent-size --files0-from=- | tail -1 | cut -f1)
echo "prepare: .gpu-prefix is $((size_kib / 1024)) MiB; with the tracked tree $(( (size_kib + tree_kib) / 1024 )) MiB travel (limit 64 MiB)"
if (( size_kib + tree_kib > 64 * 1024 )); then
  echo "prepare: .gpu-prefix and the tree exceed 64 MiB" >&2
  exit 1
fi
