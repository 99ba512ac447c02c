// CPU feature detection and the one active kernel table (see dispatch.h). Built without ISA
// flags: only after the CPU is asked does anything call into an ISA-compiled file.
#include "core/dispatch.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

#include "kernels/kernels.h"

namespace pyrnn {
namespace {

struct IsaEntry {
  const char* name;
  const KernelTable& (*table)() noexcept;
  bool (*supported)(const CpuFeatures&);
};

// Ordered worst to best.
const std::vector<IsaEntry>& isa_registry() {
  static const std::vector<IsaEntry> entries = {
      {"scalar", scalar::kernel_table, [](const CpuFeatures&) { return true; }},
#if defined(PYRNN_BUILD_NEON)
      {"neon", neon::kernel_table, [](const CpuFeatures& f) { return f.neon; }},
#endif
#if defined(PYRNN_BUILD_AVX2)
      {"avx2", avx2::kernel_table, [](const CpuFeatures& f) { return f.avx2 && f.fma; }},
#endif
#if defined(PYRNN_BUILD_AVX512)
      {"avx512", avx512::kernel_table,
       [](const CpuFeatures& f) { return f.avx512f && f.avx2 && f.fma; }},
#endif
  };
  return entries;
}

const KernelTable* pick(const std::string& name) {
  const CpuFeatures features = detect_cpu_features();
  for (const IsaEntry& entry : isa_registry()) {
    if (name == entry.name) {
      if (!entry.supported(features)) {
        throw std::invalid_argument("isa: '" + name + "' is compiled in but this CPU lacks it; " +
                                    "available: " + [] {
                                      std::string list;
                                      for (const auto& isa : available_isas())
                                        list += (list.empty() ? "" : ", ") + isa;
                                      return list;
                                    }());
      }
      return &entry.table();
    }
  }
  std::string known;
  for (const IsaEntry& entry : isa_registry())
    known += (known.empty() ? "" : ", ") + std::string(entry.name);
  throw std::invalid_argument("isa: expected one of " + known + ", got '" + name + "'");
}

const KernelTable* initial_table() {
  if (const char* forced = std::getenv("PYRNN_ISA"); forced != nullptr && *forced != '\0') {
    try {
      return pick(forced);
    } catch (const std::invalid_argument& error) {
      throw std::invalid_argument(std::string("PYRNN_ISA environment variable: ") + error.what() +
                                  " (unset it to use the best available)");
    }
  }
  return pick(available_isas().back());
}

std::atomic<const KernelTable*> g_active{nullptr};

}  // namespace

CpuFeatures detect_cpu_features() noexcept {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.avx512f = __builtin_cpu_supports("avx512f");  // libgcc also checks the OS saves zmm state
#elif defined(__aarch64__)
  f.neon = true;  // Advanced SIMD is mandatory on AArch64
#endif
  return f;
}

std::vector<std::string> compiled_isas() {
  std::vector<std::string> names;
  for (const IsaEntry& entry : isa_registry()) names.emplace_back(entry.name);
  return names;
}

std::vector<std::string> available_isas() {
  const CpuFeatures features = detect_cpu_features();
  std::vector<std::string> names;
  for (const IsaEntry& entry : isa_registry())
    if (entry.supported(features)) names.emplace_back(entry.name);
  return names;
}

const KernelTable& active_kernels() {
  const KernelTable* table = g_active.load(std::memory_order_acquire);
  if (table == nullptr) {
    // A bad PYRNN_ISA throws here, at import, with the message naming the choices.
    table = initial_table();
    g_active.store(table, std::memory_order_release);
  }
  return *table;
}

const KernelTable& kernels_for(const std::string& name) { return *pick(name); }

void set_isa(const std::string& name) { g_active.store(pick(name), std::memory_order_release); }

}  // namespace pyrnn
