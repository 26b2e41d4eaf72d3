if(LLMUX_SANITIZE)
  message(STATUS "llmux: sanitizers ${LLMUX_SANITIZE}")
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=${LLMUX_SANITIZE}>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-omit-frame-pointer>)
  add_link_options(-fsanitize=${LLMUX_SANITIZE})
  if(LLMUX_SANITIZE MATCHES "thread")
    # NOTE: Boost.Asio's std_fenced_block uses atomic_thread_fence, which TSan does not model;
    # GCC warns (-Wtsan), and -Werror would turn that into a build failure.
    add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-Wno-tsan>)
  endif()
endif()
