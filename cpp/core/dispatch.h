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
  bool f16c = false;  // binary16 conversions, for fp16 weights
  bool avx512f = false;
  bool neon = false;
};

CpuFeatures detect_cpu_features() noexcept;
// Tests only: detect_cpu_features() reports `features` instead of asking the CPU (nullptr: ask
// it again), so the refusal of an ISA the CPU lacks is exercised on machines that have them all.
void pretend_cpu_features_for_testing(const CpuFeatures* features) noexcept;

// ISAs compiled into this build and runnable on this CPU, best last; "scalar" is always first.
std::vector<std::string> available_isas();
// The same for a CPU with `features`.
std::vector<std::string> available_isas(const CpuFeatures& features);
// Why the ISA `name` cannot run on a CPU with `features`, or "" if it can: an unknown name (the
// choices listed), not built for this architecture or not compiled in, or not supported by the
// CPU (the missing features named).
std::string isa_unusable_reason(const std::string& name, const CpuFeatures& features);

// What runs when PYRNN_ISA is `requested` (null or "": unset) on a CPU with `features`: that ISA
// if it can run, else the best available, with a warning saying why.
struct IsaChoice {
  std::string isa;
  std::string warning;  // empty when `requested` is followed or unset
};
IsaChoice choose_isa(const char* requested, const CpuFeatures& features);
// Every ISA compiled into this build, runnable or not.
std::vector<std::string> compiled_isas();

// The table in use. The first call picks it, once and thread-safely: PYRNN_ISA if it is set and
// usable, else the best available (a set_isa made meanwhile is kept). Never throws for a bad
// PYRNN_ISA: it falls back, and isa_environment_warning() says why.
const KernelTable& active_kernels();
// Why the PYRNN_ISA environment variable was not followed and what runs instead; empty when it
// is unset or was followed.
const std::string& isa_environment_warning();
// The table of one ISA without making it active (tests compare ISAs side by side); throws
// like set_isa.
const KernelTable& kernels_for(const std::string& name);
// Forces an ISA. Throws std::invalid_argument "isa: " + isa_unusable_reason(...) if it cannot run.
void set_isa(const std::string& name);

}  // namespace pyrnn
