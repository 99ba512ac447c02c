# C++ unit tests of the core (no Python): one executable per file under cpp/tests/, run by ctest.
# Enable with -DPYRNN_BUILD_TESTS=ON; CI runs them, and under valgrind memcheck.
option(PYRNN_BUILD_TESTS "Build the C++ unit tests of the core" OFF)

function(pyrnn_add_cpp_test name)
  add_executable(${name} ${ARGN})
  target_link_libraries(${name} PRIVATE pyrnn_core)
  pyrnn_warnings(${name})
  add_test(NAME ${name} COMMAND ${name})
endfunction()
