# Kernel sources, one per ISA, each compiled with only its own ISA flags. The default build
# targets the baseline of the architecture so a wheel runs on any CPU of it; dispatch picks the
# best compiled table at run time. PYRNN_NATIVE=ON adds -march=native everywhere (opt-in).
option(PYRNN_NATIVE "Compile everything with -march=native (binaries will not be portable)" OFF)

function(pyrnn_add_kernels target)
  target_sources(${target} PRIVATE ${PROJECT_SOURCE_DIR}/cpp/kernels/scalar.cpp)
  if(PYRNN_NATIVE)
    target_compile_options(${target} PRIVATE -march=native)
  endif()
endfunction()
