# AddressSanitizer and UndefinedBehaviorSanitizer builds, as ordinary options applied to every
# target (core, kernels, tests, the Python extension). tools/run_sanitized_tests.sh builds the
# extension with both and runs the whole pytest suite with the ASan runtime preloaded.
option(PYRNN_SANITIZE_ADDRESS "Build with AddressSanitizer (-fsanitize=address)" OFF)
option(PYRNN_SANITIZE_UNDEFINED "Build with UndefinedBehaviorSanitizer; any report aborts" OFF)

set(_pyrnn_sanitizers "")
if(PYRNN_SANITIZE_ADDRESS)
  list(APPEND _pyrnn_sanitizers address)
endif()
if(PYRNN_SANITIZE_UNDEFINED)
  list(APPEND _pyrnn_sanitizers undefined)
endif()

if(_pyrnn_sanitizers)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    message(FATAL_ERROR "PYRNN_SANITIZE_*: needs GCC or Clang, not ${CMAKE_CXX_COMPILER_ID}")
  endif()
  list(JOIN _pyrnn_sanitizers "," _pyrnn_sanitize_list)
  # Frame pointers give usable stacks; no recovery, so a UB report fails the run instead of
  # scrolling past; -g for file:line in reports.
  add_compile_options(-fsanitize=${_pyrnn_sanitize_list} -fno-omit-frame-pointer
                      -fno-sanitize-recover=all -g)
  add_link_options(-fsanitize=${_pyrnn_sanitize_list})
  message(STATUS "pyrnn: sanitizers enabled: ${_pyrnn_sanitize_list}")
endif()
