# Warnings for every pyrnn target; PYRNN_WERROR turns them into errors (CI-style builds).
option(PYRNN_WERROR "Treat compiler warnings as errors" OFF)

function(pyrnn_warnings target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic)
    if(PYRNN_WERROR)
      target_compile_options(${target} PRIVATE -Werror)
    endif()
  elseif(MSVC)
    target_compile_options(${target} PRIVATE /W4)
  endif()
endfunction()
