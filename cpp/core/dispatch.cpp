// CPU feature detection and the one active kernel table (see dispatch.h). Built without ISA
// flags: only after the CPU is asked does anything call into an ISA-compiled file.
#include "core/dispatch.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

#include "kernels/kernels.h"

namespace pyrnn {
namespace {

// A CPU feature an ISA's code needs, by the name cpu_features() reports it under.
struct Feature {
  const char* name;
  bool CpuFeatures::* present;
};

// Every ISA pyrnn has kernels for, compiled into this build or not.
struct IsaInfo {
  const char* name;
  const char* architecture;  // where its kernels are built; nullptr: everywhere
  std::vector<Feature> needs;
};

const std::vector<IsaInfo>& known_isas() {
  static const std::vector<IsaInfo> isas = {
      {"scalar", nullptr, {}},
      {"avx2",
       "x86-64",
       {{"avx2", &CpuFeatures::avx2}, {"fma", &CpuFeatures::fma}, {"f16c", &CpuFeatures::f16c}}},
      {"avx512",
       "x86-64",
       {{"avx512f", &CpuFeatures::avx512f},
        {"avx2", &CpuFeatures::avx2},
        {"fma", &CpuFeatures::fma}}},
      {"neon", "AArch64", {{"neon", &CpuFeatures::neon}}},
  };
  return isas;
}

#if defined(__x86_64__) || defined(_M_X64)
constexpr const char* kArchitecture = "x86-64";
#elif defined(__aarch64__) || defined(_M_ARM64)
constexpr const char* kArchitecture = "AArch64";
#else
constexpr const char* kArchitecture = "this architecture";
#endif

// The ISAs compiled into this build, ordered worst to best.
struct CompiledIsa {
  const char* name;
  const KernelTable& (*table)() noexcept;
};

const std::vector<CompiledIsa>& compiled_registry() {
  static const std::vector<CompiledIsa> entries = {
      {"scalar", scalar::kernel_table},
#if defined(PYRNN_BUILD_NEON)
      {"neon", neon::kernel_table},
#endif
#if defined(PYRNN_BUILD_AVX2)
      {"avx2", avx2::kernel_table},
#endif
#if defined(PYRNN_BUILD_AVX512)
      {"avx512", avx512::kernel_table},
#endif
  };
  return entries;
}

const IsaInfo* find_known(const std::string& name) {
  for (const IsaInfo& info : known_isas())
    if (name == info.name) return &info;
  return nullptr;
}

const CompiledIsa* find_compiled(const std::string& name) {
  for (const CompiledIsa& entry : compiled_registry())
    if (name == entry.name) return &entry;
  return nullptr;
}

std::string joined(const std::vector<std::string>& names) {
  std::string text;
  for (const std::string& name : names) text += (text.empty() ? "" : ", ") + name;
  return text;
}

std::vector<std::string> missing_features(const IsaInfo& info, const CpuFeatures& features) {
  std::vector<std::string> missing;
  for (const Feature& feature : info.needs)
    if (!(features.*feature.present)) missing.emplace_back(feature.name);
  return missing;
}

const KernelTable& pick(const std::string& name) {
  const std::string why = isa_unusable_reason(name, detect_cpu_features());
  if (!why.empty()) throw std::invalid_argument("isa: " + why);
  return find_compiled(name)->table();
}

// The choice made at the first use, once, by whichever thread gets there first (a function-local
// static is initialised exactly once, other threads waiting): PYRNN_ISA is read and the CPU
// asked one time.
const IsaChoice& initial_choice() {
  static const IsaChoice choice = choose_isa(std::getenv("PYRNN_ISA"), detect_cpu_features());
  return choice;
}

std::atomic<const KernelTable*> g_active{nullptr};

// Written before the flag is raised and read after it is seen (release/acquire).
CpuFeatures g_pretended;
std::atomic<bool> g_pretending{false};

}  // namespace

void pretend_cpu_features_for_testing(const CpuFeatures* features) noexcept {
  g_pretending.store(false, std::memory_order_release);
  if (features == nullptr) return;
  g_pretended = *features;
  g_pretending.store(true, std::memory_order_release);
}

CpuFeatures detect_cpu_features() noexcept {
  if (g_pretending.load(std::memory_order_acquire)) return g_pretended;
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.f16c = __builtin_cpu_supports("f16c");
  f.avx512f = __builtin_cpu_supports("avx512f");  // libgcc also checks the OS saves zmm state
#elif defined(__aarch64__)
  f.neon = true;  // Advanced SIMD is mandatory on AArch64
#endif
  return f;
}

std::vector<std::string> compiled_isas() {
  std::vector<std::string> names;
  for (const CompiledIsa& entry : compiled_registry()) names.emplace_back(entry.name);
  return names;
}

std::vector<std::string> available_isas(const CpuFeatures& features) {
  std::vector<std::string> names;
  for (const CompiledIsa& entry : compiled_registry())
    if (missing_features(*find_known(entry.name), features).empty()) names.emplace_back(entry.name);
  return names;
}

std::vector<std::string> available_isas() { return available_isas(detect_cpu_features()); }

std::string isa_unusable_reason(const std::string& name, const CpuFeatures& features) {
  const std::string available = joined(available_isas(features));
  const IsaInfo* info = find_known(name);
  if (info == nullptr)
    return "expected one of " + available + " (the ISAs this build and CPU run), got '" + name +
           "'";
  if (find_compiled(name) == nullptr) {
    if (info->architecture != nullptr && std::string(info->architecture) != kArchitecture)
      return "'" + name + "' is not built for this architecture: its kernels are for " +
             info->architecture + ", this build is for " + kArchitecture +
             "; available: " + available;
    return "'" + name + "' is not compiled into this build; available: " + available;
  }
  const std::vector<std::string> missing = missing_features(*info, features);
  if (!missing.empty())
    return "'" + name + "' is not supported by this CPU (missing " + joined(missing) +
           "); available: " + available;
  return "";
}

IsaChoice choose_isa(const char* requested, const CpuFeatures& features) {
  const std::string best = available_isas(features).back();
  if (requested == nullptr || *requested == '\0') return {best, ""};
  const std::string why = isa_unusable_reason(requested, features);
  if (why.empty()) return {requested, ""};
  return {best, "PYRNN_ISA='" + std::string(requested) + "' cannot be used: " + why + ". Using '" +
                    best + "', the best available, instead."};
}

const KernelTable& active_kernels() {
  const KernelTable* table = g_active.load(std::memory_order_acquire);
  if (table != nullptr) return *table;
  // First use. Install the initial choice only if nothing is active yet: a set_isa that ran
  // meanwhile on another thread is an explicit choice and must not be overwritten.
  const KernelTable* expected = nullptr;
  g_active.compare_exchange_strong(expected, &find_compiled(initial_choice().isa)->table(),
                                   std::memory_order_acq_rel, std::memory_order_acquire);
  return *g_active.load(std::memory_order_acquire);
}

const std::string& isa_environment_warning() { return initial_choice().warning; }

const KernelTable& kernels_for(const std::string& name) { return pick(name); }

void set_isa(const std::string& name) { g_active.store(&pick(name), std::memory_order_release); }

}  // namespace pyrnn
