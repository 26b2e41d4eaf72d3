if(LLMUX_SANITIZE)
  message(STATUS "llmux: sanitizers ${LLMUX_SANITIZE}")
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=${LLMUX_SANITIZE}>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-omit-frame-pointer>)
  add_link_options(-fsanitize=${LLMUX_SANITIZE})
endif()
