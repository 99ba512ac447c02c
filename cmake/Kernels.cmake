# Kernel sources, one per ISA, each compiled with only its own ISA flags. The default build
# targets the baseline of the architecture so a wheel runs on any CPU of it; dispatch picks the
# best compiled table at run time. PYRNN_NATIVE=ON adds -march=native everywhere (opt-in).
option(PYRNN_NATIVE "Compile everything with -march=native (binaries will not be portable)" OFF)

# Which SIMD kernel files this target architecture gets.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|x64)$")
  set(PYRNN_ARCH_X86_64 ON)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  set(PYRNN_ARCH_AARCH64 ON)
endif()

function(pyrnn_add_kernels target)
  set(dir ${PROJECT_SOURCE_DIR}/cpp/kernels)
  target_sources(${target} PRIVATE ${dir}/scalar.cpp)
  if(PYRNN_ARCH_X86_64 AND CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_sources(${target} PRIVATE ${dir}/avx2.cpp ${dir}/avx512.cpp)
    # Only these two files see the ISA flags: dispatch.cpp and everything else stay baseline.
    # They are optimised even in Debug builds: at -O0 the inline helpers they call from shared
    # headers (PackedPanels::k() ...) would be emitted as ISA-compiled weak copies that the
    # linker may pick for baseline code (the isa_objects test checks none are left).
    set(avx2_options -mavx2 -mfma -mf16c $<$<CONFIG:Debug>:-O2>)
    set_source_files_properties(${dir}/avx2.cpp PROPERTIES COMPILE_OPTIONS "${avx2_options}")
    set(avx512_options -mavx512f -mavx2 -mfma $<$<CONFIG:Debug>:-O2>)
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
      # GCC 12's own avx512fintrin.h trips -Wmaybe-uninitialized (GCC PR 105593, fixed in 13).
      list(APPEND avx512_options -Wno-maybe-uninitialized)
    endif()
    set_source_files_properties(${dir}/avx512.cpp PROPERTIES COMPILE_OPTIONS "${avx512_options}")
    target_compile_definitions(${target} PRIVATE PYRNN_BUILD_AVX2 PYRNN_BUILD_AVX512)
  elseif(PYRNN_ARCH_AARCH64)
    target_sources(${target} PRIVATE ${dir}/neon.cpp)  # NEON is baseline on AArch64
    target_compile_definitions(${target} PRIVATE PYRNN_BUILD_NEON)
  endif()
  if(PYRNN_NATIVE)
    target_compile_options(${target} PRIVATE -march=native)
  endif()
endfunction()
