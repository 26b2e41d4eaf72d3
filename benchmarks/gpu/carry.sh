# Shared by benchmarks/gpu/prepare.sh (which builds the GPU check's binaries on the build
# machine and packs them) and benchmarks/gpu/check.sh (which unpacks and runs them on the device
# machine, or builds there when they cannot run). Sourced, not run; bash only.
#
# The carried archive (.gpu-prefix/gpu-carry.tar.xz) holds:
#   build/llmux, build/gpu_bench, build/tests/unit_backend_cuda   stripped, built for sm_90
#   lib/             every shared library they load that the device machine does not supply
#   MANIFEST         key=value: build date, commit, CUDA toolkit version, archs, needed glibc
#   sources.sha256   sha256sum of the sources the binaries were built from (see below)
# The device supplies the rest: glibc, the C++ runtime (libstdc++, libgcc_s) and CUDA's runtime
# libraries (cudart, cuBLAS, cuBLASLt, the driver's libcuda) from its own CUDA installation.

# The binaries check.sh runs, relative to a build tree (and to build/ inside the archive).
CARRY_BINARIES=(llmux gpu_bench tests/unit_backend_cuda)

# carry_device_lib SONAME: succeeds for a library the device machine supplies itself, so it is
# never carried: glibc's, the C++ runtime's, and CUDA's (the driver's libcuda and the toolkit's
# cudart/cuBLAS/cuBLASLt, hundreds of MB, matched to the device's driver).
carry_device_lib() {
  case "$1" in
    linux-vdso.so.* | ld-linux-x86-64.so.* | libc.so.* | libm.so.* | libpthread.so.* | \
      libdl.so.* | librt.so.* | libutil.so.* | libresolv.so.* | \
      libstdc++.so.* | libgcc_s.so.*) return 0 ;;
    libcuda.so.* | libcudart.so.* | libcublas.so.* | libcublasLt.so.*) return 0 ;;
  esac
  return 1
}

# carry_ldd_parse: reads ldd output on stdin and prints one "SONAME<TAB>PATH" line per library,
# PATH being "not found" where the loader found none; a symbol-version error ("version
# `GLIBCXX_3.4.32' not found (required by X)") is printed as "VERSION<TAB>not found".
# The vDSO and the loader itself (no "=>") are left out.
carry_ldd_parse() {
  local line name rest
  while IFS= read -r line; do
    line="${line#"${line%%[![:space:]]*}"}"
    if [[ "$line" == *"version \`"*"' not found"* ]]; then
      rest="${line#*version \`}"
      printf '%s\tnot found\n' "${rest%%\'*}"
    elif [[ "$line" == *" => not found"* ]]; then
      printf '%s\tnot found\n' "${line%% => *}"
    elif [[ "$line" == *" => "* ]]; then
      name="${line%% => *}"
      rest="${line#* => }"
      printf '%s\t%s\n' "$name" "${rest% (0x*)}"
    fi
  done
}

# carry_missing LIBRARY_PATH FILE...: what the dynamic loader cannot find for FILEs when
# LD_LIBRARY_PATH is LIBRARY_PATH (one "FILE: SONAME not found" line each, nothing when all load;
# a file that is no dynamic executable counts as missing). Succeeds when nothing is missing.
carry_missing() {
  local libpath="$1" f out missing=0 name where
  shift
  for f in "$@"; do
    if ! out=$(LD_LIBRARY_PATH="$libpath" ldd "$f" 2>&1); then
      echo "$f: ldd failed: $(head -1 <<<"$out")"
      missing=1
      continue
    fi
    while IFS=$'\t' read -r name where; do
      if [[ "$where" == "not found" ]]; then
        echo "$f: $name not found"
        missing=1
      fi
    done < <(carry_ldd_parse <<<"$out")
  done
  return $missing
}

# carry_find_lib_dirs ROOTS SONAME...: the folder holding each SONAME, searched under ROOTS (a
# space-separated list of folders; at most 20 s per name), one line per folder found, each once.
carry_find_lib_dirs() {
  local roots name found
  read -r -a roots <<<"$1"
  shift
  for name in "$@"; do
    found=$(timeout 20 find "${roots[@]}" -name "$name" \( -type f -o -type l \) -print -quit 2>/dev/null)
    [[ -n "$found" ]] && dirname "$found"
  done | awk '!seen[$0]++'
}

# carry_driver_cuda_version: reads `nvidia-smi` output on stdin and prints the highest CUDA
# version the driver supports ("13.0"), or nothing when the header has none.
carry_driver_cuda_version() {
  sed -n 's/.*CUDA Version: *\([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -1
}

# carry_version_at_least HAVE NEED: HAVE >= NEED, comparing dotted numbers field by field.
carry_version_at_least() {
  [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -1)" == "$2" ]]
}

# carry_cuda_compatible BUILT DRIVER RUNTIME: why carried binaries built with CUDA toolkit
# BUILT (e.g. 13.0.88) cannot run on a driver that supports CUDA DRIVER (13.0) with the CUDA
# runtime library file version RUNTIME (13.0.96, or empty when unknown); prints nothing and
# succeeds when they can. CUDA's minor-version compatibility lets a 13.x build run on any
# 13.y driver (the archive carries sm_90 machine code, so no PTX is compiled by the driver);
# a driver of an older major cannot run it, and a runtime older than the build's may lack
# entry points the binaries call.
carry_cuda_compatible() {
  local built="$1" driver="$2" runtime="$3"
  if [[ -n "$driver" && "${driver%%.*}" -lt "${built%%.*}" ]]; then
    echo "the driver supports CUDA $driver, older than the build's CUDA ${built%%.*}.x"
    return 1
  fi
  if [[ -n "$runtime" ]] && ! carry_version_at_least "$runtime" "${built%.*}"; then
    echo "the device's CUDA runtime is $runtime, older than the build's ${built%.*}"
    return 1
  fi
  return 0
}

# carry_runtime_version LIBRARY_PATH BINARY: the version of the libcudart that BINARY loads,
# as its cudaRuntimeGetVersion answers (13000 -> "13.0"; called through Python's ctypes, no
# device needed), else from its file name ("13.0.96" from libcudart.so.13.0.96), else empty.
carry_runtime_version() {
  local path v
  path=$(LD_LIBRARY_PATH="$1" ldd "$2" 2>/dev/null | carry_ldd_parse | awk -F'\t' '$1 ~ /^libcudart\.so/ {print $2; exit}')
  [[ -n "$path" && "$path" != "not found" ]] || return 0
  v=$(python3 -c 'import ctypes, sys
v = ctypes.c_int(0)
if ctypes.CDLL(sys.argv[1]).cudaRuntimeGetVersion(ctypes.byref(v)) == 0 and v.value > 0:
    print("%d.%d" % (v.value // 1000, v.value % 1000 // 10))' "$path" 2>/dev/null)
  if [[ -n "$v" ]]; then echo "$v"; return 0; fi
  path=$(readlink -f "$path")
  [[ "${path##*/}" =~ ^libcudart\.so\.([0-9]+(\.[0-9]+)+)$ ]] && echo "${BASH_REMATCH[1]}"
  return 0
}

# carry_unxz FILE: FILE decompressed to stdout, with xz(1) or, where the image has none, with
# Python's lzma module.
carry_unxz() {
  if command -v xz >/dev/null; then
    xz -dc "$1"
  else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"
  fi
}

# carry_manifest_get FILE KEY: the value of KEY=... in a MANIFEST.
carry_manifest_get() {
  sed -n "s/^$2=//p" "$1" | head -1
}

# The sources the carried binaries are built from, hashed at prepare time and checked on the
# device, so that binaries built from other sources than the tree being checked are not run.
# (A file added after the archive was made is not noticed; edit any listed file to force it.)
carry_source_files() {
  git ls-files -- CMakeLists.txt cmake src include kernels tests/CMakeLists.txt tests/unit \
      tests/common tests/support benchmarks/CMakeLists.txt benchmarks/gpu_bench \
    | grep -E '\.(cpp|cc|h|hpp|inc|cu|cuh|cmake)$|(^|/)CMakeLists\.txt$'
}

# carry_configure SOURCE BUILD ROOT: configures BUILD for the GPU check (sm_90, no HTTP server,
# no -Werror, no -march=native: x86-64-v4 is the AVX-512 baseline the CPU backend's kernels
# need for the reference side of the agreement tests) against the packages unpacked under ROOT
# ONLY: pkg-config and CMake's find_* look in ROOT and CUDA's folder and nowhere else, ICU and
# PostgreSQL are not looked for, so every library the binaries link is one ROOT carries (or the
# C library / CUDA). Extra arguments go to cmake. Output goes to stdout.
carry_configure() {
  local src="$1" build="$2" root="$3"
  shift 3
  local libdir="$root/usr/lib/x86_64-linux-gnu" cuda nvcc pkg_config
  nvcc="${CUDACXX:-/usr/local/cuda/bin/nvcc}"
  cuda="$(dirname "$(dirname "$nvcc")")"
  pkg_config="$(command -v pkg-config || true)"
  [[ -n "$pkg_config" ]] || pkg_config="$root/usr/bin/pkgconf"
  # glibc's libdl/librt are the C library's, not the prefix's: civetweb's CMake package (read
  # through prometheus-cpp's) looks them up, and a root-only search would not see them.
  PKG_CONFIG_SYSROOT_DIR="$root" \
  PKG_CONFIG_LIBDIR="$libdir/pkgconfig:$libdir/openblas-pthread/pkgconfig:$root/usr/share/pkgconfig" \
  cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DLLMUX_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_STANDARD=17 \
    -DCMAKE_CUDA_COMPILER="$nvcc" -DLLMUX_BENCHMARKS=ON \
    -DLLMUX_WERROR=OFF -DLLMUX_NATIVE=OFF -DCMAKE_CXX_FLAGS=-march=x86-64-v4 \
    -DLLMUX_SERVER=OFF -DLLMUX_POSTGRES=OFF -DCMAKE_DISABLE_FIND_PACKAGE_ICU=ON \
    "-DCMAKE_FIND_ROOT_PATH=$root;$cuda;$(readlink -f "$cuda")" \
    -DCMAKE_FIND_ROOT_PATH_MODE_LIBRARY=ONLY -DCMAKE_FIND_ROOT_PATH_MODE_INCLUDE=ONLY \
    -DCMAKE_FIND_ROOT_PATH_MODE_PACKAGE=ONLY -DCMAKE_FIND_ROOT_PATH_MODE_PROGRAM=NEVER \
    -DLIBDL_INCLUDE_DIRS=/usr/include -DLIBDL_LIBRARIES="$(cc -print-file-name=libdl.a)" \
    -DLIBRT_INCLUDE_DIRS=/usr/include -DLIBRT_LIBRARIES="$(cc -print-file-name=librt.a)" \
    -DCUDAToolkit_rt_LIBRARY="$(cc -print-file-name=librt.a)" \
    -DOPENSSL_ROOT_DIR="$root/usr" -DPKG_CONFIG_EXECUTABLE="$pkg_config" "$@"
}
