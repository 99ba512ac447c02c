// The memory limit of plans: physical memory as the OS reports it (sysconf on POSIX systems,
// as pyrnn._spec.physical_memory_bytes reads it for modules), overridable by tests.
#include "graph/memory_limit.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <limits>
#include <stdexcept>

#if __has_include(<unistd.h>)
#include <unistd.h>
#endif

namespace pyrnn::graph {
namespace {

// 0: no override.
std::atomic<std::size_t> g_override{0};

std::optional<std::size_t> from_os() noexcept {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGE_SIZE)
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return std::nullopt;
  const auto p = static_cast<std::size_t>(pages), s = static_cast<std::size_t>(page);
  if (p > std::numeric_limits<std::size_t>::max() / s)
    return std::numeric_limits<std::size_t>::max();
  return p * s;
#else
  return std::nullopt;
#endif
}

}  // namespace

std::optional<std::size_t> physical_memory_bytes() noexcept {
  const std::size_t forced = g_override.load(std::memory_order_relaxed);
  if (forced != 0) return forced;
  static const std::optional<std::size_t> reported = from_os();  // fixed for the process
  return reported;
}

void set_physical_memory_for_testing(std::optional<std::size_t> bytes) noexcept {
  g_override.store(bytes.value_or(0), std::memory_order_relaxed);
}

std::size_t plan_memory_limit() noexcept {
  // At most a quarter of the address space, so sums of a few sizes under it cannot wrap.
  constexpr std::size_t kCeiling = std::numeric_limits<std::size_t>::max() / 4;
  return std::min(physical_memory_bytes().value_or(kCeiling), kCeiling);
}

std::string bytes_text(double bytes) {
  static const char* const kUnits[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double scaled = bytes;
  int unit = 0;
  while (scaled >= 1024.0 && unit < 6) {
    scaled /= 1024.0;
    ++unit;
  }
  char text[64];
  if (unit == 0)
    std::snprintf(text, sizeof text, "%.0f bytes", bytes);
  else
    std::snprintf(text, sizeof text, "%.1f %s", scaled, kUnits[unit]);
  return text;
}

void refuse_memory(const std::string& what, double bytes) {
  const std::optional<std::size_t> memory = physical_memory_bytes();
  const std::string limit =
      memory ? "this machine's physical memory (" + bytes_text(static_cast<double>(*memory)) + ")"
             : "the address space";
  throw std::length_error(what + " needs " + bytes_text(bytes) + ", more than " + limit +
                          "; nothing was allocated (use smaller inputs, or check the model's "
                          "sizes)");
}

}  // namespace pyrnn::graph
