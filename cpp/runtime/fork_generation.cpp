// The fork generation counter (see fork_generation.h).
#include "runtime/fork_generation.h"

#include <atomic>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define PYRNN_HAS_FORK 1
#else
#define PYRNN_HAS_FORK 0
#endif

namespace pyrnn {
namespace {

// Constant-initialised, so it is valid before any constructor of this library runs.
std::atomic<std::uint32_t> g_fork_generation{1};

#if PYRNN_HAS_FORK
// Runs in the child right after fork(), single-threaded: only an atomic store (async-signal-safe).
void advance_fork_generation() noexcept {
  std::uint32_t next = g_fork_generation.load(std::memory_order_relaxed) + 1;
  if (next == 0) next = 1;  // 0 means "free" to holders; after 2^32 - 1 forks, wrap past it
  g_fork_generation.store(next, std::memory_order_relaxed);
}
#endif

}  // namespace

std::uint32_t fork_generation() noexcept {
  return g_fork_generation.load(std::memory_order_relaxed);
}

bool register_fork_handler() noexcept {
#if PYRNN_HAS_FORK
  static const bool registered = pthread_atfork(nullptr, nullptr, advance_fork_generation) == 0;
  return registered;
#else
  return true;
#endif
}

}  // namespace pyrnn
