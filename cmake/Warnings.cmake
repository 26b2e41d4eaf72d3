# llmux_warnings(target): -Wall -Wextra (-Werror unless LLMUX_WERROR=OFF) on the project's
# own code only.
function(llmux_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra>
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${LLMUX_WERROR}>>:-Werror>
    $<$<COMPILE_LANGUAGE:CXX>:-Wno-unused-parameter>)
endfunction()

if(LLMUX_NATIVE)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-march=native>)
endif()
