#!/usr/bin/env bash
# Gathers, on a networked Debian 12 build machine, what benchmarks/gpu/check.sh needs on the
# bare offline GPU machine into one git-ignored folder, .gpu-prefix/ (< 64 MiB):
#   .gpu-prefix/root/    the project's -dev packages unpacked with `dpkg -x` (no install)
#   .gpu-prefix/models/  stories260K-hf (end-to-end greedy check)
# Usage (from the repository root): benchmarks/gpu/prepare.sh [SHARED_DIR]
# SHARED_DIR defaults to $LLMUX_TEST_DATA, then ../shared, then /work/shared.
set -euo pipefail
cd "$(dirname "$0")/../.."

shared="${1:-${LLMUX_TEST_DATA:-}}"
for d in "$shared" ../shared /work/shared; do
  if [[ -n "$d" && -d "$d/models/stories260K-hf" ]]; then shared="$d"; break; fi
done
if [[ ! -d "$shared/models/stories260K-hf" ]]; then
  echo "prepare: stories260K-hf not found (pass the shared data folder)" >&2
  exit 1
fi

prefix=.gpu-prefix
rm -rf "$prefix"
mkdir -p "$prefix/debs" "$prefix/root" "$prefix/models"

# NOTE: the check builds with LLMUX_SERVER=OFF, so Boost (~150 MB of headers) is not carried;
# ICU is optional and left out (30 MB of data). prometheus-cpp's CMake package config checks
# for its pull/push libraries and finds civetweb, CURL and ZLIB, so those small -dev packages
# come too. pkgconf is carried because the GPU image may lack it.
packages=(
  nlohmann-json3-dev
  libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3
  libopenblas-dev libopenblas-pthread-dev libopenblas0 libopenblas0-pthread libgfortran5
  libgtest-dev libgmock-dev
  libbenchmark-dev libbenchmark1debian
  libyaml-cpp-dev libyaml-cpp0.7
  libspdlog-dev libspdlog1.10 libfmt-dev libfmt9
  libsqlite3-dev libsqlite3-0
  libssl-dev libssl3
  prometheus-cpp-dev libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0
  libprometheus-cpp-push1.0 civetweb libcivetweb-dev libcivetweb1 libcurl4-openssl-dev libcurl4
  zlib1g-dev
  libzmq3-dev libzmq5 libsodium-dev libsodium23 libnorm-dev libnorm1 libpgm-dev libpgm-5.3-0
  libkrb5-dev libbsd-dev libmsgpack-cxx-dev
  pkgconf pkgconf-bin libpkgconf3
)
echo "prepare: downloading ${#packages[@]} packages"
(cd "$prefix/debs" && apt-get download "${packages[@]}" >/dev/null)
for deb in "$prefix"/debs/*.deb; do
  dpkg -x "$deb" "$prefix/root"
done
rm -rf "$prefix/debs"

# Trim what the check never reads: docs, man pages, static archives other than GoogleTest's
# (Debian ships it static only) and Google Benchmark's (its CMake config names them), and
# OpenBLAS' LAPACK (the project links -lopenblas).
rm -rf "$prefix/root/usr/share/doc" "$prefix/root/usr/share/man" "$prefix/root/usr/share/lintian"
find "$prefix/root" -name '*.a' ! -name 'libgtest*.a' ! -name 'libgmock*.a' ! -name 'libbenchmark*.a' -delete
find "$prefix/root" -name 'liblapack*' -delete
# Debian's libblas/liblapack alternatives are symlinks under /etc; point the dev names at the
# unpacked OpenBLAS directly.
libdir="$prefix/root/usr/lib/x86_64-linux-gnu"
if [[ -f "$libdir/openblas-pthread/libopenblas.so.0" && ! -e "$libdir/libopenblas.so.0" ]]; then
  ln -s openblas-pthread/libopenblas.so.0 "$libdir/libopenblas.so.0"
fi
# Dangling absolute symlinks (into /etc/alternatives) would confuse find_library.
find "$prefix/root" -xtype l -delete

mkdir -p "$prefix/models/stories260K-hf"
cp "$shared"/models/stories260K-hf/* "$prefix/models/stories260K-hf/"

size_kib=$(du -sk "$prefix" | cut -f1)
echo "prepare: $prefix is $((size_kib / 1024)) MiB"
if (( size_kib > 64 * 1024 )); then
  echo "prepare: $prefix exceeds 64 MiB" >&2
  exit 1
fi
