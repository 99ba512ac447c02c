// Chooses the kernel table once, from what the CPU supports, and lets users see and override
// the choice (PYRNN_ISA=scalar|avx2|avx512|neon, or set_isa at run time).
// Built without ISA flags, so nothing here can execute an instruction the CPU lacks.
#pragma once

#include <string>
#include <vector>

#include "core/kernel_table.h"

namespace pyrnn {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool neon = false;
};

CpuFeatures detect_cpu_features() noexcept;

// ISAs compiled into this build and runnable on this CPU, best last; "scalar" is always first.
std::vector<std::string> available_isas();
// Every ISA compiled into this build, runnable or not.
std::vector<std::string> compiled_isas();

// The table in use. The first call picks it (PYRNN_ISA if set, else the best available).
const KernelTable& active_kernels();
// The table of one ISA without making it active (tests compare ISAs side by side); throws
// like set_isa.
const KernelTable& kernels_for(const std::string& name);
// Forces an ISA; throws std::invalid_argument naming the choices if it is unknown or unsupported.
void set_isa(const std::string& name);

}  // namespace pyrnn
