# ctest script: the ISA-compiled kernel objects must define nothing but their kernel_table()
# (no weak/COMDAT copies of shared inline functions, which the linker could pick for baseline
# code and so run AVX-512 instructions on a CPU without them).
#   cmake -DNM=<nm> -DOBJECTS=<;-list of object files> -P CheckIsaObjects.cmake
set(failed FALSE)
foreach(object IN LISTS OBJECTS)
  # neon.cpp needs no flags beyond the AArch64 baseline, so its weak copies are harmless.
  if(NOT object MATCHES "(avx2|avx512)\\.cpp\\.o(bj)?$")
    continue()
  endif()
  execute_process(COMMAND ${NM} -C --defined-only ${object} OUTPUT_VARIABLE symbols
                  RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "nm failed on ${object}")
  endif()
  string(REPLACE "\n" ";" lines "${symbols}")
  foreach(line IN LISTS lines)
    # Weak (W/V) and unique-global (u) definitions, except the EH personality reference.
    if(line MATCHES " [WVu] " AND NOT line MATCHES "DW\\.ref\\.__gxx_personality_v0")
      message(SEND_ERROR "${object}: ISA-compiled weak symbol: ${line}")
      set(failed TRUE)
    endif()
  endforeach()
  message(STATUS "checked ${object}")
endforeach()
if(failed)
  message(FATAL_ERROR "ISA objects export shared inline code; see above")
endif()
