# Every dependency is a Debian package installed by scripts/install_deps.sh.
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(GTest REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET openblas)
# KV-cache events (src/events): ZeroMQ sockets and MessagePack encoding (header-only).
pkg_check_modules(ZMQ REQUIRED IMPORTED_TARGET libzmq)
# msgpack-cxx (libmsgpack-cxx-dev) is header-only. Its CMake package insists on Boost, which
# MSGPACK_NO_BOOST makes unnecessary, so only the header is looked up: the GPU check's offline
# prefix carries no Boost.
find_path(MSGPACK_INCLUDE_DIR msgpack.hpp REQUIRED)
add_library(llmux_msgpack INTERFACE)
target_include_directories(llmux_msgpack INTERFACE ${MSGPACK_INCLUDE_DIR})
target_compile_definitions(llmux_msgpack INTERFACE MSGPACK_NO_BOOST)
find_package(OpenSSL REQUIRED)
# Unicode normalization forms for tokenizer normalizers (NFC, ...). Installed everywhere by
# install_deps.sh; optional so the GPU check's offline prefix can do without its 30 MB of data
# (tokenizers that need it then fail to load with UNIMPLEMENTED).
find_package(ICU COMPONENTS uc)
find_package(yaml-cpp REQUIRED)
find_package(spdlog REQUIRED)
find_package(SQLite3 REQUIRED)
# The shared PostgreSQL usage ledger (telemetry.usage_db: postgresql://...). Installed everywhere
# by install_deps.sh; optional like ICU so an offline prefix can build without it (a postgresql://
# usage_db then fails to open with UNIMPLEMENTED).
# LLMUX_POSTGRES=OFF does not look for them even where they are installed: a build whose
# binaries must load only what a given prefix carries (benchmarks/gpu/prepare.sh) uses it.
option(LLMUX_POSTGRES "Link libpqxx/libpq when found (the postgresql:// usage ledger)" ON)
if(LLMUX_POSTGRES)
  pkg_check_modules(PQXX IMPORTED_TARGET libpqxx)
  pkg_check_modules(LIBPQ IMPORTED_TARGET libpq)  # URI validation (PQconninfoParse)
endif()
if(LLMUX_SERVER)
  # Redis client for cluster mode (src/cluster/, linked by the server): tenant state shared by
  # the replicas.
  pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
endif()
if(LLMUX_SERVER)
  find_package(Boost 1.74 REQUIRED)
endif()
find_package(prometheus-cpp CONFIG REQUIRED)
if(LLMUX_BENCHMARKS)
  find_package(benchmark REQUIRED)
endif()
