# llmux_warnings(target): -Wall -Wextra (-Werror unless LLMUX_WERROR=OFF) on the project's
# own code only. With clang, also its thread-safety analysis (include/llmux/thread_annotations.h),
# an error even with LLMUX_WERROR=OFF: an access to a GUARDED_BY member without its mutex, or a
# call to a REQUIRES function without it, fails the build.
function(llmux_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra>
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${LLMUX_WERROR}>>:-Werror>
    $<$<COMPILE_LANGUAGE:CXX>:-Wno-unused-parameter>
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:Clang>>:-Wthread-safety -Werror=thread-safety>)
endfunction()

if(LLMUX_NATIVE)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-march=native>)
endif()
