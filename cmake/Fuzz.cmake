# Fuzz targets from tests/fuzz/<name>_fuzz.cpp (each defines LLVMFuzzerTestOneInput):
#   replay_<name>  the target + tests/fuzz/replay_main.cpp; any compiler. Registered as the
#                  ctest `fuzz_replay_<name>` (label `fuzz`) over tests/fuzz/corpus/<name>/,
#                  so a build with LLMUX_SANITIZE=address,undefined replays every corpus under
#                  ASan+UBSan without clang.
#   fuzz_<name>    the libFuzzer binary, only with -DLLMUX_FUZZ=ON (clang; `make fuzz`).
# Also `sanitizer_checks`: every unit_* test executable and replay_* binary (what `make test`
# builds in the ASan tree).
option(LLMUX_FUZZ "Build the libFuzzer targets fuzz_<name> (needs clang)" OFF)
if(LLMUX_FUZZ)
  # Coverage feedback from the libraries under test, not only from the target file.
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=fuzzer-no-link>)
endif()

# NOTE: GCC's -Wmaybe-uninitialized gives false positives under -fsanitize (it fires inside
# Boost.Beast's parser at -O2 with ASan+UBSan); sanitizer builds turn it off so -Werror holds.
if(LLMUX_SANITIZE AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-Wno-maybe-uninitialized>)
endif()

if(NOT LLMUX_SERVER)
  return()  # the targets reach into the HTTP server
endif()

function(llmux_fuzz_targets)
  set(dir ${CMAKE_SOURCE_DIR}/tests/fuzz)
  set(shared_dir "$ENV{LLMUX_TEST_DATA}")
  if(NOT shared_dir)
    get_filename_component(shared_dir "${CMAKE_SOURCE_DIR}/../shared" ABSOLUTE)
  endif()
  file(GLOB sources CONFIGURE_DEPENDS ${dir}/*_fuzz.cpp)
  set(checks "")
  foreach(src ${sources})
    get_filename_component(stem ${src} NAME_WE)
    string(REGEX REPLACE "_fuzz$" "" name ${stem})
    if(LLMUX_FUZZ)
      add_executable(fuzz_${name} ${src})
      target_compile_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
      target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
      set(target fuzz_${name})
    else()
      add_executable(replay_${name} ${src} ${dir}/replay_main.cpp)
      add_test(NAME fuzz_replay_${name} COMMAND replay_${name} ${dir}/corpus/${name})
      set_tests_properties(fuzz_replay_${name} PROPERTIES LABELS fuzz TIMEOUT 300
                           ENVIRONMENT "LLMUX_TEST_DATA=${shared_dir}")
      set(target replay_${name})
      list(APPEND checks replay_${name})
    endif()
    target_include_directories(${target} PRIVATE ${CMAKE_SOURCE_DIR}/src ${dir})
    target_link_libraries(${target} PRIVATE llmux_server llmux_core Boost::boost
                          nlohmann_json::nlohmann_json)
    llmux_warnings(${target})
  endforeach()
  get_property(test_targets DIRECTORY ${CMAKE_SOURCE_DIR}/tests PROPERTY BUILDSYSTEM_TARGETS)
  foreach(t ${test_targets})
    if(t MATCHES "^unit_" AND NOT t MATCHES "cuda")
      list(APPEND checks ${t})
    endif()
  endforeach()
  if(checks)
    add_custom_target(sanitizer_checks DEPENDS ${checks})
  endif()
endfunction()
cmake_language(DEFER CALL llmux_fuzz_targets)
