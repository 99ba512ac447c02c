# Machine probes for `pyrnn bench` (FMA peak, read bandwidth). Like the kernels, each ISA's loops
# are a separate source compiled with only its own flags; the x86 ones only on x86-64 with
# GCC/Clang, where probe.cpp picks them at run time after asking the CPU.
function(pyrnn_add_probe target)
  set(dir ${PROJECT_SOURCE_DIR}/cpp/probe)
  target_sources(${target} PRIVATE ${dir}/probe.cpp ${dir}/probe_scalar.cpp)
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$"
     AND CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_sources(${target} PRIVATE ${dir}/probe_avx2.cpp ${dir}/probe_avx512.cpp)
    set_source_files_properties(${dir}/probe_avx2.cpp PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma")
    set_source_files_properties(${dir}/probe_avx512.cpp
                                PROPERTIES COMPILE_OPTIONS "-mavx512f;-mavx2;-mfma")
    target_compile_definitions(${target} PRIVATE PYRNN_PROBE_X86)
  endif()
endfunction()
